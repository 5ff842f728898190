//! Per-contact order of single sends (issue 15: a burst of replies reached Meta out of order).
//! Inbox replies and `POST /api/v1/messages` to one contact from one number reach Meta in the
//! order Parley accepted them: a message Meta defers (the pair rate's 131056, a transient
//! error) keeps the ones behind it waiting; one that fails for good lets them go; another
//! contact's messages do not wait behind it. (The burst itself: `inbox_load.rs`.)

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_configured};

/// The customer writes (the window opens); the contact's id once Parley stored the message.
async fn customer_writes(app: &TestApp, phone: &str) -> String {
    app.sandbox_post("/sandbox/inbound", &json!({"from": phone, "text": "hello"}))
        .await;
    let path = format!("/api/v1/conversations/{}", phone.replace('+', "%2B"));
    for _ in 0..400 {
        let (status, c) = app.api_call(Method::GET, &path, None).await;
        if status == 200 && c["last_message"]["direction"] == "inbound" {
            return c["contact"]["id"].as_str().expect("id").to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Parley never stored {phone}'s message");
}

/// An inbox reply through the API; its message id.
async fn reply(app: &TestApp, contact: &str, text: &str) -> String {
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/conversations/{contact}/messages"),
            Some(&json!({"text": text})),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().expect("id").to_owned()
}

/// Our ids of the sends Meta accepted for `phone`, in the order Meta accepted them.
async fn accepted_for(app: &TestApp, phone: &str) -> Vec<String> {
    let digits = phone.trim_start_matches('+');
    app.sandbox_messages()
        .await
        .into_iter()
        .filter(|m| m["to"].as_str().map(|t| t.trim_start_matches('+')) == Some(digits))
        .map(|m| {
            m["request"]["biz_opaque_callback_data"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Every send to `phone` that reached Meta, accepted or refused, oldest first:
/// `(outcome, code)`.
async fn sends_to(app: &TestApp, phone: &str) -> Vec<(String, Option<i64>)> {
    let digits = phone.trim_start_matches('+');
    app.sandbox_sends()
        .await
        .into_iter()
        .filter(|r| r["to"].as_str().map(|t| t.trim_start_matches('+')) == Some(digits))
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or("").to_owned(),
                r["code"].as_i64(),
            )
        })
        .collect()
}

/// Polls until Meta refused a send to `phone` with `code` (20 s at most).
async fn wait_refused(app: &TestApp, phone: &str, code: i64) {
    for _ in 0..400 {
        if sends_to(app, phone)
            .await
            .iter()
            .any(|(o, c)| o == "refused" && *c == Some(code))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Meta never refused a send to {phone} with {code}");
}

/// Moves both clocks on (Parley keeps Meta's pair rate: one message to a user every 6 s)
/// until Meta accepted `n` sends to `phone`; those sends' ids in Meta's order.
async fn until_accepted(app: &TestApp, phone: &str, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..200 {
        got = accepted_for(app, phone).await;
        if got.len() >= n {
            return got;
        }
        app.advance(Duration::from_secs(6)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Meta accepted only {got:?} for {phone}, not {n}");
}

#[tokio::test]
async fn a_reply_meta_defers_for_the_pair_rate_keeps_its_place_ahead_of_the_next() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(3).await;
    let contact = customer_writes(&app, &phone).await;
    // Meta answers the first send with its pair-rate error (131056): retried after 4^0 s.
    app.sandbox_post("/sandbox/faults", &json!({"fail_next": [131056]}))
        .await;
    let first = reply(&app, &contact, "first").await;
    wait_refused(&app, &phone, 131056).await;
    // Queued while the first waits for its retry, by the transactional API this time: the
    // same contact from the same number, so it goes behind the first.
    let resp = app
        .post_message(&json!({"to": phone, "text": "second"}))
        .await;
    assert_eq!(resp.status(), 202);
    let second = resp.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let order = until_accepted(&app, &phone, 2).await;
    assert_eq!(order, vec![first.clone(), second.clone()]);
    // Each reached Meta once accepted; the first twice in all (refused, then accepted).
    assert_eq!(
        sends_to(&app, &phone).await,
        vec![
            ("refused".to_owned(), Some(131056)),
            ("accepted".to_owned(), None),
            ("accepted".to_owned(), None),
        ]
    );
    assert_eq!(app.get_message(&first).await["attempts"], 2);
    assert_eq!(app.get_message(&second).await["attempts"], 1);
    app.assert_no_rate_refusals().await;
}

#[tokio::test]
async fn a_reply_that_fails_for_good_at_the_head_lets_the_next_one_go() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(4).await;
    let contact = customer_writes(&app, &phone).await;
    // The first send is deferred (131056), its retry refused for good (131026): the one
    // queued behind it meanwhile goes once the first has failed, and only then.
    app.sandbox_post("/sandbox/faults", &json!({"fail_next": [131056, 131026]}))
        .await;
    let first = reply(&app, &contact, "first").await;
    wait_refused(&app, &phone, 131056).await;
    let second = reply(&app, &contact, "second").await;

    let failed = app.wait_for_state(&first, "failed").await;
    assert_eq!(failed["error"]["code"], 131026, "{failed}");
    assert_eq!(until_accepted(&app, &phone, 1).await, vec![second.clone()]);
    app.wait_for_state(&second, "read").await;
    // The second reached Meta once, after both of the first's attempts.
    assert_eq!(
        sends_to(&app, &phone).await,
        vec![
            ("refused".to_owned(), Some(131056)),
            ("refused".to_owned(), Some(131026)),
            ("accepted".to_owned(), None),
        ]
    );
}

#[tokio::test]
async fn a_contact_whose_head_waits_for_a_retry_does_not_hold_up_another_contact() {
    // A retry an hour away (the backoff's base): only an advance of the clocks brings it.
    let app = spawn_app_configured(
        |_| {},
        |c| {
            c.base_backoff = Duration::from_secs(3600);
            c.max_backoff = Duration::from_secs(3600);
        },
    )
    .await;
    let (waiting_phone, _) = app.contact(5).await;
    let (other_phone, _) = app.contact(6).await;
    let waiting = customer_writes(&app, &waiting_phone).await;
    let other = customer_writes(&app, &other_phone).await;
    app.sandbox_post("/sandbox/faults", &json!({"fail_next": [131000]}))
        .await;
    let first = reply(&app, &waiting, "first").await;
    wait_refused(&app, &waiting_phone, 131000).await;
    let second = reply(&app, &waiting, "second").await;
    // Queued after both: another contact, so it does not wait for them.
    let elsewhere = reply(&app, &other, "meanwhile").await;
    app.wait_for_state(&elsewhere, "read").await;
    // The claim that sent it saw the second (queued before it) and left it: the first is
    // still waiting for its retry, the second behind it, and neither reached Meta again.
    assert_eq!(app.get_message(&first).await["state"], "queued");
    assert_eq!(app.get_message(&second).await["state"], "queued");
    assert_eq!(
        sends_to(&app, &waiting_phone).await,
        vec![("refused".to_owned(), Some(131000))]
    );

    // The retry's hour passes: the first goes, then the second.
    app.advance(Duration::from_secs(2 * 3600)).await;
    assert_eq!(
        until_accepted(&app, &waiting_phone, 2).await,
        vec![first, second]
    );
    app.assert_no_rate_refusals().await;
}
