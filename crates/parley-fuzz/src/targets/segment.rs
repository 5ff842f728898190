//! The segment language (`city = "Berlin" and visits >= 3`).
//!
//! Properties: no panic (parsing, printing, evaluating on contacts built from the filter's own
//! values, at ordinary and extreme instants); an error's position is inside the input; a parsed
//! filter printed and parsed again is equal, and prints the same (the canonical form is a
//! fixed point); `not (f)` matches exactly the contacts `f` does not.

use parley_domain::{Expr, Segment, TagValue, Tags, Value};
use time::{Date, OffsetDateTime, Time};

use crate::{Outcome, Target, message_shape, signature};

pub fn target() -> Target {
    Target {
        name: "segment",
        dictionary: DICTIONARY,
        // Past the 10,000-character limit, to try it.
        max_len: 12 * 1024,
        check,
    }
}

const DICTIONARY: &[&[u8]] = &[
    b" and ",
    b" or ",
    b"not ",
    b" in ",
    b" not in ",
    b" contains ",
    b"exists(",
    b"all",
    b"(",
    b")",
    b"[",
    b"]",
    b", ",
    b" = ",
    b" != ",
    b" < ",
    b" <= ",
    b" > ",
    b" >= ",
    b"\"Berlin\"",
    b"\"\"",
    b"\"a\\\"b\\\\\"",
    b"`first name`",
    b"`a\\`b`",
    b"city",
    b"visits",
    b"true",
    b"false",
    b"now",
    b"now-30d",
    b"now+12h",
    b"now-5215w",
    b"now+52596000m",
    b"2026-01-31",
    b"9999-12-31",
    b"0000-01-01",
    b"2024-02-30",
    b"-3",
    b"2.5",
    b"-0.0",
    b"123456789012345678901234567890",
    b"1.0e3",
    b"((((((((((((((((((((((((((((((((((((",
    b"not not not not not not not not not not not not ",
    b"a = 1 and b = 2 or c = 3 and ",
];

const NOW: OffsetDateTime = time::macros::datetime!(2026-03-15 12:00 UTC);

/// Every (tag, value) compared in the filter.
fn compared<'a>(e: &'a Expr, out: &mut Vec<(&'a str, &'a Value)>) {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::All | Expr::Exists { .. } => {}
            Expr::And(a, b) | Expr::Or(a, b) => {
                stack.push(b);
                stack.push(a);
            }
            Expr::Not(a) => stack.push(a),
            Expr::Compare { tag, value, .. } | Expr::Contains { tag, value } => {
                out.push((tag, value));
            }
            Expr::In { tag, values, .. } => out.extend(values.iter().map(|v| (tag.as_str(), v))),
        }
    }
}

fn tag_of(value: &Value, now: OffsetDateTime) -> TagValue {
    match value {
        Value::String(s) => TagValue::String(s.clone()),
        Value::Integer(i) => TagValue::Integer(*i),
        Value::Float(f) => TagValue::Float(*f),
        Value::Boolean(b) => TagValue::Boolean(*b),
        Value::Date(d) => TagValue::Date(*d),
        Value::Relative { .. } => value
            .resolve_time(now)
            .map_or(TagValue::String("later".into()), TagValue::DateTime),
    }
}

/// Contacts worth evaluating a filter on: tags set to the filter's own values, to other
/// types, and none at all.
fn contacts(segment: &Segment) -> Vec<Tags> {
    let mut pairs = Vec::new();
    compared(segment.expr(), &mut pairs);
    let mut own = Tags::new();
    let mut last = Tags::new();
    for (tag, value) in &pairs {
        own.entry((*tag).to_owned())
            .or_insert_with(|| tag_of(value, NOW));
        last.insert((*tag).to_owned(), tag_of(value, NOW));
    }
    let names = segment.referenced_tags();
    let each =
        |v: TagValue| -> Tags { names.iter().map(|n| ((*n).to_owned(), v.clone())).collect() };
    vec![
        Tags::new(),
        own,
        last,
        each(TagValue::String("Berlin".into())),
        each(TagValue::Integer(0)),
        each(TagValue::Float(-2.5)),
        each(TagValue::Boolean(true)),
        each(TagValue::Date(Date::MAX)),
        each(TagValue::String("2026-03-15T12:00:00Z".into())),
        each(TagValue::List(vec!["de".into(), "Berlin".into()])),
    ]
}

fn nows() -> [OffsetDateTime; 3] {
    [
        NOW,
        OffsetDateTime::new_utc(Date::MAX, Time::MIDNIGHT),
        OffsetDateTime::new_utc(Date::MIN, Time::MIDNIGHT),
    ]
}

fn check(data: &[u8]) -> Outcome {
    let input = String::from_utf8_lossy(data);
    let segment = match Segment::parse(&input) {
        Ok(s) => s,
        Err(e) => {
            let chars = input.chars().count();
            if e.position > chars {
                return Err(format!(
                    "an error position is past the end\nposition {}, {chars} characters",
                    e.position
                ));
            }
            return Ok(signature(&[b"error", &message_shape(&e.message)]));
        }
    };
    let printed = segment.to_string();
    let again = Segment::parse(&printed)
        .map_err(|e| format!("the canonical form does not parse\n{e}\nprinted: {printed}"))?;
    if again != segment {
        return Err(format!(
            "printed and parsed again is another filter\nprinted: {printed}\nfirst: {:?}\nagain: {:?}",
            segment.expr(),
            again.expr()
        ));
    }
    if again.to_string() != printed {
        return Err(format!(
            "the canonical form is no fixed point\n{printed}\nthen: {again}"
        ));
    }
    let negated = Segment::parse(&format!("not ({printed})")).ok();
    let mut sig = vec![b"ok".to_vec()];
    for tags in contacts(&segment) {
        for now in nows() {
            let m = segment.matches(&tags, now);
            if let Some(n) = &negated
                && n.matches(&tags, now) == m
            {
                return Err(format!("`not (f)` matches like `f`\nf: {printed}"));
            }
            sig.push(vec![u8::from(m)]);
        }
    }
    let _ = segment.expr().operands();
    let refs: Vec<&[u8]> = sig.iter().map(Vec::as_slice).collect();
    Ok(signature(&refs))
}
