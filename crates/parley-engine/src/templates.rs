//! Templates: Meta is the source of truth; Parley keeps a local copy so every send can be
//! checked without a call. The copy is kept current by a full sync (on connect, on demand and
//! periodically), by Meta's template webhooks, and by Parley's own create, edit and delete,
//! which go to Meta first and change the copy only once Meta agreed.
//!
//! A template Meta no longer has is marked deleted (`deleted_at`), never forgotten: messages
//! keep pointing at it, while sends and lists no longer offer it.

use std::collections::HashSet;
use std::time::Duration;

use parley_domain::{
    ApplicationId, LanguageCode, PlatformId, Template, TemplateCategory, TemplateDraft, TemplateId,
    TemplateStatus, WabaId,
};
use parley_meta::webhook::fields;
use parley_meta::{
    GraphError, TemplateCategoryValue, TemplateComponentsValue, TemplateQualityValue, TemplateRef,
    TemplateStatusValue,
};
use parley_store::{PlatformRecord, TemplateRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{Engine, EngineError, ErrorKind};

/// Keys of Meta's template object that only webhooks bring (pause, rejection and category
/// details); a sync that finds the status unchanged keeps them.
/// Platforms read per page by the periodic sync's walk over every tenant.
pub const PLATFORM_PAGE: u32 = 100;

const WEBHOOK_KEYS: [&str; 7] = [
    "rejected_reason",
    "rejection_info",
    "other_info",
    "disable_info",
    "previous_category",
    "correct_category",
    "category_update_timestamp",
];

/// Largest template example file per type, as Meta's media limits say (§2.6).
const MEDIA_TYPES: [(&str, usize); 5] = [
    ("image/jpeg", 5 * 1024 * 1024),
    ("image/jpg", 5 * 1024 * 1024),
    ("image/png", 5 * 1024 * 1024),
    ("video/mp4", 16 * 1024 * 1024),
    ("application/pdf", 100 * 1024 * 1024),
];

#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    pub synced: usize,
    /// Templates Meta returned that Parley could not read, with the reason.
    pub skipped: Vec<String>,
    /// Local templates Meta no longer has, now marked deleted.
    pub deleted: usize,
}

/// A template to create, in Meta's shape (`POST /{waba}/message_templates`), plus which
/// platform (WhatsApp Business Account) gets it when the application has several.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NewTemplate {
    #[serde(default)]
    pub platform_id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub category: String,
    /// `named` or `positional` (default).
    #[serde(default)]
    pub parameter_format: Option<String>,
    #[serde(default)]
    pub components: Vec<Value>,
}

/// What may change on an existing template (Meta's `POST /{template-id}`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TemplateEdit {
    #[serde(default)]
    pub category: Option<String>,
    /// Replaces every component.
    #[serde(default)]
    pub components: Option<Vec<Value>>,
}

/// One problem of a draft, with the field at fault (`name`, `components[1].text`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateIssue {
    pub field: String,
    pub code: String,
    pub message: String,
}

/// Why a create or edit did not happen: the draft's problems (all of them), or a failure.
#[derive(Debug)]
pub enum TemplateChangeError {
    Invalid(Vec<TemplateIssue>),
    Failed(EngineError),
}

impl From<EngineError> for TemplateChangeError {
    fn from(f: EngineError) -> Self {
        TemplateChangeError::Failed(f)
    }
}

impl From<parley_store::StoreError> for TemplateChangeError {
    fn from(e: parley_store::StoreError) -> Self {
        TemplateChangeError::Failed(e.into())
    }
}

/// A file uploaded to Meta for a template's media header example.
#[derive(Debug, Clone, Serialize)]
pub struct UploadedMedia {
    /// Put it in the header's `example.header_handle` list.
    pub handle: String,
    pub file_name: String,
    pub mime_type: String,
    pub file_length: usize,
}

fn issue(field: impl Into<String>, code: &str, message: impl Into<String>) -> TemplateIssue {
    TemplateIssue {
        field: field.into(),
        code: code.to_owned(),
        message: message.into(),
    }
}

/// Meta refused or could not be reached: a refusal is the caller's to fix (422 with Meta's
/// words), no answer is `meta_unavailable` (the API answers 502).
pub fn meta_failure(action: &str, e: GraphError) -> EngineError {
    match &e {
        GraphError::Api { error, .. } => EngineError::unprocessable(
            "meta_refused",
            format!(
                "Meta refused to {action}: {} (code {})",
                error.description(),
                error.code
            ),
        ),
        _ => EngineError::new(
            ErrorKind::Upstream,
            "meta_unavailable",
            format!("could not {action} at Meta: {e}; try again"),
        ),
    }
}

