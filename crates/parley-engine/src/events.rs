//! Event webhooks out (issue 15 part 3): endpoints an application registers, the events
//! Parley reports to them and the delivery worker.
//!
//! - **Outbox.** An event is a row in `events`, written where the change it reports is
//!   applied: in the same transaction for `platform.status` and `campaign.completed` (the
//!   store writes them), and for the events a Meta webhook causes (`message.received`,
//!   `message.status`, `template.status`, `contact.opted_out`) before that webhook is marked
//!   processed, with a dedup key: a crash in between leaves the webhook pending, it is applied
//!   again and writes the same event once. Events are only written for applications with an
//!   enabled endpoint subscribed to the type (a cache refreshed every second and at once on
//!   endpoint changes in this process).
//! - **Fan-out at delivery time.** The worker turns each new event into one delivery per
//!   enabled endpoint of its application subscribed to its type and created before it.
//! - **Delivery.** Standard Webhooks: `webhook-id` (the event's `ev_…`, the same on every
//!   attempt and replay), `webhook-timestamp` (seconds), `webhook-signature: v1,<base64
//!   HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed by the endpoint's `whsec_…` secret. A
//!   2xx answer delivers; anything else (a redirect too) is retried with exponential backoff
//!   and ±20 % jitter until `retry_period` after the delivery was made, then given up.
//!   Deliveries of one endpoint with the same ordering key (the contact, or the resource) go
//!   one at a time in event order. State is in the database: a restart resumes where it was.
//! - **Targets.** `https://` only; `http://` and loopback only with `allow_loopback`; private,
//!   link-local and other non-public addresses only with `allow_private_targets`, checked at
//!   registration and again on every connection (the resolver drops such addresses, so a
//!   name that later resolves inside the network is refused). Redirects are not followed.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use parley_domain::{ApplicationId, DeliveryId, EventEndpointId, EventId};
use parley_store::events::{
    AttemptOutcome, DeliveryJob, DeliveryRecord, EndpointChange, EndpointRecord, NewEndpoint,
    NewEvent, ReplayPage, ReplayRange, envelope,
};
use parley_store::{InboundRecord, StatusChange};
use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{Engine, EngineError, ErrorKind};

/// Event endpoints an application has at most (enabled or not): every event is written once
/// per endpoint subscribed to it, so the fan-out of one event stays bounded. A business sends
/// its events to a few systems (a CRM, a data warehouse, a helpdesk); one endpoint takes any
/// number of event types. One more is 409 `endpoint_limit_reached`.
pub const MAX_ENDPOINTS: usize = 20;

/// Events a replay over a time range goes through per call (each of the endpoint's types is
/// queued again): a longer range goes on from the answer's cursor. It read and queued the
/// whole range in one transaction, holding SQLite's one writer for as long as it took.
pub const MAX_REPLAY_EVENTS: u32 = 10_000;

/// Every event type Parley sends.
pub const EVENT_TYPES: &[&str] = &[
    "message.received",
    "message.status",
    "contact.opted_out",
    "contact.updated",
    "template.status",
    "platform.status",
    "campaign.completed",
];

/// The answer's first bytes kept with an attempt.
pub const RESPONSE_KEPT_BYTES: usize = 4 * 1024;
/// Longest endpoint URL.
pub const MAX_URL_CHARS: usize = 2_000;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// Tunables of event delivery (`events.*` in the configuration).
#[derive(Debug, Clone)]
pub struct EventConfig {
    /// How long a delivery is retried before it is given up (default 3 days).
    pub retry_period: Duration,
    /// An endpoint whose every attempt failed for this long is disabled (default 5 days).
    pub disable_after: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Per request: connecting, sending and reading the answer.
    pub timeout: Duration,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Allows `http://` and loopback targets (development, the demo, tests).
    pub allow_loopback: bool,
    /// Allows private, link-local and other non-public targets (an internal receiver).
    pub allow_private_targets: bool,
    /// How long an event is kept once every delivery of it is done (delivered or given up),
    /// with its deliveries and attempts; `None` keeps them. A replay reaches this far back.
    pub retention: Option<Duration>,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            retry_period: Duration::from_secs(3 * 24 * 3600),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            concurrency: 16,
            timeout: Duration::from_secs(15),
            base_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            allow_loopback: false,
            allow_private_targets: false,
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// Where an address points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetClass {
    Public,
    Loopback,
    /// Private, link-local, shared, unspecified, multicast, documentation, reserved.
    Private,
}

