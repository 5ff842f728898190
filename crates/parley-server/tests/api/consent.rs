//! Marketing consent, Meta's pacing and pricing, end to end through the sandbox (#14 parts
//! 2-4): `user_preferences` stop/resume, opt-out keywords in any language, 131049 reschedules
//! ("capped by Meta"), 131063 and pacing (held, released or dropped with 132015/135000), the
//! `pricing` object on messages, and every webhook example of META_2026.md §5-§7.

use std::time::Duration;

use parley_sandbox::demo_ids;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Cohort, TestApp, cohort_campaign, spawn_app, welcome_template};

/// `n` contacts tagged `cohort` and `first_name = ana<i>`, numbers `+49152<start+i>`; their
/// phones.
async fn seed(app: &TestApp, cohort: &str, start: u64, n: u64) -> Vec<String> {
    Cohort::numbered(cohort, "+49152", start, n)
        .first_names()
        .seed(app)
        .await
}

const HOUR: i64 = 60 * 60 * 1000;

fn digits(phone: &str) -> String {
    phone.trim_start_matches('+').to_owned()
}

async fn api(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> Value {
    let (status, v) = app.api_call(method.clone(), path, body).await;
    assert!(status < 300, "{method} {path}: {status} {v}");
    v
}

/// A started marketing `welcome` campaign to `cohort` (extra fields merged in).
async fn marketing_campaign(app: &TestApp, cohort: &str, extra: Value) -> String {
    let body = cohort_campaign(cohort, cohort, welcome_template(), "marketing", extra);
    app.start_campaign(&body).await
}

async fn contact(app: &TestApp, phone: &str) -> Value {
    api(
        app,
        Method::GET,
        &format!("/api/v1/contacts/{}", phone.replace('+', "%2B")),
        None,
    )
    .await
}

async fn wait_contact(
    app: &TestApp,
    phone: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        let (status, v) = app
            .api_call(
                Method::GET,
                &format!("/api/v1/contacts/{}", phone.replace('+', "%2B")),
                None,
            )
            .await;
        if status == 200 && check(&v) {
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("contact {phone} never reached {what}: {last}");
}

/// Template sends the sandbox received for `phone` (accepted or refused).
async fn sends_to(app: &TestApp, phone: &str) -> usize {
    let d = digits(phone);
    app.sandbox_sends()
        .await
        .iter()
        .filter(|s| s["to"].as_str().map(|t| t.trim_start_matches('+')) == Some(d.as_str()))
        .count()
}

/// Moves both clocks to the next 22:00 UTC.
async fn to_night(app: &TestApp) {
    let n = app.now_ms();
    let mut at = n - n.rem_euclid(24 * HOUR) + 22 * HOUR;
    if at <= n {
        at += 24 * HOUR;
    }
    app.advance(Duration::from_millis(u64::try_from(at - n).expect("ahead")))
        .await;
}

#[tokio::test]
async fn a_running_marketing_campaign_skips_a_contact_from_the_moment_meta_says_stop() {
    let app = spawn_app().await;
    to_night(&app).await;
    let phones = seed(&app, "stoppers", 10_000_000, 3).await;
    // Planned while everyone is subscribed; all wait for the window to open at 09:00.
    let id = marketing_campaign(
        &app,
        "stoppers",
        json!({"send_window": {"start": "09:00", "end": "20:00"}}),
    )
    .await;
    app.wait_stats(&id, "3 waiting for the window", |s| {
        s["waiting_for_window"] == 3 && s["planned"] == true
    })
    .await;
    // The customer taps "Stop promotions" in WhatsApp: Meta tells the business.
    app.sandbox_post(
        "/sandbox/user_preferences",
        &json!({"from": phones[1], "value": "stop"}),
    )
    .await;
    let c = wait_contact(&app, &phones[1], "opted out by Meta", |c| {
        c["subscription"] == "opted_out"
    })
    .await;
    assert_eq!(c["subscription_source"], "meta", "{c}");
    let last = c["subscription_history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["source"], "meta", "{c}");
    assert_eq!(last["state"], "opted_out", "{c}");

    // The window opens: the two others go, the one who stopped is skipped at send time.
    app.advance(Duration::from_secs(11 * 3600 + 15 * 60)).await;
    let s = app
        .wait_stats(&id, "completed", |s| {
            s["state"] == "completed" && s["sent"] == 2
        })
        .await;
    assert_eq!(s["skipped_by_reason"]["opted_out"], 1, "{s}");
    assert_eq!(sends_to(&app, &phones[1]).await, 0, "sent after the stop");
    assert_eq!(sends_to(&app, &phones[0]).await, 1);
    assert_eq!(sends_to(&app, &phones[2]).await, 1);

    // `resume` opts back in, again from Meta.
    app.sandbox_post(
        "/sandbox/user_preferences",
        &json!({"from": phones[1], "value": "resume"}),
    )
    .await;
    let c = wait_contact(&app, &phones[1], "opted in by Meta", |c| {
        c["subscription"] == "opted_in"
    })
    .await;
    assert_eq!(c["subscription_source"], "meta", "{c}");
}

#[tokio::test]
async fn russian_opt_out_keywords_opt_out_after_case_folding_and_custom_keywords_reply() {
    let app = spawn_app().await;
    let phones = seed(&app, "ru", 20_000_000, 4).await;
    // The defaults cover Russian: whole message, any case, trimmed.
    let v = api(&app, Method::GET, "/api/v1/settings/opt-out", None).await;
    assert_eq!(v["defaults"], true, "{v}");
    assert!(
        v["keywords"]
            .as_array()
            .expect("keywords")
            .contains(&json!("стоп")),
        "{v}"
    );
    for (phone, text) in [(&phones[0], "  СТОП! "), (&phones[1], "Отписаться")] {
        app.sandbox_post("/sandbox/inbound", &json!({"from": phone, "text": text}))
            .await;
        let c = wait_contact(&app, phone, "opted out by keyword", |c| {
            c["subscription"] == "opted_out"
        })
        .await;
        assert_eq!(c["subscription_source"], "keyword", "{c}");
    }
    // A keyword inside a sentence is not an opt-out.
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": phones[2], "text": "не надо стоп"}),
    )
    .await;
    app.webhooks_processed().await;
    assert_ne!(contact(&app, &phones[2]).await["subscription"], "opted_out");

    // The application's own keywords, and a confirmation reply inside the window.
    let bad = app
        .api_call(
            Method::PUT,
            "/api/v1/settings/opt-out",
            Some(&json!({"keywords": ["  "]})),
        )
        .await;
    assert_eq!(bad.0, 400, "{:?}", bad.1);
    assert_eq!(bad.1["error"]["code"], "invalid_keywords", "{:?}", bad.1);
    let v = api(
        &app,
        Method::PUT,
        "/api/v1/settings/opt-out",
        Some(&json!({"keywords": ["Хватит", "STOP"], "reply": "Вы отписаны от рассылки."})),
    )
    .await;
    assert_eq!(v["keywords"], json!(["хватит", "stop"]), "{v}");
    assert_eq!(v["defaults"], false, "{v}");
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": phones[3], "text": "ХВАТИТ"}),
    )
    .await;
    wait_contact(&app, &phones[3], "opted out by a custom keyword", |c| {
        c["subscription"] == "opted_out"
    })
    .await;
    let d = digits(&phones[3]);
    let mut reply = None;
    for _ in 0..400 {
        reply = app
            .sandbox_messages()
            .await
            .into_iter()
            .find(|m| m["to"] == d.as_str() && m["type"] == "text");
        if reply.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = reply.expect("the confirmation reply reached Meta");
    assert_eq!(reply["request"]["text"]["body"], "Вы отписаны от рассылки.");
    // Back to the defaults.
    let v = api(
        &app,
        Method::PUT,
        "/api/v1/settings/opt-out",
        Some(&json!({"keywords": null})),
    )
    .await;
    assert_eq!(v["defaults"], true, "{v}");
    assert_eq!(v["reply"], Value::Null, "{v}");
}

#[tokio::test]
async fn marketing_switched_off_for_the_waba_pauses_the_campaign_with_how_to_turn_it_back_on() {
    let app = spawn_app().await;
    let phones = seed(&app, "off", 30_000_000, 3).await;
    app.sandbox_post(
        &format!("/sandbox/wabas/{}/marketing", demo_ids::WABA_ID),
        &json!({"disable_marketing_messages_on_cloud_api": true}),
    )
    .await;
    let id = marketing_campaign(&app, "off", json!({})).await;
    let s = app
        .wait_stats(&id, "paused by 131063", |s| {
            s["state"] == "paused" && s["sending"] == 0
        })
        .await;
    let reason = s["state_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("131063"), "{s}");
    assert!(
        reason.contains("disable_marketing_messages_on_cloud_api"),
        "says how to turn marketing back on: {s}"
    );
    assert_eq!(s["failed"], 0, "nobody's message burnt: {s}");
    // Turned back on at Meta; resumed: each one gets one message.
    app.sandbox_post(
        &format!("/sandbox/wabas/{}/marketing", demo_ids::WABA_ID),
        &json!({"disable_marketing_messages_on_cloud_api": false}),
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
    for p in &phones {
        let accepted = app
            .sandbox_messages()
            .await
            .iter()
            .filter(|m| m["to"] == digits(p).as_str())
            .count();
        assert_eq!(accepted, 1, "{p}");
    }
}

#[tokio::test]
async fn a_paced_send_is_held_then_released_and_sent_once_across_crash_recovery() {
    let app = spawn_app().await;
    app.sandbox_post("/sandbox/pacing", &json!({"hold": true}))
        .await;
    let (phone, _) = app.contact(0).await;
    let id = app
        .send(
            &json!({"to": phone, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "Ana"}}}),
        )
        .await;
    let m = app
        .wait_for_message(&id, "held by Meta", |m| m["held_by_meta"] == true)
        .await;
    assert_eq!(m["state"], "accepted", "{m}");
    // Hours pass with no status (Meta releases within about an hour, or not): crash-recovery
    // passes never send it again.
    app.advance(Duration::from_secs(3 * 3600)).await;
    parley_engine::sender::recover_stale_sending(&app.engine).await;
    app.advance(Duration::from_secs(3 * 3600)).await;
    parley_engine::sender::recover_stale_sending(&app.engine).await;
    app.workers_looked().await;
    let m = app.get_message(&id).await;
    assert_eq!(
        (m["state"].clone(), m["held_by_meta"].clone()),
        (json!("accepted"), json!(true)),
        "{m}"
    );
    assert_eq!(sends_to(&app, &phone).await, 1);

    let v = app
        .sandbox_post("/sandbox/pacing/release", &json!({"outcome": "release"}))
        .await;
    assert_eq!(v["released"], 1, "{v}");
    let m = app.wait_for_state(&id, "read").await;
    assert_eq!(m["held_by_meta"], false, "{m}");
    assert_eq!(m["pricing"]["category"], "marketing", "{m}");
    assert_eq!(m["pricing"]["type"], "regular", "{m}");
    assert_eq!(sends_to(&app, &phone).await, 1, "sent once");
}

#[tokio::test]
async fn held_sends_count_as_held_by_meta_and_a_template_pause_stops_the_campaign() {
    let app = spawn_app().await;
    app.sandbox_post("/sandbox/pacing", &json!({"hold": true}))
        .await;
    seed(&app, "paced", 40_000_000, 3).await;
    let id = marketing_campaign(&app, "paced", json!({})).await;
    // A held send is marked held before its acceptance is recorded: wait for both.
    let s = app
        .wait_stats(&id, "3 held by Meta and accepted", |s| {
            s["held_by_meta"] == 3 && s["accepted"] == 3
        })
        .await;
    assert_eq!(s["state"], "running", "{s}");
    // Template pacing's bad signal: the template is paused, each held send fails with 132015.
    app.sandbox_post("/sandbox/pacing/release", &json!({"outcome": "132015"}))
        .await;
    let s = app
        .wait_stats(&id, "paused by 132015", |s| {
            s["state"] == "paused" && s["failed_by_code"]["132015"] == 3
        })
        .await;
    assert_eq!(s["held_by_meta"], 0, "{s}");
    assert!(
        s["state_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("132015"),
        "{s}"
    );
}

#[tokio::test]
async fn portfolio_pacing_drops_pause_the_campaign_with_metas_reason() {
    let app = spawn_app().await;
    app.sandbox_post("/sandbox/pacing", &json!({"hold": true}))
        .await;
    seed(&app, "portfolio", 50_000_000, 2).await;
    let id = marketing_campaign(&app, "portfolio", json!({})).await;
    app.wait_stats(&id, "2 held by Meta", |s| s["held_by_meta"] == 2)
        .await;
    app.sandbox_post("/sandbox/pacing/release", &json!({"outcome": "135000"}))
        .await;
    let s = app
        .wait_stats(&id, "paused by 135000", |s| {
            s["state"] == "paused" && s["failed_by_code"]["135000"] == 2
        })
        .await;
    let reason = s["state_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("135000") && reason.contains("portfolio"),
        "{s}"
    );
}

#[tokio::test]
async fn the_per_user_marketing_cap_reschedules_a_day_later_then_gives_up_counted_as_capped_by_meta()
 {
    let app = spawn_app().await;
    let phones = seed(&app, "capped", 60_000_000, 2).await;
    app.sandbox_post("/sandbox/marketing_cap", &json!({"to": phones[0]}))
        .await;
    let id = marketing_campaign(&app, "capped", json!({})).await;
    let s = app
        .wait_stats(&id, "one sent, one capped", |s| {
            s["sent"] == 1 && s["capped_by_meta"] == 1 && s["queued"] == 1
        })
        .await;
    assert_eq!(s["failed"], 0, "{s}");
    // Each day it goes once more; after three reschedules it fails with Meta's code.
    for day in 1..=3 {
        // Back in the queue for a day (never sooner) before the clock moves on.
        wait_contact(&app, &phones[0], "capped and queued again", |c| {
            c["messages"][0]["capped_by_meta"] == day && c["messages"][0]["state"] == "queued"
        })
        .await;
        assert_eq!(sends_to(&app, &phones[0]).await, day as usize);
        app.advance(Duration::from_secs(25 * 3600)).await;
        let mut n = 0;
        for _ in 0..400 {
            n = sends_to(&app, &phones[0]).await;
            if n > day as usize {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(n, day as usize + 1, "not resent a day later (day {day})");
    }
    let s = app
        .wait_stats(&id, "given up", |s| {
            s["state"] == "completed" && s["failed_by_code"]["131049"] == 1
        })
        .await;
    assert_eq!(s["capped_by_meta"], 1, "{s}");
    assert_eq!(
        sends_to(&app, &phones[0]).await,
        4,
        "never sooner than a day"
    );
    let c = contact(&app, &phones[0]).await;
    let m = &c["messages"][0];
    assert_eq!(m["capped_by_meta"], 3, "{c}");
    assert_eq!(m["error"]["code"], 131049, "{c}");
}

/// A signed webhook as Meta would post it; waits until it is processed.
async fn feed(app: &TestApp, body: &Value) {
    let raw = serde_json::to_vec(body).expect("json");
    let sig = app.sign(&raw);
    assert_eq!(app.post_webhook(&raw, Some(&sig)).await, 200);
    app.webhooks_processed().await;
}

fn envelope(field: &str, value: Value) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": demo_ids::WABA_ID,
        "changes": [{"value": value, "field": field}]}]})
}

