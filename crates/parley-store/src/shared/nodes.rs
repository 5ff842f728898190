//! `NodeStore`, written once for both backends (compiled into `sqlite.rs` and `postgres.rs`).

use async_trait::async_trait;
use sqlx::Row;

use super::{Backend, text};
use crate::nodes::{NodeRecord, NodeStore};
use crate::{Millis, Result};

#[async_trait]
impl NodeStore for Backend {
    async fn node_seen(&self, n: &NodeRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (id, role, host, pid, workers, started_at, seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET role = excluded.role, workers = excluded.workers, \
             seen_at = excluded.seen_at",
        )
        .bind(n.id.as_str())
        .bind(n.role.as_str())
        .bind(text(&n.host))
        .bind(n.pid)
        .bind(n.workers.as_str())
        .bind(n.started_at)
        .bind(n.seen_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn node_gone(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn nodes_seen_since(&self, since: Millis) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query(
            "SELECT id, role, host, pid, workers, started_at, seen_at FROM nodes \
             WHERE seen_at >= $1 ORDER BY seen_at DESC, id",
        )
        .bind(since)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeRecord {
                    id: r.try_get("id")?,
                    role: r.try_get("role")?,
                    host: r.try_get("host")?,
                    pid: r.try_get("pid")?,
                    workers: r.try_get("workers")?,
                    started_at: r.try_get("started_at")?,
                    seen_at: r.try_get("seen_at")?,
                })
            })
            .collect()
    }
}
