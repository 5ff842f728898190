//! How a status merges into a message, in one place so the SQLite and PostgreSQL backends
//! cannot drift apart: both read the rows a batch names, merge in Rust here, and write the
//! merged rows back in one statement.
//!
//! The state is the lattice join (`MessageState::merge`). The error must also come out the
//! same whatever order statuses arrive in: a `failed` status sets it while the message is
//! failed, and evidence of delivery (`delivered`, `read`) clears it, because a failure that
//! delivery overruled is not the message's outcome. Without the clearing, `failed` then
//! `delivered` kept Meta's error while `delivered` then `failed` did not. Each state's time is
//! the earliest reported (so duplicates in any order give the same times), `updated_at` never
//! goes back, and a merged row has no lease any more.

use parley_domain::{MessageId, MessageState, Wamid};
use serde_json::json;
use std::collections::BTreeMap;

use crate::Millis;
use crate::message_stats::{Deltas, MessageView};
use crate::types::{Acceptance, StatusChange};

/// The columns of a message that a status merge reads and writes. Serialized (serde, field
/// names as the columns) into the JSON array the batch `UPDATE` reads.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct StatusRow {
    pub id: String,
    pub state: MessageState,
    pub wamid: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub updated_at: Millis,
    pub sending_at: Option<Millis>,
    pub accepted_at: Option<Millis>,
    pub sent_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub read_at: Option<Millis>,
    pub failed_at: Option<Millis>,
    /// A status's pricing to write with the merge (`p` the object as JSON text, `c` its
    /// category); absent, the row's pricing is left as it is. Not read back.
    #[serde(rename = "p", skip_serializing_if = "Option::is_none")]
    pub pricing: Option<String>,
    #[serde(rename = "c", skip_serializing_if = "Option::is_none")]
    pub pricing_category: Option<String>,
    /// The columns a merge does not write: what the caller learns of each matched message
    /// and what the statistics read. Not written back.
    #[serde(skip)]
    pub facts: RowFacts,
}

/// The columns of a message a status merge reads but does not write (`pricing` and
/// `pricing_category` as stored before the merge).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RowFacts {
    pub application_id: String,
    pub to_phone: String,
    pub contact_id: Option<String>,
    pub campaign_id: Option<String>,
    pub template_name: Option<String>,
    pub phone_number_id: String,
    pub kind: String,
    pub country: Option<String>,
    pub queued_at: Millis,
    pub hold_reason: Option<String>,
    pub meta_status: Option<String>,
    pub capped_times: i64,
    pub replied_at: Option<Millis>,
    pub pricing: Option<String>,
    pub pricing_category: Option<String>,
}

/// A `failed` with Meta's per-user marketing cap (131049).
fn is_cap_failure(c: &StatusChange) -> bool {
    c.state == MessageState::Failed && matches!(c.error, Some((131049, _)))
}

/// The columns `StatusRow` is read from, for `SELECT {STATUS_COLUMNS} FROM messages …`
/// (SQLite reads them as one JSON array per row, in this order: `LoadedRow`).
pub(crate) const STATUS_COLUMNS: &str = "id, state, wamid, error_code, error_message, updated_at, \
     sending_at, accepted_at, sent_at, delivered_at, read_at, failed_at, application_id, to_phone, \
     contact_id, campaign_id, template_name, phone_number_id, kind, country, queued_at, hold_reason, \
     meta_status, capped_times, replied_at, pricing, pricing_category";

/// One row of `STATUS_COLUMNS` as a JSON array (the fields in the same order).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct LoadedRow {
    id: String,
    state: String,
    wamid: Option<String>,
    error_code: Option<i64>,
    error_message: Option<String>,
    updated_at: Millis,
    sending_at: Option<Millis>,
    accepted_at: Option<Millis>,
    sent_at: Option<Millis>,
    delivered_at: Option<Millis>,
    read_at: Option<Millis>,
    failed_at: Option<Millis>,
    application_id: String,
    to_phone: String,
    contact_id: Option<String>,
    campaign_id: Option<String>,
    template_name: Option<String>,
    phone_number_id: String,
    kind: String,
    country: Option<String>,
    queued_at: Millis,
    hold_reason: Option<String>,
    meta_status: Option<String>,
    capped_times: i64,
    replied_at: Option<Millis>,
    pricing: Option<String>,
    pricing_category: Option<String>,
}

