//! Media a customer sends: what Meta's media endpoint serves for inbound images, audio,
//! video, documents and stickers.
//!
//! * `POST /sandbox/media` `{"mime_type", "content_base64", "phone_number_id"?}` →
//!   `{"id", "sha256", "file_size"}` (files up to about 3 MB: the control API's body limit): the customer's file, received on that number (default:
//!   the first). `/sandbox/inbound` takes `"media": {"type", "mime_type", "content_base64",
//!   "caption"?, "filename"?, "voice"?}` to upload and send in one call.
//! * `POST /{phone-number-id}/media` (multipart/form-data: `messaging_product=whatsapp`, `type`,
//!   and the `file` part with its `Content-Type`) → `{"id"}`: the business's upload, sent by
//!   id. Meta's types and sizes per kind (META_API.md §2.6): image jpeg/png 5 MB, video
//!   mp4/3gpp 16 MB, audio aac/amr/mpeg/mp4/ogg 16 MB, sticker webp 500 KB, documents 100 MB;
//!   a wrong type or size is error 131053 (media upload error), a missing part 100.
//! * `GET /{media-id}[?phone_number_id=]` (a valid token) →
//!   `{"messaging_product":"whatsapp","url","mime_type","sha256","file_size","id"}`; a
//!   `phone_number_id` other than the receiving number's is error 100, an unknown id 100.
//! * `GET <url>` with `Authorization: Bearer <token>` → the bytes with their type. The URL
//!   lives **5 minutes** of virtual time (then 404: ask `GET /{media-id}` again); without a
//!   valid token Meta's token error (104 missing, 190 invalid). Media ids stay downloadable (for 7 days at Meta; for the life of the
//!   process here, and `/sandbox/reset` forgets them).

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Sandbox;
use crate::errors::GraphError;
use crate::state::State as World;

/// How long a download URL works (Meta: 5 minutes).
pub(crate) const URL_LIFE_MS: i64 = 5 * 60 * 1000;
/// The largest file the control API takes (Meta refuses inbound media over 100 MB).
const MAX_MEDIA: usize = 100 * 1024 * 1024;

