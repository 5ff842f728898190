//! Statistics counters (#16; migration 0026): per application, hour and day, metric and the
//! dimensions a query groups by, kept by triggers as messages, inbound messages and opt-outs
//! change. What a row counts for is written once in `gen/stats_sql.py`, which generates the
//! triggers of both backends and the recount (`stats_sql.rs`).

use std::borrow::Cow;

use async_trait::async_trait;
use parley_domain::ApplicationId;
use serde::Serialize;

use crate::{Millis, Result};

/// The bucket size counters are kept in. Weeks and months are summed from days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatSpan {
    Hour,
    Day,
}

impl StatSpan {
    pub fn as_str(self) -> &'static str {
        match self {
            StatSpan::Hour => "h",
            StatSpan::Day => "d",
        }
    }
    pub fn millis(self) -> Millis {
        match self {
            StatSpan::Hour => 3_600_000,
            StatSpan::Day => 86_400_000,
        }
    }
}

/// A dimension statistics can be grouped or filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatDimension {
    Campaign,
    Template,
    PhoneNumber,
    Category,
    Country,
    ConversationOrigin,
}

impl StatDimension {
    pub const ALL: [StatDimension; 6] = [
        StatDimension::Campaign,
        StatDimension::Template,
        StatDimension::PhoneNumber,
        StatDimension::Category,
        StatDimension::Country,
        StatDimension::ConversationOrigin,
    ];

    /// The API's name (`group_by=phone_number`).
    pub fn name(self) -> &'static str {
        match self {
            StatDimension::Campaign => "campaign",
            StatDimension::Template => "template",
            StatDimension::PhoneNumber => "phone_number",
            StatDimension::Category => "category",
            StatDimension::Country => "country",
            StatDimension::ConversationOrigin => "conversation_origin",
        }
    }

    pub fn parse(s: &str) -> Option<StatDimension> {
        StatDimension::ALL.into_iter().find(|d| d.name() == s)
    }

    /// The counter column (a fixed name, never user text).
    pub(crate) fn column(self) -> &'static str {
        match self {
            StatDimension::Campaign => "campaign_id",
            StatDimension::Template => "template",
            StatDimension::PhoneNumber => "phone_number_id",
            StatDimension::Category => "category",
            StatDimension::Country => "country",
            StatDimension::ConversationOrigin => "origin",
        }
    }
}

/// What to read: buckets of `span` starting in `[from, to)`, summed per bucket, group value,
/// metric and detail, keeping only counters whose dimensions equal every filter.
#[derive(Debug, Clone)]
pub struct StatQuery {
    pub application: ApplicationId,
    pub span: StatSpan,
    pub from: Millis,
    pub to: Millis,
    pub group_by: Option<StatDimension>,
    pub filters: Vec<(StatDimension, String)>,
    /// The starts of the answer's buckets, ascending, when they are longer than `span`
    /// (weeks and months of days): each counter is summed into the last start at or before
    /// it, in SQL, so a year by month reads back ~12 rows per group and metric instead of
    /// ~365. Empty: the counters' own buckets.
    pub starts: Vec<Millis>,
}

/// One summed counter. `group` is '' without a grouping; '' in a dimension means none or
/// unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatRow {
    pub bucket: Millis,
    pub group: String,
    pub metric: String,
    pub detail: String,
    pub n: i64,
}

/// The summed counters a query asks for (see [`StatQuery`]): each distinct group value,
/// metric and detail once, in ascending order, and the sums as indices into them, in
/// (bucket, group, metric, detail) order, none zero. The indices are ranks, so their order
/// is the strings' order. One string per distinct value instead of three per row: an
/// hourly view reads tens of thousands of counters over a few dozen distinct values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatRows {
    pub groups: Vec<String>,
    pub metrics: Vec<String>,
    pub details: Vec<String>,
    pub rows: Vec<StatCell>,
}

/// One summed counter of [`StatRows`]: `group`, `metric` and `detail` index its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatCell {
    pub bucket: Millis,
    pub group: u32,
    pub metric: u32,
    pub detail: u32,
    pub n: i64,
}

impl StatRows {
    /// The sums with their strings, in the same order.
    pub fn to_rows(&self) -> Vec<StatRow> {
        self.rows
            .iter()
            .map(|c| StatRow {
                bucket: c.bucket,
                group: self.groups[c.group as usize].clone(),
                metric: self.metrics[c.metric as usize].clone(),
                detail: self.details[c.detail as usize].clone(),
                n: c.n,
            })
            .collect()
    }
}

/// The full key of a counter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct StatKey {
    pub application_id: String,
    pub span: String,
    pub bucket: Millis,
    pub metric: String,
    pub campaign_id: String,
    pub template: String,
    pub phone_number_id: String,
    pub category: String,
    pub country: String,
    pub origin: String,
    pub detail: String,
}

