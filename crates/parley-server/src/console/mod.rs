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
pub mod charts;
pub mod consent;
pub mod dashboards;
pub mod events;
pub mod inbox;
pub mod meta_compare;
pub mod people;
pub mod platforms;
pub mod pricing;
pub mod roles;
pub mod templates;

use askama::Template;
use axum::extract::{FromRequestParts, MatchedPath, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use parley_domain::{
    AccountId, MessageContent, MessageId, PhoneNumberId, Role, UserId, VariableSlot,
};
use parley_engine::identity::Actor;
use parley_store::{ApplicationRecord, PlatformRecord};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::messages::rfc3339;
use crate::session::COOKIE;

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

/// The person signed in to a console page, in their current application (part of the
/// session: the application switcher changes it), with their role there. The route's
/// required role (`roles::required_role`) has been checked already.
pub struct SignedIn {
    pub user_id: UserId,
    pub account_id: AccountId,
    /// The current application (`app.id`).
    pub app: ApplicationRecord,
    pub role: Role,
    /// The session's public handle (`ses_…`), not its token.
    pub session_id: String,
    pub email: String,
}

impl SignedIn {
    /// The actor for the engine's checks.
    pub fn actor(&self) -> Actor {
        Actor {
            user: self.user_id.clone(),
            account: self.account_id.clone(),
            app: self.app.id.clone(),
            role: self.role,
        }
    }
}

/// Applications the navigation's switcher lists (every page reads them: bounded, the rest
/// are on `/settings/applications`).
pub const NAV_APPS: u32 = 20;

/// Why a signed-in request is refused.
enum Refusal {
    SignedOut,
    NoApplication,
    Role { needed: Role, have: Role },
}

/// The session behind the cookie, its current application and role, checked against the
/// route's required role. Fills the page's navigation (application switcher) for the
/// templates.
async fn signed_in(parts: &Parts, state: &AppState) -> Result<SignedIn, Refusal> {
    let token = cookie_value(&parts.headers, COOKIE).ok_or(Refusal::SignedOut)?;
    let view = state
        .engine
        .session(&token)
        .await
        .filter(|v| !v.session.second_factor)
        .ok_or(Refusal::SignedOut)?;
    // The switcher's first page (bounded), and the session's application looked up by its
    // key when it is not on that page.
    let user = &view.session.user_id;
    let mut apps = state
        .engine
        .user_applications(user, None, NAV_APPS + 1)
        .await
        .map_err(|_| Refusal::SignedOut)?;
    let more = apps.len() > NAV_APPS as usize;
    apps.truncate(NAV_APPS as usize);
    let chosen = match &view.session.application_id {
        Some(id) => match apps.iter().find(|(a, _)| &a.id == id) {
            Some(found) => Some(found.clone()),
            None => {
                let found = state
                    .engine
                    .user_application(user, id)
                    .await
                    .map_err(|_| Refusal::SignedOut)?;
                if let Some(found) = &found {
                    apps.push(found.clone());
                }
                found
            }
        },
        None => None,
    };
    let current = chosen
        .or_else(|| apps.first().cloned())
        .ok_or(Refusal::NoApplication)?;
    if view.session.application_id.as_ref() != Some(&current.0.id) {
        // The user lost their role in the session's application: the session moves on to one
        // they have.
        let _ = state
            .engine
            .switch_application(&view.session.id, &view.session.user_id, &current.0.id)
            .await;
    }
    let (app, role) = current;
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let needed = roles::required_role(&parts.method, &route);
    set_nav(Nav {
        apps: apps
            .iter()
            .map(|(a, _)| NavApp {
                id: a.id.to_string(),
                name: a.name.clone(),
                current: a.id == app.id,
            })
            .collect(),
        more,
        role: role.as_str(),
        admin: role.allows(Role::Admin),
    });
    if !role.allows(needed) {
        return Err(Refusal::Role { needed, have: role });
    }
    crate::audit::ActorSlot::fill(
        parts,
        crate::audit::Actor::user(&view.session.user_id, &view.email, &app.id),
    );
    Ok(SignedIn {
        user_id: view.session.user_id,
        account_id: view.account_id,
        app,
        role,
        session_id: view.session.id,
        email: view.email,
    })
}

/// The stable code of a refusal by role, in pages and JSON alike.
pub const INSUFFICIENT_ROLE: &str = "insufficient_role";

fn role_message(needed: Role, have: Role) -> String {
    format!("This needs the {needed} role in this application; yours is {have}.")
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        signed_in(parts, state).await.map_err(|r| match r {
            Refusal::SignedOut => PageError::SignedOut,
            Refusal::NoApplication => PageError::Html(
                StatusCode::FORBIDDEN,
                forbidden_page(
                    "no_application",
                    "You have no role in any application any more: ask an admin to invite you.",
                ),
            ),
            Refusal::Role { needed, have } => PageError::Html(
                StatusCode::FORBIDDEN,
                forbidden_page(INSUFFICIENT_ROLE, &role_message(needed, have)),
            ),
        })
    }
}

