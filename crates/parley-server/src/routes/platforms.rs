//! `/api/v1/platforms`: WhatsApp platforms connected through Embedded Signup. Sign-up with the
//! dialog's code, the list and one platform with its numbers and set-up steps, refresh from
//! Meta, retry of a failed step, disconnect.

use crate::error::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parley_domain::{ApplicationId, PlatformId};
use parley_engine::EngineError;
use parley_engine::onboarding::{SignupOutcome, SignupRequest};
use parley_store::coexistence::CoexistenceRecord;
use parley_store::platforms::{NumberSetupRecord, OnboardingRecord, PlatformSetupRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AppAuth, Manages, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody, ErrorDetail, status_of};
use crate::routes::messages::rfc3339;

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignupBody {
    /// `authResponse.code` from `FB.login`'s callback. It lives 30 seconds.
    pub code: String,
    /// `data.waba_id` of the `WA_EMBEDDED_SIGNUP` FINISH event; found with `debug_token` when absent.
    pub waba_id: Option<String>,
    /// `data.phone_number_id`; absent for FINISH_ONLY_WABA.
    pub phone_number_id: Option<String>,
    /// `data.business_id` (the business portfolio).
    pub business_id: Option<String>,
    /// The event (`FINISH`, `FINISH_ONLY_WABA`, `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING`, …).
    pub event: Option<String>,
}

