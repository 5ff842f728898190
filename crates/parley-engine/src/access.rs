//! Who may use the API and what was changed: API tokens (created with scopes and an optional
//! expiry, shown once, revoked; the last use recorded at most once a minute) and the audit log
//! (one entry per change, kept for `EngineConfig::audit_retention`).

use std::time::Duration;

use parley_domain::{ApplicationId, AuditEntryId, Scopes, TokenId};
use parley_store::access::{AuditEntry, NewToken, TokenRecord};
use tokio_util::sync::CancellationToken;

use crate::auth::{generate_api_token, hash_api_token};
use crate::{Engine, EngineError, ErrorKind};

/// A token's last use is written at most once per this many milliseconds.
pub const LAST_USED_GRANULARITY_MS: i64 = 60_000;
/// Longest token label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;
/// Past this many remembered last uses, those older than a minute are forgotten (one entry
/// per token seen: revoked and expired ones stayed for the life of the process).
const TOUCHES_KEPT: usize = 1_024;
/// Live API tokens (not revoked, not expired) an application has at most: each has a rate
/// limit of its own, so minting tokens without end multiplied the application's rate. One
/// more is 409 `token_limit_reached`.
pub const MAX_LIVE_TOKENS: u64 = 100;

/// What a presented token is.
#[derive(Debug, Clone)]
pub enum TokenCheck {
    Valid(TokenRecord),
    /// Parley never issued it.
    Unknown,
    Expired,
    Revoked,
}

/// A token to create.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub label: String,
    pub scopes: Scopes,
    /// Unix millis; must be in the future.
    pub expires_at: Option<i64>,
}

/// A token just created: its record and the secret, which is shown this once.
pub struct CreatedToken {
    pub record: TokenRecord,
    pub secret: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("record", &self.record)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A token id from a path; text that is no id reads like an id nothing has.
pub fn token_id(raw: &str) -> Result<TokenId, EngineError> {
    TokenId::parse(raw).map_err(|_| token_not_found(raw))
}

fn token_not_found(id: &str) -> EngineError {
    EngineError::new(
        ErrorKind::NotFound,
        "token_not_found",
        format!(
            "this application has no API token `{}`; list yours with GET /api/v1/tokens",
            id.chars().take(64).collect::<String>()
        ),
    )
}

impl Engine {
    /// What `secret` is. A valid token's last use is recorded (in the background, at most
    /// once a minute), so authenticating costs one read and rarely a write.
    pub async fn check_api_token(&self, secret: &str) -> Result<TokenCheck, EngineError> {
        let Some(token) = self.store.token_by_hash(&hash_api_token(secret)).await? else {
            return Ok(TokenCheck::Unknown);
        };
        let now = self.now();
        if token.revoked_at.is_some() {
            return Ok(TokenCheck::Revoked);
        }
        if token.expires_at.is_some_and(|at| at <= now) {
            return Ok(TokenCheck::Expired);
        }
        let due = match self.token_touches.lock() {
            Ok(mut touches) => {
                let last = touches.get(&token.id).copied().or(token.last_used_at);
                let due = last.is_none_or(|at| now - at >= LAST_USED_GRANULARITY_MS);
                if due {
                    if touches.len() >= TOUCHES_KEPT {
                        // Entries older than the granularity no longer hold a write back.
                        touches.retain(|_, at| now - *at < LAST_USED_GRANULARITY_MS);
                    }
                    touches.insert(token.id.clone(), now);
                }
                due
            }
            Err(_) => false,
        };
        if due {
            let store = self.store.clone();
            let id = token.id.clone();
            tokio::spawn(async move {
                if let Err(e) = store.touch_token(&id, now, LAST_USED_GRANULARITY_MS).await {
                    tracing::warn!(error = %e, token = %id, "cannot record the token's last use");
                }
            });
        }
        Ok(TokenCheck::Valid(token))
    }

    /// Creates a token for the application; the secret is in the answer only.
    pub async fn create_token(
        &self,
        app: &ApplicationId,
        request: TokenRequest,
    ) -> Result<CreatedToken, EngineError> {
        let label = request.label.trim().to_owned();
        if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
            return Err(EngineError::unprocessable(
                "invalid_label",
                format!(
                    "give the token a label of 1 to {MAX_LABEL_CHARS} characters that says who uses it"
                ),
            )
            .field("label"));
        }
        let now = self.now();
        if request.expires_at.is_some_and(|at| at <= now) {
            return Err(EngineError::unprocessable(
                "invalid_expiry",
                "the expiry must be in the future",
            )
            .field("expires_at"));
        }
        let secret = generate_api_token();
        let new = NewToken {
            id: TokenId::new(),
            application_id: app.clone(),
            token_hash: hash_api_token(&secret),
            label,
            scopes: request.scopes,
            expires_at: request.expires_at,
            now,
        };
        if !self.store.insert_token(&new, MAX_LIVE_TOKENS).await? {
            return Err(EngineError::new(
                ErrorKind::Conflict,
                "token_limit_reached",
                format!(
                    "an application has at most {MAX_LIVE_TOKENS} live API tokens; revoke one it no longer uses (POST /api/v1/tokens/{{id}}/revoke)"
                ),
            ));
        }
        Ok(CreatedToken {
            record: TokenRecord {
                id: new.id,
                application_id: new.application_id,
                label: new.label,
                scopes: new.scopes,
                created_at: now,
                expires_at: new.expires_at,
                last_used_at: None,
                revoked_at: None,
            },
            secret,
        })
    }

