//! Campaigns: the campaign rows with their state machine, the planner's chunked expansion of
//! the audience into `messages` rows (each chunk committed with the planner's cursor, so a
//! crash neither loses nor repeats a recipient), statistics by grouped queries over the
//! campaign's messages, and the quota ledger of business-initiated conversations.
//!
//! Every state change is a conditional UPDATE (`… WHERE state IN (from…)`): starting twice, or
//! two nodes starting the same campaign, changes it once.

use std::collections::BTreeMap;

use async_trait::async_trait;
use parley_domain::quota::{Gate, MessagingLimit, Reach};
use parley_domain::{
    ApplicationId, CampaignId, CampaignKind, CampaignState, MessageId, PhoneNumberId,
};
use serde::Serialize;

use crate::audience::AudienceContact;

use crate::{Millis, NewMessage, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct CampaignRecord {
    pub id: CampaignId,
    pub application_id: ApplicationId,
    pub name: String,
    pub phone_number_id: PhoneNumberId,
    pub template_name: String,
    pub template_language: String,
    /// `VariableInput` as the API gave it.
    pub variables: serde_json::Value,
    /// `{"filter": "…"}` or `{"segment_id": "seg_…"}` as the API gave it.
    pub audience: serde_json::Value,
    /// The filter the planner expands (a saved segment's filter is copied at creation).
    pub audience_filter: String,
    pub kind: CampaignKind,
    pub scheduled_at: Option<Millis>,
    pub send_window: Option<serde_json::Value>,
    /// Time-to-live of its sends through the Marketing Messages API (seconds, 43200..=2592000;
    /// `None`: Meta's default of 30 days). Migration 0021.
    pub marketing_ttl_seconds: Option<i64>,
    pub state: CampaignState,
    pub state_reason: Option<String>,
    /// The last contact phone the planner expanded.
    pub planner_cursor: Option<String>,
    /// True once the whole audience is expanded into messages.
    pub planned: bool,
    /// Messages planned so far (queued and skipped).
    pub recipients: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

/// One planned recipient: a message to queue, or to record as skipped with the reason.
#[derive(Debug, Clone)]
pub struct PlannedMessage {
    pub message: NewMessage,
    /// `(reason code, text)`: the recipient is recorded as `skipped`.
    pub skip: Option<(String, String)>,
    /// The recipient's send window (`09:00-20:00@Europe/Berlin`), checked before each send.
    pub send_window: Option<String>,
    /// Outside its window now: queued with `hold_reason = 'window'`, due at this instant.
    pub window_opens_at: Option<Millis>,
}

/// One number of an uploaded list, as checked at upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// E.164 when valid, else the text as given.
    pub phone: String,
    /// `invalid_number` or `duplicate`; `None` to send.
    pub skip: Option<String>,
}

/// One entry of a campaign's list with its contact (none when invalid, or erased since).
#[derive(Debug, Clone)]
pub struct ListRecipient {
    pub position: i64,
    pub entry: ListEntry,
    pub contact: Option<AudienceContact>,
}

/// Counters of a campaign's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CampaignCounts {
    /// Messages by state (`queued`, `sending`, `accepted`, `sent`, …).
    pub by_state: BTreeMap<String, u64>,
    /// Queued messages waiting for a messaging-limit slot.
    pub waiting_for_quota: u64,
    /// When the earliest of those may go.
    pub next_slot_at: Option<Millis>,
    /// Queued messages waiting for their send window to open.
    pub waiting_for_window: u64,
    /// When the earliest of those opens.
    pub next_window_at: Option<Millis>,
    /// Failed messages by Meta's (or Parley's) error code.
    pub failed_by_code: BTreeMap<String, u64>,
    /// Skipped messages by reason code.
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Delivered (or read) messages answered by an inbound message within 24 h of delivery.
    pub replied: u64,
    /// Per hour (start of the hour, Unix ms): messages that reached `sent` or beyond that hour.
    pub sent_per_hour: BTreeMap<Millis, u64>,
}

/// The quota gate's question for one send.
#[derive(Debug, Clone)]
pub struct QuotaRequest<'a> {
    pub scope_key: &'a str,
    pub application_id: &'a ApplicationId,
    /// The recipient, E.164.
    pub contact: &'a str,
    pub message_id: &'a MessageId,
    pub limit: MessagingLimit,
    pub now: Millis,
}

/// One send asking the gate, in a `QuotaBatch`.
#[derive(Debug, Clone)]
pub struct QuotaItem<'a> {
    /// Who the ledger counts: the contact's id (one person, whatever address it is reached
    /// by), else the recipient's address (E.164 or BSUID). Inside the service window when
    /// the contact with that id or phone wrote in the last 24 h.
    pub contact: &'a str,
    pub message_id: &'a MessageId,
}

