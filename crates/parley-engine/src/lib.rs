//! Parley's application services and background workers: accepting sends, the per-number
//! sender loops, the webhook processor, template sync and the demo seed.

pub mod access;
pub mod audience;
pub mod auth;
pub mod campaigns;
pub mod clock;
pub mod coexistence;
pub mod consent;
mod contact_identity;
pub mod conversations;
pub mod demo;
pub mod error;
pub mod events;
mod flights;
pub mod identity;
pub mod import_file;
pub mod inbound;
mod intake;
pub mod leases;
pub mod limit_use;
pub mod marketing;
pub mod messages;
pub mod meta_compare;
pub mod nodes;
pub mod onboarding;
pub mod pacer;
pub mod pricing;
pub mod reads;
pub mod sender;
pub mod stats;
pub mod templates;
pub mod wake;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use parley_domain::{ApplicationId, CampaignId};
use parley_meta::GraphClient;
use parley_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, OffsetClock, SystemClock};
pub use error::{EngineError, ErrorKind};
pub use onboarding::MetaApp;

/// Tunables of the workers. Defaults fit production; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a claimed message may stay in `sending` before another attempt may take it.
    pub lease: Duration,
    /// Extra wait after a lease expires for a status webhook naming the message.
    pub crash_grace: Duration,
    /// Give up on a message after this many transient failures.
    pub max_attempts: i64,
    /// First retry delay; doubles each attempt (with jitter), capped by `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The most messages claimed in one round per number; a round is otherwise about two
    /// seconds of the number's throughput (a pause or a cancel waits for the round in flight).
    pub batch_size: u32,
    pub concurrency: usize,
    /// How often idle loops look for work they were not woken for: the fallback poll behind
    /// the wake-ups (`wake.rs`), which reach every node on PostgreSQL too.
    pub poll_interval: Duration,
    /// How often every platform's templates are synced in full (webhooks keep them current
    /// in between).
    pub template_sync_interval: Duration,
    /// Meta's app as onboarding (Embedded Signup) uses it.
    pub meta_app: MetaApp,
    /// How long audit log entries are kept.
    pub audit_retention: Duration,
    /// How long received webhooks are kept once applied (their bodies as received); `None`
    /// keeps them. What they said lives on in the messages, contacts and inbox.
    pub webhook_retention: Option<Duration>,
    /// How long finished contact imports (and their rejected rows) are kept after they were
    /// last written; an interrupted import not resumed by then goes too. `None` keeps them.
    pub import_retention: Option<Duration>,
    /// The longest a segment count or preview may run in the database before it is stopped
    /// (422 `filter_too_expensive`).
    pub filter_timeout: Duration,
    /// Webhook deliveries that may wait for the intake's writer at once; more are refused
    /// with 503 `intake_busy` (Meta delivers them again).
    pub webhook_queue: usize,
    /// The bytes of bodies that may wait for the intake's writer at once (same refusal).
    pub webhook_queue_bytes: usize,
    /// How long a node's lease on a sender loop, the planner or a periodic job lasts without
    /// renewal (`leases.rs`): a dead node's work is taken over this long after its last
    /// renewal; renewals come every third of it.
    pub node_lease: Duration,
    /// Inbound media: where they are kept, how large they may be, how long they stay.
    pub media: MediaConfig,
    /// Event webhooks out: retries, timeouts, which targets are allowed (`events.rs`).
    pub events: events::EventConfig,
}

/// Inbound media downloads (`inbound.rs`).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The directory media files go to (`<data dir>/media`); `None`: media are not fetched
    /// (their messages are kept, their media stay `pending`).
    pub dir: Option<std::path::PathBuf>,
    /// The largest media kept, in bytes (Meta's own limit for inbound media is 100 MB).
    pub max_bytes: u64,
    /// Media files older than this are removed (the message stays, its media `expired`);
    /// `None` keeps them.
    pub retention: Option<Duration>,
    /// Fetch attempts before a media is given up (`failed`).
    pub max_attempts: i64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            dir: None,
            max_bytes: 100 * 1024 * 1024,
            retention: None,
            max_attempts: 8,
        }
    }
}

/// How long a node's leases last by default.
pub const DEFAULT_NODE_LEASE: Duration = Duration::from_secs(10);