/// A template id from a URL or a form, parsed at the edge: text that is not a template id is
/// answered like an id no template has.
pub fn template_id(raw: &str) -> Result<TemplateId, EngineError> {
    TemplateId::parse(raw).map_err(|_| not_found(raw))
}

fn not_found(id: &str) -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "template_not_found",
        format!("this application has no template `{id}`; list them with GET /api/v1/templates"),
    )
}

fn rules_draft(draft: &NewTemplate) -> TemplateDraft {
    TemplateDraft {
        name: draft.name.clone(),
        language: draft.language.clone(),
        category: draft.category.clone(),
        parameter_format: draft.parameter_format.clone(),
        components: draft.components.clone(),
    }
}

/// Meta's template JSON for a draft (what `POST /{waba}/message_templates` takes).
fn meta_json(draft: &NewTemplate) -> Value {
    rules_draft(draft).to_meta_json()
}

/// Meta's rules on a draft, every problem at once; then the check that Parley reads the
/// template back (its send-time model), which Meta's rules should already imply.
fn draft_issues(draft: &NewTemplate) -> Vec<TemplateIssue> {
    let issues: Vec<TemplateIssue> = rules_draft(draft)
        .check()
        .into_iter()
        .map(|i| issue(i.field, i.code, i.message))
        .collect();
    if !issues.is_empty() {
        return issues;
    }
    let mut probe = meta_json(draft);
    probe["status"] = json!("PENDING");
    match Template::from_meta_json(&probe) {
        Ok(_) => Vec::new(),
        Err(e) => vec![issue("components", e.code(), e.to_string())],
    }
}

impl Engine {
    /// The platform a template call acts on: the one named, or the application's only one.
    pub async fn template_platform(
        &self,
        app: &ApplicationId,
        platform_id: Option<&str>,
    ) -> Result<PlatformRecord, EngineError> {
        let platforms = self.store.platforms(app).await?;
        match platform_id {
            Some(id) => platforms
                .into_iter()
                .find(|p| p.id.as_str() == id)
                .ok_or_else(|| {
                    EngineError::new(
                        ErrorKind::NotFound,
                        "platform_not_found",
                        format!("this application has no platform `{id}`"),
                    )
                    .field("platform_id")
                }),
            None => {
                let mut platforms = platforms;
                match platforms.len() {
                    1 => Ok(platforms.remove(0)),
                    0 => Err(EngineError::new(
                        ErrorKind::Conflict,
                        "no_platform",
                        "this application has no WhatsApp Business Account yet: connect one first",
                    )),
                    _ => Err(EngineError::unprocessable(
                        "platform_required",
                        "this application has several WhatsApp Business Accounts: say which one with `platform_id`",
                    )
                    .field("platform_id")),
                }
            }
        }
    }

