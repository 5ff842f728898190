//! The PostgreSQL backend: the same `Store` contract as `sqlite.rs`, for deployments that run
//! several `parley serve` nodes on one database (DESIGN.md "Many nodes").
//!
//! Why it looks the way it does:
//! - One pool, `READ COMMITTED` transactions. SQLite serializes every writer; PostgreSQL does
//!   not, so each read-then-write either locks what it reads (`SELECT … FOR UPDATE` on the
//!   message row) or is a single statement with `ON CONFLICT`, never "select, then insert".
//! - Claims are one statement: a CTE picks due rows `FOR UPDATE SKIP LOCKED`, so two nodes
//!   claiming the same number never get the same row and never wait on each other.
//! - Statuses and acceptances of one wamid are serialized by a transaction-scoped advisory lock
//!   on the wamid: without it, a status naming only the wamid could be stored as an orphan
//!   just after `mark_accepted` folded the orphans in, and be lost.
//! - PostgreSQL text and JSONB cannot hold U+0000 (SQLite can). Free text from outside
//!   (names, Meta's error texts, inbound messages, JSON documents) has it replaced by U+FFFD,
//!   so a stray NUL byte does not fail a whole webhook or import.
//! - Every query is a static string (sqlx 0.9); no `Any` driver.
//!
//! Area modules (`postgres_<area>.rs`) use the `pub(crate)` pool and row helpers below.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parley_domain::{ApplicationId, PhoneNumberId};
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, Row, Transaction};

use crate::lattice::{Batch, STATUS_COLUMNS, orphan_json};
use crate::types::*;
use crate::{Millis, Result, SecretCipher, corrupt};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per node. Each sender loop and request holds one only for a statement or a
/// short transaction.
const MAX_CONNECTIONS: u32 = 16;

