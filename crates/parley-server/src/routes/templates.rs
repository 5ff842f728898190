//! `/api/v1/templates`: the local copy of Meta's templates that every send is checked against,
//! and their management (create, edit, delete, sync) through Meta. `POST /api/v1/media/uploads`
//! turns a file into the handle a media header's example needs.

use crate::error::Query;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parley_domain::ApplicationId;
use parley_engine::templates::template_id;
use parley_engine::templates::{
    NewTemplate, TemplateChangeError, TemplateEdit, TemplateIssue, UploadedMedia,
};
use parley_store::TemplateRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AppAuth, Manages, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody, ErrorDetail};
use crate::routes::messages::rfc3339;

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateView {
    /// Parley's id, `tpl_…`.
    pub id: String,
    /// Meta's template id.
    pub meta_id: Option<String>,
    /// The platform (WhatsApp Business Account) holding it.
    pub platform_id: String,
    pub name: String,
    pub language: String,
    /// MARKETING, UTILITY or AUTHENTICATION.
    pub category: String,
    /// APPROVED, PENDING, REJECTED, PAUSED, DISABLED, DELETED, …
    pub status: String,
    /// POSITIONAL or NAMED.
    pub parameter_format: String,
    /// GREEN, YELLOW, RED or UNKNOWN, when Meta rated it.
    pub quality_score: Option<String>,
    /// Why Meta rejected it (e.g. INVALID_FORMAT); `NONE` or absent otherwise.
    pub rejected_reason: Option<String>,
    /// Meta's rejection details: `{"reason", "recommendation"}`.
    #[schema(value_type = Option<Object>)]
    pub rejection_info: Option<Value>,
    /// Why it is paused or disabled: Meta's `other_info` `{"title": "FIRST_PAUSE"…, "description"}`.
    #[schema(value_type = Option<Object>)]
    pub pause_info: Option<Value>,
    /// Meta's `disable_info` `{"disable_date"}`.
    #[schema(value_type = Option<Object>)]
    pub disable_info: Option<Value>,
    /// Set after Meta re-categorized it.
    pub previous_category: Option<String>,
    /// The category Meta announced it will move to.
    pub correct_category: Option<String>,
    /// The variables a send must fill, by the keys `POST /api/v1/messages` takes.
    pub variables: Vec<String>,
    /// The template's components as Meta describes them.
    #[schema(value_type = Object)]
    pub components: Value,
    pub updated_at: String,
    /// When Parley learnt it was deleted (at Meta or through Parley); absent while it exists.
    pub deleted_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    pub data: Vec<TemplateView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
pub struct TemplateQuery {
    /// Only templates with this status (e.g. `APPROVED`).
    pub status: Option<String>,
    /// Only this category (`MARKETING`, `UTILITY`, `AUTHENTICATION`).
    pub category: Option<String>,
    /// Only this language (`en_US`).
    pub language: Option<String>,
    /// Only names containing this text.
    pub name: Option<String>,
    /// Include templates marked deleted (default false).
    pub include_deleted: Option<bool>,
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
    /// Local templates Meta no longer has, now marked deleted.
    pub deleted: usize,
}

/// `POST /api/v1/templates`: Meta's creation shape, plus `platform_id` when the application
/// has several WhatsApp Business Accounts.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTemplateBody {
    pub platform_id: Option<String>,
    /// 1–512 of `a-z`, `0-9`, `_`.
    pub name: String,
    /// `en`, `en_US`, `pt_BR`… One language per request: post again for another language.
    pub language: String,
    /// MARKETING, UTILITY or AUTHENTICATION.
    pub category: String,
    /// `positional` (default, `{{1}}`) or `named` (`{{first_name}}`).
    pub parameter_format: Option<String>,
    /// HEADER, BODY, FOOTER, BUTTONS as Meta takes them, with examples.
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<Value>,
}