    /// Reads every template of the platform's WABA and stores it; local templates Meta no
    /// longer has are marked deleted.
    pub async fn sync_templates(
        &self,
        app: &ApplicationId,
        platform_id: &PlatformId,
    ) -> Result<SyncReport, EngineError> {
        let platform = self
            .store
            .platform(app, platform_id)
            .await?
            .ok_or_else(|| {
                EngineError::new(
                    ErrorKind::NotFound,
                    "platform_not_found",
                    format!("no platform {platform_id}"),
                )
            })?;
        let token = self.store.platform_token(platform_id).await?;
        let started = self.now();
        let raw = self
            .graph
            .all_templates(&token, platform.waba_id.as_str())
            .await
            .map_err(|e| {
                EngineError::new(
                    ErrorKind::Upstream,
                    "meta_unavailable",
                    format!("could not read templates from Meta: {e}"),
                )
            })?;
        let mut report = SyncReport::default();
        let now = self.now();
        let local = self.store.platform_templates(platform_id).await?;
        let mut seen: HashSet<(String, String)> = HashSet::new();
        for mut value in raw {
            let name = value.get("name").and_then(Value::as_str).unwrap_or("?");
            let language = value
                .get("language")
                .and_then(Value::as_str)
                .unwrap_or("")
                .replace('-', "_");
            seen.insert((name.to_owned(), language.clone()));
            match Template::from_meta_json(&value) {
                Ok(template) => {
                    let existing = local.iter().find(|t| {
                        t.template.name == template.name && t.template.language == template.language
                    });
                    if let (Some(old), Some(obj)) = (existing, value.as_object_mut())
                        && old.template.status == template.status
                    {
                        for key in WEBHOOK_KEYS {
                            if let Some(v) = old.raw.get(key).filter(|_| !obj.contains_key(key)) {
                                obj.insert(key.to_owned(), v.clone());
                            }
                        }
                    }
                    let record = TemplateRecord {
                        id: existing.map_or_else(TemplateId::new, |e| e.id.clone()),
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
                    tracing::warn!(template = name, error = %e, "template skipped in sync");
                    report.skipped.push(format!("{name}: {e}"));
                }
            }
        }
        // Only what existed before this sync read Meta's list can be judged gone: a template
        // created meanwhile is newer than the list.
        for mut gone in local.into_iter().filter(|t| {
            t.deleted_at.is_none()
                && t.updated_at < started
                && !seen.contains(&(
                    t.template.name.as_str().to_owned(),
                    t.template.language.as_str().to_owned(),
                ))
        }) {
            mark_deleted(&mut gone, now);
            self.store.upsert_template(&gone).await?;
            report.deleted += 1;
        }
        Ok(report)
    }

    /// Syncs every platform of every application, walking them in pages by id (`PLATFORM_PAGE`
    /// at a time: the round's memory does not grow with the tenants); failures are logged, not
    /// fatal. Returns how many platforms were synced.
    pub async fn sync_all_templates(&self) -> usize {
        let mut after: Option<PlatformId> = None;
        let mut synced = 0;
        loop {
            let page = match self
                .store
                .platforms_after(after.as_ref(), PLATFORM_PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "template sync: cannot list platforms");
                    return synced;
                }
            };
            for platform in &page {
                match self
                    .sync_templates(&platform.application_id, &platform.id)
                    .await
                {
                    Ok(r) => {
                        synced += 1;
                        tracing::debug!(platform = %platform.id, synced = r.synced, deleted = r.deleted, "templates synced")
                    }
                    Err(e) => {
                        tracing::warn!(platform = %platform.id, error = %e, "template sync failed")
                    }
                }
            }
            if page.len() < PLATFORM_PAGE as usize {
                return synced;
            }
            after = page.last().map(|p| p.id.clone());
        }
    }

    /// One template by Parley's id (deleted ones too).
    pub async fn template_by_id(
        &self,
        app: &ApplicationId,
        id: &TemplateId,
    ) -> Result<TemplateRecord, EngineError> {
        self.store
            .template_by_id(app, id)
            .await?
            .ok_or_else(|| not_found(id.as_str()))
    }

    /// Checks the draft with Meta's rules (every problem at once), submits it to Meta and
    /// stores it `PENDING`; Meta's review arrives by webhook.
    pub async fn create_template(
        &self,
        app: &ApplicationId,
        draft: NewTemplate,
    ) -> Result<TemplateRecord, TemplateChangeError> {
        let mut issues = draft_issues(&draft);
        let platform = self
            .template_platform(app, draft.platform_id.as_deref())
            .await?;
        let language = LanguageCode::parse(&draft.language)
            .map(|l| l.as_str().to_owned())
            .unwrap_or_else(|_| draft.language.clone());
        if issues.is_empty() {
            let exists = self
                .store
                .platform_templates(&platform.id)
                .await?
                .into_iter()
                .any(|t| {
                    t.deleted_at.is_none()
                        && t.template.name.as_str() == draft.name
                        && t.template.language.as_str() == language
                });
            if exists {
                issues.push(issue(
                    "language",
                    "template_exists",
                    format!(
                        "a template `{}` in `{language}` exists already: edit it, or pick another name or language",
                        draft.name
                    ),
                ));
            }
        }
        if !issues.is_empty() {
            return Err(TemplateChangeError::Invalid(issues));
        }
        let body = meta_json(&draft);
        let token = self.store.platform_token(&platform.id).await?;
        let created = self
            .graph
            .create_template(&token, platform.waba_id.as_str(), &body)
            .await
            .map_err(|e| meta_failure("create the template", e))?;
        // Meta stores some kinds differently from the draft (authentication templates get a
        // fixed body with the code as `{{1}}` and the OTP button as a URL button), so keep
        // what Meta answers for the new id; the draft is the fallback if the read fails.
        let raw = match self.graph.get_template(&token, &created.id).await {
            Ok(stored) if stored.get("components").is_some() => stored,
            _ => {
                let mut raw = body;
                raw["id"] = json!(created.id);
                raw["status"] = json!(created.status.as_deref().unwrap_or("PENDING"));
                if let Some(c) = &created.category {
                    raw["category"] = json!(c);
                }
                raw["parameter_format"] = json!(
                    draft
                        .parameter_format
                        .as_deref()
                        .unwrap_or("positional")
                        .to_ascii_uppercase()
                );
                raw
            }
        };
        let template = Template::from_meta_json(&raw).map_err(|e| {
            EngineError::internal(format!("created template does not read back: {e}"))
        })?;
        let record = TemplateRecord {
            id: TemplateId::new(),
            application_id: app.clone(),
            platform_id: platform.id.clone(),
            meta_id: Some(created.id),
            template,
            raw,
            updated_at: self.now(),
            deleted_at: None,
        };
        self.store.upsert_template(&record).await?;
        // A re-created name/language keeps its row (and id); read back what is stored.
        Ok(self
            .store
            .template_by_meta_id(&platform.id, record.meta_id.as_deref().unwrap_or_default())
            .await?
            .unwrap_or(record))
    }

    /// Edits where Meta allows it: APPROVED, REJECTED or PAUSED templates; the category only
    /// when not approved. Meta reviews the edit again, so the template goes back to PENDING.
    pub async fn edit_template(
        &self,
        app: &ApplicationId,
        id: &TemplateId,
        edit: TemplateEdit,
    ) -> Result<TemplateRecord, TemplateChangeError> {
        let mut record = self.template_by_id(app, id).await?;
        let status = record.template.status.clone();
        if record.deleted_at.is_some() {
            return Err(EngineError::unprocessable(
                "template_deleted",
                "this template was deleted; create a new one",
            )
            .into());
        }
        if !matches!(
            status,
            TemplateStatus::Approved | TemplateStatus::Rejected | TemplateStatus::Paused
        ) {
            return Err(EngineError::unprocessable(
                "template_not_editable",
                format!(
                    "a {status} template cannot be edited: Meta allows edits only of APPROVED, REJECTED or PAUSED templates"
                ),
            )
            .field("status")
            .into());
        }
        let mut issues = Vec::new();
        if edit.category.is_none() && edit.components.is_none() {
            issues.push(issue(
                "components",
                "edit_empty",
                "give `components` (replacing all of them) and/or `category`",
            ));
        }
        let current = record.template.category;
        let category = match edit.category.as_deref().map(TemplateCategory::parse) {
            None => None,
            Some(Err(e)) => {
                issues.push(issue("category", e.code(), e.to_string()));
                None
            }
            Some(Ok(c)) => Some(c),
        };
        if status == TemplateStatus::Approved && category.is_some_and(|c| c != current) {
            issues.push(issue(
                "category",
                "category_locked",
                "Meta does not allow changing the category of an approved template",
            ));
        }
        let draft = NewTemplate {
            platform_id: None,
            name: record.template.name.to_string(),
            language: record.template.language.to_string(),
            category: category.unwrap_or(current).as_str().to_owned(),
            parameter_format: record
                .raw
                .get("parameter_format")
                .and_then(Value::as_str)
                .map(str::to_owned),
            components: edit.components.clone().unwrap_or_else(|| {
                record
                    .raw
                    .get("components")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            }),
        };
        if edit.components.is_some() {
            issues.extend(draft_issues(&draft).into_iter().filter(|i| {
                i.field != "name" && i.field != "language" && i.field != "parameter_format"
            }));
        }
        if !issues.is_empty() {
            return Err(TemplateChangeError::Invalid(issues));
        }
        let meta_id = record.meta_id.clone().ok_or_else(|| {
            EngineError::unprocessable(
                "template_not_at_meta",
                "this template has no Meta id yet; sync templates and try again",
            )
        })?;
        let mut changes = json!({});
        if let Some(c) = category {
            changes["category"] = json!(c.as_str());
        }
        if let Some(components) = &edit.components {
            changes["components"] = json!(components);
        }
        let token = self.store.platform_token(&record.platform_id).await?;
        self.graph
            .edit_template(&token, &meta_id, &changes)
            .await
            .map_err(|e| meta_failure("edit the template", e))?;
        if let Some(raw) = record.raw.as_object_mut() {
            raw.insert("category".into(), json!(draft.category));
            raw.insert("components".into(), json!(draft.components));
            raw.insert("status".into(), json!("PENDING"));
            for key in ["rejected_reason", "rejection_info", "other_info"] {
                raw.remove(key);
            }
        }
        // As for creation: Meta's stored shape wins over the draft when it can be read.
        if let Ok(stored) = self.graph.get_template(&token, &meta_id).await
            && stored.get("components").is_some()
        {
            record.raw = stored;
        }
        record.template = Template::from_meta_json(&record.raw)
            .map_err(|e| EngineError::internal(format!("edited template does not read: {e}")))?;
        record.updated_at = self.now();
        self.store.upsert_template(&record).await?;
        Ok(record)
    }

    /// Deletes one template (one language) at Meta by its id, then marks it deleted here.
    pub async fn delete_template(
        &self,
        app: &ApplicationId,
        id: &TemplateId,
    ) -> Result<TemplateRecord, EngineError> {
        let mut record = self.template_by_id(app, id).await?;
        if record.deleted_at.is_some() {
            return Ok(record);
        }
        let token = self.store.platform_token(&record.platform_id).await?;
        let platform = self
            .store
            .platform(app, &record.platform_id)
            .await?
            .ok_or_else(|| not_found(id.as_str()))?;
        self.graph
            .delete_template(
                &token,
                platform.waba_id.as_str(),
                record.template.name.as_str(),
                record.meta_id.as_deref(),
            )
            .await
            .map_err(|e| meta_failure("delete the template", e))?;
        mark_deleted(&mut record, self.now());
        self.store.upsert_template(&record).await?;
        Ok(record)
    }

    /// Deletes every language of a name, on every platform of the application that has it.
    pub async fn delete_templates_named(
        &self,
        app: &ApplicationId,
        name: &str,
    ) -> Result<Vec<TemplateRecord>, EngineError> {
        let mut matching: Vec<TemplateRecord> = self
            .store
            .templates(app)
            .await?
            .into_iter()
            .filter(|t| t.deleted_at.is_none() && t.template.name.as_str() == name)
            .collect();
        if matching.is_empty() {
            return Err(EngineError::new(
                ErrorKind::NotFound,
                "template_not_found",
                format!("this application has no template named `{name}`"),
            )
            .field("name"));
        }
        let mut platforms: Vec<PlatformId> =
            matching.iter().map(|t| t.platform_id.clone()).collect();
        platforms.dedup();
        for platform_id in platforms {
            let platform = self
                .store
                .platform(app, &platform_id)
                .await?
                .ok_or_else(|| not_found(name))?;
            let token = self.store.platform_token(&platform_id).await?;
            self.graph
                .delete_template(&token, platform.waba_id.as_str(), name, None)
                .await
                .map_err(|e| meta_failure("delete the template", e))?;
        }
        let now = self.now();
        for record in &mut matching {
            mark_deleted(record, now);
            self.store.upsert_template(record).await?;
        }
        Ok(matching)
    }

    /// Sends a file to Meta's Resumable Upload API and returns the handle for a media
    /// header's `example.header_handle`.
    pub async fn upload_template_media(
        &self,
        app: &ApplicationId,
        platform_id: Option<&str>,
        file_name: &str,
        mime_type: &str,
        bytes: bytes::Bytes,
    ) -> Result<UploadedMedia, EngineError> {
        let mime = mime_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some((_, max)) = MEDIA_TYPES.iter().find(|(m, _)| *m == mime) else {
            return Err(EngineError::unprocessable(
                "media_type_unsupported",
                format!(
                    "`{mime}` cannot be a template header example: send image/jpeg or image/png (IMAGE), video/mp4 (VIDEO) or application/pdf (DOCUMENT) as the Content-Type"
                ),
            )
            .field("content_type"));
        };
        if bytes.is_empty() || bytes.len() > *max {
            return Err(EngineError::unprocessable(
                "media_size_invalid",
                format!(
                    "the file has {} bytes; Meta takes 1 to {max} bytes for {mime}",
                    bytes.len()
                ),
            )
            .field("file"));
        }
        let platform = self.template_platform(app, platform_id).await?;
        let token = self.store.platform_token(&platform.id).await?;
        let app_id = self
            .graph
            .app_id_of_token(&token)
            .await
            .map_err(|e| meta_failure("identify the Meta app of the token", e))?;
        let file_length = bytes.len();
        let handle = self
            .graph
            .upload_file(&token, &app_id, file_name, &mime, bytes)
            .await
            .map_err(|e| meta_failure("upload the file", e))?;
        Ok(UploadedMedia {
            handle,
            file_name: file_name.to_owned(),
            mime_type: mime,
            file_length,
        })
    }
}