impl LoadedRow {
    pub fn into_row(self) -> crate::Result<StatusRow> {
        Ok(StatusRow {
            id: self.id,
            state: self.state.parse().map_err(|e| crate::corrupt("state", e))?,
            wamid: self.wamid,
            error_code: self.error_code,
            error_message: self.error_message,
            updated_at: self.updated_at,
            sending_at: self.sending_at,
            accepted_at: self.accepted_at,
            sent_at: self.sent_at,
            delivered_at: self.delivered_at,
            read_at: self.read_at,
            failed_at: self.failed_at,
            pricing: None,
            pricing_category: None,
            facts: RowFacts {
                application_id: self.application_id,
                to_phone: self.to_phone,
                contact_id: self.contact_id,
                campaign_id: self.campaign_id,
                template_name: self.template_name,
                phone_number_id: self.phone_number_id,
                kind: self.kind,
                country: self.country,
                queued_at: self.queued_at,
                hold_reason: self.hold_reason,
                meta_status: self.meta_status,
                capped_times: self.capped_times,
                replied_at: self.replied_at,
                pricing: self.pricing,
                pricing_category: self.pricing_category,
            },
        })
    }
}

/// The columns a merge moves, as loaded (what the row contributed to the statistics before).
#[derive(Debug, Clone, Copy)]
struct Moving {
    state: MessageState,
    error_code: Option<i64>,
    updated_at: Millis,
    sending_at: Option<Millis>,
    accepted_at: Option<Millis>,
    sent_at: Option<Millis>,
    delivered_at: Option<Millis>,
    read_at: Option<Millis>,
    failed_at: Option<Millis>,
}

impl Moving {
    fn of(r: &StatusRow) -> Moving {
        Moving {
            state: r.state,
            error_code: r.error_code,
            updated_at: r.updated_at,
            sending_at: r.sending_at,
            accepted_at: r.accepted_at,
            sent_at: r.sent_at,
            delivered_at: r.delivered_at,
            read_at: r.read_at,
            failed_at: r.failed_at,
        }
    }
}

impl StatusRow {
    /// The row as the statistics see it: its facts with the moving columns of `m` and the
    /// given pricing.
    fn view<'a>(
        &'a self,
        m: Moving,
        pricing: Option<&'a str>,
        pricing_category: Option<&'a str>,
    ) -> MessageView<'a> {
        let f = &self.facts;
        MessageView {
            application_id: &f.application_id,
            campaign_id: f.campaign_id.as_deref(),
            template_name: f.template_name.as_deref(),
            phone_number_id: &f.phone_number_id,
            kind: &f.kind,
            country: f.country.as_deref(),
            pricing,
            pricing_category,
            state: m.state,
            error_code: m.error_code,
            hold_reason: f.hold_reason.as_deref(),
            meta_status: f.meta_status.as_deref(),
            capped_times: f.capped_times,
            queued_at: f.queued_at,
            sending_at: m.sending_at,
            accepted_at: m.accepted_at,
            sent_at: m.sent_at,
            delivered_at: m.delivered_at,
            read_at: m.read_at,
            failed_at: m.failed_at,
            updated_at: m.updated_at,
            replied_at: f.replied_at,
        }
    }

    /// The row as stored (its loaded columns, no merge).
    pub fn stored_view(&self) -> MessageView<'_> {
        self.view(
            Moving::of(self),
            self.facts.pricing.as_deref(),
            self.facts.pricing_category.as_deref(),
        )
    }

    /// The row as the merge writes it (a pricing the merge carries replaces the stored one,
    /// as the `UPDATE` does).
    fn merged_view(&self) -> MessageView<'_> {
        let (p, c) = match &self.pricing {
            Some(p) => (Some(p.as_str()), self.pricing_category.as_deref()),
            None => (
                self.facts.pricing.as_deref(),
                self.facts.pricing_category.as_deref(),
            ),
        };
        self.view(Moving::of(self), p, c)
    }
}