/// `PATCH /api/v1/templates/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EditTemplateBody {
    /// Not for approved templates.
    pub category: Option<String>,
    /// Replaces all components.
    #[schema(value_type = Option<Vec<Object>>)]
    pub components: Option<Vec<Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssueView {
    /// The draft's field, e.g. `name` or `components[1].example`.
    pub field: String,
    pub code: String,
    pub message: String,
}

/// 422 `template_invalid`: the error (naming the first field) and every problem found.
#[derive(Serialize, ToSchema)]
pub struct InvalidTemplateBody {
    pub error: ErrorDetail,
    pub issues: Vec<IssueView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedTemplates {
    pub deleted: Vec<TemplateView>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeleteByName {
    /// Every language of this name is deleted.
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct UploadQuery {
    /// The file's name (default `upload`).
    pub file_name: Option<String>,
    /// Required when the application has several WhatsApp Business Accounts.
    pub platform_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    /// Meta's handle (`4::…`): put it in the media header's `example.header_handle`.
    pub handle: String,
    pub file_name: String,
    pub mime_type: String,
    pub file_length: usize,
}

impl From<UploadedMedia> for UploadView {
    fn from(u: UploadedMedia) -> Self {
        UploadView {
            handle: u.handle,
            file_name: u.file_name,
            mime_type: u.mime_type,
            file_length: u.file_length,
        }
    }
}

fn raw_str(raw: &Value, key: &str) -> Option<String> {
    raw.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn raw_obj(raw: &Value, key: &str) -> Option<Value> {
    raw.get(key).filter(|v| v.is_object()).cloned()
}

pub fn view(t: TemplateRecord) -> TemplateView {
    let raw = &t.raw;
    let quality_score = match raw.get("quality_score") {
        Some(Value::Object(q)) => q.get("score").and_then(Value::as_str).map(str::to_owned),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    TemplateView {
        id: t.id.to_string(),
        meta_id: t.meta_id.clone(),
        platform_id: t.platform_id.to_string(),
        variables: t.template.variables().into_iter().map(|v| v.key).collect(),
        name: t.template.name.as_str().to_owned(),
        language: t.template.language.as_str().to_owned(),
        category: t.template.category.as_str().to_owned(),
        status: t.template.status.as_str().to_owned(),
        parameter_format: match t.template.parameter_format {
            parley_domain::ParameterFormat::Named => "NAMED".into(),
            parley_domain::ParameterFormat::Positional => "POSITIONAL".into(),
        },
        quality_score,
        rejected_reason: raw_str(raw, "rejected_reason"),
        rejection_info: raw_obj(raw, "rejection_info"),
        pause_info: raw_obj(raw, "other_info"),
        disable_info: raw_obj(raw, "disable_info"),
        previous_category: raw_str(raw, "previous_category"),
        correct_category: raw_str(raw, "correct_category"),
        components: raw.get("components").cloned().unwrap_or_default(),
        updated_at: rfc3339(t.updated_at),
        deleted_at: t.deleted_at.map(rfc3339),
    }
}

/// The filters of the list (shared with the console).
pub fn matches(t: &TemplateRecord, q: &TemplateQuery) -> bool {
    let eq = |want: &Option<String>, have: &str| {
        want.as_deref()
            .filter(|w| !w.is_empty())
            .is_none_or(|w| have.eq_ignore_ascii_case(w))
    };
    (q.include_deleted.unwrap_or(false) || t.deleted_at.is_none())
        && eq(&q.status, t.template.status.as_str())
        && eq(&q.category, t.template.category.as_str())
        && eq(&q.language, t.template.language.as_str())
        && q.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .is_none_or(|n| t.template.name.as_str().contains(&n.to_ascii_lowercase()))
}

/// The 422 with every issue (or the failure's own error).
pub fn change_error(e: TemplateChangeError) -> Response {
    match e {
        TemplateChangeError::Failed(f) => ApiError::from(f).into_response(),
        TemplateChangeError::Invalid(issues) => invalid_response(&issues).into_response(),
    }
}

fn invalid_response(issues: &[TemplateIssue]) -> (StatusCode, axum::Json<InvalidTemplateBody>) {
    let n = issues.len();
    let first = issues.first();
    let body = InvalidTemplateBody {
        error: ErrorDetail {
            code: "template_invalid".into(),
            message: format!(
                "the template breaks {n} of Meta's rules; the first: {}",
                first.map(|i| i.message.as_str()).unwrap_or_default()
            ),
            field: first.map(|i| i.field.clone()),
        },
        issues: issues
            .iter()
            .map(|i| IssueView {
                field: i.field.clone(),
                code: i.code.clone(),
                message: i.message.clone(),
            })
            .collect(),
    };
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body))
}

/// The application's templates (all numbers), ordered by name and language.
#[utoipa::path(
    get, path = "/api/v1/templates", tag = "templates",
    params(TemplateQuery),
    responses((status = 200, body = TemplateList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn list_templates(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
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
    let all: Vec<TemplateRecord> = state
        .engine
        .templates(&app)
        .await?
        .into_iter()
        .filter(|t| matches(t, &q))
        .collect();
    let page = page_after(all, q.after.as_deref(), limit as usize).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
            "`after` is not a cursor from this list; start again without it",
        )
        .field("after")
    })?;
    let more = page.len() > limit as usize;
    let data: Vec<TemplateView> = page.into_iter().take(limit as usize).map(view).collect();
    let next_cursor = more.then(|| data.last().map(|t| t.id.clone())).flatten();
    Ok(ApiJson(TemplateList { data, next_cursor }))
}

/// The page after the template `after` (from the start without it): up to `limit + 1` templates,
/// the extra one telling that a next page exists. `None` when `after` is not in the list.
///
/// An application holds hundreds of templates at most (Meta caps a WABA at 250–6,000), so the
/// page is cut from the ordered, filtered list (the API and the console's table both page so);
/// the cursor is the last template's id.
pub fn page_after(
    all: Vec<TemplateRecord>,
    after: Option<&str>,
    limit: usize,
) -> Option<Vec<TemplateRecord>> {
    let start = match after {
        None => 0,
        Some(after) => all.iter().position(|t| t.id.as_str() == after)? + 1,
    };
    Some(all.into_iter().skip(start).take(limit + 1).collect())
}

/// One template, deleted ones included (with `deleted_at`).
#[utoipa::path(
    get, path = "/api/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Parley's template id, `tpl_…`")),
    responses((status = 200, body = TemplateView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn get_template(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(id): Path<String>,
) -> Result<ApiJson<TemplateView>, ApiError> {
    let t = state
        .engine
        .template_by_id(&app, &template_id(&id)?)
        .await?;
    Ok(ApiJson(view(t)))
}

/// Creates a template at Meta after checking it with Meta's rules (every problem is reported
/// at once, before any call to Meta). It is stored `PENDING`; Meta's review arrives by webhook.
#[utoipa::path(
    post, path = "/api/v1/templates", tag = "templates",
    request_body = CreateTemplateBody,
    responses(
        (status = 201, body = TemplateView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, description = "`template_invalid` with every issue, or Meta's refusal (`meta_refused`)", body = InvalidTemplateBody),
        (status = 502, body = ErrorBody)
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn create_template(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    body: Result<ApiJson<Value>, ApiError>,
) -> Response {
    let ApiJson(body) = match body {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let draft: NewTemplate = match serde_json::from_value(body) {
        Ok(d) => d,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("the JSON does not have the expected shape: {e}"),
            )
            .into_response();
        }
    };
    match state.engine.create_template(&app, draft).await {
        Ok(t) => (StatusCode::CREATED, axum::Json(view(t))).into_response(),
        Err(e) => change_error(e),
    }
}

/// Edits a template where Meta allows it (APPROVED, REJECTED or PAUSED; the category only
/// when not approved). Meta reviews the edit: the template is `PENDING` again.
#[utoipa::path(
    patch, path = "/api/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Parley's template id")),
    request_body = EditTemplateBody,
    responses(
        (status = 200, body = TemplateView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = InvalidTemplateBody), (status = 502, body = ErrorBody)
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn edit_template(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
    body: Result<ApiJson<EditTemplateBody>, ApiError>,
) -> Response {
    let ApiJson(body) = match body {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let id = match template_id(&id) {
        Ok(id) => id,
        Err(f) => return ApiError::from(f).into_response(),
    };
    let edit = TemplateEdit {
        category: body.category,
        components: body.components,
    };
    match state.engine.edit_template(&app, &id, edit).await {
        Ok(t) => axum::Json(view(t)).into_response(),
        Err(e) => change_error(e),
    }
}

/// Deletes one template (this language only) at Meta, by its id; it stays readable here
/// with `deleted_at`.
#[utoipa::path(
    delete, path = "/api/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Parley's template id")),
    responses((status = 200, body = TemplateView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn delete_template(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Result<ApiJson<TemplateView>, ApiError> {
    let t = state
        .engine
        .delete_template(&app, &template_id(&id)?)
        .await?;
    Ok(ApiJson(view(t)))
}

/// Deletes every language of a template name at Meta.
#[utoipa::path(
    delete, path = "/api/v1/templates", tag = "templates",
    params(DeleteByName),
    responses((status = 200, body = DeletedTemplates), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn delete_templates_by_name(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Query(q): Query<DeleteByName>,
) -> Result<ApiJson<DeletedTemplates>, ApiError> {
    let Some(name) = q.name.filter(|n| !n.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name_required",
            "say which template to delete with `?name=` (all its languages), or use DELETE /api/v1/templates/{id}",
        )
        .field("name"));
    };
    let deleted = state.engine.delete_templates_named(&app, &name).await?;
    Ok(ApiJson(DeletedTemplates {
        deleted: deleted.into_iter().map(view).collect(),
    }))
}

/// Reads every template from Meta for each connected WhatsApp account and stores them;
/// templates Meta no longer has are marked deleted.
#[utoipa::path(
    post, path = "/api/v1/templates/sync", tag = "templates",
    responses((status = 200, body = SyncResult), (status = 401, body = ErrorBody), (status = 502, body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn sync_templates(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
) -> Result<ApiJson<SyncResult>, ApiError> {
    let mut result = SyncResult {
        synced: 0,
        skipped: Vec::new(),
        deleted: 0,
    };
    for platform in state.engine.platforms(&app).await? {
        let report = state.engine.sync_templates(&app, &platform.id).await?;
        result.synced += report.synced;
        result.skipped.extend(report.skipped);
        result.deleted += report.deleted;
    }
    Ok(ApiJson(result))
}

/// Uploads a file (the request body, with its `Content-Type`) to Meta's Resumable Upload API
/// and returns the handle a media header's example takes: `image/jpeg`, `image/png` (IMAGE,
/// ≤ 5 MB), `video/mp4` (VIDEO, ≤ 16 MB), `application/pdf` (DOCUMENT, ≤ 100 MB).
#[utoipa::path(
    post, path = "/api/v1/media/uploads", tag = "templates",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes; send its type as Content-Type"),
    responses((status = 201, body = UploadView), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn upload_media(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Query(q): Query<UploadQuery>,
    _slot: crate::UploadSlot<{ crate::MEDIA_BODY_LIMIT }>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, ApiJson<UploadView>), ApiError> {
    upload_template_media(&state, &app, q, &headers, body).await
}

/// The upload of the API and of the console's template form.
pub async fn upload_template_media(
    state: &AppState,
    app: &ApplicationId,
    q: UploadQuery,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, ApiJson<UploadView>), ApiError> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let name = q.file_name.unwrap_or_else(|| "upload".into());
    let uploaded = state
        .engine
        .upload_template_media(app, q.platform_id.as_deref(), &name, &mime, body)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(uploaded.into())))
}
