//! Contact identity end to end (META_2026 §3, issue 14 item 1): a customer with a WhatsApp
//! username writes in with no phone in any webhook, Parley answers by business-scoped user id
//! (BSUID) inside the window, and the customer stays one contact with the whole history
//! through a number change and a BSUID change; a phone first seen on a status is kept; 131062
//! is explained; authentication templates never go to a BSUID alone.

use parley_sandbox::demo_ids;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const CUSTOMER: &str = "+4915112340001";
const CUSTOMER_DIGITS: &str = "4915112340001";
const NEW_NUMBER: &str = "+4915112340002";

impl TestApp {
    /// The sandbox user's BSUID in the demo portfolio.
    async fn sandbox_bsuid(&self, phone: &str) -> String {
        let v: Value = self
            .http
            .get(format!("{}/sandbox/users/{phone}", self.sandbox_url))
            .send()
            .await
            .expect("sandbox user")
            .json()
            .await
            .expect("json");
        v["bsuids"][demo_ids::BUSINESS_ID]
            .as_str()
            .expect("a BSUID")
            .to_owned()
    }

    /// Every messages webhook the sandbox delivered, as posted.
    async fn sandbox_webhook_payloads(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(format!("{}/sandbox/webhooks", self.sandbox_url))
            .send()
            .await
            .expect("sandbox webhooks")
            .json()
            .await
            .expect("json");
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|d| d["payload"].clone())
            .collect()
    }

    /// Contacts matching a segment filter.
    async fn contacts_where(&self, filter: &str) -> Vec<Value> {
        let (status, v) = self
            .api_call(
                Method::GET,
                &format!("/api/v1/contacts?filter={}&limit=500", urlencode(filter)),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v["data"].as_array().expect("data").clone()
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_username_customer_is_answered_by_bsuid_and_stays_one_contact_through_identity_changes() {
    let app = spawn_app().await;
    app.sandbox_post(
        &format!("/sandbox/users/{CUSTOMER}"),
        &json!({"username": "sheena.nelson"}),
    )
    .await;
    let bsuid = app.sandbox_bsuid(CUSTOMER).await;
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": CUSTOMER, "text": "Does it come in another color?", "name": "Sheena"}),
    )
    .await;
    let contact = app
        .wait_contact(&bsuid, "the inbound", |c| c["last_inbound_at"].is_string())
        .await;
    assert_eq!(contact["phone"], Value::Null, "{contact}");
    assert_eq!(contact["bsuid"], bsuid.as_str());
    assert_eq!(contact["username"], "sheena.nelson");
    assert_eq!(contact["name"], "Sheena");
    let id = contact["id"].as_str().expect("id").to_owned();

    // The answer goes by BSUID, inside the window (a free-form text).
    let message = app
        .send(&json!({"to": bsuid, "text": "Yes: blue and green."}))
        .await;
    let m = app
        .wait_for_message(&message, "delivered", |m| {
            matches!(m["state"].as_str(), Some("delivered" | "read"))
        })
        .await;
    assert_eq!(m["to"], bsuid.as_str(), "{m}");
    let sent = app.sandbox_messages().await;
    let request = &sent.last().expect("a send")["request"];
    assert_eq!(request["recipient"], bsuid.as_str(), "{request}");
    assert!(request.get("to").is_none(), "{request}");
    assert_eq!(request["recipient_type"], "individual");
    app.webhooks_processed().await;

    // No webhook ever carried the phone.
    for payload in app.sandbox_webhook_payloads().await {
        assert!(
            !payload.to_string().contains(CUSTOMER_DIGITS),
            "a webhook named the phone: {payload}"
        );
    }
    let with_bsuid = app.contacts_where("exists(bsuid)").await;
    assert_eq!(with_bsuid.len(), 1, "{with_bsuid:?}");
    assert_eq!(with_bsuid[0]["id"], id.as_str());
    let without_phone = app.contacts_where("not exists(phone)").await;
    assert!(
        without_phone.iter().any(|c| c["id"] == id.as_str()),
        "a BSUID-only contact has no phone: {without_phone:?}"
    );

    // The customer changes number: a new BSUID, the new phone shared, the same contact.
    app.sandbox_post(
        &format!("/sandbox/users/{CUSTOMER}/change_number"),
        &json!({"new_phone": NEW_NUMBER}),
    )
    .await;
    let second = app.sandbox_bsuid(NEW_NUMBER).await;
    assert_ne!(second, bsuid);
    let contact = app
        .wait_contact(&second, "the new BSUID", |c| c["phone"] == NEW_NUMBER)
        .await;
    assert_eq!(contact["id"], id.as_str(), "re-pointed, not a new contact");

    // Then Meta re-issues the BSUID: still the same contact, with the whole history.
    app.sandbox_post(
        &format!("/sandbox/users/{NEW_NUMBER}/change_user_id"),
        &json!({}),
    )
    .await;
    let third = app.sandbox_bsuid(NEW_NUMBER).await;
    assert_ne!(third, second);
    let contact = app
        .wait_contact(&third, "the third BSUID", |c| c["bsuid"] == third.as_str())
        .await;
    assert_eq!(contact["id"], id.as_str());
    assert_eq!(contact["phone"], NEW_NUMBER);
    assert_eq!(contact["username"], "sheena.nelson");
    let history: Vec<&str> = contact["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(history.contains(&message.as_str()), "{contact}");
    // The old BSUIDs name nobody now; the person is one contact.
    for old in [&bsuid, &second] {
        let (status, _) = app
            .api_call(Method::GET, &format!("/api/v1/contacts/{old}"), None)
            .await;
        assert_eq!(status, 404, "{old}");
    }
    assert_eq!(app.contacts_where("exists(bsuid)").await.len(), 1);

    // Writing again from the new number, the window follows the contact.
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": NEW_NUMBER, "text": "thanks"}),
    )
    .await;
    app.webhooks_processed().await;
    assert_eq!(app.contacts_where("exists(bsuid)").await.len(), 1);
    let again = app
        .send(&json!({"to": NEW_NUMBER, "text": "You're welcome"}))
        .await;
    app.wait_for_message(&again, "sent", |m| {
        matches!(m["state"].as_str(), Some("sent" | "delivered" | "read"))
    })
    .await;
}

#[tokio::test]
async fn a_phone_first_learnt_from_a_status_is_kept() {
    let app = spawn_app().await;
    // Known by BSUID only (created through the API); the user has no username, so Meta's
    // statuses name the phone.
    let bsuid = app.sandbox_bsuid(CUSTOMER).await;
    let (status, created) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{bsuid}"),
            Some(&json!({"name": "Pablo"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["phone"], Value::Null);
    assert_eq!(created["bsuid"], bsuid.as_str());
    let message = app
        .send(
            &json!({"to": bsuid, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}}}),
        )
        .await;
    app.wait_for_message(&message, "delivered", |m| {
        matches!(m["state"].as_str(), Some("delivered" | "read"))
    })
    .await;
    let sent = app.sandbox_messages().await;
    assert_eq!(
        sent.last().expect("a send")["request"]["recipient"],
        bsuid.as_str()
    );
    let contact = app
        .wait_contact(&bsuid, "the phone from a status", |c| {
            c["phone"] == CUSTOMER
        })
        .await;
    assert_eq!(contact["id"], created["id"]);
    assert_eq!(contact["bsuid"], bsuid.as_str());
    // The next send goes by phone, as Meta recommends.
    let next = app
        .send(
            &json!({"to": bsuid, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}}}),
        )
        .await;
    let m = app.wait_wamid(&next).await;
    let sent = app.sandbox_messages().await;
    let rec = sent
        .iter()
        .find(|r| r["wamid"] == m.as_str())
        .expect("recorded");
    assert_eq!(rec["request"]["to"], CUSTOMER, "{rec}");
    assert!(rec["request"].get("recipient").is_none());
}

