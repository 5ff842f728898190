//! The Graph API surface: every request that is not `/sandbox/…` lands here.
//!
//! One handler parses the path by hand (`/{vNN.N}/{id}[/{edge}]`, version optional as on
//! Meta) so that *every* failure — unknown ids, bad JSON, bad query strings, missing tokens —
//! comes back as Meta's error object rather than axum's plain-text rejections.
//!
//! Objects served: phone numbers (`GET /{phone}`, `POST /{phone}/messages`), WABAs
//! (`GET /{waba}`, `/{waba}/phone_numbers`, `/{waba}/message_templates`), business portfolios
//! (`GET /{business}`, `/{business}/owned_whatsapp_business_accounts`), templates
//! (`GET /{template-id}`, `POST`/`DELETE /{waba}/message_templates`), and onboarding
//! (`/oauth/access_token`, `/debug_token`, `/{waba}/subscribed_apps`, `/{phone}/register`,
//! `/{phone}/deregister`, `/{phone}/whatsapp_business_profile`), coexistence
//! (`/{phone}/smb_app_data`, `/{app-id}/subscriptions`: the `coexist` module).
//!
//! Versions: any `vNN.0` from v21.0 on (older: error 100, [`check_version`]). Reads go through
//! the `fields` module: field selection, expansion, `summary` and Meta's paging.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::Sandbox;
use crate::errors::GraphError;
use crate::fields::{self, Ctx, FieldSpec, Kind, PageRequest, Summary};
use crate::send::post_messages;
use crate::state::{RequestRecord, State as World};

/// Bodies above this are refused (Meta's webhook limit is 3 MB; sends are far smaller).
pub(crate) const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// A parsed request: what every Graph endpoint needs.
struct GraphRequest {
    method: Method,
    version_major: u32,
    version: String,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Value,
    host: String,
}

impl GraphRequest {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| self.body.get(name).and_then(Value::as_str))
    }
}

