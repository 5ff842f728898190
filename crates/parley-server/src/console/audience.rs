//! The console's audience pages: Contacts (search, a segment filter with its live count, pages,
//! a contact's tags, subscription history and messages), Segments (saved segments with live
//! counts, create with a live count and sample) and Import (upload a CSV or NDJSON file, map
//! each column to a field or a typed tag, preview the first rows, then follow the streamed
//! import's progress without a reload). Own JavaScript only (`/console/audience.js`).

use askama::Template;
use axum::Form;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use parley_domain::{Segment, TagValue};
use parley_engine::audience::import_id;
use parley_engine::audience::{ImportFormat, ImportOptions, preview_import};
use parley_engine::import_file::is_zip;
use parley_store::ApplicationRecord;
use parley_store::audience::{AudienceContact, ContactUpsert};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    PageError, PageResult, SameOrigin, SignedIn, SignedInJson, escape_html, message_error,
    message_summary, query_value, render, render_with,
};
use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::routes::contacts::{ImportView, Mappings, import_options, rejected_csv_response};
use crate::routes::messages::rfc3339;
use crate::routes::segments::PreviewBody;

/// Contacts per console page.
const PAGE: u32 = 50;
/// Rows shown in an import preview.
const PREVIEW_ROWS: usize = 10;
/// Bytes of the file's head the import preview reads.
pub const PREVIEW_BYTES: usize = 64 * 1024;

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
            name: c
                .contact
                .name
                .clone()
                .or_else(|| c.contact.username.clone())
                .unwrap_or_default(),
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
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<ContactsQuery>,
) -> Response {
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
                            query_value(&search),
                            query_value(&filter),
                            query_value(&n)
                        )
                    });
                }
                Err(f) => page.error = Some(f.message),
            }
        }
    }
    render(&page)
}

/// `POST /contacts/count` (the API's segment preview body): the live count (and a sample) of a
/// filter, or where it fails to parse. An empty filter counts everyone.
pub async fn count(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    ApiJson(body): ApiJson<PreviewBody>,
) -> Result<Response, ApiError> {
    let filter = body.filter.trim();
    let segment = if filter.is_empty() {
        Segment::all()
    } else {
        state.engine.parse_segment(filter)?
    };
    let p = state
        .engine
        .preview_segment(&app.id, &segment, body.sample.unwrap_or(0).min(20))
        .await?;
    Ok(axum::Json(json!({
        "count": p.count,
        "sample": p.sample.iter().map(|c| json!({
            "phone": c.contact.phone,
            "name": c.contact.name,
            "tags": tags_summary(c),
        })).collect::<Vec<_>>(),
    }))
    .into_response())
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

/// A message of the WhatsApp Business app: imported history or an echo.
struct AppMessageRow {
    at: String,
    direction: String,
    label: String,
    text: String,
    history_status: String,
}

#[derive(Template)]
#[template(path = "contact_detail.html")]
struct ContactPage {
    active: &'static str,
    email: String,
    phone: String,
    /// Every identity Meta knows the person by (META_2026 §3.8); empty when unknown.
    phone_number: String,
    bsuid: String,
    parent_bsuid: String,
    username: String,
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
    app_messages: Vec<AppMessageRow>,
}

/// `GET /contacts/{phone}`.
pub async fn contact_page(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Path(phone): Path<String>,
) -> PageResult {
    let d = state
        .engine
        .contact_detail(&app.id, &phone)
        .await
        .map_err(|f| {
            PageError::Html(
                StatusCode::NOT_FOUND,
                format!(
                    "<p>{}</p><p><a href=\"/contacts\">← Contacts</a></p>",
                    escape_html(&f.message)
                ),
            )
        })?;
    let c = &d.contact;
    Ok(render(&ContactPage {
        active: "contacts",
        email,
        phone: c.contact.phone.clone(),
        phone_number: c.contact.phone_number().unwrap_or_default().to_owned(),
        bsuid: c.contact.bsuid.clone().unwrap_or_default(),
        parent_bsuid: c.contact.parent_bsuid.clone().unwrap_or_default(),
        username: c.contact.username.clone().unwrap_or_default(),
        name: c.contact.name.clone().unwrap_or_default(),
        wa_id: c
            .contact
            .wa_id
            .clone()
            .map(String::from)
            .unwrap_or_default(),
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
                summary: message_summary(&m.content, 160),
                error: message_error(m.error_code, m.error_message.as_deref()),
            })
            .collect(),
        app_messages: d
            .app_messages
            .iter()
            .map(|m| AppMessageRow {
                at: rfc3339(m.sent_at),
                direction: if m.direction == "outbound" {
                    "to the contact".into()
                } else {
                    "from the contact".into()
                },
                label: if m.source == "history" {
                    "imported from WhatsApp Business app".into()
                } else {
                    "sent from WhatsApp Business app".into()
                },
                text: m.text.clone().unwrap_or_else(|| format!("[{}]", m.kind)),
                history_status: m.history_status.clone().unwrap_or_default(),
            })
            .collect(),
    }))
}

