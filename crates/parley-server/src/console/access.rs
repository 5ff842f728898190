//! Settings › API tokens (list, create with the secret shown once, revoke) and Settings › Audit
//! log (paged, newest first).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use parley_domain::{AuditEntryId, Scope, Scopes, TokenId};
use parley_engine::access::{TokenRequest, token_id};
use parley_store::ApplicationRecord;
use parley_store::access::TokenRecord;
use serde::Deserialize;

use super::{PageError, PageResult, SameOrigin, SignedIn, render, render_with};
use crate::AppState;
use crate::audit::AuditTarget;
use crate::routes::messages::rfc3339;

const PAGE: u32 = 50;

struct TokenRow {
    id: String,
    label: String,
    scopes: String,
    created: String,
    last_used: String,
    expires: String,
    revoked: String,
}

impl From<TokenRecord> for TokenRow {
    fn from(t: TokenRecord) -> Self {
        let when = |at: Option<i64>, none: &str| at.map_or_else(|| none.to_owned(), rfc3339);
        TokenRow {
            id: t.id.to_string(),
            label: t.label,
            scopes: t.scopes.names().join(", "),
            created: rfc3339(t.created_at),
            last_used: when(t.last_used_at, "never"),
            expires: when(t.expires_at, "never"),
            revoked: t.revoked_at.map(rfc3339).unwrap_or_default(),
        }
    }
}

struct Created {
    label: String,
    secret: String,
    scopes: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    active: &'static str,
    email: String,
    rows: Vec<TokenRow>,
    next: Option<String>,
    created: Option<Created>,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct AfterQuery {
    after: Option<String>,
    revoked: Option<String>,
}

async fn tokens_view(
    state: &AppState,
    app: &ApplicationRecord,
    email: String,
    after: Option<&str>,
) -> Result<TokensPage, PageError> {
    let after = after.and_then(|a| TokenId::parse(a).ok());
    let mut rows = state
        .engine
        .tokens(&app.id, after.as_ref(), PAGE + 1)
        .await
        .map_err(|e| PageError::Text(crate::error::status_of(&e), e.message))?;
    let next = super::next_page(&mut rows, PAGE, |t| t.id.to_string());
    Ok(TokensPage {
        active: "settings",
        email,
        rows: rows.into_iter().map(Into::into).collect(),
        next,
        created: None,
        notice: None,
        error: None,
    })
}

/// `GET /settings/tokens`
pub async fn tokens_page(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<AfterQuery>,
) -> PageResult {
    let mut page = tokens_view(&state, &app, email, q.after.as_deref()).await?;
    page.notice = q.revoked.map(|label| format!("Token “{label}” revoked."));
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct TokenForm {
    label: String,
    scope_send: Option<String>,
    scope_read: Option<String>,
    scope_manage: Option<String>,
    /// `YYYY-MM-DD`; the token expires at the end of that day (UTC).
    expires: Option<String>,
}

fn token_request(form: TokenForm) -> Result<TokenRequest, String> {
    let list: Vec<Scope> = [
        (form.scope_send.is_some(), Scope::Send),
        (form.scope_read.is_some(), Scope::Read),
        (form.scope_manage.is_some(), Scope::Manage),
    ]
    .into_iter()
    .filter_map(|(on, s)| on.then_some(s))
    .collect();
    let scopes = Scopes::from_list(&list).map_err(|e| e.to_string())?;
    let expires_at = match form.expires.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(day) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let date = time::Date::parse(day, &format)
                .map_err(|_| "The expiry date should look like 2027-01-31.".to_owned())?;
            let end = date
                .next_day()
                .ok_or_else(|| "That expiry date is too far away.".to_owned())?
                .midnight()
                .assume_utc();
            Some((end.unix_timestamp_nanos() / 1_000_000) as i64)
        }
    };
    Ok(TokenRequest {
        label: form.label,
        scopes,
        expires_at,
    })
}

/// `POST /settings/tokens`: create a token and show its secret on this page, once.
pub async fn create_token(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Form(form): Form<TokenForm>,
) -> PageResult {
    let outcome = match token_request(form) {
        Ok(request) => state
            .engine
            .create_token(&app.id, request)
            .await
            .map_err(|e| e.message),
        Err(message) => Err(message),
    };
    let mut page = tokens_view(&state, &app, email, None).await?;
    match outcome {
        Ok(created) => {
            let id = created.record.id.to_string();
            page.created = Some(Created {
                label: created.record.label.clone(),
                scopes: created.record.scopes.names().join(", "),
                secret: created.secret,
            });
            let mut resp = render_with(StatusCode::CREATED, &page);
            // The page holds a secret: not to be kept by any cache.
            resp.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            resp.extensions_mut().insert(AuditTarget(id));
            Ok(resp)
        }
        Err(message) => {
            page.error = Some(message);
            Ok(render_with(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

/// `POST /settings/tokens/{id}/revoke`
pub async fn revoke_token(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn { app, .. }: SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let revoked = state
        .engine
        .revoke_token(
            &app.id,
            &token_id(&id).map_err(|e| PageError::not_found(e.message))?,
        )
        .await
        .map_err(|e| PageError::Text(crate::error::status_of(&e), e.message))?;
    Ok(Redirect::to(&format!(
        "/settings/tokens?revoked={}",
        super::query_value(&revoked.label)
    ))
    .into_response())
}

struct AuditRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    address: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    active: &'static str,
    email: String,
    rows: Vec<AuditRow>,
    next: Option<String>,
    retention_days: u64,
}

/// `GET /settings/audit`
pub async fn audit_page(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<AfterQuery>,
) -> PageResult {
    let after = q.after.as_deref().and_then(|a| AuditEntryId::parse(a).ok());
    let mut rows = state
        .engine
        .audit_entries(&app.id, after.as_ref(), PAGE + 1)
        .await
        .map_err(|e| PageError::Text(crate::error::status_of(&e), e.message))?;
    let next = super::next_page(&mut rows, PAGE, |e| e.id.to_string());
    let rows = rows
        .into_iter()
        .map(|e| AuditRow {
            at: rfc3339(e.at),
            actor: format!("{} ({})", e.actor_label, e.actor_kind.as_str()),
            action: e.action,
            target: e.target.unwrap_or_default(),
            address: e.address.unwrap_or_default(),
        })
        .collect();
    Ok(render(&AuditPage {
        active: "settings",
        email,
        rows,
        next,
        retention_days: state.engine.config.audit_retention.as_secs() / 86_400,
    }))
}