/// Fallback handler: Graph API requests.
pub(crate) async fn handle(
    State(sandbox): State<Sandbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received_ms = sandbox.inner.clock.now_ms();
    let latency = sandbox.inner.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let request = match parse_request(&sandbox, method.clone(), &uri, &headers, body).await {
        Ok(request) => request,
        Err(error) => {
            let path = uri.path().trim_start_matches('/').to_owned();
            record_request(
                &sandbox,
                method.as_str(),
                path,
                None,
                (received_ms, None),
                Err(&error),
            );
            return error.into_response();
        }
    };
    let answer = answer(&sandbox, &request, &headers);
    let path = request.segments.join("/");
    let fence = headers
        .get("x-parley-fence")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    record_request(
        &sandbox,
        request.method.as_str(),
        path,
        Some(&request),
        (received_ms, fence),
        answer.as_ref().map(|a| match a {
            Answer::Json(v) | Answer::Held(v, _) => v,
        }),
    );
    match answer {
        Ok(Answer::Json(value)) => (StatusCode::OK, axum::Json(value)).into_response(),
        Ok(Answer::Held(value, hold)) => {
            tokio::time::sleep(hold).await;
            (StatusCode::OK, axum::Json(value)).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// Adds one Graph call to the request log (`/sandbox/requests`): every call, accepted or
/// refused, so a test can prove that nothing reached Meta rather than that nothing was taken.
fn record_request(
    sandbox: &Sandbox,
    method: &str,
    path: String,
    request: Option<&GraphRequest>,
    (received_ms, fence): (i64, Option<i64>),
    outcome: Result<&Value, &GraphError>,
) {
    let at_ms = sandbox.inner.clock.now_ms();
    let send = request.filter(|r| {
        r.method == Method::POST
            && r.segments.len() == 2
            && matches!(r.segments[1].as_str(), "messages" | "marketing_messages")
    });
    let field = |key: &str| {
        send.and_then(|r| r.body.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let record = RequestRecord {
        seq: 0,
        at_ms,
        received_ms,
        method: method.to_owned(),
        path,
        phone_number_id: send.map(|r| r.segments[0].clone()),
        // The recipient as addressed: `to`, else the BSUID in `recipient` (META_2026 §3.3).
        to: field("to").or_else(|| field("recipient")),
        kind: send.map(|r| {
            r.body
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("text")
                .to_owned()
        }),
        template: send
            .and_then(|r| r.body.pointer("/template/name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        message_send_ttl_seconds: send
            .and_then(|r| r.body.pointer("/template/message_send_ttl_seconds"))
            .and_then(Value::as_i64),
        product_policy: field("product_policy"),
        outcome: if outcome.is_ok() {
            "accepted"
        } else {
            "refused"
        }
        .to_owned(),
        http_status: match outcome {
            Ok(_) => 200,
            Err(e) => e.http_status().as_u16(),
        },
        code: outcome.err().map(|e| e.code),
        wamid: send
            .and(outcome.ok())
            .and_then(|v| v.pointer("/messages/0/id"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        fence: send.and(fence),
    };
    sandbox.inner.lock().requests.push(record);
}

/// Authenticates, applies `fail_next_calls` and routes one parsed Graph call.
fn answer(
    sandbox: &Sandbox,
    request: &GraphRequest,
    headers: &HeaderMap,
) -> Result<Answer, GraphError> {
    if request.method == Method::GET && request.segments == ["oauth", "access_token"] {
        let now_ms = sandbox.inner.clock.now_ms();
        let mut state = sandbox.inner.lock();
        // An injected failure leaves the code unused, as a failed call at Meta does.
        if let Some(error) = call_fault(&mut state, request) {
            return Err(error);
        }
        return crate::signup::exchange_code(&mut state, now_ms, |k| {
            request.param(k).map(str::to_owned)
        })
        .map(Answer::Json);
    }
    let app_token_allowed = request.segments == ["debug_token"]
        || (request.segments.len() == 2
            && request.segments[1] == "subscriptions"
            && request.segments[0] == sandbox.inner.lock().config.app_id);
    authenticate(sandbox, headers, request, app_token_allowed)?;
    if let Some(error) = call_fault(&mut sandbox.inner.lock(), request) {
        return Err(error);
    }
    route(sandbox, request)
}

/// A `fail_next_calls` fault for this call, taken (checked after the token, like Meta's
/// front end, so an unauthenticated call does not use it up).
fn call_fault(state: &mut World, request: &GraphRequest) -> Option<GraphError> {
    state
        .faults
        .take_call_fault(request.method.as_str(), &request.segments)
}

enum Answer {
    Json(Value),
    Held(Value, Duration),
}

async fn parse_request(
    sandbox: &Sandbox,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<GraphRequest, GraphError> {
    let query = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| GraphError::invalid_param(format!("Invalid query string: {e}")))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // Media uploads (`POST /{phone}/media`) are multipart and up to Meta's 100 MB.
    let multipart = content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data");
    let limit = if multipart {
        crate::media::UPLOAD_BODY_LIMIT
    } else {
        BODY_LIMIT
    };
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        GraphError::invalid_param(format!(
            "The request body is too large (limit {limit} bytes) or could not be read."
        ))
    })?;
    let body = if multipart {
        crate::media::parse_multipart(&bytes, &content_type)?
    } else {
        parse_body(&bytes, &content_type.to_ascii_lowercase())?
    };

    let mut segments: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let configured = sandbox.inner.lock().config.graph_version.clone();
    let version = match segments
        .first()
        .and_then(|s| version_major(s).map(|_| s.clone()))
    {
        Some(v) => {
            segments.remove(0);
            v
        }
        None => configured,
    };
    check_version(&version)?;
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    Ok(GraphRequest {
        method,
        version_major: version_major(&version).unwrap_or(NEWEST_VERSION),
        version,
        segments,
        query,
        body,
        host,
    })
}

/// The oldest Graph API version Meta still serves (v20.0 was removed on 2026-09-24; v21.0
/// goes on 2027-01-21, META_2026.md §9.1).
pub(crate) const OLDEST_VERSION: u32 = 21;
/// The current version (v27.0, since 2026-11-04).
pub(crate) const NEWEST_VERSION: u32 = 27;

/// Any `vNN.0` from v21.0 on is served; older versions (and minor versions Meta never had)
/// get error 100 naming the versions to use.
fn check_version(version: &str) -> Result<(), GraphError> {
    let minor_ok = version
        .split_once('.')
        .is_none_or(|(_, minor)| minor.chars().all(|c| c == '0'));
    match version_major(version) {
        Some(major) if major >= OLDEST_VERSION && minor_ok => Ok(()),
        _ => Err(GraphError {
            code: 100,
            message: format!(
                "Unsupported version: {version}. The Graph API versions available are v{OLDEST_VERSION}.0 to v{NEWEST_VERSION}.0 (current: v{NEWEST_VERSION}.0); older versions have been removed. Use a format like 'v{NEWEST_VERSION}.0'."
            ),
            details: None,
            kind: "OAuthException",
            subcode: None,
        }),
    }
}

/// `"v23.0"` → 23; anything else is not a version segment.
fn version_major(segment: &str) -> Option<u32> {
    let rest = segment.strip_prefix('v')?;
    let (major, minor) = rest.split_once('.').unwrap_or((rest, "0"));
    if minor.is_empty() || !minor.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    major.parse().ok()
}

/// JSON bodies as sent; form bodies as Graph accepts them (JSON-looking values decoded).
fn parse_body(bytes: &[u8], content_type: &str) -> Result<Value, GraphError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| GraphError::invalid_param("The form body is not valid UTF-8."))?;
        let uri: Uri = format!("/?{}", text.trim())
            .parse()
            .map_err(|_| GraphError::invalid_param("The form body could not be parsed."))?;
        let pairs = Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .map_err(|e| {
                GraphError::invalid_param(format!("The form body could not be parsed: {e}"))
            })?
            .0;
        let mut map = Map::new();
        for (key, value) in pairs {
            let trimmed = value.trim_start();
            let parsed = if trimmed.starts_with('{') || trimmed.starts_with('[') {
                serde_json::from_str(&value).unwrap_or(Value::String(value))
            } else {
                Value::String(value)
            };
            map.insert(key, parsed);
        }
        return Ok(Value::Object(map));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| GraphError::invalid_param(format!("The request body is not valid JSON: {e}")))
}

fn authenticate(
    sandbox: &Sandbox,
    headers: &HeaderMap,
    request: &GraphRequest,
    app_token_allowed: bool,
) -> Result<(), GraphError> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
                .then(|| token.trim().to_owned())
        });
    let token = from_header.or_else(|| request.param("access_token").map(str::to_owned));
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(GraphError::missing_token());
    };
    let accepted = {
        let state = sandbox.inner.lock();
        let config = &state.config;
        config.access_tokens.contains(&token)
            || state.tokens.contains_key(&token)
            || (app_token_allowed && token == format!("{}|{}", config.app_id, config.app_secret))
    };
    if accepted {
        Ok(())
    } else {
        Err(GraphError::invalid_token())
    }
}

