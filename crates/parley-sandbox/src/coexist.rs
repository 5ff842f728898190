//! Coexistence: WhatsApp Business app numbers on the Cloud API (META_2026.md §2).
//!
//! A coexistence signup (`POST /sandbox/signup` with `"completion": "coexistence"`, or the
//! dialog through [`onboard_app_number`]) leaves a number that is already registered
//! (`status` `CONNECTED`), `is_on_biz_app: true`, `platform_type` `CLOUD_API`, and fixed at
//! 20 messages per second whatever its throughput setting. The finish event carries only the
//! WABA: `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING`.
//!
//! Graph: `POST /{phone}/smb_app_data` with `sync_type` `smb_app_state_sync` or `history`
//! answers `{"messaging_product","request_id"}` the first time per type within 24 h (virtual)
//! of onboarding; a second call, or any call after 24 h, is error 100 with details. Then the
//! app's contacts come as one `smb_app_state_sync` webhook, and the chats as chunked `history`
//! webhooks (phases 0/1/2, chunks delivered out of `chunk_order`, `progress` up to 100,
//! `media_placeholder` first and the media itself later for media of the last 14 days), or
//! the `2593109` decline when the signup's `share_history` is false. `deregister` is refused
//! (100). Sends over 20 per second are 130429.
//!
//! Control endpoints (the person holding the phone):
//!
//! | Method | Path | Body | Answer |
//! |---|---|---|---|
//! | `GET` | `/sandbox/coexistence/{phone}` | | `{"phone_number_id","onboarded_at","share_history","connected","synced":{type: request_id},"contacts":[…]}` |
//! | `POST` | `/sandbox/coexistence/{phone}/app_message` | `{"to": "+4915…", "text": "…"}` | `{"wamid"}`; a `smb_message_echoes` webhook (the message typed in the app) |
//! | `POST` | `/sandbox/coexistence/{phone}/contacts` | `{"action": "add"\|"remove", "phone_number", "full_name"?, "first_name"?}` | the change; a `smb_app_state_sync` webhook |
//! | `POST` | `/sandbox/coexistence/{phone}/offboard` | `{"event": "PARTNER_REMOVED"\|"ACCOUNT_OFFBOARDED", "reason"?, "initiated_by"?}` | the `account_update` value sent |
//! | `POST` | `/sandbox/coexistence/{phone}/reconnect` | | the `account_update` value sent (`ACCOUNT_RECONNECTED`) |

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Sandbox;
use crate::control::json_body;
use crate::errors::GraphError;
use crate::state::{EventKind, State as World, digits};

/// Meta: "Throughput is fixed at 20 mps" for coexistence numbers.
pub(crate) const COEXISTENCE_MPS: u32 = 20;
/// The sync calls must come within 24 h of onboarding.
const SYNC_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
const DAY_SECS: i64 = 24 * 60 * 60;
/// Media of the last 14 days is sent again, after its placeholder.
const LATE_MEDIA_SECS: i64 = 14 * DAY_SECS;
/// History covers 180 days before onboarding.
const HISTORY_SECS: i64 = 180 * DAY_SECS;
/// Virtual ms between two history chunks.
const CHUNK_GAP_MS: i64 = 50;
/// The decline's code (history sharing turned off in the app).
pub(crate) const HISTORY_DECLINED: u32 = 2593109;
/// Webhook fields that only flow once the app subscribed to them (`/{app-id}/subscriptions`).
pub(crate) const COEXISTENCE_FIELDS: [&str; 3] =
    ["history", "smb_app_state_sync", "smb_message_echoes"];

/// A contact in the Business app's address book.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct AppContact {
    pub phone_number: String,
    pub full_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
}

/// One message of the app's chats before onboarding.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppChatMessage {
    /// The customer (digits or E.164).
    pub user: String,
    /// Sent by the business (from the app), else by the customer.
    #[serde(default)]
    pub from_business: bool,
    /// Text; absent with `media` true: an image.
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub media: bool,
    /// How long before onboarding, in hours.
    pub hours_before: i64,
    /// `history_context.status` (`READ` by default).
    #[serde(default)]
    pub status: Option<String>,
}

