//! `MarketingStore`, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`). Plain statements only.

use std::collections::BTreeMap;

use async_trait::async_trait;
use parley_domain::{ApplicationId, CampaignId, MessageId, PlatformId};
use sqlx::Row;

use super::{Backend, parse_id};
use crate::marketing::*;
use crate::{Millis, Result};

#[async_trait]
impl MarketingStore for Backend {
    async fn set_platform_marketing_messages(
        &self,
        app: &ApplicationId,
        id: &PlatformId,
        on: bool,
        now: Millis,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE platforms SET marketing_messages = $1, updated_at = $2
             WHERE id = $3 AND application_id = $4",
        )
        .bind(on)
        .bind(now)
        .bind(id.as_str())
        .bind(app.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn platform_marketing_messages(&self, id: &PlatformId) -> Result<bool> {
        let on: Option<bool> =
            sqlx::query_scalar("SELECT marketing_messages FROM platforms WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(self.reader())
                .await?;
        Ok(on.unwrap_or(false))
    }

    async fn marketing_routes(
        &self,
        ids: &[MessageId],
    ) -> Result<BTreeMap<MessageId, Option<i64>>> {
        let mut out = BTreeMap::new();
        for id in ids {
            let row = sqlx::query(
                "SELECT m.id, c.marketing_ttl_seconds FROM messages m
                 JOIN phone_numbers pn ON pn.phone_number_id = m.phone_number_id
                 JOIN templates t ON t.platform_id = pn.platform_id
                   AND t.name = m.template_name AND t.language = m.template_language
                 LEFT JOIN campaigns c ON c.id = m.campaign_id
                 WHERE m.id = $1 AND m.kind = 'template' AND UPPER(t.category) = 'MARKETING'",
            )
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?;
            if let Some(row) = row {
                out.insert(
                    parse_id(&row, "id", MessageId::parse)?,
                    row.try_get("marketing_ttl_seconds")?,
                );
            }
        }
        Ok(out)
    }

    async fn mark_sent_via(&self, id: &MessageId, via: &str) -> Result<()> {
        sqlx::query("UPDATE messages SET sent_via = $1 WHERE id = $2")
            .bind(via)
            .bind(id.as_str())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn message_routes(
        &self,
        app: &ApplicationId,
        ids: &[MessageId],
    ) -> Result<BTreeMap<MessageId, MessageRoute>> {
        let mut out = BTreeMap::new();
        for id in ids {
            let row = sqlx::query(
                "SELECT sent_via, pricing_category FROM messages WHERE application_id = $1 AND id = $2",
            )
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?;
            if let Some(row) = row {
                let sent_via: Option<String> = row.try_get("sent_via")?;
                let category: Option<String> = row.try_get("pricing_category")?;
                let fell_back = sent_via.as_deref() == Some(SENT_VIA_MARKETING_MESSAGES)
                    && category.as_deref() == Some("marketing");
                out.insert(
                    id.clone(),
                    MessageRoute {
                        sent_via,
                        fell_back,
                    },
                );
            }
        }
        Ok(out)
    }

    async fn campaign_routes(&self, campaign: &CampaignId) -> Result<CampaignRoutes> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS via,
                    COALESCE(SUM(CASE WHEN pricing_category = 'marketing' THEN 1 ELSE 0 END), 0) AS fell_back
             FROM messages WHERE campaign_id = $1 AND sent_via = $2",
        )
        .bind(campaign.as_str())
        .bind(SENT_VIA_MARKETING_MESSAGES)
        .fetch_one(self.reader())
        .await?;
        let via: i64 = row.try_get("via")?;
        let fell_back: i64 = row.try_get("fell_back")?;
        Ok(CampaignRoutes {
            via_marketing_messages: u64::try_from(via).unwrap_or(0),
            fell_back_to_cloud_api: u64::try_from(fell_back).unwrap_or(0),
        })
    }
}
