//! `parley demo`: the whole product on a laptop. SQLite in `--data-dir`, the Meta sandbox
//! in-process on its own loopback port, demo data seeded on the first run and reused after.

use parley_domain::{BusinessId, WabaId};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parley_engine::demo::DemoPlatform;
use parley_engine::{Engine, EngineConfig, SystemClock};
use parley_meta::GraphClient;
use parley_sandbox::{Sandbox, SandboxConfig, demo_ids};
use parley_store::{SecretCipher, Store};
use serde::{Deserialize, Serialize};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the database, master key and demo credentials live.
    #[arg(long, default_value = "./parley-data")]
    pub data_dir: PathBuf,
    /// The console and API port.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The sandbox's port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub sandbox_port: u16,
    /// How many demo contacts the first run creates.
    #[arg(long, default_value_t = 1000)]
    pub contacts: usize,
}

/// `<data-dir>/demo-credentials.json`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DemoCredentials {
    pub console_url: String,
    pub email: String,
    pub password: String,
    pub api_token: String,
    pub sandbox_url: String,
    pub app_id: String,
    pub app_secret: String,
    pub verify_token: String,
}

/// The sandbox takes any Embedded Signup configuration id; this one names the demo's.
const DEMO_CONFIG_ID: &str = "parley-demo-embedded-signup";

fn credentials_path(dir: &Path) -> PathBuf {
    dir.join("demo-credentials.json")
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // 0700, and tightened on an older install: the directory holds keys and the database.
    parley_store::files::ensure_private_dir(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    parley_domain::warm_up();
    let cipher = SecretCipher::load_or_create(&args.data_dir)?;
    let store: Arc<dyn Store> = parley_store::open(
        &format!("sqlite://{}", args.data_dir.join("parley.db").display()),
        cipher,
    )
    .await
    .context("cannot open the demo database")?;

    let sandbox_listener = tokio::net::TcpListener::bind(("127.0.0.1", args.sandbox_port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.sandbox_port))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{}: is another Parley running? Choose another with --port",
                args.port
            )
        })?;
    let sandbox_url = format!("http://{}", sandbox_listener.local_addr()?);
    let console_url = format!("http://{}", listener.local_addr()?);

    let mut sandbox_config = SandboxConfig::demo();
    sandbox_config.app_secret = demo_app_secret(&args.data_dir)?;
    sandbox_config.webhook_url = Some(format!("{console_url}/webhooks/whatsapp"));
    let sandbox = Sandbox::new(sandbox_config.clone());
    let shutdown = crate::shutdown_on_signal();
    let sandbox_task = tokio::spawn(sandbox.serve(sandbox_listener, shutdown.clone()));

    let engine = Engine::new(
        store.clone(),
        GraphClient::new(&sandbox_url, &sandbox_config.graph_version),
        Arc::new(SystemClock),
        EngineConfig {
            // The sandbox serves the JS SDK stand-in and its dialog posts from its own origin.
            meta_app: parley_engine::MetaApp {
                app_id: sandbox_config.app_id.clone(),
                app_secret: sandbox_config.app_secret.clone(),
                config_id: DEMO_CONFIG_ID.into(),
                graph_version: sandbox_config.graph_version.clone(),
                sdk_url: format!("{sandbox_url}/sdk.js"),
                message_origin: sandbox_url.clone(),
                // The sandbox's demo token reaches every WABA, as a partner's system user
                // does: Meta's PARTNER_ADDED connects a sign-up whose tab was closed.
                system_user_token: Some(demo_ids::ACCESS_TOKEN.to_owned()),
                ..Default::default()
            },
            media: parley_engine::MediaConfig {
                dir: Some(args.data_dir.join("media")),
                ..Default::default()
            },
            // A demo's event receiver runs on this machine (`http://localhost:…`).
            events: parley_engine::events::EventConfig {
                allow_loopback: true,
                ..Default::default()
            },
            ..EngineConfig::default()
        },
    );
    let path = credentials_path(&args.data_dir);
    let mut creds = if store.applications_after(None, 1).await?.is_empty() {
        println!(
            "First run: seeding the demo account ({} contacts)…",
            args.contacts
        );
        let seed = engine
            .seed_demo(
                &DemoPlatform {
                    business_id: BusinessId::parse(demo_ids::BUSINESS_ID)?,
                    waba_id: WabaId::parse(demo_ids::WABA_ID)?,
                    access_token: demo_ids::ACCESS_TOKEN.into(),
                },
                args.contacts,
            )
            .await
            .map_err(|e| anyhow::anyhow!("seeding the demo failed: {e}"))?;
        DemoCredentials {
            console_url: console_url.clone(),
            email: seed.email,
            password: seed.password,
            api_token: seed.api_token,
            sandbox_url: sandbox_url.clone(),
            app_id: sandbox_config.app_id.clone(),
            app_secret: sandbox_config.app_secret.clone(),
            verify_token: sandbox_config.verify_token.clone(),
        }
    } else {
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "the demo database exists but {} is missing; delete {} to start over",
                path.display(),
                args.data_dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?
    };
    creds.console_url = console_url.clone();
    creds.sandbox_url = sandbox_url.clone();
    creds.app_secret = sandbox_config.app_secret.clone();
    write_credentials(&path, &creds)?;

    let server = parley_server::Server::new(
        listener,
        engine.clone(),
        parley_server::ServerConfig {
            app_secret: sandbox_config.app_secret.clone(),
            verify_token: sandbox_config.verify_token.clone(),
            session_key: crate::session_key(&args.data_dir)?,
            secure_cookies: false,
            metrics_token: None,
            rate_limit: Default::default(),
        },
    );
    let mut workers = engine.spawn_workers(shutdown.clone());
    println!();
    println!("Parley demo is running (Ctrl-C stops it).");
    println!("  Console:     {console_url}");
    println!("  Login:       {} / {}", creds.email, creds.password);
    println!("  API token:   {}", creds.api_token);
    println!("  API docs:    {console_url}/api/docs");
    println!("  Sandbox:     {sandbox_url}  (Meta stand-in; control API under /sandbox/…)");
    println!("  Credentials: {}", path.display());
    println!();
    println!("Try it:");
    println!(
        "  curl -s {console_url}/api/v1/messages -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\",
        creds.api_token
    );
    println!(
        "    -d '{{\"to\":\"+4915110007919\",\"template\":{{\"name\":\"welcome\",\"language\":\"en\",\"variables\":{{\"first_name\":\"{{{{first_name|CapitalizeFirst|there}}}}\"}}}}}}'"
    );
    server.run(shutdown.clone()).await?;
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    let _ = sandbox_task.await;
    println!("Parley demo stopped.");
    Ok(())
}

