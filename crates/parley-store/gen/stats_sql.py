#!/usr/bin/env python3
"""Writes migrations 0026, 0034 and 0042 (both backends) and src/stats_sql.rs from one definition of
what a row contributes to the statistics counters (#16). Run from crates/parley-store:
    python3 gen/stats_sql.py
The counters are a function of each row's current state: a trigger subtracts what the row
contributed before a change and adds what it contributes after, so a duplicated or reordered
webhook, which leaves the row as it was or merges to the same state, cannot count twice, and
the recount (the same SELECTs over the raw rows) must give the same numbers.
0026 has shipped and sqlx checksums migrations, so its text must not change: 0034 replaces its
`stat_messages_update` trigger by one that runs per metric, and only when that metric's
contribution (time, detail or dimensions) differs between OLD and NEW.
0042 gives the message triggers a first condition that lets a writer counting its own change
switch them off for its own transaction: the status merge and the campaign planner's inserts
compute the same contributions in
Rust (`src/message_stats.rs`, a port of `message_dims`/`message_metrics` below: change one,
change the other; the store test `rust_contributions_equal_the_sql_recount` compares them) and
writes the summed deltas itself."""

KEY = ["application_id", "span", "bucket", "metric", "campaign_id", "template",
       "phone_number_id", "category", "country", "origin", "detail"]
DIMS = ["application_id", "campaign_id", "template", "phone_number_id", "category",
        "country", "origin"]
DAY = 86400000
HOUR = 3600000


def message_dims(r):
    return {
        "application_id": f"{r}.application_id",
        "campaign_id": f"COALESCE({r}.campaign_id, '')",
        "template": f"COALESCE({r}.template_name, '')",
        "phone_number_id": f"{r}.phone_number_id",
        "category": f"COALESCE({r}.pricing_category, CASE WHEN {r}.kind = 'template' THEN '' ELSE 'service' END)",
        "country": f"COALESCE({r}.country, '')",
        "origin": f"CASE WHEN {r}.pricing LIKE '%\"free_entry_point\"%' THEN 'free_entry_point' "
                  f"WHEN {r}.kind = 'template' THEN 'business' ELSE 'customer' END",
    }


# (metric, detail, time, condition) of a message row `r`.
def message_metrics(r):
    return [
        ("queued", "''", f"{r}.queued_at", None),
        ("sent", "''", f"COALESCE({r}.sent_at, {r}.delivered_at, {r}.read_at)", None),
        ("delivered", "''", f"COALESCE({r}.delivered_at, {r}.read_at)", None),
        ("read", "''", f"{r}.read_at", None),
        ("failed", f"COALESCE(CAST({r}.error_code AS TEXT), 'unknown')",
         f"COALESCE({r}.failed_at, {r}.updated_at)", f"{r}.state = 'failed'"),
        ("skipped", f"COALESCE({r}.hold_reason, 'unknown')", f"{r}.updated_at",
         f"{r}.state = 'skipped'"),
        ("held", "''", f"COALESCE({r}.accepted_at, {r}.sending_at, {r}.queued_at)",
         f"{r}.meta_status = 'held_for_quality_assessment'"),
        ("capped", "''", f"{r}.queued_at", f"{r}.capped_times > 0"),
        ("charged", f"COALESCE({r}.pricing_category, 'unknown')",
         f"COALESCE({r}.delivered_at, {r}.read_at, {r}.sent_at, {r}.updated_at)",
         f"{r}.pricing LIKE '%\"type\":\"regular\"%'"),
        ("replied", "''", f"{r}.replied_at", None),
    ]


def inbound_dims(r):
    return {
        "application_id": f"{r}.application_id",
        "campaign_id": "''",
        "template": "''",
        "phone_number_id": f"{r}.phone_number_id",
        "category": "''",
        "country": "''",
        "origin": "'customer'",
    }


def opener(r, exclude=None):
    """No inbound message from the same sender in the 24 h before `r`'s (at the same
    millisecond, the smaller wamid is the earlier)."""
    ex = f" AND i.wamid <> {exclude}.wamid" if exclude else ""
    return (f"NOT EXISTS (SELECT 1 FROM inbound_messages i WHERE i.application_id = {r}.application_id"
            f" AND i.from_phone = {r}.from_phone AND i.received_at >= {r}.received_at - {DAY}"
            f" AND (i.received_at < {r}.received_at OR (i.received_at = {r}.received_at AND i.wamid < {r}.wamid))"
            f"{ex})")


