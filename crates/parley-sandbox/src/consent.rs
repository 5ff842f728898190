//! Marketing consent, pacing, pricing and the Marketing Messages API flags as Meta applies
//! them (META_2026.md §5, §6, §7): per-user `stop`/`resume` (the `user_preferences` webhook,
//! then 131050 on marketing sends), the per-user marketing cap (131049), the WABA's
//! `disable_marketing_messages_on_cloud_api` (131063 on `/messages`), pacing (sends answered
//! `held_for_quality_assessment`, released later or dropped with 132015 or 135000), the
//! 2026-10-01 pricing cut-over and free entry points (FEP).
//!
//! Control API (beside the others under `/sandbox/`):
//!
//! | Method | Path | Body | Answer |
//! |---|---|---|---|
//! | `POST` | `/sandbox/user_preferences` | `{"from": "+4915…", "value": "stop"\|"resume", "phone_number_id"?}` | `{"value"}`; sends the `user_preferences` webhook; later marketing sends to that user fail with 131050 until `resume` |
//! | `POST` | `/sandbox/marketing_cap` | `{"to": "+4915…", "sends"?: N}` (absent: until lifted; 0 lifts) | the cap; the next marketing sends to that user are accepted and fail with 131049 |
//! | `POST` | `/sandbox/pacing` | `{"hold": true\|false}` | pacing mode: marketing and utility template sends answer `held_for_quality_assessment` and send no status |
//! | `POST` | `/sandbox/pacing/release` | `{"outcome": "release"\|"132015"\|"135000", "wamid"?}` | `{"released": N}`: held sends go on (`sent`, …) or fail with the code; 132015 also pauses the template (`message_template_status_update` PAUSED, `FIRST_PAUSE`) |
//! | `POST` | `/sandbox/wabas/{id}/marketing` | `{"disable_marketing_messages_on_cloud_api"?: bool, "marketing_messages_onboarding_status"?: "ELIGIBLE"\|"ONBOARDED"…}` | the WABA's flags; `ONBOARDED` sends `account_update` `MM_LITE_TERMS_SIGNED` |
//! | `POST` | `/sandbox/pricing` | `{"cutover_ms": N}` | the instant (virtual Unix ms, default 2026-10-01T00:00:00Z) from which service and utility-in-window sends are `regular` and billable |
//! | `GET` | `/sandbox/consent` | | every setting above |
//!
//! The Graph API side: `POST /<WABA_ID>` with `{"disable_marketing_messages_on_cloud_api": bool}`
//! (answer `{"id"}`) and the fields `disable_marketing_messages_on_cloud_api` and
//! `marketing_messages_onboarding_status` on `GET /<WABA_ID>`.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Sandbox;
use crate::control::json_body;
use crate::errors::GraphError;
use crate::state::{EventKind, State as World, digits};

/// 2026-10-01T00:00:00Z: service and utility-in-window sends are charged from then (§5.3).
pub const PRICING_CUTOVER_MS: i64 = 1_790_812_800_000;
/// A free entry point lasts 72 h from the first reply (§5.1).
const FEP_MS: i64 = 72 * 60 * 60 * 1000;

/// The sandbox's consent and pacing state.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Consent {
    /// Users (wa_id) who stopped marketing messages.
    pub stopped: BTreeSet<String>,
    /// User (wa_id) → marketing sends still capped (`u32::MAX`: until lifted).
    pub capped: BTreeMap<String, u32>,
    /// Pacing mode on: marketing and utility template sends are held.
    pub pacing: bool,
    /// Sends held for quality assessment, waiting for `/sandbox/pacing/release`.
    pub held: Vec<HeldSend>,
    /// WABA ids with `disable_marketing_messages_on_cloud_api` on.
    pub marketing_disabled: BTreeSet<String>,
    /// WABA id → `marketing_messages_onboarding_status` (absent: `ELIGIBLE`).
    pub mm_onboarding: BTreeMap<String, String>,
    /// Virtual ms from which service and utility-in-window sends are `regular`.
    pub pricing_cutover_ms: i64,
    /// (phone number id, wa_id) → (virtual ms the entry point opened, its conversation id).
    #[serde(skip)]
    pub fep: BTreeMap<(String, String), (i64, String)>,
}

impl Default for Consent {
    fn default() -> Self {
        Consent {
            stopped: BTreeSet::new(),
            capped: BTreeMap::new(),
            pacing: false,
            held: Vec::new(),
            marketing_disabled: BTreeSet::new(),
            mm_onboarding: BTreeMap::new(),
            pricing_cutover_ms: PRICING_CUTOVER_MS,
            fep: BTreeMap::new(),
        }
    }
}

