//! Embedded Signup v4's completion states on Parley's side (META_2026.md §1.3–1.5): an
//! unverified number verified with the code typed in Parley, a sign-up without a number that
//! gets one, a WhatsApp Business app number (no registration), an app-only install, and
//! Meta's `PARTNER_ADDED` webhook completing or creating the platform, with both paths ending
//! as one platform.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_configured};

fn step<'a>(platform: &'a Value, name: &str) -> &'a Value {
    platform["onboarding"]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["step"] == name))
        .unwrap_or_else(|| panic!("no step {name}: {platform}"))
}

impl TestApp {
    /// `POST /sandbox/signup` with a completion state: what the dialog hands the page.
    pub async fn sandbox_signup_as(&self, company: &str, completion: &str) -> Value {
        let mut body = json!({
            "business": {"name": company, "website": "https://example.com", "country": "DE"},
            "waba": {"name": format!("{company} WhatsApp")},
            "completion": completion,
        });
        if completion != "no_number" {
            body["profile"] = json!({"display_name": company, "vertical": "RETAIL"});
        }
        self.sandbox_post("/sandbox/signup", &body).await
    }

    /// Posts what the page received: the code and the message's event and data.
    pub async fn post_finish(&self, signup: &Value) -> (u16, Value) {
        let data = &signup["message"]["data"];
        let body = json!({
            "code": signup["code"], "event": signup["message"]["event"],
            "waba_id": data["waba_id"], "phone_number_id": data["phone_number_id"],
            "business_id": data["business_id"],
        });
        self.api_call(
            Method::POST,
            "/api/v1/platforms/whatsapp/signup",
            Some(&body),
        )
        .await
    }

    /// The verification code the sandbox "sent" to a number.
    pub async fn sent_code(&self, phone: &str) -> String {
        let v: Value = self
            .http
            .get(format!(
                "{}/sandbox/phone_numbers/{phone}/code",
                self.sandbox_url
            ))
            .send()
            .await
            .expect("code")
            .json()
            .await
            .expect("json");
        v["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {v}"))
            .to_owned()
    }

    /// A number as the sandbox holds it.
    pub async fn sandbox_number(&self, phone: &str) -> Value {
        let state: Value = self
            .http
            .get(format!("{}/sandbox/state", self.sandbox_url))
            .send()
            .await
            .expect("state")
            .json()
            .await
            .expect("json");
        state["businesses"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|b| b["wabas"].as_array().cloned().unwrap_or_default())
            .flat_map(|w| w["phone_numbers"].as_array().cloned().unwrap_or_default())
            .find(|p| p["id"] == phone)
            .unwrap_or(Value::Null)
    }

    /// The live platforms (any application) holding a WABA.
    pub async fn live_platforms_of(&self, waba: &str) -> usize {
        let waba = parley_domain::WabaId::parse(waba).expect("waba id");
        self.store
            .platforms_by_waba(&waba)
            .await
            .expect("platforms")
            .into_iter()
            .filter(|p| p.status != "disconnected")
            .count()
    }
}

