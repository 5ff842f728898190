//! Leases (`leases`, migration 0022): one node owns each sender loop, the planner and each
//! periodic job. Every statement reads the time from the database, so nodes whose clocks
//! disagree (or a node that was paused) agree on who holds what. The fencing token grows with
//! every new owner; a claim carries it (`Store::claim_due_messages_fenced`) and the database
//! refuses one whose token is no longer current.

use async_trait::async_trait;

use parley_domain::PhoneNumberId;

use crate::types::MessageRecord;
use crate::{Millis, Result};

/// What a write made under a lease carries: the database refuses it unless `owner` still
/// holds `resource` under `token` and the lease has not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub resource: String,
    pub owner: String,
    pub token: i64,
}

/// A lease row as stored (`now` is the database's clock when it was read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub resource: String,
    pub owner: String,
    pub token: i64,
    pub expires_at: Millis,
    pub acquired_at: Millis,
    /// How long the lease had lapsed when its current owner took it (0: free or released).
    pub taken_after_ms: Millis,
    /// Writes refused under a stale token of this resource.
    pub refused: i64,
    pub now: Millis,
}

#[async_trait]
pub trait LeaseStore {
    /// Takes `resource` for `owner` for `duration_ms` when it is free, released or expired:
    /// the new fencing token, or `None` when another owner holds it (or `owner` already does).
    async fn acquire_lease(
        &self,
        resource: &str,
        owner: &str,
        duration_ms: Millis,
    ) -> Result<Option<i64>>;
    /// Extends a lease still held under `fence` and not expired; false when it was lost.
    async fn renew_lease(&self, fence: &Fence, duration_ms: Millis) -> Result<bool>;
    /// Gives a lease up at once (the row stays, so the next owner's token is higher).
    async fn release_lease(&self, fence: &Fence) -> Result<()>;
    /// Every lease row, with the database's clock.
    async fn leases(&self) -> Result<Vec<LeaseRecord>>;
    /// `Store::claim_due_messages` under a lease: `None` (nothing claimed, the refusal counted
    /// on the lease row) unless `fence` still holds its lease, checked in the same transaction.
    async fn claim_due_messages_fenced(
        &self,
        fence: &Fence,
        phone_number_id: &PhoneNumberId,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Option<Vec<MessageRecord>>>;
}