/// A customer's file.
#[derive(Debug, Clone)]
pub(crate) struct StoredMedia {
    pub phone_number_id: String,
    pub mime_type: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewMedia {
    pub mime_type: String,
    pub content_base64: String,
    #[serde(default)]
    pub phone_number_id: Option<String>,
}

/// Stores a file; returns its id.
pub(crate) fn store(
    state: &mut World,
    phone_id: &str,
    media: &NewMedia,
) -> Result<(String, StoredMedia), GraphError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(media.content_base64.trim())
        .map_err(|e| GraphError::invalid_param(format!("\"content_base64\" is not base64: {e}")))?;
    if bytes.is_empty() || bytes.len() > MAX_MEDIA {
        return Err(GraphError::invalid_param(format!(
            "A media file has 1 byte to {MAX_MEDIA} bytes; got {}.",
            bytes.len()
        )));
    }
    if !media.mime_type.contains('/') {
        return Err(GraphError::invalid_param(
            "\"mime_type\" must be a MIME type, e.g. image/jpeg.",
        ));
    }
    let id: String = {
        let mut rng = rand::rng();
        (0..16)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect()
    };
    let stored = StoredMedia {
        phone_number_id: phone_id.to_owned(),
        mime_type: media.mime_type.clone(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes,
    };
    state.media.insert(id.clone(), stored.clone());
    Ok((id, stored))
}

/// `POST /sandbox/media`.
pub(crate) async fn upload(
    State(sandbox): State<Sandbox>,
    body: Body,
) -> Result<Response, GraphError> {
    let media: NewMedia = crate::control::json_body(body).await?;
    let mut state = sandbox.inner.lock();
    let phone_id = match media.phone_number_id.clone() {
        Some(id) if state.phone(&id).is_some() => id,
        Some(id) => {
            return Err(GraphError::invalid_param(format!(
                "Unknown phone_number_id {id}."
            )));
        }
        None => state.first_phone_id().ok_or_else(|| {
            GraphError::invalid_param("The sandbox has no phone number to receive media.")
        })?,
    };
    let (id, stored) = store(&mut state, &phone_id, &media)?;
    Ok(axum::Json(json!({
        "id": id,
        "sha256": stored.sha256,
        "file_size": stored.bytes.len(),
        "mime_type": stored.mime_type,
    }))
    .into_response())
}

/// `GET /{media-id}`: the download URL, valid for five minutes.
pub(crate) fn info(
    state: &mut World,
    id: &str,
    phone_number_id: Option<&str>,
    host: &str,
    now_ms: i64,
) -> Result<Value, GraphError> {
    let Some(media) = state.media.get(id) else {
        return Err(GraphError::unsupported("get", id));
    };
    if let Some(pn) = phone_number_id.filter(|p| !p.is_empty())
        && pn != media.phone_number_id
    {
        return Err(GraphError::invalid_param(format!(
            "Media {id} was not received on phone number {pn}."
        )));
    }
    let (mime, sha, size) = (
        media.mime_type.clone(),
        media.sha256.clone(),
        media.bytes.len(),
    );
    let hash = {
        let mut buf = [0u8; 18];
        rand::rng().fill(&mut buf);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
    };
    let expires = now_ms + URL_LIFE_MS;
    state
        .media_urls
        .insert(hash.clone(), (id.to_owned(), expires));
    Ok(json!({
        "messaging_product": "whatsapp",
        "url": format!("http://{host}/whatsapp_business/attachments/?mid={id}&ext={}&hash={hash}", expires / 1000),
        "mime_type": mime,
        "sha256": sha,
        "file_size": size.to_string(),
        "id": id,
    }))
}

#[derive(Deserialize)]
pub(crate) struct DownloadQuery {
    #[serde(default)]
    mid: String,
    #[serde(default)]
    hash: String,
}

/// `GET /whatsapp_business/attachments/?mid&ext&hash` with the bearer token.
pub(crate) async fn download(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Query(q): Query<DownloadQuery>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let now = sandbox.inner.clock.now_ms();
    let state = sandbox.inner.lock();
    if token.is_empty() {
        return GraphError::missing_token().into_response();
    }
    if !(state.config.access_tokens.iter().any(|t| t == token) || state.tokens.contains_key(token))
    {
        return GraphError::invalid_token().into_response();
    }
    let media = match state.media_urls.get(&q.hash) {
        Some((id, expires)) if *id == q.mid && now <= *expires => state.media.get(id),
        _ => None,
    };
    let Some(media) = media else {
        return (
            StatusCode::NOT_FOUND,
            "URL expired or unknown: request GET /{media-id} again",
        )
            .into_response();
    };
    (
        [(header::CONTENT_TYPE, media.mime_type.clone())],
        media.bytes.clone(),
    )
        .into_response()
}

/// The largest multipart body the Graph handler reads (Meta's 100 MB document limit).
pub(crate) const UPLOAD_BODY_LIMIT: usize = 100 * 1024 * 1024 + 64 * 1024;

/// The types and the size Meta takes for an uploaded file of this MIME type.
fn upload_limit(mime: &str) -> Option<usize> {
    const MB: usize = 1024 * 1024;
    Some(match mime {
        "image/jpeg" | "image/png" => 5 * MB,
        "video/mp4" | "video/3gpp" => 16 * MB,
        "audio/aac" | "audio/amr" | "audio/mpeg" | "audio/mp4" | "audio/ogg" => 16 * MB,
        "image/webp" => 500 * 1024,
        "text/plain"
        | "application/pdf"
        | "application/msword"
        | "application/vnd.ms-excel"
        | "application/vnd.ms-powerpoint"
        | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        | "application/vnd.openxmlformats-officedocument.presentationml.presentation" => 100 * MB,
        _ => return None,
    })
}

/// A `multipart/form-data` body as a JSON object: text fields as strings, a file part as
/// `{"filename", "content_type", "content_base64"}`.
pub(crate) fn parse_multipart(bytes: &[u8], content_type: &str) -> Result<Value, GraphError> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or_else(|| GraphError::invalid_param("The multipart body has no boundary."))?;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let malformed = || GraphError::invalid_param("The multipart body could not be parsed.");
    let mut map = serde_json::Map::new();
    let mut at = find(bytes, delimiter, 0).ok_or_else(malformed)? + delimiter.len();
    loop {
        if bytes.get(at..at + 2) == Some(b"--") {
            break;
        }
        at += 2; // CRLF after the delimiter
        let head_end = find(bytes, b"\r\n\r\n", at).ok_or_else(malformed)?;
        let head = std::str::from_utf8(&bytes[at..head_end]).map_err(|_| malformed())?;
        let content_start = head_end + 4;
        let mut close = Vec::with_capacity(delimiter.len() + 2);
        close.extend_from_slice(b"\r\n");
        close.extend_from_slice(delimiter);
        let content_end = find(bytes, &close, content_start).ok_or_else(malformed)?;
        let content = &bytes[content_start..content_end];
        let mut name = None;
        let mut filename = None;
        let mut part_type = None;
        for line in head.split("\r\n") {
            let (key, value) = line.split_once(':').unwrap_or((line, ""));
            match key.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for p in value.split(';').map(str::trim) {
                        if let Some(v) = p.strip_prefix("name=") {
                            name = Some(v.trim_matches('"').to_owned());
                        } else if let Some(v) = p.strip_prefix("filename=") {
                            filename = Some(v.trim_matches('"').to_owned());
                        }
                    }
                }
                "content-type" => part_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let name = name.ok_or_else(malformed)?;
        let value = match filename {
            Some(filename) => json!({
                "filename": filename,
                "content_type": part_type,
                "content_base64": base64::engine::general_purpose::STANDARD.encode(content),
            }),
            None => Value::String(String::from_utf8_lossy(content).into_owned()),
        };
        map.insert(name, value);
        at = content_end + close.len();
    }
    Ok(Value::Object(map))
}

/// `POST /{phone-number-id}/media`: stores the business's file; its id can be sent.
pub(crate) fn upload_graph(
    state: &mut World,
    phone_id: &str,
    body: &Value,
) -> Result<Value, GraphError> {
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err(GraphError::invalid_param(
            "The parameter messaging_product is required and must be whatsapp.",
        ));
    }
    let Some(file) = body.get("file").filter(|f| f.is_object()) else {
        return Err(GraphError::invalid_param("The parameter file is required."));
    };
    let mime = file
        .get("content_type")
        .and_then(Value::as_str)
        .or_else(|| body.get("type").and_then(Value::as_str))
        .unwrap_or("")
        .to_ascii_lowercase();
    let Some(limit) = upload_limit(&mime) else {
        return Err(GraphError::new(
            131053,
            format!("Unsupported file type {mime}."),
        ));
    };
    let content = file
        .get("content_base64")
        .and_then(Value::as_str)
        .unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content)
        .unwrap_or_default();
    if bytes.is_empty() || bytes.len() > limit {
        return Err(GraphError::new(
            131053,
            format!(
                "The file has {} bytes; {mime} files have 1 to {limit} bytes.",
                bytes.len()
            ),
        ));
    }
    let (id, _) = store(
        state,
        phone_id,
        &NewMedia {
            mime_type: mime,
            content_base64: content.to_owned(),
            phone_number_id: None,
        },
    )?;
    Ok(json!({ "id": id }))
}
