//! Dynamic content in the Pushwoosh style: `Hi {{first_name|CapitalizeFirst|there}}`.
//! Parsed once per campaign into parts, then rendered per recipient into one pre-sized string;
//! a recipient whose tags cannot fill an expression is skipped with a reason, never sent garbage.
//!
//! Forms:
//! - `{{tag}}`, `{{tag|Modifier}}`: no default; a recipient without the tag is skipped
//!   ([`SkipReason::MissingTag`]); a blank value renders empty.
//! - `{{tag|Modifier|}}`: empty default; a missing or blank tag renders as "".
//! - `{{tag|Modifier|default text}}`, `{{tag||default text}}`: the default (verbatim, without the
//!   modifier) replaces a missing or blank tag.
//!
//! Modifiers (names case-insensitive):
//! - `CapitalizeFirst`: the first letter of the value upper-cased, the rest unchanged.
//! - `CapitalizeAllFirst`: the first letter of every word (after whitespace or `-`) upper-cased.
//! - `UPPERCASE`, `lowercase`.
//! - `date:<format>` for date tags and strings written `YYYY-MM-DD` or RFC 3339: `%d` day (07),
//!   `%e` day without padding (7), `%m` month (03), `%B` month name (March), `%b` short month
//!   (Mar), `%Y` year (2025), `%y` two-digit year (25), `%H` hour (09), `%M` minute, `%S` second,
//!   `%A` weekday (Friday), `%a` short weekday (Fri), `%%` a percent sign. English names only.
//! - `number:<decimals>`: `number:2` renders 1234.5 as "1234.50" (no thousands separator).
//! - `currency:<ISO 4217 code>`: amount with the currency's usual decimals, then the code:
//!   `currency:EUR` renders 12.5 as "12.50 EUR", `currency:JPY` renders 1200 as "1200 JPY".

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::ops::Range;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;

use crate::tags::{TagLookup, TagValue};

/// The modifiers `{{tag|modifier}}` understands, for error messages.
pub const KNOWN_MODIFIERS: &str = "CapitalizeFirst, CapitalizeAllFirst, UPPERCASE, lowercase, date:<format> (e.g. date:%d.%m.%Y), number:<decimals> (e.g. number:2), currency:<ISO code> (e.g. currency:EUR)";

/// A dynamic-content expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {position}: {message} (known modifiers: {KNOWN_MODIFIERS})")]
pub struct PersonalizeError {
    /// Character (not byte) offset in the input, counted from 0.
    pub position: usize,
    pub message: String,
}

/// Why a recipient is skipped instead of sent to. Stored with the skipped message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum SkipReason {
    /// The contact lacks a tag used without a default.
    #[error(
        "the contact has no tag `{tag}` and the expression has no default: set the tag, or add a default like {{{{{tag}||default}}}}"
    )]
    MissingTag { tag: String },
    /// The tag exists but cannot be shown as asked (e.g. `date:` on a non-date).
    #[error("tag `{tag}` cannot be used: {reason}")]
    BadTagValue { tag: String, reason: String },
    /// The variable rendered empty; Meta refuses empty text parameters.
    #[error(
        "variable `{variable}` renders empty and Meta refuses empty parameters: set the tag or give a non-empty default"
    )]
    EmptyValue { variable: String },
    /// The rendered value, or the part of the message it fills, is longer than WhatsApp takes.
    /// Rendering stops at the limit, so a value that repeats a long tag never grows in memory.
    #[error(
        "variable `{variable}` makes {part} longer than {limit} characters, WhatsApp's limit: shorten the text, its default or the tag values it uses"
    )]
    TooLong {
        variable: String,
        /// What the limit applies to: `the value`, `the body`, `the header`, `the button URL`,
        /// `the text`.
        part: String,
        limit: usize,
    },
}

impl SkipReason {
    /// Stable snake_case code for APIs, metrics and storage.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::MissingTag { .. } => "missing_tag",
            SkipReason::BadTagValue { .. } => "bad_tag_value",
            SkipReason::EmptyValue { .. } => "empty_value",
            SkipReason::TooLong { .. } => "too_long",
        }
    }
}

/// Text with `{{tag|modifier|default}}` expressions, parsed once and rendered per recipient.
#[derive(Clone, PartialEq)]
pub struct DynamicText {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Byte range of literal text in `source`.
    Literal(Range<usize>),
    Expr(Expr),
}

