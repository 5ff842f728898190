//! The console's inbox (issue #15 item 2): the conversations of the application, newest
//! activity first, with filters and search (`/inbox`), and one contact's thread with its reply
//! box (`/inbox/{contact}`). Both pages are server-rendered; their script (`inbox.js`) listens
//! to one server-sent event stream (`/inbox/events`, fed by the engine's conversation feed,
//! which rides the wake-up bus and so reaches every node) and reloads only the HTML fragment
//! that changed (`/inbox/list`, `/inbox/{contact}/live`): no polling.
//!
//! Replies, read receipts, the typing indicator and assignment are script calls to JSON
//! endpoints that go through the same engine calls as `/api/v1/conversations`. Agents may
//! reply and assign conversations to themselves; admins assign to anyone; viewers read.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use parley_domain::{ApplicationId, Role, UserId};
use parley_engine::conversations::{
    Conversation, ConversationFilter, Direction, FeedEvent, MediaSource, Reply, ThreadItem,
    ThreadOrder,
};
use parley_engine::{EngineError, ErrorKind};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::campaigns::MAX_LIVE_STREAMS;
use super::{PageError, PageResult, SignedIn, SignedInJson, SignedInJsonAs, render};
use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::routes::messages::rfc3339;

/// Conversations per page of the list.
const LIST_PAGE: u32 = 25;
/// Messages per page of a thread.
const THREAD_PAGE: u32 = 50;
/// A stream ends after this long; the browser's `EventSource` opens a new one at once.
const STREAM_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Changes arriving this close together go out as one event.
const COALESCE: Duration = Duration::from_millis(200);

// --- Labels -----------------------------------------------------------------------------------

/// "23 h 12 min left", "4 min left", or "closed".
fn window_label(open: bool, seconds_left: i64) -> String {
    if !open || seconds_left <= 0 {
        return "closed".into();
    }
    let h = seconds_left / 3600;
    let m = (seconds_left % 3600) / 60;
    match (h, m) {
        (0, 0) => "under a minute left".into(),
        (0, m) => format!("{m} min left"),
        (h, m) => format!("{h} h {m} min left"),
    }
}

/// The reply's billing rule as a sentence, with the end of a free entry point.
fn billing_note(reply: &parley_engine::conversations::ReplyTerms) -> String {
    match reply.free_until {
        Some(until) => format!("{} Free until {}.", reply.note, rfc3339(until)),
        None => reply.note.clone(),
    }
}

fn billing_label(billing: &str) -> &'static str {
    match billing {
        "free" => "free",
        "free_entry_point" => "free (entry point)",
        _ => "billed",
    }
}

fn status_label(status: &str) -> &'static str {
    match status {
        "queued" => "queued",
        "sending" => "sending",
        "accepted" => "accepted",
        "sent" => "sent",
        "delivered" => "delivered",
        "read" => "read",
        "played" => "played",
        "failed" => "failed",
        "skipped" => "skipped",
        "received" => "",
        _ => "other",
    }
}

/// One line for a message: its text, else its kind in brackets.
fn snippet(kind: &str, text: Option<&str>, chars: usize) -> String {
    match text.filter(|t| !t.trim().is_empty()) {
        Some(t) => {
            let mut s: String = t.chars().take(chars).collect();
            if t.chars().count() > chars {
                s.push('…');
            }
            s
        }
        None => format!("[{kind}]"),
    }
}

// --- The list ---------------------------------------------------------------------------------

