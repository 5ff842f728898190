//! Embedded Signup v4's completion states (META_2026.md §1.3–1.5) and the number calls that
//! follow them: `POST /{waba}/phone_numbers`, `request_code`, `verify_code`, and `register`
//! refusing an unverified number.

use parley_sandbox::demo_ids;
use serde_json::{Value, json};

use super::{TestSandbox, assert_meta_error, eventually, spawn, test_config};

impl TestSandbox {
    async fn graph_post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v27.0/{path}", self.base))
            .bearer_auth(demo_ids::ACCESS_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("graph post");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    async fn control_status(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, Value) {
        let response = self
            .http
            .request(method, format!("{}/sandbox/{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }

    /// The `account_update` the partner's portfolio entry got for `waba`.
    fn partner_event(&self, waba: &str) -> Option<Value> {
        self.received.all().into_iter().find_map(|(body, signed)| {
            let entry = &body["entry"][0];
            let change = &entry["changes"][0];
            (signed
                && entry["id"] == demo_ids::PARTNER_BUSINESS_ID
                && change["field"] == "account_update"
                && change["value"]["waba_info"]["waba_id"] == waba)
                .then(|| change["value"].clone())
        })
    }
}

fn number_of(state: &Value, id: &str) -> Value {
    state["businesses"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|b| b["wabas"].as_array().cloned().unwrap_or_default())
        .flat_map(|w| w["phone_numbers"].as_array().cloned().unwrap_or_default())
        .find(|p| p["id"] == id)
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn every_completion_finishes_with_metas_event_and_announces_the_partner() {
    let sb = spawn(test_config()).await;
    let cases = [
        ("verified", "FINISH", true, "VERIFIED", "PARTNER_ADDED"),
        (
            "unverified",
            "FINISH",
            true,
            "NOT_VERIFIED",
            "PARTNER_ADDED",
        ),
        ("no_number", "FINISH", false, "", "PARTNER_ADDED"),
        (
            "app_only",
            "FINISH_GRANT_ONLY_API_ACCESS",
            true,
            "VERIFIED",
            "PARTNER_APP_INSTALLED",
        ),
        (
            "coexistence",
            "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING",
            false,
            "VERIFIED",
            "PARTNER_ADDED",
        ),
    ];
    for (completion, event, number_in_event, verification, partner) in cases {
        let signup = sb
            .control("signup", json!({"completion": completion}))
            .await;
        assert_eq!(signup["event"], event, "{completion}: {signup}");
        assert_eq!(signup["message"]["type"], "WA_EMBEDDED_SIGNUP");
        assert_eq!(signup["message"]["event"], event);
        let waba = signup["waba_id"].as_str().expect("waba").to_owned();
        assert_eq!(signup["message"]["data"]["waba_id"], waba.as_str());
        assert_eq!(
            signup["message"]["data"]["phone_number_id"].is_string(),
            number_in_event,
            "{completion}: {signup}"
        );
        let state = sb.control_get("state").await;
        match signup["phone_number_id"].as_str() {
            Some(phone) => {
                let number = number_of(&state, phone);
                assert_eq!(number["code_verification_status"], verification, "{number}");
                if completion == "coexistence" {
                    assert_eq!(number["is_on_biz_app"], true);
                    assert_eq!(number["status"], "CONNECTED");
                    assert_eq!(number["throughput_mps"], 20);
                    assert_eq!(signup["message"]["version"], 3);
                    assert_eq!(
                        signup["message"]["data"].as_object().map(|o| o.len()),
                        Some(1),
                        "only waba_id, as Meta's example"
                    );
                }
            }
            None => assert_eq!(completion, "no_number"),
        }
        eventually(&format!("{partner} for {completion}"), || {
            sb.partner_event(&waba).is_some()
        })
        .await;
        let value = sb.partner_event(&waba).expect("partner event");
        assert_eq!(value["event"], partner, "{value}");
        if partner == "PARTNER_APP_INSTALLED" {
            assert_eq!(value["waba_info"]["partner_app_id"], demo_ids::APP_ID);
        }
        let (status, token) = sb.exchange(signup["code"].as_str().expect("code")).await;
        assert_eq!(status, 200, "{completion}: {token}");
    }

    // The older name of the no-number finish, when asked for.
    sb.control("behaviour", json!({"no_number_event": "FINISH_ONLY_WABA"}))
        .await;
    let signup = sb
        .control("signup", json!({"completion": "no_number"}))
        .await;
    assert_eq!(signup["event"], "FINISH_ONLY_WABA");
    assert!(signup["phone_number_id"].is_null());

    // Bad completions and bad combinations are Meta's error 100, naming the choices.
    let (status, body) = sb
        .control_status(
            reqwest::Method::POST,
            "signup",
            json!({"completion": "maybe"}),
        )
        .await;
    assert_meta_error(status, &body, 400, 100);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no_number")
    );
    let (status, body) = sb
        .control_status(
            reqwest::Method::POST,
            "signup",
            json!({"completion": "no_number", "phone_number": {}}),
        )
        .await;
    assert_meta_error(status, &body, 400, 100);

    // Which extras each signup came with.
    let signups = sb.control_get("signups").await;
    let data = signups["data"].as_array().expect("signups");
    assert_eq!(data.len(), 6);
    assert!(
        data.iter()
            .all(|s| s["flavour"] == "v4" && s["session"] == "headless")
    );
    let legacy = sb
        .control(
            "signup",
            json!({"extras": {"setup": {}, "featureType": "", "sessionInfoVersion": "3"}}),
        )
        .await;
    assert_eq!(legacy["event"], "FINISH");
    let app_only = sb
        .control(
            "signup",
            json!({"extras": {"setup": {}, "features": [{"name": "app_only_install"}]}}),
        )
        .await;
    assert_eq!(app_only["event"], "FINISH_GRANT_ONLY_API_ACCESS");
    let signups = sb.control_get("signups").await;
    assert_eq!(signups["data"][6]["flavour"], "legacy");
    assert_eq!(signups["data"][7]["completion"], "app_only");
}

#[tokio::test]
async fn cancels_name_every_step_and_problem_reports_carry_metas_codes() {
    let sb = spawn(test_config()).await;
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
    let report = sb
        .control(
            "signup",
            json!({"report_problem": "Not a Business app number", "error_code": "2655095"}),
        )
        .await;
    assert_eq!(report["event"], "CANCEL");
    assert_eq!(report["data"]["error_code"], "2655095");
    assert!(report["data"]["session_id"].is_string());
    assert!(report["data"]["timestamp"].is_string());
    let (status, body) = sb
        .control_status(
            reqwest::Method::POST,
            "signup",
            json!({"report_problem": "x", "error_code": "42"}),
        )
        .await;
    assert_meta_error(status, &body, 400, 100);
}

#[tokio::test]
async fn an_unverified_number_is_verified_by_code_then_registered() {
    let sb = spawn(test_config()).await;
    let signup = sb
        .control("signup", json!({"completion": "unverified"}))
        .await;
    let phone = signup["phone_number_id"]
        .as_str()
        .expect("phone")
        .to_owned();

    let (status, number) = sb
        .get(&format!(
            "/v27.0/{phone}?fields=code_verification_status,is_on_biz_app,platform_type"
        ))
        .await;
    assert_eq!(status, 200, "{number}");
    assert_eq!(number["code_verification_status"], "NOT_VERIFIED");
    assert_eq!(number["is_on_biz_app"], false);
    assert_eq!(number["platform_type"], "CLOUD_API");

    // Register refuses it until it is verified.
    let register = json!({"messaging_product": "whatsapp", "pin": "123456"});
    let (status, body) = sb
        .graph_post(&format!("{phone}/register"), register.clone())
        .await;
    assert_meta_error(status, &body, 400, 133006);

    // No code yet: verify_code and the control endpoint say so.
    let (status, body) = sb
        .graph_post(&format!("{phone}/verify_code"), json!({"code": "123456"}))
        .await;
    assert_meta_error(status, &body, 400, 136025);
    let (status, body) = sb
        .control_status(
            reqwest::Method::GET,
            &format!("phone_numbers/{phone}/code"),
            Value::Null,
        )
        .await;
    assert_meta_error(status, &body, 400, 100);

    // request_code checks its parameters.
    let (status, body) = sb
        .graph_post(
            &format!("{phone}/request_code"),
            json!({"language": "en_US"}),
        )
        .await;
    assert_meta_error(status, &body, 400, 100);
    let (status, body) = sb
        .graph_post(
            &format!("{phone}/request_code"),
            json!({"code_method": "FAX", "language": "en_US"}),
        )
        .await;
    assert_meta_error(status, &body, 400, 100);
    // Query parameters work as in Meta's docs.
    let response = sb
        .http
        .post(format!(
            "{}/v27.0/{phone}/request_code?code_method=VOICE&language=pt_BR",
            sb.base
        ))
        .bearer_auth(demo_ids::ACCESS_TOKEN)
        .send()
        .await
        .expect("request_code");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({"success": true}));
    let sent = sb.control_get(&format!("phone_numbers/{phone}/code")).await;
    assert_eq!(sent["code_method"], "VOICE");
    assert_eq!(sent["language"], "pt_BR");
    let code = sent["code"].as_str().expect("code").to_owned();
    let state = sb.control_get("state").await;
    assert_eq!(state["verification_codes"][&phone]["code"], code.as_str());

    // A wrong code counts; five wrong codes void it.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let (status, body) = sb
            .graph_post(&format!("{phone}/verify_code"), json!({"code": wrong}))
            .await;
        assert_meta_error(status, &body, 400, 136025);
    }
    let (status, body) = sb
        .graph_post(&format!("{phone}/verify_code"), json!({"code": code}))
        .await;
    assert_meta_error(status, &body, 400, 136025);
    assert!(
        body["error"]["error_data"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("Too many")
    );

    // A new code; an expired one is refused.
    let (status, _) = sb
        .graph_post(
            &format!("{phone}/request_code"),
            json!({"code_method": "SMS", "language": "en_US"}),
        )
        .await;
    assert_eq!(status, 200);
    sb.advance(601).await;
    let code = sb.control_get(&format!("phone_numbers/{phone}/code")).await["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let (status, body) = sb
        .graph_post(&format!("{phone}/verify_code"), json!({"code": code}))
        .await;
    assert_meta_error(status, &body, 400, 136025);

    // The right code in time verifies; register then works; a verified number wants no code.
    let (status, _) = sb
        .graph_post(
            &format!("{phone}/request_code"),
            json!({"code_method": "SMS", "language": "en_US"}),
        )
        .await;
    assert_eq!(status, 200);
    let code = sb.control_get(&format!("phone_numbers/{phone}/code")).await["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let (status, body) = sb
        .graph_post(&format!("{phone}/verify_code"), json!({"code": code}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"success": true, "id": phone}));
    let (_, number) = sb
        .get(&format!("/v27.0/{phone}?fields=code_verification_status"))
        .await;
    assert_eq!(number["code_verification_status"], "VERIFIED");
    let (status, body) = sb.graph_post(&format!("{phone}/register"), register).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sb
        .graph_post(
            &format!("{phone}/request_code"),
            json!({"code_method": "SMS", "language": "en_US"}),
        )
        .await;
    assert_meta_error(status, &body, 400, 136024);
}

#[tokio::test]
async fn a_number_added_after_signup_is_verified_and_registered() {
    let sb = spawn(test_config()).await;
    let signup = sb
        .control("signup", json!({"completion": "no_number"}))
        .await;
    let waba = signup["waba_id"].as_str().expect("waba").to_owned();
    let (_, listed) = sb.get(&format!("/v27.0/{waba}/phone_numbers")).await;
    assert_eq!(listed["data"], json!([]));

    // Meta's example body.
    let add = json!({"cc": "1", "phone_number": "14195551518", "verified_name": "Lucky Shrub"});
    let (status, body) = sb
        .graph_post(&format!("{waba}/phone_numbers"), add.clone())
        .await;
    assert_eq!(status, 200, "{body}");
    let phone = body["id"].as_str().expect("id").to_owned();
    let (_, number) = sb
        .get(&format!("/v27.0/{phone}?fields=display_phone_number,verified_name,code_verification_status,status"))
        .await;
    assert_eq!(number["display_phone_number"], "+1 4195551518");
    assert_eq!(number["verified_name"], "Lucky Shrub");
    assert_eq!(number["code_verification_status"], "NOT_VERIFIED");
    assert_eq!(number["status"], "PENDING");
    let (_, listed) = sb.get(&format!("/v27.0/{waba}/phone_numbers")).await;
    assert_eq!(listed["data"][0]["id"], phone.as_str());

    // The same number again, a missing field, a bad name: error 100.
    let (status, body) = sb.graph_post(&format!("{waba}/phone_numbers"), add).await;
    assert_meta_error(status, &body, 400, 100);
    let (status, body) = sb
        .graph_post(
            &format!("{waba}/phone_numbers"),
            json!({"cc": "1", "verified_name": "Lucky"}),
        )
        .await;
    assert_meta_error(status, &body, 400, 100);
    let (status, body) = sb
        .graph_post(
            &format!("{waba}/phone_numbers"),
            json!({"cc": "1", "phone_number": "4195551519", "verified_name": "My WhatsApp shop"}),
        )
        .await;
    assert_meta_error(status, &body, 400, 100);

    // Six code requests within an hour: the sixth is 136024.
    for _ in 0..5 {
        let (status, _) = sb
            .graph_post(
                &format!("{phone}/request_code"),
                json!({"code_method": "SMS", "language": "en_US"}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, body) = sb
        .graph_post(
            &format!("{phone}/request_code"),
            json!({"code_method": "SMS", "language": "en_US"}),
        )
        .await;
    assert_meta_error(status, &body, 400, 136024);
    let code = sb.control_get(&format!("phone_numbers/{phone}/code")).await["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let (status, _) = sb
        .graph_post(&format!("{phone}/verify_code"), json!({"code": code}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = sb
        .graph_post(
            &format!("{phone}/register"),
            json!({"messaging_product": "whatsapp", "pin": "123456"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, number) = sb.get(&format!("/v27.0/{phone}?fields=status")).await;
    assert_eq!(number["status"], "CONNECTED");
}
