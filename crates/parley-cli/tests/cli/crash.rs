//! Crash safety with real processes: `parley sandbox` runs on its own (Meta's side keeps its
//! record of every send across Parley's crashes) and `parley serve` is killed with SIGKILL and
//! started again, on SQLite or, with `PARLEY_TEST_BACKEND=postgres`, on PostgreSQL.
//!
//! The sandbox retries webhooks 60 times (Meta retries for days), so the statuses of sends Meta
//! took while Parley was down reach it after its restart; the crash grace is short so the
//! tests need not wait minutes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parley_domain::MessageState;
use parley_sandbox::demo_ids;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::credentials;

/// A child process killed (SIGKILL) when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `parley <args>` and waits until it prints a line containing `ready`.
///
/// A port freed by a SIGKILL can be held for a moment by another test's `free_port()` probe
/// (the kernel hands a freed port out again), and `serve` restarted on it then exits with
/// "Address already in use" (a clean-clone CI run failed so): that start is tried again, for
/// at most the same 60 s. Any other early exit fails the test at once.
pub(crate) fn start(args: &[String], envs: &[(&str, String)], ready: &str) -> Proc {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match try_start(args, envs, ready, deadline) {
            Some(proc) => return proc,
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

enum Out {
    Line(String),
    AddressInUse,
}

/// One start: the process once ready, or `None` when it could not bind its port.
fn try_start(
    args: &[String],
    envs: &[(&str, String)],
    ready: &str,
    deadline: Instant,
) -> Option<Proc> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parley"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn parley");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out.send(Out::Line(line));
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            if line.contains("Address already in use") {
                let _ = tx.send(Out::AddressInUse);
            }
        }
    });
    let proc = Proc(child);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Out::Line(line)) if line.contains(ready) => return Some(proc),
            Ok(Out::Line(_)) => {}
            Ok(Out::AddressInUse) if Instant::now() < deadline => return None,
            _ => panic!("parley {args:?} did not print {ready:?} in time"),
        }
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub(crate) fn postgres() -> bool {
    match std::env::var("PARLEY_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => false,
        Ok("postgres") | Ok("postgresql") => true,
        Ok(other) => panic!("PARLEY_TEST_BACKEND={other}: use sqlite or postgres"),
    }
}

/// The chaos seed: `PARLEY_CHAOS_SEED`, or a fresh one (printed, so a failure can be repeated).
fn chaos_seed(test: &str) -> u64 {
    let seed = std::env::var("PARLEY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{test}: chaos seed {seed} (PARLEY_CHAOS_SEED={seed} repeats these moments)");
    seed
}

/// `$body` run with `$c`, a connection of its own to the rig's database (PostgreSQL or
/// SQLite, Parley up or down), closed after.
macro_rules! on_db {
    ($rig:expr, |$c:ident| $body:expr) => {{
        use sqlx::Connection as _;
        if postgres() {
            let mut $c = sqlx::PgConnection::connect(&$rig.db_url)
                .await
                .expect("postgres");
            let out = $body;
            let _ = $c.close().await;
            out
        } else {
            let mut $c = sqlx::SqliteConnection::connect(&$rig.db_url)
                .await
                .expect("sqlite");
            let out = $body;
            let _ = $c.close().await;
            out
        }
    }};
}

