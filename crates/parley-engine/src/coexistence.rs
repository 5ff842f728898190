//! Coexistence: WhatsApp Business app numbers on the Cloud API (META_2026.md §2).
//!
//! After a coexistence onboarding (Meta reports the number `is_on_biz_app`), two onboarding
//! steps ask Meta, once each and within 24 h, for the app's contacts and then its chat
//! history (`POST /{phone}/smb_app_data`); they are retried on transport errors only, since
//! each call works once at Meta. The webhooks that follow are applied here: `history`
//! (imported into contacts and `app_messages`, idempotent by wamid, its `history_context`
//! status kept apart from delivery statuses, progress shown on the platform),
//! `smb_app_state_sync` (app contacts added, edited, removed) and `smb_message_echoes` (what
//! the business typed in the app: outbound rows that are not Parley sends). Offboarding in
//! the app (`PARTNER_REMOVED` with `disconnection_info`, `ACCOUNT_OFFBOARDED`) marks the
//! platform disconnected with Meta's reason and stops the number's sends (queued messages
//! wait); `ACCOUNT_RECONNECTED` makes it active again. The number's sender is capped at
//! 20 mps (`sender.rs`), and Parley never deregisters it.

use std::collections::BTreeSet;
use std::time::Duration;

use parley_domain::{E164, PhoneNumberId, PlatformId, TagValue, WabaId};
use parley_meta::coexistence::{COEXISTENCE_FIELDS, SyncType};
use parley_meta::webhook::{AppMessage, Metadata};
use parley_meta::{
    AccountUpdateValue, GraphError, HistoryValue, MessageEchoesValue, StateSyncValue,
};
use parley_store::coexistence::{AppMessageRecord, CoexistenceRecord};
use parley_store::{NewContact, PhoneNumberRecord};

use crate::onboarding::status;
use crate::{Engine, EngineError, ErrorKind};

/// Meta: "Throughput is fixed at 20 mps" for coexistence numbers, whatever `throughput` says.
pub const COEXISTENCE_MPS: u32 = 20;
/// The pace the sender keeps on such a number: Meta counts sends as they *arrive* in any
/// one second, and the pacer's own margin (about 15 ms a second) is less than the jitter of
/// concurrent requests on a busy machine; one message a second less leaves ~60 ms.
pub const COEXISTENCE_PACE_MPS: u32 = COEXISTENCE_MPS - 1;
/// The two sync calls must come within 24 h of onboarding.
pub const SYNC_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;
/// Meta's code for "history sharing is turned off in the app".
pub const HISTORY_DECLINED: i64 = 2593109;
/// The tag an app contact carries: `true` while it is in the app's address book.
pub const APP_CONTACT_TAG: &str = "whatsapp_business_app_contact";
/// Attempts of a sync call that fails in transport (Meta's answer never came).
const TRANSPORT_ATTEMPTS: u32 = 3;

/// How a sync step ended.
#[derive(Debug)]
pub(crate) enum SyncEnd {
    Done,
    Skipped(String),
    Failed(Option<i64>, EngineError),
}