fn statuses(list: Vec<Value>) -> Value {
    envelope(
        "messages",
        json!({"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100100", "phone_number_id": demo_ids::PHONE_NUMBER_ID},
            "statuses": list}),
    )
}

#[tokio::test]
async fn every_webhook_example_of_sections_5_to_7_is_accepted_stored_and_applied() {
    let app = spawn_app().await;
    // A message of ours for the status examples.
    let (phone, _) = app.contact(1).await;
    app.sandbox_post("/sandbox/pacing", &json!({"hold": true}))
        .await;
    let id = app
        .send(
            &json!({"to": phone, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "Ana"}}}),
        )
        .await;
    let m = app
        .wait_for_message(&id, "held", |m| m["held_by_meta"] == true)
        .await;
    let wamid = m["wamid"].as_str().expect("wamid").to_owned();
    let wa_id = digits(&phone);

    // §5.1: `sent` with the PMP pricing object (marketing).
    feed(&app, &statuses(vec![json!({"id": wamid, "status": "sent", "timestamp": "1751142888",
        "recipient_id": wa_id, "biz_opaque_callback_data": id,
        "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing"}})]))
    .await;
    let m = app.get_message(&id).await;
    assert_eq!(m["state"], "sent", "{m}");
    assert_eq!(m["held_by_meta"], false, "released: {m}");
    assert_eq!(
        m["pricing"],
        json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing"})
    );
    // §5.3: a service message's pricing from 2026-10-01; §7: `marketing_lite`.
    for pricing in [
        json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": "service"}),
        json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing_lite"}),
    ] {
        feed(
            &app,
            &statuses(vec![
                json!({"id": wamid, "status": "delivered", "timestamp": "1751142890",
            "recipient_id": wa_id, "pricing": pricing.clone()}),
            ]),
        )
        .await;
        assert_eq!(app.get_message(&id).await["pricing"], pricing);
    }

    // §5.2: the volume tier update: accepted and stored, nothing to change.
    feed(
        &app,
        &envelope(
            "account_update",
            json!({"volume_tier_info": {"tier_update_time": 1743451903,
        "pricing_category": "UTILITY", "tier": "25000001:50000000", "effective_month": "2025-11",
        "region": "India"}, "event": "VOLUME_BASED_PRICING_TIER_UPDATE"}),
        ),
    )
    .await;
    // §7: the Marketing Messages API terms signed.
    feed(
        &app,
        &envelope(
            "account_update",
            json!({"event": "MM_LITE_TERMS_SIGNED",
        "waba_info": {"owner_business_id": demo_ids::BUSINESS_ID, "waba_id": demo_ids::WABA_ID}}),
        ),
    )
    .await;
    assert!(app.store.count_webhook_events().await.expect("count") >= 5);

    // §6.1: `user_preferences` stop, exactly Meta's example (our number in the metadata).
    let user = "+16505551234";
    feed(&app, &envelope("user_preferences", json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": demo_ids::PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "<NAME>", "username": "<USERNAME>"}, "wa_id": "16505551234",
                      "user_id": "US.13491208655302741918", "parent_user_id": "<PARENT_BSUID>"}],
        "user_preferences": [{"wa_id": "16505551234", "user_id": "US.13491208655302741918",
            "parent_user_id": "<PARENT_BSUID>", "detail": "User requested to stop marketing messages",
            "category": "marketing_messages", "value": "stop", "timestamp": 1731705721}]}))).await;
    let c = contact(&app, user).await;
    assert_eq!(c["subscription"], "opted_out", "{c}");
    assert_eq!(c["subscription_source"], "meta", "{c}");
    assert_eq!(
        c["subscription_history"][0]["note"], "User requested to stop marketing messages",
        "{c}"
    );

    // §6.2: 131049 as an asynchronous `failed`: rescheduled, not failed.
    app.sandbox_post("/sandbox/pacing", &json!({"hold": false}))
        .await;
    let (other, _) = app.contact(2).await;
    app.sandbox_post("/sandbox/pacing", &json!({"hold": true}))
        .await;
    let capped = app
        .send(
            &json!({"to": other, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "Bo"}}}),
        )
        .await;
    let m = app
        .wait_for_message(&capped, "held", |m| m["held_by_meta"] == true)
        .await;
    let capped_wamid = m["wamid"].as_str().expect("wamid").to_owned();
    feed(&app, &statuses(vec![json!({"id": capped_wamid, "status": "failed", "timestamp": "1751142888",
        "recipient_id": digits(&other),
        "errors": [{"code": 131049, "title": "This message was not delivered to maintain healthy ecosystem engagement.",
            "message": "This message was not delivered to maintain healthy ecosystem engagement.",
            "error_data": {"details": "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."},
            "href": "/documentation/business-messaging/whatsapp/support/error-codes"}]})]))
    .await;
    let m = app.get_message(&capped).await;
    assert_eq!(m["state"], "queued", "{m}");
    assert_eq!(m["capped_by_meta"], 1, "{m}");

    // §6.2: 131050 as an asynchronous `failed`: the contact is opted out by Meta.
    let (third, _) = app.contact(3).await;
    let stopped = app
        .send(
            &json!({"to": third, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "Cy"}}}),
        )
        .await;
    let m = app
        .wait_for_message(&stopped, "held", |m| m["held_by_meta"] == true)
        .await;
    feed(&app, &statuses(vec![json!({"id": m["wamid"], "status": "failed", "timestamp": "1751142888",
        "recipient_id": digits(&third),
        "errors": [{"code": 131050, "title": "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business",
            "message": "Unable to deliver the message.", "error_data": {"details": "User stopped marketing."}}]})]))
    .await;
    assert_eq!(app.get_message(&stopped).await["state"], "failed");
    let c = contact(&app, &third).await;
    assert_eq!(
        (c["subscription"].clone(), c["subscription_source"].clone()),
        (json!("opted_out"), json!("meta")),
        "{c}"
    );
}

