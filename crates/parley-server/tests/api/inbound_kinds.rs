//! Inbound messages of every kind (issue #15): each webhook example of META_API.md §3.3 and
//! META_2026.md §3.1, §3.4, §3.5, §8.2, and one of each kind, stored with its kind and
//! normalized body and shown by `GET /api/v1/contacts/{phone}/messages`; edits and revokes
//! applied to their original (in either order); media fetched through Meta's media endpoint,
//! stored by hash and served to the application's console users only; oversized and
//! mismatched media refused with the reason shown; an unknown type kept raw.

use std::time::Duration;

use base64::Engine as _;
use parley_sandbox::demo_ids;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, spawn_app, spawn_app_tuned};

/// Meta's example sender (META_API §3.3).
const SHEENA: &str = "16505551234";
const SHEENA_BSUID: &str = "US.13491208655302741918";

fn envelope(contacts: Value, messages: Vec<Value>) -> Value {
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": demo_ids::PHONE_NUMBER_ID},
        "messages": messages,
    });
    if !contacts.is_null() {
        value["contacts"] = contacts;
    }
    json!({"object": "whatsapp_business_account", "entry": [{"id": demo_ids::WABA_ID,
        "changes": [{"field": "messages", "value": value}]}]})
}

fn sheena() -> Value {
    json!([{"profile": {"name": "Sheena Nelson"}, "wa_id": SHEENA}])
}

/// A message object from Sheena with `fields` (its `type` and type object).
fn msg(wamid: &str, fields: Value) -> Value {
    let mut m = json!({"from": SHEENA, "id": wamid, "timestamp": "1749416383"});
    for (k, v) in fields.as_object().expect("object") {
        m[k] = v.clone();
    }
    m
}

async fn post(app: &TestApp, body: &Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    let status = app.post_webhook(&bytes, Some(&app.sign(&bytes))).await;
    assert_eq!(status, 200);
}