#[derive(Debug, Clone, PartialEq)]
struct Expr {
    /// Byte range of the trimmed tag name in `source`.
    tag: Range<usize>,
    modifier: Option<Modifier>,
    /// Byte range of the default in `source`; `None` when the second `|` is absent.
    default: Option<Range<usize>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Modifier {
    CapitalizeFirst,
    CapitalizeAllFirst,
    Uppercase,
    Lowercase,
    Date(Vec<DateItem>),
    Number { decimals: u8 },
    Currency { code: String, decimals: u8 },
}

#[derive(Debug, Clone, PartialEq)]
enum DateItem {
    Literal(String),
    Day,
    DayUnpadded,
    Month,
    MonthName,
    MonthAbbr,
    Year,
    Year2,
    Hour,
    Minute,
    Second,
    Weekday,
    WeekdayAbbr,
}

impl DynamicText {
    /// Parses `input`. Text outside `{{…}}` is kept verbatim.
    pub fn parse(input: &str) -> Result<DynamicText, PersonalizeError> {
        let mut parts = Vec::new();
        let mut pos = 0;
        while let Some(rel) = input[pos..].find("{{") {
            let open = pos + rel;
            if open > pos {
                parts.push(Part::Literal(pos..open));
            }
            let inner_start = open + 2;
            let Some(close_rel) = input[inner_start..].find("}}") else {
                return Err(error_at(
                    input,
                    open,
                    "`{{` is not closed: end the expression with `}}`, e.g. {{first_name}}",
                ));
            };
            let inner_end = inner_start + close_rel;
            if let Some(nested) = input[inner_start..inner_end].find("{{") {
                return Err(error_at(
                    input,
                    inner_start + nested,
                    "`{{` inside an expression: close the previous expression with `}}` first",
                ));
            }
            parts.push(Part::Expr(parse_expr(input, inner_start, inner_end)?));
            pos = inner_end + 2;
        }
        if pos < input.len() {
            parts.push(Part::Literal(pos..input.len()));
        }
        Ok(DynamicText {
            source: input.to_owned(),
            parts,
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when there is no expression: the text renders the same for everyone.
    pub fn is_literal(&self) -> bool {
        !self.parts.iter().any(|p| matches!(p, Part::Expr(_)))
    }

    /// The tag names used, in order of first use, without duplicates.
    pub fn referenced_tags(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for part in &self.parts {
            if let Part::Expr(e) = part {
                let name = &self.source[e.tag.clone()];
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Renders for one recipient, at most `limit.max_chars` characters: rendering stops at
    /// the limit (the output never grows past it) and answers [`SkipReason::TooLong`].
    pub fn render(
        &self,
        tags: &(impl TagLookup + ?Sized),
        limit: &Limit<'_>,
    ) -> Result<String, SkipReason> {
        let mut out = String::with_capacity(self.source.len().min(limit.max_chars) + 16);
        self.render_into(tags, &mut out, limit)?;
        Ok(out)
    }

    /// Renders for one recipient, appending to `out` (which is left partly written on error);
    /// at most `limit.max_chars` characters are appended.
    pub fn render_into(
        &self,
        tags: &(impl TagLookup + ?Sized),
        out: &mut String,
        limit: &Limit<'_>,
    ) -> Result<(), SkipReason> {
        let mut sink = Sink {
            buf: out,
            left: limit.max_chars,
        };
        let result = self.render_parts(tags, &mut sink);
        match result {
            Ok(()) => Ok(()),
            Err(Stop::Skip(reason)) => Err(reason),
            Err(Stop::Full) => Err(limit.too_long()),
        }
    }

    fn render_parts(
        &self,
        tags: &(impl TagLookup + ?Sized),
        out: &mut Sink<'_>,
    ) -> Result<(), Stop> {
        for part in &self.parts {
            match part {
                Part::Literal(r) => out.push_str(&self.source[r.clone()])?,
                Part::Expr(e) => self.render_expr(e, tags, out)?,
            }
        }
        Ok(())
    }

    fn render_expr(
        &self,
        e: &Expr,
        tags: &(impl TagLookup + ?Sized),
        out: &mut Sink<'_>,
    ) -> Result<(), Stop> {
        let name = &self.source[e.tag.clone()];
        let default = e.default.as_ref().map(|r| &self.source[r.clone()]);
        match tags.tag(name) {
            None => match default {
                Some(d) => out.push_str(d)?,
                None => {
                    return Err(Stop::Skip(SkipReason::MissingTag {
                        tag: name.to_owned(),
                    }));
                }
            },
            Some(value) if value.is_blank() => {
                if let Some(d) = default {
                    out.push_str(d)?;
                }
            }
            Some(value) => match &e.modifier {
                None => match &*value {
                    TagValue::String(s) => out.push_str(s)?,
                    other => {
                        let mut text = String::new();
                        other.write_text(&mut text);
                        out.push_str(&text)?;
                    }
                },
                Some(m) => apply_modifier(m, name, &value, out)?,
            },
        }
        Ok(())
    }
}

/// How long a rendered value may be, and what to name in the error when it is longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit<'a> {
    /// The variable named in the error (`first_name`, `1`, `header`, `button.0`, `text`).
    pub variable: &'a str,
    /// What the limit applies to, for the error: `the value`, `the body`, `the text`…
    pub part: &'a str,
    /// The limit of the whole part, for the error.
    pub part_limit: usize,
    /// Characters the value may still take.
    pub max_chars: usize,
}

impl<'a> Limit<'a> {
    /// A value that may be `max_chars` characters long on its own.
    pub fn value(variable: &'a str, max_chars: usize) -> Limit<'a> {
        Limit {
            variable,
            part: "the value",
            part_limit: max_chars,
            max_chars,
        }
    }

    pub fn too_long(&self) -> SkipReason {
        SkipReason::TooLong {
            variable: self.variable.to_owned(),
            part: self.part.to_owned(),
            limit: self.part_limit,
        }
    }
}

/// Why rendering stopped early.
enum Stop {
    Skip(SkipReason),
    /// The output reached its limit.
    Full,
}

impl From<SkipReason> for Stop {
    fn from(r: SkipReason) -> Stop {
        Stop::Skip(r)
    }
}

/// The output of one render: refuses to grow past `left` more characters.
struct Sink<'a> {
    buf: &'a mut String,
    left: usize,
}

impl Sink<'_> {
    /// Appends all of `s`, or nothing and `Full` when it does not fit. Counts at most
    /// `left + 1` characters of `s`, so a huge piece costs no more than the limit.
    fn push_str(&mut self, s: &str) -> Result<(), Stop> {
        let mut n = 0;
        for _ in s.chars() {
            if n == self.left {
                return Err(Stop::Full);
            }
            n += 1;
        }
        self.buf.push_str(s);
        self.left -= n;
        Ok(())
    }

    fn push(&mut self, c: char) -> Result<(), Stop> {
        if self.left == 0 {
            return Err(Stop::Full);
        }
        self.buf.push(c);
        self.left -= 1;
        Ok(())
    }

    /// The longest prefix of `s` that can still matter: one character more than fits (case
    /// mappings never make text shorter in characters, so a longer input cannot fit either).
    fn clip<'s>(&self, s: &'s str) -> &'s str {
        match s.char_indices().nth(self.left.saturating_add(1)) {
            Some((i, _)) => &s[..i],
            None => s,
        }
    }
}

fn error_at(input: &str, byte: usize, message: impl Into<String>) -> PersonalizeError {
    PersonalizeError {
        position: input.get(..byte).map_or(0, |s| s.chars().count()),
        message: message.into(),
    }
}

fn parse_expr(input: &str, start: usize, end: usize) -> Result<Expr, PersonalizeError> {
    let inner = &input[start..end];
    let (tag_end, rest) = match inner.find('|') {
        Some(i) => (start + i, Some(start + i + 1)),
        None => (end, None),
    };
    let tag = trimmed_range(input, start..tag_end);
    if tag.is_empty() {
        return Err(error_at(
            input,
            start,
            "empty tag name: write the tag between the braces, e.g. {{first_name}}",
        ));
    }
    let tag_text = &input[tag.clone()];
    if let Some(i) = tag_text.find(['{', '}']) {
        return Err(error_at(
            input,
            tag.start + i,
            format!(
                "`{}` is not a tag name: braces are not allowed in tag names",
                crate::excerpt(tag_text)
            ),
        ));
    }
    let (modifier, default) = match rest {
        None => (None, None),
        Some(mod_start) => {
            let (mod_end, default) = match input[mod_start..end].find('|') {
                Some(i) => (mod_start + i, Some(mod_start + i + 1..end)),
                None => (end, None),
            };
            let m = trimmed_range(input, mod_start..mod_end);
            let modifier = if m.is_empty() {
                None
            } else {
                Some(parse_modifier(input, m)?)
            };
            (modifier, default)
        }
    };
    Ok(Expr {
        tag,
        modifier,
        default,
    })
}

fn trimmed_range(input: &str, r: Range<usize>) -> Range<usize> {
    let s = &input[r.clone()];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if lead == s.len() {
        return r.start..r.start;
    }
    r.start + lead..r.end - trail
}

fn parse_modifier(input: &str, r: Range<usize>) -> Result<Modifier, PersonalizeError> {
    let text = &input[r.clone()];
    let (name, arg, arg_start) = match text.find(':') {
        Some(i) => (&text[..i], Some(&text[i + 1..]), r.start + i + 1),
        None => (text, None, r.end),
    };
    let name = name.trim();
    let bad = |msg: String| Err(error_at(input, r.start, msg));
    let no_arg = |m: Modifier| -> Result<Modifier, PersonalizeError> {
        match arg {
            None => Ok(m),
            Some(_) => Err(error_at(
                input,
                r.start,
                format!("modifier `{name}` takes no `:` argument"),
            )),
        }
    };
    if name.eq_ignore_ascii_case("CapitalizeFirst") {
        no_arg(Modifier::CapitalizeFirst)
    } else if name.eq_ignore_ascii_case("CapitalizeAllFirst") {
        no_arg(Modifier::CapitalizeAllFirst)
    } else if name.eq_ignore_ascii_case("uppercase") {
        no_arg(Modifier::Uppercase)
    } else if name.eq_ignore_ascii_case("lowercase") {
        no_arg(Modifier::Lowercase)
    } else if name.eq_ignore_ascii_case("date") {
        match arg {
            Some(fmt) if !fmt.trim().is_empty() => {
                parse_date_format(input, arg_start, fmt).map(Modifier::Date)
            }
            _ => bad(
                "`date` needs a format after a colon, e.g. date:%d.%m.%Y or date:%B %e, %Y".into(),
            ),
        }
    } else if name.eq_ignore_ascii_case("number") {
        match arg.map(str::trim).and_then(|a| a.parse::<u8>().ok()) {
            Some(decimals) if decimals <= 9 => Ok(Modifier::Number { decimals }),
            _ => bad(
                "`number` needs the count of decimals (0 to 9) after a colon, e.g. number:2".into(),
            ),
        }
    } else if name.eq_ignore_ascii_case("currency") {
        match arg.map(str::trim) {
            Some(code) if code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()) => {
                let code = code.to_ascii_uppercase();
                let decimals = currency_decimals(&code);
                Ok(Modifier::Currency { code, decimals })
            }
            _ => bad(
                "`currency` needs a three-letter ISO 4217 code after a colon, e.g. currency:EUR"
                    .into(),
            ),
        }
    } else {
        bad(format!("unknown modifier `{}`", crate::excerpt(name)))
    }
}

/// Minor units of ISO 4217 currencies that do not use two decimals.
fn currency_decimals(code: &str) -> u8 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

fn parse_date_format(
    input: &str,
    start: usize,
    fmt: &str,
) -> Result<Vec<DateItem>, PersonalizeError> {
    let mut items = Vec::new();
    let mut literal = String::new();
    let mut chars = fmt.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        let item = match chars.next().map(|(_, c)| c) {
            Some('%') => {
                literal.push('%');
                continue;
            }
            Some('d') => DateItem::Day,
            Some('e') => DateItem::DayUnpadded,
            Some('m') => DateItem::Month,
            Some('B') => DateItem::MonthName,
            Some('b') => DateItem::MonthAbbr,
            Some('Y') => DateItem::Year,
            Some('y') => DateItem::Year2,
            Some('H') => DateItem::Hour,
            Some('M') => DateItem::Minute,
            Some('S') => DateItem::Second,
            Some('A') => DateItem::Weekday,
            Some('a') => DateItem::WeekdayAbbr,
            other => {
                let shown = other.map_or_else(|| "%".to_owned(), |c| format!("%{c}"));
                return Err(error_at(
                    input,
                    start + i,
                    format!(
                        "unknown date field `{shown}`: use %d %e %m %B %b %Y %y %H %M %S %A %a or %% for a percent sign"
                    ),
                ));
            }
        };
        if !literal.is_empty() {
            items.push(DateItem::Literal(std::mem::take(&mut literal)));
        }
        items.push(item);
    }
    if !literal.is_empty() {
        items.push(DateItem::Literal(literal));
    }
    Ok(items)
}

fn text_of(value: &TagValue) -> Cow<'_, str> {
    match value {
        TagValue::String(s) => Cow::Borrowed(s.as_str()),
        other => Cow::Owned(other.as_text()),
    }
}

