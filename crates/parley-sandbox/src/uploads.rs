//! Meta's Resumable Upload API and template edits: the Graph calls Parley's template work
//! needs beyond `graph.rs`.
//!
//! * `POST /{app-id}/uploads?file_name&file_length&file_type` → `{"id":"upload:…?sig=…"}`
//!   opens an upload session (`file_type` one of Meta's: `application/pdf`, `image/jpeg`,
//!   `image/jpg`, `image/png`, `video/mp4`; `file_length` 1 byte to 100 MB).
//! * `POST /{upload-id}` with header `file_offset: N` (and `Authorization: OAuth <token>`)
//!   and the bytes from offset N → `{"h":"4::…"}` once every byte arrived, otherwise
//!   `{"id","file_offset"}`; a wrong offset is error 100 naming the expected one.
//! * `GET /{upload-id}` → `{"id","file_offset"}` (where to resume).
//! * `POST /{template-id}` with `category` and/or `components` → `{"success":true}`: only
//!   APPROVED, REJECTED and PAUSED templates may be edited; an approved template keeps its
//!   category and may be edited once per 24 h and 10 times per 30 days (virtual time). The
//!   edited template goes back to `PENDING` and is reviewed again like a new one.
//!
//! Upload sessions and edit counts are kept for the life of the process (ids are random),
//! not in the world state: `/sandbox/reset` does not forget them.
//!
//! Every other request with one or two path segments goes on to the Graph handler unchanged.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use base64::Engine as _;
use rand::Rng;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::errors::GraphError;
use crate::state::EventKind;

/// Largest file Meta's upload takes for a template example (documents, 100 MB).
const MAX_FILE: usize = 100 * 1024 * 1024;
const FILE_TYPES: [&str; 5] = [
    "application/pdf",
    "image/jpeg",
    "image/jpg",
    "image/png",
    "video/mp4",
];
const DAY_MS: i64 = 24 * 3600 * 1000;

struct Upload {
    sig: String,
    file_type: String,
    file_length: usize,
    received: Vec<u8>,
    handle: Option<String>,
}

static UPLOADS: LazyLock<Mutex<HashMap<String, Upload>>> = LazyLock::new(Default::default);
/// Virtual times (ms) of each edit of an approved template, by template id.
static EDITS: LazyLock<Mutex<HashMap<String, Vec<i64>>>> = LazyLock::new(Default::default);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The routes, merged into the sandbox's router.
pub(crate) fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/{p1}/{p2}/uploads", post(start))
        .route("/{p1}/uploads", post(start))
        .route("/{p1}/{p2}", any(object))
        .route("/{p1}", any(object))
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(buf.as_mut_slice());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Path segments without the optional `vNN.N` version.
fn segments(uri: &Uri) -> Vec<String> {
    let mut segs: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let versioned = segs.first().is_some_and(|s| {
        s.strip_prefix('v')
            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit() || c == '.'))
    });
    if versioned {
        segs.remove(0);
    }
    segs
}

fn authenticate(
    sandbox: &Sandbox,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<(), GraphError> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
                .then(|| token.trim().to_owned())
        });
    let token = from_header.or_else(|| {
        query
            .iter()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.clone())
    });
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(GraphError::missing_token());
    };
    // The configured tokens and the business tokens Embedded Signup handed out, as in Graph.
    let accepted = {
        let state = sandbox.inner.lock();
        state.config.access_tokens.contains(&token) || state.tokens.contains_key(&token)
    };
    if accepted {
        Ok(())
    } else {
        Err(GraphError::invalid_token())
    }
}

