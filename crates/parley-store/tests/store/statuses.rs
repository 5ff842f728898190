//! Status webhooks: the lattice merge gives one end state whatever the order and duplicates,
//! statuses that outrun the send are kept and folded in, and concurrent nodes lose nothing.

use parley_domain::{MessageId, MessageState};
use parley_store::{StatusChange, Store};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::backend::Backend;
use crate::fixtures::{T0, accepted, get, outcome, queued, tenant};

crate::contract!(
    statuses_in_any_order_end_the_same,
    status_matched_by_callback_data_before_acceptance,
    orphan_statuses_are_folded_in_at_acceptance,
    concurrent_acceptance_and_status_lose_nothing,
    a_redelivered_failed_for_a_capped_messages_old_send_leaves_it_queued,
);

/// Meta capped a message (131049) and Parley put it back in the queue for the next day,
/// letting its wamid go. A copy of that `failed` delivered again (Meta retries a webhook it
/// got no 2xx for) names the message by our id: it is about the old send and leaves the
/// queued message as it is. Before, it failed the row again with the old wamid, and since the
/// requeue had cleared its acceptance the cap's requeue never took it back: the message
/// stayed failed after one day of three.
async fn a_redelivered_failed_for_a_capped_messages_old_send_leaves_it_queued(b: &Backend) {
    const DAY: i64 = 24 * 3_600_000;
    let t = tenant(&**b, 1).await;
    let id = accepted(&**b, &t, "wamid.capped.old", T0).await;
    let capped = StatusChange {
        error: Some((131049, "per-user marketing limit".to_owned())),
        ..status("wamid.capped.old", Some(&id), MessageState::Failed, T0 + 5)
    };
    b.apply_statuses(std::slice::from_ref(&capped))
        .await
        .expect("failed");
    assert_eq!(get(&**b, &t, &id).await.state, MessageState::Failed);
    assert!(
        b.requeue_capped(&id, T0 + DAY, 3, T0 + 10)
            .await
            .expect("requeue")
    );
    let waiting = get(&**b, &t, &id).await;
    assert_eq!(waiting.state, MessageState::Queued);
    assert_eq!(waiting.wamid, None);

    let matched = b
        .apply_statuses(std::slice::from_ref(&capped))
        .await
        .expect("redelivered");
    assert_eq!(matched.len(), 1);
    assert!(
        matched[0].is_none(),
        "the old send's status matched the row"
    );
    let after = get(&**b, &t, &id).await;
    assert_eq!(after.state, MessageState::Queued, "{after:?}");
    assert_eq!(after.wamid, None);
    assert_eq!(after.failed_at, None);
    let r = b
        .message_ref(&crate::fixtures::wm("wamid.capped.old"), Some(&id))
        .await
        .expect("ref")
        .expect("found by id");
    assert_eq!((r.state, r.capped_times), (MessageState::Queued, 1));
}

fn status(wamid: &str, id: Option<&MessageId>, state: MessageState, at: i64) -> StatusChange {
    StatusChange {
        wamid: crate::fixtures::wm(wamid),
        message_id: id.cloned(),
        state,
        at,
        error: (state == MessageState::Failed)
            .then(|| (131026, "Message undeliverable".to_owned())),
        pricing: None,
    }
}

