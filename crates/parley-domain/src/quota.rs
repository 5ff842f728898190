//! Meta's messaging limit on business-initiated conversations (META_API.md §4.1).
//!
//! A template sent to a contact outside its 24 h customer-service window opens a
//! business-initiated conversation. Meta limits the **unique** contacts so reached in a moving
//! 24 h (250 by default; 2,000 / 10,000 / 100,000 / unlimited), per business portfolio since
//! October 2025 or per phone number before (a setting of the platform). Contacts inside their
//! service window do not count; a contact already reached within the window does not count
//! twice (reaching it again only keeps it in the window longer).
//!
//! The rule answers one question: may this send go now, and if not, at what instant will a
//! slot free up. [`QuotaLedger`] is the whole rule in memory (the reference model the stores
//! and tests are checked against); [`decide`] is the same decision from the few numbers a
//! database query returns.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Unix milliseconds.
type Millis = i64;

/// The moving window the limit counts over.
pub const QUOTA_WINDOW_MS: Millis = 24 * 60 * 60 * 1000;

/// Meta's limit on unique contacts reached business-initiated in a moving 24 h.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessagingLimit {
    Limited(u32),
    Unlimited,
}

impl MessagingLimit {
    /// Meta's default for a new portfolio.
    pub const DEFAULT: MessagingLimit = MessagingLimit::Limited(250);

    /// Reads Meta's tier strings (`TIER_250`, `TIER_2K`, `TIER_10K`, `TIER_100K`,
    /// `TIER_UNLIMITED`, also the older `TIER_50` and `TIER_1K`). `TIER_NOT_SET` is the
    /// default 250. `None` when the text is not a tier.
    pub fn parse_tier(tier: &str) -> Option<MessagingLimit> {
        let t = tier.trim().to_ascii_uppercase();
        let rest = t.strip_prefix("TIER_")?;
        match rest {
            "UNLIMITED" => return Some(MessagingLimit::Unlimited),
            "NOT_SET" => return Some(MessagingLimit::DEFAULT),
            _ => {}
        }
        let (digits, factor) = match rest.strip_suffix('K') {
            Some(d) => (d, 1000),
            None => (rest, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        n.checked_mul(factor)
            .filter(|n| *n > 0)
            .map(MessagingLimit::Limited)
    }

    /// The limit a number's stored tier means; unknown or missing is Meta's default (250),
    /// the safe side.
    pub fn from_stored(tier: Option<&str>) -> MessagingLimit {
        tier.and_then(MessagingLimit::parse_tier)
            .unwrap_or(MessagingLimit::DEFAULT)
    }

    /// Contacts per moving 24 h, or `None` when unlimited.
    pub fn per_day(self) -> Option<u64> {
        match self {
            MessagingLimit::Limited(n) => Some(u64::from(n)),
            MessagingLimit::Unlimited => None,
        }
    }

    /// True while `used` contacts leave room for one more.
    pub fn has_room(self, used: u64) -> bool {
        self.per_day().is_none_or(|n| used < n)
    }
}

impl fmt::Display for MessagingLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessagingLimit::Limited(n) => write!(f, "{n}"),
            MessagingLimit::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// What the limit counts against: the whole business portfolio (Meta's rule since
/// October 2025, the default) or each phone number on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    #[default]
    BusinessPortfolio,
    PhoneNumber,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::BusinessPortfolio => "business_portfolio",
            LimitScope::PhoneNumber => "phone_number",
        }
    }

    /// `business_portfolio` or `phone_number`; anything else (or nothing) is the default.
    pub fn from_stored(s: Option<&str>) -> LimitScope {
        match s {
            Some("phone_number") => LimitScope::PhoneNumber,
            _ => LimitScope::BusinessPortfolio,
        }
    }

    /// The ledger key the limit counts under: `bp:<business id>` or `pn:<phone number id>`.
    pub fn key(self, business_id: &str, phone_number_id: &str) -> String {
        match self {
            LimitScope::BusinessPortfolio => format!("bp:{business_id}"),
            LimitScope::PhoneNumber => format!("pn:{phone_number_id}"),
        }
    }
}

