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
