//! `parley bench webhooks`: Meta's status webhooks at full speed into Parley's intake, against
//! a minimal receiver built here, in the same run.
//!
//! Three processes per run, all this binary: the receiver under test (`webhook-target`:
//! Parley's production server, engine and webhook processor on a temporary SQLite file, or the
//! minimal reference receiver), the load generator (`load-gen`: HTTP/1.1 keep-alive over
//! plain sockets, signed bodies) and this one, which seeds, starts both, reads the receiver's
//! CPU and memory from `/proc/<pid>/`, waits until every stored status is applied and counts
//! them. Each status names its own seeded message, so the count of messages `delivered` is
//! the count of statuses applied: it must equal the statuses the load generator saw
//! acknowledged with a 200.

use std::io::BufRead as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parley_domain::{AccountId, ApplicationId, PhoneNumberId, PlatformId, UserId, WabaId};
use parley_engine::{Engine, EngineConfig, SystemClock};
use parley_meta::{GraphClient, SIGNATURE_HEADER, sign, verify_signature};
use parley_store::{IdentityStore as _, SecretCipher, SqliteStore, Store};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection as _, SqliteConnection};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The app secret both receivers check and the load generator signs with.
const SECRET: &str = "bench-app-secret";
const PHONE_NUMBER_ID: &str = "106540352242922";
const WABA_ID: &str = "102290129340398";

/// What `parley bench webhooks` runs.
pub struct Args {
    /// Requests per run at one status per request.
    pub requests: u64,
    /// Requests per run at 100 statuses per request.
    pub bulk_requests: u64,
    /// The fixed-rate check: requests per second (0: skipped) for `rate_seconds`.
    pub rate: u64,
    pub rate_seconds: u64,
    pub connections: usize,
    /// Runs of each receiver per load, alternating which goes first.
    pub rounds: usize,
    /// Also runs Parley as an API node (intake only, no webhook processor) at each load: what
    /// the intake alone takes, apart from the processing that shares the machine with it.
    pub intake_only: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    Parley,
    /// Parley's server and engine as an API node: the intake, no webhook processor.
    Intake,
    Reference,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Parley => "parley",
            Target::Intake => "intake",
            Target::Reference => "reference",
        }
    }
}

