//! The webhook processor: applies stored webhook events in order, idempotently. Statuses merge
//! into messages through the monotonic lattice (duplicates and any order end the same);
//! inbound messages create or refresh the contact and its 24 h window. Fields Parley does not
//! act on yet stay stored as received, never dropped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use parley_domain::{MessageId, PhoneNumberId, WabaId, Wamid};
use parley_meta::{InboundMessage, MessagesValue, WebhookChange, WebhookPayload};
use parley_store::consent::PricingUpdate;
use parley_store::{InboundRecord, StatusChange, WebhookEventRecord};
use tokio_util::sync::CancellationToken;

use crate::Engine;
use crate::contact_identity::Learning;

/// Events read per round (fewer when their bodies pass `PENDING_BODY_BUDGET`): under load each
/// round's statuses, pricing and finish are one write each, however many events it holds.
const BATCH: u32 = 1_000;

/// A round starts at most this long after the previous one started: under a steady trickle
/// (3,000 deliveries a second) each round gathers what arrived meanwhile instead of paying a
/// round's fixed writes for a handful of events. A lone event after a quiet spell is applied
/// at once.
const ROUND_SPACING: Duration = Duration::from_millis(20);

/// The longest the processor gives way before a round: under a sustained flood it still
/// applies a round at least this often, and catches up once the flood ends.
const MAX_GIVE_WAY: Duration = Duration::from_millis(500);

/// The longest the merge gives way to the status projection catching up: the projection
/// applies a burst first (~5 µs a status, the merge ~15), and the merge still runs a round at
/// least this often (inbound messages, template and number updates wait in the same queue).
const MAX_GIVE_WAY_TO_PROJECTION: Duration = Duration::from_secs(2);

/// How often the processor looks again at a busy intake.
const GIVE_WAY_STEP: Duration = Duration::from_millis(5);

/// Rounds in a row that may take their events from the previous round's read-ahead; the one
/// after reads afresh (`processed_at IS NULL` from the start), so an event committed late with
/// an id below the read-ahead's cursor (PostgreSQL, several intake nodes) waits a few rounds
/// at most.
const MAX_READ_AHEAD_CHAIN: u32 = 8;

/// Runs until `shutdown`, woken by the intake after each stored event.
pub async fn run(engine: Engine, shutdown: CancellationToken) {
    let mut ahead: Option<ReadAhead> = None;
    let mut chained = 0;
    loop {
        let notified = engine.webhook_wake.notified();
        // One node applies the stored events: the one holding the job's lease (applying is
        // idempotent, so a paused holder that wakes up does no harm, only work twice).
        if engine.leases.holds(crate::leases::JOB_WEBHOOKS) {
            if give_way_to_intake(&engine, &shutdown).await {
                break;
            }
            let started = tokio::time::Instant::now();
            let taken = ahead.take();
            chained = if taken.is_some() { chained + 1 } else { 0 };
            match round(&engine, taken, chained < MAX_READ_AHEAD_CHAIN).await {
                Ok((n, next)) if n > 0 => {
                    ahead = next;
                    // More may have arrived meanwhile: the next round gathers it.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep_until(started + ROUND_SPACING) => {}
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "webhook processing paused by a storage error")
                }
            }
        } else {
            ahead = None;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = notified => {}
            _ = tokio::time::sleep(engine.config.poll_interval.max(Duration::from_secs(1))) => {}
        }
    }
}

