//! Meta's prices (META_2026.md §5): a price table per category and recipient market, the
//! rules as of 2026-10-01 (what is charged inside and outside the customer-service window, the
//! 72 h free entry point), and volume tiers for utility and authentication counted per
//! portfolio, market, category and calendar month. Amounts are integer millionths of the
//! table's currency, so sums are exact.
//!
//! The table's JSON shape is the API's (`GET/PUT /api/v1/pricing/rates`); the default is
//! `data/rates-2026-10-01.json` (see docs/COST.md for its source).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::excerpt;

/// 2026-10-01T00:00:00Z: service messages and utility templates inside the window are charged
/// from then (§5.3).
pub const SERVICE_CHARGED_FROM_MS: i64 = 1_790_812_800_000;
/// A free entry point lasts 72 h (§5.1).
pub const FREE_ENTRY_POINT_MS: i64 = 72 * 3_600_000;
/// The most markets and tiers a table may have.
pub const MAX_MARKETS: usize = 300;
pub const MAX_TIERS: usize = 20;

/// The default table shipped with Parley.
pub const DEFAULT_TABLE_JSON: &str = include_str!("../data/rates-2026-10-01.json");

/// An amount in millionths of the table's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub i64);

impl Micros {
    /// A decimal like `0.0034` (at most 6 decimals, not negative, at most 1,000,000).
    pub fn parse(s: &str) -> Option<Micros> {
        let s = s.trim();
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty()
            || int.len() > 7
            || frac.len() > 6
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let i: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut f: i64 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        for _ in frac.len()..6 {
            f *= 10;
        }
        (i <= 1_000_000).then_some(Micros(i * 1_000_000 + f))
    }
}

impl std::fmt::Display for Micros {
    /// `12.3456` (at least two decimals, trailing zeros beyond them dropped).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        let mut frac = format!("{:06}", a % 1_000_000);
        while frac.len() > 2 && frac.ends_with('0') {
            frac.pop();
        }
        write!(f, "{sign}{}.{frac}", a / 1_000_000)
    }
}

impl std::ops::Add for Micros {
    type Output = Micros;
    fn add(self, o: Micros) -> Micros {
        Micros(self.0.saturating_add(o.0))
    }
}

impl std::ops::AddAssign for Micros {
    fn add_assign(&mut self, o: Micros) {
        *self = *self + o;
    }
}

impl Serialize for Micros {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// What Meta charges a message as (§5.1: the webhook's `pricing.category`, with `marketing_lite`
/// priced as marketing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PriceCategory {
    #[serde(rename = "marketing")]
    Marketing,
    #[serde(rename = "utility")]
    Utility,
    #[serde(rename = "authentication")]
    Authentication,
    #[serde(rename = "authentication-international")]
    AuthenticationInternational,
    #[serde(rename = "service")]
    Service,
}

impl PriceCategory {
    pub const ALL: [PriceCategory; 5] = [
        PriceCategory::Marketing,
        PriceCategory::Utility,
        PriceCategory::Authentication,
        PriceCategory::AuthenticationInternational,
        PriceCategory::Service,
    ];

    /// Meta's webhook spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PriceCategory::Marketing => "marketing",
            PriceCategory::Utility => "utility",
            PriceCategory::Authentication => "authentication",
            PriceCategory::AuthenticationInternational => "authentication-international",
            PriceCategory::Service => "service",
        }
    }

    /// A webhook or analytics category: `marketing_lite` is marketing,
    /// `AUTHENTICATION_INTERNATIONAL` is `authentication-international`; `referral_conversion`
    /// and unknown values have no price.
    pub fn from_meta(s: &str) -> Option<PriceCategory> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "marketing" | "marketing_lite" => PriceCategory::Marketing,
            "utility" => PriceCategory::Utility,
            "authentication" => PriceCategory::Authentication,
            "authentication-international" | "authentication_international" => {
                PriceCategory::AuthenticationInternational
            }
            "service" => PriceCategory::Service,
            _ => return None,
        })
    }

    /// Volume tiers apply to utility and authentication only (§5.2; service has none, §5.3).
    pub fn tiered(self) -> bool {
        matches!(
            self,
            PriceCategory::Utility
                | PriceCategory::Authentication
                | PriceCategory::AuthenticationInternational
        )
    }
}

/// A volume tier: from the `from`-th charged message of the month (1-based) on, `rate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tier {
    pub from: u64,
    pub rate: Micros,
}

