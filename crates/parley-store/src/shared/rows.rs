//! Row mapping, written once: compiled into `sqlite.rs` and `postgres.rs` (see `shared/README`
//! in `docs/DECISIONS.md`, "One SQL source"), where `DbRow` and `json_col` are that backend's.

use std::str::FromStr;

use parley_domain::{
    ApplicationId, BusinessId, ContactId, MessageId, MessageState, PhoneNumberId, PlatformId, Tags,
    Template, TemplateId, WaId, WabaId, Wamid,
};
use sqlx::Row;

use super::{DbRow, json_col};
use crate::types::*;
use crate::{Result, corrupt};

pub(crate) fn parse_id<T, E: std::fmt::Display>(
    row: &DbRow,
    col: &str,
    f: impl Fn(&str) -> std::result::Result<T, E>,
) -> Result<T> {
    let s: String = row.try_get(col)?;
    f(&s).map_err(|e| corrupt(col, e))
}

/// `NULL` and `""` are `None`.
pub(crate) fn parse_opt_id<T, E: std::fmt::Display>(
    row: &DbRow,
    col: &str,
    f: impl Fn(&str) -> std::result::Result<T, E>,
) -> Result<Option<T>> {
    let s: Option<String> = row.try_get(col)?;
    s.filter(|s| !s.is_empty())
        .map(|s| f(&s).map_err(|e| corrupt(col, e)))
        .transpose()
}

