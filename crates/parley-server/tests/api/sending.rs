use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn capitalize_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[tokio::test]
async fn personalized_template_send_reaches_read_with_meta_shaped_request() {
    let app = spawn_app().await;
    let (phone, first) = app.contact(0).await;
    let id = app
        .send(&json!({
            "to": phone,
            "template": {"name": "welcome", "language": "en",
                         "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}}
        }))
        .await;
    // Meta's acceptance is written by the sender's recorder in batches (up to 200 ms later),
    // so the statuses of the sandbox's instant webhooks may land first: wait for both.
    let m = app
        .wait_for_message(&id, "read, with its acceptance recorded", |m| {
            m["state"] == "read" && m["timestamps"]["accepted"].is_string()
        })
        .await;
    let expected = capitalize_first(&first);
    assert_eq!(m["content"]["body"][0]["text"], expected.as_str(), "{m}");
    assert_eq!(m["content"]["body"][0]["parameter_name"], "first_name");
    let wamid = m["wamid"].as_str().expect("wamid");
    assert!(wamid.starts_with("wamid."));
    for step in ["queued", "sending", "accepted", "sent", "delivered", "read"] {
        assert!(m["timestamps"][step].is_string(), "no {step} time: {m}");
    }
    assert!(m["error"].is_null());

    // What Meta received is exactly Meta's documented shape.
    let sent = app.sandbox_messages().await;
    let rec = sent.iter().find(|r| r["wamid"] == wamid).expect("recorded");
    assert_eq!(
        rec["request"],
        json!({
            "messaging_product": "whatsapp", "recipient_type": "individual",
            "to": phone, "type": "template", "biz_opaque_callback_data": id,
            "template": {"name": "welcome", "language": {"code": "en"}, "components": [
                {"type": "body", "parameters": [{"type": "text", "parameter_name": "first_name", "text": expected}]}
            ]}
        })
    );
}

#[tokio::test]
async fn positional_template_with_media_header_and_url_button() {
    let app = spawn_app().await;
    let (phone, first) = app.contact(1).await;
    let id = app
        .send(&json!({
            "to": phone,
            "template": {"name": "spring_sale", "language": "en", "variables": {
                "header": "https://img.example.com/spring.jpg",
                "1": "{{first_name|CapitalizeFirst|friend}}",
                "2": "20%",
                "3": "31 May",
                "button.0": "{{plan|lowercase|all}}"
            }}
        }))
        .await;
    let m = app.wait_for_state(&id, "read").await;
    let wamid = m["wamid"].as_str().expect("wamid");
    let rec = app
        .sandbox_messages()
        .await
        .into_iter()
        .find(|r| r["wamid"] == wamid)
        .expect("recorded");
    let components = &rec["request"]["template"]["components"];
    assert_eq!(
        components[0],
        json!({"type": "header", "parameters": [{"type": "image", "image": {"link": "https://img.example.com/spring.jpg"}}]})
    );
    assert_eq!(
        components[1]["parameters"][0]["text"],
        capitalize_first(&first).as_str()
    );
    assert_eq!(
        components[1]["parameters"][1],
        json!({"type": "text", "text": "20%"})
    );
    assert_eq!(components[2]["type"], "button");
    assert_eq!(components[2]["sub_type"], "url");
    assert_eq!(components[2]["index"], "0");
    // `{{plan|lowercase|all}}` for this contact: its plan, lowercased, or `all` without one.
    let plan = match parley_engine::demo::demo_contacts(crate::helpers::CONTACTS)[1]
        .tags
        .get("plan")
    {
        Some(parley_domain::TagValue::String(p)) => p.to_lowercase(),
        None => "all".to_owned(),
        Some(other) => panic!("a plan that is no string: {other:?}"),
    };
    assert_eq!(
        components[2]["parameters"][0],
        json!({"type": "text", "text": plan})
    );
}

#[tokio::test]
async fn same_variables_as_a_list() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(2).await;
    let id = app
        .send(&json!({
            "to": phone,
            "template": {"name": "order_update", "language": "en",
                         "variables": ["{{first_name|CapitalizeFirst|there}}", "A-1001"]}
        }))
        .await;
    let m = app.wait_for_state(&id, "read").await;
    assert_eq!(m["content"]["body"][1]["text"], "A-1001");
    assert_eq!(m["content"]["body"][1]["parameter_name"], "order_id");
}

