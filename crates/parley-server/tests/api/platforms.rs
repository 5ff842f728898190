//! Platform setup end to end: the customer walks Embedded Signup in the sandbox
//! (`POST /sandbox/signup`), Parley runs Meta's onboarding steps over HTTP, and Meta's review
//! and limit webhooks move the platform in the list.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

fn step<'a>(platform: &'a Value, name: &str) -> &'a Value {
    platform["onboarding"]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == name))
        .unwrap_or_else(|| panic!("no step {name}: {platform}"))
}

async fn connected(app: &TestApp, company: &str) -> (Value, Value) {
    let signup = app.sandbox_signup(company).await;
    let (status, platform) = app.platform_signup(&signup).await;
    assert_eq!(status, 201, "{platform}");
    (signup, platform)
}

#[tokio::test]
async fn signup_connects_a_platform_that_turns_active_after_review() {
    let app = spawn_app().await;
    let (signup, platform) = connected(&app, "Acme Shoes GmbH").await;
    assert_eq!(platform["status"], "pending_review", "{platform}");
    assert_eq!(platform["company_name"], "Acme Shoes GmbH");
    assert_eq!(platform["waba_id"], signup["waba_id"]);
    assert_eq!(platform["waba_name"], "Acme Shoes GmbH WhatsApp");
    assert_eq!(platform["onboarding"]["state"], "done");
    for name in parley_engine::onboarding::STEPS {
        // The WhatsApp Business app syncs are for coexistence numbers only.
        let expected = if name.starts_with("sync_") {
            "skipped"
        } else {
            "done"
        };
        assert_eq!(
            step(&platform, name)["state"],
            expected,
            "{name}: {platform}"
        );
    }
    let number = &platform["phone_numbers"][0];
    assert_eq!(number["phone_number_id"], signup["phone_number_id"]);
    assert_eq!(number["messaging_limit"], "TIER_250");
    assert_eq!(number["messaging_limit_scope"], "business_portfolio");
    assert_eq!(number["throughput_level"], "STANDARD");
    assert!(platform["connected_at"].is_string());

    // Several platforms per application: the demo one and the new one.
    let (status, list) = app
        .api_call(Method::GET, "/api/v1/platforms?limit=1", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    let after = list["next_cursor"].as_str().expect("a second page");
    let (_, page2) = app
        .api_call(
            Method::GET,
            &format!("/api/v1/platforms?limit=1&after={after}"),
            None,
        )
        .await;
    assert_eq!(page2["data"][0]["id"], platform["id"]);
    assert!(page2["next_cursor"].is_null());

    // Meta's review finishes after the configured delay (30 s of sandbox time).
    app.sandbox_post("/sandbox/clock/advance", &json!({"seconds": 31}))
        .await;
    let id = platform["id"].as_str().expect("id");
    let active = app.wait_platform(id, |p| p["status"] == "active").await;
    assert!(active["status_reason"].is_null(), "{active}");

    // The new number sends.
    let (status, refreshed) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/platforms/{id}/refresh"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(refreshed["status"], "active");
}

#[tokio::test]
async fn a_rejected_review_is_shown_with_its_reason() {
    let app = spawn_app().await;
    let (signup, platform) = connected(&app, "Rejected Ltd").await;
    app.sandbox_post(
        "/sandbox/review",
        &json!({"waba_id": signup["waba_id"], "decision": "REJECTED"}),
    )
    .await;
    let id = platform["id"].as_str().expect("id");
    let rejected = app.wait_platform(id, |p| p["status"] == "rejected").await;
    assert!(
        rejected["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("rejected")),
        "{rejected}"
    );
}

#[tokio::test]
async fn an_expired_code_asks_to_sign_up_again() {
    let app = spawn_app().await;
    let signup = app.sandbox_signup("Slow Fingers").await;
    app.sandbox_post("/sandbox/clock/advance", &json!({"seconds": 31}))
        .await;
    let (status, body) = app.platform_signup(&signup).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "signup_code_expired");
    assert!(body["platform"].is_null());
    assert_eq!(body["onboarding"]["failed_step"], "exchange_code");

    // A code works once.
    let fresh = app.sandbox_signup("Quick Fingers").await;
    let (status, _) = app.platform_signup(&fresh).await;
    assert_eq!(status, 201);
    let (status, body) = app.platform_signup(&fresh).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "signup_code_used");
}

