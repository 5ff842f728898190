//! `parley`: the one binary. `demo` runs everything locally with no configuration; `serve`
//! runs in production; `sandbox` runs the Meta emulator alone; `migrate` and `token` manage
//! the database.

mod bench;
mod bench_campaign;
mod bench_stats;
mod bench_webhooks;
mod config;
mod contacts;
mod demo;
mod migrate_store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use parley_engine::{Engine, EngineConfig, SystemClock};
use parley_meta::GraphClient;
use parley_store::SecretCipher;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "parley",
    version,
    about = "Self-hosted WhatsApp Business engagement platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Parley locally: SQLite, the built-in Meta sandbox and demo data. No configuration.
    Demo(demo::DemoArgs),
    /// Run Parley in production against Meta.
    Serve {
        /// Path to parley.toml (values may also come from PARLEY_* variables).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// What this node does: `api` (API, console, webhook intake; no workers), `worker`
        /// (sender loops, planner, webhook processor, template sync, retention; only
        /// /healthz, /readyz and /metrics over HTTP) or `all` (both; the default). Overrides
        /// `role` in the file and PARLEY_ROLE.
        #[arg(long, value_parser = ["api", "worker", "all"])]
        role: Option<String>,
        #[command(flatten)]
        test: ServeTestArgs,
    },
    /// Run only the Meta sandbox (Graph API emulator with signed webhooks).
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// Where the sandbox POSTs its signed webhooks.
        #[arg(long)]
        webhook_url: Option<String>,
    },
    /// Create or update the database schema, then exit.
    Migrate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Move an installation from SQLite to PostgreSQL: copies every row of every table into
    /// a freshly migrated, empty PostgreSQL database and checks each table's count and
    /// checksum. Stop every node serving the source first (it refuses otherwise).
    MigrateStore {
        /// The SQLite store: sqlite:///var/lib/parley/parley.db
        #[arg(long)]
        from: String,
        /// The PostgreSQL database (it must exist): postgres://user:password@host/db
        #[arg(long)]
        to: String,
        /// Delete the target's Parley data first instead of refusing a non-empty target.
        #[arg(long)]
        replace: bool,
        /// Rows read and written at once.
        #[arg(long, default_value_t = parley_store::transfer::BATCH)]
        batch: usize,
    },
    /// Manage contacts (import a CSV or NDJSON file).
    Contacts {
        #[command(subcommand)]
        action: contacts::ContactsAction,
    },
    /// Manage console users (first owner, password reset).
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Statistics counters: recount them from the raw rows.
    Stats {
        #[command(subcommand)]
        action: StatsAction,
    },
    /// Benchmarks (run them with --release).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

/// Hidden `serve` options for tests that run Parley and the sandbox as separate processes.
#[derive(clap::Args)]
struct ServeTestArgs {
    /// On an empty database, seed the demo account against `meta.graph_url` (a running
    /// `parley sandbox`) with this many contacts; credentials go to
    /// `<data_dir>/demo-credentials.json`.
    #[arg(long, hide = true)]
    seed_demo: Option<usize>,
    /// How long a claimed message may stay in `sending` (ms; default 60 s).
    #[arg(long, hide = true)]
    lease_ms: Option<u64>,
    /// Extra wait after a lease for a status webhook naming the message (ms; default 65 min).
    #[arg(long, hide = true)]
    crash_grace_ms: Option<u64>,
}

