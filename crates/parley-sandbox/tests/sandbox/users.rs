//! Business-scoped user ids and usernames (META_2026 §3): BSUIDs on every messages webhook,
//! the "username adopted" switch that withholds the phone, `recipient` sends, 131062, identity
//! change system messages, and the parent-BSUID field names.

use parley_sandbox::demo_ids;
use reqwest::Method;
use serde_json::{Value, json};

use super::{CUSTOMER, CUSTOMER_DIGITS, assert_meta_error, eventually, spawn, test_config};

fn text_to(field: &str, to: &str, body: &str) -> Value {
    json!({"messaging_product": "whatsapp", "recipient_type": "individual", field: to,
        "type": "text", "text": {"body": body}})
}

#[tokio::test]
async fn a_username_hides_the_phone_and_a_bsuid_send_gets_metas_shape() {
    let sb = spawn(test_config()).await;
    let user = sb
        .control(
            &format!("users/{CUSTOMER}"),
            json!({"username": "ana.lima"}),
        )
        .await;
    let bsuid = user["bsuids"][demo_ids::BUSINESS_ID]
        .as_str()
        .expect("a BSUID in the demo portfolio")
        .to_owned();
    assert!(bsuid.starts_with("DE."), "{bsuid}");

    // Never exchanged by phone, not in the contact book: no `wa_id`, no `from`.
    sb.inbound(CUSTOMER, "hi, do you ship to Berlin?").await;
    let received = sb.received.clone();
    eventually("inbound", || !received.all().is_empty()).await;
    let value = sb.received.all()[0].0["entry"][0]["changes"][0]["value"].clone();
    assert_eq!(
        value["contacts"],
        json!([{"profile": {"name": "Ana Lima", "username": "ana.lima"}, "user_id": bsuid}])
    );
    let message = &value["messages"][0];
    assert!(message.get("from").is_none(), "{message}");
    assert_eq!(message["from_user_id"], bsuid.as_str());

    // A reply by BSUID: `recipient`, and the response names the user id, not a wa_id.
    let (status, body) = sb.send(&text_to("recipient", &bsuid, "Yes we do")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["contacts"],
        json!([{"input": bsuid, "user_id": bsuid}])
    );
    let wamid = body["messages"][0]["id"]
        .as_str()
        .expect("wamid")
        .to_owned();
    sb.advance(5).await;
    eventually("statuses", || received.statuses_of(&wamid).len() >= 2).await;
    for post in sb.received.all() {
        let value = &post.0["entry"][0]["changes"][0]["value"];
        if let Some(statuses) = value["statuses"].as_array() {
            for s in statuses {
                assert!(s.get("recipient_id").is_none(), "withheld: {s}");
                assert_eq!(s["recipient_user_id"], bsuid.as_str());
                assert!(s.get("_contact").is_none());
            }
            // The lean contacts seen in practice: no profile, no wa_id while withheld.
            assert_eq!(value["contacts"], json!([{"user_id": bsuid}]));
        }
    }

    // An altered BSUID fails; `to` wins over `recipient`.
    let (status, body) = sb
        .send(&text_to("recipient", &format!("{bsuid}0"), "x"))
        .await;
    assert_meta_error(status, &body, 400, 131009);
    let mut both = text_to("to", CUSTOMER, "by phone");
    both["recipient"] = json!(bsuid);
    let (status, body) = sb.send(&both).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["contacts"],
        json!([{"input": CUSTOMER, "wa_id": CUSTOMER_DIGITS}])
    );

    // Having messaged the number by phone, the business sees it again (the 30-day rule).
    let user = sb.control_get(&format!("users/{CUSTOMER}")).await;
    assert_eq!(user["phone_withheld"][demo_ids::PHONE_NUMBER_ID], false);
    let (_, body) = sb.send(&text_to("recipient", &bsuid, "again")).await;
    let again = body["messages"][0]["id"]
        .as_str()
        .expect("wamid")
        .to_owned();
    sb.advance(5).await;
    eventually("statuses", || !received.statuses_of(&again).is_empty()).await;
    let status = sb
        .received
        .statuses()
        .into_iter()
        .find(|s| s["id"] == again.as_str())
        .expect("a status");
    assert_eq!(status["recipient_id"], CUSTOMER_DIGITS);

    // `forget_phone` empties the 30 days and the contact book.
    let user = sb
        .control(
            &format!("users/{CUSTOMER}"),
            json!({"username": "ana.lima", "forget_phone": true}),
        )
        .await;
    assert_eq!(user["phone_withheld"][demo_ids::PHONE_NUMBER_ID], true);
}

