//! The console's audience pages: Contacts (search, a segment filter with its live count, pages,
//! a contact's tags, subscription history and messages), Segments (saved segments with live
//! counts, create with a live count and sample) and Import (upload a CSV or NDJSON file, map
//! each column to a field or a typed tag, preview the first rows, then follow the streamed
//! import's progress without a reload). Own JavaScript only (`/console/audience.js`).

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use parley_domain::{Segment, TagValue};
use parley_engine::audience::{ColumnMap, ImportFormat, ImportOptions, preview_import};
use parley_store::audience::{AudienceContact, ContactUpsert};
use parley_store::{ApplicationRecord, MessageContent};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::console::{application_of, current_session, forbidden_cross_site, render, same_origin};
use crate::routes::contacts::{ImportView, rejected_csv_response};
use crate::routes::messages::rfc3339;

/// Contacts per console page.
const PAGE: u32 = 50;
/// Rows shown in an import preview.
const PREVIEW_ROWS: usize = 10;
/// Bytes of the file's head the import preview reads.
pub const PREVIEW_BYTES: usize = 64 * 1024;

/// The console's audience routes (merged into the server's router).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/contacts", get(contacts_page))
        .route("/contacts/count", post(count))
        .route("/contacts/{phone}", get(contact_page))
        .route("/segments", get(segments_page).post(create_segment))
        .route("/import", get(import_page))
        .route("/import/preview", post(import_preview))
        .route(
            "/import/upload",
            post(import_upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/import/{id}/progress", get(import_progress))
        .route("/import/{id}/rejected.csv", get(import_rejected))
        .route("/console/audience.js", get(script))
}

async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, ApplicationRecord), Response> {
    let Some(session) = current_session(state, headers) else {
        return Err(Redirect::to("/login").into_response());
    };
    let Some(app) = application_of(state, &session).await else {
        return Err((StatusCode::NOT_FOUND, "This account has no application.").into_response());
    };
    Ok((session.email, app))
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// For the pages' scripts: same origin (also on GETs that the scripts make) and a session.
async fn signed_in_json(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<ApplicationRecord, Response> {
    if !same_origin(headers) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "cross_site",
            "This request came from another site and was refused.",
        ));
    }
    let Some(session) = current_session(state, headers) else {
        return Err(json_error(
            StatusCode::UNAUTHORIZED,
            "signed_out",
            "Your session ended; sign in again.",
        ));
    };
    application_of(state, &session).await.ok_or_else(|| {
        json_error(
            StatusCode::NOT_FOUND,
            "no_application",
            "This account has no application.",
        )
    })
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn tag_text(v: &TagValue) -> String {
    match v {
        TagValue::List(items) => items.join("; "),
        other => other.to_string(),
    }
}

