//! The sandbox's memory: the seeded world, recorded sends, customer-service windows, rate
//! limiter state, fault settings, the queue of webhook events waiting for their (virtual)
//! time, and the delivery log.
//!
//! It lives behind one `std::sync::Mutex` that is never held across an `.await`: every
//! operation is a short in-memory step, and one lock keeps the rules (window, throughput,
//! pair rate, acceptance) atomic per send, like Meta's single answer per request.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{BusinessSeed, PhoneSeed, SandboxConfig, WabaSeed};

/// How many accepted sends are remembered; the oldest are forgotten beyond this (benchmarks).
pub(crate) const MESSAGE_LOG_CAP: usize = 200_000;
/// How many webhook deliveries the delivery log keeps.
pub(crate) const DELIVERY_LOG_CAP: usize = 5_000;

/// Fault injection settings (`/sandbox/faults`). Unknown fields are refused so a typo in a
/// test is loud.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Graph error code (as a string) → probability that a valid send fails with it.
    pub error_rates: BTreeMap<String, f64>,
    /// The next valid sends fail with these codes, in order, one each.
    pub fail_next: VecDeque<u32>,
    /// The next Graph calls matching these entries fail with their codes (any call, not only
    /// sends: `subscribed_apps`, `register`, `oauth/access_token`, `message_templates`, …).
    /// Each entry fails one call; a call takes the first entry it matches.
    pub fail_next_calls: VecDeque<CallFault>,
    /// Extra real-time latency added to every Graph response.
    pub latency_ms: u64,
    /// Probability that a valid send is accepted but its answer is held for `timeout_ms`
    /// (the client times out although Meta took the message).
    pub timeout_rate: f64,
    /// How long a "timed out" answer is held (default 30 s when zero).
    pub timeout_ms: u64,
    /// Probability that each webhook POST is sent twice.
    pub duplicate_webhooks: f64,
    /// Shuffle statuses inside a batch, across numbers, and hold some back a few ticks.
    pub reorder_webhooks: bool,
    /// Probability that each webhook POST is silently dropped.
    pub drop_webhooks: f64,
}

/// One injected failure of a Graph call (`fail_next_calls`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CallFault {
    /// Matches a call whose last path segment is this, or whose path (`/…` without the
    /// `vNN.N` segment) contains it: `"subscribed_apps"`, `"/register"`,
    /// `"oauth/access_token"`, `"524126980791429/message_templates"`.
    pub path: String,
    /// The Graph error code answered, with Meta's error object and HTTP status for it.
    pub code: u32,
    /// Only calls with this HTTP method (any case); every method when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl CallFault {
    /// The fault's path without a leading `vNN.N/` segment (a leading `/` is kept, so
    /// `"/register"` does not match `…/deregister` while `"register"` matches both).
    pub(crate) fn normalized_path(&self) -> &str {
        let path = self.path.trim();
        let bare = path.trim_start_matches('/');
        match bare.split_once('/') {
            Some((first, _)) if is_version(first) => &bare[first.len()..],
            None if is_version(bare) => "",
            _ => path,
        }
    }

    /// Whether the fault names a call at all (not only slashes or a version).
    pub(crate) fn names_a_call(&self) -> bool {
        !self.normalized_path().trim_matches('/').is_empty()
    }

    fn matches(&self, method: &str, segments: &[String]) -> bool {
        if self
            .method
            .as_deref()
            .is_some_and(|m| !m.eq_ignore_ascii_case(method))
        {
            return false;
        }
        if !self.names_a_call() {
            return false;
        }
        let wanted = self.normalized_path();
        let full = format!("/{}", segments.join("/"));
        segments.last().is_some_and(|last| last == wanted) || full.contains(wanted)
    }
}