#[derive(Subcommand)]
enum StatsAction {
    /// Recompute every statistics counter from the raw rows (messages, inbound messages,
    /// opt-outs) and print the counters that differ; exits 1 when some do. Writers wait
    /// while it reads.
    Recount {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Replace the kept counters by the recount (in the same transaction).
        #[arg(long)]
        fix: bool,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// A year of synthetic statistics counters in a temporary SQLite file (or a PostgreSQL
    /// database), then timed statistics queries (the `GET /api/v1/stats` path).
    Stats {
        #[arg(long, default_value_t = 10_000_000)]
        messages: u64,
        /// Recipients of the campaign whose per-recipient CSV is exported (0: no export).
        #[arg(long, default_value_t = 1_000_000)]
        recipients: u64,
        /// Run on this PostgreSQL server instead of a temporary SQLite file
        /// (`postgres://user@host:port/db`; the bench creates and drops a database of its own).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Import, count a segment and personalize over N contacts in a temporary SQLite file.
    Audience {
        #[arg(long, default_value_t = 1_000_000)]
        contacts: u64,
    },
    /// A personalized campaign end to end against the sandbox (in a child process), on a
    /// temporary SQLite file: messages/s, CPU per message, peak RSS, send→delivered latency.
    Campaign {
        #[arg(long, default_value_t = 100_000)]
        recipients: usize,
        /// The number's throughput on both sides (Meta's default is 80).
        #[arg(long, default_value_t = 5_000)]
        mps: u32,
        /// Internal: run only the bench's sandbox, posting webhooks to this URL.
        #[arg(long, hide = true)]
        sandbox_only: Option<String>,
        /// Run on this PostgreSQL server instead of a temporary SQLite file
        /// (`postgres://user@host:port/db`; the bench creates and drops a database of its own).
        #[arg(long)]
        database_url: Option<String>,
        /// Parley nodes on that database (each with its own pools and workers).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
    },
    /// Meta's signed status webhooks into Parley's intake (a child process on a temporary
    /// SQLite file) from a load generator in its own process, against a minimal reference
    /// receiver in the same run: requests/s, statuses/s, p50/p99, CPU per request, RSS, time
    /// until every status is applied, statuses lost.
    Webhooks {
        /// Requests per run at 1 status per request.
        #[arg(long, default_value_t = 300_000)]
        requests: u64,
        /// Requests per run at 100 statuses per request.
        #[arg(long, default_value_t = 5_000)]
        bulk_requests: u64,
        /// The fixed-rate check's requests per second (0: skipped).
        #[arg(long, default_value_t = 3_000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        rate_seconds: u64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Runs of each receiver per load, alternating which goes first.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Also run Parley without its webhook processor (the intake alone) at each load.
        #[arg(long)]
        intake_only: bool,
    },
    /// Internal: a receiver for `bench webhooks` (`parley` or `reference`) on this SQLite file.
    #[command(hide = true)]
    WebhookTarget {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        db: PathBuf,
    },
    /// Internal: the load generator of `bench webhooks`.
    #[command(hide = true)]
    LoadGen {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long)]
        requests: u64,
        #[arg(long, default_value_t = 1)]
        per_request: usize,
        #[arg(long)]
        rate: Option<u64>,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create an account with its first application and owner, and print the owner's
    /// generated password (shown once). On a fresh database this replaces the setup link;
    /// on one with users it adds another account.
    CreateOwner {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "My account")]
        account: String,
        #[arg(long, default_value = "Main")]
        application: String,
    },
    /// Give a user a new generated password (printed once) and end all their sessions.
    ResetPassword {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create an API token for an application and print it (it is shown only once).
    Create {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Application id (`app_…`); defaults to the only application.
        #[arg(long)]
        application: Option<String>,
        #[arg(long, default_value = "cli")]
        label: String,
        /// What the token may do: `send`, `read` or `manage`; repeat for several
        /// (default: all three).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// When the token stops working: an RFC 3339 time, a day (`2027-01-31`, the end of
        /// that day UTC) or a number of days from now (`30d`). Default: never.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List an application's API tokens (revoked ones too).
    List {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        application: Option<String>,
    },
    /// Revoke an API token: it is refused (401) from now on.
    Revoke {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        application: Option<String>,
        /// The token's id (`tok_…`, from `parley token list`).
        id: String,
    },
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Serve { config, role, test } => serve(config, role, test).await,
        Command::Sandbox {
            listen,
            webhook_url,
        } => sandbox(listen, webhook_url).await,
        Command::Migrate { config } => migrate(config).await,
        Command::MigrateStore {
            from,
            to,
            replace,
            batch,
        } => migrate_store::run(&from, &to, replace, batch).await,
        Command::Token { action } => token(action).await,
        Command::Admin { action } => admin(action).await,
        Command::Contacts { action } => match contacts::run(action).await {
            Ok(0) => Ok(()),
            Ok(code) => return std::process::ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Stats {
            action: StatsAction::Recount { config, fix },
        } => match stats_recount(config, fix).await {
            Ok(true) => return std::process::ExitCode::from(1),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        },
        Command::Bench {
            what:
                BenchWhat::Stats {
                    messages,
                    recipients,
                    database_url,
                },
        } => bench_stats::stats(messages, recipients, database_url).await,
        Command::Bench {
            what: BenchWhat::Audience { contacts },
        } => bench::audience(contacts).await,
        Command::Bench {
            what:
                BenchWhat::Campaign {
                    recipients,
                    mps,
                    sandbox_only,
                    database_url,
                    nodes,
                },
        } => {
            bench_campaign::campaign(bench_campaign::Args {
                recipients,
                mps,
                sandbox_only,
                database_url,
                nodes,
            })
            .await
        }
        Command::Bench {
            what:
                BenchWhat::Webhooks {
                    requests,
                    bulk_requests,
                    rate,
                    rate_seconds,
                    connections,
                    rounds,
                    intake_only,
                },
        } => {
            bench_webhooks::webhooks(bench_webhooks::Args {
                requests,
                bulk_requests,
                rate,
                rate_seconds,
                connections,
                rounds: rounds.max(1),
                intake_only,
            })
            .await
        }
        Command::Bench {
            what: BenchWhat::WebhookTarget { kind, db },
        } => bench_webhooks::target(&kind, &db).await,
        Command::Bench {
            what:
                BenchWhat::LoadGen {
                    url,
                    connections,
                    requests,
                    per_request,
                    rate,
                },
        } => {
            bench_webhooks::load_gen(bench_webhooks::LoadArgs {
                url,
                connections,
                requests,
                per_request,
                rate,
            })
            .await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Cancels the token on Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping…");
        t.cancel();
    });
    token
}

/// The console's cookie-signing key: `PARLEY_SESSION_KEY` (64 hex characters, the same on
/// every node) or `<data_dir>/session.key`, created on first run with mode 0600.
pub(crate) fn session_key(
    data_dir: &std::path::Path,
) -> anyhow::Result<parley_server::session::SessionKey> {
    let hex_key = match std::env::var("PARLEY_SESSION_KEY") {
        Ok(k) => k,
        Err(_) => {
            let path = data_dir.join("session.key");
            match std::fs::read_to_string(&path) {
                Ok(k) => {
                    parley_store::files::tighten_file(&path)?;
                    k
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    parley_store::files::ensure_private_dir(data_dir)?;
                    let key: [u8; 32] = rand::random();
                    let hex_key = hex::encode(key);
                    write_private(&path, &hex_key)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    hex_key
                }
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        }
    };
    let key: [u8; 32] = hex::decode(hex_key.trim())
        .unwrap_or_default()
        .try_into()
        .map_err(|_| anyhow::anyhow!("the session key must be 64 hexadecimal characters"))?;
    Ok(parley_server::session::SessionKey::new(key))
}

pub(crate) fn write_private(path: &std::path::Path, data: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(data.as_bytes())
}

async fn open_store(config: &config::Config) -> anyhow::Result<Arc<dyn parley_store::Store>> {
    // The data directory holds the keys (and the SQLite files): 0700. Whoever writes there
    // first creates it so; an older install's is tightened here.
    if config.data_dir.is_dir() {
        parley_store::files::ensure_private_dir(&config.data_dir)
            .with_context(|| format!("cannot make {} private", config.data_dir.display()))?;
    }
    let cipher = match std::env::var("PARLEY_MASTER_KEY") {
        Ok(hex) => SecretCipher::from_hex(&hex)?,
        Err(_) => SecretCipher::load_or_create(&config.data_dir)?,
    };
    parley_store::open(&config.database_url(), cipher)
        .await
        .context("cannot open the database")
}

/// A message left in `sending` by a node that stopped answering goes back to the queue once
/// its claim and then the crash grace have passed. A grace shorter than the node lease could
/// requeue (and another node send again) what a node paused under a lease it still holds is
/// about to send, or has sent with its statuses not yet in: refused at start.
fn check_crash_grace(
    crash_grace: std::time::Duration,
    node_lease: std::time::Duration,
) -> anyhow::Result<()> {
    if crash_grace < node_lease {
        anyhow::bail!(
            "the crash grace ({} ms, --crash-grace-ms) is shorter than the node lease ({} ms, node_lease_ms or PARLEY_NODE_LEASE_MS): a message left in `sending` by a paused node could be sent again before that node's lease lapsed; lengthen the grace or shorten the lease",
            crash_grace.as_millis(),
            node_lease.as_millis()
        );
    }
    Ok(())
}

async fn serve(
    path: Option<PathBuf>,
    role: Option<String>,
    test: ServeTestArgs,
) -> anyhow::Result<()> {
    let mut config = config::Config::load(path.as_deref())?;
    if let Some(role) = role {
        config.role = role;
    }
    let role = config.node_role()?;
    let defaults = EngineConfig::default();
    let ms = std::time::Duration::from_millis;
    let crash_grace = test.crash_grace_ms.map_or(defaults.crash_grace, ms);
    check_crash_grace(crash_grace, ms(config.node_lease_ms))?;
    tracing::info!(?config, "starting");
    parley_domain::warm_up();
    let store = open_store(&config).await?;
    let engine = Engine::new(
        store,
        GraphClient::new(&config.meta.graph_url, &config.meta.graph_version),
        Arc::new(SystemClock),
        EngineConfig {
            meta_app: config.meta_app(),
            audit_retention: config.audit_retention(),
            webhook_retention: config.webhook_retention(),
            import_retention: config.import_retention(),
            poll_interval: config.fallback_poll(),
            media: config.media(),
            events: config.events(),
            lease: test.lease_ms.map_or(defaults.lease, ms),
            crash_grace,
            node_lease: ms(config.node_lease_ms),
            filter_timeout: config
                .database
                .filter_timeout_secs
                .filter(|s| *s > 0)
                .map_or(defaults.filter_timeout, std::time::Duration::from_secs),
            ..defaults
        },
    );
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    if let Some(contacts) = test.seed_demo {
        let url = format!("http://{}", listener.local_addr()?);
        demo::seed_for_serve(&engine, &config, &url, contacts).await?;
    }
    let server_config = parley_server::ServerConfig {
        app_secret: config.meta.app_secret.clone(),
        verify_token: config.meta.verify_token.clone(),
        session_key: session_key(&config.data_dir)?,
        secure_cookies: config.public_url.starts_with("https://"),
        metrics_token: config.metrics_token(),
        rate_limit: config.rate_limit()?,
    };
    // A worker node serves health, readiness and metrics only.
    let server = match role.serves_api() {
        true => parley_server::Server::new(listener, engine.clone(), server_config),
        false => parley_server::Server::health_only(listener, engine.clone(), server_config),
    };
    println!(
        "Parley listens on http://{} (role {})",
        server.local_addr()?,
        role.as_str()
    );
    if role.serves_api() {
        print_setup_link(&engine, &config, server.local_addr()?).await?;
    }
    let shutdown = shutdown_on_signal();
    let mut workers = engine.spawn_node(role, shutdown.clone());
    server.run(shutdown).await?;
    while workers.join_next().await.is_some() {}
    Ok(())
}

/// On a database without users: a fresh one-time setup link, printed and logged (the token
/// is only in this line; the database keeps its hash).
async fn print_setup_link(
    engine: &Engine,
    config: &config::Config,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    if let Some(token) = engine.issue_setup_link().await? {
        let base = if config.public_url.is_empty() {
            format!("http://{addr}")
        } else {
            config.public_url.trim_end_matches('/').to_owned()
        };
        let link = format!("{base}/setup/{token}");
        tracing::warn!(%link, "no user yet: open the setup link to create the first owner (valid 24 h, once)");
        println!("No user yet. Create the first owner at: {link}");
        println!("  (valid for 24 hours, once; or run `parley admin create-owner --email …`)");
    }
    Ok(())
}

/// `parley stats recount [--fix]`; `Ok(true)` when counters differed and were left as they
/// were.
async fn stats_recount(config: Option<PathBuf>, fix: bool) -> anyhow::Result<bool> {
    let cfg = config::Config::load_unchecked(config.as_deref())?;
    let engine = engine_for_cli(&cfg).await?;
    let diff = engine
        .recount_stats(fix)
        .await
        .map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))?;
    for d in &diff {
        let k = &d.key;
        println!(
            "{} {} {} {} campaign={:?} template={:?} number={:?} category={:?} country={:?} origin={:?} detail={:?}: counted {}, recounted {}",
            k.application_id,
            k.span,
            k.bucket,
            k.metric,
            k.campaign_id,
            k.template,
            k.phone_number_id,
            k.category,
            k.country,
            k.origin,
            k.detail,
            d.counted,
            d.recounted
        );
    }
    match (diff.is_empty(), fix) {
        (true, _) => println!("The statistics counters equal the recount."),
        (false, true) => println!("{} counters differed; replaced by the recount.", diff.len()),
        (false, false) => {
            println!(
                "{} counters differ; run again with --fix to replace them.",
                diff.len()
            );
            return Ok(true);
        }
    }
    Ok(false)
}

