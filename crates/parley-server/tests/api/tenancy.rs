//! Two applications, two tokens: every route of the API (walked from the OpenAPI document, so
//! a new route is tried as soon as it is documented) is called by application B with
//! application A's ids, for reads and writes. Each answers 404, never 403 or 2xx, and A's
//! resources, Meta's side and A's lists are unchanged afterwards.

use std::collections::BTreeMap;

use parley_domain::{AccountId, ApplicationId};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// A's resources, by the path parameter a route names them with.
struct Owned {
    message: String,
    campaign: String,
    platform: String,
    template: String,
    segment: String,
    import: String,
    /// A seeded contact's phone, URL-encoded (`%2B49…`).
    contact: String,
    /// A's phone number id (bodies name it).
    phone_number_id: String,
    /// A's API token's id (`tok_…`), not the token.
    token: String,
    /// A's event endpoint (`ep_…`) and one of its deliveries (`dlv_…`).
    event_endpoint: String,
    delivery: String,
}

impl Owned {
    /// The id of A's to put in `path`'s `{param}`; panics for a route this test does not
    /// know yet, so a new resource cannot slip through untried.
    fn id_for(&self, path: &str, param: &str) -> &str {
        let resource = path.trim_start_matches("/api/v1/");
        match (resource.split('/').next().unwrap_or_default(), param) {
            ("messages", "id") => &self.message,
            ("campaigns", "id") => &self.campaign,
            ("platforms", "id") => &self.platform,
            ("templates", "id") => &self.template,
            ("segments", "id") => &self.segment,
            ("contacts", "job") => &self.import,
            ("contacts", "phone") => &self.contact,
            ("conversations", "contact") => &self.contact,
            ("tokens", "id") => &self.token,
            ("event-endpoints", "id") => &self.event_endpoint,
            ("event-endpoints", "delivery") => &self.delivery,
            _ => panic!(
                "{path}: a route with {{{param}}} this isolation test does not know: add which of A's ids to try"
            ),
        }
    }
}

/// Application B of another account, with its own token (no platform, no contacts).
async fn second_application(app: &TestApp) -> String {
    let now = 1_750_000_000_000;
    let account = AccountId::new();
    app.store
        .create_account(&account, "Other Co", now)
        .await
        .expect("account");
    let application = ApplicationId::new();
    app.store
        .create_application(&application, &account, "Other app", now)
        .await
        .expect("application");
    let token = parley_engine::auth::generate_api_token();
    app.store
        .add_api_token(
            &application,
            &parley_engine::auth::hash_api_token(&token),
            "other",
            now,
        )
        .await
        .expect("token");
    token
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.url))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn a_get(app: &TestApp, path: &str) -> Value {
    let (status, v) = call(app, &app.token, Method::GET, path, None).await;
    assert_eq!(status, 200, "A's own GET {path}: {v}");
    v
}

/// What A sees of its resources: compared before and after B's attempts.
async fn snapshot(app: &TestApp, a: &Owned) -> BTreeMap<String, Value> {
    let mut seen = BTreeMap::new();
    for path in [
        format!("/api/v1/messages/{}", a.message),
        format!("/api/v1/campaigns/{}", a.campaign),
        format!("/api/v1/campaigns/{}/stats", a.campaign),
        format!("/api/v1/platforms/{}", a.platform),
        format!("/api/v1/templates/{}", a.template),
        format!("/api/v1/segments/{}", a.segment),
        format!("/api/v1/contacts/import/{}", a.import),
        format!("/api/v1/contacts/{}", a.contact),
        format!("/api/v1/contacts/{}/messages", a.contact),
        format!("/api/v1/conversations/{}", a.contact),
        format!("/api/v1/conversations/{}/messages", a.contact),
        "/api/v1/conversations".to_owned(),
        "/api/v1/campaigns".to_owned(),
        "/api/v1/templates?limit=100".to_owned(),
        "/api/v1/segments".to_owned(),
        "/api/v1/platforms".to_owned(),
        "/api/v1/phone-numbers".to_owned(),
        "/api/v1/contacts?limit=100".to_owned(),
        "/api/v1/settings/opt-out".to_owned(),
        "/api/v1/pricing/rates".to_owned(),
        "/api/v1/stats?group_by=campaign&interval=month".to_owned(),
        format!("/api/v1/event-endpoints/{}", a.event_endpoint),
    ] {
        let v = a_get(app, &path).await;
        seen.insert(path, v);
    }
    seen
}

