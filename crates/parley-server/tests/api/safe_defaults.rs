//! Safe defaults over HTTP: security headers on pages, API answers and the signup page,
//! `/metrics` behind its token, the console's same-origin check down to the port, and uploads
//! from clients that send `Expect: 100-continue` (as curl does above 1 MB).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

fn assert_security_headers(resp: &reqwest::Response, what: &str) -> String {
    let h = resp.headers();
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_owned()
    };
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("referrer-policy"), "same-origin", "{what}");
    let csp = get("content-security-policy");
    for needle in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(needle), "{what}: {csp}");
    }
    assert!(
        !csp.split(';')
            .any(|d| d.trim().starts_with("script-src") && d.contains("unsafe")),
        "{what}: no inline script: {csp}"
    );
    csp
}

#[tokio::test]
async fn pages_api_answers_and_the_signup_page_carry_security_headers() {
    let app = spawn_app().await;
    let cookie = app.console_cookie().await;
    let page = |path: &str| {
        app.http
            .get(format!("{}{path}", app.url))
            .header("cookie", &cookie)
            .send()
    };

    // A console page: Parley's own scripts and styles only.
    let resp = page("/contacts").await.expect("page");
    assert_eq!(resp.status(), 200);
    let csp = assert_security_headers(&resp, "/contacts");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("style-src 'self';"), "{csp}");
    assert!(!csp.contains(&app.sandbox_url), "{csp}");
    // The login page, an asset, the API docs (no inline script left) and a 404.
    for path in [
        "/login",
        "/console.css",
        "/api/docs",
        "/api/docs.js",
        "/nowhere",
    ] {
        let resp = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .expect("get");
        let csp = assert_security_headers(&resp, path);
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    }
    let docs = app
        .http
        .get(format!("{}/api/docs", app.url))
        .send()
        .await
        .expect("docs")
        .text()
        .await
        .expect("html");
    assert!(
        !docs.contains("<script>") && !docs.contains("<style>"),
        "{docs}"
    );

    // The API, answered and refused.
    let resp = app
        .http
        .get(format!("{}/api/v1/contacts", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("api");
    assert_eq!(resp.status(), 200);
    assert_security_headers(&resp, "API");
    let resp = app
        .http
        .get(format!("{}/api/v1/contacts", app.url))
        .send()
        .await
        .expect("api");
    assert_eq!(resp.status(), 401);
    assert_security_headers(&resp, "API 401");

    // The signup page also allows the configured SDK's origin (the sandbox's stand-in here),
    // for its script, its calls and its frames; still no inline script.
    let resp = page("/settings/platforms").await.expect("page");
    assert_eq!(resp.status(), 200);
    let csp = assert_security_headers(&resp, "/settings/platforms");
    let script_src = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .expect("script-src");
    assert_eq!(
        script_src.trim(),
        format!("script-src 'self' {}", app.sandbox_url)
    );
    for directive in ["connect-src", "frame-src"] {
        let d = csp
            .split(';')
            .find(|d| d.trim().starts_with(directive))
            .expect(directive);
        assert!(d.contains(&app.sandbox_url), "{csp}");
    }
}

#[test]
fn the_production_signup_policy_allows_metas_sdk_and_dialog() {
    let csp = parley_server::signup_content_security_policy(&parley_engine::MetaApp {
        sdk_url: parley_engine::onboarding::PRODUCTION_SDK_URL.into(),
        message_origin: parley_engine::onboarding::PRODUCTION_MESSAGE_ORIGIN.into(),
        ..Default::default()
    });
    assert!(
        csp.contains("script-src 'self' https://connect.facebook.net;"),
        "{csp}"
    );
    assert!(
        csp.contains(
            "frame-src https://connect.facebook.net https://facebook.com https://*.facebook.com;"
        ),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // A URL that would break out of the header contributes nothing.
    let csp = parley_server::signup_content_security_policy(&parley_engine::MetaApp {
        sdk_url: "https://evil.example; script-src *".into(),
        message_origin: "http://127.0.0.1:9".into(),
        ..Default::default()
    });
    assert!(!csp.contains("evil") && !csp.contains('*'), "{csp}");
    let csp = parley_server::signup_content_security_policy(&parley_engine::MetaApp {
        sdk_url: String::new(),
        message_origin: "facebook.com; script-src *".into(),
        ..Default::default()
    });
    assert!(!csp.contains('*'), "{csp}");
    assert!(csp.contains("frame-src 'none';"), "{csp}");
}

#[tokio::test]
async fn metrics_are_open_without_a_token_and_guarded_with_one() {
    let open = spawn_app().await;
    let resp = open
        .http
        .get(format!("{}/metrics", open.url))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);

    let app = spawn_app_with(Some("scrape-me".into())).await;
    let get = |token: Option<&str>| {
        let mut req = app.http.get(format!("{}/metrics", app.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let resp = get(None).await.expect("metrics");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(get(Some("wrong")).await.expect("metrics").status(), 401);
    assert_eq!(
        get(Some("scrape-mee")).await.expect("metrics").status(),
        401
    );
    // The API token is not the metrics token.
    assert_eq!(get(Some(&app.token)).await.expect("metrics").status(), 401);
    let resp = get(Some("scrape-me")).await.expect("metrics");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    // Health checks stay open.
    let resp = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_cross_site_check_compares_scheme_host_and_port() {
    let app = spawn_app().await;
    let cookie = app.console_cookie().await;
    let port: u16 = app.url.rsplit(':').next().unwrap().parse().unwrap();
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1).max(1));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let post = |origin: Option<(&'static str, String)>| {
        let mut req = http
            .post(format!("{}/logout", app.url))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some((name, value)) = origin {
            req = req.header(name, value);
        }
        req.body("").send()
    };
    for (name, value) in [
        ("origin", other_port.clone()),
        ("origin", app.url.replace("http://", "https://")),
        ("origin", format!("http://localhost:{port}")),
        ("origin", "null".to_owned()),
        ("referer", format!("{other_port}/contacts")),
    ] {
        let r = post(Some((name, value.clone()))).await.expect("post");
        assert_eq!(r.status(), 403, "{name}: {value}");
    }
    // A script call from another port is refused too.
    let r = app
        .http
        .post(format!("{}/contacts/count", app.url))
        .header("cookie", &cookie)
        .header("origin", other_port.as_str())
        .json(&json!({"filter": ""}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);

    // This site's own origin, any case, or its page as the referer: accepted.
    for (name, value) in [
        (
            "origin",
            app.url.to_uppercase().replace("HTTP://", "http://"),
        ),
        ("referer", format!("{}/contacts?x=1", app.url)),
    ] {
        let r = post(Some((name, value.clone()))).await.expect("post");
        assert_eq!(r.status(), 303, "{name}: {value}");
    }
    // Not from a browser (no Origin, no Referer): accepted as before.
    assert_eq!(post(None).await.expect("post").status(), 303);
}

// --- Expect: 100-continue ---------------------------------------------------------------------

/// What a raw HTTP/1.1 client saw: the interim statuses, then the final status and body.
struct Exchange {
    interim: Vec<u16>,
    status: u16,
    body: String,
}

/// Sends `head` with `Expect: 100-continue` the way curl does: waits for the server's first
/// answer before sending the body; a final answer there means the body is never sent.
async fn expect_continue(app: &TestApp, head: &str, body: &[u8]) -> Exchange {
    let addr = app.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{head}\r\nHost: {addr}\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("head");
    let mut buf = Vec::new();
    let mut interim = Vec::new();
    loop {
        let (status, rest_at) = read_head(&mut stream, &mut buf).await;
        let head_text = String::from_utf8_lossy(&buf[..rest_at]).to_string();
        buf.drain(..rest_at);
        if status == 100 {
            interim.push(status);
            stream.write_all(body).await.expect("body");
            continue;
        }
        // A final answer. Read its body (Content-Length, else to the end).
        let length = head_text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(usize::MAX);
        while buf.len() < length {
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut chunk))
                .await
                .expect("answer in time")
                .expect("read");
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Exchange {
            interim,
            status,
            body: String::from_utf8_lossy(&buf).to_string(),
        };
    }
}

/// Reads one response head into `buf`; its status and where the head ends.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, usize) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not an HTTP answer: {line}"));
            return (status, end + 4);
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "the server closed without an answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn large_uploads_with_expect_100_continue_are_read_before_the_answer() {
    let app = spawn_app().await;

    // A CSV of more than a megabyte, as `curl --data-binary @file` sends it.
    let rows = 20_000;
    let mut csv = String::from("phone,first_name,note\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "+49152{:08},Name{i},{}\n",
            60_000_000 + i,
            "x".repeat(40)
        ));
    }
    assert!(csv.len() > 1024 * 1024);
    let token = &app.token;
    let x = expect_continue(
        &app,
        &format!(
            "POST /api/v1/contacts/import HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: text/csv"
        ),
        csv.as_bytes(),
    )
    .await;
    assert_eq!(x.interim, vec![100], "100 Continue before the body");
    assert_eq!(x.status, 202, "{}", x.body);
    let job = serde_json::from_str::<Value>(&x.body).expect("json")["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    // The answer came after the import: nothing left running.
    let (status, j) = app
        .api_call(
            reqwest::Method::GET,
            &format!("/api/v1/contacts/import/{job}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(j["state"], "done", "{j}");
    assert_eq!(j["rows_read"], rows, "{j}");
    assert_eq!(j["created"], rows, "{j}");

    // A wrong token is answered at once, and the body is never sent.
    let x = expect_continue(
        &app,
        "POST /api/v1/contacts/import HTTP/1.1\r\nAuthorization: Bearer nope\r\nContent-Type: text/csv",
        csv.as_bytes(),
    )
    .await;
    assert!(x.interim.is_empty());
    assert_eq!(x.status, 401);

    // A template's media example of more than a megabyte.
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    png.resize(1_500_000, 0);
    let x = expect_continue(
        &app,
        &format!(
            "POST /api/v1/media/uploads?file_name=big.png HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: image/png"
        ),
        &png,
    )
    .await;
    assert_eq!(x.interim, vec![100]);
    assert_eq!(x.status, 201, "{}", x.body);
    let v: Value = serde_json::from_str(&x.body).expect("json");
    assert_eq!(v["file_length"], png.len());

    // A campaign with an uploaded list, padded past a megabyte (JSON allows the whitespace).
    let campaign = json!({
        "name": "Expect 100",
        "template": {"name": "welcome", "language": "en",
                     "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}},
        "audience": {"phones": ["+4915270000001", "+4915270000002"]},
        "type": "transactional"
    })
    .to_string();
    let padded = format!(
        "{}{}{}",
        &campaign[..1],
        " ".repeat(1_100_000),
        &campaign[1..]
    );
    let x = expect_continue(
        &app,
        &format!(
            "POST /api/v1/campaigns HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json"
        ),
        padded.as_bytes(),
    )
    .await;
    assert_eq!(x.interim, vec![100]);
    assert_eq!(x.status, 201, "{}", x.body);
    let v: Value = serde_json::from_str(&x.body).expect("json");
    let id = v["id"].as_str().expect("id");
    let (status, v) = app
        .api_call(
            reqwest::Method::GET,
            &format!("/api/v1/campaigns/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["audience"]["list"]["numbers"], 2, "{v}");
}
