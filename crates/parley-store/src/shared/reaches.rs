//! Business-initiated reaches (#16 item 1; migration 0036), written once for both backends.
//!
//! When Meta accepts a template for a contact outside its 24 h service window (the quota
//! gate's reach was not `InServiceWindow`: what counts against the messaging limit), the
//! acceptance's transaction also writes a `limit_reaches` row (keyed by the message, so a
//! repeated acceptance adds nothing) and the statistics counters it changes:
//!
//! - `conversation_business`: the message itself, at its acceptance;
//! - `limit_reach` (detail: the limit scope): a contact **starts** counting against the limit,
//!   a reach with no other reach of the contact in the scope in the 24 h before (the ledger's
//!   `NewContact`);
//! - `limit_release` (detail: the scope): the contact **stops** counting, 24 h after a reach
//!   with no later one within 24 h.
//!
//! Starts and stops are a function of the set of reaches of a contact, whatever order they are
//! written in: a new reach only changes the rows within 24 h of it, so the store reads the
//! contact's reaches within 48 h, computes what the rows within 24 h contributed before and
//! after, and writes the difference. `limit_reach` minus `limit_release` up to an instant is
//! the number of contacts counted in the moving 24 h then (the dashboards' use over time).
//! `RECOUNT_REACHES` recomputes the three metrics from the rows for `parley stats recount`.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;

use super::{STAT_ADD_SUFFIX, STAT_ADD_TABLE, Tx, text};
use crate::Millis;
use crate::Result;
use crate::lattice::QuotaConfirmation;
use crate::stats::StatKey;

/// The moving window of the messaging limit (`parley_domain::quota::QUOTA_WINDOW_MS`).
const W: Millis = parley_domain::quota::QUOTA_WINDOW_MS;
const HOUR: Millis = 3_600_000;
const DAY: Millis = 86_400_000;

/// The three metrics recomputed from `limit_reaches` (same key columns as `stat_counters`).
pub(crate) const RECOUNT_REACHES: &str =
    "SELECT c.application_id AS application_id, s.span AS span,
    c.t - c.t % s.len AS bucket, c.metric AS metric, c.campaign_id AS campaign_id,
    c.template AS template, c.phone_number_id AS phone_number_id, '' AS category,
    c.country AS country, 'business' AS origin, c.detail AS detail, CAST(SUM(c.n) AS BIGINT) AS n
FROM (
    SELECT r.application_id, r.campaign_id, r.template, r.phone_number_id, r.country,
        'conversation_business' AS metric, '' AS detail, r.at AS t, 1 AS n
    FROM limit_reaches r
    UNION ALL
    SELECT r.application_id, r.campaign_id, r.template, r.phone_number_id, r.country,
        'limit_reach' AS metric, r.scope_key AS detail, r.at AS t, 1 AS n
    FROM limit_reaches r WHERE NOT EXISTS (SELECT 1 FROM limit_reaches p
        WHERE p.scope_key = r.scope_key AND p.contact = r.contact AND p.at > r.at - 86400000
          AND (p.at < r.at OR (p.at = r.at AND p.message_id < r.message_id)))
    UNION ALL
    SELECT r.application_id, r.campaign_id, r.template, r.phone_number_id, r.country,
        'limit_release' AS metric, r.scope_key AS detail, r.at + 86400000 AS t, 1 AS n
    FROM limit_reaches r WHERE NOT EXISTS (SELECT 1 FROM limit_reaches q
        WHERE q.scope_key = r.scope_key AND q.contact = r.contact AND q.at < r.at + 86400000
          AND (q.at > r.at OR (q.at = r.at AND q.message_id > r.message_id)))
) c CROSS JOIN (SELECT 'h' AS span, 3600000 AS len UNION ALL SELECT 'd', 86400000) s
WHERE true
GROUP BY c.application_id, s.span, c.t - c.t % s.len, c.metric, c.campaign_id, c.template,
    c.phone_number_id, c.country, c.detail
HAVING SUM(c.n) <> 0";

