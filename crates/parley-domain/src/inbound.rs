//! Inbound messages as Parley keeps them: a [`InboundKind`] and a normalized body
//! ([`InboundBody`]) beside Meta's raw JSON. The body is the same JSON for every store and for
//! the API, so an inbox reads it without knowing Meta's wire shapes; what Meta sent that the
//! body does not name stays in the raw JSON, never dropped.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an inbound message is. `Unknown` is a type Parley does not know (yet): its body keeps
/// Meta's type name and the raw message keeps everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundKind {
    Text,
    Image,
    Video,
    Audio,
    Document,
    Sticker,
    Location,
    Contacts,
    Reaction,
    Button,
    Interactive,
    Order,
    System,
    Edit,
    Revoke,
    Unsupported,
    RequestWelcome,
    Unknown,
}

impl InboundKind {
    pub const ALL: [InboundKind; 18] = [
        InboundKind::Text,
        InboundKind::Image,
        InboundKind::Video,
        InboundKind::Audio,
        InboundKind::Document,
        InboundKind::Sticker,
        InboundKind::Location,
        InboundKind::Contacts,
        InboundKind::Reaction,
        InboundKind::Button,
        InboundKind::Interactive,
        InboundKind::Order,
        InboundKind::System,
        InboundKind::Edit,
        InboundKind::Revoke,
        InboundKind::Unsupported,
        InboundKind::RequestWelcome,
        InboundKind::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InboundKind::Text => "text",
            InboundKind::Image => "image",
            InboundKind::Video => "video",
            InboundKind::Audio => "audio",
            InboundKind::Document => "document",
            InboundKind::Sticker => "sticker",
            InboundKind::Location => "location",
            InboundKind::Contacts => "contacts",
            InboundKind::Reaction => "reaction",
            InboundKind::Button => "button",
            InboundKind::Interactive => "interactive",
            InboundKind::Order => "order",
            InboundKind::System => "system",
            InboundKind::Edit => "edit",
            InboundKind::Revoke => "revoke",
            InboundKind::Unsupported => "unsupported",
            InboundKind::RequestWelcome => "request_welcome",
            InboundKind::Unknown => "unknown",
        }
    }

    /// Meta's `type` (or a stored kind). `voice` is an audio; Meta's older `unknown` type is
    /// what v25 calls `unsupported`; anything else is `Unknown`.
    pub fn from_meta(kind: &str) -> InboundKind {
        match kind {
            "voice" => InboundKind::Audio,
            "unknown" => InboundKind::Unsupported,
            other => InboundKind::ALL
                .into_iter()
                .find(|k| k.as_str() == other)
                .unwrap_or(InboundKind::Unknown),
        }
    }

    /// Stored kinds read back; `unknown` reads as `Unknown` (not as Meta's older name).
    pub fn from_stored(kind: &str) -> InboundKind {
        InboundKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .unwrap_or(InboundKind::Unknown)
    }

    /// Whether the message opens (or refreshes) the 24 h customer-service window: anything
    /// the user sent does; a system notice (a number or BSUID change) is not the user writing.
    pub fn opens_window(self) -> bool {
        !matches!(self, InboundKind::System)
    }

    /// Kinds whose body names a media object Parley downloads.
    pub fn has_media(self) -> bool {
        matches!(
            self,
            InboundKind::Image
                | InboundKind::Video
                | InboundKind::Audio
                | InboundKind::Document
                | InboundKind::Sticker
        )
    }
}

impl std::fmt::Display for InboundKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the bytes of an inbound message's media stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaState {
    /// To be fetched from Meta (again, after a transient failure).
    Pending,
    /// On disk, served to the application's console users.
    Stored,
    /// Fetched but not kept: too large, or not the type Meta declared (the reason is kept).
    Refused,
    /// Meta never gave it: retries exhausted, or Meta's answer is final.
    Failed,
    /// Removed from disk by the retention setting.
    Expired,
}

