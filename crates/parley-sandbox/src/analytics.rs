//! Meta's WABA analytics (Meta docs "Analytics", META_API.md §2.7, META_2026.md §5.4), served
//! from what the sandbox actually sent and billed:
//!
//! - `GET /{waba}?fields=analytics.start(<unix>).end(<unix>).granularity(HALF_HOUR|DAY|MONTH)
//!   [.phone_numbers([…])][.country_codes([…])][.product_types([0,2,100])]` →
//!   `{"analytics": {"phone_numbers": […], "country_codes"?: […], "granularity": "DAY",
//!   "data_points": [{"start", "end", "sent", "delivered"}]}, "id"}`: messages whose `sent`
//!   (and `delivered`, or `read` when that came first) status was dispatched in each bucket,
//!   counted once each.
//! - `GET /{waba}?fields=pricing_analytics.start().end().granularity(DAILY|HALF_HOUR|MONTHLY)
//!   [.phone_numbers()][.country_codes()][.metric_types([COST,VOLUME])][.pricing_types()]
//!   [.pricing_categories()][.dimensions([COUNTRY,PHONE,PRICING_CATEGORY,PRICING_TYPE,TIER])]`
//!   → `{"pricing_analytics": {"data": [{"data_points": [{"start", "end", "country"?,
//!   "phone_number"?, "pricing_category"?, "pricing_type"?, "tier"?, "volume", "cost"}]}]}, "id"}`
//!   from the bills (`billing.rs`): one point per bucket and combination of the dimensions asked
//!   for; `tier` only on tiered (utility, authentication) regular points; `cost` a number in
//!   the WABA's currency.
//! - `conversation_analytics` (the legacy, conversation-based analytics): the same parameters
//!   are checked, and the answer has no data points, as no conversation is billed since
//!   per-message pricing (2025-07-01).
//!
//! Day and month buckets are the WABA's calendar days and months in its time zone (its
//! `timezone_id`, `zones.rs`; UTC for an id outside Meta's table), as Meta aligns them;
//! half-hour buckets are aligned on UTC (the same in every zone a whole or half number of
//! hours off UTC). Only buckets with something in them are listed. `phone_numbers` takes display numbers (digits, as Meta's
//! examples) or phone number ids; `phone_number` in a point is the display number's digits.
//! Errors are Meta's 100 with a message naming the parameter: a missing or non-numeric
//! `start`/`end`, `end` not after `start`, `start` older than the one-year lookback (since
//! 2025-12-01), an unknown `granularity` or list value.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::errors::GraphError;
use crate::fields::FieldSpec;
use crate::state::State as World;

/// The analytics fields of a WABA.
pub(crate) const FIELDS: &[&str] = &["analytics", "pricing_analytics", "conversation_analytics"];

/// Every parameter an analytics field takes (field-expansion modifiers).
pub(crate) const PARAMS: &[&str] = &[
    "start",
    "end",
    "granularity",
    "phone_numbers",
    "country_codes",
    "product_types",
    "metric_types",
    "pricing_types",
    "pricing_categories",
    "dimensions",
    "conversation_categories",
    "conversation_types",
    "conversation_directions",
];

/// The lookback of every analytics field since 2025-12-01 (META_2026 §0).
const LOOKBACK_S: i64 = 366 * 86_400;

const PRICING_DIMENSIONS: &[&str] = &[
    "COUNTRY",
    "PHONE",
    "PRICING_CATEGORY",
    "PRICING_TYPE",
    "TIER",
];
const PRICING_TYPES: &[&str] = &["REGULAR", "FREE_CUSTOMER_SERVICE", "FREE_ENTRY_POINT"];
const PRICING_CATEGORIES: &[&str] = &[
    "AUTHENTICATION",
    "AUTHENTICATION_INTERNATIONAL",
    "MARKETING",
    "MARKETING_LITE",
    "SERVICE",
    "UTILITY",
    "REFERRAL_CONVERSION",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Granularity {
    HalfHour,
    Day,
    Month,
}

impl Granularity {
    /// The bucket `t` (Unix seconds) falls in, in the WABA's zone: `(start, end)`.
    fn bucket(self, t: i64, tz: &jiff::tz::TimeZone) -> (i64, i64) {
        match self {
            Granularity::HalfHour => {
                let s = t.div_euclid(1800) * 1800;
                (s, s + 1800)
            }
            Granularity::Day => crate::zones::bucket(t, tz, false),
            Granularity::Month => crate::zones::bucket(t, tz, true),
        }
    }
}

/// The parameters of one analytics field, checked.
struct Params<'a> {
    spec: &'a FieldSpec,
}