/// `v23.0`, `v9`: a Graph version path segment.
fn is_version(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

impl Faults {
    /// Takes the first `fail_next_calls` entry matching a call (`segments`: the path without
    /// its version) and returns the error to answer instead of handling the call.
    pub(crate) fn take_call_fault(
        &mut self,
        method: &str,
        segments: &[String],
    ) -> Option<crate::errors::GraphError> {
        let index = self
            .fail_next_calls
            .iter()
            .position(|f| f.matches(method, segments))?;
        let fault = self.fail_next_calls.remove(index)?;
        Some(crate::errors::GraphError::new(
            fault.code,
            "Injected by the sandbox (fail_next_calls).",
        ))
    }
}

/// Ranks statuses so a late webhook never moves a recorded message backwards.
pub(crate) fn status_rank(status: &str) -> u8 {
    match status {
        "accepted" => 0,
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        "failed" => 4,
        _ => 0,
    }
}

/// One Graph call as the sandbox received it, accepted or refused (`/sandbox/requests`).
#[derive(Clone, Debug, Serialize)]
pub struct RequestRecord {
    /// Position in the log since start (or the last `/sandbox/reset`), from 1.
    pub seq: u64,
    /// Virtual Unix milliseconds when the call was answered.
    pub at_ms: i64,
    /// Virtual Unix milliseconds when the call arrived (before its body was read).
    pub received_ms: i64,
    pub method: String,
    /// The path without its `vNN.N` segment, e.g. `106540352242922/messages`.
    pub path: String,
    /// Sends (`POST /{phone}/messages`) only: the number, `to` as sent, the message type and
    /// the template's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// `/marketing_messages` sends: `template.message_send_ttl_seconds` and `product_policy`
    /// as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_send_ttl_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_policy: Option<String>,
    /// `accepted` or `refused`.
    pub outcome: String,
    pub http_status: u16,
    /// Meta's error code of a refused call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
    /// The wamid of an accepted send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wamid: Option<String>,
    /// Sends only: the fencing token Parley sent in `X-Parley-Fence` (Meta ignores the
    /// header; the sandbox keeps it so `/sandbox/throughput` can show that no send came under
    /// a token older than one already seen for its number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fence: Option<i64>,
}

/// Sends refused by the sandbox's own rate rules, per number (injected faults not counted).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct RateRefusals {
    /// 130429: over the number's messages per second.
    pub throughput: u64,
    /// 131056: over the pair rate to one recipient.
    pub pair_rate: u64,
}

/// Every Graph call received (the last [`MESSAGE_LOG_CAP`]) and the rate refusals per number.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    pub entries: VecDeque<RequestRecord>,
    pub next_seq: u64,
    pub rate_refusals: BTreeMap<String, RateRefusals>,
}

impl RequestLog {
    pub(crate) fn push(&mut self, mut record: RequestRecord) {
        self.next_seq += 1;
        record.seq = self.next_seq;
        self.entries.push_back(record);
        while self.entries.len() > MESSAGE_LOG_CAP {
            self.entries.pop_front();
        }
    }

    pub(crate) fn rate_refused(&mut self, phone_id: &str, code: u32) {
        let counts = self.rate_refusals.entry(phone_id.to_owned()).or_default();
        match code {
            130429 => counts.throughput += 1,
            _ => counts.pair_rate += 1,
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = RequestLog::default();
    }
}

/// One accepted send, as `/sandbox/messages` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedMessage {
    pub wamid: String,
    pub phone_number_id: String,
    /// Recipient digits (wa_id).
    pub to: String,
    /// `to` exactly as the client sent it.
    pub input: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The request body exactly as received (parsed JSON).
    pub request: Value,
    /// Virtual Unix seconds of acceptance.
    pub received_at: i64,
    /// Latest status dispatched: accepted | sent | delivered | read | failed.
    pub status: String,
    /// Every status dispatched so far, with its virtual timestamp.
    pub statuses: Vec<StatusStamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusStamp {
    pub status: String,
    pub timestamp: i64,
}

/// Accepted sends in acceptance order, with lookup by wamid; bounded.
#[derive(Debug, Default)]
pub(crate) struct MessageLog {
    entries: VecDeque<RecordedMessage>,
    first_seq: u64,
    by_wamid: HashMap<String, u64>,
}

impl MessageLog {
    pub(crate) fn push(&mut self, message: RecordedMessage) {
        let seq = self.first_seq + self.entries.len() as u64;
        self.by_wamid.insert(message.wamid.clone(), seq);
        self.entries.push_back(message);
        while self.entries.len() > MESSAGE_LOG_CAP {
            if let Some(old) = self.entries.pop_front() {
                self.by_wamid.remove(&old.wamid);
            }
            self.first_seq += 1;
        }
    }