/// Runs until `shutdown`, while the merge is behind: copies the statuses of each stored
/// delivery into `status_log` (`Store::project_statuses`), where every reader of their
/// messages sees them, ahead of the processor's merge ([`run`]), which also writes their
/// counters, events, conversations and consent rules and costs several times more a status.
/// A status is thus on its message a few µs of work after it is stored, however far behind
/// the merge is after a burst. On the node holding the processor's lease only.
pub async fn run_projection(engine: Engine, shutdown: CancellationToken) {
    let mut ahead: Option<Ahead<Option<Projection>>> = None;
    let mut after = i64::MIN;
    let mut chained = 0;
    loop {
        let notified = engine.webhook_wake.notified();
        let mut failed = false;
        // Only while the merge is behind (its last read was full: a burst): when it keeps
        // up, a status is merged within a round or two, and projecting it too would only
        // add writes beside the intake's commits.
        if engine.merge_behind.load(Ordering::Relaxed)
            && engine.leases.holds(crate::leases::JOB_WEBHOOKS)
        {
            // The intake first: acknowledging Meta's deliveries comes before reading them.
            if give_way(&shutdown, MAX_GIVE_WAY, || engine.intake_busy()).await {
                break;
            }
            let started = tokio::time::Instant::now();
            let read = match ahead.take() {
                Some(a) => match a.take().await {
                    Some(read) => Ok(read),
                    None => read_projection(&engine, after).await,
                },
                None => read_projection(&engine, after).await,
            };
            match project(&engine, read, chained < MAX_READ_AHEAD_CHAIN).await {
                Ok(Some(r)) if r.full => {
                    // Like the processor's read-ahead, a few reads in a row after the last id.
                    chained += 1;
                    after = r.last;
                    ahead = r.next;
                    if ahead.is_none() {
                        chained = 0;
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                // A round that was not full took what had arrived: the next gathers what
                // arrives meanwhile (as the merge's rounds), so a steady trickle is not a
                // write transaction per intake commit. It reads on from the last id: the
                // deliveries below it are projected or merged, and walking them again at
                // each round would cost as much as the merge's backlog (an event committed
                // late below the cursor, on PostgreSQL, is left to the merge).
                Ok(r) => {
                    if let Some(r) = r {
                        after = r.last;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep_until(started + ROUND_SPACING) => {}
                    }
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(error = %e, "status projection paused by a storage error")
                }
            }
        }
        engine.projection_behind.store(false, Ordering::Relaxed);
        ahead = None;
        chained = 0;
        if failed || !engine.merge_behind.load(Ordering::Relaxed) {
            // The merge caught up (or a storage error): the next burst is read from the start.
            after = i64::MIN;
        }
        // The merge falls behind without an intake commit to wake this (its rounds read
        // what is stored): look again each round's spacing; after a storage error, as
        // seldom as the merge does (one warning a poll, not fifty a second).
        let wait = match failed {
            true => engine.config.poll_interval.max(Duration::from_secs(1)),
            false => ROUND_SPACING,
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = notified, if !failed => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Events read and their statuses parsed, ready to append to `status_log`.
struct Projection {
    ids: Vec<i64>,
    statuses: Vec<(i64, StatusChange)>,
    /// The read was full: more are likely waiting.
    full: bool,
    read: Duration,
    parse: Duration,
}

/// The oldest events not projected yet (after `after`), their statuses parsed; `None` when
/// there are none.
async fn read_projection(engine: &Engine, after: i64) -> parley_store::Result<Option<Projection>> {
    let t0 = std::time::Instant::now();
    let events = engine
        .store
        .unprojected_webhook_events_after(after, BATCH)
        .await?;
    if events.is_empty() {
        return Ok(None);
    }
    let read = t0.elapsed();
    let mut ids = Vec::with_capacity(events.len());
    let mut statuses = Vec::new();
    // What the merge keeps of a value besides its statuses is not the projection's.
    let (mut pricing, mut notes) = (Vec::new(), Vec::new());
    let mut collected = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if i > 0 && i % PARSE_SLICE == 0 {
            tokio::task::yield_now().await;
        }
        ids.push(event.id);
        let Ok(changes) = prepare(event).changes else {
            continue;
        };
        for (_, change) in changes {
            if let WebhookChange::Messages(value) = change {
                collect_statuses(engine, &value, &mut collected, &mut pricing, &mut notes);
                statuses.extend(collected.drain(..).map(|c| (event.id, c)));
                pricing.clear();
                notes.clear();
            }
        }
    }
    Ok(Some(Projection {
        ids,
        statuses,
        full: read_was_full(&events),
        read,
        parse: t0.elapsed() - read,
    }))
}

/// What a projection round did.
struct Projected {
    /// The last event read.
    last: i64,
    /// The read was full: more are likely waiting.
    full: bool,
    /// The next read, under way.
    next: Option<Ahead<Option<Projection>>>,
}

/// Appends a read's statuses (one transaction while the intake is idle, several short ones
/// while it receives). With `read_ahead` and a full read, the next events are read and parsed
/// meanwhile, on another task (the parse and SQLite's writes then run side by side), and
/// handed back; `None` when the read had nothing.
async fn project(
    engine: &Engine,
    read: parley_store::Result<Option<Projection>>,
    read_ahead: bool,
) -> parley_store::Result<Option<Projected>> {
    let Some(p) = read? else {
        return Ok(None);
    };
    let last = p.ids.last().copied().unwrap_or(i64::MIN);
    let next = (p.full && read_ahead).then(|| {
        let engine = engine.clone();
        Ahead(tokio::spawn(
            async move { read_projection(&engine, last).await },
        ))
    });
    let t0 = std::time::Instant::now();
    // While the intake receives, shorter transactions (a few milliseconds of SQLite's one
    // writer, which the intake's group commit waits for).
    let per_write = if engine.intake_active() {
        SHARED_PROJECTION
    } else {
        usize::MAX
    };
    let (mut from, mut s) = (0, 0);
    while from < p.ids.len() {
        let mut to = from;
        let mut e = s;
        while to < p.ids.len() && (to == from || e - s < per_write) {
            while e < p.statuses.len() && p.statuses[e].0 == p.ids[to] {
                e += 1;
            }
            to += 1;
        }
        engine
            .store
            .project_statuses(&p.ids[from..to], &p.statuses[s..e])
            .await?;
        (from, s) = (to, e);
    }
    metrics::counter!("parley_statuses_projected_total").increment(p.statuses.len() as u64);
    if !p.statuses.is_empty() {
        // Open inbox threads reload (their reads merge the log in) now, not after the merge.
        // A projection round is a burst's: the merge's own announce would be "every
        // conversation" too.
        engine.every_conversation_touched();
    }
    tracing::debug!(
        events = p.ids.len(),
        statuses = p.statuses.len(),
        read_us = p.read.as_micros() as u64,
        parse_us = p.parse.as_micros() as u64,
        write_us = t0.elapsed().as_micros() as u64,
        "status projection round"
    );
    // The merge gives way only to a projection that is catching up on statuses: a burst of
    // inbound messages or account updates (nothing to project) is the merge's alone.
    engine
        .projection_behind
        .store(p.full && !p.statuses.is_empty(), Ordering::Relaxed);
    Ok(Some(Projected {
        last,
        full: p.full,
        next,
    }))
}

impl Engine {
    /// Whether the status projection's last read was full (it is catching up).
    pub(crate) fn projection_behind(&self) -> bool {
        self.projection_behind.load(Ordering::Relaxed)
    }
}

/// Waits (at most [`MAX_GIVE_WAY`]) while this node's intake is busy (its commits gather many
/// deliveries: callers queue behind it), so a round's parsing and writes on SQLite's one
/// writer do not slow the acknowledgements; then (at most [`MAX_GIVE_WAY_TO_PROJECTION`])
/// while the status projection is behind: a status is on its message once projected, and
/// merging it can come after. True when `shutdown` came meanwhile.
async fn give_way_to_intake(engine: &Engine, shutdown: &CancellationToken) -> bool {
    give_way(shutdown, MAX_GIVE_WAY, || engine.intake_busy()).await
        || give_way(shutdown, MAX_GIVE_WAY_TO_PROJECTION, || {
            engine.projection_behind()
        })
        .await
}

/// Waits while `busy` holds, `most` at most; true when `shutdown` came meanwhile.
async fn give_way(shutdown: &CancellationToken, most: Duration, busy: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + most;
    while busy() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = shutdown.cancelled() => return true,
            _ = tokio::time::sleep(GIVE_WAY_STEP) => {}
        }
    }
    false
}

/// Statuses merged per transaction (and events marked processed per statement) while the
/// intake is quiet: catching up, large transactions are the cheapest per status.
const STATUS_CHUNK: usize = 1_000;

/// The same while the intake receives: each statement holds SQLite's one writer for a few
/// milliseconds at most, so the intake's group commit (which waits for the writer) keeps
/// its latency.
const SHARED_CHUNK: usize = 100;

/// Statuses projected per transaction while the intake receives (~5 ms of the writer).
const SHARED_PROJECTION: usize = 1_000;

/// Events parsed between two yields to the runtime: a round's parsing never holds a worker
/// thread (and the requests queued on it) for long.
const PARSE_SLICE: usize = 16;

/// An event read and parsed, ready to apply: the changes of its envelope, typed, each with
/// its entry's id; or why its body is not an envelope. Parsing touches nothing stored, so the
/// next round's events are read and parsed while this round writes ([`ReadAhead`]).
struct Prepared {
    id: i64,
    changes: Result<Vec<(String, WebhookChange)>, String>,
}

fn prepare(event: &WebhookEventRecord) -> Prepared {
    let changes = match serde_json::from_slice::<WebhookPayload>(&event.body) {
        Ok(payload) => Ok(payload
            .entry
            .iter()
            .flat_map(|entry| entry.changes.iter().map(|c| (entry.id.clone(), c.parse())))
            .collect()),
        Err(e) => Err(format!("not a webhook envelope: {e}")),
    };
    Prepared {
        id: event.id,
        changes,
    }
}

/// A round's events, parsed; `full` when the read stopped at the batch's size or near the
/// bodies' budget (more are likely waiting).
struct Batch {
    events: Vec<Prepared>,
    full: bool,
}

/// Whether a read of pending events stopped at the batch's size or near the bodies' budget
/// (more are likely waiting).
fn read_was_full(events: &[WebhookEventRecord]) -> bool {
    let bytes: usize = events.iter().map(|e| e.body.len()).sum();
    events.len() >= BATCH as usize
        || bytes.saturating_mul(2)
            >= usize::try_from(parley_store::PENDING_BODY_BUDGET).unwrap_or(0)
}

/// Reads the oldest pending events (those after `after` when given) and parses them,
/// yielding to the runtime every [`PARSE_SLICE`] events.
async fn read_batch(engine: &Engine, after: Option<i64>) -> parley_store::Result<Batch> {
    let events = match after {
        None => engine.store.pending_webhook_events(BATCH).await?,
        Some(id) => engine.store.pending_webhook_events_after(id, BATCH).await?,
    };
    let full = read_was_full(&events);
    let mut prepared = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        if i > 0 && i % PARSE_SLICE == 0 {
            tokio::task::yield_now().await;
        }
        prepared.push(prepare(event));
    }
    Ok(Batch {
        events: prepared,
        full,
    })
}

/// The next round's events, read (on a read connection) and parsed on another task while
/// this round's statuses are written (the processor's [`ReadAhead`], the projection's
/// [`Projection`]): when catching up, SQLite's thread and the parsing then run side by side
/// instead of in turn. Only reads: the events stay pending until their own round marks them
/// processed, and a round applies them only after the previous round's writes (so
/// per-message and per-contact order are the events' order, as without it). Dropped (a
/// storage error, the lease lost, shutdown), the task is aborted and the events are read
/// again.
struct Ahead<T: Send + 'static>(tokio::task::JoinHandle<parley_store::Result<T>>);

type ReadAhead = Ahead<Batch>;

impl<T: Send + 'static> Drop for Ahead<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ReadAhead {
    fn start(engine: &Engine, after: i64) -> ReadAhead {
        let engine = engine.clone();
        Ahead(tokio::spawn(async move {
            read_batch(&engine, Some(after)).await
        }))
    }
}

