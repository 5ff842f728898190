//! `parley migrate-store`: copies a SQLite store into a freshly migrated PostgreSQL database,
//! row for row, and proves it (count and checksum per table, computed on both sides).
//!
//! - **Every table.** The tables come from the schemas themselves (`sqlite_master`,
//!   `information_schema.tables`). Each must be in `COPIED_TABLES` (copied, in that order so
//!   foreign keys hold) or in `NOT_COPIED` (with the reason); any other table stops the move
//!   before anything is written, so a table a later migration adds cannot be left behind
//!   silently. The columns are read from the target's `information_schema.columns` and must
//!   be the source's, by name.
//! - **As stored.** Values are copied as they are: encrypted secrets stay the same ciphertext
//!   (the same master key reads them), JSON text becomes JSONB, SQLite's 0/1 booleans become
//!   PostgreSQL booleans.
//! - **Bounded memory.** The source is read in keyset batches by `rowid` (`BATCH` rows), each
//!   written with one multi-row `INSERT`; the target is read back as a stream.
//! - **Checked.** Per table, the digest is the sum (mod 2^128) of the first 16 bytes of the
//!   SHA-256 of each row's canonical text: the columns in name order, each `name=value` with
//!   the value typed (`N` null, `i` integer, `b` boolean, `t` text, `j` JSON with keys sorted
//!   and no spaces, `x` hex bytes, `r` float). A sum does not depend on the order rows are
//!   read in. The source's is computed as rows are read, the target's by reading the copied
//!   table back; count and digest must agree, else nothing is committed.
//! - **One transaction** on the target: a failed move leaves it as it was. The source is read
//!   in one read transaction (one snapshot).
//! - **Not while served.** A `parley serve` (or `parley demo`) writes a heartbeat row to
//!   `nodes` every 5 s and deletes it on a clean stop; a row seen in the last 30 s on either
//!   side stops the move.
//! - **Sequences.** Serial and identity columns are set past the highest copied value.

use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, TypeInfo, ValueRef};

use crate::nodes::NODE_STALE_MILLIS;

/// The tables copied, in an order that satisfies their foreign keys.
pub const COPIED_TABLES: &[&str] = &[
    "accounts",
    "applications",
    "users",
    "api_tokens",
    "platforms",
    "phone_numbers",
    "phone_number_history",
    "templates",
    "contacts",
    "messages",
    "orphan_statuses",
    "webhook_events",
    "webhook_bodies",
    "inbound_messages",
    "inbound_media",
    "conversations",
    "onboarding_sessions",
    "onboarding_steps",
    "contact_subscription_events",
    "segments",
    "import_jobs",
    "import_rejects",
    "campaigns",
    "quota_reach",
    "campaign_list_entries",
    "memberships",
    "sessions",
    "invites",
    "login_throttle",
    "audit_log",
    "coexistence_numbers",
    "app_messages",
    "event_endpoints",
    "events",
    "event_deliveries",
    "event_attempts",
    "price_tables",
    "limit_reaches",
    "send_lanes",
];

/// Tables left out on purpose, with why.
pub const NOT_COPIED: &[(&str, &str)] = &[
    (
        "campaign_counts",
        "SQLite's campaign counters kept by triggers; PostgreSQL counts from messages",
    ),
    (
        "campaign_hours",
        "SQLite's campaign counters kept by triggers; PostgreSQL counts from messages",
    ),
    (
        "stat_counters",
        "statistics counters: the target's triggers count the copied messages, inbound messages and opt-outs again, and the reach metrics are recounted from the copied limit_reaches",
    ),
    (
        "stat_deltas",
        "statistics deltas: the target's triggers count the copied rows again",
    ),
    (
        "stat_blocks",
        "PostgreSQL's statistics counters (packed along time, migration 0045): the target's triggers count the copied rows again",
    ),
    (
        "stat_suspend",
        "SQLite's switch for the statistics triggers (migration 0042): a row lives only inside a transaction that counts its own rows, so it is empty between transactions; PostgreSQL switches them with a transaction-local setting",
    ),
    (
        "status_log",
        "statuses copied ahead of their merge (migration 0048): each one's webhook event is copied pending and merged on the target",
    ),
    (
        "nodes",
        "the heartbeats of the source's own processes, not data",
    ),
    (
        "leases",
        "which of the source's processes owned which loop: the target's nodes take their own",
    ),
    (
        "_sqlx_migrations",
        "each database's own migration history (the target is migrated first)",
    ),
];