fn mark_deleted(record: &mut TemplateRecord, now: i64) {
    record.deleted_at = Some(now);
    record.updated_at = now;
    record.template.status = TemplateStatus::Deleted;
    if let Some(raw) = record.raw.as_object_mut() {
        raw.insert("status".into(), json!("DELETED"));
    }
}

/// Runs a full sync of every platform each `interval`, until `shutdown` (the first one comes
/// after one interval: connecting a platform syncs it already).
pub async fn run_periodic_sync(engine: Engine, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // One node syncs: the one holding the job's lease.
            _ = tokio::time::sleep(interval) => {
                if engine.leases.holds(crate::leases::JOB_TEMPLATE_SYNC) {
                    engine.sync_all_templates().await;
                }
            }
        }
    }
}

// Meta's template webhooks, applied to the local copy: status (with rejection, pause and
// disable details), quality, category changes and component changes. A template Parley has
// not seen yet triggers a sync of that WABA instead.

/// The template a template webhook names, and the platform of its WABA. `None` when the WABA is
/// not Parley's (noted), or when Parley does not know the template yet: then the WABA's
/// templates are synced, which brings it with its current state.
async fn webhook_template(
    engine: &Engine,
    waba_id: &str,
    field: &str,
    template: &TemplateRef,
    notes: &mut Vec<String>,
) -> parley_store::Result<Option<(PlatformRecord, TemplateRecord)>> {
    // The entry id is Meta's wire text: one that is not a WABA id names no platform of ours.
    let platform = match WabaId::parse(waba_id) {
        Ok(waba) => crate::webhooks::platform_by_waba(engine, &waba).await?,
        Err(_) => None,
    };
    let Some(platform) = platform else {
        notes.push(format!("{field} for unknown WABA {waba_id}"));
        return Ok(None);
    };
    let mut record = match &template.id {
        Some(id) => engine.store.template_by_meta_id(&platform.id, id).await?,
        None => None,
    };
    if record.is_none()
        && let (Some(name), Some(language)) = (&template.name, &template.language)
    {
        let language = language.replace('-', "_");
        record = engine
            .store
            .template(&platform.application_id, name, &language)
            .await?;
    }
    if record.is_none() {
        // Created outside Parley (e.g. in WhatsApp Manager): fetch it with the rest.
        if let Err(e) = engine
            .sync_templates(&platform.application_id, &platform.id)
            .await
        {
            notes.push(format!("{field}: template unknown and sync failed: {e}"));
        }
    }
    Ok(record.map(|r| (platform, r)))
}

