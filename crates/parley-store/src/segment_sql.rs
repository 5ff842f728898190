//! Segment filters compiled to SQL over the tag index of `tag_index.rs` (column `tag_index`):
//! one walk of the tree for both backends, with the few fragments that differ from the
//! backend's `Dialect` (`dialect.rs`). The semantics are `parley_domain::segment`'s, and the
//! store tests check SQL against `Segment::matches` on random contacts and filters.
//!
//! - The filter is first lowered to [`Cond`]: `!=`, `in`, `not in` become `exists`/`not`/`or`
//!   as the module documentation of `segment` defines them, and each value is turned into the
//!   comparable form the index holds (folded text, f64, Julian day, instant key), computed
//!   with the same Rust functions as the evaluator.
//! - Every leaf is wrapped in `COALESCE(…, FALSE)`: a missing tag yields false, never NULL, so
//!   `NOT` behaves as in memory.
//! - `and`/`or` chains are flattened (`Expr::operands`) and rendered as balanced trees:
//!   SQLite refuses expression trees deeper than 1,000.
//! - Every value and every tag name is a bind parameter (names inside bound JSON paths on
//!   SQLite, bound keys on PostgreSQL); only fixed SQL text is pushed.

use parley_domain::{CompareOp, Expr, Segment, Value};
use sqlx::{Database, Encode, QueryBuilder, Type};
use time::OffsetDateTime;

use crate::dialect::Dialect;
use crate::tag_index::{index_key, instant_key, utc_date};

/// A lowered condition over the tag index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    True,
    False,
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Exists(String),
    /// A string tag equal (after folding) to one of these folded values.
    StrIn(String, Vec<String>),
    /// A string tag against a string, by code point.
    StrCmp(String, CompareOp, String),
    /// A number tag against an integer: exact for integer tags, as f64 for float tags.
    IntCmp(String, CompareOp, i64),
    /// A number tag against a float, as f64.
    FloatCmp(String, CompareOp, f64),
    BoolEq(String, bool),
    /// A date-like tag's (UTC) date against a Julian day.
    DateCmp(String, CompareOp, i32),
    /// A date-like tag against an instant: dates by its UTC date (None: out of range),
    /// instants exactly.
    TimeCmp(String, CompareOp, Option<i32>, String),
    /// A list tag with this folded element, or a string tag with this folded substring.
    Contains(String, String),
    /// The contact has this identity (a phone number, a business-scoped user id), from its
    /// columns rather than its tags.
    Identity(Identity),
}

/// The identities `exists(…)` reads from a contact's columns (META_2026 §3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    /// `exists(phone)`: Parley knows the E.164 number (`contacts.phone` is the address, the
    /// BSUID when the phone is not known; migration 0015).
    Phone,
    /// `exists(bsuid)`: Meta named the person by a business-scoped user id.
    Bsuid,
}

pub(crate) fn lower(segment: &Segment, now: OffsetDateTime) -> Cond {
    lower_expr(segment.expr(), now)
}

fn lower_expr(e: &Expr, now: OffsetDateTime) -> Cond {
    match e {
        Expr::All => Cond::True,
        Expr::And(..) => Cond::And(
            e.operands()
                .into_iter()
                .map(|o| lower_expr(o, now))
                .collect(),
        ),
        Expr::Or(..) => Cond::Or(
            e.operands()
                .into_iter()
                .map(|o| lower_expr(o, now))
                .collect(),
        ),
        Expr::Not(inner) => Cond::Not(Box::new(lower_expr(inner, now))),
        Expr::Exists { tag } => {
            let key = index_key(tag);
            // A tag of that name counts too: identities never hide a tag.
            match key.as_str() {
                "phone" => Cond::Or(vec![Cond::Identity(Identity::Phone), Cond::Exists(key)]),
                "bsuid" => Cond::Or(vec![Cond::Identity(Identity::Bsuid), Cond::Exists(key)]),
                _ => Cond::Exists(key),
            }
        }
        Expr::Compare { tag, op, value } => {
            let key = index_key(tag);
            match op {
                CompareOp::Ne => Cond::And(vec![
                    Cond::Exists(key.clone()),
                    Cond::Not(Box::new(compare(&key, CompareOp::Eq, value, now))),
                ]),
                _ => compare(&key, *op, value, now),
            }
        }
        Expr::In {
            tag,
            values,
            negated,
        } => {
            let key = index_key(tag);
            let mut strings = Vec::new();
            let mut others = Vec::new();
            for v in values {
                match v {
                    Value::String(s) => strings.push(parley_domain::fold_case(s)),
                    other => others.push(compare(&key, CompareOp::Eq, other, now)),
                }
            }
            if !strings.is_empty() {
                others.insert(0, Cond::StrIn(key.clone(), strings));
            }
            let any = Cond::Or(others);
            if *negated {
                Cond::And(vec![Cond::Exists(key), Cond::Not(Box::new(any))])
            } else {
                any
            }
        }
        Expr::Contains { tag, value } => match value {
            Value::String(s) => Cond::Contains(index_key(tag), parley_domain::fold_case(s)),
            _ => Cond::False,
        },
    }
}

