//! Template sync: Meta is the source of truth for templates; Parley keeps a local copy so
//! every send can be checked without a call.

use parley_domain::{PlatformId, Template, TemplateId};
use parley_store::TemplateRecord;

use crate::{ApiFailure, Engine};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    pub synced: usize,
    /// Templates Meta returned that Parley could not read, with the reason.
    pub skipped: Vec<String>,
}

impl Engine {
    /// Reads every template of the platform's WABA and stores it.
    pub async fn sync_templates(&self, platform_id: &PlatformId) -> Result<SyncReport, ApiFailure> {
        let platform = self.store.platform(platform_id).await?.ok_or_else(|| {
            ApiFailure::new(
                crate::FailureKind::NotFound,
                "platform_not_found",
                format!("no platform {platform_id}"),
            )
        })?;
        let token = self.store.platform_token(platform_id).await?;
        let raw = self
            .graph
            .all_templates(&token, &platform.waba_id)
            .await
            .map_err(|e| {
                ApiFailure::new(
                    crate::FailureKind::Internal,
                    "meta_unavailable",
                    format!("could not read templates from Meta: {e}"),
                )
            })?;
        let mut report = SyncReport::default();
        let now = self.now();
        for value in raw {
            match Template::from_meta_json(&value) {
                Ok(template) => {
                    let existing = self
                        .store
                        .template(
                            &platform.application_id,
                            template.name.as_str(),
                            template.language.as_str(),
                        )
                        .await?;
                    let record = TemplateRecord {
                        id: existing.map_or_else(TemplateId::new, |e| e.id),
                        application_id: platform.application_id.clone(),
                        platform_id: platform_id.clone(),
                        meta_id: value.get("id").and_then(|v| v.as_str()).map(str::to_owned),
                        template,
                        raw: value,
                        updated_at: now,
                        deleted_at: None,
                    };
                    self.store.upsert_template(&record).await?;
                    report.synced += 1;
                }
                Err(e) => {
                    let name = value.get("name").and_then(|v| v.as_str()).unwrap_or("?");
                    tracing::warn!(template = name, error = %e, "template skipped in sync");
                    report.skipped.push(format!("{name}: {e}"));
                }
            }
        }
        Ok(report)
    }
}
