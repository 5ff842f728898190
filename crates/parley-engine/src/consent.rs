//! Marketing consent as Meta and the customer state it (#14 parts 2-3; META_2026.md §6, §7):
//! `user_preferences` stop/resume, 131050 (stopped marketing), 131049 (per-user marketing
//! cap: rescheduled, up to a limit), 131063 (marketing switched off on the Cloud API for the
//! WABA), pacing (held for quality assessment; 132015 and 135000 drop held sends), the
//! application's opt-out keywords with their confirmation reply, and each status's `pricing`.
//!
//! Kept apart from the webhook processor and the sender, which call in here.

use parley_domain::consent::{
    MARKETING_CAP_RESCHEDULES, MAX_REPLY_CHARS, default_keywords, keyword_match, parse_keywords,
};
use parley_domain::{
    ApplicationId, E164, ErrorClass, InboundKind, MessageState, PhoneNumberId, Subscription,
    classify,
};
use parley_meta::UserPreferencesValue;
use parley_store::audience::{ContactUpsert, SubscriptionChange};
use parley_store::consent::{OptOutSettings, PricingUpdate};
use parley_store::{InboundRecord, StatusChange};
use serde::Serialize;

use crate::Engine;
use crate::error::EngineError;
use crate::messages::{SendBody, SendRequest};

/// The source a subscription change names when Meta told us (`user_preferences`, 131050).
pub const SOURCE_META: &str = "meta";

/// An application's opt-out settings as the API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct OptOutView {
    /// The keywords in force (folded), the defaults when none were configured.
    pub keywords: Vec<String>,
    /// True when `keywords` are the defaults.
    pub defaults: bool,
    /// The text sent back when a keyword opts a contact out; none: no reply.
    pub reply: Option<String>,
}

/// How to turn marketing back on after 131063, said in the campaign's reason.
pub const MARKETING_DISABLED_HELP: &str = "Meta refused marketing templates on the Cloud API for this WhatsApp Business Account (131063: `disable_marketing_messages_on_cloud_api` is on). Turn marketing back on in WhatsApp Manager or with POST /<WABA_ID> {\"disable_marketing_messages_on_cloud_api\": false}, or send through the Marketing Messages API, then resume the campaign.";

/// The reason a campaign pauses with when Meta stops its template or portfolio.
pub fn pause_reason(code: i64, text: &str) -> String {
    match code {
        132015 => format!(
            "Meta paused the template (template pacing or quality): (#{code}) {text}. Edit or replace the template, then resume."
        ),
        135000 => format!(
            "Meta's portfolio pacing dropped held sends: (#{code}) {text}. The business portfolio may be under review; resume when Meta lifts it."
        ),
        131063 => format!("{MARKETING_DISABLED_HELP} ({text})"),
        _ => format!("Meta refused the template: (#{code}) {text}"),
    }
}

impl Engine {
    /// The application's opt-out keywords and confirmation reply.
    pub async fn opt_out_settings(&self, app: &ApplicationId) -> Result<OptOutView, EngineError> {
        let s = self.store.opt_out_settings(app).await?;
        Ok(view(s))
    }

    /// Replaces the application's opt-out settings: `keywords: None` restores the defaults,
    /// `reply: None` (or empty) sends no confirmation.
    pub async fn set_opt_out_settings(
        &self,
        app: &ApplicationId,
        keywords: Option<Vec<String>>,
        reply: Option<String>,
    ) -> Result<OptOutView, EngineError> {
        let keywords = keywords
            .map(|k| {
                parse_keywords(&k)
                    .map_err(|e| EngineError::bad_request("invalid_keywords", e).field("keywords"))
            })
            .transpose()?;
        if keywords.as_ref().is_some_and(Vec::is_empty) {
            return Err(EngineError::bad_request(
                "invalid_keywords",
                "give at least one keyword, or null for the defaults",
            )
            .field("keywords"));
        }
        let reply = reply.filter(|r| !r.trim().is_empty());
        if let Some(r) = &reply
            && r.chars().count() > MAX_REPLY_CHARS
        {
            return Err(EngineError::bad_request(
                "invalid_reply",
                format!("the reply is longer than {MAX_REPLY_CHARS} characters"),
            )
            .field("reply"));
        }
        let s = OptOutSettings { keywords, reply };
        self.store.set_opt_out_settings(app, &s).await?;
        Ok(view(s))
    }

