//! Both backends' migrations build the same schema: the same tables, the same columns per
//! table (by name: the types are each dialect's own) and the same index names. Migrations stay
//! per backend, so this is what keeps them from drifting apart; the few differences that are
//! on purpose are listed below with why, and the test fails as well when one of them goes away
//! (so the list cannot go stale).
//!
//! Indexes that back a primary key or `UNIQUE` constraint are left out: each database names
//! them itself (`sqlite_autoindex_…`, `…_pkey`, `…_key`), and the constraints are part of the
//! tables both migrations create.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Connection;

use crate::backend::Backend;

/// Tables only SQLite has: a campaign's statistics kept as counters by triggers (migration
/// 0009, SQLite only), so that reading them, which the console and the API poll while a
/// campaign runs, costs the same for ten messages or a million. PostgreSQL counts with a
/// `GROUP BY` over `messages_campaign` instead.
/// `stat_suspend` (0042): the row a writer that counts its own statistics inserts to switch the
/// message triggers off for its transaction (PostgreSQL uses a transaction-local setting).
const SQLITE_ONLY_TABLES: &[&str] = &["campaign_counts", "campaign_hours", "stat_suspend"];

/// Tables only PostgreSQL has: `stat_blocks` (0045), its statistics counters packed along
/// time (a row per day of hours, per 32 days of days), which PostgreSQL's reads scan ~24
/// times fewer rows of.
const POSTGRES_ONLY_TABLES: &[&str] = &["stat_blocks"];

/// SQLite's tables that are views on PostgreSQL, with the same columns: `stat_counters`, a
/// view of `stat_blocks` (0045) with a row per counter, as SQLite keeps them.
const POSTGRES_VIEWS: &[&str] = &["stat_counters"];

/// Indexes only SQLite has: with the counters above, SQLite needs an index of a campaign's
/// queued messages only (0008 replaced `messages_campaign` with it).
const SQLITE_ONLY_INDEXES: &[&str] = &["messages_campaign_queued"];

/// Indexes only PostgreSQL has:
/// - `messages_campaign`: its campaign counts read every message of the campaign (see above);
/// - `contacts_tags`: a GIN index for JSONB tag filters (`tags ? 'vip'`), which SQLite lacks;
/// - `contacts_app_phone_c`: keyset pages by phone in code-point order (`COLLATE "C"`),
///   whatever the database locale; SQLite's default collation already is code-point order,
///   so its `UNIQUE (application_id, phone)` index serves.
const POSTGRES_ONLY_INDEXES: &[&str] =
    &["contacts_app_phone_c", "contacts_tags", "messages_campaign"];

/// sqlx's own bookkeeping, not Parley's schema.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

#[derive(Debug)]
struct Schema {
    /// Table name → column names.
    tables: BTreeMap<String, BTreeSet<String>>,
    indexes: BTreeSet<String>,
}

async fn sqlite_schema(url: &str) -> Schema {
    let mut c = sqlx::SqliteConnection::connect(url)
        .await
        .expect("connect SQLite");
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
           AND name <> $1 ORDER BY name",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut c)
    .await
    .expect("SQLite tables");
    let mut tables = BTreeMap::new();
    for name in names {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
            .bind(&name)
            .fetch_all(&mut c)
            .await
            .expect("SQLite columns");
        tables.insert(name, columns.into_iter().collect());
    }
    // Constraint indexes have no `sql` (SQLite made them, no CREATE INDEX did).
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
    )
    .fetch_all(&mut c)
    .await
    .expect("SQLite indexes");
    Schema {
        tables,
        indexes: indexes.into_iter().collect(),
    }
}

async fn postgres_schema(url: &str) -> Schema {
    let mut c = sqlx::PgConnection::connect(url)
        .await
        .expect("connect PostgreSQL");
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = 'public' AND c.table_name <> $1
           AND (t.table_type = 'BASE TABLE' OR (t.table_type = 'VIEW' AND c.table_name = ANY($2)))",
    )
    .bind(MIGRATIONS_TABLE)
    .bind(POSTGRES_VIEWS)
    .fetch_all(&mut c)
    .await
    .expect("PostgreSQL columns");
    let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (table, column) in columns {
        tables.entry(table).or_default().insert(column);
    }
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT i.indexname::text FROM pg_indexes i
         WHERE i.schemaname = 'public' AND i.tablename <> $1
           AND NOT EXISTS (
             SELECT 1 FROM pg_constraint k
             JOIN pg_namespace n ON n.oid = k.connamespace
             WHERE n.nspname = 'public' AND k.conname = i.indexname)",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut c)
    .await
    .expect("PostgreSQL indexes");
    let _ = c.close().await;
    Schema {
        tables,
        indexes: indexes.into_iter().collect(),
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_have_the_same_tables_columns_and_indexes() {
    let lite = Backend::sqlite().await;
    let pg = Backend::postgres().await;
    let mut l = sqlite_schema(lite.url()).await;
    let mut p = postgres_schema(pg.url()).await;

    for table in SQLITE_ONLY_TABLES {
        assert!(
            l.tables.remove(*table).is_some(),
            "SQLite has no table {table} any more: take it off SQLITE_ONLY_TABLES"
        );
        assert!(
            !p.tables.contains_key(*table),
            "PostgreSQL has the table {table} now: take it off SQLITE_ONLY_TABLES"
        );
    }
    for table in POSTGRES_ONLY_TABLES {
        assert!(
            p.tables.remove(*table).is_some(),
            "PostgreSQL has no table {table} any more: take it off POSTGRES_ONLY_TABLES"
        );
        assert!(
            !l.tables.contains_key(*table),
            "SQLite has the table {table} now: take it off POSTGRES_ONLY_TABLES"
        );
    }
    let lite_tables: BTreeSet<&String> = l.tables.keys().collect();
    let pg_tables: BTreeSet<&String> = p.tables.keys().collect();
    assert_eq!(
        lite_tables, pg_tables,
        "tables (SQLite left, PostgreSQL right)"
    );
    for (table, columns) in &l.tables {
        assert_eq!(
            columns, &p.tables[table],
            "columns of {table} (SQLite left, PostgreSQL right)"
        );
    }

    let (lite_only, pg_only) = (set(SQLITE_ONLY_INDEXES), set(POSTGRES_ONLY_INDEXES));
    assert!(
        lite_only.is_subset(&l.indexes) && lite_only.is_disjoint(&p.indexes),
        "SQLITE_ONLY_INDEXES is out of date: SQLite {:?}, PostgreSQL {:?}",
        l.indexes,
        p.indexes
    );
    assert!(
        pg_only.is_subset(&p.indexes) && pg_only.is_disjoint(&l.indexes),
        "POSTGRES_ONLY_INDEXES is out of date: SQLite {:?}, PostgreSQL {:?}",
        l.indexes,
        p.indexes
    );
    let lite_indexes: BTreeSet<&String> = l.indexes.difference(&lite_only).collect();
    let pg_indexes: BTreeSet<&String> = p.indexes.difference(&pg_only).collect();
    assert_eq!(
        lite_indexes, pg_indexes,
        "indexes (SQLite left, PostgreSQL right)"
    );
    assert!(!lite_indexes.is_empty(), "no index was read at all");

    lite.finish().await;
    pg.finish().await;
}
