//! API tokens (scopes on every route, expiry, revocation, last use), the audit log (changes by
//! tokens and console users, per application) and per-token rate limits.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with_server};

/// A call with `token`: (status, body, Retry-After).
async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value, Option<String>) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

/// Creates a token with the demo token; returns (id, secret).
async fn create_token(app: &TestApp, label: &str, scopes: &[&str]) -> (String, String) {
    create_token_with(app, json!({"label": label, "scopes": scopes})).await
}

async fn create_token_with(app: &TestApp, body: Value) -> (String, String) {
    let (status, v) = app
        .api_call(Method::POST, "/api/v1/tokens", Some(&body))
        .await;
    assert_eq!(status, 201, "{v}");
    (
        v["id"].as_str().expect("id").to_owned(),
        v["token_secret"].as_str().expect("secret").to_owned(),
    )
}

fn welcome_to(phone: &str) -> Value {
    json!({"to": phone, "template": {"name": "welcome", "language": "en",
        "variables": {"first_name": "Ann"}}})
}

#[tokio::test]
async fn a_token_without_send_gets_403_on_a_send() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let (_, reader) = create_token(&app, "dashboard", &["read", "manage"]).await;
    let (status, v, _) = call(
        &app,
        &reader,
        Method::POST,
        "/api/v1/messages",
        Some(&welcome_to(&phone)),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "insufficient_scope");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`send`"),
        "the message names the scope: {v}"
    );
    // It still reads; a `send` token sends but cannot read the list.
    let (status, _, _) = call(&app, &reader, Method::GET, "/api/v1/messages", None).await;
    assert_eq!(status, 200);
    let (_, sender) = create_token(&app, "backend", &["send"]).await;
    let (status, v, _) = call(
        &app,
        &sender,
        Method::POST,
        "/api/v1/messages",
        Some(&welcome_to(&phone)),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let (status, v, _) = call(&app, &sender, Method::GET, "/api/v1/messages", None).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "insufficient_scope");
}

/// Every operation of the OpenAPI document under `/api/v1` names exactly one scope, and a
/// token lacking a scope gets 403 `insufficient_scope` on exactly the operations that name it.
#[tokio::test]
async fn every_route_checks_the_scope_its_document_names() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            if !path.starts_with("/api/v1/") {
                continue;
            }
            let scopes: Vec<&str> = op["security"]
                .as_array()
                .and_then(|s| s.first())
                .and_then(|s| s["bearer"].as_array())
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert_eq!(
                scopes.len(),
                1,
                "{method} {path} must name exactly one scope in its security: {scopes:?}"
            );
            operations.push((method.to_uppercase(), path.clone(), scopes[0].to_owned()));
        }
    }
    assert!(operations.len() >= 40, "{} operations", operations.len());
    let all = ["send", "read", "manage"];
    for lacking in all {
        let others: Vec<&str> = all.iter().copied().filter(|s| *s != lacking).collect();
        let (_, token) = create_token(&app, &format!("without {lacking}"), &others).await;
        for (method, path, needed) in &operations {
            let concrete = path
                .replace("{id}", "tok_0190c3b5a1b27c3e8a1b2c3d4e5f6a7b")
                .replace("{phone}", "+4915100000000")
                .replace("{job}", "imp_0190c3b5a1b27c3e8a1b2c3d4e5f6a7b");
            let m = Method::from_bytes(method.as_bytes()).expect("method");
            let body = (m != Method::GET).then(|| json!({}));
            let (status, v, _) = call(&app, &token, m, &concrete, body.as_ref()).await;
            let refused = status == 403 && v["error"]["code"] == "insufficient_scope";
            assert_eq!(
                refused,
                needed == lacking,
                "{method} {path} (needs `{needed}`) with a token lacking `{lacking}`: {status} {v}"
            );
        }
    }
}

#[tokio::test]
async fn expired_and_revoked_tokens_get_401() {
    let app = spawn_app().await;
    let in_an_hour = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let expires = in_an_hour
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let (_, expiring) =
        create_token_with(&app, json!({"label": "temp", "expires_at": expires})).await;
    let (_, revoked) = create_token(&app, "old", &["read"]).await;
    let (revoked_id, _) = (
        app.api_call(Method::GET, "/api/v1/tokens", None).await.1["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|t| t["label"] == "old")
            .expect("listed")["id"]
            .as_str()
            .expect("id")
            .to_owned(),
        (),
    );
    for t in [&expiring, &revoked] {
        let (status, _, _) = call(&app, t, Method::GET, "/api/v1/messages", None).await;
        assert_eq!(status, 200);
    }
    let (status, v) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/tokens/{revoked_id}/revoke"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["revoked_at"].is_string(), "{v}");
    let (status, v, _) = call(&app, &revoked, Method::GET, "/api/v1/messages", None).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], "token_revoked");

    app.clock.advance(2 * 3600 * 1000);
    let (status, v, _) = call(&app, &expiring, Method::GET, "/api/v1/messages", None).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], "token_expired");

    // Nonsense is refused with clear codes.
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({"label": "x", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_scope"))
    );
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({"label": "x", "scopes": []})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_scope"))
    );
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({"label": " ", "expires_at": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_label"))
    );
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({"label": "x", "expires_at": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("invalid_expiry"))
    );
    let (status, v) = app
        .api_call(Method::POST, "/api/v1/tokens/tok_nope/revoke", None)
        .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("token_not_found"))
    );
}