/// Stores a template a webhook changed.
async fn save_webhook_template(
    engine: &Engine,
    mut record: TemplateRecord,
    now: i64,
) -> parley_store::Result<()> {
    record.updated_at = now;
    engine.store.upsert_template(&record).await
}

/// Keeps one of Meta's details in the template's raw object, when Meta sent it.
fn keep_detail(raw: &mut serde_json::Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        raw.insert(key.to_owned(), value);
    }
}

/// `message_template_status_update`: the new status, with the details of why.
pub(crate) async fn apply_status_webhook(
    engine: &Engine,
    waba_id: &str,
    value: &TemplateStatusValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let field = fields::TEMPLATE_STATUS;
    let Some((_, mut record)) =
        webhook_template(engine, waba_id, field, &value.template, notes).await?
    else {
        return Ok(());
    };
    let now = engine.now();
    let Some(event) = value.event.as_deref() else {
        notes.push("template status update without event".into());
        return Ok(());
    };
    let status = TemplateStatus::parse(event);
    // Meta does not deliver webhooks in order. REINSTATED (active again after a pause) or
    // UNARCHIVED coming to an APPROVED template can only be the earlier event of the pair
    // arriving late: it must not take the approval back.
    if matches!(
        status,
        TemplateStatus::Reinstated | TemplateStatus::Unarchived
    ) && record.template.status == TemplateStatus::Approved
    {
        notes.push(format!(
            "{event} for an approved template ignored: it came after the approval"
        ));
        return Ok(());
    }
    crate::events::template_status(engine, &record, status.as_str(), value.reason.as_deref())
        .await?;
    record.template.status = status;
    if let Some(raw) = record.raw.as_object_mut() {
        raw.insert("status".into(), json!(event));
        // A new status replaces the details of the previous one.
        for key in ["rejection_info", "other_info", "disable_info"] {
            raw.remove(key);
        }
        keep_detail(
            raw,
            "rejected_reason",
            value.reason.as_ref().map(|r| json!(r)),
        );
        keep_detail(raw, "other_info", value.other_info.clone());
        keep_detail(raw, "rejection_info", value.rejection_info.clone());
        keep_detail(raw, "disable_info", value.disable_info.clone());
    }
    if event.eq_ignore_ascii_case("DELETED") {
        record.deleted_at = Some(now);
    }
    save_webhook_template(engine, record, now).await
}

