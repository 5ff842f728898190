//! The Graph calls of onboarding after Embedded Signup (META_API.md §1.3): `debug_token`,
//! `subscribed_apps`, `register`/`deregister` (10 per number per 72 h, else 133016; a
//! different PIN than the number's two-step PIN is 133005), the two-step PIN itself and the
//! business profile. The code exchange lives with the codes, in the `signup` module.

use serde_json::{Map, Value, json};

use crate::errors::GraphError;
use crate::state::State;

const REGISTER_WINDOW_MS: i64 = 72 * 60 * 60 * 1000;
const REGISTER_MAX: usize = 10;

/// `GET /debug_token?input_token=…`.
pub(crate) fn debug_token(
    state: &State,
    input: Option<&str>,
    now_secs: i64,
) -> Result<Value, GraphError> {
    let Some(input) = input.filter(|t| !t.is_empty()) else {
        return Err(GraphError::invalid_param(
            "The parameter input_token is required.",
        ));
    };
    let config = &state.config;
    let grant = state.tokens.get(input);
    let valid = grant.is_some() || config.access_tokens.iter().any(|t| t == input);
    // Most recently onboarded first: the token's own WABA, then the others newest first.
    let mut waba_ids: Vec<&str> = grant
        .map(|g| g.created.waba_id.as_str())
        .into_iter()
        .collect();
    for waba in config.businesses.iter().flat_map(|b| b.wabas.iter()).rev() {
        if !waba_ids.contains(&waba.id.as_str()) {
            waba_ids.push(waba.id.as_str());
        }
    }
    let issued_at = grant.map_or(now_secs, |g| g.issued_ms.div_euclid(1000));
    let mut data = json!({
        "app_id": config.app_id,
        "type": "SYSTEM_USER",
        "application": config.app_name,
        "data_access_expires_at": 0,
        "expires_at": 0,
        "is_valid": valid,
        "issued_at": issued_at,
        "scopes": ["whatsapp_business_management", "whatsapp_business_messaging", "public_profile"],
        "granular_scopes": [
            {"scope": "whatsapp_business_management", "target_ids": waba_ids},
            {"scope": "whatsapp_business_messaging", "target_ids": waba_ids}
        ],
        "user_id": "10222270944537964",
    });
    if !valid {
        data = json!({
            "app_id": config.app_id,
            "is_valid": false,
            "error": {"code": 190, "message": "Invalid OAuth access token."},
            "scopes": [],
        });
    }
    Ok(json!({ "data": data }))
}

/// `GET|POST|DELETE /{waba}/subscribed_apps`.
pub(crate) fn subscribed_apps(
    state: &mut State,
    method: &str,
    waba_id: &str,
    body: &Value,
) -> Result<Value, GraphError> {
    match method {
        "GET" => {
            let data: Vec<Value> = state
                .subscriptions
                .get(waba_id)
                .cloned()
                .into_iter()
                .collect();
            Ok(json!({ "data": data }))
        }
        "POST" => {
            let mut row = json!({
                "whatsapp_business_api_data": {
                    "id": state.config.app_id,
                    "name": "Parley",
                    "link": "https://www.facebook.com/games/?app_id=".to_owned() + &state.config.app_id,
                }
            });
            if let Some(uri) = body.get("override_callback_uri").and_then(Value::as_str) {
                if !crate::validate::is_http_url(uri) {
                    return Err(GraphError::invalid_param(
                        "Param override_callback_uri must be a valid URL.",
                    ));
                }
                row["override_callback_uri"] = json!(uri);
            }
            state.subscriptions.insert(waba_id.to_owned(), row);
            Ok(json!({ "success": true }))
        }
        _ => {
            state.subscriptions.remove(waba_id);
            Ok(json!({ "success": true }))
        }
    }
}

