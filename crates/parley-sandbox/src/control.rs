//! The control API under `/sandbox/`: what a test, a demo or a developer uses to play the
//! customer and the network. JSON in and out, no authentication (bind it to loopback).
//! Errors use Meta's error object too, so one client-side parser reads both.
//!
//! | Method | Path | Body / query | Answer |
//! |---|---|---|---|
//! | `POST` | `/sandbox/clock/advance` | `{"seconds": N}` or `{"ms": N}` | `{"now": <unix secs>, "now_ms", "offset_ms"}`; wakes the dispatcher |
//! | `GET` | `/sandbox/clock` | | `{"now", "now_ms", "offset_ms", "frozen"}` |
//! | `POST` | `/sandbox/clock/freeze` | | stops virtual time (only advances move it); the clock |
//! | `POST` | `/sandbox/clock/unfreeze` | | lets virtual time run again from where it stood |
//! | `POST` | `/sandbox/inbound` | `{"from": "+4915112345678", "text": "hi", "phone_number_id"?, "name"?}`, `{"from", "message": {…raw Meta message object…}}` or `{"from", "media": {"type": "image", "mime_type", "content_base64", "caption"?, "filename"?, "voice"?, "animated"?}}` | `{"wamid"}`; sends the signed `messages` webhook and opens the 24 h window |
//! | `POST` | `/sandbox/media` | `{"mime_type", "content_base64", "phone_number_id"?}` | `{"id", "sha256", "file_size", "mime_type"}`: a customer's file, served by `GET /{media-id}` (the `media` module) |
//! | `GET` | `/sandbox/faults` | | current fault settings |
//! | `POST` | `/sandbox/faults` | `{"error_rates": {"131000": 0.5}, "fail_next": [131000], "fail_next_calls": [{"path": "subscribed_apps", "code": 2, "method"?: "POST"}], "latency_ms": 0, "timeout_rate": 0.0, "timeout_ms": 30000, "duplicate_webhooks": 0.0, "reorder_webhooks": false, "drop_webhooks": 0.0}` (all optional) | replaces the fault settings, returns them |
//! | `DELETE` | `/sandbox/faults` | | clears all faults |
//! | `GET` | `/sandbox/behaviour` | | current [`Behaviour`] |
//! | `POST` | `/sandbox/behaviour` | partial [`Behaviour`], e.g. `{"read_ratio": 1.0}` | the updated behaviour |
//! | `GET` | `/sandbox/messages` | `?to=<digits or E.164>&phone_number_id=&limit=N` (last N) | `{"data": [{"wamid", "phone_number_id", "to", "input", "type", "request", "received_at", "status", "statuses", "template"?, "biz_opaque_callback_data"?}]}` in acceptance order |
//! | `GET` | `/sandbox/messages/{wamid}` | | one recorded message |
//! | `GET` | `/sandbox/requests` | `?sends=true&outcome=accepted\|refused&to=&phone_number_id=&limit=N` (last N) | `{"data": [{"seq", "at_ms", "received_ms", "method", "path", "phone_number_id"?, "to"?, "type"?, "template"?, "message_send_ttl_seconds"?, "product_policy"?, "outcome", "http_status", "code"?, "wamid"?, "fence"?}], "rate_refusals": {"<phone id>": {"throughput", "pair_rate"}}}`: every Graph call received, refused ones with their code |
//! | `GET` | `/sandbox/throughput` | | per number: sends received, the most in any one-second window by arrival, the fencing tokens seen (`X-Parley-Fence`) and sends under a stale one |
//! | `GET` | `/sandbox/webhooks` | `?limit=N` (last N) | `{"data": [{"id", "at", "url", "phone_number_id", "kind", "statuses", "messages", "attempts", "response_code", "outcome", "error"?, "duplicate", "payload"}]}` |
//! | `POST` | `/sandbox/webhook_url` | `{"url": "http://…" \| null}` | `{"url"}` |
//! | `GET` | `/sandbox/state` | | businesses, WABAs, numbers, templates, clock (no secrets) |
//! | `POST` | `/sandbox/templates/{id}/status` | `{"status": "PAUSED", "reason"?: "NONE"}` | the template's new status; sends `message_template_status_update` |
//! | `GET` | `/sandbox/violations` | | `{"data": [{"at", "business_id", "phone_number_id", "recipient", "limit", "reached"}]}`: sends refused over the messaging limit (131064) |
//! | `POST` | `/sandbox/reset` | | forgets messages, the request log and rate-refusal counts, windows, limits, messaging-limit reach and violations, queued webhooks, the delivery log, faults, users, and the consent, pacing and marketing settings |
//!
//! Consent, pacing, pricing and marketing controls (`/sandbox/user_preferences`,
//! `/sandbox/marketing_cap`, `/sandbox/pacing`, `/sandbox/pacing/release`,
//! `/sandbox/wabas/{id}/marketing`, `/sandbox/pricing`, `/sandbox/consent`) are documented in
//! the `consent` module.
//!
//! The users' controls (`/sandbox/users/{phone}`, `…/change_number`, `…/change_user_id`:
//! usernames, BSUIDs, identity changes) are documented in the `users` module and SANDBOX.md.
//!
//! Embedded Signup's controls (`/sandbox/signup`, `/sandbox/review`,
//! `/sandbox/phone_numbers/{id}/limit`) are documented in the `signup` module; the
//! WhatsApp Business app's (`/sandbox/coexistence/{phone}/…`) in the `coexist` module.

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::config::Behaviour;
use crate::errors::GraphError;
use crate::graph::BODY_LIMIT;
use crate::send::new_wamid;
use crate::state::{EventKind, Faults, digits};

