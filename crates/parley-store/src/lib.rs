//! Persistence for Parley: the `Store` trait and one implementation per backend (SQLite for one
//! machine, PostgreSQL for one or many nodes), each with its own migrations. SQL lives only
//! here; every query is scoped by tenant.

// `shared/*.rs` is compiled once per backend on purpose (one SQL source, two dialects):
// `sqlite.rs` and `postgres.rs` each include it as a module of their own.
#![allow(clippy::duplicate_mod)]

/// The claim's condition on a single send (migration 0041, per-contact FIFO), over a row of
/// `messages` named `messages`: a campaign message (no lane) passes; a lane message passes
/// only as its lane's head, i.e. when no earlier message of its lane may still reach Meta
/// (queued, or in flight and not known to be at Meta). A literal, for `concat!`.
macro_rules! lane_head {
    () => {
        "(messages.lane_seq IS NULL OR NOT EXISTS (SELECT 1 FROM messages e
           WHERE e.phone_number_id = messages.phone_number_id AND e.lane = messages.lane
             AND e.lane_seq < messages.lane_seq AND e.state IN ('queued', 'sending')
             AND e.meta_status IS NULL))"
    };
}

pub mod access;
pub mod audience;
pub mod campaigns;
pub mod coexistence;
pub mod consent;
pub mod conversations;
pub mod crypto;
mod dialect;
pub mod events;
pub mod files;
pub mod identity;
pub mod inbound;
mod lattice;
pub mod leases;
pub mod marketing;
mod message_stats;
pub mod nodes;
pub mod platforms;
pub mod postgres;
mod postgres_audience;
mod postgres_campaigns;
pub mod pricing;
mod segment_sql;
pub mod sqlite;
mod sqlite_audience;
mod sqlite_campaigns;
pub mod stats;
mod stats_sql;
pub mod tag_index;
pub mod templates;
pub mod transfer;
mod types;
pub mod wakeups;

pub use access::AccessStore;
pub use audience::AudienceStore;
pub use campaigns::CampaignStore;
pub use coexistence::CoexistenceStore;
pub use consent::ConsentStore;
pub use conversations::ConversationStore;
pub use crypto::{DecryptError, KeyError, SecretCipher};
pub use events::EventStore;
pub use identity::IdentityStore;
pub use inbound::{
    InboundMediaRecord, InboundMessageRecord, InboundStore, MediaOutcome, NewInboundMedia,
};
pub use leases::{Fence, LeaseRecord, LeaseStore};
pub use marketing::MarketingStore;
pub use nodes::{NodeRecord, NodeStore};
pub use platforms::PlatformStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use stats::StatsStore;
pub use templates::TemplateStore;
pub use types::*;
pub use wakeups::{Wakeup, Wakeups};

use async_trait::async_trait;
use parley_domain::{AccountId, ApplicationId, ContactId, MessageId, PhoneNumberId, UserId, Wamid};

/// Unix time in milliseconds; the engine's clock decides what "now" is.
pub type Millis = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// A bounded query (a segment count or preview) ran out of its time and was stopped.
    #[error("the query took longer than its time budget and was stopped")]
    TooExpensive,
    /// The WhatsApp Business Account already has a live platform (in another application):
    /// the partial unique index `platforms_live_waba` refused a second one.
    #[error("WhatsApp Business Account {0} already has a live platform")]
    WabaTaken(String),
}

/// Maps a unique violation of `platforms_live_waba` to [`StoreError::WabaTaken`].
pub(crate) fn waba_taken(e: sqlx::Error, waba: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::WabaTaken(waba.to_owned())
        }
        _ => StoreError::Database(e),
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// An enum's serde name (`"MARKETING"` → `MARKETING`), as both backends store it.
pub(crate) fn serde_name<T: serde::Serialize>(v: &T) -> Result<String> {
    let s = serde_json::to_string(v).map_err(|e| corrupt("serialize", e))?;
    Ok(s.trim_matches('"').to_owned())
}

/// What one crash-recovery pass over `sending` rows did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaleSending {
    /// Rows newly found past their lease: their grace starts now.
    pub noticed: u64,
    /// Rows returned to the queue after their grace.
    pub requeued: u64,
}

