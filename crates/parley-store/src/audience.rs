//! Audience: contacts with typed tags and a marketing subscription, segment queries over them
//! (compiled by `segment_sql.rs`), saved segments and contact import jobs.
//!
//! Tag names are ASCII-case-insensitive per contact: writing `City` replaces a stored `city`,
//! so a contact never holds two tags that differ only in ASCII case, and the segment language's
//! lookup (exact, then ASCII-case-insensitive) finds the one tag SQL finds.

use std::collections::BTreeMap;

use async_trait::async_trait;
use parley_domain::{
    ApplicationId, ContactId, ImportId, ImportState, MessageContent, Segment, SegmentId,
    Subscription, TagValue, Tags, WaId,
};
use time::OffsetDateTime;

use crate::{ContactRecord, MessageRecord, Millis, Result};

/// Connections of the pool bounded filter queries run on (per node).
pub const FILTER_CONNECTIONS: u32 = 2;

/// The content left in place of an erased message's text.
pub(crate) const ERASED_CONTENT: MessageContent = MessageContent::Text {
    body: String::new(),
    preview_url: false,
};

/// A partial tag update: `Some` sets the tag, `None` removes it (JSON `null`).
pub type TagPatch = BTreeMap<String, Option<TagValue>>;

/// A change of subscription, recorded in the contact's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionChange {
    pub state: Subscription,
    /// Where it came from: `api`, `import`, `console`, `keyword`, `button`.
    pub source: String,
    pub note: Option<String>,
}

/// One insert-or-update of a contact by phone number.
#[derive(Debug, Clone, Default)]
pub struct ContactUpsert {
    /// E.164, parsed at the edge.
    pub phone: String,
    /// `None` leaves the stored value as it is.
    pub name: Option<String>,
    pub wa_id: Option<WaId>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub tags: TagPatch,
    /// Applied (and recorded in the history) only when it changes the state.
    pub subscription: Option<SubscriptionChange>,
    /// A business-scoped user id to link to the contact (an import's `bsuid` column). With
    /// no phone, `phone` holds this BSUID (the contact's address, migration 0015) and the
    /// contact already known by it, if any, is the one updated.
    pub bsuid: Option<String>,
}

/// A contact with everything the audience features show.
#[derive(Debug, Clone)]
pub struct AudienceContact {
    pub contact: ContactRecord,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub subscription: Subscription,
    pub subscription_source: Option<String>,
    pub subscription_at: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionEvent {
    pub state: Subscription,
    pub source: String,
    pub note: Option<String>,
    pub at: Millis,
}

/// What one upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpsertCounts {
    pub created: u64,
    pub updated: u64,
    /// Contacts not written at all: their tags, merged, would pass [`MAX_CONTACT_TAGS`] or
    /// [`MAX_CONTACT_TAG_BYTES`].
    pub refused: u64,
}

/// Subscription changes a contact's page and `GET /api/v1/contacts/{phone}` show (the
/// newest; every change is kept): each write that flips the subscription adds one.
pub const HISTORY_SHOWN: i64 = 50;

/// Tags a contact holds at most. Each write merges its tags into the stored ones, so without a
/// bound a client adding new names write after write grew one contact without end, and every
/// later write, list page and campaign plan read and rewrote all of it.
pub const MAX_CONTACT_TAGS: usize = 200;

/// The most bytes a contact's tags take as stored (JSON), the longest row an import takes.
pub const MAX_CONTACT_TAG_BYTES: usize = 64 * 1024;

/// Whether a write taking a contact's tags from `before` to `after` is refused: `after` passes
/// [`MAX_CONTACT_TAGS`] or [`MAX_CONTACT_TAG_BYTES`] and is larger than `before` (a contact
/// stored past the caps before they existed can still lose tags).
pub fn tags_grow_past_cap(before: &parley_domain::Tags, after: &parley_domain::Tags) -> bool {
    let bytes = |t: &parley_domain::Tags| serde_json::to_vec(t).map_or(usize::MAX, |j| j.len());
    let after_bytes = bytes(after);
    if after.len() <= MAX_CONTACT_TAGS && after_bytes <= MAX_CONTACT_TAG_BYTES {
        return false;
    }
    after.len() > before.len() || after_bytes > bytes(before)
}

/// Why an imported row was refused for its tags (`UpsertCounts::refused`).
pub const TAGS_OVER_CAP: &str =
    "with this row's tags the contact would hold more than 200 tags or 64 KiB of them";

/// Which contacts a list returns.
#[derive(Debug, Clone)]
pub struct ContactQuery<'a> {
    pub segment: &'a Segment,
    /// Substring of the phone number or (case-insensitively) of the name.
    pub search: Option<&'a str>,
    /// Keyset cursor: the last phone number of the previous page.
    pub after: Option<&'a str>,
    pub limit: u32,
    /// The instant relative times (`now-30d`) are measured from.
    pub now: OffsetDateTime,
}

