//! The contact import reader (CSV or NDJSON), through `preview_import`, which runs the
//! import's own streaming row reader on a whole upload without a database.
//!
//! Input: the first line chooses the format and the mapping: `ndjson`, or `csv` followed by
//! space-separated `column:tag:type` mappings; the rest is the upload's bytes.
//!
//! Properties: no panic; every row and rejection has a distinct line inside the upload; the
//! rows and rejections are exactly the records an independent RFC 4180 splitter finds (quotes
//! open a quoted cell only at the start of a cell, as the cell splitter reads them), on the
//! lines they start on; accepted phone numbers are canonical E.164 with their wa_id; an NDJSON
//! row written back as NDJSON imports as the same row.

use parley_domain::E164;
use parley_engine::audience::{
    ColumnMap, ImportFormat, ImportOptions, MAX_ROW_BYTES, preview_import,
};
use serde_json::{Map, Value};

use crate::{Outcome, Target, message_shape, signature};

pub fn target() -> Target {
    Target {
        name: "import",
        dictionary: DICTIONARY,
        max_len: 80 * 1024,
        check,
    }
}

const DICTIONARY: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b",",
    b"\"",
    b"\"\"",
    b"\",\"",
    b"\"\n\"",
    b";",
    b"+4915112345678",
    b"004915112345678",
    b"+1 650 555 1234",
    b"+49",
    b"phone",
    b"name",
    b"locale",
    b"timezone",
    b"subscription",
    b"opted_in",
    b"opted_out",
    b"maybe",
    b" visits:visits:integer",
    b" price:price:float",
    b" vip:vip:boolean",
    b" since:since:date",
    b" seen:seen:datetime",
    b" langs:langs:list",
    b" skip:",
    b" tel:phone",
    b"2025-03-07",
    b"2025-03-07T10:30:00Z",
    b"yes",
    b"\xef\xbb\xbf",
    b"{\"phone\":\"+4915112345678\",\"name\":\"Ana\",\"tags\":{\"city\":\"Berlin\",\"n\":3,\"f\":2.5,\"v\":true,\"l\":[\"a\",1]}}",
    b"{\"phone\":4915112345678}",
    b"\"tags\":",
    b"\"tags\":null",
    b"{\"x\":null}",
    b"\"subscription\":\"opted_out\"",
    b"0.30000000000000004",
    b"1e400",
    b"18446744073709551615",
];

/// How the input asks to read its upload.
fn options(head: &str) -> ImportOptions {
    let mut words = head.split(' ');
    let format = match words.next() {
        Some("ndjson") => ImportFormat::Ndjson,
        _ => ImportFormat::Csv,
    };
    ImportOptions {
        format,
        columns: words
            .filter(|w| !w.is_empty())
            .filter_map(|w| ColumnMap::parse(w).ok())
            .collect(),
    }
}

/// Where a record starts (1-based line) and its bytes (without the newline).
struct Record {
    line: u64,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq)]
enum CsvState {
    CellStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted cell: either the closing one or the first of `""`.
    AfterQuote,
}

/// Splits an upload into records, independently of the reader: CSV quotes as RFC 4180 and
/// `split_csv` read them (a `"` opens a quoted cell only at the start of a cell; inside one,
/// `""` is a quote and a lone `"` closes it; a newline ends the record only outside quotes).
/// A UTF-8 byte order mark at the very start is not part of the first cell.
fn reference_records(body: &[u8], csv: bool) -> Vec<Record> {
    let body = body
        .strip_prefix(b"\xef\xbb\xbf".as_slice())
        .unwrap_or(body);
    let mut records = Vec::new();
    let mut state = CsvState::CellStart;
    let mut current = Vec::new();
    let mut start_line = 1u64;
    let mut line = 1u64;
    for &b in body {
        if csv {
            state = match (state, b) {
                (CsvState::CellStart, b'"') => CsvState::Quoted,
                (CsvState::Quoted, b'"') => CsvState::AfterQuote,
                (CsvState::AfterQuote, b'"') => CsvState::Quoted,
                (CsvState::Quoted, _) => CsvState::Quoted,
                (_, b',') | (_, b'\n') => CsvState::CellStart,
                _ => CsvState::Unquoted,
            };
        }
        if b == b'\n' {
            line += 1;
            if state != CsvState::Quoted {
                records.push(Record {
                    line: start_line,
                    bytes: std::mem::take(&mut current),
                });
                start_line = line;
                continue;
            }
        }
        current.push(b);
    }
    if !current.is_empty() {
        records.push(Record {
            line: start_line,
            bytes: current,
        });
    }
    records
}

