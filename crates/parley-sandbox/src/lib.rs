//! A local stand-in for Meta's WhatsApp Cloud API: Graph endpoints with Meta's shapes,
//! rules and error codes, signed status and inbound webhooks, a virtual clock and faults.
//!
//! It is deliberately independent of Parley's own crates (no shared wire types): a client
//! bug must show up here as Meta's error, exactly as it would in production. `parley demo`
//! embeds it, Parley's integration tests run against it over real HTTP, and Parley's users
//! test their own integrations against it.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use parley_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::new(SandboxConfig::demo());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! sandbox.serve(listener, shutdown).await
//! # }
//! ```
//!
//! The Graph surface is listed in the `graph` module docs; the control API (`/sandbox/…`,
//! virtual clock, simulated customers, faults, recorded sends, delivery log) in the
//! `control` module docs; Embedded Signup (JS SDK stand-in at `/sdk.js`, the dialog, codes,
//! `/sandbox/signup`, reviews and limits) in the `sdk`, `dialog` and `signup` module docs.

mod analytics;
mod billing;
mod clock;
mod coexist;
mod config;
mod consent;
mod control;
mod dialog;
mod errors;
mod fields;
mod graph;
mod limits;
mod media;
mod onboarding;
mod sdk;
mod send;
mod signup;
mod state;
mod templates;
mod uploads;
mod users;
mod validate;
mod verification;
mod webhooks;
mod zones;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{
    Behaviour, BusinessSeed, PhoneSeed, SandboxConfig, WabaSeed, demo_ids, demo_templates,
};
pub use errors::{GraphError, http_status, title};
pub use state::{
    CallFault, DeliveryRecord, Faults, RateRefusals, RecordedMessage, RequestRecord, StatusStamp,
};
pub use webhooks::signature;

use clock::VirtualClock;
use state::State;

/// The emulator. Cheap to clone: every clone shares one state.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    clock: VirtualClock,
    /// Wakes the webhook dispatcher before its next tick (clock advanced, inbound queued).
    wake: Notify,
    http: reqwest::Client,
}