fn sync_failed(kind: SyncType, e: &GraphError) -> EngineError {
    let what = match kind {
        SyncType::Contacts => "contacts",
        SyncType::History => "chat history",
    };
    if e.code().is_none() {
        return EngineError::new(
            ErrorKind::Upstream,
            "meta_unavailable",
            format!(
                "Meta did not answer the request for the WhatsApp Business app's {what} ({e}). Retry the failed step; it must run within 24 hours of onboarding."
            ),
        );
    }
    EngineError::new(
        ErrorKind::Unprocessable,
        "coexistence_sync_failed",
        format!(
            "Meta refused the request for the WhatsApp Business app's {what} ({e}). Each sync works once, within 24 hours of onboarding; after that the business must disconnect the number in the app and connect it again with Log in with Facebook."
        ),
    )
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

impl Engine {
    /// Records a number Meta reports as a WhatsApp Business app number (first sight starts
    /// the 24 h sync window).
    pub(crate) async fn note_coexistence_number(
        &self,
        number: &PhoneNumberRecord,
    ) -> Result<(), EngineError> {
        self.store
            .upsert_coexistence_number(
                &number.phone_number_id,
                &number.application_id,
                &number.platform_id,
                self.now(),
            )
            .await?;
        Ok(())
    }

    /// Onboarding steps `sync_contacts` and `sync_history`: one `smb_app_data` call per
    /// coexistence number of the platform that has not made it yet.
    pub(crate) async fn sync_app_data(
        &self,
        platform: &PlatformId,
        token: &str,
        kind: SyncType,
    ) -> Result<SyncEnd, EngineError> {
        let numbers = self.store.platform_coexistence(platform).await?;
        if numbers.is_empty() {
            return Ok(SyncEnd::Skipped(
                "no number of this platform is a WhatsApp Business app number".into(),
            ));
        }
        for mut record in numbers {
            let state = match kind {
                SyncType::Contacts => &record.contacts_sync,
                SyncType::History => &record.history_sync,
            };
            if !matches!(state.as_str(), "pending" | "failed") {
                continue;
            }
            let now = self.now();
            if now > record.onboarded_at.saturating_add(SYNC_WINDOW_MS) {
                let failure = EngineError::unprocessable(
                    "coexistence_sync_window_passed",
                    "More than 24 hours passed since this WhatsApp Business app number was onboarded, so Meta no longer accepts the sync of its contacts and history. To import them, the business disconnects the number in the app (Settings › Account › Business Platform) and connects it again with Log in with Facebook.",
                );
                self.mark_sync(&mut record, kind, "failed", None, Some(&failure.message))
                    .await?;
                return Ok(SyncEnd::Failed(None, failure));
            }
            if kind == SyncType::Contacts {
                // Meta sends the sync's webhooks only to apps subscribed to their fields.
                let meta = &self.config.meta_app;
                let subscribed = retry_transport(|| {
                    self.graph.ensure_app_fields(
                        &meta.app_id,
                        &meta.app_secret,
                        &COEXISTENCE_FIELDS,
                    )
                })
                .await;
                if let Err((e, _)) = subscribed {
                    let failure = EngineError::new(
                        if e.code().is_none() {
                            ErrorKind::Upstream
                        } else {
                            ErrorKind::Unprocessable
                        },
                        "webhook_subscription_failed",
                        format!(
                            "Meta refused to subscribe Parley's app to the history, smb_app_state_sync and smb_message_echoes webhooks ({e}); without them the app's contacts, history and echoes never arrive. Retry the failed step."
                        ),
                    );
                    return Ok(SyncEnd::Failed(e.code(), failure));
                }
            }
            let phone = record.phone_number_id.clone();
            let answer =
                retry_transport(|| self.graph.smb_app_data(token, phone.as_str(), kind)).await;
            match answer {
                Ok(accepted) => {
                    self.mark_sync(&mut record, kind, "requested", accepted.request_id, None)
                        .await?;
                }
                // The call may have reached Meta before the connection broke; Meta's "once"
                // refusal of the retry then means the first one was taken.
                Err((e, true)) if e.code() == Some(100) => {
                    tracing::warn!(phone_number_id = %phone, sync = kind.as_str(), "sync refused after a transport error; taken as requested by the first attempt");
                    self.mark_sync(&mut record, kind, "requested", None, None)
                        .await?;
                }
                Err((e, _)) => {
                    let failure = sync_failed(kind, &e);
                    self.mark_sync(&mut record, kind, "failed", None, Some(&failure.message))
                        .await?;
                    return Ok(SyncEnd::Failed(e.code(), failure));
                }
            }
        }
        Ok(SyncEnd::Done)
    }

    async fn mark_sync(
        &self,
        record: &mut CoexistenceRecord,
        kind: SyncType,
        state: &str,
        request_id: Option<String>,
        error: Option<&str>,
    ) -> Result<(), EngineError> {
        match kind {
            SyncType::Contacts => {
                record.contacts_sync = state.to_owned();
                record.contacts_request_id = request_id.or(record.contacts_request_id.take());
            }
            SyncType::History => {
                // A history webhook may have come before the answer was recorded.
                if !matches!(
                    record.history_sync.as_str(),
                    "in_progress" | "done" | "declined"
                ) || state == "failed"
                {
                    record.history_sync = state.to_owned();
                }
                record.history_request_id = request_id.or(record.history_request_id.take());
            }
        }
        record.sync_error = error.map(str::to_owned);
        record.updated_at = self.now();
        self.store.save_coexistence(record).await?;
        Ok(())
    }

    /// The coexistence numbers of a platform, with their sync state (platform pages).
    pub async fn platform_coexistence(
        &self,
        platform: &PlatformId,
    ) -> Result<Vec<CoexistenceRecord>, EngineError> {
        Ok(self.store.platform_coexistence(platform).await?)
    }
}

/// Runs `call`, again on transport errors only (at most [`TRANSPORT_ATTEMPTS`]). The error
/// says whether an earlier attempt failed in transport (it may have reached Meta).
async fn retry_transport<T, F, Fut>(mut call: F) -> Result<T, (GraphError, bool)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, GraphError>>,
{
    let mut lost = false;
    let mut wait = Duration::from_millis(200);
    for attempt in 1..=TRANSPORT_ATTEMPTS {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.code().is_none() && attempt < TRANSPORT_ATTEMPTS => {
                lost = true;
                tokio::time::sleep(wait).await;
                wait *= 4;
            }
            Err(e) => return Err((e, lost)),
        }
    }
    unreachable!("the last attempt returns")
}

