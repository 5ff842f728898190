//! `POST /{phone-number-id}/messages`: the send path, checked in Meta's order.
//!
//! Envelope and per-type checks first (100, 131008, 131009, 131021, template codes from
//! [`crate::validate`]), then injected faults, then the rules that depend on time: the 24 h
//! customer-service window (131047), the number's throughput (130429) and the pair rate per
//! recipient (131056). An accepted send is recorded with its exact body and its status
//! webhooks are queued at their virtual times.

use std::time::Duration;

use base64::Engine as _;
use rand::Rng;
use serde_json::{Value, json};

use crate::consent::{Endpoint, Fate, HeldSend};
use crate::errors::GraphError;
use crate::state::{Bucket, EventKind, RecordedMessage, State, digits};
use crate::validate::{check_template_send, find_template, is_http_url};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// One pair-rate token refills every 6 s (Meta: 1 message every 6 seconds per user).
const PAIR_REFILL_MS: f64 = 6000.0;
const TEXT_MAX: usize = 4096;
const CAPTION_MAX: usize = 1024;
const DEFAULT_TIMEOUT_HOLD_MS: u64 = 30_000;

const MESSAGE_TYPES: &[&str] = &[
    "audio",
    "contacts",
    "document",
    "image",
    "interactive",
    "location",
    "reaction",
    "sticker",
    "template",
    "text",
    "video",
];

/// A successful answer, possibly held back by an injected timeout.
pub(crate) struct SendOutcome {
    pub body: Value,
    pub hold: Option<Duration>,
}

/// Runs one `POST /{phone}/messages` against the state at virtual time `now_ms`.
/// The caller has checked that `phone_id` exists.
pub(crate) fn post_messages(
    state: &mut State,
    now_ms: i64,
    version_major: u32,
    phone_id: &str,
    body: &Value,
) -> Result<SendOutcome, GraphError> {
    // A marketing template's time-to-live exists only on the Marketing Messages API (§7).
    if body.pointer("/template/message_send_ttl_seconds").is_some() {
        return Err(GraphError::invalid_param(
            "Param template['message_send_ttl_seconds'] is not supported on /messages: a marketing template's time-to-live is set through the Marketing Messages API (/marketing_messages).",
        ));
    }
    post_via(
        state,
        now_ms,
        version_major,
        phone_id,
        body,
        Endpoint::CloudApi,
    )
}

