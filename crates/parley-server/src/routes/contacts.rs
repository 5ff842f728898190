//! Contacts: `PUT/GET/DELETE /api/v1/contacts/{phone}`, `GET /api/v1/contacts` (filter by a
//! segment expression, cursor pagination) and imports (`POST /api/v1/contacts/import`,
//! progress and rejected rows).

use crate::error::Query;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use parley_engine::audience::import_id;
use parley_engine::audience::{
    ColumnMap, ContactDetail, ContactInput, ImportFormat, ImportOptions, Separator, TextEncoding,
};
use parley_store::audience::{AudienceContact, ImportJobRecord, SubscriptionEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{AppAuth, Manages, Reads};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::routes::messages::{MessageView, rfc3339};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    pub name: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    /// Partial update: each tag given is set (typed by its JSON type: string, number, boolean,
    /// array of strings; dates as `YYYY-MM-DD` strings), `null` removes it, others stay.
    #[schema(value_type = Object)]
    pub tags: Option<serde_json::Map<String, serde_json::Value>>,
    /// `opted_in` or `opted_out` (marketing messages); recorded in the history.
    pub subscription: Option<String>,
    /// A business-scoped user id (BSUID, e.g. `US.13491208655302741918`) to link to this
    /// contact; a contact already known by it is merged in (one person, one contact).
    pub bsuid: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactView {
    pub id: String,
    /// E.164; `null` when Parley knows the person only by their business-scoped user id.
    pub phone: Option<String>,
    /// The business-scoped user id (BSUID) Meta last named this person by.
    pub bsuid: Option<String>,
    /// The parent BSUID (only for portfolios in a parent-BSUID account).
    pub parent_bsuid: Option<String>,
    /// The WhatsApp username, as display text.
    pub username: Option<String>,
    pub wa_id: Option<String>,
    pub name: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    #[schema(value_type = Object)]
    pub tags: serde_json::Value,
    /// `unknown`, `opted_in` or `opted_out`.
    pub subscription: String,
    pub subscription_source: Option<String>,
    pub subscription_at: Option<String>,
    pub last_inbound_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&AudienceContact> for ContactView {
    fn from(c: &AudienceContact) -> Self {
        ContactView {
            id: c.contact.id.to_string(),
            phone: c.contact.phone_number().map(str::to_owned),
            bsuid: c.contact.bsuid.clone(),
            parent_bsuid: c.contact.parent_bsuid.clone(),
            username: c.contact.username.clone(),
            wa_id: c.contact.wa_id.clone().map(String::from),
            name: c.contact.name.clone(),
            locale: c.locale.clone(),
            timezone: c.timezone.clone(),
            tags: serde_json::to_value(&c.contact.tags).unwrap_or_default(),
            subscription: c.subscription.as_str().to_owned(),
            subscription_source: c.subscription_source.clone(),
            subscription_at: c.subscription_at.map(rfc3339),
            last_inbound_at: c.contact.last_inbound_at.map(rfc3339),
            created_at: rfc3339(c.contact.created_at),
            updated_at: rfc3339(c.contact.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionEventView {
    pub state: String,
    pub source: String,
    pub note: Option<String>,
    pub at: String,
}

impl From<&SubscriptionEvent> for SubscriptionEventView {
    fn from(e: &SubscriptionEvent) -> Self {
        SubscriptionEventView {
            state: e.state.as_str().to_owned(),
            source: e.source.clone(),
            note: e.note.clone(),
            at: rfc3339(e.at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactDetailView {
    #[serde(flatten)]
    pub contact: ContactView,
    /// The newest 50 subscription changes, oldest first (every change is kept).
    pub subscription_history: Vec<SubscriptionEventView>,
    /// The newest messages sent to the contact (at most 20).
    pub messages: Vec<MessageView>,
    /// Messages of a WhatsApp Business app number that did not go through Parley (at most
    /// 50, newest first): history imported from the app, and messages the business typed in
    /// the app. Not Parley sends: they cost nothing and count towards no quota or window.
    pub app_messages: Vec<AppMessageView>,
}

/// One message of the WhatsApp Business app (coexistence).
#[derive(Debug, Serialize, ToSchema)]
pub struct AppMessageView {
    pub wamid: String,
    pub phone_number_id: String,
    /// `inbound` (from the contact) or `outbound` (from the business).
    pub direction: String,
    /// `history` (imported from the app at onboarding) or `business_app` (sent from the
    /// WhatsApp Business app, reported by an echo).
    pub source: String,
    /// True for history imported from the app.
    pub imported: bool,
    /// `sent from WhatsApp Business app` or `imported from WhatsApp Business app`.
    pub label: &'static str,
    /// Meta's message type (`text`, `image`, `media_placeholder`, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    /// History only: where the message stood in the app (`READ`, `DELIVERED`, …); not a
    /// delivery status of Parley's.
    pub history_status: Option<String>,
    pub sent_at: String,
}

impl From<parley_store::coexistence::AppMessageRecord> for AppMessageView {
    fn from(m: parley_store::coexistence::AppMessageRecord) -> Self {
        let imported = m.source == "history";
        AppMessageView {
            wamid: m.wamid,
            phone_number_id: m.phone_number_id.into(),
            direction: m.direction,
            label: if imported {
                "imported from WhatsApp Business app"
            } else {
                "sent from WhatsApp Business app"
            },
            source: m.source,
            imported,
            kind: m.kind,
            text: m.text,
            history_status: m.history_status,
            sent_at: rfc3339(m.sent_at),
        }
    }
}

impl From<ContactDetail> for ContactDetailView {
    fn from(d: ContactDetail) -> Self {
        ContactDetailView {
            contact: (&d.contact).into(),
            subscription_history: d.history.iter().map(Into::into).collect(),
            messages: d.messages.into_iter().map(Into::into).collect(),
            app_messages: d.app_messages.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactList {
    pub data: Vec<ContactView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ContactListQuery {
    /// A segment expression, e.g. `city = "Berlin" and visits >= 3` (default: all).
    pub filter: Option<String>,
    /// Part of the phone number or name (at most 100 characters).
    pub search: Option<String>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page's `next_cursor`.
    pub after: Option<String>,
}

#[utoipa::path(
    put, path = "/api/v1/contacts/{phone}", tag = "contacts",
    params(("phone" = String, Path, description = "E.164, e.g. `+4915112345678`, or a business-scoped user id (BSUID), e.g. `US.13491208655302741918`: a new BSUID creates a contact known only by it")),
    request_body = ContactBody,
    responses(
        (status = 200, description = "Updated", body = ContactView),
        (status = 201, description = "Created", body = ContactView),
        (status = 400, description = "Bad phone number or tag", body = ErrorBody),
        (status = 422, description = "`tag_value_too_long`: a text tag (or a list item) over 1,024 characters, or a list over 100 items; `too_many_tags`: with these tags the contact would hold more than 200 tags or 64 KiB of them (nothing is changed; remove tags by setting them to null)", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn put_contact(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(phone): Path<String>,
    ApiJson(body): ApiJson<ContactBody>,
) -> Result<Response, ApiError> {
    let input = ContactInput {
        name: body.name,
        locale: body.locale,
        timezone: body.timezone,
        tags: body.tags.unwrap_or_default(),
        subscription: body.subscription,
        source: "api",
        bsuid: body.bsuid,
    };
    let (contact, created) = state.engine.upsert_contact(&app, &phone, input).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(ContactView::from(&contact))).into_response())
}

#[utoipa::path(
    get, path = "/api/v1/contacts/{phone}", tag = "contacts",
    params(("phone" = String, Path, description = "E.164, or any business-scoped user id (BSUID) or parent BSUID of the contact")),
    responses(
        (status = 200, description = "The contact with its subscription history and last messages", body = ContactDetailView),
        (status = 404, description = "No such contact", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn get_contact(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(phone): Path<String>,
) -> Result<ApiJson<ContactDetailView>, ApiError> {
    let detail = state.engine.contact_detail(&app, &phone).await?;
    let ids: Vec<_> = detail.messages.iter().map(|m| m.id.clone()).collect();
    let meta = state.engine.message_meta(&app, &ids).await?;
    let mut view = ContactDetailView::from(detail);
    for m in &mut view.messages {
        let id = parley_domain::MessageId::parse(&m.id).ok();
        m.apply_meta(id.as_ref().and_then(|id| meta.get(id)));
    }
    Ok(ApiJson(view))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErasedView {
    pub erased: bool,
    /// Messages kept for statistics without the number or text.
    pub messages_anonymized: u64,
}

#[utoipa::path(
    delete, path = "/api/v1/contacts/{phone}", tag = "contacts",
    params(("phone" = String, Path, description = "E.164, or any business-scoped user id (BSUID) or parent BSUID of the contact")),
    responses(
        (status = 200, description = "Personal data erased; message counts kept", body = ErasedView),
        (status = 404, description = "Nothing stored for this number", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn delete_contact(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(phone): Path<String>,
) -> Result<ApiJson<ErasedView>, ApiError> {
    let report = state.engine.erase_contact(&app, &phone).await?;
    Ok(ApiJson(ErasedView {
        erased: true,
        messages_anonymized: report.messages + report.inbound_messages,
    }))
}

#[utoipa::path(
    get, path = "/api/v1/contacts", tag = "contacts",
    params(ContactListQuery),
    responses(
        (status = 200, description = "A page of contacts in phone order", body = ContactList),
        (status = 400, description = "The filter does not parse (the message names the character), or `invalid_search` (over 100 characters)", body = ErrorBody),
        (status = 422, description = "`filter_too_complex` or `filter_too_expensive`, as for `POST /api/v1/segments/preview`; `search_too_expensive` when a search alone ran out of the same time budget", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn list_contacts(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<ContactListQuery>,
) -> Result<ApiJson<ContactList>, ApiError> {
    let (page, next) = state
        .engine
        .list_contacts(
            &app,
            q.filter.as_deref(),
            q.search.as_deref(),
            q.after.as_deref(),
            q.limit.unwrap_or(50),
        )
        .await?;
    Ok(ApiJson(ContactList {
        data: page.iter().map(Into::into).collect(),
        next_cursor: next,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportStarted {
    pub job_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportView {
    pub id: String,
    /// `csv`, `ndjson` or `xlsx` (also for an `.xlsx` file uploaded as CSV).
    pub format: String,
    /// The text encoding the file is read in, given or detected (`utf-8`, `utf-16le`,
    /// `utf-16be`, `windows-1251`, `windows-1252`); absent until the import has read the head
    /// of the file.
    pub encoding: Option<String>,
    /// CSV's cell separator, given or detected: `comma`, `semicolon` or `tab`.
    pub separator: Option<String>,
    /// The default country local phone spellings were read in (`DE`).
    pub country: Option<String>,
    /// The sheet of an `.xlsx` file that was read (the first).
    pub sheet: Option<String>,
    /// `running`, `done`, `failed` or `interrupted` (Parley stopped or the upload broke off:
    /// the rows committed so far are kept; resume with the same file at
    /// `POST /api/v1/contacts/import/{job}/resume`).
    pub state: String,
    pub rows_read: u64,
    pub created: u64,
    pub updated: u64,
    pub rejected: u64,
    pub error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

impl From<&ImportJobRecord> for ImportView {
    fn from(j: &ImportJobRecord) -> Self {
        let read_as = j
            .options
            .as_deref()
            .and_then(ImportOptions::from_stored)
            .unwrap_or_default();
        ImportView {
            id: j.id.to_string(),
            format: j.format.clone(),
            encoding: read_as.encoding.map(|e| e.as_str().to_owned()),
            separator: read_as.separator.map(|s| s.as_str().to_owned()),
            country: read_as.country.map(|c| c.as_str().to_owned()),
            sheet: read_as.sheet,
            state: j.state.as_str().to_owned(),
            rows_read: j.rows_read,
            created: j.created,
            updated: j.updated,
            rejected: j.rejected,
            error: j.error.clone(),
            created_at: rfc3339(j.created_at),
            finished_at: j.finished_at.map(rfc3339),
        }
    }
}

/// How the `map` parameters of an import list their mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mappings {
    /// Repeated or comma-separated (the API).
    CommaSeparated,
    /// One per parameter, so column names may hold commas (the console's import page).
    OnePerParameter,
}

/// Reads `format` and every `map=column:tag:type` of the query string.
pub fn import_options(
    pairs: &[(String, String)],
    mappings: Mappings,
) -> Result<ImportOptions, ApiError> {
    let bad = |code: &'static str, msg: String, field: &str| {
        ApiError::new(StatusCode::BAD_REQUEST, code, msg).field(field.to_owned())
    };
    let mut options = ImportOptions::default();
    let auto = |v: &str| v.trim().is_empty() || v.trim().eq_ignore_ascii_case("auto");
    for (k, v) in pairs {
        match k.as_str() {
            "format" => {
                options.format = ImportFormat::parse(v).ok_or_else(|| {
                    bad(
                        "invalid_format",
                        format!("format `{v}` is not csv, ndjson or xlsx"),
                        "format",
                    )
                })?
            }
            "encoding" if auto(v) => options.encoding = None,
            "encoding" => {
                options.encoding = Some(TextEncoding::parse(v).ok_or_else(|| {
                    bad(
                        "invalid_encoding",
                        format!("encoding `{v}` is not auto, utf-8, utf-16le, utf-16be, windows-1251 or windows-1252"),
                        "encoding",
                    )
                })?)
            }
            "separator" if v.is_empty() || v.trim().eq_ignore_ascii_case("auto") => {
                options.separator = None
            }
            "separator" => {
                options.separator = Some(Separator::parse(v).ok_or_else(|| {
                    bad(
                        "invalid_separator",
                        format!("separator `{v}` is not auto, comma, semicolon or tab (or `,` `;`)"),
                        "separator",
                    )
                })?)
            }
            "country" if v.trim().is_empty() => options.country = None,
            "country" => {
                options.country = Some(
                    parley_domain::Region::parse(v)
                        .map_err(|m| bad("invalid_country", m, "country"))?,
                )
            }
            "map" if mappings == Mappings::OnePerParameter => {
                options.columns.push(ColumnMap::parse(v).map_err(|m| bad("invalid_mapping", m, "map"))?);
            }
            "map" => {
                for one in v.split(',').filter(|s| !s.trim().is_empty()) {
                    options
                        .columns
                        .push(ColumnMap::parse(one).map_err(|m| bad("invalid_mapping", m, "map"))?);
                }
            }
            _ => {}
        }
    }
    Ok(options)
}

#[utoipa::path(
    post, path = "/api/v1/contacts/import", tag = "contacts",
    params(
        ("format" = Option<String>, Query, description = "`csv` (default, first row is the header) or `ndjson` (one `{\"phone\", \"name\", \"tags\": {…}}` per line)"),
        ("map" = Option<String>, Query, description = "CSV column mapping `column:tag:type`, repeated or comma-separated; types string, integer, float, boolean, date, datetime, list (`;`-separated). Map a column to `phone`, `name`, `locale`, `timezone` or `subscription` for those fields, or to an empty tag to skip it. Unmapped columns become string tags named like the column."),
        ("encoding" = Option<String>, Query, description = "The file's text encoding: `auto` (default: a byte order mark, else UTF-16 by its zero bytes, else UTF-8 when it is valid UTF-8, else Windows-1251 or Windows-1252 by its letters), `utf-8`, `utf-16le`, `utf-16be`, `windows-1251`, `windows-1252`. The import's `encoding` says what was used."),
        ("separator" = Option<String>, Query, description = "CSV's cell separator: `auto` (default: the one of `,` `;` tab found most often in the header), `comma`, `semicolon`, `tab`. The import's `separator` says what was used."),
        ("country" = Option<String>, Query, description = "Default country (ISO 3166 two letters, e.g. `DE`) for phone numbers written the local way (`0151 23456789`, `8 (916) 123-45-67`); numbers with `+` or `00` are read as they are. Without it, every number needs its country code."),
    ),
    request_body(content = String, content_type = "text/csv", description = "The file: CSV (any encoding above), NDJSON, or an `.xlsx` workbook (its first sheet, at most 32 MiB, unpacking to at most 128 MiB), which is recognised by its content also when `format` is `csv`."),
    responses(
        (status = 202, description = "The body was read and its rows committed (or rejected, with their line); the job's counts are at GET /api/v1/contacts/import/{job}", body = ImportStarted),
        (status = 400, description = "Bad format, mapping, encoding, separator or country", body = ErrorBody),
        (status = 422, description = "`xlsx_unreadable` (not a readable workbook: truncated, damaged, encrypted) or `xlsx_too_large` (over 32 MiB, unpacking to over 128 MiB, or a first sheet of over 64 MiB of text); the import is `failed` with the same message", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn start_import(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Query(pairs): Query<Vec<(String, String)>>,
    body: Body,
) -> Result<Response, ApiError> {
    let options = import_options(&pairs, Mappings::CommaSeparated)?;
    let job = state.engine.create_import(&app, &options).await?;
    read_import(&state, job, options, body).await
}

/// Resumes an import that Parley's stop (or a broken upload) interrupted: send the same file
/// again, whole. The bytes up to the last committed row are read but not written (they must
/// be the same bytes, else 409 `import_file_differs`), so no row is imported twice; the rest
/// is imported as before, with the options the import was started with and the encoding,
/// separator and default country it used (never detected again). For a file in another
/// encoding than UTF-8 the comparison is of the decoded text; for an `.xlsx` workbook, of its
/// first sheet's rows (a workbook saved again with the same rows resumes too).
#[utoipa::path(
    post, path = "/api/v1/contacts/import/{job}/resume", tag = "contacts",
    params(("job" = String, Path, description = "Import id, `imp_…`")),
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 202, description = "The rest of the body was read and its rows committed; the job's counts are at GET /api/v1/contacts/import/{job}", body = ImportStarted),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 409, description = "`import_not_resumable` (running or done) or `import_file_differs`", body = ErrorBody),
    ),
    security(("bearer" = ["manage"]))
)]
pub async fn resume_import(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Manages>,
    Path(job): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let (job, options) = state.engine.resume_import(&app, &import_id(&job)?).await?;
    read_import(&state, job, options, body).await
}

/// Reads the whole body into the job and answers 202 once its rows are committed.
async fn read_import(
    state: &AppState,
    job: ImportJobRecord,
    options: ImportOptions,
    body: Body,
) -> Result<Response, ApiError> {
    let id = job.id.clone();
    // The answer waits for the whole body: a client that sent `Expect: 100-continue` (curl
    // does above 1 MB) gets `100 Continue` when the body is first read and the answer after
    // the last row is committed, never a final answer before it sent the body. The import
    // runs on its own task, so a client that goes away mid-upload still has its job settled
    // (`interrupted`, with the rows read so far committed).
    let engine = state.engine.clone();
    let run = tokio::spawn(async move {
        engine
            .run_import(job, &options, body.into_data_stream(), |_| {})
            .await
    });
    match run.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "import failed");
            return Err(e.into());
        }
        Err(e) => {
            tracing::error!(error = %e, "import task ended abnormally");
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the import stopped unexpectedly; see GET /api/v1/contacts/import/{job}",
            ));
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(ImportStarted {
            job_id: id.to_string(),
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ImportQuery {
    /// Page size, 1–100 (default 20).
    pub limit: Option<u32>,
    /// Cursor from the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportList {
    pub data: Vec<ImportView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The application's imports, newest first: after a crash, the `interrupted` ones are here
/// to resume (a client whose upload broke off never got the job id).
#[utoipa::path(
    get, path = "/api/v1/contacts/import", tag = "contacts",
    params(ImportQuery),
    responses((status = 200, body = ImportList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn list_imports(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Query(q): Query<ImportQuery>,
) -> Result<ApiJson<ImportList>, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_limit",
            "`limit` must be between 1 and 100",
        )
        .field("limit"));
    }
    let after = match q.after.as_deref() {
        None => None,
        Some(a) => Some(parley_domain::ImportId::parse(a).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "`after` is not a cursor from this list; start again without it",
            )
            .field("after")
        })?),
    };
    let mut rows = state
        .engine
        .import_jobs(&app, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let data: Vec<ImportView> = rows.iter().map(ImportView::from).collect();
    let next_cursor = more.then(|| data.last().map(|j| j.id.clone())).flatten();
    Ok(ApiJson(ImportList { data, next_cursor }))
}

#[utoipa::path(
    get, path = "/api/v1/contacts/import/{job}", tag = "contacts",
    params(("job" = String, Path, description = "Import id, `imp_…`")),
    responses((status = 200, description = "Progress", body = ImportView), (status = 404, description = "`import_not_found`: no such import, or it finished more than `imports.retention_days` (30 by default) ago and was deleted with its rejected rows", body = ErrorBody)),
    security(("bearer" = ["read"]))
)]
pub async fn get_import(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(job): Path<String>,
) -> Result<ApiJson<ImportView>, ApiError> {
    Ok(ApiJson(
        (&state.engine.import_job(&app, &import_id(&job)?).await?).into(),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/contacts/import/{job}/rejected", tag = "contacts",
    params(("job" = String, Path, description = "Import id, `imp_…`")),
    responses((status = 200, description = "CSV `line,reason,row` of every rejected row", content_type = "text/csv", body = String)),
    security(("bearer" = ["read"]))
)]
pub async fn rejected_rows(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(job): Path<String>,
) -> Result<Response, ApiError> {
    let job = state.engine.import_job(&app, &import_id(&job)?).await?;
    rejected_csv_response(&state, &app, &job).await
}

/// The rejected rows of `job` as a CSV download (the API's and the console's).
pub async fn rejected_csv_response(
    state: &AppState,
    app: &parley_domain::ApplicationId,
    job: &ImportJobRecord,
) -> Result<Response, ApiError> {
    let out = state.engine.import_rejects_csv(app, job).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}-rejected.csv\"", job.id),
            ),
        ],
        out,
    )
        .into_response())
}

/// One inbound message: what the contact sent, by kind, with its normalized body.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboundMessageView {
    pub wamid: String,
    pub phone_number_id: String,
    /// The sender's address (E.164, or the BSUID when Meta withheld the phone).
    pub from: String,
    /// `text`, `image`, `video`, `audio`, `document`, `sticker`, `location`, `contacts`,
    /// `reaction`, `button`, `interactive`, `order`, `system`, `edit`, `revoke`,
    /// `unsupported`, `request_welcome` or `unknown` (a type Parley does not know: see `raw`).
    pub kind: String,
    /// The text a person reads (body, caption, button title, emoji); the latest edit's.
    pub text: Option<String>,
    /// The normalized body: `kind` and the kind's fields (`body`; `id`, `mime_type`,
    /// `sha256`, `caption`, `filename`, `voice`, `animated`; `latitude`, `longitude`, `name`,
    /// `address`; `contacts`; `message_id` and `emoji` (none: the reaction was removed);
    /// `payload`; `reply_type` with `id`, `title`, `description` or a Flow's `response`; …),
    /// and `context` (`message_id` replied to, `forwarded`, `frequently_forwarded`,
    /// `referred_product`), `referral` (click-to-WhatsApp ad) and `errors` when present.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// The wamid a reply, reaction, edit or revoke refers to.
    pub refers_to: Option<String>,
    /// Earlier versions of an edited message, oldest first (`text`, `body`, `edited_at` in
    /// Unix milliseconds).
    #[schema(value_type = Vec<Object>)]
    pub edits: Vec<serde_json::Value>,
    pub edited_at: Option<String>,
    /// Set once the user deleted the message for everyone.
    pub revoked_at: Option<String>,
    pub received_at: String,
    /// The media of image, video, audio, document and sticker messages.
    pub media: Option<InboundMediaView>,
    /// Meta's message object as received: every field, also those `body` does not name.
    #[schema(value_type = Object)]
    pub raw: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundMediaView {
    /// `pending`, `stored`, `refused`, `failed` or `expired`.
    pub state: String,
    pub media_id: String,
    /// The type Meta declared.
    pub mime_type: Option<String>,
    pub size_bytes: Option<i64>,
    /// Hex SHA-256 of the stored bytes.
    pub sha256: Option<String>,
    /// Why it was refused or failed (`media_too_large`, `media_type_mismatch`,
    /// `media_hash_mismatch`, `media_unavailable`, `number_disconnected`).
    pub error_code: Option<String>,
    pub error: Option<String>,
    /// Where a signed-in console user of this application sees it (stored media only).
    pub console_url: Option<String>,
}

impl From<parley_store::InboundMessageRecord> for InboundMessageView {
    fn from(m: parley_store::InboundMessageRecord) -> Self {
        let body = serde_json::to_value(parley_engine::inbound::body_of(&m)).unwrap_or_default();
        let media = m.media.map(|media| {
            let (error_code, error) = match media.error.as_deref() {
                Some(e) => match e.split_once(": ") {
                    Some((code, _)) if !code.contains(' ') => {
                        (Some(code.to_owned()), Some(e.to_owned()))
                    }
                    _ => (None, Some(e.to_owned())),
                },
                None => (None, None),
            };
            let stored = media.state == parley_domain::MediaState::Stored;
            InboundMediaView {
                state: media.state.as_str().to_owned(),
                media_id: media.media_id,
                mime_type: media.mime_type.or(media.declared_mime),
                size_bytes: media.size_bytes,
                sha256: media.sha256,
                error_code: if stored { None } else { error_code },
                error: if stored { None } else { error },
                console_url: stored.then(|| format!("/media/inbound/{}", m.wamid)),
            }
        });
        InboundMessageView {
            wamid: m.wamid.to_string(),
            phone_number_id: m.phone_number_id.to_string(),
            from: m.from,
            kind: m.kind.as_str().to_owned(),
            text: m.text,
            body,
            refers_to: m.refers_to,
            edits: m.edits,
            edited_at: m.edited_at.map(rfc3339),
            revoked_at: m.revoked_at.map(rfc3339),
            received_at: rfc3339(m.received_at),
            media,
            raw: m.raw,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundMessageList {
    pub data: Vec<InboundMessageView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InboundListQuery {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// Cursor from the previous page's `next_cursor`.
    pub after: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/contacts/{phone}/messages", tag = "contacts",
    params(
        ("phone" = String, Path, description = "E.164, or any business-scoped user id (BSUID) or parent BSUID of the contact"),
        InboundListQuery,
    ),
    responses(
        (status = 200, description = "The messages the contact sent, newest first", body = InboundMessageList),
        (status = 400, description = "A malformed phone, BSUID or cursor", body = ErrorBody),
        (status = 404, description = "No such contact", body = ErrorBody),
    ),
    security(("bearer" = ["read"]))
)]
pub async fn contact_messages(
    State(state): State<AppState>,
    AppAuth(app, _): AppAuth<Reads>,
    Path(phone): Path<String>,
    Query(q): Query<InboundListQuery>,
) -> Result<ApiJson<InboundMessageList>, ApiError> {
    let page = state
        .engine
        .contact_inbound_messages(&app, &phone, q.after.as_deref(), q.limit.unwrap_or(50))
        .await?;
    Ok(ApiJson(InboundMessageList {
        data: page.messages.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}
