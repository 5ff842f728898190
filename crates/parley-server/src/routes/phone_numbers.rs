//! `GET /api/v1/phone-numbers`: the application's WhatsApp numbers.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::{AppAuth, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody};

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
    /// Always absent: an application has few numbers, all on one page.
    pub next_cursor: Option<String>,
}

/// The WhatsApp numbers this application can send from.
#[utoipa::path(
    get, path = "/api/v1/phone-numbers", tag = "phone numbers",
    responses((status = 200, body = PhoneNumberList), (status = 401, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn list_phone_numbers(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
) -> Result<ApiJson<PhoneNumberList>, ApiError> {
    let numbers = state.engine.phone_numbers(&app).await?;
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
        next_cursor: None,
    }))
}
