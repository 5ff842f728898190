//! How an import's file becomes text before its rows are read: the text encoding and the CSV
//! separator (detected from the head of the file, or as the user says), and `.xlsx` workbooks
//! (the first sheet, turned into CSV text in bounded memory). The rules are in DECISIONS.md,
//! "Imports as businesses export them".

use std::borrow::Cow;
use std::io::{Cursor, Read};

use calamine::{DataRef, Reader, Xlsx};

use crate::EngineError;

/// Bytes of the head of a file that encoding and separator detection look at (some hundred
/// rows). An import commits nothing before it has them (or the whole file), so they are few:
/// a slow upload's first rows are not held back long.
pub const DETECT_BYTES: usize = 16 * 1024;
/// Largest `.xlsx` upload: a workbook is read whole (its directory is at its end).
pub const MAX_XLSX_BYTES: usize = 32 * 1024 * 1024;
/// Most bytes every part of a workbook may unpack to together (a zip bomb stops here).
pub const MAX_XLSX_UNPACKED: u64 = 128 * 1024 * 1024;
/// Most CSV text the first sheet may turn into (cells repeated from the shared strings add up).
pub const MAX_XLSX_TEXT: usize = 64 * 1024 * 1024;

/// The cell separator of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    Comma,
    Semicolon,
    Tab,
}

impl Separator {
    pub fn byte(self) -> u8 {
        match self {
            Separator::Comma => b',',
            Separator::Semicolon => b';',
            Separator::Tab => b'\t',
        }
    }

    pub fn char(self) -> char {
        self.byte() as char
    }

    /// `comma`, `semicolon` or `tab`: how the API and the job name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Separator::Comma => "comma",
            Separator::Semicolon => "semicolon",
            Separator::Tab => "tab",
        }
    }

    /// Its name or the character itself.
    pub fn parse(s: &str) -> Option<Separator> {
        match s {
            "," => return Some(Separator::Comma),
            ";" => return Some(Separator::Semicolon),
            "\t" => return Some(Separator::Tab),
            _ => {}
        }
        match s.trim().to_ascii_lowercase().as_str() {
            "comma" => Some(Separator::Comma),
            "semicolon" => Some(Separator::Semicolon),
            "tab" | "\\t" => Some(Separator::Tab),
            _ => None,
        }
    }
}

/// The text encodings spreadsheets save CSV and "Unicode text" files in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    Utf16Le,
    Utf16Be,
    Windows1251,
    Windows1252,
}

impl TextEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "utf-8",
            TextEncoding::Utf16Le => "utf-16le",
            TextEncoding::Utf16Be => "utf-16be",
            TextEncoding::Windows1251 => "windows-1251",
            TextEncoding::Windows1252 => "windows-1252",
        }
    }

    pub fn parse(s: &str) -> Option<TextEncoding> {
        Some(
            match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
                "utf-8" | "utf8" => TextEncoding::Utf8,
                "utf-16le" | "utf-16" | "utf16le" | "utf16" | "unicode" => TextEncoding::Utf16Le,
                "utf-16be" | "utf16be" => TextEncoding::Utf16Be,
                "windows-1251" | "cp1251" | "win1251" => TextEncoding::Windows1251,
                "windows-1252" | "cp1252" | "win1252" | "latin1" | "iso-8859-1" => {
                    TextEncoding::Windows1252
                }
                _ => return None,
            },
        )
    }

    fn encoding(self) -> &'static encoding_rs::Encoding {
        match self {
            TextEncoding::Utf8 => encoding_rs::UTF_8,
            TextEncoding::Utf16Le => encoding_rs::UTF_16LE,
            TextEncoding::Utf16Be => encoding_rs::UTF_16BE,
            TextEncoding::Windows1251 => encoding_rs::WINDOWS_1251,
            TextEncoding::Windows1252 => encoding_rs::WINDOWS_1252,
        }
    }
}

/// Whether the upload is an `.xlsx` workbook: a zip archive's first entry header.
pub fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

