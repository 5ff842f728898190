//! The sandbox over real HTTP, as Parley and its users meet it: a sandbox on 127.0.0.1:0, a
//! small webhook receiver that checks signatures, and the virtual clock instead of sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use parley_sandbox::{Sandbox, SandboxConfig, demo_ids};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

#[path = "sandbox/analytics.rs"]
mod analytics;
#[path = "sandbox/calls.rs"]
mod calls;
#[path = "sandbox/coexistence.rs"]
mod coexistence;
#[path = "sandbox/completions.rs"]
mod completions;
#[path = "sandbox/fields.rs"]
mod fields;
#[path = "sandbox/limits.rs"]
mod limits;
#[path = "sandbox/marketing.rs"]
mod marketing;
#[path = "sandbox/signup.rs"]
mod signup;
#[path = "sandbox/users.rs"]
mod users;

const CUSTOMER: &str = "+4915112345678";
const CUSTOMER_DIGITS: &str = "4915112345678";

/// Webhooks the receiver got: parsed body and whether the signature was right.
#[derive(Clone, Default)]
struct Received {
    hooks: Arc<Mutex<Vec<(Value, bool)>>>,
    /// The receiver answers 500 to this many POSTs first (retry tests).
    fail_first: Arc<Mutex<u32>>,
}

impl Received {
    fn all(&self) -> Vec<(Value, bool)> {
        self.hooks.lock().expect("lock").clone()
    }

    /// Every status entry received, in arrival order.
    fn statuses(&self) -> Vec<Value> {
        self.all()
            .iter()
            .flat_map(|(body, _)| {
                body["entry"][0]["changes"][0]["value"]["statuses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    fn statuses_of(&self, wamid: &str) -> Vec<String> {
        self.statuses()
            .iter()
            .filter(|s| s["id"] == wamid)
            .filter_map(|s| s["status"].as_str().map(str::to_owned))
            .collect()
    }
}

struct TestSandbox {
    base: String,
    http: reqwest::Client,
    received: Received,
    shutdown: CancellationToken,
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn receive(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    {
        let mut fail = received.fail_first.lock().expect("lock");
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(demo_ids::APP_SECRET.as_bytes()).expect("hmac key");
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let got = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    received
        .hooks
        .lock()
        .expect("lock")
        .push((value, got == expected && json_type));
    StatusCode::OK
}

fn test_config() -> SandboxConfig {
    let mut config = SandboxConfig::demo();
    config.behaviour.read_ratio = 1.0;
    config
}

async fn spawn(config: SandboxConfig) -> TestSandbox {
    let shutdown = CancellationToken::new();
    let received = Received::default();

    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let hook_addr = hook_listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(received.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(hook_listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });

    let sandbox = Sandbox::new(config);
    sandbox.set_webhook_url(Some(format!("http://{hook_addr}/hook")));
    sandbox.freeze_clock();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind sandbox");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(sandbox.serve(listener, shutdown.clone()));

    TestSandbox {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        received,
        shutdown,
    }
}

impl TestSandbox {
    async fn send_as(&self, token: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!(
                "{}/v23.0/{}/messages",
                self.base,
                demo_ids::PHONE_NUMBER_ID
            ))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    async fn send(&self, body: &Value) -> (u16, Value) {
        self.send_as(demo_ids::ACCESS_TOKEN, body).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(demo_ids::ACCESS_TOKEN)
            .send()
            .await
            .expect("get");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/sandbox/{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control");
        assert!(response.status().is_success(), "control {path} failed");
        response.json().await.expect("json body")
    }

    async fn control_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/sandbox/{path}", self.base))
            .send()
            .await
            .expect("control get")
            .json()
            .await
            .expect("json body")
    }

    async fn advance(&self, seconds: u64) {
        self.control("clock/advance", json!({ "seconds": seconds }))
            .await;
    }

    async fn inbound(&self, from: &str, text: &str) -> String {
        let answer = self
            .control(
                "inbound",
                json!({"from": from, "text": text, "name": "Ana Lima"}),
            )
            .await;
        answer["wamid"].as_str().expect("wamid").to_owned()
    }
}

/// Polls `check` until it holds; generous so a slow machine never fails a test.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn spring_sale(to: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "biz_opaque_callback_data": "msg_01HTEST",
        "template": {
            "name": "spring_sale",
            "language": {"code": "en"},
            "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://cdn.example.com/spring.jpg"}}]},
                {"type": "body", "parameters": [
                    {"type": "text", "text": "Ana"},
                    {"type": "text", "text": "20%"},
                    {"type": "text", "text": "May 31"}
                ]},
                {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "spring"}]}
            ]
        }
    })
}

