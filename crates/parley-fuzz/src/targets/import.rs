//! The contact import reader (CSV in any encoding and separator, NDJSON, `.xlsx`), through
//! `preview_import`, which runs the import's own streaming row reader on a whole upload
//! without a database.
//!
//! Input: the first line chooses the format and the mapping: `ndjson`, `csv`, `xlsx` or
//! `sheet`, then space-separated words: `enc=windows-1251`, `sep=;`/`sep=tab`, `cc=DE` (the
//! default country) and `column:tag:type` mappings; the rest is the upload's bytes. `xlsx`
//! takes them as a workbook file; `sheet` writes a workbook whose rows are the upload's lines,
//! cells split on tabs.
//!
//! Properties: no panic; every row and rejection has a distinct line inside the upload; the
//! rows and rejections are exactly the records an independent RFC 4180 splitter finds in the
//! text as decoded (quotes open a quoted cell only at the start of a cell, as the cell
//! splitter reads them; cells split on the separator used), on the lines they start on;
//! accepted phone numbers are canonical E.164 with their wa_id; an NDJSON row written back as
//! NDJSON imports as the same row; a workbook that does not read is refused with
//! `xlsx_unreadable` or `xlsx_too_large`, never a panic; a sheet imports as the CSV file of
//! the same cells does.

use parley_domain::E164;
use parley_domain::Region;
use parley_engine::audience::{
    ColumnMap, ImportFormat, ImportOptions, MAX_ROW_BYTES, Separator, TextEncoding, csv_cell,
    preview_import,
};
use parley_engine::import_file::{SampleCell, decode_all, sample_xlsx};
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
    b"\t",
    b"\xff\xfe",
    b"\xfe\xff",
    b"\0",
    b"\xd2\xe5\xeb\xe5\xf4\xee\xed",
    b"M\xfcller",
    b"8 (916) 123-45-67",
    b"0151 23456789",
    b"(415) 555-0132",
    b" enc=windows-1251",
    b" enc=utf-16le",
    b" sep=;",
    b" sep=tab",
    b" cc=DE",
    b" cc=RU",
    b"PK\x03\x04",
];

/// How the input asks to read its upload, and whether the upload is a sheet's lines.
fn options(head: &str) -> (ImportOptions, bool) {
    let mut words = head.split(' ');
    let (format, sheet) = match words.next() {
        Some("ndjson") => (ImportFormat::Ndjson, false),
        Some("xlsx") => (ImportFormat::Xlsx, false),
        Some("sheet") => (ImportFormat::Xlsx, true),
        _ => (ImportFormat::Csv, false),
    };
    let mut options = ImportOptions {
        format,
        ..ImportOptions::default()
    };
    for w in words.filter(|w| !w.is_empty()) {
        if let Some(e) = w.strip_prefix("enc=") {
            options.encoding = TextEncoding::parse(e);
        } else if let Some(s) = w.strip_prefix("sep=") {
            options.separator = Separator::parse(s);
        } else if let Some(c) = w.strip_prefix("cc=") {
            options.country = Region::parse(c).ok();
        } else if let Ok(m) = ColumnMap::parse(w) {
            options.columns.push(m);
        }
    }
    (options, sheet)
}

/// The cells of a `sheet` input: lines, cells split on tabs, control characters left out
/// (XML cannot hold them); digits that Excel would keep as a number are number cells.
fn sheet_cells(body: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8_lossy(body)
        .split('\n')
        .map(|line| {
            line.split('\t')
                .map(|c| c.chars().filter(|ch| !ch.is_control()).collect())
                .collect()
        })
        .collect()
}

fn number_like(cell: &str) -> bool {
    (1..=15).contains(&cell.len())
        && cell.bytes().all(|b| b.is_ascii_digit())
        && !cell.starts_with('0')
}

