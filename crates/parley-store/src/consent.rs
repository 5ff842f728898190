//! Marketing consent, Meta's pacing and pricing on messages (#14 parts 2-4; migration 0016):
//! what Meta's send answer and statuses said beyond the state (held for quality assessment,
//! the `pricing` object, per-user marketing caps), the application's opt-out keywords, and the
//! send-time consent check.

use std::collections::BTreeMap;

use async_trait::async_trait;
use parley_domain::{ApplicationId, CampaignId, MessageId, MessageState, PhoneNumberId, Wamid};
use serde::Serialize;

use crate::{Millis, Result};

/// What Meta said about a message beyond its state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MessageMeta {
    /// The send answer's `message_status` when it was not `accepted`
    /// (`held_for_quality_assessment`).
    pub meta_status: Option<String>,
    /// The `pricing` object of the latest status that carried one, as received.
    pub pricing: Option<serde_json::Value>,
    /// Its `category`: what Meta charged.
    pub pricing_category: Option<String>,
    /// How many times Meta's per-user marketing cap (131049) sent the message back.
    pub capped_times: i64,
}

/// A message found by its wamid (or our id), with what the consent rules need.
#[derive(Debug, Clone)]
pub struct MessageRef {
    pub id: MessageId,
    pub application_id: ApplicationId,
    pub phone_number_id: PhoneNumberId,
    pub to_phone: String,
    pub campaign_id: Option<CampaignId>,
    pub state: MessageState,
    pub error_code: Option<i64>,
    /// False while Meta's acceptance of the send is not written yet (a status can outrun it).
    pub accepted: bool,
    pub capped_times: i64,
}

/// A status's `pricing`, to store on its message.
#[derive(Debug, Clone)]
pub struct PricingUpdate {
    pub wamid: Wamid,
    pub message_id: Option<MessageId>,
    pub pricing: serde_json::Value,
    pub category: Option<String>,
}

/// An application's opt-out settings as stored: `None` keywords = the defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptOutSettings {
    pub keywords: Option<Vec<String>>,
    pub reply: Option<String>,
}

/// A campaign's messages Meta holds or capped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MetaCounts {
    /// Accepted by Meta and held for quality assessment (pacing), not released yet.
    pub held_by_meta: u64,
    /// Queued again after Meta's per-user marketing cap (131049), waiting their 24 h.
    pub capped_waiting: u64,
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Notes Meta's `message_status` (e.g. held for quality assessment) on a message it just
    /// accepted (`sending` or already `accepted`).
    async fn mark_meta_status(&self, id: &MessageId, status: &str) -> Result<()>;
    /// What Meta said about these messages of `app`, by id (absent ids are not the app's).
    async fn message_meta(
        &self,
        app: &ApplicationId,
        ids: &[MessageId],
    ) -> Result<BTreeMap<MessageId, MessageMeta>>;
    /// Stores each status's `pricing` on its message (by wamid, else by our id); returns how
    /// many messages changed (one already holding that pricing is not written again).
    async fn record_pricing(&self, updates: &[PricingUpdate]) -> Result<u64>;
    /// The message a status names: by wamid, else by our id from the callback data.
    async fn message_ref(
        &self,
        wamid: &Wamid,
        id: Option<&MessageId>,
    ) -> Result<Option<MessageRef>>;
    /// A message Meta failed with 131049 goes back to the queue, due at `until`, unless it was
    /// already capped `limit` times or its acceptance is not written yet (the recorder would
    /// then move the requeued row to `accepted`); `false` when it stays failed. A single send
    /// leaves its lane (per-contact order): a day's wait must not hold up the contact's replies.
    async fn requeue_capped(
        &self,
        id: &MessageId,
        until: Millis,
        limit: i64,
        now: Millis,
    ) -> Result<bool>;
    /// A send Meta refused with 131049: queued again, due at `until`, unless capped `limit`
    /// times already; `false` when it was not (the caller fails it). It leaves its lane, as
    /// in `requeue_capped`.
    async fn reschedule_capped(
        &self,
        id: &MessageId,
        until: Millis,
        error: (i64, &str),
        limit: i64,
        now: Millis,
    ) -> Result<bool>;
    /// The `sending` messages of the number that belong to a marketing campaign and go to a
    /// contact opted out of marketing (the send-time check).
    async fn opted_out_sending(&self, phone_number_id: &PhoneNumberId) -> Result<Vec<MessageId>>;
    /// Skips a claimed message whose contact opted out meanwhile.
    async fn skip_opted_out(&self, id: &MessageId, now: Millis) -> Result<()>;
    /// Pauses the running marketing campaigns of these numbers with `reason`.
    async fn pause_marketing_campaigns_of_numbers(
        &self,
        phone_number_ids: &[PhoneNumberId],
        reason: &str,
        now: Millis,
    ) -> Result<Vec<CampaignId>>;
    /// A campaign's messages held or capped by Meta now.
    async fn campaign_meta_counts(&self, id: &CampaignId) -> Result<MetaCounts>;
    /// Messages of the application Meta charged, by `pricing.category`, among those first
    /// sent in `[since, until)` (for the statistics).
    async fn charged_categories(
        &self,
        app: &ApplicationId,
        since: Millis,
        until: Millis,
    ) -> Result<BTreeMap<String, u64>>;
    /// A campaign's messages by the category Meta charged.
    async fn campaign_charged_categories(&self, id: &CampaignId) -> Result<BTreeMap<String, u64>>;
    async fn opt_out_settings(&self, app: &ApplicationId) -> Result<OptOutSettings>;
    async fn set_opt_out_settings(&self, app: &ApplicationId, s: &OptOutSettings) -> Result<()>;
}