/// The encoding of a file from its head (`complete` when `head` is the whole file):
/// 1. a byte order mark says it (UTF-8, UTF-16 LE, UTF-16 BE);
/// 2. without one, text whose every other byte is zero is UTF-16 (LE when the zeros follow);
/// 3. valid UTF-8 is UTF-8 (a sequence cut at the end of the head counts as valid);
/// 4. anything else is a single-byte code page: Windows-1251 (Cyrillic) when most bytes above
///    127 stand next to another such byte (Russian words are all such letters), else
///    Windows-1252 (Western European words have an accented letter here and there).
pub fn detect_encoding(head: &[u8], complete: bool) -> TextEncoding {
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return TextEncoding::Utf8;
    }
    if head.starts_with(&[0xFF, 0xFE]) {
        return TextEncoding::Utf16Le;
    }
    if head.starts_with(&[0xFE, 0xFF]) {
        return TextEncoding::Utf16Be;
    }
    let pairs = head.len().min(4096) / 2;
    if pairs >= 2 {
        let (mut even, mut odd) = (0, 0);
        for p in head[..pairs * 2].chunks_exact(2) {
            even += usize::from(p[0] == 0);
            odd += usize::from(p[1] == 0);
        }
        if odd * 10 >= pairs * 3 && even * 20 < pairs {
            return TextEncoding::Utf16Le;
        }
        if even * 10 >= pairs * 3 && odd * 20 < pairs {
            return TextEncoding::Utf16Be;
        }
    }
    match std::str::from_utf8(head) {
        Ok(_) => return TextEncoding::Utf8,
        Err(e) if e.error_len().is_none() && !complete => return TextEncoding::Utf8,
        Err(_) => {}
    }
    let high = |i: usize| head.get(i).is_some_and(|&b| b >= 0x80);
    let (mut paired, mut alone) = (0usize, 0usize);
    for i in 0..head.len() {
        if high(i) {
            if (i > 0 && high(i - 1)) || high(i + 1) {
                paired += 1;
            } else {
                alone += 1;
            }
        }
    }
    if paired > alone {
        TextEncoding::Windows1251
    } else {
        TextEncoding::Windows1252
    }
}

/// The separator of a CSV file from its decoded head: the one of `,` `;` and tab that occurs
/// most often outside quotes in the first line that is not blank (the header); on a tie tab,
/// then `;`, then `,` (names and addresses hold commas more often); a header with none of them
/// (one column) is comma-separated.
pub fn detect_separator(text: &str) -> Separator {
    let line = text
        .split('\n')
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let (mut comma, mut semicolon, mut tab) = (0usize, 0usize, 0usize);
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => comma += 1,
            ';' if !quoted => semicolon += 1,
            '\t' if !quoted => tab += 1,
            _ => {}
        }
    }
    if tab > 0 && tab >= semicolon && tab >= comma {
        Separator::Tab
    } else if semicolon > 0 && semicolon >= comma {
        Separator::Semicolon
    } else {
        Separator::Comma
    }
}

/// Turns the upload's bytes into UTF-8 text for the row reader, chunk by chunk (a character
/// cut between two chunks is kept for the next). UTF-8 passes through unchanged: the row
/// reader drops its byte order mark and reads bad bytes as U+FFFD itself, and an import's
/// committed bytes then count the file's own bytes. Other encodings lose their byte order mark.
pub struct TextDecoder {
    decoder: Option<encoding_rs::Decoder>,
}

impl TextDecoder {
    pub fn new(encoding: TextEncoding) -> TextDecoder {
        TextDecoder {
            decoder: (encoding != TextEncoding::Utf8)
                .then(|| encoding.encoding().new_decoder_with_bom_removal()),
        }
    }

    /// The text of `bytes`; `last` for the end of the file (an unfinished character at the
    /// end becomes U+FFFD).
    pub fn decode<'a>(&mut self, bytes: &'a [u8], last: bool) -> Cow<'a, [u8]> {
        let Some(decoder) = &mut self.decoder else {
            return Cow::Borrowed(bytes);
        };
        let cap = decoder
            .max_utf8_buffer_length(bytes.len())
            .unwrap_or(bytes.len().saturating_mul(3).saturating_add(16));
        let mut out = vec![0u8; cap];
        let (_, _, written, _) = decoder.decode_to_utf8(bytes, &mut out, last);
        out.truncate(written);
        Cow::Owned(out)
    }
}

