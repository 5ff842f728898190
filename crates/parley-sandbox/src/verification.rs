//! Numbers added or verified after Embedded Signup (META_2026.md §1.4, §9.5):
//! `POST /{waba}/phone_numbers` (`cc`, `phone_number`, `verified_name`) adds an unverified
//! number, `POST /{phone}/request_code` (`code_method` SMS|VOICE, `language`) "sends" a
//! 6-digit code, `POST /{phone}/verify_code` (`code`) verifies it; `register` refuses a number
//! that is not verified (133006, in `onboarding`). The code sent is not secret here: it shows
//! in `/sandbox/state` and `GET /sandbox/phone_numbers/{id}/code`, so a test or a person can
//! type it.
//!
//! Errors (codes marked UNCERTAIN in docs/SANDBOX.md): 100 for a missing or bad parameter and
//! for a number already on the platform; 136024 "Request code error" for `request_code` on a
//! number that is verified already or more than 5 times in an hour; 136025 "Verify code error"
//! for a wrong code, a code never requested, an expired one (10 minutes) and after 5 wrong
//! codes (a new code must be requested).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::config::PhoneSeed;
use crate::errors::GraphError;
use crate::signup::{
    PendingCode, REQUEST_CODE_MAX_PER_HOUR, VERIFY_CODE_TTL_MS, VERIFY_MAX_ATTEMPTS,
};
use crate::state::{State as World, digits};

const HOUR_MS: i64 = 60 * 60 * 1000;

