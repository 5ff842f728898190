//! `/api/v1/settings/opt-out`: the application's opt-out keywords (any language, matched on
//! the whole message after Unicode case folding and trimming) and the confirmation reply.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{AppAuth, Manages, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody};

#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutSettingsView {
    /// The keywords in force, folded (lower case, trimmed): an inbound text that is exactly
    /// one of them, after folding, opts its sender out of marketing messages.
    pub keywords: Vec<String>,
    /// True when `keywords` are Parley's defaults (English, Russian, German, Spanish,
    /// Portuguese, French, Italian).
    pub defaults: bool,
    /// Sent back (inside the window the keyword opened) when a keyword opts a contact out;
    /// null: no reply.
    pub reply: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptOutSettingsBody {
    /// Up to 200 keywords of up to 100 characters, in any language; null or absent restores
    /// the defaults.
    #[serde(default)]
    pub keywords: Option<Vec<String>>,
    /// Up to 4,096 characters; null, absent or blank sends no confirmation.
    #[serde(default)]
    pub reply: Option<String>,
}

fn view(v: parley_engine::consent::OptOutView) -> OptOutSettingsView {
    OptOutSettingsView {
        keywords: v.keywords,
        defaults: v.defaults,
        reply: v.reply,
    }
}

/// The application's opt-out keywords and confirmation reply.
#[utoipa::path(
    get, path = "/api/v1/settings/opt-out", tag = "contacts",
    responses((status = 200, body = OptOutSettingsView), (status = 401, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn get_opt_out(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
) -> Result<ApiJson<OptOutSettingsView>, ApiError> {
    Ok(ApiJson(view(state.engine.opt_out_settings(&app).await?)))
}

/// Replaces the application's opt-out keywords and confirmation reply.
#[utoipa::path(
    put, path = "/api/v1/settings/opt-out", tag = "contacts",
    request_body = OptOutSettingsBody,
    responses(
        (status = 200, body = OptOutSettingsView),
        (status = 400, description = "`invalid_keywords` (empty list, blank, too long or too many keywords) or `invalid_reply`", body = ErrorBody),
        (status = 401, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn put_opt_out(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    ApiJson(body): ApiJson<OptOutSettingsBody>,
) -> Result<ApiJson<OptOutSettingsView>, ApiError> {
    Ok(ApiJson(view(
        state
            .engine
            .set_opt_out_settings(&app, body.keywords, body.reply)
            .await?,
    )))
}
