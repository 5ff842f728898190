//! Campaigns › WhatsApp messages in a real browser: the New campaign form with its live
//! preview and audience count, field errors from the engine, the plan, Start, and live
//! progress to 100 % without a reload.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::browser::Browser;
use crate::helpers::{CONTACTS, TestApp, api_node, spawn_app};

async fn set(browser: &Browser, css: &str, text: &str) {
    let el = browser.wait_css(css).await;
    el.clear().await.expect("clear");
    el.send_keys(text).await.expect("type");
}

#[tokio::test]
async fn a_campaign_is_created_planned_started_and_followed_to_100_percent_in_the_console() {
    let app = spawn_app().await;
    let (status, seg) = app
        .api_call(
            Method::POST,
            "/api/v1/segments",
            Some(&json!({"name": "Named contacts", "filter": "exists(first_name)"})),
        )
        .await;
    assert_eq!(status, 201, "{seg}");
    assert_eq!(seg["count"], CONTACTS as u64);
    let segment_id = seg["id"].as_str().expect("id").to_owned();

    let browser = Browser::start().await;
    let c = &browser.client;
    browser.sign_in(&app).await;

    // The WhatsApp messages page lists campaigns (none yet) and offers New campaign.
    c.goto(&format!("{}/campaigns/whatsapp", app.url))
        .await
        .expect("goto");
    browser.wait_text("No campaigns yet").await;
    browser
        .wait_css("#new-campaign")
        .await
        .click()
        .await
        .expect("new");
    browser.wait_css("#campaign-form").await;

    // The template's variables get one expression input each, previewed live for a contact
    // of the audience; the audience shows its live count.
    set(&browser, "input[name=name]", "Spring hello").await;
    browser
        .wait_css("select[name=template]")
        .await
        .select_by_label("welcome (en, MARKETING)")
        .await
        .expect("template");
    browser
        .wait_css("select[name=segment_id]")
        .await
        .select_by_value(&segment_id)
        .await
        .expect("segment");
    browser
        .wait_text(&format!("{CONTACTS} contacts match"))
        .await;
    set(
        &browser,
        "input[data-key=first_name]",
        "{{first_name|CapitalizeFirst",
    )
    .await;
    browser.wait_text("⚠").await;
    set(
        &browser,
        "input[data-key=first_name]",
        "{{first_name|CapitalizeFirst|there}}",
    )
    .await;
    let preview = browser.wait_css("[data-preview-for=first_name]").await;
    let mut shown = String::new();
    for _ in 0..100 {
        shown = preview.text().await.unwrap_or_default();
        if shown.starts_with("→ ") && shown.chars().nth(2).is_some_and(char::is_uppercase) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        shown.starts_with("→ ") && shown.chars().nth(2).is_some_and(char::is_uppercase),
        "preview: {shown:?}"
    );

    // An error from the engine lands next to its field: a bad filter without a segment.
    browser
        .wait_css("select[name=segment_id]")
        .await
        .select_by_value("")
        .await
        .expect("no segment");
    set(&browser, "input[name=filter]", "city = ").await;
    browser
        .wait_css("#create-campaign")
        .await
        .click()
        .await
        .expect("create");
    let err = browser
        .wait_css("[data-error-for='audience.filter']:not(:empty)")
        .await;
    assert!(!err.text().await.expect("text").is_empty());

    // With the segment: the draft is created and its plan shown.
    set(&browser, "input[name=filter]", "").await;
    browser
        .wait_css("select[name=segment_id]")
        .await
        .select_by_value(&segment_id)
        .await
        .expect("segment");
    browser
        .wait_css("#create-campaign")
        .await
        .click()
        .await
        .expect("create");
    browser.wait_css("#plan").await;
    browser.wait_text("business-initiated contacts used").await;
    let recipients = browser.wait_css("#plan-recipients").await;
    let text = recipients.text().await.expect("text");
    assert!(
        text.ends_with(&format!("of {CONTACTS} contacts in the audience")),
        "{text}"
    );
    let planned: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("recipients");
    assert!(planned > 0, "{text}");
    browser.wait_text("at the number's 80 messages/s").await;

    // Start; progress climbs to 100 % on the page without a reload.
    browser
        .wait_css("button[data-action=start]")
        .await
        .click()
        .await
        .expect("start");
    let mut last = String::new();
    for _ in 0..300 {
        last = browser
            .wait_css("#progress-percent")
            .await
            .text()
            .await
            .unwrap_or_default();
        if last == "100 %" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, "100 %", "progress never reached 100 %");
    browser.wait_text("Completed").await;
    let sent = browser
        .wait_css("[data-count=sent]")
        .await
        .text()
        .await
        .expect("sent");
    assert_eq!(sent, planned.to_string());

    // The list shows it, completed.
    c.goto(&format!("{}/campaigns/whatsapp", app.url))
        .await
        .expect("goto");
    browser.wait_text("Spring hello").await;
    browser.wait_text("100 %").await;
}

