//! The sender: one loop per phone number. Each loop claims due messages in batches (rows move
//! to `sending` with a lease, committed before the call), paces calls with the number's
//! throughput limiter and records what Meta answered. Retryable errors go back to `queued`
//! with backoff; permanent ones end in `failed` with Meta's code and text.
//!
//! Before a template goes out it passes the quota gate (Meta's messaging limit on unique
//! business-initiated contacts per rolling 24 h, read fresh from the number every round, so a
//! tier change from a webhook applies at once) and the pair-rate spacing per recipient.
//!
//! Single sends (API messages, inbox replies) to one contact from one number go in the order
//! Parley accepted them: the claim takes only the head of each such lane (`lane_head!` in
//! `parley-store`), so one is in flight per contact and the next waits for its acceptance
//! (written by the recorder, which then wakes the loop) or its failure. Campaign messages
//! have no lane.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use parley_domain::quota::{Gate, MessagingLimit, Reach};
use parley_domain::{ErrorClass, MessageContent, PhoneNumberId, Wamid, classify};
use parley_meta::{
    GraphError, Outbound, media_message, reaction_message, template_message, text_message,
};
use parley_store::campaigns::{QuotaBatch, QuotaItem};
use parley_store::{Acceptance, MessageRecord, PhoneNumberRecord, QuotaConfirm};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// Starts a loop for every number whose sender lease this node holds (`leases.rs`), picks up
/// numbers added later, and returns stale `sending` rows to the queue after the crash grace
/// period.
pub async fn supervise(engine: Engine, shutdown: CancellationToken) {
    // Per number: the fencing token its loop runs under, and the loop.
    let mut loops: HashMap<PhoneNumberId, (i64, tokio::task::JoinHandle<()>)> = HashMap::new();
    let mut known: std::collections::HashSet<PhoneNumberId> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    // The crash-recovery pass runs beside the loop, one at a time: on PostgreSQL its updates
    // wait for rows another node's open transaction holds (a node stopped mid-transaction
    // holds them until its session ends), and the loops of numbers this node takes over must
    // start meanwhile.
    let mut recovery: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            _ = engine.send_wake.notified() => {}
            _ = engine.leases.changed.notified() => {}
        }
        // Numbers their business disconnected in the WhatsApp Business app send nothing
        // until Meta reports them reconnected; their queued messages wait.
        let offboarded = engine.store.offboarded_numbers().await.unwrap_or_default();
        match engine.store.all_phone_numbers().await {
            Ok(numbers) => {
                for number in numbers {
                    if offboarded.contains(&number.phone_number_id) {
                        continue;
                    }
                    let resource = crate::leases::sender_resource(&number.phone_number_id);
                    let lease = engine.leases.get(&resource);
                    if known.insert(number.phone_number_id.clone()) && lease.is_none() {
                        // A number this node has not seen: a lease round soon, not in a while.
                        engine.leases.round_soon.notify_one();
                    }
                    // Only the node holding the number's lease runs its loop.
                    let Some(lease) = lease else { continue };
                    let running = loops
                        .get(&number.phone_number_id)
                        .is_some_and(|(token, h)| *token == lease.fence.token && !h.is_finished());
                    if !running {
                        let id = number.phone_number_id.clone();
                        let token = lease.fence.token;
                        let guard = lease.running();
                        let engine = engine.clone();
                        let handle = tokio::spawn(async move {
                            let _running = guard;
                            let stop = lease.stop.clone();
                            number_loop(engine, number, lease, stop).await
                        });
                        loops.insert(id, (token, handle));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list phone numbers"),
        }
        if recovery
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
        {
            let engine = engine.clone();
            recovery = Some(tokio::spawn(
                async move { recover_stale_sending(&engine).await },
            ));
        }
    }
    if let Some(h) = recovery {
        h.abort();
    }
    for (_, (_, h)) in loops {
        let _ = h.await;
    }
}

/// One crash-recovery pass over `sending` rows (the supervisor runs it at start and every
/// tick): rows past their lease start their grace; rows whose grace passed with no status
/// naming them go back to the queue (at least once: Meta offers no lookup by our id, so a send
/// Meta took whose every status webhook was lost is sent again).
pub async fn recover_stale_sending(engine: &Engine) {
    let grace = i64::try_from(engine.config.crash_grace.as_millis()).unwrap_or(i64::MAX);
    match engine
        .store
        .requeue_stale_sending(engine.now(), grace)
        .await
    {
        Ok(pass) => {
            if pass.noticed > 0 {
                tracing::warn!(
                    count = pass.noticed,
                    grace_ms = grace,
                    "messages left in `sending` past their lease (a crash?); waiting the grace for a status naming them"
                );
            }
            if pass.requeued > 0 {
                tracing::warn!(
                    count = pass.requeued,
                    "no status named messages left in `sending`; returned them to the queue"
                );
                engine.wake_senders(None);
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not requeue stale messages"),
    }
}

struct NumberState {
    engine: Engine,
    number: PhoneNumberRecord,
    /// The lease this loop runs under: every claim carries its token, every send first looks
    /// that the lease is still this node's.
    lease: crate::leases::Lease,
    limiter: Arc<crate::pacer::Pacer>,
    /// Sends in flight, across rounds: at most `concurrency` (a round's sends that outlast
    /// [`STRAGGLER_WAIT`] keep theirs while the next round goes).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// While now < this, the loop waits (Meta throttled the number, or its auth broke).
    paused_until: AtomicI64,
    /// The messaging limit and the ledger key it counts under, refreshed every round.
    quota: Mutex<(MessagingLimit, String)>,
    /// Recipient → when the last message to it went (pair-rate spacing).
    pair_last: Mutex<foldhash::HashMap<String, i64>>,
    /// The recorder wrote the acceptance of a single send: the next message of its lane
    /// (per-contact order) may be claimable now.
    lane_freed: Arc<tokio::sync::Notify>,
}

/// Meta's pair rate: one message every 6 s to the same user.
const PAIR_SPACING_MS: i64 = 6_000;

impl NumberState {
    fn quota(&self) -> (MessagingLimit, String) {
        self.quota
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the number's limit and scope as stored now; when the limit rose, messages
    /// waiting for a slot are looked at again at once.
    /// Re-reads the number: its messaging limit applies at once; a number that is gone
    /// (platform disconnected) or whose throughput changed ends this loop, and the supervisor
    /// starts a fresh one from the current record if the number still exists.
    async fn refresh_quota(&self, now: i64) -> LoopFate {
        let engine = &self.engine;
        let pn = &self.number.phone_number_id;
        let number = match engine.store.phone_number(pn).await {
            Ok(Some(n)) => n,
            Ok(None) => return LoopFate::Stop("the number is no longer connected"),
            Err(_) => return LoopFate::Continue,
        };
        if number.throughput_mps != self.number.throughput_mps {
            return LoopFate::Stop("the number's throughput changed");
        }
        if let Ok(Some(coexistence)) = engine.store.coexistence_number(pn).await
            && coexistence.offboarded_at.is_some()
        {
            return LoopFate::Stop(
                "the business disconnected the number in the WhatsApp Business app",
            );
        }
        let Ok((limit, _, key)) = engine.quota_context(&number).await else {
            return LoopFate::Continue;
        };
        let old = {
            let mut q = self
                .quota
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::replace(&mut *q, (limit, key))
        };
        if limit > old.0 {
            match engine.store.release_quota_waits(pn, now).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(phone_number_id = %pn, limit = %limit, released = n, "messaging limit raised; messages waiting for quota go again")
                }
                Err(e) => tracing::warn!(error = %e, "could not release quota waits"),
            }
        }
        LoopFate::Continue
    }

    /// `Err(instant)` while the last message Meta accepted for `to` is under 6 s old.
    fn pair_slot(&self, to: &str, now: i64) -> Result<(), i64> {
        let map = self
            .pair_last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(to) {
            Some(last) if now - last < PAIR_SPACING_MS => Err(last + PAIR_SPACING_MS),
            _ => Ok(()),
        }
    }

    /// Meta accepted a message for `to` at `now` (refused sends do not count).
    fn pair_sent(&self, to: &str, now: i64) {
        let mut map = self
            .pair_last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 50_000 {
            map.retain(|_, t| now - *t < PAIR_SPACING_MS);
        }
        map.insert(to.to_owned(), now);
    }
}

/// Messages per claimed round: about two seconds of the number's throughput, at least 10
/// and at most `max`. Between rounds the loop re-reads the number and claims again; rounds
/// shorter than that lost ~9 % of Meta's default 80 mps to the gaps.
fn round_size(mps: u32, max: u32) -> u32 {
    mps.saturating_mul(2).clamp(10, max.max(10))
}

/// Whether a number's loop goes on after re-reading the number.
enum LoopFate {
    Continue,
    Stop(&'static str),
}

async fn number_loop(
    engine: Engine,
    number: PhoneNumberRecord,
    lease: crate::leases::Lease,
    shutdown: CancellationToken,
) {
    let mut mps = number.throughput_mps.max(1);
    // Meta fixes WhatsApp Business app numbers at 20 mps, whatever their throughput field.
    if let Ok(Some(_)) = engine
        .store
        .coexistence_number(&number.phone_number_id)
        .await
    {
        mps = mps.min(crate::coexistence::COEXISTENCE_PACE_MPS);
    }
    let mps = NonZeroU32::new(mps).unwrap_or(NonZeroU32::MIN);
    let state = Arc::new(NumberState {
        engine: engine.clone(),
        limiter: Arc::new(crate::pacer::Pacer::starting_at(
            mps.get(),
            lease
                .quiet_until()
                .map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std),
        )),
        in_flight: Arc::new(tokio::sync::Semaphore::new(
            engine.config.concurrency.max(1),
        )),
        quota: Mutex::new((
            MessagingLimit::from_stored(number.messaging_limit.as_deref()),
            String::new(),
        )),
        number,
        lease,
        paused_until: AtomicI64::new(0),
        pair_last: Mutex::new(foldhash::HashMap::default()),
        lane_freed: Arc::new(tokio::sync::Notify::new()),
    });
    let pn = state.number.phone_number_id.clone();
    tracing::info!(phone_number_id = %pn, mps = mps.get(), "sender loop started");
    let (accepted_tx, accepted_rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_acceptances(
        engine.clone(),
        accepted_rx,
        state.lane_freed.clone(),
    ));
    let poll = i64::try_from(engine.config.poll_interval.as_millis()).unwrap_or(1000);
    // Messages queued for this number, on this node or another (`wake.rs`).
    let mut queued = engine.subscribe_wakeups();
    // Rounds whose last sends outlasted `STRAGGLER_WAIT` (Meta slow to answer them).
    let mut stragglers: Vec<tokio::task::JoinSet<()>> = Vec::new();
    loop {
        stragglers.retain_mut(|set| {
            while let Some(done) = set.try_join_next() {
                report_send_task(done);
            }
            !set.is_empty()
        });
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
        if let LoopFate::Stop(why) = state.refresh_quota(now).await {
            tracing::info!(phone_number_id = %pn, reason = why, "sender loop ends");
            break;
        }
        if !state.lease.live() {
            tracing::warn!(phone_number_id = %pn, "the number's lease lapsed; its loop stops");
            break;
        }
        // This claim finds whatever was queued before it: earlier wake-ups are spent.
        parley_store::wakeups::drain(&mut queued);
        let lease = i64::try_from(engine.config.lease.as_millis()).unwrap_or(60_000);
        let claimed = match engine
            .store
            .claim_due_messages_fenced(
                &state.lease.fence,
                &pn,
                now,
                now + lease,
                round_size(mps.get(), engine.config.batch_size),
            )
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => {
                metrics::counter!("parley_lease_refused_claims_total").increment(1);
                tracing::warn!(phone_number_id = %pn, token = state.lease.fence.token, "the database refused a claim under a lease this node no longer holds; the loop stops");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, phone_number_id = %pn, "claim failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(engine.config.poll_interval) => continue,
                }
            }
        };
        if claimed.is_empty() {
            engine.progress.sender_pass_done();
            let next = engine.store.next_due_at(&pn).await.ok().flatten();
            let wait = next.map_or(poll, |t| (t - now).clamp(1, poll));
            let woken = parley_store::wakeups::wait_for(
                &mut queued,
                |w| matches!(w, parley_store::Wakeup::Queued(n) if n.is_empty() || n == pn.as_str()),
            );
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = woken => {}
                _ = state.lane_freed.notified() => {}
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
        if let Some(left) = send_round(&state, &token, claimed, &accepted_tx, &shutdown).await {
            stragglers.push(left);
        }
        engine.progress.sender_pass_done();
        engine.progress_changed(None);
    }
    // Every send of this loop has ended before it hands its lease on or stops recording.
    for mut set in stragglers {
        while let Some(done) = set.join_next().await {
            report_send_task(done);
        }
    }
    // A later loop under this lease (the number's throughput changed) waits until this one's
    // sends are out of every window (every round's sends have ended by now).
    if let Some(at) = state.limiter.quiet_at() {
        state.lease.quiet_from(at.into_std());
    }
    // Every acceptance of this loop is written before it reports stopped.
    drop(accepted_tx);
    let _ = recorder.await;
    tracing::info!(phone_number_id = %pn, "sender loop stopped");
}

fn request_body(m: &MessageRecord) -> Outbound<'_> {
    let callback = Some(m.id.as_str());
    match &m.content {
        MessageContent::Template { template } => template_message(
            &m.to_phone,
            template,
            m.reply_to.as_ref().map(Wamid::as_str),
            callback,
        ),
        MessageContent::Text { body, preview_url } => text_message(
            &m.to_phone,
            body,
            *preview_url,
            m.reply_to.as_ref().map(Wamid::as_str),
            callback,
        ),
        MessageContent::Media {
            media_type,
            id,
            link,
            caption,
            filename,
            ..
        } => media_message(
            &m.to_phone,
            media_type,
            id.as_deref(),
            link.as_deref(),
            caption.as_deref(),
            filename.as_deref(),
            m.reply_to.as_ref().map(Wamid::as_str),
            callback,
        ),
        MessageContent::Reaction { message_id, emoji } => {
            reaction_message(&m.to_phone, message_id, emoji, callback)
        }
    }
}