/// The demo's Meta app secret (it signs the sandbox's webhooks and the code exchange):
/// random per data directory, made on the first run into `<data-dir>/demo-app-secret`
/// (mode 0600) and reused after, so no two demos share one.
fn demo_app_secret(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("demo-app-secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => {
            parley_store::files::tighten_file(&path)?;
            Ok(s.trim().to_owned())
        }
        Ok(_) => anyhow::bail!("{} is empty; delete it to get a new one", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = hex::encode(rand::random::<[u8; 16]>());
            crate::write_private(&path, &secret)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_credentials(path: &Path, creds: &DemoCredentials) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(creds)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).with_context(|| format!("cannot write {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// `parley serve --seed-demo N` (hidden; for tests that run `parley sandbox` and
/// `parley serve` as separate processes): on a database with no application yet, seeds the
/// demo account exactly as `parley demo` does (`Engine::seed_demo`: account, user, API token,
/// the sandbox's demo platform connected over `meta.graph_url`, N demo contacts) and writes
/// `<data_dir>/demo-credentials.json`. A database already seeded is left alone.
pub async fn seed_for_serve(
    engine: &Engine,
    config: &crate::config::Config,
    console_url: &str,
    contacts: usize,
) -> anyhow::Result<()> {
    if engine.has_applications().await? {
        return Ok(());
    }
    let seed = engine
        .seed_demo(
            &DemoPlatform {
                business_id: BusinessId::parse(demo_ids::BUSINESS_ID)?,
                waba_id: WabaId::parse(demo_ids::WABA_ID)?,
                access_token: demo_ids::ACCESS_TOKEN.into(),
            },
            contacts,
        )
        .await
        .map_err(|e| anyhow::anyhow!("seeding the demo failed: {e}"))?;
    std::fs::create_dir_all(&config.data_dir)?;
    write_credentials(
        &credentials_path(&config.data_dir),
        &DemoCredentials {
            console_url: console_url.to_owned(),
            email: seed.email,
            password: seed.password,
            api_token: seed.api_token,
            sandbox_url: config.meta.graph_url.clone(),
            app_id: config.meta.app_id.clone(),
            app_secret: config.meta.app_secret.clone(),
            verify_token: config.meta.verify_token.clone(),
        },
    )
}
