//! Embedded Signup: `/sandbox/signup`, codes and their exchange, the review and limit
//! webhooks, the dialog over plain HTTP, and one headless-browser run of SDK + dialog.

use std::collections::HashMap;

use parley_sandbox::demo_ids;
use serde_json::{Value, json};

use super::{Received, TestSandbox, assert_meta_error, eventually, spawn, test_config};

impl TestSandbox {
    /// `GET /v23.0/oauth/access_token` with the demo app's credentials.
    pub(crate) async fn exchange(&self, code: &str) -> (u16, Value) {
        self.exchange_with(&[("code", code)]).await
    }

    async fn exchange_with(&self, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut query = vec![
            ("client_id", demo_ids::APP_ID),
            ("client_secret", demo_ids::APP_SECRET),
        ];
        for (k, v) in extra {
            if let Some(slot) = query.iter_mut().find(|(key, _)| key == k) {
                slot.1 = v;
            } else {
                query.push((k, v));
            }
        }
        let response = self
            .http
            .get(format!("{}/v23.0/oauth/access_token", self.base))
            .query(&query)
            .send()
            .await
            .expect("exchange");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    /// A Graph call with the given token.
    async fn graph_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("graph request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    /// A control POST that may fail: status and body.
    async fn control_raw(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/sandbox/{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }
}

/// Management changes received so far: (entry id, field, value, signature ok).
fn changes(received: &Received) -> Vec<(String, String, Value, bool)> {
    received
        .all()
        .iter()
        .filter_map(|(body, signed)| {
            let entry = &body["entry"][0];
            let change = &entry["changes"][0];
            let field = change["field"].as_str()?;
            (field != "messages").then(|| {
                (
                    entry["id"].as_str().unwrap_or_default().to_owned(),
                    field.to_owned(),
                    change["value"].clone(),
                    *signed && entry["time"].is_i64(),
                )
            })
        })
        .collect()
}

fn has_change(received: &Received, entry: &str, field: &str) -> bool {
    changes(received)
        .iter()
        .any(|(id, f, _, _)| id == entry && f == field)
}

fn change_value(received: &Received, entry: &str, field: &str) -> Value {
    changes(received)
        .into_iter()
        .find(|(id, f, _, _)| id == entry && f == field)
        .map(|(_, _, value, signed)| {
            assert!(signed, "{field} webhook must be signed and carry time");
            value
        })
        .unwrap_or_else(|| panic!("no {field} webhook for {entry}"))
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {value}"))
}

#[tokio::test]
async fn json_signup_creates_everything_and_its_code_becomes_a_working_token() {
    let sb = spawn(test_config()).await;
    let signup = sb
        .control(
            "signup",
            json!({
                "business": {"name": "Acme GmbH", "website": "https://acme.example", "country": "DE", "address": "Hauptstr. 1, Berlin"},
                "waba": {"name": "Acme Support", "timezone_id": "47"},
                "profile": {"display_name": "Acme", "vertical": "RETAIL"},
                "phone_number": {"display_phone_number": "+49 30 1234567"}
            }),
        )
        .await;
    let (code, waba, phone, business) = (
        str_of(&signup, "code"),
        str_of(&signup, "waba_id"),
        str_of(&signup, "phone_number_id"),
        str_of(&signup, "business_id"),
    );

    let (status, token) = sb.exchange(code).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "bearer");
    let token = str_of(&token, "access_token").to_owned();

    let get = reqwest::Method::GET;
    let (status, account) = sb
        .graph_as(&token, get.clone(), &format!("/v23.0/{waba}"), None)
        .await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["name"], "Acme Support");
    // The time zone chosen at signup (Europe/Berlin), a string as Meta writes it, by default.
    assert_eq!(account["timezone_id"], "47", "{account}");
    assert_eq!(account["account_review_status"], "PENDING");
    assert_eq!(account["business_verification_status"], "not_verified");

    let (_, number) = sb
        .graph_as(&token, get.clone(), &format!("/v23.0/{phone}?fields=display_phone_number,verified_name,name_status,whatsapp_business_manager_messaging_limit,throughput,quality_rating,is_pin_enabled"), None)
        .await;
    assert_eq!(number["display_phone_number"], "+49 30 1234567");
    assert_eq!(number["verified_name"], "Acme");
    assert_eq!(number["name_status"], "PENDING_REVIEW");
    assert_eq!(
        number["whatsapp_business_manager_messaging_limit"],
        "TIER_250"
    );
    assert_eq!(number["throughput"]["level"], "STANDARD");
    assert_eq!(number["is_pin_enabled"], false);

    let (_, listed) = sb
        .graph_as(
            &token,
            get.clone(),
            &format!("/v23.0/{waba}/phone_numbers"),
            None,
        )
        .await;
    assert_eq!(listed["data"][0]["id"], phone);
    let (_, portfolio) = sb
        .graph_as(
            &token,
            get.clone(),
            &format!("/v23.0/{business}?fields=name,verification_status"),
            None,
        )
        .await;
    assert_eq!(portfolio["name"], "Acme GmbH");
    assert_eq!(portfolio["verification_status"], "not_verified");
    // Website and country are no fields of Meta's Business node: the control API shows them.
    let world = sb.control_get("state").await;
    let stored = world["businesses"]
        .as_array()
        .expect("businesses")
        .iter()
        .find(|b| b["id"] == business)
        .cloned()
        .expect("the new portfolio");
    assert_eq!(stored["country"], "DE");
    let (_, profile) = sb
        .graph_as(
            &token,
            get.clone(),
            &format!("/v23.0/{phone}/whatsapp_business_profile"),
            None,
        )
        .await;
    assert_eq!(profile["data"][0]["vertical"], "RETAIL");

    // The new token also works on the demo objects (kept simple), and onboarding calls work.
    let (status, _) = sb
        .graph_as(
            &token,
            get.clone(),
            &format!("/v23.0/{}", demo_ids::WABA_ID),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = sb
        .graph_as(
            &token,
            reqwest::Method::POST,
            &format!("/v23.0/{waba}/subscribed_apps"),
            None,
        )
        .await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let (status, _) = sb
        .graph_as(
            &token,
            reqwest::Method::POST,
            &format!("/v23.0/{phone}/register"),
            Some(json!({"messaging_product": "whatsapp", "pin": "246810"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, number) = sb
        .graph_as(
            &token,
            get.clone(),
            &format!("/v23.0/{phone}?fields=status,is_pin_enabled"),
            None,
        )
        .await;
    assert_eq!(number["status"], "CONNECTED");
    assert_eq!(number["is_pin_enabled"], true);

    // debug_token: valid, both scopes, the new WABA first.
    let (status, debug) = sb
        .graph_as(
            &format!("{}|{}", demo_ids::APP_ID, demo_ids::APP_SECRET),
            get.clone(),
            &format!("/v23.0/debug_token?input_token={token}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{debug}");
    let data = &debug["data"];
    assert_eq!(data["is_valid"], true);
    assert_eq!(data["app_id"], demo_ids::APP_ID);
    assert_eq!(data["application"], "Parley");
    let scopes: Vec<&str> = data["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(scopes.contains(&"whatsapp_business_management"));
    assert!(scopes.contains(&"whatsapp_business_messaging"));
    for granular in data["granular_scopes"].as_array().expect("granular") {
        assert_eq!(granular["target_ids"][0], waba, "{granular}");
    }
    assert_eq!(
        data["granular_scopes"][0]["scope"],
        "whatsapp_business_management"
    );

    // account_update PARTNER_ADDED, to the partner's business, signed.
    eventually("PARTNER_ADDED webhook", || {
        has_change(
            &sb.received,
            demo_ids::PARTNER_BUSINESS_ID,
            "account_update",
        )
    })
    .await;
    let added = change_value(
        &sb.received,
        demo_ids::PARTNER_BUSINESS_ID,
        "account_update",
    );
    assert_eq!(
        added,
        json!({"event": "PARTNER_ADDED", "waba_info": {"waba_id": waba, "owner_business_id": business}})
    );
}

#[tokio::test]
async fn codes_are_single_use_expire_after_30_seconds_and_refuse_redirect_uri() {
    let sb = spawn(test_config()).await;
    let code = str_of(&sb.control("signup", json!({})).await, "code").to_owned();

    let (status, error) = sb
        .exchange_with(&[("code", &code), ("redirect_uri", "https://parley.example/")])
        .await;
    assert_meta_error(status, &error, 400, 100);
    assert!(
        str_of(&error["error"], "message").starts_with("Error validating verification code"),
        "{error}"
    );
    let (status, error) = sb
        .exchange_with(&[("code", &code), ("client_secret", "wrong")])
        .await;
    assert_meta_error(status, &error, 400, 1);
    assert_eq!(error["error"]["message"], "Error validating client secret.");
    assert_eq!(error["error"]["type"], "OAuthException");
    let (status, error) = sb.exchange("AQnot-a-code").await;
    assert_meta_error(status, &error, 400, 100);

    // The refused attempts did not consume it.
    let (status, token) = sb.exchange(&code).await;
    assert_eq!(status, 200, "{token}");
    let (status, error) = sb.exchange(&code).await;
    assert_meta_error(status, &error, 400, 100);
    assert_eq!(
        error["error"]["message"],
        "This authorization code has been used."
    );
    assert!(error["error"].get("error_subcode").is_none());

    let late = str_of(&sb.control("signup", json!({})).await, "code").to_owned();
    sb.advance(31).await;
    let (status, error) = sb.exchange(&late).await;
    assert_meta_error(status, &error, 400, 100);
    assert_eq!(
        error["error"]["message"],
        "This authorization code has expired."
    );
    assert_eq!(error["error"]["type"], "OAuthException");

    // Unknown tokens are still refused.
    let (status, error) = sb
        .graph_as(
            "EAASnotatoken",
            reqwest::Method::GET,
            &format!("/v23.0/{}", demo_ids::WABA_ID),
            None,
        )
        .await;
    assert_meta_error(status, &error, 401, 190);
}

#[tokio::test]
async fn json_signup_choices_are_checked_and_cancels_are_described() {
    let sb = spawn(test_config()).await;
    // An existing portfolio with a new WABA and a default profile.
    let signup = sb
        .control(
            "signup",
            json!({"business": {"id": demo_ids::BUSINESS_ID}, "waba": {"name": "Second line"}}),
        )
        .await;
    assert_eq!(signup["business_id"], demo_ids::BUSINESS_ID);
    let state = sb.control_get("state").await;
    let wabas = state["businesses"][0]["wabas"].as_array().expect("wabas");
    assert_eq!(wabas.len(), 2);
    assert_eq!(wabas[1]["account_review_status"], "PENDING");
    assert_eq!(wabas[1]["timezone_id"], "1", "Los Angeles unless chosen");
    assert_eq!(wabas[1]["phone_numbers"][0]["verified_name"], "Second line");
    assert_eq!(
        wabas[1]["phone_numbers"][0]["name_status"],
        "PENDING_REVIEW"
    );

    for (body, hint) in [
        (
            json!({"business": {"name": "Acme", "website": "acme", "country": "DE"}}),
            "website",
        ),
        (
            json!({"business": {"name": " ", "website": "https://acme.example", "country": "DE"}}),
            "business_name",
        ),
        (json!({"business": {"id": "999"}}), "999"),
        (
            json!({"waba": {"name": "Acme", "timezone_id": "Europe/Berlin"}}),
            "timezone_id",
        ),
        (
            json!({"waba": {"name": "Acme", "timezone_id": "0"}}),
            "timezone_id",
        ),
        (
            json!({"business": {"id": demo_ids::BUSINESS_ID}, "waba": {"id": demo_ids::WABA_ID, "timezone_id": "47"}}),
            "time zone",
        ),
        (
            json!({"business": {"id": demo_ids::BUSINESS_ID, "name": "x"}}),
            "either",
        ),
        (
            json!({"waba": {"id": demo_ids::WABA_ID}}),
            "another business portfolio",
        ),
        (
            json!({"profile": {"display_name": "My WhatsApp shop"}}),
            "display_name",
        ),
        (
            json!({"profile": {"display_name": "Fine", "vertical": "SPACESHIPS"}}),
            "vertical",
        ),
        (
            json!({"phone_number": {"display_phone_number": demo_ids::DISPLAY_PHONE_NUMBER}}),
            "already registered",
        ),
        (
            json!({"phone_number": {"display_phone_number": "12"}}),
            "international format",
        ),
        (json!({"surprise": true}), "unknown field"),
        (json!({"cancel_at": "QUOTAS"}), "finish"),
        (json!({"cancel_at": "NOWHERE"}), "PHONE_NUMBER_SETUP"),
    ] {
        let (status, error) = sb.control_raw("signup", body.clone()).await;
        assert_meta_error(status, &error, 400, 100);
        assert!(error.to_string().contains(hint), "{body} → {error}");
    }

    for step in [
        "BUSINESS_ACCOUNT_SELECTION",
        "WABA_PHONE_PROFILE_PICKER",
        "WHATSAPP_BUSINESS_PROFILE_SETUP",
        "PHONE_NUMBER_SETUP",
        "PHONE_NUMBER_VERIFICATION",
        "PERMISSIONS",
    ] {
        let cancel = sb.control("signup", json!({"cancel_at": step})).await;
        assert_eq!(
            cancel,
            json!({"data": {"current_step": step}, "type": "WA_EMBEDDED_SIGNUP", "event": "CANCEL", "version": 3})
        );
    }
    let problem = sb
        .control("signup", json!({"report_problem": "The page froze"}))
        .await;
    assert_eq!(problem["event"], "CANCEL");
    assert_eq!(problem["data"]["error_message"], "The page froze");
    assert!(problem["data"]["error_code"].is_string());
    assert!(problem["data"]["session_id"].is_string());
    assert!(problem["data"]["timestamp"].is_string());
    // Cancels create nothing.
    let after = sb.control_get("state").await;
    assert_eq!(after["businesses"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn review_approves_after_the_delay_or_rejects_on_demand() {
    let mut config = test_config();
    config.behaviour.review_delay_ms = 60_000;
    let sb = spawn(config).await;
    let signup = sb.control("signup", json!({})).await;
    let waba = str_of(&signup, "waba_id").to_owned();
    let phone = str_of(&signup, "phone_number_id").to_owned();

    sb.advance(59).await;
    eventually("PARTNER_ADDED", || {
        has_change(
            &sb.received,
            demo_ids::PARTNER_BUSINESS_ID,
            "account_update",
        )
    })
    .await;
    assert!(!has_change(&sb.received, &waba, "account_review_update"));
    let (_, account) = sb.get(&format!("/v23.0/{waba}")).await;
    assert_eq!(account["account_review_status"], "PENDING");

    sb.advance(2).await;
    eventually("account_review_update", || {
        has_change(&sb.received, &waba, "account_review_update")
    })
    .await;
    assert_eq!(
        change_value(&sb.received, &waba, "account_review_update"),
        json!({"decision": "APPROVED"})
    );
    let (_, account) = sb.get(&format!("/v23.0/{waba}")).await;
    assert_eq!(account["account_review_status"], "APPROVED");
    eventually("phone_number_name_update", || {
        has_change(&sb.received, &waba, "phone_number_name_update")
    })
    .await;
    let name = change_value(&sb.received, &waba, "phone_number_name_update");
    assert_eq!(name["decision"], "APPROVED");
    let (_, number) = sb.get(&format!("/v23.0/{phone}?fields=name_status")).await;
    assert_eq!(number["name_status"], "APPROVED");

    // Rejected on demand, before the delay: the late automatic review changes nothing.
    let other = sb.control("signup", json!({})).await;
    let other_waba = str_of(&other, "waba_id").to_owned();
    let decided = sb
        .control(
            "review",
            json!({"waba_id": other_waba, "decision": "REJECTED", "reason": "SCAM"}),
        )
        .await;
    assert_eq!(decided["account_review_status"], "REJECTED");
    eventually("rejection", || {
        has_change(&sb.received, &other_waba, "account_review_update")
    })
    .await;
    assert_eq!(
        change_value(&sb.received, &other_waba, "account_review_update"),
        json!({"decision": "REJECTED"})
    );
    eventually("violation", || {
        has_change(&sb.received, &other_waba, "account_update")
    })
    .await;
    assert_eq!(
        change_value(&sb.received, &other_waba, "account_update"),
        json!({"event": "ACCOUNT_VIOLATION", "violation_info": {"violation_type": "SCAM"}})
    );
    sb.advance(120).await;
    sb.advance(1).await;
    let (_, account) = sb.get(&format!("/v23.0/{other_waba}")).await;
    assert_eq!(account["account_review_status"], "REJECTED");
    let reviews = changes(&sb.received)
        .into_iter()
        .filter(|(id, f, _, _)| *id == other_waba && f == "account_review_update")
        .count();
    assert_eq!(reviews, 1);

    let (status, error) = sb
        .control_raw("review", json!({"waba_id": waba, "decision": "MAYBE"}))
        .await;
    assert_meta_error(status, &error, 400, 100);
    let (status, error) = sb
        .control_raw("review", json!({"waba_id": "1", "decision": "APPROVED"}))
        .await;
    assert_meta_error(status, &error, 400, 100);
}

#[tokio::test]
async fn limit_changes_send_capability_and_quality_webhooks() {
    let sb = spawn(test_config()).await;
    let signup = sb.control("signup", json!({})).await;
    let waba = str_of(&signup, "waba_id").to_owned();
    let phone = str_of(&signup, "phone_number_id").to_owned();

    let changed = sb
        .control(
            &format!("phone_numbers/{phone}/limit"),
            json!({"limit": "TIER_2K"}),
        )
        .await;
    assert_eq!(
        changed,
        json!({"id": phone, "old_limit": "TIER_250", "current_limit": "TIER_2K"})
    );
    let (_, number) = sb
        .get(&format!(
            "/v23.0/{phone}?fields=whatsapp_business_manager_messaging_limit"
        ))
        .await;
    assert_eq!(
        number["whatsapp_business_manager_messaging_limit"],
        "TIER_2K"
    );

    eventually("capability", || {
        has_change(&sb.received, &waba, "business_capability_update")
    })
    .await;
    // The current (v24+) shape: the portfolio's limit only, no per-phone legacy fields.
    let capability = change_value(&sb.received, &waba, "business_capability_update");
    assert_eq!(
        capability,
        json!({"max_daily_conversations_per_business": "TIER_2K", "max_phone_numbers_per_waba": 25})
    );
    eventually("quality", || {
        has_change(&sb.received, &waba, "phone_number_quality_update")
    })
    .await;
    let quality = change_value(&sb.received, &waba, "phone_number_quality_update");
    assert_eq!(quality["max_daily_conversations_per_business"], "TIER_2K");
    assert!(quality.get("current_limit").is_none(), "{quality}");
    assert!(quality.get("old_limit").is_none(), "{quality}");
    assert_eq!(quality["event"], "ONBOARDING");
    let state = sb.control_get("state").await;
    let display = state["businesses"]
        .as_array()
        .expect("businesses")
        .iter()
        .flat_map(|b| b["wabas"].as_array().cloned().unwrap_or_default())
        .find(|w| w["id"] == waba)
        .map(|w| w["phone_numbers"][0]["display_phone_number"].clone())
        .expect("number");
    let digits: String = display
        .as_str()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert_eq!(quality["display_phone_number"], digits);

    let (status, error) = sb
        .control_raw(
            &format!("phone_numbers/{phone}/limit"),
            json!({"limit": "TIER_1K"}),
        )
        .await;
    assert_meta_error(status, &error, 400, 100);
    let (status, error) = sb
        .control_raw("phone_numbers/1/limit", json!({"limit": "TIER_2K"}))
        .await;
    assert_meta_error(status, &error, 400, 100);
}

#[tokio::test]
async fn register_with_another_pin_is_133005() {
    let sb = spawn(test_config()).await;
    let signup = sb.control("signup", json!({})).await;
    let phone = str_of(&signup, "phone_number_id").to_owned();
    let register = format!("/v23.0/{phone}/register");
    let pin = |pin: &str| Some(json!({"messaging_product": "whatsapp", "pin": pin}));
    let post = reqwest::Method::POST;
    assert_eq!(
        sb.graph(post.clone(), &register, pin("111111")).await.0,
        200
    );
    let (status, error) = sb.graph(post.clone(), &register, pin("222222")).await;
    assert_meta_error(status, &error, 400, 133005);
    assert_eq!(
        sb.graph(post.clone(), &register, pin("111111")).await.0,
        200
    );
    // Setting the PIN (POST /{phone} {"pin"}) makes the new one the right one.
    let (status, _) = sb
        .graph(
            post.clone(),
            &format!("/v23.0/{phone}"),
            Some(json!({"pin": "222222"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        sb.graph(post.clone(), &register, pin("222222")).await.0,
        200
    );
}

/// Follows the dialog's forms over plain HTTP: what a browser would post.
struct DialogClient {
    http: reqwest::Client,
    base: String,
    session: String,
}

impl DialogClient {
    async fn open(sb: &TestSandbox) -> (DialogClient, String) {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .expect("client");
        let response = http
            .get(format!("{}/dialog/embedded_signup", sb.base))
            .query(&[
                ("app_id", demo_ids::APP_ID),
                ("config_id", "1234"),
                ("origin", "http://console.example"),
                (
                    "extras",
                    r#"{"setup":{},"featureType":"","sessionInfoVersion":"3"}"#,
                ),
            ])
            .send()
            .await
            .expect("open dialog");
        let url = response.url().clone();
        let page = response.text().await.expect("page");
        let session = url
            .path()
            .rsplit('/')
            .next()
            .expect("session id")
            .to_owned();
        (
            DialogClient {
                http,
                base: sb.base.clone(),
                session,
            },
            page,
        )
    }

    async fn post(&self, fields: &[(&str, &str)]) -> String {
        let form: HashMap<&str, &str> = fields.iter().copied().collect();
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.http
            .post(format!(
                "{}/dialog/embedded_signup/{}",
                self.base, self.session
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("post form")
            .text()
            .await
            .expect("page")
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn step_of(page: &str) -> &str {
    page.split("data-step=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("")
}

#[tokio::test]
async fn dialog_forms_walk_every_screen_and_finish_with_a_code() {
    let sb = spawn(test_config()).await;
    let (dialog, page) = DialogClient::open(&sb).await;
    assert_eq!(step_of(&page), "LOGIN");
    assert!(page.contains("Alex Example"));

    let page = dialog
        .post(&[
            ("step", "LOGIN"),
            ("action", "login_other"),
            ("person_name", ""),
        ])
        .await;
    assert!(page.contains("es-error-person_name"), "{page}");
    let page = dialog
        .post(&[
            ("step", "LOGIN"),
            ("action", "login_other"),
            ("person_name", "Sam Tester"),
        ])
        .await;
    assert_eq!(step_of(&page), "GET_STARTED");
    assert!(page.contains("Connect your account to Parley"));
    assert!(page.contains("Create and manage message templates"));
    let page = dialog
        .post(&[("step", "GET_STARTED"), ("action", "next")])
        .await;
    // Phone Number First: the number and its code before the portfolio.
    assert_eq!(step_of(&page), "PHONE_NUMBER_SETUP");
    assert!(page.contains(&format!("es-phone-existing-{}", demo_ids::PHONE_NUMBER_ID)));
    assert!(page.contains("es-phone-business-app"));
    assert!(page.contains("es-phone-later"));
    let page = dialog
        .post(&[
            ("step", "PHONE_NUMBER_SETUP"),
            ("action", "next"),
            ("phone_choice", "own"),
            ("phone_number", "+55 11 91234-5678"),
        ])
        .await;
    assert_eq!(step_of(&page), "PHONE_NUMBER_VERIFICATION");
    let page = dialog
        .post(&[
            ("step", "PHONE_NUMBER_VERIFICATION"),
            ("action", "next"),
            ("verification_code", "x"),
        ])
        .await;
    assert!(page.contains("es-error-verification_code"));
    let code = page
        .split("id=\"es-sandbox-code\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("sandbox code")
        .to_owned();
    let page = dialog
        .post(&[
            ("step", "PHONE_NUMBER_VERIFICATION"),
            ("action", "next"),
            ("verification_code", &code),
        ])
        .await;
    assert_eq!(step_of(&page), "BUSINESS_ACCOUNT_SELECTION");
    assert!(page.contains(&format!("es-business-{}", demo_ids::BUSINESS_ID)));

    let business = |name: &'static str, website: &'static str| {
        vec![
            ("step", "BUSINESS_ACCOUNT_SELECTION"),
            ("action", "next"),
            ("business_choice", "new"),
            ("business_name", name),
            ("website", website),
            ("country", "BR"),
            ("address", ""),
        ]
    };
    let page = dialog.post(&business("", "not a url")).await;
    assert_eq!(step_of(&page), "BUSINESS_ACCOUNT_SELECTION");
    assert!(page.contains("id=\"es-error-business_name\""), "{page}");
    assert!(page.contains("id=\"es-error-website\""));
    assert!(page.contains("not a url"), "the typed values stay");
    let page = dialog
        .post(&business("Loja Azul", "https://loja.example"))
        .await;
    assert_eq!(step_of(&page), "WABA_PHONE_PROFILE_PICKER");
    assert!(
        page.contains("value=\"Loja Azul\""),
        "WABA name defaults to the company"
    );

    // Back and forth keeps the choice.
    let page = dialog
        .post(&[("step", "WABA_PHONE_PROFILE_PICKER"), ("action", "back")])
        .await;
    assert_eq!(step_of(&page), "BUSINESS_ACCOUNT_SELECTION");
    assert!(page.contains("value=\"https://loja.example\""));
    let page = dialog
        .post(&business("Loja Azul", "https://loja.example"))
        .await;
    assert_eq!(step_of(&page), "WABA_PHONE_PROFILE_PICKER");

    // A new WABA needs a time zone from Meta's list (Los Angeles, "1", preselected).
    assert!(
        page.contains(r#"<option value="1" selected>America/Los_Angeles</option>"#),
        "{page}"
    );
    assert!(page.contains(r#"<option value="25">America/Sao_Paulo</option>"#));
    for zone in [None, Some("0"), Some("4999"), Some("x")] {
        let mut form = vec![
            ("step", "WABA_PHONE_PROFILE_PICKER"),
            ("action", "next"),
            ("waba_choice", "new"),
            ("waba_name", "Loja Azul Atendimento"),
        ];
        form.extend(zone.map(|z| ("waba_timezone", z)));
        let page = dialog.post(&form).await;
        assert_eq!(step_of(&page), "WABA_PHONE_PROFILE_PICKER", "{zone:?}");
        assert!(page.contains("id=\"es-error-waba_timezone\""), "{zone:?}");
    }
    let page = dialog
        .post(&[
            ("step", "WABA_PHONE_PROFILE_PICKER"),
            ("action", "next"),
            ("waba_choice", "new"),
            ("waba_name", "Loja Azul Atendimento"),
            ("waba_timezone", "25"),
        ])
        .await;
    assert_eq!(step_of(&page), "WHATSAPP_BUSINESS_PROFILE_SETUP");
    let page = dialog
        .post(&[
            ("step", "WHATSAPP_BUSINESS_PROFILE_SETUP"),
            ("action", "next"),
            ("display_name", "Loja Azul"),
            ("vertical", "RETAIL"),
        ])
        .await;
    assert_eq!(step_of(&page), "PERMISSIONS");
    assert!(page.contains("Manage Loja Azul Atendimento"));

    // Finishing before the final screen is refused.
    let early = dialog
        .http
        .post(format!(
            "{}/dialog/embedded_signup/{}/finish",
            sb.base, dialog.session
        ))
        .send()
        .await
        .expect("finish");
    assert_eq!(early.status().as_u16(), 400);

    let page = dialog
        .post(&[("step", "PERMISSIONS"), ("action", "next")])
        .await;
    assert_eq!(step_of(&page), "CONFIRMATION");
    assert!(page.contains("+55 11 91234-5678"));
    assert!(
        !page.contains("id=\"es-back\""),
        "no way back once connected"
    );
    let page = dialog
        .post(&[("step", "CONFIRMATION"), ("action", "next")])
        .await;
    assert_eq!(step_of(&page), "QUOTAS");
    assert!(page.contains("250 conversations"));
    assert!(page.contains("Unlimited"));

    let finish = |dialog: &DialogClient| {
        dialog
            .http
            .post(format!(
                "{}/dialog/embedded_signup/{}/finish",
                dialog.base, dialog.session
            ))
            .send()
    };
    let response = finish(&dialog).await.expect("finish");
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    let result: Value = response.json().await.expect("json");
    let again: Value = finish(&dialog)
        .await
        .expect("finish")
        .json()
        .await
        .expect("json");
    assert_eq!(result, again, "finishing twice answers the same");
    assert_eq!(result["message"]["type"], "WA_EMBEDDED_SIGNUP");
    assert_eq!(result["message"]["event"], "FINISH");
    assert_eq!(result["message"]["data"]["waba_id"], result["waba_id"]);
    assert_eq!(result["response"]["status"], "connected");
    assert_eq!(result["response"]["authResponse"]["code"], result["code"]);

    let (status, token) = sb.exchange(str_of(&result, "code")).await;
    assert_eq!(status, 200, "{token}");
    let state = sb.control_get("state").await;
    let created = state["businesses"]
        .as_array()
        .expect("businesses")
        .iter()
        .find(|b| b["id"] == result["business_id"])
        .cloned()
        .expect("new business");
    assert_eq!(created["name"], "Loja Azul");
    assert_eq!(created["country"], "BR");
    assert_eq!(created["wabas"][0]["name"], "Loja Azul Atendimento");
    // The picked time zone is the WABA's `timezone_id`, a string of digits as Meta writes it.
    let access = str_of(&token, "access_token").to_owned();
    let (status, waba) = sb
        .graph_as(
            &access,
            reqwest::Method::GET,
            &format!(
                "/v23.0/{}?fields=id,timezone_id",
                str_of(&result, "waba_id")
            ),
            None,
        )
        .await;
    assert_eq!(status, 200, "{waba}");
    assert_eq!(waba["timezone_id"], "25", "{waba}");
    assert_eq!(
        created["wabas"][0]["phone_numbers"][0]["verified_name"],
        "Loja Azul"
    );

    // A wrong app id or an unknown session is an error page, not a crash.
    let wrong = reqwest::get(format!(
        "{}/dialog/embedded_signup?app_id=1&origin=http://x",
        sb.base
    ))
    .await
    .expect("get");
    assert_eq!(wrong.status().as_u16(), 400);
    let gone = reqwest::get(format!("{}/dialog/embedded_signup/nope", sb.base))
        .await
        .expect("get");
    assert_eq!(gone.status().as_u16(), 404);
}

#[tokio::test]
async fn sdk_is_served_as_javascript() {
    let sb = spawn(test_config()).await;
    for path in ["/sdk.js", "/en_US/sdk.js"] {
        let response = reqwest::get(format!("{}{path}", sb.base))
            .await
            .expect("sdk");
        assert_eq!(response.status().as_u16(), 200);
        assert!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("application/javascript"))
        );
        let text = response.text().await.expect("text");
        assert!(text.contains("fbAsyncInit"));
        assert!(text.contains("WA_EMBEDDED_SIGNUP"));
    }
}

#[path = "browser.rs"]
mod browser;
