//! Meta's rules for creating a message template, checked locally so the user sees every
//! field-level problem at once, with how to fix it, before a submission costs a review round.
//!
//! Sources: `shared/META_API.md` §2.2, the create examples in Meta's OpenAPI spec
//! (`POST /{waba-id}/message_templates`) and Meta's template pages. Where Meta's text is
//! silent or unclear, the stricter documented reading wins:
//!
//! * Positional variables must appear first in the order `{{1}}`, `{{2}}`… with no gaps, and no
//!   variable (positional or named) may appear twice in one text. Meta tolerates some of this
//!   in places; refusing it keeps the example values and send parameters one-to-one.
//! * A variable is "at the start/end" of the body when only whitespace precedes/follows it,
//!   and two variables are "adjacent" when only whitespace separates them. Punctuation counts
//!   as text because Meta's own examples end in `{{order_number}}.`. Headers are exempt
//!   (Meta's spec example header is `Forget something {{1}}?`).
//! * "Too many variables for the length" has no published formula. Parley uses the rule
//!   partners observed: at least `2n + 1` words besides `n` variables, a word being a
//!   whitespace-separated piece holding a letter or digit.
//! * Example values follow the send-time rule for parameter text ([`check_parameter_text`]):
//!   not empty, no newline or tab, at most 4 consecutive spaces, at most 1024 characters.
//! * COPY_CODE buttons belong to MARKETING templates only (Meta: "coupon code templates are
//!   marketing templates"); OTP buttons to AUTHENTICATION templates only.
//! * URL buttons take the single variable `{{1}}` in every parameter format, at the end of the
//!   URL after a host; the example is a list of one string.
//! * AUTHENTICATION: no HEADER; the BODY has no `text` (Meta's fixed text) and only
//!   `add_security_recommendation`; a FOOTER carries only `code_expiration_minutes` (1–90);
//!   exactly one OTP button. ONE_TAP and ZERO_TAP need the Android app (`supported_apps` or
//!   `package_name` + `signature_hash`); ZERO_TAP needs `zero_tap_terms_accepted: true`.
//! * Lengths are counted in Unicode characters. Components and buttons Parley does not create
//!   (CAROUSEL, LIMITED_TIME_OFFER, FLOW, MPM, CATALOG…) are refused rather than guessed at.
//! * Not checked: duplicate button labels, emoji/formatting in headers, Meta's content policy.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{E164, LanguageCode, ParameterFormat, TemplateCategory, TemplateName};

pub const TEMPLATE_NAME_MAX_CHARS: usize = 512;
pub const HEADER_TEXT_MAX_CHARS: usize = 60;
pub const BODY_TEXT_MAX_CHARS: usize = 1024;
pub const FOOTER_TEXT_MAX_CHARS: usize = 60;
pub const BUTTON_TEXT_MAX_CHARS: usize = 25;
pub const BUTTON_URL_MAX_CHARS: usize = 2000;
pub const MAX_BUTTONS: usize = 10;
pub const COPY_CODE_MAX_CHARS: usize = 15;
pub const PARAMETER_TEXT_MAX_CHARS: usize = 1024;

/// What a user submits to create (or edit) a template, in Meta's create shape.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct TemplateDraft {
    pub name: String,
    pub language: String,
    pub category: String,
    #[serde(default)]
    pub parameter_format: Option<String>,
    /// Meta's create components: HEADER{format,text?,example?},
    /// BODY{text,example?,add_security_recommendation?}, FOOTER{text?,code_expiration_minutes?},
    /// BUTTONS{buttons:[{type: QUICK_REPLY|URL|PHONE_NUMBER|COPY_CODE|OTP, …}]}.
    pub components: Vec<Value>,
}

/// One problem with a draft, tied to the field to fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DraftIssue {
    /// JSON-path-like: `name`, `components[1].text`, `components[3].buttons[0].url`.
    pub field: String,
    /// Stable snake_case code for APIs.
    pub code: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl TemplateDraft {
    /// Every problem at once (not just the first): top-level fields, then each component in
    /// order, then what the template as a whole lacks. Empty means Meta should accept it.
    pub fn check(&self) -> Vec<DraftIssue> {
        let mut checker = Checker::new(self);
        checker.top_level();
        checker.components();
        checker.issues
    }

    /// The JSON body for `POST /{waba-id}/message_templates`: category upper case, language
    /// with `_`, parameter_format lower case (`positional` when unset), component, header
    /// format, button and OTP types upper case; everything else as written. Only meaningful
    /// once [`TemplateDraft::check`] is empty.
    pub fn to_meta_json(&self) -> Value {
        let language = LanguageCode::parse(&self.language)
            .map(|l| l.to_string())
            .unwrap_or_else(|_| self.language.clone());
        let category = TemplateCategory::parse(&self.category)
            .map(|c| c.as_str().to_owned())
            .unwrap_or_else(|_| self.category.to_ascii_uppercase());
        let parameter_format = match self.parameter_format.as_deref() {
            None => "positional".to_owned(),
            Some(f) => match ParameterFormat::parse(f) {
                Ok(ParameterFormat::Named) => "named".to_owned(),
                Ok(ParameterFormat::Positional) => "positional".to_owned(),
                Err(_) => f.to_ascii_lowercase(),
            },
        };
        let components: Vec<Value> = self.components.iter().map(normalize_component).collect();
        serde_json::json!({
            "name": self.name,
            "language": language,
            "category": category,
            "parameter_format": parameter_format,
            "components": components,
        })
    }
}

/// Meta's rule for a text parameter at send time (error 132018 otherwise): not empty, no
/// newline or tab, at most 4 consecutive spaces, at most 1024 characters. The error says
/// what to change.
pub fn check_parameter_text(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the value is empty: WhatsApp needs visible text for every variable".into());
    }
    if text.contains(['\n', '\r']) {
        return Err("the value contains a line break: put it on one line".into());
    }
    if text.contains('\t') {
        return Err("the value contains a tab: use a space instead".into());
    }
    if text.contains("     ") {
        return Err("the value has more than 4 spaces in a row: use at most 4".into());
    }
    let chars = text.chars().count();
    if chars > PARAMETER_TEXT_MAX_CHARS {
        return Err(format!(
            "the value has {chars} characters: use at most {PARAMETER_TEXT_MAX_CHARS}"
        ));
    }
    Ok(())
}