// --- Segments ---------------------------------------------------------------------------------

struct SegmentRow {
    id: String,
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
    /// The next page's link, when there are more segments.
    next: Option<String>,
    name: String,
    filter: String,
    error: Option<String>,
    notice: Option<String>,
}

/// Segments a page shows, each with its live count (one bounded count per row).
const SEGMENTS_PAGE: u32 = 20;

async fn segments_view(
    state: &AppState,
    app: &ApplicationRecord,
    email: String,
    after: Option<&str>,
) -> SegmentsPage {
    let engine = &state.engine;
    // A cursor that is no longer in the list (deleted meanwhile) starts again from the top.
    let after = after.and_then(|a| parley_domain::SegmentId::parse(a).ok());
    let mut page = match engine
        .segments_page(&app.id, after.as_ref(), SEGMENTS_PAGE + 1)
        .await
    {
        Ok(page) => page,
        Err(_) => engine
            .segments_page(&app.id, None, SEGMENTS_PAGE + 1)
            .await
            .unwrap_or_default(),
    };
    let next = super::next_page(&mut page, SEGMENTS_PAGE, |s| s.id.to_string())
        .map(|after| super::next_href("/segments", &[], "after", &after));
    let mut rows = Vec::new();
    for s in page {
        let count = match engine.parse_segment(&s.filter) {
            Ok(seg) => engine
                .preview_segment(&app.id, &seg, 0)
                .await
                .map(|p| p.count.to_string())
                .unwrap_or_else(|f| f.message),
            Err(f) => f.message,
        };
        rows.push(SegmentRow {
            id: s.id.to_string(),
            link: format!("/contacts?filter={}", query_value(&s.filter)),
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
        next,
        name: String::new(),
        filter: String::new(),
        error: None,
        notice: None,
    }
}

#[derive(Deserialize, Default)]
pub struct SegmentsQuery {
    created: Option<String>,
    deleted: Option<String>,
    after: Option<String>,
}

/// `GET /segments`: a page of the saved segments by name, with their counts now.
pub async fn segments_page(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Query(q): Query<SegmentsQuery>,
) -> Response {
    let mut page = segments_view(&state, &app, email, q.after.as_deref()).await;
    page.notice = match (q.created, q.deleted) {
        (Some(n), _) => Some(format!("Segment “{n}” saved.")),
        (None, Some(n)) => Some(format!("Segment “{n}” deleted.")),
        (None, None) => None,
    };
    render(&page)
}

/// `POST /segments/{id}/delete`: delete a saved segment (campaigns that chose it keep their
/// copy of its filter).
pub async fn delete_segment(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Path(id): Path<String>,
) -> Response {
    let deleted = match parley_engine::audience::segment_id(&id) {
        Ok(id) => match state.engine.segment_by_id(&app.id, &id).await {
            Ok(s) => state.engine.delete_segment(&app.id, &id).await.map(|()| s),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match deleted {
        Ok(s) => {
            Redirect::to(&format!("/segments?deleted={}", query_value(&s.name))).into_response()
        }
        Err(f) => {
            let status = if f.kind == parley_engine::ErrorKind::NotFound {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            let mut page = segments_view(&state, &app, email, None).await;
            page.error = Some(f.message);
            render_with(status, &page)
        }
    }
}

#[derive(Deserialize)]
pub struct SegmentForm {
    name: String,
    filter: String,
}

/// `POST /segments`: save a segment, or show why not.
pub async fn create_segment(
    _: SameOrigin,
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Form(form): Form<SegmentForm>,
) -> Response {
    // Counted first: a filter too expensive to run is refused before it is saved.
    let counted = match state.engine.parse_segment(&form.filter) {
        Ok(seg) => state
            .engine
            .preview_segment(&app.id, &seg, 0)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    let created = match counted {
        Ok(()) => {
            state
                .engine
                .create_segment(&app.id, &form.name, &form.filter)
                .await
        }
        Err(e) => Err(e),
    };
    match created {
        Ok(s) => {
            Redirect::to(&format!("/segments?created={}", query_value(&s.name))).into_response()
        }
        Err(f) => {
            let mut page = segments_view(&state, &app, email, None).await;
            page.name = form.name;
            page.filter = form.filter;
            page.error = Some(f.message);
            render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
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
    countries: &'static [(&'static str, &'static str)],
}

/// The default countries the import page offers (the API takes any ISO code).
const COUNTRIES: &[(&str, &str)] = &[
    ("AR", "Argentina"),
    ("AT", "Austria"),
    ("AU", "Australia"),
    ("BE", "Belgium"),
    ("BR", "Brazil"),
    ("BY", "Belarus"),
    ("CA", "Canada"),
    ("CH", "Switzerland"),
    ("CO", "Colombia"),
    ("CZ", "Czechia"),
    ("DE", "Germany"),
    ("ES", "Spain"),
    ("FR", "France"),
    ("GB", "United Kingdom"),
    ("ID", "Indonesia"),
    ("IN", "India"),
    ("IT", "Italy"),
    ("KZ", "Kazakhstan"),
    ("MX", "Mexico"),
    ("NG", "Nigeria"),
    ("NL", "Netherlands"),
    ("PL", "Poland"),
    ("PT", "Portugal"),
    ("RU", "Russia"),
    ("SA", "Saudi Arabia"),
    ("TR", "Türkiye"),
    ("UA", "Ukraine"),
    ("US", "United States"),
    ("ZA", "South Africa"),
];

/// `GET /import`.
pub async fn import_page(SignedIn { email, .. }: SignedIn) -> Response {
    render(&ImportPage {
        active: "import",
        email,
        preview_bytes: PREVIEW_BYTES,
        countries: COUNTRIES,
    })
}

/// The import's options from the query: `format` and each `map=column:tag:type`, one per
/// parameter (column names may hold commas); with `complete=1` the preview's body is the
/// whole file.
fn options_of(pairs: &[(String, String)]) -> Result<(ImportOptions, bool), ApiError> {
    let options = import_options(pairs, Mappings::OnePerParameter)?;
    let complete = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "complete")
        .is_some_and(|(_, v)| v == "1" || v == "true");
    Ok((options, complete))
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

/// `POST /import/preview?format&encoding&separator&country&map…&complete`: the body is the head
/// of the file; answers how it is read (`read_as`: the format, encoding, separator and sheet,
/// given or detected), the header's columns and what the first rows would import.
/// `POST /import/preview/workbook?…` takes a whole `.xlsx` file (a workbook is read whole).
pub async fn import_preview(
    _: SignedInJson,
    Query(pairs): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (options, complete) = options_of(&pairs)?;
    let p = tokio::task::spawn_blocking(move || {
        let workbook = options.format == ImportFormat::Xlsx || is_zip(&body);
        let head = if workbook {
            &body[..]
        } else {
            &body[..body.len().min(PREVIEW_BYTES)]
        };
        preview_import(&options, head, complete, PREVIEW_ROWS)
    })
    .await
    .map_err(|e| ApiError::from(parley_engine::EngineError::internal(e)))??;
    let r = &p.read_as;
    Ok(axum::Json(json!({
        "read_as": {
            "format": r.format.as_str(),
            "encoding": r.encoding.map(|e| e.as_str()),
            "separator": r.separator.map(|s| s.as_str()),
            "country": r.country.map(|c| c.as_str()),
            "sheet": r.sheet,
        },
        "columns": p.columns,
        "rows": p.rows.iter().map(|r| match &r.outcome {
            Ok(row) => json!({"line": r.line, "contact": upsert_json(row)}),
            Err(reason) => json!({"line": r.line, "error": reason}),
        }).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `POST /import/upload?format&map…`: the file as the body, read as a stream by the engine's
/// import; answers the job id at once.
pub async fn import_upload(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Query(pairs): Query<Vec<(String, String)>>,
    body: Body,
) -> Result<Response, ApiError> {
    let (options, _) = options_of(&pairs)?;
    let id = state
        .engine
        .start_import(&app.id, options, body.into_data_stream())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"job_id": id.to_string()})),
    )
        .into_response())
}

/// `POST /import/{id}/resume`: the same file again, for an interrupted import (the page's
/// Resume button). Answers at once like the upload; the page polls the job.
pub async fn import_resume(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let (job, options) = state
        .engine
        .resume_import(&app.id, &import_id(&id)?)
        .await?;
    let id = job.id.clone();
    let engine = state.engine.clone();
    tokio::spawn(async move {
        if let Err(e) = engine
            .run_import(job, &options, body.into_data_stream(), |_| {})
            .await
        {
            tracing::warn!(error = %e, "resumed import failed");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"job_id": id.to_string()})),
    )
        .into_response())
}

/// `GET /import/{id}/progress`: the job, polled by the page.
pub async fn import_progress(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = state.engine.import_job(&app.id, &import_id(&id)?).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(ImportView::from(&job)),
    )
        .into_response())
}

/// `GET /import/{id}/rejected.csv`.
pub async fn import_rejected(
    State(state): State<AppState>,
    SignedIn { app, .. }: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = state.engine.import_job(&app.id, &import_id(&id)?).await?;
    rejected_csv_response(&state, &app.id, &job).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offered_countries_are_known_to_the_phone_parser() {
        for (code, _) in COUNTRIES {
            assert_eq!(
                parley_domain::Region::parse(code).map(|r| r.as_str()),
                Ok(*code)
            );
        }
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