/// Decodes a whole head for previews and detection.
pub fn decode_all(bytes: &[u8], encoding: TextEncoding, complete: bool) -> Vec<u8> {
    TextDecoder::new(encoding)
        .decode(bytes, complete)
        .into_owned()
}

/// A workbook's first sheet as CSV text.
#[derive(Debug)]
pub struct Sheet {
    /// The sheet's name, as the workbook lists it.
    pub name: String,
    /// Comma-separated, one line per sheet row (line N is row N; blank rows are blank lines),
    /// cells quoted where they need it; line breaks inside a cell become spaces.
    pub text: String,
}

fn unreadable(detail: impl std::fmt::Display) -> EngineError {
    EngineError::unprocessable(
        "xlsx_unreadable",
        format!(
            "the file is not a readable .xlsx workbook ({detail}); save it again from the spreadsheet as .xlsx, or export it as CSV"
        ),
    )
}

fn too_large(what: String) -> EngineError {
    EngineError::unprocessable(
        "xlsx_too_large",
        format!("{what}; split the workbook, or export it as CSV (a CSV file of any size streams)"),
    )
}

/// An `.xlsx` over [`MAX_XLSX_BYTES`].
pub fn xlsx_upload_too_large() -> EngineError {
    too_large(format!(
        "the .xlsx file is larger than {} MiB",
        MAX_XLSX_BYTES / (1024 * 1024)
    ))
}

/// Reads the first sheet of an `.xlsx` workbook into CSV text. Bounded: every part of the
/// archive is unpacked once first, counting what it really unpacks to (not what its header
/// claims) and stopping past [`MAX_XLSX_UNPACKED`] (a zip bomb); cells are then read one at a
/// time (no sheet is held as a grid, so a far-away cell costs nothing) and the text stops past
/// [`MAX_XLSX_TEXT`]. Cells: text as it is, numbers as Excel shows them at most (15
/// significant digits, never an exponent: a phone number stored as a number keeps its digits),
/// dates as `YYYY-MM-DD`, date-times as `YYYY-MM-DDTHH:MM:SS` (Excel keeps no zone), booleans
/// as `true`/`false`, errors as Excel writes them (`#N/A`).
pub fn read_xlsx(bytes: &[u8]) -> Result<Sheet, EngineError> {
    read_xlsx_bounded(bytes, MAX_XLSX_UNPACKED, MAX_XLSX_TEXT)
}

pub fn read_xlsx_bounded(
    bytes: &[u8],
    max_unpacked: u64,
    max_text: usize,
) -> Result<Sheet, EngineError> {
    check_unpacked(bytes, max_unpacked)?;
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(unreadable)?;
    let name = book
        .sheet_names()
        .into_iter()
        .next()
        .ok_or_else(|| unreadable("it has no sheet"))?;
    let mut cells = book.worksheet_cells_reader(&name).map_err(unreadable)?;
    let mut text = String::new();
    // The sheet row the text is on (0-based), and the column of the next cell in it.
    let mut row = 0u32;
    let mut col = 0u32;
    // Commas written on the current row: cell `c` follows the `c`th.
    let mut commas = 0u32;
    while let Some(cell) = cells.next_cell().map_err(unreadable)? {
        let (r, c) = cell.get_position();
        if r < row || (r == row && c < col) {
            return Err(unreadable(format!(
                "cell {} comes after a cell below or to its right",
                cell_name(r, c)
            )));
        }
        let value = cell_text(cell.get_value());
        if value.is_empty() {
            continue;
        }
        while row < r {
            text.push('\n');
            row += 1;
            commas = 0;
        }
        while commas < c {
            text.push(',');
            commas += 1;
        }
        text.push_str(&crate::audience::csv_cell(&value));
        col = c + 1;
        if text.len() > max_text {
            return Err(too_large(format!(
                "the first sheet holds more than {} MiB of text",
                max_text / (1024 * 1024)
            )));
        }
    }
    if !text.is_empty() {
        text.push('\n');
    }
    Ok(Sheet { name, text })
}