/// The quota gate's question for a round of sends in one scope.
#[derive(Debug, Clone)]
pub struct QuotaBatch<'a> {
    pub scope_key: &'a str,
    pub application_id: &'a ApplicationId,
    pub limit: MessagingLimit,
    pub now: Millis,
    pub items: &'a [QuotaItem<'a>],
}

/// What a backend read for a `QuotaBatch`; `decide_batch` takes the decisions for both.
#[derive(Debug, Default)]
pub(crate) struct QuotaFacts {
    /// Contacts of the batch inside their customer-service window.
    pub in_window: std::collections::HashSet<String>,
    /// Contacts of the batch in the ledger, with their last reach.
    pub last_at: std::collections::HashMap<String, Millis>,
    /// Contacts counted in the scope now (`None` when the limit is unlimited: not counted).
    pub used: Option<u64>,
    /// Every counted last reach, oldest first, when the batch may fill the limit.
    pub active: Option<Vec<Millis>>,
}

impl QuotaFacts {
    /// Whether the backend must read the counted instants (`active`) for this batch.
    pub fn needs_active(&self, req: &QuotaBatch<'_>) -> bool {
        match (req.limit.per_day(), self.used) {
            (Some(per_day), Some(used)) => used + req.items.len() as u64 > per_day,
            _ => false,
        }
    }
}

/// The decisions for a batch: the answers, the items that reserve a slot (new contacts
/// let through) and the items let through at all (their quota/window hold is lifted).
pub(crate) struct QuotaDecisions {
    pub answers: Vec<QuotaAnswer>,
    pub reserve: Vec<usize>,
    pub go: Vec<usize>,
}

/// The items one after the other, each seeing the reservations of those before it.
pub(crate) fn decide_batch(req: &QuotaBatch<'_>, mut facts: QuotaFacts) -> QuotaDecisions {
    let mut out = QuotaDecisions {
        answers: Vec::with_capacity(req.items.len()),
        reserve: Vec::new(),
        go: Vec::new(),
    };
    let mut used = facts.used.unwrap_or(0);
    for (i, item) in req.items.iter().enumerate() {
        let in_window = facts.in_window.contains(item.contact);
        let last_at = facts.last_at.get(item.contact).copied();
        let reach = parley_domain::quota::classify_reach(in_window, last_at, req.now);
        let active = facts.active.as_deref();
        let gate = parley_domain::quota::decide(req.limit, reach, used, req.now, |k| {
            active.and_then(|a| a.get(usize::try_from(k).ok()?).copied())
        });
        if let Gate::Go(r) = gate {
            out.go.push(i);
            if r == Reach::NewContact {
                // Unlimited: no slot to hold for the send in flight; the ledger row is
                // written when Meta accepts it (`confirm_quota`).
                if req.limit.per_day().is_some() {
                    out.reserve.push(i);
                }
                facts.last_at.insert(item.contact.to_owned(), req.now);
                if let Some(a) = facts.active.as_mut() {
                    a.push(req.now);
                }
                used += 1;
            }
        }
        out.answers.push(QuotaAnswer {
            gate,
            used: facts.used.map(|_| used),
        });
    }
    out
}

/// The gate's answer, with the reach to confirm on acceptance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaAnswer {
    pub gate: Gate,
    /// The scope's unique contacts counted at `now` (after this reservation); `None` when
    /// the limit is unlimited and nothing is counted against it.
    pub used: Option<u64>,
}

impl QuotaAnswer {
    pub fn reach(&self) -> Option<Reach> {
        match self.gate {
            Gate::Go(r) => Some(r),
            Gate::WaitUntil(_) => None,
        }
    }
}