/// The number a coexistence webhook's metadata names, when it is Parley's.
async fn webhook_number(
    engine: &Engine,
    metadata: Option<&Metadata>,
    field: &str,
    notes: &mut Vec<String>,
) -> parley_store::Result<Option<PhoneNumberRecord>> {
    let Some(pnid) = metadata.and_then(|m| m.phone_number_id.clone()) else {
        notes.push(format!("{field} without metadata.phone_number_id"));
        return Ok(None);
    };
    let number = match PhoneNumberId::parse(&pnid) {
        Ok(id) => engine.store.phone_number(&id).await?,
        Err(_) => None,
    };
    if number.is_none() {
        notes.push(format!("{field} for unknown number {pnid}"));
    }
    Ok(number)
}

/// Creates (or merges into) the contacts of `phones`, without touching their window.
async fn upsert_contacts(
    engine: &Engine,
    number: &PhoneNumberRecord,
    contacts: Vec<NewContact>,
) -> parley_store::Result<()> {
    if contacts.is_empty() {
        return Ok(());
    }
    engine
        .store
        .upsert_contacts(&number.application_id, &contacts, engine.now())
        .await?;
    Ok(())
}

/// One history or echo message as an `app_messages` row; `None` (noted) when its customer
/// is not a phone number Parley can key.
fn app_message_row(
    engine: &Engine,
    number: &PhoneNumberRecord,
    customer: &str,
    message: &AppMessage,
    source: &str,
    notes: &mut Vec<String>,
) -> Option<AppMessageRecord> {
    let customer = digits(customer);
    let phone = match E164::from_wa_id(&customer) {
        Ok(p) => p,
        Err(e) => {
            notes.push(format!(
                "{source} message {}: customer `{customer}`: {e}",
                message.id
            ));
            return None;
        }
    };
    let business = digits(&number.display_phone_number);
    let outbound = source == "business_app"
        || message
            .from
            .as_deref()
            .is_some_and(|from| digits(from) == business);
    Some(AppMessageRecord {
        wamid: message.id.clone(),
        application_id: number.application_id.clone(),
        phone_number_id: number.phone_number_id.clone(),
        contact_id: None,
        contact_phone: phone.as_str().to_owned(),
        direction: if outbound { "outbound" } else { "inbound" }.into(),
        source: source.into(),
        kind: message.kind.clone().unwrap_or_else(|| "unknown".into()),
        text: message.text(),
        history_status: message
            .history_context
            .as_ref()
            .and_then(|c| c.status.clone()),
        raw: serde_json::to_value(message).unwrap_or_default(),
        sent_at: message
            .unix_time()
            .map_or_else(|| engine.now(), |s| s.saturating_mul(1000)),
        created_at: engine.now(),
    })
}

/// Stores app messages and makes sure their contacts exist; fills in the contact ids.
async fn store_app_messages(
    engine: &Engine,
    number: &PhoneNumberRecord,
    mut rows: Vec<AppMessageRecord>,
) -> parley_store::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let phones: BTreeSet<String> = rows.iter().map(|r| r.contact_phone.clone()).collect();
    let contacts = phones
        .iter()
        .map(|phone| NewContact {
            phone: phone.clone(),
            name: None,
            tags: Default::default(),
        })
        .collect();
    upsert_contacts(engine, number, contacts).await?;
    for phone in &phones {
        if let Some(contact) = engine
            .store
            .contact_by_phone(&number.application_id, phone)
            .await?
        {
            for row in rows.iter_mut().filter(|r| &r.contact_phone == phone) {
                row.contact_id = Some(contact.id.to_string());
            }
        }
    }
    engine.store.insert_app_messages(&rows).await?;
    Ok(())
}