pub fn classify(ip: IpAddr) -> TargetClass {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                TargetClass::Loopback
            } else if v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
            {
                TargetClass::Private
            } else {
                TargetClass::Public
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if v6.is_loopback() {
                TargetClass::Loopback
            } else if v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b)
            {
                TargetClass::Private
            } else {
                TargetClass::Public
            }
        }
    }
}

impl EventConfig {
    fn allows(&self, class: TargetClass) -> bool {
        match class {
            TargetClass::Public => true,
            TargetClass::Loopback => self.allow_loopback || self.allow_private_targets,
            TargetClass::Private => self.allow_private_targets,
        }
    }
}

fn bad_url(code: &'static str, message: impl Into<String>) -> EngineError {
    EngineError::unprocessable(code, message).field("url")
}

/// Checks an endpoint URL: https (http only for loopback when allowed), no credentials, no
/// private target unless configured. Names are checked again when they are resolved.
pub fn check_url(raw: &str, config: &EventConfig) -> Result<reqwest::Url, EngineError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.chars().count() > MAX_URL_CHARS {
        return Err(bad_url(
            "invalid_url",
            format!("give an https:// URL of at most {MAX_URL_CHARS} characters"),
        ));
    }
    let url = reqwest::Url::parse(raw)
        .map_err(|e| bad_url("invalid_url", format!("`url` is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad_url(
            "invalid_url",
            "put no credentials in the URL; verify Parley's signature instead",
        ));
    }
    if url.fragment().is_some() {
        return Err(bad_url("invalid_url", "a URL with a #fragment is not sent"));
    }
    let Some(host) = url.host_str() else {
        return Err(bad_url("invalid_url", "the URL has no host"));
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let class = match bare.parse::<IpAddr>() {
        Ok(ip) => classify(ip),
        Err(_) => {
            let d = bare.trim_end_matches('.').to_ascii_lowercase();
            if d == "localhost" || d.ends_with(".localhost") {
                TargetClass::Loopback
            } else {
                TargetClass::Public
            }
        }
    };
    match url.scheme() {
        "https" => {}
        "http" if class == TargetClass::Loopback && config.allow_loopback => {}
        "http" => {
            return Err(bad_url(
                "url_not_https",
                "event webhooks go to https:// URLs only (http:// only to this machine in development)",
            ));
        }
        other => {
            return Err(bad_url(
                "invalid_url",
                format!("`{other}:` URLs are not supported; use https://"),
            ));
        }
    }
    if !config.allows(class) {
        return Err(bad_url(
            "url_private_target",
            "the URL points into a private network or this machine; Parley sends events to public \
             addresses only (an operator can allow private targets with events.allow_private_targets)",
        ));
    }
    Ok(url)
}

/// Resolves names for deliveries, dropping the addresses the policy refuses: a name that
/// resolves into the private network is refused at connection time, whatever it resolved to
/// when the endpoint was registered.
struct GuardedResolver {
    config: EventConfig,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let config = self.config.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| config.allows(classify(a.ip())))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no address Parley may send to").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn client(config: &EventConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(GuardedResolver {
            config: config.clone(),
        })
        .user_agent(concat!("Parley-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// A fresh `whsec_…` secret: 24 random bytes in base64, as Standard Webhooks libraries read it.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` with the secret's key.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let key = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap_or_else(|_| key.as_bytes().to_vec());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// An endpoint to create, as the API and the console read it.
#[derive(Debug, Clone)]
pub struct EndpointRequest {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
}

/// A change to an endpoint; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// An endpoint just created or whose secret was just rotated: the secret is shown this once.
pub struct EndpointWithSecret {
    pub endpoint: EndpointRecord,
    pub secret: String,
}

impl std::fmt::Debug for EndpointWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointWithSecret")
            .field("endpoint", &self.endpoint)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// An endpoint id from a path; text that is no id reads like an id nothing has.
pub fn endpoint_id(raw: &str) -> Result<EventEndpointId, EngineError> {
    EventEndpointId::parse(raw).map_err(|_| endpoint_not_found(raw))
}

/// A delivery id from a path, likewise.
pub fn delivery_id(raw: &str) -> Result<DeliveryId, EngineError> {
    DeliveryId::parse(raw).map_err(|_| delivery_not_found(raw))
}

fn endpoint_not_found(id: &str) -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "event_endpoint_not_found",
        format!(
            "this application has no event endpoint `{}`; list yours with GET /api/v1/event-endpoints",
            id.chars().take(64).collect::<String>()
        ),
    )
}