impl<'a> Params<'a> {
    fn raw(&self, name: &str) -> Option<&'a str> {
        self.spec
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn time(&self, name: &str) -> Result<i64, GraphError> {
        let raw = self.raw(name).map(str::trim).unwrap_or_default();
        if raw.is_empty() {
            return Err(GraphError::invalid_param(format!(
                "The parameter {name} is required for the field {}.",
                self.spec.name
            )));
        }
        raw.parse::<i64>()
            .ok()
            .filter(|t| *t >= 0 && *t < 253_402_300_800)
            .ok_or_else(|| {
                GraphError::invalid_param(format!(
                    "Param {name} must be a UNIX timestamp in seconds - got {}.",
                    excerpt(raw)
                ))
            })
    }

    fn granularity(&self, allowed: &[(&str, Granularity)]) -> Result<Granularity, GraphError> {
        let raw = self.raw("granularity").map(str::trim).unwrap_or_default();
        let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
        if raw.is_empty() {
            return Err(GraphError::invalid_param(format!(
                "The parameter granularity is required for the field {}: one of {{{}}}.",
                self.spec.name,
                names.join(", ")
            )));
        }
        allowed
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(raw.trim_matches('"')))
            .map(|(_, g)| *g)
            .ok_or_else(|| {
                GraphError::invalid_param(format!(
                    "Param granularity must be one of {{{}}} - got \"{}\".",
                    names.join(", "),
                    excerpt(raw)
                ))
            })
    }

    /// A list parameter (`[A,B]`, `["A","B"]` or `A,B`), checked against `allowed` (upper
    /// case) when given. Absent or empty: `None` (no filter).
    fn list(
        &self,
        name: &str,
        allowed: Option<&[&str]>,
    ) -> Result<Option<Vec<String>>, GraphError> {
        let Some(raw) = self.raw(name) else {
            return Ok(None);
        };
        let inner = raw.trim();
        let inner = inner
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(inner);
        let mut out = Vec::new();
        for (i, item) in inner.split(',').enumerate() {
            let item = item.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            if item.is_empty() {
                continue;
            }
            let item = match allowed {
                Some(allowed) => {
                    let upper = item.to_ascii_uppercase();
                    if !allowed.contains(&upper.as_str()) {
                        return Err(GraphError::invalid_param(format!(
                            "Param {name}[{i}] must be one of {{{}}} - got \"{}\".",
                            allowed.join(", "),
                            excerpt(item)
                        )));
                    }
                    upper
                }
                None => item.to_owned(),
            };
            if !out.contains(&item) {
                out.push(item);
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// `start` and `end`, checked: `end` after `start`, `start` within the lookback.
    fn range(&self, now_s: i64) -> Result<(i64, i64), GraphError> {
        let (start, end) = (self.time("start")?, self.time("end")?);
        if end <= start {
            return Err(GraphError::invalid_param(format!(
                "Param end ({end}) must be after start ({start})."
            )));
        }
        if start < now_s - LOOKBACK_S {
            return Err(GraphError::invalid_param(format!(
                "Param start ({start}) is beyond the lookback of analytics: data is kept for one year."
            )));
        }
        Ok((start, end))
    }

    /// Parameters this field does not take are error 100.
    fn only(&self, allowed: &[&str]) -> Result<(), GraphError> {
        match self
            .spec
            .params
            .iter()
            .find(|(n, _)| !allowed.contains(&n.as_str()))
        {
            None => Ok(()),
            Some((n, _)) => Err(GraphError::invalid_param(format!(
                "Unsupported field modifier ({n}) on field ({}).",
                self.spec.name
            ))),
        }
    }
}

fn excerpt(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The WABA's numbers: (id, display digits).
/// The WABA's time zone (UTC for an id outside Meta's table).
fn waba_zone(state: &World, waba_id: &str) -> jiff::tz::TimeZone {
    state.waba(waba_id).map_or(jiff::tz::TimeZone::UTC, |w| {
        crate::zones::zone(&w.timezone_id)
    })
}

fn numbers(state: &World, waba_id: &str) -> Vec<(String, String)> {
    state
        .waba(waba_id)
        .map(|w| {
            w.phone_numbers
                .iter()
                .map(|p| {
                    let digits: String = p
                        .display_phone_number
                        .chars()
                        .filter(char::is_ascii_digit)
                        .collect();
                    (p.id.clone(), digits)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The numbers a `phone_numbers` filter keeps (ids or display digits), as (id, digits).
fn chosen_numbers(
    all: Vec<(String, String)>,
    filter: Option<&Vec<String>>,
) -> Vec<(String, String)> {
    match filter {
        None => all,
        Some(wanted) => all
            .into_iter()
            .filter(|(id, digits)| {
                wanted.iter().any(|w| {
                    let w: String = w.chars().filter(char::is_ascii_digit).collect();
                    w == *id || w == *digits
                })
            })
            .collect(),
    }
}

/// One analytics field of the WABA `waba_id`.
pub(crate) fn field(
    state: &World,
    waba_id: &str,
    spec: &FieldSpec,
    now_ms: i64,
) -> Result<Value, GraphError> {
    if spec.sub.is_some() || spec.limit.is_some() || spec.summary.is_some() {
        return Err(GraphError::invalid_param(format!(
            "The field {} takes parameters, not a field expansion, limit or summary.",
            spec.name
        )));
    }
    let p = Params { spec };
    match spec.name.as_str() {
        "analytics" => messaging(state, waba_id, &p, now_ms),
        "pricing_analytics" => pricing(state, waba_id, &p, now_ms),
        _ => conversations(&p, now_ms),
    }
}

fn messaging(
    state: &World,
    waba_id: &str,
    p: &Params<'_>,
    now_ms: i64,
) -> Result<Value, GraphError> {
    p.only(&[
        "start",
        "end",
        "granularity",
        "phone_numbers",
        "country_codes",
        "product_types",
    ])?;
    let (start, end) = p.range(now_ms.div_euclid(1000))?;
    let tz = waba_zone(state, waba_id);
    let granularity = p.granularity(&[
        ("HALF_HOUR", Granularity::HalfHour),
        ("DAY", Granularity::Day),
        ("MONTH", Granularity::Month),
    ])?;
    let phones = p.list("phone_numbers", None)?;
    let countries = p.list("country_codes", None)?;
    let products = p.list("product_types", Some(&["0", "2", "100"]))?;
    let chosen = chosen_numbers(numbers(state, waba_id), phones.as_ref());
    let ids: BTreeMap<&str, &str> = chosen
        .iter()
        .map(|(i, d)| (i.as_str(), d.as_str()))
        .collect();
    let lite: BTreeSet<&str> = state
        .billing
        .bills
        .iter()
        .filter(|b| b.category == "marketing_lite")
        .map(|b| b.wamid.as_str())
        .collect();
    let now_s = now_ms.div_euclid(1000);
    // bucket start → (end, sent, delivered)
    let mut buckets: BTreeMap<i64, (i64, u64, u64)> = BTreeMap::new();
    for m in state.messages.iter() {
        if !ids.contains_key(m.phone_number_id.as_str()) {
            continue;
        }
        if let Some(cs) = &countries {
            let c = crate::billing::country(&m.to);
            if !cs.iter().any(|w| w.eq_ignore_ascii_case(&c)) {
                continue;
            }
        }
        if let Some(products) = &products {
            let product = if lite.contains(m.wamid.as_str()) {
                "100"
            } else if m.kind == "template" {
                "0"
            } else {
                "2"
            };
            if !products.iter().any(|x| x == product) {
                continue;
            }
        }
        // A later status implies the earlier ones (`delivered` is skipped when `read` comes
        // first, as on Meta, and the message was delivered all the same).
        for (reached, slot) in [
            (&["sent", "delivered", "read"][..], 0usize),
            (&["delivered", "read"][..], 1),
        ] {
            let Some(t) = m
                .statuses
                .iter()
                .filter(|s| reached.contains(&s.status.as_str()))
                .map(|s| s.timestamp)
                .min()
            else {
                continue;
            };
            if t < start || t >= end || t > now_s {
                continue;
            }
            let (b, e) = granularity.bucket(t, &tz);
            let entry = buckets.entry(b).or_insert((e, 0, 0));
            if slot == 0 {
                entry.1 += 1;
            } else {
                entry.2 += 1;
            }
        }
    }
    let mut out = Map::new();
    out.insert(
        "phone_numbers".into(),
        json!(chosen.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>()),
    );
    if let Some(cs) = countries {
        out.insert("country_codes".into(), json!(cs));
    }
    out.insert(
        "granularity".into(),
        json!(match granularity {
            Granularity::HalfHour => "HALF_HOUR",
            Granularity::Day => "DAY",
            Granularity::Month => "MONTH",
        }),
    );
    out.insert(
        "data_points".into(),
        json!(
            buckets
                .into_iter()
                .map(|(s, (e, sent, delivered))| json!({
                    "start": s, "end": e, "sent": sent, "delivered": delivered
                }))
                .collect::<Vec<_>>()
        ),
    );
    Ok(Value::Object(out))
}

/// The analytics spelling of a webhook `pricing.category` / `pricing.type`.
fn upper(s: &str) -> String {
    s.replace('-', "_").to_ascii_uppercase()
}

fn pricing(state: &World, waba_id: &str, p: &Params<'_>, now_ms: i64) -> Result<Value, GraphError> {
    p.only(&[
        "start",
        "end",
        "granularity",
        "phone_numbers",
        "country_codes",
        "metric_types",
        "pricing_types",
        "pricing_categories",
        "dimensions",
    ])?;
    let (start, end) = p.range(now_ms.div_euclid(1000))?;
    let tz = waba_zone(state, waba_id);
    let granularity = p.granularity(&[
        ("HALF_HOUR", Granularity::HalfHour),
        ("DAILY", Granularity::Day),
        ("MONTHLY", Granularity::Month),
    ])?;
    let phones = p.list("phone_numbers", None)?;
    let countries = p.list("country_codes", None)?;
    let metrics = p
        .list("metric_types", Some(&["COST", "VOLUME"]))?
        .unwrap_or_else(|| vec!["COST".into(), "VOLUME".into()]);
    let types = p.list("pricing_types", Some(PRICING_TYPES))?;
    let categories = p.list("pricing_categories", Some(PRICING_CATEGORIES))?;
    let dims = p
        .list("dimensions", Some(PRICING_DIMENSIONS))?
        .unwrap_or_default();
    let has = |d: &str| dims.iter().any(|x| x == d);
    let chosen = chosen_numbers(numbers(state, waba_id), phones.as_ref());
    let digits: BTreeMap<&str, &str> = chosen
        .iter()
        .map(|(i, d)| (i.as_str(), d.as_str()))
        .collect();
    // (bucket start, country, phone, category, type, tier) → (end, volume, cost micros)
    type Key = (i64, String, String, String, String, String);
    let mut points: BTreeMap<Key, (i64, u64, i64)> = BTreeMap::new();
    for b in &state.billing.bills {
        let Some(phone) = digits.get(b.phone_number_id.as_str()) else {
            continue;
        };
        let t = b.at.div_euclid(1000);
        if b.at > now_ms || t < start || t >= end {
            continue;
        }
        let category = upper(&b.category);
        let kind = upper(&b.pricing_type);
        if countries
            .as_ref()
            .is_some_and(|cs| !cs.iter().any(|c| c.eq_ignore_ascii_case(&b.country)))
            || types.as_ref().is_some_and(|ts| !ts.contains(&kind))
            || categories
                .as_ref()
                .is_some_and(|cs| !cs.contains(&category))
        {
            continue;
        }
        let (bs, be) = granularity.bucket(t, &tz);
        let key = (
            bs,
            if has("COUNTRY") {
                b.country.clone()
            } else {
                String::new()
            },
            if has("PHONE") {
                (*phone).to_owned()
            } else {
                String::new()
            },
            if has("PRICING_CATEGORY") {
                category
            } else {
                String::new()
            },
            if has("PRICING_TYPE") {
                kind
            } else {
                String::new()
            },
            if !has("TIER") {
                String::new()
            } else if let Some(tier) = &b.tier {
                tier.clone()
            } else if b.pricing_type == "regular" {
                // Untiered (marketing, service): "marketing is always 0:MAX" (§5.4).
                "0:MAX".to_owned()
            } else {
                String::new()
            },
        );
        let e = points.entry(key).or_insert((be, 0, 0));
        e.1 += 1;
        e.2 += b.price;
    }
    let data_points: Vec<Value> = points
        .into_iter()
        .map(
            |((s, country, phone, category, kind, tier), (e, volume, cost))| {
                let mut point = Map::new();
                point.insert("start".into(), json!(s));
                point.insert("end".into(), json!(e));
                if has("COUNTRY") {
                    point.insert("country".into(), json!(country));
                }
                if has("PHONE") {
                    point.insert("phone_number".into(), json!(phone));
                }
                if has("TIER") && !tier.is_empty() {
                    point.insert("tier".into(), json!(tier));
                }
                if has("PRICING_TYPE") {
                    point.insert("pricing_type".into(), json!(kind));
                }
                if has("PRICING_CATEGORY") {
                    point.insert("pricing_category".into(), json!(category));
                }
                if metrics.iter().any(|m| m == "VOLUME") {
                    point.insert("volume".into(), json!(volume));
                }
                if metrics.iter().any(|m| m == "COST") {
                    point.insert("cost".into(), json!(cost_number(cost)));
                }
                Value::Object(point)
            },
        )
        .collect();
    Ok(json!({ "data": [{ "data_points": data_points }] }))
}

/// Millionths as Meta's JSON number (`4.6`, `0.0034`).
fn cost_number(micros: i64) -> Value {
    let text = crate::billing::money(micros);
    text.parse::<serde_json::Number>()
        .map(Value::Number)
        .unwrap_or(json!(0))
}

fn conversations(p: &Params<'_>, now_ms: i64) -> Result<Value, GraphError> {
    p.only(&[
        "start",
        "end",
        "granularity",
        "phone_numbers",
        "country_codes",
        "metric_types",
        "conversation_categories",
        "conversation_types",
        "conversation_directions",
        "dimensions",
    ])?;
    p.range(now_ms.div_euclid(1000))?;
    p.granularity(&[
        ("HALF_HOUR", Granularity::HalfHour),
        ("DAILY", Granularity::Day),
        ("MONTHLY", Granularity::Month),
    ])?;
    p.list("metric_types", Some(&["COST", "CONVERSATION"]))?;
    p.list(
        "dimensions",
        Some(&[
            "CONVERSATION_CATEGORY",
            "CONVERSATION_TYPE",
            "CONVERSATION_DIRECTION",
            "COUNTRY",
            "PHONE",
        ]),
    )?;
    Ok(json!({ "data": [{ "data_points": [] }] }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_calendar_months() {
        // 2026-12-06T12:00:00Z
        let utc = jiff::tz::TimeZone::UTC;
        let (s, e) = Granularity::Month.bucket(1_796_558_400, &utc);
        assert_eq!((s, e), (1_796_083_200, 1_798_761_600));
        let (s, e) = Granularity::Day.bucket(1_796_558_400, &utc);
        assert_eq!(e - s, 86_400);
        // In Los Angeles (PST) the day starts at 08:00Z.
        let (s, _) = Granularity::Day.bucket(1_796_558_400, &crate::zones::zone("1"));
        assert_eq!(s, 1_796_544_000);
    }
}
