//! The Embedded Signup dialog: the popup `FB.login` opens, server-rendered (no CDN, a little
//! inline JS), walking Meta's screens with the choices kept per session on the server.
//!
//! `GET /dialog/embedded_signup?app_id=…&config_id=…&origin=<opener's origin>&extras=<JSON>`
//! starts a session and redirects to `/dialog/embedded_signup/{session}`; each screen is a form
//! POSTed back there (`action=next|back|login_other|later`). Embedded Signup v4 in the Phone
//! Number First order (META_2026.md §1.2): the number is entered and verified before the
//! portfolio and the WABA. Screens (`data-step` of the `.es-dialog` element, also
//! `current_step` of a CANCEL when the popup closes there):
//!
//! | `data-step` | Screen | Fields (CSS selectors) |
//! |---|---|---|
//! | `LOGIN` | continue as "Alex Example" (`#es-next`), or log in to another account | `#es-other-account` (reveals) → `#es-login-name`, `#es-login-other` |
//! | `GET_STARTED` | "Connect your account to {app_name}", what will be asked | `#es-next` "Get started" |
//! | `PHONE_NUMBER_SETUP` | an existing number, a new sandbox number (default), your own, a WhatsApp Business app number, or none yet | `#es-phone-existing-{id}`, `#es-phone-sandbox`, `#es-phone-own` (+ `#es-phone-number`), `#es-phone-business-app`, `#es-phone-later` |
//! | `PHONE_NUMBER_VERIFICATION` | the 6-digit code (prefilled: the sandbox "sends" it), or verify later | `#es-verification-code`, `#es-verify-later` |
//! | `BUSINESS_ACCOUNT_SELECTION` | choose a business portfolio or create one | radios `input[name=business_choice]` (`#es-business-{id}`, `#es-business-new`); `#es-business-name`, `#es-business-website`, `#es-business-country` (select), `#es-business-address` |
//! | `WHATSAPP_BUSINESS_APP_QR` | coexistence only: the QR code scanned in the WhatsApp Business app | `#es-next` "I scanned the code" |
//! | `WABA_PHONE_PROFILE_PICKER` | choose or create a WhatsApp Business Account (coexistence: create) | `#es-waba-{id}`, `#es-waba-new`; `#es-waba-name` |
//! | `WHATSAPP_BUSINESS_PROFILE_SETUP` | the new number's profile (skipped without a new number) | `#es-profile-display-name`, `#es-profile-category` (select) |
//! | `PERMISSIONS` | review of the access granted; Continue creates everything | `#es-next` "Continue" |
//! | `CONFIRMATION` | what was connected | `#es-next` "Continue" |
//! | `QUOTAS` | the limits; the final screen | `#es-next` "Finish" |
//!
//! Every screen: `#es-next` (primary), `#es-back` (from `GET_STARTED` to `PERMISSIONS`),
//! `#es-close` (×, closes the popup), `#es-report-problem` (reveals `#es-report-message` and
//! `#es-report-send`). Errors show beside their field as `#es-error-{field}` (`.es-error`);
//! errors of the whole screen as `#es-error-form`.
//!
//! Each screen posts `{"type":"SANDBOX_FB_STEP","step","session","final"}` (a JSON string) to
//! the opener, so the SDK knows where a closed popup was. Finishing (the Finish button, or the
//! SDK when the popup is closed on `QUOTAS`) calls `POST /dialog/embedded_signup/{session}/finish`,
//! which mints the code once and answers `{"code","waba_id","phone_number_id","business_id",
//! "message","response"}`: the FINISH message and the `FB.login` callback's response.

use std::collections::HashMap;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use rand::Rng;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::errors::GraphError;
use crate::signup::{
    COUNTRIES, Choices, Completion, Created, FINAL_STEP, FieldError, NewBusiness, NewPhone, Pick,
    VERTICALS,
};
use crate::state::State as World;

/// The person the sandbox pretends is signed in to Facebook.
pub(crate) const DEFAULT_PERSON: &str = "Alex Example";
/// Sessions kept at most (the oldest are forgotten).
const MAX_SESSIONS: usize = 500;
const FORM_LIMIT: usize = 64 * 1024;

/// One dialog, from opening to finish.
#[derive(Clone, Debug)]
pub(crate) struct DialogSession {
    pub id: String,
    pub origin: String,
    pub started_ms: i64,
    step: &'static str,
    history: Vec<&'static str>,
    person: String,
    business: Option<Pick<NewBusiness>>,
    waba: Option<Pick<String>>,
    /// A new WABA's time zone (Meta's `timezone_id`), picked on the WABA screen.
    waba_timezone: Option<String>,
    /// An existing number chosen on the phone screen.
    existing_phone: Option<String>,
    /// How the phone screen ended: `Verified` (a new number, verified), `Unverified` (verify
    /// later), `NoNumber` (add one later), `Coexistence` (a WhatsApp Business app number);
    /// `None` until chosen or for an existing number.
    phone_kind: Option<Completion>,
    /// `extras.features` asked for `app_only_install`.
    app_only: bool,
    /// Display name and vertical of a new profile.
    profile: Option<(String, String)>,
    suggested_number: String,
    phone_number: Option<String>,
    verification_code: String,
    prefill: HashMap<&'static str, String>,
    /// Values and errors of the last rejected submission, shown once.
    form: HashMap<String, String>,
    errors: Vec<FieldError>,
    created: Option<Created>,
    code: Option<String>,
}

impl DialogSession {
    fn value(&self, field: &str) -> String {
        self.form
            .get(field)
            .cloned()
            .or_else(|| self.prefill.get(field).cloned())
            .unwrap_or_default()
    }

    fn error(&self, field: &str) -> String {
        self.errors
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(f, message)| {
                format!(
                    r#"<p class="es-error" id="es-error-{f}" data-field="{f}">{}</p>"#,
                    esc(message)
                )
            })
            .collect()
    }
}

/// HTML-escapes text and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON safe to embed in a `<script>` element.
fn script_json(value: &Value) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|_| "null".to_owned())
        .replace("</", "<\\/")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn pairs(uri: &Uri) -> Vec<(String, String)> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{CSS}</style></head>
<body><div class="es-dialog" data-step="ERROR"><header class="es-header"><span class="es-logo">∞</span><span class="es-brand">Meta</span><span class="es-sandbox">Sandbox</span></header>
<main class="es-main"><h1 id="es-title">{title}</h1><p id="es-error-page" class="es-lead">{message}</p></main></div></body></html>"#,
        title = esc(title),
        message = esc(message),
    );
    (status, Html(body)).into_response()
}

