//! The console's campaign pages under Campaigns › WhatsApp messages: the list (paginated,
//! shown by `platforms::campaigns_page` once a platform exists), the New campaign form
//! (one dynamic-content expression per template variable, with a live preview for a sample
//! contact and the audience's live count), the campaign page with the plan and Start for a
//! draft, and live progress (server-sent events fed by the wake-up bus, so a change on any
//! node reaches the page; polling when the stream is refused) with Pause / Resume / Cancel.
//! Everything goes through the same engine calls as `/api/v1/campaigns`; field errors come
//! back with the engine's field names and the page shows them next to the fields.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use parley_domain::{ApplicationId, CampaignId, CampaignState, SlotKind, SlotLocation};
use parley_engine::audience::segment_id;
use parley_engine::audience::{PreviewContact, PreviewOutcome};
use parley_engine::campaigns::CampaignPlan;
use parley_engine::campaigns::campaign_id;
use parley_store::Wakeup;
use parley_store::campaigns::CampaignRecord;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{PageError, PageResult, SignedIn, SignedInJson, render};
use crate::AppState;
use crate::error::{ApiError, ApiJson};
use crate::routes::campaigns::{
    AudienceSpec, CampaignTemplate, CreateCampaignBody, CreatedBody, new_campaign,
};
use crate::routes::messages::rfc3339;

/// Campaigns per page of the list.
const PAGE: u32 = 20;

fn state_label(s: CampaignState) -> &'static str {
    match s {
        CampaignState::Draft => "Draft",
        CampaignState::Scheduled => "Scheduled",
        CampaignState::Running => "Running",
        CampaignState::Paused => "Paused",
        CampaignState::Completed => "Completed",
        CampaignState::Cancelled => "Cancelled",
    }
}

struct Row {
    id: String,
    name: String,
    state: String,
    state_label: &'static str,
    kind: String,
    template: String,
    progress: String,
    created: String,
}

#[derive(Template)]
#[template(path = "campaigns_list.html")]
struct ListFragment {
    rows: Vec<Row>,
    next: Option<String>,
}

/// `GET /campaigns/whatsapp?after=cmp_…`.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    pub after: Option<String>,
}

/// The campaign list with its pagination, as HTML for the WhatsApp messages page.
pub async fn list_section(state: &AppState, app: &ApplicationId, after: Option<&str>) -> String {
    let after = after.and_then(|a| CampaignId::parse(a).ok());
    let mut records = state
        .engine
        .campaigns(app, after.as_ref(), PAGE + 1)
        .await
        .unwrap_or_default();
    let next = super::next_page(&mut records, PAGE, |c| c.id.to_string());
    let mut rows = Vec::with_capacity(records.len());
    for c in records {
        let progress = match state.engine.campaign_stats(app, &c.id).await {
            Ok(s) if s.recipients > 0 || s.planned => format!(
                "{} % · {} of {} sent",
                s.progress_percent, s.sent, s.recipients
            ),
            _ => "—".into(),
        };
        rows.push(Row {
            id: c.id.to_string(),
            name: c.name,
            state: c.state.as_str().to_owned(),
            state_label: state_label(c.state),
            kind: c.kind.as_str().to_owned(),
            template: format!("{} ({})", c.template_name, c.template_language),
            progress,
            created: rfc3339(c.created_at),
        });
    }
    ListFragment { rows, next }.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "campaign list could not be rendered");
        String::new()
    })
}

struct NumberOption {
    id: String,
    label: String,
}

struct SegmentOption {
    id: String,
    label: String,
}

#[derive(Template)]
#[template(path = "campaign_new.html")]
struct NewPage {
    active: &'static str,
    email: String,
    numbers: Vec<NumberOption>,
    segments: Vec<SegmentOption>,
    /// `[{name, language, category, variables: [{key, where, kind}]}]` for the page's script.
    templates_json: String,
    has_templates: bool,
}

pub(crate) fn slot_where(l: SlotLocation) -> String {
    match l {
        SlotLocation::Header => "header".into(),
        SlotLocation::Body => "body".into(),
        SlotLocation::Button { index, .. } => format!("button {}", index + 1),
    }
}

