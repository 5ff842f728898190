//! `POST /api/v1/messages`, `GET /api/v1/messages/{id}`, `GET /api/v1/messages`.

use crate::error::Query;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parley_domain::{MessageContent, MessageId, PhoneNumberId, VariableInput, Wamid};
use parley_engine::EngineError;
use parley_engine::messages::{SendBody, SendRequest};
use parley_store::MessageRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AppAuth, Reads, Sends};
use crate::error::{ApiError, ApiJson, ErrorBody};

/// A message to send: a template (`template`) or, inside the 24 h window, free text (`text`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageBody {
    /// Recipient in E.164, e.g. `+4915112345678`, or a business-scoped user id (BSUID), e.g.
    /// `US.13491208655302741918`. A contact whose phone is known is sent by phone; one known
    /// only by BSUID goes by Meta's `recipient`.
    pub to: String,
    pub template: Option<TemplateSpec>,
    /// Free-form text; may hold dynamic content such as `{{first_name|CapitalizeFirst|there}}`.
    pub text: Option<String>,
    /// Show a link preview for the first URL in `text`.
    #[serde(default)]
    pub preview_url: bool,
    /// The sending number; optional when the application has exactly one.
    pub phone_number_id: Option<String>,
    /// wamid of a message to reply to.
    pub reply_to: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Template name, e.g. `welcome`.
    pub name: String,
    /// Language code, e.g. `en` or `en_US`.
    pub language: String,
    /// Values per variable: an object keyed by parameter name (`first_name`), position (`"1"`),
    /// `header` or `button.<index>`; or an array with one value per variable in template order.
    /// Each value is a literal or dynamic content over the contact's tags:
    /// `{{first_name|CapitalizeFirst|there}}`.
    #[schema(value_type = Object)]
    pub variables: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedBody {
    /// Parley's message id.
    pub id: String,
    /// `queued` for a new message; the current state when an `Idempotency-Key` repeats.
    pub state: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    /// queued, sending, accepted, sent, delivered, read, failed or skipped.
    pub state: String,
    /// The address it went to: E.164, or the business-scoped user id (BSUID) when Parley knew
    /// no phone for the contact.
    pub to: String,
    pub phone_number_id: String,
    /// `template` or `text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What was (or will be) sent, with every variable rendered for this recipient.
    #[schema(value_type = Object)]
    pub content: serde_json::Value,
    /// Meta's message id once Meta accepted the send.
    pub wamid: Option<String>,
    pub reply_to: Option<String>,
    pub error: Option<MessageErrorView>,
    pub attempts: i64,
    pub timestamps: Timestamps,
    /// True while Meta holds the accepted send for quality assessment (template or portfolio
    /// pacing): no `sent` until Meta releases it; a release moves it on, a drop fails it
    /// (132015 or 135000).
    pub held_by_meta: bool,
    /// How many times Meta's per-user marketing limit (131049) sent it back for 24 h.
    pub capped_by_meta: i64,
    /// The `pricing` object of Meta's latest status carrying one (`billable`, `pricing_model`,
    /// `type`, `category`), as received.
    #[schema(value_type = Option<Object>)]
    pub pricing: Option<serde_json::Value>,
    /// `marketing_messages` when it was sent through the Marketing Messages API
    /// (`POST /{phone}/marketing_messages`); absent for the Cloud API `/messages`.
    pub sent_via: Option<String>,
    /// Sent through the Marketing Messages API, but Meta delivered it through the Cloud API
    /// (`CLOUD_API_FALLBACK`: the WABA's onboarding was not complete); Meta charged it as
    /// `marketing`, not `marketing_lite`.
    pub fell_back_to_cloud_api: bool,
}

impl MessageView {
    /// Adds what Meta said beyond the state.
    pub fn with_meta(mut self, meta: Option<&parley_store::consent::MessageMeta>) -> Self {
        self.apply_meta(meta);
        self
    }

