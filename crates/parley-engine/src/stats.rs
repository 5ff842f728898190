//! Statistics (#16): what the counters say (`parley-store`'s `stats`, migration 0026) for a
//! period, per hour, day, ISO week or calendar month (UTC), optionally grouped by one
//! dimension and filtered by any. Weeks and months are summed from the daily counters, so a
//! year is ~365 rows per group whatever the traffic. Every request is bounded: the range, the
//! number of buckets and the number of rows the answer may have.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use parley_domain::ApplicationId;
use parley_domain::CampaignId;
use parley_store::stats::{
    CampaignOutcomePage, StatDifference, StatDimension, StatQuery, StatRows, StatSpan,
};
use serde::Serialize;

use crate::Engine;
use crate::error::EngineError;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// The longest period one request may cover (Meta's own analytics look back one year).
pub const MAX_RANGE_DAYS: i64 = 400;
/// The most buckets one request may ask for (an hourly view covers 41 days at most).
pub const MAX_BUCKETS: i64 = 1000;
/// The most bucket × group rows one answer may have.
pub const MAX_ROWS: usize = 20_000;

/// Rows per page of a per-recipient export.
pub const EXPORT_PAGE: u32 = 2000;

/// The counters' metrics, in the API's names and order, with the counter metric each reads.
pub const METRICS: &[(&str, &str)] = &[
    ("queued", "queued"),
    ("sent", "sent"),
    ("delivered", "delivered"),
    ("read", "read"),
    ("failed", "failed"),
    ("skipped", "skipped"),
    ("held_by_meta", "held"),
    ("capped_by_meta", "capped"),
    ("replied", "replied"),
    ("reactions", "reaction"),
    ("button_clicks", "button"),
    ("opt_outs", "opt_out"),
    ("inbound", "inbound"),
    ("conversations_by_customer", "conversation_customer"),
    ("conversations_by_business", "conversation_business"),
    ("unique_contacts_outside_window", "limit_reach"),
    ("charged", "charged"),
];

