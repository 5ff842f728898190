//! The console over HTTP as a browser speaks it (forms and cookies). A real-browser test
//! comes with the console's interactive pages.

use crate::helpers::spawn_app;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn form(email: &str, password: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!("email={}&password={}", enc(email), enc(password))
}

#[tokio::test]
async fn sign_in_see_the_overview_and_sign_out() {
    let app = spawn_app().await;
    let http = client();
    // Not signed in: sent to the login page.
    let r = http.get(format!("{}/", app.url)).send().await.expect("get");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let login = http
        .get(format!("{}/login", app.url))
        .send()
        .await
        .expect("get");
    assert!(login.text().await.expect("html").contains("Sign in"));

    // Wrong password.
    let r = http
        .post(format!("{}/login", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&app.console_email, "wrong"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(
        r.text()
            .await
            .expect("html")
            .contains("Wrong email or password")
    );

    // A cross-site form post is refused even with the right password.
    let r = http
        .post(format!("{}/login", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(form(&app.console_email, &app.console_password))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);

    // Right password: a HttpOnly, SameSite=Strict session cookie.
    let r = http
        .post(format!("{}/login", app.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", app.url.as_str())
        .body(form(&app.console_email, &app.console_password))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("pair").to_owned();

    let page = http
        .get(format!("{}/", app.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("html");
    for needle in [
        "Parley Demo Shop",
        "+1 555-010-0100",
        "welcome",
        "spring_sale",
        "order_update",
        "TIER_250",
        "80 msg/s",
    ] {
        assert!(page.contains(needle), "overview lacks {needle}: {page}");
    }
    let messages = http
        .get(format!("{}/messages", app.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("get");
    assert_eq!(messages.status(), 200);

    // A tampered cookie is not a session.
    let tampered = format!("{}x", session);
    let r = http
        .get(format!("{}/", app.url))
        .header("cookie", tampered)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 303);

    let r = http
        .post(format!("{}/logout", app.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .contains("Max-Age=0")
    );
}

/// The same story in a real browser: the login form, the overview, the messages page.
#[tokio::test]
async fn a_person_signs_in_with_a_browser() {
    use fantoccini::Locator;
    let app = spawn_app().await;
    let (phone, _) = app.contact(0).await;
    let id = app
        .send(&serde_json::json!({"to": phone, "template": {"name": "welcome", "language": "en", "variables": {"first_name": "Browser"}}}))
        .await;
    app.wait_for_state(&id, "read").await;

    let browser = crate::browser::Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("{}/", app.url)).await.expect("goto");
    browser.wait_css("input[name=email]").await;
    assert!(
        c.current_url()
            .await
            .expect("url")
            .path()
            .ends_with("/login")
    );
    c.find(Locator::Css("input[name=email]"))
        .await
        .expect("email")
        .send_keys(&app.console_email)
        .await
        .expect("type");
    c.find(Locator::Css("input[name=password]"))
        .await
        .expect("pw")
        .send_keys("not it")
        .await
        .expect("type");
    c.find(Locator::Css("button[type=submit]"))
        .await
        .expect("btn")
        .click()
        .await
        .expect("click");
    browser.wait_text("Wrong email or password").await;

    c.find(Locator::Css("input[name=password]"))
        .await
        .expect("pw")
        .send_keys(&app.console_password)
        .await
        .expect("type");
    c.find(Locator::Css("button[type=submit]"))
        .await
        .expect("btn")
        .click()
        .await
        .expect("click");
    browser.wait_text("WhatsApp platforms").await;
    browser.wait_text("spring_sale").await;
    c.find(Locator::LinkText("Messages"))
        .await
        .expect("nav")
        .click()
        .await
        .expect("click");
    browser.wait_text("welcome (en): Browser").await;
    browser.wait_text("read").await;
    c.find(Locator::Css("button.link"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    browser.wait_css("input[name=password]").await;
    assert_eq!(browser.csp_violations().await, Vec::<String>::new());
    let _ = c.clone().close().await;
}

/// The users page shows 100 users a page, by email, with a link to the next page and one back
/// to the first: walking the links shows every user of the application once (it may have
/// 1,000; the page listed them all at once).
#[tokio::test]
async fn the_users_page_shows_a_hundred_a_page_and_links_the_next() {
    use parley_store::identity::{InviteCaps, InviteRecord, Invitee, LinkKind};
    let app = spawn_app().await;
    let owner = app.console_cookie().await;
    let application = app.store.applications().await.expect("apps")[0].id.clone();
    let account = app
        .store
        .application(&application)
        .await
        .expect("read")
        .expect("the application")
        .account_id;
    let now = app.now_ms();
    let mut all = vec![app.console_email.clone()];
    for i in 0..150 {
        let email = format!("user{i:03}@shop.test");
        let link = InviteRecord {
            id: format!("inv_page{i}"),
            kind: LinkKind::Invite,
            application_id: Some(application.clone()),
            email: Some(email.clone()),
            role: Some(parley_domain::Role::Viewer),
            invited_by: None,
            created_at: now,
            expires_at: now + 3_600_000,
            used_at: None,
        };
        let caps = InviteCaps {
            open: u64::MAX,
            people: u64::MAX,
        };
        let hash = format!("page-{i}");
        assert_eq!(
            app.store
                .create_invite(&link, &hash, caps, now)
                .await
                .expect("invite"),
            None
        );
        let invitee = Invitee::New {
            user_id: parley_domain::UserId::new(),
            account_id: account.clone(),
            email: email.clone(),
            password_hash: "not used".into(),
        };
        assert!(
            app.store
                .accept_invite(&hash, &invitee, now)
                .await
                .expect("accept")
        );
        all.push(email);
    }
    all.sort();
    let mut seen = Vec::new();
    let mut path = "/settings/users".to_owned();
    for page_no in 0.. {
        let (status, page) = app.console_get(&owner, &path).await;
        assert_eq!(status, 200, "{path}");
        let marker = "class=\"member\" data-email=\"";
        let rows: Vec<String> = page
            .match_indices(marker)
            .map(|(i, _)| {
                let rest = &page[i + marker.len()..];
                rest[..rest.find('"').expect("quote")].to_owned()
            })
            .collect();
        assert_eq!(rows.len(), [100, 51][page_no], "{path}");
        assert_eq!(page.contains("id=\"first-page\""), page_no > 0);
        seen.extend(rows);
        let Some(at) = page.find("\" id=\"next-page\"") else {
            break;
        };
        let start = page[..at].rfind("href=\"").expect("href") + "href=\"".len();
        path = page[start..at].replace("&amp;", "&");
    }
    assert_eq!(seen, all, "every user once, by email");
}
