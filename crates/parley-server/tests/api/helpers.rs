//! `TestApp`: the real server on 127.0.0.1:0 over a real SQLite file, talking over real HTTP
//! to the real sandbox (also on port 0), seeded like `parley demo`.

use parley_domain::{BusinessId, WabaId};
use std::sync::Arc;
use std::time::Duration;

use parley_engine::demo::DemoPlatform;
use parley_engine::{Engine, EngineConfig, OffsetClock};
use parley_meta::GraphClient;
use parley_sandbox::{Sandbox, SandboxConfig, demo_ids};
use parley_server::{Server, ServerConfig};
use parley_store::{SecretCipher, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub console_email: String,
    pub console_password: String,
    pub url: String,
    pub sandbox_url: String,
    pub token: String,
    pub app_secret: String,
    pub store: Arc<dyn Store>,
    /// The engine the server runs (its `progress` tells when the workers made a pass).
    pub engine: Engine,
    /// Parley's clock; `advance` moves it together with the sandbox's virtual clock.
    pub clock: OffsetClock,
    /// The SQLite file (with its `-wal` beside it).
    pub db_path: std::path::PathBuf,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    _workers: tokio::task::JoinSet<()>,
    _dir: tempfile::TempDir,
    /// The test's own PostgreSQL database, when the suite runs on PostgreSQL.
    pub pg: Option<crate::pg::TestDb>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Contacts seeded for every test (deterministic, see `parley_engine::demo::demo_contacts`).
pub const CONTACTS: usize = 20;

/// The Embedded Signup configuration id the tests' console uses (the sandbox takes any).
pub const DEMO_CONFIG_ID: &str = "sandbox-embedded-signup";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `PARLEY_TEST_BACKEND=postgres` runs the suite on PostgreSQL; unset or `sqlite` on SQLite.
/// Anything else is a mistake that would silently test SQLite twice: it panics.
pub fn backend() -> Backend {
    backend_named(std::env::var("PARLEY_TEST_BACKEND").ok().as_deref())
}

pub fn backend_named(name: Option<&str>) -> Backend {
    match name {
        Some("postgres" | "postgresql") => Backend::Postgres,
        None | Some("" | "sqlite") => Backend::Sqlite,
        Some(other) => panic!(
            "PARLEY_TEST_BACKEND={other:?} is no backend: use \"sqlite\" (or leave it unset) or \"postgres\""
        ),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(None).await
}

/// `spawn_app` with `/metrics` behind `metrics_token`.
pub async fn spawn_app_with(metrics_token: Option<String>) -> TestApp {
    spawn_app_configured(|c| c.metrics_token = metrics_token, |_| {}).await
}

/// `spawn_app` with the server's configuration changed by `configure`.
pub async fn spawn_app_with_server(configure: impl FnOnce(&mut ServerConfig)) -> TestApp {
    spawn_app_configured(configure, |_| {}).await
}

/// `spawn_app` whose token is never rate limited: for tests whose subject is a burst or a
/// cap, not the token's rate (100 requests at once, 50 a second after), which a fast machine
/// passes in a sequence of creates.
pub async fn spawn_app_unthrottled() -> TestApp {
    spawn_app_with_server(|c| {
        c.rate_limit = parley_server::auth::RateLimit {
            per_second: std::num::NonZeroU32::new(10_000).expect("non-zero"),
            burst: std::num::NonZeroU32::new(10_000).expect("non-zero"),
        };
    })
    .await
}

/// `spawn_app` with the engine's configuration changed by `tune`.
pub async fn spawn_app_tuned(
    metrics_token: Option<String>,
    tune: impl FnOnce(&mut EngineConfig),
) -> TestApp {
    spawn_app_configured(|c| c.metrics_token = metrics_token, tune).await
}

/// A store over an empty database in `dir`: SQLite by default, PostgreSQL (a throwaway
/// database, dropped with the returned guard) with PARLEY_TEST_BACKEND=postgres
/// (scripts/test.sh runs both).
pub async fn test_store(dir: &std::path::Path) -> (Arc<dyn Store>, Option<crate::pg::TestDb>) {
    let cipher = SecretCipher::load_or_create(dir).expect("key");
    match backend() {
        Backend::Sqlite => (
            Arc::new(
                parley_store::SqliteStore::open(&dir.join("parley.db"), cipher)
                    .await
                    .expect("sqlite"),
            ),
            None,
        ),
        Backend::Postgres => {
            let db = crate::pg::TestDb::create().await;
            let store = parley_store::PostgresStore::connect(&db.url, cipher)
                .await
                .expect("postgres");
            (Arc::new(store), Some(db))
        }
    }
}

/// `spawn_app` with the server's and the engine's configurations changed.
pub async fn spawn_app_configured(
    configure: impl FnOnce(&mut ServerConfig),
    tune: impl FnOnce(&mut EngineConfig),
) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, pg) = test_store(dir.path()).await;
    let shutdown = CancellationToken::new();

    let sandbox_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox_url = format!("http://{}", sandbox_listener.local_addr().expect("addr"));
    let url = format!("http://{}", listener.local_addr().expect("addr"));

    let mut config = SandboxConfig::demo();
    config.webhook_url = Some(format!("{url}/webhooks/whatsapp"));
    config.behaviour.read_ratio = 1.0;
    config.behaviour.sent_delay_ms = 50;
    config.behaviour.delivered_delay_ms = 100;
    config.behaviour.read_delay_ms = 150;
    config.behaviour.webhook_batch_ms = 20;
    let app_secret = config.app_secret.clone();
    let verify_token = config.verify_token.clone();
    let graph_version = config.graph_version.clone();
    let meta_app = parley_engine::MetaApp {
        app_id: config.app_id.clone(),
        app_secret: config.app_secret.clone(),
        config_id: DEMO_CONFIG_ID.into(),
        graph_version: graph_version.clone(),
        sdk_url: format!("{sandbox_url}/sdk.js"),
        message_origin: sandbox_url.clone(),
        ..Default::default()
    };
    tokio::spawn(Sandbox::new(config).serve(sandbox_listener, shutdown.clone()));
    let clock = OffsetClock::default();

    let mut engine_config = EngineConfig {
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        poll_interval: Duration::from_millis(100),
        meta_app,
        // Event receivers in tests listen on 127.0.0.1 over http.
        events: parley_engine::events::EventConfig {
            allow_loopback: true,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            timeout: Duration::from_secs(5),
            ..Default::default()
        },
        ..EngineConfig::default()
    };
    engine_config.media.dir = Some(dir.path().join("media"));
    tune(&mut engine_config);
    let engine = Engine::new(
        store.clone(),
        GraphClient::new(&sandbox_url, graph_version),
        Arc::new(clock.clone()),
        engine_config,
    );
    let seed = engine
        .seed_demo(
            &DemoPlatform {
                business_id: BusinessId::parse(demo_ids::BUSINESS_ID).expect("business id"),
                waba_id: WabaId::parse(demo_ids::WABA_ID).expect("WABA id"),
                access_token: demo_ids::ACCESS_TOKEN.into(),
            },
            CONTACTS,
        )
        .await
        .expect("seed");
    let workers = engine.spawn_workers(shutdown.clone());
    let mut server_config = ServerConfig {
        app_secret: app_secret.clone(),
        verify_token,
        session_key: parley_server::session::SessionKey::new(rand_key()),
        secure_cookies: false,
        metrics_token: None,
        rate_limit: Default::default(),
    };
    configure(&mut server_config);
    let server = Server::new(listener, engine.clone(), server_config);
    tokio::spawn(server.run(shutdown.clone()));
    let console_password = seed.password.clone();
    TestApp {
        console_email: seed.email.clone(),
        console_password,
        url,
        sandbox_url,
        token: seed.api_token,
        app_secret,
        store,
        engine,
        clock,
        db_path: dir.path().join("parley.db"),
        http: reqwest::Client::new(),
        shutdown,
        _workers: workers,
        _dir: dir,
        pg,
    }
}

