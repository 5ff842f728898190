//! Binding a send's variables to a template's slots. Everything Meta would refuse (missing or
//! extra variables, a media header that is not a link or id, a template that is not approved)
//! is refused here, before any call, with the key at fault and the keys expected.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::personalize::{DynamicText, Limit, PersonalizeError, SkipReason};
use crate::tags::{NoTags, TagLookup};
use crate::template::{
    Button, ButtonSubType, HeaderFormat, LanguageCode, ParameterFormat, SlotKind, SlotLocation,
    Template, TemplateError, TemplateName, VariableSlot,
};
use crate::template_rules::{
    BODY_TEXT_MAX_CHARS, BUTTON_URL_MAX_CHARS, COPY_CODE_MAX_CHARS, HEADER_TEXT_MAX_CHARS,
    PARAMETER_TEXT_MAX_CHARS,
};

/// What the API caller gave: a JSON object `{key: value}` or an array `[values…]`.
/// Values are strings; numbers are accepted and written as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum VariableInput {
    Named(BTreeMap<String, String>),
    List(Vec<String>),
}

impl Default for VariableInput {
    fn default() -> Self {
        VariableInput::Named(BTreeMap::new())
    }
}

impl VariableInput {
    /// Reads API JSON (object, array or null) with errors that name the offending key.
    pub fn from_json(v: &Value) -> Result<VariableInput, BindError> {
        fn text(key: String, v: &Value) -> Result<String, BindError> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(BindError::InvalidInput {
                    key: Some(key),
                    message: format!(
                        "{} is not a variable value: values must be strings (or numbers), e.g. \"Ana\"",
                        json_kind(other)
                    ),
                }),
            }
        }
        match v {
            Value::Null => Ok(VariableInput::default()),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| Ok((k.clone(), text(k.clone(), v)?)))
                .collect::<Result<_, _>>()
                .map(VariableInput::Named),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| text(i.to_string(), v))
                .collect::<Result<_, _>>()
                .map(VariableInput::List),
            other => Err(BindError::InvalidInput {
                key: None,
                message: format!(
                    "{} cannot hold variables: give an object like {{\"first_name\": \"Ana\"}} or a list like [\"Ana\"]",
                    json_kind(other)
                ),
            }),
        }
    }

    fn len(&self) -> usize {
        match self {
            VariableInput::Named(m) => m.len(),
            VariableInput::List(l) => l.len(),
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'de> Deserialize<'de> for VariableInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VariableInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "template variables as an object like {\"first_name\": \"Ana\"} or a list like [\"Ana\"]",
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VariableInput, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, VariableValue>()? {
                    out.insert(k, v.0);
                }
                Ok(VariableInput::Named(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VariableInput, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<VariableValue>()? {
                    out.push(v.0);
                }
                Ok(VariableInput::List(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<VariableInput, E> {
                Ok(VariableInput::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<VariableInput, E> {
                Ok(VariableInput::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// One variable value: a string, or a number written as text.
struct VariableValue(String);

impl<'de> Deserialize<'de> for VariableValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VariableValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a variable value: a string (or a number), e.g. \"Ana\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VariableValue, E> {
                Ok(VariableValue(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<VariableValue, E> {
                Ok(VariableValue(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<VariableValue, E> {
                Ok(VariableValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VariableValue, E> {
                Ok(VariableValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<VariableValue, E> {
                Ok(VariableValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A send's variables do not fit the template. `field()` and `code()` feed the API error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("{0}")]
    TemplateNotSendable(TemplateError),
    #[error(
        "variable `{key}` is missing: this template needs {}",
        expected_keys(expected)
    )]
    VariableMissing { key: String, expected: Vec<String> },
    #[error(
        "variable `{key}` is not used by this template: it needs {}",
        expected_keys(expected)
    )]
    VariableUnknown { key: String, expected: Vec<String> },
    #[error(
        "{given} variables given but this template needs {}: {}",
        expected.len(),
        expected_keys(expected)
    )]
    VariableCountMismatch { given: usize, expected: Vec<String> },
    #[error("variable `{key}`: {message}")]
    VariableFormat { key: String, message: String },
    #[error("variable `{key}` is empty: Meta refuses empty parameters, give a value")]
    VariableEmpty { key: String },
    #[error("variable `{key}` is not a valid expression {error}")]
    ExpressionInvalid {
        key: String,
        error: PersonalizeError,
    },
    #[error("variable `{key}`: {message}")]
    Unsupported { key: String, message: String },
    /// A literal value (or the part it fills) over WhatsApp's length limit.
    #[error("{0}")]
    TooLong(SkipReason),
    #[error("{}{message}", key.as_ref().map(|k| format!("variable `{k}`: ")).unwrap_or_default())]
    InvalidInput {
        key: Option<String>,
        message: String,
    },
}

fn expected_keys(keys: &[String]) -> String {
    if keys.is_empty() {
        return "no variables".to_owned();
    }
    let mut out = String::new();
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('`');
        out.push_str(k);
        out.push('`');
    }
    out
}

impl BindError {
    /// The request field at fault, e.g. "variables.first_name".
    pub fn field(&self) -> String {
        match self {
            BindError::TemplateNotSendable(_) => "template".to_owned(),
            BindError::VariableCountMismatch { .. } | BindError::InvalidInput { key: None, .. } => {
                "variables".to_owned()
            }
            BindError::VariableMissing { key, .. }
            | BindError::VariableUnknown { key, .. }
            | BindError::VariableFormat { key, .. }
            | BindError::VariableEmpty { key }
            | BindError::ExpressionInvalid { key, .. }
            | BindError::Unsupported { key, .. }
            | BindError::InvalidInput { key: Some(key), .. } => format!("variables.{key}"),
            BindError::TooLong(reason) => match reason {
                SkipReason::TooLong { variable, .. } => format!("variables.{variable}"),
                _ => "variables".to_owned(),
            },
        }
    }

    /// Stable snake_case code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            BindError::TemplateNotSendable(_) => "template_not_sendable",
            BindError::VariableMissing { .. } => "variable_missing",
            BindError::VariableUnknown { .. } => "variable_unknown",
            BindError::VariableCountMismatch { .. } => "variable_count_mismatch",
            BindError::VariableFormat { .. } => "variable_format",
            BindError::VariableEmpty { .. } => "variable_empty",
            BindError::ExpressionInvalid { .. } => "expression_invalid",
            BindError::Unsupported { .. } => "template_unsupported",
            BindError::InvalidInput { .. } => "variables_invalid",
            BindError::TooLong(_) => VARIABLE_TOO_LONG,
        }
    }
}

/// The error code of a value, or the part of the message it fills, over WhatsApp's length
/// limit (the API's 422, a campaign recipient's skip reason is `too_long`).
pub const VARIABLE_TOO_LONG: &str = "variable_too_long";

/// A media link's length limit (Meta publishes none; a URL button takes 2,000 characters).
pub const MEDIA_LINK_MAX_CHARS: usize = 2000;
/// A location header value's length limit (`latitude,longitude|name|address`).
pub const LOCATION_MAX_CHARS: usize = 1024;

/// A template with one expression per slot, compiled once per message or campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundTemplate {
    name: TemplateName,
    language: LanguageCode,
    header: Option<BoundHeader>,
    body: Vec<BoundParam>,
    buttons: Vec<BoundButton>,
    /// Characters of the header and body text outside their parameters: the filled text must
    /// stay within Meta's 60 and 1,024 characters.
    header_fixed: usize,
    body_fixed: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum BoundHeader {
    Text {
        parameter_name: Option<String>,
        value: DynamicText,
    },
    Media {
        kind: HeaderFormat,
        value: DynamicText,
    },
    /// `latitude,longitude` with optional `|name|address`.
    Location { value: DynamicText },
}

#[derive(Debug, Clone, PartialEq)]
struct BoundParam {
    key: String,
    parameter_name: Option<String>,
    value: DynamicText,
    /// How often the parameter appears in the body text.
    occurrences: usize,
}

#[derive(Debug, Clone, PartialEq)]
struct BoundButton {
    key: String,
    index: usize,
    sub_type: ButtonSubType,
    value: DynamicText,
    /// The longest value: what the URL leaves of its 2,000 characters, or a code's 15.
    max_chars: usize,
    /// What `max_chars` limits, for the error.
    part: &'static str,
    part_limit: usize,
}

/// A media header value: an http(s) link or a media id from an upload.
enum MediaRef<'a> {
    Link(&'a str),
    Id(&'a str),
}

fn classify_media(value: &str) -> Result<MediaRef<'_>, String> {
    let v = value.trim();
    let has_scheme = |scheme: &str| {
        v.len() > scheme.len()
            && v.as_bytes()[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
    };
    let is_link = has_scheme("https://") || has_scheme("http://");
    if is_link && !v.chars().any(char::is_whitespace) {
        Ok(MediaRef::Link(v))
    } else if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(MediaRef::Id(v))
    } else {
        Err(format!(
            "`{}` is not a media link or id: give an http(s) URL like https://example.com/sale.jpg or the numeric id of an uploaded media",
            crate::excerpt(v)
        ))
    }
}

impl BoundTemplate {
    /// Maps input to the template's slots. Keys: body parameter names (named templates),
    /// "1".."n" (positional body), "header" for the header variable or media (a media value is
    /// an http(s) URL or a numeric media id), "button.<index>" for a button's variable (index =
    /// button position, 0-based). A named text header may also be filled by its parameter name.
    /// The list form gives values for all slots in the order of [`Template::variables`].
    /// Each value is parsed as [`DynamicText`].
    pub fn bind(template: &Template, input: &VariableInput) -> Result<BoundTemplate, BindError> {
        template
            .is_sendable()
            .map_err(BindError::TemplateNotSendable)?;
        let slots = template.variables();
        let expected: Vec<String> = slots.iter().map(|s| s.key.clone()).collect();
        let header_name = template.header_parameter_name();

        let values: Vec<&str> = match input {
            VariableInput::Named(map) => {
                let header_alias = header_name
                    .as_deref()
                    .filter(|_| expected.iter().any(|k| k == "header"));
                if let Some(key) = map
                    .keys()
                    .find(|k| !expected.contains(k) && Some(k.as_str()) != header_alias)
                {
                    return Err(BindError::VariableUnknown {
                        key: key.clone(),
                        expected,
                    });
                }
                let mut values = Vec::with_capacity(slots.len());
                for slot in &slots {
                    let value = map.get(&slot.key).or_else(|| {
                        (slot.location == SlotLocation::Header)
                            .then_some(header_alias)
                            .flatten()
                            .and_then(|alias| map.get(alias))
                    });
                    match value {
                        Some(v) => values.push(v.as_str()),
                        None => {
                            return Err(BindError::VariableMissing {
                                key: slot.key.clone(),
                                expected,
                            });
                        }
                    }
                }
                values
            }
            VariableInput::List(items) => {
                if items.len() != slots.len() {
                    return Err(BindError::VariableCountMismatch {
                        given: input.len(),
                        expected,
                    });
                }
                items.iter().map(String::as_str).collect()
            }
        };

        let named = template.parameter_format == ParameterFormat::Named;
        let mut bound = BoundTemplate {
            name: template.name.clone(),
            language: template.language.clone(),
            header: None,
            body: Vec::new(),
            buttons: Vec::new(),
            header_fixed: template
                .header
                .as_ref()
                .and_then(|h| h.text.as_deref())
                .map_or(0, fixed_chars),
            body_fixed: fixed_chars(&template.body),
        };
        for (slot, raw) in slots.iter().zip(values) {
            let value = compile(slot, raw)?;
            match slot.location {
                SlotLocation::Header => {
                    bound.header = Some(match slot.kind {
                        SlotKind::Image | SlotKind::Video | SlotKind::Document => {
                            let kind = match slot.kind {
                                SlotKind::Image => HeaderFormat::Image,
                                SlotKind::Video => HeaderFormat::Video,
                                _ => HeaderFormat::Document,
                            };
                            BoundHeader::Media { kind, value }
                        }
                        SlotKind::Location => BoundHeader::Location { value },
                        _ => BoundHeader::Text {
                            parameter_name: header_name.clone().filter(|_| named),
                            value,
                        },
                    });
                }
                SlotLocation::Body => bound.body.push(BoundParam {
                    key: slot.key.clone(),
                    parameter_name: named.then(|| slot.key.clone()),
                    value,
                    occurrences: occurrences(&template.body, &slot.key).max(1),
                }),
                SlotLocation::Button { index, sub_type } => {
                    let (max_chars, part, part_limit) = match template.buttons.get(index) {
                        Some(Button::Url { url, .. }) => (
                            BUTTON_URL_MAX_CHARS.saturating_sub(fixed_chars(url)),
                            "the button URL",
                            BUTTON_URL_MAX_CHARS,
                        ),
                        Some(Button::CopyCode { .. } | Button::Otp { .. }) => {
                            (COPY_CODE_MAX_CHARS, "the code", COPY_CODE_MAX_CHARS)
                        }
                        _ => (
                            PARAMETER_TEXT_MAX_CHARS,
                            "the value",
                            PARAMETER_TEXT_MAX_CHARS,
                        ),
                    };
                    bound.buttons.push(BoundButton {
                        key: slot.key.clone(),
                        index,
                        sub_type,
                        value,
                        max_chars,
                        part,
                        part_limit,
                    })
                }
            }
        }
        // Values without expressions are checked now, so the request fails, not a recipient.
        if bound.is_literal()
            && let Err(reason @ SkipReason::TooLong { .. }) = bound.render(&NoTags)
        {
            return Err(BindError::TooLong(reason));
        }
        Ok(bound)
    }

    /// Concrete values for one recipient. A text slot that renders empty skips the recipient
    /// (Meta refuses empty text parameters); so does a media value that is not a link or id,
    /// and a value that makes its part longer than Meta takes (`SkipReason::TooLong`: each
    /// body value at most 1,024 characters and the filled body too, the filled header 60,
    /// a button URL 2,000, a code 15). Rendering stops at the limit, so no value ever
    /// grows past it in memory.
    pub fn render(&self, tags: &(impl TagLookup + ?Sized)) -> Result<RenderedTemplate, SkipReason> {
        let header = match &self.header {
            None => None,
            Some(BoundHeader::Text {
                parameter_name,
                value,
            }) => Some(RenderedHeader::Text {
                text: render_text(
                    value,
                    tags,
                    &Limit {
                        variable: "header",
                        part: "the header",
                        part_limit: HEADER_TEXT_MAX_CHARS,
                        max_chars: HEADER_TEXT_MAX_CHARS.saturating_sub(self.header_fixed),
                    },
                )?,
                parameter_name: parameter_name.clone(),
            }),
            Some(BoundHeader::Media { kind, value }) => {
                let rendered = value.render(tags, &Limit::value("header", MEDIA_LINK_MAX_CHARS))?;
                let media =
                    classify_media(&rendered).map_err(|reason| SkipReason::BadTagValue {
                        tag: match value.referenced_tags().as_slice() {
                            [one] => (*one).to_owned(),
                            _ => "header".to_owned(),
                        },
                        reason,
                    })?;
                let (link, id) = match media {
                    MediaRef::Link(l) => (Some(l.to_owned()), None),
                    MediaRef::Id(i) => (None, Some(i.to_owned())),
                };
                Some(RenderedHeader::Media {
                    kind: *kind,
                    link,
                    id,
                })
            }
            Some(BoundHeader::Location { value }) => {
                let rendered = value.render(tags, &Limit::value("header", LOCATION_MAX_CHARS))?;
                let place =
                    parse_location(&rendered).map_err(|reason| SkipReason::BadTagValue {
                        tag: match value.referenced_tags().as_slice() {
                            [one] => (*one).to_owned(),
                            _ => "header".to_owned(),
                        },
                        reason,
                    })?;
                Some(place)
            }
        };
        let mut body = Vec::with_capacity(self.body.len());
        let mut body_chars = self.body_fixed;
        for p in &self.body {
            // What the body has left, shared by every place the parameter appears.
            let left = BODY_TEXT_MAX_CHARS.saturating_sub(body_chars) / p.occurrences;
            let limit = if left < PARAMETER_TEXT_MAX_CHARS {
                Limit {
                    variable: &p.key,
                    part: "the body",
                    part_limit: BODY_TEXT_MAX_CHARS,
                    max_chars: left,
                }
            } else {
                Limit::value(&p.key, PARAMETER_TEXT_MAX_CHARS)
            };
            let text = render_text(&p.value, tags, &limit)?;
            body_chars += text.chars().count() * p.occurrences;
            body.push(RenderedParam {
                parameter_name: p.parameter_name.clone(),
                text,
            });
        }
        let mut buttons = Vec::with_capacity(self.buttons.len());
        for b in &self.buttons {
            buttons.push(RenderedButton {
                index: b.index,
                sub_type: b.sub_type,
                text: render_text(
                    &b.value,
                    tags,
                    &Limit {
                        variable: &b.key,
                        part: b.part,
                        part_limit: b.part_limit,
                        max_chars: b.max_chars,
                    },
                )?,
            });
        }
        Ok(RenderedTemplate {
            name: self.name.to_string(),
            language: self.language.to_string(),
            header,
            body,
            buttons,
        })
    }

    pub fn template_name(&self) -> &TemplateName {
        &self.name
    }

    pub fn language(&self) -> &LanguageCode {
        &self.language
    }

    /// True when no value depends on tags: render once and reuse for every recipient.
    pub fn is_literal(&self) -> bool {
        self.values().all(DynamicText::is_literal)
    }

    /// Every tag any value uses, in order of first use, without duplicates.
    pub fn referenced_tags(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for v in self.values() {
            for t in v.referenced_tags() {
                if !names.contains(&t) {
                    names.push(t);
                }
            }
        }
        names
    }

    fn values(&self) -> impl Iterator<Item = &DynamicText> {
        let header = self.header.iter().map(|h| match h {
            BoundHeader::Text { value, .. }
            | BoundHeader::Media { value, .. }
            | BoundHeader::Location { value } => value,
        });
        header
            .chain(self.body.iter().map(|p| &p.value))
            .chain(self.buttons.iter().map(|b| &b.value))
    }
}

/// Parses one value; literal values are checked now so a bad send fails at the API, not later.
fn compile(slot: &VariableSlot, raw: &str) -> Result<DynamicText, BindError> {
    let value = DynamicText::parse(raw).map_err(|error| BindError::ExpressionInvalid {
        key: slot.key.clone(),
        error,
    })?;
    if value.is_literal() {
        match slot.kind {
            SlotKind::Image | SlotKind::Video | SlotKind::Document => {
                classify_media(raw).map_err(|message| BindError::VariableFormat {
                    key: slot.key.clone(),
                    message,
                })?;
            }
            SlotKind::Location => {
                parse_location(raw).map_err(|message| BindError::VariableFormat {
                    key: slot.key.clone(),
                    message,
                })?;
            }
            SlotKind::Text | SlotKind::Payload | SlotKind::CouponCode => {
                if raw.trim().is_empty() {
                    return Err(BindError::VariableEmpty {
                        key: slot.key.clone(),
                    });
                }
                if raw.chars().nth(PARAMETER_TEXT_MAX_CHARS).is_some() {
                    return Err(BindError::TooLong(
                        Limit::value(&slot.key, PARAMETER_TEXT_MAX_CHARS).too_long(),
                    ));
                }
            }
        }
    }
    Ok(value)
}

fn render_text(
    value: &DynamicText,
    tags: &(impl TagLookup + ?Sized),
    limit: &Limit<'_>,
) -> Result<String, SkipReason> {
    let text = value.render(tags, limit)?;
    if text.trim().is_empty() {
        return Err(SkipReason::EmptyValue {
            variable: limit.variable.to_owned(),
        });
    }
    Ok(text)
}

/// Characters of a template text outside its `{{…}}` parameters.
fn fixed_chars(text: &str) -> usize {
    let mut n = 0;
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        n += rest[..open].chars().count();
        match rest[open + 2..].find("}}") {
            Some(close) => rest = &rest[open + 2 + close + 2..],
            None => return n + rest[open..].chars().count(),
        }
    }
    n + rest.chars().count()
}

/// How often `{{key}}` appears in a template text.
fn occurrences(text: &str, key: &str) -> usize {
    let mut n = 0;
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        if after[..close].trim() == key {
            n += 1;
        }
        rest = &after[close + 2..];
    }
    n
}

impl BoundTemplate {
    /// Renders a template whose values are all literal, without tags.
    pub fn render_literal(&self) -> Result<RenderedTemplate, SkipReason> {
        self.render(&NoTags)
    }
}

/// Concrete values for one recipient; stored with the message and turned into Meta's wire
/// JSON by the client crate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RenderedTemplate {
    pub name: String,
    pub language: String,
    pub header: Option<RenderedHeader>,
    pub body: Vec<RenderedParam>,
    pub buttons: Vec<RenderedButton>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RenderedHeader {
    Text {
        text: String,
        parameter_name: Option<String>,
    },
    /// `kind` is Image, Video or Document; exactly one of `link` and `id` is set.
    Media {
        kind: HeaderFormat,
        link: Option<String>,
        id: Option<String>,
    },
    /// A LOCATION header: the place shown on the map.
    Location {
        latitude: f64,
        longitude: f64,
        name: Option<String>,
        address: Option<String>,
    },
}

/// Reads a location value: `latitude,longitude`, optionally followed by `|name` and
/// `|address` (`52.5219,13.4132|Parley Shop|Alexanderplatz 1, Berlin`).
pub fn parse_location(raw: &str) -> Result<RenderedHeader, String> {
    let mut parts = raw.splitn(3, '|');
    let coords = parts.next().unwrap_or_default().trim();
    let name = parts.next().map(str::trim).filter(|s| !s.is_empty());
    let address = parts.next().map(str::trim).filter(|s| !s.is_empty());
    let fix = "write a location as `latitude,longitude`, optionally `|name|address`, e.g. `52.5219,13.4132|Parley Shop|Alexanderplatz 1, Berlin`";
    let (lat, long) = coords
        .split_once(',')
        .ok_or_else(|| format!("`{}` is not a location: {fix}", crate::excerpt(raw)))?;
    let parse = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    let (Some(latitude), Some(longitude)) = (parse(lat), parse(long)) else {
        return Err(format!(
            "`{}` has no numeric coordinates: {fix}",
            crate::excerpt(raw)
        ));
    };
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return Err(format!(
            "latitude must be within ±90 and longitude within ±180, got {latitude},{longitude}"
        ));
    }
    Ok(RenderedHeader::Location {
        latitude,
        longitude,
        name: name.map(str::to_owned),
        address: address.map(str::to_owned),
    })
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RenderedParam {
    /// Set for named templates (`parameter_name` on the wire).
    pub parameter_name: Option<String>,
    pub text: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RenderedButton {
    pub index: usize,
    pub sub_type: ButtonSubType,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::{TagValue, Tags};
    use crate::template::TemplateStatus;
    use crate::template::tests::{order_update, spring_sale, welcome};
    use proptest::prelude::*;
    use serde_json::json;

    fn named(pairs: &[(&str, &str)]) -> VariableInput {
        VariableInput::Named(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    fn list(items: &[&str]) -> VariableInput {
        VariableInput::List(items.iter().map(|s| (*s).to_owned()).collect())
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), TagValue::String((*v).to_owned())))
            .collect()
    }

    fn pickup_point() -> Template {
        Template::from_meta_json(&json!({
            "name": "pickup_point", "language": "en", "category": "UTILITY", "status": "APPROVED",
            "components": [
                {"type": "HEADER", "format": "LOCATION"},
                {"type": "BODY", "text": "Your parcel waits at this pickup point."}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn filled_values_stay_within_meta_limits() {
        let t = Template::from_meta_json(&json!({
            "name": "sale", "language": "en", "category": "MARKETING", "status": "APPROVED",
            "parameter_format": "NAMED",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Hi {{who}}, our sale is on",
                 "example": {"header_text_named_params": [{"param_name": "who", "example": "Ana"}]}},
                {"type": "BODY", "text": "Dear {{first_name}}, {{first_name}}! Code {{code}}.",
                 "example": {"body_text_named_params": [
                    {"param_name": "first_name", "example": "Ana"},
                    {"param_name": "code", "example": "X1"}]}},
                {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Shop",
                 "url": "https://shop.example/{{1}}", "example": ["a"]}]}
            ]
        }))
        .unwrap();
        let input = named(&[
            ("who", "{{who}}"),
            ("first_name", "{{first_name}}"),
            ("code", "{{code}}"),
            ("button.0", "{{path}}"),
        ]);
        let b = BoundTemplate::bind(&t, &input).unwrap();
        let ok = tags(&[
            ("who", "Ana"),
            ("first_name", "Ana"),
            ("code", "X"),
            ("path", "p"),
        ]);
        assert!(b.render(&ok).is_ok());
        let too_long = |pairs: &[(&str, &str)]| {
            let mut t = ok.clone();
            for (k, v) in pairs {
                t.insert((*k).into(), TagValue::String((*v).into()));
            }
            match b.render(&t).unwrap_err() {
                SkipReason::TooLong {
                    variable,
                    part,
                    limit,
                } => (variable, part, limit),
                other => panic!("{other:?}"),
            }
        };
        // The header holds 60 characters with its text: 19 of them are fixed.
        let h = "x".repeat(60 - 19);
        assert!(
            b.render(&tags(&[
                ("who", &h),
                ("first_name", "A"),
                ("code", "X"),
                ("path", "p")
            ]))
            .is_ok()
        );
        assert_eq!(
            too_long(&[("who", &format!("{h}x"))]),
            ("header".into(), "the header".into(), 60)
        );
        // Each value takes 1,024 characters; the filled body (15 fixed characters, a value used
        // twice counts twice) too.
        let full = "x".repeat(504);
        let fits = tags(&[
            ("who", "A"),
            ("first_name", &full),
            ("code", "X"),
            ("path", "p"),
        ]);
        assert!(b.render(&fits).is_ok());
        assert_eq!(
            too_long(&[("first_name", &"x".repeat(504)), ("code", "xy")]),
            ("code".into(), "the body".into(), 1024)
        );
        assert_eq!(
            too_long(&[("first_name", &"x".repeat(505))]),
            ("first_name".into(), "the body".into(), 1024)
        );
        assert_eq!(
            too_long(&[("code", &"x".repeat(1025))]),
            ("code".into(), "the body".into(), 1024)
        );
        assert_eq!(
            too_long(&[("path", &"x".repeat(2000))]),
            ("button.0".into(), "the button URL".into(), 2000)
        );
        // A literal value over the limit is refused when binding, naming the variable.
        let mut literal = input.clone();
        if let VariableInput::Named(m) = &mut literal {
            m.insert("code".into(), "y".repeat(1025));
        }
        let e = BoundTemplate::bind(&t, &literal).unwrap_err();
        assert_eq!(e.code(), VARIABLE_TOO_LONG);
        assert_eq!(e.field(), "variables.code");
    }

    #[test]
    fn location_header_literal_dynamic_and_invalid() {
        let t = pickup_point();
        let b = BoundTemplate::bind(
            &t,
            &named(&[(
                "header",
                "52.5219, 13.4132|Parley Shop|Alexanderplatz 1, Berlin",
            )]),
        )
        .unwrap();
        assert_eq!(
            b.render_literal().unwrap().header,
            Some(RenderedHeader::Location {
                latitude: 52.5219,
                longitude: 13.4132,
                name: Some("Parley Shop".into()),
                address: Some("Alexanderplatz 1, Berlin".into()),
            })
        );
        let only = BoundTemplate::bind(&t, &named(&[("header", "-33.86,151.2")])).unwrap();
        assert!(matches!(
            only.render_literal().unwrap().header,
            Some(RenderedHeader::Location {
                name: None,
                address: None,
                ..
            })
        ));
        for bad in ["Berlin", "91,0", "0,181", "a,b", "NaN,1"] {
            let e = BoundTemplate::bind(&t, &named(&[("header", bad)])).unwrap_err();
            assert_eq!(e.code(), "variable_format", "{bad}");
        }
        let dynamic = BoundTemplate::bind(&t, &named(&[("header", "{{store_location}}")])).unwrap();
        let ok = dynamic
            .render(&tags(&[("store_location", "48.137,11.575|Munich store")]))
            .unwrap();
        assert!(matches!(ok.header, Some(RenderedHeader::Location { .. })));
        let skipped = dynamic
            .render(&tags(&[("store_location", "nowhere")]))
            .unwrap_err();
        assert_eq!(skipped.code(), "bad_tag_value");
        // Stored and read back unchanged.
        let json = serde_json::to_value(&ok).unwrap();
        assert_eq!(json["header"]["type"], "location");
        assert_eq!(
            serde_json::from_value::<RenderedTemplate>(json).unwrap(),
            ok
        );
    }

    #[test]
    fn welcome_named_literal_and_dynamic() {
        let t = welcome();
        let b = BoundTemplate::bind(&t, &named(&[("first_name", "Ana")])).unwrap();
        assert!(b.is_literal());
        assert_eq!(b.template_name().as_str(), "welcome");
        assert_eq!(b.language().as_str(), "en");
        let r = b.render_literal().unwrap();
        assert_eq!(
            r,
            RenderedTemplate {
                name: "welcome".into(),
                language: "en".into(),
                header: None,
                body: vec![RenderedParam {
                    parameter_name: Some("first_name".into()),
                    text: "Ana".into()
                }],
                buttons: vec![],
            }
        );

        let b = BoundTemplate::bind(
            &t,
            &named(&[("first_name", "{{first_name|CapitalizeFirst|there}}")]),
        )
        .unwrap();
        assert_eq!(b.referenced_tags(), vec!["first_name"]);
        assert_eq!(
            b.render(&tags(&[("first_name", "élodie")])).unwrap().body[0].text,
            "Élodie"
        );
        assert_eq!(b.render(&Tags::new()).unwrap().body[0].text, "there");

        // No default: a contact without the tag is skipped.
        let b = BoundTemplate::bind(&t, &named(&[("first_name", "{{first_name}}")])).unwrap();
        assert_eq!(b.render(&Tags::new()).unwrap_err().code(), "missing_tag");
        // Empty default renders empty, which Meta refuses: skipped as empty_value.
        let b = BoundTemplate::bind(
            &t,
            &named(&[("first_name", "{{first_name|CapitalizeFirst|}}")]),
        )
        .unwrap();
        assert_eq!(
            b.render(&Tags::new()).unwrap_err(),
            SkipReason::EmptyValue {
                variable: "first_name".into()
            }
        );
    }

    #[test]
    fn welcome_binding_errors() {
        let t = welcome();
        let err = BoundTemplate::bind(&t, &named(&[])).unwrap_err();
        assert_eq!(
            (err.code(), err.field().as_str()),
            ("variable_missing", "variables.first_name")
        );
        assert!(err.to_string().contains("`first_name`"), "{err}");

        let err = BoundTemplate::bind(&t, &named(&[("firstname", "Ana")])).unwrap_err();
        assert_eq!(
            (err.code(), err.field().as_str()),
            ("variable_unknown", "variables.firstname")
        );
        assert_eq!(
            err.to_string(),
            "variable `firstname` is not used by this template: it needs `first_name`"
        );

        let err =
            BoundTemplate::bind(&t, &named(&[("first_name", "{{first_name|Shout}}")])).unwrap_err();
        assert_eq!(
            (err.code(), err.field().as_str()),
            ("expression_invalid", "variables.first_name")
        );
        assert!(
            err.to_string().contains("unknown modifier `Shout`"),
            "{err}"
        );

        let err = BoundTemplate::bind(&t, &named(&[("first_name", "  ")])).unwrap_err();
        assert_eq!(err.code(), "variable_empty");

        let err = BoundTemplate::bind(&t, &list(&["Ana", "extra"])).unwrap_err();
        assert_eq!(
            (err.code(), err.field().as_str()),
            ("variable_count_mismatch", "variables")
        );
        assert_eq!(
            err.to_string(),
            "2 variables given but this template needs 1: `first_name`"
        );

        let mut paused = welcome();
        paused.status = TemplateStatus::Paused;
        let err = BoundTemplate::bind(&paused, &named(&[("first_name", "Ana")])).unwrap_err();
        assert_eq!(
            (err.code(), err.field().as_str()),
            ("template_not_sendable", "template")
        );
    }

    #[test]
    fn spring_sale_positional_with_media_and_url_button() {
        let t = spring_sale();
        let input = named(&[
            ("header", "https://cdn.example.com/spring.jpg"),
            ("1", "{{first_name|CapitalizeFirst|there}}"),
            ("2", "20%"),
            ("3", "{{sale_end|date:%B %e}}"),
            ("button.0", "{{coupon||SPRING}}"),
        ]);
        let b = BoundTemplate::bind(&t, &input).unwrap();
        assert!(!b.is_literal());
        let r = b
            .render(&tags(&[("first_name", "ana"), ("sale_end", "2025-04-30")]))
            .unwrap();
        assert_eq!(
            r.header,
            Some(RenderedHeader::Media {
                kind: HeaderFormat::Image,
                link: Some("https://cdn.example.com/spring.jpg".into()),
                id: None
            })
        );
        let texts: Vec<_> = r
            .body
            .iter()
            .map(|p| (p.parameter_name.clone(), p.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            vec![(None, "Ana"), (None, "20%"), (None, "April 30")]
        );
        assert_eq!(
            r.buttons,
            vec![RenderedButton {
                index: 0,
                sub_type: ButtonSubType::Url,
                text: "SPRING".into()
            }]
        );

        // Missing date tag without default: skipped.
        assert_eq!(
            b.render(&tags(&[("first_name", "ana")])).unwrap_err(),
            SkipReason::MissingTag {
                tag: "sale_end".into()
            }
        );

        // List form: values for all slots in order.
        let b =
            BoundTemplate::bind(&t, &list(&["123456789", "Ana", "20%", "May 1", "ana10"])).unwrap();
        let r = b.render_literal().unwrap();
        assert_eq!(
            r.header,
            Some(RenderedHeader::Media {
                kind: HeaderFormat::Image,
                link: None,
                id: Some("123456789".into())
            })
        );
        assert_eq!(r.buttons[0].text, "ana10");
        assert_eq!(r.body.len(), 3);
    }

    #[test]
    fn spring_sale_binding_errors() {
        let t = spring_sale();
        let err = BoundTemplate::bind(&t, &list(&["Ana", "20%", "May 1"])).unwrap_err();
        assert_eq!(err.code(), "variable_count_mismatch");
        assert!(
            err.to_string()
                .contains("`header`, `1`, `2`, `3`, `button.0`"),
            "{err}"
        );

        let err = BoundTemplate::bind(&t, &list(&["spring.jpg", "Ana", "20%", "May 1", "x"]))
            .unwrap_err();
        assert_eq!(
            (err.code(), err.field().as_str()),
            ("variable_format", "variables.header")
        );
        assert!(err.to_string().contains("not a media link or id"), "{err}");

        let err = BoundTemplate::bind(
            &t,
            &named(&[
                ("1", "Ana"),
                ("2", "20%"),
                ("3", "May 1"),
                ("button.0", "x"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            (err.code(), err.field().as_str()),
            ("variable_missing", "variables.header")
        );

        let err = BoundTemplate::bind(
            &t,
            &named(&[
                ("header", "1"),
                ("1", "Ana"),
                ("2", "20%"),
                ("3", "May 1"),
                ("button.1", "x"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            (err.code(), err.field().as_str()),
            ("variable_unknown", "variables.button.1")
        );

        // A dynamic media value is classified per recipient.
        let b = BoundTemplate::bind(&t, &list(&["{{image}}", "Ana", "20%", "May 1", "x"])).unwrap();
        let err = b.render(&tags(&[("image", "not a url")])).unwrap_err();
        assert_eq!(err, SkipReason::BadTagValue {
            tag: "image".into(),
            reason: "`not a url` is not a media link or id: give an http(s) URL like https://example.com/sale.jpg or the numeric id of an uploaded media".into(),
        });
        assert!(
            b.render(&tags(&[("image", "http://x.example/a.png")]))
                .is_ok()
        );
    }

    #[test]
    fn media_values() {
        assert!(matches!(
            classify_media("https://a.example/x.jpg"),
            Ok(MediaRef::Link(_))
        ));
        assert!(matches!(
            classify_media("HTTP://a.example/x.jpg"),
            Ok(MediaRef::Link(_))
        ));
        assert!(matches!(classify_media(" 1234 "), Ok(MediaRef::Id("1234"))));
        assert!(matches!(
            classify_media("http://ñ.example/ü.png"),
            Ok(MediaRef::Link(_))
        ));
        for bad in ["", "https://", "ftp://a/b", "4::aW1h", "https://a b", "12a"] {
            assert!(classify_media(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn order_update_named() {
        let t = order_update();
        let b = BoundTemplate::bind(
            &t,
            &named(&[
                ("first_name", "{{first_name|CapitalizeAllFirst"),
                ("order_id", "{{order_id}}"),
            ]),
        );
        let err = b.unwrap_err();
        assert_eq!(err.code(), "expression_invalid", "{err}");

        let b = BoundTemplate::bind(
            &t,
            &named(&[
                ("first_name", "{{name|CapitalizeAllFirst|customer}}"),
                ("order_id", "{{order_id}}"),
            ]),
        )
        .unwrap();
        assert_eq!(b.referenced_tags(), vec!["name", "order_id"]);
        let r = b
            .render(&tags(&[("name", "mary ann"), ("order_id", "A-1001")]))
            .unwrap();
        assert_eq!(
            r.body[0],
            RenderedParam {
                parameter_name: Some("first_name".into()),
                text: "Mary Ann".into()
            }
        );
        assert_eq!(
            r.body[1],
            RenderedParam {
                parameter_name: Some("order_id".into()),
                text: "A-1001".into()
            }
        );
        assert_eq!(
            b.render(&tags(&[("name", "x")])).unwrap_err().code(),
            "missing_tag"
        );

        let err = BoundTemplate::bind(&t, &named(&[("first_name", "Ana")])).unwrap_err();
        assert_eq!(
            (err.code(), err.field().as_str()),
            ("variable_missing", "variables.order_id")
        );
        // List form works for named templates too, in slot order.
        let r = BoundTemplate::bind(&t, &list(&["Ana", "A-1"]))
            .unwrap()
            .render_literal()
            .unwrap();
        assert_eq!(r.body[1].text, "A-1");
    }

    #[test]
    fn named_text_header_accepts_its_parameter_name() {
        let v = json!({
            "name": "hello", "language": "en", "category": "UTILITY", "status": "APPROVED",
            "parameter_format": "NAMED",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Hello {{shop}}"},
                {"type": "BODY", "text": "Hi {{first_name}}"}
            ]
        });
        let t = Template::from_meta_json(&v).unwrap();
        let r = BoundTemplate::bind(&t, &named(&[("shop", "Demo"), ("first_name", "Ana")]))
            .unwrap()
            .render_literal()
            .unwrap();
        assert_eq!(
            r.header,
            Some(RenderedHeader::Text {
                text: "Demo".into(),
                parameter_name: Some("shop".into())
            })
        );
        let r = BoundTemplate::bind(&t, &named(&[("header", "Shop"), ("first_name", "Ana")]))
            .unwrap()
            .render_literal()
            .unwrap();
        assert_eq!(
            r.header,
            Some(RenderedHeader::Text {
                text: "Shop".into(),
                parameter_name: Some("shop".into())
            })
        );
    }

    #[test]
    fn variable_input_from_json() {
        let v: VariableInput =
            serde_json::from_str(r#"{"first_name":"Ana","n":3,"f":2.5}"#).unwrap();
        assert_eq!(v, named(&[("first_name", "Ana"), ("n", "3"), ("f", "2.5")]));
        let v: VariableInput = serde_json::from_str(r#"["Ana", 7]"#).unwrap();
        assert_eq!(v, list(&["Ana", "7"]));
        assert!(serde_json::from_str::<VariableInput>(r#"{"a":true}"#).is_err());
        assert!(serde_json::from_str::<VariableInput>(r#"[null]"#).is_err());
        assert!(serde_json::from_str::<VariableInput>(r#""x""#).is_err());
        assert_eq!(serde_json::to_string(&list(&["a"])).unwrap(), r#"["a"]"#);

        let err = VariableInput::from_json(&json!({"first_name": {"x": 1}})).unwrap_err();
        assert_eq!(
            (err.code(), err.field().as_str()),
            ("variables_invalid", "variables.first_name")
        );
        assert!(
            err.to_string()
                .contains("an object is not a variable value"),
            "{err}"
        );
        assert_eq!(
            VariableInput::from_json(&json!(null)).unwrap(),
            VariableInput::default()
        );
        assert_eq!(
            VariableInput::from_json(&json!(true)).unwrap_err().field(),
            "variables"
        );
        assert_eq!(
            VariableInput::from_json(&json!([1, "b"])).unwrap(),
            list(&["1", "b"])
        );
    }

    #[test]
    fn rendered_template_serde() {
        let b = BoundTemplate::bind(&spring_sale(), &list(&["123", "Ana", "20%", "May 1", "x"]))
            .unwrap();
        let r = b.render_literal().unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["header"],
            json!({"type": "media", "kind": "IMAGE", "link": null, "id": "123"})
        );
        assert_eq!(
            json["buttons"][0],
            json!({"index": 0, "sub_type": "url", "text": "x"})
        );
        assert_eq!(serde_json::from_value::<RenderedTemplate>(json).unwrap(), r);
    }

    proptest! {
        #[test]
        fn bind_never_panics(values in prop::collection::vec("\\PC{0,24}", 0..7), keys in prop::collection::vec("[a-z0-9_.]{0,10}", 0..5)) {
            for t in [welcome(), spring_sale(), order_update()] {
                if let Ok(b) = BoundTemplate::bind(&t, &VariableInput::List(values.clone())) {
                    let _ = b.render(&Tags::new());
                }
                let map = keys.iter().cloned().zip(values.iter().cloned()).collect();
                if let Ok(b) = BoundTemplate::bind(&t, &VariableInput::Named(map)) {
                    let _ = b.render(&Tags::new());
                }
            }
        }
    }
}
