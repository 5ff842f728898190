//! Saved segments and previews: `GET/POST /api/v1/segments`, `GET /api/v1/segments/{id}` (with
//! a live count), `DELETE /api/v1/segments/{id}`, `POST /api/v1/segments/preview` (count and
//! sample of any filter).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_domain::SegmentId;
use parley_engine::audience::segment_id;
use parley_store::audience::SegmentRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{AppAuth, Manages, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody, Query};
use crate::routes::contacts::ContactView;
use crate::routes::messages::rfc3339;
use crate::routes::tokens::{ListQuery, page_limit};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSegmentBody {
    pub name: String,
    /// e.g. `city = "Berlin" and visits >= 3`.
    pub filter: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    pub filter: String,
    /// How many contacts to show (default 10, at most 100).
    pub sample: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    pub id: String,
    pub name: String,
    pub filter: String,
    /// Contacts matching now (absent in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentList {
    pub data: Vec<SegmentView>,
    /// The next page's `after` (the last segment's id), absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewView {
    pub count: u64,
    pub sample: Vec<ContactView>,
}

fn view(s: &SegmentRecord, count: Option<u64>) -> SegmentView {
    SegmentView {
        id: s.id.to_string(),
        name: s.name.clone(),
        filter: s.filter.clone(),
        count,
        created_at: rfc3339(s.created_at),
    }
}

#[utoipa::path(
    get, path = "/api/v1/segments", tag = "segments", params(ListQuery),
    responses(
        (status = 200, description = "Saved segments by name", body = SegmentList),
        (status = 400, description = "`invalid_limit` (1–200), `invalid_cursor` (`after` names no segment of this application)", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn list_segments(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<ListQuery>,
) -> Result<ApiJson<SegmentList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            SegmentId::parse(a).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", e.to_string())
                    .field("after")
            })
        })
        .transpose()?;
    let mut page = state
        .engine
        .segments_page(&app, after.as_ref(), limit + 1)
        .await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_cursor = more
        .then(|| page.last().map(|s| s.id.to_string()))
        .flatten();
    Ok(ApiJson(SegmentList {
        data: page.iter().map(|s| view(s, None)).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    post, path = "/api/v1/segments", tag = "segments",
    request_body = NewSegmentBody,
    responses(
        (status = 201, description = "Saved, with its count now", body = SegmentView),
        (status = 400, description = "The filter does not parse (the message names the character)", body = ErrorBody),
        (status = 409, description = "`segment_exists` (a segment with that name exists) or `segment_limit_reached` (the application keeps 500 segments already)", body = ErrorBody),
        (status = 422, description = "`filter_too_complex` (over 200 conditions or 64 levels) or `filter_too_expensive` (it ran out of its time budget and was stopped): nothing saved", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn create_segment(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    ApiJson(body): ApiJson<NewSegmentBody>,
) -> Result<Response, ApiError> {
    // Counted first: a filter too expensive to run is refused before it is saved.
    let seg = state.engine.parse_segment(&body.filter)?;
    let preview = state.engine.preview_segment(&app, &seg, 0).await?;
    let record = state
        .engine
        .create_segment(&app, &body.name, &body.filter)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(view(&record, Some(preview.count))),
    )
        .into_response())
}

#[utoipa::path(
    get, path = "/api/v1/segments/{id}", tag = "segments",
    params(("id" = String, Path, description = "Segment id, `seg_…`")),
    responses((status = 200, description = "The segment with its live count", body = SegmentView), (status = 404, description = "No such segment", body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn get_segment(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(id): Path<String>,
) -> Result<ApiJson<SegmentView>, ApiError> {
    let record = state.engine.segment_by_id(&app, &segment_id(&id)?).await?;
    let seg = state.engine.parse_segment(&record.filter)?;
    let preview = state.engine.preview_segment(&app, &seg, 0).await?;
    Ok(ApiJson(view(&record, Some(preview.count))))
}

#[utoipa::path(
    delete, path = "/api/v1/segments/{id}", tag = "segments",
    params(("id" = String, Path, description = "Segment id, `seg_…`")),
    responses(
        (status = 204, description = "Deleted. Campaigns that chose it keep the filter they copied when they were created"),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
        (status = 404, description = "`segment_not_found`: no segment of this application has that id (or it is not a segment id)", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn delete_segment(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.engine.delete_segment(&app, &segment_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/api/v1/segments/preview", tag = "segments",
    request_body = PreviewBody,
    responses(
        (status = 200, description = "How many contacts match now, and a few of them", body = PreviewView),
        (status = 400, description = "The filter does not parse (the message names the character)", body = ErrorBody),
        (status = 422, description = "`filter_too_complex` (over 200 conditions or 64 levels of parentheses and `not`) or `filter_too_expensive` (the count ran out of its time budget, 10 s by default, and was stopped in the database)", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn preview_segment(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    ApiJson(body): ApiJson<PreviewBody>,
) -> Result<ApiJson<PreviewView>, ApiError> {
    let seg = state.engine.parse_segment(&body.filter)?;
    let p = state
        .engine
        .preview_segment(&app, &seg, body.sample.unwrap_or(10).min(100))
        .await?;
    Ok(ApiJson(PreviewView {
        count: p.count,
        sample: p.sample.iter().map(Into::into).collect(),
    }))
}