impl TestApp {
    /// Moves Parley's clock and the sandbox's virtual clock forward together.
    pub async fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).expect("duration");
        self.sandbox_post("/sandbox/clock/advance", &json!({"ms": ms}))
            .await;
        self.clock.advance(ms);
    }

    pub async fn post_message(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/messages", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Posts and expects 202; returns the message id.
    pub async fn send(&self, body: &Value) -> String {
        let resp = self.post_message(body).await;
        let status = resp.status();
        let v: Value = resp.json().await.expect("json");
        assert_eq!(status, 202, "unexpected answer: {v}");
        assert_eq!(v["state"], "queued");
        v["id"].as_str().expect("id").to_owned()
    }

    pub async fn get_message(&self, id: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}/api/v1/messages/{id}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("json")
    }

    /// Polls until the message reaches `state` (or fails the test after 20 s).
    pub async fn wait_for_state(&self, id: &str, state: &str) -> Value {
        self.wait_for_message(id, state, |m| m["state"] == state)
            .await
    }

    /// Polls until `check` holds for the message (or fails the test after 20 s, saying
    /// `what` was awaited).
    pub async fn wait_for_message(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        for _ in 0..400 {
            last = self.get_message(id).await;
            if check(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("message {id} never reached `{what}`: {last}");
    }

    pub async fn sandbox_post(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.sandbox_url))
            .json(body)
            .send()
            .await
            .expect("sandbox request");
        assert!(
            resp.status().is_success(),
            "sandbox {path}: {}",
            resp.status()
        );
        resp.json().await.expect("json")
    }

    /// `GET {path}` on the sandbox (a success), its JSON.
    pub async fn sandbox_get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.sandbox_url))
            .send()
            .await
            .expect("sandbox");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("json")
    }

    pub async fn sandbox_messages(&self) -> Vec<Value> {
        self.sandbox_get("/sandbox/messages").await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The test's PostgreSQL database URL, when the suite runs on PostgreSQL.
    pub fn pg_url(&self) -> Option<&str> {
        self.pg.as_ref().map(|db| db.url.as_str())
    }

    /// Every send (`POST /{phone}/messages`) the sandbox received, accepted or refused, oldest
    /// first (`GET /sandbox/requests?sends=true`): what reached Meta, not only what Meta took.
    pub async fn sandbox_sends(&self) -> Vec<Value> {
        self.sandbox_requests("sends=true").await["data"]
            .as_array()
            .cloned()
            .expect("GET /sandbox/requests: data")
    }

    /// `GET /sandbox/requests?{query}`.
    pub async fn sandbox_requests(&self, query: &str) -> Value {
        self.sandbox_get(&format!("/sandbox/requests?{query}"))
            .await
    }

    /// Asserts that no send reached Meta at all, refused ones included.
    pub async fn assert_nothing_reached_meta(&self, why: &str) {
        let sends = self.sandbox_sends().await;
        assert!(sends.is_empty(), "{why}: Meta received {sends:?}");
    }

    /// Asserts that Meta never refused a send for rate (130429 over the number's throughput,
    /// 131056 over the pair rate): Parley's pacer kept to Meta's limits.
    pub async fn assert_no_rate_refusals(&self) {
        let v = self.sandbox_requests("limit=0").await;
        let refusals = v["rate_refusals"].as_object().expect("rate_refusals");
        for (number, counts) in refusals {
            assert_eq!(
                (&counts["throughput"], &counts["pair_rate"]),
                (&json!(0), &json!(0)),
                "Meta refused sends of {number} for rate: {counts}"
            );
        }
    }

    /// Waits until the sender loops and the campaign worker have each finished a pass that
    /// began after this call: the positive evidence that they looked, which a check that
    /// nothing happens needs (the suite's apps have one number; with several, a pass of any
    /// number counts). Fails the test after 20 s.
    pub async fn workers_looked(&self) {
        let progress = &self.engine.progress;
        let (sender, campaigns) = (progress.sender_passes(), progress.campaign_passes());
        for _ in 0..400 {
            if progress.sender_passes() >= sender + 2 && progress.campaign_passes() >= campaigns + 2
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the workers made no pass in 20 s (sender {sender} → {}, campaigns {campaigns} → {})",
            progress.sender_passes(),
            progress.campaign_passes()
        );
    }

    /// Waits until every stored webhook event has been processed (fails after 20 s).
    pub async fn webhooks_processed(&self) {
        for _ in 0..400 {
            if self
                .store
                .pending_webhook_events(1)
                .await
                .expect("pending events")
                .is_empty()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("webhook events still pending after 20 s");
    }

    /// Posts a webhook body to the server, signed with the app secret (or not).
    pub async fn post_webhook(&self, body: &[u8], signature: Option<&str>) -> reqwest::StatusCode {
        let mut req = self
            .http
            .post(format!("{}/webhooks/whatsapp", self.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        req.send().await.expect("webhook").status()
    }

    /// An API call with the application's token: (status, JSON body).
    pub async fn api_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Polls `GET /api/v1/contacts/{key}` (a phone or a BSUID) until `check` holds (fails
    /// after 20 s).
    pub async fn wait_contact(
        &self,
        key: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/api/v1/contacts/{}", key.replace('+', "%2B"));
        let mut last = Value::Null;
        for _ in 0..400 {
            let (status, v) = self.api_call(reqwest::Method::GET, &path, None).await;
            if status == 200 && check(&v) {
                return v;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("contact {key} never showed {what}: {last}");
    }

    /// Plays the customer through Embedded Signup without a browser (`POST /sandbox/signup`):
    /// a new portfolio with company data, a new WABA, profile and number. Returns what the
    /// dialog hands the page: `{"code", "waba_id", "phone_number_id", "business_id"}`.
    pub async fn sandbox_signup(&self, company: &str) -> Value {
        let resp = self
            .http
            .post(format!("{}/sandbox/signup", self.sandbox_url))
            .json(&json!({
                "business": {"name": company, "website": "https://example.com", "country": "DE"},
                "waba": {"name": format!("{company} WhatsApp")},
                "profile": {"display_name": company, "vertical": "RETAIL"},
                "phone_number": {}
            }))
            .send()
            .await
            .expect("sandbox signup");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "sandbox signup: {status} {v}");
        v
    }

    /// `POST /api/v1/platforms/whatsapp/signup` with what the dialog handed over.
    pub async fn platform_signup(&self, signup: &Value) -> (u16, Value) {
        let body = json!({
            "code": signup["code"], "waba_id": signup["waba_id"],
            "phone_number_id": signup["phone_number_id"], "business_id": signup["business_id"],
            "event": "FINISH",
        });
        self.api_call(
            reqwest::Method::POST,
            "/api/v1/platforms/whatsapp/signup",
            Some(&body),
        )
        .await
    }

    /// Signs in to the console as the demo user; returns the `Cookie` header value.
    pub async fn console_cookie(&self) -> String {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let resp = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .post(format!("{}/login", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", self.url.as_str())
            .body(format!(
                "email={}&password={}",
                enc(&self.console_email),
                enc(&self.console_password)
            ))
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), 303, "console sign-in failed");
        let cookie = resp.headers()["set-cookie"].to_str().expect("cookie");
        cookie.split(';').next().expect("pair").to_owned()
    }

    /// A console JSON POST as the page's `fetch` makes it (same origin, session cookie).
    pub async fn console_post(&self, cookie: &str, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .header("cookie", cookie)
            .header("origin", self.url.as_str())
            .json(body)
            .send()
            .await
            .expect("console post");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn console_get(&self, cookie: &str, path: &str) -> (u16, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .header("cookie", cookie)
            .send()
            .await
            .expect("console get");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// Polls `GET /api/v1/platforms/{id}` until `check` holds (or fails after 20 s).
    pub async fn wait_platform(&self, id: &str, check: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..400 {
            let (status, v) = self
                .api_call(
                    reqwest::Method::GET,
                    &format!("/api/v1/platforms/{id}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{v}");
            if check(&v) {
                return v;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("platform {id} never reached the expected state: {last}");
    }

    pub fn sign(&self, body: &[u8]) -> String {
        parley_meta::sign(self.app_secret.as_bytes(), body)
    }

    /// A seeded contact's phone and first name.
    pub async fn contact(&self, index: usize) -> (String, String) {
        let c = &parley_engine::demo::demo_contacts(CONTACTS)[index];
        let first = match c.tags.get("first_name") {
            Some(parley_domain::TagValue::String(s)) => s.clone(),
            other => panic!("seeded contact without first_name: {other:?}"),
        };
        (c.phone.clone(), first)
    }
}

/// A `messages` webhook with the given statuses, as Meta sends it.
pub fn status_webhook(statuses: &[(&str, &str, Option<&str>)]) -> Value {
    let statuses: Vec<Value> = statuses
        .iter()
        .map(|(wamid, status, callback)| {
            let mut s = json!({
                "id": wamid, "status": status, "timestamp": "1750030073",
                "recipient_id": "4915110007919",
            });
            if let Some(cb) = callback {
                s["biz_opaque_callback_data"] = json!(cb);
            }
            s
        })
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": demo_ids::WABA_ID, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100100", "phone_number_id": demo_ids::PHONE_NUMBER_ID},
        "statuses": statuses
    }}]}]})
}

pub fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, b) in uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .enumerate()
    {
        key[i] = *b;
    }
    key
}