impl MediaState {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaState::Pending => "pending",
            MediaState::Stored => "stored",
            MediaState::Refused => "refused",
            MediaState::Failed => "failed",
            MediaState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<MediaState> {
        [
            MediaState::Pending,
            MediaState::Stored,
            MediaState::Refused,
            MediaState::Failed,
            MediaState::Expired,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// The normalized body of an inbound message: its content by kind, and what any kind may
/// carry (reply context, click-to-WhatsApp referral, errors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundBody {
    #[serde(flatten)]
    pub content: InboundContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<InboundContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<Referral>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<InboundError>,
    /// The group a group message was posted in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
}

impl InboundBody {
    pub fn kind(&self) -> InboundKind {
        self.content.kind()
    }

    /// The wamid this message refers to: the message a reaction, edit or revoke acts on, else
    /// the message it replies to.
    pub fn refers_to(&self) -> Option<&str> {
        match &self.content {
            InboundContent::Reaction { message_id, .. } => Some(message_id.as_str()),
            InboundContent::Edit {
                original_message_id,
                ..
            }
            | InboundContent::Revoke {
                original_message_id,
            } => Some(original_message_id.as_str()),
            _ => self.context.as_ref()?.message_id.as_deref(),
        }
        .filter(|w| !w.is_empty())
    }

    /// The text a person reads: the body, a caption, a button's title, an emoji.
    pub fn text(&self) -> Option<String> {
        self.content.text()
    }

    /// The media object, for the kinds that carry one.
    pub fn media(&self) -> Option<&MediaRef> {
        match &self.content {
            InboundContent::Image(m)
            | InboundContent::Video(m)
            | InboundContent::Audio(m)
            | InboundContent::Document(m)
            | InboundContent::Sticker(m) => Some(m),
            _ => None,
        }
    }
}

/// The content by kind; the JSON carries `kind` beside the kind's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InboundContent {
    Text {
        body: String,
    },
    Image(MediaRef),
    Video(MediaRef),
    Audio(MediaRef),
    Document(MediaRef),
    Sticker(MediaRef),
    Location {
        latitude: Option<f64>,
        longitude: Option<f64>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        address: Option<String>,
        #[serde(default)]
        url: Option<String>,
    },
    /// Shared contact cards as Meta sent them (names, phones, emails, …), and where they came
    /// from (`contact_request` answers a `REQUEST_CONTACT_INFO` button).
    Contacts {
        contacts: Vec<Value>,
    },
    /// A reaction to `message_id`; no emoji is the reaction taken back.
    Reaction {
        message_id: String,
        #[serde(default)]
        emoji: Option<String>,
    },
    /// A template's quick-reply button.
    Button {
        #[serde(default)]
        payload: Option<String>,
        #[serde(default)]
        text: Option<String>,
    },
    Interactive(InteractiveReply),
    Order {
        #[serde(default)]
        catalog_id: Option<String>,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        product_items: Vec<Value>,
    },
    System {
        #[serde(default)]
        system_type: Option<String>,
        #[serde(default)]
        body: Option<String>,
        /// The new phone, new BSUID and the one it replaced, as Meta named them.
        #[serde(default)]
        wa_id: Option<String>,
        #[serde(default)]
        user_id: Option<String>,
        #[serde(default)]
        previous_user_id: Option<String>,
    },
    /// The user changed `original_message_id`; `message` is its new content.
    Edit {
        original_message_id: String,
        message: Box<InboundContent>,
    },
    Revoke {
        original_message_id: String,
    },
    /// A message WhatsApp could not pass on (`unsupported.type` names what it was).
    Unsupported {
        #[serde(default)]
        unsupported_type: Option<String>,
    },
    /// The user opened the chat for the first time (no content).
    RequestWelcome,
    /// A type Parley does not know: its name here, everything else in the raw message.
    Unknown {
        #[serde(default)]
        original_type: Option<String>,
    },
}

impl InboundContent {
    pub fn kind(&self) -> InboundKind {
        match self {
            InboundContent::Text { .. } => InboundKind::Text,
            InboundContent::Image(_) => InboundKind::Image,
            InboundContent::Video(_) => InboundKind::Video,
            InboundContent::Audio(_) => InboundKind::Audio,
            InboundContent::Document(_) => InboundKind::Document,
            InboundContent::Sticker(_) => InboundKind::Sticker,
            InboundContent::Location { .. } => InboundKind::Location,
            InboundContent::Contacts { .. } => InboundKind::Contacts,
            InboundContent::Reaction { .. } => InboundKind::Reaction,
            InboundContent::Button { .. } => InboundKind::Button,
            InboundContent::Interactive(_) => InboundKind::Interactive,
            InboundContent::Order { .. } => InboundKind::Order,
            InboundContent::System { .. } => InboundKind::System,
            InboundContent::Edit { .. } => InboundKind::Edit,
            InboundContent::Revoke { .. } => InboundKind::Revoke,
            InboundContent::Unsupported { .. } => InboundKind::Unsupported,
            InboundContent::RequestWelcome => InboundKind::RequestWelcome,
            InboundContent::Unknown { .. } => InboundKind::Unknown,
        }
    }