async fn statuses_in_any_order_end_the_same(b: &Backend) {
    use MessageState::*;
    let t = tenant(&**b, 1).await;
    // Each set is delivered in several shuffled orders, with duplicates (a duplicate may carry
    // another timestamp: the earliest is the time of that state).
    let sets: [&[(MessageState, i64)]; 4] = [
        &[(Sent, 10), (Delivered, 20), (Read, 30)],
        &[(Sent, 10), (Failed, 15)],
        &[(Sent, 10), (Failed, 15), (Delivered, 20)],
        &[
            (Sent, 10),
            (Sent, 12),
            (Failed, 15),
            (Delivered, 20),
            (Read, 30),
            (Read, 31),
        ],
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut n = 0;
    for set in sets {
        let mut first = None;
        for round in 0..6 {
            let mut order: Vec<(MessageState, i64)> = set.to_vec();
            order.extend_from_slice(set); // every status twice
            order.shuffle(&mut rng);
            n += 1;
            let wamid = format!("wamid.order.{n}");
            let id = accepted(&**b, &t, &wamid, T0).await;
            for (state, at) in &order {
                // Half the statuses carry our id, as Meta echoes biz_opaque_callback_data.
                let by_id = (round + *at as usize).is_multiple_of(2);
                let change = status(&wamid, by_id.then_some(&id), *state, T0 + at);
                let m = b
                    .apply_status(&change)
                    .await
                    .expect("apply")
                    .expect("matches the message");
                assert_eq!(m.id, id);
            }
            let end = get(&**b, &t, &id).await;
            assert_eq!(end.wamid.as_ref().map(|x| x.as_str()), Some(wamid.as_str()));
            let end = outcome(&end);
            match &first {
                None => first = Some(end),
                Some(expected) => assert_eq!(
                    &end,
                    expected,
                    "{}: {set:?} in order {order:?} ended differently",
                    b.name()
                ),
            }
        }
    }

    // The rules themselves, on one order.
    let wamid = "wamid.rules";
    let id = accepted(&**b, &t, wamid, T0).await;
    for (state, at) in [(Failed, 15), (Delivered, 20), (Sent, 10)] {
        b.apply_status(&status(wamid, None, state, T0 + at))
            .await
            .expect("apply");
    }
    let m = get(&**b, &t, &id).await;
    assert_eq!(m.state, Delivered, "evidence of delivery beats a failure");
    assert_eq!(
        (m.error_code, m.error_message),
        (None, None),
        "and clears its error"
    );
    assert_eq!(
        (m.sent_at, m.failed_at, m.delivered_at, m.read_at),
        (Some(T0 + 10), Some(T0 + 15), Some(T0 + 20), None)
    );
    assert_eq!(m.updated_at, T0 + 20, "updated_at never goes back");

    let id = accepted(&**b, &t, "wamid.failed", T0).await;
    b.apply_status(&status("wamid.failed", None, Failed, T0 + 5))
        .await
        .expect("apply");
    let m = get(&**b, &t, &id).await;
    assert_eq!(m.state, Failed);
    assert_eq!(m.error_code, Some(131026));
    assert_eq!(m.error_message.as_deref(), Some("Message undeliverable"));
    b.apply_status(&status("wamid.failed", None, Sent, T0 + 3))
        .await
        .expect("apply");
    assert_eq!(
        get(&**b, &t, &id).await.error_code,
        Some(131026),
        "a late sent keeps it"
    );

    // A read without delivered leaves delivered empty.
    let id = accepted(&**b, &t, "wamid.read", T0).await;
    b.apply_status(&status("wamid.read", None, Read, T0 + 9))
        .await
        .expect("apply");
    let m = get(&**b, &t, &id).await;
    assert_eq!(
        (m.state, m.delivered_at, m.read_at),
        (Read, None, Some(T0 + 9))
    );
}

async fn status_matched_by_callback_data_before_acceptance(b: &Backend) {
    let t = tenant(&**b, 1).await;
    // The send timed out on our side but Meta took it: the status names our id.
    let id = queued(&**b, &t, T0).await;
    b.claim_due_messages(&t.number, T0, T0 + 1_000, 1)
        .await
        .expect("claim");
    b.reschedule_message(&id, T0 + 5_000, Some((-1, "timed out")), T0 + 1_000)
        .await
        .expect("transport failure");
    let m = b
        .apply_status(&status(
            "wamid.late",
            Some(&id),
            MessageState::Delivered,
            T0 + 2_000,
        ))
        .await
        .expect("apply")
        .expect("matched by id");
    assert_eq!(m.state, MessageState::Delivered);
    assert_eq!(
        m.wamid.as_ref().map(|x| x.as_str()),
        Some("wamid.late"),
        "the wamid is learned from the status"
    );
    assert_eq!(m.delivered_at, Some(T0 + 2_000));
    assert!(
        b.claim_due_messages(&t.number, T0 + 9_000, T0 + 10_000, 5)
            .await
            .expect("claim")
            .is_empty(),
        "a delivered message is not sent again"
    );
    // Later statuses find it by wamid alone.
    let m = b
        .apply_status(&status("wamid.late", None, MessageState::Read, T0 + 3_000))
        .await
        .expect("apply")
        .expect("matched by wamid");
    assert_eq!((m.id, m.state), (id, MessageState::Read));
}

async fn orphan_statuses_are_folded_in_at_acceptance(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let id = queued(&**b, &t, T0).await;
    b.claim_due_messages(&t.number, T0, T0 + 1_000, 1)
        .await
        .expect("claim");
    // Meta's webhooks outran our commit of the wamid, and did not echo our id.
    for (state, at) in [
        (MessageState::Delivered, 20),
        (MessageState::Sent, 10),
        (MessageState::Delivered, 25),
    ] {
        let r = b
            .apply_status(&status("wamid.fast", None, state, T0 + at))
            .await
            .expect("apply");
        assert!(r.is_none(), "no message has that wamid yet");
    }
    assert_eq!(get(&**b, &t, &id).await.state, MessageState::Sending);
    b.mark_accepted(&id, &crate::fixtures::wm("wamid.fast"), T0 + 5)
        .await
        .expect("accept");
    let m = get(&**b, &t, &id).await;
    assert_eq!(m.state, MessageState::Delivered);
    assert_eq!(
        (m.accepted_at, m.sent_at, m.delivered_at),
        (Some(T0 + 5), Some(T0 + 10), Some(T0 + 20))
    );
    assert_eq!(m.updated_at, T0 + 20);

    // Folded orphans are gone: a repeat of the acceptance changes nothing.
    b.mark_accepted(&id, &crate::fixtures::wm("wamid.fast"), T0 + 6)
        .await
        .expect("repeat");
    assert_eq!(outcome(&get(&**b, &t, &id).await), outcome(&m));
}

async fn concurrent_acceptance_and_status_lose_nothing(b: &Backend) {
    const ROUNDS: usize = 60;
    let t = tenant(&**b, 1).await;
    let node_a = b.store.clone();
    let node_b = b.another_node(None).await;
    let mut ids = Vec::new();
    for _ in 0..ROUNDS {
        ids.push(queued(&**b, &t, T0).await);
    }
    let claimed = b
        .claim_due_messages(&t.number, T0, T0 + 60_000, ROUNDS as u32)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), ROUNDS);
    for (i, id) in ids.iter().enumerate() {
        let wamid = format!("wamid.race.{i}");
        let (a, s) = (node_a.clone(), node_b.clone());
        let accept = {
            let (id, wamid) = (id.clone(), wamid.clone());
            tokio::spawn(async move {
                a.mark_accepted(&id, &crate::fixtures::wm(&wamid), T0 + 1)
                    .await
            })
        };
        // A status that names only the wamid, racing the acceptance on another node.
        let deliver = tokio::spawn(async move {
            s.apply_status(&status(&wamid, None, MessageState::Delivered, T0 + 2))
                .await
        });
        accept.await.expect("task").expect("accept");
        deliver.await.expect("task").expect("status");
    }
    let store: &dyn Store = &**b;
    for id in &ids {
        let m = get(store, &t, id).await;
        assert_eq!(
            (m.state, m.delivered_at),
            (MessageState::Delivered, Some(T0 + 2)),
            "{}: the delivered status raced the acceptance and was lost",
            b.name()
        );
    }
}