fn welcome(to: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {
            "name": "welcome",
            "language": {"code": "en"},
            "components": [{"type": "body", "parameters": [
                {"type": "text", "parameter_name": "first_name", "text": "Ana"}
            ]}]
        }
    })
}

/// The demo's utility template.
fn order_update(to: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en"},
            "components": [{"type": "body", "parameters": [
                {"type": "text", "parameter_name": "first_name", "text": "Ana"},
                {"type": "text", "parameter_name": "order_id", "text": "A-1"}
            ]}]
        }
    })
}

fn text(to: &str, body: &str) -> Value {
    json!({"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}})
}

fn assert_meta_error(status: u16, body: &Value, http: u16, code: u64) {
    assert_eq!(status, http, "HTTP status for {body}");
    assert_eq!(body["error"]["code"], code, "code in {body}");
    assert!(body["error"]["message"].is_string(), "message in {body}");
    assert!(body["error"]["type"].is_string(), "type in {body}");
    assert!(
        body["error"]["fbtrace_id"].is_string(),
        "fbtrace_id in {body}"
    );
}

#[tokio::test]
async fn template_send_is_accepted_with_metas_exact_shape() {
    let sb = spawn(test_config()).await;
    let request = spring_sale(CUSTOMER);
    let (status, body) = sb.send(&request).await;
    assert_eq!(status, 200, "{body}");
    let wamid = body["messages"][0]["id"]
        .as_str()
        .expect("wamid")
        .to_owned();
    assert!(wamid.starts_with("wamid."));
    assert_eq!(
        body,
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": CUSTOMER, "wa_id": CUSTOMER_DIGITS}],
            "messages": [{"id": wamid, "message_status": "accepted"}]
        })
    );

    let (_, second) = sb.send(&welcome(CUSTOMER)).await;
    assert_ne!(second["messages"][0]["id"], wamid, "wamids are unique");

    let recorded = sb
        .control_get(&format!("messages?to={CUSTOMER_DIGITS}"))
        .await;
    let first = &recorded["data"][0];
    assert_eq!(first["wamid"], wamid);
    assert_eq!(first["request"], request, "the exact request is recorded");
    assert_eq!(first["type"], "template");
    assert_eq!(first["status"], "accepted");
    assert_eq!(recorded["data"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn tokens_are_checked() {
    let sb = spawn(test_config()).await;
    let (status, body) = sb.send_as("EAAwrong", &welcome(CUSTOMER)).await;
    assert_meta_error(status, &body, 401, 190);

    let response = sb
        .http
        .get(format!("{}/v23.0/{}", sb.base, demo_ids::PHONE_NUMBER_ID))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], 104);

    let response = sb
        .http
        .get(format!(
            "{}/v23.0/{}?access_token={}",
            sb.base,
            demo_ids::PHONE_NUMBER_ID,
            demo_ids::ACCESS_TOKEN
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 200, "query token accepted");
}

#[tokio::test]
async fn template_errors_use_metas_codes() {
    let sb = spawn(test_config()).await;

    let mut unknown = welcome(CUSTOMER);
    unknown["template"]["name"] = json!("no_such_template");
    let (status, body) = sb.send(&unknown).await;
    assert_meta_error(status, &body, 404, 132001);

    let mut wrong_language = welcome(CUSTOMER);
    wrong_language["template"]["language"]["code"] = json!("de");
    let (status, body) = sb.send(&wrong_language).await;
    assert_meta_error(status, &body, 404, 132001);

    let mut too_few = spring_sale(CUSTOMER);
    too_few["template"]["components"][1]["parameters"] = json!([{"type": "text", "text": "Ana"}]);
    let (status, body) = sb.send(&too_few).await;
    assert_meta_error(status, &body, 400, 132000);
    assert!(
        body["error"]["error_data"]["details"]
            .as_str()
            .is_some_and(|d| d.contains("body")),
        "{body}"
    );

    let mut unnamed = welcome(CUSTOMER);
    unnamed["template"]["components"][0]["parameters"] = json!([{"type": "text", "text": "Ana"}]);
    let (status, body) = sb.send(&unnamed).await;
    assert_meta_error(status, &body, 400, 132000);

    let mut text_header = spring_sale(CUSTOMER);
    text_header["template"]["components"][0]["parameters"] =
        json!([{"type": "text", "text": "not an image"}]);
    let (status, body) = sb.send(&text_header).await;
    assert_meta_error(status, &body, 400, 132012);

    let mut bad_link = spring_sale(CUSTOMER);
    bad_link["template"]["components"][0]["parameters"] =
        json!([{"type": "image", "image": {"link": "ftp://cdn.example.com/a.jpg"}}]);
    let (status, body) = sb.send(&bad_link).await;
    assert_meta_error(status, &body, 400, 132012);

    let mut empty_text = spring_sale(CUSTOMER);
    empty_text["template"]["components"][2]["parameters"] = json!([{"type": "text", "text": ""}]);
    let (status, body) = sb.send(&empty_text).await;
    assert_meta_error(status, &body, 400, 132012);

    let mut integer_index = spring_sale(CUSTOMER);
    integer_index["template"]["components"][2]["index"] = json!(0);
    let (status, body) = sb.send(&integer_index).await;
    assert_eq!(status, 200, "integer button index accepted: {body}");

    let recorded = sb.control_get("messages").await;
    assert_eq!(
        recorded["data"].as_array().map(Vec::len),
        Some(1),
        "refused sends are not recorded"
    );
}

#[tokio::test]
async fn envelope_errors_and_bad_json() {
    let sb = spawn(test_config()).await;

    let mut no_to = welcome(CUSTOMER);
    no_to.as_object_mut().expect("object").remove("to");
    let (status, body) = sb.send(&no_to).await;
    assert_meta_error(status, &body, 400, 131008);

    let mut product = welcome(CUSTOMER);
    product["messaging_product"] = json!("instagram");
    let (status, body) = sb.send(&product).await;
    assert_meta_error(status, &body, 400, 100);

    let response = sb
        .http
        .post(format!(
            "{}/v23.0/{}/messages",
            sb.base,
            demo_ids::PHONE_NUMBER_ID
        ))
        .bearer_auth(demo_ids::ACCESS_TOKEN)
        .header("content-type", "application/json")
        .body("{\"messaging_product\": \"whatsapp\", ")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response
        .json()
        .await
        .expect("Meta error object, not axum text");
    assert_eq!(body["error"]["code"], 100);

    let (status, body) = sb.get("/v23.0/999999999").await;
    assert_meta_error(status, &body, 400, 100);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Unsupported get request. Object with ID '999999999'")),
        "{body}"
    );

    let response = sb
        .http
        .post(format!("{}/sandbox/faults", sb.base))
        .body("not json")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], 100);
}

