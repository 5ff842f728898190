//! `LeaseStore`, written once for both backends (compiled into `sqlite.rs` and `postgres.rs`).
//! `db_now_ms!()` is the backend's clock expression, `share_lock!()` what holds a lease row
//! still while a claim made under it commits (PostgreSQL's `FOR SHARE`; SQLite's one writer
//! does that already).

use async_trait::async_trait;
use parley_domain::PhoneNumberId;
use sqlx::Row;

use super::{Backend, Tx};
use crate::leases::{Fence, LeaseRecord, LeaseStore};
use crate::types::MessageRecord;
use crate::{Millis, Result};

/// True when `fence` still holds its lease (checked in the claim's transaction, the lease row
/// held until it commits); a stale fence is counted on the lease row (`refused`).
pub(crate) async fn fence_holds(tx: &mut Tx, fence: &Fence) -> Result<bool> {
    let held = sqlx::query(concat!(
        "SELECT token FROM leases WHERE resource = $1 AND owner = $2 AND token = $3 AND expires_at > ",
        db_now_ms!(),
        share_lock!()
    ))
    .bind(fence.resource.as_str())
    .bind(fence.owner.as_str())
    .bind(fence.token)
    .fetch_optional(&mut **tx)
    .await?
    .is_some();
    if !held {
        sqlx::query("UPDATE leases SET refused = refused + 1 WHERE resource = $1")
            .bind(fence.resource.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(held)
}

#[async_trait]
impl LeaseStore for Backend {
    async fn acquire_lease(
        &self,
        resource: &str,
        owner: &str,
        duration_ms: Millis,
    ) -> Result<Option<i64>> {
        let token: Option<i64> = sqlx::query_scalar(concat!(
            "INSERT INTO leases (resource, owner, token, expires_at, acquired_at, taken_after_ms, refused) \
             VALUES ($1, $2, 1, ",
            db_now_ms!(),
            " + $3, ",
            db_now_ms!(),
            ", 0, 0) \
             ON CONFLICT (resource) DO UPDATE SET owner = excluded.owner, token = leases.token + 1, \
               expires_at = excluded.expires_at, acquired_at = excluded.acquired_at, \
               taken_after_ms = CASE WHEN leases.expires_at > 0 \
                 THEN excluded.acquired_at - leases.expires_at ELSE 0 END \
             WHERE leases.expires_at <= excluded.acquired_at \
             RETURNING token"
        ))
        .bind(resource)
        .bind(owner)
        .bind(duration_ms)
        .fetch_optional(self.writer())
        .await?;
        Ok(token)
    }

    async fn renew_lease(&self, fence: &Fence, duration_ms: Millis) -> Result<bool> {
        let done = sqlx::query(concat!(
            "UPDATE leases SET expires_at = ",
            db_now_ms!(),
            " + $4 WHERE resource = $1 AND owner = $2 AND token = $3 AND expires_at > ",
            db_now_ms!()
        ))
        .bind(fence.resource.as_str())
        .bind(fence.owner.as_str())
        .bind(fence.token)
        .bind(duration_ms)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, fence: &Fence) -> Result<()> {
        sqlx::query(
            "UPDATE leases SET expires_at = 0 WHERE resource = $1 AND owner = $2 AND token = $3",
        )
        .bind(fence.resource.as_str())
        .bind(fence.owner.as_str())
        .bind(fence.token)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn leases(&self) -> Result<Vec<LeaseRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT resource, owner, token, expires_at, acquired_at, taken_after_ms, refused, ",
            db_now_ms!(),
            " AS now FROM leases ORDER BY resource"
        ))
        .fetch_all(self.writer())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LeaseRecord {
                    resource: r.try_get("resource")?,
                    owner: r.try_get("owner")?,
                    token: r.try_get("token")?,
                    expires_at: r.try_get("expires_at")?,
                    acquired_at: r.try_get("acquired_at")?,
                    taken_after_ms: r.try_get("taken_after_ms")?,
                    refused: r.try_get("refused")?,
                    now: r.try_get("now")?,
                })
            })
            .collect()
    }

    async fn claim_due_messages_fenced(
        &self,
        fence: &Fence,
        phone_number_id: &PhoneNumberId,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Option<Vec<MessageRecord>>> {
        let claimed = self
            .claim_due(Some(fence), phone_number_id, now, lease_until, limit)
            .await?;
        Ok(claimed.map(crate::sort_claimed))
    }
}
