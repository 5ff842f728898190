//! Platform setup after Embedded Signup. The dialog hands the page a code (alive 30 s) and the
//! WABA/number/portfolio ids; `signup` runs Meta's server-side steps in order, recording each:
//! exchange the code (no `redirect_uri`), `debug_token` (scopes; the WABA when the event lacks
//! it), subscribe the app to the WABA's webhooks, register the number with a generated PIN,
//! then read the portfolio, the WABA, its numbers and the business profile. A failed step is
//! retried on its own (`retry_onboarding`) without starting over. Meta's review decides the
//! platform's status afterwards, through webhooks (`apply_account_review` and the other
//! management-webhook handlers at the end of this file).
//!
//! The business token and the PIN are stored encrypted and never logged.

use parley_domain::{ApplicationId, BusinessId, PhoneNumberId, PlatformId, WabaId};
use parley_meta::webhook::fields;
use parley_meta::{
    AccountReviewValue, AccountUpdateValue, CapabilityValue, GraphError, LimitTier,
    PhoneNumberInfo, PhoneNumberNameValue, PhoneNumberQualityValue,
};
use parley_store::platforms::{
    NumberPatch, OnboardingRecord, OnboardingSecrets, OnboardingStep, new_onboarding_id,
};
use parley_store::{NewPlatform, PhoneNumberRecord, PlatformRecord};
use rand::Rng;
use serde_json::{Value, json};

use crate::{Engine, EngineError, ErrorKind};

/// Meta's app as onboarding and the console's Embedded Signup button use it. Debug hides the
/// secret.
#[derive(Clone, Default)]
pub struct MetaApp {
    pub app_id: String,
    pub app_secret: String,
    /// The Facebook Login for Business configuration ("WhatsApp Embedded Signup").
    pub config_id: String,
    /// The Graph version the JS SDK is initialised with.
    pub graph_version: String,
    /// Meta's JS SDK (`https://connect.facebook.net/en_US/sdk.js`; the sandbox's stand-in in
    /// the demo).
    pub sdk_url: String,
    /// Where the dialog's `message` events may come from: an exact origin
    /// (`http://127.0.0.1:9090`) or a domain whose subdomains are accepted (`facebook.com`).
    pub message_origin: String,
    /// A system-user token of the partner's business with access to the WABAs customers
    /// share (Business Settings › System users). With `partner_signup_application` it lets
    /// Meta's `PARTNER_ADDED` webhook onboard a WABA whose sign-up never reached Parley.
    pub system_user_token: Option<String>,
    /// The application that owns platforms created from `PARTNER_ADDED` alone.
    pub partner_signup_application: Option<ApplicationId>,
}

impl std::fmt::Debug for MetaApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaApp")
            .field("app_id", &self.app_id)
            .field("app_secret", &"<redacted>")
            .field("config_id", &self.config_id)
            .field("graph_version", &self.graph_version)
            .field("sdk_url", &self.sdk_url)
            .field("message_origin", &self.message_origin)
            .field(
                "system_user_token",
                &self.system_user_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "partner_signup_application",
                &self.partner_signup_application,
            )
            .finish()
    }
}

pub const PRODUCTION_SDK_URL: &str = "https://connect.facebook.net/en_US/sdk.js";
pub const PRODUCTION_MESSAGE_ORIGIN: &str = "facebook.com";

/// Embedded Signup's server-side steps, in the order they run. Each has its own function
/// (`Engine::run_step`), its own rule for a retry ([`Step::retry`]) and its own reading of
/// Meta's refusals ([`Step::failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The dialog's code (alive 30 s) becomes the business token.
    ExchangeCode,
    /// `debug_token`: the token is valid, has the WhatsApp scopes, and names the WABA.
    DebugToken,
    /// Webhooks for the WABA come to this app.
    SubscribeApp,
    /// The sign-up's number: the one the dialog named, else the WABA's (a coexistence finish
    /// names none). Without any, the platform waits for "Add a number".
    FindNumber,
    /// The number is verified (`code_verification_status`); an unverified one waits for the
    /// code Meta sends by SMS or voice, typed in Parley.
    VerifyNumber,
    /// The number joins the Cloud API, with a PIN Parley keeps (encrypted) for later.
    RegisterPhone,
    /// The business portfolio's name.
    ReadBusiness,
    /// The WABA: name, review status and the rest of its details.
    ReadWaba,
    /// Every number of the WABA.
    ReadPhoneNumbers,
    /// Coexistence: the WhatsApp Business app's contacts (`smb_app_data`, once, within 24 h).
    SyncContacts,
    /// Coexistence: the app's chat history (`smb_app_data`, once, within 24 h).
    SyncHistory,
    /// The business profile of the sign-up's number.
    ReadProfile,
}

/// What a retry does with a step that did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Runs it again, with what the session kept (token, ids, the PIN).
    Again,
    /// Cannot run it again: Meta's sign-up code works once, so only a new sign-up can.
    NewSignup,
}

impl Step {
    pub const ALL: [Step; 12] = [
        Step::ExchangeCode,
        Step::DebugToken,
        Step::SubscribeApp,
        // Early, so a platform waiting for its number already shows its company.
        Step::ReadBusiness,
        Step::FindNumber,
        Step::VerifyNumber,
        Step::RegisterPhone,
        Step::ReadWaba,
        Step::ReadPhoneNumbers,
        Step::SyncContacts,
        Step::SyncHistory,
        Step::ReadProfile,
    ];

    /// The name the store records (and sorts by), the console shows and the tests read.
    pub const fn name(self) -> &'static str {
        match self {
            Step::ExchangeCode => "exchange_code",
            Step::DebugToken => "debug_token",
            Step::SubscribeApp => "subscribe_app",
            Step::FindNumber => "find_number",
            Step::VerifyNumber => "verify_number",
            Step::RegisterPhone => "register_phone",
            Step::ReadBusiness => "read_business",
            Step::ReadWaba => "read_waba",
            Step::ReadPhoneNumbers => "read_phone_numbers",
            Step::SyncContacts => "sync_contacts",
            Step::SyncHistory => "sync_history",
            Step::ReadProfile => "read_profile",
        }
    }

    pub fn retry(self) -> Retry {
        match self {
            Step::ExchangeCode => Retry::NewSignup,
            _ => Retry::Again,
        }
    }

    /// Turns Meta's refusal of this step into the API's failure: Meta's code, what it means
    /// for this step and what to do.
    pub fn failure(self, e: &GraphError) -> EngineError {
        if e.code().is_none() {
            return EngineError::new(
                ErrorKind::Upstream,
                "meta_unavailable",
                format!("Meta did not answer the `{self}` step ({e}). Retry in a moment."),
            );
        }
        let lower = e.to_string().to_lowercase();
        let (code_name, message): (&'static str, String) = match (self, e.code()) {
            (Step::ExchangeCode, Some(100)) if lower.contains("expired") => (
                "signup_code_expired",
                "The sign-up code expired before Parley could exchange it (Meta's codes live 30 seconds). Click Log in with Facebook again.".into(),
            ),
            (Step::ExchangeCode, Some(100)) if lower.contains("used") => (
                "signup_code_used",
                "This sign-up code was already exchanged; each code works once. Click Log in with Facebook again.".into(),
            ),
            (Step::ExchangeCode, Some(1 | 101)) => (
                "meta_app_misconfigured",
                format!("Meta refused Parley's app id or app secret ({e}). Check meta.app_id and meta.app_secret."),
            ),
            (Step::ExchangeCode, _) => (
                "code_exchange_failed",
                format!("Meta refused to exchange the sign-up code ({e}). Click Log in with Facebook again."),
            ),
            (Step::SubscribeApp, _) => (
                "webhook_subscription_failed",
                format!("Meta refused to subscribe Parley to this WhatsApp Business Account's webhooks ({e}). Without it no statuses or replies arrive. Retry the failed step."),
            ),
            (Step::FindNumber, _) => (
                "meta_read_failed",
                format!("Parley could not read the WhatsApp Business Account's phone numbers from Meta ({e}). Retry the failed step."),
            ),
            (Step::VerifyNumber, Some(136025)) => (
                "verification_code_wrong",
                format!("Meta did not accept the code ({e}). Check the code you received, or ask for a new one (by text message or call) and enter that."),
            ),
            (Step::VerifyNumber, Some(136024)) => (
                "verification_code_refused",
                format!("Meta would not send a code now ({e}). Wait a while (Meta limits codes per hour), then ask for a new one."),
            ),
            (Step::VerifyNumber, Some(100)) => (
                "verification_failed",
                format!("Meta refused the request ({e}). Check the phone number and the code, then try again."),
            ),
            (Step::VerifyNumber, _) => (
                "verification_failed",
                format!("Meta could not verify the number ({e}). Try again, or ask for a new code."),
            ),
            (Step::RegisterPhone, Some(133006)) => (
                "number_not_verified",
                format!("Meta will not register the number before it is verified ({e}). Ask for a code on the platform page, enter it, and Parley registers the number."),
            ),
            (Step::RegisterPhone, Some(133016)) => (
                "registration_limit_reached",
                format!("Meta allows 10 registration attempts per number in 72 hours and this number has reached them ({e}). Retry the failed step once the 72 hours have passed."),
            ),
            (Step::RegisterPhone, Some(133005)) => (
                "registration_pin_mismatch",
                format!("The number has two-step verification with another PIN ({e}). Turn off two-step verification for it in WhatsApp Manager, then retry the failed step."),
            ),
            (Step::RegisterPhone, _) => (
                "phone_registration_failed",
                format!("Meta refused to register the phone number for the Cloud API ({e}). Retry the failed step."),
            ),
            (Step::DebugToken, _) => (
                "business_token_invalid",
                format!("Meta did not confirm the business token ({e}). Click Log in with Facebook again."),
            ),
            (Step::SyncContacts | Step::SyncHistory, _) => (
                "coexistence_sync_failed",
                format!("Meta refused the WhatsApp Business app sync in step `{self}` ({e}). Each sync works once, within 24 hours of onboarding."),
            ),
            (Step::ReadBusiness | Step::ReadWaba | Step::ReadPhoneNumbers | Step::ReadProfile, _) => (
                "meta_read_failed",
                format!("Parley could not read the account from Meta in step `{self}` ({e}). Retry the failed step."),
            ),
        };
        EngineError::new(ErrorKind::Unprocessable, code_name, message)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The step names, in the order the steps run.
pub const STEPS: [&str; Step::ALL.len()] = {
    let mut names = [""; Step::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Step::ALL[i].name();
        i += 1;
    }
    names
};

/// How a step ended.
#[derive(Debug)]
enum StepEnd {
    Done,
    /// Nothing to do for this sign-up; the reason is recorded with the step.
    Skipped(String),
    /// The step needs the person (add a number, type a code): the run stops without a
    /// failure, the platform shows what to do, and the action resumes the run.
    Waiting(String),
    /// The step stopped the onboarding (Meta's error code when Meta refused).
    Failed(Option<i64>, EngineError),
}

impl StepEnd {
    /// Meta refused `step`.
    fn refused(step: Step, e: &GraphError) -> StepEnd {
        StepEnd::Failed(e.code(), step.failure(e))
    }

    fn from_read<T>(step: Step, read: Result<T, GraphError>) -> StepEnd {
        match read {
            Ok(_) => StepEnd::Done,
            Err(e) => StepEnd::refused(step, &e),
        }
    }
}

/// One run of an onboarding session: what its steps read and change.
struct OnboardingRun<'a> {
    session: OnboardingRecord,
    secrets: OnboardingSecrets,
    meta: MetaApp,
    /// The dialog's code; `None` on a retry (a code works once).
    code: Option<&'a str>,
    /// Meta says the number runs the WhatsApp Business app (coexistence): never registered.
    on_biz_app: bool,
    /// `find_number` chose a number the dialog did not name, and Meta lists it registered
    /// already (`CONNECTED`): registering it again could only fail on its two-step PIN.
    found_registered: bool,
}

