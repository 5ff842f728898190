//! The inbox (issue #15 item 2): conversations per application and contact, their threads
//! (inbound and outbound interleaved by time, campaign sends included), replies through the one
//! send path (`Engine::accept_message`), read receipts and the typing indicator at Meta,
//! assignment to a console user, and the live-update feed (`Wakeup::Inbox` on the wake-up bus).
//!
//! `{contact}` everywhere is a contact id (`ctc_…`), an E.164 phone or a BSUID.

use std::collections::{BTreeSet, HashMap};

use parley_domain::{
    ApplicationId, ContactId, MessageContent, PhoneNumberId, UserId, VariableInput, Wamid,
    in_service_window, service_window_closes_at,
};
use parley_meta::GraphError;
use parley_store::conversations::{ConversationQuery, ConversationRecord};
use parley_store::{InboundMessageRecord, Wakeup};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock::to_datetime;
use crate::messages::{Accepted, SendBody, SendRequest};
use crate::{Engine, EngineError, ErrorKind};

/// Service (non-template) messages are charged per message from this instant (META_2026 §5.3:
/// 2026-10-01 00:00 UTC); before it they were free inside the window.
pub const SERVICE_CHARGED_FROM: i64 = 1_790_812_800_000;
/// The longest search text.
pub const MAX_QUERY_CHARS: usize = 100;
/// Conversations per page at most.
pub const MAX_PAGE: u32 = 100;
/// Thread items per page at most.
pub const MAX_THREAD_PAGE: u32 = 200;
/// Reactions read for one thread page, per direction.
const REACTIONS_PER_PAGE: u32 = 1_000;
/// The largest upload an inbox reply takes (Meta's video and audio limit; documents over it go
/// by link).
pub const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;
/// More conversations than this changed in one gathering: announce "some conversations".
const INBOX_MAX_IDS: usize = 64;

/// Which conversations a list shows.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub unassigned: bool,
    pub assignee: Option<UserId>,
    pub window_open: bool,
    pub unread: bool,
    pub q: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConversationContact {
    pub id: ContactId,
    pub name: Option<String>,
    /// E.164, when known.
    pub phone: Option<String>,
    pub bsuid: Option<String>,
    pub parent_bsuid: Option<String>,
    pub username: Option<String>,
    /// What a send goes to: the phone, else the BSUID.
    pub address: String,
}

#[derive(Debug, Clone)]
pub struct LastMessage {
    pub direction: Direction,
    pub kind: String,
    pub text: Option<String>,
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct Assignee {
    pub user_id: UserId,
    pub email: String,
}

#[derive(Debug, Clone)]
pub struct WindowView {
    pub open: bool,
    pub closes_at: Option<i64>,
    pub seconds_left: i64,
}

/// What a reply now costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyBilling {
    /// Inside the window before 2026-10-01.
    Free,
    Billed,
    /// Inside a 72 h free entry point: the customer came from a click-to-WhatsApp ad or a
    /// Facebook Page button (an inbound `referral`); everything is free, templates included.
    FreeEntryPoint,
}

impl ReplyBilling {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyBilling::Free => "free",
            ReplyBilling::Billed => "billed",
            ReplyBilling::FreeEntryPoint => "free_entry_point",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReplyTerms {
    /// Text, media and reactions are allowed now (the window is open).
    pub free_form: bool,
    pub billing: ReplyBilling,
    pub note: String,
    /// The end of the free entry point the reply falls in (`FreeEntryPoint` only).
    pub free_until: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub contact: ConversationContact,
    /// The sort key (newest first); `None` for a contact without a conversation yet.
    pub last_activity_at: Option<i64>,
    pub last_message: Option<LastMessage>,
    pub unread: i64,
    pub assignee: Option<Assignee>,
    pub window: WindowView,
    pub reply: ReplyTerms,
}

#[derive(Debug, Clone)]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreadOrder {
    #[default]
    NewestFirst,
    OldestFirst,
}