/// `GET /dialog/embedded_signup?app_id&config_id&origin&extras`: opens a session.
pub(crate) async fn open(State(sandbox): State<Sandbox>, uri: Uri) -> Response {
    let query = pairs(&uri);
    let param = |name: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let now_ms = sandbox.inner.clock.now_ms();
    let mut state = sandbox.inner.lock();
    if param("app_id").as_deref() != Some(state.config.app_id.as_str()) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Invalid App ID",
            "The provided app ID does not look like a valid app ID.",
        );
    }
    let Some(origin) = param("origin").filter(|o| crate::validate::is_http_url(o)) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Missing origin",
            "The dialog needs the origin of the page that opened it (origin=https://…).",
        );
    };
    let origin = origin.trim_end_matches('/').to_owned();
    let extras: Value = param("extras")
        .and_then(|e| serde_json::from_str(&e).ok())
        .unwrap_or_else(|| json!({}));
    let id = crate::signup::session_id();
    let session = DialogSession {
        id: id.clone(),
        origin,
        started_ms: now_ms,
        step: "LOGIN",
        history: Vec::new(),
        person: DEFAULT_PERSON.to_owned(),
        business: None,
        waba: None,
        waba_timezone: None,
        existing_phone: None,
        phone_kind: None,
        app_only: crate::signup::wants_app_only(&extras),
        profile: None,
        suggested_number: crate::signup::new_display_number(&state),
        phone_number: None,
        verification_code: String::new(),
        prefill: prefill(&extras),
        form: HashMap::new(),
        errors: Vec::new(),
        created: None,
        code: None,
    };
    if state.dialogs.len() >= MAX_SESSIONS
        && let Some(oldest) = state
            .dialogs
            .values()
            .min_by_key(|s| s.started_ms)
            .map(|s| s.id.clone())
    {
        state.dialogs.remove(&oldest);
    }
    state.dialogs.insert(id.clone(), session);
    crate::signup::log_signup(
        &mut state,
        crate::signup::SignupRecord {
            session: id.clone(),
            at_ms: now_ms,
            flavour: crate::signup::extras_flavour(&extras),
            extras: extras.clone(),
            event: None,
            completion: None,
        },
    );
    Redirect::to(&format!("/dialog/embedded_signup/{id}")).into_response()
}

/// Meta's `extras.setup` prefill (business and phone), as far as the dialog has fields for it.
fn prefill(extras: &Value) -> HashMap<&'static str, String> {
    let setup = &extras["setup"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let mut out = HashMap::new();
    let mut put = |key: &'static str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            out.insert(key, value);
        }
    };
    put("business_name", text(&setup["business"]["name"]));
    put("website", text(&setup["business"]["website"]));
    put(
        "country",
        text(&setup["business"]["address"]["country"]).map(|c| c.to_ascii_uppercase()),
    );
    let address: Vec<String> = ["streetAddress1", "city", "zipPostal"]
        .iter()
        .filter_map(|k| text(&setup["business"]["address"][*k]))
        .collect();
    put("address", Some(address.join(", ")));
    put("display_name", text(&setup["phone"]["displayName"]));
    if extras["featureType"] == "whatsapp_business_app_onboarding" {
        put("phone_choice", Some("business_app".to_owned()));
    }
    put(
        "vertical",
        text(&setup["phone"]["category"]).map(|c| c.to_ascii_uppercase()),
    );
    out
}

/// `GET /dialog/embedded_signup/{session}`: the current screen.
pub(crate) async fn show(State(sandbox): State<Sandbox>, Path(id): Path<String>) -> Response {
    let now_secs = sandbox.inner.clock.now_secs();
    let mut state = sandbox.inner.lock();
    let Some(session) = state.dialogs.get(&id).cloned() else {
        return missing_session();
    };
    let page = render(&state, &session, now_secs);
    if let Some(session) = state.dialogs.get_mut(&id) {
        session.form.clear();
        session.errors.clear();
    }
    let mut response = Html(page).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn missing_session() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "This page isn't available",
        "The signup session has ended or never existed. Close this window and start again.",
    )
}

/// `POST /dialog/embedded_signup/{session}`: one screen's form.
pub(crate) async fn submit(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let Ok(bytes) = to_bytes(body, FORM_LIMIT).await else {
        return error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Something went wrong",
            "The form was too large.",
        );
    };
    let text = String::from_utf8_lossy(&bytes);
    let form: HashMap<String, String> = format!("/?{}", text.trim())
        .parse::<Uri>()
        .map(|uri| pairs(&uri).into_iter().collect())
        .unwrap_or_default();
    let now_ms = sandbox.inner.clock.now_ms();
    {
        let mut state = sandbox.inner.lock();
        let Some(mut session) = state.dialogs.get(&id).cloned() else {
            return missing_session();
        };
        // A stale form (another tab, the back button) just shows the current screen again.
        if form.get("step").map(String::as_str) == Some(session.step) {
            apply(&mut state, &mut session, &form, now_ms);
        }
        state.dialogs.insert(id.clone(), session);
    }
    sandbox.inner.wake.notify_one();
    Redirect::to(&format!("/dialog/embedded_signup/{id}")).into_response()
}

fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map_or("", String::as_str)
}

/// Applies one submission: validates, records the choice, moves on (or keeps the errors).
fn apply(
    state: &mut World,
    session: &mut DialogSession,
    form: &HashMap<String, String>,
    now_ms: i64,
) {
    let action = field(form, "action");
    if action == "back" {
        if session.created.is_none()
            && let Some(previous) = session.history.pop()
        {
            session.step = previous;
        }
        return;
    }
    let result: Result<&'static str, Vec<FieldError>> = match (session.step, action) {
        ("LOGIN", "login_other") => {
            let name = field(form, "person_name").trim();
            if name.is_empty() {
                Err(vec![(
                    "person_name",
                    "Enter the name of the account to log in with.".to_owned(),
                )])
            } else {
                session.person = name.chars().take(100).collect();
                Ok("GET_STARTED")
            }
        }
        ("LOGIN", _) => {
            session.person = DEFAULT_PERSON.to_owned();
            Ok("GET_STARTED")
        }
        ("GET_STARTED", _) => Ok("PHONE_NUMBER_SETUP"),
        ("BUSINESS_ACCOUNT_SELECTION", _) => choose_business(state, session, form),
        ("WHATSAPP_BUSINESS_APP_QR", _) => Ok("WABA_PHONE_PROFILE_PICKER"),
        ("WABA_PHONE_PROFILE_PICKER", _) => choose_waba(state, session, form),
        ("WHATSAPP_BUSINESS_PROFILE_SETUP", _) => choose_profile(session, form),
        ("PHONE_NUMBER_SETUP", _) => choose_number(state, session, form),
        ("PHONE_NUMBER_VERIFICATION", "later") => {
            session.phone_kind = Some(Completion::Unverified);
            Ok("BUSINESS_ACCOUNT_SELECTION")
        }
        ("PHONE_NUMBER_VERIFICATION", _) => {
            if field(form, "verification_code").trim() == session.verification_code {
                session.phone_kind = Some(Completion::Verified);
                Ok("BUSINESS_ACCOUNT_SELECTION")
            } else {
                Err(vec![(
                    "verification_code",
                    "That code doesn't match the one we sent. Check it and try again.".to_owned(),
                )])
            }
        }
        ("PERMISSIONS", _) => connect(state, session, now_ms),
        ("CONFIRMATION", _) => Ok(FINAL_STEP),
        _ => Ok(session.step),
    };
    match result {
        Ok(next) if next != session.step => {
            session.history.push(session.step);
            session.step = next;
        }
        Ok(_) => {}
        Err(errors) => {
            session.form = form.clone();
            session.errors = errors;
        }
    }
}