impl OnboardingRun<'_> {
    /// Done before (or skipped): a retry does not run it again.
    fn done(&self, step: Step) -> bool {
        self.session
            .steps
            .iter()
            .any(|r| r.step == step.name() && r.state != "failed" && r.state != "waiting")
    }

    /// The business token (every step after `exchange_code` runs only when it is held).
    fn token(&self) -> &str {
        self.secrets.access_token.as_deref().unwrap_or_default()
    }

    fn waba_id(&self) -> &str {
        self.session.waba_id.as_ref().map_or("", |w| w.as_str())
    }

    /// Why `step` cannot run in this run, and the step to record the failure on: a step that
    /// needs a new sign-up on a retry, or the business token gone (the platform was
    /// disconnected meanwhile).
    fn blocker(&self, step: Step) -> Option<(Step, EngineError)> {
        if step.retry() == Retry::NewSignup && self.code.is_none() {
            return Some((
                step,
                EngineError::new(
                    ErrorKind::Conflict,
                    "signup_again",
                    "The sign-up code could not be exchanged and cannot be reused. Click Log in with Facebook again.",
                ),
            ));
        }
        if step != Step::ExchangeCode && self.secrets.access_token.is_none() {
            return Some((
                Step::ExchangeCode,
                EngineError::new(
                    ErrorKind::Conflict,
                    "signup_again",
                    "Parley no longer holds this sign-up's business token (the platform was disconnected). Click Log in with Facebook again.",
                ),
            ));
        }
        None
    }
}

/// The platform statuses.
pub mod status {
    /// Onboarding has not finished (or a step failed and waits for a retry).
    pub const SETTING_UP: &str = "setting_up";
    pub const PENDING_REVIEW: &str = "pending_review";
    pub const ACTIVE: &str = "active";
    pub const REJECTED: &str = "rejected";
    pub const RESTRICTED: &str = "restricted";
    pub const DISCONNECTED: &str = "disconnected";
}

/// What the dialog handed the page. Debug hides the code.
#[derive(Clone, Default)]
pub struct SignupRequest {
    pub code: String,
    pub waba_id: Option<String>,
    pub phone_number_id: Option<String>,
    pub business_id: Option<String>,
    /// The finish event (`FINISH`, `FINISH_ONLY_WABA`, `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING`…).
    pub event: Option<String>,
}

impl std::fmt::Debug for SignupRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupRequest")
            .field("code", &"<redacted>")
            .field("waba_id", &self.waba_id)
            .field("phone_number_id", &self.phone_number_id)
            .field("business_id", &self.business_id)
            .field("event", &self.event)
            .finish()
    }
}

/// How an onboarding run ended: the session with its steps, the platform once it exists, and
/// the failure that stopped it (retry the failed step with `retry_onboarding`).
#[derive(Debug, Clone)]
pub struct SignupOutcome {
    pub session: OnboardingRecord,
    pub platform_id: Option<PlatformId>,
    pub failure: Option<EngineError>,
}

/// What a disconnect did at Meta.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DisconnectReport {
    pub unsubscribed: bool,
    pub deregistered: Vec<PhoneNumberId>,
    /// Meta calls that failed; the platform is disconnected in Parley regardless.
    pub warnings: Vec<String>,
}

fn not_found(platform: &PlatformId) -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "platform_not_found",
        format!(
            "this application has no platform `{platform}`; list them with GET /api/v1/platforms"
        ),
    )
}

fn generate_pin() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

fn mps_for(level: Option<&str>) -> u32 {
    // Meta names only STANDARD (80 mps); upgraded numbers reach 1,000.
    match level {
        None | Some("STANDARD") => 80,
        Some(_) => 1000,
    }
}

fn is_coexistence(event: Option<&str>) -> bool {
    event.is_some_and(|e| e.contains("WHATSAPP_BUSINESS_APP_ONBOARDING"))
}