/// A template name Meta accepts, made from what the user typed: "Order Update!" →
/// `order_update`, "Café-Menü 2" → `cafe_menu_2`. Never empty.
pub fn suggest_template_name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let folded = fold_latin(c);
        if !folded.is_empty() {
            out.push_str(folded);
        } else if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed: String = out
        .trim_matches('_')
        .chars()
        .take(TEMPLATE_NAME_MAX_CHARS)
        .collect();
    let trimmed = trimmed.trim_end_matches('_');
    if trimmed.is_empty() {
        "template".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Lower-case ASCII for the accented Latin letters people put in names; "" for anything else.
fn fold_latin(c: char) -> &'static str {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => "a",
        'æ' | 'Æ' => "ae",
        'ç' | 'Ç' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
        'ñ' | 'Ñ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' => "o",
        'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
        'ý' | 'ÿ' | 'Ý' => "y",
        'ß' => "ss",
        _ => "",
    }
}

fn normalize_component(c: &Value) -> Value {
    let mut c = c.clone();
    let Some(obj) = c.as_object_mut() else {
        return c;
    };
    upper_field(obj, "type");
    upper_field(obj, "format");
    if let Some(Value::Array(buttons)) = obj.get_mut("buttons") {
        for b in buttons.iter_mut().filter_map(Value::as_object_mut) {
            upper_field(b, "type");
            upper_field(b, "otp_type");
        }
    }
    c
}

fn upper_field(obj: &mut Map<String, Value>, key: &str) {
    if let Some(Value::String(s)) = obj.get_mut(key) {
        *s = s.to_ascii_uppercase();
    }
}

/// A `{{…}}` variable and where it sits (byte offsets of the braces).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    var: Var,
    start: usize,
    end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    Positional(u32),
    Named(String),
}

impl Var {
    fn shown(&self) -> String {
        match self {
            Var::Positional(n) => format!("{{{{{n}}}}}"),
            Var::Named(n) => format!("{{{{{n}}}}}"),
        }
    }
}

/// Finds the variables in `text`; malformed ones become messages saying how to write them.
fn scan(text: &str) -> (Vec<Found>, Vec<String>) {
    let mut found = Vec::new();
    let mut bad = Vec::new();
    let mut pos = 0;
    while let Some(rel) = text[pos..].find("{{") {
        let start = pos + rel;
        let inner_start = start + 2;
        let Some(len) = text[inner_start..].find("}}") else {
            bad.push(
                "`{{` is not closed with `}}`: write variables as {{1}} or {{first_name}}".into(),
            );
            break;
        };
        let inner = &text[inner_start..inner_start + len];
        let end = inner_start + len + 2;
        match parse_var(inner) {
            Ok(var) => found.push(Found { var, start, end }),
            Err(message) => bad.push(message),
        }
        pos = end;
    }
    (found, bad)
}

fn parse_var(inner: &str) -> Result<Var, String> {
    let shown = crate::excerpt(inner);
    if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
        return match inner.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Var::Positional(n)),
            _ => Err(format!(
                "`{{{{{shown}}}}}` is not a valid variable: positional variables are numbered from {{{{1}}}}"
            )),
        };
    }
    if is_variable_name(inner) {
        return Ok(Var::Named(inner.to_owned()));
    }
    let trimmed = inner.trim();
    if trimmed != inner && (is_variable_name(trimmed) || trimmed.parse::<u32>().is_ok()) {
        return Err(format!(
            "`{{{{{shown}}}}}` has spaces inside the braces: write `{{{{{trimmed}}}}}`"
        ));
    }
    Err(format!(
        "`{{{{{shown}}}}}` is not a valid variable: use {{{{1}}}}, {{{{2}}}}… or a name of lowercase letters, digits and underscores starting with a letter, like {{{{first_name}}}}"
    ))
}

/// Named variables: lowercase letters, digits and underscores, starting with a letter.
fn is_variable_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Words besides the variables: whitespace-separated pieces holding a letter or digit.
fn words_outside_variables(text: &str, vars: &[Found]) -> usize {
    let mut count = 0;
    let mut pos = 0;
    let mut count_in = |piece: &str| {
        count += piece
            .split_whitespace()
            .filter(|w| w.chars().any(char::is_alphanumeric))
            .count();
    };
    for v in vars {
        count_in(&text[pos..v.start]);
        pos = v.end;
    }
    count_in(&text[pos..]);
    count
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn format_name(f: ParameterFormat) -> &'static str {
    match f {
        ParameterFormat::Positional => "positional",
        ParameterFormat::Named => "named",
    }
}

/// Components in Meta's order; the rank is the position they must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Header,
    Body,
    Footer,
    Buttons,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Header => "HEADER",
            Kind::Body => "BODY",
            Kind::Footer => "FOOTER",
            Kind::Buttons => "BUTTONS",
        }
    }
}

struct Checker<'a> {
    draft: &'a TemplateDraft,
    /// `None` when the category is invalid: category-specific rules are then skipped.
    category: Option<TemplateCategory>,
    /// `None` when parameter_format is invalid: agreement checks are then skipped.
    format: Option<ParameterFormat>,
    format_declared: bool,
    issues: Vec<DraftIssue>,
}