    pub(crate) fn contains(&self, wamid: &str) -> bool {
        self.by_wamid.contains_key(wamid)
    }

    pub(crate) fn get_mut(&mut self, wamid: &str) -> Option<&mut RecordedMessage> {
        let seq = *self.by_wamid.get(wamid)?;
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.entries.get_mut(index)
    }

    pub(crate) fn get(&self, wamid: &str) -> Option<&RecordedMessage> {
        let seq = *self.by_wamid.get(wamid)?;
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.entries.get(index)
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &RecordedMessage> {
        self.entries.iter()
    }

    pub(crate) fn clear(&mut self) {
        *self = MessageLog::default();
    }
}

/// A webhook event waiting for its virtual time.
#[derive(Clone, Debug)]
pub(crate) struct PendingEvent {
    pub phone_number_id: String,
    pub kind: EventKind,
    /// Set once an event has been held back by `reorder_webhooks`, so it is held only once.
    pub deferred: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum EventKind {
    /// One entry of `statuses[]`, complete (its timestamp is its due time).
    Status {
        wamid: String,
        status: String,
        json: Value,
    },
    /// One inbound message with its contact.
    Inbound { contact: Value, message: Value },
    /// Meta's review of a created template comes to its decision.
    TemplateReview {
        waba_id: String,
        template_id: String,
    },
    /// Meta's commerce-policy review of a WABA created by Embedded Signup comes to its
    /// decision (approval), unless `/sandbox/review` decided first.
    AccountReview { waba_id: String },
    /// A whole webhook body, sent as built (coexistence: `history`, `smb_app_state_sync`,
    /// `smb_message_echoes`, and `account_update` with `entry[].time` as a string). Fields
    /// the app has not subscribed to are logged as `not_subscribed`, not POSTed.
    Payload { field: String, payload: Value },
    /// A management webhook (`message_template_status_update`, `account_update`, …):
    /// `entry_id` is the WABA, or the partner's business for `account_update` PARTNER_ADDED.
    Change {
        entry_id: String,
        field: String,
        value: Value,
    },
}

/// One webhook POST (and its retries), as `/sandbox/webhooks` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryRecord {
    pub id: u64,
    /// Virtual Unix seconds when the batch was formed.
    pub at: i64,
    pub url: Option<String>,
    pub phone_number_id: String,
    /// `statuses`, `messages` or `change` (management fields such as template reviews).
    pub kind: String,
    pub statuses: usize,
    pub messages: usize,
    pub attempts: u32,
    pub response_code: Option<u16>,
    /// pending | delivered | failed | dropped | no_webhook_url
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// This POST is the injected second copy of another.
    pub duplicate: bool,
    pub payload: Value,
}

/// Pair-rate token bucket per (number, recipient).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    pub tokens: f64,
    pub updated_ms: i64,
}

/// Where a phone number sits in the seeded world.
pub(crate) struct PhoneRef<'a> {
    pub waba: &'a WabaSeed,
    pub phone: &'a PhoneSeed,
}

