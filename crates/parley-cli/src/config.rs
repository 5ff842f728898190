//! `parley serve` configuration: embedded defaults → `parley.toml` → `PARLEY_*` environment.
//! Secrets are never printed (Debug redacts them).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// A retention in days; 0 keeps.
fn days(n: u32) -> Option<std::time::Duration> {
    (n > 0).then(|| std::time::Duration::from_secs(u64::from(n) * 86_400))
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the master key (and, for SQLite, the database) live.
    pub data_dir: PathBuf,
    pub listen: String,
    /// The address people and Meta reach Parley at, e.g. `https://parley.example.com`
    /// (webhooks go to `<public_url>/webhooks/whatsapp`; https makes console cookies Secure).
    pub public_url: String,
    /// What this node does: `api` (HTTP and webhook intake, no workers), `worker` (the
    /// workers; only health, readiness and metrics over HTTP) or `all`.
    pub role: String,
    /// How long a worker node's leases (a number's sender loop, the planner, each periodic
    /// job) last without renewal, in milliseconds: a stopped node's work is taken over about
    /// this long after its last renewal.
    pub node_lease_ms: u64,
    pub database: DatabaseConfig,
    pub meta: MetaConfig,
    pub metrics: MetricsConfig,
    pub api: ApiConfig,
    pub audit: AuditConfig,
    pub workers: WorkersConfig,
    pub media: MediaConfig,
    pub events: EventsConfig,
    pub webhooks: WebhooksConfig,
    pub imports: ImportsConfig,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ImportsConfig {
    /// Finished contact imports (their reports and rejected rows) are deleted this many days
    /// after they were last written (hourly; the contacts they wrote stay); an interrupted
    /// import not resumed by then goes too. 0 keeps them.
    pub retention_days: u32,
}

impl Default for ImportsConfig {
    fn default() -> Self {
        ImportsConfig { retention_days: 30 }
    }
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Webhooks received from Meta are deleted this many days after they were applied
    /// (hourly; their content lives on in messages, contacts and the inbox); 0 keeps them.
    pub retention_days: u32,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig { retention_days: 30 }
    }
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// How often an idle worker (sender loop, webhook processor, campaign planner) looks for
    /// work no wake-up announced, in milliseconds. Wake-ups (in process on SQLite,
    /// `LISTEN/NOTIFY` between nodes on PostgreSQL) normally come first; this is the fallback.
    pub fallback_poll_ms: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            fallback_poll_ms: 1_000,
        }
    }
}