/// A workbook of the sheet's cells must import as the CSV file of the same cells.
fn check_sheet(options: &ImportOptions, body: &[u8]) -> Outcome {
    let cells = sheet_cells(body);
    let rows: Vec<Vec<SampleCell>> = cells
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| match c {
                    c if c.is_empty() => SampleCell::Empty,
                    c if number_like(c) => SampleCell::Number(c.parse().unwrap_or_default()),
                    c => SampleCell::Text(c.clone()),
                })
                .collect()
        })
        .collect();
    let book = sample_xlsx("Sheet1", &rows);
    let from_book = preview_import(options, &book, true, usize::MAX)
        .map_err(|e| format!("a written workbook does not read: {}", e.message))?;
    let mut csv = String::new();
    for row in &cells {
        // The workbook keeps no trailing empty cells.
        let end = row.iter().rposition(|c| !c.is_empty()).map_or(0, |i| i + 1);
        let line: Vec<String> = row[..end].iter().map(|c| csv_cell(c)).collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    let as_csv = ImportOptions {
        format: ImportFormat::Csv,
        encoding: Some(TextEncoding::Utf8),
        separator: Some(Separator::Comma),
        ..options.clone()
    };
    let from_csv = preview_import(&as_csv, csv.as_bytes(), true, usize::MAX)
        .map_err(|e| format!("the CSV of a sheet does not read: {}", e.message))?;
    let shape = |p: &parley_engine::audience::ImportPreview| {
        (
            p.columns.clone(),
            p.rows
                .iter()
                .map(|r| format!("{} {:?}", r.line, r.outcome))
                .collect::<Vec<_>>(),
        )
    };
    if shape(&from_book) != shape(&from_csv) {
        return Err(format!(
            "a sheet does not import as the CSV of its cells\nsheet: {:?}\ncsv: {:?}",
            shape(&from_book),
            shape(&from_csv)
        ));
    }
    Ok(signature(&[
        b"sheet",
        &[from_book.rows.len().min(255) as u8],
    ]))
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
fn reference_records(body: &[u8], csv: bool, sep: u8) -> Vec<Record> {
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
                (_, b'\n') => CsvState::CellStart,
                (_, b) if b == sep => CsvState::CellStart,
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
fn expected_lines(body: &[u8], csv: bool, sep: u8) -> Vec<u64> {
    let mut lines = Vec::new();
    let mut header_seen = !csv;
    for r in reference_records(body, csv, sep) {
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
    let (options, sheet) = options(&head);
    if sheet {
        return check_sheet(&options, body);
    }
    let preview = match preview_import(&options, body, true, usize::MAX) {
        Ok(p) => p,
        Err(e) if matches!(e.code, "xlsx_unreadable" | "xlsx_too_large") => {
            return Ok(signature(&[b"refused", e.code.as_bytes()]));
        }
        Err(e) => {
            return Err(format!(
                "an upload is refused with an unexpected error\n{}: {}",
                e.code, e.message
            ));
        }
    };
    let csv = preview.read_as.format != ImportFormat::Ndjson;
    if preview.read_as.format == ImportFormat::Xlsx {
        let lines: Vec<u64> = preview.rows.iter().map(|r| r.line).collect();
        if !lines.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!(
                "a workbook's rows are not on distinct lines: {lines:?}"
            ));
        }
    }
    let encoding = preview.read_as.encoding.unwrap_or(TextEncoding::Utf8);
    let text = decode_all(body, encoding, true);
    let sep = preview.read_as.separator.unwrap_or(Separator::Comma).byte();
    let lines: Vec<u64> = preview.rows.iter().map(|r| r.line).collect();
    let expected = if preview.read_as.format == ImportFormat::Xlsx {
        lines.clone()
    } else {
        expected_lines(&text, csv, sep)
    };
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
            let written_back = ImportOptions {
                encoding: Some(TextEncoding::Utf8),
                ..options.clone()
            };
            let again = preview_import(&written_back, line.as_bytes(), true, 1)
                .map_err(|e| format!("an NDJSON row written back is refused: {}", e.message))?;
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
