//! The console's platform pages: Settings › Configure platforms (the list, Log in with
//! Facebook, Refresh, Retry failed step, Disconnect) and Campaigns › WhatsApp messages (the
//! same button while no WhatsApp platform exists). The list is a fragment the page polls every
//! two seconds, so Meta's review webhook shows without a reload. Own JavaScript only
//! (`/console/platforms.js`); the one foreign script is Meta's SDK from the configured URL.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use parley_domain::PlatformId;
use parley_store::ApplicationRecord;
use serde::Deserialize;
use serde_json::Value;

use super::{SignedIn, SignedInJson, render};
use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::routes::messages::rfc3339;
use crate::routes::platforms::{
    AddNumberBody, DisconnectQuery, NextStepView, RequestCodeBody, SignupBody, VerifyCodeBody,
    outcome_response, owned_view,
};

/// What the Log in with Facebook button needs; rendered as data attributes.
struct SignupButton {
    configured: bool,
    app_id: String,
    config_id: String,
    graph_version: String,
    sdk_url: String,
    message_origin: String,
}

fn button(state: &AppState) -> SignupButton {
    let m = &state.engine.config.meta_app;
    SignupButton {
        configured: !m.app_id.is_empty() && !m.config_id.is_empty() && !m.sdk_url.is_empty(),
        app_id: m.app_id.clone(),
        config_id: m.config_id.clone(),
        graph_version: m.graph_version.clone(),
        sdk_url: m.sdk_url.clone(),
        message_origin: m.message_origin.clone(),
    }
}

struct NumberRow {
    display: String,
    verified_name: String,
    name_status: String,
    quality: String,
    limit: String,
    scope: String,
    throughput: String,
    /// A WhatsApp Business app number: where its syncs stand (empty for other numbers).
    coexistence: String,
}

struct StepRow {
    label: String,
    state: String,
    error: String,
}

struct PlatformCard {
    id: String,
    status: String,
    status_label: String,
    reason: String,
    company: String,
    waba_name: String,
    waba_id: String,
    connected_at: String,
    disconnected: bool,
    failed_step: String,
    /// Marketing templates go through the Marketing Messages API.
    marketing_messages: bool,
    /// `add_number` or `verify_number` while the sign-up waits for the person; empty else.
    next_action: String,
    next_message: String,
    numbers: Vec<NumberRow>,
    steps: Vec<StepRow>,
}

#[derive(Template)]
#[template(path = "platforms_list.html")]
struct PlatformListFragment {
    platforms: Vec<PlatformCard>,
    /// The next page's `after` (the last card's platform id).
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "platforms.html")]
struct PlatformsPage {
    active: &'static str,
    email: String,
    button: SignupButton,
    /// Where the page polls its list: this page's platforms.
    list_url: String,
    list: String,
}

/// Platform cards per page (each card reads its numbers, sign-up and coexistence rows, and
/// the page polls the list every two seconds).
const PLATFORMS_PAGE: u32 = 20;

#[derive(Template)]
#[template(path = "campaigns_whatsapp.html")]
struct CampaignsPage {
    active: &'static str,
    email: String,
    button: SignupButton,
    has_platform: bool,
    list: String,
    /// The campaign list (`campaigns::list_section`), once a platform exists.
    campaigns: String,
}

pub fn status_label(status: &str) -> &'static str {
    match status {
        "setting_up" => "Setting up",
        "pending_review" => "Pending review",
        "active" => "Active",
        "rejected" => "Rejected",
        "restricted" => "Restricted",
        "disconnected" => "Disconnected",
        _ => "Unknown",
    }
}

/// `TIER_2K` → "2,000 business-initiated conversations / 24 h".
pub fn limit_label(tier: &str) -> String {
    let n = match tier {
        "TIER_50" => "50",
        "TIER_250" => "250",
        "TIER_1K" => "1,000",
        "TIER_2K" => "2,000",
        "TIER_10K" => "10,000",
        "TIER_100K" => "100,000",
        "TIER_UNLIMITED" => return "Unlimited business-initiated conversations".into(),
        "" => return "—".into(),
        other => return other.to_owned(),
    };
    format!("{n} business-initiated conversations / 24 h")
}

/// "WhatsApp Business app · history in progress 55%", or the failure, the decline, the
/// offboarding.
fn coexistence_label(c: &parley_store::coexistence::CoexistenceRecord) -> String {
    if let Some(reason) = &c.disconnection_reason {
        return format!("WhatsApp Business app · disconnected: {reason}");
    }
    let history = match c.history_sync.as_str() {
        "in_progress" => format!("history sync in progress {}%", c.history_progress),
        "done" => "history imported".to_owned(),
        "declined" => "history not shared by the business".to_owned(),
        "requested" => "history sync requested".to_owned(),
        "failed" => "history sync failed".to_owned(),
        _ => "history sync pending".to_owned(),
    };
    let contacts = match c.contacts_sync.as_str() {
        "requested" => "contacts sync requested",
        "failed" => "contacts sync failed",
        _ => "contacts sync pending",
    };
    let mut label = format!("WhatsApp Business app · {contacts} · {history} · 20 msg/s");
    if let Some(error) = &c.sync_error {
        label.push_str(&format!(" · {error}"));
    }
    label
}