#[derive(Debug, Clone)]
pub struct ThreadMedia {
    /// Inbound: `/media/inbound/{wamid}` (console session). Outbound: the link sent, if any.
    pub url: Option<String>,
    /// Meta's media id (outbound uploads).
    pub id: Option<String>,
    pub mime_type: Option<String>,
    /// Inbound: `pending`, `stored`, `refused`, `failed` or `expired`; outbound: `sent`.
    pub state: String,
    pub filename: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reaction {
    pub emoji: String,
    pub direction: Direction,
    pub at: i64,
}

#[derive(Debug, Clone)]
pub struct ThreadItem {
    /// The wamid (inbound) or Parley's message id (outbound).
    pub id: String,
    pub direction: Direction,
    pub wamid: Option<String>,
    pub kind: String,
    pub text: Option<String>,
    pub content: serde_json::Value,
    pub at: i64,
    pub status: String,
    pub error: Option<(i64, String)>,
    pub reply_to: Option<String>,
    pub media: Option<ThreadMedia>,
    pub reactions: Vec<Reaction>,
    pub edited_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub campaign_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ThreadPage {
    pub items: Vec<ThreadItem>,
    pub next_cursor: Option<String>,
}

/// Where the bytes of a media reply come from.
#[derive(Debug, Clone)]
pub enum MediaSource {
    /// Uploaded to Meta (`POST /{phone-number-id}/media`) and sent by id.
    Upload {
        bytes: Vec<u8>,
        mime_type: String,
    },
    Link(String),
}

/// A reply in a conversation.
#[derive(Debug, Clone)]
pub enum Reply {
    Text {
        text: String,
        preview_url: bool,
        reply_to: Option<String>,
    },
    Media {
        media_type: String,
        source: MediaSource,
        caption: Option<String>,
        filename: Option<String>,
        reply_to: Option<String>,
    },
    Reaction {
        message_id: String,
        emoji: String,
    },
    Template {
        name: String,
        language: String,
        variables: VariableInput,
    },
}

/// A conversation changed (live updates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationChanged {
    pub app: ApplicationId,
    pub contact: ContactId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    Changed(ConversationChanged),
    /// Changes were missed (lag, reconnect, or too many at once): reload.
    Lagged,
    Closed,
}

/// Live updates of every conversation on every node (`Engine::conversation_feed`).
pub struct ConversationFeed {
    rx: broadcast::Receiver<Wakeup>,
}

impl ConversationFeed {
    /// The next change; filter by application yourself.
    pub async fn next(&mut self) -> FeedEvent {
        loop {
            match self.rx.recv().await {
                Ok(Wakeup::Inbox(payload)) => {
                    let Some((app, contact)) = payload.split_once(' ') else {
                        return FeedEvent::Lagged;
                    };
                    match (ApplicationId::parse(app), ContactId::parse(contact)) {
                        (Ok(app), Ok(contact)) => {
                            return FeedEvent::Changed(ConversationChanged { app, contact });
                        }
                        _ => return FeedEvent::Lagged,
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return FeedEvent::Lagged,
                Err(broadcast::error::RecvError::Closed) => return FeedEvent::Closed,
            }
        }
    }
}

/// The largest file Meta takes for a media type, and the MIME types it accepts
/// (META_API.md §2.6).
pub fn media_limits(media_type: &str) -> Option<(usize, &'static [&'static str])> {
    const MB: usize = 1024 * 1024;
    Some(match media_type {
        "image" => (5 * MB, &["image/jpeg", "image/png"]),
        "video" => (16 * MB, &["video/mp4", "video/3gpp"]),
        "audio" => (
            16 * MB,
            &[
                "audio/aac",
                "audio/amr",
                "audio/mpeg",
                "audio/mp4",
                "audio/ogg",
            ],
        ),
        "sticker" => (500 * 1024, &["image/webp"]),
        "document" => (
            MAX_UPLOAD_BYTES,
            &[
                "text/plain",
                "application/pdf",
                "application/msword",
                "application/vnd.ms-excel",
                "application/vnd.ms-powerpoint",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            ],
        ),
        _ => return None,
    })
}

/// The terms of a reply now: free-form inside the window; free inside a free entry point
/// (`entry_point_at`: the customer's latest message with a `referral` on the number the reply
/// goes from), else billed or free by the date.
pub fn reply_terms(
    last_inbound: Option<i64>,
    entry_point_at: Option<i64>,
    now: i64,
) -> (WindowView, ReplyTerms) {
    let open = in_service_window(last_inbound.map(to_datetime), to_datetime(now));
    let closes_at = service_window_closes_at(last_inbound.map(to_datetime))
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    let seconds_left = if open {
        closes_at.map_or(0, |c| ((c - now).max(0)) / 1000)
    } else {
        0
    };
    let free_until = entry_point_at
        .map(|at| at.saturating_add(parley_domain::pricing::FREE_ENTRY_POINT_MS))
        .filter(|until| now < *until);
    let (billing, note) = if free_until.is_some() {
        (
            ReplyBilling::FreeEntryPoint,
            if open {
                "Free: the customer came from a click-to-WhatsApp ad or a Facebook Page button, so for 72 h Meta charges nothing this number sends them (free entry point)."
            } else {
                "The 24-hour window is closed: only a template can be sent. It is free: the customer came from a click-to-WhatsApp ad or a Facebook Page button less than 72 h ago (free entry point)."
            },
        )
    } else if !open {
        (
            ReplyBilling::Billed,
            "The 24-hour window is closed: only a template can be sent, charged by its category.",
        )
    } else if now >= SERVICE_CHARGED_FROM {
        (
            ReplyBilling::Billed,
            "Since 1 October 2026 Meta charges every service reply (per delivered message, at the market's utility rate), except inside a free entry point window opened by a click-to-WhatsApp ad.",
        )
    } else {
        (
            ReplyBilling::Free,
            "Service replies inside the 24-hour window are free until 1 October 2026.",
        )
    };
    (
        WindowView {
            open,
            closes_at,
            seconds_left,
        },
        ReplyTerms {
            free_form: open,
            billing,
            note: note.to_owned(),
            free_until,
        },
    )
}

fn parse_cursor(cursor: &str, field: &str) -> Result<(i64, String), EngineError> {
    cursor
        .split_once('.')
        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
        .filter(|(_, id)| !id.is_empty() && id.len() <= 256)
        .ok_or_else(|| {
            EngineError::bad_request(
                "invalid_cursor",
                "`after` is a `next_cursor` from an earlier page",
            )
            .field(field)
        })
}

/// `q` as a LIKE pattern: lower-cased, `%`, `_` and `\` escaped, within `%…%`.
fn like_pattern(q: &str) -> Result<Option<String>, EngineError> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(None);
    }
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(EngineError::bad_request(
            "query_too_long",
            format!("the search text has at most {MAX_QUERY_CHARS} characters"),
        )
        .field("q"));
    }
    let mut p = String::from("%");
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    Ok(Some(p))
}

