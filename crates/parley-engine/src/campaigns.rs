//! Campaigns: create (template approved, variables bound, audience parsed), plan against the
//! quota, start (one conditional state change, so starting twice or on two nodes sends once),
//! pause/resume/cancel, and the planner worker that expands the audience in keyset chunks
//! (constant memory) into personalized `messages` rows, each chunk committed with its cursor.
//! The quota gate itself runs in the sender (`sender.rs`), per message, just before the call.

use std::collections::BTreeMap;
use std::time::Duration;

use parley_domain::quota::{self, LimitScope, MessagingLimit, QuotaWave};
use parley_domain::{
    ApplicationId, BoundTemplate, CampaignId, CampaignKind, CampaignState, E164, MessageContent,
    MessageId, PhoneNumberId, Segment, SegmentId, SendWindow, Subscription, VariableInput,
    in_service_window, is_bsuid_address, next_opening,
};
use parley_store::audience::ContactUpsert;
use parley_store::audience::{AudienceContact, ContactQuery};
use parley_store::campaigns::{CampaignCounts, CampaignRecord, ListEntry, PlannedMessage};
use parley_store::{NewMessage, PhoneNumberRecord};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::to_datetime;
use crate::messages::ContactTags;
use crate::{Engine, EngineError, ErrorKind};

/// Contacts read and planned per chunk (one transaction). Planned messages go into indexes
/// keyed by the recipient's number, in no order: 2,000 rows to a transaction dirty about half
/// the pages per row that 500 did (the WAL written per message fell from ~3.0 to ~1.4 KB).
pub const PLAN_CHUNK: u32 = 2_000;

/// `next_attempt_at` of the messages of a paused campaign (year 9999): never due.
pub const HELD: i64 = 253_402_300_799_000;

/// Draft campaigns an application keeps at most: each may hold an uploaded list of up to
/// `MAX_LIST` numbers. One more is 409 `draft_limit_reached`; start, cancel or schedule one.
pub const MAX_DRAFTS: u64 = 100;

fn drafts_full() -> EngineError {
    EngineError::new(
        ErrorKind::Conflict,
        "draft_limit_reached",
        format!(
            "an application keeps at most {MAX_DRAFTS} draft campaigns; start, schedule or cancel one (POST /api/v1/campaigns/{{id}}/cancel) first"
        ),
    )
}

/// What the API gives to create a campaign.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub phone_number_id: Option<PhoneNumberId>,
    pub template_name: String,
    pub template_language: String,
    pub variables: VariableInput,
    pub audience: CampaignAudience,
    pub kind: CampaignKind,
    pub scheduled_at: Option<i64>,
    pub send_window: Option<SendWindow>,
    /// Time-to-live of the sends that go through the Marketing Messages API (seconds,
    /// checked by `marketing::marketing_ttl`).
    pub marketing_ttl_seconds: Option<i64>,
}

#[derive(Debug, Clone)]
pub enum CampaignAudience {
    Filter(String),
    Segment(String),
    /// An uploaded list of numbers (E.164), up to `MAX_LIST` of them.
    List(Vec<String>),
}

/// Numbers an uploaded list may hold.
pub const MAX_LIST: usize = 100_000;

/// One item of an audience page: a contact to plan, or a list entry skipped with a reason.
enum AudienceItem {
    Contact(Box<AudienceContact>),
    Skip {
        phone: String,
        code: &'static str,
        text: String,
    },
}

/// Checks an uploaded list: E.164 numbers, each once; later copies are `duplicate`.
fn list_entries(phones: &[String]) -> Result<Vec<ListEntry>, EngineError> {
    if phones.is_empty() || phones.len() > MAX_LIST {
        return Err(EngineError::unprocessable(
            "audience_list_size",
            format!(
                "`audience.phones` holds 1–{MAX_LIST} numbers; this one has {}; split a longer list into several campaigns",
                phones.len()
            ),
        )
        .field("audience.phones"));
    }
    let mut seen = std::collections::HashSet::with_capacity(phones.len());
    Ok(phones
        .iter()
        .map(|raw| match E164::parse(raw) {
            Ok(p) if seen.insert(p.as_str().to_owned()) => ListEntry {
                phone: p.as_str().to_owned(),
                skip: None,
            },
            Ok(p) => ListEntry {
                phone: p.as_str().to_owned(),
                skip: Some("duplicate".into()),
            },
            Err(_) => ListEntry {
                phone: raw.chars().take(64).collect(),
                skip: Some("invalid_number".into()),
            },
        })
        .collect())
}

