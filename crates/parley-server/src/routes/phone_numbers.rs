//! `GET /api/v1/phone-numbers`: the application's WhatsApp numbers.

use axum::extract::State;
use axum::http::StatusCode;
use parley_domain::PhoneNumberId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{AppAuth, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody, Query};
use crate::routes::tokens::{ListQuery, page_limit};

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumberView {
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub verified_name: Option<String>,
    pub quality_rating: Option<String>,
    /// Business-initiated conversations per rolling 24 h, e.g. `TIER_250`.
    pub messaging_limit: Option<String>,
    /// Messages per second Meta allows this number.
    pub throughput_mps: u32,
    pub status: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumberList {
    pub data: Vec<PhoneNumberView>,
    /// The next page's `after` (the last number's `phone_number_id`), absent on the last page.
    pub next_cursor: Option<String>,
}

/// The WhatsApp numbers this application can send from, by `phone_number_id`, a page at a
/// time.
#[utoipa::path(
    get, path = "/api/v1/phone-numbers", tag = "phone numbers", params(ListQuery),
    responses(
        (status = 200, body = PhoneNumberList),
        (status = 400, description = "`invalid_limit` (1–200), `invalid_cursor` (`after` names no number of this application)", body = ErrorBody),
        (status = 401, body = ErrorBody)
    ),
    security(("bearer" = ["read"]))
)]
pub async fn list_phone_numbers(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<ListQuery>,
) -> Result<ApiJson<PhoneNumberList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            PhoneNumberId::parse(a).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", e.to_string())
                    .field("after")
            })
        })
        .transpose()?;
    let mut numbers = state
        .engine
        .phone_numbers_page(&app, after.as_ref(), limit + 1)
        .await?;
    let more = numbers.len() > limit as usize;
    numbers.truncate(limit as usize);
    let next_cursor = more
        .then(|| numbers.last().map(|n| n.phone_number_id.to_string()))
        .flatten();
    Ok(ApiJson(PhoneNumberList {
        data: numbers
            .into_iter()
            .map(|n| PhoneNumberView {
                phone_number_id: n.phone_number_id.into(),
                display_phone_number: n.display_phone_number,
                verified_name: n.verified_name,
                quality_rating: n.quality_rating,
                messaging_limit: n.messaging_limit,
                throughput_mps: n.throughput_mps,
                status: n.status,
            })
            .collect(),
        next_cursor,
    }))
}