#[tokio::test]
async fn the_console_edits_the_opt_out_keywords_and_the_reply() {
    let app = spawn_app().await;
    let cookie = app.console_cookie().await;
    let (status, html) = app.console_get(&cookie, "/settings/opt-out").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("отписаться") && html.contains("abmelden"),
        "defaults shown"
    );
    let post = |form: Vec<(&'static str, &'static str)>| {
        app.http
            .post(format!("{}/settings/opt-out", app.url))
            .header("cookie", cookie.as_str())
            .header("origin", app.url.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&form))
            .send()
    };
    let resp = post(vec![
        ("keywords", "Basta ya\n\n  NEIN  "),
        ("reply", "Erledigt."),
    ])
    .await
    .expect("post");
    assert_eq!(resp.status(), 200);
    let v = api(&app, Method::GET, "/api/v1/settings/opt-out", None).await;
    assert_eq!(v["keywords"], json!(["basta ya", "nein"]), "{v}");
    assert_eq!(v["reply"], "Erledigt.", "{v}");
    // A blank list is refused with the reason, nothing changes.
    let resp = post(vec![("keywords", "  \n "), ("reply", "")])
        .await
        .expect("post");
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .unwrap_or_default()
            .contains("at least one keyword")
    );
    assert_eq!(
        api(&app, Method::GET, "/api/v1/settings/opt-out", None).await["keywords"],
        json!(["basta ya", "nein"])
    );
    let resp = post(vec![("keywords", ""), ("reply", ""), ("defaults", "1")])
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    let v = api(&app, Method::GET, "/api/v1/settings/opt-out", None).await;
    assert_eq!(
        (v["defaults"].clone(), v["reply"].clone()),
        (json!(true), Value::Null),
        "{v}"
    );
}