fn apply_modifier(
    m: &Modifier,
    tag: &str,
    value: &TagValue,
    out: &mut Sink<'_>,
) -> Result<(), Stop> {
    match m {
        Modifier::CapitalizeFirst => {
            let text = text_of(value);
            let mut done = false;
            for c in out.clip(&text).chars() {
                if !done && !c.is_whitespace() {
                    for u in c.to_uppercase() {
                        out.push(u)?;
                    }
                    done = true;
                } else {
                    out.push(c)?;
                }
            }
        }
        Modifier::CapitalizeAllFirst => {
            let text = text_of(value);
            let mut at_word_start = true;
            for c in out.clip(&text).chars() {
                if at_word_start && !c.is_whitespace() && c != '-' {
                    for u in c.to_uppercase() {
                        out.push(u)?;
                    }
                    at_word_start = false;
                } else {
                    out.push(c)?;
                    if c.is_whitespace() || c == '-' {
                        at_word_start = true;
                    }
                }
            }
        }
        Modifier::Uppercase => {
            let text = text_of(value);
            for c in out.clip(&text).chars() {
                for u in c.to_uppercase() {
                    out.push(u)?;
                }
            }
        }
        // str::to_lowercase knows the Greek final sigma, char-wise lowering does not.
        Modifier::Lowercase => {
            let text = text_of(value);
            let lower = out.clip(&text).to_lowercase();
            out.push_str(&lower)?;
        }
        Modifier::Date(items) => {
            let dt = date_of(value).ok_or_else(|| SkipReason::BadTagValue {
                tag: tag.to_owned(),
                reason: format!(
                    "`{}` is not a date: the date modifier needs a date tag or text like 2025-03-07 or 2025-03-07T10:30:00Z",
                    crate::excerpt(&text_of(value))
                ),
            })?;
            write_date(items, dt, out)?;
        }
        Modifier::Number { decimals } => {
            let mut text = String::new();
            write_number(tag, value, *decimals, &mut text)?;
            out.push_str(&text)?;
        }
        Modifier::Currency { code, decimals } => {
            let mut text = String::new();
            write_number(tag, value, *decimals, &mut text)?;
            out.push_str(&text)?;
            out.push(' ')?;
            out.push_str(code)?;
        }
    }
    Ok(())
}