/// The metrics broken down by their detail: the API's name of the breakdown, the counter
/// metric.
pub const BREAKDOWNS: &[(&str, &str)] = &[
    ("failed_by_code", "failed"),
    ("skipped_by_reason", "skipped"),
    ("charged_by_category", "charged"),
    ("inbound_by_kind", "inbound"),
    ("opt_outs_by_source", "opt_out"),
    ("unique_contacts_outside_window_by_scope", "limit_reach"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Hour,
    Day,
    Week,
    Month,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Interval> {
        Some(match s {
            "hour" => Interval::Hour,
            "day" => Interval::Day,
            "week" => Interval::Week,
            "month" => Interval::Month,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }

    /// The start of the bucket `t` falls in (UTC; weeks start on Monday).
    pub fn floor(self, t: i64) -> i64 {
        match self {
            Interval::Hour => t.div_euclid(HOUR) * HOUR,
            Interval::Day => t.div_euclid(DAY) * DAY,
            // 1970-01-01 was a Thursday: Monday 1969-12-29 is 3 days before.
            Interval::Week => (t + 3 * DAY).div_euclid(7 * DAY) * 7 * DAY - 3 * DAY,
            Interval::Month => {
                let (y, m, _) = civil(t.div_euclid(DAY));
                days_from_civil(y, m, 1) * DAY
            }
        }
    }

    /// The start of the bucket after the one starting at `start`.
    pub fn next(self, start: i64) -> i64 {
        match self {
            Interval::Hour => start + HOUR,
            Interval::Day => start + DAY,
            Interval::Week => start + 7 * DAY,
            Interval::Month => {
                let (y, m, _) = civil(start.div_euclid(DAY));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY
            }
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A statistics request as the API and the console receive it (all text, all optional).
#[derive(Debug, Clone, Default)]
pub struct StatsParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub interval: Option<String>,
    pub group_by: Option<String>,
    /// `(dimension name, value)`: `campaign`, `template`, `phone_number`, `category`,
    /// `country`, `conversation_origin`.
    pub filters: Vec<(String, String)>,
}

/// A parsed, bounded statistics request.
#[derive(Debug, Clone)]
pub struct StatsRequest {
    pub from: i64,
    pub to: i64,
    pub interval: Interval,
    pub group_by: Option<StatDimension>,
    pub filters: Vec<(StatDimension, String)>,
}

/// At most 40 characters of hostile input, for an error message.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A time as RFC 3339 (`2026-12-01T00:00:00Z`) or a date (`2026-12-01`, UTC midnight).
fn parse_time(field: &'static str, s: &str) -> Result<i64, EngineError> {
    let bad = || {
        EngineError::bad_request(
            "invalid_time",
            format!(
                "`{}` is not a time: write an RFC 3339 time like 2026-12-01T00:00:00Z or a date like 2026-12-01",
                excerpt(s)
            ),
        )
        .field(field)
    };
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad());
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &fmt).map_err(|_| bad())?;
    Ok(d.midnight().assume_utc().unix_timestamp() * 1000)
}

impl StatsRequest {
    /// Parses and bounds a request; `now` ends the default period (the last 30 days).
    pub fn parse(p: &StatsParams, now: i64) -> Result<StatsRequest, EngineError> {
        let interval = match p.interval.as_deref() {
            None | Some("") => Interval::Day,
            Some(s) => Interval::parse(s).ok_or_else(|| {
                EngineError::bad_request(
                    "invalid_interval",
                    format!(
                        "`{}` is not an interval: use hour, day, week or month",
                        excerpt(s)
                    ),
                )
                .field("interval")
            })?,
        };
        let group_by = match p.group_by.as_deref() {
            None | Some("") => None,
            Some(s) => Some(StatDimension::parse(s).ok_or_else(|| {
                EngineError::bad_request(
                    "invalid_group_by",
                    format!(
                        "`{}` is not a grouping: use campaign, template, phone_number, category, country or conversation_origin",
                        excerpt(s)
                    ),
                )
                .field("group_by")
            })?),
        };
        let mut filters = Vec::new();
        for (k, v) in &p.filters {
            let d = StatDimension::parse(k).ok_or_else(|| {
                EngineError::bad_request(
                    "invalid_filter",
                    format!("`{}` is not a filter", excerpt(k)),
                )
                .field(k.clone())
            })?;
            if v.len() > 200 {
                return Err(EngineError::bad_request(
                    "invalid_filter",
                    "a filter value is at most 200 bytes",
                )
                .field(k.clone()));
            }
            filters.push((d, v.clone()));
        }
        let to = match p.to.as_deref() {
            None | Some("") => now,
            Some(s) => parse_time("to", s)?,
        };
        let from = match p.from.as_deref() {
            None | Some("") => to - 30 * DAY,
            Some(s) => parse_time("from", s)?,
        };
        if from >= to {
            return Err(
                EngineError::bad_request("invalid_range", "`from` must be before `to`")
                    .field("from"),
            );
        }
        if to - from > MAX_RANGE_DAYS * DAY {
            return Err(EngineError::bad_request(
                "range_too_large",
                format!("a statistics request covers at most {MAX_RANGE_DAYS} days: narrow `from` and `to`"),
            )
            .field("from"));
        }
        let (from, to) = (interval.floor(from), {
            let f = interval.floor(to - 1);
            interval.next(f)
        });
        let mut buckets = 0i64;
        let mut b = from;
        while b < to {
            buckets += 1;
            if buckets > MAX_BUCKETS {
                return Err(EngineError::bad_request(
                    "too_many_buckets",
                    format!(
                        "at most {MAX_BUCKETS} buckets per request: use a longer interval or a shorter period"
                    ),
                )
                .field("interval"));
            }
            b = interval.next(b);
        }
        Ok(StatsRequest {
            from,
            to,
            interval,
            group_by,
            filters,
        })
    }

    /// The bucket starts of the period.
    pub fn buckets(&self) -> Vec<i64> {
        let mut out = Vec::new();
        let mut b = self.from;
        while b < self.to {
            out.push(b);
            b = self.interval.next(b);
        }
        out
    }
}

/// The counts of one bucket (and group). Flat: every metric in an array, each breakdown a
/// sorted list (an hourly view has up to 20,000 of these; a map per metric and breakdown cost
/// more than the query). Serialized as the maps it replaced: `metrics` name → count (every
/// metric, zero included), `breakdown` name → detail → count (every breakdown, only non-zero
/// details), names and details in ascending order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatCounts {
    pub metrics: Metrics,
    pub breakdown: Breakdowns,
}

/// Every metric of [`METRICS`], in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics(pub [i64; METRICS.len()]);

/// Every breakdown of [`BREAKDOWNS`], in its order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breakdowns(pub [Breakdown; BREAKDOWNS.len()]);

/// One breakdown: (detail, count), sorted by detail, none zero. The details are shared by
/// the rows of an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breakdown(pub Vec<(Arc<str>, i64)>);

impl Metrics {
    /// A metric by its API name.
    pub fn get(&self, name: &str) -> Option<&i64> {
        METRICS
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| &self.0[i])
    }
}

impl std::ops::Index<&str> for Metrics {
    type Output = i64;
    fn index(&self, name: &str) -> &i64 {
        self.get(name).expect("no such metric")
    }
}

impl Breakdowns {
    /// A breakdown by its API name.
    pub fn get(&self, name: &str) -> Option<&Breakdown> {
        BREAKDOWNS
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| &self.0[i])
    }
}

