//! Liveness, readiness and Prometheus metrics.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::console::campaigns::MAX_LIVE_STREAMS;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The process can serve: its database answers. The JSON body says what this node does:
/// `{"status": "ready", "node": "node_…", "role": "api" | "worker" | "all", "workers": [...],
/// "leases": [{"resource": "sender:<phone number id>" | "planner" | "job:…" | "node:…",
/// "token", "releasing"}], "host": "…", "started_at": …, "live_streams": {"open", "max"},
/// "uploads": {"in_flight", "max"}}` (503 with `"status": "unavailable"` when the database does
/// not answer).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Object), (status = 503, body = Object)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let node = state.engine.node();
    let body = |status: &str| {
        axum::Json(serde_json::json!({
            "status": status,
            "node": node.id,
            "role": node.role,
            "workers": node.workers,
            "leases": state.engine.leases(),
            "host": node.host,
            "started_at": node.started_at,
            // What this node holds for the console's pages and uploads (bounded; see
            // `MAX_LIVE_STREAMS` and `MAX_UPLOADS`).
            "live_streams": {
                "open": MAX_LIVE_STREAMS.saturating_sub(state.live.slots.available_permits()),
                "max": MAX_LIVE_STREAMS,
            },
            "uploads": {
                "in_flight": crate::MAX_UPLOADS.saturating_sub(state.uploads.available_permits()),
                "max": crate::MAX_UPLOADS,
            },
        }))
    };
    match state.engine.ready().await {
        Ok(_) => (StatusCode::OK, body("ready")).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, body("unavailable")).into_response()
        }
    }
}

/// Prometheus text format. With `metrics.token` set, only for `Authorization: Bearer <token>`.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, body = String), (status = 401, body = String)))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Compared in constant time: the token is a secret.
        let equal = given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !equal {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "/metrics needs Authorization: Bearer <metrics.token>",
            )
                .into_response();
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}
