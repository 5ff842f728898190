//! WhatsApp message templates as Meta approved them, with the same checks Meta makes
//! (name charset, positional vs named parameters, button variables, header media), so a bad
//! send is refused here instead of costing a call and an error from Meta.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Why a template or one of its parts was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "`{0}` is not a template name: use 1 to 512 lowercase letters, digits and underscores, e.g. order_update"
    )]
    InvalidName(String),
    #[error(
        "`{0}` is not a template language: use a code like en, en_US, pt_BR or zh_CN (language in lowercase, optional _ and region in uppercase)"
    )]
    InvalidLanguage(String),
    #[error("`{0}` is not a template category: use MARKETING, UTILITY or AUTHENTICATION")]
    InvalidCategory(String),
    #[error("`{0}` is not a parameter format: use POSITIONAL or NAMED")]
    InvalidParameterFormat(String),
    #[error("the template has no `{0}`: Meta's template object must include it")]
    MissingField(&'static str),
    #[error("{location}: {message}")]
    Parameters { location: String, message: String },
    #[error("template `{name}` is {status} and cannot be sent: {advice}")]
    NotSendable {
        name: String,
        status: TemplateStatus,
        advice: &'static str,
    },
}

impl TemplateError {
    /// Stable snake_case code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            TemplateError::InvalidName(_) => "template_name_invalid",
            TemplateError::InvalidLanguage(_) => "template_language_invalid",
            TemplateError::InvalidCategory(_) => "template_category_invalid",
            TemplateError::InvalidParameterFormat(_) => "template_parameter_format_invalid",
            TemplateError::MissingField(_) => "template_field_missing",
            TemplateError::Parameters { .. } => "template_parameters_invalid",
            TemplateError::NotSendable { .. } => "template_not_sendable",
        }
    }
}