async fn scheduled_campaign(app: &TestApp, name: &str) -> String {
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/campaigns",
            Some(&json!({
                "name": name, "type": "marketing",
                "template": {"name": "welcome", "language": "en",
                    "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}},
                "audience": {"filter": "all"},
                "scheduled_at": "2099-01-01T09:00:00Z",
            })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().expect("id").to_owned()
}

async fn api_state(app: &TestApp, id: &str) -> String {
    let (_, v) = app
        .api_call(Method::GET, &format!("/api/v1/campaigns/{id}"), None)
        .await;
    v["state"].as_str().unwrap_or_default().to_owned()
}

async fn click(browser: &Browser, css: &str) {
    browser
        .wait_css(css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// Start (scheduled for later, so nothing is sent yet), pause, cancel; and resume.
#[tokio::test]
async fn pause_resume_and_cancel_from_the_campaign_page() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    browser.sign_in(&app).await;

    let id = scheduled_campaign(&app, "To cancel").await;
    browser
        .client
        .goto(&format!("{}/campaigns/whatsapp/{id}", app.url))
        .await
        .expect("goto");
    browser.wait_css("#plan").await;
    click(&browser, "button[data-action=start]").await;
    browser.wait_text("Scheduled").await;
    click(&browser, "button[data-action=pause]:not([hidden])").await;
    browser
        .wait_css("button[data-action=resume]:not([hidden])")
        .await;
    assert_eq!(api_state(&app, &id).await, "paused");
    browser
        .client
        .execute("window.confirm = function () { return true; };", vec![])
        .await
        .expect("confirm");
    click(&browser, "button[data-action=cancel]:not([hidden])").await;
    browser.wait_text("Cancelled").await;
    assert_eq!(api_state(&app, &id).await, "cancelled");
    app.workers_looked().await;
    app.assert_nothing_reached_meta("cancelled before its time")
        .await;

    let id = scheduled_campaign(&app, "To resume").await;
    browser
        .client
        .goto(&format!("{}/campaigns/whatsapp/{id}", app.url))
        .await
        .expect("goto");
    click(&browser, "button[data-action=start]").await;
    click(&browser, "button[data-action=pause]:not([hidden])").await;
    click(&browser, "button[data-action=resume]:not([hidden])").await;
    // Resumed before its time (2099), a scheduled campaign is scheduled again: not running,
    // not any state other than the one resume promises.
    let mut state = String::new();
    for _ in 0..100 {
        state = api_state(&app, &id).await;
        if state != "paused" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "scheduled");
    browser.wait_css("button[data-action=resume][hidden]").await;
    browser.wait_text("Scheduled").await;
    app.workers_looked().await;
    assert_eq!(api_state(&app, &id).await, "scheduled");
    app.assert_nothing_reached_meta("resumed before its time")
        .await;
}

/// The New campaign form also takes an uploaded list and a send window; a half-given window
/// is refused with the field at fault.
#[tokio::test]
async fn the_console_form_takes_a_list_and_a_send_window() {
    let app = spawn_app().await;
    let cookie = app.console_cookie().await;
    let (phone, _) = app.contact(0).await;
    let form = |extra: serde_json::Value| {
        let mut body = json!({
            "name": "List with window", "phone_number_id": "", "type": "marketing",
            "template_name": "welcome", "template_language": "en",
            "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"},
            "segment_id": "", "filter": "all", "scheduled_at": null,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    let (status, v) = app
        .console_post(
            &cookie,
            "/campaigns/whatsapp/new",
            &form(json!({"window_start": "09:00", "window_end": ""})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["field"], "send_window.end", "{v}");
    let (status, v) = app
        .console_post(
            &cookie,
            "/campaigns/whatsapp/new",
            &form(json!({"phones": format!("{phone}\n+4915112345678; not a number"),
                "window_start": "09:00", "window_end": "20:00", "window_timezone": "Europe/Berlin"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();
    let (_, c) = app
        .api_call(Method::GET, &format!("/api/v1/campaigns/{id}"), None)
        .await;
    assert_eq!(c["send_window"]["timezone"], "Europe/Berlin", "{c}");
    assert_eq!(c["audience"]["list"]["numbers"], 3, "{c}");
    assert_eq!(c["audience"]["list"]["invalid_number"], 1, "{c}");
}

/// Live progress: the campaign page opens a server-sent event stream and its progress moves
/// from 0 % to 100 % as the campaign sends, with no reload and no polling (`data-live` says
/// the stream is what the page listens to). On PostgreSQL the page is served by a second
/// node with no workers (its own engine, store and bus): every change it shows was made by
/// the app's node and reached it through `NOTIFY parley_live`.
#[tokio::test]
async fn campaign_progress_is_pushed_to_the_page_from_any_node_without_a_reload() {
    let app = spawn_app().await;
    let (page_url, _node) = match &app.pg {
        Some(pg) => {
            let (url, node) = api_node(&app, &pg.url).await;
            (url, Some(node))
        }
        None => (app.url.clone(), None),
    };
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/campaigns",
            Some(&json!({
                "name": "Live", "type": "marketing",
                "template": {"name": "welcome", "language": "en",
                    "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}},
                "audience": {"filter": "all"},
            })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_owned();

    let browser = Browser::start().await;
    browser
        .sign_in_at(&page_url, &app.console_email, &app.console_password)
        .await;
    browser
        .client
        .goto(&format!("{page_url}/campaigns/whatsapp/{id}"))
        .await
        .expect("goto");
    browser.wait_css("#campaign[data-live=stream]").await;
    let percent = || async {
        browser
            .wait_css("#progress-percent")
            .await
            .text()
            .await
            .unwrap_or_default()
    };
    let mut before = percent().await;
    for _ in 0..100 {
        if before != "—" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        before = percent().await;
    }
    assert_eq!(
        before, "0 %",
        "a draft shows 0 % from the stream's first event"
    );
    browser
        .client
        .execute("window.notReloaded = true;", vec![])
        .await
        .expect("mark");

    // Started on the app's node; the page's node runs no worker.
    let (status, v) = app
        .api_call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    let mut last = String::new();
    for _ in 0..300 {
        last = percent().await;
        if last == "100 %" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, "100 %", "progress never reached 100 % on the page");
    browser.wait_text("Completed").await;
    let page = browser
        .client
        .execute(
            "return [window.notReloaded === true, document.getElementById('campaign').dataset.live];",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(
        page,
        json!([true, "stream"]),
        "reloaded, or fell back to polling"
    );
    assert!(browser.csp_violations().await.is_empty());
}

/// The new-campaign form's live preview renders each variable for the audience's sample
/// contact; a body with more variables than any template has (over 100) is 422
/// `too_many_variables` instead of one render (and a contact read) per key.
#[tokio::test]
async fn the_campaign_preview_renders_for_the_sample_and_refuses_a_flood_of_variables() {
    let app = spawn_app().await;
    let cookie = app.console_cookie().await;
    let preview = |body: serde_json::Value| {
        let (http, cookie, url) = (app.http.clone(), cookie.clone(), app.url.clone());
        async move {
            let r = http
                .post(format!("{url}/campaigns/whatsapp/preview"))
                .header("cookie", cookie)
                .header("origin", url.as_str())
                .json(&body)
                .send()
                .await
                .expect("preview");
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.expect("json"))
        }
    };
    let (status, v) = preview(serde_json::json!({
        "filter": "all",
        "variables": {"first_name": "{{first_name|CapitalizeFirst|friend}}", "plain": "Hello"}
    }))
    .await;
    assert_eq!(status, 200, "{v}");
    let sample = v["audience"]["sample"]["phone"].as_str().expect("a sample");
    let first = app
        .store
        .audience_contact(&app.store.applications().await.expect("apps")[0].id, sample)
        .await
        .expect("read")
        .expect("the sample is a contact");
    let Some(parley_domain::TagValue::String(name)) = first.contact.tags.get("first_name") else {
        panic!("the sample has a first name: {first:?}");
    };
    let mut expected = name.clone();
    if let Some(c) = expected.get_mut(0..1) {
        c.make_ascii_uppercase();
    }
    assert_eq!(v["values"]["first_name"]["text"], expected.as_str(), "{v}");
    assert_eq!(v["values"]["plain"]["text"], "Hello", "{v}");

    let many: serde_json::Map<String, serde_json::Value> = (0..101)
        .map(|i| (format!("v{i}"), serde_json::json!("{{first_name}}")))
        .collect();
    let (status, v) = preview(serde_json::json!({"filter": "all", "variables": many})).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "too_many_variables", "{v}");
}
