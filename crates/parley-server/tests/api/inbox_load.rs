//! The inbox under hostile load (#15 item 2): a burst of large media uploads at once is
//! bounded per node (the uploads beyond `MAX_UPLOADS` are refused with 429 `too_many_uploads`
//! before their body is read; a body declared over the limit is refused with 413 or 422 before
//! it is read; the slots come back), a flood of live-update streams stops at the node's cap of
//! 256 with 429 `too_many_live_streams` and every slot comes back when the clients leave, and a
//! burst of replies to one contact reaches Meta once each, in the order queued, within Meta's
//! pair rate.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, spawn_app};

const MIB: usize = 1024 * 1024;

/// The customer writes; the conversation's contact id once Parley stored the message.
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

/// This node's `/readyz` facts.
async fn ready(app: &TestApp) -> Value {
    app.http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json")
}

/// Polls `/readyz` until `pick` of it is `want` (60 s at most).
async fn wait_ready(app: &TestApp, what: &str, pick: impl Fn(&Value) -> Value, want: Value) {
    let mut last = Value::Null;
    for _ in 0..600 {
        last = ready(app).await;
        if pick(&last) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} never became {want}: {last}");
}

/// A console request written by hand on its own connection: the headers, then as much of the
/// body as the test sends, so the body can be held back.
struct RawRequest {
    stream: tokio::net::TcpStream,
}

impl RawRequest {
    async fn start(app: &TestApp, cookie: &str, path: &str, length: usize, first: &[u8]) -> Self {
        let host = app.url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nOrigin: {}\r\n\
             Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\
             Connection: close\r\n\r\n",
            app.url
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        stream.write_all(first).await.expect("first part");
        RawRequest { stream }
    }

    /// Sends the rest of the body (may be empty) and reads the answer: status and JSON body.
    async fn finish(mut self, rest: &[u8]) -> (u16, Value) {
        if !rest.is_empty() {
            // The server may answer (and close) before reading a body it refused.
            let _ = self.stream.write_all(rest).await;
        }
        let mut answer = Vec::new();
        let _ = self.stream.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        // Chunked or not, the JSON is the part between the first `{` and the last `}`.
        let json = match (body.find('{'), body.rfind('}')) {
            (Some(a), Some(b)) if b > a => {
                serde_json::from_str(&body[a..=b]).unwrap_or(Value::Null)
            }
            _ => Value::Null,
        };
        (status, json)
    }
}

/// A PNG signature followed by `size - 8` zero bytes (Meta checks the type and the size).
fn png(size: usize) -> Vec<u8> {
    let mut b = vec![0u8; size];
    b[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    b
}

fn uploads_to_meta(requests: &Value) -> usize {
    requests["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/media"))
        })
        .count()
}

#[tokio::test]
async fn a_burst_of_large_uploads_is_bounded_per_node_and_refused_with_clear_codes_before_reading()
{
    let app = spawn_app().await;
    let (phone, _) = app.contact(3).await;
    let contact = customer_writes(&app, &phone).await;
    let owner = app.console_cookie().await;
    let max = ready(&app).await["uploads"]["max"]
        .as_u64()
        .expect("uploads.max") as usize;
    assert!(max >= 1, "no upload slots");
    let image = format!("/inbox/{contact}/media?type=image&mime_type=image%2Fpng");
    // An image just under Meta's 5 MiB limit for images.
    let file = png(5 * MIB - 1024);

    // `max` uploads start and hold their bodies back: each holds one of the node's slots.
    let mut held = Vec::new();
    for _ in 0..max {
        held.push(RawRequest::start(&app, &owner, &image, file.len(), &file[..64 * 1024]).await);
    }
    wait_ready(
        &app,
        "uploads in flight",
        |r| r["uploads"]["in_flight"].clone(),
        json!(max),
    )
    .await;

    // One more, from the console and from the API (a 16 MiB document in base64, near the
    // API's 24 MiB body limit): 429 at once, with Retry-After, before the body is read.
    let document = png(16 * MIB - 1);
    let resp = app
        .http
        .post(format!(
            "{}/inbox/{contact}/media?type=document&mime_type=application%2Fpdf",
            app.url
        ))
        .header("cookie", &owner)
        .header("origin", app.url.as_str())
        .body(document.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "too_many_uploads", "{v}");
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&document)
    };
    assert!(b64.len() > 21 * MIB, "near the 24 MiB body limit");
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/conversations/{contact}/messages"),
            Some(&json!({"media": {"type": "document", "upload_base64": b64, "mime_type": "application/pdf", "filename": "big.pdf"}})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (429, Some("too_many_uploads")),
        "{v}"
    );
    drop(b64);
    // A text reply needs no upload slot.
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/conversations/{contact}/messages"),
            Some(&json!({"text": "One moment, the photos are coming."})),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    // A template's media example shares the slots (it is held whole on its way to Meta, up
    // to 100 MiB: nothing bounded how many at once); one declared over 100 MiB is 413.
    for (len, code) in [
        (200 * 1024, "too_many_uploads"),
        (100 * MIB + 1, "body_too_large"),
    ] {
        let example =
            RawRequest::start(&app, &owner, "/templates/uploads?file_name=a.pdf", len, &[]);
        let (status, v) = example.await.finish(&[]).await;
        assert_eq!(v["error"]["code"], code, "{status}: {v}");
    }

    // Declared over the limits: refused before a byte of the body is sent.
    let over = RawRequest::start(
        &app,
        &owner,
        &format!("/inbox/{contact}/media?type=document&mime_type=application%2Fpdf"),
        16 * MIB + 1,
        &[],
    )
    .await;
    let (status, v) = over.finish(&[]).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (413, Some("body_too_large")),
        "{v}"
    );

    // The held uploads finish: each reaches Meta and is sent.
    let mut answers = Vec::new();
    for h in held {
        answers.push(h.finish(&file[64 * 1024..]).await);
    }
    for (status, v) in &answers {
        assert_eq!(*status, 202, "{v}");
    }
    wait_ready(
        &app,
        "uploads in flight",
        |r| r["uploads"]["in_flight"].clone(),
        json!(0),
    )
    .await;
    // Only those reached Meta: the refused ones never left Parley.
    assert_eq!(uploads_to_meta(&app.sandbox_requests("").await), max);

    // An image declared over Meta's 5 MiB for images: 422 before the body is read.
    let big = RawRequest::start(&app, &owner, &image, 5 * MIB + 1, &[]).await;
    let (status, v) = big.finish(&[]).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("media_too_large")),
        "{v}"
    );
    // The slots came back: another upload goes.
    let resp = app
        .http
        .post(format!("{}{image}", app.url))
        .header("cookie", &owner)
        .header("origin", app.url.as_str())
        .body(png(100 * 1024))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 202, "{:?}", resp.text().await);
    assert_eq!(uploads_to_meta(&app.sandbox_requests("").await), max + 1);
    let refused = app.sandbox_requests("outcome=refused").await;
    assert_eq!(refused["data"], json!([]), "{refused}");
}

