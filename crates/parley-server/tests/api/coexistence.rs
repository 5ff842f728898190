//! Coexistence end to end (issue 13): a WhatsApp Business app number signs up (headless
//! sandbox signup, `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING` with only the WABA), Parley
//! skips register and asks Meta once each for the app's contacts and history, imports what
//! the webhooks bring, records what the business types in the app, follows offboarding and
//! reconnection, and never sends faster than the number's 20 messages a second.

use std::time::Duration;

use parley_domain::{TagValue, Tags};
use parley_sandbox::demo_ids;
use parley_store::audience::ContactUpsert;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// The app contact with history in the sandbox's default app (`coexist::default_chats`).
const PABLO: &str = "+16505551234";

impl TestApp {
    /// A coexistence signup on the demo portfolio and WABA (so the demo templates serve it),
    /// finished in Parley as the page would: the event and the WABA only. Returns
    /// (platform id, coexistence phone number id).
    async fn coexistence_onboarding(&self, app_setup: Value) -> (String, String) {
        let (status, platform, phone) = self.coexistence_signup(app_setup).await;
        assert_eq!(status, 201, "{platform}");
        let id = platform["id"].as_str().expect("platform id").to_owned();
        (id, phone)
    }

    /// The signup's answer from Parley: (status, body, coexistence phone number id).
    async fn coexistence_signup(&self, app_setup: Value) -> (u16, Value, String) {
        let mut body = json!({
            "completion": "coexistence",
            "business": {"id": demo_ids::BUSINESS_ID},
            "waba": {"id": demo_ids::WABA_ID},
            "phone_number": {},
        });
        if !app_setup.is_null() {
            body["coexistence"] = app_setup;
        }
        let signup = self.sandbox_post("/sandbox/signup", &body).await;
        assert_eq!(signup["event"], "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING");
        assert!(signup["message"]["data"].get("phone_number_id").is_none());
        let phone = signup["phone_number_id"]
            .as_str()
            .expect("phone")
            .to_owned();
        let (status, answer) = self
            .api_call(
                Method::POST,
                "/api/v1/platforms/whatsapp/signup",
                Some(&json!({
                    "code": signup["code"],
                    "waba_id": signup["waba_id"],
                    "event": "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING",
                })),
            )
            .await;
        (status, answer, phone)
    }

    async fn number_of(
        &self,
        platform: &str,
        phone: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let v = self
            .wait_platform(platform, |p| {
                p["phone_numbers"]
                    .as_array()
                    .and_then(|ns| ns.iter().find(|n| n["phone_number_id"] == phone))
                    .is_some_and(&check)
            })
            .await;
        v["phone_numbers"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["phone_number_id"] == phone))
            .cloned()
            .expect("the number")
    }

    async fn contact_detail(&self, phone: &str) -> Value {
        let (status, v) = self
            .api_call(
                Method::GET,
                &format!("/api/v1/contacts/{}", phone.replace('+', "%2B")),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }
}

