//! Coexistence: a WhatsApp Business app number's sync state and the app's messages.

use parley_store::coexistence::AppMessageRecord;
use serde_json::json;

use crate::backend::Backend;
use crate::fixtures::{T0, tenant};

crate::contract!(
    a_coexistence_number_keeps_its_window_until_it_moves,
    app_messages_are_stored_once_and_late_media_replaces_its_placeholder
);

async fn a_coexistence_number_keeps_its_window_until_it_moves(b: &Backend) {
    let t = tenant(&**b, 1).await;
    let first = b
        .upsert_coexistence_number(&t.number, &t.app, &t.platform, T0)
        .await
        .expect("first sight");
    assert_eq!(
        (
            first.onboarded_at,
            first.contacts_sync.as_str(),
            first.history_sync.as_str()
        ),
        (T0, "pending", "pending")
    );
    let mut record = first.clone();
    record.contacts_sync = "requested".into();
    record.history_sync = "in_progress".into();
    record.history_progress = 55;
    record.offboarded_at = Some(T0 + 5);
    record.disconnection_reason = Some("PRIMARY_INACTIVITY".into());
    record.updated_at = T0 + 5;
    b.save_coexistence(&record).await.expect("save");
    // Read again (a refresh): the row and its window stay.
    let again = b
        .upsert_coexistence_number(&t.number, &t.app, &t.platform, T0 + 1_000)
        .await
        .expect("again");
    assert_eq!(again, record);
    assert_eq!(
        b.offboarded_numbers().await.expect("offboarded"),
        vec![t.number.clone()]
    );
    assert_eq!(
        b.platform_coexistence(&t.platform).await.expect("list"),
        vec![record]
    );
    // On another platform: a new onboarding, a new window.
    let other = tenant(&**b, 2).await;
    let moved = b
        .upsert_coexistence_number(&t.number, &other.app, &other.platform, T0 + 2_000)
        .await
        .expect("moved");
    assert_eq!(moved.onboarded_at, T0 + 2_000);
    assert_eq!(moved.history_sync, "pending");
    assert_eq!(moved.offboarded_at, None);
    assert!(b.offboarded_numbers().await.expect("offboarded").is_empty());
}

async fn app_messages_are_stored_once_and_late_media_replaces_its_placeholder(b: &Backend) {
    let t = tenant(&**b, 3).await;
    let row = |wamid: &str, kind: &str, text: Option<&str>| AppMessageRecord {
        wamid: wamid.into(),
        application_id: t.app.clone(),
        phone_number_id: t.number.clone(),
        contact_id: None,
        contact_phone: "+16505551234".into(),
        direction: "outbound".into(),
        source: "history".into(),
        kind: kind.into(),
        text: text.map(str::to_owned),
        history_status: Some("READ".into()),
        raw: json!({"id": wamid, "type": kind}),
        sent_at: T0,
        created_at: T0,
    };
    let written = b
        .insert_app_messages(&[
            row("wamid.A", "text", Some("Hello")),
            row("wamid.B", "media_placeholder", None),
        ])
        .await
        .expect("insert");
    assert_eq!(written, 2);
    // Delivered again: nothing changes, not even the text.
    let written = b
        .insert_app_messages(&[row("wamid.A", "text", Some("Changed"))])
        .await
        .expect("again");
    assert_eq!(written, 0);
    // The late media takes the placeholder's place.
    b.insert_app_messages(&[row("wamid.B", "image", Some("caption"))])
        .await
        .expect("late media");
    let rows = b
        .contact_app_messages(&t.app, "+16505551234", 10)
        .await
        .expect("read");
    let mut kinds: Vec<(String, String, Option<String>)> = rows
        .into_iter()
        .map(|r| (r.wamid, r.kind, r.text))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("wamid.A".into(), "text".into(), Some("Hello".into())),
            ("wamid.B".into(), "image".into(), Some("caption".into())),
        ]
    );
    // Another application sees none of them.
    let other = tenant(&**b, 4).await;
    assert!(
        b.contact_app_messages(&other.app, "+16505551234", 10)
            .await
            .expect("other")
            .is_empty()
    );
}