macro_rules! text_newtype_serde {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $name {
            type Err = TemplateError;
            fn from_str(s: &str) -> Result<Self, TemplateError> {
                Self::parse(s)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A template name as Meta allows it: 1 to 512 of `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateName(String);

impl TemplateName {
    pub fn parse(input: &str) -> Result<TemplateName, TemplateError> {
        let ok = !input.is_empty()
            && input.len() <= 512
            && input
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(TemplateName(input.to_owned()))
        } else {
            Err(TemplateError::InvalidName(
                crate::excerpt(input).into_owned(),
            ))
        }
    }
}
text_newtype_serde!(TemplateName);

/// A template language code such as `en`, `en_US`, `pt_BR`; `en-US` is normalized to `en_US`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LanguageCode(String);

impl LanguageCode {
    pub fn parse(input: &str) -> Result<LanguageCode, TemplateError> {
        let bad = || TemplateError::InvalidLanguage(crate::excerpt(input).into_owned());
        let (lang, region) = match input.find(['_', '-']) {
            Some(i) => (&input[..i], Some(&input[i + 1..])),
            None => (input, None),
        };
        if !(2..=3).contains(&lang.len()) || !lang.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(bad());
        }
        let mut out = String::with_capacity(input.len());
        out.push_str(lang);
        if let Some(region) = region {
            if region.len() != 2
                || !region
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                return Err(bad());
            }
            out.push('_');
            out.push_str(region);
        }
        Ok(LanguageCode(out))
    }
}
text_newtype_serde!(LanguageCode);

/// Meta's template category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TemplateCategory {
    Marketing,
    Utility,
    Authentication,
}

impl TemplateCategory {
    /// Case-insensitive: Meta's own examples use both `UTILITY` and `utility`.
    pub fn parse(input: &str) -> Result<TemplateCategory, TemplateError> {
        match input.to_ascii_uppercase().as_str() {
            "MARKETING" => Ok(TemplateCategory::Marketing),
            "UTILITY" => Ok(TemplateCategory::Utility),
            "AUTHENTICATION" => Ok(TemplateCategory::Authentication),
            _ => Err(TemplateError::InvalidCategory(
                crate::excerpt(input).into_owned(),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TemplateCategory::Marketing => "MARKETING",
            TemplateCategory::Utility => "UTILITY",
            TemplateCategory::Authentication => "AUTHENTICATION",
        }
    }
}

impl fmt::Display for TemplateCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TemplateCategory {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, TemplateError> {
        Self::parse(s)
    }
}

/// Meta's review status of a template. Statuses Meta adds later are kept as `Unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TemplateStatus {
    Approved,
    Pending,
    Rejected,
    Paused,
    Disabled,
    InAppeal,
    Reinstated,
    Flagged,
    Deleted,
    PendingDeletion,
    LimitExceeded,
    Archived,
    Unarchived,
    Locked,
    Unknown(String),
}

impl TemplateStatus {
    /// Case-insensitive; unknown values are kept, never refused.
    pub fn parse(input: &str) -> TemplateStatus {
        match input.to_ascii_uppercase().as_str() {
            "APPROVED" => TemplateStatus::Approved,
            "PENDING" => TemplateStatus::Pending,
            "REJECTED" => TemplateStatus::Rejected,
            "PAUSED" => TemplateStatus::Paused,
            "DISABLED" => TemplateStatus::Disabled,
            "IN_APPEAL" => TemplateStatus::InAppeal,
            "REINSTATED" => TemplateStatus::Reinstated,
            "FLAGGED" => TemplateStatus::Flagged,
            "DELETED" => TemplateStatus::Deleted,
            "PENDING_DELETION" => TemplateStatus::PendingDeletion,
            "LIMIT_EXCEEDED" => TemplateStatus::LimitExceeded,
            "ARCHIVED" => TemplateStatus::Archived,
            "UNARCHIVED" => TemplateStatus::Unarchived,
            "LOCKED" => TemplateStatus::Locked,
            _ => TemplateStatus::Unknown(input.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TemplateStatus::Approved => "APPROVED",
            TemplateStatus::Pending => "PENDING",
            TemplateStatus::Rejected => "REJECTED",
            TemplateStatus::Paused => "PAUSED",
            TemplateStatus::Disabled => "DISABLED",
            TemplateStatus::InAppeal => "IN_APPEAL",
            TemplateStatus::Reinstated => "REINSTATED",
            TemplateStatus::Flagged => "FLAGGED",
            TemplateStatus::Deleted => "DELETED",
            TemplateStatus::PendingDeletion => "PENDING_DELETION",
            TemplateStatus::LimitExceeded => "LIMIT_EXCEEDED",
            TemplateStatus::Archived => "ARCHIVED",
            TemplateStatus::Unarchived => "UNARCHIVED",
            TemplateStatus::Locked => "LOCKED",
            TemplateStatus::Unknown(s) => s,
        }
    }

    /// What the user should do about a status that blocks sending.
    fn advice(&self) -> &'static str {
        match self {
            TemplateStatus::Approved => "it is approved",
            TemplateStatus::Pending | TemplateStatus::InAppeal => {
                "wait until Meta approves it (template status updates arrive by webhook)"
            }
            TemplateStatus::Rejected => {
                "edit it to fix the rejection reason shown in WhatsApp Manager and submit it again, or use another template"
            }
            TemplateStatus::Paused => {
                "Meta paused it for low quality; improve it or wait for the pause to end, or use another template"
            }
            TemplateStatus::Disabled => {
                "Meta disabled it after repeated pauses; create a new template"
            }
            TemplateStatus::Flagged => {
                "its quality is low and it may be paused; it can be sent again once Meta reinstates it"
            }
            TemplateStatus::Deleted | TemplateStatus::PendingDeletion => {
                "it was deleted; create a new template"
            }
            TemplateStatus::Archived => "unarchive it in WhatsApp Manager first",
            TemplateStatus::LimitExceeded | TemplateStatus::Locked => {
                "Meta blocks it for now; check it in WhatsApp Manager or use another template"
            }
            TemplateStatus::Reinstated | TemplateStatus::Unarchived => {
                "sync templates again to confirm it is approved"
            }
            TemplateStatus::Unknown(_) => {
                "Parley does not know this status; sync templates again or check WhatsApp Manager"
            }
        }
    }
}

impl fmt::Display for TemplateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TemplateStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TemplateStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(TemplateStatus::parse(&s))
    }
}

/// How body parameters are written: `{{1}}` or `{{first_name}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ParameterFormat {
    Positional,
    Named,
}

