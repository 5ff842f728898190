//! Meta's own numbers beside Parley's (#16 item 5): for a period, Meta's messaging analytics
//! (sent, delivered per number) and pricing analytics (charged volume by category and country,
//! cost by category) for the application's WABAs, next to Parley's counters and reported spend
//! for the same period and numbers, each difference above the tolerance flagged.
//!
//! The days compared are the WABA's: Meta aligns its daily buckets on the WABA's time zone
//! (`timezone_id`), so the period's dates are taken from its midnight to its midnight there,
//! and Parley counts the same instants (UTC days inside, its hourly counters at both ends).
//! UTC days when the compared WABAs are in different zones, in a zone Parley does not know,
//! or in one whose midnight is not on a UTC hour (its counters cannot split those hours);
//! the answer's `time_zone` says which, and why.
//!
//! Bounded: whole days, at most [`MAX_DAYS`], within Meta's one-year lookback; at most
//! [`MAX_NUMBERS`] numbers asked for one by one. Meta's answer is cached per application,
//! platforms and period for [`CACHE_MS`] of the engine's clock (Parley's side is always read
//! fresh). A difference is flagged when it is larger than `tolerance_pct` percent of the larger
//! of the two values (default [`DEFAULT_TOLERANCE_PCT`]), and for costs also larger than
//! [`COST_TOLERANCE`] (rounding of Meta's decimal numbers).

use std::collections::{BTreeMap, HashMap};

use parley_domain::pricing::{Micros, PriceCategory};
use parley_domain::waba_zone::{WabaZone, same_date_in};
use parley_domain::{ApplicationId, PlatformId};
use parley_meta::analytics::{Granularity, MessagingQuery, PricingDimension, PricingQuery};
use parley_store::stats::StatDimension;
use serde::Serialize;

use crate::Engine;
use crate::error::{EngineError, ErrorKind};
use crate::onboarding::status;
use crate::stats::{Interval, StatsRequest};

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// The longest period one comparison covers.
pub const MAX_DAYS: i64 = 92;
/// Meta keeps analytics for one year (since 2025-12-01).
pub const LOOKBACK_DAYS: i64 = 365;
/// Numbers whose messaging analytics are asked for one by one.
pub const MAX_NUMBERS: usize = 25;
/// How long Meta's answer is reused.
pub const CACHE_MS: i64 = 60_000;
pub const DEFAULT_TOLERANCE_PCT: f64 = 2.0;
/// Costs closer than this never differ (one cent).
pub const COST_TOLERANCE: Micros = Micros(10_000);
const CACHE_ENTRIES: usize = 256;