fn earliest(slot: &mut Option<Millis>, at: Millis) {
    *slot = Some(slot.map_or(at, |t| t.min(at)));
}

impl StatusRow {
    /// Merges one status into the row.
    /// Queued after Meta's per-user cap (`requeue_capped`, `reschedule_capped`), with no
    /// wamid.
    fn waits_after_a_cap(&self) -> bool {
        self.state == MessageState::Queued
            && self.wamid.is_none()
            && self.facts.hold_reason.as_deref() == Some(parley_domain::consent::CAPPED_BY_META)
    }

    pub fn merge(&mut self, change: &StatusChange) {
        let merged = self.state.merge(change.state);
        match (merged, &change.error) {
            (MessageState::Delivered | MessageState::Read, _) => {
                self.error_code = None;
                self.error_message = None;
            }
            (MessageState::Failed, Some((code, message))) => {
                self.error_code = Some(*code);
                self.error_message = Some(message.clone());
            }
            _ => {}
        }
        self.state = merged;
        if self.wamid.is_none() {
            self.wamid = Some(change.wamid.as_str().to_owned());
        }
        self.updated_at = self.updated_at.max(change.at);
        if let Some(p) = &change.pricing {
            self.pricing = Some(p.pricing.clone());
            self.pricing_category = p.category.clone();
        }
        let slot = match change.state {
            MessageState::Sending => &mut self.sending_at,
            MessageState::Accepted => &mut self.accepted_at,
            MessageState::Sent => &mut self.sent_at,
            MessageState::Delivered => &mut self.delivered_at,
            MessageState::Read => &mut self.read_at,
            MessageState::Failed => &mut self.failed_at,
            _ => return,
        };
        earliest(slot, change.at);
    }

    /// Meta accepted a send: the `accepted` status, and a retried send that Meta accepted
    /// clears the transient error it recovered from.
    pub fn accept(&mut self, wamid: &Wamid, at: Millis) {
        self.merge(&StatusChange {
            wamid: wamid.clone(),
            message_id: None,
            state: MessageState::Accepted,
            at,
            error: None,
            pricing: None,
        });
        if self.state != MessageState::Failed {
            self.error_code = None;
            self.error_message = None;
        }
    }
}

/// Statuses still in `status_log` (projected, not merged yet), by the message id they name.
pub(crate) type PendingStatuses = std::collections::HashMap<String, Vec<StatusChange>>;

/// A message's statuses still in `status_log` (`pending`, in log order) merged into its moving
/// columns `m` and error message through the same lattice as the processor's merge: a reader
/// sees what the merge will write, and a status the row already holds changes nothing (the
/// merge is idempotent). Only the statuses that name the wamid the message holds apply: a
/// message without a wamid, or a status of an earlier send, is left to the merge, which
/// decides what it does. So is a failure Meta asks to retry later (131049, the per-user
/// marketing cap): after its merge the message is requeued, not `failed`
/// (`consent::after_statuses`), and a reader showing it `failed` for the backlog's seconds
/// would show an end that never comes.
fn merge_pending(
    m: Moving,
    wamid: Option<&str>,
    error_message: Option<String>,
    pending: &[StatusChange],
) -> (Moving, Option<String>) {
    let mut row = StatusRow {
        id: String::new(),
        state: m.state,
        wamid: wamid.map(str::to_owned),
        error_code: m.error_code,
        error_message,
        updated_at: m.updated_at,
        sending_at: m.sending_at,
        accepted_at: m.accepted_at,
        sent_at: m.sent_at,
        delivered_at: m.delivered_at,
        read_at: m.read_at,
        failed_at: m.failed_at,
        pricing: None,
        pricing_category: None,
        facts: RowFacts::default(),
    };
    for c in pending
        .iter()
        .filter(|c| wamid == Some(c.wamid.as_str()) && !retried_later(c))
    {
        row.merge(c);
    }
    (Moving::of(&row), row.error_message)
}