/// A coexistence number's app side.
#[derive(Clone, Debug)]
pub(crate) struct AppNumber {
    pub onboarded_ms: i64,
    pub share_history: bool,
    pub contacts: BTreeMap<String, AppContact>,
    pub chats: Vec<AppChatMessage>,
    /// sync_type → request_id of the accepted call.
    pub synced: BTreeMap<String, String>,
    /// False between an offboarding and a reconnect.
    pub connected: bool,
}

/// What a coexistence signup may say about the app (`"coexistence"` of `/sandbox/signup`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppSetup {
    /// The business shares its chat history (default true); false sends the 2593109 decline.
    pub share_history: Option<bool>,
    pub contacts: Option<Vec<AppContact>>,
    pub history: Option<Vec<AppChatMessage>>,
}

fn default_contacts() -> Vec<AppContact> {
    vec![
        AppContact {
            phone_number: "16505551234".into(),
            full_name: "Pablo Morales".into(),
            first_name: Some("Pablo".into()),
        },
        AppContact {
            phone_number: "4915112340001".into(),
            full_name: "Lena Vogt".into(),
            first_name: Some("Lena".into()),
        },
        AppContact {
            phone_number: "447700900123".into(),
            full_name: "Oliver Brown".into(),
            first_name: None,
        },
    ]
}

fn default_chats() -> Vec<AppChatMessage> {
    let m =
        |user: &str, from_business: bool, text: Option<&str>, hours_before: i64| AppChatMessage {
            user: user.into(),
            from_business,
            text: text.map(str::to_owned),
            media: text.is_none(),
            hours_before,
            status: None,
        };
    vec![
        m(
            "16505551234",
            true,
            Some("Here's the info you requested!"),
            2,
        ),
        m("16505551234", false, Some("Thanks!"), 1),
        m("16505551234", true, None, 3),
        m(
            "4915112340001",
            false,
            Some("Is the shop open on Sunday?"),
            24 * 10,
        ),
        m(
            "4915112340001",
            true,
            Some("Yes, from 10 to 4."),
            24 * 10 - 1,
        ),
        m("447700900123", false, None, 24 * 30),
        m(
            "447700900123",
            true,
            Some("Your order has shipped."),
            24 * 120,
        ),
    ]
}

/// Turns a finished signup into a coexistence onboarding: the number is the app's, already
/// registered, at 20 mps. Returns the finish message the page receives (only the WABA).
pub(crate) fn onboard_app_number(
    state: &mut World,
    now_ms: i64,
    phone_number_id: &str,
    setup: AppSetup,
) -> Result<(), GraphError> {
    let mut contacts = BTreeMap::new();
    for c in setup.contacts.unwrap_or_else(default_contacts) {
        let d = digits(&c.phone_number);
        if !(5..=20).contains(&d.len()) {
            return Err(GraphError::invalid_param(format!(
                "coexistence.contacts: {:?} is not a phone number.",
                c.phone_number
            )));
        }
        contacts.insert(
            d.clone(),
            AppContact {
                phone_number: d,
                ..c
            },
        );
    }
    let chats = setup.history.unwrap_or_else(default_chats);
    for chat in &chats {
        if digits(&chat.user).len() < 5 || chat.hours_before < 0 {
            return Err(GraphError::invalid_param(
                "coexistence.history: each message needs a \"user\" phone number and \"hours_before\" >= 0.",
            ));
        }
    }
    let Some(phone) = state.phone_mut(phone_number_id) else {
        return Err(GraphError::invalid_param(format!(
            "Phone number {phone_number_id} does not exist."
        )));
    };
    // The app registered the number long ago; its name is the app's.
    phone.status = "CONNECTED".to_owned();
    phone.name_status = "APPROVED".to_owned();
    phone.throughput_mps = COEXISTENCE_MPS;
    state.coexistence.insert(
        phone_number_id.to_owned(),
        AppNumber {
            onboarded_ms: now_ms,
            share_history: setup.share_history.unwrap_or(true),
            contacts,
            chats,
            synced: BTreeMap::new(),
            connected: true,
        },
    );
    Ok(())
}

