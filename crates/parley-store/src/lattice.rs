//! What both backends do with the error fields when a status is merged, in one place so the
//! SQLite and PostgreSQL rules cannot drift apart.
//!
//! The state is the lattice join (`MessageState::merge`). The error must also come out the
//! same whatever order statuses arrive in: a `failed` status sets it while the message is
//! failed, and evidence of delivery (`delivered`, `read`) clears it, because a failure that
//! delivery overruled is not the message's outcome. Without the clearing, `failed` then
//! `delivered` kept Meta's error while `delivered` then `failed` did not.

use parley_domain::MessageState;

use crate::types::{MessageRecord, StatusChange};

/// The `(error_code, error_message)` a message has after merging `change` into `current`,
/// given the merged state.
pub(crate) fn merged_error<'a>(
    current: &'a MessageRecord,
    change: &'a StatusChange,
    merged: MessageState,
) -> (Option<i64>, Option<&'a str>) {
    match (merged, &change.error) {
        (MessageState::Delivered | MessageState::Read, _) => (None, None),
        (MessageState::Failed, Some((code, message))) => (Some(*code), Some(message.as_str())),
        _ => (current.error_code, current.error_message.as_deref()),
    }
}