fn tags_summary(c: &AudienceContact) -> String {
    c.contact
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={}", tag_text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

// --- Contacts ---------------------------------------------------------------------------------

struct ContactRow {
    phone: String,
    name: String,
    subscription: String,
    tags: String,
    updated: String,
}

impl From<&AudienceContact> for ContactRow {
    fn from(c: &AudienceContact) -> Self {
        ContactRow {
            phone: c.contact.phone.clone(),
            name: c.contact.name.clone().unwrap_or_default(),
            subscription: c.subscription.as_str().to_owned(),
            tags: tags_summary(c),
            updated: rfc3339(c.contact.updated_at),
        }
    }
}

#[derive(Template)]
#[template(path = "contacts.html")]
struct ContactsPage {
    active: &'static str,
    email: String,
    search: String,
    filter: String,
    error: Option<String>,
    count: Option<u64>,
    rows: Vec<ContactRow>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ContactsQuery {
    search: Option<String>,
    filter: Option<String>,
    after: Option<String>,
}

/// `GET /contacts`.
pub async fn contacts_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ContactsQuery>,
) -> Response {
    let (email, app) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let search = q.search.unwrap_or_default().trim().to_owned();
    let filter = q.filter.unwrap_or_default().trim().to_owned();
    let engine = &state.engine;
    let mut page = ContactsPage {
        active: "contacts",
        email,
        search: search.clone(),
        filter: filter.clone(),
        error: None,
        count: None,
        rows: Vec::new(),
        next: None,
    };
    let segment = if filter.is_empty() {
        Ok(Segment::all())
    } else {
        engine.parse_segment(&filter)
    };
    match segment {
        Err(f) => page.error = Some(f.message),
        Ok(segment) => {
            page.count = engine
                .preview_segment(&app.id, &segment, 0)
                .await
                .ok()
                .map(|p| p.count);
            match engine
                .list_contacts(
                    &app.id,
                    Some(&filter),
                    Some(&search).filter(|s| !s.is_empty()).map(String::as_str),
                    q.after.as_deref().filter(|a| !a.is_empty()),
                    PAGE,
                )
                .await
            {
                Ok((rows, next)) => {
                    page.rows = rows.iter().map(Into::into).collect();
                    page.next = next.map(|n| {
                        format!(
                            "/contacts?search={}&filter={}&after={}",
                            enc(&search),
                            enc(&filter),
                            enc(&n)
                        )
                    });
                }
                Err(f) => page.error = Some(f.message),
            }
        }
    }
    render(&page)
}

#[derive(Deserialize)]
pub struct CountBody {
    filter: String,
    #[serde(default)]
    sample: u32,
}

/// `POST /contacts/count`: the live count (and a sample) of a filter, or where it fails to
/// parse.
pub async fn count(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let app = match signed_in_json(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(body) = serde_json::from_slice::<CountBody>(&body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "expected {\"filter\"}",
        );
    };
    let filter = body.filter.trim();
    let segment = if filter.is_empty() {
        Segment::all()
    } else {
        match Segment::parse(filter) {
            Ok(s) => s,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": {
                        "code": "invalid_segment",
                        "message": format!("The filter does not parse {e}"),
                        "position": e.position,
                    }})),
                )
                    .into_response();
            }
        }
    };
    match state
        .engine
        .preview_segment(&app.id, &segment, body.sample.min(20))
        .await
    {
        Ok(p) => axum::Json(json!({
            "count": p.count,
            "sample": p.sample.iter().map(|c| json!({
                "phone": c.contact.phone,
                "name": c.contact.name,
                "tags": tags_summary(c),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(f) => crate::error::ApiError::from(f).into_response(),
    }
}

struct TagRow {
    name: String,
    kind: &'static str,
    value: String,
}

struct HistoryRow {
    at: String,
    state: String,
    source: String,
    note: String,
}

struct MessageRow {
    queued: String,
    state: String,
    summary: String,
    error: String,
}

#[derive(Template)]
#[template(path = "contact_detail.html")]
struct ContactPage {
    active: &'static str,
    email: String,
    phone: String,
    name: String,
    wa_id: String,
    locale: String,
    timezone: String,
    created: String,
    updated: String,
    last_inbound: String,
    subscription: String,
    subscription_source: String,
    subscription_at: String,
    tags: Vec<TagRow>,
    history: Vec<HistoryRow>,
    messages: Vec<MessageRow>,
}

fn summary(content: &MessageContent) -> String {
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
        MessageContent::Text { body, .. } => body.chars().take(160).collect(),
    }
}

/// `GET /contacts/{phone}`.
pub async fn contact_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(phone): Path<String>,
) -> Response {
    let (email, app) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let d = match state.engine.contact_detail(&app.id, &phone).await {
        Ok(d) => d,
        Err(f) => {
            return (
                StatusCode::NOT_FOUND,
                axum::response::Html(format!(
                    "<p>{}</p><p><a href=\"/contacts\">← Contacts</a></p>",
                    askama_escape(&f.message)
                )),
            )
                .into_response();
        }
    };
    let c = &d.contact;
    render(&ContactPage {
        active: "contacts",
        email,
        phone: c.contact.phone.clone(),
        name: c.contact.name.clone().unwrap_or_default(),
        wa_id: c.contact.wa_id.clone().unwrap_or_default(),
        locale: c.locale.clone().unwrap_or_default(),
        timezone: c.timezone.clone().unwrap_or_default(),
        created: rfc3339(c.contact.created_at),
        updated: rfc3339(c.contact.updated_at),
        last_inbound: c.contact.last_inbound_at.map(rfc3339).unwrap_or_default(),
        subscription: c.subscription.as_str().to_owned(),
        subscription_source: c.subscription_source.clone().unwrap_or_default(),
        subscription_at: c.subscription_at.map(rfc3339).unwrap_or_default(),
        tags: c
            .contact
            .tags
            .iter()
            .map(|(k, v)| TagRow {
                name: k.clone(),
                kind: v.type_name(),
                value: tag_text(v),
            })
            .collect(),
        history: d
            .history
            .iter()
            .map(|e| HistoryRow {
                at: rfc3339(e.at),
                state: e.state.as_str().to_owned(),
                source: e.source.clone(),
                note: e.note.clone().unwrap_or_default(),
            })
            .collect(),
        messages: d
            .messages
            .iter()
            .map(|m| MessageRow {
                queued: rfc3339(m.queued_at),
                state: m.state.as_str().to_owned(),
                summary: summary(&m.content),
                error: match (m.error_code, &m.error_message) {
                    (Some(c), Some(msg)) => format!("{c}: {msg}"),
                    (Some(c), None) => c.to_string(),
                    _ => String::new(),
                },
            })
            .collect(),
    })
}

fn askama_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

// --- Segments ---------------------------------------------------------------------------------

struct SegmentRow {
    link: String,
    name: String,
    filter: String,
    count: String,
    created: String,
}

#[derive(Template)]
#[template(path = "segments.html")]
struct SegmentsPage {
    active: &'static str,
    email: String,
    rows: Vec<SegmentRow>,
    name: String,
    filter: String,
    error: Option<String>,
    notice: Option<String>,
}

async fn segments_view(state: &AppState, app: &ApplicationRecord, email: String) -> SegmentsPage {
    let engine = &state.engine;
    let mut rows = Vec::new();
    for s in engine.store.segments(&app.id).await.unwrap_or_default() {
        let count = match engine.parse_segment(&s.filter) {
            Ok(seg) => engine
                .preview_segment(&app.id, &seg, 0)
                .await
                .map(|p| p.count.to_string())
                .unwrap_or_else(|f| f.message),
            Err(f) => f.message,
        };
        rows.push(SegmentRow {
            link: format!("/contacts?filter={}", enc(&s.filter)),
            name: s.name,
            filter: s.filter,
            count,
            created: rfc3339(s.created_at),
        });
    }
    SegmentsPage {
        active: "segments",
        email,
        rows,
        name: String::new(),
        filter: String::new(),
        error: None,
        notice: None,
    }
}

#[derive(Deserialize, Default)]
pub struct SegmentsQuery {
    created: Option<String>,
}

/// `GET /segments`.
pub async fn segments_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<SegmentsQuery>,
) -> Response {
    let (email, app) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut page = segments_view(&state, &app, email).await;
    page.notice = q.created.map(|n| format!("Segment “{n}” saved."));
    render(&page)
}

#[derive(Deserialize)]
pub struct SegmentForm {
    name: String,
    filter: String,
}

/// `POST /segments`: save a segment, or show why not.
pub async fn create_segment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SegmentForm>,
) -> Response {
    if !same_origin(&headers) {
        return forbidden_cross_site();
    }
    let (email, app) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match state
        .engine
        .create_segment(&app.id, &form.name, &form.filter)
        .await
    {
        Ok(s) => Redirect::to(&format!("/segments?created={}", enc(&s.name))).into_response(),
        Err(f) => {
            let mut page = segments_view(&state, &app, email).await;
            page.name = form.name;
            page.filter = form.filter;
            page.error = Some(f.message);
            let mut resp = render(&page);
            *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            resp
        }
    }
}

// --- Import -----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    active: &'static str,
    email: String,
    preview_bytes: usize,
}