/// Rows read and written at once (fewer for wide tables: PostgreSQL takes 65,535 parameters).
pub const BATCH: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The move was refused or failed a check; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn refused(msg: impl Into<String>) -> TransferError {
    TransferError::Refused(msg.into())
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Delete the target's Parley data first instead of refusing a non-empty target.
    pub replace: bool,
    /// Rows per batch (`BATCH` when 0).
    pub batch: usize,
}

/// One table, moved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
    /// The order-independent digest of the rows (hex), equal on both sides.
    pub digest: String,
}

/// What the move reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// `rows` of `table` copied so far.
    Copying { table: &'a str, rows: u64 },
    /// The table is copied and its count and digest agree.
    Checked(&'a TableReport),
    /// A sequence was set past the copied values.
    Sequence { table: &'a str, column: &'a str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Bool,
    Text,
    Json,
    Bytes,
    Real,
}

impl Kind {
    fn of(table: &str, column: &str, pg_type: &str) -> Result<Kind, TransferError> {
        Ok(match pg_type {
            "bigint" | "integer" | "smallint" => Kind::Int,
            "boolean" => Kind::Bool,
            "text" | "character varying" | "character" => Kind::Text,
            "jsonb" | "json" => Kind::Json,
            "bytea" => Kind::Bytes,
            "double precision" | "real" | "numeric" => Kind::Real,
            other => {
                return Err(refused(format!(
                    "column {table}.{column} has the PostgreSQL type `{other}`, which migrate-store does not know how to copy (crates/parley-store/src/transfer.rs, Kind::of)"
                )));
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
    Real(f64),
}

/// Moves the SQLite store at `from` into the PostgreSQL database at `to`.
pub async fn sqlite_to_postgres(
    from: &str,
    to: &str,
    options: &Options,
    now: crate::Millis,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Vec<TableReport>, TransferError> {
    let path = from
        .strip_prefix("sqlite://")
        .or_else(|| from.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            refused(format!(
                "--from must be a SQLite URL (sqlite:///path/parley.db), not `{}`",
                redact(from)
            ))
        })?;
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        return Err(refused(format!(
            "--to must be a PostgreSQL URL (postgres://user:password@host/db), not `{}`",
            redact(to)
        )));
    }
    if !std::path::Path::new(path).is_file() {
        return Err(refused(format!("there is no SQLite database at {path}")));
    }
    let source = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
                .create_if_missing(false)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true),
        )
        .await?;
    // The source gets this version's schema, as `parley serve` would give it.
    crate::sqlite::MIGRATOR.run(&source).await?;
    let target = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect(to)
        .await?;
    crate::postgres::MIGRATOR.run(&target).await?;

    // Nobody serves either side.
    let since = now - NODE_STALE_MILLIS;
    let live = |rows: Vec<(String, String, i64, i64)>, side: &str| -> Result<(), TransferError> {
        if let Some((role, host, pid, seen)) = rows.into_iter().next() {
            return Err(refused(format!(
                "a Parley node is running on the {side}: a `{role}` node on {host} (pid {pid}) was seen {}s ago. Stop every `parley serve` and `parley demo` on it first (a node that was killed counts as running until 30 s after its last heartbeat)",
                (now - seen).max(0) / 1000
            )));
        }
        Ok(())
    };
    live(
        sqlx::query_as("SELECT role, host, pid, seen_at FROM nodes WHERE seen_at >= $1")
            .bind(since)
            .fetch_all(&source)
            .await?,
        "source",
    )?;
    live(
        sqlx::query_as("SELECT role, host, pid, seen_at FROM nodes WHERE seen_at >= $1")
            .bind(since)
            .fetch_all(&target)
            .await?,
        "target",
    )?;

    // Every table is known, on both sides.
    let source_tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .fetch_all(&source)
            .await?;
    let target_tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(&target)
    .await?;
    check_tables(&source_tables, &target_tables)?;

    // An empty target, unless told otherwise.
    let mut tx = target.begin().await?;
    for table in COPIED_TABLES {
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM {})",
            quote(table)
        )))
        .fetch_one(&mut *tx)
        .await?;
        if any && !options.replace {
            return Err(refused(format!(
                "the target database already holds Parley data (table `{table}` has rows); migrate-store copies into an empty database: create a fresh one, or pass --replace to delete the target's Parley data first"
            )));
        }
    }
    if options.replace {
        let all: Vec<String> = COPIED_TABLES.iter().map(|t| quote(t)).collect();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "TRUNCATE {} RESTART IDENTITY",
            all.join(", ")
        )))
        .execute(&mut *tx)
        .await?;
    }

    // One snapshot of the source.
    let mut src = source.begin().await?;
    let batch = if options.batch == 0 {
        BATCH
    } else {
        options.batch
    };
    let mut reports = Vec::new();
    for table in COPIED_TABLES {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(*table)
        .fetch_all(&mut *tx)
        .await?;
        let columns: Vec<(String, Kind)> = columns
            .into_iter()
            .map(|(name, ty)| Kind::of(table, &name, &ty).map(|k| (name, k)))
            .collect::<Result<_, _>>()?;
        let mut source_columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                .bind(*table)
                .fetch_all(&mut *src)
                .await?;
        source_columns.sort();
        let mut target_names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
        target_names.sort();
        if source_columns != target_names {
            return Err(refused(format!(
                "table `{table}` has columns {source_columns:?} in SQLite and {target_names:?} in PostgreSQL; both must be at the same schema version"
            )));
        }
        let per_batch = batch.clamp(1, 60_000 / columns.len().max(1));
        let list = columns
            .iter()
            .map(|(n, _)| quote(n))
            .collect::<Vec<_>>()
            .join(", ");
        // SQLite may keep JSON as its binary JSONB (the tag index does): read it as text.
        let read = columns
            .iter()
            .map(|(n, k)| match k {
                Kind::Json => format!(
                    "CASE WHEN typeof({c}) = 'blob' THEN json({c}) ELSE {c} END",
                    c = quote(n)
                ),
                _ => quote(n),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let select = format!(
            "SELECT rowid AS parley_rowid, {read} FROM {} WHERE rowid > $1 ORDER BY rowid LIMIT {per_batch}",
            quote(table)
        );
        let mut after = i64::MIN;
        let mut rows_copied = 0u64;
        let mut source_digest = 0u128;
        loop {
            let rows: Vec<SqliteRow> = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
                .bind(after)
                .fetch_all(&mut *src)
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("parley_rowid")?;
            let mut values = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut vals = Vec::with_capacity(columns.len());
                for (i, (name, kind)) in columns.iter().enumerate() {
                    vals.push(sqlite_value(row, i + 1, *kind, table, name)?);
                }
                source_digest = source_digest.wrapping_add(row_digest(&columns, &vals));
                values.push(vals);
            }
            insert(&mut tx, table, &columns, &list, &values).await?;
            rows_copied += values.len() as u64;
            progress(Progress::Copying {
                table,
                rows: rows_copied,
            });
            if rows.len() < per_batch {
                break;
            }
        }
        // Read back what PostgreSQL now holds.
        let select = columns
            .iter()
            .map(|(n, k)| match k {
                Kind::Int => format!("{}::bigint", quote(n)),
                Kind::Real => format!("{}::float8", quote(n)),
                Kind::Json => format!("{}::text", quote(n)),
                _ => quote(n),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {select} FROM {}", quote(table));
        let mut target_rows = 0u64;
        let mut target_digest = 0u128;
        {
            let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
            while let Some(row) = stream.next().await {
                let row = row?;
                let vals = columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, k))| pg_value(&row, i, *k))
                    .collect::<Result<Vec<_>, _>>()?;
                target_digest = target_digest.wrapping_add(row_digest(&columns, &vals));
                target_rows += 1;
            }
        }
        if target_rows != rows_copied || target_digest != source_digest {
            return Err(refused(format!(
                "table `{table}` did not arrive intact: {rows_copied} rows with digest {source_digest:032x} in SQLite, {target_rows} rows with digest {target_digest:032x} in PostgreSQL; nothing was committed"
            )));
        }
        let report = TableReport {
            table: (*table).to_owned(),
            rows: rows_copied,
            digest: format!("{source_digest:032x}"),
        };
        progress(Progress::Checked(&report));
        reports.push(report);
    }
    src.rollback().await?;

    // The counters kept from `limit_reaches` (no trigger counts them on the target): from the
    // copied rows, as `parley stats recount --fix` would, added as the triggers add (deltas
    // the next read folds into the counters' blocks).
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO stat_deltas (application_id, span, bucket, metric, campaign_id, template,
             phone_number_id, category, country, origin, detail, n)
         SELECT application_id, span, bucket, metric, campaign_id, template, phone_number_id,
             category, country, origin, detail, n FROM ({}) r",
        crate::postgres::RECOUNT_REACHES
    )))
    .execute(&mut *tx)
    .await?;

    // Serial and identity columns continue after the copied values.
    let serials: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() \
           AND (column_default LIKE 'nextval(%' OR is_identity = 'YES') ORDER BY 1, 2",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (table, column) in &serials {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT MAX({c}) FROM {t}), 0) + 1, false)",
            c = quote(column),
            t = quote(table)
        )))
        .bind(table)
        .bind(column)
        .execute(&mut *tx)
        .await?;
        progress(Progress::Sequence { table, column });
    }
    tx.commit().await?;
    Ok(reports)
}