/// How a template send to one contact relates to the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// The contact wrote in the last 24 h: customer-initiated, not counted.
    InServiceWindow,
    /// The contact is already counted in the window: no new slot used.
    AlreadyCounted,
    /// A new unique contact: uses one slot.
    NewContact,
}

/// Classifies a send. `last_counted_at` is when the contact was last reached
/// business-initiated in this scope (if ever).
pub fn classify_reach(
    in_service_window: bool,
    last_counted_at: Option<Millis>,
    now: Millis,
) -> Reach {
    if in_service_window {
        Reach::InServiceWindow
    } else if last_counted_at.is_some_and(|t| is_active(t, now)) {
        Reach::AlreadyCounted
    } else {
        Reach::NewContact
    }
}

/// True while a contact reached at `at` still counts at `now`.
pub fn is_active(at: Millis, now: Millis) -> bool {
    now.saturating_sub(at) < QUOTA_WINDOW_MS
}

/// The answer of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gate {
    /// Send now.
    Go(Reach),
    /// No slot now; the earliest instant one frees up.
    WaitUntil(Millis),
}

/// The gate from what a store query returns: `used` unique contacts counted in the window
/// now, and `oldest_active(k)` = the k-th (0-based) oldest last-reach instant among them.
/// A new contact goes while there is room; otherwise it waits until enough of the oldest
/// reaches leave the window to bring `used` below the limit.
pub fn decide(
    limit: MessagingLimit,
    reach: Reach,
    used: u64,
    now: Millis,
    oldest_active: impl FnOnce(u64) -> Option<Millis>,
) -> Gate {
    if reach != Reach::NewContact || limit.has_room(used) {
        return Gate::Go(reach);
    }
    let per_day = limit.per_day().unwrap_or(u64::MAX);
    // `used - per_day + 1` contacts must leave; the last of them leaves at its reach + 24 h.
    let k = used - per_day;
    match oldest_active(k) {
        Some(at) => Gate::WaitUntil(at.saturating_add(QUOTA_WINDOW_MS).max(now + 1)),
        // The count and the list disagree (a concurrent change): look again in a minute.
        None => Gate::WaitUntil(now + 60_000),
    }
}

/// The whole rule in memory: each contact's last business-initiated reach in one scope.
/// The reference model for the stores (which keep the same rows) and for tests.
#[derive(Debug, Clone, Default)]
pub struct QuotaLedger {
    last_reach: HashMap<String, Millis>,
}

impl QuotaLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Unique contacts counted at `now`.
    pub fn used(&self, now: Millis) -> u64 {
        self.last_reach
            .values()
            .filter(|t| is_active(**t, now))
            .count() as u64
    }

    /// Last-reach instants counted at `now`, oldest first.
    pub fn active(&self, now: Millis) -> Vec<Millis> {
        let mut v: Vec<Millis> = self
            .last_reach
            .values()
            .copied()
            .filter(|t| is_active(*t, now))
            .collect();
        v.sort_unstable();
        v
    }

    /// May a template to `contact` go at `now`?
    pub fn check(
        &self,
        limit: MessagingLimit,
        contact: &str,
        in_service_window: bool,
        now: Millis,
    ) -> Gate {
        let reach = classify_reach(
            in_service_window,
            self.last_reach.get(contact).copied(),
            now,
        );
        let active = self.active(now);
        decide(limit, reach, active.len() as u64, now, |k| {
            usize::try_from(k).ok().and_then(|k| active.get(k).copied())
        })
    }

    /// Records a business-initiated send (Meta accepted it). Inside the service window
    /// nothing is recorded.
    pub fn record(&mut self, contact: &str, in_service_window: bool, now: Millis) {
        if in_service_window {
            return;
        }
        let at = self.last_reach.entry(contact.to_owned()).or_insert(now);
        *at = (*at).max(now);
    }

    /// Checks and, when the send may go, records it.
    pub fn try_send(
        &mut self,
        limit: MessagingLimit,
        contact: &str,
        in_service_window: bool,
        now: Millis,
    ) -> Gate {
        let gate = self.check(limit, contact, in_service_window, now);
        if let Gate::Go(_) = gate {
            self.record(contact, in_service_window, now);
        }
        gate
    }
}