impl Engine {
    fn meta_app_ready(&self) -> Result<&MetaApp, EngineError> {
        let app = &self.config.meta_app;
        if app.app_id.is_empty() || app.app_secret.is_empty() {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "meta_app_not_configured",
                "Parley has no Meta app configured: set meta.app_id, meta.app_secret and meta.config_id in parley.toml",
            ));
        }
        Ok(app)
    }

    /// Runs Embedded Signup's server-side steps for a code the dialog just handed over.
    pub async fn signup(
        &self,
        app: &ApplicationId,
        request: SignupRequest,
    ) -> Result<SignupOutcome, EngineError> {
        self.meta_app_ready()?;
        let code = request.code.trim().to_owned();
        if code.is_empty() {
            return Err(EngineError::bad_request(
                "code_required",
                "`code` is the code FB.login's callback received (authResponse.code)",
            )
            .field("code"));
        }
        let clean = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        for (field, value) in [
            ("waba_id", &request.waba_id),
            ("phone_number_id", &request.phone_number_id),
            ("business_id", &request.business_id),
        ] {
            // Meta's ids are at most 32 digits (`PhoneNumberId::parse` and its kin).
            if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty())
                && (!v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 32)
            {
                return Err(EngineError::bad_request(
                    "invalid_id",
                    format!("`{field}` is one of Meta's numeric ids, as the WA_EMBEDDED_SIGNUP event gives it"),
                )
                .field(field));
            }
        }
        let now = self.now();
        let session = OnboardingRecord {
            id: new_onboarding_id(),
            application_id: app.clone(),
            platform_id: None,
            event: clean(request.event),
            // Checked above: each is digits, so it parses.
            business_id: clean(request.business_id).and_then(|s| BusinessId::parse(&s).ok()),
            waba_id: clean(request.waba_id).and_then(|s| WabaId::parse(&s).ok()),
            phone_number_id: clean(request.phone_number_id)
                .and_then(|s| PhoneNumberId::parse(&s).ok()),
            state: "running".into(),
            failed_step: None,
            created_at: now,
            updated_at: now,
            steps: Vec::new(),
        };
        // Refused before the code is exchanged: nothing changes at Meta or here.
        if let Some(taken) = self
            .held_elsewhere(
                app,
                session.waba_id.as_ref(),
                session.phone_number_id.as_ref(),
            )
            .await?
        {
            return Err(taken);
        }
        self.store.save_onboarding(&session).await?;
        tracing::info!(session = %session.id, waba = ?session.waba_id, "embedded signup started");
        let _guard = match session.waba_id.clone() {
            Some(waba) => Some(self.waba_lock(&waba).await),
            None => None,
        };
        self.run_onboarding(session, Some(&code)).await
    }

    /// Runs a failed onboarding again from its failed step.
    pub async fn retry_onboarding(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
    ) -> Result<SignupOutcome, EngineError> {
        self.meta_app_ready()?;
        self.owned_platform(app, platform).await?;
        let session = self
            .store
            .latest_onboarding(platform)
            .await?
            .filter(|s| s.state == "failed")
            .ok_or_else(|| {
                EngineError::new(
                    ErrorKind::Conflict,
                    "nothing_to_retry",
                    "this platform has no failed set-up step; Refresh reads it from Meta again",
                )
            })?;
        self.run_onboarding(session, None).await
    }

    /// `Some(conflict)` when another application of this Parley holds the WABA or the number
    /// (a platform not disconnected, a number in its sending set): taking it over would move
    /// its sends and inbound messages to this application. Disconnecting releases both.
    async fn held_elsewhere(
        &self,
        app: &ApplicationId,
        waba: Option<&WabaId>,
        phone: Option<&PhoneNumberId>,
    ) -> Result<Option<EngineError>, EngineError> {
        if let Some(waba) = waba {
            let held = self
                .store
                .platforms_by_waba(waba)
                .await?
                .into_iter()
                .any(|p| &p.application_id != app && p.status != status::DISCONNECTED);
            if held {
                return Ok(Some(EngineError::new(
                    ErrorKind::Conflict,
                    "waba_taken",
                    format!(
                        "WhatsApp Business Account {waba} is connected to another application in this Parley. \
                         Disconnect it there first (Settings › Configure platforms › Disconnect), then sign up again here."
                    ),
                )));
            }
        }
        if let Some(phone) = phone
            && let Some(n) = self.store.phone_number(phone).await?
            && &n.application_id != app
        {
            return Ok(Some(EngineError::new(
                ErrorKind::Conflict,
                "number_taken",
                format!(
                    "Phone number {} ({phone}) is connected to another application in this Parley. \
                     Disconnect its platform there first (Settings › Configure platforms › Disconnect), then sign up again here.",
                    n.display_phone_number
                ),
            )));
        }
        Ok(None)
    }

    async fn owned_platform(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
    ) -> Result<PlatformRecord, EngineError> {
        self.store
            .platform(app, platform)
            .await?
            .ok_or_else(|| not_found(platform))
    }

    async fn record(
        &self,
        session: &mut OnboardingRecord,
        step: Step,
        state: &str,
        error: Option<(Option<i64>, String)>,
    ) -> Result<(), EngineError> {
        let (error_code, error_message) = match error {
            Some((c, m)) => (c, Some(m)),
            None => (None, None),
        };
        let record = OnboardingStep {
            step: step.name().to_owned(),
            state: state.to_owned(),
            error_code,
            error_message,
            at: self.now(),
        };
        self.store
            .record_onboarding_step(&session.id, &record)
            .await?;
        session.steps.retain(|s| s.step != step.name());
        session.steps.push(record);
        Ok(())
    }

    /// Records `step` as failed, stops the session and says why.
    async fn fail(
        &self,
        mut session: OnboardingRecord,
        step: Step,
        meta_code: Option<i64>,
        failure: EngineError,
    ) -> Result<SignupOutcome, EngineError> {
        tracing::warn!(session = %session.id, step = step.name(), code = failure.code, "onboarding step failed");
        self.record(
            &mut session,
            step,
            "failed",
            Some((meta_code, failure.message.clone())),
        )
        .await?;
        session.state = "failed".into();
        session.failed_step = Some(step.name().to_owned());
        session.updated_at = self.now();
        self.store.save_onboarding(&session).await?;
        if let Some(platform) = &session.platform_id {
            self.store
                .set_platform_status(
                    platform,
                    status::SETTING_UP,
                    Some(&failure.message),
                    self.now(),
                )
                .await?;
        }
        Ok(SignupOutcome {
            platform_id: session.platform_id.clone(),
            session,
            failure: Some(failure),
        })
    }

    /// Runs the steps not done yet, in order; stops at the first that fails.
    async fn run_onboarding(
        &self,
        mut session: OnboardingRecord,
        code: Option<&str>,
    ) -> Result<SignupOutcome, EngineError> {
        let meta = self.meta_app_ready()?.clone();
        session.state = "running".into();
        session.failed_step = None;
        self.store.save_onboarding(&session).await?;
        let secrets = self.store.onboarding_secrets(&session.id).await?;
        let on_biz_app = is_coexistence(session.event.as_deref());
        let mut run = OnboardingRun {
            session,
            secrets,
            meta,
            code,
            on_biz_app,
            found_registered: false,
        };
        for step in Step::ALL {
            if run.done(step) {
                continue;
            }
            if let Some((blocked, failure)) = run.blocker(step) {
                return self.fail(run.session, blocked, None, failure).await;
            }
            match self.run_step(step, &mut run).await? {
                StepEnd::Done => self.record(&mut run.session, step, "done", None).await?,
                StepEnd::Skipped(why) => {
                    let why = Some((None, why));
                    self.record(&mut run.session, step, "skipped", why).await?
                }
                StepEnd::Failed(meta_code, failure) => {
                    return self.fail(run.session, step, meta_code, failure).await;
                }
                StepEnd::Waiting(why) => return self.wait(run.session, step, why).await,
            }
        }
        let platform_id = self.onboarding_platform(&mut run).await?;
        self.finish_onboarding(run.session, platform_id).await
    }

    /// One step, by its own function. The platform exists from `subscribe_app` on (each
    /// later step asks for it), so a failed step shows in the list with Retry.
    async fn run_step(
        &self,
        step: Step,
        run: &mut OnboardingRun<'_>,
    ) -> Result<StepEnd, EngineError> {
        Ok(match step {
            Step::ExchangeCode => self.exchange_code(run).await?,
            Step::DebugToken => self.check_token(run).await?,
            Step::SubscribeApp => {
                // The WABA `debug_token` confirmed, before this application's platform exists.
                let app = &run.session.application_id;
                if let Some(taken) = self
                    .held_elsewhere(app, run.session.waba_id.as_ref(), None)
                    .await?
                {
                    return Ok(StepEnd::Failed(None, taken));
                }
                self.onboarding_platform(run).await?;
                let subscribed = self.graph.subscribe_app(run.token(), run.waba_id()).await;
                StepEnd::from_read(step, subscribed)
            }
            Step::FindNumber => self.find_number(run).await?,
            Step::VerifyNumber => self.check_verification(run).await?,
            Step::RegisterPhone => {
                // Registering again (a new PIN) would also break the other application's number.
                let app = &run.session.application_id;
                if let Some(taken) = self
                    .held_elsewhere(app, None, run.session.phone_number_id.as_ref())
                    .await?
                {
                    return Ok(StepEnd::Failed(None, taken));
                }
                self.onboarding_platform(run).await?;
                self.register_phone(run).await?
            }
            Step::ReadBusiness => {
                let platform = self.onboarding_platform(run).await?;
                self.read_business(&run.session, &platform, run.token())
                    .await
            }
            Step::ReadWaba => {
                let platform = self.onboarding_platform(run).await?;
                let app = run.session.application_id.clone();
                StepEnd::from_read(step, self.read_waba(&app, &platform, run.token()).await)
            }
            Step::ReadPhoneNumbers => {
                let platform = self.onboarding_platform(run).await?;
                let app = run.session.application_id.clone();
                StepEnd::from_read(step, self.read_numbers(&app, &platform, run.token()).await)
            }
            Step::SyncContacts | Step::SyncHistory => {
                let platform = self.onboarding_platform(run).await?;
                let kind = if step == Step::SyncContacts {
                    parley_meta::coexistence::SyncType::Contacts
                } else {
                    parley_meta::coexistence::SyncType::History
                };
                match self.sync_app_data(&platform, run.token(), kind).await? {
                    crate::coexistence::SyncEnd::Done => StepEnd::Done,
                    crate::coexistence::SyncEnd::Skipped(why) => StepEnd::Skipped(why),
                    crate::coexistence::SyncEnd::Failed(code, e) => StepEnd::Failed(code, e),
                }
            }
            Step::ReadProfile => {
                let platform = self.onboarding_platform(run).await?;
                let read = self
                    .read_profile(&run.session, &platform, run.token())
                    .await;
                StepEnd::from_read(step, read)
            }
        })
    }

    /// `exchange_code`: the code, alive 30 s, becomes the business token (stored encrypted).
    async fn exchange_code(&self, run: &mut OnboardingRun<'_>) -> Result<StepEnd, EngineError> {
        // Without a code (a retry) the step does not run: see `Step::retry`.
        let code = run.code.unwrap_or_default();
        let (app_id, app_secret) = (&run.meta.app_id, &run.meta.app_secret);
        match self.graph.exchange_code(app_id, app_secret, code).await {
            Ok(t) => {
                self.store
                    .set_onboarding_secrets(&run.session.id, Some(&t.access_token), None)
                    .await?;
                run.secrets.access_token = Some(t.access_token);
                Ok(StepEnd::Done)
            }
            Err(e) => Ok(StepEnd::refused(Step::ExchangeCode, &e)),
        }
    }

    /// `debug_token`: the token is valid, has the WhatsApp scopes, and names the WABA when
    /// the dialog did not.
    async fn check_token(&self, run: &mut OnboardingRun<'_>) -> Result<StepEnd, EngineError> {
        let (app_id, app_secret) = (&run.meta.app_id, &run.meta.app_secret);
        let info = match self
            .graph
            .debug_token(app_id, app_secret, run.token())
            .await
        {
            Ok(info) => info,
            Err(e) => return Ok(StepEnd::refused(Step::DebugToken, &e)),
        };
        if !info.is_valid {
            return Ok(StepEnd::Failed(
                None,
                EngineError::unprocessable(
                    "business_token_invalid",
                    "Meta says the business token from this sign-up is not valid. Click Log in with Facebook again.",
                ),
            ));
        }
        let missing: Vec<&str> = [
            "whatsapp_business_management",
            "whatsapp_business_messaging",
        ]
        .into_iter()
        .filter(|s| !info.has_scope(s))
        .collect();
        if !missing.is_empty() {
            return Ok(StepEnd::Failed(
                None,
                EngineError::unprocessable(
                    "permissions_missing",
                    format!(
                        "The sign-up did not grant {}. Click Log in with Facebook again and keep every permission selected.",
                        missing.join(" and ")
                    ),
                ),
            ));
        }
        if run.session.waba_id.is_none() {
            // Meta's own answer; an id that does not parse counts as none shared.
            run.session.waba_id = info
                .waba_ids()
                .into_iter()
                .find_map(|w| WabaId::parse(&w).ok());
        }
        if run.session.waba_id.is_none() {
            return Ok(StepEnd::Failed(
                None,
                EngineError::unprocessable(
                    "waba_not_shared",
                    "The sign-up shared no WhatsApp Business Account. Click Log in with Facebook again and choose or create one.",
                ),
            ));
        }
        Ok(StepEnd::Done)
    }

    /// The session's platform, created (in `setting_up`) the first time a step needs it.
    async fn onboarding_platform(
        &self,
        run: &mut OnboardingRun<'_>,
    ) -> Result<PlatformId, EngineError> {
        if let Some(id) = &run.session.platform_id {
            return Ok(id.clone());
        }
        let session = &mut run.session;
        // `debug_token` fails the run when no WABA was shared, so this is set.
        let Some(waba_id) = session.waba_id.clone() else {
            return Err(EngineError::unprocessable(
                "waba_not_shared",
                "The sign-up shared no WhatsApp Business Account. Click Log in with Facebook again and choose or create one.",
            ));
        };
        let existing = self
            .store
            .platforms_by_waba(&waba_id)
            .await?
            .into_iter()
            .find(|p| p.application_id == session.application_id);
        // The number keeps the two-step PIN an earlier sign-up of this WABA registered it with
        // (Meta refuses another PIN with 133005).
        if run.secrets.pin.is_none()
            && let Some(p) = &existing
            && let Some(earlier) = self.store.latest_onboarding(&p.id).await?
            && earlier.id != session.id
            && let Some(pin) = self.store.onboarding_secrets(&earlier.id).await?.pin
        {
            self.store
                .set_onboarding_secrets(&session.id, None, Some(&pin))
                .await?;
            run.secrets.pin = Some(pin);
        }
        let id = self
            .store
            .upsert_platform(&NewPlatform {
                id: PlatformId::new(),
                application_id: session.application_id.clone(),
                business_id: session
                    .business_id
                    .clone()
                    .or_else(|| existing.as_ref().and_then(|p| p.business_id.clone())),
                waba_id,
                waba_name: existing.as_ref().and_then(|p| p.waba_name.clone()),
                status: status::SETTING_UP.into(),
                access_token: run.secrets.access_token.clone().unwrap_or_default(),
                details: existing.map_or_else(|| json!({}), |p| p.details),
                now: self.now(),
            })
            .await?;
        self.store
            .set_platform_status(&id, status::SETTING_UP, None, self.now())
            .await?;
        session.platform_id = Some(id.clone());
        self.store.save_onboarding(session).await?;
        Ok(id)
    }

    /// `register_phone`: the number joins the Cloud API with a PIN Parley generates once and
    /// keeps (encrypted), so a retry registers with the same PIN. Numbers shared from the
    /// WhatsApp Business app are registered already; a sign-up without a number has none.
    async fn register_phone(&self, run: &mut OnboardingRun<'_>) -> Result<StepEnd, EngineError> {
        if is_coexistence(run.session.event.as_deref()) {
            return Ok(StepEnd::Skipped(
                "numbers shared from the WhatsApp Business app are already registered".into(),
            ));
        }
        let Some(phone) = run.session.phone_number_id.clone() else {
            return Ok(StepEnd::Skipped(
                "the sign-up chose no phone number; add one on the platform page".into(),
            ));
        };
        if run.on_biz_app {
            return Ok(StepEnd::Skipped(
                "numbers shared from the WhatsApp Business app are already registered".into(),
            ));
        }
        if run.found_registered {
            return Ok(StepEnd::Skipped(
                "the sign-up named no number; the WABA's number is registered already".into(),
            ));
        }
        let pin = match run.secrets.pin.clone() {
            Some(p) => p,
            None => {
                let p = generate_pin();
                self.store
                    .set_onboarding_secrets(&run.session.id, None, Some(&p))
                    .await?;
                run.secrets.pin = Some(p.clone());
                p
            }
        };
        let registered = self
            .graph
            .register_phone(run.token(), phone.as_str(), &pin)
            .await;
        Ok(StepEnd::from_read(Step::RegisterPhone, registered))
    }

    /// `read_business`: the portfolio's name, when the sign-up named a portfolio.
    async fn read_business(
        &self,
        session: &OnboardingRecord,
        platform: &PlatformId,
        token: &str,
    ) -> StepEnd {
        let Some(business) = &session.business_id else {
            return StepEnd::Skipped("the sign-up named no business portfolio".into());
        };
        match self.graph.get_business(token, business.as_str()).await {
            Ok(info) => {
                let _ = self
                    .store
                    .set_platform_connected(platform, info.name.as_deref(), None)
                    .await;
                StepEnd::Done
            }
            Err(e) => StepEnd::refused(Step::ReadBusiness, &e),
        }
    }

    /// Every step done: the review decides the status; templates and sending start now.
    async fn finish_onboarding(
        &self,
        mut session: OnboardingRecord,
        platform_id: PlatformId,
    ) -> Result<SignupOutcome, EngineError> {
        let now = self.now();
        session.state = "done".into();
        session.updated_at = now;
        self.store.save_onboarding(&session).await?;
        let platform = self
            .store
            .platform(&session.application_id, &platform_id)
            .await?;
        if let Some(platform) = platform
            && platform.status == status::SETTING_UP
        {
            let review = platform
                .details
                .get("account_review_status")
                .and_then(Value::as_str)
                .unwrap_or("PENDING");
            let (st, reason) = review_status(review);
            self.store
                .set_platform_status(&platform_id, st, reason, now)
                .await?;
        }
        self.store
            .set_platform_connected(&platform_id, None, Some(now))
            .await?;
        if let Err(e) = self
            .sync_templates(&session.application_id, &platform_id)
            .await
        {
            tracing::warn!(platform = %platform_id, error = %e, "template sync after sign-up failed");
        }
        self.wake_senders(None);
        tracing::info!(session = %session.id, platform = %platform_id, "embedded signup finished");
        Ok(SignupOutcome {
            session,
            platform_id: Some(platform_id),
            failure: None,
        })
    }

    async fn save_platform_details(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
        token: &str,
        edit: impl FnOnce(&mut PlatformRecord),
    ) -> Result<(), GraphError> {
        let Ok(Some(mut p)) = self.store.platform(app, platform).await else {
            return Ok(());
        };
        edit(&mut p);
        let saved = self
            .store
            .upsert_platform(&NewPlatform {
                id: p.id.clone(),
                application_id: p.application_id.clone(),
                business_id: p.business_id.clone(),
                waba_id: p.waba_id.clone(),
                waba_name: p.waba_name.clone(),
                status: p.status.clone(),
                access_token: token.to_owned(),
                details: p.details.clone(),
                now: self.now(),
            })
            .await;
        if let Err(e) = saved {
            tracing::warn!(error = %e, "could not store platform details");
        }
        Ok(())
    }

    async fn read_waba(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
        token: &str,
    ) -> Result<(), GraphError> {
        let Ok(Some(p)) = self.store.platform(app, platform).await else {
            return Ok(());
        };
        let waba = self.graph.get_waba(token, p.waba_id.as_str()).await?;
        self.save_platform_details(app, platform, token, |p| {
            p.waba_name = waba.name.clone().or(p.waba_name.take());
            let profile = p.details.get("profile").cloned();
            let mut details = serde_json::to_value(&waba).unwrap_or_else(|_| json!({}));
            if let (Some(profile), Some(obj)) = (profile, details.as_object_mut()) {
                obj.insert("profile".into(), profile);
            }
            p.details = details;
        })
        .await
    }

    /// Reads every number of the platform's WABA and stores it; returns how many.
    async fn read_numbers(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
        token: &str,
    ) -> Result<usize, GraphError> {
        let Ok(Some(p)) = self.store.platform(app, platform).await else {
            return Ok(0);
        };
        let numbers = self
            .graph
            .list_phone_numbers(token, p.waba_id.as_str())
            .await?;
        let n = numbers.len();
        for info in numbers {
            if let Err(e) = self.store_number(&p, info).await {
                tracing::warn!(error = %e, "could not store a phone number");
            }
        }
        Ok(n)
    }

    async fn store_number(
        &self,
        p: &PlatformRecord,
        n: PhoneNumberInfo,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let level = n.throughput.as_ref().and_then(|t| t.level.clone());
        let id = PhoneNumberId::parse(&n.id).map_err(EngineError::internal)?;
        let on_biz_app = n.is_on_biz_app == Some(true);
        // A WhatsApp Business app number is held to 20 mps whatever `throughput` says.
        let mps = if on_biz_app {
            mps_for(level.as_deref()).min(crate::coexistence::COEXISTENCE_MPS)
        } else {
            mps_for(level.as_deref())
        };
        if self
            .held_elsewhere(&p.application_id, None, Some(&id))
            .await?
            .is_some()
        {
            tracing::warn!(phone_number_id = %id, platform = %p.id, "a number of this WABA is held by another application; left with it");
            return Ok(());
        }
        let existing_scope = self
            .store
            .platform_numbers(&p.id)
            .await?
            .into_iter()
            .find(|x| x.number.phone_number_id == id)
            .and_then(|x| x.messaging_limit_scope);
        let record = PhoneNumberRecord {
            display_phone_number: n
                .display_phone_number
                .clone()
                .unwrap_or_else(|| n.id.clone()),
            phone_number_id: id.clone(),
            platform_id: p.id.clone(),
            application_id: p.application_id.clone(),
            verified_name: n.verified_name,
            quality_rating: n.quality_rating,
            messaging_limit: n.whatsapp_business_manager_messaging_limit,
            throughput_mps: mps,
            status: n.status,
            updated_at: now,
        };
        self.store.upsert_phone_number(&record).await?;
        if on_biz_app {
            self.note_coexistence_number(&record).await?;
        }
        self.store
            .patch_phone_number(
                &id,
                &NumberPatch {
                    name_status: n.name_status,
                    // Since October 2025 Meta counts the limit per business portfolio.
                    messaging_limit_scope: Some(
                        existing_scope.unwrap_or_else(|| "business_portfolio".into()),
                    ),
                    throughput_level: Some(level.unwrap_or_else(|| "STANDARD".into())),
                    ..NumberPatch::default()
                },
                now,
            )
            .await?;
        Ok(())
    }

    async fn read_profile(
        &self,
        session: &OnboardingRecord,
        platform: &PlatformId,
        token: &str,
    ) -> Result<(), GraphError> {
        let phone = match &session.phone_number_id {
            Some(p) => p.clone(),
            None => match self.store.platform_numbers(platform).await {
                Ok(numbers) => match numbers.into_iter().next() {
                    Some(n) => n.number.phone_number_id,
                    None => return Ok(()),
                },
                Err(_) => return Ok(()),
            },
        };
        let profile = self
            .graph
            .get_business_profile(token, phone.as_str())
            .await?;
        self.save_platform_details(&session.application_id, platform, token, |p| {
            if let Some(obj) = p.details.as_object_mut() {
                obj.insert("profile".into(), profile);
            } else {
                p.details = json!({"profile": profile});
            }
        })
        .await
    }

    /// Reads the platform from Meta again (portfolio, WABA, numbers, profile) and syncs
    /// templates. The review status is taken from Meta unless a webhook restricted it.
    pub async fn refresh_platform(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
    ) -> Result<(), EngineError> {
        let p = self.owned_platform(app, platform).await?;
        if p.status == status::DISCONNECTED {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "platform_disconnected",
                "this platform is disconnected; connect it again with Log in with Facebook",
            ));
        }
        let token = self.store.platform_token(platform).await?;
        let session = self.store.latest_onboarding(platform).await?;
        let read = |step: Step| move |e: GraphError| step.failure(&e);
        if let Some(business) = &p.business_id {
            let info = self
                .graph
                .get_business(&token, business.as_str())
                .await
                .map_err(read(Step::ReadBusiness))?;
            self.store
                .set_platform_connected(platform, info.name.as_deref(), None)
                .await?;
        }
        self.read_waba(app, platform, &token)
            .await
            .map_err(read(Step::ReadWaba))?;
        self.read_numbers(app, platform, &token)
            .await
            .map_err(read(Step::ReadPhoneNumbers))?;
        if let Some(s) = &session {
            self.read_profile(s, platform, &token)
                .await
                .map_err(read(Step::ReadProfile))?;
        }
        if let Some(p) = self.store.platform(app, platform).await?
            && matches!(
                p.status.as_str(),
                status::PENDING_REVIEW | status::ACTIVE | status::REJECTED
            )
            && let Some(review) = p
                .details
                .get("account_review_status")
                .and_then(Value::as_str)
        {
            let (st, reason) = review_status(review);
            self.store
                .set_platform_status(platform, st, reason, self.now())
                .await?;
        }
        self.sync_templates(app, platform).await?;
        self.wake_senders(None);
        Ok(())
    }

    /// Disconnects a platform: unsubscribes the app from the WABA's webhooks, deregisters its
    /// numbers only when `deregister` confirms it, forgets the token and stops sending.
    pub async fn disconnect_platform(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
        deregister: bool,
    ) -> Result<DisconnectReport, EngineError> {
        let p = self.owned_platform(app, platform).await?;
        let mut report = DisconnectReport::default();
        // A platform Meta offboarded (WhatsApp Business app) still holds its token and
        // numbers: disconnecting it in Parley goes on.
        let offboarded = self
            .store
            .platform_coexistence(platform)
            .await?
            .iter()
            .any(|c| c.offboarded_at.is_some());
        if p.status == status::DISCONNECTED && !offboarded {
            return Ok(report);
        }
        let token = self.store.platform_token(platform).await?;
        if !token.is_empty() {
            match self.graph.unsubscribe_app(&token, p.waba_id.as_str()).await {
                Ok(()) => report.unsubscribed = true,
                Err(e) => report.warnings.push(format!(
                    "unsubscribing from the WABA's webhooks failed: {e}"
                )),
            }
            if deregister {
                for n in self.store.platform_numbers(platform).await? {
                    let id = n.number.phone_number_id;
                    if self.store.coexistence_number(&id).await?.is_some() {
                        // Meta: deregister does not work for these; the business
                        // disconnects in the WhatsApp Business app.
                        report.warnings.push(format!(
                            "{id} is a WhatsApp Business app number: it is not deregistered (the business disconnects it in the app: Settings › Account › Business Platform)"
                        ));
                        continue;
                    }
                    match self.graph.deregister_phone(&token, id.as_str()).await {
                        Ok(()) => report.deregistered.push(id),
                        Err(e) => report
                            .warnings
                            .push(format!("deregistering {id} failed: {e}")),
                    }
                }
            }
        }
        self.store
            .disconnect_platform(platform, "Disconnected in Parley", self.now())
            .await?;
        tracing::info!(platform = %platform, deregister, "platform disconnected");
        Ok(report)
    }
}