/// How long PostgreSQL lets one of this node's sessions sit in an open transaction waiting
/// for the node's next statement before it ends the session. No transaction of Parley's waits
/// on anything but its own statements, so only a node that stopped mid-transaction (frozen
/// VM, SIGSTOP, a pause far past its leases) gets there; its row locks would otherwise block
/// the other nodes' updates of those rows (crash recovery, statuses) until it woke up.
const IDLE_IN_TRANSACTION: &str = "15s";

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pub(crate) pool: PgPool,
    /// Bounded filter queries (segment counts and previews) run here, apart from `pool`.
    pub(crate) filter: PgPool,
    /// Filter queries holding a `filter` connection now.
    pub(crate) filter_running: Arc<AtomicUsize>,
    /// Filter statements cancelled because their request was dropped.
    pub(crate) filter_abandoned: Arc<AtomicU64>,
    pub(crate) cipher: SecretCipher,
    /// Wake-ups to and from every node on this database (`LISTEN/NOTIFY`).
    pub(crate) wakeups: crate::Wakeups,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db`) and runs pending migrations.
    /// Migrations take an advisory lock, so several nodes may start at once.
    pub async fn connect(url: &str, cipher: SecretCipher) -> Result<Self> {
        let options = url
            .parse::<PgConnectOptions>()?
            .options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let filter = PgPoolOptions::new()
            .max_connections(crate::audience::FILTER_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        Ok(PostgresStore {
            wakeups: crate::Wakeups::postgres(pool.clone(), url),
            pool,
            filter,
            filter_running: Arc::default(),
            filter_abandoned: Arc::default(),
            cipher,
        })
    }

    pub(crate) async fn tx(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

/// Text PostgreSQL can store: U+0000 becomes U+FFFD.
pub(crate) fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

pub(crate) fn pg_opt_text(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(pg_text)
}

fn strip_nul(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "\u{FFFD}")),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nul).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (pg_text(&k).into_owned(), strip_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

/// A value as a JSONB parameter.
pub(crate) fn jsonb<T: serde::Serialize>(v: &T) -> Result<Json<Value>> {
    let value = serde_json::to_value(v).map_err(|e| corrupt("serialize", e))?;
    Ok(Json(strip_nul(value)))
}

/// A JSONB column as `T`; a document that does not fit is `Corrupt`, not a decode panic.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(row: &PgRow, col: &str) -> Result<T> {
    let v: Value = row.try_get(col)?;
    serde_json::from_value(v).map_err(|e| corrupt(col, e))
}

/// A nullable JSONB column: `NULL` is `None`.
pub(crate) fn opt_json_col(row: &PgRow, col: &str) -> Result<Option<Value>> {
    Ok(row.try_get::<Option<Value>, _>(col)?)
}

// The vocabulary the shared modules (`shared/*.rs`) are written in; `sqlite.rs` defines the
// same names for SQLite.
pub(crate) type DbRow = PgRow;
pub(crate) type Backend = PostgresStore;
pub(crate) type Tx = Transaction<'static, Postgres>;

/// The SQL of a page of campaign outcomes (`shared/stats.rs`): `select`'s rows as they are.
/// As one `json_agg(json_build_array(…))` of the 28 columns, PostgreSQL spent ~3× what
/// Parley did on the page (`escape_json`, a type output function per value); in binary rows
/// a text is copied and a number sent as 8 bytes.
pub(crate) fn outcome_page_sql(select: &str, _names: &str) -> String {
    select.to_owned()
}
/// The page of `outcome_page_sql`'s rows.
pub(crate) fn outcome_page(rows: Vec<DbRow>) -> Result<crate::stats::CampaignOutcomePage> {
    Ok(crate::stats::CampaignOutcomePage::of_rows(rows))
}
/// `parley bench stats`' seeding (`shared/stats.rs`): `prefix` and `i` zero-padded to
/// `width` digits, a JSON text as the `content` column takes it, and the insert triggers to
/// drop before a million rows.
pub(crate) fn bench_id(prefix: &str, width: usize) -> String {
    format!("'{prefix}' || lpad(CAST(i AS TEXT), {width}, '0')")
}
pub(crate) fn bench_json(text: &str) -> String {
    format!("CAST({text} AS JSONB)")
}
/// What the seeding runs after it (the planner would otherwise guess the fresh rows).
pub(crate) const BENCH_ANALYZE: Option<&str> = Some("ANALYZE messages, contacts");
/// What the statistics seeding runs after it: its ~640,000 deltas, folded, are dead rows of
/// `stat_deltas` that every fold (one before each read) would scan (4–40 ms a read) until
/// autovacuum's next round (`autovacuum_naptime`, a minute) clears them, as it would have
/// in production by then.
pub(crate) const BENCH_STATS_VACUUM: &str = "VACUUM ANALYZE";
pub(crate) const BENCH_INSERT_TRIGGERS: [&str; 1] = ["stat_messages_insert ON messages"];

/// Where Rust-kept statistics counters go (`shared/reaches.rs`), and how.
pub(crate) const STAT_ADD_TABLE: &str = "stat_deltas";
pub(crate) const STAT_ADD_SUFFIX: &str = "";

/// Where `stat_rows` reads (`shared/stats.rs`, `$1` application, `$2` span, `$3` from, `$4`
/// to): the blocks (migration 0045) that hold a bucket of the period.
pub(crate) const STAT_ROWS_FROM: &str = "stat_blocks WHERE application_id = $1 AND span = $2 \
     AND bucket > $3 - CAST(CASE $2 WHEN 'h' THEN 86400000 ELSE 2764800000 END AS BIGINT) AND bucket < $4";

pub(crate) const STAT_ROWS_SELECT: &str = "array_agg(b) AS b, array_agg(g) AS g, \
     array_agg(metric) AS metric, array_agg(detail) AS detail, array_agg(n) AS n";

/// A bucket's length and how many buckets a row of `stat_blocks` holds, per span (migration
/// 0045: `stat_slot_len`, `stat_slot_count`).
pub(crate) fn stat_block_shape(span: &str) -> (Millis, usize) {
    match span {
        "h" => (3_600_000, 24),
        _ => (86_400_000, 32),
    }
}

/// The elements of a two-dimensional `bigint[][]` in PostgreSQL's binary form, row by row (sqlx
/// decodes one dimension only), and the length of a row. `None` for SQL NULL.
fn int8_matrix(row: &DbRow, column: &str) -> Result<Option<(Vec<i64>, usize)>> {
    use sqlx::ValueRef;
    let corrupt = |what: &str| crate::StoreError::Corrupt(format!("statistics blocks: {what}"));
    let value = row.try_get_raw(column)?;
    if value.is_null() {
        return Ok(None);
    }
    let bytes = value
        .as_bytes()
        .map_err(|e| corrupt(&format!("not binary: {e}")))?;
    let mut words = bytes
        .chunks_exact(4)
        .map(|w| i32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    let (ndim, _has_null, _oid) = (words.next(), words.next(), words.next());
    let dims: Vec<i32> = match ndim {
        Some(0) => return Ok(Some((Vec::new(), 0))),
        Some(2) => {
            let d: Vec<i32> = words.by_ref().take(4).collect();
            if d.len() != 4 {
                return Err(corrupt("short header"));
            }
            vec![d[0], d[2]]
        }
        _ => return Err(corrupt("not a two-dimensional array")),
    };
    let (rows, width) = (
        usize::try_from(dims[0]).map_err(|_| corrupt("negative size"))?,
        usize::try_from(dims[1]).map_err(|_| corrupt("negative size"))?,
    );
    let mut rest = &bytes[(3 + 4) * 4..];
    let mut out = Vec::with_capacity(rows * width);
    for _ in 0..rows * width {
        let (len, tail) = rest.split_at_checked(4).ok_or_else(|| corrupt("short"))?;
        if i32::from_be_bytes([len[0], len[1], len[2], len[3]]) != 8 {
            return Err(corrupt("an element is not a bigint"));
        }
        let (v, tail) = tail.split_at_checked(8).ok_or_else(|| corrupt("short"))?;
        let mut b = [0u8; 8];
        b.copy_from_slice(v);
        out.push(i64::from_be_bytes(b));
        rest = tail;
    }
    Ok(Some((out, width)))
}

/// The statistics rows of `STAT_ROWS_SELECT` (`shared/stats.rs`) from the blocks (one array
/// per column, the blocks as one `bigint[][]`), each block's buckets within the period, summed.
/// Packed along time, an hourly view of 41 days is ~24 times fewer rows than one row per hour
/// (~69,000 for a year of 10 million messages, ~50 ms of the statement alone).
pub(crate) fn stat_rows_of(
    row: &DbRow,
    q: &crate::stats::StatQuery,
) -> Result<crate::stats::StatRows> {
    let b: Option<Vec<i64>> = row.try_get("b")?;
    let g: Option<Vec<String>> = row.try_get("g")?;
    let m: Option<Vec<String>> = row.try_get("metric")?;
    let d: Option<Vec<String>> = row.try_get("detail")?;
    let n = int8_matrix(row, "n")?;
    let (Some(b), Some(g), Some(m), Some(d), Some((n, width))) = (b, g, m, d, n) else {
        return Ok(Default::default());
    };
    let (len, count) = stat_block_shape(q.span.as_str());
    check_block_columns(
        "statistics rows",
        &[g.len(), m.len(), d.len()],
        &b,
        &n,
        (width, count),
    )?;
    // A block row's strings are numbered once (when it has a count in the period), its
    // buckets' counts added as integers.
    let mut sums = stats::CounterSums::new(&q.starts, n.len());
    let mut key = None;
    for (i, bucket, v) in block_cells(&b, &n, width, |_| len) {
        if bucket >= q.from && bucket < q.to {
            let k = match key {
                Some((row, k)) if row == i => k,
                _ => sums.key(&g[i], &m[i], &d[i]),
            };
            key = Some((i, k));
            sums.add(bucket, k, v);
        }
    }
    Ok(sums.finish())
}

/// Checks a block read's columns (`other` the lengths of the per-row columns besides `b`): one
/// entry per block row `b`, and `n` `width` counts a row, `width` being the span's `expected`.
fn check_block_columns(
    what: &str,
    other: &[usize],
    b: &[i64],
    n: &[i64],
    (width, expected): (usize, usize),
) -> Result<()> {
    if other
        .iter()
        .chain(&[n.len() / width.max(1)])
        .any(|l| *l != b.len())
        || width != expected
    {
        return Err(crate::StoreError::Corrupt(format!(
            "{what}: columns of different lengths"
        )));
    }
    Ok(())
}

/// The non-zero counts of a block read, as `(row, bucket, count)`: row `i`'s slots start at
/// its block `b[i]`, `len(i)` apart; `n` holds `width` counts a row.
fn block_cells<'a>(
    b: &'a [i64],
    n: &'a [i64],
    width: usize,
    len: impl Fn(usize) -> Millis + 'a,
) -> impl Iterator<Item = (usize, Millis, i64)> + 'a {
    b.iter().enumerate().flat_map(move |(i, block)| {
        let step = len(i);
        n[i * width..(i + 1) * width]
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .map(move |(slot, v)| (i, block + step * slot as i64, *v))
    })
}

/// The counters as rows of the old `stat_counters` table (`app` the application's parameter,
/// `ranges` the spans and periods read, as parameters: the caller bounds the buckets again),
/// for reads that group them in SQL: only the blocks that hold a bucket of a range, unpacked.
pub(crate) fn stat_counters_between(app: &str, ranges: &[(&str, String, String)]) -> String {
    let blocks: Vec<String> = ranges
        .iter()
        .map(|(span, from, to)| {
            let (len, count) = stat_block_shape(span);
            format!(
                "(b.span = '{span}' AND b.bucket > {from} - {} AND b.bucket < {to})",
                len * count as i64
            )
        })
        .collect();
    format!(
        "(SELECT b.application_id, b.span, b.bucket + (u.i - 1) * stat_slot_len(b.span) AS bucket, \
         b.metric, b.campaign_id, b.template, b.phone_number_id, b.category, b.country, b.origin, \
         b.detail, u.n FROM stat_blocks b CROSS JOIN LATERAL unnest(b.n) WITH ORDINALITY AS u(n, i) \
         WHERE b.application_id = {app} AND ({})) c",
        blocks.join(" OR ")
    )
}

/// The table the counters are kept in (the recount's fix empties it).
pub(crate) const STAT_COUNTERS_TABLE: &str = "stat_blocks";

/// The spend's read (`shared/pricing.rs`, `$1` application, `$2` from, `$3` to, then the
/// filters' values): the blocks (migration 0045) of the `delivered` and `charged` counters
/// that hold a day of the period, and the hour blocks of `days` (each a day's start and end
/// parameter), one array per column; whether the filters choose a block (`chosen_if`, every
/// block without one); the hour blocks padded to the day blocks' width, so that all are one
/// `bigint[][]`. `spend_rows_of` unpacks them: a year's ~7,300 day counters unpacked and
/// aggregated as JSON in SQL took ~30 ms, the ~1,300 blocks as arrays a few.
pub(crate) fn spend_sql(chosen_if: Option<&str>, days: &[(String, String)]) -> String {
    let (day_len, day_count) = stat_block_shape("d");
    let (hour_len, hour_count) = stat_block_shape("h");
    let mut spans = vec![format!(
        "(span = 'd' AND bucket > $2 - {} AND bucket < $3)",
        day_len * day_count as i64
    )];
    for (d, e) in days {
        spans.push(format!(
            "(span = 'h' AND bucket > {d} - {} AND bucket < {e})",
            hour_len * hour_count as i64
        ));
    }
    format!(
        "SELECT array_agg(span = 'h') AS h, array_agg(bucket) AS b, array_agg(country) AS country, \
         array_agg(metric) AS metric, \
         array_agg(CASE WHEN metric = 'charged' THEN detail ELSE category END) AS cat, \
         array_agg(origin) AS origin, array_agg({}) AS chosen, \
         array_agg(CASE span WHEN 'h' THEN n || array_fill(CAST(0 AS BIGINT), ARRAY[{}]) ELSE n END) AS n \
         FROM stat_blocks WHERE application_id = $1 AND metric IN ('delivered', 'charged') AND ({})",
        chosen_if.unwrap_or("TRUE"),
        day_count - hour_count,
        spans.join(" OR ")
    )
}

/// The spend's counters (`spend_sql`) unpacked from their blocks, each bucket within
/// `[from, to)`: a day's bucket unless the day is one of `hourly_days`, an hour's within one
/// of them; summed per day (or hour), country, metric, category and origin.
pub(crate) fn spend_rows_of(
    row: &DbRow,
    from: Millis,
    to: Millis,
    hourly_days: &[Millis],
) -> Result<Vec<crate::pricing::SpendCount>> {
    let h: Option<Vec<bool>> = row.try_get("h")?;
    let b: Option<Vec<i64>> = row.try_get("b")?;
    let country: Option<Vec<String>> = row.try_get("country")?;
    let metric: Option<Vec<String>> = row.try_get("metric")?;
    let cat: Option<Vec<String>> = row.try_get("cat")?;
    let origin: Option<Vec<String>> = row.try_get("origin")?;
    let chosen: Option<Vec<bool>> = row.try_get("chosen")?;
    let n = int8_matrix(row, "n")?;
    let (
        Some(h),
        Some(b),
        Some(country),
        Some(metric),
        Some(cat),
        Some(origin),
        Some(chosen),
        Some((n, width)),
    ) = (h, b, country, metric, cat, origin, chosen, n)
    else {
        return Ok(Vec::new());
    };
    let (day_len, day_count) = stat_block_shape("d");
    let (hour_len, _) = stat_block_shape("h");
    let other = [
        h.len(),
        country.len(),
        metric.len(),
        cat.len(),
        origin.len(),
        chosen.len(),
    ];
    check_block_columns("spend counters", &other, &b, &n, (width, day_count))?;
    let mut cells = Vec::new();
    let len = |i: usize| if h[i] { hour_len } else { day_len };
    for (i, bucket, v) in block_cells(&b, &n, width, len) {
        let wanted = if h[i] {
            hourly_days
                .iter()
                .any(|d| bucket >= *d && bucket < d.saturating_add(day_len))
        } else {
            !hourly_days.contains(&bucket)
        };
        if wanted && bucket >= from && bucket < to {
            cells.push(pricing::SpendRead(
                bucket,
                Cow::Borrowed(&country[i]),
                Cow::Borrowed(&metric[i]),
                Cow::Borrowed(&cat[i]),
                Cow::Borrowed(&origin[i]),
                v,
                if chosen[i] { v } else { 0 },
            ));
        }
    }
    Ok(pricing::sum_spend(cells))
}

/// Text as bound: PostgreSQL's, with U+0000 replaced.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    pg_text(s)
}

pub(crate) fn opt_text(s: Option<&str>) -> Option<Cow<'_, str>> {
    pg_opt_text(s)
}

/// A value as a JSONB parameter.
pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<Json<Value>> {
    jsonb(v)
}

impl PostgresStore {
    /// A read transaction whose statements share one snapshot.
    pub(crate) async fn read_tx(&self) -> Result<Tx> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?)
    }

    /// Reads and writes share the pool.
    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }
}

/// A filter connection lent to one bounded query: its statements stop after the budget
/// (`statement_timeout`), and dropping the lease before [`FilterLease::finish`] (the request's
/// future dropped: its client went away) cancels the running statement on the server
/// (`pg_cancel_backend`; dropping a sqlx query alone leaves it running) and closes the
/// connection, so the cancel cannot reach a later query.
pub(crate) struct FilterLease {
    conn: PoolConnection<Postgres>,
    pid: i32,
    /// Where the cancel goes: the main pool.
    pool: PgPool,
    running: Arc<AtomicUsize>,
    abandoned: Arc<AtomicU64>,
    armed: bool,
}

/// SQLSTATE `query_canceled`: the statement timeout, or a cancel.
const QUERY_CANCELED: &str = "57014";

impl PostgresStore {
    /// A filter connection whose statements stop after `budget`.
    pub(crate) async fn filter_lease(&self, budget: Duration) -> Result<FilterLease> {
        let mut conn = self.filter.acquire().await?;
        let ms = budget.as_millis().clamp(1, i32::MAX as u128);
        let pid: i32 = sqlx::query_scalar(
            "SELECT pg_backend_pid() FROM (SELECT set_config('statement_timeout', $1, false)) s",
        )
        .bind(format!("{ms}ms"))
        .fetch_one(&mut *conn)
        .await?;
        self.filter_running.fetch_add(1, Ordering::SeqCst);
        Ok(FilterLease {
            conn,
            pid,
            pool: self.pool.clone(),
            running: self.filter_running.clone(),
            abandoned: self.filter_abandoned.clone(),
            armed: true,
        })
    }
}

impl FilterLease {
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// The query's outcome: a statement stopped by its timeout is `TooExpensive`.
    pub(crate) async fn finish<T>(mut self, r: std::result::Result<T, sqlx::Error>) -> Result<T> {
        self.armed = false;
        match r {
            Ok(v) => Ok(v),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(QUERY_CANCELED) => {
                Err(crate::StoreError::TooExpensive)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for FilterLease {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        if !self.armed {
            return;
        }
        self.conn.close_on_drop();
        let (pool, pid, abandoned) = (self.pool.clone(), self.pid, self.abandoned.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                match sqlx::query_scalar::<_, bool>("SELECT pg_cancel_backend($1)")
                    .bind(pid)
                    .fetch_one(&pool)
                    .await
                {
                    Ok(true) => {
                        abandoned.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "could not cancel an abandoned filter query");
                    }
                }
            });
        }
    }
}

/// The database's clock in Unix milliseconds: leases never read a node's clock.
macro_rules! db_now_ms {
    () => {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
    };
}

#[path = "shared/rows.rs"]
mod rows;
pub(crate) use rows::*;
#[path = "shared/access.rs"]
mod access;
#[path = "shared/audience.rs"]
mod audience;
#[path = "shared/campaigns.rs"]
mod campaigns;
#[path = "shared/caps.rs"]
mod caps;
#[path = "shared/coexistence.rs"]
mod coexistence;
#[path = "shared/consent.rs"]
mod consent;
#[path = "shared/conversations.rs"]
mod conversations;
pub(crate) use conversations::{note_entry_point_in, upsert_conversation_in};
#[path = "shared/contact_identity.rs"]
mod contact_identity;
#[path = "shared/events.rs"]
mod events;
#[path = "shared/identity.rs"]
mod identity;
#[path = "shared/inbound.rs"]
mod inbound;
#[path = "shared/marketing.rs"]
mod marketing;
#[path = "shared/nodes.rs"]
mod nodes;
/// Holds a lease row while the claim made under it commits: a takeover waits for it.
macro_rules! share_lock {
    () => {
        " FOR SHARE"
    };
}
#[path = "shared/leases.rs"]
mod leases;
pub(crate) use events::insert_events_tx;
#[path = "shared/platforms.rs"]
mod platforms;
#[path = "shared/pricing.rs"]
mod pricing;
#[path = "shared/reaches.rs"]
mod reaches;
#[path = "shared/stats.rs"]
mod stats;
pub(crate) use reaches::{RECOUNT_REACHES, add_counters, record_reaches_in};
#[path = "shared/templates.rs"]
mod templates;
// `Store` itself; named so as not to shadow `::core`.
#[path = "shared/core.rs"]
mod store_impl;

// The campaign list page reads its contacts as the audience area maps them, and
// `Store::upsert_contacts` goes through the audience upsert, which keeps the tag index.
pub(crate) use audience::{audience_from_row, upsert_in};
pub(crate) use contact_identity::{learn_in, repoint_in, resolve_in};

/// Serializes every status and acceptance of these wamids until the transaction ends, taken
/// in one order (sorted) so two batches cannot wait on each other.
async fn lock_wamids<'a>(tx: &mut Tx, wamids: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut keys: Vec<String> = wamids
        .into_iter()
        .map(|w| pg_text(w).into_owned())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended(w, 0)) FROM unnest($1::text[]) WITH ORDINALITY AS t(w, n) ORDER BY n")
        .bind(keys)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Serializes the capped creates of one kind for one owner (`shared/caps.rs`) until the
/// transaction ends: under READ COMMITTED two creates would each count the rows committed
/// before them and both insert past the cap. The count that follows the lock is a new
/// statement, so it sees every create that held the lock before.
async fn lock_cap(tx: &mut Tx, key: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("cap:{key}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// PostgreSQL's `LIKE` tells case apart (the statistics' pricing patterns).
pub(crate) const LIKE_IGNORES_CASE: bool = false;

/// The merged rows' text as PostgreSQL will store it (before their statistics are counted).
fn normalize_status_rows(batch: &mut Batch) {
    for r in &mut batch.rows {
        r.wamid = r.wamid.as_deref().map(|w| pg_text(w).into_owned());
        r.error_message = r.error_message.as_deref().map(|m| pg_text(m).into_owned());
        r.pricing = r.pricing.as_deref().map(|p| pg_text(p).into_owned());
        r.pricing_category = r
            .pricing_category
            .as_deref()
            .map(|c| pg_text(c).into_owned());
    }
}

/// Switches the message statistics triggers off (`on`) or back on for this transaction
/// only (`parley.stat_writer`, transaction-local, read by the triggers' `WHEN`; migration
/// 0042): other transactions and nodes keep their triggers.
pub(crate) async fn suspend_stat_triggers(tx: &mut Tx, on: bool) -> Result<()> {
    sqlx::query("SELECT set_config('parley.stat_writer', $1, true)")
        .bind(if on { "rust" } else { "" })
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The contacts of `app` holding these BSUIDs (`Store::known_identities`), in one statement.
async fn read_known_identities(
    pool: &PgPool,
    app: &ApplicationId,
    bsuids: &[&str],
) -> Result<Vec<KnownIdentity>> {
    let bsuids: Vec<String> = bsuids.iter().map(|b| pg_text(b).into_owned()).collect();
    let rows = sqlx::query(
        "SELECT phone, bsuid, parent_bsuid, username FROM contacts
         WHERE application_id = $1 AND bsuid = ANY($2)",
    )
    .bind(app.as_str())
    .bind(bsuids)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(KnownIdentity {
                phone: row.try_get("phone")?,
                bsuid: row.try_get("bsuid")?,
                parent_bsuid: row.try_get("parent_bsuid")?,
                username: row.try_get("username")?,
            })
        })
        .collect()
}

/// Reads and locks the rows with these ids (`by = "id"`) or wamids (`by = "wamid"`).
async fn load_status_rows(
    tx: &mut Transaction<'static, Postgres>,
    batch: &mut Batch,
    by: &str,
    keys: &[&str],
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = keys.iter().map(|k| pg_text(k).into_owned()).collect();
    let sql = format!(
        "SELECT {STATUS_COLUMNS} FROM messages WHERE {by} = ANY($1) ORDER BY id FOR UPDATE"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(keys)
        .fetch_all(&mut **tx)
        .await?;
    for row in &rows {
        batch.add(status_row(row)?);
    }
    Ok(())
}

/// Deletes and hands back the statuses kept for these wamids before they were known.
async fn take_orphans(tx: &mut Tx, wamids: &[String]) -> Result<Vec<PgRow>> {
    let wamids: Vec<String> = wamids.iter().map(|w| pg_text(w).into_owned()).collect();
    Ok(sqlx::query(
        "DELETE FROM orphan_statuses WHERE wamid = ANY($1)
         RETURNING wamid, state, at, error_code, error_message",
    )
    .bind(wamids)
    .fetch_all(&mut **tx)
    .await?)
}

/// Writes the batch's merged rows back in one statement.
/// Its text is already as PostgreSQL stores it (`normalize_status_rows`).
async fn write_status_rows(tx: &mut Tx, batch: &Batch) -> Result<()> {
    let rows: Vec<String> = [true, false]
        .into_iter()
        .filter_map(|new_wamid| batch.dirty_json(new_wamid))
        .collect();
    for rows in rows {
        sqlx::query(
        "UPDATE messages AS m SET state = v.state, wamid = v.wamid, error_code = v.error_code,
           error_message = v.error_message, lease_until = NULL, updated_at = v.updated_at,
           sending_at = v.sending_at, accepted_at = v.accepted_at, sent_at = v.sent_at,
           delivered_at = v.delivered_at, read_at = v.read_at, failed_at = v.failed_at,
           pricing = COALESCE(v.p, m.pricing),
           pricing_category = CASE WHEN v.p IS NULL THEN m.pricing_category ELSE v.c END
         FROM jsonb_to_recordset($1::jsonb) AS v(id text, state text, wamid text, error_code bigint,
           error_message text, updated_at bigint, sending_at bigint, accepted_at bigint, sent_at bigint,
           delivered_at bigint, read_at bigint, failed_at bigint, p text, c text)
         WHERE m.id = v.id",
    )
    .bind(rows)
    .execute(&mut **tx)
    .await?;
    }
    Ok(())
}

/// Keeps statuses that named no known message, to fold in when their wamid becomes known.
async fn insert_orphans(tx: &mut Tx, orphans: &[&StatusChange]) -> Result<()> {
    let orphans: Vec<Value> = orphans
        .iter()
        .map(|c| {
            let mut o = orphan_json(c);
            o["wamid"] = Value::String(text(c.wamid.as_str()).into_owned());
            if let Some((_, m)) = &c.error {
                o["error_message"] = Value::String(text(m).into_owned());
            }
            o
        })
        .collect();
    sqlx::query(
        "INSERT INTO orphan_statuses (wamid, state, at, error_code, error_message)
         SELECT v.wamid, v.state, v.at, v.error_code, v.error_message
         FROM jsonb_to_recordset($1::jsonb) AS v(wamid text, state text, at bigint, error_code bigint,
           error_message text)
         ON CONFLICT (wamid, state) DO NOTHING",
    )
    .bind(Value::Array(orphans).to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends statuses to `status_log` (`Store::project_statuses`): one statement over the
/// columns as arrays.
async fn insert_status_log(tx: &mut Tx, rows: &[(i64, i64, &StatusChange)]) -> Result<()> {
    let mut events = Vec::with_capacity(rows.len());
    let mut ns = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    let mut wamids = Vec::with_capacity(rows.len());
    let mut states = Vec::with_capacity(rows.len());
    let mut ats = Vec::with_capacity(rows.len());
    let mut codes = Vec::with_capacity(rows.len());
    let mut messages = Vec::with_capacity(rows.len());
    for (event, n, c) in rows {
        events.push(*event);
        ns.push(i32::try_from(*n).unwrap_or(i32::MAX));
        ids.push(c.message_id.as_ref().map(|m| m.as_str()));
        wamids.push(pg_text(c.wamid.as_str()).into_owned());
        states.push(c.state.as_str());
        ats.push(c.at);
        codes.push(c.error.as_ref().map(|e| e.0));
        messages.push(c.error.as_ref().map(|e| pg_text(&e.1).into_owned()));
    }
    sqlx::query(
        "INSERT INTO status_log (event_id, n, message_id, wamid, state, at, error_code,
           error_message)
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[],
           $6::bigint[], $7::bigint[], $8::text[])
         ON CONFLICT (event_id, n) DO NOTHING",
    )
    .bind(events)
    .bind(ns)
    .bind(ids)
    .bind(wamids)
    .bind(states)
    .bind(ats)
    .bind(codes)
    .bind(messages)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Confirms quota ledger entries (see `CampaignStore::confirm_quota`): each contact counts
/// from its acceptance, and a slot its message reserved becomes a confirmed one.
pub(crate) async fn confirm_quota_rows(
    tx: &mut Transaction<'static, Postgres>,
    rows: &[crate::lattice::QuotaConfirmation<'_>],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows: Vec<crate::lattice::QuotaConfirmRow<'_>> = rows
        .iter()
        .map(|(scope, contact, id, at)| crate::lattice::QuotaConfirmRow {
            scope: pg_text(scope),
            contact: pg_text(contact),
            id,
            at: *at,
        })
        .collect();
    let json = serde_json::to_string(&rows).map_err(|e| corrupt("quota rows", e))?;
    sqlx::query(
        "INSERT INTO quota_reach (scope_key, contact, last_at, reserved_by)
         SELECT DISTINCT ON (v.scope, v.contact) v.scope, v.contact, v.at, NULL
         FROM jsonb_to_recordset($1::jsonb) AS v(scope text, contact text, at bigint)
         ON CONFLICT (scope_key, contact) DO NOTHING",
    )
    .bind(&json)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE quota_reach AS q SET last_at = GREATEST(q.last_at, v.at),
           reserved_by = CASE WHEN q.reserved_by = ANY(v.ids) THEN NULL ELSE q.reserved_by END
         FROM (SELECT scope, contact, MAX(at) AS at, array_agg(id) AS ids
               FROM jsonb_to_recordset($1::jsonb) AS r(scope text, contact text, id text, at bigint)
               GROUP BY scope, contact) AS v
         WHERE q.scope_key = v.scope AND q.contact = v.contact",
    )
    .bind(&json)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl PostgresStore {
    /// `Store::claim_due_messages` before sorting. Rows another node is claiming right now
    /// are skipped, not waited for; a row claimed and committed meanwhile fails the re-checked
    /// `state = 'queued'` and is left out.
    async fn claim_due(
        &self,
        fence: Option<&crate::Fence>,
        phone_number_id: &PhoneNumberId,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Option<Vec<MessageRecord>>> {
        let mut tx = self.tx().await?;
        if let Some(fence) = fence
            && !leases::fence_holds(&mut tx, fence).await?
        {
            tx.commit().await?;
            return Ok(None);
        }
        let rows = sqlx::query(concat!(
            "WITH due AS (
               SELECT id FROM messages
               WHERE phone_number_id = $1 AND state = 'queued' AND next_attempt_at <= $2
                 AND (campaign_id IS NULL OR EXISTS (
                   SELECT 1 FROM campaigns c WHERE c.id = messages.campaign_id AND c.state = 'running'))
                 AND ",
            lane_head!(),
            "
               ORDER BY next_attempt_at, id
               LIMIT $3
               FOR UPDATE SKIP LOCKED)
             UPDATE messages m SET state = 'sending', lease_until = $4, stale_since = NULL, attempts = m.attempts + 1,
               sending_at = COALESCE(m.sending_at, $2), updated_at = $2
             FROM due WHERE m.id = due.id
             RETURNING m.*"
        ))
        .bind(phone_number_id.as_str())
        .bind(now)
        .bind(i64::from(limit))
        .bind(lease_until)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(message_from_row)
            .collect::<Result<_>>()
            .map(Some)
    }

    /// `ConsentStore::record_pricing`: two `UPDATE`s over the updates as a JSON array
    /// (`w` wamid, `id` message id, `p` pricing, `c` category): by wamid, then by id where no
    /// message has the wamid. A message whose pricing is already the one named is not written
    /// (`delivered` repeats the pricing of `sent`; every write of a message runs the
    /// statistics trigger).
    pub(crate) async fn record_pricing_json(&self, json: &str) -> Result<u64> {
        let mut tx = self.tx().await?;
        let by_wamid = sqlx::query(
            "UPDATE messages SET pricing = j ->> 'p', pricing_category = j ->> 'c'
             FROM jsonb_array_elements($1::jsonb) AS j WHERE messages.wamid = j ->> 'w'
               AND (messages.pricing IS DISTINCT FROM (j ->> 'p') OR messages.pricing_category IS DISTINCT FROM (j ->> 'c'))",
        )
        .bind(json)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let by_id = sqlx::query(
            "UPDATE messages SET pricing = j ->> 'p', pricing_category = j ->> 'c'
             FROM jsonb_array_elements($1::jsonb) AS j
             WHERE j ->> 'id' IS NOT NULL AND messages.id = j ->> 'id'
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.wamid = j ->> 'w')
               AND (messages.pricing IS DISTINCT FROM (j ->> 'p') OR messages.pricing_category IS DISTINCT FROM (j ->> 'c'))",
        )
        .bind(json)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(by_wamid + by_id)
    }

    /// `Store::finish_webhook_events`: one `UPDATE` over the ids and notes as two arrays.
    async fn finish_events(tx: &mut Tx, done: &[(i64, Option<String>)], now: Millis) -> Result<()> {
        let ids: Vec<i64> = done.iter().map(|d| d.0).collect();
        let errors: Vec<Option<String>> = done
            .iter()
            .map(|d| d.1.as_deref().map(|e| text(e).into_owned()))
            .collect();
        sqlx::query(
            "UPDATE webhook_events AS w SET processed_at = $1, error = v.error, attempts = w.attempts + 1
             FROM unnest($2::bigint[], $3::text[]) AS v(id, error) WHERE w.id = v.id",
        )
        .bind(now)
        .bind(ids)
        .bind(errors)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Moves the statistics triggers' deltas into the counters, packed into their blocks
/// (migration 0045) and summed, in key order (two folds running at once then lock counter
/// rows in the same order and wait, never deadlock).
const FOLD_STAT_DELTAS: &str = "WITH moved AS (DELETE FROM stat_deltas RETURNING *)
    INSERT INTO stat_blocks (application_id, span, bucket, metric, campaign_id, template,
        phone_number_id, category, country, origin, detail, n)
    SELECT application_id, span, stat_block(span, bucket), metric, campaign_id, template,
        phone_number_id, category, country, origin, detail, stat_pack(span, bucket, n)
    FROM moved
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
    ON CONFLICT (application_id, span, bucket, metric, campaign_id, template, phone_number_id,
        category, country, origin, detail) DO UPDATE SET n = stat_add(stat_blocks.n, excluded.n)";

impl PostgresStore {
    /// The statistics triggers append deltas (no shared counter row is updated by the
    /// transactions that change messages); a read folds them first.
    pub(crate) async fn fold_stat_deltas(&self) -> Result<()> {
        sqlx::query(FOLD_STAT_DELTAS).execute(self.writer()).await?;
        Ok(())
    }
    pub(crate) async fn fold_stat_deltas_in(tx: &mut Tx) -> Result<()> {
        sqlx::query(FOLD_STAT_DELTAS).execute(&mut **tx).await?;
        Ok(())
    }
    /// Writers of the rows the counters come from wait until the recount commits.
    pub(crate) async fn lock_stat_sources(tx: &mut Tx) -> Result<()> {
        sqlx::query(
            "LOCK TABLE messages, inbound_messages, contact_subscription_events, limit_reaches IN SHARE MODE",
        )
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_replaced_in_text_and_json() {
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
        assert!(matches!(text("plain"), Cow::Borrowed(_)));
        let v = serde_json::json!({"k\0": ["x\0", {"y": "z\0"}], "n": 1});
        let Json(clean) = json(&v).expect("serializes");
        assert_eq!(
            clean,
            serde_json::json!({"k\u{FFFD}": ["x\u{FFFD}", {"y": "z\u{FFFD}"}], "n": 1})
        );
    }
}
