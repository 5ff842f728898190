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
/// The only text a `REQUEST_CONTACT_INFO` button may carry.
pub const CONTACT_INFO_TEXT: &str = "Share Contact Info";
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

/// How one required text field is checked: its codes, messages and length limit.
struct TextRule {
    missing: &'static str,
    missing_message: &'static str,
    too_long: &'static str,
    what: &'static str,
    max: usize,
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

    /// A component's required `text`: reports it missing, too long, or with malformed
    /// variables, and hands back the text, its field path and the variables found.
    fn scanned_text<'t>(
        &mut self,
        c: &'t Map<String, Value>,
        field: String,
        rule: TextRule,
    ) -> Option<(&'t str, String, Vec<Found>)> {
        let Some(text) = c
            .get("text")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
        else {
            self.push(field, rule.missing, rule.missing_message);
            return None;
        };
        let n = chars(text);
        if n > rule.max {
            self.push(
                &field,
                rule.too_long,
                format!(
                    "the {} has {n} characters; Meta allows at most {}: shorten it by {}",
                    rule.what,
                    rule.max,
                    n - rule.max
                ),
            );
        }
        let (vars, bad) = scan(text);
        for message in bad {
            self.push(&field, "variable_invalid", message);
        }
        Some((text, field, vars))
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
                    "the component is not an object: write it like {\"type\": \"BODY\", \"text\": \"…\"}",
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
                "the AUTHENTICATION template has no OTP button: add a BUTTONS component with exactly one, e.g. {\"type\": \"BUTTONS\", \"buttons\": [{\"type\": \"OTP\", \"otp_type\": \"COPY_CODE\"}]}",
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
        let Some((_, field, vars)) = self.scanned_text(
            c,
            at("text"),
            TextRule {
                missing: "header_text_missing",
                missing_message: "a TEXT header needs `text`: write up to 60 characters, or remove the HEADER",
                too_long: "header_text_too_long",
                what: "header",
                max: HEADER_TEXT_MAX_CHARS,
            },
        ) else {
            return;
        };
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
                        "header_text is not a list of exactly one string: write it like [\"Summer Sale\"]",
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
                                    "header_text_named_params does not hold exactly one entry for the header's variable: write [{{\"param_name\": \"{name}\", \"example\": \"…\"}}]"
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
                    "add_security_recommendation is not true or false: set it to true to add \"For your security, do not share this code.\"",
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
        let Some((text, field, vars)) = self.scanned_text(
            c,
            at("text"),
            TextRule {
                missing: "body_text_missing",
                missing_message: "the BODY needs `text`: write the message, e.g. \"Hi {{1}}, your order has shipped.\"",
                too_long: "body_text_too_long",
                what: "body",
                max: BODY_TEXT_MAX_CHARS,
            },
        ) else {
            return;
        };
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
                        "body_text is not a list holding one list of strings: write it like [[\"Pablo\", \"860198-230332\"]]",
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
                            "body_text_named_params is not a list: write it like [{}]",
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
                            "the entry lacks `param_name` or `example` strings: write it like {\"param_name\": \"first_name\", \"example\": \"Pablo\"}",
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
                    "code_expiration_minutes is missing or not a whole number from 1 to 90: set it (Meta shows \"This code expires in N minutes.\") or remove the FOOTER to show no expiry",
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
        let mut counts = [0usize; 5]; // URL, PHONE_NUMBER, COPY_CODE, OTP, REQUEST_CONTACT_INFO
        let mut groups = 0;
        let mut previous_quick = None::<bool>;
        let mut has_otp = false;
        for (j, b) in buttons.iter().enumerate() {
            let base = format!("components[{i}].buttons[{j}]");
            let Some(obj) = b.as_object() else {
                self.push(
                    base,
                    "button_invalid",
                    "the button is not an object: write it like {\"type\": \"QUICK_REPLY\", \"text\": \"Stop\"}",
                );
                continue;
            };
            let Some(kind) = obj.get("type").and_then(Value::as_str) else {
                self.push(
                    format!("{base}.type"),
                    "button_type_missing",
                    "the button has no `type`: use QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE, OTP or REQUEST_CONTACT_INFO",
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
            let limit = |slot: usize, max: usize, counts: &mut [usize; 5]| {
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
                "REQUEST_CONTACT_INFO" => {
                    if limit(4, 1, &mut counts) {
                        self.push(
                            format!("{base}.type"),
                            "button_limit",
                            "more than 1 REQUEST_CONTACT_INFO button: Meta allows at most 1",
                        );
                    }
                    self.contact_info_button(&base, obj);
                }
                "FLOW" | "MPM" | "CATALOG" | "SPM" | "VOICE_CALL" | "APP" => self.push(
                    format!("{base}.type"),
                    "button_type_unsupported",
                    format!(
                        "{kind} buttons cannot be created here: use QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE, OTP or REQUEST_CONTACT_INFO, or create the template in WhatsApp Manager"
                    ),
                ),
                _ => self.push(
                    format!("{base}.type"),
                    "button_type_invalid",
                    format!(
                        "`{}` is not a button type: use QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE, OTP or REQUEST_CONTACT_INFO",
                        crate::excerpt(&kind)
                    ),
                ),
            }
        }
        has_otp
    }

    /// `REQUEST_CONTACT_INFO` (META_2026 §3.4): on UTILITY and MARKETING templates (the
    /// AUTHENTICATION check above already refused it there); its optional `text` must be
    /// exactly "Share Contact Info" (WhatsApp localises the label); nothing else.
    fn contact_info_button(&mut self, base: &str, b: &Map<String, Value>) {
        match b.get("text") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == CONTACT_INFO_TEXT => {}
            Some(_) => self.push(
                format!("{base}.text"),
                "button_text_invalid",
                format!(
                    "a REQUEST_CONTACT_INFO button's text is fixed: write exactly \"{CONTACT_INFO_TEXT}\" (WhatsApp shows it in the customer's language), or leave `text` out"
                ),
            ),
        }
        if let Some(key) = b.keys().find(|k| !matches!(k.as_str(), "type" | "text")) {
            self.push(
                format!("{base}.{key}"),
                "button_field_unknown",
                format!(
                    "a REQUEST_CONTACT_INFO button takes only `type` and `text`: remove `{}`",
                    crate::excerpt(key)
                ),
            );
        }
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
                "the button has no `text` label: add one of 1 to 25 characters",
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
                "the URL button has no `url`: add a full web address, e.g. https://example.com/orders/{{1}}",
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
                "the PHONE_NUMBER button has no `phone_number`: add the number with its country code, e.g. 15550051234",
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
                "the COPY_CODE button has no sample code: add one of at most 15 characters, e.g. \"example\": \"SAVE25\"",
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
                    "autofill_text is empty, too long or not text: use a label of 1 to 25 characters",
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
                "otp_type is missing or unknown: use COPY_CODE, ONE_TAP or ZERO_TAP",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Button, HeaderFormat, Template, TemplateStatus};
    use proptest::prelude::*;
    use serde_json::json;

    fn draft(v: Value) -> TemplateDraft {
        serde_json::from_value(v).unwrap()
    }

    /// Spec example "image header, text body, text footer, and 2 call-to-action buttons".
    fn marketing_image_url() -> Value {
        json!({
            "name": "limited_time_offer_tuscan_getaway_2023", "language": "en_US", "category": "MARKETING",
            "components": [
                {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1hZ2UvanBn:ARYytyb0kLp5"]}},
                {"type": "BODY", "text": "Hi {{1}}! For a limited time only you can get our {{2}} for as low as {{3}}. Tap the Offer Details button for more information.",
                 "example": {"body_text": [["Mark", "Tuscan Getaway package", "800"]]}},
                {"type": "FOOTER", "text": "Offer valid until May 31, 2023"},
                {"type": "BUTTONS", "buttons": [
                    {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "16467043595"},
                    {"type": "URL", "text": "Shop Now", "url": "https://damp-sea-63235.herokuapp.com/shop?promo={{1}}", "example": ["summer2023"]}
                ]}
            ]
        })
    }

    /// META_API.md §2.2 named example, category in lower case as Meta's examples write it.
    fn utility_named() -> Value {
        json!({
            "name": "order_thanks", "language": "en", "category": "utility", "parameter_format": "named",
            "components": [
                {"type": "BODY", "text": "Thank you, {{first_name}}! Your order number is {{order_number}}.",
                 "example": {"body_text_named_params": [
                     {"param_name": "first_name", "example": "Pablo"},
                     {"param_name": "order_number", "example": "860198-230332"}
                 ]}}
            ]
        })
    }

    /// Spec example "text header, text body, text footer, and 2 quick reply buttons".
    fn text_header_quick_replies() -> Value {
        json!({
            "name": "seasonal_promotion_text_only", "language": "en", "category": "MARKETING",
            "parameter_format": "POSITIONAL",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Our {{1}} is on!", "example": {"header_text": ["Summer Sale"]}},
                {"type": "BODY", "text": "Shop now through {{1}} and use code {{2}} to get {{3}} off of all merchandise.",
                 "example": {"body_text": [["the end of August", "25OFF", "25%"]]}},
                {"type": "FOOTER", "text": "Use the buttons below to manage your marketing subscriptions"},
                {"type": "BUTTONS", "buttons": [
                    {"type": "QUICK_REPLY", "text": "Unsubcribe from Promos"},
                    {"type": "QUICK_REPLY", "text": "Unsubscribe from All"}
                ]}
            ]
        })
    }

    /// Spec example "authentication template w/ OTP copy code button".
    fn auth_copy_code() -> Value {
        json!({
            "name": "authentication_code_copy_code_button", "language": "en_US", "category": "AUTHENTICATION",
            "components": [
                {"type": "BODY", "add_security_recommendation": true},
                {"type": "FOOTER", "code_expiration_minutes": 10},
                {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy Code"}]}
            ]
        })
    }

    /// Spec example "authentication template w/ OTP one-tap autofill button".
    fn auth_one_tap() -> Value {
        json!({
            "name": "authentication_code_autofill_button", "language": "en_US", "category": "AUTHENTICATION",
            "components": [
                {"type": "BODY", "add_security_recommendation": true},
                {"type": "FOOTER", "code_expiration_minutes": 10},
                {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "ONE_TAP", "text": "Copy Code",
                    "autofill_text": "Autofill", "package_name": "com.example.luckyshrub", "signature_hash": "K8a%2FAINcGX7"}]}
            ]
        })
    }

    /// Spec example "document header, text body, a phone number button, and a URL button".
    fn document_header() -> Value {
        json!({
            "name": "order_confirmation", "language": "en_US", "category": "UTILITY",
            "components": [
                {"type": "HEADER", "format": "DOCUMENT", "example": {"header_handle": ["4::YXBwbGljYXRpb24vcGRm:ARZVv4zuog"]}},
                {"type": "BODY", "text": "Thank you for your order, {{1}}! Your order number is {{2}}. Tap the PDF linked above to view your receipt. If you have any questions, please use the buttons below to contact support. Thanks again!",
                 "example": {"body_text": [["Mark", "860198-230332"]]}},
                {"type": "BUTTONS", "buttons": [
                    {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "16467043595"},
                    {"type": "URL", "text": "Contact Support", "url": "https://www.examplesite.com/support"}
                ]}
            ]
        })
    }

    /// Spec example "location header, text body, text footer, and a quick reply".
    fn location_header() -> Value {
        json!({
            "name": "order_delivery_update", "language": "en_US", "category": "UTILITY",
            "components": [
                {"type": "HEADER", "format": "LOCATION"},
                {"type": "BODY", "text": "Good news {{1}}! Your order #{{2}} is on its way to the location above. Thank you for your order!",
                 "example": {"body_text": [["Mark", "566701"]]}},
                {"type": "FOOTER", "text": "To stop receiving delivery updates, tap the button below."},
                {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop Delivery Updates"}]}
            ]
        })
    }

    /// A coupon template: text header, named body, phone number and copy code buttons.
    fn phone_and_copy_code() -> Value {
        json!({
            "name": "coupon_code_fall2023_25off", "language": "en_US", "category": "MARKETING",
            "parameter_format": "named",
            "components": [
                {"type": "header", "format": "text", "text": "Hello {{first_name}}, our Fall Sale is on!",
                 "example": {"header_text_named_params": [{"param_name": "first_name", "example": "Pablo"}]}},
                {"type": "body", "text": "Shop now through November and use code {{code}} to get {{discount}} off of all merchandise!",
                 "example": {"body_text_named_params": [
                     {"param_name": "code", "example": "25OFF"},
                     {"param_name": "discount", "example": "25%"}
                 ]}},
                {"type": "buttons", "buttons": [
                    {"type": "phone_number", "text": "Call us", "phone_number": "+4915112345678"},
                    {"type": "copy_code", "example": "25OFF"}
                ]}
            ]
        })
    }

    fn valid_examples() -> Vec<(&'static str, Value)> {
        vec![
            ("marketing image + URL variable", marketing_image_url()),
            ("utility named", utility_named()),
            ("text header + quick replies", text_header_quick_replies()),
            ("authentication copy code", auth_copy_code()),
            ("authentication one tap", auth_one_tap()),
            ("document header", document_header()),
            ("location header", location_header()),
            ("phone + copy code", phone_and_copy_code()),
        ]
    }

    fn issues(v: Value) -> Vec<DraftIssue> {
        draft(v).check()
    }

    #[track_caller]
    fn assert_issue(v: Value, field: &str, code: &str) {
        let found = issues(v);
        assert!(
            found.iter().any(|i| i.field == field && i.code == code),
            "expected {code} at {field}, got {found:#?}"
        );
        for i in &found {
            assert!(i.message.contains(": "), "message says what and how: {i:?}");
        }
    }

    #[test]
    fn the_valid_examples_pass() {
        for (what, v) in valid_examples() {
            assert_eq!(issues(v), vec![], "{what}");
        }
    }

    #[test]
    fn meta_json_is_normalized_and_round_trips_through_template() {
        for (what, v) in valid_examples() {
            let d = draft(v);
            let mut meta = d.to_meta_json();
            assert_eq!(meta["name"], json!(d.name), "{what}");
            let category = meta["category"].as_str().unwrap();
            assert_eq!(category, category.to_ascii_uppercase(), "{what}");
            let format = meta["parameter_format"].as_str().unwrap();
            assert!(["named", "positional"].contains(&format), "{what}");
            for c in meta["components"].as_array().unwrap() {
                let kind = c["type"].as_str().unwrap();
                assert_eq!(kind, kind.to_ascii_uppercase(), "{what}");
            }
            // What Meta returns on GET adds the id and status.
            meta["id"] = json!("1689556908129832");
            meta["status"] = json!("PENDING");
            let t = Template::from_meta_json(&meta).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(t.name.as_str(), d.name, "{what}");
            assert_eq!(t.status, TemplateStatus::Pending);
            assert_eq!(
                t.category,
                TemplateCategory::parse(&d.category).unwrap(),
                "{what}"
            );
            let body = d
                .components
                .iter()
                .find(|c| c["type"].as_str().unwrap().eq_ignore_ascii_case("body"))
                .unwrap();
            assert_eq!(t.body, body["text"].as_str().unwrap_or_default(), "{what}");
        }

        let t = Template::from_meta_json(&{
            let mut m = draft(phone_and_copy_code()).to_meta_json();
            m["status"] = json!("APPROVED");
            m
        })
        .unwrap();
        assert_eq!(t.parameter_format, ParameterFormat::Named);
        assert_eq!(t.header.unwrap().format, HeaderFormat::Text);
        assert_eq!(
            t.buttons[1],
            Button::CopyCode {
                example: Some("25OFF".into())
            }
        );
        let t = Template::from_meta_json(&{
            let mut m = draft(auth_copy_code()).to_meta_json();
            m["status"] = json!("APPROVED");
            m
        })
        .unwrap();
        assert_eq!(
            t.buttons,
            vec![Button::Otp {
                otp_type: "COPY_CODE".into(),
                text: Some("Copy Code".into())
            }]
        );
    }

    #[test]
    fn meta_json_keeps_what_meta_expects() {
        let mut v = utility_named();
        v["language"] = json!("en-US");
        let meta = draft(v).to_meta_json();
        assert_eq!(meta["language"], "en_US");
        assert_eq!(meta["category"], "UTILITY");
        assert_eq!(meta["parameter_format"], "named");
        assert_eq!(
            meta["components"][0]["example"],
            utility_named()["components"][0]["example"]
        );
        let meta = draft(phone_and_copy_code()).to_meta_json();
        assert_eq!(meta["components"][0]["format"], "TEXT");
        assert_eq!(meta["components"][2]["buttons"][1]["type"], "COPY_CODE");
        let meta = draft(auth_copy_code()).to_meta_json();
        assert_eq!(meta["parameter_format"], "positional");
    }

    #[test]
    fn request_contact_info_buttons() {
        let with = |button: Value, category: &str| {
            let mut v = utility_named();
            v["category"] = json!(category);
            v["components"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "BUTTONS", "buttons": [button]}));
            v
        };
        for category in ["utility", "MARKETING"] {
            assert_eq!(
                issues(with(json!({"type": "REQUEST_CONTACT_INFO"}), category)),
                vec![]
            );
            assert_eq!(
                issues(with(
                    json!({"type": "REQUEST_CONTACT_INFO", "text": "Share Contact Info"}),
                    category
                )),
                vec![]
            );
        }
        assert_issue(
            with(
                json!({"type": "REQUEST_CONTACT_INFO", "text": "Send us your number"}),
                "utility",
            ),
            "components[1].buttons[0].text",
            "button_text_invalid",
        );
        assert_issue(
            with(
                json!({"type": "REQUEST_CONTACT_INFO", "url": "https://x"}),
                "utility",
            ),
            "components[1].buttons[0].url",
            "button_field_unknown",
        );
        let two = {
            let mut v = utility_named();
            v["components"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "BUTTONS", "buttons": [
                {"type": "REQUEST_CONTACT_INFO"}, {"type": "REQUEST_CONTACT_INFO"}]}));
            v
        };
        assert_issue(two, "components[1].buttons[1].type", "button_limit");
        // Meta's stored template reads back as the button, with nothing to fill at send time.
        let t = crate::Template::from_meta_json(&json!({
            "name": "share_number", "language": "en", "category": "UTILITY", "status": "APPROVED",
            "components": [{"type": "BODY", "text": "Please share your number."},
                {"type": "BUTTONS", "buttons": [{"type": "REQUEST_CONTACT_INFO", "text": "Share Contact Info"}]}]
        }))
        .unwrap();
        assert_eq!(
            t.buttons,
            vec![crate::Button::RequestContactInfo {
                text: Some("Share Contact Info".into())
            }]
        );
        assert!(t.variables().is_empty());
    }

    #[test]
    fn top_level_fields() {
        let mut v = utility_named();
        v["name"] = json!("Order Update");
        let found = issues(v);
        assert_eq!(found[0].field, "name");
        assert_eq!(found[0].code, "name_invalid");
        assert!(found[0].message.contains("`order_update`"), "{found:?}");
        let mut v = utility_named();
        v["name"] = json!("");
        assert_issue(v, "name", "name_invalid");
        let mut v = utility_named();
        v["name"] = json!("a".repeat(513));
        assert_issue(v, "name", "name_invalid");

        let mut v = utility_named();
        v["language"] = json!("english");
        assert_issue(v, "language", "language_invalid");
        let mut v = utility_named();
        v["category"] = json!("PROMOTION");
        assert_issue(v, "category", "category_invalid");
        let mut v = utility_named();
        v["parameter_format"] = json!("numbered");
        assert_issue(v, "parameter_format", "parameter_format_invalid");
    }

    #[test]
    fn component_structure() {
        let mut v = utility_named();
        v["components"] = json!([]);
        assert_issue(v, "components", "body_missing");

        let mut v = location_header();
        v["components"].as_array_mut().unwrap().swap(0, 1);
        assert_issue(v, "components[1].type", "component_order");

        let mut v = location_header();
        let body = v["components"][1].clone();
        v["components"].as_array_mut().unwrap().insert(2, body);
        assert_issue(v, "components[2].type", "component_duplicate");

        let mut v = location_header();
        v["components"][2] = json!({"type": "CAROUSEL", "cards": []});
        assert_issue(v, "components[2].type", "component_type_unsupported");
        let mut v = location_header();
        v["components"][2] = json!({"text": "no type"});
        assert_issue(v, "components[2].type", "component_type_missing");
        let mut v = location_header();
        v["components"][2] = json!("FOOTER");
        assert_issue(v, "components[2]", "component_invalid");
    }

    #[test]
    fn header_rules() {
        let mut v = text_header_quick_replies();
        v["components"][0]["text"] = json!(format!("Our {{{{1}}}} is on{}", "!".repeat(60)));
        assert_issue(v, "components[0].text", "header_text_too_long");

        let mut v = text_header_quick_replies();
        v["components"][0]["text"] = json!("Our {{1}} is {{2}}");
        assert_issue(v, "components[0].text", "header_too_many_variables");

        let mut v = text_header_quick_replies();
        v["components"][0]
            .as_object_mut()
            .unwrap()
            .remove("example");
        assert_issue(
            v,
            "components[0].example.header_text",
            "header_example_missing",
        );

        let mut v = text_header_quick_replies();
        v["components"][0]["example"] = json!({"header_text": "Summer Sale"});
        assert_issue(
            v,
            "components[0].example.header_text",
            "header_example_invalid",
        );

        let mut v = text_header_quick_replies();
        v["components"][0]["text"] = json!("Our {{2}} is on!");
        assert_issue(v, "components[0].text", "variables_not_sequential");

        let mut v = text_header_quick_replies();
        v["components"][0]["text"] = json!("Our sale is on!");
        assert_issue(v, "components[0].example", "header_example_unexpected");

        let mut v = text_header_quick_replies();
        v["components"][0].as_object_mut().unwrap().remove("text");
        assert_issue(v, "components[0].text", "header_text_missing");

        let mut v = phone_and_copy_code();
        v["components"][0]["example"]["header_text_named_params"][0]["param_name"] = json!("name");
        assert_issue(
            v,
            "components[0].example.header_text_named_params",
            "header_example_invalid",
        );

        let mut v = marketing_image_url();
        v["components"][0]["example"] = json!({"header_handle": []});
        assert_issue(
            v,
            "components[0].example.header_handle",
            "header_handle_missing",
        );
        let mut v = document_header();
        v["components"][0]
            .as_object_mut()
            .unwrap()
            .remove("example");
        assert_issue(
            v,
            "components[0].example.header_handle",
            "header_handle_missing",
        );
        let mut v = marketing_image_url();
        v["components"][0]["text"] = json!("Look");
        assert_issue(v, "components[0].text", "header_text_unexpected");

        let mut v = location_header();
        v["components"][0]["example"] = json!({"header_handle": ["x"]});
        assert_issue(v, "components[0].example", "header_example_unexpected");

        let mut v = location_header();
        v["components"][0]["format"] = json!("AUDIO");
        assert_issue(v, "components[0].format", "header_format_invalid");
        let mut v = location_header();
        v["components"][0].as_object_mut().unwrap().remove("format");
        assert_issue(v, "components[0].format", "header_format_invalid");
    }

    fn body_of(text: &str, example: Value) -> Value {
        let mut v = location_header();
        v["components"][1] = json!({"type": "BODY", "text": text, "example": example});
        v
    }

    #[test]
    fn body_text_and_variables() {
        let mut v = location_header();
        v["components"][1].as_object_mut().unwrap().remove("text");
        assert_issue(v, "components[1].text", "body_text_missing");

        let long = format!("Hello {{{{1}}}}, {}", "word ".repeat(210));
        let v = body_of(&long, json!({"body_text": [["Mark"]]}));
        assert_issue(v, "components[1].text", "body_text_too_long");

        let two = json!({"body_text": [["Mark", "1"]]});
        let v = body_of(
            "Hi {{1}}, your order {{3}} has shipped today, thanks a lot.",
            two.clone(),
        );
        assert_issue(v, "components[1].text", "variables_not_sequential");
        let v = body_of(
            "Hi {{2}}, your order {{1}} has shipped today, thanks a lot.",
            two.clone(),
        );
        assert_issue(v, "components[1].text", "variables_out_of_order");
        let v = body_of(
            "Hi {{1}}, your order {{1}} has shipped today, thanks a lot.",
            json!({"body_text": [["Mark"]]}),
        );
        assert_issue(v, "components[1].text", "variable_duplicate");
        let v = body_of("Hi {{0}}, your order has shipped today.", json!(null));
        assert_issue(v, "components[1].text", "variable_invalid");
        let v = body_of("Hi {{ 1 }}, your order has shipped today.", json!(null));
        let found = issues(v);
        assert!(
            found
                .iter()
                .any(|i| i.code == "variable_invalid" && i.message.contains("write `{{1}}`"))
        );
        let v = body_of("Hi {{First}}, your order has shipped today.", json!(null));
        assert_issue(v, "components[1].text", "variable_invalid");
        let v = body_of("Hi {{1, your order has shipped today.", json!(null));
        assert_issue(v, "components[1].text", "variable_invalid");

        let v = body_of(
            "Hi {{first_name}}, your order {{1}} has shipped today, thanks.",
            json!(null),
        );
        assert_issue(v, "components[1].text", "variables_mixed");
        // parameter_format left out means positional.
        let v = body_of(
            "Hi {{first_name}}, your order has shipped today, thanks.",
            json!({"body_text_named_params": [{"param_name": "first_name", "example": "Pablo"}]}),
        );
        let found = issues(v);
        assert!(
            found
                .iter()
                .any(|i| i.code == "parameter_format_mismatch" && i.message.contains("\"named\"")),
            "{found:?}"
        );
        let mut v = utility_named();
        v["parameter_format"] = json!("positional");
        assert_issue(v, "components[0].text", "parameter_format_mismatch");
    }

    #[test]
    fn body_variable_placement_and_ratio() {
        let one = json!({"body_text": [["Mark"]]});
        let two = json!({"body_text": [["Mark", "1"]]});
        let v = body_of("{{1}}, your order has shipped today.", one.clone());
        assert_issue(v, "components[1].text", "variable_at_start");
        let v = body_of("  {{1}} is the code for your order today.", one.clone());
        assert_issue(v, "components[1].text", "variable_at_start");
        let v = body_of("Your order has shipped today, {{1}}  ", one.clone());
        assert_issue(v, "components[1].text", "variable_at_end");
        let v = body_of(
            "Hi {{1}} {{2}}, your order has shipped today, thanks.",
            two.clone(),
        );
        assert_issue(v, "components[1].text", "variables_adjacent");
        let v = body_of(
            "Hi {{1}}{{2}}, your order has shipped today, thanks.",
            two.clone(),
        );
        assert_issue(v, "components[1].text", "variables_adjacent");
        // Punctuation between variables is text.
        let v = body_of(
            "Hi {{1}}, {{2}} your order has shipped today, thanks.",
            two.clone(),
        );
        assert!(!issues(v).iter().any(|i| i.code == "variables_adjacent"));
        // 2 variables need 5 other words.
        let v = body_of("Hi {{1}}, gate {{2}}. Thank you.", two.clone());
        assert_issue(v, "components[1].text", "too_many_variables");
        let v = body_of("Hi {{1}}, gate {{2}} now. Thank you.", two);
        assert_eq!(issues(v), vec![]);
    }

    #[test]
    fn body_examples() {
        let text = "Hi {{1}}, your order {{2}} has shipped today, thanks.";
        let v = body_of(text, json!(null));
        assert_issue(v, "components[1].example.body_text", "body_example_missing");
        let v = body_of(text, json!({"body_text": ["Mark", "1"]}));
        assert_issue(v, "components[1].example.body_text", "body_example_invalid");
        let v = body_of(text, json!({"body_text": [["Mark"]]}));
        assert_issue(
            v,
            "components[1].example.body_text[0]",
            "body_example_count",
        );
        let v = body_of(text, json!({"body_text": [["Mark", "line\nbreak"]]}));
        assert_issue(
            v,
            "components[1].example.body_text[0][1]",
            "example_value_invalid",
        );
        let v = body_of(
            "Your order has shipped today, thanks.",
            json!({"body_text": [["Mark"]]}),
        );
        assert_issue(v, "components[1].example", "body_example_unexpected");

        let mut v = utility_named();
        v["components"][0]["example"]["body_text_named_params"]
            .as_array_mut()
            .unwrap()
            .pop();
        let found = issues(v);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].field,
            "components[0].example.body_text_named_params"
        );
        assert_eq!(found[0].code, "body_example_missing");
        assert!(found[0].message.contains("order_number"));

        let mut v = utility_named();
        v["components"][0]["example"]["body_text_named_params"][1]["param_name"] = json!("order");
        assert_issue(
            v,
            "components[0].example.body_text_named_params[1].param_name",
            "body_example_unknown_param",
        );
        let mut v = utility_named();
        v["components"][0]["example"]["body_text_named_params"][0] =
            json!({"param_name": "first_name"});
        assert_issue(
            v,
            "components[0].example.body_text_named_params[0]",
            "body_example_invalid",
        );
        let mut v = utility_named();
        v["components"][0]["example"]["body_text_named_params"][0]["example"] = json!("a\tb");
        assert_issue(
            v,
            "components[0].example.body_text_named_params[0].example",
            "example_value_invalid",
        );
        let mut v = utility_named();
        v["components"][0]["example"] = json!({"body_text": [["Pablo", "1"]]});
        assert_issue(
            v,
            "components[0].example.body_text_named_params",
            "body_example_missing",
        );
    }

    #[test]
    fn footer_rules() {
        let mut v = location_header();
        v["components"][2]["text"] = json!("x".repeat(61));
        assert_issue(v, "components[2].text", "footer_text_too_long");
        let mut v = location_header();
        v["components"][2]["text"] = json!("Valid until {{1}}");
        assert_issue(v, "components[2].text", "footer_variable");
        let mut v = location_header();
        v["components"][2] = json!({"type": "FOOTER"});
        assert_issue(v, "components[2].text", "footer_text_missing");
        let mut v = location_header();
        v["components"][2]["code_expiration_minutes"] = json!(10);
        assert_issue(
            v,
            "components[2].code_expiration_minutes",
            "auth_only_field",
        );
    }

    fn with_buttons(buttons: Value) -> Value {
        let mut v = location_header();
        v["category"] = json!("MARKETING");
        v["components"][3] = json!({"type": "BUTTONS", "buttons": buttons});
        v
    }

    #[test]
    fn button_rules() {
        let v = with_buttons(json!([]));
        assert_issue(v, "components[3].buttons", "buttons_missing");
        let many: Vec<Value> = (0..11)
            .map(|k| json!({"type": "QUICK_REPLY", "text": format!("Option {k}")}))
            .collect();
        assert_issue(
            with_buttons(json!(many)),
            "components[3].buttons",
            "buttons_too_many",
        );
        let v = with_buttons(json!([{"type": "QUICK_REPLY", "text": "x".repeat(26)}]));
        assert_issue(v, "components[3].buttons[0].text", "button_text_too_long");
        let v = with_buttons(json!([{"type": "QUICK_REPLY"}]));
        assert_issue(v, "components[3].buttons[0].text", "button_text_missing");
        let v = with_buttons(json!([{"type": "QUICK_REPLY", "text": "Hi {{1}}"}]));
        assert_issue(v, "components[3].buttons[0].text", "button_text_variable");
        let v = with_buttons(json!([{"type": "FLOW", "text": "Open", "flow_id": "1"}]));
        assert_issue(
            v,
            "components[3].buttons[0].type",
            "button_type_unsupported",
        );
        let v = with_buttons(json!([{"type": "LINK", "text": "Open"}]));
        assert_issue(v, "components[3].buttons[0].type", "button_type_invalid");
        let v = with_buttons(json!([{"text": "Open"}]));
        assert_issue(v, "components[3].buttons[0].type", "button_type_missing");
        let v = with_buttons(json!(["Open"]));
        assert_issue(v, "components[3].buttons[0]", "button_invalid");

        let url = |u: &str| json!({"type": "URL", "text": "Open", "url": u});
        let v = with_buttons(json!([
            url("https://a.example"),
            url("https://b.example"),
            url("https://c.example")
        ]));
        assert_issue(v, "components[3].buttons[2].type", "button_limit");
        let v = with_buttons(json!([{"type": "URL", "text": "Open"}]));
        assert_issue(v, "components[3].buttons[0].url", "button_url_missing");
        let v = with_buttons(json!([url("ftp://example.com/file")]));
        assert_issue(v, "components[3].buttons[0].url", "button_url_invalid");
        let v = with_buttons(json!([url("https://{{1}}")]));
        assert_issue(v, "components[3].buttons[0].url", "button_url_invalid");
        let long = format!("https://example.com/{}", "a".repeat(2000));
        let v = with_buttons(json!([url(&long)]));
        assert_issue(v, "components[3].buttons[0].url", "button_url_too_long");
        let mut b = url("https://example.com/{{1}}/details");
        b["example"] = json!(["https://example.com/1/details"]);
        assert_issue(
            with_buttons(json!([b])),
            "components[3].buttons[0].url",
            "button_url_variable_invalid",
        );
        let mut b = url("https://example.com/{{2}}");
        b["example"] = json!(["https://example.com/2"]);
        assert_issue(
            with_buttons(json!([b])),
            "components[3].buttons[0].url",
            "button_url_variable_invalid",
        );
        let mut b = url("https://example.com/{{1}}?x={{2}}");
        b["example"] = json!(["x"]);
        assert_issue(
            with_buttons(json!([b])),
            "components[3].buttons[0].url",
            "button_url_variable_invalid",
        );
        let v = with_buttons(json!([url("https://example.com/orders/{{1}}")]));
        assert_issue(
            v,
            "components[3].buttons[0].example",
            "button_url_example_missing",
        );

        let phone = |p: &str| json!({"type": "PHONE_NUMBER", "text": "Call", "phone_number": p});
        let v = with_buttons(json!([phone("16467043595"), phone("4915112345678")]));
        assert_issue(v, "components[3].buttons[1].type", "button_limit");
        for bad in [
            "0151 1234567",
            "12",
            "+1-646-704-3595",
            "123456789012345678901",
        ] {
            let v = with_buttons(json!([phone(bad)]));
            assert_issue(
                v,
                "components[3].buttons[0].phone_number",
                "button_phone_invalid",
            );
        }
        let v = with_buttons(json!([{"type": "PHONE_NUMBER", "text": "Call"}]));
        assert_issue(
            v,
            "components[3].buttons[0].phone_number",
            "button_phone_missing",
        );

        let code = |e: Value| json!({"type": "COPY_CODE", "example": e});
        let v = with_buttons(json!([code(json!("A")), code(json!("B"))]));
        assert_issue(v, "components[3].buttons[1].type", "button_limit");
        let v = with_buttons(json!([code(json!("SIXTEEN_CHARS_XX"))]));
        assert_issue(
            v,
            "components[3].buttons[0].example",
            "copy_code_example_too_long",
        );
        let v = with_buttons(json!([{"type": "COPY_CODE"}]));
        assert_issue(
            v,
            "components[3].buttons[0].example",
            "copy_code_example_missing",
        );
        let mut v = with_buttons(json!([code(json!(["SAVE10"]))]));
        assert_eq!(issues(v.clone()), vec![]);
        v["category"] = json!("UTILITY");
        assert_issue(v, "components[3].buttons[0].type", "copy_code_not_allowed");

        let v = with_buttons(json!([{"type": "OTP", "otp_type": "COPY_CODE"}]));
        assert_issue(v, "components[3].buttons[0].type", "otp_button_not_allowed");

        let qr = json!({"type": "QUICK_REPLY", "text": "Stop"});
        let v = with_buttons(json!([qr, url("https://example.com"), qr]));
        assert_issue(
            v,
            "components[3].buttons[2].type",
            "quick_replies_not_grouped",
        );
        let v = with_buttons(json!([url("https://example.com"), qr, qr]));
        assert_eq!(issues(v), vec![]);
    }

    #[test]
    fn authentication_rules() {
        let mut v = auth_copy_code();
        v["components"].as_array_mut().unwrap().insert(
            0,
            json!({"type": "HEADER", "format": "TEXT", "text": "Code"}),
        );
        assert_issue(v, "components[0].type", "auth_header_not_allowed");

        let mut v = auth_copy_code();
        v["components"][0]["text"] = json!("Your code is {{1}}, do not share it.");
        assert_issue(v, "components[0].text", "auth_body_text_not_allowed");
        let mut v = auth_copy_code();
        v["components"][0]["add_security_recommendation"] = json!("yes");
        assert_issue(
            v,
            "components[0].add_security_recommendation",
            "auth_security_recommendation_invalid",
        );
        let mut v = location_header();
        v["components"][1]["add_security_recommendation"] = json!(true);
        assert_issue(
            v,
            "components[1].add_security_recommendation",
            "auth_only_field",
        );

        let mut v = auth_copy_code();
        v["components"][1]["text"] = json!("Expires soon");
        assert_issue(v, "components[1].text", "auth_footer_text_not_allowed");
        for bad in [json!(0), json!(91), json!("10"), json!(1.5)] {
            let mut v = auth_copy_code();
            v["components"][1]["code_expiration_minutes"] = bad;
            assert_issue(
                v,
                "components[1].code_expiration_minutes",
                "footer_code_expiration_invalid",
            );
        }

        let mut v = auth_copy_code();
        v["components"].as_array_mut().unwrap().pop();
        assert_issue(v, "components", "auth_otp_button_missing");
        let mut v = auth_copy_code();
        v["components"][2]["buttons"] = json!([{"type": "QUICK_REPLY", "text": "Stop"}]);
        let found = issues(v);
        assert!(
            found.iter().any(|i| i.code == "auth_button_not_allowed"
                && i.field == "components[2].buttons[0].type")
        );
        assert!(found.iter().any(|i| i.code == "auth_otp_button_missing"));
        let mut v = auth_copy_code();
        let otp = v["components"][2]["buttons"][0].clone();
        v["components"][2]["buttons"]
            .as_array_mut()
            .unwrap()
            .push(otp);
        assert_issue(v, "components[2].buttons[1].type", "button_limit");

        let mut v = auth_copy_code();
        v["components"][2]["buttons"][0]["otp_type"] = json!("TWO_TAP");
        assert_issue(v, "components[2].buttons[0].otp_type", "otp_type_invalid");
        let mut v = auth_one_tap();
        v["components"][2]["buttons"][0]
            .as_object_mut()
            .unwrap()
            .remove("signature_hash");
        assert_issue(
            v,
            "components[2].buttons[0].supported_apps",
            "otp_app_missing",
        );
        let mut v = auth_one_tap();
        let button = v["components"][2]["buttons"][0].as_object_mut().unwrap();
        button.remove("package_name");
        button.remove("signature_hash");
        button.insert(
            "supported_apps".into(),
            json!([{"package_name": "com.example.app", "signature_hash": "K8a/AINcGX7"}]),
        );
        assert_eq!(issues(v.clone()), vec![]);
        v["components"][2]["buttons"][0]["otp_type"] = json!("zero_tap");
        assert_issue(
            v.clone(),
            "components[2].buttons[0].zero_tap_terms_accepted",
            "otp_zero_tap_terms_missing",
        );
        v["components"][2]["buttons"][0]["zero_tap_terms_accepted"] = json!(true);
        assert_eq!(issues(v.clone()), vec![]);
        assert_eq!(
            draft(v).to_meta_json()["components"][2]["buttons"][0]["otp_type"],
            "ZERO_TAP"
        );
        let mut v = auth_copy_code();
        v["components"][2]["buttons"][0]["autofill_text"] = json!("x".repeat(26));
        assert_issue(
            v,
            "components[2].buttons[0].autofill_text",
            "button_text_too_long",
        );
    }

    #[test]
    fn check_reports_every_problem_in_component_order() {
        let v = json!({
            "name": "Spring Sale!", "language": "en_US", "category": "marketing",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Sale {{1}} and {{2}}"},
                {"type": "BODY", "text": "{{1}} {{2}}"},
                {"type": "FOOTER", "text": "Until {{1}}"},
                {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Shop", "url": "shop.example.com"}]}
            ]
        });
        let found = issues(v);
        let codes: Vec<(&str, &str)> = found.iter().map(|i| (i.field.as_str(), i.code)).collect();
        assert_eq!(
            codes,
            vec![
                ("name", "name_invalid"),
                ("components[0].text", "header_too_many_variables"),
                (
                    "components[0].example.header_text",
                    "header_example_missing"
                ),
                ("components[1].text", "variable_at_start"),
                ("components[1].text", "variable_at_end"),
                ("components[1].text", "variables_adjacent"),
                ("components[1].text", "too_many_variables"),
                ("components[1].example.body_text", "body_example_missing"),
                ("components[2].text", "footer_variable"),
                ("components[3].buttons[0].url", "button_url_invalid"),
            ]
        );
        assert!(found[0].message.contains("`spring_sale`"));
    }

    #[test]
    fn parameter_text_at_send_time() {
        assert_eq!(check_parameter_text("Pablo"), Ok(()));
        assert_eq!(check_parameter_text("a    b"), Ok(()));
        assert!(
            check_parameter_text("a     b")
                .unwrap_err()
                .contains("4 spaces")
        );
        assert!(
            check_parameter_text("a\nb")
                .unwrap_err()
                .contains("line break")
        );
        assert!(check_parameter_text("a\r\nb").is_err());
        assert!(check_parameter_text("a\tb").unwrap_err().contains("tab"));
        assert!(check_parameter_text(" ").unwrap_err().contains("empty"));
        assert!(check_parameter_text(&"é".repeat(1024)).is_ok());
        assert!(check_parameter_text(&"é".repeat(1025)).is_err());
    }

    #[test]
    fn suggested_names() {
        for (input, want) in [
            ("Order Update", "order_update"),
            ("order_update", "order_update"),
            ("  Spring Sale! 2024 ", "spring_sale_2024"),
            ("Café-Menü", "cafe_menu"),
            ("Straße", "strasse"),
            ("___", "template"),
            ("", "template"),
            ("日本語", "template"),
        ] {
            assert_eq!(suggest_template_name(input), want, "{input}");
        }
        assert_eq!(suggest_template_name(&"Ab ".repeat(400)).len(), 512);
        assert_eq!(suggest_template_name(&"a ".repeat(400)).len(), 511);
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-5i64..200).prop_map(|n| json!(n)),
            prop::sample::select(vec![
                "HEADER",
                "BODY",
                "FOOTER",
                "BUTTONS",
                "TEXT",
                "IMAGE",
                "LOCATION",
                "URL",
                "QUICK_REPLY",
                "PHONE_NUMBER",
                "COPY_CODE",
                "OTP",
                "ONE_TAP",
                "ZERO_TAP",
                "{{1}}",
                "{{2}}",
                "{{first_name}}",
                "Hi {{1}} there",
                "{{",
                "}}",
                "{{{{1}}}}",
                "https://e.com/{{1}}",
                "+4915112345678",
                "é",
                "",
            ])
            .prop_map(|s| json!(s)),
            "[{}a-z0-9_ é\n]{0,30}".prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let keys = prop::sample::select(vec![
            "type",
            "format",
            "text",
            "example",
            "buttons",
            "url",
            "phone_number",
            "otp_type",
            "header_text",
            "header_handle",
            "body_text",
            "body_text_named_params",
            "param_name",
            "code_expiration_minutes",
            "add_security_recommendation",
            "supported_apps",
            "package_name",
            "signature_hash",
            "zero_tap_terms_accepted",
            "autofill_text",
        ]);
        json_leaf().prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|pairs| {
                    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_drafts_never_panic(
            name in "\\PC{0,20}",
            category in prop::sample::select(vec!["MARKETING", "utility", "AUTHENTICATION", "x"]),
            format in prop::option::of(prop::sample::select(vec!["named", "POSITIONAL", "?"])),
            components in prop::collection::vec(json_value(), 0..6),
        ) {
            let d = TemplateDraft {
                name,
                language: "en".into(),
                category: category.into(),
                parameter_format: format.map(str::to_owned),
                components,
            };
            for issue in d.check() {
                prop_assert!(!issue.message.is_empty());
            }
            let _ = d.to_meta_json();
        }

        #[test]
        fn suggested_names_are_valid(s in "\\PC{0,600}") {
            prop_assert!(TemplateName::parse(&suggest_template_name(&s)).is_ok());
        }

        #[test]
        fn body_scanning_never_panics(text in "[{}a-z0-9_ é]{0,60}") {
            let v = body_of(&text, json!({"body_text": [["a"]]}));
            let _ = issues(v);
        }
    }
}