/// A typo in `PARLEY_TEST_BACKEND` must not quietly run the suite on SQLite a second time.
#[test]
#[should_panic(expected = "is no backend")]
fn an_unknown_test_backend_panics() {
    backend_named(Some("postgress"));
}

#[test]
fn the_test_backends_are_named() {
    assert_eq!(backend_named(None), Backend::Sqlite);
    assert_eq!(backend_named(Some("sqlite")), Backend::Sqlite);
    assert_eq!(backend_named(Some("postgres")), Backend::Postgres);
}

/// A second node on the app's PostgreSQL database: its own store, engine and server, role
/// `api` (no workers), sharing the app's master key and media directory (as nodes must). Stops
/// with the app.
pub async fn api_node(app: &TestApp, db_url: &str) -> (String, tokio::task::JoinSet<()>) {
    use std::sync::Arc;
    // The same master key (nodes share it, or they cannot read the business tokens).
    let cipher = parley_store::SecretCipher::load_or_create(
        app.db_path.parent().expect("the app's data directory"),
    )
    .expect("key");
    let store = parley_store::PostgresStore::connect(db_url, cipher)
        .await
        .expect("postgres");
    let demo = parley_sandbox::SandboxConfig::demo();
    let engine = parley_engine::Engine::new(
        Arc::new(store),
        parley_meta::GraphClient::new(&app.sandbox_url, demo.graph_version.clone()),
        Arc::new(app.clock.clone()),
        {
            let mut config = parley_engine::EngineConfig {
                poll_interval: Duration::from_secs(3600),
                ..Default::default()
            };
            config.media.dir = app.db_path.parent().map(|d| d.join("media"));
            config
        },
    );
    let shutdown = app.shutdown.child_token();
    let node = engine.spawn_node(parley_engine::nodes::NodeRole::Api, shutdown.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = parley_server::Server::new(
        listener,
        engine,
        parley_server::ServerConfig {
            app_secret: app.app_secret.clone(),
            verify_token: demo.verify_token.clone(),
            session_key: parley_server::session::SessionKey::new(rand_key()),
            secure_cookies: false,
            metrics_token: None,
            rate_limit: Default::default(),
        },
    );
    tokio::spawn(server.run(shutdown));
    (url, node)
}

/// Seeds `phones` as contacts of the first application, each tagged `cohort = <cohort>` (the
/// campaign tests' audience filter).
pub async fn seed_cohort(app: &TestApp, cohort: &str, phones: &[impl AsRef<str>]) {
    Cohort::of(cohort, phones).seed(app).await;
}

/// Contacts of the first application that a test seeds, each tagged `cohort = <name>` (the
/// campaign tests' audience filter): `Cohort::of` or `Cohort::numbered`, what else they carry,
/// then `seed`.
pub struct Cohort<'a> {
    name: &'a str,
    phones: Vec<String>,
    first_names: bool,
    opted_out: usize,
    zones: Vec<Option<String>>,
}