/// One market of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Market {
    pub id: String,
    pub name: String,
    /// ISO 3166 alpha-2 codes priced in this market.
    pub countries: Vec<String>,
    pub marketing: Micros,
    pub utility: Micros,
    pub authentication: Micros,
    /// Absent: the market has no authentication-international rate (authentication applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_international: Option<Micros>,
    pub service: Micros,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub utility_tiers: Vec<Tier>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authentication_tiers: Vec<Tier>,
}

impl Market {
    /// The list rate of a category (before tiers).
    pub fn rate(&self, c: PriceCategory) -> Micros {
        match c {
            PriceCategory::Marketing => self.marketing,
            PriceCategory::Utility => self.utility,
            PriceCategory::Authentication => self.authentication,
            PriceCategory::AuthenticationInternational => self
                .authentication_international
                .unwrap_or(self.authentication),
            PriceCategory::Service => self.service,
        }
    }

    /// The tiers of a category (empty without).
    pub fn tiers(&self, c: PriceCategory) -> &[Tier] {
        match c {
            PriceCategory::Utility => &self.utility_tiers,
            PriceCategory::Authentication | PriceCategory::AuthenticationInternational => {
                &self.authentication_tiers
            }
            _ => &[],
        }
    }

    /// The rate of the `n`-th charged message of the month (1-based) in a category, and the
    /// tier it falls in (`from`, 1 for the list rate).
    pub fn rate_at(&self, c: PriceCategory, n: u64) -> (Micros, u64) {
        let tiers = match c {
            PriceCategory::Utility => &self.utility_tiers,
            PriceCategory::Authentication | PriceCategory::AuthenticationInternational => {
                &self.authentication_tiers
            }
            _ => return (self.rate(c), 1),
        };
        // Authentication-international has its own list rate; its tiers scale it as the
        // authentication tiers scale authentication.
        match tiers.iter().rev().find(|t| t.from <= n) {
            None => (self.rate(c), 1),
            Some(t) if c == PriceCategory::AuthenticationInternational => {
                let base = self.authentication.0.max(1);
                let scaled = i128::from(self.rate(c).0) * i128::from(t.rate.0) / i128::from(base);
                (Micros(i64::try_from(scaled).unwrap_or(i64::MAX)), t.from)
            }
            Some(t) => (t.rate, t.from),
        }
    }
}

/// Whether the business pays authentication-international rates (Meta decides eligibility;
/// the business enters it): only to recipients outside `business_country`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthInternational {
    #[serde(default)]
    pub eligible: bool,
    #[serde(default)]
    pub business_country: Option<String>,
}

/// A parsed, valid price table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PriceTable {
    /// ISO 4217, e.g. `USD` (the WABA's billing currency).
    pub currency: String,
    /// The date the rates apply from (`YYYY-MM-DD`).
    pub effective_date: String,
    /// Where the figures come from.
    pub source: String,
    /// The market of countries no market lists.
    pub default_market: String,
    pub authentication_international: AuthInternational,
    pub markets: Vec<Market>,
}

/// Why a table was refused: a stable code, the field, a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTableError {
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

fn err(
    code: &'static str,
    field: impl Into<String>,
    message: impl Into<String>,
) -> PriceTableError {
    PriceTableError {
        code,
        field: field.into(),
        message: message.into(),
    }
}

/// The input shape (rates as strings or numbers).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    currency: String,
    effective_date: String,
    #[serde(default)]
    source: String,
    default_market: String,
    #[serde(default)]
    authentication_international: AuthInternational,
    markets: Vec<RawMarket>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMarket {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    countries: Vec<String>,
    marketing: serde_json::Value,
    utility: serde_json::Value,
    authentication: serde_json::Value,
    #[serde(default)]
    authentication_international: Option<serde_json::Value>,
    service: serde_json::Value,
    #[serde(default)]
    utility_tiers: Vec<RawTier>,
    #[serde(default)]
    authentication_tiers: Vec<RawTier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    from: u64,
    rate: serde_json::Value,
}

fn rate(v: &serde_json::Value, field: &str) -> Result<Micros, PriceTableError> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    Micros::parse(&text).ok_or_else(|| {
        err(
            "rate_invalid",
            field,
            format!(
                "`{}` is not a rate: write a decimal that is not negative, with at most 6 decimals, like \"0.0034\"",
                excerpt(&text)
            ),
        )
    })
}

