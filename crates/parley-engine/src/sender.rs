//! The sender: one loop per phone number. Each loop claims due messages in batches (rows move
//! to `sending` with a lease, committed before the call), paces calls with the number's
//! throughput limiter and records what Meta answered. Retryable errors go back to `queued`
//! with backoff; permanent ones end in `failed` with Meta's code and text.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parley_domain::{ErrorClass, classify};
use parley_meta::{GraphError, template_message_body, text_message_body};
use parley_store::{MessageContent, MessageRecord, PhoneNumberRecord};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// Starts a loop for every known number, picks up numbers added later, and returns stale
/// `sending` rows to the queue after the crash grace period.
pub async fn supervise(engine: Engine, shutdown: CancellationToken) {
    let mut loops: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            _ = engine.send_wake.notified() => {}
        }
        match engine.store.all_phone_numbers().await {
            Ok(numbers) => {
                for number in numbers {
                    let running = loops
                        .get(&number.phone_number_id)
                        .is_some_and(|h| !h.is_finished());
                    if !running {
                        let id = number.phone_number_id.clone();
                        let handle =
                            tokio::spawn(number_loop(engine.clone(), number, shutdown.clone()));
                        loops.insert(id, handle);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list phone numbers"),
        }
        let grace = i64::try_from(engine.config.crash_grace.as_millis()).unwrap_or(i64::MAX);
        match engine
            .store
            .requeue_stale_sending(engine.now(), grace)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    count = n,
                    "returned messages left in `sending` to the queue"
                );
                engine.send_wake.notify_waiters();
            }
            Err(e) => tracing::warn!(error = %e, "could not requeue stale messages"),
        }
    }
    for (_, h) in loops {
        let _ = h.await;
    }
}

struct NumberState {
    engine: Engine,
    number: PhoneNumberRecord,
    limiter: DefaultDirectRateLimiter,
    /// While now < this, the loop waits (Meta throttled the number, or its auth broke).
    paused_until: AtomicI64,
}

async fn number_loop(engine: Engine, number: PhoneNumberRecord, shutdown: CancellationToken) {
    let mps = NonZeroU32::new(number.throughput_mps.max(1)).unwrap_or(NonZeroU32::MIN);
    let state = Arc::new(NumberState {
        engine: engine.clone(),
        limiter: RateLimiter::direct(Quota::per_second(mps)),
        number,
        paused_until: AtomicI64::new(0),
    });
    let pn = state.number.phone_number_id.clone();
    tracing::info!(phone_number_id = %pn, mps = mps.get(), "sender loop started");
    let poll = i64::try_from(engine.config.poll_interval.as_millis()).unwrap_or(1000);
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let now = engine.now();
        let paused = state.paused_until.load(Ordering::SeqCst);
        if paused > now {
            let wait = Duration::from_millis(u64::try_from((paused - now).min(poll)).unwrap_or(0));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => continue,
            }
        }
        let lease = i64::try_from(engine.config.lease.as_millis()).unwrap_or(60_000);
        let claimed = match engine
            .store
            .claim_due_messages(&pn, now, now + lease, engine.config.batch_size)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, phone_number_id = %pn, "claim failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(engine.config.poll_interval) => continue,
                }
            }
        };
        if claimed.is_empty() {
            let next = engine.store.next_due_at(&pn).await.ok().flatten();
            let wait = next.map_or(poll, |t| (t - now).clamp(1, poll));
            let notified = engine.send_wake.notified();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(1000))) => {}
            }
            continue;
        }
        let token = match engine.store.platform_token(&state.number.platform_id).await {
            Ok(t) => Arc::new(t),
            Err(e) => {
                tracing::error!(error = %e, phone_number_id = %pn, "cannot read the platform's token; messages wait");
                for m in &claimed {
                    let _ = engine
                        .store
                        .reschedule_message(&m.id, now + 60_000, None, now)
                        .await;
                }
                state.paused_until.store(now + 60_000, Ordering::SeqCst);
                continue;
            }
        };
        futures::stream::iter(claimed)
            .for_each_concurrent(engine.config.concurrency, |m| {
                let state = state.clone();
                let token = token.clone();
                async move {
                    state.limiter.until_ready().await;
                    send_one(&state, &token, m).await;
                }
            })
            .await;
    }
    tracing::info!(phone_number_id = %pn, "sender loop stopped");
}

fn request_body(m: &MessageRecord) -> serde_json::Value {
    let callback = Some(m.id.as_str());
    match &m.content {
        MessageContent::Template { template } => {
            template_message_body(&m.to_phone, template, m.reply_to.as_deref(), callback)
        }
        MessageContent::Text { body, preview_url } => text_message_body(
            &m.to_phone,
            body,
            *preview_url,
            m.reply_to.as_deref(),
            callback,
        ),
    }
}

