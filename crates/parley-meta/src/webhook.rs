//! The webhook envelope Meta POSTs (`object` → `entry[]` → `changes[]` → `field` + `value`)
//! and its changes, typed: [`Change::parse`] turns each into a [`WebhookChange`]. A field Parley
//! does not know, or a value that does not read, becomes [`WebhookChange::Unknown`] with the
//! raw value kept: webhooks are stored and shown, never an error.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use parley_domain::MessageState;

/// The `field` names of the changes Parley types.
pub mod fields {
    pub const MESSAGES: &str = "messages";
    pub const TEMPLATE_STATUS: &str = "message_template_status_update";
    pub const TEMPLATE_QUALITY: &str = "message_template_quality_update";
    pub const TEMPLATE_CATEGORY: &str = "template_category_update";
    pub const TEMPLATE_COMPONENTS: &str = "message_template_components_update";
    pub const PHONE_NUMBER_QUALITY: &str = "phone_number_quality_update";
    pub const PHONE_NUMBER_NAME: &str = "phone_number_name_update";
    pub const ACCOUNT_REVIEW: &str = "account_review_update";
    pub const ACCOUNT_UPDATE: &str = "account_update";
    pub const CAPABILITY_UPDATE: &str = "business_capability_update";
    pub const USER_PREFERENCES: &str = "user_preferences";
    /// Coexistence: the WhatsApp Business app's chat history after the history sync.
    pub const HISTORY: &str = "history";
    /// Coexistence: the app's contacts (after the contacts sync, then on every change).
    pub const SMB_APP_STATE_SYNC: &str = "smb_app_state_sync";
    /// Coexistence: messages the business sent from the app or a companion device.
    pub const SMB_MESSAGE_ECHOES: &str = "smb_message_echoes";
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebhookPayload {
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub entry: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Entry {
    /// The WABA id for `messages` and most fields; the partner's portfolio id for `account_update`.
    #[serde(default)]
    pub id: String,
    /// Unix seconds; Meta's coexistence examples send it as a string, so both are read.
    #[serde(default, deserialize_with = "int_or_string")]
    pub time: Option<i64>,
    #[serde(default)]
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Change {
    #[serde(default)]
    pub field: String,
    /// Kept as the text Meta sent and parsed once, by [`Change::parse`], straight into the
    /// field's type: a `messages` value holds up to 1,000 statuses, and a `Value` tree of
    /// them first cost more than the rest of their processing.
    #[serde(default)]
    pub value: Option<Box<RawValue>>,
}

impl Change {
    /// The typed change. Never fails: what does not read is `Unknown`, with the reason.
    pub fn parse(&self) -> WebhookChange {
        WebhookChange::parse(&self.field, self.value.as_deref())
    }

    /// The value as JSON (`null` when the change had none).
    pub fn value(&self) -> Value {
        raw_json(self.value.as_deref())
    }
}

fn raw_json(raw: Option<&RawValue>) -> Value {
    raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or(Value::Null)
}

/// One change of a webhook, by its `field`.
#[derive(Debug, Clone)]
pub enum WebhookChange {
    /// Inbound messages, statuses of sent ones, and value-level errors.
    Messages(MessagesValue),
    TemplateStatus(TemplateStatusValue),
    TemplateQuality(TemplateQualityValue),
    TemplateCategory(TemplateCategoryValue),
    TemplateComponents(TemplateComponentsValue),
    PhoneNumberQuality(PhoneNumberQualityValue),
    PhoneNumberName(PhoneNumberNameValue),
    AccountReview(AccountReviewValue),
    AccountUpdate(AccountUpdateValue),
    CapabilityUpdate(CapabilityValue),
    UserPreferences(UserPreferencesValue),
    /// Coexistence: a chunk of the app's chat history (or the decline, or late media).
    History(HistoryValue),
    /// Coexistence: contacts added, edited or removed in the app.
    StateSync(StateSyncValue),
    /// Coexistence: messages the business sent from the app.
    MessageEchoes(MessageEchoesValue),
    /// A field Parley does not type (`error` is `None`), or a known field whose value did not
    /// read (`error` says why). `value` is what Meta sent (`null` when nothing).
    Unknown {
        field: String,
        value: Value,
        error: Option<String>,
    },
}

impl WebhookChange {
    /// Reads `value` as the type of `field`. A missing or `null` value reads as an empty one.
    pub fn parse(field: &str, value: Option<&RawValue>) -> WebhookChange {
        fn typed<T: DeserializeOwned + Default>(
            field: &str,
            raw: Option<&RawValue>,
            variant: fn(T) -> WebhookChange,
        ) -> WebhookChange {
            let parsed = match raw {
                Some(raw) if raw.get().trim() != "null" => serde_json::from_str(raw.get()),
                _ => Ok(T::default()),
            };
            match parsed {
                Ok(value) => variant(value),
                Err(e) => WebhookChange::Unknown {
                    field: field.to_owned(),
                    value: raw_json(raw),
                    error: Some(e.to_string()),
                },
            }
        }
        match field {
            fields::MESSAGES => typed(field, value, WebhookChange::Messages),
            fields::TEMPLATE_STATUS => typed(field, value, WebhookChange::TemplateStatus),
            fields::TEMPLATE_QUALITY => typed(field, value, WebhookChange::TemplateQuality),
            fields::TEMPLATE_CATEGORY => typed(field, value, WebhookChange::TemplateCategory),
            fields::TEMPLATE_COMPONENTS => typed(field, value, WebhookChange::TemplateComponents),
            fields::PHONE_NUMBER_QUALITY => typed(field, value, WebhookChange::PhoneNumberQuality),
            fields::PHONE_NUMBER_NAME => typed(field, value, WebhookChange::PhoneNumberName),
            fields::ACCOUNT_REVIEW => typed(field, value, WebhookChange::AccountReview),
            fields::ACCOUNT_UPDATE => typed(field, value, WebhookChange::AccountUpdate),
            fields::CAPABILITY_UPDATE => typed(field, value, WebhookChange::CapabilityUpdate),
            fields::USER_PREFERENCES => typed(field, value, WebhookChange::UserPreferences),
            fields::HISTORY => typed(field, value, WebhookChange::History),
            fields::SMB_APP_STATE_SYNC => typed(field, value, WebhookChange::StateSync),
            fields::SMB_MESSAGE_ECHOES => typed(field, value, WebhookChange::MessageEchoes),
            _ => WebhookChange::Unknown {
                field: field.to_owned(),
                value: raw_json(value),
                error: None,
            },
        }
    }

    /// The `field` Meta named.
    pub fn field(&self) -> &str {
        match self {
            WebhookChange::Messages(_) => fields::MESSAGES,
            WebhookChange::TemplateStatus(_) => fields::TEMPLATE_STATUS,
            WebhookChange::TemplateQuality(_) => fields::TEMPLATE_QUALITY,
            WebhookChange::TemplateCategory(_) => fields::TEMPLATE_CATEGORY,
            WebhookChange::TemplateComponents(_) => fields::TEMPLATE_COMPONENTS,
            WebhookChange::PhoneNumberQuality(_) => fields::PHONE_NUMBER_QUALITY,
            WebhookChange::PhoneNumberName(_) => fields::PHONE_NUMBER_NAME,
            WebhookChange::AccountReview(_) => fields::ACCOUNT_REVIEW,
            WebhookChange::AccountUpdate(_) => fields::ACCOUNT_UPDATE,
            WebhookChange::CapabilityUpdate(_) => fields::CAPABILITY_UPDATE,
            WebhookChange::UserPreferences(_) => fields::USER_PREFERENCES,
            WebhookChange::History(_) => fields::HISTORY,
            WebhookChange::StateSync(_) => fields::SMB_APP_STATE_SYNC,
            WebhookChange::MessageEchoes(_) => fields::SMB_MESSAGE_ECHOES,
            WebhookChange::Unknown { field, .. } => field,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct MessagesValue {
    #[serde(default)]
    pub messaging_product: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub contacts: Vec<WebhookContact>,
    #[serde(default)]
    pub messages: Vec<InboundMessage>,
    #[serde(default)]
    pub statuses: Vec<StatusUpdate>,
    #[serde(default)]
    pub errors: Vec<StatusError>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Metadata {
    #[serde(default)]
    pub display_phone_number: Option<String>,
    #[serde(default)]
    pub phone_number_id: Option<String>,
}

/// One entry of `contacts` on inbound messages, statuses and echoes. Every field is optional:
/// Meta omits `wa_id` when the user hides their number behind a username, and status
/// `contacts` seen in practice lack `profile` or even `user_id` (META_2026 §3.2).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct WebhookContact {
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default)]
    pub profile: Option<Profile>,
    /// The user's business-scoped user id (BSUID).
    #[serde(default)]
    pub user_id: Option<String>,
    /// The parent BSUID, only where Meta enrolled the portfolio in a parent account.
    #[serde(default)]
    pub parent_user_id: Option<String>,
}

impl WebhookContact {
    /// The username, when the user adopted one (display text: Meta writes it with or
    /// without `@`).
    pub fn username(&self) -> Option<&str> {
        self.profile.as_ref()?.username.as_deref()
    }

    pub fn name(&self) -> Option<&str> {
        self.profile.as_ref()?.name.as_deref()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

/// `system` on an inbound message of type `system`: an identity change (META_2026 §3.5).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SystemChange {
    #[serde(default)]
    pub body: Option<String>,
    /// `user_changed_number` or `user_changed_user_id` (older: `customer_changed_number`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The new phone number (`user_changed_number` only).
    #[serde(default)]
    pub wa_id: Option<String>,
    /// The new BSUID.
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub parent_user_id: Option<String>,
    #[serde(default)]
    pub previous_user_id: Option<String>,
    #[serde(default)]
    pub previous_parent_user_id: Option<String>,
    /// Meta's older name for the new phone (`customer` in early payloads).
    #[serde(default)]
    pub new_wa_id: Option<String>,
}

impl SystemChange {
    pub const USER_CHANGED_NUMBER: &'static str = "user_changed_number";
    pub const USER_CHANGED_USER_ID: &'static str = "user_changed_user_id";

    /// True for the identity changes Parley applies to a contact.
    pub fn is_identity_change(&self) -> bool {
        matches!(
            self.kind.as_deref(),
            Some(
                Self::USER_CHANGED_NUMBER | Self::USER_CHANGED_USER_ID | "customer_changed_number"
            )
        )
    }

    /// The new phone (`wa_id`, or the older `new_wa_id`).
    pub fn new_phone(&self) -> Option<&str> {
        self.wa_id.as_deref().or(self.new_wa_id.as_deref())
    }
}

/// An inbound message. The type-specific object stays raw (`rest`) so every type is kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct InboundMessage {
    /// The sender's phone; absent when the user hides it behind a username (META_2026 §3.1).
    #[serde(default)]
    pub from: Option<String>,
    /// The sender's BSUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_parent_user_id: Option<String>,
    pub id: String,
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub context: Option<Value>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

impl InboundMessage {
    /// The identity change a `system` message announces.
    pub fn system(&self) -> Option<SystemChange> {
        if self.kind.as_deref() != Some("system") {
            return None;
        }
        serde_json::from_value(self.rest.get("system")?.clone()).ok()
    }

    /// The phones a `contacts` message shares, each with its `origin` (`contact_request` when
    /// it answers a `REQUEST_CONTACT_INFO` button, META_2026 §3.4).
    pub fn shared_contacts(&self) -> Vec<SharedContact> {
        if self.kind.as_deref() != Some("contacts") {
            return Vec::new();
        }
        self.rest
            .get("contacts")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default()
    }

    /// The human-readable text of the message, for the inbox and opt-out keywords.
    pub fn text(&self) -> Option<String> {
        message_text(self.kind.as_deref(), &self.rest)
    }

    /// Parley's normalized body of the message: its kind, content, reply context, referral
    /// and errors. Never fails: what does not read is left to the raw message.
    pub fn body(&self) -> parley_domain::InboundBody {
        normalize::body(self.kind.as_deref(), self.context.as_ref(), &self.rest)
    }
}

/// Reading an inbound message into Parley's normalized body (`parley_domain::InboundBody`).
/// Lenient by design: a field of the wrong JSON type is left out of the body (the raw
/// message keeps it), never an error.
mod normalize {
    use parley_domain::{
        InboundBody, InboundContent, InboundContext, InboundError, InteractiveReply, MediaRef,
        Referral, ReferredProduct,
    };
    use serde_json::{Map, Value};

    fn s(v: Option<&Value>) -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn f(v: Option<&Value>) -> Option<f64> {
        match v? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|x: &f64| x.is_finite())
    }

    fn b(v: Option<&Value>) -> bool {
        matches!(v, Some(Value::Bool(true)))
    }

    fn field<'a>(obj: Option<&'a Value>, name: &str) -> Option<&'a Value> {
        obj?.get(name)
    }

    fn media(obj: Option<&Value>) -> MediaRef {
        MediaRef {
            id: s(field(obj, "id")).unwrap_or_default(),
            mime_type: s(field(obj, "mime_type")),
            sha256: s(field(obj, "sha256")),
            caption: s(field(obj, "caption")),
            filename: s(field(obj, "filename")),
            voice: b(field(obj, "voice")),
            animated: b(field(obj, "animated")),
        }
    }

    /// The content of a message object of Meta type `kind` whose other fields are `rest`.
    pub(super) fn content(kind: Option<&str>, rest: &Map<String, Value>) -> InboundContent {
        let Some(kind) = kind else {
            return InboundContent::Unknown {
                original_type: None,
            };
        };
        let obj = rest.get(kind);
        match kind {
            "text" => match s(field(obj, "body")) {
                Some(body) => InboundContent::Text { body },
                None => unknown(kind),
            },
            "image" => InboundContent::Image(media(obj)),
            "video" => InboundContent::Video(media(obj)),
            "audio" => InboundContent::Audio(media(obj)),
            "voice" => InboundContent::Audio(MediaRef {
                voice: true,
                ..media(obj)
            }),
            "document" => InboundContent::Document(media(obj)),
            "sticker" => InboundContent::Sticker(media(obj)),
            "location" => InboundContent::Location {
                latitude: f(field(obj, "latitude")),
                longitude: f(field(obj, "longitude")),
                name: s(field(obj, "name")),
                address: s(field(obj, "address")),
                url: s(field(obj, "url")),
            },
            "contacts" => InboundContent::Contacts {
                contacts: rest
                    .get("contacts")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            },
            "reaction" => InboundContent::Reaction {
                message_id: s(field(obj, "message_id")).unwrap_or_default(),
                emoji: s(field(obj, "emoji")).filter(|e| !e.is_empty()),
            },
            "button" => InboundContent::Button {
                payload: s(field(obj, "payload")),
                text: s(field(obj, "text")),
            },
            "interactive" => InboundContent::Interactive(interactive(obj)),
            "order" => InboundContent::Order {
                catalog_id: s(field(obj, "catalog_id")),
                text: s(field(obj, "text")),
                product_items: field(obj, "product_items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            },
            "system" => InboundContent::System {
                system_type: s(field(obj, "type")),
                body: s(field(obj, "body")),
                wa_id: s(field(obj, "wa_id")).or_else(|| s(field(obj, "new_wa_id"))),
                user_id: s(field(obj, "user_id")),
                previous_user_id: s(field(obj, "previous_user_id")),
            },
            "edit" => {
                let message = field(obj, "message").and_then(Value::as_object);
                InboundContent::Edit {
                    original_message_id: s(field(obj, "original_message_id")).unwrap_or_default(),
                    message: Box::new(match message {
                        Some(m) => {
                            let kind = m.get("type").and_then(Value::as_str);
                            content(kind, m)
                        }
                        None => unknown("edit"),
                    }),
                }
            }
            "revoke" => InboundContent::Revoke {
                original_message_id: s(field(obj, "original_message_id")).unwrap_or_default(),
            },
            "unsupported" | "unknown" => InboundContent::Unsupported {
                unsupported_type: s(field(obj, "type")),
            },
            "request_welcome" => InboundContent::RequestWelcome,
            other => unknown(other),
        }
    }

    fn unknown(kind: &str) -> InboundContent {
        InboundContent::Unknown {
            original_type: Some(kind.to_owned()),
        }
    }

    fn interactive(obj: Option<&Value>) -> InteractiveReply {
        let kind = s(field(obj, "type"));
        let reply = kind.as_deref().and_then(|k| field(obj, k));
        match kind.as_deref() {
            Some("button_reply") => InteractiveReply::ButtonReply {
                id: s(field(reply, "id")).unwrap_or_default(),
                title: s(field(reply, "title")),
            },
            Some("list_reply") => InteractiveReply::ListReply {
                id: s(field(reply, "id")).unwrap_or_default(),
                title: s(field(reply, "title")),
                description: s(field(reply, "description")),
            },
            Some("nfm_reply") => {
                let response = match field(reply, "response_json") {
                    Some(Value::String(text)) => {
                        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
                    }
                    Some(other) => other.clone(),
                    None => Value::Null,
                };
                InteractiveReply::NfmReply {
                    name: s(field(reply, "name")),
                    body: s(field(reply, "body")),
                    response,
                }
            }
            _ => InteractiveReply::Other {
                interactive_type: kind,
            },
        }
    }

    pub(super) fn context(v: Option<&Value>) -> Option<InboundContext> {
        let v = v.filter(|v| v.is_object())?;
        let product = v.get("referred_product").filter(|p| p.is_object());
        Some(InboundContext {
            message_id: s(v.get("id")),
            from: s(v.get("from")),
            forwarded: b(v.get("forwarded")),
            frequently_forwarded: b(v.get("frequently_forwarded")),
            referred_product: product.map(|p| ReferredProduct {
                catalog_id: s(p.get("catalog_id")),
                product_retailer_id: s(p.get("product_retailer_id")),
            }),
        })
    }

    pub(super) fn referral(v: Option<&Value>) -> Option<Referral> {
        let v = v.filter(|v| v.is_object())?;
        Some(Referral {
            source_url: s(v.get("source_url")),
            source_id: s(v.get("source_id")),
            source_type: s(v.get("source_type")),
            headline: s(v.get("headline")),
            body: s(v.get("body")),
            media_type: s(v.get("media_type")),
            image_url: s(v.get("image_url")),
            video_url: s(v.get("video_url")),
            thumbnail_url: s(v.get("thumbnail_url")),
            ctwa_clid: s(v.get("ctwa_clid")),
            welcome_message: s(field(v.get("welcome_message"), "text")),
        })
    }

    pub(super) fn errors(v: Option<&Value>) -> Vec<InboundError> {
        v.and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| InboundError {
                        code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                        title: s(e.get("title")),
                        message: s(e.get("message")),
                        details: s(field(e.get("error_data"), "details")),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn body(
        kind: Option<&str>,
        context: Option<&Value>,
        rest: &Map<String, Value>,
    ) -> InboundBody {
        InboundBody {
            content: content(kind, rest),
            context: self::context(context),
            referral: referral(rest.get("referral")),
            errors: errors(rest.get("errors")),
            group_id: s(rest.get("group_id")),
        }
    }
}

/// The human-readable text of a message object of type `kind` (its type object in `rest`).
fn message_text(kind: Option<&str>, rest: &serde_json::Map<String, Value>) -> Option<String> {
    {
        let kind = kind?;
        let obj = rest.get(kind)?;
        let pick = |path: &[&str]| -> Option<String> {
            let mut v = obj;
            for p in path {
                v = v.get(p)?;
            }
            v.as_str().map(str::to_owned)
        };
        match kind {
            "text" => pick(&["body"]),
            "button" => pick(&["text"]),
            "interactive" => {
                pick(&["button_reply", "title"]).or_else(|| pick(&["list_reply", "title"]))
            }
            "image" | "video" | "document" => pick(&["caption"]),
            "reaction" => pick(&["emoji"]),
            _ => None,
        }
    }
}

/// One contact of a `contacts` message.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SharedContact {
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub phones: Vec<SharedPhone>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SharedPhone {
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// A status update for a message Parley sent.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StatusUpdate {
    pub id: String,
    pub status: DeliveryStatus,
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
    /// The phone (or group id); omitted when the message went to a BSUID and the phone cannot
    /// be shared.
    #[serde(default)]
    pub recipient_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_user_id: Option<String>,
    /// The parent BSUID, by its May 2026 name …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_parent_user_id: Option<String>,
    /// … its April 2026 name …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_recipient_user_id: Option<String>,
    /// … and its February 2026 name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_user_id: Option<String>,
    #[serde(default)]
    pub biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    pub errors: Vec<StatusError>,
    #[serde(default)]
    pub pricing: Option<Box<RawValue>>,
    #[serde(default)]
    pub conversation: Option<Box<RawValue>>,
}

impl StatusUpdate {
    /// The recipient's parent BSUID under whichever of its three names Meta used.
    pub fn recipient_parent(&self) -> Option<&str> {
        self.recipient_parent_user_id
            .as_deref()
            .or(self.parent_recipient_user_id.as_deref())
            .or(self.parent_user_id.as_deref())
    }

    /// Unix seconds of the status, when Meta gave a parseable one.
    pub fn unix_time(&self) -> Option<i64> {
        self.timestamp.as_deref()?.parse().ok()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StatusError {
    pub code: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_data: Option<crate::error::ErrorData>,
}

impl StatusError {
    pub fn description(&self) -> String {
        let base = self
            .message
            .clone()
            .or_else(|| self.title.clone())
            .unwrap_or_else(|| format!("error {}", self.code));
        match self.error_data.as_ref().and_then(|d| d.details.as_deref()) {
            Some(d) if !d.is_empty() && d != base => format!("{base} ({d})"),
            _ => base,
        }
    }
}

/// Meta's name for where a sent message stands (`statuses[].status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    /// A voice message was played.
    Played,
    Failed,
    /// A name Parley does not know (names are matched exactly, as Meta sends them).
    Other(String),
}

impl DeliveryStatus {
    pub fn parse(name: &str) -> DeliveryStatus {
        match name {
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "played" => DeliveryStatus::Played,
            "failed" => DeliveryStatus::Failed,
            other => DeliveryStatus::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Played => "played",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Other(name) => name,
        }
    }

    /// The message state this status moves a message to (`played` counts as read); `None`
    /// for a name Parley does not know.
    pub fn message_state(&self) -> Option<MessageState> {
        match self {
            DeliveryStatus::Sent => Some(MessageState::Sent),
            DeliveryStatus::Delivered => Some(MessageState::Delivered),
            DeliveryStatus::Read | DeliveryStatus::Played => Some(MessageState::Read),
            DeliveryStatus::Failed => Some(MessageState::Failed),
            DeliveryStatus::Other(_) => None,
        }
    }
}

impl Serialize for DeliveryStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeliveryStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = DeliveryStatus;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a status name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DeliveryStatus, E> {
                Ok(DeliveryStatus::parse(v))
            }
        }
        d.deserialize_str(Name)
    }
}

/// Which template a template webhook is about. Meta sends the id as a number; a string is
/// taken too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TemplateRef {
    #[serde(
        default,
        rename = "message_template_id",
        deserialize_with = "string_or_number"
    )]
    pub id: Option<String>,
    #[serde(default, rename = "message_template_name")]
    pub name: Option<String>,
    /// As Meta writes it (`en-US` or `en_US`).
    #[serde(default, rename = "message_template_language")]
    pub language: Option<String>,
}

/// `message_template_status_update`: the template's new status and why.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TemplateStatusValue {
    #[serde(flatten)]
    pub template: TemplateRef,
    /// The new status (`APPROVED`, `REJECTED`, `PAUSED`…).
    #[serde(default)]
    pub event: Option<String>,
    /// The rejection reason (`NONE` when not rejected; `null` when scheduled for deletion).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message_template_category: Option<String>,
    /// Meta's detail objects (`rejection_info{reason,recommendation}`,
    /// `other_info{title,description}`, `disable_info{disable_date}`): Parley keeps them with
    /// the template exactly as sent, so they stay JSON.
    #[serde(default)]
    pub rejection_info: Option<Value>,
    #[serde(default)]
    pub other_info: Option<Value>,
    #[serde(default)]
    pub disable_info: Option<Value>,
}