def inbound_metrics(r):
    return [
        ("inbound", f"{r}.kind", f"{r}.received_at", None),
        ("reaction", "''", f"{r}.received_at", f"{r}.kind = 'reaction'"),
        ("button", "''", f"{r}.received_at", f"{r}.kind IN ('button', 'interactive')"),
        ("conversation_customer", "''", f"{r}.received_at", opener(r)),
    ]


def optout_dims(r):
    return {
        "application_id": f"{r}.application_id", "campaign_id": "''", "template": "''",
        "phone_number_id": "''", "category": "''", "country": "''", "origin": "''",
    }


def optout_metrics(r):
    return [("opt_out", f"{r}.source", f"{r}.at", f"{r}.state = 'opted_out'")]


def selects(dims, metrics, sign, from_=None):
    """One SELECT per metric, each giving DIMS, metric, detail, t, n."""
    out = []
    for metric, detail, t, cond in metrics:
        cols = ", ".join(f"{dims[d]} AS {d}" for d in DIMS)
        where = [f"{t} IS NOT NULL"] + ([cond] if cond else [])
        frm = f" FROM {from_}" if from_ else ""
        out.append(f"SELECT {cols}, '{metric}' AS metric, {detail} AS detail, {t} AS t, {sign} AS n"
                   f"{frm} WHERE " + " AND ".join(where))
    return out


def flip(r):
    """Inserting `r` ends the 'opened a conversation' of the sender's next messages within 24 h
    that had no other message before them."""
    b = "b"
    d = inbound_dims(b)
    cols = ", ".join(f"{d[k]} AS {k}" for k in DIMS)
    return (f"SELECT {cols}, 'conversation_customer' AS metric, '' AS detail, b.received_at AS t, -1 AS n"
            f" FROM inbound_messages b WHERE b.application_id = {r}.application_id"
            f" AND b.from_phone = {r}.from_phone AND b.received_at >= {r}.received_at"
            f" AND b.received_at <= {r}.received_at + {DAY}"
            f" AND (b.received_at > {r}.received_at OR b.wamid > {r}.wamid)"
            f" AND {opener('b', exclude=r)}")


SPANS = f"(SELECT 'h' AS span, {HOUR} AS len UNION ALL SELECT 'd', {DAY}) s"


def fold(parts, target, upsert):
    """Sums the contribution rows into `target`, per span."""
    union = "\n        UNION ALL ".join(parts)
    cols = ", ".join(KEY)
    keys = ", ".join(k for k in KEY)
    sel = ", ".join(
        "s.span" if k == "span" else "c.t - c.t % s.len" if k == "bucket" else f"c.{k}"
        for k in KEY)
    grp = ", ".join(
        "s.span" if k == "span" else "c.t - c.t % s.len" if k == "bucket" else f"c.{k}"
        for k in KEY)
    sql = (f"INSERT INTO {target} ({cols}, n)\n    SELECT {sel}, SUM(c.n)\n    FROM (\n        {union}\n    ) c CROSS JOIN {SPANS}\n"
           f"    WHERE true GROUP BY {grp} HAVING SUM(c.n) <> 0")
    if upsert:
        sql += f"\n    ON CONFLICT ({keys}) DO UPDATE SET n = {target}.n + excluded.n"
    return sql


HEAD = """-- Statistics counters (#16; generated by gen/stats_sql.py: edit that, not this).
--
-- `stat_counters` holds, per application, span ('h' = the hour, 'd' = the UTC day; week and
-- month are summed from days), bucket start (ms), metric and the dimensions a query groups by
-- (campaign, template name, phone number, category, country, conversation origin, and a
-- detail: Meta's error code for `failed`, the reason for `skipped`, the kind for `inbound`, the
-- pricing category for `charged`, the source for `opt_out`), how many. '' = none or unknown.
-- Triggers keep them as rows change: what a row contributed before a change is taken off and
-- what it contributes after is added, so the counters are a function of the rows (a
-- duplicated or reordered webhook that leaves the row's merged state as it was adds nothing),
-- and `parley stats recount` compares them with the same SELECTs over the raw rows.
"""

