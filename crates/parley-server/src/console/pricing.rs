//! `/settings/pricing`: the price table cost estimates and spend use (#16), the console face of
//! `GET/PUT/DELETE /api/v1/pricing/rates`: the markets and their rates as a table, the whole
//! table as JSON to edit (admins), and a way back to Parley's default.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{PageError, PageResult, SameOrigin, SignedIn, render, render_with};
use crate::AppState;
use parley_engine::pricing::RatesView;

#[derive(Template)]
#[template(path = "pricing.html")]
struct PricingPage {
    active: &'static str,
    email: String,
    rates: RatesView,
    json: String,
    notice: Option<String>,
    error: Option<String>,
}

fn page_error(e: parley_engine::EngineError) -> PageError {
    PageError::Text(crate::error::status_of(&e), e.message)
}

fn pretty(r: &RatesView) -> String {
    serde_json::to_string_pretty(&r.table).unwrap_or_default()
}

/// `GET /settings/pricing`
pub async fn pricing_page(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
) -> PageResult {
    let rates = state
        .engine
        .price_table(&app.id)
        .await
        .map_err(page_error)?;
    Ok(render(&PricingPage {
        active: "settings",
        email,
        json: pretty(&rates),
        rates,
        notice: None,
        error: None,
    }))
}

#[derive(Deserialize)]
pub struct PricingForm {
    table: String,
    /// Present when "Restore Parley's default" was pressed.
    defaults: Option<String>,
}

/// `POST /settings/pricing` (admins: `roles.rs`).
pub async fn save_pricing(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Form(form): Form<PricingForm>,
) -> PageResult {
    let result = if form.defaults.is_some() {
        state.engine.reset_price_table(&app.id).await
    } else {
        state.engine.set_price_table(&app.id, &form.table).await
    };
    match result {
        Ok(rates) => Ok(render(&PricingPage {
            active: "settings",
            email,
            json: pretty(&rates),
            rates,
            notice: Some("Saved.".into()),
            error: None,
        })),
        Err(e) if e.kind == parley_engine::ErrorKind::BadRequest => {
            let rates = state
                .engine
                .price_table(&app.id)
                .await
                .map_err(page_error)?;
            let at = e.field.clone().filter(|f| !f.is_empty());
            Ok(render_with(
                StatusCode::UNPROCESSABLE_ENTITY,
                &PricingPage {
                    active: "settings",
                    email,
                    rates,
                    json: form.table,
                    notice: None,
                    error: Some(match at {
                        Some(f) => format!("{} ({}, at {f})", e.message, e.code),
                        None => format!("{} ({})", e.message, e.code),
                    }),
                },
            ))
        }
        Err(e) => Err(page_error(e)),
    }
}
