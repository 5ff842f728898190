//! The console's inbox (#15 item 2) in a real browser: a customer's image with a caption
//! arrives (simulated by the sandbox) and shows in the inbox without a reload; an agent invited
//! through the invite flow takes the conversation and replies with text; the sandbox receives
//! the reply and its status reaches read in the open thread without a reload; once the 24 h
//! window has closed the reply box offers templates only. Plus the role rules over HTTP.

use std::time::Duration;

use base64::Engine as _;
use fantoccini::Locator;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::browser::Browser;
use crate::helpers::{TestApp, api_node, spawn_app};

/// A valid 1×1 PNG: the media fetcher checks the file's signature against the declared type.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

const CUSTOMER: &str = "+4915112340077";
const AGENT: &str = "agent@shop.test";
const AGENT_PW: &str = "agent-password-1";

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The owner invites `email` with `role` on the users page (the existing invite flow); the
/// invite link's path.
async fn invite(app: &TestApp, owner: &str, email: &str, role: &str) -> String {
    let resp = app
        .http
        .post(format!("{}/settings/users/invite", app.url))
        .header("cookie", owner)
        .header("origin", app.url.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("email", email), ("role", role)]))
        .send()
        .await
        .expect("invite");
    assert_eq!(resp.status(), 200, "invite failed");
    let page = resp.text().await.expect("page");
    let start = page.find("/invite/").expect("invite link on the page");
    let rest = &page[start..];
    rest[..rest.find('"').expect("end of link")].to_owned()
}

/// Accepts an invite over HTTP; the new user's session cookie.
async fn accept(app: &TestApp, link: &str, password: &str) -> String {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}{link}", app.url))
        .header("origin", app.url.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("password", password)]))
        .send()
        .await
        .expect("accept");
    assert_eq!(resp.status(), 303, "accepting {link} failed");
    session_cookie(&resp)
}

/// The `parley_session=…` pair a sign-in set.
fn session_cookie(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|p| p.starts_with("parley_session=") && p.len() > "parley_session=".len())
        .expect("session cookie")
}

