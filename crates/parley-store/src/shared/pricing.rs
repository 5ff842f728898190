//! `PricingStore`, written once for both backends (compiled into `sqlite.rs` and `postgres.rs`).

use async_trait::async_trait;
use parley_domain::ApplicationId;
use sqlx::Row;

use super::{Backend, text};
use crate::pricing::*;
use crate::stats::StatDimension;
use crate::{Millis, Result};

#[async_trait]
impl PricingStore for Backend {
    async fn price_table(&self, app: &ApplicationId) -> Result<Option<String>> {
        let row = sqlx::query("SELECT body FROM price_tables WHERE application_id = $1")
            .bind(app.as_str())
            .fetch_optional(self.reader())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("body")?),
            None => None,
        })
    }

    async fn put_price_table(
        &self,
        app: &ApplicationId,
        body: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        match body {
            Some(body) => {
                sqlx::query(
                    "INSERT INTO price_tables (application_id, body, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (application_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                )
                .bind(app.as_str())
                .bind(text(body))
                .bind(now)
                .execute(self.writer())
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM price_tables WHERE application_id = $1")
                    .bind(app.as_str())
                    .execute(self.writer())
                    .await?;
            }
        }
        Ok(())
    }

    async fn free_entry_point_senders(
        &self,
        app: &ApplicationId,
        phone_number_id: &str,
        since: Millis,
    ) -> Result<Vec<String>> {
        // Kept at intake on the conversation (migration 0038), which the inbox reads too.
        let rows = sqlx::query(
            "SELECT k.phone AS from_phone FROM conversations v
               JOIN contacts k ON k.id = v.contact_id AND k.application_id = v.application_id
             WHERE v.application_id = $1 AND v.entry_point_phone_number_id = $2
               AND v.entry_point_at >= $3",
        )
        .bind(app.as_str())
        .bind(text(phone_number_id))
        .bind(since)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("from_phone")?))
            .collect()
    }

    async fn cost_rows(
        &self,
        app: &ApplicationId,
        from: Millis,
        to: Millis,
        filters: &[(StatDimension, String)],
        hourly: bool,
    ) -> Result<Vec<CostRow>> {
        self.fold_stat_deltas().await?;
        let mut sql = String::from(
            "SELECT bucket, country, metric, CASE WHEN metric = 'charged' THEN detail ELSE category END AS cat, \
             origin, CAST(SUM(n) AS BIGINT) AS n FROM stat_counters \
             WHERE application_id = $1 AND span = $4 AND bucket >= $2 AND bucket < $3 \
             AND metric IN ('delivered', 'charged')",
        );
        for (i, (d, _)) in filters.iter().enumerate() {
            sql.push_str(&format!(" AND {} = ${}", d.column(), i + 5));
        }
        sql.push_str(
            " GROUP BY bucket, country, metric, CASE WHEN metric = 'charged' THEN detail ELSE category END, origin \
             HAVING SUM(n) <> 0 ORDER BY bucket, country, metric, cat, origin",
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app.as_str())
            .bind(from)
            .bind(to)
            .bind(if hourly { "h" } else { "d" });
        for (_, v) in filters {
            q = q.bind(text(v));
        }
        let rows = q.fetch_all(self.reader()).await?;
        rows.iter()
            .map(|r| {
                Ok(CostRow {
                    day: r.try_get("bucket")?,
                    country: r.try_get("country")?,
                    metric: r.try_get("metric")?,
                    category: r.try_get("cat")?,
                    origin: r.try_get("origin")?,
                    n: r.try_get("n")?,
                })
            })
            .collect()
    }
}
