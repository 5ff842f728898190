//! The states and kinds that Parley's records carry from the API to the database: a
//! campaign's state machine and kind, a contact's marketing subscription, an import's state,
//! and what a message carries. Each has one text form (`as_str`/`parse`, and the same names in
//! serde), which is what the API shows and both stores keep.

use serde::{Deserialize, Serialize};

use crate::RenderedTemplate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Scheduled => "scheduled",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<CampaignState> {
        Some(match s {
            "draft" => CampaignState::Draft,
            "scheduled" => CampaignState::Scheduled,
            "running" => CampaignState::Running,
            "paused" => CampaignState::Paused,
            "completed" => CampaignState::Completed,
            "cancelled" => CampaignState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, CampaignState::Completed | CampaignState::Cancelled)
    }
}

/// Marketing skips opted-out contacts; transactional (utility) still sends to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignKind {
    Marketing,
    Transactional,
}

impl CampaignKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignKind::Marketing => "marketing",
            CampaignKind::Transactional => "transactional",
        }
    }

    pub fn parse(s: &str) -> Option<CampaignKind> {
        Some(match s {
            "marketing" => CampaignKind::Marketing,
            "transactional" => CampaignKind::Transactional,
            _ => return None,
        })
    }
}

/// Marketing subscription state of a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subscription {
    /// Never stated: imported or written without consent information.
    Unknown,
    OptedIn,
    OptedOut,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::Unknown => "unknown",
            Subscription::OptedIn => "opted_in",
            Subscription::OptedOut => "opted_out",
        }
    }

    pub fn parse(s: &str) -> Option<Subscription> {
        Some(match s {
            "unknown" => Subscription::Unknown,
            "opted_in" => Subscription::OptedIn,
            "opted_out" => Subscription::OptedOut,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportState {
    Running,
    Done,
    Failed,
    /// Parley stopped (or the upload broke off) mid-import: the rows committed so far are
    /// kept, and the import can be resumed with the same file.
    Interrupted,
}

impl ImportState {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportState::Running => "running",
            ImportState::Done => "done",
            ImportState::Failed => "failed",
            ImportState::Interrupted => "interrupted",
        }
    }
    pub fn parse(s: &str) -> Option<ImportState> {
        Some(match s {
            "running" => ImportState::Running,
            "done" => ImportState::Done,
            "failed" => ImportState::Failed,
            "interrupted" => ImportState::Interrupted,
            _ => return None,
        })
    }
}

/// What a message carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageContent {
    Template {
        template: RenderedTemplate,
    },
    Text {
        body: String,
        preview_url: bool,
    },
    /// An image, video, audio, document or sticker (inbox replies): by Meta's media id (an
    /// upload to `POST /{phone-number-id}/media`) or by a public link.
    Media {
        /// `image`, `video`, `audio`, `document` or `sticker`.
        media_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mime_type: Option<String>,
    },
    /// A reaction to a message (`emoji` empty: the reaction is removed).
    Reaction {
        message_id: String,
        emoji: String,
    },
}

impl MessageContent {
    pub fn kind(&self) -> &'static str {
        match self {
            MessageContent::Template { .. } => "template",
            MessageContent::Text { .. } => "text",
            MessageContent::Media { .. } => "media",
            MessageContent::Reaction { .. } => "reaction",
        }
    }

    /// True for everything but a template: only allowed inside the 24 h window.
    pub fn is_free_form(&self) -> bool {
        !matches!(self, MessageContent::Template { .. })
    }

    /// A short text for lists: the text, the caption, the emoji, or the template's name.
    pub fn summary(&self) -> Option<String> {
        match self {
            MessageContent::Template { template } => Some(format!("[template {}]", template.name)),
            MessageContent::Text { body, .. } => Some(body.clone()),
            MessageContent::Media {
                media_type,
                caption,
                ..
            } => Some(caption.clone().unwrap_or_else(|| format!("[{media_type}]"))),
            MessageContent::Reaction { emoji, .. } => Some(emoji.clone()),
        }
    }
}