pub(crate) fn message_from_row(row: &DbRow) -> Result<MessageRecord> {
    let state: String = row.try_get("state")?;
    Ok(MessageRecord {
        id: parse_id(row, "id", MessageId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        phone_number_id: parse_id(row, "phone_number_id", PhoneNumberId::parse)?,
        contact_id: parse_opt_id(row, "contact_id", ContactId::parse)?,
        to_phone: row.try_get("to_phone")?,
        content: json_col(row, "content")?,
        reply_to: parse_opt_id(row, "reply_to", Wamid::parse)?,
        state: MessageState::from_str(&state).map_err(|e| corrupt("state", e))?,
        wamid: parse_opt_id(row, "wamid", Wamid::parse)?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        queued_at: row.try_get("queued_at")?,
        sending_at: row.try_get("sending_at")?,
        accepted_at: row.try_get("accepted_at")?,
        sent_at: row.try_get("sent_at")?,
        delivered_at: row.try_get("delivered_at")?,
        read_at: row.try_get("read_at")?,
        failed_at: row.try_get("failed_at")?,
        updated_at: row.try_get("updated_at")?,
        send_window: row.try_get("send_window")?,
        lane_seq: row.try_get("lane_seq")?,
    })
}

pub(crate) fn platform_from_row(row: &DbRow) -> Result<PlatformRecord> {
    Ok(PlatformRecord {
        id: parse_id(row, "id", PlatformId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        // "" when the sign-up named no portfolio.
        business_id: parse_opt_id(row, "business_id", BusinessId::parse)?,
        waba_id: parse_id(row, "waba_id", WabaId::parse)?,
        waba_name: row.try_get("waba_name")?,
        status: row.try_get("status")?,
        details: json_col(row, "details")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn phone_from_row(row: &DbRow) -> Result<PhoneNumberRecord> {
    let mps: i64 = row.try_get("throughput_mps")?;
    Ok(PhoneNumberRecord {
        phone_number_id: parse_id(row, "phone_number_id", PhoneNumberId::parse)?,
        platform_id: parse_id(row, "platform_id", PlatformId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        display_phone_number: row.try_get("display_phone_number")?,
        verified_name: row.try_get("verified_name")?,
        quality_rating: row.try_get("quality_rating")?,
        messaging_limit: row.try_get("messaging_limit")?,
        throughput_mps: u32::try_from(mps).unwrap_or(80),
        status: row.try_get("status")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn template_from_row(row: &DbRow) -> Result<TemplateRecord> {
    let template: Template = json_col(row, "model")?;
    Ok(TemplateRecord {
        id: parse_id(row, "id", TemplateId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        platform_id: parse_id(row, "platform_id", PlatformId::parse)?,
        meta_id: row.try_get("meta_id")?,
        template,
        raw: json_col(row, "raw")?,
        updated_at: row.try_get("updated_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}

pub(crate) fn contact_from_row(row: &DbRow) -> Result<ContactRecord> {
    let tags: Tags = json_col(row, "tags")?;
    Ok(ContactRecord {
        id: parse_id(row, "id", ContactId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        phone: row.try_get("phone")?,
        bsuid: row.try_get("bsuid")?,
        parent_bsuid: row.try_get("parent_bsuid")?,
        username: row.try_get("username")?,
        wa_id: parse_opt_id(row, "wa_id", WaId::parse)?,
        name: row.try_get("name")?,
        tags,
        last_inbound_at: row.try_get("last_inbound_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A message's `STATUS_COLUMNS` (`lattice.rs`) read by name.
pub(crate) fn status_row(row: &DbRow) -> Result<crate::lattice::StatusRow> {
    let state: String = row.try_get("state")?;
    Ok(crate::lattice::StatusRow {
        id: row.try_get("id")?,
        state: MessageState::from_str(&state).map_err(|e| corrupt("state", e))?,
        wamid: row.try_get("wamid")?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        updated_at: row.try_get("updated_at")?,
        sending_at: row.try_get("sending_at")?,
        accepted_at: row.try_get("accepted_at")?,
        sent_at: row.try_get("sent_at")?,
        delivered_at: row.try_get("delivered_at")?,
        read_at: row.try_get("read_at")?,
        failed_at: row.try_get("failed_at")?,
        pricing: None,
        pricing_category: None,
        facts: crate::lattice::RowFacts {
            application_id: row.try_get("application_id")?,
            to_phone: row.try_get("to_phone")?,
            contact_id: row.try_get("contact_id")?,
            campaign_id: row.try_get("campaign_id")?,
            template_name: row.try_get("template_name")?,
            phone_number_id: row.try_get("phone_number_id")?,
            kind: row.try_get("kind")?,
            country: row.try_get("country")?,
            queued_at: row.try_get("queued_at")?,
            hold_reason: row.try_get("hold_reason")?,
            meta_status: row.try_get("meta_status")?,
            capped_times: row.try_get("capped_times")?,
            replied_at: row.try_get("replied_at")?,
            pricing: row.try_get("pricing")?,
            pricing_category: row.try_get("pricing_category")?,
        },
    })
}

/// Rows a retention sweep deletes per transaction (the writer is never held long).
pub(crate) const PRUNE_CHUNK: usize = 500;

/// One step of a retention sweep over `rows` (read oldest first by `key`, after `after`, at
/// most `limit`): the keys of the rows written before `before` (by `at`) that `done` says
/// may go, and the cursor of the next step (`None` once a row at or past `before` is met, or
/// the rows ran out).
pub(crate) fn old_rows(
    rows: &[DbRow],
    (key, at): (&str, &str),
    before: crate::Millis,
    (after, limit): (i64, u32),
    done: impl Fn(&DbRow) -> Result<bool>,
) -> Result<(Vec<i64>, Option<i64>)> {
    let (mut reached, mut last, mut old) = (false, after, Vec::new());
    for r in rows {
        if r.try_get::<i64, _>(at)? >= before {
            reached = true;
            break;
        }
        last = r.try_get(key)?;
        if done(r)? {
            old.push(last);
        }
    }
    Ok((
        old,
        (rows.len() >= limit as usize && !reached).then_some(last),
    ))
}

/// Runs `prefix` followed by the bound `ids` and `)` in `tx`: `… IN (` a list `)`.
pub(crate) async fn execute_in(tx: &mut super::Tx, prefix: &str, ids: &[i64]) -> Result<u64> {
    let mut q = sqlx::QueryBuilder::new(prefix);
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    q.push(")");
    Ok(q.build().execute(&mut **tx).await?.rows_affected())
}

/// Merges into messages as read the statuses still in `status_log` that name them
/// (`lattice::overlay`): by our message id, and only those that also name the wamid the
/// message holds (a message without one, not accepted yet or released by a 131049 requeue,
/// is left to the merge, which decides what a status of an earlier send does to it). Read in
/// the transaction that read the messages, so in one snapshot: a status the processor merges
/// and deletes meanwhile is in the row or in the log, never in neither.
pub(crate) async fn overlay_pending<'a>(
    tx: &mut super::Tx,
    records: impl IntoIterator<Item = &'a mut MessageRecord>,
) -> Result<()> {
    let mut named: Vec<&'a mut MessageRecord> =
        records.into_iter().filter(|m| m.wamid.is_some()).collect();
    if named.is_empty() {
        return Ok(());
    }
    let mut pending = crate::lattice::PendingStatuses::new();
    for chunk in named.chunks(1_000) {
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {PENDING_COLUMNS} FROM status_log WHERE message_id IN ("
        ));
        let mut list = q.separated(", ");
        for m in chunk {
            list.push_bind(m.id.as_str().to_owned());
        }
        q.push(") ORDER BY event_id, n");
        collect_pending(&mut pending, q.build().fetch_all(&mut **tx).await?)?;
    }
    if pending.is_empty() {
        return Ok(());
    }
    for m in named.iter_mut() {
        if let Some(all) = pending.get(m.id.as_str()) {
            crate::lattice::overlay(m, all);
        }
    }
    Ok(())
}

/// The columns of `status_log` a reader merges in ([`collect_pending`] reads them).
pub(crate) const PENDING_COLUMNS: &str = "message_id, wamid, state, at, error_code, error_message";

/// Adds rows of [`PENDING_COLUMNS`] (in log order) to `pending`, by message id.
pub(crate) fn collect_pending(
    pending: &mut crate::lattice::PendingStatuses,
    rows: Vec<DbRow>,
) -> Result<()> {
    for row in rows {
        let id: String = row.try_get("message_id")?;
        let wamid: String = row.try_get("wamid")?;
        let state: String = row.try_get("state")?;
        let code: Option<i64> = row.try_get("error_code")?;
        let message: Option<String> = row.try_get("error_message")?;
        let change = crate::StatusChange {
            wamid: Wamid::parse(&wamid).map_err(|e| corrupt("status_log.wamid", e))?,
            message_id: None,
            state: MessageState::from_str(&state).map_err(|e| corrupt("status_log.state", e))?,
            at: row.try_get("at")?,
            error: code.map(|c| (c, message.unwrap_or_default())),
            pricing: None,
        };
        pending.entry(id).or_default().push(change);
    }
    Ok(())
}