impl<'a> Cohort<'a> {
    /// `phones`, tagged `cohort = <name>`.
    pub fn of(name: &'a str, phones: &[impl AsRef<str>]) -> Self {
        Cohort {
            name,
            phones: phones.iter().map(|p| p.as_ref().to_owned()).collect(),
            first_names: false,
            opted_out: 0,
            zones: Vec::new(),
        }
    }

    /// `n` numbers `<prefix><start + i>` (eight digits after the prefix); each test gives its
    /// cohorts their own `start`, so no two share a number.
    pub fn numbered(name: &'a str, prefix: &str, start: u64, n: u64) -> Self {
        let phones: Vec<String> = (0..n)
            .map(|i| format!("{prefix}{:08}", start + i))
            .collect();
        Cohort::of(name, &phones)
    }

    /// Each also tagged `first_name = ana<i>`, `i` its place in the cohort.
    pub fn first_names(mut self) -> Self {
        self.first_names = true;
        self
    }

    /// The last `n` opted out of marketing (source `api`).
    pub fn opted_out(mut self, n: usize) -> Self {
        self.opted_out = n;
        self
    }

    /// The timezone of each contact, by place (`None`: none stored).
    pub fn zones(mut self, zones: &[Option<&str>]) -> Self {
        self.zones = zones.iter().map(|z| z.map(str::to_owned)).collect();
        self
    }

