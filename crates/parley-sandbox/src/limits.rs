//! Meta's messaging limit, enforced independently of any client: the unique recipients a
//! business portfolio reaches with business-initiated template sends (the recipient is outside
//! its 24 h customer-service window with the sending number) in a moving 24 h of virtual time.
//!
//! The limit is the highest tier among the portfolio's numbers (since October 2025 Meta's
//! limits are per portfolio, and existing portfolios got their best number's limit). A
//! recipient already reached within the window takes no new slot, but the reach is counted
//! from its latest send. A send to a new recipient beyond the limit is refused with error
//! 131064 (an UNCERTAIN choice, see SANDBOX.md) and recorded as a violation, listed by
//! `GET /sandbox/violations` and forgotten by `/sandbox/reset`.

use std::collections::{HashMap, VecDeque};

use axum::Json;
use axum::extract::State as AxumState;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::Sandbox;
use crate::errors::GraphError;
use crate::state::State;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Meta's error for a send over the messaging limit (see SANDBOX.md: UNCERTAIN).
pub(crate) const LIMIT_ERROR: u32 = 131064;

/// One refused send over the messaging limit.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Violation {
    /// Virtual Unix seconds of the refused send.
    pub at: i64,
    pub business_id: String,
    pub phone_number_id: String,
    /// Recipient digits (wa_id).
    pub recipient: String,
    /// The portfolio's limit at the time.
    pub limit: i64,
    /// Unique recipients reached in the 24 h before the send.
    pub reached: usize,
}

/// Per-portfolio reach within the moving 24 h.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    /// Recipient → virtual ms of the latest business-initiated send accepted for it.
    last: HashMap<String, i64>,
    /// (virtual ms, recipient) in send order; entries older than 24 h are pruned.
    order: VecDeque<(i64, String)>,
}