#[tokio::test]
async fn free_form_needs_an_open_service_window() {
    let sb = spawn(test_config()).await;
    let (status, body) = sb.send(&text(CUSTOMER, "hello")).await;
    assert_meta_error(status, &body, 400, 131047);

    sb.inbound(CUSTOMER, "hi there").await;
    let (status, body) = sb.send(&text(CUSTOMER, "hello")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["messages"][0].get("message_status").is_none(),
        "message_status only for templates: {body}"
    );

    sb.advance(25 * 3600).await;
    let (status, body) = sb.send(&text(CUSTOMER, "hello again")).await;
    assert_meta_error(status, &body, 400, 131047);
    let (status, _) = sb.send(&welcome(CUSTOMER)).await;
    assert_eq!(status, 200, "templates need no window");
}

#[tokio::test]
async fn throughput_limit_is_130429() {
    let mut config = test_config();
    config.businesses[0].wabas[0].phone_numbers[0].throughput_mps = 2;
    let sb = spawn(config).await;
    assert_eq!(sb.send(&welcome("+4915100000001")).await.0, 200);
    assert_eq!(sb.send(&welcome("+4915100000002")).await.0, 200);
    let (status, body) = sb.send(&welcome("+4915100000003")).await;
    assert_meta_error(status, &body, 400, 130429);
    sb.advance(1).await;
    assert_eq!(sb.send(&welcome("+4915100000003")).await.0, 200);
}