/// `application/x-www-form-urlencoded`, as a browser posts a form.
pub(crate) fn form_body(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A `user_preferences` stop for a customer whose number Meta withholds carries only the
/// BSUID: it opts out the contact that BSUID names (also one Parley knows by phone), and a
/// BSUID Parley has never met becomes a contact that is opted out from the start.
#[tokio::test]
async fn a_stop_naming_only_a_bsuid_opts_out_the_contact_it_names() {
    let app = spawn_app().await;
    let phone = "+4915112345670";
    let linked = "DE.71823645091827364501";
    api(
        &app,
        Method::PUT,
        &format!("/api/v1/contacts/{}", phone.replace('+', "%2B")),
        Some(&json!({"name": "Lena", "bsuid": linked, "subscription": "opted_in"})),
    )
    .await;
    let stop = |user_id: &str| {
        envelope(
            "user_preferences",
            json!({"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550100100", "phone_number_id": demo_ids::PHONE_NUMBER_ID},
                "contacts": [{"profile": {"username": "lena"}, "user_id": user_id}],
                "user_preferences": [{"user_id": user_id, "detail": "User requested to stop marketing messages",
                    "category": "marketing_messages", "value": "stop", "timestamp": 1731705721}]}),
        )
    };
    feed(&app, &stop(linked)).await;
    let c = contact(&app, phone).await;
    assert_eq!(c["subscription"], "opted_out", "{c}");
    assert_eq!(c["subscription_source"], "meta", "{c}");

    let unknown = "US.55501928374650192837";
    feed(&app, &stop(unknown)).await;
    let c = contact(&app, unknown).await;
    assert_eq!(c["bsuid"], unknown, "{c}");
    assert!(c["phone"].is_null(), "{c}");
    assert_eq!(c["subscription"], "opted_out", "{c}");
    assert_eq!(c["subscription_source"], "meta", "{c}");
}
