//! `/api/v1/campaigns`: create, list, get, plan, start, pause, resume, cancel, stats.

use crate::error::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_domain::{CampaignId, CampaignKind, PhoneNumberId, SendWindow};
use parley_engine::EngineError;
use parley_engine::campaigns::campaign_id;
use parley_engine::campaigns::{
    CampaignAudience, CampaignPlan, CampaignStats, NewCampaign, variable_input,
};
use parley_store::campaigns::CampaignRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AppAuth, Manages, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::routes::messages::rfc3339;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaignBody {
    pub name: String,
    pub template: CampaignTemplate,
    pub audience: AudienceSpec,
    /// `marketing` (skips opted-out contacts) or `transactional` (sends to them too).
    #[serde(rename = "type")]
    pub kind: String,
    /// The sending number; optional when the application has exactly one.
    pub phone_number_id: Option<String>,
    /// RFC 3339 time to start at; absent: when started.
    pub scheduled_at: Option<String>,
    /// Optional send window in local time, e.g.
    /// `{"start": "09:00", "end": "20:00", "timezone": "Europe/Berlin"}` (`end` before `start`
    /// spans midnight). A message goes only inside the window in its contact's timezone
    /// (the contact's IANA `timezone`), else in `timezone` (IANA name; default UTC); outside
    /// it waits for the next opening (`waiting_for_window` in the stats). Unknown timezone
    /// names are refused (422, field `send_window.timezone`).
    #[schema(value_type = Object, example = json!({"start": "09:00", "end": "20:00", "timezone": "Europe/Berlin"}))]
    pub send_window: Option<serde_json::Value>,
    /// Time-to-live, in seconds, of the sends that go through the Marketing Messages API
    /// (a marketing template on a platform with `marketing_messages` on): Meta tries to
    /// deliver for this long. 43200 (12 h) to 2592000 (30 days), Meta's range; absent: Meta's
    /// default (30 days). Sends through `/messages` ignore it.
    #[schema(minimum = 43200, maximum = 2592000)]
    pub marketing_ttl_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignTemplate {
    pub name: String,
    pub language: String,
    /// One dynamic-content expression per variable, as in `POST /api/v1/messages`:
    /// `{"first_name": "{{first_name|CapitalizeFirst|there}}"}`.
    #[schema(value_type = Object)]
    pub variables: Option<serde_json::Value>,
}

/// `{"filter": "…"}`, `{"segment_id": "seg_…"}` or `{"phones": ["+4915…", …]}`, one of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AudienceSpec {
    pub filter: Option<String>,
    pub segment_id: Option<String>,
    /// An uploaded list: up to 100,000 E.164 numbers. Invalid numbers and later copies of a
    /// number are planned as skipped (`invalid_number`, `duplicate`); numbers that are not
    /// contacts yet become contacts without tags (expressions fall back to their defaults).
    pub phones: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedBody {
    pub id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    /// draft, scheduled, running, paused, completed or cancelled.
    pub state: String,
    /// Why it is paused or cancelled (e.g. Meta's template error).
    pub state_reason: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub phone_number_id: String,
    #[schema(value_type = Object)]
    pub template: serde_json::Value,
    #[schema(value_type = Object)]
    pub audience: serde_json::Value,
    pub scheduled_at: Option<String>,
    #[schema(value_type = Object)]
    pub send_window: Option<serde_json::Value>,
    /// Time-to-live of its sends through the Marketing Messages API (seconds).
    pub marketing_ttl_seconds: Option<i64>,
    /// Its sends through the Marketing Messages API (`via_marketing_messages`) and those Meta
    /// delivered through the Cloud API instead (`fell_back_to_cloud_api`); on
    /// `GET /api/v1/campaigns/{id}` only.
    #[schema(value_type = Option<Object>)]
    pub marketing_messages: Option<parley_store::marketing::CampaignRoutes>,
    /// Messages planned so far; `planned` once the whole audience is expanded.
    pub recipients: u64,
    pub planned: bool,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl From<CampaignRecord> for CampaignView {
    fn from(c: CampaignRecord) -> Self {
        CampaignView {
            id: c.id.to_string(),
            name: c.name,
            state: c.state.as_str().to_owned(),
            state_reason: c.state_reason,
            kind: c.kind.as_str().to_owned(),
            phone_number_id: c.phone_number_id.into(),
            template: serde_json::json!({
                "name": c.template_name, "language": c.template_language, "variables": c.variables,
            }),
            audience: c.audience,
            scheduled_at: c.scheduled_at.map(rfc3339),
            send_window: c.send_window,
            marketing_ttl_seconds: c.marketing_ttl_seconds,
            marketing_messages: None,
            recipients: c.recipients,
            planned: c.planned,
            created_at: rfc3339(c.created_at),
            started_at: c.started_at.map(rfc3339),
            finished_at: c.finished_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignList {
    pub data: Vec<CampaignView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    pub after: Option<String>,
}

fn bad(code: &'static str, message: impl Into<String>, field: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message).field(field)
}

/// Create a campaign (a draft). The template must be approved and the variables must fit it;
/// the audience is a filter expression, a saved segment, or an uploaded list of up to 100,000
/// numbers (body up to 4 MiB).
#[utoipa::path(
    post, path = "/api/v1/campaigns", tag = "campaigns",
    request_body = CreateCampaignBody,
    responses(
        (status = 201, body = CreatedBody),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "`draft_limit_reached`: the application keeps 100 draft campaigns already (start, schedule or cancel one), or the number is not usable", body = ErrorBody),
        (status = 422, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn create_campaign(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    ApiJson(body): ApiJson<CreateCampaignBody>,
) -> Result<Response, ApiError> {
    let c = state
        .engine
        .create_campaign(&app, new_campaign(body)?)
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedBody {
            id: c.id.to_string(),
        }),
    )
        .into_response())
}

/// Reads a create body (the API's, or the console form's once shaped like it).
pub fn new_campaign(body: CreateCampaignBody) -> Result<NewCampaign, ApiError> {
    let a = body.audience;
    let audience = match (a.filter, a.segment_id, a.phones) {
        (Some(f), None, None) => CampaignAudience::Filter(f),
        (None, Some(s), None) => CampaignAudience::Segment(s),
        (None, None, Some(p)) => CampaignAudience::List(p),
        _ => {
            return Err(bad(
                "audience_invalid",
                "give the audience as {\"filter\": \"…\"}, {\"segment_id\": \"seg_…\"} or {\"phones\": [\"+4915…\"]}, one of them",
                "audience",
            ));
        }
    };
    let kind = CampaignKind::parse(&body.kind).ok_or_else(|| {
        bad(
            "type_invalid",
            "`type` is `marketing` or `transactional`",
            "type",
        )
    })?;
    let scheduled_at = body
        .scheduled_at
        .as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| {
                    bad(
                        "scheduled_at_invalid",
                        "`scheduled_at` is an RFC 3339 time, e.g. 2026-05-01T09:00:00Z",
                        "scheduled_at",
                    )
                })
        })
        .transpose()?;
    let phone_number_id = body
        .phone_number_id
        .map(|id| PhoneNumberId::parse(&id).map_err(|_| EngineError::phone_number_not_found(&id)))
        .transpose()?;
    let variables = variable_input(&body.template.variables.unwrap_or(serde_json::Value::Null))?;
    let send_window = body
        .send_window
        .filter(|w| !w.is_null())
        .map(|w| SendWindow::from_json(&w).map_err(EngineError::from))
        .transpose()?;
    Ok(NewCampaign {
        name: body.name,
        phone_number_id,
        template_name: body.template.name,
        template_language: body.template.language,
        variables,
        audience,
        kind,
        scheduled_at,
        send_window,
        marketing_ttl_seconds: body.marketing_ttl_seconds,
    })
}

