//! `ConsentStore`, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`). Plain statements only: nothing here differs between the dialects.

use std::collections::BTreeMap;

use async_trait::async_trait;
use parley_domain::consent::{CAPPED_BY_META, HELD_FOR_QUALITY_ASSESSMENT};
use parley_domain::{ApplicationId, CampaignId, MessageId, MessageState, PhoneNumberId, Wamid};
use sqlx::Row;

use super::{Backend, parse_id, parse_opt_id, text};
use crate::consent::*;
use crate::{Millis, Result, corrupt};

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl ConsentStore for Backend {
    async fn mark_meta_status(&self, id: &MessageId, status: &str) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET meta_status = $1 WHERE id = $2 AND state IN ('sending', 'accepted')",
        )
        .bind(text(status))
        .bind(id.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn message_meta(
        &self,
        app: &ApplicationId,
        ids: &[MessageId],
    ) -> Result<BTreeMap<MessageId, MessageMeta>> {
        let mut out = BTreeMap::new();
        for id in ids {
            let row = sqlx::query(
                "SELECT meta_status, pricing, pricing_category, capped_times FROM messages
                 WHERE id = $1 AND application_id = $2",
            )
            .bind(id.as_str())
            .bind(app.as_str())
            .fetch_optional(self.reader())
            .await?;
            let Some(row) = row else { continue };
            let pricing: Option<String> = row.try_get("pricing")?;
            out.insert(
                id.clone(),
                MessageMeta {
                    meta_status: row.try_get("meta_status")?,
                    pricing: pricing
                        .map(|p| serde_json::from_str(&p).map_err(|e| corrupt("pricing", e)))
                        .transpose()?,
                    pricing_category: row.try_get("pricing_category")?,
                    capped_times: row.try_get("capped_times")?,
                },
            );
        }
        Ok(out)
    }

    async fn record_pricing(&self, updates: &[PricingUpdate]) -> Result<u64> {
        if updates.is_empty() {
            return Ok(0);
        }
        // One statement for the batch (the webhook processor passes a whole round's): each
        // message by its wamid, else by its id when no message has the wamid; the last update
        // of a wamid wins, as when they were written one by one.
        let mut last = std::collections::HashMap::new();
        for (i, u) in updates.iter().enumerate() {
            last.insert(u.wamid.as_str(), i);
        }
        let mut rows = Vec::with_capacity(last.len());
        for (i, u) in updates.iter().enumerate() {
            if last.get(u.wamid.as_str()) != Some(&i) {
                continue;
            }
            let pricing = serde_json::to_string(&u.pricing).map_err(|e| corrupt("pricing", e))?;
            rows.push(serde_json::json!({
                "w": u.wamid.as_str(),
                "id": u.message_id.as_ref().map(MessageId::as_str),
                "p": text(&pricing),
                "c": u.category.as_deref().map(text),
            }));
        }
        let json = serde_json::Value::Array(rows).to_string();
        self.record_pricing_json(&json).await
    }

    async fn message_ref(
        &self,
        wamid: &Wamid,
        id: Option<&MessageId>,
    ) -> Result<Option<MessageRef>> {
        let mut row = sqlx::query(
            "SELECT id, application_id, phone_number_id, to_phone, campaign_id, state, error_code, accepted_at, capped_times FROM messages WHERE wamid = $1",
        )
            .bind(wamid.as_str())
            .fetch_optional(self.writer())
            .await?;
        if row.is_none()
            && let Some(id) = id
        {
            row = sqlx::query(
                "SELECT id, application_id, phone_number_id, to_phone, campaign_id, state, error_code, accepted_at, capped_times FROM messages WHERE id = $1",
            )
                .bind(id.as_str())
                .fetch_optional(self.writer())
                .await?;
        }
        let Some(row) = row else { return Ok(None) };
        let state: String = row.try_get("state")?;
        Ok(Some(MessageRef {
            id: parse_id(&row, "id", MessageId::parse)?,
            application_id: parse_id(&row, "application_id", ApplicationId::parse)?,
            phone_number_id: parse_id(&row, "phone_number_id", PhoneNumberId::parse)?,
            to_phone: row.try_get("to_phone")?,
            campaign_id: parse_opt_id(&row, "campaign_id", CampaignId::parse)?,
            state: state
                .parse::<MessageState>()
                .map_err(|e| corrupt("state", e))?,
            error_code: row.try_get("error_code")?,
            accepted: row.try_get::<Option<i64>, _>("accepted_at")?.is_some(),
            capped_times: row.try_get("capped_times")?,
        }))
    }

    async fn requeue_capped(
        &self,
        id: &MessageId,
        until: Millis,
        limit: i64,
        now: Millis,
    ) -> Result<bool> {
        // The campaign row's lock first, as `complete_campaign_if_done` takes it: a completion
        // decided on this message's `failed` then waits for the requeue and sees it, or has
        // finished and is undone below.
        let mut tx = self.tx().await?;
        sqlx::query(
            "UPDATE campaigns SET updated_at = updated_at
             WHERE id = (SELECT campaign_id FROM messages WHERE id = $1)",
        )
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        // The wamid is let go: the next send gets a new one. `failed_at` too, so the state's
        // timestamps describe the send that counts.
        let n = sqlx::query(
            "UPDATE messages SET state = 'queued', wamid = NULL, lease_until = NULL, stale_since = NULL,
               next_attempt_at = $1, hold_reason = $2, capped_times = capped_times + 1,
               failed_at = NULL, accepted_at = NULL, meta_status = NULL, lane = NULL, lane_seq = NULL,
               updated_at = $3
             WHERE id = $4 AND state = 'failed' AND error_code = 131049 AND capped_times < $5
               AND accepted_at IS NOT NULL",
        )
        .bind(until)
        .bind(CAPPED_BY_META)
        .bind(now)
        .bind(id.as_str())
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            // The failure may have let the campaign complete (nothing was open) before the
            // message went back to the queue: it runs again until the message is done.
            sqlx::query(
                "UPDATE campaigns SET state = 'running', finished_at = NULL, updated_at = $1
                 WHERE id = (SELECT campaign_id FROM messages WHERE id = $2) AND state = 'completed'",
            )
            .bind(now)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn reschedule_capped(
        &self,
        id: &MessageId,
        until: Millis,
        error: (i64, &str),
        limit: i64,
        now: Millis,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE messages SET state = 'queued', lease_until = NULL, next_attempt_at = $1, hold_reason = $2,
               capped_times = capped_times + 1, error_code = $3, error_message = $4,
               lane = NULL, lane_seq = NULL, updated_at = $5
             WHERE id = $6 AND state IN ('queued', 'sending') AND capped_times < $7",
        )
        .bind(until)
        .bind(CAPPED_BY_META)
        .bind(error.0)
        .bind(text(error.1))
        .bind(now)
        .bind(id.as_str())
        .bind(limit)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn opted_out_sending(&self, phone_number_id: &PhoneNumberId) -> Result<Vec<MessageId>> {
        let rows = sqlx::query(
            "SELECT m.id FROM messages m
               JOIN campaigns c ON c.id = m.campaign_id AND c.kind = 'marketing'
               JOIN contacts ct ON ct.application_id = m.application_id AND ct.phone = m.to_phone
             WHERE m.phone_number_id = $1 AND m.state = 'sending' AND ct.subscription = 'opted_out'",
        )
        .bind(phone_number_id.as_str())
        .fetch_all(self.writer())
        .await?;
        rows.iter()
            .map(|r| parse_id(r, "id", MessageId::parse))
            .collect()
    }

    async fn skip_opted_out(&self, id: &MessageId, now: Millis) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET state = 'skipped', hold_reason = 'opted_out', lease_until = NULL,
               error_message = 'the contact opted out of marketing messages before this message was sent',
               updated_at = $1
             WHERE id = $2 AND state IN ('queued', 'sending')",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn pause_marketing_campaigns_of_numbers(
        &self,
        phone_number_ids: &[PhoneNumberId],
        reason: &str,
        now: Millis,
    ) -> Result<Vec<CampaignId>> {
        let mut paused = Vec::new();
        for pn in phone_number_ids {
            let rows = sqlx::query(
                "UPDATE campaigns SET state = 'paused', state_reason = $1, updated_at = $2
                 WHERE phone_number_id = $3 AND kind = 'marketing' AND state IN ('running', 'scheduled') RETURNING id",
            )
            .bind(text(reason))
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

    async fn campaign_meta_counts(&self, id: &CampaignId) -> Result<MetaCounts> {
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE campaign_id = $1 AND state = 'accepted' AND meta_status = $2",
        )
        .bind(id.as_str())
        .bind(HELD_FOR_QUALITY_ASSESSMENT)
        .fetch_one(self.reader())
        .await?;
        let capped: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE campaign_id = $1 AND state = 'queued' AND hold_reason = $2",
        )
        .bind(id.as_str())
        .bind(CAPPED_BY_META)
        .fetch_one(self.reader())
        .await?;
        Ok(MetaCounts {
            held_by_meta: count(held),
            capped_waiting: count(capped),
        })
    }

    async fn charged_categories(
        &self,
        app: &ApplicationId,
        since: Millis,
        until: Millis,
    ) -> Result<BTreeMap<String, u64>> {
        let rows = sqlx::query(
            "SELECT pricing_category AS k, COUNT(*) AS n FROM messages
             WHERE application_id = $1 AND pricing_category IS NOT NULL
               AND COALESCE(sent_at, delivered_at, read_at) >= $2 AND COALESCE(sent_at, delivered_at, read_at) < $3
             GROUP BY pricing_category",
        )
        .bind(app.as_str())
        .bind(since)
        .bind(until)
        .fetch_all(self.reader())
        .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            out.insert(r.try_get("k")?, count(r.try_get("n")?));
        }
        Ok(out)
    }

    async fn campaign_charged_categories(&self, id: &CampaignId) -> Result<BTreeMap<String, u64>> {
        let rows = sqlx::query(
            "SELECT pricing_category AS k, COUNT(*) AS n FROM messages
             WHERE campaign_id = $1 AND pricing_category IS NOT NULL GROUP BY pricing_category",
        )
        .bind(id.as_str())
        .fetch_all(self.reader())
        .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            out.insert(r.try_get("k")?, count(r.try_get("n")?));
        }
        Ok(out)
    }

    async fn opt_out_settings(&self, app: &ApplicationId) -> Result<OptOutSettings> {
        let row =
            sqlx::query("SELECT opt_out_keywords, opt_out_reply FROM applications WHERE id = $1")
                .bind(app.as_str())
                .fetch_optional(self.reader())
                .await?;
        let Some(row) = row else {
            return Ok(OptOutSettings::default());
        };
        let keywords: Option<String> = row.try_get("opt_out_keywords")?;
        Ok(OptOutSettings {
            keywords: keywords
                .map(|k| serde_json::from_str(&k).map_err(|e| corrupt("opt_out_keywords", e)))
                .transpose()?,
            reply: row.try_get("opt_out_reply")?,
        })
    }

    async fn set_opt_out_settings(&self, app: &ApplicationId, s: &OptOutSettings) -> Result<()> {
        let keywords = s
            .keywords
            .as_ref()
            .map(|k| serde_json::to_string(k).map_err(|e| corrupt("opt_out_keywords", e)))
            .transpose()?;
        sqlx::query(
            "UPDATE applications SET opt_out_keywords = $1, opt_out_reply = $2 WHERE id = $3",
        )
        .bind(keywords.as_deref().map(text))
        .bind(s.reply.as_deref().map(text))
        .bind(app.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }
}