impl std::ops::Index<&str> for Breakdowns {
    type Output = Breakdown;
    fn index(&self, name: &str) -> &Breakdown {
        self.get(name).expect("no such breakdown")
    }
}

type DetailIter<'a> = std::iter::Map<
    std::slice::Iter<'a, (Arc<str>, i64)>,
    fn(&'a (Arc<str>, i64)) -> (&'a str, &'a i64),
>;

impl Breakdown {
    /// A detail's count.
    pub fn get(&self, detail: &str) -> Option<&i64> {
        self.0
            .binary_search_by(|(d, _)| (**d).cmp(detail))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(d, _)| &**d)
    }

    pub fn iter(&self) -> DetailIter<'_> {
        self.into_iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Breakdown {
    type Item = (&'a str, &'a i64);
    type IntoIter = DetailIter<'a>;
    fn into_iter(self) -> DetailIter<'a> {
        self.0.iter().map(|(d, n)| (&**d, n))
    }
}

/// [`METRICS`]' and [`BREAKDOWNS`]' places in the order of their names (a map's order).
static METRIC_ORDER: LazyLock<Vec<usize>> = LazyLock::new(|| by_name(METRICS));
static BREAKDOWN_ORDER: LazyLock<Vec<usize>> = LazyLock::new(|| by_name(BREAKDOWNS));

fn by_name(names: &[(&'static str, &'static str)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_unstable_by_key(|&i| names[i].0);
    order
}

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(METRICS.len()))?;
        for &i in METRIC_ORDER.iter() {
            m.serialize_entry(METRICS[i].0, &self.0[i])?;
        }
        m.end()
    }
}

impl Serialize for Breakdowns {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(BREAKDOWNS.len()))?;
        for &i in BREAKDOWN_ORDER.iter() {
            m.serialize_entry(BREAKDOWNS[i].0, &self.0[i])?;
        }
        m.end()
    }
}

impl Serialize for Breakdown {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (d, n) in &self.0 {
            m.serialize_entry(&**d, n)?;
        }
        m.end()
    }
}

impl Default for StatCounts {
    fn default() -> StatCounts {
        StatCounts::empty()
    }
}

impl StatCounts {
    fn empty() -> StatCounts {
        StatCounts {
            metrics: Metrics([0; METRICS.len()]),
            breakdown: Breakdowns::default(),
        }
    }
}

/// One row of the answer: a bucket, its group value (when grouped) and its counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatBucket {
    pub start: i64,
    pub group: Option<String>,
    pub counts: StatCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsReport {
    pub from: i64,
    pub to: i64,
    pub interval: Interval,
    pub group_by: Option<StatDimension>,
    /// Per bucket (every bucket of the period) and group (those with counts), in order.
    pub data: Vec<StatBucket>,
    pub totals: StatCounts,
    /// Messaging-limit use per limit scope (empty with a filter: a scope's count is not
    /// split by campaign, template, …): the unique contacts counted in the moving 24 h at
    /// the end of each bucket.
    pub messaging_limit: Vec<LimitUseSeries>,
}