/// What the person must do before a platform's sign-up can finish (`PlatformView::next_step`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NextStep {
    /// `add_number` (the sign-up finished without a number) or `verify_number` (the number
    /// waits for the code Meta sends).
    pub action: &'static str,
    /// The number to verify.
    pub phone_number_id: Option<String>,
    /// What to do, in words.
    pub message: String,
}

/// How Meta delivers a verification code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeMethod {
    Sms,
    Voice,
}

impl CodeMethod {
    pub fn parse(text: &str) -> Option<CodeMethod> {
        match text.trim().to_ascii_uppercase().as_str() {
            "SMS" => Some(CodeMethod::Sms),
            "VOICE" => Some(CodeMethod::Voice),
            _ => None,
        }
    }

    fn meta(self) -> &'static str {
        match self {
            CodeMethod::Sms => "SMS",
            CodeMethod::Voice => "VOICE",
        }
    }
}

/// A number to add to a platform that has none (`POST /{waba}/phone_numbers`).
#[derive(Debug, Clone)]
pub struct NewNumber {
    /// The country calling code, e.g. `1`, `49`.
    pub cc: String,
    /// The number, with or without the country code.
    pub phone_number: String,
    /// The business name shown in WhatsApp (Meta reviews it).
    pub verified_name: String,
}