/// One send through `endpoint` (`/messages` or `/marketing_messages`).
pub(crate) fn post_via(
    state: &mut State,
    now_ms: i64,
    version_major: u32,
    phone_id: &str,
    body: &Value,
    endpoint: Endpoint,
) -> Result<SendOutcome, GraphError> {
    if !body.is_object() {
        return Err(GraphError::invalid_param(
            "The request body must be a JSON object.",
        ));
    }
    match body.get("messaging_product") {
        None | Some(Value::Null) => {
            return Err(GraphError::invalid_param(
                "The parameter messaging_product is required.",
            ));
        }
        Some(Value::String(p)) if p == "whatsapp" => {}
        Some(other) => {
            return Err(GraphError::invalid_param(format!(
                "Param messaging_product must be one of {{WHATSAPP}} - got {other}."
            )));
        }
    }
    if body.get("status").is_some() {
        return mark_as_read(state, now_ms, phone_id, body);
    }

    match body.get("recipient_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(r)) if r == "individual" || r == "group" => {}
        Some(other) => {
            return Err(GraphError::invalid_param(format!(
                "Param recipient_type must be one of {{INDIVIDUAL, GROUP}} - got {other}."
            )));
        }
    }
    // `to` (a phone) wins over `recipient` (a BSUID), which is read only without it
    // (META_2026 §3.3).
    let (input, wa_id, by_bsuid) = match (
        string_param(body, "to")?,
        string_param(body, "recipient")?,
    ) {
        (Some(input), _) => {
            let wa_id = digits(&input);
            let plausible = input
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'));
            if !plausible || !(5..=20).contains(&wa_id.len()) {
                return Err(GraphError::new(
                    131009,
                    format!("Param to '{input}' is not a valid phone number."),
                ));
            }
            (input, wa_id, false)
        }
        (None, Some(recipient)) => {
            // Byte-exact, and only a BSUID of this number's own portfolio.
            let business = state.business_of_phone(phone_id);
            let Some(wa_id) = state.users.find(&business, &recipient) else {
                return Err(GraphError::new(
                    131009,
                    format!(
                        "Param recipient '{recipient}' is not a business-scoped user ID of a WhatsApp user of this business portfolio."
                    ),
                ));
            };
            (recipient, wa_id, true)
        }
        (None, None) => {
            return Err(GraphError::new(131008, "The parameter to is required."));
        }
    };

    let (own_digits, mps, templates, waba_id) = {
        let Some(phone) = state.phone(phone_id) else {
            return Err(GraphError::unsupported("post", phone_id));
        };
        (
            digits(&phone.phone.display_phone_number),
            phone.phone.throughput_mps,
            phone.waba.templates.clone(),
            phone.waba.id.clone(),
        )
    };
    // Coexistence numbers are fixed at 20 mps whatever their throughput setting.
    let mps = if state.coexistence.contains_key(phone_id) {
        crate::coexist::COEXISTENCE_MPS
    } else {
        mps
    };
    crate::coexist::refuse_offboarded_send(state, phone_id)?;
    if wa_id == own_digits {
        return Err(GraphError::new(
            131021,
            "Recipient phone number is the same as the sender phone number.",
        ));
    }

    let kind = match body.get("type") {
        None | Some(Value::Null) => "text".to_owned(),
        Some(Value::String(t)) if MESSAGE_TYPES.contains(&t.as_str()) => t.clone(),
        Some(other) => {
            return Err(GraphError::invalid_param(format!(
                "Param type must be one of {{AUDIO, CONTACTS, DOCUMENT, IMAGE, INTERACTIVE, LOCATION, REACTION, STICKER, TEMPLATE, TEXT, VIDEO}} - got {other}."
            )));
        }
    };
    let category = check_payload(&kind, body, &templates)?;
    if by_bsuid && category == "authentication" {
        return Err(GraphError::new(
            131062,
            "Authentication templates need the user's phone number: send them with `to`.",
        ));
    }
    check_context(body)?;
    let biz_opaque = match body.get("biz_opaque_callback_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= 512 => Some(s.clone()),
        Some(_) => {
            return Err(GraphError::invalid_param(
                "Param biz_opaque_callback_data must be a string of at most 512 characters.",
            ));
        }
    };

    inject_fault(state)?;
    crate::consent::check_marketing_allowed(state, &waba_id, &kind, &category, endpoint)?;

    let window_key = (phone_id.to_owned(), wa_id.clone());
    let window_open = state
        .windows
        .get(&window_key)
        .is_some_and(|opened| now_ms.saturating_sub(*opened) < DAY_MS);
    if kind != "template" && state.config.behaviour.enforce_service_window && !window_open {
        return Err(GraphError::new(
            131047,
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ));
    }

    let recent = state.throughput.entry(phone_id.to_owned()).or_default();
    while recent.front().is_some_and(|t| *t <= now_ms - 1000) {
        recent.pop_front();
    }
    if recent.len() >= mps as usize {
        state.requests.rate_refused(phone_id, 130429);
        return Err(GraphError::new(
            130429,
            "Message failed to send because there were too many messages sent from this phone number in a short period of time.",
        ));
    }

    let burst = f64::from(state.config.behaviour.pair_rate_burst);
    let bucket = state.pair_buckets.entry(window_key).or_insert(Bucket {
        tokens: burst,
        updated_ms: now_ms,
    });
    let elapsed = now_ms.saturating_sub(bucket.updated_ms).max(0) as f64;
    bucket.tokens = (bucket.tokens + elapsed / PAIR_REFILL_MS).min(burst);
    bucket.updated_ms = now_ms;
    if bucket.tokens < 1.0 {
        state.requests.rate_refused(phone_id, 131056);
        return Err(GraphError::new(
            131056,
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
        ));
    }
    bucket.tokens -= 1.0;
    if let Some(recent) = state.throughput.get_mut(phone_id) {
        recent.push_back(now_ms);
    }

    crate::limits::check_and_record(
        state,
        now_ms,
        phone_id,
        &wa_id,
        kind == "template" && !window_open,
    )?;
    let business = state.business_of_phone(phone_id);
    let recipient = crate::users::StatusRecipient {
        user_id: state.users.bsuid(&business, &wa_id),
        parent: state
            .config
            .behaviour
            .parent_bsuids
            .then(|| state.users.parent_bsuid(&wa_id)),
        withheld: by_bsuid && state.withholds_phone(phone_id, &wa_id, now_ms),
        wa_id: wa_id.clone(),
        by_bsuid,
    };
    if !by_bsuid {
        state.exchanged_by_phone(phone_id, &wa_id, now_ms);
    }
    let wamid = loop {
        let candidate = new_wamid(&wa_id, false);
        if !state.messages.contains(&candidate) {
            break candidate;
        }
    };
    let fate = crate::consent::fate_of_accepted(state, &wa_id, &kind, &category);
    // Sent through the Marketing Messages API: Meta prices it as `marketing_lite` (§7).
    let category = if endpoint == Endpoint::MarketingMessages && category == "marketing" {
        "marketing_lite".to_owned()
    } else {
        category
    };
    let template_name = (kind == "template")
        .then(|| body.pointer("/template/name").and_then(Value::as_str))
        .flatten()
        .map(str::to_owned);
    state.messages.push(RecordedMessage {
        wamid: wamid.clone(),
        phone_number_id: phone_id.to_owned(),
        to: wa_id.clone(),
        input: input.clone(),
        kind: kind.clone(),
        request: body.clone(),
        received_at: now_ms.div_euclid(1000),
        status: "accepted".to_owned(),
        statuses: Vec::new(),
        template: template_name,
        biz_opaque_callback_data: biz_opaque.clone(),
    });
    if fate == Fate::Hold {
        state.consent.held.push(HeldSend {
            wamid: wamid.clone(),
            phone_number_id: phone_id.to_owned(),
            waba_id: waba_id.clone(),
            wa_id: wa_id.clone(),
            biz_opaque: biz_opaque.clone(),
            category: category.clone(),
            window_open,
            version_major,
            recipient: recipient.clone(),
            template: body
                .pointer("/template/name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            language: body
                .pointer("/template/language/code")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    } else {
        schedule_statuses(
            state,
            &Accepted {
                now_ms,
                version_major,
                phone_id,
                wamid: &wamid,
                wa_id: &wa_id,
                biz_opaque: biz_opaque.as_deref(),
                category: &category,
                window_open,
                recipient: &recipient,
                fail_code: match fate {
                    Fate::FailAsync(code) => Some(code),
                    _ => None,
                },
            },
        );
    }

    let mut message = json!({ "id": wamid });
    if kind == "template" {
        message["message_status"] = json!(if fate == Fate::Hold {
            "held_for_quality_assessment"
        } else {
            "accepted"
        });
    }
    // `wa_id` only when sent by phone, `user_id` only when sent by BSUID alone.
    let contact = if by_bsuid {
        json!({ "input": input, "user_id": input })
    } else {
        json!({ "input": input, "wa_id": wa_id })
    };
    let response = json!({
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [message],
    });

    let faults = &state.faults;
    let hold = (faults.timeout_rate > 0.0 && rand::rng().random_bool(faults.timeout_rate.min(1.0)))
        .then(|| {
            Duration::from_millis(if faults.timeout_ms == 0 {
                DEFAULT_TIMEOUT_HOLD_MS
            } else {
                faults.timeout_ms
            })
        });
    Ok(SendOutcome {
        body: response,
        hold,
    })
}

/// A string parameter: `None` when absent, null or blank.
fn string_param(body: &Value, name: &str) -> Result<Option<String>, GraphError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(GraphError::invalid_param(format!(
            "Param {name} must be a string."
        ))),
    }
}

fn mark_as_read(
    state: &mut State,
    now_ms: i64,
    phone_id: &str,
    body: &Value,
) -> Result<SendOutcome, GraphError> {
    if body.get("status").and_then(Value::as_str) != Some("read") {
        return Err(GraphError::invalid_param(
            "Param status must be one of {READ}.",
        ));
    }
    let Some(message_id) = body.get("message_id").and_then(Value::as_str) else {
        return Err(GraphError::invalid_param(
            "The parameter message_id is required.",
        ));
    };
    // META_2026 §8.1: `typing_indicator` is `{"type": "text"}` exactly; anything else is 100.
    let typing = match body.get("typing_indicator") {
        None => false,
        Some(Value::Object(t))
            if t.len() == 1 && t.get("type").and_then(Value::as_str) == Some("text") =>
        {
            true
        }
        Some(_) => {
            return Err(GraphError::invalid_param(
                "Param typing_indicator must be {\"type\": \"text\"}.",
            ));
        }
    };
    if let Some(key) = body.as_object().and_then(|o| {
        o.keys().find(|k| {
            !matches!(
                k.as_str(),
                "messaging_product" | "status" | "message_id" | "typing_indicator"
            )
        })
    }) {
        return Err(GraphError::invalid_param(format!(
            "Param {key} is not allowed with status read."
        )));
    }
    // An unknown wamid is 131009 (META_2026 §8.1).
    if state.inbound.get(message_id).map(String::as_str) != Some(phone_id) {
        return Err(GraphError::new(
            131009,
            format!("message with id {message_id} was not received by this phone number."),
        ));
    }
    state.reads.push(json!({
        "phone_number_id": phone_id,
        "message_id": message_id,
        "typing": typing,
        "at_ms": now_ms,
    }));
    Ok(SendOutcome {
        body: json!({ "success": true }),
        hold: None,
    })
}

/// Validates the object named by `type`; returns the pricing category of the send.
fn check_payload(kind: &str, body: &Value, templates: &[Value]) -> Result<String, GraphError> {
    let Some(payload) = body.get(kind).filter(|v| !v.is_null()) else {
        return Err(GraphError::invalid_param(format!(
            "The parameter {kind} is required."
        )));
    };
    let is_object = payload.is_object();
    if kind != "contacts" && !is_object {
        return Err(GraphError::invalid_param(format!(
            "Param {kind} must be a JSON object."
        )));
    }
    match kind {
        "text" => {
            let text = require_str(payload, "text", "body")?;
            if text.trim().is_empty() {
                return Err(GraphError::invalid_param(
                    "Param text['body'] must not be empty.",
                ));
            }
            if text.chars().count() > TEXT_MAX {
                return Err(GraphError::invalid_param(format!(
                    "Param text['body'] must be at most {TEXT_MAX} characters long."
                )));
            }
        }
        "image" | "video" | "audio" | "document" | "sticker" => check_media(kind, payload)?,
        "reaction" => {
            require_str(payload, "reaction", "message_id")?;
            if !payload.get("emoji").is_some_and(Value::is_string) {
                return Err(GraphError::invalid_param(
                    "The parameter reaction['emoji'] is required.",
                ));
            }
        }
        "location" => {
            for key in ["latitude", "longitude"] {
                let ok = payload.get(key).is_some_and(|v| {
                    v.is_number() || v.as_str().is_some_and(|s| s.trim().parse::<f64>().is_ok())
                });
                if !ok {
                    return Err(GraphError::invalid_param(format!(
                        "The parameter location['{key}'] is required and must be a number."
                    )));
                }
            }
        }
        "contacts" => {
            let contacts = payload
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    GraphError::invalid_param("Param contacts must be a non-empty array.")
                })?;
            for (i, contact) in contacts.iter().enumerate() {
                let named = contact
                    .pointer("/name/formatted_name")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.trim().is_empty());
                if !named {
                    return Err(GraphError::invalid_param(format!(
                        "The parameter contacts[{i}]['name']['formatted_name'] is required."
                    )));
                }
            }
        }
        "interactive" => check_interactive(payload)?,
        "template" => return check_template(payload, templates),
        _ => {}
    }
    Ok("service".to_owned())
}