/// Unpacks every part of the archive once, counting the bytes each really gives.
fn check_unpacked(bytes: &[u8], max_unpacked: u64) -> Result<(), EngineError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(unreadable)?;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let mut part = zip.by_index(i).map_err(unreadable)?;
        let room = max_unpacked - total;
        let n = std::io::copy(&mut (&mut part).take(room + 1), &mut std::io::sink())
            .map_err(unreadable)?;
        total += n;
        if total > max_unpacked {
            return Err(too_large(format!(
                "the workbook unpacks to more than {} MiB (a zip bomb, or a sheet too large to import at once)",
                max_unpacked / (1024 * 1024)
            )));
        }
    }
    Ok(())
}

/// "B7" for (6, 1).
fn cell_name(row: u32, col: u32) -> String {
    let mut letters = Vec::new();
    let mut c = col + 1;
    while c > 0 {
        letters.push(b'A' + ((c - 1) % 26) as u8);
        c = (c - 1) / 26;
    }
    letters.reverse();
    format!("{}{}", String::from_utf8_lossy(&letters), row + 1)
}

fn cell_text(value: &DataRef<'_>) -> String {
    let one_line = |s: &str| {
        if s.contains(['\n', '\r']) {
            s.replace("\r\n", " ").replace(['\n', '\r'], " ")
        } else {
            s.to_owned()
        }
    };
    match value {
        DataRef::Empty => String::new(),
        DataRef::String(s) => one_line(s),
        DataRef::SharedString(s) => one_line(s),
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => number_text(*f),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(d) if d.is_datetime() => {
            let (y, mo, day, h, mi, s, ms) = d.to_ymd_hms_milli();
            if (h, mi, s, ms) == (0, 0, 0, 0) {
                format!("{y:04}-{mo:02}-{day:02}")
            } else {
                format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}")
            }
        }
        DataRef::DateTime(d) => number_text(d.as_f64()),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => one_line(s),
        DataRef::Error(e) => e.to_string(),
    }
}

/// A number as Excel shows it at most: rounded to 15 significant digits, written out in full
/// (4915112345678, never 4.91511E+12), without a trailing `.0`.
fn number_text(f: f64) -> String {
    if !f.is_finite() {
        return String::new();
    }
    let rounded: f64 = format!("{f:.14e}").parse().unwrap_or(f);
    if rounded == rounded.trunc() && rounded.abs() < 1e21 {
        format!("{rounded:.0}")
    } else {
        rounded.to_string()
    }
}

/// A cell of [`sample_xlsx`].
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum SampleCell {
    Text(String),
    /// A number cell, as Excel stores a phone number typed without `+`.
    Number(f64),
    /// A date cell: days since 1899-12-30, shown as a date.
    Date(f64),
    Empty,
}