fn compare(key: &str, op: CompareOp, value: &Value, now: OffsetDateTime) -> Cond {
    let key = key.to_owned();
    match value {
        Value::String(s) => match op {
            CompareOp::Eq => Cond::StrIn(key, vec![parley_domain::fold_case(s)]),
            _ => Cond::StrCmp(key, op, s.clone()),
        },
        Value::Integer(i) => Cond::IntCmp(key, op, *i),
        Value::Float(f) => Cond::FloatCmp(key, op, *f),
        Value::Boolean(b) => match op {
            CompareOp::Eq => Cond::BoolEq(key, *b),
            _ => Cond::False,
        },
        Value::Date(d) => Cond::DateCmp(key, op, d.to_julian_day()),
        Value::Relative { .. } => match value.resolve_time(now) {
            Some(at) => Cond::TimeCmp(
                key,
                op,
                utc_date(at).map(|d| d.to_julian_day()),
                instant_key(at),
            ),
            None => Cond::False,
        },
    }
}

fn sql_op(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => " = ",
        CompareOp::Ne => " <> ",
        CompareOp::Lt => " < ",
        CompareOp::Le => " <= ",
        CompareOp::Gt => " > ",
        CompareOp::Ge => " >= ",
    }
}

/// Pushes the condition as an expression over `tag_index` that is never NULL: 1 or 0 on SQLite,
/// a boolean on PostgreSQL.
pub(crate) fn push<D>(qb: &mut QueryBuilder<D>, cond: &Cond)
where
    D: Dialect,
    i32: for<'a> Encode<'a, D> + Type<D>,
    i64: for<'a> Encode<'a, D> + Type<D>,
    f64: for<'a> Encode<'a, D> + Type<D>,
    String: for<'a> Encode<'a, D> + Type<D>,
{
    Walk(qb).cond(cond);
}

/// One walk of the tree for both dialects; only leaf fragments come from `D`.
struct Walk<'q, D: Database>(&'q mut QueryBuilder<D>);

