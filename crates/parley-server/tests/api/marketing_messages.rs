//! The Marketing Messages API end to end through the sandbox (#14 part 5; META_2026 §7): the
//! platform setting (refused unless Meta says the WABA is `ONBOARDED`), the campaign's
//! time-to-live, the routing of marketing templates to `/marketing_messages` while utility
//! templates keep `/messages`, a send Meta falls back to the Cloud API recorded on the
//! message, and the fallback Meta refuses (131063: marketing off on the Cloud API, terms
//! unsigned) pausing the campaign without Parley resending it to `/messages`.

use std::time::Duration;

use parley_sandbox::demo_ids;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Cohort, TestApp, cohort_campaign, spawn_app, welcome_template};

/// `n` contacts tagged `cohort` and `first_name = ana<i>`, numbers `+49153<start+i>`; their
/// phones.
async fn seed(app: &TestApp, cohort: &str, start: u64, n: u64) -> Vec<String> {
    Cohort::numbered(cohort, "+49153", start, n)
        .first_names()
        .seed(app)
        .await
}

async fn api(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> Value {
    let (status, v) = app.api_call(method.clone(), path, body).await;
    assert!(status < 300, "{method} {path}: {status} {v}");
    v
}

async fn platform_id(app: &TestApp) -> String {
    let v = api(app, Method::GET, "/api/v1/platforms", None).await;
    v["data"][0]["id"].as_str().expect("platform id").to_owned()
}

/// Sets the WABA's Marketing Messages API state at Meta (the sandbox).
async fn meta_marketing(app: &TestApp, flags: Value) {
    app.sandbox_post(
        &format!("/sandbox/wabas/{}/marketing", demo_ids::WABA_ID),
        &flags,
    )
    .await;
}

/// Onboards the WABA at Meta and turns the platform's setting on.
async fn enable_marketing_messages(app: &TestApp) -> String {
    meta_marketing(
        app,
        json!({"marketing_messages_onboarding_status": "ONBOARDED"}),
    )
    .await;
    let id = platform_id(app).await;
    let v = api(
        app,
        Method::PATCH,
        &format!("/api/v1/platforms/{id}"),
        Some(&json!({"marketing_messages": true})),
    )
    .await;
    assert_eq!(v["marketing_messages"], true, "{v}");
    id
}

/// A started campaign of `template` to `cohort` (extra fields merged in).
async fn campaign(
    app: &TestApp,
    cohort: &str,
    template: Value,
    kind: &str,
    extra: Value,
) -> String {
    app.start_campaign(&cohort_campaign(cohort, cohort, template, kind, extra))
        .await
}

fn order_update() -> Value {
    json!({"name": "order_update", "language": "en",
           "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}", "order_id": "A-1"}})
}

