//! `CampaignStore` on PostgreSQL. The quota gate takes a transaction-scoped advisory lock on
//! the scope, so nodes sending for one portfolio never hand out the same slot twice; planner
//! chunks and state changes are conditional UPDATEs.

use async_trait::async_trait;
use parley_domain::quota::{QUOTA_WINDOW_MS, Reach};
use parley_domain::{ApplicationId, CampaignId, MessageId, SERVICE_WINDOW};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::campaigns::*;
use crate::postgres::{confirm_quota_rows, jsonb, parse_id, pg_text};
use crate::{MessageContent, Millis, PostgresStore, Result, corrupt};

const HOUR_MS: i64 = 60 * 60 * 1000;
/// List entries per multi-row INSERT (4 binds each).
const LIST_INSERT_CHUNK: usize = 1_000;

fn campaign_from_row(row: &PgRow) -> Result<CampaignRecord> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let window: Option<String> = row.try_get("send_window")?;
    let recipients: i64 = row.try_get("recipients")?;
    let planned: bool = row.try_get("planned")?;
    Ok(CampaignRecord {
        id: parse_id(row, "id", CampaignId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        name: row.try_get("name")?,
        phone_number_id: row.try_get("phone_number_id")?,
        template_name: row.try_get("template_name")?,
        template_language: row.try_get("template_language")?,
        variables: text_json(row, "variables")?,
        audience: text_json(row, "audience")?,
        audience_filter: row.try_get("audience_filter")?,
        kind: CampaignKind::parse(&kind).ok_or_else(|| corrupt("campaign kind", &kind))?,
        scheduled_at: row.try_get("scheduled_at")?,
        send_window: window
            .map(|w| serde_json::from_str(&w).map_err(|e| corrupt("send_window", e)))
            .transpose()?,
        state: CampaignState::parse(&state).ok_or_else(|| corrupt("campaign state", &state))?,
        state_reason: row.try_get("state_reason")?,
        planner_cursor: row.try_get("planner_cursor")?,
        planned,
        recipients: u64::try_from(recipients).unwrap_or(0),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| corrupt("serialize", e))
}

/// A JSON document kept in a TEXT column.
fn text_json(row: &PgRow, col: &str) -> Result<serde_json::Value> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| corrupt(col, e))
}