/// The records that become a row or a rejection: not blank (unless too long), and for CSV not
/// the header (the first record that is not blank).
fn expected_lines(body: &[u8], csv: bool) -> Vec<u64> {
    let mut lines = Vec::new();
    let mut header_seen = !csv;
    for r in reference_records(body, csv) {
        let mut bytes = r.bytes.as_slice();
        if bytes.last() == Some(&b'\r') {
            bytes = &bytes[..bytes.len() - 1];
        }
        let too_long = r.bytes.len() > MAX_ROW_BYTES;
        if String::from_utf8_lossy(bytes).trim().is_empty() && !too_long {
            continue;
        }
        if !header_seen {
            header_seen = true;
            continue;
        }
        lines.push(r.line);
    }
    lines
}

fn ndjson_of(
    phone: &str,
    name: &Option<String>,
    locale: &Option<String>,
    timezone: &Option<String>,
    tags: &Value,
    subscription: Option<&str>,
) -> String {
    let mut obj = Map::new();
    obj.insert("phone".into(), Value::from(phone));
    for (k, v) in [("name", name), ("locale", locale), ("timezone", timezone)] {
        if let Some(v) = v {
            obj.insert(k.into(), Value::from(v.as_str()));
        }
    }
    obj.insert("tags".into(), tags.clone());
    if let Some(s) = subscription {
        obj.insert("subscription".into(), Value::from(s));
    }
    Value::Object(obj).to_string()
}

fn check(data: &[u8]) -> Outcome {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();
    let options = options(&head);
    let csv = options.format == ImportFormat::Csv;
    let preview = preview_import(&options, body, true, usize::MAX);

    let lines: Vec<u64> = preview.rows.iter().map(|r| r.line).collect();
    let expected = expected_lines(body, csv);
    if lines != expected {
        return Err(format!(
            "rows and rejections are not on the lines the upload's records start on\nrows and rejections: {lines:?}\nrecords: {expected:?}"
        ));
    }
    let mut sig = vec![u8::from(csv)];
    let mut reasons: Vec<Vec<u8>> = Vec::new();
    for row in &preview.rows {
        let r = match &row.outcome {
            Ok(r) => r,
            Err(reason) => {
                reasons.push(message_shape(reason));
                continue;
            }
        };
        sig.push(1);
        let canonical = E164::parse(&r.phone).map_err(|e| {
            format!(
                "an accepted phone does not parse\nline {}: {:?}: {e}",
                row.line, r.phone
            )
        })?;
        if canonical.as_str() != r.phone || r.wa_id.as_ref() != Some(&canonical.wa_id()) {
            return Err(format!(
                "an accepted phone is not canonical\nline {}: {:?} (wa_id {:?})",
                row.line, r.phone, r.wa_id
            ));
        }
        if !csv {
            let tags = serde_json::to_value(&r.tags)
                .map_err(|e| format!("tags do not serialize\nline {}: {e}", row.line))?;
            let line = ndjson_of(
                &r.phone,
                &r.name,
                &r.locale,
                &r.timezone,
                &tags,
                r.subscription.as_ref().map(|s| s.state.as_str()),
            );
            let again = preview_import(&options, line.as_bytes(), true, 1);
            let same = match again.rows.first().map(|x| &x.outcome) {
                Some(Ok(a)) => format!("{a:?}") == format!("{r:?}"),
                _ => false,
            };
            if !same {
                return Err(format!(
                    "an NDJSON row written back does not import the same\nline {}: written back as {line}\nfirst: {:?}\nthen: {:?}",
                    row.line,
                    r,
                    again.rows.first().map(|x| &x.outcome)
                ));
            }
        }
    }
    reasons.sort();
    reasons.dedup();
    let mut parts: Vec<&[u8]> = vec![&sig];
    parts.extend(reasons.iter().map(Vec::as_slice));
    Ok(signature(&parts))
}