async fn engine_for_cli(cfg: &config::Config) -> anyhow::Result<Engine> {
    let store = open_store(cfg).await?;
    Ok(Engine::new(
        store,
        GraphClient::new(&cfg.meta.graph_url, &cfg.meta.graph_version),
        Arc::new(SystemClock),
        EngineConfig::default(),
    ))
}

async fn admin(action: AdminAction) -> anyhow::Result<()> {
    let failed = |e: parley_engine::EngineError| anyhow::anyhow!("{} ({})", e.message, e.code);
    match action {
        AdminAction::CreateOwner {
            config,
            email,
            account,
            application,
        } => {
            let cfg = config::Config::load_unchecked(config.as_deref())?;
            let engine = engine_for_cli(&cfg).await?;
            let (_, app, password) = engine
                .create_owner(&email, &account, &application)
                .await
                .map_err(failed)?;
            println!("Owner created: {}", email.trim().to_lowercase());
            println!("  password:    {password}");
            println!("  application: {app}");
            println!("Sign in to the console and change the password under My account.");
            Ok(())
        }
        AdminAction::ResetPassword { config, email } => {
            let cfg = config::Config::load_unchecked(config.as_deref())?;
            let engine = engine_for_cli(&cfg).await?;
            let password = engine.reset_password(&email).await.map_err(failed)?;
            println!(
                "New password for {}: {password}",
                email.trim().to_lowercase()
            );
            println!("All their sessions have ended.");
            Ok(())
        }
    }
}

