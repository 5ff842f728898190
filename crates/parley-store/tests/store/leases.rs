//! Leases (`leases`): one owner at a time, a fencing token that grows with every new owner,
//! and a claim under a stale token refused by the database itself.

use parley_store::Fence;

use crate::backend::Backend;
use crate::fixtures::{T0, queued, tenant};

crate::contract!(
    a_lease_has_one_owner_and_a_new_owner_gets_a_higher_token,
    a_claim_under_a_lost_lease_is_refused_by_the_database,
);

fn fence(resource: &str, owner: &str, token: i64) -> Fence {
    Fence {
        resource: resource.into(),
        owner: owner.into(),
        token,
    }
}

async fn a_lease_has_one_owner_and_a_new_owner_gets_a_higher_token(b: &Backend) {
    let s = &**b;
    let r = "sender:1065";
    let t1 = s
        .acquire_lease(r, "node_a", 60_000)
        .await
        .expect("acquire")
        .expect("free");
    assert_eq!(t1, 1);
    assert_eq!(s.acquire_lease(r, "node_b", 60_000).await.expect("b"), None);
    assert_eq!(
        s.acquire_lease(r, "node_a", 60_000).await.expect("a again"),
        None,
        "a held lease is renewed, not acquired again"
    );
    assert!(
        s.renew_lease(&fence(r, "node_a", t1), 60_000)
            .await
            .expect("renew")
    );
    assert!(
        !s.renew_lease(&fence(r, "node_b", t1), 60_000)
            .await
            .expect("not b's")
    );
    // Released: the row stays, the next owner's token is higher.
    s.release_lease(&fence(r, "node_a", t1))
        .await
        .expect("release");
    let t2 = s
        .acquire_lease(r, "node_b", 60_000)
        .await
        .expect("b")
        .expect("released");
    assert_eq!(t2, t1 + 1);
    assert!(
        !s.renew_lease(&fence(r, "node_a", t1), 60_000)
            .await
            .expect("lost")
    );
    // Lapsed (a duration of 0 has passed at once): anyone takes it, with the next token, and
    // the row says how long it had lapsed.
    assert!(
        s.renew_lease(&fence(r, "node_b", t2), -1)
            .await
            .expect("shorten")
    );
    assert!(
        !s.renew_lease(&fence(r, "node_b", t2), 60_000)
            .await
            .expect("lapsed")
    );
    let t3 = s
        .acquire_lease(r, "node_c", 60_000)
        .await
        .expect("c")
        .expect("lapsed");
    assert_eq!(t3, t2 + 1);
    let rows = s.leases().await.expect("leases");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!((row.owner.as_str(), row.token), ("node_c", t3));
    assert!(
        row.expires_at > row.now && row.taken_after_ms >= 0,
        "{row:?}"
    );
}

async fn a_claim_under_a_lost_lease_is_refused_by_the_database(b: &Backend) {
    let s = &**b;
    let t = tenant(s, 1).await;
    for _ in 0..3 {
        queued(s, &t, T0).await;
    }
    let r = format!("sender:{}", t.number.as_str());
    let old = s
        .acquire_lease(&r, "node_a", 60_000)
        .await
        .expect("a")
        .expect("free");
    let claimed = s
        .claim_due_messages_fenced(&fence(&r, "node_a", old), &t.number, T0, T0 + 60_000, 1)
        .await
        .expect("claim")
        .expect("held");
    assert_eq!(claimed.len(), 1);
    // node_a pauses past its lease; node_b takes it over.
    assert!(
        s.renew_lease(&fence(&r, "node_a", old), -1)
            .await
            .expect("lapse")
    );
    let new = s
        .acquire_lease(&r, "node_b", 60_000)
        .await
        .expect("b")
        .expect("lapsed");
    let stale = s
        .claim_due_messages_fenced(&fence(&r, "node_a", old), &t.number, T0, T0 + 60_000, 10)
        .await
        .expect("claim");
    assert!(stale.is_none(), "a claim under a stale token is refused");
    // A forged fence naming the new token but the old owner is refused too.
    let forged = s
        .claim_due_messages_fenced(&fence(&r, "node_a", new), &t.number, T0, T0 + 60_000, 10)
        .await
        .expect("claim");
    assert!(forged.is_none(), "the token belongs to another owner");
    let rows = s.leases().await.expect("leases");
    assert_eq!(rows[0].refused, 2, "{rows:?}");
    let claimed = s
        .claim_due_messages_fenced(&fence(&r, "node_b", new), &t.number, T0, T0 + 60_000, 10)
        .await
        .expect("claim")
        .expect("held");
    assert_eq!(
        claimed.len(),
        2,
        "the rest, untouched by the refused claims"
    );
}