/// How long a segment count or preview may run by default.
pub const DEFAULT_FILTER_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease: Duration::from_secs(60),
            // Over an hour: Meta may hold a paced send (`held_for_quality_assessment`) for
            // about an hour with no status; a crash before Parley noted the hold must not send
            // it again sooner (META_2026 §6.3).
            crash_grace: Duration::from_secs(65 * 60),
            max_attempts: 10,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            batch_size: 1_000,
            concurrency: 32,
            poll_interval: Duration::from_secs(1),
            template_sync_interval: Duration::from_secs(15 * 60),
            meta_app: MetaApp::default(),
            audit_retention: Duration::from_secs(365 * 24 * 3600),
            webhook_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            import_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            filter_timeout: DEFAULT_FILTER_TIMEOUT,
            webhook_queue: 8_192,
            webhook_queue_bytes: 64 * 1024 * 1024,
            node_lease: DEFAULT_NODE_LEASE,
            media: MediaConfig::default(),
            events: events::EventConfig::default(),
        }
    }
}

/// Shared handles of the engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    /// The engine's own: the server reaches data through the engine's services only.
    store: Arc<dyn Store>,
    pub graph: GraphClient,
    pub clock: Arc<dyn Clock>,
    pub config: EngineConfig,
    /// Wakes the sender supervisor when new messages are queued (`wake.rs` relays the bus).
    pub send_wake: Arc<Notify>,
    /// Wakes the webhook processor when an event is stored.
    pub webhook_wake: Arc<Notify>,
    /// The status projection's last read was full (`webhooks::run_projection`): the
    /// processor's merge gives way until it has caught up.
    projection_behind: Arc<std::sync::atomic::AtomicBool>,
    /// The merge's last read of pending webhooks was full (`webhooks::run`): a burst is
    /// waiting, and the status projection runs.
    merge_behind: Arc<std::sync::atomic::AtomicBool>,
    /// Wakes the campaign worker when a campaign starts or resumes.
    pub campaign_wake: Arc<Notify>,
    /// Wakes the media fetcher when an inbound media is recorded.
    pub media_wake: Arc<Notify>,
    /// Wakes the event delivery worker when an event is written or a delivery is replayed.
    pub event_wake: Arc<Notify>,
    /// How far the workers got: counts a test waits on to know that a pass ran.
    pub progress: Arc<Progress>,
    /// When each token's last use was last written (or is being written): one entry per
    /// token that authenticated, so concurrent requests write it once a minute, not each.
    pub(crate) token_touches:
        Arc<std::sync::Mutex<std::collections::HashMap<parley_domain::TokenId, i64>>>,
    /// One sign-up at a time per WABA (`onboarding::Engine::waba_lock`).
    pub(crate) onboarding_locks:
        Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// This process's role and workers (`nodes.rs`), set when its workers start.
    pub(crate) node: Arc<std::sync::RwLock<nodes::NodeInfo>>,
    /// The webhook intake's queue into its group-commit writer, started on first use.
    pub(crate) intake: Arc<std::sync::OnceLock<intake::Intake>>,
    /// The leases this node holds (`leases.rs`).
    pub(crate) leases: Arc<leases::LeaseBook>,
    /// Campaigns whose progress changed since the last announcement (`wake.rs`).
    pub(crate) live_dirty: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Conversations changed by webhooks since the last announcement (`conversations.rs`).
    pub(crate) inbox_dirty: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Which applications want which events (`events.rs`).
    pub(crate) event_subscriptions: Arc<std::sync::Mutex<events::Subscriptions>>,
    /// Meta's analytics, reused for a minute (`meta_compare.rs`).
    pub(crate) meta_cache: Arc<std::sync::Mutex<meta_compare::MetaCache>>,
    /// Single sends to one contact are accepted one at a time on this node
    /// (`messages::SendOrder`), so their ids and queue times sort as their lane places do.
    pub(crate) send_order: Arc<messages::SendOrder>,
    /// Campaign plans: one walk of an audience at a time per application, shared by the
    /// requests that waited (`flights.rs`).
    pub(crate) plans: Arc<flights::Flights<(ApplicationId, CampaignId), campaigns::CampaignPlan>>,
    /// Campaign statistics: one count at a time per campaign, shared the same way.
    pub(crate) campaign_stats_made:
        Arc<flights::Flights<(ApplicationId, CampaignId), campaigns::CampaignStats>>,
}