impl<'a> Checker<'a> {
    fn new(draft: &'a TemplateDraft) -> Checker<'a> {
        Checker {
            draft,
            category: TemplateCategory::parse(&draft.category).ok(),
            format: match draft.parameter_format.as_deref() {
                None => Some(ParameterFormat::Positional),
                Some(f) => ParameterFormat::parse(f).ok(),
            },
            format_declared: draft.parameter_format.is_some(),
            issues: Vec::new(),
        }
    }

    fn push(&mut self, field: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.issues.push(DraftIssue {
            field: field.into(),
            code,
            message: message.into(),
        });
    }

    fn is_auth(&self) -> bool {
        self.category == Some(TemplateCategory::Authentication)
    }

    fn top_level(&mut self) {
        let d = self.draft;
        if TemplateName::parse(&d.name).is_err() {
            let suggestion = suggest_template_name(&d.name);
            let message = if d.name.is_empty() {
                "the name is empty: use 1 to 512 lowercase letters, digits and underscores, e.g. order_update".to_owned()
            } else {
                format!(
                    "`{}` is not a template name: use 1 to 512 lowercase letters, digits and underscores, e.g. `{suggestion}`",
                    crate::excerpt(&d.name)
                )
            };
            self.push("name", "name_invalid", message);
        }
        if LanguageCode::parse(&d.language).is_err() {
            self.push(
                "language",
                "language_invalid",
                format!(
                    "`{}` is not a template language: use a code like en, en_US, pt_BR (language in lowercase, optional _ and region in uppercase)",
                    crate::excerpt(&d.language)
                ),
            );
        }
        if self.category.is_none() {
            self.push(
                "category",
                "category_invalid",
                format!(
                    "`{}` is not a template category: use MARKETING, UTILITY or AUTHENTICATION",
                    crate::excerpt(&d.category)
                ),
            );
        }
        if self.format.is_none() {
            self.push(
                "parameter_format",
                "parameter_format_invalid",
                format!(
                    "`{}` is not a parameter format: use named ({{{{first_name}}}}) or positional ({{{{1}}}}), or leave it out for positional",
                    crate::excerpt(d.parameter_format.as_deref().unwrap_or_default())
                ),
            );
        }
    }

    fn components(&mut self) {
        let mut seen: Vec<(Kind, usize)> = Vec::new();
        let mut latest = None::<Kind>;
        let mut has_otp_buttons = false;
        for (i, c) in self.draft.components.iter().enumerate() {
            let Some(obj) = c.as_object() else {
                self.push(
                    format!("components[{i}]"),
                    "component_invalid",
                    "a component must be an object like {\"type\": \"BODY\", \"text\": \"…\"}",
                );
                continue;
            };
            let kind = match obj.get("type").and_then(Value::as_str) {
                None => {
                    self.push(
                        format!("components[{i}].type"),
                        "component_type_missing",
                        "the component has no `type`: use HEADER, BODY, FOOTER or BUTTONS",
                    );
                    continue;
                }
                Some(t) => match t.to_ascii_uppercase().as_str() {
                    "HEADER" => Kind::Header,
                    "BODY" => Kind::Body,
                    "FOOTER" => Kind::Footer,
                    "BUTTONS" => Kind::Buttons,
                    _ => {
                        self.push(
                            format!("components[{i}].type"),
                            "component_type_unsupported",
                            format!(
                                "`{}` components are not supported here: use HEADER, BODY, FOOTER or BUTTONS (create other kinds in WhatsApp Manager)",
                                crate::excerpt(t)
                            ),
                        );
                        continue;
                    }
                },
            };
            if let Some(&(_, first)) = seen.iter().find(|(k, _)| *k == kind) {
                let how = if kind == Kind::Body {
                    "a template has exactly one BODY"
                } else {
                    "a template has at most one of each"
                };
                self.push(
                    format!("components[{i}].type"),
                    "component_duplicate",
                    format!(
                        "a second {} (the first is components[{first}]): {how}; merge them or remove one",
                        kind.as_str()
                    ),
                );
            } else {
                seen.push((kind, i));
            }
            if let Some(prev) = latest.filter(|p| *p > kind) {
                self.push(
                    format!("components[{i}].type"),
                    "component_order",
                    format!(
                        "{} comes after {}: put the components in the order HEADER, BODY, FOOTER, BUTTONS",
                        kind.as_str(),
                        prev.as_str()
                    ),
                );
            }
            latest = latest.max(Some(kind));
            match kind {
                Kind::Header => self.header(i, obj),
                Kind::Body => self.body(i, obj),
                Kind::Footer => self.footer(i, obj),
                Kind::Buttons => has_otp_buttons |= self.buttons(i, obj),
            }
        }
        if !seen.iter().any(|(k, _)| *k == Kind::Body) {
            let example = if self.is_auth() {
                "{\"type\": \"BODY\", \"add_security_recommendation\": true}"
            } else {
                "{\"type\": \"BODY\", \"text\": \"Hi {{1}}, your order has shipped.\"}"
            };
            self.push(
                "components",
                "body_missing",
                format!("the template has no BODY: add one, e.g. {example}"),
            );
        }
        if self.is_auth() && !has_otp_buttons {
            self.push(
                "components",
                "auth_otp_button_missing",
                "an AUTHENTICATION template needs a BUTTONS component with one OTP button, e.g. {\"type\": \"BUTTONS\", \"buttons\": [{\"type\": \"OTP\", \"otp_type\": \"COPY_CODE\"}]}",
            );
        }
    }

    /// Reports mixed or disagreeing formats; returns the variables' own format when
    /// consistent and non-empty.
    fn variable_format(&mut self, field: &str, vars: &[Found]) -> Option<ParameterFormat> {
        let named = vars.iter().find(|v| matches!(v.var, Var::Named(_)));
        let positional = vars.iter().find(|v| matches!(v.var, Var::Positional(_)));
        let own = match (named, positional) {
            (None, None) => return None,
            (Some(n), Some(p)) => {
                self.push(
                    field,
                    "variables_mixed",
                    format!(
                        "mixes named ({}) and positional ({}) variables: use one kind throughout the template",
                        n.var.shown(),
                        p.var.shown()
                    ),
                );
                return None;
            }
            (Some(_), None) => ParameterFormat::Named,
            (None, Some(_)) => ParameterFormat::Positional,
        };
        if let Some(declared) = self.format.filter(|f| *f != own) {
            let shown = vars[0].var.shown();
            let message = if self.format_declared {
                format!(
                    "uses {} variables like {shown} but parameter_format is {}: set parameter_format to \"{}\" or rewrite the variables",
                    format_name(own),
                    format_name(declared),
                    format_name(own)
                )
            } else {
                format!(
                    "uses {} variables like {shown} but parameter_format is not set, so Meta reads them as positional: set parameter_format to \"named\"",
                    format_name(own)
                )
            };
            self.push(field, "parameter_format_mismatch", message);
        }
        Some(own)
    }

    /// Duplicates and numbering of one text's variables (each component numbers its own).
    fn variable_sequence(&mut self, field: &str, vars: &[Found]) {
        let mut distinct: Vec<&Var> = Vec::new();
        let mut reported: Vec<&Var> = Vec::new();
        for v in vars {
            if !distinct.contains(&&v.var) {
                distinct.push(&v.var);
            } else if !reported.contains(&&v.var) {
                reported.push(&v.var);
                self.push(
                    field,
                    "variable_duplicate",
                    format!(
                        "{} appears more than once: use each variable once (add another variable for a repeated value)",
                        v.var.shown()
                    ),
                );
            }
        }
        let numbers: Vec<u32> = distinct
            .iter()
            .filter_map(|v| match v {
                Var::Positional(n) => Some(*n),
                Var::Named(_) => None,
            })
            .collect();
        if numbers.is_empty() {
            return;
        }
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        let missing: Vec<String> = (1..=sorted.len())
            .filter_map(|n| u32::try_from(n).ok())
            .filter(|n| !sorted.contains(n))
            .map(|n| format!("{{{{{n}}}}}"))
            .collect();
        if !missing.is_empty() {
            self.push(
                field,
                "variables_not_sequential",
                format!(
                    "positional variables must be numbered {{{{1}}}} to {{{{{}}}}} without gaps, but {} is missing: renumber them",
                    sorted.len(),
                    missing.join(", ")
                ),
            );
        } else if numbers != sorted {
            let order: Vec<String> = numbers.iter().map(|n| format!("{{{{{n}}}}}")).collect();
            self.push(
                field,
                "variables_out_of_order",
                format!(
                    "variables appear as {}: number them in reading order, {{{{1}}}} first",
                    order.join(", ")
                ),
            );
        }
    }

    fn header(&mut self, i: usize, c: &Map<String, Value>) {
        let at = |f: &str| format!("components[{i}].{f}");
        if self.is_auth() {
            self.push(
                at("type"),
                "auth_header_not_allowed",
                "AUTHENTICATION templates have no HEADER: remove it",
            );
            return;
        }
        let format = match c.get("format").and_then(Value::as_str) {
            None => {
                self.push(
                    at("format"),
                    "header_format_invalid",
                    "the HEADER has no `format`: use TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION",
                );
                return;
            }
            Some(f) => f.to_ascii_uppercase(),
        };
        let example = c.get("example");
        match format.as_str() {
            "TEXT" => self.text_header(i, c),
            "IMAGE" | "VIDEO" | "DOCUMENT" => {
                if c.contains_key("text") {
                    self.push(
                        at("text"),
                        "header_text_unexpected",
                        format!(
                            "a {format} header has no text: remove `text` (put words in the BODY)"
                        ),
                    );
                }
                let handle_ok = example
                    .and_then(|e| e.get("header_handle"))
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(Value::as_str)
                    .is_some_and(|h| !h.trim().is_empty());
                if !handle_ok {
                    self.push(
                        at("example.header_handle"),
                        "header_handle_missing",
                        format!(
                            "a {format} header needs a sample file Meta reviews: upload one with the Resumable Upload API and set \"example\": {{\"header_handle\": [\"<handle>\"]}}"
                        ),
                    );
                }
            }
            "LOCATION" => {
                if c.contains_key("text") {
                    self.push(
                        at("text"),
                        "header_text_unexpected",
                        "a LOCATION header has no text: remove `text` (the location is sent with each message)",
                    );
                }
                if example.is_some() {
                    self.push(
                        at("example"),
                        "header_example_unexpected",
                        "a LOCATION header has no example: remove `example`",
                    );
                }
            }
            other => self.push(
                at("format"),
                "header_format_invalid",
                format!(
                    "`{}` is not a header format: use TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION",
                    crate::excerpt(other)
                ),
            ),
        }
    }

    fn text_header(&mut self, i: usize, c: &Map<String, Value>) {
        let at = |f: &str| format!("components[{i}].{f}");
        let Some(text) = c
            .get("text")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
        else {
            self.push(
                at("text"),
                "header_text_missing",
                "a TEXT header needs `text`: write up to 60 characters, or remove the HEADER",
            );
            return;
        };
        let field = at("text");
        let n = chars(text);
        if n > HEADER_TEXT_MAX_CHARS {
            self.push(
                &field,
                "header_text_too_long",
                format!(
                    "the header has {n} characters; Meta allows at most {HEADER_TEXT_MAX_CHARS}: shorten it by {}",
                    n - HEADER_TEXT_MAX_CHARS
                ),
            );
        }
        let (vars, bad) = scan(text);
        for message in bad {
            self.push(&field, "variable_invalid", message);
        }
        if vars.len() > 1 {
            self.push(
                &field,
                "header_too_many_variables",
                format!(
                    "the header has {} variables; Meta allows at most 1: keep one and move the rest to the BODY",
                    vars.len()
                ),
            );
        }
        let own = self.variable_format(&field, &vars);
        if let Some(Var::Positional(n)) = vars.first().map(|v| &v.var).filter(|_| vars.len() == 1)
            && *n != 1
        {
            self.push(
                &field,
                "variables_not_sequential",
                format!(
                    "the header's variable is {{{{{n}}}}}: a header numbers its own variable, write {{{{1}}}}"
                ),
            );
        }
        let example = c.get("example");
        let keys = ["header_text", "header_text_named_params"];
        match (own, vars.first()) {
            (Some(ParameterFormat::Positional), Some(_)) => {
                let ok = match example.and_then(|e| e.get("header_text")) {
                    None => {
                        self.push(
                            at("example.header_text"),
                            "header_example_missing",
                            "the header has a variable: add a sample value, e.g. \"example\": {\"header_text\": [\"Summer Sale\"]}",
                        );
                        None
                    }
                    Some(Value::Array(a)) if a.len() == 1 => a[0].as_str(),
                    Some(_) => None,
                };
                match ok {
                    Some(value) => self.example_value(at("example.header_text[0]"), value),
                    None if example.and_then(|e| e.get("header_text")).is_some() => self.push(
                        at("example.header_text"),
                        "header_example_invalid",
                        "header_text must be a list of exactly one string, e.g. [\"Summer Sale\"]",
                    ),
                    None => {}
                }
            }
            (Some(ParameterFormat::Named), Some(found)) => {
                let Var::Named(name) = &found.var else {
                    return;
                };
                match example.and_then(|e| e.get("header_text_named_params")) {
                    None => self.push(
                        at("example.header_text_named_params"),
                        "header_example_missing",
                        format!(
                            "the header has a variable: add a sample value, e.g. \"example\": {{\"header_text_named_params\": [{{\"param_name\": \"{name}\", \"example\": \"…\"}}]}}"
                        ),
                    ),
                    Some(v) => {
                        let entry = v.as_array().filter(|a| a.len() == 1).and_then(|a| {
                            let p = a[0].get("param_name")?.as_str()?;
                            let e = a[0].get("example")?.as_str()?;
                            Some((p, e))
                        });
                        match entry {
                            Some((p, e)) if p == name => self.example_value(
                                at("example.header_text_named_params[0].example"),
                                e,
                            ),
                            _ => self.push(
                                at("example.header_text_named_params"),
                                "header_example_invalid",
                                format!(
                                    "header_text_named_params must hold exactly one entry for the header's variable: [{{\"param_name\": \"{name}\", \"example\": \"…\"}}]"
                                ),
                            ),
                        }
                    }
                }
            }
            _ => {
                if vars.is_empty()
                    && let Some(e) = example
                {
                    let unexpected = e
                        .as_object()
                        .is_none_or(|o| o.keys().any(|k| keys.contains(&k.as_str())));
                    if unexpected {
                        self.push(
                            at("example"),
                            "header_example_unexpected",
                            "the header has no variable, so it takes no example: remove `example` or add a variable {{1}}",
                        );
                    }
                }
            }
        }
    }

    fn example_value(&mut self, field: String, value: &str) {
        if let Err(problem) = check_parameter_text(value) {
            self.push(
                field,
                "example_value_invalid",
                format!("{problem} (sample values follow the rules for values sent later)"),
            );
        }
    }

    fn body(&mut self, i: usize, c: &Map<String, Value>) {
        let at = |f: &str| format!("components[{i}].{f}");
        if self.is_auth() {
            if c.contains_key("text") {
                self.push(
                    at("text"),
                    "auth_body_text_not_allowed",
                    "AUTHENTICATION templates use Meta's fixed text (\"<code> is your verification code.\"): remove `text`; only `add_security_recommendation` may be set",
                );
            }
            if c.contains_key("example") {
                self.push(
                    at("example"),
                    "auth_body_text_not_allowed",
                    "AUTHENTICATION templates use Meta's fixed text, so the BODY takes no example: remove `example`",
                );
            }
            if c.get("add_security_recommendation")
                .is_some_and(|v| !v.is_boolean())
            {
                self.push(
                    at("add_security_recommendation"),
                    "auth_security_recommendation_invalid",
                    "add_security_recommendation must be true or false",
                );
            }
            return;
        }
        if c.contains_key("add_security_recommendation") {
            self.push(
                at("add_security_recommendation"),
                "auth_only_field",
                "add_security_recommendation is only for AUTHENTICATION templates: remove it",
            );
        }
        let Some(text) = c
            .get("text")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
        else {
            self.push(
                at("text"),
                "body_text_missing",
                "the BODY needs `text`: write the message, e.g. \"Hi {{1}}, your order has shipped.\"",
            );
            return;
        };
        let field = at("text");
        let n = chars(text);
        if n > BODY_TEXT_MAX_CHARS {
            self.push(
                &field,
                "body_text_too_long",
                format!(
                    "the body has {n} characters; Meta allows at most {BODY_TEXT_MAX_CHARS}: shorten it by {}",
                    n - BODY_TEXT_MAX_CHARS
                ),
            );
        }
        let (vars, bad) = scan(text);
        for message in bad {
            self.push(&field, "variable_invalid", message);
        }
        let own = self.variable_format(&field, &vars);
        self.variable_sequence(&field, &vars);
        if let (Some(first), Some(last)) = (vars.first(), vars.last()) {
            if text[..first.start].trim().is_empty() {
                self.push(
                    &field,
                    "variable_at_start",
                    format!(
                        "the body starts with the variable {}: Meta refuses that; begin with some words, e.g. \"Hi {}\"",
                        first.var.shown(),
                        first.var.shown()
                    ),
                );
            }
            if text[last.end..].trim().is_empty() {
                self.push(
                    &field,
                    "variable_at_end",
                    format!(
                        "the body ends with the variable {}: Meta refuses that; add some words after it",
                        last.var.shown()
                    ),
                );
            }
        }
        for pair in vars.windows(2) {
            if text[pair[0].end..pair[1].start].trim().is_empty() {
                self.push(
                    &field,
                    "variables_adjacent",
                    format!(
                        "{} and {} are next to each other: Meta refuses adjacent variables; put words between them or merge them into one",
                        pair[0].var.shown(),
                        pair[1].var.shown()
                    ),
                );
            }
        }
        let mut distinct: Vec<&Var> = Vec::new();
        for v in &vars {
            if !distinct.contains(&&v.var) {
                distinct.push(&v.var);
            }
        }
        if !vars.is_empty() {
            let words = words_outside_variables(text, &vars);
            let needed = 2 * vars.len() + 1;
            if words < needed {
                self.push(
                    &field,
                    "too_many_variables",
                    format!(
                        "{} variables in {words} words: Meta refuses templates with too many variables for their length; use at least {needed} words besides the variables, or fewer variables",
                        vars.len()
                    ),
                );
            }
        }
        self.body_example(i, c, own, &distinct);
    }

    fn body_example(
        &mut self,
        i: usize,
        c: &Map<String, Value>,
        own: Option<ParameterFormat>,
        distinct: &[&Var],
    ) {
        let at = |f: &str| format!("components[{i}].{f}");
        let example = c.get("example");
        let positional = example.and_then(|e| e.get("body_text"));
        let named = example.and_then(|e| e.get("body_text_named_params"));
        if distinct.is_empty() {
            if positional.is_some() || named.is_some() {
                self.push(
                    at("example"),
                    "body_example_unexpected",
                    "the body has no variables, so it takes no example: remove `example` or add variables",
                );
            }
            return;
        }
        let n = distinct.len();
        match own {
            Some(ParameterFormat::Positional) => {
                let Some(v) = positional else {
                    let samples: Vec<String> = (1..=n).map(|k| format!("\"sample {k}\"")).collect();
                    self.push(
                        at("example.body_text"),
                        "body_example_missing",
                        format!(
                            "the body has {n} variable(s): add one sample value each, in order, e.g. \"example\": {{\"body_text\": [[{}]]}}",
                            samples.join(", ")
                        ),
                    );
                    return;
                };
                let values = v
                    .as_array()
                    .filter(|outer| outer.len() == 1)
                    .and_then(|outer| outer[0].as_array())
                    .and_then(|inner| inner.iter().map(Value::as_str).collect::<Option<Vec<_>>>());
                let Some(values) = values else {
                    self.push(
                        at("example.body_text"),
                        "body_example_invalid",
                        "body_text must be a list holding one list of strings, e.g. [[\"Pablo\", \"860198-230332\"]]",
                    );
                    return;
                };
                if values.len() != n {
                    self.push(
                        at("example.body_text[0]"),
                        "body_example_count",
                        format!(
                            "{} sample value(s) for {n} variable(s): give exactly one per variable, in order {{{{1}}}} to {{{{{n}}}}}",
                            values.len()
                        ),
                    );
                }
                for (k, value) in values.iter().enumerate() {
                    self.example_value(at(&format!("example.body_text[0][{k}]")), value);
                }
            }
            Some(ParameterFormat::Named) => {
                let names: Vec<&str> = distinct
                    .iter()
                    .filter_map(|v| match v {
                        Var::Named(n) => Some(n.as_str()),
                        Var::Positional(_) => None,
                    })
                    .collect();
                let template = |names: &[&str]| {
                    names
                        .iter()
                        .map(|n| format!("{{\"param_name\": \"{n}\", \"example\": \"…\"}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let Some(v) = named else {
                    self.push(
                        at("example.body_text_named_params"),
                        "body_example_missing",
                        format!(
                            "the body has named variables: add a sample value for each, e.g. \"example\": {{\"body_text_named_params\": [{}]}}",
                            template(&names)
                        ),
                    );
                    return;
                };
                let Some(items) = v.as_array() else {
                    self.push(
                        at("example.body_text_named_params"),
                        "body_example_invalid",
                        format!(
                            "body_text_named_params must be a list like [{}]",
                            template(&names)
                        ),
                    );
                    return;
                };
                let mut covered: Vec<&str> = Vec::new();
                for (k, item) in items.iter().enumerate() {
                    let field = at(&format!("example.body_text_named_params[{k}]"));
                    let param = item.get("param_name").and_then(Value::as_str);
                    let value = item.get("example").and_then(Value::as_str);
                    let (Some(param), Some(value)) = (param, value) else {
                        self.push(
                            field,
                            "body_example_invalid",
                            "each entry needs `param_name` and `example` strings, e.g. {\"param_name\": \"first_name\", \"example\": \"Pablo\"}",
                        );
                        continue;
                    };
                    if !names.contains(&param) {
                        self.push(
                            format!("{field}.param_name"),
                            "body_example_unknown_param",
                            format!(
                                "`{}` is not a variable of the body: remove this entry or use one of {}",
                                crate::excerpt(param),
                                names.join(", ")
                            ),
                        );
                        continue;
                    }
                    if covered.contains(&param) {
                        self.push(
                            format!("{field}.param_name"),
                            "body_example_invalid",
                            format!("`{param}` has two sample values: keep one"),
                        );
                        continue;
                    }
                    covered.push(param);
                    self.example_value(format!("{field}.example"), value);
                }
                let missing: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| !covered.contains(n))
                    .collect();
                if !missing.is_empty() {
                    self.push(
                        at("example.body_text_named_params"),
                        "body_example_missing",
                        format!(
                            "no sample value for {}: add {}",
                            missing.join(", "),
                            template(&missing)
                        ),
                    );
                }
            }
            None => {}
        }
    }

    fn footer(&mut self, i: usize, c: &Map<String, Value>) {
        let at = |f: &str| format!("components[{i}].{f}");
        if self.is_auth() {
            if c.contains_key("text") {
                self.push(
                    at("text"),
                    "auth_footer_text_not_allowed",
                    "an AUTHENTICATION footer has no text: remove `text` and set only code_expiration_minutes (1 to 90)",
                );
            }
            let minutes = c.get("code_expiration_minutes").and_then(Value::as_u64);
            if !minutes.is_some_and(|m| (1..=90).contains(&m)) {
                self.push(
                    at("code_expiration_minutes"),
                    "footer_code_expiration_invalid",
                    "code_expiration_minutes must be a whole number from 1 to 90 (Meta shows \"This code expires in N minutes.\"); remove the FOOTER to show no expiry",
                );
            }
            return;
        }
        if c.contains_key("code_expiration_minutes") {
            self.push(
                at("code_expiration_minutes"),
                "auth_only_field",
                "code_expiration_minutes is only for AUTHENTICATION templates: remove it",
            );
        }
        let Some(text) = c
            .get("text")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
        else {
            self.push(
                at("text"),
                "footer_text_missing",
                "the FOOTER needs `text`: write up to 60 characters, or remove the FOOTER",
            );
            return;
        };
        let n = chars(text);
        if n > FOOTER_TEXT_MAX_CHARS {
            self.push(
                at("text"),
                "footer_text_too_long",
                format!(
                    "the footer has {n} characters; Meta allows at most {FOOTER_TEXT_MAX_CHARS}: shorten it by {}",
                    n - FOOTER_TEXT_MAX_CHARS
                ),
            );
        }
        if text.contains("{{") {
            self.push(
                at("text"),
                "footer_variable",
                "a footer cannot have variables: remove the {{…}} or move it to the BODY",
            );
        }
    }

    /// Checks a BUTTONS component; returns whether it holds an OTP button.
    fn buttons(&mut self, i: usize, c: &Map<String, Value>) -> bool {
        let at = |f: &str| format!("components[{i}].{f}");
        let Some(buttons) = c
            .get("buttons")
            .and_then(Value::as_array)
            .filter(|b| !b.is_empty())
        else {
            self.push(
                at("buttons"),
                "buttons_missing",
                "the BUTTONS component needs a non-empty `buttons` list: add buttons or remove the component",
            );
            return false;
        };
        if buttons.len() > MAX_BUTTONS {
            self.push(
                at("buttons"),
                "buttons_too_many",
                format!(
                    "{} buttons; Meta allows at most {MAX_BUTTONS}: remove {}",
                    buttons.len(),
                    buttons.len() - MAX_BUTTONS
                ),
            );
        }
        let mut counts = [0usize; 4]; // URL, PHONE_NUMBER, COPY_CODE, OTP
        let mut groups = 0;
        let mut previous_quick = None::<bool>;
        let mut has_otp = false;
        for (j, b) in buttons.iter().enumerate() {
            let base = format!("components[{i}].buttons[{j}]");
            let Some(obj) = b.as_object() else {
                self.push(
                    base,
                    "button_invalid",
                    "a button must be an object like {\"type\": \"QUICK_REPLY\", \"text\": \"Stop\"}",
                );
                continue;
            };
            let Some(kind) = obj.get("type").and_then(Value::as_str) else {
                self.push(
                    format!("{base}.type"),
                    "button_type_missing",
                    "the button has no `type`: use QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE or OTP",
                );
                continue;
            };
            let kind = kind.to_ascii_uppercase();
            let quick = kind == "QUICK_REPLY";
            if previous_quick != Some(quick) {
                groups += 1;
                if groups == 3 {
                    self.push(
                        format!("{base}.type"),
                        "quick_replies_not_grouped",
                        "quick replies and other buttons are interleaved: put all QUICK_REPLY buttons together, before or after the others",
                    );
                }
            }
            previous_quick = Some(quick);
            let limit = |slot: usize, max: usize, counts: &mut [usize; 4]| {
                counts[slot] += 1;
                counts[slot] > max
            };
            if self.is_auth() && kind != "OTP" {
                self.push(
                    format!("{base}.type"),
                    "auth_button_not_allowed",
                    format!(
                        "AUTHENTICATION templates have exactly one OTP button: replace this {} button",
                        crate::excerpt(&kind)
                    ),
                );
                continue;
            }
            match kind.as_str() {
                "QUICK_REPLY" => self.button_text(&base, obj, true),
                "URL" => {
                    if limit(0, 2, &mut counts) {
                        self.push(
                            format!("{base}.type"),
                            "button_limit",
                            "more than 2 URL buttons: Meta allows at most 2",
                        );
                    }
                    self.button_text(&base, obj, true);
                    self.url_button(&base, obj);
                }
                "PHONE_NUMBER" => {
                    if limit(1, 1, &mut counts) {
                        self.push(
                            format!("{base}.type"),
                            "button_limit",
                            "more than 1 PHONE_NUMBER button: Meta allows at most 1",
                        );
                    }
                    self.button_text(&base, obj, true);
                    self.phone_button(&base, obj);
                }
                "COPY_CODE" => {
                    if limit(2, 1, &mut counts) {
                        self.push(
                            format!("{base}.type"),
                            "button_limit",
                            "more than 1 COPY_CODE button: Meta allows at most 1",
                        );
                    }
                    if self
                        .category
                        .is_some_and(|c| c != TemplateCategory::Marketing)
                    {
                        self.push(
                            format!("{base}.type"),
                            "copy_code_not_allowed",
                            "COPY_CODE (coupon code) buttons are only for MARKETING templates: change the category or remove the button",
                        );
                    }
                    self.copy_code_button(&base, obj);
                }
                "OTP" => {
                    has_otp = true;
                    if self.category.is_some() && !self.is_auth() {
                        self.push(
                            format!("{base}.type"),
                            "otp_button_not_allowed",
                            "OTP buttons are only for AUTHENTICATION templates: change the category or use a COPY_CODE button",
                        );
                        continue;
                    }
                    if limit(3, 1, &mut counts) {
                        self.push(
                            format!("{base}.type"),
                            "button_limit",
                            "more than 1 OTP button: an AUTHENTICATION template has exactly one",
                        );
                    }
                    self.otp_button(&base, obj);
                }
                "FLOW" | "MPM" | "CATALOG" | "SPM" | "VOICE_CALL" | "APP" => self.push(
                    format!("{base}.type"),
                    "button_type_unsupported",
                    format!(
                        "{kind} buttons cannot be created here: use QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE or OTP, or create the template in WhatsApp Manager"
                    ),
                ),
                _ => self.push(
                    format!("{base}.type"),
                    "button_type_invalid",
                    format!(
                        "`{}` is not a button type: use QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE or OTP",
                        crate::excerpt(&kind)
                    ),
                ),
            }
        }
        has_otp
    }

    /// The label every QUICK_REPLY, URL and PHONE_NUMBER button needs (optional for OTP).
    fn button_text(&mut self, base: &str, b: &Map<String, Value>, required: bool) {
        let field = format!("{base}.text");
        let text = b.get("text").and_then(Value::as_str);
        match text {
            Some(t) if !t.trim().is_empty() => {
                let n = chars(t);
                if n > BUTTON_TEXT_MAX_CHARS {
                    self.push(
                        &field,
                        "button_text_too_long",
                        format!(
                            "the button label has {n} characters; Meta allows at most {BUTTON_TEXT_MAX_CHARS}: shorten it by {}",
                            n - BUTTON_TEXT_MAX_CHARS
                        ),
                    );
                }
                if t.contains("{{") {
                    self.push(
                        &field,
                        "button_text_variable",
                        "a button label cannot have variables: write fixed text",
                    );
                }
            }
            None if !required && !b.contains_key("text") => {}
            _ => self.push(
                &field,
                "button_text_missing",
                "the button needs a `text` label of 1 to 25 characters",
            ),
        }
    }

    fn url_button(&mut self, base: &str, b: &Map<String, Value>) {
        let field = format!("{base}.url");
        let Some(url) = b
            .get("url")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
        else {
            self.push(
                field,
                "button_url_missing",
                "the URL button needs a `url`, e.g. https://example.com/orders/{{1}}",
            );
            return;
        };
        let n = chars(url);
        if n > BUTTON_URL_MAX_CHARS {
            self.push(
                &field,
                "button_url_too_long",
                format!(
                    "the URL has {n} characters; Meta allows at most {BUTTON_URL_MAX_CHARS}: shorten it"
                ),
            );
        }
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        let host = rest
            .map(|r| r.split(['/', '?', '#']).next().unwrap_or_default())
            .unwrap_or_default();
        if rest.is_none()
            || host.is_empty()
            || host.contains("{{")
            || url.chars().any(char::is_whitespace)
        {
            self.push(
                &field,
                "button_url_invalid",
                format!(
                    "`{}` is not a web address: write a full http:// or https:// URL with a fixed host and no spaces, e.g. https://example.com/orders/{{{{1}}}}",
                    crate::excerpt(url)
                ),
            );
        }
        let (vars, bad) = scan(url);
        if !bad.is_empty() || vars.len() > 1 {
            self.push(
                &field,
                "button_url_variable_invalid",
                "a URL may have one variable, {{1}}, at its very end: e.g. https://example.com/orders/{{1}}",
            );
            return;
        }
        let Some(var) = vars.first() else {
            return;
        };
        if var.var != Var::Positional(1) || var.end != url.len() {
            self.push(
                &field,
                "button_url_variable_invalid",
                format!(
                    "{} is not allowed here: a URL's only variable is {{{{1}}}} (in every parameter format), at the very end, e.g. https://example.com/orders/{{{{1}}}}",
                    var.var.shown()
                ),
            );
        }
        let example_ok = b
            .get("example")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 1)
            .and_then(|a| a[0].as_str())
            .is_some_and(|e| !e.trim().is_empty());
        if !example_ok {
            self.push(
                format!("{base}.example"),
                "button_url_example_missing",
                "the URL has a variable: add a sample, e.g. \"example\": [\"https://example.com/orders/12345\"]",
            );
        }
    }

    fn phone_button(&mut self, base: &str, b: &Map<String, Value>) {
        let field = format!("{base}.phone_number");
        let Some(phone) = b
            .get("phone_number")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        else {
            self.push(
                field,
                "button_phone_missing",
                "the PHONE_NUMBER button needs a `phone_number` with the country code, e.g. 15550051234",
            );
            return;
        };
        let digits = phone.strip_prefix('+').unwrap_or(phone);
        let well_formed = chars(phone) <= 20
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && E164::from_wa_id(digits).is_ok();
        if !well_formed {
            self.push(
                field,
                "button_phone_invalid",
                format!(
                    "`{}` is not an international phone number: write the country code and number as digits only (at most 20), e.g. 15550051234",
                    crate::excerpt(phone)
                ),
            );
        }
    }

    fn copy_code_button(&mut self, base: &str, b: &Map<String, Value>) {
        let field = format!("{base}.example");
        let example = match b.get("example") {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Array(a)) if a.len() == 1 => a[0].as_str(),
            _ => None,
        };
        match example.filter(|e| !e.trim().is_empty()) {
            None => self.push(
                field,
                "copy_code_example_missing",
                "the COPY_CODE button needs a sample code, e.g. \"example\": \"SAVE25\"",
            ),
            Some(e) if chars(e) > COPY_CODE_MAX_CHARS => self.push(
                field,
                "copy_code_example_too_long",
                format!(
                    "the sample code has {} characters; codes are at most {COPY_CODE_MAX_CHARS}: shorten it",
                    chars(e)
                ),
            ),
            Some(_) => {}
        }
    }