/// `GET /import`.
pub async fn import_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (email, _) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    render(&ImportPage {
        active: "import",
        email,
        preview_bytes: PREVIEW_BYTES,
    })
}

/// Reads `format`, each `map=column:tag:type` (one per parameter: column names may hold
/// commas) and `complete` from the query.
fn options_of(pairs: &[(String, String)]) -> Result<(ImportOptions, bool), String> {
    let mut format = ImportFormat::Csv;
    let mut columns = Vec::new();
    let mut complete = false;
    for (k, v) in pairs {
        match k.as_str() {
            "format" => {
                format = ImportFormat::parse(v)
                    .ok_or_else(|| format!("format `{v}` is not csv or ndjson"))?;
            }
            "map" => columns.push(ColumnMap::parse(v)?),
            "complete" => complete = v == "1" || v == "true",
            _ => {}
        }
    }
    Ok((ImportOptions { format, columns }, complete))
}

fn upsert_json(row: &ContactUpsert) -> Value {
    json!({
        "phone": row.phone,
        "name": row.name,
        "locale": row.locale,
        "timezone": row.timezone,
        "subscription": row.subscription.as_ref().map(|s| s.state.as_str()),
        "tags": row.tags.iter().filter_map(|(k, v)| v.as_ref().map(|v| json!({
            "name": k, "type": v.type_name(), "value": tag_text(v),
        }))).collect::<Vec<_>>(),
    })
}