struct Row {
    contact_id: String,
    title: String,
    identities: Vec<(&'static str, String)>,
    last_at: String,
    last_text: String,
    last_inbound: bool,
    unread: i64,
    window_open: bool,
    window: String,
    billing: String,
    billing_label: &'static str,
    billing_note: String,
    assignee: String,
}

fn identities(
    c: &parley_engine::conversations::ConversationContact,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(p) = &c.phone {
        out.push(("phone", p.clone()));
    }
    if let Some(u) = &c.username {
        out.push(("username", format!("@{u}")));
    }
    if let Some(b) = &c.bsuid {
        out.push(("BSUID", b.clone()));
    }
    if let Some(b) = &c.parent_bsuid {
        out.push(("parent BSUID", b.clone()));
    }
    out
}

fn row(c: Conversation) -> Row {
    let title = c
        .contact
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| c.contact.address.clone());
    let (last_text, last_inbound) = match &c.last_message {
        Some(m) => (
            snippet(&m.kind, m.text.as_deref(), 90),
            matches!(m.direction, Direction::Inbound),
        ),
        None => (String::new(), false),
    };
    let billing = c.reply.billing.as_str().to_owned();
    Row {
        contact_id: c.contact.id.to_string(),
        identities: identities(&c.contact),
        title,
        last_at: c.last_activity_at.map(rfc3339).unwrap_or_default(),
        last_text,
        last_inbound,
        unread: c.unread,
        window_open: c.window.open,
        window: window_label(c.window.open, c.window.seconds_left),
        billing_label: billing_label(&billing),
        billing,
        billing_note: billing_note(&c.reply),
        assignee: c.assignee.map(|a| a.email).unwrap_or_default(),
    }
}

/// `?filter=unassigned|mine|open|unread&q=…&after=…`.
#[derive(Deserialize, Default, Clone)]
pub struct ListQuery {
    #[serde(default)]
    pub filter: String,
    #[serde(default)]
    pub q: String,
    pub after: Option<String>,
}

struct FilterLink {
    value: &'static str,
    label: &'static str,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "inbox_list.html")]
struct ListFragment {
    rows: Vec<Row>,
    next: Option<String>,
    empty_message: &'static str,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    active: &'static str,
    email: String,
    filters: Vec<FilterLink>,
    filter: String,
    q: String,
    after: String,
    list: String,
}

fn filter_of(q: &ListQuery, me: &UserId) -> ConversationFilter {
    let search = q.q.trim();
    ConversationFilter {
        unassigned: q.filter == "unassigned",
        assignee: (q.filter == "mine").then(|| me.clone()),
        window_open: q.filter == "open",
        unread: q.filter == "unread",
        q: (!search.is_empty()).then(|| search.chars().take(100).collect()),
    }
}

fn list_href(filter: &str, q: &str, after: Option<&str>) -> String {
    let mut parts = Vec::new();
    if !filter.is_empty() {
        parts.push(format!("filter={}", super::query_value(filter)));
    }
    if !q.is_empty() {
        parts.push(format!("q={}", super::query_value(q)));
    }
    if let Some(a) = after {
        parts.push(format!("after={}", super::query_value(a)));
    }
    if parts.is_empty() {
        "/inbox".into()
    } else {
        format!("/inbox?{}", parts.join("&"))
    }
}

async fn list_html(state: &AppState, me: &SignedIn, q: &ListQuery) -> Result<String, EngineError> {
    let page = state
        .engine
        .conversations(
            &me.app.id,
            &filter_of(q, &me.user_id),
            LIST_PAGE,
            q.after.as_deref().filter(|a| !a.is_empty()),
        )
        .await?;
    let next = page
        .next_cursor
        .map(|c| list_href(&q.filter, &q.q, Some(&c)));
    let filtered = !q.filter.is_empty() || !q.q.trim().is_empty();
    let fragment = ListFragment {
        rows: page.items.into_iter().map(row).collect(),
        next,
        empty_message: if filtered {
            "No conversation matches."
        } else {
            "No conversations yet: they start when a customer writes or a message is sent."
        },
    };
    Ok(fragment.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "inbox list could not be rendered");
        String::new()
    }))
}

fn page_error(e: EngineError) -> PageError {
    PageError::Text(crate::error::status_of(&e), e.message)
}

