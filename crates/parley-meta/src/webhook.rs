//! The webhook envelope Meta POSTs (`object` → `entry[]` → `changes[]` → `field` + `value`).
//! Only the `messages` field is typed here; every other field stays raw JSON so nothing is
//! dropped: unknown fields and types are stored and shown, never an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

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
    /// Kept as the text Meta sent and parsed once, by what reads it: a `messages` value
    /// holds up to 1,000 statuses, and a `Value` tree of them first cost more than the rest
    /// of their processing.
    #[serde(default)]
    pub value: Option<Box<RawValue>>,
}

impl Change {
    /// The typed `messages` value, when this change is one.
    pub fn messages(&self) -> Option<Result<MessagesValue, serde_json::Error>> {
        (self.field == "messages").then(|| match &self.value {
            Some(raw) => serde_json::from_str(raw.get()),
            None => Ok(MessagesValue::default()),
        })
    }

    /// The value as JSON (`null` when the change had none).
    pub fn value(&self) -> Value {
        self.value
            .as_deref()
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or(Value::Null)
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
    pub status: String,
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

    #[test]
    fn parses_status_and_inbound() {
        let raw = r#"{"object":"whatsapp_business_account","entry":[{"id":"524126980791429","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550100100","phone_number_id":"106540352242922"},
          "contacts":[{"profile":{"name":"Sheena"},"wa_id":"16505551234"}],
          "messages":[{"from":"16505551234","id":"wamid.A","timestamp":"1749416383","type":"text","text":{"body":"Hi"}}],
          "statuses":[{"id":"wamid.B","status":"failed","timestamp":1750030073,"recipient_id":"16505551234","biz_opaque_callback_data":"msg_x","errors":[{"code":131026,"title":"Message undeliverable","error_data":{"details":"Receiver incapable"}}]}]},"future_key":1}]}]}"#;
        let p: WebhookPayload = serde_json::from_str(raw).expect("parses");
        let m = p.entry[0].changes[0]
            .messages()
            .expect("messages")
            .expect("typed");
        assert_eq!(m.messages[0].text().as_deref(), Some("Hi"));
        assert_eq!(m.statuses[0].unix_time(), Some(1750030073));
        assert_eq!(m.statuses[0].errors[0].code, 131026);
        assert_eq!(
            m.statuses[0].errors[0].description(),
            "Message undeliverable (Receiver incapable)"
        );
    }

    #[test]
    fn other_fields_stay_raw() {
        let raw = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","time":5,"changes":[{"field":"message_template_status_update","value":{"event":"APPROVED","message_template_id":12}}]}]}"#;
        let p: WebhookPayload = serde_json::from_str(raw).expect("parses");
        assert!(p.entry[0].changes[0].messages().is_none());
        assert_eq!(p.entry[0].changes[0].value()["event"], "APPROVED");
    }
}
