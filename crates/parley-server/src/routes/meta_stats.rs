//! `GET /api/v1/stats/meta`: Meta's own numbers (its messaging and pricing analytics for the
//! application's WABAs) beside Parley's counters for the same days, each difference above the
//! tolerance flagged (#16 item 5; `parley_engine::meta_compare`).

use axum::extract::State;
use parley_engine::meta_compare::{ComparisonRow, MetaCompareParams, MetaComparison};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AppAuth, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody, Query};
use crate::routes::messages::rfc3339;

#[derive(Debug, Deserialize, IntoParams)]
pub struct MetaStatsQuery {
    /// First day, RFC 3339 or a date (UTC), rounded down to the day. Default: 7 days before `to`.
    pub from: Option<String>,
    /// End (exclusive), rounded up to the day. Default: the end of today (UTC). At most 92
    /// days after `from`; `from` within Meta's one-year lookback.
    pub to: Option<String>,
    /// Only this platform (`plt_…`); default: every connected platform.
    pub platform: Option<String>,
    /// A difference is flagged above this percentage of the larger value (default 2; costs
    /// also above 0.01).
    pub tolerance_pct: Option<String>,
}

/// One compared figure.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComparisonRowView {
    /// `sent`, `delivered`, `charged` (messages Meta charged as `REGULAR`), `cost`.
    pub metric: String,
    /// `total`, `phone_number`, `category` or `country`.
    pub dimension: String,
    /// The phone number id, category or country; '' for a total.
    pub key: String,
    /// Meta's figure, as decimal text (a count, or an amount in `currency`).
    pub meta: String,
    /// Parley's figure (the counters; for cost the spend priced from the `pricing` Meta
    /// reported in the statuses, with the application's price table).
    pub parley: String,
    /// `meta − parley`.
    pub difference: String,
    /// The difference is above the tolerance.
    pub flagged: bool,
}

impl From<ComparisonRow> for ComparisonRowView {
    fn from(r: ComparisonRow) -> Self {
        ComparisonRowView {
            metric: r.metric.to_owned(),
            dimension: r.dimension.to_owned(),
            key: r.key,
            meta: r.meta,
            parley: r.parley,
            difference: r.difference,
            flagged: r.flagged,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ComparedPlatformView {
    pub id: String,
    pub waba_id: String,
    pub phone_numbers: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MetaStatsView {
    /// The first compared instant: the first date's midnight in `time_zone`.
    pub from: String,
    /// The end (exclusive): midnight after the last date in `time_zone`.
    pub to: String,
    /// The zone whose days are compared: the WABAs' (Meta aligns its daily buckets on it),
    /// `{"timezone_id", "name", "known", "note"?}`; UTC with a `note` when the WABAs differ,
    /// the zone is unknown, or its midnight is not on a UTC hour.
    #[schema(value_type = Object)]
    pub time_zone: parley_domain::waba_zone::WabaZone,
    pub currency: String,
    pub tolerance_pct: f64,
    /// Costs closer than this never differ.
    pub cost_tolerance: String,
    /// When Meta's numbers were fetched; they are reused for a minute.
    pub fetched_at: String,
    pub cached: bool,
    pub platforms: Vec<ComparedPlatformView>,
    pub rows: Vec<ComparisonRowView>,
    /// How many rows are flagged.
    pub flagged: usize,
}

impl From<MetaComparison> for MetaStatsView {
    fn from(c: MetaComparison) -> Self {
        MetaStatsView {
            from: rfc3339(c.from),
            to: rfc3339(c.to),
            time_zone: c.time_zone,
            currency: c.currency,
            tolerance_pct: c.tolerance_pct,
            cost_tolerance: c.cost_tolerance.to_string(),
            fetched_at: rfc3339(c.fetched_at),
            cached: c.cached,
            platforms: c
                .platforms
                .into_iter()
                .map(|p| ComparedPlatformView {
                    id: p.id,
                    waba_id: p.waba_id,
                    phone_numbers: p.phone_numbers,
                })
                .collect(),
            rows: c.rows.into_iter().map(Into::into).collect(),
            flagged: c.flagged,
        }
    }
}

impl MetaStatsQuery {
    pub fn params(&self) -> MetaCompareParams {
        MetaCompareParams {
            from: self.from.clone(),
            to: self.to.clone(),
            platform: self.platform.clone(),
            tolerance_pct: self.tolerance_pct.clone(),
        }
    }
}

/// Meta's own numbers beside Parley's: `pricing_analytics` (charged volume by category and
/// country, cost by category) and the messaging `analytics` (sent and delivered per number)
/// of each WABA, next to Parley's counters for the same days: the WABA's days, midnight to
/// midnight in its time zone (`time_zone`), as Meta's daily buckets are. Bounded (at most 92
/// days, 25 numbers), not paginated; Meta's answer is reused for a minute.
#[utoipa::path(
    get, path = "/api/v1/stats/meta", tag = "statistics", params(MetaStatsQuery),
    responses(
        (status = 200, body = MetaStatsView),
        (status = 400, description = "`invalid_time`, `invalid_range`, `range_too_large`, `range_too_old`, `range_in_future`, `invalid_tolerance`, `too_many_numbers`, `platform_not_found`", body = ErrorBody),
        (status = 403, description = "The token lacks the `read` scope", body = ErrorBody),
        (status = 404, description = "`platform_not_found`: no connected platform with this id", body = ErrorBody),
        (status = 409, description = "`meta_token_invalid`: Meta refused the platform's token", body = ErrorBody),
        (status = 502, description = "`meta_refused`, `meta_unavailable`", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn get_meta_stats(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<MetaStatsQuery>,
) -> Result<ApiJson<MetaStatsView>, ApiError> {
    Ok(ApiJson(
        state
            .engine
            .compare_with_meta(&app, &q.params())
            .await?
            .into(),
    ))
}