/// `GET /inbox`: the conversations with their filters, search and pagination.
pub async fn inbox_page(
    State(state): State<AppState>,
    me: SignedIn,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let list = list_html(&state, &me, &q).await.map_err(page_error)?;
    let filters = [
        ("", "All"),
        ("unassigned", "Unassigned"),
        ("mine", "Mine"),
        ("open", "Open window"),
        ("unread", "Unread"),
    ]
    .into_iter()
    .map(|(value, label)| FilterLink {
        value,
        label,
        href: list_href(value, &q.q, None),
        current: q.filter == value,
    })
    .collect();
    Ok(render(&InboxPage {
        active: "inbox",
        email: me.email.clone(),
        filters,
        filter: q.filter.clone(),
        q: q.q.clone(),
        after: q.after.clone().unwrap_or_default(),
        list,
    }))
}

/// `GET /inbox/list?…`: the list alone, for the page's live reload.
pub async fn list_fragment(
    State(state): State<AppState>,
    me: SignedIn,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let list = list_html(&state, &me, &q).await.map_err(page_error)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(list)).into_response())
}

// --- The thread -------------------------------------------------------------------------------

struct Reaction {
    emoji: String,
    mine: bool,
}

struct Quote {
    wamid: String,
    text: String,
}

struct Media {
    url: String,
    kind: &'static str,
    state: String,
    mime: String,
    filename: String,
}

struct Item {
    id: String,
    wamid: String,
    inbound: bool,
    kind: String,
    text: String,
    at: String,
    status: &'static str,
    error: String,
    quote: Option<Quote>,
    media: Option<Media>,
    reactions: Vec<Reaction>,
    edited: bool,
    revoked: bool,
    campaign: String,
}

fn media_of(item: &ThreadItem) -> Option<Media> {
    let m = item.media.as_ref()?;
    let mime = m.mime_type.clone().unwrap_or_default();
    // Only the customer's files are served here (`/media/inbound/{wamid}`); what the business
    // sent is named, not fetched from elsewhere (the console's policy allows no other origin).
    let inbound = matches!(item.direction, Direction::Inbound);
    let kind = if !inbound {
        "sent"
    } else if mime.starts_with("image/") && mime != "image/svg+xml" {
        "image"
    } else if mime.starts_with("video/") {
        "video"
    } else if mime.starts_with("audio/") {
        "audio"
    } else {
        "file"
    };
    Some(Media {
        url: if inbound {
            m.url.clone().unwrap_or_default()
        } else {
            String::new()
        },
        kind,
        state: m.state.clone(),
        mime,
        filename: m.filename.clone().unwrap_or_default(),
    })
}

fn items_of(mut raw: Vec<ThreadItem>) -> Vec<Item> {
    // Shown oldest first; the page came newest first.
    raw.reverse();
    let texts: HashMap<String, String> = raw
        .iter()
        .filter_map(|i| {
            i.wamid
                .clone()
                .map(|w| (w, snippet(&i.kind, i.text.as_deref(), 80)))
        })
        .collect();
    raw.into_iter()
        .map(|i| {
            let inbound = matches!(i.direction, Direction::Inbound);
            let quote = i.reply_to.as_ref().map(|w| Quote {
                wamid: w.clone(),
                text: texts
                    .get(w)
                    .cloned()
                    .unwrap_or_else(|| "an earlier message".into()),
            });
            let media = media_of(&i);
            Item {
                wamid: i.wamid.clone().unwrap_or_default(),
                inbound,
                text: i.text.clone().unwrap_or_default(),
                at: rfc3339(i.at),
                status: if inbound { "" } else { status_label(&i.status) },
                error: i
                    .error
                    .as_ref()
                    .map(|(code, msg)| format!("{code}: {msg}"))
                    .unwrap_or_default(),
                quote,
                media,
                reactions: i
                    .reactions
                    .iter()
                    .filter(|r| !r.emoji.is_empty())
                    .map(|r| Reaction {
                        emoji: r.emoji.clone(),
                        mine: matches!(r.direction, Direction::Outbound),
                    })
                    .collect(),
                edited: i.edited_at.is_some(),
                revoked: i.revoked_at.is_some(),
                campaign: i.campaign_id.clone().unwrap_or_default(),
                kind: i.kind,
                id: i.id,
            }
        })
        .collect()
}

struct TemplateOption {
    name: String,
    language: String,
}