impl<T: Send + 'static> Ahead<T> {
    /// What it read; `None` when the task failed (the caller then reads afresh).
    async fn take(mut self) -> Option<T> {
        match (&mut self.0).await {
            Ok(Ok(batch)) => Some(batch),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "read-ahead of webhook events failed; reading again");
                None
            }
            Err(_) => None,
        }
    }
}

/// Applies up to one batch of pending events; returns how many were handled. The events'
/// statuses are merged together in a few transactions (the lattice makes their order
/// irrelevant), the rest of each event in order; the events are then marked processed in one
/// statement. A storage error leaves every event of the batch pending, to be applied again
/// (each part is idempotent).
pub async fn process_pending(engine: &Engine) -> parley_store::Result<usize> {
    Ok(round(engine, None, false).await?.0)
}

/// One round: its events from `ahead` (the previous round's read-ahead) or read now; with
/// `read_ahead` and a full batch, the next round's events are read and parsed while this
/// round writes, and handed back.
async fn round(
    engine: &Engine,
    ahead: Option<ReadAhead>,
    read_ahead: bool,
) -> parley_store::Result<(usize, Option<ReadAhead>)> {
    let t0 = std::time::Instant::now();
    let batch = match ahead {
        Some(a) => match a.take().await {
            Some(batch) => batch,
            None => read_batch(engine, None).await?,
        },
        None => read_batch(engine, None).await?,
    };
    let events = batch.events;
    let n = events.len();
    engine.merge_behind.store(batch.full, Ordering::Relaxed);
    let t_read = t0.elapsed();
    let mut statuses = Vec::new();
    let mut pricing = Vec::new();
    let mut learning = Learning::default();
    let mut done = Vec::with_capacity(n);
    for (i, event) in events.into_iter().enumerate() {
        if i > 0 && i % PARSE_SLICE == 0 {
            tokio::task::yield_now().await;
        }
        learning.event = i;
        let note = apply_event(
            engine,
            event.changes,
            &mut statuses,
            &mut pricing,
            &mut learning,
        )
        .await?;
        done.push((event.id, note));
    }
    let next = match done.last() {
        Some((last, _)) if read_ahead && batch.full => Some(ReadAhead::start(engine, *last)),
        _ => None,
    };
    let chunk_size = if engine.intake_active() {
        SHARED_CHUNK
    } else {
        STATUS_CHUNK
    };
    let t_parse = t0.elapsed();
    learning.flush(engine).await?;
    for (i, note) in std::mem::take(&mut learning.notes) {
        let kept = &mut done[i].1;
        *kept = Some(match kept.take() {
            Some(before) => format!("{before}; {note}"),
            None => note,
        });
    }
    let t_learn = t0.elapsed();
    for chunk in pricing.chunks(chunk_size) {
        engine.store.record_pricing(chunk).await?;
    }
    let t_pricing = t0.elapsed();
    crate::consent::before_statuses(engine, &statuses).await?;
    for chunk in statuses.chunks(chunk_size) {
        let matched = engine.store.apply_statuses(chunk).await?;
        crate::events::statuses_applied(engine, chunk, &matched).await?;
        statuses_touch_conversations(engine, &matched);
        let applied = matched.iter().filter(|m| m.is_some()).count();
        metrics::counter!("parley_statuses_applied_total").increment(applied as u64);
        tracing::debug!(statuses = chunk.len(), applied, "statuses applied");
    }
    crate::consent::after_statuses(engine, &statuses).await?;
    let t_statuses = t0.elapsed();
    if n > 0 {
        engine.progress_changed(None);
    }
    let now = engine.now();
    for chunk in done.chunks(chunk_size) {
        engine.store.finish_webhook_events(chunk, now).await?;
    }
    tracing::debug!(
        events = n,
        statuses = statuses.len(),
        read_us = t_read.as_micros() as u64,
        parse_us = (t_parse - t_read).as_micros() as u64,
        learn_us = (t_learn - t_parse).as_micros() as u64,
        pricing_us = (t_pricing - t_learn).as_micros() as u64,
        statuses_us = (t_statuses - t_pricing).as_micros() as u64,
        finish_us = (t0.elapsed() - t_statuses).as_micros() as u64,
        "webhook round"
    );
    Ok((n, next))
}