/// `message_template_quality_update`: the new quality score.
pub(crate) async fn apply_quality_webhook(
    engine: &Engine,
    waba_id: &str,
    value: &TemplateQualityValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let field = fields::TEMPLATE_QUALITY;
    let Some((_, mut record)) =
        webhook_template(engine, waba_id, field, &value.template, notes).await?
    else {
        return Ok(());
    };
    let now = engine.now();
    if let (Some(score), Some(raw)) = (&value.new_quality_score, record.raw.as_object_mut()) {
        raw.insert("quality_score".into(), json!({"score": score}));
    }
    save_webhook_template(engine, record, now).await
}

/// `template_category_update`: a category change, announced or done.
pub(crate) async fn apply_category_webhook(
    engine: &Engine,
    waba_id: &str,
    value: &TemplateCategoryValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let field = fields::TEMPLATE_CATEGORY;
    let Some((_, mut record)) =
        webhook_template(engine, waba_id, field, &value.template, notes).await?
    else {
        return Ok(());
    };
    let now = engine.now();
    if let Some(raw) = record.raw.as_object_mut() {
        let text = |s: &Option<String>| s.as_ref().map(|s| json!(s));
        keep_detail(raw, "previous_category", text(&value.previous_category));
        keep_detail(raw, "correct_category", text(&value.correct_category));
        keep_detail(
            raw,
            "category_update_timestamp",
            value.category_update_timestamp.clone(),
        );
    }
    // `previous_category` marks a completed change; without it the change is only announced
    // (`correct_category` from `category_update_timestamp` on).
    if let (Some(new), Some(_)) = (&value.new_category, &value.previous_category) {
        match TemplateCategory::parse(new) {
            Ok(c) => {
                record.template.category = c;
                if let Some(raw) = record.raw.as_object_mut() {
                    raw.insert("category".into(), json!(c.as_str()));
                }
            }
            Err(e) => notes.push(format!("{field}: {e}")),
        }
    }
    save_webhook_template(engine, record, now).await
}

