//! Template management: `POST` and `DELETE /{waba}/message_templates`, Meta's review, and
//! status changes announced by `message_template_status_update` webhooks.
//!
//! Review is deterministic so tests can rely on it: after [`REVIEW_MS`] of virtual time a
//! template is `APPROVED`, unless its name starts with `reject`, which is `REJECTED` with
//! reason `INVALID_FORMAT`. `POST /sandbox/templates/{id}/status` moves a template to any
//! status (e.g. `PAUSED`, `DISABLED`) and announces it the same way.
//!
//! AUTHENTICATION templates are stored as Meta stores them ([`auth_components`]): Meta's
//! preset body with the code as `{{1}}`, the expiry footer, and the OTP button as a URL button
//! whose one variable is the code.

use rand::Rng;
use serde_json::{Value, json};

use crate::errors::GraphError;
use crate::state::{EventKind, State};
use crate::validate::variables;

/// Virtual time Meta takes to review a new template.
pub const REVIEW_MS: i64 = 10_000;
const NAME_MAX: usize = 512;

/// `POST /{waba}/message_templates` → `{"id","status":"PENDING","category"}`.
pub(crate) fn create(
    state: &mut State,
    now_ms: i64,
    waba_id: &str,
    body: &Value,
) -> Result<Value, GraphError> {
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| GraphError::invalid_param("The parameter name is required."))?;
    let valid_name = name.len() <= NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        return Err(GraphError::invalid_param(format!(
            "Param name '{name}' may only contain lowercase letters, digits and underscores (at most {NAME_MAX} characters)."
        )));
    }
    let category = body
        .get("category")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .filter(|c| matches!(c.as_str(), "AUTHENTICATION" | "MARKETING" | "UTILITY"))
        .ok_or_else(|| {
            GraphError::invalid_param(
                "Param category must be one of {AUTHENTICATION, MARKETING, UTILITY}.",
            )
        })?;
    let language = body
        .get("language")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| GraphError::invalid_param("The parameter language is required."))?;
    let parameter_format = match body.get("parameter_format").and_then(Value::as_str) {
        None => "POSITIONAL".to_owned(),
        Some(f) if f.eq_ignore_ascii_case("named") => "NAMED".to_owned(),
        Some(f) if f.eq_ignore_ascii_case("positional") => "POSITIONAL".to_owned(),
        Some(other) => {
            return Err(GraphError::invalid_param(format!(
                "Param parameter_format must be one of {{NAMED, POSITIONAL}} - got {other}."
            )));
        }
    };
    let components = body
        .get("components")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| GraphError::invalid_param("Param components must be a non-empty array."))?;
    check_components(components, parameter_format == "NAMED", &category)?;
    let components = stored_components(&category, components)?;

    let Some(waba) = state.waba(waba_id) else {
        return Err(GraphError::unsupported("post", waba_id));
    };
    let exists = waba.templates.iter().any(|t| {
        t.get("name").and_then(Value::as_str) == Some(name)
            && t.get("language").and_then(Value::as_str) == Some(language)
    });
    if exists {
        return Err(GraphError::invalid_param(format!(
            "Content in this language already exists: a template named {name} in {language} exists."
        )));
    }

    let id = loop {
        let candidate = format!(
            "{}",
            rand::rng().random_range(1_000_000_000_000_000u64..10_000_000_000_000_000)
        );
        if state.template(&candidate).is_none() {
            break candidate;
        }
    };
    let template = json!({
        "id": id,
        "name": name,
        "language": language,
        "category": category,
        "status": "PENDING",
        "parameter_format": parameter_format,
        "components": components,
    });
    if let Some(waba) = state.waba_mut(waba_id) {
        waba.templates.push(template);
    }
    state.schedule(
        now_ms.saturating_add(REVIEW_MS),
        "",
        EventKind::TemplateReview {
            waba_id: waba_id.to_owned(),
            template_id: id.clone(),
        },
    );
    Ok(json!({ "id": id, "status": "PENDING", "category": category }))
}

