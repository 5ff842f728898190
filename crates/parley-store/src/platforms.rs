//! Platform setup: Embedded Signup sessions with their recorded steps, the registration PIN
//! and the business token while a platform is being set up (both encrypted), the platform's
//! status with its reason, and the per-number facts Meta reports (name status, limit scope,
//! throughput level). The `platforms` and `phone_numbers` tables stay the source of truth;
//! this area adds columns to them rather than parallel tables.

use async_trait::async_trait;
use parley_domain::{ApplicationId, BusinessId, PhoneNumberId, PlatformId, WabaId};
use serde::Serialize;

use crate::{Millis, PhoneNumberRecord, PlatformRecord, Result};

/// A fresh onboarding session id, `onb_` + a UUID v7 (sorts by creation time).
pub fn new_onboarding_id() -> String {
    format!("onb_{}", uuid::Uuid::now_v7().simple())
}

/// One Embedded Signup as the server runs it: what the dialog handed over, how far the
/// server-side steps got, and which step failed.
#[derive(Debug, Clone, Serialize)]
pub struct OnboardingRecord {
    /// `onb_…`.
    pub id: String,
    pub application_id: ApplicationId,
    /// Set once the WABA is known and the platform row exists.
    pub platform_id: Option<PlatformId>,
    /// The dialog's finish event (`FINISH`, `FINISH_ONLY_WABA`, …), when the page gave it.
    pub event: Option<String>,
    pub business_id: Option<BusinessId>,
    pub waba_id: Option<WabaId>,
    pub phone_number_id: Option<PhoneNumberId>,
    /// `running`, `failed` or `done`.
    pub state: String,
    pub failed_step: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// In the order they ran.
    pub steps: Vec<OnboardingStep>,
}

/// One server-side step of an onboarding (`exchange_code`, `debug_token`, `subscribe_app`,
/// `register_phone`, `read_business`, `read_waba`, `read_phone_numbers`, `read_profile`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OnboardingStep {
    pub step: String,
    /// `done`, `failed` or `skipped`.
    pub state: String,
    /// Meta's error code when Meta refused.
    pub error_code: Option<i64>,
    /// What went wrong, or why the step was skipped.
    pub error_message: Option<String>,
    pub at: Millis,
}

/// The secrets of an onboarding session, decrypted. Debug never shows them.
#[derive(Clone, Default)]
pub struct OnboardingSecrets {
    pub access_token: Option<String>,
    pub pin: Option<String>,
}

impl std::fmt::Debug for OnboardingSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnboardingSecrets")
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .field("pin", &self.pin.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A platform with the facts the configured-platforms list shows.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformSetupRecord {
    pub platform: PlatformRecord,
    /// Why the platform has its status (Meta's rejection or restriction, a failed step).
    pub status_reason: Option<String>,
    /// The business portfolio's name.
    pub company_name: Option<String>,
    pub connected_at: Option<Millis>,
    pub disconnected_at: Option<Millis>,
}

/// A number with the facts the configured-platforms list shows.
#[derive(Debug, Clone, Serialize)]
pub struct NumberSetupRecord {
    pub number: PhoneNumberRecord,
    /// `APPROVED`, `PENDING_REVIEW`, `DECLINED`, … (display name review).
    pub name_status: Option<String>,
    /// `business_portfolio` or `phone_number`: what the messaging limit counts against.
    pub messaging_limit_scope: Option<String>,
    /// `STANDARD` (80 mps) or `HIGH` (up to 1,000 mps).
    pub throughput_level: Option<String>,
}

/// A partial update of a number from a webhook or a refresh; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct NumberPatch {
    pub verified_name: Option<String>,
    pub name_status: Option<String>,
    pub quality_rating: Option<String>,
    pub messaging_limit: Option<String>,
    pub messaging_limit_scope: Option<String>,
    pub throughput_level: Option<String>,
    pub throughput_mps: Option<u32>,
}

