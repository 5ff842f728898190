//! `CampaignStore`, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`, whose `Backend`, `DbRow` and bind helpers it uses). What differs stays in
//! `sqlite_campaigns.rs` / `postgres_campaigns.rs` as inherent methods called from here: the
//! planner's chunk commit, the quota gate's lock, contact reads and writes, and the statistics
//! (trigger-kept counters on SQLite, grouped queries on PostgreSQL).

use std::borrow::Cow;

use async_trait::async_trait;
use parley_domain::quota::{QUOTA_WINDOW_MS, Reach};
use parley_domain::{
    ApplicationId, CampaignId, CampaignKind, CampaignState, MessageId, PhoneNumberId,
};
use sqlx::Row;

use super::{
    Backend, DbRow, Tx, audience_from_row, confirm_quota_rows, parse_id, record_reaches_in, text,
};
use crate::campaigns::*;
use crate::{Millis, Result, corrupt};

/// This backend's `sqlx::Database`.
type Db = <DbRow as Row>::Database;

/// An application's draft campaigns, counted (the early check and the cap in the write).
const COUNT_DRAFTS: &str =
    "SELECT COUNT(*) FROM campaigns WHERE application_id = $1 AND state = 'draft'";

/// List entries per multi-row INSERT (4 binds each).
const LIST_INSERT_CHUNK: usize = 1_000;

/// A campaign's JSON documents (`variables`, `audience`, `send_window`) are TEXT columns on
/// both backends.
fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| corrupt("serialize", e))
}

/// A JSON document kept in a TEXT column.
fn text_json(row: &DbRow, col: &str) -> Result<serde_json::Value> {
    let s: String = row.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| corrupt(col, e))
}

