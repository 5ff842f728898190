//! Capped creates, written once for both backends (compiled into `sqlite.rs` and
//! `postgres.rs`): a create that a cap bounds (an application's segments, event endpoints and
//! open invites, an account's applications) counts its kind and inserts in one transaction,
//! after the backend's `lock_cap`, so a burst of concurrent creates stops exactly at the cap.
//! Counting first on a read connection and inserting after let each of N concurrent creates
//! see the same count and pass the cap by up to N.

use super::{Tx, lock_cap};
use crate::Result;

/// Whether `owner` has fewer than `cap` rows of `kind`, counted by `count` (its `$1` the
/// owner's id, its `$2` `at` when given) inside `tx` once the kind's lock is held: the insert
/// that follows in `tx` is then within the cap.
pub(crate) async fn below_cap(
    tx: &mut Tx,
    kind: &str,
    owner: &str,
    cap: u64,
    count: &'static str,
    at: Option<i64>,
) -> Result<bool> {
    lock_cap(tx, &format!("{kind}:{owner}")).await?;
    let mut q = sqlx::query_scalar::<_, i64>(count).bind(owner);
    if let Some(at) = at {
        q = q.bind(at);
    }
    let n = q.fetch_one(&mut **tx).await?;
    Ok(u64::try_from(n).unwrap_or(0) < cap)
}
