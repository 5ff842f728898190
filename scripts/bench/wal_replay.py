#!/usr/bin/env python3
"""Replays a campaign's SQLite writes on a fresh copy of Parley's schema and prints the WAL
written per message for each step (docs/PERFORMANCE.md, "Why the transaction sizes mattered").

Needs an SQLite with jsonb (3.45+): `pip install pysqlite3-binary`.

    python3 scripts/bench/wal_replay.py                       # planner 2,000, acceptances 1,000
    PLAN_TX=500 ACCEPT_TX=250 python3 scripts/bench/wal_replay.py   # the previous sizes

Numbers and wamids are random, as Meta's are: the indexes on them are what grows with the
transaction size. Each step's WAL frames are read with a passive checkpoint, then the WAL is
truncated (autocheckpoint off), so a step's figure is the pages its transactions wrote.
"""
import glob
import json
import os
import random
import string
import tempfile

import pysqlite3 as sqlite3

N = int(os.environ.get("MESSAGES", "100000"))
PLAN_TX = int(os.environ.get("PLAN_TX", "2000"))
ACCEPT_TX = int(os.environ.get("ACCEPT_TX", "1000"))
STATUS_TX = 1000
PAGE = 4096
MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../crates/parley-store/migrations/sqlite/*.sql")

db_path = os.path.join(tempfile.mkdtemp(), "replay.db")
db = sqlite3.connect(db_path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
db.execute("PRAGMA wal_autocheckpoint=0")
for f in sorted(glob.glob(MIGRATIONS)):
    db.executescript(open(f).read())


def frames():
    log = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return log


def tx(*statements):
    db.execute("BEGIN")
    for sql, args in statements:
        db.execute(sql, args)
    db.execute("COMMIT")


rng = random.Random(1)
ids = [f"msg_01a213a46e1f76719bd4ae{i:010x}" for i in range(N)]
phones = ["+49151" + str(rng.randrange(10**7, 10**8)) for _ in ids]
alphabet = string.ascii_letters + string.digits
wamids = ["wamid.HBgL" + "".join(rng.choice(alphabet) for _ in range(40)) for _ in ids]
content = json.dumps({"name": "welcome", "language": "en", "header": None, "buttons": [],
                      "body": [{"parameter_name": "first_name", "text": "Alexandra"}]})
frames()
out = {}

cols = "(id, application_id, phone_number_id, contact_id, to_phone, kind, template_name, " \
       "template_language, content, state, next_attempt_at, queued_at, updated_at, campaign_id)"
insert = f"INSERT INTO messages {cols} VALUES " + ",".join(["(" + ",".join("?" * 14) + ")"] * 500)
for k in range(0, N, PLAN_TX):
    stmts = []
    for j in range(k, min(k + PLAN_TX, N), 500):
        rows = [(i, "app_1", "pn1", "ctc_" + i[-32:], p, "template", "welcome", "en", content,
                 "queued", 1, 1, 1, "cmp_1") for i, p in zip(ids[j:j + 500], phones[j:j + 500])]
        stmts.append((insert, [x for r in rows for x in r]))
    tx(*stmts)
out[f"plan ({PLAN_TX}/tx)"] = frames()

for k in range(0, N, 1000):
    tx(("UPDATE messages SET state = 'sending', lease_until = 5, attempts = attempts + 1, "
        "sending_at = 2, updated_at = 2 WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(ids[k:k + 1000]),)))
out["claim (1000/tx)"] = frames()

for k in range(0, N, 1000):
    tx(("INSERT INTO quota_reach (scope_key, contact, last_at, reserved_by) "
        "SELECT 'bp:1', j.value ->> 0, 2, j.value ->> 1 FROM json_each(?) j WHERE true "
        "ON CONFLICT DO NOTHING",
        (json.dumps([[p, i] for p, i in zip(phones[k:k + 1000], ids[k:k + 1000])]),)))
out["quota reservation (1000/tx)"] = frames()

fields = ["state", "error_code", "error_message", "updated_at", "sending_at", "accepted_at",
          "sent_at", "delivered_at", "read_at", "failed_at"]


def merge(state, at, size, with_wamid):
    names = fields + (["wamid"] if with_wamid else [])
    sql = ("UPDATE messages SET " + ", ".join(f"{c} = j.value ->> '{c}'" for c in names)
           + ", lease_until = NULL FROM jsonb_each(?) AS j WHERE messages.id = j.value ->> 'id'")
    for k in range(0, N, size):
        rows = [{"id": i, "wamid": w, "state": state, "updated_at": at, "sending_at": 2,
                 "accepted_at": 3, "sent_at": 4 if at >= 4 else None,
                 "delivered_at": 5 if at >= 5 else None}
                for i, w in zip(ids[k:k + size], wamids[k:k + size])]
        tx((sql, (json.dumps(rows),)))


merge("accepted", 3, ACCEPT_TX, True)
out[f"acceptance ({ACCEPT_TX}/tx)"] = frames()
merge("sent", 4, STATUS_TX, False)
out[f"sent ({STATUS_TX}/tx)"] = frames()
merge("delivered", 5, STATUS_TX, False)
out[f"delivered ({STATUS_TX}/tx)"] = frames()

for name, n in out.items():
    print(f"{name:32s} {n:7d} WAL frames  {n * PAGE / N:7.0f} bytes per message")
print(f"{'total':32s} {sum(out.values()) * PAGE / N:23.0f} bytes per message")
