//! `CampaignStore` on SQLite: only what differs from PostgreSQL; the rest is
//! `shared/campaigns.rs`. Writes go through the one writer connection (`BEGIN IMMEDIATE` for
//! read-then-write), which also serializes the quota gate per scope.

use parley_domain::{CampaignId, SERVICE_WINDOW};
use sqlx::{Row, Sqlite, Transaction};

use crate::campaigns::*;
use crate::sqlite::{json_strings, to_json};
use crate::{Millis, Result, SqliteStore};
use parley_domain::MessageContent;

/// Planned messages per `INSERT` (19 values each, under SQLite's 32,766 parameters).
const PLANNED_INSERT_CHUNK: usize = 500;

impl SqliteStore {
    /// `CampaignStore::add_planned_messages`: the cursor check (`IS ?`, `planned` as 0/1) and
    /// multi-row inserts.
    pub(crate) async fn commit_planner_chunk(
        &self,
        id: &CampaignId,
        expected_cursor: Option<&str>,
        messages: &[PlannedMessage],
        new_cursor: Option<&str>,
        done: bool,
        now: Millis,
    ) -> Result<bool> {
        let mut tx = self.tx().await?;
        let r = sqlx::query(
            "UPDATE campaigns SET planner_cursor = ?, planned = ?, recipients = recipients + ?, updated_at = ?
             WHERE id = ? AND state = 'running' AND planned = 0 AND planner_cursor IS ?",
        )
        .bind(new_cursor)
        .bind(i64::from(done))
        .bind(i64::try_from(messages.len()).unwrap_or(i64::MAX))
        .bind(now)
        .bind(id.as_str())
        .bind(expected_cursor)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        // The new rows' statistics are counted here, with the insert trigger off (0042).
        let counters = crate::message_stats::planned_counters(id.as_str(), messages);
        crate::sqlite::suspend_stat_triggers(&mut tx, true).await?;
        // Multi-row inserts: one statement per 500 messages, not one each.
        for chunk in messages.chunks(PLANNED_INSERT_CHUNK) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO messages (id, application_id, phone_number_id, contact_id, to_phone, kind, template_name,
                   template_language, content, reply_to, idempotency_key, state, next_attempt_at, queued_at, updated_at,
                   campaign_id, hold_reason, error_message, send_window, country) ",
            );
            let mut rows = Vec::with_capacity(chunk.len());
            for p in chunk {
                rows.push((p, to_json(&p.message.content)?));
            }
            qb.push_values(rows, |mut b, (p, content)| {
                let m = &p.message;
                let (name, language) = match &m.content {
                    MessageContent::Template { template } => {
                        (Some(template.name.clone()), Some(template.language.clone()))
                    }
                    _ => (None, None),
                };
                let state = if p.skip.is_some() {
                    "skipped"
                } else {
                    "queued"
                };
                let window_hold = p.window_opens_at.filter(|_| p.skip.is_none());
                b.push_bind(m.id.as_str().to_owned())
                    .push_bind(m.application_id.as_str().to_owned())
                    .push_bind(m.phone_number_id.as_str().to_owned())
                    .push_bind(m.contact_id.as_ref().map(|c| c.as_str().to_owned()))
                    .push_bind(m.to_phone.clone())
                    .push_bind(m.content.kind())
                    .push_bind(name)
                    .push_bind(language)
                    .push_bind(content)
                    .push("NULL")
                    .push("NULL")
                    .push_bind(state)
                    .push_bind(window_hold.unwrap_or(m.now))
                    .push_bind(m.now)
                    .push_bind(m.now)
                    .push_bind(id.as_str().to_owned())
                    .push_bind(
                        p.skip
                            .as_ref()
                            .map(|s| s.0.clone())
                            .or(window_hold.map(|_| "window".to_owned())),
                    )
                    .push_bind(p.skip.as_ref().map(|s| s.1.clone()))
                    .push_bind(p.send_window.clone())
                    .push_bind(parley_domain::phone::country_of(&m.to_phone));
            });
            qb.build().execute(&mut *tx).await?;
        }
        crate::sqlite::suspend_stat_triggers(&mut tx, false).await?;
        crate::sqlite::add_counters(&mut tx, &counters).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Queued or sending messages, from the counters the triggers of migration 0009 keep.
    pub(crate) async fn open_message_count(&self, id: &CampaignId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(n), 0) FROM campaign_counts WHERE campaign_id = ? AND state IN ('queued', 'sending')",
        )
        .bind(id.as_str())
        .fetch_one(&self.writer)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// `CampaignStore::campaign_counts`.
    pub(crate) async fn message_counts(&self, id: &CampaignId) -> Result<CampaignCounts> {
        // The counters the triggers of migration 0009 keep: no scan of the messages.
        let mut counts = CampaignCounts::default();
        let rows = sqlx::query(
            "SELECT state, reason, n FROM campaign_counts WHERE campaign_id = ? AND n > 0",
        )
        .bind(id.as_str())
        .fetch_all(&self.reader)
        .await?;
        for r in rows {
            let state: String = r.try_get("state")?;
            let reason: String = r.try_get("reason")?;
            let n = u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0);
            *counts.by_state.entry(state.clone()).or_default() += n;
            match (state.as_str(), reason.as_str()) {
                ("failed", code) => *counts.failed_by_code.entry(code.to_owned()).or_default() += n,
                ("skipped", why) => {
                    *counts.skipped_by_reason.entry(why.to_owned()).or_default() += n
                }
                ("queued", "quota") => counts.waiting_for_quota += n,
                ("queued", "window") => counts.waiting_for_window += n,
                _ => {}
            }
        }
        for (hold, count, next) in [
            ("quota", counts.waiting_for_quota, &mut counts.next_slot_at),
            (
                "window",
                counts.waiting_for_window,
                &mut counts.next_window_at,
            ),
        ] {
            if count > 0 {
                *next = sqlx::query_scalar(
                    "SELECT MIN(next_attempt_at) FROM messages
                     WHERE campaign_id = ? AND state = 'queued' AND hold_reason = ?",
                )
                .bind(id.as_str())
                .bind(hold)
                .fetch_one(&self.reader)
                .await?;
            }
        }
        // Replies come after the campaign started: read from the inbound side, which is
        // small next to the campaign's messages.
        let replied: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT m.id) FROM campaigns c
             CROSS JOIN inbound_messages i
             CROSS JOIN messages m
             WHERE c.id = ?1 AND i.application_id = c.application_id
               AND i.received_at >= COALESCE(c.started_at, c.created_at)
               AND m.application_id = i.application_id AND m.to_phone = i.from_phone
               AND m.campaign_id = ?1 AND COALESCE(m.delivered_at, m.read_at) IS NOT NULL
               AND i.received_at > COALESCE(m.delivered_at, m.read_at)
               AND i.received_at < COALESCE(m.delivered_at, m.read_at) + ?2",
        )
        .bind(id.as_str())
        .bind(SERVICE_WINDOW.whole_milliseconds() as i64)
        .fetch_one(&self.reader)
        .await?;
        counts.replied = u64::try_from(replied).unwrap_or(0);
        let rows =
            sqlx::query("SELECT hour, n FROM campaign_hours WHERE campaign_id = ? AND n > 0")
                .bind(id.as_str())
                .fetch_all(&self.reader)
                .await?;
        for r in rows {
            let n: i64 = r.try_get("n")?;
            counts
                .sent_per_hour
                .insert(r.try_get("hour")?, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    /// The quota gate's transaction: `BEGIN IMMEDIATE` on the one writer already serializes
    /// every gate, so no lock of its own.
    pub(crate) async fn quota_gate_tx(
        &self,
        _scope_key: &str,
    ) -> Result<Transaction<'static, Sqlite>> {
        self.tx().await
    }

    /// The batch's contacts inside their service window, and those in the ledger with their
    /// last reach: one JSON array of the contacts for both reads.
    pub(crate) async fn quota_reach_facts(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        req: &QuotaBatch<'_>,
    ) -> Result<QuotaFacts> {
        let contacts = json_strings(req.items.iter().map(|i| i.contact));
        let mut facts = QuotaFacts::default();
        // A key is a contact id or an address (phone): both looked up by their index. The ids
        // are joined from the list (`CROSS JOIN` keeps that order): with `id IN (…)` SQLite
        // chose the `(application_id, phone)` index and read every contact of the application
        // for each batch (~10 µs a message at 100,000 contacts).
        let since = req.now - SERVICE_WINDOW.whole_milliseconds() as i64;
        let in_window: Vec<String> = sqlx::query_scalar(
            "SELECT c.id FROM json_each(?3) AS j CROSS JOIN contacts AS c ON c.id = j.value
             WHERE c.application_id = ?1 AND c.last_inbound_at > ?2
             UNION ALL
             SELECT phone FROM contacts WHERE application_id = ?1 AND last_inbound_at > ?2
               AND phone IN (SELECT value FROM json_each(?3))",
        )
        .bind(req.application_id.as_str())
        .bind(since)
        .bind(&contacts)
        .fetch_all(&mut **tx)
        .await?;
        facts.in_window.extend(in_window);
        let rows = sqlx::query(
            "SELECT contact, last_at FROM quota_reach WHERE scope_key = ?
               AND contact IN (SELECT value FROM json_each(?))",
        )
        .bind(req.scope_key)
        .bind(&contacts)
        .fetch_all(&mut **tx)
        .await?;
        for r in rows {
            facts
                .last_at
                .insert(r.try_get("contact")?, r.try_get("last_at")?);
        }
        Ok(facts)
    }

    /// Reserves a slot for each of these items (new contacts let through).
    pub(crate) async fn reserve_quota_slots(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        req: &QuotaBatch<'_>,
        reserve: &[usize],
    ) -> Result<()> {
        let rows = serde_json::Value::Array(
            reserve
                .iter()
                .map(|&i| {
                    let item = &req.items[i];
                    serde_json::json!({"contact": item.contact, "id": item.message_id.as_str()})
                })
                .collect(),
        );
        sqlx::query(
                "INSERT INTO quota_reach (scope_key, contact, last_at, reserved_by)
                 SELECT ?, j.value ->> 'contact', ?, j.value ->> 'id' FROM jsonb_each(?) AS j WHERE true
                 ON CONFLICT (scope_key, contact) DO UPDATE SET last_at = excluded.last_at, reserved_by = excluded.reserved_by",
            )
            .bind(req.scope_key)
            .bind(req.now)
            .bind(rows.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Lifts the quota/window hold of the messages let through.
    pub(crate) async fn lift_quota_holds(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        ids: &[&str],
    ) -> Result<()> {
        sqlx::query(
                "UPDATE messages SET hold_reason = NULL
                 WHERE id IN (SELECT value FROM json_each(?)) AND hold_reason IN ('quota', 'window')",
            )
            .bind(json_strings(ids.iter().copied()))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}
