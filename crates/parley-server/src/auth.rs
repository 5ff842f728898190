//! `Authorization: Bearer <token>` → the application the token belongs to.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use parley_domain::ApplicationId;

use crate::AppState;
use crate::error::ApiError;

/// The authenticated application of an API request.
pub struct AppAuth(pub ApplicationId);

impl FromRequestParts<AppState> for AppAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized =
            |msg: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg.to_owned());
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                unauthorized("missing API token: send the header `Authorization: Bearer <token>`")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let app = state
            .engine
            .application_for_token(token)
            .await?
            .ok_or_else(|| {
                unauthorized("the API token is not valid; create one with `parley token create`")
            })?;
        Ok(AppAuth(app))
    }
}