    /// Writes the contacts (500 a statement); their phones, in order.
    pub async fn seed(self, app: &TestApp) -> Vec<String> {
        use parley_domain::{Subscription, TagValue, Tags};
        use parley_store::audience::{ContactUpsert, SubscriptionChange};
        let application = app.store.applications().await.expect("apps")[0].id.clone();
        let n = self.phones.len();
        let batch: Vec<ContactUpsert> = self
            .phones
            .iter()
            .enumerate()
            .map(|(i, phone)| {
                let mut tags = Tags::new();
                tags.insert("cohort".into(), TagValue::String(self.name.into()));
                if self.first_names {
                    tags.insert("first_name".into(), TagValue::String(format!("ana{i}")));
                }
                ContactUpsert {
                    phone: phone.clone(),
                    timezone: self.zones.get(i).cloned().flatten(),
                    tags: tags.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                    subscription: (i + self.opted_out >= n).then(|| SubscriptionChange {
                        state: Subscription::OptedOut,
                        source: "api".into(),
                        note: None,
                    }),
                    ..ContactUpsert::default()
                }
            })
            .collect();
        for chunk in batch.chunks(500) {
            app.store
                .upsert_audience(&application, chunk, app.now_ms())
                .await
                .expect("seed contacts");
        }
        self.phones
    }
}