#[tokio::test]
async fn a_failed_subscription_is_retried_without_starting_over() {
    let app = spawn_app().await;
    let signup = app.sandbox_signup("Flaky Hooks").await;
    app.sandbox_post(
        "/sandbox/faults",
        &json!({"fail_next_calls": [{"path": "subscribed_apps", "code": 2}]}),
    )
    .await;
    let (status, body) = app.platform_signup(&signup).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "webhook_subscription_failed");
    let platform = &body["platform"];
    assert_eq!(platform["status"], "setting_up");
    assert_eq!(platform["onboarding"]["failed_step"], "subscribe_app");
    assert_eq!(step(platform, "exchange_code")["state"], "done");
    assert_eq!(step(platform, "subscribe_app")["state"], "failed");
    assert_eq!(step(platform, "subscribe_app")["error_code"], 2);
    let exchanged_at = step(platform, "exchange_code")["at"].clone();

    let id = platform["id"].as_str().expect("id");
    let (status, retried) = app
        .api_call(Method::POST, &format!("/api/v1/platforms/{id}/retry"), None)
        .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["status"], "pending_review");
    assert_eq!(retried["onboarding"]["state"], "done");
    // The code was not exchanged again (it could not be: codes work once).
    assert_eq!(step(&retried, "exchange_code")["at"], exchanged_at);
    assert_eq!(step(&retried, "subscribe_app")["state"], "done");

    let (status, again) = app
        .api_call(Method::POST, &format!("/api/v1/platforms/{id}/retry"), None)
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "nothing_to_retry");
}

async fn graph_post(app: &TestApp, path: &str, body: &Value) -> u16 {
    app.http
        .post(format!("{}/v23.0/{path}", app.sandbox_url))
        .bearer_auth(parley_sandbox::demo_ids::ACCESS_TOKEN)
        .json(body)
        .send()
        .await
        .expect("graph")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_registration_limit_and_a_foreign_pin_are_explained() {
    let app = spawn_app().await;
    // Someone registered and deregistered the number 10 times in the last 72 hours.
    let signup = app.sandbox_signup("Busy Number").await;
    let phone = signup["phone_number_id"].as_str().expect("phone");
    for _ in 0..10 {
        graph_post(&app, &format!("{phone}/deregister"), &json!({})).await;
    }
    let (status, body) = app.platform_signup(&signup).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "registration_limit_reached");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("72 hours")),
        "{body}"
    );
    assert_eq!(
        body["platform"]["onboarding"]["failed_step"],
        "register_phone"
    );
    assert_eq!(
        step(&body["platform"], "register_phone")["error_code"],
        133016
    );

    // A number with someone else's two-step PIN.
    let signup = app.sandbox_signup("Pinned Number").await;
    let phone = signup["phone_number_id"].as_str().expect("phone");
    assert_eq!(
        graph_post(&app, phone, &json!({"pin": "246810"})).await,
        200
    );
    let (status, body) = app.platform_signup(&signup).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "registration_pin_mismatch");
}

#[tokio::test]
async fn a_tier_change_webhook_updates_the_limit_at_once() {
    let app = spawn_app().await;
    let (signup, platform) = connected(&app, "Growing Co").await;
    let id = platform["id"].as_str().expect("id");
    let phone = signup["phone_number_id"].as_str().expect("phone");
    app.sandbox_post(
        &format!("/sandbox/phone_numbers/{phone}/limit"),
        &json!({"limit": "TIER_2K"}),
    )
    .await;
    let updated = app
        .wait_platform(id, |p| {
            p["phone_numbers"][0]["messaging_limit"] == "TIER_2K"
        })
        .await;
    assert_eq!(
        updated["phone_numbers"][0]["messaging_limit_scope"],
        "business_portfolio"
    );
}

/// Apps still on webhook version v23 get the legacy shape (`max_daily_conversation_per_phone`,
/// -1 for unlimited; `current_limit`): Parley reads it as well as the current one.
#[tokio::test]
async fn a_tier_change_in_the_legacy_webhook_shape_updates_the_limit_too() {
    let app = spawn_app().await;
    let (signup, platform) = connected(&app, "Old Hooks Co").await;
    let id = platform["id"].as_str().expect("id");
    let phone = signup["phone_number_id"].as_str().expect("phone");
    app.sandbox_post(
        "/sandbox/behaviour",
        &json!({"legacy_limit_webhooks": true}),
    )
    .await;
    app.sandbox_post(
        &format!("/sandbox/phone_numbers/{phone}/limit"),
        &json!({"limit": "TIER_UNLIMITED"}),
    )
    .await;
    app.wait_platform(id, |p| {
        p["phone_numbers"][0]["messaging_limit"] == "TIER_UNLIMITED"
    })
    .await;
}

#[tokio::test]
async fn only_waba_signups_find_the_waba_with_debug_token() {
    let app = spawn_app().await;
    let signup = app.sandbox_signup("No Number Yet").await;
    let body = json!({"code": signup["code"], "event": "FINISH_ONLY_WABA"});
    let (status, platform) = app
        .api_call(
            Method::POST,
            "/api/v1/platforms/whatsapp/signup",
            Some(&body),
        )
        .await;
    assert_eq!(status, 201, "{platform}");
    assert_eq!(platform["waba_id"], signup["waba_id"]);
    // v4: without a number in the event, the WABA's own number is found and registered.
    assert_eq!(step(&platform, "find_number")["state"], "done");
    assert_eq!(step(&platform, "register_phone")["state"], "done");
    assert!(platform["next_step"].is_null(), "{platform}");
    assert!(
        platform["phone_numbers"]
            .as_array()
            .is_some_and(|n| !n.is_empty()),
        "the WABA's numbers are listed: {platform}"
    );
}

