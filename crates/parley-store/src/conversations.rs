//! The inbox (issue #15 item 2; migration 0027): one conversation per application and contact,
//! kept by `Store::record_inbound` and `Store::insert_message` (single sends), read here with
//! the contact, the assignee and the unread count; threads merge `inbound_messages` and
//! `messages` (campaign sends included) by time.

use async_trait::async_trait;
use parley_domain::{ApplicationId, ContactId, UserId};

use crate::inbound::InboundMessageRecord;
use crate::{ContactRecord, MessageRecord, Millis, Result};

/// One conversation as the list shows it.
#[derive(Debug, Clone)]
pub struct ConversationRecord {
    pub contact: ContactRecord,
    /// `None` for a contact that has no conversation yet (only campaign sends, or none).
    pub last_activity_at: Option<Millis>,
    /// `inbound` or `outbound`.
    pub last_direction: Option<String>,
    pub last_kind: Option<String>,
    pub last_text: Option<String>,
    pub last_inbound_wamid: Option<String>,
    pub last_inbound_at: Option<Millis>,
    pub read_until: Millis,
    pub assignee: Option<(UserId, String)>,
    /// Inbound messages (not reactions, edits, revokes or system notices) after `read_until`.
    pub unread: i64,
    /// When the customer last wrote with a click-to-WhatsApp or Page `referral` (a free entry
    /// point opens), and to which number (migration 0038).
    pub entry_point_at: Option<Millis>,
    pub entry_point_phone_number_id: Option<String>,
    /// The number the latest inbound message came to (where a reply goes from).
    pub last_inbound_phone_number_id: Option<String>,
}

/// What the list is narrowed to.
#[derive(Debug, Clone, Default)]
pub struct ConversationQuery {
    pub unassigned: bool,
    pub assignee: Option<UserId>,
    /// Only contacts whose last inbound is after this instant (the window is open).
    pub inbound_after: Option<Millis>,
    pub unread: bool,
    /// A LIKE pattern, already lower-cased and escaped with `\`.
    pub pattern: Option<String>,
}

/// A position in a thread: `(at, id)`, id the wamid (inbound) or the message id (outbound).
pub type ThreadCursor<'a> = Option<(Millis, &'a str)>;

/// An outbound message of a thread and the campaign that sent it, if any.
#[derive(Debug, Clone)]
pub struct ThreadOutbound {
    pub message: MessageRecord,
    pub campaign_id: Option<String>,
}

#[async_trait]
pub trait ConversationStore {
    /// A page of conversations, newest activity first, after `(last_activity_at, contact)`.
    async fn conversations(
        &self,
        app: &ApplicationId,
        query: &ConversationQuery,
        after: Option<(Millis, &str)>,
        limit: u32,
    ) -> Result<Vec<ConversationRecord>>;

    /// The conversation of one contact of the application (the contact alone when it has none).
    async fn conversation(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
    ) -> Result<Option<ConversationRecord>>;

    /// Inbound messages of the thread (not reactions, edits or revokes), from the cursor on.
    async fn thread_inbound(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        after: ThreadCursor<'_>,
        ascending: bool,
        limit: u32,
    ) -> Result<Vec<InboundMessageRecord>>;

    /// Outbound messages of the thread (not reactions), from the cursor on.
    async fn thread_outbound(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        after: ThreadCursor<'_>,
        ascending: bool,
        limit: u32,
    ) -> Result<Vec<ThreadOutbound>>;

    /// Reactions in both directions at or after `since`, oldest first (at most `limit` each).
    async fn thread_reactions(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        since: Millis,
        limit: u32,
    ) -> Result<(Vec<InboundMessageRecord>, Vec<MessageRecord>)>;

    /// Inbound messages up to `until` count as read; false when there is no conversation.
    async fn mark_conversation_read(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        until: Millis,
        now: Millis,
    ) -> Result<bool>;

    /// Sets or clears the assignee, creating the conversation row when needed.
    async fn assign_conversation(
        &self,
        app: &ApplicationId,
        contact: &ContactId,
        user: Option<&UserId>,
        now: Millis,
    ) -> Result<()>;
}