fn step_label(step: &str) -> &'static str {
    match step {
        "exchange_code" => "Exchange the sign-up code",
        "debug_token" => "Check the granted permissions",
        "subscribe_app" => "Subscribe to the account's webhooks",
        "find_number" => "Find the phone number",
        "verify_number" => "Verify the phone number",
        "register_phone" => "Register the phone number",
        "read_business" => "Read the business portfolio",
        "read_waba" => "Read the WhatsApp Business Account",
        "read_phone_numbers" => "Read the phone numbers",
        "sync_contacts" => "Import the WhatsApp Business app's contacts",
        "sync_history" => "Import the WhatsApp Business app's chat history",
        "read_profile" => "Read the business profile",
        _ => "Other step",
    }
}

/// Embedded Signup's screens by `current_step`, as the person saw them.
fn dialog_step_label(step: &str) -> &'static str {
    match step {
        "LOGIN" => "Log in",
        "GET_STARTED" => "Connect your account",
        "BUSINESS_ACCOUNT_SELECTION" => "Business portfolio",
        "WABA_PHONE_PROFILE_PICKER" => "WhatsApp Business Account",
        "WHATSAPP_BUSINESS_PROFILE_SETUP" => "WhatsApp business profile",
        "PHONE_NUMBER_SETUP" => "Phone number",
        "PHONE_NUMBER_VERIFICATION" => "Phone number verification",
        "WHATSAPP_BUSINESS_APP_QR" => "WhatsApp Business app QR code",
        "PERMISSIONS" => "Permissions",
        "CONFIRMATION" => "Confirmation",
        _ => "an unnamed step",
    }
}