fn country_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn tiers(raw: &[RawTier], field: &str) -> Result<Vec<Tier>, PriceTableError> {
    if raw.len() > MAX_TIERS {
        return Err(err(
            "tier_invalid",
            field,
            format!("at most {MAX_TIERS} tiers per category"),
        ));
    }
    let mut out: Vec<Tier> = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if t.from < 2 || out.last().is_some_and(|p| p.from >= t.from) {
            return Err(err(
                "tier_invalid",
                format!("{f}.from"),
                "a tier starts at a monthly volume above 1 (the list rate covers the first messages), each above the one before",
            ));
        }
        out.push(Tier {
            from: t.from,
            rate: rate(&t.rate, &format!("{f}.rate"))?,
        });
    }
    Ok(out)
}

impl PriceTable {
    /// The default table (Meta's rates as of 2026-10-01).
    pub fn default_table() -> PriceTable {
        PriceTable::parse(DEFAULT_TABLE_JSON).expect("the shipped price table is valid")
    }

    /// Parses and checks a table; every refusal has a stable code and the field.
    pub fn parse(json: &str) -> Result<PriceTable, PriceTableError> {
        let raw: RawTable = serde_json::from_str(json).map_err(|e| {
            err(
                "price_table_invalid",
                "",
                format!("the price table does not read: {}", excerpt(&e.to_string())),
            )
        })?;
        let currency = raw.currency.trim().to_owned();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(err(
                "currency_invalid",
                "currency",
                format!(
                    "`{}` is not a currency: use the ISO 4217 code of the WABA's billing currency, like USD",
                    excerpt(&raw.currency)
                ),
            ));
        }
        let fmt = time::macros::format_description!("[year]-[month]-[day]");
        if time::Date::parse(raw.effective_date.trim(), &fmt).is_err() {
            return Err(err(
                "effective_date_invalid",
                "effective_date",
                format!(
                    "`{}` is not a date: write it like 2026-10-01",
                    excerpt(&raw.effective_date)
                ),
            ));
        }
        if raw.source.chars().count() > 500 {
            return Err(err(
                "price_table_invalid",
                "source",
                "the source is at most 500 characters",
            ));
        }
        if raw.markets.is_empty() || raw.markets.len() > MAX_MARKETS {
            return Err(err(
                "market_invalid",
                "markets",
                format!("a table has 1 to {MAX_MARKETS} markets"),
            ));
        }
        if let Some(c) = &raw.authentication_international.business_country
            && !country_code(c)
        {
            return Err(err(
                "country_invalid",
                "authentication_international.business_country",
                format!(
                    "`{}` is not a country: use an ISO 3166 alpha-2 code like DE",
                    excerpt(c)
                ),
            ));
        }
        let mut ids = BTreeSet::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut markets = Vec::new();
        for (i, m) in raw.markets.iter().enumerate() {
            let f = format!("markets[{i}]");
            let id = m.id.trim();
            if id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(err(
                    "market_invalid",
                    format!("{f}.id"),
                    format!(
                        "`{}` is not a market id: 1 to 64 of a-z, 0-9 and _",
                        excerpt(&m.id)
                    ),
                ));
            }
            if !ids.insert(id.to_owned()) {
                return Err(err(
                    "market_invalid",
                    format!("{f}.id"),
                    format!("market `{id}` appears twice"),
                ));
            }
            if m.name.chars().count() > 100 || m.countries.len() > 300 {
                return Err(err(
                    "market_invalid",
                    f.clone(),
                    "a market's name is at most 100 characters and it lists at most 300 countries",
                ));
            }
            for (j, c) in m.countries.iter().enumerate() {
                if !country_code(c) {
                    return Err(err(
                        "country_invalid",
                        format!("{f}.countries[{j}]"),
                        format!(
                            "`{}` is not a country: use an ISO 3166 alpha-2 code like DE",
                            excerpt(c)
                        ),
                    ));
                }
                if let Some(other) = seen.insert(c.clone(), id.to_owned()) {
                    return Err(err(
                        "country_duplicate",
                        format!("{f}.countries[{j}]"),
                        format!(
                            "{c} is in market `{other}` and in `{id}`: a country is in one market"
                        ),
                    ));
                }
            }
            markets.push(Market {
                id: id.to_owned(),
                name: if m.name.trim().is_empty() {
                    id.to_owned()
                } else {
                    m.name.trim().to_owned()
                },
                countries: m.countries.clone(),
                marketing: rate(&m.marketing, &format!("{f}.marketing"))?,
                utility: rate(&m.utility, &format!("{f}.utility"))?,
                authentication: rate(&m.authentication, &format!("{f}.authentication"))?,
                authentication_international: match &m.authentication_international {
                    None | Some(serde_json::Value::Null) => None,
                    Some(v) => Some(rate(v, &format!("{f}.authentication_international"))?),
                },
                service: rate(&m.service, &format!("{f}.service"))?,
                utility_tiers: tiers(&m.utility_tiers, &format!("{f}.utility_tiers"))?,
                authentication_tiers: tiers(
                    &m.authentication_tiers,
                    &format!("{f}.authentication_tiers"),
                )?,
            });
        }
        if !ids.contains(raw.default_market.trim()) {
            return Err(err(
                "default_market_unknown",
                "default_market",
                format!(
                    "`{}` is not one of the table's markets: name the market of countries no market lists",
                    excerpt(&raw.default_market)
                ),
            ));
        }
        Ok(PriceTable {
            currency,
            effective_date: raw.effective_date.trim().to_owned(),
            source: raw.source.trim().to_owned(),
            default_market: raw.default_market.trim().to_owned(),
            authentication_international: raw.authentication_international,
            markets,
        })
    }

    /// The table as the API writes it (and as it is stored).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a price table serializes")
    }

    /// The market of a recipient's country (ISO alpha-2; `None`: the default market).
    pub fn market_of(&self, country: Option<&str>) -> &Market {
        country
            .and_then(|c| {
                self.markets
                    .iter()
                    .find(|m| m.countries.iter().any(|x| x == c))
            })
            .or_else(|| self.markets.iter().find(|m| m.id == self.default_market))
            .unwrap_or(&self.markets[0])
    }
}

