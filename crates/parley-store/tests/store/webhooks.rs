//! Raw webhook deliveries: stored before the 200, processed in arrival order.

use crate::backend::Backend;
use crate::fixtures::T0;

crate::contract!(
    webhook_events_are_kept_until_processed,
    a_batch_of_deliveries_is_stored_in_order_with_its_sizes,
    pending_events_are_never_missed_while_a_round_finishes,
    applied_webhooks_past_their_retention_are_deleted_a_step_at_a_time,
    finished_events_past_their_retention_are_deleted_with_their_deliveries
);

async fn webhook_events_are_kept_until_processed(b: &Backend) {
    assert_eq!(b.count_webhook_events().await.expect("count"), 0);
    let bodies: [&[u8]; 3] = [
        br#"{"object":"whatsapp_business_account","entry":[]}"#,
        b"not json \x00\xff at all",
        br#"{"n":3}"#,
    ];
    let mut ids = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        ids.push(
            b.insert_webhook_event(body, T0 + i as i64)
                .await
                .expect("insert"),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    let pending = b.pending_webhook_events(10).await.expect("pending");
    assert_eq!(pending.len(), 3);
    for ((event, body), id) in pending.iter().zip(bodies).zip(&ids) {
        assert_eq!(
            (event.id, event.body.as_slice(), event.attempts),
            (*id, body, 0)
        );
    }
    assert_eq!(pending[1].received_at, T0 + 1);
    assert_eq!(
        b.pending_webhook_events(1).await.expect("pending")[0].id,
        ids[0]
    );
    // The processor's read-ahead: only the events after a given id, still oldest first.
    let after = b
        .pending_webhook_events_after(ids[0], 10)
        .await
        .expect("pending after");
    assert_eq!(
        after.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[1], ids[2]]
    );
    assert!(
        b.pending_webhook_events_after(ids[2], 10)
            .await
            .expect("pending after")
            .is_empty()
    );

    b.finish_webhook_event(ids[0], T0 + 10, None)
        .await
        .expect("done");
    b.finish_webhook_event(ids[1], T0 + 11, Some("malformed body: expected value"))
        .await
        .expect("done with a note");
    let pending = b.pending_webhook_events(10).await.expect("pending");
    assert_eq!(pending.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[2]]);
    assert_eq!(
        b.count_webhook_events().await.expect("count"),
        3,
        "kept, not deleted"
    );
}

/// The intake's group commit: 600 deliveries of different sizes in one call (more than one
/// multi-row statement) come back in order, each body with its own id and size budget.
async fn a_batch_of_deliveries_is_stored_in_order_with_its_sizes(b: &Backend) {
    b.insert_webhook_event(b"first", T0).await.expect("insert");
    let owned: Vec<Vec<u8>> = (0..600)
        .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 37)).into_bytes())
        .collect();
    let bodies: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
    let ids = b
        .insert_webhook_events(&bodies, T0 + 1)
        .await
        .expect("insert batch");
    assert_eq!(ids.len(), 600);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    assert!(
        b.insert_webhook_events(&[], T0)
            .await
            .expect("empty")
            .is_empty()
    );
    let mut seen = Vec::new();
    loop {
        let pending = b.pending_webhook_events(1_000).await.expect("pending");
        if pending.is_empty() {
            break;
        }
        let done: Vec<(i64, Option<String>)> = pending.iter().map(|e| (e.id, None)).collect();
        seen.extend(pending);
        b.finish_webhook_events(&done, T0 + 2).await.expect("done");
    }
    assert_eq!(seen.len(), 601);
    assert_eq!(seen[0].body, b"first");
    for ((event, body), id) in seen[1..].iter().zip(&owned).zip(&ids) {
        assert_eq!(
            (event.id, &event.body, event.received_at),
            (*id, body, T0 + 1)
        );
    }
    assert_eq!(b.count_webhook_events().await.expect("count"), 601);
}