/// A minimal `.xlsx` workbook whose first sheet (named `sheet`) holds `rows`, a second sheet
/// `Ignored` with one cell: for tests and the fuzz target's seeds (Parley writes no workbooks).
#[doc(hidden)]
pub fn sample_xlsx(sheet: &str, rows: &[Vec<SampleCell>]) -> Vec<u8> {
    use std::io::Write;
    const MAIN: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    const REL: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    const PKG: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let sheet_xml = |rows: &[Vec<SampleCell>]| {
        let mut x = format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="{MAIN}"><sheetData>"#
        );
        for (r, row) in rows.iter().enumerate() {
            x.push_str(&format!(r#"<row r="{}">"#, r + 1));
            for (c, cell) in row.iter().enumerate() {
                let at = cell_name(r as u32, c as u32);
                match cell {
                    SampleCell::Text(t) => x.push_str(&format!(
                        r#"<c r="{at}" t="inlineStr"><is><t xml:space="preserve">{}</t></is></c>"#,
                        esc(t)
                    )),
                    SampleCell::Number(n) => x.push_str(&format!(r#"<c r="{at}"><v>{n}</v></c>"#)),
                    SampleCell::Date(d) => {
                        x.push_str(&format!(r#"<c r="{at}" s="1"><v>{d}</v></c>"#))
                    }
                    SampleCell::Empty => {}
                }
            }
            x.push_str("</row>");
        }
        x.push_str("</sheetData></worksheet>");
        x
    };
    let parts = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/worksheets/sheet2.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>"#.to_owned(),
        ),
        (
            "_rels/.rels",
            format!(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{PKG}"><Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#),
        ),
        (
            "xl/workbook.xml",
            format!(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets><sheet name="{}" sheetId="1" r:id="rId1"/><sheet name="Ignored" sheetId="2" r:id="rId2"/></sheets></workbook>"#, esc(sheet)),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            format!(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{PKG}"><Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="{REL}/worksheet" Target="worksheets/sheet2.xml"/><Relationship Id="rId3" Type="{REL}/styles" Target="styles.xml"/></Relationships>"#),
        ),
        (
            "xl/styles.xml",
            format!(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><styleSheet xmlns="{MAIN}"><cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs></styleSheet>"#),
        ),
        ("xl/worksheets/sheet1.xml", sheet_xml(rows)),
        (
            "xl/worksheets/sheet2.xml",
            sheet_xml(&[vec![SampleCell::Text("not this sheet".into())]]),
        ),
    ];
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    for (name, text) in parts {
        zip.start_file(name, options).expect("zip entry");
        zip.write_all(text.as_bytes()).expect("zip write");
    }
    zip.finish().expect("zip").into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_detected_as_the_rules_say() {
        assert_eq!(
            detect_encoding(b"\xef\xbb\xbfphone", true),
            TextEncoding::Utf8
        );
        assert_eq!(
            detect_encoding(b"\xff\xfep\0h\0", true),
            TextEncoding::Utf16Le
        );
        assert_eq!(
            detect_encoding(b"\xfe\xff\0p\0h", true),
            TextEncoding::Utf16Be
        );
        assert_eq!(
            detect_encoding(b"p\0h\0o\0n\0e\0", true),
            TextEncoding::Utf16Le
        );
        assert_eq!(
            detect_encoding(b"\0p\0h\0o\0n\0e", true),
            TextEncoding::Utf16Be
        );
        assert_eq!(
            detect_encoding("phone;name\n+7;Иван".as_bytes(), true),
            TextEncoding::Utf8
        );
        // A UTF-8 character cut at the end of the head is still UTF-8, unless the file ends.
        let cut = &"Иван".as_bytes()[..3];
        assert_eq!(detect_encoding(cut, false), TextEncoding::Utf8);
        let (cp1251, _, _) = encoding_rs::WINDOWS_1251.encode("телефон;имя\n+7;Иван Петров\n");
        assert_eq!(detect_encoding(&cp1251, true), TextEncoding::Windows1251);
        let (cp1252, _, _) =
            encoding_rs::WINDOWS_1252.encode("phone;name\n+49;Jürgen Müller, Straße\n");
        assert_eq!(detect_encoding(&cp1252, true), TextEncoding::Windows1252);
    }

    #[test]
    fn separators_are_detected_from_the_header() {
        assert_eq!(detect_separator("phone,name\n"), Separator::Comma);
        assert_eq!(
            detect_separator("\n\nphone;name;city\n"),
            Separator::Semicolon
        );
        assert_eq!(detect_separator("phone\tname\n"), Separator::Tab);
        assert_eq!(detect_separator("\"a;b\",c\n"), Separator::Comma);
        assert_eq!(detect_separator("phone\n"), Separator::Comma);
        assert_eq!(detect_separator("phone\tname, first\n"), Separator::Tab);
    }

    #[test]
    fn decoding_keeps_characters_cut_between_chunks() {
        let (bytes, _, _) = encoding_rs::UTF_16LE.encode("Иван");
        // encoding_rs encodes UTF-16 as UTF-8 (the Encoding Standard); build the bytes by hand.
        assert_eq!(&*bytes, "Иван".as_bytes());
        let utf16: Vec<u8> = [0xFEFFu16]
            .into_iter()
            .chain("Иван;+7".encode_utf16())
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut d = TextDecoder::new(TextEncoding::Utf16Le);
        let mut out = Vec::new();
        for chunk in utf16.chunks(3) {
            out.extend_from_slice(&d.decode(chunk, false));
        }
        out.extend_from_slice(&d.decode(&[], true));
        assert_eq!(String::from_utf8(out).unwrap(), "Иван;+7");
        assert_eq!(
            &*TextDecoder::new(TextEncoding::Utf8).decode(b"\xef\xbb\xbfa", true),
            b"\xef\xbb\xbfa"
        );
    }

    #[test]
    fn numbers_read_as_excel_shows_them() {
        assert_eq!(number_text(4915112345678.0), "4915112345678");
        assert_eq!(number_text(79161234567.0), "79161234567");
        assert_eq!(number_text(0.1 + 0.2), "0.3");
        assert_eq!(number_text(-2.5), "-2.5");
        assert_eq!(number_text(1e20), "100000000000000000000");
        assert_eq!(cell_name(6, 1), "B7");
        assert_eq!(cell_name(0, 27), "AB1");
    }

    fn text(s: &str) -> SampleCell {
        SampleCell::Text(s.to_owned())
    }

    #[test]
    fn the_first_sheet_reads_as_csv_with_numbers_and_dates_as_excel_shows_them() {
        let book = sample_xlsx(
            "Kunden",
            &[
                vec![text("phone"), text("name"), text("since"), text("visits")],
                vec![
                    SampleCell::Number(4915112345678.0),
                    text("Jürgen, \"JJ\"\nMüller"),
                    SampleCell::Date(46000.0),
                    SampleCell::Number(3.0),
                ],
                vec![],
                vec![
                    text("+79161234567"),
                    SampleCell::Empty,
                    SampleCell::Empty,
                    text("x"),
                ],
            ],
        );
        let sheet = read_xlsx(&book).expect("reads");
        assert_eq!(sheet.name, "Kunden");
        assert_eq!(
            sheet.text,
            "phone,name,since,visits\n4915112345678,\"Jürgen, \"\"JJ\"\" Müller\",2025-12-09,3\n\n+79161234567,,,x\n"
        );
    }

    #[test]
    fn broken_and_bombed_workbooks_are_refused_with_their_codes() {
        let book = sample_xlsx("S", &[vec![text("phone")]]);
        for cut in [book.len() / 2, 10, book.len() - 1] {
            let e = read_xlsx(&book[..cut]).unwrap_err();
            assert_eq!(e.code, "xlsx_unreadable", "cut at {cut}: {}", e.message);
        }
        let e = read_xlsx(b"PK\x03\x04 not really").unwrap_err();
        assert_eq!(e.code, "xlsx_unreadable");
        // A part that unpacks past the limit: refused before any of it is kept.
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1));
        zip.start_file("xl/sharedStrings.xml", options).unwrap();
        std::io::Write::write_all(&mut zip, &vec![b' '; 3 * 1024 * 1024]).unwrap();
        let bomb = zip.finish().unwrap().into_inner();
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let e = read_xlsx_bounded(&bomb, 2 * 1024 * 1024, MAX_XLSX_TEXT).unwrap_err();
        assert_eq!(e.code, "xlsx_too_large", "{}", e.message);
        // Text past its limit.
        let rows: Vec<Vec<SampleCell>> = (0..100).map(|_| vec![text(&"x".repeat(100))]).collect();
        let e = read_xlsx_bounded(&sample_xlsx("S", &rows), MAX_XLSX_UNPACKED, 5_000).unwrap_err();
        assert_eq!(e.code, "xlsx_too_large");
    }

    #[test]
    fn names_parse() {
        assert_eq!(Separator::parse(";"), Some(Separator::Semicolon));
        assert_eq!(Separator::parse("TAB"), Some(Separator::Tab));
        assert_eq!(Separator::parse("|"), None);
        assert_eq!(
            TextEncoding::parse("CP1251"),
            Some(TextEncoding::Windows1251)
        );
        assert_eq!(TextEncoding::parse("UTF_16"), Some(TextEncoding::Utf16Le));
        assert_eq!(TextEncoding::parse("koi8-r"), None);
    }
}