fn delivery_not_found(id: &str) -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "event_delivery_not_found",
        format!(
            "this endpoint has no delivery `{}`",
            id.chars().take(64).collect::<String>()
        ),
    )
}

fn check_types(types: &[String]) -> Result<Vec<String>, EngineError> {
    if types.is_empty() {
        return Err(EngineError::unprocessable(
            "invalid_event_types",
            format!("name at least one event type: {}", EVENT_TYPES.join(", ")),
        )
        .field("event_types"));
    }
    let mut out: Vec<String> = Vec::new();
    for t in types {
        let t = t.trim();
        if !EVENT_TYPES.contains(&t) {
            return Err(EngineError::unprocessable(
                "invalid_event_types",
                format!(
                    "`{}` is no event type; use some of {}",
                    t.chars().take(64).collect::<String>(),
                    EVENT_TYPES.join(", ")
                ),
            )
            .field("event_types"));
        }
        if !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    Ok(out)
}

fn check_description(d: Option<String>) -> Result<Option<String>, EngineError> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS => Err(EngineError::unprocessable(
            "invalid_description",
            format!("a description has at most {MAX_DESCRIPTION_CHARS} characters"),
        )
        .field("description")),
        d => Ok(d.map(|d| d.trim().to_owned())),
    }
}

/// Which applications want which event types, refreshed every second.
#[derive(Default)]
pub(crate) struct Subscriptions {
    fetched: Option<Instant>,
    by_app: HashMap<ApplicationId, HashSet<String>>,
}

const SUBSCRIPTIONS_TTL: Duration = Duration::from_secs(1);