fn require_str<'a>(payload: &'a Value, kind: &str, key: &str) -> Result<&'a str, GraphError> {
    payload.get(key).and_then(Value::as_str).ok_or_else(|| {
        GraphError::invalid_param(format!("The parameter {kind}['{key}'] is required."))
    })
}

fn check_media(kind: &str, payload: &Value) -> Result<(), GraphError> {
    let id = payload.get("id").and_then(Value::as_str).unwrap_or("");
    let link = payload.get("link").and_then(Value::as_str).unwrap_or("");
    match (id.trim().is_empty(), link.is_empty()) {
        (true, true) => {
            return Err(GraphError::invalid_param(format!(
                "Param {kind} must contain either 'id' or 'link'."
            )));
        }
        (false, false) => {
            return Err(GraphError::invalid_param(format!(
                "Param {kind} must contain only one of 'id' and 'link'."
            )));
        }
        (true, false) if !is_http_url(link) => {
            return Err(GraphError::new(
                131009,
                format!("Param {kind}['link'] is not a valid URI."),
            ));
        }
        _ => {}
    }
    if let Some(caption) = payload.get("caption") {
        if kind == "audio" || kind == "sticker" {
            return Err(GraphError::invalid_param(format!(
                "Param {kind}['caption'] is not supported for {kind} messages."
            )));
        }
        let ok = caption
            .as_str()
            .is_some_and(|c| c.chars().count() <= CAPTION_MAX);
        if !ok {
            return Err(GraphError::invalid_param(format!(
                "Param {kind}['caption'] must be a string of at most {CAPTION_MAX} characters."
            )));
        }
    }
    Ok(())
}