/// A counter that differs from the recount of the raw rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatDifference {
    pub key: StatKey,
    pub counted: i64,
    pub recounted: i64,
}

/// A page of a campaign's per-recipient outcomes as read, in one of two shapes: on SQLite
/// one JSON array of arrays, the columns in [`CampaignOutcome`]'s field order (sqlx hands
/// SQLite rows over one by one, which cost more than the query); on PostgreSQL the rows as
/// sent, the same columns in binary form (building the JSON cost PostgreSQL ~3× what Parley
/// spends on the page). [`CampaignOutcomePage::rows`] reads either into outcomes whose text
/// borrows from the page where it can (an export of a million rows would otherwise make ~20
/// million strings).
#[derive(Debug, Default)]
pub struct CampaignOutcomePage {
    page: OutcomePage,
    /// The statuses still in `status_log` (projected, not merged yet) naming the page's
    /// messages, read in the page's snapshot, by message id: [`CampaignOutcomePage::rows`]
    /// merges them in as the processor will.
    pending: crate::lattice::PendingStatuses,
}

#[derive(Debug, Default)]
enum OutcomePage {
    #[default]
    Empty,
    Json(String),
    Rows(Vec<sqlx::postgres::PgRow>),
}

impl CampaignOutcomePage {
    /// The page of `json` (`None`: no rows).
    pub fn new(json: Option<String>) -> Self {
        CampaignOutcomePage {
            page: json.map_or(OutcomePage::Empty, OutcomePage::Json),
            pending: Default::default(),
        }
    }

    /// The page of PostgreSQL rows of the columns in [`CampaignOutcome`]'s field order.
    pub(crate) fn of_rows(rows: Vec<sqlx::postgres::PgRow>) -> Self {
        CampaignOutcomePage {
            page: OutcomePage::Rows(rows),
            pending: Default::default(),
        }
    }

    /// The page with the statuses still in the log that name its messages.
    pub(crate) fn with_pending(mut self, pending: crate::lattice::PendingStatuses) -> Self {
        self.pending = pending;
        self
    }

    /// The page's outcomes in message id order.
    pub fn rows(&self) -> Result<Vec<CampaignOutcome<'_>>> {
        let mut out: Vec<CampaignOutcome<'_>> = match &self.page {
            OutcomePage::Empty => return Ok(Vec::new()),
            OutcomePage::Json(json) => serde_json::from_str(json)
                .map_err(|e| crate::StoreError::Corrupt(format!("campaign outcomes: {e}")))?,
            OutcomePage::Rows(rows) => {
                if let Some(first) = rows.first() {
                    CampaignOutcome::check_columns(first)?;
                }
                rows.iter()
                    .map(CampaignOutcome::of_row)
                    .collect::<Result<_>>()?
            }
        };
        out.sort_unstable_by(|a, b| a.message_id.cmp(&b.message_id));
        if !self.pending.is_empty() {
            for o in &mut out {
                if let Some(all) = self.pending.get(o.message_id.as_ref()) {
                    crate::lattice::overlay_outcome(o, all);
                }
            }
        }
        Ok(out)
    }
}

/// The columns of a PostgreSQL page: texts, but times and the error code (13 to 21).
const OUTCOME_INTEGERS: std::ops::RangeInclusive<usize> = 13..=21;

impl<'a> CampaignOutcome<'a> {
    /// Checks once per page that the columns are what [`CampaignOutcome::of_row`] reads them
    /// as (the rows of a page share their columns), so it need not check every value.
    fn check_columns(row: &sqlx::postgres::PgRow) -> Result<()> {
        use sqlx::{Column, Postgres, Row, Type};
        let columns = row.columns();
        let fits = |i: usize, c: &sqlx::postgres::PgColumn| {
            if OUTCOME_INTEGERS.contains(&i) {
                <i64 as Type<Postgres>>::compatible(c.type_info())
            } else {
                <&str as Type<Postgres>>::compatible(c.type_info())
            }
        };
        if columns.len() != 28 || !columns.iter().enumerate().all(|(i, c)| fits(i, c)) {
            return Err(crate::StoreError::Corrupt(
                "campaign outcomes: unexpected columns".into(),
            ));
        }
        Ok(())
    }

