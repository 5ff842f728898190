//! People (#12 parts 1 and 2): first-run setup, invites and roles, server-side sessions, the
//! sign-in throttle, TOTP. A fresh server here is what `parley serve` runs on an empty
//! database: no user, no application, and the setup link `serve` prints
//! (`Engine::issue_setup_link`, the same call).

use std::sync::Arc;

use parley_engine::{Engine, EngineConfig, OffsetClock};
use parley_meta::GraphClient;
use parley_server::{Server, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::browser::Browser;

pub struct Fresh {
    pub url: String,
    pub engine: Engine,
    pub clock: OffsetClock,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    _pg: Option<crate::pg::TestDb>,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A server over an empty database (SQLite, or PostgreSQL with PARLEY_TEST_BACKEND=postgres).
pub async fn spawn_fresh() -> Fresh {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pg) = crate::helpers::test_store(dir.path()).await;
    let clock = OffsetClock::default();
    let engine = Engine::new(
        store,
        GraphClient::new("http://127.0.0.1:9", parley_meta::DEFAULT_GRAPH_VERSION),
        Arc::new(clock.clone()),
        EngineConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let server = Server::new(
        listener,
        engine.clone(),
        ServerConfig {
            app_secret: "secret".into(),
            verify_token: "verify".into(),
            session_key: parley_server::session::SessionKey::new([3; 32]),
            secure_cookies: false,
            metrics_token: None,
            rate_limit: Default::default(),
        },
    );
    tokio::spawn(server.run(shutdown.clone()));
    Fresh {
        url,
        engine,
        clock,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        shutdown,
        _dir: dir,
        _pg: pg,
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `name=value` of a `Set-Cookie` for `name` (an empty value when cleared).
fn cookie_of(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|pair| pair.starts_with(&format!("{name}=")) && pair.len() > name.len() + 1)
}

impl Fresh {
    pub async fn post(&self, path: &str, cookie: Option<&str>, body: &str) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", self.url.as_str())
            .body(body.to_owned());
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send().await.expect("post")
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send().await.expect("get")
    }

    /// Signs in; the session cookie (`parley_session=…`).
    pub async fn sign_in(&self, email: &str, password: &str) -> String {
        let resp = self
            .post(
                "/login",
                None,
                &form(&[("email", email), ("password", password)]),
            )
            .await;
        assert_eq!(resp.status(), 303, "sign-in of {email} failed");
        cookie_of(&resp, "parley_session").expect("session cookie")
    }

    /// Whether a cookie opens the overview (else the login page).
    pub async fn signed_in(&self, cookie: &str) -> bool {
        let resp = self.get("/", Some(cookie)).await;
        match resp.status().as_u16() {
            200 => true,
            303 => false,
            other => panic!("unexpected {other} for /"),
        }
    }

    /// The owner created through the setup link (over HTTP, as the setup page posts it).
    pub async fn set_up_owner(&self, email: &str, password: &str) -> String {
        let token = self
            .engine
            .issue_setup_link()
            .await
            .expect("setup")
            .expect("a fresh database needs setup");
        let resp = self
            .post(
                &format!("/setup/{token}"),
                None,
                &form(&[
                    ("email", email),
                    ("password", password),
                    ("account", "Acme"),
                    ("application", "Shop"),
                ]),
            )
            .await;
        assert_eq!(resp.status(), 303, "setup failed");
        cookie_of(&resp, "parley_session").expect("session cookie")
    }

    /// Invites `email` as `role` (as the signed-in admin `cookie`); the link's path.
    pub async fn invite(&self, cookie: &str, email: &str, role: &str) -> String {
        let resp = self
            .post(
                "/settings/users/invite",
                Some(cookie),
                &form(&[("email", email), ("role", role)]),
            )
            .await;
        assert_eq!(resp.status(), 200, "invite failed");
        let page = resp.text().await.expect("page");
        let start = page.find("/invite/").expect("invite link on the page");
        let rest = &page[start..];
        rest[..rest.find('"').expect("end of link")].to_owned()
    }

    /// Accepts an invite with a password; the new user's session cookie.
    pub async fn accept(&self, link: &str, password: &str) -> String {
        let resp = self
            .post(link, None, &form(&[("password", password)]))
            .await;
        assert_eq!(resp.status(), 303, "accepting {link} failed");
        cookie_of(&resp, "parley_session").expect("session cookie")
    }
}

const OWNER: &str = "owner@acme.test";
const OWNER_PW: &str = "owner-password-1";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_fresh_server_is_set_up_in_a_browser_and_an_invited_agent_gets_the_agent_role() {
    let app = spawn_fresh().await;
    let token = app
        .engine
        .issue_setup_link()
        .await
        .expect("setup")
        .expect("link");
    // Without a user, the login page has nobody to sign in.
    let b = Browser::start().await;
    let c = &b.client;
    c.goto(&format!("{}/setup/{token}", app.url))
        .await
        .expect("goto");
    b.wait_css("input[name=email]")
        .await
        .send_keys(OWNER)
        .await
        .expect("type");
    for (name, value) in [("password", OWNER_PW), ("account", "Acme")] {
        b.wait_css(&format!("input[name={name}]"))
            .await
            .send_keys(value)
            .await
            .expect("type");
    }
    b.wait_css("button[type=submit]")
        .await
        .click()
        .await
        .expect("submit");
    b.wait_text("Sign out").await;
    b.wait_text("Main").await;
    // The link worked once.
    let again = app.get(&format!("/setup/{token}"), None).await;
    assert_eq!(again.status(), 404);
    assert!(
        again
            .text()
            .await
            .expect("page")
            .contains("setup_link_used")
    );

    // The owner invites an agent from the users page.
    c.goto(&format!("{}/settings/users", app.url))
        .await
        .expect("goto");
    b.wait_css("form[action='/settings/users/invite'] input[name=email]")
        .await
        .send_keys("agent@acme.test")
        .await
        .expect("type");
    let role = b
        .wait_css("form[action='/settings/users/invite'] select[name=role]")
        .await;
    role.select_by_value("agent").await.expect("agent");
    b.wait_css("form[action='/settings/users/invite'] button")
        .await
        .click()
        .await
        .expect("invite");
    let link = b
        .wait_css("#invite-link")
        .await
        .prop("value")
        .await
        .expect("value")
        .expect("link");
    assert!(link.contains("/invite/"), "{link}");

    // The agent opens the link (signed out), chooses a password and is signed in.
    b.wait_css("form[action='/logout'] button")
        .await
        .click()
        .await
        .expect("sign out");
    b.wait_url("/login").await;
    c.goto(&link).await.expect("goto invite");
    b.wait_text("agent").await;
    b.wait_css("input[name=password]")
        .await
        .send_keys("agent-password-1")
        .await
        .expect("type");
    b.wait_css("button[type=submit]")
        .await
        .click()
        .await
        .expect("accept");
    b.wait_text("Sign out agent@acme.test").await;
    c.goto(&format!("{}/account", app.url)).await.expect("goto");
    b.wait_text("your role in this application: agent").await;
    // A management page is not for agents: 403 with the stable code.
    c.goto(&format!("{}/settings/users", app.url))
        .await
        .expect("goto");
    let refusal = b.wait_css("[data-code]").await;
    assert_eq!(
        refusal.attr("data-code").await.expect("attr").as_deref(),
        Some("insufficient_role")
    );
    let csp = b.csp_violations().await;
    assert!(csp.is_empty(), "CSP violations: {csp:?}");

    // And a management action over HTTP with the agent's session: 403.
    let agent = app.sign_in("agent@acme.test", "agent-password-1").await;
    let sync = app.post("/templates/sync", Some(&agent), "").await;
    assert_eq!(sync.status(), 403);
    assert!(
        sync.text()
            .await
            .expect("body")
            .contains("insufficient_role")
    );
}

#[tokio::test]
async fn logout_ends_the_session_on_the_server() {
    let app = spawn_fresh().await;
    let cookie = app.set_up_owner(OWNER, OWNER_PW).await;
    assert!(app.signed_in(&cookie).await);
    let out = app.post("/logout", Some(&cookie), "").await;
    assert_eq!(out.status(), 303);
    // The browser would drop the cookie; whoever kept a copy has nothing either.
    assert!(
        !app.signed_in(&cookie).await,
        "the old cookie still opens pages"
    );
    let json = app
        .http
        .post(format!("{}/contacts/count", app.url))
        .header("cookie", &cookie)
        .header("origin", app.url.as_str())
        .json(&serde_json::json!({"filter": ""}))
        .send()
        .await
        .expect("post");
    assert_eq!(json.status(), 401);
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_and_a_user_ends_their_own() {
    let app = spawn_fresh().await;
    let here = app.set_up_owner(OWNER, OWNER_PW).await;
    let laptop = app.sign_in(OWNER, OWNER_PW).await;
    let phone = app.sign_in(OWNER, OWNER_PW).await;
    // The account page lists the three sessions; ending one ends exactly that one.
    let page = app
        .get("/account", Some(&here))
        .await
        .text()
        .await
        .expect("page");
    assert_eq!(page.matches("class=\"session\"").count(), 3, "{page}");
    let ids: Vec<String> = page
        .match_indices("/account/sessions/")
        .map(|(i, m)| {
            page[i + m.len()..]
                .split('/')
                .next()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 2, "the two other sessions can be ended");
    let r = app
        .post(
            &format!("/account/sessions/{}/end", ids[0]),
            Some(&here),
            "",
        )
        .await;
    assert_eq!(r.status(), 200);
    let (a, b) = (app.signed_in(&laptop).await, app.signed_in(&phone).await);
    assert!(a != b, "exactly one of the two ended");
    assert!(app.signed_in(&here).await);
    let laptop = if a { laptop } else { phone };
    // A wrong current password changes nothing.
    let wrong = app
        .post(
            "/account/password",
            Some(&here),
            &form(&[("current", "not-my-password"), ("new", "new-password-22")]),
        )
        .await;
    assert_eq!(wrong.status(), 422);
    assert!(app.signed_in(&laptop).await);
    let changed = app
        .post(
            "/account/password",
            Some(&here),
            &form(&[("current", OWNER_PW), ("new", "new-password-22")]),
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert!(
        app.signed_in(&here).await,
        "the session that changed it stays"
    );
    assert!(!app.signed_in(&laptop).await, "the other session ended");
    let refused = app
        .post(
            "/login",
            None,
            &form(&[("email", OWNER), ("password", OWNER_PW)]),
        )
        .await;
    assert_eq!(refused.status(), 401);
    app.sign_in(OWNER, "new-password-22").await;

    // The operator's reset ends every session.
    let password = app.engine.reset_password(OWNER).await.expect("reset");
    assert!(!app.signed_in(&here).await);
    app.sign_in(OWNER, &password).await;
}

#[tokio::test]
async fn a_burst_of_wrong_passwords_is_throttled_and_memory_stays_bounded() {
    let app = spawn_fresh().await;
    app.set_up_owner(OWNER, OWNER_PW).await;
    let before = rss_kib();
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (http, url) = (app.http.clone(), app.url.clone());
        tries.spawn(async move {
            http.post(format!("{url}/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", url.as_str())
                .body(form(&[
                    ("email", OWNER),
                    ("password", &format!("wrong-{i}")),
                ]))
                .send()
                .await
                .expect("post")
        });
    }
    let answers = tries.join_all().await;
    let after = rss_kib();
    let throttled: Vec<_> = answers.iter().filter(|r| r.status() == 429).collect();
    let refused = answers.iter().filter(|r| r.status() == 401).count();
    assert_eq!(throttled.len() + refused, 50, "only 401 and 429");
    assert!(
        throttled.len() >= 40,
        "most of the burst is throttled: {} of 50",
        throttled.len()
    );
    for r in &throttled {
        let secs: u64 = r.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!(secs >= 1);
    }
    assert!(
        after < before + 100 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // Even the right password waits its turn now, with the form's clear message …
    let wait = app
        .post(
            "/login",
            None,
            &form(&[("email", OWNER), ("password", OWNER_PW)]),
        )
        .await;
    assert_eq!(wait.status(), 429);
    assert!(
        wait.text()
            .await
            .expect("page")
            .contains("Too many sign-in attempts")
    );
    // … and gets in once the backoff has passed.
    app.clock.advance(16 * 60 * 1000);
    app.sign_in(OWNER, OWNER_PW).await;
}

#[tokio::test]
async fn unknown_and_wrong_credentials_get_the_same_answer() {
    let app = spawn_fresh().await;
    app.set_up_owner(OWNER, OWNER_PW).await;
    let wrong = app
        .post(
            "/login",
            None,
            &form(&[("email", OWNER), ("password", "wrong-password")]),
        )
        .await;
    let unknown = app
        .post(
            "/login",
            None,
            &form(&[
                ("email", "nobody@acme.test"),
                ("password", "wrong-password"),
            ]),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    assert!(cookie_of(&wrong, "parley_session").is_none());
    assert!(cookie_of(&unknown, "parley_session").is_none());
    let wrong = wrong.text().await.expect("page").replace(OWNER, "EMAIL");
    let unknown = unknown
        .text()
        .await
        .expect("page")
        .replace("nobody@acme.test", "EMAIL");
    assert_eq!(wrong, unknown);
    // Unknown emails are throttled like known ones.
    for i in 0..5 {
        let r = app
            .post(
                "/login",
                None,
                &form(&[("email", "ghost@acme.test"), ("password", &format!("x{i}"))]),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    let r = app
        .post(
            "/login",
            None,
            &form(&[("email", "ghost@acme.test"), ("password", "x")]),
        )
        .await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn sign_in_is_throttled_per_client_address_across_emails() {
    let app = spawn_fresh().await;
    app.set_up_owner(OWNER, OWNER_PW).await;
    // Twenty attempts from one address run, each on an email of its own …
    for i in 0..20 {
        let r = app
            .post(
                "/login",
                None,
                &form(&[("email", &format!("guess{i}@acme.test")), ("password", "x")]),
            )
            .await;
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    // … then the address waits, whatever the email, the right password included.
    let r = app
        .post(
            "/login",
            None,
            &form(&[("email", OWNER), ("password", OWNER_PW)]),
        )
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    app.clock.advance(2_000);
    app.sign_in(OWNER, OWNER_PW).await;
}

#[tokio::test]
async fn totp_second_factor_is_enrolled_and_asked_at_sign_in() {
    let app = spawn_fresh().await;
    let cookie = app.set_up_owner(OWNER, OWNER_PW).await;
    let start = app.post("/account/totp/start", Some(&cookie), "").await;
    assert_eq!(start.status(), 200);
    let page = start.text().await.expect("page");
    let at = page.find("id=\"totp-secret\">").expect("secret shown") + 17;
    let secret = page[at..].split('<').next().expect("secret").to_owned();
    assert!(page.contains("otpauth://totp/"), "the URI is shown");
    let wrong = app
        .post(
            "/account/totp/confirm",
            Some(&cookie),
            &form(&[("code", "000000")]),
        )
        .await;
    assert_eq!(wrong.status(), 422);
    let code = parley_engine::identity::totp_code(&secret, app.engine.now()).expect("code");
    let ok = app
        .post(
            "/account/totp/confirm",
            Some(&cookie),
            &form(&[("code", &code)]),
        )
        .await;
    assert_eq!(ok.status(), 200);
    // The secret is kept encrypted: its base32 text is nowhere in the database.
    // (The store's own test checks the bytes; here the page no longer shows it.)
    let page = app
        .get("/account", Some(&cookie))
        .await
        .text()
        .await
        .expect("page");
    assert!(!page.contains(&secret));

    // A right password now leads to the code step, which opens no page by itself.
    let first = app
        .post(
            "/login",
            None,
            &form(&[("email", OWNER), ("password", OWNER_PW)]),
        )
        .await;
    assert_eq!(first.status(), 303);
    assert_eq!(first.headers()["location"], "/login/code");
    assert!(cookie_of(&first, "parley_session").is_none());
    let pending = cookie_of(&first, "parley_pending").expect("pending cookie");
    let as_session = pending.replacen("parley_pending", "parley_session", 1);
    assert!(
        !app.signed_in(&as_session).await,
        "a pending sign-in opens no page"
    );
    let bad = app
        .post("/login/code", Some(&pending), &form(&[("code", "123456")]))
        .await;
    assert_eq!(bad.status(), 401);
    let code = parley_engine::identity::totp_code(&secret, app.engine.now()).expect("code");
    let done = app
        .post("/login/code", Some(&pending), &form(&[("code", &code)]))
        .await;
    assert_eq!(done.status(), 303);
    let session = cookie_of(&done, "parley_session").expect("session");
    assert!(app.signed_in(&session).await);
    // The pending token was replaced: it cannot be completed twice.
    let again = app
        .post("/login/code", Some(&pending), &form(&[("code", &code)]))
        .await;
    assert_eq!(again.headers()["location"], "/login");

    // The same code in the same window is accepted once (RFC 6238 §5.2): a second sign-in
    // replaying it gets the wrong-code answer.
    let second = app
        .post(
            "/login",
            None,
            &form(&[("email", OWNER), ("password", OWNER_PW)]),
        )
        .await;
    assert_eq!(second.headers()["location"], "/login/code");
    let pending = cookie_of(&second, "parley_pending").expect("pending cookie");
    let replay = app
        .post("/login/code", Some(&pending), &form(&[("code", &code)]))
        .await;
    assert_eq!(replay.status(), 401, "a used code is refused");
    assert!(cookie_of(&replay, "parley_session").is_none());

    // Wrong codes are throttled, and the refusal says when to come back.
    let mut throttled = None;
    for _ in 0..20 {
        let r = app
            .post("/login/code", Some(&pending), &form(&[("code", "123456")]))
            .await;
        if r.status() == 429 {
            throttled = Some(r);
            break;
        }
        assert_eq!(r.status(), 401);
    }
    let throttled = throttled.expect("the code step is throttled");
    let secs: u64 = throttled.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(secs >= 1);
}

#[tokio::test]
async fn invite_links_expire_and_work_once() {
    let app = spawn_fresh().await;
    let owner = app.set_up_owner(OWNER, OWNER_PW).await;
    let late = app.invite(&owner, "late@acme.test", "viewer").await;
    let once = app.invite(&owner, "once@acme.test", "viewer").await;
    let used = app.accept(&once, "viewer-password-1").await;
    assert!(app.signed_in(&used).await);
    let twice = app
        .post(&once, None, &form(&[("password", "another-password")]))
        .await;
    assert_eq!(twice.status(), 404);
    assert!(twice.text().await.expect("page").contains("invite_expired"));

    app.clock
        .advance(parley_engine::identity::INVITE_TTL_MS + 1);
    let page = app.get(&late, None).await;
    assert_eq!(page.status(), 404);
    assert!(page.text().await.expect("page").contains("invite_expired"));
    let post = app
        .post(&late, None, &form(&[("password", "viewer-password-1")]))
        .await;
    assert_eq!(post.status(), 404);
    let r = app
        .post(
            "/login",
            None,
            &form(&[
                ("email", "late@acme.test"),
                ("password", "viewer-password-1"),
            ]),
        )
        .await;
    assert_eq!(r.status(), 401, "an expired invite creates no user");
}

#[tokio::test]
async fn every_console_route_checks_the_role() {
    let app = spawn_fresh().await;
    let owner = app.set_up_owner(OWNER, OWNER_PW).await;
    let mut cookies = vec![("owner", owner.clone())];
    for role in ["admin", "agent", "viewer"] {
        let link = app.invite(&owner, &format!("{role}@acme.test"), role).await;
        cookies.push((role, app.accept(&link, &format!("{role}-password-1")).await));
    }
    let rank = |r: &str| {
        ["viewer", "agent", "admin", "owner"]
            .iter()
            .position(|x| *x == r)
            .expect("role")
    };
    // (method, path, body, least role). Bodies are valid enough to pass the role check;
    // what happens after it does not matter here, only whether it is 403.
    let routes: &[(&str, &str, &str, &str)] = &[
        ("GET", "/", "", "viewer"),
        ("GET", "/messages", "", "viewer"),
        ("GET", "/dashboards/meta", "", "viewer"),
        ("GET", "/contacts", "", "viewer"),
        ("GET", "/templates", "", "viewer"),
        ("GET", "/campaigns/whatsapp", "", "viewer"),
        ("GET", "/settings/platforms", "", "viewer"),
        ("GET", "/account", "", "viewer"),
        ("GET", "/import", "", "agent"),
        ("POST", "/segments", "name=x&filter=", "agent"),
        ("GET", "/templates/new", "", "admin"),
        ("GET", "/campaigns/whatsapp/new", "", "admin"),
        ("POST", "/templates/sync", "", "admin"),
        ("GET", "/settings/users", "", "admin"),
        // The user's own applications (the switcher's overflow); creating one needs admin.
        ("GET", "/settings/applications", "", "viewer"),
        (
            "POST",
            "/settings/users/invite",
            "email=n%40acme.test&role=viewer",
            "admin",
        ),
        ("POST", "/settings/applications", "name=", "admin"),
    ];
    for (role, cookie) in &cookies {
        for (method, path, body, least) in routes {
            let resp = if *method == "GET" {
                app.get(path, Some(cookie)).await
            } else {
                app.post(path, Some(cookie), body).await
            };
            let allowed = rank(role) >= rank(least);
            let status = resp.status().as_u16();
            if allowed {
                assert_ne!(status, 403, "{role} {method} {path}");
            } else {
                assert_eq!(status, 403, "{role} {method} {path}");
                assert!(
                    resp.text()
                        .await
                        .expect("body")
                        .contains("insufficient_role"),
                    "{role} {method} {path}"
                );
            }
        }
    }
    // The pages' JSON calls answer the API's error shape.
    let (_, viewer) = &cookies[3];
    let json = app
        .http
        .post(format!("{}/settings/platforms/whatsapp/signup", app.url))
        .header("cookie", viewer)
        .header("origin", app.url.as_str())
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(json.status(), 403);
    let body: serde_json::Value = json.json().await.expect("json");
    assert_eq!(body["error"]["code"], "insufficient_role");

    // An admin manages admins, agents and viewers but not owners.
    let (_, admin) = &cookies[1];
    let page = app
        .get("/settings/users", Some(&owner))
        .await
        .text()
        .await
        .expect("page");
    let owner_id = user_id_on_page(&page, OWNER);
    let viewer_id = user_id_on_page(&page, "viewer@acme.test");
    let demote = app
        .post(
            &format!("/settings/users/{owner_id}/role"),
            Some(admin),
            "role=viewer",
        )
        .await;
    assert_eq!(demote.status(), 403);
    let promote = app
        .post(
            &format!("/settings/users/{viewer_id}/role"),
            Some(admin),
            "role=owner",
        )
        .await;
    assert_eq!(promote.status(), 403);
    let owner_invite = app
        .post(
            "/settings/users/invite",
            Some(admin),
            &form(&[("email", "boss@acme.test"), ("role", "owner")]),
        )
        .await;
    assert_eq!(owner_invite.status(), 403, "admins invite no owners");
    let to_agent = app
        .post(
            &format!("/settings/users/{viewer_id}/role"),
            Some(admin),
            "role=agent",
        )
        .await;
    assert_eq!(to_agent.status(), 303);
    // The new role holds at once, in the session the user already has.
    let (_, viewer) = &cookies[3];
    assert_ne!(app.get("/import", Some(viewer)).await.status(), 403);
    // The last owner stays.
    let alone = app
        .post(
            &format!("/settings/users/{owner_id}/remove"),
            Some(&owner),
            "",
        )
        .await;
    assert_eq!(alone.status(), 409);
    // A removed user's session opens no page of the application any more.
    let removed = app
        .post(
            &format!("/settings/users/{viewer_id}/remove"),
            Some(admin),
            "",
        )
        .await;
    assert_eq!(removed.status(), 303);
    assert_eq!(app.get("/messages", Some(viewer)).await.status(), 403);
}

fn user_id_on_page(page: &str, email: &str) -> String {
    let at = page
        .find(&format!("data-email=\"{email}\""))
        .unwrap_or_else(|| panic!("{email} not listed"));
    let rest = &page[at..];
    let form = rest.find("/settings/users/usr_").expect("user form") + "/settings/users/".len();
    rest[form..].split('/').next().expect("id").to_owned()
}

#[tokio::test]
async fn an_owner_creates_a_second_application_and_switches_to_it() {
    let app = spawn_fresh().await;
    let owner = app.set_up_owner(OWNER, OWNER_PW).await;
    let agent = {
        let link = app.invite(&owner, "agent@acme.test", "agent").await;
        app.accept(&link, "agent-password-1").await
    };
    let bad = app
        .post("/settings/applications", Some(&owner), "name=")
        .await;
    assert_eq!(bad.status(), 422);
    let created = app
        .post("/settings/applications", Some(&owner), "name=Second+shop")
        .await;
    assert_eq!(created.status(), 303);
    // The new application is now the owner's current one: every page works on it.
    let overview = app.get("/", Some(&owner)).await.text().await.expect("page");
    assert!(overview.contains("<h1>Second shop</h1>"), "{overview}");
    let users = app
        .get("/settings/users", Some(&owner))
        .await
        .text()
        .await
        .expect("page");
    assert!(users.contains("Users of Second shop"));
    assert!(
        !users.contains("agent@acme.test"),
        "the agent has no role there"
    );
    // Back to the first through the switcher.
    let page = app
        .get("/settings/applications", Some(&owner))
        .await
        .text()
        .await
        .expect("page");
    let first = page
        .match_indices("name=\"application\" value=\"")
        .map(|(i, m)| {
            page[i + m.len()..]
                .split('"')
                .next()
                .expect("id")
                .to_owned()
        })
        .next()
        .expect("a switch button");
    let switched = app
        .post(
            "/session/application",
            Some(&owner),
            &form(&[("application", &first)]),
        )
        .await;
    assert_eq!(switched.status(), 303);
    let overview = app.get("/", Some(&owner)).await.text().await.expect("page");
    assert!(overview.contains("<h1>Shop</h1>"));
    // The agent cannot switch to an application they have no role in.
    let apps = app
        .get("/settings/applications", Some(&owner))
        .await
        .text()
        .await
        .expect("page");
    let second = apps
        .match_indices("name=\"application\" value=\"")
        .map(|(i, m)| {
            apps[i + m.len()..]
                .split('"')
                .next()
                .expect("id")
                .to_owned()
        })
        .find(|id| id != &first)
        .expect("the other application");
    let refused = app
        .post(
            "/session/application",
            Some(&agent),
            &form(&[("application", &second)]),
        )
        .await;
    assert_eq!(refused.status(), 404);
}

#[tokio::test]
async fn the_api_lists_and_creates_applications_of_the_tokens_account() {
    let app = crate::helpers::spawn_app().await;
    let (status, created) = app
        .api_call(
            reqwest::Method::POST,
            "/api/v1/applications",
            Some(&serde_json::json!({"name": "Second"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert!(created["id"].as_str().expect("id").starts_with("app_"));
    let (status, list) = app
        .api_call(reqwest::Method::GET, "/api/v1/applications", None)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Demo application", "Second"]);
    assert_eq!(list["data"][0]["current"], true);
    let (status, bad) = app
        .api_call(
            reqwest::Method::POST,
            "/api/v1/applications",
            Some(&serde_json::json!({"name": ""})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(bad["error"]["code"], "invalid_name");
    // The demo owner owns the new application and can switch to it in the console.
    let cookie = app.console_cookie().await;
    let (_, page) = app.console_get(&cookie, "/settings/applications").await;
    assert!(page.contains("Second"));
}

/// An application has at most `MAX_PENDING_INVITES` open invites: one more is refused with 409
/// `invite_limit_reached` (the users page lists every open invite); once they expire, inviting
/// works again.
#[tokio::test]
async fn open_invites_are_bounded_and_expired_ones_make_room() {
    let app = spawn_fresh().await;
    let owner = app.set_up_owner(OWNER, OWNER_PW).await;
    let max = parley_engine::identity::MAX_PENDING_INVITES;
    for i in 0..max {
        app.invite(&owner, &format!("person{i}@acme.test"), "viewer")
            .await;
    }
    let resp = app
        .post(
            "/settings/users/invite",
            Some(&owner),
            &form(&[("email", "one-more@acme.test"), ("role", "viewer")]),
        )
        .await;
    assert_eq!(resp.status(), 409);
    assert!(
        resp.text().await.expect("page").contains("open invites"),
        "the page says why"
    );
    app.clock
        .advance(parley_engine::identity::INVITE_TTL_MS + 1);
    // A week later the owner's session has ended too.
    let owner = app.sign_in(OWNER, OWNER_PW).await;
    app.invite(&owner, "one-more@acme.test", "viewer").await;
}