/// Returns a note for events that were kept but not (fully) understood; the event's
/// statuses are added to `statuses` for the caller to merge.
async fn apply_event(
    engine: &Engine,
    changes: Result<Vec<(String, WebhookChange)>, String>,
    statuses: &mut Vec<StatusChange>,
    pricing: &mut Vec<PricingUpdate>,
    learning: &mut Learning,
) -> parley_store::Result<Option<String>> {
    let changes = match changes {
        Ok(changes) => changes,
        Err(note) => return Ok(Some(note)),
    };
    let mut notes = Vec::new();
    for (entry_id, change) in changes {
        apply_change(
            engine, &entry_id, change, statuses, pricing, learning, &mut notes,
        )
        .await?;
    }
    Ok((!notes.is_empty()).then(|| notes.join("; ")))
}

/// One change, by its kind; `entry_id` is the entry's WABA (or, for `account_update`'s
/// partner events, the partner's portfolio).
async fn apply_change(
    engine: &Engine,
    entry_id: &str,
    change: WebhookChange,
    statuses: &mut Vec<StatusChange>,
    pricing: &mut Vec<PricingUpdate>,
    learning: &mut Learning,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    use crate::{onboarding as platform, templates};
    if !matches!(change, WebhookChange::Messages(_)) {
        learning.flush(engine).await?;
    }
    match change {
        WebhookChange::Messages(v) => {
            apply_messages(engine, &v, statuses, pricing, learning, notes).await
        }
        WebhookChange::TemplateStatus(v) => {
            templates::apply_status_webhook(engine, entry_id, &v, notes).await
        }
        WebhookChange::TemplateQuality(v) => {
            templates::apply_quality_webhook(engine, entry_id, &v, notes).await
        }
        WebhookChange::TemplateCategory(v) => {
            templates::apply_category_webhook(engine, entry_id, &v, notes).await
        }
        WebhookChange::TemplateComponents(v) => {
            templates::apply_components_webhook(engine, entry_id, &v, notes).await
        }
        WebhookChange::AccountReview(v) => {
            platform::apply_account_review(engine, entry_id, &v, notes).await
        }
        WebhookChange::AccountUpdate(v) => {
            if crate::coexistence::apply_offboarding(engine, entry_id, &v, notes).await? {
                return Ok(());
            }
            platform::apply_account_update(engine, entry_id, &v, notes).await
        }
        WebhookChange::History(v) => crate::coexistence::apply_history(engine, &v, notes).await,
        WebhookChange::StateSync(v) => {
            crate::coexistence::apply_state_sync(engine, &v, notes).await
        }
        WebhookChange::MessageEchoes(v) => {
            crate::coexistence::apply_echoes(engine, &v, notes).await
        }
        WebhookChange::PhoneNumberQuality(v) => {
            platform::apply_number_quality(engine, entry_id, &v, notes).await
        }
        WebhookChange::CapabilityUpdate(v) => {
            platform::apply_capability(engine, entry_id, &v, notes).await
        }
        WebhookChange::PhoneNumberName(v) => {
            platform::apply_number_name(engine, entry_id, &v, notes).await
        }
        WebhookChange::UserPreferences(v) => {
            crate::consent::apply_user_preferences(engine, &v, notes).await
        }
        WebhookChange::Unknown {
            field, error: None, ..
        } => {
            notes.push(format!("field `{field}` stored, not acted on yet"));
            Ok(())
        }
        WebhookChange::Unknown {
            field,
            error: Some(e),
            ..
        } => {
            notes.push(format!("{field} value not understood: {e}"));
            Ok(())
        }
    }
}

