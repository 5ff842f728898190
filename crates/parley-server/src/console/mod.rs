//! The console: server-rendered HTML for people. Sign-in, the overview and messages live here;
//! the audience, campaign, platform and template pages in the submodules; every route is in
//! the server's one router table.
//!
//! Handlers are thin like the API's. A page takes [`SignedIn`] (no session: to the login page)
//! and fails with a [`PageError`]; the pages' scripts call JSON endpoints that take
//! [`SignedInJson`] and answer the API's [`ApiError`] shape. CSRF is kept out by
//! SameSite=Strict cookies plus an Origin check: [`SameOrigin`] on every form post,
//! [`SignedInJson`] on every script call.

pub mod access;
pub mod audience;
pub mod campaigns;
pub mod platforms;
pub mod templates;

use askama::Template;
use axum::Form;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use parley_domain::{MessageContent, MessageId, VariableSlot};
use parley_store::ApplicationRecord;
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::messages::rfc3339;
use crate::session::{COOKIE, Session, TTL_MS};

// --- Sessions and errors ----------------------------------------------------------------------

/// Why a page cannot be shown.
#[derive(Debug)]
pub enum PageError {
    /// No session: to the login page.
    SignedOut,
    /// A plain-text answer.
    Text(StatusCode, String),
    /// An HTML answer, already escaped.
    Html(StatusCode, String),
}

impl PageError {
    pub fn not_found(message: impl Into<String>) -> Self {
        PageError::Text(StatusCode::NOT_FOUND, message.into())
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        PageError::Text(StatusCode::UNPROCESSABLE_ENTITY, message.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignedOut => Redirect::to("/login").into_response(),
            PageError::Text(status, message) => (status, message).into_response(),
            PageError::Html(status, html) => (status, Html(html)).into_response(),
        }
    }
}

/// A page's answer.
pub type PageResult = Result<Response, PageError>;

/// The person signed in to a console page and their application.
pub struct SignedIn {
    pub email: String,
    pub app: ApplicationRecord,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let session = current_session(state, &parts.headers).ok_or(PageError::SignedOut)?;
        let app = application_of(state, &session)
            .await
            .ok_or_else(|| PageError::not_found("This account has no application.".to_owned()))?;
        crate::audit::ActorSlot::fill(parts, crate::audit::Actor::user(&session, &app.id));
        Ok(SignedIn {
            email: session.email,
            app,
        })
    }
}

/// The application behind a page script's JSON call. The call must come from this site (also
/// a GET) and carry a session; else 403 or 401 in the API's error shape.
pub struct SignedInJson(pub ApplicationRecord);

impl FromRequestParts<AppState> for SignedInJson {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !same_origin(state, &parts.headers) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_site",
                "This request came from another site and was refused.",
            ));
        }
        let session = current_session(state, &parts.headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "signed_out",
                "Your session ended; sign in again.",
            )
        })?;
        let app = application_of(state, &session).await.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_application",
                "This account has no application.",
            )
        })?;
        crate::audit::ActorSlot::fill(parts, crate::audit::Actor::user(&session, &app.id));
        Ok(SignedInJson(app))
    }
}

/// A form post from this site. Browsers send `Origin` (or at least `Referer`, and
/// `Sec-Fetch-Site`) on form posts; when present they must name this site's scheme, host and
/// port, else the post is refused (403).
pub struct SameOrigin;

impl FromRequestParts<AppState> for SameOrigin {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        if same_origin(state, &parts.headers) {
            Ok(SameOrigin)
        } else {
            Err(PageError::Text(
                StatusCode::FORBIDDEN,
                "This form was posted from another site and was refused.".to_owned(),
            ))
        }
    }
}

/// Whether a request comes from this site: `Origin` (else `Referer`) must have this site's
/// scheme, host and port. This site's scheme is https when Parley is configured for it
/// (`secure_cookies`) or a proxy says so (`X-Forwarded-Proto`, which a cross-site page
/// cannot set); its host and port are the `Host` header's. Requests naming neither (not from
/// a browser) pass; `Sec-Fetch-Site: cross-site` never does.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if header_str(header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|v| v == "cross-site")
    {
        return false;
    }
    let Some(claimed) = header_str(header::ORIGIN).or_else(|| header_str(header::REFERER)) else {
        return true;
    };
    let Some(host) = header_str(header::HOST) else {
        return false;
    };
    let forwarded_https = header_str(header::HeaderName::from_static("x-forwarded-proto"))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let scheme = if state.config.secure_cookies || forwarded_https {
        "https"
    } else {
        "http"
    };
    match (origin_of(claimed), origin_of(&format!("{scheme}://{host}"))) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => false,
    }
}

