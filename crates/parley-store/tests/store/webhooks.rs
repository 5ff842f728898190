//! Raw webhook deliveries: stored before the 200, processed in arrival order.

use crate::backend::Backend;
use crate::fixtures::T0;

crate::contract!(
    webhook_events_are_kept_until_processed,
    a_batch_of_deliveries_is_stored_in_order_with_its_sizes
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