/// "Nothing pending" is never the answer while an event waits, however the processor's
/// finishes interleave with the read: the read once took the pending ids and sizes in one
/// statement and the events in a second one that asked again for `processed_at IS NULL`, so a
/// round finished between the two left it with nothing below the first statement's ids and
/// it answered empty while later events waited (the API tests' `webhooks_processed()` then
/// returned early: docs/TESTING.md). Here events are finished one at a time, oldest first,
/// while the read runs in a loop: the last event is never finished, so every read must find
/// at least one event, and only events not finished before the read started.
async fn pending_events_are_never_missed_while_a_round_finishes(b: &Backend) {
    let bodies: Vec<&[u8]> = vec![b"{}"; 1_500];
    let ids = b.insert_webhook_events(&bodies, T0).await.expect("insert");
    let last = *ids.last().expect("ids");
    let store = b.store.clone();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let finisher = {
        let finished = finished.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            for id in &ids[..ids.len() - 1] {
                store
                    .finish_webhook_events(&[(*id, None)], T0 + 1)
                    .await
                    .expect("finish");
                finished.store(*id, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let mut reads = 0;
    while !finisher.is_finished() {
        let before = finished.load(std::sync::atomic::Ordering::SeqCst);
        let pending = b.pending_webhook_events(1).await.expect("pending");
        reads += 1;
        let first = pending.first().unwrap_or_else(|| {
            panic!("read {reads} found nothing pending while event {last} waited")
        });
        assert!(
            first.id > before && first.id <= last,
            "read {reads}: event {} was finished before the read",
            first.id
        );
    }
    finisher.await.expect("finisher");
    let pending = b.pending_webhook_events(10).await.expect("pending");
    assert_eq!(pending.iter().map(|e| e.id).collect::<Vec<_>>(), [last]);
    assert!(reads > 10, "the reads ran alongside the finishes: {reads}");
}

/// The retention sweep deletes applied webhooks received before its cutoff, oldest first, a
/// step of `limit` at a time with the cursor to go on; one not applied yet is kept whatever
/// its age, and the sweep stops at the first one received since the cutoff.
async fn applied_webhooks_past_their_retention_are_deleted_a_step_at_a_time(b: &Backend) {
    let mut ids = Vec::new();
    for at in [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 100] {
        ids.push(b.insert_webhook_event(b"{}", at).await.expect("insert"));
    }
    // All applied but the third (still pending).
    for (i, id) in ids.iter().enumerate() {
        if i != 2 {
            b.finish_webhook_event(*id, T0 + 200, None)
                .await
                .expect("finish");
        }
    }
    let first = b
        .prune_webhook_events(T0 + 50, i64::MIN, 2)
        .await
        .expect("prune");
    assert_eq!(
        first,
        parley_store::Pruned {
            deleted: 2,
            next: Some(ids[1])
        }
    );
    let second = b
        .prune_webhook_events(T0 + 50, ids[1], 2)
        .await
        .expect("prune");
    assert_eq!(
        second,
        parley_store::Pruned {
            deleted: 1,
            next: Some(ids[3])
        }
    );
    let last = b
        .prune_webhook_events(T0 + 50, ids[3], 2)
        .await
        .expect("prune");
    assert_eq!(
        last,
        parley_store::Pruned {
            deleted: 0,
            next: None
        }
    );
    assert_eq!(b.count_webhook_events().await.expect("count"), 2);
    // The pending one is still there, body and all.
    let pending = b.pending_webhook_events(10).await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, ids[2]);
    assert_eq!(pending[0].body, b"{}");
}

/// The retention sweep deletes an event written before its cutoff with its deliveries and
/// attempts once every delivery is done; an event with a pending delivery (its endpoint
/// disabled, waiting) or not fanned out yet is kept.
async fn finished_events_past_their_retention_are_deleted_with_their_deliveries(b: &Backend) {
    use parley_domain::{EventEndpointId, EventId};
    use parley_store::events::{AttemptOutcome, NewEndpoint, NewEvent};
    let t = crate::fixtures::tenant(&**b, 1).await;
    let endpoint = NewEndpoint {
        id: EventEndpointId::new(),
        application_id: t.app.clone(),
        url: "https://example.com/hooks".into(),
        description: String::new(),
        event_types: vec!["contact.updated".into()],
        secret: "whsec_test".into(),
        now: T0,
    };
    assert!(
        b.insert_event_endpoint(&endpoint, 20)
            .await
            .expect("endpoint")
    );
    let event = |i: i64| NewEvent {
        id: EventId::new(),
        application_id: t.app.clone(),
        kind: "contact.updated".into(),
        ordering_key: Some(format!("c{i}")),
        dedup_key: format!("e{i}"),
        payload: serde_json::json!({"i": i}),
        created_at: T0 + i,
    };
    b.insert_events(&[event(1), event(2)])
        .await
        .expect("events");
    assert_eq!(b.fan_out_events(10, T0 + 10).await.expect("fan out"), 2);
    // A third, written later, not fanned out yet.
    b.insert_events(&[event(3)]).await.expect("event");
    // The first is delivered; the second stays pending.
    let jobs = b
        .claim_event_deliveries(T0 + 20, T0 + 80, 10)
        .await
        .expect("claim");
    assert_eq!(jobs.len(), 2);
    let first = jobs
        .iter()
        .find(|j| j.payload.contains("\"i\":1"))
        .expect("the first event's delivery");
    b.record_event_attempt(&AttemptOutcome {
        delivery_id: first.id.clone(),
        endpoint_id: endpoint.id.clone(),
        attempt: 1,
        at: T0 + 30,
        duration_ms: 5,
        status_code: Some(204),
        response: None,
        error: None,
        delivered: true,
        next_attempt_at: None,
        disable_after_ms: i64::MAX,
        disable_reason: String::new(),
    })
    .await
    .expect("attempt");
    let pruned = b
        .prune_events(T0 + 1_000, i64::MIN, 100)
        .await
        .expect("prune");
    assert_eq!(
        pruned,
        parley_store::Pruned {
            deleted: 1,
            next: None
        }
    );
    let left = b
        .event_deliveries(&t.app, &endpoint.id, None, 10)
        .await
        .expect("deliveries");
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].payload.to_string().contains("\"i\":2"), "{left:?}");
    // A cutoff before them all deletes nothing.
    let none = b.prune_events(T0, i64::MIN, 100).await.expect("prune");
    assert_eq!(
        none,
        parley_store::Pruned {
            deleted: 0,
            next: None
        }
    );
    // A replay over the range queues the two events left (the deleted one is not there to
    // replay), and the sweep then keeps both: their deliveries are pending.
    let range = parley_store::events::ReplayRange {
        since: T0,
        until: T0 + 1_000,
        after: None,
        limit: 100,
    };
    let page = b
        .replay_event_range(&t.app, &endpoint.id, range, T0 + 40)
        .await
        .expect("replay")
        .expect("the endpoint");
    assert_eq!(page.replayed, 2);
    let kept = b
        .prune_events(T0 + 1_000, i64::MIN, 100)
        .await
        .expect("prune");
    assert_eq!(kept.deleted, 0);
}