#[derive(Template)]
#[template(path = "inbox_live.html")]
struct LiveFragment {
    contact_id: String,
    identities: Vec<(&'static str, String)>,
    window_open: bool,
    window: String,
    /// Seconds until the window closes (the page reloads the thread then).
    seconds_left: i64,
    closes_at: String,
    billing: String,
    billing_label: &'static str,
    billing_note: String,
    unread: i64,
    assignee_id: String,
    assignee: String,
    items: Vec<Item>,
    older: Option<String>,
    can_reply: bool,
}

#[derive(Template)]
#[template(path = "inbox_thread.html")]
struct ThreadPage {
    active: &'static str,
    email: String,
    contact_id: String,
    title: String,
    me: String,
    role: &'static str,
    can_reply: bool,
    can_assign_others: bool,
    members: Vec<(String, String)>,
    before: String,
    live: String,
    templates: Vec<TemplateOption>,
    /// `[{name, language, category, variables: [{key, where, kind}]}]` for the picker.
    templates_json: String,
}

/// `?before=…`: an older page of the thread.
#[derive(Deserialize, Default)]
pub struct ThreadQuery {
    pub before: Option<String>,
}

async fn live_html(
    state: &AppState,
    me: &SignedIn,
    contact: &str,
    before: Option<&str>,
) -> Result<(Conversation, String), EngineError> {
    let engine = &state.engine;
    let conversation = engine.conversation(&me.app.id, contact).await?;
    let page = engine
        .conversation_thread(
            &me.app.id,
            contact,
            ThreadOrder::NewestFirst,
            THREAD_PAGE,
            before.filter(|b| !b.is_empty()),
        )
        .await?;
    let contact_id = conversation.contact.id.to_string();
    let older = page
        .next_cursor
        .map(|c| format!("/inbox/{}?before={}", contact_id, super::query_value(&c)));
    let c = &conversation;
    let billing = c.reply.billing.as_str().to_owned();
    let fragment = LiveFragment {
        contact_id: contact_id.clone(),
        identities: identities(&c.contact),
        window_open: c.window.open,
        window: window_label(c.window.open, c.window.seconds_left),
        seconds_left: c.window.seconds_left.max(0),
        closes_at: c.window.closes_at.map(rfc3339).unwrap_or_default(),
        billing_label: billing_label(&billing),
        billing,
        billing_note: billing_note(&c.reply),
        unread: c.unread,
        assignee_id: c
            .assignee
            .as_ref()
            .map(|a| a.user_id.to_string())
            .unwrap_or_default(),
        assignee: c
            .assignee
            .as_ref()
            .map(|a| a.email.clone())
            .unwrap_or_default(),
        items: items_of(page.items),
        older,
        can_reply: me.role.allows(Role::Agent),
    };
    let html = fragment.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "inbox thread could not be rendered");
        String::new()
    });
    Ok((conversation, html))
}