pub(crate) fn slot_kind(k: SlotKind) -> &'static str {
    match k {
        SlotKind::Text => "text",
        SlotKind::Image => "image URL",
        SlotKind::Video => "video URL",
        SlotKind::Document => "document URL",
        SlotKind::Location => "location",
        SlotKind::Payload => "button payload",
        SlotKind::CouponCode => "coupon code",
    }
}

/// `GET /campaigns/whatsapp/new`.
pub async fn new_form(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
) -> Response {
    let engine = &state.engine;
    let numbers = engine
        .phone_numbers(&app.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|n| NumberOption {
            label: format!(
                "{} · {} msg/s · {}",
                n.display_phone_number,
                n.throughput_mps,
                super::platforms::limit_label(n.messaging_limit.as_deref().unwrap_or(""))
            ),
            id: n.phone_number_id.into(),
        })
        .collect();
    let segments = engine
        .segments(&app.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| SegmentOption {
            label: format!("{} — {}", s.name, s.filter),
            id: s.id.to_string(),
        })
        .collect();
    let templates: Vec<Value> = engine
        .templates(&app.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.deleted_at.is_none() && t.template.is_sendable().is_ok())
        .map(|t| {
            let vars: Vec<Value> = t
                .template
                .variables()
                .into_iter()
                .map(|s| {
                    json!({"key": s.key, "where": slot_where(s.location), "kind": slot_kind(s.kind)})
                })
                .collect();
            json!({
                "name": t.template.name.as_str(),
                "language": t.template.language.as_str(),
                "category": t.template.category.as_str(),
                "variables": vars,
            })
        })
        .collect();
    render(&NewPage {
        active: "campaigns",
        email,
        numbers,
        segments,
        has_templates: !templates.is_empty(),
        // `</` cannot close the script element the JSON sits in.
        templates_json: serde_json::to_string(&templates)
            .unwrap_or_else(|_| "[]".into())
            .replace("</", "<\\/"),
    })
}

/// What the New campaign form posts: the API's body flattened into the form's fields, with
/// the schedule as RFC 3339.
#[derive(Deserialize)]
pub struct CreateForm {
    name: String,
    phone_number_id: Option<String>,
    template_name: String,
    template_language: String,
    #[serde(default)]
    variables: serde_json::Map<String, Value>,
    segment_id: Option<String>,
    filter: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    scheduled_at: Option<String>,
    /// An uploaded list: numbers separated by lines, commas or semicolons.
    phones: Option<String>,
    /// The send window, `HH:MM` each, and its timezone (IANA name).
    window_start: Option<String>,
    window_end: Option<String>,
    window_timezone: Option<String>,
    /// Time-to-live on the Marketing Messages API, in hours (12–720).
    marketing_ttl_hours: Option<String>,
}