fn choose_business(
    state: &World,
    session: &mut DialogSession,
    form: &HashMap<String, String>,
) -> Result<&'static str, Vec<FieldError>> {
    let choice = field(form, "business_choice");
    if choice == "new" {
        let business = crate::signup::validate_business(
            field(form, "business_name"),
            field(form, "website"),
            field(form, "country"),
            Some(field(form, "address")),
        )?;
        session.business = Some(Pick::New(business));
    } else if state.business(choice).is_some() {
        session.business = Some(Pick::Existing(choice.to_owned()));
    } else {
        return Err(vec![(
            "business_choice",
            "Choose a business portfolio or create a new one.".to_owned(),
        )]);
    }
    session.waba = None;
    if session.phone_kind == Some(Completion::Coexistence) {
        Ok("WHATSAPP_BUSINESS_APP_QR")
    } else {
        Ok("WABA_PHONE_PROFILE_PICKER")
    }
}

fn choose_waba(
    state: &World,
    session: &mut DialogSession,
    form: &HashMap<String, String>,
) -> Result<&'static str, Vec<FieldError>> {
    let choice = field(form, "waba_choice");
    if choice == "new" {
        let name = crate::signup::validate_waba_name(field(form, "waba_name"));
        let zone =
            crate::signup::validate_timezone_id(field(form, "waba_timezone")).and_then(|id| {
                match crate::zones::iana(&id) {
                    Some(_) => Ok(id),
                    None => Err(vec![(
                        "waba_timezone",
                        "Choose a time zone from the list.".to_owned(),
                    )]),
                }
            });
        match (name, zone) {
            (Ok(name), Ok(zone)) => {
                session.waba = Some(Pick::New(name));
                session.waba_timezone = Some(zone);
            }
            (name, zone) => {
                return Err(name.err().into_iter().chain(zone.err()).flatten().collect());
            }
        }
    } else if wabas_offered(state, session)
        .iter()
        .any(|(id, _)| id == choice)
    {
        session.waba = Some(Pick::Existing(choice.to_owned()));
    } else {
        return Err(vec![(
            "waba_choice",
            "Choose a WhatsApp Business Account or create a new one.".to_owned(),
        )]);
    }
    if session.phone_kind == Some(Completion::NoNumber) {
        Ok("PERMISSIONS")
    } else {
        Ok("WHATSAPP_BUSINESS_PROFILE_SETUP")
    }
}

fn choose_profile(
    session: &mut DialogSession,
    form: &HashMap<String, String>,
) -> Result<&'static str, Vec<FieldError>> {
    let profile =
        crate::signup::validate_profile(field(form, "display_name"), field(form, "vertical"))?;
    session.profile = Some(profile);
    Ok("PERMISSIONS")
}

fn choose_number(
    state: &World,
    session: &mut DialogSession,
    form: &HashMap<String, String>,
) -> Result<&'static str, Vec<FieldError>> {
    let choice = field(form, "phone_choice");
    session.existing_phone = None;
    if choice == "later" {
        session.phone_kind = Some(Completion::NoNumber);
        session.phone_number = None;
        return Ok("BUSINESS_ACCOUNT_SELECTION");
    }
    if let Some(id) = choice.strip_prefix("existing:") {
        let Some(found) = state.phone(id) else {
            return Err(vec![(
                "phone_choice",
                "Choose a phone number or add a new one.".to_owned(),
            )]);
        };
        let waba = found.waba.id.clone();
        let Some(owner) = state.business_of_waba(&waba).map(|b| b.id.clone()) else {
            return Err(vec![(
                "phone_choice",
                "Choose a phone number or add a new one.".to_owned(),
            )]);
        };
        session.existing_phone = Some(id.to_owned());
        session.business = Some(Pick::Existing(owner));
        session.waba = Some(Pick::Existing(waba));
        session.phone_kind = None;
        return Ok("PERMISSIONS");
    }
    let number = if choice == "own" {
        crate::signup::validate_phone_number(state, field(form, "phone_number"))?
    } else {
        crate::signup::validate_phone_number(state, &session.suggested_number).map_err(|_| {
            session.suggested_number = crate::signup::new_display_number(state);
            vec![(
                "phone_choice",
                "That sandbox number was just taken; here is another one.".to_owned(),
            )]
        })?
    };
    session.phone_number = Some(number);
    if choice == "business_app" {
        // Meta starts coexistence itself when the number entered runs the Business app.
        session.phone_kind = Some(Completion::Coexistence);
        return Ok("BUSINESS_ACCOUNT_SELECTION");
    }
    session.phone_kind = None;
    session.verification_code = format!("{:06}", rand::rng().random_range(0..1_000_000));
    Ok("PHONE_NUMBER_VERIFICATION")
}

/// The user granted access: create everything (PARTNER_ADDED goes out, the review starts).
fn connect(
    state: &mut World,
    session: &mut DialogSession,
    now_ms: i64,
) -> Result<&'static str, Vec<FieldError>> {
    if session.created.is_some() {
        return Ok("CONFIRMATION");
    }
    let incomplete = || {
        vec![(
            "form",
            "Some choices are missing. Go back and complete every step.".to_owned(),
        )]
    };
    let (Some(business), Some(waba)) = (session.business.clone(), session.waba.clone()) else {
        return Err(incomplete());
    };
    let (phone, completion) = match (
        &session.existing_phone,
        session.phone_kind,
        &session.profile,
        &session.phone_number,
    ) {
        (Some(id), _, _, _) => (Some(Pick::Existing(id.clone())), Completion::Verified),
        (None, Some(Completion::NoNumber), _, _) => (None, Completion::NoNumber),
        (None, Some(kind), Some((display_name, vertical)), Some(number)) => (
            Some(Pick::New(NewPhone {
                display_phone_number: number.clone(),
                display_name: display_name.clone(),
                vertical: vertical.clone(),
            })),
            kind,
        ),
        _ => return Err(incomplete()),
    };
    // App-only install cannot be combined with coexistence (META_2026.md §1.3).
    let completion = if session.app_only && completion == Completion::Verified {
        Completion::AppOnly
    } else {
        completion
    };
    let waba_timezone = match &waba {
        Pick::New(_) => session.waba_timezone.clone(),
        Pick::Existing(_) => None,
    };
    let choices = Choices {
        business,
        waba,
        waba_timezone,
        phone,
        completion,
    };
    let created = crate::signup::create(state, now_ms, &choices)
        .map_err(|e| vec![("form", e.details.unwrap_or(e.message))])?;
    session.created = Some(created);
    Ok("CONFIRMATION")
}

