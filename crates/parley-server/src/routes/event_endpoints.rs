//! `/api/v1/event-endpoints`: where Parley sends events (`message.received`,
//! `message.status`, …) as Standard Webhooks: create (the secret is shown once), list, read,
//! change, delete, rotate the secret, every delivery with its attempts, and replays. Reads
//! need the `read` scope, changes `manage`.

use crate::error::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_domain::{DeliveryId, EventEndpointId};
use parley_engine::events::{
    EndpointRequest, EndpointUpdate, EndpointWithSecret, delivery_id, endpoint_id,
};
use parley_store::events::{AttemptRecord, DeliveryRecord, EndpointRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::audit::AuditTarget;
use crate::auth::{AppAuth, Manages, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::routes::messages::rfc3339;
use crate::routes::tokens::page_limit;

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    /// `ep_…`
    pub id: String,
    pub url: String,
    pub description: String,
    /// Some of `message.received`, `message.status`, `contact.opted_out`, `contact.updated`,
    /// `template.status`, `platform.status`, `campaign.completed`.
    pub event_types: Vec<String>,
    /// `enabled`, or `disabled` (by a user, or after failing for the configured period).
    pub state: String,
    /// Why it is disabled: the notice to act on.
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<String>,
    /// The first failed attempt since the last success; absent while deliveries succeed.
    pub failing_since: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<EndpointRecord> for EndpointView {
    fn from(e: EndpointRecord) -> Self {
        EndpointView {
            id: e.id.to_string(),
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            state: match e.disabled_at {
                Some(_) => "disabled".into(),
                None => "enabled".into(),
            },
            disabled_reason: e.disabled_reason,
            disabled_at: e.disabled_at.map(rfc3339),
            failing_since: e.failing_since.map(rfc3339),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub data: Vec<EndpointView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecretView {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `whsec_…`: verify each delivery's `webhook-signature` with it (any Standard Webhooks
    /// library). Shown this once; rotate it to get a new one.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpointBody {
    /// `https://…` (http only to this machine when the operator allows it in development).
    pub url: String,
    /// The event types to receive (at least one).
    pub event_types: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatchBody {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    /// `true` enables a disabled endpoint (its pending deliveries resume); `false` disables it.
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1, 2, …
    pub attempt: i64,
    pub at: String,
    pub duration_ms: i64,
    /// The receiver's HTTP status; absent when there was no answer.
    pub status_code: Option<i64>,
    /// The answer's first 4 KiB.
    pub response: Option<String>,
    /// Why there was no answer (refused, timed out, a private address, …).
    pub error: Option<String>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        AttemptView {
            attempt: a.attempt,
            at: rfc3339(a.at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            response: a.response,
            error: a.error,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// `dlv_…`
    pub id: String,
    /// `ev_…`: the `webhook-id` header of every attempt.
    pub event_id: String,
    pub event_type: String,
    pub event_created_at: String,
    /// `pending`, `delivered`, or `failed` (given up after the retry period).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    /// The body sent (see `EventPayload`).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// The newest 20 attempts, oldest first (`attempts` counts every one; a delivery keeps
    /// its newest 50).
    pub attempt_log: Vec<AttemptView>,
}

impl From<DeliveryRecord> for DeliveryView {
    fn from(d: DeliveryRecord) -> Self {
        DeliveryView {
            id: d.id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type,
            event_created_at: rfc3339(d.event_created_at),
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(rfc3339),
            last_attempt_at: d.last_attempt_at.map(rfc3339),
            delivered_at: d.delivered_at.map(rfc3339),
            payload: d.payload,
            attempt_log: d.attempt_log.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub data: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

/// The JSON body of every event (the `type` decides `data`'s fields; see docs/EVENTS.md).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPayload {
    /// `ev_…`, the same as the `webhook-id` header.
    pub id: String,
    /// `message.received`, `message.status`, `contact.opted_out`, `contact.updated`,
    /// `template.status`, `platform.status` or `campaign.completed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the event was written (RFC 3339).
    pub timestamp: String,
    pub application_id: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// RFC 3339: the first event time to send again.
    pub since: String,
    /// RFC 3339, exclusive; absent: now.
    pub until: Option<String>,
    /// The previous answer's `next_cursor`: go on with the range after the events that
    /// answer went through.
    pub after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayView {
    /// Deliveries put back in the queue.
    pub replayed: u64,
    /// Present when the range holds more events than one call goes through (10,000): post
    /// the same body again with `after` set to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A replay's cursor: `<created_at ms>.<seq>` of the last event a page went through.
fn replay_cursor(raw: &str) -> Result<(i64, i64), ApiError> {
    raw.split_once('.')
        .and_then(|(at, seq)| Some((at.parse().ok()?, seq.parse().ok()?)))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "`after` is not a cursor a replay answered (its `next_cursor`)",
            )
            .field("after")
        })
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    pub after: Option<String>,
}

fn cursor<T>(
    raw: Option<&str>,
    parse: impl Fn(&str) -> Result<T, parley_domain::IdError>,
) -> Result<Option<T>, ApiError> {
    raw.map(|a| {
        parse(a).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", e.to_string()).field("after")
        })
    })
    .transpose()
}

fn with_secret(status: StatusCode, created: EndpointWithSecret) -> Response {
    let id = created.endpoint.id.to_string();
    let mut resp = (
        status,
        ApiJson(EndpointWithSecretView {
            endpoint: created.endpoint.into(),
            secret: created.secret,
        }),
    )
        .into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp.extensions_mut().insert(AuditTarget(id));
    resp
}

fn time_param(raw: &str, field: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(raw.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_time",
                format!("`{field}` is an RFC 3339 time, e.g. 2027-01-01T00:00:00Z"),
            )
            .field(field)
        })
}

/// The application's event endpoints, in creation order.
#[utoipa::path(
    get, path = "/api/v1/event-endpoints", tag = "events", params(ListQuery),
    responses(
        (status = 200, body = EndpointList),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the `read` scope", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn list_endpoints(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<ListQuery>,
) -> Result<ApiJson<EndpointList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = cursor(q.after.as_deref(), EventEndpointId::parse)?;
    let mut rows = state
        .engine
        .event_endpoints(&app, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(ApiJson(EndpointList {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// Register an endpoint. The answer holds its signing secret (`secret`) this once.
#[utoipa::path(
    post, path = "/api/v1/event-endpoints", tag = "events",
    request_body = NewEndpointBody,
    responses(
        (status = 201, body = EndpointWithSecretView),
        (status = 400, body = ErrorBody),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
        (status = 409, description = "`endpoint_limit_reached`: the application has 20 endpoints already", body = ErrorBody),
        (status = 422, description = "Not https (`url_not_https`), a private or loopback target (`url_private_target`), not a URL (`invalid_url`), an unknown event type (`invalid_event_types`)", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn create_endpoint(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    ApiJson(body): ApiJson<NewEndpointBody>,
) -> Result<Response, ApiError> {
    let created = state
        .engine
        .create_event_endpoint(
            &app,
            EndpointRequest {
                url: body.url,
                description: body.description,
                event_types: body.event_types,
            },
        )
        .await?;
    Ok(with_secret(StatusCode::CREATED, created))
}

/// One endpoint, with its state (a disabled one says why).
#[utoipa::path(
    get, path = "/api/v1/event-endpoints/{id}", tag = "events",
    params(("id" = String, Path, description = "Endpoint id, `ep_…`")),
    responses(
        (status = 200, body = EndpointView),
        (status = 403, description = "The token lacks the `read` scope", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn get_endpoint(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(id): Path<String>,
) -> Result<ApiJson<EndpointView>, ApiError> {
    Ok(ApiJson(
        state
            .engine
            .event_endpoint(&app, &endpoint_id(&id)?)
            .await?
            .into(),
    ))
}

/// Change the URL, the event types or the description; enable or disable.
#[utoipa::path(
    patch, path = "/api/v1/event-endpoints/{id}", tag = "events",
    params(("id" = String, Path, description = "Endpoint id, `ep_…`")),
    request_body = EndpointPatchBody,
    responses(
        (status = 200, body = EndpointView),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn update_endpoint(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EndpointPatchBody>,
) -> Result<ApiJson<EndpointView>, ApiError> {
    let id = endpoint_id(&id)?;
    Ok(ApiJson(
        state
            .engine
            .update_event_endpoint(
                &app,
                &id,
                EndpointUpdate {
                    url: body.url,
                    description: body.description,
                    event_types: body.event_types,
                    enabled: body.enabled,
                },
            )
            .await?
            .into(),
    ))
}

/// Delete the endpoint with its deliveries.
#[utoipa::path(
    delete, path = "/api/v1/event-endpoints/{id}", tag = "events",
    params(("id" = String, Path, description = "Endpoint id, `ep_…`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .delete_event_endpoint(&app, &endpoint_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, shown this once; the old one stops at once.
#[utoipa::path(
    post, path = "/api/v1/event-endpoints/{id}/rotate-secret", tag = "events",
    params(("id" = String, Path, description = "Endpoint id, `ep_…`")),
    responses(
        (status = 200, body = EndpointWithSecretView),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let rotated = state
        .engine
        .rotate_event_endpoint_secret(&app, &endpoint_id(&id)?)
        .await?;
    Ok(with_secret(StatusCode::OK, rotated))
}

/// The endpoint's deliveries, newest first, each with every attempt.
#[utoipa::path(
    get, path = "/api/v1/event-endpoints/{id}/deliveries", tag = "events",
    params(("id" = String, Path, description = "Endpoint id, `ep_…`"), ListQuery),
    responses(
        (status = 200, body = DeliveryList),
        (status = 403, description = "The token lacks the `read` scope", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<ApiJson<DeliveryList>, ApiError> {
    let id = endpoint_id(&id)?;
    let limit = page_limit(q.limit)?;
    let after = cursor(q.after.as_deref(), DeliveryId::parse)?;
    let mut rows = state
        .engine
        .event_deliveries(&app, &id, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|d| d.id.to_string()))
        .flatten();
    Ok(ApiJson(DeliveryList {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// Send one delivery again (also one given up), now.
#[utoipa::path(
    post, path = "/api/v1/event-endpoints/{id}/deliveries/{delivery}/replay", tag = "events",
    params(
        ("id" = String, Path, description = "Endpoint id, `ep_…`"),
        ("delivery" = String, Path, description = "Delivery id, `dlv_…`"),
    ),
    responses(
        (status = 202, body = ReplayView),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn replay_delivery(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(StatusCode, ApiJson<ReplayView>), ApiError> {
    let id = endpoint_id(&id)?;
    state
        .engine
        .replay_event_delivery(&app, &id, &delivery_id(&delivery)?)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(ReplayView {
            replayed: 1,
            next_cursor: None,
        }),
    ))
}

/// Send again every event of the endpoint's types written in `[since, until)`: delivered,
/// given up, or never made (the endpoint was disabled, or subscribed to the type later). One
/// call goes through at most 10,000 events of the range; `next_cursor` then says where the
/// next call (the same body with `after`) goes on.
#[utoipa::path(
    post, path = "/api/v1/event-endpoints/{id}/replay", tag = "events",
    params(("id" = String, Path, description = "Endpoint id, `ep_…`")),
    request_body = ReplayBody,
    responses(
        (status = 202, body = ReplayView),
        (status = 400, description = "`invalid_time` or `invalid_cursor`", body = ErrorBody),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn replay_range(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<(StatusCode, ApiJson<ReplayView>), ApiError> {
    let id = endpoint_id(&id)?;
    let since = time_param(&body.since, "since")?;
    let until = match body.until.as_deref() {
        Some(u) => time_param(u, "until")?,
        None => state.engine.now().saturating_add(1),
    };
    let after = body.after.as_deref().map(replay_cursor).transpose()?;
    let page = state
        .engine
        .replay_event_range(&app, &id, since, until, after)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(ReplayView {
            replayed: page.replayed,
            next_cursor: page.next.map(|(at, seq)| format!("{at}.{seq}")),
        }),
    ))
}