fn route(sandbox: &Sandbox, request: &GraphRequest) -> Result<Answer, GraphError> {
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let method = request.method.as_str();
    let now_ms = sandbox.inner.clock.now_ms();
    let mut state = sandbox.inner.lock();
    let json = Answer::Json;
    match (&request.method, segments.as_slice()) {
        (&Method::GET, ["debug_token"]) => crate::onboarding::debug_token(
            &state,
            request.param("input_token"),
            now_ms.div_euclid(1000),
        )
        .map(json),
        (&Method::GET, [id]) if state.media.contains_key(*id) => crate::media::info(
            &mut state,
            id,
            request.param("phone_number_id"),
            &request.host,
            now_ms,
        )
        .map(json),
        (&Method::GET, [id]) => get_object(&state, request, id, now_ms).map(json),
        (&Method::POST, [id]) if state.phone(id).is_some() => {
            crate::onboarding::set_pin(&mut state, id, &request.body).map(json)
        }
        (&Method::POST, [id]) if state.waba(id).is_some() => {
            crate::consent::post_waba(&mut state, id, &request.body).map(json)
        }
        (&Method::POST, [id, "message_templates"]) if state.waba(id).is_some() => {
            crate::templates::create(&mut state, now_ms, id, &request.body).map(json)
        }
        (&Method::DELETE, [id, "message_templates"]) if state.waba(id).is_some() => {
            crate::templates::delete(
                &mut state,
                id,
                request.param("name"),
                request.param("hsm_id"),
            )
            .map(json)
        }
        (_, [id, "subscribed_apps"]) if state.waba(id).is_some() => {
            crate::onboarding::subscribed_apps(&mut state, method, id, &request.body).map(json)
        }
        (_, [id, "subscriptions"]) if *id == state.config.app_id => {
            crate::coexist::app_subscriptions(&mut state, method, |k| {
                request
                    .query
                    .iter()
                    .rev()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| Value::String(v.clone()))
                    .or_else(|| request.body.get(k).cloned())
            })
            .map(json)
        }
        (&Method::POST, [id, "smb_app_data"]) if state.phone(id).is_some() => {
            crate::coexist::smb_app_data(&mut state, now_ms, id, &request.body).map(json)
        }
        (&Method::POST, [id, edge @ ("register" | "deregister")]) if state.phone(id).is_some() => {
            if *edge == "deregister" {
                crate::coexist::refuse_deregister(&state, id)?;
            }
            crate::onboarding::register(
                &mut state,
                now_ms,
                id,
                &request.body,
                *edge == "deregister",
            )
            .map(json)
        }
        (&Method::POST, [id, "phone_numbers"]) if state.waba(id).is_some() => {
            let query = |name: &str| request.param(name).map(str::to_owned);
            crate::verification::add_phone_number(&mut state, id, &request.body, &query).map(json)
        }
        (&Method::POST, [id, "request_code"]) if state.phone(id).is_some() => {
            let query = |name: &str| request.param(name).map(str::to_owned);
            crate::verification::request_code(&mut state, now_ms, id, &request.body, &query)
                .map(json)
        }
        (&Method::POST, [id, "verify_code"]) if state.phone(id).is_some() => {
            let query = |name: &str| request.param(name).map(str::to_owned);
            crate::verification::verify_code(&mut state, now_ms, id, &request.body, &query)
                .map(json)
        }
        (&Method::POST, [id, "whatsapp_business_profile"]) if state.phone(id).is_some() => {
            crate::onboarding::business_profile(&mut state, method, id, &request.body).map(json)
        }
        (&Method::POST, [id, "media"]) if state.phone(id).is_some() => {
            crate::media::upload_graph(&mut state, id, &request.body).map(json)
        }
        (&Method::POST, [id, "messages"]) if state.phone(id).is_some() => {
            let outcome =
                post_messages(&mut state, now_ms, request.version_major, id, &request.body)?;
            Ok(match outcome.hold {
                Some(hold) => Answer::Held(outcome.body, hold),
                None => Answer::Json(outcome.body),
            })
        }
        (&Method::POST, [id, "marketing_messages"]) if state.phone(id).is_some() => {
            let outcome = crate::consent::post_marketing_messages(
                &mut state,
                now_ms,
                request.version_major,
                id,
                &request.body,
            )?;
            Ok(match outcome.hold {
                Some(hold) => Answer::Held(outcome.body, hold),
                None => Answer::Json(outcome.body),
            })
        }
        (&Method::GET, [id, "message_templates"]) if state.waba(id).is_some() => {
            list_templates(&state, request, id, now_ms).map(Answer::Json)
        }
        (&Method::GET, [id, edge])
            if Kind::of(&state, id).is_some_and(|k| fields::is_edge(k, edge)) =>
        {
            let kind = Kind::of(&state, id).unwrap_or(Kind::Waba);
            get_edge(&state, request, kind, id, edge, now_ms).map(json)
        }
        (_, [id, ..]) => Err(GraphError::unsupported(method, id)),
        (_, []) => Err(GraphError::unsupported(method, "")),
    }
}

