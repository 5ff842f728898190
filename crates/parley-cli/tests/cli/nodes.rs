//! Several nodes (#17), with real processes: `parley migrate-store` moves a served SQLite
//! installation (a campaign paused mid-way) to PostgreSQL, refusing while a node serves the
//! source and refusing a non-empty target; `parley serve --role api|worker` splits the HTTP
//! side from the workers, and `/readyz` says which is which.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::crash::{Proc, free_port, postgres, start};
use crate::credentials;

/// The tables the demo data and the steps below fill; the others stay empty in this test.
const FILLED: &[&str] = &[
    "accounts",
    "applications",
    "users",
    "api_tokens",
    "platforms",
    "phone_numbers",
    "templates",
    "contacts",
    "messages",
    "webhook_events",
    "webhook_bodies",
    "inbound_messages",
    "contact_subscription_events",
    "segments",
    "import_jobs",
    "import_rejects",
    "campaigns",
    "quota_reach",
    "campaign_list_entries",
    "memberships",
    "sessions",
    "login_throttle",
    "audit_log",
];

/// A sandbox process, a data directory and how to start `parley serve` on one port.
struct Site {
    dir: tempfile::TempDir,
    sandbox: String,
    parley: String,
    port: u16,
    http: reqwest::Client,
    _sandbox: Proc,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sandbox_port, port) = (free_port(), free_port());
        let sandbox = format!("http://127.0.0.1:{sandbox_port}");
        let parley = format!("http://127.0.0.1:{port}");
        let proc = start(
            &[
                "sandbox".into(),
                "--listen".into(),
                format!("127.0.0.1:{sandbox_port}"),
                "--webhook-url".into(),
                format!("{parley}/webhooks/whatsapp"),
            ],
            &[],
            "Meta sandbox on",
        );
        Site {
            dir,
            sandbox,
            parley,
            port,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            _sandbox: proc,
        }
    }

    fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("parley.db").display())
    }

    fn envs(&self, db_url: &str, port: u16) -> Vec<(&'static str, String)> {
        let config = parley_sandbox::SandboxConfig::demo();
        vec![
            ("PARLEY_DATA_DIR", self.dir.path().display().to_string()),
            ("PARLEY_DATABASE_URL", db_url.to_owned()),
            ("PARLEY_LISTEN", format!("127.0.0.1:{port}")),
            ("PARLEY_META_GRAPH_URL", self.sandbox.clone()),
            ("PARLEY_META_APP_ID", config.app_id.clone()),
            ("PARLEY_META_APP_SECRET", config.app_secret.clone()),
            ("PARLEY_META_VERIFY_TOKEN", config.verify_token.clone()),
        ]
    }

    /// `parley serve` with `extra` arguments on `port`, seeding `contacts` on an empty database.
    fn serve_on(&self, db_url: &str, port: u16, contacts: usize, extra: &[&str]) -> Proc {
        let mut args: Vec<String> =
            vec!["serve".into(), "--seed-demo".into(), contacts.to_string()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        start(&args, &self.envs(db_url, port), "Parley listens on")
    }

    fn token(&self) -> String {
        credentials(self.dir.path())["api_token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.api_at(&self.parley, method, path, body).await
    }

    async fn api_at(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{base}/api/v1{path}"))
            .bearer_auth(self.token());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn sandbox(&self, method: reqwest::Method, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.sandbox))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("sandbox {path}: {e}"));
        assert!(resp.status().is_success(), "sandbox {path}");
        resp.json().await.unwrap_or(Value::Null)
    }

    /// Template sends the sandbox accepted, by recipient digits.
    async fn sandbox_sent(&self) -> HashMap<String, u32> {
        let v = self
            .sandbox(reqwest::Method::GET, "/sandbox/messages", &json!({}))
            .await;
        let mut by = HashMap::new();
        for m in v["data"].as_array().expect("messages") {
            if m["type"] == "template" {
                *by.entry(m["to"].as_str().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
        }
        by
    }

    async fn readyz(&self, base: &str) -> Value {
        let r = self
            .http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz");
        assert_eq!(r.status(), 200);
        r.json().await.expect("readyz json")
    }

    /// Polls `path` until `check` holds.
    async fn until(
        &self,
        base: &str,
        path: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (status, v) = self.api_at(base, reqwest::Method::GET, path, None).await;
            if status == 200 && check(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: {status} {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Stops a node as its operator would (SIGTERM) and waits for it: it deletes its heartbeat.
fn stop(mut node: Proc) {
    let pid = node.0.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let status = node.0.wait().expect("wait");
    assert!(status.success(), "a clean stop: {status}");
}

fn migrate_store(from: &str, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["migrate-store", "--from", from, "--to", to, "--batch", "64"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("parley migrate-store")
}

async fn sqlite_count(url: &str, table: &str) -> i64 {
    let mut c = sqlx::SqliteConnection::connect(url).await.expect("SQLite");
    let n = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut c)
        .await
        .expect("count");
    let _ = c.close().await;
    n
}

async fn pg_count(url: &str, table: &str) -> i64 {
    let mut c = sqlx::PgConnection::connect(url).await.expect("PostgreSQL");
    let n = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut c)
        .await
        .expect("count");
    let _ = c.close().await;
    n
}

#[tokio::test]
async fn migrate_store_moves_a_served_sqlite_installation_and_its_paused_campaign_resumes() {
    const RECIPIENTS: usize = 200;
    let site = Site::new();
    let sqlite = site.sqlite_url();
    let node = site.serve_on(&sqlite, site.port, RECIPIENTS, &[]);
    site.sandbox(
        reqwest::Method::POST,
        "/sandbox/behaviour",
        &json!({"webhook_attempts": 60}),
    )
    .await;

    // Rows in as many tables as the API reaches: an opt-out (subscription history), an
    // inbound message, a segment, an import with a rejected row, a draft list campaign.
    let (status, body) = site
        .api(
            reqwest::Method::PUT,
            "/contacts/+4917099900001",
            Some(&json!({"name": "Ana", "subscription": "opted_out", "tags": {"city": "Köln"}})),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    site.sandbox(
        reqwest::Method::POST,
        "/sandbox/inbound",
        &json!({"from": "+4917099900002", "text": "Hallo"}),
    )
    .await;
    let (status, body) = site
        .api(
            reqwest::Method::POST,
            "/segments",
            Some(&json!({"name": "Everyone", "filter": "visits >= 0"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let resp = site
        .http
        .post(format!("{}/api/v1/contacts/import?format=csv", site.parley))
        .bearer_auth(site.token())
        .body("phone,city\n+4917099900003,Berlin\nnot-a-number,Bonn\n")
        .send()
        .await
        .expect("import");
    assert_eq!(resp.status(), 202);
    site.until(
        &site.parley,
        "/contacts/import?limit=1",
        "the import",
        |v| v["data"][0]["state"] == "done",
    )
    .await;
    let (status, body) = site
        .api(
            reqwest::Method::POST,
            "/campaigns",
            Some(&json!({
                "name": "List", "type": "transactional",
                "template": {"name": "welcome", "language": "en", "variables": {"first_name": "there"}},
                "audience": {"phones": ["+4917099900004", "+4917099900004"]}
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // A console sign-in after a wrong password: a session and the sign-in throttle's row.
    let creds = credentials(site.dir.path());
    let form = |password: &str| {
        let enc = |s: &str| {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        format!(
            "email={}&password={}",
            enc(creds["email"].as_str().expect("email")),
            enc(password)
        )
    };
    for password in [
        "wrong password",
        creds["password"].as_str().expect("password"),
    ] {
        let resp = site
            .http
            .post(format!("{}/login", site.parley))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(password))
            .send()
            .await
            .expect("login");
        assert!(resp.status().as_u16() < 500, "{}", resp.status());
    }

    // The campaign, paused mid-way: each send is slowed so the pause falls inside it.
    let (status, created) = site
        .api(
            reqwest::Method::POST,
            "/campaigns",
            Some(&json!({
                "name": "Moving", "type": "transactional",
                "template": {"name": "welcome", "language": "en",
                             "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}},
                "audience": {"filter": "visits >= 0"}
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    site.sandbox(
        reqwest::Method::POST,
        "/sandbox/faults",
        &json!({"latency_ms": 400}),
    )
    .await;
    let (status, body) = site
        .api(
            reqwest::Method::POST,
            &format!("/campaigns/{id}/start"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while site.sandbox_sent().await.len() < 20 {
        assert!(Instant::now() < deadline, "Meta took no 20 sends");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = site
        .api(
            reqwest::Method::POST,
            &format!("/campaigns/{id}/pause"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    site.sandbox(reqwest::Method::DELETE, "/sandbox/faults", &json!({}))
        .await;
    let paused = site
        .until(
            &site.parley,
            &format!("/campaigns/{id}/stats"),
            "settled",
            |s| s["state"] == "paused" && s["sending"] == 0 && s["planned"] == true,
        )
        .await;
    let before = site.sandbox_sent().await;
    assert!(
        before.len() < RECIPIENTS,
        "the pause fell after the end: {paused}"
    );

    // Refused while the node serves the source.
    let pg = crate::pg::TestDb::create().await;
    let out = migrate_store(&sqlite, &pg.url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "moved while served");
    assert!(
        stderr.contains("a Parley node is running on the source: a `all` node"),
        "{stderr}"
    );
    assert_eq!(pg_count(&pg.url, "accounts").await, 0, "nothing was copied");

    stop(node);
    let out = migrate_store(&sqlite, &pg.url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("every count and checksum matches"),
        "{stdout}"
    );
    for table in parley_store::transfer::COPIED_TABLES {
        let (s, p) = (
            sqlite_count(&sqlite, table).await,
            pg_count(&pg.url, table).await,
        );
        assert_eq!(s, p, "{table}: {s} rows in SQLite, {p} in PostgreSQL");
        assert!(
            stdout.contains(&format!("  {table}: {s} rows copied; count and checksum")),
            "{table} not reported: {stdout}"
        );
        if FILLED.contains(table) {
            assert!(s > 0, "{table} has no row to move");
        }
    }
    // Secrets are the same ciphertext.
    let token_of = |url: String| async move {
        let query = "SELECT access_token FROM platforms ORDER BY id LIMIT 1";
        match url.starts_with("sqlite") {
            true => {
                let mut c = sqlx::SqliteConnection::connect(&url).await.expect("c");
                sqlx::query_scalar::<_, Vec<u8>>(query)
                    .fetch_one(&mut c)
                    .await
                    .expect("token")
            }
            false => {
                let mut c = sqlx::PgConnection::connect(&url).await.expect("c");
                sqlx::query_scalar::<_, Vec<u8>>(query)
                    .fetch_one(&mut c)
                    .await
                    .expect("token")
            }
        }
    };
    assert_eq!(
        token_of(sqlite.clone()).await,
        token_of(pg.url.clone()).await
    );

    // A second move into the now full target is refused.
    let out = migrate_store(&sqlite, &pg.url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the target database already holds Parley data")
            && stderr.contains("--replace"),
        "{stderr}"
    );

    // --replace empties the target first: the same rows again, sequences set past them.
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args([
            "migrate-store",
            "--from",
            &sqlite,
            "--to",
            &pg.url,
            "--replace",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("parley migrate-store --replace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("webhook_events.id: sequence set past the copied rows"),
        "{stdout}"
    );
    for table in ["messages", "campaigns", "webhook_events"] {
        assert_eq!(
            sqlite_count(&sqlite, table).await,
            pg_count(&pg.url, table).await,
            "{table} after --replace"
        );
    }

    // Served from PostgreSQL, the paused campaign resumes and completes, each recipient once.
    let node = site.serve_on(&pg.url, site.port, RECIPIENTS, &[]);
    let stats = site
        .until(
            &site.parley,
            &format!("/campaigns/{id}/stats"),
            "moved",
            |_| true,
        )
        .await;
    assert_eq!(stats["state"], "paused", "{stats}");
    let (status, body) = site
        .api(
            reqwest::Method::POST,
            &format!("/campaigns/{id}/resume"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let stats = site
        .until(
            &site.parley,
            &format!("/campaigns/{id}/stats"),
            "completed",
            |s| s["state"] == "completed",
        )
        .await;
    assert_eq!(stats["failed"], 0, "{stats}");
    let sent = site.sandbox_sent().await;
    let doubled: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "sent twice: {doubled:?}");
    assert_eq!(sent.len(), RECIPIENTS, "{stats}");
    drop(node);
    pg.finish().await;
}

#[tokio::test]
async fn an_api_node_runs_no_workers_and_a_worker_node_sends_what_it_queued() {
    let site = Site::new();
    let pg = match postgres() {
        true => Some(crate::pg::TestDb::create().await),
        false => None,
    };
    let db = pg
        .as_ref()
        .map_or_else(|| site.sqlite_url(), |p| p.url.clone());
    let api = site.serve_on(&db, site.port, 10, &["--role", "api"]);
    let ready = site.readyz(&site.parley).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["role"], "api", "{ready}");
    assert_eq!(ready["workers"], json!([]), "{ready}");

    let (status, queued) = site
        .api(
            reqwest::Method::POST,
            "/messages",
            Some(
                &json!({"to": "+4915110007919", "template": {"name": "welcome", "language": "en",
                         "variables": {"first_name": "there"}}}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let id = queued["id"].as_str().expect("id").to_owned();
    // No sender runs here: the message is queued and Meta has had no send.
    let (_, m) = site
        .api(reqwest::Method::GET, &format!("/messages/{id}"), None)
        .await;
    assert_eq!(m["state"], "queued", "{m}");
    let requests = site
        .sandbox(
            reqwest::Method::GET,
            "/sandbox/requests?sends=true",
            &json!({}),
        )
        .await;
    assert_eq!(requests["data"], json!([]), "{requests}");

    // A worker node: health, readiness and metrics only; it runs the workers.
    let worker_port = free_port();
    let worker_url = format!("http://127.0.0.1:{worker_port}");
    let worker = site.serve_on(&db, worker_port, 10, &["--role", "worker"]);
    let ready = site.readyz(&worker_url).await;
    assert_eq!(ready["role"], "worker", "{ready}");
    assert_eq!(
        ready["workers"],
        json!([
            "sender",
            "campaign_planner",
            "webhook_processor",
            "template_sync",
            "audit_retention",
            "media_fetcher",
            "event_delivery"
        ]),
        "{ready}"
    );
    let (status, body) = site
        .api_at(&worker_url, reqwest::Method::GET, "/messages", None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "route_not_found", "{body}");

    // The worker sends it; Meta's statuses reach the api node and the worker applies them.
    let m = site
        .until(
            &site.parley,
            &format!("/messages/{id}"),
            "not delivered",
            |m| m["state"] == "delivered" || m["state"] == "read",
        )
        .await;
    assert!(m["wamid"].is_string(), "{m}");
    assert_eq!(site.sandbox_sent().await.len(), 1);
    stop(worker);
    stop(api);
    if let Some(pg) = pg {
        pg.finish().await;
    }
}

/// An api node and a worker node on one PostgreSQL, both with an hour-long fallback poll: a
/// message queued on the api node after the worker went idle is sent and its statuses
/// applied only because the api node's `NOTIFY` (`parley_queued`, then `parley_work` for
/// the webhooks it stored) woke the worker. Without the wake-ups the worker would look again
/// in an hour and the wait below would fail.
#[tokio::test]
async fn a_message_queued_on_an_api_node_wakes_the_worker_node_before_its_fallback_poll() {
    let site = Site::new();
    let pg = crate::pg::TestDb::create().await;
    let node = |port: u16, role: &str| {
        let mut args: Vec<String> = vec!["serve".into(), "--seed-demo".into(), "10".into()];
        args.extend(["--role".into(), role.to_owned()]);
        let mut envs = site.envs(&pg.url, port);
        envs.push(("PARLEY_WORKERS_FALLBACK_POLL_MS", "3600000".to_owned()));
        start(&args, &envs, "Parley listens on")
    };
    let api = node(site.port, "api");
    let worker_port = free_port();
    let worker = node(worker_port, "worker");
    let worker_url = format!("http://127.0.0.1:{worker_port}");
    assert_eq!(site.readyz(&worker_url).await["role"], "worker");

    // The first message may be found by the worker's first claim; once it is delivered the
    // worker has claimed, found nothing more and waits: from here only a wake-up moves it.
    let first = delivered_message_to(&site, "+4915110007919").await;
    let second = delivered_message_to(&site, "+4915110007920").await;
    assert_ne!(first, second);
    let requests = site
        .sandbox(
            reqwest::Method::GET,
            "/sandbox/requests?sends=true",
            &json!({}),
        )
        .await;
    assert_eq!(
        requests["data"].as_array().map(Vec::len),
        Some(2),
        "{requests}"
    );
    stop(worker);
    stop(api);
    pg.finish().await;
}

/// Runs a documented command (DEPLOY.md, "Backups and restores").
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_documented_backups_restore_and_parley_serves_the_restored_data() {
    let site = Site::new();
    let deploy = include_str!("../../../../docs/DEPLOY.md");
    for command in [
        "sqlite3 /var/lib/parley/parley.db \".backup '/var/backups/parley/parley.db'\"",
        "sqlite3 /var/lib/parley/parley.db \"VACUUM INTO '/var/backups/parley/parley.db'\"",
        "pg_dump --format=custom --file=/var/backups/parley/parley.dump \"$DATABASE_URL\"",
        "pg_restore --no-owner --dbname=\"$NEW_DATABASE_URL\" /var/backups/parley/parley.dump",
    ] {
        assert!(
            deploy.contains(command),
            "DEPLOY.md no longer says {command}"
        );
    }

    // SQLite: an online backup while the node serves, restored over the live file.
    let sqlite = site.sqlite_url();
    let db = site.dir.path().join("parley.db");
    let backup = site.dir.path().join("backup.db");
    let vacuumed = site.dir.path().join("vacuumed.db");
    let node = site.serve_on(&sqlite, site.port, 10, &[]);
    let id = delivered_message(&site).await;
    run(
        "sqlite3",
        &[
            db.to_str().expect("path"),
            &format!(".backup '{}'", backup.display()),
        ],
    );
    run(
        "sqlite3",
        &[
            db.to_str().expect("path"),
            &format!("VACUUM INTO '{}'", vacuumed.display()),
        ],
    );
    let later = delivered_message(&site).await;
    stop(node);
    // Each of the two documented backups, restored as documented, serves the data it holds.
    for copy in [&backup, &vacuumed] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        std::fs::copy(copy, &db).expect("restore");
        let node = site.serve_on(&sqlite, site.port, 10, &[]);
        let (status, m) = site
            .api(reqwest::Method::GET, &format!("/messages/{id}"), None)
            .await;
        assert_eq!(status, 200, "{}: {m}", copy.display());
        assert!(m["state"] == "delivered" || m["state"] == "read", "{m}");
        let (status, _) = site
            .api(reqwest::Method::GET, &format!("/messages/{later}"), None)
            .await;
        assert_eq!(
            status,
            404,
            "{}: the message sent after the backup is not in it",
            copy.display()
        );
        stop(node);
    }

    // PostgreSQL: pg_dump of a served database, pg_restore into a new one, served from there.
    let pg = crate::pg::TestDb::create().await;
    let restored = crate::pg::TestDb::create().await;
    std::fs::remove_file(site.dir.path().join("demo-credentials.json")).expect("fresh seed");
    let node = site.serve_on(&pg.url, site.port, 10, &[]);
    let id = delivered_message(&site).await;
    let dump = site.dir.path().join("parley.dump");
    run(
        "pg_dump",
        &[
            "--format=custom",
            &format!("--file={}", dump.display()),
            &pg.url,
        ],
    );
    stop(node);
    run(
        "pg_restore",
        &[
            "--no-owner",
            &format!("--dbname={}", restored.url),
            dump.to_str().expect("path"),
        ],
    );
    let node = site.serve_on(&restored.url, site.port, 10, &[]);
    let (status, m) = site
        .api(reqwest::Method::GET, &format!("/messages/{id}"), None)
        .await;
    assert_eq!(status, 200, "{m}");
    assert!(m["state"] == "delivered" || m["state"] == "read", "{m}");
    stop(node);
    pg.finish().await;
    restored.finish().await;
}

/// Sends a template message and waits until it is delivered; answers its id.
async fn delivered_message(site: &Site) -> String {
    delivered_message_to(site, "+4915110007919").await
}

async fn delivered_message_to(site: &Site, to: &str) -> String {
    let (status, m) = site
        .api(
            reqwest::Method::POST,
            "/messages",
            Some(
                &json!({"to": to, "template": {"name": "welcome", "language": "en",
                         "variables": {"first_name": "there"}}}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{m}");
    let id = m["id"].as_str().expect("id").to_owned();
    site.until(&site.parley, &format!("/messages/{id}"), "delivered", |m| {
        m["state"] == "delivered" || m["state"] == "read"
    })
    .await;
    id
}

/// A crash grace shorter than the node lease is refused at start with a clear error: a row a
/// paused node left `sending` could otherwise be sent again while that node still held its
/// lease.
#[test]
fn serve_refuses_a_crash_grace_shorter_than_the_node_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = parley_sandbox::SandboxConfig::demo();
    let serve = |grace: &str| {
        Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["serve", "--crash-grace-ms", grace])
            .env("PARLEY_DATA_DIR", dir.path())
            .env("PARLEY_LISTEN", "127.0.0.1:0")
            .env("PARLEY_NODE_LEASE_MS", "5000")
            .env("PARLEY_META_APP_ID", &config.app_id)
            .env("PARLEY_META_APP_SECRET", &config.app_secret)
            .env("PARLEY_META_VERIFY_TOKEN", &config.verify_token)
            .output()
            .expect("run")
    };
    let out = serve("4999");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the crash grace (4999 ms, --crash-grace-ms) is shorter than the node lease (5000 ms, node_lease_ms or PARLEY_NODE_LEASE_MS)"),
        "{err}"
    );
    // Nothing was opened: the refusal comes before the database.
    assert!(!dir.path().join("parley.db").exists());
}

/// The per-table lines of a `migrate-store` run (`<table>: <n> rows copied; count and checksum
/// <digest> match`), by table.
fn move_reports(stdout: &str) -> std::collections::BTreeMap<String, String> {
    stdout
        .lines()
        .filter(|l| l.contains(" rows copied; count and checksum "))
        .filter_map(|l| {
            let (table, rest) = l.trim().split_once(": ")?;
            Some((table.to_owned(), rest.to_owned()))
        })
        .collect()
}

/// `parley migrate-store` killed (SIGKILL) in the middle of the copy: the target holds none of
/// it (one transaction), the source is intact (SQLite's integrity check, every count), and the
/// same command run again completes with the very counts and checksums of an uninterrupted
/// move into another database.
#[tokio::test]
async fn migrate_store_killed_mid_copy_leaves_the_source_intact_and_a_rerun_makes_an_exact_copy() {
    use std::io::{BufRead, BufReader};
    let site = Site::new();
    let sqlite = site.sqlite_url();
    let node = site.serve_on(&sqlite, site.port, 3_000, &[]);
    site.sandbox(
        reqwest::Method::POST,
        "/sandbox/inbound",
        &json!({"from": "+4917099900002", "text": "Hallo"}),
    )
    .await;
    site.until(
        &site.parley,
        "/conversations?limit=1",
        "the inbound message",
        |v| v["data"].as_array().is_some_and(|d| !d.is_empty()),
    )
    .await;
    stop(node);

    // The reference: an uninterrupted move.
    let reference = crate::pg::TestDb::create().await;
    let out = migrate_store(&sqlite, &reference.url);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = move_reports(&stdout);
    assert_eq!(
        expected.len(),
        parley_store::transfer::COPIED_TABLES.len(),
        "{stdout}"
    );
    let mut counts = HashMap::new();
    for table in parley_store::transfer::COPIED_TABLES {
        counts.insert(*table, sqlite_count(&sqlite, table).await);
    }
    assert!(counts["contacts"] >= 3_000, "{counts:?}");

    // Killed while it copies the contacts (small batches: 3,000 rows take many round trips).
    let target = crate::pg::TestDb::create().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args([
            "migrate-store",
            "--from",
            &sqlite,
            "--to",
            &target.url,
            "--batch",
            "16",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("parley migrate-store");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("migrate-store ended before the contacts: {seen:?}"))
            .expect("line");
        let last_before_contacts = line.trim_start().starts_with("templates: ");
        seen.push(line);
        if last_before_contacts {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(!status.success(), "it finished before the kill: {rest:?}");
    assert!(
        !rest.iter().any(|l| l.starts_with("Done")),
        "it finished before the kill: {rest:?}"
    );
    for table in parley_store::transfer::COPIED_TABLES {
        assert_eq!(
            pg_count(&target.url, table).await,
            0,
            "{table}: rows of the killed move were committed"
        );
    }

    // The source is whole.
    let mut c = sqlx::SqliteConnection::connect(&sqlite)
        .await
        .expect("SQLite");
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await
        .expect("integrity check");
    let _ = c.close().await;
    assert_eq!(check, "ok");
    for table in parley_store::transfer::COPIED_TABLES {
        assert_eq!(
            sqlite_count(&sqlite, table).await,
            counts[table],
            "{table} changed in the source"
        );
    }

    // Run again: complete, and the same rows as the uninterrupted move, table for table.
    let out = migrate_store(&sqlite, &target.url);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(move_reports(&stdout), expected, "{stdout}");
    for table in parley_store::transfer::COPIED_TABLES {
        assert_eq!(pg_count(&target.url, table).await, counts[table], "{table}");
    }
    reference.finish().await;
    target.finish().await;
}

/// Per-contact order of single sends across nodes (DECISIONS.md, "Per-contact order of
/// single sends": places follow the commits on every node): two `all` nodes on one
/// PostgreSQL, sends to one customer accepted by turns through each (inbox replies and `POST
/// /api/v1/messages`), each 202 before the next request. Meta defers the first (131056, the
/// pair rate) so the others queue behind it: Meta receives them once each in the order the
/// nodes accepted them, whichever node sends.
#[tokio::test]
async fn sends_accepted_by_turns_on_two_nodes_reach_meta_in_the_order_accepted() {
    const SENDS: usize = 6;
    let site = Site::new();
    let pg = crate::pg::TestDb::create().await;
    let first = site.serve_on(&pg.url, site.port, 3, &[]);
    let second_port = free_port();
    let second_url = format!("http://127.0.0.1:{second_port}");
    let second = site.serve_on(&pg.url, second_port, 3, &[]);
    let nodes = [site.parley.clone(), second_url];

    let phone = "+4915112360001";
    site.sandbox(
        reqwest::Method::POST,
        "/sandbox/inbound",
        &json!({"from": phone, "text": "hello"}),
    )
    .await;
    let conversation = site
        .until(
            &nodes[1],
            &format!("/conversations/{}", phone.replace('+', "%2B")),
            "the customer's message was never stored",
            |c| c["last_message"]["direction"] == "inbound",
        )
        .await;
    let contact = conversation["contact"]["id"]
        .as_str()
        .expect("contact")
        .to_owned();
    site.sandbox(
        reqwest::Method::POST,
        "/sandbox/faults",
        &json!({"fail_next": [131056]}),
    )
    .await;
    let mut accepted = Vec::new();
    for n in 0..SENDS {
        let text = format!("turn {n}");
        let (path, body) = match n % 4 < 2 {
            true => (
                format!("/conversations/{contact}/messages"),
                json!({"text": text}),
            ),
            false => ("/messages".to_owned(), json!({"to": phone, "text": text})),
        };
        let (status, v) = site
            .api_at(&nodes[n % 2], reqwest::Method::POST, &path, Some(&body))
            .await;
        assert_eq!(status, 202, "{path} on node {}: {v}", n % 2 + 1);
        accepted.push(v["id"].as_str().expect("id").to_owned());
    }
    for id in &accepted {
        site.until(
            &nodes[0],
            &format!("/messages/{id}"),
            "not every message was sent",
            |m| m["wamid"].is_string(),
        )
        .await;
    }
    let at_meta: Vec<String> = site
        .sandbox(
            reqwest::Method::GET,
            &format!("/sandbox/messages?to={}", phone.trim_start_matches('+')),
            &json!({}),
        )
        .await["data"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            m["biz_opaque_callback_data"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(at_meta, accepted);
    // The first was deferred once, then everything went through.
    let sends = site
        .sandbox(
            reqwest::Method::GET,
            &format!(
                "/sandbox/requests?sends=true&to={}",
                phone.trim_start_matches('+')
            ),
            &json!({}),
        )
        .await;
    let outcomes: Vec<(String, Option<i64>)> = sends["data"]
        .as_array()
        .expect("sends")
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or("").to_owned(),
                r["code"].as_i64(),
            )
        })
        .collect();
    let mut expected = vec![("refused".to_owned(), Some(131056))];
    expected.extend((0..SENDS).map(|_| ("accepted".to_owned(), None)));
    assert_eq!(outcomes, expected);
    stop(second);
    stop(first);
    pg.finish().await;
}