/// Campaigns of the application, newest first.
#[utoipa::path(
    get, path = "/api/v1/campaigns", tag = "campaigns", params(ListQuery),
    responses((status = 200, body = CampaignList), (status = 401, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn list_campaigns(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<ListQuery>,
) -> Result<ApiJson<CampaignList>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(bad(
            "invalid_limit",
            "`limit` must be between 1 and 200",
            "limit",
        ));
    }
    let after = q
        .after
        .as_deref()
        .map(CampaignId::parse)
        .transpose()
        .map_err(|e| bad("invalid_cursor", e.to_string(), "after"))?;
    let mut rows = state
        .engine
        .campaigns(&app, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|c| c.id.to_string()))
        .flatten();
    Ok(ApiJson(CampaignList {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// One campaign.
#[utoipa::path(
    get, path = "/api/v1/campaigns/{id}", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id, `cmp_…`")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn get_campaign(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(id): Path<String>,
) -> Result<ApiJson<CampaignView>, ApiError> {
    let c = state.engine.campaign(&app, &campaign_id(&id)?).await?;
    let routes = state.engine.campaign_routes(&c.id).await?;
    let mut view = CampaignView::from(c);
    view.marketing_messages = Some(routes);
    Ok(ApiJson(view))
}

/// The plan: recipients, skipped by reason, the quota now (used / limit in the rolling 24 h
/// for the number's scope), how many go at once, when the rest go, time to send; with a send
/// window, `waiting_for_window` (recipients outside it now) and `first_send_at` (when the
/// first message may go).
#[utoipa::path(
    get, path = "/api/v1/campaigns/{id}/plan", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id, `cmp_…`")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn plan_campaign(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(id): Path<String>,
) -> Result<ApiJson<CampaignPlan>, ApiError> {
    Ok(ApiJson(
        state.engine.plan_campaign(&app, &campaign_id(&id)?).await?,
    ))
}

/// Flat counters (`state`, `recipients`, `queued`, `waiting_for_quota`, `next_slot_at`,
/// `waiting_for_window`, `next_window_at`, `sending`, `sent`, `delivered`, `read`, `failed`,
/// `skipped`, `replied`, `held_by_meta` (held for quality assessment by Meta's pacing),
/// `capped_by_meta` (Meta's per-user marketing limit, 131049), …) and breakdowns
/// (`failed_by_code`, `skipped_by_reason`, `charged_by_category`, `sent_per_hour`).
#[utoipa::path(
    get, path = "/api/v1/campaigns/{id}/stats", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id, `cmp_…`")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn campaign_stats(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(id): Path<String>,
) -> Result<ApiJson<CampaignStats>, ApiError> {
    Ok(ApiJson(
        state
            .engine
            .campaign_stats(&app, &campaign_id(&id)?)
            .await?,
    ))
}