fn ctx(request: &GraphRequest, now_ms: i64) -> Ctx<'_> {
    Ctx {
        host: &request.host,
        version: &request.version,
        now_ms,
    }
}

/// The `fields` parameter, parsed (`None`: the node's default fields).
fn requested_fields(request: &GraphRequest) -> Result<Option<Vec<FieldSpec>>, GraphError> {
    match request.param("fields") {
        None => Ok(None),
        Some(raw) => fields::parse(raw),
    }
}

/// `limit`, `after`, `before` and `summary` of a list edge.
fn page_request<'a>(
    request: &'a GraphRequest,
    keep: &[&'a str],
) -> Result<PageRequest<'a>, GraphError> {
    let limit = match request.param("limit") {
        None | Some("") => None,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(GraphError::invalid_param(format!(
                    "Param limit must be a positive integer - got {raw}."
                )));
            }
        },
    };
    let summary = match request.param("summary") {
        None => None,
        Some(raw) => Summary::parse(raw)?,
    };
    Ok(PageRequest {
        limit,
        after: request.param("after"),
        before: request.param("before"),
        summary,
        keep: keep
            .iter()
            .filter_map(|key| {
                request
                    .param(key)
                    .filter(|v| !v.is_empty())
                    .map(|v| (*key, v.to_owned()))
            })
            .collect(),
    })
}

