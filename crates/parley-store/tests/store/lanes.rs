//! Per-contact order of single sends (migration 0041): one recipient's messages from one
//! number are a lane; a claim takes only a lane's head (no earlier message of the lane still
//! queued, or in flight and not known to be at Meta), whatever holds the head back: a retry,
//! a crash (a `sending` row past its lease), and on every backend and node, since the rule is
//! in the claim's statement.

use parley_domain::{MessageId, MessageState};
use parley_store::NewMessage;

use crate::backend::Backend;
use crate::fixtures::{T0, Tenant, get, new_message, tenant, wm};

crate::contract!(
    a_claim_takes_only_the_head_of_each_lane,
    a_head_in_flight_or_crashed_holds_its_lane_until_settled,
    a_head_that_failed_or_left_its_lane_frees_it,
);

const LEASE: i64 = 30_000;

/// A message to `to`, queued at `now`.
async fn to(b: &Backend, t: &Tenant, to: &str, now: i64) -> MessageId {
    let m = NewMessage {
        to_phone: to.into(),
        ..new_message(t, now, None)
    };
    b.insert_message(&m).await.expect("insert");
    m.id
}

async fn claim(b: &Backend, t: &Tenant, now: i64) -> Vec<MessageId> {
    b.claim_due_messages(&t.number, now, now + LEASE, 100)
        .await
        .expect("claim")
        .into_iter()
        .map(|m| m.id)
        .collect()
}

async fn a_claim_takes_only_the_head_of_each_lane(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let a1 = to(b, &t, "+4915200000001", T0).await;
    let a2 = to(b, &t, "+4915200000001", T0).await;
    let a3 = to(b, &t, "+4915200000001", T0).await;
    let other = to(b, &t, "+4915200000002", T0).await;
    // Places in the order of the commits.
    let mut places = Vec::new();
    for id in [&a1, &a2, &a3, &other] {
        places.push(get(&**b, &t, id).await.lane_seq);
    }
    assert_eq!(places, vec![Some(1), Some(2), Some(3), Some(1)]);
    // One message per lane: the first to each recipient.
    let mut first = claim(b, &t, T0).await;
    first.sort();
    let mut want = vec![a1.clone(), other.clone()];
    want.sort();
    assert_eq!(first, want, "{}", b.name());
    // The head accepted: the next of its lane, and only it.
    b.mark_accepted(&a1, &wm("wamid.lane.a1"), T0 + 1)
        .await
        .expect("accept");
    assert_eq!(claim(b, &t, T0 + 2).await, vec![a2.clone()]);
    // Deferred (the pair rate, a retry): it keeps its place, the third waits behind it, and
    // the idle loop waits for the head's time, not for the third's (already due).
    b.reschedule_message(&a2, T0 + 6_000, Some((131056, "pair rate")), T0 + 3)
        .await
        .expect("reschedule");
    assert_eq!(claim(b, &t, T0 + 4).await, Vec::<MessageId>::new());
    assert_eq!(
        b.next_due_at(&t.number).await.expect("next due"),
        Some(T0 + 6_000)
    );
    assert_eq!(claim(b, &t, T0 + 6_000).await, vec![a2.clone()]);
    b.mark_accepted(&a2, &wm("wamid.lane.a2"), T0 + 6_001)
        .await
        .expect("accept");
    assert_eq!(claim(b, &t, T0 + 6_002).await, vec![a3]);
}

async fn a_head_in_flight_or_crashed_holds_its_lane_until_settled(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let first = to(b, &t, "+4915200000003", T0).await;
    let second = to(b, &t, "+4915200000003", T0).await;
    assert_eq!(claim(b, &t, T0).await, vec![first.clone()]);
    // In flight: the second waits.
    assert_eq!(claim(b, &t, T0 + 1).await, Vec::<MessageId>::new());
    // The node died with it: past its lease and while the crash grace runs, nobody knows
    // whether Meta has it, so the second still waits.
    let grace = 300_000;
    let after_lease = T0 + LEASE + 1;
    b.requeue_stale_sending(after_lease, grace)
        .await
        .expect("pass");
    assert_eq!(claim(b, &t, after_lease).await, Vec::<MessageId>::new());
    // No status named it in the grace: it goes back to the queue and is sent first.
    let later = after_lease + grace;
    assert_eq!(
        b.requeue_stale_sending(later, grace)
            .await
            .expect("pass")
            .requeued,
        1
    );
    assert_eq!(claim(b, &t, later).await, vec![first.clone()]);
    // Meta answered "held for quality assessment" (noted before the acceptance is written):
    // Meta has it, so the lane goes on.
    b.mark_meta_status(&first, "held_for_quality_assessment")
        .await
        .expect("note");
    assert_eq!(claim(b, &t, later + 1).await, vec![second]);
    assert_eq!(get(&**b, &t, &first).await.state, MessageState::Sending);
}

async fn a_head_that_failed_or_left_its_lane_frees_it(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let first = to(b, &t, "+4915200000004", T0).await;
    let second = to(b, &t, "+4915200000004", T0).await;
    let third = to(b, &t, "+4915200000004", T0).await;
    assert_eq!(claim(b, &t, T0).await, vec![first.clone()]);
    // Refused for good: the next goes.
    b.fail_message(&first, 131026, "undeliverable", T0 + 1)
        .await
        .expect("fail");
    assert_eq!(claim(b, &t, T0 + 2).await, vec![second.clone()]);
    // Meta's per-user marketing cap (131049): a day's wait, so it leaves the lane and the
    // third goes now; the capped one goes when its day is over.
    assert!(
        b.reschedule_capped(
            &second,
            T0 + 86_400_000,
            (131049, "marketing cap"),
            3,
            T0 + 3
        )
        .await
        .expect("cap")
    );
    assert_eq!(get(&**b, &t, &second).await.lane_seq, None);
    assert_eq!(claim(b, &t, T0 + 4).await, vec![third]);
    assert_eq!(claim(b, &t, T0 + 86_400_000).await, vec![second]);
}
