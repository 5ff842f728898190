//! `parley bench campaign`: a personalized campaign end to end against the sandbox, on a
//! temporary SQLite file or (`--database-url postgres://…`) a throwaway database on that
//! PostgreSQL server, with one or several Parley nodes (`--nodes`: engines in this process,
//! each with its own pools, wake-up listener and workers, as separate `parley serve`
//! processes would have). The sandbox runs in a child process (this binary with
//! `--sandbox-only`), so the CPU time and peak memory measured here are Parley's alone.
//!
//! Parley here is the production wiring: the HTTP server receiving the sandbox's signed status
//! webhooks, the webhook worker, the campaign planner and the per-number sender over HTTP.

use std::io::BufRead as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use parley_domain::{
    ApplicationId, BusinessId, CampaignKind, MessageState, PhoneNumberId, VariableInput, WabaId,
};
use parley_engine::campaigns::{CampaignAudience, NewCampaign};
use parley_engine::demo::DemoPlatform;
use parley_engine::{Engine, EngineConfig, SystemClock};
use parley_meta::GraphClient;
use parley_sandbox::{Sandbox, SandboxConfig, demo_ids};
use parley_store::platforms::NumberPatch;
use parley_store::{PostgresStore, SecretCipher, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

/// What one run measures.
pub struct Args {
    pub recipients: usize,
    /// The number's throughput on both sides (Meta's default is 80).
    pub mps: u32,
    /// Run only the sandbox (the child process), posting webhooks to this URL.
    pub sandbox_only: Option<String>,
    /// A PostgreSQL server (`postgres://user@host:port/db`, a user that may create
    /// databases): the bench creates a database of its own there and drops it at the end.
    pub database_url: Option<String>,
    /// Parley nodes on that database (PostgreSQL only).
    pub nodes: usize,
}

/// The bench's own database on the server `url` names: created empty, dropped by `drop`.
pub(crate) struct BenchDatabase {
    admin: String,
    pub(crate) name: String,
    pub(crate) url: String,
}

impl BenchDatabase {
    pub(crate) async fn create(url: &str) -> anyhow::Result<BenchDatabase> {
        use sqlx::Connection as _;
        let name = format!("parley_bench_{}", std::process::id());
        let (base, _) = url
            .rsplit_once('/')
            .context("the database URL names no database: postgres://user@host:port/db")?;
        let mut c = sqlx::PgConnection::connect(url)
            .await
            .context("cannot connect to the PostgreSQL server")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .context("cannot create the bench's database (the user needs CREATEDB)")?;
        let _ = c.close().await;
        Ok(BenchDatabase {
            admin: url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    pub(crate) async fn drop(self) {
        use sqlx::Connection as _;
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.admin).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
            let _ = c.close().await;
        }
    }
}

fn sandbox_config(mps: u32, webhook_url: String) -> SandboxConfig {
    let mut config = SandboxConfig::demo();
    config.webhook_url = Some(webhook_url);
    for b in &mut config.businesses {
        for w in &mut b.wabas {
            for p in &mut w.phone_numbers {
                p.messaging_limit = "TIER_UNLIMITED".into();
                p.throughput_mps = mps;
            }
        }
    }
    // Terminal state = delivered: every message gets a `sent` and a `delivered` webhook.
    config.behaviour.read_ratio = 0.0;
    config.behaviour.pair_rate_burst = 1_000;
    config
}

/// The child: the sandbox alone, printing its address on the first line of stdout.
async fn run_sandbox(mps: u32, webhook_url: String) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    Sandbox::new(sandbox_config(mps, webhook_url))
        .serve(listener, shutdown)
        .await?;
    Ok(())
}

/// User + system CPU seconds of this process (`/proc/self/stat`, USER_HZ = 100).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line; index 11 and 12 after `)`.
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn campaign(args: Args) -> anyhow::Result<()> {
    if let Some(url) = args.sandbox_only {
        return run_sandbox(args.mps, url).await;
    }
    let dir = std::env::temp_dir().join(format!("parley-bench-campaign-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.db");
    let nodes = args.nodes.max(1);
    anyhow::ensure!(
        nodes == 1 || args.database_url.is_some(),
        "--nodes above 1 needs --database-url postgres://… (one SQLite file serves one node)"
    );
    let pg = match &args.database_url {
        Some(url) => Some(BenchDatabase::create(url).await?),
        None => None,
    };
    println!(
        "parley bench campaign: {} recipients at {} msg/s, {}",
        args.recipients,
        args.mps,
        match &pg {
            Some(db) => format!("PostgreSQL database {} with {nodes} node(s)", db.name),
            None => format!("SQLite at {}", path.display()),
        }
    );
    parley_domain::warm_up();

    // Parley's listener first: the sandbox needs its webhook URL.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut child = Child(
        std::process::Command::new(std::env::current_exe()?)
            .args([
                "bench",
                "campaign",
                "--mps",
                &args.mps.to_string(),
                "--sandbox-only",
                &format!("{url}/webhooks/whatsapp"),
            ])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("cannot start the sandbox process")?,
    );
    let mut first = String::new();
    std::io::BufReader::new(child.0.stdout.take().context("sandbox stdout")?)
        .read_line(&mut first)?;
    let sandbox_url = first.trim().to_owned();
    anyhow::ensure!(
        sandbox_url.starts_with("http://"),
        "the sandbox did not start"
    );

    let mut stores: Vec<Arc<dyn Store>> = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        let cipher = SecretCipher::from_key(&[7; 32]);
        stores.push(match &pg {
            Some(db) => Arc::new(PostgresStore::connect(&db.url, cipher).await?),
            None => Arc::new(SqliteStore::open(&path, cipher).await?),
        });
    }
    let store = stores[0].clone();
    let config = SandboxConfig::demo();
    let engines: Vec<Engine> = stores
        .iter()
        .map(|store| {
            Engine::new(
                store.clone(),
                GraphClient::new(&sandbox_url, &config.graph_version),
                Arc::new(SystemClock),
                EngineConfig {
                    poll_interval: Duration::from_millis(100),
                    ..EngineConfig::default()
                },
            )
        })
        .collect();
    let engine = engines[0].clone();
    let started = Instant::now();
    let seed = engine
        .seed_demo(
            &DemoPlatform {
                business_id: BusinessId::parse(demo_ids::BUSINESS_ID)?,
                waba_id: WabaId::parse(demo_ids::WABA_ID)?,
                access_token: demo_ids::ACCESS_TOKEN.into(),
            },
            args.recipients,
        )
        .await
        .map_err(anyhow::Error::msg)?;
    let app: ApplicationId = seed.application_id;
    // The sandbox reports the tier; Parley's number gets the same throughput.
    store
        .patch_phone_number(
            &PhoneNumberId::parse(demo_ids::PHONE_NUMBER_ID)?,
            &NumberPatch {
                messaging_limit: Some("TIER_UNLIMITED".into()),
                throughput_mps: Some(args.mps),
                ..NumberPatch::default()
            },
            parley_engine::Clock::now_millis(&SystemClock),
        )
        .await?;
    println!(
        "seeded:      {} contacts in {:.1} s (peak RSS so far {:.1} MiB)",
        seed.contacts,
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );

    let shutdown = CancellationToken::new();
    let server = parley_server::Server::new(
        listener,
        engine.clone(),
        parley_server::ServerConfig {
            app_secret: config.app_secret.clone(),
            verify_token: config.verify_token.clone(),
            session_key: parley_server::session::SessionKey::new(rand::random()),
            secure_cookies: false,
            metrics_token: None,
            // The bench measures sending, not the API's limits.
            rate_limit: parley_server::auth::RateLimit {
                per_second: std::num::NonZeroU32::new(1_000_000).expect("non-zero"),
                burst: std::num::NonZeroU32::new(1_000_000).expect("non-zero"),
            },
        },
    );
    let server_task = tokio::spawn(server.run(shutdown.clone()));
    // Node 0 receives Meta's webhooks (the sandbox has one URL); every node runs the workers.
    let mut workers = engine.spawn_workers(shutdown.clone());
    for other in &engines[1..] {
        let mut set = other.spawn_node(parley_engine::nodes::NodeRole::Worker, shutdown.clone());
        workers.spawn(async move { while set.join_next().await.is_some() {} });
    }

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let c = engine
        .create_campaign(
            &app,
            NewCampaign {
                name: "bench".into(),
                phone_number_id: None,
                template_name: "welcome".into(),
                template_language: "en".into(),
                variables: VariableInput::Named(
                    [(
                        "first_name".into(),
                        "{{first_name|CapitalizeFirst|there}}".into(),
                    )]
                    .into(),
                ),
                audience: CampaignAudience::Filter("all".into()),
                kind: CampaignKind::Marketing,
                scheduled_at: None,
                send_window: None,
                marketing_ttl_seconds: None,
            },
        )
        .await
        .map_err(anyhow::Error::msg)?;
    let id = c.id;
    engine
        .start_campaign(&app, &id)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut last_print = Instant::now();
    let mut sent_done_at: Option<f64> = None;
    // (wall-clock ms, messages delivered so far): when each delivered webhook was processed,
    // to the poll's resolution.
    let mut delivered_curve: Vec<(i64, u64)> = Vec::new();
    let stats = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = engine
            .campaign_stats(&app, &id)
            .await
            .map_err(anyhow::Error::msg)?;
        delivered_curve.push((parley_engine::Clock::now_millis(&SystemClock), s.delivered));
        let total = args.recipients as u64;
        if sent_done_at.is_none() && s.planned && s.sent + s.failed + s.skipped >= total {
            sent_done_at = Some(t0.elapsed().as_secs_f64());
        }
        if s.planned && s.recipients == total && s.delivered + s.failed + s.skipped == total {
            break s;
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!(
                "  … {:.0} s: {} planned, {} accepted, {} sent, {} delivered, {} failed",
                t0.elapsed().as_secs_f64(),
                s.recipients,
                s.accepted,
                s.sent,
                s.delivered,
                s.failed
            );
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(3600),
            "the campaign did not finish within an hour: {s:?}"
        );
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    // Before the bench reads every message back for the latencies below.
    let peak_rss = peak_rss_mib();
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    let _ = server_task.await;

    // Latency from the send (the claim, `sending_at`) to the processed `delivered` webhook:
    // the k-th message sent against the poll at which the k-th delivery was counted (Meta's
    // own status timestamps are whole seconds). The achieved send rate is first to last
    // acceptance by Meta.
    let mut sends = Vec::with_capacity(args.recipients);
    let (mut first_accept, mut last_accept) = (i64::MAX, i64::MIN);
    let mut after = None;
    loop {
        let page = store.messages(&app, after.as_ref(), 5_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for m in &page {
            if let Some(a) = m.accepted_at {
                first_accept = first_accept.min(a);
                last_accept = last_accept.max(a);
            }
            if m.state == MessageState::Delivered
                && let Some(s) = m.sending_at
            {
                sends.push(s);
            }
        }
    }
    sends.sort_unstable();
    let mut latencies = Vec::with_capacity(sends.len());
    let mut poll = 0;
    for (k, s) in sends.iter().enumerate() {
        while poll + 1 < delivered_curve.len() && delivered_curve[poll].1 <= k as u64 {
            poll += 1;
        }
        latencies.push(delivered_curve[poll].0 - s);
    }
    latencies.sort_unstable();
    let n = stats.recipients as f64;
    let accept_span = (last_accept - first_accept).max(1) as f64 / 1000.0;
    println!(
        "delivered:   {} of {} ({} failed, {} skipped)",
        stats.delivered, stats.recipients, stats.failed, stats.skipped
    );
    println!(
        "end to end:  {wall:8.2} s  → {:.0} messages/s (every `sent` status processed after {:.2} s)",
        n / wall,
        sent_done_at.unwrap_or(wall)
    );
    println!(
        "send rate:   {:.1} messages/s accepted (first to last acceptance, {:.2} s)",
        (n - 1.0).max(1.0) / accept_span,
        accept_span
    );
    println!(
        "CPU:         {cpu:8.2} s  → {:.1} µs per message (Parley's process, user + system)",
        cpu * 1e6 / n
    );
    println!(
        "latency:     p50 {} ms, p99 {} ms (send → delivered webhook processed, ±100 ms)",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
    println!("peak RSS:    {peak_rss:8.1} MiB (VmHWM, seeding included)");
    // What Meta refused for going too fast (Parley retries those): the pacer's honesty.
    let refusals: serde_json::Value = reqwest::Client::new()
        .get(format!("{sandbox_url}/sandbox/requests?limit=1"))
        .send()
        .await?
        .json()
        .await?;
    println!(
        "rate refusals by Meta: {} (throughput and pair rate per number)",
        refusals["rate_refusals"]
    );
    drop(child);
    drop(engines);
    drop(stores);
    drop(store);
    if let Some(db) = pg {
        db.drop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