TABLES = """
ALTER TABLE messages ADD COLUMN country TEXT;
ALTER TABLE messages ADD COLUMN replied_at {int};

CREATE TABLE stat_counters (
    application_id TEXT NOT NULL,
    span TEXT NOT NULL,
    bucket {int} NOT NULL,
    metric TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    template TEXT NOT NULL,
    phone_number_id TEXT NOT NULL,
    category TEXT NOT NULL,
    country TEXT NOT NULL,
    origin TEXT NOT NULL,
    detail TEXT NOT NULL,
    n {int} NOT NULL,
    PRIMARY KEY ({key})
){without};

-- PostgreSQL's triggers append here instead of updating shared counter rows (which would
-- serialize concurrent transactions and invite deadlocks between nodes); a read folds the
-- rows into `stat_counters` first. SQLite (one writer) updates the counters directly and
-- leaves this empty.
CREATE TABLE stat_deltas (
    application_id TEXT NOT NULL,
    span TEXT NOT NULL,
    bucket {int} NOT NULL,
    metric TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    template TEXT NOT NULL,
    phone_number_id TEXT NOT NULL,
    category TEXT NOT NULL,
    country TEXT NOT NULL,
    origin TEXT NOT NULL,
    detail TEXT NOT NULL,
    n {int} NOT NULL
);
"""

REPLY = """UPDATE messages SET replied_at = {r}.received_at
    WHERE id = (SELECT m.id FROM messages m WHERE m.application_id = {r}.application_id
                  AND m.to_phone = {r}.from_phone
                  AND COALESCE(m.delivered_at, m.read_at) <= {r}.received_at
                  AND COALESCE(m.delivered_at, m.read_at) > {r}.received_at - {day}
                ORDER BY COALESCE(m.delivered_at, m.read_at) DESC, m.id DESC LIMIT 1)
      AND replied_at IS NULL"""

UPDATE_COLS = ("state, error_code, hold_reason, queued_at, sending_at, accepted_at, sent_at, delivered_at, "
               "read_at, failed_at, updated_at, meta_status, pricing, pricing_category, capped_times, "
               "replied_at, country, campaign_id, template_name, kind, phone_number_id")


def recount_parts():
    return (selects(message_dims("m"), message_metrics("m"), 1, "messages m")
            + selects(inbound_dims("m"), inbound_metrics("m"), 1, "inbound_messages m")
            + selects(optout_dims("m"), optout_metrics("m"), 1, "contact_subscription_events m"))


def sqlite():
    out = [HEAD, TABLES.format(int="INTEGER", key=", ".join(KEY), without=" WITHOUT ROWID")]
    t = "stat_counters"
    md, mm = message_dims, message_metrics
    out.append(f"""
CREATE TRIGGER stat_messages_insert AFTER INSERT ON messages BEGIN
    {fold(selects(md('new'), mm('new'), 1), t, True)};
END;

CREATE TRIGGER stat_messages_update AFTER UPDATE OF {UPDATE_COLS} ON messages BEGIN
    {fold(selects(md('old'), mm('old'), -1) + selects(md('new'), mm('new'), 1), t, True)};
END;

CREATE TRIGGER stat_messages_delete AFTER DELETE ON messages BEGIN
    {fold(selects(md('old'), mm('old'), -1), t, True)};
END;

CREATE TRIGGER stat_inbound_insert AFTER INSERT ON inbound_messages BEGIN
    {fold(selects(inbound_dims('new'), inbound_metrics('new'), 1) + [flip('new')], t, True)};
    {REPLY.format(r='new', day=DAY)};
END;

CREATE TRIGGER stat_opt_out_insert AFTER INSERT ON contact_subscription_events BEGIN
    {fold(selects(optout_dims('new'), optout_metrics('new'), 1), t, True)};
END;

-- What the rows already there contribute.
{fold(recount_parts(), t, True)};
""")
    return "".join(out)