#[tokio::test]
async fn a_tokens_last_use_shows_up_in_the_list() {
    let app = spawn_app().await;
    let (id, secret) = create_token(&app, "poller", &["read"]).await;
    let listed = |v: &Value| -> Value {
        v["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|t| t["id"] == id.as_str())
            .cloned()
            .expect("listed")
    };
    let (_, v) = app.api_call(Method::GET, "/api/v1/tokens", None).await;
    let t = listed(&v);
    assert_eq!(t["last_used_at"], Value::Null, "{t}");
    assert_eq!(t["scopes"], json!(["read"]));
    assert_eq!(t["label"], "poller");
    let (status, _, _) = call(&app, &secret, Method::GET, "/api/v1/campaigns", None).await;
    assert_eq!(status, 200);
    for attempt in 0.. {
        let (_, v) = app.api_call(Method::GET, "/api/v1/tokens", None).await;
        if listed(&v)["last_used_at"].is_string() {
            break;
        }
        assert!(attempt < 200, "the last use never showed up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Pages: one token per page walks them all.
    let mut seen = 0;
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/tokens?limit=1&after={a}"),
            None => "/api/v1/tokens?limit=1".to_owned(),
        };
        let (status, v) = app.api_call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{v}");
        seen += v["data"].as_array().expect("data").len();
        match v["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, 2, "the demo token and the poller");
}

fn entries(v: &Value) -> Vec<Value> {
    v["data"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(list: &'a [Value], action: &str, actor: &str) -> Option<&'a Value> {
    list.iter()
        .find(|e| e["action"] == action && e["actor"]["label"] == actor)
}

#[tokio::test]
async fn the_audit_log_names_who_changed_what_and_stays_in_its_application() {
    let app = spawn_app().await;
    let (ci_id, ci) = create_token(&app, "ci", &["read", "manage"]).await;
    // Changes by a token: a campaign, a platform refresh, a template sync, a token.
    let (status, v, _) = call(
        &app,
        &ci,
        Method::POST,
        "/api/v1/campaigns",
        Some(&json!({
            "name": "audited", "template": {"name": "welcome", "language": "en",
                "variables": {"first_name": "x"}},
            "audience": {"filter": "city = \"Berlin\""}, "type": "marketing"
        })),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let campaign = v["id"].as_str().expect("id").to_owned();
    let (status, _, _) = call(
        &app,
        &ci,
        Method::POST,
        &format!("/api/v1/campaigns/{campaign}/cancel"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, platforms, _) = call(&app, &ci, Method::GET, "/api/v1/platforms", None).await;
    let platform = platforms["data"][0]["id"]
        .as_str()
        .expect("platform")
        .to_owned();
    let (status, v, _) = call(
        &app,
        &ci,
        Method::POST,
        &format!("/api/v1/platforms/{platform}/refresh"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v, _) = call(&app, &ci, Method::POST, "/api/v1/templates/sync", None).await;
    assert_eq!(status, 200, "{v}");
    let (status, v, _) = call(
        &app,
        &ci,
        Method::POST,
        "/api/v1/tokens",
        Some(&json!({"label": "made by ci"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let made = v["id"].as_str().expect("id").to_owned();
    // A refused change and a read are not entries.
    let (status, _, _) = call(
        &app,
        &ci,
        Method::POST,
        "/api/v1/campaigns/cmp_nope/start",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Changes by a console user.
    let cookie = app.console_cookie().await;
    let (status, v) = app
        .console_post(
            &cookie,
            &format!("/settings/platforms/{platform}/refresh"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let resp = app
        .http
        .post(format!("{}/settings/tokens", app.url))
        .header("cookie", &cookie)
        .header("origin", app.url.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("label=from+the+console&scope_read=on")
        .send()
        .await
        .expect("form");
    assert_eq!(resp.status(), 201);
    let resp = app
        .http
        .post(format!("{}/settings/tokens", app.url))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("label=planted&scope_manage=on")
        .send()
        .await
        .expect("form");
    assert_eq!(
        resp.status(),
        403,
        "a token form posted from another site is refused"
    );

    let (status, v, _) = call(&app, &ci, Method::GET, "/api/v1/audit", None).await;
    assert_eq!(status, 200, "{v}");
    let list = entries(&v);
    let e = find(&list, "campaign.create", "ci").expect("campaign.create by ci");
    assert_eq!(e["actor"]["kind"], "token");
    assert_eq!(e["actor"]["id"], ci_id.as_str());
    assert_eq!(e["route"], "/api/v1/campaigns");
    assert_eq!(e["address"], "127.0.0.1");
    let e = find(&list, "campaign.cancel", "ci").expect("campaign.cancel");
    assert_eq!(e["target"], campaign.as_str());
    let e = find(&list, "platform.refresh", "ci").expect("platform.refresh by ci");
    assert_eq!(e["target"], platform.as_str());
    find(&list, "template.sync", "ci").expect("template.sync");
    let e = find(&list, "token.create", "ci").expect("token.create by ci");
    assert_eq!(e["target"], made.as_str(), "names the token made");
    assert!(
        !list.iter().any(|e| e["action"] == "campaign.start"),
        "a refused change is no entry: {v}"
    );
    assert_eq!(
        list.iter()
            .filter(|e| e["action"] == "token.create")
            .count(),
        3,
        "ci's, the console's and the first one; not the cross-site one: {v}"
    );
    let e = find(&list, "platform.refresh", &app.console_email).expect("refresh by the user");
    assert_eq!(e["actor"]["kind"], "user");
    assert!(
        e["actor"]["id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("usr_")
    );
    find(&list, "token.create", &app.console_email).expect("token.create by the user");
    // Newest first: the console's token came last.
    assert_eq!(list[0]["action"], "token.create");
    assert_eq!(list[0]["actor"]["kind"], "user");

    // The console page shows them, and pages.
    let (status, page) = app.console_get(&cookie, "/settings/audit").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("campaign.create") && page.contains("ci (token)"),
        "{page}"
    );
    let (status, v, _) = call(&app, &ci, Method::GET, "/api/v1/audit?limit=2", None).await;
    assert_eq!(status, 200);
    assert_eq!(entries(&v).len(), 2);
    let cursor = v["next_cursor"].as_str().expect("more").to_owned();
    let (_, v, _) = call(
        &app,
        &ci,
        Method::GET,
        &format!("/api/v1/audit?after={cursor}&limit=200"),
        None,
    )
    .await;
    assert_eq!(entries(&v).len(), list.len() - 2);

    // Another application sees none of it.
    let other = other_application_token(&app).await;
    let (status, v, _) = call(&app, &other, Method::GET, "/api/v1/audit", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(entries(&v), Vec::<Value>::new());
    let (status, _, _) = call(
        &app,
        &other,
        Method::POST,
        &format!("/api/v1/tokens/{made}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 404, "another application's token cannot be revoked");

    // Reading the log needs `manage`.
    let (_, reader) = create_token(&app, "reader", &["read"]).await;
    let (status, v, _) = call(&app, &reader, Method::GET, "/api/v1/audit", None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
}

/// A second account and application with an all-scopes token, straight in the store.
async fn other_application_token(app: &TestApp) -> String {
    use parley_domain::{AccountId, ApplicationId};
    let account = AccountId::new();
    let application = ApplicationId::new();
    app.store
        .create_account(&account, "Other", 0)
        .await
        .expect("account");
    app.store
        .create_application(&application, &account, "Other app", 0)
        .await
        .expect("application");
    let secret = parley_engine::auth::generate_api_token();
    app.store
        .add_api_token(
            &application,
            &parley_engine::auth::hash_api_token(&secret),
            "other",
            0,
        )
        .await
        .expect("token");
    secret
}

#[tokio::test]
async fn a_burst_over_a_tokens_rate_gets_429_with_retry_after() {
    let app = spawn_app_with_server(|c| {
        c.rate_limit = parley_server::auth::RateLimit {
            per_second: std::num::NonZeroU32::new(1).expect("1"),
            burst: std::num::NonZeroU32::new(3).expect("3"),
        };
    })
    .await;
    let (_, other) = create_token(&app, "other", &["read"]).await;
    let mut limited = None;
    for _ in 0..20 {
        let (status, v, retry) =
            call(&app, &app.token, Method::GET, "/api/v1/messages", None).await;
        if status == 429 {
            limited = Some((v, retry));
            break;
        }
        assert_eq!(status, 200, "{v}");
    }
    let (v, retry) = limited.expect("a burst of 20 over a burst of 3 is refused");
    assert_eq!(v["error"]["code"], "rate_limited");
    let seconds: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!(seconds >= 1, "{seconds}");
    // The limit is the token's: another token goes on, and so does Meta's webhook intake.
    let (status, _, _) = call(&app, &other, Method::GET, "/api/v1/messages", None).await;
    assert_eq!(status, 200);
    let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    for _ in 0..10 {
        let status = app.post_webhook(body, Some(&app.sign(body))).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn the_console_tokens_page_creates_shows_once_and_revokes() {
    use fantoccini::Locator;
    let app = spawn_app().await;
    let browser = crate::browser::Browser::start().await;
    browser.sign_in(&app).await;
    let c = &browser.client;
    c.goto(&format!("{}/settings/tokens", app.url))
        .await
        .expect("goto");
    browser
        .wait_css("#token-form input[name=label]")
        .await
        .send_keys("Zapier")
        .await
        .expect("type");
    // Without `manage`.
    c.find(Locator::Css("input[name=scope_manage]"))
        .await
        .expect("checkbox")
        .click()
        .await
        .expect("click");
    c.find(Locator::Css("#token-form button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    let secret = browser
        .wait_css("#token-secret")
        .await
        .text()
        .await
        .expect("text");
    assert!(secret.starts_with("pk_"), "{secret}");
    let (status, _, _) = call(&app, &secret, Method::GET, "/api/v1/messages", None).await;
    assert_eq!(status, 200, "the shown token works");
    let (status, v, _) = call(&app, &secret, Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("insufficient_scope"))
    );

    // Shown once: the list page does not have it.
    c.goto(&format!("{}/settings/tokens", app.url))
        .await
        .expect("goto");
    browser.wait_text("Zapier").await;
    let source = c.source().await.expect("source");
    assert!(!source.contains(&secret), "the secret is shown only once");
    assert!(source.contains("send, read"), "scopes listed");

    let row = browser
        .wait_css("tr[data-token-id] [data-role=revoke]")
        .await;
    // The newest token is first: Zapier's.
    let first_label = c
        .find(Locator::Css("tr[data-token-id] [data-role=label]"))
        .await
        .expect("label")
        .text()
        .await
        .expect("text");
    assert_eq!(first_label, "Zapier");
    row.click().await.expect("revoke");
    browser.wait_url("revoked=").await;
    browser.wait_text("revoked").await;
    let (status, v, _) = call(&app, &secret, Method::GET, "/api/v1/messages", None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("token_revoked"))
    );

    // Both changes are in the log, by the signed-in user.
    c.goto(&format!("{}/settings/audit", app.url))
        .await
        .expect("goto");
    browser.wait_text("token.revoke").await;
    browser.wait_text("token.create").await;
    assert!(browser.csp_violations().await.is_empty());
}

/// An application has at most `MAX_LIVE_TOKENS` live API tokens, and a burst of creates stops
/// exactly there (409 `token_limit_reached`): each token has a rate limit of its own, so
/// minting tokens without end multiplied the application's rate. Revoking one makes room.
#[tokio::test]
async fn an_application_has_a_bounded_number_of_live_tokens_even_under_a_burst() {
    let app = spawn_app().await;
    let max = parley_engine::access::MAX_LIVE_TOKENS as usize;
    let (_, list) = app
        .api_call(Method::GET, "/api/v1/tokens?limit=200", None)
        .await;
    let have = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|t| t["revoked_at"].is_null())
        .count();
    // Filled up to five short of the cap from the store (the API's own rate would refuse a
    // burst of a hundred from one token).
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    for i in have..max - 5 {
        let seeded = parley_store::access::NewToken {
            id: parley_domain::TokenId::new(),
            application_id: application.clone(),
            token_hash: format!("seeded-{i}"),
            label: format!("seeded {i}"),
            scopes: parley_domain::Scopes::ALL,
            expires_at: None,
            now: app.now_ms(),
        };
        assert!(
            app.store
                .insert_token(&seeded, u64::MAX)
                .await
                .expect("token")
        );
    }
    let room = 5;
    let burst = room + 12;
    let answers = futures::future::join_all((0..burst).map(|i| {
        let body = json!({"label": format!("burst {i}"), "scopes": ["read"]});
        let app = &app;
        async move {
            app.api_call(Method::POST, "/api/v1/tokens", Some(&body))
                .await
        }
    }))
    .await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(created.len(), room, "{answers:?}");
    for (status, v) in answers.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*status, 409, "{v}");
        assert_eq!(v["error"]["code"], "token_limit_reached", "{v}");
    }
    let id = created[0]["id"].as_str().expect("id");
    let (status, v) = app
        .api_call(Method::POST, &format!("/api/v1/tokens/{id}/revoke"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/tokens",
            Some(&json!({"label": "after a revoke", "scopes": ["read"]})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}
