//! `StatsStore`, written once for both backends (compiled into `sqlite.rs` and `postgres.rs`).
//! The counters are kept by triggers (migration 0026); PostgreSQL's triggers append deltas that
//! `fold_stat_deltas` (per backend) moves into the counters before a read.

use std::collections::BTreeMap;

use async_trait::async_trait;
use parley_domain::ApplicationId;
use sqlx::Row;

use super::{
    BENCH_ANALYZE, BENCH_INSERT_TRIGGERS, BENCH_STATS_VACUUM, Backend, DbRow, LIKE_IGNORES_CASE,
    PENDING_COLUMNS, RECOUNT_REACHES, STAT_ADD_TABLE, STAT_COUNTERS_TABLE, STAT_ROWS_FROM,
    STAT_ROWS_SELECT, bench_id, bench_json, collect_pending, outcome_page, outcome_page_sql,
    stat_rows_of, status_row, text,
};
use crate::Millis;
use crate::Result;
use crate::stats::*;
use crate::stats_sql::{RECOUNT, RECOUNT_MESSAGES};

const KEY_COLUMNS: &str = "application_id, span, bucket, metric, campaign_id, template, \
     phone_number_id, category, country, origin, detail";

/// The distinct strings of one column, each numbered in order of first sight.
#[derive(Default)]
struct Interner<'a> {
    ids: foldhash::HashMap<&'a str, u32>,
    strings: Vec<&'a str>,
    /// The last string seen: the rows come in key order, so a column often repeats.
    last: Option<(&'a str, u32)>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, s: &'a str) -> u32 {
        if let Some((last, id)) = self.last
            && last == s
        {
            return id;
        }
        let next = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        let id = *self.ids.entry(s).or_insert_with(|| {
            self.strings.push(s);
            next
        });
        self.last = Some((s, id));
        id
    }

    /// The strings in ascending order, and the rank among them of each first-sight number.
    fn ranked(self) -> (Vec<String>, Vec<u32>) {
        let mut order: Vec<usize> = (0..self.strings.len()).collect();
        order.sort_unstable_by(|a, b| self.strings[*a].cmp(self.strings[*b]));
        let mut rank = vec![0u32; order.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = u32::try_from(r).unwrap_or(u32::MAX);
        }
        let strings = order.iter().map(|&i| self.strings[i].to_owned()).collect();
        (strings, rank)
    }
}

/// The counters of the period summed per bucket, group, metric and detail, those summing to
/// zero left out, in that order (`finish`). With `starts` (weeks, months), each day goes into
/// the bucket of the last start at or before it. The strings are numbered (one copy of each
/// distinct value: `key`, once per key read, so a reader whose row holds many buckets of one
/// key, PostgreSQL's blocks, numbers them once per row) and the counts sorted and summed as
/// integers (`add`): no hash map of string keys, no three strings per counter. Each backend's
/// `stat_rows_of` reads the counters into it.
pub(super) struct CounterSums<'a> {
    starts: Vec<Millis>,
    groups: Interner<'a>,
    metrics: Interner<'a>,
    details: Interner<'a>,
    cells: Vec<StatCell>,
}

impl<'a> CounterSums<'a> {
    pub(super) fn new(starts: &[Millis], capacity: usize) -> CounterSums<'a> {
        let mut starts = starts.to_vec();
        starts.sort_unstable();
        CounterSums {
            starts,
            groups: Interner::default(),
            metrics: Interner::default(),
            details: Interner::default(),
            cells: Vec::with_capacity(capacity),
        }
    }

    /// A key's strings, numbered (in order of first sight until [`CounterSums::finish`]).
    pub(super) fn key(&mut self, group: &'a str, metric: &'a str, detail: &'a str) -> [u32; 3] {
        [
            self.groups.id(group),
            self.metrics.id(metric),
            self.details.id(detail),
        ]
    }

    /// Adds `n` to the key's count at `bucket` (a week's or month's start with `starts`).
    pub(super) fn add(&mut self, bucket: Millis, [group, metric, detail]: [u32; 3], n: i64) {
        let bucket = match self.starts.partition_point(|s| *s <= bucket) {
            0 => bucket,
            i => self.starts[i - 1],
        };
        self.cells.push(StatCell {
            bucket,
            group,
            metric,
            detail,
            n,
        });
    }

    pub(super) fn finish(self) -> StatRows {
        let mut cells = self.cells;
        let (groups, group_rank) = self.groups.ranked();
        let (metrics, metric_rank) = self.metrics.ranked();
        let (details, detail_rank) = self.details.ranked();
        for c in &mut cells {
            c.group = group_rank[c.group as usize];
            c.metric = metric_rank[c.metric as usize];
            c.detail = detail_rank[c.detail as usize];
        }
        let mut cells = by_bucket(cells);
        // Then only each bucket's rows are sorted, a few dozen (hours) to a few thousand
        // (months) at a time.
        for run in cells.chunk_by_mut(|a, b| a.bucket == b.bucket) {
            run.sort_unstable_by_key(|c| (c.group, c.metric, c.detail));
        }
        cells.dedup_by(|c, kept| {
            let same = (c.bucket, c.group, c.metric, c.detail)
                == (kept.bucket, kept.group, kept.metric, kept.detail);
            if same {
                kept.n = kept.n.saturating_add(c.n);
            }
            same
        });
        cells.retain(|c| c.n != 0);
        StatRows {
            groups,
            metrics,
            details,
            rows: cells,
        }
    }
}