#[tokio::test]
async fn a_flood_of_live_streams_stops_at_the_node_cap_and_every_slot_comes_back() {
    let app = spawn_app().await;
    let owner = app.console_cookie().await;
    let max = ready(&app).await["live_streams"]["max"]
        .as_u64()
        .expect("live_streams.max") as usize;
    assert_eq!(max, 256);
    let client = reqwest::Client::new();
    let open = |client: reqwest::Client| {
        let url = format!("{}/inbox/events", app.url);
        let owner = owner.clone();
        async move {
            client
                .get(url)
                .header("cookie", owner)
                .send()
                .await
                .expect("events")
        }
    };
    for round in 0..2 {
        let streams: Vec<reqwest::Response> =
            futures::future::join_all((0..max).map(|_| open(client.clone()))).await;
        for s in &streams {
            assert_eq!(s.status(), 200, "round {round}");
        }
        wait_ready(
            &app,
            "open streams",
            |r| r["live_streams"]["open"].clone(),
            json!(max),
        )
        .await;
        // One more is refused clearly (the page then offers a reload).
        let refused = open(client.clone()).await;
        assert_eq!(refused.status(), 429, "round {round}");
        let v: Value = refused.json().await.expect("json");
        assert_eq!(v["error"]["code"], "too_many_live_streams", "{v}");
        // The clients leave: every slot comes back.
        drop(streams);
        wait_ready(
            &app,
            "open streams",
            |r| r["live_streams"]["open"].clone(),
            json!(0),
        )
        .await;
    }
}

#[tokio::test]
async fn a_burst_of_replies_to_one_contact_reaches_meta_once_each_in_the_order_queued() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(4).await;
    let contact = customer_writes(&app, &phone).await;
    let owner = app.console_cookie().await;
    const N: usize = 24;
    let answers = futures::future::join_all((0..N).map(|i| {
        let owner = owner.clone();
        let contact = contact.clone();
        let app = &app;
        async move {
            app.console_post(
                &owner,
                &format!("/inbox/{contact}/reply"),
                &json!({"text": format!("burst {i}")}),
            )
            .await
        }
    }))
    .await;
    let mut ids = std::collections::BTreeSet::new();
    for (status, v) in &answers {
        assert_eq!(*status, 202, "{v}");
        ids.insert(v["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), N, "every reply is its own message");

    // Parley keeps Meta's pair rate (one message to a user every 6 s): the clocks move on
    // until every reply reached Meta.
    let digits = phone.trim_start_matches('+').to_owned();
    let mut sent = Vec::new();
    for _ in 0..(N * 20) {
        sent = app
            .sandbox_messages()
            .await
            .into_iter()
            .filter(|m| {
                m["type"] == "text"
                    && m["to"].as_str().map(|t| t.trim_start_matches('+')) == Some(digits.as_str())
            })
            .map(|m| {
                m["request"]["text"]["body"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        if sent.len() >= N {
            break;
        }
        app.advance(Duration::from_secs(6)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sent.len(), N, "{sent:?}");
    let unique: std::collections::BTreeSet<_> = sent.iter().collect();
    assert_eq!(unique.len(), N, "a reply reached Meta twice: {sent:?}");
    app.assert_no_rate_refusals().await;

    // In the order queued (the thread's order).
    let (status, t) = app
        .api_call(
            Method::GET,
            &format!("/api/v1/conversations/{contact}/messages?order=oldest&limit=100"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{t}");
    let queued: Vec<String> = t["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|i| i["direction"] == "outbound")
        .map(|i| i["text"].as_str().unwrap_or("").to_owned())
        .collect();
    // Meta received them in the order Parley queued them (the thread's order): each reply
    // the pair rate deferred kept its place ahead of those queued after it.
    assert_eq!(sent, queued);
}
