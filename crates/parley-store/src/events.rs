//! Event webhooks out (issue 15 part 3): the endpoints an application registers, the outbox
//! of events, their deliveries and every attempt (`event_*` tables, migration 0025).

use async_trait::async_trait;
use parley_domain::{ApplicationId, DeliveryId, EventEndpointId, EventId};

use crate::{Millis, Result};

/// An endpoint as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRecord {
    pub id: EventEndpointId,
    pub application_id: ApplicationId,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    /// The first failed attempt since the last success.
    pub failing_since: Option<Millis>,
    pub disabled_at: Option<Millis>,
    pub disabled_reason: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// An endpoint to create. Debug hides the secret.
#[derive(Clone)]
pub struct NewEndpoint {
    pub id: EventEndpointId,
    pub application_id: ApplicationId,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub secret: String,
    pub now: Millis,
}

impl std::fmt::Debug for NewEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `Some(true)` enables (and forgets the failures), `Some(false)` disables with
    /// `disabled_reason`.
    pub enabled: Option<bool>,
    pub disabled_reason: Option<String>,
}

/// One event for the outbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: EventId,
    pub application_id: ApplicationId,
    /// `message.received`, …
    pub kind: String,
    /// Events with the same key reach each endpoint in the order they were written.
    pub ordering_key: Option<String>,
    /// The same change reported twice (a webhook applied again after a crash) is one event.
    pub dedup_key: String,
    /// The body sent, as `envelope` makes it.
    pub payload: serde_json::Value,
    pub created_at: Millis,
}

/// The body every event is sent as: `{"id","type","timestamp","application_id","data"}`.
pub fn envelope(
    id: &EventId,
    kind: &str,
    at: Millis,
    app: &ApplicationId,
    data: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "id": id.as_str(),
        "type": kind,
        "timestamp": rfc3339(at),
        "application_id": app.as_str(),
        "data": data,
    })
}

/// Unix millis as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// A delivery claimed for an attempt. Debug hides the secret.
#[derive(Clone)]
pub struct DeliveryJob {
    pub id: DeliveryId,
    pub endpoint_id: EventEndpointId,
    pub url: String,
    pub secret: String,
    pub event_id: EventId,
    /// The JSON body, as sent and signed.
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// Retries stop `retry_period` after this (the fan-out, or the replay).
    pub retry_from: Millis,
}

impl std::fmt::Debug for DeliveryJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryJob")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("event_id", &self.event_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What one attempt gave, and what follows from it.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub delivery_id: DeliveryId,
    pub endpoint_id: EventEndpointId,
    pub attempt: i64,
    pub at: Millis,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    /// The answer's first bytes.
    pub response: Option<String>,
    pub error: Option<String>,
    pub delivered: bool,
    /// When to try again; `None` on a failure gives the delivery up.
    pub next_attempt_at: Option<Millis>,
    /// An endpoint failing since this long ago or longer is disabled with `disable_reason`.
    pub disable_after_ms: i64,
    pub disable_reason: String,
}

/// One attempt as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub at: Millis,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub response: Option<String>,
    pub error: Option<String>,
}

/// One event's delivery to one endpoint, with every attempt.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub endpoint_id: EventEndpointId,
    pub event_id: EventId,
    pub event_type: String,
    pub event_created_at: Millis,
    pub payload: serde_json::Value,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<Millis>,
    pub last_attempt_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub created_at: Millis,
    /// The newest [`ATTEMPTS_SHOWN`] attempts, oldest first.
    pub attempt_log: Vec<AttemptRecord>,
}

/// What a `message.status` event says of its message, as the status merge read it
/// (`Store::apply_statuses`).
#[derive(Debug, Clone)]
pub struct MessageFacts {
    pub id: parley_domain::MessageId,
    pub application_id: ApplicationId,
    pub to_phone: String,
    pub contact_id: Option<parley_domain::ContactId>,
    pub campaign_id: Option<parley_domain::CampaignId>,
    pub wamid: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
}

/// Attempts a delivery keeps (the oldest are deleted as new ones are recorded): a delivery
/// retried for 3 days and replayed again and again would otherwise keep every answer.
pub const ATTEMPTS_KEPT: i64 = 50;

/// Attempts of each delivery a list of deliveries shows (the newest; `attempts` counts all).
pub const ATTEMPTS_SHOWN: i64 = 20;