    /// Marks the contact with `phone` opted in or out of marketing, `source` in its history.
    pub(crate) async fn set_marketing_consent(
        &self,
        app: &ApplicationId,
        phone: &str,
        state: Subscription,
        source: &str,
        note: Option<String>,
    ) -> parley_store::Result<()> {
        self.store
            .upsert_audience(
                app,
                &[ContactUpsert {
                    phone: phone.to_owned(),
                    subscription: Some(SubscriptionChange {
                        state,
                        source: source.to_owned(),
                        note: note.clone(),
                    }),
                    ..ContactUpsert::default()
                }],
                self.now(),
            )
            .await?;
        if state == Subscription::OptedOut {
            crate::events::contact_opted_out(self, app, phone, source, note.as_deref()).await?;
        }
        Ok(())
    }
}

fn view(s: OptOutSettings) -> OptOutView {
    OptOutView {
        defaults: s.keywords.is_none(),
        keywords: s.keywords.unwrap_or_else(default_keywords),
        reply: s.reply,
    }
}

/// `user_preferences`: `stop` opts the contact out of marketing, `resume` back in, with Meta
/// as the source. A preference naming only a BSUID (no `wa_id`) is noted, not applied: contacts
/// are found by phone here (BSUID identity is #14 part 1).
pub(crate) async fn apply_user_preferences(
    engine: &Engine,
    value: &UserPreferencesValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let Some(pnid) = value
        .metadata
        .as_ref()
        .and_then(|m| m.phone_number_id.as_deref())
    else {
        notes.push("user_preferences without metadata.phone_number_id".into());
        return Ok(());
    };
    let number = match PhoneNumberId::parse(pnid) {
        Ok(id) => engine.store.phone_number(&id).await?,
        Err(_) => None,
    };
    let Some(number) = number else {
        notes.push(format!("user_preferences for unknown number {pnid}"));
        return Ok(());
    };
    for pref in &value.user_preferences {
        let state = match pref.value.as_deref() {
            Some("stop") => Subscription::OptedOut,
            Some("resume") => Subscription::OptedIn,
            other => {
                notes.push(format!("user_preferences value {other:?} not understood"));
                continue;
            }
        };
        if let Some(c) = pref.category.as_deref()
            && c != "marketing_messages"
        {
            notes.push(format!("user_preferences category `{c}` not acted on"));
            continue;
        }
        let Some(address) = preference_address(engine, &number.application_id, pref, notes).await?
        else {
            continue;
        };
        let note = pref.detail.clone().or_else(|| {
            Some(format!(
                "user_preferences {}",
                pref.value.as_deref().unwrap_or("")
            ))
        });
        engine
            .set_marketing_consent(&number.application_id, &address, state, SOURCE_META, note)
            .await?;
        metrics::counter!("parley_marketing_preferences_total", "value" => if state == Subscription::OptedOut { "stop" } else { "resume" }).increment(1);
    }
    Ok(())
}

/// The address of the contact a `user_preferences` entry names: its phone (`wa_id`), or,
/// for a customer whose number Meta withholds, the contact its BSUID (`user_id`) names,
/// created when Parley has not met that BSUID yet, so the stop holds when they are imported
/// or write in later. `None` (with a note) when it names no one Parley can address.
async fn preference_address(
    engine: &Engine,
    app: &parley_domain::ApplicationId,
    pref: &parley_meta::webhook::UserPreference,
    notes: &mut Vec<String>,
) -> parley_store::Result<Option<String>> {
    if let Some(wa_id) = pref.wa_id.as_deref() {
        return Ok(match E164::from_wa_id(wa_id) {
            Ok(phone) => Some(phone.as_str().to_owned()),
            Err(e) => {
                notes.push(format!("user_preferences for `{wa_id}`: {e}"));
                None
            }
        });
    }
    let Some(user_id) = pref.user_id.as_deref() else {
        notes.push("user_preferences without wa_id or user_id: not applied".into());
        return Ok(None);
    };
    let bsuid = match parley_domain::Bsuid::parse(user_id) {
        Ok(b) if !b.is_parent() => b,
        Ok(_) => {
            notes.push(format!(
                "user_preferences for the parent BSUID `{user_id}` alone: it names no one contact"
            ));
            return Ok(None);
        }
        Err(e) => {
            notes.push(format!("user_preferences for `{user_id}`: {e}"));
            return Ok(None);
        }
    };
    if let Some(c) = engine.store.contact_by_bsuid(app, bsuid.as_str()).await? {
        return Ok(Some(c.phone));
    }
    let ident = parley_store::ContactIdentity {
        bsuid: Some(bsuid.as_str().to_owned()),
        ..parley_store::ContactIdentity::default()
    };
    engine
        .store
        .resolve_contact(app, &ident, true, engine.now())
        .await?;
    Ok(Some(bsuid.as_str().to_owned()))
}

