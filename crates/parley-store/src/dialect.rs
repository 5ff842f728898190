//! The small fragments of SQL text in which SQLite and PostgreSQL differ inside statements that
//! are otherwise written once: the segment compiler (`segment_sql.rs`) and the shared area
//! modules (`shared/*.rs`) ask the backend's [`Dialect`] for them. Whole statements that differ
//! stay per backend (see `docs/DECISIONS.md`).

use sqlx::{Postgres, QueryBuilder, Sqlite};

/// Which backend, for a statement text spliced in a `const` (`concat!` takes literals only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// One backend's SQL fragments.
pub(crate) trait Dialect: sqlx::Database {
    const KIND: Kind;
    /// A condition's literal truth values: SQLite has no booleans (1 and 0).
    const TRUE: &'static str;
    const FALSE: &'static str;
    /// Appended to a text expression that is compared or sorted by code point: SQLite's BINARY
    /// collation does that already, PostgreSQL's database collation would not.
    const BY_CODE_POINT: &'static str;
    /// The function giving the 1-based position of a substring, 0 when absent.
    const POSITION: &'static str;
    /// Casts appended to a tag index field read as an integer, a float and a Julian day
    /// (PostgreSQL's `->>` gives text; SQLite's `json_extract` gives the JSON number).
    const INT: &'static str;
    const FLOAT: &'static str;
    const DAY: &'static str;
    /// Around a test that only holds when its guard (the field's type) does: PostgreSQL may
    /// evaluate both sides of an `AND`, and a cast of a field of another type would fail, so it
    /// needs `CASE`.
    const GUARD: &'static str;
    const GUARD_THEN: &'static str;
    const GUARD_END: &'static str;

    /// Free text as bound (PostgreSQL text cannot hold U+0000).
    fn text(s: &str) -> String;
    /// `field` of tag `key` in `tag_index`, as text or the JSON value.
    fn tag_field(qb: &mut QueryBuilder<Self>, key: &str, field: &str);
    /// True when `tag_index` has tag `key`.
    fn tag_exists(qb: &mut QueryBuilder<Self>, key: &str);
    /// After a folded string field: true when it is one of `values` (by code point).
    fn one_of(qb: &mut QueryBuilder<Self>, values: &[String]);
    /// The stored form of a boolean tag's `b` field.
    fn bool_value(qb: &mut QueryBuilder<Self>, b: bool);
    /// True when list tag `key` has the (folded) element `needle`.
    fn list_has(qb: &mut QueryBuilder<Self>, key: &str, needle: &str);
}

impl Dialect for Sqlite {
    const KIND: Kind = Kind::Sqlite;
    const TRUE: &'static str = "1";
    const FALSE: &'static str = "0";
    const BY_CODE_POINT: &'static str = "";
    const POSITION: &'static str = "instr(";
    const INT: &'static str = "";
    const FLOAT: &'static str = "";
    const DAY: &'static str = "";
    const GUARD: &'static str = "(";
    const GUARD_THEN: &'static str = " AND ";
    const GUARD_END: &'static str = ")";

    fn text(s: &str) -> String {
        s.to_owned()
    }

    fn tag_field(qb: &mut QueryBuilder<Self>, key: &str, field: &str) {
        qb.push("json_extract(tag_index, ");
        // Keys are `[a-z0-9_-]` only (`tag_index::index_key`), safe inside a JSON path.
        qb.push_bind(format!("$.\"{key}\".{field}"));
        qb.push(")");
    }

    fn tag_exists(qb: &mut QueryBuilder<Self>, key: &str) {
        qb.push("(json_type(tag_index, ");
        qb.push_bind(format!("$.\"{key}\""));
        qb.push(") IS NOT NULL)");
    }

    fn one_of(qb: &mut QueryBuilder<Self>, values: &[String]) {
        qb.push(" IN (");
        let mut sep = qb.separated(", ");
        for v in values {
            sep.push_bind(v.clone());
        }
        qb.push(")");
    }

    fn bool_value(qb: &mut QueryBuilder<Self>, b: bool) {
        qb.push_bind(i64::from(b));
    }

    fn list_has(qb: &mut QueryBuilder<Self>, key: &str, needle: &str) {
        qb.push("EXISTS (SELECT 1 FROM json_each(tag_index, ");
        qb.push_bind(format!("$.\"{key}\".l"));
        qb.push(") WHERE value = ");
        qb.push_bind(needle.to_owned());
        qb.push(")");
    }
}

impl Dialect for Postgres {
    const KIND: Kind = Kind::Postgres;
    const TRUE: &'static str = "TRUE";
    const FALSE: &'static str = "FALSE";
    const BY_CODE_POINT: &'static str = " COLLATE \"C\"";
    const POSITION: &'static str = "strpos(";
    const INT: &'static str = "::bigint";
    const FLOAT: &'static str = "::float8";
    const DAY: &'static str = "::int";
    const GUARD: &'static str = "(CASE WHEN ";
    const GUARD_THEN: &'static str = " THEN ";
    const GUARD_END: &'static str = " ELSE FALSE END)";

    fn text(s: &str) -> String {
        crate::postgres::pg_text(s).into_owned()
    }

    fn tag_field(qb: &mut QueryBuilder<Self>, key: &str, field: &str) {
        qb.push("(tag_index -> ");
        qb.push_bind(key.to_owned());
        qb.push(" ->> '");
        qb.push(field);
        qb.push("')");
    }

    fn tag_exists(qb: &mut QueryBuilder<Self>, key: &str) {
        qb.push("jsonb_exists(tag_index, ");
        qb.push_bind(key.to_owned());
        qb.push(")");
    }

    fn one_of(qb: &mut QueryBuilder<Self>, values: &[String]) {
        qb.push(" = ANY(");
        qb.push_bind(values.iter().map(|v| Self::text(v)).collect::<Vec<_>>());
        qb.push(")");
    }

    fn bool_value(qb: &mut QueryBuilder<Self>, b: bool) {
        qb.push(if b { "'1'" } else { "'0'" });
    }

    fn list_has(qb: &mut QueryBuilder<Self>, key: &str, needle: &str) {
        qb.push("jsonb_exists(tag_index -> ");
        qb.push_bind(key.to_owned());
        qb.push(" -> 'l', ");
        qb.push_bind(Self::text(needle));
        qb.push(")");
    }
}