#[derive(Debug)]
pub(crate) struct State {
    pub config: SandboxConfig,
    pub faults: Faults,
    pub messages: MessageLog,
    /// Every Graph call received, accepted or refused, and rate refusals per number.
    pub requests: RequestLog,
    /// Inbound wamid → phone number id it was sent to (mark-as-read targets).
    pub inbound: HashMap<String, String>,
    /// Media customers sent, by media id (`media.rs`).
    pub media: HashMap<String, crate::media::StoredMedia>,
    /// Read receipts and typing indicators Parley sent (`POST /{phone}/messages` with
    /// `status: read`), oldest first: `{"phone_number_id","message_id","typing","at_ms"}`.
    pub reads: Vec<serde_json::Value>,
    /// Download URL hash → (media id, virtual ms it expires).
    pub media_urls: HashMap<String, (String, i64)>,
    /// (phone number id, wa_id) → virtual ms of the last inbound message.
    pub windows: HashMap<(String, String), i64>,
    /// phone number id → virtual ms of accepted sends in the last second.
    pub throughput: HashMap<String, VecDeque<i64>>,
    pub pair_buckets: HashMap<(String, String), Bucket>,
    /// (due virtual ms, sequence) → event.
    pub queue: BTreeMap<(i64, u64), PendingEvent>,
    pub next_seq: u64,
    pub deliveries: VecDeque<DeliveryRecord>,
    pub next_delivery_id: u64,
    /// phone number id → virtual ms of register/deregister calls (10 per 72 h).
    pub registrations: HashMap<String, VecDeque<i64>>,
    /// WABA id → `subscribed_apps` row of this app (absent: not subscribed).
    pub subscriptions: HashMap<String, Value>,
    /// phone number id → business profile.
    pub profiles: HashMap<String, Value>,
    /// phone number id → two-step verification PIN (set by the first register or `POST /{phone}`).
    pub pins: HashMap<String, String>,
    /// Authorization codes minted by Embedded Signup (single use, 30 s).
    pub codes: HashMap<String, crate::signup::CodeGrant>,
    /// Business tokens handed out for codes.
    pub tokens: HashMap<String, crate::signup::TokenGrant>,
    /// Embedded Signup dialog sessions, by id.
    pub dialogs: HashMap<String, crate::dialog::DialogSession>,
    /// Messaging-limit reach per business portfolio and the violations refused.
    pub limits: crate::limits::Limits,
    /// WhatsApp users: usernames, BSUID generations, who saw whose phone (META_2026 §3).
    pub users: crate::users::Users,
    /// Marketing consent, caps, pacing, pricing cut-over, marketing flags (`consent.rs`).
    pub consent: crate::consent::Consent,
    /// What Meta billed, and the rate card (`billing.rs`).
    pub billing: crate::billing::Billing,
    /// Coexistence numbers (WhatsApp Business app numbers on the Cloud API), by phone id.
    pub coexistence: HashMap<String, crate::coexist::AppNumber>,
    /// The app's `whatsapp_business_account` webhook fields (`/{app-id}/subscriptions`).
    pub app_fields: std::collections::BTreeSet<String>,
    /// phone number id → the verification code `request_code` sent last.
    pub verifications: HashMap<String, crate::signup::PendingCode>,
    /// phone number id → virtual ms of its `request_code` calls in the last hour.
    pub code_requests: HashMap<String, VecDeque<i64>>,
    /// Signups with the extras their page sent (`GET /sandbox/signups`), oldest first.
    pub signups: VecDeque<crate::signup::SignupRecord>,
}

impl State {
    pub(crate) fn new(config: SandboxConfig) -> Self {
        State {
            config,
            faults: Faults::default(),
            messages: MessageLog::default(),
            requests: RequestLog::default(),
            inbound: HashMap::new(),
            media: HashMap::new(),
            reads: Vec::new(),
            media_urls: HashMap::new(),
            windows: HashMap::new(),
            throughput: HashMap::new(),
            pair_buckets: HashMap::new(),
            queue: BTreeMap::new(),
            next_seq: 0,
            deliveries: VecDeque::new(),
            next_delivery_id: 1,
            registrations: HashMap::new(),
            subscriptions: HashMap::new(),
            profiles: HashMap::new(),
            pins: HashMap::new(),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            dialogs: HashMap::new(),
            limits: crate::limits::Limits::default(),
            users: crate::users::Users::default(),
            consent: crate::consent::Consent::default(),
            billing: crate::billing::Billing::default(),
            coexistence: HashMap::new(),
            app_fields: crate::coexist::default_app_fields(),
            verifications: HashMap::new(),
            code_requests: HashMap::new(),
            signups: VecDeque::new(),
        }
    }