    pub fn text(&self) -> Option<String> {
        match self {
            InboundContent::Text { body } => Some(body.clone()),
            InboundContent::Image(m)
            | InboundContent::Video(m)
            | InboundContent::Audio(m)
            | InboundContent::Document(m)
            | InboundContent::Sticker(m) => m.caption.clone(),
            InboundContent::Location { name, address, .. } => name.clone().or(address.clone()),
            InboundContent::Reaction { emoji, .. } => emoji.clone(),
            InboundContent::Button { text, payload } => text.clone().or(payload.clone()),
            InboundContent::Interactive(reply) => reply.title(),
            InboundContent::Order { text, .. } => text.clone().filter(|t| !t.is_empty()),
            InboundContent::System { body, .. } => body.clone(),
            InboundContent::Edit { message, .. } => message.text(),
            _ => None,
        }
    }
}

/// A media object of an inbound message, as Meta declared it. The bytes are fetched later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MediaRef {
    /// Meta's media id (`GET /{media-id}` gives a download URL).
    pub id: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// An audio recorded as a voice note.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub voice: bool,
    /// An animated sticker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub animated: bool,
}

/// The answer to an interactive message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply_type", rename_all = "snake_case")]
pub enum InteractiveReply {
    ButtonReply {
        id: String,
        #[serde(default)]
        title: Option<String>,
    },
    ListReply {
        id: String,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        description: Option<String>,
    },
    /// A Flow's answer: `response` is the Flow's `response_json`, parsed (kept as a string
    /// when it is not JSON).
    NfmReply {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        body: Option<String>,
        response: Value,
    },
    /// An interactive answer of a type Parley does not know (kept raw in the message).
    Other {
        #[serde(default)]
        interactive_type: Option<String>,
    },
}

impl InteractiveReply {
    pub fn title(&self) -> Option<String> {
        match self {
            InteractiveReply::ButtonReply { title, .. }
            | InteractiveReply::ListReply { title, .. } => title.clone(),
            InteractiveReply::NfmReply { body, name, .. } => body.clone().or(name.clone()),
            InteractiveReply::Other { .. } => None,
        }
    }
}

/// `context` of an inbound message: what it replies to, whether it was forwarded, and the
/// product it asks about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InboundContext {
    /// The wamid replied to (or whose button was tapped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Who sent the message replied to (the business number, or the user in a group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frequently_forwarded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referred_product: Option<ReferredProduct>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReferredProduct {
    #[serde(default)]
    pub catalog_id: Option<String>,
    #[serde(default)]
    pub product_retailer_id: Option<String>,
}

/// A click-to-WhatsApp ad or post the user came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Referral {
    #[serde(default)]
    pub source_url: Option<String>,
    #[serde(default)]
    pub source_id: Option<String>,
    /// `ad` or `post`.
    #[serde(default)]
    pub source_type: Option<String>,
    #[serde(default)]
    pub headline: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub video_url: Option<String>,
    #[serde(default)]
    pub thumbnail_url: Option<String>,
    /// The click id Meta's Conversions API takes back.
    #[serde(default)]
    pub ctwa_clid: Option<String>,
    #[serde(default)]
    pub welcome_message: Option<String>,
}

/// An error Meta attached to the message (`unsupported` ones always carry one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct InboundError {
    pub code: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in InboundKind::ALL {
            assert_eq!(InboundKind::from_stored(k.as_str()), k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(InboundKind::from_meta("voice"), InboundKind::Audio);
        assert_eq!(InboundKind::from_meta("unknown"), InboundKind::Unsupported);
        assert_eq!(InboundKind::from_meta("poll"), InboundKind::Unknown);
    }

    #[test]
    fn a_body_reads_back_as_written() {
        let body = InboundBody {
            content: InboundContent::Edit {
                original_message_id: "wamid.A".into(),
                message: Box::new(InboundContent::Text { body: "new".into() }),
            },
            context: Some(InboundContext {
                forwarded: true,
                ..Default::default()
            }),
            referral: None,
            errors: vec![],
            group_id: None,
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["kind"], "edit");
        assert_eq!(json["message"]["kind"], "text");
        let back: InboundBody = serde_json::from_value(json).unwrap();
        assert_eq!(back, body);
        assert_eq!(back.refers_to(), Some("wamid.A"));
        assert_eq!(back.text().as_deref(), Some("new"));
    }
}