/// One limit scope's use over the period (see [`StatsReport::messaging_limit`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitUseSeries {
    /// The quota ledger's scope: `bp:<business portfolio id>` or `pn:<phone number id>`.
    pub scope: String,
    /// Contacts counted at the end of each bucket (one per bucket of `data`'s period, in
    /// order); after now, those still counted then if nothing else is sent.
    pub used: Vec<i64>,
}

/// The answer's rows, its totals and each limit scope's moves per bucket (starts minus stops,
/// every group), from the store's sums.
struct Folded {
    data: Vec<StatBucket>,
    totals: StatCounts,
    limit_moves: BTreeMap<String, BTreeMap<i64, i64>>,
}

/// What one counter metric adds to: its places in [`METRICS`] and [`BREAKDOWNS`], and the
/// sign it moves a limit scope's count by (0: none).
struct MetricUse {
    metrics: Vec<usize>,
    breakdowns: Vec<usize>,
    limit: i64,
}

/// Sums the counters of one answer row (or of the totals) as arrays, then builds the
/// answer's maps once.
struct Acc {
    metrics: [i64; METRICS.len()],
    /// (breakdown, detail, n) as they come; sorted and summed by `counts`.
    breakdown: Vec<(usize, u32, i64)>,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            metrics: [0; METRICS.len()],
            breakdown: Vec::new(),
        }
    }

    fn add(&mut self, uses: &MetricUse, detail: u32, n: i64) {
        for &i in &uses.metrics {
            self.metrics[i] += n;
        }
        for &i in &uses.breakdowns {
            self.breakdown.push((i, detail, n));
        }
    }

    fn counts(mut self, details: &[Arc<str>]) -> StatCounts {
        self.breakdown.sort_unstable_by_key(|&(i, d, _)| (i, d));
        self.breakdown.dedup_by(|x, kept| {
            let same = (x.0, x.1) == (kept.0, kept.1);
            if same {
                kept.2 += x.2;
            }
            same
        });
        let mut breakdown = Breakdowns::default();
        // Details are ranks: in the strings' order, so each list comes out sorted.
        for &(i, d, n) in &self.breakdown {
            if n != 0 {
                breakdown.0[i].0.push((details[d as usize].clone(), n));
            }
        }
        StatCounts {
            metrics: Metrics(self.metrics),
            breakdown,
        }
    }
}

