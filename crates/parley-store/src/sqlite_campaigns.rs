//! `CampaignStore` on SQLite. Writes go through the one writer connection (`BEGIN IMMEDIATE`
//! for read-then-write), which also serializes the quota gate per scope.

use async_trait::async_trait;
use parley_domain::quota::{QUOTA_WINDOW_MS, Reach};
use parley_domain::{ApplicationId, CampaignId, MessageId, SERVICE_WINDOW};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::campaigns::*;
use crate::sqlite::{confirm_quota_rows, json_col, json_strings, parse_id, to_json};
use crate::{MessageContent, Millis, Result, SqliteStore, corrupt};

/// Planned messages per `INSERT` (19 values each, under SQLite's 32,766 parameters).
const PLANNED_INSERT_CHUNK: usize = 500;

/// List entries per multi-row INSERT (4 binds each).
const LIST_INSERT_CHUNK: usize = 1_000;

fn campaign_from_row(row: &SqliteRow) -> Result<CampaignRecord> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let window: Option<String> = row.try_get("send_window")?;
    let recipients: i64 = row.try_get("recipients")?;
    let planned: i64 = row.try_get("planned")?;
    Ok(CampaignRecord {
        id: parse_id(row, "id", CampaignId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        name: row.try_get("name")?,
        phone_number_id: row.try_get("phone_number_id")?,
        template_name: row.try_get("template_name")?,
        template_language: row.try_get("template_language")?,
        variables: json_col(row, "variables")?,
        audience: json_col(row, "audience")?,
        audience_filter: row.try_get("audience_filter")?,
        kind: CampaignKind::parse(&kind).ok_or_else(|| corrupt("campaign kind", &kind))?,
        scheduled_at: row.try_get("scheduled_at")?,
        send_window: window
            .map(|w| serde_json::from_str(&w).map_err(|e| corrupt("send_window", e)))
            .transpose()?,
        state: CampaignState::parse(&state).ok_or_else(|| corrupt("campaign state", &state))?,
        state_reason: row.try_get("state_reason")?,
        planner_cursor: row.try_get("planner_cursor")?,
        planned: planned != 0,
        recipients: u64::try_from(recipients).unwrap_or(0),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn states_list(states: &[CampaignState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SqliteStore {
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
            "UPDATE messages SET state = 'queued', lease_until = NULL, next_attempt_at = ?, hold_reason = ?,
               attempts = MAX(attempts - 1, 0), updated_at = ?
             WHERE id = ? AND state IN ('queued', 'sending')",
        )
        .bind(until)
        .bind(reason)
        .bind(now)
        .bind(id.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl CampaignStore for SqliteStore {
    async fn create_campaign(&self, c: &CampaignRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO campaigns (id, application_id, name, phone_number_id, template_name, template_language,
               variables, audience, audience_filter, kind, scheduled_at, send_window, state, state_reason,
               planner_cursor, planned, recipients, created_at, updated_at, started_at, finished_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(i64::from(c.planned))
        .bind(i64::try_from(c.recipients).unwrap_or(i64::MAX))
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.started_at)
        .bind(c.finished_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn campaign(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<Option<CampaignRecord>> {
        let row = sqlx::query("SELECT * FROM campaigns WHERE application_id = ? AND id = ?")
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.writer)
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
            "SELECT * FROM campaigns WHERE application_id = ? AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(app.as_str())
        .bind(after.map(|a| a.as_str()))
        .bind(after.map(|a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
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
            "UPDATE campaigns SET state = ?, state_reason = ?, updated_at = ?,
               started_at = CASE WHEN ? = 'running' THEN COALESCE(started_at, ?) ELSE started_at END,
               finished_at = CASE WHEN ? IN ('completed', 'cancelled') THEN ? ELSE finished_at END
             WHERE id = ? AND state IN ({})",
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
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn campaigns_to_work(&self, now: Millis) -> Result<Vec<CampaignRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM campaigns WHERE (state = 'running' AND planned = 0)
               OR (state = 'scheduled' AND COALESCE(scheduled_at, 0) <= ?) ORDER BY id",
        )
        .bind(now)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    async fn running_planned_campaigns(&self) -> Result<Vec<CampaignRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM campaigns WHERE state = 'running' AND planned = 1 ORDER BY id",
        )
        .fetch_all(&self.writer)
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
        // Multi-row inserts: one statement per 500 messages, not one each.
        for chunk in messages.chunks(PLANNED_INSERT_CHUNK) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO messages (id, application_id, phone_number_id, contact_id, to_phone, kind, template_name,
                   template_language, content, reply_to, idempotency_key, state, next_attempt_at, queued_at, updated_at,
                   campaign_id, hold_reason, error_message, send_window) ",
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
                    MessageContent::Text { .. } => (None, None),
                };
                let state = if p.skip.is_some() {
                    "skipped"
                } else {
                    "queued"
                };
                let window_hold = p.window_opens_at.filter(|_| p.skip.is_none());
                b.push_bind(m.id.as_str().to_owned())
                    .push_bind(m.application_id.as_str().to_owned())
                    .push_bind(m.phone_number_id.clone())
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
                    .push_bind(p.send_window.clone());
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn campaign_open_messages(&self, id: &CampaignId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(n), 0) FROM campaign_counts WHERE campaign_id = ? AND state IN ('queued', 'sending')",
        )
        .bind(id.as_str())
        .fetch_one(&self.writer)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn hold_campaign_messages(&self, id: &CampaignId, until: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET next_attempt_at = ? WHERE campaign_id = ? AND state = 'queued'",
        )
        .bind(until)
        .bind(id.as_str())
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected())
    }

    async fn release_campaign_messages(&self, id: &CampaignId, now: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET next_attempt_at = ? WHERE campaign_id = ? AND state = 'queued'",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected())
    }

    async fn cancel_campaign_messages(&self, id: &CampaignId, now: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET state = 'skipped', hold_reason = 'cancelled',
               error_message = 'the campaign was cancelled before this message was sent', updated_at = ?
             WHERE campaign_id = ? AND state = 'queued'",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(&self.writer)
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
                "UPDATE campaigns SET state = 'paused', state_reason = ?, updated_at = ?
                 WHERE phone_number_id = ? AND state = 'running' RETURNING id",
            )
            .bind(reason)
            .bind(now)
            .bind(pn)
            .fetch_all(&self.writer)
            .await?;
            for row in rows {
                paused.push(parse_id(&row, "id", CampaignId::parse)?);
            }
        }
        Ok(paused)
    }

    async fn campaign_counts(&self, id: &CampaignId) -> Result<CampaignCounts> {
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

    async fn message_campaign(&self, id: &MessageId) -> Result<Option<CampaignId>> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT campaign_id FROM messages WHERE id = ?")
                .bind(id.as_str())
                .fetch_optional(&self.reader)
                .await?;
        v.flatten()
            .map(|s| CampaignId::parse(&s).map_err(|e| corrupt("campaign_id", e)))
            .transpose()
    }

    async fn reserve_quota_batch(&self, req: &QuotaBatch<'_>) -> Result<Vec<QuotaAnswer>> {
        if req.items.is_empty() {
            return Ok(Vec::new());
        }
        let contacts = json_strings(req.items.iter().map(|i| i.contact));
        let mut tx = self.tx().await?;
        let mut facts = QuotaFacts::default();
        let in_window: Vec<String> = sqlx::query_scalar(
            "SELECT phone FROM contacts WHERE application_id = ? AND last_inbound_at > ?
               AND phone IN (SELECT value FROM json_each(?))",
        )
        .bind(req.application_id.as_str())
        .bind(req.now - SERVICE_WINDOW.whole_milliseconds() as i64)
        .bind(&contacts)
        .fetch_all(&mut *tx)
        .await?;
        facts.in_window.extend(in_window);
        let rows = sqlx::query(
            "SELECT contact, last_at FROM quota_reach WHERE scope_key = ?
               AND contact IN (SELECT value FROM json_each(?))",
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
                "SELECT COUNT(*) FROM quota_reach WHERE scope_key = ? AND last_at > ?",
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
                    "SELECT last_at FROM quota_reach WHERE scope_key = ? AND last_at > ? ORDER BY last_at",
                )
                .bind(req.scope_key)
                .bind(since)
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        let decisions = decide_batch(req, facts);
        if !decisions.reserve.is_empty() {
            let rows = serde_json::Value::Array(
                decisions
                    .reserve
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
            .execute(&mut *tx)
            .await?;
        }
        if !decisions.go.is_empty() {
            sqlx::query(
                "UPDATE messages SET hold_reason = NULL
                 WHERE id IN (SELECT value FROM json_each(?)) AND hold_reason IN ('quota', 'window')",
            )
            .bind(json_strings(
                decisions.go.iter().map(|&i| req.items[i].message_id.as_str()),
            ))
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
            "DELETE FROM quota_reach WHERE scope_key = ? AND contact = ? AND reserved_by = ?",
        )
        .bind(scope_key)
        .bind(contact)
        .bind(message_id.as_str())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn quota_active(&self, scope_key: &str, now: Millis) -> Result<Vec<Millis>> {
        Ok(sqlx::query_scalar(
            "SELECT last_at FROM quota_reach WHERE scope_key = ? AND last_at > ? ORDER BY last_at",
        )
        .bind(scope_key)
        .bind(now - QUOTA_WINDOW_MS)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn release_quota_waits(&self, phone_number_id: &str, now: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET next_attempt_at = ?
             WHERE phone_number_id = ? AND state = 'queued' AND hold_reason = 'quota' AND next_attempt_at > ?",
        )
        .bind(now)
        .bind(phone_number_id)
        .bind(now)
        .execute(&self.writer)
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
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
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
             LEFT JOIN contacts c ON c.application_id = ? AND c.phone = l.phone AND l.skip IS NULL
             WHERE l.campaign_id = ? AND l.position > ? ORDER BY l.position LIMIT ?",
        )
        .bind(app.as_str())
        .bind(id.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
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
                        Some(_) => Some(crate::sqlite_audience::audience_from_row(row)?),
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