/// The 403 page: the message and its stable code.
fn forbidden_page(code: &str, message: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not allowed · Parley</title>\
         <link rel=\"stylesheet\" href=\"/console.css\"></head><body><main><section class=\"card narrow\">\
         <h1>Not allowed</h1><p class=\"error\" role=\"alert\" data-code=\"{}\">{}</p>\
         <p><a href=\"/\">Back to the overview</a></p></section></main></body></html>",
        escape_html(code),
        escape_html(message)
    )
}

/// The application behind a page script's JSON call. The call must come from this site (also
/// a GET) and carry a session whose role allows the route; else 403 or 401 in the API's error
/// shape.
pub struct SignedInJson(pub ApplicationRecord);

impl FromRequestParts<AppState> for SignedInJson {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        signed_in_json(parts, state)
            .await
            .map(|s| SignedInJson(s.app))
    }
}

/// Like [`SignedInJson`], with the whole signed-in person (their id and role): for script
/// calls whose meaning depends on who makes them (assign a conversation to myself).
pub struct SignedInJsonAs(pub SignedIn);

impl FromRequestParts<AppState> for SignedInJsonAs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        signed_in_json(parts, state).await.map(SignedInJsonAs)
    }
}

/// The checks of [`SignedInJson`]: same site, a session, the route's role.
async fn signed_in_json(parts: &Parts, state: &AppState) -> Result<SignedIn, ApiError> {
    if !same_origin(state, &parts.headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "This request came from another site and was refused.",
        ));
    }
    signed_in(parts, state).await.map_err(|r| match r {
        Refusal::SignedOut => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "signed_out",
            "Your session ended; sign in again.",
        ),
        Refusal::NoApplication => ApiError::new(
            StatusCode::FORBIDDEN,
            "no_application",
            "You have no role in any application any more: ask an admin to invite you.",
        ),
        Refusal::Role { needed, have } => ApiError::new(
            StatusCode::FORBIDDEN,
            INSUFFICIENT_ROLE,
            role_message(needed, have),
        ),
    })
}

// --- The navigation every page shows ----------------------------------------------------------

/// An application in the switcher.
#[derive(Clone, Debug)]
pub struct NavApp {
    pub id: String,
    pub name: String,
    pub current: bool,
}

/// What `nav.html` shows of the signed-in user beyond their email: the applications they can
/// switch to and their role. Set by `SignedIn` for the request being answered (a task-local
/// that `nav_scope` opens around every request), read by the template through [`nav`].
#[derive(Clone, Debug, Default)]
pub struct Nav {
    /// The first `NAV_APPS` of the user's applications, and the current one.
    pub apps: Vec<NavApp>,
    /// The user has more applications than the switcher shows (the rest are on
    /// `/settings/applications`, a page at a time).
    pub more: bool,
    pub role: &'static str,
    pub admin: bool,
}

tokio::task_local! {
    static NAV: std::cell::RefCell<Nav>;
}

fn set_nav(nav: Nav) {
    let _ = NAV.try_with(|n| *n.borrow_mut() = nav);
}

/// The navigation of the request being rendered (empty outside a request).
pub fn nav() -> Nav {
    NAV.try_with(|n| n.borrow().clone()).unwrap_or_default()
}