/// `GET /api/v1/campaigns/{id}/plan`.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignPlan {
    /// Contacts in the audience.
    pub audience: u64,
    /// Messages that will be sent.
    pub recipients: u64,
    pub skipped: u64,
    /// Skipped by reason: `opted_out` (marketing only), `missing_tag`, `bad_tag_value`,
    /// `empty_value`, `too_long` (a value over WhatsApp's limit for this contact), `invalid_number`,
    /// `duplicate`.
    pub skipped_by_reason: BTreeMap<String, u64>,
    pub quota: QuotaNow,
    /// Recipients that may go at once (inside their service window, or a free slot).
    pub sendable_now: u64,
    /// Later waves as slots free up: `{at, contacts}`.
    pub later: Vec<QuotaWaveView>,
    /// When the last recipient may go (RFC 3339), if not all at once.
    pub last_wave_at: Option<String>,
    /// Messages per second of the number and the time to send the recipients at that rate.
    pub throughput_mps: u32,
    pub seconds_to_send: f64,
    /// Recipients outside their send window now (they wait for it to open; the quota waves
    /// above do not account for the window).
    pub waiting_for_window: u64,
    /// When the first message may go given the window (RFC 3339): now when some recipient is
    /// inside it, else the earliest opening; `null` without recipients.
    pub first_send_at: Option<String>,
    /// The estimated cost if every recipient is delivered (#16): per recipient its category,
    /// market, window, free entry point and volume tier, summed into lines.
    pub cost: crate::pricing::CostEstimate,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuotaNow {
    /// `business_portfolio` or `phone_number`.
    pub scope: &'static str,
    /// Unique contacts reached business-initiated in the rolling 24 h.
    pub used: u64,
    /// The limit (`null` when unlimited).
    pub limit: Option<u64>,
    /// Meta's tier string as last reported.
    pub tier: Option<String>,
    /// Recipients inside their 24 h service window (they take no slot).
    pub in_service_window: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuotaWaveView {
    pub at: String,
    pub contacts: u64,
}

/// `GET /api/v1/campaigns/{id}/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignStats {
    pub state: &'static str,
    pub state_reason: Option<String>,
    pub planned: bool,
    pub recipients: u64,
    pub queued: u64,
    pub waiting_for_quota: u64,
    pub next_slot_at: Option<String>,
    /// Queued messages waiting for their recipient's send window to open.
    pub waiting_for_window: u64,
    /// When the earliest of those opens (RFC 3339).
    pub next_window_at: Option<String>,
    pub sending: u64,
    /// Accepted by Meta, no status yet.
    pub accepted: u64,
    /// Reached `sent` or beyond (sent + delivered + read).
    pub sent: u64,
    /// Reached `delivered` or beyond (delivered + read).
    pub delivered: u64,
    pub read: u64,
    pub failed: u64,
    pub skipped: u64,
    pub replied: u64,
    /// Messages in a final state (sent or beyond, failed, skipped) per recipient, 0–100.
    pub progress_percent: f64,
    pub failed_by_code: BTreeMap<String, u64>,
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Accepted by Meta but held for quality assessment (template or portfolio pacing), not
    /// released yet (also counted in `accepted`).
    pub held_by_meta: u64,
    /// Capped by Meta's per-user marketing limit (131049): waiting 24 h to go again (also in
    /// `queued`) plus those that failed with it after the last reschedule (in `failed`).
    pub capped_by_meta: u64,
    /// Messages by the category Meta charged (`pricing.category` of their statuses).
    pub charged_by_category: BTreeMap<String, u64>,
    /// Per hour (RFC 3339 start of hour): messages sent.
    pub sent_per_hour: BTreeMap<String, u64>,
}

fn rfc3339(ms: i64) -> String {
    to_datetime(ms)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A campaign id from a URL or a form, parsed at the edge: text that is not a campaign id is
/// answered like an id no campaign has.
pub fn campaign_id(raw: &str) -> Result<CampaignId, EngineError> {
    CampaignId::parse(raw).map_err(|_| not_found(raw))
}

fn not_found(id: &str) -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "campaign_not_found",
        format!("this application has no campaign `{id}`; list yours with GET /api/v1/campaigns"),
    )
}