/// A comparison request as the API and the console receive it.
#[derive(Debug, Clone, Default)]
pub struct MetaCompareParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub platform: Option<String>,
    pub tolerance_pct: Option<String>,
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonRow {
    /// `sent`, `delivered` (messages), `charged` (messages Meta charged: `REGULAR`), `cost`.
    pub metric: &'static str,
    /// `total`, `phone_number`, `category` or `country`.
    pub dimension: &'static str,
    /// The phone number id, category (`utility`, `authentication-international`, …) or
    /// country (ISO alpha-2); '' for a total.
    pub key: String,
    /// Decimal text: a count, or an amount in `currency`.
    pub meta: String,
    pub parley: String,
    /// `meta − parley`.
    pub difference: String,
    pub flagged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComparedPlatform {
    pub id: String,
    pub waba_id: String,
    pub phone_numbers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetaComparison {
    /// The first compared instant: the first date's midnight in `time_zone`.
    pub from: i64,
    /// The end (exclusive): the day after the last date, at midnight in `time_zone`.
    pub to: i64,
    /// The zone whose days are compared (the WABAs'; UTC with a `note` when not).
    pub time_zone: WabaZone,
    pub currency: String,
    pub tolerance_pct: f64,
    pub cost_tolerance: Micros,
    /// When Meta's numbers were fetched (engine clock, ms); older than now when cached.
    pub fetched_at: i64,
    pub cached: bool,
    pub platforms: Vec<ComparedPlatform>,
    pub rows: Vec<ComparisonRow>,
    pub flagged: usize,
}

/// Meta's side, as fetched (and cached).
#[derive(Debug, Clone, Default)]
pub(crate) struct MetaSide {
    fetched_at: i64,
    sent: BTreeMap<String, i64>,
    delivered: BTreeMap<String, i64>,
    charged_by_category: BTreeMap<String, i64>,
    charged_by_country: BTreeMap<String, i64>,
    cost_by_category: BTreeMap<String, i64>,
    /// Cost was missing from some point (a partner's credit line): not compared.
    cost_missing: bool,
}

type CacheKey = (String, String, i64, i64);

/// Meta's answers by (application, platforms, from, to).
#[derive(Debug, Default)]
pub struct MetaCache {
    entries: HashMap<CacheKey, MetaSide>,
}

fn bad(code: &'static str, field: &'static str, message: impl Into<String>) -> EngineError {
    EngineError::bad_request(code, message).field(field)
}

/// Parses and bounds the period: whole UTC days, `from` before `to`, at most [`MAX_DAYS`],
/// `from` within the lookback, `to` not after tomorrow. Default: the last 7 days.
pub fn period(p: &MetaCompareParams, now: i64) -> Result<(i64, i64, f64), EngineError> {
    let req = StatsRequest::parse(
        &crate::stats::StatsParams {
            from: p.from.clone(),
            to: p.to.clone(),
            interval: Some("day".into()),
            ..Default::default()
        },
        now,
    );
    let (from, to) = {
        let r = req?;
        (r.from, r.to)
    };
    let (from, to) = if p.from.is_none() {
        (to - 7 * DAY, to)
    } else {
        (from, to)
    };
    if to - from > MAX_DAYS * DAY {
        return Err(bad(
            "range_too_large",
            "from",
            format!(
                "a comparison with Meta's numbers covers at most {MAX_DAYS} days: narrow `from` and `to`"
            ),
        ));
    }
    if from < Interval::Day.floor(now) - LOOKBACK_DAYS * DAY {
        return Err(bad(
            "range_too_old",
            "from",
            format!("Meta keeps analytics for {LOOKBACK_DAYS} days: `from` must be within them"),
        ));
    }
    if to > Interval::Day.floor(now) + 2 * DAY {
        return Err(bad(
            "range_in_future",
            "to",
            "`to` is in the future: Meta has no numbers for it yet",
        ));
    }
    let tolerance = match p.tolerance_pct.as_deref() {
        None | Some("") => DEFAULT_TOLERANCE_PCT,
        Some(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && (0.0..=100.0).contains(t))
            .ok_or_else(|| {
                bad(
                    "invalid_tolerance",
                    "tolerance_pct",
                    "`tolerance_pct` is a percentage from 0 to 100, like 2 or 0.5",
                )
            })?,
    };
    Ok((from, to, tolerance))
}

/// The analytics category of Meta as Parley counts it.
fn category_key(meta: &str) -> String {
    match meta.trim().to_ascii_lowercase().as_str() {
        "authentication_international" => "authentication-international".to_owned(),
        other => other.to_owned(),
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn meta_failure(e: &parley_meta::GraphError) -> EngineError {
    match e {
        parley_meta::GraphError::Api { error, .. } if error.code == 190 || error.code == 104 => {
            EngineError::new(
                ErrorKind::Conflict,
                "meta_token_invalid",
                format!(
                    "Meta refused the platform's access token ({}): connect the platform again with Log in with Facebook",
                    error.description()
                ),
            )
        }
        parley_meta::GraphError::Api { error, .. } => EngineError::new(
            ErrorKind::Upstream,
            "meta_refused",
            format!(
                "Meta refused to give its analytics: {} (code {})",
                error.description(),
                error.code
            ),
        ),
        _ => EngineError::new(
            ErrorKind::Upstream,
            "meta_unavailable",
            format!("Meta did not answer when Parley asked for its analytics ({e}); try again"),
        ),
    }
}

/// Whether `a` and `b` differ by more than the tolerance.
fn differs(a: i64, b: i64, pct: f64, floor: i64) -> bool {
    let diff = (a - b).abs();
    if diff <= floor {
        return false;
    }
    let larger = a.abs().max(b.abs()) as f64;
    diff as f64 > larger * pct / 100.0
}

/// The zone whose days a comparison covers, and the period moved onto its midnights: the
/// compared WABAs' zone when they share one Parley knows whose midnights fall on UTC hours;
/// else UTC days, with a note saying why.
fn compared_days(
    platforms: &[parley_store::PlatformRecord],
    from: i64,
    to: i64,
) -> (WabaZone, i64, i64) {
    let zones: Vec<WabaZone> = platforms
        .iter()
        .map(|p| WabaZone::from_details(&p.details))
        .collect();
    let Some(first) = zones.first() else {
        return (
            WabaZone::utc("no connected WhatsApp Business Account: compared on UTC days"),
            from,
            to,
        );
    };
    if zones.iter().any(|z| z.name != first.name) {
        return (
            WabaZone::utc(
                "the compared WABAs are in different time zones: compared on UTC days (choose one platform to compare its own days)",
            ),
            from,
            to,
        );
    }
    if !first.known {
        let mut z = first.clone();
        z.note = Some(format!(
            "{}; compared on UTC days, so Meta's daily buckets may not match them",
            z.note.unwrap_or_default()
        ));
        return (z, from, to);
    }
    let tz = first.tz();
    let (f, t) = (same_date_in(from, &tz), same_date_in(to, &tz));
    if f.rem_euclid(HOUR) != 0 || t.rem_euclid(HOUR) != 0 {
        return (
            WabaZone {
                note: Some(format!(
                    "midnight in {} is not on a UTC hour, which Parley's hourly counters cannot split: compared on UTC days, so Meta's daily buckets may not match them",
                    first.name
                )),
                ..WabaZone::utc("")
            },
            from,
            to,
        );
    }
    (first.clone(), f, t)
}

/// `[from, to)` (on UTC hours) as the statistics can read it: whole UTC days, and the hours
/// before the first and after the last.
fn pieces(from: i64, to: i64) -> Vec<(i64, i64, Interval)> {
    let first_day = from.div_euclid(DAY) * DAY;
    let first_day = if first_day < from {
        first_day + DAY
    } else {
        first_day
    };
    let last_day = to.div_euclid(DAY) * DAY;
    if first_day >= last_day {
        return vec![(from, to, Interval::Hour)];
    }
    let mut out = Vec::new();
    if from < first_day {
        out.push((from, first_day, Interval::Hour));
    }
    out.push((first_day, last_day, Interval::Day));
    if last_day < to {
        out.push((last_day, to, Interval::Hour));
    }
    out
}

impl Engine {
    /// Meta's numbers beside Parley's for a period (see the module).
    pub async fn compare_with_meta(
        &self,
        app: &ApplicationId,
        p: &MetaCompareParams,
    ) -> Result<MetaComparison, EngineError> {
        let now = self.now();
        let (from, to, tolerance) = period(p, now)?;
        let wanted = match p.platform.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(PlatformId::parse(raw).map_err(|_| {
                EngineError::new(
                    ErrorKind::NotFound,
                    "platform_not_found",
                    "this application has no such platform; list them with GET /api/v1/platforms",
                )
                .field("platform")
            })?),
        };
        let platforms: Vec<_> = self
            .store
            .platforms(app)
            .await?
            .into_iter()
            .filter(|pl| wanted.as_ref().is_none_or(|w| *w == pl.id))
            .filter(|pl| pl.status != status::DISCONNECTED)
            .collect();
        if let Some(w) = &wanted
            && platforms.is_empty()
        {
            return Err(EngineError::new(
                ErrorKind::NotFound,
                "platform_not_found",
                format!("this application has no connected platform `{w}`; list them with GET /api/v1/platforms"),
            )
            .field("platform"));
        }
        let (time_zone, from, to) = compared_days(&platforms, from, to);
        let numbers = self.store.phone_numbers(app).await?;
        let mut compared = Vec::new();
        for pl in &platforms {
            let phones: Vec<_> = numbers
                .iter()
                .filter(|n| n.platform_id == pl.id)
                .map(|n| n.phone_number_id.to_string())
                .collect();
            compared.push(ComparedPlatform {
                id: pl.id.to_string(),
                waba_id: pl.waba_id.to_string(),
                phone_numbers: phones,
            });
        }
        let chosen: Vec<&parley_store::PhoneNumberRecord> = numbers
            .iter()
            .filter(|n| platforms.iter().any(|pl| pl.id == n.platform_id))
            .collect();
        if chosen.len() > MAX_NUMBERS {
            return Err(bad(
                "too_many_numbers",
                "platform",
                format!("at most {MAX_NUMBERS} numbers per comparison: choose one platform"),
            ));
        }

        // Meta's side, cached.
        let key: CacheKey = (
            app.to_string(),
            compared
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(","),
            from,
            to,
        );
        let cached = {
            let cache = self.meta_cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .entries
                .get(&key)
                .filter(|m| now - m.fetched_at < CACHE_MS && m.fetched_at <= now)
                .cloned()
        };
        let (meta, was_cached) = match cached {
            Some(m) => (m, true),
            None => {
                let mut m = MetaSide {
                    fetched_at: now,
                    ..Default::default()
                };
                for pl in &platforms {
                    let token = self.store.platform_token(&pl.id).await?;
                    let waba = pl.waba_id.to_string();
                    let pricing = self
                        .graph
                        .pricing_analytics(
                            &token,
                            &waba,
                            &PricingQuery {
                                start: from / 1000,
                                end: to / 1000,
                                granularity: Granularity::Day,
                                dimensions: vec![
                                    PricingDimension::PricingCategory,
                                    PricingDimension::PricingType,
                                    PricingDimension::Country,
                                ],
                                phone_numbers: Vec::new(),
                                country_codes: Vec::new(),
                            },
                        )
                        .await
                        .map_err(|e| meta_failure(&e))?;
                    for point in pricing.points() {
                        let cat = category_key(point.pricing_category.as_deref().unwrap_or(""));
                        let volume = point.volume.unwrap_or(0);
                        if point.pricing_type.as_deref() == Some("REGULAR") {
                            *m.charged_by_category.entry(cat.clone()).or_insert(0) += volume;
                            *m.charged_by_country
                                .entry(point.country.clone().unwrap_or_default())
                                .or_insert(0) += volume;
                        }
                        match point.cost {
                            Some(c) => {
                                let priced = PriceCategory::from_meta(&cat)
                                    .map_or(cat.clone(), |c| c.as_str().to_owned());
                                *m.cost_by_category.entry(priced).or_insert(0) +=
                                    (c * 1_000_000.0).round() as i64;
                            }
                            None => m.cost_missing = true,
                        }
                    }
                    for n in chosen.iter().filter(|n| n.platform_id == pl.id) {
                        let a = self
                            .graph
                            .messaging_analytics(
                                &token,
                                &waba,
                                &MessagingQuery {
                                    start: from / 1000,
                                    end: to / 1000,
                                    granularity: Granularity::Day,
                                    phone_numbers: vec![digits(&n.display_phone_number)],
                                    country_codes: Vec::new(),
                                },
                            )
                            .await
                            .map_err(|e| meta_failure(&e))?;
                        let id = n.phone_number_id.to_string();
                        for point in &a.data_points {
                            *m.sent.entry(id.clone()).or_insert(0) += point.sent;
                            *m.delivered.entry(id.clone()).or_insert(0) += point.delivered;
                        }
                    }
                }
                let mut cache = self.meta_cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.entries.len() >= CACHE_ENTRIES {
                    cache.entries.retain(|_, v| now - v.fetched_at < CACHE_MS);
                    if cache.entries.len() >= CACHE_ENTRIES {
                        cache.entries.clear();
                    }
                }
                cache.entries.insert(key, m.clone());
                (m, false)
            }
        };

        // Parley's side: the counters and the reported spend for the same numbers.
        let all_chosen = chosen.len() == numbers.len();
        let scopes: Vec<Vec<(StatDimension, String)>> = if all_chosen {
            vec![Vec::new()]
        } else {
            chosen
                .iter()
                .map(|n| vec![(StatDimension::PhoneNumber, n.phone_number_id.to_string())])
                .collect()
        };
        let mut sent: BTreeMap<String, i64> = BTreeMap::new();
        let mut delivered: BTreeMap<String, i64> = BTreeMap::new();
        let mut charged_by_category: BTreeMap<String, i64> = BTreeMap::new();
        let mut charged_by_country: BTreeMap<String, i64> = BTreeMap::new();
        let mut cost_by_category: BTreeMap<String, i64> = BTreeMap::new();
        let mut currency = String::new();
        for filters in scopes {
            for (piece_from, piece_to, interval) in pieces(from, to) {
                let grouped = |by| StatsRequest {
                    from: piece_from,
                    to: piece_to,
                    interval,
                    group_by: Some(by),
                    filters: filters.clone(),
                };
                let by_phone = self
                    .stats(app, &grouped(StatDimension::PhoneNumber))
                    .await?;
                for row in &by_phone.data {
                    let phone = row.group.clone().unwrap_or_default();
                    if phone.is_empty() {
                        continue;
                    }
                    *sent.entry(phone.clone()).or_insert(0) += row.counts.metrics["sent"];
                    *delivered.entry(phone).or_insert(0) += row.counts.metrics["delivered"];
                }
                for (cat, n) in &by_phone.totals.breakdown["charged_by_category"] {
                    *charged_by_category.entry(category_key(cat)).or_insert(0) += n;
                }
                let by_country = self.stats(app, &grouped(StatDimension::Country)).await?;
                for row in &by_country.data {
                    let n = row.counts.metrics["charged"];
                    if n != 0 {
                        *charged_by_country
                            .entry(row.group.clone().unwrap_or_default())
                            .or_insert(0) += n;
                    }
                }
            }
            let spend = self.spend(app, from, to, &filters).await?;
            currency = spend.currency.clone();
            for (cat, s) in &spend.by_category {
                *cost_by_category.entry(cat.clone()).or_insert(0) += s.reported.0;
            }
        }

        // The rows.
        let mut rows = Vec::new();
        let mut count_rows = |metric: &'static str,
                              dimension: &'static str,
                              m: &BTreeMap<String, i64>,
                              p: &BTreeMap<String, i64>,
                              keys: Vec<String>| {
            for key in keys {
                let a = m.get(&key).copied().unwrap_or(0);
                let b = p.get(&key).copied().unwrap_or(0);
                rows.push(ComparisonRow {
                    metric,
                    dimension,
                    key,
                    meta: a.to_string(),
                    parley: b.to_string(),
                    difference: (a - b).to_string(),
                    flagged: differs(a, b, tolerance, 0),
                });
            }
        };
        let phones: Vec<String> = chosen
            .iter()
            .map(|n| n.phone_number_id.to_string())
            .collect();
        let total = |m: &BTreeMap<String, i64>| -> BTreeMap<String, i64> {
            BTreeMap::from([(String::new(), m.values().sum())])
        };
        let union = |a: &BTreeMap<String, i64>, b: &BTreeMap<String, i64>| -> Vec<String> {
            let mut k: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
            k.sort();
            k.dedup();
            k
        };
        let (ms, ps) = (
            meta.sent
                .iter()
                .filter(|(k, _)| phones.contains(k))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            sent.iter()
                .filter(|(k, _)| phones.contains(k))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        );
        let (md, pd) = (
            meta.delivered
                .iter()
                .filter(|(k, _)| phones.contains(k))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            delivered
                .iter()
                .filter(|(k, _)| phones.contains(k))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        );
        count_rows(
            "sent",
            "total",
            &total(&ms),
            &total(&ps),
            vec![String::new()],
        );
        count_rows(
            "delivered",
            "total",
            &total(&md),
            &total(&pd),
            vec![String::new()],
        );
        count_rows("sent", "phone_number", &ms, &ps, phones.clone());
        count_rows("delivered", "phone_number", &md, &pd, phones.clone());
        count_rows(
            "charged",
            "total",
            &total(&meta.charged_by_category),
            &total(&charged_by_category),
            vec![String::new()],
        );
        count_rows(
            "charged",
            "category",
            &meta.charged_by_category,
            &charged_by_category,
            union(&meta.charged_by_category, &charged_by_category),
        );
        count_rows(
            "charged",
            "country",
            &meta.charged_by_country,
            &charged_by_country,
            union(&meta.charged_by_country, &charged_by_country),
        );
        if !meta.cost_missing {
            let mut cost_row = |dimension: &'static str, key: String, a: i64, b: i64| {
                rows.push(ComparisonRow {
                    metric: "cost",
                    dimension,
                    key,
                    meta: Micros(a).to_string(),
                    parley: Micros(b).to_string(),
                    difference: Micros(a - b).to_string(),
                    flagged: differs(a, b, tolerance, COST_TOLERANCE.0),
                });
            };
            cost_row(
                "total",
                String::new(),
                meta.cost_by_category.values().sum(),
                cost_by_category.values().sum(),
            );
            for key in union(&meta.cost_by_category, &cost_by_category) {
                let a = meta.cost_by_category.get(&key).copied().unwrap_or(0);
                let b = cost_by_category.get(&key).copied().unwrap_or(0);
                if a == 0 && b == 0 {
                    continue;
                }
                cost_row("category", key, a, b);
            }
        }
        let flagged = rows.iter().filter(|r| r.flagged).count();
        Ok(MetaComparison {
            from,
            to,
            time_zone,
            currency,
            tolerance_pct: tolerance,
            cost_tolerance: COST_TOLERANCE,
            fetched_at: meta.fetched_at,
            cached: was_cached,
            platforms: compared,
            rows,
            flagged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_is_relative_to_the_larger_value() {
        assert!(!differs(100, 99, 2.0, 0));
        assert!(differs(5, 4, 2.0, 0));
        assert!(!differs(0, 0, 0.0, 0));
        assert!(differs(1, 0, 50.0, 0));
        assert!(!differs(10_000, 5_000, 2.0, 10_000));
        assert!(differs(30_000, 5_000, 2.0, 10_000));
    }

    #[test]
    fn a_period_on_a_zones_midnights_reads_whole_utc_days_and_hours_at_both_ends() {
        let d = 1_796_515_200_000; // 2026-12-06T00:00Z
        // Los Angeles, PST: 08:00Z to 08:00Z two days later.
        assert_eq!(
            pieces(d + 8 * HOUR, d + 2 * DAY + 8 * HOUR),
            vec![
                (d + 8 * HOUR, d + DAY, Interval::Hour),
                (d + DAY, d + 2 * DAY, Interval::Day),
                (d + 2 * DAY, d + 2 * DAY + 8 * HOUR, Interval::Hour),
            ]
        );
        // UTC days stay one piece; one day east of UTC holds no whole UTC day: its hours.
        assert_eq!(
            pieces(d, d + 7 * DAY),
            vec![(d, d + 7 * DAY, Interval::Day)]
        );
        assert_eq!(
            pieces(d - HOUR, d + DAY - HOUR),
            vec![(d - HOUR, d + DAY - HOUR, Interval::Hour)]
        );
    }

    #[test]
    fn periods_are_bounded() {
        let now = 1_796_558_400_000; // 2026-12-06T12:00Z
        let p = |from: &str, to: &str| MetaCompareParams {
            from: Some(from.into()),
            to: Some(to.into()),
            ..Default::default()
        };
        let code = |r: Result<(i64, i64, f64), EngineError>| r.expect_err("refused").code;
        assert_eq!(
            code(period(&p("2026-01-01", "2026-12-01"), now)),
            "range_too_large"
        );
        assert_eq!(
            code(period(&p("2025-10-01", "2025-11-01"), now)),
            "range_too_old"
        );
        assert_eq!(
            code(period(&p("2026-12-20", "2026-12-30"), now)),
            "range_in_future"
        );
        assert_eq!(
            code(period(&p("2026-12-05", "2026-12-01"), now)),
            "invalid_range"
        );
        assert_eq!(code(period(&p("soon", "2026-12-01"), now)), "invalid_time");
        let (from, to, t) = period(&p("2026-12-01", "2026-12-06T10:00:00Z"), now).expect("ok");
        assert_eq!((to - from) / DAY, 6);
        assert_eq!(t, DEFAULT_TOLERANCE_PCT);
        let bad_tolerance = MetaCompareParams {
            tolerance_pct: Some("-1".into()),
            ..Default::default()
        };
        assert_eq!(code(period(&bad_tolerance, now)), "invalid_tolerance");
        let (from, to, _) = period(&MetaCompareParams::default(), now).expect("default");
        assert_eq!(to - from, 7 * DAY);
    }
}
