//! Event webhooks out (issue 15 part 3): a real receiver on a random port that fails, then
//! recovers; every request verified with the `standardwebhooks` crate (and, when Python's
//! `standardwebhooks` package is installed, by a Python receiver); a restart in the middle of
//! the retries; replays; an endpoint disabled after failing for its period; SSRF refusals.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, spawn_app, spawn_app_tuned};

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
struct Got {
    headers: HeaderMap,
    body: Vec<u8>,
    answered: u16,
}

impl Got {
    fn id(&self) -> String {
        self.headers["webhook-id"].to_str().expect("id").to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// A receiver on 127.0.0.1:0 that answers 500 to its first `fail_first` requests (or to all
/// while `failing` is set), then 204.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    fail_first: Arc<AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    _stop: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        let r = Receiver {
            url,
            got: Arc::default(),
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            failing: Arc::default(),
            _stop: Arc::new(StopOnDrop(stop.clone())),
        };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let fail = state.failing.load(Ordering::SeqCst)
                        || state
                            .fail_first
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                    let answered = if fail { 500 } else { 204 };
                    state.got.lock().expect("lock").push(Got {
                        headers,
                        body: body.to_vec(),
                        answered,
                    });
                    match fail {
                        true => {
                            (StatusCode::INTERNAL_SERVER_ERROR, "receiver down").into_response()
                        }
                        false => StatusCode::NO_CONTENT.into_response(),
                    }
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .ok();
        });
        r
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }

    fn delivered(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.answered < 300)
            .collect()
    }
}

use axum::response::IntoResponse;

