//! Segments: a small filter language over contact tags, e.g. `city = "Berlin" and visits >= 3`.
//! Parsed once into an [`Expr`], evaluated in memory for previews and tests, and compiled to SQL
//! by the stores; the SQL compilers must follow the semantics below exactly.
//!
//! # Language
//!
//! ```text
//! filter     := or
//! or         := and ("or" and)*                      left-associative
//! and        := unary ("and" unary)*                 left-associative
//! unary      := "not" unary | primary                precedence: not > and > or
//! primary    := "(" or ")" | "all" | "exists" "(" tag ")"
//!             | tag ("=" | "!=" | "<" | "<=" | ">" | ">=") value
//!             | tag ["not"] "in" "[" value ("," value)* [","] "]"
//!             | tag "contains" string
//! tag        := [A-Za-z_][A-Za-z0-9_]*  (not a keyword)  |  `any text`  (escapes \` and \\)
//! value      := string | ["-"] integer | ["-"] decimal | "true" | "false" | date | relative
//! string     := "…" (escapes \" and \\; any other character, newlines included, as is)
//! decimal    := digits "." digits        (no exponent)
//! date       := YYYY-MM-DD
//! relative   := "now" [("+" | "-") digits unit]     unit: m (minutes) h (hours) d (days) w (weeks)
//! ```
//!
//! Keywords (`all and contains exists false in not now or true`) are case-insensitive; a tag with
//! a keyword's name is written in backticks. Units are lower case. `all` selects every contact;
//! an empty filter is an error. `not exists(tag)` is `not` applied to `exists(tag)`.
//!
//! Limits: at most [`MAX_SEGMENT_CHARS`] characters, [`MAX_SEGMENT_DEPTH`] levels of parentheses
//! and `not`, [`MAX_SEGMENT_LIST_ITEMS`] values in a list (and at least one), relative times at
//! most 100 years from now, `contains` takes a string, at most [`MAX_SEGMENT_CONDITIONS`]
//! conditions (an `in` list is one). `and`/`or` chains do not count towards the depth, and
//! [`Expr::operands`] flattens them. Over the depth or condition limit the error says
//! [`SegmentError::too_complex`].
//!
//! [`Segment`]'s `Display` prints a canonical form (lower-case keywords, single spaces, only the
//! parentheses the precedence needs) that parses back to the same [`Expr`].
//!
//! # Semantics (the contract for the SQL compilers)
//!
//! Evaluation is two-valued: every condition is true or false, never "unknown".
//!
//! 1. **Missing tags.** A tag is missing when the lookup finds nothing ([`TagLookup`]: exact name,
//!    then ASCII-case-insensitive). Every comparison, `in`, `not in` and `contains` on a missing
//!    tag is **false, including `!=` and `not in`** (SQL NULL behaviour). Only `exists` and `not`
//!    see missing tags: for a contact without `plan`, `plan != "pro"` is false while
//!    `not plan = "pro"` is true. In SQL, `NOT` over NULL is NULL, so each compiled leaf must
//!    yield FALSE, never NULL (e.g. `COALESCE(…, FALSE)`), for `not` to behave as here.
//! 2. **Equality.** `tag != v` is exactly `exists(tag) and not tag = v`; `tag in [v1, v2]` is
//!    exactly `tag = v1 or tag = v2`; `tag not in [v1, v2]` is `exists(tag) and not tag in [v1, v2]`.
//!    `tag = v` is true only for these pairs, everything else (type mismatch, list tags) is unequal:
//!    - string tag, string value: equal after case folding ([`fold_case`]: per-character Unicode
//!      lower case, no locale). `city = "berlin"` matches "Berlin" and "BERLIN".
//!    - integer or float tag, integer or decimal value: numerically equal (integers exactly; with a
//!      float on either side both are compared as `f64`). `3 = 3.0`.
//!    - boolean tag, `true`/`false`.
//!    - date-like tag, date or relative value: see 4.
//!    - date or date-time tag, string value: by the tag's text (its JSON form, `2026-01-31` or RFC
//!      3339 as [`TagValue::write_text`] writes it), folded like strings.
//!
//!    So `plan != 3` is true for `plan = "pro"`, and `langs = "de"` is false for a list tag (use
//!    `langs contains "de"`). Strings are never read as numbers: `visits >= 3` is false when
//!    `visits` is the string "3".
//! 3. **Order** (`<`, `<=`, `>`, `>=`): true only when both sides are numbers (as above), both
//!    strings (by Unicode code point, case-sensitive: SQLite's BINARY collation, PostgreSQL's
//!    `COLLATE "C"`), a date or date-time tag against a string (by its text), or a date-like tag
//!    against a date or relative value (see 4). Booleans, lists and mismatches: false.
//! 4. **Dates.** Tags come back from JSON storage as strings, so a tag is *date-like* when it is a
//!    `Date`, a `DateTime`, or a string that is exactly `YYYY-MM-DD` (a date) or RFC 3339 as the
//!    `time` crate parses it (an instant); a date tag and its stored text behave the same.
//!    - Against a date value (`2026-01-31`): calendar dates are compared; an instant contributes
//!      its UTC date.
//!    - Against a relative value: `now±N unit` is the instant `now + N × unit` with fixed units
//!      (m = 60 s, h = 3,600 s, d = 86,400 s, w = 604,800 s; no calendars, no DST). An instant tag
//!      is compared with that instant; a date tag with that instant's UTC date.
//!      `signup_date >= now-30d` keeps dates from 30 days ago on; `last_seen > now-12h` is exact.
//!    - A string that is not date-like against a date or relative value: a mismatch.
//! 5. **contains** (string value): a list tag contains an element equal to it after folding; a
//!    string tag (and a date or date-time tag, by its text) contains it as a substring after
//!    folding (a plain substring test: `%` and `_` are not wildcards); `contains ""` is true for
//!    any string. Other tag types: false.
//! 6. **exists(tag)** is true when the tag is present, whatever its value (an empty string too).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime, UtcOffset};

use crate::tags::{TagLookup, TagValue};

/// The longest filter accepted, in characters.
pub const MAX_SEGMENT_CHARS: usize = 10_000;
/// How deeply parentheses and `not` may nest.
pub const MAX_SEGMENT_DEPTH: usize = 64;
/// The most conditions (comparisons, `in`, `contains`, `exists`) one filter may hold: each
/// costs the database work on every contact, so a filter's cost is bounded before it runs.
pub const MAX_SEGMENT_CONDITIONS: usize = 200;
/// The most values one `in [...]` list may hold.
pub const MAX_SEGMENT_LIST_ITEMS: usize = 1_000;
/// How far from now a relative time may reach, in seconds (100 years of 365.25 days).
pub const MAX_RELATIVE_SECONDS: i64 = 36_525 * 86_400;

const KEYWORDS: [&str; 10] = [
    "all", "and", "contains", "exists", "false", "in", "not", "now", "or", "true",
];

const OPERATORS: &str = "=, !=, <, <=, >, >=, in, not in, contains";
const UNITS: &str = "m (minutes), h (hours), d (days) or w (weeks)";

/// A parsed segment filter: which contacts a campaign goes to.
///
/// Two segments are equal when their expressions are; the source text (spacing, case of
/// keywords, redundant parentheses) does not count.
#[derive(Debug, Clone)]
pub struct Segment {
    source: String,
    expr: Expr,
}

/// A filter expression. `And`/`Or` chains are left-deep, as written: `a and b and c` is
/// `And(And(a, b), c)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every contact.
    All,
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        tag: String,
        op: CompareOp,
        value: Value,
    },
    /// `tag in [..]`, or `tag not in [..]` when `negated`. The parser never yields an empty list.
    In {
        tag: String,
        values: Vec<Value>,
        negated: bool,
    },
    /// `tag contains "x"`. The parser only yields string values.
    Contains {
        tag: String,
        value: Value,
    },
    Exists {
        tag: String,
    },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A literal on the right of an operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Integer(i64),
    /// Always finite when parsed.
    Float(f64),
    Boolean(bool),
    Date(Date),
    /// `now` plus `amount` units (negative for the past): `now-30d` is `amount: -30, unit: Day`;
    /// plain `now` is `amount: 0, unit: Day`.
    Relative {
        amount: i64,
        unit: RelativeUnit,
    },
}

/// The unit of a relative time; each has a fixed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelativeUnit {
    Minute,
    Hour,
    Day,
    Week,
}

/// A segment filter that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {position}: {message}")]
pub struct SegmentError {
    /// Character (not byte) offset in the input, counted from 0.
    pub position: usize,
    pub message: String,
    /// The filter is well formed but over the nesting or condition limit.
    pub too_complex: bool,
}

impl Segment {
    /// Parses a filter such as `city = "Berlin" and visits >= 3`.
    pub fn parse(input: &str) -> Result<Segment, SegmentError> {
        let expr = Parser::new(input)?.parse_filter()?;
        Ok(Segment {
            source: input.to_owned(),
            expr,
        })
    }

    /// The segment of every contact.
    pub fn all() -> Segment {
        Segment {
            source: "all".to_owned(),
            expr: Expr::All,
        }
    }

    /// Whether a contact with these tags belongs to the segment, at instant `now`.
    pub fn matches(&self, tags: &(impl TagLookup + ?Sized), now: OffsetDateTime) -> bool {
        self.expr.matches(tags, now)
    }

    /// The expression, for the SQL compilers.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The filter as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The tag names used, in order of first use, without duplicates.
    pub fn referenced_tags(&self) -> Vec<&str> {
        let mut names = Vec::new();
        self.expr.collect_tags(&mut names);
        names
    }
}

impl PartialEq for Segment {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl std::str::FromStr for Segment {
    type Err = SegmentError;
    fn from_str(s: &str) -> Result<Self, SegmentError> {
        Self::parse(s)
    }
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Expr {
    /// In-memory evaluation; see the module documentation for the rules.
    pub fn matches(&self, tags: &(impl TagLookup + ?Sized), now: OffsetDateTime) -> bool {
        match self {
            Expr::All => true,
            Expr::And(a, b) => a.matches(tags, now) && b.matches(tags, now),
            Expr::Or(a, b) => a.matches(tags, now) || b.matches(tags, now),
            Expr::Not(e) => !e.matches(tags, now),
            Expr::Compare { tag, op, value } => {
                tags.tag(tag).is_some_and(|t| compare(&t, *op, value, now))
            }
            Expr::In {
                tag,
                values,
                negated,
            } => tags
                .tag(tag)
                .is_some_and(|t| values.iter().any(|v| equals(&t, v, now)) != *negated),
            Expr::Contains { tag, value } => tags.tag(tag).is_some_and(|t| contains(&t, value)),
            Expr::Exists { tag } => tags.tag(tag).is_some(),
        }
    }

    /// The operands of a chain of one operator, left to right: `a and b and c` gives
    /// `[a, b, c]` however it is nested, and likewise for `or`; any other expression gives
    /// itself. Iterative, so SQL compilers can walk the longest chains (about 1,400 conditions
    /// fit in the length limit) without deep recursion, and balance them: SQLite refuses
    /// expression trees deeper than 1,000.
    pub fn operands(&self) -> Vec<&Expr> {
        fn same<'a>(root: &Expr, e: &'a Expr) -> Option<(&'a Expr, &'a Expr)> {
            match (root, e) {
                (Expr::And(..), Expr::And(a, b)) | (Expr::Or(..), Expr::Or(a, b)) => Some((a, b)),
                _ => None,
            }
        }
        if same(self, self).is_none() {
            return vec![self];
        }
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match same(self, e) {
                Some((a, b)) => {
                    stack.push(b);
                    stack.push(a);
                }
                None => out.push(e),
            }
        }
        out
    }