#[tokio::test]
async fn error_131062_is_explained_and_authentication_templates_never_go_to_a_bsuid() {
    let app = spawn_app().await;
    let draft = json!({"name": "login_code", "language": "en", "category": "AUTHENTICATION",
    "components": [
        {"type": "BODY", "add_security_recommendation": true},
        {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copy code"}]}
    ]});
    let t = app.create_template(&draft).await;
    app.advance_review().await;
    app.wait_template(t["id"].as_str().expect("id"), "APPROVED")
        .await;
    let bsuid = app.sandbox_bsuid(CUSTOMER).await;
    app.api_call(
        Method::PUT,
        &format!("/api/v1/contacts/{bsuid}"),
        Some(&json!({})),
    )
    .await;
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/messages",
            Some(
                &json!({"to": bsuid, "template": {"name": "login_code", "language": "en",
                "variables": {"1": "493817", "button.0": "493817"}}}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "bsuid_recipient_not_supported", "{v}");
    app.assert_nothing_reached_meta("refused before Meta").await;

    // Meta's own 131062 (here for a marketing send Meta refuses to a BSUID): the message
    // fails with its code and what to do.
    app.sandbox_post("/sandbox/faults", &json!({"fail_next": [131062]}))
        .await;
    let id = app
        .send(
            &json!({"to": bsuid, "template": {"name": "welcome", "language": "en",
            "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}}}),
        )
        .await;
    let m = app.wait_for_state(&id, "failed").await;
    assert_eq!(m["error"]["code"], 131062, "{m}");
    let text = m["error"]["message"].as_str().expect("message");
    assert!(text.contains("business-scoped user id"), "{text}");
}

#[tokio::test]
async fn an_import_bsuid_column_links_or_creates_and_erasure_removes_every_identity() {
    let app = spawn_app().await;
    // A customer who wrote in by username first (known by BSUID only).
    app.sandbox_post(
        &format!("/sandbox/users/{CUSTOMER}"),
        &json!({"username": "ana"}),
    )
    .await;
    let bsuid = app.sandbox_bsuid(CUSTOMER).await;
    app.sandbox_post("/sandbox/inbound", &json!({"from": CUSTOMER, "text": "hi"}))
        .await;
    let written = app
        .wait_contact(&bsuid, "the inbound", |c| c["last_inbound_at"].is_string())
        .await;
    let csv = format!(
        "phone,bsuid,plan\n{CUSTOMER},{bsuid},pro\n,US.77777777777777777777,basic\n+4915112340009,,free\n,US.ENT.1,x\n"
    );
    let job = crate::audience::import(&app, "format=csv&map=plan:plan", &csv).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        job["rejected"], 1,
        "a parent BSUID is not a contact's own: {job}"
    );
    // The phone and BSUID of the first row are one person: the contact who wrote in.
    let c = app
        .wait_contact(&bsuid, "the imported phone", |c| c["phone"] == CUSTOMER)
        .await;
    assert_eq!(c["id"], written["id"], "{c}");
    assert_eq!(c["tags"]["plan"], "pro");
    assert_eq!(c["username"], "ana");
    // A BSUID-only row creates a contact known by it alone.
    let (status, only) = app
        .api_call(
            Method::GET,
            "/api/v1/contacts/US.77777777777777777777",
            None,
        )
        .await;
    assert_eq!(status, 200, "{only}");
    assert_eq!(only["phone"], Value::Null);
    assert_eq!(only["tags"]["plan"], "basic");

    // Erasure by the BSUID removes the phone, the BSUID and the username with the row.
    let (status, v) = app
        .api_call(Method::DELETE, &format!("/api/v1/contacts/{bsuid}"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    for key in [CUSTOMER, bsuid.as_str()] {
        let (status, _) = app
            .api_call(Method::GET, &format!("/api/v1/contacts/{key}"), None)
            .await;
        assert_eq!(status, 404, "{key}");
    }
}

#[tokio::test]
async fn a_request_contact_info_template_brings_the_phone_onto_the_contact() {
    let app = spawn_app().await;
    let draft = json!({"name": "share_number", "language": "en", "category": "UTILITY",
    "components": [
        {"type": "BODY", "text": "To send your order updates by SMS too, please share your number."},
        {"type": "BUTTONS", "buttons": [{"type": "REQUEST_CONTACT_INFO", "text": "Share Contact Info"}]}
    ]});
    let t = app.create_template(&draft).await;
    app.advance_review().await;
    app.wait_template(t["id"].as_str().expect("id"), "APPROVED")
        .await;
    let (status, v) = app
        .api_call(
            Method::POST,
            "/api/v1/templates",
            Some(&json!({"name": "bad_share", "language": "en", "category": "UTILITY",
                "components": [{"type": "BODY", "text": "Share?"},
                    {"type": "BUTTONS", "buttons": [{"type": "REQUEST_CONTACT_INFO", "text": "Give number"}]}]})),
        )
        .await;
    assert_eq!(status, 422, "{v}");

    app.sandbox_post(
        &format!("/sandbox/users/{CUSTOMER}"),
        &json!({"username": "kim"}),
    )
    .await;
    let bsuid = app.sandbox_bsuid(CUSTOMER).await;
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": CUSTOMER, "text": "hello"}),
    )
    .await;
    app.wait_contact(&bsuid, "the inbound", |c| c["last_inbound_at"].is_string())
        .await;
    let id = app
        .send(&json!({"to": bsuid, "template": {"name": "share_number", "language": "en"}}))
        .await;
    let wamid = app.wait_wamid(&id).await;
    let sent = app.sandbox_messages().await;
    let rec = sent
        .iter()
        .find(|r| r["wamid"] == wamid.as_str())
        .expect("recorded");
    assert_eq!(rec["request"]["recipient"], bsuid.as_str());
    // The customer taps the button: a `contacts` message with origin `contact_request`.
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": CUSTOMER, "message": {"type": "contacts", "contacts": [{
            "origin": "contact_request",
            "phones": [{"phone": "+49 151 12340001", "wa_id": CUSTOMER_DIGITS, "type": "MOBILE"}]}]}}),
    )
    .await;
    let c = app
        .wait_contact(&bsuid, "the shared phone", |c| c["phone"] == CUSTOMER)
        .await;
    assert_eq!(c["bsuid"], bsuid.as_str());
    assert_eq!(app.contacts_where("exists(bsuid)").await.len(), 1);
}

