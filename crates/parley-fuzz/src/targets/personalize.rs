//! Dynamic-content expressions (`Hi {{first_name|CapitalizeFirst|friend}}`).
//!
//! Input: the first line is the text; each further line is a tag `name=value`, typed by a
//! prefix of the value (`i:` integer, `f:` float, `b:` boolean, `d:` date, `t:` RFC 3339
//! date-time, `l:` list split on `;`, otherwise a string).
//!
//! Properties: no panic; an error's position is inside the input; a parsed text prints as its
//! source and parses back equal; its referenced tags are the expressions' trimmed names;
//! rendering agrees with a reference renderer wherever no modifier applies (missing tags,
//! blanks, defaults, plain values); and the output is bounded: at most linear in the input
//! and the longest tag value, so no expression amplifies.

use parley_domain::{DynamicText, Limit, NoTags, SkipReason, TagLookup, TagValue, Tags};

/// A limit no fuzzed input reaches: rendering in full, as the reference does.
const UNLIMITED: usize = 1 << 24;

use crate::{Outcome, Target, message_shape, signature};

pub fn target() -> Target {
    Target {
        name: "personalize",
        dictionary: DICTIONARY,
        max_len: 8 * 1024,
        check,
    }
}

const DICTIONARY: &[&[u8]] = &[
    b"{{",
    b"}}",
    b"|",
    b"||",
    b"{{first_name}}",
    b"{{first_name|CapitalizeFirst|friend}}",
    b"{{ name || there }}",
    b"CapitalizeFirst",
    b"CapitalizeAllFirst",
    b"UPPERCASE",
    b"lowercase",
    b"date:",
    b"date:%d.%m.%Y",
    b"date:%A %e %B %Y %H:%M:%S %a %b %y %%",
    b"%",
    b"%B",
    b"number:",
    b"number:2",
    b"number:9",
    b"number:255",
    b"currency:",
    b"currency:EUR",
    b"currency:JPY",
    b"currency:KWD",
    b"\nfirst_name=",
    b"\nname=ana",
    b"\nn=i:",
    b"\nf=f:",
    b"\nd=d:2025-03-07",
    b"\nt=t:2025-12-24T18:05:09+01:00",
    b"\nl=l:a;b;c",
    b"\nb=b:true",
    b"i:",
    b"f:",
    b"d:",
    b"t:",
    b"l:",
    b"2024-02-29",
    b"2024-02-29T08:30:00Z",
    b"-9999-01-01",
    b"1e308",
    b"\xc7\x86",
    b"\xce\x90",
    b"\xc5\x89",
];

/// Tags from `name=value` lines.
fn tags_of(lines: &str) -> Tags {
    let mut tags = Tags::new();
    for line in lines.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = if let Some(v) = value.strip_prefix("i:") {
            v.parse().map(TagValue::Integer).ok()
        } else if let Some(v) = value.strip_prefix("f:") {
            v.parse().map(TagValue::Float).ok()
        } else if let Some(v) = value.strip_prefix("b:") {
            v.parse().map(TagValue::Boolean).ok()
        } else if let Some(v) = value.strip_prefix("d:") {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(v, &fmt).map(TagValue::Date).ok()
        } else if let Some(v) = value.strip_prefix("t:") {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(TagValue::DateTime)
                .ok()
        } else if let Some(v) = value.strip_prefix("l:") {
            Some(TagValue::List(v.split(';').map(str::to_owned).collect()))
        } else {
            Some(TagValue::String(value.to_owned()))
        };
        tags.insert(
            name.to_owned(),
            value.unwrap_or_else(|| TagValue::String(value_text(line))),
        );
    }
    tags
}

fn value_text(line: &str) -> String {
    line.split_once('=')
        .map(|(_, v)| v)
        .unwrap_or("")
        .to_owned()
}

/// One `{{…}}` as the documentation describes it: the trimmed tag name before the first `|`,
/// the trimmed modifier up to the second `|`, and the verbatim default after it.
struct RefExpr<'a> {
    tag: &'a str,
    modifier: &'a str,
    default: Option<&'a str>,
}

/// The text split into literal text and expressions, written independently of the parser.
/// Only used on texts the parser accepted.
fn reference_parts(input: &str) -> Vec<Result<&str, RefExpr<'_>>> {
    let mut parts = Vec::new();
    let mut rest = input;
    while let Some(open) = rest.find("{{") {
        parts.push(Ok(&rest[..open]));
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let inner = &after[..close];
        let (tag, tail) = match inner.split_once('|') {
            Some((t, tail)) => (t, Some(tail)),
            None => (inner, None),
        };
        let (modifier, default) = match tail.map(|t| t.split_once('|')) {
            None => ("", None),
            Some(None) => (tail.unwrap_or(""), None),
            Some(Some((m, d))) => (m, Some(d)),
        };
        parts.push(Err(RefExpr {
            tag: tag.trim(),
            modifier: modifier.trim(),
            default,
        }));
        rest = &after[close + 2..];
    }
    parts.push(Ok(rest));
    parts
}