/// A send Meta holds for quality assessment, with what its statuses need once released.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HeldSend {
    pub wamid: String,
    pub phone_number_id: String,
    pub waba_id: String,
    pub wa_id: String,
    pub biz_opaque: Option<String>,
    pub category: String,
    pub window_open: bool,
    pub version_major: u32,
    /// Who the statuses name (phone, BSUID, parent), as for any send.
    #[serde(skip)]
    pub recipient: crate::users::StatusRecipient,
    pub template: Option<String>,
    pub language: Option<String>,
}

/// Which endpoint a send came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `/messages` (Cloud API).
    CloudApi,
    /// `/marketing_messages` (Marketing Messages API).
    MarketingMessages,
}

/// What happens to an accepted send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Statuses as usual.
    Go,
    /// Answered `held_for_quality_assessment`; no status until released.
    Hold,
    /// Accepted, then an asynchronous `failed` with this code.
    FailAsync(u32),
}

/// The marketing rule checked with the request: 131063 on `/messages` when the WABA disabled
/// marketing there.
pub(crate) fn check_marketing_allowed(
    state: &World,
    waba_id: &str,
    kind: &str,
    category: &str,
    endpoint: Endpoint,
) -> Result<(), GraphError> {
    if kind != "template" {
        return Ok(());
    }
    let marketing = category == "marketing";
    if marketing
        && endpoint == Endpoint::CloudApi
        && state.consent.marketing_disabled.contains(waba_id)
    {
        return Err(GraphError::new(
            131063,
            "Marketing template messages are disabled for Cloud API on this WhatsApp Business Account. Send them through the Marketing Messages API, or turn disable_marketing_messages_on_cloud_api off.",
        ));
    }
    Ok(())
}

/// What happens to a send Meta accepts (called once it is accepted: a per-user cap counts
/// only sends that went).
pub(crate) fn fate_of_accepted(state: &mut World, wa_id: &str, kind: &str, category: &str) -> Fate {
    if kind != "template" {
        return Fate::Go;
    }
    let marketing = category == "marketing";
    if marketing && state.consent.stopped.contains(wa_id) {
        return Fate::FailAsync(131050);
    }
    if marketing && let Some(left) = state.consent.capped.get_mut(wa_id) {
        if *left != u32::MAX {
            *left -= 1;
        }
        if *left == 0 {
            state.consent.capped.remove(wa_id);
        }
        return Fate::FailAsync(131049);
    }
    if state.consent.pacing && (marketing || category == "utility") {
        return Fate::Hold;
    }
    Fate::Go
}

/// The `pricing` object of a send delivered at `due_ms` (§5.1, §5.3), and the FEP
/// conversation id when the send falls in a free entry point.
pub(crate) fn pricing(
    state: &World,
    phone_id: &str,
    wa_id: &str,
    category: &str,
    window_open: bool,
    due_ms: i64,
) -> (Value, Option<String>) {
    if let Some((opened, conversation)) = state
        .consent
        .fep
        .get(&(phone_id.to_owned(), wa_id.to_owned()))
        && due_ms < opened + FEP_MS
    {
        return (
            json!({"billable": false, "pricing_model": "PMP", "type": "free_entry_point", "category": "referral_conversion"}),
            Some(conversation.clone()),
        );
    }
    let in_window_free = category == "service" || (category == "utility" && window_open);
    let free = in_window_free && due_ms < state.consent.pricing_cutover_ms;
    (
        json!({
            "billable": !free,
            "pricing_model": "PMP",
            "type": if free { "free_customer_service" } else { "regular" },
            "category": category,
        }),
        None,
    )
}

/// An inbound message: one carrying a click-to-WhatsApp `referral` opens a free entry point
/// for that user on that number.
pub(crate) fn note_inbound(
    state: &mut World,
    phone_id: &str,
    wa_id: &str,
    message: &Value,
    now_ms: i64,
) {
    if message.get("referral").is_some_and(Value::is_object) {
        let conversation = crate::send::hex_id(16);
        state.consent.fep.insert(
            (phone_id.to_owned(), wa_id.to_owned()),
            (now_ms, conversation),
        );
    }
}

/// The WABA's flags as `GET /<WABA_ID>` shows them.
pub(crate) fn waba_fields(state: &World, waba_id: &str) -> Value {
    json!({
        "disable_marketing_messages_on_cloud_api": state.consent.marketing_disabled.contains(waba_id),
        "marketing_messages_onboarding_status": state
            .consent
            .mm_onboarding
            .get(waba_id)
            .map_or("ELIGIBLE", String::as_str),
    })
}