#[tokio::test]
async fn the_console_contact_page_shows_every_identity() {
    use fantoccini::Locator;
    let app = spawn_app().await;
    app.sandbox_post("/sandbox/behaviour", &json!({"parent_bsuids": true}))
        .await;
    app.sandbox_post(
        &format!("/sandbox/users/{CUSTOMER}"),
        &json!({"username": "zoe"}),
    )
    .await;
    let bsuid = app.sandbox_bsuid(CUSTOMER).await;
    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": CUSTOMER, "text": "hi", "name": "Zoë"}),
    )
    .await;
    let c = app
        .wait_contact(&bsuid, "the inbound", |c| c["parent_bsuid"].is_string())
        .await;
    let parent = c["parent_bsuid"].as_str().expect("parent").to_owned();
    assert!(parent.contains(".ENT."), "{parent}");

    let browser = crate::browser::Browser::start().await;
    browser.sign_in(&app).await;
    let page = &browser.client;
    page.goto(&format!("{}/contacts/{bsuid}", app.url))
        .await
        .expect("goto");
    browser.wait_css("#identity-bsuid").await;
    let text = |css: &'static str| async move {
        page.find(Locator::Css(css))
            .await
            .expect(css)
            .text()
            .await
            .expect("text")
    };
    assert_eq!(text("#identity-bsuid").await, bsuid);
    assert_eq!(text("#identity-parent-bsuid").await, parent);
    assert_eq!(text("#identity-username").await, "zoe");
    assert!(
        text("#identity-phone").await.contains("not shared"),
        "the phone is withheld"
    );
}

