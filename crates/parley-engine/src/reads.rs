//! What the HTTP layer asks of the engine besides the workflows: whether it can serve, Meta's
//! webhooks to keep, and an application's records as lists and pages show them (who is asking
//! is in `access.rs` for API tokens and `identity.rs` for console sessions). The store stays
//! the engine's own.

use parley_domain::{ApplicationId, CampaignId, MessageId, PhoneNumberId, PlatformId, SegmentId};
use parley_store::audience::SegmentRecord;
use parley_store::campaigns::CampaignRecord;
use parley_store::platforms::{NumberSetupRecord, OnboardingRecord, PlatformSetupRecord};
use parley_store::{
    ApplicationRecord, MessageRecord, PhoneNumberRecord, PlatformRecord, StoreError, TemplateRecord,
};

use crate::{Engine, EngineError};

impl Engine {
    /// The engine can serve: its database answers. One bounded read (at most one row),
    /// whatever the number of tenants.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.applications_after(None, 1).await.map(|_| ())
    }

    /// A page of every application by id (oldest first): those after `after`, at most
    /// `limit`. For tools that choose an application (`--application`, or the only one).
    pub async fn applications_page(
        &self,
        after: Option<&ApplicationId>,
        limit: u32,
    ) -> Result<Vec<ApplicationRecord>, EngineError> {
        Ok(self.store.applications_after(after, limit).await?)
    }

    /// One application by id.
    pub async fn application(
        &self,
        id: &ApplicationId,
    ) -> Result<Option<ApplicationRecord>, EngineError> {
        Ok(self.store.application(id).await?)
    }

    /// Whether any application exists yet (a fresh database).
    pub async fn has_applications(&self) -> Result<bool, EngineError> {
        Ok(!self.store.applications_after(None, 1).await?.is_empty())
    }

    /// The application's WhatsApp numbers.
    pub async fn phone_numbers(
        &self,
        app: &ApplicationId,
    ) -> Result<Vec<PhoneNumberRecord>, EngineError> {
        Ok(self.store.phone_numbers(app).await?)
    }

    /// A page of the application's numbers by id, after the number `after` (the API's cursor),
    /// at most `limit`. A cursor naming no number of the application is 400 `invalid_cursor`.
    pub async fn phone_numbers_page(
        &self,
        app: &ApplicationId,
        after: Option<&PhoneNumberId>,
        limit: u32,
    ) -> Result<Vec<PhoneNumberRecord>, EngineError> {
        if let Some(id) = after
            && self
                .store
                .phone_number(id)
                .await?
                .is_none_or(|n| &n.application_id != app)
        {
            return Err(EngineError::bad_request(
                "invalid_cursor",
                "`after` names no phone number of this application; start again without it",
            )
            .field("after"));
        }
        Ok(self.store.phone_numbers_after(app, after, limit).await?)
    }

    /// The application's platforms (connected or not).
    pub async fn platforms(&self, app: &ApplicationId) -> Result<Vec<PlatformRecord>, EngineError> {
        Ok(self.store.platforms(app).await?)
    }

    /// Whether the application has a platform that is not disconnected (one row read).
    pub async fn has_live_platform(&self, app: &ApplicationId) -> Result<bool, EngineError> {
        Ok(self.store.has_live_platform(app).await?)
    }

    /// One page of the application's platforms with their set-up, oldest first.
    pub async fn platform_setups(
        &self,
        app: &ApplicationId,
        after: Option<&PlatformId>,
        limit: u32,
    ) -> Result<Vec<PlatformSetupRecord>, EngineError> {
        Ok(self.store.platform_setups(app, after, limit).await?)
    }

    /// One of the application's platforms with its set-up; `None` when it is not this
    /// application's.
    pub async fn platform_setup(
        &self,
        app: &ApplicationId,
        id: &PlatformId,
    ) -> Result<Option<PlatformSetupRecord>, EngineError> {
        Ok(self
            .store
            .platform_setup(id)
            .await?
            .filter(|s| &s.platform.application_id == app))
    }

    /// A platform's numbers with their set-up.
    pub async fn platform_numbers(
        &self,
        platform: &PlatformId,
    ) -> Result<Vec<NumberSetupRecord>, EngineError> {
        Ok(self.store.platform_numbers(platform).await?)
    }

    /// The platform's most recent sign-up, step by step.
    pub async fn latest_onboarding(
        &self,
        platform: &PlatformId,
    ) -> Result<Option<OnboardingRecord>, EngineError> {
        Ok(self.store.latest_onboarding(platform).await?)
    }

    /// Every template of the application, deleted ones included.
    pub async fn templates(&self, app: &ApplicationId) -> Result<Vec<TemplateRecord>, EngineError> {
        Ok(self.store.templates(app).await?)
    }

    pub async fn count_contacts(&self, app: &ApplicationId) -> Result<u64, EngineError> {
        Ok(self.store.count_contacts(app).await?)
    }

    pub async fn message(
        &self,
        app: &ApplicationId,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, EngineError> {
        Ok(self.store.message(app, id).await?)
    }

    /// The application's messages, newest first, after the cursor.
    pub async fn messages(
        &self,
        app: &ApplicationId,
        after: Option<&MessageId>,
        limit: u32,
    ) -> Result<Vec<MessageRecord>, EngineError> {
        Ok(self.store.messages(app, after, limit).await?)
    }

    /// The application's campaigns, newest first, after the cursor.
    pub async fn campaigns(
        &self,
        app: &ApplicationId,
        after: Option<&CampaignId>,
        limit: u32,
    ) -> Result<Vec<CampaignRecord>, EngineError> {
        Ok(self.store.campaigns(app, after, limit).await?)
    }

    /// The application's saved segments by name.
    pub async fn segments(&self, app: &ApplicationId) -> Result<Vec<SegmentRecord>, EngineError> {
        Ok(self.store.segments(app).await?)
    }

    /// A page of the application's segments by name, after the segment `after` (its id: the
    /// API's cursor), at most `limit`. A cursor naming no segment of the application (deleted,
    /// or another's) is 400 `invalid_cursor`.
    pub async fn segments_page(
        &self,
        app: &ApplicationId,
        after: Option<&SegmentId>,
        limit: u32,
    ) -> Result<Vec<SegmentRecord>, EngineError> {
        let after_name = match after {
            None => None,
            Some(id) => Some(
                self.store
                    .segment(app, id)
                    .await?
                    .ok_or_else(|| {
                        EngineError::bad_request(
                            "invalid_cursor",
                            "`after` names no segment of this application; start again without it",
                        )
                        .field("after")
                    })?
                    .name,
            ),
        };
        Ok(self
            .store
            .segments_after(app, after_name.as_deref(), limit)
            .await?)
    }
}
