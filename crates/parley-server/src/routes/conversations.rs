//! The inbox API (issue #15 item 2): `GET /api/v1/conversations`,
//! `GET /api/v1/conversations/{contact}`, `GET|POST /api/v1/conversations/{contact}/messages`,
//! `POST /api/v1/conversations/{contact}/read`, `POST /api/v1/conversations/{contact}/typing`,
//! `PUT /api/v1/conversations/{contact}/assignee`. `{contact}` is the contact id (`ctc_…`), an
//! E.164 phone (`%2B…`) or a BSUID.

use crate::error::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use parley_domain::UserId;
use parley_engine::conversations::{
    Conversation, ConversationFilter, MediaSource, Reply, ThreadItem, ThreadOrder,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AppAuth, Manages, Reads, Sends};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::routes::messages::{AcceptedBody, TemplateSpec, parse_variables, rfc3339};

/// The largest `POST /api/v1/conversations/{contact}/messages` body: a 16 MiB upload in base64.
pub const REPLY_BODY_LIMIT: usize = 24 * 1024 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    pub contact: ConversationContactView,
    /// Newest activity (the list's order); null for a contact without a conversation yet.
    pub last_activity_at: Option<String>,
    pub last_message: Option<LastMessageView>,
    /// Inbound messages since the conversation was last read.
    pub unread: i64,
    pub assignee: Option<AssigneeView>,
    pub window: WindowView,
    pub reply: ReplyView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationContactView {
    /// The contact id (`ctc_…`): use it as `{contact}`.
    pub id: String,
    pub name: Option<String>,
    /// E.164, when known.
    pub phone: Option<String>,
    /// Business-scoped user id.
    pub bsuid: Option<String>,
    pub parent_bsuid: Option<String>,
    pub username: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LastMessageView {
    /// `inbound` or `outbound`.
    pub direction: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssigneeView {
    pub user_id: String,
    pub email: String,
}

/// The 24 h customer-service window.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowView {
    pub open: bool,
    pub closes_at: Option<String>,
    pub seconds_left: i64,
}

/// What a reply may be now and what it costs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplyView {
    /// Text, media and reactions are allowed (the window is open); otherwise templates only.
    pub free_form: bool,
    /// `free`, `billed` (service replies are charged since 2026-10-01, META_2026 §5.3) or
    /// `free_entry_point` (the customer came from a click-to-WhatsApp ad or a Facebook Page
    /// button less than 72 h ago: everything the number sends them is free, templates
    /// included, META_2026 §5.1).
    pub billing: String,
    pub note: String,
    /// With `free_entry_point`: when the free entry point ends.
    pub free_until: Option<String>,
}