fn states_list(states: &[CampaignState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PostgresStore {
    /// Puts a queued (or claimed) message back to wait until `until` for `reason` (`quota`,
    /// `window`); the wait is not counted as an attempt.
    async fn hold_message(
        &self,
        id: &MessageId,
        reason: &str,
        until: Millis,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET state = 'queued', lease_until = NULL, next_attempt_at = $1, hold_reason = $2,
               attempts = GREATEST(attempts - 1, 0), updated_at = $3
             WHERE id = $4 AND state IN ('queued', 'sending')",
        )
        .bind(until)
        .bind(reason)
        .bind(now)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl CampaignStore for PostgresStore {
    async fn create_campaign(&self, c: &CampaignRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO campaigns (id, application_id, name, phone_number_id, template_name, template_language,
               variables, audience, audience_filter, kind, scheduled_at, send_window, state, state_reason,
               planner_cursor, planned, recipients, created_at, updated_at, started_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
        )
        .bind(c.id.as_str())
        .bind(c.application_id.as_str())
        .bind(&c.name)
        .bind(&c.phone_number_id)
        .bind(&c.template_name)
        .bind(&c.template_language)
        .bind(to_json(&c.variables)?)
        .bind(to_json(&c.audience)?)
        .bind(&c.audience_filter)
        .bind(c.kind.as_str())
        .bind(c.scheduled_at)
        .bind(c.send_window.as_ref().map(to_json).transpose()?)
        .bind(c.state.as_str())
        .bind(&c.state_reason)
        .bind(&c.planner_cursor)
        .bind(c.planned)
        .bind(i64::try_from(c.recipients).unwrap_or(i64::MAX))
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.started_at)
        .bind(c.finished_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn campaign(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<Option<CampaignRecord>> {
        let row = sqlx::query("SELECT * FROM campaigns WHERE application_id = $1 AND id = $2")
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(campaign_from_row).transpose()
    }

    async fn campaigns(
        &self,
        app: &ApplicationId,
        after: Option<&CampaignId>,
        limit: u32,
    ) -> Result<Vec<CampaignRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM campaigns WHERE application_id = $1 AND ($2 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(app.as_str())
        .bind(after.map(|a| a.as_str()))
        .bind(after.map(|a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    async fn transition_campaign(
        &self,
        id: &CampaignId,
        from: &[CampaignState],
        to: CampaignState,
        reason: Option<&str>,
        now: Millis,
    ) -> Result<bool> {
        // The states are our own constants, never user input.
        let sql = format!(
            "UPDATE campaigns SET state = $1, state_reason = $2, updated_at = $3,
               started_at = CASE WHEN $4 = 'running' THEN COALESCE(started_at, $5) ELSE started_at END,
               finished_at = CASE WHEN $6 IN ('completed', 'cancelled') THEN $7 ELSE finished_at END
             WHERE id = $8 AND state IN ({})",
            states_list(from)
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(reason)
            .bind(now)
            .bind(to.as_str())
            .bind(now)
            .bind(to.as_str())
            .bind(now)
            .bind(id.as_str())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn campaigns_to_work(&self, now: Millis) -> Result<Vec<CampaignRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM campaigns WHERE (state = 'running' AND planned = FALSE)
               OR (state = 'scheduled' AND COALESCE(scheduled_at, 0) <= $1) ORDER BY id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    async fn running_planned_campaigns(&self) -> Result<Vec<CampaignRecord>> {
        let rows =
            sqlx::query("SELECT * FROM campaigns WHERE state = 'running' AND planned ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    async fn add_planned_messages(
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
        for p in messages {
            let m = &p.message;
            let (name, language) = match &m.content {
                MessageContent::Template { template } => (
                    Some(template.name.as_str()),
                    Some(template.language.as_str()),
                ),
                MessageContent::Text { .. } => (None, None),
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
                   campaign_id, hold_reason, error_message, send_window)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, $10, $11, $12, $13, $14, $15, $16, $17)",
            )
            .bind(m.id.as_str())
            .bind(m.application_id.as_str())
            .bind(&m.phone_number_id)
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
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn campaign_open_messages(&self, id: &CampaignId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE campaign_id = $1 AND state IN ('queued', 'sending')",
        )
        .bind(id.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn hold_campaign_messages(&self, id: &CampaignId, until: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET next_attempt_at = $1 WHERE campaign_id = $2 AND state = 'queued'",
        )
        .bind(until)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn release_campaign_messages(&self, id: &CampaignId, now: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET next_attempt_at = $1 WHERE campaign_id = $2 AND state = 'queued'",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn cancel_campaign_messages(&self, id: &CampaignId, now: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET state = 'skipped', hold_reason = 'cancelled',
               error_message = 'the campaign was cancelled before this message was sent', updated_at = $1
             WHERE campaign_id = $2 AND state = 'queued'",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn pause_campaigns_of_numbers(
        &self,
        phone_number_ids: &[String],
        reason: &str,
        now: Millis,
    ) -> Result<Vec<CampaignId>> {
        let mut paused = Vec::new();
        for pn in phone_number_ids {
            let rows = sqlx::query(
                "UPDATE campaigns SET state = 'paused', state_reason = $1, updated_at = $2
                 WHERE phone_number_id = $3 AND state = 'running' RETURNING id",
            )
            .bind(reason)
            .bind(now)
            .bind(pn)
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                paused.push(parse_id(&row, "id", CampaignId::parse)?);
            }
        }
        Ok(paused)
    }

    async fn campaign_counts(&self, id: &CampaignId) -> Result<CampaignCounts> {
        let mut counts = CampaignCounts::default();
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM messages WHERE campaign_id = $1 GROUP BY state",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
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
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        counts.waiting_for_quota = u64::try_from(n).unwrap_or(0);
        counts.next_slot_at = row.try_get("next")?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS next FROM messages
             WHERE campaign_id = $1 AND state = 'queued' AND hold_reason = 'window'",
        )
        .bind(id.as_str())
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        counts.waiting_for_window = u64::try_from(n).unwrap_or(0);
        counts.next_window_at = row.try_get("next")?;
        let rows = sqlx::query(
            "SELECT COALESCE(CAST(error_code AS TEXT), 'unknown') AS k, COUNT(*) AS n FROM messages
             WHERE campaign_id = $1 AND state = 'failed' GROUP BY k",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
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
        .fetch_all(&self.pool)
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
        .fetch_one(&self.pool)
        .await?;
        counts.replied = u64::try_from(replied).unwrap_or(0);
        let rows = sqlx::query(
            "SELECT (COALESCE(sent_at, delivered_at, read_at) / $1) * $2 AS h, COUNT(*) AS n FROM messages
             WHERE campaign_id = $3 AND COALESCE(sent_at, delivered_at, read_at) IS NOT NULL GROUP BY h",
        )
        .bind(HOUR_MS)
        .bind(HOUR_MS)
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let n: i64 = r.try_get("n")?;
            counts
                .sent_per_hour
                .insert(r.try_get("h")?, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    async fn message_campaign(&self, id: &MessageId) -> Result<Option<CampaignId>> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT campaign_id FROM messages WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        v.flatten()
            .map(|s| CampaignId::parse(&s).map_err(|e| corrupt("campaign_id", e)))
            .transpose()
    }

    async fn reserve_quota_batch(&self, req: &QuotaBatch<'_>) -> Result<Vec<QuotaAnswer>> {
        if req.items.is_empty() {
            return Ok(Vec::new());
        }
        let contacts: Vec<String> = req
            .items
            .iter()
            .map(|i| pg_text(i.contact).into_owned())
            .collect();
        let mut tx = self.tx().await?;
        // One gate at a time per scope, on every node.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(req.scope_key)
            .execute(&mut *tx)
            .await?;
        let mut facts = QuotaFacts::default();
        let in_window: Vec<String> = sqlx::query_scalar(
            "SELECT phone FROM contacts WHERE application_id = $1 AND last_inbound_at > $2
               AND phone = ANY($3)",
        )
        .bind(req.application_id.as_str())
        .bind(req.now - SERVICE_WINDOW.whole_milliseconds() as i64)
        .bind(&contacts)
        .fetch_all(&mut *tx)
        .await?;
        facts.in_window.extend(in_window);
        let rows = sqlx::query(
            "SELECT contact, last_at FROM quota_reach WHERE scope_key = $1 AND contact = ANY($2)",
        )
        .bind(req.scope_key)
        .bind(&contacts)
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            facts
                .last_at
                .insert(r.try_get("contact")?, r.try_get("last_at")?);
        }
        let since = req.now - QUOTA_WINDOW_MS;
        if req.limit.per_day().is_some() {
            let used: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM quota_reach WHERE scope_key = $1 AND last_at > $2",
            )
            .bind(req.scope_key)
            .bind(since)
            .fetch_one(&mut *tx)
            .await?;
            facts.used = Some(u64::try_from(used).unwrap_or(0));
        }
        if facts.needs_active(req) {
            facts.active = Some(
                sqlx::query_scalar(
                    "SELECT last_at FROM quota_reach WHERE scope_key = $1 AND last_at > $2 ORDER BY last_at",
                )
                .bind(req.scope_key)
                .bind(since)
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        // The facts were read with the sanitized contacts; decide on those too.
        let items: Vec<QuotaItem<'_>> = req
            .items
            .iter()
            .zip(&contacts)
            .map(|(i, c)| QuotaItem {
                contact: c.as_str(),
                message_id: i.message_id,
            })
            .collect();
        let sanitized = QuotaBatch {
            items: &items,
            ..req.clone()
        };
        let decisions = decide_batch(&sanitized, facts);
        if !decisions.reserve.is_empty() {
            let who: Vec<&str> = decisions
                .reserve
                .iter()
                .map(|&i| items[i].contact)
                .collect();
            let ids: Vec<&str> = decisions
                .reserve
                .iter()
                .map(|&i| items[i].message_id.as_str())
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
            .execute(&mut *tx)
            .await?;
        }
        if !decisions.go.is_empty() {
            let ids: Vec<&str> = decisions
                .go
                .iter()
                .map(|&i| items[i].message_id.as_str())
                .collect();
            sqlx::query(
                "UPDATE messages SET hold_reason = NULL
                 WHERE id = ANY($1) AND hold_reason IN ('quota', 'window')",
            )
            .bind(ids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(decisions.answers)
    }

    async fn confirm_quota(
        &self,
        scope_key: &str,
        contact: &str,
        message_id: &MessageId,
        reach: Reach,
        now: Millis,
    ) -> Result<()> {
        if reach == Reach::InServiceWindow {
            return Ok(());
        }
        let mut tx = self.tx().await?;
        confirm_quota_rows(&mut tx, &[(scope_key, contact, message_id.as_str(), now)]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_quota(
        &self,
        scope_key: &str,
        contact: &str,
        message_id: &MessageId,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM quota_reach WHERE scope_key = $1 AND contact = $2 AND reserved_by = $3",
        )
        .bind(scope_key)
        .bind(contact)
        .bind(message_id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn quota_active(&self, scope_key: &str, now: Millis) -> Result<Vec<Millis>> {
        Ok(sqlx::query_scalar(
            "SELECT last_at FROM quota_reach WHERE scope_key = $1 AND last_at > $2 ORDER BY last_at",
        )
        .bind(scope_key)
        .bind(now - QUOTA_WINDOW_MS)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn release_quota_waits(&self, phone_number_id: &str, now: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET next_attempt_at = $1
             WHERE phone_number_id = $2 AND state = 'queued' AND hold_reason = 'quota' AND next_attempt_at > $3",
        )
        .bind(now)
        .bind(phone_number_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn wait_for_quota(&self, id: &MessageId, until: Millis, now: Millis) -> Result<()> {
        self.hold_message(id, "quota", until, now).await
    }

    async fn add_campaign_list(&self, id: &CampaignId, entries: &[ListEntry]) -> Result<()> {
        let mut tx = self.tx().await?;
        for (n, chunk) in entries.chunks(LIST_INSERT_CHUNK).enumerate() {
            let first = (n * LIST_INSERT_CHUNK) as i64 + 1;
            let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO campaign_list_entries (campaign_id, position, phone, skip) ",
            );
            qb.push_values(chunk.iter().enumerate(), |mut b, (i, e)| {
                b.push_bind(id.as_str())
                    .push_bind(first + i as i64)
                    .push_bind(e.phone.as_str())
                    .push_bind(e.skip.as_deref());
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn campaign_list_page(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<ListRecipient>> {
        let rows = sqlx::query(
            "SELECT l.position AS list_position, l.phone AS list_phone, l.skip AS list_skip, c.*
             FROM campaign_list_entries l
             LEFT JOIN contacts c ON c.application_id = $1 AND c.phone = l.phone AND l.skip IS NULL
             WHERE l.campaign_id = $2 AND l.position > $3 ORDER BY l.position LIMIT $4",
        )
        .bind(app.as_str())
        .bind(id.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let contact_id: Option<String> = row.try_get("id")?;
                Ok(ListRecipient {
                    position: row.try_get("list_position")?,
                    entry: ListEntry {
                        phone: row.try_get("list_phone")?,
                        skip: row.try_get("list_skip")?,
                    },
                    contact: match contact_id {
                        Some(_) => Some(crate::postgres_audience::audience_from_row(row)?),
                        None => None,
                    },
                })
            })
            .collect()
    }

    async fn wait_for_window(&self, id: &MessageId, until: Millis, now: Millis) -> Result<()> {
        self.hold_message(id, "window", until, now).await
    }
}