fn get_object(
    state: &World,
    request: &GraphRequest,
    id: &str,
    now_ms: i64,
) -> Result<Value, GraphError> {
    let Some(kind) = Kind::of(state, id) else {
        return Err(GraphError::unsupported("get", id));
    };
    let fields = requested_fields(request)?;
    fields::node(state, kind, id, fields.as_deref(), &ctx(request, now_ms))
}

/// `GET /{parent}/{edge}` for the list edges served through field selection.
fn get_edge(
    state: &World,
    request: &GraphRequest,
    kind: Kind,
    id: &str,
    edge: &str,
    now_ms: i64,
) -> Result<Value, GraphError> {
    let fields = requested_fields(request)?;
    let page = page_request(request, &[])?;
    fields::edge(
        state,
        kind,
        id,
        edge,
        fields.as_deref(),
        &page,
        &ctx(request, now_ms),
    )
}

fn list_templates(
    state: &World,
    request: &GraphRequest,
    waba_id: &str,
    now_ms: i64,
) -> Result<Value, GraphError> {
    let Some(waba) = state.waba(waba_id) else {
        return Err(GraphError::unsupported("get", waba_id));
    };
    let matches = |template: &&Value, key: &str, exact: bool| match request.param(key) {
        None | Some("") => true,
        Some(wanted) => {
            let have = template.get(key).and_then(Value::as_str).unwrap_or("");
            if exact {
                have == wanted
            } else {
                have.eq_ignore_ascii_case(wanted)
            }
        }
    };
    let ids: Vec<String> = waba
        .templates
        .iter()
        .filter(|t| matches(t, "name", true))
        .filter(|t| matches(t, "language", true))
        .filter(|t| matches(t, "status", false))
        .filter(|t| matches(t, "category", false))
        .filter_map(|t| t.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let fields = requested_fields(request)?;
    let page = page_request(request, &["name", "language", "status", "category"])?;
    fields::edge_of(
        state,
        Kind::Waba,
        waba_id,
        "message_templates",
        ids,
        fields.as_deref(),
        &page,
        &ctx(request, now_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(version_major("v23.0"), Some(23));
        assert_eq!(version_major("v9"), Some(9));
        assert_eq!(version_major("106540352242922"), None);
        assert_eq!(version_major("v23."), None);
    }

    #[test]
    fn versions_from_v21_on() {
        for ok in [
            "v21.0", "v23.0", "v24.0", "v25.0", "v26.0", "v27.0", "v28.0",
        ] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for old in ["v20.0", "v2.0", "v9", "v23.1", "v0.0"] {
            let err = check_version(old).expect_err(old);
            assert_eq!(err.code, 100, "{old}");
            assert!(err.message.contains("v27.0"), "{}", err.message);
        }
    }

    #[test]
    fn cursors_are_checked() {
        assert!(fields::decode_cursor("???").is_err());
    }
}
