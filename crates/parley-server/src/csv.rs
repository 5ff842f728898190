//! CSV for exports (#16): UTF-8, RFC 4180 quoting (a cell with a comma, a quote, CR or LF is
//! quoted, quotes doubled, lines end with CRLF), an optional byte-order mark for spreadsheet
//! programs that want one, and a guard against formula injection: a text cell that begins
//! with `=`, `+`, `-`, `@`, a tab or a CR gets a leading `'`, so a spreadsheet shows it as
//! text instead of running it. Numbers Parley writes itself are not guarded.

/// The UTF-8 byte-order mark.
pub const BOM: &str = "\u{feff}";

/// A text cell: guarded against formulas, then quoted when it must be.
pub fn text(out: &mut String, s: &str) {
    let guarded = matches!(
        s.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    let quote = guarded && s.contains(['"', ',', '\r', '\n']) || s.contains(['"', ',', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if guarded {
        out.push('\'');
    }
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

/// A number Parley wrote (never guarded).
pub fn number(out: &mut String, n: i64) {
    out.push_str(&n.to_string());
}

/// Writes a row of text cells and the line end.
pub fn row<'a>(out: &mut String, cells: impl IntoIterator<Item = &'a str>) {
    for (i, c) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        text(out, c);
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> String {
        let mut out = String::new();
        text(&mut out, s);
        out
    }

    #[test]
    fn quoting_and_the_formula_guard() {
        assert_eq!(one("plain"), "plain");
        assert_eq!(one("a,b"), "\"a,b\"");
        assert_eq!(one("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(one("two\nlines"), "\"two\nlines\"");
        assert_eq!(one("=1+1"), "'=1+1");
        assert_eq!(one("+49 151"), "'+49 151");
        assert_eq!(one("-2"), "'-2");
        assert_eq!(one("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(
            one("=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        assert_eq!(one("Zoë ✓"), "Zoë ✓");
        assert_eq!(one(""), "");
    }
}