/// The contact's inbound messages, every page, by wamid.
async fn inbound_of(app: &TestApp, phone: &str) -> std::collections::HashMap<String, Value> {
    let mut all = std::collections::HashMap::new();
    let mut after = String::new();
    loop {
        let path = format!(
            "/api/v1/contacts/{}/messages?limit=7{after}",
            phone.replace('+', "%2B")
        );
        let (status, page) = app.api_call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        for m in page["data"].as_array().expect("data") {
            let wamid = m["wamid"].as_str().expect("wamid").to_owned();
            assert!(
                all.insert(wamid, m.clone()).is_none(),
                "a page repeated {m}"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={}", c.replace('+', "%2B")),
            None => return all,
        }
    }
}

/// Every stored inbound message of `phone` is in its conversation's thread (paged, newest
/// first), except reactions, edits and revokes, which are attached to or applied on the
/// message they name; and the conversation is in the list.
async fn assert_in_conversation(
    app: &TestApp,
    phone: &str,
    stored: &std::collections::HashMap<String, Value>,
) {
    let encoded = phone.replace('+', "%2B");
    let (status, conversation) = app
        .api_call(
            reqwest::Method::GET,
            &format!("/api/v1/conversations/{encoded}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{conversation}");
    let contact_id = conversation["contact"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(conversation["contact"]["phone"], phone);
    let mut thread = std::collections::HashMap::new();
    let mut after = String::new();
    let mut last_at = String::from("9999");
    loop {
        let (status, page) = app
            .api_call(
                reqwest::Method::GET,
                &format!("/api/v1/conversations/{contact_id}/messages?limit=5{after}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        for item in page["data"].as_array().expect("data") {
            let at = item["at"].as_str().expect("at").to_owned();
            assert!(at <= last_at, "newest first: {at} after {last_at}");
            last_at = at;
            assert_eq!(item["direction"], "inbound", "{item}");
            let id = item["id"].as_str().expect("id").to_owned();
            assert!(thread.insert(id, item.clone()).is_none(), "repeated {item}");
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => break,
        }
    }
    for (wamid, m) in stored {
        let kind = m["kind"].as_str().expect("kind");
        if matches!(kind, "reaction" | "edit" | "revoke") {
            assert!(
                !thread.contains_key(wamid),
                "{kind} is not an item: {wamid}"
            );
            continue;
        }
        let item = thread
            .get(wamid)
            .unwrap_or_else(|| panic!("{wamid} ({kind}) missing from the conversation"));
        assert_eq!(item["type"], kind, "{item}");
        assert_eq!(item["text"], m["text"], "{item}");
    }
    let (status, list) = app
        .api_call(
            reqwest::Method::GET,
            "/api/v1/conversations?limit=100",
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|c| c["contact"]["id"] == contact_id.as_str()),
        "{list}"
    );
}

#[tokio::test]
async fn every_inbound_example_and_kind_is_stored_with_its_kind_and_body() {
    every_inbound_example(false).await;
}

/// The same webhooks stored in one commit, so the processor applies them in ONE round: the
/// number change, last, still wins over the earlier messages of the round that name the old
/// number (the round's effects keep the order of its events).
#[tokio::test]
async fn every_inbound_example_applied_in_one_round_ends_on_the_new_number() {
    every_inbound_example(true).await;
}

/// Webhooks posted one by one, or gathered and stored in one commit (`one_round`).
struct Sink {
    one_round: bool,
    bodies: Vec<Vec<u8>>,
}

impl Sink {
    async fn post(&mut self, app: &TestApp, body: &Value) {
        if self.one_round {
            self.bodies.push(serde_json::to_vec(body).expect("json"));
        } else {
            post(app, body).await;
        }
    }

    async fn flush(&mut self, app: &TestApp) {
        if self.bodies.is_empty() {
            return;
        }
        let bodies: Vec<&[u8]> = self.bodies.iter().map(Vec::as_slice).collect();
        app.store
            .insert_webhook_events(&bodies, app.engine.now())
            .await
            .expect("stored");
        app.engine.webhook_wake.notify_waiters();
        self.bodies.clear();
    }
}

async fn every_inbound_example(one_round: bool) {
    let app = spawn_app().await;
    let mut sink = Sink {
        one_round,
        bodies: Vec::new(),
    };
    let examples = vec![
        // META_API §3.3, verbatim.
        msg(
            "wamid.text",
            json!({"type": "text", "text": {"body": "Does it come in another color?"}}),
        ),
        msg(
            "wamid.image",
            json!({"type": "image", "image": {"caption": "This is the one", "mime_type": "image/jpeg", "sha256": "abc", "id": "1003383421387256"}}),
        ),
        msg(
            "wamid.video",
            json!({"type": "video", "video": {"caption": "unboxing", "mime_type": "video/mp4", "sha256": "def", "id": "1003383421387257"}}),
        ),
        msg(
            "wamid.voice",
            json!({"type": "audio", "audio": {"mime_type": "audio/ogg; codecs=opus", "sha256": "ghi", "id": "1003383421387258", "voice": true}}),
        ),
        msg(
            "wamid.document",
            json!({"type": "document", "document": {"caption": "invoice", "filename": "invoice.pdf", "mime_type": "application/pdf", "sha256": "jkl", "id": "1003383421387259"}}),
        ),
        msg(
            "wamid.sticker",
            json!({"type": "sticker", "sticker": {"mime_type": "image/webp", "sha256": "mno", "id": "1003383421387260", "animated": false}}),
        ),
        msg(
            "wamid.reaction",
            json!({"type": "reaction", "reaction": {"message_id": "wamid.text", "emoji": "👍"}}),
        ),
        msg(
            "wamid.unreaction",
            json!({"type": "reaction", "reaction": {"message_id": "wamid.text", "emoji": ""}}),
        ),
        msg(
            "wamid.location",
            json!({"type": "location", "location": {"address": "1 Hacker Way, Menlo Park, CA 94025", "latitude": 37.483_307, "longitude": -122.148_981, "name": "Philz Coffee", "url": "https://philzcoffee.com"}}),
        ),
        msg(
            "wamid.here",
            json!({"type": "location", "location": {"latitude": 37.758_056, "longitude": -122.425_332}}),
        ),
        msg(
            "wamid.contacts",
            json!({"type": "contacts", "contacts": [{"name": {"first_name": "Pablo", "formatted_name": "Pablo Morales"}, "org": {"company": "Lucky Shrub"}, "phones": [{"phone": "+1 (940) 555-1234", "wa_id": "19405551234", "type": "MOBILE"}]}]}),
        ),
        msg(
            "wamid.button",
            json!({"context": {"from": "15550783881", "id": "wamid.sent1"}, "type": "button", "button": {"payload": "Tell me more", "text": "Tell me more"}}),
        ),
        msg(
            "wamid.button_reply",
            json!({"context": {"from": "15550783881", "id": "wamid.sent2"}, "type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "cancel-button", "title": "Cancel"}}}),
        ),
        msg(
            "wamid.list_reply",
            json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "priority_express", "title": "Priority Mail Express", "description": "Next Day to 2 Days"}}}),
        ),
        msg(
            "wamid.nfm_reply",
            json!({"type": "interactive", "interactive": {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{\"flow_token\":\"tok-1\",\"screen_0_choice\":\"yes\"}"}}}),
        ),
        msg(
            "wamid.order",
            json!({"type": "order", "order": {"catalog_id": "194836987003835", "text": "", "product_items": [{"product_retailer_id": "di9ozbzfi4", "quantity": 2, "item_price": 30, "currency": "USD"}]}}),
        ),
        msg(
            "wamid.identity",
            json!({"type": "system", "system": {"body": "Sheena's security code changed", "type": "customer_identity_changed", "customer": SHEENA}, "identity": {"acknowledged": true, "created_timestamp": 1_602_532_300_000_i64, "hash": "Sjvjlx8G6Z0="}}),
        ),
        msg(
            "wamid.unsupported",
            json!({"type": "unsupported", "unsupported": {"type": "poll_creation"}, "errors": [{"code": 131051, "title": "Message type unknown", "message": "Message type unknown", "error_data": {"details": "Message type is currently not supported."}}]}),
        ),
        msg(
            "wamid.forwarded",
            json!({"context": {"forwarded": true, "frequently_forwarded": true}, "type": "text", "text": {"body": "look at this"}}),
        ),
        msg(
            "wamid.reply",
            json!({"context": {"from": SHEENA, "id": "wamid.text"}, "type": "text", "text": {"body": "in blue?"}}),
        ),
        msg(
            "wamid.product",
            json!({"context": {"from": "15550783881", "id": "wamid.sent3", "referred_product": {"catalog_id": "194836987003835", "product_retailer_id": "di9ozbzfi4"}}, "type": "text", "text": {"body": "Is this in stock?"}}),
        ),
        msg(
            "wamid.ad",
            json!({"type": "text", "text": {"body": "Hi, I saw your ad"}, "referral": {"source_url": "https://fb.me/2ZC5ocWAs", "source_id": "120226305854810726", "source_type": "ad", "body": "Spring sale", "headline": "Chat with us", "media_type": "image", "image_url": "https://scontent.xx.fbcdn.net/x.jpg", "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ", "welcome_message": {"text": "Hi! How can we help?"}}}),
        ),
        msg("wamid.welcome", json!({"type": "request_welcome"})),
        // A type Parley does not know: kept raw, never dropped.
        msg(
            "wamid.poll",
            json!({"type": "poll", "poll": {"question": "Red or blue?", "options": ["red", "blue"]}, "future_field": {"x": 1}}),
        ),
        // META_2026 §8.2: an edit and a revoke of earlier messages.
        msg(
            "wamid.edit",
            json!({"type": "edit", "edit": {"original_message_id": "wamid.text", "message": {"type": "text", "text": {"body": "Does it come in red?"}}}}),
        ),
        msg(
            "wamid.revoke",
            json!({"type": "revoke", "revoke": {"original_message_id": "wamid.forwarded"}}),
        ),
        // An edit that outran its original (Meta does not promise order).
        msg(
            "wamid.early-edit",
            json!({"type": "edit", "edit": {"original_message_id": "wamid.late", "message": {"type": "text", "text": {"body": "edited before seen"}}}}),
        ),
    ];
    for m in &examples {
        sink.post(&app, &envelope(sheena(), vec![m.clone()])).await;
    }
    sink.post(
        &app,
        &envelope(
            sheena(),
            vec![msg(
                "wamid.late",
                json!({"type": "text", "text": {"body": "original"}}),
            )],
        ),
    )
    .await;
    // The same webhook twice is one message.
    sink.post(&app, &envelope(sheena(), vec![examples[0].clone()]))
        .await;
    // META_2026 §3.1: BSUID, username and group; §3.4: a contact card answering
    // REQUEST_CONTACT_INFO from a user known only by BSUID.
    sink.post(
        &app,
        &envelope(
            json!([{"profile": {"name": "Sheena Nelson", "username": "@realsheenanelson"}, "wa_id": SHEENA, "user_id": SHEENA_BSUID}]),
            vec![json!({"from": SHEENA, "from_user_id": SHEENA_BSUID, "group_id": "120363025246125486", "id": "wamid.bsuid", "timestamp": "1749416384", "type": "text", "text": {"body": "Does it come in another color?"}})],
        ),
    )
    .await;
    sink.post(
        &app,
        &envelope(
            json!([{"profile": {"name": "Sheena Nelson"}, "user_id": SHEENA_BSUID}]),
            vec![json!({"from_user_id": SHEENA_BSUID, "id": "wamid.contact_request", "timestamp": "1749416385", "type": "contacts", "contacts": [{"origin": "contact_request", "phones": [{"phone": "+1 650-555-1234", "wa_id": SHEENA, "type": "MOBILE"}]}]})],
        ),
    )
    .await;
    // Value-level errors carry no message: nothing is stored, the event keeps the note.
    let mut errors = envelope(Value::Null, vec![]);
    errors["entry"][0]["changes"][0]["value"]["errors"] = json!([{"code": 130429, "title": "Rate limit hit", "message": "Rate limit hit", "error_data": {"details": "Message failed to send because there were too many messages sent from this phone number in a short period of time"}}]);
    sink.post(&app, &errors).await;
    // META_2026 §3.5 (META_API §3.3): the number change comes last; the contact and its
    // messages follow it to the new number.
    sink.post(
        &app,
        &envelope(
            Value::Null,
            vec![msg("wamid.changed", json!({"type": "system", "system": {"body": "User Sheena Nelson changed from 16505551234 to 12195555358", "wa_id": "12195555358", "type": "user_changed_number"}}))],
        ),
    )
    .await;
    sink.flush(&app).await;
    // Read at once: "nothing pending" is only said once every event's effects are committed
    // (the flake of docs/TESTING.md was that read answering early).
    app.webhooks_processed().await;

    let all = inbound_of(&app, "+12195555358").await;
    // #15's "done when": each one appears in the right conversation of the inbox API.
    assert_in_conversation(&app, "+12195555358", &all).await;
    let get = |w: &str| {
        all.get(w)
            .unwrap_or_else(|| panic!("{w} not stored: {all:?}"))
            .clone()
    };
    assert_eq!(all.len(), examples.len() + 4, "{:?}", all.keys());

    let text = get("wamid.text");
    assert_eq!(text["kind"], "text");
    // The edit shows; the first version is kept.
    assert_eq!(text["text"], "Does it come in red?", "{text}");
    assert_eq!(text["body"]["body"], "Does it come in red?");
    assert_eq!(
        text["edits"][0]["text"], "Does it come in another color?",
        "{text}"
    );
    assert!(text["edited_at"].is_string());
    assert_eq!(
        text["raw"]["text"]["body"],
        "Does it come in another color?"
    );
    let late = get("wamid.late");
    assert_eq!(late["text"], "edited before seen", "{late}");
    assert_eq!(late["edits"][0]["text"], "original");
    let edit = get("wamid.edit");
    assert_eq!(
        (edit["kind"].as_str(), edit["refers_to"].as_str()),
        (Some("edit"), Some("wamid.text"))
    );
    let revoked = get("wamid.forwarded");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_eq!(revoked["body"]["context"]["forwarded"], true);
    assert_eq!(revoked["body"]["context"]["frequently_forwarded"], true);
    assert_eq!(get("wamid.revoke")["refers_to"], "wamid.forwarded");

    let image = get("wamid.image");
    assert_eq!(
        (image["kind"].as_str(), image["text"].as_str()),
        (Some("image"), Some("This is the one"))
    );
    assert_eq!(image["body"]["id"], "1003383421387256");
    assert_eq!(image["body"]["mime_type"], "image/jpeg");
    assert_eq!(image["media"]["media_id"], "1003383421387256");
    let voice = get("wamid.voice");
    assert_eq!(
        (voice["kind"].as_str(), voice["body"]["voice"].as_bool()),
        (Some("audio"), Some(true))
    );
    assert_eq!(get("wamid.video")["kind"], "video");
    let document = get("wamid.document");
    assert_eq!(
        (
            document["kind"].as_str(),
            document["body"]["filename"].as_str()
        ),
        (Some("document"), Some("invoice.pdf"))
    );
    assert_eq!(get("wamid.sticker")["kind"], "sticker");

    let reaction = get("wamid.reaction");
    assert_eq!(
        (
            reaction["kind"].as_str(),
            reaction["body"]["emoji"].as_str()
        ),
        (Some("reaction"), Some("👍"))
    );
    assert_eq!(reaction["refers_to"], "wamid.text");
    let removed = get("wamid.unreaction");
    assert!(
        removed["body"]["emoji"].is_null(),
        "a removed reaction has no emoji: {removed}"
    );
    assert_eq!(removed["refers_to"], "wamid.text");

    let location = get("wamid.location");
    assert_eq!(location["body"]["latitude"], 37.483_307);
    assert_eq!(location["body"]["name"], "Philz Coffee");
    assert_eq!(get("wamid.here")["body"]["longitude"], -122.425_332);
    let contacts = get("wamid.contacts");
    assert_eq!(
        contacts["body"]["contacts"][0]["phones"][0]["wa_id"],
        "19405551234"
    );

    let button = get("wamid.button");
    assert_eq!(
        (button["kind"].as_str(), button["body"]["payload"].as_str()),
        (Some("button"), Some("Tell me more"))
    );
    assert_eq!(button["refers_to"], "wamid.sent1");
    let reply = get("wamid.button_reply");
    assert_eq!(reply["body"]["reply_type"], "button_reply");
    assert_eq!(
        (reply["body"]["id"].as_str(), reply["text"].as_str()),
        (Some("cancel-button"), Some("Cancel"))
    );
    let list = get("wamid.list_reply");
    assert_eq!(list["body"]["description"], "Next Day to 2 Days");
    let flow = get("wamid.nfm_reply");
    assert_eq!(flow["body"]["reply_type"], "nfm_reply");
    assert_eq!(
        flow["body"]["response"],
        json!({"flow_token": "tok-1", "screen_0_choice": "yes"}),
        "Flow answers kept as JSON"
    );
    let order = get("wamid.order");
    assert_eq!(order["body"]["catalog_id"], "194836987003835");
    assert_eq!(order["body"]["product_items"][0]["quantity"], 2);

    let identity = get("wamid.identity");
    assert_eq!(
        (
            identity["kind"].as_str(),
            identity["body"]["system_type"].as_str()
        ),
        (Some("system"), Some("customer_identity_changed"))
    );
    assert_eq!(identity["raw"]["identity"]["hash"], "Sjvjlx8G6Z0=");
    let changed = get("wamid.changed");
    assert_eq!(changed["body"]["system_type"], "user_changed_number");
    assert_eq!(changed["body"]["wa_id"], "12195555358");

    let unsupported = get("wamid.unsupported");
    assert_eq!(unsupported["kind"], "unsupported");
    assert_eq!(unsupported["body"]["unsupported_type"], "poll_creation");
    assert_eq!(unsupported["body"]["errors"][0]["code"], 131051);
    assert_eq!(
        unsupported["body"]["errors"][0]["details"],
        "Message type is currently not supported."
    );

    let in_reply = get("wamid.reply");
    assert_eq!(in_reply["refers_to"], "wamid.text");
    assert_eq!(in_reply["body"]["context"]["message_id"], "wamid.text");
    let product = get("wamid.product");
    assert_eq!(
        product["body"]["context"]["referred_product"]["product_retailer_id"],
        "di9ozbzfi4"
    );
    let ad = get("wamid.ad");
    assert_eq!(ad["body"]["referral"]["ctwa_clid"], "ARAkLkA8rmlFeiCktEJQ");
    assert_eq!(ad["body"]["referral"]["source_type"], "ad");
    assert_eq!(
        ad["body"]["referral"]["welcome_message"],
        "Hi! How can we help?"
    );
    assert_eq!(get("wamid.welcome")["kind"], "request_welcome");

    let poll = get("wamid.poll");
    assert_eq!(poll["kind"], "unknown");
    assert_eq!(poll["body"]["original_type"], "poll");
    assert_eq!(
        poll["raw"]["poll"]["options"],
        json!(["red", "blue"]),
        "kept raw: {poll}"
    );
    assert_eq!(poll["raw"]["future_field"]["x"], 1);

    let bsuid = get("wamid.bsuid");
    assert_eq!(bsuid["body"]["group_id"], "120363025246125486");
    let card = get("wamid.contact_request");
    assert_eq!(card["kind"], "contacts");
    assert_eq!(card["body"]["contacts"][0]["origin"], "contact_request");
    // The contact is found by its BSUID too, with the same messages.
    assert_eq!(inbound_of(&app, SHEENA_BSUID).await.len(), all.len());
}

/// A tiny PNG (signature and header: enough for a type check).
fn png(len: usize) -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    bytes.extend((0..len.saturating_sub(8)).map(|i| (i % 251) as u8));
    bytes
}

