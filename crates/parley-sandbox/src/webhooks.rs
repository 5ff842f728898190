//! The webhook dispatcher: Meta's side of `POST <callback>`.
//!
//! A task wakes every `webhook_batch_ms` (or at once when the clock is advanced or an inbound
//! message is simulated), takes the events due in virtual time, batches statuses per phone
//! number (≤1000 per POST, like Meta), wraps them in the `whatsapp_business_account`
//! envelope, signs the exact bytes with the app secret (`X-Hub-Signature-256`) and POSTs
//! them concurrently, retrying non-2xx answers with exponential backoff. Fault switches drop,
//! duplicate or reorder POSTs so clients prove their webhook path idempotent and monotonic.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::Inner;
use crate::state::{DeliveryRecord, EventKind, digits};

/// Meta batches at most 1000 updates per POST.
const MAX_PER_POST: usize = 1000;
/// First retry delay (real time); doubles each attempt up to `MAX_BACKOFF_MS`. How many
/// attempts: `Behaviour::webhook_attempts`.
const FIRST_BACKOFF_MS: u64 = 200;
const MAX_BACKOFF_MS: u64 = 2_000;
/// Share of status events held back a few ticks when `reorder_webhooks` is on.
const REORDER_HOLD_RATIO: f64 = 0.3;

/// `sha256=<hex HMAC-SHA256(app_secret, body)>`, the `X-Hub-Signature-256` header value.
pub fn signature(app_secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; this arm is unreachable in practice.
        Err(_) => return "sha256=".to_owned(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Runs until `shutdown`: each tick dispatches what is due.
pub(crate) async fn run_dispatcher(inner: Arc<Inner>, shutdown: CancellationToken) {
    loop {
        let tick = inner.lock().config.behaviour.webhook_batch_ms.max(1);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = inner.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(tick)) => {}
        }
        dispatch_due(&inner, &shutdown);
    }
}

/// One POST to make.
struct Post {
    record_id: u64,
    body: Vec<u8>,
}

