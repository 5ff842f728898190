//! Segment filters compiled to SQL, one renderer per backend, over the tag index of
//! `tag_index.rs` (column `tag_index`). The semantics are `parley_domain::segment`'s, and the
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
use sqlx::{Postgres, QueryBuilder, Sqlite};
use time::OffsetDateTime;

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
        Expr::Exists { tag } => Cond::Exists(index_key(tag)),
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

// ---------------------------------------------------------------------------------------------
// SQLite

/// Pushes the condition as a 0/1 SQLite expression over `tag_index`.
pub(crate) fn push_sqlite(qb: &mut QueryBuilder<Sqlite>, cond: &Cond) {
    match cond {
        Cond::True => {
            qb.push("1");
        }
        Cond::False => {
            qb.push("0");
        }
        Cond::And(items) => sqlite_chain(qb, items, " AND ", "1"),
        Cond::Or(items) => sqlite_chain(qb, items, " OR ", "0"),
        Cond::Not(inner) => {
            qb.push("(NOT ");
            push_sqlite(qb, inner);
            qb.push(")");
        }
        leaf => {
            qb.push("COALESCE(");
            sqlite_leaf(qb, leaf);
            qb.push(", 0)");
        }
    }
}

fn sqlite_chain(qb: &mut QueryBuilder<Sqlite>, items: &[Cond], op: &str, empty: &str) {
    match items {
        [] => {
            qb.push(empty);
        }
        [one] => push_sqlite(qb, one),
        _ => {
            let (a, b) = items.split_at(items.len() / 2);
            qb.push("(");
            sqlite_chain(qb, a, op, empty);
            qb.push(op);
            sqlite_chain(qb, b, op, empty);
            qb.push(")");
        }
    }
}

fn sq_field(qb: &mut QueryBuilder<Sqlite>, key: &str, field: &str) {
    qb.push("json_extract(tag_index, ");
    qb.push_bind(format!("$.\"{key}\".{field}"));
    qb.push(")");
}

