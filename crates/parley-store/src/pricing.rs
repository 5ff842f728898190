//! Price tables and what cost estimates read (#16, cost; migration 0028): the application's
//! price table (JSON, checked by `parley_domain::pricing`), the recipients inside a free entry
//! point, and the charged and delivered counters by day, country and category.

use async_trait::async_trait;
use parley_domain::ApplicationId;
use serde::Serialize;

use crate::stats::StatDimension;
use crate::{Millis, Result};

/// A day's (or an hour's) counter of `delivered` or `charged` messages of one country and
/// category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CostRow {
    /// The UTC day (ms), or the hour for hourly rows.
    pub day: Millis,
    /// ISO alpha-2 of the recipient ('' unknown).
    pub country: String,
    /// `delivered` or `charged`.
    pub metric: String,
    /// For `charged`: Meta's pricing category; for `delivered`: the message's category
    /// dimension (Meta's once priced, `service` for a non-template message, '' before).
    pub category: String,
    /// The conversation origin (`free_entry_point`, `business`, `customer`).
    pub origin: String,
    pub n: i64,
}

/// A day's `delivered` or `charged` messages of one country, category and origin (the key of
/// a [`CostRow`]), two sums in one read: `all` of the application's counters, `chosen` of
/// those whose dimensions equal every filter (`all` again without filters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendCount {
    /// The UTC day (ms), or the hour for a day read by its hours.
    pub day: Millis,
    pub country: String,
    pub metric: String,
    pub category: String,
    pub origin: String,
    pub all: i64,
    pub chosen: i64,
}

#[async_trait]
pub trait PricingStore {
    /// The application's price table as stored (`None`: the default table).
    async fn price_table(&self, app: &ApplicationId) -> Result<Option<String>>;
    /// Replaces the application's table (`None`: back to the default).
    async fn put_price_table(
        &self,
        app: &ApplicationId,
        body: Option<&str>,
        now: Millis,
    ) -> Result<()>;
    /// The senders (`from_phone`) whose message on the number carried a click-to-WhatsApp or
    /// Page `referral` at or after `since`: their free entry point may be open.
    async fn free_entry_point_senders(
        &self,
        app: &ApplicationId,
        phone_number_id: &str,
        since: Millis,
    ) -> Result<Vec<String>>;
    /// The daily (`hourly`: hourly) `delivered` and `charged` counters in `[from, to)`,
    /// keeping only counters whose dimensions equal every filter.
    async fn cost_rows(
        &self,
        app: &ApplicationId,
        from: Millis,
        to: Millis,
        filters: &[(StatDimension, String)],
        hourly: bool,
    ) -> Result<Vec<CostRow>>;
    /// The daily `delivered` and `charged` counters in `[from, to)` summed per day, country,
    /// metric, category and origin as [`cost_rows`](Self::cost_rows) sums them, with and
    /// without the filters, from one read of the counters; in that key order, rows whose two
    /// sums are zero left out. The UTC days in `hourly_days` are read by their hour rows
    /// instead (the days a month's start in the WABA's time zone, or an end of the period,
    /// falls inside), in the same read. What the statistics' spend and the campaign
    /// estimate's month volume are priced from.
    async fn spend_counts(
        &self,
        app: &ApplicationId,
        from: Millis,
        to: Millis,
        filters: &[(StatDimension, String)],
        hourly_days: &[Millis],
    ) -> Result<Vec<SpendCount>>;
}