/// The application's messages to `phone`, polled until `check` holds for all of them.
async fn wait_messages(
    app: &TestApp,
    phones: &[String],
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..400 {
        let v = api(app, Method::GET, "/api/v1/messages?limit=200", None).await;
        last = v["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| phones.iter().any(|p| m["to"] == p.as_str()))
            .collect();
        if last.len() == phones.len() && last.iter().all(&check) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("messages never reached {what}: {last:?}");
}

fn digits(phone: &str) -> String {
    phone.trim_start_matches('+').to_owned()
}

/// The sends Meta received for these recipients.
async fn sends_to(app: &TestApp, phones: &[String]) -> Vec<Value> {
    app.sandbox_sends()
        .await
        .into_iter()
        .filter(|r| {
            phones
                .iter()
                .any(|p| r["to"].as_str().is_some_and(|t| digits(t) == digits(p)))
        })
        .collect()
}

#[tokio::test]
async fn marketing_templates_go_through_marketing_messages_with_the_campaign_ttl_and_utility_through_messages()
 {
    let app = spawn_app().await;
    let marketing = seed(&app, "mm", 10_000_000, 3).await;
    let utility = seed(&app, "mmu", 11_000_000, 2).await;
    enable_marketing_messages(&app).await;

    let m = campaign(
        &app,
        "mm",
        welcome_template(),
        "marketing",
        json!({"marketing_ttl_seconds": 86_400}),
    )
    .await;
    let u = campaign(&app, "mmu", order_update(), "transactional", json!({})).await;
    app.wait_stats(&m, "completed", |s| {
        s["state"] == "completed" && s["sent"] == 3
    })
    .await;
    app.wait_stats(&u, "completed", |s| {
        s["state"] == "completed" && s["sent"] == 2
    })
    .await;

    let sends = sends_to(&app, &marketing).await;
    assert_eq!(sends.len(), 3, "{sends:?}");
    for r in &sends {
        assert!(
            r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/marketing_messages")),
            "{r}"
        );
        assert_eq!(r["message_send_ttl_seconds"], 86_400, "{r}");
        assert_eq!(r["product_policy"], "CLOUD_API_FALLBACK", "{r}");
        assert_eq!(r["outcome"], "accepted", "{r}");
    }
    let sends = sends_to(&app, &utility).await;
    assert_eq!(sends.len(), 2, "{sends:?}");
    for r in &sends {
        assert!(
            r["path"].as_str().is_some_and(|p| p.ends_with("/messages")),
            "{r}"
        );
        assert!(r.get("message_send_ttl_seconds").is_none(), "{r}");
        assert!(r.get("product_policy").is_none(), "{r}");
    }

    // Meta priced them `marketing_lite`: sent through the API, no fallback.
    let msgs = wait_messages(&app, &marketing, "priced marketing_lite", |m| {
        m["pricing"]["category"] == "marketing_lite"
    })
    .await;
    for msg in &msgs {
        assert_eq!(msg["sent_via"], "marketing_messages", "{msg}");
        assert_eq!(msg["fell_back_to_cloud_api"], false, "{msg}");
    }
    let msgs = wait_messages(&app, &utility, "priced utility", |m| {
        m["pricing"]["category"] == "utility"
    })
    .await;
    for msg in &msgs {
        assert_eq!(msg["sent_via"], Value::Null, "{msg}");
    }
    let c = api(&app, Method::GET, &format!("/api/v1/campaigns/{m}"), None).await;
    assert_eq!(c["marketing_ttl_seconds"], 86_400, "{c}");
    assert_eq!(c["marketing_messages"]["via_marketing_messages"], 3, "{c}");
    assert_eq!(c["marketing_messages"]["fell_back_to_cloud_api"], 0, "{c}");
    app.assert_no_rate_refusals().await;
}

#[tokio::test]
async fn the_setting_needs_a_waba_meta_says_is_onboarded_and_the_ttl_meta_range() {
    let app = spawn_app().await;
    let id = platform_id(&app).await;
    // Meta says ELIGIBLE (terms not signed): refused with a stable code.
    let (status, v) = app
        .api_call(
            Method::PATCH,
            &format!("/api/v1/platforms/{id}"),
            Some(&json!({"marketing_messages": true})),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(
        v["error"]["code"], "marketing_messages_not_onboarded",
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ELIGIBLE")),
        "names Meta's status: {v}"
    );
    let p = api(&app, Method::GET, &format!("/api/v1/platforms/{id}"), None).await;
    assert_eq!(p["marketing_messages"], false, "{p}");
    // The answer came from Meta: the WABA was asked.
    let asked = app.sandbox_requests("limit=20").await["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .any(|r| r["method"] == "GET" && r["path"] == demo_ids::WABA_ID);
    assert!(asked, "Parley asked Meta for the WABA's onboarding status");

    // Unknown fields and wrong types are refused, not ignored.
    let (status, v) = app
        .api_call(
            Method::PATCH,
            &format!("/api/v1/platforms/{id}"),
            Some(&json!({"marketing_messages": "yes"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");

    // Onboarded: on; off again needs no word from Meta.
    enable_marketing_messages(&app).await;
    let v = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/platforms/{id}"),
        Some(&json!({"marketing_messages": false})),
    )
    .await;
    assert_eq!(v["marketing_messages"], false, "{v}");

    // Time-to-live: Meta's 12 h to 30 days, in seconds.
    for bad in [0, 3_600, 43_199, 2_592_001] {
        let (status, v) = app
            .api_call(
                Method::POST,
                "/api/v1/campaigns",
                Some(&json!({"name": "ttl", "template": welcome_template(),
                    "audience": {"filter": "all"}, "type": "marketing",
                    "marketing_ttl_seconds": bad})),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "marketing_ttl_invalid", "{v}");
        assert_eq!(v["error"]["field"], "marketing_ttl_seconds", "{v}");
    }
    for good in [43_200, 2_592_000] {
        let v = api(
            &app,
            Method::POST,
            "/api/v1/campaigns",
            Some(&json!({"name": "ttl", "template": welcome_template(),
                "audience": {"filter": "all"}, "type": "marketing",
                "marketing_ttl_seconds": good})),
        )
        .await;
        let c = api(
            &app,
            Method::GET,
            &format!("/api/v1/campaigns/{}", v["id"].as_str().unwrap_or_default()),
            None,
        )
        .await;
        assert_eq!(c["marketing_ttl_seconds"], good, "{c}");
    }
}

#[tokio::test]
async fn a_send_meta_falls_back_to_the_cloud_api_is_recorded_on_the_message() {
    let app = spawn_app().await;
    let phones = seed(&app, "fb", 12_000_000, 2).await;
    enable_marketing_messages(&app).await;
    // Onboarding no longer complete at Meta: `CLOUD_API_FALLBACK` sends through the Cloud API.
    meta_marketing(
        &app,
        json!({"marketing_messages_onboarding_status": "ELIGIBLE"}),
    )
    .await;
    let id = campaign(&app, "fb", welcome_template(), "marketing", json!({})).await;
    app.wait_stats(&id, "completed", |s| {
        s["state"] == "completed" && s["sent"] == 2
    })
    .await;
    for r in sends_to(&app, &phones).await {
        assert!(
            r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/marketing_messages")),
            "{r}"
        );
    }
    let msgs = wait_messages(&app, &phones, "priced marketing", |m| {
        m["pricing"]["category"] == "marketing"
    })
    .await;
    for msg in &msgs {
        assert_eq!(msg["sent_via"], "marketing_messages", "{msg}");
        assert_eq!(msg["fell_back_to_cloud_api"], true, "{msg}");
    }
    let c = api(&app, Method::GET, &format!("/api/v1/campaigns/{id}"), None).await;
    assert_eq!(c["marketing_messages"]["via_marketing_messages"], 2, "{c}");
    assert_eq!(c["marketing_messages"]["fell_back_to_cloud_api"], 2, "{c}");
}

#[tokio::test]
async fn a_fallback_meta_refuses_pauses_the_campaign_and_nothing_goes_to_messages() {
    let app = spawn_app().await;
    let phones = seed(&app, "nofb", 13_000_000, 3).await;
    enable_marketing_messages(&app).await;
    // Terms no longer signed and marketing off on the Cloud API: no fallback (131063).
    meta_marketing(
        &app,
        json!({"marketing_messages_onboarding_status": "ELIGIBLE",
               "disable_marketing_messages_on_cloud_api": true}),
    )
    .await;
    let id = campaign(&app, "nofb", welcome_template(), "marketing", json!({})).await;
    let s = app
        .wait_stats(&id, "paused by 131063", |s| {
            s["state"] == "paused" && s["sending"] == 0
        })
        .await;
    let reason = s["state_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("131063"), "{s}");
    assert!(reason.contains("Marketing Messages API"), "{s}");
    assert_eq!(s["failed"], 0, "nobody's message burnt: {s}");
    let sends = sends_to(&app, &phones).await;
    assert!(!sends.is_empty(), "the campaign tried");
    for r in &sends {
        assert!(
            r["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/marketing_messages")),
            "never resent to /messages: {r}"
        );
        assert_eq!(r["code"], 131063, "{r}");
    }
    // Onboarded again: resumed, each gets one message through the API.
    meta_marketing(
        &app,
        json!({"marketing_messages_onboarding_status": "ONBOARDED"}),
    )
    .await;
    api(
        &app,
        Method::POST,
        &format!("/api/v1/campaigns/{id}/resume"),
        None,
    )
    .await;
    app.wait_stats(&id, "completed", |s| {
        s["state"] == "completed" && s["sent"] == 3
    })
    .await;
    let accepted: Vec<Value> = sends_to(&app, &phones)
        .await
        .into_iter()
        .filter(|r| r["outcome"] == "accepted")
        .collect();
    assert_eq!(accepted.len(), 3, "{accepted:?}");
}

/// The console: the platform's card turns the setting on (refused with Meta's status until the
/// WABA is onboarded) and off; the New campaign form takes the time-to-live in hours.
#[tokio::test]
async fn the_console_sets_the_platform_and_the_campaign_ttl() {
    let app = spawn_app().await;
    let cookie = app.console_cookie().await;
    let id = platform_id(&app).await;
    let on = format!("/settings/platforms/{id}/marketing_messages_on");
    let (status, v) = app.console_post(&cookie, &on, &json!({})).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(
        v["error"]["code"], "marketing_messages_not_onboarded",
        "{v}"
    );
    let (_, html) = app.console_get(&cookie, "/settings/platforms/list").await;
    assert!(html.contains("Use the Marketing Messages API"), "{html}");

    meta_marketing(
        &app,
        json!({"marketing_messages_onboarding_status": "ONBOARDED"}),
    )
    .await;
    let (status, v) = app.console_post(&cookie, &on, &json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["marketing_messages"], true, "{v}");
    let (_, html) = app.console_get(&cookie, "/settings/platforms/list").await;
    assert!(
        html.contains("Send marketing through the Cloud API"),
        "{html}"
    );
    let (status, v) = app
        .console_post(
            &cookie,
            &format!("/settings/platforms/{id}/marketing_messages_off"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["marketing_messages"], false, "{v}");

    let form = |hours: &str| {
        json!({
            "name": "TTL", "phone_number_id": "", "type": "marketing",
            "template_name": "welcome", "template_language": "en",
            "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"},
            "segment_id": "", "filter": "all", "scheduled_at": null,
            "marketing_ttl_hours": hours,
        })
    };
    for bad in ["2", "721", "a day"] {
        let (status, v) = app
            .console_post(&cookie, "/campaigns/whatsapp/new", &form(bad))
            .await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["field"], "marketing_ttl_seconds", "{v}");
    }
    let (status, v) = app
        .console_post(&cookie, "/campaigns/whatsapp/new", &form("48"))
        .await;
    assert_eq!(status, 201, "{v}");
    let c = api(
        &app,
        Method::GET,
        &format!("/api/v1/campaigns/{}", v["id"].as_str().unwrap_or_default()),
        None,
    )
    .await;
    assert_eq!(c["marketing_ttl_seconds"], 48 * 3600, "{c}");
    let (status, v) = app
        .console_post(&cookie, "/campaigns/whatsapp/new", &form(""))
        .await;
    assert_eq!(status, 201, "{v}");
}