/// A campaign named `name` of `template` to the contacts tagged `cohort = <cohort>`, of `kind`
/// (`marketing` or `transactional`), with `extra` fields merged in.
pub fn cohort_campaign(
    name: &str,
    cohort: &str,
    template: Value,
    kind: &str,
    extra: Value,
) -> Value {
    let mut body = json!({
        "name": name,
        "template": template,
        "audience": {"filter": format!("cohort = \"{cohort}\"")},
        "type": kind,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// The demo's `welcome` template, its `first_name` from the contact's tag.
pub fn welcome_template() -> Value {
    json!({"name": "welcome", "language": "en",
           "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}})
}

/// A text message from `from` (Meta's digits) to the demo number, as Meta's webhook body.
pub fn text_webhook(from: &str, wamid: &str, timestamp_secs: i64, text: &str) -> Vec<u8> {
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": demo_ids::WABA_ID, "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100100", "phone_number_id": demo_ids::PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": from}],
        "messages": [{"from": from, "id": wamid, "timestamp": timestamp_secs.to_string(), "type": "text", "text": {"body": text}}]
    }}]}]});
    serde_json::to_vec(&body).expect("json")
}

/// Campaigns through the API.
impl TestApp {
    /// The served OpenAPI document.
    pub async fn openapi(&self) -> Value {
        self.http
            .get(format!("{}/api/openapi.json", self.url))
            .send()
            .await
            .expect("openapi")
            .json()
            .await
            .expect("openapi json")
    }

    /// Parley's clock now, in milliseconds.
    pub fn now_ms(&self) -> i64 {
        use parley_engine::Clock;
        self.clock.now_millis()
    }

    /// Creates a campaign (201); its id.
    pub async fn create_campaign(&self, body: &Value) -> String {
        let (status, v) = self
            .api_call(reqwest::Method::POST, "/api/v1/campaigns", Some(body))
            .await;
        assert_eq!(status, 201, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    /// Creates and starts a campaign; its id.
    pub async fn start_campaign(&self, body: &Value) -> String {
        let id = self.create_campaign(body).await;
        let (status, v) = self.campaign_action(&id, "start").await;
        assert!(status < 300, "start: {status} {v}");
        id
    }

    /// `GET /api/v1/campaigns/{id}{what}` (200).
    pub async fn campaign_get(&self, id: &str, what: &str) -> Value {
        let (status, v) = self
            .api_call(
                reqwest::Method::GET,
                &format!("/api/v1/campaigns/{id}{what}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// `POST /api/v1/campaigns/{id}/{action}`.
    pub async fn campaign_action(&self, id: &str, action: &str) -> (u16, Value) {
        self.api_call(
            reqwest::Method::POST,
            &format!("/api/v1/campaigns/{id}/{action}"),
            None,
        )
        .await
    }

    /// Polls the campaign's stats until `check` holds (fails after 90 s, saying `what`).
    pub async fn wait_stats(&self, id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..1_800 {
            last = self.campaign_get(id, "/stats").await;
            if check(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("campaign {id} never reached {what}: {last}");
    }
}
