//! `/api/v1/applications`: the applications of the token's account, and a new one.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{AppAuth, Manages, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody, Query};
use crate::routes::messages::rfc3339;
use crate::routes::tokens::{ListQuery, page_limit};
use parley_domain::ApplicationId;

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationView {
    /// `app_…`.
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// The application the request's token belongs to.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationList {
    pub data: Vec<ApplicationView>,
    /// The next page's `after` (the last application's id), absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewApplicationBody {
    /// 1 to 100 characters.
    pub name: String,
}

/// The applications of the account the token's application belongs to, oldest first, a page
/// at a time.
#[utoipa::path(
    get, path = "/api/v1/applications", tag = "applications", params(ListQuery),
    responses(
        (status = 200, body = ApplicationList),
        (status = 400, description = "`invalid_limit` (1–200), `invalid_cursor` (`after` names no application of this account)", body = ErrorBody),
        (status = 401, body = ErrorBody)
    ),
    security(("bearer" = ["read"]))
)]
pub async fn list_applications(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<ListQuery>,
) -> Result<ApiJson<ApplicationList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            ApplicationId::parse(a).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", e.to_string())
                    .field("after")
            })
        })
        .transpose()?;
    let mut page = state
        .engine
        .sibling_applications_page(&app, after.as_ref(), limit + 1)
        .await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_cursor = more
        .then(|| page.last().map(|a| a.id.to_string()))
        .flatten();
    Ok(ApiJson(ApplicationList {
        data: page
            .into_iter()
            .map(|a| ApplicationView {
                current: a.id == app,
                id: a.id.to_string(),
                name: a.name,
                created_at: rfc3339(a.created_at),
            })
            .collect(),
        next_cursor,
    }))
}

/// Creates another application in the token's account. The account's owners own it; its
/// platforms, templates, contacts and tokens are its own (create a token for it with
/// `parley token create --application <id>`).
#[utoipa::path(
    post, path = "/api/v1/applications", tag = "applications",
    request_body = NewApplicationBody,
    responses(
        (status = 201, body = ApplicationView),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "`application_limit_reached`: the account has 1,000 applications already", body = ErrorBody),
        (status = 422, description = "The name is empty or longer than 100 characters", body = ErrorBody)
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn create_application(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    ApiJson(body): ApiJson<NewApplicationBody>,
) -> Result<(StatusCode, ApiJson<ApplicationView>), ApiError> {
    let created = state
        .engine
        .create_sibling_application(&app, &body.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(ApplicationView {
            id: created.id.to_string(),
            name: created.name,
            created_at: rfc3339(created.created_at),
            current: false,
        }),
    ))
}
