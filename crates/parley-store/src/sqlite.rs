//! The SQLite backend: one file, WAL, `synchronous=NORMAL`, one writer connection (SQLite
//! serializes writers anyway; one connection avoids "database is locked") and a read pool.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parley_domain::{ApplicationId, MessageState, PhoneNumberId};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::lattice::{Batch, LoadedRow, STATUS_COLUMNS, orphan_json};
use crate::types::*;
use crate::{Millis, Result, SecretCipher, StoreError, corrupt};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one writing connection; area modules (`sqlite_*.rs`) write through it.
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    /// Bounded filter queries (segment counts and previews) run here, apart from `reader`.
    pub(crate) filter: SqlitePool,
    /// Filter queries holding a `filter` connection now.
    pub(crate) filter_running: Arc<AtomicUsize>,
    /// Filter statements interrupted because their request was dropped.
    pub(crate) filter_abandoned: Arc<AtomicU64>,
    pub(crate) cipher: SecretCipher,
    /// Wake-ups inside this process (one process per SQLite file).
    pub(crate) wakeups: crate::Wakeups,
    /// Alive while any clone of this store is: the background checkpointer stops when the
    /// last clone is dropped (`checkpoint_in_background`).
    _alive: Arc<()>,
}

/// The writer copies the WAL into the database file itself (SQLite's automatic checkpoint)
/// only once the WAL holds this many pages (~8 MB); below that a background connection does
/// it (`checkpoint_in_background`).
const WRITER_CHECKPOINT_PAGES: u32 = 2_000;

/// How often the background connection copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub async fn open(path: &Path, cipher: SecretCipher) -> Result<Self> {
        let io = |e: std::io::Error| StoreError::Database(sqlx::Error::Io(e));
        if let Some(dir) = path.parent() {
            crate::files::create_parent_dir(dir).map_err(io)?;
        }
        // The database, its WAL and shared-memory files are 0600 (SQLite gives the last two
        // the database file's mode); an existing install's files are tightened here too.
        crate::files::create_private_file(path).map_err(io)?;
        crate::files::tighten_file(path).map_err(io)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", WRITER_CHECKPOINT_PAGES.to_string()),
            )
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone().read_only(true))
            .await?;
        let filter = SqlitePoolOptions::new()
            .max_connections(crate::audience::FILTER_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone().read_only(true))
            .await?;
        let alive = Arc::new(());
        checkpoint_in_background(options.create_if_missing(false), Arc::downgrade(&alive));
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            crate::files::tighten_file(Path::new(&side)).map_err(io)?;
        }
        Ok(SqliteStore {
            writer,
            reader,
            filter,
            filter_running: Arc::default(),
            filter_abandoned: Arc::default(),
            cipher,
            wakeups: crate::Wakeups::local(),
            _alive: alive,
        })
    }

    pub(crate) async fn tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Copies the WAL into the database file from a connection of its own, every
/// [`CHECKPOINT_EVERY`], until `alive` is gone. SQLite's automatic checkpoint runs in the
/// committing connection: on the one writer it cost ~3 µs per merged status row (the pages a
/// batch dirtied copied and synced at its commit), while the writer's next batch waited. A
/// passive checkpoint needs no lock the writer takes, so this runs beside it (on another
/// core); the writer still checkpoints itself past [`WRITER_CHECKPOINT_PAGES`] (a WAL can
/// only start over from a transaction that begins once everything is copied, which a busy
/// writer rarely meets), which bounds the WAL if this connection falls behind or fails.
fn checkpoint_in_background(options: SqliteConnectOptions, alive: std::sync::Weak<()>) {
    tokio::spawn(async move {
        let mut conn: Option<SqliteConnection> = None;
        loop {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            if alive.strong_count() == 0 {
                break;
            }
            if conn.is_none() {
                use sqlx::Connection as _;
                match SqliteConnection::connect_with(&options).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::debug!(error = %e, "WAL checkpointer: no connection");
                        continue;
                    }
                }
            }
            if let Some(c) = conn.as_mut()
                && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&mut *c)
                    .await
            {
                tracing::debug!(error = %e, "WAL checkpoint failed");
                conn = None;
            }
        }
        if let Some(c) = conn {
            use sqlx::Connection as _;
            let _ = c.close().await;
        }
    });
}