/// One contact as a send needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    pub id: ContactId,
    /// E.164.
    pub phone: String,
    pub name: Option<String>,
    pub tags: Tags,
    pub subscription: Subscription,
}

/// What erasing a contact changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EraseReport {
    pub contacts: u64,
    pub messages: u64,
    pub inbound_messages: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub id: SegmentId,
    pub application_id: ApplicationId,
    pub name: String,
    /// The filter as written; parses with `Segment::parse`.
    pub filter: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportJobRecord {
    pub id: ImportId,
    pub application_id: ApplicationId,
    /// `csv` or `ndjson`.
    pub format: String,
    pub state: ImportState,
    pub rows_read: u64,
    pub created: u64,
    pub updated: u64,
    pub rejected: u64,
    /// Why the whole import stopped (unreadable upload), not a row's problem.
    pub error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finished_at: Option<Millis>,
    /// The upload's options as the engine wrote them (JSON), so a resume reads the same way.
    pub options: Option<String>,
    /// Bytes of the upload up to the end of the last row committed, and their SHA-256 (hex):
    /// a resumed upload skips them and must begin with the same bytes.
    pub committed_bytes: u64,
    pub committed_sha256: Option<String>,
}

/// A row an import could not take, with its 1-based line number in the upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: u64,
    pub reason: String,
    /// The row as read (truncated to a few KiB).
    pub raw: String,
}

