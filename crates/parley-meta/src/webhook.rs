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
    #[serde(default)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WebhookContact {
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default)]
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
}

/// An inbound message. The type-specific object stays raw (`rest`) so every type is kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct InboundMessage {
    #[serde(default)]
    pub from: Option<String>,
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
    /// The human-readable text of the message, for the inbox and opt-out keywords.
    pub fn text(&self) -> Option<String> {
        let kind = self.kind.as_deref()?;
        let obj = self.rest.get(kind)?;
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

/// A status update for a message Parley sent.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StatusUpdate {
    pub id: String,
    pub status: DeliveryStatus,
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub recipient_id: Option<String>,
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
            Value::String(s) => match s.parse::<i64>() {
                Ok(n) => return LimitTier::from_json(&Value::from(n)),
                Err(_) if s.is_empty() => return None,
                Err(_) => s.clone(),
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
fn limit_tier<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<LimitTier>, D::Error> {
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
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
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