impl From<SignupBody> for SignupRequest {
    fn from(body: SignupBody) -> Self {
        SignupRequest {
            code: body.code,
            waba_id: body.waba_id,
            phone_number_id: body.phone_number_id,
            business_id: body.business_id,
            event: body.event,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    /// `exchange_code`, `debug_token`, `subscribe_app`, `find_number`, `verify_number`,
    /// `register_phone`, `read_business`, `read_waba`, `read_phone_numbers`, `read_profile`.
    pub step: String,
    /// `done`, `failed`, `skipped` or `waiting`.
    pub state: String,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OnboardingView {
    /// `onb_…`.
    pub id: String,
    /// `running`, `failed`, `waiting` (for the person: see the platform's `next_step`) or
    /// `done`.
    pub state: String,
    /// The step to retry with `POST /api/v1/platforms/{id}/retry` (`failed`), or the step
    /// waiting (`waiting`).
    pub failed_step: Option<String>,
    pub event: Option<String>,
    pub steps: Vec<StepView>,
    pub started_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NumberView {
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub verified_name: Option<String>,
    /// Display-name review: `APPROVED`, `PENDING_REVIEW`, `DECLINED`, …
    pub name_status: Option<String>,
    /// `GREEN`, `YELLOW`, `RED` or `UNKNOWN`.
    pub quality_rating: Option<String>,
    /// Business-initiated conversations per rolling 24 h: `TIER_250`, `TIER_2K`, …
    pub messaging_limit: Option<String>,
    /// `business_portfolio` (shared by the portfolio's numbers) or `phone_number`.
    pub messaging_limit_scope: Option<String>,
    /// `STANDARD` (80 msg/s) or `HIGH`.
    pub throughput_level: Option<String>,
    pub throughput_mps: u32,
    pub status: Option<String>,
    /// Set for a WhatsApp Business app number (coexistence): its syncs and offboarding.
    pub coexistence: Option<CoexistenceView>,
}

/// A WhatsApp Business app number on the Cloud API (coexistence).
#[derive(Debug, Serialize, ToSchema)]
pub struct CoexistenceView {
    /// When Parley saw it onboarded; both syncs must be asked for within 24 h of it.
    pub onboarded_at: String,
    /// The app's contacts: `pending`, `requested` or `failed`.
    pub contacts_sync: String,
    /// The app's chat history: `pending`, `requested`, `in_progress`, `done`, `declined` or `failed`.
    pub history_sync: String,
    /// 0–100, from Meta's history webhooks.
    pub history_progress: i64,
    /// What the platform page shows: `requested`, `in progress 55%`, `done`, `declined`, …
    pub sync_status: String,
    /// Why a sync failed, or the business's decline.
    pub sync_error: Option<String>,
    /// Set while the business has disconnected the number in the app (Meta's reason);
    /// its messages stay queued meanwhile.
    pub disconnection_reason: Option<String>,
}

fn coexistence_view(c: CoexistenceRecord) -> CoexistenceView {
    let sync_status = match (c.history_sync.as_str(), c.contacts_sync.as_str()) {
        (_, "failed") | ("failed", _) => "failed".to_owned(),
        ("in_progress", _) => format!("in progress {}%", c.history_progress),
        ("done", _) => "done".to_owned(),
        ("declined", _) => "declined".to_owned(),
        ("requested", _) | (_, "requested") => "requested".to_owned(),
        _ => "pending".to_owned(),
    };
    CoexistenceView {
        onboarded_at: rfc3339(c.onboarded_at),
        contacts_sync: c.contacts_sync,
        history_sync: c.history_sync,
        history_progress: c.history_progress,
        sync_status,
        sync_error: c.sync_error,
        disconnection_reason: c.disconnection_reason,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformView {
    /// `plt_…`.
    pub id: String,
    pub kind: &'static str,
    /// `setting_up`, `pending_review`, `active`, `rejected`, `restricted` or `disconnected`.
    pub status: String,
    /// Why: Meta's review or restriction, or the failed set-up step.
    pub status_reason: Option<String>,
    /// The business portfolio's name.
    pub company_name: Option<String>,
    pub business_id: String,
    pub waba_id: String,
    pub waba_name: Option<String>,
    /// The WABA as Meta describes it (currency, timezone, template namespace, review and
    /// verification status) with its business profile under `profile`.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// The WABA's time zone, from Meta's `timezone_id` in `details`: `{"timezone_id", "name"
    /// (IANA), "known", "note"?}`. Volume tiers count calendar months in it, and the
    /// comparison with Meta's analytics uses its days. `known: false` (Meta gave no id, or
    /// one Parley does not know): Parley counts in UTC, and `note` says so.
    #[schema(value_type = Object, example = json!({"timezone_id": "1", "name": "America/Los_Angeles", "known": true}))]
    pub time_zone: parley_domain::waba_zone::WabaZone,
    pub phone_numbers: Vec<NumberView>,
    pub connected_at: Option<String>,
    pub disconnected_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The most recent sign-up of this platform, step by step.
    pub onboarding: Option<OnboardingView>,
    /// What the person must do before the sign-up can finish: `add_number` (it finished
    /// without a number: `POST /api/v1/platforms/{id}/phone_numbers`) or `verify_number`
    /// (`POST …/request_code`, then `POST …/verify_code`). Absent when nothing waits.
    pub next_step: Option<NextStepView>,
    /// Marketing templates go through Meta's Marketing Messages API
    /// (`POST /{phone}/marketing_messages`); utility, authentication and free-form messages
    /// keep the Cloud API. Set with `PATCH /api/v1/platforms/{id}`.
    pub marketing_messages: bool,
}

/// What `PATCH /api/v1/platforms/{id}` changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformSettingsBody {
    /// Send marketing templates through the Marketing Messages API. Turning it on asks Meta
    /// for the WABA's `marketing_messages_onboarding_status`: refused with
    /// `marketing_messages_not_onboarded` (409) unless it is `ONBOARDED`.
    pub marketing_messages: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NextStepView {
    /// `add_number` or `verify_number`.
    pub action: String,
    /// The number waiting for its code (`verify_number`).
    pub phone_number_id: Option<String>,
    pub message: String,
}

impl From<parley_engine::onboarding::NextStep> for NextStepView {
    fn from(n: parley_engine::onboarding::NextStep) -> Self {
        NextStepView {
            action: n.action.to_owned(),
            phone_number_id: n.phone_number_id,
            message: n.message,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RequestCodeBody {
    /// `SMS` (default) or `VOICE`.
    pub code_method: Option<String>,
    /// The language of the text or call, e.g. `en_US` (default), `pt_BR`.
    pub language: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyCodeBody {
    /// The code Meta sent by text message or call.
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddNumberBody {
    /// The country calling code: `1`, `49`, …
    pub cc: String,
    /// The number, with or without the country code.
    pub phone_number: String,
    /// The business name WhatsApp shows with it (Meta reviews it).
    pub verified_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformList {
    pub data: Vec<PlatformView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A sign-up or retry that stopped at a step: the error, and the platform (when it exists)
/// with the failed step to retry.
#[derive(Serialize, ToSchema)]
pub struct SignupFailure {
    pub error: ErrorDetail,
    pub platform: Option<PlatformView>,
    pub onboarding: OnboardingView,
}

#[derive(Serialize, ToSchema)]
pub struct DisconnectResult {
    pub platform: PlatformView,
    /// The app no longer receives this WABA's webhooks.
    pub unsubscribed: bool,
    /// Numbers deregistered from the Cloud API (only with `?deregister=true`).
    pub deregistered: Vec<String>,
    /// Meta calls that failed; the platform is disconnected in Parley regardless.
    pub warnings: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PlatformQuery {
    /// Page size, 1–100 (default 20).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DisconnectQuery {
    /// `true` also deregisters the numbers from the Cloud API (they stop working with any
    /// app until registered again; Meta allows 10 register/deregister calls per 72 h).
    pub deregister: Option<bool>,
}

fn number_view(n: NumberSetupRecord, coexistence: &mut Vec<CoexistenceRecord>) -> NumberView {
    let coexistence = coexistence
        .iter()
        .position(|c| c.phone_number_id == n.number.phone_number_id)
        .map(|i| coexistence_view(coexistence.swap_remove(i)));
    NumberView {
        coexistence,
        phone_number_id: n.number.phone_number_id.into(),
        display_phone_number: n.number.display_phone_number,
        verified_name: n.number.verified_name,
        name_status: n.name_status,
        quality_rating: n.number.quality_rating,
        messaging_limit: n.number.messaging_limit,
        messaging_limit_scope: n.messaging_limit_scope,
        throughput_level: n.throughput_level,
        throughput_mps: n.number.throughput_mps,
        status: n.number.status,
    }
}

pub fn onboarding_view(s: OnboardingRecord) -> OnboardingView {
    OnboardingView {
        id: s.id,
        state: s.state,
        failed_step: s.failed_step,
        event: s.event,
        started_at: rfc3339(s.created_at),
        steps: s
            .steps
            .into_iter()
            .map(|st| StepView {
                step: st.step,
                state: st.state,
                error_code: st.error_code,
                error_message: st.error_message,
                at: rfc3339(st.at),
            })
            .collect(),
    }
}

/// The platform as the API and the console's live list show it.
pub async fn platform_view(
    state: &AppState,
    setup: PlatformSetupRecord,
) -> Result<PlatformView, ApiError> {
    let p = setup.platform;
    let numbers = state.engine.platform_numbers(&p.id).await?;
    let mut coexistence = state.engine.platform_coexistence(&p.id).await?;
    let session = state.engine.latest_onboarding(&p.id).await?;
    let next_step = session
        .as_ref()
        .and_then(parley_engine::onboarding::next_step)
        .map(NextStepView::from);
    let onboarding = session.map(onboarding_view);
    let marketing_messages = state.engine.platform_marketing_messages(&p.id).await?;
    Ok(PlatformView {
        id: p.id.to_string(),
        kind: "whatsapp",
        status: p.status,
        status_reason: setup.status_reason,
        company_name: setup.company_name,
        business_id: p.business_id.map(String::from).unwrap_or_default(),
        waba_id: p.waba_id.into(),
        waba_name: p.waba_name,
        time_zone: parley_domain::waba_zone::WabaZone::from_details(&p.details),
        details: p.details,
        phone_numbers: numbers
            .into_iter()
            .map(|n| number_view(n, &mut coexistence))
            .collect(),
        connected_at: setup.connected_at.map(rfc3339),
        disconnected_at: setup.disconnected_at.map(rfc3339),
        created_at: rfc3339(p.created_at),
        updated_at: rfc3339(p.updated_at),
        onboarding,
        next_step,
        marketing_messages,
    })
}

fn parse_platform_id(id: &str) -> Result<PlatformId, ApiError> {
    PlatformId::parse(id).map_err(|_| ApiError::not_found("this platform"))
}

/// One of the application's platforms, or 404.
pub async fn owned_view(
    state: &AppState,
    app: &ApplicationId,
    id: &PlatformId,
) -> Result<PlatformView, ApiError> {
    let setup = state
        .engine
        .platform_setup(app, id)
        .await?
        .ok_or_else(|| ApiError::not_found("this platform"))?;
    platform_view(state, setup).await
}

/// The answer to a sign-up or retry: 201/200 with the platform, or the failure with the
/// platform and its failed step.
pub async fn outcome_response(
    state: &AppState,
    app: &ApplicationId,
    outcome: SignupOutcome,
    ok: StatusCode,
) -> Response {
    let platform = match &outcome.platform_id {
        Some(id) => match owned_view(state, app, id).await {
            Ok(v) => Some(v),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    match (outcome.failure, platform) {
        (None, Some(platform)) => (ok, axum::Json(platform)).into_response(),
        (failure, platform) => {
            let f = failure
                .unwrap_or_else(|| EngineError::internal("sign-up ended without a platform"));
            let status = status_of(&f);
            let body = SignupFailure {
                error: f.into(),
                platform,
                onboarding: onboarding_view(outcome.session),
            };
            (status, axum::Json(body)).into_response()
        }
    }
}

/// Connects a WhatsApp Business Account from Embedded Signup: exchanges the code, checks the
/// token, subscribes to the WABA's webhooks, registers the number and reads the account.
/// Post as soon as the dialog finishes (the code lives 30 s).
#[utoipa::path(
    post, path = "/api/v1/platforms/whatsapp/signup", tag = "platforms",
    request_body = SignupBody,
    responses(
        (status = 201, description = "Connected; Meta's review decides when it turns active", body = PlatformView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, description = "A step failed (expired code, registration limit, …); retry the failed step when `platform` is set", body = SignupFailure),
        (status = 502, body = SignupFailure),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn signup(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    ApiJson(body): ApiJson<SignupBody>,
) -> Response {
    match state.engine.signup(&app, body.into()).await {
        Ok(outcome) => outcome_response(&state, &app, outcome, StatusCode::CREATED).await,
        Err(f) => ApiError::from(f).into_response(),
    }
}

/// The application's platforms, oldest first.
#[utoipa::path(
    get, path = "/api/v1/platforms", tag = "platforms",
    params(PlatformQuery),
    responses((status = 200, body = PlatformList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn list_platforms(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<PlatformQuery>,
) -> Result<ApiJson<PlatformList>, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            "`limit` must be between 1 and 100",
        )
        .field("limit"));
    }
    let after = match q.after.as_deref() {
        None => None,
        Some(a) => Some(PlatformId::parse(a).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "`after` is not a cursor from this list; start again without it",
            )
            .field("after")
        })?),
    };
    let mut rows = state
        .engine
        .platform_setups(&app, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        data.push(platform_view(&state, row).await?);
    }
    let next_cursor = more.then(|| data.last().map(|p| p.id.clone())).flatten();
    Ok(ApiJson(PlatformList { data, next_cursor }))
}

/// One platform with its numbers and the steps of its latest sign-up.
#[utoipa::path(
    get, path = "/api/v1/platforms/{id}", tag = "platforms",
    params(("id" = String, Path, description = "Platform id, `plt_…`")),
    responses((status = 200, body = PlatformView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn get_platform(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(id): Path<String>,
) -> Result<ApiJson<PlatformView>, ApiError> {
    let id = parse_platform_id(&id)?;
    Ok(ApiJson(owned_view(&state, &app, &id).await?))
}

/// Changes the platform's settings: `marketing_messages` sends marketing templates through
/// Meta's Marketing Messages API, allowed only while Meta says the WABA is `ONBOARDED`.
#[utoipa::path(
    patch, path = "/api/v1/platforms/{id}", tag = "platforms",
    params(("id" = String, Path, description = "Platform id, `plt_…`")),
    request_body = PlatformSettingsBody,
    responses((status = 200, body = PlatformView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "The WABA is not onboarded to the Marketing Messages API (`marketing_messages_not_onboarded`), or the platform is disconnected", body = ErrorBody), (status = 502, description = "Meta did not answer", body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn update_platform(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PlatformSettingsBody>,
) -> Result<ApiJson<PlatformView>, ApiError> {
    let id = parse_platform_id(&id)?;
    if let Some(on) = body.marketing_messages {
        state.engine.set_marketing_messages(&app, &id, on).await?;
    }
    Ok(ApiJson(owned_view(&state, &app, &id).await?))
}

/// Reads the portfolio, WABA, numbers and profile from Meta again and syncs templates.
#[utoipa::path(
    post, path = "/api/v1/platforms/{id}/refresh", tag = "platforms",
    params(("id" = String, Path, description = "Platform id, `plt_…`")),
    responses((status = 200, body = PlatformView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, description = "Meta did not answer", body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn refresh_platform(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Result<ApiJson<PlatformView>, ApiError> {
    let id = parse_platform_id(&id)?;
    state.engine.refresh_platform(&app, &id).await?;
    Ok(ApiJson(owned_view(&state, &app, &id).await?))
}

/// Runs the failed step of the platform's sign-up again, then the steps after it.
#[utoipa::path(
    post, path = "/api/v1/platforms/{id}/retry", tag = "platforms",
    params(("id" = String, Path, description = "Platform id, `plt_…`")),
    responses((status = 200, body = PlatformView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = SignupFailure)),
    security(("bearer" = ["manage"]))
)]
pub async fn retry_platform(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
) -> Response {
    let id = match parse_platform_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match state.engine.retry_onboarding(&app, &id).await {
        Ok(outcome) => outcome_response(&state, &app, outcome, StatusCode::OK).await,
        Err(f) => ApiError::from(f).into_response(),
    }
}

/// Disconnects the platform: Parley stops sending from its numbers, unsubscribes from its
/// webhooks and forgets the business token. Numbers stay registered unless `deregister=true`.
#[utoipa::path(
    delete, path = "/api/v1/platforms/{id}", tag = "platforms",
    params(("id" = String, Path, description = "Platform id, `plt_…`"), DisconnectQuery),
    responses((status = 200, body = DisconnectResult), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = ["manage"]))
)]
pub async fn disconnect_platform(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
    Query(q): Query<DisconnectQuery>,
) -> Result<ApiJson<DisconnectResult>, ApiError> {
    let id = parse_platform_id(&id)?;
    let report = state
        .engine
        .disconnect_platform(&app, &id, q.deregister.unwrap_or(false))
        .await?;
    Ok(ApiJson(DisconnectResult {
        platform: owned_view(&state, &app, &id).await?,
        unsubscribed: report.unsubscribed,
        deregistered: report.deregistered.into_iter().map(String::from).collect(),
        warnings: report.warnings,
    }))
}

/// Asks Meta to send the waiting number its verification code, by text message (`SMS`) or
/// call (`VOICE`). Call again to resend.
#[utoipa::path(
    post, path = "/api/v1/platforms/{id}/request_code", tag = "platforms",
    params(("id" = String, Path, description = "Platform id, `plt_…`")),
    request_body = RequestCodeBody,
    responses(
        (status = 200, description = "Meta is sending the code", body = NextStepView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "No number of this platform waits for a code", body = ErrorBody),
        (status = 422, description = "Meta refused (too many codes: wait, then ask again)", body = ErrorBody),
        (status = 502, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn request_code(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RequestCodeBody>,
) -> Result<ApiJson<NextStepView>, ApiError> {
    let id = parse_platform_id(&id)?;
    let method = match body.code_method.as_deref() {
        None => parley_engine::onboarding::CodeMethod::Sms,
        Some(m) => parley_engine::onboarding::CodeMethod::parse(m).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_code_method",
                "`code_method` is SMS (a text message) or VOICE (a call)",
            )
            .field("code_method")
        })?,
    };
    let next = state
        .engine
        .request_verification_code(&app, &id, method, body.language.as_deref())
        .await?;
    Ok(ApiJson(next.into()))
}

/// Verifies the waiting number with the code Meta sent; Parley then registers it and
/// finishes the set-up.
#[utoipa::path(
    post, path = "/api/v1/platforms/{id}/verify_code", tag = "platforms",
    params(("id" = String, Path, description = "Platform id, `plt_…`")),
    request_body = VerifyCodeBody,
    responses(
        (status = 200, description = "Verified and registered", body = PlatformView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, description = "A wrong or expired code (`verification_code_wrong`), or a later step failed", body = SignupFailure),
        (status = 502, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn verify_code(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<VerifyCodeBody>,
) -> Response {
    let id = match parse_platform_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    match state
        .engine
        .verify_phone_number(&app, &id, &body.code)
        .await
    {
        Ok(outcome) => outcome_response(&state, &app, outcome, StatusCode::OK).await,
        Err(f) => ApiError::from(f).into_response(),
    }
}

/// Adds a phone number to a platform whose sign-up finished without one; Meta then sends it
/// a code (`request_code`, `verify_code`).
#[utoipa::path(
    post, path = "/api/v1/platforms/{id}/phone_numbers", tag = "platforms",
    params(("id" = String, Path, description = "Platform id, `plt_…`")),
    request_body = AddNumberBody,
    responses(
        (status = 200, description = "Added; the platform's next step is `verify_number`", body = PlatformView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The platform does not wait for a number", body = ErrorBody),
        (status = 422, description = "Meta refused the number", body = ErrorBody),
        (status = 502, body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn add_phone_number(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AddNumberBody>,
) -> Response {
    let id = match parse_platform_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let number = parley_engine::onboarding::NewNumber {
        cc: body.cc,
        phone_number: body.phone_number,
        verified_name: body.verified_name,
    };
    match state.engine.add_phone_number(&app, &id, number).await {
        Ok(outcome) => outcome_response(&state, &app, outcome, StatusCode::OK).await,
        Err(f) => ApiError::from(f).into_response(),
    }
}