/// What a message is, for pricing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A template of Meta's category.
    Template(crate::TemplateCategory),
    /// Any non-template message (only possible inside the window).
    Service,
}

/// How Meta treats one message (§5.1, §5.3), before its price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PricingType {
    /// Charged.
    Regular,
    /// Free inside the window (only before 2026-10-01).
    FreeCustomerService,
    /// Free inside a 72 h free entry point.
    FreeEntryPoint,
}

/// The category and pricing type of a message delivered at `at_ms` to a recipient of
/// `country`, inside the service window or not, inside a free entry point or not.
pub fn classify(
    table: &PriceTable,
    kind: MessageKind,
    country: Option<&str>,
    in_window: bool,
    in_free_entry_point: bool,
    at_ms: i64,
) -> (PriceCategory, PricingType) {
    let category = match kind {
        MessageKind::Service => PriceCategory::Service,
        MessageKind::Template(crate::TemplateCategory::Marketing) => PriceCategory::Marketing,
        MessageKind::Template(crate::TemplateCategory::Utility) => PriceCategory::Utility,
        MessageKind::Template(crate::TemplateCategory::Authentication) => {
            let ai = &table.authentication_international;
            let market = table.market_of(country);
            if ai.eligible
                && market.authentication_international.is_some()
                && country.is_some()
                && ai.business_country.as_deref() != country
            {
                PriceCategory::AuthenticationInternational
            } else {
                PriceCategory::Authentication
            }
        }
    };
    let kind = if in_free_entry_point {
        PricingType::FreeEntryPoint
    } else if at_ms < SERVICE_CHARGED_FROM_MS
        && in_window
        && matches!(category, PriceCategory::Service | PriceCategory::Utility)
    {
        PricingType::FreeCustomerService
    } else {
        PricingType::Regular
    };
    (category, kind)
}

/// Charged volume per (market, category) in the current month, counting on as messages are
/// priced: the tier of each message is the one its place in the month falls in.
#[derive(Debug, Clone, Default)]
pub struct TierCounter {
    volume: BTreeMap<(String, PriceCategory), u64>,
}

/// The price of one charged message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Priced {
    pub market: String,
    pub category: PriceCategory,
    pub price: Micros,
    /// The tier's first monthly volume (1: the list rate); `None` for untiered categories.
    pub tier_from: Option<u64>,
}

impl TierCounter {
    /// Starts from what the month already counted: `(market id, category) → messages`.
    pub fn new(volume: BTreeMap<(String, PriceCategory), u64>) -> TierCounter {
        TierCounter { volume }
    }

    /// The volume counted so far.
    pub fn volume(&self, market: &str, category: PriceCategory) -> u64 {
        self.volume
            .get(&(market.to_owned(), tier_key(category)))
            .copied()
            .unwrap_or(0)
    }