/// `GET /inbox/{contact}`: the thread, its facts and the reply box.
pub async fn thread_page(
    State(state): State<AppState>,
    me: SignedIn,
    Path(contact): Path<String>,
    Query(q): Query<ThreadQuery>,
) -> PageResult {
    let (conversation, live) = live_html(&state, &me, &contact, q.before.as_deref())
        .await
        .map_err(page_error)?;
    let engine = &state.engine;
    let members = if me.role.allows(Role::Admin) {
        engine
            .members(&me.app.id)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.role.allows(Role::Agent))
            .map(|m| (m.user_id.to_string(), m.email))
            .collect()
    } else {
        Vec::new()
    };
    let sendable: Vec<_> = engine
        .templates(&me.app.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.deleted_at.is_none() && t.template.is_sendable().is_ok())
        .collect();
    let templates_json: Vec<Value> = sendable
        .iter()
        .map(|t| {
            let vars: Vec<Value> = t
                .template
                .variables()
                .into_iter()
                .map(|s| {
                    json!({"key": s.key, "where": super::campaigns::slot_where(s.location), "kind": super::campaigns::slot_kind(s.kind)})
                })
                .collect();
            json!({
                "name": t.template.name.as_str(),
                "language": t.template.language.as_str(),
                "category": t.template.category.as_str(),
                "variables": vars,
            })
        })
        .collect();
    let templates = sendable
        .iter()
        .map(|t| TemplateOption {
            name: t.template.name.as_str().to_owned(),
            language: t.template.language.as_str().to_owned(),
        })
        .collect();
    let c = &conversation;
    Ok(render(&ThreadPage {
        active: "inbox",
        email: me.email.clone(),
        contact_id: c.contact.id.to_string(),
        title: c
            .contact
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| c.contact.address.clone()),
        me: me.user_id.to_string(),
        role: me.role.as_str(),
        can_reply: me.role.allows(Role::Agent),
        can_assign_others: me.role.allows(Role::Admin),
        members,
        before: q.before.unwrap_or_default(),
        live,
        templates,
        // `</` cannot end the script element it is embedded in.
        templates_json: serde_json::to_string(&templates_json)
            .unwrap_or_else(|_| "[]".into())
            .replace("</", "<\\/"),
    }))
}

/// `GET /inbox/{contact}/live?before=…`: the thread's facts and messages, for the live reload.
pub async fn live_fragment(
    State(state): State<AppState>,
    me: SignedIn,
    Path(contact): Path<String>,
    Query(q): Query<ThreadQuery>,
) -> PageResult {
    let (_, html) = live_html(&state, &me, &contact, q.before.as_deref())
        .await
        .map_err(page_error)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

// --- Actions (script calls) -------------------------------------------------------------------

/// `POST /inbox/{contact}/reply`: exactly one of `{"text", "reply_to"?}`,
/// `{"reaction": {"message_id", "emoji"}}`, `{"template": {"name", "language", "variables"}}`.
#[derive(Deserialize)]
pub struct ReplyBody {
    text: Option<String>,
    reply_to: Option<String>,
    reaction: Option<ReactionBody>,
    template: Option<TemplateBody>,
}

#[derive(Deserialize)]
pub struct ReactionBody {
    message_id: String,
    #[serde(default)]
    emoji: String,
}

#[derive(Deserialize)]
pub struct TemplateBody {
    name: String,
    language: String,
    #[serde(default)]
    variables: Value,
}

fn one_of_required() -> EngineError {
    EngineError::bad_request(
        "reply_invalid",
        "give exactly one of text, reaction or template",
    )
}

pub async fn reply(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Path(contact): Path<String>,
    ApiJson(body): ApiJson<ReplyBody>,
) -> Result<Response, ApiError> {
    let given = [
        body.text.is_some(),
        body.reaction.is_some(),
        body.template.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(one_of_required().into());
    }
    let reply = if let Some(text) = body.text {
        Reply::Text {
            text,
            preview_url: false,
            reply_to: body.reply_to.filter(|r| !r.is_empty()),
        }
    } else if let Some(r) = body.reaction {
        Reply::Reaction {
            message_id: r.message_id,
            emoji: r.emoji,
        }
    } else if let Some(t) = body.template {
        Reply::Template {
            name: t.name,
            language: t.language,
            variables: parley_engine::campaigns::variable_input(&t.variables)?,
        }
    } else {
        return Err(one_of_required().into());
    };
    let accepted = state.engine.reply(&app.id, &contact, reply).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"id": accepted.id.to_string(), "state": "queued"})),
    )
        .into_response())
}

/// `POST /inbox/{contact}/media?type=image&mime_type=image/png&caption=…&filename=…`: the
/// file's bytes as the body (the page's script posts the chosen file as is).
#[derive(Deserialize)]
pub struct MediaQuery {
    #[serde(rename = "type")]
    kind: String,
    mime_type: String,
    caption: Option<String>,
    filename: Option<String>,
    reply_to: Option<String>,
}