#[async_trait]
pub trait EventStore {
    /// Registers the endpoint unless its application has `cap` endpoints already (false
    /// then); concurrent creates stop exactly at the cap (`shared/caps.rs`).
    async fn insert_event_endpoint(&self, endpoint: &NewEndpoint, cap: u64) -> Result<bool>;
    /// The application's endpoints in id order, after `after`.
    async fn event_endpoints(
        &self,
        app: &ApplicationId,
        after: Option<&EventEndpointId>,
        limit: u32,
    ) -> Result<Vec<EndpointRecord>>;
    async fn event_endpoint(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
    ) -> Result<Option<EndpointRecord>>;
    /// Applies `change`; `None` when the application has no such endpoint.
    async fn update_event_endpoint(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
        change: &EndpointChange,
        now: Millis,
    ) -> Result<Option<EndpointRecord>>;
    /// Deletes it with its deliveries; false when there was none.
    async fn delete_event_endpoint(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
    ) -> Result<bool>;
    /// Replaces the secret; false when the application has no such endpoint.
    async fn set_event_endpoint_secret(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
        secret: &str,
        now: Millis,
    ) -> Result<bool>;
    /// `(application, event types)` of every enabled endpoint: who wants which events.
    async fn event_subscriptions(&self) -> Result<Vec<(ApplicationId, Vec<String>)>>;
    /// Writes events to the outbox; one already there (same application and dedup key) is
    /// left as it is. Returns how many were new.
    async fn insert_events(&self, events: &[NewEvent]) -> Result<u64>;
    /// Makes the deliveries of up to `limit` events not fanned out yet, one per enabled
    /// endpoint of the event's application subscribed to its type and created before it.
    /// Returns how many events were fanned out.
    async fn fan_out_events(&self, limit: u32, now: Millis) -> Result<u64>;
    /// Leases up to `limit` due deliveries of enabled endpoints, each the first pending one of
    /// its endpoint and ordering key.
    async fn claim_event_deliveries(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<DeliveryJob>>;
    /// Records an attempt and its consequences (delivered, retry, given up; the endpoint's
    /// failure streak, disabled after `disable_after_ms`). Returns true when this attempt
    /// disabled the endpoint.
    async fn record_event_attempt(&self, outcome: &AttemptOutcome) -> Result<bool>;
    /// An endpoint's deliveries, newest first, after `after`, with their attempts.
    async fn event_deliveries(
        &self,
        app: &ApplicationId,
        endpoint: &EventEndpointId,
        after: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>>;
    /// Sends one delivery again (pending, due now, retried for a full period from now);
    /// false when the endpoint has no such delivery.
    async fn replay_event_delivery(
        &self,
        app: &ApplicationId,
        endpoint: &EventEndpointId,
        delivery: &DeliveryId,
        now: Millis,
    ) -> Result<bool>;
    /// Sends again the events of the endpoint's types written in `[since, until)`, at most
    /// `limit` events gone through (by time, then `seq`), after `after` when given: existing
    /// deliveries go back to pending, missing ones are made, a transaction per few hundred.
    /// `None` when a transaction finds the endpoint gone (the caller checks it first).
    async fn replay_event_range(
        &self,
        app: &ApplicationId,
        endpoint: &EventEndpointId,
        range: ReplayRange,
        now: Millis,
    ) -> Result<Option<ReplayPage>>;
    /// One step of the retention sweep: of the (at most `limit`) events after `seq` `after`,
    /// oldest first, deletes those written before `before` with their deliveries and attempts,
    /// unless not fanned out yet or a delivery of theirs is still pending (an endpoint
    /// disabled, waiting to resume). Stops at the first one written since.
    async fn prune_events(&self, before: Millis, after: i64, limit: u32) -> Result<crate::Pruned>;
}

/// What a replay goes through: events written in `[since, until)`, after the event `after`
/// names (`(created_at, seq)`, the previous page's last), at most `limit` of them.
#[derive(Debug, Clone, Copy)]
pub struct ReplayRange {
    pub since: Millis,
    pub until: Millis,
    pub after: Option<(Millis, i64)>,
    pub limit: u32,
}

/// One page of a replay: deliveries queued again, and where the next page starts (the last
/// event gone through) when the range holds more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayPage {
    pub replayed: u64,
    pub next: Option<(Millis, i64)>,
}

/// `platform.status` when a platform's status changes (none when it stays the same).
pub fn platform_status_event(
    app: &ApplicationId,
    platform: &parley_domain::PlatformId,
    old: &str,
    status: &str,
    reason: Option<&str>,
    now: Millis,
) -> Vec<NewEvent> {
    if old == status {
        return Vec::new();
    }
    let id = EventId::new();
    let kind = "platform.status";
    let data = serde_json::json!({
        "platform_id": platform.as_str(),
        "status": status,
        "previous_status": old,
        "reason": reason,
    });
    vec![NewEvent {
        payload: envelope(&id, kind, now, app, data),
        dedup_key: format!("{kind}:{platform}:{}", id.as_str()),
        id,
        application_id: app.clone(),
        kind: kind.into(),
        ordering_key: Some(format!("platform:{platform}")),
        created_at: now,
    }]
}

/// `campaign.completed`, once per campaign.
pub fn campaign_completed_event(
    app: &ApplicationId,
    campaign: &parley_domain::CampaignId,
    name: &str,
    now: Millis,
) -> Vec<NewEvent> {
    let id = EventId::new();
    let kind = "campaign.completed";
    let data = serde_json::json!({
        "campaign_id": campaign.as_str(),
        "name": name,
        "completed_at": rfc3339(now),
    });
    vec![NewEvent {
        payload: envelope(&id, kind, now, app, data),
        dedup_key: format!("{kind}:{campaign}"),
        id,
        application_id: app.clone(),
        kind: kind.into(),
        ordering_key: Some(format!("campaign:{campaign}")),
        created_at: now,
    }]
}