async fn send_media(
    app: &TestApp,
    from: &str,
    kind: &str,
    mime: &str,
    bytes: &[u8],
    caption: Option<&str>,
) -> String {
    let mut media = json!({"type": kind, "mime_type": mime,
        "content_base64": base64::engine::general_purpose::STANDARD.encode(bytes)});
    if let Some(c) = caption {
        media["caption"] = json!(c);
    }
    let sent = app
        .sandbox_post("/sandbox/inbound", &json!({"from": from, "media": media}))
        .await;
    sent["wamid"].as_str().expect("wamid").to_owned()
}

/// Polls the contact's messages until `wamid`'s media leaves `pending` (fails after 20 s).
async fn wait_media(app: &TestApp, phone: &str, wamid: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        if let Some(m) = inbound_of(app, phone).await.remove(wamid) {
            if m["media"]["state"] != "pending" {
                return m;
            }
            last = m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the media of {wamid} never settled: {last}");
}

/// A console session of a user who is an admin of another application only.
async fn other_application_cookie(app: &TestApp) -> String {
    let now = 1_750_000_000_000;
    let account = parley_domain::AccountId::new();
    app.store
        .create_account(&account, "Other Co", now)
        .await
        .expect("account");
    let application = parley_domain::ApplicationId::new();
    let user = parley_domain::UserId::new();
    let hash = parley_engine::auth::hash_password("another-long-password").expect("hash");
    app.store
        .create_user(&user, &account, "other@example.com", &hash, now)
        .await
        .expect("user");
    app.store
        .create_application(&application, &account, "Other app", now)
        .await
        .expect("application");
    app.store
        .set_role(&user, &application, parley_domain::Role::Admin, now)
        .await
        .expect("role");
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}/login", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", app.url.as_str())
        .body("email=other%40example.com&password=another-long-password")
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 303, "the other user signs in");
    let cookie = resp.headers()["set-cookie"].to_str().expect("cookie");
    cookie.split(';').next().expect("pair").to_owned()
}

