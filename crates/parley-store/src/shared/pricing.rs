//! `PricingStore`, written once for both backends (compiled into `sqlite.rs` and `postgres.rs`).

use async_trait::async_trait;
use parley_domain::ApplicationId;
use sqlx::Row;

use super::{Backend, spend_rows_of, spend_sql, stat_counters_between, text};
use crate::pricing::*;
use crate::stats::StatDimension;
use crate::{Millis, Result};

/// A UTC day (ms).
const DAY: Millis = 86_400_000;

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
        let mut sql = format!(
            "SELECT bucket, country, metric, CASE WHEN metric = 'charged' THEN detail ELSE category END AS cat, \
             origin, CAST(SUM(n) AS BIGINT) AS n FROM {} \
             WHERE application_id = $1 AND span = $4 AND bucket >= $2 AND bucket < $3 \
             AND metric IN ('delivered', 'charged')",
            stat_counters_between(
                "$1",
                &[
                    ("h", "$2".into(), "$3".into()),
                    ("d", "$2".into(), "$3".into())
                ]
            )
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

    async fn spend_counts(
        &self,
        app: &ApplicationId,
        from: Millis,
        to: Millis,
        filters: &[(StatDimension, String)],
        hourly_days: &[Millis],
    ) -> Result<Vec<SpendCount>> {
        self.fold_stat_deltas().await?;
        // One read of the period's counters for both sums (the filtered one chosen by
        // `chosen_if`), as one value (`spend_sql` and `spend_rows_of`, per backend: sqlx hands
        // SQLite rows over one by one; PostgreSQL's counters are read packed) and summed here,
        // not by a SQL `GROUP BY` (its sorter on SQLite): a year of day counters, two reads
        // and ~7,300 rows handed over one by one took ~30 ms (issue #16, `parley bench stats`).
        let chosen_if = (!filters.is_empty()).then(|| {
            let cond: Vec<String> = filters
                .iter()
                .enumerate()
                .map(|(i, (d, _))| format!("{} = ${}", d.column(), i + 4))
                .collect();
            cond.join(" AND ")
        });
        // The days read by the hour: every other day's day row, those days' hour rows (each
        // day's start and end bound after the filters').
        let first = filters.len() + 4;
        let days: Vec<(String, String)> = (0..hourly_days.len())
            .map(|i| {
                (
                    format!("${}", first + 2 * i),
                    format!("${}", first + 2 * i + 1),
                )
            })
            .collect();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(spend_sql(chosen_if.as_deref(), &days)))
            .bind(app.as_str())
            .bind(from)
            .bind(to);
        for (_, v) in filters {
            q = q.bind(text(v));
        }
        for d in hourly_days {
            q = q.bind(*d).bind(d.saturating_add(DAY));
        }
        let row = q.fetch_one(self.reader()).await?;
        spend_rows_of(&row, from, to, hourly_days)
    }
}

/// A counter as `spend_counts` reads it: day, country, metric, category, origin, n, chosen
/// n; text borrowed from what was read where it can be.
#[derive(serde::Deserialize)]
pub(super) struct SpendRead<'a>(
    pub(super) Millis,
    #[serde(borrow)] pub(super) std::borrow::Cow<'a, str>,
    #[serde(borrow)] pub(super) std::borrow::Cow<'a, str>,
    #[serde(borrow)] pub(super) std::borrow::Cow<'a, str>,
    #[serde(borrow)] pub(super) std::borrow::Cow<'a, str>,
    pub(super) i64,
    pub(super) i64,
);

/// The counters summed per (day, country, metric, category, origin), in that order, rows
/// whose two sums are zero left out.
pub(super) fn sum_spend(mut rows: Vec<SpendRead<'_>>) -> Vec<SpendCount> {
    rows.sort_unstable_by(|a, b| (a.0, &a.1, &a.2, &a.3, &a.4).cmp(&(b.0, &b.1, &b.2, &b.3, &b.4)));
    let mut out: Vec<SpendCount> = Vec::new();
    for r in rows.chunk_by(|a, b| (a.0, &a.1, &a.2, &a.3, &a.4) == (b.0, &b.1, &b.2, &b.3, &b.4)) {
        let (all, chosen) = r.iter().fold((0i64, 0i64), |(a, c), x| {
            (a.saturating_add(x.5), c.saturating_add(x.6))
        });
        if all == 0 && chosen == 0 {
            continue;
        }
        let k = &r[0];
        out.push(SpendCount {
            day: k.0,
            country: k.1.clone().into_owned(),
            metric: k.2.clone().into_owned(),
            category: k.3.clone().into_owned(),
            origin: k.4.clone().into_owned(),
            all,
            chosen,
        });
    }
    out
}