/// A JSON column as `T`; a document that does not fit is `Corrupt`, not a decode panic.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| corrupt(col, e))
}

/// A nullable JSON column: `NULL` is `None`.
pub(crate) fn opt_json_col(row: &SqliteRow, col: &str) -> Result<Option<serde_json::Value>> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(col, e)))
        .transpose()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| corrupt("serialize", e))
}

// The vocabulary the shared modules (`shared/*.rs`) are written in; `postgres.rs` defines the
// same names for PostgreSQL.
pub(crate) type DbRow = SqliteRow;
pub(crate) type Backend = SqliteStore;
pub(crate) type Tx = Transaction<'static, Sqlite>;

/// The statistics rows (`b, g, metric, detail, n`) as one JSON array of arrays, as text.
/// Rows of `cols` as one JSON array of arrays, as text (NULL or `[]` when there are none):
/// a page read in one hand-over.
pub(crate) fn json_rows(cols: &str) -> String {
    format!("json_group_array(json_array({cols}))")
}

/// The SQL of a page of campaign outcomes (`shared/stats.rs`): `select`'s rows (columns
/// `names`) as one JSON array of arrays, since sqlx hands SQLite rows over one by one.
pub(crate) fn outcome_page_sql(select: &str, names: &str) -> String {
    format!("SELECT {} AS rows FROM ({select}) p", json_rows(names))
}
/// The page of `outcome_page_sql`'s one row.
pub(crate) fn outcome_page(rows: Vec<DbRow>) -> Result<crate::stats::CampaignOutcomePage> {
    let json = match rows.first() {
        Some(row) => row.try_get("rows")?,
        None => None,
    };
    Ok(crate::stats::CampaignOutcomePage::new(json))
}
/// `parley bench stats`' seeding (`shared/stats.rs`): `prefix` and `i` zero-padded to
/// `width` digits, a JSON text as the `content` column takes it, and the insert triggers to
/// drop before a million rows.
pub(crate) fn bench_id(prefix: &str, width: usize) -> String {
    format!("printf('{prefix}%0{width}d', i)")
}
pub(crate) fn bench_json(text: &str) -> String {
    text.to_owned()
}
/// What the seeding runs after it (none on SQLite: the seeding stays as it was measured before).
pub(crate) const BENCH_ANALYZE: Option<&str> = None;
/// What the statistics seeding runs after it: SQLite has no deltas to clear away.
pub(crate) const BENCH_STATS_VACUUM: &str = "ANALYZE";
pub(crate) const BENCH_INSERT_TRIGGERS: [&str; 2] =
    ["stat_messages_insert", "campaign_counts_insert"];

/// Where Rust-kept statistics counters go (`shared/reaches.rs`), and how.
pub(crate) const STAT_ADD_TABLE: &str = "stat_counters";
pub(crate) const STAT_ADD_SUFFIX: &str = " ON CONFLICT (application_id, span, bucket, metric, campaign_id, template, phone_number_id, category, country, origin, detail) DO UPDATE SET n = stat_counters.n + excluded.n";

/// Where `stat_rows` reads (`shared/stats.rs`, `$1` application, `$2` span, `$3` from, `$4`
/// to): the counters of the period, one per bucket.
pub(crate) const STAT_ROWS_FROM: &str = "stat_counters WHERE application_id = $1 AND span = $2 \
     AND bucket >= $3 AND bucket < $4 AND n <> 0";

pub(crate) const STAT_ROWS_SELECT: &str =
    "json_group_array(json_array(b, g, metric, detail, n)) AS rows";

/// A counter row as read (`b, g, metric, detail, n`), its text borrowed from the JSON where
/// it has no escapes.
#[derive(serde::Deserialize)]
struct CounterRow<'a>(
    Millis,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    i64,
);