/// What to tell the person when the dialog ended without a finish.
pub fn cancel_message(event: &Value) -> String {
    let data = &event["data"];
    if let Some(message) = data["error_message"].as_str() {
        let code = data["error_code"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| data["error_code"].as_i64().map(|c| c.to_string()))
            .or_else(|| data["error_id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let session = data["session_id"].as_str().unwrap_or_default();
        return format!(
            "Sign-up stopped with an error: {message} (error {code}, session {session}). Nothing was connected; try again or give Meta's support these numbers."
        );
    }
    match data["current_step"].as_str() {
        Some(step) => {
            let step = step.trim_matches(|c| c == '<' || c == '>');
            format!(
                "Sign-up was cancelled at step “{}” ({step}). Nothing was connected; click Log in with Facebook to start again.",
                dialog_step_label(step)
            )
        }
        None => "Sign-up was cancelled. Nothing was connected; click Log in with Facebook to start again.".into(),
    }
}

/// A page of the application's platform cards, after the platform `after`, and the next
/// page's cursor.
async fn cards(
    state: &AppState,
    app: &ApplicationRecord,
    after: Option<&str>,
) -> (Vec<PlatformCard>, Option<String>) {
    let engine = &state.engine;
    let after = after.and_then(|a| PlatformId::parse(a).ok());
    let mut setups = engine
        .platform_setups(&app.id, after.as_ref(), PLATFORMS_PAGE + 1)
        .await
        .unwrap_or_default();
    let next = super::next_page(&mut setups, PLATFORMS_PAGE, |s| s.platform.id.to_string());
    let mut out = Vec::with_capacity(setups.len());
    for s in setups {
        let p = &s.platform;
        let numbers = engine.platform_numbers(&p.id).await.unwrap_or_default();
        let coexistence = engine.platform_coexistence(&p.id).await.unwrap_or_default();
        let session = engine.latest_onboarding(&p.id).await.ok().flatten();
        let failed_step = session
            .as_ref()
            .filter(|s| s.state == "failed")
            .and_then(|s| s.failed_step.clone())
            .unwrap_or_default();
        let next = session
            .as_ref()
            .and_then(parley_engine::onboarding::next_step);
        let label = match next.as_ref().map(|n| n.action) {
            // Not an error: the sign-up finished without a number, or the number waits for
            // its code.
            Some("add_number") => "No phone number yet",
            Some("verify_number") => "Verify the number",
            _ => status_label(&p.status),
        };
        out.push(PlatformCard {
            id: p.id.to_string(),
            status: p.status.clone(),
            status_label: label.to_owned(),
            next_action: next
                .as_ref()
                .map(|n| n.action.to_owned())
                .unwrap_or_default(),
            next_message: next.map(|n| n.message).unwrap_or_default(),
            reason: s.status_reason.clone().unwrap_or_default(),
            company: s.company_name.clone().unwrap_or_default(),
            waba_name: p.waba_name.clone().unwrap_or_default(),
            waba_id: p.waba_id.to_string(),
            connected_at: s.connected_at.map(rfc3339).unwrap_or_default(),
            disconnected: p.status == "disconnected",
            failed_step: failed_step.clone(),
            marketing_messages: engine
                .platform_marketing_messages(&p.id)
                .await
                .unwrap_or(false),
            numbers: numbers
                .into_iter()
                .map(|n| NumberRow {
                    display: n.number.display_phone_number,
                    verified_name: n.number.verified_name.unwrap_or_default(),
                    name_status: n.name_status.unwrap_or_default(),
                    quality: n.number.quality_rating.unwrap_or_default(),
                    limit: format!(
                        "{} ({})",
                        limit_label(n.number.messaging_limit.as_deref().unwrap_or("")),
                        n.number.messaging_limit.unwrap_or_default()
                    ),
                    scope: match n.messaging_limit_scope.as_deref() {
                        Some("phone_number") => "per phone number".into(),
                        Some("business_portfolio") | None => "per business portfolio".into(),
                        Some(other) => other.to_owned(),
                    },
                    coexistence: coexistence
                        .iter()
                        .find(|c| c.phone_number_id == n.number.phone_number_id)
                        .map(coexistence_label)
                        .unwrap_or_default(),
                    throughput: format!(
                        "{} msg/s ({})",
                        n.number.throughput_mps,
                        n.throughput_level.unwrap_or_else(|| "STANDARD".into())
                    ),
                })
                .collect(),
            steps: if failed_step.is_empty() {
                Vec::new()
            } else {
                session
                    .map(|s| {
                        s.steps
                            .into_iter()
                            .map(|st| StepRow {
                                label: step_label(&st.step).to_owned(),
                                state: st.state,
                                error: st.error_message.unwrap_or_default(),
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            },
        });
    }
    (out, next)
}

fn list_html((platforms, next): (Vec<PlatformCard>, Option<String>)) -> String {
    PlatformListFragment { platforms, next }
        .render()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "platform list could not be rendered");
            String::new()
        })
}

/// `GET /settings/platforms?after=plt_…`: a page of the platforms.
pub async fn platforms_page(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<super::PageQuery>,
) -> Response {
    let after = q.after.filter(|a| !a.is_empty());
    let list_url = match &after {
        Some(a) => format!("/settings/platforms/list?after={}", super::query_value(a)),
        None => "/settings/platforms/list".to_owned(),
    };
    let mut resp = render(&PlatformsPage {
        active: "settings",
        email,
        button: button(&state),
        list: list_html(cards(&state, &app, after.as_deref()).await),
        list_url,
    });
    resp.extensions_mut().insert(crate::LoadsMetaSdk);
    resp
}

/// `GET /settings/platforms/list?after=plt_…`: the list alone, polled by the page.
pub async fn platforms_list(
    State(state): State<AppState>,
    SignedIn { app, .. }: SignedIn,
    Query(q): Query<super::PageQuery>,
) -> Response {
    let (platforms, next) = cards(&state, &app, q.after.as_deref()).await;
    let mut resp = render(&PlatformListFragment { platforms, next });
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `GET /campaigns/whatsapp`: the campaigns (paginated with `?after=`) once a platform
/// exists, Log in with Facebook before; the platforms' first page below.
pub async fn campaigns_page(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<super::campaigns::ListQuery>,
) -> Response {
    let has_platform = state
        .engine
        .has_live_platform(&app.id)
        .await
        .unwrap_or(false);
    let campaigns = if has_platform {
        super::campaigns::list_section(&state, &app.id, q.after.as_deref()).await
    } else {
        String::new()
    };
    let mut resp = render(&CampaignsPage {
        active: "campaigns",
        email,
        button: button(&state),
        has_platform,
        list: list_html(cards(&state, &app, None).await),
        campaigns,
    });
    if !has_platform {
        resp.extensions_mut().insert(crate::LoadsMetaSdk);
    }
    resp
}

#[derive(Deserialize)]
pub struct ConsoleSignup {
    /// `authResponse.code`; absent when the dialog was cancelled.
    code: Option<String>,
    /// The parsed `WA_EMBEDDED_SIGNUP` message.
    #[serde(default)]
    event: Value,
}

/// `POST /settings/platforms/whatsapp/signup`: what the dialog handed the page, as JSON.
/// A finish runs onboarding (answering like the API); a cancel answers which step it was.
pub async fn signup(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    ApiJson(body): ApiJson<ConsoleSignup>,
) -> Response {
    let kind = body.event["event"].as_str().unwrap_or_default().to_owned();
    let code = body.code.filter(|c| !c.is_empty());
    let finished = kind.starts_with("FINISH");
    let Some(code) = code.filter(|_| finished || kind.is_empty()) else {
        let message = if kind == "CANCEL" || kind.starts_with("CANCEL") || kind == "ERROR" {
            cancel_message(&body.event)
        } else {
            "The sign-up window closed before Meta handed over a code. Nothing was connected; click Log in with Facebook to start again.".into()
        };
        tracing::info!(event = %kind, "embedded signup ended without a finish");
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "signup_cancelled",
            message,
        )
        .into_response();
    };
    let data = &body.event["data"];
    let text = |k: &str| {
        data[k]
            .as_str()
            .map(str::to_owned)
            .or_else(|| data[k].as_u64().map(|n| n.to_string()))
    };
    let request = SignupBody {
        code,
        waba_id: text("waba_id"),
        phone_number_id: text("phone_number_id"),
        business_id: text("business_id"),
        event: (!kind.is_empty()).then_some(kind),
    };
    match state.engine.signup(&app.id, request.into()).await {
        Ok(outcome) => outcome_response(&state, &app.id, outcome, StatusCode::CREATED).await,
        Err(f) => ApiError::from(f).into_response(),
    }
}

/// `POST /settings/platforms/{id}/{refresh|retry|disconnect}`.
pub async fn action(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = PlatformId::parse(&id).map_err(|_| ApiError::not_found("this platform"))?;
    // The API's disconnect options as an optional body: only `{"deregister": true}` matters.
    let deregister = serde_json::from_slice::<DisconnectQuery>(&body)
        .ok()
        .and_then(|q| q.deregister)
        .unwrap_or(false);
    let engine = &state.engine;
    match action.as_str() {
        "retry" => {
            let outcome = engine.retry_onboarding(&app.id, &id).await?;
            return Ok(outcome_response(&state, &app.id, outcome, StatusCode::OK).await);
        }
        "refresh" => engine.refresh_platform(&app.id, &id).await?,
        "request_code" => {
            let body: RequestCodeBody = serde_json::from_slice(&body).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "send {\"code_method\": \"SMS\"} or {\"code_method\": \"VOICE\"}",
                )
            })?;
            let method = parley_engine::onboarding::CodeMethod::parse(
                body.code_method.as_deref().unwrap_or("SMS"),
            )
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_code_method",
                    "`code_method` is SMS (a text message) or VOICE (a call)",
                )
                .field("code_method")
            })?;
            let next = engine
                .request_verification_code(&app.id, &id, method, body.language.as_deref())
                .await?;
            return Ok(axum::Json(NextStepView::from(next)).into_response());
        }
        "verify_code" => {
            let body: VerifyCodeBody = serde_json::from_slice(&body).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "send {\"code\": \"<the code Meta sent>\"}",
                )
            })?;
            let outcome = engine.verify_phone_number(&app.id, &id, &body.code).await?;
            return Ok(outcome_response(&state, &app.id, outcome, StatusCode::OK).await);
        }
        "add_number" => {
            let body: AddNumberBody = serde_json::from_slice(&body).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "send the country code, the number and the name shown in WhatsApp",
                )
            })?;
            let number = parley_engine::onboarding::NewNumber {
                cc: body.cc,
                phone_number: body.phone_number,
                verified_name: body.verified_name,
            };
            let outcome = engine.add_phone_number(&app.id, &id, number).await?;
            return Ok(outcome_response(&state, &app.id, outcome, StatusCode::OK).await);
        }
        "disconnect" => {
            engine.disconnect_platform(&app.id, &id, deregister).await?;
        }
        // The API's `PATCH /api/v1/platforms/{id}` `{"marketing_messages": …}`.
        "marketing_messages_on" => engine.set_marketing_messages(&app.id, &id, true).await?,
        "marketing_messages_off" => engine.set_marketing_messages(&app.id, &id, false).await?,
        _ => return Err(ApiError::not_found("this action")),
    }
    Ok(axum::Json(owned_view(&state, &app.id, &id).await?).into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cancel_messages_name_the_step_or_the_error() {
        let m = cancel_message(
            &json!({"type": "WA_EMBEDDED_SIGNUP", "event": "CANCEL", "data": {"current_step": "PHONE_NUMBER_SETUP"}}),
        );
        assert!(
            m.contains("“Phone number”") && m.contains("PHONE_NUMBER_SETUP"),
            "{m}"
        );
        let m = cancel_message(
            &json!({"event": "CANCEL", "data": {"error_message": "Something broke", "error_code": "524126", "session_id": "f34b", "timestamp": "1"}}),
        );
        assert!(m.contains("Something broke") && m.contains("524126"), "{m}");
        assert_eq!(
            limit_label("TIER_2K"),
            "2,000 business-initiated conversations / 24 h"
        );
    }
}
