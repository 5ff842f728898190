//! The Marketing Messages API (META_2026 §7; issue #14 part 5): a platform may send its
//! marketing templates through `POST /<PHONE_NUMBER_ID>/marketing_messages` once Meta says its
//! WABA is `ONBOARDED` (read from Graph when the setting is turned on, never taken on trust);
//! a marketing campaign may set the time-to-live of those sends; the sender routes each
//! marketing-category template send of such a platform there (`sender.rs`), everything else
//! keeps `/messages`.

use std::collections::BTreeMap;

use parley_domain::{ApplicationId, CampaignId, MessageId, PlatformId};
use parley_meta::{GraphError, MARKETING_TTL_SECONDS};
use parley_store::marketing::{CampaignRoutes, MessageRoute};

use crate::Engine;
use crate::error::{EngineError, ErrorKind};
use crate::onboarding::status;

/// A campaign's time-to-live on the Marketing Messages API, checked against Meta's range
/// (12 h to 30 days, in seconds).
pub fn marketing_ttl(ttl: Option<i64>) -> Result<Option<i64>, EngineError> {
    match ttl {
        Some(t) if !MARKETING_TTL_SECONDS.contains(&t) => Err(EngineError::bad_request(
            "marketing_ttl_invalid",
            format!(
                "`marketing_ttl_seconds` is between {} (12 hours) and {} (30 days), Meta's range for marketing templates on the Marketing Messages API; got {t}",
                MARKETING_TTL_SECONDS.start(),
                MARKETING_TTL_SECONDS.end()
            ),
        )
        .field("marketing_ttl_seconds")),
        t => Ok(t),
    }
}

impl Engine {
    /// Turns sending marketing templates through the Marketing Messages API on or off for a
    /// platform. Turning it on asks Meta for the WABA's `marketing_messages_onboarding_status`
    /// and refuses (`marketing_messages_not_onboarded`, 409) unless it is `ONBOARDED`.
    pub async fn set_marketing_messages(
        &self,
        app: &ApplicationId,
        platform: &PlatformId,
        enabled: bool,
    ) -> Result<(), EngineError> {
        let p = self.store.platform(app, platform).await?.ok_or_else(|| {
            EngineError::new(
                ErrorKind::NotFound,
                "platform_not_found",
                format!("this application has no platform `{platform}`; list them with GET /api/v1/platforms"),
            )
        })?;
        if enabled {
            if p.status == status::DISCONNECTED {
                return Err(EngineError::new(
                    ErrorKind::Conflict,
                    "platform_disconnected",
                    "this platform is disconnected; connect it again with Log in with Facebook",
                ));
            }
            let token = self.store.platform_token(platform).await?;
            let waba = p.waba_id.as_str();
            let state = self
                .graph
                .waba_marketing_status(&token, waba)
                .await
                .map_err(|e| meta_failure(&e))?;
            if !state.onboarded() {
                let status = state
                    .marketing_messages_onboarding_status
                    .as_deref()
                    .unwrap_or("unknown");
                return Err(EngineError::new(
                    ErrorKind::Conflict,
                    "marketing_messages_not_onboarded",
                    format!(
                        "Meta says this WhatsApp Business Account ({waba}) is not onboarded to the Marketing Messages API (marketing_messages_onboarding_status: {status}). A portfolio admin accepts its terms of service in WhatsApp Manager (or in Embedded Signup with the Marketing Messages product); then turn this on again."
                    ),
                )
                .field("marketing_messages"));
            }
        }
        self.store
            .set_platform_marketing_messages(app, platform, enabled, self.now())
            .await?;
        Ok(())
    }

    /// True when the platform sends marketing templates through `/marketing_messages`.
    pub async fn platform_marketing_messages(
        &self,
        platform: &PlatformId,
    ) -> Result<bool, EngineError> {
        Ok(self.store.platform_marketing_messages(platform).await?)
    }

    /// Which API each of the application's messages went through.
    pub async fn message_routes(
        &self,
        app: &ApplicationId,
        ids: &[MessageId],
    ) -> Result<BTreeMap<MessageId, MessageRoute>, EngineError> {
        Ok(self.store.message_routes(app, ids).await?)
    }

    /// A campaign's sends through the Marketing Messages API (and those Meta sent through the
    /// Cloud API instead).
    pub async fn campaign_routes(
        &self,
        campaign: &CampaignId,
    ) -> Result<CampaignRoutes, EngineError> {
        Ok(self.store.campaign_routes(campaign).await?)
    }
}

fn meta_failure(e: &GraphError) -> EngineError {
    match e.code() {
        None => EngineError::new(
            ErrorKind::Upstream,
            "meta_unavailable",
            format!(
                "Meta did not answer when Parley asked for the WABA's Marketing Messages API status ({e}). Retry in a moment."
            ),
        ),
        Some(_) => EngineError::new(
            ErrorKind::Upstream,
            "meta_refused",
            format!("Meta refused to tell the WABA's Marketing Messages API status ({e})."),
        ),
    }
}