/// The cells in bucket order, each bucket's in the order they came. SQLite's come so already
/// (read in key order, which begins with the bucket); PostgreSQL's come a block row at a
/// time, so they are placed by a counting sort over the period's few hundred distinct buckets
/// instead of a comparison sort of every cell.
fn by_bucket(cells: Vec<StatCell>) -> Vec<StatCell> {
    if cells.is_sorted_by_key(|c| c.bucket) {
        return cells;
    }
    let mut buckets: Vec<Millis> = Vec::new();
    let mut index: foldhash::HashMap<Millis, usize> = Default::default();
    let mut slot: Vec<u32> = Vec::with_capacity(cells.len());
    let mut last: Option<(Millis, usize)> = None;
    for c in &cells {
        let i = match last {
            Some((b, i)) if b == c.bucket => i,
            _ => *index.entry(c.bucket).or_insert_with(|| {
                buckets.push(c.bucket);
                buckets.len() - 1
            }),
        };
        last = Some((c.bucket, i));
        slot.push(u32::try_from(i).unwrap_or(u32::MAX));
    }
    // Each distinct bucket's rank, then where its cells begin.
    let mut order: Vec<usize> = (0..buckets.len()).collect();
    order.sort_unstable_by_key(|&i| buckets[i]);
    let mut begin = vec![0usize; buckets.len()];
    let mut counts = vec![0usize; buckets.len()];
    for s in &slot {
        counts[*s as usize] += 1;
    }
    let mut at = 0;
    for &i in &order {
        begin[i] = at;
        at += counts[i];
    }
    let mut out = vec![
        StatCell {
            bucket: 0,
            group: 0,
            metric: 0,
            detail: 0,
            n: 0,
        };
        cells.len()
    ];
    for (c, s) in cells.into_iter().zip(slot) {
        let b = &mut begin[s as usize];
        out[*b] = c;
        *b += 1;
    }
    out
}

fn key_of(r: &DbRow) -> Result<StatKey> {
    Ok(StatKey {
        application_id: r.try_get("application_id")?,
        span: r.try_get("span")?,
        bucket: r.try_get("bucket")?,
        metric: r.try_get("metric")?,
        campaign_id: r.try_get("campaign_id")?,
        template: r.try_get("template")?,
        phone_number_id: r.try_get("phone_number_id")?,
        category: r.try_get("category")?,
        country: r.try_get("country")?,
        origin: r.try_get("origin")?,
        detail: r.try_get("detail")?,
    })
}

/// The messages of one page of a campaign's per-recipient export (`messages m`; binds: the
/// campaign, the application, the last id of the previous page, the page's size): the page's
/// rows and their statuses still in the log are read by the same keyset.
const OUTCOME_PAGE: &str =
    "m.campaign_id = $1 AND m.application_id = $2 AND m.id > $3 ORDER BY m.id LIMIT $4";

