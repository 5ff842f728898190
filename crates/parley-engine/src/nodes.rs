//! What this `parley serve` process does (`--role`) and its heartbeat row in `nodes`.
//!
//! - `api`: serves the API, the console and Meta's webhook intake; runs no background worker
//!   (a queued message waits for a worker node, whose sender the wake-up bus wakes:
//!   `LISTEN/NOTIFY` on PostgreSQL, `wake.rs`).
//! - `worker`: runs the workers (sender loops, campaign planner, webhook processor, template
//!   sync, audit retention) and serves only health, readiness and metrics.
//! - `all` (the default): both, as one node always did.
//!
//! Every node, whatever its role, writes its row every `HEARTBEAT_MILLIS` and deletes it on a
//! clean stop: `parley migrate-store` refuses a database a node was seen on in the last
//! `NODE_STALE_MILLIS`.

use std::time::Duration;

use parley_store::NodeRecord;
use parley_store::nodes::HEARTBEAT_MILLIS;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeRole {
    Api,
    Worker,
    #[default]
    All,
}

impl NodeRole {
    pub fn parse(s: &str) -> Option<NodeRole> {
        match s.trim().to_ascii_lowercase().as_str() {
            "api" => Some(NodeRole::Api),
            "worker" => Some(NodeRole::Worker),
            "all" | "" => Some(NodeRole::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Api => "api",
            NodeRole::Worker => "worker",
            NodeRole::All => "all",
        }
    }

    /// Serves the API, the console and webhook intake.
    pub fn serves_api(self) -> bool {
        self != NodeRole::Worker
    }

    /// Runs the background workers.
    pub fn runs_workers(self) -> bool {
        self != NodeRole::Api
    }
}

/// The background workers a worker (or all) node runs, as `/readyz` names them.
pub const WORKERS: &[&str] = &[
    "sender",
    "campaign_planner",
    "webhook_processor",
    "template_sync",
    "audit_retention",
    "media_fetcher",
    "event_delivery",
];

/// This process as `/readyz` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub role: &'static str,
    pub host: String,
    pub workers: Vec<&'static str>,
    pub started_at: i64,
}

impl NodeInfo {
    pub(crate) fn new() -> NodeInfo {
        NodeInfo {
            id: format!("node_{:016x}", rand::random::<u64>()),
            role: NodeRole::All.as_str(),
            host: hostname(),
            workers: Vec::new(),
            started_at: 0,
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Engine {
    /// This node: its id, role and the workers it runs.
    pub fn node(&self) -> NodeInfo {
        self.node
            .read()
            .map(|n| n.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub(crate) fn set_node(&self, role: NodeRole, workers: Vec<&'static str>) {
        let started_at = self.now();
        let mut node = self.node.write().unwrap_or_else(|e| e.into_inner());
        node.role = role.as_str();
        node.workers = workers;
        node.started_at = started_at;
    }

    fn node_record(&self) -> NodeRecord {
        let n = self.node();
        NodeRecord {
            id: n.id,
            role: n.role.to_owned(),
            host: n.host,
            pid: i64::from(std::process::id()),
            workers: n.workers.join(" "),
            started_at: n.started_at,
            seen_at: self.now(),
        }
    }
}

/// Writes this node's row every `HEARTBEAT_MILLIS` until `shutdown`, then deletes it.
pub(crate) async fn heartbeat(engine: Engine, shutdown: CancellationToken) {
    loop {
        if let Err(e) = engine.store.node_seen(&engine.node_record()).await {
            tracing::warn!(error = %e, "cannot write this node's heartbeat");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(HEARTBEAT_MILLIS as u64)) => {}
        }
    }
    if let Err(e) = engine.store.node_gone(&engine.node().id).await {
        tracing::warn!(error = %e, "cannot remove this node's heartbeat");
    }
}