/// Why a contact is not sent to, or `None` when it is. Personalization is done here too.
enum Planned {
    Send(MessageContent),
    Skip(&'static str, String),
}

fn plan_contact(
    bound: &BoundTemplate,
    kind: CampaignKind,
    needs_phone: bool,
    c: &AudienceContact,
) -> (Planned, Option<String>) {
    if kind == CampaignKind::Marketing && c.subscription == Subscription::OptedOut {
        return (
            Planned::Skip(
                "opted_out",
                "the contact opted out of marketing messages".into(),
            ),
            None,
        );
    }
    // A contact known only by its business-scoped user id (BSUID) is sent by `recipient`
    // (META_2026 §3.8), except what Meta refuses to a BSUID (131062).
    let address = if is_bsuid_address(&c.contact.phone) {
        if needs_phone {
            return (
                Planned::Skip(
                    "bsuid_recipient_not_supported",
                    "an authentication template needs the customer's phone number, and Parley knows only their business-scoped user id (BSUID)".into(),
                ),
                None,
            );
        }
        c.contact.phone.clone()
    } else {
        // Stored contacts were validated when they were written.
        match E164::from_stored(&c.contact.phone) {
            Ok(p) => p.as_str().to_owned(),
            Err(e) => return (Planned::Skip("invalid_number", e.to_string()), None),
        }
    };
    let lookup = ContactTags {
        tags: Some(&c.contact.tags),
        phone: crate::messages::phone_tag(&address),
        name: c.contact.name.as_deref(),
    };
    match bound.render(&lookup) {
        Ok(template) => (
            Planned::Send(MessageContent::Template { template }),
            Some(address),
        ),
        Err(reason) => (
            Planned::Skip(reason.code(), reason.to_string()),
            Some(address),
        ),
    }
}

/// Template variables as the API gives them (object, array or null), with the API's error:
/// the edge's parse, and the reading of a campaign's stored variables.
pub fn variable_input(v: &serde_json::Value) -> Result<VariableInput, EngineError> {
    VariableInput::from_json(v).map_err(|e| {
        EngineError::bad_request(e.code(), e.to_string()).field(format!("template.{}", e.field()))
    })
}

/// The campaign's send window; one stored before windows were checked and no longer valid
/// is ignored (with a warning) rather than holding its messages forever.
fn window_of(c: &CampaignRecord) -> Option<SendWindow> {
    let v = c.send_window.as_ref().filter(|v| !v.is_null())?;
    match SendWindow::from_json(v) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(campaign_id = %c.id, error = %e.message, "ignoring an invalid send window");
            None
        }
    }
}

/// Whether the campaign's audience is an uploaded list.
fn is_list(c: &CampaignRecord) -> bool {
    c.audience.get("list").is_some()
}

impl Engine {
    /// The segment to expand, or `None` for an uploaded list.
    fn segment_for(&self, c: &CampaignRecord) -> Result<Option<Segment>, EngineError> {
        if is_list(c) {
            Ok(None)
        } else {
            self.segment_of(c).map(Some)
        }
    }

    /// One page (`PLAN_CHUNK`) of the audience after the cursor, and the cursor after it: a
    /// segment's contacts in phone order, or a list's entries in upload order (cursor: the
    /// position).
    async fn audience_page(
        &self,
        c: &CampaignRecord,
        segment: Option<&Segment>,
        after: Option<&str>,
        now: i64,
    ) -> Result<(Vec<AudienceItem>, Option<String>), EngineError> {
        if let Some(segment) = segment {
            let page = self
                .store
                .list_audience(
                    &c.application_id,
                    &ContactQuery {
                        segment,
                        search: None,
                        after,
                        limit: PLAN_CHUNK,
                        now: to_datetime(now),
                    },
                )
                .await?;
            let next = page.last().map(|c| c.contact.phone.clone());
            return Ok((
                page.into_iter()
                    .map(|c| AudienceItem::Contact(Box::new(c)))
                    .collect(),
                next,
            ));
        }
        let after = after.and_then(|a| a.parse::<i64>().ok()).unwrap_or(0);
        let page = self
            .store
            .campaign_list_page(&c.application_id, &c.id, after, PLAN_CHUNK)
            .await?;
        let next = page.last().map(|r| r.position.to_string());
        let items = page
            .into_iter()
            .map(|r| match (r.entry.skip.as_deref(), r.contact) {
                (None, Some(contact)) => AudienceItem::Contact(Box::new(contact)),
                (Some("duplicate"), _) => AudienceItem::Skip {
                    phone: r.entry.phone,
                    code: "duplicate",
                    text: "the number appears earlier in the list".into(),
                },
                (Some(_), _) => AudienceItem::Skip {
                    phone: r.entry.phone,
                    code: "invalid_number",
                    text: "not a valid phone number in E.164 format (+ country code, number)"
                        .into(),
                },
                (None, None) => AudienceItem::Skip {
                    phone: r.entry.phone,
                    code: "contact_erased",
                    text: "the contact was erased after the list was uploaded".into(),
                },
            })
            .collect();
        Ok((items, next))
    }

    fn segment_of(&self, c: &CampaignRecord) -> Result<Segment, EngineError> {
        Segment::parse(&c.audience_filter).map_err(|e| {
            EngineError::unprocessable("audience_invalid", e.to_string()).field("audience.filter")
        })
    }

