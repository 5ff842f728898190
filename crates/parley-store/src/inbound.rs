//! Inbound messages as read back (kind, normalized body, edits, revokes) and their media
//! (`inbound_media`, migration 0024). Messages are written by `Store::record_inbound`.

use async_trait::async_trait;
use parley_domain::{ApplicationId, ContactId, InboundKind, MediaState, PhoneNumberId, Wamid};
use serde_json::Value;

use crate::{Millis, Result};

/// One stored inbound message.
#[derive(Debug, Clone)]
pub struct InboundMessageRecord {
    pub wamid: Wamid,
    pub phone_number_id: PhoneNumberId,
    pub contact_id: Option<ContactId>,
    /// The sender's address (E.164, or the BSUID when the phone was withheld).
    pub from: String,
    pub kind: InboundKind,
    /// The text shown (the latest edit's).
    pub text: Option<String>,
    /// `parley_domain::InboundBody` as JSON; `None` for rows stored before bodies were kept
    /// (the engine reads those from `raw`).
    pub body: Option<Value>,
    /// Meta's message object as received.
    pub raw: Value,
    /// The wamid a reply, reaction, edit or revoke refers to.
    pub refers_to: Option<String>,
    /// Earlier versions, oldest first: `[{"text", "body", "edited_at"}]`.
    pub edits: Vec<Value>,
    pub edited_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    pub received_at: Millis,
    pub media: Option<InboundMediaRecord>,
}

/// The media object of an inbound message and where its bytes stand.
#[derive(Debug, Clone)]
pub struct InboundMediaRecord {
    pub wamid: Wamid,
    pub application_id: ApplicationId,
    pub phone_number_id: PhoneNumberId,
    /// Meta's media id.
    pub media_id: String,
    pub declared_mime: Option<String>,
    pub declared_sha256: Option<String>,
    pub state: MediaState,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    /// Hex SHA-256 of the stored bytes: the file's name.
    pub sha256: Option<String>,
    pub size_bytes: Option<i64>,
    pub mime_type: Option<String>,
    /// Why it was refused or failed, or the last transient error.
    pub error: Option<String>,
    pub created_at: Millis,
    pub stored_at: Option<Millis>,
}

/// A media object to fetch, recorded with its message.
#[derive(Debug, Clone)]
pub struct NewInboundMedia {
    pub media_id: String,
    pub declared_mime: Option<String>,
    pub declared_sha256: Option<String>,
}

/// How a media fetch ended.
#[derive(Debug, Clone)]
pub enum MediaOutcome {
    Stored {
        sha256: String,
        size_bytes: i64,
        mime_type: String,
    },
    Refused(String),
    Failed(String),
    /// A transient failure: try again at `next_attempt_at`.
    Retry {
        error: String,
        next_attempt_at: Millis,
    },
}

#[async_trait]
pub trait InboundStore {
    /// A page of the contact's inbound messages, newest first, before the cursor
    /// `(received_at, wamid)` when given.
    async fn contact_inbound(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        before: Option<(Millis, &str)>,
        limit: u32,
    ) -> Result<Vec<InboundMessageRecord>>;

    /// One inbound message of the application.
    async fn inbound_message(
        &self,
        app: &ApplicationId,
        wamid: &str,
    ) -> Result<Option<InboundMessageRecord>>;

    /// The edits and revokes stored for `original` (they may arrive before it), oldest first.
    async fn inbound_changes_of(
        &self,
        app: &ApplicationId,
        original: &str,
    ) -> Result<Vec<InboundMessageRecord>>;

    /// Applies an edit to `original`: its text and content become the new ones, the previous
    /// version goes to its history. `edit` (the edit's wamid) is applied once: false when the
    /// original is unknown or the edit was already applied.
    async fn apply_inbound_edit(
        &self,
        app: &ApplicationId,
        original: &str,
        edit: &str,
        text: Option<&str>,
        content: &Value,
        at: Millis,
    ) -> Result<bool>;

    /// Marks `original` revoked; false when it is unknown.
    async fn apply_inbound_revoke(
        &self,
        app: &ApplicationId,
        original: &str,
        at: Millis,
    ) -> Result<bool>;

    /// Claims up to `limit` media due for a fetch: each is leased until `lease_until` (another
    /// node skips it) and its attempt counted. `node`, when given, is the claiming node's id
    /// while it holds its `node:<id>` lease: a claim whose node's lease has lapsed (the node
    /// was killed mid-fetch) is due again at once, whatever its `lease_until`.
    async fn claim_inbound_media(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
        node: Option<&str>,
    ) -> Result<Vec<InboundMediaRecord>>;

    /// Records how a fetch ended.
    async fn finish_inbound_media(
        &self,
        wamid: &Wamid,
        outcome: &MediaOutcome,
        now: Millis,
    ) -> Result<()>;

    /// Marks media stored before `before` expired; returns the hashes no stored media names
    /// any more (their files may go).
    async fn expire_inbound_media(&self, before: Millis) -> Result<Vec<String>>;

    /// True when some stored media of any application has this hash.
    async fn media_hash_in_use(&self, sha256: &str) -> Result<bool>;
}