#[async_trait]
impl StatsStore for Backend {
    async fn campaign_outcomes(
        &self,
        app: &ApplicationId,
        campaign: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<CampaignOutcomePage> {
        // `messages_campaign_id` (migration 0030) serves the keyset: campaign, then id. The
        // columns are in `CampaignOutcome`'s field order; the page comes back in the shape
        // each backend hands over cheapest (`outcome_page_sql`, `outcome_page`): on SQLite one
        // JSON array of arrays (2,000 rows of 28 columns handed over one by one cost more than
        // the query), on PostgreSQL the rows themselves (the JSON cost it more than the rows).
        const COLS: [&str; 28] = [
            "m.id",
            "m.contact_id",
            "m.to_phone",
            "c.wa_id",
            "c.bsuid",
            "c.parent_bsuid",
            "c.username",
            "c.name",
            "m.state",
            "m.template_name",
            "m.template_language",
            "CAST(m.content AS TEXT)",
            "m.wamid",
            "m.queued_at",
            "m.sending_at",
            "m.accepted_at",
            "m.sent_at",
            "m.delivered_at",
            "m.read_at",
            "m.failed_at",
            "m.replied_at",
            "CAST(m.error_code AS BIGINT)",
            "m.error_message",
            "m.hold_reason",
            "m.meta_status",
            "m.pricing",
            "m.pricing_category",
            "m.country",
        ];
        let inner: Vec<String> = COLS
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} AS o{i}"))
            .collect();
        let names: Vec<String> = (0..COLS.len()).map(|i| format!("o{i}")).collect();
        let select = format!(
            "SELECT {} FROM messages m
                 LEFT JOIN contacts c ON c.id = m.contact_id
                 WHERE {OUTCOME_PAGE}",
            inner.join(", ")
        );
        // The page and the statuses still in the log for it, in one snapshot: a status the
        // processor merges and deletes meanwhile is in the row or in the log, never in neither.
        let mut tx = self.read_tx().await?;
        // A statement holding `OUTCOME_PAGE`, with its binds.
        let page = |sql: String| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(campaign)
                .bind(app.as_str())
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
        };
        let rows = page(outcome_page_sql(&select, &names.join(", ")))
            .fetch_all(&mut *tx)
            .await?;
        // Statuses projected and not merged yet (a burst; the log is empty otherwise, and
        // one probe says so) for the page's messages, in the page's snapshot.
        let mut pending = crate::lattice::PendingStatuses::new();
        if sqlx::query("SELECT 1 FROM status_log LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            let log = page(format!(
                "SELECT {PENDING_COLUMNS} FROM status_log WHERE message_id IN (
                   SELECT m.id FROM messages m WHERE {OUTCOME_PAGE})
                 ORDER BY event_id, n"
            ))
            .fetch_all(&mut *tx)
            .await?;
            collect_pending(&mut pending, log)?;
        }
        tx.commit().await?;
        Ok(outcome_page(rows)?.with_pending(pending))
    }

    async fn fold_statistics(&self) -> Result<()> {
        self.fold_stat_deltas().await
    }

    async fn stat_rows(&self, q: &StatQuery) -> Result<StatRows> {
        self.fold_stat_deltas().await?;
        let group = q.group_by.map_or("''", |d| d.column());
        // The counters of the period are read as they are kept and summed here, not by a SQL
        // `GROUP BY`: on SQLite that sorts every row read (a temporary B-tree), which cost more
        // than reading the rows (issue #16: 41 days by hour of a year of 10 million messages,
        // ~69,000 hour rows, took ~115 ms grouped in SQL). The rows come back as one value
        // (`STAT_ROWS_SELECT` and `stat_rows_of`, per backend): tens of thousands of rows
        // handed over one by one cost more than the query. PostgreSQL keeps them packed
        // along time (`STAT_ROWS_FROM`: a row per day of hours, per 32 days of days).
        let mut inner =
            format!("SELECT bucket AS b, {group} AS g, metric, detail, n FROM {STAT_ROWS_FROM}");
        for (i, (d, _)) in q.filters.iter().enumerate() {
            inner.push_str(&format!(" AND {} = ${}", d.column(), i + 5));
        }
        let sql = format!("SELECT {STAT_ROWS_SELECT} FROM ({inner}) t");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.application.as_str())
            .bind(q.span.as_str())
            .bind(q.from)
            .bind(q.to);
        for (_, v) in &q.filters {
            query = query.bind(text(v));
        }
        let row = query.fetch_one(self.reader()).await?;
        stat_rows_of(&row, q)
    }

    async fn limit_counted_before(
        &self,
        app: &ApplicationId,
        t: Millis,
    ) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT scope_key, CAST(COUNT(DISTINCT contact) AS BIGINT) FROM limit_reaches
             WHERE application_id = $1 AND at >= $2 AND at < $3 GROUP BY scope_key",
        )
        .bind(app.as_str())
        .bind(t - parley_domain::quota::QUOTA_WINDOW_MS)
        .bind(t)
        .fetch_all(self.reader())
        .await?;
        Ok(rows)
    }

    async fn stat_check_message_contributions(&self) -> Result<Vec<StatDifference>> {
        let mut tx = self.tx().await?;
        let mut sql = BTreeMap::new();
        for r in &sqlx::query(RECOUNT_MESSAGES).fetch_all(&mut *tx).await? {
            *sql.entry(key_of(r)?).or_insert(0) += r.try_get::<i64, _>("n")?;
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM messages",
            crate::lattice::STATUS_COLUMNS
        )))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let rows = rows.iter().map(status_row).collect::<Result<Vec<_>>>()?;
        let mut deltas = crate::message_stats::Deltas::default();
        for r in &rows {
            deltas.contribute(&r.stored_view(), 1, LIKE_IGNORES_CASE);
        }
        let rust = deltas.into_counters();
        let mut out = Vec::new();
        for key in rust
            .keys()
            .chain(sql.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (a, b) = (
                rust.get(key).copied().unwrap_or(0),
                sql.get(key).copied().unwrap_or(0),
            );
            if a != b {
                out.push(StatDifference {
                    key: key.clone(),
                    counted: a,
                    recounted: b,
                });
            }
        }
        Ok(out)
    }

    async fn stat_recount(&self, fix: bool) -> Result<Vec<StatDifference>> {
        let mut tx = self.tx().await?;
        // Writers wait while the rows are recounted, so counters and recount see the same rows.
        Self::lock_stat_sources(&mut tx).await?;
        Self::fold_stat_deltas_in(&mut tx).await?;
        let mut kept = BTreeMap::new();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS}, n FROM stat_counters WHERE n <> 0"
        )))
        .fetch_all(&mut *tx)
        .await?;
        for r in &rows {
            kept.insert(key_of(r)?, r.try_get::<i64, _>("n")?);
        }
        let mut recounted = BTreeMap::new();
        // The trigger-kept metrics, then those kept from `limit_reaches` (disjoint metrics).
        for sql in [RECOUNT, RECOUNT_REACHES] {
            let rows = sqlx::query(sql).fetch_all(&mut *tx).await?;
            for r in &rows {
                *recounted.entry(key_of(r)?).or_insert(0) += r.try_get::<i64, _>("n")?;
            }
        }
        let mut out = Vec::new();
        for (key, &n) in &kept {
            let m = recounted.get(key).copied().unwrap_or(0);
            if m != n {
                out.push(StatDifference {
                    key: key.clone(),
                    counted: n,
                    recounted: m,
                });
            }
        }
        for (key, &m) in &recounted {
            if !kept.contains_key(key) {
                out.push(StatDifference {
                    key: key.clone(),
                    counted: 0,
                    recounted: m,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        if fix && !out.is_empty() {
            // Emptied, then the recount added as the writers add (PostgreSQL: as deltas,
            // folded into its blocks).
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {STAT_COUNTERS_TABLE}"
            )))
            .execute(&mut *tx)
            .await?;
            for sql in [RECOUNT, RECOUNT_REACHES] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {STAT_ADD_TABLE} ({KEY_COLUMNS}, n) SELECT {KEY_COLUMNS}, n FROM ({sql}) r"
                )))
                .execute(&mut *tx)
                .await?;
            }
            Self::fold_stat_deltas_in(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}