fn check_interactive(payload: &Value) -> Result<(), GraphError> {
    let kind = payload.get("type").and_then(Value::as_str).ok_or_else(|| {
        GraphError::invalid_param("The parameter interactive['type'] is required.")
    })?;
    let body_text = || {
        payload
            .pointer("/body/text")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                GraphError::invalid_param("The parameter interactive['body']['text'] is required.")
            })
    };
    match kind {
        "button" => {
            body_text()?;
            let buttons = payload
                .pointer("/action/buttons")
                .and_then(Value::as_array)
                .filter(|b| (1..=3).contains(&b.len()))
                .ok_or_else(|| {
                    GraphError::invalid_param(
                        "Param interactive['action']['buttons'] must have between 1 and 3 buttons.",
                    )
                })?;
            let mut ids = Vec::new();
            for (i, button) in buttons.iter().enumerate() {
                let id = button.pointer("/reply/id").and_then(Value::as_str);
                let title = button.pointer("/reply/title").and_then(Value::as_str);
                let (Some(id), Some(title)) = (id, title) else {
                    return Err(GraphError::invalid_param(format!(
                        "Param interactive['action']['buttons'][{i}] needs reply.id and reply.title."
                    )));
                };
                if title.trim().is_empty() || title.chars().count() > 20 {
                    return Err(GraphError::invalid_param(format!(
                        "Param interactive['action']['buttons'][{i}]['reply']['title'] must be 1 to 20 characters."
                    )));
                }
                if ids.contains(&id) {
                    return Err(GraphError::invalid_param(
                        "Button ids in interactive['action']['buttons'] must be unique.",
                    ));
                }
                ids.push(id);
            }
        }
        "list" => {
            body_text()?;
            let ok = payload
                .pointer("/action/button")
                .and_then(Value::as_str)
                .is_some_and(|b| !b.trim().is_empty());
            if !ok {
                return Err(GraphError::invalid_param(
                    "The parameter interactive['action']['button'] is required.",
                ));
            }
            let sections = payload
                .pointer("/action/sections")
                .and_then(Value::as_array)
                .filter(|s| !s.is_empty() && s.len() <= 10)
                .ok_or_else(|| {
                    GraphError::invalid_param(
                        "Param interactive['action']['sections'] must have between 1 and 10 sections.",
                    )
                })?;
            let rows: usize = sections
                .iter()
                .map(|s| s.get("rows").and_then(Value::as_array).map_or(0, Vec::len))
                .sum();
            if rows == 0 || rows > 10 {
                return Err(GraphError::invalid_param(
                    "Param interactive['action']['sections'] must have between 1 and 10 rows in total.",
                ));
            }
        }
        "cta_url"
        | "product"
        | "product_list"
        | "catalog_message"
        | "flow"
        | "location_request_message"
        | "address_message"
        | "order_details"
        | "order_status"
        | "call_permission_request"
        | "voice_call" => {}
        other => {
            return Err(GraphError::invalid_param(format!(
                "Param interactive['type'] '{other}' is not a supported interactive type."
            )));
        }
    }
    Ok(())
}

