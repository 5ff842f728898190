//! `/api/v1/pricing/rates`: the price table the application's cost estimates and spend use
//! (#16): per market (countries grouped as Meta's rate card groups them) the rate of each
//! category (`marketing`, `utility`, `authentication`, `authentication_international`,
//! `service`) and the volume tiers of utility and authentication, in one currency, with the
//! date the rates apply from. Parley ships Meta's rates of 2026-10-01 (docs/COST.md).

use axum::body::Bytes;
use axum::extract::State;

use crate::AppState;
use crate::auth::{AppAuth, Manages, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody};
use parley_engine::EngineError;
use parley_engine::pricing::RatesView;

/// The application's price table (`default: true` until it sets its own).
#[utoipa::path(
    get, path = "/api/v1/pricing/rates", tag = "statistics",
    responses(
        (status = 200, description = "`{default, currency, effective_date, source, default_market, authentication_international: {eligible, business_country}, markets: [{id, name, countries, marketing, utility, authentication, authentication_international?, service, utility_tiers?: [{from, rate}], authentication_tiers?}]}`; rates are decimal strings in `currency`", body = Object),
        (status = 403, description = "The token lacks the `read` scope", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn get_rates(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
) -> Result<ApiJson<RatesView>, ApiError> {
    Ok(ApiJson(state.engine.price_table(&app).await?))
}

/// Replaces the application's price table (the whole table, in the shape `GET` shows; rates
/// as decimal strings or numbers, at most 6 decimals).
#[utoipa::path(
    put, path = "/api/v1/pricing/rates", tag = "statistics",
    request_body(content = Object, description = "The table, as `GET` shows it (without `default`)"),
    responses(
        (status = 200, body = Object),
        (status = 400, description = "`price_table_invalid` (not the table's shape, unknown field), `currency_invalid`, `effective_date_invalid`, `rate_invalid`, `market_invalid`, `country_invalid`, `country_duplicate`, `default_market_unknown`, `tier_invalid`; `field` names the place", body = ErrorBody),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn put_rates(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    body: Bytes,
) -> Result<ApiJson<RatesView>, ApiError> {
    let text = std::str::from_utf8(&body).map_err(|_| {
        EngineError::bad_request("price_table_invalid", "the price table is not UTF-8 JSON")
    })?;
    // `default` as `GET` shows it is accepted and ignored, so a read table can be sent back.
    let text = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(mut m)) if m.contains_key("default") => {
            m.remove("default");
            serde_json::Value::Object(m).to_string()
        }
        _ => text.to_owned(),
    };
    Ok(ApiJson(state.engine.set_price_table(&app, &text).await?))
}

/// Back to Parley's default table (Meta's rates of 2026-10-01).
#[utoipa::path(
    delete, path = "/api/v1/pricing/rates", tag = "statistics",
    responses(
        (status = 200, body = Object),
        (status = 403, description = "The token lacks the `manage` scope", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn reset_rates(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
) -> Result<ApiJson<RatesView>, ApiError> {
    Ok(ApiJson(state.engine.reset_price_table(&app).await?))
}