/// Event webhooks to the business's systems (`parley_engine::events`).
#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// How long a delivery is retried before it is given up.
    pub retry_period_hours: u32,
    /// An endpoint whose deliveries all failed for this long is disabled with a notice.
    pub disable_after_hours: u32,
    /// Deliveries in flight at once (per worker node).
    pub concurrency: u32,
    /// Per delivery request: connect, send, answer.
    pub timeout_secs: u32,
    /// Endpoints may be `http://` and on this machine (development only).
    pub allow_loopback: bool,
    /// Endpoints may be in private networks (10/8, 192.168/16, link-local, …).
    pub allow_private_targets: bool,
    /// Events whose deliveries are all done are deleted (with their deliveries and
    /// attempts) after this many days (hourly); 0 keeps them. A replay reaches this far back.
    pub retention_days: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retry_period_hours: 72,
            disable_after_hours: 120,
            concurrency: 16,
            timeout_secs: 15,
            allow_loopback: false,
            allow_private_targets: false,
            retention_days: 30,
        }
    }
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Requests per second each API token may make on average (`429 rate_limited` beyond).
    pub rate_limit_per_second: u32,
    /// How many requests a token may make at once above that rate.
    pub rate_limit_burst: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            rate_limit_per_second: 50,
            rate_limit_burst: 100,
        }
    }
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Audit log entries older than this many days are deleted (hourly).
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: 365,
        }
    }
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The largest inbound media kept, in megabytes (larger ones are refused, with the
    /// reason shown on the message).
    pub max_mb: u64,
    /// Inbound media files older than this many days are removed (the message stays); 0
    /// keeps them.
    pub retention_days: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            max_mb: 100,
            retention_days: 0,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`; empty leaves it
    /// open (fine when only the scraper can reach the port).
    pub token: String,
}

#[derive(Deserialize, Serialize, Clone, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://user:password@host/db`; empty means `<data_dir>/parley.db`.
    pub url: String,
    /// The longest a segment count or preview may run before it is stopped (seconds; 10 when
    /// unset).
    pub filter_timeout_secs: Option<u64>,
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct MetaConfig {
    pub graph_url: String,
    pub graph_version: String,
    pub app_id: String,
    pub app_secret: String,
    pub verify_token: String,
    /// Embedded Signup configuration id (Facebook Login for Business).
    pub config_id: String,
    /// Meta's JS SDK, loaded by the console's Log in with Facebook button.
    pub sdk_url: String,
    /// Where the Embedded Signup dialog's messages may come from: a domain whose
    /// subdomains are accepted (`facebook.com`) or an exact origin (`https://…`).
    pub message_origin: String,
    /// A system-user token of your business with access to your customers' WABAs: lets
    /// Meta's `PARTNER_ADDED` webhook connect a WABA whose sign-up never reached Parley
    /// (closed tab, blocked popup, a sign-up started elsewhere). Empty: such webhooks are
    /// only logged.
    pub system_user_token: String,
    /// The application (`app_…`) that owns platforms created from `PARTNER_ADDED` alone.
    pub partner_signup_application: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./parley-data"),
            listen: "127.0.0.1:8080".into(),
            public_url: String::new(),
            role: "all".into(),
            node_lease_ms: u64::try_from(parley_engine::DEFAULT_NODE_LEASE.as_millis())
                .unwrap_or(10_000),
            database: DatabaseConfig::default(),
            meta: MetaConfig::default(),
            metrics: MetricsConfig::default(),
            api: ApiConfig::default(),
            audit: AuditConfig::default(),
            workers: WorkersConfig::default(),
            media: MediaConfig::default(),
            events: EventsConfig::default(),
            webhooks: WebhooksConfig::default(),
            imports: ImportsConfig::default(),
        }
    }
}