/// `messages`: statuses (and their pricing) go to `statuses` and `pricing` for the caller to
/// write with the whole batch's; inbound messages are recorded here.
async fn apply_messages(
    engine: &Engine,
    value: &MessagesValue,
    statuses: &mut Vec<StatusChange>,
    pricing: &mut Vec<PricingUpdate>,
    learning: &mut Learning,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    collect_statuses(engine, value, statuses, pricing, notes);
    if !value.statuses.is_empty() {
        crate::contact_identity::learn_from_statuses(engine, value, learning, notes).await?;
    }
    // Value-level errors (no message to hang them on) stay visible on the event.
    for e in &value.errors {
        notes.push(format!(
            "Meta reported error {}: {}",
            e.code,
            e.description()
        ));
    }
    if value.messages.is_empty() {
        return Ok(());
    }
    learning.flush(engine).await?;
    apply_inbound(engine, value, notes).await
}

fn collect_statuses(
    engine: &Engine,
    value: &MessagesValue,
    statuses: &mut Vec<StatusChange>,
    pricing: &mut Vec<PricingUpdate>,
    notes: &mut Vec<String>,
) {
    // The statuses of one delivery mostly carry the same pricing object, word for word: it is
    // parsed and written out once (~0.8 µs a status, `perf`, the webhook bench).
    let mut last_pricing: Option<(&str, Option<parley_store::StatusPricing>)> = None;
    for status in &value.statuses {
        let Some(state) = status.status.message_state() else {
            // Its pricing is still the message's.
            crate::consent::collect_pricing(status, pricing);
            notes.push(format!(
                "status `{}` for {} not understood",
                status.status.as_str(),
                status.id
            ));
            continue;
        };
        let at = status
            .unix_time()
            .map_or_else(|| engine.now(), |s| s.saturating_mul(1000));
        let wamid = match Wamid::parse(&status.id) {
            Ok(w) => w,
            Err(e) => {
                notes.push(format!("status `{}`: {e}", status.status.as_str()));
                continue;
            }
        };
        let error = status.errors.first().map(|e| (e.code, e.description()));
        let pricing = match status.pricing.as_deref().map(|p| p.get()) {
            None => None,
            Some(raw) => match &last_pricing {
                Some((seen, parsed)) if *seen == raw => parsed.clone(),
                _ => {
                    let parsed = crate::consent::status_pricing(status);
                    last_pricing = Some((raw, parsed.clone()));
                    parsed
                }
            },
        };
        statuses.push(StatusChange {
            wamid,
            message_id: status
                .biz_opaque_callback_data
                .as_deref()
                .and_then(|d| MessageId::parse(d).ok()),
            state,
            at,
            error,
            pricing,
        });
    }
}