/// Middleware: gives each request its own navigation slot.
pub async fn nav_scope(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    NAV.scope(std::cell::RefCell::new(Nav::default()), next.run(req))
        .await
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
pub(crate) fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
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

pub(crate) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
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
pub(crate) fn render_with(status: StatusCode, t: &impl Template) -> Response {
    let mut resp = render(t);
    if resp.status().is_success() {
        *resp.status_mut() = status;
    }
    resp
}

/// Percent-encodes a query value.
pub(crate) fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn escape_html(s: &str) -> String {
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
        other => other
            .summary()
            .unwrap_or_default()
            .chars()
            .take(chars)
            .collect(),
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

pub async fn inbox_script() -> Response {
    asset(JS, include_str!("inbox.js"))
}

// --- Overview ---------------------------------------------------------------------------------

struct PlatformRow {
    id: String,
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
    d: dashboards::DashboardView,
    email: String,
    app_name: String,
    platforms: Vec<PlatformRow>,
    /// The numbers table's next page (a link keeping the dashboard's range).
    numbers_next: Option<String>,
    /// The first `OVERVIEW_TEMPLATES` templates (by name); the table links to all of them.
    templates: Vec<TemplateRow>,
    templates_total: usize,
    contacts: u64,
}

/// Templates the overview's table shows; `/templates` pages through all of them.
const OVERVIEW_TEMPLATES: usize = 20;

/// Numbers per page of the overview's table.
const NUMBERS_PAGE: u32 = 20;

/// `?numbers_after=…`: the overview's numbers table's next page (beside the dashboard's query).
#[derive(Deserialize)]
pub struct NumbersQuery {
    numbers_after: Option<String>,
}

/// `GET /?numbers_after=…`: the overview, its numbers a page at a time.
pub async fn overview(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<dashboards::DashQuery>,
    Query(nq): Query<NumbersQuery>,
) -> Response {
    let engine = &state.engine;
    // The overview is the dashboard of all messages (no subject pickers: `/dashboards` has
    // them).
    let q = dashboards::DashQuery {
        campaign: None,
        template: None,
        phone_number: None,
        ..q
    };
    let d = dashboards::dashboard(&state, &app.id, &q, "/", false).await;
    let after = nq
        .numbers_after
        .as_deref()
        .and_then(|a| PhoneNumberId::parse(a).ok());
    let mut numbers = engine
        .phone_numbers_page(&app.id, after.as_ref(), NUMBERS_PAGE + 1)
        .await
        .unwrap_or_default();
    let numbers_next = next_page(&mut numbers, NUMBERS_PAGE, |n| {
        n.phone_number_id.to_string()
    })
    .map(|n| {
        // The dashboard's range stays as it is.
        let kept = [
            ("range", q.range.as_deref()),
            ("from", q.from.as_deref()),
            ("to", q.to.as_deref()),
            ("interval", q.interval.as_deref()),
        ];
        next_href("/", &kept, "numbers_after", &n)
    });
    // The page's numbers' platforms, each read once (a page holds at most `NUMBERS_PAGE`).
    let mut platforms: Vec<PlatformRecord> = Vec::new();
    for n in &numbers {
        if !platforms.iter().any(|p| p.id == n.platform_id)
            && let Ok(Some(setup)) = engine.platform_setup(&app.id, &n.platform_id).await
        {
            platforms.push(setup.platform);
        }
    }
    let rows = numbers
        .into_iter()
        .map(|n| {
            let platform = platforms.iter().find(|p| p.id == n.platform_id);
            PlatformRow {
                id: n.phone_number_id.to_string(),
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
    let live: Vec<_> = engine
        .templates(&app.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.deleted_at.is_none())
        .collect();
    let templates_total = live.len();
    let templates = live
        .into_iter()
        .take(OVERVIEW_TEMPLATES)
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
        d,
        email,
        app_name: app.name,
        platforms: rows,
        numbers_next,
        templates,
        templates_total,
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

/// `?after=…`: the cursor of a console list's next page (the last row's key).
#[derive(Deserialize)]
pub struct PageQuery {
    pub after: Option<String>,
}

/// The link to a list's next page: `path` with the query's `kept` parameters (empty or absent
/// ones left out) and the cursor, every value encoded.
pub fn next_href(
    path: &str,
    kept: &[(&str, Option<&str>)],
    cursor_key: &str,
    cursor: &str,
) -> String {
    let mut href = format!("{path}?");
    for (key, value) in kept {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            href.push_str(&format!("{key}={}&", query_value(v)));
        }
    }
    href.push_str(&format!("{cursor_key}={}", query_value(cursor)));
    href
}

/// Cuts a console list read with `page + 1` rows down to `page`, and returns the next page's
/// `after` (the last shown row's key) when there was one more: how every console list pages.
pub fn next_page<T>(rows: &mut Vec<T>, page: u32, key: impl Fn(&T) -> String) -> Option<String> {
    let more = rows.len() > page as usize;
    rows.truncate(page as usize);
    if more { rows.last().map(key) } else { None }
}

const MESSAGES_PAGE: u32 = 50;

pub async fn messages(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<PageQuery>,
) -> Response {
    let after = q.after.as_deref().and_then(|a| MessageId::parse(a).ok());
    let mut rows = state
        .engine
        .messages(&app.id, after.as_ref(), MESSAGES_PAGE + 1)
        .await
        .unwrap_or_default();
    let next = next_page(&mut rows, MESSAGES_PAGE, |m| m.id.to_string());
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

/// An inbound message's stored media, to a signed-in user of the message's application
/// (anyone else: 404, as for a message that does not exist). Served with a sandboxing policy:
/// a customer's file must never run as the console's page; only images, audio and video show
/// inline, anything else downloads.
pub async fn inbound_media(
    State(state): State<AppState>,
    SignedIn { app, .. }: SignedIn,
    axum::extract::Path(wamid): axum::extract::Path<String>,
) -> Result<Response, PageError> {
    let (path, mime) = state
        .engine
        .inbound_media_file(&app.id, &wamid)
        .await
        .map_err(|e| PageError::Text(StatusCode::NOT_FOUND, e.message))?;
    let file = tokio::fs::File::open(&path).await.map_err(|_| {
        PageError::Text(
            StatusCode::NOT_FOUND,
            "the media file is no longer on disk".into(),
        )
    })?;
    let inline = ["image/", "audio/", "video/"]
        .iter()
        .any(|p| mime.starts_with(p))
        && mime != "image/svg+xml";
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let content_type = HeaderValue::from_str(&mime)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static(if inline { "inline" } else { "attachment" }),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox; default-src 'none'"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            ),
        ],
        body,
    )
        .into_response())
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