impl Default for MetaConfig {
    fn default() -> Self {
        MetaConfig {
            graph_url: "https://graph.facebook.com".into(),
            graph_version: parley_meta::DEFAULT_GRAPH_VERSION.into(),
            app_id: String::new(),
            app_secret: String::new(),
            verify_token: String::new(),
            config_id: String::new(),
            sdk_url: parley_engine::onboarding::PRODUCTION_SDK_URL.into(),
            message_origin: parley_engine::onboarding::PRODUCTION_MESSAGE_ORIGIN.into(),
            system_user_token: String::new(),
            partner_signup_application: String::new(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("role", &self.role)
            .field("node_lease_ms", &self.node_lease_ms)
            .field("database.url", &redact_url(&self.database.url))
            .field("meta.graph_url", &self.meta.graph_url)
            .field("meta.app_id", &self.meta.app_id)
            .field("meta.app_secret", &"<redacted>")
            .field("meta.config_id", &self.meta.config_id)
            .field(
                "metrics.token",
                &if self.metrics.token.is_empty() {
                    "<none>"
                } else {
                    "<redacted>"
                },
            )
            .finish_non_exhaustive()
    }
}

fn redact_url(url: &str) -> String {
    // postgres://user:password@host → postgres://user:***@host
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Config {
    /// For `serve`: everything, validated.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let config = Self::load_unchecked(path)?;
        config.validate()?;
        Ok(config)
    }

    /// For database commands (`migrate`, `token`), which need no Meta secrets.
    pub fn load_unchecked(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| {
                    format!("cannot read the configuration file {}", p.display())
                })?;
                toml::from_str(&text).with_context(|| {
                    format!("{} is not a valid Parley configuration", p.display())
                })?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok());
        Ok(config)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let set = |target: &mut String, key: &str| {
            if let Some(v) = get(key) {
                *target = v;
            }
        };
        if let Some(v) = get("PARLEY_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        set(&mut self.listen, "PARLEY_LISTEN");
        set(&mut self.public_url, "PARLEY_PUBLIC_URL");
        set(&mut self.role, "PARLEY_ROLE");
        if let Some(v) = get("PARLEY_NODE_LEASE_MS").and_then(|v| v.trim().parse().ok()) {
            self.node_lease_ms = v;
        }
        set(&mut self.database.url, "PARLEY_DATABASE_URL");
        set(&mut self.meta.graph_url, "PARLEY_META_GRAPH_URL");
        set(&mut self.meta.graph_version, "PARLEY_META_GRAPH_VERSION");
        set(&mut self.meta.app_id, "PARLEY_META_APP_ID");
        set(&mut self.meta.app_secret, "PARLEY_META_APP_SECRET");
        set(&mut self.meta.verify_token, "PARLEY_META_VERIFY_TOKEN");
        set(&mut self.meta.config_id, "PARLEY_META_CONFIG_ID");
        set(&mut self.meta.sdk_url, "PARLEY_META_SDK_URL");
        set(&mut self.meta.message_origin, "PARLEY_META_MESSAGE_ORIGIN");
        set(
            &mut self.meta.system_user_token,
            "PARLEY_META_SYSTEM_USER_TOKEN",
        );
        set(
            &mut self.meta.partner_signup_application,
            "PARLEY_META_PARTNER_SIGNUP_APPLICATION",
        );
        set(&mut self.metrics.token, "PARLEY_METRICS_TOKEN");
        if let Some(v) =
            get("PARLEY_DATABASE_FILTER_TIMEOUT_SECS").and_then(|v| v.trim().parse().ok())
        {
            self.database.filter_timeout_secs = Some(v);
        }
        let number = |target: &mut u32, key: &str| {
            if let Some(v) = get(key).and_then(|v| v.trim().parse().ok()) {
                *target = v;
            }
        };
        number(
            &mut self.api.rate_limit_per_second,
            "PARLEY_API_RATE_LIMIT_PER_SECOND",
        );
        number(
            &mut self.api.rate_limit_burst,
            "PARLEY_API_RATE_LIMIT_BURST",
        );
        number(
            &mut self.audit.retention_days,
            "PARLEY_AUDIT_RETENTION_DAYS",
        );
        if let Some(v) = get("PARLEY_WORKERS_FALLBACK_POLL_MS").and_then(|v| v.trim().parse().ok())
        {
            self.workers.fallback_poll_ms = v;
        }
        number(
            &mut self.media.retention_days,
            "PARLEY_MEDIA_RETENTION_DAYS",
        );
        if let Some(v) = get("PARLEY_MEDIA_MAX_MB").and_then(|v| v.trim().parse().ok()) {
            self.media.max_mb = v;
        }
        number(
            &mut self.events.retry_period_hours,
            "PARLEY_EVENTS_RETRY_PERIOD_HOURS",
        );
        number(
            &mut self.events.disable_after_hours,
            "PARLEY_EVENTS_DISABLE_AFTER_HOURS",
        );
        number(&mut self.events.concurrency, "PARLEY_EVENTS_CONCURRENCY");
        number(
            &mut self.events.retention_days,
            "PARLEY_EVENTS_RETENTION_DAYS",
        );
        number(
            &mut self.webhooks.retention_days,
            "PARLEY_WEBHOOKS_RETENTION_DAYS",
        );
        number(
            &mut self.imports.retention_days,
            "PARLEY_IMPORTS_RETENTION_DAYS",
        );
        number(&mut self.events.timeout_secs, "PARLEY_EVENTS_TIMEOUT_SECS");
        // Any value but empty, `0`, `false`, `no` or `off` turns a switch on.
        let switch = |target: &mut bool, key: &str| {
            if let Some(v) = get(key) {
                *target = !matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "" | "0" | "false" | "no" | "off"
                );
            }
        };
        switch(
            &mut self.events.allow_loopback,
            "PARLEY_EVENTS_ALLOW_LOOPBACK",
        );
        switch(
            &mut self.events.allow_private_targets,
            "PARLEY_EVENTS_ALLOW_PRIVATE_TARGETS",
        );
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.rate_limit()?;
        if let Err(problem) = parley_meta::check_graph_version(&self.meta.graph_version) {
            bail!("meta.graph_version (or PARLEY_META_GRAPH_VERSION): {problem}");
        }
        self.node_role()?;
        if self.node_lease_ms < 300 {
            bail!("node_lease_ms (or PARLEY_NODE_LEASE_MS) must be at least 300");
        }
        if self.workers.fallback_poll_ms < 50 {
            bail!("workers.fallback_poll_ms must be at least 50");
        }
        if self.audit.retention_days == 0 {
            bail!("audit.retention_days must be at least 1");
        }
        if self.events.retry_period_hours == 0
            || self.events.disable_after_hours == 0
            || self.events.concurrency == 0
            || self.events.timeout_secs == 0
        {
            bail!(
                "events.retry_period_hours, events.disable_after_hours, events.concurrency and events.timeout_secs must be at least 1"
            );
        }
        if self.meta.app_secret.is_empty() {
            bail!(
                "meta.app_secret is not set: Parley needs your Meta app secret to check webhook signatures (set it in parley.toml or PARLEY_META_APP_SECRET)"
            );
        }
        if self.meta.verify_token.is_empty() {
            bail!(
                "meta.verify_token is not set: choose a random string and enter the same in Meta's webhook settings (parley.toml or PARLEY_META_VERIFY_TOKEN)"
            );
        }
        Ok(())
    }