    /// [`MessageView::with_meta`] in place.
    pub fn apply_meta(&mut self, meta: Option<&parley_store::consent::MessageMeta>) {
        if let Some(meta) = meta {
            self.held_by_meta = self.state == "accepted"
                && meta.meta_status.as_deref()
                    == Some(parley_domain::consent::HELD_FOR_QUALITY_ASSESSMENT);
            self.capped_by_meta = meta.capped_times;
            self.pricing = meta.pricing.clone();
        }
    }

    /// Adds which API sent it.
    pub fn apply_route(&mut self, route: Option<&parley_store::marketing::MessageRoute>) {
        if let Some(r) = route {
            self.sent_via = r.sent_via.clone();
            self.fell_back_to_cloud_api = r.fell_back;
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageErrorView {
    /// Meta's error code, e.g. 131026.
    pub code: i64,
    pub message: String,
}

/// RFC 3339 times at which the message first reached each state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timestamps {
    pub queued: String,
    pub sending: Option<String>,
    pub accepted: Option<String>,
    pub sent: Option<String>,
    pub delivered: Option<String>,
    pub read: Option<String>,
    pub failed: Option<String>,
    pub updated: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub data: Vec<MessageView>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page's `next_cursor`.
    pub after: Option<String>,
}

pub fn rfc3339(millis: i64) -> String {
    parley_engine::clock::to_datetime(millis)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl From<MessageRecord> for MessageView {
    fn from(m: MessageRecord) -> Self {
        let kind = m.content.kind().to_owned();
        let content = match &m.content {
            MessageContent::Template { template } => {
                serde_json::to_value(template).unwrap_or_default()
            }
            MessageContent::Text { body, preview_url } => {
                serde_json::json!({"body": body, "preview_url": preview_url})
            }
            other => serde_json::to_value(other).unwrap_or_default(),
        };
        let error = match (m.error_code, m.error_message) {
            (Some(code), message) => Some(MessageErrorView {
                code,
                message: message.unwrap_or_default(),
            }),
            _ => None,
        };
        MessageView {
            id: m.id.to_string(),
            state: m.state.as_str().to_owned(),
            to: m.to_phone,
            phone_number_id: m.phone_number_id.into(),
            kind,
            content,
            wamid: m.wamid.map(String::from),
            reply_to: m.reply_to.map(Wamid::into_string),
            error,
            attempts: m.attempts,
            timestamps: Timestamps {
                queued: rfc3339(m.queued_at),
                sending: m.sending_at.map(rfc3339),
                accepted: m.accepted_at.map(rfc3339),
                sent: m.sent_at.map(rfc3339),
                delivered: m.delivered_at.map(rfc3339),
                read: m.read_at.map(rfc3339),
                failed: m.failed_at.map(rfc3339),
                updated: rfc3339(m.updated_at),
            },
            held_by_meta: false,
            capped_by_meta: 0,
            pricing: None,
            sent_via: None,
            fell_back_to_cloud_api: false,
        }
    }
}

const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Queue a message. The answer comes once the message is committed: from then on it is never
/// lost. Everything Meta would refuse that Parley can know (bad number, unknown or unapproved
/// template, wrong variables, free text outside the 24 h window) is refused here instead.
#[utoipa::path(
    post, path = "/api/v1/messages", tag = "messages",
    request_body = SendMessageBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Repeat a POST safely: the same key returns the first message")),
    responses(
        (status = 202, description = "Queued", body = AcceptedBody),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Missing or bad token", body = ErrorBody),
        (status = 409, description = "No WhatsApp number connected", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Refused by a WhatsApp rule; `variable_too_long` (field `template.variables.<key>`) when a value, once rendered for the contact, is over WhatsApp's limit or makes its part over it: each body value 1,024 characters and the filled body 1,024, the filled header 60, a button URL 2,000, a code 15; `text_too_long` for a text message over 4,096 characters once rendered. Nothing is stored", body = ErrorBody),
    ),
    security(("bearer" = ["send"]))
)]
pub async fn send_message(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Sends>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendMessageBody>,
) -> Result<Response, ApiError> {
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY);
            Some(
                key.ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1–255 visible ASCII characters",
                    )
                })?
                .to_owned(),
            )
        }
    };
    let send_body = match (body.template, body.text) {
        (Some(t), None) => {
            let variables = parse_variables(t.variables)?;
            SendBody::Template {
                name: t.name,
                language: t.language,
                variables,
            }
        }
        (None, Some(text)) => SendBody::Text {
            text,
            preview_url: body.preview_url,
        },
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "ambiguous_message",
                "give either `template` or `text`, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "message_content_missing",
                "give the message content: `template` ({\"name\", \"language\", \"variables\"}) or `text`",
            ));
        }
    };
    let accepted = state
        .engine
        .accept_message(
            &app,
            SendRequest {
                to: body.to,
                body: send_body,
                phone_number_id: body
                    .phone_number_id
                    .map(|id| {
                        PhoneNumberId::parse(&id)
                            .map_err(|_| EngineError::phone_number_not_found(&id))
                    })
                    .transpose()?,
                reply_to: body
                    .reply_to
                    .map(|w| {
                        Wamid::parse(&w).map_err(|e| {
                            ApiError::new(
                                StatusCode::BAD_REQUEST,
                                "invalid_reply_to",
                                e.to_string(),
                            )
                            .field("reply_to")
                        })
                    })
                    .transpose()?,
                idempotency_key,
            },
        )
        .await?;
    let out = AcceptedBody {
        id: accepted.id.to_string(),
        state: accepted.state.as_str().to_owned(),
    };
    let mut resp = (StatusCode::ACCEPTED, ApiJson(out)).into_response();
    if !accepted.created {
        resp.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

/// One message with its state, timestamps, wamid, rendered content and error.
#[utoipa::path(
    get, path = "/api/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id, `msg_…`")),
    responses(
        (status = 200, body = MessageView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn get_message(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(id): Path<String>,
) -> Result<ApiJson<MessageView>, ApiError> {
    let id = MessageId::parse(&id).map_err(|e| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()).field("id")
    })?;
    let m = state
        .engine
        .message(&app, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(&format!("message {id}")))?;
    let meta = state
        .engine
        .message_meta(&app, std::slice::from_ref(&m.id))
        .await?;
    let routes = state
        .engine
        .message_routes(&app, std::slice::from_ref(&m.id))
        .await?;
    let mut view = MessageView::from(m).with_meta(meta.values().next());
    view.apply_route(routes.values().next());
    Ok(ApiJson(view))
}