/// The load generator's summary, one JSON line on its stdout.
#[derive(Serialize, Deserialize, Debug, Default)]
struct LoadReport {
    requests: u64,
    ok: u64,
    statuses_ok: u64,
    /// Answers other than 200, by status code (0: connection error).
    errors: Vec<(u16, u64)>,
    elapsed_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// One run's figures.
struct RunResult {
    target: Target,
    per_request: usize,
    rate: Option<u64>,
    load: LoadReport,
    /// Receiver CPU seconds while the load ran, and until every status was applied.
    cpu_load: f64,
    cpu_total: f64,
    peak_rss_mib: f64,
    /// Events still waiting to be applied when the load ended.
    backlog: u64,
    /// From the load's end until every status was on its message for every reader (Parley:
    /// each one merged or in `status_log`, read through the same lattice; the reference: 0).
    visible_after_s: f64,
    /// Statuses found on their messages at that moment (Parley: messages `delivered`, merged or
    /// with a `delivered` still in `status_log`).
    visible: u64,
    /// From the load's end to the last status merged, with its counters, events and
    /// conversation (Parley; the reference applies none).
    applied_after_s: f64,
    /// Statuses found applied (Parley: messages `delivered`; the reference: statuses stored).
    applied: u64,
}

impl RunResult {
    fn rps(&self) -> f64 {
        self.load.ok as f64 / self.load.elapsed_s.max(1e-9)
    }
    fn sps(&self) -> f64 {
        self.load.statuses_ok as f64 / self.load.elapsed_s.max(1e-9)
    }
    fn lost(&self) -> i64 {
        self.load.statuses_ok as i64 - self.applied as i64
    }
}

// --- the orchestrator ---------------------------------------------------------------------

pub async fn webhooks(args: Args) -> anyhow::Result<()> {
    println!(
        "parley bench webhooks: {} connections; {} requests at 1 status/request, {} at 100; fixed rate {} req/s for {} s; {} round(s); {} CPUs",
        args.connections,
        args.requests,
        args.bulk_requests,
        args.rate,
        args.rate_seconds,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut results = Vec::new();
    for (per_request, requests) in [(1usize, args.requests), (100, args.bulk_requests)] {
        if requests == 0 {
            continue;
        }
        for round in 0..args.rounds {
            let mut order = if round % 2 == 0 {
                vec![Target::Reference, Target::Parley]
            } else {
                vec![Target::Parley, Target::Reference]
            };
            if args.intake_only {
                order.push(Target::Intake);
            }
            for target in order {
                let r = run(target, per_request, requests, None, args.connections).await?;
                print_run(&r);
                results.push(r);
            }
        }
    }
    if args.rate > 0 {
        let mut targets = vec![Target::Parley, Target::Reference];
        if args.intake_only {
            targets.push(Target::Intake);
        }
        for target in targets {
            let r = run(
                target,
                1,
                args.rate * args.rate_seconds,
                Some(args.rate),
                args.connections,
            )
            .await?;
            print_run(&r);
            results.push(r);
        }
    }
    summary(&results);
    Ok(())
}

fn print_run(r: &RunResult) {
    let rate = r
        .rate
        .map_or(String::new(), |x| format!(" at fixed {x} req/s"));
    println!(
        "{:<9} {:>3}/req{rate}: {:>8.0} req/s {:>9.0} statuses/s  p50 {:.2} ms p99 {:.2} ms max {:.1} ms  CPU {:.1} µs/req under load ({:.1} until applied)  peak RSS {:.1} MiB  backlog {} events, every status on its message {:.2} s after the load ({} seen), all merged {:.2} s after  acknowledged {} statuses, merged {}, lost {}{}",
        r.target.name(),
        r.per_request,
        r.rps(),
        r.sps(),
        r.load.p50_ms,
        r.load.p99_ms,
        r.load.max_ms,
        r.cpu_load * 1e6 / r.load.ok.max(1) as f64,
        r.cpu_total * 1e6 / r.load.ok.max(1) as f64,
        r.peak_rss_mib,
        r.backlog,
        r.visible_after_s,
        r.visible,
        r.applied_after_s,
        r.load.statuses_ok,
        r.applied,
        r.lost(),
        if r.load.errors.is_empty() {
            String::new()
        } else {
            format!("  non-200: {:?}", r.load.errors)
        },
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summary(results: &[RunResult]) {
    println!("\nsummary (medians over the rounds):");
    for per in [1usize, 100] {
        let of = |t: Target| {
            results
                .iter()
                .filter(move |r| r.target == t && r.per_request == per && r.rate.is_none())
        };
        if of(Target::Parley).next().is_none() {
            continue;
        }
        let p_rps = median(of(Target::Parley).map(RunResult::rps).collect());
        let r_rps = median(of(Target::Reference).map(RunResult::rps).collect());
        let p_sps = median(of(Target::Parley).map(RunResult::sps).collect());
        let r_sps = median(of(Target::Reference).map(RunResult::sps).collect());
        let p_cpu = median(
            of(Target::Parley)
                .map(|r| r.cpu_load * 1e6 / r.load.ok.max(1) as f64)
                .collect(),
        );
        let r_cpu = median(
            of(Target::Reference)
                .map(|r| r.cpu_load * 1e6 / r.load.ok.max(1) as f64)
                .collect(),
        );
        let visible = of(Target::Parley)
            .map(|r| r.visible_after_s)
            .fold(0.0, f64::max);
        let applied = of(Target::Parley)
            .map(|r| r.applied_after_s)
            .fold(0.0, f64::max);
        let lost: i64 = of(Target::Parley)
            .chain(of(Target::Reference))
            .map(RunResult::lost)
            .sum();
        if of(Target::Intake).next().is_some() {
            let i_rps = median(of(Target::Intake).map(RunResult::rps).collect());
            let i_cpu = median(
                of(Target::Intake)
                    .map(|r| r.cpu_load * 1e6 / r.load.ok.max(1) as f64)
                    .collect(),
            );
            println!(
                "  {per:>3} status/req: Parley's intake alone (no processor) {i_rps:.0} req/s, {i_cpu:.1} µs CPU/req: ratio {:.2}",
                i_rps / r_rps.max(1e-9)
            );
        }
        println!(
            "  {per:>3} status/req: Parley {p_rps:.0} req/s ({p_sps:.0} statuses/s, {p_cpu:.1} µs CPU/req), reference {r_rps:.0} req/s ({r_sps:.0} statuses/s, {r_cpu:.1} µs CPU/req): ratio {:.2} (req/s), {:.2} (statuses/s); Parley's slowest catch-up: on their messages {visible:.2} s, merged {applied:.2} s; lost {lost}",
            p_rps / r_rps.max(1e-9),
            p_sps / r_sps.max(1e-9),
        );
    }
    for r in results.iter().filter(|r| r.rate.is_some()) {
        println!(
            "  fixed {} req/s, {}: achieved {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, lost {}",
            r.rate.unwrap_or(0),
            r.target.name(),
            r.rps(),
            r.load.p50_ms,
            r.load.p99_ms,
            r.lost()
        );
    }
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat`, USER_HZ = 100).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn sqlite_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
}

/// The digits (Meta's `wa_id`) of bench recipient `i`: a valid German mobile number
/// (libphonenumber accepts it, as it does a real recipient's), one per status.
fn recipient_wa_id(i: u64) -> String {
    format!("49151{i:08}")
}

/// The business-scoped user id of bench recipient `i`.
fn recipient_bsuid(i: u64) -> String {
    format!("US.{i:019}")
}

/// A fresh Parley database as a business has it: the bench's number connected to the
/// application (so each status's contact-identity step runs in full: the number is looked
/// up, the phone parsed, the identity checked against the contacts), one contact per
/// recipient already known by its phone and BSUID (the steady state since Meta's 2026
/// statuses name both), and `n` messages to them accepted by Meta (`bench_wamid(i)` for
/// `msg_<i>`, i < n; every status names both, as Meta's name the wamid and echo our id in
/// `biz_opaque_callback_data`).
async fn seed(path: &Path, n: u64) -> anyhow::Result<()> {
    let store = SqliteStore::open(path, SecretCipher::from_key(&[7; 32])).await?;
    let app = ApplicationId::new();
    store
        .create_owner(
            &parley_store::identity::NewOwner {
                account_id: AccountId::new(),
                account_name: "Bench".into(),
                application_id: app.clone(),
                application_name: "Bench".into(),
                user_id: UserId::new(),
                email: "bench@example.com".into(),
                password_hash: "-".into(),
                now: 0,
            },
            None,
        )
        .await?;
    let platform = store
        .upsert_platform(&parley_store::NewPlatform {
            id: PlatformId::new(),
            application_id: app.clone(),
            business_id: None,
            waba_id: WabaId::parse(WABA_ID)?,
            waba_name: Some("Bench".into()),
            status: "active".into(),
            access_token: "bench-token".into(),
            details: serde_json::json!({}),
            now: 0,
        })
        .await?;
    store
        .upsert_phone_number(&parley_store::PhoneNumberRecord {
            phone_number_id: PhoneNumberId::parse(PHONE_NUMBER_ID)?,
            platform_id: platform,
            application_id: app.clone(),
            display_phone_number: "15550001111".into(),
            verified_name: Some("Bench".into()),
            quality_rating: Some("GREEN".into()),
            messaging_limit: Some("TIER_UNLIMITED".into()),
            throughput_mps: 80,
            status: Some("CONNECTED".into()),
            updated_at: 0,
        })
        .await?;
    drop(store);
    let mut conn = SqliteConnection::connect_with(&sqlite_options(path)).await?;
    let mut tx = conn.begin().await?;
    // The same digits and BSUID as `recipient_wa_id` and `recipient_bsuid`.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1)
         INSERT INTO contacts (id, application_id, phone, wa_id, bsuid, created_at, updated_at)
         SELECT printf('ctc_%032x', i), $2, printf('+49151%08d', i), printf('49151%08d', i),
                printf('US.%019d', i), 0, 0
         FROM n",
    )
    .bind(i64::try_from(n)?)
    .bind(app.as_str())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1)
         INSERT INTO messages (id, application_id, phone_number_id, contact_id, to_phone, kind, content, state,
                               wamid, attempts, next_attempt_at, queued_at, sending_at, accepted_at, updated_at)
         SELECT printf('msg_%032x', i), $2, $3, printf('ctc_%032x', i), printf('+49151%08d', i), 'text',
                '{\"text\":\"bench\"}', 'accepted', printf('wamid.BENCH%08x%012d', (i * 2654435761) & 4294967295, i), 1, 0, 0, 0, 0, 0
         FROM n",
    )
    .bind(i64::try_from(n)?)
    .bind(app.as_str())
    .bind(PHONE_NUMBER_ID)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

fn spawn_self(args: &[&str]) -> anyhow::Result<Child> {
    Ok(Child(
        std::process::Command::new(std::env::current_exe()?)
            .args(args)
            // `PARLEY_BENCH_LOG` sets the receivers' log filter (e.g. `sqlx::query=debug` to
            // time every statement); warnings only by default.
            .env(
                "RUST_LOG",
                std::env::var("PARLEY_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("cannot start a bench process")?,
    ))
}

/// The child's first line on stdout that `wanted` accepts (its address, its report). Lines
/// before it (logs, when `PARLEY_BENCH_LOG` asks for them) and everything after it go on to
/// this process's stderr, so a chatty child never blocks on a full pipe.
fn first_line(child: &mut Child, wanted: fn(&str) -> bool) -> anyhow::Result<String> {
    let mut out = std::io::BufReader::new(child.0.stdout.take().context("stdout")?);
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 || wanted(line.trim()) {
            break;
        }
        eprint!("{line}");
    }
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut out, &mut std::io::stderr());
    });
    Ok(line.trim().to_owned())
}

async fn run(
    target: Target,
    per_request: usize,
    requests: u64,
    rate: Option<u64>,
    connections: usize,
) -> anyhow::Result<RunResult> {
    let dir = std::env::temp_dir().join(format!(
        "parley-bench-webhooks-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.db");
    let statuses = requests * per_request as u64;
    if target != Target::Reference {
        seed(&db, statuses).await?;
    }
    let db_arg = db.to_string_lossy().into_owned();
    let mut receiver = spawn_self(&[
        "bench",
        "webhook-target",
        "--kind",
        target.name(),
        "--db",
        &db_arg,
    ])?;
    let url = first_line(&mut receiver, |l| l.starts_with("http://"))?;
    anyhow::ensure!(url.starts_with("http://"), "the receiver did not start");
    let pid = receiver.0.id();
    let cpu0 = cpu_seconds(pid);
    let mut load_args = vec![
        "bench".to_owned(),
        "load-gen".to_owned(),
        "--url".to_owned(),
        url,
        "--connections".to_owned(),
        connections.to_string(),
        "--requests".to_owned(),
        requests.to_string(),
        "--per-request".to_owned(),
        per_request.to_string(),
    ];
    if let Some(r) = rate {
        load_args.extend(["--rate".to_owned(), r.to_string()]);
    }
    let mut load = spawn_self(&load_args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let line = tokio::task::spawn_blocking(move || first_line(&mut load, |l| l.starts_with('{')))
        .await??;
    let load_end = Instant::now();
    let cpu_load = cpu_seconds(pid) - cpu0;
    let report: LoadReport =
        serde_json::from_str(&line).with_context(|| format!("load generator said: {line}"))?;

    let mut conn = SqliteConnection::connect_with(&sqlite_options(&db).read_only(true)).await?;
    let (mut visible_after_s, mut visible) = (0.0, 0);
    let (backlog, applied_after_s, applied) = match target {
        Target::Parley => {
            const PENDING: &str = "SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NULL";
            const UNPROJECTED: &str =
                "SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NULL AND projected = 0";
            let backlog: i64 = sqlx::query_scalar(PENDING).fetch_one(&mut conn).await?;
            until_none(&mut conn, UNPROJECTED, load_end, "not projected").await?;
            visible_after_s = load_end.elapsed().as_secs_f64();
            // What a reader sees (`lattice::overlay`): the row merged, or a `delivered` still
            // in the log naming its id and wamid. One statement, one snapshot.
            let seen: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM messages m WHERE m.state = 'delivered'
                   OR EXISTS (SELECT 1 FROM status_log l WHERE l.message_id = m.id
                                AND l.wamid = m.wamid AND l.state = 'delivered')",
            )
            .fetch_one(&mut conn)
            .await?;
            visible = u64::try_from(seen).unwrap_or(0);
            until_none(&mut conn, PENDING, load_end, "pending").await?;
            let after = load_end.elapsed().as_secs_f64();
            let applied: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE state = 'delivered'")
                    .fetch_one(&mut conn)
                    .await?;
            (backlog, after, applied)
        }
        Target::Intake => {
            // Nothing applies them: the deliveries stored are what is counted.
            let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events")
                .fetch_one(&mut conn)
                .await?;
            (stored, 0.0, stored * per_request as i64)
        }
        Target::Reference => {
            let applied: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(statuses), 0) FROM events")
                .fetch_one(&mut conn)
                .await?;
            (0, 0.0, applied)
        }
    };
    conn.close().await?;
    let cpu_total = cpu_seconds(pid) - cpu0;
    let peak_rss_mib = peak_rss_mib(pid);
    drop(receiver);
    if target == Target::Parley {
        // The statistics counters the merges kept (in Rust, migration 0042) must equal the
        // recount of the rows, as `parley stats recount` checks them.
        let store = SqliteStore::open(&db, SecretCipher::from_key(&[7; 32])).await?;
        let diff = parley_store::StatsStore::stat_recount(&store, false).await?;
        anyhow::ensure!(
            diff.is_empty(),
            "{} statistics counters differ from the recount after the run: {:?}",
            diff.len(),
            diff.iter().take(5).collect::<Vec<_>>()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(RunResult {
        target,
        per_request,
        rate,
        load: report,
        cpu_load,
        cpu_total,
        peak_rss_mib,
        backlog: u64::try_from(backlog).unwrap_or(0),
        visible_after_s,
        visible,
        applied_after_s,
        applied: u64::try_from(applied).unwrap_or(0),
    })
}

/// Polls the count `sql` answers every 5 ms until it is 0; an error 10 minutes after the
/// load's end (`what` the statuses still are).
async fn until_none(
    conn: &mut SqliteConnection,
    sql: &'static str,
    load_end: Instant,
    what: &str,
) -> anyhow::Result<()> {
    loop {
        let left: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            load_end.elapsed() < Duration::from_secs(600),
            "statuses still {what} 10 minutes after the load"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// --- the receivers ----------------------------------------------------------------------------

/// The child: a receiver on `db`, printing its address on the first line of stdout.
pub async fn target(kind: &str, db: &Path) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    match kind {
        "parley" | "intake" => {
            let store: Arc<dyn Store> =
                Arc::new(SqliteStore::open(db, SecretCipher::from_key(&[7; 32])).await?);
            // The number is connected but nothing is queued: nothing is sent, and the Graph API
            // (an address nobody listens on) would only be called by the template sync, whose
            // first run comes 15 minutes after the start.
            let engine = Engine::new(
                store,
                GraphClient::new("http://127.0.0.1:9", "v24.0"),
                Arc::new(SystemClock),
                EngineConfig::default(),
            );
            let server = parley_server::Server::new(
                listener,
                engine.clone(),
                parley_server::ServerConfig {
                    app_secret: SECRET.into(),
                    verify_token: "bench".into(),
                    session_key: parley_server::session::SessionKey::new(rand::random()),
                    secure_cookies: false,
                    metrics_token: None,
                    rate_limit: Default::default(),
                },
            );
            let role = match kind {
                "intake" => parley_engine::nodes::NodeRole::Api,
                _ => parley_engine::nodes::NodeRole::All,
            };
            let _workers = engine.spawn_node(role, shutdown.clone());
            println!("{url}");
            server.run(shutdown).await?;
        }
        "reference" => {
            println!("{url}");
            reference_receiver(listener, db).await?;
        }
        other => anyhow::bail!("unknown receiver `{other}`"),
    }
    Ok(())
}

/// The parts of Meta's envelope the reference receiver reads.
#[derive(Deserialize)]
struct RefEnvelope {
    entry: Vec<RefEntry>,
}
#[derive(Deserialize)]
struct RefEntry {
    changes: Vec<RefChange>,
}
#[derive(Deserialize)]
struct RefChange {
    value: RefValue,
}
#[derive(Deserialize)]
struct RefValue {
    #[serde(default)]
    statuses: Vec<RefStatus>,
}
#[derive(Deserialize)]
struct RefStatus {
    #[allow(dead_code)]
    id: String,
    #[allow(dead_code)]
    status: String,
}

type RefJob = (Bytes, i64, oneshot::Sender<bool>);

/// A minimal receiver: axum, the HMAC check, a typed parse, and an append to SQLite with group
/// commit (one writer task, one transaction per round of what is queued), answering 200 after
/// the commit.
async fn reference_receiver(listener: tokio::net::TcpListener, db: &Path) -> anyhow::Result<()> {
    let mut conn = SqliteConnection::connect_with(&sqlite_options(db)).await?;
    sqlx::query(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, statuses INTEGER NOT NULL, body BLOB NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    let (tx, mut rx) = mpsc::channel::<RefJob>(8_192);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(1_024);
        while rx.recv_many(&mut batch, 1_024).await > 0 {
            let ok = async {
                let mut t = conn.begin().await?;
                for (body, n, _) in &batch {
                    sqlx::query("INSERT INTO events (statuses, body) VALUES ($1, $2)")
                        .bind(n)
                        .bind(body.as_ref())
                        .execute(&mut *t)
                        .await?;
                }
                t.commit().await
            }
            .await
            .is_ok();
            for (_, _, done) in batch.drain(..) {
                let _ = done.send(ok);
            }
        }
    });
    async fn receive(
        State(tx): State<mpsc::Sender<RefJob>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let sig = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !verify_signature(SECRET.as_bytes(), &body, sig) {
            return StatusCode::UNAUTHORIZED;
        }
        let Ok(env) = serde_json::from_slice::<RefEnvelope>(&body) else {
            return StatusCode::BAD_REQUEST;
        };
        let n: usize = env
            .entry
            .iter()
            .flat_map(|e| &e.changes)
            .map(|c| c.value.statuses.len())
            .sum();
        let (done, committed) = oneshot::channel();
        if tx.try_send((body, n as i64, done)).is_err() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        match committed.await {
            Ok(true) => StatusCode::OK,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    let app = axum::Router::new()
        .route("/webhooks/whatsapp", axum::routing::post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(3 * 1024 * 1024))
        .with_state(tx);
    axum::serve(listener, app).await?;
    Ok(())
}

// --- the load generator -------------------------------------------------------------------------

/// The wamid of seeded message `i`, as the seed writes it: scrambled in front, so wamids in
/// send order land all over an index as Meta's do (they start with the recipient's number).
fn bench_wamid(i: u64) -> String {
    format!(
        "wamid.BENCH{:08x}{i:012}",
        i.wrapping_mul(2_654_435_761) & 0xffff_ffff
    )
}

/// The body of request `j`: `per` delivered statuses for messages `j·per … j·per + per − 1`, in
/// Meta's 2026 shape.
fn status_body(j: u64, per: usize) -> Vec<u8> {
    let mut statuses = String::with_capacity(per * 420);
    let mut contacts = String::with_capacity(per * 120);
    for k in 0..per as u64 {
        let i = j * per as u64 + k;
        let (wa_id, bsuid) = (recipient_wa_id(i), recipient_bsuid(i));
        if k > 0 {
            statuses.push(',');
            contacts.push(',');
        }
        statuses.push_str(&format!(
            r#"{{"id":"{wamid}","status":"delivered","timestamp":"1765000000","recipient_id":"{wa_id}","recipient_user_id":"{bsuid}","biz_opaque_callback_data":"msg_{i:032x}","pricing":{{"billable":true,"pricing_model":"PMP","type":"regular","category":"marketing"}}}}"#,
            wamid = bench_wamid(i),
        ));
        contacts.push_str(&format!(r#"{{"wa_id":"{wa_id}","user_id":"{bsuid}"}}"#));
    }
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"{WABA_ID}","changes":[{{"field":"messages","value":{{"messaging_product":"whatsapp","metadata":{{"display_phone_number":"15550001111","phone_number_id":"{PHONE_NUMBER_ID}"}},"contacts":[{contacts}],"statuses":[{statuses}]}}}}]}}]}}"#
    )
    .into_bytes()
}

/// The load generator's arguments.
pub struct LoadArgs {
    pub url: String,
    pub connections: usize,
    pub requests: u64,
    pub per_request: usize,
    /// Fixed rate (requests/s, over all connections); latency then counts from each request's
    /// scheduled time, so a stall is not hidden by the requests it delayed.
    pub rate: Option<u64>,
}

struct Conn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// One request and its answer's status code.
    async fn call(&mut self, host: &str, body: &[u8], sig: &str) -> std::io::Result<u16> {
        let mut req = format!(
            "POST /webhooks/whatsapp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{SIGNATURE_HEADER}: {sig}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.stream.write_all(&req).await?;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap_or("");
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(0);
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let total = end + 4 + len;
                while self.buf.len() < total {
                    self.read_more().await?;
                }
                self.buf.drain(..total);
                return Ok(status);
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

pub async fn load_gen(args: LoadArgs) -> anyhow::Result<()> {
    let host = args
        .url
        .strip_prefix("http://")
        .context("the URL must be http://host:port")?
        .trim_end_matches('/')
        .to_owned();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let next = next.clone();
        let host = host.clone();
        let (requests, per, rate) = (args.requests, args.per_request, args.rate);
        tasks.spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let trace = std::env::var_os("PARLEY_BENCH_TRACE").is_some();
            let mut timeline: Vec<(u32, u32)> = Vec::new();
            let mut codes: Vec<u16> = Vec::new();
            let mut conn: Option<Conn> = None;
            loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                if j >= requests {
                    break;
                }
                let body = status_body(j, per);
                let sig = sign(SECRET.as_bytes(), &body);
                let t0 = match rate {
                    Some(r) => {
                        let at = started + Duration::from_secs_f64(j as f64 / r as f64);
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    None => Instant::now(),
                };
                if conn.is_none() {
                    match tokio::net::TcpStream::connect(&host).await {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            conn = Some(Conn {
                                stream: s,
                                buf: Vec::with_capacity(8192),
                            });
                        }
                        Err(_) => {
                            codes.push(0);
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let code = match c.call(&host, &body, &sig).await {
                    Ok(code) => code,
                    Err(_) => {
                        conn = None;
                        0
                    }
                };
                latencies.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                if trace {
                    timeline.push((
                        u32::try_from(t0.duration_since(started).as_micros()).unwrap_or(0),
                        *latencies.last().unwrap_or(&0),
                    ));
                }
                codes.push(code);
            }
            (latencies, codes, timeline)
        });
    }
    let mut latencies = Vec::with_capacity(args.requests as usize);
    let mut codes = std::collections::BTreeMap::<u16, u64>::new();
    let mut all_timeline = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (l, c, t) = r?;
        latencies.extend(l);
        all_timeline.extend(t);
        for code in c {
            *codes.entry(code).or_default() += 1;
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    if let Some(path) = std::env::var_os("PARLEY_BENCH_TRACE") {
        all_timeline.sort_unstable();
        let text: String = all_timeline
            .iter()
            .map(|(at, l)| format!("{at} {l}\n"))
            .collect();
        let mut path = path;
        path.push(format!(".{}", std::process::id()));
        let _ = std::fs::write(path, text);
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(latencies[i.min(latencies.len() - 1)]) / 1000.0
    };
    let ok = codes.remove(&200).unwrap_or(0);
    let report = LoadReport {
        requests: args.requests,
        ok,
        statuses_ok: ok * args.per_request as u64,
        errors: codes.into_iter().collect(),
        elapsed_s,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