/// WABAs of the chosen existing portfolio (none for a new one, nor for coexistence, which
/// creates its WABA).
fn wabas_offered(state: &World, session: &DialogSession) -> Vec<(String, String)> {
    if session.phone_kind == Some(Completion::Coexistence) {
        return Vec::new();
    }
    match &session.business {
        Some(Pick::Existing(id)) => state
            .business(id)
            .map(|b| {
                b.wabas
                    .iter()
                    .map(|w| (w.id.clone(), w.name.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Numbers already on the person's accounts (the phone screen's dropdown): id, verified
/// name, display number.
fn numbers_offered(state: &World) -> Vec<(String, String, String)> {
    state
        .config
        .businesses
        .iter()
        .flat_map(|b| b.wabas.iter())
        .flat_map(|w| w.phone_numbers.iter())
        .filter(|p| !p.is_on_biz_app)
        .map(|p| {
            (
                p.id.clone(),
                p.verified_name.clone(),
                p.display_phone_number.clone(),
            )
        })
        .collect()
}

/// `POST /dialog/embedded_signup/{session}/finish` (CORS): mints the code once the final
/// screen is reached; the same answer on every call.
pub(crate) async fn finish(State(sandbox): State<Sandbox>, Path(id): Path<String>) -> Response {
    let now_ms = sandbox.inner.clock.now_ms();
    let answer = {
        let mut state = sandbox.inner.lock();
        let Some(mut session) = state.dialogs.get(&id).cloned() else {
            return cors(
                GraphError::invalid_param(format!("No signup session {id}.")).into_response(),
            );
        };
        let Some(created) = session
            .created
            .clone()
            .filter(|_| session.step == FINAL_STEP)
        else {
            return cors(
                GraphError::invalid_param(format!(
                    "The signup session {id} has not reached its final screen (it is at {}).",
                    session.step
                ))
                .into_response(),
            );
        };
        let message =
            crate::signup::finish_message(&created, &state.config.behaviour.no_number_event);
        let code = match &session.code {
            Some(code) => code.clone(),
            None => {
                let code = crate::signup::mint_code(&mut state, now_ms, &created);
                session.code = Some(code.clone());
                state.dialogs.insert(id.clone(), session);
                if let Some(record) = state.signups.iter_mut().rev().find(|r| r.session == id) {
                    record.event = message["event"].as_str().map(str::to_owned);
                    record.completion = Some(created.completion.name());
                }
                code
            }
        };
        json!({
            "code": code,
            "waba_id": created.waba_id,
            "phone_number_id": created.phone_number_id,
            "business_id": created.business_id,
            "message": message,
            "response": {
                "authResponse": {
                    "code": code,
                    "userID": "10222270944537964",
                    "expiresIn": 0,
                    "graphDomain": "facebook",
                    "data_access_expiration_time": now_ms.div_euclid(1000) + 90 * 86_400,
                },
                "status": "connected",
            },
        })
    };
    cors(axum::Json(answer).into_response())
}

fn cors(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---- rendering ------------------------------------------------------------------------

fn render(state: &World, session: &DialogSession, now_secs: i64) -> String {
    let app = esc(&state.config.app_name);
    let step = session.step;
    let (title, body, next_label) = match step {
        "LOGIN" => login_screen(session),
        "GET_STARTED" => get_started_screen(&app),
        "BUSINESS_ACCOUNT_SELECTION" => business_screen(state, session),
        "WABA_PHONE_PROFILE_PICKER" => waba_screen(state, session),
        "WHATSAPP_BUSINESS_PROFILE_SETUP" => profile_screen(state, session),
        "WHATSAPP_BUSINESS_APP_QR" => qr_screen(session),
        "PHONE_NUMBER_SETUP" => number_screen(state, session),
        "PHONE_NUMBER_VERIFICATION" => verification_screen(session),
        "PERMISSIONS" => permissions_screen(state, session, &app),
        "CONFIRMATION" => confirmation_screen(state, session, &app),
        _ => quotas_screen(),
    };
    let back = if session.created.is_none() && !session.history.is_empty() {
        r#"<button type="submit" name="action" value="back" id="es-back" class="es-button es-secondary">Back</button>"#
    } else {
        ""
    };
    let position = crate::signup::STEPS
        .iter()
        .position(|s| *s == step)
        .unwrap_or(0);
    let progress = (position + 1) * 100 / crate::signup::STEPS.len();
    let config = json!({
        "session": session.id,
        "origin": session.origin,
        "step": step,
        "final": step == FINAL_STEP,
        "now": now_secs,
    });
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Embedded Signup (sandbox)</title>
<style>{CSS}</style>
</head>
<body>
<div class="es-dialog" data-step="{step}" data-session="{session_id}">
  <header class="es-header">
    <span class="es-logo" aria-hidden="true">∞</span><span class="es-brand">Meta</span>
    <span class="es-sandbox" title="Parley sandbox: nothing here reaches Meta">Sandbox</span>
    <span class="es-person">{person}</span>
    <button type="button" id="es-close" class="es-close" aria-label="Close">×</button>
  </header>
  <div class="es-progress" aria-hidden="true"><span style="width:{progress}%"></span></div>
  <form id="es-form" class="es-main" method="post" action="/dialog/embedded_signup/{session_id}" novalidate>
    <input type="hidden" name="step" value="{step}">
    <h1 id="es-title">{title}</h1>
    {form_error}
    {body}
    <footer class="es-footer">
      <a href="#" id="es-report-problem" class="es-link">Report a problem</a>
      <span class="es-spacer"></span>
      <button type="submit" name="action" value="next" id="es-next" class="es-button es-primary">{next_label}</button>
      {back}
    </footer>
  </form>
  <div id="es-report" class="es-report" hidden>
    <label for="es-report-message">What went wrong?</label>
    <textarea id="es-report-message" rows="3">Something went wrong while connecting my account.</textarea>
    <label for="es-report-code">Error</label>
    <select id="es-report-code">{report_codes}</select>
    <button type="button" id="es-report-send" class="es-button es-primary">Send report</button>
  </div>
</div>
<script>
var ES = {config};
{SCRIPT}
</script>
</body>
</html>"##,
        session_id = esc(&session.id),
        person = esc(&session.person),
        form_error = session.error("form"),
        report_codes = crate::signup::ES_ERRORS
            .iter()
            .map(|(code, text)| format!(r#"<option value="{code}">{code}: {}</option>"#, esc(text)))
            .collect::<String>(),
        config = script_json(&config),
    )
}

type Screen = (String, String, &'static str);

fn login_screen(session: &DialogSession) -> Screen {
    let name = esc(&session.value("person_name"));
    let body = format!(
        r#"<div class="es-person-card"><span class="es-avatar">AE</span><div><strong>{DEFAULT_PERSON}</strong><br><span class="es-muted">Signed in to Facebook</span></div></div>
<p class="es-lead">Continue as {DEFAULT_PERSON} to connect your WhatsApp Business account, or log in with another account.</p>
<details id="es-other" {open}><summary id="es-other-account" class="es-link">Log in to another account</summary>
  <label for="es-login-name">Name</label>
  <input id="es-login-name" name="person_name" value="{name}" autocomplete="name">
  {error}
  <button type="submit" name="action" value="login_other" id="es-login-other" class="es-button es-secondary">Log in</button>
</details>"#,
        open = if session.errors.is_empty() {
            ""
        } else {
            "open"
        },
        error = session.error("person_name"),
    );
    (
        "Log in with Facebook".to_owned(),
        body,
        "Continue as Alex Example",
    )
}

fn get_started_screen(app: &str) -> Screen {
    let body = format!(
        r#"<p class="es-lead">{app} is asking to:</p>
<ul class="es-checks" id="es-asks">
  <li>Add or link phone numbers to your WhatsApp Business Account</li>
  <li>Create and manage message templates</li>
  <li>Send and receive messages</li>
  <li>Assign users to your WhatsApp Business Account</li>
  <li>Access metrics about your WhatsApp Business Account</li>
</ul>
<p class="es-muted">You'll choose a business portfolio, a WhatsApp Business Account and a business profile with a phone number. It takes a couple of minutes.</p>"#
    );
    (
        format!("Connect your account to {app}"),
        body,
        "Get started",
    )
}

fn radio(name: &str, id: &str, value: &str, checked: bool, label: &str, hint: &str) -> String {
    format!(
        r#"<label class="es-choice" for="{id}"><input type="radio" name="{name}" id="{id}" value="{value}" {checked}><span><strong>{label}</strong>{hint}</span></label>"#,
        id = esc(id),
        value = esc(value),
        checked = if checked { "checked" } else { "" },
        label = esc(label),
        hint = if hint.is_empty() {
            String::new()
        } else {
            format!(r#"<br><span class="es-muted">{}</span>"#, esc(hint))
        },
    )
}

fn options(list: &[(&str, &str)], selected: &str, placeholder: &str) -> String {
    let mut out = format!(r#"<option value="">{}</option>"#, esc(placeholder));
    for (code, label) in list {
        out.push_str(&format!(
            r#"<option value="{code}" {sel}>{label}</option>"#,
            sel = if *code == selected { "selected" } else { "" },
            label = esc(label),
        ));
    }
    out
}

fn business_screen(state: &World, session: &DialogSession) -> Screen {
    let current = match (&session.business, session.form.get("business_choice")) {
        (_, Some(choice)) => choice.clone(),
        (Some(Pick::Existing(id)), None) => id.clone(),
        (Some(Pick::New(_)), None) => "new".to_owned(),
        (None, None) => state
            .config
            .businesses
            .first()
            .map_or_else(|| "new".to_owned(), |b| b.id.clone()),
    };
    let previous = match &session.business {
        Some(Pick::New(b)) => Some(b),
        _ => None,
    };
    let value = |field: &str, from_previous: Option<String>| {
        esc(&session
            .form
            .get(field)
            .cloned()
            .or(from_previous)
            .unwrap_or_else(|| session.value(field)))
    };
    let mut body = String::from(
        r#"<p class="es-lead">Choose the business portfolio that owns your WhatsApp Business Account, or create one.</p><div class="es-choices" data-group="business_choice">"#,
    );
    for business in &state.config.businesses {
        body.push_str(&radio(
            "business_choice",
            &format!("es-business-{}", business.id),
            &business.id,
            current == business.id,
            &business.name,
            &format!("Business portfolio · ID {}", business.id),
        ));
    }
    body.push_str(&radio(
        "business_choice",
        "es-business-new",
        "new",
        current == "new",
        "Create a business portfolio",
        "Enter your company's details",
    ));
    body.push_str("</div>");
    body.push_str(&session.error("business_choice"));
    let country = session
        .form
        .get("country")
        .cloned()
        .or_else(|| previous.map(|b| b.country.clone()))
        .unwrap_or_else(|| session.value("country"));
    body.push_str(&format!(
        r#"<fieldset class="es-fields" data-when="business_choice=new" {hidden}>
  <label for="es-business-name">Company name</label>
  <input id="es-business-name" name="business_name" value="{name}" autocomplete="organization">
  {name_error}
  <label for="es-business-website">Website</label>
  <input id="es-business-website" name="website" value="{website}" placeholder="https://www.example.com" inputmode="url">
  {website_error}
  <label for="es-business-country">Country</label>
  <select id="es-business-country" name="country">{countries}</select>
  {country_error}
  <label for="es-business-address">Address <span class="es-muted">(optional)</span></label>
  <input id="es-business-address" name="address" value="{address}" autocomplete="street-address">
</fieldset>"#,
        hidden = if current == "new" { "" } else { "hidden" },
        name = value("business_name", previous.map(|b| b.name.clone())),
        name_error = session.error("business_name"),
        website = value("website", previous.map(|b| b.website.clone())),
        website_error = session.error("website"),
        countries = options(&COUNTRIES, &country, "Choose a country"),
        country_error = session.error("country"),
        address = value("address", previous.and_then(|b| b.address.clone())),
    ));
    ("Choose your business portfolio".to_owned(), body, "Next")
}

fn waba_screen(state: &World, session: &DialogSession) -> Screen {
    let offered = wabas_offered(state, session);
    let current = match (&session.waba, session.form.get("waba_choice")) {
        (_, Some(choice)) => choice.clone(),
        (Some(Pick::Existing(id)), None) => id.clone(),
        (Some(Pick::New(_)), None) => "new".to_owned(),
        (None, None) => offered
            .first()
            .map_or_else(|| "new".to_owned(), |(id, _)| id.clone()),
    };
    let default_name = match (&session.waba, &session.business) {
        (Some(Pick::New(name)), _) => name.clone(),
        (_, Some(Pick::New(b))) => b.name.clone(),
        (_, Some(Pick::Existing(id))) => state
            .business(id)
            .map(|b| b.name.clone())
            .unwrap_or_default(),
        _ => String::new(),
    };
    let mut body = String::from(
        r#"<p class="es-lead">Choose the WhatsApp Business Account to connect, or create a new one.</p><div class="es-choices" data-group="waba_choice">"#,
    );
    for (id, name) in &offered {
        body.push_str(&radio(
            "waba_choice",
            &format!("es-waba-{id}"),
            id,
            current == *id,
            name,
            &format!("WhatsApp Business Account · ID {id}"),
        ));
    }
    body.push_str(&radio(
        "waba_choice",
        "es-waba-new",
        "new",
        current == "new",
        "Create a WhatsApp Business Account",
        "",
    ));
    body.push_str("</div>");
    body.push_str(&session.error("waba_choice"));
    body.push_str(&format!(
        r#"<fieldset class="es-fields" data-when="waba_choice=new" {hidden}>
  <label for="es-waba-name">WhatsApp Business Account name</label>
  <input id="es-waba-name" name="waba_name" value="{name}">
  {error}
  <label for="es-waba-timezone">Time zone</label>
  <select id="es-waba-timezone" name="waba_timezone" required>{zones}</select>
  {zone_error}
</fieldset>"#,
        hidden = if current == "new" { "" } else { "hidden" },
        zones = {
            let chosen = session
                .form
                .get("waba_timezone")
                .cloned()
                .or_else(|| session.waba_timezone.clone())
                .unwrap_or_else(|| "1".to_owned());
            crate::zones::all()
                .into_iter()
                .map(|(id, zone)| {
                    format!(
                        r#"<option value="{id}"{sel}>{zone}</option>"#,
                        sel = if id == chosen { " selected" } else { "" },
                        zone = esc(zone)
                    )
                })
                .collect::<String>()
        },
        zone_error = session.error("waba_timezone"),
        name = esc(&session
            .form
            .get("waba_name")
            .cloned()
            .unwrap_or(default_name)),
        error = session.error("waba_name"),
    ));
    (
        "Choose your WhatsApp Business Account".to_owned(),
        body,
        "Next",
    )
}

fn profile_screen(state: &World, session: &DialogSession) -> Screen {
    let default_name = match &session.waba {
        Some(Pick::New(name)) => name.clone(),
        Some(Pick::Existing(id)) => state.waba(id).map(|w| w.name.clone()).unwrap_or_default(),
        None => String::new(),
    };
    let (display_name, vertical) = match (&session.profile, session.form.is_empty()) {
        (Some((name, vertical)), true) => (name.clone(), vertical.clone()),
        _ => (
            session
                .form
                .get("display_name")
                .cloned()
                .or_else(|| session.prefill.get("display_name").cloned())
                .unwrap_or(default_name),
            session.value("vertical"),
        ),
    };
    let number = esc(session.phone_number.as_deref().unwrap_or_default());
    let lead = if session.phone_kind == Some(Completion::Coexistence) {
        format!(
            "This is the profile of {number} in the WhatsApp Business app. Confirm it; customers keep seeing it in WhatsApp."
        )
    } else {
        format!(
            "Customers see this business profile in WhatsApp when you message them from {number}."
        )
    };
    let body = format!(
        r#"<p class="es-lead">{lead}</p>
<fieldset class="es-fields">
  <label for="es-profile-display-name">Business display name</label>
  <input id="es-profile-display-name" name="display_name" value="{name}">
  {name_error}
  <p class="es-muted">The name is reviewed by Meta before it shows in chats.</p>
  <label for="es-profile-category">Category</label>
  <select id="es-profile-category" name="vertical">{verticals}</select>
  {vertical_error}
</fieldset>"#,
        name = esc(&display_name),
        name_error = session.error("display_name"),
        verticals = options(&VERTICALS, &vertical, "Choose a category"),
        vertical_error = session.error("vertical"),
    );
    (
        "Set up your WhatsApp business profile".to_owned(),
        body,
        "Next",
    )
}

fn qr_screen(session: &DialogSession) -> Screen {
    let number = esc(session.phone_number.as_deref().unwrap_or_default());
    let body = format!(
        r#"<p class="es-lead">Open the WhatsApp Business app on {number}, go to Settings › Linked devices (or tap the message we sent to the number) and scan this code.</p>
<div class="es-qr" id="es-qr" aria-label="QR code">▚▞▚▞<br>▞▚▞▚<br>▚▞▚▞</div>
<p class="es-note">Sandbox: no phone is needed; continue as if you scanned it. Your chats, contacts and the app keep working on the phone.</p>"#
    );
    (
        "Scan the QR code in the WhatsApp Business app".to_owned(),
        body,
        "I scanned the code",
    )
}

fn number_screen(state: &World, session: &DialogSession) -> Screen {
    let current = session
        .form
        .get("phone_choice")
        .cloned()
        .or_else(|| {
            session
                .existing_phone
                .as_ref()
                .map(|id| format!("existing:{id}"))
        })
        .or_else(|| match session.phone_kind {
            Some(Completion::NoNumber) => Some("later".to_owned()),
            Some(Completion::Coexistence) => Some("business_app".to_owned()),
            _ => None,
        })
        .or_else(|| session.prefill.get("phone_choice").cloned())
        .unwrap_or_else(|| "sandbox".to_owned());
    let mut body = String::from(
        r#"<p class="es-lead">Enter the phone number for WhatsApp. We check first whether it can be used; you choose your business portfolio after that.</p><div class="es-choices" data-group="phone_choice">"#,
    );
    for (id, name, number) in numbers_offered(state) {
        let value = format!("existing:{id}");
        body.push_str(&radio(
            "phone_choice",
            &format!("es-phone-existing-{id}"),
            &value,
            current == value,
            &format!("{number} · {name}"),
            "A number already on your WhatsApp Business Account",
        ));
    }
    body.push_str(&radio(
        "phone_choice",
        "es-phone-sandbox",
        "sandbox",
        current == "sandbox",
        &format!("Use a new sandbox number: {}", session.suggested_number),
        "The sandbox creates it for you",
    ));
    body.push_str(&radio(
        "phone_choice",
        "es-phone-own",
        "own",
        current == "own",
        "Use another phone number",
        "",
    ));
    body.push_str(&radio(
        "phone_choice",
        "es-phone-business-app",
        "business_app",
        current == "business_app",
        &format!(
            "Connect the WhatsApp Business app number {}",
            session.suggested_number
        ),
        "Keep using the app on your phone; messages are shared with this business solution",
    ));
    body.push_str(&radio(
        "phone_choice",
        "es-phone-later",
        "later",
        current == "later",
        "Add a phone number later",
        "Finish with a WhatsApp Business Account only",
    ));
    body.push_str("</div>");
    body.push_str(&session.error("phone_choice"));
    body.push_str(&format!(
        r#"<fieldset class="es-fields" data-when="phone_choice=own" {hidden}>
  <label for="es-phone-number">Phone number</label>
  <input id="es-phone-number" name="phone_number" value="{number}" placeholder="+1 555 010 0199" inputmode="tel">
  {error}
</fieldset>
<p class="es-label">Choose how you would like to verify your number</p>
<div class="es-choices es-inline"><label class="es-choice"><input type="radio" name="verification_method" value="sms" checked><span>Text message</span></label><label class="es-choice"><input type="radio" name="verification_method" value="voice"><span>Phone call</span></label></div>"#,
        hidden = if current == "own" { "" } else { "hidden" },
        number = esc(&session.value("phone_number")),
        error = session.error("phone_number"),
    ));
    ("Add a phone number".to_owned(), body, "Next")
}

fn verification_screen(session: &DialogSession) -> Screen {
    let number = session.phone_number.clone().unwrap_or_default();
    let body = format!(
        r#"<p class="es-lead">Enter the 6-digit code sent to {number}.</p>
<p class="es-note">Sandbox: no text message is sent; the code is <strong id="es-sandbox-code">{code}</strong> and already filled in.</p>
<label for="es-verification-code">Verification code</label>
<input id="es-verification-code" name="verification_code" value="{value}" inputmode="numeric" maxlength="6" autocomplete="one-time-code">
{error}
<p class="es-muted">No code? You can finish now and verify the number later from your business solution.</p>
<button type="submit" name="action" value="later" id="es-verify-later" class="es-button es-secondary">Verify later</button>"#,
        number = esc(&number),
        code = esc(&session.verification_code),
        value = esc(&session
            .form
            .get("verification_code")
            .cloned()
            .unwrap_or_else(|| session.verification_code.clone())),
        error = session.error("verification_code"),
    );
    ("Verify your phone number".to_owned(), body, "Verify")
}

fn waba_name(state: &World, session: &DialogSession) -> String {
    match &session.waba {
        Some(Pick::New(name)) => name.clone(),
        Some(Pick::Existing(id)) => state.waba(id).map(|w| w.name.clone()).unwrap_or_default(),
        None => String::new(),
    }
}

fn permissions_screen(state: &World, session: &DialogSession, app: &str) -> Screen {
    let waba = esc(&waba_name(state, session));
    let body = format!(
        r#"<p class="es-lead">{app} will be able to:</p>
<ul class="es-checks" id="es-permissions">
  <li><strong>Manage {waba}</strong><br><span class="es-muted">Your WhatsApp Business Account, its phone numbers and message templates</span></li>
  <li><strong>Access and manage conversations of {waba}</strong><br><span class="es-muted">Send and receive messages for its phone numbers</span></li>
</ul>
<p class="es-muted">You can change this access at any time in your business settings.</p>"#
    );
    (format!("Review {app}'s access"), body, "Continue")
}

fn confirmation_screen(state: &World, session: &DialogSession, app: &str) -> Screen {
    let Some(created) = &session.created else {
        return ("Something went wrong".to_owned(), String::new(), "Continue");
    };
    let business = state
        .business(&created.business_id)
        .map(|b| b.name.clone())
        .unwrap_or_default();
    let phone_id = created.phone_number_id.clone().unwrap_or_default();
    let phone_text = match state.phone(&phone_id) {
        Some(p) => {
            let mut text = format!(
                "{} · {}",
                p.phone.display_phone_number, p.phone.verified_name
            );
            if p.phone.code_verification_status != "VERIFIED" {
                text.push_str(" (not verified yet)");
            }
            if p.phone.is_on_biz_app {
                text.push_str(" (WhatsApp Business app)");
            }
            text
        }
        None => "No phone number yet: add one from your business solution".to_owned(),
    };
    let body = format!(
        r#"<p class="es-lead">Your WhatsApp Business Account is connected to {app}.</p>
<dl class="es-summary" id="es-summary">
  <dt>Business portfolio</dt><dd id="es-summary-business" data-id="{business_id}">{business}</dd>
  <dt>WhatsApp Business Account</dt><dd id="es-summary-waba" data-id="{waba_id}">{waba}</dd>
  <dt>Phone number</dt><dd id="es-summary-phone" data-id="{phone_id}">{phone_text}</dd>
</dl>
<p class="es-muted">Meta reviews new accounts against its commerce policy; until then the account shows as pending review.</p>"#,
        business_id = esc(&created.business_id),
        business = esc(&business),
        waba_id = esc(&created.waba_id),
        waba = esc(&waba_name(state, session)),
        phone_id = esc(&phone_id),
        phone_text = esc(&phone_text),
    );
    ("You're connected".to_owned(), body, "Continue")
}

fn quotas_screen() -> Screen {
    let body = r#"<p class="es-lead">Your phone number can start messaging with these limits. They grow as you send high-quality messages.</p>
<ul class="es-quotas" id="es-quotas">
  <li><strong>Business-initiated conversations</strong><br>Up to 250 conversations per phone number in a rolling 24-hour period</li>
  <li><strong>Customer-initiated conversations</strong><br>Unlimited</li>
</ul>"#
        .to_owned();
    ("Your messaging limits".to_owned(), body, "Finish")
}

const CSS: &str = r#"
*{box-sizing:border-box}
body{margin:0;background:#f0f2f5;font:14px/1.4 Helvetica,Arial,"Segoe UI",sans-serif;color:#1c1e21}
.es-dialog{max-width:600px;min-height:100vh;margin:0 auto;background:#fff;display:flex;flex-direction:column}
.es-header{display:flex;align-items:center;gap:8px;padding:12px 16px;border-bottom:1px solid #dadde1}
.es-logo{display:inline-flex;width:28px;height:28px;border-radius:50%;background:#0866ff;color:#fff;align-items:center;justify-content:center;font-weight:bold}
.es-brand{font-weight:bold;font-size:16px}
.es-sandbox{font-size:11px;text-transform:uppercase;letter-spacing:.05em;background:#fff4cc;color:#7a5c00;border-radius:4px;padding:2px 6px}
.es-person{margin-left:auto;color:#65676b;font-size:13px}
.es-close{border:0;background:#e4e6eb;border-radius:50%;width:32px;height:32px;font-size:20px;line-height:1;cursor:pointer;color:#606770}
.es-progress{height:4px;background:#e4e6eb}.es-progress span{display:block;height:4px;background:#0866ff}
.es-main{flex:1;display:flex;flex-direction:column;padding:20px 24px}
h1{font-size:20px;margin:4px 0 12px}
.es-lead{font-size:15px;margin:0 0 14px}
.es-muted{color:#65676b;font-size:13px}
.es-note{background:#e7f3ff;border-radius:6px;padding:8px 12px}
.es-checks,.es-quotas{list-style:none;padding:0;margin:0 0 14px}
.es-checks li,.es-quotas li{padding:8px 0 8px 30px;position:relative;border-bottom:1px solid #f0f2f5}
.es-checks li:before{content:"✓";position:absolute;left:4px;top:8px;color:#0866ff;font-weight:bold}
.es-quotas li:before{content:"•";position:absolute;left:8px;top:6px;color:#0866ff;font-size:20px}
.es-choices{display:flex;flex-direction:column;gap:8px;margin-bottom:12px}
.es-inline{flex-direction:row}
.es-choice{display:flex;gap:10px;align-items:flex-start;border:1px solid #dadde1;border-radius:8px;padding:10px 12px;cursor:pointer}
.es-choice:has(input:checked){border-color:#0866ff;background:#f5f9ff}
.es-fields{border:0;padding:0;margin:0 0 8px;display:flex;flex-direction:column}
.es-fields[hidden]{display:none}
label,.es-label{font-weight:bold;font-size:13px;margin:10px 0 4px}
.es-choice,.es-choice span{font-weight:normal;margin:0}
input:not([type=radio]),select,textarea{font:inherit;background:#fff;padding:9px 10px;border:1px solid #ccd0d5;border-radius:6px;width:100%}
input:focus,select:focus,textarea:focus{outline:2px solid #0866ff33;border-color:#0866ff}
.es-error{color:#c80a28;font-size:13px;margin:4px 0 0}
.es-footer{display:flex;align-items:center;gap:8px;margin-top:auto;padding-top:18px;border-top:1px solid #dadde1}
.es-spacer{flex:1}
#es-back{order:1}#es-next{order:2}
.es-button{font:inherit;font-weight:bold;border:0;border-radius:6px;padding:9px 18px;cursor:pointer}
.es-primary{background:#0866ff;color:#fff}.es-primary:hover{background:#0558d6}
.es-secondary{background:#e4e6eb;color:#050505}
.es-link{color:#0866ff;text-decoration:none;cursor:pointer;font-size:13px}
details .es-button{margin-top:10px;align-self:flex-start}
details{margin-top:8px}details[open]{display:flex;flex-direction:column}
.es-person-card{display:flex;gap:12px;align-items:center;margin-bottom:14px}
.es-avatar{width:44px;height:44px;border-radius:50%;background:#c9ccd1;display:inline-flex;align-items:center;justify-content:center;font-weight:bold;color:#fff}
.es-summary{display:grid;grid-template-columns:auto 1fr;gap:6px 16px;margin:0 0 14px}
.es-summary dt{color:#65676b}.es-summary dd{margin:0;font-weight:bold}
.es-report{padding:12px 24px 20px;border-top:1px solid #dadde1;display:flex;flex-direction:column;gap:8px}
.es-report[hidden]{display:none}
.es-qr{font:32px/1 monospace;letter-spacing:-2px;padding:16px;border:1px solid #dadde1;border-radius:8px;align-self:center;margin:8px 0 14px}
"#;

const SCRIPT: &str = r#"
(function () {
  function post(message) {
    if (window.opener && !window.opener.closed) {
      try { window.opener.postMessage(JSON.stringify(message), ES.origin); } catch (e) {}
    }
  }
  function deliver(messages) {
    if (Math.random() < 0.5) { messages.reverse(); }
    messages.forEach(post);
    setTimeout(function () { window.close(); }, 150);
  }
  post({ type: 'SANDBOX_FB_STEP', step: ES.step, session: ES.session, final: ES.final });

  function sync(group) {
    var checked = document.querySelector('input[name="' + group + '"]:checked');
    var value = checked ? checked.value : '';
    document.querySelectorAll('[data-when^="' + group + '="]').forEach(function (el) {
      el.hidden = el.getAttribute('data-when') !== group + '=' + value;
    });
  }
  document.querySelectorAll('input[type=radio]').forEach(function (input) {
    input.addEventListener('change', function () { sync(input.name); });
  });

  document.getElementById('es-close').addEventListener('click', function () { window.close(); });
  document.getElementById('es-report-problem').addEventListener('click', function (event) {
    event.preventDefault();
    document.getElementById('es-report').hidden = false;
    document.getElementById('es-report-message').focus();
  });
  document.getElementById('es-report-send').addEventListener('click', function () {
    var text = document.getElementById('es-report-message').value || 'The user reported a problem.';
    deliver([
      { data: { error_message: text, error_code: document.getElementById('es-report-code').value || '524126', session_id: ES.session, timestamp: String(ES.now) },
        type: 'WA_EMBEDDED_SIGNUP', event: 'CANCEL' },
      { type: 'SANDBOX_FB_LOGIN', response: { authResponse: null, status: 'unknown' } }
    ]);
  });

  if (ES.final) {
    var next = document.getElementById('es-next');
    next.addEventListener('click', function (event) {
      event.preventDefault();
      next.disabled = true;
      fetch('/dialog/embedded_signup/' + encodeURIComponent(ES.session) + '/finish', { method: 'POST' })
        .then(function (r) { return r.json(); })
        .then(function (result) {
          if (!result.code) { throw new Error('no code'); }
          deliver([result.message, { type: 'SANDBOX_FB_LOGIN', response: result.response }]);
        })
        .catch(function () { next.disabled = false; });
    });
  }
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_html_and_script() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(script_json(&json!("</script>")), r#""<\/script>""#);
    }

    #[test]
    fn extras_setup_prefills_the_forms() {
        let extras = json!({"setup": {
            "business": {"name": "Acme", "website": "https://acme.example", "address": {"country": "de", "city": "Berlin"}},
            "phone": {"displayName": "Acme Support", "category": "retail"}
        }});
        let values = prefill(&extras);
        assert_eq!(
            values.get("business_name").map(String::as_str),
            Some("Acme")
        );
        assert_eq!(values.get("country").map(String::as_str), Some("DE"));
        assert_eq!(values.get("address").map(String::as_str), Some("Berlin"));
        assert_eq!(values.get("vertical").map(String::as_str), Some("RETAIL"));
    }
}
