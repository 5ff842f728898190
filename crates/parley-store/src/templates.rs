//! Templates beyond the core upsert and lookup by name: reads by Parley's id and by Meta's id
//! (both include templates marked deleted, so history keeps pointing at them), and the
//! platform's whole set for a sync to find what Meta no longer has.

use async_trait::async_trait;
use parley_domain::{ApplicationId, PlatformId, TemplateId};

use crate::{Result, TemplateRecord};

#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// One template of the application by Parley's id, deleted or not.
    async fn template_by_id(
        &self,
        app: &ApplicationId,
        id: &TemplateId,
    ) -> Result<Option<TemplateRecord>>;
    /// One template of the platform by Meta's id, deleted or not.
    async fn template_by_meta_id(
        &self,
        platform: &PlatformId,
        meta_id: &str,
    ) -> Result<Option<TemplateRecord>>;
    /// Every template of the platform, deleted ones included, by name and language.
    async fn platform_templates(&self, platform: &PlatformId) -> Result<Vec<TemplateRecord>>;
}