#[tokio::test]
async fn pair_rate_limit_is_131056() {
    let mut config = test_config();
    config.behaviour.pair_rate_burst = 2;
    let sb = spawn(config).await;
    assert_eq!(sb.send(&welcome(CUSTOMER)).await.0, 200);
    assert_eq!(sb.send(&welcome(CUSTOMER)).await.0, 200);
    let (status, body) = sb.send(&welcome(CUSTOMER)).await;
    assert_meta_error(status, &body, 400, 131056);
    assert_eq!(
        sb.send(&welcome("+4915100000009")).await.0,
        200,
        "other recipients are not affected"
    );
    sb.advance(6).await;
    assert_eq!(sb.send(&welcome(CUSTOMER)).await.0, 200);
}

#[tokio::test]
async fn every_call_is_in_the_request_log_refused_ones_with_their_code() {
    let mut config = test_config();
    config.businesses[0].wabas[0].phone_numbers[0].throughput_mps = 1;
    config.behaviour.pair_rate_burst = 1;
    let sb = spawn(config).await;
    let (_, accepted) = sb.send(&welcome(CUSTOMER)).await;
    let wamid = accepted["messages"][0]["id"].as_str().expect("wamid");
    // Over the number's 1 mps, then (a second later) over the pair rate, then a bad send,
    // a bad token and an injected failure (not a rate refusal).
    assert_eq!(sb.send(&welcome("+4915100000002")).await.0, 400);
    sb.advance(1).await;
    assert_eq!(sb.send(&welcome(CUSTOMER)).await.0, 400);
    assert_eq!(sb.send(&text("", "no recipient")).await.0, 400);
    assert_eq!(sb.send_as("wrong", &welcome(CUSTOMER)).await.0, 401);
    sb.control("faults", json!({"fail_next": [130429]})).await;
    assert_eq!(sb.send(&welcome("+4915100000003")).await.0, 400);
    assert_eq!(
        sb.get(&format!("/v23.0/{}", demo_ids::PHONE_NUMBER_ID))
            .await
            .0,
        200
    );

    let log = sb.control_get("requests").await;
    let calls = log["data"].as_array().expect("data");
    let codes: Vec<(Value, Value)> = calls
        .iter()
        .map(|c| (c["outcome"].clone(), c["code"].clone()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (json!("accepted"), Value::Null),
            (json!("refused"), json!(130429)),
            (json!("refused"), json!(131056)),
            (json!("refused"), json!(131008)),
            (json!("refused"), json!(190)),
            (json!("refused"), json!(130429)),
            (json!("accepted"), Value::Null),
        ],
        "{log}"
    );
    assert_eq!(calls[0]["wamid"], wamid);
    assert_eq!(calls[0]["to"], CUSTOMER);
    assert_eq!(calls[0]["type"], "template");
    assert_eq!(calls[0]["template"], "welcome");
    assert_eq!(calls[0]["phone_number_id"], demo_ids::PHONE_NUMBER_ID);
    assert_eq!(calls[1]["http_status"], 400);
    assert_eq!(calls[6]["method"], "GET");
    assert!(calls[6].get("phone_number_id").is_none(), "not a send");
    // Only the sandbox's own rate rules count, not the injected 130429.
    assert_eq!(
        log["rate_refusals"],
        json!({ demo_ids::PHONE_NUMBER_ID: {"throughput": 1, "pair_rate": 1} })
    );

    let refused = sb
        .control_get("requests?sends=true&outcome=refused&limit=2")
        .await;
    let refused = refused["data"].as_array().expect("data");
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[1]["code"], 130429);
    let to_customer = sb
        .control_get(&format!("requests?to={CUSTOMER_DIGITS}"))
        .await;
    assert_eq!(to_customer["data"].as_array().expect("data").len(), 3);

    sb.control("reset", json!({})).await;
    let log = sb.control_get("requests").await;
    assert_eq!(log, json!({"data": [], "rate_refusals": {}}));
}

