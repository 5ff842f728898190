//! `parley`: the one binary. `demo` runs everything locally with no configuration; `serve`
//! runs in production; `sandbox` runs the Meta emulator alone; `migrate` and `token` manage
//! the database.

mod bench;
mod bench_campaign;
mod config;
mod contacts;
mod demo;

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
    /// Manage contacts (import a CSV or NDJSON file).
    Contacts {
        #[command(subcommand)]
        action: contacts::ContactsAction,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
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
    /// Extra wait after a lease for a status webhook naming the message (ms; default 300 s).
    #[arg(long, hide = true)]
    crash_grace_ms: Option<u64>,
}

#[derive(Subcommand)]
enum BenchWhat {
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
        Command::Serve { config, test } => serve(config, test).await,
        Command::Sandbox {
            listen,
            webhook_url,
        } => sandbox(listen, webhook_url).await,
        Command::Migrate { config } => migrate(config).await,
        Command::Token { action } => token(action).await,
        Command::Contacts { action } => match contacts::run(action).await {
            Ok(0) => Ok(()),
            Ok(code) => return std::process::ExitCode::from(code),
            Err(e) => Err(e),
        },
        Command::Bench {
            what: BenchWhat::Audience { contacts },
        } => bench::audience(contacts).await,
        Command::Bench {
            what:
                BenchWhat::Campaign {
                    recipients,
                    mps,
                    sandbox_only,
                },
        } => {
            bench_campaign::campaign(bench_campaign::Args {
                recipients,
                mps,
                sandbox_only,
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

async fn serve(path: Option<PathBuf>, test: ServeTestArgs) -> anyhow::Result<()> {
    let config = config::Config::load(path.as_deref())?;
    tracing::info!(?config, "starting");
    parley_domain::warm_up();
    let store = open_store(&config).await?;
    let defaults = EngineConfig::default();
    let ms = std::time::Duration::from_millis;
    let engine = Engine::new(
        store,
        GraphClient::new(&config.meta.graph_url, &config.meta.graph_version),
        Arc::new(SystemClock),
        EngineConfig {
            meta_app: config.meta_app(),
            lease: test.lease_ms.map_or(defaults.lease, ms),
            crash_grace: test.crash_grace_ms.map_or(defaults.crash_grace, ms),
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
    let server = parley_server::Server::new(
        listener,
        engine.clone(),
        parley_server::ServerConfig {
            app_secret: config.meta.app_secret.clone(),
            verify_token: config.meta.verify_token.clone(),
            session_key: session_key(&config.data_dir)?,
            secure_cookies: config.public_url.starts_with("https://"),
            metrics_token: config.metrics_token(),
        },
    );
    println!("Parley listens on http://{}", server.local_addr()?);
    let shutdown = shutdown_on_signal();
    let mut workers = engine.spawn_workers(shutdown.clone());
    server.run(shutdown).await?;
    while workers.join_next().await.is_some() {}
    Ok(())
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

async fn token(action: TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::Create {
            config,
            application,
            label,
        } => {
            let cfg = config::Config::load_unchecked(config.as_deref())?;
            let store = open_store(&cfg).await?;
            let apps = store.applications().await?;
            let app = match application {
                Some(id) => apps
                    .into_iter()
                    .find(|a| a.id.as_str() == id)
                    .with_context(|| format!("no application `{id}`"))?,
                None => match apps.len() {
                    1 => apps.into_iter().next().context("no application")?,
                    0 => anyhow::bail!(
                        "there is no application yet (run `parley demo` once, or connect a platform)"
                    ),
                    _ => anyhow::bail!(
                        "there are several applications: choose one with --application"
                    ),
                },
            };
            let token = parley_engine::auth::generate_api_token();
            let now = SystemClock.now_millis();
            store
                .add_api_token(
                    &app.id,
                    &parley_engine::auth::hash_api_token(&token),
                    &label,
                    now,
                )
                .await?;
            println!("{token}");
            Ok(())
        }
    }
}

use parley_engine::Clock as _;