/// (scheme, host, port) of a URL or origin, lower-cased, with the scheme's default port.
fn origin_of(url: &str) -> Option<(String, String, u16)> {
    let uri: axum::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    Some((scheme, host, uri.port_u16().unwrap_or(default_port)))
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

fn current_session(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    let cookie = cookie_value(headers, COOKIE)?;
    state.config.session_key.verify(&cookie, state.engine.now())
}

async fn application_of(state: &AppState, session: &Session) -> Option<ApplicationRecord> {
    state
        .engine
        .account_application(&session.account)
        .await
        .ok()
        .flatten()
}

// --- What every page shares -------------------------------------------------------------------

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

/// A page with a status other than 200 (a form shown again with its errors).
fn render_with(status: StatusCode, t: &impl Template) -> Response {
    let mut resp = render(t);
    if resp.status().is_success() {
        *resp.status_mut() = status;
    }
    resp
}

/// Percent-encodes a query value.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A message in one line: the template with its body parameters, or the text's first `chars`.
fn message_summary(content: &MessageContent, chars: usize) -> String {
    match content {
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
        MessageContent::Text { body, .. } => body.chars().take(chars).collect(),
    }
}

/// Meta's error of a message, `code: message`.
fn message_error(code: Option<i64>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(c), Some(msg)) => format!("{c}: {msg}"),
        (Some(c), None) => c.to_string(),
        _ => String::new(),
    }
}

pub(crate) fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) const JS: &str = "application/javascript; charset=utf-8";
pub(crate) const CSS: &str = "text/css; charset=utf-8";

pub async fn stylesheet() -> Response {
    asset(CSS, include_str!("console.css"))
}

pub async fn templates_stylesheet() -> Response {
    asset(CSS, include_str!("templates.css"))
}

pub async fn audience_script() -> Response {
    asset(JS, include_str!("audience.js"))
}

pub async fn campaigns_script() -> Response {
    asset(JS, include_str!("campaigns.js"))
}

pub async fn platforms_script() -> Response {
    asset(JS, include_str!("platforms.js"))
}

pub async fn templates_script() -> Response {
    asset(JS, include_str!("templates.js"))
}

// --- Sign-in ----------------------------------------------------------------------------------

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

fn session_cookie(state: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

pub async fn login(
    _: SameOrigin,
    State(state): State<AppState>,
    Form(form): Form<LoginForm>,
) -> Response {
    let email = form.email.trim().to_lowercase();
    let Some(user) = state.engine.sign_in(&email, form.password).await else {
        return render_with(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                error: Some("Wrong email or password.".into()),
                email,
            },
        );
    };
    let session = Session {
        user: user.id,
        account: user.account_id,
        email: user.email,
        expires: state.engine.now() + TTL_MS,
    };
    let value = state.config.session_key.issue(&session);
    let mut resp = Redirect::to("/").into_response();
    if let Some(v) = session_cookie(&state, &value, TTL_MS / 1000) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

pub async fn logout(_: SameOrigin, State(state): State<AppState>) -> Response {
    let mut resp = Redirect::to("/login").into_response();
    if let Some(v) = session_cookie(&state, "", 0) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

// --- Overview ---------------------------------------------------------------------------------

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

pub async fn overview(
    State(state): State<AppState>,
    SignedIn { email, app }: SignedIn,
) -> Response {
    let engine = &state.engine;
    let platforms = engine.platforms(&app.id).await.unwrap_or_default();
    let numbers = engine.phone_numbers(&app.id).await.unwrap_or_default();
    let rows = numbers
        .into_iter()
        .map(|n| {
            let platform = platforms.iter().find(|p| p.id == n.platform_id);
            PlatformRow {
                waba: platform
                    .map(|p| p.waba_name.clone().unwrap_or_else(|| p.waba_id.to_string()))
                    .unwrap_or_default(),
                status: platform.map(|p| p.status.clone()).unwrap_or_default(),
                number: n.display_phone_number,
                verified_name: n.verified_name.unwrap_or_default(),
                quality: n.quality_rating.unwrap_or_default(),
                limit: n.messaging_limit.unwrap_or_default(),
                mps: n.throughput_mps,
            }
        })
        .collect();
    let templates = engine
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
    let contacts = engine.count_contacts(&app.id).await.unwrap_or(0);
    render(&OverviewPage {
        active: "overview",
        email,
        app_name: app.name,
        platforms: rows,
        templates,
        contacts,
    })
}

// --- Messages ---------------------------------------------------------------------------------

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

const MESSAGES_PAGE: u32 = 50;

pub async fn messages(
    State(state): State<AppState>,
    SignedIn { email, app }: SignedIn,
    Query(q): Query<PageQuery>,
) -> Response {
    let after = q.after.as_deref().and_then(|a| MessageId::parse(a).ok());
    let mut rows = state
        .engine
        .messages(&app.id, after.as_ref(), MESSAGES_PAGE + 1)
        .await
        .unwrap_or_default();
    let more = rows.len() > MESSAGES_PAGE as usize;
    rows.truncate(MESSAGES_PAGE as usize);
    let next = more
        .then(|| rows.last().map(|m| m.id.to_string()))
        .flatten();
    let messages = rows
        .into_iter()
        .map(|m| MessageRow {
            queued: rfc3339(m.queued_at),
            summary: message_summary(&m.content, 120),
            state: m.state.as_str().to_owned(),
            error: message_error(m.error_code, m.error_message.as_deref()),
            to: m.to_phone,
        })
        .collect();
    render(&MessagesPage {
        active: "messages",
        email,
        messages,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            query_value("city = \"Berlin\""),
            "city%20%3D%20%22Berlin%22"
        );
        assert_eq!(query_value("+4917"), "%2B4917");
    }
}