fn campaign_from_row(row: &DbRow) -> Result<CampaignRecord> {
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    let window: Option<String> = row.try_get("send_window")?;
    let recipients: i64 = row.try_get("recipients")?;
    Ok(CampaignRecord {
        id: parse_id(row, "id", CampaignId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        name: row.try_get("name")?,
        phone_number_id: parse_id(row, "phone_number_id", PhoneNumberId::parse)?,
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
        marketing_ttl_seconds: row.try_get("marketing_ttl_seconds")?,
        state: CampaignState::parse(&state).ok_or_else(|| corrupt("campaign state", &state))?,
        state_reason: row.try_get("state_reason")?,
        planner_cursor: row.try_get("planner_cursor")?,
        // BOOLEAN on PostgreSQL, INTEGER 0/1 on SQLite: both decode as `bool`.
        planned: row.try_get("planned")?,
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

/// Contacts counted in the scope since `since` (the gate's `used`).
async fn quota_used<'e>(
    db: impl sqlx::Executor<'e, Database = Db>,
    scope_key: &str,
    since: Millis,
) -> Result<u64> {
    let used: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM quota_reach WHERE scope_key = $1 AND last_at > $2",
    )
    .bind(scope_key)
    .bind(since)
    .fetch_one(db)
    .await?;
    Ok(u64::try_from(used).unwrap_or(0))
}

/// Every last reach counted in the scope since `since`, oldest first.
async fn quota_active_since<'e>(
    db: impl sqlx::Executor<'e, Database = Db>,
    scope_key: &str,
    since: Millis,
) -> Result<Vec<Millis>> {
    Ok(sqlx::query_scalar(
        "SELECT last_at FROM quota_reach WHERE scope_key = $1 AND last_at > $2 ORDER BY last_at",
    )
    .bind(scope_key)
    .bind(since)
    .fetch_all(db)
    .await?)
}

impl Backend {
    /// Puts a queued (or claimed) message back to wait until `until` for `reason` (`quota`,
    /// `window`); the wait is not counted as an attempt.
    async fn hold_message(
        &self,
        id: &MessageId,
        reason: &str,
        until: Millis,
        now: Millis,
    ) -> Result<()> {
        // `CASE` rather than MAX (SQLite) / GREATEST (PostgreSQL): the same on both.
        sqlx::query(
            "UPDATE messages SET state = 'queued', lease_until = NULL, next_attempt_at = $1, hold_reason = $2,
               attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $3
             WHERE id = $4 AND state IN ('queued', 'sending')",
        )
        .bind(until)
        .bind(reason)
        .bind(now)
        .bind(id.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }
}

#[async_trait]
impl CampaignStore for Backend {
    async fn count_draft_campaigns(&self, app: &ApplicationId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(COUNT_DRAFTS)
            .bind(app.as_str())
            .fetch_one(self.reader())
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn create_campaign(
        &self,
        c: &CampaignRecord,
        list: &[ListEntry],
        max_drafts: u64,
    ) -> Result<bool> {
        let mut tx = self.tx().await?;
        if !super::caps::below_cap(
            &mut tx,
            "draft_campaigns",
            c.application_id.as_str(),
            max_drafts,
            COUNT_DRAFTS,
            None,
        )
        .await?
        {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO campaigns (id, application_id, name, phone_number_id, template_name, template_language,
               variables, audience, audience_filter, kind, scheduled_at, send_window, state, state_reason,
               planner_cursor, planned, recipients, created_at, updated_at, started_at, finished_at,
               marketing_ttl_seconds)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
        )
        .bind(c.id.as_str())
        .bind(c.application_id.as_str())
        .bind(&c.name)
        .bind(c.phone_number_id.as_str())
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
        .bind(c.marketing_ttl_seconds)
        .execute(&mut *tx)
        .await?;
        insert_list_entries(&mut tx, &c.id, list).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn campaign(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
    ) -> Result<Option<CampaignRecord>> {
        let row = sqlx::query("SELECT * FROM campaigns WHERE application_id = $1 AND id = $2")
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(self.writer())
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
        .fetch_all(self.reader())
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
             WHERE id = $8 AND state IN ({})
             RETURNING application_id, name",
            states_list(from)
        );
        let mut tx = self.tx().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(reason)
            .bind(now)
            .bind(to.as_str())
            .bind(now)
            .bind(to.as_str())
            .bind(now)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        // `campaign.completed` for the business's systems, committed with the change.
        if let (Some(row), CampaignState::Completed) = (&row, to) {
            let app = parse_id(row, "application_id", ApplicationId::parse)?;
            let name: String = row.try_get("name")?;
            let events = crate::events::campaign_completed_event(&app, id, &name, now);
            super::insert_events_tx(&mut tx, &events).await?;
        }
        tx.commit().await?;
        Ok(row.is_some())
    }

    async fn complete_campaign_if_done(&self, id: &CampaignId, now: Millis) -> Result<bool> {
        let mut tx = self.tx().await?;
        // The campaign row's lock first (a write: PostgreSQL's row lock, SQLite's write
        // lock); the messages are read after it, each statement with a fresh snapshot.
        let running = sqlx::query(
            "UPDATE campaigns SET updated_at = updated_at WHERE id = $1 AND state = 'running'",
        )
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if running == 0 {
            return Ok(false);
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM messages WHERE campaign_id = $1 AND state IN ('queued', 'sending'))
                  OR EXISTS (SELECT 1 FROM messages WHERE campaign_id = $1 AND state = 'accepted' AND meta_status = $2)
               THEN 1 ELSE 0 END AS BIGINT)",
        )
        .bind(id.as_str())
        .bind(parley_domain::consent::HELD_FOR_QUALITY_ASSESSMENT)
        .fetch_one(&mut *tx)
        .await?;
        if open > 0 {
            return Ok(false);
        }
        let row = sqlx::query(
            "UPDATE campaigns SET state = 'completed', state_reason = NULL, updated_at = $1, finished_at = $1
             WHERE id = $2 AND state = 'running'
             RETURNING application_id, name",
        )
        .bind(now)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let app = parse_id(&row, "application_id", ApplicationId::parse)?;
        let name: String = row.try_get("name")?;
        let events = crate::events::campaign_completed_event(&app, id, &name, now);
        super::insert_events_tx(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn campaigns_to_work(&self, now: Millis) -> Result<Vec<CampaignRecord>> {
        // FALSE/TRUE are 0/1 on SQLite: the same plan as `planned = 0` (index on state).
        let rows = sqlx::query(
            "SELECT * FROM campaigns WHERE (state = 'running' AND planned = FALSE)
               OR (state = 'scheduled' AND COALESCE(scheduled_at, 0) <= $1) ORDER BY id",
        )
        .bind(now)
        .fetch_all(self.writer())
        .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    async fn running_planned_campaigns(&self) -> Result<Vec<CampaignRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM campaigns WHERE state = 'running' AND planned = TRUE ORDER BY id",
        )
        .fetch_all(self.writer())
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
        self.commit_planner_chunk(id, expected_cursor, messages, new_cursor, done, now)
            .await
    }

    async fn campaign_open_messages(&self, id: &CampaignId) -> Result<u64> {
        self.open_message_count(id).await
    }

    async fn hold_campaign_messages(&self, id: &CampaignId, until: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET next_attempt_at = $1 WHERE campaign_id = $2 AND state = 'queued'",
        )
        .bind(until)
        .bind(id.as_str())
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected())
    }

    async fn release_campaign_messages(&self, id: &CampaignId, now: Millis) -> Result<u64> {
        // The same statement as a hold: every queued message is due at `now`.
        self.hold_campaign_messages(id, now).await
    }

    async fn cancel_campaign_messages(&self, id: &CampaignId, now: Millis) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET state = 'skipped', hold_reason = 'cancelled',
               error_message = 'the campaign was cancelled before this message was sent', updated_at = $1
             WHERE campaign_id = $2 AND state = 'queued'",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected())
    }

    async fn pause_campaigns_of_numbers(
        &self,
        phone_number_ids: &[PhoneNumberId],
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
            .bind(pn.as_str())
            .fetch_all(self.writer())
            .await?;
            for row in rows {
                paused.push(parse_id(&row, "id", CampaignId::parse)?);
            }
        }
        Ok(paused)
    }

    async fn campaign_counts(&self, id: &CampaignId) -> Result<CampaignCounts> {
        self.message_counts(id).await
    }

    async fn message_campaign(&self, id: &MessageId) -> Result<Option<CampaignId>> {
        let v: Option<Option<String>> =
            sqlx::query_scalar("SELECT campaign_id FROM messages WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(self.reader())
                .await?;
        v.flatten()
            .map(|s| CampaignId::parse(&s).map_err(|e| corrupt("campaign_id", e)))
            .transpose()
    }

    async fn reserve_quota_batch(&self, req: &QuotaBatch<'_>) -> Result<Vec<QuotaAnswer>> {
        if req.items.is_empty() {
            return Ok(Vec::new());
        }
        // The facts are read with the contacts as bound (U+0000 replaced on PostgreSQL);
        // decide on those too.
        let contacts: Vec<Cow<'_, str>> = req.items.iter().map(|i| text(i.contact)).collect();
        let items: Vec<QuotaItem<'_>> = req
            .items
            .iter()
            .zip(&contacts)
            .map(|(i, c)| QuotaItem {
                contact: c.as_ref(),
                message_id: i.message_id,
            })
            .collect();
        let req = &QuotaBatch {
            items: &items,
            ..req.clone()
        };
        let mut tx = self.quota_gate_tx(req.scope_key).await?;
        let mut facts = self.quota_reach_facts(&mut tx, req).await?;
        let since = req.now - QUOTA_WINDOW_MS;
        if req.limit.per_day().is_some() {
            facts.used = Some(quota_used(&mut *tx, req.scope_key, since).await?);
        }
        if facts.needs_active(req) {
            facts.active = Some(quota_active_since(&mut *tx, req.scope_key, since).await?);
        }
        let decisions = decide_batch(req, facts);
        if !decisions.reserve.is_empty() {
            self.reserve_quota_slots(&mut tx, req, &decisions.reserve)
                .await?;
        }
        if !decisions.go.is_empty() {
            let ids: Vec<&str> = decisions
                .go
                .iter()
                .map(|&i| items[i].message_id.as_str())
                .collect();
            self.lift_quota_holds(&mut tx, &ids).await?;
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
        let row = [(scope_key, contact, message_id.as_str(), now)];
        confirm_quota_rows(&mut tx, &row).await?;
        record_reaches_in(&mut tx, &row).await?;
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
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn quota_active(&self, scope_key: &str, now: Millis) -> Result<Vec<Millis>> {
        quota_active_since(self.reader(), scope_key, now - QUOTA_WINDOW_MS).await
    }

    async fn release_quota_waits(
        &self,
        phone_number_id: &PhoneNumberId,
        now: Millis,
    ) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE messages SET next_attempt_at = $1
             WHERE phone_number_id = $2 AND state = 'queued' AND hold_reason = 'quota' AND next_attempt_at > $3",
        )
        .bind(now)
        .bind(phone_number_id.as_str())
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(r.rows_affected())
    }

    async fn wait_for_quota(&self, id: &MessageId, until: Millis, now: Millis) -> Result<()> {
        self.hold_message(id, "quota", until, now).await
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
        .fetch_all(self.reader())
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
                        Some(_) => Some(audience_from_row(row)?),
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

/// Inserts an uploaded list's entries, positions from 1, a chunk a statement.
async fn insert_list_entries(tx: &mut Tx, id: &CampaignId, entries: &[ListEntry]) -> Result<()> {
    for (n, chunk) in entries.chunks(LIST_INSERT_CHUNK).enumerate() {
        let first = (n * LIST_INSERT_CHUNK) as i64 + 1;
        let mut qb = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO campaign_list_entries (campaign_id, position, phone, skip) ",
        );
        qb.push_values(chunk.iter().enumerate(), |mut b, (i, e)| {
            b.push_bind(id.as_str())
                .push_bind(first + i as i64)
                .push_bind(e.phone.as_str())
                .push_bind(e.skip.as_deref());
        });
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}