pub async fn reply_media(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Path(contact): Path<String>,
    Query(q): Query<MediaQuery>,
    _slot: crate::UploadSlot<{ parley_engine::conversations::MAX_UPLOAD_BYTES }>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    // Meta's limit for the kind, checked on the declared length before the body is read, and
    // while it is read (a body of unknown length stops one byte past it).
    let Some((limit, _)) = parley_engine::conversations::media_limits(&q.kind) else {
        return Err(EngineError::bad_request(
            "invalid_media_type",
            "`type` is one of image, video, audio, document, sticker",
        )
        .field("type")
        .into());
    };
    let too_large = |size: String| -> ApiError {
        EngineError::unprocessable(
            "media_too_large",
            format!(
                "a {} has at most {limit} bytes on WhatsApp; this one has {size}",
                q.kind
            ),
        )
        .field("media")
        .into()
    };
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n > limit as u64)
    {
        return Err(too_large(n.to_string()));
    }
    let body: Bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large("more".to_owned()))?;
    if body.is_empty() {
        return Err(EngineError::bad_request("media_empty", "the file is empty").into());
    }
    let reply = Reply::Media {
        media_type: q.kind,
        source: MediaSource::Upload {
            // Takes the buffer over rather than copying it (it is not shared).
            bytes: Vec::from(body),
            mime_type: q.mime_type,
        },
        caption: q.caption.filter(|c| !c.is_empty()),
        filename: q.filename.filter(|f| !f.is_empty()),
        reply_to: q.reply_to.filter(|r| !r.is_empty()),
    };
    let accepted = state.engine.reply(&app.id, &contact, reply).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"id": accepted.id.to_string(), "state": "queued"})),
    )
        .into_response())
}

/// `POST /inbox/{contact}/read`: the thread was opened (or a message arrived while it is
/// open): the latest inbound message is marked read at Meta and the unread count cleared.
pub async fn read(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Path(contact): Path<String>,
) -> Result<Response, ApiError> {
    state
        .engine
        .mark_conversation_read(&app.id, &contact)
        .await?;
    Ok(axum::Json(json!({"unread": 0})).into_response())
}

/// `POST /inbox/{contact}/typing`: the agent started typing; Meta shows the customer the
/// typing indicator (with the read receipt, one call, §8.1). The script calls it once per
/// burst of typing, at most every 20 s (the indicator lasts 25 s).
pub async fn typing(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Path(contact): Path<String>,
) -> Result<Response, ApiError> {
    state.engine.send_typing(&app.id, &contact).await?;
    Ok(axum::Json(json!({"ok": true})).into_response())
}

/// `POST /inbox/{contact}/assign` `{"user_id": "usr_…" | null}`. An agent may take a
/// conversation (assign it to themselves) or give back their own; assigning to someone else,
/// or taking one from someone else, needs an admin.
#[derive(Deserialize)]
pub struct AssignBody {
    user_id: Option<String>,
}