/// `POST /{phone}/register` and `/{phone}/deregister`.
pub(crate) fn register(
    state: &mut State,
    now_ms: i64,
    phone_id: &str,
    body: &Value,
    deregister: bool,
) -> Result<Value, GraphError> {
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") && !deregister {
        return Err(GraphError::invalid_param(
            "The parameter messaging_product is required and must be whatsapp.",
        ));
    }
    if !deregister {
        let pin_ok = body
            .get("pin")
            .and_then(Value::as_str)
            .is_some_and(|p| p.len() == 6 && p.chars().all(|c| c.is_ascii_digit()));
        if !pin_ok {
            return Err(GraphError::invalid_param(
                "The parameter pin is required and must be 6 digits.",
            ));
        }
    }
    if !deregister
        && state
            .phone(phone_id)
            .is_some_and(|p| p.phone.code_verification_status != "VERIFIED")
    {
        // UNCERTAIN: Meta documents no error for registering an unverified number; 133006
        // ("Phone number re-verification needed") says what to do.
        return Err(GraphError::new(
            133006,
            "This phone number is not verified. Verify it with request_code and verify_code, then register.",
        ));
    }
    let calls = state.registrations.entry(phone_id.to_owned()).or_default();
    while calls
        .front()
        .is_some_and(|t| *t <= now_ms - REGISTER_WINDOW_MS)
    {
        calls.pop_front();
    }
    if calls.len() >= REGISTER_MAX {
        return Err(GraphError::new(
            133016,
            "Too many register/deregister requests for this number: at most 10 in 72 hours.",
        ));
    }
    calls.push_back(now_ms);
    if !deregister {
        let pin = body.get("pin").and_then(Value::as_str).unwrap_or_default();
        match state.pins.get(phone_id) {
            Some(set) if set != pin => {
                return Err(GraphError::new(
                    133005,
                    "The PIN does not match the two-step verification PIN of this phone number.",
                ));
            }
            Some(_) => {}
            None => {
                state.pins.insert(phone_id.to_owned(), pin.to_owned());
            }
        }
        if let Some(phone) = state.phone_mut(phone_id) {
            phone.status = "CONNECTED".to_owned();
        }
    }
    Ok(json!({ "success": true }))
}

/// `POST /{phone}` with `{"pin": "<6 digits>"}`: sets the two-step verification PIN.
pub(crate) fn set_pin(
    state: &mut State,
    phone_id: &str,
    body: &Value,
) -> Result<Value, GraphError> {
    let Some(pin) = body
        .get("pin")
        .and_then(Value::as_str)
        .filter(|p| p.len() == 6 && p.chars().all(|c| c.is_ascii_digit()))
    else {
        return Err(GraphError::invalid_param(
            "The parameter pin is required and must be 6 digits.",
        ));
    };
    state.pins.insert(phone_id.to_owned(), pin.to_owned());
    Ok(json!({ "success": true }))
}

/// `GET|POST /{phone}/whatsapp_business_profile`.
pub(crate) fn business_profile(
    state: &mut State,
    method: &str,
    phone_id: &str,
    body: &Value,
) -> Result<Value, GraphError> {
    let profile = state
        .profiles
        .entry(phone_id.to_owned())
        .or_insert_with(|| {
            json!({
                "messaging_product": "whatsapp",
                "about": "Hello from the Parley sandbox",
                "address": "",
                "description": "",
                "email": "",
                "profile_picture_url": "",
                "websites": [],
                "vertical": "OTHER",
            })
        });
    if method == "GET" {
        return Ok(json!({ "data": [profile.clone()] }));
    }
    let Value::Object(update) = body else {
        return Err(GraphError::invalid_param(
            "The request body must be a JSON object.",
        ));
    };
    let allowed = [
        "about",
        "address",
        "description",
        "email",
        "websites",
        "vertical",
        "profile_picture_handle",
    ];
    let mut changes = Map::new();
    for (key, value) in update {
        match key.as_str() {
            "messaging_product" => {}
            k if allowed.contains(&k) => {
                changes.insert(key.clone(), value.clone());
            }
            other => {
                return Err(GraphError::invalid_param(format!(
                    "Param {other} is not a business profile field."
                )));
            }
        }
    }
    if let Value::Object(stored) = profile {
        stored.extend(changes);
    }
    Ok(json!({ "success": true }))
}