async fn sandbox(listen: SocketAddr, webhook_url: Option<String>) -> anyhow::Result<()> {
    let mut config = parley_sandbox::SandboxConfig::demo();
    config.webhook_url = webhook_url;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!(
        "Meta sandbox on http://{} (Graph API under /{}/…, control API under /sandbox/…)",
        listener.local_addr()?,
        config.graph_version
    );
    println!("  access token: {}", parley_sandbox::demo_ids::ACCESS_TOKEN);
    println!("  app secret:   {}", config.app_secret);
    let shutdown = shutdown_on_signal();
    parley_sandbox::Sandbox::new(config)
        .serve(listener, shutdown)
        .await?;
    Ok(())
}

async fn migrate(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = config::Config::load_unchecked(path.as_deref())?;
    open_store(&config).await?;
    println!("database is up to date: {}", config.database_url());
    Ok(())
}

/// The engine over the configured database, for the commands that manage records.
async fn cli_engine(config: Option<&std::path::Path>) -> anyhow::Result<Engine> {
    let cfg = config::Config::load_unchecked(config)?;
    let store = open_store(&cfg).await?;
    Ok(Engine::new(
        store,
        GraphClient::new(&cfg.meta.graph_url, &cfg.meta.graph_version),
        Arc::new(SystemClock),
        EngineConfig::default(),
    ))
}