/// `message_template_quality_update` (`GREEN`, `YELLOW`, `RED`, `UNKNOWN`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TemplateQualityValue {
    #[serde(flatten)]
    pub template: TemplateRef,
    #[serde(default)]
    pub previous_quality_score: Option<String>,
    #[serde(default)]
    pub new_quality_score: Option<String>,
}

/// `template_category_update`: announced (`correct_category` from `category_update_timestamp`
/// on) or completed (with `previous_category`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TemplateCategoryValue {
    #[serde(flatten)]
    pub template: TemplateRef,
    #[serde(default)]
    pub new_category: Option<String>,
    #[serde(default)]
    pub previous_category: Option<String>,
    #[serde(default)]
    pub correct_category: Option<String>,
    /// Unix seconds in Meta's examples; kept with the template as sent.
    #[serde(default)]
    pub category_update_timestamp: Option<Value>,
}

/// `message_template_components_update`: a loose description of the new content (Parley reads
/// the exact template from Meta instead).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TemplateComponentsValue {
    #[serde(flatten)]
    pub template: TemplateRef,
    #[serde(default)]
    pub message_template_title: Option<String>,
    #[serde(default)]
    pub message_template_element: Option<String>,
    #[serde(default)]
    pub message_template_footer: Option<String>,
    #[serde(default)]
    pub message_template_buttons: Vec<TemplateComponentButton>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TemplateComponentButton {
    #[serde(default)]
    pub message_template_button_type: Option<String>,
    #[serde(default)]
    pub message_template_button_text: Option<String>,
    #[serde(default)]
    pub message_template_button_url: Option<String>,
    #[serde(default)]
    pub message_template_button_phone_number: Option<String>,
}