impl Engine {
    /// Registers an endpoint; the answer holds its secret this once.
    pub async fn create_event_endpoint(
        &self,
        app: &ApplicationId,
        request: EndpointRequest,
    ) -> Result<EndpointWithSecret, EngineError> {
        let url = check_url(&request.url, &self.config.events)?;
        let event_types = check_types(&request.event_types)?;
        let description = check_description(request.description)?.unwrap_or_default();
        let secret = generate_secret();
        let now = self.now();
        let new = NewEndpoint {
            id: EventEndpointId::new(),
            application_id: app.clone(),
            url: url.to_string(),
            description,
            event_types,
            secret: secret.clone(),
            now,
        };
        if !self
            .store
            .insert_event_endpoint(&new, MAX_ENDPOINTS as u64)
            .await?
        {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "endpoint_limit_reached",
                format!(
                    "an application has at most {MAX_ENDPOINTS} event endpoints; delete one it no longer uses (DELETE /api/v1/event-endpoints/{{id}}), or subscribe an existing one to more event types"
                ),
            ));
        }
        self.forget_subscriptions();
        let endpoint = self.event_endpoint(app, &new.id).await?;
        Ok(EndpointWithSecret { endpoint, secret })
    }

    pub async fn event_endpoints(
        &self,
        app: &ApplicationId,
        after: Option<&EventEndpointId>,
        limit: u32,
    ) -> Result<Vec<EndpointRecord>, EngineError> {
        Ok(self.store.event_endpoints(app, after, limit).await?)
    }

    pub async fn event_endpoint(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
    ) -> Result<EndpointRecord, EngineError> {
        self.store
            .event_endpoint(app, id)
            .await?
            .ok_or_else(|| endpoint_not_found(id.as_str()))
    }

    pub async fn update_event_endpoint(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
        update: EndpointUpdate,
    ) -> Result<EndpointRecord, EngineError> {
        let url = update
            .url
            .as_deref()
            .map(|u| check_url(u, &self.config.events).map(|u| u.to_string()))
            .transpose()?;
        let event_types = update.event_types.as_deref().map(check_types).transpose()?;
        let change = EndpointChange {
            url,
            description: check_description(update.description)?,
            event_types,
            enabled: update.enabled,
            disabled_reason: Some("disabled by a user".into()),
        };
        let out = self
            .store
            .update_event_endpoint(app, id, &change, self.now())
            .await?
            .ok_or_else(|| endpoint_not_found(id.as_str()))?;
        self.forget_subscriptions();
        self.event_wake.notify_one();
        Ok(out)
    }

    pub async fn delete_event_endpoint(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
    ) -> Result<(), EngineError> {
        if !self.store.delete_event_endpoint(app, id).await? {
            return Err(endpoint_not_found(id.as_str()));
        }
        self.forget_subscriptions();
        Ok(())
    }

    /// A new secret; the old one stops working at once.
    pub async fn rotate_event_endpoint_secret(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
    ) -> Result<EndpointWithSecret, EngineError> {
        let secret = generate_secret();
        if !self
            .store
            .set_event_endpoint_secret(app, id, &secret, self.now())
            .await?
        {
            return Err(endpoint_not_found(id.as_str()));
        }
        let endpoint = self.event_endpoint(app, id).await?;
        Ok(EndpointWithSecret { endpoint, secret })
    }

    pub async fn event_deliveries(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
        after: Option<&DeliveryId>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, EngineError> {
        self.event_endpoint(app, id).await?;
        Ok(self.store.event_deliveries(app, id, after, limit).await?)
    }

    pub async fn replay_event_delivery(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
        delivery: &DeliveryId,
    ) -> Result<(), EngineError> {
        self.event_endpoint(app, id).await?;
        if !self
            .store
            .replay_event_delivery(app, id, delivery, self.now())
            .await?
        {
            return Err(delivery_not_found(delivery.as_str()));
        }
        self.event_wake.notify_one();
        Ok(())
    }

    /// Sends again the events of the endpoint's types written in `[since, until)`: at most
    /// [`MAX_REPLAY_EVENTS`] events gone through per call, after `after` (the previous
    /// page's `next`) when given; the answer's `next` says where the range goes on.
    pub async fn replay_event_range(
        &self,
        app: &ApplicationId,
        id: &EventEndpointId,
        since: i64,
        until: i64,
        after: Option<(i64, i64)>,
    ) -> Result<ReplayPage, EngineError> {
        if since >= until {
            return Err(EngineError::unprocessable(
                "invalid_range",
                "`since` must be before `until`",
            )
            .field("since"));
        }
        self.event_endpoint(app, id).await?;
        let range = ReplayRange {
            since,
            until,
            after,
            limit: MAX_REPLAY_EVENTS,
        };
        let page = self
            .store
            .replay_event_range(app, id, range, self.now())
            .await?
            .ok_or_else(|| endpoint_not_found(id.as_str()))?;
        self.event_wake.notify_one();
        Ok(page)
    }

    fn forget_subscriptions(&self) {
        if let Ok(mut s) = self.event_subscriptions.lock() {
            s.fetched = None;
        }
    }

    /// Whether `app` has an enabled endpoint for `kind` (`None`: any application).
    async fn wants(&self, app: Option<&ApplicationId>, kind: &str) -> parley_store::Result<bool> {
        let fresh = self
            .event_subscriptions
            .lock()
            .ok()
            .and_then(|s| s.fetched)
            .is_some_and(|at| at.elapsed() < SUBSCRIPTIONS_TTL);
        if !fresh {
            let mut by_app: HashMap<ApplicationId, HashSet<String>> = HashMap::new();
            for (a, types) in self.store.event_subscriptions().await? {
                by_app.entry(a).or_default().extend(types);
            }
            if let Ok(mut s) = self.event_subscriptions.lock() {
                s.fetched = Some(Instant::now());
                s.by_app = by_app;
            }
        }
        let Ok(s) = self.event_subscriptions.lock() else {
            return Ok(true);
        };
        Ok(match app {
            Some(app) => s.by_app.get(app).is_some_and(|t| t.contains(kind)),
            None => s.by_app.values().any(|t| t.contains(kind)),
        })
    }

    /// Writes one event when the application wants it.
    async fn emit(
        &self,
        app: &ApplicationId,
        kind: &str,
        ordering_key: Option<String>,
        dedup_key: String,
        data: serde_json::Value,
    ) -> parley_store::Result<()> {
        if !self.wants(Some(app), kind).await? {
            return Ok(());
        }
        let id = EventId::new();
        let now = self.now();
        let event = NewEvent {
            payload: envelope(&id, kind, now, app, data),
            id,
            application_id: app.clone(),
            kind: kind.into(),
            ordering_key,
            dedup_key,
            created_at: now,
        };
        self.store.insert_events(&[event]).await?;
        self.event_wake.notify_one();
        Ok(())
    }
}

