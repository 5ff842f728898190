//! Which worker node runs what (issue #17): each phone number's sender loop (`sender:<id>`),
//! the campaign planner (`planner`) and each periodic job (`job:<name>`) is owned by one node
//! through a lease row (`parley_store::LeaseStore`); each worker node also holds
//! `node:<its id>`, which is how the others count the live workers.
//!
//! A node's lease round (every third of the lease) renews what it holds, takes what lapsed,
//! and spreads the numbers evenly: with `S` numbers over `n` live workers each holds
//! `⌊S/n⌋` or `⌈S/n⌉`; a node above `⌈S/n⌉` releases the excess, and while a node (one that
//! just joined) holds fewer than `⌊S/n⌋`, the node holding the most gives one up.
//!
//! A renewal that fails, or finds the lease taken, stops the work under it at once. The work
//! itself also looks at the lease's local deadline (the monotonic instant the last renewal
//! started, plus the lease, minus a tenth) before every send, so a node paused past its lease
//! (a GC pause, SIGSTOP) sends nothing when it wakes, even before its next round sees the
//! loss; and every claim of messages carries the fencing token, which the database refuses
//! once another node took the lease. On a clean stop every lease is released.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley_domain::PhoneNumberId;
use parley_store::Fence;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// The campaign planner's lease.
pub const PLANNER: &str = "planner";
/// The periodic jobs, each run by the node holding `job:<name>`.
pub const JOB_TEMPLATE_SYNC: &str = "job:template_sync";
pub const JOB_AUDIT_RETENTION: &str = "job:audit_retention";
pub const JOB_WEBHOOKS: &str = "job:webhook_processor";
/// The hourly sweep of inbound media past their retention (`inbound.rs`).
pub const JOB_MEDIA_CLEANUP: &str = "job:media_cleanup";
/// The event webhooks' fan-out and deliveries (`events.rs`).
pub const JOB_EVENT_DELIVERIES: &str = "job:event_deliveries";
/// Every singleton lease a worker node competes for (first come).
pub const SINGLETONS: &[&str] = &[
    PLANNER,
    JOB_TEMPLATE_SYNC,
    JOB_AUDIT_RETENTION,
    JOB_WEBHOOKS,
    JOB_MEDIA_CLEANUP,
    JOB_EVENT_DELIVERIES,
];

/// The lease of one number's sender loop.
pub fn sender_resource(pn: &PhoneNumberId) -> String {
    format!("sender:{}", pn.as_str())
}

/// The lease a worker node holds while it is alive.
pub(crate) fn node_resource(id: &str) -> String {
    format!("node:{id}")
}

/// A lease this node holds, as the work under it sees it.
#[derive(Clone, Debug)]
pub struct Lease {
    /// What a claim under it carries; the database checks it.
    pub fence: Fence,
    /// Cancelled when the work must stop: the lease was lost, is being released, or the node
    /// stops.
    pub stop: CancellationToken,
    /// Milliseconds after `base` until which this node may act under the lease.
    valid_until: Arc<AtomicU64>,
    base: Instant,
    /// The work running under it (a sender loop) has not ended yet.
    running: Arc<AtomicBool>,
    /// Given up: the work finishes its round, then the lease is released.
    releasing: Arc<AtomicBool>,
    /// A sender's: before this instant a send under the lease could share a one-second window
    /// with one of the previous holder's (another node, or an earlier loop of this one), so
    /// the number's limiter starts closed until then (`pacer.rs`).
    quiet_until: Arc<Mutex<Option<Instant>>>,
}

impl Lease {
    /// Whether this node may still act under the lease now (its local deadline, measured on
    /// the monotonic clock, which keeps counting while the process is stopped).
    pub fn live(&self) -> bool {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        now < self.valid_until.load(Ordering::SeqCst)
    }

    /// Marks the work under the lease as running until the guard is dropped.
    pub(crate) fn running(&self) -> RunningGuard {
        self.running.store(true, Ordering::SeqCst);
        RunningGuard(self.running.clone())
    }