fn upstream(e: &GraphError, what: &str) -> EngineError {
    match e.code() {
        None => EngineError::new(
            ErrorKind::Upstream,
            "meta_unavailable",
            format!("Meta did not answer when Parley {what} ({e}). Retry in a moment."),
        ),
        Some(_) => EngineError::new(
            ErrorKind::Upstream,
            "meta_refused",
            format!("Meta refused when Parley {what}: {e}"),
        ),
    }
}

impl Engine {
    /// A page of the application's conversations, newest activity first.
    pub async fn conversations(
        &self,
        app: &ApplicationId,
        filter: &ConversationFilter,
        limit: u32,
        after: Option<&str>,
    ) -> Result<ConversationPage, EngineError> {
        let now = self.now();
        let query = ConversationQuery {
            unassigned: filter.unassigned,
            assignee: filter.assignee.clone(),
            inbound_after: filter
                .window_open
                .then(|| now - parley_domain::SERVICE_WINDOW.whole_milliseconds() as i64),
            unread: filter.unread,
            pattern: match &filter.q {
                Some(q) => like_pattern(q)?,
                None => None,
            },
        };
        let cursor = match after {
            None | Some("") => None,
            Some(c) => Some(parse_cursor(c, "after")?),
        };
        let limit = limit.clamp(1, MAX_PAGE);
        let mut rows = self
            .store
            .conversations(
                app,
                &query,
                cursor.as_ref().map(|(at, id)| (*at, id.as_str())),
                limit + 1,
            )
            .await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|r| {
                format!(
                    "{}.{}",
                    r.last_activity_at.unwrap_or_default(),
                    r.contact.id.as_str()
                )
            })
        } else {
            None
        };
        Ok(ConversationPage {
            items: rows
                .into_iter()
                .map(|r| conversation_view(r, now))
                .collect(),
            next_cursor,
        })
    }

    /// One conversation (a contact without one yet shows with no activity).
    pub async fn conversation(
        &self,
        app: &ApplicationId,
        contact: &str,
    ) -> Result<Conversation, EngineError> {
        let record = self.conversation_record(app, contact).await?;
        Ok(conversation_view(record, self.now()))
    }

    async fn conversation_record(
        &self,
        app: &ApplicationId,
        key: &str,
    ) -> Result<ConversationRecord, EngineError> {
        let not_found = || crate::audience::contact_not_found(key);
        let id = if key.starts_with(ContactId::PREFIX) {
            ContactId::parse(key).map_err(|_| not_found())?
        } else {
            let address = self.contact_address(app, key).await?;
            self.store
                .contact_by_phone(app, &address)
                .await?
                .ok_or_else(not_found)?
                .id
        };
        self.store
            .conversation(app, &id)
            .await?
            .ok_or_else(not_found)
    }

    /// The thread: inbound and outbound messages interleaved by time, reactions attached.
    pub async fn conversation_thread(
        &self,
        app: &ApplicationId,
        contact: &str,
        order: ThreadOrder,
        limit: u32,
        after: Option<&str>,
    ) -> Result<ThreadPage, EngineError> {
        let record = self.conversation_record(app, contact).await?;
        let id = &record.contact.id;
        let cursor = match after {
            None | Some("") => None,
            Some(c) => Some(parse_cursor(c, "after")?),
        };
        let limit = limit.clamp(1, MAX_THREAD_PAGE);
        let ascending = order == ThreadOrder::OldestFirst;
        let at = cursor.as_ref().map(|(at, id)| (*at, id.as_str()));
        let inbound = self
            .store
            .thread_inbound(app, id, at, ascending, limit + 1)
            .await?;
        let outbound = self
            .store
            .thread_outbound(app, id, at, ascending, limit + 1)
            .await?;
        let mut items: Vec<ThreadItem> = inbound
            .into_iter()
            .map(inbound_item)
            .chain(
                outbound
                    .into_iter()
                    .map(|o| outbound_item(o.message, o.campaign_id)),
            )
            .collect();
        items.sort_by(|a, b| {
            let ord = (a.at, a.id.as_str()).cmp(&(b.at, b.id.as_str()));
            if ascending { ord } else { ord.reverse() }
        });
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|i| format!("{}.{}", i.at, i.id))
        } else {
            None
        };
        if let Some(since) = items.iter().map(|i| i.at).min() {
            let (inbound, outbound) = self
                .store
                .thread_reactions(app, id, since, REACTIONS_PER_PAGE)
                .await?;
            attach_reactions(&mut items, &inbound, &outbound);
        }
        Ok(ThreadPage { items, next_cursor })
    }

    /// Sends a reply through the one send path (`accept_message`). Free-form content outside
    /// the window is refused (409 `outside_service_window`) before anything reaches Meta;
    /// a template goes at any time.
    pub async fn reply(
        &self,
        app: &ApplicationId,
        contact: &str,
        reply: Reply,
    ) -> Result<Accepted, EngineError> {
        let record = self.conversation_record(app, contact).await?;
        let address = record.contact.phone.clone();
        let number = self.reply_number(app, &record).await?;
        let free_form = !matches!(reply, Reply::Template { .. });
        let now = self.now();
        if free_form
            && !in_service_window(
                record.contact.last_inbound_at.map(to_datetime),
                to_datetime(now),
            )
        {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "outside_service_window",
                "the customer has not written in the last 24 hours, so WhatsApp only allows a template now: send a template (with its variables)",
            ));
        }
        let parse_reply_to = |r: Option<String>| -> Result<Option<Wamid>, EngineError> {
            r.filter(|s| !s.is_empty())
                .map(|s| {
                    Wamid::parse(&s).map_err(|e| {
                        EngineError::bad_request("invalid_reply_to", e.to_string())
                            .field("reply_to")
                    })
                })
                .transpose()
        };
        let (body, reply_to) = match reply {
            Reply::Text {
                text,
                preview_url,
                reply_to,
            } => (
                SendBody::Text { text, preview_url },
                parse_reply_to(reply_to)?,
            ),
            Reply::Template {
                name,
                language,
                variables,
            } => (
                SendBody::Template {
                    name,
                    language,
                    variables,
                },
                None,
            ),
            Reply::Reaction { message_id, emoji } => {
                (SendBody::Reaction { message_id, emoji }, None)
            }
            Reply::Media {
                media_type,
                source,
                caption,
                filename,
                reply_to,
            } => {
                let reply_to = parse_reply_to(reply_to)?;
                let (limit, types) = media_limits(&media_type).ok_or_else(|| {
                    EngineError::bad_request(
                        "invalid_media_type",
                        "`media.type` is one of image, video, audio, document, sticker",
                    )
                    .field("media.type")
                })?;
                let (id, link, mime_type) = match source {
                    MediaSource::Link(link) => (None, Some(link), None),
                    MediaSource::Upload { bytes, mime_type } => {
                        let mime = mime_type.trim().to_ascii_lowercase();
                        if !types.contains(&mime.as_str()) {
                            return Err(EngineError::unprocessable(
                                "unsupported_media_type",
                                format!(
                                    "WhatsApp takes {media_type} files of type {}; this one is `{mime}`",
                                    types.join(", ")
                                ),
                            )
                            .field("media.mime_type"));
                        }
                        if bytes.is_empty() || bytes.len() > limit {
                            return Err(EngineError::unprocessable(
                                "media_too_large",
                                format!(
                                    "a {media_type} has 1 byte to {limit} bytes on WhatsApp; this one has {}",
                                    bytes.len()
                                ),
                            )
                            .field("media"));
                        }
                        let name = filename.clone().unwrap_or_else(|| media_type.clone());
                        let id = self.upload_media(&number, &bytes, &mime, &name).await?;
                        (Some(id), None, Some(mime))
                    }
                };
                (
                    SendBody::Media {
                        media_type,
                        id,
                        link,
                        caption,
                        filename,
                        mime_type,
                    },
                    reply_to,
                )
            }
        };
        let accepted = self
            .accept_message(
                app,
                SendRequest {
                    to: address,
                    body,
                    phone_number_id: Some(number),
                    reply_to,
                    idempotency_key: None,
                },
            )
            .await?;
        self.conversation_changed(app, &record.contact.id);
        Ok(accepted)
    }

    /// The number a reply goes from: the one the customer last wrote to, else the
    /// application's only number.
    async fn reply_number(
        &self,
        app: &ApplicationId,
        record: &ConversationRecord,
    ) -> Result<PhoneNumberId, EngineError> {
        if let Some(wamid) = &record.last_inbound_wamid
            && let Some(m) = self.store.inbound_message(app, wamid).await?
            && self
                .store
                .phone_number(&m.phone_number_id)
                .await?
                .is_some_and(|n| &n.application_id == app)
        {
            return Ok(m.phone_number_id);
        }
        self.sending_number(app, None).await
    }

    async fn number_token(&self, number: &PhoneNumberId) -> Result<String, EngineError> {
        let record = self
            .store
            .phone_number(number)
            .await?
            .ok_or_else(|| EngineError::phone_number_not_found(number.as_str()))?;
        Ok(self.store.platform_token(&record.platform_id).await?)
    }

    async fn upload_media(
        &self,
        number: &PhoneNumberId,
        bytes: &[u8],
        mime: &str,
        filename: &str,
    ) -> Result<String, EngineError> {
        let token = self.number_token(number).await?;
        self.graph
            .upload_media(&token, number.as_str(), bytes, mime, filename)
            .await
            .map_err(|e| upstream(&e, "uploaded the media"))
    }

    /// Marks the latest inbound message read at Meta (which marks every earlier one too) and
    /// zeroes the unread count.
    pub async fn mark_conversation_read(
        &self,
        app: &ApplicationId,
        contact: &str,
    ) -> Result<(), EngineError> {
        let record = self.conversation_record(app, contact).await?;
        let (Some(wamid), Some(at)) = (&record.last_inbound_wamid, record.last_inbound_at) else {
            return Ok(());
        };
        self.read_at_meta(app, wamid, false).await?;
        self.store
            .mark_conversation_read(app, &record.contact.id, at, self.now())
            .await?;
        self.conversation_changed(app, &record.contact.id);
        Ok(())
    }

    /// Shows the typing indicator (with a read receipt for the latest inbound message: one
    /// call, META_2026 §8.1). 409 `nothing_to_answer` when the customer never wrote.
    pub async fn send_typing(&self, app: &ApplicationId, contact: &str) -> Result<(), EngineError> {
        let record = self.conversation_record(app, contact).await?;
        let Some(wamid) = &record.last_inbound_wamid else {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "nothing_to_answer",
                "the customer has not written yet: a typing indicator names the message being answered",
            ));
        };
        self.read_at_meta(app, wamid, true).await
    }

    async fn read_at_meta(
        &self,
        app: &ApplicationId,
        wamid: &str,
        typing: bool,
    ) -> Result<(), EngineError> {
        let Some(message) = self.store.inbound_message(app, wamid).await? else {
            return Ok(());
        };
        let token = self.number_token(&message.phone_number_id).await?;
        let body = if typing {
            parley_meta::typing_indicator_body(wamid)
        } else {
            parley_meta::mark_read_body(wamid)
        };
        self.graph
            .mark_read(&token, message.phone_number_id.as_str(), &body)
            .await
            .map_err(|e| {
                upstream(
                    &e,
                    if typing {
                        "sent the typing indicator"
                    } else {
                        "marked the conversation read"
                    },
                )
            })
    }

    /// Assigns the conversation to a user of the application, or to nobody.
    pub async fn assign_conversation(
        &self,
        app: &ApplicationId,
        contact: &str,
        user: Option<&UserId>,
    ) -> Result<Conversation, EngineError> {
        let record = self.conversation_record(app, contact).await?;
        if let Some(user) = user {
            // One lookup by key: the members list grows with the application's users.
            if self.store.role(user, app).await?.is_none() {
                return Err(EngineError::unprocessable(
                    "not_a_member",
                    format!("{user} is not a user of this application; invite them first"),
                )
                .field("user_id"));
            }
        }
        self.store
            .assign_conversation(app, &record.contact.id, user, self.now())
            .await?;
        self.conversation_changed(app, &record.contact.id);
        self.conversation(app, record.contact.id.as_str()).await
    }

    /// Live updates of every conversation, on every node. Subscribe before the first read.
    pub fn conversation_feed(&self) -> ConversationFeed {
        ConversationFeed {
            rx: self.subscribe_wakeups(),
        }
    }

    /// Announces a change at once (a user's action).
    pub(crate) fn conversation_changed(&self, app: &ApplicationId, contact: &ContactId) {
        self.store.wakeups().publish(Wakeup::Inbox(format!(
            "{} {}",
            app.as_str(),
            contact.as_str()
        )));
    }

    /// Notes a change found by the webhook processor; announced within `LIVE_GATHER`.
    pub(crate) fn conversation_touched(&self, app: &ApplicationId, contact: &ContactId) {
        self.conversations_touched(std::iter::once((app, contact)));
    }

    /// Notes that any conversation may have changed (a burst of statuses projected): every
    /// live page reloads, within `LIVE_GATHER`.
    pub(crate) fn every_conversation_touched(&self) {
        let mut dirty = self.inbox_dirty.lock().unwrap_or_else(|e| e.into_inner());
        dirty.insert("*".to_owned());
    }

    /// The same for many, under one lock. Past [`INBOX_MAX_IDS`] gathered the announce is
    /// "every conversation" whatever else is added, so nothing more is formatted or kept: a
    /// round of 1,000 statuses formatted and sorted a key per contact (`perf`, the webhook
    /// bench) to announce `*`.
    pub(crate) fn conversations_touched<'a>(
        &self,
        touched: impl IntoIterator<Item = (&'a ApplicationId, &'a ContactId)>,
    ) {
        let mut dirty = self.inbox_dirty.lock().unwrap_or_else(|e| e.into_inner());
        for (app, contact) in touched {
            if dirty.len() > INBOX_MAX_IDS {
                return;
            }
            dirty.insert(format!("{} {}", app.as_str(), contact.as_str()));
        }
    }
}

