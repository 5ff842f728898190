//! The message status lattice. Webhooks arrive duplicated and out of order, so a message's
//! state only ever moves up a fixed total order: merging is a join, never an overwrite.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a message stands. Declaration order is the merge order (see [`MessageState::merge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Accepted by Parley, waiting for the sender.
    Queued,
    /// Claimed by a sender; the call to Meta may be in flight.
    Sending,
    /// Meta answered the send with a wamid.
    Accepted,
    /// Meta's `sent` status webhook.
    Sent,
    /// Meta's `failed` status webhook or a permanent send error.
    Failed,
    /// Meta's `delivered`: evidence of delivery beats a late or spurious failure.
    Delivered,
    /// Meta's `read`.
    Read,
    /// Never sent: personalization or a rule skipped the recipient. Skipped never leaves.
    Skipped,
}

/// A state name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a message state: use queued, sending, accepted, sent, delivered, read, failed or skipped"
)]
pub struct UnknownState(pub String);

impl MessageState {
    /// Every state, in merge order.
    pub const ALL: [MessageState; 8] = [
        MessageState::Queued,
        MessageState::Sending,
        MessageState::Accepted,
        MessageState::Sent,
        MessageState::Failed,
        MessageState::Delivered,
        MessageState::Read,
        MessageState::Skipped,
    ];

    /// The join for webhook-driven updates over the total order
    /// Queued < Sending < Accepted < Sent < Failed < Delivered < Read < Skipped.
    /// It is max: commutative, associative and idempotent, so replays and reordering are harmless.
    pub fn merge(self, other: MessageState) -> MessageState {
        self.max(other)
    }

    /// No further update changes the outcome shown to users: Failed, Read, Skipped.
    /// Delivered is not terminal because read may follow.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            MessageState::Failed | MessageState::Read | MessageState::Skipped
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Sending => "sending",
            MessageState::Accepted => "accepted",
            MessageState::Sent => "sent",
            MessageState::Failed => "failed",
            MessageState::Delivered => "delivered",
            MessageState::Read => "read",
            MessageState::Skipped => "skipped",
        }
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        MessageState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownState(crate::excerpt(s).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageState::*;
    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = MessageState> {
        prop::sample::select(MessageState::ALL.to_vec())
    }

    #[test]
    fn order_and_terminal_states() {
        assert_eq!(Sent.merge(Delivered), Delivered);
        assert_eq!(Read.merge(Delivered), Read);
        assert_eq!(
            Delivered.merge(Failed),
            Delivered,
            "delivery evidence beats a late failure"
        );
        assert_eq!(Sending.merge(Failed), Failed);
        assert_eq!(Read.merge(Skipped), Skipped);
        assert!(Failed.is_terminal() && Read.is_terminal() && Skipped.is_terminal());
        assert!(!Delivered.is_terminal() && !Queued.is_terminal());
    }

    #[test]
    fn text_and_serde() {
        for s in MessageState::ALL {
            assert_eq!(s.as_str().parse::<MessageState>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!("DELIVERED".parse::<MessageState>().unwrap(), Delivered);
        assert!("bounced".parse::<MessageState>().is_err());
    }

    proptest! {
        #[test]
        fn merge_is_a_join(a in any_state(), b in any_state(), c in any_state()) {
            prop_assert_eq!(a.merge(b), b.merge(a));
            prop_assert_eq!(a.merge(b).merge(c), a.merge(b.merge(c)));
            prop_assert_eq!(a.merge(a), a);
            prop_assert!(a.merge(b) >= a);
        }

        #[test]
        fn any_permutation_with_duplicates_folds_to_the_same_state(
            states in prop::collection::vec(any_state(), 1..12),
            seed in any::<u64>(),
        ) {
            let expected = states.iter().copied().fold(Queued, MessageState::merge);
            // Duplicate every state and shuffle deterministically from the seed.
            let mut shuffled: Vec<_> = states.iter().chain(states.iter()).copied().collect();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(shuffled.into_iter().fold(Queued, MessageState::merge), expected);
        }
    }
}
