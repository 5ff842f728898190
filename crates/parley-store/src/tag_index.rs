//! The tag index: a JSON object derived from a contact's tags on every write, which the segment
//! compilers (`segment_sql.rs`) read instead of the tags themselves.
//!
//! Why: the filter language's rules (see `parley_domain::segment`) need Unicode case folding,
//! code-point order, exact integer/float comparison and date parsing of strings. SQLite's
//! `lower()` is ASCII-only and neither backend parses RFC 3339 the way the `time` crate does,
//! so each value's comparable forms are computed here, in Rust, with the same functions the
//! in-memory evaluator uses, and SQL only compares them.
//!
//! Keys: the tag name ASCII-lower-cased, every character outside `[a-z0-9_]` written as
//! `-<hex>-` (so a key is always safe inside a SQLite JSON path). Values, by tag type:
//! - string (and date / date-time, by their text): `{"t":"s","s":<text>,"f":<folded>}`, plus
//!   for date-like text `"dk":"d"` (a date) or `"dk":"i"` (an instant), `"jd"`: the (UTC)
//!   calendar date as a Julian day, and for instants `"ik"`: a fixed-width sortable key;
//! - integer: `{"t":"i","n":<i64>,"x":<as f64>}`; float: `{"t":"r","x":<f64>}`;
//! - boolean: `{"t":"b","b":0|1}`; list: `{"t":"l","l":[<folded items>]}`.

use parley_domain::{TagValue, Tags, fold_case};
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};

/// The index key of a tag name.
pub fn index_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let l = c.to_ascii_lowercase();
        if l.is_ascii_lowercase() || l.is_ascii_digit() || l == '_' {
            out.push(l);
        } else {
            out.push('-');
            out.push_str(&format!("{:x}", u32::from(c)));
            out.push('-');
        }
    }
    out
}

/// The index of a contact's tags. With two names equal up to ASCII case (which merging
/// prevents), the first in name order wins, as the in-memory lookup's fallback does.
pub fn tag_index(tags: &Tags) -> Value {
    let mut map = Map::new();
    for (name, value) in tags {
        let key = index_key(name);
        if map.contains_key(&key) {
            continue;
        }
        map.insert(key, entry(value));
    }
    Value::Object(map)
}

fn entry(value: &TagValue) -> Value {
    match value {
        TagValue::String(s) => string_entry(s),
        TagValue::Date(_) | TagValue::DateTime(_) => string_entry(&value.as_text()),
        TagValue::Integer(i) => json!({"t": "i", "n": i, "x": *i as f64}),
        TagValue::Float(f) => json!({"t": "r", "x": f}),
        TagValue::Boolean(b) => json!({"t": "b", "b": i64::from(*b)}),
        TagValue::List(items) => {
            json!({"t": "l", "l": items.iter().map(|i| fold_case(i)).collect::<Vec<_>>()})
        }
    }
}

fn string_entry(s: &str) -> Value {
    let mut m = Map::new();
    m.insert("t".into(), "s".into());
    m.insert("s".into(), s.into());
    m.insert("f".into(), fold_case(s).into());
    if let Some(d) = parse_iso_date(s) {
        m.insert("dk".into(), "d".into());
        m.insert("jd".into(), d.to_julian_day().into());
    } else if looks_rfc3339(s)
        && let Ok(i) = OffsetDateTime::parse(s, &Rfc3339)
    {
        m.insert("dk".into(), "i".into());
        m.insert("ik".into(), instant_key(i).into());
        if let Some(d) = utc_date(i) {
            m.insert("jd".into(), d.to_julian_day().into());
        }
    }
    Value::Object(m)
}

/// Any RFC 3339 date-time starts `YYYY-MM-DDTHH:MM:SS` and has an offset: at least 20 bytes.
fn looks_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20 && b[4] == b'-' && b[7] == b'-'
}

pub(crate) fn utc_date(instant: OffsetDateTime) -> Option<Date> {
    instant.checked_to_offset(UtcOffset::UTC).map(|u| u.date())
}

/// Seconds (shifted positive) and nanoseconds, fixed width: text order is time order.
pub(crate) fn instant_key(i: OffsetDateTime) -> String {
    let secs = i.unix_timestamp() + 400_000_000_000;
    format!("{secs:013}{:09}", i.nanosecond())
}

/// Exactly `YYYY-MM-DD`, a real calendar date (the segment evaluator's rule).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_path_safe_and_ascii_folded() {
        assert_eq!(index_key("City"), "city");
        assert_eq!(index_key("a b\"c"), "a-20-b-22-c");
        assert_eq!(index_key("Straße"), "stra-df-e");
    }

    #[test]
    fn entries() {
        let mut tags = Tags::new();
        tags.insert("Name".into(), "ÄNN".into());
        tags.insert("since".into(), "2024-03-01".into());
        tags.insert("at".into(), "2024-03-01T23:30:00-02:00".into());
        tags.insert("n".into(), TagValue::Integer(3));
        let v = tag_index(&tags);
        assert_eq!(v["name"]["f"], "änn");
        assert_eq!(v["since"]["dk"], "d");
        assert_eq!(v["at"]["dk"], "i");
        assert_eq!(
            v["at"]["jd"],
            time::macros::date!(2024 - 03 - 02).to_julian_day()
        );
        assert_eq!(v["n"]["x"], 3.0);
    }
}