impl<D> Walk<'_, D>
where
    D: Dialect,
    i32: for<'a> Encode<'a, D> + Type<D>,
    i64: for<'a> Encode<'a, D> + Type<D>,
    f64: for<'a> Encode<'a, D> + Type<D>,
    String: for<'a> Encode<'a, D> + Type<D>,
{
    fn push(&mut self, sql: &str) -> &mut Self {
        self.0.push(sql);
        self
    }

    fn field(&mut self, key: &str, field: &str) -> &mut Self {
        D::tag_field(self.0, key, field);
        self
    }

    fn bind<T: for<'a> Encode<'a, D> + Type<D>>(&mut self, v: T) -> &mut Self {
        self.0.push_bind(v);
        self
    }

    fn cond(&mut self, cond: &Cond) {
        match cond {
            Cond::True => {
                self.push(D::TRUE);
            }
            Cond::False => {
                self.push(D::FALSE);
            }
            Cond::And(items) => self.chain(items, " AND ", D::TRUE),
            Cond::Or(items) => self.chain(items, " OR ", D::FALSE),
            Cond::Not(inner) => {
                self.push("(NOT ");
                self.cond(inner);
                self.push(")");
            }
            leaf => {
                self.push("COALESCE(");
                self.leaf(leaf);
                self.push(", ").push(D::FALSE).push(")");
            }
        }
    }

    fn chain(&mut self, items: &[Cond], op: &str, empty: &str) {
        match items {
            [] => {
                self.push(empty);
            }
            [one] => self.cond(one),
            _ => {
                let (a, b) = items.split_at(items.len() / 2);
                self.push("(");
                self.chain(a, op, empty);
                self.push(op);
                self.chain(b, op, empty);
                self.push(")");
            }
        }
    }

    /// `test`, when tag `key`'s type field `t` passes `types` (e.g. ` = 's'`), else false.
    fn typed(&mut self, key: &str, types: &str, test: impl FnOnce(&mut Self)) {
        self.push(D::GUARD)
            .field(key, "t")
            .push(types)
            .push(D::GUARD_THEN);
        test(self);
        self.push(D::GUARD_END);
    }

    fn leaf(&mut self, leaf: &Cond) {
        match leaf {
            Cond::Exists(key) => D::tag_exists(self.0, key),
            Cond::Identity(Identity::Phone) => {
                self.push("(phone LIKE '+%')");
            }
            Cond::Identity(Identity::Bsuid) => {
                self.push("(bsuid IS NOT NULL)");
            }
            Cond::StrIn(key, values) => self.typed(key, " = 's'", |w| {
                w.field(key, "f").push(D::BY_CODE_POINT);
                D::one_of(w.0, values);
            }),
            Cond::StrCmp(key, op, v) => self.typed(key, " = 's'", |w| {
                w.field(key, "s").push(D::BY_CODE_POINT).push(sql_op(*op));
                w.bind(D::text(v));
            }),
            Cond::IntCmp(key, op, i) => {
                self.push("(CASE ").field(key, "t").push(" WHEN 'i' THEN ");
                self.field(key, "n").push(D::INT).push(sql_op(*op)).bind(*i);
                self.push(" WHEN 'r' THEN ");
                self.field(key, "x")
                    .push(D::FLOAT)
                    .push(sql_op(*op))
                    .bind(*i as f64);
                self.push(" ELSE ").push(D::FALSE).push(" END)");
            }
            Cond::FloatCmp(key, op, f) => self.typed(key, " IN ('i', 'r')", |w| {
                w.field(key, "x").push(D::FLOAT).push(sql_op(*op)).bind(*f);
            }),
            Cond::BoolEq(key, b) => self.typed(key, " = 'b'", |w| {
                w.field(key, "b").push(" = ");
                D::bool_value(w.0, *b);
            }),
            Cond::DateCmp(key, op, jd) => {
                self.push("(")
                    .field(key, "jd")
                    .push(D::DAY)
                    .push(sql_op(*op));
                self.bind(*jd).push(")");
            }
            Cond::TimeCmp(key, op, jd, ik) => {
                self.push("(CASE ").field(key, "dk").push(" WHEN 'd' THEN ");
                match jd {
                    Some(jd) => {
                        self.field(key, "jd")
                            .push(D::DAY)
                            .push(sql_op(*op))
                            .bind(*jd);
                    }
                    None => {
                        self.push(D::FALSE);
                    }
                }
                self.push(" WHEN 'i' THEN ");
                self.field(key, "ik")
                    .push(D::BY_CODE_POINT)
                    .push(sql_op(*op));
                self.bind(ik.clone());
                self.push(" ELSE ").push(D::FALSE).push(" END)");
            }
            Cond::Contains(key, needle) => {
                self.push("(CASE ").field(key, "t").push(" WHEN 's' THEN ");
                self.push(D::POSITION).field(key, "f").push(", ");
                self.bind(D::text(needle)).push(") > 0 WHEN 'l' THEN ");
                D::list_has(self.0, key, needle);
                self.push(" ELSE ").push(D::FALSE).push(" END)");
            }
            Cond::True | Cond::False | Cond::And(_) | Cond::Or(_) | Cond::Not(_) => self.cond(leaf),
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Postgres, Sqlite};

    use super::*;

    /// Filters that reach every leaf and the chain, `not` and empty cases.
    const FILTERS: &[&str] = &[
        "all",
        "exists(city)",
        "city = \"Köln\"",
        "`Straße x` in [\"a\", \"b\", 3, true]",
        "city != \"x\"",
        "name < \"m\"",
        "n >= 5",
        "score > 2.5",
        "vip = true",
        "vip < true",
        "signup >= 2026-01-31",
        "seen > now-12h",
        "langs contains \"de\"",
        "not (a = 1 or b = 2 or c = 3)",
        "a not in [1, 2.5]",
    ];

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap()
    }

    fn conds() -> Vec<Cond> {
        let mut conds: Vec<Cond> = FILTERS
            .iter()
            .map(|f| lower(&Segment::parse(f).unwrap(), now()))
            .collect();
        conds.push(Cond::And(vec![]));
        conds.push(Cond::Or(vec![]));
        conds.push(Cond::TimeCmp("k".into(), CompareOp::Lt, None, "ik".into()));
        // U+0000, which PostgreSQL text cannot hold.
        conds.push(Cond::StrCmp("k".into(), CompareOp::Ge, "a\0b".into()));
        conds.push(Cond::Contains("k".into(), "\0".into()));
        conds.push(Cond::StrIn("k".into(), vec!["\0".into(), "b".into()]));
        conds
    }

    fn sqlite_sql(c: &Cond) -> String {
        let mut qb = QueryBuilder::<Sqlite>::new("");
        push(&mut qb, c);
        qb.into_string()
    }

    fn postgres_sql(c: &Cond) -> String {
        let mut qb = QueryBuilder::<Postgres>::new("");
        push(&mut qb, c);
        qb.into_string()
    }

    fn fingerprint(s: &str) -> u64 {
        // FNV-1a: stable across runs and Rust versions, unlike `DefaultHasher`.
        s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    fn arguments(c: &Cond) -> String {
        use sqlx::Execute;
        let mut sq = QueryBuilder::<Sqlite>::new("");
        push(&mut sq, c);
        let mut pg = QueryBuilder::<Postgres>::new("");
        push(&mut pg, c);
        format!(
            "{:?}\n{:?}\n",
            sq.build().take_arguments().unwrap(),
            pg.build().take_arguments().unwrap()
        )
    }

    /// The SQL of each condition in `conds()`, per dialect, as the two renderers wrote it before
    /// they became one walk (SQLite, PostgreSQL).
    const PINNED: &[(&str, &str)] = &[
        ("1", "TRUE"),
        (
            "COALESCE((json_type(tag_index, ?) IS NOT NULL), 0)",
            "COALESCE(jsonb_exists(tag_index, $1), FALSE)",
        ),
        (
            "COALESCE((json_extract(tag_index, ?) = 's' AND json_extract(tag_index, ?) IN (?)), 0)",
            "COALESCE((CASE WHEN (tag_index -> $1 ->> 't') = 's' THEN (tag_index -> $2 ->> 'f') COLLATE \"C\" = ANY($3) ELSE FALSE END), FALSE)",
        ),
        (
            "(COALESCE((json_extract(tag_index, ?) = 's' AND json_extract(tag_index, ?) IN (?, ?)), 0) OR (COALESCE((CASE json_extract(tag_index, ?) WHEN 'i' THEN json_extract(tag_index, ?) = ? WHEN 'r' THEN json_extract(tag_index, ?) = ? ELSE 0 END), 0) OR COALESCE((json_extract(tag_index, ?) = 'b' AND json_extract(tag_index, ?) = ?), 0)))",
            "(COALESCE((CASE WHEN (tag_index -> $1 ->> 't') = 's' THEN (tag_index -> $2 ->> 'f') COLLATE \"C\" = ANY($3) ELSE FALSE END), FALSE) OR (COALESCE((CASE (tag_index -> $4 ->> 't') WHEN 'i' THEN (tag_index -> $5 ->> 'n')::bigint = $6 WHEN 'r' THEN (tag_index -> $7 ->> 'x')::float8 = $8 ELSE FALSE END), FALSE) OR COALESCE((CASE WHEN (tag_index -> $9 ->> 't') = 'b' THEN (tag_index -> $10 ->> 'b') = '1' ELSE FALSE END), FALSE)))",
        ),
        (
            "(COALESCE((json_type(tag_index, ?) IS NOT NULL), 0) AND (NOT COALESCE((json_extract(tag_index, ?) = 's' AND json_extract(tag_index, ?) IN (?)), 0)))",
            "(COALESCE(jsonb_exists(tag_index, $1), FALSE) AND (NOT COALESCE((CASE WHEN (tag_index -> $2 ->> 't') = 's' THEN (tag_index -> $3 ->> 'f') COLLATE \"C\" = ANY($4) ELSE FALSE END), FALSE)))",
        ),
        (
            "COALESCE((json_extract(tag_index, ?) = 's' AND json_extract(tag_index, ?) < ?), 0)",
            "COALESCE((CASE WHEN (tag_index -> $1 ->> 't') = 's' THEN (tag_index -> $2 ->> 's') COLLATE \"C\" < $3 ELSE FALSE END), FALSE)",
        ),
        (
            "COALESCE((CASE json_extract(tag_index, ?) WHEN 'i' THEN json_extract(tag_index, ?) >= ? WHEN 'r' THEN json_extract(tag_index, ?) >= ? ELSE 0 END), 0)",
            "COALESCE((CASE (tag_index -> $1 ->> 't') WHEN 'i' THEN (tag_index -> $2 ->> 'n')::bigint >= $3 WHEN 'r' THEN (tag_index -> $4 ->> 'x')::float8 >= $5 ELSE FALSE END), FALSE)",
        ),
        (
            "COALESCE((json_extract(tag_index, ?) IN ('i', 'r') AND json_extract(tag_index, ?) > ?), 0)",
            "COALESCE((CASE WHEN (tag_index -> $1 ->> 't') IN ('i', 'r') THEN (tag_index -> $2 ->> 'x')::float8 > $3 ELSE FALSE END), FALSE)",
        ),
        (
            "COALESCE((json_extract(tag_index, ?) = 'b' AND json_extract(tag_index, ?) = ?), 0)",
            "COALESCE((CASE WHEN (tag_index -> $1 ->> 't') = 'b' THEN (tag_index -> $2 ->> 'b') = '1' ELSE FALSE END), FALSE)",
        ),
        ("0", "FALSE"),
        (
            "COALESCE((json_extract(tag_index, ?) >= ?), 0)",
            "COALESCE(((tag_index -> $1 ->> 'jd')::int >= $2), FALSE)",
        ),
        (
            "COALESCE((CASE json_extract(tag_index, ?) WHEN 'd' THEN json_extract(tag_index, ?) > ? WHEN 'i' THEN json_extract(tag_index, ?) > ? ELSE 0 END), 0)",
            "COALESCE((CASE (tag_index -> $1 ->> 'dk') WHEN 'd' THEN (tag_index -> $2 ->> 'jd')::int > $3 WHEN 'i' THEN (tag_index -> $4 ->> 'ik') COLLATE \"C\" > $5 ELSE FALSE END), FALSE)",
        ),
        (
            "COALESCE((CASE json_extract(tag_index, ?) WHEN 's' THEN instr(json_extract(tag_index, ?), ?) > 0 WHEN 'l' THEN EXISTS (SELECT 1 FROM json_each(tag_index, ?) WHERE value = ?) ELSE 0 END), 0)",
            "COALESCE((CASE (tag_index -> $1 ->> 't') WHEN 's' THEN strpos((tag_index -> $2 ->> 'f'), $3) > 0 WHEN 'l' THEN jsonb_exists(tag_index -> $4 -> 'l', $5) ELSE FALSE END), FALSE)",
        ),
        (
            "(NOT (COALESCE((CASE json_extract(tag_index, ?) WHEN 'i' THEN json_extract(tag_index, ?) = ? WHEN 'r' THEN json_extract(tag_index, ?) = ? ELSE 0 END), 0) OR (COALESCE((CASE json_extract(tag_index, ?) WHEN 'i' THEN json_extract(tag_index, ?) = ? WHEN 'r' THEN json_extract(tag_index, ?) = ? ELSE 0 END), 0) OR COALESCE((CASE json_extract(tag_index, ?) WHEN 'i' THEN json_extract(tag_index, ?) = ? WHEN 'r' THEN json_extract(tag_index, ?) = ? ELSE 0 END), 0))))",
            "(NOT (COALESCE((CASE (tag_index -> $1 ->> 't') WHEN 'i' THEN (tag_index -> $2 ->> 'n')::bigint = $3 WHEN 'r' THEN (tag_index -> $4 ->> 'x')::float8 = $5 ELSE FALSE END), FALSE) OR (COALESCE((CASE (tag_index -> $6 ->> 't') WHEN 'i' THEN (tag_index -> $7 ->> 'n')::bigint = $8 WHEN 'r' THEN (tag_index -> $9 ->> 'x')::float8 = $10 ELSE FALSE END), FALSE) OR COALESCE((CASE (tag_index -> $11 ->> 't') WHEN 'i' THEN (tag_index -> $12 ->> 'n')::bigint = $13 WHEN 'r' THEN (tag_index -> $14 ->> 'x')::float8 = $15 ELSE FALSE END), FALSE))))",
        ),
        (
            "(COALESCE((json_type(tag_index, ?) IS NOT NULL), 0) AND (NOT (COALESCE((CASE json_extract(tag_index, ?) WHEN 'i' THEN json_extract(tag_index, ?) = ? WHEN 'r' THEN json_extract(tag_index, ?) = ? ELSE 0 END), 0) OR COALESCE((json_extract(tag_index, ?) IN ('i', 'r') AND json_extract(tag_index, ?) = ?), 0))))",
            "(COALESCE(jsonb_exists(tag_index, $1), FALSE) AND (NOT (COALESCE((CASE (tag_index -> $2 ->> 't') WHEN 'i' THEN (tag_index -> $3 ->> 'n')::bigint = $4 WHEN 'r' THEN (tag_index -> $5 ->> 'x')::float8 = $6 ELSE FALSE END), FALSE) OR COALESCE((CASE WHEN (tag_index -> $7 ->> 't') IN ('i', 'r') THEN (tag_index -> $8 ->> 'x')::float8 = $9 ELSE FALSE END), FALSE))))",
        ),
        ("1", "TRUE"),
        ("0", "FALSE"),
        (
            "COALESCE((CASE json_extract(tag_index, ?) WHEN 'd' THEN 0 WHEN 'i' THEN json_extract(tag_index, ?) < ? ELSE 0 END), 0)",
            "COALESCE((CASE (tag_index -> $1 ->> 'dk') WHEN 'd' THEN FALSE WHEN 'i' THEN (tag_index -> $2 ->> 'ik') COLLATE \"C\" < $3 ELSE FALSE END), FALSE)",
        ),
        (
            "COALESCE((json_extract(tag_index, ?) = 's' AND json_extract(tag_index, ?) >= ?), 0)",
            "COALESCE((CASE WHEN (tag_index -> $1 ->> 't') = 's' THEN (tag_index -> $2 ->> 's') COLLATE \"C\" >= $3 ELSE FALSE END), FALSE)",
        ),
        (
            "COALESCE((CASE json_extract(tag_index, ?) WHEN 's' THEN instr(json_extract(tag_index, ?), ?) > 0 WHEN 'l' THEN EXISTS (SELECT 1 FROM json_each(tag_index, ?) WHERE value = ?) ELSE 0 END), 0)",
            "COALESCE((CASE (tag_index -> $1 ->> 't') WHEN 's' THEN strpos((tag_index -> $2 ->> 'f'), $3) > 0 WHEN 'l' THEN jsonb_exists(tag_index -> $4 -> 'l', $5) ELSE FALSE END), FALSE)",
        ),
        (
            "COALESCE((json_extract(tag_index, ?) = 's' AND json_extract(tag_index, ?) IN (?, ?)), 0)",
            "COALESCE((CASE WHEN (tag_index -> $1 ->> 't') = 's' THEN (tag_index -> $2 ->> 'f') COLLATE \"C\" = ANY($3) ELSE FALSE END), FALSE)",
        ),
    ];

    /// The bound values of all of `conds()`, both dialects (`arguments`), before the same change.
    const PINNED_ARGUMENTS: u64 = 0xcb8cafd628072357;

    #[test]
    fn rendered_sql_is_pinned_per_dialect() {
        let conds = conds();
        assert_eq!(conds.len(), PINNED.len());
        for (c, (sqlite, postgres)) in conds.iter().zip(PINNED) {
            assert_eq!(sqlite_sql(c), *sqlite, "SQLite, {c:?}");
            assert_eq!(postgres_sql(c), *postgres, "PostgreSQL, {c:?}");
        }
        let all: String = conds.iter().map(arguments).collect();
        assert_eq!(
            fingerprint(&all),
            PINNED_ARGUMENTS,
            "bound values changed:\n{all}"
        );
    }
}