impl ParameterFormat {
    /// Case-insensitive (`named` when creating, `NAMED` when reading).
    pub fn parse(input: &str) -> Result<ParameterFormat, TemplateError> {
        match input.to_ascii_uppercase().as_str() {
            "POSITIONAL" => Ok(ParameterFormat::Positional),
            "NAMED" => Ok(ParameterFormat::Named),
            _ => Err(TemplateError::InvalidParameterFormat(
                crate::excerpt(input).into_owned(),
            )),
        }
    }
}

/// What a template header shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HeaderFormat {
    Text,
    Image,
    Video,
    Document,
    Location,
}

impl HeaderFormat {
    /// Meta's lower-case parameter type (`image`, `video`…), as used in send requests.
    pub fn as_param_type(self) -> &'static str {
        match self {
            HeaderFormat::Text => "text",
            HeaderFormat::Image => "image",
            HeaderFormat::Video => "video",
            HeaderFormat::Document => "document",
            HeaderFormat::Location => "location",
        }
    }

    pub fn is_media(self) -> bool {
        matches!(
            self,
            HeaderFormat::Image | HeaderFormat::Video | HeaderFormat::Document
        )
    }
}

/// A message template as Meta approved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub name: TemplateName,
    pub language: LanguageCode,
    pub category: TemplateCategory,
    pub status: TemplateStatus,
    pub parameter_format: ParameterFormat,
    pub header: Option<Header>,
    pub body: String,
    pub footer: Option<String>,
    pub buttons: Vec<Button>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: HeaderFormat,
    pub text: Option<String>,
}

/// A template button. Kinds Parley does not model (FLOW, MPM, CATALOG…) are kept as `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Button {
    QuickReply {
        text: String,
    },
    Url {
        text: String,
        url: String,
    },
    PhoneNumber {
        text: String,
        phone_number: String,
    },
    CopyCode {
        example: Option<String>,
    },
    Otp {
        otp_type: String,
        text: Option<String>,
    },
    /// Asks a customer known only by their business-scoped user id to share their phone
    /// number (META_2026 §3.4); no parameters at send time.
    RequestContactInfo {
        text: Option<String>,
    },
    Other {
        kind: String,
    },
}

/// One value a send must provide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableSlot {
    pub location: SlotLocation,
    /// The key callers use: "header", "1", "first_name", "button.0".
    pub key: String,
    pub kind: SlotKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotLocation {
    Header,
    Body,
    Button {
        index: usize,
        sub_type: ButtonSubType,
    },
}

/// The `sub_type` of a button component in a send request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonSubType {
    Url,
    CopyCode,
    QuickReply,
}

impl ButtonSubType {
    /// Meta's wire spelling: `url`, `copy_code`, `quick_reply`.
    pub fn as_str(self) -> &'static str {
        match self {
            ButtonSubType::Url => "url",
            ButtonSubType::CopyCode => "copy_code",
            ButtonSubType::QuickReply => "quick_reply",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    Text,
    Image,
    Video,
    Document,
    Location,
    Payload,
    CouponCode,
}

/// A `{{…}}` parameter found in template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Param {
    Positional(u32),
    Named(String),
}

