//! Statistics (#16): what the counters say (`parley-store`'s `stats`, migration 0026) for a
//! period, per hour, day, ISO week or calendar month (UTC), optionally grouped by one
//! dimension and filtered by any. Weeks and months are summed from the daily counters, so a
//! year is ~365 rows per group whatever the traffic. Every request is bounded: the range, the
//! number of buckets and the number of rows the answer may have.

use std::collections::BTreeMap;

use parley_domain::ApplicationId;
use parley_domain::CampaignId;
use parley_store::stats::{CampaignOutcome, StatDifference, StatDimension, StatQuery, StatSpan};
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

/// The counts of one bucket (and group).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatCounts {
    /// Every metric of [`METRICS`], by its API name, zero included.
    pub metrics: BTreeMap<&'static str, i64>,
    /// Every breakdown of [`BREAKDOWNS`]: detail → count (only non-zero).
    pub breakdown: BTreeMap<&'static str, BTreeMap<String, i64>>,
}

impl StatCounts {
    fn empty() -> StatCounts {
        StatCounts {
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
        let mut cells: BTreeMap<(i64, String), StatCounts> = BTreeMap::new();
        let mut totals = StatCounts::empty();
        // Starts minus stops of each scope's count, per bucket (every group).
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
                .or_insert_with(StatCounts::empty)
                .add(&r.metric, &r.detail, r.n);
            totals.add(&r.metric, &r.detail, r.n);
        }
        // Every bucket in order, each with its groups (moved, not cloned) or one empty row.
        let mut data = Vec::new();
        let mut cells = cells.into_iter().peekable();
        for start in req.buckets() {
            let mut any = false;
            while let Some(((s, g), counts)) = cells.next_if(|((s, _), _)| *s <= start) {
                if s < start {
                    continue;
                }
                any = true;
                data.push(StatBucket {
                    start,
                    group: req.group_by.map(|_| g),
                    counts,
                });
            }
            if !any {
                data.push(StatBucket {
                    start,
                    group: None,
                    counts: StatCounts::empty(),
                });
            }
            if data.len() > MAX_ROWS {
                return Err(EngineError::bad_request(
                    "too_many_rows",
                    format!(
                        "the answer would have more than {MAX_ROWS} rows: use a longer interval, a shorter period or a filter"
                    ),
                ));
            }
        }
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
    ) -> Result<Vec<CampaignOutcome>, EngineError> {
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
}