#[tokio::test]
async fn transient_faults_are_retried_and_the_message_still_arrives() {
    let app = spawn_app().await;
    app.sandbox_post("/sandbox/faults", &json!({"fail_next": [131000, 130429]}))
        .await;
    let (phone, _) = app.contact(3).await;
    let id = app
        .send(
            &json!({"to": phone, "template": {"name": "welcome", "language": "en",
                      "variables": {"first_name": "Sam"}}}),
        )
        .await;
    let m = app.wait_for_state(&id, "read").await;
    assert_eq!(m["attempts"], 3, "{m}");
    assert!(m["error"].is_null(), "a recovered send keeps no error: {m}");
    let accepted: Vec<Value> = app
        .sandbox_messages()
        .await
        .into_iter()
        .filter(|r| {
            r["biz_opaque_callback_data"] == id.as_str()
                || r["request"]["biz_opaque_callback_data"] == id.as_str()
        })
        .collect();
    assert_eq!(accepted.len(), 1, "sent exactly once: {accepted:?}");
}

#[tokio::test]
async fn undeliverable_recipient_ends_failed_with_meta_code() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(4).await;
    app.sandbox_post("/sandbox/behaviour", &json!({"undeliverable": [phone]}))
        .await;
    let id = app
        .send(
            &json!({"to": phone, "template": {"name": "welcome", "language": "en",
                      "variables": {"first_name": "Kim"}}}),
        )
        .await;
    let m = app.wait_for_state(&id, "failed").await;
    assert_eq!(m["error"]["code"], 131026, "{m}");
    assert!(
        m["error"]["message"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(m["timestamps"]["failed"].is_string());
}

#[tokio::test]
async fn permanent_send_error_fails_at_once() {
    let app = spawn_app().await;
    app.sandbox_post("/sandbox/faults", &json!({"fail_next": [131026]}))
        .await;
    let (phone, _) = app.contact(5).await;
    let id = app
        .send(
            &json!({"to": phone, "template": {"name": "welcome", "language": "en",
                      "variables": {"first_name": "Kim"}}}),
        )
        .await;
    let m = app.wait_for_state(&id, "failed").await;
    assert_eq!(m["error"]["code"], 131026);
    assert_eq!(m["attempts"], 1);
}

#[tokio::test]
async fn free_text_only_inside_the_service_window() {
    let app = spawn_app().await;
    let (phone, first) = app.contact(6).await;
    let resp = app
        .post_message(&json!({"to": phone, "text": "Hello!"}))
        .await;
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "outside_service_window");
    app.assert_nothing_reached_meta("refused before any call to Meta")
        .await;

    // The customer writes; the window opens.
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": phone, "text": "Hi, is my order on its way?"}),
    )
    .await;
    let mut id = None;
    for _ in 0..100 {
        let resp = app
            .post_message(&json!({"to": phone, "text": "Hi {{first_name|CapitalizeFirst|there}}, yes it is!"}))
            .await;
        if resp.status() == 202 {
            let v: Value = resp.json().await.expect("json");
            id = v["id"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = id.expect("text accepted once the inbound webhook was processed");
    let m = app.wait_for_state(&id, "read").await;
    assert_eq!(
        m["content"]["body"],
        format!("Hi {}, yes it is!", capitalize_first(&first)).as_str()
    );
    // The one send Meta ever received is this one: the refused text never went, even later.
    let sends = app.sandbox_sends().await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["wamid"], m["wamid"], "{sends:?}");
}

#[tokio::test]
async fn idempotency_key_returns_the_first_message() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(7).await;
    let body = json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "Ann"}}});
    let send = || async {
        app.http
            .post(format!("{}/api/v1/messages", app.url))
            .bearer_auth(&app.token)
            .header("Idempotency-Key", "order-1001-welcome")
            .json(&body)
            .send()
            .await
            .expect("request")
    };
    let first = send().await;
    assert_eq!(first.status(), 202);
    let a: Value = first.json().await.expect("json");
    let second = send().await;
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let b: Value = second.json().await.expect("json");
    assert_eq!(a["id"], b["id"]);
    app.wait_for_state(a["id"].as_str().expect("id"), "read")
        .await;
    let list: Value = app
        .http
        .get(format!("{}/api/v1/messages?limit=10", app.url))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn message_list_is_paginated() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (phone, _) = app.contact(8 + i).await;
        ids.push(
            app.send(&json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "X"}}}))
                .await,
        );
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/api/v1/messages?limit=2", app.url);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value = app
            .http
            .get(url)
            .bearer_auth(&app.token)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        for m in page["data"].as_array().expect("data") {
            seen.push(m["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
}

/// Meta upgrades the number's throughput: the sender starts a fresh loop at the new rate and
/// keeps sending (the old loop, paced at 80 mps, ends).
#[tokio::test]
async fn a_throughput_upgrade_restarts_the_number_sender_and_sends_go_on() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let body = json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}});
    let first = app.send(&body).await;
    app.wait_for_state(&first, "read").await;
    app.sandbox_post(
        &format!(
            "/sandbox/phone_numbers/{}/limit",
            parley_sandbox::demo_ids::PHONE_NUMBER_ID
        ),
        &json!({"limit": "TIER_UNLIMITED", "event": "THROUGHPUT_UPGRADE"}),
    )
    .await;
    let mut upgraded = false;
    for _ in 0..200 {
        let v: Value = app
            .http
            .get(format!("{}/api/v1/phone-numbers", app.url))
            .bearer_auth(&app.token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if v["data"][0]["throughput_mps"] == 1000 {
            upgraded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        upgraded,
        "the upgrade webhook raised the number to 1,000 mps"
    );
    let (other, _) = app.contact(1).await;
    let second = app
        .send(&json!({"to": other, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "B"}}}))
        .await;
    app.wait_for_state(&second, "read").await;
}