/// An inbound message seen for the first time: an opt-out keyword of the application (the
/// whole message, folded) opts out and sends the confirmation reply if one is set; `START`
/// opts back in; a quick-reply button whose payload or text is a keyword counts as `button`.
pub(crate) async fn apply_inbound_keyword(
    engine: &Engine,
    record: &InboundRecord,
    payload: Option<&str>,
) -> parley_store::Result<()> {
    let candidates: Vec<&str> = match record.kind {
        InboundKind::Text => record.text.as_deref().into_iter().collect(),
        InboundKind::Button | InboundKind::Interactive => {
            payload.into_iter().chain(record.text.as_deref()).collect()
        }
        _ => return Ok(()),
    };
    if candidates.is_empty() {
        return Ok(());
    }
    let settings = engine
        .store
        .opt_out_settings(&record.application_id)
        .await?;
    let keywords = settings.keywords.unwrap_or_else(default_keywords);
    let Some(opt_in) = candidates.iter().find_map(|c| keyword_match(&keywords, c)) else {
        return Ok(());
    };
    let source = if record.kind == InboundKind::Text {
        "keyword"
    } else {
        "button"
    };
    let state = if opt_in {
        Subscription::OptedIn
    } else {
        Subscription::OptedOut
    };
    // The contact's own address: the sender may have written by BSUID to a contact Parley
    // knows by phone.
    let address =
        crate::contact_identity::contact_address(engine, &record.application_id, &record.from)
            .await?
            .unwrap_or_else(|| record.from_phone.clone());
    engine
        .set_marketing_consent(
            &record.application_id,
            &address,
            state,
            source,
            Some(format!("message {}", record.wamid)),
        )
        .await?;
    if !opt_in && let Some(reply) = settings.reply {
        // The keyword just opened the customer-service window: a text goes.
        let req = SendRequest {
            to: address.clone(),
            body: SendBody::Text {
                text: reply,
                preview_url: false,
            },
            phone_number_id: Some(record.phone_number_id.clone()),
            reply_to: None,
            idempotency_key: Some(format!("opt-out-reply:{}", record.wamid)),
        };
        if let Err(e) = engine.accept_message(&record.application_id, req).await {
            tracing::warn!(error = %e.message, "could not queue the opt-out confirmation");
        }
    }
    Ok(())
}

/// A status's `pricing` object as stored, written with the status it came with
/// (`StatusChange::pricing`).
pub(crate) fn status_pricing(s: &parley_meta::StatusUpdate) -> Option<parley_store::StatusPricing> {
    let raw: serde_json::Value = serde_json::from_str(s.pricing.as_ref()?.get()).ok()?;
    Some(parley_store::StatusPricing {
        pricing: serde_json::to_string(&raw).ok()?,
        category: s.pricing_object().and_then(|p| p.category_key()),
    })
}

/// The `pricing` object of a status that is not merged (its `status` is not understood), for
/// its message; the webhook processor stores a whole batch's at once (`Store::record_pricing`).
pub(crate) fn collect_pricing(s: &parley_meta::StatusUpdate, updates: &mut Vec<PricingUpdate>) {
    let Some(raw) = s
        .pricing
        .as_ref()
        .and_then(|p| serde_json::from_str(p.get()).ok())
    else {
        return;
    };
    let Ok(wamid) = parley_domain::Wamid::parse(&s.id) else {
        return;
    };
    updates.push(PricingUpdate {
        wamid,
        message_id: s
            .biz_opaque_callback_data
            .as_deref()
            .and_then(|d| parley_domain::MessageId::parse(d).ok()),
        pricing: raw,
        category: s.pricing_object().and_then(|p| p.category_key()),
    });
}