#[tokio::test]
async fn disconnect_keeps_numbers_registered_unless_confirmed() {
    let app = spawn_app().await;
    let (signup, platform) = connected(&app, "Leaving Soon").await;
    let id = platform["id"].as_str().expect("id");
    let (status, body) = app
        .api_call(Method::DELETE, &format!("/api/v1/platforms/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["platform"]["status"], "disconnected");
    assert_eq!(body["unsubscribed"], true);
    assert_eq!(body["deregistered"], json!([]));
    assert_eq!(body["platform"]["phone_numbers"], json!([]));
    // The number is no longer a sender of this application.
    let (_, numbers) = app
        .api_call(Method::GET, "/api/v1/phone-numbers", None)
        .await;
    assert!(
        !numbers
            .to_string()
            .contains(signup["phone_number_id"].as_str().expect("id")),
        "{numbers}"
    );

    let (_, other) = connected(&app, "Leaving For Good").await;
    let other_id = other["id"].as_str().expect("id");
    let (status, body) = app
        .api_call(
            Method::DELETE,
            &format!("/api/v1/platforms/{other_id}?deregister=true"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deregistered"].as_array().map(Vec::len), Some(1));

    let (status, _) = app
        .api_call(
            Method::GET,
            "/api/v1/platforms/plt_00000000000000000000000000000000",
            None,
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_database_holds_neither_the_business_token_nor_the_pin() {
    let app = spawn_app().await;
    let (_, platform) = connected(&app, "Secretive AG").await;
    let id = parley_domain::PlatformId::parse(platform["id"].as_str().expect("id")).expect("id");
    let token = app.store.platform_token(&id).await.expect("token");
    let session = platform["onboarding"]["id"].as_str().expect("session");
    let pin = app
        .store
        .onboarding_secrets(session)
        .await
        .expect("secrets")
        .pin
        .expect("a PIN was generated");
    assert_eq!(pin.len(), 6);
    assert!(token.len() > 10);
    let mut bytes = Vec::new();
    if let Some(url) = app.pg_url() {
        // Every row of every table as PostgreSQL prints it (a BYTEA column as `\x` and hex).
        use sqlx::{Connection, Row};
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&mut conn)
        .await
        .expect("tables");
        assert!(tables.iter().any(|t| t == "platforms"), "{tables:?}");
        // The six digits of the PIN would be found by chance among the rows' numbers: its
        // column is checked as the raw bytes it holds.
        let pins: Vec<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT pin FROM onboarding_sessions WHERE id = $1")
                .bind(session)
                .fetch_all(&mut conn)
                .await
                .expect("pin column");
        let raw = pins
            .into_iter()
            .flatten()
            .next()
            .expect("the PIN is stored");
        assert!(raw.len() > 6 + 16, "nonce and tag around the PIN: {raw:?}");
        assert!(
            !raw.windows(6).any(|w| w == pin.as_bytes()),
            "PIN in plain text in its column"
        );
        for table in &tables {
            let sql = format!("SELECT t::text AS row FROM \"{table}\" t");
            for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut conn)
                .await
                .expect("rows")
            {
                let text: String = row.try_get("row").expect("row text");
                bytes.extend(text.into_bytes());
                bytes.push(b'\n');
            }
        }
    } else {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = app.db_path.clone().into_os_string();
            path.push(suffix);
            if let Ok(b) = std::fs::read(&path) {
                bytes.extend(b);
            }
        }
    }
    assert!(bytes.len() > 4096);
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let hex = |s: &str| -> String { s.bytes().map(|b| format!("{b:02x}")).collect() };
    for (what, secret) in [
        ("business token", token.as_str()),
        ("PIN", pin.as_str()),
        ("app secret", app.app_secret.as_str()),
    ] {
        if what != "PIN" || app.pg_url().is_none() {
            assert!(!contains(secret.as_bytes()), "{what} in the database");
        }
        assert!(
            !contains(hex(secret).as_bytes()),
            "{what} in the database (as bytes)"
        );
    }
}

/// Every screen of the dialog the person may close: the console says which one it was.
#[tokio::test]
async fn the_console_says_at_which_step_signup_was_cancelled() {
    let app = spawn_app().await;
    let cookie = app.console_cookie().await;
    for (step, label) in [
        ("LOGIN", "Log in"),
        ("GET_STARTED", "Connect your account"),
        ("BUSINESS_ACCOUNT_SELECTION", "Business portfolio"),
        ("WABA_PHONE_PROFILE_PICKER", "WhatsApp Business Account"),
        (
            "WHATSAPP_BUSINESS_PROFILE_SETUP",
            "WhatsApp business profile",
        ),
        ("PHONE_NUMBER_SETUP", "Phone number"),
        ("PHONE_NUMBER_VERIFICATION", "Phone number verification"),
        ("PERMISSIONS", "Permissions"),
        ("CONFIRMATION", "Confirmation"),
    ] {
        let event = app
            .sandbox_post("/sandbox/signup", &json!({"cancel_at": step}))
            .await;
        assert_eq!(event["event"], "CANCEL", "{event}");
        let (status, body) = app
            .console_post(
                &cookie,
                "/settings/platforms/whatsapp/signup",
                &json!({"code": null, "event": event}),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "signup_cancelled");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("“{label}”")) && message.contains(step),
            "{step}: {message}"
        );
    }
    // A problem the person reported in the dialog.
    let event = app
        .sandbox_post(
            "/sandbox/signup",
            &json!({"report_problem": "My number is not listed"}),
        )
        .await;
    let (status, body) = app
        .console_post(
            &cookie,
            "/settings/platforms/whatsapp/signup",
            &json!({"code": null, "event": event}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("My number is not listed")),
        "{body}"
    );
    // Nothing was connected: only the demo platform exists.
    let (_, list) = app.api_call(Method::GET, "/api/v1/platforms", None).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn the_console_connects_and_its_list_follows_review_and_tier_webhooks() {
    let app = spawn_app().await;
    let cookie = app.console_cookie().await;
    let signup = app.sandbox_signup("Console Bakery").await;
    let event = json!({"type": "WA_EMBEDDED_SIGNUP", "event": "FINISH", "data": {
        "waba_id": signup["waba_id"], "phone_number_id": signup["phone_number_id"],
        "business_id": signup["business_id"],
    }});
    // Another site cannot post a code for this session.
    let r = app
        .http
        .post(format!("{}/settings/platforms/whatsapp/signup", app.url))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .json(&json!({"code": signup["code"], "event": event}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);

    let (status, platform) = app
        .console_post(
            &cookie,
            "/settings/platforms/whatsapp/signup",
            &json!({"code": signup["code"], "event": event}),
        )
        .await;
    assert_eq!(status, 201, "{platform}");
    assert_eq!(platform["status"], "pending_review");

    let (status, page) = app.console_get(&cookie, "/settings/platforms").await;
    assert_eq!(status, 200);
    for needle in [
        "Configure platforms",
        "Log in with Facebook",
        "Console Bakery",
        "Pending review",
    ] {
        assert!(page.contains(needle), "settings page lacks {needle}");
    }
    let (status, campaigns) = app.console_get(&cookie, "/campaigns/whatsapp").await;
    assert_eq!(status, 200);
    assert!(campaigns.contains("WhatsApp messages"));

    let wait_list = |needle: &'static str| {
        let app = &app;
        let cookie = cookie.clone();
        async move {
            for _ in 0..400 {
                let (_, html) = app.console_get(&cookie, "/settings/platforms/list").await;
                if html.contains(needle) {
                    return html;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("the platform list never showed {needle}");
        }
    };
    app.sandbox_post(
        "/sandbox/review",
        &json!({"waba_id": signup["waba_id"], "decision": "APPROVED"}),
    )
    .await;
    wait_list(">Active<").await;
    let phone = signup["phone_number_id"].as_str().expect("phone");
    let before = wait_list("250 business-initiated conversations").await;
    assert!(!before.contains("2,000 business-initiated"));
    app.sandbox_post(
        &format!("/sandbox/phone_numbers/{phone}/limit"),
        &json!({"limit": "TIER_2K"}),
    )
    .await;
    let after = wait_list("2,000 business-initiated conversations").await;
    assert!(after.contains("per business portfolio"), "{after}");

    // Disconnect from the console.
    let id = platform["id"].as_str().expect("id");
    let (status, body) = app
        .console_post(
            &cookie,
            &format!("/settings/platforms/{id}/disconnect"),
            &json!({"deregister": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "disconnected");
}

/// Clicks a console button that opens Embedded Signup and switches to the popup; returns the
/// console's window.
async fn open_dialog(b: &crate::browser::Browser, button: &str) -> fantoccini::wd::WindowHandle {
    let c = &b.client;
    let main = c.window().await.expect("window");
    b.wait_css(button).await.click().await.expect("click");
    for _ in 0..200 {
        let windows = c.windows().await.expect("windows");
        if let Some(w) = windows.into_iter().find(|w| *w != main) {
            c.switch_to_window(w).await.expect("switch to popup");
            return main;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("FB.login opened no popup");
}

/// Clicks `css` once it is there and clickable: a page that is still re-rendering (a busy
/// machine) can replace the element or cover it for a moment, so a refused click is tried
/// again on the element found afresh.
async fn click(b: &crate::browser::Browser, css: &str) {
    let mut last = String::new();
    for _ in 0..50 {
        match b.wait_css(css).await.click().await {
            Ok(()) => return,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("click {css}: {last}");
}

async fn fill(b: &crate::browser::Browser, css: &str, text: &str) {
    let e = b.wait_css(css).await;
    e.clear().await.expect("clear");
    e.send_keys(text).await.expect("type");
}

async fn at_step(b: &crate::browser::Browser, step: &str) {
    b.wait_css(&format!(".es-dialog[data-step=\"{step}\"]"))
        .await;
}

/// The dialog from its first screen: the phone choice (`#es-phone-…`), then a new portfolio,
/// WABA and profile named `company`, and Finish. `verify`: type the code, or "Verify later".
async fn walk_dialog(b: &crate::browser::Browser, phone: &str, verify: bool, company: &str) {
    at_step(b, "LOGIN").await;
    click(b, "#es-next").await;
    at_step(b, "GET_STARTED").await;
    click(b, "#es-next").await;
    // Phone Number First: the number comes before the portfolio.
    at_step(b, "PHONE_NUMBER_SETUP").await;
    click(b, phone).await;
    click(b, "#es-next").await;
    if phone == "#es-phone-sandbox" {
        at_step(b, "PHONE_NUMBER_VERIFICATION").await;
        let button = if verify {
            "#es-next"
        } else {
            "#es-verify-later"
        };
        click(b, button).await;
    }
    at_step(b, "BUSINESS_ACCOUNT_SELECTION").await;
    click(b, "#es-business-new").await;
    fill(b, "#es-business-name", company).await;
    fill(b, "#es-business-website", "https://cafe-lumen.example").await;
    b.wait_css("#es-business-country")
        .await
        .select_by_value("PT")
        .await
        .expect("country");
    fill(b, "#es-business-address", "Rua Augusta 1, Lisboa").await;
    click(b, "#es-next").await;
    if phone == "#es-phone-business-app" {
        at_step(b, "WHATSAPP_BUSINESS_APP_QR").await;
        click(b, "#es-next").await;
    }
    at_step(b, "WABA_PHONE_PROFILE_PICKER").await;
    fill(b, "#es-waba-name", &format!("{company} Orders")).await;
    click(b, "#es-next").await;
    if phone != "#es-phone-later" {
        at_step(b, "WHATSAPP_BUSINESS_PROFILE_SETUP").await;
        fill(b, "#es-profile-display-name", company).await;
        b.wait_css("#es-profile-category")
            .await
            .select_by_value("RESTAURANT")
            .await
            .expect("category");
        click(b, "#es-next").await;
    }
    at_step(b, "PERMISSIONS").await;
    click(b, "#es-next").await;
    at_step(b, "CONFIRMATION").await;
    click(b, "#es-next").await;
    at_step(b, "QUOTAS").await;
    click(b, "#es-next").await; // Finish
}

/// The `article.platform` of a company: its `data-status` and text.
async fn card(c: &fantoccini::Client, company: &str) -> (String, String) {
    let v = c
        .execute(
            "var name = arguments[0];
             var a = Array.from(document.querySelectorAll('article.platform'))
               .filter(function (a) { return a.textContent.indexOf(name) >= 0; })[0];
             return a ? [a.getAttribute('data-status'), a.innerText] : ['', ''];",
            vec![json!(company)],
        )
        .await
        .expect("script");
    (
        v[0].as_str().unwrap_or_default().to_owned(),
        v[1].as_str().unwrap_or_default().to_owned(),
    )
}

async fn wait_card(
    c: &fantoccini::Client,
    company: &str,
    check: impl Fn(&str, &str) -> bool,
) -> String {
    let mut last = (String::new(), String::new());
    for _ in 0..200 {
        last = card(c, company).await;
        if check(&last.0, &last.1) {
            return last.1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the card of {company} never matched: {last:?}");
}

/// A platform of the list by company.
async fn platform_by_company(app: &TestApp, company: &str) -> Value {
    let (_, list) = app
        .api_call(Method::GET, "/api/v1/platforms?limit=100", None)
        .await;
    list["data"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|p| {
                    p["company_name"] == company
                        // A coexistence finish names no portfolio: its WABA's name, then.
                        || p["waba_name"] == format!("{company} Orders").as_str()
                })
                .cloned()
        })
        .unwrap_or_else(|| panic!("no platform of {company}: {list}"))
}

/// The whole story in headless Chromium, for every way Embedded Signup v4 can finish: sign
/// in, Log in with Facebook, walk the dialog (Phone Number First), finish; the list shows the
/// platform with its status and next step. A verified number is *Pending review* until Meta's
/// review turns it *Active* in the open page; an unverified number and a sign-up without a
/// number become *Active* once the code is typed in the console; a WhatsApp Business app
/// number (the second button) is connected without registration.
#[tokio::test]
async fn a_person_connects_whatsapp_in_the_browser() {
    use fantoccini::Locator;
    let app = spawn_app().await;
    let browser = crate::browser::Browser::start().await;
    let b = &browser;
    let c = &browser.client;

    c.goto(&format!("{}/login", app.url)).await.expect("goto");
    fill(b, "input[name=email]", &app.console_email).await;
    fill(b, "input[name=password]", &app.console_password).await;
    click(b, "button[type=submit]").await;
    browser.wait_text("WhatsApp platforms").await;
    c.find(Locator::LinkText("Settings"))
        .await
        .expect("Settings link")
        .click()
        .await
        .expect("click");
    browser.wait_text("Configure platforms").await;
    // The SDK loaded and FB.init ran: the buttons are enabled.
    browser
        .wait_css("button[data-fb-login]:not([disabled])")
        .await;
    browser
        .wait_text("Connect a WhatsApp Business app number")
        .await;

    // 1. A new number, verified in the dialog.
    let main = open_dialog(b, "button[data-fb-login]").await;
    walk_dialog(b, "#es-phone-sandbox", true, "Café Lumen Lda").await;
    c.switch_to_window(main.clone())
        .await
        .expect("back to the console");
    browser
        .wait_text("Connected Café Lumen Lda Orders: Pending review")
        .await;
    wait_card(c, "Café Lumen Lda", |s, _| s == "pending_review").await;
    let signups: Value = app
        .http
        .get(format!("{}/sandbox/signups", app.sandbox_url))
        .send()
        .await
        .expect("signups")
        .json()
        .await
        .expect("json");
    assert_eq!(
        signups["data"][0]["extras"],
        json!({"setup": {}}),
        "v4's extras: {signups}"
    );
    assert_eq!(signups["data"][0]["flavour"], "v4");

    // Meta approves; the open page follows.
    let waba = platform_by_company(&app, "Café Lumen Lda").await["waba_id"].clone();
    app.sandbox_post(
        "/sandbox/review",
        &json!({"waba_id": waba, "decision": "APPROVED"}),
    )
    .await;
    // The review's webhooks (the account's, then the display name's) are separate events, which
    // the processor may apply in separate rounds: the card is awaited until it shows both.
    let text = wait_card(c, "Café Lumen Lda", |s, text| {
        s == "active" && text.contains("Café Lumen Lda (APPROVED)")
    })
    .await;
    for needle in [
        "Active",
        "Café Lumen Lda Orders",
        "Café Lumen Lda (APPROVED)",
        "+1 555-",
        "UNKNOWN",
        "250 business-initiated conversations",
        "per business portfolio",
        "80 msg/s",
    ] {
        assert!(text.contains(needle), "the card lacks {needle}: {text}");
    }

    // 2. A new number, verified later: the platform asks for the code.
    let main = open_dialog(b, "button[data-fb-login]").await;
    walk_dialog(b, "#es-phone-sandbox", false, "Verify Later Lda").await;
    c.switch_to_window(main.clone()).await.expect("back");
    let text = wait_card(c, "Verify Later Lda", |s, t| {
        s == "setting_up" && t.contains("Verify the number")
    })
    .await;
    assert!(text.contains("Send the code by text message"), "{text}");
    let platform = platform_by_company(&app, "Verify Later Lda").await;
    let phone = platform["next_step"]["phone_number_id"]
        .as_str()
        .expect("the number waiting")
        .to_owned();
    app.sandbox_post(
        "/sandbox/review",
        &json!({"waba_id": platform["waba_id"], "decision": "APPROVED"}),
    )
    .await;
    let id = platform["id"].as_str().expect("id").to_owned();
    click(
        b,
        &format!("article[data-platform=\"{id}\"] [data-action=request_code][data-method=SMS]"),
    )
    .await;
    browser
        .wait_text("Meta is sending the code by text message")
        .await;
    let code = app.sent_code(&phone).await;
    fill(
        b,
        &format!("article[data-platform=\"{id}\"] input[name=code]"),
        &code,
    )
    .await;
    click(
        b,
        &format!("article[data-platform=\"{id}\"] [data-action=verify_code]"),
    )
    .await;
    let text = wait_card(c, "Verify Later Lda", |s, _| s == "active").await;
    assert!(!text.contains("Verify the number"), "{text}");

    // 3. No number: shown as such (not an error), then one is added and verified.
    let main = open_dialog(b, "button[data-fb-login]").await;
    walk_dialog(b, "#es-phone-later", false, "Number Later Lda").await;
    c.switch_to_window(main.clone()).await.expect("back");
    let text = wait_card(c, "Number Later Lda", |s, t| {
        s == "setting_up" && t.contains("No phone number yet")
    })
    .await;
    assert!(!text.contains("Retry failed step"), "not a failure: {text}");
    let platform = platform_by_company(&app, "Number Later Lda").await;
    let id = platform["id"].as_str().expect("id").to_owned();
    app.sandbox_post(
        "/sandbox/review",
        &json!({"waba_id": platform["waba_id"], "decision": "APPROVED"}),
    )
    .await;
    let in_card = |what: &str| format!("article[data-platform=\"{id}\"] {what}");
    fill(b, &in_card("input[name=cc]"), "351").await;
    fill(b, &in_card("input[name=phone_number]"), "912345678").await;
    fill(b, &in_card("input[name=verified_name]"), "Number Later").await;
    click(b, &in_card("[data-action=add_number]")).await;
    wait_card(c, "Number Later Lda", |_, t| {
        t.contains("Verify the number")
    })
    .await;
    click(b, &in_card("[data-action=request_code][data-method=VOICE]")).await;
    browser
        .wait_text("Meta is sending the code by a phone call")
        .await;
    let phone = platform_by_company(&app, "Number Later Lda").await["next_step"]["phone_number_id"]
        .as_str()
        .expect("the added number")
        .to_owned();
    let code = app.sent_code(&phone).await;
    fill(b, &in_card("input[name=code]"), &code).await;
    click(b, &in_card("[data-action=verify_code]")).await;
    let text = wait_card(c, "Number Later Lda", |s, _| s == "active").await;
    assert!(text.contains("+351 912345678"), "{text}");

    // 4. A WhatsApp Business app number, from its own button: no registration.
    let main = open_dialog(b, "button[data-flow=business_app]").await;
    walk_dialog(b, "#es-phone-business-app", true, "Corner Shop Lda").await;
    c.switch_to_window(main.clone()).await.expect("back");
    let text = wait_card(c, "Corner Shop Lda", |s, _| s == "pending_review").await;
    assert!(text.contains("+1 555-"), "{text}");
    let platform = platform_by_company(&app, "Corner Shop Lda").await;
    assert_eq!(
        platform["onboarding"]["event"],
        "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING"
    );
    let register = platform["onboarding"]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == "register_phone").cloned())
        .expect("register step");
    assert_eq!(register["state"], "skipped", "{platform}");
    let signups: Value = app
        .http
        .get(format!("{}/sandbox/signups", app.sandbox_url))
        .send()
        .await
        .expect("signups")
        .json()
        .await
        .expect("json");
    let last = signups["data"]
        .as_array()
        .and_then(|d| d.last())
        .cloned()
        .expect("signup");
    assert_eq!(
        last["extras"],
        json!({"setup": {}, "featureType": "whatsapp_business_app_onboarding"}),
        "{last}"
    );

    // The page's policy let through all that the SDK stand-in and the page needed.
    assert_eq!(browser.csp_violations().await, Vec::<String>::new());
    let _ = c.clone().close().await;
}

/// A second application (its own account) with an API token, as another tenant of the same
/// Parley: returns its token.
pub async fn second_application(app: &TestApp) -> String {
    use parley_domain::{AccountId, ApplicationId};
    let now = parley_engine::Clock::now_millis(&app.clock);
    let account = AccountId::new();
    let other = ApplicationId::new();
    app.store
        .create_account(&account, "Other Company", now)
        .await
        .expect("account");
    app.store
        .create_application(&other, &account, "Other application", now)
        .await
        .expect("application");
    let token = parley_engine::auth::generate_api_token();
    app.store
        .add_api_token(
            &other,
            &parley_engine::auth::hash_api_token(&token),
            "other",
            now,
        )
        .await
        .expect("token");
    token
}

/// `POST /api/v1/platforms/whatsapp/signup` as the application holding `token`.
async fn signup_as(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let resp = app
        .http
        .post(format!("{}/api/v1/platforms/whatsapp/signup", app.url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("signup");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The customer walks Embedded Signup again choosing the WABA and number that exist already
/// (as a second application's admin could, with access to the same business portfolio).
async fn signup_existing(app: &TestApp, first: &Value) -> Value {
    app.sandbox_post(
        "/sandbox/signup",
        &json!({
            "business": {"id": first["business_id"]},
            "waba": {"id": first["waba_id"]},
            "phone_number": {"id": first["phone_number_id"]},
        }),
    )
    .await
}

/// A sign-up that shares the WABA only (no number chosen, so none is registered: the
/// number has the two-step PIN of the first registration); Parley reads the WABA's numbers.
fn finish_only_waba(signup: &Value) -> Value {
    json!({
        "code": signup["code"], "waba_id": signup["waba_id"],
        "business_id": signup["business_id"], "event": "FINISH_ONLY_WABA",
    })
}

fn finish(signup: &Value) -> Value {
    json!({
        "code": signup["code"], "waba_id": signup["waba_id"],
        "phone_number_id": signup["phone_number_id"], "business_id": signup["business_id"],
        "event": "FINISH",
    })
}

#[tokio::test]
async fn a_waba_or_number_another_application_holds_cannot_be_taken_until_it_is_disconnected() {
    let app = spawn_app().await;
    let other = second_application(&app).await;
    let (first, platform) = connected(&app, "Held Tight GmbH").await;
    let platform_id = platform["id"].as_str().expect("id").to_owned();
    let phone = first["phone_number_id"].as_str().expect("phone").to_owned();

    // The other application signs up for the same WABA and number: refused before anything
    // is exchanged or registered, with what to do.
    let again = signup_existing(&app, &first).await;
    let (status, body) = signup_as(&app, &other, &finish(&again)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "waba_taken", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Disconnect it there first"), "{message}");

    // Without ids in the request, the WABA `debug_token` names is refused the same way, and
    // no platform of the other application is left behind.
    let again = signup_existing(&app, &first).await;
    let (status, body) = signup_as(&app, &other, &json!({"code": again["code"]})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "waba_taken", "{body}");
    assert!(body["platform"].is_null(), "{body}");

    // Its own WABA, naming the first application's number: the number is refused.
    let own = app.sandbox_signup("Other Company").await;
    let mut request = finish(&own);
    request["phone_number_id"] = json!(phone);
    let (status, body) = signup_as(&app, &other, &request).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "number_taken", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&phone) && m.contains("Disconnect")),
        "{body}"
    );

    // Nothing moved: the number still sends for the first application only.
    let list = |token: String| {
        let app = &app;
        async move {
            let resp = app
                .http
                .get(format!("{}/api/v1/phone-numbers", app.url))
                .bearer_auth(token)
                .send()
                .await
                .expect("numbers");
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.expect("json").to_string()
        }
    };
    assert!(list(app.token.clone()).await.contains(&phone));
    assert!(!list(other.clone()).await.contains(&phone));

    // The application that holds it may connect it again.
    let again = signup_existing(&app, &first).await;
    let (status, body) = signup_as(&app, &app.token, &finish_only_waba(&again)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], platform_id.as_str(), "the same platform");

    // Disconnected, it is free: the other application takes it, and now holds it.
    let (status, body) = app
        .api_call(
            reqwest::Method::DELETE,
            &format!("/api/v1/platforms/{platform_id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let again = signup_existing(&app, &first).await;
    let (status, body) = signup_as(&app, &other, &finish_only_waba(&again)).await;
    assert_eq!(status, 201, "{body}");
    assert!(list(other.clone()).await.contains(&phone));
    assert!(!list(app.token.clone()).await.contains(&phone));
    let again = signup_existing(&app, &first).await;
    let (status, body) = signup_as(&app, &app.token, &finish_only_waba(&again)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "waba_taken", "{body}");
}

/// Parley reads the WABA's time zone at signup from Meta's `timezone_id` (the sandbox serves
/// the one chosen in the dialog): one Parley knows becomes its IANA zone; one it does not (a
/// zone Meta added after Parley's table) is counted in UTC, and the platform says so. The
/// statistics' spend names the zone its tiers count in, and says when WABAs differ.
#[tokio::test]
async fn the_wabas_time_zone_is_read_at_signup_and_an_unknown_one_falls_back_to_utc_visibly() {
    let app = spawn_app().await;
    for (zone, name, known) in [("47", "Europe/Berlin", true), ("4999", "UTC", false)] {
        let signup = app
            .sandbox_post(
                "/sandbox/signup",
                &json!({
                    "business": {"name": format!("Zone {zone}"), "website": "https://example.com", "country": "DE"},
                    "waba": {"name": format!("Zone {zone} WhatsApp"), "timezone_id": zone},
                    "profile": {"display_name": format!("Zone {zone}"), "vertical": "RETAIL"},
                    "phone_number": {}
                }),
            )
            .await;
        let (status, platform) = app.platform_signup(&signup).await;
        assert_eq!(status, 201, "{platform}");
        assert_eq!(platform["details"]["timezone_id"], zone, "{platform}");
        let tz = &platform["time_zone"];
        assert_eq!(tz["timezone_id"], zone, "{platform}");
        assert_eq!(tz["name"], name, "{platform}");
        assert_eq!(tz["known"], known, "{platform}");
        if known {
            assert!(tz.get("note").is_none(), "{platform}");
        } else {
            let note = tz["note"].as_str().expect("a note says why UTC");
            assert!(note.contains("4999") && note.contains("UTC"), "{note}");
        }
    }
    // The demo WABA (Los Angeles) was connected first: months count there, and the spend
    // says the application's WABAs are in different zones.
    let (status, stats) = app.api_call(Method::GET, "/api/v1/stats", None).await;
    assert_eq!(status, 200, "{stats}");
    let tz = &stats["cost"]["time_zone"];
    assert_eq!(tz["name"], "America/Los_Angeles", "{stats}");
    assert!(
        tz["note"]
            .as_str()
            .is_some_and(|n| n.contains("different time zones")),
        "{stats}"
    );
}