/// An injected `fail_next_calls` failure for this call, if one matches (after the token).
fn call_fault(sandbox: &Sandbox, method: &Method, uri: &Uri) -> Result<(), GraphError> {
    match sandbox
        .inner
        .lock()
        .faults
        .take_call_fault(method.as_str(), &segments(uri))
    {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn query_of(uri: &Uri) -> Result<Vec<(String, String)>, GraphError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| GraphError::invalid_param(format!("Invalid query string: {e}")))
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn answer(result: Result<Value, GraphError>) -> Response {
    match result {
        Ok(value) => (StatusCode::OK, axum::Json(value)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// `POST /{app-id}/uploads`.
async fn start(State(sandbox): State<Sandbox>, headers: HeaderMap, uri: Uri) -> Response {
    answer(start_session(&sandbox, &headers, &uri))
}

fn start_session(sandbox: &Sandbox, headers: &HeaderMap, uri: &Uri) -> Result<Value, GraphError> {
    let query = query_of(uri)?;
    authenticate(sandbox, headers, &query)?;
    call_fault(sandbox, &Method::POST, uri)?;
    let app = segments(uri).first().cloned().unwrap_or_default();
    if app != sandbox.inner.lock().config.app_id {
        return Err(GraphError::unsupported("post", &app));
    }
    let file_length = match param(&query, "file_length") {
        None | Some("") => {
            return Err(GraphError::invalid_param(
                "The parameter file_length is required.",
            ));
        }
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_FILE).contains(&n) => n,
            _ => {
                return Err(GraphError::invalid_param(format!(
                    "Param file_length must be a number of bytes from 1 to {MAX_FILE} - got {raw}."
                )));
            }
        },
    };
    let file_type = param(&query, "file_type").unwrap_or_default();
    if !FILE_TYPES.contains(&file_type) {
        return Err(GraphError::invalid_param(format!(
            "Param file_type must be one of {{{}}} - got {file_type}.",
            FILE_TYPES.join(", ")
        )));
    }
    let id = format!("upload:{}", random_token(24));
    let sig = random_token(12);
    lock(&UPLOADS).insert(
        id.clone(),
        Upload {
            sig: sig.clone(),
            file_type: file_type.to_owned(),
            file_length,
            received: Vec::new(),
            handle: None,
        },
    );
    Ok(json!({ "id": format!("{id}?sig={sig}") }))
}

/// One- or two-segment paths: upload sessions and template edits; the rest is Graph's.
async fn object(
    State(sandbox): State<Sandbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let segs = segments(&uri);
    let [id] = segs.as_slice() else {
        return crate::graph::handle(State(sandbox), method, uri, headers, body).await;
    };
    if id.starts_with("upload:") && (method == Method::POST || method == Method::GET) {
        let bytes = if method == Method::POST {
            match to_bytes(body, MAX_FILE).await {
                Ok(b) => b.to_vec(),
                Err(_) => {
                    return GraphError::invalid_param(format!(
                        "The upload is larger than {MAX_FILE} bytes or could not be read."
                    ))
                    .into_response();
                }
            }
        } else {
            Vec::new()
        };
        return answer(transfer(&sandbox, &method, &uri, &headers, id, bytes));
    }
    let is_template = method == Method::POST && sandbox.inner.lock().template(id).is_some();
    if is_template {
        let bytes = match to_bytes(body, crate::graph::BODY_LIMIT).await {
            Ok(b) => b,
            Err(_) => {
                return GraphError::invalid_param("The request body could not be read.")
                    .into_response();
            }
        };
        return answer(edit_template(&sandbox, &uri, &headers, id, &bytes));
    }
    crate::graph::handle(State(sandbox), method, uri, headers, body).await
}

fn transfer(
    sandbox: &Sandbox,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    id: &str,
    bytes: Vec<u8>,
) -> Result<Value, GraphError> {
    let query = query_of(uri)?;
    authenticate(sandbox, headers, &query)?;
    call_fault(sandbox, method, uri)?;
    let mut uploads = lock(&UPLOADS);
    let Some(upload) = uploads.get_mut(id) else {
        return Err(GraphError::unsupported(method.as_str(), id));
    };
    if param(&query, "sig") != Some(upload.sig.as_str()) {
        return Err(GraphError::invalid_param(
            "The upload session signature (sig) is missing or wrong: use the id exactly as returned.",
        ));
    }
    let at = |u: &Upload| json!({ "id": format!("{id}?sig={}", u.sig), "file_offset": u.received.len() });
    if method == Method::GET {
        return Ok(at(upload));
    }
    if let Some(h) = &upload.handle {
        return Ok(json!({ "h": h }));
    }
    let offset = headers
        .get("file_offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let Some(offset) = offset else {
        return Err(GraphError::invalid_param(
            "The header file_offset is required (0 for a new upload).",
        ));
    };
    if offset != upload.received.len() {
        return Err(GraphError::invalid_param(format!(
            "file_offset {offset} does not match the bytes received so far: resume at {}.",
            upload.received.len()
        )));
    }
    if upload.received.len() + bytes.len() > upload.file_length {
        return Err(GraphError::invalid_param(format!(
            "The upload is longer than the file_length {} given when the session started.",
            upload.file_length
        )));
    }
    upload.received.extend_from_slice(&bytes);
    if upload.received.len() < upload.file_length {
        return Ok(at(upload));
    }
    let handle = format!(
        "4::{}:{}",
        base64::engine::general_purpose::STANDARD.encode(upload.file_type.as_bytes()),
        random_token(32)
    );
    upload.handle = Some(handle.clone());
    Ok(json!({ "h": handle }))
}

fn edit_template(
    sandbox: &Sandbox,
    uri: &Uri,
    headers: &HeaderMap,
    template_id: &str,
    bytes: &[u8],
) -> Result<Value, GraphError> {
    let query = query_of(uri)?;
    authenticate(sandbox, headers, &query)?;
    call_fault(sandbox, &Method::POST, uri)?;
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(bytes).map_err(|e| {
            GraphError::invalid_param(format!("The request body is not valid JSON: {e}"))
        })?
    };
    let category = match body.get("category") {
        None | Some(Value::Null) => None,
        Some(c) => Some(
            c.as_str()
                .map(str::to_ascii_uppercase)
                .filter(|c| matches!(c.as_str(), "AUTHENTICATION" | "MARKETING" | "UTILITY"))
                .ok_or_else(|| {
                    GraphError::invalid_param(
                        "Param category must be one of {AUTHENTICATION, MARKETING, UTILITY}.",
                    )
                })?,
        ),
    };
    let components = match body.get("components") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if !list.is_empty() => {
            let has_body = list.iter().any(|c| {
                c.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("BODY"))
            });
            if !has_body {
                return Err(GraphError::invalid_param(
                    "Message template needs a BODY component.",
                ));
            }
            Some(Value::Array(list.clone()))
        }
        Some(_) => {
            return Err(GraphError::invalid_param(
                "Param components must be a non-empty array.",
            ));
        }
    };
    if category.is_none() && components.is_none() {
        return Err(GraphError::invalid_param(
            "Give category or components to edit a message template.",
        ));
    }
    let now_ms = sandbox.inner.clock.now_ms();
    let mut state = sandbox.inner.lock();
    let waba_id = crate::templates::waba_of(&state, template_id)
        .ok_or_else(|| GraphError::unsupported("post", template_id))?;
    let template = state
        .waba_mut(&waba_id)
        .and_then(|w| {
            w.templates
                .iter_mut()
                .find(|t| t.get("id").and_then(Value::as_str) == Some(template_id))
        })
        .ok_or_else(|| GraphError::unsupported("post", template_id))?;
    let status = template
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if !matches!(status.as_str(), "APPROVED" | "REJECTED" | "PAUSED") {
        return Err(GraphError::invalid_param(format!(
            "Message template can't be edited while its status is {status}: only APPROVED, REJECTED and PAUSED templates can be edited."
        )));
    }
    let current_category = template
        .get("category")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    // Stored as Meta stores them (authentication templates get Meta's preset text).
    let components = match components {
        Some(Value::Array(list)) => Some(crate::templates::stored_components(
            category.as_deref().unwrap_or(&current_category),
            &list,
        )?),
        other => other,
    };
    if status == "APPROVED" {
        if category.as_deref().is_some_and(|c| c != current_category) {
            return Err(GraphError::invalid_param(
                "The category of an approved message template can't be changed.",
            ));
        }
        let mut edits = lock(&EDITS);
        let history = edits.entry(template_id.to_owned()).or_default();
        history.retain(|t| now_ms.saturating_sub(*t) < 30 * DAY_MS);
        if history.iter().any(|t| now_ms.saturating_sub(*t) < DAY_MS) {
            return Err(GraphError::invalid_param(
                "Message template edit limit reached: an approved template can be edited once in 24 hours.",
            ));
        }
        if history.len() >= 10 {
            return Err(GraphError::invalid_param(
                "Message template edit limit reached: an approved template can be edited 10 times in 30 days.",
            ));
        }
        history.push(now_ms);
    }
    if let Some(components) = components {
        template["components"] = components;
    }
    if let Some(category) = category {
        template["category"] = json!(category);
    }
    template["status"] = json!("PENDING");
    if let Some(obj) = template.as_object_mut() {
        obj.remove("rejected_reason");
    }
    state.schedule(
        now_ms.saturating_add(crate::templates::REVIEW_MS),
        "",
        EventKind::TemplateReview {
            waba_id,
            template_id: template_id.to_owned(),
        },
    );
    Ok(json!({ "success": true }))
}