    /// See `quiet_until`.
    pub(crate) fn quiet_until(&self) -> Option<Instant> {
        *self
            .quiet_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A loop under the lease ended; its last sends are out of every window at `at`.
    pub(crate) fn quiet_from(&self, at: Instant) {
        let mut q = self
            .quiet_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *q = Some(q.map_or(at, |q| q.max(at)));
    }

    fn extend(&self, until: Instant) {
        let ms = u64::try_from(until.saturating_duration_since(self.base).as_millis())
            .unwrap_or(u64::MAX);
        self.valid_until.store(ms, Ordering::SeqCst);
    }

    fn lose(&self) {
        self.valid_until.store(0, Ordering::SeqCst);
        self.stop.cancel();
    }
}

pub(crate) struct RunningGuard(Arc<AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The leases this node holds.
#[derive(Debug)]
pub struct LeaseBook {
    held: Mutex<HashMap<String, Lease>>,
    base: Instant,
    /// Wakes the sender supervisor when a sender lease was taken or lost.
    pub(crate) changed: Notify,
    /// Asks for a lease round soon (the supervisor saw a number it did not know).
    pub(crate) round_soon: Notify,
    /// Wakes every job waiting for its lease (`Engine::until_held`) when a lease was taken.
    taken: Notify,
}

/// A lease as `/readyz` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldLease {
    pub resource: String,
    pub token: i64,
    pub releasing: bool,
}

impl Default for LeaseBook {
    fn default() -> Self {
        LeaseBook {
            held: Mutex::default(),
            base: Instant::now(),
            changed: Notify::new(),
            round_soon: Notify::new(),
            taken: Notify::new(),
        }
    }
}

impl LeaseBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lease on `resource` when this node holds it and may act under it.
    pub fn get(&self, resource: &str) -> Option<Lease> {
        self.lock()
            .get(resource)
            .filter(|l| l.live() && !l.releasing.load(Ordering::SeqCst))
            .cloned()
    }

    /// Whether this node holds `resource` now (a periodic job asks before each pass).
    pub fn holds(&self, resource: &str) -> bool {
        self.get(resource).is_some()
    }

    /// What this node holds, by resource.
    pub fn list(&self) -> Vec<HeldLease> {
        let mut out: Vec<HeldLease> = self
            .lock()
            .values()
            .map(|l| HeldLease {
                resource: l.fence.resource.clone(),
                token: l.fence.token,
                releasing: l.releasing.load(Ordering::SeqCst),
            })
            .collect();
        out.sort_by(|a, b| a.resource.cmp(&b.resource));
        out
    }

    fn all(&self) -> Vec<Lease> {
        self.lock().values().cloned().collect()
    }

    fn remove(&self, resource: &str) {
        self.lock().remove(resource);
    }
}