/// Start now (or at `scheduled_at`). Starting again, or from two nodes, sends once.
#[utoipa::path(
    post, path = "/api/v1/campaigns/{id}/start", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id, `cmp_…`")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn start_campaign(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Result<ApiJson<CampaignView>, ApiError> {
    Ok(ApiJson(
        state
            .engine
            .start_campaign(&app, &campaign_id(&id)?)
            .await?
            .into(),
    ))
}

/// Pause: nothing more is sent until resumed.
#[utoipa::path(
    post, path = "/api/v1/campaigns/{id}/pause", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id, `cmp_…`")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn pause_campaign(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Result<ApiJson<CampaignView>, ApiError> {
    Ok(ApiJson(
        state
            .engine
            .pause_campaign(&app, &campaign_id(&id)?)
            .await?
            .into(),
    ))
}

/// Resume a paused campaign.
#[utoipa::path(
    post, path = "/api/v1/campaigns/{id}/resume", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id, `cmp_…`")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn resume_campaign(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Result<ApiJson<CampaignView>, ApiError> {
    Ok(ApiJson(
        state
            .engine
            .resume_campaign(&app, &campaign_id(&id)?)
            .await?
            .into(),
    ))
}

/// Cancel: messages not yet sent are skipped with reason `cancelled`.
#[utoipa::path(
    post, path = "/api/v1/campaigns/{id}/cancel", tag = "campaigns",
    params(("id" = String, Path, description = "Campaign id, `cmp_…`")),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn cancel_campaign(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Result<ApiJson<CampaignView>, ApiError> {
    Ok(ApiJson(
        state
            .engine
            .cancel_campaign(&app, &campaign_id(&id)?)
            .await?
            .into(),
    ))
}