impl Backend {
    /// `parley bench stats`: a year of synthetic statistics counters for `app` from `start`
    /// (hour rows, then the day rows summed from them), as if `messages` messages had been
    /// sent over 10 dimension combinations an hour (50 campaigns, 8 templates, 2 numbers,
    /// 4 categories, 10 countries). Returns the counter rows written. The same SQL on both
    /// backends.
    pub async fn bench_stat_counters(
        &self,
        app: &ApplicationId,
        start: Millis,
        messages: u64,
    ) -> Result<u64> {
        let per = i64::try_from(messages / (8760 * 10))
            .unwrap_or(i64::MAX)
            .max(1);
        let mut tx = self.tx().await?;
        // Written as the writers add (PostgreSQL: as deltas, folded into its blocks).
        let hours = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH RECURSIVE h(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM h WHERE i < 8759),
                  combo(c) AS (SELECT 0 UNION ALL SELECT c + 1 FROM combo WHERE c < 9),
                  m(metric, share) AS (VALUES ('queued', 100), ('sent', 98), ('delivered', 95),
                      ('read', 70), ('failed', 2), ('charged', 95), ('replied', 5))
             INSERT INTO {STAT_ADD_TABLE} (application_id, span, bucket, metric, campaign_id, template,
                 phone_number_id, category, country, origin, detail, n)
             SELECT $1, 'h', $2 + h.i * CAST(3600000 AS BIGINT), m.metric,
                    'cmp_bench_' || CAST((h.i / 168 + combo.c) % 50 AS TEXT),
                    'template_' || CAST(combo.c % 8 AS TEXT),
                    '10000' || CAST(combo.c % 2 AS TEXT),
                    CASE combo.c % 4 WHEN 0 THEN 'marketing' WHEN 1 THEN 'utility'
                         WHEN 2 THEN 'authentication' ELSE 'service' END,
                    substr('DEUSBRINIDMXGBFRESIT', 1 + 2 * combo.c, 2), 'business',
                    CASE m.metric WHEN 'failed' THEN '131026' WHEN 'charged' THEN 'marketing' ELSE '' END,
                    $3 * m.share / 100
             FROM h, combo, m WHERE true"
        )))
        .bind(app.as_str())
        .bind(start)
        .bind(per)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Self::fold_stat_deltas_in(&mut tx).await?;
        let days = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {STAT_ADD_TABLE} (application_id, span, bucket, metric, campaign_id, template,
                 phone_number_id, category, country, origin, detail, n)
             SELECT application_id, 'd', bucket - bucket % 86400000, metric, campaign_id, template,
                 phone_number_id, category, country, origin, detail, SUM(n)
             FROM stat_counters WHERE application_id = $1 AND span = 'h'
             GROUP BY application_id, bucket - bucket % 86400000, metric, campaign_id, template,
                 phone_number_id, category, country, origin, detail"
        )))
        .bind(app.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Self::fold_stat_deltas_in(&mut tx).await?;
        tx.commit().await?;
        sqlx::query(BENCH_STATS_VACUUM)
            .execute(self.writer())
            .await?;
        Ok(hours + days)
    }

    /// `parley bench stats`: a campaign of `n` recipients (contacts and settled messages, most
    /// read, some failed), written by bulk SQL into a benchmark's own database. The insert
    /// triggers of the counters are dropped first: the benchmark measures the export, and
    /// a million trigger runs would only slow the seeding.
    pub async fn bench_campaign_messages(
        &self,
        app: &ApplicationId,
        campaign: &str,
        start: Millis,
        n: u64,
    ) -> Result<()> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let mut tx = self.tx().await?;
        for t in BENCH_INSERT_TRIGGERS {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER IF EXISTS {t}")))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO campaigns (id, application_id, name, phone_number_id, template_name,
                 template_language, variables, audience, audience_filter, kind, state, planned,
                 recipients, created_at, updated_at)
             VALUES ($1, $2, 'Bench', '100001', 'welcome', 'en', '{}', '{\"filter\":\"all\"}',
                 'all', 'marketing', 'completed', $5, $3, $4, $4)",
        )
        .bind(campaign)
        .bind(app.as_str())
        .bind(n)
        .bind(start)
        .bind(true)
        .execute(&mut *tx)
        .await?;
        let (contact, phone) = (bench_id("ctc_bench", 23), bench_id("+49151", 8));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH RECURSIVE i(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM i WHERE i < $3)
             INSERT INTO contacts (id, application_id, phone, wa_id, name, created_at, updated_at)
             SELECT {contact}, $1, {phone}, {wa_id},
                    CASE WHEN i % 1000 = 0 THEN '=cmd|'' /C calc''!A0'
                         ELSE 'Contact, \"' || CAST(i AS TEXT) || '\"' END,
                    $2, $2
             FROM i WHERE true",
            wa_id = bench_id("49151", 8),
        )))
        .bind(app.as_str())
        .bind(start)
        .bind(n)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH RECURSIVE i(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM i WHERE i < $4)
             INSERT INTO messages (id, application_id, phone_number_id, contact_id, to_phone, kind,
                 template_name, template_language, content, state, wamid, error_code,
                 error_message, attempts, next_attempt_at, queued_at, sending_at, accepted_at,
                 sent_at, delivered_at, read_at, failed_at, updated_at, campaign_id, pricing,
                 pricing_category, country)
             SELECT {message}, $1, '100001', {contact}, {phone}, 'template', 'welcome', 'en',
                    {content},
                    CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 4 = 0 THEN 'delivered' ELSE 'read' END,
                    CASE WHEN i % 50 = 0 THEN NULL ELSE {wamid} END,
                    CASE WHEN i % 50 = 0 THEN 131026 END,
                    CASE WHEN i % 50 = 0 THEN 'Message undeliverable' END,
                    1, $2, $2 + i, $2 + i + 5, $2 + i + 40,
                    CASE WHEN i % 50 = 0 THEN NULL ELSE $2 + i + 1000 END,
                    CASE WHEN i % 50 = 0 THEN NULL ELSE $2 + i + 2000 END,
                    CASE WHEN i % 50 = 0 OR i % 4 = 0 THEN NULL ELSE $2 + i + 60000 END,
                    CASE WHEN i % 50 = 0 THEN $2 + i + 1000 END,
                    $2 + i + 60000, $3,
                    CASE WHEN i % 50 = 0 THEN NULL ELSE '{{\"billable\":true,\"pricing_model\":\"PMP\",\"type\":\"regular\",\"category\":\"marketing\"}}' END,
                    CASE WHEN i % 50 = 0 THEN NULL ELSE 'marketing' END, 'DE'
             FROM i WHERE true",
            message = bench_id("msg_bench", 23),
            wamid = bench_id("wamid.bench", 20),
            content = bench_json(
                "'{\"type\":\"template\",\"template\":{\"name\":\"welcome\",\"language\":\"en\",\"header\":null,\"body\":[{\"parameter_name\":\"first_name\",\"text\":\"Contact ' || CAST(i AS TEXT) || '\"}],\"buttons\":[]}}'"
            ),
        )))
        .bind(app.as_str())
        .bind(start)
        .bind(campaign)
        .bind(n)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if let Some(analyze) = BENCH_ANALYZE {
            sqlx::query(analyze).execute(self.writer()).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Counters added in any order (as PostgreSQL's blocks come: a key's buckets, then the
    /// next key's) sum as a map keyed by (bucket, group, metric, detail) does, in that order,
    /// zeros left out, weeks' days in their week's start.
    #[test]
    fn counter_sums_in_any_order_equal_a_sorted_map() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        let names = ["", "a", "b", "c\"q", "ü", "z"];
        for case in 0..200 {
            let starts: Vec<Millis> = if case % 3 == 0 {
                vec![0, 70, 140]
            } else {
                vec![]
            };
            let n = rng.random_range(0..400);
            let counters: Vec<(Millis, &str, &str, &str, i64)> = (0..n)
                .map(|_| {
                    (
                        rng.random_range(0..30) * 7,
                        names[rng.random_range(0..names.len())],
                        names[rng.random_range(0..3)],
                        names[rng.random_range(0..names.len())],
                        rng.random_range(-3..5),
                    )
                })
                .collect();
            let mut sums = CounterSums::new(&starts, counters.len());
            for &(bucket, g, m, d, n) in &counters {
                let key = sums.key(g, m, d);
                sums.add(bucket, key, n);
            }
            let got: Vec<(Millis, String, String, String, i64)> = sums
                .finish()
                .to_rows()
                .into_iter()
                .map(|r| (r.bucket, r.group, r.metric, r.detail, r.n))
                .collect();
            let mut want: BTreeMap<(Millis, String, String, String), i64> = BTreeMap::new();
            for &(bucket, g, m, d, n) in &counters {
                let bucket = starts
                    .iter()
                    .rev()
                    .find(|s| **s <= bucket)
                    .copied()
                    .unwrap_or(bucket);
                *want
                    .entry((bucket, g.to_owned(), m.to_owned(), d.to_owned()))
                    .or_insert(0) += n;
            }
            let want: Vec<(Millis, String, String, String, i64)> = want
                .into_iter()
                .filter(|(_, n)| *n != 0)
                .map(|((b, g, m, d), n)| (b, g, m, d, n))
                .collect();
            assert_eq!(got, want, "case {case}");
        }
    }
}