    /// Prices `n` charged messages in a row (crossing tiers as they come) and counts them.
    pub fn charge_many(&mut self, market: &Market, category: PriceCategory, n: u64) -> Micros {
        let mut sum = Micros(0);
        if !category.tiered() {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            return Micros(market.rate(category).0.saturating_mul(n));
        }
        let v = self
            .volume
            .entry((market.id.clone(), tier_key(category)))
            .or_insert(0);
        let mut left = n;
        while left > 0 {
            let next = *v + 1;
            let (rate, _) = market.rate_at(category, next);
            let take = match market.tiers(category).iter().find(|t| t.from > next) {
                Some(t) => left.min(t.from - next),
                None => left,
            };
            sum += Micros(
                rate.0
                    .saturating_mul(i64::try_from(take).unwrap_or(i64::MAX)),
            );
            *v += take;
            left -= take;
        }
        sum
    }

    /// Prices one charged message and counts it toward its tier.
    pub fn charge(&mut self, market: &Market, category: PriceCategory) -> Priced {
        if !category.tiered() {
            return Priced {
                market: market.id.clone(),
                category,
                price: market.rate(category),
                tier_from: None,
            };
        }
        let n = self
            .volume
            .entry((market.id.clone(), tier_key(category)))
            .or_insert(0);
        *n += 1;
        let (price, from) = market.rate_at(category, *n);
        Priced {
            market: market.id.clone(),
            category,
            price,
            tier_from: Some(from),
        }
    }
}

/// Authentication and authentication-international share their tier volume (§5.2 counts per
/// market and category; Meta's tier webhook names AUTHENTICATION for both. UNCERTAIN).
fn tier_key(c: PriceCategory) -> PriceCategory {
    match c {
        PriceCategory::AuthenticationInternational => PriceCategory::Authentication,
        c => c,
    }
}