fn field_error(code: &'static str, message: &str, field: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message).field(field)
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The form as the API's create body: empty fields are absent, the list is split into
/// numbers, the window's fields make one object; the audience is the list if given, else the
/// saved segment, else the filter. What only the form can get wrong is refused here.
fn api_body(form: CreateForm) -> Result<CreateCampaignBody, ApiError> {
    let phones: Vec<String> = form
        .phones
        .as_deref()
        .unwrap_or_default()
        .split(['\n', ',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let send_window = match (
        nonempty(form.window_start),
        nonempty(form.window_end),
        nonempty(form.window_timezone),
    ) {
        (None, None, None) => None,
        (Some(start), Some(end), tz) => {
            let mut w = json!({"start": start, "end": end});
            if let Some(tz) = tz {
                w["timezone"] = json!(tz);
            }
            Some(w)
        }
        (None, _, _) => {
            return Err(field_error(
                "send_window_time_invalid",
                "give the hour sending may start, e.g. 09:00",
                "send_window.start",
            ));
        }
        (_, None, _) => {
            return Err(field_error(
                "send_window_time_invalid",
                "give the hour sending must stop, e.g. 20:00",
                "send_window.end",
            ));
        }
    };
    let none = AudienceSpec {
        filter: None,
        segment_id: None,
        phones: None,
    };
    let audience = match (nonempty(form.segment_id), nonempty(form.filter)) {
        _ if !phones.is_empty() => AudienceSpec {
            phones: Some(phones),
            ..none
        },
        (Some(id), _) => AudienceSpec {
            segment_id: Some(id),
            ..none
        },
        (None, Some(f)) => AudienceSpec {
            filter: Some(f),
            ..none
        },
        (None, None) => {
            return Err(field_error(
                "audience_invalid",
                "choose a saved segment or write a filter, e.g. city = \"Berlin\" (or all)",
                "audience.filter",
            ));
        }
    };
    if form.template_name.is_empty() {
        return Err(field_error(
            "template_not_found",
            "choose an approved template",
            "template.name",
        ));
    }
    let marketing_ttl_seconds = match nonempty(form.marketing_ttl_hours) {
        None => None,
        Some(h) => Some(
            h.parse::<i64>()
                .ok()
                .and_then(|h| h.checked_mul(3600))
                .ok_or_else(|| {
                    field_error(
                        "marketing_ttl_invalid",
                        "give the time-to-live in whole hours, 12 to 720",
                        "marketing_ttl_seconds",
                    )
                })?,
        ),
    };
    Ok(CreateCampaignBody {
        name: form.name,
        template: CampaignTemplate {
            name: form.template_name,
            language: form.template_language,
            variables: Some(Value::Object(form.variables)),
        },
        audience,
        kind: form.kind,
        phone_number_id: nonempty(form.phone_number_id),
        scheduled_at: nonempty(form.scheduled_at),
        send_window,
        marketing_ttl_seconds,
    })
}

/// `POST /campaigns/whatsapp/new` (JSON): creates the draft as `POST /api/v1/campaigns` does;
/// answers `{"id"}` or the error with its field.
pub async fn create(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    ApiJson(form): ApiJson<CreateForm>,
) -> Result<Response, ApiError> {
    let campaign = new_campaign(api_body(form)?)?;
    let c = state.engine.create_campaign(&app.id, campaign).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedBody {
            id: c.id.to_string(),
        }),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct PreviewBody {
    #[serde(default)]
    variables: serde_json::Map<String, Value>,
    segment_id: Option<String>,
    filter: Option<String>,
}

/// The most variables one preview renders: a template's are a handful (its header, body and
/// buttons); each is rendered for the sample contact.
const PREVIEW_VARIABLES: usize = 100;

/// `POST /campaigns/whatsapp/preview` (JSON): the audience's live count, a sample contact
/// from it, and each variable's expression rendered for that contact (or why it would be
/// skipped, or what is wrong with the expression). More than [`PREVIEW_VARIABLES`] is 422
/// `too_many_variables`.
pub async fn preview(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    ApiJson(body): ApiJson<PreviewBody>,
) -> Response {
    if body.variables.len() > PREVIEW_VARIABLES {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_variables",
            format!("a preview renders at most {PREVIEW_VARIABLES} variables"),
        )
        .field("variables")
        .into_response();
    }
    let engine = &state.engine;
    let filter = match (nonempty(body.segment_id), nonempty(body.filter)) {
        (Some(id), _) => {
            match async { engine.segment_by_id(&app.id, &segment_id(&id)?).await }.await {
                Ok(s) => Ok(s.filter),
                Err(f) => Err(json!({"field": "audience.segment_id", "message": f.message})),
            }
        }
        (None, Some(f)) => Ok(f),
        (None, None) => Ok("all".to_owned()),
    };
    let mut audience = json!(null);
    // The sample contact as read with the count: every variable renders for it, with no
    // read of its own.
    let mut sample_contact = None;
    match filter.and_then(|f| {
        engine
            .parse_segment(&f)
            .map_err(|e| json!({"field": "audience.filter", "message": e.message}))
    }) {
        Ok(segment) => match engine.preview_segment(&app.id, &segment, 1).await {
            Ok(p) => {
                let sample = p.sample.into_iter().next();
                audience = json!({
                    "count": p.count,
                    "sample": sample.as_ref().map(|c| json!({"phone": c.contact.phone, "name": c.contact.name})),
                });
                sample_contact = sample.map(|c| c.contact);
            }
            Err(f) => {
                audience = json!({"error": {"field": "audience.filter", "message": f.message}})
            }
        },
        Err(e) => audience = json!({"error": e}),
    }
    let mut values = serde_json::Map::new();
    for (key, expr) in &body.variables {
        let Some(expr) = expr.as_str() else { continue };
        let contact = match &sample_contact {
            Some(c) => PreviewContact::Inline {
                phone: Some(c.phone.clone()),
                name: c.name.clone(),
                tags: c.tags.clone(),
            },
            None => PreviewContact::Inline {
                phone: None,
                name: None,
                tags: Default::default(),
            },
        };
        let v = match engine
            .personalize_preview(&app.id, contact, Some(expr), None)
            .await
        {
            Ok(PreviewOutcome::Text(t)) => json!({"text": t}),
            Ok(PreviewOutcome::Skipped(r)) => {
                json!({"skipped": {"code": r.code(), "reason": r.to_string()}})
            }
            Ok(PreviewOutcome::Template(_)) => json!(null),
            Err(f) => json!({"error": f.message}),
        };
        values.insert(key.clone(), v);
    }
    axum::Json(json!({"audience": audience, "values": values})).into_response()
}

struct PlanView {
    audience: u64,
    recipients: u64,
    skipped: Vec<(String, u64)>,
    quota_used: u64,
    quota_limit: String,
    scope: String,
    tier: String,
    in_window: u64,
    sendable_now: u64,
    later: Vec<(String, u64)>,
    last_wave_at: String,
    throughput: u32,
    duration: String,
    /// The estimated cost (#16): total with currency and date, and its lines.
    cost_total: String,
    cost_lines: Vec<String>,
}

fn skip_label(code: &str) -> String {
    match code {
        "opted_out" => "opted out of marketing".into(),
        "missing_tag" => "missing tag with no default".into(),
        "bad_tag_value" => "tag value unusable".into(),
        "empty_value" => "empty value".into(),
        "invalid_number" => "invalid number".into(),
        "duplicate" => "duplicate".into(),
        "cancelled" => "cancelled".into(),
        other => other.replace('_', " "),
    }
}

fn duration_label(seconds: f64) -> String {
    let s = seconds.ceil() as u64;
    match s {
        0 => "under a second".into(),
        1..=119 => format!("{s} s"),
        120..=7199 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

fn plan_view(p: CampaignPlan) -> PlanView {
    PlanView {
        audience: p.audience,
        recipients: p.recipients,
        skipped: p
            .skipped_by_reason
            .into_iter()
            .map(|(k, n)| (skip_label(&k), n))
            .collect(),
        quota_used: p.quota.used,
        quota_limit: p
            .quota
            .limit
            .map_or_else(|| "unlimited".into(), |l| l.to_string()),
        scope: match p.quota.scope {
            "phone_number" => "this phone number".into(),
            _ => "the business portfolio".into(),
        },
        tier: p.quota.tier.unwrap_or_default(),
        in_window: p.quota.in_service_window,
        sendable_now: p.sendable_now,
        later: p.later.into_iter().map(|w| (w.at, w.contacts)).collect(),
        last_wave_at: p.last_wave_at.unwrap_or_default(),
        throughput: p.throughput_mps,
        duration: duration_label(p.seconds_to_send),
        cost_total: format!(
            "{} {} for {} charged and {} free messages (rates of {})",
            p.cost.total, p.cost.currency, p.cost.charged, p.cost.free, p.cost.rates_effective_date
        ),
        cost_lines: p
            .cost
            .lines
            .iter()
            .map(|l| {
                let mut s = format!(
                    "{} × {} in {}{}",
                    l.messages,
                    l.category.as_str(),
                    l.market,
                    if l.in_window {
                        ", inside the window"
                    } else {
                        ""
                    }
                );
                if l.free_entry_point {
                    s.push_str(", free entry point");
                }
                if let Some(t) = l.tier_from.filter(|t| *t > 1) {
                    s.push_str(&format!(", tier from message {t}"));
                }
                s.push_str(&format!(" at {} = {}", l.rate, l.cost));
                s
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "campaign_detail.html")]
struct DetailPage {
    active: &'static str,
    email: String,
    c: CampaignView,
    plan: Option<PlanView>,
    plan_error: String,
}

struct CampaignView {
    id: String,
    name: String,
    state: String,
    state_label: &'static str,
    reason: String,
    kind: String,
    template: String,
    variables: Vec<(String, String)>,
    audience: String,
    number: String,
    scheduled: String,
    created: String,
    draft: bool,
}

fn view(c: &CampaignRecord) -> CampaignView {
    CampaignView {
        id: c.id.to_string(),
        name: c.name.clone(),
        state: c.state.as_str().to_owned(),
        state_label: state_label(c.state),
        reason: c.state_reason.clone().unwrap_or_default(),
        kind: c.kind.as_str().to_owned(),
        template: format!("{} ({})", c.template_name, c.template_language),
        variables: c
            .variables
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        audience: match c.audience.get("segment_id").and_then(Value::as_str) {
            Some(id) => format!("segment {id}: {}", c.audience_filter),
            None => c.audience_filter.clone(),
        },
        number: c.phone_number_id.to_string(),
        scheduled: c
            .scheduled_at
            .map_or_else(|| "when started".into(), rfc3339),
        created: rfc3339(c.created_at),
        draft: c.state == CampaignState::Draft,
    }
}

/// `GET /campaigns/whatsapp/{id}`: the campaign, its plan while a draft, live progress.
pub async fn detail(
    State(state): State<AppState>,
    SignedIn { email, app, .. }: SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let id = campaign_id(&id).map_err(|f| PageError::not_found(f.message))?;
    let c = state
        .engine
        .campaign(&app.id, &id)
        .await
        .map_err(|f| PageError::not_found(f.message))?;
    let (plan, plan_error) = if c.state == CampaignState::Draft {
        match state.engine.plan_campaign(&app.id, &id).await {
            Ok(p) => (Some(plan_view(p)), String::new()),
            Err(f) => (None, f.message),
        }
    } else {
        (None, String::new())
    };
    Ok(render(&DetailPage {
        active: "campaigns",
        email,
        c: view(&c),
        plan,
        plan_error,
    }))
}

/// `GET /campaigns/whatsapp/{id}/stats`: the API's statistics, polled by the page.
pub async fn stats(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let s = state
        .engine
        .campaign_stats(&app.id, &campaign_id(&id)?)
        .await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(s)).into_response())
}

/// `GET /campaigns/whatsapp/{id}/export.csv`: the per-recipient outcomes, as the API's
/// `GET /api/v1/campaigns/{id}/export?bom=true` streams them (with a byte-order mark: a
/// download from the console is most often opened in a spreadsheet program).
pub async fn export(
    State(state): State<AppState>,
    SignedIn { app, .. }: SignedIn,
    Path(id): Path<String>,
) -> PageResult {
    let id = campaign_id(&id).map_err(|f| PageError::not_found(f.message))?;
    crate::routes::stats::campaign_csv_response(state.engine.clone(), app.id, id, true)
        .await
        .map_err(|f| PageError::not_found(f.message))
}

/// Live-progress streams one node serves at once; beyond, the page falls back to polling.
pub const MAX_LIVE_STREAMS: usize = 256;
/// A stream ends after this long; the browser's `EventSource` opens a new one at once.
const LIVE_STREAM_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The least time between two recomputations of one page's statistics.
const LIVE_MIN_INTERVAL: Duration = Duration::from_millis(300);
/// Statistics are recomputed at least this often even with no wake-up (one may be lost), or
/// at the node's fallback poll when that is longer.
const LIVE_FALLBACK: Duration = Duration::from_secs(15);

/// The open live-progress streams of this server: at most `MAX_LIVE_STREAMS`, all ended at
/// shutdown so they do not hold up the graceful stop.
#[derive(Clone)]
pub struct LiveStreams {
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    pub(crate) closing: CancellationToken,
}

impl LiveStreams {
    pub fn new() -> LiveStreams {
        LiveStreams {
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_LIVE_STREAMS)),
            closing: CancellationToken::new(),
        }
    }

    /// Ends every open stream (the server is stopping).
    pub fn close(&self) {
        self.closing.cancel();
    }
}

impl Default for LiveStreams {
    fn default() -> Self {
        LiveStreams::new()
    }
}

/// One open stream's state between events.
struct LiveStream {
    engine: parley_engine::Engine,
    app: ApplicationId,
    id: CampaignId,
    bus: tokio::sync::broadcast::Receiver<Wakeup>,
    last: Option<String>,
    first: Option<String>,
    ends: tokio::time::Instant,
    closing: CancellationToken,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl LiveStream {
    /// The next `progress` event: the statistics, whenever they differ from the last sent.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, LiveStream)> {
        if let Some(first) = self.first.take() {
            self.last = Some(first.clone());
            return Some((Ok(Event::default().event("progress").data(first)), self));
        }
        loop {
            let id = self.id.as_str().to_owned();
            let woken = parley_store::wakeups::wait_for(
                &mut self.bus,
                |w| matches!(w, Wakeup::Live(c) if c == "*" || *c == id),
            );
            tokio::select! {
                _ = self.closing.cancelled() => return None,
                _ = tokio::time::sleep_until(self.ends) => return None,
                _ = woken => {}
                _ = tokio::time::sleep(self.engine.config.poll_interval.max(LIVE_FALLBACK)) => {}
            }
            // Changes keep coming while a campaign sends: look at most every 300 ms.
            tokio::time::sleep(LIVE_MIN_INTERVAL).await;
            parley_store::wakeups::drain(&mut self.bus);
            let stats = self.engine.campaign_stats(&self.app, &self.id).await.ok()?;
            let json = serde_json::to_string(&stats).ok()?;
            if self.last.as_deref() != Some(json.as_str()) {
                self.last = Some(json.clone());
                return Some((Ok(Event::default().event("progress").data(json)), self));
            }
        }
    }
}

/// `GET /campaigns/whatsapp/{id}/events`: the campaign's statistics as server-sent events
/// (`event: progress`, the same JSON as `/stats`), first at once, then whenever a wake-up
/// says its progress changed, on this node or another (`parley_engine::wake`). One stream
/// per open page; 429 `too_many_live_streams` when the node serves `MAX_LIVE_STREAMS`
/// already (the page then polls).
pub async fn events(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = campaign_id(&id)?;
    // Subscribed before the first read, so no change between the two is missed.
    let bus = state.engine.subscribe_wakeups();
    let first = state.engine.campaign_stats(&app.id, &id).await?;
    let slot = state.live.slots.clone().try_acquire_owned().map_err(|_| {
        parley_engine::EngineError::new(
            parley_engine::ErrorKind::TooManyRequests,
            "too_many_live_streams",
            format!(
                "this node already serves {MAX_LIVE_STREAMS} live progress streams; the page polls instead"
            ),
        )
    })?;
    let stream = LiveStream {
        engine: state.engine.clone(),
        app: app.id.clone(),
        id,
        bus,
        last: None,
        first: Some(serde_json::to_string(&first).unwrap_or_default()),
        ends: tokio::time::Instant::now() + LIVE_STREAM_LIFETIME,
        closing: state.live.closing.clone(),
        _slot: slot,
    };
    let events = futures::stream::unfold(stream, LiveStream::next);
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            // nginx buffers proxied responses unless told not to.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Sse::new(events).keep_alive(KeepAlive::default()),
    )
        .into_response())
}

/// `POST /campaigns/whatsapp/{id}/{start|pause|resume|cancel}`: answers `{"state"}` or the
/// engine's error.
pub async fn action(
    State(state): State<AppState>,
    SignedInJson(app): SignedInJson,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let engine = &state.engine;
    let c = match action.as_str() {
        "start" => engine.start_campaign(&app.id, &campaign_id(&id)?).await?,
        "pause" => engine.pause_campaign(&app.id, &campaign_id(&id)?).await?,
        "resume" => engine.resume_campaign(&app.id, &campaign_id(&id)?).await?,
        "cancel" => engine.cancel_campaign(&app.id, &campaign_id(&id)?).await?,
        _ => return Err(ApiError::not_found("this action")),
    };
    Ok(
        axum::Json(json!({"state": c.state.as_str(), "state_reason": c.state_reason}))
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(duration_label(0.0), "under a second");
        assert_eq!(duration_label(12.5), "13 s");
        assert_eq!(duration_label(1250.0), "20 min 50 s");
        assert_eq!(duration_label(100_000.0), "27 h 46 min");
        assert_eq!(skip_label("opted_out"), "opted out of marketing");
    }
}
