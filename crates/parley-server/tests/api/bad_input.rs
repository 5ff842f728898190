//! Each bad request gets a 4xx with a stable code and a helpful message, and nothing reaches
//! Meta.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn expect_error(app: &TestApp, body: &Value, status: u16, code: &str) -> Value {
    let resp = app.post_message(body).await;
    assert_eq!(resp.status().as_u16(), status, "for {body}");
    let v: Value = resp.json().await.expect("json error body");
    assert_eq!(v["error"]["code"], code, "for {body}: {v}");
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| m.len() > 20),
        "message should explain: {v}"
    );
    v
}

#[tokio::test]
async fn refusals_happen_before_any_call_to_meta() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let v = expect_error(
        &app,
        &json!({"to": phone, "template": {"name": "no_such_template", "language": "en"}}),
        422,
        "template_not_found",
    )
    .await;
    assert_eq!(v["error"]["field"], "template.name");
    expect_error(
        &app,
        &json!({"to": phone, "template": {"name": "welcome", "language": "de"}}),
        422,
        "template_not_found",
    )
    .await;
    let v = expect_error(
        &app,
        &json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {}}}),
        422,
        "variable_missing",
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("first_name"),
        "{v}"
    );
    expect_error(
        &app,
        &json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A", "surname": "B"}}}),
        422,
        "variable_unknown",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "template": {"name": "order_update", "language": "en", "variables": ["only one"]}}),
        422,
        "variable_count_mismatch",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "template": {"name": "spring_sale", "language": "en", "variables": {
            "header": "not a link", "1": "a", "2": "b", "3": "c", "button.0": "d"}}}),
        422,
        "variable_format",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": true}}}),
        400,
        "invalid_variables",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "{{nickname|CapitalizeFirst}}"}}}),
        422,
        "personalization_failed",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "{{first_name|Shout|x}}"}}}),
        422,
        "expression_invalid",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": {"nested": true}}}}),
        400,
        "invalid_variables",
    )
    .await;
    let v = expect_error(
        &app,
        &json!({"to": "0151 1234567", "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}),
        400,
        "invalid_phone_number",
    )
    .await;
    assert_eq!(v["error"]["field"], "to");
    expect_error(
        &app,
        &json!({"to": "+12", "text": "hi"}),
        400,
        "invalid_phone_number",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "text": "hi"}),
        422,
        "outside_service_window",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "text": "   "}),
        400,
        "text_empty",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "text": "x".repeat(4097)}),
        400,
        "text_too_long",
    )
    .await;
    expect_error(&app, &json!({"to": phone}), 400, "message_content_missing").await;
    expect_error(
        &app,
        &json!({"to": phone, "text": "a", "template": {"name": "welcome", "language": "en"}}),
        400,
        "ambiguous_message",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "txet": "typo"}),
        400,
        "invalid_body",
    )
    .await;
    expect_error(
        &app,
        &json!({"to": phone, "phone_number_id": "999", "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}),
        404,
        "phone_number_not_found",
    )
    .await;
    // Not Meta's digits: parsed at the edge, refused the same way.
    expect_error(
        &app,
        &json!({"to": phone, "phone_number_id": "pn-1", "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}}),
        404,
        "phone_number_not_found",
    )
    .await;

    // Malformed JSON, wrong content type, oversized body.
    let raw = |body: Vec<u8>, ctype: &'static str| {
        app.http
            .post(format!("{}/api/v1/messages", app.url))
            .bearer_auth(&app.token)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let r = raw(b"{not json".to_vec(), "application/json")
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "invalid_json"
    );
    let r = raw(b"{}".to_vec(), "text/plain").await.expect("send");
    assert_eq!(r.status(), 415);
    let big =
        serde_json::to_vec(&json!({"to": phone, "text": "x".repeat(300 * 1024)})).expect("json");
    let r = raw(big, "application/json").await.expect("send");
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "body_too_large"
    );

    app.assert_nothing_reached_meta("refused at the edge").await;
    let list: Value = app
        .http
        .get(format!("{}/api/v1/messages", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"], json!([]), "nothing was stored either");
}

#[tokio::test]
async fn missing_or_wrong_token_is_401() {
    let app = spawn_app().await;
    let url = format!("{}/api/v1/messages", app.url);
    let body = json!({"to": "+4915112345678", "text": "hi"});
    let r = app.http.post(&url).json(&body).send().await.expect("send");
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "unauthorized");
    let r = app
        .http
        .post(&url)
        .bearer_auth("pk_wrong")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .get(format!("{}/api/v1/messages/msg_0123", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    let r = app
        .http
        .get(format!("{}/api/v1/nope", app.url))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "route_not_found"
    );
}

#[tokio::test]
async fn a_reply_to_that_is_no_wamid_is_refused_at_the_edge_and_a_good_one_is_kept() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let send = |reply_to: Value| {
        json!({"to": phone, "reply_to": reply_to,
               "template": {"name": "welcome", "language": "en",
                            "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}}})
    };
    for bad in [json!(""), json!("w".repeat(513))] {
        let v = expect_error(&app, &send(bad), 400, "invalid_reply_to").await;
        assert_eq!(v["error"]["field"], "reply_to");
    }
    app.assert_nothing_reached_meta("refused at the edge").await;

    let id = app
        .send(&send(json!("wamid.HBgLNDkxNTExMDAwNzkxORUCABIYFDNB")))
        .await;
    let message = app.get_message(&id).await;
    assert_eq!(
        message["reply_to"],
        "wamid.HBgLNDkxNTExMDAwNzkxORUCABIYFDNB"
    );
}

#[tokio::test]
async fn an_id_in_a_path_that_is_no_id_or_nobodys_gets_that_resources_404() {
    let app = spawn_app().await;
    let long = "x".repeat(10_000);
    let cases: [(&str, &str, &str); 6] = [
        ("GET", "/api/v1/campaigns/{}", "campaign_not_found"),
        ("POST", "/api/v1/campaigns/{}/start", "campaign_not_found"),
        ("GET", "/api/v1/templates/{}", "template_not_found"),
        ("GET", "/api/v1/segments/{}", "segment_not_found"),
        ("GET", "/api/v1/contacts/import/{}", "import_not_found"),
        (
            "GET",
            "/api/v1/contacts/import/{}/rejected",
            "import_not_found",
        ),
    ];
    let prefix = |code: &str| match code {
        "campaign_not_found" => "cmp_",
        "template_not_found" => "tpl_",
        "segment_not_found" => "seg_",
        _ => "imp_",
    };
    for (method, path, code) in cases {
        // Not an id at all, an absurdly long one, and a well-formed id nothing has.
        let missing = format!("{}0190f0e0c6a87b3c9d2e4f5a6b7c8d9e", prefix(code));
        for id in ["nope", long.as_str(), missing.as_str()] {
            let path = path.replace("{}", id);
            let (status, v) = app
                .api_call(method.parse().expect("method"), &path, None)
                .await;
            assert_eq!(status, 404, "{method} {}: {v}", &path[..path.len().min(80)]);
            assert_eq!(
                v["error"]["code"],
                code,
                "{method} {}",
                &path[..path.len().min(80)]
            );
        }
    }
}