pub async fn assign(
    State(state): State<AppState>,
    SignedInJsonAs(me): SignedInJsonAs,
    Path(contact): Path<String>,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Response, ApiError> {
    let engine = &state.engine;
    let target = body
        .user_id
        .filter(|u| !u.is_empty())
        .map(|u| {
            UserId::parse(&u).map_err(|e| {
                EngineError::bad_request("invalid_user_id", e.to_string()).field("user_id")
            })
        })
        .transpose()?;
    if !me.role.allows(Role::Admin) {
        let current = engine.conversation(&me.app.id, &contact).await?;
        let current = current.assignee.map(|a| a.user_id);
        let taking = target.as_ref() == Some(&me.user_id)
            && current.as_ref().is_none_or(|c| *c == me.user_id);
        let giving_back = target.is_none() && current.as_ref() == Some(&me.user_id);
        if !(taking || giving_back) {
            return Err(EngineError::new(
                ErrorKind::Forbidden,
                super::INSUFFICIENT_ROLE,
                "Agents assign conversations to themselves only (and give back their own); an admin assigns to others.",
            )
            .into());
        }
    }
    let c = engine
        .assign_conversation(&me.app.id, &contact, target.as_ref())
        .await?;
    Ok(axum::Json(json!({
        "assignee": c.assignee.map(|a| json!({"user_id": a.user_id.to_string(), "email": a.email})),
    }))
    .into_response())
}

// --- Live updates -----------------------------------------------------------------------------

/// One open stream between events.
struct InboxStream {
    feed: parley_engine::conversations::ConversationFeed,
    app: ApplicationId,
    ends: tokio::time::Instant,
    closing: CancellationToken,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl InboxStream {
    /// The next `changed` event: the contact ids changed since the last (`*`: reload all).
    async fn next(mut self) -> Option<(Result<Event, Infallible>, InboxStream)> {
        let mut changed: Vec<String> = Vec::new();
        let mut everything = false;
        // Wait for the first change of this application.
        loop {
            tokio::select! {
                _ = self.closing.cancelled() => return None,
                _ = tokio::time::sleep_until(self.ends) => return None,
                e = self.feed.next() => match e {
                    FeedEvent::Changed(c) if c.app == self.app => {
                        changed.push(c.contact.to_string());
                        break;
                    }
                    FeedEvent::Changed(_) => {}
                    FeedEvent::Lagged => { everything = true; break; }
                    FeedEvent::Closed => return None,
                },
            }
        }
        // Gather what follows closely (a burst of statuses) into the same event.
        let until = tokio::time::Instant::now() + COALESCE;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                e = self.feed.next() => match e {
                    FeedEvent::Changed(c) if c.app == self.app => {
                        let id = c.contact.to_string();
                        if !changed.contains(&id) {
                            changed.push(id);
                        }
                    }
                    FeedEvent::Changed(_) => {}
                    FeedEvent::Lagged => everything = true,
                    FeedEvent::Closed => break,
                },
            }
        }
        let data = if everything || changed.len() > 50 {
            "*".to_owned()
        } else {
            changed.join(" ")
        };
        Some((Ok(Event::default().event("changed").data(data)), self))
    }
}

/// `GET /inbox/events`: `event: changed`, data the space-separated contact ids whose
/// conversation changed (a message in or out, a status, read, assignment), on any node; `*`
/// when the node lost track. One stream per open inbox page; 429 `too_many_live_streams` when
/// the node serves `MAX_LIVE_STREAMS` already (the page then offers a reload).
pub async fn events(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
) -> Result<Response, ApiError> {
    let feed = state.engine.conversation_feed();
    let slot = state.live.slots.clone().try_acquire_owned().map_err(|_| {
        EngineError::new(
            ErrorKind::TooManyRequests,
            "too_many_live_streams",
            format!(
                "this node already serves {MAX_LIVE_STREAMS} live streams; reload the page for news"
            ),
        )
    })?;
    let stream = InboxStream {
        feed,
        app: app.id.clone(),
        ends: tokio::time::Instant::now() + STREAM_LIFETIME,
        closing: state.live.closing.clone(),
        _slot: slot,
    };
    // A first event at once: the page knows the stream is open (and reloads what may have
    // changed between its render and the subscription).
    let first = futures::stream::once(async {
        Ok::<_, Infallible>(Event::default().event("changed").data("*"))
    });
    let events =
        futures::StreamExt::chain(first, futures::stream::unfold(stream, InboxStream::next));
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Sse::new(events).keep_alive(KeepAlive::default()),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(
            window_label(true, 23 * 3600 + 12 * 60 + 5),
            "23 h 12 min left"
        );
        assert_eq!(window_label(true, 240), "4 min left");
        assert_eq!(window_label(true, 20), "under a minute left");
        assert_eq!(window_label(false, 500), "closed");
        assert_eq!(billing_label("free_entry_point"), "free (entry point)");
        assert_eq!(billing_label("billed"), "billed");
        assert_eq!(snippet("image", None, 10), "[image]");
        assert_eq!(snippet("text", Some("abcdefghijkl"), 5), "abcde…");
        assert_eq!(list_href("mine", "a b", None), "/inbox?filter=mine&q=a%20b");
        assert_eq!(list_href("", "", None), "/inbox");
    }
}