#[async_trait]
pub trait AudienceStore: Send + Sync {
    /// Inserts or updates each contact (by application + phone) in one transaction, merging
    /// tag patches into the stored tags; later entries for the same phone see earlier ones.
    async fn upsert_audience(
        &self,
        app: &ApplicationId,
        contacts: &[ContactUpsert],
        now: Millis,
    ) -> Result<UpsertCounts>;
    async fn audience_contact(
        &self,
        app: &ApplicationId,
        phone: &str,
    ) -> Result<Option<AudienceContact>>;
    /// A page of contacts in phone order.
    async fn list_audience(
        &self,
        app: &ApplicationId,
        query: &ContactQuery<'_>,
    ) -> Result<Vec<AudienceContact>>;
    /// A page of what personalization needs of each contact in a segment (phone order):
    /// fewer columns than `list_audience`, for planners reading a whole audience.
    async fn recipients_page(
        &self,
        app: &ApplicationId,
        segment: &Segment,
        after: Option<&str>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<Vec<Recipient>>;
    async fn count_segment(
        &self,
        app: &ApplicationId,
        segment: &Segment,
        now: OffsetDateTime,
    ) -> Result<u64>;
    /// `count_segment` for a request: on the store's own small pool of filter connections
    /// ([`FILTER_CONNECTIONS`]), so expensive filters cannot take the connections health
    /// checks and other reads need; stopped after `budget` (`StoreError::TooExpensive`:
    /// PostgreSQL's `statement_timeout`, SQLite's progress handler) and stopped in the
    /// database as soon as the returned future is dropped (a client that hung up).
    async fn count_segment_bounded(
        &self,
        app: &ApplicationId,
        segment: &Segment,
        now: OffsetDateTime,
        budget: std::time::Duration,
    ) -> Result<u64>;
    /// `list_audience` bounded like [`AudienceStore::count_segment_bounded`].
    async fn list_audience_bounded(
        &self,
        app: &ApplicationId,
        query: &ContactQuery<'_>,
        budget: std::time::Duration,
    ) -> Result<Vec<AudienceContact>>;
    /// Bounded filter queries running now (holding one of the filter connections).
    fn filter_queries_running(&self) -> usize;
    /// Bounded filter statements stopped in the database because their request was dropped
    /// (since the store was opened).
    fn filter_queries_abandoned(&self) -> u64;
    /// The newest [`HISTORY_SHOWN`] changes, oldest first.
    async fn subscription_history(&self, contact: &ContactId) -> Result<Vec<SubscriptionEvent>>;
    /// The newest messages sent to this phone number, newest first.
    async fn messages_to(
        &self,
        app: &ApplicationId,
        phone: &str,
        limit: u32,
    ) -> Result<Vec<MessageRecord>>;
    /// Deletes the contact and its subscription history; messages to and from the number stay
    /// for statistics but lose the number, the contact link and their text. Queued messages
    /// to it are skipped.
    async fn erase_contact(&self, app: &ApplicationId, phone: &str) -> Result<EraseReport>;

    // --- segments ---------------------------------------------------------------------------
    /// Creates the segment unless its application keeps `cap` segments already (false then);
    /// concurrent creates stop exactly at the cap (`shared/caps.rs`).
    async fn create_segment(&self, segment: &SegmentRecord, cap: u64) -> Result<bool>;
    async fn segments(&self, app: &ApplicationId) -> Result<Vec<SegmentRecord>>;
    /// A page of the application's segments by name: those after `after_name`, at most
    /// `limit` (names are unique in an application, so the name is the page's key).
    async fn segments_after(
        &self,
        app: &ApplicationId,
        after_name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SegmentRecord>>;
    async fn segment(&self, app: &ApplicationId, id: &SegmentId) -> Result<Option<SegmentRecord>>;
    async fn segment_by_name(
        &self,
        app: &ApplicationId,
        name: &str,
    ) -> Result<Option<SegmentRecord>>;
    /// How many segments the application keeps.
    async fn count_segments(&self, app: &ApplicationId) -> Result<u64>;
    /// Deletes the application's segment `id`; false when it has none by that id. Campaigns
    /// that chose it keep the filter they copied when they were created.
    async fn delete_segment(&self, app: &ApplicationId, id: &SegmentId) -> Result<bool>;

    // --- imports ----------------------------------------------------------------------------
    async fn create_import_job(&self, job: &ImportJobRecord) -> Result<()>;
    /// Writes the job's state, counts, error, times, format and options (what an import detected).
    async fn update_import_job(&self, job: &ImportJobRecord) -> Result<()>;
    async fn add_import_rejects(&self, job: &ImportId, rows: &[RejectedRow]) -> Result<()>;
    /// One chunk of an import in one transaction: the contacts upserted (`lines[i]` the line
    /// of `contacts[i]`; a contact refused for its tags becomes a rejected row of that line,
    /// counted in the answer's `refused` and in the job's `rejected`), the rejected rows,
    /// and the job's progress (`job` holds the counts before this chunk's upserts, with
    /// `rows_read`, `rejected` and the committed bytes already advanced). A crash leaves the
    /// job's counts and committed bytes exactly at the rows the database holds.
    async fn commit_import_chunk(
        &self,
        job: &ImportJobRecord,
        contacts: &[ContactUpsert],
        lines: &[u64],
        rejects: &[RejectedRow],
        now: Millis,
    ) -> Result<UpsertCounts>;
    /// Imports still `running` that were last written before `before` (by a process that is
    /// gone) become `interrupted`, with the rows committed so far. Returns how many.
    async fn interrupt_stale_imports(&self, before: Millis, now: Millis) -> Result<u64>;
    /// Takes an `interrupted` (or `failed`) import back to `running` for a resume; `None` when
    /// it is not one (a concurrent resume took it, or it is running or done).
    async fn resume_import_job(
        &self,
        app: &ApplicationId,
        id: &ImportId,
        now: Millis,
    ) -> Result<Option<ImportJobRecord>>;
    async fn import_job(
        &self,
        app: &ApplicationId,
        id: &ImportId,
    ) -> Result<Option<ImportJobRecord>>;
    /// The application's imports, newest first, before the cursor (an import id).
    async fn import_jobs(
        &self,
        app: &ApplicationId,
        before: Option<&ImportId>,
        limit: u32,
    ) -> Result<Vec<ImportJobRecord>>;
    /// Deletes at most `limit` imports last written before `before` that are not running
    /// (done, failed, or interrupted and never resumed), each with its rejected rows (those a
    /// chunk at a time, in short transactions). An import a resume took back meanwhile is
    /// kept. Returns how many imports were deleted.
    async fn prune_import_jobs(&self, before: Millis, limit: u32) -> Result<u64>;
    /// Rejected rows in line order, after `after_line`.
    async fn import_rejects(
        &self,
        app: &ApplicationId,
        id: &ImportId,
        after_line: u64,
        limit: u32,
    ) -> Result<Vec<RejectedRow>>;
}

/// Applies a patch: each named tag replaces any stored tag whose name differs only in ASCII
/// case; `None` removes it.
pub fn merge_tags(tags: &mut parley_domain::Tags, patch: &TagPatch) {
    for (name, value) in patch {
        if tags.contains_key(name.as_str()) {
            tags.remove(name.as_str());
        }
        if tags.keys().any(|k| k.eq_ignore_ascii_case(name)) {
            tags.retain(|k, _| !k.eq_ignore_ascii_case(name));
        }
        if let Some(v) = value {
            tags.insert(name.clone(), v.clone());
        }
    }
}

impl ContactUpsert {
    /// The audience form of the core `NewContact` (tags merged, name kept when absent).
    pub fn from_new(c: &crate::NewContact) -> ContactUpsert {
        ContactUpsert {
            phone: c.phone.clone(),
            name: c.name.clone(),
            // The phone is E.164, so its digits are a valid wa_id.
            wa_id: WaId::parse(c.phone.trim_start_matches('+')).ok(),
            tags: c
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
            ..ContactUpsert::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erased_content_is_stored_as_before() {
        // The text SQLite stores (and PostgreSQL parses) since erasure was written.
        assert_eq!(
            serde_json::to_string(&ERASED_CONTENT).unwrap(),
            r#"{"type":"text","body":"","preview_url":false}"#
        );
    }
}