/// `history`: chunks of the app's chats (imported), the decline, or late media.
pub(crate) async fn apply_history(
    engine: &Engine,
    value: &HistoryValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let field = parley_meta::webhook::fields::HISTORY;
    let Some(number) = webhook_number(engine, value.metadata.as_ref(), field, notes).await? else {
        return Ok(());
    };
    let mut record = engine
        .store
        .coexistence_number(&number.phone_number_id)
        .await?;
    let mut rows = Vec::new();
    for item in &value.history {
        if let Some(error) = item.errors.first() {
            if let Some(r) = record.as_mut() {
                r.history_sync = if error.code == HISTORY_DECLINED {
                    "declined"
                } else {
                    "failed"
                }
                .into();
                r.sync_error = Some(error.description());
            }
            notes.push(format!("history not shared: {}", error.description()));
            continue;
        }
        if let (Some(r), Some(progress)) = (
            record.as_mut(),
            item.metadata.as_ref().and_then(|m| m.progress),
        ) {
            r.history_progress = r.history_progress.max(progress.clamp(0, 100));
            if r.history_sync != "declined" {
                r.history_sync = if r.history_progress >= 100 {
                    "done"
                } else {
                    "in_progress"
                }
                .into();
            }
        }
        for thread in &item.threads {
            for message in &thread.messages {
                rows.extend(app_message_row(
                    engine, &number, &thread.id, message, "history", notes,
                ));
            }
        }
        // Late media outside a thread: the customer is whoever is not the business.
        let business = digits(&number.display_phone_number);
        for message in &item.messages {
            let from = message.from.as_deref().map(digits).unwrap_or_default();
            let customer = if from == business {
                message.to.clone().unwrap_or_default()
            } else {
                from
            };
            rows.extend(app_message_row(
                engine, &number, &customer, message, "history", notes,
            ));
        }
    }
    store_app_messages(engine, &number, rows).await?;
    if let Some(mut r) = record {
        r.updated_at = engine.now();
        engine.store.save_coexistence(&r).await?;
    } else {
        notes.push("history for a number not onboarded from the WhatsApp Business app".into());
    }
    Ok(())
}

/// `smb_app_state_sync`: contacts of the app. An add (or edit) creates or names the contact
/// and tags it `whatsapp_business_app_contact = true`; a remove only sets that tag to
/// `false`: the contact, its consent and its messages stay (DECISIONS.md).
pub(crate) async fn apply_state_sync(
    engine: &Engine,
    value: &StateSyncValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let field = parley_meta::webhook::fields::SMB_APP_STATE_SYNC;
    let Some(number) = webhook_number(engine, value.metadata.as_ref(), field, notes).await? else {
        return Ok(());
    };
    let mut contacts = Vec::new();
    for item in &value.state_sync {
        if item.kind.as_deref().is_some_and(|k| k != "contact") {
            notes.push(format!("state sync of type {:?} not acted on", item.kind));
            continue;
        }
        let Some(contact) = &item.contact else {
            continue;
        };
        let Some(raw) = contact.phone_number.as_deref() else {
            notes.push("app contact without a phone number (BSUID only) not stored".into());
            continue;
        };
        let phone = match E164::from_wa_id(&digits(raw)) {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("app contact `{raw}`: {e}"));
                continue;
            }
        };
        let in_app = match item.action.as_deref() {
            Some("add") => true,
            Some("remove") => false,
            other => {
                notes.push(format!("state sync action {other:?} not understood"));
                continue;
            }
        };
        let mut tags = parley_domain::Tags::new();
        tags.insert(APP_CONTACT_TAG.into(), TagValue::Boolean(in_app));
        contacts.push(NewContact {
            phone: phone.as_str().to_owned(),
            name: if in_app {
                contact.full_name.clone().filter(|n| !n.trim().is_empty())
            } else {
                None
            },
            tags,
        });
    }
    upsert_contacts(engine, &number, contacts).await
}

/// `smb_message_echoes`: what the business typed in the app, as outbound rows marked
/// `business_app`. Not Parley sends: no cost, no quota, no window.
pub(crate) async fn apply_echoes(
    engine: &Engine,
    value: &MessageEchoesValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let field = parley_meta::webhook::fields::SMB_MESSAGE_ECHOES;
    let Some(number) = webhook_number(engine, value.metadata.as_ref(), field, notes).await? else {
        return Ok(());
    };
    let mut rows = Vec::new();
    for echo in &value.message_echoes {
        let Some(to) = echo.to.as_deref() else {
            notes.push(format!(
                "echo {} names no phone number (BSUID only); not stored",
                echo.id
            ));
            continue;
        };
        rows.extend(app_message_row(
            engine,
            &number,
            to,
            echo,
            "business_app",
            notes,
        ));
    }
    store_app_messages(engine, &number, rows).await
}