/// Finds `{{1}}` / `{{name}}` parameters in order of appearance (duplicates kept).
pub(crate) fn scan_params(text: &str, location: &str) -> Result<Vec<Param>, TemplateError> {
    let err = |message: String| TemplateError::Parameters {
        location: location.to_owned(),
        message,
    };
    let mut params = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(err("`{{` is not closed with `}}`".into()));
        };
        let inner = after[..close].trim();
        if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            match inner.parse::<u32>() {
                Ok(n) if n >= 1 => params.push(Param::Positional(n)),
                _ => {
                    return Err(err(format!(
                        "`{{{{{inner}}}}}` is not a valid parameter: positional parameters start at {{{{1}}}}"
                    )));
                }
            }
        } else if is_param_name(inner) {
            params.push(Param::Named(inner.to_owned()));
        } else {
            return Err(err(format!(
                "`{{{{{}}}}}` is not a valid parameter: use {{{{1}}}}, {{{{2}}}}… or a name of lowercase letters, digits and underscores like {{{{first_name}}}}",
                crate::excerpt(inner)
            )));
        }
        rest = &after[close + 2..];
    }
    Ok(params)
}

fn is_param_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks the parameters of one text against the format and returns the slot keys in order:
/// positional sorted 1..n (no gaps), named by first appearance.
fn param_keys(
    text: &str,
    location: &str,
    format: ParameterFormat,
) -> Result<Vec<String>, TemplateError> {
    let params = scan_params(text, location)?;
    let err = |message: String| TemplateError::Parameters {
        location: location.to_owned(),
        message,
    };
    let mut numbers: Vec<u32> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for p in params {
        match p {
            Param::Positional(n) => {
                if format == ParameterFormat::Named {
                    return Err(err(format!(
                        "`{{{{{n}}}}}` is positional but the template uses named parameters like {{{{first_name}}}}"
                    )));
                }
                if !numbers.contains(&n) {
                    numbers.push(n);
                }
            }
            Param::Named(name) => {
                if format == ParameterFormat::Positional {
                    return Err(err(format!(
                        "`{{{{{name}}}}}` is named but the template uses positional parameters like {{{{1}}}}"
                    )));
                }
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    if !numbers.is_empty() {
        numbers.sort_unstable();
        for (i, n) in numbers.iter().enumerate() {
            let expected = u32::try_from(i + 1).unwrap_or(u32::MAX);
            if *n != expected {
                return Err(err(format!(
                    "uses {{{{{n}}}}} but not {{{{{expected}}}}}: positional parameters must be numbered 1 to n without gaps"
                )));
            }
        }
        return Ok(numbers.iter().map(u32::to_string).collect());
    }
    Ok(names)
}

impl Template {
    /// Builds from Meta's JSON template object (as `GET /{waba}/message_templates` returns:
    /// name, language, category, status, parameter_format, components[…]). Components Parley
    /// does not model (e.g. CAROUSEL) are ignored.
    pub fn from_meta_json(v: &Value) -> Result<Template, TemplateError> {
        let str_field = |field: &'static str| -> Result<&str, TemplateError> {
            v.get(field)
                .and_then(Value::as_str)
                .ok_or(TemplateError::MissingField(field))
        };
        let name = TemplateName::parse(str_field("name")?)?;
        let language = LanguageCode::parse(str_field("language")?)?;
        let category = TemplateCategory::parse(str_field("category")?)?;
        let status = TemplateStatus::parse(str_field("status")?);
        let components = v
            .get("components")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();

        let mut header = None;
        let mut body = None;
        let mut footer = None;
        let mut buttons = Vec::new();
        for c in components {
            let kind = c.get("type").and_then(Value::as_str).unwrap_or_default();
            let text = c.get("text").and_then(Value::as_str).map(str::to_owned);
            match kind.to_ascii_uppercase().as_str() {
                "HEADER" => {
                    let format = match c
                        .get("format")
                        .and_then(Value::as_str)
                        .unwrap_or("TEXT")
                        .to_ascii_uppercase()
                        .as_str()
                    {
                        "TEXT" => HeaderFormat::Text,
                        "IMAGE" => HeaderFormat::Image,
                        "VIDEO" => HeaderFormat::Video,
                        "DOCUMENT" => HeaderFormat::Document,
                        "LOCATION" => HeaderFormat::Location,
                        other => {
                            return Err(TemplateError::Parameters {
                                location: "header".into(),
                                message: format!(
                                    "header format `{}` is not supported: Parley sends TEXT, IMAGE, VIDEO, DOCUMENT and LOCATION headers",
                                    crate::excerpt(other)
                                ),
                            });
                        }
                    };
                    header = Some(Header { format, text });
                }
                "BODY" => body = Some(text.unwrap_or_default()),
                "FOOTER" => footer = text,
                "BUTTONS" => {
                    let list = c
                        .get("buttons")
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    buttons.extend(list.iter().map(button_from_meta));
                }
                _ => {}
            }
        }
        let body = body.ok_or(TemplateError::MissingField("BODY component"))?;

        let parameter_format = match v.get("parameter_format").and_then(Value::as_str) {
            Some(f) => ParameterFormat::parse(f)?,
            // Older objects omit it; infer from the body so named templates still work.
            None => {
                let named = scan_params(&body, "body")?
                    .iter()
                    .any(|p| matches!(p, Param::Named(_)));
                if named {
                    ParameterFormat::Named
                } else {
                    ParameterFormat::Positional
                }
            }
        };

        let template = Template {
            name,
            language,
            category,
            status,
            parameter_format,
            header,
            body,
            footer,
            buttons,
        };
        template.check_parameters()?;
        Ok(template)
    }

    /// Meta's checks on parameters: consistent format, 1..n without gaps, at most one header
    /// variable, at most one variable per URL button.
    fn check_parameters(&self) -> Result<(), TemplateError> {
        param_keys(&self.body, "body", self.parameter_format)?;
        if let Some(Header {
            format: HeaderFormat::Text,
            text: Some(text),
        }) = &self.header
        {
            let keys = param_keys(text, "header", self.parameter_format)?;
            if keys.len() > 1 {
                return Err(TemplateError::Parameters {
                    location: "header".into(),
                    message: "a text header may have at most one parameter".into(),
                });
            }
        }
        for (i, b) in self.buttons.iter().enumerate() {
            if let Button::Url { url, .. } = b {
                let params = scan_params(url, &format!("button {i}"))?;
                if params.len() > 1 {
                    return Err(TemplateError::Parameters {
                        location: format!("button {i}"),
                        message:
                            "a URL button may have at most one parameter, at the end of the URL"
                                .into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The variable slots in order: header (a text header with a variable, or a media/location
    /// header), body parameters (positional 1..n, or named by first appearance), then each
    /// button with a variable (URL with `{{1}}`, COPY_CODE, OTP) by index.
    ///
    /// OTP buttons (authentication templates) are sent with sub_type `url` carrying the code,
    /// as Meta's authentication-template docs show.
    pub fn variables(&self) -> Vec<VariableSlot> {
        let mut slots = Vec::new();
        if let Some(h) = &self.header {
            let kind = match h.format {
                HeaderFormat::Text => {
                    let has_var = h.text.as_deref().is_some_and(|t| {
                        scan_params(t, "header")
                            .map(|p| !p.is_empty())
                            .unwrap_or(false)
                    });
                    has_var.then_some(SlotKind::Text)
                }
                HeaderFormat::Image => Some(SlotKind::Image),
                HeaderFormat::Video => Some(SlotKind::Video),
                HeaderFormat::Document => Some(SlotKind::Document),
                HeaderFormat::Location => Some(SlotKind::Location),
            };
            if let Some(kind) = kind {
                slots.push(VariableSlot {
                    location: SlotLocation::Header,
                    key: "header".into(),
                    kind,
                });
            }
        }
        for key in self.body_keys() {
            slots.push(VariableSlot {
                location: SlotLocation::Body,
                key,
                kind: SlotKind::Text,
            });
        }
        for (index, b) in self.buttons.iter().enumerate() {
            let slot = match b {
                Button::Url { url, .. } if url.contains("{{") => {
                    Some((ButtonSubType::Url, SlotKind::Text))
                }
                Button::CopyCode { .. } => Some((ButtonSubType::CopyCode, SlotKind::CouponCode)),
                Button::Otp { .. } => Some((ButtonSubType::Url, SlotKind::Text)),
                _ => None,
            };
            if let Some((sub_type, kind)) = slot {
                slots.push(VariableSlot {
                    location: SlotLocation::Button { index, sub_type },
                    key: format!("button.{index}"),
                    kind,
                });
            }
        }
        slots
    }

    /// Body slot keys; a template that failed the checks yields what can be read.
    fn body_keys(&self) -> Vec<String> {
        param_keys(&self.body, "body", self.parameter_format).unwrap_or_else(|_| {
            let mut keys: Vec<String> = Vec::new();
            for p in scan_params(&self.body, "body").unwrap_or_default() {
                let k = match p {
                    Param::Positional(n) => n.to_string(),
                    Param::Named(n) => n,
                };
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            keys
        })
    }

    /// The name of the header's own parameter (`{{name}}` in a named text header).
    pub fn header_parameter_name(&self) -> Option<String> {
        let text = self.header.as_ref()?.text.as_deref()?;
        scan_params(text, "header")
            .ok()?
            .into_iter()
            .find_map(|p| match p {
                Param::Named(n) => Some(n),
                Param::Positional(_) => None,
            })
    }

    /// Only APPROVED templates can be sent; anything else is refused with what to do.
    pub fn is_sendable(&self) -> Result<(), TemplateError> {
        match self.status {
            TemplateStatus::Approved => Ok(()),
            ref status => Err(TemplateError::NotSendable {
                name: self.name.to_string(),
                status: status.clone(),
                advice: status.advice(),
            }),
        }
    }
}

fn button_from_meta(b: &Value) -> Button {
    let s = |f: &str| b.get(f).and_then(Value::as_str).map(str::to_owned);
    let kind = s("type").unwrap_or_default();
    match kind.to_ascii_uppercase().as_str() {
        "QUICK_REPLY" => Button::QuickReply {
            text: s("text").unwrap_or_default(),
        },
        "URL" => Button::Url {
            text: s("text").unwrap_or_default(),
            url: s("url").unwrap_or_default(),
        },
        "PHONE_NUMBER" => Button::PhoneNumber {
            text: s("text").unwrap_or_default(),
            phone_number: s("phone_number").unwrap_or_default(),
        },
        "COPY_CODE" => Button::CopyCode {
            example: match b.get("example") {
                Some(Value::String(e)) => Some(e.clone()),
                Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
                _ => None,
            },
        },
        "OTP" => Button::Otp {
            otp_type: s("otp_type").unwrap_or_default(),
            text: s("text"),
        },
        "REQUEST_CONTACT_INFO" => Button::RequestContactInfo { text: s("text") },
        _ => Button::Other { kind },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    pub(crate) fn welcome_json() -> Value {
        json!({
            "name": "welcome", "language": "en", "category": "MARKETING", "status": "APPROVED",
            "parameter_format": "NAMED", "id": "1001",
            "components": [
                {"type": "BODY", "text": "Hi {{first_name}}, welcome to Parley Demo Shop! Reply STOP to stop receiving offers.",
                 "example": {"body_text_named_params": [{"param_name": "first_name", "example": "Pablo"}]}}
            ]
        })
    }

    pub(crate) fn spring_sale_json() -> Value {
        json!({
            "name": "spring_sale", "language": "en_US", "category": "MARKETING", "status": "APPROVED",
            "parameter_format": "POSITIONAL", "id": "1002",
            "components": [
                {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1h"]}},
                {"type": "BODY", "text": "Hi {{1}}, our spring sale is on: {{2}} off everything until {{3}}."},
                {"type": "BUTTONS", "buttons": [
                    {"type": "URL", "text": "Shop now", "url": "https://shop.example.com/sale/{{1}}"}
                ]}
            ]
        })
    }

    pub(crate) fn order_update_json() -> Value {
        json!({
            "name": "order_update", "language": "en", "category": "UTILITY", "status": "APPROVED",
            "parameter_format": "NAMED", "id": "1003",
            "components": [
                {"type": "BODY", "text": "Hi {{first_name}}, your order {{order_id}} has shipped and will arrive soon."}
            ]
        })
    }

    pub(crate) fn welcome() -> Template {
        Template::from_meta_json(&welcome_json()).unwrap()
    }
    pub(crate) fn spring_sale() -> Template {
        Template::from_meta_json(&spring_sale_json()).unwrap()
    }
    pub(crate) fn order_update() -> Template {
        Template::from_meta_json(&order_update_json()).unwrap()
    }

    fn keys(t: &Template) -> Vec<String> {
        t.variables().into_iter().map(|s| s.key).collect()
    }

    #[test]
    fn names_follow_meta_rules() {
        assert!(TemplateName::parse("order_update_2").is_ok());
        assert!(TemplateName::parse(&"a".repeat(512)).is_ok());
        for bad in ["", "Order", "order-update", "order update", "ördér"] {
            let err = TemplateName::parse(bad).unwrap_err();
            assert!(
                err.to_string()
                    .contains("lowercase letters, digits and underscores"),
                "{err}"
            );
        }
        assert!(TemplateName::parse(&"a".repeat(513)).is_err());
    }

    #[test]
    fn language_codes() {
        for (input, want) in [
            ("en", "en"),
            ("en_US", "en_US"),
            ("en-US", "en_US"),
            ("pt_BR", "pt_BR"),
            ("fil", "fil"),
            ("es_419", ""),
        ] {
            match LanguageCode::parse(input) {
                Ok(l) => assert_eq!(l.as_str(), want),
                Err(_) => assert_eq!(want, "", "{input} should parse"),
            }
        }
        for bad in ["", "e", "EN", "en_us", "en_USA", "english", "en_"] {
            assert!(LanguageCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn category_and_status_parse_case_insensitively() {
        assert_eq!(
            TemplateCategory::parse("utility").unwrap(),
            TemplateCategory::Utility
        );
        assert!(TemplateCategory::parse("promo").is_err());
        assert_eq!(TemplateStatus::parse("in_appeal"), TemplateStatus::InAppeal);
        assert_eq!(
            TemplateStatus::parse("NEW_THING"),
            TemplateStatus::Unknown("NEW_THING".into())
        );
        let json = serde_json::to_string(&TemplateStatus::PendingDeletion).unwrap();
        assert_eq!(json, "\"PENDING_DELETION\"");
        assert_eq!(
            serde_json::from_str::<TemplateStatus>("\"SOMETHING\"")
                .unwrap()
                .as_str(),
            "SOMETHING"
        );
    }

    #[test]
    fn demo_templates_parse_with_their_slots() {
        let w = welcome();
        assert_eq!(w.parameter_format, ParameterFormat::Named);
        assert_eq!(keys(&w), vec!["first_name"]);

        let s = spring_sale();
        assert_eq!(
            s.header,
            Some(Header {
                format: HeaderFormat::Image,
                text: None
            })
        );
        assert_eq!(keys(&s), vec!["header", "1", "2", "3", "button.0"]);
        let vars = s.variables();
        assert_eq!(vars[0].kind, SlotKind::Image);
        assert_eq!(
            vars[4].location,
            SlotLocation::Button {
                index: 0,
                sub_type: ButtonSubType::Url
            }
        );

        assert_eq!(keys(&order_update()), vec!["first_name", "order_id"]);
    }

    #[test]
    fn positional_parameters_sorted_and_without_gaps() {
        let mut v = spring_sale_json();
        v["components"][1]["text"] = json!("{{2}} then {{1}} then {{2}}");
        assert_eq!(
            keys(&Template::from_meta_json(&v).unwrap()),
            vec!["header", "1", "2", "button.0"]
        );

        v["components"][1]["text"] = json!("Hi {{1}} and {{3}}");
        let err = Template::from_meta_json(&v).unwrap_err();
        assert!(err.to_string().contains("without gaps"), "{err}");

        v["components"][1]["text"] = json!("Hi {{0}}");
        assert!(Template::from_meta_json(&v).is_err());

        v["components"][1]["text"] = json!("Hi {{first_name}}");
        let err = Template::from_meta_json(&v).unwrap_err();
        assert!(err.to_string().contains("positional"), "{err}");
    }

    #[test]
    fn missing_parameter_format_is_inferred() {
        let mut v = order_update_json();
        v.as_object_mut().unwrap().remove("parameter_format");
        assert_eq!(
            Template::from_meta_json(&v).unwrap().parameter_format,
            ParameterFormat::Named
        );
    }

    #[test]
    fn text_header_and_buttons() {
        let v = json!({
            "name": "otp", "language": "en", "category": "AUTHENTICATION", "status": "APPROVED",
            "parameter_format": "POSITIONAL",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Hello {{1}}"},
                {"type": "BODY", "text": "*{{1}}* is your code."},
                {"type": "FOOTER", "text": "Expires in 10 minutes."},
                {"type": "BUTTONS", "buttons": [
                    {"type": "QUICK_REPLY", "text": "Stop"},
                    {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "+4915112345678"},
                    {"type": "COPY_CODE", "example": "SAVE10"},
                    {"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"},
                    {"type": "FLOW", "text": "Open"}
                ]}
            ]
        });
        let t = Template::from_meta_json(&v).unwrap();
        assert_eq!(t.footer.as_deref(), Some("Expires in 10 minutes."));
        assert_eq!(
            t.buttons[4],
            Button::Other {
                kind: "FLOW".into()
            }
        );
        assert_eq!(keys(&t), vec!["header", "1", "button.2", "button.3"]);
        assert_eq!(t.variables()[2].kind, SlotKind::CouponCode);
    }

    #[test]
    fn missing_fields_are_named() {
        let mut v = welcome_json();
        v.as_object_mut().unwrap().remove("language");
        assert_eq!(
            Template::from_meta_json(&v),
            Err(TemplateError::MissingField("language"))
        );
        let v = json!({"name": "x", "language": "en", "category": "UTILITY", "status": "APPROVED", "components": []});
        assert!(Template::from_meta_json(&v).is_err());
        assert!(Template::from_meta_json(&json!(null)).is_err());
    }

    #[test]
    fn only_approved_templates_are_sendable() {
        let mut t = welcome();
        assert!(t.is_sendable().is_ok());
        t.status = TemplateStatus::Paused;
        let err = t.is_sendable().unwrap_err();
        assert_eq!(err.code(), "template_not_sendable");
        assert!(
            err.to_string()
                .starts_with("template `welcome` is PAUSED and cannot be sent"),
            "{err}"
        );
        t.status = TemplateStatus::Pending;
        assert!(
            t.is_sendable()
                .unwrap_err()
                .to_string()
                .contains("wait until Meta approves")
        );
    }

    #[test]
    fn stored_json_round_trips() {
        let t = spring_sale();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Template>(&json).unwrap(), t);
    }

    proptest! {
        #[test]
        fn template_name_parse_never_panics(s in "\\PC{0,40}") {
            let _ = TemplateName::parse(&s);
            let _ = LanguageCode::parse(&s);
        }

        #[test]
        fn body_scanning_never_panics(body in "[{}a-z0-9_ é]{0,40}") {
            let mut v = welcome_json();
            v["components"][0]["text"] = json!(body);
            if let Ok(t) = Template::from_meta_json(&v) {
                let _ = t.variables();
            }
        }
    }
}