/// Announces the gathered conversation changes (called by `wake::announce_progress`).
pub(crate) fn announce_gathered(engine: &Engine) {
    let dirty: BTreeSet<String> =
        std::mem::take(&mut *engine.inbox_dirty.lock().unwrap_or_else(|e| e.into_inner()));
    let bus = engine.store.wakeups();
    if dirty.len() > INBOX_MAX_IDS || dirty.contains("*") {
        bus.publish(Wakeup::Inbox("*".to_owned()));
    } else {
        for d in dirty {
            bus.publish(Wakeup::Inbox(d));
        }
    }
}

fn conversation_view(r: ConversationRecord, now: i64) -> Conversation {
    // A free entry point is per business number: it covers a reply only when the reply goes
    // from the number the referral came to (the number the customer last wrote to).
    let entry_point_at = r.entry_point_at.filter(|_| {
        match (
            &r.entry_point_phone_number_id,
            &r.last_inbound_phone_number_id,
        ) {
            (Some(entry), Some(last)) => entry == last,
            (Some(_), None) => true,
            (None, _) => false,
        }
    });
    let (window, reply) = reply_terms(r.contact.last_inbound_at, entry_point_at, now);
    let c = &r.contact;
    let last_message = match (&r.last_direction, r.last_activity_at, &r.last_kind) {
        (Some(dir), Some(at), Some(kind)) if kind != "none" => Some(LastMessage {
            direction: if dir == "inbound" {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            kind: kind.clone(),
            text: r.last_text.clone(),
            at,
        }),
        _ => None,
    };
    Conversation {
        contact: ConversationContact {
            id: c.id.clone(),
            name: c.name.clone(),
            phone: c.phone_number().map(str::to_owned),
            bsuid: c.bsuid.clone(),
            parent_bsuid: c.parent_bsuid.clone(),
            username: c.username.clone(),
            address: c.phone.clone(),
        },
        last_activity_at: r.last_activity_at,
        last_message,
        unread: r.unread,
        assignee: r
            .assignee
            .map(|(user_id, email)| Assignee { user_id, email }),
        window,
        reply,
    }
}

fn inbound_item(m: InboundMessageRecord) -> ThreadItem {
    let media = m.media.as_ref().map(|media| ThreadMedia {
        url: Some(format!("/media/inbound/{}", m.wamid.as_str())),
        id: None,
        mime_type: media.mime_type.clone().or(media.declared_mime.clone()),
        state: media.state.as_str().to_owned(),
        filename: None,
    });
    ThreadItem {
        id: m.wamid.as_str().to_owned(),
        direction: Direction::Inbound,
        wamid: Some(m.wamid.as_str().to_owned()),
        kind: m.kind.as_str().to_owned(),
        text: m.text.clone(),
        content: m.body.clone().unwrap_or_else(|| m.raw.clone()),
        at: m.received_at,
        status: "received".to_owned(),
        error: None,
        reply_to: m.refers_to.clone(),
        media,
        reactions: Vec::new(),
        edited_at: m.edited_at,
        revoked_at: m.revoked_at,
        campaign_id: None,
    }
}

fn outbound_item(m: parley_store::MessageRecord, campaign_id: Option<String>) -> ThreadItem {
    let (kind, media) = match &m.content {
        MessageContent::Media {
            media_type,
            id,
            link,
            filename,
            mime_type,
            ..
        } => (
            media_type.clone(),
            Some(ThreadMedia {
                url: link.clone(),
                id: id.clone(),
                mime_type: mime_type.clone(),
                state: "sent".to_owned(),
                filename: filename.clone(),
            }),
        ),
        c => (c.kind().to_owned(), None),
    };
    ThreadItem {
        id: m.id.as_str().to_owned(),
        direction: Direction::Outbound,
        wamid: m.wamid.as_ref().map(|w| w.as_str().to_owned()),
        kind,
        text: m.content.summary(),
        content: serde_json::to_value(&m.content).unwrap_or_default(),
        at: m.queued_at,
        status: m.state.as_str().to_owned(),
        error: m
            .error_code
            .map(|code| (code, m.error_message.clone().unwrap_or_default())),
        reply_to: m.reply_to.as_ref().map(|w| w.as_str().to_owned()),
        media,
        reactions: Vec::new(),
        edited_at: None,
        revoked_at: None,
        campaign_id,
    }
}

/// The latest reaction per side goes on the message it names (an empty emoji removes it).
fn attach_reactions(
    items: &mut [ThreadItem],
    inbound: &[InboundMessageRecord],
    outbound: &[parley_store::MessageRecord],
) {
    // (target wamid, direction) → (emoji, at), oldest first so the latest wins.
    let mut latest: HashMap<(String, Direction), (String, i64)> = HashMap::new();
    for r in inbound {
        if let Some(target) = &r.refers_to {
            let emoji = r.text.clone().unwrap_or_default();
            latest.insert((target.clone(), Direction::Inbound), (emoji, r.received_at));
        }
    }
    for m in outbound {
        if let MessageContent::Reaction { message_id, emoji } = &m.content {
            latest.insert(
                (message_id.clone(), Direction::Outbound),
                (emoji.clone(), m.queued_at),
            );
        }
    }
    if latest.is_empty() {
        return;
    }
    for item in items.iter_mut() {
        let Some(wamid) = &item.wamid else { continue };
        for dir in [Direction::Inbound, Direction::Outbound] {
            if let Some((emoji, at)) = latest.get(&(wamid.clone(), dir))
                && !emoji.is_empty()
            {
                item.reactions.push(Reaction {
                    emoji: emoji.clone(),
                    direction: dir,
                    at: *at,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_inside_the_window_is_billed_from_october_2026_and_free_before() {
        let hour = 3_600_000;
        let (w, t) = reply_terms(
            Some(SERVICE_CHARGED_FROM - 2 * hour),
            None,
            SERVICE_CHARGED_FROM - hour,
        );
        assert!(w.open && t.free_form);
        assert_eq!(t.billing, ReplyBilling::Free);
        assert_eq!(w.seconds_left, 23 * 3600);
        let (w, t) = reply_terms(
            Some(SERVICE_CHARGED_FROM),
            None,
            SERVICE_CHARGED_FROM + hour,
        );
        assert!(w.open);
        assert_eq!(t.billing, ReplyBilling::Billed);
        let (w, t) = reply_terms(Some(0), None, SERVICE_CHARGED_FROM);
        assert!(!w.open && !t.free_form);
        assert_eq!(w.seconds_left, 0);
        let (w, _) = reply_terms(None, None, SERVICE_CHARGED_FROM);
        assert_eq!(w.closes_at, None);
    }

    #[test]
    fn a_referral_makes_every_reply_free_for_72_hours_templates_included() {
        let hour = 3_600_000;
        let t0 = SERVICE_CHARGED_FROM + 10 * hour;
        // Inside the window: free entry point, free-form allowed.
        let (w, t) = reply_terms(Some(t0), Some(t0), t0 + hour);
        assert!(w.open && t.free_form);
        assert_eq!(t.billing, ReplyBilling::FreeEntryPoint);
        assert_eq!(t.billing.as_str(), "free_entry_point");
        assert_eq!(t.free_until, Some(t0 + 72 * hour));
        // Window closed (30 h later), entry point still open: templates only, and free.
        let (w, t) = reply_terms(Some(t0), Some(t0), t0 + 30 * hour);
        assert!(!w.open && !t.free_form);
        assert_eq!(t.billing, ReplyBilling::FreeEntryPoint);
        // 72 h after the referral it is billed again.
        let (_, t) = reply_terms(Some(t0), Some(t0), t0 + 72 * hour);
        assert_eq!(t.billing, ReplyBilling::Billed);
        assert_eq!(t.free_until, None);
    }

    #[test]
    fn search_text_is_escaped_and_bounded() {
        assert_eq!(like_pattern("  ").unwrap(), None);
        assert_eq!(like_pattern("A_b%").unwrap().as_deref(), Some("%a\\_b\\%%"));
        assert!(like_pattern(&"x".repeat(MAX_QUERY_CHARS + 1)).is_err());
    }

    #[test]
    fn cursors_round_trip_with_dots_in_wamids() {
        assert_eq!(
            parse_cursor("12.wamid.HBg=", "after").unwrap(),
            (12, "wamid.HBg=".to_owned())
        );
        assert!(parse_cursor("x.y", "after").is_err());
        assert!(parse_cursor("12.", "after").is_err());
    }
}