async fn create_endpoint(app: &TestApp, url: &str, types: &[&str]) -> (String, String) {
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/event-endpoints",
            Some(&json!({"url": url, "event_types": types, "description": "CRM"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let secret = v["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{v}");
    (v["id"].as_str().expect("id").to_owned(), secret)
}

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/event-endpoints/{endpoint}/deliveries?limit=200&after={a}"),
            None => format!("/api/v1/event-endpoints/{endpoint}/deliveries?limit=200"),
        };
        let (status, v) = app.api_call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{v}");
        out.extend(v["data"].as_array().expect("data").iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Polls (generously) until `check` holds for the endpoint's deliveries.
async fn wait_deliveries(
    app: &TestApp,
    endpoint: &str,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    for _ in 0..600 {
        let d = deliveries(app, endpoint).await;
        if check(&d) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what}: deliveries never got there: {:#}",
        json!(deliveries(app, endpoint).await)
    );
}

fn verify_all(secret: &str, got: &[Got]) {
    let wh = standardwebhooks::Webhook::new(secret).expect("secret reads");
    for g in got {
        wh.verify(&g.body, &g.headers)
            .unwrap_or_else(|e| panic!("signature of {} does not verify: {e:?}", g.id()));
        let sig = g.headers["webhook-signature"].to_str().expect("sig");
        assert!(sig.starts_with("v1,"), "{sig}");
        assert_eq!(g.json()["id"], g.id(), "the body's id is the webhook-id");
    }
}

async fn put_tags(app: &TestApp, phone: &str, tags: Value) {
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{}", phone.replace('+', "%2B")),
            Some(&json!({"tags": tags})),
        )
        .await;
    assert!(status < 300, "{v}");
}

/// The `n` tag values each contact's delivered `contact.updated` events carried, in arrival
/// order.
fn sequences(delivered: &[Got]) -> BTreeMap<String, Vec<i64>> {
    let mut by_contact: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for g in delivered {
        let v = g.json();
        if v["type"] == "contact.updated" {
            by_contact
                .entry(v["data"]["address"].as_str().expect("address").to_owned())
                .or_default()
                .push(v["data"]["tags_changed"]["n"].as_i64().expect("n"));
        }
    }
    by_contact
}

#[tokio::test]
async fn a_receiver_that_fails_then_recovers_gets_every_event_once_in_order_and_verified() {
    let app = spawn_app().await;
    let receiver = Receiver::start(7).await;
    let (endpoint, secret) = create_endpoint(
        &app,
        &receiver.url,
        &["contact.updated", "message.status", "message.received"],
    )
    .await;
    let mut phones = Vec::new();
    for i in 0..3 {
        phones.push(app.contact(i).await.0);
    }
    for n in 1..=3 {
        for phone in &phones {
            put_tags(&app, phone, json!({"n": n})).await;
        }
    }
    // A send to the first contact: its statuses join that contact's order.
    let message = app
        .send(&json!({"to": phones[0], "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}))
        .await;
    app.wait_for_state(&message, "read").await;
    // The customer answers: message.received.
    let (_, first) = (0, &phones[0]);
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": first, "text": "thanks"}),
    )
    .await;

    let all = wait_deliveries(&app, &endpoint, "all delivered", |d| {
        let kinds: HashSet<&str> = d.iter().filter_map(|x| x["event_type"].as_str()).collect();
        d.len() >= 12
            && kinds.contains("message.received")
            && d.iter().any(|x| x["payload"]["data"]["status"] == "read")
            && d.iter().all(|x| x["state"] == "delivered")
    })
    .await;

    let got = receiver.got();
    verify_all(&secret, &got);
    let delivered = receiver.delivered();
    // Every event once: each delivered webhook-id is distinct, and each is a delivery the API
    // lists (and every listed delivery arrived).
    let ids: Vec<String> = delivered.iter().map(Got::id).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an event arrived twice: {ids:?}");
    let listed: HashSet<String> = all
        .iter()
        .map(|d| d["event_id"].as_str().expect("event id").to_owned())
        .collect();
    assert_eq!(
        unique.into_iter().cloned().collect::<HashSet<_>>(),
        listed,
        "what arrived is what the API lists"
    );
    // The failures were retried and are visible with every attempt.
    assert!(got.iter().filter(|g| g.answered == 500).count() == 7);
    let retried: Vec<&Value> = all
        .iter()
        .filter(|d| d["attempts"].as_i64() > Some(1))
        .collect();
    assert!(!retried.is_empty(), "some delivery needed a retry");
    for d in &retried {
        let log = d["attempt_log"].as_array().expect("log");
        assert_eq!(log.len() as i64, d["attempts"].as_i64().expect("n"), "{d}");
        assert_eq!(log[0]["status_code"], 500, "{d}");
        assert_eq!(log[0]["response"], "receiver down", "{d}");
        assert_eq!(log.last().expect("last")["status_code"], 204, "{d}");
    }
    // In order per contact: each contact's updates arrived 1, 2, 3 …
    let seqs = sequences(&delivered);
    assert_eq!(seqs.len(), 3, "{seqs:?}");
    for (contact, ns) in &seqs {
        assert_eq!(ns, &vec![1, 2, 3], "{contact}'s updates out of order");
    }
    // … and the first contact's statuses after its updates, in lattice order, before the
    // answer that came after the read.
    let first_events: Vec<(String, String)> = delivered
        .iter()
        .map(Got::json)
        .filter(|v| {
            v["data"]["address"] == phones[0].as_str()
                || v["data"]["to"] == phones[0].as_str()
                || v["data"]["from"]["phone"] == phones[0].as_str()
        })
        .map(|v| {
            (
                v["type"].as_str().expect("type").to_owned(),
                v["data"]["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let statuses: Vec<&str> = first_events
        .iter()
        .filter(|(t, _)| t == "message.status")
        .map(|(_, s)| s.as_str())
        .collect();
    let rank = |s: &str| {
        ["accepted", "sent", "delivered", "read"]
            .iter()
            .position(|x| *x == s)
    };
    assert!(
        statuses.windows(2).all(|w| rank(w[0]) < rank(w[1])),
        "statuses out of order: {statuses:?}"
    );
    assert_eq!(
        first_events.last().map(|(t, _)| t.as_str()),
        Some("message.received"),
        "{first_events:?}"
    );
}

/// Parley stops while the receiver is down with deliveries mid-retry; a new engine over the
/// same database (no memory of the first) delivers every one, once, in order.
#[tokio::test]
async fn a_restart_mid_retry_loses_nothing() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0).await;
    receiver.failing.store(true, Ordering::SeqCst);
    let (endpoint, secret) = create_endpoint(&app, &receiver.url, &["contact.updated"]).await;
    let mut phones = Vec::new();
    for i in 0..4 {
        phones.push(app.contact(i).await.0);
    }
    for n in 1..=3 {
        for phone in &phones {
            put_tags(&app, phone, json!({"n": n})).await;
        }
    }
    // Mid-retry: every contact's first update failed at least twice.
    wait_deliveries(&app, &endpoint, "retrying", |d| {
        d.len() == 12
            && d.iter()
                .filter(|x| x["attempts"].as_i64() >= Some(2))
                .count()
                >= 4
    })
    .await;
    // Stop the first Parley (server and workers); what it had in flight finishes failing.
    app.shutdown.cancel();
    let before = receiver.got().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.delivered().is_empty());
    let _ = before;

    // A second Parley over the same database.
    let shutdown = CancellationToken::new();
    let second = parley_engine::Engine::new(
        app.store.clone(),
        parley_meta::GraphClient::new(&app.sandbox_url, "v27.0"),
        Arc::new(app.clock.clone()),
        app.engine.config.clone(),
    );
    // Its workers (the deliveries run under the job's lease, which the first one released).
    let mut workers = second.spawn_workers(shutdown.clone());
    receiver.failing.store(false, Ordering::SeqCst);
    let app_id = app.store.applications().await.expect("apps")[0].id.clone();
    let ep = parley_engine::events::endpoint_id(&endpoint).expect("id");
    for _ in 0..600 {
        let d = second
            .event_deliveries(&app_id, &ep, None, 200)
            .await
            .expect("deliveries");
        if d.len() == 12 && d.iter().all(|x| x.state == "delivered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = second
        .event_deliveries(&app_id, &ep, None, 200)
        .await
        .expect("deliveries");
    assert!(
        d.iter().all(|x| x.state == "delivered"),
        "not all delivered after the restart: {d:?}"
    );
    shutdown.cancel();
    while let Some(w) = workers.join_next().await {
        w.expect("worker");
    }
    verify_all(&secret, &receiver.got());
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 12, "each of the 12 events once");
    let ids: HashSet<String> = delivered.iter().map(Got::id).collect();
    assert_eq!(ids.len(), 12);
    for (contact, ns) in sequences(&delivered) {
        assert_eq!(ns, vec![1, 2, 3], "{contact}'s updates out of order");
    }
}

#[tokio::test]
async fn one_delivery_and_a_time_range_are_replayed() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0).await;
    let start = time::OffsetDateTime::now_utc() - time::Duration::seconds(5);
    let (endpoint, secret) = create_endpoint(&app, &receiver.url, &["contact.updated"]).await;
    let (phone, _) = app.contact(0).await;
    put_tags(&app, &phone, json!({"n": 1})).await;
    put_tags(&app, &phone, json!({"n": 2})).await;
    let d = wait_deliveries(&app, &endpoint, "delivered", |d| {
        d.len() == 2 && d.iter().all(|x| x["state"] == "delivered")
    })
    .await;
    assert_eq!(receiver.delivered().len(), 2);
    let one = d[0]["id"].as_str().expect("id");
    let event = d[0]["event_id"].as_str().expect("event");
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/event-endpoints/{endpoint}/deliveries/{one}/replay"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{v}");
    for _ in 0..600 {
        if receiver.delivered().len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.delivered();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].id(), event, "the replay carries the same webhook-id");
    // A range: both events again.
    let since = start
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/event-endpoints/{endpoint}/replay"),
            Some(&json!({"since": since})),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["replayed"], 2, "{v}");
    for _ in 0..600 {
        if receiver.delivered().len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.delivered().len(), 5);
    verify_all(&secret, &receiver.got());
    // A replay of a delivery another endpoint does not have is 404.
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!(
                "/api/v1/event-endpoints/{endpoint}/deliveries/dlv_0190c3b5a1b27c3e8a1b2c3d4e5f6a7b/replay"
            ),
            None,
        )
        .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "event_delivery_not_found");
}