/// One `limit_reaches` row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reach {
    message_id: String,
    application_id: String,
    scope_key: String,
    contact: String,
    at: Millis,
    phone_number_id: String,
    campaign_id: String,
    template: String,
    country: String,
}

impl Reach {
    fn key(&self, metric: &str, detail: &str, span: &str, t: Millis) -> StatKey {
        let len = if span == "h" { HOUR } else { DAY };
        StatKey {
            application_id: self.application_id.clone(),
            span: span.to_owned(),
            bucket: t - t.rem_euclid(len),
            metric: metric.to_owned(),
            campaign_id: self.campaign_id.clone(),
            template: self.template.clone(),
            phone_number_id: self.phone_number_id.clone(),
            category: String::new(),
            country: self.country.clone(),
            origin: "business".to_owned(),
            detail: detail.to_owned(),
        }
    }
}

/// Adds what the reaches of one contact with `at` in `[lo, hi]` contribute to `limit_reach`
/// and `limit_release` (`sorted` by time then message id; it must hold every reach within
/// 24 h of those).
fn contribute(
    sorted: &[&Reach],
    lo: Millis,
    hi: Millis,
    sign: i64,
    out: &mut BTreeMap<StatKey, i64>,
) {
    for (i, r) in sorted.iter().enumerate() {
        if r.at < lo || r.at > hi {
            continue;
        }
        let starts = i == 0 || r.at - sorted[i - 1].at >= W;
        let stops = i + 1 == sorted.len() || sorted[i + 1].at - r.at >= W;
        for span in ["h", "d"] {
            if starts {
                *out.entry(r.key("limit_reach", &r.scope_key, span, r.at))
                    .or_insert(0) += sign;
            }
            if stops {
                *out.entry(r.key("limit_release", &r.scope_key, span, r.at + W))
                    .or_insert(0) += sign;
            }
        }
    }
}

fn placeholders(rows: usize, cols: usize) -> String {
    let mut s = String::new();
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("${}", r * cols + c + 1));
        }
        s.push(')');
    }
    s
}

