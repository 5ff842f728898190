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
//! `/{phone}/deregister`, `/{phone}/whatsapp_business_profile`).

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::Sandbox;
use crate::errors::GraphError;
use crate::send::post_messages;
use crate::state::{PhoneRef, RequestRecord, State as World};

/// Bodies above this are refused (Meta's webhook limit is 3 MB; sends are far smaller).
pub(crate) const BODY_LIMIT: usize = 4 * 1024 * 1024;
const DEFAULT_PAGE: usize = 25;
const MAX_PAGE: usize = 1000;

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
    let latency = sandbox.inner.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let request = match parse_request(&sandbox, method.clone(), &uri, &headers, body).await {
        Ok(request) => request,
        Err(error) => {
            let path = uri.path().trim_start_matches('/').to_owned();
            record_request(&sandbox, method.as_str(), path, None, Err(&error));
            return error.into_response();
        }
    };
    let answer = answer(&sandbox, &request, &headers);
    let path = request.segments.join("/");
    record_request(
        &sandbox,
        request.method.as_str(),
        path,
        Some(&request),
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
    outcome: Result<&Value, &GraphError>,
) {
    let at_ms = sandbox.inner.clock.now_ms();
    let send = request.filter(|r| {
        r.method == Method::POST && r.segments.len() == 2 && r.segments[1] == "messages"
    });
    let field = |key: &str| {
        send.and_then(|r| r.body.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let record = RequestRecord {
        seq: 0,
        at_ms,
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
    let app_token_allowed = request.segments == ["debug_token"];
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
    let bytes = to_bytes(body, BODY_LIMIT).await.map_err(|_| {
        GraphError::invalid_param(format!(
            "The request body is too large (limit {BODY_LIMIT} bytes) or could not be read."
        ))
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = parse_body(&bytes, &content_type)?;

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
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    Ok(GraphRequest {
        method,
        version_major: version_major(&version).unwrap_or(23),
        version,
        segments,
        query,
        body,
        host,
    })
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
        (&Method::GET, [id]) => get_object(&state, request, id).map(json),
        (&Method::POST, [id]) if state.phone(id).is_some() => {
            crate::onboarding::set_pin(&mut state, id, &request.body).map(json)
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
        (&Method::POST, [id, edge @ ("register" | "deregister")]) if state.phone(id).is_some() => {
            crate::onboarding::register(
                &mut state,
                now_ms,
                id,
                &request.body,
                *edge == "deregister",
            )
            .map(json)
        }
        (&Method::GET | &Method::POST, [id, "whatsapp_business_profile"])
            if state.phone(id).is_some() =>
        {
            crate::onboarding::business_profile(&mut state, method, id, &request.body).map(json)
        }
        (&Method::POST, [id, "messages"]) if state.phone(id).is_some() => {
            let outcome =
                post_messages(&mut state, now_ms, request.version_major, id, &request.body)?;
            Ok(match outcome.hold {
                Some(hold) => Answer::Held(outcome.body, hold),
                None => Answer::Json(outcome.body),
            })
        }
        (&Method::GET, [id, "message_templates"]) if state.waba(id).is_some() => {
            list_templates(&state, request, id).map(Answer::Json)
        }
        (&Method::GET, [id, "phone_numbers"]) if state.waba(id).is_some() => {
            list_phone_numbers(&state, request, id).map(Answer::Json)
        }
        (
            &Method::GET,
            [
                id,
                "owned_whatsapp_business_accounts" | "client_whatsapp_business_accounts",
            ],
        ) if state.business(id).is_some() => {
            list_wabas(&state, request, id, segments[1]).map(Answer::Json)
        }
        (_, [id, ..]) => Err(GraphError::unsupported(method, id)),
        (_, []) => Err(GraphError::unsupported(method, "")),
    }
}

fn get_object(state: &World, request: &GraphRequest, id: &str) -> Result<Value, GraphError> {
    let fields = requested_fields(request);
    if let Some(phone) = state.phone(id) {
        return select_fields(
            phone_object(&phone, state.pins.contains_key(id)),
            &PHONE_DEFAULT_FIELDS,
            fields.as_deref(),
            "WhatsAppBusinessPhoneNumber",
        );
    }
    if let Some(waba) = state.waba(id) {
        let business = state.business_of_waba(&waba.id);
        let limit = waba
            .phone_numbers
            .first()
            .map_or("TIER_250", |p| p.messaging_limit.as_str());
        let object = json!({
            "id": waba.id,
            "name": waba.name,
            "currency": waba.currency,
            "timezone_id": waba.timezone_id,
            "message_template_namespace": waba.message_template_namespace,
            "account_review_status": waba.account_review_status,
            "business_verification_status": business.map_or("verified", |b| b.verification_status.as_str()),
            "ownership_type": "CLIENT_OWNED",
            "whatsapp_business_manager_messaging_limit": limit,
            "on_behalf_of_business_info": business.map(|b| json!({
                "id": b.id, "name": b.name, "status": "APPROVED", "type": "SELF"
            })),
        });
        return select_fields(
            object,
            &WABA_DEFAULT_FIELDS,
            fields.as_deref(),
            "WhatsAppBusinessAccount",
        );
    }
    if let Some(business) = state.business(id) {
        let object = json!({
            "id": business.id,
            "name": business.name,
            "verification_status": business.verification_status,
            "website": business.website,
            "primary_country": business.country,
            "address": business.address,
        });
        return select_fields(object, &["id", "name"], fields.as_deref(), "Business");
    }
    if let Some(template) = state.template(id) {
        return Ok(match fields {
            Some(fields) => pick(template, &fields),
            None => template.clone(),
        });
    }
    Err(GraphError::unsupported("get", id))
}

const PHONE_DEFAULT_FIELDS: [&str; 10] = [
    "id",
    "display_phone_number",
    "verified_name",
    "quality_rating",
    "code_verification_status",
    "name_status",
    "platform_type",
    "throughput",
    "status",
    "whatsapp_business_manager_messaging_limit",
];

const WABA_DEFAULT_FIELDS: [&str; 7] = [
    "id",
    "name",
    "currency",
    "timezone_id",
    "message_template_namespace",
    "account_review_status",
    "business_verification_status",
];

fn phone_object(phone: &PhoneRef<'_>, pin_enabled: bool) -> Value {
    let p = phone.phone;
    let digits = crate::state::digits(&p.display_phone_number);
    let dial_code: String = p
        .display_phone_number
        .trim_start_matches('+')
        .split([' ', '-'])
        .next()
        .unwrap_or("")
        .to_owned();
    // Meta names only STANDARD; "HIGH" for upgraded numbers is our guess (META_API.md §2.3).
    let level = if p.throughput_mps > 80 {
        "HIGH"
    } else {
        "STANDARD"
    };
    json!({
        "id": p.id,
        "display_phone_number": p.display_phone_number,
        "verified_name": p.verified_name,
        "quality_rating": p.quality_rating,
        "code_verification_status": "VERIFIED",
        "name_status": p.name_status,
        "platform_type": "CLOUD_API",
        "throughput": {"level": level},
        "status": p.status,
        "whatsapp_business_manager_messaging_limit": p.messaging_limit,
        "messaging_limit_tier": p.messaging_limit,
        "account_mode": "LIVE",
        "host_platform": "CLOUD_API",
        "is_official_business_account": false,
        "is_pin_enabled": pin_enabled,
        "quality_score": {"score": p.quality_rating},
        "new_name_status": "NONE",
        "search_visibility": "VISIBLE",
        "country_dial_code": dial_code,
        "wa_id": digits,
    })
}

/// The `fields` query parameter, without sub-selections (`throughput{level}` → `throughput`).
fn requested_fields(request: &GraphRequest) -> Option<Vec<String>> {
    let raw = request.param("fields")?;
    let fields: Vec<String> = raw
        .split(',')
        .map(|f| {
            f.split(['{', '.', '('])
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .filter(|f| !f.is_empty())
        .collect();
    (!fields.is_empty()).then_some(fields)
}

/// Default fields, or exactly the asked ones plus `id`; unknown fields are Meta's error 100.
fn select_fields(
    object: Value,
    defaults: &[&str],
    fields: Option<&[String]>,
    node_type: &str,
) -> Result<Value, GraphError> {
    let Value::Object(all) = object else {
        return Ok(object);
    };
    let mut out = Map::new();
    match fields {
        None => {
            for key in defaults {
                if let Some(value) = all.get(*key).filter(|v| !v.is_null()) {
                    out.insert((*key).to_owned(), value.clone());
                }
            }
        }
        Some(fields) => {
            for field in fields {
                match all.get(field) {
                    Some(Value::Null) => {}
                    Some(value) => {
                        out.insert(field.clone(), value.clone());
                    }
                    None => return Err(GraphError::nonexisting_field(field, node_type)),
                }
            }
            if let Some(id) = all.get("id") {
                out.insert("id".to_owned(), id.clone());
            }
        }
    }
    Ok(Value::Object(out))
}

/// Keeps only `fields` (and `id`) of a stored object; absent fields are simply absent.
fn pick(object: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    for field in fields.iter().map(String::as_str).chain(["id"]) {
        if let Some(value) = object.get(field) {
            out.insert(field.to_owned(), value.clone());
        }
    }
    Value::Object(out)
}

fn list_templates(
    state: &World,
    request: &GraphRequest,
    waba_id: &str,
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
    let filtered: Vec<&Value> = waba
        .templates
        .iter()
        .filter(|t| matches(t, "name", true))
        .filter(|t| matches(t, "language", true))
        .filter(|t| matches(t, "status", false))
        .filter(|t| matches(t, "category", false))
        .collect();
    let fields = requested_fields(request);
    let rows: Vec<Value> = filtered
        .iter()
        .map(|t| match &fields {
            Some(fields) => pick(t, fields),
            None => (*t).clone(),
        })
        .collect();
    let path = format!("{waba_id}/message_templates");
    let keep = ["name", "language", "status", "category", "fields"];
    paginate(request, &path, &keep, rows)
}

fn list_phone_numbers(
    state: &World,
    request: &GraphRequest,
    waba_id: &str,
) -> Result<Value, GraphError> {
    let Some(waba) = state.waba(waba_id) else {
        return Err(GraphError::unsupported("get", waba_id));
    };
    let fields = requested_fields(request);
    let mut rows = Vec::new();
    for phone in &waba.phone_numbers {
        let Some(found) = state.phone(&phone.id) else {
            continue;
        };
        rows.push(select_fields(
            phone_object(&found, state.pins.contains_key(&phone.id)),
            &PHONE_DEFAULT_FIELDS,
            fields.as_deref(),
            "WhatsAppBusinessPhoneNumber",
        )?);
    }
    paginate(
        request,
        &format!("{waba_id}/phone_numbers"),
        &["fields"],
        rows,
    )
}

fn list_wabas(
    state: &World,
    request: &GraphRequest,
    business_id: &str,
    edge: &str,
) -> Result<Value, GraphError> {
    let Some(business) = state.business(business_id) else {
        return Err(GraphError::unsupported("get", business_id));
    };
    // The seeded portfolio owns its WABAs; clients' WABAs are the same list in the sandbox.
    let rows = business
        .wabas
        .iter()
        .map(|w| {
            json!({
                "id": w.id,
                "name": w.name,
                "currency": w.currency,
                "timezone_id": w.timezone_id,
                "message_template_namespace": w.message_template_namespace,
            })
        })
        .collect();
    paginate(request, &format!("{business_id}/{edge}"), &["fields"], rows)
}

fn encode_cursor(index: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("cursor:{index}"))
}

fn decode_cursor(cursor: &str) -> Result<usize, GraphError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|s| s.strip_prefix("cursor:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| GraphError::invalid_param(format!("Invalid cursor '{cursor}'.")))
}

/// Meta's cursor paging: `{"data":[…],"paging":{"cursors":{"before","after"},"next"?,"previous"?}}`.
fn paginate(
    request: &GraphRequest,
    path: &str,
    keep: &[&str],
    rows: Vec<Value>,
) -> Result<Value, GraphError> {
    let limit = match request.param("limit") {
        None | Some("") => DEFAULT_PAGE,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_PAGE),
            _ => {
                return Err(GraphError::invalid_param(format!(
                    "Param limit must be a positive integer - got {raw}."
                )));
            }
        },
    };
    let total = rows.len();
    let (start, end) = if let Some(after) = request.param("after").filter(|s| !s.is_empty()) {
        let start = decode_cursor(after)?.saturating_add(1).min(total);
        (start, start.saturating_add(limit).min(total))
    } else if let Some(before) = request.param("before").filter(|s| !s.is_empty()) {
        let end = decode_cursor(before)?.min(total);
        (end.saturating_sub(limit), end)
    } else {
        (0, limit.min(total))
    };
    let data: Vec<Value> = rows.into_iter().skip(start).take(end - start).collect();
    if data.is_empty() {
        return Ok(json!({ "data": [] }));
    }
    let link = |cursor_key: &str, cursor: &str| {
        let mut query = format!("limit={limit}&{cursor_key}={}", encode_query(cursor));
        for key in keep {
            if let Some(value) = request.param(key).filter(|v| !v.is_empty()) {
                query.push_str(&format!("&{key}={}", encode_query(value)));
            }
        }
        format!("http://{}/{}/{path}?{query}", request.host, request.version)
    };
    let before = encode_cursor(start);
    let after = encode_cursor(end - 1);
    let mut paging = json!({ "cursors": { "before": before, "after": after } });
    if end < total {
        paging["next"] = json!(link("after", &after));
    }
    if start > 0 {
        paging["previous"] = json!(link("before", &before));
    }
    Ok(json!({ "data": data, "paging": paging }))
}

fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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
    fn cursors_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor(41)), Ok(41));
        assert!(decode_cursor("???").is_err());
    }
}