/// The Graph calls that change something at Meta (everything but reads).
async fn meta_writes(app: &TestApp) -> Vec<Value> {
    let log = app.sandbox_requests("").await;
    log["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|r| r["method"] != "GET")
        .cloned()
        .collect()
}

/// A body that passes each route's own checks, so that only ownership can refuse it.
fn body_for(method: &str, path: &str, a: &Owned) -> Option<Value> {
    match (method, path) {
        ("patch", "/api/v1/templates/{id}") => Some(json!({"category": "MARKETING"})),
        ("put", "/api/v1/contacts/{phone}") => Some(json!({"tags": {"city": "Elsewhere"}})),
        ("post", "/api/v1/conversations/{contact}/messages") => Some(json!({
            "template": {"name": "welcome", "language": "en", "variables": {"first_name": "B"}}
        })),
        ("put", "/api/v1/conversations/{contact}/assignee") => Some(json!({"user_id": null})),
        ("post", "/api/v1/messages") => Some(json!({
            "to": "+4915199990000", "phone_number_id": a.phone_number_id,
            "template": {"name": "welcome", "language": "en", "variables": {"first_name": "B"}}
        })),
        ("post", "/api/v1/campaigns") => Some(json!({
            "name": "B's", "phone_number_id": a.phone_number_id, "type": "marketing",
            "template": {"name": "welcome", "language": "en", "variables": {"first_name": "B"}},
            "audience": {"filter": "all"}
        })),
        ("post", "/api/v1/templates") => Some(json!({
            "platform_id": a.platform, "name": "b_template", "language": "en",
            "category": "UTILITY", "components": [{"type": "BODY", "text": "Hello"}]
        })),
        ("post", "/api/v1/personalize/preview") => Some(json!({
            "text": "Hi {{first_name}}", "contact": a.contact.replace("%2B", "+")
        })),
        ("post", "/api/v1/segments/preview") => Some(json!({"filter": "all"})),
        ("post", "/api/v1/segments") => Some(json!({"name": "B's", "filter": "all"})),
        ("post", "/api/v1/applications") => Some(json!({"name": "B's second"})),
        ("post", "/api/v1/tokens") => Some(json!({"label": "B's", "scopes": ["read"]})),
        ("put", "/api/v1/settings/opt-out") => Some(json!({"keywords": ["halt"]})),
        ("put", "/api/v1/pricing/rates") => Some(json!({
            "currency": "EUR", "effective_date": "2026-10-01", "default_market": "all",
            "markets": [{"id": "all", "marketing": "0.05", "utility": "0.01",
                         "authentication": "0.01", "service": "0.01"}]
        })),
        ("post", "/api/v1/event-endpoints") => Some(json!({
            "url": "https://example.com/b", "event_types": ["contact.updated"]
        })),
        ("patch", "/api/v1/event-endpoints/{id}") => Some(json!({"enabled": false})),
        ("post", "/api/v1/event-endpoints/{id}/replay") => {
            Some(json!({"since": "2020-01-01T00:00:00Z"}))
        }
        ("post", "/api/v1/platforms/{id}/request_code") => {
            Some(json!({"code_method": "SMS", "language": "en_US"}))
        }
        ("post", "/api/v1/platforms/{id}/verify_code") => Some(json!({"code": "123456"})),
        ("patch", "/api/v1/platforms/{id}") => Some(json!({"marketing_messages": false})),
        ("post", "/api/v1/platforms/{id}/phone_numbers") => Some(json!({
            "cc": "1", "phone_number": "4195551518", "verified_name": "B's number"
        })),
        _ => None,
    }
}

#[tokio::test]
async fn another_applications_ids_are_404_on_every_route_and_change_nothing() {
    let app = spawn_app().await;
    let other = second_application(&app).await;

    // A's resources, one of each.
    let (phone, first_name) = app.contact(0).await;
    let message = app
        .send(&json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}))
        .await;
    // Settled (read), so that A's snapshot cannot move on its own.
    // Meta's statuses can outrun Parley's record of the acceptance (they are folded in): wait
    // for both.
    app.wait_for_message(&message, "read and accepted", |m| {
        m["state"] == "read" && !m["timestamps"]["accepted"].is_null()
    })
    .await;
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/campaigns",
            Some(&json!({
                "name": "A's", "type": "marketing",
                "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}},
                "audience": {"filter": "all"}, "scheduled_at": "2099-01-01T09:00:00Z"
            })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let campaign = v["id"].as_str().expect("id").to_owned();
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/segments",
            Some(&json!({"name": "A's", "filter": "all"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let segment = v["id"].as_str().expect("id").to_owned();
    let resp = app
        .http
        .post(format!("{}/api/v1/contacts/import", app.url))
        .bearer_auth(&app.token)
        .body("phone,city\n+4915100001111,Berlin\n")
        .send()
        .await
        .expect("import");
    assert_eq!(resp.status(), 202);
    let import = resp.json::<Value>().await.expect("json")["job_id"]
        .as_str()
        .expect("job")
        .to_owned();
    for _ in 0..300 {
        if a_get(&app, &format!("/api/v1/contacts/import/{import}")).await["state"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let platforms = a_get(&app, "/api/v1/platforms").await;
    let platform = platforms["data"][0]["id"]
        .as_str()
        .expect("platform")
        .to_owned();
    let templates = a_get(&app, "/api/v1/templates?limit=100").await;
    let template = templates["data"][0]["id"]
        .as_str()
        .expect("template")
        .to_owned();
    let numbers = a_get(&app, "/api/v1/phone-numbers").await;
    let phone_number_id = numbers["data"][0]["phone_number_id"]
        .as_str()
        .expect("number")
        .to_owned();
    let tokens = a_get(&app, "/api/v1/tokens").await;
    let token = tokens["data"][0]["id"]
        .as_str()
        .expect("token id")
        .to_owned();
    // A's event endpoint (a public address nobody answers at here) and a delivery to it.
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/event-endpoints",
            Some(&json!({"url": "https://example.com/a", "event_types": ["contact.updated"]})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let event_endpoint = v["id"].as_str().expect("endpoint").to_owned();
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{}", phone.replace('+', "%2B")),
            Some(&json!({"tags": {"city": "Here"}})),
        )
        .await;
    assert!(status < 300, "{v}");
    let mut delivery = String::new();
    for _ in 0..300 {
        let v = a_get(
            &app,
            &format!("/api/v1/event-endpoints/{event_endpoint}/deliveries"),
        )
        .await;
        if let Some(id) = v["data"][0]["id"].as_str()
            && v["data"][0]["attempts"].as_i64() >= Some(1)
        {
            delivery = id.to_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!delivery.is_empty(), "A's delivery was made and tried");
    // Disabled, so that nothing moves it while B tries: A's snapshot must stay still.
    let (status, v) = app
        .api_call(
            Method::PATCH,
            &format!("/api/v1/event-endpoints/{event_endpoint}"),
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let a = Owned {
        event_endpoint,
        delivery,
        message,
        campaign,
        platform,
        template,
        segment,
        import,
        contact: phone.replace('+', "%2B"),
        phone_number_id,
        token,
    };
    let before = snapshot(&app, &a).await;
    let writes_before = meta_writes(&app).await;
    // Strings that would show A's data leaking into B's answers.
    let a_marks: Vec<String> = vec![
        a.message.clone(),
        a.campaign.clone(),
        a.platform.clone(),
        a.template.clone(),
        a.segment.clone(),
        a.import.clone(),
        phone.trim_start_matches('+').to_owned(),
        a.phone_number_id.clone(),
        a.token.clone(),
        a.event_endpoint.clone(),
        a.delivery.clone(),
        format!("\"{first_name}\""),
    ];

    let doc = app.openapi().await;
    let mut tried = 0;
    let mut put_contact = None;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            // Meta's webhook and the operations endpoints belong to no application.
            if !path.starts_with("/api/v1/") {
                assert!(
                    ["/webhooks/whatsapp", "/healthz", "/readyz", "/metrics"]
                        .contains(&path.as_str()),
                    "{path}: outside /api/v1/ and not known to belong to no application"
                );
                continue;
            }
            let mut concrete = path.clone();
            let mut has_id = false;
            while let Some(start) = concrete.find('{') {
                let end = concrete[start..].find('}').expect("closing brace") + start;
                let param = &concrete[start + 1..end];
                let id = a.id_for(path, param).to_owned();
                concrete.replace_range(start..=end, &id);
                has_id = true;
            }
            let verb = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = body_for(method, path, &a);
            // B's own contact with A's phone is B's business (contacts are per application,
            // keyed by phone): tried last, once every other route has run without it.
            if (method, path.as_str()) == ("put", "/api/v1/contacts/{phone}") {
                put_contact = Some((concrete, body));
                continue;
            }
            let (status, v) = match (method, path.as_str()) {
                // Uploads and imports take raw bodies.
                ("post", "/api/v1/media/uploads") => {
                    let resp = app
                        .http
                        .post(format!(
                            "{}/api/v1/media/uploads?file_name=x.png&platform_id={}",
                            app.url, a.platform
                        ))
                        .bearer_auth(&other)
                        .header("content-type", "image/png")
                        .body(vec![0x89, b'P', b'N', b'G'])
                        .send()
                        .await
                        .expect("upload");
                    let status = resp.status().as_u16();
                    (status, resp.json().await.unwrap_or(Value::Null))
                }
                ("post", "/api/v1/contacts/import") => {
                    let resp = app
                        .http
                        .post(format!("{}/api/v1/contacts/import", app.url))
                        .bearer_auth(&other)
                        .body("phone,city\n+4915100002222,Rome\n")
                        .send()
                        .await
                        .expect("import");
                    let status = resp.status().as_u16();
                    (status, resp.json().await.unwrap_or(Value::Null))
                }
                ("delete", "/api/v1/templates") => {
                    call(&app, &other, verb, "/api/v1/templates?name=welcome", None).await
                }
                ("post", "/api/v1/platforms/whatsapp/signup") => {
                    let body = json!({
                        "code": "not-a-code", "event": "FINISH",
                        "waba_id": parley_sandbox::demo_ids::WABA_ID,
                        "phone_number_id": a.phone_number_id,
                        "business_id": parley_sandbox::demo_ids::BUSINESS_ID,
                    });
                    call(&app, &other, verb, path, Some(&body)).await
                }
                _ => call(&app, &other, verb, &concrete, body.as_ref()).await,
            };
            tried += 1;
            let what = format!("{} {path} as B: {status} {v}", method.to_uppercase());
            assert_ne!(
                status, 403,
                "{what}: another application's id is not found, not forbidden"
            );
            // A's data must not show, except the ids B itself sent (echoed in the error).
            let text = v.to_string();
            let sent = format!(
                "{concrete} {} {}",
                body.as_ref().map(Value::to_string).unwrap_or_default(),
                a.platform
            );
            for mark in &a_marks {
                if !sent.contains(mark.as_str()) {
                    assert!(!text.contains(mark.as_str()), "{what}: A's {mark} shows");
                }
            }
            if has_id {
                assert_eq!(status, 404, "{what}");
                continue;
            }
            match (method, path.as_str()) {
                // Meta's numbers for B's own platforms: none, so none of A's WABA is asked.
                ("get", "/api/v1/stats/meta") => {
                    assert_eq!(status, 200, "{what}");
                    assert_eq!(v["platforms"], json!([]), "{what}");
                }
                // B's own lists: nothing of A's (checked above), and they answer.
                ("get", _) => assert_eq!(status, 200, "{what}"),
                // Writes naming A's number, platform, template or contact: not found for B.
                ("post", "/api/v1/messages")
                | ("post", "/api/v1/campaigns")
                | ("post", "/api/v1/templates")
                | ("post", "/api/v1/media/uploads")
                | ("delete", "/api/v1/templates")
                | ("post", "/api/v1/personalize/preview") => {
                    assert_eq!(status, 404, "{what}")
                }
                // B's own: a segment, an import, a preview over B's contacts, a sync of B's
                // platforms (none).
                ("post", "/api/v1/templates/sync")
                | ("post", "/api/v1/segments")
                | ("post", "/api/v1/segments/preview")
                | ("post", "/api/v1/contacts/import")
                // B's own application (in B's account) and B's own token.
                | ("post", "/api/v1/applications")
                | ("post", "/api/v1/tokens")
                // B's own opt-out keywords (A's are in the snapshot, unchanged).
                | ("put", "/api/v1/settings/opt-out")
                // B's own price table (A's is in the snapshot, unchanged).
                | ("put", "/api/v1/pricing/rates")
                | ("delete", "/api/v1/pricing/rates")
                // B's own event endpoint.
                | ("post", "/api/v1/event-endpoints") => assert!(status < 300, "{what}"),
                // Another application's WABA: refused (its ownership is another test's),
                // never taken.
                ("post", "/api/v1/platforms/whatsapp/signup") => {
                    assert!(status >= 400, "{what}")
                }
                _ => panic!(
                    "{what}: a route this isolation test does not know yet: say what B may do"
                ),
            }
        }
    }
    let (path, body) = put_contact.expect("PUT /api/v1/contacts/{phone} is documented");
    let (status, v) = call(&app, &other, Method::PUT, &path, body.as_ref()).await;
    assert!(status < 300, "PUT {path} as B: {status} {v}");
    assert_eq!(
        v["tags"],
        json!({"city": "Elsewhere"}),
        "B's own contact, not A's: {v}"
    );
    tried += 1;
    // 39 operations when this was written; fewer means the document was not walked.
    assert!(tried >= 39, "only {tried} route calls tried");

    // Nothing of A's changed, and nothing reached Meta that writes (a disconnect, a
    // deregistration, a template edit or delete, a send).
    let after = snapshot(&app, &a).await;
    for (path, v) in &before {
        assert_eq!(&after[path], v, "A's {path} changed");
    }
    assert_eq!(
        meta_writes(&app).await,
        writes_before,
        "B's calls reached Meta"
    );
}
