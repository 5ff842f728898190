//! Coexistence: a WhatsApp Business app number on the Cloud API, as Meta runs it
//! (META_2026.md §2): the signup, the once-only sync calls within 24 h, the webhooks they
//! bring, the app's own messages and contacts, 20 mps, deregister refused, offboarding.

use parley_sandbox::demo_ids;
use reqwest::Method;
use serde_json::{Value, json};

use super::{TestSandbox, assert_meta_error, eventually, spawn, test_config};

fn value_of(body: &Value) -> &Value {
    &body["entry"][0]["changes"][0]["value"]
}

fn field_of(body: &Value) -> &str {
    body["entry"][0]["changes"][0]["field"]
        .as_str()
        .unwrap_or_default()
}

impl TestSandbox {
    /// A coexistence signup: (phone id, waba id, the signup's answer).
    async fn coexistence_signup(&self, extra: Value) -> (String, String, Value) {
        let mut body = json!({"completion": "coexistence"});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let answer = self.control("signup", body).await;
        let phone = answer["phone_number_id"]
            .as_str()
            .expect("phone")
            .to_owned();
        let waba = answer["waba_id"].as_str().expect("waba").to_owned();
        (phone, waba, answer)
    }

    async fn sync(&self, phone: &str, kind: &str) -> (u16, Value) {
        self.graph_call(
            Method::POST,
            &format!("/v27.0/{phone}/smb_app_data"),
            Some(json!({"messaging_product": "whatsapp", "sync_type": kind})),
        )
        .await
    }

