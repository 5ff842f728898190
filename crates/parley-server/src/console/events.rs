//! `/settings/events`: the console face of `/api/v1/event-endpoints`: endpoints with their
//! state (a disabled one shows why), create (the secret shown once), enable, disable, rotate,
//! delete; one endpoint's deliveries with every attempt, replayed one by one or since a time.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::{PageError, PageResult, SameOrigin, SignedIn, render};
use crate::AppState;
use crate::routes::messages::rfc3339;
use parley_engine::events::{
    EVENT_TYPES, EndpointRequest, EndpointUpdate, delivery_id, endpoint_id,
};

struct Row {
    id: String,
    url: String,
    description: String,
    types: String,
    state: &'static str,
    enabled: bool,
    notice: String,
    failing: String,
}

struct Created {
    url: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    active: &'static str,
    email: String,
    rows: Vec<Row>,
    types: &'static [&'static str],
    created: Option<Created>,
    notice: Option<String>,
    error: Option<String>,
}

struct DeliveryRow {
    id: String,
    event_id: String,
    kind: String,
    created: String,
    state: String,
    attempts: Vec<String>,
}

#[derive(Template)]
#[template(path = "event_endpoint.html")]
struct EndpointPage {
    active: &'static str,
    email: String,
    id: String,
    url: String,
    state: &'static str,
    notice: String,
    flash: Option<String>,
    rows: Vec<DeliveryRow>,
    next: Option<String>,
}

fn page_error(e: parley_engine::EngineError) -> PageError {
    PageError::Text(crate::error::status_of(&e), e.message)
}

async fn events_page(
    state: &AppState,
    signed: SignedIn,
    created: Option<Created>,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let rows = state
        .engine
        .event_endpoints(&signed.app.id, None, 200)
        .await
        .map_err(page_error)?
        .into_iter()
        .map(|e| Row {
            id: e.id.to_string(),
            url: e.url,
            description: e.description,
            types: e.event_types.join(", "),
            state: if e.disabled_at.is_some() {
                "disabled"
            } else {
                "enabled"
            },
            enabled: e.disabled_at.is_none(),
            notice: e.disabled_reason.unwrap_or_default(),
            failing: e.failing_since.map(rfc3339).unwrap_or_default(),
        })
        .collect();
    Ok(render(&EventsPage {
        active: "settings",
        email: signed.email,
        rows,
        types: EVENT_TYPES,
        created,
        notice,
        error,
    }))
}

/// `GET /settings/events`
pub async fn list(State(state): State<AppState>, signed: SignedIn) -> PageResult {
    events_page(&state, signed, None, None, None).await
}

/// `POST /settings/events`: `url`, `description`, `type` (repeated).
pub async fn create(
    _: SameOrigin,
    State(state): State<AppState>,
    signed: SignedIn,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let request = EndpointRequest {
        url: field("url").unwrap_or_default(),
        description: field("description").filter(|d| !d.trim().is_empty()),
        event_types: form
            .iter()
            .filter(|(k, _)| k == "type")
            .map(|(_, v)| v.clone())
            .collect(),
    };
    match state
        .engine
        .create_event_endpoint(&signed.app.id, request)
        .await
    {
        Ok(c) => {
            let created = Created {
                url: c.endpoint.url.clone(),
                secret: c.secret,
            };
            events_page(&state, signed, Some(created), None, None).await
        }
        Err(e) if e.kind != parley_engine::ErrorKind::Internal => {
            events_page(&state, signed, None, None, Some(e.message)).await
        }
        Err(e) => Err(page_error(e)),
    }
}