fn check_template(payload: &Value, templates: &[Value]) -> Result<String, GraphError> {
    let name = payload
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| GraphError::invalid_param("The parameter template['name'] is required."))?;
    let language = payload
        .pointer("/language/code")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            GraphError::invalid_param("The parameter template['language']['code'] is required.")
        })?;
    let template = find_template(templates, name, language)?;
    check_template_send(template, payload)?;
    Ok(template
        .get("category")
        .and_then(Value::as_str)
        .unwrap_or("marketing")
        .to_ascii_lowercase())
}

fn check_context(body: &Value) -> Result<(), GraphError> {
    match body.get("context") {
        None | Some(Value::Null) => Ok(()),
        Some(context) => {
            let ok = context
                .get("message_id")
                .and_then(Value::as_str)
                .is_some_and(|id| !id.is_empty());
            if ok {
                Ok(())
            } else {
                Err(GraphError::invalid_param(
                    "The parameter context['message_id'] is required.",
                ))
            }
        }
    }
}

/// `fail_next` first (deterministic), then each `error_rates` entry by its probability.
fn inject_fault(state: &mut State) -> Result<(), GraphError> {
    if let Some(code) = state.faults.fail_next.pop_front() {
        return Err(GraphError::new(
            code,
            "Injected by the sandbox (fail_next).",
        ));
    }
    let mut rng = rand::rng();
    for (code, rate) in &state.faults.error_rates {
        let Ok(code) = code.parse::<u32>() else {
            continue;
        };
        if *rate > 0.0 && rng.random_bool(rate.clamp(0.0, 1.0)) {
            return Err(GraphError::new(
                code,
                "Injected by the sandbox (error_rates).",
            ));
        }
    }
    Ok(())
}