    /// The application's tokens, newest first (revoked ones too).
    pub async fn tokens(
        &self,
        app: &ApplicationId,
        after: Option<&TokenId>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>, EngineError> {
        Ok(self.store.tokens(app, after, limit).await?)
    }

    /// Revokes a token of the application: it answers 401 from now on. Revoking a revoked
    /// token changes nothing.
    pub async fn revoke_token(
        &self,
        app: &ApplicationId,
        id: &TokenId,
    ) -> Result<TokenRecord, EngineError> {
        self.store
            .revoke_token(app, id, self.now())
            .await?
            .ok_or_else(|| token_not_found(id.as_str()))
    }

    /// Records one change. A failure is logged, not raised: the change itself is done.
    pub async fn record_audit(&self, mut entry: AuditEntry) {
        entry.at = self.now();
        if let Err(e) = self.store.insert_audit(&entry).await {
            tracing::error!(error = %e, action = %entry.action, "cannot write the audit log");
        }
    }

    /// The application's audit log, newest first.
    pub async fn audit_entries(
        &self,
        app: &ApplicationId,
        after: Option<&AuditEntryId>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, EngineError> {
        Ok(self.store.audit_entries(app, after, limit).await?)
    }
}

/// Deletes audit entries older than the retention, processed webhook bodies older than
/// `webhook_retention`, finished outgoing events older than `events.retention` and finished
/// imports older than `import_retention`, at start and then hourly (the webhook and event
/// sweeps a step of `PRUNE_STEP` rows at a time, the imports `PRUNE_IMPORTS` at a time).
pub async fn run_audit_retention(engine: Engine, shutdown: CancellationToken) {
    let retention = i64::try_from(engine.config.audit_retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        // One node prunes: the one holding the job's lease; the others look again a lease
        // round later.
        if !engine
            .until_held(crate::leases::JOB_AUDIT_RETENTION, &shutdown)
            .await
        {
            return;
        }
        let before = engine.now().saturating_sub(retention);
        match engine.store.prune_audit(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "audit entries past their retention deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the audit log"),
        }
        if let Err(e) = prune_stored(&engine, &shutdown).await {
            tracing::warn!(error = %e, "cannot prune old webhooks, events or imports");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// Rows a retention step looks at.
const PRUNE_STEP: u32 = 5_000;
/// Imports a retention step deletes (each with its rejected rows).
const PRUNE_IMPORTS: u32 = 100;

/// What one retention sweep deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub webhooks: u64,
    pub events: u64,
    pub imports: u64,
}

impl Engine {
    /// One sweep of the webhook bodies, outgoing events and imports past their retention
    /// (the hourly job's; also for operators' tools and tests): what it deleted.
    pub async fn prune_retained(&self) -> Result<Pruned, EngineError> {
        Ok(prune_stored(self, &CancellationToken::new()).await?)
    }
}

/// One sweep of the webhook bodies, outgoing events and imports past their retention.
async fn prune_stored(
    engine: &Engine,
    shutdown: &CancellationToken,
) -> Result<Pruned, parley_store::StoreError> {
    let cutoff = |keep: Duration| {
        engine
            .now()
            .saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
    };
    let mut counts = Pruned::default();
    if let Some(keep) = engine.config.webhook_retention {
        let before = cutoff(keep);
        counts.webhooks = sweep(shutdown, |after| {
            engine.store.prune_webhook_events(before, after, PRUNE_STEP)
        })
        .await?;
        if counts.webhooks > 0 {
            tracing::info!(
                deleted = counts.webhooks,
                "webhooks past their retention deleted"
            );
        }
    }
    if let Some(keep) = engine.config.events.retention {
        let before = cutoff(keep);
        counts.events = sweep(shutdown, |after| {
            engine.store.prune_events(before, after, PRUNE_STEP)
        })
        .await?;
        if counts.events > 0 {
            tracing::info!(
                deleted = counts.events,
                "outgoing events past their retention deleted"
            );
        }
    }
    if let Some(keep) = engine.config.import_retention {
        let before = cutoff(keep);
        loop {
            let n = engine
                .store
                .prune_import_jobs(before, PRUNE_IMPORTS)
                .await?;
            counts.imports += n;
            if n < u64::from(PRUNE_IMPORTS) || shutdown.is_cancelled() {
                break;
            }
            tokio::task::yield_now().await;
        }
        if counts.imports > 0 {
            tracing::info!(
                deleted = counts.imports,
                "contact imports past their retention deleted"
            );
        }
    }
    Ok(counts)
}

/// Runs a retention sweep's steps from the oldest row until one says nothing older is left
/// (or shutdown comes); how many rows it deleted.
async fn sweep<F, Fut>(shutdown: &CancellationToken, mut step: F) -> parley_store::Result<u64>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = parley_store::Result<parley_store::Pruned>>,
{
    let (mut after, mut deleted) = (i64::MIN, 0);
    loop {
        let done = step(after).await?;
        deleted += done.deleted;
        match done.next {
            Some(next) if !shutdown.is_cancelled() => after = next,
            _ => return Ok(deleted),
        }
        tokio::task::yield_now().await;
    }
}