/// The first instant (Unix ms, UTC) of the calendar month `t` falls in.
pub fn month_start(t: i64) -> i64 {
    let Ok(dt) = time::OffsetDateTime::from_unix_timestamp(t.div_euclid(1000)) else {
        return 0;
    };
    let d = dt.date().replace_day(1).unwrap_or(dt.date());
    d.midnight().assume_utc().unix_timestamp() * 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TemplateCategory;

    #[test]
    fn micros_read_and_print() {
        assert_eq!(Micros::parse("0.0034"), Some(Micros(3400)));
        assert_eq!(Micros::parse("1"), Some(Micros(1_000_000)));
        assert_eq!(Micros::parse(".5"), Some(Micros(500_000)));
        assert_eq!(Micros::parse("-1"), None);
        assert_eq!(Micros::parse("0.0000001"), None);
        assert_eq!(Micros::parse("1e3"), None);
        assert_eq!(Micros::parse(""), None);
        assert_eq!(Micros::parse("."), None);
        assert_eq!(Micros(3400).to_string(), "0.0034");
        assert_eq!(Micros(12_000_000).to_string(), "12.00");
        assert_eq!(Micros(-1_500_000).to_string(), "-1.50");
    }

    #[test]
    fn the_default_table_reads_and_maps_countries() {
        let t = PriceTable::default_table();
        assert_eq!(t.currency, "USD");
        assert_eq!(t.effective_date, "2026-10-01");
        assert_eq!(t.market_of(Some("US")).id, "north_america");
        assert_eq!(t.market_of(Some("AT")).id, "rest_of_western_europe");
        assert_eq!(t.market_of(Some("DE")).id, "germany");
        assert_eq!(t.market_of(Some("ZZ")).id, "other");
        assert_eq!(t.market_of(None).id, "other");
        // Service is charged at the utility rate from 2026-10-01 (§5.3).
        for m in &t.markets {
            assert_eq!(m.service, m.utility, "{}", m.id);
        }
        // The table round-trips through its JSON.
        assert_eq!(PriceTable::parse(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn the_october_rules() {
        let t = PriceTable::default_table();
        let after = SERVICE_CHARGED_FROM_MS + 1;
        let before = SERVICE_CHARGED_FROM_MS - 1;
        let u = MessageKind::Template(TemplateCategory::Utility);
        assert_eq!(
            classify(&t, u, Some("DE"), true, false, after),
            (PriceCategory::Utility, PricingType::Regular)
        );
        assert_eq!(
            classify(&t, u, Some("DE"), true, false, before),
            (PriceCategory::Utility, PricingType::FreeCustomerService)
        );
        assert_eq!(
            classify(&t, MessageKind::Service, Some("DE"), true, false, after),
            (PriceCategory::Service, PricingType::Regular)
        );
        assert_eq!(
            classify(&t, u, Some("DE"), false, true, after).1,
            PricingType::FreeEntryPoint
        );
        let m = MessageKind::Template(TemplateCategory::Marketing);
        assert_eq!(
            classify(&t, m, Some("DE"), true, false, before),
            (PriceCategory::Marketing, PricingType::Regular)
        );
        let a = MessageKind::Template(TemplateCategory::Authentication);
        assert_eq!(
            classify(&t, a, Some("IN"), false, false, after).0,
            PriceCategory::Authentication
        );
        let mut t2 = t.clone();
        t2.authentication_international = AuthInternational {
            eligible: true,
            business_country: Some("DE".into()),
        };
        assert_eq!(
            classify(&t2, a, Some("IN"), false, false, after).0,
            PriceCategory::AuthenticationInternational
        );
        assert_eq!(
            classify(&t2, a, Some("DE"), false, false, after).0,
            PriceCategory::Authentication
        );
    }

    #[test]
    fn tiers_cross_within_a_run() {
        let mut t = PriceTable::default_table();
        let m = t.markets.iter_mut().find(|m| m.id == "germany").unwrap();
        m.utility_tiers = vec![
            Tier {
                from: 3,
                rate: Micros(50_000),
            },
            Tier {
                from: 5,
                rate: Micros(40_000),
            },
        ];
        let m = m.clone();
        let mut c = TierCounter::new(BTreeMap::from([(
            ("germany".to_owned(), PriceCategory::Utility),
            1,
        )]));
        let prices: Vec<_> = (0..5)
            .map(|_| c.charge(&m, PriceCategory::Utility).price.0)
            .collect();
        assert_eq!(prices, vec![55_000, 50_000, 50_000, 40_000, 40_000]);
        // The same run priced at once.
        let mut c2 = TierCounter::new(BTreeMap::from([(
            ("germany".to_owned(), PriceCategory::Utility),
            1,
        )]));
        assert_eq!(
            c2.charge_many(&m, PriceCategory::Utility, 5).0,
            prices.iter().sum::<i64>()
        );
        // Marketing has no tiers.
        assert_eq!(c.charge(&m, PriceCategory::Marketing).tier_from, None);
    }

    #[test]
    fn bad_tables_are_refused_with_codes() {
        let base: serde_json::Value = serde_json::from_str(DEFAULT_TABLE_JSON).unwrap();
        let code = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = base.clone();
            f(&mut v);
            PriceTable::parse(&v.to_string()).unwrap_err().code
        };
        assert_eq!(
            code(&|v| v["currency"] = "dollars".into()),
            "currency_invalid"
        );
        assert_eq!(
            code(&|v| v["effective_date"] = "soon".into()),
            "effective_date_invalid"
        );
        assert_eq!(
            code(&|v| v["markets"][0]["marketing"] = "-0.1".into()),
            "rate_invalid"
        );
        assert_eq!(
            code(&|v| v["markets"][0]["utility"] = serde_json::json!(true)),
            "rate_invalid"
        );
        assert_eq!(
            code(&|v| v["markets"][0]["countries"] = serde_json::json!(["de"])),
            "country_invalid"
        );
        assert_eq!(
            code(&|v| v["markets"][0]["countries"] = serde_json::json!(["DE"])),
            "country_duplicate"
        );
        assert_eq!(
            code(&|v| v["default_market"] = "mars".into()),
            "default_market_unknown"
        );
        assert_eq!(
            code(&|v| v["markets"][0]["utility_tiers"] =
                serde_json::json!([{"from": 10, "rate": "0.01"}, {"from": 5, "rate": "0.01"}])),
            "tier_invalid"
        );
        assert_eq!(
            code(&|v| v["markets"][1]["id"] = "argentina".into()),
            "market_invalid"
        );
        assert_eq!(code(&|v| v["extra"] = 1.into()), "price_table_invalid");
        assert_eq!(
            PriceTable::parse("{").unwrap_err().code,
            "price_table_invalid"
        );
    }

    #[test]
    fn month_starts() {
        // 2026-12-06T13:11Z → 2026-12-01.
        assert_eq!(month_start(1_796_562_660_000), 1_796_083_200_000);
    }
}