#[tokio::test]
async fn an_unverified_number_is_verified_with_the_code_typed_in_parley_then_registered() {
    let app = spawn_app().await;
    let signup = app.sandbox_signup_as("Unverified GmbH", "unverified").await;
    assert_eq!(signup["event"], "FINISH");
    let phone = signup["phone_number_id"]
        .as_str()
        .expect("phone")
        .to_owned();
    let (status, platform) = app.post_finish(&signup).await;
    assert_eq!(status, 201, "{platform}");
    assert_eq!(platform["status"], "setting_up", "{platform}");
    assert_eq!(platform["onboarding"]["state"], "waiting");
    assert_eq!(
        platform["next_step"]["action"], "verify_number",
        "{platform}"
    );
    assert_eq!(platform["next_step"]["phone_number_id"], phone.as_str());
    assert_eq!(step(&platform, "verify_number")["state"], "waiting");
    assert!(
        platform["phone_numbers"][0]["phone_number_id"] == phone.as_str(),
        "the number shows while it waits: {platform}"
    );
    // Not registered yet: Meta would refuse an unverified number.
    let registers = app.sandbox_requests("").await["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["path"] == format!("{phone}/register"))
        .count();
    assert_eq!(registers, 0);
    let id = platform["id"].as_str().expect("id").to_owned();

    // Nothing to retry: the platform waits for the person, it did not fail.
    let (status, body) = app
        .api_call(Method::POST, &format!("/api/v1/platforms/{id}/retry"), None)
        .await;
    assert_eq!(status, 409, "{body}");

    // A bad code is refused before Meta; a wrong one by Meta, with what to do.
    let verify = |code: &str| {
        let body = json!({"code": code});
        let path = format!("/api/v1/platforms/{id}/verify_code");
        let app = &app;
        async move { app.api_call(Method::POST, &path, Some(&body)).await }
    };
    let (status, body) = verify("12a").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_code");
    let (status, body) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/platforms/{id}/request_code"),
            Some(&json!({"code_method": "VOICE", "language": "en_US"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action"], "verify_number");
    let code = app.sent_code(&phone).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, body) = verify(wrong).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "verification_code_wrong");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ask for a new one")
    );

    // Meta approves the account meanwhile; the platform keeps waiting for its number.
    app.sandbox_post(
        "/sandbox/review",
        &json!({"waba_id": signup["waba_id"], "decision": "APPROVED"}),
    )
    .await;
    app.webhooks_processed().await;
    let (_, waiting) = app
        .api_call(Method::GET, &format!("/api/v1/platforms/{id}"), None)
        .await;
    assert_eq!(waiting["status"], "setting_up", "{waiting}");

    let (status, done) = verify(&code).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "active", "{done}");
    assert!(done["next_step"].is_null());
    assert_eq!(done["onboarding"]["state"], "done");
    for name in parley_engine::onboarding::STEPS {
        // The WhatsApp Business app's syncs are for coexistence numbers only.
        let want = if name.starts_with("sync_") {
            "skipped"
        } else {
            "done"
        };
        assert_eq!(step(&done, name)["state"], want, "{name}: {done}");
    }
    let number = app.sandbox_number(&phone).await;
    assert_eq!(number["code_verification_status"], "VERIFIED", "{number}");
    assert_eq!(number["status"], "CONNECTED");

    // Verified once: there is nothing left to verify.
    let (status, body) = verify(&code).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "nothing_to_verify");
}

#[tokio::test]
async fn a_signup_without_a_number_is_shown_as_such_and_gets_one() {
    let app = spawn_app().await;
    let signup = app.sandbox_signup_as("Numberless Ltd", "no_number").await;
    assert!(
        signup["message"]["data"]["phone_number_id"].is_null(),
        "{signup}"
    );
    let (status, platform) = app.post_finish(&signup).await;
    assert_eq!(status, 201, "{platform}");
    assert_eq!(platform["status"], "setting_up");
    assert!(
        platform["status_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("No phone number yet")
    );
    assert_eq!(platform["next_step"]["action"], "add_number", "{platform}");
    assert_eq!(platform["phone_numbers"], json!([]));
    let id = platform["id"].as_str().expect("id").to_owned();
    let add = |body: Value| {
        let path = format!("/api/v1/platforms/{id}/phone_numbers");
        let app = &app;
        async move { app.api_call(Method::POST, &path, Some(&body)).await }
    };
    let (status, body) =
        add(json!({"cc": "x1", "phone_number": "4195551518", "verified_name": "Numberless"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "cc");
    // Meta's rules on the name come back as Meta said them, with what to do.
    let (status, body) =
        add(json!({"cc": "1", "phone_number": "4195551518", "verified_name": "WhatsApp Shop"}))
            .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "number_not_added");

    let (status, added) =
        add(json!({"cc": "1", "phone_number": "4195551518", "verified_name": "Numberless"})).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["next_step"]["action"], "verify_number", "{added}");
    let phone = added["next_step"]["phone_number_id"]
        .as_str()
        .expect("phone")
        .to_owned();
    assert_eq!(
        added["phone_numbers"][0]["display_phone_number"],
        "+1 4195551518"
    );
    // Added once: not again.
    let (status, body) =
        add(json!({"cc": "1", "phone_number": "4195551519", "verified_name": "Numberless"})).await;
    assert_eq!(status, 409, "{body}");

    let (status, _) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/platforms/{id}/request_code"),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 200);
    let code = app.sent_code(&phone).await;
    let (status, done) = app
        .api_call(
            Method::POST,
            &format!("/api/v1/platforms/{id}/verify_code"),
            Some(&json!({"code": code})),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "pending_review", "{done}");
    assert_eq!(app.sandbox_number(&phone).await["status"], "CONNECTED");
    app.sandbox_post("/sandbox/clock/advance", &json!({"seconds": 31}))
        .await;
    app.wait_platform(&id, |p| p["status"] == "active").await;
}

#[tokio::test]
async fn a_business_app_number_is_not_registered_and_an_app_only_install_is() {
    let app = spawn_app().await;
    let signup = app
        .sandbox_signup_as("Coexisting Shop", "coexistence")
        .await;
    assert_eq!(signup["event"], "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING");
    let phone = signup["phone_number_id"]
        .as_str()
        .expect("phone")
        .to_owned();
    let (status, platform) = app.post_finish(&signup).await;
    assert_eq!(status, 201, "{platform}");
    assert_eq!(platform["status"], "pending_review", "{platform}");
    assert_eq!(step(&platform, "find_number")["state"], "done");
    assert_eq!(step(&platform, "verify_number")["state"], "skipped");
    assert_eq!(step(&platform, "register_phone")["state"], "skipped");
    assert_eq!(
        platform["phone_numbers"][0]["phone_number_id"],
        phone.as_str()
    );
    let registers = app.sandbox_requests("").await["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(&phone) && p.ends_with("register"))
        })
        .count();
    assert_eq!(registers, 0, "a Business app number is never registered");

    let signup = app.sandbox_signup_as("App Only Inc", "app_only").await;
    assert_eq!(signup["event"], "FINISH_GRANT_ONLY_API_ACCESS");
    let (status, platform) = app.post_finish(&signup).await;
    assert_eq!(status, 201, "{platform}");
    assert_eq!(
        step(&platform, "register_phone")["state"],
        "done",
        "{platform}"
    );
    assert_eq!(platform["status"], "pending_review");
}

