//! Faults for Graph calls other than sends (`fail_next_calls`), and authentication templates
//! stored and sent as Meta stores and checks them.

use parley_sandbox::demo_ids;
use reqwest::Method;
use serde_json::{Value, json};

use super::{CUSTOMER, TestSandbox, assert_meta_error, spawn, test_config};

impl TestSandbox {
    /// `POST /sandbox/faults` without asserting success: (HTTP status, body).
    async fn try_faults(&self, faults: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/sandbox/faults", self.base))
            .json(&faults)
            .send()
            .await
            .expect("faults");
        let status = response.status().as_u16();
        (status, response.json().await.expect("json body"))
    }
}

#[tokio::test]
async fn call_faults_fail_matching_graph_calls_once_each_in_order() {
    let sb = spawn(test_config()).await;
    let signup = sb.control("signup", json!({})).await;
    let code = signup["code"].as_str().expect("code").to_owned();
    let waba = signup["waba_id"].as_str().expect("waba").to_owned();
    let phone = signup["phone_number_id"]
        .as_str()
        .expect("phone")
        .to_owned();
    sb.control(
        "faults",
        json!({"fail_next_calls": [
            {"path": "subscribed_apps", "code": 2, "method": "POST"},
            {"path": "oauth/access_token", "code": 2},
            {"path": "/register", "code": 133004},
            {"path": "message_templates", "code": 2, "method": "get"},
            {"path": "subscribed_apps", "code": 131000, "method": "POST"},
            {"path": "/v23.0/uploads", "code": 2}
        ]}),
    )
    .await;

    // A failed exchange leaves the code usable, as at Meta.
    let (status, body) = sb.exchange(&code).await;
    assert_meta_error(status, &body, 503, 2);
    let (status, token) = sb.exchange(&code).await;
    assert_eq!(status, 200, "{token}");

    // The method filter: GET passes, the POSTs fail in order, then the call works.
    let apps = format!("/v23.0/{waba}/subscribed_apps");
    assert_eq!(sb.graph(Method::GET, &apps, None).await.0, 200);
    let (status, body) = sb.graph(Method::POST, &apps, None).await;
    assert_meta_error(status, &body, 503, 2);
    assert_eq!(body["error"]["message"], "(#2) API Service");
    let (status, body) = sb.graph(Method::POST, &apps, None).await;
    assert_meta_error(status, &body, 500, 131000);
    assert_eq!(
        sb.graph(Method::POST, &apps, None).await,
        (200, json!({"success": true}))
    );

    // "/register" is not "…/deregister".
    let pin = json!({"messaging_product": "whatsapp", "pin": "123456"});
    let (status, _) = sb
        .graph(
            Method::POST,
            &format!("/v23.0/{phone}/deregister"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    let register = format!("/v23.0/{phone}/register");
    let (status, body) = sb.graph(Method::POST, &register, Some(pin.clone())).await;
    assert_meta_error(status, &body, 503, 133004);
    assert_eq!(sb.graph(Method::POST, &register, Some(pin)).await.0, 200);

    let templates = format!("/v23.0/{}/message_templates", demo_ids::WABA_ID);
    let (status, body) = sb.graph(Method::GET, &templates, None).await;
    assert_meta_error(status, &body, 503, 2);
    let (status, listed) = sb.graph(Method::GET, &templates, None).await;
    assert_eq!(status, 200, "{listed}");

    // Only the upload fault is left; a call without a token does not use it up.
    let faults = sb.control_get("faults").await;
    assert_eq!(
        faults["fail_next_calls"],
        json!([{"path": "/v23.0/uploads", "code": 2}])
    );
    let uploads = format!(
        "{}/v23.0/{}/uploads?file_length=4&file_type=image/png",
        sb.base,
        demo_ids::APP_ID
    );
    let response = sb.http.post(&uploads).send().await.expect("upload");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json body");
    assert_meta_error(status, &body, 400, 104);
    let response = sb
        .http
        .post(&uploads)
        .bearer_auth(demo_ids::ACCESS_TOKEN)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 503);
    // The business token from the signup is accepted by uploads too.
    let business_token = token["access_token"].as_str().expect("token");
    let response = sb
        .http
        .post(&uploads)
        .bearer_auth(business_token)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(sb.control_get("faults").await["fail_next_calls"], json!([]));

    // Faults that name no call, or an unknown method, are refused.
    for bad in [
        json!({"fail_next_calls": [{"path": "/v23.0/", "code": 2}]}),
        json!({"fail_next_calls": [{"path": "register", "code": 2, "method": "PATCH"}]}),
        json!({"fail_next_calls": [{"path": "register"}]}),
    ] {
        let (status, body) = sb.try_faults(bad.clone()).await;
        assert_meta_error(status, &body, 400, 100);
    }
}

fn auth_template(name: &str, security: bool, minutes: Option<u64>) -> Value {
    let mut components = vec![json!({"type": "BODY", "add_security_recommendation": security})];
    if let Some(minutes) = minutes {
        components.push(json!({"type": "FOOTER", "code_expiration_minutes": minutes}));
    }
    components.push(json!({"type": "BUTTONS", "buttons": [
        {"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}
    ]}));
    json!({"name": name, "language": "en_US", "category": "AUTHENTICATION", "components": components})
}

fn auth_send(name: &str, body_code: Option<&str>, button_code: &str) -> Value {
    let mut components = Vec::new();
    if let Some(code) = body_code {
        components.push(json!({"type": "body", "parameters": [{"type": "text", "text": code}]}));
    }
    components.push(json!({"type": "button", "sub_type": "url", "index": "0",
        "parameters": [{"type": "text", "text": button_code}]}));
    json!({
        "messaging_product": "whatsapp", "to": CUSTOMER, "type": "template",
        "template": {"name": name, "language": {"code": "en_US"}, "components": components}
    })
}

#[tokio::test]
async fn authentication_templates_are_stored_and_checked_like_metas() {
    let sb = spawn(test_config()).await;
    let path = format!("/v23.0/{}/message_templates", demo_ids::WABA_ID);
    let (status, created) = sb
        .graph(
            Method::POST,
            &path,
            Some(auth_template("login_code", true, Some(10))),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["category"], "AUTHENTICATION");
    let id = created["id"].as_str().expect("id").to_owned();
    let (status, plain) = sb
        .graph(
            Method::POST,
            &path,
            Some(auth_template("plain_code", false, None)),
        )
        .await;
    assert_eq!(status, 200, "{plain}");

    let copy_url = "https://www.whatsapp.com/otp/code/?otp_type=COPY_CODE&code=otp";
    let (_, fetched) = sb.get(&format!("/v23.0/{id}")).await;
    assert_eq!(
        fetched["components"],
        json!([
            {"type": "BODY",
             "text": "*{{1}}* is your verification code. For your security, do not share this code.",
             "add_security_recommendation": true,
             "example": {"body_text": [["123456"]]}},
            {"type": "FOOTER", "text": "This code expires in 10 minutes.", "code_expiration_minutes": 10},
            {"type": "BUTTONS", "buttons": [{
                "type": "URL", "text": "Copy code",
                "url": format!("{copy_url}{{{{1}}}}"),
                "example": [format!("{copy_url}123456")]
            }]}
        ])
    );
    let (_, fetched) = sb
        .get(&format!("/v23.0/{}", plain["id"].as_str().expect("id")))
        .await;
    let components = fetched["components"].as_array().expect("components");
    assert_eq!(
        components.len(),
        2,
        "no footer without an expiry: {fetched}"
    );
    assert_eq!(components[0]["text"], "*{{1}}* is your verification code.");
    assert_eq!(components[1]["buttons"][0]["type"], "URL");

    // Meta refuses headers and non-OTP buttons in authentication templates.
    let mut header = auth_template("with_header", false, None);
    header["components"]
        .as_array_mut()
        .expect("components")
        .insert(0, json!({"type": "HEADER", "format": "TEXT", "text": "Hi"}));
    let mut link = auth_template("with_link", false, None);
    link["components"][1]["buttons"][0] =
        json!({"type": "URL", "text": "Open", "url": "https://example.com"});
    let long_expiry = auth_template("long_expiry", false, Some(91));
    for bad in [header, link, long_expiry] {
        let (status, body) = sb.graph(Method::POST, &path, Some(bad)).await;
        assert_meta_error(status, &body, 400, 100);
    }

    sb.advance(11).await;
    // The code goes to body {{1}} and to the button's URL parameter.
    let (status, body) = sb
        .send(&auth_send("login_code", Some("493817"), "493817"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sb.send(&auth_send("login_code", None, "493817")).await;
    assert_meta_error(status, &body, 400, 132000);
    let (status, body) = sb
        .send(&auth_send("login_code", Some("493817"), "111111"))
        .await;
    assert_meta_error(status, &body, 400, 132018);
    let long = "1234567890123456";
    let (status, body) = sb.send(&auth_send("plain_code", Some(long), long)).await;
    assert_meta_error(status, &body, 400, 132018);

    // An edit is stored the same way.
    let (status, body) = sb
        .graph(
            Method::POST,
            &format!("/v23.0/{id}"),
            Some(json!({"components": [
                {"type": "BODY"},
                {"type": "FOOTER", "code_expiration_minutes": 5},
                {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE"}]}
            ]})),
        )
        .await;
    assert_eq!((status, body), (200, json!({"success": true})));
    let (_, fetched) = sb.get(&format!("/v23.0/{id}")).await;
    assert_eq!(
        fetched["components"][0]["text"],
        "*{{1}}* is your verification code."
    );
    assert_eq!(
        fetched["components"][1]["text"],
        "This code expires in 5 minutes."
    );
    assert_eq!(fetched["components"][2]["buttons"][0]["text"], "Copy code");
}