impl Reach {
    fn prune(&mut self, now_ms: i64) {
        while let Some((t, _)) = self.order.front() {
            if *t > now_ms - DAY_MS {
                break;
            }
            if let Some((t, who)) = self.order.pop_front()
                && self.last.get(&who) == Some(&t)
            {
                self.last.remove(&who);
            }
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Limits {
    /// Business portfolio id → its reach.
    reach: HashMap<String, Reach>,
    violations: Vec<Violation>,
}

impl Limits {
    pub(crate) fn clear(&mut self) {
        *self = Limits::default();
    }
}

/// A tier string as a count; `None` is unlimited. Unknown tiers count as 250.
pub(crate) fn tier_limit(tier: &str) -> Option<i64> {
    match tier {
        "TIER_UNLIMITED" => None,
        "TIER_50" => Some(50),
        "TIER_1K" => Some(1_000),
        "TIER_2K" => Some(2_000),
        "TIER_10K" => Some(10_000),
        "TIER_100K" => Some(100_000),
        _ => Some(250),
    }
}

/// Checks the messaging limit for a send about to be accepted, and records the reach when it
/// passes. `business_initiated`: a template to a recipient outside its service window.
/// Called last, right before acceptance, so a refusal by another rule never counts a reach.
pub(crate) fn check_and_record(
    state: &mut State,
    now_ms: i64,
    phone_id: &str,
    wa_id: &str,
    business_initiated: bool,
) -> Result<(), GraphError> {
    if !business_initiated {
        return Ok(());
    }
    let Some((business_id, limit)) = portfolio_limit(state, phone_id) else {
        return Ok(());
    };
    let reach = state.limits.reach.entry(business_id.clone()).or_default();
    reach.prune(now_ms);
    let known = reach.last.contains_key(wa_id);
    if let Some(limit) = limit
        && !known
        && i64::try_from(reach.last.len()).unwrap_or(i64::MAX) >= limit
    {
        let reached = reach.last.len();
        state.limits.violations.push(Violation {
            at: now_ms.div_euclid(1000),
            business_id,
            phone_number_id: phone_id.to_owned(),
            recipient: wa_id.to_owned(),
            limit,
            reached,
        });
        return Err(GraphError::new(
            LIMIT_ERROR,
            format!(
                "Message failed to send because this business has reached its messaging limit: {reached} unique users were messaged outside a customer service window in the last 24 hours (limit {limit})."
            ),
        ));
    }
    reach.last.insert(wa_id.to_owned(), now_ms);
    reach.order.push_back((now_ms, wa_id.to_owned()));
    Ok(())
}

/// The portfolio owning the number and its limit: the highest tier among its numbers.
fn portfolio_limit(state: &State, phone_id: &str) -> Option<(String, Option<i64>)> {
    let phone = state.phone(phone_id)?;
    let business = state.business_of_waba(&phone.waba.id)?;
    let mut limit = Some(0);
    for number in business.wabas.iter().flat_map(|w| w.phone_numbers.iter()) {
        limit = match (limit, tier_limit(&number.messaging_limit)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    Some((business.id.clone(), limit))
}

/// The two webhooks of a limit change (META_2026.md §4.1, §4.2). The current (v24+) shape:
/// `business_capability_update` `{"max_daily_conversations_per_business": "<tier>",
/// "max_phone_numbers_per_waba": 25}` (plus `"max_phone_numbers_per_business": 2` at 250 and
/// below) and `phone_number_quality_update` `{"display_phone_number", "event",
/// "max_daily_conversations_per_business"}`. `legacy` (`Behaviour::legacy_limit_webhooks`):
/// the v23 shape, `max_daily_conversation_per_phone` (integer, -1 unlimited) and
/// `old_limit`/`current_limit` instead.
pub(crate) fn limit_webhooks(
    waba_id: &str,
    display_phone_number: &str,
    old: &str,
    limit: &str,
    per_day: i64,
    event: &str,
    legacy: bool,
) -> Vec<crate::state::EventKind> {
    let mut capability = if legacy {
        json!({ "max_daily_conversation_per_phone": per_day, "max_phone_numbers_per_waba": 25 })
    } else {
        json!({ "max_daily_conversations_per_business": limit, "max_phone_numbers_per_waba": 25 })
    };
    if matches!(limit, "TIER_50" | "TIER_250") {
        capability["max_phone_numbers_per_business"] = json!(2);
    }
    let mut quality = json!({ "display_phone_number": display_phone_number, "event": event });
    if legacy {
        quality["old_limit"] = json!(old);
        quality["current_limit"] = json!(limit);
    } else {
        quality["max_daily_conversations_per_business"] = json!(limit);
    }
    let change = |field: &str, value: serde_json::Value| crate::state::EventKind::Change {
        entry_id: waba_id.to_owned(),
        field: field.to_owned(),
        value,
    };
    vec![
        change("business_capability_update", capability),
        change("phone_number_quality_update", quality),
    ]
}

/// `GET /sandbox/violations`: every send refused over the messaging limit, oldest first.
pub(crate) async fn violations(AxumState(sandbox): AxumState<Sandbox>) -> Response {
    let data = sandbox.inner.lock().limits.violations.clone();
    Json(json!({ "data": data })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers() {
        assert_eq!(tier_limit("TIER_250"), Some(250));
        assert_eq!(tier_limit("TIER_2K"), Some(2_000));
        assert_eq!(tier_limit("TIER_UNLIMITED"), None);
        assert_eq!(tier_limit("TIER_NOT_SET"), Some(250));
    }

    #[test]
    fn reach_expires_from_the_latest_send() {
        let mut r = Reach::default();
        r.last.insert("a".into(), 0);
        r.order.push_back((0, "a".into()));
        r.last.insert("a".into(), 1_000);
        r.order.push_back((1_000, "a".into()));
        r.prune(DAY_MS);
        assert_eq!(r.last.get("a"), Some(&1_000));
        r.prune(DAY_MS + 1_000);
        assert!(r.last.is_empty());
        assert!(r.order.is_empty());
    }
}