fn contact_key(address: &str) -> Option<String> {
    Some(format!("contact:{address}"))
}

/// `message.received` for an inbound message, once per wamid (called whether or not the
/// wamid was new: a webhook applied again after a crash writes the event it missed).
pub(crate) async fn message_received(
    engine: &Engine,
    m: &InboundRecord,
) -> parley_store::Result<()> {
    let kind = "message.received";
    let data = serde_json::json!({
        "wamid": m.wamid.as_str(),
        "phone_number_id": m.phone_number_id.as_str(),
        "from": {
            "address": m.from_phone,
            "phone": m.from_phone.starts_with('+').then_some(&m.from_phone),
            "user_id": m.from.bsuid,
        },
        "type": m.kind,
        "text": m.text,
        "received_at": parley_store::events::rfc3339(m.received_at),
        "message": m.raw,
    });
    engine
        .emit(
            &m.application_id,
            kind,
            contact_key(&m.from_phone),
            format!("{kind}:{}", m.wamid.as_str()),
            data,
        )
        .await
}

/// `message.status` for each status that matched one of our messages, once per message and
/// state.
pub(crate) async fn statuses_applied(
    engine: &Engine,
    changes: &[StatusChange],
    matched: &[Option<parley_store::events::MessageFacts>],
) -> parley_store::Result<()> {
    let kind = "message.status";
    if !engine.wants(None, kind).await? {
        return Ok(());
    }
    let mut events = Vec::new();
    let now = engine.now();
    for (change, f) in changes.iter().zip(matched) {
        let Some(f) = f else {
            continue;
        };
        if !engine.wants(Some(&f.application_id), kind).await? {
            continue;
        }
        let state = change.state.as_str();
        let event_id = EventId::new();
        let data = serde_json::json!({
            "message_id": f.id.as_str(),
            "wamid": change.wamid.as_str(),
            "to": f.to_phone,
            "contact_id": f.contact_id.as_ref().map(|c| c.as_str()),
            "campaign_id": f.campaign_id.as_ref().map(|c| c.as_str()),
            "status": state,
            "at": parley_store::events::rfc3339(change.at),
            "error": change.error.as_ref().map(|(code, message)| serde_json::json!({"code": code, "message": message})),
        });
        events.push(NewEvent {
            payload: envelope(&event_id, kind, now, &f.application_id, data),
            id: event_id,
            application_id: f.application_id.clone(),
            kind: kind.into(),
            ordering_key: contact_key(&f.to_phone),
            dedup_key: format!("{kind}:{}:{state}", f.id.as_str()),
            created_at: now,
        });
    }
    if !events.is_empty() {
        engine.store.insert_events(&events).await?;
        engine.event_wake.notify_one();
    }
    Ok(())
}

/// `contact.opted_out` when a contact leaves marketing (keyword, button, Meta's preference,
/// 131050, the API).
pub(crate) async fn contact_opted_out(
    engine: &Engine,
    app: &ApplicationId,
    address: &str,
    source: &str,
    note: Option<&str>,
) -> parley_store::Result<()> {
    let kind = "contact.opted_out";
    let now = engine.now();
    let data = serde_json::json!({
        "address": address,
        "phone": address.starts_with('+').then_some(address),
        "source": source,
        "note": note,
        "at": parley_store::events::rfc3339(now),
    });
    engine
        .emit(
            app,
            kind,
            contact_key(address),
            format!("{kind}:{address}:{source}:{now}"),
            data,
        )
        .await
}