/// Ten requests with one `Idempotency-Key` at once: one message, every answer names it, and
/// Meta receives one send.
#[tokio::test]
async fn one_idempotency_key_at_once_makes_one_message() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(8).await;
    let body = json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "Ann"}}});
    let send = || {
        app.http
            .post(format!("{}/api/v1/messages", app.url))
            .bearer_auth(&app.token)
            .header("Idempotency-Key", "order-2002-welcome")
            .json(&body)
            .send()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        tasks.spawn(send());
    }
    let mut ids = std::collections::HashSet::new();
    let mut replayed = 0;
    for answer in tasks.join_all().await {
        let answer = answer.expect("request");
        assert_eq!(answer.status(), 202);
        if answer.headers().get("idempotent-replayed").is_some() {
            replayed += 1;
        }
        let v: Value = answer.json().await.expect("json");
        ids.insert(v["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), 1, "one message for one key: {ids:?}");
    assert_eq!(replayed, 9, "all but the first are replays");
    let id = ids.into_iter().next().expect("id");
    let m = app.wait_for_state(&id, "read").await;
    let sends = app.sandbox_sends().await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["wamid"], m["wamid"]);
}

/// The same `Idempotency-Key` with another body is the same request to Parley: the first
/// message is returned (marked replayed) and the second body is neither stored nor sent.
#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_returns_the_first_message() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(9).await;
    let (other, _) = app.contact(10).await;
    let send = |to: &str, name: &str| {
        let body = json!({"to": to, "template": {"name": "welcome", "language": "en", "variables": {"first_name": name}}});
        let request = app
            .http
            .post(format!("{}/api/v1/messages", app.url))
            .bearer_auth(&app.token)
            .header("Idempotency-Key", "order-3003")
            .json(&body);
        async move { request.send().await.expect("request") }
    };
    let first = send(&phone, "Ann").await;
    assert_eq!(first.status(), 202);
    let a: Value = first.json().await.expect("json");
    let second = send(&other, "Bob").await;
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let b: Value = second.json().await.expect("json");
    assert_eq!(a["id"], b["id"]);
    let m = app
        .wait_for_state(a["id"].as_str().expect("id"), "read")
        .await;
    assert_eq!(m["to"], phone.as_str(), "{m}");
    assert_eq!(m["content"]["body"][0]["text"], "Ann", "{m}");
    let list = app
        .api_call(reqwest::Method::GET, "/api/v1/messages?limit=10", None)
        .await
        .1;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1), "{list}");
    let sends = app.sandbox_sends().await;
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0]["wamid"], m["wamid"]);
}

/// A send Meta does not answer holds back only its own message (and its contact's lane), not
/// the number: a message to someone else, sent after it, is accepted while the first one is
/// still waiting for Meta's answer. (A round used to wait for every send it started, so one
/// held answer stopped the number until the client's 30 s timeout.)
#[tokio::test]
async fn a_send_meta_holds_does_not_hold_back_the_numbers_other_messages() {
    let app = spawn_app().await;
    let (first, _) = app.contact(0).await;
    let (second, _) = app.contact(1).await;
    let welcome = |to: &str| json!({"to": to, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "A"}}});
    // Meta takes the first send and holds its answer for 20 s.
    app.sandbox_post(
        "/sandbox/faults",
        &json!({"timeout_rate": 1.0, "timeout_ms": 20_000}),
    )
    .await;
    let held = app.send(&welcome(&first)).await;
    let mut reached = false;
    for _ in 0..400 {
        if !app.sandbox_messages().await.is_empty() {
            reached = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reached, "the first send reached Meta");
    let r = app
        .http
        .delete(format!("{}/sandbox/faults", app.sandbox_url))
        .send()
        .await
        .expect("clear faults");
    assert!(r.status().is_success());

    let other = app.send(&welcome(&second)).await;
    // Accepted: Meta's answer written (its status webhooks may come first, naming our id).
    let m = app
        .wait_for_message(&other, "accepted", |m| {
            m["timestamps"]["accepted"].is_string()
        })
        .await;
    assert_eq!(m["to"], second.as_str(), "{m}");
    let h = app.get_message(&held).await;
    assert!(
        h["timestamps"]["accepted"].is_null(),
        "the first send's answer is still held when the second is accepted: {h}"
    );
}