impl Inner {
    /// The state lock. A panic while holding it cannot leave the state half-updated in a way
    /// that matters more than stopping the sandbox would, so poisoning is ignored.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").finish_non_exhaustive()
    }
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Sandbox {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Sandbox {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(config)),
                clock: VirtualClock::default(),
                wake: Notify::new(),
                http,
            }),
        }
    }

    /// The Graph API (any path not under `/sandbox/`) and the `/sandbox/` control API.
    /// Webhooks only flow while [`Sandbox::spawn_dispatcher`] (or [`Sandbox::serve`]) runs.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/sandbox/clock", get(control::clock))
            .route("/sandbox/clock/advance", post(control::advance_clock))
            .route("/sandbox/clock/freeze", post(control::freeze_clock))
            .route("/sandbox/clock/unfreeze", post(control::unfreeze_clock))
            .route("/sandbox/inbound", post(control::inbound))
            .route("/sandbox/media", post(media::upload))
            .route("/whatsapp_business/attachments/", get(media::download))
            .route(
                "/sandbox/users/{phone}",
                get(users::get_user).post(users::set_user),
            )
            .route(
                "/sandbox/users/{phone}/change_number",
                post(users::change_number),
            )
            .route(
                "/sandbox/users/{phone}/change_user_id",
                post(users::change_user_id),
            )
            .route(
                "/sandbox/faults",
                get(control::get_faults)
                    .post(control::set_faults)
                    .delete(control::clear_faults),
            )
            .route(
                "/sandbox/behaviour",
                get(control::get_behaviour).post(control::set_behaviour),
            )
            .route("/sandbox/messages", get(control::messages))
            .route("/sandbox/reads", get(control::reads))
            .route("/sandbox/messages/{wamid}", get(control::message))
            .route("/sandbox/requests", get(control::requests))
            .route("/sandbox/throughput", get(control::throughput))
            .route("/sandbox/webhooks", get(control::webhooks))
            .route("/sandbox/webhook_url", post(control::set_webhook_url))
            .route("/sandbox/state", get(control::state))
            .route("/sandbox/reset", post(control::reset))
            .route("/sandbox/violations", get(limits::violations))
            .route("/sandbox/user_preferences", post(consent::user_preferences))
            .route("/sandbox/marketing_cap", post(consent::marketing_cap))
            .route("/sandbox/pacing", post(consent::pacing))
            .route("/sandbox/pacing/release", post(consent::release))
            .route(
                "/sandbox/wabas/{id}/marketing",
                post(consent::waba_marketing),
            )
            .route("/sandbox/pricing", post(consent::set_pricing))
            .route("/sandbox/billing", get(billing::get_billing))
            .route(
                "/sandbox/rates",
                get(billing::get_rates).post(billing::set_rates),
            )
            .route("/sandbox/consent", get(consent::get_consent))
            .route(
                "/sandbox/templates/{id}/status",
                post(control::set_template_status),
            )
            .route("/sandbox/signup", post(signup::signup))
            .route("/sandbox/review", post(signup::review))
            .route(
                "/sandbox/phone_numbers/{id}/limit",
                post(signup::phone_limit),
            )
            .route("/sandbox/coexistence/{id}", get(coexist::show))
            .route(
                "/sandbox/coexistence/{id}/app_message",
                post(coexist::app_message),
            )
            .route(
                "/sandbox/coexistence/{id}/contacts",
                post(coexist::contacts),
            )
            .route(
                "/sandbox/coexistence/{id}/offboard",
                post(coexist::offboard),
            )
            .route(
                "/sandbox/coexistence/{id}/reconnect",
                post(coexist::reconnect),
            )
            .route(
                "/sandbox/phone_numbers/{id}/code",
                get(verification::sent_code),
            )
            .route("/sandbox/signups", get(verification::signups))
            .route("/sdk.js", get(sdk::sdk))
            .route("/en_US/sdk.js", get(sdk::sdk))
            .route("/dialog/embedded_signup", get(dialog::open))
            .route(
                "/dialog/embedded_signup/{session}",
                get(dialog::show).post(dialog::submit),
            )
            .route(
                "/dialog/embedded_signup/{session}/finish",
                post(dialog::finish),
            )
            .merge(uploads::routes())
            .fallback(graph::handle)
            .with_state(self.clone())
    }

    /// Serves HTTP on `listener` and runs the webhook dispatcher until `shutdown`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let dispatcher = self.spawn_dispatcher(shutdown.clone());
        let router = self.router();
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        let _ = dispatcher.await;
        served
    }

    /// Runs the webhook dispatcher alone, for callers that mount [`Sandbox::router`] in
    /// their own server. Stops when `shutdown` is cancelled.
    pub fn spawn_dispatcher(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(webhooks::run_dispatcher(inner, shutdown))
    }

    pub fn set_webhook_url(&self, url: Option<String>) {
        self.inner.lock().config.webhook_url = url;
    }

    /// The current configuration (behaviour and webhook URL as changed at run time).
    pub fn config(&self) -> SandboxConfig {
        self.inner.lock().config.clone()
    }

    /// Moves the virtual clock forward and wakes the dispatcher.
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.inner
            .clock
            .advance_ms(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
        self.inner.wake.notify_one();
    }

    /// Stops virtual time; only [`Sandbox::advance_clock`] moves it until unfrozen.
    pub fn freeze_clock(&self) {
        self.inner.clock.freeze();
    }

    pub fn unfreeze_clock(&self) {
        self.inner.clock.unfreeze();
        self.inner.wake.notify_one();
    }

    /// Virtual now, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.inner.clock.now_secs()
    }

    /// Every accepted send so far, in acceptance order.
    pub fn messages(&self) -> Vec<RecordedMessage> {
        self.inner.lock().messages.iter().cloned().collect()
    }

    /// Every Graph call received so far, accepted or refused, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.lock().requests.entries.iter().cloned().collect()
    }

    /// Sends refused by the throughput (130429) and pair-rate (131056) rules, per number.
    pub fn rate_refusals(&self) -> std::collections::BTreeMap<String, RateRefusals> {
        self.inner.lock().requests.rate_refusals.clone()
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: Faults) {
        self.inner.lock().faults = faults;
    }
}