/// A Parley whose Meta app has a system-user token (the sandbox's demo token reaches every
/// WABA, as a partner's system user does): `PARTNER_ADDED` can onboard on its own.
async fn spawn_with_system_user() -> TestApp {
    spawn_app_configured(
        |_| {},
        |engine| {
            engine.meta_app.system_user_token =
                Some(parley_sandbox::demo_ids::ACCESS_TOKEN.to_owned());
        },
    )
    .await
}

async fn platform_of(app: &TestApp, waba: &str) -> Option<Value> {
    let (_, list) = app
        .api_call(Method::GET, "/api/v1/platforms?limit=100", None)
        .await;
    list["data"]
        .as_array()
        .and_then(|d| d.iter().find(|p| p["waba_id"] == waba).cloned())
}

#[tokio::test]
async fn partner_added_alone_ends_with_a_working_platform() {
    let app = spawn_with_system_user().await;
    // The customer finished the dialog; the page's message and code never reached Parley.
    let signup = app.sandbox_signup("Closed Tab GmbH").await;
    let waba = signup["waba_id"].as_str().expect("waba").to_owned();
    let phone = signup["phone_number_id"]
        .as_str()
        .expect("phone")
        .to_owned();
    let mut platform = None;
    for _ in 0..200 {
        app.webhooks_processed().await;
        platform = platform_of(&app, &waba)
            .await
            .filter(|p| p["onboarding"]["state"] == "done");
        if platform.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let platform = platform.expect("PARTNER_ADDED connected the WABA");
    assert_eq!(platform["status"], "pending_review", "{platform}");
    assert_eq!(platform["onboarding"]["event"], "PARTNER_ADDED");
    assert_eq!(step(&platform, "exchange_code")["state"], "skipped");
    assert_eq!(step(&platform, "register_phone")["state"], "done");
    assert_eq!(
        platform["phone_numbers"][0]["phone_number_id"],
        phone.as_str()
    );
    assert_eq!(app.sandbox_number(&phone).await["status"], "CONNECTED");

    // It works: Meta approves, and the number sends.
    app.sandbox_post("/sandbox/clock/advance", &json!({"seconds": 31}))
        .await;
    let id = platform["id"].as_str().expect("id");
    app.wait_platform(id, |p| p["status"] == "active").await;
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": "+4915100001111", "text": "Hello", "phone_number_id": phone}),
    )
    .await;
    // Once the inbound webhook is in, the window is open and a free-form reply goes out.
    let reply = json!({"to": "+4915100001111", "phone_number_id": phone, "text": "Welcome!"});
    let mut id = None;
    for _ in 0..200 {
        let resp = app.post_message(&reply).await;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.expect("json");
        if status == 202 {
            id = v["id"].as_str().map(str::to_owned);
            break;
        }
        assert_eq!(v["error"]["code"], "outside_service_window", "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = id.expect("the reply was accepted once the customer's message arrived");
    let delivered = app
        .wait_for_message(&id, "delivered", |m| {
            !m["timestamps"]["delivered"].is_null()
        })
        .await;
    assert_eq!(delivered["phone_number_id"], phone.as_str(), "{delivered}");

    // The browser's code arrives late after all: the same platform, the number registered
    // again with the PIN Parley holds (Meta would refuse another).
    let again = app
        .sandbox_post(
            "/sandbox/signup",
            &json!({"business": {"id": signup["business_id"]}, "waba": {"id": waba}, "phone_number": {"id": phone}}),
        )
        .await;
    let (status, body) = app.platform_signup(&again).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], platform["id"]);
    assert_eq!(app.live_platforms_of(&waba).await, 1);
}