/// Passes the background workers completed, per engine. A test that must show that nothing
/// happens waits until a pass that began after its change has finished (positive evidence
/// that the worker looked), instead of sleeping and hoping it did.
#[derive(Debug, Default)]
pub struct Progress {
    sender_passes: std::sync::atomic::AtomicU64,
    campaign_passes: std::sync::atomic::AtomicU64,
    event_passes: std::sync::atomic::AtomicU64,
}

impl Progress {
    /// Claim passes finished by the sender loops (all numbers): each claimed what was due at
    /// its start and handed it to Meta, or found nothing due.
    pub fn sender_passes(&self) -> u64 {
        self.sender_passes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Passes finished by the campaign worker (scheduled starts, planning, completion).
    pub fn campaign_passes(&self) -> u64 {
        self.campaign_passes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Passes finished by the event delivery worker (fan-out and claim).
    pub fn event_passes(&self) -> u64 {
        self.event_passes.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn event_pass_done(&self) {
        self.event_passes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn sender_pass_done(&self) {
        self.sender_passes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn campaign_pass_done(&self) {
        self.campaign_passes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        graph: GraphClient,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Self {
        Engine {
            store,
            graph,
            clock,
            config,
            send_wake: Arc::new(Notify::new()),
            webhook_wake: Arc::new(Notify::new()),
            projection_behind: Arc::default(),
            merge_behind: Arc::default(),
            campaign_wake: Arc::new(Notify::new()),
            media_wake: Arc::new(Notify::new()),
            event_wake: Arc::new(Notify::new()),
            progress: Arc::new(Progress::default()),
            token_touches: Arc::default(),
            onboarding_locks: Arc::default(),
            node: Arc::new(std::sync::RwLock::new(nodes::NodeInfo::new())),
            intake: Arc::default(),
            leases: Arc::default(),
            live_dirty: Arc::default(),
            inbox_dirty: Arc::default(),
            event_subscriptions: Arc::default(),
            meta_cache: Arc::default(),
            send_order: Arc::default(),
            plans: Arc::default(),
            campaign_stats_made: Arc::default(),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_millis()
    }

    /// Starts the background workers; they stop when `shutdown` is cancelled.
    pub fn spawn_workers(&self, shutdown: CancellationToken) -> tokio::task::JoinSet<()> {
        self.spawn_node(nodes::NodeRole::All, shutdown)
    }

    /// Starts what a node of `role` runs (`nodes.rs`): the workers on `worker` and `all`
    /// nodes, the recovery of interrupted imports where imports run (`api`, `all`), and the
    /// heartbeat on every node. They stop when `shutdown` is cancelled.
    pub fn spawn_node(
        &self,
        role: nodes::NodeRole,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinSet<()> {
        let mut set = tokio::task::JoinSet::new();
        if role.serves_api() {
            // Imports still `running` from before this start were left by a Parley that is gone.
            let started = self.now();
            let engine = self.clone();
            set.spawn(async move { engine.interrupt_stale_imports(started).await });
        }
        let workers = match role.runs_workers() {
            true => nodes::WORKERS.to_vec(),
            false => Vec::new(),
        };
        self.set_node(role, workers);
        set.spawn(nodes::heartbeat(self.clone(), shutdown.clone()));
        set.spawn(wake::announce_progress(self.clone(), shutdown.clone()));
        if !role.runs_workers() {
            return set;
        }
        set.spawn(leases::run(self.clone(), shutdown.clone()));
        set.spawn(wake::relay(self.clone(), shutdown.clone()));
        set.spawn(sender::supervise(self.clone(), shutdown.clone()));
        set.spawn(templates::run_periodic_sync(
            self.clone(),
            self.config.template_sync_interval,
            shutdown.clone(),
        ));
        set.spawn(campaigns::run(self.clone(), shutdown.clone()));
        set.spawn(access::run_audit_retention(self.clone(), shutdown.clone()));
        set.spawn(stats::run_fold(self.clone(), shutdown.clone()));
        set.spawn(inbound::run_media(self.clone(), shutdown.clone()));
        set.spawn(events::run(self.clone(), shutdown.clone()));
        set.spawn(webhooks::run_projection(self.clone(), shutdown.clone()));
        set.spawn(webhooks::run(self.clone(), shutdown));
        set
    }
}
