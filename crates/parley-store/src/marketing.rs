//! The Marketing Messages API (#14 part 5; migration 0021): the platform setting that sends
//! marketing templates through `POST /<PHONE_NUMBER_ID>/marketing_messages`, which of a
//! round's messages go that way (marketing-category templates, with their campaign's
//! time-to-live), and which API each send went through.

use std::collections::BTreeMap;

use async_trait::async_trait;
use parley_domain::{ApplicationId, CampaignId, MessageId, PlatformId};
use serde::Serialize;

use crate::{Millis, Result};

/// `messages.sent_via` of a send through `/marketing_messages`.
pub const SENT_VIA_MARKETING_MESSAGES: &str = "marketing_messages";

/// Which API a message went through, as the message API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessageRoute {
    /// `marketing_messages`, or `None` for the Cloud API `/messages`.
    pub sent_via: Option<String>,
    /// Sent through `/marketing_messages` and Meta delivered it through the Cloud API
    /// (`product_policy` `CLOUD_API_FALLBACK`): its `pricing.category` is `marketing`, not
    /// `marketing_lite`.
    pub fell_back: bool,
}

/// A campaign's sends through the Marketing Messages API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CampaignRoutes {
    /// Messages sent through `/marketing_messages`.
    pub via_marketing_messages: u64,
    /// Of those, the ones Meta delivered through the Cloud API instead.
    pub fell_back_to_cloud_api: u64,
}

#[async_trait]
pub trait MarketingStore: Send + Sync {
    /// Turns the platform's Marketing Messages API sending on or off.
    async fn set_platform_marketing_messages(
        &self,
        app: &ApplicationId,
        id: &PlatformId,
        on: bool,
        now: Millis,
    ) -> Result<()>;
    /// True when the platform sends marketing templates through `/marketing_messages`.
    async fn platform_marketing_messages(&self, id: &PlatformId) -> Result<bool>;
    /// Of `ids`, the template messages whose template is of category MARKETING on the
    /// message's platform, with their campaign's time-to-live.
    async fn marketing_routes(&self, ids: &[MessageId])
    -> Result<BTreeMap<MessageId, Option<i64>>>;
    /// Notes which API a send went through (`SENT_VIA_MARKETING_MESSAGES`).
    async fn mark_sent_via(&self, id: &MessageId, via: &str) -> Result<()>;
    /// The route of each of the application's messages in `ids`.
    async fn message_routes(
        &self,
        app: &ApplicationId,
        ids: &[MessageId],
    ) -> Result<BTreeMap<MessageId, MessageRoute>>;
    /// A campaign's sends through the Marketing Messages API.
    async fn campaign_routes(&self, campaign: &CampaignId) -> Result<CampaignRoutes>;
}