#[tokio::test]
async fn fail_next_injects_errors_in_order() {
    let sb = spawn(test_config()).await;
    sb.control("faults", json!({"fail_next": [131000, 130429]}))
        .await;
    let (status, body) = sb.send(&welcome(CUSTOMER)).await;
    assert_meta_error(status, &body, 500, 131000);
    let (status, body) = sb.send(&welcome(CUSTOMER)).await;
    assert_meta_error(status, &body, 400, 130429);
    assert_eq!(sb.send(&welcome(CUSTOMER)).await.0, 200);

    let faults = sb.control_get("faults").await;
    assert_eq!(faults["fail_next"], json!([]));
}

#[tokio::test]
async fn status_webhooks_are_signed_and_ordered() {
    let sb = spawn(test_config()).await;
    let (_, body) = sb.send(&spring_sale(CUSTOMER)).await;
    let wamid = body["messages"][0]["id"]
        .as_str()
        .expect("wamid")
        .to_owned();

    sb.advance(5).await;
    let received = sb.received.clone();
    eventually("sent, delivered and read", || {
        received.statuses_of(&wamid).len() >= 3
    })
    .await;

    assert_eq!(
        sb.received.statuses_of(&wamid),
        vec!["sent", "delivered", "read"]
    );
    let hooks = sb.received.all();
    assert!(hooks.iter().all(|(_, signed)| *signed), "all signed");
    let (body, _) = &hooks[0];
    assert_eq!(body["object"], "whatsapp_business_account");
    assert_eq!(body["entry"][0]["id"], demo_ids::WABA_ID);
    let change = &body["entry"][0]["changes"][0];
    assert_eq!(change["field"], "messages");
    assert_eq!(change["value"]["messaging_product"], "whatsapp");
    assert_eq!(
        change["value"]["metadata"],
        json!({"display_phone_number": "15550100100", "phone_number_id": demo_ids::PHONE_NUMBER_ID})
    );
    for status in sb.received.statuses() {
        assert_eq!(status["biz_opaque_callback_data"], "msg_01HTEST");
        assert_eq!(status["recipient_id"], CUSTOMER_DIGITS);
        assert!(
            status["timestamp"]
                .as_str()
                .is_some_and(|t| t.parse::<i64>().is_ok())
        );
    }
    let sent = &sb.received.statuses()[0];
    assert_eq!(sent["pricing"]["category"], "marketing");
    assert_eq!(sent["pricing"]["pricing_model"], "PMP");
    assert!(sent["conversation"]["id"].is_string());

    let recorded = sb.control_get(&format!("messages/{wamid}")).await;
    assert_eq!(recorded["status"], "read");
}

#[tokio::test]
async fn undeliverable_recipients_fail_with_131026() {
    let sb = spawn(test_config()).await;
    sb.control("behaviour", json!({"undeliverable": ["+4915100000000"]}))
        .await;
    let (status, body) = sb.send(&welcome("4915100000000")).await;
    assert_eq!(status, 200, "accepted first, fails later: {body}");
    let wamid = body["messages"][0]["id"]
        .as_str()
        .expect("wamid")
        .to_owned();
    sb.advance(5).await;
    let received = sb.received.clone();
    eventually("failed status", || !received.statuses_of(&wamid).is_empty()).await;
    assert_eq!(sb.received.statuses_of(&wamid), vec!["failed"]);
    let failed = &sb.received.statuses()[0];
    assert_eq!(failed["errors"][0]["code"], 131026);
    assert_eq!(failed["errors"][0]["title"], "Message undeliverable");
}

