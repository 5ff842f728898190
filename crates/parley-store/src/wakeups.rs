//! Wake-ups between the parts of Parley, and between nodes: "messages were queued for this
//! number", "webhook events were stored", "a campaign started", "a campaign's progress
//! changed". On SQLite (one process) they go over an in-process broadcast channel; on
//! PostgreSQL also through `NOTIFY` on the channels below, which a `LISTEN`ing connection on
//! every node that subscribed forwards into its own broadcast, so a message queued on an api
//! node wakes the sender loop of a worker node, and a status applied on a worker moves the
//! progress bar of a page served by an api node.
//!
//! A wake-up is a hint, never the only way work is found: a notification can be lost (the
//! listening connection dropped and reconnected; a receiver lagged), so every waiter keeps a
//! fallback poll, and a reconnect or a lag counts as "wake everything".

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{broadcast, oneshot};

/// `NOTIFY` channel: messages were queued; the payload is the phone number id (empty: any).
pub const QUEUED_CHANNEL: &str = "parley_queued";
/// `NOTIFY` channel: a campaign's progress changed; the payload is its id (`*`: some campaign).
pub const LIVE_CHANNEL: &str = "parley_live";
/// `NOTIFY` channel: work for the other workers (`webhooks`, `campaigns`).
pub const WORK_CHANNEL: &str = "parley_work";
/// `NOTIFY` channel: a conversation of the inbox changed; the payload is
/// `<application id> <contact id>` (`*`: some conversations).
pub const INBOX_CHANNEL: &str = "parley_inbox";

/// Wake-ups kept per subscriber before it counts as lagged (and wakes for everything).
const CAPACITY: usize = 1024;

/// One wake-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wakeup {
    /// Messages were queued for this phone number id; empty: for any number.
    Queued(String),
    /// Webhook events were stored and wait for the processor.
    Webhooks,
    /// A campaign was started, resumed or scheduled.
    Campaigns,
    /// A campaign's progress changed: its id, or `*` for any campaign.
    Live(String),
    /// A conversation changed: `<application id> <contact id>`, or `*` for any.
    Inbox(String),
}

impl Wakeup {
    fn channel_and_payload(&self) -> (&'static str, &str) {
        match self {
            Wakeup::Queued(number) => (QUEUED_CHANNEL, number),
            Wakeup::Webhooks => (WORK_CHANNEL, "webhooks"),
            Wakeup::Campaigns => (WORK_CHANNEL, "campaigns"),
            Wakeup::Live(campaign) => (LIVE_CHANNEL, campaign),
            Wakeup::Inbox(conversation) => (INBOX_CHANNEL, conversation),
        }
    }

    fn parse(channel: &str, payload: &str) -> Option<Wakeup> {
        match (channel, payload) {
            (QUEUED_CHANNEL, number) => Some(Wakeup::Queued(number.to_owned())),
            (WORK_CHANNEL, "webhooks") => Some(Wakeup::Webhooks),
            (WORK_CHANNEL, "campaigns") => Some(Wakeup::Campaigns),
            (LIVE_CHANNEL, campaign) => Some(Wakeup::Live(campaign.to_owned())),
            (INBOX_CHANNEL, conversation) => Some(Wakeup::Inbox(conversation.to_owned())),
            _ => None,
        }
    }

    /// What a receiver that lost track (lagged, or the listener reconnected) must assume.
    pub fn everything() -> [Wakeup; 5] {
        [
            Wakeup::Queued(String::new()),
            Wakeup::Webhooks,
            Wakeup::Campaigns,
            Wakeup::Live("*".to_owned()),
            Wakeup::Inbox("*".to_owned()),
        ]
    }
}

/// The wake-up bus of one store (cheap to clone; every clone is the same bus).
#[derive(Clone)]
pub struct Wakeups {
    inner: Arc<Inner>,
}

struct Inner {
    local: broadcast::Sender<Wakeup>,
    /// Random per process: a node skips its own notifications (it delivered them locally).
    origin: String,
    remote: Option<Remote>,
}

struct Remote {
    pool: PgPool,
    /// The database URL for the listening connection (holds a password: never logged).
    url: String,
    /// Set once the listener runs; dropping it (the last clone of the bus) stops the listener.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("postgres", &self.inner.remote.is_some())
            .field("subscribers", &self.inner.local.receiver_count())
            .finish()
    }
}

impl Wakeups {
    /// A bus inside this process only (SQLite).
    pub fn local() -> Wakeups {
        Wakeups::new(None)
    }

    /// A bus that also reaches every node on the same PostgreSQL database.
    pub fn postgres(pool: PgPool, url: &str) -> Wakeups {
        Wakeups::new(Some(Remote {
            pool,
            url: url.to_owned(),
            stop: Mutex::new(None),
        }))
    }