    /// True for a template Meta refuses to send to a BSUID alone (authentication, 131062).
    async fn needs_phone(
        &self,
        app: &ApplicationId,
        name: &str,
        language: &str,
    ) -> Result<bool, EngineError> {
        Ok(self
            .store
            .template(app, name, language)
            .await?
            .is_some_and(|t| {
                t.template.category == parley_domain::TemplateCategory::Authentication
            }))
    }

    async fn bound_template(
        &self,
        app: &ApplicationId,
        name: &str,
        language: &str,
        input: &VariableInput,
    ) -> Result<BoundTemplate, EngineError> {
        let record = self.store.template(app, name, language).await?.ok_or_else(|| {
            EngineError::unprocessable(
                "template_not_found",
                format!(
                    "there is no template `{name}` in language `{language}`; check the name and language, or sync templates from Meta"
                ),
            )
            .field("template.name")
        })?;
        record.template.is_sendable().map_err(|e| {
            EngineError::unprocessable("template_not_approved", e.to_string())
                .field("template.name")
        })?;
        BoundTemplate::bind(&record.template, input).map_err(|e| {
            EngineError::unprocessable(e.code(), e.to_string())
                .field(format!("template.{}", e.field()))
        })
    }

    /// Checks and stores a campaign as a draft.
    pub async fn create_campaign(
        &self,
        app: &ApplicationId,
        input: NewCampaign,
    ) -> Result<CampaignRecord, EngineError> {
        let marketing_ttl_seconds = crate::marketing::marketing_ttl(input.marketing_ttl_seconds)?;
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(EngineError::bad_request(
                "name_invalid",
                "give the campaign a name of 1–200 characters",
            )
            .field("name"));
        }
        let phone_number_id = self
            .sending_number(app, input.phone_number_id.as_ref())
            .await?;
        // Checked again where the draft is written; here before a list's contacts are.
        if self.store.count_draft_campaigns(app).await? >= MAX_DRAFTS {
            return Err(drafts_full());
        }
        self.bound_template(
            app,
            &input.template_name,
            &input.template_language,
            &input.variables,
        )
        .await?;
        let (audience, filter) = match &input.audience {
            CampaignAudience::Filter(f) => {
                Segment::parse(f).map_err(|e| {
                    crate::audience::too_complex(&e, "audience.filter").unwrap_or_else(|| {
                        EngineError::unprocessable("audience_invalid", e.to_string())
                            .field("audience.filter")
                    })
                })?;
                (serde_json::json!({ "filter": f }), f.clone())
            }
            CampaignAudience::Segment(id) => {
                let seg_id = SegmentId::parse(id).map_err(|e| {
                    EngineError::bad_request("segment_id_invalid", e.to_string())
                        .field("audience.segment_id")
                })?;
                let seg = self.store.segment(app, &seg_id).await?.ok_or_else(|| {
                    EngineError::unprocessable(
                        "segment_not_found",
                        format!("this application has no segment `{id}`; list yours with GET /api/v1/segments"),
                    )
                    .field("audience.segment_id")
                })?;
                (serde_json::json!({ "segment_id": id }), seg.filter)
            }
            CampaignAudience::List(_) => (serde_json::Value::Null, String::new()),
        };
        let id = CampaignId::new();
        let mut list = Vec::new();
        let audience = match &input.audience {
            CampaignAudience::List(phones) => {
                let entries = list_entries(phones)?;
                let count = |code: &str| {
                    entries
                        .iter()
                        .filter(|e| e.skip.as_deref() == Some(code))
                        .count()
                };
                let (invalid, duplicate) = (count("invalid_number"), count("duplicate"));
                // Numbers that are not contacts yet become contacts (no name, no tags).
                let fresh: Vec<ContactUpsert> = entries
                    .iter()
                    .filter(|e| e.skip.is_none())
                    .map(|e| ContactUpsert {
                        phone: e.phone.clone(),
                        ..ContactUpsert::default()
                    })
                    .collect();
                for chunk in fresh.chunks(crate::audience::IMPORT_CHUNK) {
                    self.store.upsert_audience(app, chunk, self.now()).await?;
                }
                let audience = serde_json::json!({ "list": {
                    "numbers": entries.len(), "invalid_number": invalid, "duplicate": duplicate,
                }});
                list = entries;
                audience
            }
            _ => audience,
        };
        let now = self.now();
        let record = CampaignRecord {
            id,
            application_id: app.clone(),
            name: name.to_owned(),
            phone_number_id,
            template_name: input.template_name,
            template_language: input.template_language,
            // Stored in the canonical JSON form (`VariableInput`'s), read back by
            // `variable_input`.
            variables: serde_json::to_value(&input.variables).map_err(EngineError::internal)?,
            audience,
            audience_filter: filter,
            kind: input.kind,
            scheduled_at: input.scheduled_at,
            send_window: input.send_window.as_ref().map(SendWindow::to_json),
            marketing_ttl_seconds,
            state: CampaignState::Draft,
            state_reason: None,
            planner_cursor: None,
            planned: false,
            recipients: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
        };
        if !self
            .store
            .create_campaign(&record, &list, MAX_DRAFTS)
            .await?
        {
            return Err(drafts_full());
        }
        Ok(record)
    }

    pub async fn campaign(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<CampaignRecord, EngineError> {
        self.store
            .campaign(app, id)
            .await?
            .ok_or_else(|| not_found(id.as_str()))
    }

    /// The number's limit, scope and scope key, as stored now.
    pub(crate) async fn quota_context(
        &self,
        number: &PhoneNumberRecord,
    ) -> parley_store::Result<(MessagingLimit, LimitScope, String)> {
        let limit = MessagingLimit::from_stored(number.messaging_limit.as_deref());
        let scope = self
            .store
            .platform_numbers(&number.platform_id)
            .await?
            .into_iter()
            .find(|n| n.number.phone_number_id == number.phone_number_id)
            .map(|n| LimitScope::from_stored(n.messaging_limit_scope.as_deref()))
            .unwrap_or_default();
        let business = self
            .store
            .platform(&number.application_id, &number.platform_id)
            .await?
            .and_then(|p| p.business_id)
            .map(String::from)
            .unwrap_or_default();
        let key = scope.key(&business, number.phone_number_id.as_str());
        Ok((limit, scope, key))
    }

    /// Expands the audience (read-only) and plans it against the quota. A plan walks the
    /// whole audience, so an application's plans run one at a time on this node, and a
    /// request that waited while a plan of the same campaign was made after it arrived gets
    /// that plan (made from data at least as new as the request).
    pub async fn plan_campaign(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<CampaignPlan, EngineError> {
        self.plans
            .get(app.as_str(), (app.clone(), id.clone()), || {
                self.walk_plan(app, id)
            })
            .await
    }

    /// Plans walked on this node since it started (monitoring, and the tests' count of the
    /// walks that requests shared).
    pub fn plans_walked(&self) -> u64 {
        self.plans.makings()
    }

    async fn walk_plan(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<CampaignPlan, EngineError> {
        let c = self.campaign(app, id).await?;
        let bound = self
            .bound_template(
                app,
                &c.template_name,
                &c.template_language,
                &variable_input(&c.variables)?,
            )
            .await?;
        let needs_phone = self
            .needs_phone(app, &c.template_name, &c.template_language)
            .await?;
        let segment = self.segment_for(&c)?;
        let now = self.now();
        let number = self
            .store
            .phone_number(&c.phone_number_id)
            .await?
            .ok_or_else(|| {
                EngineError::new(
                    ErrorKind::Conflict,
                    "phone_number_gone",
                    "the campaign's number is no longer connected",
                )
            })?;
        let (limit, scope, key) = self.quota_context(&number).await?;
        let active = self.store.quota_active(&key, now).await?;
        let mut plan = CampaignPlan {
            audience: 0,
            recipients: 0,
            skipped: 0,
            skipped_by_reason: BTreeMap::new(),
            quota: QuotaNow {
                scope: scope.as_str(),
                used: active.len() as u64,
                limit: limit.per_day(),
                tier: number.messaging_limit.clone(),
                in_service_window: 0,
            },
            sendable_now: 0,
            later: Vec::new(),
            last_wave_at: None,
            throughput_mps: number.throughput_mps.max(1),
            seconds_to_send: 0.0,
            waiting_for_window: 0,
            first_send_at: None,
            cost: Default::default(),
        };
        let price_kind = match self
            .store
            .template(app, &c.template_name, &c.template_language)
            .await?
        {
            Some(t) => parley_domain::pricing::MessageKind::Template(t.template.category),
            None => parley_domain::pricing::MessageKind::Template(
                parley_domain::TemplateCategory::Marketing,
            ),
        };
        let mut estimator = self.estimator(app).await?;
        let entry_points = self
            .free_entry_points(app, number.phone_number_id.as_str())
            .await?;
        let window = window_of(&c);
        let mut first_send: Option<i64> = None;
        let mut after: Option<String> = None;
        let mut new_contacts = 0u64;
        loop {
            let (page, next) = self
                .audience_page(&c, segment.as_ref(), after.as_deref(), now)
                .await?;
            for item in &page {
                plan.audience += 1;
                let contact = match item {
                    AudienceItem::Contact(contact) => contact,
                    AudienceItem::Skip { code, .. } => {
                        plan.skipped += 1;
                        *plan
                            .skipped_by_reason
                            .entry((*code).to_owned())
                            .or_default() += 1;
                        continue;
                    }
                };
                let (planned, address) = plan_contact(&bound, c.kind, needs_phone, contact);
                match planned {
                    Planned::Send(_) => {
                        plan.recipients += 1;
                        let opens = window.as_ref().and_then(|w| {
                            next_opening(&w.resolve(contact.timezone.as_deref()), now)
                        });
                        if opens.is_some() {
                            plan.waiting_for_window += 1;
                        }
                        let at = opens.unwrap_or(now);
                        first_send = Some(first_send.map_or(at, |f| f.min(at)));
                        let inside = in_service_window(
                            contact.contact.last_inbound_at.map(to_datetime),
                            to_datetime(now),
                        );
                        if inside {
                            plan.quota.in_service_window += 1;
                        } else {
                            new_contacts += 1;
                        }
                        let address = address.unwrap_or_default();
                        let fep = entry_points.contains(address.trim_start_matches('+'));
                        estimator.add(&address, price_kind, inside, fep);
                    }
                    Planned::Skip(code, _) => {
                        plan.skipped += 1;
                        *plan.skipped_by_reason.entry(code.to_owned()).or_default() += 1;
                    }
                }
            }
            after = next;
            if page.len() < PLAN_CHUNK as usize {
                break;
            }
        }
        let sched = quota::schedule(limit, now, &active, new_contacts);
        plan.sendable_now = plan.quota.in_service_window + sched.now;
        plan.later = sched
            .later
            .iter()
            .map(|QuotaWave { at, contacts }| QuotaWaveView {
                at: rfc3339(*at),
                contacts: *contacts,
            })
            .collect();
        plan.last_wave_at = sched.last_at.map(rfc3339);
        plan.seconds_to_send = plan.recipients as f64 / f64::from(plan.throughput_mps);
        plan.first_send_at = first_send.map(rfc3339);
        plan.cost = estimator.finish();
        Ok(plan)
    }

    /// Starts (or schedules) a campaign. Idempotent: a campaign already started is answered
    /// as it is; of two concurrent starts, one changes it.
    pub async fn start_campaign(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<CampaignRecord, EngineError> {
        let c = self.campaign(app, id).await?;
        // Refuse a campaign whose template can no longer be sent, before anything is queued.
        self.bound_template(
            app,
            &c.template_name,
            &c.template_language,
            &variable_input(&c.variables)?,
        )
        .await?;
        let now = self.now();
        let to = match c.scheduled_at {
            Some(at) if at > now => CampaignState::Scheduled,
            _ => CampaignState::Running,
        };
        let from: &[CampaignState] = if to == CampaignState::Running {
            &[CampaignState::Draft, CampaignState::Scheduled]
        } else {
            &[CampaignState::Draft]
        };
        if self
            .store
            .transition_campaign(&c.id, from, to, None, now)
            .await?
        {
            self.wake_campaigns();
            self.progress_changed(Some(&c.id));
        }
        self.campaign(app, id).await
    }

    pub async fn pause_campaign(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<CampaignRecord, EngineError> {
        let c = self.campaign(app, id).await?;
        let now = self.now();
        self.pause(&c.id, "paused by the user", now).await?;
        let c = self.campaign(app, id).await?;
        if !matches!(c.state, CampaignState::Paused) {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "campaign_not_running",
                format!("a {} campaign cannot be paused", c.state.as_str()),
            ));
        }
        Ok(c)
    }

    pub(crate) async fn pause(
        &self,
        id: &CampaignId,
        reason: &str,
        now: i64,
    ) -> parley_store::Result<bool> {
        let changed = self
            .store
            .transition_campaign(
                id,
                &[CampaignState::Running, CampaignState::Scheduled],
                CampaignState::Paused,
                Some(reason),
                now,
            )
            .await?;
        if changed {
            self.store.hold_campaign_messages(id, HELD).await?;
            self.progress_changed(Some(id));
        }
        Ok(changed)
    }

    pub async fn resume_campaign(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<CampaignRecord, EngineError> {
        let c = self.campaign(app, id).await?;
        let now = self.now();
        // A campaign paused before its scheduled time goes back to waiting for that time.
        let to = match c.scheduled_at {
            Some(at) if at > now => CampaignState::Scheduled,
            _ => CampaignState::Running,
        };
        if self
            .store
            .transition_campaign(&c.id, &[CampaignState::Paused], to, None, now)
            .await?
        {
            self.store.release_campaign_messages(&c.id, now).await?;
            self.wake_senders(Some(&c.phone_number_id));
            self.wake_campaigns();
            self.progress_changed(Some(&c.id));
        } else if c.state != CampaignState::Running {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "campaign_not_paused",
                format!("a {} campaign cannot be resumed", c.state.as_str()),
            ));
        }
        self.campaign(app, id).await
    }

    pub async fn cancel_campaign(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<CampaignRecord, EngineError> {
        let c = self.campaign(app, id).await?;
        let now = self.now();
        let changed = self
            .store
            .transition_campaign(
                &c.id,
                &[
                    CampaignState::Draft,
                    CampaignState::Scheduled,
                    CampaignState::Running,
                    CampaignState::Paused,
                ],
                CampaignState::Cancelled,
                Some("cancelled by the user"),
                now,
            )
            .await?;
        self.progress_changed(Some(&c.id));
        if changed {
            self.store.cancel_campaign_messages(&c.id, now).await?;
        } else if c.state == CampaignState::Completed {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "campaign_completed",
                "the campaign has completed; there is nothing left to cancel",
            ));
        }
        self.campaign(app, id).await
    }

    /// The campaign's statistics. They aggregate every message of the campaign, and each
    /// open progress page asks for them on every change: requests for one campaign take
    /// turns and share what was counted after they arrived (`flights.rs`).
    pub async fn campaign_stats(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<CampaignStats, EngineError> {
        self.campaign_stats_made
            .get(&format!("{app}/{id}"), (app.clone(), id.clone()), || {
                self.count_campaign_stats(app, id)
            })
            .await
    }

    async fn count_campaign_stats(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<CampaignStats, EngineError> {
        let c = self.campaign(app, id).await?;
        let counts: CampaignCounts = self.store.campaign_counts(&c.id).await?;
        let meta = self.store.campaign_meta_counts(&c.id).await?;
        let charged_by_category = self.store.campaign_charged_categories(&c.id).await?;
        let capped_failed = counts.failed_by_code.get("131049").copied().unwrap_or(0);
        let n = |s: &str| counts.by_state.get(s).copied().unwrap_or(0);
        let read = n("read");
        let delivered = n("delivered") + read;
        let sent = n("sent") + delivered;
        let failed = n("failed");
        let skipped = n("skipped");
        let recipients = counts.by_state.values().sum::<u64>();
        let done = sent + failed + skipped;
        Ok(CampaignStats {
            state: c.state.as_str(),
            state_reason: c.state_reason,
            planned: c.planned,
            recipients,
            queued: n("queued"),
            waiting_for_quota: counts.waiting_for_quota,
            next_slot_at: counts.next_slot_at.map(rfc3339),
            waiting_for_window: counts.waiting_for_window,
            next_window_at: counts.next_window_at.map(rfc3339),
            sending: n("sending"),
            accepted: n("accepted"),
            sent,
            delivered,
            read,
            failed,
            skipped,
            replied: counts.replied,
            progress_percent: if recipients == 0 {
                if c.planned { 100.0 } else { 0.0 }
            } else {
                (done as f64 * 1000.0 / recipients as f64).round() / 10.0
            },
            failed_by_code: counts.failed_by_code,
            skipped_by_reason: counts.skipped_by_reason,
            held_by_meta: meta.held_by_meta,
            capped_by_meta: meta.capped_waiting + capped_failed,
            charged_by_category,
            sent_per_hour: counts
                .sent_per_hour
                .into_iter()
                .map(|(h, n)| (rfc3339(h), n))
                .collect(),
        })
    }

    /// Plans one chunk of a running campaign. Returns true when more remain.
    async fn plan_chunk(&self, c: &CampaignRecord) -> Result<bool, EngineError> {
        let bound = match async {
            let input = variable_input(&c.variables)?;
            self.bound_template(
                &c.application_id,
                &c.template_name,
                &c.template_language,
                &input,
            )
            .await
        }
        .await
        {
            Ok(b) => b,
            Err(e) => {
                // The template was paused, disabled or deleted since: pause with the reason.
                self.pause(&c.id, &e.message, self.now()).await?;
                return Ok(false);
            }
        };
        let needs_phone = self
            .needs_phone(&c.application_id, &c.template_name, &c.template_language)
            .await?;
        let segment = self.segment_for(c)?;
        let now = self.now();
        let (page, next) = self
            .audience_page(c, segment.as_ref(), c.planner_cursor.as_deref(), now)
            .await?;
        let done = page.len() < PLAN_CHUNK as usize;
        let window = window_of(c);
        let mut planned = Vec::with_capacity(page.len());
        for item in &page {
            let contact = match item {
                AudienceItem::Contact(contact) => contact,
                AudienceItem::Skip { phone, code, text } => {
                    planned.push(PlannedMessage {
                        message: NewMessage {
                            id: MessageId::new(),
                            application_id: c.application_id.clone(),
                            phone_number_id: c.phone_number_id.clone(),
                            contact_id: None,
                            to_phone: phone.clone(),
                            content: MessageContent::Text {
                                body: String::new(),
                                preview_url: false,
                            },
                            reply_to: None,
                            idempotency_key: None,
                            now,
                        },
                        skip: Some(((*code).to_owned(), text.clone())),
                        send_window: None,
                        window_opens_at: None,
                    });
                    continue;
                }
            };
            let (outcome, phone) = plan_contact(&bound, c.kind, needs_phone, contact);
            let send_window = window
                .as_ref()
                .map(|w| w.resolve(contact.timezone.as_deref()));
            let window_opens_at = send_window.as_deref().and_then(|w| next_opening(w, now));
            let (content, skip) = match outcome {
                Planned::Send(content) => (content, None),
                Planned::Skip(code, text) => (
                    // A skipped message keeps the template it would have sent, unrendered.
                    MessageContent::Text {
                        body: String::new(),
                        preview_url: false,
                    },
                    Some((code.to_owned(), text)),
                ),
            };
            planned.push(PlannedMessage {
                message: NewMessage {
                    id: MessageId::new(),
                    application_id: c.application_id.clone(),
                    phone_number_id: c.phone_number_id.clone(),
                    contact_id: Some(contact.contact.id.clone()),
                    to_phone: phone.unwrap_or_else(|| contact.contact.phone.clone()),
                    content,
                    reply_to: None,
                    idempotency_key: None,
                    now,
                },
                skip,
                send_window,
                window_opens_at,
            });
        }
        let cursor = next.or_else(|| c.planner_cursor.clone());
        self.store
            .add_planned_messages(
                &c.id,
                c.planner_cursor.as_deref(),
                &planned,
                cursor.as_deref(),
                done,
                now,
            )
            .await?;
        if !planned.is_empty() {
            self.wake_senders(Some(&c.phone_number_id));
        }
        self.progress_changed(Some(&c.id));
        Ok(!done)
    }

    /// One pass of the campaign worker: starts scheduled campaigns whose time came, plans
    /// running ones, completes those with nothing left to send.
    pub async fn work_campaigns(&self) -> Result<(), EngineError> {
        let now = self.now();
        for c in self.store.campaigns_to_work(now).await? {
            match c.state {
                CampaignState::Scheduled => {
                    self.store
                        .transition_campaign(
                            &c.id,
                            &[CampaignState::Scheduled],
                            CampaignState::Running,
                            None,
                            now,
                        )
                        .await?;
                    self.progress_changed(Some(&c.id));
                }
                CampaignState::Running => {
                    let mut current = c;
                    while self.plan_chunk(&current).await? {
                        match self
                            .store
                            .campaign(&current.application_id, &current.id)
                            .await?
                        {
                            Some(next) if next.state == CampaignState::Running && !next.planned => {
                                current = next
                            }
                            _ => break,
                        }
                    }
                }
                _ => {}
            }
        }
        for c in self.store.running_planned_campaigns().await? {
            // Sends Meta holds for quality assessment are not done: a drop (132015, 135000)
            // still pauses the campaign with Meta's reason.
            // Read without a lock first (the common answer: messages are still open), then
            // decided again under the campaign's lock: a capped message Meta failed (131049)
            // may be going back to the queue right now (`requeue_capped`).
            if self.store.campaign_open_messages(&c.id).await? == 0
                && self.store.campaign_meta_counts(&c.id).await?.held_by_meta == 0
                && self
                    .store
                    .complete_campaign_if_done(&c.id, self.now())
                    .await?
            {
                self.progress_changed(Some(&c.id));
            }
        }
        Ok(())
    }
}

/// The campaign worker: runs until `shutdown`, woken by starts and resumes.
pub async fn run(engine: Engine, shutdown: CancellationToken) {
    loop {
        let notified = engine.campaign_wake.notified();
        // One planner for the installation: the node holding its lease.
        if engine.leases.holds(crate::leases::PLANNER) {
            if let Err(e) = engine.work_campaigns().await {
                tracing::warn!(error = %e, "campaign worker pass failed");
            }
            engine.progress.campaign_pass_done();
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = notified => {}
            _ = tokio::time::sleep(engine.config.poll_interval.max(Duration::from_millis(50))) => {}
        }
    }
}
