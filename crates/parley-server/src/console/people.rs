//! People in the console: first-run setup, sign-in (with the TOTP step and the throttle),
//! logout, invites, the application switcher, and the settings pages for users, applications
//! and "my account" (password, second factor, sessions). The rules are the engine's
//! (`parley_engine::identity`); the role each route needs is in `roles.rs`.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use parley_domain::{ApplicationId, Role, UserId};
use parley_engine::EngineError;
use parley_engine::identity::{Client, InviteView, IssuedSession, SignIn};
use serde::Deserialize;

use super::{SameOrigin, SignedIn, cookie_value, render, render_with};
use crate::AppState;
use crate::error::status_of;
use crate::session::{COOKIE, PENDING_COOKIE, cookie};

// --- Helpers ------------------------------------------------------------------------------------

/// The peer address of a request, when the server knows it.
pub struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| *a),
        ))
    }
}

/// Where a request comes from: the peer address (Parley does not trust `X-Forwarded-For`,
/// which any client can send) and the user agent.
fn client_of(headers: &HeaderMap, peer: Peer) -> Client {
    Client {
        address: peer.0.map(|a| a.ip().to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

fn set_cookie(resp: &mut Response, state: &AppState, name: &str, value: &str, max_age: i64) {
    if let Some(v) = cookie(name, value, max_age, state.config.secure_cookies) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Signs in: the session cookie and a redirect to the overview.
fn signed_in_response(state: &AppState, issued: &IssuedSession) -> Response {
    let mut resp = Redirect::to("/").into_response();
    let max_age = (issued.session.expires_at - issued.session.created_at) / 1000;
    set_cookie(&mut resp, state, COOKIE, &issued.token, max_age);
    set_cookie(&mut resp, state, PENDING_COOKIE, "", 0);
    resp
}

/// This site's origin as the browser sees it (for links shown to copy).
fn site_origin(state: &AppState, headers: &HeaderMap) -> String {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let scheme = if state.config.secure_cookies || forwarded_https {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    title: String,
    message: String,
    code: &'static str,
}

fn message_page(status: StatusCode, title: &str, message: &str, code: &'static str) -> Response {
    render_with(
        status,
        &MessagePage {
            title: title.to_owned(),
            message: message.to_owned(),
            code,
        },
    )
}

// --- Sign-in ------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
    email: String,
}

pub async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = cookie_value(&headers, COOKIE)
        && state
            .engine
            .session(&token)
            .await
            .is_some_and(|v| !v.session.second_factor)
    {
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
    _: SameOrigin,
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let client = client_of(&headers, peer);
    let email = form.email.trim().to_lowercase();
    match state.engine.sign_in(&email, form.password, &client).await {
        SignIn::Done(issued) => signed_in_response(&state, &issued),
        SignIn::SecondFactor(pending) => {
            let mut resp = Redirect::to("/login/code").into_response();
            let max_age = (pending.session.expires_at - pending.session.created_at) / 1000;
            set_cookie(&mut resp, &state, PENDING_COOKIE, &pending.token, max_age);
            resp
        }
        SignIn::Refused => render_with(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                error: Some("Wrong email or password.".into()),
                email: email.chars().take(254).collect(),
            },
        ),
        SignIn::Throttled { retry_after_ms } => {
            let secs = (retry_after_ms + 999) / 1000;
            let mut resp = render_with(
                StatusCode::TOO_MANY_REQUESTS,
                &LoginPage {
                    error: Some(format!(
                        "Too many sign-in attempts. Try again in {secs} second{}.",
                        if secs == 1 { "" } else { "s" }
                    )),
                    email: email.chars().take(254).collect(),
                },
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

#[derive(Template)]
#[template(path = "login_code.html")]
struct CodePage {
    error: Option<String>,
}

pub async fn code_page(headers: HeaderMap) -> Response {
    if cookie_value(&headers, PENDING_COOKIE).is_none_or(|c| c.is_empty()) {
        return Redirect::to("/login").into_response();
    }
    render(&CodePage { error: None })
}

#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
}

pub async fn code(
    _: SameOrigin,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let Some(pending) = cookie_value(&headers, PENDING_COOKIE).filter(|c| !c.is_empty()) else {
        return Redirect::to("/login").into_response();
    };
    match state
        .engine
        .complete_second_factor(&pending, &form.code)
        .await
    {
        Ok(issued) => signed_in_response(&state, &issued),
        Err(e) if e.code == "sign_in_again" => Redirect::to("/login").into_response(),
        Err(e) => {
            let status = if e.code == "wrong_code" {
                StatusCode::UNAUTHORIZED
            } else {
                status_of(&e)
            };
            let mut resp = render_with(
                status,
                &CodePage {
                    error: Some(e.message),
                },
            );
            if let Some(secs) = e.retry_after_secs {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
    }
}

/// Ends the session on the server (every node sees it gone) and clears the cookie.
pub async fn logout(_: SameOrigin, State(state): State<AppState>, headers: HeaderMap) -> Response {
    for name in [COOKIE, PENDING_COOKIE] {
        if let Some(token) = cookie_value(&headers, name).filter(|t| !t.is_empty()) {
            let _ = state.engine.end_session_by_token(&token).await;
        }
    }
    let mut resp = Redirect::to("/login").into_response();
    set_cookie(&mut resp, &state, COOKIE, "", 0);
    set_cookie(&mut resp, &state, PENDING_COOKIE, "", 0);
    resp
}

// --- First run ----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    token: String,
    error: Option<String>,
    email: String,
    account: String,
    application: String,
}

fn setup_gone() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Setup link not valid",
        "This setup link was used already or has expired. Restart `parley serve` on a database without users for a new one, or run `parley admin create-owner`.",
        "setup_link_used",
    )
}

pub async fn setup_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    if !state.engine.setup_link_valid(&token).await {
        return setup_gone();
    }
    render(&SetupPage {
        token,
        error: None,
        email: String::new(),
        account: String::new(),
        application: "Main".into(),
    })
}

#[derive(Deserialize)]
pub struct SetupForm {
    email: String,
    password: String,
    account: String,
    application: String,
}

pub async fn setup(
    _: SameOrigin,
    State(state): State<AppState>,
    Path(token): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> Response {
    let client = client_of(&headers, peer);
    match state
        .engine
        .complete_setup(
            &token,
            &form.email,
            form.password,
            &form.account,
            &form.application,
            &client,
        )
        .await
    {
        Ok(issued) => signed_in_response(&state, &issued),
        Err(e) if e.code == "setup_link_used" => setup_gone(),
        Err(e) => render_with(
            status_of(&e),
            &SetupPage {
                token,
                error: Some(e.message),
                email: form.email,
                account: form.account,
                application: form.application,
            },
        ),
    }
}

// --- Invites ------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "invite.html")]
struct InvitePage {
    token: String,
    email: String,
    role: String,
    application: String,
    new_user: bool,
    error: Option<String>,
}

fn invite_gone(e: &EngineError) -> Response {
    message_page(
        status_of(e),
        "Invite link not valid",
        &e.message,
        "invite_expired",
    )
}

pub async fn invite_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.engine.invite_view(&token).await {
        Ok(view) => render(&invite_page_of(token, view, None)),
        Err(e) => invite_gone(&e),
    }
}

fn invite_page_of(token: String, view: InviteView, error: Option<String>) -> InvitePage {
    let (email, role, application, new_user) = match view {
        InviteView::NewUser {
            email,
            role,
            application,
        } => (email, role, application, true),
        InviteView::ExistingUser {
            email,
            role,
            application,
        } => (email, role, application, false),
    };
    InvitePage {
        token,
        email,
        role: role.as_str().to_owned(),
        application,
        new_user,
        error,
    }
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    password: Option<String>,
}

pub async fn accept_invite(
    _: SameOrigin,
    State(state): State<AppState>,
    Path(token): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    Form(form): Form<InviteForm>,
) -> Response {
    let client = client_of(&headers, peer);
    match state
        .engine
        .accept_invite(&token, form.password, &client)
        .await
    {
        Ok(Some(issued)) => signed_in_response(&state, &issued),
        Ok(None) => Redirect::to("/login").into_response(),
        Err(e) if e.code == "invite_expired" => invite_gone(&e),
        Err(e) => match state.engine.invite_view(&token).await {
            Ok(view) => render_with(status_of(&e), &invite_page_of(token, view, Some(e.message))),
            Err(gone) => invite_gone(&gone),
        },
    }
}

// --- Application switcher and applications ------------------------------------------------------

#[derive(Deserialize)]
pub struct SwitchForm {
    application: String,
}

pub async fn switch_application(
    _: SameOrigin,
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<SwitchForm>,
) -> Response {
    let Ok(app) = ApplicationId::parse(form.application.trim()) else {
        return message_page(
            StatusCode::NOT_FOUND,
            "No such application",
            "You have no role in this application.",
            "application_not_found",
        );
    };
    match state
        .engine
        .switch_application(&me.session_id, &me.user_id, &app)
        .await
    {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => message_page(status_of(&e), "No such application", &e.message, e.code),
    }
}

struct AppRow {
    id: String,
    name: String,
    role: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "applications.html")]
struct ApplicationsPage {
    active: &'static str,
    email: String,
    apps: Vec<AppRow>,
    /// The next page's `after` (the last application's id).
    next: Option<String>,
    /// Whether the form to create an application is shown.
    admin: bool,
    error: Option<String>,
}

/// Applications per page of `/settings/applications`.
const APPLICATIONS_PAGE: u32 = 50;

async fn applications_view(
    state: &AppState,
    me: &SignedIn,
    after: Option<&str>,
    error: Option<String>,
) -> ApplicationsPage {
    let after = after.and_then(|a| ApplicationId::parse(a).ok());
    let mut rows = state
        .engine
        .user_applications(&me.user_id, after.as_ref(), APPLICATIONS_PAGE + 1)
        .await
        .unwrap_or_default();
    let next = super::next_page(&mut rows, APPLICATIONS_PAGE, |(a, _)| a.id.to_string());
    let apps = rows
        .into_iter()
        .map(|(a, role)| AppRow {
            current: a.id == me.app.id,
            id: a.id.to_string(),
            name: a.name,
            role: role.as_str().to_owned(),
        })
        .collect();
    ApplicationsPage {
        active: "settings",
        email: me.email.clone(),
        apps,
        next,
        admin: me.role.allows(Role::Admin),
        error,
    }
}

/// `GET /settings/applications?after=app_…`: the user's applications, a page at a time.
pub async fn applications_page(
    State(state): State<AppState>,
    me: SignedIn,
    Query(q): Query<super::PageQuery>,
) -> Response {
    render(&applications_view(&state, &me, q.after.as_deref(), None).await)
}

#[derive(Deserialize)]
pub struct NewApplicationForm {
    name: String,
}

/// Creates an application in the account and makes it the session's current one.
pub async fn create_application(
    _: SameOrigin,
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<NewApplicationForm>,
) -> Response {
    match state
        .engine
        .create_application(&me.actor(), &form.name)
        .await
    {
        Ok(app) => {
            let _ = state
                .engine
                .switch_application(&me.session_id, &me.user_id, &app.id)
                .await;
            Redirect::to("/settings/applications").into_response()
        }
        Err(e) => render_with(
            status_of(&e),
            &applications_view(&state, &me, None, Some(e.message)).await,
        ),
    }
}

// --- Users ----------------------------------------------------------------------------------------

struct MemberRow {
    user_id: String,
    email: String,
    role: String,
    /// The roles the list offers for this user: (role, selected).
    choices: Vec<(&'static str, bool)>,
    totp: bool,
    me: bool,
}

struct InviteRow {
    id: String,
    email: String,
    role: String,
    expires: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    active: &'static str,
    email: String,
    app_name: String,
    members: Vec<MemberRow>,
    invites: Vec<InviteRow>,
    /// Roles this user may give.
    roles: Vec<&'static str>,
    error: Option<String>,
    /// A new invite's link, shown once.
    link: Option<String>,
    /// The next page of users (`/settings/users?after=<email>`), when there is one.
    next: Option<String>,
    /// Whether this is a later page (a link back to the first).
    later: bool,
}

/// Users shown a page (an application has at most `MAX_PEOPLE`).
const USERS_PAGE: u32 = 100;

async fn users_view(
    state: &AppState,
    me: &SignedIn,
    after: Option<&str>,
    error: Option<String>,
    link: Option<String>,
) -> UsersPage {
    let mut rows = state
        .engine
        .members_page(&me.app.id, after, USERS_PAGE + 1)
        .await
        .unwrap_or_default();
    let next = super::next_page(&mut rows, USERS_PAGE, |m| m.email.clone())
        .map(|e| super::next_href("/settings/users", &[], "after", &e));
    let members = rows
        .into_iter()
        .map(|m| MemberRow {
            choices: Role::ALL
                .into_iter()
                .filter(|r| *r == m.role || me.role.may_manage(Some(m.role), Some(*r)))
                .map(|r| (r.as_str(), r == m.role))
                .collect(),
            me: m.user_id == me.user_id,
            user_id: m.user_id.to_string(),
            email: m.email,
            role: m.role.as_str().to_owned(),
            totp: m.totp_enabled,
        })
        .collect();
    let invites = state
        .engine
        .pending_invites(&me.app.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|i| InviteRow {
            id: i.id,
            email: i.email.unwrap_or_default(),
            role: i.role.map(Role::as_str).unwrap_or_default().to_owned(),
            expires: crate::routes::messages::rfc3339(i.expires_at),
        })
        .collect();
    UsersPage {
        active: "settings",
        email: me.email.clone(),
        app_name: me.app.name.clone(),
        members,
        invites,
        roles: Role::ALL
            .into_iter()
            .filter(|r| me.role.may_manage(None, Some(*r)))
            .map(Role::as_str)
            .collect(),
        error,
        link,
        next,
        later: after.is_some(),
    }
}

/// `GET /settings/users?after=<email>`: the application's users by email, a page at a time,
/// and its open invites.
pub async fn users_page(
    State(state): State<AppState>,
    me: SignedIn,
    Query(q): Query<super::PageQuery>,
) -> Response {
    render(&users_view(&state, &me, q.after.as_deref(), None, None).await)
}

#[derive(Deserialize)]
pub struct InviteUserForm {
    email: String,
    role: String,
}

fn parse_role(s: &str) -> Result<Role, EngineError> {
    Role::parse(s)
        .map_err(|e| EngineError::unprocessable("invalid_role", e.to_string()).field("role"))
}

pub async fn invite_user(
    _: SameOrigin,
    State(state): State<AppState>,
    headers: HeaderMap,
    me: SignedIn,
    Form(form): Form<InviteUserForm>,
) -> Response {
    let result = match parse_role(&form.role) {
        Ok(role) => state.engine.invite(&me.actor(), &form.email, role).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(invite) => {
            let link = format!("{}/invite/{}", site_origin(&state, &headers), invite.token);
            render(&users_view(&state, &me, None, None, Some(link)).await)
        }
        Err(e) => render_with(
            status_of(&e),
            &users_view(&state, &me, None, Some(e.message), None).await,
        ),
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

fn user_id_of(s: &str) -> Result<UserId, EngineError> {
    UserId::parse(s).map_err(|_| {
        EngineError::new(
            parley_engine::ErrorKind::NotFound,
            "user_not_found",
            "This user has no role in this application.",
        )
    })
}

pub async fn change_role(
    _: SameOrigin,
    State(state): State<AppState>,
    Path(user): Path<String>,
    me: SignedIn,
    Form(form): Form<RoleForm>,
) -> Response {
    let result = async {
        let user = user_id_of(&user)?;
        let role = parse_role(&form.role)?;
        state.engine.change_role(&me.actor(), &user, role).await
    }
    .await;
    users_after(&state, &me, result).await
}

pub async fn remove_user(
    _: SameOrigin,
    State(state): State<AppState>,
    Path(user): Path<String>,
    me: SignedIn,
) -> Response {
    let result = async {
        let user = user_id_of(&user)?;
        state.engine.remove_member(&me.actor(), &user).await
    }
    .await;
    users_after(&state, &me, result).await
}

pub async fn revoke_invite(
    _: SameOrigin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    me: SignedIn,
) -> Response {
    let result = state.engine.revoke_invite(&me.actor(), &id).await;
    users_after(&state, &me, result).await
}

async fn users_after(state: &AppState, me: &SignedIn, result: Result<(), EngineError>) -> Response {
    match result {
        Ok(()) => Redirect::to("/settings/users").into_response(),
        Err(e) => render_with(
            status_of(&e),
            &users_view(state, me, None, Some(e.message), None).await,
        ),
    }
}

// --- My account -----------------------------------------------------------------------------------

struct SessionRow {
    id: String,
    created: String,
    last_seen: String,
    client: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    active: &'static str,
    email: String,
    role: String,
    totp_enabled: bool,
    /// An enrolment started and not confirmed: the secret and the otpauth URI.
    enrolment: Option<(String, String)>,
    sessions: Vec<SessionRow>,
    error: Option<String>,
    notice: Option<String>,
}

async fn account_view(
    state: &AppState,
    me: &SignedIn,
    error: Option<String>,
    notice: Option<String>,
) -> AccountPage {
    let engine = &state.engine;
    let totp_enabled = engine
        .user(&me.user_id)
        .await
        .ok()
        .flatten()
        .is_some_and(|u| u.totp_enabled);
    let enrolment = if totp_enabled {
        None
    } else {
        engine
            .pending_totp(&me.user_id)
            .await
            .ok()
            .flatten()
            .map(|e| (e.secret, e.uri))
    };
    let sessions = engine
        .user_sessions(&me.user_id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| SessionRow {
            current: s.id == me.session_id,
            created: crate::routes::messages::rfc3339(s.created_at),
            last_seen: crate::routes::messages::rfc3339(s.last_seen_at),
            client: [s.address, s.user_agent]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · "),
            id: s.id,
        })
        .collect();
    AccountPage {
        active: "account",
        email: me.email.clone(),
        role: me.role.as_str().to_owned(),
        totp_enabled,
        enrolment,
        sessions,
        error,
        notice,
    }
}

pub async fn account_page(State(state): State<AppState>, me: SignedIn) -> Response {
    render(&account_view(&state, &me, None, None).await)
}

async fn account_after(
    state: &AppState,
    me: &SignedIn,
    result: Result<(), EngineError>,
    notice: &str,
) -> Response {
    match result {
        Ok(()) => render(&account_view(state, me, None, Some(notice.to_owned())).await),
        Err(e) => render_with(
            status_of(&e),
            &account_view(state, me, Some(e.message), None).await,
        ),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    new: String,
}

/// Changes the password; the user's other sessions end.
pub async fn change_password(
    _: SameOrigin,
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<PasswordForm>,
) -> Response {
    let result = state
        .engine
        .change_password(&me.user_id, &me.session_id, form.current, form.new)
        .await;
    account_after(
        &state,
        &me,
        result,
        "Your password was changed; your other sessions have ended.",
    )
    .await
}

pub async fn totp_start(_: SameOrigin, State(state): State<AppState>, me: SignedIn) -> Response {
    let result = state.engine.begin_totp(&me.user_id).await.map(|_| ());
    account_after(
        &state,
        &me,
        result,
        "Add this key to your authenticator app, then type the code it shows.",
    )
    .await
}

#[derive(Deserialize)]
pub struct TotpForm {
    code: String,
}

pub async fn totp_confirm(
    _: SameOrigin,
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<TotpForm>,
) -> Response {
    let result = state.engine.confirm_totp(&me.user_id, &form.code).await;
    account_after(
        &state,
        &me,
        result,
        "Two-step sign-in is on: sign-in asks for a code from now on.",
    )
    .await
}

pub async fn totp_disable(
    _: SameOrigin,
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<TotpForm>,
) -> Response {
    let result = state.engine.disable_totp(&me.user_id, &form.code).await;
    account_after(&state, &me, result, "Two-step sign-in is off.").await
}

pub async fn end_session(
    _: SameOrigin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    me: SignedIn,
) -> Response {
    let result = state.engine.end_user_session(&me.user_id, &id).await;
    if result.is_ok() && id == me.session_id {
        let mut resp = Redirect::to("/login").into_response();
        set_cookie(&mut resp, &state, COOKIE, "", 0);
        return resp;
    }
    account_after(&state, &me, result, "The session has ended.").await
}