/// A status webhook naming `digits` and `bsuid` (and a parent and a username when given), for
/// a message Parley never sent: only its contact-identity step has an effect.
fn identity_status(
    wamid: &str,
    digits: &str,
    bsuid: &str,
    parent: Option<&str>,
    username: Option<&str>,
) -> Vec<u8> {
    let mut status = json!({"id": wamid, "status": "delivered", "timestamp": "1750030073",
        "recipient_id": digits, "recipient_user_id": bsuid});
    let mut contact = json!({"wa_id": digits, "user_id": bsuid});
    if let Some(p) = parent {
        status["recipient_parent_user_id"] = json!(p);
    }
    if let Some(u) = username {
        contact["profile"] = json!({"name": "Pablo", "username": u});
    }
    serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": demo_ids::WABA_ID, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100100", "phone_number_id": demo_ids::PHONE_NUMBER_ID},
        "contacts": [contact],
        "statuses": [status]
    }}]}]}))
    .expect("json")
}

/// Statuses naming an identity the contact already has change nothing (the processor checks
/// them against the contact before parsing the phone), and whatever is new is still learned:
/// a first BSUID for a phone, a new BSUID for the same phone, a username and its change, a
/// parent BSUID.
#[tokio::test]
async fn statuses_teach_a_contact_only_what_is_new_and_every_change() {
    let app = spawn_app().await;
    let phone = "+4915112349901";
    let digits = "4915112349901";
    let (status, created) = app
        .api_call(
            Method::PUT,
            &format!("/api/v1/contacts/{}", phone.replace('+', "%2B")),
            Some(&json!({"name": "Pablo"})),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {created}");
    let post = |body: Vec<u8>| {
        let app = &app;
        async move {
            assert_eq!(app.post_webhook(&body, Some(&app.sign(&body))).await, 200);
            app.webhooks_processed().await;
            let (status, c) = app
                .api_call(
                    Method::GET,
                    &format!("/api/v1/contacts/{}", phone.replace('+', "%2B")),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{c}");
            c
        }
    };
    // The first BSUID a status names for the phone is linked.
    let c = post(identity_status("wamid.ID1", digits, "DE.1001", None, None)).await;
    assert_eq!(c["id"], created["id"]);
    assert_eq!(c["bsuid"], "DE.1001", "{c}");
    // The same identity again: known, nothing changes.
    let again = post(identity_status("wamid.ID2", digits, "DE.1001", None, None)).await;
    assert_eq!(again, c);
    // A new BSUID for the same phone (the user's BSUID changed): Meta's newest word wins.
    let c = post(identity_status("wamid.ID3", digits, "DE.1002", None, None)).await;
    assert_eq!(c["id"], created["id"]);
    assert_eq!(c["bsuid"], "DE.1002", "{c}");
    // A username, then its change.
    let c = post(identity_status(
        "wamid.ID4",
        digits,
        "DE.1002",
        None,
        Some("pablo"),
    ))
    .await;
    assert_eq!(c["username"], "pablo", "{c}");
    let c = post(identity_status(
        "wamid.ID5",
        digits,
        "DE.1002",
        None,
        Some("pablo.m"),
    ))
    .await;
    assert_eq!(c["username"], "pablo.m", "{c}");
    // A status without a username keeps the one known; a parent BSUID is learned.
    let c = post(identity_status(
        "wamid.ID6",
        digits,
        "DE.1002",
        Some("DE.ENT.2001"),
        None,
    ))
    .await;
    assert_eq!(c["username"], "pablo.m", "{c}");
    assert_eq!(c["parent_bsuid"], "DE.ENT.2001", "{c}");
    assert_eq!(c["phone"], phone, "{c}");
    assert_eq!(c["id"], created["id"]);
}