def postgres():
    out = [HEAD, TABLES.format(int="BIGINT", key=", ".join(KEY), without="")]
    t = "stat_deltas"
    md, mm = message_dims, message_metrics
    out.append(f"""
CREATE FUNCTION stat_messages_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {fold(selects(md('NEW'), mm('NEW'), 1), t, False)};
    ELSIF TG_OP = 'UPDATE' THEN
        {fold(selects(md('OLD'), mm('OLD'), -1) + selects(md('NEW'), mm('NEW'), 1), t, False)};
    ELSE
        {fold(selects(md('OLD'), mm('OLD'), -1), t, False)};
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER stat_messages_insert AFTER INSERT OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION stat_messages_change();
CREATE TRIGGER stat_messages_update AFTER UPDATE OF {UPDATE_COLS} ON messages
    FOR EACH ROW EXECUTE FUNCTION stat_messages_change();

CREATE FUNCTION stat_inbound_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {fold(selects(inbound_dims('NEW'), inbound_metrics('NEW'), 1) + [flip('NEW')], t, False)};
    {REPLY.format(r='NEW', day=DAY)};
    RETURN NULL;
END $$;

CREATE TRIGGER stat_inbound_insert AFTER INSERT ON inbound_messages
    FOR EACH ROW EXECUTE FUNCTION stat_inbound_insert();

CREATE FUNCTION stat_opt_out_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {fold(selects(optout_dims('NEW'), optout_metrics('NEW'), 1), t, False)};
    RETURN NULL;
END $$;

CREATE TRIGGER stat_opt_out_insert AFTER INSERT ON contact_subscription_events
    FOR EACH ROW EXECUTE FUNCTION stat_opt_out_insert();

-- What the rows already there contribute.
{fold(recount_parts(), 'stat_counters', True)};
""")
    return "".join(out)


def rust():
    return rust_const("RECOUNT", "The counters recomputed from the raw rows", recount_parts()) + "\n" + rust_const(
        "RECOUNT_MESSAGES", "What the message rows alone contribute (compared with `message_stats.rs`)",
        selects(message_dims("m"), message_metrics("m"), 1, "messages m"))


def rust_const(name, doc, parts):
    union = "\n    UNION ALL ".join(parts)
    key = ", ".join(KEY)
    grp = ", ".join(
        "s.span" if k == "span" else "c.t - c.t % s.len" if k == "bucket" else f"c.{k}"
        for k in KEY)
    sel = ", ".join(
        "s.span AS span" if k == "span" else "c.t - c.t % s.len AS bucket" if k == "bucket" else f"c.{k} AS {k}"
        for k in KEY)
    head = "//! Generated by gen/stats_sql.py: edit that, not this.\n\n" if name == "RECOUNT" else ""
    return (f"{head}"
            f"/// {doc}: `{key}, n`, for every application.\n"
            f"pub(crate) const {name}: &str = r#\"SELECT {sel}, SUM(c.n) AS n\nFROM (\n    {union}\n) c CROSS JOIN {SPANS}\n"
            f"WHERE true GROUP BY {grp} HAVING SUM(c.n) <> 0\"#;\n")


def columns(r, exprs):
    """The columns of `r` that the expressions read, in order."""
    import re
    seen = []
    for e in exprs:
        for c in re.findall(rf"\b{r}\.(\w+)", e):
            if c not in seen:
                seen.append(c)
    return seen


def changed(metric, neq):
    """True when the message's contribution to `metric` differs between OLD and NEW: its time
    (NULL when the metric does not count the row), or, when it counts, its detail or a
    dimension. `neq` is the backend's null-safe inequality."""
    def gated(r):
        name, detail, t, cond = next(m for m in message_metrics(r) if m[0] == metric)
        return f"CASE WHEN {cond} THEN {t} END" if cond else t, detail
    (t_old, d_old), (t_new, d_new) = gated("OLD"), gated("NEW")
    do, dn = message_dims("OLD"), message_dims("NEW")
    same_row = [neq(d_old, d_new)] + [neq(do[k], dn[k]) for k in DIMS]
    return f"{neq(t_old, t_new)} OR ({t_new} IS NOT NULL AND ({' OR '.join(same_row)}))"


def metric_columns(metric):
    name, detail, t, cond = next(m for m in message_metrics("NEW") if m[0] == metric)
    return ", ".join(columns("NEW", [t, detail, cond or ""] + list(message_dims("NEW").values())))