/// The metadata block of a number's webhooks.
fn metadata(state: &World, phone_id: &str) -> Option<(String, Value)> {
    let phone = state.phone(phone_id)?;
    let display = digits(&phone.phone.display_phone_number);
    Some((
        phone.waba.id.clone(),
        json!({"display_phone_number": display, "phone_number_id": phone_id}),
    ))
}

/// Queues one webhook change on the number's WABA entry.
fn queue(state: &mut World, due_ms: i64, phone_id: &str, field: &str, value: Value) {
    let Some((waba_id, _)) = metadata(state, phone_id) else {
        return;
    };
    let payload = json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": waba_id,
            "time": due_ms.div_euclid(1000),
            "changes": [{"value": value, "field": field}],
        }],
    });
    state.schedule(
        due_ms,
        phone_id,
        EventKind::Payload {
            field: field.to_owned(),
            payload,
        },
    );
}

/// `POST /{phone}/smb_app_data`: each sync type once, within 24 h of onboarding.
pub(crate) fn smb_app_data(
    state: &mut World,
    now_ms: i64,
    phone_id: &str,
    body: &Value,
) -> Result<Value, GraphError> {
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err(GraphError::invalid_param(
            "The parameter messaging_product is required and must be whatsapp.",
        ));
    }
    let sync_type = match body.get("sync_type").and_then(Value::as_str) {
        Some(t @ ("smb_app_state_sync" | "history")) => t.to_owned(),
        other => {
            return Err(GraphError::invalid_param(format!(
                "Param sync_type must be one of {{SMB_APP_STATE_SYNC, HISTORY}} - got {}.",
                other.map_or_else(|| "nothing".to_owned(), |t| format!("{t:?}"))
            )));
        }
    };
    let Some(app) = state.coexistence.get_mut(phone_id) else {
        return Err(GraphError::invalid_param(format!(
            "Phone number {phone_id} was not onboarded from the WhatsApp Business app; smb_app_data is only for coexistence numbers."
        )));
    };
    if !app.connected {
        return Err(GraphError::invalid_param(format!(
            "Phone number {phone_id} is disconnected from the WhatsApp Business Platform; the business must connect it again."
        )));
    }
    if now_ms > app.onboarded_ms.saturating_add(SYNC_WINDOW_MS) {
        return Err(GraphError::invalid_param(format!(
            "The {sync_type} sync must be requested within 24 hours of onboarding; that window has passed. Offboard the number and onboard it again through Embedded Signup."
        )));
    }
    if let Some(earlier) = app.synced.get(&sync_type) {
        return Err(GraphError::invalid_param(format!(
            "The {sync_type} sync was already requested for this onboarding (request {earlier}); each sync can be requested once."
        )));
    }
    let request_id = crate::send::hex_id(16);
    app.synced.insert(sync_type.clone(), request_id.clone());
    let app = app.clone();
    if sync_type == "smb_app_state_sync" {
        let items: Vec<Value> = app
            .contacts
            .values()
            .map(|c| contact_change(c, "add", now_ms))
            .collect();
        if let Some((_, meta)) = metadata(state, phone_id) {
            let value =
                json!({"messaging_product": "whatsapp", "metadata": meta, "state_sync": items});
            queue(state, now_ms, phone_id, "smb_app_state_sync", value);
        }
    } else {
        queue_history(state, now_ms, phone_id, &app);
    }
    Ok(json!({"messaging_product": "whatsapp", "request_id": request_id}))
}

fn contact_change(c: &AppContact, action: &str, now_ms: i64) -> Value {
    let mut contact = json!({"phone_number": c.phone_number});
    if action == "add" {
        contact["full_name"] = json!(c.full_name);
        if let Some(first) = &c.first_name {
            contact["first_name"] = json!(first);
        }
    }
    json!({
        "type": "contact",
        "contact": contact,
        "action": action,
        "metadata": {"timestamp": now_ms.div_euclid(1000).to_string()},
    })
}

