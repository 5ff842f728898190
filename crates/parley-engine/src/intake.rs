//! Webhook intake with group commit: every delivery whose signature was checked is handed to
//! one writer task over a bounded queue, and waits for the commit of the transaction that
//! holds it. The writer takes whatever is queued (up to a batch) as one transaction, so under
//! load many deliveries share one commit, and alone a delivery is committed at once (no timer).
//! Nothing is acknowledged before its commit; a full queue (by count or by bytes) is refused
//! with `intake_busy` (503 + `Retry-After`), so memory stays bounded and Meta retries.

use std::sync::Arc;

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
}

impl Intake {
    fn start(engine: &Engine) -> Intake {
        let (tx, rx) = mpsc::channel(engine.config.webhook_queue.max(1));
        let budget = engine
            .config
            .webhook_queue_bytes
            .clamp(1, Semaphore::MAX_PERMITS);
        tokio::spawn(write_loop(
            engine.store.clone(),
            engine.clock.clone(),
            engine.webhook_wake.clone(),
            rx,
        ));
        Intake {
            tx,
            bytes: Arc::new(Semaphore::new(budget)),
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
}

/// The writer: one transaction per round, holding everything queued at its start. It ends
/// when the engine (the queue's sender) is gone.
async fn write_loop(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
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
        for p in batch.drain(..) {
            let _ = p.done.send(result.clone());
        }
    }
}