/// When the new contacts of a campaign can go, given what is counted now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaSchedule {
    /// Contacts that may go at once.
    pub now: u64,
    /// Later waves: (instant, contacts that may go then), in time order. Slots freeing within
    /// the same hour are merged into one wave at the last of them.
    pub later: Vec<QuotaWave>,
    /// When the last contact may go (`None` if all go at once).
    pub last_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuotaWave {
    pub at: Millis,
    pub contacts: u64,
}

/// Plans `new_contacts` business-initiated sends from `now` under `limit`, with
/// `active` = the last-reach instants already counted (any order). Each contact sent at `t`
/// holds its slot until `t + 24 h`. Memory is bounded by the limit, not the audience.
pub fn schedule(
    limit: MessagingLimit,
    now: Millis,
    active: &[Millis],
    new_contacts: u64,
) -> QuotaSchedule {
    let Some(per_day) = limit.per_day() else {
        return QuotaSchedule {
            now: new_contacts,
            later: Vec::new(),
            last_at: None,
        };
    };
    const HOUR: Millis = 60 * 60 * 1000;
    // Expiry instants of every held slot, oldest first (a min-heap over a sorted deque:
    // slots are appended in time order, so a VecDeque pair stays sorted).
    let mut held: std::collections::VecDeque<Millis> = {
        let mut v: Vec<Millis> = active
            .iter()
            .copied()
            .filter(|t| is_active(*t, now))
            .map(|t| t + QUOTA_WINDOW_MS)
            .collect();
        v.sort_unstable();
        v.into()
    };
    let mut left = new_contacts;
    let free_now = per_day.saturating_sub(held.len() as u64).min(left);
    for _ in 0..free_now {
        held.push_back(now + QUOTA_WINDOW_MS);
    }
    left -= free_now;
    // Contacts beyond the held slots wait for the oldest to free: contact i goes when the
    // i-th held slot (counting from the excess) expires.
    let excess = (held.len() as u64).saturating_sub(per_day);
    for _ in 0..excess {
        held.pop_front();
    }
    let mut later: Vec<QuotaWave> = Vec::new();
    let mut last_at = None;
    while left > 0 {
        let Some(at) = held.pop_front() else { break };
        left -= 1;
        held.push_back(at + QUOTA_WINDOW_MS);
        last_at = Some(at);
        match later.last_mut() {
            Some(w) if (at - 1).div_euclid(HOUR) == (w.at - 1).div_euclid(HOUR) => {
                w.at = at;
                w.contacts += 1;
            }
            _ => later.push(QuotaWave { at, contacts: 1 }),
        }
    }
    QuotaSchedule {
        now: free_now,
        later,
        last_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: Millis = 60 * 60 * 1000;
    const T0: Millis = 1_750_000_000_000;

    #[test]
    fn tiers_parse() {
        let l = MessagingLimit::parse_tier;
        assert_eq!(l("TIER_250"), Some(MessagingLimit::Limited(250)));
        assert_eq!(l("TIER_2K"), Some(MessagingLimit::Limited(2_000)));
        assert_eq!(l("tier_10k"), Some(MessagingLimit::Limited(10_000)));
        assert_eq!(l("TIER_100K"), Some(MessagingLimit::Limited(100_000)));
        assert_eq!(l("TIER_1K"), Some(MessagingLimit::Limited(1_000)));
        assert_eq!(l("TIER_50"), Some(MessagingLimit::Limited(50)));
        assert_eq!(l("TIER_UNLIMITED"), Some(MessagingLimit::Unlimited));
        assert_eq!(l("TIER_NOT_SET"), Some(MessagingLimit::DEFAULT));
        for bad in [
            "",
            "250",
            "TIER_",
            "TIER_K",
            "TIER_0",
            "TIER_-1",
            "TIER_99999999999K",
        ] {
            assert_eq!(l(bad), None, "{bad}");
        }
        assert_eq!(MessagingLimit::from_stored(None), MessagingLimit::DEFAULT);
        assert_eq!(
            MessagingLimit::from_stored(Some("junk")),
            MessagingLimit::DEFAULT
        );
        assert!(MessagingLimit::Unlimited.has_room(u64::MAX));
        assert!(!MessagingLimit::Limited(2).has_room(2));
    }

    #[test]
    fn scope_keys() {
        assert_eq!(LimitScope::from_stored(None), LimitScope::BusinessPortfolio);
        assert_eq!(
            LimitScope::from_stored(Some("phone_number")).key("b1", "p1"),
            "pn:p1"
        );
        assert_eq!(LimitScope::default().key("b1", "p1"), "bp:b1");
    }

    #[test]
    fn limit_counts_unique_contacts_in_a_moving_day() {
        let limit = MessagingLimit::Limited(2);
        let mut l = QuotaLedger::new();
        assert_eq!(
            l.try_send(limit, "a", false, T0),
            Gate::Go(Reach::NewContact)
        );
        assert_eq!(
            l.try_send(limit, "a", false, T0 + H),
            Gate::Go(Reach::AlreadyCounted),
            "the same contact does not count twice"
        );
        assert_eq!(
            l.try_send(limit, "b", false, T0 + 2 * H),
            Gate::Go(Reach::NewContact)
        );
        // Full: c waits until a leaves — a was reached again at T0 + 1 h.
        assert_eq!(
            l.try_send(limit, "c", false, T0 + 3 * H),
            Gate::WaitUntil(T0 + H + QUOTA_WINDOW_MS)
        );
        // A contact who wrote in the last 24 h goes and takes no slot.
        assert_eq!(
            l.try_send(limit, "d", true, T0 + 3 * H),
            Gate::Go(Reach::InServiceWindow)
        );
        assert_eq!(l.used(T0 + 3 * H), 2);
        // One millisecond early is still full; at the instant it goes.
        let free = T0 + H + QUOTA_WINDOW_MS;
        assert!(matches!(
            l.check(limit, "c", false, free - 1),
            Gate::WaitUntil(_)
        ));
        assert_eq!(
            l.try_send(limit, "c", false, free),
            Gate::Go(Reach::NewContact)
        );
        // The tier raised: goes at once.
        assert_eq!(
            l.try_send(MessagingLimit::Limited(2_000), "e", false, free),
            Gate::Go(Reach::NewContact)
        );
        assert_eq!(
            l.try_send(MessagingLimit::Unlimited, "f", false, free),
            Gate::Go(Reach::NewContact)
        );
    }

    #[test]
    fn lowered_limit_waits_for_enough_contacts_to_leave() {
        let mut l = QuotaLedger::new();
        for (i, c) in ["a", "b", "c", "d"].iter().enumerate() {
            l.record(c, false, T0 + i as Millis * H);
        }
        // Four counted, limit 2: three must leave, the third (c) leaves at T0 + 2 h + 24 h.
        assert_eq!(
            l.check(MessagingLimit::Limited(2), "x", false, T0 + 4 * H),
            Gate::WaitUntil(T0 + 2 * H + QUOTA_WINDOW_MS)
        );
    }

    #[test]
    fn schedule_a_thousand_on_250() {
        let s = schedule(MessagingLimit::Limited(250), T0, &[], 1_000);
        assert_eq!(s.now, 250);
        assert_eq!(
            s.later,
            vec![
                QuotaWave {
                    at: T0 + QUOTA_WINDOW_MS,
                    contacts: 250
                },
                QuotaWave {
                    at: T0 + 2 * QUOTA_WINDOW_MS,
                    contacts: 250
                },
                QuotaWave {
                    at: T0 + 3 * QUOTA_WINDOW_MS,
                    contacts: 250
                },
            ]
        );
        assert_eq!(s.last_at, Some(T0 + 3 * QUOTA_WINDOW_MS));
        let s = schedule(MessagingLimit::Unlimited, T0, &[T0], 1_000);
        assert_eq!((s.now, s.later.len(), s.last_at), (1_000, 0, None));
        // 2 already counted (one expires in 1 h), limit 3: 1 now, 1 in an hour, 1 a bit later.
        let s = schedule(
            MessagingLimit::Limited(3),
            T0,
            &[T0 - 23 * H, T0 - 20 * H],
            3,
        );
        assert_eq!(s.now, 1);
        assert_eq!(
            s.later,
            vec![
                QuotaWave {
                    at: T0 + H,
                    contacts: 1
                },
                QuotaWave {
                    at: T0 + 4 * H,
                    contacts: 1
                },
            ]
        );
    }

    proptest! {
        /// Whatever the order of sends, the ledger never counts more unique contacts than the
        /// limit, and a `WaitUntil` is exact: at that instant the send goes.
        #[test]
        fn never_over_the_limit_and_waits_are_exact(
            limit in 1u32..6,
            sends in prop::collection::vec((0u8..12, any::<bool>(), 0i64..(3 * QUOTA_WINDOW_MS)), 1..80),
        ) {
            let limit = MessagingLimit::Limited(limit);
            let mut sends = sends;
            sends.sort_by_key(|s| s.2);
            let mut l = QuotaLedger::new();
            // The oracle, independent of the ledger: every business-initiated send that went.
            let mut went: Vec<(String, Millis)> = Vec::new();
            for (contact, in_window, at) in sends {
                let contact = contact.to_string();
                match l.try_send(limit, &contact, in_window, T0 + at) {
                    Gate::Go(_) => {
                        if !in_window {
                            went.push((contact.clone(), T0 + at));
                        }
                    }
                    Gate::WaitUntil(t) => {
                        prop_assert!(t > T0 + at);
                        let mut probe = l.clone();
                        prop_assert!(matches!(probe.check(limit, &contact, false, t - 1), Gate::WaitUntil(_)));
                        prop_assert_eq!(probe.try_send(limit, &contact, false, t), Gate::Go(Reach::NewContact));
                    }
                }
                // Unique contacts sent to in the 24 h up to now, counted from the sends alone.
                let now = T0 + at;
                let reached: std::collections::HashSet<&str> = went
                    .iter()
                    .filter(|(_, t)| now - t < QUOTA_WINDOW_MS)
                    .map(|(c, _)| c.as_str())
                    .collect();
                prop_assert!(reached.is_empty() || limit.has_room(reached.len() as u64 - 1), "{} reached over {:?}", reached.len(), limit);
                prop_assert_eq!(l.used(now), reached.len() as u64);
            }
        }

        /// The plan agrees with sending each contact at the first instant the ledger allows.
        #[test]
        fn schedule_matches_the_ledger(
            limit in 1u32..5,
            counted in prop::collection::vec(0i64..QUOTA_WINDOW_MS, 0..6),
            n in 0u64..15,
        ) {
            let limit = MessagingLimit::Limited(limit);
            let now = T0 + QUOTA_WINDOW_MS;
            let active: Vec<Millis> = counted.iter().map(|c| T0 + c).collect();
            let plan = schedule(limit, now, &active, n);
            let mut l = QuotaLedger::new();
            for (i, at) in active.iter().enumerate() {
                l.record(&format!("old{i}"), false, *at);
            }
            let mut t = now;
            let mut at_once = 0;
            let mut last = None;
            for i in 0..n {
                let c = format!("new{i}");
                loop {
                    match l.try_send(limit, &c, false, t) {
                        Gate::Go(_) => break,
                        Gate::WaitUntil(next) => t = next,
                    }
                }
                if t == now { at_once += 1 } else { last = Some(t) }
            }
            prop_assert_eq!(plan.now, at_once);
            prop_assert_eq!(plan.last_at, last);
            prop_assert_eq!(plan.now + plan.later.iter().map(|w| w.contacts).sum::<u64>(), n);
        }
    }
}