#[tokio::test]
async fn the_browser_and_partner_added_end_as_one_platform_in_either_order() {
    let app = spawn_with_system_user().await;
    // Meta's webhook is posted by hand, to choose the order.
    app.sandbox_post("/sandbox/webhook_url", &json!({"url": null}))
        .await;
    let partner_added = |signup: &Value| {
        let body = json!({"object": "whatsapp_business_account", "entry": [{
            "id": parley_sandbox::demo_ids::PARTNER_BUSINESS_ID, "time": 1_765_000_000,
            "changes": [{"field": "account_update", "value": {
                "event": "PARTNER_ADDED",
                "waba_info": {"waba_id": signup["waba_id"], "owner_business_id": signup["business_id"]}
            }}]
        }]});
        serde_json::to_vec(&body).expect("json")
    };

    // The browser first, then the webhook: nothing more.
    let first = app.sandbox_signup("Browser First").await;
    let (status, platform) = app.platform_signup(&first).await;
    assert_eq!(status, 201, "{platform}");
    let body = partner_added(&first);
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    app.webhooks_processed().await;
    let waba = first["waba_id"].as_str().expect("waba");
    assert_eq!(app.live_platforms_of(waba).await, 1);
    assert_eq!(
        platform_of(&app, waba).await.expect("platform")["id"],
        platform["id"]
    );

    // Both at once: one platform, whichever ran first.
    let both = app.sandbox_signup("Both At Once").await;
    let body = partner_added(&both);
    let signature = app.sign(&body);
    let (hook, (status, answer)) = tokio::join!(
        app.post_webhook(&body, Some(&signature)),
        app.platform_signup(&both)
    );
    assert_eq!(hook, 200);
    assert_eq!(status, 201, "{answer}");
    app.webhooks_processed().await;
    let waba = both["waba_id"].as_str().expect("waba");
    assert_eq!(app.live_platforms_of(waba).await, 1);
    let platform = platform_of(&app, waba).await.expect("platform");
    assert_eq!(platform["onboarding"]["state"], "done", "{platform}");
}

#[tokio::test]
async fn two_applications_racing_for_one_waba_leave_one_live_platform() {
    let app = spawn_app().await;
    let other = crate::platforms::second_application(&app).await;
    let signup = app.sandbox_signup("Contested GmbH").await;
    let again = app
        .sandbox_post(
            "/sandbox/signup",
            &json!({"business": {"id": signup["business_id"]}, "waba": {"id": signup["waba_id"]}, "phone_number": {"id": signup["phone_number_id"]}}),
        )
        .await;
    let body = |s: &Value| json!({"code": s["code"], "waba_id": s["waba_id"], "business_id": s["business_id"], "event": "FINISH_ONLY_WABA"});
    let call = |token: String, b: Value| {
        let app = &app;
        async move {
            let resp = app
                .http
                .post(format!("{}/api/v1/platforms/whatsapp/signup", app.url))
                .bearer_auth(token)
                .json(&b)
                .send()
                .await
                .expect("signup");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (a, b) = tokio::join!(
        call(app.token.clone(), body(&signup)),
        call(other.clone(), body(&again))
    );
    let statuses = [a.0, b.0];
    assert!(statuses.contains(&201), "{a:?} {b:?}");
    let refused = if a.0 == 201 { &b } else { &a };
    assert_eq!(refused.0, 409, "{refused:?}");
    assert_eq!(refused.1["error"]["code"], "waba_taken", "{refused:?}");
    let waba = signup["waba_id"].as_str().expect("waba");
    assert_eq!(app.live_platforms_of(waba).await, 1);

    // The index itself: a second live platform for the WABA is refused by the database.
    let apps = app.store.applications().await.expect("apps");
    let holder = app
        .store
        .platforms_by_waba(&parley_domain::WabaId::parse(waba).expect("waba"))
        .await
        .expect("platforms")
        .into_iter()
        .find(|p| p.status != "disconnected")
        .expect("live");
    let stranger = apps
        .iter()
        .find(|a| a.id != holder.application_id)
        .expect("another application");
    let refused = app
        .store
        .upsert_platform(&parley_store::NewPlatform {
            id: parley_domain::PlatformId::new(),
            application_id: stranger.id.clone(),
            business_id: None,
            waba_id: holder.waba_id.clone(),
            waba_name: None,
            status: "setting_up".into(),
            access_token: "t".into(),
            details: json!({}),
            now: 1,
        })
        .await;
    assert!(
        matches!(refused, Err(parley_store::StoreError::WabaTaken(_))),
        "{refused:?}"
    );
}