/// Waits until the element's attribute has `value` (the page changed it without a reload).
async fn wait_attr(b: &Browser, css: &str, attr: &str, value: &str) {
    let mut last = None;
    for _ in 0..200 {
        if let Ok(el) = b.client.find(Locator::Css(css)).await {
            last = el.attr(attr).await.ok().flatten();
            if last.as_deref() == Some(value) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = b.client.source().await.unwrap_or_default();
    panic!("`{css}` never had {attr}={value:?} (last {last:?}): {page}");
}

/// A marker that a full page load would lose: proof that what follows came without a reload.
async fn mark_page(b: &Browser) {
    b.client
        .execute("window.__noReload = 'kept';", vec![])
        .await
        .expect("script");
}

async fn assert_not_reloaded(b: &Browser) {
    let v = b
        .client
        .execute("return window.__noReload || null;", vec![])
        .await
        .expect("script");
    assert_eq!(v, Value::from("kept"), "the page was reloaded");
}

#[tokio::test]
async fn an_inbound_image_shows_live_an_invited_agent_replies_and_sees_read_and_a_closed_window_offers_templates_only()
 {
    let app = spawn_app().await;
    // On PostgreSQL the browser talks to a second node with no workers (its own engine, store
    // and bus): what it shows live was done by the app's node (webhooks, sends, statuses) and
    // reached it through NOTIFY.
    let (page, _node) = match &app.pg {
        Some(pg) => {
            let (url, node) = api_node(&app, &pg.url).await;
            (url, Some(node))
        }
        None => (app.url.clone(), None),
    };
    let owner = app.console_cookie().await;
    let link = invite(&app, &owner, AGENT, "agent").await;

    // The agent accepts the invite in the browser and opens the inbox.
    let b = Browser::start().await;
    let c = &b.client;
    c.goto(&format!("{page}{link}")).await.expect("goto invite");
    b.wait_css("input[name=password]")
        .await
        .send_keys(AGENT_PW)
        .await
        .expect("type");
    b.wait_css("button[type=submit]")
        .await
        .click()
        .await
        .expect("accept");
    b.wait_text(&format!("Sign out {AGENT}")).await;
    c.goto(&format!("{page}/inbox")).await.expect("goto inbox");
    b.wait_css("#conversations").await;
    wait_attr(&b, "#inbox", "data-live", "stream").await;
    mark_page(&b).await;

    // The customer sends an image with a caption; the list shows it without a reload.
    let sent = app
        .sandbox_post(
            "/sandbox/inbound",
            &json!({"from": CUSTOMER, "name": "Ana Lima", "media": {
                "type": "image", "mime_type": "image/png", "content_base64": PNG_1X1,
                "caption": "Is this the broken part?"
            }}),
        )
        .await;
    let wamid = sent["wamid"].as_str().expect("wamid").to_owned();
    b.wait_text("Is this the broken part?").await;
    b.wait_text("Ana Lima").await;
    // The list re-renders live (SSE), so every read finds its element again (`fresh`).
    wait_attr(
        &b,
        "li.conversation.unread [data-unread]",
        "data-unread",
        "1",
    )
    .await;
    let window = b
        .fresh(
            "li.conversation.unread [data-role=window]",
            |el| async move { el.text().await },
        )
        .await;
    assert!(window.contains("h") && window.contains("left"), "{window}");
    assert_not_reloaded(&b).await;

    // The thread: the image previewed (served by /media/inbound/{wamid}) with its caption.
    b.fresh(
        "li.conversation.unread a",
        |el| async move { el.click().await },
    )
    .await;
    b.wait_url("/inbox/ctc_").await;
    wait_attr(
        &b,
        &format!("li.msg.in[data-wamid='{wamid}'] img.preview-img"),
        "src",
        &format!("/media/inbound/{wamid}"),
    )
    .await;
    let mut width = Value::Null;
    for _ in 0..100 {
        width = c
            .execute(
                "var i = document.querySelector('img.preview-img'); return i && i.complete ? i.naturalWidth : null;",
                vec![],
            )
            .await
            .expect("script");
        if width == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(width, Value::from(1), "the image did not load");
    b.wait_text("Is this the broken part?").await;
    // Opening it marked it read (at Meta, and the count here).
    wait_attr(&b, "#conversation-facts", "data-unread", "0").await;
    wait_attr(&b, "#conversation", "data-live", "stream").await;
    mark_page(&b).await;

    // The agent takes the conversation.
    b.wait_css("#assign-me")
        .await
        .click()
        .await
        .expect("assign");
    b.wait_css("#conversation-facts[data-assignee^='usr_']")
        .await;
    let assignee = b
        .fresh("#assignee", |el| async move { el.text().await })
        .await;
    assert_eq!(assignee, AGENT);

    // Inside the window the reply box takes text; the reply reaches Meta (the sandbox) and
    // its status climbs to read in the open thread.
    assert!(
        b.wait_css("#free-form")
            .await
            .is_displayed()
            .await
            .expect("shown")
    );
    assert!(
        !b.wait_css("#template-form")
            .await
            .is_displayed()
            .await
            .expect("shown")
    );
    b.wait_css("#reply-text")
        .await
        .send_keys("Yes, we will send a new one today.")
        .await
        .expect("type");
    b.wait_css("#send-reply").await.click().await.expect("send");
    let mut reply = None;
    for _ in 0..150 {
        reply = app.sandbox_messages().await.into_iter().find(|m| {
            m["type"] == "text"
                && m["request"]["text"]["body"] == "Yes, we will send a new one today."
        });
        if reply.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = reply.expect("the sandbox never received the reply");
    assert_eq!(
        reply["to"].as_str().map(|t| t.trim_start_matches('+')),
        Some(&CUSTOMER[1..])
    );
    let out = "li.msg.out";
    b.wait_text("Yes, we will send a new one today.").await;
    wait_attr(&b, out, "data-status", "read").await;
    assert_not_reloaded(&b).await;
    // Typing those 34 characters (one input event each) showed the customer Meta's typing
    // indicator with exactly one call (§8.1: the read receipt with `typing_indicator`, which
    // the sandbox records only when the shape is Meta's), naming the message being answered.
    // The reply was typed after the last keystroke and has reached `read` since: a typing call
    // per keystroke would have reached the sandbox before it.
    let typing: Vec<Value> = sandbox_reads(&app)
        .await
        .into_iter()
        .filter(|r| r["typing"] == true)
        .collect();
    assert_eq!(
        typing.len(),
        1,
        "one typing call, not one per keystroke: {typing:?}"
    );
    assert_eq!(typing[0]["message_id"], wamid.as_str(), "{typing:?}");
    assert_nothing_refused(&app).await;

    // A reaction from the thread: ☺ on the customer's image, then 👍 in the picker. The
    // sandbox receives Meta's reaction shape, and the thread shows it as ours.
    b.fresh(
        &format!("li.msg.in[data-wamid='{wamid}'] [data-react]"),
        |el| async move { el.click().await },
    )
    .await;
    b.wait_css("#reaction-picker [data-emoji='👍']")
        .await
        .click()
        .await
        .expect("react");
    let reaction = sandbox_send(&app, "the reaction", |m| m["type"] == "reaction").await;
    assert_eq!(
        reaction["request"]["reaction"],
        json!({"message_id": wamid, "emoji": "👍"}),
        "{reaction}"
    );
    assert_eq!(
        reaction["to"].as_str().map(|t| t.trim_start_matches('+')),
        Some(&CUSTOMER[1..])
    );
    b.wait_css(&format!(
        "li.msg.in[data-wamid='{wamid}'] [data-role=reaction].mine"
    ))
    .await;
    let shown = b
        .fresh(
            &format!("li.msg.in[data-wamid='{wamid}'] [data-role=reaction].mine"),
            |el| async move { el.text().await },
        )
        .await;
    assert_eq!(shown, "👍");

    // A file through the reply box: uploaded to Meta (`POST /{phone}/media`, multipart), then
    // sent by id as an image with the caption; Meta holds the very bytes chosen.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("new-part.png");
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG_1X1)
        .expect("png");
    std::fs::write(&file, &png).expect("write");
    b.wait_css("#reply-file")
        .await
        .send_keys(&file.display().to_string())
        .await
        .expect("choose file");
    b.wait_css("#reply-caption")
        .await
        .send_keys("The new part")
        .await
        .expect("type");
    b.wait_css("#send-reply").await.click().await.expect("send");
    let image = sandbox_send(&app, "the image", |m| m["type"] == "image").await;
    let media_id = image["request"]["image"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the image was not sent by id: {image}"))
        .to_owned();
    assert_eq!(
        image["request"]["image"]["caption"], "The new part",
        "{image}"
    );
    assert!(image["request"]["image"].get("link").is_none(), "{image}");
    let upload = app.sandbox_requests("").await;
    assert!(
        upload["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|r| r["method"] == "POST"
                && r["path"].as_str().is_some_and(|p| p.ends_with("/media"))
                && r["outcome"] == "accepted"),
        "{upload}"
    );
    let held = meta_media(&app, &media_id).await;
    assert_eq!(held["mime_type"], "image/png", "{held}");
    assert_eq!(
        held["sha256"],
        hex::encode(sha2::Sha256::digest(&png)),
        "Meta holds other bytes than the file chosen: {held}"
    );
    b.wait_css("li.msg.out[data-kind=image]").await;
    wait_attr(&b, "li.msg.out[data-kind=image]", "data-status", "read").await;
    assert_not_reloaded(&b).await;
    assert_nothing_refused(&app).await;
    let csp = b.csp_violations().await;
    assert!(csp.is_empty(), "CSP violations: {csp:?}");

    // 25 hours later the window is closed: the reply box offers templates only.
    let thread = c.current_url().await.expect("url").to_string();
    app.advance(Duration::from_secs(25 * 3600)).await;
    // The session went idle meanwhile: sign in again and open the thread.
    b.sign_in_at(&page, AGENT, AGENT_PW).await;
    c.goto(&thread).await.expect("goto thread");
    wait_attr(&b, "#conversation-facts", "data-window", "closed").await;
    assert!(
        b.wait_css("#template-form")
            .await
            .is_displayed()
            .await
            .expect("shown")
    );
    assert!(
        !b.wait_css("#free-form")
            .await
            .is_displayed()
            .await
            .expect("shown")
    );
    assert!(
        c.find_all(Locator::Css("[data-react]"))
            .await
            .expect("find")
            .is_empty(),
        "reactions are offered outside the window"
    );
    let options = c
        .find_all(Locator::Css("#template-select option"))
        .await
        .expect("options");
    assert!(options.len() > 1, "no template to choose");
    // And the server agrees: free-form text is refused with its code.
    let agent = accept_cookie(&app).await;
    let contact = b
        .wait_css("#conversation")
        .await
        .attr("data-contact")
        .await
        .expect("attr")
        .expect("contact");
    let (status, body) = app
        .console_post(
            &agent,
            &format!("/inbox/{contact}/reply"),
            &json!({"text": "still there?"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "outside_service_window");

    // The picker sends a template with the variables typed for it; the thread shows it.
    mark_page(&b).await;
    b.wait_css("#template-select")
        .await
        .select_by_label("order_update (en)")
        .await
        .expect("template");
    let inputs = c
        .find_all(Locator::Css("#template-variables input[data-key]"))
        .await
        .expect("inputs");
    assert!(
        !inputs.is_empty(),
        "the template's variables are not asked for"
    );
    for input in &inputs {
        input.send_keys("Ana").await.expect("type");
    }
    b.wait_css("#send-template")
        .await
        .click()
        .await
        .expect("send");
    let mut template = None;
    for _ in 0..150 {
        template = app
            .sandbox_messages()
            .await
            .into_iter()
            .find(|m| m["type"] == "template" && m["to"] == CUSTOMER[1..]);
        if template.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let template = template.expect("the sandbox never received the template");
    assert_eq!(template["request"]["template"]["name"], "order_update");
    b.wait_css("li.msg.out[data-kind=template]").await;
    assert_not_reloaded(&b).await;
}

/// The sandbox's record of read receipts and typing indicators, oldest first.
async fn sandbox_reads(app: &TestApp) -> Vec<Value> {
    let v: Value = app
        .http
        .get(format!("{}/sandbox/reads", app.sandbox_url))
        .send()
        .await
        .expect("reads")
        .json()
        .await
        .expect("json");
    v["data"].as_array().cloned().unwrap_or_default()
}

/// Waits for the first send the sandbox accepted that `check` picks.
async fn sandbox_send(app: &TestApp, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..150 {
        if let Some(m) = app.sandbox_messages().await.into_iter().find(&check) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the sandbox never received {what}: {:?}",
        app.sandbox_messages().await
    );
}

/// Every Graph call the sandbox received was accepted (none refused for its shape).
async fn assert_nothing_refused(app: &TestApp) {
    let refused = app.sandbox_requests("outcome=refused").await;
    assert_eq!(refused["data"], json!([]), "{refused}");
}

/// What Meta (the sandbox) holds under a media id: `{mime_type, sha256, file_size, …}`.
async fn meta_media(app: &TestApp, id: &str) -> Value {
    let resp = app
        .http
        .get(format!("{}/v27.0/{id}", app.sandbox_url))
        .bearer_auth(parley_sandbox::demo_ids::ACCESS_TOKEN)
        .send()
        .await
        .expect("media");
    assert_eq!(resp.status(), 200, "GET /{id}");
    resp.json().await.expect("json")
}

/// The agent's session over HTTP (a second sign-in).
async fn accept_cookie(app: &TestApp) -> String {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{}/login", app.url))
        .header("origin", app.url.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("email", AGENT), ("password", AGENT_PW)]))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 303, "agent sign-in failed");
    session_cookie(&resp)
}

/// Viewers read the inbox and may not reply, read, type or assign; agents assign themselves
/// only, not others; a cross-site call is refused.
#[tokio::test]
async fn viewers_read_only_and_agents_assign_only_themselves() {
    let app = spawn_app().await;
    let owner = app.console_cookie().await;
    let viewer_link = invite(&app, &owner, "viewer@shop.test", "viewer").await;
    let viewer = accept(&app, &viewer_link, "viewer-password-1").await;
    let agent_link = invite(&app, &owner, AGENT, "agent").await;
    let agent = accept(&app, &agent_link, AGENT_PW).await;
    let other_link = invite(&app, &owner, "other@shop.test", "agent").await;
    let other = accept(&app, &other_link, "other-password-1").await;

    app.sandbox_post(
        "/sandbox/inbound",
        &json!({"from": CUSTOMER, "text": "hello?"}),
    )
    .await;
    // The conversation appears for the viewer (a read).
    let mut contact = None;
    for _ in 0..100 {
        let (status, page) = app.console_get(&viewer, "/inbox/list").await;
        assert_eq!(status, 200);
        // The row holding the message (seeded contacts without messages may be listed too).
        if let Some(at) = page.find("hello?")
            && let Some(i) = page[..at].rfind("data-contact=\"")
        {
            let rest = &page[i + "data-contact=\"".len()..];
            contact = Some(rest[..rest.find('"').expect("end")].to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let contact = contact.expect("the conversation never showed");
    let (status, page) = app.console_get(&viewer, &format!("/inbox/{contact}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("hello?"), "{page}");
    assert!(
        !page.contains("id=\"reply-box\""),
        "a viewer got a reply box"
    );

    for (path, body) in [
        ("reply", json!({"text": "hi"})),
        ("read", json!({})),
        ("typing", json!({})),
        ("assign", json!({"user_id": null})),
    ] {
        let (status, body) = app
            .console_post(&viewer, &format!("/inbox/{contact}/{path}"), &body)
            .await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"]["code"], "insufficient_role", "{path}");
    }

    // The agent takes it; another agent can neither take it nor give it to someone else.
    let agent_id = user_id(&app, &owner, AGENT).await;
    let other_id = user_id(&app, &owner, "other@shop.test").await;
    let (status, body) = app
        .console_post(
            &agent,
            &format!("/inbox/{contact}/assign"),
            &json!({"user_id": agent_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["assignee"]["email"], AGENT);
    for (who, target) in [
        (&other, Value::from(other_id.clone())),
        (&other, Value::Null),
        (&agent, Value::from(other_id.clone())),
    ] {
        let (status, body) = app
            .console_post(
                who,
                &format!("/inbox/{contact}/assign"),
                &json!({"user_id": target}),
            )
            .await;
        assert_eq!(status, 403, "{target}: {body}");
        assert_eq!(body["error"]["code"], "insufficient_role");
    }
    // The owner (an admin) gives it to the other agent.
    let (status, body) = app
        .console_post(
            &owner,
            &format!("/inbox/{contact}/assign"),
            &json!({"user_id": other_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["assignee"]["email"], "other@shop.test");
    // "Mine" for the other agent lists it; "unassigned" does not.
    let (_, mine) = app.console_get(&other, "/inbox/list?filter=mine").await;
    assert!(mine.contains(&contact), "{mine}");
    let (_, unassigned) = app
        .console_get(&other, "/inbox/list?filter=unassigned")
        .await;
    assert!(!unassigned.contains(&contact), "{unassigned}");

    // A call from another site is refused before anything happens.
    let resp = app
        .http
        .post(format!("{}/inbox/{contact}/reply", app.url))
        .header("cookie", &agent)
        .header("origin", "https://evil.example")
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);
}

/// A member's user id, from the users page (`/settings/users`, as the owner).
async fn user_id(app: &TestApp, owner: &str, email: &str) -> String {
    let (status, page) = app.console_get(owner, "/settings/users").await;
    assert_eq!(status, 200);
    let at = page
        .find(email)
        .unwrap_or_else(|| panic!("{email} not on the users page"));
    let after = &page[at..];
    let i = after.find("usr_").expect("a user id after the email");
    after[i..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}