    /// This node's role (`role`, `PARLEY_ROLE`, `--role`).
    pub fn node_role(&self) -> anyhow::Result<parley_engine::nodes::NodeRole> {
        parley_engine::nodes::NodeRole::parse(&self.role).with_context(|| {
            format!(
                "role `{}` is not a node role: use api, worker or all",
                self.role
            )
        })
    }

    /// Meta's app as onboarding and the console's Embedded Signup use it.
    pub fn meta_app(&self) -> parley_engine::MetaApp {
        parley_engine::MetaApp {
            app_id: self.meta.app_id.clone(),
            app_secret: self.meta.app_secret.clone(),
            config_id: self.meta.config_id.clone(),
            graph_version: self.meta.graph_version.clone(),
            sdk_url: self.meta.sdk_url.clone(),
            message_origin: self.meta.message_origin.clone(),
            system_user_token: Some(self.meta.system_user_token.clone()).filter(|t| !t.is_empty()),
            partner_signup_application: parley_domain::ApplicationId::parse(
                &self.meta.partner_signup_application,
            )
            .ok(),
        }
    }

    /// Each API token's rate limit.
    pub fn rate_limit(&self) -> anyhow::Result<parley_server::auth::RateLimit> {
        use std::num::NonZeroU32;
        match (
            NonZeroU32::new(self.api.rate_limit_per_second),
            NonZeroU32::new(self.api.rate_limit_burst),
        ) {
            (Some(per_second), Some(burst)) => {
                Ok(parley_server::auth::RateLimit { per_second, burst })
            }
            _ => bail!("api.rate_limit_per_second and api.rate_limit_burst must be at least 1"),
        }
    }