fn date_of(value: &TagValue) -> Option<time::PrimitiveDateTime> {
    match value {
        TagValue::Date(d) => Some(d.midnight()),
        TagValue::DateTime(dt) => Some(time::PrimitiveDateTime::new(dt.date(), dt.time())),
        TagValue::String(s) => {
            let s = s.trim();
            if let Ok(dt) = time::OffsetDateTime::parse(s, &Rfc3339) {
                return Some(time::PrimitiveDateTime::new(dt.date(), dt.time()));
            }
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(s, &fmt).ok().map(|d| d.midnight())
        }
        _ => None,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Writes a date item by item, so a format that repeats `%B` stops at the limit too.
fn write_date(
    items: &[DateItem],
    dt: time::PrimitiveDateTime,
    out: &mut Sink<'_>,
) -> Result<(), Stop> {
    let month_index = usize::from(u8::from(dt.month())).saturating_sub(1) % 12;
    let mut piece = String::new();
    for item in items {
        piece.clear();
        let _ = match item {
            DateItem::Literal(s) => {
                piece.push_str(s);
                Ok(())
            }
            DateItem::Day => write!(piece, "{:02}", dt.day()),
            DateItem::DayUnpadded => write!(piece, "{}", dt.day()),
            DateItem::Month => write!(piece, "{:02}", u8::from(dt.month())),
            DateItem::MonthName => {
                piece.push_str(MONTHS[month_index]);
                Ok(())
            }
            DateItem::MonthAbbr => {
                piece.push_str(&MONTHS[month_index][..3]);
                Ok(())
            }
            DateItem::Year => write!(piece, "{:04}", dt.year()),
            DateItem::Year2 => write!(piece, "{:02}", dt.year().rem_euclid(100)),
            DateItem::Hour => write!(piece, "{:02}", dt.hour()),
            DateItem::Minute => write!(piece, "{:02}", dt.minute()),
            DateItem::Second => write!(piece, "{:02}", dt.second()),
            DateItem::Weekday => write!(piece, "{}", dt.weekday()),
            DateItem::WeekdayAbbr => {
                let name = dt.weekday().to_string();
                piece.push_str(name.get(..3).unwrap_or(&name));
                Ok(())
            }
        };
        out.push_str(&piece)?;
    }
    Ok(())
}

fn write_number(
    tag: &str,
    value: &TagValue,
    decimals: u8,
    out: &mut String,
) -> Result<(), SkipReason> {
    let bad = || SkipReason::BadTagValue {
        tag: tag.to_owned(),
        reason: format!(
            "`{}` is not a number: number and currency modifiers need a number like 12.5",
            crate::excerpt(&text_of(value))
        ),
    };
    let int = |i: i64, out: &mut String| {
        let _ = write!(out, "{i}");
        if decimals > 0 {
            out.push('.');
            out.extend(std::iter::repeat_n('0', usize::from(decimals)));
        }
    };
    let float = |f: f64, out: &mut String| {
        let _ = write!(out, "{:.*}", usize::from(decimals), f);
    };
    match value {
        TagValue::Integer(i) => int(*i, out),
        TagValue::Float(f) if f.is_finite() => float(*f, out),
        TagValue::String(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                int(i, out);
            } else {
                match s.parse::<f64>() {
                    Ok(f) if f.is_finite() => float(f, out),
                    _ => return Err(bad()),
                }
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

impl fmt::Debug for DynamicText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DynamicText({:?})", self.source)
    }
}

impl fmt::Display for DynamicText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for DynamicText {
    type Err = PersonalizeError;
    fn from_str(s: &str) -> Result<Self, PersonalizeError> {
        Self::parse(s)
    }
}

impl Serialize for DynamicText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for DynamicText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::Tags;
    use proptest::prelude::*;
    use time::macros::{date, datetime};

    fn tags(pairs: &[(&str, TagValue)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn render(expr: &str, t: &Tags) -> Result<String, SkipReason> {
        DynamicText::parse(expr).unwrap().render(t, &BIG)
    }

    const BIG: Limit<'static> = Limit {
        variable: "v",
        part: "the value",
        part_limit: 1 << 20,
        max_chars: 1 << 20,
    };

    fn s(v: &str) -> TagValue {
        TagValue::String(v.into())
    }

    #[test]
    fn literal_text_is_kept() {
        let t = DynamicText::parse("Hello, world { } }} {x}").unwrap();
        assert!(t.is_literal());
        assert_eq!(
            t.render(&Tags::new(), &BIG).unwrap(),
            "Hello, world { } }} {x}"
        );
        assert!(DynamicText::parse("").unwrap().is_literal());
        assert_eq!(
            DynamicText::parse("")
                .unwrap()
                .render(&Tags::new(), &BIG)
                .unwrap(),
            ""
        );
    }

    #[test]
    fn plain_tag_and_surrounding_text() {
        let t = tags(&[("first_name", s("ana")), ("n", TagValue::Integer(3))]);
        assert_eq!(
            render("Hi {{first_name}}, you have {{ n }} items", &t).unwrap(),
            "Hi ana, you have 3 items"
        );
        let d = DynamicText::parse("{{a}}{{b}}{{a}}").unwrap();
        assert_eq!(d.referenced_tags(), vec!["a", "b"]);
        assert!(!d.is_literal());
        assert_eq!(d.source(), "{{a}}{{b}}{{a}}");
    }

    #[test]
    fn default_rules() {
        let none = Tags::new();
        let empty = tags(&[("name", s("  "))]);
        let full = tags(&[("name", s("ana"))]);
        // No default: missing skips, blank renders empty.
        assert_eq!(
            render("{{name}}", &none),
            Err(SkipReason::MissingTag { tag: "name".into() })
        );
        assert_eq!(
            render("{{name|CapitalizeFirst}}", &none)
                .unwrap_err()
                .code(),
            "missing_tag"
        );
        assert_eq!(render("{{name|CapitalizeFirst}}", &empty).unwrap(), "");
        // Empty default: renders empty.
        assert_eq!(
            render("Hi {{name|CapitalizeFirst|}}!", &none).unwrap(),
            "Hi !"
        );
        assert_eq!(
            render("Hi {{name|CapitalizeFirst|}}!", &empty).unwrap(),
            "Hi !"
        );
        // Default text for missing or blank, verbatim (no modifier applied).
        assert_eq!(
            render("Hi {{name|UPPERCASE|friend}}", &none).unwrap(),
            "Hi friend"
        );
        assert_eq!(
            render("Hi {{name|UPPERCASE|friend}}", &empty).unwrap(),
            "Hi friend"
        );
        assert_eq!(
            render("Hi {{name|UPPERCASE|friend}}", &full).unwrap(),
            "Hi ANA"
        );
        // No modifier, with default.
        assert_eq!(render("Hi {{name||there}}", &none).unwrap(), "Hi there");
        assert_eq!(render("Hi {{name||there}}", &full).unwrap(), "Hi ana");
        // A default may contain `|` and spaces.
        assert_eq!(render("{{name|| a | b }}", &none).unwrap(), " a | b ");
    }

    #[test]
    fn case_modifiers_are_unicode_correct() {
        let t = tags(&[
            ("fn", s("élodie")),
            ("full", s("jean-pierre de la tour")),
            ("street", s("ßtraße")),
            ("one", s("x")),
            ("greek", s("ΟΔΟΣ")),
            ("mixed", s("mcDonald")),
        ]);
        assert_eq!(render("{{fn|CapitalizeFirst}}", &t).unwrap(), "Élodie");
        assert_eq!(render("{{fn|capitalizefirst}}", &t).unwrap(), "Élodie");
        assert_eq!(render("{{mixed|CapitalizeFirst}}", &t).unwrap(), "McDonald");
        assert_eq!(render("{{one|CapitalizeFirst}}", &t).unwrap(), "X");
        assert_eq!(
            render("{{full|CapitalizeAllFirst}}", &t).unwrap(),
            "Jean-Pierre De La Tour"
        );
        assert_eq!(render("{{street|CapitalizeFirst}}", &t).unwrap(), "SStraße");
        assert_eq!(render("{{street|UPPERCASE}}", &t).unwrap(), "SSTRASSE");
        assert_eq!(render("{{fn|uppercase}}", &t).unwrap(), "ÉLODIE");
        assert_eq!(render("{{greek|lowercase}}", &t).unwrap(), "οδος");
        assert_eq!(
            render("{{full|LOWERCASE}}", &t).unwrap(),
            "jean-pierre de la tour"
        );
        assert_eq!(render("{{one|CapitalizeAllFirst}}", &t).unwrap(), "X");
        let one_word = tags(&[("name", s("ana"))]);
        assert_eq!(
            render("{{name|CapitalizeAllFirst}}", &one_word).unwrap(),
            "Ana"
        );
        assert_eq!(
            render("{{name|CapitalizeFirst}}", &one_word).unwrap(),
            "Ana"
        );
        let odd = tags(&[("name", s("ǆemal 1st ǳ"))]);
        assert_eq!(
            render("{{name|CapitalizeAllFirst}}", &odd).unwrap(),
            "Ǆemal 1st Ǳ"
        );
    }

    #[test]
    fn date_modifier() {
        let t = tags(&[
            ("d", TagValue::Date(date!(2025 - 03 - 07))),
            (
                "dt",
                TagValue::DateTime(datetime!(2025-12-24 18:05:09 +01:00)),
            ),
            ("s", s("2024-02-29")),
            ("rfc", s("2024-02-29T08:30:00Z")),
            ("bad", s("next tuesday")),
            ("n", TagValue::Integer(3)),
        ]);
        assert_eq!(render("{{d|date:%d.%m.%Y}}", &t).unwrap(), "07.03.2025");
        assert_eq!(render("{{d|date:%B %e, %Y}}", &t).unwrap(), "March 7, 2025");
        assert_eq!(
            render("{{d|DATE:%a %e %b %y}}", &t).unwrap(),
            "Fri 7 Mar 25"
        );
        assert_eq!(render("{{d|date:%A}}", &t).unwrap(), "Friday");
        assert_eq!(
            render("{{dt|date:%d/%m %H:%M:%S}}", &t).unwrap(),
            "24/12 18:05:09"
        );
        assert_eq!(render("{{dt|date:100%%}}", &t).unwrap(), "100%");
        assert_eq!(render("{{s|date:%e %B}}", &t).unwrap(), "29 February");
        assert_eq!(render("{{rfc|date:%H:%M}}", &t).unwrap(), "08:30");
        let err = render("{{bad|date:%Y}}", &t).unwrap_err();
        assert_eq!(err.code(), "bad_tag_value");
        assert!(err.to_string().contains("next tuesday"), "{err}");
        assert_eq!(
            render("{{n|date:%Y}}", &t).unwrap_err().code(),
            "bad_tag_value"
        );
        assert_eq!(render("{{missing|date:%Y|soon}}", &t).unwrap(), "soon");
    }

    #[test]
    fn number_and_currency_modifiers() {
        let t = tags(&[
            ("f", TagValue::Float(1234.5)),
            ("i", TagValue::Integer(12)),
            ("s", s(" 9.999 ")),
            ("neg", TagValue::Integer(-3)),
            ("word", s("twelve")),
            ("b", TagValue::Boolean(true)),
        ]);
        assert_eq!(render("{{f|number:2}}", &t).unwrap(), "1234.50");
        assert_eq!(render("{{f|number:0}}", &t).unwrap(), "1234");
        assert_eq!(render("{{i|number:2}}", &t).unwrap(), "12.00");
        assert_eq!(render("{{s|number:1}}", &t).unwrap(), "10.0");
        assert_eq!(render("{{neg|Number:1}}", &t).unwrap(), "-3.0");
        assert_eq!(render("{{f|currency:EUR}}", &t).unwrap(), "1234.50 EUR");
        assert_eq!(render("{{i|currency:jpy}}", &t).unwrap(), "12 JPY");
        assert_eq!(render("{{i|currency:KWD}}", &t).unwrap(), "12.000 KWD");
        assert_eq!(
            render("{{word|number:2}}", &t).unwrap_err().code(),
            "bad_tag_value"
        );
        assert_eq!(
            render("{{b|currency:EUR}}", &t).unwrap_err().code(),
            "bad_tag_value"
        );
    }

    #[test]
    fn parse_errors_say_where_and_what() {
        let err = DynamicText::parse("Hi {{first_name").unwrap_err();
        assert_eq!(err.position, 3);
        assert!(
            err.to_string()
                .starts_with("at character 3: `{{` is not closed"),
            "{err}"
        );
        assert!(err.to_string().contains("CapitalizeFirst"), "{err}");

        let err = DynamicText::parse("ü {{ |x}}").unwrap_err();
        assert_eq!(err.position, 4);
        assert!(err.message.contains("empty tag name"));

        let err = DynamicText::parse("{{name|Shout}}").unwrap_err();
        assert_eq!(err.position, 7);
        assert!(err.message.contains("unknown modifier `Shout`"));

        for bad in [
            "{{a|date}}",
            "{{a|date:}}",
            "{{a|date:%Q}}",
            "{{a|date:%}}",
            "{{a|number}}",
            "{{a|number:x}}",
            "{{a|number:12}}",
            "{{a|currency:EURO}}",
            "{{a|UPPERCASE:x}}",
            "{{a {{b}}",
            "{{}}",
        ] {
            assert!(DynamicText::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn skip_reason_serde_and_codes() {
        let r = SkipReason::EmptyValue {
            variable: "1".into(),
        };
        assert_eq!(r.code(), "empty_value");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"code":"empty_value","variable":"1"}"#);
        assert_eq!(serde_json::from_str::<SkipReason>(&json).unwrap(), r);
        let m = SkipReason::MissingTag {
            tag: "first_name".into(),
        };
        assert!(m.to_string().contains("{{first_name||default}}"), "{m}");
    }

    #[test]
    fn serde_round_trip() {
        let d = DynamicText::parse("Hi {{name|CapitalizeFirst|there}}").unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<DynamicText>(&json).unwrap(), d);
        assert!(serde_json::from_str::<DynamicText>("\"{{\"").is_err());
    }

    /// One `{{…}}` read the way the module documentation describes it: the trimmed tag
    /// before the first `|`, the trimmed modifier up to the second, the verbatim default after.
    /// Written apart from the parser, for texts the parser accepts.
    fn reference_render(input: &str, t: &Tags) -> Option<Result<String, SkipReason>> {
        let mut out = String::new();
        let mut rest = input;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let close = after.find("}}")?;
            let inner = &after[..close];
            let (tag, tail) = match inner.split_once('|') {
                Some((tag, tail)) => (tag.trim(), Some(tail)),
                None => (inner.trim(), None),
            };
            let (modifier, default) = match tail.map(|t| t.split_once('|')) {
                None => ("", None),
                Some(None) => (tail.unwrap_or("").trim(), None),
                Some(Some((m, d))) => (m.trim(), Some(d)),
            };
            match t.tag(tag) {
                None => match default {
                    Some(d) => out.push_str(d),
                    None => {
                        return Some(Err(SkipReason::MissingTag {
                            tag: tag.to_owned(),
                        }));
                    }
                },
                Some(v) if v.is_blank() => out.push_str(default.unwrap_or("")),
                Some(v) if modifier.is_empty() => out.push_str(&v.as_text()),
                Some(v) => out.push_str(&reference_modifier(modifier, &v)?),
            }
            rest = &after[close + 2..];
        }
        out.push_str(rest);
        Some(Ok(out))
    }

    /// The case modifiers by the standard library; `None` for the others.
    fn reference_modifier(modifier: &str, v: &TagValue) -> Option<String> {
        let text = v.as_text();
        let m = modifier.to_ascii_lowercase();
        Some(match m.as_str() {
            "uppercase" => text.to_uppercase(),
            "lowercase" => text.to_lowercase(),
            "capitalizefirst" => match text.find(|c: char| !c.is_whitespace()) {
                Some(i) => {
                    let c = text[i..].chars().next()?;
                    format!(
                        "{}{}{}",
                        &text[..i],
                        c.to_uppercase(),
                        &text[i + c.len_utf8()..]
                    )
                }
                None => text,
            },
            _ => return None,
        })
    }

    fn any_tag_value() -> impl Strategy<Value = TagValue> {
        prop_oneof![
            "\\PC{0,12}".prop_map(TagValue::String),
            "[ \t]{0,3}".prop_map(TagValue::String),
            any::<i64>().prop_map(TagValue::Integer),
            any::<f64>().prop_map(TagValue::Float),
            any::<bool>().prop_map(TagValue::Boolean),
            prop::collection::vec("\\PC{0,5}| ", 0..3).prop_map(TagValue::List),
            (-9999i32..=9999, 1u16..=365).prop_map(|(y, d)| {
                TagValue::Date(time::Date::from_ordinal_date(y, d).unwrap())
            }),
        ]
    }

    /// Texts made of the language's pieces, so most of them parse.
    fn any_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[^{}|]{0,6}",
            Just("{{".to_owned()),
            Just("}}".to_owned()),
            Just("|".to_owned()),
            prop::sample::select(vec!["a", " a ", "A", "b", "c", "missing"])
                .prop_map(|tag| format!("{{{{{tag}}}}}")),
            (
                prop::sample::select(vec!["a", "B", " c "]),
                prop::sample::select(vec![
                    "",
                    " ",
                    "UPPERCASE",
                    "lowercase",
                    " capitalizefirst ",
                    "CapitalizeAllFirst",
                    "number:2",
                    "date:%Y",
                    "currency:eur",
                    "Shout"
                ]),
                prop::option::of("[^{}]{0,6}"),
            )
                .prop_map(|(tag, m, d)| match d {
                    Some(d) => format!("{{{{{tag}|{m}|{d}}}}}"),
                    None => format!("{{{{{tag}|{m}}}}}"),
                }),
        ];
        prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
    }

    #[test]
    fn rendering_stops_at_the_limit() {
        let t = tags(&[("first_name", s(&"x".repeat(1000))), ("d", s("2025-03-07"))]);
        // 250 copies of a 1,000-character tag: 250,000 characters if rendered in full.
        let amplified = DynamicText::parse(&"{{first_name}}".repeat(250)).unwrap();
        let limit = Limit::value("1", 1024);
        let err = amplified.render(&t, &limit).unwrap_err();
        assert_eq!(
            err,
            SkipReason::TooLong {
                variable: "1".into(),
                part: "the value".into(),
                limit: 1024
            }
        );
        assert_eq!(err.code(), "too_long");
        assert!(err.to_string().contains("`1`"), "{err}");
        // The output never grows past the limit, whatever the input would expand to.
        let mut out = String::new();
        assert!(amplified.render_into(&t, &mut out, &limit).is_err());
        assert!(out.chars().count() <= 1024, "{}", out.len());
        let mut out = String::new();
        let dates = DynamicText::parse(&format!("{{{{d|date:{}}}}}", "%B".repeat(500))).unwrap();
        assert!(dates.render_into(&t, &mut out, &limit).is_err());
        assert!(out.chars().count() <= 1024);
        for m in [
            "UPPERCASE",
            "lowercase",
            "CapitalizeFirst",
            "CapitalizeAllFirst",
        ] {
            let mut out = String::new();
            let d = DynamicText::parse(&format!("{{{{first_name|{m}}}}}{{{{first_name|{m}}}}}"))
                .unwrap();
            assert!(d.render_into(&t, &mut out, &limit).is_err(), "{m}");
            assert!(out.chars().count() <= 1024, "{m}");
        }
        // Exactly at the limit fits; characters, not bytes, count.
        let t = tags(&[("e", s(&"é".repeat(512)))]);
        let d = DynamicText::parse("{{e}}{{e|UPPERCASE}}").unwrap();
        assert_eq!(d.render(&t, &limit).unwrap().chars().count(), 1024);
        assert!(d.render(&t, &Limit::value("1", 1023)).is_err());
    }

    proptest! {
        /// Any text either parses, printing as itself and parsing back equal, or fails at a
        /// position inside it.
        #[test]
        fn parse_round_trips_or_points_inside(input in "\\PC{0,60}|[{}|:a%d\u{e9} ]{0,40}") {
            match DynamicText::parse(&input) {
                Ok(d) => {
                    prop_assert_eq!(d.to_string(), input.clone());
                    prop_assert_eq!(DynamicText::parse(&d.to_string()).unwrap(), d.clone());
                    let json = serde_json::to_string(&d).unwrap();
                    prop_assert_eq!(serde_json::from_str::<DynamicText>(&json).unwrap(), d);
                }
                Err(e) => prop_assert!(e.position <= input.chars().count(), "{:?} at {}", input, e.position),
            }
        }

        /// Rendering agrees with a reference renderer written from the documentation wherever
        /// the reference can tell (defaults, blanks, missing tags, plain values, case modifiers).
        #[test]
        fn rendering_follows_the_reference(
            input in any_text(),
            a in prop::option::of(any_tag_value()),
            b in prop::option::of(any_tag_value()),
            c in prop::option::of(any_tag_value()),
        ) {
            let t: Tags = [("a", a), ("B", b), ("c", c)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
                .collect();
            if let Ok(d) = DynamicText::parse(&input) {
                let rendered = d.render(&t, &BIG);
                if let Some(expected) = reference_render(&input, &t) {
                    prop_assert_eq!(rendered, expected, "{:?} with {:?}", input, t);
                }
            }
        }

        #[test]
        fn text_without_braces_renders_itself(input in "[^{]{0,60}") {
            let d = DynamicText::parse(&input).unwrap();
            prop_assert!(d.is_literal());
            prop_assert_eq!(d.render(&Tags::new(), &BIG).unwrap(), input);
        }

        /// Each modifier on any value renders what it promises, or skips with `bad_tag_value`.
        #[test]
        fn modifiers_keep_their_promises(v in any_tag_value(), decimals in 0u8..=9) {
            let t = tags(&[("v", v.clone())]);
            let render = |m: &str| DynamicText::parse(&format!("{{{{v|{m}}}}}")).unwrap().render(&t, &BIG);
            let blank = v.is_blank();
            for m in ["UPPERCASE", "lowercase", "CapitalizeFirst"] {
                let expected = if blank { String::new() } else { reference_modifier(m, &v).unwrap() };
                prop_assert_eq!(render(m).unwrap(), expected);
            }
            let number = render(&format!("number:{decimals}"));
            let numeric = match &v {
                TagValue::Integer(i) => Some(*i as f64),
                TagValue::Float(f) if f.is_finite() => Some(*f),
                TagValue::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                _ => None,
            };
            match (number, numeric) {
                (Ok(out), _) if blank => prop_assert_eq!(out, ""),
                (Ok(out), Some(f)) => {
                    let shown: f64 = out.parse().unwrap();
                    let digits = out.split_once('.').map_or(0, |(_, d)| d.len());
                    prop_assert_eq!(digits, usize::from(decimals), "{}", out);
                    prop_assert!((shown - f).abs() <= 0.5 * 10f64.powi(-i32::from(decimals)) * 1.000_001 + f.abs() * 1e-15, "{} for {}", out, f);
                }
                (Err(e), None) => prop_assert_eq!(e.code(), "bad_tag_value"),
                (out, numeric) => prop_assert!(false, "number:{} gave {:?} for {:?} ({:?})", decimals, out, v, numeric),
            }
            if let TagValue::Date(d) = v {
                let out = render("date:%Y-%m-%d %e %B %A").unwrap();
                let iso = crate::tags::TagValue::Date(d).as_text();
                prop_assert!(out.starts_with(&iso) || d.year() < 0, "{} for {}", out, iso);
                prop_assert!(out.ends_with(&d.weekday().to_string()));
            }
        }
    }
}