#[tokio::test]
async fn inbound_media_is_fetched_stored_by_hash_and_served_to_the_applications_users_only() {
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let bytes = png(3000);
    let wamid = send_media(
        &app,
        &phone,
        "image",
        "image/png",
        &bytes,
        Some("our new shop"),
    )
    .await;
    let m = wait_media(&app, &phone, &wamid).await;
    assert_eq!(
        (m["kind"].as_str(), m["text"].as_str()),
        (Some("image"), Some("our new shop"))
    );
    let sha = hex::encode(Sha256::digest(&bytes));
    assert_eq!(m["media"]["state"], "stored", "{m}");
    assert_eq!(m["media"]["sha256"], sha.as_str());
    assert_eq!(m["media"]["size_bytes"], bytes.len());
    assert_eq!(m["media"]["mime_type"], "image/png");
    let url = m["media"]["console_url"]
        .as_str()
        .expect("console url")
        .to_owned();
    // Through Meta's media endpoint: GET /{media-id} with the number, then the URL.
    let media_id = m["body"]["id"].as_str().expect("media id");
    let log = app.sandbox_requests("").await;
    assert!(
        log["data"]
            .as_array()
            .expect("log")
            .iter()
            .any(|r| r["method"] == "GET"
                && r["path"].as_str().is_some_and(|p| p.ends_with(media_id))
                && r["outcome"] == "accepted"),
        "GET /{{media-id}} reached the sandbox: {log}"
    );

    // The application's signed-in user gets the bytes.
    let cookie = app.console_cookie().await;
    let resp = app
        .http
        .get(format!("{}{url}", app.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        resp.bytes().await.expect("bytes").as_ref(),
        bytes.as_slice()
    );
    // Another application's user: not found, as if it did not exist.
    let other = other_application_cookie(&app).await;
    let resp = app
        .http
        .get(format!("{}{url}", app.url))
        .header("cookie", &other)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
    assert_ne!(
        resp.bytes().await.expect("bytes").as_ref(),
        bytes.as_slice()
    );
    // Nobody signed in: sent to the login page, never the bytes.
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{}{url}", app.url))
        .send()
        .await
        .expect("get");
    assert!(resp.status().is_redirection(), "{}", resp.status());

    // The same bytes again are one file; a second message names it.
    let again = send_media(&app, &phone, "image", "image/png", &bytes, None).await;
    let second = wait_media(&app, &phone, &again).await;
    assert_eq!(second["media"]["sha256"], sha.as_str());
}

#[tokio::test]
async fn oversized_and_mismatched_media_are_refused_with_the_reason_shown() {
    let app = spawn_app_tuned(None, |c| c.media.max_bytes = 1_000).await;
    let (phone, _) = app.contact(1).await;
    let big = send_media(&app, &phone, "image", "image/png", &png(5_000), None).await;
    // A PNG declared as a JPEG.
    let lie = send_media(
        &app,
        &phone,
        "image",
        "image/jpeg",
        &png(200),
        Some("jpeg?"),
    )
    .await;
    let fits = send_media(
        &app,
        &phone,
        "document",
        "application/pdf",
        b"%PDF-1.4 tiny",
        None,
    )
    .await;
    let big = wait_media(&app, &phone, &big).await;
    assert_eq!(big["media"]["state"], "refused", "{big}");
    assert_eq!(big["media"]["error_code"], "media_too_large");
    assert!(
        big["media"]["error"]
            .as_str()
            .expect("reason")
            .contains("1000"),
        "{big}"
    );
    assert!(big["media"]["console_url"].is_null());
    let lie = wait_media(&app, &phone, &lie).await;
    assert_eq!(lie["media"]["state"], "refused", "{lie}");
    assert_eq!(lie["media"]["error_code"], "media_type_mismatch");
    assert!(
        lie["media"]["error"]
            .as_str()
            .expect("reason")
            .contains("image/png"),
        "{lie}"
    );
    assert_eq!(lie["text"], "jpeg?", "the message itself is kept");
    let fits = wait_media(&app, &phone, &fits).await;
    assert_eq!(fits["media"]["state"], "stored", "{fits}");
}

/// The sandbox's media endpoint behaves as Meta's: a URL for the number that received the
/// media, the bytes only with a token, and only for five minutes.
#[tokio::test]
async fn the_sandbox_serves_media_as_meta_does() {
    let app = spawn_app().await;
    let bytes = png(100);
    let up = app
        .sandbox_post(
            "/sandbox/media",
            &json!({"mime_type": "image/png",
            "content_base64": base64::engine::general_purpose::STANDARD.encode(&bytes)}),
        )
        .await;
    let id = up["id"].as_str().expect("id");
    let graph = |path: String| {
        app.http
            .get(format!("{}/v27.0/{path}", app.sandbox_url))
            .bearer_auth(demo_ids::ACCESS_TOKEN)
    };
    let wrong = graph(format!("{id}?phone_number_id=999"))
        .send()
        .await
        .expect("get");
    assert_eq!(wrong.status(), 400);
    let info: Value = graph(format!(
        "{id}?phone_number_id={}",
        demo_ids::PHONE_NUMBER_ID
    ))
    .send()
    .await
    .expect("get")
    .json()
    .await
    .expect("json");
    assert_eq!(info["mime_type"], "image/png");
    assert_eq!(info["file_size"], "100");
    assert_eq!(info["sha256"], hex::encode(Sha256::digest(&bytes)));
    let url = info["url"].as_str().expect("url");
    let anonymous = app.http.get(url).send().await.expect("get");
    assert!(
        anonymous.status().is_client_error(),
        "{}",
        anonymous.status()
    );
    assert_ne!(
        anonymous.bytes().await.expect("bytes").as_ref(),
        bytes.as_slice()
    );
    let got = app
        .http
        .get(url)
        .bearer_auth(demo_ids::ACCESS_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), bytes.as_slice());
    app.advance(Duration::from_secs(301)).await;
    let expired = app
        .http
        .get(url)
        .bearer_auth(demo_ids::ACCESS_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(expired.status(), 404, "the URL lives five minutes");
}
