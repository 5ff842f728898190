//! Who may use the API and what was changed: API tokens (scopes, expiry, last use,
//! revocation) and the audit log.

use async_trait::async_trait;
use parley_domain::{ApplicationId, AuditEntryId, Scopes, TokenId};

use crate::{Millis, Result};

/// An API token as stored; the secret itself is only its SHA-256.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: TokenId,
    pub application_id: ApplicationId,
    pub label: String,
    pub scopes: Scopes,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: TokenId,
    pub application_id: ApplicationId,
    pub token_hash: String,
    pub label: String,
    pub scopes: Scopes,
    pub expires_at: Option<Millis>,
    pub now: Millis,
}

/// Who made a change: a console user or an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    Token,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<ActorKind> {
        match s {
            "user" => Some(ActorKind::User),
            "token" => Some(ActorKind::Token),
            _ => None,
        }
    }
}

/// One change: who, what, when, on which application, from where.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: AuditEntryId,
    pub application_id: ApplicationId,
    pub at: Millis,
    pub actor_kind: ActorKind,
    /// `usr_…` or `tok_…`.
    pub actor_id: String,
    /// The user's email or the token's label at the time.
    pub actor_label: String,
    /// `campaign.start`, `token.create`, …
    pub action: String,
    pub target: Option<String>,
    pub method: String,
    pub path: String,
    pub address: Option<String>,
}

#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores the token unless its application has `cap` live tokens (not revoked, not
    /// expired at `token.now`) already (false then); concurrent creates stop exactly there.
    async fn insert_token(&self, token: &NewToken, cap: u64) -> Result<bool>;
    /// The token with this hash, revoked or expired ones included (the caller says why not).
    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>>;
    /// The application's tokens, newest first, revoked ones included.
    async fn tokens(
        &self,
        app: &ApplicationId,
        after: Option<&TokenId>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>>;
    async fn token(&self, app: &ApplicationId, id: &TokenId) -> Result<Option<TokenRecord>>;
    /// Revokes the token (once; revoking again keeps the first time). `None` if the
    /// application has no such token.
    async fn revoke_token(
        &self,
        app: &ApplicationId,
        id: &TokenId,
        now: Millis,
    ) -> Result<Option<TokenRecord>>;
    /// Records a use at `now` unless one at most `min_gap` earlier is recorded already.
    async fn touch_token(&self, id: &TokenId, now: Millis, min_gap: Millis) -> Result<()>;

    async fn insert_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// The application's entries, newest first.
    async fn audit_entries(
        &self,
        app: &ApplicationId,
        after: Option<&AuditEntryId>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>>;
    /// Deletes entries older than `before`; returns how many.
    async fn prune_audit(&self, before: Millis) -> Result<u64>;
}