fn sqlite_leaf(qb: &mut QueryBuilder<Sqlite>, leaf: &Cond) {
    match leaf {
        Cond::Exists(key) => {
            qb.push("(json_type(tag_index, ");
            qb.push_bind(format!("$.\"{key}\""));
            qb.push(") IS NOT NULL)");
        }
        Cond::StrIn(key, values) => {
            qb.push("(");
            sq_field(qb, key, "t");
            qb.push(" = 's' AND ");
            sq_field(qb, key, "f");
            qb.push(" IN (");
            let mut sep = qb.separated(", ");
            for v in values {
                sep.push_bind(v.clone());
            }
            qb.push("))");
        }
        Cond::StrCmp(key, op, v) => {
            qb.push("(");
            sq_field(qb, key, "t");
            qb.push(" = 's' AND ");
            sq_field(qb, key, "s");
            qb.push(sql_op(*op));
            qb.push_bind(v.clone());
            qb.push(")");
        }
        Cond::IntCmp(key, op, i) => {
            qb.push("(CASE ");
            sq_field(qb, key, "t");
            qb.push(" WHEN 'i' THEN ");
            sq_field(qb, key, "n");
            qb.push(sql_op(*op));
            qb.push_bind(*i);
            qb.push(" WHEN 'r' THEN ");
            sq_field(qb, key, "x");
            qb.push(sql_op(*op));
            qb.push_bind(*i as f64);
            qb.push(" ELSE 0 END)");
        }
        Cond::FloatCmp(key, op, f) => {
            qb.push("(");
            sq_field(qb, key, "t");
            qb.push(" IN ('i', 'r') AND ");
            sq_field(qb, key, "x");
            qb.push(sql_op(*op));
            qb.push_bind(*f);
            qb.push(")");
        }
        Cond::BoolEq(key, b) => {
            qb.push("(");
            sq_field(qb, key, "t");
            qb.push(" = 'b' AND ");
            sq_field(qb, key, "b");
            qb.push(" = ");
            qb.push_bind(i64::from(*b));
            qb.push(")");
        }
        Cond::DateCmp(key, op, jd) => {
            qb.push("(");
            sq_field(qb, key, "jd");
            qb.push(sql_op(*op));
            qb.push_bind(*jd);
            qb.push(")");
        }
        Cond::TimeCmp(key, op, jd, ik) => {
            qb.push("(CASE ");
            sq_field(qb, key, "dk");
            qb.push(" WHEN 'd' THEN ");
            match jd {
                Some(jd) => {
                    sq_field(qb, key, "jd");
                    qb.push(sql_op(*op));
                    qb.push_bind(*jd);
                }
                None => {
                    qb.push("0");
                }
            }
            qb.push(" WHEN 'i' THEN ");
            sq_field(qb, key, "ik");
            qb.push(sql_op(*op));
            qb.push_bind(ik.clone());
            qb.push(" ELSE 0 END)");
        }
        Cond::Contains(key, needle) => {
            qb.push("(CASE ");
            sq_field(qb, key, "t");
            qb.push(" WHEN 's' THEN instr(");
            sq_field(qb, key, "f");
            qb.push(", ");
            qb.push_bind(needle.clone());
            qb.push(") > 0 WHEN 'l' THEN EXISTS (SELECT 1 FROM json_each(tag_index, ");
            qb.push_bind(format!("$.\"{key}\".l"));
            qb.push(") WHERE value = ");
            qb.push_bind(needle.clone());
            qb.push(") ELSE 0 END)");
        }
        Cond::True | Cond::False | Cond::And(_) | Cond::Or(_) | Cond::Not(_) => {
            push_sqlite(qb, leaf)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// PostgreSQL text cannot hold U+0000; stored tags have it as U+FFFD, so values do too.
fn pg(s: &str) -> String {
    crate::postgres::pg_text(s).into_owned()
}

/// Pushes the condition as a boolean PostgreSQL expression over `tag_index` (JSONB).
pub(crate) fn push_postgres(qb: &mut QueryBuilder<Postgres>, cond: &Cond) {
    match cond {
        Cond::True => {
            qb.push("TRUE");
        }
        Cond::False => {
            qb.push("FALSE");
        }
        Cond::And(items) => pg_chain(qb, items, " AND ", "TRUE"),
        Cond::Or(items) => pg_chain(qb, items, " OR ", "FALSE"),
        Cond::Not(inner) => {
            qb.push("(NOT ");
            push_postgres(qb, inner);
            qb.push(")");
        }
        leaf => {
            qb.push("COALESCE(");
            pg_leaf(qb, leaf);
            qb.push(", FALSE)");
        }
    }
}

fn pg_chain(qb: &mut QueryBuilder<Postgres>, items: &[Cond], op: &str, empty: &str) {
    match items {
        [] => {
            qb.push(empty);
        }
        [one] => push_postgres(qb, one),
        _ => {
            let (a, b) = items.split_at(items.len() / 2);
            qb.push("(");
            pg_chain(qb, a, op, empty);
            qb.push(op);
            pg_chain(qb, b, op, empty);
            qb.push(")");
        }
    }
}

/// `(tag_index -> $key ->> 'field')`, as text.
fn pg_field(qb: &mut QueryBuilder<Postgres>, key: &str, field: &'static str) {
    qb.push("(tag_index -> ");
    qb.push_bind(key.to_owned());
    qb.push(" ->> '");
    qb.push(field);
    qb.push("')");
}

fn pg_leaf(qb: &mut QueryBuilder<Postgres>, leaf: &Cond) {
    match leaf {
        Cond::Exists(key) => {
            qb.push("jsonb_exists(tag_index, ");
            qb.push_bind(key.clone());
            qb.push(")");
        }
        Cond::StrIn(key, values) => {
            qb.push("(CASE WHEN ");
            pg_field(qb, key, "t");
            qb.push(" = 's' THEN ");
            pg_field(qb, key, "f");
            qb.push(" COLLATE \"C\" = ANY(");
            qb.push_bind(values.iter().map(|v| pg(v)).collect::<Vec<_>>());
            qb.push(") ELSE FALSE END)");
        }
        Cond::StrCmp(key, op, v) => {
            qb.push("(CASE WHEN ");
            pg_field(qb, key, "t");
            qb.push(" = 's' THEN ");
            pg_field(qb, key, "s");
            qb.push(" COLLATE \"C\"");
            qb.push(sql_op(*op));
            qb.push_bind(pg(v));
            qb.push(" ELSE FALSE END)");
        }
        Cond::IntCmp(key, op, i) => {
            qb.push("(CASE ");
            pg_field(qb, key, "t");
            qb.push(" WHEN 'i' THEN ");
            pg_field(qb, key, "n");
            qb.push("::bigint");
            qb.push(sql_op(*op));
            qb.push_bind(*i);
            qb.push(" WHEN 'r' THEN ");
            pg_field(qb, key, "x");
            qb.push("::float8");
            qb.push(sql_op(*op));
            qb.push_bind(*i as f64);
            qb.push(" ELSE FALSE END)");
        }
        Cond::FloatCmp(key, op, f) => {
            qb.push("(CASE WHEN ");
            pg_field(qb, key, "t");
            qb.push(" IN ('i', 'r') THEN ");
            pg_field(qb, key, "x");
            qb.push("::float8");
            qb.push(sql_op(*op));
            qb.push_bind(*f);
            qb.push(" ELSE FALSE END)");
        }
        Cond::BoolEq(key, b) => {
            qb.push("(CASE WHEN ");
            pg_field(qb, key, "t");
            qb.push(" = 'b' THEN ");
            pg_field(qb, key, "b");
            qb.push(" = ");
            qb.push(if *b { "'1'" } else { "'0'" });
            qb.push(" ELSE FALSE END)");
        }
        Cond::DateCmp(key, op, jd) => {
            qb.push("(");
            pg_field(qb, key, "jd");
            qb.push("::int");
            qb.push(sql_op(*op));
            qb.push_bind(*jd);
            qb.push(")");
        }
        Cond::TimeCmp(key, op, jd, ik) => {
            qb.push("(CASE ");
            pg_field(qb, key, "dk");
            qb.push(" WHEN 'd' THEN ");
            match jd {
                Some(jd) => {
                    pg_field(qb, key, "jd");
                    qb.push("::int");
                    qb.push(sql_op(*op));
                    qb.push_bind(*jd);
                }
                None => {
                    qb.push("FALSE");
                }
            }
            qb.push(" WHEN 'i' THEN ");
            pg_field(qb, key, "ik");
            qb.push(" COLLATE \"C\"");
            qb.push(sql_op(*op));
            qb.push_bind(ik.clone());
            qb.push(" ELSE FALSE END)");
        }
        Cond::Contains(key, needle) => {
            qb.push("(CASE ");
            pg_field(qb, key, "t");
            qb.push(" WHEN 's' THEN strpos(");
            pg_field(qb, key, "f");
            qb.push(", ");
            qb.push_bind(pg(needle));
            qb.push(") > 0 WHEN 'l' THEN jsonb_exists(tag_index -> ");
            qb.push_bind(key.clone());
            qb.push(" -> 'l', ");
            qb.push_bind(pg(needle));
            qb.push(") ELSE FALSE END)");
        }
        Cond::True | Cond::False | Cond::And(_) | Cond::Or(_) | Cond::Not(_) => {
            push_postgres(qb, leaf)
        }
    }
}