/// A wamid that does not change between the placeholder and its late media.
fn chat_wamid(phone_id: &str, index: usize, user: &str) -> String {
    let seed = format!("{phone_id}{index:04}{user}");
    format!(
        "wamid.HIST{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, seed)
    )
}

/// The chunked `history` webhooks (or the decline), due from `now_ms` on.
fn queue_history(state: &mut World, now_ms: i64, phone_id: &str, app: &AppNumber) {
    let Some((_, meta)) = metadata(state, phone_id) else {
        return;
    };
    let business = meta["display_phone_number"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !app.share_history {
        let value = json!({
            "messaging_product": "whatsapp",
            "metadata": meta,
            "history": [{"errors": [{
                "code": HISTORY_DECLINED,
                "title": "History sync is turned off by the business from the WhatsApp Business App",
                "message": "History sync is turned off by the business from the WhatsApp Business App",
                "error_data": {"details": "History sharing is turned off by the business"},
            }]}],
        });
        queue(state, now_ms, phone_id, "history", value);
        return;
    }
    let onboarded_secs = app.onboarded_ms.div_euclid(1000);
    // (phase, user) → messages; phase 0: day 0–1, 1: day 1–90, 2: day 90–180.
    let mut threads: BTreeMap<(u8, String), Vec<Value>> = BTreeMap::new();
    let mut late_media = Vec::new();
    for (index, chat) in app.chats.iter().enumerate() {
        let age = chat.hours_before.saturating_mul(3600);
        if age > HISTORY_SECS {
            continue;
        }
        let phase = if age < DAY_SECS {
            0
        } else if age < 90 * DAY_SECS {
            1
        } else {
            2
        };
        let user = digits(&chat.user);
        let wamid = chat_wamid(phone_id, index, &user);
        let from = if chat.from_business {
            business.clone()
        } else {
            user.clone()
        };
        let timestamp = (onboarded_secs - age).to_string();
        let status = chat.status.clone().unwrap_or_else(|| "READ".to_owned());
        let message = match (&chat.text, chat.media) {
            (Some(text), false) => json!({
                "from": from, "id": wamid, "timestamp": timestamp, "type": "text",
                "text": {"body": text}, "history_context": {"status": status},
            }),
            _ => {
                if age <= LATE_MEDIA_SECS {
                    late_media.push((
                        user.clone(),
                        json!({
                            "from": from, "id": wamid, "timestamp": timestamp, "type": "image",
                            "image": {
                                "caption": chat.text.clone().unwrap_or_default(),
                                "mime_type": "image/jpeg",
                                "sha256": crate::send::hex_id(32),
                                "id": format!("{}", 1_000_000_000_000_000u64 + index as u64),
                            },
                        }),
                    ));
                }
                json!({
                    "from": from, "id": wamid, "timestamp": timestamp,
                    "type": "media_placeholder", "history_context": {"status": status},
                })
            }
        };
        threads.entry((phase, user)).or_default().push(message);
    }
    let total = threads.len().max(1);
    let mut chunks: Vec<Value> = Vec::new();
    if threads.is_empty() {
        chunks.push(
            json!({"metadata": {"phase": 0, "chunk_order": 1, "progress": 100}, "threads": []}),
        );
    }
    for (i, ((phase, user), messages)) in threads.into_iter().enumerate() {
        let order = i + 1;
        let progress = order * 100 / total;
        chunks.push(json!({
            "metadata": {"phase": phase, "chunk_order": order, "progress": progress},
            "threads": [{"id": user, "messages": messages}],
        }));
    }
    // Out of order: each pair swapped, the last chunk (progress 100) last.
    let last = chunks.pop();
    let mut order: Vec<Value> = Vec::new();
    for pair in chunks.chunks(2) {
        order.extend(pair.iter().rev().cloned());
    }
    order.extend(last);
    let mut due = now_ms;
    for chunk in order {
        let value = json!({"messaging_product": "whatsapp", "metadata": meta, "history": [chunk]});
        queue(state, due, phone_id, "history", value);
        due += CHUNK_GAP_MS;
    }
    for (user, message) in late_media {
        let value = json!({
            "messaging_product": "whatsapp",
            "metadata": meta,
            "history": [{"threads": [{"id": user, "messages": [message]}]}],
        });
        queue(state, due, phone_id, "history", value);
        due += CHUNK_GAP_MS;
    }
}

/// Deregister does not work for coexistence numbers (Meta: disconnect in the app).
pub(crate) fn refuse_deregister(state: &World, phone_id: &str) -> Result<(), GraphError> {
    if state.coexistence.contains_key(phone_id) {
        return Err(GraphError::invalid_param(
            "The Deregister API does not work for numbers onboarded from the WhatsApp Business app (coexistence). The business disconnects in the app: Settings > Account > Business Platform > Disconnect.",
        ));
    }
    Ok(())
}

/// Sends from a number the business disconnected in the app. **UNCERTAIN** (Meta documents
/// no code): 133010, "Account not registered".
pub(crate) fn refuse_offboarded_send(state: &World, phone_id: &str) -> Result<(), GraphError> {
    if state
        .coexistence
        .get(phone_id)
        .is_some_and(|app| !app.connected)
    {
        return Err(GraphError::new(
            133010,
            "This WhatsApp Business app number was disconnected from the Business Platform in the app; it cannot send through the Cloud API until it reconnects.",
        ));
    }
    Ok(())
}

/// The fields an app has from the App Dashboard before it subscribes to more: everything the
/// sandbox sends except the three coexistence fields, which Meta sends only once subscribed.
pub(crate) fn default_app_fields() -> std::collections::BTreeSet<String> {
    [
        "messages",
        "account_update",
        "account_review_update",
        "account_alerts",
        "business_capability_update",
        "message_template_status_update",
        "message_template_quality_update",
        "message_template_components_update",
        "template_category_update",
        "phone_number_quality_update",
        "phone_number_name_update",
        "user_preferences",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// `GET|POST /{app-id}/subscriptions` (app token): the app's webhook fields for the object
/// `whatsapp_business_account`. A POST adds the `fields` given (comma-separated or a list);
/// `callback_url`, when given, must be an http(s) URL and replaces the webhook URL.
pub(crate) fn app_subscriptions(
    state: &mut World,
    method: &str,
    param: impl Fn(&str) -> Option<Value>,
) -> Result<Value, GraphError> {
    if method == "GET" {
        let fields: Vec<Value> = state
            .app_fields
            .iter()
            .map(|f| json!({"name": f, "version": state.config.graph_version}))
            .collect();
        return Ok(json!({"data": [{
            "object": "whatsapp_business_account",
            "callback_url": state.config.webhook_url,
            "active": true,
            "fields": fields,
        }]}));
    }
    if method != "POST" {
        return Err(GraphError::unsupported(
            method,
            &state.config.app_id.clone(),
        ));
    }
    match param("object").as_ref().and_then(Value::as_str) {
        Some("whatsapp_business_account") => {}
        other => {
            return Err(GraphError::invalid_param(format!(
                "Param object must be whatsapp_business_account here - got {other:?}."
            )));
        }
    }
    let fields: Vec<String> = match param("fields") {
        Some(Value::String(list)) => list
            .split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if fields.is_empty() {
        return Err(GraphError::invalid_param(
            "The parameter fields is required (a comma-separated list of webhook fields).",
        ));
    }
    let known = default_app_fields();
    for field in &fields {
        if !known.contains(field) && !COEXISTENCE_FIELDS.contains(&field.as_str()) {
            return Err(GraphError::invalid_param(format!(
                "Param fields[{field}] is not a field of whatsapp_business_account."
            )));
        }
    }
    if let Some(url) = param("callback_url") {
        let url = url.as_str().unwrap_or_default().to_owned();
        if !crate::validate::is_http_url(&url) {
            return Err(GraphError::invalid_param(
                "Param callback_url must be a valid URL.",
            ));
        }
        state.config.webhook_url = Some(url);
    }
    state.app_fields.extend(fields);
    Ok(json!({"success": true}))
}

// ---- control API ----------------------------------------------------------------------

type Answer = Result<Response, GraphError>;

fn ok(value: Value) -> Answer {
    Ok(Json(value).into_response())
}

fn app_of<'a>(state: &'a mut World, phone_id: &str) -> Result<&'a mut AppNumber, GraphError> {
    state.coexistence.get_mut(phone_id).ok_or_else(|| {
        GraphError::invalid_param(format!(
            "Phone number {phone_id} is not a coexistence number (sign up with \"completion\": \"coexistence\")."
        ))
    })
}

/// `GET /sandbox/coexistence/{phone}`.
pub(crate) async fn show(State(sandbox): State<Sandbox>, Path(phone_id): Path<String>) -> Answer {
    let mut state = sandbox.inner.lock();
    let app = app_of(&mut state, &phone_id)?;
    ok(json!({
        "phone_number_id": phone_id,
        "onboarded_at": app.onboarded_ms.div_euclid(1000),
        "share_history": app.share_history,
        "connected": app.connected,
        "synced": app.synced,
        "contacts": app.contacts.values().collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppMessageIn {
    to: String,
    text: String,
}

/// `POST /sandbox/coexistence/{phone}/app_message`: typed in the app → `smb_message_echoes`.
pub(crate) async fn app_message(
    State(sandbox): State<Sandbox>,
    Path(phone_id): Path<String>,
    body: Body,
) -> Answer {
    let input: AppMessageIn = json_body(body).await?;
    let to = digits(&input.to);
    if to.len() < 5 {
        return Err(GraphError::invalid_param(format!(
            "\"to\" must be a phone number - got {:?}.",
            input.to
        )));
    }
    let now_ms = sandbox.inner.clock.now_ms();
    let wamid = {
        let mut state = sandbox.inner.lock();
        let app = app_of(&mut state, &phone_id)?;
        if !app.connected {
            return Err(GraphError::invalid_param(
                "The number is disconnected: messages typed in the app reach no partner.",
            ));
        }
        let Some((_, meta)) = metadata(&state, &phone_id) else {
            return Err(GraphError::unsupported("post", &phone_id));
        };
        let wamid = crate::send::new_wamid(&to, false);
        let echo = json!({
            "from": meta["display_phone_number"],
            "to": to,
            "id": wamid,
            "timestamp": now_ms.div_euclid(1000).to_string(),
            "type": "text",
            "text": {"body": input.text},
        });
        let value =
            json!({"messaging_product": "whatsapp", "metadata": meta, "message_echoes": [echo]});
        queue(&mut state, now_ms, &phone_id, "smb_message_echoes", value);
        wamid
    };
    sandbox.inner.wake.notify_one();
    ok(json!({"wamid": wamid}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactIn {
    action: String,
    phone_number: String,
    full_name: Option<String>,
    first_name: Option<String>,
}

/// `POST /sandbox/coexistence/{phone}/contacts`: the address book changes → `smb_app_state_sync`.
pub(crate) async fn contacts(
    State(sandbox): State<Sandbox>,
    Path(phone_id): Path<String>,
    body: Body,
) -> Answer {
    let input: ContactIn = json_body(body).await?;
    let number = digits(&input.phone_number);
    if number.len() < 5 {
        return Err(GraphError::invalid_param(format!(
            "\"phone_number\" must be a phone number - got {:?}.",
            input.phone_number
        )));
    }
    let now_ms = sandbox.inner.clock.now_ms();
    let item = {
        let mut state = sandbox.inner.lock();
        let app = app_of(&mut state, &phone_id)?;
        let item = match input.action.as_str() {
            "add" => {
                let Some(full_name) = input.full_name.filter(|n| !n.trim().is_empty()) else {
                    return Err(GraphError::invalid_param(
                        "\"full_name\" is required to add or edit a contact.",
                    ));
                };
                let contact = AppContact {
                    phone_number: number.clone(),
                    full_name,
                    first_name: input.first_name,
                };
                let item = contact_change(&contact, "add", now_ms);
                app.contacts.insert(number, contact);
                item
            }
            "remove" => {
                let Some(contact) = app.contacts.remove(&number) else {
                    return Err(GraphError::invalid_param(format!(
                        "{number} is not in the app's contacts."
                    )));
                };
                contact_change(&contact, "remove", now_ms)
            }
            other => {
                return Err(GraphError::invalid_param(format!(
                    "\"action\" must be add or remove - got {other:?}."
                )));
            }
        };
        if app.connected
            && let Some((_, meta)) = metadata(&state, &phone_id)
        {
            let value = json!({"messaging_product": "whatsapp", "metadata": meta, "state_sync": [item.clone()]});
            queue(&mut state, now_ms, &phone_id, "smb_app_state_sync", value);
        }
        item
    };
    sandbox.inner.wake.notify_one();
    ok(item)
}

/// Meta's `disconnection_info.reason` values.
const REASONS: [&str; 6] = [
    "ACCOUNT_DISCONNECTED",
    "BUSINESS_DOWNGRADE",
    "CHANGE_NUMBER",
    "COMPANION_INACTIVITY",
    "PRIMARY_INACTIVITY",
    "USER_RE_REGISTERED",
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OffboardIn {
    event: Option<String>,
    reason: Option<String>,
    initiated_by: Option<String>,
}

/// An `account_update` for a coexistence number, with `entry[].time` as a string (as in
/// Meta's coexistence examples).
fn queue_account_update(state: &mut World, now_ms: i64, phone_id: &str, value: Value) {
    let Some((waba_id, _)) = metadata(state, phone_id) else {
        return;
    };
    let payload = json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": waba_id,
            "time": now_ms.div_euclid(1000).to_string(),
            "changes": [{"value": value, "field": "account_update"}],
        }],
    });
    state.schedule(
        now_ms,
        phone_id,
        EventKind::Payload {
            field: "account_update".to_owned(),
            payload,
        },
    );
}

/// `POST /sandbox/coexistence/{phone}/offboard`: the business disconnects (or the device changed).
pub(crate) async fn offboard(
    State(sandbox): State<Sandbox>,
    Path(phone_id): Path<String>,
    body: Body,
) -> Answer {
    let input: OffboardIn = json_body(body).await?;
    let event = input
        .event
        .unwrap_or_else(|| "PARTNER_REMOVED".to_owned())
        .to_ascii_uppercase();
    let now_ms = sandbox.inner.clock.now_ms();
    let value = {
        let mut state = sandbox.inner.lock();
        let display = metadata(&state, &phone_id)
            .map(|(_, m)| m["display_phone_number"].clone())
            .unwrap_or(Value::Null);
        let value = match event.as_str() {
            "PARTNER_REMOVED" => {
                let reason = input
                    .reason
                    .unwrap_or_else(|| "ACCOUNT_DISCONNECTED".to_owned())
                    .to_ascii_uppercase();
                if !REASONS.contains(&reason.as_str()) {
                    return Err(GraphError::invalid_param(format!(
                        "\"reason\" must be one of {} - got {reason:?}.",
                        REASONS.join(", ")
                    )));
                }
                let initiated_by = input
                    .initiated_by
                    .unwrap_or_else(|| "USER".to_owned())
                    .to_ascii_uppercase();
                if !matches!(initiated_by.as_str(), "USER" | "SYSTEM") {
                    return Err(GraphError::invalid_param(format!(
                        "\"initiated_by\" must be USER or SYSTEM - got {initiated_by:?}."
                    )));
                }
                json!({
                    "phone_number": display,
                    "event": "PARTNER_REMOVED",
                    "disconnection_info": {"reason": reason, "initiated_by": initiated_by},
                })
            }
            "ACCOUNT_OFFBOARDED" => json!({"event": "ACCOUNT_OFFBOARDED"}),
            other => {
                return Err(GraphError::invalid_param(format!(
                    "\"event\" must be PARTNER_REMOVED or ACCOUNT_OFFBOARDED - got {other:?}."
                )));
            }
        };
        let app = app_of(&mut state, &phone_id)?;
        if !app.connected {
            return Err(GraphError::invalid_param(
                "The number is already disconnected; reconnect it first.",
            ));
        }
        app.connected = false;
        queue_account_update(&mut state, now_ms, &phone_id, value.clone());
        value
    };
    sandbox.inner.wake.notify_one();
    ok(value)
}

/// `POST /sandbox/coexistence/{phone}/reconnect`: the business connects the number again.
pub(crate) async fn reconnect(
    State(sandbox): State<Sandbox>,
    Path(phone_id): Path<String>,
) -> Answer {
    let now_ms = sandbox.inner.clock.now_ms();
    let value = {
        let mut state = sandbox.inner.lock();
        let app = app_of(&mut state, &phone_id)?;
        if app.connected {
            return Err(GraphError::invalid_param(
                "The number is connected already.",
            ));
        }
        app.connected = true;
        let value = json!({"event": "ACCOUNT_RECONNECTED"});
        queue_account_update(&mut state, now_ms, &phone_id, value.clone());
        value
    };
    sandbox.inner.wake.notify_one();
    ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SandboxConfig;

    fn world_with_coexistence() -> (World, String) {
        let mut state = World::new(SandboxConfig::demo());
        let phone = state.first_phone_id().expect("a demo number");
        let waba = state.phone(&phone).expect("phone").waba.id.clone();
        let _ = waba;
        onboard_app_number(&mut state, 1_000, &phone, AppSetup::default()).expect("coexistence");
        (state, phone)
    }

    fn sync(kind: &str) -> Value {
        json!({"messaging_product": "whatsapp", "sync_type": kind})
    }

    #[test]
    fn each_sync_type_is_accepted_once() {
        let (mut state, phone) = world_with_coexistence();
        let first = smb_app_data(&mut state, 2_000, &phone, &sync("smb_app_state_sync"))
            .expect("first contacts sync");
        assert!(first["request_id"].as_str().is_some_and(|r| !r.is_empty()));
        let again = smb_app_data(&mut state, 3_000, &phone, &sync("smb_app_state_sync"))
            .expect_err("second contacts sync");
        assert_eq!(again.code, 100);
        assert!(
            again
                .details
                .as_deref()
                .is_some_and(|d| d.contains("already requested"))
        );
        smb_app_data(&mut state, 3_000, &phone, &sync("history")).expect("history once");
        assert!(smb_app_data(&mut state, 4_000, &phone, &sync("history")).is_err());
        assert!(smb_app_data(&mut state, 4_000, &phone, &sync("other")).is_err());
    }

    #[test]
    fn syncs_after_24_hours_are_refused() {
        let (mut state, phone) = world_with_coexistence();
        let late = smb_app_data(
            &mut state,
            1_000 + SYNC_WINDOW_MS + 1,
            &phone,
            &sync("history"),
        )
        .expect_err("too late");
        assert_eq!(late.code, 100);
        assert!(
            late.details
                .as_deref()
                .is_some_and(|d| d.contains("24 hours"))
        );
        assert!(smb_app_data(&mut state, 1_000 + SYNC_WINDOW_MS, &phone, &sync("history")).is_ok());
    }

    #[test]
    fn history_comes_in_chunks_out_of_order_then_late_media() {
        let (mut state, phone) = world_with_coexistence();
        smb_app_data(&mut state, 2_000, &phone, &sync("history")).expect("history");
        let events = state.take_due(i64::MAX);
        let histories: Vec<&Value> = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Payload { field, payload } if field == "history" => Some(payload),
                _ => None,
            })
            .collect();
        let orders: Vec<i64> = histories
            .iter()
            .filter_map(|p| p.pointer("/entry/0/changes/0/value/history/0/metadata/chunk_order"))
            .filter_map(Value::as_i64)
            .collect();
        let mut sorted = orders.clone();
        sorted.sort_unstable();
        assert_ne!(orders, sorted, "chunks arrive out of order");
        let progress: Vec<i64> = histories
            .iter()
            .filter_map(|p| p.pointer("/entry/0/changes/0/value/history/0/metadata/progress"))
            .filter_map(Value::as_i64)
            .collect();
        assert_eq!(progress.last(), Some(&100));
        let text = serde_json::to_string(&histories).expect("json");
        assert!(text.contains("media_placeholder"));
        assert!(text.contains("\"type\":\"image\""));
    }
}
