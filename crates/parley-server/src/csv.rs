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
    let quote = s.bytes().any(|b| matches!(b, b'"' | b',' | b'\r' | b'\n'));
    if quote {
        out.push('"');
    }
    if guarded {
        out.push('\'');
    }
    if quote {
        // Quotes doubled: each piece between them, then the quote twice.
        let mut pieces = s.split('"');
        out.push_str(pieces.next().unwrap_or_default());
        for piece in pieces {
            out.push_str("\"\"");
            out.push_str(piece);
        }
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// A number Parley wrote (never guarded).
pub fn number(out: &mut String, n: i64) {
    use std::fmt::Write;
    let _ = write!(out, "{n}");
}

/// A time in ms since the epoch as RFC 3339 in UTC, to the millisecond with trailing zeros
/// dropped (`2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.12Z`), exactly as
/// [`crate::routes::messages::rfc3339`] writes it, without its allocations: an export writes
/// eight per row. Never quoted or guarded (it begins with a digit and has no comma).
pub fn time(out: &mut String, ms: i64) {
    // 0000-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z; anything else (which `time` cannot
    // hold or RFC 3339 cannot write) as `rfc3339` has it.
    const FIRST: i64 = -62_167_219_200_000;
    const LAST: i64 = 253_402_300_799_999;
    if !(FIRST..=LAST).contains(&ms) {
        out.push_str(&crate::routes::messages::rfc3339(ms));
        return;
    }
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Days to a civil date (H. Hinnant's `civil_from_days`), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (secs, milli) = (in_day / 1000, in_day % 1000);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, secs / 3600);
    put(14, 2, secs / 60 % 60);
    put(17, 2, secs % 60);
    put(20, 3, milli);
    // The fraction without its trailing zeros, none at all for a whole second.
    let mut end = 23;
    while end > 20 && b[end - 1] == b'0' {
        end -= 1;
    }
    if end == 20 {
        end = 19;
    }
    out.push_str(std::str::from_utf8(&b[..end]).unwrap_or_default());
    out.push('Z');
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
        assert_eq!(one("\"\""), "\"\"\"\"\"\"");
        assert_eq!(one("-\"a\",\"b\"-"), "\"'-\"\"a\"\",\"\"b\"\"-\"");
        assert_eq!(one("\r\n"), "\"'\r\n\"");
        assert_eq!(one("\tx"), "'\tx");
    }

    #[test]
    fn times_as_rfc3339_writes_them() {
        let mut cases: Vec<i64> = vec![
            0,
            1,
            10,
            100,
            120,
            999,
            1000,
            -1,
            -1000,
            86_399_999,
            951_782_400_000,     // 2000-02-29
            4_107_542_400_000,   // 2100-02-28 + 1 day: no leap day in 2100
            1_767_225_600_000,   // 2026-01-01
            253_402_300_799_999, // the last millisecond RFC 3339 can write
            253_402_300_800_000, // one past it: beyond `time`'s range
            -62_167_219_200_000, // 0000-01-01
            -62_167_219_200_001, // year -1: RFC 3339 cannot write it
            i64::MAX,
            i64::MIN,
        ];
        // A deterministic spread over the whole range (an LCG).
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let span = 253_402_300_800_000u64 + 62_167_219_200_000;
            cases.push((x % span) as i64 - 62_167_219_200_000);
            cases.push(1_767_225_600_000 + (x >> 20) as i64 % 100_000_000_000);
        }
        for ms in cases {
            let mut out = String::new();
            time(&mut out, ms);
            assert_eq!(out, crate::routes::messages::rfc3339(ms), "{ms}");
        }
    }
}