#[tokio::test]
async fn inbound_messages_reach_the_webhook_and_can_be_marked_read() {
    let sb = spawn(test_config()).await;
    let wamid = sb.inbound(CUSTOMER, "Does it come in blue?").await;
    let received = sb.received.clone();
    eventually("inbound webhook", || !received.all().is_empty()).await;
    let (body, signed) = &sb.received.all()[0];
    assert!(*signed);
    let value = &body["entry"][0]["changes"][0]["value"];
    // Every messages webhook carries the user's business-scoped user id (META_2026 §3.1).
    let user_id = value["contacts"][0]["user_id"]
        .as_str()
        .expect("a BSUID")
        .to_owned();
    assert!(user_id.contains('.'), "{user_id}");
    assert_eq!(
        value["contacts"],
        json!([{"profile": {"name": "Ana Lima"}, "wa_id": CUSTOMER_DIGITS, "user_id": user_id}])
    );
    let message = &value["messages"][0];
    assert_eq!(message["from"], CUSTOMER_DIGITS);
    assert_eq!(message["from_user_id"], user_id.as_str());
    assert_eq!(message["id"], wamid);
    assert_eq!(message["type"], "text");
    assert_eq!(message["text"]["body"], "Does it come in blue?");
    assert!(message["timestamp"].is_string());

    let read = json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid});
    let (status, body) = sb.send(&read).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let unknown =
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.nope"});
    let (status, body) = sb.send(&unknown).await;
    // META_2026 §8.1: an unknown message id is 131009.
    assert_meta_error(status, &body, 400, 131009);
    // The typing indicator rides on the read receipt (one call), exactly as Meta takes it.
    let typing = json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid,
                        "typing_indicator": {"type": "text"}});
    let (status, body) = sb.send(&typing).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    for wrong in [
        json!({"type": "audio"}),
        json!("text"),
        json!({"type": "text", "duration": 5}),
    ] {
        let bad = json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid,
                         "typing_indicator": wrong});
        let (status, body) = sb.send(&bad).await;
        assert_meta_error(status, &body, 400, 100);
    }
    let stray = json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid,
                       "to": CUSTOMER});
    let (status, body) = sb.send(&stray).await;
    assert_meta_error(status, &body, 400, 100);

    let button = sb
        .control(
            "inbound",
            json!({"from": CUSTOMER, "message": {"type": "button", "button": {"payload": "STOP", "text": "Stop promotions"}}}),
        )
        .await;
    assert!(button["wamid"].is_string());
    eventually("button webhook", || received.all().len() >= 2).await;
}

#[tokio::test]
async fn duplicate_webhooks_fault_sends_twice() {
    let sb = spawn(test_config()).await;
    sb.control("faults", json!({"duplicate_webhooks": 1.0}))
        .await;
    let (_, body) = sb.send(&welcome(CUSTOMER)).await;
    let wamid = body["messages"][0]["id"]
        .as_str()
        .expect("wamid")
        .to_owned();
    sb.advance(5).await;
    let received = sb.received.clone();
    eventually("duplicated statuses", || {
        received.statuses_of(&wamid).len() >= 6
    })
    .await;
    let statuses = sb.received.statuses_of(&wamid);
    for status in ["sent", "delivered", "read"] {
        assert_eq!(statuses.iter().filter(|s| *s == status).count(), 2);
    }
    let log = sb.control_get("webhooks").await;
    let log = log["data"].as_array().cloned().unwrap_or_default();
    assert!(log.iter().any(|d| d["duplicate"] == true));
}