/// Meta's words for an offboarding reason.
fn reason_text(reason: &str) -> &'static str {
    match reason {
        "ACCOUNT_DISCONNECTED" => "the business disconnected it in the app",
        "BUSINESS_DOWNGRADE" => "the number was registered again on the consumer WhatsApp app",
        "CHANGE_NUMBER" => "the business changed its number",
        "COMPANION_INACTIVITY" => "a companion device was inactive for about 30 days",
        "PRIMARY_INACTIVITY" => "the phone with the app was inactive for about 14 days",
        "USER_RE_REGISTERED" => "the number was registered again",
        _ => "Meta gave no known reason",
    }
}

/// `account_update` events of coexistence numbers: `PARTNER_REMOVED` with
/// `disconnection_info`, `ACCOUNT_OFFBOARDED`, `ACCOUNT_RECONNECTED`. Returns false when the
/// WABA has no coexistence number (the generic handling applies then).
pub(crate) async fn apply_offboarding(
    engine: &Engine,
    entry_id: &str,
    value: &AccountUpdateValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<bool> {
    let event = value.event.as_deref().unwrap_or_default();
    let coexistence_event = match event {
        "ACCOUNT_OFFBOARDED" | "ACCOUNT_RECONNECTED" => true,
        "PARTNER_REMOVED" => value.disconnection_info.is_some(),
        _ => false,
    };
    if !coexistence_event {
        return Ok(false);
    }
    let waba_id = value
        .waba_info
        .as_ref()
        .and_then(|w| w.waba_id.as_deref())
        .unwrap_or(entry_id);
    let platforms = match WabaId::parse(waba_id) {
        Ok(waba) => engine.store.platforms_by_waba(&waba).await?,
        Err(_) => Vec::new(),
    };
    let named = value.phone_number.as_deref().map(digits);
    let now = engine.now();
    let mut touched = false;
    for p in &platforms {
        let numbers = engine.store.platform_numbers(&p.id).await?;
        let mut changed = false;
        for mut record in engine.store.platform_coexistence(&p.id).await? {
            if let Some(named) = &named {
                let display = numbers
                    .iter()
                    .find(|n| n.number.phone_number_id == record.phone_number_id)
                    .map(|n| digits(&n.number.display_phone_number));
                if display.as_ref() != Some(named) {
                    continue;
                }
            }
            if event == "ACCOUNT_RECONNECTED" {
                record.offboarded_at = None;
                record.disconnection_reason = None;
            } else {
                let reason = match &value.disconnection_info {
                    Some(info) => {
                        let code = info.reason.as_deref().unwrap_or("UNKNOWN");
                        let by = match info.initiated_by.as_deref() {
                            Some("SYSTEM") => "by WhatsApp",
                            Some("USER") => "by the business",
                            _ => "",
                        };
                        format!(
                            "Disconnected in the WhatsApp Business app {by}: {code} ({}). Messages stay queued and go out once the number is connected again.",
                            reason_text(code)
                        )
                    }
                    None => "Meta reported ACCOUNT_OFFBOARDED: the WhatsApp Business app number left the Business Platform (a device change or re-registration). Messages stay queued and go out once the number is connected again.".to_owned(),
                };
                record.offboarded_at = Some(now);
                record.disconnection_reason = Some(reason);
            }
            record.updated_at = now;
            engine.store.save_coexistence(&record).await?;
            changed = true;
        }
        if !changed {
            continue;
        }
        touched = true;
        let still_off = engine
            .store
            .platform_coexistence(&p.id)
            .await?
            .into_iter()
            .find_map(|r| r.disconnection_reason);
        match (event, still_off) {
            (_, Some(reason)) => {
                engine
                    .store
                    .set_platform_status(&p.id, status::DISCONNECTED, Some(&reason), now)
                    .await?
            }
            ("ACCOUNT_RECONNECTED", None) if p.status == status::DISCONNECTED => {
                engine
                    .store
                    .set_platform_status(&p.id, status::ACTIVE, None, now)
                    .await?
            }
            _ => {}
        }
    }
    if !touched {
        if event == "ACCOUNT_RECONNECTED" {
            notes.push(format!(
                "ACCOUNT_RECONNECTED for WABA {waba_id}, which has no offboarded WhatsApp Business app number here"
            ));
            return Ok(true);
        }
        return Ok(false);
    }
    engine.wake_senders(None);
    Ok(true)
}