/// Every table on either side is copied or left out on purpose; the copied ones exist on both.
fn check_tables(source: &[String], target: &[String]) -> Result<(), TransferError> {
    let known = |t: &str| COPIED_TABLES.contains(&t) || NOT_COPIED.iter().any(|(n, _)| *n == t);
    let mut problems = Vec::new();
    for (side, tables) in [("SQLite", source), ("PostgreSQL", target)] {
        for t in tables.iter().filter(|t| !known(t)) {
            problems.push(format!(
                "the {side} table `{t}` is unknown to migrate-store: add it to COPIED_TABLES (or NOT_COPIED, with the reason) in crates/parley-store/src/transfer.rs"
            ));
        }
        for t in COPIED_TABLES
            .iter()
            .filter(|t| !tables.iter().any(|x| x == *t))
        {
            problems.push(format!("the {side} database has no table `{t}`"));
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(refused(problems.join("; "))),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

/// A SQLite value (whatever its storage class) as the target column's kind.
fn sqlite_value(
    row: &SqliteRow,
    i: usize,
    kind: Kind,
    table: &str,
    column: &str,
) -> Result<Val, TransferError> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Val::Null);
    }
    let class = raw.type_info().name().to_owned();
    let stored = match class.as_str() {
        "INTEGER" => Val::Int(row.try_get(i)?),
        "REAL" => Val::Real(row.try_get(i)?),
        "TEXT" => Val::Text(row.try_get(i)?),
        _ => Val::Bytes(row.try_get(i)?),
    };
    let bad = |what: &str| {
        refused(format!(
            "{table}.{column} holds {what} where PostgreSQL expects {kind:?} (rowid {}); nothing was committed",
            row.try_get::<i64, _>(0).unwrap_or_default()
        ))
    };
    Ok(match (kind, stored) {
        (Kind::Int, Val::Int(v)) => Val::Int(v),
        (Kind::Int, Val::Real(f)) if f.fract() == 0.0 => Val::Int(f as i64),
        (Kind::Bool, Val::Int(v)) => Val::Bool(v != 0),
        (Kind::Text | Kind::Json, Val::Text(s)) => {
            if kind == Kind::Json && serde_json::from_str::<serde_json::Value>(&s).is_err() {
                return Err(bad("text that is not JSON"));
            }
            Val::Text(s)
        }
        (Kind::Text, Val::Int(v)) => Val::Text(v.to_string()),
        (Kind::Bytes, Val::Bytes(b)) => Val::Bytes(b),
        (Kind::Bytes, Val::Text(s)) => Val::Bytes(s.into_bytes()),
        (Kind::Real, Val::Real(f)) => Val::Real(f),
        (Kind::Real, Val::Int(v)) => Val::Real(v as f64),
        (_, Val::Bytes(b)) => return Err(bad(&format!("{} bytes", b.len()))),
        (_, other) => return Err(bad(&format!("{other:?}"))),
    })
}

