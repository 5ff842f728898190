//! Templates end to end: create every kind Meta accepts against the sandbox, see Meta's review
//! arrive by webhook, send each with every component's variables and check the exact body
//! Meta received; rejections, deletions at Meta, local validation and Meta's edit rules.

use std::time::Duration;

use parley_sandbox::demo_ids;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

impl TestApp {
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    pub(crate) async fn create_template(&self, draft: &Value) -> Value {
        let (status, v) = self
            .api(reqwest::Method::POST, "/api/v1/templates", Some(draft))
            .await;
        assert_eq!(status, 201, "create {}: {v}", draft["name"]);
        assert_eq!(v["status"], "PENDING", "{v}");
        v
    }

    async fn template(&self, id: &str) -> Value {
        let (status, v) = self
            .api(
                reqwest::Method::GET,
                &format!("/api/v1/templates/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Polls until the template reaches `status` (webhooks are asynchronous).
    pub(crate) async fn wait_template(&self, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            last = self.template(id).await;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("template {id} never reached {status}: {last}");
    }

    /// Polls until Meta accepted the message (any later state is fine).
    pub(crate) async fn wait_wamid(&self, id: &str) -> String {
        for _ in 0..400 {
            let m = self.get_message(id).await;
            if let Some(w) = m["wamid"].as_str() {
                return w.to_owned();
            }
            assert_ne!(m["state"], "failed", "{m}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("message {id} was never accepted");
    }

    pub(crate) async fn advance_review(&self) {
        self.sandbox_post("/sandbox/clock/advance", &json!({"seconds": 11}))
            .await;
    }

    async fn upload_png(&self) -> String {
        let resp = self
            .http
            .post(format!(
                "{}/api/v1/media/uploads?file_name=offer.png",
                self.url
            ))
            .bearer_auth(&self.token)
            .header("content-type", "image/png")
            .body(PNG.to_vec())
            .send()
            .await
            .expect("upload");
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["mime_type"], "image/png");
        assert_eq!(v["file_length"], PNG.len());
        let handle = v["handle"].as_str().expect("handle").to_owned();
        assert!(handle.starts_with("4::"), "{handle}");
        handle
    }

    async fn sandbox_templates(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!(
                "{}/v23.0/{}/message_templates?limit=1000",
                self.sandbox_url,
                demo_ids::WABA_ID
            ))
            .bearer_auth(demo_ids::ACCESS_TOKEN)
            .send()
            .await
            .expect("sandbox")
            .json()
            .await
            .expect("json");
        v["data"].as_array().cloned().unwrap_or_default()
    }
}

/// One draft of each kind Meta accepts, with the variables a send gives and the components
/// Meta must receive for them.
fn kinds(handle: &str) -> Vec<(Value, Value, Value)> {
    vec![
        (
            json!({"name": "order_named", "language": "en_US", "category": "UTILITY", "parameter_format": "named",
            "components": [
                {"type": "HEADER", "format": "TEXT", "text": "Order for {{customer}}",
                 "example": {"header_text_named_params": [{"param_name": "customer", "example": "Ana"}]}},
                {"type": "BODY", "text": "Hi {{first_name}}, your order {{order_id}} ships today from our store.",
                 "example": {"body_text_named_params": [
                    {"param_name": "first_name", "example": "Ana"},
                    {"param_name": "order_id", "example": "A-1"}]}},
                {"type": "FOOTER", "text": "Parley Demo Shop"},
                {"type": "BUTTONS", "buttons": [
                    {"type": "QUICK_REPLY", "text": "Thanks"},
                    {"type": "URL", "text": "Track", "url": "https://shop.example.com/track/{{1}}", "example": ["https://shop.example.com/track/A-1"]}
                ]}
            ]}),
            json!({"header": "Ana", "first_name": "Ana", "order_id": "A-77", "button.1": "A-77"}),
            json!([
                {"type": "header", "parameters": [{"type": "text", "parameter_name": "customer", "text": "Ana"}]},
                {"type": "body", "parameters": [
                    {"type": "text", "parameter_name": "first_name", "text": "Ana"},
                    {"type": "text", "parameter_name": "order_id", "text": "A-77"}]},
                {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "A-77"}]}
            ]),
        ),
        (
            json!({"name": "promo_image", "language": "en", "category": "MARKETING",
            "components": [
                {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": [handle]}},
                {"type": "BODY", "text": "Hi {{1}}, enjoy {{2}} off everything this week.", "example": {"body_text": [["Ana", "20%"]]}},
                {"type": "BUTTONS", "buttons": [
                    {"type": "URL", "text": "Shop", "url": "https://shop.example.com/sale"},
                    {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+4930123456"}
                ]}
            ]}),
            json!({"header": "https://img.example.com/sale.png", "1": "Ana", "2": "20%"}),
            json!([
                {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://img.example.com/sale.png"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "20%"}]}
            ]),
        ),
        (
            json!({"name": "promo_video", "language": "en", "category": "MARKETING",
            "components": [
                {"type": "HEADER", "format": "VIDEO", "example": {"header_handle": [handle]}},
                {"type": "BODY", "text": "Watch this, {{1}}: use the code below.", "example": {"body_text": [["Ana"]]}},
                {"type": "BUTTONS", "buttons": [{"type": "COPY_CODE", "example": "SAVE10"}]}
            ]}),
            json!({"header": "1234567890", "1": "Ana", "button.0": "SAVE10"}),
            json!([
                {"type": "header", "parameters": [{"type": "video", "video": {"id": "1234567890"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]},
                {"type": "button", "sub_type": "copy_code", "index": "0", "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}]}
            ]),
        ),
        (
            json!({"name": "invoice_doc", "language": "de", "category": "UTILITY",
            "components": [
                {"type": "HEADER", "format": "DOCUMENT", "example": {"header_handle": [handle]}},
                {"type": "BODY", "text": "Hallo {{1}}, anbei die Rechnung.", "example": {"body_text": [["Ana"]]}},
                {"type": "FOOTER", "text": "Parley Demo Shop"}
            ]}),
            json!({"header": "https://files.example.com/invoice.pdf", "1": "Ana"}),
            json!([
                {"type": "header", "parameters": [{"type": "document", "document": {"link": "https://files.example.com/invoice.pdf"}}]},
                {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}
            ]),
        ),
    ]
}

#[tokio::test]
async fn every_kind_is_created_reviewed_by_webhook_and_sent_in_meta_shape() {
    let app = spawn_app().await;
    let handle = app.upload_png().await;
    let (phone, _) = app.contact(0).await;
    let mut created = Vec::new();
    for (draft, vars, components) in kinds(&handle) {
        let t = app.create_template(&draft).await;
        assert_eq!(t["name"], draft["name"]);
        assert_eq!(t["category"], draft["category"]);
        assert!(t["meta_id"].is_string(), "{t}");
        created.push((
            t["id"].as_str().expect("id").to_owned(),
            draft,
            vars,
            components,
        ));
    }
    // A second language of the same name.
    let mut german = created[0].1.clone();
    german["language"] = json!("de");
    let de = app.create_template(&german).await;
    assert_ne!(de["id"], created[0].0);

    // Pending templates are refused before any call to Meta.
    let (status, v) = app
        .api(
            reqwest::Method::POST,
            "/api/v1/messages",
            Some(&json!({"to": phone, "template": {"name": "promo_image", "language": "en", "variables": created[1].2}})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "template_not_approved");
    assert_eq!(v["error"]["field"], "template.name");

    app.advance_review().await;
    for (id, draft, vars, components) in &created {
        let t = app.wait_template(id, "APPROVED").await;
        let message = app
            .send(&json!({"to": phone, "template": {
                "name": draft["name"], "language": draft["language"], "variables": vars}}))
            .await;
        let wamid = app.wait_wamid(&message).await;
        let sent = app.sandbox_messages().await;
        let rec = sent
            .iter()
            .find(|r| r["wamid"] == wamid.as_str())
            .expect("recorded");
        assert_eq!(
            rec["request"],
            json!({
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": phone, "type": "template", "biz_opaque_callback_data": message,
                "template": {"name": draft["name"], "language": {"code": t["language"]},
                             "components": components}
            }),
            "{}",
            draft["name"]
        );
    }
    app.wait_template(de["id"].as_str().expect("id"), "APPROVED")
        .await;

    // Every variable of every component is checked before the send.
    let (status, v) = app
        .api(
            reqwest::Method::POST,
            "/api/v1/messages",
            Some(
                &json!({"to": phone, "template": {"name": "order_named", "language": "en_US",
                "variables": {"header": "Ana", "first_name": "Ana", "order_id": "A-77"}}}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "variable_missing");
    assert_eq!(v["error"]["field"], "template.variables.button.1");
    let (status, v) = app
        .api(
            reqwest::Method::POST,
            "/api/v1/messages",
            Some(
                &json!({"to": phone, "template": {"name": "promo_image", "language": "en",
                "variables": {"header": "not a link", "1": "Ana", "2": "5%"}}}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not a media link or id"),
        "{v}"
    );
}

#[tokio::test]
async fn an_authentication_template_sends_the_code_in_body_and_button() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let draft = json!({"name": "login_code", "language": "en", "category": "AUTHENTICATION",
    "components": [
        {"type": "BODY", "add_security_recommendation": true},
        {"type": "FOOTER", "code_expiration_minutes": 10},
        {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]}
    ]});
    let t = app.create_template(&draft).await;
    app.advance_review().await;
    app.wait_template(t["id"].as_str().expect("id"), "APPROVED")
        .await;
    // Meta stores the preset body `*{{1}}* is your verification code. …` and the OTP button
    // as a URL button ending in `{{1}}`: the code goes to both.
    let message = app
        .send(
            &json!({"to": phone, "template": {"name": "login_code", "language": "en",
            "variables": {"1": "493817", "button.0": "493817"}}}),
        )
        .await;
    let wamid = app.wait_wamid(&message).await;
    let sent = app.sandbox_messages().await;
    let rec = sent
        .iter()
        .find(|r| r["wamid"] == wamid.as_str())
        .expect("recorded");
    assert_eq!(
        rec["request"]["template"]["components"],
        json!([
            {"type": "body", "parameters": [{"type": "text", "text": "493817"}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "493817"}]}
        ])
    );
}

#[tokio::test]
async fn a_rejected_template_shows_metas_reason() {
    let app = spawn_app().await;
    let t = app
        .create_template(
            &json!({"name": "reject_me", "language": "en", "category": "MARKETING",
            "components": [{"type": "BODY", "text": "Buy now!"}]}),
        )
        .await;
    app.advance_review().await;
    let t = app
        .wait_template(t["id"].as_str().expect("id"), "REJECTED")
        .await;
    assert_eq!(t["rejected_reason"], "INVALID_FORMAT", "{t}");
    assert_eq!(t["rejection_info"]["reason"], "INVALID_FORMAT", "{t}");
    assert!(t["rejection_info"]["recommendation"].is_string(), "{t}");
    let (_, list) = app
        .api(
            reqwest::Method::GET,
            "/api/v1/templates?status=rejected",
            None,
        )
        .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["data"][0]["name"], "reject_me");
}

#[tokio::test]
async fn a_template_deleted_at_meta_disappears_after_sync() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let t = app
        .create_template(
            &json!({"name": "gone_soon", "language": "en", "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Your parcel is on its way."}]}),
        )
        .await;
    let id = t["id"].as_str().expect("id").to_owned();
    app.advance_review().await;
    app.wait_template(&id, "APPROVED").await;
    // Deleted in WhatsApp Manager, i.e. straight at Meta.
    let resp = app
        .http
        .delete(format!(
            "{}/v23.0/{}/message_templates?name=gone_soon",
            app.sandbox_url,
            demo_ids::WABA_ID
        ))
        .bearer_auth(demo_ids::ACCESS_TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    let (status, report) = app
        .api(reqwest::Method::POST, "/api/v1/templates/sync", None)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["deleted"], 1, "{report}");
    let (_, list) = app
        .api(reqwest::Method::GET, "/api/v1/templates?name=gone", None)
        .await;
    assert_eq!(list["data"], json!([]), "{list}");
    let (_, list) = app
        .api(
            reqwest::Method::GET,
            "/api/v1/templates?name=gone&include_deleted=true",
            None,
        )
        .await;
    assert_eq!(list["data"][0]["id"], id.as_str(), "{list}");
    // Kept, not forgotten.
    let t = app.template(&id).await;
    assert_eq!(t["status"], "DELETED");
    assert!(t["deleted_at"].is_string(), "{t}");
    let (status, v) = app
        .api(
            reqwest::Method::POST,
            "/api/v1/messages",
            Some(&json!({"to": phone, "template": {"name": "gone_soon", "language": "en"}})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "template_not_found");
}

#[tokio::test]
async fn invalid_drafts_get_every_issue_before_any_call_to_meta() {
    let app = spawn_app().await;
    let before = app.sandbox_templates().await.len();
    let (status, v) = app
        .api(
            reqwest::Method::POST,
            "/api/v1/templates",
            Some(
                &json!({"name": "Bad Name", "language": "english", "category": "PROMO",
                "components": [{"type": "BODY", "text": "Hi {{1}} and {{3}}"}]}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "template_invalid");
    assert_eq!(v["error"]["field"], "name");
    let fields: Vec<&str> = v["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .filter_map(|i| i["field"].as_str())
        .collect();
    for f in ["name", "language", "category"] {
        assert!(fields.contains(&f), "no issue for {f}: {v}");
    }
    assert!(
        fields.iter().any(|f| f.starts_with("components")),
        "no issue for the body: {v}"
    );
    // A duplicate of an existing name and language.
    let (status, v) = app
        .api(
            reqwest::Method::POST,
            "/api/v1/templates",
            Some(
                &json!({"name": "welcome", "language": "en", "category": "MARKETING",
                "components": [{"type": "BODY", "text": "Hello"}]}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["issues"][0]["code"], "template_exists", "{v}");
    assert_eq!(app.sandbox_templates().await.len(), before);

    // Uploads take only Meta's example types.
    let resp = app
        .http
        .post(format!("{}/api/v1/media/uploads", app.url))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "media_type_unsupported");
}

#[tokio::test]
async fn edits_follow_metas_rules() {
    let app = spawn_app().await;
    let draft = json!({"name": "edit_me", "language": "en", "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Your order shipped."}]});
    let t = app.create_template(&draft).await;
    let id = t["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/templates/{id}");
    let new_body = json!({"components": [{"type": "BODY", "text": "Your order is on its way."}]});

    // Pending: Meta allows no edit.
    let (status, v) = app
        .api(reqwest::Method::PATCH, &path, Some(&new_body))
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "template_not_editable");

    app.advance_review().await;
    app.wait_template(&id, "APPROVED").await;
    // Approved: the category stays.
    let (status, v) = app
        .api(
            reqwest::Method::PATCH,
            &path,
            Some(&json!({"category": "MARKETING"})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["issues"][0]["code"], "category_locked", "{v}");
    // Invalid components are caught locally.
    let (status, v) = app
        .api(
            reqwest::Method::PATCH,
            &path,
            Some(&json!({"components": [{"type": "BODY", "text": "Hi {{2}}"}]})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "template_invalid");

    // The components change, and Meta reviews again.
    let (status, v) = app
        .api(reqwest::Method::PATCH, &path, Some(&new_body))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "PENDING");
    assert_eq!(v["components"][0]["text"], "Your order is on its way.");
    app.advance_review().await;
    app.wait_template(&id, "APPROVED").await;
    // Meta allows one edit of an approved template per 24 hours.
    let (status, v) = app
        .api(reqwest::Method::PATCH, &path, Some(&new_body))
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "meta_refused", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("24 hours"),
        "{v}"
    );
}

#[tokio::test]
async fn delete_by_id_and_by_name() {
    let app = spawn_app().await;
    let body = json!([{"type": "BODY", "text": "See you soon."}]);
    let mut ids = Vec::new();
    for (name, language) in [
        ("bye", "en"),
        ("bye", "de"),
        ("bye", "fr"),
        ("hello_id", "en"),
    ] {
        let t = app
            .create_template(&json!({"name": name, "language": language, "category": "UTILITY", "components": body}))
            .await;
        ids.push(t["id"].as_str().expect("id").to_owned());
    }
    let (status, v) = app
        .api(
            reqwest::Method::DELETE,
            &format!("/api/v1/templates/{}", ids[3]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "DELETED");
    let (status, v) = app
        .api(reqwest::Method::DELETE, "/api/v1/templates?name=bye", None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["deleted"].as_array().map(Vec::len), Some(3), "{v}");
    let at_meta: Vec<String> = app
        .sandbox_templates()
        .await
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !at_meta.iter().any(|n| n == "bye" || n == "hello_id"),
        "{at_meta:?}"
    );
    let (status, v) = app
        .api(reqwest::Method::DELETE, "/api/v1/templates?name=bye", None)
        .await;
    assert_eq!(status, 404, "{v}");
}

/// Meta's category and component webhooks, and the pause details of a status webhook.
#[tokio::test]
async fn category_component_and_pause_webhooks_update_the_copy() {
    let app = spawn_app().await;
    let (_, list) = app
        .api(
            reqwest::Method::GET,
            "/api/v1/templates?name=order_update",
            None,
        )
        .await;
    let t = list["data"][0].clone();
    let id = t["id"].as_str().expect("id").to_owned();
    let meta_id: u64 = t["meta_id"]
        .as_str()
        .expect("meta id")
        .parse()
        .expect("numeric");
    let post = |field: &str, value: Value| {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": demo_ids::WABA_ID, "time": 1750000000,
            "changes": [{"field": field, "value": value}]}]});
        serde_json::to_vec(&body).expect("json")
    };
    let body = post(
        "template_category_update",
        json!({"message_template_id": meta_id, "message_template_name": "order_update",
            "message_template_language": "en", "previous_category": "UTILITY", "new_category": "MARKETING"}),
    );
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    let mut t = Value::Null;
    for _ in 0..100 {
        t = app.template(&id).await;
        if t["category"] == "MARKETING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(t["category"], "MARKETING", "{t}");
    assert_eq!(t["previous_category"], "UTILITY", "{t}");

    let body = post(
        "message_template_status_update",
        json!({"event": "PAUSED", "message_template_id": meta_id, "message_template_name": "order_update",
            "message_template_language": "en", "reason": null,
            "other_info": {"title": "FIRST_PAUSE", "description": "Paused for 3 hours because of low quality."}}),
    );
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    let t = app.wait_template(&id, "PAUSED").await;
    assert_eq!(t["pause_info"]["title"], "FIRST_PAUSE", "{t}");

    // Components changed at Meta (edited there, not through Parley): the webhook makes
    // Parley read the template again, and its copy shows Meta's new text.
    let graph = |path: String| format!("{}/v23.0/{path}", app.sandbox_url);
    let at_meta: Value = app
        .http
        .get(graph(meta_id.to_string()))
        .bearer_auth(demo_ids::ACCESS_TOKEN)
        .send()
        .await
        .expect("graph get")
        .json()
        .await
        .expect("json");
    let mut components = at_meta["components"]
        .as_array()
        .expect("components")
        .clone();
    let body_index = components
        .iter()
        .position(|c| c["type"] == "BODY")
        .expect("a body");
    let edited = format!(
        "{} (edited at Meta)",
        components[body_index]["text"].as_str().expect("text")
    );
    components[body_index]["text"] = json!(edited);
    let resp = app
        .http
        .post(graph(meta_id.to_string()))
        .bearer_auth(demo_ids::ACCESS_TOKEN)
        .json(&json!({ "components": components }))
        .send()
        .await
        .expect("graph edit");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let body = post(
        "message_template_components_update",
        json!({"message_template_id": meta_id, "message_template_name": "order_update",
            "message_template_language": "en", "message_template_element": "changed"}),
    );
    assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
    let mut t = Value::Null;
    for _ in 0..200 {
        t = app.template(&id).await;
        if t["components"].to_string().contains(&edited) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        t["components"].to_string().contains(&edited),
        "the copy was not read again from Meta: {t}"
    );
}

/// Signs in over HTTP and returns the session cookie.
async fn console_cookie(app: &TestApp) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let r = http
        .post(format!("{}/login", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "email={}&password={}",
            enc(&app.console_email),
            enc(&app.console_password)
        ))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 303);
    r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned()
}

async fn console_page(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let r = app
        .http
        .get(format!("{}{path}", app.url))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page");
    (r.status().as_u16(), r.text().await.expect("html"))
}

#[tokio::test]
async fn the_console_lists_filters_and_shows_the_rejection_reason() {
    let app = spawn_app().await;
    let t = app
        .create_template(
            &json!({"name": "reject_console", "language": "en", "category": "MARKETING",
            "components": [{"type": "BODY", "text": "Big sale today only in our shop."}]}),
        )
        .await;
    let id = t["id"].as_str().expect("id").to_owned();
    app.advance_review().await;
    app.wait_template(&id, "REJECTED").await;
    let cookie = console_cookie(&app).await;
    let (status, html) = console_page(&app, &cookie, "/templates?status=REJECTED").await;
    assert_eq!(status, 200);
    assert!(html.contains("reject_console"), "{html}");
    assert!(html.contains("INVALID_FORMAT"), "{html}");
    assert!(!html.contains("spring_sale"), "filtered out: {html}");
    let (_, html) = console_page(&app, &cookie, "/templates?name=spring").await;
    assert!(html.contains("spring_sale") && !html.contains("reject_console"));
    let (status, html) = console_page(&app, &cookie, &format!("/templates/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("INVALID_FORMAT"), "{html}");
    assert!(html.contains("Big sale today only in our shop."), "{html}");

    // The form shows the server's issues next to the fields.
    let r = app
        .http
        .post(format!("{}/templates", app.url))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Bad+Name&language=en&category=UTILITY&parameter_format=positional&header_format=NONE&body=Hi+%7B%7B1%7D%7D&body_examples=")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 422);
    let html = r.text().await.expect("html");
    assert!(html.contains("field-error"), "{html}");
    assert!(html.contains("lowercase"), "{html}");
}

#[tokio::test]
async fn a_browser_creates_a_template_and_sees_its_preview_and_status() {
    use fantoccini::Locator;
    let app = spawn_app().await;
    let browser = crate::browser::Browser::start().await;
    let c = &browser.client;
    browser.sign_in(&app).await;
    browser.wait_text("WhatsApp platforms").await;
    c.find(Locator::LinkText("Templates"))
        .await
        .expect("nav")
        .click()
        .await
        .expect("click");
    browser.wait_text("spring_sale").await;
    c.find(Locator::LinkText("New template"))
        .await
        .expect("new")
        .click()
        .await
        .expect("click");
    browser.wait_css("#template-form").await;
    let fill = |name: &'static str, text: &'static str| async move {
        let el = c
            .find(Locator::Css(&format!("[name={name}]")))
            .await
            .expect("field");
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    };
    fill("name", "browser_made").await;
    fill(
        "body",
        "Hello {{1}}, your table for tonight at our restaurant is ready.",
    )
    .await;
    fill("body_examples", "Maria").await;
    fill("footer", "Parley Bistro").await;
    c.find(Locator::Css("select[name=button1_type] option[value=QUICK_REPLY], select[name=button1_type] option:nth-child(2)"))
        .await
        .expect("option")
        .click()
        .await
        .expect("select");
    fill("button1_text", "On my way").await;
    // The live preview substitutes the example.
    browser
        .wait_text("Hello Maria, your table for tonight at our restaurant is ready.")
        .await;
    browser.wait_text("On my way").await;
    c.find(Locator::Css("#submit"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    browser.wait_css("#status").await;
    browser.wait_text("PENDING").await;
    browser
        .wait_text("Hello Maria, your table for tonight at our restaurant is ready.")
        .await;
    app.advance_review().await;
    let mut approved = false;
    for _ in 0..100 {
        c.refresh().await.expect("reload");
        let status = browser
            .wait_css("#status")
            .await
            .text()
            .await
            .expect("text");
        if status == "APPROVED" {
            approved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(approved, "the console never showed APPROVED");
    assert_eq!(browser.csp_violations().await, Vec::<String>::new());
    let _ = c.clone().close().await;
}

/// LOCATION headers: created like the others, sent with `latitude,longitude|name|address`,
/// and a value that is no location is refused before any call to Meta.
#[tokio::test]
async fn a_location_header_template_is_created_and_sent() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let t = app
        .create_template(&json!({"name": "pickup_point", "language": "en", "category": "UTILITY",
            "components": [
                {"type": "HEADER", "format": "LOCATION"},
                {"type": "BODY", "text": "Your parcel waits for you at this pickup point until Friday."}
            ]}))
        .await;
    app.advance_review().await;
    app.wait_template(t["id"].as_str().expect("id"), "APPROVED")
        .await;
    let (status, v) = app
        .api(
            reqwest::Method::POST,
            "/api/v1/messages",
            Some(
                &json!({"to": phone, "template": {"name": "pickup_point", "language": "en",
                "variables": {"header": "Berlin"}}}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "variable_format", "{v}");
    assert_eq!(v["error"]["field"], "template.variables.header", "{v}");
    app.assert_nothing_reached_meta("refused before Meta").await;

    let id = app
        .send(
            &json!({"to": phone, "template": {"name": "pickup_point", "language": "en",
            "variables": {"header": "52.5219,13.4132|Parley Shop|Alexanderplatz 1, Berlin"}}}),
        )
        .await;
    let m = app.wait_for_state(&id, "read").await;
    let wamid = m["wamid"].as_str().expect("wamid");
    let rec = app
        .sandbox_messages()
        .await
        .into_iter()
        .find(|r| r["wamid"] == wamid)
        .expect("recorded");
    assert_eq!(
        rec["request"]["template"]["components"][0],
        json!({"type": "header", "parameters": [{"type": "location", "location": {
            "latitude": 52.5219, "longitude": 13.4132, "name": "Parley Shop",
            "address": "Alexanderplatz 1, Berlin"}}]})
    );
}

/// The template names a console page's table links to, in order.
fn listed_names(html: &str) -> Vec<String> {
    html.split("<tr><td><a href=\"/templates/")
        .skip(1)
        .map(|row| {
            let name = &row[row.find('>').expect("link") + 1..];
            name[..name.find('<').expect("end")].to_owned()
        })
        .collect()
}

/// The href of the element with this id.
fn link(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = html[..at].rfind("href=\"")? + "href=\"".len();
    Some(
        html[start..]
            .split('"')
            .next()?
            .replace("&#38;", "&")
            .replace("&amp;", "&"),
    )
}

#[tokio::test]
async fn the_console_pages_many_templates_keeping_the_filter_and_the_overview_links_to_them() {
    use parley_domain::{TemplateId, TemplateName, TemplateStatus};
    let app = spawn_app().await;
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let existing = app.store.templates(&application).await.expect("templates");
    let demo = existing.len();
    let model = existing[0].clone();
    for i in 0..70 {
        let mut t = model.clone();
        t.id = TemplateId::new();
        t.meta_id = None;
        t.template.name = TemplateName::parse(&format!("bulk_{i:03}")).expect("name");
        t.template.status = TemplateStatus::parse(if i % 2 == 0 { "APPROVED" } else { "PAUSED" });
        app.store.upsert_template(&t).await.expect("upsert");
    }
    let cookie = console_cookie(&app).await;

    // Unfiltered: 50, then the rest, each once, in name order.
    let (status, first) = console_page(&app, &cookie, "/templates").await;
    assert_eq!(status, 200);
    let mut seen = listed_names(&first);
    assert_eq!(seen.len(), 50, "{first}");
    let next = link(&first, "templates-next").expect("a next page");
    let (_, second) = console_page(&app, &cookie, &next).await;
    seen.extend(listed_names(&second));
    assert!(link(&second, "templates-next").is_none(), "{second}");
    assert_eq!(seen.len(), 70 + demo, "{seen:?}");
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "no template twice: {seen:?}");

    // Filtered: the next link keeps the filter.
    let (_, first) = console_page(&app, &cookie, "/templates?status=PAUSED&name=bulk").await;
    let names = listed_names(&first);
    assert_eq!(names.len(), 35, "{names:?}");
    assert!(link(&first, "templates-next").is_none());
    let (_, first) = console_page(&app, &cookie, "/templates?name=bulk").await;
    let next = link(&first, "templates-next").expect("a next page");
    assert!(next.contains("name=bulk"), "{next}");
    let (_, second) = console_page(&app, &cookie, &next).await;
    let rest = listed_names(&second);
    assert_eq!(rest.len(), 20, "{rest:?}");
    assert!(rest.iter().all(|n| n.starts_with("bulk_")), "{rest:?}");

    // A cursor no longer in the list starts again from the first page.
    let (status, page) = console_page(&app, &cookie, "/templates?after=tpl_gone").await;
    assert_eq!(status, 200);
    assert_eq!(listed_names(&page).len(), 50);

    // The overview shows the first 20 and links to all of them.
    let (_, overview) = console_page(&app, &cookie, "/").await;
    let all = link(&overview, "templates-all").expect("a link to all templates");
    assert_eq!(all, "/templates");
    assert!(
        overview.contains(&format!("All {} templates", 70 + demo)),
        "{overview}"
    );

    // The API pages the same list.
    let (status, page) = app
        .api(
            reqwest::Method::GET,
            "/api/v1/templates?name=bulk&limit=60",
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().expect("data").len(), 60);
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let (_, page) = app
        .api(
            reqwest::Method::GET,
            &format!("/api/v1/templates?name=bulk&limit=60&after={cursor}"),
            None,
        )
        .await;
    assert_eq!(page["data"].as_array().expect("data").len(), 10);
    assert!(page["next_cursor"].is_null(), "{page}");
}