/// `POST /settings/events/{id}/{action}`: `enable`, `disable`, `rotate`, `delete`, `replay`.
pub async fn action(
    _: SameOrigin,
    State(state): State<AppState>,
    signed: SignedIn,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> PageResult {
    let id = endpoint_id(&id).map_err(page_error)?;
    let app = signed.app.id.clone();
    let engine = &state.engine;
    let update = |enabled| EndpointUpdate {
        enabled: Some(enabled),
        ..EndpointUpdate::default()
    };
    let done = match action.as_str() {
        "enable" => engine
            .update_event_endpoint(&app, &id, update(true))
            .await
            .map(|_| "Enabled: pending deliveries resume.".to_owned()),
        "disable" => engine
            .update_event_endpoint(&app, &id, update(false))
            .await
            .map(|_| "Disabled.".to_owned()),
        "delete" => engine
            .delete_event_endpoint(&app, &id)
            .await
            .map(|_| "Deleted.".to_owned()),
        "rotate" => {
            let r = engine
                .rotate_event_endpoint_secret(&app, &id)
                .await
                .map_err(page_error)?;
            let created = Created {
                url: r.endpoint.url.clone(),
                secret: r.secret,
            };
            return events_page(&state, signed, Some(created), None, None).await;
        }
        "replay" => {
            let since = form
                .iter()
                .find(|(k, _)| k == "since")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            let Some(since) = local_time(since) else {
                return Err(PageError::Text(
                    axum::http::StatusCode::BAD_REQUEST,
                    "give the time to replay from".into(),
                ));
            };
            let page = engine
                .replay_event_range(&app, &id, since, engine.now().saturating_add(1), None)
                .await
                .map_err(page_error)?;
            let mut notice = format!("{} deliveries queued again.", page.replayed);
            if let Some((at, _)) = page.next {
                notice.push_str(&format!(
                    " The range holds more than {} events: replay again from {} to go on.",
                    parley_engine::events::MAX_REPLAY_EVENTS,
                    crate::routes::messages::rfc3339(at)
                ));
            }
            return endpoint_page(&state, signed, &id, None, Some(notice)).await;
        }
        _ => {
            return Err(PageError::Text(
                axum::http::StatusCode::NOT_FOUND,
                "no such action".into(),
            ));
        }
    };
    match done {
        Ok(n) => events_page(&state, signed, None, Some(n), None).await,
        Err(e) => Err(page_error(e)),
    }
}

/// `2026-12-06T13:00` (a `datetime-local` input, read as UTC) or RFC 3339.
fn local_time(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let rfc = time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(raw, &rfc) {
        return Some((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    time::PrimitiveDateTime::parse(raw, &fmt)
        .ok()
        .map(|t| (t.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

#[derive(Deserialize)]
pub struct PageQuery {
    after: Option<String>,
}

async fn endpoint_page(
    state: &AppState,
    signed: SignedIn,
    id: &parley_domain::EventEndpointId,
    after: Option<&str>,
    flash: Option<String>,
) -> PageResult {
    let app = &signed.app.id;
    let endpoint = state
        .engine
        .event_endpoint(app, id)
        .await
        .map_err(page_error)?;
    let after = after.map(delivery_id).transpose().map_err(page_error)?;
    let mut rows = state
        .engine
        .event_deliveries(app, id, after.as_ref(), 51)
        .await
        .map_err(page_error)?;
    let next = (rows.len() > 50).then(|| rows[49].id.to_string());
    rows.truncate(50);
    Ok(render(&EndpointPage {
        active: "settings",
        email: signed.email,
        id: id.to_string(),
        url: endpoint.url,
        state: if endpoint.disabled_at.is_some() {
            "disabled"
        } else {
            "enabled"
        },
        notice: endpoint.disabled_reason.unwrap_or_default(),
        flash,
        rows: rows
            .into_iter()
            .map(|d| DeliveryRow {
                id: d.id.to_string(),
                event_id: d.event_id.to_string(),
                kind: d.event_type,
                created: rfc3339(d.event_created_at),
                state: d.state,
                attempts: d
                    .attempt_log
                    .into_iter()
                    .map(|a| {
                        format!(
                            "{} — {} in {} ms{}",
                            rfc3339(a.at),
                            a.status_code
                                .map_or_else(|| "no answer".to_owned(), |c| format!("HTTP {c}")),
                            a.duration_ms,
                            a.error
                                .or(a.response)
                                .filter(|t| !t.is_empty())
                                .map(|t| format!(": {}", t.chars().take(200).collect::<String>()))
                                .unwrap_or_default()
                        )
                    })
                    .collect(),
            })
            .collect(),
        next,
    }))
}

/// `GET /settings/events/{id}`
pub async fn detail(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> PageResult {
    let id = endpoint_id(&id).map_err(page_error)?;
    endpoint_page(&state, signed, &id, q.after.as_deref(), None).await
}

/// `POST /settings/events/{id}/deliveries/{delivery}/replay`
pub async fn replay_delivery(
    _: SameOrigin,
    State(state): State<AppState>,
    signed: SignedIn,
    Path((id, delivery)): Path<(String, String)>,
) -> PageResult {
    let id = endpoint_id(&id).map_err(page_error)?;
    state
        .engine
        .replay_event_delivery(
            &signed.app.id,
            &id,
            &delivery_id(&delivery).map_err(page_error)?,
        )
        .await
        .map_err(page_error)?;
    endpoint_page(&state, signed, &id, None, Some("Queued again.".into())).await
}