    pub(crate) fn phone(&self, id: &str) -> Option<PhoneRef<'_>> {
        self.config
            .businesses
            .iter()
            .flat_map(|b| b.wabas.iter())
            .find_map(|waba| {
                waba.phone_numbers
                    .iter()
                    .find(|p| p.id == id)
                    .map(|phone| PhoneRef { waba, phone })
            })
    }

    pub(crate) fn waba(&self, id: &str) -> Option<&WabaSeed> {
        self.config
            .businesses
            .iter()
            .flat_map(|b| b.wabas.iter())
            .find(|w| w.id == id)
    }

    pub(crate) fn waba_mut(&mut self, id: &str) -> Option<&mut WabaSeed> {
        self.config
            .businesses
            .iter_mut()
            .flat_map(|b| b.wabas.iter_mut())
            .find(|w| w.id == id)
    }

    pub(crate) fn phone_mut(&mut self, id: &str) -> Option<&mut PhoneSeed> {
        self.config
            .businesses
            .iter_mut()
            .flat_map(|b| b.wabas.iter_mut())
            .flat_map(|w| w.phone_numbers.iter_mut())
            .find(|p| p.id == id)
    }

    /// The business portfolio owning a WABA.
    pub(crate) fn business_of_waba(&self, waba_id: &str) -> Option<&BusinessSeed> {
        self.config
            .businesses
            .iter()
            .find(|b| b.wabas.iter().any(|w| w.id == waba_id))
    }

    /// Whether any business, WABA, number or template already uses `id`.
    pub(crate) fn id_taken(&self, id: &str) -> bool {
        self.business(id).is_some()
            || self.waba(id).is_some()
            || self.phone(id).is_some()
            || self.template(id).is_some()
            || id == self.config.partner_business_id
    }

    pub(crate) fn business(&self, id: &str) -> Option<&BusinessSeed> {
        self.config.businesses.iter().find(|b| b.id == id)
    }

    pub(crate) fn template(&self, id: &str) -> Option<&Value> {
        self.config
            .businesses
            .iter()
            .flat_map(|b| b.wabas.iter())
            .flat_map(|w| w.templates.iter())
            .find(|t| t.get("id").and_then(Value::as_str) == Some(id))
    }

    pub(crate) fn first_phone_id(&self) -> Option<String> {
        self.config
            .businesses
            .iter()
            .flat_map(|b| b.wabas.iter())
            .flat_map(|w| w.phone_numbers.iter())
            .map(|p| p.id.clone())
            .next()
    }

    /// Queues an event for the dispatcher at virtual time `due_ms`.
    pub(crate) fn schedule(&mut self, due_ms: i64, phone_number_id: &str, kind: EventKind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert(
            (due_ms, seq),
            PendingEvent {
                phone_number_id: phone_number_id.to_owned(),
                kind,
                deferred: false,
            },
        );
    }

    /// Removes and returns every event due at or before `now_ms`, in due order.
    pub(crate) fn take_due(&mut self, now_ms: i64) -> Vec<PendingEvent> {
        let later = self.queue.split_off(&(now_ms.saturating_add(1), 0));
        let due = std::mem::replace(&mut self.queue, later);
        due.into_values().collect()
    }

    /// Applies a dispatched status to the recorded message, never moving it backwards.
    pub(crate) fn record_status(&mut self, wamid: &str, status: &str, timestamp: i64) {
        if let Some(message) = self.messages.get_mut(wamid) {
            message.statuses.push(StatusStamp {
                status: status.to_owned(),
                timestamp,
            });
            if message.status != "failed" && status_rank(status) > status_rank(&message.status) {
                message.status = status.to_owned();
            }
        }
    }

    pub(crate) fn push_delivery(&mut self, mut record: DeliveryRecord) -> u64 {
        let id = self.next_delivery_id;
        self.next_delivery_id += 1;
        record.id = id;
        self.deliveries.push_back(record);
        while self.deliveries.len() > DELIVERY_LOG_CAP {
            self.deliveries.pop_front();
        }
        id
    }

    pub(crate) fn delivery_mut(&mut self, id: u64) -> Option<&mut DeliveryRecord> {
        let first = self.deliveries.front()?.id;
        let index = usize::try_from(id.checked_sub(first)?).ok()?;
        self.deliveries.get_mut(index)
    }
}

/// Digits of a phone number as Meta's `wa_id` carries them (`"+49 151 …"` → `"49151…"`).
pub(crate) fn digits(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}