struct Accepted<'a> {
    now_ms: i64,
    version_major: u32,
    phone_id: &'a str,
    wamid: &'a str,
    wa_id: &'a str,
    biz_opaque: Option<&'a str>,
    category: &'a str,
    window_open: bool,
    recipient: &'a crate::users::StatusRecipient,
    /// An asynchronous failure Meta decided at acceptance (131049, 131050, a dropped held
    /// send), instead of `sent`.
    fail_code: Option<u32>,
}

/// A held send goes on: its statuses from `now_ms` as for any send.
pub(crate) fn release_held(state: &mut State, now_ms: i64, h: &HeldSend) {
    held_outcome(state, now_ms, h, None);
}

/// A held send is dropped: `failed` with `code` (132015 template pacing, 135000 portfolio).
pub(crate) fn fail_held(state: &mut State, now_ms: i64, h: &HeldSend, code: u32) {
    held_outcome(state, now_ms, h, Some(code));
}

fn held_outcome(state: &mut State, now_ms: i64, h: &HeldSend, fail_code: Option<u32>) {
    schedule_statuses(
        state,
        &Accepted {
            now_ms,
            version_major: h.version_major,
            phone_id: &h.phone_number_id,
            wamid: &h.wamid,
            wa_id: &h.wa_id,
            biz_opaque: h.biz_opaque.as_deref(),
            category: &h.category,
            window_open: h.window_open,
            recipient: &h.recipient,
            fail_code,
        },
    );
}

/// Meta's `errors[]` entry of an asynchronous failure.
fn async_error(code: u32) -> Value {
    let title = crate::errors::title(code);
    let details = match code {
        131026 => "Message Undeliverable.",
        131049 => {
            "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."
        }
        131050 => "The user has stopped marketing messages from this business.",
        132015 => "The template was paused because of its quality.",
        135000 => "The message was dropped by business portfolio pacing.",
        _ => title,
    };
    json!([{
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details},
        "href": "/documentation/business-messaging/whatsapp/support/error-codes"
    }])
}