/// A send Meta accepted, on its way to the recorder.
struct Accepted {
    record: Acceptance,
    /// A single send: the next message of its lane waits for this acceptance to be written.
    in_lane: bool,
}

/// The most acceptances written in one transaction.
const RECORD_BATCH: usize = 1_000;
/// How long the first acceptance of a batch waits for others (not the send: Meta has it).
/// Each acceptance adds a wamid to a unique index in no order, so the pages a transaction
/// dirties grow with the batch far slower than the rows: at 5,000 mps, 200 ms gathers ~1,000
/// acceptances (WAL per acceptance ~2.8 KB, against ~4.6 KB for the ~250 of 50 ms). A status
/// that comes first is not lost: it finds its message by our id in the callback data.
const RECORD_GATHER: Duration = Duration::from_millis(200);

/// Writes the sends Meta accepted, as many per transaction as arrive within
/// `RECORD_GATHER` of the first. A write that fails
/// is tried again: the rows stay `sending` under their lease meanwhile, so nothing is sent
/// twice, and if Parley stops before it succeeds the crash-recovery pass settles them (the
/// status webhooks carry our message ids).
async fn record_acceptances(
    engine: Engine,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
    lane_freed: Arc<tokio::sync::Notify>,
) {
    let mut got = Vec::with_capacity(RECORD_BATCH);
    let mut buf = Vec::with_capacity(RECORD_BATCH);
    while rx.recv_many(&mut got, RECORD_BATCH).await > 0 {
        // Let a round's answers gather: one transaction for many sends costs about what one
        // costs for a single send.
        if got.len() < RECORD_BATCH {
            tokio::time::sleep(RECORD_GATHER).await;
            while got.len() < RECORD_BATCH {
                match rx.try_recv() {
                    Ok(a) => got.push(a),
                    Err(_) => break,
                }
            }
        }
        let frees_lane = got.iter().any(|a| a.in_lane);
        buf.extend(got.drain(..).map(|a| a.record));
        let mut delay = Duration::from_millis(100);
        loop {
            match engine.store.record_acceptances(&buf).await {
                Ok(missing) => {
                    for id in missing {
                        tracing::error!(message_id = %id, "Meta accepted a send whose message is gone");
                    }
                    engine.progress_changed(None);
                    if frees_lane {
                        lane_freed.notify_one();
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, count = buf.len(), "could not record accepted sends; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        buf.clear();
    }
}

/// How long a round waits for its last sends' answers before the next round is claimed: Meta
/// answers a send in well under a second, and one it holds (up to the client's 30 s timeout)
/// would otherwise hold every other message of the number back until it times out. The
/// sends still out keep their message `sending` (so their lanes wait) and their share of
/// `concurrency`; the loop collects them.
const STRAGGLER_WAIT: Duration = Duration::from_secs(2);

/// A send task's end: one that panicked is logged (its message stays `sending` under the
/// lease and is settled by the crash-recovery pass).
fn report_send_task(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a send task panicked");
    }
}

/// One claimed round: each message outside its send window waits for the opening; the
/// templates pass the quota gate together (one transaction); then the sends go out paced by
/// the number's limiter, up to `concurrency` in flight, each in a task of its own. When Meta
/// throttles the number (or refuses its credentials) during the round, the sends not yet gone
/// wait out the pause, or go back to the queue if it outlasts a quarter of the lease or Parley
/// is stopping. Returns the sends still waiting for Meta's answer [`STRAGGLER_WAIT`] after the
/// last one went, if any.
async fn send_round(
    state: &Arc<NumberState>,
    token: &Arc<String>,
    claimed: Vec<MessageRecord>,
    accepted: &tokio::sync::mpsc::UnboundedSender<Accepted>,
    shutdown: &CancellationToken,
) -> Option<tokio::task::JoinSet<()>> {
    let engine = &state.engine;
    let now = engine.now();
    let claimed = skip_opted_out(state, claimed, now).await;
    let mut ready = Vec::with_capacity(claimed.len());
    for m in claimed {
        // Outside the recipient's send window (it may have closed since planning, or a quota
        // wait ended at night): wait for the next opening, before taking a quota slot.
        if let Some(at) = m
            .send_window
            .as_deref()
            .and_then(|w| parley_domain::next_opening(w, now))
        {
            tracing::debug!(message_id = %m.id, until = at, "outside the send window; waiting");
            if let Err(e) = engine.store.wait_for_window(&m.id, at, now).await {
                tracing::error!(message_id = %m.id, error = %e, "could not park a message");
            }
            skip_if_cancelled(state, &m, now).await;
            continue;
        }
        ready.push(m);
    }
    let reaches = gate(state, &ready, now).await;
    let mut go = Vec::with_capacity(ready.len());
    for (m, reach) in ready.into_iter().zip(reaches) {
        let reach = match (&m.content, reach) {
            (MessageContent::Template { .. }, Some(r)) => Some(r),
            (MessageContent::Template { .. }, None) => {
                skip_if_cancelled(state, &m, now).await;
                continue;
            }
            // Free-form (text, media, reaction): no quota.
            _ => None,
        };
        if let Err(at) = state.pair_slot(&m.to_phone, now) {
            put_back(state, &m, reach.as_ref(), at, now).await;
            continue;
        }
        go.push((m, reach));
    }
    let routes = marketing_routes(state, &go).await;
    // One pass of the limiter per send, taken in order by this stream and only when a send
    // slot is free: a single waiter on the limiter, instead of every idle slot waking at each
    // tick to find that only a few may go.
    let limiter = &state.limiter;
    // The rows stay `sending` under their lease meanwhile: a round waits out a pause only
    // while that is far from the lease's end (and the crash pass's requeue after it).
    let lease = i64::try_from(engine.config.lease.as_millis()).unwrap_or(60_000);
    let hold_limit = now + lease / 4;
    let passes = futures::stream::iter(go).filter_map(|(m, reach)| async move {
        // The lease lapsed or was lost (the node may have been paused): nothing more goes
        // under it; the crash-recovery pass settles what stays `sending`.
        if !state.lease.live() {
            return None;
        }
        let slot = limiter.until_ready().await;
        if !state.lease.live() {
            slot.unused();
            return None;
        }
        // Looked at after the pass: a refusal may have come back while this send waited.
        if let Err(until) = wait_out_pause(state, hold_limit, shutdown).await {
            slot.unused();
            let now = state.engine.now();
            put_back(state, &m, reach.as_ref(), until.max(now), now).await;
            return None;
        }
        Some((m, reach, slot))
    });
    let mut passes = std::pin::pin!(passes);
    let mut sends = tokio::task::JoinSet::new();
    loop {
        // A send slot first, then the limiter's pass: the stream waits on the limiter only
        // when a send can go.
        let Ok(permit) = state.in_flight.clone().acquire_owned().await else {
            break;
        };
        let Some((m, reach, slot)) = passes.next().await else {
            break;
        };
        let (state, token, accepted) = (state.clone(), token.clone(), accepted.clone());
        let route = routes.get(&m.id).copied();
        sends.spawn(async move {
            send_one(&state, &token, m, reach, route, &accepted, slot).await;
            drop(permit);
        });
    }
    let all_answered = tokio::time::timeout(STRAGGLER_WAIT, async {
        while let Some(done) = sends.join_next().await {
            report_send_task(done);
        }
    })
    .await;
    match all_answered {
        Ok(()) => None,
        Err(_) => {
            tracing::warn!(
                phone_number_id = %state.number.phone_number_id,
                waiting = sends.len(),
                "Meta has not answered sends of the last round yet; the next round goes meanwhile"
            );
            Some(sends)
        }
    }
}

/// The send-time consent check: a marketing campaign's message whose contact opted out
/// after planning (a keyword, `user_preferences`, 131050 on another send) is skipped, not sent.
async fn skip_opted_out(
    state: &NumberState,
    claimed: Vec<MessageRecord>,
    now: i64,
) -> Vec<MessageRecord> {
    if !claimed
        .iter()
        .any(|m| matches!(m.content, MessageContent::Template { .. }))
    {
        return claimed;
    }
    let store = &state.engine.store;
    let opted = match store.opted_out_sending(&state.number.phone_number_id).await {
        Ok(ids) => ids,
        Err(e) => {
            // Not knowing is not sending: the round goes back to the queue for a moment.
            tracing::warn!(error = %e, "could not check marketing consent; retrying soon");
            for m in &claimed {
                let _ = store
                    .reschedule_message(&m.id, now + 1_000, None, now)
                    .await;
            }
            return Vec::new();
        }
    };
    if opted.is_empty() {
        return claimed;
    }
    let mut out = Vec::with_capacity(claimed.len());
    for m in claimed {
        if opted.contains(&m.id) {
            tracing::info!(message_id = %m.id, "the contact opted out of marketing; skipped");
            if let Err(e) = store.skip_opted_out(&m.id, now).await {
                tracing::error!(message_id = %m.id, error = %e, "could not skip a message");
            }
        } else {
            out.push(m);
        }
    }
    out
}

/// A claimed message that does not go this round: its quota slot is freed, it is queued
/// again, due at `at`, and skipped if its campaign was cancelled meanwhile.
async fn put_back(
    state: &NumberState,
    m: &MessageRecord,
    reach: Option<&(String, Reach)>,
    at: i64,
    now: i64,
) {
    release(state, m, reach).await;
    if let Err(e) = state
        .engine
        .store
        .reschedule_message(&m.id, at, None, now)
        .await
    {
        tracing::error!(message_id = %m.id, error = %e, "could not put a message back to the queue");
    }
    skip_if_cancelled(state, m, now).await;
}

/// Waits while the number is paused (Meta's 130429, or its credentials refused). `Err(until)`
/// when the pause lasts past `hold_limit` or Parley is stopping: the message goes back to the
/// queue, due at `until`.
async fn wait_out_pause(
    state: &NumberState,
    hold_limit: i64,
    shutdown: &CancellationToken,
) -> Result<(), i64> {
    let poll = i64::try_from(state.engine.config.poll_interval.as_millis()).unwrap_or(1000);
    loop {
        let paused = state.paused_until.load(Ordering::SeqCst);
        let now = state.engine.now();
        if paused <= now {
            return Ok(());
        }
        if paused > hold_limit || shutdown.is_cancelled() {
            return Err(paused);
        }
        let wait = Duration::from_millis(u64::try_from((paused - now).min(poll)).unwrap_or(0));
        tokio::select! {
            _ = shutdown.cancelled() => return Err(now),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The quota gate for the round's templates, in one transaction: per message, `Some(reach)`
/// (with the ledger key) to send, `None` when it now waits for a slot (or the gate failed and
/// it goes again in a second). Text messages (inside the service window) get `None` and are
/// not asked about.
async fn gate(
    state: &NumberState,
    round: &[MessageRecord],
    now: i64,
) -> Vec<Option<(String, Reach)>> {
    let engine = &state.engine;
    let (limit, key) = state.quota();
    // Messages are sent from their own application's numbers: one batch for the round.
    let idx: Vec<usize> = (0..round.len())
        .filter(|&i| matches!(round[i].content, MessageContent::Template { .. }))
        .collect();
    let mut out = vec![None; round.len()];
    if idx.is_empty() {
        return out;
    }
    let items: Vec<QuotaItem<'_>> = idx
        .iter()
        .map(|&i| QuotaItem {
            contact: quota_key(&round[i]),
            message_id: &round[i].id,
        })
        .collect();
    let answers = engine
        .store
        .reserve_quota_batch(&QuotaBatch {
            scope_key: &key,
            application_id: &state.number.application_id,
            limit,
            now,
            items: &items,
        })
        .await;
    match answers {
        Ok(answers) => {
            for (&i, a) in idx.iter().zip(answers) {
                let m = &round[i];
                match a.gate {
                    Gate::Go(reach) => out[i] = Some((key.clone(), reach)),
                    Gate::WaitUntil(at) => {
                        metrics::counter!("parley_messages_waiting_for_quota_total").increment(1);
                        tracing::debug!(message_id = %m.id, until = at, "no messaging-limit slot; waiting");
                        if let Err(e) = engine.store.wait_for_quota(&m.id, at, now).await {
                            tracing::error!(message_id = %m.id, error = %e, "could not park a message");
                        }
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "quota gate failed; retrying soon");
            for &i in &idx {
                let m = &round[i];
                if let Err(e) = engine
                    .store
                    .reschedule_message(&m.id, now + 1_000, None, now)
                    .await
                {
                    tracing::error!(message_id = %m.id, error = %e, "could not park a message");
                }
            }
        }
    }
    out
}

/// The round's sends that go through the Marketing Messages API (META_2026 §7): on a platform
/// set to use it, the template messages whose template is of category MARKETING, each with its
/// campaign's time-to-live. Everything else keeps `/messages`. A failed read sends the round
/// through `/messages` (as a platform without the setting would).
async fn marketing_routes(
    state: &NumberState,
    go: &[(MessageRecord, Option<(String, Reach)>)],
) -> std::collections::BTreeMap<parley_domain::MessageId, Option<i64>> {
    let store = &state.engine.store;
    let templates: Vec<parley_domain::MessageId> = go
        .iter()
        .filter(|(m, _)| matches!(m.content, MessageContent::Template { .. }))
        .map(|(m, _)| m.id.clone())
        .collect();
    if templates.is_empty() {
        return Default::default();
    }
    match store
        .platform_marketing_messages(&state.number.platform_id)
        .await
    {
        Ok(true) => {}
        Ok(false) => return Default::default(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the platform's Marketing Messages API setting; sending through /messages");
            return Default::default();
        }
    }
    store.marketing_routes(&templates).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "could not read which sends are marketing; sending through /messages");
        Default::default()
    })
}

/// What Parley adds to a 131063 answered by `/marketing_messages`: Meta would have sent it
/// through the Cloud API (`CLOUD_API_FALLBACK`), and refused because marketing is off there
/// while the WABA's Marketing Messages API onboarding is not complete. Parley never sends it
/// to `/messages` itself: Meta would refuse it there too.
const MARKETING_FALLBACK_REFUSED: &str = "sent through the Marketing Messages API: Meta refused to fall back to the Cloud API because the WABA's Marketing Messages API onboarding is not complete (terms of service unsigned) and marketing is off on the Cloud API. Finish the onboarding in WhatsApp Manager, or turn marketing back on for the Cloud API, then resume";

async fn send_one(
    state: &NumberState,
    token: &str,
    m: MessageRecord,
    reach: Option<(String, Reach)>,
    marketing_route: Option<Option<i64>>,
    accepted: &tokio::sync::mpsc::UnboundedSender<Accepted>,
    slot: crate::pacer::Slot,
) {
    let engine = &state.engine;
    let body = request_body(&m);
    // Looked at right before the call: after a pause past the lease, nothing goes.
    if !state.lease.live() {
        slot.unused();
        metrics::counter!("parley_sends_stopped_by_lease_total").increment(1);
        return;
    }
    let phone = state.number.phone_number_id.as_str();
    let fence = state.lease.fence.token;
    let result = match marketing_route {
        Some(ttl) => {
            let body = parley_meta::marketing_message_body(&body, ttl);
            engine
                .graph
                .send_marketing_message(token, phone, &body, Some(fence))
                .await
        }
        None => {
            engine
                .graph
                .send_message_fenced(token, phone, &body, fence)
                .await
        }
    };
    // The answer is back: the send's slot starts its hold (`pacer.rs`).
    drop(slot);
    let now = engine.now();
    let outcome = match result {
        // A wamid Meta sent that does not parse (empty, oversized) counts as none.
        Ok(resp) => match resp.wamid().and_then(|w| Wamid::parse(w).ok()) {
            Some(wamid) => {
                metrics::counter!("parley_messages_accepted_total").increment(1);
                // Held for quality assessment (pacing): noted before the acceptance is queued
                // for writing, so crash recovery never sends it again (META_2026 §6.3).
                if let Some(status) = resp
                    .messages
                    .first()
                    .and_then(|m| m.message_status.as_deref())
                    .filter(|s| *s != "accepted")
                {
                    metrics::counter!("parley_messages_held_by_meta_total").increment(1);
                    if let Err(e) = engine.store.mark_meta_status(&m.id, status).await {
                        tracing::error!(message_id = %m.id, error = %e, "could not note Meta's message status");
                    }
                }
                // Which API sent it, kept per wamid as Meta advises (§7); written before the
                // acceptance so a status that finds the message finds it too.
                if marketing_route.is_some()
                    && let Err(e) = engine
                        .store
                        .mark_sent_via(&m.id, parley_store::marketing::SENT_VIA_MARKETING_MESSAGES)
                        .await
                {
                    tracing::error!(message_id = %m.id, error = %e, "could not note that a send went through the Marketing Messages API");
                }
                state.pair_sent(&m.to_phone, now);
                let quota = reach.and_then(|(key, r)| {
                    (r != Reach::InServiceWindow).then(|| QuotaConfirm {
                        scope_key: key,
                        contact: quota_key(&m).to_owned(),
                    })
                });
                let record = Acceptance {
                    id: m.id.clone(),
                    wamid,
                    at: now,
                    quota,
                };
                let record = Accepted {
                    record,
                    in_lane: m.lane_seq.is_some(),
                };
                if accepted.send(record).is_err() {
                    tracing::error!(message_id = %m.id, "the acceptance recorder stopped; the crash-recovery pass will settle this message");
                }
                return;
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
            let mut text = error.description();
            if marketing_route.is_some() && code == 131063 {
                text = format!("{text} ({MARKETING_FALLBACK_REFUSED})");
            }
            metrics::counter!("parley_meta_errors_total", "code" => code.to_string()).increment(1);
            tracing::info!(message_id = %m.id, code, error = %text, "Meta refused a send");
            // Meta refused it: no conversation was opened, the slot is free again.
            release(state, &m, reach.as_ref()).await;
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
    skip_if_cancelled(state, &m, now).await;
}

/// A message claimed before its campaign was cancelled and then put back in the queue (a
/// retry, a quota wait, pair spacing) would wait there forever: the cancel skipped only
/// the messages queued at that moment. Called after the message went back, so a cancel
/// that comes later finds it queued and one that came earlier is seen here.
async fn skip_if_cancelled(state: &NumberState, m: &MessageRecord, now: i64) {
    let store = &state.engine.store;
    let Ok(Some(campaign)) = store.message_campaign(&m.id).await else {
        return;
    };
    let cancelled = matches!(
        store.campaign(&m.application_id, &campaign).await,
        Ok(Some(c)) if c.state == parley_domain::CampaignState::Cancelled
    );
    if cancelled && let Err(e) = store.cancel_campaign_messages(&campaign, now).await {
        tracing::warn!(campaign_id = %campaign, error = %e, "could not skip the messages of a cancelled campaign");
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
            // Meta's per-user marketing cap (131049): not before 24 h, a few times at most.
            let delay = i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
            let again = store
                .reschedule_capped(
                    &m.id,
                    now + delay,
                    (code, text),
                    parley_domain::consent::MARKETING_CAP_RESCHEDULES,
                    now,
                )
                .await?;
            if again {
                metrics::counter!("parley_messages_capped_by_meta_total").increment(1);
                Ok(())
            } else {
                metrics::counter!("parley_messages_failed_total").increment(1);
                store.fail_message(&m.id, code, text, now).await
            }
        }
        ErrorClass::MarketingOptOut => {
            metrics::counter!("parley_messages_failed_total").increment(1);
            store.fail_message(&m.id, code, text, now).await?;
            state
                .engine
                .set_marketing_consent(
                    &m.application_id,
                    &m.to_phone,
                    parley_domain::Subscription::OptedOut,
                    crate::consent::SOURCE_META,
                    Some(format!("131050 on message {}", m.id)),
                )
                .await
        }
        ErrorClass::MarketingDisabled => {
            crate::consent::marketing_disabled(
                &state.engine,
                &state.number.phone_number_id,
                code,
                text,
                now,
            )
            .await?;
            if store.message_campaign(&m.id).await?.is_some() {
                // The campaign is paused: the message waits with the others for a resume.
                store
                    .reschedule_message(&m.id, crate::campaigns::HELD, Some((code, text)), now)
                    .await
            } else {
                metrics::counter!("parley_messages_failed_total").increment(1);
                let text = crate::consent::pause_reason(code, text);
                store.fail_message(&m.id, code, &text, now).await
            }
        }
        ErrorClass::PermanentRecipient => {
            metrics::counter!("parley_messages_failed_total").increment(1);
            store.fail_message(&m.id, code, text, now).await
        }
        ErrorClass::BsuidUnsupported => {
            metrics::counter!("parley_messages_failed_total").increment(1);
            let explained = format!("{text}: {}", parley_domain::BSUID_UNSUPPORTED_EXPLANATION);
            store.fail_message(&m.id, code, &explained, now).await
        }
        ErrorClass::PermanentTemplate => {
            metrics::counter!("parley_messages_failed_total").increment(1);
            store.fail_message(&m.id, code, text, now).await?;
            // Every other message of the campaign would fail the same way: pause it.
            if let Some(campaign) = store.message_campaign(&m.id).await? {
                let reason = crate::consent::pause_reason(code, text);
                if state.engine.pause(&campaign, &reason, now).await? {
                    tracing::warn!(campaign_id = %campaign, code, "campaign paused by a template error");
                }
            }
            Ok(())
        }
        ErrorClass::StopNumber => {
            // Auth or account trouble: nothing this number sends can succeed until a person
            // acts. Keep the message (nothing accepted is lost) and pause the number.
            tracing::error!(phone_number_id = %state.number.phone_number_id, code, error = %text, "Meta refused the number's credentials or account; pausing its sends");
            let pause = 5 * 60_000;
            state.paused_until.fetch_max(now + pause, Ordering::SeqCst);
            let reason =
                format!("Meta refused the platform's credentials or account: (#{code}) {text}");
            pause_platform_campaigns(state, code, &reason, now).await?;
            store
                .reschedule_message(&m.id, now + pause, Some((code, text)), now)
                .await
        }
        ErrorClass::MessagingLimit => {
            // The account's messaging limit at Meta is reached: no send of this number can go
            // for a while, whatever its recipient. The message stays queued (it did nothing
            // wrong), the number holds its sends, its campaigns pause with the reason.
            tracing::warn!(phone_number_id = %state.number.phone_number_id, code, error = %text, "Meta's messaging limit reached; holding the number's sends");
            let hold =
                i64::try_from(parley_domain::MESSAGING_LIMIT_HOLD.as_millis()).unwrap_or(3_600_000);
            state.paused_until.fetch_max(now + hold, Ordering::SeqCst);
            let reason = format!(
                "Meta's messaging limit is reached for this account (quota at Meta): (#{code}) {text}. The rest stays queued; resume when Meta lifts the limit."
            );
            pause_platform_campaigns(state, code, &reason, now).await?;
            store
                .reschedule_message(&m.id, now + hold, Some((code, text)), now)
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

/// Who the messaging-limit ledger counts for a message: the person (its contact's id), so
/// one customer known first by BSUID and later by phone takes one slot in 24 h, not two;
/// the address for a message without a contact.
fn quota_key(m: &MessageRecord) -> &str {
    m.contact_id
        .as_ref()
        .map_or(m.to_phone.as_str(), |c| c.as_str())
}

/// Frees the quota slot a message reserved, when its send did not go.
async fn release(state: &NumberState, m: &MessageRecord, reach: Option<&(String, Reach)>) {
    if let Some((key, Reach::NewContact)) = reach
        && let Err(e) = state
            .engine
            .store
            .release_quota(key, quota_key(m), &m.id)
            .await
    {
        tracing::warn!(message_id = %m.id, error = %e, "could not release a quota slot");
    }
}

/// Auth or account trouble stops every number of the platform: pause their running
/// campaigns with the reason and note it on the platform, so a person sees what to fix.
async fn pause_platform_campaigns(
    state: &NumberState,
    code: i64,
    reason: &str,
    now: i64,
) -> parley_store::Result<()> {
    let store = &state.engine.store;
    let platform = &state.number.platform_id;
    let numbers: Vec<PhoneNumberId> = store
        .platform_numbers(platform)
        .await?
        .into_iter()
        .map(|n| n.number.phone_number_id)
        .collect();
    for campaign in store
        .pause_campaigns_of_numbers(&numbers, reason, now)
        .await?
    {
        store
            .hold_campaign_messages(&campaign, crate::campaigns::HELD)
            .await?;
        tracing::warn!(campaign_id = %campaign, code, "campaign paused: the platform needs attention");
    }
    if let Some(p) = store
        .platform(&state.number.application_id, platform)
        .await?
    {
        store
            .set_platform_status(platform, &p.status, Some(reason), now)
            .await?;
    }
    Ok(())
}