fn pg_value(row: &PgRow, i: usize, kind: Kind) -> Result<Val, TransferError> {
    if row.try_get_raw(i)?.is_null() {
        return Ok(Val::Null);
    }
    Ok(match kind {
        Kind::Int => Val::Int(row.try_get(i)?),
        Kind::Bool => Val::Bool(row.try_get(i)?),
        Kind::Text | Kind::Json => Val::Text(row.try_get(i)?),
        Kind::Bytes => Val::Bytes(row.try_get(i)?),
        Kind::Real => Val::Real(row.try_get(i)?),
    })
}

async fn insert(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    table: &str,
    columns: &[(String, Kind)],
    list: &str,
    rows: &[Vec<Val>],
) -> Result<(), TransferError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = format!("INSERT INTO {} ({list}) VALUES ", quote(table));
    let mut n = 0;
    for (r, _) in rows.iter().enumerate() {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for (c, (_, kind)) in columns.iter().enumerate() {
            if c > 0 {
                sql.push_str(", ");
            }
            n += 1;
            match kind {
                Kind::Json => sql.push_str(&format!("${n}::jsonb")),
                _ => sql.push_str(&format!("${n}")),
            }
        }
        sql.push(')');
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        for (v, (_, kind)) in row.iter().zip(columns) {
            query = match (kind, v) {
                (Kind::Int, Val::Int(x)) => query.bind(Some(*x)),
                (Kind::Int, _) => query.bind(None::<i64>),
                (Kind::Bool, Val::Bool(x)) => query.bind(Some(*x)),
                (Kind::Bool, _) => query.bind(None::<bool>),
                (Kind::Text | Kind::Json, Val::Text(x)) => query.bind(Some(x.clone())),
                (Kind::Text | Kind::Json, _) => query.bind(None::<String>),
                (Kind::Bytes, Val::Bytes(x)) => query.bind(Some(x.clone())),
                (Kind::Bytes, _) => query.bind(None::<Vec<u8>>),
                (Kind::Real, Val::Real(x)) => query.bind(Some(*x)),
                (Kind::Real, _) => query.bind(None::<f64>),
            };
        }
    }
    query.execute(&mut **tx).await.map_err(|e| {
        refused(format!(
            "copying into `{table}` failed: {e}; nothing was committed"
        ))
    })?;
    Ok(())
}