/// `contact.updated` when the API or the console changes a contact.
pub(crate) async fn contact_updated(
    engine: &Engine,
    app: &ApplicationId,
    address: &str,
    source: &str,
    tags: &serde_json::Map<String, serde_json::Value>,
) -> parley_store::Result<()> {
    let kind = "contact.updated";
    let now = engine.now();
    let data = serde_json::json!({
        "address": address,
        "phone": address.starts_with('+').then_some(address),
        "source": source,
        "tags_changed": tags,
        "at": parley_store::events::rfc3339(now),
    });
    engine
        .emit(
            app,
            kind,
            contact_key(address),
            format!("{kind}:{address}:{}", EventId::new().as_str()),
            data,
        )
        .await
}

/// `template.status` when Meta's webhook changes a template's status; written before the
/// template is saved, keyed by the transition and the record it changes, so a webhook applied
/// again after a crash writes it once.
pub(crate) async fn template_status(
    engine: &Engine,
    before: &parley_store::TemplateRecord,
    status: &str,
    reason: Option<&str>,
) -> parley_store::Result<()> {
    let kind = "template.status";
    let previous = before.template.status.as_str();
    if previous.eq_ignore_ascii_case(status) {
        return Ok(());
    }
    let data = serde_json::json!({
        "template_id": before.id.as_str(),
        "name": before.template.name,
        "language": before.template.language,
        "status": status,
        "previous_status": previous,
        "reason": reason,
    });
    engine
        .emit(
            &before.application_id,
            kind,
            Some(format!("template:{}", before.id)),
            format!(
                "{kind}:{}:{previous}:{status}:{}",
                before.id, before.updated_at
            ),
            data,
        )
        .await
}

