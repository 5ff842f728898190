//! `CampaignStore` on PostgreSQL: only what differs from SQLite; the rest is
//! `shared/campaigns.rs`. The quota gate takes a transaction-scoped advisory lock on the
//! scope, so nodes sending for one portfolio never hand out the same slot twice; planner
//! chunks and state changes are conditional UPDATEs.

use parley_domain::{CampaignId, SERVICE_WINDOW};
use sqlx::{Postgres, Row, Transaction};

use crate::campaigns::*;
use crate::postgres::jsonb;
use crate::{Millis, PostgresStore, Result};
use parley_domain::MessageContent;

const HOUR_MS: i64 = 60 * 60 * 1000;

impl PostgresStore {
    /// `CampaignStore::add_planned_messages`: the cursor check (`IS NOT DISTINCT FROM`,
    /// `planned` as BOOLEAN) and one INSERT per message.
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
            "UPDATE campaigns SET planner_cursor = $1, planned = $2, recipients = recipients + $3, updated_at = $4
             WHERE id = $5 AND state = 'running' AND planned = FALSE AND planner_cursor IS NOT DISTINCT FROM $6",
        )
        .bind(new_cursor)
        .bind(done)
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
        crate::postgres::suspend_stat_triggers(&mut tx, true).await?;
        for p in messages {
            let m = &p.message;
            let (name, language) = match &m.content {
                MessageContent::Template { template } => (
                    Some(template.name.as_str()),
                    Some(template.language.as_str()),
                ),
                _ => (None, None),
            };
            let state = if p.skip.is_some() {
                "skipped"
            } else {
                "queued"
            };
            let window_hold = p.window_opens_at.filter(|_| p.skip.is_none());
            sqlx::query(
                "INSERT INTO messages (id, application_id, phone_number_id, contact_id, to_phone, kind, template_name,
                   template_language, content, reply_to, idempotency_key, state, next_attempt_at, queued_at, updated_at,
                   campaign_id, hold_reason, error_message, send_window, country)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            )
            .bind(m.id.as_str())
            .bind(m.application_id.as_str())
            .bind(m.phone_number_id.as_str())
            .bind(m.contact_id.as_ref().map(|c| c.as_str()))
            .bind(&m.to_phone)
            .bind(m.content.kind())
            .bind(name)
            .bind(language)
            .bind(jsonb(&m.content)?)
            .bind(state)
            .bind(window_hold.unwrap_or(m.now))
            .bind(m.now)
            .bind(m.now)
            .bind(id.as_str())
            .bind(
                p.skip
                    .as_ref()
                    .map(|s| s.0.as_str())
                    .or(window_hold.map(|_| "window")),
            )
            .bind(p.skip.as_ref().map(|s| s.1.as_str()))
            .bind(p.send_window.as_deref())
            .bind(parley_domain::phone::country_of(&m.to_phone))
            .execute(&mut *tx)
            .await?;
        }
        crate::postgres::suspend_stat_triggers(&mut tx, false).await?;
        crate::postgres::add_counters(&mut tx, &counters).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Queued or sending messages, counted.
    pub(crate) async fn open_message_count(&self, id: &CampaignId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE campaign_id = $1 AND state IN ('queued', 'sending')",
        )
        .bind(id.as_str())
        .fetch_one(self.writer())
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// `CampaignStore::campaign_counts`, by grouped queries over the campaign's messages.
    pub(crate) async fn message_counts(&self, id: &CampaignId) -> Result<CampaignCounts> {
        let mut counts = CampaignCounts::default();
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM messages WHERE campaign_id = $1 GROUP BY state",
        )
        .bind(id.as_str())
        .fetch_all(self.writer())
        .await?;
        for r in rows {
            let n: i64 = r.try_get("n")?;
            counts
                .by_state
                .insert(r.try_get("state")?, u64::try_from(n).unwrap_or(0));
        }
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS next FROM messages
             WHERE campaign_id = $1 AND state = 'queued' AND hold_reason = 'quota'",
        )
        .bind(id.as_str())
        .fetch_one(self.writer())
        .await?;
        let n: i64 = row.try_get("n")?;
        counts.waiting_for_quota = u64::try_from(n).unwrap_or(0);
        counts.next_slot_at = row.try_get("next")?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS next FROM messages
             WHERE campaign_id = $1 AND state = 'queued' AND hold_reason = 'window'",
        )
        .bind(id.as_str())
        .fetch_one(self.writer())
        .await?;
        let n: i64 = row.try_get("n")?;
        counts.waiting_for_window = u64::try_from(n).unwrap_or(0);
        counts.next_window_at = row.try_get("next")?;
        let rows = sqlx::query(
            "SELECT COALESCE(CAST(error_code AS TEXT), 'unknown') AS k, COUNT(*) AS n FROM messages
             WHERE campaign_id = $1 AND state = 'failed' GROUP BY k",
        )
        .bind(id.as_str())
        .fetch_all(self.writer())
        .await?;
        for r in rows {
            let n: i64 = r.try_get("n")?;
            counts
                .failed_by_code
                .insert(r.try_get("k")?, u64::try_from(n).unwrap_or(0));
        }
        let rows = sqlx::query(
            "SELECT COALESCE(hold_reason, 'unknown') AS k, COUNT(*) AS n FROM messages
             WHERE campaign_id = $1 AND state = 'skipped' GROUP BY k",
        )
        .bind(id.as_str())
        .fetch_all(self.writer())
        .await?;
        for r in rows {
            let n: i64 = r.try_get("n")?;
            counts
                .skipped_by_reason
                .insert(r.try_get("k")?, u64::try_from(n).unwrap_or(0));
        }
        let replied: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages m
             WHERE m.campaign_id = $1 AND COALESCE(m.delivered_at, m.read_at) IS NOT NULL
               AND EXISTS (SELECT 1 FROM inbound_messages i
                 WHERE i.application_id = m.application_id AND i.from_phone = m.to_phone
                   AND i.received_at > COALESCE(m.delivered_at, m.read_at)
                   AND i.received_at < COALESCE(m.delivered_at, m.read_at) + $2)",
        )
        .bind(id.as_str())
        .bind(SERVICE_WINDOW.whole_milliseconds() as i64)
        .fetch_one(self.writer())
        .await?;
        counts.replied = u64::try_from(replied).unwrap_or(0);
        let rows = sqlx::query(
            "SELECT (COALESCE(sent_at, delivered_at, read_at) / $1) * $2 AS h, COUNT(*) AS n FROM messages
             WHERE campaign_id = $3 AND COALESCE(sent_at, delivered_at, read_at) IS NOT NULL GROUP BY h",
        )
        .bind(HOUR_MS)
        .bind(HOUR_MS)
        .bind(id.as_str())
        .fetch_all(self.writer())
        .await?;
        for r in rows {
            let n: i64 = r.try_get("n")?;
            counts
                .sent_per_hour
                .insert(r.try_get("h")?, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    /// The quota gate's transaction, holding the scope's lock.
    pub(crate) async fn quota_gate_tx(
        &self,
        scope_key: &str,
    ) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.tx().await?;
        // One gate at a time per scope, on every node.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(scope_key)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// The batch's contacts inside their service window, and those in the ledger with their
    /// last reach.
    pub(crate) async fn quota_reach_facts(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        req: &QuotaBatch<'_>,
    ) -> Result<QuotaFacts> {
        let contacts: Vec<&str> = req.items.iter().map(|i| i.contact).collect();
        let mut facts = QuotaFacts::default();
        // A key is a contact id or an address (phone): both looked up by their index.
        let in_window: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM contacts WHERE application_id = $1 AND last_inbound_at > $2
               AND id = ANY($3)
             UNION ALL
             SELECT phone FROM contacts WHERE application_id = $1 AND last_inbound_at > $2
               AND phone = ANY($3)",
        )
        .bind(req.application_id.as_str())
        .bind(req.now - SERVICE_WINDOW.whole_milliseconds() as i64)
        .bind(&contacts)
        .fetch_all(&mut **tx)
        .await?;
        facts.in_window.extend(in_window);
        let rows = sqlx::query(
            "SELECT contact, last_at FROM quota_reach WHERE scope_key = $1 AND contact = ANY($2)",
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
        tx: &mut Transaction<'static, Postgres>,
        req: &QuotaBatch<'_>,
        reserve: &[usize],
    ) -> Result<()> {
        let who: Vec<&str> = reserve.iter().map(|&i| req.items[i].contact).collect();
        let ids: Vec<&str> = reserve
            .iter()
            .map(|&i| req.items[i].message_id.as_str())
            .collect();
        sqlx::query(
                "INSERT INTO quota_reach (scope_key, contact, last_at, reserved_by)
                 SELECT $1, v.contact, $2, v.id FROM unnest($3::text[], $4::text[]) AS v(contact, id)
                 ON CONFLICT (scope_key, contact) DO UPDATE SET last_at = excluded.last_at, reserved_by = excluded.reserved_by",
            )
            .bind(req.scope_key)
            .bind(req.now)
            .bind(who)
            .bind(ids)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Lifts the quota/window hold of the messages let through.
    pub(crate) async fn lift_quota_holds(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        ids: &[&str],
    ) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET hold_reason = NULL
                 WHERE id = ANY($1) AND hold_reason IN ('quota', 'window')",
        )
        .bind(ids)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