/// Folds the store's sums (in bucket, group, metric, detail order) into the answer: one row
/// per bucket and group with counts, one row of zeros per bucket with none. The rows are
/// counted before any is built, so an answer over [`MAX_ROWS`] is refused before it costs
/// its maps. Each row's counts are summed in arrays and its maps built once (the counters of
/// an hourly view of 41 days are ~69,000 rows: a map entry per counter cost more than the
/// query).
fn fold(req: &StatsRequest, rows: &StatRows) -> Result<Folded, EngineError> {
    let uses: Vec<MetricUse> = rows
        .metrics
        .iter()
        .map(|m| MetricUse {
            metrics: (0..METRICS.len()).filter(|&i| METRICS[i].1 == m).collect(),
            breakdowns: (0..BREAKDOWNS.len())
                .filter(|&i| BREAKDOWNS[i].1 == m)
                .collect(),
            limit: match m.as_str() {
                "limit_reach" => 1,
                "limit_release" => -1,
                _ => 0,
            },
        })
        .collect();
    let mut limit_moves: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
    let mut totals = Acc::new();
    // Each sum's bucket start (the store's buckets already are, for every interval).
    let starts: Vec<i64> = rows
        .rows
        .iter()
        .map(|c| req.interval.floor(c.bucket))
        .collect();
    for (c, &start) in rows.rows.iter().zip(&starts) {
        let u = &uses[c.metric as usize];
        totals.add(u, c.detail, c.n);
        if u.limit != 0 {
            *limit_moves
                .entry(rows.details[c.detail as usize].clone())
                .or_default()
                .entry(start)
                .or_insert(0) += u.limit * c.n;
        }
    }
    // The sums of one answer row are consecutive: sorted by (bucket, group) already.
    let mut order: Vec<usize> = (0..rows.rows.len()).collect();
    let key = |i: usize| (starts[i], rows.rows[i].group);
    if !order.is_sorted_by_key(|&i| key(i)) {
        order.sort_by_key(|&i| key(i));
    }
    // (start, group, range of `order`) per answer row with counts.
    let mut cells: Vec<(i64, u32, std::ops::Range<usize>)> = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        match cells.last_mut() {
            Some((s, g, r)) if (*s, *g) == key(i) => r.end = k + 1,
            _ => cells.push((starts[i], rows.rows[i].group, k..k + 1)),
        }
    }
    // Every bucket in order, each with its groups or one empty row (`None`).
    let mut layout: Vec<(i64, Option<usize>)> = Vec::new();
    let mut next = 0;
    for start in req.buckets() {
        let mut any = false;
        while next < cells.len() && cells[next].0 <= start {
            if cells[next].0 == start {
                any = true;
                layout.push((start, Some(next)));
            }
            next += 1;
        }
        if !any {
            layout.push((start, None));
        }
        if layout.len() > MAX_ROWS {
            return Err(EngineError::bad_request(
                "too_many_rows",
                format!(
                    "the answer would have more than {MAX_ROWS} rows: use a longer interval, a shorter period or a filter"
                ),
            ));
        }
    }
    let details: Vec<Arc<str>> = rows.details.iter().map(|d| Arc::from(d.as_str())).collect();
    let empty = StatCounts::empty();
    let data = layout
        .into_iter()
        .map(|(bucket, cell)| match cell {
            None => StatBucket {
                start: bucket,
                group: None,
                counts: empty.clone(),
            },
            Some(ci) => {
                let (_, group, range) = &cells[ci];
                let mut acc = Acc::new();
                for &i in &order[range.clone()] {
                    let c = &rows.rows[i];
                    acc.add(&uses[c.metric as usize], c.detail, c.n);
                }
                StatBucket {
                    start: bucket,
                    group: req.group_by.map(|_| rows.groups[*group as usize].clone()),
                    counts: acc.counts(&details),
                }
            }
        })
        .collect();
    Ok(Folded {
        data,
        totals: totals.counts(&details),
        limit_moves,
    })
}

impl Engine {
    /// The statistics of the application for a parsed request, from the counters.
    pub async fn stats(
        &self,
        app: &ApplicationId,
        req: &StatsRequest,
    ) -> Result<StatsReport, EngineError> {
        let span = if req.interval == Interval::Hour {
            StatSpan::Hour
        } else {
            StatSpan::Day
        };
        let rows = self
            .store
            .stat_rows(&StatQuery {
                application: app.clone(),
                span,
                from: req.from,
                to: req.to,
                group_by: req.group_by,
                filters: req.filters.clone(),
                starts: match req.interval {
                    Interval::Week | Interval::Month => req.buckets(),
                    Interval::Hour | Interval::Day => Vec::new(),
                },
            })
            .await?;
        let Folded {
            data,
            totals,
            limit_moves,
        } = fold(req, &rows)?;
        let messaging_limit = if req.filters.is_empty() {
            self.limit_use_series(app, req, limit_moves).await?
        } else {
            Vec::new()
        };
        Ok(StatsReport {
            from: req.from,
            to: req.to,
            interval: req.interval,
            group_by: req.group_by,
            data,
            totals,
            messaging_limit,
        })
    }