/// Claimed messages in the order they go: due first, then by id.
pub(crate) fn sort_claimed(mut out: Vec<MessageRecord>) -> Vec<MessageRecord> {
    out.sort_by(|a, b| {
        a.next_attempt_at
            .cmp(&b.next_attempt_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    out
}

/// Everything Parley keeps. Implementations must make each method atomic.
#[async_trait]
pub trait Store:
    PlatformStore
    + TemplateStore
    + AudienceStore
    + CampaignStore
    + ConsentStore
    + IdentityStore
    + AccessStore
    + CoexistenceStore
    + NodeStore
    + MarketingStore
    + StatsStore
    + LeaseStore
    + InboundStore
    + ConversationStore
    + EventStore
    + pricing::PricingStore
    + Send
    + Sync
    + 'static
{
    /// The wake-up bus (`wakeups.rs`): in-process on SQLite, `LISTEN/NOTIFY` on PostgreSQL.
    fn wakeups(&self) -> Wakeups;

    // --- tenancy -------------------------------------------------------------------------
    async fn create_account(&self, id: &AccountId, name: &str, now: Millis) -> Result<()>;
    async fn create_application(
        &self,
        id: &ApplicationId,
        account: &AccountId,
        name: &str,
        now: Millis,
    ) -> Result<()>;
    /// Every application, oldest first. Unbounded: for tests and one-off tools only; a
    /// request or a worker's round walks `applications_after` instead.
    async fn applications(&self) -> Result<Vec<ApplicationRecord>>;
    /// A page of every application by id: those after `after`, at most `limit` (a walk over
    /// all tenants in keyset pages).
    async fn applications_after(
        &self,
        after: Option<&ApplicationId>,
        limit: u32,
    ) -> Result<Vec<ApplicationRecord>>;
    /// One application by id (its primary key), `None` when there is none.
    async fn application(&self, id: &ApplicationId) -> Result<Option<ApplicationRecord>>;
    /// A token with every scope and no expiry (`AccessStore::insert_token` chooses).
    async fn add_api_token(
        &self,
        app: &ApplicationId,
        token_hash: &str,
        label: &str,
        now: Millis,
    ) -> Result<()>;
    async fn create_user(
        &self,
        id: &UserId,
        account: &AccountId,
        email: &str,
        password_hash: &str,
        now: Millis,
    ) -> Result<()>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>>;

    // --- platforms and numbers -----------------------------------------------------------
    /// Inserts or updates (by application + WABA) and returns the platform's id.
    async fn upsert_platform(&self, platform: &NewPlatform) -> Result<parley_domain::PlatformId>;
    async fn platforms(&self, app: &ApplicationId) -> Result<Vec<PlatformRecord>>;
    /// The application's platform `id`; `None` when it does not exist or is another
    /// application's (the scope is in the statement, not left to the caller).
    async fn platform(
        &self,
        app: &ApplicationId,
        id: &parley_domain::PlatformId,
    ) -> Result<Option<PlatformRecord>>;
    /// The decrypted business token. Never log it.
    async fn platform_token(&self, id: &parley_domain::PlatformId) -> Result<String>;
    /// Inserts or updates a number. A number another application holds is left as it is: it
    /// changes hands only after that application disconnects it (which deletes its row).
    async fn upsert_phone_number(&self, phone: &PhoneNumberRecord) -> Result<()>;
    async fn phone_numbers(&self, app: &ApplicationId) -> Result<Vec<PhoneNumberRecord>>;
    /// A page of the application's numbers by `phone_number_id`: those after `after`, at most
    /// `limit`.
    async fn phone_numbers_after(
        &self,
        app: &ApplicationId,
        after: Option<&PhoneNumberId>,
        limit: u32,
    ) -> Result<Vec<PhoneNumberRecord>>;
    async fn all_phone_numbers(&self) -> Result<Vec<PhoneNumberRecord>>;
    async fn phone_number(
        &self,
        phone_number_id: &PhoneNumberId,
    ) -> Result<Option<PhoneNumberRecord>>;

    // --- templates -----------------------------------------------------------------------
    async fn upsert_template(&self, template: &TemplateRecord) -> Result<()>;
    async fn template(
        &self,
        app: &ApplicationId,
        name: &str,
        language: &str,
    ) -> Result<Option<TemplateRecord>>;
    async fn templates(&self, app: &ApplicationId) -> Result<Vec<TemplateRecord>>;

    // --- contacts ------------------------------------------------------------------------
    /// Inserts or merges tags (by application + phone). Returns how many rows were written.
    async fn upsert_contacts(
        &self,
        app: &ApplicationId,
        contacts: &[NewContact],
        now: Millis,
    ) -> Result<u64>;
    async fn contact_by_phone(
        &self,
        app: &ApplicationId,
        phone: &str,
    ) -> Result<Option<ContactRecord>>;
    async fn count_contacts(&self, app: &ApplicationId) -> Result<u64>;
    /// Stores an inbound message once (by wamid), creating or refreshing its contact and the
    /// 24 h window. Returns false when that wamid was already stored.
    async fn record_inbound(&self, inbound: &InboundRecord) -> Result<bool>;
    /// The one contact `ident` names (by phone, BSUID, or parent BSUID), after linking the
    /// identities it carries together and merging two contacts it shows to be one person;
    /// with `create`, a new contact when nobody is known by any of them.
    async fn resolve_contact(
        &self,
        app: &ApplicationId,
        ident: &ContactIdentity,
        create: bool,
        now: Millis,
    ) -> Result<Option<ContactId>>;
    /// What a round of status webhooks names together (phone, BSUID, parent, username), in
    /// one transaction: each identity is linked as `resolve_contact` does without `create`;
    /// one whose contact already has all of it writes nothing.
    async fn learn_contacts(
        &self,
        app: &ApplicationId,
        idents: &[ContactIdentity],
        now: Millis,
    ) -> Result<()>;
    /// The identifiers of the application's contacts that have one of these BSUIDs, by BSUID
    /// (one read per 500): what `learn_contacts` would find already there.
    async fn known_identities(
        &self,
        app: &ApplicationId,
        bsuids: &[&str],
    ) -> Result<std::collections::HashMap<String, KnownIdentity>>;
    /// Meta's `user_changed_number` / `user_changed_user_id`: the contact known by
    /// `previous` now answers to `current`, keeping its history.
    async fn repoint_contact(
        &self,
        app: &ApplicationId,
        previous: &ContactIdentity,
        current: &ContactIdentity,
        now: Millis,
    ) -> Result<Option<ContactId>>;
    /// The contact with this BSUID (or, failing that, this parent BSUID).
    async fn contact_by_bsuid(
        &self,
        app: &ApplicationId,
        bsuid: &str,
    ) -> Result<Option<ContactRecord>>;

    // --- messages ------------------------------------------------------------------------
    /// Commits a new message. With an idempotency key already used, returns the first one.
    async fn insert_message(&self, message: &NewMessage) -> Result<InsertOutcome>;
    async fn message(&self, app: &ApplicationId, id: &MessageId) -> Result<Option<MessageRecord>>;
    async fn messages(
        &self,
        app: &ApplicationId,
        after: Option<&MessageId>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>>;
    /// Moves up to `limit` due `queued` messages of one number to `sending` with a lease.
    async fn claim_due_messages(
        &self,
        phone_number_id: &PhoneNumberId,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<MessageRecord>>;
    /// Meta accepted the send: records the wamid and folds in statuses that outran it.
    async fn mark_accepted(&self, id: &MessageId, wamid: &Wamid, now: Millis) -> Result<()> {
        let missing = self
            .record_acceptances(&[Acceptance {
                id: id.clone(),
                wamid: wamid.clone(),
                at: now,
                quota: None,
            }])
            .await?;
        match missing.is_empty() {
            true => Ok(()),
            false => Err(StoreError::NotFound(format!("message {id}"))),
        }
    }
    /// `mark_accepted` for a round of sends in one transaction, with each send's quota
    /// confirmation (`CampaignStore::confirm_quota`). Returns the ids no message has.
    async fn record_acceptances(&self, accepted: &[Acceptance]) -> Result<Vec<MessageId>>;
    /// Back to `queued` at `next_attempt_at`, remembering the error that caused it.
    async fn reschedule_message(
        &self,
        id: &MessageId,
        next_attempt_at: Millis,
        error: Option<(i64, &str)>,
        now: Millis,
    ) -> Result<()>;
    async fn fail_message(
        &self,
        id: &MessageId,
        code: i64,
        message: &str,
        now: Millis,
    ) -> Result<()>;
    /// Merges a status (monotonic lattice). Returns the message when one matched; otherwise
    /// keeps the status as an orphan to fold in when the wamid becomes known.
    async fn apply_status(&self, change: &StatusChange) -> Result<Option<MessageRecord>>;
    /// `apply_status` for many statuses in one transaction, merged in the order given.
    /// Returns, per change, what the merge read of the message it matched (its id,
    /// application, contact, …, as merged): the caller needs no second read of `messages`.
    async fn apply_statuses(
        &self,
        changes: &[StatusChange],
    ) -> Result<Vec<Option<events::MessageFacts>>>;
    /// Crash recovery of `sending` rows (a crash between claim and answer): a row past its
    /// lease is noted stale (`stale_since`, once); a stale row still without a wamid and with
    /// no status naming it `grace_ms` after that goes back to `queued`, once (or is skipped
    /// when its campaign was cancelled). A status that names it meanwhile settles it.
    async fn requeue_stale_sending(&self, now: Millis, grace_ms: i64) -> Result<StaleSending>;
    /// The earliest `next_attempt_at` of a queued message of this number.
    async fn next_due_at(&self, phone_number_id: &PhoneNumberId) -> Result<Option<Millis>>;

    // --- webhooks ------------------------------------------------------------------------
    async fn insert_webhook_event(&self, body: &[u8], now: Millis) -> Result<i64> {
        let ids = self.insert_webhook_events(&[body], now).await?;
        ids.first()
            .copied()
            .ok_or_else(|| crate::corrupt("webhook_events", "no id returned"))
    }
    /// Keeps many deliveries in one transaction (the intake's group commit): all of them or,
    /// on an error, none. Returns their ids in the order given.
    async fn insert_webhook_events(&self, bodies: &[&[u8]], now: Millis) -> Result<Vec<i64>>;
    /// The oldest unprocessed events, up to `limit` and fewer when their bodies together
    /// pass `PENDING_BODY_BUDGET` (always at least one): Meta puts up to 1,000 statuses in
    /// one body, and a hundred of those parsed at once is hundreds of megabytes.
    async fn pending_webhook_events(&self, limit: u32) -> Result<Vec<WebhookEventRecord>> {
        self.pending_webhook_events_after(i64::MIN, limit).await
    }
    /// The same, of the events with an id above `after` only: the processor reads the next
    /// round's events while the events up to `after` are still being applied.
    async fn pending_webhook_events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WebhookEventRecord>>;
    /// The same, of the pending events whose statuses are not yet in `status_log`.
    async fn unprojected_webhook_events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WebhookEventRecord>>;
    /// Marks `events` projected and appends their statuses (each with the id of the event
    /// that carried it, in the events' order) to `status_log`, in one transaction: from then
    /// on every reader of those messages sees them, before the processor merges them. An
    /// event already processed is left out (its statuses are merged).
    async fn project_statuses(
        &self,
        events: &[i64],
        statuses: &[(i64, StatusChange)],
    ) -> Result<()>;
    async fn finish_webhook_event(&self, id: i64, now: Millis, error: Option<&str>) -> Result<()> {
        self.finish_webhook_events(&[(id, error.map(str::to_owned))], now)
            .await
    }
    /// Marks many events processed in one statement, each with its note, and deletes their
    /// rows of `status_log` (merged by then).
    async fn finish_webhook_events(
        &self,
        done: &[(i64, Option<String>)],
        now: Millis,
    ) -> Result<()>;
    async fn count_webhook_events(&self) -> Result<u64>;
    /// One step of the retention sweep: of the (at most `limit`) webhook events after id
    /// `after`, oldest first, deletes those processed and received before `before`, with their
    /// bodies. Stops at the first one received since; [`Pruned::next`] is where the next step
    /// starts, `None` once the sweep reached `before`.
    async fn prune_webhook_events(&self, before: Millis, after: i64, limit: u32) -> Result<Pruned>;
}

/// One step of a retention sweep (`Store::prune_webhook_events`, `EventStore::prune_events`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub deleted: u64,
    /// The cursor the next step starts after; `None`: nothing older is left to look at.
    pub next: Option<i64>,
}

/// The bytes of webhook bodies `Store::pending_webhook_events` hands out at once.
pub const PENDING_BODY_BUDGET: i64 = 2 * 1024 * 1024;

/// Opens the store a URL names: `sqlite://path` (file created if missing) or
/// `postgres://…` / `postgresql://…` (the database must exist; migrations run on connect).
pub async fn open(url: &str, cipher: SecretCipher) -> Result<std::sync::Arc<dyn Store>> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        Ok(std::sync::Arc::new(
            SqliteStore::open(std::path::Path::new(path), cipher).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            PostgresStore::connect(url, cipher).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