/// A change of a number's quality rating, messaging-limit tier or throughput, with the
/// values before and after (`None`: not known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumberChange {
    pub at: Millis,
    pub quality_rating: Option<String>,
    pub messaging_limit: Option<String>,
    pub throughput_mps: i64,
    pub was_quality_rating: Option<String>,
    pub was_messaging_limit: Option<String>,
    pub was_throughput_mps: i64,
}

#[async_trait]
pub trait PlatformStore: Send + Sync + 'static {
    /// Writes the session's own fields (not its steps, not its secrets), inserting it if new.
    async fn save_onboarding(&self, session: &OnboardingRecord) -> Result<()>;
    /// Records a step's outcome; a retried step replaces its earlier outcome.
    async fn record_onboarding_step(&self, session_id: &str, step: &OnboardingStep) -> Result<()>;
    async fn onboarding(&self, session_id: &str) -> Result<Option<OnboardingRecord>>;
    /// The most recent session that set up this platform.
    async fn latest_onboarding(&self, platform: &PlatformId) -> Result<Option<OnboardingRecord>>;
    /// Stores the business token and/or PIN encrypted; `None` keeps what is stored.
    async fn set_onboarding_secrets(
        &self,
        session_id: &str,
        access_token: Option<&str>,
        pin: Option<&str>,
    ) -> Result<()>;
    async fn onboarding_secrets(&self, session_id: &str) -> Result<OnboardingSecrets>;

    /// Sets status and reason; `active`/`pending_review` clear `disconnected_at`.
    async fn set_platform_status(
        &self,
        platform: &PlatformId,
        status: &str,
        reason: Option<&str>,
        now: Millis,
    ) -> Result<()>;
    /// Records the portfolio's name and, if not yet set, when the platform was connected;
    /// `None` leaves a field alone.
    async fn set_platform_connected(
        &self,
        platform: &PlatformId,
        company_name: Option<&str>,
        connected_at: Option<Millis>,
    ) -> Result<()>;
    async fn platform_setup(&self, platform: &PlatformId) -> Result<Option<PlatformSetupRecord>>;
    /// One page of the application's platforms, oldest first, after the cursor.
    async fn platform_setups(
        &self,
        app: &ApplicationId,
        after: Option<&PlatformId>,
        limit: u32,
    ) -> Result<Vec<PlatformSetupRecord>>;
    /// Whether the application has a platform that is not `disconnected`.
    async fn has_live_platform(&self, app: &ApplicationId) -> Result<bool>;
    /// A page of every application's platforms by id: those after `after`, at most `limit`
    /// (a worker's walk over all tenants).
    async fn platforms_after(
        &self,
        after: Option<&PlatformId>,
        limit: u32,
    ) -> Result<Vec<PlatformRecord>>;
    /// Every platform with this WABA (one per application that connected it).
    async fn platforms_by_waba(&self, waba_id: &WabaId) -> Result<Vec<PlatformRecord>>;
    async fn platform_numbers(&self, platform: &PlatformId) -> Result<Vec<NumberSetupRecord>>;
    /// Applies the fields that are `Some`. Returns false when the number is unknown.
    async fn patch_phone_number(
        &self,
        phone_number_id: &PhoneNumberId,
        patch: &NumberPatch,
        now: Millis,
    ) -> Result<bool>;
    /// The number's quality, tier and throughput changes (migration 0029, recorded by a
    /// trigger on every change of `phone_numbers`) in `[from, to)`, oldest first, preceded
    /// by the last change before `from` (the state the period starts in); at most `limit`.
    async fn number_history(
        &self,
        app: &ApplicationId,
        phone_number_id: &PhoneNumberId,
        from: Millis,
        to: Millis,
        limit: u32,
    ) -> Result<Vec<NumberChange>>;
    /// Marks the platform disconnected, forgets its business token and removes its numbers
    /// from the sending set (they are read again when the platform is connected again).
    async fn disconnect_platform(
        &self,
        platform: &PlatformId,
        reason: &str,
        now: Millis,
    ) -> Result<()>;
}