/// A `failed` whose error Meta says to retry after a delay: the merge reschedules it.
fn retried_later(c: &StatusChange) -> bool {
    c.state == MessageState::Failed
        && c.error.as_ref().is_some_and(|(code, _)| {
            matches!(
                parley_domain::meta_error::classify(*code),
                parley_domain::meta_error::ErrorClass::RetryAfter(_)
            )
        })
}

/// A message as read, with its statuses still in `status_log` merged in ([`merge_pending`]).
pub(crate) fn overlay(m: &mut crate::types::MessageRecord, pending: &[StatusChange]) {
    let (moved, error_message) = merge_pending(
        Moving {
            state: m.state,
            error_code: m.error_code,
            updated_at: m.updated_at,
            sending_at: m.sending_at,
            accepted_at: m.accepted_at,
            sent_at: m.sent_at,
            delivered_at: m.delivered_at,
            read_at: m.read_at,
            failed_at: m.failed_at,
        },
        m.wamid.as_ref().map(|w| w.as_str()),
        m.error_message.take(),
        pending,
    );
    m.state = moved.state;
    m.error_code = moved.error_code;
    m.error_message = error_message;
    m.updated_at = moved.updated_at;
    m.sending_at = moved.sending_at;
    m.accepted_at = moved.accepted_at;
    m.sent_at = moved.sent_at;
    m.delivered_at = moved.delivered_at;
    m.read_at = moved.read_at;
    m.failed_at = moved.failed_at;
}

/// A row of a campaign's per-recipient export, with its message's statuses still in
/// `status_log` merged in ([`merge_pending`]).
pub(crate) fn overlay_outcome(o: &mut crate::stats::CampaignOutcome<'_>, pending: &[StatusChange]) {
    let Ok(state) = o.state.parse::<MessageState>() else {
        return;
    };
    let (moved, error_message) = merge_pending(
        Moving {
            state,
            error_code: o.error_code,
            // Not a column of the export.
            updated_at: 0,
            sending_at: o.sending_at,
            accepted_at: o.accepted_at,
            sent_at: o.sent_at,
            delivered_at: o.delivered_at,
            read_at: o.read_at,
            failed_at: o.failed_at,
        },
        o.wamid.as_deref(),
        o.error_message.take().map(|m| m.into_owned()),
        pending,
    );
    o.state = std::borrow::Cow::Borrowed(moved.state.as_str());
    o.error_code = moved.error_code;
    o.error_message = error_message.map(std::borrow::Cow::Owned);
    o.sending_at = moved.sending_at;
    o.accepted_at = moved.accepted_at;
    o.sent_at = moved.sent_at;
    o.delivered_at = moved.delivered_at;
    o.read_at = moved.read_at;
    o.failed_at = moved.failed_at;
}

/// One quota confirmation, as an element of the JSON array the batch upsert reads.
#[derive(Debug, serde::Serialize)]
pub(crate) struct QuotaConfirmRow<'a> {
    pub scope: std::borrow::Cow<'a, str>,
    pub contact: std::borrow::Cow<'a, str>,
    pub id: &'a str,
    pub at: Millis,
}

/// A status that named no known message yet, as one element of the orphan `INSERT`'s array.
pub(crate) fn orphan_json(change: &StatusChange) -> serde_json::Value {
    json!({
        "wamid": change.wamid,
        "state": change.state.as_str(),
        "at": change.at,
        "error_code": change.error.as_ref().map(|e| e.0),
        "error_message": change.error.as_ref().map(|e| e.1.as_str()),
    })
}

/// A quota confirmation to write: `(scope key, contact, message id, accepted at)`.
pub(crate) type QuotaConfirmation<'a> = (&'a str, &'a str, &'a str, Millis);

/// The rows a batch works on, found by message id or by wamid, merged in the order given.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub rows: Vec<StatusRow>,
    /// Per row: its moving columns as loaded.
    loaded: Vec<Moving>,
    /// Per row: its error message as loaded (with `loaded`, what `changed_columns` compares).
    loaded_error_message: Vec<Option<String>>,
    by_id: foldhash::HashMap<String, usize>,
    by_wamid: foldhash::HashMap<String, usize>,
    /// Rows whose wamid became known in this batch (their orphans are folded in).
    new_wamids: Vec<usize>,
    dirty: Vec<bool>,
    /// Per row: its wamid became known in this batch.
    wamid_set: Vec<bool>,
}

