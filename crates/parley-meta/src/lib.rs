//! Meta Graph API client for the WhatsApp Cloud API: wire types, the HTTP client, the webhook
//! envelope and its signature check. The same client talks to Meta and to `parley-sandbox`.

pub mod client;
pub mod coexistence;
pub mod error;
pub mod onboarding;
pub mod outbound;
pub mod signature;
pub mod templates;
pub mod webhook;

pub use client::{GraphClient, Page, PhoneNumberInfo, SendResponse, WabaInfo};
pub use error::{ApiError, GraphError};
pub use outbound::{
    Outbound, mark_read_body, template_message, template_message_body, text_message,
    text_message_body,
};
pub use signature::{SIGNATURE_HEADER, sign, verify_signature};
pub use webhook::{
    AccountReviewValue, AccountUpdateValue, CapabilityValue, Change, DeliveryStatus, Entry,
    HistoryValue, InboundMessage, LimitTier, MessageEchoesValue, MessagesValue,
    PhoneNumberNameValue, PhoneNumberQualityValue, StateSyncValue, StatusError, StatusUpdate,
    TemplateCategoryValue, TemplateComponentsValue, TemplateQualityValue, TemplateRef,
    TemplateStatusValue, UserPreferencesValue, WebhookChange, WebhookContact, WebhookPayload,
};

/// The Graph API version Parley speaks (Meta's OpenAPI spec in `shared/meta/` is v23.0).
pub const DEFAULT_GRAPH_VERSION: &str = "v23.0";
