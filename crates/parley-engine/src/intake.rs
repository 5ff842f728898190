//! Webhook intake with group commit: every delivery whose signature was checked is handed to
//! one writer task over a bounded queue, and waits for the commit of the transaction that
//! holds it. The writer takes whatever is queued (up to a batch) as one transaction, so under
//! load many deliveries share one commit, and alone a delivery is committed at once (no timer).
//! Nothing is acknowledged before its commit; a full queue (by count or by bytes) is refused
//! with `intake_busy` (503 + `Retry-After`), so memory stays bounded and Meta retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parley_store::Store;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::{Clock, Engine, EngineError, ErrorKind};

/// The most deliveries in one transaction.
const MAX_BATCH: usize = 1_024;

/// A delivery waiting for its commit.
struct Pending {
    body: Bytes,
    /// Its share of the queue's byte budget, given back once written.
    _bytes: OwnedSemaphorePermit,
    done: oneshot::Sender<Result<(), String>>,
}

/// The queue into the writer task (started by the first delivery).
pub(crate) struct Intake {
    tx: mpsc::Sender<Pending>,
    bytes: Arc<Semaphore>,
    /// Until when (milliseconds since `Pressure::epoch`) the intake counts as busy.
    pressure: Arc<Pressure>,
}

/// A commit that gathered this many deliveries means callers are queueing behind the writer
/// (one at a time would commit alone): the intake is the bottleneck of the moment.
const BUSY_BATCH: usize = 16;

/// How long one busy commit keeps the intake counted as busy.
const BUSY_FOR: Duration = Duration::from_millis(50);

/// How long one commit keeps the intake counted as receiving.
const ACTIVE_FOR: Duration = Duration::from_millis(500);

/// Whether the intake has been queueing lately, for the webhook processor to give way
/// (`webhooks::run`): acknowledging Meta's deliveries comes before applying them.
pub(crate) struct Pressure {
    epoch: Instant,
    busy_until_ms: AtomicU64,
    /// When the last commit ended.
    last_commit_ms: AtomicU64,
}

impl Pressure {
    fn new() -> Pressure {
        Pressure {
            epoch: Instant::now(),
            busy_until_ms: AtomicU64::new(0),
            last_commit_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn committed(&self, batch: usize) {
        let now = self.now_ms();
        self.last_commit_ms.store(now, Ordering::Relaxed);
        if batch >= BUSY_BATCH {
            let until = now.saturating_add(BUSY_FOR.as_millis() as u64);
            self.busy_until_ms.store(until, Ordering::Relaxed);
        }
    }

    fn active(&self) -> bool {
        self.now_ms()
            < self
                .last_commit_ms
                .load(Ordering::Relaxed)
                .saturating_add(ACTIVE_FOR.as_millis() as u64)
    }

    fn busy(&self) -> bool {
        self.now_ms() < self.busy_until_ms.load(Ordering::Relaxed)
    }
}

impl Intake {
    fn start(engine: &Engine) -> Intake {
        let (tx, rx) = mpsc::channel(engine.config.webhook_queue.max(1));
        let budget = engine
            .config
            .webhook_queue_bytes
            .clamp(1, Semaphore::MAX_PERMITS);
        let pressure = Arc::new(Pressure::new());
        tokio::spawn(write_loop(
            engine.store.clone(),
            engine.clock.clone(),
            engine.webhook_wake.clone(),
            pressure.clone(),
            rx,
        ));
        Intake {
            tx,
            bytes: Arc::new(Semaphore::new(budget)),
            pressure,
        }
    }
}

fn busy() -> EngineError {
    let mut e = EngineError::new(
        ErrorKind::Unavailable,
        "intake_busy",
        "too many webhook deliveries are waiting to be stored; deliver this one again later",
    );
    e.retry_after_secs = Some(1);
    e
}

impl Engine {
    /// Keeps a webhook delivery (its signature already checked) for the webhook processor and
    /// wakes it; returns once the delivery is committed. An error means it was not kept: Meta
    /// must deliver it again (`intake_busy` when the queue is full).
    pub async fn accept_webhook(&self, body: Bytes) -> Result<(), EngineError> {
        let intake = self.intake.get_or_init(|| Intake::start(self));
        let len = u32::try_from(body.len().max(1)).unwrap_or(u32::MAX);
        let permit = intake
            .bytes
            .clone()
            .try_acquire_many_owned(len)
            .map_err(|_| busy())?;
        let (done, committed) = oneshot::channel();
        intake
            .tx
            .try_send(Pending {
                body,
                _bytes: permit,
                done,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => busy(),
                mpsc::error::TrySendError::Closed(_) => {
                    EngineError::internal("the webhook intake writer stopped")
                }
            })?;
        match committed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(EngineError::internal(format!(
                "webhook deliveries not stored: {e}"
            ))),
            Err(_) => Err(EngineError::internal("the webhook intake writer stopped")),
        }
    }

    /// Whether this node's intake has been gathering many deliveries per commit lately
    /// (callers queueing behind its writer).
    pub(crate) fn intake_busy(&self) -> bool {
        self.intake.get().is_some_and(|i| i.pressure.busy())
    }

    /// Whether this node's intake committed deliveries lately: the processor then holds
    /// SQLite's one writer in short slices, so a commit never waits long behind it.
    pub(crate) fn intake_active(&self) -> bool {
        self.intake.get().is_some_and(|i| i.pressure.active())
    }
}

/// The writer: one transaction per round, holding everything queued at its start. It ends
/// when the engine (the queue's sender) is gone.
async fn write_loop(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    pressure: Arc<Pressure>,
    mut rx: mpsc::Receiver<Pending>,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let bodies: Vec<&[u8]> = batch.iter().map(|p| p.body.as_ref()).collect();
        let result = store
            .insert_webhook_events(&bodies, clock.now_millis())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        if result.is_ok() {
            metrics::counter!("parley_webhooks_received_total").increment(batch.len() as u64);
            metrics::histogram!("parley_webhook_intake_batch").record(batch.len() as f64);
            wake.notify_waiters();
            // Worker nodes elsewhere (PostgreSQL) hear it through the wake-up bus.
            store.wakeups().publish(parley_store::Wakeup::Webhooks);
        }
        pressure.committed(batch.len());
        for p in batch.drain(..) {
            let _ = p.done.send(result.clone());
        }
    }
}
