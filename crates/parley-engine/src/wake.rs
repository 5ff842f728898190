//! Wake-ups (`parley_store::wakeups`): what the engine announces, and the relay that turns
//! other nodes' announcements into this node's worker wake-ups.
//!
//! - Messages queued (API send, planner chunk, resume, crash recovery, a number connected):
//!   `Wakeup::Queued(number)`. Each sender loop waits on the bus for its own number (or any)
//!   instead of sleeping out its fallback poll.
//! - Webhook events stored (intake, possibly on an api node) and campaigns started or resumed:
//!   the relay on worker nodes wakes the webhook processor and the campaign worker.
//! - Campaign progress changed: `Wakeup::Live(campaign)`, gathered for `LIVE_GATHER` so a
//!   campaign sending thousands a second announces a few changes a second, not thousands;
//!   the console's live progress streams (`Engine::campaign_progress_events`) listen to it.

use std::collections::BTreeSet;
use std::time::Duration;

use parley_domain::{CampaignId, PhoneNumberId};
use parley_store::Wakeup;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// How long progress changes are gathered before they are announced.
pub const LIVE_GATHER: Duration = Duration::from_millis(250);
/// More campaigns changed than this in one gathering: announce "some campaign" once.
const LIVE_MAX_IDS: usize = 32;

impl Engine {
    /// Every wake-up from now on: this node's and (PostgreSQL) every other node's.
    pub fn subscribe_wakeups(&self) -> broadcast::Receiver<Wakeup> {
        self.store.wakeups().subscribe()
    }

    /// Messages were queued for `number` (`None`: for any number): wakes its sender loops on
    /// every node, and the supervisor (which starts loops for numbers it does not run yet).
    pub fn wake_senders(&self, number: Option<&PhoneNumberId>) {
        self.store.wakeups().publish(Wakeup::Queued(
            number.map(|n| n.as_str().to_owned()).unwrap_or_default(),
        ));
    }

    /// A campaign started, resumed or was scheduled: wakes every node's campaign worker.
    pub(crate) fn wake_campaigns(&self) {
        self.store.wakeups().publish(Wakeup::Campaigns);
    }

    /// A campaign's progress changed (`None`: some campaign, e.g. a batch of statuses);
    /// announced within `LIVE_GATHER`.
    pub(crate) fn progress_changed(&self, campaign: Option<&CampaignId>) {
        let mut dirty = self.live_dirty.lock().unwrap_or_else(|e| e.into_inner());
        dirty.insert(campaign.map_or_else(|| "*".to_owned(), |c| c.as_str().to_owned()));
    }
}

/// Announces gathered progress changes every `LIVE_GATHER` until `shutdown`.
pub(crate) async fn announce_progress(engine: Engine, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(LIVE_GATHER) => {}
        }
        let dirty: BTreeSet<String> =
            std::mem::take(&mut *engine.live_dirty.lock().unwrap_or_else(|e| e.into_inner()));
        crate::conversations::announce_gathered(&engine);
        let bus = engine.store.wakeups();
        if dirty.len() > LIVE_MAX_IDS || dirty.contains("*") {
            bus.publish(Wakeup::Live("*".to_owned()));
        } else {
            for id in dirty {
                bus.publish(Wakeup::Live(id));
            }
        }
    }
}

/// On worker nodes: wakes the webhook processor, the campaign worker and the sender
/// supervisor for wake-ups from this node or another, until `shutdown`.
pub(crate) async fn relay(engine: Engine, shutdown: CancellationToken) {
    let mut bus = engine.subscribe_wakeups();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            w = bus.recv() => w,
        };
        match next {
            Ok(Wakeup::Queued(_)) => engine.send_wake.notify_waiters(),
            Ok(Wakeup::Webhooks) => engine.webhook_wake.notify_waiters(),
            Ok(Wakeup::Campaigns) => engine.campaign_wake.notify_waiters(),
            Ok(Wakeup::Live(_) | Wakeup::Inbox(_)) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                engine.send_wake.notify_waiters();
                engine.webhook_wake.notify_waiters();
                engine.campaign_wake.notify_waiters();
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}