/// What rendering must give where it can be told without the modifiers: `None` when some
/// expression applies a modifier to a present, non-blank value.
fn reference_render(input: &str, tags: &Tags) -> Option<Result<String, SkipReason>> {
    let mut out = String::new();
    for part in reference_parts(input) {
        match part {
            Ok(literal) => out.push_str(literal),
            Err(e) => match tags.tag(e.tag) {
                None => match e.default {
                    Some(d) => out.push_str(d),
                    None => {
                        return Some(Err(SkipReason::MissingTag {
                            tag: e.tag.to_owned(),
                        }));
                    }
                },
                Some(v) if v.is_blank() => out.push_str(e.default.unwrap_or("")),
                Some(v) if e.modifier.is_empty() => v.write_text(&mut out),
                Some(_) => return None,
            },
        }
    }
    Some(Ok(out))
}

fn check(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    let (expr, tag_lines) = text.split_once('\n').unwrap_or((&text, ""));
    let tags = tags_of(tag_lines);
    let parsed = match DynamicText::parse(expr) {
        Ok(p) => p,
        Err(e) => {
            if e.position > expr.chars().count() {
                return Err(format!(
                    "an error position is past the end\nposition {}, {} characters",
                    e.position,
                    expr.chars().count()
                ));
            }
            return Ok(signature(&[b"error", &message_shape(&e.message)]));
        }
    };
    if parsed.source() != expr || parsed.to_string() != expr {
        return Err("a parsed text does not print as its source".into());
    }
    match DynamicText::parse(&parsed.to_string()) {
        Ok(again) if again == parsed => {}
        other => {
            return Err(format!(
                "a parsed text does not parse back equal\n{other:?}"
            ));
        }
    }
    let parts = reference_parts(expr);
    let mut names: Vec<&str> = Vec::new();
    for part in &parts {
        if let Err(e) = part
            && !names.contains(&e.tag)
        {
            names.push(e.tag);
        }
    }
    if parsed.referenced_tags() != names {
        return Err(format!(
            "referenced tags differ from the expressions' names\n{:?}, expected {names:?}",
            parsed.referenced_tags()
        ));
    }
    let expressions = parts.iter().filter(|p| p.is_err()).count();
    let longest_value = tags.values().map(|v| v.as_text().len()).max().unwrap_or(0);
    let bound =
        expr.len() + expressions * (3 * longest_value + 16 * expr.len() + 400).max(expr.len());
    let mut sig = vec![b"ok".to_vec(), expressions.min(8).to_string().into_bytes()];
    for (lookup, name) in [(None, "no tags"), (Some(&tags), "tags")] {
        let render = |limit: &Limit| match lookup {
            None => parsed.render(&NoTags, limit),
            Some(t) => parsed.render(t, limit),
        };
        let rendered = render(&Limit::value("fuzz", UNLIMITED));
        // WhatsApp's 1,024 characters: the same text when it fits, `too_long` when it does not.
        let bounded = render(&Limit::value("fuzz", 1024));
        match (&rendered, &bounded) {
            (Ok(full), Ok(cut)) if full == cut && full.chars().count() <= 1024 => {}
            (Ok(full), Err(SkipReason::TooLong { .. })) if full.chars().count() > 1024 => {}
            (Err(a), Err(b)) if a == b => {}
            (Err(_), Err(SkipReason::TooLong { .. })) => {}
            _ => {
                return Err(format!(
                    "rendering within 1,024 characters disagrees with rendering in full\n{bounded:?}\nin full {rendered:?}"
                ));
            }
        }
        let reference = reference_render(expr, lookup.unwrap_or(&Tags::new()));
        if let Some(expected) = &reference
            && &rendered != expected
        {
            return Err(format!(
                "rendering differs from the reference renderer\nwith {name}: {rendered:?}, the reference {expected:?}"
            ));
        }
        match &rendered {
            Ok(out) if out.len() > bound => {
                return Err(format!(
                    "rendering amplifies\n{} bytes out of a {}-byte text and values of at most {longest_value} bytes",
                    out.len(),
                    expr.len()
                ));
            }
            Ok(_) => sig.push(b"rendered".to_vec()),
            Err(reason) => sig.push(reason.code().as_bytes().to_vec()),
        }
    }
    let refs: Vec<&[u8]> = sig.iter().map(Vec::as_slice).collect();
    Ok(signature(&refs))
}