/// A messaging-limit tier (`TIER_2K`). Meta writes tiers as strings, but some payloads give
/// the number of conversations instead (`2000`, `-1` for unlimited): both read the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitTier(String);

impl LimitTier {
    /// The tier of a JSON string or number; `None` for anything else or an empty string.
    pub fn from_json(value: &Value) -> Option<LimitTier> {
        let tier = match value {
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(n) => return LimitTier::from_json(&Value::from(n)),
                Err(_) if s.trim().is_empty() => return None,
                // Meta's Oct-2025 page writes the top of the ladder as plain `UNLIMITED`.
                Err(_) if s.trim().eq_ignore_ascii_case("UNLIMITED") => "TIER_UNLIMITED".to_owned(),
                Err(_) => s.trim().to_ascii_uppercase(),
            },
            Value::Number(n) => match n.as_i64()? {
                -1 => "TIER_UNLIMITED".to_owned(),
                50 => "TIER_50".to_owned(),
                250 => "TIER_250".to_owned(),
                1000 => "TIER_1K".to_owned(),
                2000 => "TIER_2K".to_owned(),
                10_000 => "TIER_10K".to_owned(),
                100_000 => "TIER_100K".to_owned(),
                other => format!("TIER_{other}"),
            },
            _ => return None,
        };
        Some(LimitTier(tier))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Reads a tier leniently: a value that is no tier is no tier, not a broken webhook.
pub(crate) fn limit_tier<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<LimitTier>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .and_then(LimitTier::from_json))
}

