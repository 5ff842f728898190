//! `GET /api/v1/templates`, `POST /api/v1/templates/sync`: the local copy of Meta's templates
//! that every send is checked against.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use parley_store::TemplateRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::AppAuth;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::routes::messages::rfc3339;

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    /// Parley's id, `tpl_…`.
    pub id: String,
    /// Meta's template id.
    pub meta_id: Option<String>,
    pub name: String,
    pub language: String,
    /// MARKETING, UTILITY or AUTHENTICATION.
    pub category: String,
    /// APPROVED, PENDING, REJECTED, PAUSED, DISABLED, …
    pub status: String,
    /// The variables a send must fill, by the keys `POST /api/v1/messages` takes.
    pub variables: Vec<String>,
    /// The template as Meta describes it.
    #[schema(value_type = Object)]
    pub components: serde_json::Value,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    pub data: Vec<TemplateView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TemplateQuery {
    /// Only templates with this status (e.g. `APPROVED`).
    pub status: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncResult {
    /// Templates read from Meta and stored.
    pub synced: usize,
    /// Templates Meta returned that Parley could not read, with the reason.
    pub skipped: Vec<String>,
}

fn view(t: TemplateRecord) -> TemplateView {
    TemplateView {
        id: t.id.to_string(),
        meta_id: t.meta_id,
        variables: t.template.variables().into_iter().map(|v| v.key).collect(),
        name: t.template.name.as_str().to_owned(),
        language: t.template.language.as_str().to_owned(),
        category: t.template.category.as_str().to_owned(),
        status: t.template.status.as_str().to_owned(),
        components: t.raw.get("components").cloned().unwrap_or_default(),
        updated_at: rfc3339(t.updated_at),
    }
}

/// The application's templates (all numbers), ordered by name and language.
#[utoipa::path(
    get, path = "/api/v1/templates", tag = "templates",
    params(TemplateQuery),
    responses((status = 200, body = TemplateList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list_templates(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    Query(q): Query<TemplateQuery>,
) -> Result<ApiJson<TemplateList>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            "`limit` must be between 1 and 200",
        )
        .field("limit"));
    }
    // An application holds hundreds of templates at most (Meta caps a WABA at 250–6,000), so
    // the page is cut from the ordered list; the cursor is the last template's id.
    let all: Vec<TemplateRecord> = state
        .engine
        .store
        .templates(&app)
        .await?
        .into_iter()
        .filter(|t| t.deleted_at.is_none())
        .filter(|t| {
            q.status
                .as_deref()
                .is_none_or(|s| t.template.status.as_str().eq_ignore_ascii_case(s))
        })
        .collect();
    let start = match q.after.as_deref() {
        None => 0,
        Some(after) => {
            all.iter()
                .position(|t| t.id.as_str() == after)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_cursor",
                        "`after` is not a cursor from this list; start again without it",
                    )
                    .field("after")
                })?
                + 1
        }
    };
    let page: Vec<TemplateRecord> = all
        .into_iter()
        .skip(start)
        .take(limit as usize + 1)
        .collect();
    let more = page.len() > limit as usize;
    let data: Vec<TemplateView> = page.into_iter().take(limit as usize).map(view).collect();
    let next_cursor = more.then(|| data.last().map(|t| t.id.clone())).flatten();
    Ok(ApiJson(TemplateList { data, next_cursor }))
}

/// Reads every template from Meta for each connected WhatsApp account and stores them.
#[utoipa::path(
    post, path = "/api/v1/templates/sync", tag = "templates",
    responses((status = 200, body = SyncResult), (status = 401, body = ErrorBody), (status = 502, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn sync_templates(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
) -> Result<ApiJson<SyncResult>, ApiError> {
    let mut result = SyncResult {
        synced: 0,
        skipped: Vec::new(),
    };
    for platform in state.engine.store.platforms(&app).await? {
        let report = state
            .engine
            .sync_templates(&platform.id)
            .await
            .map_err(|f| {
                if f.code == "meta_unavailable" {
                    ApiError::new(StatusCode::BAD_GATEWAY, "meta_unavailable", f.message)
                } else {
                    f.into()
                }
            })?;
        result.synced += report.synced;
        result.skipped.extend(report.skipped);
    }
    Ok(ApiJson(result))
}