/// The waiting step of a session, as the platform shows it.
pub fn next_step(session: &OnboardingRecord) -> Option<NextStep> {
    if session.state != "waiting" {
        return None;
    }
    let message = session
        .steps
        .iter()
        .find(|s| s.state == "waiting")
        .and_then(|s| s.error_message.clone())
        .unwrap_or_default();
    match session.failed_step.as_deref() {
        Some("find_number") => Some(NextStep {
            action: "add_number",
            phone_number_id: None,
            message,
        }),
        Some("verify_number") => Some(NextStep {
            action: "verify_number",
            phone_number_id: session.phone_number_id.as_ref().map(|p| p.to_string()),
            message,
        }),
        _ => None,
    }
}

impl Engine {
    /// One sign-up at a time per WABA in this process: the browser's sign-up and Meta's
    /// `PARTNER_ADDED` fallback for the same account run one after the other, so the second
    /// finds the first's platform (and its PIN) instead of registering the number again with
    /// another PIN.
    async fn waba_lock(&self, waba: &WabaId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .onboarding_locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.retain(|_, l| std::sync::Arc::strong_count(l) > 1);
            locks
                .entry(waba.to_string())
                .or_insert_with(|| std::sync::Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        lock.lock_owned().await
    }

    /// Stops the run at a step that needs the person; the platform says what to do.
    async fn wait(
        &self,
        mut session: OnboardingRecord,
        step: Step,
        why: String,
    ) -> Result<SignupOutcome, EngineError> {
        self.record(&mut session, step, "waiting", Some((None, why.clone())))
            .await?;
        session.state = "waiting".into();
        session.failed_step = Some(step.name().to_owned());
        session.updated_at = self.now();
        self.store.save_onboarding(&session).await?;
        if let Some(platform) = &session.platform_id {
            self.store
                .set_platform_status(platform, status::SETTING_UP, Some(&why), self.now())
                .await?;
            // Show the number (or its absence) at once, not only once the run finishes.
            if let Ok(token) = self.store.platform_token(platform).await {
                let _ = self
                    .read_numbers(&session.application_id, platform, &token)
                    .await;
            }
        }
        tracing::info!(session = %session.id, step = step.name(), "onboarding waits for the person");
        Ok(SignupOutcome {
            platform_id: session.platform_id.clone(),
            session,
            failure: None,
        })
    }

    /// `find_number`: the number the dialog named, else the WABA's first (a coexistence
    /// finish names none; a no-number finish has none: wait for "Add a number").
    async fn find_number(&self, run: &mut OnboardingRun<'_>) -> Result<StepEnd, EngineError> {
        if run.session.phone_number_id.is_some() {
            return Ok(StepEnd::Done);
        }
        let numbers = match self
            .graph
            .list_phone_numbers(run.token(), run.waba_id())
            .await
        {
            Ok(n) => n,
            Err(e) => return Ok(StepEnd::refused(Step::FindNumber, &e)),
        };
        let pick = numbers
            .iter()
            .find(|n| n.is_on_biz_app == Some(true))
            .or_else(|| numbers.first());
        let registered = pick.is_some_and(|n| n.status.as_deref() == Some("CONNECTED"));
        match pick.and_then(|n| PhoneNumberId::parse(&n.id).ok()) {
            Some(id) => {
                run.found_registered = registered;
                run.session.phone_number_id = Some(id);
                self.store.save_onboarding(&run.session).await?;
                Ok(StepEnd::Done)
            }
            None => Ok(StepEnd::Waiting(
                "No phone number yet: the sign-up finished without one. Add a number on the platform page; Meta sends it a code to verify it."
                    .into(),
            )),
        }
    }

    /// `verify_number`: reads `code_verification_status` (and whether the number runs the
    /// WhatsApp Business app); an unverified number waits for its code.
    async fn check_verification(
        &self,
        run: &mut OnboardingRun<'_>,
    ) -> Result<StepEnd, EngineError> {
        let Some(phone) = run.session.phone_number_id.clone() else {
            return Ok(StepEnd::Skipped("the sign-up has no phone number".into()));
        };
        let info = match self
            .graph
            .get_phone_number(run.token(), phone.as_str())
            .await
        {
            Ok(info) => info,
            Err(e) => return Ok(StepEnd::refused(Step::VerifyNumber, &e)),
        };
        if info.is_on_biz_app == Some(true) {
            run.on_biz_app = true;
            return Ok(StepEnd::Skipped(
                "numbers of the WhatsApp Business app are verified in the app".into(),
            ));
        }
        match info.code_verification_status.as_deref() {
            None | Some("VERIFIED") => Ok(StepEnd::Done),
            Some(_) => {
                let display = info
                    .display_phone_number
                    .unwrap_or_else(|| phone.to_string());
                Ok(StepEnd::Waiting(format!(
                    "Verify {display}: ask Meta for a code by text message or call, then enter it on the platform page. Parley registers the number once it is verified."
                )))
            }
        }
    }

    /// The platform's latest sign-up, when it waits at `step`, with its business token.
    async fn waiting_session(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
        step: Step,
    ) -> Result<(OnboardingRecord, String), EngineError> {
        self.meta_app_ready()?;
        self.owned_platform(app, platform).await?;
        let session = self
            .store
            .latest_onboarding(platform)
            .await?
            .filter(|s| s.state == "waiting" && s.failed_step.as_deref() == Some(step.name()));
        let Some(session) = session else {
            let (code, what) = match step {
                Step::FindNumber => (
                    "number_not_needed",
                    "this platform is not waiting for a phone number (it has one, or its sign-up did not finish: see its steps)",
                ),
                _ => (
                    "nothing_to_verify",
                    "this platform has no number waiting for its verification code",
                ),
            };
            return Err(EngineError::new(ErrorKind::Conflict, code, what));
        };
        let secrets = self.store.onboarding_secrets(&session.id).await?;
        let Some(token) = secrets.access_token else {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "signup_again",
                "Parley no longer holds this sign-up's business token (the platform was disconnected). Click Log in with Facebook again.",
            ));
        };
        Ok((session, token))
    }

    /// "Add a number": adds it to the platform's WABA at Meta (`POST /{waba}/phone_numbers`),
    /// then continues the sign-up, which waits for the number's verification code.
    pub async fn add_phone_number(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
        number: NewNumber,
    ) -> Result<SignupOutcome, EngineError> {
        let cc = number.cc.trim().trim_start_matches('+').to_owned();
        if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EngineError::bad_request(
                "invalid_country_code",
                "`cc` is the country calling code, 1 to 3 digits (1 for the US, 49 for Germany)",
            )
            .field("cc"));
        }
        let national: String = number
            .phone_number
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if national.len() < 4 || national.len() > 17 {
            return Err(EngineError::bad_request(
                "invalid_phone_number",
                "`phone_number` is the number's digits, with or without the country code",
            )
            .field("phone_number"));
        }
        let name = number.verified_name.trim().to_owned();
        if name.chars().count() < 3 || name.chars().count() > 100 {
            return Err(EngineError::bad_request(
                "invalid_verified_name",
                "`verified_name` is the business name WhatsApp shows, 3 to 100 characters",
            )
            .field("verified_name"));
        }
        let (mut session, token) = self
            .waiting_session(app, platform, Step::FindNumber)
            .await?;
        let waba = session
            .waba_id
            .clone()
            .ok_or_else(|| EngineError::internal("waiting sign-up without a WABA"))?;
        let added = self
            .graph
            .add_phone_number(&token, waba.as_str(), &cc, &national, &name)
            .await;
        let id = match added {
            Ok(id) => id,
            Err(e) => {
                let failure = if e.code().is_none() {
                    Step::FindNumber.failure(&e)
                } else {
                    EngineError::unprocessable(
                        "number_not_added",
                        format!(
                            "Meta did not add the number ({e}). Check the country code, the number and the name, then try again."
                        ),
                    )
                };
                return Err(failure);
            }
        };
        let id = PhoneNumberId::parse(&id).map_err(EngineError::internal)?;
        session.phone_number_id = Some(id);
        self.store.save_onboarding(&session).await?;
        self.record(&mut session, Step::FindNumber, "done", None)
            .await?;
        tracing::info!(session = %session.id, "number added; the sign-up continues");
        self.run_onboarding(session, None).await
    }

    /// Asks Meta to text or call the waiting number with a verification code.
    pub async fn request_verification_code(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
        method: CodeMethod,
        language: Option<&str>,
    ) -> Result<NextStep, EngineError> {
        let language = language.unwrap_or("en_US").trim();
        if language.is_empty()
            || language.len() > 10
            || !language
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == '_')
        {
            return Err(EngineError::bad_request(
                "invalid_language",
                "`language` is a language code such as en_US or pt_BR",
            )
            .field("language"));
        }
        let (session, token) = self
            .waiting_session(app, platform, Step::VerifyNumber)
            .await?;
        let phone = session
            .phone_number_id
            .clone()
            .ok_or_else(|| EngineError::internal("waiting verification without a number"))?;
        self.graph
            .request_code(&token, phone.as_str(), method.meta(), language)
            .await
            .map_err(|e| Step::VerifyNumber.failure(&e))?;
        let how = match method {
            CodeMethod::Sms => "by text message",
            CodeMethod::Voice => "by a phone call",
        };
        Ok(NextStep {
            action: "verify_number",
            phone_number_id: Some(phone.to_string()),
            message: format!("Meta is sending the code {how}. Enter it to verify the number."),
        })
    }

    /// Verifies the waiting number with the code the person typed, then finishes the sign-up
    /// (register, read the account): the platform turns pending review or active.
    pub async fn verify_phone_number(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
        code: &str,
    ) -> Result<SignupOutcome, EngineError> {
        let code = code.trim();
        if code.len() < 4 || code.len() > 8 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EngineError::bad_request(
                "invalid_code",
                "`code` is the 4 to 8 digit code Meta sent by text message or call",
            )
            .field("code"));
        }
        let (mut session, token) = self
            .waiting_session(app, platform, Step::VerifyNumber)
            .await?;
        let phone = session
            .phone_number_id
            .clone()
            .ok_or_else(|| EngineError::internal("waiting verification without a number"))?;
        self.graph
            .verify_code(&token, phone.as_str(), code)
            .await
            .map_err(|e| Step::VerifyNumber.failure(&e))?;
        self.record(&mut session, Step::VerifyNumber, "done", None)
            .await?;
        tracing::info!(session = %session.id, "number verified; the sign-up continues");
        self.run_onboarding(session, None).await
    }

    /// Meta's `account_update` `PARTNER_ADDED` / `PARTNER_APP_INSTALLED` for a WABA: when no
    /// platform holds it yet (the browser's message never reached Parley, or the sign-up
    /// started elsewhere), onboards it with the system-user token for the configured
    /// application. Needs `meta.system_user_token` and `meta.partner_signup_application`.
    pub(crate) async fn partner_added(
        &self,
        waba_id: &str,
        owner_business_id: Option<&str>,
        event: &str,
        notes: &mut Vec<String>,
    ) -> Result<(), EngineError> {
        let Ok(waba) = WabaId::parse(waba_id) else {
            notes.push(format!("account_update {event} without a WABA id"));
            return Ok(());
        };
        let meta = &self.config.meta_app;
        // The configured application, else the only one of this Parley.
        let app = match meta.partner_signup_application.clone() {
            Some(app) => Some(app),
            None => {
                // Two are enough to know whether there is only one.
                let apps = self.store.applications_after(None, 2).await?;
                match apps.as_slice() {
                    [only] => Some(only.id.clone()),
                    _ => None,
                }
            }
        };
        let (Some(token), Some(app)) = (
            meta.system_user_token.clone().filter(|t| !t.is_empty()),
            app,
        ) else {
            let live = self
                .store
                .platforms_by_waba(&waba)
                .await?
                .into_iter()
                .any(|p| p.status != status::DISCONNECTED);
            if !live {
                notes.push(format!(
                    "account_update {event} for WABA {waba}, which no platform holds: set meta.system_user_token (and meta.partner_signup_application when this Parley has several applications) to onboard it from this webhook"
                ));
            }
            return Ok(());
        };
        let _guard = self.waba_lock(&waba).await;
        let held = self
            .store
            .platforms_by_waba(&waba)
            .await?
            .into_iter()
            .find(|p| p.status != status::DISCONNECTED);
        if let Some(p) = held {
            notes.push(format!(
                "account_update {event}: WABA {waba} is already platform {}",
                p.id
            ));
            return Ok(());
        }
        let now = self.now();
        let session = OnboardingRecord {
            id: new_onboarding_id(),
            application_id: app,
            platform_id: None,
            event: Some(event.to_owned()),
            business_id: owner_business_id.and_then(|b| BusinessId::parse(b).ok()),
            waba_id: Some(waba.clone()),
            phone_number_id: None,
            state: "running".into(),
            failed_step: None,
            created_at: now,
            updated_at: now,
            steps: Vec::new(),
        };
        self.store.save_onboarding(&session).await?;
        self.store
            .set_onboarding_secrets(&session.id, Some(&token), None)
            .await?;
        let mut session = session;
        self.record(
            &mut session,
            Step::ExchangeCode,
            "skipped",
            Some((
                None,
                format!("no sign-up code reached Parley: Meta's {event} webhook started this set-up with the system-user token"),
            )),
        )
        .await?;
        tracing::info!(session = %session.id, waba = %waba, "onboarding from {event}");
        let outcome = self.run_onboarding(session, None).await?;
        match (&outcome.failure, &outcome.platform_id) {
            (Some(f), _) => notes.push(format!(
                "account_update {event}: set-up of WABA {waba} stopped at {}: {}",
                outcome.session.failed_step.as_deref().unwrap_or("?"),
                f.message
            )),
            (None, Some(p)) => notes.push(format!(
                "account_update {event}: WABA {waba} connected as platform {p}"
            )),
            (None, None) => {}
        }
        Ok(())
    }
}