/// `parley sandbox` as its own process, a database, and how to start `parley serve`.
struct Rig {
    dir: tempfile::TempDir,
    sandbox: String,
    parley: String,
    db_url: String,
    envs: Vec<(&'static str, String)>,
    serve_args: Vec<String>,
    /// No pooled connections: a pooled one to a killed Parley fails the next request.
    http: reqwest::Client,
    _sandbox: Proc,
    pg: Option<crate::pg::TestDb>,
}

impl Rig {
    async fn new(contacts: usize, lease_ms: u64, grace_ms: u64) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sandbox_port, parley_port) = (free_port(), free_port());
        let sandbox = format!("http://127.0.0.1:{sandbox_port}");
        let parley = format!("http://127.0.0.1:{parley_port}");
        let pg = match postgres() {
            true => Some(crate::pg::TestDb::create().await),
            false => None,
        };
        let db_url = match &pg {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.path().join("parley.db").display()),
        };
        let sandbox_proc = start(
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
        let config = parley_sandbox::SandboxConfig::demo();
        let envs = vec![
            ("PARLEY_DATA_DIR", dir.path().display().to_string()),
            ("PARLEY_DATABASE_URL", db_url.clone()),
            ("PARLEY_LISTEN", format!("127.0.0.1:{parley_port}")),
            ("PARLEY_META_GRAPH_URL", sandbox.clone()),
            ("PARLEY_META_APP_ID", config.app_id.clone()),
            ("PARLEY_META_APP_SECRET", config.app_secret.clone()),
            ("PARLEY_META_VERIFY_TOKEN", config.verify_token.clone()),
            // A restarted node takes its dead predecessor's leases (sender, webhook processor)
            // only once they lapse: the lapse must be well inside the short crash grace these
            // tests use, or a resend can outrun the statuses that would have recorded the wamid
            // (in production the grace is 65 min and the lease 10 s).
            ("PARLEY_NODE_LEASE_MS", "1000".into()),
        ];
        let serve_args = vec![
            "serve".into(),
            "--seed-demo".into(),
            contacts.to_string(),
            "--lease-ms".into(),
            lease_ms.to_string(),
            "--crash-grace-ms".into(),
            grace_ms.to_string(),
        ];
        let rig = Rig {
            dir,
            sandbox,
            parley,
            db_url,
            envs,
            serve_args,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
            _sandbox: sandbox_proc,
            pg,
        };
        rig.sandbox_post("/sandbox/behaviour", &json!({"webhook_attempts": 60}))
            .await;
        rig
    }

    fn serve(&self) -> Proc {
        start(&self.serve_args, &self.envs, "Parley listens on")
    }

    fn token(&self) -> String {
        credentials(self.dir.path())["api_token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// An API call: (status, JSON body).
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.parley))
            .bearer_auth(self.token());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn sandbox_call(&self, method: reqwest::Method, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.sandbox))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("sandbox {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "sandbox {path}: {status} {v}");
        v
    }

    async fn sandbox_post(&self, path: &str, body: &Value) -> Value {
        self.sandbox_call(reqwest::Method::POST, path, body).await
    }

    /// Template sends the sandbox accepted, by recipient digits.
    async fn sandbox_sent(&self) -> HashMap<String, u32> {
        let v: Value = self
            .http
            .get(format!("{}/sandbox/messages", self.sandbox))
            .send()
            .await
            .expect("sandbox messages")
            .json()
            .await
            .expect("json");
        let mut by = HashMap::new();
        for m in v["data"].as_array().expect("messages") {
            if m["type"] == "template" {
                *by.entry(m["to"].as_str().unwrap_or_default().to_owned())
                    .or_default() += 1;
            }
        }
        by
    }

    /// Creates the campaign to every contact and answers its id and plan.
    async fn campaign(&self) -> (String, Value) {
        let (status, created) = self
            .api(
                reqwest::Method::POST,
                "/campaigns",
                Some(&json!({
                    "name": "Crash",
                    "template": {"name": "welcome", "language": "en",
                                 "variables": {"first_name": "{{first_name|CapitalizeFirst|there}}"}},
                    "audience": {"filter": "visits >= 0"},
                    "type": "transactional"
                })),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("campaign id").to_owned();
        let (status, plan) = self
            .api(reqwest::Method::GET, &format!("/campaigns/{id}/plan"), None)
            .await;
        assert_eq!(status, 200, "{plan}");
        (id, plan)
    }

    /// Creates the campaign to every contact (`recipients` of them), starts it, answers its id.
    async fn started_campaign(&self, recipients: usize) -> String {
        let (id, plan) = self.campaign().await;
        assert_eq!(plan["recipients"], recipients, "{plan}");
        self.start(&id).await;
        id
    }

    /// A delivery of `body` to Parley's webhook, signed with the sandbox app's secret as Meta
    /// signs it, on `http`.
    fn signed_webhook(&self, http: &reqwest::Client, body: Vec<u8>) -> reqwest::RequestBuilder {
        let secret = parley_sandbox::SandboxConfig::demo().app_secret;
        http.post(format!("{}/webhooks/whatsapp", self.parley))
            .header("content-type", "application/json")
            .header(
                "x-hub-signature-256",
                parley_meta::sign(secret.as_bytes(), &body),
            )
            .body(body)
    }

    /// Starts campaign `id`.
    async fn start(&self, id: &str) {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                &format!("/campaigns/{id}/start"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    async fn stats(&self, id: &str) -> Value {
        let (status, stats) = self
            .api(
                reqwest::Method::GET,
                &format!("/campaigns/{id}/stats"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{stats}");
        stats
    }

    /// Waits until the campaign completes; panics with its stats when it does not in `limit`.
    async fn completed(&self, id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let stats = self.stats(id).await;
            if stats["state"] == "completed" {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "the campaign did not complete: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Messages Parley has in `sending`, without a wamid, whose recipient Meta accepted a send
    /// for: the kill fell between Meta's acceptance and Parley's record of it. Read from the
    /// database while Parley is down.
    async fn in_the_window(&self, accepted: &HashMap<String, u32>) -> usize {
        let cipher = parley_store::SecretCipher::load_or_create(self.dir.path()).expect("key");
        let store = parley_store::open(&self.db_url, cipher)
            .await
            .expect("open the database");
        let apps = store.applications().await.expect("applications");
        let app = &apps.first().expect("the demo application").id;
        let mut n = 0;
        let mut after = None;
        loop {
            let page = store
                .messages(app, after.as_ref(), 1_000)
                .await
                .expect("messages");
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            n += page
                .iter()
                .filter(|m| {
                    m.state == MessageState::Sending
                        && m.wamid.is_none()
                        && accepted.contains_key(m.to_phone.trim_start_matches('+'))
                })
                .count();
        }
        n
    }

    async fn finish(self) {
        if let Some(db) = self.pg {
            db.finish().await;
        }
    }
}

/// Every recipient got exactly one message, as Meta counts them.
fn assert_each_once(sent: &HashMap<String, u32>, recipients: usize, stats: &Value) {
    let mut doubled: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    doubled.sort();
    assert!(
        doubled.is_empty(),
        "sent twice across the crashes: {doubled:?}"
    );
    assert_eq!(sent.len(), recipients, "lost across the crashes: {stats}");
}

#[tokio::test]
async fn a_campaign_survives_sigkill_with_nothing_lost_or_doubled() {
    const RECIPIENTS: usize = 250;
    // A short lease and grace so the test need not wait minutes; the grace counts from the
    // restart, when the sandbox's retried webhooks reach Parley again.
    let rig = Rig::new(RECIPIENTS, 3_000, 10_000).await;
    let serve = rig.serve();
    // The tier is not raised: the number's limit, 250 contacts a day, is exactly the audience,
    // so a slot the crash leaked would leave a recipient waiting 24 h and the campaign open.
    let (id, plan) = rig.campaign().await;
    assert_eq!(plan["recipients"], RECIPIENTS, "{plan}");
    assert_eq!(plan["quota"]["limit"], 250, "{plan}");

    // Some answers are held after Meta took the message: at the kill, sends are accepted at
    // Meta but not yet recorded by Parley (the crash window between claim and answer).
    rig.sandbox_post(
        "/sandbox/faults",
        &json!({"timeout_rate": 0.3, "timeout_ms": 1500}),
    )
    .await;
    rig.start(&id).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.sandbox_sent().await.len() < 60 {
        assert!(Instant::now() < deadline, "Meta took no 60 sends");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(serve); // SIGKILL
    let at_kill = rig.sandbox_sent().await;
    assert!(
        (60..RECIPIENTS).contains(&at_kill.len()),
        "killed at {} accepted",
        at_kill.len()
    );
    let window = rig.in_the_window(&at_kill).await;
    println!("killed with {window} sends accepted by Meta and not yet recorded by Parley");
    assert!(
        window > 0,
        "the kill did not fall between Meta's acceptance and Parley's record"
    );
    rig.sandbox_call(reqwest::Method::DELETE, "/sandbox/faults", &json!({}))
        .await;

    let _serve = rig.serve();
    let stats = rig.completed(&id, Duration::from_secs(90)).await;
    assert_eq!(stats["failed"], 0, "{stats}");
    assert_each_once(&rig.sandbox_sent().await, RECIPIENTS, &stats);
    drop(_serve);
    rig.finish().await;
}

#[tokio::test]
async fn a_5000_recipient_campaign_survives_five_sigkills_at_random_moments() {
    const RECIPIENTS: usize = 5_000;
    let seed = chaos_seed("campaign chaos");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rig = Rig::new(RECIPIENTS, 2_000, 6_000).await;
    let mut serve = rig.serve();
    // Crashes, not the messaging limit, are under test here: the tier is raised first.
    let pn = demo_ids::PHONE_NUMBER_ID;
    rig.sandbox_post(
        &format!("/sandbox/phone_numbers/{pn}/limit"),
        &json!({"limit": "TIER_10K"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, numbers) = rig.api(reqwest::Method::GET, "/phone-numbers", None).await;
        assert_eq!(status, 200, "{numbers}");
        if numbers["data"][0]["messaging_limit"] == "TIER_10K" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tier was not raised: {numbers}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (id, plan) = rig.campaign().await;
    assert_eq!(plan["quota"]["limit"], 10_000, "{plan}");
    assert_eq!(plan["recipients"], RECIPIENTS, "{plan}");
    rig.sandbox_post(
        "/sandbox/faults",
        &json!({"timeout_rate": 0.1, "timeout_ms": 1000}),
    )
    .await;
    rig.start(&id).await;

    // Five kills at random points of the campaign, by the messages Parley had settled.
    let mut marks: Vec<u64> = (0..5).map(|_| rng.random_range(100..4_600)).collect();
    marks.sort_unstable();
    let mut window = 0;
    for (i, mark) in marks.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(120);
        let progress = loop {
            let s = rig.stats(&id).await;
            // Settled: planned, and neither waiting nor in flight.
            let open = s["queued"].as_u64().unwrap_or(0) + s["sending"].as_u64().unwrap_or(0);
            let done = match s["planned"] == true {
                true => (RECIPIENTS as u64).saturating_sub(open),
                false => 0,
            };
            if done >= *mark {
                break done;
            }
            assert!(Instant::now() < deadline, "stuck before {mark}: {s}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        drop(serve); // SIGKILL
        let accepted = rig.sandbox_sent().await;
        let w = rig.in_the_window(&accepted).await;
        window += w;
        println!(
            "kill {} at {progress} settled as Parley knew it, {} accepted by Meta, {w} of them not yet recorded",
            i + 1,
            accepted.len()
        );
        serve = rig.serve();
    }
    rig.sandbox_call(reqwest::Method::DELETE, "/sandbox/faults", &json!({}))
        .await;
    let stats = rig.completed(&id, Duration::from_secs(180)).await;
    assert_eq!(stats["failed"], 0, "{stats}");
    assert_each_once(&rig.sandbox_sent().await, RECIPIENTS, &stats);
    assert!(
        window > 0,
        "no kill fell between Meta's acceptance and Parley's record (seed {seed})"
    );
    drop(serve);
    rig.finish().await;
}

/// Sends the head of `body` (up to `cut`) as a request announcing the whole length, and keeps
/// the connection open: an upload in flight.
async fn upload_part(rig: &Rig, path: &str, body: &str, cut: usize) -> tokio::net::TcpStream {
    let addr = rig.parley.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1{path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n",
        rig.token(),
        body.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    socket
        .write_all(&body.as_bytes()[..cut])
        .await
        .expect("body");
    socket.flush().await.expect("flush");
    socket
}

/// The newest import, once `check` holds for it.
async fn import_when(rig: &Rig, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, list) = rig
            .api(reqwest::Method::GET, "/contacts/import?limit=1", None)
            .await;
        assert_eq!(status, 200, "{list}");
        let job = &list["data"][0];
        if !job.is_null() && check(job) {
            return job.clone();
        }
        assert!(Instant::now() < deadline, "{what}: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_import_killed_mid_upload_resumes_to_done_with_each_contact_once() {
    const ROWS: usize = 30_000;
    let seed = chaos_seed("import chaos");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rig = Rig::new(10, 60_000, 300_000).await;
    let mut serve = rig.serve();
    let mut csv = String::from("phone,batch\n");
    for i in 0..ROWS {
        csv.push_str(&format!("+49152{:08},chaos\n", 62_000_000 + i));
    }
    let rows_in = |cut: usize| csv[..cut].matches('\n').count() - 1;

    // Killed twice mid-upload at random bytes (the first upload, then its resume), each time
    // once Parley committed what it could of the part it read.
    let mut committed_rows = 0;
    let mut path = "/contacts/import?map=batch:batch".to_owned();
    let mut from = csv.len() / 10;
    for kill in 1..=2 {
        let cut = rng.random_range(from..from + csv.len() * 3 / 10);
        let upload = upload_part(&rig, &path, &csv, cut).await;
        let read = rows_in(cut);
        let job = import_when(&rig, "the part sent was not committed", |j| {
            let n = j["rows_read"].as_u64().unwrap_or(0) as usize;
            n > committed_rows && read - n < 1_000
        })
        .await;
        drop(serve); // SIGKILL
        drop(upload);
        println!(
            "kill {kill}: upload cut at byte {cut} ({read} rows sent), {} committed",
            job["rows_read"]
        );
        serve = rig.serve();
        // Marked at start: left running by a Parley that is gone.
        let job = import_when(&rig, "not marked interrupted", |j| {
            j["state"] == "interrupted"
        })
        .await;
        committed_rows = job["rows_read"].as_u64().expect("rows read") as usize;
        assert!(
            committed_rows <= read && read - committed_rows < 1_000,
            "{job}"
        );
        assert_eq!(job["created"], committed_rows, "{job}");
        path = format!(
            "/contacts/import/{}/resume",
            job["id"].as_str().expect("id")
        );
        from = cut + csv.len() / 10;
    }

    // The whole file once more: the import completes, each row imported once.
    let resp = rig
        .http
        .post(format!("{}/api/v1{path}", rig.parley))
        .bearer_auth(rig.token())
        .body(csv.clone())
        .send()
        .await
        .expect("resume");
    assert_eq!(resp.status(), 202);
    let job = import_when(&rig, "not done", |j| j["state"] != "running").await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["rows_read"], ROWS, "{job}");
    assert_eq!(job["created"], ROWS, "{job}");
    assert_eq!(job["updated"], 0, "a row imported twice: {job}");
    let (status, count) = rig
        .api(
            reqwest::Method::POST,
            "/segments/preview",
            Some(&json!({"filter": "batch = \"chaos\"", "sample": 1})),
        )
        .await;
    assert_eq!(status, 200, "{count}");
    assert_eq!(count["count"], ROWS, "{count}");
    drop(serve);
    rig.finish().await;
}

#[tokio::test]
async fn parley_contacts_import_resumes_an_interrupted_import_from_the_command_line() {
    const ROWS: usize = 5_000;
    let rig = Rig::new(10, 60_000, 300_000).await;
    let serve = rig.serve();
    let mut csv = String::from("phone,batch\n");
    for i in 0..ROWS {
        csv.push_str(&format!("+49152{:08},cli\n", 63_000_000 + i));
    }
    // The upload breaks off after 2,500 rows: the import is interrupted at once.
    let cut = csv.match_indices('\n').nth(2_500).expect("row").0 + 1;
    let upload = upload_part(&rig, "/contacts/import?map=batch:batch", &csv, cut).await;
    let job = import_when(&rig, "nothing committed", |j| {
        j["rows_read"].as_u64().unwrap_or(0) >= 1_000
    })
    .await;
    drop(upload);
    import_when(&rig, "not interrupted", |j| j["state"] == "interrupted").await;
    let id = job["id"].as_str().expect("id").to_owned();
    drop(serve);

    let file = rig.dir.path().join("people.csv");
    std::fs::write(&file, &csv).expect("write csv");
    let envs: Vec<_> = rig
        .envs
        .iter()
        .filter(|(k, _)| k.starts_with("PARLEY_DATA") || *k == "PARLEY_DATABASE_URL")
        .cloned()
        .collect();
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_parley"));
        cmd.args(["contacts", "import"])
            .arg(&file)
            .args(extra)
            .env("RUST_LOG", "warn");
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        cmd.output().expect("parley contacts import")
    };
    let out = run(&["--resume", &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout} {stderr}");
    assert!(
        stdout.contains(&format!(
            "{ROWS} rows read, {ROWS} created, 0 updated, 0 rejected (import {id})"
        )),
        "{stdout}"
    );
    // Done: a second resume is refused.
    let out = run(&["--resume", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only an interrupted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rig.finish().await;
}

/// A delivery Parley stores and does not act on, told apart by `n`.
fn intake_marker(n: usize) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"object": "whatsapp_business_account", "entry": [{"id": "1",
        "changes": [{"field": "intake_marker", "value": {"n": n}}]}]}),
    )
    .expect("json")
}

/// The markers (`intake_marker`) stored in the database.
async fn stored_markers(rig: &Rig) -> std::collections::HashSet<u64> {
    let bodies: Vec<Vec<u8>> = on_db!(rig, |c| sqlx::query_scalar(
        "SELECT body FROM webhook_bodies"
    )
    .fetch_all(&mut c)
    .await
    .expect("bodies"));
    bodies
        .iter()
        .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
        .filter_map(|v| v["entry"][0]["changes"][0]["value"]["n"].as_u64())
        .collect()
}

/// Every webhook delivery answered 200 is in the database after a SIGKILL that came while
/// hundreds more were in flight: the intake acknowledges only after its group's commit.
#[tokio::test]
async fn acknowledged_webhooks_survive_a_sigkill_of_serve() {
    const SENT: usize = 600;
    const KILL_AFTER: usize = 100;
    let rig = Rig::new(3, 60_000, 3_600_000).await;
    let serve = rig.serve();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..SENT {
        let body = intake_marker(n);
        let req = rig.signed_webhook(&rig.http, body);
        let tx = tx.clone();
        tokio::spawn(async move {
            let ok = matches!(req.send().await, Ok(r) if r.status() == 200);
            let _ = tx.send((n as u64, ok));
        });
    }
    drop(tx);
    let mut acknowledged = std::collections::HashSet::new();
    while acknowledged.len() < KILL_AFTER {
        let (n, ok) = rx.recv().await.expect("an answer");
        if ok {
            acknowledged.insert(n);
        }
    }
    drop(serve); // SIGKILL, with deliveries still in flight
    let mut unanswered = 0;
    while let Some((n, ok)) = rx.recv().await {
        if ok {
            acknowledged.insert(n);
        } else {
            unanswered += 1;
        }
    }
    println!(
        "{} acknowledged, {unanswered} cut off by the kill",
        acknowledged.len()
    );
    let stored = stored_markers(&rig).await;
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
}

/// Waits until `/readyz` lists a `node:` lease: this node is a live worker other nodes see.
async fn node_lease_held(rig: &Rig) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready: Value = match rig.http.get(format!("{}/readyz", rig.parley)).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let held = ready["leases"].as_array().is_some_and(|ls| {
            ls.iter().any(|l| {
                l["resource"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("node:"))
            })
        });
        if held {
            return;
        }
        assert!(Instant::now() < deadline, "no node lease: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The body of a chunked HTTP/1.1 response as far as it came, and whether its last chunk (the
/// one of length 0) arrived: without it the answer was cut off.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or_else(|| panic!("a bad chunk size line: {:?}", &raw[..eol.min(40)]));
        raw = &raw[eol + 2..];
        if size == 0 {
            return (body, true);
        }
        if raw.len() < size {
            body.extend_from_slice(raw);
            return (body, false);
        }
        body.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .expect("read_dir")
            .map_while(Result::ok)
        {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("under").display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The message ids of an export's complete lines (the header and a cut-off last line left out).
fn exported_ids(csv: &str) -> Vec<String> {
    let mut lines: Vec<&str> = csv.split("\r\n").collect();
    lines.pop(); // after the last CRLF: empty, or a line cut off
    assert!(
        lines.first().is_some_and(|h| h.starts_with("message_id,")),
        "no header: {:?}",
        &csv[..csv.len().min(200)]
    );
    lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap_or_default().to_owned())
        .collect()
}

/// A per-recipient export being streamed when Parley is killed: the client can tell it was cut
/// off (no last chunk), nothing is left on disk, and after the restart a new export is whole,
/// each recipient once, and begins with the rows the cut one had.
#[tokio::test]
async fn a_campaign_export_cut_by_sigkill_is_never_complete_and_a_new_one_is() {
    const RECIPIENTS: usize = 20_000;
    let rig = Rig::new(RECIPIENTS, 60_000, 300_000).await;
    let serve = rig.serve();
    let id = rig.started_campaign(RECIPIENTS).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.stats(&id).await["planned"] != true {
        assert!(
            Instant::now() < deadline,
            "not planned: {}",
            rig.stats(&id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = rig
        .api(
            reqwest::Method::POST,
            &format!("/campaigns/{id}/pause"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let files_before = files_under(rig.dir.path());

    // A client that reads slowly (a 4 KiB receive buffer): Parley's answer waits on it, so
    // the kill falls mid-stream, whatever the machine's speed.
    let addr: std::net::SocketAddr = rig
        .parley
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut conn = socket.connect(addr).await.expect("connect");
    conn.write_all(
        format!(
            "GET /api/v1/campaigns/{id}/export HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            rig.token()
        )
        .as_bytes(),
    )
    .await
    .expect("request");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        use tokio::io::AsyncReadExt;
        let n = conn.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n")
            && raw.len() > at + 4 + 8_192
        {
            break at + 4;
        }
    };
    drop(serve); // SIGKILL, mid-stream
    {
        use tokio::io::AsyncReadExt;
        // What the kernel still had for us, then the end (or a reset).
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
    }
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    let (body, complete) = dechunk(&raw[head_end..]);
    assert!(
        !complete,
        "the cut export ended like a whole one ({} bytes)",
        body.len()
    );
    let cut = exported_ids(&String::from_utf8_lossy(&body));
    println!(
        "killed with {} bytes of the export received, {} whole rows",
        body.len(),
        cut.len()
    );
    assert!(cut.len() < RECIPIENTS, "{} rows before the kill", cut.len());
    assert_eq!(
        files_under(rig.dir.path()),
        files_before,
        "the export left files behind"
    );

    let _serve = rig.serve();
    let resp = rig
        .http
        .get(format!("{}/api/v1/campaigns/{id}/export", rig.parley))
        .bearer_auth(rig.token())
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 200);
    let full = resp.text().await.expect("a whole export");
    assert!(
        full.ends_with("\r\n"),
        "{}",
        &full[full.len().saturating_sub(200)..]
    );
    let ids = exported_ids(&full);
    assert_eq!(ids.len(), RECIPIENTS, "rows in the new export");
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), RECIPIENTS, "a recipient twice in the export");
    assert_eq!(
        &ids[..cut.len()],
        &cut[..],
        "the cut export's rows are the new one's first"
    );
    assert!(full.len() > body.len(), "the kill did not fall mid-stream");
    drop(_serve);
    rig.finish().await;
}

/// `(state, attempts, claimed_by, sha256, error)` of an inbound media, read from the database.
async fn media_row(
    rig: &Rig,
    wamid: &str,
) -> Option<(String, i64, Option<String>, Option<String>, Option<String>)> {
    let sql = "SELECT state, CAST(attempts AS BIGINT), claimed_by, sha256, error FROM inbound_media WHERE wamid = $1";
    on_db!(rig, |c| sqlx::query_as(sql)
        .bind(wamid)
        .fetch_optional(&mut c)
        .await
        .expect("media"))
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            match i <= chunk.len() {
                true => out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char),
                false => out.push('='),
            }
        }
    }
    out
}

/// Parley killed while it fetches a customer's image from Meta: the media is fetched after the
/// restart within seconds (the claim names the dead node, whose lease lapses, instead of
/// waiting out the claim's five minutes), stored whole under its hash, and a temporary file a
/// write cut by a kill would leave is removed.
#[tokio::test]
async fn an_inbound_media_fetch_cut_by_sigkill_is_fetched_after_the_restart_and_nothing_partial_is_kept()
 {
    let rig = Rig::new(3, 60_000, 300_000).await;
    let serve = rig.serve();
    node_lease_held(&rig).await;
    // Meta answers the media lookup after a minute: the kill falls inside the fetch.
    rig.sandbox_post("/sandbox/faults", &json!({"latency_ms": 60_000}))
        .await;
    let mut image = b"\x89PNG\r\n\x1a\n".to_vec();
    image.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let sent = rig
        .sandbox_post(
            "/sandbox/inbound",
            &json!({"from": "+4915112340001", "media": {"type": "image", "mime_type": "image/png",
                    "content_base64": base64(&image), "caption": "killed mid-fetch"}}),
        )
        .await;
    let wamid = sent["wamid"].as_str().expect("wamid").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let claimed = loop {
        if let Some(row) = media_row(&rig, &wamid).await
            && row.1 >= 1
        {
            break row;
        }
        assert!(Instant::now() < deadline, "the media was never claimed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(claimed.0, "pending", "{claimed:?}");
    assert!(claimed.2.is_some(), "the claim names no node: {claimed:?}");
    drop(serve); // SIGKILL, mid-fetch

    let media_dir = rig.dir.path().join("media");
    let on_disk = || match media_dir.is_dir() {
        true => files_under(&media_dir),
        false => Vec::new(),
    };
    assert_eq!(
        on_disk(),
        Vec::<String>::new(),
        "a file before the fetch ended"
    );
    // A write killed between its bytes and its rename leaves a temporary file beside the
    // name (`.<sha>.<random>`): one, an hour old, half-written.
    let leftover = media_dir.join("ab").join(format!(".{}.7", "ab".repeat(32)));
    std::fs::create_dir_all(leftover.parent().expect("parent")).expect("mkdir");
    std::fs::write(&leftover, &image[..1_000]).expect("leftover");
    std::fs::File::options()
        .write(true)
        .open(&leftover)
        .expect("open")
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3_600))
        .expect("mtime");
    rig.sandbox_call(reqwest::Method::DELETE, "/sandbox/faults", &json!({}))
        .await;

    let _serve = rig.serve();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let row = media_row(&rig, &wamid).await.expect("the media row");
        if row.0 != "pending" {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "not fetched within 30 s of the restart: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored.0, "stored", "{stored:?}");
    assert_eq!(
        stored.2, None,
        "a finished fetch keeps no claim: {stored:?}"
    );
    let sha = stored.3.clone().expect("sha256");
    let path = media_dir.join(&sha[..2]).join(&sha);
    assert_eq!(std::fs::read(&path).expect("the stored file"), image);
    let deadline = Instant::now() + Duration::from_secs(30);
    while leftover.exists() {
        assert!(
            Instant::now() < deadline,
            "the leftover temporary file stays"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(on_disk(), vec![format!("{}/{sha}", &sha[..2])]);
    drop(_serve);
    rig.finish().await;
}

/// `(state, wamid)` of a message, read from the database (Parley up or down).
async fn message_row(rig: &Rig, id: &str) -> (String, Option<String>) {
    on_db!(rig, |c| sqlx::query_as(
        "SELECT state, wamid FROM messages WHERE id = $1"
    )
    .bind(id)
    .fetch_one(&mut c)
    .await
    .expect("message"))
}

/// One customer of the order test: the phone, the contact's id and the ids of the single
/// sends Parley accepted (answered 202) for it, in the order of the answers.
struct Customer {
    phone: &'static str,
    contact: String,
    accepted: Vec<String>,
}

impl Customer {
    /// The customer writes (the 24 h window opens at Meta and in Parley).
    async fn writes(rig: &Rig, phone: &'static str) -> Customer {
        rig.sandbox_post("/sandbox/inbound", &json!({"from": phone, "text": "hello"}))
            .await;
        let path = format!("/conversations/{}", phone.replace('+', "%2B"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, c) = rig.api(reqwest::Method::GET, &path, None).await;
            if status == 200 && c["last_message"]["direction"] == "inbound" {
                let contact = c["contact"]["id"].as_str().expect("id").to_owned();
                return Customer {
                    phone,
                    contact,
                    accepted: Vec::new(),
                };
            }
            assert!(
                Instant::now() < deadline,
                "{phone}'s message was never stored"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next single send to this customer, by turns an inbox reply and `POST
    /// /api/v1/messages`; waits for its 202 and notes its id.
    async fn send(&mut self, rig: &Rig) {
        let n = self.accepted.len() + 1;
        let text = format!("{} #{n}", self.phone);
        let (path, body) = match n % 2 {
            1 => (
                format!("/conversations/{}/messages", self.contact),
                json!({"text": text}),
            ),
            _ => (
                "/messages".to_owned(),
                json!({"to": self.phone, "text": text}),
            ),
        };
        let (status, v) = rig.api(reqwest::Method::POST, &path, Some(&body)).await;
        assert_eq!(status, 202, "{path}: {v}");
        self.accepted
            .push(v["id"].as_str().expect("message id").to_owned());
    }

    /// Our ids of the sends Meta accepted for this customer, in Meta's order.
    async fn at_meta(&self, rig: &Rig) -> Vec<String> {
        let v: Value = rig
            .http
            .get(format!(
                "{}/sandbox/messages?to={}",
                rig.sandbox,
                self.phone.trim_start_matches('+')
            ))
            .send()
            .await
            .expect("sandbox messages")
            .json()
            .await
            .expect("json");
        v["data"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                m["biz_opaque_callback_data"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    }
}

/// Waits until `check` holds for both customers (at most `limit`).
async fn until_both<F, Fut>(what: &str, limit: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Per-contact order of single sends (DECISIONS.md, "Per-contact order of single sends")
/// across two SIGKILLs, with real processes: inbox replies and API sends to two customers,
/// accepted by turns, reach Meta each once and, per customer, in the order Parley accepted
/// them. The first kill falls while B's head is at Meta but its answer is held (Parley has
/// no wamid; Meta's statuses, held back too, settle it after the restart, and B's later sends
/// wait for them); the second while A's head is claimed and on its way but not at Meta (lost:
/// A's lane waits for the crash grace to requeue it, and it goes first). More sends are
/// accepted between the kills and after the last restart.
///
/// A number's sender finishes a round before it claims again, so a send Meta does not answer
/// holds every lane of the number until Parley's 30 s timeout: each kill targets one lane
/// while the other has nothing to send.
#[tokio::test]
async fn single_sends_to_a_contact_reach_meta_once_each_in_the_order_accepted_across_sigkills() {
    // The grace covers the time from the first restart to Meta's statuses after the second,
    // so B's held head is settled by its status, not sent again.
    let rig = Rig::new(3, 3_000, 30_000).await;
    let serve = rig.serve();
    let mut a = Customer::writes(&rig, "+4915112350001").await;
    let mut b = Customer::writes(&rig, "+4915112350002").await;
    b.send(&rig).await;
    a.send(&rig).await;
    b.send(&rig).await;
    // The first sends go at once; B's second waits for Meta's pair rate (6 s).
    until_both(
        "the first sends never reached Meta",
        Duration::from_secs(30),
        || async { a.at_meta(&rig).await.len() == 1 && b.at_meta(&rig).await.len() == 1 },
    )
    .await;
    // Meta keeps its statuses back (its clock stands) and holds its answers for an hour.
    rig.sandbox_post("/sandbox/clock/freeze", &json!({})).await;
    rig.sandbox_post(
        "/sandbox/faults",
        &json!({"timeout_rate": 1.0, "timeout_ms": 3_600_000}),
    )
    .await;
    until_both(
        "B's second send never reached Meta",
        Duration::from_secs(30),
        || async { b.at_meta(&rig).await.len() == 2 },
    )
    .await;
    drop(serve); // SIGKILL: B's head at Meta, its answer not yet back
    assert_eq!(b.at_meta(&rig).await, b.accepted);
    assert_eq!(
        message_row(&rig, &b.accepted[1]).await,
        ("sending".to_owned(), None),
        "the kill did not fall between Meta's acceptance and Parley's record"
    );
    rig.sandbox_call(reqwest::Method::DELETE, "/sandbox/faults", &json!({}))
        .await;

    let serve = rig.serve();
    a.send(&rig).await;
    b.send(&rig).await;
    until_both(
        "A's second send never reached Meta",
        Duration::from_secs(30),
        || async { a.at_meta(&rig).await.len() == 2 },
    )
    .await;
    // Meta now takes sends and never answers them (the requests wait an hour): A's third is
    // on the wire when Parley dies, and never reaches Meta. B's lane waits for its head.
    rig.sandbox_post("/sandbox/faults", &json!({"latency_ms": 3_600_000}))
        .await;
    a.send(&rig).await;
    b.send(&rig).await;
    let on_the_wire = || async { message_row(&rig, &a.accepted[2]).await.0 == "sending" };
    loop {
        until_both(
            "A's third send was never claimed",
            Duration::from_secs(30),
            on_the_wire,
        )
        .await;
        // Claimed right after the second was recorded, it goes back to the queue at once for
        // the pair rate; claimed again 6 s later, it stays `sending` while its request waits.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if on_the_wire().await {
            break;
        }
    }
    drop(serve); // SIGKILL: A's head claimed, not at Meta
    assert_eq!(a.at_meta(&rig).await, a.accepted[..2]);
    assert_eq!(b.at_meta(&rig).await, b.accepted[..2]);
    assert_eq!(
        message_row(&rig, &a.accepted[2]).await,
        ("sending".to_owned(), None)
    );
    assert_eq!(
        message_row(&rig, &b.accepted[1]).await,
        ("sending".to_owned(), None)
    );
    rig.sandbox_call(reqwest::Method::DELETE, "/sandbox/faults", &json!({}))
        .await;

    let serve = rig.serve();
    rig.sandbox_post("/sandbox/clock/unfreeze", &json!({}))
        .await;
    for _ in 0..2 {
        a.send(&rig).await;
        b.send(&rig).await;
    }
    // Settled: every accepted message has its wamid.
    let settled = || async {
        for c in [&a, &b] {
            for id in &c.accepted {
                if message_row(&rig, id).await.1.is_none() {
                    return false;
                }
            }
        }
        true
    };
    until_both(
        "not every accepted message was settled",
        Duration::from_secs(150),
        settled,
    )
    .await;
    for c in [&a, &b] {
        for id in &c.accepted {
            let (state, _) = message_row(&rig, id).await;
            assert!(
                ["accepted", "sent", "delivered", "read"].contains(&state.as_str()),
                "{id}: {state}"
            );
        }
        // Each once, in the order accepted: B's held head settled by its status, A's lost
        // head sent first after the grace.
        assert_eq!(c.at_meta(&rig).await, c.accepted, "{}", c.phone);
    }
    drop(serve);
    rig.finish().await;
}

/// The first column of `sql`'s rows as text, read from the database (Parley up or down).
async fn db_strings(rig: &Rig, sql: &str) -> Vec<String> {
    on_db!(rig, |c| sqlx::query_scalar(sqlx::AssertSqlSafe(
        sql.to_owned()
    ))
    .fetch_all(&mut c)
    .await
    .expect(sql))
}

/// Every message of the application, through the API, a page at a time.
async fn all_messages(rig: &Rig) -> Vec<Value> {
    let mut all = Vec::new();
    let mut path = "/messages?limit=200".to_owned();
    loop {
        let (status, page) = rig.api(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        all.extend(page["data"].as_array().expect("data").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/messages?limit=200&after={c}"),
            None => return all,
        }
    }
}

/// `SELECT count(*) FROM <from>`, read from the database.
async fn db_count(rig: &Rig, from: &str) -> usize {
    let sql = format!("SELECT CAST(count(*) AS TEXT) FROM {from}");
    db_strings(rig, &sql).await[0].parse().expect("a count")
}

/// One signed delivery of the status flood: `PER` statuses, each `delivered` for a message of
/// `msgs` named by wamid and by Parley's id (`biz_opaque_callback_data`, as Meta echoes it),
/// except the one `read` each message gets, in delivery `read_in(i)`.
fn flood_delivery(j: usize, msgs: &[FloodMessage], at: u64) -> Vec<u8> {
    let statuses: Vec<Value> = (0..FLOOD_PER)
        .map(|k| {
            let i = (j * FLOOD_PER + k) % msgs.len();
            let m = &msgs[i];
            let state = if read_in(i, msgs.len()) == j {
                "read"
            } else {
                "delivered"
            };
            json!({"id": m.wamid, "status": state, "timestamp": at.to_string(),
                   "recipient_id": m.to, "biz_opaque_callback_data": m.id})
        })
        .collect();
    serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{
        "id": demo_ids::WABA_ID, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111",
                         "phone_number_id": demo_ids::PHONE_NUMBER_ID},
            "statuses": statuses}}]}]}))
    .expect("json")
}

/// A message of the flood test: Parley's id, Meta's wamid, the recipient's digits.
struct FloodMessage {
    id: String,
    wamid: String,
    to: String,
}

const FLOOD_DELIVERIES: usize = 2_500;
const FLOOD_PER: usize = 20;

/// The delivery of the flood that carries message `i`'s `read` (spread over the flood, and
/// within the statuses that name `i`).
fn read_in(i: usize, n: usize) -> usize {
    let rounds = FLOOD_DELIVERIES * FLOOD_PER / n;
    let round = (i * 7919) % rounds;
    (round * n + i) / FLOOD_PER
}

/// Statuses projected to `status_log` and not merged yet when Parley is killed: readers of a
/// message show them before the merge (the API here, while the kill has not come), and after
/// the restart every status of every acknowledged delivery is merged onto its message once,
/// the log is emptied, and the statistics count each `read` once.
#[tokio::test]
async fn statuses_projected_but_not_merged_survive_a_sigkill_and_are_merged_once() {
    const RECIPIENTS: usize = 250;
    let rig = Rig::new(RECIPIENTS, 60_000, 3_600_000).await;
    // Meta's side never reads: every `read` comes from the flood.
    rig.sandbox_post("/sandbox/behaviour", &json!({"read_ratio": 0.0}))
        .await;
    let serve = rig.serve();
    let id = rig.started_campaign(RECIPIENTS).await;
    let stats = rig.completed(&id, Duration::from_secs(90)).await;
    assert_eq!(stats["read"], 0, "{stats}");
    let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("{v}")).to_owned();
    let msgs: Vec<FloodMessage> = all_messages(&rig)
        .await
        .iter()
        .map(|m| FloodMessage {
            id: text(&m["id"]),
            wamid: text(&m["wamid"]),
            to: text(&m["to"]).trim_start_matches('+').to_owned(),
        })
        .collect();
    assert_eq!(msgs.len(), RECIPIENTS);

    // The flood, 32 deliveries at a time; each answer recorded.
    let flood_http = reqwest::Client::new();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for j in 0..FLOOD_DELIVERIES {
        let body = flood_delivery(j, &msgs, at);
        let req = rig.signed_webhook(&flood_http, body);
        let (tx, gate) = (tx.clone(), gate.clone());
        tokio::spawn(async move {
            let _slot = gate.acquire_owned().await;
            let ok = matches!(req.send().await, Ok(r) if r.status() == 200);
            let _ = tx.send((j, ok));
        });
    }
    drop(tx);

    // Wait for statuses in the log that their messages do not have yet.
    let unmerged = "status_log l JOIN messages m ON m.id = l.message_id \
                    WHERE l.state = 'read' AND m.state <> 'read'";
    // Ten of them, or what there is half a second after the first.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first = None;
    let sample = loop {
        let ids = db_strings(
            &rig,
            &format!("SELECT DISTINCT l.message_id FROM {unmerged} LIMIT 10"),
        )
        .await;
        let since = *first.get_or_insert_with(Instant::now);
        if ids.len() == 10 || (!ids.is_empty() && since.elapsed() > Duration::from_millis(500)) {
            break ids;
        }
        if ids.is_empty() {
            first = None;
        }
        assert!(
            Instant::now() < deadline,
            "the flood was merged without a projection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The API shows each as read, though its row does not say so yet (checked after the read,
    // so a merge in between cannot make this pass without the log).
    let mut shown_from_the_log = 0;
    for m in &sample {
        let (status, v) = rig
            .api(reqwest::Method::GET, &format!("/messages/{m}"), None)
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["state"], "read", "a projected read not shown: {v}");
        assert!(v["timestamps"]["read"].is_string(), "{v}");
        if message_row(&rig, m).await.0 != "read" {
            shown_from_the_log += 1;
        }
    }
    println!(
        "{} of {} sampled reads shown before their merge",
        shown_from_the_log,
        sample.len()
    );
    assert!(shown_from_the_log > 0, "every sample was merged meanwhile");

    drop(serve); // SIGKILL, with statuses in the log
    let in_log = db_count(&rig, "status_log").await;
    let projected = db_count(
        &rig,
        "webhook_events WHERE projected = 1 AND processed_at IS NULL",
    )
    .await;
    println!("killed with {in_log} statuses in the log ({projected} deliveries projected)");
    assert!(in_log > 0 && projected > 0, "{in_log} {projected}");
    let mut acknowledged = std::collections::HashSet::new();
    while let Some((j, ok)) = rx.recv().await {
        if ok {
            acknowledged.insert(j);
        }
    }

    let _serve = rig.serve();
    let deadline = Instant::now() + Duration::from_secs(120);
    while db_count(&rig, "webhook_events WHERE processed_at IS NULL").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the webhooks were not all merged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(db_count(&rig, "status_log").await, 0, "the log is emptied");
    let mut read = 0;
    for m in &all_messages(&rig).await {
        let i = msgs.iter().position(|f| m["id"] == f.id.as_str());
        let i = i.unwrap_or_else(|| panic!("a message the campaign did not send: {m}"));
        if m["state"] == "read" {
            read += 1;
        } else {
            assert!(
                !acknowledged.contains(&read_in(i, RECIPIENTS)),
                "an acknowledged read was lost: {m}"
            );
            assert_eq!(m["state"], "delivered", "{m}");
        }
    }
    println!(
        "{} of {FLOOD_DELIVERIES} deliveries acknowledged; {read} messages read",
        acknowledged.len()
    );
    let stats = rig.stats(&id).await;
    assert_eq!(stats["read"], read, "{stats}");
    assert_eq!(stats["delivered"], RECIPIENTS, "{stats}");
    let (status, totals) = rig
        .api(reqwest::Method::GET, &format!("/stats?campaign={id}"), None)
        .await;
    assert_eq!(status, 200, "{totals}");
    assert_eq!(totals["totals"]["metrics"]["read"], read, "{totals}");
    assert_eq!(
        totals["totals"]["metrics"]["delivered"], RECIPIENTS,
        "{totals}"
    );
    drop(_serve);
    rig.finish().await;
}