    /// The fallback poll of idle workers.
    pub fn fallback_poll(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.workers.fallback_poll_ms.max(50))
    }

    /// Inbound media: kept under `<data_dir>/media`, with the size cap and retention set.
    pub fn media(&self) -> parley_engine::MediaConfig {
        parley_engine::MediaConfig {
            dir: Some(self.data_dir.join("media")),
            max_bytes: self.media.max_mb.max(1).saturating_mul(1024 * 1024),
            retention: (self.media.retention_days > 0).then(|| {
                std::time::Duration::from_secs(u64::from(self.media.retention_days) * 86_400)
            }),
            ..parley_engine::MediaConfig::default()
        }
    }

    /// How long audit log entries are kept.
    pub fn audit_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.audit.retention_days.max(1)) * 86_400)
    }

    /// Event delivery as configured (`events.*`).
    pub fn events(&self) -> parley_engine::events::EventConfig {
        let hours = |h: u32| std::time::Duration::from_secs(u64::from(h.max(1)) * 3_600);
        parley_engine::events::EventConfig {
            retry_period: hours(self.events.retry_period_hours),
            disable_after: hours(self.events.disable_after_hours),
            concurrency: self.events.concurrency.max(1) as usize,
            timeout: std::time::Duration::from_secs(u64::from(self.events.timeout_secs.max(1))),
            allow_loopback: self.events.allow_loopback,
            allow_private_targets: self.events.allow_private_targets,
            retention: days(self.events.retention_days),
            ..parley_engine::events::EventConfig::default()
        }
    }

    /// How long applied webhooks are kept (`webhooks.retention_days`, 0: kept).
    pub fn webhook_retention(&self) -> Option<std::time::Duration> {
        days(self.webhooks.retention_days)
    }

    /// How long finished imports are kept (`imports.retention_days`, 0: kept).
    pub fn import_retention(&self) -> Option<std::time::Duration> {
        days(self.imports.retention_days)
    }

    /// The bearer token `/metrics` asks for, if any.
    pub fn metrics_token(&self) -> Option<String> {
        Some(self.metrics.token.trim().to_owned()).filter(|t| !t.is_empty())
    }

    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("parley.db").display())
        } else {
            self.database.url.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_secrets_stay_hidden() {
        let mut c: Config = toml::from_str(
            "listen = \"0.0.0.0:9000\"\n[meta]\napp_secret = \"s3cret\"\nverify_token = \"v\"\n",
        )
        .expect("parses");
        c.apply_env(|k| (k == "PARLEY_LISTEN").then(|| "127.0.0.1:1".to_owned()));
        assert_eq!(c.listen, "127.0.0.1:1");
        assert!(c.validate().is_ok());
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn the_metrics_token_comes_from_the_file_or_the_environment() {
        assert_eq!(Config::default().metrics_token(), None);
        let mut c: Config = toml::from_str("[metrics]\ntoken = \"from-file\"\n").expect("parses");
        assert_eq!(c.metrics_token().as_deref(), Some("from-file"));
        c.apply_env(|k| (k == "PARLEY_METRICS_TOKEN").then(|| "from-env".to_owned()));
        assert_eq!(c.metrics_token().as_deref(), Some("from-env"));
        assert!(!format!("{c:?}").contains("from-env"));
    }

    #[test]
    fn rate_limits_and_retention_come_from_the_file_or_the_environment() {
        let c = Config::default();
        let limit = c.rate_limit().expect("default");
        assert_eq!((limit.per_second.get(), limit.burst.get()), (50, 100));
        assert_eq!(c.audit_retention().as_secs(), 365 * 86_400);
        let mut c: Config = toml::from_str(
            "[api]\nrate_limit_per_second = 5\nrate_limit_burst = 7\n[audit]\nretention_days = 30\n",
        )
        .expect("parses");
        assert_eq!(c.rate_limit().expect("limit").burst.get(), 7);
        assert_eq!(c.audit_retention().as_secs(), 30 * 86_400);
        c.apply_env(|k| (k == "PARLEY_API_RATE_LIMIT_BURST").then(|| "0".to_owned()));
        assert!(c.rate_limit().is_err(), "a burst of 0 is refused");
        // Webhooks and events: 30 days unless told, 0 keeps them.
        let day = |n: u64| Some(std::time::Duration::from_secs(n * 86_400));
        assert_eq!(c.webhook_retention(), day(30));
        assert_eq!(c.events().retention, day(30));
        let mut c: Config =
            toml::from_str("[webhooks]\nretention_days = 0\n[events]\nretention_days = 7\n")
                .expect("parses");
        assert_eq!(
            (c.webhook_retention(), c.events().retention),
            (None, day(7))
        );
        c.apply_env(|k| (k == "PARLEY_WEBHOOKS_RETENTION_DAYS").then(|| "2".to_owned()));
        assert_eq!(c.webhook_retention(), day(2));
        // Imports: 30 days unless told, 0 keeps them.
        assert_eq!(c.import_retention(), day(30));
        c.apply_env(|k| (k == "PARLEY_IMPORTS_RETENTION_DAYS").then(|| "0".to_owned()));
        assert_eq!(c.import_retention(), None);
    }

    #[test]
    fn unknown_keys_and_missing_secret_are_refused() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
        assert!(Config::default().validate().is_err());
    }

    /// Every key of the configuration, dotted (`database.url`), with its value as text.
    fn keys(c: &Config) -> std::collections::BTreeMap<String, String> {
        fn walk(
            prefix: &str,
            v: &toml::Value,
            out: &mut std::collections::BTreeMap<String, String>,
        ) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let key = match prefix.is_empty() {
                            true => k.clone(),
                            false => format!("{prefix}.{k}"),
                        };
                        walk(&key, v, out);
                    }
                }
                other => {
                    out.insert(prefix.to_owned(), other.to_string());
                }
            }
        }
        let mut out = std::collections::BTreeMap::new();
        walk("", &toml::Value::try_from(c).expect("serializes"), &mut out);
        out
    }

    #[test]
    fn every_key_is_in_deploy_md_with_its_variable() {
        let deploy = include_str!("../../../docs/DEPLOY.md");
        let mut all = Config::default();
        all.database.filter_timeout_secs = Some(10);
        let before = keys(&all);
        assert!(before.len() >= 18, "{before:?}");
        for key in before.keys() {
            let env = format!("PARLEY_{}", key.replace('.', "_").to_uppercase());
            assert!(
                deploy.contains(&format!("| `{key}` | `{env}` |")),
                "docs/DEPLOY.md has no row for `{key}` with `{env}`"
            );
            // The variable sets that key.
            let mut c = all.clone();
            c.apply_env(|k| (k == env).then(|| "7".to_owned()));
            let after = keys(&c);
            assert_ne!(after[key], before[key], "{env} does not set `{key}`");
        }
    }

    #[test]
    fn the_role_comes_from_the_file_or_the_environment() {
        assert_eq!(
            Config::default().node_role().expect("default"),
            parley_engine::nodes::NodeRole::All
        );
        let mut c: Config = toml::from_str("role = \"worker\"\n").expect("parses");
        assert_eq!(
            c.node_role().expect("worker"),
            parley_engine::nodes::NodeRole::Worker
        );
        c.apply_env(|k| (k == "PARLEY_ROLE").then(|| "api".to_owned()));
        assert_eq!(
            c.node_role().expect("api"),
            parley_engine::nodes::NodeRole::Api
        );
        c.role = "leader".into();
        assert!(c.node_role().is_err(), "an unknown role is refused");
    }

    #[test]
    fn one_graph_version_setting_defaults_to_the_current_version() {
        let mut c: Config =
            toml::from_str("[meta]\napp_secret = \"s\"\nverify_token = \"v\"\n").expect("parses");
        assert_eq!(c.meta.graph_version, "v27.0");
        assert_eq!(c.meta_app().graph_version, "v27.0");
        c.apply_env(|k| (k == "PARLEY_META_GRAPH_VERSION").then(|| "v21.0".to_owned()));
        assert!(c.validate().is_ok());
        assert_eq!(c.meta_app().graph_version, "v21.0");
        for bad in ["v20.0", "23.0", "latest"] {
            c.apply_env(|k| (k == "PARLEY_META_GRAPH_VERSION").then(|| bad.to_owned()));
            let err = c.validate().expect_err(bad).to_string();
            assert!(err.contains("meta.graph_version"), "{err}");
        }
    }

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://parley:pw@db:5432/parley"),
            "postgres://parley:***@db:5432/parley"
        );
    }
}
