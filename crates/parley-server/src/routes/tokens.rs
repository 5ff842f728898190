//! `/api/v1/tokens`: the application's API tokens: list, create (the secret is shown once),
//! revoke. All need the `manage` scope.

use crate::error::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_domain::{Scope, Scopes, TokenId};
use parley_engine::access::{CreatedToken, TokenRequest, token_id};
use parley_store::access::TokenRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::audit::AuditTarget;
use crate::auth::{AppAuth, Manages};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::routes::messages::rfc3339;

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// `tok_…`
    pub id: String,
    pub label: String,
    /// Some of `send`, `read`, `manage`.
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    /// Recorded at most once a minute.
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        TokenView {
            id: t.id.to_string(),
            label: t.label,
            scopes: t.scopes.names().into_iter().map(str::to_owned).collect(),
            created_at: rfc3339(t.created_at),
            expires_at: t.expires_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub data: Vec<TokenView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTokenView {
    #[serde(flatten)]
    pub token: TokenView,
    /// The secret to send as `Authorization: Bearer <token>`. Shown this once: Parley keeps
    /// only its hash.
    pub token_secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    /// Who or what uses the token (1–100 characters); shown in the audit log.
    pub label: String,
    /// Some of `send`, `read`, `manage`; absent: all three.
    pub scopes: Option<Vec<String>>,
    /// RFC 3339 time after which the token answers 401; absent: never expires.
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    pub after: Option<String>,
}

/// Checks `?limit` (1–200, default 50).
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            "`limit` must be between 1 and 200",
        )
        .field("limit"))
    }
}

fn invalid(code: &'static str, message: impl Into<String>, field: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).field(field)
}

/// Reads a create body (the API's, or the console form's shaped like it) at the edge.
pub fn token_request(body: NewTokenBody) -> Result<TokenRequest, ApiError> {
    let scopes = match body.scopes {
        None => Scopes::ALL,
        Some(names) => {
            let list = names
                .iter()
                .map(|n| Scope::parse(n))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("invalid_scope", e.to_string(), "scopes"))?;
            Scopes::from_list(&list)
                .map_err(|e| invalid("invalid_scope", e.to_string(), "scopes"))?
        }
    };
    let expires_at = body
        .expires_at
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_expiry",
                        "`expires_at` is an RFC 3339 time, e.g. 2027-01-01T00:00:00Z",
                    )
                    .field("expires_at")
                })
        })
        .transpose()?;
    Ok(TokenRequest {
        label: body.label,
        scopes,
        expires_at,
    })
}

/// The application's API tokens, newest first; revoked ones too (with `revoked_at`).
#[utoipa::path(
    get, path = "/api/v1/tokens", tag = "tokens", params(ListQuery),
    responses(
        (status = 200, body = TokenList),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn list_tokens(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Query(q): Query<ListQuery>,
) -> Result<ApiJson<TokenList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q
        .after
        .as_deref()
        .map(TokenId::parse)
        .transpose()
        .map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", e.to_string()).field("after")
        })?;
    let mut rows = state.engine.tokens(&app, after.as_ref(), limit + 1).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|t| t.id.to_string()))
        .flatten();
    Ok(ApiJson(TokenList {
        data: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// Create a token. The answer holds the secret (`token_secret`) this once.
#[utoipa::path(
    post, path = "/api/v1/tokens", tag = "tokens",
    request_body = NewTokenBody,
    responses(
        (status = 201, body = CreatedTokenView),
        (status = 400, body = ErrorBody),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
        (status = 409, description = "`token_limit_reached`: the application has 100 live tokens already", body = ErrorBody),
        (status = 422, description = "No label, an unknown scope, or an expiry in the past", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn create_token(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    ApiJson(body): ApiJson<NewTokenBody>,
) -> Result<Response, ApiError> {
    let created = state
        .engine
        .create_token(&app, token_request(body)?)
        .await?;
    Ok(created_response(created))
}

/// 201 with the token and its secret, naming the token for the audit log.
pub fn created_response(created: CreatedToken) -> Response {
    let id = created.record.id.to_string();
    let mut resp = (
        StatusCode::CREATED,
        ApiJson(CreatedTokenView {
            token: created.record.into(),
            token_secret: created.secret,
        }),
    )
        .into_response();
    // The answer holds a secret: not to be kept by any cache.
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp.extensions_mut().insert(AuditTarget(id));
    resp
}

/// Revoke a token: it answers 401 `token_revoked` from now on. Revoking again is harmless.
#[utoipa::path(
    post, path = "/api/v1/tokens/{id}/revoke", tag = "tokens",
    params(("id" = String, Path, description = "Token id, `tok_…`")),
    responses(
        (status = 200, body = TokenView),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Result<ApiJson<TokenView>, ApiError> {
    Ok(ApiJson(
        state
            .engine
            .revoke_token(&app, &token_id(&id)?)
            .await?
            .into(),
    ))
}
