//! The inbox API (issue #15 item 2): conversations from inbound messages, replies inside the
//! window through the one send path up to `read`, media by link and by upload (Meta's
//! `POST /{phone}/media` then by id), reactions attached to their message, read receipts and
//! the typing indicator at the sandbox, templates only outside the window (409 for free-form),
//! assignment and filters, bounded input. Another tenant's ids: `tenancy.rs`.

use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

fn enc(phone: &str) -> String {
    phone.replace('+', "%2B")
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, v) = app.api_call(Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// Polls `path` until `check` holds (20 s at most).
async fn wait_until(
    app: &TestApp,
    path: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        last = get(app, path).await;
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never showed {what}: {last}");
}

/// The customer writes through the sandbox; returns the wamid once Parley stored it in the
/// conversation.
async fn customer_writes(app: &TestApp, phone: &str, text: &str) -> String {
    let v = app
        .sandbox_post("/sandbox/inbound", &json!({"from": phone, "text": text}))
        .await;
    let wamid = v["wamid"].as_str().expect("wamid").to_owned();
    let path = format!("/api/v1/conversations/{}/messages", enc(phone));
    let w = wamid.clone();
    wait_until(app, &path, "the inbound message", move |t| {
        t["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|i| i["id"] == w.as_str()))
    })
    .await;
    wamid
}

async fn reply(app: &TestApp, contact: &str, body: Value) -> (u16, Value) {
    app.api_call(
        Method::POST,
        &format!("/api/v1/conversations/{contact}/messages"),
        Some(&body),
    )
    .await
}

async fn sandbox_reads(app: &TestApp) -> Vec<Value> {
    let v: Value = app
        .http
        .get(format!("{}/sandbox/reads", app.sandbox_url))
        .send()
        .await
        .expect("reads")
        .json()
        .await
        .expect("json");
    v["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_reply_inside_the_window_reaches_meta_and_its_status_reaches_read_in_the_thread() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(1).await;
    let wamid = customer_writes(&app, &phone, "Does it come in blue?").await;

    let c = get(&app, &format!("/api/v1/conversations/{}", enc(&phone))).await;
    let contact = c["contact"]["id"].as_str().expect("id").to_owned();
    assert!(contact.starts_with("ctc_"), "{c}");
    assert_eq!(c["unread"], 1, "{c}");
    assert_eq!(c["window"]["open"], true, "{c}");
    assert!(
        c["window"]["seconds_left"].as_i64().expect("left") > 23 * 3600,
        "{c}"
    );
    assert_eq!(c["reply"]["free_form"], true);
    assert!(["free", "billed"].contains(&c["reply"]["billing"].as_str().expect("billing")));
    assert_eq!(c["last_message"]["direction"], "inbound");
    assert_eq!(c["last_message"]["text"], "Does it come in blue?");

    // A text reply goes through the one send path and reaches `read`.
    let (status, v) = reply(
        &app,
        &contact,
        json!({"text": "Yes, and in red.", "reply_to": wamid}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    let thread = format!("/api/v1/conversations/{contact}/messages");
    let i = id.clone();
    let t = wait_until(&app, &thread, "the reply read", move |t| {
        t["data"][0]["id"] == i.as_str() && t["data"][0]["status"] == "read"
    })
    .await;
    assert_eq!(t["data"][0]["direction"], "outbound");
    assert_eq!(t["data"][0]["reply_to"], wamid.as_str());
    assert_eq!(t["data"][1]["id"], wamid.as_str());
    let sends = app.sandbox_sends().await;
    assert!(
        sends
            .iter()
            .any(|s| s["type"] == "text" && s["to"].as_str().is_some()),
        "{sends:?}"
    );
    let c = get(&app, "/api/v1/conversations?limit=10").await;
    assert_eq!(
        c["data"][0]["contact"]["id"],
        contact.as_str(),
        "newest first: {c}"
    );
    assert_eq!(c["data"][0]["last_message"]["direction"], "outbound");

    // Read: Meta gets the receipt for the latest inbound message; unread is 0.
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/conversations/{contact}/read"),
            None,
        )
        .await;
    assert_eq!((status, &v["unread"]), (200, &json!(0)), "{v}");
    let reads = sandbox_reads(&app).await;
    assert!(
        reads
            .iter()
            .any(|r| r["message_id"] == wamid.as_str() && r["typing"] == false),
        "{reads:?}"
    );
    let unread = get(&app, "/api/v1/conversations?unread=true").await;
    assert!(
        unread["data"].as_array().expect("data").is_empty(),
        "{unread}"
    );

    // Typing: one call, read receipt plus indicator.
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/conversations/{contact}/typing"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let reads = sandbox_reads(&app).await;
    assert!(
        reads
            .iter()
            .any(|r| r["message_id"] == wamid.as_str() && r["typing"] == true),
        "{reads:?}"
    );

    // A reaction to the customer's message is attached to it, not an item.
    let (status, v) = reply(
        &app,
        &contact,
        json!({"reaction": {"message_id": wamid, "emoji": "👍"}}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let w = wamid.clone();
    let t = wait_until(
        &app,
        &format!("{thread}?order=oldest"),
        "the reaction",
        move |t| t["data"][0]["id"] == w.as_str() && t["data"][0]["reactions"][0]["emoji"] == "👍",
    )
    .await;
    assert_eq!(t["data"][0]["reactions"][0]["direction"], "outbound");
    assert_eq!(t["data"].as_array().expect("data").len(), 2, "{t}");

    // Media by link, and by upload (Meta's upload, then by id).
    let (status, v) = reply(
        &app,
        &contact,
        json!({"media": {"type": "image", "link": "https://example.com/blue.jpg", "caption": "Blue"}}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nnot really");
    let (status, v) = reply(
        &app,
        &contact,
        json!({"media": {"type": "document", "upload_base64": png, "mime_type": "application/pdf", "filename": "offer.pdf"}}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let upload = v["id"].as_str().expect("id").to_owned();
    let u = upload.clone();
    let t = wait_until(&app, &thread, "the upload sent", move |t| {
        t["data"][0]["id"] == u.as_str() && t["data"][0]["status"] == "read"
    })
    .await;
    assert_eq!(t["data"][0]["type"], "document");
    assert!(t["data"][0]["media"]["id"].is_string(), "{t}");
    assert_eq!(t["data"][1]["media"]["url"], "https://example.com/blue.jpg");
    let uploads = app.sandbox_requests("").await;
    assert!(
        uploads["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|r| r["method"] == "POST"
                && r["path"].as_str().is_some_and(|p| p.ends_with("/media"))
                && r["outcome"] == "accepted"),
        "{uploads}"
    );
    let sends = app.sandbox_sends().await;
    assert!(sends.iter().any(|s| s["type"] == "image"), "{sends:?}");
    assert!(sends.iter().any(|s| s["type"] == "document"), "{sends:?}");

    // Bounded input, with stable codes.
    let (status, v) = reply(&app, &contact, json!({"text": "x".repeat(4097)})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("text_too_long")),
        "{v}"
    );
    let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 5 * 1024 * 1024 + 1]);
    let (status, v) = reply(
        &app,
        &contact,
        json!({"media": {"type": "image", "upload_base64": big, "mime_type": "image/jpeg"}}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("media_too_large")),
        "{v}"
    );
    let (status, v) = reply(
        &app,
        &contact,
        json!({"media": {"type": "image", "upload_base64": png, "mime_type": "image/gif"}}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("unsupported_media_type")),
        "{v}"
    );
    let (status, v) = reply(
        &app,
        &contact,
        json!({"text": "a", "reaction": {"message_id": wamid, "emoji": "x"}}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("ambiguous_message")),
        "{v}"
    );
    let (status, v) = app
        .api_call(Method::GET, &format!("{thread}?after=nonsense"), None)
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_cursor")),
        "{v}"
    );
    let (status, v) = app
        .api_call(
            Method::GET,
            &format!("/api/v1/conversations?q={}", "y".repeat(101)),
            None,
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("query_too_long")),
        "{v}"
    );
    let (status, v) = app
        .api_call(
            Method::GET,
            "/api/v1/conversations/ctc_0123456789abcdef0123456789abcdef",
            None,
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("contact_not_found")),
        "{v}"
    );
}

#[tokio::test]
async fn outside_the_window_free_form_is_refused_with_409_and_a_template_goes() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(2).await;
    let before = app.sandbox_requests("").await["data"]
        .as_array()
        .map_or(0, Vec::len);
    let (status, v) = reply(&app, &enc(&phone), json!({"text": "Hello?"})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("outside_service_window")),
        "{v}"
    );
    let (status, v) = reply(
        &app,
        &enc(&phone),
        json!({"media": {"type": "image", "upload_base64": "aGk=", "mime_type": "image/png"}}),
    )
    .await;
    assert_eq!(status, 409, "refused before the upload: {v}");
    let after = app.sandbox_requests("").await["data"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(before, after, "nothing reached Meta");
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/conversations/{}/typing", enc(&phone)),
            None,
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("nothing_to_answer")),
        "{v}"
    );

    let (status, v) = reply(
        &app,
        &enc(&phone),
        json!({"template": {"name": "welcome", "language": "en", "variables": {"first_name": "Ana"}}}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    app.wait_for_state(&id, "read").await;
    let c = get(&app, &format!("/api/v1/conversations/{}", enc(&phone))).await;
    assert_eq!(c["window"]["open"], false, "{c}");
    assert_eq!(c["reply"]["free_form"], false);
    assert_eq!(c["reply"]["billing"], "billed");
    assert_eq!(c["last_message"]["type"], "template");
    let t = get(
        &app,
        &format!("/api/v1/conversations/{}/messages", enc(&phone)),
    )
    .await;
    assert_eq!(t["data"][0]["id"], id.as_str());
    assert_eq!(t["data"][0]["type"], "template");
}

#[tokio::test]
async fn assignment_filters_search_and_pages() {
    let app = spawn_app().await;
    let mut phones = Vec::new();
    for i in 3..6 {
        let (phone, _) = app.contact(i).await;
        customer_writes(&app, &phone, &format!("question number {i}")).await;
        phones.push(phone);
    }
    let user = app
        .store
        .user_by_email(&app.console_email)
        .await
        .expect("user")
        .expect("owner");
    let user_id = user.id.as_str().to_owned();

    // Only users of the application.
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/conversations/{}/assignee", enc(&phones[0])),
            Some(&json!({"user_id": "usr_0123456789abcdef0123456789abcdef"})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("not_a_member")),
        "{v}"
    );
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/conversations/{}/assignee", enc(&phones[0])),
            Some(&json!({"user_id": user_id})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["assignee"]["user_id"], user_id.as_str());
    assert_eq!(v["assignee"]["email"], app.console_email.as_str());

    let mine = get(&app, &format!("/api/v1/conversations?assignee={user_id}")).await;
    let mine: Vec<_> = mine["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["contact"]["phone"].clone())
        .collect();
    assert_eq!(mine, vec![json!(phones[0])]);
    let unassigned = get(&app, "/api/v1/conversations?unassigned=true").await;
    let unassigned: Vec<_> = unassigned["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["contact"]["phone"].clone())
        .collect();
    assert!(!unassigned.contains(&json!(phones[0])), "{unassigned:?}");
    assert!(unassigned.contains(&json!(phones[1])) && unassigned.contains(&json!(phones[2])));
    let open = get(&app, "/api/v1/conversations?window=open&unread=true").await;
    assert_eq!(open["data"].as_array().expect("data").len(), 3, "{open}");
    let found = get(&app, "/api/v1/conversations?q=NUMBER%204").await;
    let found: Vec<_> = found["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["contact"]["phone"].clone())
        .collect();
    assert_eq!(found, vec![json!(phones[1])]);
    let none = get(&app, "/api/v1/conversations?q=%25").await;
    assert!(
        none["data"].as_array().expect("data").is_empty(),
        "a % is literal: {none}"
    );

    // Pages of one, newest first, each conversation once.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = get(&app, &format!("/api/v1/conversations?limit=1{after}")).await;
        for c in page["data"].as_array().expect("data") {
            seen.push(c["contact"]["phone"].clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec![json!(phones[2]), json!(phones[1]), json!(phones[0])]
    );

    // Unassigned again.
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/conversations/{}/assignee", enc(&phones[0])),
            Some(&json!({"user_id": null})),
        )
        .await;
    assert_eq!((status, &v["assignee"]), (200, &Value::Null), "{v}");
}

#[tokio::test]
async fn the_feed_announces_an_inbound_message() {
    let app = spawn_app().await;
    let mut feed = app.engine.conversation_feed();
    let (phone, _) = app.contact(6).await;
    app.sandbox_post("/sandbox/inbound", &json!({"from": phone, "text": "hello"}))
        .await;
    let changed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let parley_engine::conversations::FeedEvent::Changed(c) = feed.next().await {
                return c;
            }
        }
    })
    .await
    .expect("a change within 20 s");
    let c = get(&app, &format!("/api/v1/conversations/{}", enc(&phone))).await;
    assert_eq!(
        changed.contact.as_str(),
        c["contact"]["id"].as_str().expect("id")
    );
}

/// A burst of statuses for one customer's reply puts the merge behind, and the statuses are
/// projected to the log: the projection announces a reload of every conversation (`*` on the
/// wake-up bus), so an open thread rereads (and merges the log in) within `LIVE_GATHER`, not
/// once the merge reaches them. The merge alone announces this one conversation only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_statuses_waiting_for_the_merge_reloads_open_threads() {
    const DELIVERIES: usize = 2_500;
    const PER: usize = 20;
    let app = crate::helpers::spawn_app_unthrottled().await;
    let (phone, _) = app.contact(3).await;
    customer_writes(&app, &phone, "Is it in stock?").await;
    let c = get(&app, &format!("/api/v1/conversations/{}", enc(&phone))).await;
    let contact = c["contact"]["id"].as_str().expect("id").to_owned();
    let (status, v) = reply(&app, &contact, json!({"text": "It is."})).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    let m = app
        .wait_for_message(&id, "a wamid", |m| m["wamid"].is_string())
        .await;
    let wamid = m["wamid"].as_str().expect("wamid").to_owned();
    let mut body =
        crate::helpers::status_webhook(&vec![
            (wamid.as_str(), "delivered", Some(id.as_str()));
            PER
        ]);
    for s in body["entry"][0]["changes"][0]["value"]["statuses"]
        .as_array_mut()
        .expect("statuses")
    {
        s["recipient_id"] = json!(phone.trim_start_matches('+'));
    }
    let body = serde_json::to_vec(&body).expect("json");

    let mut bus = app.engine.subscribe_wakeups();
    let reload = tokio::spawn(async move {
        loop {
            match bus.recv().await {
                Ok(parley_store::Wakeup::Inbox(p)) if p == "*" => return true,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    panic!("the test's reader fell {n} wake-ups behind")
                }
                Err(_) => return false,
            }
        }
    });
    let sig = app.sign(&body);
    let answers: Vec<reqwest::StatusCode> = futures::stream::iter(0..DELIVERIES)
        .map(|_| app.post_webhook(&body, Some(&sig)))
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    app.webhooks_processed().await;
    // Only a projection announces `*` here: the merge touched this one conversation.
    let announced = tokio::time::timeout(Duration::from_secs(5), reload)
        .await
        .expect("no reload of every conversation: was the burst merged without a projection?")
        .expect("reader");
    assert!(announced);
    let m = app.get_message(&id).await;
    assert!(m["timestamps"]["delivered"].is_string(), "{m}");
}