impl Engine {
    /// The leases this node holds.
    pub fn leases(&self) -> Vec<HeldLease> {
        self.leases.list()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.node_lease.as_millis()).unwrap_or(10_000)
    }

    /// The local deadline of a renewal or acquisition that started at `start`.
    fn deadline(&self, start: Instant) -> Instant {
        let lease = self.config.node_lease;
        start + lease - lease / 10
    }

    fn take(
        &self,
        resource: &str,
        token: i64,
        start: Instant,
        quiet_until: Option<Instant>,
        shutdown: &CancellationToken,
    ) {
        let lease = Lease {
            fence: Fence {
                resource: resource.to_owned(),
                owner: self.node().id,
                token,
            },
            stop: shutdown.child_token(),
            valid_until: Arc::new(AtomicU64::new(0)),
            base: self.leases.base,
            running: Arc::new(AtomicBool::new(false)),
            releasing: Arc::new(AtomicBool::new(false)),
            quiet_until: Arc::new(Mutex::new(quiet_until)),
        };
        lease.extend(self.deadline(start));
        tracing::info!(resource, token, "lease taken");
        metrics::counter!("parley_leases_taken_total").increment(1);
        self.leases.lock().insert(resource.to_owned(), lease);
        self.leases.taken.notify_waiters();
    }

    /// Waits until this node holds `resource` (a periodic job runs only under its lease);
    /// `false` when the node stops first. Woken when a lease is taken, and every lease round
    /// in any case.
    pub(crate) async fn until_held(&self, resource: &str, shutdown: &CancellationToken) -> bool {
        loop {
            let taken = self.leases.taken.notified();
            tokio::pin!(taken);
            // Registered before looking, so a lease taken in between is not missed.
            taken.as_mut().enable();
            if self.leases.holds(resource) {
                return true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = taken => {}
                _ = tokio::time::sleep(self.config.node_lease / 3) => {}
            }
        }
    }

    fn lost(&self, lease: &Lease, why: &str) {
        lease.lose();
        self.leases.remove(&lease.fence.resource);
        metrics::counter!("parley_leases_lost_total").increment(1);
        tracing::warn!(resource = %lease.fence.resource, token = lease.fence.token, reason = why, "lease lost; its work stops");
        self.leases.changed.notify_one();
    }

    /// Gives a lease up: its work finishes the round in hand (the lease is renewed meanwhile),
    /// then a later round releases it.
    fn give_up(&self, lease: &Lease) {
        tracing::info!(resource = %lease.fence.resource, "releasing a lease to rebalance");
        lease.releasing.store(true, Ordering::SeqCst);
        lease.stop.cancel();
    }

    /// One lease round; see the module comment.
    async fn lease_round(&self, shutdown: &CancellationToken) -> parley_store::Result<()> {
        let ms = self.lease_ms();
        let me = self.node().id;
        for lease in self.leases.all() {
            let start = Instant::now();
            match self.store.renew_lease(&lease.fence, ms).await {
                Ok(true) => lease.extend(self.deadline(start)),
                Ok(false) => self.lost(&lease, "taken by another node or lapsed"),
                Err(e) => self.lost(&lease, &format!("renewal failed: {e}")),
            }
        }
        // Released leases whose work has ended.
        for lease in self.leases.all() {
            if lease.releasing.load(Ordering::SeqCst) && !lease.running.load(Ordering::SeqCst) {
                // Nothing acts under it from here, even a loop that has not started yet.
                lease.lose();
                self.store.release_lease(&lease.fence).await?;
                self.leases.remove(&lease.fence.resource);
            }
        }
        let mine = node_resource(&me);
        let mut wanted: Vec<String> = vec![mine.clone()];
        wanted.extend(SINGLETONS.iter().map(|s| (*s).to_owned()));
        for r in wanted {
            if !self.leases.lock().contains_key(&r) {
                let start = Instant::now();
                if let Some(token) = self.store.acquire_lease(&r, &me, ms).await? {
                    self.take(&r, token, start, None, shutdown);
                }
            }
        }

        // The numbers to spread, over the live worker nodes.
        let offboarded = self.store.offboarded_numbers().await.unwrap_or_default();
        let senders: HashSet<String> = self
            .store
            .all_phone_numbers()
            .await?
            .iter()
            .filter(|n| !offboarded.contains(&n.phone_number_id))
            .map(|n| sender_resource(&n.phone_number_id))
            .collect();
        let rows = self.store.leases().await?;
        let live_row = |r: &&parley_store::LeaseRecord| r.expires_at > r.now;
        let mut live: Vec<String> = rows
            .iter()
            .filter(live_row)
            .filter_map(|r| r.resource.strip_prefix("node:").map(str::to_owned))
            .collect();
        if !live.contains(&me) {
            live.push(me.clone());
        }
        live.sort();
        let mut counts: HashMap<&str, usize> = live.iter().map(|n| (n.as_str(), 0)).collect();
        for r in rows.iter().filter(live_row) {
            if senders.contains(&r.resource)
                && let Some(c) = counts.get_mut(r.owner.as_str())
            {
                *c += 1;
            }
        }
        let mut held: Vec<Lease> = self
            .leases
            .all()
            .into_iter()
            .filter(|l| {
                l.fence.resource.starts_with("sender:") && !l.releasing.load(Ordering::SeqCst)
            })
            .collect();
        held.sort_by(|a, b| a.fence.resource.cmp(&b.fence.resource));
        // A number that is gone (or offboarded) is let go.
        held.retain(|l| {
            let keep = senders.contains(&l.fence.resource);
            if !keep {
                self.give_up(l);
            }
            keep
        });
        counts.insert(me.as_str(), held.len());
        let (s, n) = (senders.len(), live.len());
        let floor = s / n;
        let ceil = s.div_ceil(n);
        let below: Vec<&str> = counts
            .iter()
            .filter(|(id, c)| **id != me && **c < floor)
            .map(|(id, _)| *id)
            .collect();
        let mut mine_count = held.len();
        if mine_count > ceil {
            for l in held.iter().skip(ceil) {
                self.give_up(l);
            }
            mine_count = ceil;
        } else if mine_count > floor && !below.is_empty() {
            // The node holding the most (the greatest id among equals) gives one up.
            let most = counts.values().copied().max().unwrap_or(0);
            let giver = counts
                .iter()
                .filter(|(_, c)| **c == most)
                .map(|(id, _)| *id)
                .max();
            if most == mine_count
                && giver == Some(me.as_str())
                && let Some(l) = held.last()
            {
                self.give_up(l);
                mine_count -= 1;
            }
        }
        let mut free: Vec<&String> = senders
            .iter()
            .filter(|r| {
                rows.iter()
                    .find(|row| &row.resource == *r)
                    .is_none_or(|row| row.expires_at <= row.now)
                    && !self.leases.lock().contains_key(r.as_str())
            })
            .collect();
        free.sort();
        let mut took = false;
        for r in free {
            if !(mine_count < floor || (mine_count < ceil && below.is_empty())) {
                break;
            }
            let start = Instant::now();
            // The previous holder sent nothing after the row's expiry (its local deadline is
            // earlier), and a released row's holder sent nothing after the release, which came
            // before `start`: one `HOLD` later, nothing of its can share a window with ours.
            let hold = crate::pacer::HOLD;
            let quiet =
                rows.iter()
                    .find(|row| &row.resource == r)
                    .map(|row| match row.expires_at {
                        0 => start + hold,
                        at => {
                            let ahead = u64::try_from((at - row.now).max(0)).unwrap_or(0);
                            start + Duration::from_millis(ahead) + hold
                        }
                    });
            if let Some(token) = self.store.acquire_lease(r, &me, ms).await? {
                self.take(r, token, start, quiet, shutdown);
                mine_count += 1;
                took = true;
            }
        }
        if took {
            self.leases.changed.notify_one();
        }
        Ok(())
    }

    /// Releases every lease this node holds once the work under it ended (a clean stop).
    async fn release_all(&self) {
        let deadline = Instant::now() + self.config.node_lease / 2;
        for lease in self.leases.all() {
            lease.stop.cancel();
            while lease.running.load(Ordering::SeqCst) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !lease.running.load(Ordering::SeqCst)
                && lease.live()
                && let Err(e) = self.store.release_lease(&lease.fence).await
            {
                tracing::warn!(resource = %lease.fence.resource, error = %e, "cannot release a lease; it lapses");
            }
            self.leases.remove(&lease.fence.resource);
        }
    }
}

/// The lease worker of a worker node: a round every third of the lease until `shutdown`, then
/// every lease released.
pub(crate) async fn run(engine: Engine, shutdown: CancellationToken) {
    let every = engine.config.node_lease / 3;
    loop {
        if let Err(e) = engine.lease_round(&shutdown).await {
            tracing::warn!(error = %e, "lease round failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
            _ = engine.leases.round_soon.notified() => {}
        }
    }
    engine.release_all().await;
}