async fn send_one(state: &NumberState, token: &str, m: MessageRecord) {
    let engine = &state.engine;
    let body = request_body(&m);
    let result = engine
        .graph
        .send_message(token, &state.number.phone_number_id, &body)
        .await;
    let now = engine.now();
    let outcome = match result {
        Ok(resp) => match resp.wamid() {
            Some(wamid) => {
                metrics::counter!("parley_messages_accepted_total").increment(1);
                engine.store.mark_accepted(&m.id, wamid, now).await
            }
            None => {
                retry(
                    state,
                    &m,
                    None,
                    "Meta accepted the call but returned no message id",
                    now,
                )
                .await
            }
        },
        Err(GraphError::Api { error, .. }) => {
            let code = error.code;
            let text = error.description();
            metrics::counter!("parley_meta_errors_total", "code" => code.to_string()).increment(1);
            tracing::info!(message_id = %m.id, code, error = %text, "Meta refused a send");
            handle_meta_error(state, &m, code, &text, now).await
        }
        Err(e) => {
            // No answer: Meta may or may not have the message. The callback data lets a
            // later status webhook settle it; until then, retry (at-least-once).
            tracing::warn!(message_id = %m.id, error = %e, "send failed in transport");
            retry(state, &m, None, &e.to_string(), now).await
        }
    };
    if let Err(e) = outcome {
        // The row keeps its lease; the crash-recovery pass will requeue it.
        tracing::error!(message_id = %m.id, error = %e, "could not record a send's outcome");
    }
}

async fn handle_meta_error(
    state: &NumberState,
    m: &MessageRecord,
    code: i64,
    text: &str,
    now: i64,
) -> parley_store::Result<()> {
    let store = &state.engine.store;
    match classify(code) {
        ErrorClass::RetryBackoff => retry(state, m, Some(code), text, now).await,
        ErrorClass::ThrottleNumber => {
            let delay = backoff(&state.engine, m.attempts);
            state.paused_until.fetch_max(now + delay, Ordering::SeqCst);
            retry(state, m, Some(code), text, now).await
        }
        ErrorClass::ThrottleRecipient => {
            // Meta: retry the same user after 4^X seconds.
            let exp = u32::try_from((m.attempts - 1).clamp(0, 5)).unwrap_or(5);
            let delay = 4_i64.pow(exp) * 1000;
            store
                .reschedule_message(&m.id, now + delay, Some((code, text)), now)
                .await
        }
        ErrorClass::RetryAfter(d) => {
            let delay = i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
            store
                .reschedule_message(&m.id, now + delay, Some((code, text)), now)
                .await
        }
        ErrorClass::PermanentRecipient | ErrorClass::PermanentTemplate => {
            metrics::counter!("parley_messages_failed_total").increment(1);
            store.fail_message(&m.id, code, text, now).await
        }
        ErrorClass::StopNumber => {
            // Auth or account trouble: nothing this number sends can succeed until a person
            // acts. Keep the message (nothing accepted is lost) and pause the number.
            tracing::error!(phone_number_id = %state.number.phone_number_id, code, error = %text, "Meta refused the number's credentials or account; pausing its sends");
            let pause = 5 * 60_000;
            state.paused_until.fetch_max(now + pause, Ordering::SeqCst);
            store
                .reschedule_message(&m.id, now + pause, Some((code, text)), now)
                .await
        }
    }
}

/// Retry with exponential backoff, or fail when the attempts are used up.
async fn retry(
    state: &NumberState,
    m: &MessageRecord,
    code: Option<i64>,
    text: &str,
    now: i64,
) -> parley_store::Result<()> {
    let engine = &state.engine;
    if m.attempts >= engine.config.max_attempts {
        metrics::counter!("parley_messages_failed_total").increment(1);
        let code = code.unwrap_or(131000);
        let text = format!("gave up after {} attempts: {text}", m.attempts);
        return engine.store.fail_message(&m.id, code, &text, now).await;
    }
    let delay = backoff(engine, m.attempts);
    engine
        .store
        .reschedule_message(&m.id, now + delay, code.map(|c| (c, text)), now)
        .await
}

/// base · 2^(attempt-1), capped, with ±20 % jitter so retries of a burst spread out.
fn backoff(engine: &Engine, attempts: i64) -> i64 {
    let base = i64::try_from(engine.config.base_backoff.as_millis()).unwrap_or(1000);
    let cap = i64::try_from(engine.config.max_backoff.as_millis()).unwrap_or(300_000);
    let exp = u32::try_from((attempts - 1).clamp(0, 20)).unwrap_or(20);
    let raw = base.saturating_mul(1_i64 << exp).min(cap);
    let jitter = rand::rng().random_range(0.8..1.2);
    ((raw as f64) * jitter) as i64
}
