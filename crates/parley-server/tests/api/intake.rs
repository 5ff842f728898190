//! Webhook intake under concurrency: many signed deliveries at once share the intake's
//! group-commit transactions, each is stored once and applied; refusals (bad signature, too
//! large, the queue full) store nothing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, backend, spawn_app, spawn_app_tuned, status_webhook};

/// A delivery Parley stores and does not act on, told apart by `n`.
fn marker(n: usize) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "1",
        "changes": [{"field": "intake_marker", "value": {"n": n}}]}]}),
    )
    .expect("json")
}

/// Sends `n` messages with the sandbox's webhooks off; their ids and wamids.
async fn accepted_messages(app: &TestApp, n: usize) -> Vec<(String, String)> {
    app.sandbox_post("/sandbox/faults", &json!({"drop_webhooks": 1.0}))
        .await;
    let mut out = Vec::new();
    for i in 0..n {
        let (phone, _) = app.contact(i).await;
        let id = app
            .send(&json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}))
            .await;
        let m = app.wait_for_state(&id, "accepted").await;
        out.push((id, m["wamid"].as_str().expect("wamid").to_owned()));
    }
    out
}

#[tokio::test]
async fn a_burst_of_concurrent_signed_webhooks_is_stored_and_applied_once_each() {
    let app = spawn_app().await;
    let messages = accepted_messages(&app, 12).await;
    let before = app.store.count_webhook_events().await.expect("count");
    // Each message's three statuses in three deliveries, plus markers: 300 at once.
    let mut bodies = Vec::new();
    for (id, wamid) in &messages {
        for status in ["sent", "delivered", "read"] {
            bodies.push(
                serde_json::to_vec(&status_webhook(&[(wamid, status, Some(id))])).expect("json"),
            );
        }
    }
    while bodies.len() < 300 {
        bodies.push(marker(bodies.len()));
    }
    let mut posts = tokio::task::JoinSet::new();
    for b in bodies {
        let req = app
            .http
            .post(format!("{}/webhooks/whatsapp", app.url))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", app.sign(&b))
            .body(b);
        posts.spawn(async move { req.send().await.expect("webhook").status().as_u16() });
    }
    let answers = posts.join_all().await;
    assert!(
        answers.iter().all(|s| *s == 200),
        "every delivery is acknowledged: {answers:?}"
    );
    // Acknowledged means committed: every one is there before the processor is waited for.
    assert_eq!(
        app.store.count_webhook_events().await.expect("count"),
        before + 300
    );
    app.webhooks_processed().await;
    assert_eq!(
        app.store.count_webhook_events().await.expect("count"),
        before + 300,
        "each delivery stored once"
    );
    for (id, _) in &messages {
        let m = app.get_message(id).await;
        assert_eq!(m["state"], "read", "{m}");
        for t in ["sent", "delivered", "read"] {
            assert!(m["timestamps"][t].is_string(), "{t} applied: {m}");
        }
    }
}

#[tokio::test]
async fn an_oversized_or_unsigned_webhook_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let before = app.store.count_webhook_events().await.expect("count");
    let mut big = br#"{"object":"whatsapp_business_account","entry":[],"pad":""#.to_vec();
    big.resize(parley_server::WEBHOOK_BODY_LIMIT + 1, b'x');
    big.extend_from_slice(br#""}"#);
    assert_eq!(app.post_webhook(&big, Some(&app.sign(&big))).await, 413);
    let body = marker(1);
    let forged = parley_meta::sign(b"not the app secret", &body);
    assert_eq!(app.post_webhook(&body, Some(&forged)).await, 401);
    assert_eq!(app.post_webhook(&body, None).await, 401);
    // A signed delivery after them is stored alone: the refused ones never reached the intake.
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    assert_eq!(
        app.store.count_webhook_events().await.expect("count"),
        before + 1
    );
}

/// Holds the database's write lock (SQLite) or the events table's (PostgreSQL) so that the
/// intake's writer waits, until dropped.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn take(app: &TestApp) -> WriteLock {
        use sqlx::Connection as _;
        match backend() {
            Backend::Sqlite => {
                let opts = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&app.db_path)
                    .busy_timeout(Duration::from_secs(10));
                let mut c = sqlx::SqliteConnection::connect_with(&opts)
                    .await
                    .expect("sqlite");
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut c)
                    .await
                    .expect("lock");
                WriteLock::Sqlite(c)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(app.pg_url().expect("pg url"))
                    .await
                    .expect("postgres");
                sqlx::query("BEGIN").execute(&mut c).await.expect("begin");
                sqlx::query("LOCK TABLE webhook_events IN EXCLUSIVE MODE")
                    .execute(&mut c)
                    .await
                    .expect("lock");
                WriteLock::Postgres(c)
            }
        }
    }

    async fn release(self) {
        match self {
            WriteLock::Sqlite(mut c) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut c)
                    .await
                    .expect("unlock");
            }
            WriteLock::Postgres(mut c) => {
                sqlx::query("ROLLBACK")
                    .execute(&mut c)
                    .await
                    .expect("unlock");
            }
        }
    }
}

#[tokio::test]
async fn a_full_intake_queue_answers_503_with_retry_after_and_stores_only_what_it_acknowledged() {
    const QUEUE: usize = 2;
    const SENT: usize = 24;
    let app = spawn_app_tuned(None, |c| c.webhook_queue = QUEUE).await;
    let before = app.store.count_webhook_events().await.expect("count");
    let lock = WriteLock::take(&app).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..SENT {
        let body = marker(n);
        let req = app
            .http
            .post(format!("{}/webhooks/whatsapp", app.url))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", app.sign(&body))
            .body(body);
        let tx = tx.clone();
        tokio::spawn(async move {
            let resp = req.send().await.expect("webhook");
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let _ = tx.send((status, retry, body));
        });
    }
    drop(tx);
    // The writer holds at most one batch (at most the queue's size) while the lock stands, and
    // the queue holds as many again: every other delivery is refused at once.
    let mut answers = Vec::new();
    while answers.len() < SENT - 2 * QUEUE {
        let a = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no refusal while the writer waits: {answers:?}"));
        answers.push(a.expect("answer"));
    }
    lock.release().await;
    while let Some(a) = rx.recv().await {
        answers.push(a);
    }
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    let taken = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(refused.len() + taken, SENT, "only 200 or 503: {answers:?}");
    assert!(refused.len() >= SENT - 2 * QUEUE, "{answers:?}");
    for (_, retry, body) in &refused {
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "intake_busy");
    }
    assert_eq!(
        app.store.count_webhook_events().await.expect("count"),
        before + taken as u64,
        "exactly the acknowledged deliveries are stored"
    );
    // Room again once the writer caught up.
    let body = marker(SENT);
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
}
