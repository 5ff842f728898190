//! `/api/v1/audit`: who changed what in the application, newest first. Needs `manage`: the
//! log names people (emails) and addresses.

use crate::error::Query;
use axum::extract::State;
use axum::http::StatusCode;
use parley_domain::AuditEntryId;
use parley_store::access::AuditEntry;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{AppAuth, Manages};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::routes::messages::rfc3339;
use crate::routes::tokens::{ListQuery, page_limit};

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// `aud_…`
    pub id: String,
    pub at: String,
    /// Who: `{"kind": "user" | "token", "id": "usr_…" | "tok_…", "label": email or token label}`.
    pub actor: ActorView,
    /// What: `<resource>.<verb>`, e.g. `campaign.start`, `token.create`, `platform.disconnect`.
    pub action: String,
    /// The id the change was about, when there is one.
    pub target: Option<String>,
    pub method: String,
    /// The route, e.g. `/api/v1/campaigns/{id}/start`.
    pub route: String,
    /// The client's address as Parley saw it.
    pub address: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActorView {
    pub kind: String,
    pub id: String,
    pub label: String,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        AuditEntryView {
            id: e.id.to_string(),
            at: rfc3339(e.at),
            actor: ActorView {
                kind: e.actor_kind.as_str().to_owned(),
                id: e.actor_id,
                label: e.actor_label,
            },
            action: e.action,
            target: e.target,
            method: e.method,
            route: e.path,
            address: e.address,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub data: Vec<AuditEntryView>,
    pub next_cursor: Option<String>,
}

/// The application's audit log, newest first: every change to platforms, templates,
/// campaigns, contacts, segments, tokens and users, by whom, from where.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit", params(ListQuery),
    responses(
        (status = 200, body = AuditList),
        (status = 400, body = ErrorBody),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Query(q): Query<ListQuery>,
) -> Result<ApiJson<AuditList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q
        .after
        .as_deref()
        .map(AuditEntryId::parse)
        .transpose()
        .map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", e.to_string()).field("after")
        })?;
    let mut rows = state
        .engine
        .audit_entries(&app, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(ApiJson(AuditList {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}
