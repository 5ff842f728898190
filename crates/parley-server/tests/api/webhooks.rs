use serde_json::{Value, json};

use crate::helpers::{spawn_app, status_webhook};

#[tokio::test]
async fn verify_handshake_echoes_the_challenge() {
    let app = spawn_app().await;
    let ok = app
        .http
        .get(format!(
            "{}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=parley-demo-verify&hub.challenge=1158201444",
            app.url
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("text"), "1158201444");
    let bad = app
        .http
        .get(format!(
            "{}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            app.url
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 403);
}

#[tokio::test]
async fn bad_signature_gets_401_and_changes_nothing() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    app.sandbox_post("/sandbox/faults", &json!({"drop_webhooks": 1.0}))
        .await;
    let id = app
        .send(&json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}))
        .await;
    let m = app.wait_for_state(&id, "accepted").await;
    let wamid = m["wamid"].as_str().expect("wamid").to_owned();
    let before = app.store.count_webhook_events().await.expect("count");

    let body = serde_json::to_vec(&status_webhook(&[(&wamid, "read", Some(&id))])).expect("json");
    let forged = parley_meta::sign(b"not the app secret", &body);
    assert_eq!(app.post_webhook(&body, Some(&forged)).await, 401);
    assert_eq!(app.post_webhook(&body, None).await, 401);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        app.post_webhook(&tampered, Some(&app.sign(&body))).await,
        401
    );

    assert_eq!(
        app.store.count_webhook_events().await.expect("count"),
        before
    );
    // Positive evidence that the processor ran past where the forged bodies would be: a
    // signed event posted after them has been processed, and the message did not move.
    let marker = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "brand_new_field", "value": {"x": 1}}]}]})).expect("json");
    assert_eq!(
        app.post_webhook(&marker, Some(&app.sign(&marker))).await,
        200
    );
    app.webhooks_processed().await;
    assert_eq!(
        app.store.count_webhook_events().await.expect("count"),
        before + 1
    );
    assert_eq!(app.get_message(&id).await["state"], "accepted");

    // The same body, correctly signed, is taken.
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    app.wait_for_state(&id, "read").await;
}

/// Every order and duplication of the same statuses ends in the same state.
#[tokio::test]
async fn shuffled_and_duplicated_statuses_give_the_same_final_state() {
    let app = spawn_app().await;
    app.sandbox_post("/sandbox/faults", &json!({"drop_webhooks": 1.0}))
        .await;
    let orders: [&[&str]; 5] = [
        &["sent", "delivered", "read"],
        &["read", "delivered", "sent"],
        &["delivered", "read", "sent", "read", "delivered"],
        &["read", "read", "sent"],
        &["sent", "read", "sent", "delivered", "delivered", "read"],
    ];
    let mut ids = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        let (phone, _) = app.contact(i).await;
        let id = app
            .send(&json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}))
            .await;
        let m = app.wait_for_state(&id, "accepted").await;
        let wamid = m["wamid"].as_str().expect("wamid").to_owned();
        // Half the statuses name the message by callback data, half only by wamid.
        for (k, status) in order.iter().enumerate() {
            let cb = (k % 2 == 0).then_some(id.as_str());
            let body = serde_json::to_vec(&status_webhook(&[(&wamid, status, cb)])).expect("json");
            assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
        }
        ids.push(id);
    }
    for id in &ids {
        let m = app.wait_for_state(id, "read").await;
        assert!(m["timestamps"]["read"].is_string());
        assert!(m["timestamps"]["sent"].is_string());
    }
    // One batch holding all three statuses, reversed, is the same.
    let (phone, _) = app.contact(6).await;
    let id = app
        .send(&json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}))
        .await;
    let wamid = app.wait_for_state(&id, "accepted").await["wamid"]
        .as_str()
        .expect("wamid")
        .to_owned();
    let body = serde_json::to_vec(&status_webhook(&[
        (&wamid, "read", None),
        (&wamid, "delivered", None),
        (&wamid, "sent", None),
    ]))
    .expect("json");
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    app.wait_for_state(&id, "read").await;
}

#[tokio::test]
async fn sandbox_duplicated_and_reordered_webhooks_end_in_read() {
    let app = spawn_app().await;
    app.sandbox_post(
        "/sandbox/faults",
        &json!({"duplicate_webhooks": 1.0, "reorder_webhooks": true}),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let (phone, _) = app.contact(i).await;
        ids.push(
            app.send(&json!({"to": phone, "template": {"name": "order_update", "language": "en",
                     "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}", "order_id": format!("A-{i}")}}}))
                .await,
        );
    }
    for id in &ids {
        app.wait_for_state(id, "read").await;
    }
    let log: Value = app
        .http
        .get(format!("{}/sandbox/webhooks", app.sandbox_url))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    assert!(
        log["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|d| d["duplicate"] == true),
        "the sandbox did duplicate webhooks"
    );
}

#[tokio::test]
async fn a_status_that_outruns_the_send_is_kept_and_folded_in() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    // Meta takes the send but its answer is held for 5 s; its own status webhooks are lost.
    // Meanwhile a `delivered` for the new wamid, naming it only by wamid, reaches Parley.
    app.sandbox_post(
        "/sandbox/faults",
        &json!({"timeout_rate": 1.0, "timeout_ms": 5_000, "drop_webhooks": 1.0}),
    )
    .await;
    let id = app
        .send(&json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}))
        .await;
    let mut wamid = None;
    for _ in 0..400 {
        if let Some(m) = app.sandbox_messages().await.first() {
            wamid = m["wamid"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let wamid = wamid.expect("Meta took the send");
    let body = serde_json::to_vec(&status_webhook(&[(&wamid, "delivered", None)])).expect("json");
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    // Other kept-but-not-understood events: an unknown field and a body that is not JSON.
    let unknown_field = serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "brand_new_field", "value": {"x": 1}}]}]})).expect("json");
    assert_eq!(
        app.post_webhook(&unknown_field, Some(&app.sign(&unknown_field)))
            .await,
        200
    );
    let garbage = b"this is not json".to_vec();
    assert_eq!(
        app.post_webhook(&garbage, Some(&app.sign(&garbage))).await,
        200
    );
    app.webhooks_processed().await;
    assert_eq!(app.store.count_webhook_events().await.expect("count"), 3);
    // Processed before Meta's answer came back: the status had no message to go to yet.
    let m = app.get_message(&id).await;
    assert!(
        m["wamid"].is_null() && m["state"] == "sending",
        "the answer came back before the status was processed; nothing to test: {m}"
    );
    // Meta's answer arrives: the acceptance folds the stored status in.
    let m = app.wait_for_state(&id, "delivered").await;
    assert_eq!(m["wamid"], wamid.as_str(), "{m}");
    assert!(m["timestamps"]["delivered"].is_string(), "{m}");
}

/// A status whose wamid does not parse is noted and skipped; the rest of the event applies.
#[tokio::test]
async fn a_malformed_wamid_costs_only_its_own_status() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    app.sandbox_post("/sandbox/faults", &json!({"drop_webhooks": 1.0}))
        .await;
    let id = app
        .send(&json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}))
        .await;
    let m = app.wait_for_state(&id, "accepted").await;
    let wamid = m["wamid"].as_str().expect("wamid").to_owned();
    let body = serde_json::to_vec(&status_webhook(&[
        ("", "delivered", None),
        (&wamid, "read", Some(&id)),
    ]))
    .expect("json");
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    app.wait_for_state(&id, "read").await;
}