/// The application `--application` names, or the only one.
pub(crate) async fn chosen_application(
    engine: &Engine,
    application: Option<String>,
) -> anyhow::Result<parley_domain::ApplicationId> {
    let app = match application {
        Some(id) => {
            let id = parley_domain::ApplicationId::parse(&id)
                .map_err(|_| anyhow::anyhow!("no application `{id}`"))?;
            engine
                .application(&id)
                .await?
                .with_context(|| format!("no application `{id}`"))?
        }
        // Two are enough to know whether there is only one.
        None => match engine.applications_page(None, 2).await?.as_slice() {
            [only] => only.clone(),
            [] => anyhow::bail!(
                "there is no application yet (run `parley demo` once, or connect a platform)"
            ),
            _ => anyhow::bail!("there are several applications: choose one with --application"),
        },
    };
    Ok(app.id)
}

/// `--expires`: an RFC 3339 time, a day (its end, UTC) or `<n>d` from `now`.
fn parse_expiry(text: &str, now: i64) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Some(days) = text.strip_suffix('d')
        && let Ok(days) = days.parse::<i64>()
        && days > 0
    {
        return Ok(now + days * 86_400_000);
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(text, &format).map_err(|_| {
        anyhow::anyhow!(
            "--expires takes an RFC 3339 time (2027-01-31T12:00:00Z), a day (2027-01-31) or a number of days (30d)"
        )
    })?;
    let end = day
        .next_day()
        .context("that day is too far away")?
        .midnight()
        .assume_utc();
    Ok((end.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn show_time(millis: Option<i64>) -> String {
    millis.map_or_else(
        || "-".to_owned(),
        |m| {
            parley_engine::clock::to_datetime(m)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        },
    )
}

async fn token(action: TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::Create {
            config,
            application,
            label,
            scopes,
            expires,
        } => {
            let engine = cli_engine(config.as_deref()).await?;
            let app = chosen_application(&engine, application).await?;
            let scopes = if scopes.is_empty() {
                parley_domain::Scopes::ALL
            } else {
                let list = scopes
                    .iter()
                    .flat_map(|s| s.split(','))
                    .map(parley_domain::Scope::parse)
                    .collect::<Result<Vec<_>, _>>()?;
                parley_domain::Scopes::from_list(&list)?
            };
            let expires_at = expires
                .as_deref()
                .map(|e| parse_expiry(e, engine.now()))
                .transpose()?;
            let created = engine
                .create_token(
                    &app,
                    parley_engine::access::TokenRequest {
                        label,
                        scopes,
                        expires_at,
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            eprintln!(
                "token {} ({}) for {app}; it is shown only once:",
                created.record.id, created.record.scopes
            );
            println!("{}", created.secret);
            Ok(())
        }
        TokenAction::List {
            config,
            application,
        } => {
            let engine = cli_engine(config.as_deref()).await?;
            let app = chosen_application(&engine, application).await?;
            println!("id\tlabel\tscopes\tcreated\tlast used\texpires\trevoked");
            let mut after = None;
            loop {
                let page = engine.tokens(&app, after.as_ref(), 200).await?;
                for t in &page {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        t.id,
                        t.label,
                        t.scopes,
                        show_time(Some(t.created_at)),
                        show_time(t.last_used_at),
                        show_time(t.expires_at),
                        show_time(t.revoked_at),
                    );
                }
                match page.last() {
                    Some(t) if page.len() == 200 => after = Some(t.id.clone()),
                    _ => break,
                }
            }
            Ok(())
        }
        TokenAction::Revoke {
            config,
            application,
            id,
        } => {
            let engine = cli_engine(config.as_deref()).await?;
            let app = chosen_application(&engine, application).await?;
            let token = engine
                .revoke_token(&app, &parley_engine::access::token_id(&id)?)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            println!("revoked {} ({})", token.id, token.label);
            Ok(())
        }
    }
}