    fn collect_tags<'a>(&'a self, names: &mut Vec<&'a str>) {
        match self {
            Expr::All => {}
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect_tags(names);
                b.collect_tags(names);
            }
            Expr::Not(e) => e.collect_tags(names),
            Expr::Compare { tag, .. }
            | Expr::In { tag, .. }
            | Expr::Contains { tag, .. }
            | Expr::Exists { tag } => {
                if !names.contains(&tag.as_str()) {
                    names.push(tag);
                }
            }
        }
    }
}

impl CompareOp {
    /// The operator as written: `=`, `!=`, `<`, `<=`, `>`, `>=`.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Eq => ordering.is_eq(),
            CompareOp::Ne => ordering.is_ne(),
            CompareOp::Lt => ordering.is_lt(),
            CompareOp::Le => ordering.is_le(),
            CompareOp::Gt => ordering.is_gt(),
            CompareOp::Ge => ordering.is_ge(),
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

impl RelativeUnit {
    /// The unit's length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            RelativeUnit::Minute => 60,
            RelativeUnit::Hour => 3_600,
            RelativeUnit::Day => 86_400,
            RelativeUnit::Week => 604_800,
        }
    }

    /// The unit's letter: `m`, `h`, `d` or `w`.
    pub fn symbol(self) -> &'static str {
        match self {
            RelativeUnit::Minute => "m",
            RelativeUnit::Hour => "h",
            RelativeUnit::Day => "d",
            RelativeUnit::Week => "w",
        }
    }

    fn from_symbol(s: &str) -> Option<RelativeUnit> {
        Some(match s {
            "m" => RelativeUnit::Minute,
            "h" => RelativeUnit::Hour,
            "d" => RelativeUnit::Day,
            "w" => RelativeUnit::Week,
            _ => return None,
        })
    }
}

impl Value {
    /// The instant a date or relative value stands for: a date is its midnight UTC, `now-30d`
    /// is `now` minus 30 × 86,400 s. `None` for other values, or out of the representable range.
    pub fn resolve_time(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Value::Date(d) => Some(d.midnight().assume_utc()),
            Value::Relative { amount, unit } => {
                let seconds = amount.checked_mul(unit.seconds())?;
                now.checked_add(Duration::seconds(seconds))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// The literal as the filter language writes it. Non-finite floats and dates outside years
    /// 0–9999 have no literal and print in a form that does not parse.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => {
                f.write_char('"')?;
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        f.write_char('\\')?;
                    }
                    f.write_char(c)?;
                }
                f.write_char('"')
            }
            Value::Integer(i) => write!(f, "{i}"),
            Value::Float(x) => {
                let text = x.to_string();
                f.write_str(&text)?;
                if x.is_finite() && !text.contains('.') {
                    f.write_str(".0")?;
                }
                Ok(())
            }
            Value::Boolean(b) => f.write_str(if *b { "true" } else { "false" }),
            Value::Date(d) => {
                let mut out = String::with_capacity(10);
                crate::tags::write_date(&mut out, *d);
                f.write_str(&out)
            }
            Value::Relative {
                amount: 0,
                unit: RelativeUnit::Day,
            } => f.write_str("now"),
            Value::Relative { amount, unit } => {
                let sign = if *amount < 0 { '-' } else { '+' };
                write!(f, "now{sign}{}{}", amount.unsigned_abs(), unit.symbol())
            }
        }
    }
}

/// A tag name as the language writes it: bare when it can be, else in backticks.
struct TagName<'a>(&'a str);

impl fmt::Display for TagName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_bare_tag(self.0) {
            return f.write_str(self.0);
        }
        f.write_char('`')?;
        for c in self.0.chars() {
            if c == '`' || c == '\\' {
                f.write_char('\\')?;
            }
            f.write_char(c)?;
        }
        f.write_char('`')
    }
}

