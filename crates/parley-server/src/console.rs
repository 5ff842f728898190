//! The console: server-rendered HTML for people (sign-in, overview, messages). Handlers are
//! thin like the API's; CSRF is kept out by SameSite=Strict cookies plus an Origin check on
//! every POST.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use parley_domain::{MessageId, VariableSlot};
use parley_engine::auth::verify_password;
use parley_store::{ApplicationRecord, MessageContent};
use serde::Deserialize;

use crate::AppState;
use crate::routes::messages::rfc3339;
use crate::session::{COOKIE, Session, TTL_MS};

pub(crate) fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub(crate) fn current_session(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let cookie = cookie_value(headers, COOKIE)?;
    state.config.session_key.verify(&cookie, state.engine.now())
}

/// A POST from another site is refused: browsers send `Origin` (and `Sec-Fetch-Site`) on
/// form posts; when present they must name this host.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

pub(crate) fn forbidden_cross_site() -> Response {
    (
        StatusCode::FORBIDDEN,
        "This form was posted from another site and was refused.",
    )
        .into_response()
}

pub(crate) async fn application_of(
    state: &AppState,
    session: &Session,
) -> Option<ApplicationRecord> {
    state
        .engine
        .store
        .applications()
        .await
        .ok()?
        .into_iter()
        .find(|a| a.account_id == session.account)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
    email: String,
}

pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if current_session(&state, &headers).is_some() {
        return Redirect::to("/").into_response();
    }
    render(&LoginPage {
        error: None,
        email: String::new(),
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !same_origin(&headers) {
        return forbidden_cross_site();
    }
    let email = form.email.trim().to_lowercase();
    let user = state
        .engine
        .store
        .user_by_email(&email)
        .await
        .ok()
        .flatten();
    // Verify against a dummy hash when the user is unknown, so timing does not reveal it.
    let (hash, user) = match user {
        Some(u) => (u.password_hash.clone(), Some(u)),
        None => (dummy_hash(), None),
    };
    let ok = tokio::task::spawn_blocking(move || verify_password(&form.password, &hash))
        .await
        .unwrap_or(false);
    match (ok, user) {
        (true, Some(user)) => {
            let session = Session {
                user: user.id,
                account: user.account_id,
                email: user.email,
                expires: state.engine.now() + TTL_MS,
            };
            let value = state.config.session_key.issue(&session);
            let cookie = format!(
                "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                TTL_MS / 1000,
                if state.config.secure_cookies {
                    "; Secure"
                } else {
                    ""
                }
            );
            let mut resp = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        _ => {
            let mut resp = render(&LoginPage {
                error: Some("Wrong email or password.".into()),
                email,
            });
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            resp
        }
    }
}

/// An Argon2id hash of a random string, so refusing an unknown email costs what refusing a
/// wrong password costs and timing does not tell which emails exist.
fn dummy_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        parley_engine::auth::hash_password(&parley_engine::auth::generate_password())
            .unwrap_or_default()
    })
    .clone()
}

pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return forbidden_cross_site();
    }
    let mut resp = Redirect::to("/login").into_response();
    let cookie = format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if state.config.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

struct PlatformRow {
    waba: String,
    number: String,
    verified_name: String,
    status: String,
    quality: String,
    limit: String,
    mps: u32,
}

struct TemplateRow {
    name: String,
    language: String,
    category: String,
    status: String,
    variables: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    active: &'static str,
    email: String,
    app_name: String,
    platforms: Vec<PlatformRow>,
    templates: Vec<TemplateRow>,
    contacts: u64,
}

pub async fn overview(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = current_session(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let Some(app) = application_of(&state, &session).await else {
        return (StatusCode::NOT_FOUND, "This account has no application.").into_response();
    };
    let store = &state.engine.store;
    let platforms = store.platforms(&app.id).await.unwrap_or_default();
    let numbers = store.phone_numbers(&app.id).await.unwrap_or_default();
    let rows = numbers
        .into_iter()
        .map(|n| {
            let waba = platforms
                .iter()
                .find(|p| p.id == n.platform_id)
                .map(|p| p.waba_name.clone().unwrap_or_else(|| p.waba_id.clone()))
                .unwrap_or_default();
            let status = platforms
                .iter()
                .find(|p| p.id == n.platform_id)
                .map(|p| p.status.clone())
                .unwrap_or_default();
            PlatformRow {
                waba,
                number: n.display_phone_number,
                verified_name: n.verified_name.unwrap_or_default(),
                status,
                quality: n.quality_rating.unwrap_or_default(),
                limit: n.messaging_limit.unwrap_or_default(),
                mps: n.throughput_mps,
            }
        })
        .collect();
    let templates = store
        .templates(&app.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.deleted_at.is_none())
        .map(|t| TemplateRow {
            variables: t
                .template
                .variables()
                .iter()
                .map(|v: &VariableSlot| v.key.clone())
                .collect::<Vec<_>>()
                .join(", "),
            name: t.template.name.as_str().to_owned(),
            language: t.template.language.as_str().to_owned(),
            category: t.template.category.as_str().to_owned(),
            status: t.template.status.as_str().to_owned(),
        })
        .collect();
    let contacts = store.count_contacts(&app.id).await.unwrap_or(0);
    render(&OverviewPage {
        active: "overview",
        email: session.email,
        app_name: app.name,
        platforms: rows,
        templates,
        contacts,
    })
}

struct MessageRow {
    queued: String,
    to: String,
    summary: String,
    state: String,
    error: String,
}

#[derive(Template)]
#[template(path = "messages.html")]
struct MessagesPage {
    active: &'static str,
    email: String,
    messages: Vec<MessageRow>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct PageQuery {
    after: Option<String>,
}

const PAGE: u32 = 50;

pub async fn messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(session) = current_session(&state, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let Some(app) = application_of(&state, &session).await else {
        return (StatusCode::NOT_FOUND, "This account has no application.").into_response();
    };
    let after = q.after.as_deref().and_then(|a| MessageId::parse(a).ok());
    let mut rows = state
        .engine
        .store
        .messages(&app.id, after.as_ref(), PAGE + 1)
        .await
        .unwrap_or_default();
    let more = rows.len() > PAGE as usize;
    rows.truncate(PAGE as usize);
    let next = more
        .then(|| rows.last().map(|m| m.id.to_string()))
        .flatten();
    let messages = rows
        .into_iter()
        .map(|m| MessageRow {
            queued: rfc3339(m.queued_at),
            to: m.to_phone,
            summary: match &m.content {
                MessageContent::Template { template } => format!(
                    "{} ({}): {}",
                    template.name,
                    template.language,
                    template
                        .body
                        .iter()
                        .map(|p| p.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" · ")
                ),
                MessageContent::Text { body, .. } => body.chars().take(120).collect(),
            },
            state: m.state.as_str().to_owned(),
            error: match (m.error_code, m.error_message) {
                (Some(c), Some(msg)) => format!("{c}: {msg}"),
                (Some(c), None) => c.to_string(),
                _ => String::new(),
            },
        })
        .collect();
    render(&MessagesPage {
        active: "messages",
        email: session.email,
        messages,
        next,
    })
}

pub async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response()
}
