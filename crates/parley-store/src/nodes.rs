//! Running `parley serve` processes: a heartbeat row per node (`nodes`, migration 0020).

use async_trait::async_trait;

use crate::{Millis, Result};

/// A node as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Random per process start.
    pub id: String,
    /// `api`, `worker` or `all`.
    pub role: String,
    pub host: String,
    pub pid: i64,
    /// The workers it runs, space-separated (empty for an api node).
    pub workers: String,
    pub started_at: Millis,
    pub seen_at: Millis,
}

/// How often a node writes its row, and when a row counts as a node that is gone.
pub const HEARTBEAT_MILLIS: Millis = 5_000;
/// A node not seen for this long is taken for stopped (six missed heartbeats).
pub const NODE_STALE_MILLIS: Millis = 30_000;

#[async_trait]
pub trait NodeStore {
    /// Writes (or refreshes) the node's row.
    async fn node_seen(&self, node: &NodeRecord) -> Result<()>;
    /// Deletes the node's row (a clean stop).
    async fn node_gone(&self, id: &str) -> Result<()>;
    /// Nodes seen at or after `since`, newest first.
    async fn nodes_seen_since(&self, since: Millis) -> Result<Vec<NodeRecord>>;
}