/// Takes due events, records their statuses, logs and spawns the POSTs.
pub(crate) fn dispatch_due(inner: &Arc<Inner>, shutdown: &CancellationToken) {
    let now_ms = inner.clock.now_ms();
    let (posts, url, secret) = {
        let mut state = inner.lock();
        let mut due = state.take_due(now_ms);
        if due.is_empty() {
            return;
        }
        let faults = state.faults.clone();
        let tick = i64::try_from(state.config.behaviour.webhook_batch_ms.max(1)).unwrap_or(100);
        let mut rng = rand::rng();
        if faults.reorder_webhooks {
            let mut kept = Vec::with_capacity(due.len());
            for mut event in due {
                let hold = !event.deferred
                    && matches!(event.kind, EventKind::Status { .. })
                    && rng.random_bool(REORDER_HOLD_RATIO);
                if hold {
                    event.deferred = true;
                    let later = now_ms.saturating_add(tick.saturating_mul(rng.random_range(1..=3)));
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    state.queue.insert((later, seq), event);
                } else {
                    kept.push(event);
                }
            }
            due = kept;
            due.shuffle(&mut rng);
        }

        // Template reviews decide now and become `message_template_status_update` changes;
        // account reviews become `account_review_update` (and name approvals), if still due.
        let mut expanded = Vec::with_capacity(due.len());
        for mut event in due {
            match &event.kind {
                EventKind::TemplateReview {
                    waba_id,
                    template_id,
                } => {
                    event.kind =
                        crate::templates::conclude_review(&mut state, waba_id, template_id);
                    expanded.push(event);
                }
                EventKind::AccountReview { waba_id } => {
                    let waba_id = waba_id.clone();
                    for kind in crate::signup::conclude_review(&mut state, &waba_id) {
                        expanded.push(crate::state::PendingEvent {
                            phone_number_id: String::new(),
                            kind,
                            deferred: false,
                        });
                    }
                }
                _ => expanded.push(event),
            }
        }
        let due = expanded;

        // Statuses are recorded as dispatched even when the POST is dropped or fails:
        // Meta's state moved on whether or not the client heard of it.
        for event in &due {
            if let EventKind::Status {
                wamid,
                status,
                json,
            } = &event.kind
            {
                let timestamp = json
                    .get("timestamp")
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or(now_ms / 1000);
                state.record_status(wamid, status, timestamp);
            }
        }

        let mut payloads: Vec<(String, &'static str, usize, usize, Value)> = Vec::new();
        for event in &due {
            if let EventKind::Change {
                entry_id,
                field,
                value,
            } = &event.kind
            {
                let payload = json!({
                    "object": "whatsapp_business_account",
                    "entry": [{
                        "id": entry_id,
                        "time": now_ms.div_euclid(1000),
                        "changes": [{ "value": value, "field": field }],
                    }],
                });
                payloads.push((String::new(), "change", 0, 0, payload));
            }
        }
        let mut unsubscribed = Vec::new();
        for event in &due {
            if let EventKind::Payload { field, payload } = &event.kind {
                let kind = if field == "account_update" {
                    "change"
                } else {
                    "coexistence"
                };
                if state.app_fields.contains(field) {
                    payloads.push((event.phone_number_id.clone(), kind, 0, 0, payload.clone()));
                } else {
                    unsubscribed.push((event.phone_number_id.clone(), payload.clone()));
                }
            }
        }
        for (phone_id, payload) in unsubscribed {
            // Meta sends no field the app has not subscribed to; the log says so.
            let url = state.config.webhook_url.clone();
            state.push_delivery(DeliveryRecord {
                id: 0,
                at: now_ms.div_euclid(1000),
                url,
                phone_number_id: phone_id,
                kind: "coexistence".to_owned(),
                statuses: 0,
                messages: 0,
                attempts: 0,
                response_code: None,
                outcome: "not_subscribed".to_owned(),
                error: None,
                duplicate: false,
                payload,
            });
        }
        let mut phones: Vec<String> = Vec::new();
        for event in &due {
            if matches!(
                event.kind,
                EventKind::Status { .. } | EventKind::Inbound { .. }
            ) && !phones.contains(&event.phone_number_id)
            {
                phones.push(event.phone_number_id.clone());
            }
        }
        for phone_id in &phones {
            let Some(phone) = state.phone(phone_id) else {
                continue;
            };
            let metadata = json!({
                "display_phone_number": digits(&phone.phone.display_phone_number),
                "phone_number_id": phone_id,
            });
            let waba_id = phone.waba.id.clone();
            let mine = due.iter().filter(|e| &e.phone_number_id == phone_id);
            let mut statuses = Vec::new();
            for event in mine {
                match &event.kind {
                    EventKind::Status { json, .. } => statuses.push(json.clone()),
                    EventKind::Inbound { contact, message } => {
                        let mut value = json!({
                            "messaging_product": "whatsapp",
                            "metadata": metadata,
                            "contacts": [contact],
                            "messages": [message],
                        });
                        // System messages (identity changes) carry no `contacts`.
                        if contact.is_null()
                            && let Some(v) = value.as_object_mut()
                        {
                            v.remove("contacts");
                        }
                        payloads.push((
                            phone_id.clone(),
                            "messages",
                            0,
                            1,
                            envelope(&waba_id, value),
                        ));
                    }
                    EventKind::TemplateReview { .. }
                    | EventKind::AccountReview { .. }
                    | EventKind::Change { .. }
                    | EventKind::Payload { .. } => {}
                }
            }
            for chunk in statuses.chunks_mut(MAX_PER_POST) {
                let contacts = crate::users::lift_status_contacts(chunk);
                let mut value = json!({
                    "messaging_product": "whatsapp",
                    "metadata": metadata,
                    "statuses": chunk,
                });
                if !contacts.is_empty() {
                    value["contacts"] = json!(contacts);
                }
                payloads.push((
                    phone_id.clone(),
                    "statuses",
                    chunk.len(),
                    0,
                    envelope(&waba_id, value),
                ));
            }
        }
        if faults.reorder_webhooks {
            payloads.shuffle(&mut rng);
        }

        let url = state.config.webhook_url.clone();
        let secret = state.config.app_secret.clone();
        let at = now_ms.div_euclid(1000);
        let mut posts = Vec::new();
        for (phone_id, kind, statuses, messages, payload) in payloads {
            let copies = if faults.duplicate_webhooks > 0.0
                && rng.random_bool(faults.duplicate_webhooks.min(1.0))
            {
                2
            } else {
                1
            };
            let dropped =
                faults.drop_webhooks > 0.0 && rng.random_bool(faults.drop_webhooks.min(1.0));
            let body = serde_json::to_vec(&payload).unwrap_or_default();
            for copy in 0..copies {
                let outcome = if dropped {
                    "dropped"
                } else if url.is_none() {
                    "no_webhook_url"
                } else {
                    "pending"
                };
                let record_id = state.push_delivery(DeliveryRecord {
                    id: 0,
                    at,
                    url: url.clone(),
                    phone_number_id: phone_id.clone(),
                    kind: kind.to_owned(),
                    statuses,
                    messages,
                    attempts: 0,
                    response_code: None,
                    outcome: outcome.to_owned(),
                    error: None,
                    duplicate: copy > 0,
                    payload: payload.clone(),
                });
                if outcome == "pending" {
                    posts.push(Post {
                        record_id,
                        body: body.clone(),
                    });
                }
            }
        }
        (posts, url, secret)
    };

    let Some(url) = url else { return };
    for post in posts {
        let inner = Arc::clone(inner);
        let url = url.clone();
        let signature = signature(&secret, &post.body);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            deliver(inner, url, signature, post, shutdown).await;
        });
    }
}

fn envelope(waba_id: &str, value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": waba_id,
            "changes": [{ "value": value, "field": "messages" }],
        }],
    })
}

/// POSTs one payload, retrying with exponential backoff; every attempt lands in the log.
async fn deliver(
    inner: Arc<Inner>,
    url: String,
    signature: String,
    post: Post,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(FIRST_BACKOFF_MS);
    let max_attempts = inner.lock().config.behaviour.webhook_attempts.max(1);
    for attempt in 1..=max_attempts {
        let request = inner
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", &signature)
            .body(post.body.clone())
            .send();
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            result = request => result,
        };
        let (code, error) = match result {
            Ok(response) => (Some(response.status().as_u16()), None),
            Err(error) => (None, Some(error.to_string())),
        };
        let delivered = code.is_some_and(|c| (200..300).contains(&c));
        {
            let mut state = inner.lock();
            if let Some(record) = state.delivery_mut(post.record_id) {
                record.attempts = attempt;
                record.response_code = code;
                record.error = error.clone();
                record.outcome = if delivered {
                    "delivered".to_owned()
                } else if attempt == max_attempts {
                    "failed".to_owned()
                } else {
                    "retrying".to_owned()
                };
            }
        }
        if delivered {
            return;
        }
        tracing::debug!(%url, attempt, ?code, ?error, "sandbox webhook POST not acknowledged");
        if attempt == max_attempts {
            tracing::warn!(%url, "sandbox webhook POST abandoned after {max_attempts} attempts");
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_millis(MAX_BACKOFF_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_known_vector() {
        // RFC 4231 test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
