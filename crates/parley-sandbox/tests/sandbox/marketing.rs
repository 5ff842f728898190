//! The Marketing Messages API as Meta has it (META_2026 §7): `POST /{phone}/marketing_messages`
//! takes marketing templates only, answers `message_status: accepted`, reads `product_policy`
//! (`CLOUD_API_FALLBACK` goes through the Cloud API while the WABA is not onboarded, `STRICT`
//! refuses) and the template's `message_send_ttl_seconds` (12 h to 30 days, on this endpoint
//! only); the request log shows the policy and the time-to-live.

use parley_sandbox::demo_ids;
use serde_json::{Value, json};

use super::{TestSandbox, assert_meta_error, order_update, spawn, test_config, welcome};

impl TestSandbox {
    async fn send_marketing(&self, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!(
                "{}/v27.0/{}/marketing_messages",
                self.base,
                demo_ids::PHONE_NUMBER_ID
            ))
            .bearer_auth(demo_ids::ACCESS_TOKEN)
            .json(body)
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }
}

fn with(mut body: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn with_ttl(body: Value, ttl: Value) -> Value {
    let mut b = body;
    b["template"]["message_send_ttl_seconds"] = ttl;
    b
}

#[tokio::test]
async fn marketing_messages_takes_marketing_templates_with_policy_and_ttl_in_metas_range() {
    let sb = spawn(test_config()).await;
    sb.control(
        &format!("wabas/{}/marketing", demo_ids::WABA_ID),
        json!({"marketing_messages_onboarding_status": "ONBOARDED"}),
    )
    .await;

    let (status, body) = sb
        .send_marketing(&with_ttl(welcome("+4915100000001"), json!(86_400)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"][0]["message_status"], "accepted", "{body}");
    assert_eq!(body["contacts"][0]["wa_id"], "4915100000001", "{body}");

    // Utility templates and free-form messages are not for this endpoint: 100.
    let (status, body) = sb.send_marketing(&order_update("+4915100000002")).await;
    assert_meta_error(status, &body, 400, 100);
    let text = json!({"messaging_product": "whatsapp", "to": "+4915100000002", "type": "text",
                      "text": {"body": "hi"}});
    let (status, body) = sb.send_marketing(&text).await;
    assert_meta_error(status, &body, 400, 100);

    // Time-to-live: 43200..=2592000 seconds, an integer.
    for bad in [
        json!(3_600),
        json!(2_592_001),
        json!("86400"),
        json!(43_199),
    ] {
        let (status, body) = sb
            .send_marketing(&with_ttl(welcome("+4915100000003"), bad.clone()))
            .await;
        assert_meta_error(status, &body, 400, 100);
    }
    // … and only here: `/messages` refuses it.
    let (status, body) = sb
        .send(&with_ttl(welcome("+4915100000004"), json!(86_400)))
        .await;
    assert_meta_error(status, &body, 400, 100);

    let (status, body) = sb
        .send_marketing(&with(
            welcome("+4915100000005"),
            json!({"product_policy": "SOMETIMES"}),
        ))
        .await;
    assert_meta_error(status, &body, 400, 100);

    // The request log shows the endpoint, the policy and the time-to-live as sent.
    let log = sb.control_get("requests?sends=true").await;
    let first = &log["data"][0];
    assert!(
        first["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/marketing_messages")),
        "{first}"
    );
    assert_eq!(first["message_send_ttl_seconds"], 86_400, "{first}");
    let policy = sb
        .send_marketing(&with(
            welcome("+4915100000006"),
            json!({"product_policy": "STRICT"}),
        ))
        .await;
    assert_eq!(policy.0, 200, "{}", policy.1);
    let log = sb.control_get("requests?sends=true").await;
    let last = log["data"].as_array().and_then(|d| d.last()).cloned();
    assert_eq!(
        last.as_ref().map(|r| r["product_policy"].clone()),
        Some(json!("STRICT")),
        "{log}"
    );
}

#[tokio::test]
async fn without_onboarding_strict_refuses_and_the_fallback_obeys_the_cloud_api_flag() {
    let sb = spawn(test_config()).await;
    // ELIGIBLE (terms unsigned): `STRICT` refuses, the default falls back to the Cloud API.
    let (status, body) = sb
        .send_marketing(&with(
            welcome("+4915100000011"),
            json!({"product_policy": "STRICT"}),
        ))
        .await;
    assert_meta_error(status, &body, 400, 100);
    let (status, body) = sb.send_marketing(&welcome("+4915100000012")).await;
    assert_eq!(status, 200, "{body}");
    // Marketing off on the Cloud API: the fallback is refused with 131063.
    sb.control(
        &format!("wabas/{}/marketing", demo_ids::WABA_ID),
        json!({"disable_marketing_messages_on_cloud_api": true}),
    )
    .await;
    let (status, body) = sb.send_marketing(&welcome("+4915100000013")).await;
    assert_meta_error(status, &body, 400, 131063);
    // Onboarded: the API itself sends it.
    sb.control(
        &format!("wabas/{}/marketing", demo_ids::WABA_ID),
        json!({"marketing_messages_onboarding_status": "ONBOARDED"}),
    )
    .await;
    let (status, body) = sb.send_marketing(&welcome("+4915100000014")).await;
    assert_eq!(status, 200, "{body}");
}