fn is_bare_tag(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !is_keyword(name)
}

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn child(f: &mut fmt::Formatter<'_>, e: &Expr, parens: bool) -> fmt::Result {
            if parens {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        }
        match self {
            Expr::All => f.write_str("all"),
            Expr::And(a, b) => {
                child(f, a, matches!(**a, Expr::Or(..)))?;
                f.write_str(" and ")?;
                child(f, b, matches!(**b, Expr::And(..) | Expr::Or(..)))
            }
            Expr::Or(a, b) => {
                child(f, a, false)?;
                f.write_str(" or ")?;
                child(f, b, matches!(**b, Expr::Or(..)))
            }
            Expr::Not(e) => {
                f.write_str("not ")?;
                child(f, e, matches!(**e, Expr::And(..) | Expr::Or(..)))
            }
            Expr::Compare { tag, op, value } => write!(f, "{} {op} {value}", TagName(tag)),
            Expr::In {
                tag,
                values,
                negated,
            } => {
                let not = if *negated { "not " } else { "" };
                write!(f, "{} {not}in [", TagName(tag))?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_char(']')
            }
            Expr::Contains { tag, value } => write!(f, "{} contains {value}", TagName(tag)),
            Expr::Exists { tag } => write!(f, "exists({})", TagName(tag)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// The case folding of string equality and `contains`: each character's Unicode lower case
/// (`char::to_lowercase`, no locale, no context rules). SQL compilers can fold bound values
/// with it.
pub fn fold_case(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn eq_folded(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

fn compare(tag: &TagValue, op: CompareOp, value: &Value, now: OffsetDateTime) -> bool {
    match op {
        CompareOp::Eq => equals(tag, value, now),
        CompareOp::Ne => !equals(tag, value, now),
        _ => order(tag, value, now).is_some_and(|o| op.holds(o)),
    }
}

fn equals(tag: &TagValue, value: &Value, now: OffsetDateTime) -> bool {
    match (tag, value) {
        (TagValue::String(s), Value::String(v)) => eq_folded(s, v),
        (TagValue::Date(_) | TagValue::DateTime(_), Value::String(v)) => {
            eq_folded(&tag.as_text(), v)
        }
        (TagValue::Boolean(a), Value::Boolean(b)) => a == b,
        _ => order(tag, value, now) == Some(Ordering::Equal),
    }
}

/// How the tag orders against the value, when they are comparable (see the module docs).
fn order(tag: &TagValue, value: &Value, now: OffsetDateTime) -> Option<Ordering> {
    match (tag, value) {
        (TagValue::String(s), Value::String(v)) => Some(s.as_str().cmp(v.as_str())),
        (TagValue::Date(_) | TagValue::DateTime(_), Value::String(v)) => {
            Some(tag.as_text().as_str().cmp(v.as_str()))
        }
        (TagValue::Integer(a), Value::Integer(b)) => Some(a.cmp(b)),
        (TagValue::Integer(a), Value::Float(b)) => (*a as f64).partial_cmp(b),
        (TagValue::Float(a), Value::Integer(b)) => a.partial_cmp(&(*b as f64)),
        (TagValue::Float(a), Value::Float(b)) => a.partial_cmp(b),
        (_, Value::Date(_) | Value::Relative { .. }) => temporal_order(tag, value, now),
        _ => None,
    }
}

enum Temporal {
    Date(Date),
    Instant(OffsetDateTime),
}

impl Temporal {
    fn of(tag: &TagValue) -> Option<Temporal> {
        match tag {
            TagValue::Date(d) => Some(Temporal::Date(*d)),
            TagValue::DateTime(dt) => Some(Temporal::Instant(*dt)),
            TagValue::String(s) => parse_iso_date(s).map(Temporal::Date).or_else(|| {
                OffsetDateTime::parse(s, &Rfc3339)
                    .ok()
                    .map(Temporal::Instant)
            }),
            _ => None,
        }
    }

    fn utc_date(&self) -> Option<Date> {
        match self {
            Temporal::Date(d) => Some(*d),
            Temporal::Instant(i) => utc_date(*i),
        }
    }
}

fn utc_date(instant: OffsetDateTime) -> Option<Date> {
    instant.checked_to_offset(UtcOffset::UTC).map(|u| u.date())
}

fn temporal_order(tag: &TagValue, value: &Value, now: OffsetDateTime) -> Option<Ordering> {
    let tag = Temporal::of(tag)?;
    match value {
        Value::Date(d) => Some(tag.utc_date()?.cmp(d)),
        Value::Relative { .. } => {
            let at = value.resolve_time(now)?;
            match tag {
                Temporal::Date(d) => Some(d.cmp(&utc_date(at)?)),
                Temporal::Instant(i) => Some(i.cmp(&at)),
            }
        }
        _ => None,
    }
}

fn contains(tag: &TagValue, value: &Value) -> bool {
    let Value::String(needle) = value else {
        return false;
    };
    match tag {
        TagValue::List(items) => items.iter().any(|item| eq_folded(item, needle)),
        TagValue::String(s) => fold_case(s).contains(&fold_case(needle)),
        TagValue::Date(_) | TagValue::DateTime(_) => {
            fold_case(&tag.as_text()).contains(&fold_case(needle))
        }
        _ => false,
    }
}

/// Exactly `YYYY-MM-DD`, a real calendar date.
fn parse_iso_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(digits(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(digits(5..7)?).ok()?).ok()?;
    let day = u8::try_from(digits(8..10)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

// ---------------------------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word: a tag name or a keyword.
    Word(String),
    /// A tag name in backticks.
    Quoted(String),
    Str(String),
    /// Digits with an optional fraction, and letters written right after them (`30d`).
    Number {
        digits: String,
        fraction: bool,
        suffix: Option<(String, usize)>,
    },
    Date(Date),
    Op(CompareOp),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Plus,
    Minus,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Character offsets.
    start: usize,
    end: usize,
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    peeked: Option<Token>,
    /// Conditions read so far.
    conditions: usize,
}

fn short(s: &str) -> Cow<'_, str> {
    crate::excerpt(s)
}

fn err<T>(position: usize, message: impl Into<String>) -> Result<T, SegmentError> {
    Err(SegmentError {
        position,
        message: message.into(),
        too_complex: false,
    })
}

/// " after `and`" or "" at the start.
fn after_text(after: &str) -> String {
    if after.is_empty() {
        String::new()
    } else {
        format!(" after {after}")
    }
}

impl Parser {
    fn new(input: &str) -> Result<Parser, SegmentError> {
        let count = input.chars().count();
        if count > MAX_SEGMENT_CHARS {
            return err(
                MAX_SEGMENT_CHARS,
                format!("the filter is too long: {count} characters, at most {MAX_SEGMENT_CHARS}"),
            );
        }
        Ok(Parser {
            chars: input.chars().collect(),
            pos: 0,
            peeked: None,
            conditions: 0,
        })
    }

    // --- tokens ---

    fn peek(&mut self) -> Result<&Token, SegmentError> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn next(&mut self) -> Result<Token, SegmentError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn peek_is_word(&mut self, keyword: &str) -> Result<bool, SegmentError> {
        Ok(matches!(&self.peek()?.tok, Tok::Word(w) if w.eq_ignore_ascii_case(keyword)))
    }

    /// The input between two character offsets.
    fn raw(&self, start: usize, end: usize) -> String {
        self.chars[start..end.min(self.chars.len())]
            .iter()
            .collect()
    }

    /// The input between two character offsets, shortened for an error message.
    fn text(&self, start: usize, end: usize) -> String {
        crate::excerpt(&self.raw(start, end)).into_owned()
    }

    /// How an error message names a token.
    fn describe(&self, t: &Token) -> String {
        let text = self.text(t.start, t.end);
        match &t.tok {
            Tok::End => "end of input".to_owned(),
            Tok::Word(w) if is_keyword(w) => format!("the keyword `{text}`"),
            Tok::Quoted(_) => format!("the tag name {text}"),
            Tok::Str(_) => format!("the string {text}"),
            Tok::Number { .. } => format!("the number `{text}`"),
            Tok::Date(_) => format!("the date `{text}`"),
            _ => format!("`{text}`"),
        }
    }

    fn lex(&mut self) -> Result<Token, SegmentError> {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(&c) = self.chars.get(start) else {
            return Ok(Token {
                tok: Tok::End,
                start,
                end: start,
            });
        };
        let single = |tok| Token {
            tok,
            start,
            end: start + 1,
        };
        let token = match c {
            '(' => single(Tok::LParen),
            ')' => single(Tok::RParen),
            '[' => single(Tok::LBracket),
            ']' => single(Tok::RBracket),
            ',' => single(Tok::Comma),
            '+' => single(Tok::Plus),
            '-' => single(Tok::Minus),
            '"' => return self.lex_string(),
            '`' => return self.lex_quoted_tag(),
            '\'' => return self.single_quote_error(),
            '0'..='9' => return self.lex_number(),
            'A'..='Z' | 'a'..='z' | '_' => return self.lex_word(),
            '=' | '<' | '>' | '!' | '&' | '|' => return self.lex_operator(),
            c if c.is_alphanumeric() => {
                let end = self.run_end(start, |c| c.is_alphanumeric() || c == '_');
                let word = self.text(start, end);
                return err(
                    start,
                    format!(
                        "unexpected character `{c}`: tag names with characters other than A–Z, a–z, 0–9 and _ go in backticks, e.g. `{word}`"
                    ),
                );
            }
            c => return err(start, format!("unexpected character `{c}`")),
        };
        self.pos = token.end;
        Ok(token)
    }

    fn run_end(&self, from: usize, pred: impl Fn(char) -> bool) -> usize {
        let mut end = from;
        while self.chars.get(end).is_some_and(|&c| pred(c)) {
            end += 1;
        }
        end
    }

    fn lex_string(&mut self) -> Result<Token, SegmentError> {
        let start = self.pos;
        let mut out = String::new();
        let mut i = start + 1;
        loop {
            match self.chars.get(i) {
                None => {
                    return err(
                        start,
                        "unclosed string: add a `\"` at its end (write \\\" for a quote inside)",
                    );
                }
                Some('"') => break,
                Some('\\') => match self.chars.get(i + 1) {
                    Some(&c @ ('"' | '\\')) => {
                        out.push(c);
                        i += 2;
                    }
                    Some(&c) => {
                        return err(
                            i,
                            format!(
                                "unknown escape `\\{c}` in a string: only \\\" (a quote) and \\\\ (a backslash) are escapes"
                            ),
                        );
                    }
                    None => {
                        return err(
                            start,
                            "unclosed string: add a `\"` at its end (write \\\" for a quote inside)",
                        );
                    }
                },
                Some(&c) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        self.pos = i + 1;
        Ok(Token {
            tok: Tok::Str(out),
            start,
            end: self.pos,
        })
    }

    fn lex_quoted_tag(&mut self) -> Result<Token, SegmentError> {
        let start = self.pos;
        let mut out = String::new();
        let mut i = start + 1;
        loop {
            match self.chars.get(i) {
                None => return err(start, "unclosed tag name: add a closing backtick `"),
                Some('`') => break,
                Some('\\') => match self.chars.get(i + 1) {
                    Some(&c @ ('`' | '\\')) => {
                        out.push(c);
                        i += 2;
                    }
                    Some(&c) => {
                        return err(
                            i,
                            format!(
                                "unknown escape `\\{c}` in a tag name: only \\` (a backtick) and \\\\ (a backslash) are escapes"
                            ),
                        );
                    }
                    None => return err(start, "unclosed tag name: add a closing backtick `"),
                },
                Some(&c) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        if out.is_empty() {
            return err(
                start,
                "empty tag name: write the tag's name between the backticks",
            );
        }
        self.pos = i + 1;
        Ok(Token {
            tok: Tok::Quoted(out),
            start,
            end: self.pos,
        })
    }

    fn single_quote_error(&self) -> Result<Token, SegmentError> {
        let start = self.pos;
        let close = (start + 1..self.chars.len()).find(|&i| self.chars[i] == '\'');
        let hint = match close {
            Some(end) => {
                let inner: String = self.chars[start + 1..end].iter().collect();
                let value = Value::String(inner).to_string();
                format!("write {}", crate::excerpt(&value))
            }
            None => "write \"text\"".to_owned(),
        };
        err(start, format!("strings use double quotes: {hint}"))
    }

    fn lex_number(&mut self) -> Result<Token, SegmentError> {
        let start = self.pos;
        let int_end = self.run_end(start, |c| c.is_ascii_digit());
        // A date: four digits, a dash and a digit.
        if int_end - start == 4
            && self.chars.get(int_end) == Some(&'-')
            && self
                .chars
                .get(int_end + 1)
                .is_some_and(char::is_ascii_digit)
        {
            let end = self.run_end(start, |c| c.is_ascii_digit() || c == '-');
            let text = self.raw(start, end);
            let Some(date) = parse_iso_date(&text) else {
                return err(
                    start,
                    format!(
                        "invalid date `{}`: write dates as YYYY-MM-DD with a real day, e.g. 2026-01-31",
                        short(&text)
                    ),
                );
            };
            if let Some(&c) = self
                .chars
                .get(end)
                .filter(|c| c.is_alphanumeric() || **c == ':' || **c == '_')
            {
                return err(
                    end,
                    format!(
                        "unexpected `{c}` after the date `{}`: dates have no time of day; compare instants with a relative time such as now-12h",
                        short(&text)
                    ),
                );
            }
            self.pos = end;
            return Ok(Token {
                tok: Tok::Date(date),
                start,
                end,
            });
        }
        let mut end = int_end;
        let mut fraction = false;
        if self.chars.get(end) == Some(&'.') {
            if !self.chars.get(end + 1).is_some_and(char::is_ascii_digit) {
                return err(
                    end,
                    "expected digits after the decimal point, e.g. 2.5".to_owned(),
                );
            }
            fraction = true;
            end = self.run_end(end + 1, |c| c.is_ascii_digit());
        }
        let digits = self.raw(start, end);
        let mut suffix = None;
        if self
            .chars
            .get(end)
            .is_some_and(|&c| c.is_alphabetic() || c == '_')
        {
            let suffix_end = self.run_end(end, |c| c.is_alphanumeric() || c == '_');
            suffix = Some((self.raw(end, suffix_end), end));
            end = suffix_end;
        }
        self.pos = end;
        Ok(Token {
            tok: Tok::Number {
                digits,
                fraction,
                suffix,
            },
            start,
            end,
        })
    }

    fn lex_word(&mut self) -> Result<Token, SegmentError> {
        let start = self.pos;
        let end = self.run_end(start, |c| c.is_alphanumeric() || c == '_');
        let word = self.raw(start, end);
        if !word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return err(
                start,
                format!(
                    "tag names with characters other than A–Z, a–z, 0–9 and _ go in backticks: `{}`",
                    short(&word)
                ),
            );
        }
        self.pos = end;
        Ok(Token {
            tok: Tok::Word(word),
            start,
            end,
        })
    }

    fn lex_operator(&mut self) -> Result<Token, SegmentError> {
        let start = self.pos;
        let end = self.run_end(start, |c| matches!(c, '=' | '<' | '>' | '!' | '&' | '|'));
        let text = self.raw(start, end);
        let op = match text.as_str() {
            "=" => CompareOp::Eq,
            "!=" => CompareOp::Ne,
            "<" => CompareOp::Lt,
            "<=" => CompareOp::Le,
            ">" => CompareOp::Gt,
            ">=" => CompareOp::Ge,
            _ => {
                let hint = match text.as_str() {
                    "==" | "===" => Some("`=`"),
                    "=>" => Some("`>=`"),
                    "=<" => Some("`<=`"),
                    "<>" | "=!" | "!==" => Some("`!=`"),
                    "&&" | "&" => Some("`and`"),
                    "||" | "|" => Some("`or`"),
                    "!" => Some("`!=` or `not`"),
                    _ => None,
                };
                let message = match hint {
                    Some(h) => format!("unknown operator `{text}` (did you mean {h}?)"),
                    None => format!(
                        "unknown operator `{}` (operators: {OPERATORS})",
                        short(&text)
                    ),
                };
                return err(start, message);
            }
        };
        self.pos = end;
        Ok(Token {
            tok: Tok::Op(op),
            start,
            end,
        })
    }

    // --- grammar ---

    fn parse_filter(&mut self) -> Result<Expr, SegmentError> {
        if self.chars.iter().all(|c| c.is_whitespace()) {
            return err(
                0,
                "empty filter: write a condition such as city = \"Berlin\", or `all` for every contact",
            );
        }
        let expr = self.parse_or(0, "")?;
        let t = self.next()?;
        match t.tok {
            Tok::End => Ok(expr),
            Tok::RParen => err(
                t.start,
                "unbalanced parenthesis: this `)` has no matching `(`",
            ),
            _ => err(
                t.start,
                format!(
                    "expected `and` or `or` between conditions, found {}",
                    self.describe(&t)
                ),
            ),
        }
    }

    fn parse_or(&mut self, depth: usize, after: &str) -> Result<Expr, SegmentError> {
        let mut left = self.parse_and(depth, after)?;
        while self.peek_is_word("or")? {
            self.next()?;
            let right = self.parse_and(depth, "`or`")?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self, depth: usize, after: &str) -> Result<Expr, SegmentError> {
        let mut left = self.parse_unary(depth, after)?;
        while self.peek_is_word("and")? {
            self.next()?;
            let right = self.parse_unary(depth, "`and`")?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_unary(&mut self, depth: usize, after: &str) -> Result<Expr, SegmentError> {
        if self.peek_is_word("not")? {
            let t = self.next()?;
            let depth = deeper(depth, t.start)?;
            let inner = self.parse_unary(depth, "`not`")?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.parse_primary(depth, after)
    }

    fn parse_primary(&mut self, depth: usize, after: &str) -> Result<Expr, SegmentError> {
        let t = self.next()?;
        let condition = match &t.tok {
            Tok::LParen => false,
            Tok::Word(w) => !w.eq_ignore_ascii_case("all"),
            _ => true,
        };
        if condition {
            self.conditions += 1;
            if self.conditions > MAX_SEGMENT_CONDITIONS {
                return Err(SegmentError {
                    position: t.start,
                    message: format!(
                        "the filter has more than {MAX_SEGMENT_CONDITIONS} conditions: split it into simpler segments, or use `in [...]` for many values of one tag"
                    ),
                    too_complex: true,
                });
            }
        }
        let expected = format!("expected a condition{}", after_text(after));
        match t.tok {
            Tok::LParen => {
                let depth = deeper(depth, t.start)?;
                let inner = self.parse_or(depth, "`(`")?;
                let close = self.next()?;
                match close.tok {
                    Tok::RParen => Ok(inner),
                    Tok::End => err(
                        close.start,
                        format!(
                            "unbalanced parenthesis: the `(` at character {} is never closed; add a `)`",
                            t.start
                        ),
                    ),
                    _ => err(
                        close.start,
                        format!(
                            "expected `and`, `or` or `)`, found {}",
                            self.describe(&close)
                        ),
                    ),
                }
            }
            Tok::Word(ref w) if w.eq_ignore_ascii_case("all") => Ok(Expr::All),
            Tok::Word(ref w) if w.eq_ignore_ascii_case("exists") => self.parse_exists(),
            Tok::Word(ref w) if is_keyword(w) => err(
                t.start,
                format!(
                    "{expected}, found the keyword `{w}`; a tag with this name is written in backticks: `{w}`"
                ),
            ),
            Tok::Word(name) | Tok::Quoted(name) => self.parse_predicate(name),
            Tok::Str(_) | Tok::Number { .. } | Tok::Date(_) | Tok::Minus => err(
                t.start,
                format!(
                    "{expected}, found {}: a condition starts with a tag name, e.g. city = \"Berlin\" or city = \"Munich\", or city in [\"Berlin\", \"Munich\"]",
                    self.describe(&t)
                ),
            ),
            _ => err(t.start, format!("{expected}, found {}", self.describe(&t))),
        }
    }

    fn parse_exists(&mut self) -> Result<Expr, SegmentError> {
        let open = self.next()?;
        if open.tok != Tok::LParen {
            return err(
                open.start,
                format!(
                    "expected `(` after `exists`, e.g. exists(city), found {}",
                    self.describe(&open)
                ),
            );
        }
        let t = self.next()?;
        let tag = match t.tok {
            Tok::Word(ref w) if is_keyword(w) => {
                return err(
                    t.start,
                    format!(
                        "expected a tag name in exists(…), found the keyword `{w}`; a tag with this name is written in backticks: `{w}`"
                    ),
                );
            }
            Tok::Word(name) | Tok::Quoted(name) => name,
            _ => {
                return err(
                    t.start,
                    format!(
                        "expected a tag name in exists(…), found {}",
                        self.describe(&t)
                    ),
                );
            }
        };
        let close = self.next()?;
        if close.tok != Tok::RParen {
            return err(
                close.start,
                format!(
                    "expected `)` after the tag name in exists(…), found {}",
                    self.describe(&close)
                ),
            );
        }
        Ok(Expr::Exists { tag })
    }

    fn parse_predicate(&mut self, tag: String) -> Result<Expr, SegmentError> {
        let t = self.next()?;
        match t.tok {
            Tok::Op(op) => {
                let value = self.parse_value(&format!("`{op}`"))?;
                Ok(Expr::Compare { tag, op, value })
            }
            Tok::Word(ref w) if w.eq_ignore_ascii_case("in") => {
                let values = self.parse_list("`in`")?;
                Ok(Expr::In {
                    tag,
                    values,
                    negated: false,
                })
            }
            Tok::Word(ref w) if w.eq_ignore_ascii_case("not") => {
                let t2 = self.next()?;
                if !matches!(&t2.tok, Tok::Word(w) if w.eq_ignore_ascii_case("in")) {
                    return err(
                        t2.start,
                        format!(
                            "expected `in` after `not` (tag not in [...]), found {}; to negate a comparison put `not` first (not {} = 1) or use `!=`",
                            self.describe(&t2),
                            TagName(&tag)
                        ),
                    );
                }
                let values = self.parse_list("`not in`")?;
                Ok(Expr::In {
                    tag,
                    values,
                    negated: true,
                })
            }
            Tok::Word(ref w) if w.eq_ignore_ascii_case("contains") => {
                let start = self.peek()?.start;
                let value = self.parse_value("`contains`")?;
                if !matches!(value, Value::String(_)) {
                    return err(
                        start,
                        format!(
                            "`contains` takes a string in double quotes, e.g. {} contains \"vip\"",
                            TagName(&tag)
                        ),
                    );
                }
                Ok(Expr::Contains { tag, value })
            }
            _ => err(
                t.start,
                format!(
                    "expected an operator after {} ({OPERATORS}), found {}",
                    TagName(&tag),
                    self.describe(&t)
                ),
            ),
        }
    }

    fn parse_list(&mut self, after: &str) -> Result<Vec<Value>, SegmentError> {
        let open = self.next()?;
        if open.tok != Tok::LBracket {
            return err(
                open.start,
                format!(
                    "expected a list after {after}, e.g. [\"pro\", \"team\"], found {}",
                    self.describe(&open)
                ),
            );
        }
        if self.peek()?.tok == Tok::RBracket {
            return err(
                open.start,
                "empty list: list at least one value, e.g. [\"pro\"]",
            );
        }
        let mut values = Vec::new();
        let mut separator = "`[`";
        loop {
            if values.len() == MAX_SEGMENT_LIST_ITEMS {
                let at = self.peek()?.start;
                return err(
                    at,
                    format!("too many values in the list: at most {MAX_SEGMENT_LIST_ITEMS}"),
                );
            }
            if self.peek()?.tok == Tok::LBracket {
                let at = self.peek()?.start;
                return err(at, "lists cannot be nested");
            }
            values.push(self.parse_value(separator)?);
            let t = self.next()?;
            match t.tok {
                Tok::RBracket => break,
                Tok::Comma => {
                    if self.peek()?.tok == Tok::RBracket {
                        self.next()?;
                        break;
                    }
                    separator = "`,`";
                }
                Tok::End => {
                    return err(
                        t.start,
                        format!(
                            "unclosed list: the `[` at character {} needs a `]`",
                            open.start
                        ),
                    );
                }
                _ => {
                    return err(
                        t.start,
                        format!(
                            "expected `,` or `]` in the list, found {}",
                            self.describe(&t)
                        ),
                    );
                }
            }
        }
        Ok(values)
    }

    fn parse_value(&mut self, after: &str) -> Result<Value, SegmentError> {
        let t = self.next()?;
        let expected = format!("expected a value after {after}");
        match t.tok {
            Tok::Str(s) => Ok(Value::String(s)),
            Tok::Number { .. } => self.number(&t, false),
            Tok::Minus => {
                let n = self.next()?;
                if matches!(n.tok, Tok::Number { .. }) {
                    self.number(&n, true)
                } else {
                    err(
                        n.start,
                        format!("expected a number after `-`, found {}", self.describe(&n)),
                    )
                }
            }
            Tok::Date(d) => Ok(Value::Date(d)),
            Tok::Word(ref w) if w.eq_ignore_ascii_case("true") => Ok(Value::Boolean(true)),
            Tok::Word(ref w) if w.eq_ignore_ascii_case("false") => Ok(Value::Boolean(false)),
            Tok::Word(ref w) if w.eq_ignore_ascii_case("now") => self.relative(),
            Tok::Word(ref w) if !is_keyword(w) => {
                let w = short(w);
                err(
                    t.start,
                    format!(
                        "{expected}, found `{w}`: write text in double quotes, e.g. \"{w}\" (values are strings, numbers, true/false, dates such as 2026-01-31 or times such as now-30d)"
                    ),
                )
            }
            Tok::LBracket => err(
                t.start,
                "a list of values only follows `in` or `not in`, e.g. plan in [\"pro\", \"team\"]",
            ),
            _ => err(t.start, format!("{expected}, found {}", self.describe(&t))),
        }
    }

    fn number(&self, t: &Token, negative: bool) -> Result<Value, SegmentError> {
        let Tok::Number {
            digits,
            fraction,
            suffix,
        } = &t.tok
        else {
            return err(t.start, "expected a number");
        };
        let shown = short(digits);
        if let Some((s, at)) = suffix {
            let hint = if RelativeUnit::from_symbol(s).is_some() {
                format!(": a duration only follows `now`, e.g. now-{shown}{s}")
            } else {
                String::new()
            };
            return err(
                *at,
                format!("unexpected `{}` after the number `{shown}`{hint}", short(s)),
            );
        }
        let text = if negative {
            format!("-{digits}")
        } else {
            digits.clone()
        };
        if *fraction {
            match text.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Value::Float(x)),
                _ => err(t.start, format!("the number `{shown}` is too large")),
            }
        } else {
            text.parse::<i64>().map(Value::Integer).or_else(|_| {
                err(
                    t.start,
                    format!(
                        "the integer `{}` is out of range: integers go from {} to {}; write a decimal (with a `.`) for larger numbers",
                        short(&text),
                        i64::MIN,
                        i64::MAX
                    ),
                )
            })
        }
    }

    /// After `now`: an optional `+N unit` or `-N unit`.
    fn relative(&mut self) -> Result<Value, SegmentError> {
        let sign = match self.peek()?.tok {
            Tok::Plus => '+',
            Tok::Minus => '-',
            _ => {
                return Ok(Value::Relative {
                    amount: 0,
                    unit: RelativeUnit::Day,
                });
            }
        };
        self.next()?;
        let n = self.next()?;
        let Tok::Number {
            digits,
            fraction,
            suffix,
        } = &n.tok
        else {
            return err(
                n.start,
                format!(
                    "expected a number and a unit after `now{sign}`, e.g. now{sign}30d, found {}",
                    self.describe(&n)
                ),
            );
        };
        if *fraction {
            return err(
                n.start,
                "relative times take whole numbers: write e.g. now-36h rather than now-1.5d",
            );
        }
        let shown = short(digits);
        let Some((unit_text, unit_at)) = suffix else {
            return err(
                n.end,
                format!("expected a unit after `now{sign}{shown}`: {UNITS}"),
            );
        };
        let Some(unit) = RelativeUnit::from_symbol(unit_text) else {
            return err(
                *unit_at,
                format!(
                    "unknown unit `{}`: use {UNITS}; months and years vary in length, so write e.g. now-30d or now-365d",
                    short(unit_text)
                ),
            );
        };
        let too_far = || {
            err(
                n.start,
                format!(
                    "`now{sign}{shown}{unit_text}` reaches too far: relative times go at most 100 years (36525d) from now"
                ),
            )
        };
        let Ok(magnitude) = digits.parse::<i64>() else {
            return too_far();
        };
        if magnitude
            .checked_mul(unit.seconds())
            .is_none_or(|s| s > MAX_RELATIVE_SECONDS)
        {
            return too_far();
        }
        let amount = if sign == '-' { -magnitude } else { magnitude };
        Ok(Value::Relative { amount, unit })
    }
}

fn deeper(depth: usize, position: usize) -> Result<usize, SegmentError> {
    if depth >= MAX_SEGMENT_DEPTH {
        return Err(SegmentError {
            position,
            message: format!(
                "the filter nests too deeply: at most {MAX_SEGMENT_DEPTH} levels of parentheses and `not`; write it flatter"
            ),
            too_complex: true,
        });
    }
    Ok(depth + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::Tags;
    use proptest::prelude::*;
    use time::macros::{date, datetime};

    const NOW: OffsetDateTime = datetime!(2026-03-15 12:00 UTC);

    fn seg(input: &str) -> Segment {
        Segment::parse(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }

    fn error(input: &str) -> SegmentError {
        match Segment::parse(input) {
            Ok(s) => panic!("{input:?} should not parse, got {:?}", s.expr()),
            Err(e) => e,
        }
    }

    fn tags(pairs: &[(&str, TagValue)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    /// Asserts each filter's result for one contact.
    fn check(contact: &Tags, cases: &[(&str, bool)]) {
        for (filter, expected) in cases {
            assert_eq!(
                seg(filter).matches(contact, NOW),
                *expected,
                "{filter} for {contact:?}"
            );
        }
    }

    fn cmp(tag: &str, op: CompareOp, value: Value) -> Expr {
        Expr::Compare {
            tag: tag.into(),
            op,
            value,
        }
    }

    fn and(a: Expr, b: Expr) -> Expr {
        Expr::And(Box::new(a), Box::new(b))
    }

    fn or(a: Expr, b: Expr) -> Expr {
        Expr::Or(Box::new(a), Box::new(b))
    }

    fn not(a: Expr) -> Expr {
        Expr::Not(Box::new(a))
    }

    fn int(tag: &str, i: i64) -> Expr {
        cmp(tag, CompareOp::Eq, Value::Integer(i))
    }

    #[test]
    fn parses_the_console_example() {
        let s = seg(r#"city = "Berlin" and visits >= 3"#);
        assert_eq!(
            s.expr(),
            &and(
                cmp("city", CompareOp::Eq, Value::String("Berlin".into())),
                cmp("visits", CompareOp::Ge, Value::Integer(3)),
            )
        );
        assert_eq!(s.source(), r#"city = "Berlin" and visits >= 3"#);
        let json: serde_json::Value =
            serde_json::from_str(r#"{"filter": "city = \"Berlin\" and visits >= 3"}"#).unwrap();
        let from_api: Segment = serde_json::from_value(json["filter"].clone()).unwrap();
        assert_eq!(from_api, s);
    }

    #[test]
    fn every_value_form() {
        let cases = [
            (
                r#"x = "a \"b\" \\ c""#,
                Value::String(r#"a "b" \ c"#.into()),
            ),
            ("x = 42", Value::Integer(42)),
            ("x = -42", Value::Integer(-42)),
            ("x = - 42", Value::Integer(-42)),
            ("x = 2.5", Value::Float(2.5)),
            ("x = -0.25", Value::Float(-0.25)),
            ("x = true", Value::Boolean(true)),
            ("x = FALSE", Value::Boolean(false)),
            ("x = 2026-01-31", Value::Date(date!(2026 - 01 - 31))),
            (
                "x = now",
                Value::Relative {
                    amount: 0,
                    unit: RelativeUnit::Day,
                },
            ),
            (
                "x = now-30d",
                Value::Relative {
                    amount: -30,
                    unit: RelativeUnit::Day,
                },
            ),
            (
                "x = NOW + 2w",
                Value::Relative {
                    amount: 2,
                    unit: RelativeUnit::Week,
                },
            ),
            (
                "x = now-12h",
                Value::Relative {
                    amount: -12,
                    unit: RelativeUnit::Hour,
                },
            ),
            (
                "x = now+90m",
                Value::Relative {
                    amount: 90,
                    unit: RelativeUnit::Minute,
                },
            ),
            ("x = -9223372036854775808", Value::Integer(i64::MIN)),
        ];
        for (input, value) in cases {
            assert_eq!(
                seg(input).expr(),
                &cmp("x", CompareOp::Eq, value),
                "{input}"
            );
        }
        assert_eq!(
            seg(r#"plan in ["pro", "team",]"#).expr(),
            &Expr::In {
                tag: "plan".into(),
                values: vec![Value::String("pro".into()), Value::String("team".into())],
                negated: false,
            }
        );
        assert_eq!(
            seg("plan NOT IN [1, 2.5, true, 2026-01-01, now-1d]").expr(),
            &Expr::In {
                tag: "plan".into(),
                values: vec![
                    Value::Integer(1),
                    Value::Float(2.5),
                    Value::Boolean(true),
                    Value::Date(date!(2026 - 01 - 01)),
                    Value::Relative {
                        amount: -1,
                        unit: RelativeUnit::Day
                    },
                ],
                negated: true,
            }
        );
        assert_eq!(
            seg(r#"`first name` Contains "ana" and exists(`a\`b\\c`) and `and` = 1"#).expr(),
            &and(
                and(
                    Expr::Contains {
                        tag: "first name".into(),
                        value: Value::String("ana".into())
                    },
                    Expr::Exists {
                        tag: "a`b\\c".into()
                    },
                ),
                int("and", 1),
            )
        );
        assert_eq!(seg("ALL").expr(), &Expr::All);
        assert_eq!(
            seg("not exists( phone )").expr(),
            &not(Expr::Exists {
                tag: "phone".into()
            })
        );
    }

    #[test]
    fn not_binds_tighter_than_and_tighter_than_or() {
        assert_eq!(
            seg("a = 1 or b = 1 and not c = 1").expr(),
            &or(int("a", 1), and(int("b", 1), not(int("c", 1))))
        );
        assert_eq!(
            seg("not a = 1 and b = 1").expr(),
            &and(not(int("a", 1)), int("b", 1))
        );
        assert_eq!(
            seg("(a = 1 or b = 1) and c = 1").expr(),
            &and(or(int("a", 1), int("b", 1)), int("c", 1))
        );
        assert_eq!(
            seg("not (a = 1 or b = 1)").expr(),
            &not(or(int("a", 1), int("b", 1)))
        );
        assert_eq!(
            seg("a = 1 and b = 1 and c = 1").expr(),
            &and(and(int("a", 1), int("b", 1)), int("c", 1)),
            "left-associative"
        );
        assert_eq!(
            seg("a = 1 and (b = 1 and c = 1)").expr(),
            &and(int("a", 1), and(int("b", 1), int("c", 1)))
        );
        assert_eq!(seg("((((a = 1))))").expr(), &int("a", 1));
        assert_eq!(seg("not not a = 1").expr(), &not(not(int("a", 1))));

        let contact = tags(&[("a", 1.into()), ("b", 2.into()), ("c", 1.into())]);
        check(
            &contact,
            &[
                ("a = 1 or b = 1 and c = 1", true),
                ("(a = 1 or b = 1) and c = 2", false),
                ("a = 1 or (b = 1 and c = 2)", true),
                ("not a = 1 or b = 2", true),
                ("not (a = 1 or b = 2)", false),
                ("not a = 2 and not b = 1", true),
                ("all", true),
                ("not all", false),
                ("all and a = 2", false),
            ],
        );
    }

    #[test]
    fn string_tags() {
        let contact = tags(&[("city", "Berlin".into()), ("empty", "".into())]);
        check(
            &contact,
            &[
                (r#"city = "Berlin""#, true),
                (r#"city = "berlin""#, true),
                (r#"city = "BERLIN""#, true),
                (r#"city = "Berlin ""#, false),
                (r#"city != "berlin""#, false),
                (r#"city != "Munich""#, true),
                // Ordered comparisons are case-sensitive, by code point: 'B' < 'C' < 'a'.
                (r#"city < "C""#, true),
                (r#"city < "a""#, true),
                (r#"city > "Ber""#, true),
                (r#"city >= "Berlin""#, true),
                (r#"city <= "Berlin""#, true),
                (r#"city > "berlin""#, false),
                (r#"city in ["Munich", "BERLIN"]"#, true),
                (r#"city in ["Munich"]"#, false),
                (r#"city not in ["munich", "hamburg"]"#, true),
                (r#"city not in ["berlin"]"#, false),
                (r#"city contains "ERL""#, true),
                (r#"city contains """#, true),
                (r#"city contains "x""#, false),
                ("exists(city)", true),
                ("exists(CITY)", true),
                // Type mismatches: never equal, never ordered.
                ("city = 3", false),
                ("city != 3", true),
                ("city > 3", false),
                ("city = true", false),
                ("city < 2026-01-01", false),
                ("city != 2026-01-01", true),
                (r#"empty = """#, true),
                ("exists(empty)", true),
            ],
        );
    }

    #[test]
    fn unicode_strings() {
        let contact = tags(&[
            ("city", "Köln".into()),
            ("greeting", "Привет, мир 👋".into()),
            ("`odd` name", "ÅNGSTRÖM".into()),
        ]);
        check(
            &contact,
            &[
                (r#"city = "KÖLN""#, true),
                (r#"city = "köln""#, true),
                (r#"city = "Koln""#, false),
                (r#"greeting contains "МИР""#, true),
                (r#"greeting contains "👋""#, true),
                (r#"greeting = "привет, МИР 👋""#, true),
                (r#"`\`odd\` name` = "ångström""#, true),
                (r#"city > "Kz""#, true),
            ],
        );
        assert_eq!(fold_case("ÅNGSTRÖM Σ"), "ångström σ");
    }

    #[test]
    fn number_tags() {
        let contact = tags(&[("visits", 5.into()), ("score", 2.5.into())]);
        check(
            &contact,
            &[
                ("visits = 5", true),
                ("visits = 5.0", true),
                ("visits != 5", false),
                ("visits != 4", true),
                ("visits < 6", true),
                ("visits <= 5", true),
                ("visits > 4.5", true),
                ("visits >= 5", true),
                ("visits > 5", false),
                ("visits < -1", false),
                ("visits in [1, 5]", true),
                ("visits in [1, 2]", false),
                ("visits not in [1, 2]", true),
                ("visits not in [5.0]", false),
                (r#"visits = "5""#, false),
                (r#"visits != "5""#, true),
                (r#"visits > "4""#, false),
                (r#"visits contains "5""#, false),
                ("visits = true", false),
                ("score = 2.5", true),
                ("score > 2", true),
                ("score < 3", true),
                ("score >= 2.5", true),
                ("score != 2", true),
                ("score in [2, 2.5]", true),
                ("score > now", false),
            ],
        );
        let big = tags(&[("n", i64::MAX.into())]);
        check(
            &big,
            &[
                ("n = 9223372036854775807", true),
                ("n > 9223372036854775806", true),
            ],
        );
        let nan = tags(&[("n", f64::NAN.into())]);
        check(
            &nan,
            &[
                ("n = 1", false),
                ("n != 1", true),
                ("n < 1", false),
                ("n >= 1", false),
            ],
        );
    }

    #[test]
    fn boolean_tags() {
        let contact = tags(&[("vip", true.into())]);
        check(
            &contact,
            &[
                ("vip = true", true),
                ("vip = TRUE", true),
                ("vip != false", true),
                ("vip = false", false),
                ("vip > false", false),
                ("vip <= true", false),
                ("vip in [false, true]", true),
                ("vip not in [false]", true),
                (r#"vip = "true""#, false),
                ("vip = 1", false),
                (r#"vip contains "t""#, false),
            ],
        );
    }

    #[test]
    fn date_tags() {
        // NOW is 2026-03-15 12:00 UTC.
        let contact = tags(&[("signup", date!(2026 - 01 - 31).into())]);
        check(
            &contact,
            &[
                ("signup = 2026-01-31", true),
                ("signup != 2026-01-31", false),
                ("signup < 2026-02-01", true),
                ("signup <= 2026-01-31", true),
                ("signup > 2026-01-30", true),
                ("signup >= 2026-02-01", false),
                ("signup in [2026-01-01, 2026-01-31]", true),
                ("signup not in [2026-01-01]", true),
                // now-60d is 2026-01-14, now-30d is 2026-02-13.
                ("signup >= now-60d", true),
                ("signup >= now-30d", false),
                ("signup < now", true),
                ("signup = now", false),
                ("signup = now-43d", true),
                // now-6w is 2026-02-01.
                ("signup < now-6w", true),
                ("signup > now-6w", false),
                // Compared with strings by its text, as once stored in JSON.
                (r#"signup = "2026-01-31""#, true),
                (r#"signup > "2026-01""#, true),
                (r#"signup contains "-01-""#, true),
                ("signup = 20260131", false),
                ("signup != 20260131", true),
            ],
        );
        let today = tags(&[("d", date!(2026 - 03 - 15).into())]);
        check(
            &today,
            &[
                ("d = now", true),
                // 12:00 + 11h is still the 15th; + 12h is the 16th (UTC dates).
                ("d = now+11h", true),
                ("d < now+12h", true),
                ("d = now-720m", true),
                ("d = now-721m", false),
            ],
        );
    }

    #[test]
    fn date_time_tags() {
        // 2026-03-15T01:00+02:00 is 2026-03-14T23:00Z: its UTC date is the 14th.
        let seen = datetime!(2026-03-15 01:00 +02:00);
        let contact = tags(&[("last_seen", seen.into())]);
        check(
            &contact,
            &[
                ("last_seen = 2026-03-14", true),
                ("last_seen = 2026-03-15", false),
                ("last_seen < 2026-03-15", true),
                ("last_seen >= 2026-03-14", true),
                // NOW - 12h = 2026-03-15T00:00Z, 13 h earlier than NOW = 2026-03-14T23:00Z.
                ("last_seen > now-12h", false),
                ("last_seen >= now-13h", true),
                ("last_seen = now-780m", true),
                ("last_seen > now-1d", true),
                ("last_seen > now-1w", true),
                ("last_seen < now", true),
                ("last_seen != now", true),
                (r#"last_seen = "2026-03-15T01:00:00+02:00""#, true),
                (r#"last_seen contains "T01:00""#, true),
                ("last_seen = 1", false),
            ],
        );
    }

    #[test]
    fn strings_written_as_dates_behave_like_dates() {
        let contact = tags(&[
            ("signup", "2026-01-31".into()),
            ("seen", "2026-03-14T23:00:00Z".into()),
            ("german", "31.01.2026".into()),
            ("spaced", " 2026-01-31".into()),
        ]);
        check(
            &contact,
            &[
                ("signup = 2026-01-31", true),
                ("signup >= now-60d", true),
                ("signup >= now-30d", false),
                ("seen = 2026-03-14", true),
                ("seen >= now-13h", true),
                ("seen > now-12h", false),
                ("german = 2026-01-31", false),
                ("german < now", false),
                ("german != 2026-01-31", true),
                ("spaced = 2026-01-31", false),
                (r#"german = "31.01.2026""#, true),
            ],
        );
    }

    #[test]
    fn list_tags() {
        let contact = tags(&[("langs", vec!["de".to_owned(), "EN".to_owned()].into())]);
        check(
            &contact,
            &[
                (r#"langs contains "en""#, true),
                (r#"langs contains "de""#, true),
                (r#"langs contains "d""#, false),
                (r#"langs contains "fr""#, false),
                // A list is never equal to a value and has no order: use `contains`.
                (r#"langs = "de""#, false),
                (r#"langs != "de""#, true),
                (r#"langs in ["de", "en"]"#, false),
                (r#"langs not in ["de"]"#, true),
                (r#"langs > "a""#, false),
                ("exists(langs)", true),
            ],
        );
    }

    #[test]
    fn a_missing_tag_fails_every_comparison_even_the_negative_ones() {
        let nobody = Tags::new();
        for filter in [
            "x = 1",
            "x != 1",
            "x < 1",
            "x <= 1",
            "x > 1",
            "x >= 1",
            r#"x = "a""#,
            r#"x != "a""#,
            "x = true",
            "x != false",
            "x < now",
            "x != 2026-01-01",
            "x in [1, 2]",
            "x not in [1, 2]",
            r#"x contains """#,
            "exists(x)",
        ] {
            assert!(!seg(filter).matches(&nobody, NOW), "{filter}");
        }
        for filter in [
            "not x = 1",
            "not x != 1",
            "not x in [1]",
            "not x not in [1]",
            "not exists(x)",
            "not exists(x) or x != 1",
            "all",
        ] {
            assert!(seg(filter).matches(&nobody, NOW), "{filter}");
        }
        // Tag lookup falls back to ASCII-case-insensitive names.
        let contact = tags(&[("Plan", "pro".into())]);
        check(
            &contact,
            &[(r#"plan = "PRO""#, true), ("exists(PLAN)", true)],
        );
    }

    #[test]
    fn relative_values_resolve_against_now() {
        let r = |amount, unit| Value::Relative { amount, unit };
        assert_eq!(
            r(-30, RelativeUnit::Day).resolve_time(NOW),
            Some(datetime!(2026-02-13 12:00 UTC))
        );
        assert_eq!(
            r(2, RelativeUnit::Week).resolve_time(NOW),
            Some(datetime!(2026-03-29 12:00 UTC))
        );
        assert_eq!(
            r(-12, RelativeUnit::Hour).resolve_time(NOW),
            Some(datetime!(2026-03-15 00:00 UTC))
        );
        assert_eq!(
            r(45, RelativeUnit::Minute).resolve_time(NOW),
            Some(datetime!(2026-03-15 12:45 UTC))
        );
        assert_eq!(r(0, RelativeUnit::Day).resolve_time(NOW), Some(NOW));
        assert_eq!(r(i64::MAX, RelativeUnit::Week).resolve_time(NOW), None);
        assert_eq!(
            Value::Date(date!(2026 - 01 - 31)).resolve_time(NOW),
            Some(datetime!(2026-01-31 00:00 UTC))
        );
        assert_eq!(Value::Integer(1).resolve_time(NOW), None);

        // The same segment moves with `now`.
        let s = seg("signup >= now-7d");
        let contact = tags(&[("signup", date!(2026 - 03 - 01).into())]);
        assert!(s.matches(&contact, datetime!(2026-03-08 09:00 UTC)));
        assert!(!s.matches(&contact, datetime!(2026-03-09 09:00 UTC)));
        // `now` in another offset is the same instant; dates are taken in UTC.
        assert!(s.matches(&contact, datetime!(2026-03-09 00:30 +02:00)));
    }

    #[test]
    fn referenced_tags_in_order_without_duplicates() {
        let s = seg(
            r#"(b = 1 or a = 2) and not exists(b) and c contains "x" or d in [1] or `e f` < 3"#,
        );
        assert_eq!(s.referenced_tags(), vec!["b", "a", "c", "d", "e f"]);
        assert!(Segment::all().referenced_tags().is_empty());
    }

    #[test]
    fn all_selects_everyone() {
        let all = Segment::all();
        assert_eq!(all, seg("all"));
        assert_eq!(all.source(), "all");
        assert!(all.matches(&Tags::new(), NOW));
        assert!(all.matches(&NoTagsProbe, NOW));
    }

    /// A lookup through `dyn`, to prove `matches` takes unsized lookups.
    struct NoTagsProbe;
    impl TagLookup for NoTagsProbe {
        fn tag(&self, _name: &str) -> Option<Cow<'_, TagValue>> {
            None
        }
    }

    #[test]
    fn matches_takes_trait_objects() {
        let lookup: &dyn TagLookup = &NoTagsProbe;
        assert!(seg("not exists(x)").matches(lookup, NOW));
    }

    #[test]
    fn operands_flatten_one_operator_chains() {
        let s = seg("a = 1 and (b = 1 and c = 1) and (d = 1 or e = 1) and not (f = 1 and g = 1)");
        let names: Vec<String> = s.expr().operands().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            names,
            [
                "a = 1",
                "b = 1",
                "c = 1",
                "d = 1 or e = 1",
                "not (f = 1 and g = 1)"
            ]
        );
        assert_eq!(seg("d = 1 or e = 1 or f = 1").expr().operands().len(), 3);
        assert_eq!(seg("not a = 1").expr().operands(), vec![&not(int("a", 1))]);
        let long = format!("{}all", "all or ".repeat(1_400));
        assert_eq!(seg(&long).expr().operands().len(), 1_401);
    }

    #[test]
    fn canonical_display() {
        let cases = [
            (
                r#"  CITY="Berlin"   AND visits>=3 "#,
                r#"CITY = "Berlin" and visits >= 3"#,
            ),
            (
                r#"NOT (a=1 OR b=2) and c in ["x",]"#,
                r#"not (a = 1 or b = 2) and c in ["x"]"#,
            ),
            ("(a = 1 and b = 1) and c = 1", "a = 1 and b = 1 and c = 1"),
            ("a = 1 and (b = 1 and c = 1)", "a = 1 and (b = 1 and c = 1)"),
            ("(a = 1 or b = 1) or c = 1", "a = 1 or b = 1 or c = 1"),
            ("a = 1 or (b = 1 or c = 1)", "a = 1 or (b = 1 or c = 1)"),
            ("a = 1 or (b = 1 and c = 1)", "a = 1 or b = 1 and c = 1"),
            ("(not a = 1)", "not a = 1"),
            ("x = 3.0", "x = 3.0"),
            ("x = -0.50", "x = -0.5"),
            ("x = now - 0d", "x = now"),
            ("x = now+0h", "x = now+0h"),
            ("x > NOW-30d", "x > now-30d"),
            ("x NOT IN [2026-1-1]", ""),
            ("`and` = TRUE", "`and` = true"),
            ("`Now` = 1", "`Now` = 1"),
            ("`plain` = 1", "plain = 1"),
            (r#"`a b` contains "q\"\\""#, r#"`a b` contains "q\"\\""#),
            ("Exists(`x-y`)", "exists(`x-y`)"),
            ("not exists(x)", "not exists(x)"),
        ];
        for (input, canonical) in cases {
            if canonical.is_empty() {
                continue;
            }
            let s = seg(input);
            assert_eq!(s.to_string(), canonical, "{input}");
            assert_eq!(seg(canonical), s, "{canonical} parses back");
            assert_eq!(s.source(), input);
        }
    }

    #[test]
    fn equality_ignores_spelling_and_serde_keeps_the_source() {
        assert_eq!(seg("a=1 AND b=2"), seg("(a = 1) and (b = 2)"));
        assert_ne!(seg("a = 1"), seg("a = 1.0"));
        let s = seg("a=1  AND b=2");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""a=1  AND b=2""#);
        let back: Segment = serde_json::from_str(r#""a=1  AND b=2""#).unwrap();
        assert_eq!(back.source(), "a=1  AND b=2");
        let bad = serde_json::from_str::<Segment>(r#""a = ""#).unwrap_err();
        assert!(bad.to_string().contains("at character 4"), "{bad}");
        assert_eq!("a = 1".parse::<Segment>().unwrap(), seg("a = 1"));
    }

    #[test]
    fn error_positions_and_messages() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty filter"),
            ("   ", 0, "empty filter"),
            (
                "city = ",
                7,
                "expected a value after `=`, found end of input",
            ),
            (r#"city = "Berlin"#, 7, "unclosed string"),
            (
                "city = 'Berlin'",
                7,
                r#"strings use double quotes: write "Berlin""#,
            ),
            (
                "visits => 3",
                7,
                "unknown operator `=>` (did you mean `>=`?)",
            ),
            (
                "visits == 3",
                7,
                "unknown operator `==` (did you mean `=`?)",
            ),
            ("visits =< 3", 7, "(did you mean `<=`?)"),
            ("a <> 1", 2, "unknown operator `<>` (did you mean `!=`?)"),
            (
                "x = 1 && y = 2",
                6,
                "unknown operator `&&` (did you mean `and`?)",
            ),
            ("x = 1 || y = 2", 6, "(did you mean `or`?)"),
            ("!exists(x)", 0, "(did you mean `!=` or `not`?)"),
            (
                r#"(city = "x""#,
                11,
                "unbalanced parenthesis: the `(` at character 0 is never closed",
            ),
            (
                r#"city = "x")"#,
                10,
                "unbalanced parenthesis: this `)` has no matching `(`",
            ),
            (
                r#"city "Berlin""#,
                5,
                r#"expected an operator after city (=, !=, <, <=, >, >=, in, not in, contains), found the string "Berlin""#,
            ),
            (
                "city = Berlin",
                7,
                r#"expected a value after `=`, found `Berlin`: write text in double quotes, e.g. "Berlin""#,
            ),
            (
                r#"city = "a" and"#,
                14,
                "expected a condition after `and`, found end of input",
            ),
            (
                r#"city = "a" city = "b""#,
                11,
                "expected `and` or `or` between conditions, found `city`",
            ),
            (
                r#"city = "Berlin" or "Munich""#,
                19,
                r#"expected a condition after `or`, found the string "Munich": a condition starts with a tag name"#,
            ),
            (
                "signup > now-30",
                15,
                "expected a unit after `now-30`: m (minutes), h (hours), d (days) or w (weeks)",
            ),
            ("signup > now-1y", 14, "unknown unit `y`"),
            ("signup > now-1M", 14, "unknown unit `M`"),
            ("signup > now-1.5d", 13, "whole numbers"),
            ("signup > now-40000d", 13, "reaches too far"),
            (
                "signup > now-",
                13,
                "expected a number and a unit after `now-`",
            ),
            ("signup > 2026-13-01", 9, "invalid date `2026-13-01`"),
            ("signup > 2026-02-30", 9, "invalid date"),
            ("signup > 2026-1-5", 9, "write dates as YYYY-MM-DD"),
            ("signup > 2026-01-31T10:00", 19, "dates have no time of day"),
            (
                r#"plan in "pro""#,
                8,
                r#"expected a list after `in`, e.g. ["pro", "team"], found the string "pro""#,
            ),
            (
                r#"plan in ["pro" "team"]"#,
                15,
                r#"expected `,` or `]` in the list, found the string "team""#,
            ),
            (
                r#"plan in ["pro", "team""#,
                22,
                "unclosed list: the `[` at character 8 needs a `]`",
            ),
            ("plan in []", 8, "empty list"),
            ("plan in [[1]]", 9, "lists cannot be nested"),
            (
                "exists city",
                7,
                "expected `(` after `exists`, e.g. exists(city)",
            ),
            (
                "exists(city",
                11,
                "expected `)` after the tag name in exists(…)",
            ),
            ("exists()", 7, "expected a tag name in exists(…), found `)`"),
            (
                "and = 1",
                0,
                "expected a condition, found the keyword `and`; a tag with this name is written in backticks: `and`",
            ),
            (
                "tags contains 3",
                14,
                "`contains` takes a string in double quotes",
            ),
            (
                r#"x = ["a"]"#,
                4,
                "a list of values only follows `in` or `not in`",
            ),
            ("x = 1.", 5, "expected digits after the decimal point"),
            (r#"x = "a\nb""#, 6, r"unknown escape `\n` in a string"),
            ("x = 99999999999999999999", 4, "is out of range"),
            ("x = 1 ; y = 2", 6, "unexpected character `;`"),
            ("x not = 1", 6, "expected `in` after `not`"),
            (
                "x = 30d",
                6,
                "unexpected `d` after the number `30`: a duration only follows `now`, e.g. now-30d",
            ),
            ("x = 3abc", 5, "unexpected `abc` after the number `3`"),
            ("größe = 1", 0, "go in backticks: `größe`"),
            ("ö = 1", 0, "go in backticks, e.g. `ö`"),
            ("`` = 1", 0, "empty tag name"),
            ("`abc = 1", 0, "unclosed tag name"),
            ("()", 1, "expected a condition after `(`, found `)`"),
            (
                "x = -",
                5,
                "expected a number after `-`, found end of input",
            ),
            ("x = -y", 5, "expected a number after `-`, found `y`"),
            ("x", 1, "expected an operator after x"),
            ("x = 1 or", 8, "expected a condition after `or`"),
            (
                "not",
                3,
                "expected a condition after `not`, found end of input",
            ),
            ("(x = 1 y = 2)", 7, "expected `and`, `or` or `)`, found `y`"),
            (
                "x = and",
                4,
                "expected a value after `=`, found the keyword `and`",
            ),
            ("5 = x", 0, "expected a condition, found the number `5`"),
        ];
        for (input, position, message) in cases {
            let e = error(input);
            assert_eq!(e.position, *position, "{input:?}: {e}");
            assert!(
                e.message.contains(message),
                "{input:?}: {:?} should contain {message:?}",
                e.message
            );
        }
        assert_eq!(
            error(r#"city = "Berlin" and visits ="#).to_string(),
            "at character 28: expected a value after `=`, found end of input"
        );
    }

    #[test]
    fn error_positions_count_characters_not_bytes() {
        let e = error(r#"`größe` = "Köln" and x"#);
        assert_eq!(e.position, 22);
        let e = error(r#""ünïcödé" = 1"#);
        assert_eq!(e.position, 0);
        let e = error(r#"x = "ü" y"#);
        assert_eq!(e.position, 8);
    }

    #[test]
    fn limits() {
        // Length.
        let long = format!("x = \"{}\"", "a".repeat(MAX_SEGMENT_CHARS));
        let e = error(&long);
        assert_eq!(e.position, MAX_SEGMENT_CHARS);
        assert!(e.message.contains("too long"), "{e}");
        let fits = format!("x = \"{}\"", "ü".repeat(MAX_SEGMENT_CHARS - 6));
        assert!(Segment::parse(&fits).is_ok(), "characters, not bytes");

        // Depth: parentheses and `not` together.
        let nested = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
        assert!(Segment::parse(&nested(MAX_SEGMENT_DEPTH)).is_ok());
        let e = error(&nested(MAX_SEGMENT_DEPTH + 1));
        assert_eq!(e.position, MAX_SEGMENT_DEPTH);
        assert!(e.message.contains("nests too deeply"), "{e}");
        let nots = |n: usize| format!("{}a = 1", "not ".repeat(n));
        assert!(Segment::parse(&nots(MAX_SEGMENT_DEPTH)).is_ok());
        assert_eq!(
            error(&nots(MAX_SEGMENT_DEPTH + 1)).position,
            4 * MAX_SEGMENT_DEPTH
        );
        let mixed = format!("{}a = 1{}", "not (".repeat(32), ")".repeat(32));
        assert!(Segment::parse(&mixed).is_ok());
        assert!(Segment::parse(&format!("not {mixed}")).is_err());
        // A deep input far beyond the limit is an error, not a stack overflow.
        assert!(Segment::parse(&"(".repeat(MAX_SEGMENT_CHARS)).is_err());
        assert!(Segment::parse(&"not ".repeat(MAX_SEGMENT_CHARS / 4)).is_err());

        // Conditions: each comparison, `in`, `contains` and `exists` counts; `all` does not.
        let chain = |n: usize| {
            let c: Vec<String> = (0..n).map(|i| format!("t{i} contains \"x\"")).collect();
            c.join(" or ")
        };
        assert!(Segment::parse(&chain(MAX_SEGMENT_CONDITIONS)).is_ok());
        let e = error(&chain(MAX_SEGMENT_CONDITIONS + 1));
        assert!(e.too_complex, "{e}");
        assert!(e.message.contains("more than 200 conditions"), "{e}");
        assert_eq!(
            e.position,
            chain(MAX_SEGMENT_CONDITIONS).chars().count() + " or ".len()
        );
        assert!(Segment::parse(&format!("{} or all", chain(MAX_SEGMENT_CONDITIONS))).is_ok());
        assert!(error(&nested(MAX_SEGMENT_DEPTH + 1)).too_complex);
        assert!(!error("x = ").too_complex);

        // List size.
        let list = |n: usize| {
            let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("x in [{}]", items.join(","))
        };
        assert!(Segment::parse(&list(MAX_SEGMENT_LIST_ITEMS)).is_ok());
        let e = error(&list(MAX_SEGMENT_LIST_ITEMS + 1));
        assert!(e.message.contains("at most 1000"), "{e}");
        assert_eq!(
            e.position,
            list(MAX_SEGMENT_LIST_ITEMS).chars().count() - 1 + 1
        );

        // Relative reach.
        assert!(Segment::parse("x > now-36525d").is_ok());
        assert!(Segment::parse("x > now-5217w").is_ok());
        assert!(Segment::parse("x > now-36526d").is_err());
        assert!(Segment::parse("x > now+99999999999999999999m").is_err());
    }

    #[test]
    fn the_longest_chains_parse_evaluate_print_and_drop() {
        for unit in ["all or ", "x = 1 and ", "not x = 1 or "] {
            // As many conditions as allowed, the rest of the length in `all`s.
            let n = ((MAX_SEGMENT_CHARS - 5) / unit.len()).min(MAX_SEGMENT_CONDITIONS);
            let mut input = unit.repeat(n);
            let pad = "all and ";
            input.push_str(&pad.repeat((MAX_SEGMENT_CHARS - 5 - input.len()) / pad.len()));
            input.push_str("all");
            let s = Segment::parse(&input).unwrap_or_else(|e| panic!("{e}"));
            let contact = tags(&[("x", 1.into())]);
            s.matches(&contact, NOW);
            let printed = s.to_string();
            assert_eq!(seg(&printed), s.clone());
            assert!(s.referenced_tags().len() <= 1);
        }
    }

    // --- properties ---

    fn tag_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[A-Za-z_][A-Za-z0-9_]{0,6}",
            1 => prop::sample::select(vec!["and", "OR", "Not", "in", "contains", "exists", "all", "true", "FALSE", "now"])
                .prop_map(str::to_owned),
            2 => "(?s:.){1,6}",
            1 => "[`\\\\ a]{1,4}",
        ]
    }

    fn relative() -> impl Strategy<Value = Value> {
        prop::sample::select(vec![
            RelativeUnit::Minute,
            RelativeUnit::Hour,
            RelativeUnit::Day,
            RelativeUnit::Week,
        ])
        .prop_flat_map(|unit| {
            let max = MAX_RELATIVE_SECONDS / unit.seconds();
            (-max..=max).prop_map(move |amount| Value::Relative { amount, unit })
        })
    }

    fn date() -> impl Strategy<Value = Date> {
        (0i32..=9999, 1u8..=12, 1u8..=31).prop_filter_map("a real date", |(y, m, d)| {
            Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()
        })
    }

    /// Values the parser can produce.
    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            "(?s:.){0,8}".prop_map(Value::String),
            r#"[\\"a ]{0,6}"#.prop_map(Value::String),
            any::<i64>().prop_map(Value::Integer),
            (-1e12f64..1e12).prop_map(Value::Float),
            prop::sample::select(vec![
                0.0,
                -0.0,
                0.1 + 0.2,
                1e-9,
                3.0,
                1e21,
                f64::MAX,
                f64::MIN_POSITIVE
            ])
            .prop_map(Value::Float),
            any::<bool>().prop_map(Value::Boolean),
            date().prop_map(Value::Date),
            relative(),
        ]
    }

    fn leaf() -> impl Strategy<Value = Expr> {
        let ops = prop::sample::select(vec![
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Lt,
            CompareOp::Le,
            CompareOp::Gt,
            CompareOp::Ge,
        ]);
        prop_oneof![
            1 => Just(Expr::All),
            4 => (tag_name(), ops, value()).prop_map(|(tag, op, value)| Expr::Compare { tag, op, value }),
            2 => (tag_name(), prop::collection::vec(value(), 1..4), any::<bool>())
                .prop_map(|(tag, values, negated)| Expr::In { tag, values, negated }),
            1 => (tag_name(), "(?s:.){0,6}").prop_map(|(tag, s)| Expr::Contains { tag, value: Value::String(s) }),
            1 => tag_name().prop_map(|tag| Expr::Exists { tag }),
        ]
    }

    fn expr() -> impl Strategy<Value = Expr> {
        leaf().prop_recursive(8, 48, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| and(a, b)),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| or(a, b)),
                inner.prop_map(not),
            ]
        })
    }

    /// Tag values of every kind, including the awkward ones (NaN, extreme dates and offsets).
    fn tag_value() -> impl Strategy<Value = TagValue> {
        let any_date = (Date::MIN.to_julian_day()..=Date::MAX.to_julian_day())
            .prop_map(|j| Date::from_julian_day(j).expect("in range"));
        let offset =
            (-93_599i32..=93_599).prop_map(|s| UtcOffset::from_whole_seconds(s).expect("in range"));
        let any_time = (0u8..24, 0u8..60, 0u8..60)
            .prop_map(|(h, m, s)| time::Time::from_hms(h, m, s).expect("in range"));
        prop_oneof![
            ".{0,8}".prop_map(TagValue::String),
            date().prop_map(|d| TagValue::String(Value::Date(d).to_string())),
            Just(TagValue::String("2026-03-14T23:00:00+01:00".into())),
            any::<i64>().prop_map(TagValue::Integer),
            any::<f64>().prop_map(TagValue::Float),
            any::<bool>().prop_map(TagValue::Boolean),
            any_date.clone().prop_map(TagValue::Date),
            (any_date, any_time, offset).prop_map(|(d, t, o)| {
                TagValue::DateTime(time::PrimitiveDateTime::new(d, t).assume_offset(o))
            }),
            prop::collection::vec(".{0,4}", 0..4).prop_map(TagValue::List),
        ]
    }

    /// Values no parser produces but an AST built by hand may hold.
    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            value(),
            any::<f64>().prop_map(Value::Float),
            (
                any::<i64>(),
                prop::sample::select(vec![RelativeUnit::Minute, RelativeUnit::Week])
            )
                .prop_map(|(amount, unit)| Value::Relative { amount, unit }),
        ]
    }

    fn contact() -> impl Strategy<Value = Tags> {
        prop::collection::btree_map(
            prop::sample::select(vec!["a", "b", "c", "A"]).prop_map(str::to_owned),
            tag_value(),
            0..4,
        )
    }

    fn any_now() -> impl Strategy<Value = OffsetDateTime> {
        prop_oneof![
            Just(NOW),
            Just(OffsetDateTime::new_utc(Date::MAX, time::Time::MIDNIGHT)),
            Just(OffsetDateTime::new_utc(Date::MIN, time::Time::MIDNIGHT)),
            (-10_000_000_000i64..10_000_000_000).prop_map(|s| NOW + Duration::seconds(s)),
        ]
    }

    proptest! {
        /// Any text parses to a filter whose canonical form parses back equal, or fails at a
        /// position inside it.
        #[test]
        fn any_text_round_trips_or_fails_inside(input in "(?s:.){0,80}") {
            match Segment::parse(&input) {
                Ok(s) => prop_assert_eq!(Segment::parse(&s.to_string()).unwrap(), s),
                Err(e) => prop_assert!(e.position <= input.chars().count(), "{:?} at {}", input, e.position),
            }
        }

        #[test]
        fn parse_never_panics_on_near_miss_filters(
            input in r#"[a-z` "'\\()\[\],=<>!&|+.0-9-]{0,60}"#,
        ) {
            if let Ok(s) = Segment::parse(&input) {
                prop_assert_eq!(Segment::parse(&s.to_string()).unwrap(), s);
            }
        }

        #[test]
        fn parse_never_panics_on_token_soup(
            tokens in prop::collection::vec(prop::sample::select(vec![
                "x", "`y z`", "=", "!=", "<", ">=", "=>", "in", "not", "and", "OR", "contains",
                "exists", "(", ")", "[", "]", ",", "\"s\"", "'s'", "1", "-2.5", "2026-01-31",
                "now", "-", "+", "30d", "all", "true", "\"", "`",
            ]), 0..24),
        ) {
            let input = tokens.join(" ");
            if let Ok(s) = Segment::parse(&input) {
                prop_assert_eq!(Segment::parse(&s.to_string()).unwrap(), s);
            }
        }

        #[test]
        fn display_then_parse_round_trips(e in expr()) {
            let printed = e.to_string();
            let parsed = Segment::parse(&printed);
            prop_assert!(parsed.is_ok(), "{} does not parse: {:?}", printed, parsed);
            let parsed = parsed.unwrap();
            prop_assert_eq!(parsed.expr(), &e, "printed as {}", printed);
            prop_assert_eq!(parsed.to_string(), printed);
        }

        /// Evaluation follows the connectives, and a contact's tag names count ignoring ASCII
        /// case (the lookup's rule), so renaming them changes nothing when no two collide.
        #[test]
        fn evaluation_follows_the_connectives_and_ignores_tag_name_case(
            e in expr(),
            f in expr(),
            tags in contact(),
            now in any_now(),
        ) {
            let m = |x: &Expr, t: &Tags| x.matches(t, now);
            let (a, b) = (m(&e, &tags), m(&f, &tags));
            prop_assert_eq!(m(&not(e.clone()), &tags), !a);
            prop_assert_eq!(m(&and(e.clone(), f.clone()), &tags), a && b);
            prop_assert_eq!(m(&or(e.clone(), f.clone()), &tags), a || b);
            let shouted: Tags = tags.iter().map(|(k, v)| (k.to_ascii_uppercase(), v.clone())).collect();
            if shouted.len() == tags.len() {
                prop_assert_eq!(m(&e, &shouted), a, "{} on {:?}", e, shouted);
            }
        }

        #[test]
        fn negative_operators_follow_the_documented_identities(
            tag in prop::sample::select(vec!["a", "b", "z"]),
            v in any_value(),
            w in any_value(),
            tags in contact(),
            now in any_now(),
        ) {
            let tag = tag.to_owned();
            let exists = Expr::Exists { tag: tag.clone() };
            let eq = |v: &Value| cmp(&tag, CompareOp::Eq, v.clone());
            let ne = cmp(&tag, CompareOp::Ne, v.clone());
            let m = |e: &Expr| e.matches(&tags, now);
            // `a != v` is `exists(a) and not a = v`.
            prop_assert_eq!(m(&ne), m(&and(exists.clone(), not(eq(&v)))));
            // `a in [v, w]` is `a = v or a = w`.
            let in_list = Expr::In { tag: tag.clone(), values: vec![v.clone(), w.clone()], negated: false };
            prop_assert_eq!(m(&in_list), m(&or(eq(&v), eq(&w))));
            // `a not in [v, w]` is `exists(a) and not a in [v, w]`.
            let not_in = Expr::In { tag: tag.clone(), values: vec![v.clone(), w.clone()], negated: true };
            prop_assert_eq!(m(&not_in), m(&and(exists.clone(), not(in_list))));
            // `<=` is `<` or `=` and `>=` is `>` or `=`, except for strings (equality folds case,
            // order does not) and booleans (equal, never ordered).
            if !matches!(v, Value::String(_) | Value::Boolean(_)) {
                let le = cmp(&tag, CompareOp::Le, v.clone());
                let lt = cmp(&tag, CompareOp::Lt, v.clone());
                prop_assert_eq!(m(&le), m(&or(lt, eq(&v))));
                let ge = cmp(&tag, CompareOp::Ge, v.clone());
                let gt = cmp(&tag, CompareOp::Gt, v.clone());
                prop_assert_eq!(m(&ge), m(&or(gt, eq(&v))));
            }
            // Nothing but `exists` and `not` is true for a missing tag.
            if tags.tag(&tag).is_none() {
                prop_assert!(!m(&ne) && !m(&not_in) && !m(&eq(&v)));
            }
        }
    }
}
