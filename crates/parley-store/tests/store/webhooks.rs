//! Raw webhook deliveries: stored before the 200, processed in arrival order.

use crate::backend::Backend;
use crate::fixtures::T0;

crate::contract!(webhook_events_are_kept_until_processed);

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
