//! Node heartbeats (`nodes`): written, refreshed, read by age, removed on a clean stop.

use parley_store::NodeRecord;

use crate::backend::Backend;
use crate::fixtures::T0;

crate::contract!(heartbeats_are_refreshed_read_by_age_and_removed);

fn node(id: &str, role: &str, seen_at: i64) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        role: role.into(),
        host: "host-ä".into(),
        pid: 42,
        workers: "sender campaign_planner".into(),
        started_at: T0,
        seen_at,
    }
}

async fn heartbeats_are_refreshed_read_by_age_and_removed(b: &Backend) {
    let s = &**b;
    s.node_seen(&node("node_a", "worker", T0)).await.expect("a");
    s.node_seen(&node("node_b", "api", T0 + 1_000))
        .await
        .expect("b");
    assert_eq!(s.nodes_seen_since(T0 + 500).await.expect("recent").len(), 1);
    // A heartbeat refreshes the same row.
    s.node_seen(&node("node_a", "worker", T0 + 2_000))
        .await
        .expect("again");
    let live = s.nodes_seen_since(T0 + 500).await.expect("recent");
    assert_eq!(live.len(), 2, "{live:?}");
    assert_eq!(live[0], node("node_a", "worker", T0 + 2_000));
    s.node_gone("node_a").await.expect("gone");
    let live = s.nodes_seen_since(0).await.expect("all");
    assert_eq!(
        live.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["node_b"]
    );
}