/// `account_review_status` / `account_review_update.decision` → status and reason.
fn review_status(decision: &str) -> (&'static str, Option<&'static str>) {
    match decision {
        "APPROVED" => (status::ACTIVE, None),
        "REJECTED" => (
            status::REJECTED,
            Some(
                "Meta's review rejected this WhatsApp Business Account (Commerce Policy); see Business Support Home to request another review",
            ),
        ),
        _ => (
            status::PENDING_REVIEW,
            Some(
                "Meta is reviewing this WhatsApp Business Account; sending works once it is approved",
            ),
        ),
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

// Meta's management webhooks (`account_review_update`, `account_update`,
// `phone_number_quality_update`, `business_capability_update`, `phone_number_name_update`),
// applied to the platforms of the WABA they name.

/// The platforms of `waba_id` that are not disconnected; `None` (noted) when the WABA is not
/// Parley's.
async fn webhook_platforms(
    engine: &Engine,
    waba_id: &str,
    field: &str,
    notes: &mut Vec<String>,
) -> parley_store::Result<Option<Vec<PlatformRecord>>> {
    // The entry id is Meta's wire text: one that is not a WABA id names no platform of ours.
    let platforms = match WabaId::parse(waba_id) {
        Ok(waba) => engine.store.platforms_by_waba(&waba).await?,
        Err(_) => Vec::new(),
    };
    if platforms.is_empty() {
        notes.push(format!("{field} for unknown WABA {waba_id}"));
        return Ok(None);
    }
    Ok(Some(
        platforms
            .into_iter()
            .filter(|p| p.status != status::DISCONNECTED)
            .collect(),
    ))
}

/// `account_review_update`: Meta's review decides whether the platform may send.
pub(crate) async fn apply_account_review(
    engine: &Engine,
    waba_id: &str,
    value: &AccountReviewValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let Some(live) = webhook_platforms(engine, waba_id, fields::ACCOUNT_REVIEW, notes).await?
    else {
        return Ok(());
    };
    let Some(decision) = value.decision.as_deref() else {
        notes.push("account_review_update without decision".into());
        return Ok(());
    };
    let (st, reason) = review_status(decision);
    let now = engine.now();
    for p in &live {
        if p.status == status::SETTING_UP {
            // The sign-up has not finished (a failed step, or a number waiting for its code):
            // it reads the review from Meta when it does.
            notes.push(format!(
                "account_review_update {decision} for platform {} still setting up",
                p.id
            ));
            continue;
        }
        engine
            .store
            .set_platform_status(&p.id, st, reason, now)
            .await?;
    }
    engine.wake_senders(None);
    Ok(())
}

/// What an `account_update` event does to the WABA's platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AccountChange {
    /// A new status, with its reason.
    Status(&'static str, Option<String>),
    /// The status stays; the reason tells what Meta reported.
    Reason(String),
    /// The business removed Parley's access.
    Disconnect(String),
}

/// The change an `account_update` asks for; `None` for events Parley does not act on.
fn account_change(value: &AccountUpdateValue) -> Option<AccountChange> {
    let event = value.event.as_deref().unwrap_or_default();
    Some(match event {
        "ACCOUNT_RESTRICTION" => {
            let kinds: Vec<String> = value
                .restriction_info
                .iter()
                .filter_map(|r| {
                    let kind = r.restriction_type.clone()?;
                    Some(match &r.expiration {
                        Some(until) => format!("{kind} until {until}"),
                        None => kind,
                    })
                })
                .collect();
            AccountChange::Status(
                status::RESTRICTED,
                Some(format!(
                    "Meta restricted this account: {}",
                    kinds.join(", ")
                )),
            )
        }
        "DISABLED_UPDATE" => {
            let ban = value
                .ban_info
                .as_ref()
                .and_then(|b| b.waba_ban_state.as_deref());
            match ban {
                Some("REINSTATE") => AccountChange::Status(status::ACTIVE, None),
                Some("SCHEDULE_FOR_DISABLE") => AccountChange::Status(
                    status::RESTRICTED,
                    Some("Meta scheduled this account to be disabled".to_owned()),
                ),
                _ => AccountChange::Status(
                    status::RESTRICTED,
                    Some("Meta disabled this account".to_owned()),
                ),
            }
        }
        "PARTNER_REMOVED"
        | "ACCOUNT_DELETED"
        | "ACCOUNT_OFFBOARDED"
        | "PARTNER_APP_UNINSTALLED" => AccountChange::Disconnect(format!(
            "Meta reported {event}: the business removed Parley's access"
        )),
        "ACCOUNT_VIOLATION" => {
            let kind = value
                .violation_info
                .as_ref()
                .and_then(|v| v.violation_type.as_deref())
                .unwrap_or("unspecified");
            AccountChange::Reason(format!("Meta reported a policy violation: {kind}"))
        }
        _ => return None,
    })
}

/// `account_update`: restrictions, bans, violations and removed access.
pub(crate) async fn apply_account_update(
    engine: &Engine,
    entry_id: &str,
    value: &AccountUpdateValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    // The PARTNER_* events come on the partner's business entry and name the WABA inside.
    let waba_id = value
        .waba_info
        .as_ref()
        .and_then(|w| w.waba_id.as_deref())
        .unwrap_or(entry_id);
    let event = value.event.as_deref().unwrap_or_default();
    if matches!(event, "PARTNER_ADDED" | "PARTNER_APP_INSTALLED") {
        let owner = value
            .waba_info
            .as_ref()
            .and_then(|w| w.owner_business_id.as_deref());
        if let Err(e) = engine.partner_added(waba_id, owner, event, notes).await {
            notes.push(format!("account_update {event}: {}", e.message));
        }
        return Ok(());
    }
    let Some(live) = webhook_platforms(engine, waba_id, fields::ACCOUNT_UPDATE, notes).await?
    else {
        return Ok(());
    };
    let Some(change) = account_change(value) else {
        let event = value.event.as_deref().unwrap_or_default();
        notes.push(format!("account_update {event} stored, not acted on"));
        return Ok(());
    };
    let now = engine.now();
    for p in &live {
        match &change {
            AccountChange::Status(st, reason) => {
                engine
                    .store
                    .set_platform_status(&p.id, st, reason.as_deref(), now)
                    .await?
            }
            AccountChange::Reason(reason) => {
                engine
                    .store
                    .set_platform_status(&p.id, &p.status, Some(reason), now)
                    .await?
            }
            AccountChange::Disconnect(reason) => {
                engine.store.disconnect_platform(&p.id, reason, now).await?
            }
        }
    }
    Ok(())
}

/// The numbers of a WABA's live platforms: all of them, and those a webhook's display number
/// names.
struct WabaNumbers {
    all: Vec<PhoneNumberId>,
    matching: Vec<PhoneNumberId>,
}

async fn waba_numbers(
    engine: &Engine,
    live: &[PlatformRecord],
    display: Option<&str>,
) -> parley_store::Result<WabaNumbers> {
    let display = display.map(digits);
    let mut numbers = Vec::new();
    for p in live {
        numbers.extend(engine.store.platform_numbers(&p.id).await?);
    }
    let matching = numbers
        .iter()
        .filter(|n| {
            display
                .as_deref()
                .is_some_and(|d| digits(&n.number.display_phone_number) == d)
        })
        .map(|n| n.number.phone_number_id.clone())
        .collect();
    let all = numbers
        .into_iter()
        .map(|n| n.number.phone_number_id)
        .collect();
    Ok(WabaNumbers { all, matching })
}

/// A new messaging limit: the portfolio's (Meta's rule since October 2025) applies to every
/// number; a per-number one only to the number named (to all when none is named).
fn limit_patch(
    numbers: &WabaNumbers,
    per_business: Option<&LimitTier>,
    per_number: Option<&LimitTier>,
) -> Option<(Vec<PhoneNumberId>, NumberPatch)> {
    let (targets, tier, scope) = match (per_business, per_number) {
        (Some(tier), _) => (&numbers.all, tier, "business_portfolio"),
        (None, Some(tier)) if numbers.matching.is_empty() => (&numbers.all, tier, "phone_number"),
        (None, Some(tier)) => (&numbers.matching, tier, "phone_number"),
        (None, None) => return None,
    };
    let patch = NumberPatch {
        messaging_limit: Some(tier.as_str().to_owned()),
        messaging_limit_scope: Some(scope.into()),
        ..NumberPatch::default()
    };
    Some((targets.clone(), patch))
}

/// Applies number patches; notes when none of them names a known number.
async fn patch_numbers(
    engine: &Engine,
    field: &str,
    patches: Vec<(Vec<PhoneNumberId>, NumberPatch)>,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    if patches.iter().all(|(targets, _)| targets.is_empty()) {
        notes.push(format!("{field} named no known number"));
    }
    let now = engine.now();
    for (targets, patch) in patches {
        for id in targets {
            engine.store.patch_phone_number(&id, &patch, now).await?;
        }
    }
    Ok(())
}

/// `phone_number_quality_update`: a number's limit changed, or its throughput was upgraded.
pub(crate) async fn apply_number_quality(
    engine: &Engine,
    waba_id: &str,
    value: &PhoneNumberQualityValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let field = fields::PHONE_NUMBER_QUALITY;
    let Some(live) = webhook_platforms(engine, waba_id, field, notes).await? else {
        return Ok(());
    };
    let numbers = waba_numbers(engine, &live, value.display_phone_number.as_deref()).await?;
    let mut patches: Vec<_> = limit_patch(
        &numbers,
        value.max_daily_conversations_per_business.as_ref(),
        value.current_limit.as_ref(),
    )
    .into_iter()
    .collect();
    if value.event.as_deref() == Some("THROUGHPUT_UPGRADE") {
        let upgrade = NumberPatch {
            throughput_level: Some("HIGH".into()),
            throughput_mps: Some(1000),
            ..NumberPatch::default()
        };
        patches.push((numbers.matching.clone(), upgrade));
    }
    patch_numbers(engine, field, patches, notes).await
}

/// `business_capability_update`: the portfolio's limits changed.
pub(crate) async fn apply_capability(
    engine: &Engine,
    waba_id: &str,
    value: &CapabilityValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let field = fields::CAPABILITY_UPDATE;
    let Some(live) = webhook_platforms(engine, waba_id, field, notes).await? else {
        return Ok(());
    };
    let numbers = waba_numbers(engine, &live, None).await?;
    let patches = limit_patch(
        &numbers,
        value.max_daily_conversations_per_business.as_ref(),
        value.max_daily_conversation_per_phone.as_ref(),
    );
    patch_numbers(engine, field, patches.into_iter().collect(), notes).await
}

/// `phone_number_name_update`: Meta's decision on a number's display name.
pub(crate) async fn apply_number_name(
    engine: &Engine,
    waba_id: &str,
    value: &PhoneNumberNameValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let field = fields::PHONE_NUMBER_NAME;
    let Some(live) = webhook_platforms(engine, waba_id, field, notes).await? else {
        return Ok(());
    };
    let numbers = waba_numbers(engine, &live, value.display_phone_number.as_deref()).await?;
    let approved = value.decision.as_deref() == Some("APPROVED");
    let patch = NumberPatch {
        name_status: value.decision.clone(),
        verified_name: approved
            .then(|| value.requested_verified_name.clone())
            .flatten(),
        ..NumberPatch::default()
    };
    patch_numbers(engine, field, vec![(numbers.matching, patch)], notes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account_update(value: serde_json::Value) -> AccountUpdateValue {
        serde_json::from_value(value).expect("an account_update value")
    }

    #[test]
    fn account_updates_become_status_changes() {
        assert_eq!(
            account_change(&account_update(json!({"event": "ACCOUNT_RESTRICTION", "restriction_info": [
                {"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": 1750000000},
                {"restriction_type": "RESTRICTED_ADD_PHONE_NUMBER_ACTION", "expiration": null},
                {"expiration": 5}]}))),
            Some(AccountChange::Status(
                status::RESTRICTED,
                Some("Meta restricted this account: RESTRICTED_BIZ_INITIATED_MESSAGING until 1750000000, RESTRICTED_ADD_PHONE_NUMBER_ACTION".into())
            ))
        );
        let ban = |state: &str| {
            account_change(&account_update(
                json!({"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": state, "waba_ban_date": "April 17, 2025"}}),
            ))
        };
        assert_eq!(
            ban("REINSTATE"),
            Some(AccountChange::Status(status::ACTIVE, None))
        );
        assert_eq!(
            ban("SCHEDULE_FOR_DISABLE"),
            Some(AccountChange::Status(
                status::RESTRICTED,
                Some("Meta scheduled this account to be disabled".into())
            ))
        );
        assert_eq!(
            ban("DISABLE"),
            Some(AccountChange::Status(
                status::RESTRICTED,
                Some("Meta disabled this account".into())
            ))
        );
        assert_eq!(
            account_change(&account_update(json!({"event": "PARTNER_REMOVED",
                "waba_info": {"waba_id": "1", "owner_business_id": "2"}}))),
            Some(AccountChange::Disconnect(
                "Meta reported PARTNER_REMOVED: the business removed Parley's access".into()
            ))
        );
        assert_eq!(
            account_change(&account_update(
                json!({"event": "ACCOUNT_VIOLATION", "violation_info": {"violation_type": "ADULT"}})
            )),
            Some(AccountChange::Reason(
                "Meta reported a policy violation: ADULT".into()
            ))
        );
        assert_eq!(
            account_change(&account_update(json!({"event": "ACCOUNT_VIOLATION"}))),
            Some(AccountChange::Reason(
                "Meta reported a policy violation: unspecified".into()
            ))
        );
        assert_eq!(
            account_change(&account_update(json!({"event": "PARTNER_ADDED"}))),
            None
        );
        assert_eq!(account_change(&account_update(json!({}))), None);
    }

    #[test]
    fn portfolio_limits_reach_every_number_and_number_limits_the_one_named() {
        let tier = |t: &str| LimitTier::from_json(&json!(t)).expect("tier");
        let pn = |s: &str| PhoneNumberId::parse(s).expect("id");
        let ids = |v: &[PhoneNumberId]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let numbers = WabaNumbers {
            all: vec![pn("1"), pn("2")],
            matching: vec![pn("2")],
        };
        let (targets, patch) =
            limit_patch(&numbers, Some(&tier("TIER_2K")), Some(&tier("TIER_250"))).expect("patch");
        assert_eq!(ids(&targets), ["1", "2"]);
        assert_eq!(patch.messaging_limit.as_deref(), Some("TIER_2K"));
        assert_eq!(
            patch.messaging_limit_scope.as_deref(),
            Some("business_portfolio")
        );
        let (targets, patch) = limit_patch(&numbers, None, Some(&tier("TIER_250"))).expect("patch");
        assert_eq!(ids(&targets), ["2"]);
        assert_eq!(patch.messaging_limit_scope.as_deref(), Some("phone_number"));
        let unnamed = WabaNumbers {
            all: vec![pn("1")],
            matching: Vec::new(),
        };
        let (targets, _) = limit_patch(&unnamed, None, Some(&tier("TIER_250"))).expect("patch");
        assert_eq!(ids(&targets), ["1"]);
        assert!(limit_patch(&numbers, None, None).is_none());
    }

    #[test]
    fn steps_keep_their_recorded_names_and_retry_rules() {
        assert_eq!(
            STEPS,
            [
                "exchange_code",
                "debug_token",
                "subscribe_app",
                "read_business",
                "find_number",
                "verify_number",
                "register_phone",
                "read_waba",
                "read_phone_numbers",
                "sync_contacts",
                "sync_history",
                "read_profile",
            ]
        );
        for step in Step::ALL {
            assert_eq!(step.to_string(), step.name());
            let expected = if step == Step::ExchangeCode {
                Retry::NewSignup
            } else {
                Retry::Again
            };
            assert_eq!(step.retry(), expected, "{step}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let app = MetaApp {
            app_secret: "topsecret".into(),
            ..MetaApp::default()
        };
        assert!(!format!("{app:?}").contains("topsecret"));
        let req = SignupRequest {
            code: "AQDcode".into(),
            ..SignupRequest::default()
        };
        assert!(!format!("{req:?}").contains("AQDcode"));
        assert_eq!(generate_pin().len(), 6);
    }

    #[test]
    fn expired_codes_and_registration_limits_say_what_to_do() {
        let api = |code: i64, message: &str| GraphError::Api {
            http_status: 400,
            error: parley_meta::ApiError {
                message: message.into(),
                kind: Some("OAuthException".into()),
                code,
                error_subcode: None,
                error_data: None,
                error_user_title: None,
                error_user_msg: None,
                is_transient: None,
                fbtrace_id: None,
            },
        };
        assert_eq!(
            Step::ExchangeCode
                .failure(&api(100, "This authorization code has expired."))
                .code,
            "signup_code_expired"
        );
        assert_eq!(
            Step::RegisterPhone.failure(&api(133016, "too many")).code,
            "registration_limit_reached"
        );
        assert_eq!(
            Step::RegisterPhone.failure(&api(133005, "pin")).code,
            "registration_pin_mismatch"
        );
        assert_eq!(
            Step::SubscribeApp.failure(&api(2, "x")).code,
            "webhook_subscription_failed"
        );
    }
}