/// Messages of the application, newest first, with cursor pagination.
#[utoipa::path(
    get, path = "/api/v1/messages", tag = "messages",
    params(ListQuery),
    responses((status = 200, body = MessageList), (status = 401, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<ListQuery>,
) -> Result<ApiJson<MessageList>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            "`limit` must be between 1 and 200",
        )
        .field("limit"));
    }
    let after = q
        .after
        .as_deref()
        .map(MessageId::parse)
        .transpose()
        .map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", e.to_string()).field("after")
        })?;
    let mut rows = state
        .engine
        .messages(&app, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|m| m.id.to_string()))
        .flatten();
    let ids: Vec<MessageId> = rows.iter().map(|m| m.id.clone()).collect();
    let meta = state.engine.message_meta(&app, &ids).await?;
    let routes = state.engine.message_routes(&app, &ids).await?;
    Ok(ApiJson(MessageList {
        data: rows
            .into_iter()
            .map(|m| {
                let id = m.id.clone();
                let mut view = MessageView::from(m).with_meta(meta.get(&id));
                view.apply_route(routes.get(&id));
                view
            })
            .collect(),
        next_cursor,
    }))
}

/// A template's `variables` as the API takes them (also `POST /api/v1/conversations/{contact}/messages`).
pub fn parse_variables(variables: Option<serde_json::Value>) -> Result<VariableInput, ApiError> {
    match variables {
        None | Some(serde_json::Value::Null) => Ok(VariableInput::Named(Default::default())),
        Some(v) => serde_json::from_value::<VariableInput>(v).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_variables",
                format!(
                    "`variables` must be an object of strings (by name, position, `header` or `button.N`) or an array of strings: {e}"
                ),
            )
            .field("template.variables")
        }),
    }
}
