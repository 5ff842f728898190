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

#[derive(Debug, Clone)]
pub struct ContactRecord {
    pub id: ContactId,
    pub application_id: ApplicationId,
    pub phone: String,
    pub wa_id: Option<WaId>,
    pub name: Option<String>,
    pub tags: Tags,
    pub last_inbound_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone)]
pub struct InboundRecord {
    pub wamid: Wamid,
    pub application_id: ApplicationId,
    pub phone_number_id: PhoneNumberId,
    /// E.164.
    pub from_phone: String,
    pub wa_id: WaId,
    pub profile_name: Option<String>,
    pub kind: String,
    pub text: Option<String>,
    pub raw: serde_json::Value,
    pub received_at: Millis,
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