/// Meta's preset body of an authentication template (the code is `{{1}}`).
pub(crate) const AUTH_BODY: &str = "*{{1}}* is your verification code.";
/// Appended to [`AUTH_BODY`] when `add_security_recommendation` is true.
pub(crate) const AUTH_SECURITY: &str = "For your security, do not share this code.";
/// The example code Meta shows in a stored authentication template.
const AUTH_EXAMPLE_CODE: &str = "123456";
/// Where Meta points an authentication template's OTP button (stored as a URL button).
const OTP_URL: &str = "https://www.whatsapp.com/otp/code/";

/// The components as Meta stores them (and `GET` returns them): as given, except that an
/// AUTHENTICATION template's are rewritten to Meta's preset text (see [`auth_components`]).
pub(crate) fn stored_components(category: &str, components: &[Value]) -> Result<Value, GraphError> {
    if category.eq_ignore_ascii_case("AUTHENTICATION") {
        auth_components(components)
    } else {
        Ok(Value::Array(components.to_vec()))
    }
}

/// An AUTHENTICATION template as Meta stores it: a BODY with the preset text
/// `*{{1}}* is your verification code.` (plus the security recommendation when asked) and an
/// example code; a FOOTER `This code expires in N minutes.` when `code_expiration_minutes`
/// is set; and the OTP button turned into a URL button whose one variable is the code.
pub(crate) fn auth_components(components: &[Value]) -> Result<Value, GraphError> {
    let of_type = |kind: &str| {
        components.iter().find(|c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(kind))
        })
    };
    if of_type("HEADER").is_some() {
        return Err(GraphError::invalid_param(
            "Authentication templates can't have a HEADER component.",
        ));
    }
    let security = match of_type("BODY").and_then(|b| b.get("add_security_recommendation")) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(GraphError::invalid_param(
                "Param components[BODY]['add_security_recommendation'] must be a boolean.",
            ));
        }
    };
    let expiration = match of_type("FOOTER").and_then(|f| f.get("code_expiration_minutes")) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().filter(|m| (1..=90).contains(m)) {
            Some(minutes) => Some(minutes),
            None => {
                return Err(GraphError::invalid_param(
                    "Param components[FOOTER]['code_expiration_minutes'] must be an integer from 1 to 90.",
                ));
            }
        },
    };
    let buttons = of_type("BUTTONS")
        .and_then(|b| b.get("buttons"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let [button] = buttons else {
        return Err(GraphError::invalid_param(
            "Authentication templates need a BUTTONS component with exactly one OTP button.",
        ));
    };
    let is_otp = button
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("OTP"));
    let otp_type = button
        .get("otp_type")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .filter(|t| matches!(t.as_str(), "COPY_CODE" | "ONE_TAP" | "ZERO_TAP"));
    let (true, Some(otp_type)) = (is_otp, otp_type) else {
        return Err(GraphError::invalid_param(
            "The button of an authentication template must be of type OTP with otp_type COPY_CODE, ONE_TAP or ZERO_TAP.",
        ));
    };

    let mut text = AUTH_BODY.to_owned();
    if security == Some(true) {
        text.push(' ');
        text.push_str(AUTH_SECURITY);
    }
    let mut body = json!({
        "type": "BODY",
        "text": text,
        "example": {"body_text": [[AUTH_EXAMPLE_CODE]]},
    });
    if let Some(security) = security {
        body["add_security_recommendation"] = json!(security);
    }
    let mut stored = vec![body];
    if let Some(minutes) = expiration {
        stored.push(json!({
            "type": "FOOTER",
            "text": format!("This code expires in {minutes} minutes."),
            "code_expiration_minutes": minutes,
        }));
    }
    // One-tap and zero-tap buttons name the app that receives the code.
    let app = button
        .pointer("/supported_apps/0")
        .unwrap_or(button)
        .clone();
    let mut query = format!("otp_type={otp_type}");
    for key in ["package_name", "signature_hash"] {
        if otp_type != "COPY_CODE"
            && let Some(value) = app.get(key).and_then(Value::as_str)
        {
            query.push_str(&format!("&{key}={value}"));
        }
    }
    let url = |code: &str| format!("{OTP_URL}?{query}&code=otp{code}");
    let mut url_button = json!({
        "type": "URL",
        "text": button.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()).unwrap_or("Copy code"),
        "url": url("{{1}}"),
        "example": [url(AUTH_EXAMPLE_CODE)],
    });
    for key in [
        "autofill_text",
        "package_name",
        "signature_hash",
        "zero_tap_terms_accepted",
        "supported_apps",
    ] {
        if otp_type != "COPY_CODE"
            && let Some(value) = button.get(key)
        {
            url_button[key] = value.clone();
        }
    }
    stored.push(json!({ "type": "BUTTONS", "buttons": [url_button] }));
    Ok(Value::Array(stored))
}