/// Records the inbound messages of the number the value names, and applies opt-out keywords.
async fn apply_inbound(
    engine: &Engine,
    value: &MessagesValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let Some(pnid) = value
        .metadata
        .as_ref()
        .and_then(|m| m.phone_number_id.clone())
    else {
        notes.push("inbound message without metadata.phone_number_id".into());
        return Ok(());
    };
    // Not Meta's digits: no number of ours has it.
    let number = match PhoneNumberId::parse(&pnid) {
        Ok(id) => engine.store.phone_number(&id).await?,
        Err(_) => None,
    };
    let Some(number) = number else {
        notes.push(format!("inbound message for unknown number {pnid}"));
        return Ok(());
    };
    for msg in &value.messages {
        // An identity change re-points the contact first; the notice is then kept under the
        // identity it names now (the old one would make a new contact).
        let changed_to = match msg.system().filter(|c| c.is_identity_change()) {
            Some(change) => {
                match crate::contact_identity::apply_identity_change(
                    engine, &number, msg, &change, notes,
                )
                .await?
                {
                    Some(current) => Some(current),
                    None => continue,
                }
            }
            None => None,
        };
        let from = match changed_to {
            Some(current) => Some(current),
            None => crate::contact_identity::sender_identity(value, msg, notes),
        };
        let Some(from) = from else {
            notes.push(format!(
                "inbound {} has no sender (no `from`, no `from_user_id`)",
                msg.id
            ));
            continue;
        };
        let wamid = match Wamid::parse(&msg.id) {
            Ok(wamid) => wamid,
            Err(e) => {
                notes.push(format!("inbound {}: {e}", msg.id));
                continue;
            }
        };
        let Some(address) = from.address().map(str::to_owned) else {
            notes.push(format!("inbound {} has no sender", msg.id));
            continue;
        };
        let received_at = msg
            .timestamp
            .as_deref()
            .and_then(|t| t.parse::<i64>().ok())
            .map_or_else(|| engine.now(), |s| s.saturating_mul(1000));
        let body = msg.body();
        let record = InboundRecord {
            wamid,
            application_id: number.application_id.clone(),
            phone_number_id: number.phone_number_id.clone(),
            from_phone: address,
            from,
            kind: body.kind(),
            text: body.text(),
            body: serde_json::to_value(&body).unwrap_or_default(),
            refers_to: body.refers_to().map(str::to_owned),
            raw: serde_json::to_value(msg).unwrap_or_default(),
            received_at,
            media: crate::inbound::media_to_fetch(&body),
        };
        if record_inbound(engine, &record, msg).await? {
            crate::inbound::after_recorded(engine, &record, &body, notes).await?;
        }
        crate::contact_identity::apply_shared_phone(engine, &record, msg, notes).await?;
    }
    Ok(())
}