#[tokio::test]
async fn an_endpoint_failing_for_its_period_is_disabled_with_a_notice_and_resumes_when_enabled() {
    let app = spawn_app_tuned(None, |c| {
        c.events.disable_after = Duration::from_millis(600);
        c.events.max_backoff = Duration::from_millis(100);
    })
    .await;
    let receiver = Receiver::start(0).await;
    receiver.failing.store(true, Ordering::SeqCst);
    let (endpoint, secret) = create_endpoint(&app, &receiver.url, &["contact.updated"]).await;
    let (phone, _) = app.contact(0).await;
    put_tags(&app, &phone, json!({"n": 1})).await;
    let mut v = Value::Null;
    for _ in 0..600 {
        v = app
            .api_call(
                Method::GET,
                &format!("/api/v1/event-endpoints/{endpoint}"),
                None,
            )
            .await
            .1;
        if v["state"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(v["state"], "disabled", "{v}");
    assert!(
        v["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("failed")),
        "{v}"
    );
    assert!(v["failing_since"].is_string(), "{v}");
    // Disabled: nothing more is attempted. The worker made a full pass after the attempts
    // counted below.
    let attempts = receiver.got().len();
    let passes = app.engine.progress.event_passes();
    for _ in 0..600 {
        if app.engine.progress.event_passes() >= passes + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Attempts in flight at the moment it was disabled may still land: at most one.
    assert!(receiver.got().len() <= attempts + 1);
    // The console shows the notice too.
    let cookie = app.console_cookie().await;
    let (status, page) = app.console_get(&cookie, "/settings/events").await;
    assert_eq!(status, 200);
    assert!(page.contains("disabled"), "{page}");
    // Fixed and enabled again: the pending delivery goes out.
    receiver.failing.store(false, Ordering::SeqCst);
    let (status, v) = app
        .api_call(
            Method::PATCH,
            &format!("/api/v1/event-endpoints/{endpoint}"),
            Some(&json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "enabled");
    wait_deliveries(&app, &endpoint, "delivered after enabling", |d| {
        d.len() == 1 && d[0]["state"] == "delivered"
    })
    .await;
    verify_all(&secret, &receiver.got());
}

#[tokio::test]
async fn private_and_plain_http_targets_are_refused() {
    // Production settings: no loopback, no private networks.
    let app = spawn_app_tuned(None, |c| {
        c.events.allow_loopback = false;
    })
    .await;
    for (url, code) in [
        ("http://127.0.0.1:8080/hook", "url_not_https"),
        ("http://example.com/hook", "url_not_https"),
        ("https://127.0.0.1/hook", "url_private_target"),
        ("https://localhost/hook", "url_private_target"),
        ("https://10.0.0.7/hook", "url_private_target"),
        ("https://192.168.1.20/hook", "url_private_target"),
        (
            "https://169.254.169.254/latest/meta-data",
            "url_private_target",
        ),
        ("https://[::1]/hook", "url_private_target"),
        ("https://[fd12::1]/hook", "url_private_target"),
        ("ftp://example.com/", "invalid_url"),
        ("not a url", "invalid_url"),
        ("https://user:pass@example.com/", "invalid_url"),
    ] {
        let (status, v) = app
            .api_call(
                Method::POST,
                "/api/v1/event-endpoints",
                Some(&json!({"url": url, "event_types": ["message.received"]})),
            )
            .await;
        assert_eq!(status, 422, "{url}: {v}");
        assert_eq!(v["error"]["code"], code, "{url}: {v}");
        assert_eq!(v["error"]["field"], "url", "{url}: {v}");
    }
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/event-endpoints",
            Some(&json!({"url": "https://example.com/hook", "event_types": ["message.sent"]})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_event_types");
    // Nothing was registered; a public https URL is.
    let (_, list) = app
        .api_call(Method::GET, "/api/v1/event-endpoints", None)
        .await;
    assert_eq!(list["data"], json!([]), "{list}");
    let (endpoint, _) =
        create_endpoint(&app, "https://example.com/hook", &["message.received"]).await;
    // And cannot be moved into the network afterwards.
    let (status, v) = app
        .api_call(
            Method::PATCH,
            &format!("/api/v1/event-endpoints/{endpoint}"),
            Some(&json!({"url": "https://10.1.1.1/"})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "url_private_target");
}

/// Rotating the secret: the old one stops verifying, the new one does; the secret is stored
/// encrypted (never in the database file as text).
#[tokio::test]
async fn the_secret_is_shown_once_rotates_and_is_not_stored_in_clear() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0).await;
    let (endpoint, old) = create_endpoint(&app, &receiver.url, &["contact.updated"]).await;
    let (_, v) = app
        .api_call(
            Method::GET,
            &format!("/api/v1/event-endpoints/{endpoint}"),
            None,
        )
        .await;
    assert!(v.get("secret").is_none(), "{v}");
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/event-endpoints/{endpoint}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let new = v["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    let (phone, _) = app.contact(0).await;
    put_tags(&app, &phone, json!({"n": 1})).await;
    wait_deliveries(&app, &endpoint, "delivered", |d| {
        d.len() == 1 && d[0]["state"] == "delivered"
    })
    .await;
    let got = receiver.got();
    verify_all(&new, &got);
    let stale = standardwebhooks::Webhook::new(&old).expect("old");
    assert!(stale.verify(&got[0].body, &got[0].headers).is_err());
    if crate::helpers::backend() == crate::helpers::Backend::Sqlite {
        for file in [app.db_path.clone(), app.db_path.with_extension("db-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    !text.contains(&new[6..]),
                    "{} holds the secret",
                    file.display()
                );
            }
        }
    } else {
        let (status, _) = app
            .api_call(
                Method::DELETE,
                &format!("/api/v1/event-endpoints/{endpoint}"),
                None,
            )
            .await;
        assert_eq!(status, 204);
    }
}

/// A receiver written in Python with the `standardwebhooks` package from PyPI verifies every
/// delivery. Skipped (saying so) when python3 or the package is missing.
#[tokio::test]
async fn a_python_receiver_verifies_with_the_standardwebhooks_package() {
    let check = std::process::Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output();
    if !check.is_ok_and(|o| o.status.success()) {
        // CI installs it (`.ci/run`): there a missing package is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have python3 with the `standardwebhooks` package (see .ci/run)"
        );
        eprintln!(
            "SKIPPED: python3 with the `standardwebhooks` package (pip install standardwebhooks==1.1.0) is not available"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let secret_file = dir.path().join("secret");
    let log = dir.path().join("log");
    let script = r#"
import http.server, sys, standardwebhooks
secret_file, log = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        wh = standardwebhooks.Webhook(open(secret_file).read().strip())
        try:
            data = wh.verify(body, dict(self.headers.items()))
            line = "ok %s %s\n" % (self.headers["webhook-id"], data["type"])
            code = 204
        except Exception as e:
            line = "bad %s %r\n" % (self.headers.get("webhook-id"), e)
            code = 400
        with open(log, "a") as f:
            f.write(line)
        self.send_response(code)
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", script])
        .arg(&secret_file)
        .arg(&log)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut out = tokio::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut port = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut port)
        .await
        .expect("port");
    let app = spawn_app().await;
    let url = format!("http://127.0.0.1:{}/events", port.trim());
    // The secret goes to the receiver before any event exists.
    let (endpoint, secret) = create_endpoint(&app, &url, &["contact.updated"]).await;
    std::fs::write(&secret_file, &secret).expect("secret");
    let (phone, _) = app.contact(0).await;
    for n in 1..=3 {
        put_tags(&app, &phone, json!({"n": n})).await;
    }
    let d = wait_deliveries(&app, &endpoint, "delivered to Python", |d| {
        d.len() == 3 && d.iter().all(|x| x["state"] == "delivered")
    })
    .await;
    let lines = std::fs::read_to_string(&log).expect("log");
    let ok: Vec<&str> = lines.lines().filter(|l| l.starts_with("ok ")).collect();
    assert_eq!(ok.len(), 3, "{lines}");
    assert!(!lines.contains("bad "), "{lines}");
    let ids: HashMap<&str, ()> = d
        .iter()
        .map(|x| (x["event_id"].as_str().expect("id"), ()))
        .collect();
    for line in ok {
        let id = line.split(' ').nth(1).expect("id");
        assert!(ids.contains_key(id), "{line}");
    }
    child.kill().await.ok();
}

/// An application has at most `MAX_ENDPOINTS` event endpoints (each event is written once per
/// subscribed endpoint): one more is 409 `endpoint_limit_reached` and nothing is registered;
/// once one is deleted, a new one is.
#[tokio::test]
async fn an_application_has_a_bounded_number_of_event_endpoints() {
    let app = spawn_app().await;
    let max = parley_engine::events::MAX_ENDPOINTS;
    let mut ids = Vec::new();
    for i in 0..max {
        let (id, _) = create_endpoint(
            &app,
            &format!("https://example.com/hook/{i}"),
            &["message.received"],
        )
        .await;
        ids.push(id);
    }
    let more = json!({"url": "https://example.com/one-more", "event_types": ["contact.updated"]});
    let (status, v) = app
        .api_call(Method::POST, "/api/v1/event-endpoints", Some(&more))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "endpoint_limit_reached", "{v}");
    let (_, list) = app
        .api_call(Method::GET, "/api/v1/event-endpoints?limit=200", None)
        .await;
    assert_eq!(list["data"].as_array().expect("data").len(), max, "{list}");
    let (status, v) = app
        .api_call(
            Method::DELETE,
            &format!("/api/v1/event-endpoints/{}", ids[0]),
            None,
        )
        .await;
    assert!((200..300).contains(&status), "{status}: {v}");
    let (status, v) = app
        .api_call(Method::POST, "/api/v1/event-endpoints", Some(&more))
        .await;
    assert_eq!(status, 201, "{v}");
}

/// A burst of concurrent creates stops exactly at the cap: each create counts and inserts in
/// one transaction (on PostgreSQL behind a lock per application). Before, each request counted
/// on its own and then inserted, so N concurrent creates could pass the cap by up to N.
#[tokio::test]
async fn a_burst_of_endpoint_creates_stops_exactly_at_the_cap() {
    let app = spawn_app().await;
    let max = parley_engine::events::MAX_ENDPOINTS;
    let burst = max + 12;
    let answers = futures::future::join_all((0..burst).map(|i| {
        let body = json!({"url": format!("https://example.com/burst/{i}"), "event_types": ["contact.updated"]});
        let app = &app;
        async move {
            app.api_call(Method::POST, "/api/v1/event-endpoints", Some(&body))
                .await
        }
    }))
    .await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 409)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(created, max, "{answers:?}");
    assert_eq!(refused.len(), burst - max, "{answers:?}");
    assert!(
        refused
            .iter()
            .all(|v| v["error"]["code"] == "endpoint_limit_reached"),
        "{refused:?}"
    );
    let (_, list) = app
        .api_call(Method::GET, "/api/v1/event-endpoints?limit=200", None)
        .await;
    assert_eq!(list["data"].as_array().expect("data").len(), max, "{list}");
}

/// A replay over a time range goes through at most `MAX_REPLAY_EVENTS` events a call (it read
/// and queued the whole range in one transaction, holding SQLite's one writer throughout);
/// `next_cursor` goes on where it stopped, events sharing a millisecond included, until every
/// event of the endpoint's types has its delivery once. A cursor no replay answered is 400.
#[tokio::test]
async fn a_long_replay_goes_a_bounded_page_at_a_time() {
    let app = spawn_app().await;
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let (endpoint, _) =
        create_endpoint(&app, "https://example.com/crm", &["contact.updated"]).await;
    // Disabled: the replayed deliveries wait instead of going out.
    let (status, v) = app
        .api_call(
            Method::PATCH,
            &format!("/api/v1/event-endpoints/{endpoint}"),
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let max = parley_engine::events::MAX_REPLAY_EVENTS as usize;
    let total = max + 30;
    let base = app.now_ms() - 60_000;
    // 100 events a millisecond; every other one of the endpoint's type.
    let events: Vec<parley_store::events::NewEvent> = (0..total)
        .map(|i| {
            let id = parley_domain::EventId::new();
            let kind = if i % 2 == 0 {
                "contact.updated"
            } else {
                "message.status"
            };
            parley_store::events::NewEvent {
                payload: json!({"i": i}),
                id,
                application_id: application.clone(),
                kind: kind.into(),
                ordering_key: Some(format!("c{}", i % 7)),
                dedup_key: format!("replay-{i}"),
                created_at: base + (i / 100) as i64,
            }
        })
        .collect();
    for chunk in events.chunks(2_000) {
        app.store.insert_events(chunk).await.expect("events");
    }
    let since = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(base) * 1_000_000)
        .expect("time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let path = format!("/api/v1/event-endpoints/{endpoint}/replay");
    let (status, first) = app
        .api_call(Method::POST, &path, Some(&json!({"since": since})))
        .await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["replayed"], max / 2, "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("more to go")
        .to_owned();
    let (status, second) = app
        .api_call(
            Method::POST,
            &path,
            Some(&json!({"since": since, "after": cursor})),
        )
        .await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["replayed"], 15, "{second}");
    assert!(second.get("next_cursor").is_none(), "{second}");
    let d = deliveries(&app, &endpoint).await;
    let seqs: HashSet<&str> = d.iter().filter_map(|x| x["event_id"].as_str()).collect();
    assert_eq!(seqs.len(), total / 2, "each event of the type once");
    assert_eq!(d.len(), total / 2);
    for bad in ["abc", "1.", ".5", "12.x"] {
        let (status, v) = app
            .api_call(
                Method::POST,
                &path,
                Some(&json!({"since": since, "after": bad})),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "invalid_cursor", "{v}");
    }
}

/// Attempt rows the database holds for a delivery (read on a connection of the test's own).
async fn attempt_rows(app: &TestApp, delivery: &str) -> i64 {
    use sqlx::Connection;
    let sql = "SELECT COUNT(*) FROM event_attempts WHERE delivery_id = $1";
    match app.pg_url() {
        Some(url) => {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query_scalar(sql)
                .bind(delivery)
                .fetch_one(&mut conn)
                .await
                .expect("count")
        }
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&app.db_path)
                .read_only(true);
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("connect");
            sqlx::query_scalar(sql)
                .bind(delivery)
                .fetch_one(&mut conn)
                .await
                .expect("count")
        }
    }
}

/// A delivery retried again and again keeps its newest `ATTEMPTS_KEPT` attempts, and the list
/// shows the newest `ATTEMPTS_SHOWN` of each delivery, read in one statement for the page:
/// every attempt was kept and the list read each delivery's attempts, all of them, with a
/// query per delivery.
#[tokio::test]
async fn a_delivery_keeps_and_shows_a_bounded_number_of_attempts() {
    let app = spawn_app_tuned(None, |c| {
        c.events.base_backoff = Duration::from_millis(1);
        c.events.max_backoff = Duration::from_millis(5);
    })
    .await;
    let receiver = Receiver::start(0).await;
    receiver.failing.store(true, Ordering::SeqCst);
    let (endpoint, _) = create_endpoint(&app, &receiver.url, &["contact.updated"]).await;
    let (phone, _) = app.contact(0).await;
    put_tags(&app, &phone, json!({"n": 1})).await;
    let kept = parley_store::events::ATTEMPTS_KEPT;
    let shown = parley_store::events::ATTEMPTS_SHOWN as usize;
    let d = wait_deliveries(&app, &endpoint, "retried past the attempts kept", |d| {
        d.len() == 1 && d[0]["attempts"].as_i64().is_some_and(|n| n > kept + 5)
    })
    .await;
    let attempts = d[0]["attempts"].as_i64().expect("attempts");
    let log = d[0]["attempt_log"].as_array().expect("log");
    assert_eq!(log.len(), shown, "{log:?}");
    let numbers: Vec<i64> = log
        .iter()
        .map(|a| a["attempt"].as_i64().expect("attempt"))
        .collect();
    let newest = *numbers.last().expect("one");
    assert!(newest >= attempts - 1, "{numbers:?} of {attempts}");
    assert_eq!(
        numbers,
        ((newest - shown as i64 + 1)..=newest).collect::<Vec<_>>(),
        "the newest, oldest first"
    );
    let rows = attempt_rows(&app, d[0]["id"].as_str().expect("id")).await;
    assert!(rows <= kept, "{rows} attempt rows kept of {attempts}");
    assert!(rows >= kept - 2, "{rows}");
}

/// Applied webhooks from Meta and finished outgoing events are deleted once past their
/// retention (30 days by default): both tables grew with every status and every event, for
/// ever. What they said stays: the inbound message is still in the conversation.
#[tokio::test]
async fn applied_webhooks_and_finished_events_are_deleted_past_their_retention() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0).await;
    let (endpoint, _) = create_endpoint(&app, &receiver.url, &["message.received"]).await;
    let (phone, _) = app.contact(0).await;
    let from = phone.trim_start_matches('+');
    let body = crate::helpers::text_webhook(from, "wamid.RETAINED1", 1_765_000_000, "hello");
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    app.webhooks_processed().await;
    wait_deliveries(&app, &endpoint, "the message.received delivered", |d| {
        d.len() == 1 && d[0]["state"] == "delivered"
    })
    .await;
    let stored = app.store.count_webhook_events().await.expect("count");
    assert!(stored >= 1);
    // Not yet past 30 days: nothing goes.
    let pruned = app.engine.prune_retained().await.expect("prune");
    assert_eq!((pruned.webhooks, pruned.events), (0, 0));
    app.advance(Duration::from_secs(31 * 24 * 3600)).await;
    let pruned = app.engine.prune_retained().await.expect("prune");
    assert_eq!(pruned.webhooks, stored);
    assert_eq!(pruned.events, 1);
    assert_eq!(app.store.count_webhook_events().await.expect("count"), 0);
    assert_eq!(deliveries(&app, &endpoint).await.len(), 0);
    let (status, thread) = app
        .api_call(
            Method::GET,
            &format!("/api/v1/conversations/{phone}/messages"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{thread}");
    assert!(thread.to_string().contains("hello"), "{thread}");
}
