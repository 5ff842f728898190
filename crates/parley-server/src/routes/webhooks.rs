//! Meta's webhook endpoint. The POST checks `X-Hub-Signature-256` over the raw bytes, hands the
//! body to the engine's intake (group commit: many deliveries share one transaction) and
//! answers 200 once it is committed; the engine's processor applies it later. A wrong
//! signature gets 401 and nothing is stored; a full intake queue gets 503 with `Retry-After`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parley_meta::{SIGNATURE_HEADER, verify_signature};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ErrorBody, Query};

#[derive(Debug, Deserialize, IntoParams)]
pub struct VerifyQuery {
    #[serde(rename = "hub.mode")]
    #[param(rename = "hub.mode")]
    pub mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    #[param(rename = "hub.verify_token")]
    pub verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    #[param(rename = "hub.challenge")]
    pub challenge: Option<String>,
}

/// Meta's verification handshake: echoes `hub.challenge` when the verify token matches.
#[utoipa::path(
    get, path = "/webhooks/whatsapp", tag = "webhooks",
    params(VerifyQuery),
    responses(
        (status = 200, description = "The challenge, as plain text", body = String),
        (status = 403, body = ErrorBody),
    )
)]
pub async fn verify(State(state): State<AppState>, Query(q): Query<VerifyQuery>) -> Response {
    let expected = state.config.verify_token.as_bytes();
    let ok = q.mode.as_deref() == Some("subscribe")
        && q.verify_token
            .as_deref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected)));
    match (ok, q.challenge) {
        (true, Some(challenge)) => (StatusCode::OK, challenge).into_response(),
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "verification_failed",
            "hub.mode must be `subscribe` and hub.verify_token must equal the configured verify token",
        )
        .into_response(),
    }
}

/// Receives signed events from Meta (statuses, inbound messages, account and template updates).
#[utoipa::path(
    post, path = "/webhooks/whatsapp", tag = "webhooks",
    request_body(content = Object, description = "Meta's webhook envelope, signed with the app secret"),
    params(("X-Hub-Signature-256" = String, Header, description = "sha256=<hex HMAC of the raw body>")),
    responses(
        (status = 200, description = "Stored"),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 500, body = ErrorBody),
        (status = 503, description = "`intake_busy`: too many deliveries waiting to be stored; `Retry-After` says when to deliver again", body = ErrorBody),
    )
)]
pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !verify_signature(state.config.app_secret.as_bytes(), &body, signature) {
        metrics::counter!("parley_webhooks_rejected_total").increment(1);
        tracing::warn!("webhook with a missing or wrong signature refused");
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "X-Hub-Signature-256 does not match the body signed with the app secret",
        )
        .into_response();
    }
    match state.engine.accept_webhook(body).await {
        Ok(()) => StatusCode::OK.into_response(),
        // Not stored: a non-200 makes Meta deliver it again.
        Err(e) => {
            let retry_after = e.retry_after_secs;
            let mut resp = ApiError::from(e).into_response();
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
    }
}