/// `POST /import/preview?format&map…&complete`: the body is the head of the file; answers the
/// header's columns and what the first rows would import.
pub async fn import_preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    if let Err(r) = signed_in_json(&state, &headers).await {
        return r;
    }
    let (options, complete) = match options_of(&pairs) {
        Ok(v) => v,
        Err(m) => return json_error(StatusCode::BAD_REQUEST, "invalid_mapping", &m),
    };
    let head = &body[..body.len().min(PREVIEW_BYTES)];
    let p = preview_import(&options, head, complete, PREVIEW_ROWS);
    axum::Json(json!({
        "columns": p.columns,
        "rows": p.rows.iter().map(|r| match &r.outcome {
            Ok(row) => json!({"line": r.line, "contact": upsert_json(row)}),
            Err(reason) => json!({"line": r.line, "error": reason}),
        }).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// `POST /import/upload?format&map…`: the file as the body, read as a stream by the engine's
/// import; answers the job id at once.
pub async fn import_upload(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
    body: Body,
) -> Response {
    let app = match signed_in_json(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (options, _) = match options_of(&pairs) {
        Ok(v) => v,
        Err(m) => return json_error(StatusCode::BAD_REQUEST, "invalid_mapping", &m),
    };
    match state
        .engine
        .start_import(&app.id, options, body.into_data_stream())
        .await
    {
        Ok(id) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"job_id": id.to_string()})),
        )
            .into_response(),
        Err(f) => crate::error::ApiError::from(f).into_response(),
    }
}

/// `GET /import/{id}/progress`: the job, polled by the page.
pub async fn import_progress(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let app = match signed_in_json(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match state.engine.import_job(&app.id, &id).await {
        Ok(job) => {
            let mut resp = axum::Json(ImportView::from(&job)).into_response();
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err(f) => crate::error::ApiError::from(f).into_response(),
    }
}

/// `GET /import/{id}/rejected.csv`.
pub async fn import_rejected(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (_, app) = match signed_in(&state, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let job = match state.engine.import_job(&app.id, &id).await {
        Ok(j) => j,
        Err(f) => return crate::error::ApiError::from(f).into_response(),
    };
    match rejected_csv_response(&state, &app.id, &job).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

pub async fn script() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("console_audience.js"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(enc("city = \"Berlin\""), "city%20%3D%20%22Berlin%22");
        assert_eq!(enc("+4917"), "%2B4917");
    }

    #[test]
    fn mappings_keep_commas_in_column_names() {
        let (o, complete) = options_of(&[
            ("map".into(), "Phone, mobile:phone:string".into()),
            ("map".into(), "Visits:visits:integer".into()),
            ("complete".into(), "1".into()),
        ])
        .unwrap();
        assert!(complete);
        assert_eq!(o.columns[0].column, "Phone, mobile");
        assert_eq!(o.columns[1].tag, "visits");
        assert!(options_of(&[("map".into(), "a:b:wat".into())]).is_err());
    }
}