/// `phone_number_quality_update`: a number's limit or throughput changed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PhoneNumberQualityValue {
    #[serde(default)]
    pub display_phone_number: Option<String>,
    /// `THROUGHPUT_UPGRADE`, `ONBOARDING` (older: `FLAGGED`, `UPGRADE`, `DOWNGRADE`…).
    #[serde(default)]
    pub event: Option<String>,
    /// Per-number limits, removed by Meta in February 2026.
    #[serde(default, deserialize_with = "limit_tier")]
    pub old_limit: Option<LimitTier>,
    #[serde(default, deserialize_with = "limit_tier")]
    pub current_limit: Option<LimitTier>,
    /// The business portfolio's limit (Meta's rule since October 2025).
    #[serde(default, deserialize_with = "limit_tier")]
    pub max_daily_conversations_per_business: Option<LimitTier>,
}

/// `business_capability_update`: the portfolio's limits.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct CapabilityValue {
    /// Removed by Meta in February 2026.
    #[serde(default, deserialize_with = "limit_tier")]
    pub max_daily_conversation_per_phone: Option<LimitTier>,
    #[serde(default, deserialize_with = "limit_tier")]
    pub max_daily_conversations_per_business: Option<LimitTier>,
    #[serde(default)]
    pub max_phone_numbers_per_business: Option<i64>,
    #[serde(default)]
    pub max_phone_numbers_per_waba: Option<i64>,
}

/// `phone_number_name_update`: Meta's decision on a number's display name.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PhoneNumberNameValue {
    #[serde(default)]
    pub display_phone_number: Option<String>,
    /// `APPROVED`, `DECLINED`…
    #[serde(default)]
    pub decision: Option<String>,
    #[serde(default)]
    pub requested_verified_name: Option<String>,
    #[serde(default)]
    pub rejection_reason: Option<String>,
}

/// `account_review_update`: `APPROVED`, `REJECTED`, `PENDING` or `DEFERRED`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AccountReviewValue {
    #[serde(default)]
    pub decision: Option<String>,
}

/// `history` (coexistence): chunks of the WhatsApp Business app's 1:1 chats from before
/// onboarding, the `2593109` decline, or media sent after its placeholder.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HistoryValue {
    #[serde(default)]
    pub messaging_product: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub history: Vec<HistoryItem>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HistoryItem {
    #[serde(default)]
    pub metadata: Option<HistoryMetadata>,
    #[serde(default)]
    pub threads: Vec<HistoryThread>,
    /// Late media may come as messages outside a thread.
    #[serde(default)]
    pub messages: Vec<AppMessage>,
    /// The decline (`2593109`: history sharing is off in the app).
    #[serde(default)]
    pub errors: Vec<StatusError>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HistoryMetadata {
    /// 0: day 0–1, 1: day 1–90, 2: day 90–180.
    #[serde(default, deserialize_with = "int_or_string")]
    pub phase: Option<i64>,
    #[serde(default, deserialize_with = "int_or_string")]
    pub chunk_order: Option<i64>,
    /// 100: the sync is done.
    #[serde(default, deserialize_with = "int_or_string")]
    pub progress: Option<i64>,
}

/// One 1:1 chat: `id` is the customer's number.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HistoryThread {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub messages: Vec<AppMessage>,
}

/// A message of the app's history or an echo. The type object stays raw (`rest`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AppMessage {
    #[serde(default)]
    pub from: Option<String>,
    /// Only on echoes (and may be absent for a username user).
    #[serde(default)]
    pub to: Option<String>,
    /// BSUID of the recipient of an echo (since 2026).
    #[serde(default)]
    pub to_user_id: Option<String>,
    pub id: String,
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// History only: where the message stood in the app (`DELIVERED`, `ERROR`, `PENDING`,
    /// `PLAYED`, `READ`, `SENT`); kept apart from Cloud API statuses.
    #[serde(default)]
    pub history_context: Option<HistoryContext>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

impl AppMessage {
    pub fn text(&self) -> Option<String> {
        message_text(self.kind.as_deref(), &self.rest)
    }