    /// A PostgreSQL row of the columns in this type's field order, its text borrowed from it
    /// (the types checked by [`CampaignOutcome::check_columns`]).
    fn of_row(row: &'a sqlx::postgres::PgRow) -> Result<Self> {
        use sqlx::Row;
        let text =
            |i: usize| -> Result<Cow<'a, str>> { Ok(Cow::Borrowed(row.try_get_unchecked(i)?)) };
        let opt_text = |i: usize| -> Result<Option<Cow<'a, str>>> {
            Ok(row
                .try_get_unchecked::<Option<&str>, _>(i)?
                .map(Cow::Borrowed))
        };
        let time = |i: usize| -> Result<Option<Millis>> { Ok(row.try_get_unchecked(i)?) };
        Ok(CampaignOutcome {
            message_id: text(0)?,
            contact_id: opt_text(1)?,
            to_phone: text(2)?,
            wa_id: opt_text(3)?,
            bsuid: opt_text(4)?,
            parent_bsuid: opt_text(5)?,
            username: opt_text(6)?,
            name: opt_text(7)?,
            state: text(8)?,
            template_name: opt_text(9)?,
            template_language: opt_text(10)?,
            content: text(11)?,
            wamid: opt_text(12)?,
            queued_at: row.try_get_unchecked(13)?,
            sending_at: time(14)?,
            accepted_at: time(15)?,
            sent_at: time(16)?,
            delivered_at: time(17)?,
            read_at: time(18)?,
            failed_at: time(19)?,
            replied_at: time(20)?,
            error_code: time(21)?,
            error_message: opt_text(22)?,
            hold_reason: opt_text(23)?,
            meta_status: opt_text(24)?,
            pricing: opt_text(25)?,
            pricing_category: opt_text(26)?,
            country: opt_text(27)?,
        })
    }
}

/// An optional text, borrowed from the JSON when it has no escapes (serde borrows a `Cow`
/// only when it is the field's whole type).
fn opt_text<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(serde::Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(<Option<Text<'a>> as serde::Deserialize>::deserialize(d)?.map(|t| t.0))
}

/// One recipient's outcome in a campaign (a message row and its contact), for the
/// per-recipient export. Times are ms; `content` is the rendered message as stored (JSON).
/// Read from a JSON array or a row of the columns in this order (`campaign_outcomes`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CampaignOutcome<'a> {
    #[serde(borrow)]
    pub message_id: Cow<'a, str>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub contact_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub to_phone: Cow<'a, str>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub wa_id: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub bsuid: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub parent_bsuid: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub username: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub state: Cow<'a, str>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub template_name: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub template_language: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub content: Cow<'a, str>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub wamid: Option<Cow<'a, str>>,
    pub queued_at: Millis,
    pub sending_at: Option<Millis>,
    pub accepted_at: Option<Millis>,
    pub sent_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub read_at: Option<Millis>,
    pub failed_at: Option<Millis>,
    pub replied_at: Option<Millis>,
    pub error_code: Option<i64>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub error_message: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub hold_reason: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub meta_status: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub pricing: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub pricing_category: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "opt_text")]
    pub country: Option<Cow<'a, str>>,
}

#[async_trait]
pub trait StatsStore {
    /// A page of a campaign's recipients' outcomes in message id order, after `after`
    /// (keyset: a million rows are read page by page at the same cost per page).
    async fn campaign_outcomes(
        &self,
        app: &ApplicationId,
        campaign: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<CampaignOutcomePage>;
    /// The counters a query asks for, summed (see [`StatQuery`]).
    async fn stat_rows(&self, q: &StatQuery) -> Result<StatRows>;
    /// Moves the deltas the statistics triggers appended into the counters (PostgreSQL; on
    /// SQLite the triggers update the counters in place and there is nothing to do). Every
    /// read folds first; a worker also folds every few seconds, so a read after a long quiet
    /// spell of the console does not fold days of traffic while the request waits.
    async fn fold_statistics(&self) -> Result<()>;
    /// Recomputes every counter from the raw rows and returns those that differ from the
    /// kept ones (zero counters are equal to missing ones). With `fix`, the kept counters are
    /// replaced by the recount in the same transaction.
    async fn stat_recount(&self, fix: bool) -> Result<Vec<StatDifference>>;
    /// Checks the two definitions of what a message row contributes: the SQL of the
    /// triggers and the recount (`gen/stats_sql.py`) against the Rust the status merge counts
    /// with (`message_stats.rs`), over every message row. Returns the counters where they
    /// differ (`counted`: Rust, `recounted`: SQL); empty when they agree.
    async fn stat_check_message_contributions(&self) -> Result<Vec<StatDifference>>;
    /// Per messaging-limit scope, the unique contacts counted just before `t`: reached
    /// business-initiated (`limit_reaches`, migration 0036) in `[t - 24 h, t)`.
    async fn limit_counted_before(
        &self,
        app: &ApplicationId,
        t: Millis,
    ) -> Result<Vec<(String, i64)>>;
}