#[tokio::test]
async fn authentication_templates_to_a_bsuid_fail_with_131062() {
    let sb = spawn(test_config()).await;
    let path = format!("/v23.0/{}/message_templates", demo_ids::WABA_ID);
    let (status, created) = sb
        .graph(
            Method::POST,
            &path,
            Some(
                json!({"name": "login_code", "language": "en_US", "category": "AUTHENTICATION",
                "components": [{"type": "BODY"}, {"type": "BUTTONS", "buttons": [
                    {"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]}]}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    sb.advance(11).await;
    let user = sb.control_get(&format!("users/{CUSTOMER}")).await;
    let bsuid = user["bsuids"][demo_ids::BUSINESS_ID]
        .as_str()
        .expect("bsuid")
        .to_owned();
    sb.inbound(CUSTOMER, "code please").await;
    let send = |field: &str, to: &str| {
        json!({"messaging_product": "whatsapp", field: to, "type": "template",
            "template": {"name": "login_code", "language": {"code": "en_US"}, "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "493817"}]},
                {"type": "button", "sub_type": "url", "index": "0",
                 "parameters": [{"type": "text", "text": "493817"}]}]}})
    };
    let (status, body) = sb.send(&send("recipient", &bsuid)).await;
    assert_meta_error(status, &body, 400, 131062);
    assert_eq!(
        body["error"]["message"],
        "(#131062) Business-scoped User ID (BSUID) recipients are not supported for this message."
    );
    let (status, body) = sb.send(&send("to", CUSTOMER)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn identity_changes_arrive_as_system_messages_without_contacts() {
    let mut config = test_config();
    config.behaviour.parent_bsuids = true;
    config.behaviour.parent_field = "parent_recipient_user_id".into();
    let sb = spawn(config).await;
    let before = sb.control_get(&format!("users/{CUSTOMER}")).await;
    let old_bsuid = before["bsuids"][demo_ids::BUSINESS_ID]
        .as_str()
        .expect("bsuid")
        .to_owned();

    let changed = sb
        .control(
            &format!("users/{CUSTOMER}/change_number"),
            json!({"new_phone": "+4915199999999"}),
        )
        .await;
    assert_eq!(changed["wa_id"], "4915199999999");
    let received = sb.received.clone();
    eventually("system message", || !received.all().is_empty()).await;
    let value = sb.received.all()[0].0["entry"][0]["changes"][0]["value"].clone();
    assert!(value.get("contacts").is_none(), "{value}");
    let message = &value["messages"][0];
    assert_eq!(message["type"], "system");
    assert_eq!(message["from"], CUSTOMER_DIGITS);
    let system = &message["system"];
    assert_eq!(system["type"], "user_changed_number");
    assert_eq!(system["wa_id"], "4915199999999");
    assert_eq!(system["previous_user_id"], old_bsuid.as_str());
    let new_bsuid = system["user_id"].as_str().expect("new bsuid").to_owned();
    assert_ne!(new_bsuid, old_bsuid);
    assert!(
        system["parent_user_id"]
            .as_str()
            .expect("parent")
            .contains(".ENT.")
    );
    assert!(system["previous_parent_user_id"].is_string());

    let changed = sb
        .control("users/+4915199999999/change_user_id", json!({}))
        .await;
    let third = changed["user_id"].as_str().expect("user id").to_owned();
    eventually("second system message", || received.all().len() >= 2).await;
    let value = sb.received.all()[1].0["entry"][0]["changes"][0]["value"].clone();
    let system = &value["messages"][0]["system"];
    assert_eq!(system["type"], "user_changed_user_id");
    assert_eq!(system["previous_user_id"], new_bsuid.as_str());
    assert_eq!(system["user_id"], third.as_str());
    assert!(system.get("wa_id").is_none());

    // Statuses name the parent under the configured (April 2026) field.
    let (status, body) = sb.send(&text_to("recipient", &third, "hello")).await;
    assert_eq!(status, 400, "outside the window: {body}");
    sb.inbound("+4915199999999", "hi").await;
    let (status, body) = sb.send(&text_to("recipient", &third, "hello")).await;
    assert_eq!(status, 200, "{body}");
    let wamid = body["messages"][0]["id"]
        .as_str()
        .expect("wamid")
        .to_owned();
    sb.advance(5).await;
    eventually("status", || !received.statuses_of(&wamid).is_empty()).await;
    let s = sb
        .received
        .statuses()
        .into_iter()
        .find(|s| s["id"] == wamid.as_str())
        .expect("status");
    assert!(
        s["parent_recipient_user_id"]
            .as_str()
            .expect("parent")
            .contains(".ENT.")
    );
    assert!(s.get("recipient_parent_user_id").is_none());
}

#[tokio::test]
async fn request_contact_info_buttons_follow_metas_rules() {
    let sb = spawn(test_config()).await;
    let path = format!("/v23.0/{}/message_templates", demo_ids::WABA_ID);
    let template = |name: &str, category: &str, button: Value| {
        json!({"name": name, "language": "en", "category": category, "components": [
            {"type": "BODY", "text": "Please share your number."},
            {"type": "BUTTONS", "buttons": [button]}]})
    };
    for (name, category, button) in [
        (
            "share_u",
            "UTILITY",
            json!({"type": "REQUEST_CONTACT_INFO"}),
        ),
        (
            "share_m",
            "MARKETING",
            json!({"type": "REQUEST_CONTACT_INFO", "text": "Share Contact Info"}),
        ),
    ] {
        let (status, body) = sb
            .graph(Method::POST, &path, Some(template(name, category, button)))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = sb
        .graph(
            Method::POST,
            &path,
            Some(template(
                "share_bad",
                "UTILITY",
                json!({"type": "REQUEST_CONTACT_INFO", "text": "Your number?"}),
            )),
        )
        .await;
    assert_meta_error(status, &body, 400, 100);
    // Approved, it is sent with no button parameters.
    sb.advance(11).await;
    let (status, body) = sb
        .send(
            &json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "template",
            "template": {"name": "share_u", "language": {"code": "en"}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