/// After statuses were merged: a `failed` with Meta's per-user cap (131049) is rescheduled,
/// one with "stopped marketing" (131050) opts the contact out. What pauses campaigns is
/// applied before the merge ([`before_statuses`]).
pub(crate) async fn after_statuses(
    engine: &Engine,
    statuses: &[StatusChange],
) -> parley_store::Result<()> {
    for s in statuses {
        let Some((code, _)) = &s.error else {
            continue;
        };
        if s.state != MessageState::Failed {
            continue;
        }
        let class = classify(*code);
        if !matches!(
            class,
            ErrorClass::RetryAfter(_) | ErrorClass::MarketingOptOut
        ) {
            continue;
        }
        let Some(m) = engine
            .store
            .message_ref(&s.wamid, s.message_id.as_ref())
            .await?
        else {
            continue;
        };
        match class {
            ErrorClass::RetryAfter(delay)
                if m.state == MessageState::Failed
                    && m.capped_times < MARKETING_CAP_RESCHEDULES =>
            {
                let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
                if m.accepted {
                    requeue_capped(engine, &m.id, delay).await?;
                } else {
                    // The failure outran the acceptance's write: requeue once the acceptance
                    // is written, or the recorder would make the requeued row `accepted`.
                    let engine = engine.clone();
                    let id = m.id.clone();
                    tokio::spawn(async move {
                        for _ in 0..40 {
                            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                            match requeue_capped(&engine, &id, delay).await {
                                Ok(true) => return,
                                Ok(false) => {}
                                Err(e) => {
                                    tracing::warn!(message_id = %id, error = %e, "could not reschedule a capped message");
                                }
                            }
                        }
                        tracing::warn!(message_id = %id, "a message Meta capped (131049) stays failed: its acceptance was never written");
                    });
                }
            }
            ErrorClass::MarketingOptOut => {
                engine
                    .set_marketing_consent(
                        &m.application_id,
                        &m.to_phone,
                        Subscription::OptedOut,
                        SOURCE_META,
                        Some(format!("131050 on message {}", m.id)),
                    )
                    .await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a failed status stops, applied before the statuses are written: 132015 and 135000
/// pause the message's campaign, 131063 every marketing campaign of its WABA. Before, so the
/// planner never sees the campaign's last sends failed (and completes it) while it is still
/// running.
pub(crate) async fn before_statuses(
    engine: &Engine,
    statuses: &[StatusChange],
) -> parley_store::Result<()> {
    for s in statuses {
        let Some((code, text)) = &s.error else {
            continue;
        };
        if s.state != MessageState::Failed {
            continue;
        }
        let class = classify(*code);
        let pauses = match class {
            ErrorClass::MarketingDisabled => true,
            ErrorClass::PermanentTemplate => matches!(code, 132015 | 135000),
            _ => false,
        };
        if !pauses {
            continue;
        }
        let Some(m) = engine
            .store
            .message_ref(&s.wamid, s.message_id.as_ref())
            .await?
        else {
            continue;
        };
        let now = engine.now();
        if class == ErrorClass::MarketingDisabled {
            marketing_disabled(engine, &m.phone_number_id, *code, text, now).await?;
        } else if let Some(campaign) = &m.campaign_id
            && engine
                .pause(campaign, &pause_reason(*code, text), now)
                .await?
        {
            tracing::warn!(campaign_id = %campaign, code, "campaign paused: Meta dropped a held send");
        }
    }
    Ok(())
}

async fn requeue_capped(
    engine: &Engine,
    id: &parley_domain::MessageId,
    delay: i64,
) -> parley_store::Result<bool> {
    let now = engine.now();
    let done = engine
        .store
        .requeue_capped(id, now + delay, MARKETING_CAP_RESCHEDULES, now)
        .await?;
    if done {
        metrics::counter!("parley_messages_capped_by_meta_total").increment(1);
        tracing::info!(message_id = %id, "Meta's per-user marketing cap (131049); trying again in 24 h");
    }
    Ok(done)
}

/// 131063: marketing templates are refused on `/messages` for the WABA of `number`: every
/// marketing campaign of the WABA's numbers pauses, saying how to turn marketing back on.
pub(crate) async fn marketing_disabled(
    engine: &Engine,
    number: &PhoneNumberId,
    code: i64,
    text: &str,
    now: i64,
) -> parley_store::Result<()> {
    let Some(record) = engine.store.phone_number(number).await? else {
        return Ok(());
    };
    let numbers: Vec<PhoneNumberId> = engine
        .store
        .platform_numbers(&record.platform_id)
        .await?
        .into_iter()
        .map(|n| n.number.phone_number_id)
        .collect();
    let reason = pause_reason(code, text);
    for campaign in engine
        .store
        .pause_marketing_campaigns_of_numbers(&numbers, &reason, now)
        .await?
    {
        engine
            .store
            .hold_campaign_messages(&campaign, crate::campaigns::HELD)
            .await?;
        tracing::warn!(campaign_id = %campaign, code, "marketing campaign paused: marketing is off on the Cloud API for the WABA");
    }
    Ok(())
}

impl Engine {
    /// What Meta said about these messages beyond their state (held, pricing, caps), by id.
    pub async fn message_meta(
        &self,
        app: &ApplicationId,
        ids: &[parley_domain::MessageId],
    ) -> Result<
        std::collections::BTreeMap<parley_domain::MessageId, parley_store::consent::MessageMeta>,
        EngineError,
    > {
        Ok(self.store.message_meta(app, ids).await?)
    }

    /// Messages of the application by the category Meta charged, among those first sent in
    /// `[since, until)` (Unix ms): for the statistics.
    pub async fn charged_categories(
        &self,
        app: &ApplicationId,
        since: i64,
        until: i64,
    ) -> Result<std::collections::BTreeMap<String, u64>, EngineError> {
        Ok(self.store.charged_categories(app, since, until).await?)
    }
}