    fn new(remote: Option<Remote>) -> Wakeups {
        let (local, _) = broadcast::channel(CAPACITY);
        Wakeups {
            inner: Arc::new(Inner {
                local,
                origin: format!("{:016x}", rand::random::<u64>()),
                remote,
            }),
        }
    }

    /// Announces `wakeup` to this process at once and, on PostgreSQL, to every other node
    /// (the `NOTIFY` is sent in the background: call this after the change is committed).
    pub fn publish(&self, wakeup: Wakeup) {
        let _ = self.inner.local.send(wakeup.clone());
        let Some(remote) = &self.inner.remote else {
            return;
        };
        let pool = remote.pool.clone();
        let (channel, payload) = wakeup.channel_and_payload();
        let payload = format!("{} {payload}", self.inner.origin);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, channel, "NOTIFY failed; the other nodes' fallback polls find the work");
            }
        });
    }

    /// Every wake-up published from now on, from this process and (PostgreSQL) every node.
    /// On PostgreSQL the first subscriber starts this node's listening connection.
    pub fn subscribe(&self) -> broadcast::Receiver<Wakeup> {
        let receiver = self.inner.local.subscribe();
        if let Some(remote) = &self.inner.remote {
            let mut stop = remote.stop.lock().unwrap_or_else(|e| e.into_inner());
            if stop.is_none()
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                let (tx, rx) = oneshot::channel();
                *stop = Some(tx);
                runtime.spawn(listen(
                    remote.url.clone(),
                    self.inner.local.clone(),
                    self.inner.origin.clone(),
                    rx,
                ));
            }
        }
        receiver
    }
}

/// Forwards other nodes' notifications into this node's bus until `stop` (the bus dropped).
/// A new or re-established connection may have missed notifications: it wakes everything.
async fn listen(
    url: String,
    local: broadcast::Sender<Wakeup>,
    origin: String,
    mut stop: oneshot::Receiver<()>,
) {
    let wake_everything = |local: &broadcast::Sender<Wakeup>| {
        for w in Wakeup::everything() {
            let _ = local.send(w);
        }
    };
    loop {
        let connected = async {
            let mut listener = PgListener::connect(&url).await?;
            listener
                .listen_all([QUEUED_CHANNEL, LIVE_CHANNEL, WORK_CHANNEL, INBOX_CHANNEL])
                .await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = &mut stop => return,
            l = connected => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN for other nodes' wake-ups; retrying (workers poll meanwhile)");
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
            },
        };
        wake_everything(&local);
        loop {
            let next = tokio::select! {
                _ = &mut stop => return,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(n)) => {
                    let (from, payload) = n.payload().split_once(' ').unwrap_or(("", ""));
                    if from == origin {
                        continue;
                    }
                    if let Some(w) = Wakeup::parse(n.channel(), payload) {
                        let _ = local.send(w);
                    }
                }
                // The connection was lost and re-established: notifications in between are gone.
                Ok(None) => wake_everything(&local),
                Err(e) => {
                    tracing::warn!(error = %e, "the LISTEN connection failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Waits for a wake-up that `wanted` accepts. A lagged receiver (wake-ups were dropped) counts
/// as one; a closed bus never wakes (the fallback poll still does).
pub async fn wait_for(
    receiver: &mut broadcast::Receiver<Wakeup>,
    wanted: impl Fn(&Wakeup) -> bool,
) {
    loop {
        match receiver.recv().await {
            Ok(w) if wanted(&w) => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Forgets the wake-ups received so far (the caller is about to look for work anyway).
pub fn drain(receiver: &mut broadcast::Receiver<Wakeup>) {
    loop {
        match receiver.try_recv() {
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_wakeup_reaches_every_subscriber_and_a_lag_counts_as_one() {
        let bus = Wakeups::local();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.publish(Wakeup::Queued("111".into()));
        wait_for(&mut a, |w| *w == Wakeup::Queued("111".into())).await;
        assert_eq!(b.recv().await.ok(), Some(Wakeup::Queued("111".into())));
        for _ in 0..CAPACITY + 1 {
            bus.publish(Wakeup::Live("*".into()));
        }
        // Only Queued is wanted, but the receiver lost some: it must look.
        wait_for(&mut a, |w| matches!(w, Wakeup::Queued(_))).await;
        drain(&mut a);
        assert!(a.try_recv().is_err());
    }

    #[test]
    fn wakeups_round_trip_through_their_channel_and_payload() {
        for w in Wakeup::everything().into_iter().chain([
            Wakeup::Queued("1234".into()),
            Wakeup::Live("cmp_x".into()),
            Wakeup::Inbox("app_x ctc_y".into()),
        ]) {
            let (channel, payload) = w.channel_and_payload();
            assert_eq!(Wakeup::parse(channel, payload), Some(w.clone()));
        }
        assert_eq!(Wakeup::parse(WORK_CHANNEL, "unknown"), None);
    }
}
