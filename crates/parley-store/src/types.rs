//! Rows as the rest of Parley sees them.

use parley_domain::{
    AccountId, ApplicationId, BusinessId, ContactId, MessageId, MessageState, PhoneNumberId,
    PlatformId, Tags, Template, TemplateId, UserId, WaId, WabaId, Wamid,
};
use serde::{Deserialize, Serialize};

use crate::Millis;

use parley_domain::MessageContent;

#[derive(Debug, Clone)]
pub struct ApplicationRecord {
    pub id: ApplicationId,
    pub account_id: AccountId,
    pub name: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    pub account_id: AccountId,
    pub email: String,
    pub password_hash: String,
    /// A TOTP second factor is enrolled (the secret itself is read apart, decrypted).
    pub totp_enabled: bool,
}

/// A platform to save; the token is encrypted by the store.
pub struct NewPlatform {
    pub id: PlatformId,
    pub application_id: ApplicationId,
    /// Unknown when the sign-up named no portfolio (stored as "").
    pub business_id: Option<BusinessId>,
    pub waba_id: WabaId,
    pub waba_name: Option<String>,
    pub status: String,
    pub access_token: String,
    pub details: serde_json::Value,
    pub now: Millis,
}

impl std::fmt::Debug for NewPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewPlatform")
            .field("id", &self.id)
            .field("waba_id", &self.waba_id)
            .field("access_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformRecord {
    pub id: PlatformId,
    pub application_id: ApplicationId,
    /// Unknown when the sign-up named no portfolio (stored as "").
    pub business_id: Option<BusinessId>,
    pub waba_id: WabaId,
    pub waba_name: Option<String>,
    pub status: String,
    pub details: serde_json::Value,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhoneNumberRecord {
    pub phone_number_id: PhoneNumberId,
    pub platform_id: PlatformId,
    pub application_id: ApplicationId,
    pub display_phone_number: String,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    pub messaging_limit: Option<String>,
    pub throughput_mps: u32,
    pub status: Option<String>,
    pub updated_at: Millis,
}

#[derive(Debug, Clone)]
pub struct TemplateRecord {
    pub id: TemplateId,
    pub application_id: ApplicationId,
    pub platform_id: PlatformId,
    pub meta_id: Option<String>,
    pub template: Template,
    pub raw: serde_json::Value,
    pub updated_at: Millis,
    pub deleted_at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct NewContact {
    /// E.164, parsed at the edge.
    pub phone: String,
    pub name: Option<String>,
    pub tags: Tags,
}

/// Who a webhook (or a request) names: any of a phone, a business-scoped user id (BSUID) and
/// a parent BSUID, with the username and profile name that came along (META_2026 §3.8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactIdentity {
    /// E.164.
    pub phone: Option<String>,
    pub bsuid: Option<String>,
    pub parent_bsuid: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
}

impl ContactIdentity {
    /// The contact's address: its phone when known, else its BSUID.
    pub fn address(&self) -> Option<&str> {
        self.phone.as_deref().or(self.bsuid.as_deref())
    }

    /// Meta's `wa_id` of the phone (its digits).
    pub fn wa_id(&self) -> Option<String> {
        self.phone
            .as_deref()
            .map(|p| p.trim_start_matches('+').to_owned())
    }

    /// True when it names nobody.
    pub fn is_empty(&self) -> bool {
        self.phone.is_none() && self.bsuid.is_none() && self.parent_bsuid.is_none()
    }
}

/// The identifiers a contact already has, as a round of status webhooks checks them before
/// learning (`Store::known_identities`): an identity they already hold is neither parsed nor
/// written again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownIdentity {
    /// The contact's address: its E.164 phone when known, else its BSUID.
    pub phone: String,
    pub bsuid: String,
    pub parent_bsuid: Option<String>,
    pub username: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ContactRecord {
    pub id: ContactId,
    pub application_id: ApplicationId,
    /// The contact's address: its E.164 phone when known, else its BSUID (migration 0015);
    /// [`ContactRecord::phone_number`] is the phone alone.
    pub phone: String,
    /// The business-scoped user id Meta last named this person by.
    pub bsuid: Option<String>,
    pub parent_bsuid: Option<String>,
    /// The WhatsApp username, as display text.
    pub username: Option<String>,
    pub wa_id: Option<WaId>,
    pub name: Option<String>,
    pub tags: Tags,
    pub last_inbound_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl ContactRecord {
    /// The E.164 phone, when Parley knows it.
    pub fn phone_number(&self) -> Option<&str> {
        self.phone.starts_with('+').then_some(self.phone.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct InboundRecord {
    pub wamid: Wamid,
    pub application_id: ApplicationId,
    pub phone_number_id: PhoneNumberId,
    /// The sender's address: E.164 when Meta gave the phone, else the BSUID.
    pub from_phone: String,
    /// Everything the webhook said about the sender.
    pub from: ContactIdentity,
    pub kind: parley_domain::InboundKind,
    pub text: Option<String>,
    /// The normalized body (`parley_domain::InboundBody` as JSON).
    pub body: serde_json::Value,
    /// The wamid a reply, reaction, edit or revoke refers to.
    pub refers_to: Option<String>,
    pub raw: serde_json::Value,
    pub received_at: Millis,
    /// The media object to fetch, for media kinds.
    pub media: Option<crate::inbound::NewInboundMedia>,
}

impl InboundRecord {
    /// The customer came from a click-to-WhatsApp ad or a Facebook Page button: the message
    /// carries a `referral` object, and a 72 h free entry point opens (META_2026 §5.1).
    pub fn opens_entry_point(&self) -> bool {
        self.body
            .get("referral")
            .is_some_and(serde_json::Value::is_object)
    }
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: MessageId,
    pub application_id: ApplicationId,
    pub phone_number_id: PhoneNumberId,
    pub contact_id: Option<ContactId>,
    pub to_phone: String,
    pub content: MessageContent,
    pub reply_to: Option<Wamid>,
    pub idempotency_key: Option<String>,
    pub now: Millis,
}

#[derive(Debug, Clone)]
pub enum InsertOutcome {
    Created,
    /// The idempotency key was used before: this is the message it created.
    Existing(MessageRecord),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: MessageId,
    pub application_id: ApplicationId,
    pub phone_number_id: PhoneNumberId,
    pub contact_id: Option<ContactId>,
    pub to_phone: String,
    pub content: MessageContent,
    pub reply_to: Option<Wamid>,
    pub state: MessageState,
    pub wamid: Option<Wamid>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub queued_at: Millis,
    pub sending_at: Option<Millis>,
    pub accepted_at: Option<Millis>,
    pub sent_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub read_at: Option<Millis>,
    pub failed_at: Option<Millis>,
    pub updated_at: Millis,
    /// A campaign message's send window in its recipient's timezone (`09:00-20:00@Zone`).
    pub send_window: Option<String>,
    /// A single send's place in its lane (its number and contact; migration 0041): the sender
    /// sends a lane's messages one at a time, in this order. `None` for campaign messages and
    /// for a send Meta capped (131049), which left its lane.
    #[serde(default)]
    pub lane_seq: Option<i64>,
}

/// A status Meta reported, to merge into a message.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub wamid: Wamid,
    /// Our id from `biz_opaque_callback_data`, when Meta echoed it.
    pub message_id: Option<MessageId>,
    pub state: MessageState,
    pub at: Millis,
    pub error: Option<(i64, String)>,
    /// Meta's `pricing` object of the status, written in the same `UPDATE` as the status
    /// (a second write of the row ran the statistics triggers a second time).
    pub pricing: Option<StatusPricing>,
}

/// A status's `pricing` object as stored (`messages.pricing`) and its category key
/// (`messages.pricing_category`); the last one of a batch for a message wins.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPricing {
    /// The object as JSON text.
    pub pricing: String,
    pub category: Option<String>,
}

/// A send Meta accepted, recorded in a batch with the others of its round.
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub id: MessageId,
    pub wamid: Wamid,
    pub at: Millis,
    /// The quota ledger entry the send confirms, when it was business-initiated.
    pub quota: Option<QuotaConfirm>,
}

/// Meta accepted a send that reached `contact` in the limit scope `scope_key`: the contact
/// counts from the acceptance, and the slot `reserved_by` this message is now a confirmed one.
#[derive(Debug, Clone)]
pub struct QuotaConfirm {
    pub scope_key: String,
    pub contact: String,
}

#[derive(Debug, Clone)]
pub struct WebhookEventRecord {
    pub id: i64,
    pub received_at: Millis,
    pub body: Vec<u8>,
    pub attempts: i64,
}
