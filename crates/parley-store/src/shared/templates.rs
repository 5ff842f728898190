//! `TemplateStore`, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`).

use async_trait::async_trait;
use parley_domain::{ApplicationId, PlatformId, TemplateId};

use super::{Backend, template_from_row};
use crate::templates::TemplateStore;
use crate::{Result, TemplateRecord};

#[async_trait]
impl TemplateStore for Backend {
    async fn template_by_id(
        &self,
        app: &ApplicationId,
        id: &TemplateId,
    ) -> Result<Option<TemplateRecord>> {
        let row = sqlx::query("SELECT * FROM templates WHERE application_id = $1 AND id = $2")
            .bind(app.as_str())
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(template_from_row).transpose()
    }

    async fn template_by_meta_id(
        &self,
        platform: &PlatformId,
        meta_id: &str,
    ) -> Result<Option<TemplateRecord>> {
        let row = sqlx::query(
            "SELECT * FROM templates WHERE platform_id = $1 AND meta_id = $2 ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(platform.as_str())
        .bind(meta_id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(template_from_row).transpose()
    }

    async fn platform_templates(&self, platform: &PlatformId) -> Result<Vec<TemplateRecord>> {
        let rows =
            sqlx::query("SELECT * FROM templates WHERE platform_id = $1 ORDER BY name, language")
                .bind(platform.as_str())
                .fetch_all(self.reader())
                .await?;
        rows.iter().map(template_from_row).collect()
    }
}
