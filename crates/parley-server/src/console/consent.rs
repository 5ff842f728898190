//! `/settings/opt-out`: the application's opt-out keywords (one per line, any language) and the
//! confirmation reply, the console face of `GET/PUT /api/v1/settings/opt-out`.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{PageError, PageResult, SameOrigin, SignedIn, render, render_with};
use crate::AppState;

#[derive(Template)]
#[template(path = "opt_out.html")]
struct OptOutPage {
    active: &'static str,
    email: String,
    keywords: String,
    defaults: bool,
    reply: String,
    notice: Option<String>,
    error: Option<String>,
}

fn page_error(e: parley_engine::EngineError) -> PageError {
    PageError::Text(crate::error::status_of(&e), e.message)
}

/// `GET /settings/opt-out`
pub async fn opt_out_page(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
) -> PageResult {
    let v = state
        .engine
        .opt_out_settings(&app.id)
        .await
        .map_err(page_error)?;
    Ok(render(&OptOutPage {
        active: "settings",
        email,
        keywords: v.keywords.join("\n"),
        defaults: v.defaults,
        reply: v.reply.unwrap_or_default(),
        notice: None,
        error: None,
    }))
}

#[derive(Deserialize)]
pub struct OptOutForm {
    keywords: String,
    reply: String,
    /// Present when "Restore the defaults" was pressed.
    defaults: Option<String>,
}

/// `POST /settings/opt-out`
pub async fn save_opt_out(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Form(form): Form<OptOutForm>,
) -> PageResult {
    let keywords = form.defaults.is_none().then(|| {
        form.keywords
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    let reply = Some(form.reply.clone());
    match state
        .engine
        .set_opt_out_settings(&app.id, keywords, reply)
        .await
    {
        Ok(v) => Ok(render(&OptOutPage {
            active: "settings",
            email,
            keywords: v.keywords.join("\n"),
            defaults: v.defaults,
            reply: v.reply.unwrap_or_default(),
            notice: Some("Saved.".into()),
            error: None,
        })),
        Err(e) if e.kind == parley_engine::ErrorKind::BadRequest => Ok(render_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            &OptOutPage {
                active: "settings",
                email,
                keywords: form.keywords,
                defaults: false,
                reply: form.reply,
                notice: None,
                error: Some(e.message),
            },
        )),
        Err(e) => Err(page_error(e)),
    }
}