/// Records the business-initiated reaches of a round of acceptances and keeps their counters,
/// in the caller's transaction (see the module's comment). A confirmation whose message is
/// already recorded, or does not exist, adds nothing.
pub(crate) async fn record_reaches_in(
    tx: &mut Tx,
    confirms: &[QuotaConfirmation<'_>],
) -> Result<()> {
    for chunk in confirms.chunks(200) {
        record_chunk(tx, chunk).await?;
    }
    Ok(())
}

async fn record_chunk(tx: &mut Tx, confirms: &[QuotaConfirmation<'_>]) -> Result<()> {
    if confirms.is_empty() {
        return Ok(());
    }
    // The new rows, with their message's dimensions; `RETURNING` gives only those inserted.
    let values = placeholders(confirms.len(), 4);
    let sql = format!(
        "INSERT INTO limit_reaches (message_id, application_id, scope_key, contact, at,
             phone_number_id, campaign_id, template, country)
         SELECT m.id, m.application_id, v.scope_key, v.contact, CAST(v.at AS BIGINT), m.phone_number_id,
             COALESCE(m.campaign_id, ''), COALESCE(m.template_name, ''), COALESCE(m.country, '')
         FROM (SELECT x.column1 AS message_id, x.column2 AS scope_key, x.column3 AS contact,
                 x.column4 AS at FROM (VALUES {values}) AS x) v
         JOIN messages m ON m.id = v.message_id
         WHERE true
         ON CONFLICT (message_id) DO NOTHING
         RETURNING message_id, application_id, scope_key, contact, at, phone_number_id, campaign_id,
             template, country"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for &(scope, contact, id, at) in confirms {
        q = q.bind(id).bind(text(scope)).bind(text(contact)).bind(at);
    }
    let rows = q.fetch_all(&mut **tx).await?;
    let mut added: Vec<Reach> = Vec::with_capacity(rows.len());
    for r in &rows {
        added.push(Reach {
            message_id: r.try_get("message_id")?,
            application_id: r.try_get("application_id")?,
            scope_key: r.try_get("scope_key")?,
            contact: r.try_get("contact")?,
            at: r.try_get("at")?,
            phone_number_id: r.try_get("phone_number_id")?,
            campaign_id: r.try_get("campaign_id")?,
            template: r.try_get("template")?,
            country: r.try_get("country")?,
        });
    }
    if added.is_empty() {
        return Ok(());
    }
    let mut delta: BTreeMap<StatKey, i64> = BTreeMap::new();
    for r in &added {
        for span in ["h", "d"] {
            *delta
                .entry(r.key("conversation_business", "", span, r.at))
                .or_insert(0) += 1;
        }
    }
    // Per contact: the times of the new reaches.
    let mut groups: BTreeMap<(&str, &str), (Millis, Millis)> = BTreeMap::new();
    for r in &added {
        let e = groups
            .entry((r.scope_key.as_str(), r.contact.as_str()))
            .or_insert((r.at, r.at));
        e.0 = e.0.min(r.at);
        e.1 = e.1.max(r.at);
    }
    let new_ids: BTreeSet<&str> = added.iter().map(|r| r.message_id.as_str()).collect();
    // One read per scope (a round's sends share one): the contacts' reaches within 48 h of
    // the round's (a superset of each contact's own window, which is all `contribute` needs).
    let mut scopes: BTreeMap<&str, (Vec<&str>, Millis, Millis)> = BTreeMap::new();
    for (&(scope, contact), &(tmin, tmax)) in &groups {
        let e = scopes.entry(scope).or_insert((Vec::new(), tmin, tmax));
        e.0.push(contact);
        e.1 = e.1.min(tmin);
        e.2 = e.2.max(tmax);
    }
    let mut near: BTreeMap<(String, String), Vec<Reach>> = BTreeMap::new();
    for (scope, (contacts, tmin, tmax)) in &scopes {
        let list: Vec<String> = (0..contacts.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "SELECT message_id, application_id, scope_key, contact, at, phone_number_id, campaign_id,
                 template, country
             FROM limit_reaches WHERE scope_key = $1 AND at >= $2 AND at <= $3
               AND contact IN ({})",
            list.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(*scope)
            .bind(tmin - 2 * W)
            .bind(tmax + 2 * W);
        for c in contacts {
            q = q.bind(*c);
        }
        for r in &q.fetch_all(&mut **tx).await? {
            let reach = Reach {
                message_id: r.try_get("message_id")?,
                application_id: r.try_get("application_id")?,
                scope_key: r.try_get("scope_key")?,
                contact: r.try_get("contact")?,
                at: r.try_get("at")?,
                phone_number_id: r.try_get("phone_number_id")?,
                campaign_id: r.try_get("campaign_id")?,
                template: r.try_get("template")?,
                country: r.try_get("country")?,
            };
            near.entry((reach.scope_key.clone(), reach.contact.clone()))
                .or_default()
                .push(reach);
        }
    }
    for (&(scope, contact), &(tmin, tmax)) in &groups {
        let Some(all) = near.get_mut(&(scope.to_owned(), contact.to_owned())) else {
            continue;
        };
        all.sort_by(|a, b| (a.at, &a.message_id).cmp(&(b.at, &b.message_id)));
        let after: Vec<&Reach> = all.iter().collect();
        let before: Vec<&Reach> = all
            .iter()
            .filter(|r| !new_ids.contains(r.message_id.as_str()))
            .collect();
        let (lo, hi) = (tmin - W, tmax + W);
        contribute(&before, lo, hi, -1, &mut delta);
        contribute(&after, lo, hi, 1, &mut delta);
    }
    delta.retain(|_, n| *n != 0);
    add_counters(tx, &delta).await
}

/// Adds to the counters (SQLite: `stat_counters` directly; PostgreSQL: `stat_deltas`, folded
/// before a read, as the triggers do).
pub(crate) async fn add_counters(tx: &mut Tx, delta: &BTreeMap<StatKey, i64>) -> Result<()> {
    let rows: Vec<(&StatKey, &i64)> = delta.iter().collect();
    for chunk in rows.chunks(400) {
        let sql = format!(
            "INSERT INTO {STAT_ADD_TABLE} (application_id, span, bucket, metric, campaign_id, template,
                 phone_number_id, category, country, origin, detail, n) VALUES {}{STAT_ADD_SUFFIX}",
            placeholders(chunk.len(), 12)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (k, n) in chunk {
            q = q
                .bind(k.application_id.as_str())
                .bind(k.span.as_str())
                .bind(k.bucket)
                .bind(k.metric.as_str())
                .bind(k.campaign_id.as_str())
                .bind(k.template.as_str())
                .bind(k.phone_number_id.as_str())
                .bind(k.category.as_str())
                .bind(k.country.as_str())
                .bind(k.origin.as_str())
                .bind(k.detail.as_str())
                .bind(**n);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(id: &str, at: Millis) -> Reach {
        Reach {
            message_id: id.into(),
            application_id: "app".into(),
            scope_key: "bp:1".into(),
            contact: "c".into(),
            at,
            phone_number_id: "pn".into(),
            campaign_id: String::new(),
            template: "t".into(),
            country: String::new(),
        }
    }

    /// Starts minus stops up to `t` is the ledger's count at `t`, whatever the order.
    #[test]
    fn starts_and_stops_follow_the_moving_day() {
        let rs = [reach("a", 0), reach("b", W - 1), reach("c", 3 * W)];
        let sorted: Vec<&Reach> = rs.iter().collect();
        let mut out = BTreeMap::new();
        contribute(&sorted, Millis::MIN / 2, Millis::MAX / 2, 1, &mut out);
        let sum = |m: &str| -> Vec<Millis> {
            out.iter()
                .filter(|(k, _)| k.metric == m && k.span == "h")
                .map(|(k, _)| k.bucket)
                .collect()
        };
        // Two slots: [0, 2W-1) and [3W, 4W).
        assert_eq!(sum("limit_reach"), vec![0, 3 * W]);
        let stops = sum("limit_release");
        assert_eq!(stops.len(), 2);
        assert_eq!(stops[1], 4 * W);
    }

    fn near<'a>(set: &[&'a Reach], at: Millis) -> Vec<&'a Reach> {
        let mut v: Vec<&Reach> = set
            .iter()
            .copied()
            .filter(|r| r.at >= at - 2 * W && r.at <= at + 2 * W)
            .collect();
        v.sort_by(|a, b| (a.at, &a.message_id).cmp(&(b.at, &b.message_id)));
        v
    }

    /// Inserting reaches one by one in any order, each writing the difference over the window
    /// `record_chunk` reads, gives the counters of the whole set computed at once.
    #[test]
    fn incremental_deltas_equal_the_whole_set_in_any_order() {
        let times = [
            0,
            5,
            W - 1,
            W + 3,
            2 * W + 10,
            2 * W + 10,
            4 * W,
            4 * W + W / 2,
        ];
        let rs: Vec<Reach> = times
            .iter()
            .enumerate()
            .map(|(i, t)| reach(&format!("m{i}"), *t))
            .collect();
        let whole = {
            let mut sorted: Vec<&Reach> = rs.iter().collect();
            sorted.sort_by(|a, b| (a.at, &a.message_id).cmp(&(b.at, &b.message_id)));
            let mut out = BTreeMap::new();
            contribute(&sorted, Millis::MIN / 2, Millis::MAX / 2, 1, &mut out);
            out.retain(|_, n| *n != 0);
            out
        };
        for order in [
            vec![0, 1, 2, 3, 4, 5, 6, 7],
            vec![7, 6, 5, 4, 3, 2, 1, 0],
            vec![3, 0, 6, 1, 5, 7, 2, 4],
        ] {
            let mut have: Vec<&Reach> = Vec::new();
            let mut out = BTreeMap::new();
            for i in order {
                let new = &rs[i];
                let before = near(&have, new.at);
                have.push(new);
                let after = near(&have, new.at);
                contribute(&before, new.at - W, new.at + W, -1, &mut out);
                contribute(&after, new.at - W, new.at + W, 1, &mut out);
            }
            out.retain(|_, n| *n != 0);
            assert_eq!(out, whole);
        }
    }
}