#[tokio::test]
async fn failed_webhook_posts_are_retried_and_logged() {
    let sb = spawn(test_config()).await;
    *sb.received.fail_first.lock().expect("lock") = 1;
    sb.inbound(CUSTOMER, "hello").await;
    let received = sb.received.clone();
    eventually("retried inbound webhook", || !received.all().is_empty()).await;
    let sandbox = &sb;
    let mut delivered = Value::Null;
    for _ in 0..500 {
        let log = sandbox.control_get("webhooks").await;
        if log["data"][0]["outcome"] == "delivered" {
            delivered = log["data"][0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(delivered["attempts"], 2, "{delivered}");
    assert_eq!(delivered["response_code"], 200);
}

#[tokio::test]
async fn templates_are_listed_with_cursor_paging() {
    let sb = spawn(test_config()).await;
    let path = format!("/v23.0/{}/message_templates?limit=2", demo_ids::WABA_ID);
    let (status, page) = sb.get(&path).await;
    assert_eq!(status, 200, "{page}");
    let names: Vec<&str> = page["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, vec!["welcome", "spring_sale"]);
    assert!(page["paging"]["cursors"]["before"].is_string());
    let next = page["paging"]["next"].as_str().expect("next link");
    let after = page["paging"]["cursors"]["after"].as_str().expect("after");
    assert!(next.contains(after));

    let (_, rest) = sb
        .get(&format!(
            "/v23.0/{}/message_templates?limit=2&after={after}",
            demo_ids::WABA_ID
        ))
        .await;
    assert_eq!(rest["data"][0]["name"], "order_update");
    assert!(rest["paging"].get("next").is_none());

    let (_, one) = sb
        .get(&format!(
            "/v23.0/{}/message_templates?name=order_update&fields=name,status",
            demo_ids::WABA_ID
        ))
        .await;
    assert_eq!(
        one["data"][0],
        json!({"name": "order_update", "status": "APPROVED", "id": "1193422825532003"})
    );
}

#[tokio::test]
async fn phone_numbers_and_waba_are_served() {
    let sb = spawn(test_config()).await;
    let (status, phone) = sb
        .get(&format!("/v21.0/{}", demo_ids::PHONE_NUMBER_ID))
        .await;
    assert_eq!(status, 200);
    assert_eq!(phone["display_phone_number"], "+1 555-010-0100");
    assert_eq!(phone["platform_type"], "CLOUD_API");
    assert_eq!(phone["throughput"], json!({"level": "STANDARD"}));
    assert_eq!(phone["status"], "CONNECTED");

    let (_, limit) = sb
        .get(&format!(
            "/v23.0/{}?fields=whatsapp_business_manager_messaging_limit",
            demo_ids::PHONE_NUMBER_ID
        ))
        .await;
    assert_eq!(
        limit,
        json!({"whatsapp_business_manager_messaging_limit": "TIER_250", "id": demo_ids::PHONE_NUMBER_ID})
    );
    let (status, body) = sb
        .get(&format!(
            "/v23.0/{}?fields=nonsense",
            demo_ids::PHONE_NUMBER_ID
        ))
        .await;
    assert_meta_error(status, &body, 400, 100);

    let (_, list) = sb
        .get(&format!("/v23.0/{}/phone_numbers", demo_ids::WABA_ID))
        .await;
    assert_eq!(list["data"][0]["id"], demo_ids::PHONE_NUMBER_ID);

    let (_, waba) = sb.get(&format!("/v23.0/{}", demo_ids::WABA_ID)).await;
    assert_eq!(waba["currency"], "EUR");
    assert_eq!(waba["account_review_status"], "APPROVED");
    assert!(waba["message_template_namespace"].is_string());

    let state = sb.control_get("state").await;
    let printed = state.to_string();
    assert!(!printed.contains(demo_ids::APP_SECRET));
    assert!(!printed.contains(demo_ids::ACCESS_TOKEN));
}

impl TestSandbox {
    async fn graph(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
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
}

fn template_changes(received: &Received) -> Vec<Value> {
    received
        .all()
        .iter()
        .filter(|(body, _)| {
            body["entry"][0]["changes"][0]["field"] == "message_template_status_update"
        })
        .map(|(body, _)| body["entry"][0]["changes"][0]["value"].clone())
        .collect()
}

#[tokio::test]
async fn created_templates_are_reviewed_and_announced() {
    let sb = spawn(test_config()).await;
    let path = format!("/v23.0/{}/message_templates", demo_ids::WABA_ID);
    let create = |name: &str| {
        json!({
            "name": name,
            "category": "utility",
            "language": "en",
            "parameter_format": "named",
            "components": [{
                "type": "BODY",
                "text": "Your code is {{code}}.",
                "example": {"body_text_named_params": [{"param_name": "code", "example": "1234"}]}
            }]
        })
    };
    let (status, created) = sb
        .graph(reqwest::Method::POST, &path, Some(create("login_code")))
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["status"], "PENDING");
    assert_eq!(created["category"], "UTILITY");
    let id = created["id"].as_str().expect("id").to_owned();

    let (status, body) = sb
        .graph(reqwest::Method::POST, &path, Some(create("login_code")))
        .await;
    assert_meta_error(status, &body, 400, 100);
    let (_, rejected) = sb
        .graph(reqwest::Method::POST, &path, Some(create("reject_me")))
        .await;

    let send = json!({
        "messaging_product": "whatsapp", "to": CUSTOMER, "type": "template",
        "template": {"name": "login_code", "language": {"code": "en"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "parameter_name": "code", "text": "9876"}]}
        ]}
    });
    let (status, body) = sb.send(&send).await;
    assert_meta_error(status, &body, 404, 132001);

    sb.advance(11).await;
    let received = sb.received.clone();
    eventually("two template reviews", || {
        template_changes(&received).len() >= 2
    })
    .await;
    let changes = template_changes(&sb.received);
    let approved = changes
        .iter()
        .find(|c| c["message_template_name"] == "login_code")
        .expect("login_code reviewed");
    assert_eq!(approved["event"], "APPROVED");
    assert_eq!(
        approved["message_template_id"]
            .as_u64()
            .map(|n| n.to_string()),
        Some(id.clone())
    );
    let refused = changes
        .iter()
        .find(|c| c["message_template_name"] == "reject_me")
        .expect("reject_me reviewed");
    assert_eq!(refused["event"], "REJECTED");

    assert_eq!(sb.send(&send).await.0, 200, "approved template can be sent");
    let (_, fetched) = sb
        .get(&format!("/v23.0/{}", rejected["id"].as_str().expect("id")))
        .await;
    assert_eq!(fetched["status"], "REJECTED");

    sb.control(
        &format!("templates/{id}/status"),
        json!({"status": "PAUSED"}),
    )
    .await;
    let (status, body) = sb.send(&send).await;
    assert_meta_error(status, &body, 400, 132015);

    let (status, body) = sb
        .graph(
            reqwest::Method::DELETE,
            &format!("{path}?name=login_code"),
            None,
        )
        .await;
    assert_eq!((status, body), (200, json!({"success": true})));
}

#[tokio::test]
async fn onboarding_calls_answer_like_meta() {
    let sb = spawn(test_config()).await;
    let config = SandboxConfig::demo();
    let signup = sb
        .control(
            "signup",
            json!({"waba": {"id": demo_ids::WABA_ID}, "business": {"id": demo_ids::BUSINESS_ID}}),
        )
        .await;
    let (status, token) = sb.exchange(signup["code"].as_str().expect("code")).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "bearer");
    assert!(
        token["access_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("EAA"))
    );

    let (_, debug) = sb
        .get(&format!(
            "/v23.0/debug_token?input_token={}",
            demo_ids::ACCESS_TOKEN
        ))
        .await;
    assert_eq!(debug["data"]["is_valid"], true);
    assert_eq!(
        debug["data"]["granular_scopes"][0]["target_ids"][0],
        demo_ids::WABA_ID
    );

    let apps = format!("/v23.0/{}/subscribed_apps", demo_ids::WABA_ID);
    let (status, body) = sb.graph(reqwest::Method::POST, &apps, None).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let (_, listed) = sb.graph(reqwest::Method::GET, &apps, None).await;
    assert_eq!(
        listed["data"][0]["whatsapp_business_api_data"]["id"],
        config.app_id
    );

    let register = format!("/v23.0/{}/register", demo_ids::PHONE_NUMBER_ID);
    let body = json!({"messaging_product": "whatsapp", "pin": "123456"});
    for _ in 0..10 {
        let (status, _) = sb
            .graph(reqwest::Method::POST, &register, Some(body.clone()))
            .await;
        assert_eq!(status, 200);
    }
    let (status, error) = sb
        .graph(reqwest::Method::POST, &register, Some(body.clone()))
        .await;
    assert_meta_error(status, &error, 400, 133016);
    sb.advance(72 * 3600).await;
    assert_eq!(
        sb.graph(reqwest::Method::POST, &register, Some(body))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn dropped_webhooks_still_move_the_message_on() {
    let sb = spawn(test_config()).await;
    sb.control(
        "faults",
        json!({"drop_webhooks": 1.0, "reorder_webhooks": true}),
    )
    .await;
    let (_, body) = sb.send(&welcome(CUSTOMER)).await;
    let wamid = body["messages"][0]["id"]
        .as_str()
        .expect("wamid")
        .to_owned();
    sb.advance(5).await;
    let mut last = Value::Null;
    for _ in 0..500 {
        sb.advance(1).await;
        last = sb.control_get(&format!("messages/{wamid}")).await;
        if last["status"] == "read" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last["status"], "read", "{last}");
    assert!(sb.received.all().is_empty(), "every POST dropped");
    let log = sb.control_get("webhooks").await;
    let log = log["data"].as_array().cloned().unwrap_or_default();
    assert!(!log.is_empty());
    assert!(log.iter().all(|d| d["outcome"] == "dropped"));
    sb.http
        .delete(format!("{}/sandbox/faults", sb.base))
        .send()
        .await
        .expect("clear faults");
    assert_eq!(sb.control_get("faults").await["drop_webhooks"], 0.0);
}