impl Batch {
    pub fn add(&mut self, row: StatusRow) {
        if self.by_id.contains_key(&row.id) {
            return;
        }
        let i = self.rows.len();
        self.by_id.insert(row.id.clone(), i);
        if let Some(w) = &row.wamid {
            self.by_wamid.insert(w.clone(), i);
        }
        self.loaded.push(Moving::of(&row));
        self.loaded_error_message.push(row.error_message.clone());
        self.rows.push(row);
        self.dirty.push(false);
        self.wamid_set.push(false);
    }

    /// The row a change names: by our id when Meta echoed it, else by wamid.
    pub fn find(&self, id: Option<&str>, wamid: &str) -> Option<usize> {
        id.and_then(|id| self.by_id.get(id))
            .or_else(|| self.by_wamid.get(wamid))
            .copied()
    }

    pub fn find_id(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Applies `f` to row `i`, keeping the wamid index and the dirty marks up to date.
    pub fn update(&mut self, i: usize, f: impl FnOnce(&mut StatusRow)) {
        let had_wamid = self.rows[i].wamid.is_some();
        f(&mut self.rows[i]);
        self.dirty[i] = true;
        if !had_wamid && let Some(w) = &self.rows[i].wamid {
            self.by_wamid.entry(w.clone()).or_insert(i);
            self.new_wamids.push(i);
            self.wamid_set[i] = true;
        }
    }

    /// The wamids this batch recorded on rows since the last call: their orphans are to be
    /// folded in.
    pub fn take_new_wamids(&mut self) -> Vec<String> {
        std::mem::take(&mut self.new_wamids)
            .into_iter()
            .filter_map(|i| self.rows[i].wamid.clone())
            .collect()
    }

    /// Merges a status kept as an orphan (read back as its columns) into the row with its
    /// wamid.
    pub fn fold_orphan(
        &mut self,
        wamid: String,
        state: &str,
        at: Millis,
        error_code: Option<i64>,
        error_message: Option<String>,
    ) -> crate::Result<()> {
        let state = state
            .parse::<MessageState>()
            .map_err(|e| crate::StoreError::Corrupt(format!("orphan state: {e}")))?;
        if let Some(i) = self.find(None, &wamid) {
            let change = StatusChange {
                wamid: Wamid::parse(&wamid).map_err(|e| crate::corrupt("orphan wamid", e))?,
                message_id: None,
                state,
                at,
                error: error_code.map(|c| (c, error_message.unwrap_or_default())),
                pricing: None,
            };
            self.update(i, |r| r.merge(&change));
        }
        Ok(())
    }

    /// The message ids the changes name (read first).
    pub fn ids_named(changes: &[StatusChange]) -> Vec<&str> {
        changes
            .iter()
            .filter_map(|c| c.message_id.as_ref().map(|m| m.as_str()))
            .collect()
    }

    /// The wamids of the changes no row read so far matches (read next).
    pub fn wamids_unmatched<'c>(&self, changes: &'c [StatusChange]) -> Vec<&'c str> {
        changes
            .iter()
            .filter(|c| self.find_change(c).is_none())
            .map(|c| c.wamid.as_str())
            .collect()
    }

    fn find_change(&self, c: &StatusChange) -> Option<usize> {
        self.find(c.message_id.as_ref().map(|m| m.as_str()), c.wamid.as_str())
    }

    /// Merges the changes in the order given. Returns, per change, the row it matched, and
    /// the changes no row matched (to keep as orphans). A wamid this batch recorded on a row
    /// takes the batch's statuses that named only it.
    pub fn merge_all<'c>(
        &mut self,
        changes: &'c [StatusChange],
    ) -> (Vec<Option<usize>>, Vec<&'c StatusChange>) {
        let mut matched = vec![None; changes.len()];
        let mut unmatched = Vec::new();
        for (n, c) in changes.iter().enumerate() {
            match self.find_change(c) {
                // A message Meta capped (131049) and Parley queued again for its next day let
                // its wamid go: a 131049 `failed` naming it now (Meta's webhook delivered
                // again) is about the old send, and would fail the waiting message for good.
                // Other statuses still apply: a capped resend requeued by crash recovery is
                // settled by its late statuses, not sent twice.
                Some(i) if self.rows[i].waits_after_a_cap() && is_cap_failure(c) => {}
                Some(i) => {
                    self.update(i, |r| r.merge(c));
                    matched[n] = Some(i);
                }
                None => unmatched.push(n),
            }
        }
        let mut orphans = Vec::new();
        for n in unmatched {
            let c = &changes[n];
            match self.find(None, c.wamid.as_str()) {
                Some(i) => {
                    self.update(i, |r| r.merge(c));
                    matched[n] = Some(i);
                }
                None => orphans.push(c),
            }
        }
        (matched, orphans)
    }

    /// Records the acceptances on the rows read for them. Returns the ids no row has, and
    /// the quota confirmations `(scope key, contact, message id, at)` to write.
    pub fn accept_all<'a>(
        &mut self,
        accepted: &'a [Acceptance],
    ) -> (Vec<MessageId>, Vec<QuotaConfirmation<'a>>) {
        let mut missing = Vec::new();
        let mut confirms = Vec::new();
        for a in accepted {
            let Some(i) = self.find_id(a.id.as_str()) else {
                missing.push(a.id.clone());
                continue;
            };
            self.update(i, |r| r.accept(&a.wamid, a.at));
            if let Some(q) = &a.quota {
                confirms.push((
                    q.scope_key.as_str(),
                    q.contact.as_str(),
                    a.id.as_str(),
                    a.at,
                ));
            }
        }
        (missing, confirms)
    }

    /// What the caller learns of `merge_all`'s matches, per change.
    pub fn matched_facts(
        &self,
        matched: Vec<Option<usize>>,
    ) -> crate::Result<Vec<Option<crate::events::MessageFacts>>> {
        let mut made: foldhash::HashMap<usize, crate::events::MessageFacts> =
            foldhash::HashMap::default();
        matched
            .into_iter()
            .map(|m| {
                let Some(i) = m else { return Ok(None) };
                if let Some(f) = made.get(&i) {
                    return Ok(Some(f.clone()));
                }
                let f = self.facts(i)?;
                made.insert(i, f.clone());
                Ok(Some(f))
            })
            .collect()
    }

    /// What the merged rows change in the statistics counters: per dirty row, what it
    /// contributed as loaded taken off and what it contributes merged added, summed per
    /// counter (`ignore_case`: the backend's `LIKE`).
    pub fn stat_deltas(&self, ignore_case: bool) -> BTreeMap<crate::stats::StatKey, i64> {
        let mut deltas = Deltas::default();
        for (i, r) in self.rows.iter().enumerate() {
            if !self.dirty[i] {
                continue;
            }
            let old = r.view(
                self.loaded[i],
                r.facts.pricing.as_deref(),
                r.facts.pricing_category.as_deref(),
            );
            deltas.change(&old, &r.merged_view(), ignore_case);
        }
        deltas.into_counters()
    }

    /// Whether any row is to be written.
    pub fn is_dirty(&self) -> bool {
        self.dirty.iter().any(|d| *d)
    }

    /// What the caller learns of each matched message, after the merge.
    pub fn facts(&self, i: usize) -> crate::Result<crate::events::MessageFacts> {
        let r = &self.rows[i];
        let f = &r.facts;
        Ok(crate::events::MessageFacts {
            id: MessageId::parse(&r.id).map_err(|e| crate::corrupt("message id", e))?,
            application_id: parley_domain::ApplicationId::parse(&f.application_id)
                .map_err(|e| crate::corrupt("application id", e))?,
            to_phone: f.to_phone.clone(),
            contact_id: f
                .contact_id
                .as_deref()
                .map(parley_domain::ContactId::parse)
                .transpose()
                .map_err(|e| crate::corrupt("contact id", e))?,
            campaign_id: f
                .campaign_id
                .as_deref()
                .map(parley_domain::CampaignId::parse)
                .transpose()
                .map_err(|e| crate::corrupt("campaign id", e))?,
            wamid: r.wamid.clone(),
            error_code: r.error_code,
            error_message: r.error_message.clone(),
        })
    }

    /// The merged rows to write back, as a JSON array of `StatusRow`s: those whose wamid this
    /// batch recorded (`new_wamid`), or the others (their wamid column is left alone, so its
    /// unique index is not rewritten for every status).
    pub fn dirty_json(&self, new_wamid: bool) -> Option<String> {
        let rows: Vec<&StatusRow> = (0..self.rows.len())
            .filter(|&i| self.dirty[i] && self.wamid_set[i] == new_wamid)
            .map(|i| &self.rows[i])
            .collect();
        if rows.is_empty() {
            return None;
        }
        serde_json::to_string(&rows).ok()
    }

    /// The columns row `i`'s merge changed against the row as loaded (`Column` bits); a
    /// status's pricing counts as changed whenever the status carries one (the `UPDATE` writes
    /// it as given), the wamid when this batch recorded it.
    pub fn changed_columns(&self, i: usize) -> u16 {
        let (r, m) = (&self.rows[i], &self.loaded[i]);
        let mut bits = 0;
        let mut set = |c: Column, changed: bool| {
            if changed {
                bits |= 1 << c as u16;
            }
        };
        set(Column::State, r.state != m.state);
        set(
            Column::Error,
            r.error_code != m.error_code || r.error_message != self.loaded_error_message[i],
        );
        set(Column::UpdatedAt, r.updated_at != m.updated_at);
        set(Column::SendingAt, r.sending_at != m.sending_at);
        set(Column::AcceptedAt, r.accepted_at != m.accepted_at);
        set(Column::SentAt, r.sent_at != m.sent_at);
        set(Column::DeliveredAt, r.delivered_at != m.delivered_at);
        set(Column::ReadAt, r.read_at != m.read_at);
        set(Column::FailedAt, r.failed_at != m.failed_at);
        set(Column::Pricing, r.pricing.is_some());
        set(Column::Wamid, self.wamid_set[i]);
        bits
    }

    /// The dirty rows grouped by the columns their merge changed (`changed_columns`), groups
    /// in the order of their first row: a batch of statuses has a few such shapes (a
    /// `delivered` changes its state, time and `updated_at`), and an `UPDATE` that writes
    /// only those columns reads fewer values per row and leaves the other columns' indexes
    /// alone.
    pub fn dirty_by_columns(&self) -> Vec<(u16, Vec<usize>)> {
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
        for i in (0..self.rows.len()).filter(|&i| self.dirty[i]) {
            let bits = self.changed_columns(i);
            match groups.iter_mut().find(|(b, _)| *b == bits) {
                Some((_, rows)) => rows.push(i),
                None => groups.push((bits, vec![i])),
            }
        }
        groups
    }
}

