//! Messaging-limit use for the dashboards (#16 item 3): for each of the application's
//! numbers, the unique contacts counted now against its limit in a moving 24 h, and when their
//! slots free up. Read from the quota ledger the sender's gate uses (`quota_reach`), so the
//! dashboard shows what the gate decides with; the ledger keeps only each contact's last
//! reach, so the past cannot be replayed from it (see DECISIONS.md, "Dashboards").

use parley_domain::ApplicationId;
use parley_domain::quota::QUOTA_WINDOW_MS;

use crate::Engine;
use crate::error::EngineError;

/// One number's use of its messaging limit now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUse {
    pub phone_number_id: String,
    pub display_phone_number: String,
    /// Meta's tier as stored (`TIER_250`, …; '' when not known yet: the default 250 applies).
    pub tier: String,
    /// Contacts per moving 24 h; `None` when unlimited.
    pub limit: Option<u64>,
    /// `business_portfolio` or `phone_number`: numbers of one portfolio share one count.
    pub scope: &'static str,
    /// The ledger's key of the scope (`bp:<portfolio>`, `pn:<number>`): the `scope` of the
    /// statistics' `messaging_limit` series.
    pub scope_key: String,
    /// Unique contacts counted in the scope now.
    pub used: u64,
    /// When each counted contact stops counting (its last reach + 24 h), oldest first.
    pub frees_at: Vec<i64>,
    pub now: i64,
}

impl LimitUse {
    /// Contacts still counted at `t` (≥ now) if nothing else were sent.
    pub fn used_at(&self, t: i64) -> u64 {
        self.frees_at.iter().filter(|f| **f > t).count() as u64
    }
}

impl Engine {
    /// The messaging-limit use of each of the application's numbers, now.
    pub async fn messaging_limit_use(
        &self,
        app: &ApplicationId,
    ) -> Result<Vec<LimitUse>, EngineError> {
        let now = self.now();
        let mut out = Vec::new();
        for n in self.store.phone_numbers(app).await? {
            let (limit, scope, key) = self.quota_context(&n).await?;
            let active = self.store.quota_active(&key, now).await?;
            let scope_key = key.clone();
            out.push(LimitUse {
                phone_number_id: n.phone_number_id.to_string(),
                display_phone_number: n.display_phone_number.clone(),
                tier: n.messaging_limit.clone().unwrap_or_default(),
                limit: limit.per_day(),
                scope: scope.as_str(),
                scope_key,
                used: active.len() as u64,
                frees_at: active.into_iter().map(|t| t + QUOTA_WINDOW_MS).collect(),
                now,
            });
        }
        Ok(out)
    }
}

/// The most quality/tier changes one dashboard lists.
pub const MAX_NUMBER_CHANGES: u32 = 500;

impl Engine {
    /// The number's quality, tier and throughput changes in `[from, to)` (and the last one
    /// before, the state the period starts in), oldest first; at most `MAX_NUMBER_CHANGES`.
    pub async fn number_history(
        &self,
        app: &ApplicationId,
        phone_number_id: &parley_domain::PhoneNumberId,
        from: i64,
        to: i64,
    ) -> Result<Vec<parley_store::platforms::NumberChange>, EngineError> {
        Ok(self
            .store
            .number_history(app, phone_number_id, from, to, MAX_NUMBER_CHANGES)
            .await?)
    }
}