/// `POST /<WABA_ID>` with `disable_marketing_messages_on_cloud_api`.
pub(crate) fn post_waba(
    state: &mut World,
    waba_id: &str,
    body: &Value,
) -> Result<Value, GraphError> {
    match body.get("disable_marketing_messages_on_cloud_api") {
        Some(Value::Bool(on)) => {
            set_marketing_disabled(state, waba_id, *on);
            Ok(json!({ "id": waba_id }))
        }
        Some(other) => Err(GraphError::invalid_param(format!(
            "Param disable_marketing_messages_on_cloud_api must be a boolean - got {other}."
        ))),
        None => Err(GraphError::invalid_param(
            "The parameter disable_marketing_messages_on_cloud_api is required.",
        )),
    }
}

fn set_marketing_disabled(state: &mut World, waba_id: &str, on: bool) {
    if on {
        state.consent.marketing_disabled.insert(waba_id.to_owned());
    } else {
        state.consent.marketing_disabled.remove(waba_id);
    }
}

fn answer(v: Value) -> Result<Response, GraphError> {
    Ok(axum::Json(v).into_response())
}

fn user(raw: &str) -> Result<String, GraphError> {
    let d = digits(raw);
    if d.len() < 5 {
        return Err(GraphError::invalid_param(format!(
            "\"{raw}\" is not a phone number."
        )));
    }
    Ok(d)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreferenceBody {
    from: String,
    value: String,
    phone_number_id: Option<String>,
}

/// `POST /sandbox/user_preferences`.
pub(crate) async fn user_preferences(
    State(sandbox): State<Sandbox>,
    body: Body,
) -> Result<Response, GraphError> {
    let b: PreferenceBody = json_body(body).await?;
    let wa_id = user(&b.from)?;
    let (detail, stop) = match b.value.as_str() {
        "stop" => ("User requested to stop marketing messages", true),
        "resume" => ("User requested to resume marketing messages", false),
        other => {
            return Err(GraphError::invalid_param(format!(
                "\"value\" must be stop or resume - got {other:?}."
            )));
        }
    };
    let now_ms = sandbox.inner.clock.now_ms();
    {
        let mut state = sandbox.inner.lock();
        let phone_id = match b.phone_number_id {
            Some(id) => id,
            None => state
                .first_phone_id()
                .ok_or_else(|| GraphError::invalid_param("The sandbox has no phone number."))?,
        };
        let Some(phone) = state.phone(&phone_id) else {
            return Err(GraphError::invalid_param(format!(
                "Unknown phone_number_id {phone_id}."
            )));
        };
        let waba_id = phone.waba.id.clone();
        let display = digits(&phone.phone.display_phone_number);
        if stop {
            state.consent.stopped.insert(wa_id.clone());
        } else {
            state.consent.stopped.remove(&wa_id);
        }
        // Meta's shape (META_2026 §6.1): `timestamp` is an integer here.
        let value = json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": display, "phone_number_id": phone_id},
            "contacts": [{"profile": {"name": "Sandbox User"}, "wa_id": wa_id}],
            "user_preferences": [{
                "wa_id": wa_id,
                "detail": detail,
                "category": "marketing_messages",
                "value": b.value,
                "timestamp": now_ms.div_euclid(1000),
            }],
        });
        state.schedule(
            now_ms,
            &phone_id,
            EventKind::Change {
                entry_id: waba_id,
                field: "user_preferences".to_owned(),
                value,
            },
        );
    }
    sandbox.inner.wake.notify_one();
    answer(json!({ "value": b.value }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapBody {
    to: String,
    sends: Option<u32>,
}

/// `POST /sandbox/marketing_cap`.
pub(crate) async fn marketing_cap(
    State(sandbox): State<Sandbox>,
    body: Body,
) -> Result<Response, GraphError> {
    let b: CapBody = json_body(body).await?;
    let wa_id = user(&b.to)?;
    let mut state = sandbox.inner.lock();
    match b.sends {
        Some(0) => {
            state.consent.capped.remove(&wa_id);
        }
        Some(n) => {
            state.consent.capped.insert(wa_id.clone(), n);
        }
        None => {
            state.consent.capped.insert(wa_id.clone(), u32::MAX);
        }
    }
    let left = state.consent.capped.get(&wa_id).copied();
    answer(
        json!({ "to": wa_id, "sends": left.filter(|n| *n != u32::MAX), "capped": left.is_some() }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PacingBody {
    hold: bool,
}

/// `POST /sandbox/pacing`.
pub(crate) async fn pacing(
    State(sandbox): State<Sandbox>,
    body: Body,
) -> Result<Response, GraphError> {
    let b: PacingBody = json_body(body).await?;
    let mut state = sandbox.inner.lock();
    state.consent.pacing = b.hold;
    answer(json!({ "hold": b.hold, "held": state.consent.held.len() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    outcome: String,
    wamid: Option<String>,
}

/// `POST /sandbox/pacing/release`.
pub(crate) async fn release(
    State(sandbox): State<Sandbox>,
    body: Body,
) -> Result<Response, GraphError> {
    let b: ReleaseBody = json_body(body).await?;
    let drop_code = match b.outcome.as_str() {
        "release" => None,
        "132015" => Some(132015),
        "135000" => Some(135000),
        other => {
            return Err(GraphError::invalid_param(format!(
                "\"outcome\" must be release, 132015 or 135000 - got {other:?}."
            )));
        }
    };
    let now_ms = sandbox.inner.clock.now_ms();
    let n = {
        let mut state = sandbox.inner.lock();
        let all = std::mem::take(&mut state.consent.held);
        let (go, keep): (Vec<HeldSend>, Vec<HeldSend>) = all
            .into_iter()
            .partition(|h| b.wamid.as_deref().is_none_or(|w| w == h.wamid));
        state.consent.held = keep;
        let mut paused = BTreeSet::new();
        for h in &go {
            match drop_code {
                None => crate::send::release_held(&mut state, now_ms, h),
                Some(code) => {
                    if code == 132015
                        && let (Some(name), Some(lang)) = (&h.template, &h.language)
                        && paused.insert((h.waba_id.clone(), name.clone(), lang.clone()))
                    {
                        pause_template(
                            &mut state,
                            now_ms,
                            &h.waba_id,
                            &h.phone_number_id,
                            name,
                            lang,
                        );
                    }
                    crate::send::fail_held(&mut state, now_ms, h, code);
                }
            }
        }
        go.len()
    };
    sandbox.inner.wake.notify_one();
    answer(json!({ "released": n }))
}

/// Template pacing's bad signal: the template goes `PAUSED` (`FIRST_PAUSE`).
fn pause_template(
    state: &mut World,
    now_ms: i64,
    waba_id: &str,
    phone_id: &str,
    name: &str,
    lang: &str,
) {
    let id = state.waba(waba_id).and_then(|w| {
        w.templates
            .iter()
            .find(|t| {
                t.get("name").and_then(Value::as_str) == Some(name)
                    && t.get("language").and_then(Value::as_str) == Some(lang)
            })
            .and_then(|t| t.get("id").and_then(Value::as_str))
            .map(str::to_owned)
    });
    let Some(id) = id else { return };
    if let Some(EventKind::Change {
        entry_id,
        field,
        mut value,
    }) = crate::templates::set_status(state, waba_id, &id, "PAUSED", "NONE")
    {
        value["other_info"] = json!({
            "title": "FIRST_PAUSE",
            "description": "Your template has been paused for 3 hours as it has received negative feedback from customers."
        });
        state.schedule(
            now_ms,
            phone_id,
            EventKind::Change {
                entry_id,
                field,
                value,
            },
        );
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WabaMarketingBody {
    disable_marketing_messages_on_cloud_api: Option<bool>,
    marketing_messages_onboarding_status: Option<String>,
}

/// `POST /sandbox/wabas/{id}/marketing`.
pub(crate) async fn waba_marketing(
    State(sandbox): State<Sandbox>,
    Path(waba_id): Path<String>,
    body: Body,
) -> Result<Response, GraphError> {
    let b: WabaMarketingBody = json_body(body).await?;
    let now_ms = sandbox.inner.clock.now_ms();
    let v = {
        let mut state = sandbox.inner.lock();
        let Some(waba) = state.waba(&waba_id) else {
            return Err(GraphError::unsupported("post", &waba_id));
        };
        let phone_id = waba
            .phone_numbers
            .first()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        let owner = state
            .business_of_waba(&waba_id)
            .map(|b| b.id.clone())
            .unwrap_or_default();
        if let Some(on) = b.disable_marketing_messages_on_cloud_api {
            set_marketing_disabled(&mut state, &waba_id, on);
        }
        if let Some(status) = b.marketing_messages_onboarding_status {
            let was = state
                .consent
                .mm_onboarding
                .insert(waba_id.clone(), status.clone());
            if status == "ONBOARDED" && was.as_deref() != Some("ONBOARDED") {
                state.schedule(
                    now_ms,
                    &phone_id,
                    EventKind::Change {
                        entry_id: waba_id.clone(),
                        field: "account_update".to_owned(),
                        value: json!({
                            "event": "MM_LITE_TERMS_SIGNED",
                            "waba_info": {"owner_business_id": owner, "waba_id": waba_id},
                        }),
                    },
                );
            }
        }
        waba_fields(&state, &waba_id)
    };
    sandbox.inner.wake.notify_one();
    answer(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PricingBody {
    cutover_ms: i64,
}

/// `POST /sandbox/pricing`.
pub(crate) async fn set_pricing(
    State(sandbox): State<Sandbox>,
    body: Body,
) -> Result<Response, GraphError> {
    let b: PricingBody = json_body(body).await?;
    sandbox.inner.lock().consent.pricing_cutover_ms = b.cutover_ms;
    answer(json!({ "cutover_ms": b.cutover_ms }))
}

/// `GET /sandbox/consent`.
pub(crate) async fn get_consent(State(sandbox): State<Sandbox>) -> Result<Response, GraphError> {
    let state = sandbox.inner.lock();
    answer(serde_json::to_value(&state.consent).unwrap_or_default())
}

/// `POST /<PHONE_NUMBER_ID>/marketing_messages` (§7): marketing templates only (anything else
/// is code 100); `product_policy` `CLOUD_API_FALLBACK` (default) sends through the Cloud API
/// while the WABA is not `ONBOARDED` (so 131063 applies there), `STRICT` refuses instead.
pub(crate) fn post_marketing_messages(
    state: &mut World,
    now_ms: i64,
    version_major: u32,
    phone_id: &str,
    body: &Value,
) -> Result<crate::send::SendOutcome, GraphError> {
    let strict = match body.get("product_policy") {
        None | Some(Value::Null) => false,
        Some(Value::String(p)) if p == "CLOUD_API_FALLBACK" => false,
        Some(Value::String(p)) if p == "STRICT" => true,
        Some(other) => {
            return Err(GraphError::invalid_param(format!(
                "Param product_policy must be one of {{CLOUD_API_FALLBACK, STRICT}} - got {other}."
            )));
        }
    };
    if body
        .get("message_activity_sharing")
        .is_some_and(|v| !v.is_boolean() && !v.is_null())
    {
        return Err(GraphError::invalid_param(
            "Param message_activity_sharing must be a boolean.",
        ));
    }
    if body.get("type").and_then(Value::as_str) != Some("template") {
        return Err(GraphError::invalid_param(
            "Only marketing template messages can be sent through the Marketing Messages API.",
        ));
    }
    // §7: 12 h to 30 days, in seconds, on the template object.
    match body.pointer("/template/message_send_ttl_seconds") {
        None | Some(Value::Null) => {}
        Some(v)
            if v.as_i64()
                .is_some_and(|t| (43_200..=2_592_000).contains(&t)) => {}
        Some(other) => {
            return Err(GraphError::invalid_param(format!(
                "Param template['message_send_ttl_seconds'] must be an integer between 43200 and 2592000 - got {other}."
            )));
        }
    }
    let Some(phone) = state.phone(phone_id) else {
        return Err(GraphError::unsupported("post", phone_id));
    };
    let waba_id = phone.waba.id.clone();
    let name = body.pointer("/template/name").and_then(Value::as_str);
    let language = body
        .pointer("/template/language/code")
        .and_then(Value::as_str);
    if let (Some(name), Some(language)) = (name, language) {
        let category = crate::validate::find_template(&phone.waba.templates, name, language)?
            .get("category")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        if category != "marketing" {
            return Err(GraphError::invalid_param(format!(
                "Template {name} is a {category} template: only marketing templates can be sent through the Marketing Messages API."
            )));
        }
    }
    let onboarded = state
        .consent
        .mm_onboarding
        .get(&waba_id)
        .is_some_and(|s| s == "ONBOARDED");
    let endpoint = match (onboarded, strict) {
        (true, _) => Endpoint::MarketingMessages,
        (false, false) => Endpoint::CloudApi,
        (false, true) => {
            return Err(GraphError::invalid_param(
                "This WhatsApp Business Account is not onboarded to the Marketing Messages API, and product_policy is STRICT.",
            ));
        }
    };
    crate::send::post_via(state, now_ms, version_major, phone_id, body, endpoint)
}