/// The statistics rows of `STAT_ROWS_SELECT` (`shared/stats.rs`), summed: one JSON array,
/// since sqlx hands SQLite rows over one by one, which cost more than the query.
pub(crate) fn stat_rows_of(
    row: &DbRow,
    q: &crate::stats::StatQuery,
) -> Result<crate::stats::StatRows> {
    let json: Option<String> = row.try_get("rows")?;
    let Some(json) = json else {
        return Ok(Default::default());
    };
    let rows: Vec<CounterRow<'_>> = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("statistics rows: {e}")))?;
    let mut sums = stats::CounterSums::new(&q.starts, rows.len());
    for r in &rows {
        let key = sums.key(&r.1, &r.2, &r.3);
        sums.add(r.0, key, r.4);
    }
    Ok(sums.finish())
}

/// The counters as rows (`app` the application's parameter, `ranges` the spans and periods
/// read: the caller bounds the buckets again), for reads that group them in SQL: SQLite keeps
/// them so.
pub(crate) fn stat_counters_between(_app: &str, _ranges: &[(&str, String, String)]) -> String {
    "stat_counters".to_owned()
}

/// The table the counters are kept in (the recount's fix empties it).
pub(crate) const STAT_COUNTERS_TABLE: &str = "stat_counters";

/// The spend's read (`shared/pricing.rs`, `$1` application, `$2` from, `$3` to, then the
/// filters' values): the `delivered` and `charged` counters of the period, day rows except on
/// `days` (each a day's start and end parameter), those days' hour rows; each with `n` and
/// the `n` the filters choose (`chosen_if`, all of them without one), as one JSON array.
pub(crate) fn spend_sql(chosen_if: Option<&str>, days: &[(String, String)]) -> String {
    let chosen = chosen_if.map_or("n".to_owned(), |c| {
        format!("CASE WHEN {c} THEN n ELSE 0 END")
    });
    let spans = if days.is_empty() {
        "span = 'd'".to_owned()
    } else {
        let not_these: Vec<String> = days.iter().map(|(d, _)| format!("bucket <> {d}")).collect();
        let these: Vec<String> = days
            .iter()
            .map(|(d, e)| format!("(bucket >= {d} AND bucket < {e})"))
            .collect();
        format!(
            "((span = 'd' AND {}) OR (span = 'h' AND ({})))",
            not_these.join(" AND "),
            these.join(" OR ")
        )
    };
    format!(
        "SELECT {} AS rows FROM (SELECT bucket, country, metric, \
         CASE WHEN metric = 'charged' THEN detail ELSE category END AS cat, origin, n, \
         {chosen} AS chosen FROM stat_counters \
         WHERE application_id = $1 AND {spans} AND bucket >= $2 AND bucket < $3 \
         AND metric IN ('delivered', 'charged') AND n <> 0) t",
        json_rows("bucket, country, metric, cat, origin, n, chosen"),
    )
}

/// The spend's counters (`spend_sql`) summed per day (or hour), country, metric, category and
/// origin.
pub(crate) fn spend_rows_of(
    row: &DbRow,
    _from: Millis,
    _to: Millis,
    _hourly_days: &[Millis],
) -> Result<Vec<crate::pricing::SpendCount>> {
    let json: Option<String> = row.try_get("rows")?;
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let read: Vec<pricing::SpendRead<'_>> = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("spend counters: {e}")))?;
    Ok(pricing::sum_spend(read))
}

/// Text as bound: SQLite stores any text as it is.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

pub(crate) fn opt_text(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(text)
}

/// A value as a JSON parameter (SQLite keeps JSON as text).
pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    to_json(v)
}

impl SqliteStore {
    /// A read transaction on a read connection: its statements share one snapshot (WAL).
    pub(crate) async fn read_tx(&self) -> Result<Tx> {
        Ok(self.reader.begin().await?)
    }