type Answer = Result<Response, GraphError>;

fn ok(value: Value) -> Answer {
    Ok(Json(value).into_response())
}

/// Reads a JSON body into `T`, answering Meta's error 100 on anything malformed.
pub(crate) async fn json_body<T: DeserializeOwned>(body: Body) -> Result<T, GraphError> {
    let bytes = to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| GraphError::invalid_param("The request body is too large or unreadable."))?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| GraphError::invalid_param(format!("Invalid request body: {e}")))
}

fn query(uri: &Uri) -> Result<Vec<(String, String)>, GraphError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| GraphError::invalid_param(format!("Invalid query string: {e}")))
}

fn query_limit(pairs: &[(String, String)]) -> Result<Option<usize>, GraphError> {
    match pairs.iter().find(|(k, _)| k == "limit") {
        None => Ok(None),
        Some((_, raw)) => raw.parse::<usize>().map(Some).map_err(|_| {
            GraphError::invalid_param(format!(
                "Param limit must be a non-negative integer - got {raw}."
            ))
        }),
    }
}

fn check_ratio(name: &str, value: f64) -> Result<(), GraphError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(GraphError::invalid_param(format!(
            "{name} must be between 0.0 and 1.0 - got {value}."
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: Option<u64>,
    ms: Option<u64>,
}

fn clock_json(sandbox: &Sandbox) -> Value {
    let clock = &sandbox.inner.clock;
    let now_ms = clock.now_ms();
    json!({
        "now": now_ms.div_euclid(1000),
        "now_ms": now_ms,
        "offset_ms": clock.offset_ms(),
        "frozen": clock.is_frozen(),
    })
}

pub(crate) async fn freeze_clock(State(sandbox): State<Sandbox>) -> Answer {
    sandbox.inner.clock.freeze();
    ok(clock_json(&sandbox))
}

pub(crate) async fn unfreeze_clock(State(sandbox): State<Sandbox>) -> Answer {
    sandbox.inner.clock.unfreeze();
    sandbox.inner.wake.notify_one();
    ok(clock_json(&sandbox))
}

pub(crate) async fn clock(State(sandbox): State<Sandbox>) -> Answer {
    ok(clock_json(&sandbox))
}

pub(crate) async fn advance_clock(State(sandbox): State<Sandbox>, body: Body) -> Answer {
    let advance: Advance = json_body(body).await?;
    let ms = match (advance.seconds, advance.ms) {
        (Some(s), None) => s.saturating_mul(1000),
        (None, Some(ms)) => ms,
        (Some(s), Some(ms)) => s.saturating_mul(1000).saturating_add(ms),
        (None, None) => {
            return Err(GraphError::invalid_param(
                "Give \"seconds\" or \"ms\" to advance the clock by.",
            ));
        }
    };
    sandbox.inner.clock.advance_ms(ms);
    sandbox.inner.wake.notify_one();
    ok(clock_json(&sandbox))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Inbound {
    from: String,
    text: Option<String>,
    message: Option<Value>,
    /// A media message in one call: the file is stored as `POST /sandbox/media` would.
    media: Option<InboundMedia>,
    phone_number_id: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundMedia {
    /// `image`, `video`, `audio`, `document` or `sticker`.
    #[serde(rename = "type")]
    kind: String,
    mime_type: String,
    content_base64: String,
    caption: Option<String>,
    filename: Option<String>,
    #[serde(default)]
    voice: bool,
    #[serde(default)]
    animated: bool,
}

pub(crate) async fn inbound(State(sandbox): State<Sandbox>, body: Body) -> Answer {
    let inbound: Inbound = json_body(body).await?;
    let from = digits(&inbound.from);
    if from.len() < 5 {
        return Err(GraphError::invalid_param(format!(
            "\"from\" must be a phone number - got {:?}.",
            inbound.from
        )));
    }
    let now_ms = sandbox.inner.clock.now_ms();
    let timestamp = now_ms.div_euclid(1000).to_string();
    let wamid = {
        let mut state = sandbox.inner.lock();
        let phone_id = match inbound.phone_number_id {
            Some(id) => id,
            None => state.first_phone_id().ok_or_else(|| {
                GraphError::invalid_param("The sandbox has no phone number to receive messages.")
            })?,
        };
        if state.phone(&phone_id).is_none() {
            return Err(GraphError::invalid_param(format!(
                "Unknown phone_number_id {phone_id}."
            )));
        }
        let mut message = match (inbound.text, inbound.message, inbound.media) {
            (Some(text), None, None) => json!({"type": "text", "text": {"body": text}}),
            (None, Some(Value::Object(message)), None) => Value::Object(message),
            (None, Some(_), None) => {
                return Err(GraphError::invalid_param(
                    "\"message\" must be a JSON object.",
                ));
            }
            (None, None, Some(media)) => {
                if !["image", "video", "audio", "document", "sticker"]
                    .contains(&media.kind.as_str())
                {
                    return Err(GraphError::invalid_param(
                        "\"media.type\" is one of image, video, audio, document, sticker.",
                    ));
                }
                let new = crate::media::NewMedia {
                    mime_type: media.mime_type.clone(),
                    content_base64: media.content_base64.clone(),
                    phone_number_id: None,
                };
                let (id, stored) = crate::media::store(&mut state, &phone_id, &new)?;
                let mut object =
                    json!({"mime_type": stored.mime_type, "sha256": stored.sha256, "id": id});
                if let Some(caption) = media.caption {
                    object["caption"] = json!(caption);
                }
                if let Some(filename) = media.filename {
                    object["filename"] = json!(filename);
                }
                if media.voice {
                    object["voice"] = json!(true);
                }
                if media.kind == "sticker" {
                    object["animated"] = json!(media.animated);
                }
                let mut message = serde_json::Map::new();
                message.insert("type".into(), json!(media.kind));
                message.insert(media.kind.clone(), object);
                Value::Object(message)
            }
            _ => {
                return Err(GraphError::invalid_param(
                    "Give exactly one of \"text\", \"message\" and \"media\".",
                ));
            }
        };
        if message.get("type").and_then(Value::as_str).is_none() {
            return Err(GraphError::invalid_param(
                "\"message\" needs a \"type\" (text, button, interactive, image, …).",
            ));
        }
        let wamid = match message.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => new_wamid(&from, true),
        };
        message["id"] = json!(wamid);
        message["from"] = json!(from);
        if message.get("timestamp").is_none() {
            message["timestamp"] = json!(timestamp);
        }
        let contact = json!({
            "profile": {"name": inbound.name.unwrap_or_else(|| "Sandbox User".to_owned())},
            "wa_id": from,
        });
        let mut contact = contact;
        state.dress_inbound(&phone_id, &from, &mut contact, &mut message, now_ms);
        crate::consent::note_inbound(&mut state, &phone_id, &from, &message, now_ms);
        state
            .windows
            .insert((phone_id.clone(), from.clone()), now_ms);
        state.inbound.insert(wamid.clone(), phone_id.clone());
        state.schedule(now_ms, &phone_id, EventKind::Inbound { contact, message });
        wamid
    };
    sandbox.inner.wake.notify_one();
    ok(json!({ "wamid": wamid }))
}

pub(crate) async fn get_faults(State(sandbox): State<Sandbox>) -> Answer {
    let faults = sandbox.inner.lock().faults.clone();
    ok(serde_json::to_value(faults).unwrap_or_default())
}

pub(crate) async fn set_faults(State(sandbox): State<Sandbox>, body: Body) -> Answer {
    let faults: Faults = json_body(body).await?;
    for (code, rate) in &faults.error_rates {
        if code.parse::<u32>().is_err() {
            return Err(GraphError::invalid_param(format!(
                "error_rates keys must be Graph error codes - got {code:?}."
            )));
        }
        check_ratio(&format!("error_rates[{code}]"), *rate)?;
    }
    check_ratio("timeout_rate", faults.timeout_rate)?;
    check_ratio("duplicate_webhooks", faults.duplicate_webhooks)?;
    check_ratio("drop_webhooks", faults.drop_webhooks)?;
    for (i, call) in faults.fail_next_calls.iter().enumerate() {
        if !call.names_a_call() {
            return Err(GraphError::invalid_param(format!(
                "fail_next_calls[{i}].path must name the call, e.g. \"subscribed_apps\" or \"oauth/access_token\"."
            )));
        }
        let method_ok = call.method.as_deref().is_none_or(|m| {
            ["GET", "POST", "DELETE"]
                .iter()
                .any(|known| known.eq_ignore_ascii_case(m))
        });
        if !method_ok {
            return Err(GraphError::invalid_param(format!(
                "fail_next_calls[{i}].method must be GET, POST or DELETE - got {:?}.",
                call.method.as_deref().unwrap_or_default()
            )));
        }
    }
    sandbox.inner.lock().faults = faults.clone();
    ok(serde_json::to_value(faults).unwrap_or_default())
}

pub(crate) async fn clear_faults(State(sandbox): State<Sandbox>) -> Answer {
    sandbox.inner.lock().faults = Faults::default();
    ok(serde_json::to_value(Faults::default()).unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BehaviourPatch {
    sent_delay_ms: Option<u64>,
    delivered_delay_ms: Option<u64>,
    read_delay_ms: Option<u64>,
    read_ratio: Option<f64>,
    failure_ratio: Option<f64>,
    undeliverable: Option<Vec<String>>,
    enforce_service_window: Option<bool>,
    legacy_limit_webhooks: Option<bool>,
    pair_rate_burst: Option<u32>,
    webhook_batch_ms: Option<u64>,
    webhook_attempts: Option<u32>,
    review_delay_ms: Option<u64>,
    no_number_event: Option<String>,
    contact_book: Option<bool>,
    parent_bsuids: Option<bool>,
    parent_field: Option<String>,
}

pub(crate) async fn get_behaviour(State(sandbox): State<Sandbox>) -> Answer {
    let behaviour = sandbox.inner.lock().config.behaviour.clone();
    ok(serde_json::to_value(behaviour).unwrap_or_default())
}

pub(crate) async fn set_behaviour(State(sandbox): State<Sandbox>, body: Body) -> Answer {
    let patch: BehaviourPatch = json_body(body).await?;
    if let Some(r) = patch.read_ratio {
        check_ratio("read_ratio", r)?;
    }
    if let Some(r) = patch.failure_ratio {
        check_ratio("failure_ratio", r)?;
    }
    if let Some(e) = &patch.no_number_event
        && !matches!(e.as_str(), "FINISH" | "FINISH_ONLY_WABA")
    {
        return Err(GraphError::invalid_param(format!(
            "no_number_event must be FINISH or FINISH_ONLY_WABA - got {e:?}."
        )));
    }
    if let Some(f) = &patch.parent_field
        && !matches!(
            f.as_str(),
            "recipient_parent_user_id" | "parent_recipient_user_id" | "parent_user_id"
        )
    {
        return Err(GraphError::invalid_param(format!(
            "parent_field must be recipient_parent_user_id, parent_recipient_user_id or parent_user_id - got {f:?}."
        )));
    }
    let mut state = sandbox.inner.lock();
    let b: &mut Behaviour = &mut state.config.behaviour;
    macro_rules! apply {
        ($($field:ident),*) => { $( if let Some(v) = patch.$field { b.$field = v; } )* };
    }
    apply!(
        sent_delay_ms,
        delivered_delay_ms,
        read_delay_ms,
        read_ratio,
        failure_ratio,
        undeliverable,
        enforce_service_window,
        legacy_limit_webhooks,
        pair_rate_burst,
        review_delay_ms,
        no_number_event,
        contact_book,
        parent_bsuids,
        parent_field
    );
    if let Some(ms) = patch.webhook_batch_ms {
        b.webhook_batch_ms = ms.max(1);
    }
    if let Some(n) = patch.webhook_attempts {
        b.webhook_attempts = n.max(1);
    }
    let behaviour = b.clone();
    drop(state);
    ok(serde_json::to_value(behaviour).unwrap_or_default())
}

pub(crate) async fn messages(State(sandbox): State<Sandbox>, uri: Uri) -> Answer {
    let pairs = query(&uri)?;
    let to = pairs
        .iter()
        .find(|(k, _)| k == "to")
        .map(|(_, v)| digits(v));
    let phone = pairs
        .iter()
        .find(|(k, _)| k == "phone_number_id")
        .map(|(_, v)| v.clone());
    let limit = query_limit(&pairs)?;
    let state = sandbox.inner.lock();
    let mut data: Vec<Value> = state
        .messages
        .iter()
        .rev()
        .filter(|m| to.as_ref().is_none_or(|to| &m.to == to))
        .filter(|m| phone.as_ref().is_none_or(|p| &m.phone_number_id == p))
        .take(limit.unwrap_or(usize::MAX))
        .map(|m| serde_json::to_value(m).unwrap_or_default())
        .collect();
    drop(state);
    data.reverse();
    ok(json!({ "data": data }))
}

/// `GET /sandbox/requests`: every Graph call received, accepted or refused, oldest first,
/// and the sends refused by the rate rules per number.
pub(crate) async fn requests(State(sandbox): State<Sandbox>, uri: Uri) -> Answer {
    let pairs = query(&uri)?;
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let to = param("to").map(|v| digits(&v));
    let phone = param("phone_number_id");
    let outcome = param("outcome");
    if let Some(o) = &outcome
        && o != "accepted"
        && o != "refused"
    {
        return Err(GraphError::invalid_param(format!(
            "Param outcome must be one of {{accepted, refused}} - got {o}."
        )));
    }
    let sends_only = match param("sends").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(GraphError::invalid_param(format!(
                "Param sends must be true or false - got {other}."
            )));
        }
    };
    let limit = query_limit(&pairs)?;
    let state = sandbox.inner.lock();
    let mut data: Vec<Value> = state
        .requests
        .entries
        .iter()
        .rev()
        .filter(|r| !sends_only || r.phone_number_id.is_some())
        .filter(|r| {
            to.as_ref()
                .is_none_or(|to| r.to.as_deref().map(digits).as_ref() == Some(to))
        })
        .filter(|r| {
            phone
                .as_ref()
                .is_none_or(|p| r.phone_number_id.as_ref() == Some(p))
        })
        .filter(|r| outcome.as_ref().is_none_or(|o| &r.outcome == o))
        .take(limit.unwrap_or(usize::MAX))
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    let rate_refusals = serde_json::to_value(&state.requests.rate_refusals).unwrap_or_default();
    drop(state);
    data.reverse();
    ok(json!({ "data": data, "rate_refusals": rate_refusals }))
}

/// `GET /sandbox/throughput`: per number, the sends received (accepted or refused), the most
/// that arrived in any one-second window (`[t, t + 1000)` ms, by arrival) against the number's messages per
/// second, and the fencing tokens they carried (`X-Parley-Fence`): `stale_fence_sends` counts
/// sends whose token is lower than one an earlier send to that number carried.
pub(crate) async fn throughput(State(sandbox): State<Sandbox>) -> Answer {
    let state = sandbox.inner.lock();
    let mut by: std::collections::BTreeMap<&str, Vec<&crate::state::RequestRecord>> =
        std::collections::BTreeMap::new();
    for r in &state.requests.entries {
        if let Some(pn) = r.phone_number_id.as_deref() {
            by.entry(pn).or_default().push(r);
        }
    }
    let mut data = serde_json::Map::new();
    for (pn, sends) in by {
        let mut at: Vec<i64> = sends.iter().map(|r| r.received_ms).collect();
        at.sort_unstable();
        let (mut most, mut from_ms, mut first) = (0usize, None, 0usize);
        for (last, t) in at.iter().enumerate() {
            while *t - at[first] >= 1_000 {
                first += 1;
            }
            if last - first + 1 > most {
                most = last - first + 1;
                from_ms = Some(at[first]);
            }
        }
        let (mut highest, mut stale, mut tokens) = (None::<i64>, 0u64, Vec::new());
        for f in sends.iter().filter_map(|r| r.fence) {
            if highest.is_some_and(|h| f < h) {
                stale += 1;
            }
            if highest.is_none_or(|h| f > h) {
                highest = Some(f);
                tokens.push(f);
            }
        }
        let mps = state.phone(pn).map(|p| p.phone.throughput_mps);
        data.insert(
            pn.to_owned(),
            json!({
                "throughput_mps": mps,
                "sends": sends.len(),
                "accepted": sends.iter().filter(|r| r.outcome == "accepted").count(),
                "max_in_one_second": most,
                "busiest_second_from_ms": from_ms,
                "fence_tokens": tokens,
                "stale_fence_sends": stale,
                "refused_for_throughput": state.requests.rate_refusals.get(pn).map_or(0, |r| r.throughput),
            }),
        );
    }
    ok(json!({ "data": data }))
}

pub(crate) async fn message(State(sandbox): State<Sandbox>, Path(wamid): Path<String>) -> Answer {
    let state = sandbox.inner.lock();
    match state.messages.get(&wamid) {
        Some(m) => ok(serde_json::to_value(m).unwrap_or_default()),
        None => Err(GraphError::invalid_param(format!(
            "No accepted message with id {wamid}."
        ))),
    }
}

pub(crate) async fn webhooks(State(sandbox): State<Sandbox>, uri: Uri) -> Answer {
    let limit = query_limit(&query(&uri)?)?;
    let state = sandbox.inner.lock();
    let skip = limit.map_or(0, |n| state.deliveries.len().saturating_sub(n));
    let data: Vec<Value> = state
        .deliveries
        .iter()
        .skip(skip)
        .map(|d| serde_json::to_value(d).unwrap_or_default())
        .collect();
    drop(state);
    ok(json!({ "data": data }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookUrl {
    url: Option<String>,
}

pub(crate) async fn set_webhook_url(State(sandbox): State<Sandbox>, body: Body) -> Answer {
    let target: WebhookUrl = json_body(body).await?;
    if let Some(url) = &target.url
        && !crate::validate::is_http_url(url)
    {
        return Err(GraphError::invalid_param(format!(
            "url must be an http(s) URL - got {url:?}."
        )));
    }
    sandbox.set_webhook_url(target.url.clone());
    ok(json!({ "url": target.url }))
}

pub(crate) async fn state(State(sandbox): State<Sandbox>) -> Answer {
    let clock = clock_json(&sandbox);
    let state = sandbox.inner.lock();
    let config = &state.config;
    let businesses: Vec<Value> = config
        .businesses
        .iter()
        .map(|b| {
            json!({
                "id": b.id,
                "name": b.name,
                "website": b.website,
                "country": b.country,
                "address": b.address,
                "verification_status": b.verification_status,
                "wabas": b.wabas.iter().map(|w| json!({
                    "id": w.id,
                    "name": w.name,
                    "account_review_status": w.account_review_status,
                    "currency": w.currency,
                    "timezone_id": w.timezone_id,
                    "message_template_namespace": w.message_template_namespace,
                    "phone_numbers": w.phone_numbers,
                    "templates": w.templates.iter().map(|t| json!({
                        "id": t.get("id"),
                        "name": t.get("name"),
                        "language": t.get("language"),
                        "category": t.get("category"),
                        "status": t.get("status"),
                        "parameter_format": t.get("parameter_format"),
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let summary = json!({
        "app_id": config.app_id,
        "app_name": config.app_name,
        "partner_business_id": config.partner_business_id,
        "graph_version": config.graph_version,
        "webhook_url": config.webhook_url,
        "clock": clock,
        "businesses": businesses,
        "verification_codes": state.verifications,
        "messages": state.messages.iter().count(),
        "queued_webhook_events": state.queue.len(),
    });
    drop(state);
    ok(summary)
}

pub(crate) async fn reset(State(sandbox): State<Sandbox>) -> Answer {
    let mut state = sandbox.inner.lock();
    state.messages.clear();
    state.requests.clear();
    state.inbound.clear();
    state.media.clear();
    state.media_urls.clear();
    state.windows.clear();
    state.throughput.clear();
    state.pair_buckets.clear();
    state.queue.clear();
    state.deliveries.clear();
    state.billing.clear();
    state.faults = Faults::default();
    state.limits.clear();
    state.users = crate::users::Users::default();
    state.consent = crate::consent::Consent::default();
    drop(state);
    ok(json!({ "success": true }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateStatus {
    status: String,
    reason: Option<String>,
}

const TEMPLATE_STATUSES: &[&str] = &[
    "APPROVED",
    "PENDING",
    "REJECTED",
    "PAUSED",
    "DISABLED",
    "IN_APPEAL",
    "REINSTATED",
    "FLAGGED",
    "DELETED",
    "PENDING_DELETION",
    "LIMIT_EXCEEDED",
    "ARCHIVED",
    "LOCKED",
];

pub(crate) async fn set_template_status(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let change: TemplateStatus = json_body(body).await?;
    let status = change.status.to_ascii_uppercase();
    if !TEMPLATE_STATUSES.contains(&status.as_str()) {
        return Err(GraphError::invalid_param(format!(
            "status must be one of {} - got {:?}.",
            TEMPLATE_STATUSES.join(", "),
            change.status
        )));
    }
    let now_ms = sandbox.inner.clock.now_ms();
    {
        let mut state = sandbox.inner.lock();
        let waba_id = crate::templates::waba_of(&state, &id)
            .ok_or_else(|| GraphError::invalid_param(format!("No template with id {id}.")))?;
        let reason = change.reason.unwrap_or_else(|| "NONE".to_owned());
        let event = crate::templates::set_status(&mut state, &waba_id, &id, &status, &reason)
            .ok_or_else(|| GraphError::invalid_param(format!("No template with id {id}.")))?;
        state.schedule(now_ms, "", event);
    }
    sandbox.inner.wake.notify_one();
    ok(json!({ "id": id, "status": status }))
}

/// `GET /sandbox/reads`: the read receipts and typing indicators received, oldest first:
/// `{"data": [{"phone_number_id", "message_id", "typing", "at_ms"}]}`.
pub(crate) async fn reads(State(sandbox): State<Sandbox>) -> Answer {
    let state = sandbox.inner.lock();
    ok(json!({ "data": state.reads }))
}