    async fn graph_call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(demo_ids::ACCESS_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("graph request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    /// Subscribes the app to the coexistence fields, as a partner must.
    async fn subscribe_coexistence_fields(&self) {
        let response = self
            .http
            .post(format!(
                "{}/v27.0/{}/subscriptions",
                self.base,
                demo_ids::APP_ID
            ))
            .query(&[
                (
                    "access_token",
                    format!("{}|{}", demo_ids::APP_ID, demo_ids::APP_SECRET).as_str(),
                ),
                ("object", "whatsapp_business_account"),
                (
                    "fields",
                    "messages,history,smb_app_state_sync,smb_message_echoes",
                ),
            ])
            .send()
            .await
            .expect("subscriptions");
        assert_eq!(response.status().as_u16(), 200);
    }

    fn received_of(&self, field: &str) -> Vec<Value> {
        self.received
            .all()
            .into_iter()
            .filter(|(body, signed)| *signed && field_of(body) == field)
            .map(|(body, _)| body)
            .collect()
    }
}

#[tokio::test]
async fn a_coexistence_signup_finishes_with_only_the_waba_and_a_registered_20_mps_number() {
    let sb = spawn(test_config()).await;
    let (phone, waba, answer) = sb.coexistence_signup(json!({})).await;
    assert_eq!(answer["event"], "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING");
    assert_eq!(
        answer["message"],
        json!({"data": {"waba_id": waba}, "type": "WA_EMBEDDED_SIGNUP",
               "event": "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING", "version": 3})
    );
    let (status, number) = sb
        .graph_call(
            Method::GET,
            &format!("/v27.0/{phone}?fields=is_on_biz_app,platform_type,status"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{number}");
    assert_eq!(number["is_on_biz_app"], true);
    assert_eq!(number["platform_type"], "CLOUD_API");
    assert_eq!(number["status"], "CONNECTED");
    let (_, demo) = sb
        .graph_call(
            Method::GET,
            &format!("/v27.0/{}?fields=is_on_biz_app", demo_ids::PHONE_NUMBER_ID),
            None,
        )
        .await;
    assert_eq!(demo["is_on_biz_app"], false);

    // Deregister does not work for such a number.
    let (status, error) = sb
        .graph_call(
            Method::POST,
            &format!("/v27.0/{phone}/deregister"),
            Some(json!({})),
        )
        .await;
    assert_meta_error(status, &error, 400, 100);
    assert!(
        error["error"]["error_data"]["details"]
            .as_str()
            .is_some_and(|d| d.contains("Business Platform > Disconnect")),
        "{error}"
    );
}

#[tokio::test]
async fn each_sync_call_works_once_within_24_hours_of_onboarding() {
    let sb = spawn(test_config()).await;
    let (phone, _, _) = sb.coexistence_signup(json!({})).await;
    let (status, first) = sb.sync(&phone, "smb_app_state_sync").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["messaging_product"], "whatsapp");
    assert!(first["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    let (status, again) = sb.sync(&phone, "smb_app_state_sync").await;
    assert_meta_error(status, &again, 400, 100);
    assert!(
        again["error"]["error_data"]["details"]
            .as_str()
            .is_some_and(|d| d.contains("already requested")),
        "{again}"
    );
    // A number not onboarded from the app has no sync.
    let (status, error) = sb.sync(demo_ids::PHONE_NUMBER_ID, "history").await;
    assert_meta_error(status, &error, 400, 100);

    // The history sync's own window: 24 h of virtual time after onboarding.
    sb.advance(24 * 60 * 60 + 1).await;
    let (status, late) = sb.sync(&phone, "history").await;
    assert_meta_error(status, &late, 400, 100);
    assert!(
        late["error"]["error_data"]["details"]
            .as_str()
            .is_some_and(|d| d.contains("within 24 hours")),
        "{late}"
    );
}

#[tokio::test]
async fn the_syncs_bring_contacts_and_chunked_history_once_the_app_subscribed() {
    let sb = spawn(test_config()).await;
    let (phone, _, _) = sb.coexistence_signup(json!({})).await;
    // Not subscribed to `smb_app_state_sync` yet: Meta does not send it.
    sb.sync(&phone, "smb_app_state_sync").await;
    let mut logged = false;
    for _ in 0..500 {
        let log = sb.control_get("webhooks").await;
        if log["data"].as_array().is_some_and(|d| {
            d.iter().any(|w| {
                w["outcome"] == "not_subscribed" && field_of(&w["payload"]) == "smb_app_state_sync"
            })
        }) {
            logged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(logged, "the unsubscribed state sync is logged, not sent");
    assert!(sb.received_of("smb_app_state_sync").is_empty());

    sb.subscribe_coexistence_fields().await;
    sb.sync(&phone, "history").await;
    // Chunks follow each other in virtual time.
    sb.advance(5).await;
    eventually("every history chunk", || {
        sb.received_of("history")
            .iter()
            .any(|b| value_of(b)["history"][0]["metadata"]["progress"] == 100)
            && sb
                .received_of("history")
                .iter()
                .any(|b| value_of(b)["history"][0]["threads"][0]["messages"][0]["type"] == "image")
    })
    .await;
    let chunks = sb.received_of("history");
    let orders: Vec<i64> = chunks
        .iter()
        .filter_map(|b| value_of(b)["history"][0]["metadata"]["chunk_order"].as_i64())
        .collect();
    let mut sorted = orders.clone();
    sorted.sort_unstable();
    assert_ne!(orders, sorted, "chunks come out of order: {orders:?}");
    let all = serde_json::to_string(&chunks).expect("json");
    assert!(all.contains("\"media_placeholder\""));
    assert!(all.contains("history_context"));
    assert_eq!(value_of(&chunks[0])["metadata"]["phone_number_id"], phone);
}

#[tokio::test]
async fn a_business_that_turned_history_off_gets_the_decline() {
    let sb = spawn(test_config()).await;
    sb.subscribe_coexistence_fields().await;
    let (phone, _, _) = sb
        .coexistence_signup(json!({"coexistence": {"share_history": false}}))
        .await;
    let (status, _) = sb.sync(&phone, "history").await;
    assert_eq!(status, 200, "a decline is not an HTTP error");
    eventually("the decline", || !sb.received_of("history").is_empty()).await;
    let history = sb.received_of("history");
    assert_eq!(
        value_of(&history[0])["history"][0]["errors"][0]["code"],
        2593109
    );
}

#[tokio::test]
async fn the_phone_sends_echoes_and_contact_changes_and_can_offboard_and_reconnect() {
    let sb = spawn(test_config()).await;
    sb.subscribe_coexistence_fields().await;
    let (phone, waba, _) = sb.coexistence_signup(json!({})).await;
    let echo = sb
        .control(
            &format!("coexistence/{phone}/app_message"),
            json!({"to": "+16505551234", "text": "Typed on the phone"}),
        )
        .await;
    sb.control(
        &format!("coexistence/{phone}/contacts"),
        json!({"action": "remove", "phone_number": "16505551234"}),
    )
    .await;
    eventually("echo and state sync", || {
        !sb.received_of("smb_message_echoes").is_empty()
            && !sb.received_of("smb_app_state_sync").is_empty()
    })
    .await;
    let echoes = sb.received_of("smb_message_echoes");
    let item = &value_of(&echoes[0])["message_echoes"][0];
    assert_eq!(item["id"], echo["wamid"]);
    assert_eq!(item["to"], "16505551234");
    assert_eq!(item["text"]["body"], "Typed on the phone");
    let sync = sb.received_of("smb_app_state_sync");
    let change = &value_of(&sync[0])["state_sync"][0];
    assert_eq!(change["action"], "remove");
    assert!(change["contact"].get("full_name").is_none());

    // An echo opens no customer-service window: free text is still refused.
    let (status, error) = sb
        .graph_call(
            Method::POST,
            &format!("/v27.0/{phone}/messages"),
            Some(json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "text", "text": {"body": "hi"}})),
        )
        .await;
    assert_meta_error(status, &error, 400, 131047);

    sb.control(
        &format!("coexistence/{phone}/offboard"),
        json!({"event": "PARTNER_REMOVED", "reason": "PRIMARY_INACTIVITY", "initiated_by": "SYSTEM"}),
    )
    .await;
    sb.control(&format!("coexistence/{phone}/reconnect"), json!({}))
        .await;
    eventually("offboard and reconnect", || {
        sb.received_of("account_update").len() >= 3
    })
    .await;
    let updates = sb.received_of("account_update");
    let removed = updates
        .iter()
        .find(|b| value_of(b)["event"] == "PARTNER_REMOVED" && b["entry"][0]["id"] == waba.as_str())
        .expect("PARTNER_REMOVED on the WABA entry");
    assert_eq!(
        value_of(removed)["disconnection_info"],
        json!({"reason": "PRIMARY_INACTIVITY", "initiated_by": "SYSTEM"})
    );
    assert!(removed["entry"][0]["time"].is_string(), "time as a string");
    assert!(
        updates
            .iter()
            .any(|b| value_of(b)["event"] == "ACCOUNT_RECONNECTED")
    );
}

#[tokio::test]
async fn a_coexistence_number_is_held_to_20_messages_a_second() {
    let sb = spawn(test_config()).await;
    let (phone, _, _) = sb.coexistence_signup(json!({})).await;
    sb.inbound_to(&phone, "+4915112340001").await;
    let mut refused = 0;
    for i in 0..25 {
        let (status, body) = sb
            .graph_call(
                Method::POST,
                &format!("/v27.0/{phone}/messages"),
                Some(json!({"messaging_product": "whatsapp", "to": "4915112340001", "type": "text", "text": {"body": format!("m{i}")}})),
            )
            .await;
        if status != 200 {
            assert_meta_error(status, &body, 400, 130429);
            refused += 1;
        }
    }
    assert_eq!(
        refused, 5,
        "the clock is frozen: 20 pass in the second, 5 do not"
    );
    let requests = sb.control_get("requests").await;
    assert_eq!(requests["rate_refusals"][&phone]["throughput"], 5);
}

impl TestSandbox {
    async fn inbound_to(&self, phone: &str, from: &str) {
        self.control(
            "inbound",
            json!({"from": from, "text": "hello", "phone_number_id": phone}),
        )
        .await;
    }
}