def metric_delta(metric, target, upsert):
    """Takes off OLD's contribution to `metric` and adds NEW's, per span. No `GROUP BY` (unlike
    `fold`): for two rows its sorter cost more than the whole update (SQLite, ~100 µs); a move
    within one bucket writes -1 and +1 to the same counter instead."""
    one = lambda r: [m for m in message_metrics(r) if m[0] == metric]
    parts = "\n        UNION ALL ".join(
        selects(message_dims("OLD"), one("OLD"), -1) + selects(message_dims("NEW"), one("NEW"), 1))
    cols = ", ".join(KEY)
    sel = ", ".join("s.span" if k == "span" else "c.t - c.t % s.len" if k == "bucket" else f"c.{k}"
                    for k in KEY)
    sql = (f"INSERT INTO {target} ({cols}, n)\n    SELECT {sel}, c.n\n    FROM (\n        {parts}\n"
           f"    ) c CROSS JOIN {SPANS}\n    WHERE true")
    if upsert:
        sql += f"\n    ON CONFLICT ({cols}) DO UPDATE SET n = {target}.n + excluded.n"
    return sql


def sqlite_update_triggers(guard=""):
    neq = lambda a, b: f"({a}) IS NOT ({b})"
    out = []
    for metric, _, _, _ in message_metrics("NEW"):
        out.append(f"""
CREATE TRIGGER stat_messages_update_{metric} AFTER UPDATE OF {metric_columns(metric)} ON messages
    WHEN {f"{guard}({changed(metric, neq)})" if guard else changed(metric, neq)}
BEGIN
    {metric_delta(metric, 'stat_counters', True)};
END;
""")
    return "".join(out)


def sqlite_0034():
    return HEAD_0034 + "\nDROP TRIGGER stat_messages_update;\n" + sqlite_update_triggers()


def pg_any_changed():
    neq = lambda a, b: f"({a}) IS DISTINCT FROM ({b})"
    return "\n    OR ".join(f"({changed(m, neq)})" for m, _, _, _ in message_metrics("NEW"))


def postgres_0034():
    neq = lambda a, b: f"({a}) IS DISTINCT FROM ({b})"
    ifs = "".join(f"""
    IF {changed(metric, neq)} THEN
        {metric_delta(metric, 'stat_deltas', False)};
    END IF;""" for metric, _, _, _ in message_metrics("NEW"))
    any_changed = "\n    OR ".join(f"({changed(m, neq)})" for m, _, _, _ in message_metrics("NEW"))
    return (HEAD_0034 + f"""
DROP TRIGGER stat_messages_update ON messages;

CREATE FUNCTION stat_messages_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{ifs}
    RETURN NULL;
END $$;

CREATE TRIGGER stat_messages_update AFTER UPDATE OF {UPDATE_COLS} ON messages
    FOR EACH ROW WHEN ({any_changed})
    EXECUTE FUNCTION stat_messages_update();
""")


HEAD_0042 = """-- Writers that count their own statistics switch the message triggers off for their own
-- transaction (generated by gen/stats_sql.py: edit that, not this). The status merge (and the
-- acceptance merge, the same statement) knows each row before and after its change, computes
-- what it contributed and contributes in Rust (`src/message_stats.rs`, a port of this
-- generator's `message_dims`/`message_metrics`), sums the batch per counter and writes the sums
-- in the same transaction; the triggers must not count that `UPDATE` again. The campaign
-- planner does the same for the rows it inserts. Each message trigger gets a first condition:
-- on SQLite no row in `stat_suspend` (the writer inserts one before its `UPDATE` or `INSERT`
-- and deletes it after, before committing: SQLite has one writer, so no
-- other transaction sees it, and a crash rolls it back); on PostgreSQL the transaction-local
-- setting `parley.stat_writer` is not 'rust' (`set_config(..., true)`: other transactions
-- and nodes keep their triggers). Every other write path keeps its triggers as before.
"""

SUSPENDED_SQLITE = "NOT EXISTS (SELECT 1 FROM stat_suspend) AND "
SUSPENDED_PG = "current_setting('parley.stat_writer', true) IS DISTINCT FROM 'rust'"