/// Queues `sent → delivered → read`, or `failed`, at their virtual times.
fn schedule_statuses(state: &mut State, sent: &Accepted<'_>) {
    let behaviour = state.config.behaviour.clone();
    let mut rng = rand::rng();
    let undeliverable = behaviour
        .undeliverable
        .iter()
        .any(|u| digits(u) == sent.wa_id);
    let fail_code = sent.fail_code.or_else(|| {
        (undeliverable
            || (behaviour.failure_ratio > 0.0 && rng.random_bool(behaviour.failure_ratio.min(1.0))))
        .then_some(131026)
    });
    let at = |delay: u64| {
        sent.now_ms
            .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX))
    };

    let base = |status: &str, due_ms: i64| {
        let mut json = json!({
            "id": sent.wamid,
            "status": status,
            "timestamp": due_ms.div_euclid(1000).to_string(),
            "recipient_id": sent.wa_id,
        });
        if let Some(opaque) = sent.biz_opaque {
            json["biz_opaque_callback_data"] = json!(opaque);
        }
        crate::users::dress_status(&mut json, sent.recipient, &behaviour.parent_field);
        json
    };
    let event = |status: &str, json: Value| EventKind::Status {
        wamid: sent.wamid.to_owned(),
        status: status.to_owned(),
        json,
    };

    if let Some(code) = fail_code {
        let due = at(behaviour.sent_delay_ms);
        let mut json = base("failed", due);
        json["errors"] = async_error(code);
        state.schedule(due, sent.phone_id, event("failed", json));
        return;
    }

    let sent_due = at(behaviour.sent_delay_ms);
    // Priced by the delivery date: service and utility in the window are free before the
    // 2026-10-01 cut-over, `regular` after it; a free entry point is free (§5).
    let (pricing, fep_conversation) = crate::consent::pricing(
        state,
        sent.phone_id,
        sent.wa_id,
        sent.category,
        sent.window_open,
        at(behaviour.delivered_delay_ms),
    );
    let origin = if fep_conversation.is_some() {
        "referral_conversion"
    } else {
        sent.category
    };
    let conversation_id = fep_conversation.clone().unwrap_or_else(|| hex_id(16));
    let conversation = |with_expiry: bool| {
        let mut c = json!({"id": conversation_id, "origin": {"type": origin}});
        if with_expiry {
            c["expiration_timestamp"] = json!((sent_due.div_euclid(1000) + 86_400).to_string());
        }
        c
    };
    // Webhooks of v24.0+ omit `conversation` (META_API.md §3.4).
    // ... and inside a free entry point, where its id is unique per window (§5.1).
    let with_conversation = sent.version_major <= 23 || fep_conversation.is_some();

    let mut json = base("sent", sent_due);
    if with_conversation {
        json["conversation"] = conversation(true);
    }
    json["pricing"] = pricing.clone();
    state.schedule(sent_due, sent.phone_id, event("sent", json));

    let reads = behaviour.read_ratio > 0.0 && rng.random_bool(behaviour.read_ratio.min(1.0));
    // Meta skips `delivered` when a message is delivered and read at once.
    let skip_delivered = reads && behaviour.read_delay_ms <= behaviour.delivered_delay_ms;
    if !skip_delivered {
        let due = at(behaviour.delivered_delay_ms);
        let mut json = base("delivered", due);
        if with_conversation {
            json["conversation"] = conversation(false);
        }
        json["pricing"] = pricing.clone();
        state.schedule(due, sent.phone_id, event("delivered", json));
    }
    // Charged when delivered (§5.1): what Meta bills for it, at the delivery's time.
    let delivered_at = if skip_delivered {
        at(behaviour.read_delay_ms.max(behaviour.sent_delay_ms))
    } else {
        at(behaviour.delivered_delay_ms)
    };
    crate::billing::bill(
        state,
        delivered_at,
        sent.phone_id,
        sent.wamid,
        sent.wa_id,
        &pricing,
        sent.biz_opaque,
    );
    if reads {
        let due = at(behaviour.read_delay_ms.max(behaviour.sent_delay_ms));
        let mut json = base("read", due);
        if skip_delivered {
            if with_conversation {
                json["conversation"] = conversation(false);
            }
            json["pricing"] = pricing;
        }
        state.schedule(due, sent.phone_id, event("read", json));
    }
}

/// A wamid shaped like Meta's: base64 of a small record holding the user's number.
pub(crate) fn new_wamid(wa_id: &str, inbound: bool) -> String {
    let mut bytes = vec![0x1c, 0x18, u8::try_from(wa_id.len()).unwrap_or(0)];
    bytes.extend_from_slice(wa_id.as_bytes());
    bytes.extend_from_slice(&[0x15, 0x02, 0x00]);
    let (marker, len) = if inbound { (0x12, 20) } else { (0x11, 18) };
    bytes.extend_from_slice(&[marker, 0x18, u8::try_from(len).unwrap_or(0)]);
    bytes.extend_from_slice(hex_id(len / 2).to_ascii_uppercase().as_bytes());
    bytes.push(0x00);
    format!(
        "wamid.{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// `n` random bytes as lowercase hex.
pub(crate) fn hex_id(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wamids_look_like_metas_and_differ() {
        let a = new_wamid("16505551234", false);
        let b = new_wamid("16505551234", false);
        assert!(a.starts_with("wamid.HBgLMTY1MDU1NTEyMzQV"));
        assert_ne!(a, b);
    }
}