/// The columns of a message a status merge may change, as bits of `Batch::changed_columns`
/// (`Error` is `error_code` with `error_message`, `Pricing` is `pricing` with
/// `pricing_category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Column {
    State,
    Error,
    UpdatedAt,
    SendingAt,
    AcceptedAt,
    SentAt,
    DeliveredAt,
    ReadAt,
    FailedAt,
    Pricing,
    Wamid,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Column::State,
        Column::Error,
        Column::UpdatedAt,
        Column::SendingAt,
        Column::AcceptedAt,
        Column::SentAt,
        Column::DeliveredAt,
        Column::ReadAt,
        Column::FailedAt,
        Column::Pricing,
        Column::Wamid,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> StatusRow {
        StatusRow {
            id: "msg_1".into(),
            state: MessageState::Sending,
            wamid: None,
            error_code: Some(131000),
            error_message: Some("transient".into()),
            updated_at: 10,
            sending_at: Some(5),
            accepted_at: None,
            sent_at: None,
            delivered_at: None,
            read_at: None,
            failed_at: None,
            pricing: None,
            pricing_category: None,
            facts: RowFacts::default(),
        }
    }

    fn change(state: MessageState, at: Millis, error: Option<(i64, &str)>) -> StatusChange {
        StatusChange {
            wamid: Wamid::parse("wamid.1").unwrap(),
            message_id: None,
            state,
            at,
            error: error.map(|(c, m)| (c, m.to_owned())),
            pricing: None,
        }
    }

    #[test]
    fn acceptance_sets_the_wamid_and_clears_a_retry_error() {
        let mut r = row();
        r.accept(&Wamid::parse("wamid.1").unwrap(), 20);
        assert_eq!(r.state, MessageState::Accepted);
        assert_eq!(r.wamid.as_deref(), Some("wamid.1"));
        assert_eq!(
            (r.error_code, r.accepted_at, r.updated_at),
            (None, Some(20), 20)
        );
    }

    /// The SQLite merge writes only the columns `changed_columns` names: each column a merge
    /// can move must show up when it moved (the error message alone included), and a
    /// repeated status changes nothing (the row is still written: it loses its lease).
    #[test]
    fn changed_columns_name_every_column_a_merge_moved() {
        let bits = |cs: &[Column]| cs.iter().fold(0u16, |b, c| b | 1 << *c as u16);
        let mut loaded = row();
        loaded.wamid = Some("wamid.1".into());
        loaded.state = MessageState::Failed;
        loaded.failed_at = Some(7);
        let mut b = Batch::default();
        b.add(loaded);
        let i = b.find_id("msg_1").expect("row");
        // The same failure, again: nothing moves.
        b.update(i, |r| {
            r.merge(&change(
                MessageState::Failed,
                7,
                Some((131000, "transient")),
            ))
        });
        assert_eq!(b.changed_columns(i), 0);
        assert_eq!(b.dirty_by_columns(), vec![(0, vec![i])]);
        // The same code with another message: the error moves, nothing else.
        b.update(i, |r| {
            r.merge(&change(MessageState::Failed, 7, Some((131000, "other"))))
        });
        assert_eq!(b.changed_columns(i), bits(&[Column::Error]));
        // Delivered later, with pricing: state, its time, updated_at, the error cleared.
        let mut delivered = change(MessageState::Delivered, 20, None);
        delivered.pricing = Some(crate::types::StatusPricing {
            pricing: "{}".into(),
            category: Some("marketing".into()),
        });
        b.update(i, |r| r.merge(&delivered));
        assert_eq!(
            b.changed_columns(i),
            bits(&[
                Column::State,
                Column::Error,
                Column::UpdatedAt,
                Column::DeliveredAt,
                Column::Pricing
            ])
        );
        // A row without a wamid that a status names by id records it (`sent` keeps the
        // retry's error: only delivery clears it).
        let mut b = Batch::default();
        b.add(row());
        let i = b.find_id("msg_1").expect("row");
        b.update(i, |r| r.merge(&change(MessageState::Sent, 30, None)));
        assert_eq!(
            b.changed_columns(i),
            bits(&[
                Column::State,
                Column::UpdatedAt,
                Column::SentAt,
                Column::Wamid
            ])
        );
    }

    #[test]
    fn any_order_of_the_same_statuses_ends_the_same() {
        use MessageState::*;
        let changes = [
            change(Sent, 30, None),
            change(Failed, 35, Some((131026, "undeliverable"))),
            change(Delivered, 40, None),
            change(Sent, 25, None),
        ];
        let mut expected = None;
        for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]] {
            let mut r = row();
            for i in perm {
                r.merge(&changes[i]);
            }
            assert_eq!(r.state, Delivered);
            assert_eq!(r.error_code, None, "delivery overrules the failure");
            assert_eq!(
                (r.sent_at, r.delivered_at, r.failed_at),
                (Some(25), Some(40), Some(35))
            );
            assert_eq!(r.updated_at, 40);
            if let Some(e) = &expected {
                assert_eq!(&r, e);
            }
            expected = Some(r);
        }
    }

    #[test]
    fn a_failure_keeps_meta_s_error() {
        let mut r = row();
        r.merge(&change(
            MessageState::Failed,
            50,
            Some((131026, "undeliverable")),
        ));
        assert_eq!(r.state, MessageState::Failed);
        assert_eq!(r.error_code, Some(131026));
        assert_eq!(r.error_message.as_deref(), Some("undeliverable"));
    }
}