fn paths(requests: &Value, method: &str, suffix: &str) -> Vec<Value> {
    requests["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|r| {
            r["method"] == method && r["path"].as_str().is_some_and(|p| p.ends_with(suffix))
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_business_app_number_is_onboarded_without_register_and_its_history_imported() {
    let app = spawn_app().await;
    let (platform, phone) = app.coexistence_onboarding(Value::Null).await;

    // No register; one contacts sync and one history sync, both accepted by Meta.
    let requests = app.sandbox_requests("").await;
    assert!(paths(&requests, "POST", &format!("{phone}/register")).is_empty());
    let syncs = paths(&requests, "POST", &format!("{phone}/smb_app_data"));
    assert_eq!(syncs.len(), 2, "{syncs:?}");
    assert!(
        syncs.iter().all(|s| s["outcome"] == "accepted"),
        "{syncs:?}"
    );
    let sandbox_view = app
        .sandbox_get(&format!("/sandbox/coexistence/{phone}"))
        .await;
    assert!(sandbox_view["synced"]["smb_app_state_sync"].is_string());
    assert!(sandbox_view["synced"]["history"].is_string());

    // The number: 20 mps, and the history sync goes to done.
    let number = app
        .number_of(&platform, &phone, |n| {
            n["coexistence"]["sync_status"] == "done"
        })
        .await;
    assert_eq!(number["throughput_mps"], 20);
    assert_eq!(number["coexistence"]["contacts_sync"], "requested");
    assert_eq!(number["coexistence"]["history_progress"], 100);
    let p = app
        .wait_platform(&platform, |p| p["status"] == "active")
        .await;
    let steps: Vec<(&str, &str)> = p["onboarding"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap_or(""),
                s["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(steps.contains(&("register_phone", "skipped")), "{steps:?}");
    assert!(steps.contains(&("sync_contacts", "done")), "{steps:?}");
    assert!(steps.contains(&("sync_history", "done")), "{steps:?}");

    // Contacts of the app, and the imported chat with the late media in place of its
    // placeholder; the app's READ stays a history status.
    let pablo = app
        .wait_contact(PABLO, "the imported history", |c| {
            c["app_messages"]
                .as_array()
                .is_some_and(|m| m.len() == 3 && m.iter().all(|m| m["type"] != "media_placeholder"))
        })
        .await;
    assert_eq!(pablo["name"], "Pablo Morales");
    assert_eq!(pablo["tags"]["whatsapp_business_app_contact"], true);
    let imported = pablo["app_messages"].as_array().expect("app messages");
    assert!(
        imported
            .iter()
            .all(|m| m["imported"] == true && m["source"] == "history")
    );
    assert!(imported.iter().any(|m| m["type"] == "image"));
    let thanks = imported
        .iter()
        .find(|m| m["text"] == "Thanks!")
        .expect("the customer's message");
    assert_eq!(thanks["direction"], "inbound");
    assert_eq!(thanks["history_status"], "READ");
    assert!(imported.iter().any(|m| m["direction"] == "outbound"));
    // History opens no window and is no Parley send.
    assert!(pablo["last_inbound_at"].is_null(), "{pablo}");
    assert_eq!(pablo["messages"], json!([]));
    let (status, body) = app
        .api_call(
            Method::POST,
            "/api/v1/messages",
            Some(&json!({"to": PABLO, "phone_number_id": phone, "text": "hi"})),
        )
        .await;
    assert_eq!(status, 422, "free text outside a window: {body}");

    // The business types in the app on the phone: an outbound row marked as such.
    let echo = app
        .sandbox_post(
            &format!("/sandbox/coexistence/{phone}/app_message"),
            &json!({"to": PABLO, "text": "Typed in the app"}),
        )
        .await;
    let pablo = app
        .wait_contact(PABLO, "the echo", |c| {
            c["app_messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["wamid"] == echo["wamid"]))
        })
        .await;
    let row = pablo["app_messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["wamid"] == echo["wamid"]))
        .expect("echo row");
    assert_eq!(row["direction"], "outbound");
    assert_eq!(row["source"], "business_app");
    assert_eq!(row["label"], "sent from WhatsApp Business app");
    assert_eq!(row["imported"], false);
    assert_eq!(row["text"], "Typed in the app");
    assert!(pablo["last_inbound_at"].is_null());
    assert_eq!(pablo["messages"], json!([]), "an echo is not a Parley send");

    // The console shows both: the sync on the platform list, the app messages on the contact.
    let cookie = app.console_cookie().await;
    let (status, list) = app.console_get(&cookie, "/settings/platforms/list").await;
    assert_eq!(status, 200);
    assert!(list.contains("WhatsApp Business app"), "{list}");
    assert!(list.contains("history imported"), "{list}");
    let (status, page) = app
        .console_get(&cookie, &format!("/contacts/{}", PABLO.replace('+', "%2B")))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("Typed in the app"), "{page}");
    assert!(page.contains("sent from WhatsApp Business app"));
    assert!(page.contains("imported from WhatsApp Business app"));

    // Removed from the app's contacts: the contact and its history stay, the tag says so.
    app.sandbox_post(
        &format!("/sandbox/coexistence/{phone}/contacts"),
        &json!({"action": "remove", "phone_number": PABLO}),
    )
    .await;
    let pablo = app
        .wait_contact(PABLO, "the removal", |c| {
            c["tags"]["whatsapp_business_app_contact"] == false
        })
        .await;
    assert_eq!(pablo["name"], "Pablo Morales");
    assert_eq!(pablo["app_messages"].as_array().map(Vec::len), Some(4));

    // The same history delivered again changes nothing (idempotent by wamid).
    let deliveries = app.sandbox_get("/sandbox/webhooks?limit=1000").await;
    let first_chunk = deliveries["data"]
        .as_array()
        .expect("deliveries")
        .iter()
        .find(|d| d["payload"]["entry"][0]["changes"][0]["field"] == "history")
        .expect("a history delivery")["payload"]
        .clone();
    let body = serde_json::to_vec(&first_chunk).expect("json");
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    app.webhooks_processed().await;
    let again = app.contact_detail(PABLO).await;
    assert_eq!(again["app_messages"].as_array().map(Vec::len), Some(4));

    // Erasing the person erases the app's messages of them too.
    let (status, erased) = app
        .api_call(
            Method::DELETE,
            &format!("/api/v1/contacts/{}", PABLO.replace('+', "%2B")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{erased}");
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let left = app
        .store
        .contact_app_messages(&application, PABLO, 50)
        .await
        .expect("app messages");
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_declined_history_is_shown_on_the_platform() {
    let app = spawn_app().await;
    let (platform, phone) = app
        .coexistence_onboarding(json!({"share_history": false}))
        .await;
    let number = app
        .number_of(&platform, &phone, |n| {
            n["coexistence"]["sync_status"] == "declined"
        })
        .await;
    assert!(
        number["coexistence"]["sync_error"]
            .as_str()
            .is_some_and(|e| e.contains("History sync is turned off")),
        "{number}"
    );
    // The contacts still came.
    app.wait_contact(PABLO, "the app contact", |c| c["name"] == "Pablo Morales")
        .await;
}

#[tokio::test]
async fn offboarding_in_the_app_disconnects_with_metas_reason_and_reconnect_resumes_sends() {
    let app = spawn_app().await;
    let (platform, phone) = app.coexistence_onboarding(Value::Null).await;
    app.wait_platform(&platform, |p| p["status"] == "active")
        .await;

    app.sandbox_post(
        &format!("/sandbox/coexistence/{phone}/offboard"),
        &json!({"event": "PARTNER_REMOVED", "reason": "PRIMARY_INACTIVITY", "initiated_by": "SYSTEM"}),
    )
    .await;
    let p = app
        .wait_platform(&platform, |p| p["status"] == "disconnected")
        .await;
    let reason = p["status_reason"].as_str().expect("reason");
    assert!(reason.contains("PRIMARY_INACTIVITY"), "{reason}");
    assert!(reason.contains("queued"), "{reason}");
    let number = p["phone_numbers"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["phone_number_id"] == phone))
        .expect("the number stays");
    assert!(number["coexistence"]["disconnection_reason"].is_string());

    // A message for that number waits while it is offboarded.
    let (contact, _) = app.contact(0).await;
    let id = app
        .send(&json!({
            "to": contact, "phone_number_id": phone,
            "template": {"name": "welcome", "language": "en",
                         "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}}
        }))
        .await;
    app.workers_looked().await;
    assert_eq!(app.get_message(&id).await["state"], "queued");
    let sends = app
        .sandbox_requests(&format!("sends=true&phone_number_id={phone}"))
        .await;
    assert_eq!(
        sends["data"],
        json!([]),
        "nothing reached Meta from the offboarded number"
    );

    app.sandbox_post(
        &format!("/sandbox/coexistence/{phone}/reconnect"),
        &json!({}),
    )
    .await;
    app.wait_platform(&platform, |p| {
        p["status"] == "active" && p["status_reason"].is_null()
    })
    .await;
    app.wait_for_state(&id, "read").await;

    // ACCOUNT_OFFBOARDED (a device change) disconnects too.
    app.sandbox_post(
        &format!("/sandbox/coexistence/{phone}/offboard"),
        &json!({"event": "ACCOUNT_OFFBOARDED"}),
    )
    .await;
    let p = app
        .wait_platform(&platform, |p| p["status"] == "disconnected")
        .await;
    assert!(
        p["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("ACCOUNT_OFFBOARDED")),
        "{p}"
    );

    // Parley never deregisters such a number, even when asked to.
    let (status, report) = app
        .api_call(
            Method::DELETE,
            &format!("/api/v1/platforms/{platform}?deregister=true"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert!(
        report["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w
                .as_str()
                .is_some_and(|w| w.contains(&phone) && w.contains("not deregistered")))),
        "{report}"
    );
    let requests = app.sandbox_requests("").await;
    assert!(paths(&requests, "POST", &format!("{phone}/deregister")).is_empty());
    // The demo number of the same WABA was deregistered as asked: the call was made.
    assert_eq!(
        paths(
            &requests,
            "POST",
            &format!("{}/deregister", demo_ids::PHONE_NUMBER_ID)
        )
        .len(),
        1
    );
}

#[tokio::test]
async fn a_campaign_on_a_business_app_number_never_passes_20_messages_a_second() {
    let app = spawn_app().await;
    let (platform, phone) = app.coexistence_onboarding(Value::Null).await;
    app.wait_platform(&platform, |p| p["status"] == "active")
        .await;
    // Meta's throughput field says 1,000 mps: the number stays at 20 all the same.
    app.sandbox_post(
        &format!("/sandbox/phone_numbers/{phone}/limit"),
        &json!({"limit": "TIER_2K", "event": "THROUGHPUT_UPGRADE"}),
    )
    .await;
    app.number_of(&platform, &phone, |n| n["throughput_mps"] == 1000)
        .await;

    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let mut batch = Vec::new();
    for i in 0..120u64 {
        let mut tags = Tags::new();
        tags.insert("cohort".into(), TagValue::String("coexist".into()));
        tags.insert("first_name".into(), TagValue::String(format!("ana{i}")));
        batch.push(ContactUpsert {
            phone: format!("+49152{:08}", 30_000_000 + i),
            tags: tags.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            ..ContactUpsert::default()
        });
    }
    app.store
        .upsert_audience(&application, &batch, app.engine.now())
        .await
        .expect("seed");
    let (status, campaign) = app
        .api_call(
            Method::POST,
            "/api/v1/campaigns",
            Some(&json!({
                "name": "Coexistence sale",
                "phone_number_id": phone,
                "template": {"name": "welcome", "language": "en",
                             "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}},
                "audience": {"filter": "cohort = \"coexist\""},
                "type": "marketing"
            })),
        )
        .await;
    assert_eq!(status, 201, "{campaign}");
    let id = campaign["id"].as_str().expect("id");
    let (status, v) = app
        .api_call(Method::POST, &format!("/api/v1/campaigns/{id}/start"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    let mut stats = Value::Null;
    for _ in 0..600 {
        let (_, s) = app
            .api_call(Method::GET, &format!("/api/v1/campaigns/{id}/stats"), None)
            .await;
        stats = s;
        if stats["sent"] == 120 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats["sent"], 120, "{stats}");
    // Meta (the sandbox) enforces 20 per second on this number with 130429: none refused.
    app.assert_no_rate_refusals().await;
    let sends = app
        .sandbox_requests(&format!("sends=true&phone_number_id={phone}"))
        .await;
    assert_eq!(sends["data"].as_array().map(Vec::len), Some(120));
}

fn step_state<'a>(platform: &'a Value, name: &str) -> &'a Value {
    platform["onboarding"]["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step"] == name))
        .map_or(&Value::Null, |s| &s["state"])
}

#[tokio::test]
async fn a_refused_sync_is_shown_and_retried_once_and_not_after_24_hours() {
    let app = spawn_app().await;
    app.sandbox_post(
        "/sandbox/faults",
        &json!({"fail_next_calls": [{"path": "smb_app_data", "code": 2}]}),
    )
    .await;
    let (status, body, phone) = app.coexistence_signup(Value::Null).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "coexistence_sync_failed");
    let platform = &body["platform"];
    assert_eq!(platform["status"], "setting_up");
    assert_eq!(platform["onboarding"]["failed_step"], "sync_contacts");
    assert_eq!(step_state(platform, "sync_contacts"), "failed");
    let number = platform["phone_numbers"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["phone_number_id"] == phone))
        .expect("the number");
    assert_eq!(number["coexistence"]["sync_status"], "failed");
    // Meta's refusal is not retried by itself: one call reached Meta.
    let requests = app.sandbox_requests("").await;
    assert_eq!(
        paths(&requests, "POST", &format!("{phone}/smb_app_data")).len(),
        1
    );

    let id = platform["id"].as_str().expect("id");
    let (status, retried) = app
        .api_call(Method::POST, &format!("/api/v1/platforms/{id}/retry"), None)
        .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(step_state(&retried, "sync_contacts"), "done");
    assert_eq!(step_state(&retried, "sync_history"), "done");
    let requests = app.sandbox_requests("").await;
    let syncs = paths(&requests, "POST", &format!("{phone}/smb_app_data"));
    assert_eq!(syncs.len(), 3, "one refused, then one each: {syncs:?}");
    assert_eq!(
        syncs.iter().filter(|s| s["outcome"] == "accepted").count(),
        2
    );

    // A second coexistence number whose sync fails, retried a day later: too late.
    app.sandbox_post(
        "/sandbox/faults",
        &json!({"fail_next_calls": [{"path": "smb_app_data", "code": 2}]}),
    )
    .await;
    let (status, body, late_phone) = app.coexistence_signup(Value::Null).await;
    assert_eq!(status, 422, "{body}");
    app.advance(Duration::from_secs(25 * 60 * 60)).await;
    let (status, late) = app
        .api_call(Method::POST, &format!("/api/v1/platforms/{id}/retry"), None)
        .await;
    assert_eq!(status, 422, "{late}");
    assert_eq!(late["error"]["code"], "coexistence_sync_window_passed");
    let requests = app.sandbox_requests("").await;
    assert_eq!(
        paths(&requests, "POST", &format!("{late_phone}/smb_app_data")).len(),
        1,
        "no call after the window"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_app_messages_and_the_sync_status() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["AppMessageView"]["properties"]["imported"].is_object());
    assert!(schemas["CoexistenceView"]["properties"]["sync_status"].is_object());
    assert!(schemas["NumberView"]["properties"]["coexistence"].is_object());
    // ContactDetailView flattens ContactView, so its own properties sit under `allOf`.
    let detail = schemas["ContactDetailView"].to_string();
    assert!(detail.contains("\"app_messages\""), "{detail}");
    assert!(detail.contains("AppMessageView"), "{detail}");
}