/// Runs the delivery worker until `shutdown`: fans new events out, claims due deliveries and
/// sends them, at most `concurrency` at once.
pub async fn run(engine: Engine, shutdown: CancellationToken) {
    let config = engine.config.events.clone();
    let http = client(&config);
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let lease_ms = i64::try_from(config.timeout.as_millis())
        .unwrap_or(i64::MAX / 4)
        .saturating_mul(2)
        .saturating_add(30_000);
    loop {
        // One node fans events out and delivers them: the one holding the job's lease (the
        // claims are leased rows, so a paused holder that wakes up sends nothing twice; one
        // owner keeps the installation's delivery order and concurrency those of one node).
        if !engine
            .until_held(crate::leases::JOB_EVENT_DELIVERIES, &shutdown)
            .await
        {
            break;
        }
        let notified = engine.event_wake.notified();
        let mut busy = false;
        match engine.store.fan_out_events(500, engine.now()).await {
            Ok(n) => busy |= n > 0,
            Err(e) => tracing::warn!(error = %e, "event fan-out paused by a storage error"),
        }
        let free = permits.available_permits();
        if free > 0 {
            let now = engine.now();
            match engine
                .store
                .claim_event_deliveries(now, now.saturating_add(lease_ms), free as u32)
                .await
            {
                Ok(jobs) => {
                    busy |= !jobs.is_empty();
                    for job in jobs {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        let (engine, http) = (engine.clone(), http.clone());
                        tokio::spawn(async move {
                            attempt(&engine, &http, job).await;
                            drop(permit);
                            engine.event_wake.notify_one();
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event delivery paused by a storage error"),
            }
        }
        engine.progress.event_pass_done();
        if busy {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = notified => {}
            _ = tokio::time::sleep(engine.config.poll_interval.max(Duration::from_millis(50))) => {}
        }
    }
}

/// One attempt of one delivery, recorded with what follows from it.
async fn attempt(engine: &Engine, http: &reqwest::Client, job: DeliveryJob) {
    let config = &engine.config.events;
    let started = Instant::now();
    let at = engine.now();
    let (status_code, response, error) = send(http, config, &job).await;
    let delivered = status_code.is_some_and(|c| (200..300).contains(&c));
    let number = job.attempts + 1;
    let next_attempt_at = (!delivered)
        .then(|| next_attempt(config, &job, number, at))
        .flatten();
    let outcome = AttemptOutcome {
        delivery_id: job.id.clone(),
        endpoint_id: job.endpoint_id.clone(),
        attempt: number,
        at,
        duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        status_code,
        response,
        error,
        delivered,
        next_attempt_at,
        disable_after_ms: i64::try_from(config.disable_after.as_millis()).unwrap_or(i64::MAX),
        disable_reason: format!(
            "every delivery failed for {}; fix the receiver, then enable the endpoint again \
             (its pending deliveries resume) and replay what was given up",
            human(config.disable_after)
        ),
    };
    metrics::counter!("parley_event_attempts_total", "outcome" => if delivered { "delivered" } else { "failed" })
        .increment(1);
    match engine.store.record_event_attempt(&outcome).await {
        Ok(true) => {
            tracing::warn!(endpoint = %job.endpoint_id, "event endpoint disabled after failing for the configured period");
            engine.forget_subscriptions();
        }
        Ok(false) => {}
        // The lease runs out and the delivery is tried again: at least once.
        Err(e) => tracing::warn!(error = %e, delivery = %job.id, "cannot record an event attempt"),
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{} hours", s / 3_600),
        s => format!("{s} seconds"),
    }
}

/// When to try again after failed attempt `number`, or `None` to give up: the backoff doubles
/// from `base_backoff` up to `max_backoff`, ±20 % jitter, and the last try is at the end of
/// the retry period.
fn next_attempt(config: &EventConfig, job: &DeliveryJob, number: i64, now: i64) -> Option<i64> {
    let deadline = job
        .retry_from
        .saturating_add(i64::try_from(config.retry_period.as_millis()).unwrap_or(i64::MAX / 2));
    if now >= deadline {
        return None;
    }
    let base = config.base_backoff.as_millis() as f64;
    let max = config.max_backoff.as_millis() as f64;
    let exp = (number - 1).clamp(0, 40) as i32;
    let delay = (base * 2f64.powi(exp)).min(max) * rand::rng().random_range(0.8..1.2);
    Some(now.saturating_add(delay as i64).min(deadline))
}

/// Posts the event; the status code, the answer's first bytes, or why there was no answer.
async fn send(
    http: &reqwest::Client,
    config: &EventConfig,
    job: &DeliveryJob,
) -> (Option<i64>, Option<String>, Option<String>) {
    // A literal address is not resolved: the policy is checked here, as the URL may have been
    // registered under another configuration.
    if let Err(e) = check_url(&job.url, config) {
        return (None, None, Some(e.message.clone()));
    }
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let signature = sign(&job.secret, job.event_id.as_str(), timestamp, &job.payload);
    let request = http
        .post(&job.url)
        .header("content-type", "application/json")
        .header("webhook-id", job.event_id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(job.payload.clone());
    let mut resp = match request.send().await {
        Ok(r) => r,
        Err(e) => return (None, None, Some(describe(&e))),
    };
    let status = i64::from(resp.status().as_u16());
    let mut kept = Vec::new();
    while kept.len() < RESPONSE_KEPT_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => kept.extend_from_slice(&c),
            Ok(None) => break,
            Err(_) => break,
        }
    }
    kept.truncate(RESPONSE_KEPT_BYTES);
    let text = String::from_utf8_lossy(&kept).into_owned();
    (Some(status), Some(text), None)
}

fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    if e.is_timeout() {
        s.push_str(" (timed out)");
    }
    s.chars().take(1_000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_loopback_targets_are_refused_by_default() {
        let c = EventConfig::default();
        for url in [
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://10.1.2.3/",
            "https://192.168.1.1/",
            "https://172.16.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
        ] {
            let e = check_url(url, &c).expect_err(url);
            assert_eq!(e.code, "url_private_target", "{url}");
        }
        assert_eq!(
            check_url("http://example.com/", &c).unwrap_err().code,
            "url_not_https"
        );
        assert!(check_url("https://example.com/hook", &c).is_ok());
        assert!(check_url("https://8.8.8.8/hook", &c).is_ok());
        let dev = EventConfig {
            allow_loopback: true,
            ..EventConfig::default()
        };
        assert!(check_url("http://127.0.0.1:9/x", &dev).is_ok());
        assert_eq!(
            check_url("http://10.0.0.1/", &dev).unwrap_err().code,
            "url_not_https"
        );
        assert_eq!(
            check_url("https://10.0.0.1/", &dev).unwrap_err().code,
            "url_private_target"
        );
        assert_eq!(
            check_url("https://user:pw@example.com/", &c)
                .unwrap_err()
                .code,
            "invalid_url"
        );
    }

    #[test]
    fn signature_is_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = sign(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