def sqlite_0042():
    drops = "".join(f"DROP TRIGGER stat_messages_update_{m};\n" for m, _, _, _ in message_metrics("NEW"))
    t = "stat_counters"
    return (HEAD_0042 + f"""
CREATE TABLE stat_suspend (id INTEGER PRIMARY KEY);

{drops}{sqlite_update_triggers(SUSPENDED_SQLITE)}
DROP TRIGGER stat_messages_insert;

CREATE TRIGGER stat_messages_insert AFTER INSERT ON messages
    WHEN NOT EXISTS (SELECT 1 FROM stat_suspend)
BEGIN
    {fold(selects(message_dims('new'), message_metrics('new'), 1), t, True)};
END;
""")


def postgres_0042():
    return (HEAD_0042 + f"""
DROP TRIGGER stat_messages_update ON messages;

CREATE TRIGGER stat_messages_update AFTER UPDATE OF {UPDATE_COLS} ON messages
    FOR EACH ROW WHEN ({SUSPENDED_PG} AND (
    {pg_any_changed()}))
    EXECUTE FUNCTION stat_messages_update();

DROP TRIGGER stat_messages_insert ON messages;

CREATE TRIGGER stat_messages_insert AFTER INSERT OR DELETE ON messages
    FOR EACH ROW WHEN ({SUSPENDED_PG})
    EXECUTE FUNCTION stat_messages_change();
""")


HEAD_0034 = """-- Statistics triggers that run only when a counter changes (generated by gen/stats_sql.py:
-- edit that, not this). 0026's `stat_messages_update` re-derived every metric of a message on
-- any update of 21 columns (`updated_at` among them), ~20 µs per written row even when no
-- counter moved (a claim, an acceptance, a repeated status). Here each metric is kept on its
-- own: its time (NULL when the metric does not count the row), detail and dimensions are
-- compared between OLD and NEW, and only a metric whose contribution differs takes off what
-- the row contributed and adds what it contributes now, per span, without a `GROUP BY` (a move
-- within one bucket writes -1 and +1 to one counter). The counters stay a function of the rows.
"""


HEAD_0044 = """-- One message update trigger instead of ten (SQLite; generated by gen/stats_sql.py: edit that,
-- not this). SQLite runs a trigger as a sub-program, and its `WHEN` inside it: every row an
-- `UPDATE` writes paid the call of each of 0042's ten triggers whose columns it set, ~1.4 µs
-- a row for the status merge, which switches them all off (`stat_suspend`) and counts in Rust.
-- Here one trigger checks the switch once, and each metric's insert keeps its own condition
-- (0034's: the metric's contribution differs between OLD and NEW) as its `WHERE`, which
-- SQLite evaluates once, before reading anything; the column list is the union of theirs.
-- What is counted is unchanged. PostgreSQL already has one trigger (0034).
"""


def sqlite_0044():
    neq = lambda a, b: f"({a}) IS NOT ({b})"
    metrics = [m for m, _, _, _ in message_metrics("NEW")]
    drops = "".join(f"DROP TRIGGER stat_messages_update_{m};\n" for m in metrics)
    cols = []
    for m in metrics:
        for c in metric_columns(m).split(", "):
            if c not in cols:
                cols.append(c)
    body = "".join(
        "\n    " + metric_delta(m, "stat_counters", True).replace(
            "\n    WHERE true", f"\n    WHERE {changed(m, neq)}") + ";"
        for m in metrics)
    return (HEAD_0044 + f"""
{drops}
CREATE TRIGGER stat_messages_update AFTER UPDATE OF {", ".join(cols)} ON messages
    WHEN NOT EXISTS (SELECT 1 FROM stat_suspend)
BEGIN{body}
END;
""")


if __name__ == "__main__":
    open("migrations/sqlite/0026_stats.sql", "w").write(sqlite())
    open("migrations/postgres/0026_stats.sql", "w").write(postgres())
    open("migrations/sqlite/0034_stat_triggers.sql", "w").write(sqlite_0034())
    open("migrations/postgres/0034_stat_triggers.sql", "w").write(postgres_0034())
    open("migrations/sqlite/0042_stat_suspend.sql", "w").write(sqlite_0042())
    open("migrations/postgres/0042_stat_suspend.sql", "w").write(postgres_0042())
    open("migrations/sqlite/0044_stat_trigger_one.sql", "w").write(sqlite_0044())
    r = rust()
    open("src/stats_sql.rs", "w").write(r)
