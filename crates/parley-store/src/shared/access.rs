//! `AccessStore`, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`).

use async_trait::async_trait;
use parley_domain::{ApplicationId, AuditEntryId, Scopes, TokenId};
use sqlx::Row;

use super::{Backend, DbRow, opt_text, parse_id, text};
use crate::access::{AccessStore, ActorKind, AuditEntry, NewToken, TokenRecord};
use crate::{Millis, Result, corrupt};

const TOKEN_COLUMNS: &str =
    "id, application_id, label, scopes, created_at, expires_at, last_used_at, revoked_at";

fn token_from_row(row: &DbRow) -> Result<TokenRecord> {
    let scopes: String = row.try_get("scopes")?;
    Ok(TokenRecord {
        id: parse_id(row, "id", TokenId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        label: row.try_get("label")?,
        scopes: Scopes::parse(&scopes).map_err(|e| corrupt("scopes", e))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn audit_from_row(row: &DbRow) -> Result<AuditEntry> {
    let kind: String = row.try_get("actor_kind")?;
    Ok(AuditEntry {
        id: parse_id(row, "id", AuditEntryId::parse)?,
        application_id: parse_id(row, "application_id", ApplicationId::parse)?,
        at: row.try_get("at")?,
        actor_kind: ActorKind::parse(&kind).ok_or_else(|| corrupt("actor_kind", &kind))?,
        actor_id: row.try_get("actor_id")?,
        actor_label: row.try_get("actor_label")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        address: row.try_get("address")?,
    })
}

#[async_trait]
impl AccessStore for Backend {
    async fn insert_token(&self, t: &NewToken, cap: u64) -> Result<bool> {
        let mut tx = self.tx().await?;
        if !super::caps::below_cap(
            &mut tx,
            "api_tokens",
            t.application_id.as_str(),
            cap,
            "SELECT COUNT(*) FROM api_tokens WHERE application_id = $1 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > $2)",
            Some(t.now),
        )
        .await?
        {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, application_id, label, scopes, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(t.id.as_str())
        .bind(t.token_hash.as_str())
        .bind(t.application_id.as_str())
        .bind(text(&t.label))
        .bind(t.scopes.to_string())
        .bind(t.now)
        .bind(t.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1"
        )))
        .bind(text(token_hash))
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn tokens(
        &self,
        app: &ApplicationId,
        after: Option<&TokenId>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE application_id = $1 \
             AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        )))
        .bind(app.as_str())
        .bind(after.map(TokenId::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn token(&self, app: &ApplicationId, id: &TokenId) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE application_id = $1 AND id = $2"
        )))
        .bind(app.as_str())
        .bind(id.as_str())
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn revoke_token(
        &self,
        app: &ApplicationId,
        id: &TokenId,
        now: Millis,
    ) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE application_id = $1 AND id = $2 RETURNING {TOKEN_COLUMNS}"
        )))
        .bind(app.as_str())
        .bind(id.as_str())
        .bind(now)
        .fetch_optional(self.writer())
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn touch_token(&self, id: &TokenId, now: Millis, min_gap: Millis) -> Result<()> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(id.as_str())
        .bind(now)
        .bind(now - min_gap)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn insert_audit(&self, e: &AuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, application_id, at, actor_kind, actor_id, actor_label, \
             action, target, method, path, address) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(e.id.as_str())
        .bind(e.application_id.as_str())
        .bind(e.at)
        .bind(e.actor_kind.as_str())
        .bind(text(&e.actor_id))
        .bind(text(&e.actor_label))
        .bind(text(&e.action))
        .bind(opt_text(e.target.as_deref()))
        .bind(text(&e.method))
        .bind(text(&e.path))
        .bind(opt_text(e.address.as_deref()))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn audit_entries(
        &self,
        app: &ApplicationId,
        after: Option<&AuditEntryId>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE application_id = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(app.as_str())
        .bind(after.map(AuditEntryId::as_str))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn prune_audit(&self, before: Millis) -> Result<u64> {
        let done = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(before)
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected())
    }
}