    /// Where reads go: the read-only pool.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Where writes go: the one writing connection.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

/// Virtual-machine steps between two looks at the clock during a bounded query.
const PROGRESS_STEPS: i32 = 1_000;

/// A filter connection lent to one bounded query, with a progress handler that interrupts the
/// statement at its deadline, or as soon as the lease is dropped before [`FilterLease::finish`]
/// (the request's future dropped: its client went away).
pub(crate) struct FilterLease {
    conn: PoolConnection<Sqlite>,
    /// Set on an early drop: the handler interrupts at its next look.
    stop: Arc<AtomicBool>,
    /// Set by the handler when it interrupted at the deadline.
    timed_out: Arc<AtomicBool>,
    running: Arc<AtomicUsize>,
    armed: bool,
}

impl SqliteStore {
    /// A filter connection whose statements stop after `budget`.
    pub(crate) async fn filter_lease(&self, budget: Duration) -> Result<FilterLease> {
        let mut conn = self.filter.acquire().await?;
        let stop = Arc::new(AtomicBool::new(false));
        let timed_out = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + budget;
        {
            let mut handle = conn.lock_handle().await?;
            let (stop, timed_out) = (stop.clone(), timed_out.clone());
            let abandoned = self.filter_abandoned.clone();
            let mut counted = false;
            // `false` interrupts the running statement (SQLITE_INTERRUPT).
            handle.set_progress_handler(PROGRESS_STEPS, move || {
                if stop.load(Ordering::Relaxed) {
                    if !counted {
                        counted = true;
                        abandoned.fetch_add(1, Ordering::SeqCst);
                    }
                    return false;
                }
                if Instant::now() >= deadline {
                    timed_out.store(true, Ordering::Relaxed);
                    return false;
                }
                true
            });
        }
        self.filter_running.fetch_add(1, Ordering::SeqCst);
        Ok(FilterLease {
            conn,
            stop,
            timed_out,
            running: self.filter_running.clone(),
            armed: true,
        })
    }
}

impl FilterLease {
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// The query's outcome: an interrupt at the deadline is `TooExpensive`.
    pub(crate) async fn finish<T>(mut self, r: std::result::Result<T, sqlx::Error>) -> Result<T> {
        self.armed = false;
        if let Ok(mut handle) = self.conn.lock_handle().await {
            handle.remove_progress_handler();
        }
        match r {
            Ok(v) => Ok(v),
            Err(_) if self.timed_out.load(Ordering::Relaxed) => Err(StoreError::TooExpensive),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for FilterLease {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.armed {
            // The statement may still run on the connection's worker thread: stop it.
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// The database's clock in Unix milliseconds: leases never read a node's clock.
macro_rules! db_now_ms {
    () => {
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
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
/// SQLite's one writer already keeps a takeover from passing a claim's transaction.
macro_rules! share_lock {
    () => {
        ""
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

/// A JSON array of strings, for `… IN (SELECT value FROM json_each(?))`.
pub(crate) fn json_strings<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::Value::Array(
        items
            .into_iter()
            .map(|s| serde_json::Value::String(s.to_owned()))
            .collect(),
    )
    .to_string()
}

/// Reads the rows with these ids (`by = "id"`) or wamids (`by = "wamid"`) into the batch.
/// SQLite hands them over as one JSON array in one row: sqlx's driver moves every row to the
/// async side on its own, which cost more than the lookups themselves.
async fn load_status_rows(
    tx: &mut Transaction<'static, Sqlite>,
    batch: &mut Batch,
    by: &str,
    keys: &[&str],
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT json_group_array(json_array({STATUS_COLUMNS})) FROM messages
         WHERE {by} IN (SELECT value FROM json_each($1))"
    );
    let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(json_strings(keys.iter().copied()))
        .fetch_one(&mut **tx)
        .await?;
    let rows: Vec<LoadedRow> =
        serde_json::from_str(&rows).map_err(|e| corrupt("status rows", e))?;
    for r in rows {
        batch.add(r.into_row()?);
    }
    Ok(())
}

/// The contacts of `app` holding these BSUIDs (`Store::known_identities`), in one statement
/// answering one row: the round's statuses name a BSUID each, and sqlx's driver hands every
/// row to the async side on its own (a row per status cost ~4.8 µs a status in the webhook
/// bench, read as 500 bound values a statement).
async fn read_known_identities(
    pool: &SqlitePool,
    app: &ApplicationId,
    bsuids: &[&str],
) -> Result<Vec<KnownIdentity>> {
    #[derive(serde::Deserialize)]
    struct Known(String, String, Option<String>, Option<String>);
    let rows: String = sqlx::query_scalar(
        "SELECT json_group_array(json_array(phone, bsuid, parent_bsuid, username)) FROM contacts
         WHERE application_id = $1 AND bsuid IN (SELECT value FROM json_each($2))",
    )
    .bind(app.as_str())
    .bind(json_strings(bsuids.iter().copied()))
    .fetch_one(pool)
    .await?;
    let rows: Vec<Known> =
        serde_json::from_str(&rows).map_err(|e| corrupt("known identities", e))?;
    Ok(rows
        .into_iter()
        .map(
            |Known(phone, bsuid, parent_bsuid, username)| KnownIdentity {
                phone,
                bsuid,
                parent_bsuid,
                username,
            },
        )
        .collect())
}

/// SQLite's `LIKE` ignores the case of ASCII letters (the statistics' pricing patterns).
pub(crate) const LIKE_IGNORES_CASE: bool = true;

/// Nothing to adjust: SQLite stores any text as it is.
fn normalize_status_rows(_batch: &mut Batch) {}

/// Switches the message statistics triggers off (`on`) or back on for this transaction: a
/// row in `stat_suspend` (migration 0042), seen only by this transaction (the one writer)
/// and deleted before it commits (a crash rolls it back).
pub(crate) async fn suspend_stat_triggers(tx: &mut Tx, on: bool) -> Result<()> {
    let sql = if on {
        "INSERT INTO stat_suspend (id) VALUES (1)"
    } else {
        "DELETE FROM stat_suspend"
    };
    sqlx::query(sql).execute(&mut **tx).await?;
    Ok(())
}

/// Deletes and hands back the statuses kept for these wamids before they were known.
async fn take_orphans(tx: &mut Tx, wamids: &[String]) -> Result<Vec<SqliteRow>> {
    Ok(sqlx::query(
        "DELETE FROM orphan_statuses WHERE wamid IN (SELECT value FROM json_each($1))
         RETURNING wamid, state, at, error_code, error_message",
    )
    .bind(json_strings(wamids.iter().map(String::as_str)))
    .fetch_all(&mut **tx)
    .await?)
}

/// Writes the batch's merged rows back: one statement per set of columns the merges changed
/// (`Batch::dirty_by_columns`), each row a JSON array of its id and those columns' values.
/// Every merged row loses its lease, as before. Writing all twelve columns for every row
/// read each from a JSON object (`->> 'name'`) and cost ~7 µs a row in the webhook bench; a
/// `delivered` writes four.
async fn write_status_rows(tx: &mut Tx, batch: &Batch) -> Result<()> {
    use crate::lattice::Column;
    for (bits, rows) in batch.dirty_by_columns() {
        let mut set = String::from("lease_until = NULL");
        let mut k = 1;
        for c in Column::ALL.iter().filter(|&&c| bits & (1 << c as u16) != 0) {
            let names: &[&str] = match c {
                Column::State => &["state"],
                Column::Error => &["error_code", "error_message"],
                Column::UpdatedAt => &["updated_at"],
                Column::SendingAt => &["sending_at"],
                Column::AcceptedAt => &["accepted_at"],
                Column::SentAt => &["sent_at"],
                Column::DeliveredAt => &["delivered_at"],
                Column::ReadAt => &["read_at"],
                Column::FailedAt => &["failed_at"],
                Column::Pricing => &["pricing", "pricing_category"],
                Column::Wamid => &["wamid"],
            };
            for name in names {
                set.push_str(&format!(", {name} = j.value ->> {k}"));
                k += 1;
            }
        }
        let mut json = Vec::with_capacity(rows.len() * 64);
        json.push(b'[');
        for (n, &i) in rows.iter().enumerate() {
            if n > 0 {
                json.push(b',');
            }
            let r = &batch.rows[i];
            let mut row: Vec<serde_json::Value> = vec![r.id.as_str().into()];
            for c in Column::ALL.iter().filter(|&&c| bits & (1 << c as u16) != 0) {
                match c {
                    Column::State => row.push(r.state.as_str().into()),
                    Column::Error => {
                        row.push(r.error_code.into());
                        row.push(r.error_message.as_deref().into());
                    }
                    Column::UpdatedAt => row.push(r.updated_at.into()),
                    Column::SendingAt => row.push(r.sending_at.into()),
                    Column::AcceptedAt => row.push(r.accepted_at.into()),
                    Column::SentAt => row.push(r.sent_at.into()),
                    Column::DeliveredAt => row.push(r.delivered_at.into()),
                    Column::ReadAt => row.push(r.read_at.into()),
                    Column::FailedAt => row.push(r.failed_at.into()),
                    Column::Pricing => {
                        row.push(r.pricing.as_deref().into());
                        row.push(r.pricing_category.as_deref().into());
                    }
                    Column::Wamid => row.push(r.wamid.as_deref().into()),
                }
            }
            serde_json::to_writer(&mut json, &row).map_err(|e| corrupt("status rows", e))?;
        }
        json.push(b']');
        let json = String::from_utf8(json).map_err(|e| corrupt("status rows", e))?;
        let sql = format!(
            "UPDATE messages SET {set} FROM jsonb_each($1) AS j WHERE messages.id = j.value ->> 0"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(json)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Keeps statuses that named no known message, to fold in when their wamid becomes known.
async fn insert_orphans(tx: &mut Tx, orphans: &[&StatusChange]) -> Result<()> {
    let orphans: Vec<serde_json::Value> = orphans.iter().map(|c| orphan_json(c)).collect();
    sqlx::query(
        "INSERT INTO orphan_statuses (wamid, state, at, error_code, error_message)
         SELECT j.value ->> 'wamid', j.value ->> 'state', j.value ->> 'at', j.value ->> 'error_code',
           j.value ->> 'error_message'
         FROM jsonb_each($1) AS j WHERE true
         ON CONFLICT (wamid, state) DO NOTHING",
    )
    .bind(serde_json::Value::Array(orphans).to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends statuses to `status_log` (`Store::project_statuses`): multi-row `VALUES` of bound
/// parameters, [`STATUS_LOG_ROWS`] rows a statement (one statement text for every full
/// chunk, so it is prepared once). Extracting eight fields a row from a JSON array cost about
/// as much as the insert itself.
async fn insert_status_log(tx: &mut Tx, rows: &[(i64, i64, &StatusChange)]) -> Result<()> {
    for chunk in rows.chunks(STATUS_LOG_ROWS) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO status_log (event_id, n, message_id, wamid, state, at, error_code,
               error_message) ",
        );
        q.push_values(chunk, |mut b, (event, n, c)| {
            b.push_bind(*event)
                .push_bind(*n)
                .push_bind(c.message_id.as_ref().map(|m| m.as_str().to_owned()))
                .push_bind(c.wamid.as_str().to_owned())
                .push_bind(c.state.as_str())
                .push_bind(c.at)
                .push_bind(c.error.as_ref().map(|e| e.0))
                .push_bind(c.error.as_ref().map(|e| e.1.clone()));
        });
        q.push(" ON CONFLICT (event_id, n) DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Rows per `status_log` insert: 8 parameters each, within SQLite's 32,766.
const STATUS_LOG_ROWS: usize = 500;

/// Nothing to lock: the one writer connection already runs every status and acceptance batch
/// one after the other (PostgreSQL takes advisory locks here).
async fn lock_wamids<'a>(_tx: &mut Tx, _wamids: impl IntoIterator<Item = &'a str>) -> Result<()> {
    Ok(())
}

/// Nothing to lock before a capped create counts its kind (`shared/caps.rs`): the
/// transaction began `IMMEDIATE`, so it holds SQLite's one write lock from its count to its
/// commit, and no other create can count or insert in between.
async fn lock_cap(_tx: &mut Tx, _key: &str) -> Result<()> {
    Ok(())
}

/// Confirms quota ledger entries (see `CampaignStore::confirm_quota`): each contact counts
/// from its acceptance, and a slot its message reserved becomes a confirmed one.
///
/// The rows are grouped per (scope, contact) here (a contact twice in one batch keeps its
/// latest reach, and whichever of its messages held the reservation releases it), so each
/// ledger row is looked up once: the reserved ones are updated, then the rest inserted.
pub(crate) async fn confirm_quota_rows(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[crate::lattice::QuotaConfirmation<'_>],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    #[derive(serde::Serialize)]
    struct Group<'a> {
        scope: &'a str,
        contact: &'a str,
        at: Millis,
        ids: Vec<&'a str>,
    }
    let mut index: foldhash::HashMap<(&str, &str), usize> = foldhash::HashMap::default();
    let mut groups: Vec<Group<'_>> = Vec::with_capacity(rows.len());
    for &(scope, contact, id, at) in rows {
        match index.get(&(scope, contact)) {
            Some(&i) => {
                let g = &mut groups[i];
                g.at = g.at.max(at);
                g.ids.push(id);
            }
            None => {
                index.insert((scope, contact), groups.len());
                groups.push(Group {
                    scope,
                    contact,
                    at,
                    ids: vec![id],
                });
            }
        }
    }
    let json = serde_json::to_string(&groups).map_err(|e| corrupt("quota rows", e))?;
    sqlx::query(
        "UPDATE quota_reach SET last_at = MAX(quota_reach.last_at, j.value ->> 'at'),
           reserved_by = CASE WHEN quota_reach.reserved_by IN (SELECT value FROM json_each(j.value -> 'ids'))
                              THEN NULL ELSE quota_reach.reserved_by END
         FROM jsonb_each($1) AS j
         WHERE quota_reach.scope_key = j.value ->> 'scope' AND quota_reach.contact = j.value ->> 'contact'",
    )
    .bind(&json)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO quota_reach (scope_key, contact, last_at, reserved_by)
         SELECT j.value ->> 'scope', j.value ->> 'contact', j.value ->> 'at', NULL FROM jsonb_each($1) AS j WHERE true
         ON CONFLICT (scope_key, contact) DO NOTHING",
    )
    .bind(&json)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    /// `Store::claim_due_messages` before sorting: the due batch is read as one JSON row (see
    /// `load_status_rows`), then moved to `sending`; the one writer keeps two claims apart.
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
        let json: String = sqlx::query_scalar(concat!(
            "SELECT json_group_array(json_object('id', id, 'application_id', application_id,
               'phone_number_id', phone_number_id, 'contact_id', contact_id, 'to_phone', to_phone,
               'content', json(content), 'reply_to', reply_to, 'state', state, 'wamid', wamid,
               'error_code', error_code, 'error_message', error_message, 'attempts', attempts,
               'next_attempt_at', next_attempt_at, 'queued_at', queued_at, 'sending_at', sending_at,
               'accepted_at', accepted_at, 'sent_at', sent_at, 'delivered_at', delivered_at,
               'read_at', read_at, 'failed_at', failed_at, 'updated_at', updated_at,
               'send_window', send_window, 'lane_seq', lane_seq))
             FROM (SELECT * FROM messages
               WHERE phone_number_id = $1 AND state = 'queued' AND next_attempt_at <= $2
                 AND (campaign_id IS NULL OR EXISTS (
                   SELECT 1 FROM campaigns c WHERE c.id = messages.campaign_id AND c.state = 'running'))
                 AND ",
            lane_head!(),
            "
               ORDER BY next_attempt_at, id LIMIT $3)"
            ),
        )
        .bind(phone_number_id.as_str())
        .bind(now)
        .bind(i64::from(limit))
        .fetch_one(&mut *tx)
        .await?;
        let mut out: Vec<MessageRecord> =
            serde_json::from_str(&json).map_err(|e| corrupt("claimed messages", e))?;
        if out.is_empty() {
            tx.rollback().await?;
            return Ok(Some(out));
        }
        sqlx::query(
            "UPDATE messages SET state = 'sending', lease_until = $1, stale_since = NULL, attempts = attempts + 1,
               sending_at = COALESCE(sending_at, $2), updated_at = $2
             WHERE id IN (SELECT value FROM json_each($3))",
        )
        .bind(lease_until)
        .bind(now)
        .bind(json_strings(out.iter().map(|m| m.id.as_str())))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for m in &mut out {
            m.state = MessageState::Sending;
            m.attempts += 1;
            m.sending_at = Some(m.sending_at.unwrap_or(now));
            m.updated_at = now;
        }
        Ok(Some(out))
    }

    /// `ConsentStore::record_pricing`: two `UPDATE`s over the updates as a JSON array
    /// (`w` wamid, `id` message id, `p` pricing, `c` category): by wamid, then by id where no
    /// message has the wamid. A message whose pricing is already the one named is not written
    /// (`delivered` repeats the pricing of `sent`; every write of a message runs the
    /// statistics trigger).
    pub(crate) async fn record_pricing_json(&self, json: &str) -> Result<u64> {
        let mut tx = self.tx().await?;
        let by_wamid = sqlx::query(
            "UPDATE messages SET pricing = j.value ->> 'p', pricing_category = j.value ->> 'c'
             FROM json_each($1) AS j WHERE messages.wamid = j.value ->> 'w'
               AND (messages.pricing IS NOT (j.value ->> 'p') OR messages.pricing_category IS NOT (j.value ->> 'c'))",
        )
        .bind(json)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let by_id = sqlx::query(
            "UPDATE messages SET pricing = j.value ->> 'p', pricing_category = j.value ->> 'c'
             FROM json_each($1) AS j
             WHERE j.value ->> 'id' IS NOT NULL AND messages.id = j.value ->> 'id'
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.wamid = j.value ->> 'w')
               AND (messages.pricing IS NOT (j.value ->> 'p') OR messages.pricing_category IS NOT (j.value ->> 'c'))",
        )
        .bind(json)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(by_wamid + by_id)
    }

    /// `Store::finish_webhook_events`: one `UPDATE` over the events as a JSON array.
    async fn finish_events(tx: &mut Tx, done: &[(i64, Option<String>)], now: Millis) -> Result<()> {
        let json = serde_json::Value::Array(
            done.iter()
                .map(|(id, error)| serde_json::json!({"id": id, "error": error}))
                .collect(),
        )
        .to_string();
        sqlx::query(
            "UPDATE webhook_events SET processed_at = $1, error = j.value ->> 'error', attempts = attempts + 1
             FROM jsonb_each($2) AS j WHERE webhook_events.id = j.value ->> 'id'",
        )
        .bind(now)
        .bind(json)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl SqliteStore {
    /// PostgreSQL folds its triggers' deltas into the counters; SQLite's triggers update the
    /// counters directly (one writer), so there is nothing to fold.
    pub(crate) async fn fold_stat_deltas(&self) -> Result<()> {
        Ok(())
    }
    pub(crate) async fn fold_stat_deltas_in(_tx: &mut Tx) -> Result<()> {
        Ok(())
    }
    /// SQLite's write transaction already keeps other writers out.
    pub(crate) async fn lock_stat_sources(tx: &mut Tx) -> Result<()> {
        // Take the write lock now (a deferred transaction would take it at the first write).
        sqlx::query("DELETE FROM stat_deltas WHERE 0")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
