//! Bounded work (#12 part 3): WhatsApp's size limits applied before anything is stored, a
//! renderer that stops at the limit, tag values with a size limit, and every request body
//! bounded.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// How many messages the application has (all pages).
async fn message_count(app: &TestApp) -> usize {
    let mut total = 0;
    let mut after = String::new();
    loop {
        let path = if after.is_empty() {
            "/api/v1/messages?limit=200".to_owned()
        } else {
            format!("/api/v1/messages?limit=200&after={after}")
        };
        let (status, page) = app.api_call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        total += page["data"].as_array().expect("data").len();
        match page["next_cursor"].as_str() {
            Some(c) => after = c.to_owned(),
            None => return total,
        }
    }
}

#[tokio::test]
async fn a_variable_that_repeats_a_long_tag_is_refused_naming_it_and_nothing_is_stored() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    // A tag of 900 characters is allowed; 250 copies of it would be 225,000.
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{phone}"),
            Some(&json!({"tags": {"first_name": "x".repeat(900)}})),
        )
        .await;
    assert!(status == 200 || status == 201, "{v}");
    let before = message_count(&app).await;
    let amplifier = "{{first_name}}".repeat(250);
    let body = json!({"to": phone, "template": {"name": "welcome", "language": "en",
        "variables": {"first_name": amplifier}}});
    assert!(body.to_string().len() < 5_000, "a request of a few KB");
    let resp = app.post_message(&body).await;
    assert_eq!(resp.status().as_u16(), 422);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "variable_too_long", "{v}");
    assert_eq!(v["error"]["field"], "template.variables.first_name", "{v}");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("`first_name`") && message.contains("1024"),
        "{v}"
    );
    assert!(
        message.len() < 1_000,
        "the error does not echo the value: {v}"
    );
    assert_eq!(message_count(&app).await, before, "nothing was stored");

    // A literal value over 1,024 characters is refused the same way.
    let resp = app
        .post_message(
            &json!({"to": phone, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "y".repeat(1025)}}}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 422);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "variable_too_long", "{v}");
    assert_eq!(v["error"]["field"], "template.variables.first_name", "{v}");
    assert_eq!(message_count(&app).await, before, "nothing was stored");

    // The same value within the limit is sent.
    let resp = app
        .post_message(
            &json!({"to": phone, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "{{first_name}}"}}}),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(message_count(&app).await, before + 1);
}

#[tokio::test]
async fn previews_are_bounded_and_name_the_variable() {
    let app = spawn_app().await;
    let contact = json!({"tags": {"t": "z".repeat(1000)}});
    // Free text: at most 4,096 characters once rendered.
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/personalize/preview",
            Some(&json!({"text": "{{t}}".repeat(1000), "contact": contact})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "text_too_long", "{v}");
    assert_eq!(v["error"]["field"], "text", "{v}");
    assert!(
        v.to_string().len() < 2_000,
        "no huge output: {}",
        v.to_string().len()
    );
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/personalize/preview",
            Some(&json!({"text": "{{t}}".repeat(4), "contact": contact})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["text"].as_str().map(|t| t.chars().count()), Some(4000));
    // A template: the variable is named.
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/personalize/preview",
            Some(&json!({"template": {"name": "welcome", "language": "en"},
                "variables": {"first_name": "{{t}}".repeat(300)}, "contact": contact})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "variable_too_long", "{v}");
    assert_eq!(v["error"]["field"], "variables.first_name", "{v}");
}

#[tokio::test]
async fn a_long_tag_value_is_refused_on_put_and_import() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{phone}"),
            Some(&json!({"tags": {"bio": "b".repeat(1025)}})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "tag_value_too_long", "{v}");
    assert_eq!(v["error"]["field"], "tags.bio", "{v}");
    let (status, v) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{phone}"),
            Some(&json!({"tags": {"langs": vec!["de"; 101]}})),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "tag_value_too_long", "{v}");
    let (_, stored) = app
        .api_call(Method::GET, &format!("/api/v1/contacts/{phone}"), None)
        .await;
    assert!(stored["tags"].get("bio").is_none(), "{stored}");
    assert!(stored["tags"].get("langs").is_none(), "{stored}");

    // An import rejects the row with its line and the reason; the other rows are taken.
    let csv = format!(
        "phone,bio\n+4917000000101,short\n+4917000000102,{}\n",
        "b".repeat(1025)
    );
    let done = crate::audience::import(&app, "format=csv", &csv).await;
    assert_eq!(done["created"], 1, "{done}");
    assert_eq!(done["rejected"], 1, "{done}");
    let text = rejected_csv(&app, done["id"].as_str().expect("id")).await;
    let line = text.lines().nth(1).expect("a rejected row");
    assert!(line.starts_with("3,") && line.contains("1024"), "{text}");
    assert!(
        text.len() < 6_000,
        "the row is kept truncated: {}",
        text.len()
    );
}

/// The rejected rows of an import, as the CSV download gives them.
pub(crate) async fn rejected_csv(app: &TestApp, id: &str) -> String {
    app.http
        .get(format!("{}/api/v1/contacts/import/{id}/rejected", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("rejected")
        .text()
        .await
        .expect("text")
}