/// The row's canonical text, hashed: columns in name order, values typed (see the module doc).
fn row_digest(columns: &[(String, Kind)], vals: &[Val]) -> u128 {
    let mut order: Vec<usize> = (0..columns.len()).collect();
    order.sort_by(|a, b| columns[*a].0.cmp(&columns[*b].0));
    let mut text = String::new();
    for i in order {
        let (name, kind) = &columns[i];
        text.push_str(name);
        text.push('=');
        match &vals[i] {
            Val::Null => text.push('N'),
            Val::Int(v) => text.push_str(&format!("i{v}")),
            Val::Bool(v) => text.push_str(if *v { "b1" } else { "b0" }),
            Val::Text(s) if *kind == Kind::Json => {
                text.push('j');
                match serde_json::from_str::<serde_json::Value>(s) {
                    Ok(v) => canonical_json(&v, &mut text),
                    Err(_) => text.push_str(s),
                }
            }
            Val::Text(s) => {
                text.push('t');
                text.push_str(s);
            }
            Val::Bytes(b) => {
                text.push('x');
                text.push_str(&hex::encode(b));
            }
            Val::Real(f) => text.push_str(&format!("r{f:?}")),
        }
        text.push('\u{1f}');
    }
    let hash = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(first)
}

/// JSON with object keys sorted, no spaces, integral numbers as integers.
fn canonical_json(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => {
                out.push_str(&(f as i64).to_string())
            }
            (_, _, Some(f)) => out.push_str(&format!("{f:?}")),
            _ => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_digests_ignore_key_order_spacing_and_number_spelling() {
        let cols = vec![("doc".to_owned(), Kind::Json)];
        let a = row_digest(&cols, &[Val::Text(r#"{"b":1,"a":[1.0,"x"]}"#.into())]);
        let b = row_digest(&cols, &[Val::Text(r#"{"a": [1, "x"], "b": 1}"#.into())]);
        assert_eq!(a, b);
        let c = row_digest(&cols, &[Val::Text(r#"{"a": [2, "x"], "b": 1}"#.into())]);
        assert_ne!(a, c);
    }

    #[test]
    fn an_unknown_table_stops_the_move() {
        let mut tables: Vec<String> = COPIED_TABLES.iter().map(|t| (*t).to_owned()).collect();
        assert!(check_tables(&tables, &tables).is_ok());
        tables.push("made_up_table".into());
        let err = check_tables(&tables, &tables)
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("`made_up_table` is unknown to migrate-store"),
            "{err}"
        );
        let err = check_tables(&tables[1..], &tables)
            .expect_err("missing")
            .to_string();
        assert!(err.contains("no table `accounts`"), "{err}");
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("postgres://u:pw@db/x"), "postgres://***@db/x");
    }
}