/// Meta refuses templates whose variables it cannot check: wrong kinds, gaps, no examples.
fn check_components(components: &[Value], named: bool, category: &str) -> Result<(), GraphError> {
    let mut has_body = false;
    for component in components {
        let kind = component
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_uppercase();
        match kind.as_str() {
            "BODY" => {
                has_body = true;
                let text = component.get("text").and_then(Value::as_str).unwrap_or("");
                if text.trim().is_empty() && category != "AUTHENTICATION" {
                    return Err(GraphError::invalid_param(
                        "Message template BODY component needs a non-empty text.",
                    ));
                }
                let vars = variables(text);
                if vars.is_empty() {
                    continue;
                }
                if named {
                    let example = component.pointer("/example/body_text_named_params");
                    let ok = example.and_then(Value::as_array).is_some_and(|examples| {
                        vars.iter().all(|v| {
                            examples
                                .iter()
                                .any(|e| e.get("param_name").and_then(Value::as_str) == Some(v))
                        })
                    });
                    if !ok {
                        return Err(GraphError::invalid_param(
                            "Message template BODY with named parameters needs example.body_text_named_params for every parameter.",
                        ));
                    }
                    if let Some(bad) = vars.iter().find(|v| {
                        !v.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    }) {
                        return Err(GraphError::invalid_param(format!(
                            "Named parameter {{{{{bad}}}}} may only contain lowercase letters, digits and underscores."
                        )));
                    }
                } else {
                    let sequential = vars
                        .iter()
                        .enumerate()
                        .all(|(i, v)| v.parse::<usize>().ok() == Some(i + 1));
                    if !sequential {
                        return Err(GraphError::invalid_param(
                            "Positional parameters must be {{1}}, {{2}}, … in sequence.",
                        ));
                    }
                    if component.pointer("/example/body_text").is_none() {
                        return Err(GraphError::invalid_param(
                            "Message template BODY with parameters needs example.body_text.",
                        ));
                    }
                }
            }
            "BUTTONS" => check_contact_info_buttons(component, category)?,
            "HEADER" | "FOOTER" | "CAROUSEL" | "LIMITED_TIME_OFFER" => {}
            other => {
                return Err(GraphError::invalid_param(format!(
                    "Param components[]['type'] must be one of {{HEADER, BODY, FOOTER, BUTTONS}} - got {other}."
                )));
            }
        }
    }
    if !has_body {
        return Err(GraphError::invalid_param(
            "Message template needs a BODY component.",
        ));
    }
    Ok(())
}

/// The `REQUEST_CONTACT_INFO` button (META_2026 §3.4): on UTILITY and MARKETING templates
/// only, at most one, and its optional `text` is exactly "Share Contact Info".
fn check_contact_info_buttons(component: &Value, category: &str) -> Result<(), GraphError> {
    let buttons = component
        .get("buttons")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let asks: Vec<&Value> = buttons
        .iter()
        .filter(|b| {
            b.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("REQUEST_CONTACT_INFO"))
        })
        .collect();
    if asks.is_empty() {
        return Ok(());
    }
    if !matches!(category, "UTILITY" | "MARKETING") {
        return Err(GraphError::invalid_param(
            "A REQUEST_CONTACT_INFO button is allowed on UTILITY and MARKETING templates only.",
        ));
    }
    if asks.len() > 1 {
        return Err(GraphError::invalid_param(
            "A template can have at most one REQUEST_CONTACT_INFO button.",
        ));
    }
    match asks[0].get("text") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if t == "Share Contact Info" => Ok(()),
        Some(_) => Err(GraphError::invalid_param(
            "Param text of a REQUEST_CONTACT_INFO button must be \"Share Contact Info\".",
        )),
    }
}

