//! Coexistence (WhatsApp Business app numbers on the Cloud API): where each such number's
//! one-shot sync calls stand, the history sync's progress, Meta's offboarding, and the
//! messages that never went through Parley's send path (imported history, echoes of what the
//! business typed in the app). Those live in their own table so that nothing reading
//! `messages` (sender, quota, costs) or `inbound_messages` (the 24 h window) can see them.

use async_trait::async_trait;
use parley_domain::{ApplicationId, PhoneNumberId, PlatformId};
use serde::Serialize;

use crate::{Millis, Result};

/// A coexistence number and its sync state.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CoexistenceRecord {
    pub phone_number_id: PhoneNumberId,
    pub application_id: ApplicationId,
    pub platform_id: PlatformId,
    /// When Parley first saw it onboarded: Meta's 24 h sync window counts from about here.
    pub onboarded_at: Millis,
    /// `pending`, `requested` or `failed`.
    pub contacts_sync: String,
    pub contacts_request_id: Option<String>,
    /// `pending`, `requested`, `in_progress`, `done`, `declined` or `failed`.
    pub history_sync: String,
    pub history_request_id: Option<String>,
    /// 0–100, from `history` webhooks' `metadata.progress`.
    pub history_progress: i64,
    /// Why a sync failed, or the decline's text.
    pub sync_error: Option<String>,
    /// Set while the business has disconnected the number in the app.
    pub offboarded_at: Option<Millis>,
    /// Meta's reason for the offboarding, as shown on the platform.
    pub disconnection_reason: Option<String>,
    pub updated_at: Millis,
}

/// One message of the app's history or one echo.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppMessageRecord {
    pub wamid: String,
    pub application_id: ApplicationId,
    pub phone_number_id: PhoneNumberId,
    pub contact_id: Option<String>,
    /// E.164 of the customer.
    pub contact_phone: String,
    /// `inbound` (from the customer) or `outbound` (from the business).
    pub direction: String,
    /// `history` (imported from the app) or `business_app` (an echo).
    pub source: String,
    pub kind: String,
    pub text: Option<String>,
    /// History only: `history_context.status` (`READ`, `DELIVERED`, …), not a delivery status.
    pub history_status: Option<String>,
    pub raw: serde_json::Value,
    /// When it was sent, per Meta's timestamp.
    pub sent_at: Millis,
    pub created_at: Millis,
}

#[async_trait]
pub trait CoexistenceStore: Send + Sync + 'static {
    /// Records a coexistence number the first time it is seen (both syncs `pending`,
    /// `onboarded_at` = `now`); a number already known to the same platform keeps its row,
    /// one that moved to another platform starts afresh (a new onboarding). Returns the row.
    async fn upsert_coexistence_number(
        &self,
        phone: &PhoneNumberId,
        app: &ApplicationId,
        platform: &PlatformId,
        now: Millis,
    ) -> Result<CoexistenceRecord>;
    async fn coexistence_number(&self, phone: &PhoneNumberId) -> Result<Option<CoexistenceRecord>>;
    async fn platform_coexistence(&self, platform: &PlatformId) -> Result<Vec<CoexistenceRecord>>;
    /// Writes the row's mutable fields (syncs, progress, error, offboarding).
    async fn save_coexistence(&self, record: &CoexistenceRecord) -> Result<()>;
    /// The numbers whose business disconnected them in the app (their sends wait).
    async fn offboarded_numbers(&self) -> Result<Vec<PhoneNumberId>>;
    /// Stores messages once by wamid; a stored `media_placeholder` takes the late media that
    /// names the same wamid. Returns how many rows were written.
    async fn insert_app_messages(&self, messages: &[AppMessageRecord]) -> Result<u64>;
    /// A contact's app messages (history and echoes), newest first.
    async fn contact_app_messages(
        &self,
        app: &ApplicationId,
        phone: &str,
        limit: u32,
    ) -> Result<Vec<AppMessageRecord>>;
}