    pub fn unix_time(&self) -> Option<i64> {
        self.timestamp.as_deref()?.parse().ok()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct HistoryContext {
    #[serde(default)]
    pub status: Option<String>,
}

/// `smb_app_state_sync` (coexistence): contacts of the app, added (or edited) and removed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StateSyncValue {
    #[serde(default)]
    pub messaging_product: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub state_sync: Vec<StateSyncItem>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct StateSyncItem {
    /// `contact`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub contact: Option<SyncContact>,
    /// `add` (also edits) or `remove`.
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SyncContact {
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    /// May be absent since 2026 (a username user known by BSUID only).
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
}

/// `smb_message_echoes` (coexistence): what the business sent from the app.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MessageEchoesValue {
    #[serde(default)]
    pub messaging_product: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub message_echoes: Vec<AppMessage>,
}

/// `account_update`'s `disconnection_info` (coexistence offboarding).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DisconnectionInfo {
    /// `ACCOUNT_DISCONNECTED`, `BUSINESS_DOWNGRADE`, `CHANGE_NUMBER`, `COMPANION_INACTIVITY`,
    /// `PRIMARY_INACTIVITY`, `USER_RE_REGISTERED`.
    #[serde(default)]
    pub reason: Option<String>,
    /// `USER` or `SYSTEM`.
    #[serde(default)]
    pub initiated_by: Option<String>,
}

/// `account_update`: an event about the WABA (`PARTNER_ADDED`, `ACCOUNT_RESTRICTION`,
/// `DISABLED_UPDATE`, `ACCOUNT_VIOLATION`, `PARTNER_REMOVED`…) with the details it carries.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AccountUpdateValue {
    #[serde(default)]
    pub event: Option<String>,
    /// On `PARTNER_*` events, which come on the partner's business entry: the WABA meant.
    #[serde(default)]
    pub waba_info: Option<WabaInfo>,
    #[serde(default)]
    pub restriction_info: Vec<Restriction>,
    #[serde(default)]
    pub ban_info: Option<BanInfo>,
    #[serde(default)]
    pub violation_info: Option<ViolationInfo>,
    /// `BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE`'s country.
    #[serde(default)]
    pub country: Option<String>,
    /// Coexistence `PARTNER_REMOVED`: the number (digits) the business disconnected.
    #[serde(default, deserialize_with = "string_or_number")]
    pub phone_number: Option<String>,
    /// Coexistence `PARTNER_REMOVED`: why and by whom.
    #[serde(default)]
    pub disconnection_info: Option<DisconnectionInfo>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct WabaInfo {
    #[serde(default)]
    pub waba_id: Option<String>,
    #[serde(default)]
    pub owner_business_id: Option<String>,
    #[serde(default)]
    pub partner_app_id: Option<String>,
    /// Multi-Partner Solution onboardings only.
    #[serde(default)]
    pub solution_id: Option<String>,
    #[serde(default)]
    pub solution_partner_business_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Restriction {
    #[serde(default)]
    pub restriction_type: Option<String>,
    /// When the restriction ends (Unix seconds).
    #[serde(default, deserialize_with = "string_or_number")]
    pub expiration: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct BanInfo {
    /// `DISABLE`, `REINSTATE` or `SCHEDULE_FOR_DISABLE`.
    #[serde(default)]
    pub waba_ban_state: Option<String>,
    #[serde(default)]
    pub waba_ban_date: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ViolationInfo {
    #[serde(default)]
    pub violation_type: Option<String>,
}

/// `user_preferences`: users who stopped or resumed marketing messages.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct UserPreferencesValue {
    #[serde(default)]
    pub messaging_product: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub contacts: Vec<WebhookContact>,
    #[serde(default)]
    pub user_preferences: Vec<UserPreference>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct UserPreference {
    #[serde(default)]
    pub wa_id: Option<String>,
    /// The user's business-scoped user id (BSUID, META_2026 §3).
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub parent_user_id: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    /// `marketing_messages`.
    #[serde(default)]
    pub category: Option<String>,
    /// `stop` or `resume`.
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
}

/// Meta sends timestamps as strings; tolerate numbers too.
fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

pub(crate) fn string_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// The one change of a one-entry envelope, parsed from the text as the processor does.
    fn change(field: &str, value: Value) -> WebhookChange {
        let body = json!({"object": "whatsapp_business_account",
            "entry": [{"id": "524126980791429", "time": 1750000000,
                "changes": [{"value": value, "field": field}]}]});
        let p: WebhookPayload =
            serde_json::from_slice(&serde_json::to_vec(&body).expect("json")).expect("envelope");
        p.entry[0].changes[0].parse()
    }

    #[test]
    fn coexistence_changes_read_as_meta_documents_them() {
        let history = change(
            "history",
            json!({"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
             "history":[{"metadata":{"phase":0,"chunk_order":1,"progress":55},
               "threads":[{"id":"16505551234","messages":[
                 {"from":"15550783881","id":"wamid.HBgL","timestamp":"1739230955","type":"text",
                  "text":{"body":"Here's the info"},"history_context":{"status":"READ"}},
                 {"from":"15550783881","id":"wamid.QyNU","timestamp":"1739230970","type":"media_placeholder",
                  "history_context":{"status":"PLAYED"}}]}]}]}),
        );
        let WebhookChange::History(h) = history else {
            panic!("history: {history:?}")
        };
        let item = &h.history[0];
        assert_eq!(item.metadata.as_ref().and_then(|m| m.progress), Some(55));
        let thread = &item.threads[0];
        assert_eq!(thread.id, "16505551234");
        assert_eq!(
            thread.messages[0].text().as_deref(),
            Some("Here's the info")
        );
        assert_eq!(
            thread.messages[1]
                .history_context
                .as_ref()
                .and_then(|c| c.status.as_deref()),
            Some("PLAYED")
        );
        let declined = change(
            "history",
            json!({"messaging_product":"whatsapp","history":[{"errors":[{"code":2593109,"title":"History sync is turned off by the business from the WhatsApp Business App","error_data":{"details":"History sharing is turned off by the business"}}]}]}),
        );
        let WebhookChange::History(d) = declined else {
            panic!("decline")
        };
        assert_eq!(d.history[0].errors[0].code, 2593109);
        let sync = change(
            "smb_app_state_sync",
            json!({"messaging_product":"whatsapp","state_sync":[{"type":"contact","contact":{"full_name":"Pablo Morales","first_name":"Pablo","phone_number":"16505551234"},"action":"add","metadata":{"timestamp":"1738346006"}}]}),
        );
        let WebhookChange::StateSync(s) = sync else {
            panic!("state sync")
        };
        assert_eq!(s.state_sync[0].action.as_deref(), Some("add"));
        let echoes = change(
            "smb_message_echoes",
            json!({"messaging_product":"whatsapp","message_echoes":[{"from":"15550783881","to":"16505551234","id":"wamid.HBgL","timestamp":"1700255121","type":"text","text":{"body":"Here's the info"}}]}),
        );
        let WebhookChange::MessageEchoes(e) = echoes else {
            panic!("echoes")
        };
        assert_eq!(e.message_echoes[0].to.as_deref(), Some("16505551234"));
    }

    #[test]
    fn an_entry_time_may_be_a_string_and_offboarding_carries_its_reason() {
        let body = json!({"object":"whatsapp_business_account","entry":[{"id":"524126980791429","time":"1739321024",
            "changes":[{"value":{"phone_number":"15550783881","event":"PARTNER_REMOVED",
              "disconnection_info":{"reason":"PRIMARY_INACTIVITY","initiated_by":"SYSTEM"}},"field":"account_update"}]}]});
        let p: WebhookPayload = serde_json::from_value(body).expect("envelope");
        assert_eq!(p.entry[0].time, Some(1_739_321_024));
        let WebhookChange::AccountUpdate(u) = p.entry[0].changes[0].parse() else {
            panic!("account_update")
        };
        assert_eq!(u.phone_number.as_deref(), Some("15550783881"));
        let info = u.disconnection_info.expect("disconnection_info");
        assert_eq!(info.reason.as_deref(), Some("PRIMARY_INACTIVITY"));
        assert_eq!(info.initiated_by.as_deref(), Some("SYSTEM"));
    }

    #[test]
    fn inbound_bodies_read_leniently_and_keep_flow_answers_as_json() {
        let read = |m: serde_json::Value| -> parley_domain::InboundBody {
            serde_json::from_value::<InboundMessage>(m)
                .expect("message")
                .body()
        };
        // Wrong JSON types leave fields out; nothing fails.
        let image = read(json!({"id": "w1", "type": "image", "image": "not an object"}));
        assert_eq!(image.kind(), parley_domain::InboundKind::Image);
        let location = read(json!({"id": "w2", "type": "location",
            "location": {"latitude": "1e999", "longitude": "13.4"}}));
        assert_eq!(
            serde_json::to_value(&location).expect("json")["latitude"],
            serde_json::Value::Null
        );
        let flow = read(
            json!({"id": "w3", "type": "interactive", "interactive": {"type": "nfm_reply",
            "nfm_reply": {"name": "flow", "response_json": "{\"a\":1}"}}}),
        );
        assert_eq!(
            serde_json::to_value(&flow).expect("json")["response"],
            json!({"a": 1})
        );
        let not_json = read(
            json!({"id": "w4", "type": "interactive", "interactive": {"type": "nfm_reply",
            "nfm_reply": {"response_json": "not json"}}}),
        );
        assert_eq!(
            serde_json::to_value(&not_json).expect("json")["response"],
            "not json"
        );
        let removed =
            read(json!({"id": "w5", "type": "reaction", "reaction": {"message_id": "w1"}}));
        assert_eq!(removed.refers_to(), Some("w1"));
        assert_eq!(removed.text(), None);
        let unknown = read(json!({"id": "w6", "type": "poll", "poll": {}}));
        assert_eq!(unknown.kind(), parley_domain::InboundKind::Unknown);
        let none = read(json!({"id": "w7"}));
        assert_eq!(none.kind(), parley_domain::InboundKind::Unknown);
    }

    #[test]
    fn parses_status_and_inbound() {
        let raw = r#"{"object":"whatsapp_business_account","entry":[{"id":"524126980791429","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550100100","phone_number_id":"106540352242922"},
          "contacts":[{"profile":{"name":"Sheena"},"wa_id":"16505551234"}],
          "messages":[{"from":"16505551234","id":"wamid.A","timestamp":"1749416383","type":"text","text":{"body":"Hi"}}],
          "statuses":[{"id":"wamid.B","status":"failed","timestamp":1750030073,"recipient_id":"16505551234","biz_opaque_callback_data":"msg_x","errors":[{"code":131026,"title":"Message undeliverable","error_data":{"details":"Receiver incapable"}}]}]},"future_key":1}]}]}"#;
        let p: WebhookPayload = serde_json::from_str(raw).expect("parses");
        let WebhookChange::Messages(m) = p.entry[0].changes[0].parse() else {
            panic!("a messages change");
        };
        assert_eq!(m.messages[0].text().as_deref(), Some("Hi"));
        assert_eq!(m.statuses[0].unix_time(), Some(1750030073));
        assert_eq!(m.statuses[0].status, DeliveryStatus::Failed);
        assert_eq!(m.statuses[0].errors[0].code, 131026);
        assert_eq!(
            m.statuses[0].errors[0].description(),
            "Message undeliverable (Receiver incapable)"
        );
    }

    #[test]
    fn bsuid_identities_of_inbound_messages_statuses_and_system_changes() {
        // META_2026 §3.1: a username user with the phone withheld: no `wa_id`, no `from`.
        let WebhookChange::Messages(v) = change(
            "messages",
            json!({"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
                "contacts":[{"profile":{"name":"Sheena Nelson","username":"@realsheenanelson"},
                    "user_id":"US.13491208655302741918","parent_user_id":"US.ENT.11815799212886844830"}],
                "messages":[{"from_user_id":"US.13491208655302741918","from_parent_user_id":"US.ENT.11815799212886844830",
                    "id":"wamid.A","timestamp":"1749416383","type":"text","text":{"body":"Does it come in another color?"}}]}),
        ) else {
            panic!("messages")
        };
        let m = &v.messages[0];
        assert_eq!(m.from, None);
        assert_eq!(m.from_user_id.as_deref(), Some("US.13491208655302741918"));
        assert_eq!(
            m.from_parent_user_id.as_deref(),
            Some("US.ENT.11815799212886844830")
        );
        assert_eq!(m.text().as_deref(), Some("Does it come in another color?"));
        assert_eq!(v.contacts[0].username(), Some("@realsheenanelson"));
        assert_eq!(v.contacts[0].wa_id, None);
        assert_eq!(
            v.contacts[0].user_id.as_deref(),
            Some("US.13491208655302741918")
        );
        // The re-serialized message keeps its ids (the inbox stores it raw).
        let raw = serde_json::to_value(m).unwrap();
        assert_eq!(raw["from_user_id"], "US.13491208655302741918");
        assert!(raw.get("from_user_id").is_some() && raw["text"]["body"].is_string());

        // §3.2, with the lean `contacts` seen in practice and each parent-field name.
        for parent in [
            "recipient_parent_user_id",
            "parent_recipient_user_id",
            "parent_user_id",
        ] {
            let WebhookChange::Messages(v) = change(
                "messages",
                json!({"contacts":[{"wa_id":"972526111549","user_id":"IL.831795919964525"}, {"wa_id":"4915112345678"}],
                    "statuses":[{"id":"wamid.B","status":"delivered","timestamp":"1750030073",
                        "recipient_user_id":"IL.831795919964525", parent:"IL.ENT.1"}]}),
            ) else {
                panic!("messages")
            };
            let s = &v.statuses[0];
            assert_eq!(s.recipient_id, None);
            assert_eq!(s.recipient_user_id.as_deref(), Some("IL.831795919964525"));
            assert_eq!(s.recipient_parent(), Some("IL.ENT.1"), "{parent}");
            assert_eq!(v.contacts[0].wa_id.as_deref(), Some("972526111549"));
            assert!(v.contacts[0].profile.is_none() && v.contacts[1].user_id.is_none());
        }

        // §3.5.
        let WebhookChange::Messages(v) = change(
            "messages",
            json!({"messages":[{"from":"16505551234","id":"wamid.C","timestamp":"1","type":"system",
                "system":{"body":"User A changed from 1 to 2","wa_id":"16505550000","user_id":"US.2",
                    "parent_user_id":"US.ENT.2","previous_user_id":"US.1","previous_parent_user_id":"US.ENT.1",
                    "type":"user_changed_number"}}]}),
        ) else {
            panic!("messages")
        };
        let sys = v.messages[0].system().unwrap();
        assert!(sys.is_identity_change());
        assert_eq!(sys.new_phone(), Some("16505550000"));
        assert_eq!(sys.previous_user_id.as_deref(), Some("US.1"));
        assert_eq!(sys.user_id.as_deref(), Some("US.2"));

        // §3.4: the answer to REQUEST_CONTACT_INFO.
        let WebhookChange::Messages(v) = change(
            "messages",
            json!({"messages":[{"id":"wamid.D","timestamp":"1","type":"contacts","from_user_id":"US.1",
                "contacts":[{"origin":"contact_request","phones":[{"phone":"+1 650-555-1234","wa_id":"16505551234","type":"MOBILE"}]}]}]}),
        ) else {
            panic!("messages")
        };
        let shared = v.messages[0].shared_contacts();
        assert_eq!(shared[0].origin.as_deref(), Some("contact_request"));
        assert_eq!(shared[0].phones[0].wa_id.as_deref(), Some("16505551234"));
    }

    #[test]
    fn statuses_map_to_message_states_and_keep_unknown_names() {
        let value = json!({"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "statuses": [
                {"id": "wamid.1", "status": "sent", "timestamp": "1750030073", "recipient_id": "16505551234",
                 "conversation": {"id": "72b1", "expiration_timestamp": "1750116480", "origin": {"type": "marketing"}},
                 "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing"}},
                {"id": "wamid.2", "status": "delivered", "timestamp": "1750030074"},
                {"id": "wamid.3", "status": "read", "timestamp": "1750030075"},
                {"id": "wamid.4", "status": "played", "timestamp": "1750030076"},
                {"id": "wamid.5", "status": "failed", "timestamp": "1750030077",
                 "errors": [{"code": 131049, "title": "This message was not delivered to maintain healthy ecosystem engagement."}]},
                {"id": "wamid.6", "status": "bounced", "timestamp": "1750030078", "brand_new": {"x": 1}},
                {"id": "wamid.7", "status": "SENT", "timestamp": "1750030079"}]});
        let WebhookChange::Messages(m) = change("messages", value) else {
            panic!("a messages change");
        };
        let states: Vec<Option<MessageState>> = m
            .statuses
            .iter()
            .map(|s| s.status.message_state())
            .collect();
        assert_eq!(
            states,
            [
                Some(MessageState::Sent),
                Some(MessageState::Delivered),
                Some(MessageState::Read),
                Some(MessageState::Read),
                Some(MessageState::Failed),
                None,
                None,
            ]
        );
        assert_eq!(m.statuses[5].status.as_str(), "bounced");
        assert_eq!(m.statuses[6].status, DeliveryStatus::Other("SENT".into()));
        assert_eq!(
            serde_json::to_value(&m.statuses[3]).expect("json")["status"],
            "played"
        );
    }

    #[test]
    fn a_messages_value_without_value_is_empty_and_a_broken_one_is_unknown() {
        let p: WebhookPayload = serde_json::from_str(
            r#"{"entry":[{"id":"1","changes":[{"field":"messages"},{"field":"messages","value":null}]}]}"#,
        )
        .expect("parses");
        for c in &p.entry[0].changes {
            let WebhookChange::Messages(m) = c.parse() else {
                panic!("an empty messages change");
            };
            assert!(m.messages.is_empty() && m.statuses.is_empty());
        }
        let broken = change("messages", json!({"statuses": [{"id": "wamid.1"}]}));
        let WebhookChange::Unknown {
            field,
            value,
            error,
        } = broken
        else {
            panic!("unknown");
        };
        assert_eq!(field, "messages");
        assert_eq!(value["statuses"][0]["id"], "wamid.1");
        assert!(error.expect("an error").contains("status"));
    }

    #[test]
    fn template_status_updates() {
        let c = change(
            "message_template_status_update",
            json!({"event": "REJECTED", "message_template_id": 1689556908129832u64,
                "message_template_name": "order_confirmation", "message_template_language": "en-US",
                "reason": "INVALID_FORMAT", "message_template_category": "UTILITY",
                "rejection_info": {"reason": "INVALID_FORMAT", "recommendation": "Fix the format."},
                "something_new": [1, 2]}),
        );
        let WebhookChange::TemplateStatus(v) = c else {
            panic!("template status");
        };
        assert_eq!(v.template.id.as_deref(), Some("1689556908129832"));
        assert_eq!(v.template.name.as_deref(), Some("order_confirmation"));
        assert_eq!(v.template.language.as_deref(), Some("en-US"));
        assert_eq!(v.event.as_deref(), Some("REJECTED"));
        assert_eq!(v.reason.as_deref(), Some("INVALID_FORMAT"));
        assert_eq!(
            v.rejection_info.expect("info")["recommendation"],
            "Fix the format."
        );
        // A deletion comes with `reason: null` and the id as a string is taken too.
        let WebhookChange::TemplateStatus(v) = change(
            "message_template_status_update",
            json!({"event": "PAUSED", "message_template_id": "77", "reason": null,
                "other_info": {"title": "FIRST_PAUSE", "description": "Low quality"},
                "disable_info": {"disable_date": "DATE"}}),
        ) else {
            panic!("template status");
        };
        assert_eq!(v.template.id.as_deref(), Some("77"));
        assert_eq!(v.reason, None);
        assert_eq!(v.other_info.expect("other")["title"], "FIRST_PAUSE");
        assert!(v.disable_info.is_some());
    }

    #[test]
    fn template_quality_category_and_components_updates() {
        let WebhookChange::TemplateQuality(q) = change(
            "message_template_quality_update",
            json!({"previous_quality_score": "GREEN", "new_quality_score": "YELLOW",
                "message_template_id": 806312974732579u64, "message_template_name": "welcome_template",
                "message_template_language": "en_US"}),
        ) else {
            panic!("quality");
        };
        assert_eq!(q.new_quality_score.as_deref(), Some("YELLOW"));
        assert_eq!(q.template.id.as_deref(), Some("806312974732579"));

        let WebhookChange::TemplateCategory(c) = change(
            "template_category_update",
            json!({"message_template_id": 12, "message_template_name": "order_update",
                "message_template_language": "en", "new_category": "MARKETING",
                "correct_category": "MARKETING", "category_update_timestamp": 1720810800}),
        ) else {
            panic!("category");
        };
        assert_eq!(c.new_category.as_deref(), Some("MARKETING"));
        assert_eq!(c.previous_category, None, "announced, not completed");
        assert_eq!(c.category_update_timestamp, Some(json!(1720810800)));

        let WebhookChange::TemplateComponents(t) = change(
            "message_template_components_update",
            json!({"message_template_id": 12, "message_template_name": "order_update",
                "message_template_language": "en", "message_template_element": "Your order shipped",
                "message_template_footer": "Thanks",
                "message_template_buttons": [{"message_template_button_type": "URL",
                    "message_template_button_text": "Track", "message_template_button_url": "https://x.example/t"}]}),
        ) else {
            panic!("components");
        };
        assert_eq!(t.message_template_buttons.len(), 1);
        assert_eq!(
            t.message_template_buttons[0]
                .message_template_button_url
                .as_deref(),
            Some("https://x.example/t")
        );
    }

    #[test]
    fn phone_number_quality_and_capability_updates_read_tiers_as_strings_or_numbers() {
        let WebhookChange::PhoneNumberQuality(q) = change(
            "phone_number_quality_update",
            json!({"display_phone_number": "15550783881", "event": "THROUGHPUT_UPGRADE",
                "old_limit": "TIER_2K", "current_limit": "TIER_UNLIMITED",
                "max_daily_conversations_per_business": "TIER_2K"}),
        ) else {
            panic!("quality");
        };
        assert_eq!(q.event.as_deref(), Some("THROUGHPUT_UPGRADE"));
        assert_eq!(
            q.current_limit.as_ref().map(LimitTier::as_str),
            Some("TIER_UNLIMITED")
        );
        assert_eq!(
            q.max_daily_conversations_per_business
                .as_ref()
                .map(LimitTier::as_str),
            Some("TIER_2K")
        );

        let WebhookChange::CapabilityUpdate(c) = change(
            "business_capability_update",
            json!({"max_daily_conversation_per_phone": 2000, "max_daily_conversations_per_business": 2000,
                "max_phone_numbers_per_business": 2, "max_phone_numbers_per_waba": 25}),
        ) else {
            panic!("capability");
        };
        assert_eq!(
            c.max_daily_conversations_per_business
                .as_ref()
                .map(LimitTier::as_str),
            Some("TIER_2K")
        );
        assert_eq!(c.max_phone_numbers_per_business, Some(2));
        // A tier that is no tier is left out, not an unreadable webhook.
        let WebhookChange::CapabilityUpdate(c) = change(
            "business_capability_update",
            json!({"max_daily_conversations_per_business": {"odd": true}, "max_daily_conversation_per_phone": -1}),
        ) else {
            panic!("capability");
        };
        assert_eq!(c.max_daily_conversations_per_business, None);
        assert_eq!(
            c.max_daily_conversation_per_phone
                .as_ref()
                .map(LimitTier::as_str),
            Some("TIER_UNLIMITED")
        );
    }

    /// Every form Meta writes a limit in (META_2026.md §4.1): integers, tier strings,
    /// `UNLIMITED` and `-1`, in the current webhook shapes (no legacy field at all) and on the
    /// phone number node.
    #[test]
    fn every_limit_value_form_reads_in_both_webhooks_and_on_the_node() {
        use parley_domain::quota::MessagingLimit;
        let limited = |n| Some(MessagingLimit::Limited(n));
        let forms = [
            (json!(250), limited(250)),
            (json!(2000), limited(2_000)),
            (json!(10_000), limited(10_000)),
            (json!(100_000), limited(100_000)),
            (json!("2000"), limited(2_000)),
            (json!("TIER_250"), limited(250)),
            (json!("TIER_2K"), limited(2_000)),
            (json!("TIER_10K"), limited(10_000)),
            (json!("TIER_100K"), limited(100_000)),
            (json!("TIER_UNLIMITED"), Some(MessagingLimit::Unlimited)),
            (json!("UNLIMITED"), Some(MessagingLimit::Unlimited)),
            (json!("unlimited"), Some(MessagingLimit::Unlimited)),
            (json!(-1), Some(MessagingLimit::Unlimited)),
            (json!("-1"), Some(MessagingLimit::Unlimited)),
        ];
        let read =
            |tier: Option<&LimitTier>| tier.and_then(|t| MessagingLimit::parse_tier(t.as_str()));
        for (value, expected) in forms {
            let WebhookChange::CapabilityUpdate(c) = change(
                "business_capability_update",
                json!({"max_daily_conversations_per_business": value, "max_phone_numbers_per_waba": 25}),
            ) else {
                panic!("capability {value}");
            };
            assert_eq!(
                read(c.max_daily_conversations_per_business.as_ref()),
                expected,
                "{value}"
            );
            assert_eq!(c.max_daily_conversation_per_phone, None);
            let WebhookChange::PhoneNumberQuality(q) = change(
                "phone_number_quality_update",
                json!({"display_phone_number": "15550783881", "event": "ONBOARDING",
                    "max_daily_conversations_per_business": value}),
            ) else {
                panic!("quality {value}");
            };
            assert_eq!(
                read(q.max_daily_conversations_per_business.as_ref()),
                expected,
                "{value}"
            );
            assert!(q.current_limit.is_none() && q.old_limit.is_none());
            let node: crate::PhoneNumberInfo = serde_json::from_value(
                json!({"id": "1", "whatsapp_business_manager_messaging_limit": value}),
            )
            .expect("node reads");
            assert_eq!(
                node.whatsapp_business_manager_messaging_limit
                    .as_deref()
                    .and_then(MessagingLimit::parse_tier),
                expected,
                "node {value}"
            );
        }
        // Legacy fields still read when they come.
        let WebhookChange::CapabilityUpdate(c) = change(
            "business_capability_update",
            json!({"max_daily_conversation_per_phone": 10000}),
        ) else {
            panic!("legacy capability");
        };
        assert_eq!(
            read(c.max_daily_conversation_per_phone.as_ref()),
            limited(10_000)
        );
        // A node without the field, or with an odd value, has no limit rather than failing.
        let node: crate::PhoneNumberInfo = serde_json::from_value(
            json!({"id": "1", "whatsapp_business_manager_messaging_limit": {"x": 1}}),
        )
        .expect("node reads");
        assert_eq!(node.whatsapp_business_manager_messaging_limit, None);
    }

    #[test]
    fn tiers_from_numbers_and_strings() {
        let tier = |v: Value| LimitTier::from_json(&v).map(|t| t.as_str().to_owned());
        assert_eq!(tier(json!(2000)).as_deref(), Some("TIER_2K"));
        assert_eq!(tier(json!("2000")).as_deref(), Some("TIER_2K"));
        assert_eq!(tier(json!(-1)).as_deref(), Some("TIER_UNLIMITED"));
        assert_eq!(tier(json!(7)).as_deref(), Some("TIER_7"));
        assert_eq!(tier(json!("TIER_10K")).as_deref(), Some("TIER_10K"));
        assert_eq!(tier(json!("")), None);
        assert_eq!(tier(json!(null)), None);
        assert_eq!(tier(json!(2.5)), None);
    }

    #[test]
    fn phone_number_name_and_account_review_updates() {
        let WebhookChange::PhoneNumberName(n) = change(
            "phone_number_name_update",
            json!({"display_phone_number": "15550783881", "decision": "APPROVED",
                "requested_verified_name": "Café Lumen", "rejection_reason": null}),
        ) else {
            panic!("name");
        };
        assert_eq!(n.decision.as_deref(), Some("APPROVED"));
        assert_eq!(n.requested_verified_name.as_deref(), Some("Café Lumen"));
        assert_eq!(n.rejection_reason, None);

        let WebhookChange::AccountReview(r) =
            change("account_review_update", json!({"decision": "DEFERRED"}))
        else {
            panic!("review");
        };
        assert_eq!(r.decision.as_deref(), Some("DEFERRED"));
        // A change without a value reads as an empty one, as before typing.
        let p: WebhookPayload = serde_json::from_str(
            r#"{"entry":[{"id":"1","changes":[{"field":"account_review_update"}]}]}"#,
        )
        .expect("parses");
        assert!(matches!(
            p.entry[0].changes[0].parse(),
            WebhookChange::AccountReview(AccountReviewValue { decision: None })
        ));
    }

    #[test]
    fn account_updates() {
        let WebhookChange::AccountUpdate(a) = change(
            "account_update",
            json!({"event": "PARTNER_ADDED", "waba_info": {"waba_id": "980198427658004",
                "owner_business_id": "2329417887457253", "solution_id": "1715120619246906",
                "solution_partner_business_ids": ["2949482758682047"]}}),
        ) else {
            panic!("account update");
        };
        assert_eq!(a.event.as_deref(), Some("PARTNER_ADDED"));
        assert_eq!(
            a.waba_info.and_then(|w| w.waba_id).as_deref(),
            Some("980198427658004")
        );

        let WebhookChange::AccountUpdate(a) = change(
            "account_update",
            json!({"event": "ACCOUNT_RESTRICTION", "restriction_info": [
                {"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": 1750000000},
                {"restriction_type": "RESTRICTED_ADD_PHONE_NUMBER_ACTION"}]}),
        ) else {
            panic!("account update");
        };
        assert_eq!(a.restriction_info.len(), 2);
        assert_eq!(
            a.restriction_info[0].expiration.as_deref(),
            Some("1750000000")
        );
        assert_eq!(a.restriction_info[1].expiration, None);

        let WebhookChange::AccountUpdate(a) = change(
            "account_update",
            json!({"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": "SCHEDULE_FOR_DISABLE",
                "waba_ban_date": "April 17, 2025"}}),
        ) else {
            panic!("account update");
        };
        assert_eq!(
            a.ban_info.and_then(|b| b.waba_ban_state).as_deref(),
            Some("SCHEDULE_FOR_DISABLE")
        );

        let WebhookChange::AccountUpdate(a) = change(
            "account_update",
            json!({"event": "ACCOUNT_VIOLATION", "violation_info": {"violation_type": "ADULT"}}),
        ) else {
            panic!("account update");
        };
        assert_eq!(
            a.violation_info.and_then(|v| v.violation_type).as_deref(),
            Some("ADULT")
        );
        let WebhookChange::AccountUpdate(a) = change(
            "account_update",
            json!({"event": "VOLUME_BASED_PRICING_TIER_UPDATE", "volume_tier_info": {"tier": "25000001:50000000"}}),
        ) else {
            panic!("account update");
        };
        assert_eq!(a.event.as_deref(), Some("VOLUME_BASED_PRICING_TIER_UPDATE"));
    }

    #[test]
    fn user_preferences() {
        let WebhookChange::UserPreferences(u) = change(
            "user_preferences",
            json!({"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                "contacts": [{"wa_id": "16505551234", "profile": {"name": "Sheena"}}],
                "user_preferences": [{"wa_id": "16505551234", "detail": "User requested to stop marketing messages",
                    "category": "marketing_messages", "value": "stop", "timestamp": 1731705721}]}),
        ) else {
            panic!("user preferences");
        };
        assert_eq!(u.user_preferences[0].value.as_deref(), Some("stop"));
        assert_eq!(
            u.user_preferences[0].timestamp.as_deref(),
            Some("1731705721")
        );
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_kept_raw() {
        let c = change("brand_new_field", json!({"x": 1}));
        assert_eq!(c.field(), "brand_new_field");
        let WebhookChange::Unknown { value, error, .. } = c else {
            panic!("unknown");
        };
        assert_eq!(value, json!({"x": 1}));
        assert_eq!(error, None);

        let c = change("account_review_update", json!({"decision": 7}));
        assert_eq!(c.field(), "account_review_update");
        let WebhookChange::Unknown { value, error, .. } = c else {
            panic!("a value that does not read is unknown");
        };
        assert_eq!(value, json!({"decision": 7}));
        assert!(error.is_some());
        assert!(matches!(
            change("message_template_status_update", json!("APPROVED")),
            WebhookChange::Unknown { error: Some(_), .. }
        ));
    }

    #[test]
    fn change_value_stays_available_as_json() {
        let raw = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","time":5,"changes":[{"field":"message_template_status_update","value":{"event":"APPROVED","message_template_id":12}}]}]}"#;
        let p: WebhookPayload = serde_json::from_str(raw).expect("parses");
        assert_eq!(p.entry[0].changes[0].value()["event"], "APPROVED");
        assert_eq!(
            p.entry[0].changes[0].parse().field(),
            "message_template_status_update"
        );
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-zA-Z0-9_ .-]{0,12}".prop_map(Value::from),
            prop::sample::select(vec![
                "sent",
                "delivered",
                "read",
                "played",
                "failed",
                "APPROVED",
                "TIER_2K",
                "2000",
                "-1",
                "",
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::vec((any_key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Keys Meta uses, so the generated values reach the typed fields, and a few others.
    fn any_key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "messages",
                "statuses",
                "contacts",
                "metadata",
                "errors",
                "id",
                "status",
                "timestamp",
                "from",
                "type",
                "text",
                "body",
                "event",
                "message_template_id",
                "message_template_name",
                "message_template_language",
                "reason",
                "decision",
                "waba_info",
                "waba_id",
                "restriction_info",
                "restriction_type",
                "expiration",
                "ban_info",
                "waba_ban_state",
                "violation_info",
                "current_limit",
                "max_daily_conversations_per_business",
                "max_daily_conversation_per_phone",
                "display_phone_number",
                "new_category",
                "previous_category",
                "new_quality_score",
                "message_template_buttons",
                "user_preferences",
                "code",
            ])
            .prop_map(str::to_owned),
            "[a-z_]{1,8}",
        ]
    }

    fn any_field() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                fields::MESSAGES,
                fields::TEMPLATE_STATUS,
                fields::TEMPLATE_QUALITY,
                fields::TEMPLATE_CATEGORY,
                fields::TEMPLATE_COMPONENTS,
                fields::PHONE_NUMBER_QUALITY,
                fields::PHONE_NUMBER_NAME,
                fields::ACCOUNT_REVIEW,
                fields::ACCOUNT_UPDATE,
                fields::CAPABILITY_UPDATE,
                fields::USER_PREFERENCES,
            ])
            .prop_map(str::to_owned),
            "[a-z_]{0,10}",
        ]
    }

    proptest! {
        #[test]
        fn any_json_value_parses_to_some_change(field in any_field(), value in any_json()) {
            let c = change(&field, value.clone());
            prop_assert_eq!(c.field(), field.as_str());
            if let WebhookChange::Unknown { value: kept, .. } = &c {
                // As read back from its text (float parsing may round the last digit).
                let expected: Value =
                    serde_json::from_str(&value.to_string()).expect("json");
                prop_assert_eq!(kept, &expected);
            }
        }

        #[test]
        fn any_body_is_an_envelope_or_an_error(body in any_json(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = serde_json::from_slice::<WebhookPayload>(&serde_json::to_vec(&body).expect("json")) {
                for c in p.entry.iter().flat_map(|e| &e.changes) {
                    let _ = c.parse();
                }
            }
            let _ = serde_json::from_slice::<WebhookPayload>(&bytes);
        }
    }
}