#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Stores a draft campaign, with its uploaded list (positions from 1) in the same
    /// transaction, unless its application has `max_drafts` drafts already (false then;
    /// concurrent creates stop exactly at the cap).
    /// The application's draft campaigns.
    async fn count_draft_campaigns(&self, app: &ApplicationId) -> Result<u64>;
    async fn create_campaign(
        &self,
        campaign: &CampaignRecord,
        list: &[ListEntry],
        max_drafts: u64,
    ) -> Result<bool>;
    async fn campaign(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<Option<CampaignRecord>>;
    /// Newest first, after the cursor.
    async fn campaigns(
        &self,
        app: &ApplicationId,
        after: Option<&CampaignId>,
        limit: u32,
    ) -> Result<Vec<CampaignRecord>>;
    /// Running → completed when none of its messages is open (`queued`, `sending`) or held by
    /// Meta for quality assessment: decided under the campaign row's lock and written in the
    /// same transaction (with `campaign.completed`). `requeue_capped` takes the same lock
    /// before it puts a failed message back in the queue, so the two never interleave: a
    /// completion read before a requeue and written after it would leave a completed campaign
    /// with a queued message the sender never claims. Returns whether this call completed it.
    async fn complete_campaign_if_done(&self, id: &CampaignId, now: Millis) -> Result<bool>;
    /// Moves the campaign to `to` only if it is in one of `from` (one conditional UPDATE).
    /// Sets `started_at` (first time `running`) and `finished_at` (final states). Returns
    /// whether this call changed it.
    async fn transition_campaign(
        &self,
        id: &CampaignId,
        from: &[CampaignState],
        to: CampaignState,
        reason: Option<&str>,
        now: Millis,
    ) -> Result<bool>;
    /// Running campaigns not fully planned, and scheduled ones whose time has come.
    async fn campaigns_to_work(&self, now: Millis) -> Result<Vec<CampaignRecord>>;
    /// Running campaigns fully planned: the ones that may complete.
    async fn running_planned_campaigns(&self) -> Result<Vec<CampaignRecord>>;
    /// Commits one planner chunk: the messages and the cursor together, only while the
    /// campaign is running and its cursor is still `expected_cursor` (so two planners never
    /// insert the same chunk). Returns false (nothing written) otherwise.
    async fn add_planned_messages(
        &self,
        id: &CampaignId,
        expected_cursor: Option<&str>,
        messages: &[PlannedMessage],
        new_cursor: Option<&str>,
        done: bool,
        now: Millis,
    ) -> Result<bool>;
    /// Queued or sending messages of the campaign.
    async fn campaign_open_messages(&self, id: &CampaignId) -> Result<u64>;
    /// Pause: the campaign's queued messages wait until `until` (resume sets it back).
    async fn hold_campaign_messages(&self, id: &CampaignId, until: Millis) -> Result<u64>;
    /// Resume: every queued message of the campaign is due at `now`.
    async fn release_campaign_messages(&self, id: &CampaignId, now: Millis) -> Result<u64>;
    /// Cancel: queued messages become `skipped` with reason `cancelled`.
    async fn cancel_campaign_messages(&self, id: &CampaignId, now: Millis) -> Result<u64>;
    /// Pauses every running campaign sending from these numbers (auth trouble).
    async fn pause_campaigns_of_numbers(
        &self,
        phone_number_ids: &[PhoneNumberId],
        reason: &str,
        now: Millis,
    ) -> Result<Vec<CampaignId>>;
    async fn campaign_counts(&self, id: &CampaignId) -> Result<CampaignCounts>;
    /// The campaign a message belongs to.
    async fn message_campaign(&self, id: &MessageId) -> Result<Option<CampaignId>>;

    // --- the quota ledger -----------------------------------------------------------------
    /// The gate, atomically per scope: classifies the send (inside the contact's service
    /// window, already counted, or new), and for a new contact either reserves a slot for
    /// `message_id` or answers when one frees up.
    async fn reserve_quota(&self, req: &QuotaRequest<'_>) -> Result<QuotaAnswer> {
        let batch = QuotaBatch {
            scope_key: req.scope_key,
            application_id: req.application_id,
            limit: req.limit,
            now: req.now,
            items: &[QuotaItem {
                contact: req.contact,
                message_id: req.message_id,
            }],
        };
        let answers = self.reserve_quota_batch(&batch).await?;
        answers
            .into_iter()
            .next()
            .ok_or_else(|| crate::StoreError::NotFound("a quota answer".into()))
    }
    /// `reserve_quota` for a round of sends in one scope, in one transaction; the answers
    /// are the ones the items would get one after the other, in the order given.
    async fn reserve_quota_batch(&self, req: &QuotaBatch<'_>) -> Result<Vec<QuotaAnswer>>;
    /// Meta accepted a send that was `reach`: the contact counts from `now`.
    async fn confirm_quota(
        &self,
        scope_key: &str,
        contact: &str,
        message_id: &MessageId,
        reach: Reach,
        now: Millis,
    ) -> Result<()>;
    /// The send did not go: free a slot this message reserved.
    async fn release_quota(
        &self,
        scope_key: &str,
        contact: &str,
        message_id: &MessageId,
    ) -> Result<()>;
    /// Last-reach instants counted in the scope at `now`, oldest first.
    async fn quota_active(&self, scope_key: &str, now: Millis) -> Result<Vec<Millis>>;
    /// The limit rose: every message of this number waiting for a quota slot is due at `now`
    /// (the gate looks again). Returns how many.
    async fn release_quota_waits(
        &self,
        phone_number_id: &PhoneNumberId,
        now: Millis,
    ) -> Result<u64>;
    /// Marks a queued message as waiting for a quota slot until `until`.
    async fn wait_for_quota(&self, id: &MessageId, until: Millis, now: Millis) -> Result<()>;
    /// A page of the campaign's list after `after` (position), with each entry's contact.
    async fn campaign_list_page(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ListRecipient>>;
    /// Marks a queued (or claimed) message as waiting for its send window to open at `until`.
    async fn wait_for_window(&self, id: &MessageId, until: Millis, now: Millis) -> Result<()>;
}