    /// Each scope's count at the end of each bucket: the contacts counted just before `from`
    /// (read from `limit_reaches`: a reach in the 24 h before), then the bucket's starts minus
    /// its stops (`limit_reach` − `limit_release`, both kept as the reaches are recorded).
    async fn limit_use_series(
        &self,
        app: &ApplicationId,
        req: &StatsRequest,
        moves: BTreeMap<String, BTreeMap<i64, i64>>,
    ) -> Result<Vec<LimitUseSeries>, EngineError> {
        let mut base: BTreeMap<String, i64> = self
            .store
            .limit_counted_before(app, req.from)
            .await?
            .into_iter()
            .collect();
        for scope in moves.keys() {
            base.entry(scope.clone()).or_insert(0);
        }
        let buckets = req.buckets();
        Ok(base
            .into_iter()
            .map(|(scope, mut used)| {
                let m = moves.get(&scope);
                let series = buckets
                    .iter()
                    .map(|b| {
                        used += m.and_then(|m| m.get(b)).copied().unwrap_or(0);
                        used
                    })
                    .collect();
                LimitUseSeries {
                    scope,
                    used: series,
                }
            })
            .collect())
    }

    /// A page of a campaign's per-recipient outcomes (`EXPORT_PAGE` rows at most) after the
    /// message id `after`, in message id order: the export reads the campaign page by page so
    /// that a million rows stream with flat memory. `campaign_not_found` for another
    /// application's campaign.
    pub async fn campaign_outcomes_page(
        &self,
        app: &ApplicationId,
        id: &CampaignId,
        after: Option<&str>,
    ) -> Result<CampaignOutcomePage, EngineError> {
        if after.is_none() {
            // Ownership is checked once, on the first page; later pages are keyed by it.
            self.campaign(app, id).await?;
        }
        Ok(self
            .store
            .campaign_outcomes(app, id.as_str(), after, EXPORT_PAGE)
            .await?)
    }

    /// Recomputes the counters from the raw rows and returns what differs; with `fix`,
    /// replaces them by the recount (`parley stats recount --fix`).
    pub async fn recount_stats(&self, fix: bool) -> Result<Vec<StatDifference>, EngineError> {
        Ok(self.store.stat_recount(fix).await?)
    }
}