/// A parameter from the query string or the body (JSON or form), trimmed; numbers as text.
fn text_param(body: &Value, query: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    query(name)
        .or_else(|| match body.get(name) {
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// `POST /{waba}/phone_numbers`: `{"cc":"1","phone_number":"14195551518","verified_name":"Lucky Shrub"}`
/// → `{"id": "<new phone number id>"}`; the number is `NOT_VERIFIED` and not registered.
pub(crate) fn add_phone_number(
    state: &mut World,
    waba_id: &str,
    body: &Value,
    query: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, GraphError> {
    let cc = text_param(body, query, "cc")
        .ok_or_else(|| GraphError::invalid_param("The parameter cc is required."))?;
    let number = text_param(body, query, "phone_number")
        .ok_or_else(|| GraphError::invalid_param("The parameter phone_number is required."))?;
    let name = text_param(body, query, "verified_name")
        .ok_or_else(|| GraphError::invalid_param("The parameter verified_name is required."))?;
    if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GraphError::invalid_param(
            "Param cc must be a country calling code of 1 to 3 digits.",
        ));
    }
    let national = digits(&number);
    if national.len() < 4 || national.len() > 17 {
        return Err(GraphError::invalid_param(
            "Param phone_number must be a phone number of 4 to 17 digits.",
        ));
    }
    // Meta's example gives the number with its country code ("1" + "14195551518"); a number
    // without it is taken as national (UNCERTAIN which Meta expects: both are accepted).
    let rest = match national.strip_prefix(cc.as_str()) {
        Some(rest) if rest.len() >= 7 => rest.to_owned(),
        _ => national,
    };
    let display = format!("+{cc} {rest}");
    let full = format!("{cc}{rest}");
    let taken = state
        .config
        .businesses
        .iter()
        .flat_map(|b| b.wabas.iter())
        .flat_map(|w| w.phone_numbers.iter())
        .any(|p| digits(&p.display_phone_number) == full);
    if taken {
        return Err(GraphError::invalid_param(format!(
            "The phone number {display} is already registered with a WhatsApp Business Account."
        )));
    }
    let (display_name, _) = crate::signup::validate_profile(&name, "OTHER").map_err(|errors| {
        GraphError::invalid_param(format!(
            "Param verified_name is not valid: {}",
            errors
                .into_iter()
                .map(|(_, m)| m)
                .collect::<Vec<_>>()
                .join(" ")
        ))
    })?;
    let id = crate::signup::new_id(state, 15);
    let Some(waba) = state.waba_mut(waba_id) else {
        return Err(GraphError::unsupported("post", waba_id));
    };
    waba.phone_numbers.push(PhoneSeed {
        id: id.clone(),
        display_phone_number: display,
        verified_name: display_name,
        name_status: "PENDING_REVIEW".to_owned(),
        status: "PENDING".to_owned(),
        quality_rating: "UNKNOWN".to_owned(),
        messaging_limit: "TIER_250".to_owned(),
        throughput_mps: 80,
        code_verification_status: "NOT_VERIFIED".to_owned(),
        is_on_biz_app: false,
    });
    state.profiles.insert(
        id.clone(),
        json!({
            "messaging_product": "whatsapp", "about": "", "address": "", "description": "",
            "email": "", "profile_picture_url": "", "websites": [], "vertical": "OTHER",
        }),
    );
    Ok(json!({ "id": id }))
}

/// `POST /{phone}/request_code?code_method=SMS|VOICE&language=en_US` → `{"success": true}`.
pub(crate) fn request_code(
    state: &mut World,
    now_ms: i64,
    phone_id: &str,
    body: &Value,
    query: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, GraphError> {
    let method = text_param(body, query, "code_method")
        .ok_or_else(|| GraphError::invalid_param("The parameter code_method is required."))?
        .to_ascii_uppercase();
    if !matches!(method.as_str(), "SMS" | "VOICE") {
        return Err(GraphError::invalid_param(
            "Param code_method must be one of {SMS, VOICE}.",
        ));
    }
    let language = text_param(body, query, "language")
        .ok_or_else(|| GraphError::invalid_param("The parameter language is required."))?;
    if language.len() > 10
        || !language
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '_')
    {
        return Err(GraphError::invalid_param(
            "Param language must be a language code such as en_US.",
        ));
    }
    let verified = state
        .phone(phone_id)
        .is_some_and(|p| p.phone.code_verification_status == "VERIFIED");
    if verified {
        return Err(GraphError::new(
            136024,
            "This phone number is already verified.",
        ));
    }
    let calls = state.code_requests.entry(phone_id.to_owned()).or_default();
    while calls.front().is_some_and(|t| *t <= now_ms - HOUR_MS) {
        calls.pop_front();
    }
    if calls.len() >= REQUEST_CODE_MAX_PER_HOUR {
        return Err(GraphError::new(
            136024,
            "Too many verification codes were requested for this phone number. Try again in an hour.",
        ));
    }
    calls.push_back(now_ms);
    let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
    state.verifications.insert(
        phone_id.to_owned(),
        PendingCode {
            code,
            code_method: method,
            language,
            sent_ms: now_ms,
            attempts: 0,
        },
    );
    Ok(json!({ "success": true }))
}

/// `POST /{phone}/verify_code` with `code` → `{"success": true, "id": "<phone>"}`; the number
/// becomes `VERIFIED`.
pub(crate) fn verify_code(
    state: &mut World,
    now_ms: i64,
    phone_id: &str,
    body: &Value,
    query: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, GraphError> {
    let code = text_param(body, query, "code")
        .ok_or_else(|| GraphError::invalid_param("The parameter code is required."))?;
    if code.len() < 4 || code.len() > 8 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GraphError::invalid_param(
            "Param code must be the 4 to 8 digit code that was sent.",
        ));
    }
    let Some(pending) = state.verifications.get_mut(phone_id) else {
        return Err(GraphError::new(
            136025,
            "No verification code was requested for this phone number. Request one with request_code.",
        ));
    };
    if now_ms - pending.sent_ms > VERIFY_CODE_TTL_MS {
        state.verifications.remove(phone_id);
        return Err(GraphError::new(
            136025,
            "The verification code has expired. Request a new one with request_code.",
        ));
    }
    if pending.attempts >= VERIFY_MAX_ATTEMPTS {
        return Err(GraphError::new(
            136025,
            "Too many incorrect codes. Request a new one with request_code.",
        ));
    }
    if pending.code != code {
        pending.attempts += 1;
        return Err(GraphError::new(
            136025,
            "The verification code is incorrect.",
        ));
    }
    state.verifications.remove(phone_id);
    if let Some(phone) = state.phone_mut(phone_id) {
        phone.code_verification_status = "VERIFIED".to_owned();
    }
    Ok(json!({ "success": true, "id": phone_id }))
}

/// `GET /sandbox/phone_numbers/{id}/code`: the code `request_code` sent last (what the SMS or
/// call would have said), or 100 when none is pending.
pub(crate) async fn sent_code(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
) -> Result<Response, GraphError> {
    let state = sandbox.inner.lock();
    let Some(phone) = state.phone(&id) else {
        return Err(GraphError::invalid_param(format!(
            "Phone number {id} does not exist."
        )));
    };
    let status = phone.phone.code_verification_status.clone();
    let Some(pending) = state.verifications.get(&id) else {
        return Err(GraphError::invalid_param(format!(
            "No verification code is pending for phone number {id} ({status}): call request_code first."
        )));
    };
    Ok(Json(json!({
        "phone_number_id": id,
        "code": pending.code,
        "code_method": pending.code_method,
        "language": pending.language,
        "sent_at": pending.sent_ms.div_euclid(1000),
        "attempts": pending.attempts,
        "code_verification_status": status,
    }))
    .into_response())
}

/// `GET /sandbox/signups`: each signup with the extras its page sent and how it finished.
pub(crate) async fn signups(State(sandbox): State<Sandbox>) -> Json<Value> {
    let state = sandbox.inner.lock();
    let data: Vec<&crate::signup::SignupRecord> = state.signups.iter().collect();
    Json(json!({ "data": data }))
}