/// `DELETE /{waba}/message_templates?name=…[&hsm_id=…]` → `{"success":true}`.
pub(crate) fn delete(
    state: &mut State,
    waba_id: &str,
    name: Option<&str>,
    hsm_id: Option<&str>,
) -> Result<Value, GraphError> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Err(GraphError::invalid_param("The parameter name is required."));
    };
    let Some(waba) = state.waba_mut(waba_id) else {
        return Err(GraphError::unsupported("delete", waba_id));
    };
    let before = waba.templates.len();
    waba.templates.retain(|t| {
        let same_name = t.get("name").and_then(Value::as_str) == Some(name);
        let same_id = hsm_id.is_none_or(|id| t.get("id").and_then(Value::as_str) == Some(id));
        !(same_name && same_id)
    });
    if waba.templates.len() == before {
        return Err(GraphError::invalid_param(format!(
            "Message template \"{name}\" was not found."
        )));
    }
    Ok(json!({ "success": true }))
}

/// Decides a pending review and returns the webhook announcing it.
pub(crate) fn conclude_review(state: &mut State, waba_id: &str, template_id: &str) -> EventKind {
    let name = find(state, waba_id, template_id)
        .and_then(|t| t.get("name").and_then(Value::as_str))
        .unwrap_or("")
        .to_owned();
    let (status, reason) = if name.starts_with("reject") {
        ("REJECTED", "INVALID_FORMAT")
    } else {
        ("APPROVED", "NONE")
    };
    set_status(state, waba_id, template_id, status, reason).unwrap_or(EventKind::Change {
        entry_id: waba_id.to_owned(),
        field: "message_template_status_update".to_owned(),
        value: json!({ "event": "DELETED", "message_template_id": numeric(template_id), "reason": Value::Null }),
    })
}

fn find<'a>(state: &'a State, waba_id: &str, template_id: &str) -> Option<&'a Value> {
    state
        .waba(waba_id)?
        .templates
        .iter()
        .find(|t| t.get("id").and_then(Value::as_str) == Some(template_id))
}

fn numeric(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n))
}

/// Moves a template to `status` and returns its `message_template_status_update` change.
pub(crate) fn set_status(
    state: &mut State,
    waba_id: &str,
    template_id: &str,
    status: &str,
    reason: &str,
) -> Option<EventKind> {
    let waba = state.waba_mut(waba_id)?;
    let template = waba
        .templates
        .iter_mut()
        .find(|t| t.get("id").and_then(Value::as_str) == Some(template_id))?;
    template["status"] = json!(status);
    if status == "REJECTED" {
        template["rejected_reason"] = json!(reason);
    }
    let mut value = json!({
        "event": status,
        "message_template_id": numeric(template_id),
        "message_template_name": template.get("name"),
        "message_template_language": template.get("language"),
        "reason": reason,
        "message_template_category": template.get("category"),
    });
    if status == "REJECTED" {
        value["rejection_info"] = json!({
            "reason": reason,
            "recommendation": "Check the template's formatting against Meta's guidelines."
        });
    }
    Some(EventKind::Change {
        entry_id: waba_id.to_owned(),
        field: "message_template_status_update".to_owned(),
        value,
    })
}

/// The WABA holding a template id.
pub(crate) fn waba_of(state: &State, template_id: &str) -> Option<String> {
    state
        .config
        .businesses
        .iter()
        .flat_map(|b| b.wabas.iter())
        .find(|w| {
            w.templates
                .iter()
                .any(|t| t.get("id").and_then(Value::as_str) == Some(template_id))
        })
        .map(|w| w.id.clone())
}