/// `message_template_components_update`: the webhook describes the new content loosely, so
/// Parley reads Meta's exact template object instead.
pub(crate) async fn apply_components_webhook(
    engine: &Engine,
    waba_id: &str,
    value: &TemplateComponentsValue,
    notes: &mut Vec<String>,
) -> parley_store::Result<()> {
    let field = fields::TEMPLATE_COMPONENTS;
    let Some((platform, mut record)) =
        webhook_template(engine, waba_id, field, &value.template, notes).await?
    else {
        return Ok(());
    };
    let now = engine.now();
    let fetched = match &record.meta_id {
        Some(id) => match engine.store.platform_token(&platform.id).await {
            Ok(token) => engine.graph.get_template(&token, id).await.ok(),
            Err(_) => None,
        },
        None => None,
    };
    match fetched.map(|v| (Template::from_meta_json(&v), v)) {
        Some((Ok(template), v)) => {
            record.template = template;
            if let Some(raw) = record.raw.as_object_mut()
                && let Some(fresh) = v.as_object()
            {
                for (k, val) in fresh {
                    raw.insert(k.clone(), val.clone());
                }
            }
        }
        Some((Err(e), _)) => notes.push(format!("{field}: template does not read: {e}")),
        None => notes.push(format!(
            "{field}: could not fetch the template from Meta; the next sync applies it"
        )),
    }
    save_webhook_template(engine, record, now).await
}