    fn otp_button(&mut self, base: &str, b: &Map<String, Value>) {
        self.button_text(base, b, false);
        if let Some(t) = b.get("autofill_text") {
            let n = t.as_str().map(chars);
            if !n.is_some_and(|n| (1..=BUTTON_TEXT_MAX_CHARS).contains(&n)) {
                self.push(
                    format!("{base}.autofill_text"),
                    "button_text_too_long",
                    "autofill_text must be a label of 1 to 25 characters",
                );
            }
        }
        let otp_type = b
            .get("otp_type")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase);
        let Some(otp_type) =
            otp_type.filter(|t| ["COPY_CODE", "ONE_TAP", "ZERO_TAP"].contains(&t.as_str()))
        else {
            self.push(
                format!("{base}.otp_type"),
                "otp_type_invalid",
                "otp_type must be COPY_CODE, ONE_TAP or ZERO_TAP",
            );
            return;
        };
        if otp_type == "COPY_CODE" {
            return;
        }
        let app_ok = |a: &Value| {
            ["package_name", "signature_hash"].iter().all(|k| {
                a.get(k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.trim().is_empty())
            })
        };
        let has_app = match b.get("supported_apps") {
            Some(Value::Array(apps)) => {
                !apps.is_empty() && apps.len() <= 5 && apps.iter().all(app_ok)
            }
            Some(_) => false,
            None => app_ok(&Value::Object(b.clone())),
        };
        if !has_app {
            self.push(
                format!("{base}.supported_apps"),
                "otp_app_missing",
                format!(
                    "a {otp_type} button needs your Android app: set \"supported_apps\": [{{\"package_name\": \"com.example.app\", \"signature_hash\": \"<11-character hash>\"}}] (1 to 5 apps)"
                ),
            );
        }
        if otp_type == "ZERO_TAP" && b.get("zero_tap_terms_accepted") != Some(&Value::Bool(true)) {
            self.push(
                format!("{base}.zero_tap_terms_accepted"),
                "otp_zero_tap_terms_missing",
                "ZERO_TAP requires accepting Meta's zero-tap terms: set \"zero_tap_terms_accepted\": true",
            );
        }
    }
}