/// Stores one inbound message; the first time its wamid is seen, its opt-out keyword or
/// marketing opt-out button applies.
async fn record_inbound(
    engine: &Engine,
    record: &InboundRecord,
    msg: &InboundMessage,
) -> parley_store::Result<bool> {
    let fresh = engine.store.record_inbound(record).await?;
    crate::events::message_received(engine, record).await?;
    if !fresh {
        return Ok(false);
    }
    if let Some(contact) = engine
        .store
        .inbound_message(&record.application_id, record.wamid.as_str())
        .await?
        .and_then(|m| m.contact_id)
    {
        engine.conversation_touched(&record.application_id, &contact);
    }
    metrics::counter!("parley_inbound_messages_total").increment(1);
    let payload = msg
        .rest
        .get("button")
        .and_then(|b| b.get("payload"))
        .and_then(|p| p.as_str());
    crate::consent::apply_inbound_keyword(engine, record, payload).await?;
    Ok(true)
}

/// The platform holding a WABA: the live one (at most one: `platforms_live_waba`), else the
/// most recently created of those that disconnected it. One indexed read, whatever the number
/// of tenants.
pub(crate) async fn platform_by_waba(
    engine: &Engine,
    waba_id: &WabaId,
) -> parley_store::Result<Option<parley_store::PlatformRecord>> {
    let mut platforms = engine.store.platforms_by_waba(waba_id).await?;
    let live = platforms
        .iter()
        .position(|p| p.status != crate::onboarding::status::DISCONNECTED);
    Ok(match live {
        Some(i) => Some(platforms.swap_remove(i)),
        None => platforms.pop(),
    })
}

/// The conversations whose outbound messages got a status: announced to the inbox (the
/// merge read each message's application and contact: no second read).
fn statuses_touch_conversations(
    engine: &Engine,
    matched: &[Option<parley_store::events::MessageFacts>],
) {
    engine.conversations_touched(
        matched
            .iter()
            .flatten()
            .filter_map(|f| Some((&f.application_id, f.contact_id.as_ref()?))),
    );
}
