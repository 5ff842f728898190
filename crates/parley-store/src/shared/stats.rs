//! `StatsStore`, written once for both backends (compiled into `sqlite.rs` and `postgres.rs`).
//! The counters are kept by triggers (migration 0026); PostgreSQL's triggers append deltas that
//! `fold_stat_deltas` (per backend) moves into the counters before a read.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::Row;

use super::{Backend, DbRow, text};
use crate::Result;
use crate::stats::*;
use crate::stats_sql::RECOUNT;

const KEY_COLUMNS: &str = "application_id, span, bucket, metric, campaign_id, template, \
     phone_number_id, category, country, origin, detail";

fn key_of(r: &DbRow) -> Result<StatKey> {
    Ok(StatKey {
        application_id: r.try_get("application_id")?,
        span: r.try_get("span")?,
        bucket: r.try_get("bucket")?,
        metric: r.try_get("metric")?,
        campaign_id: r.try_get("campaign_id")?,
        template: r.try_get("template")?,
        phone_number_id: r.try_get("phone_number_id")?,
        category: r.try_get("category")?,
        country: r.try_get("country")?,
        origin: r.try_get("origin")?,
        detail: r.try_get("detail")?,
    })
}

#[async_trait]
impl StatsStore for Backend {
    async fn stat_rows(&self, q: &StatQuery) -> Result<Vec<StatRow>> {
        self.fold_stat_deltas().await?;
        let group = q.group_by.map_or("''", |d| d.column());
        let mut sql = format!(
            "SELECT bucket, {group} AS g, metric, detail, CAST(SUM(n) AS BIGINT) AS n FROM stat_counters \
             WHERE application_id = $1 AND span = $2 AND bucket >= $3 AND bucket < $4"
        );
        for (i, (d, _)) in q.filters.iter().enumerate() {
            sql.push_str(&format!(" AND {} = ${}", d.column(), i + 5));
        }
        // A constant is no grouping key on PostgreSQL: without a grouping, `g` is left out.
        let g = q
            .group_by
            .map_or(String::new(), |d| format!("{}, ", d.column()));
        sql.push_str(&format!(
            " GROUP BY bucket, {g}metric, detail HAVING SUM(n) <> 0 ORDER BY bucket, {g}metric, detail"
        ));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.application.as_str())
            .bind(q.span.as_str())
            .bind(q.from)
            .bind(q.to);
        for (_, v) in &q.filters {
            query = query.bind(text(v));
        }
        let rows = query.fetch_all(self.reader()).await?;
        rows.iter()
            .map(|r| {
                Ok(StatRow {
                    bucket: r.try_get("bucket")?,
                    group: r.try_get("g")?,
                    metric: r.try_get("metric")?,
                    detail: r.try_get("detail")?,
                    n: r.try_get("n")?,
                })
            })
            .collect()
    }

    async fn stat_recount(&self, fix: bool) -> Result<Vec<StatDifference>> {
        let mut tx = self.tx().await?;
        // Writers wait while the rows are recounted, so counters and recount see the same rows.
        Self::lock_stat_sources(&mut tx).await?;
        Self::fold_stat_deltas_in(&mut tx).await?;
        let mut kept = BTreeMap::new();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS}, n FROM stat_counters WHERE n <> 0"
        )))
        .fetch_all(&mut *tx)
        .await?;
        for r in &rows {
            kept.insert(key_of(r)?, r.try_get::<i64, _>("n")?);
        }
        let mut recounted = BTreeMap::new();
        let rows = sqlx::query(RECOUNT).fetch_all(&mut *tx).await?;
        for r in &rows {
            recounted.insert(key_of(r)?, r.try_get::<i64, _>("n")?);
        }
        let mut out = Vec::new();
        for (key, &n) in &kept {
            let m = recounted.get(key).copied().unwrap_or(0);
            if m != n {
                out.push(StatDifference {
                    key: key.clone(),
                    counted: n,
                    recounted: m,
                });
            }
        }
        for (key, &m) in &recounted {
            if !kept.contains_key(key) {
                out.push(StatDifference {
                    key: key.clone(),
                    counted: 0,
                    recounted: m,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        if fix && !out.is_empty() {
            sqlx::query("DELETE FROM stat_counters")
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO stat_counters ({KEY_COLUMNS}, n) SELECT {KEY_COLUMNS}, n FROM ({RECOUNT}) r"
            )))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(out)
    }
}
