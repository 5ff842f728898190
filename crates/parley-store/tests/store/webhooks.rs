//! Raw webhook deliveries: stored before the 200, processed in arrival order.

use crate::backend::Backend;
use crate::fixtures::T0;

crate::contract!(
    webhook_events_are_kept_until_processed,
    a_batch_of_deliveries_is_stored_in_order_with_its_sizes,
    pending_events_are_never_missed_while_a_round_finishes
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