/// How often the worker folds the statistics deltas into the counters (PostgreSQL).
pub const FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Folds the statistics deltas every [`FOLD_EVERY`], so what a read folds first is at most a
/// few seconds of traffic, however long nobody looked (PostgreSQL; a no-op on SQLite). Every
/// worker node folds: folds run side by side safely (each moves the deltas it deleted), as
/// concurrent reads already do.
pub async fn run_fold(engine: Engine, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(FOLD_EVERY) => {}
        }
        if let Err(e) = engine.store.fold_statistics().await {
            tracing::warn!(error = %e, "cannot fold the statistics deltas");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_floor_and_step() {
        // 2026-12-06 (a Sunday) 13:11 UTC.
        let t = 1_796_562_660_000;
        assert_eq!(Interval::Day.floor(t), 1_796_515_200_000);
        // Monday 2026-11-30.
        assert_eq!(Interval::Week.floor(t), 1_796_515_200_000 - 6 * DAY);
        // 2026-12-01.
        let dec = Interval::Month.floor(t);
        assert_eq!(dec, 1_796_515_200_000 - 5 * DAY);
        assert_eq!(Interval::Month.next(dec), dec + 31 * DAY);
        assert_eq!(
            Interval::Month.next(Interval::Month.next(dec)),
            dec + 62 * DAY
        );
    }

    #[test]
    fn hostile_requests_are_refused_with_stable_codes() {
        let now = 1_796_562_660_000;
        let p = |from: &str, to: &str, interval: &str| StatsParams {
            from: Some(from.into()),
            to: Some(to.into()),
            interval: Some(interval.into()),
            ..Default::default()
        };
        let code = |p: StatsParams| StatsRequest::parse(&p, now).unwrap_err().code;
        assert_eq!(
            code(p("2026-01-01", "2026-02-01", "fortnight")),
            "invalid_interval"
        );
        assert_eq!(
            code(p("0001-01-01", "9999-12-31", "day")),
            "range_too_large"
        );
        assert_eq!(
            code(p("2026-01-01", "2026-03-01", "hour")),
            "too_many_buckets"
        );
        assert_eq!(code(p("2026-02-01", "2026-01-01", "day")), "invalid_range");
        assert_eq!(code(p("yesterday", "2026-01-01", "day")), "invalid_time");
        let ok =
            StatsRequest::parse(&p("2026-01-01", "2026-12-31T23:00:00Z", "month"), now).unwrap();
        assert_eq!(ok.buckets().len(), 12);
    }
    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    /// The counts of the old shape: a map per metric and breakdown.
    #[derive(Serialize)]
    struct OldCounts {
        metrics: BTreeMap<&'static str, i64>,
        breakdown: BTreeMap<&'static str, BTreeMap<String, i64>>,
    }

    impl OldCounts {
        fn empty() -> OldCounts {
            OldCounts {
                metrics: METRICS.iter().map(|(name, _)| (*name, 0)).collect(),
                breakdown: BREAKDOWNS
                    .iter()
                    .map(|(name, _)| (*name, BTreeMap::new()))
                    .collect(),
            }
        }

        fn add(&mut self, metric: &str, detail: &str, n: i64) {
            for (name, m) in METRICS {
                if *m == metric {
                    *self.metrics.entry(name).or_insert(0) += n;
                }
            }
            for (name, m) in BREAKDOWNS {
                if *m == metric {
                    let e = self.breakdown.entry(name).or_default();
                    *e.entry(detail.to_owned()).or_insert(0) += n;
                    if e.get(detail) == Some(&0) {
                        e.remove(detail);
                    }
                }
            }
        }
    }

    #[derive(Serialize)]
    struct OldBucket {
        start: i64,
        group: Option<String>,
        counts: OldCounts,
    }

    type OldFolded = (
        Vec<OldBucket>,
        OldCounts,
        BTreeMap<String, BTreeMap<i64, i64>>,
    );

    /// The fold of the old shape (a map per metric and breakdown, per bucket and group in a
    /// map, one map entry per counter): what [`fold`] must answer, in the same JSON.
    fn reference(req: &StatsRequest, rows: &StatRows) -> Result<OldFolded, EngineError> {
        let rows = rows.to_rows();
        let mut cells: BTreeMap<(i64, String), OldCounts> = BTreeMap::new();
        let mut totals = OldCounts::empty();
        let mut limit_moves: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
        for r in &rows {
            let sign = match r.metric.as_str() {
                "limit_reach" => 1,
                "limit_release" => -1,
                _ => continue,
            };
            *limit_moves
                .entry(r.detail.clone())
                .or_default()
                .entry(req.interval.floor(r.bucket))
                .or_insert(0) += sign * r.n;
        }
        for r in rows {
            let start = req.interval.floor(r.bucket);
            cells
                .entry((start, r.group.clone()))
                .or_insert_with(OldCounts::empty)
                .add(&r.metric, &r.detail, r.n);
            totals.add(&r.metric, &r.detail, r.n);
        }
        let mut data = Vec::new();
        let mut cells = cells.into_iter().peekable();
        for start in req.buckets() {
            let mut any = false;
            while let Some(((s, g), counts)) = cells.next_if(|((s, _), _)| *s <= start) {
                if s < start {
                    continue;
                }
                any = true;
                data.push(OldBucket {
                    start,
                    group: req.group_by.map(|_| g),
                    counts,
                });
            }
            if !any {
                data.push(OldBucket {
                    start,
                    group: None,
                    counts: OldCounts::empty(),
                });
            }
            if data.len() > MAX_ROWS {
                return Err(EngineError::bad_request("too_many_rows", "too many rows"));
            }
        }
        Ok((data, totals, limit_moves))
    }

    /// Sums as the store hands them over: strings numbered in their order, rows sorted by
    /// (bucket, group, metric, detail), none zero.
    fn sums(mut rows: Vec<(i64, &str, &str, &str, i64)>) -> StatRows {
        fn table(v: impl Iterator<Item = String>) -> Vec<String> {
            let set: std::collections::BTreeSet<String> = v.collect();
            set.into_iter().collect()
        }
        rows.sort();
        rows.dedup_by(|x, kept| {
            let same = (x.0, x.1, x.2, x.3) == (kept.0, kept.1, kept.2, kept.3);
            if same {
                kept.4 += x.4;
            }
            same
        });
        rows.retain(|r| r.4 != 0);
        let groups = table(rows.iter().map(|r| r.1.to_owned()));
        let metrics = table(rows.iter().map(|r| r.2.to_owned()));
        let details = table(rows.iter().map(|r| r.3.to_owned()));
        let at = |t: &[String], s: &str| t.iter().position(|x| x == s).unwrap() as u32;
        let cells = rows
            .iter()
            .map(|r| parley_store::stats::StatCell {
                bucket: r.0,
                group: at(&groups, r.1),
                metric: at(&metrics, r.2),
                detail: at(&details, r.3),
                n: r.4,
            })
            .collect();
        StatRows {
            groups,
            metrics,
            details,
            rows: cells,
        }
    }

    #[test]
    fn the_fold_answers_as_a_map_per_counter_did() {
        const T0: i64 = 1_767_225_600_000; // 2026-01-01, a Thursday.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let groups = ["", "DE", "US", "cmp_a", "tpl \"q\" ü"];
        let metrics = [
            "queued",
            "sent",
            "failed",
            "charged",
            "inbound",
            "limit_reach",
            "limit_release",
            "not_a_metric",
        ];
        let details = ["", "131026", "marketing", "bp:1", "pn:2"];
        for (interval, span_ms, buckets) in [
            (Interval::Hour, HOUR, 72),
            (Interval::Day, DAY, 40),
            (Interval::Week, DAY, 40),
            (Interval::Month, DAY, 100),
        ] {
            for grouped in [false, true] {
                let req = StatsRequest {
                    from: interval.floor(T0),
                    to: interval.next(interval.floor(T0 + buckets * span_ms - 1)),
                    interval,
                    group_by: grouped.then_some(StatDimension::Country),
                    filters: vec![],
                };
                let starts = req.buckets();
                let mut raw = Vec::new();
                for _ in 0..2000 {
                    // Counters in the span's buckets, summed into the answer's starts as the
                    // store does; some cancel out, some leave the totals at zero.
                    let b = T0 + next(buckets as u64) as i64 * span_ms;
                    let b = starts[starts.partition_point(|s| *s <= b) - 1];
                    let n = next(7) as i64 - 3;
                    raw.push((
                        b,
                        if grouped {
                            groups[next(5) as usize]
                        } else {
                            ""
                        },
                        metrics[next(8) as usize],
                        details[next(5) as usize],
                        n,
                    ));
                }
                let rows = sums(raw);
                let (got, want) = (fold(&req, &rows).unwrap(), reference(&req, &rows).unwrap());
                assert_eq!(
                    json(&got.data),
                    json(&want.0),
                    "{interval:?} grouped {grouped}"
                );
                assert_eq!(json(&got.totals), json(&want.1));
                assert_eq!(got.limit_moves, want.2);
                // The accessors read what the JSON says.
                for (b, old) in got.data.iter().zip(&want.0) {
                    for (name, _) in METRICS {
                        assert_eq!(b.counts.metrics[name], old.counts.metrics[name]);
                    }
                    for (name, _) in BREAKDOWNS {
                        let old = &old.counts.breakdown[name];
                        let new = &b.counts.breakdown[name];
                        assert!(new.keys().eq(old.keys().map(String::as_str)));
                        assert!(old.iter().all(|(d, n)| new.get(d) == Some(n)));
                    }
                }
                assert!(got.data.len() >= starts.len());
            }
        }
        // Over the bound: refused, as before.
        let req = StatsRequest {
            from: T0,
            to: T0 + 1000 * HOUR,
            interval: Interval::Hour,
            group_by: Some(StatDimension::Campaign),
            filters: vec![],
        };
        let names: Vec<String> = (0..21).map(|i| format!("cmp_{i:02}")).collect();
        let raw = (0..1000)
            .flat_map(|h| {
                names
                    .iter()
                    .map(move |g| (T0 + h * HOUR, g.as_str(), "sent", "", 1))
            })
            .collect();
        let rows = sums(raw);
        assert_eq!(fold(&req, &rows).err().unwrap().code, "too_many_rows");
        assert_eq!(reference(&req, &rows).err().unwrap().code, "too_many_rows");
    }
}