impl From<Conversation> for ConversationView {
    fn from(c: Conversation) -> Self {
        ConversationView {
            contact: ConversationContactView {
                id: c.contact.id.as_str().to_owned(),
                name: c.contact.name,
                phone: c.contact.phone,
                bsuid: c.contact.bsuid,
                parent_bsuid: c.contact.parent_bsuid,
                username: c.contact.username,
            },
            last_activity_at: c.last_activity_at.map(rfc3339),
            last_message: c.last_message.map(|m| LastMessageView {
                direction: m.direction.as_str().to_owned(),
                kind: m.kind,
                text: m.text,
                at: rfc3339(m.at),
            }),
            unread: c.unread,
            assignee: c.assignee.map(|a| AssigneeView {
                user_id: a.user_id.as_str().to_owned(),
                email: a.email,
            }),
            window: WindowView {
                open: c.window.open,
                closes_at: c.window.closes_at.map(rfc3339),
                seconds_left: c.window.seconds_left,
            },
            reply: ReplyView {
                free_form: c.reply.free_form,
                billing: c.reply.billing.as_str().to_owned(),
                note: c.reply.note,
                free_until: c.reply.free_until.map(rfc3339),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    pub data: Vec<ConversationView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ConversationListQuery {
    /// Page size, 1–100 (default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page's `next_cursor`.
    pub after: Option<String>,
    /// `true`: only conversations nobody is assigned to.
    pub unassigned: Option<bool>,
    /// Only conversations assigned to this user (`usr_…`).
    pub assignee: Option<String>,
    /// `open`: only conversations whose 24 h window is open.
    pub window: Option<String>,
    /// `true`: only conversations with unread messages.
    pub unread: Option<bool>,
    /// Search in the contact's name, phone, username and the last message's text (≤ 100 characters).
    pub q: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/conversations", tag = "conversations",
    params(ConversationListQuery),
    responses(
        (status = 200, description = "Conversations, newest activity first", body = ConversationList),
        (status = 400, description = "A malformed filter or cursor", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn list_conversations(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<ConversationListQuery>,
) -> Result<ApiJson<ConversationList>, ApiError> {
    let assignee = q
        .assignee
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(|a| {
            UserId::parse(a).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_user_id", e.to_string())
                    .field("assignee")
            })
        })
        .transpose()?;
    let window_open = match q.window.as_deref() {
        None | Some("") | Some("any") => false,
        Some("open") => true,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_filter",
                "`window` is `open` (or absent)",
            )
            .field("window"));
        }
    };
    let filter = ConversationFilter {
        unassigned: q.unassigned.unwrap_or(false),
        assignee,
        window_open,
        unread: q.unread.unwrap_or(false),
        q: q.q,
    };
    let page = state
        .engine
        .conversations(&app, &filter, q.limit.unwrap_or(50), q.after.as_deref())
        .await?;
    Ok(ApiJson(ConversationList {
        data: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get, path = "/api/v1/conversations/{contact}", tag = "conversations",
    params(("contact" = String, Path, description = "Contact id (`ctc_…`), E.164 phone or BSUID")),
    responses(
        (status = 200, description = "The conversation", body = ConversationView),
        (status = 404, description = "No such contact in this application", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn get_conversation(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(contact): Path<String>,
) -> Result<ApiJson<ConversationView>, ApiError> {
    Ok(ApiJson(
        state.engine.conversation(&app, &contact).await?.into(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadItemView {
    /// The wamid (inbound) or Parley's message id (outbound).
    pub id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub wamid: Option<String>,
    /// Inbound: its kind (`text`, `image`, `location`, …); outbound: `text`, `template`,
    /// `image`, `video`, `audio`, `document`, `sticker`.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    /// Inbound: the normalized body; outbound: what was sent.
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
    /// Received (inbound) or queued (outbound).
    pub at: String,
    /// Inbound: `received`; outbound: queued, sending, accepted, sent, delivered, read, failed or skipped.
    pub status: String,
    pub error: Option<ThreadErrorView>,
    /// The wamid this message replies to.
    pub reply_to: Option<String>,
    pub media: Option<ThreadMediaView>,
    pub reactions: Vec<ReactionView>,
    pub edited_at: Option<String>,
    pub revoked_at: Option<String>,
    pub campaign_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadErrorView {
    pub code: i64,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadMediaView {
    /// Inbound: `/media/inbound/{wamid}` (console session of the application); outbound: the link.
    pub url: Option<String>,
    /// Meta's media id (outbound uploads).
    pub id: Option<String>,
    pub mime_type: Option<String>,
    /// Inbound: pending, stored, refused, failed or expired; outbound: sent.
    pub state: String,
    pub filename: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReactionView {
    pub emoji: String,
    /// `inbound` (the customer's) or `outbound` (the business's).
    pub direction: String,
    pub at: String,
}

impl From<ThreadItem> for ThreadItemView {
    fn from(i: ThreadItem) -> Self {
        ThreadItemView {
            id: i.id,
            direction: i.direction.as_str().to_owned(),
            wamid: i.wamid,
            kind: i.kind,
            text: i.text,
            content: i.content,
            at: rfc3339(i.at),
            status: i.status,
            error: i
                .error
                .map(|(code, message)| ThreadErrorView { code, message }),
            reply_to: i.reply_to,
            media: i.media.map(|m| ThreadMediaView {
                url: m.url,
                id: m.id,
                mime_type: m.mime_type,
                state: m.state,
                filename: m.filename,
            }),
            reactions: i
                .reactions
                .into_iter()
                .map(|r| ReactionView {
                    emoji: r.emoji,
                    direction: r.direction.as_str().to_owned(),
                    at: rfc3339(r.at),
                })
                .collect(),
            edited_at: i.edited_at.map(rfc3339),
            revoked_at: i.revoked_at.map(rfc3339),
            campaign_id: i.campaign_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadList {
    pub data: Vec<ThreadItemView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ThreadQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page's `next_cursor` (it keeps the page's order).
    pub after: Option<String>,
    /// `newest` (default) or `oldest` first.
    pub order: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/conversations/{contact}/messages", tag = "conversations",
    params(
        ("contact" = String, Path, description = "Contact id (`ctc_…`), E.164 phone or BSUID"),
        ThreadQuery,
    ),
    responses(
        (status = 200, description = "Inbound and outbound messages by time; reactions attached to their message", body = ThreadList),
        (status = 400, description = "A malformed cursor or order", body = ErrorBody),
        (status = 404, description = "No such contact in this application", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn thread(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(contact): Path<String>,
    Query(q): Query<ThreadQuery>,
) -> Result<ApiJson<ThreadList>, ApiError> {
    let order = match q.order.as_deref() {
        None | Some("") | Some("newest") => ThreadOrder::NewestFirst,
        Some("oldest") => ThreadOrder::OldestFirst,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_order",
                "`order` is `newest` or `oldest`",
            )
            .field("order"));
        }
    };
    let page = state
        .engine
        .conversation_thread(
            &app,
            &contact,
            order,
            q.limit.unwrap_or(50),
            q.after.as_deref(),
        )
        .await?;
    Ok(ApiJson(ThreadList {
        data: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A reply: exactly one of `text`, `media`, `reaction` or `template`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    /// Free text (inside the window), at most 4096 characters.
    pub text: Option<String>,
    #[serde(default)]
    pub preview_url: bool,
    pub media: Option<ReplyMedia>,
    pub reaction: Option<ReplyReaction>,
    /// A template, at any time.
    pub template: Option<TemplateSpec>,
    /// The wamid of the message this one answers (text and media).
    pub reply_to: Option<String>,
}

/// A media reply: `link`, or the file in `upload_base64` with its `mime_type` (uploaded to
/// Meta, then sent by id). Sizes: image 5 MB, video and audio 16 MB, sticker 500 KB,
/// document 16 MB by upload (larger by link).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyMedia {
    /// image, video, audio, document or sticker.
    #[serde(rename = "type")]
    pub kind: String,
    pub link: Option<String>,
    pub upload_base64: Option<String>,
    pub mime_type: Option<String>,
    pub caption: Option<String>,
    pub filename: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyReaction {
    /// The wamid of the message reacted to.
    pub message_id: String,
    /// One emoji; empty removes the reaction.
    pub emoji: String,
}

#[utoipa::path(
    post, path = "/api/v1/conversations/{contact}/messages", tag = "conversations",
    params(("contact" = String, Path, description = "Contact id (`ctc_…`), E.164 phone or BSUID")),
    request_body = ReplyBody,
    responses(
        (status = 202, description = "Queued (the same send path as POST /api/v1/messages)", body = AcceptedBody),
        (status = 400, description = "A malformed reply (`text_too_long`, `ambiguous_message`, …)", body = ErrorBody),
        (status = 404, description = "No such contact in this application", body = ErrorBody),
        (status = 409, description = "`outside_service_window`: free-form outside the 24 h window; send a template", body = ErrorBody),
        (status = 413, description = "`body_too_large`: the request is over 24 MiB (refused before it is read)", body = ErrorBody),
        (status = 429, description = "`too_many_uploads`: the node handles its most uploads at once (a body over 64 KiB waits for none; retry after `Retry-After`)", body = ErrorBody),
        (status = 422, description = "`media_too_large`, `unsupported_media_type`, template errors", body = ErrorBody),
        (status = 502, description = "Meta refused the media upload", body = ErrorBody),
    ),
    security(("bearer" = ["send"]))
)]
pub async fn reply(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Sends>,
    Path(contact): Path<String>,
    _slot: crate::UploadSlot<REPLY_BODY_LIMIT>,
    ApiJson(body): ApiJson<ReplyBody>,
) -> Result<Response, ApiError> {
    let given = [
        body.text.is_some(),
        body.media.is_some(),
        body.reaction.is_some(),
        body.template.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ambiguous_message",
            "give exactly one of `text`, `media`, `reaction` or `template`",
        ));
    }
    let reply = if let Some(text) = body.text {
        Reply::Text {
            text,
            preview_url: body.preview_url,
            reply_to: body.reply_to,
        }
    } else if let Some(m) = body.media {
        let source = match (m.link, m.upload_base64) {
            (Some(link), None) => MediaSource::Link(link),
            (None, Some(b64)) => {
                if b64.len() > REPLY_BODY_LIMIT {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "media_too_large",
                        "the upload is over 16 MiB; send larger documents by link",
                    )
                    .field("media.upload_base64"));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_base64",
                            format!("`media.upload_base64` is not base64: {e}"),
                        )
                        .field("media.upload_base64")
                    })?;
                let mime_type = m.mime_type.ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "mime_type_required",
                        "an upload needs its `media.mime_type`, e.g. image/jpeg",
                    )
                    .field("media.mime_type")
                })?;
                MediaSource::Upload { bytes, mime_type }
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "media_source_required",
                    "give the media as `link` or as `upload_base64`, exactly one of them",
                )
                .field("media"));
            }
        };
        Reply::Media {
            media_type: m.kind,
            source,
            caption: m.caption,
            filename: m.filename,
            reply_to: body.reply_to,
        }
    } else if let Some(r) = body.reaction {
        Reply::Reaction {
            message_id: r.message_id,
            emoji: r.emoji,
        }
    } else if let Some(t) = body.template {
        Reply::Template {
            variables: parse_variables(t.variables)?,
            name: t.name,
            language: t.language,
        }
    } else {
        unreachable!("exactly one was given")
    };
    let accepted = state.engine.reply(&app, &contact, reply).await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(AcceptedBody {
            id: accepted.id.to_string(),
            state: accepted.state.as_str().to_owned(),
        }),
    )
        .into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadBody {
    pub unread: i64,
}

#[utoipa::path(
    post, path = "/api/v1/conversations/{contact}/read", tag = "conversations",
    params(("contact" = String, Path, description = "Contact id (`ctc_…`), E.164 phone or BSUID")),
    responses(
        (status = 200, description = "The latest inbound message is marked read at Meta (and every earlier one); unread is 0", body = ReadBody),
        (status = 404, description = "No such contact in this application", body = ErrorBody),
        (status = 502, description = "Meta refused or did not answer", body = ErrorBody),
    ),
    security(("bearer" = ["send"]))
)]
pub async fn mark_read(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Sends>,
    Path(contact): Path<String>,
) -> Result<ApiJson<ReadBody>, ApiError> {
    state.engine.mark_conversation_read(&app, &contact).await?;
    let c = state.engine.conversation(&app, &contact).await?;
    Ok(ApiJson(ReadBody { unread: c.unread }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TypingBody {
    pub ok: bool,
}

#[utoipa::path(
    post, path = "/api/v1/conversations/{contact}/typing", tag = "conversations",
    params(("contact" = String, Path, description = "Contact id (`ctc_…`), E.164 phone or BSUID")),
    responses(
        (status = 200, description = "Meta shows the typing indicator (up to 25 s or until the reply) and marks the latest message read", body = TypingBody),
        (status = 404, description = "No such contact in this application", body = ErrorBody),
        (status = 409, description = "`nothing_to_answer`: the customer never wrote", body = ErrorBody),
        (status = 502, description = "Meta refused or did not answer", body = ErrorBody),
    ),
    security(("bearer" = ["send"]))
)]
pub async fn typing(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Sends>,
    Path(contact): Path<String>,
) -> Result<ApiJson<TypingBody>, ApiError> {
    state.engine.send_typing(&app, &contact).await?;
    Ok(ApiJson(TypingBody { ok: true }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssigneeBody {
    /// A user of this application (`usr_…`), or null for nobody.
    pub user_id: Option<String>,
}

#[utoipa::path(
    put, path = "/api/v1/conversations/{contact}/assignee", tag = "conversations",
    params(("contact" = String, Path, description = "Contact id (`ctc_…`), E.164 phone or BSUID")),
    request_body = AssigneeBody,
    responses(
        (status = 200, description = "The conversation with its assignee", body = ConversationView),
        (status = 400, description = "A malformed user id", body = ErrorBody),
        (status = 404, description = "No such contact in this application", body = ErrorBody),
        (status = 422, description = "`not_a_member`: the user is not a user of this application", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn put_assignee(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(contact): Path<String>,
    ApiJson(body): ApiJson<AssigneeBody>,
) -> Result<ApiJson<ConversationView>, ApiError> {
    let user = body
        .user_id
        .as_deref()
        .map(|u| {
            UserId::parse(u).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_user_id", e.to_string())
                    .field("user_id")
            })
        })
        .transpose()?;
    let c = state
        .engine
        .assign_conversation(&app, &contact, user.as_ref())
        .await?;
    Ok(ApiJson(c.into()))
}
