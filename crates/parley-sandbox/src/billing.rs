//! What Meta bills (META_2026.md §5): every delivered message whose `pricing.type` is
//! `regular` is charged at its market's rate for its category (`marketing_lite` as marketing),
//! utility and authentication with volume tiers counted per business portfolio, market and
//! category per calendar month in the WABA's time zone (its `timezone_id`, `zones.rs`; UTC
//! for an id outside Meta's table). Service messages
//! have no tiers. Free messages (`free_customer_service`, `free_entry_point`) are recorded with
//! a price of 0. The rate card is Meta's published one (`data/rates-2026-10-01.json`, the same
//! figures Parley ships as its default), replaceable through the control API.
//!
//! | Method | Path | Body | Answer |
//! |---|---|---|---|
//! | `GET` | `/sandbox/billing` | `?phone_number_id&biz_opaque_callback_data` (filters) | `{"currency", "data": [{"at", "wamid", "phone_number_id", "business_id", "to", "country", "market", "category", "pricing_type", "tier", "price", "biz_opaque_callback_data"}], "totals": {"messages", "charged", "cost", "by_phone_number": {id: cost}, "by_category": {c: cost}}}`: what was billed, once delivered (virtual time) |
//! | `GET` | `/sandbox/rates` | | the rate card in force |
//! | `POST` | `/sandbox/rates` | a rate card (the shape of `GET`) | the card; bills from then on use it |

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Sandbox;
use crate::control::json_body;
use crate::errors::GraphError;
use crate::state::State as World;

const DEFAULT_CARD: &str = include_str!("../data/rates-2026-10-01.json");

/// A rate card as Meta publishes it: markets of countries, a rate per category, tiers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Card {
    currency: String,
    effective_date: String,
    default_market: String,
    markets: Vec<CardMarket>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CardMarket {
    id: String,
    #[serde(default)]
    countries: Vec<String>,
    marketing: Value,
    utility: Value,
    authentication: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authentication_international: Option<Value>,
    service: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    utility_tiers: Vec<CardTier>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    authentication_tiers: Vec<CardTier>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CardTier {
    from: u64,
    rate: Value,
}

/// A decimal rate in millionths.
fn micros(v: &Value) -> Option<i64> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if frac.len() > 6 || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let i: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let f: i64 = format!("{frac:0<6}").parse().ok()?;
    Some(i * 1_000_000 + f)
}

pub(crate) fn money(m: i64) -> String {
    let mut frac = format!("{:06}", m % 1_000_000);
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{}.{frac}", m / 1_000_000)
}

impl Card {
    fn check(&self) -> Result<(), String> {
        if !self.markets.iter().any(|m| m.id == self.default_market) {
            return Err("default_market is not a market".into());
        }
        for m in &self.markets {
            for v in [&m.marketing, &m.utility, &m.authentication, &m.service] {
                micros(v).ok_or_else(|| format!("market {}: a rate is not a decimal", m.id))?;
            }
            for t in m.utility_tiers.iter().chain(&m.authentication_tiers) {
                micros(&t.rate)
                    .ok_or_else(|| format!("market {}: a tier rate is not a decimal", m.id))?;
            }
        }
        Ok(())
    }

    fn market(&self, country: &str) -> &CardMarket {
        self.markets
            .iter()
            .find(|m| m.countries.iter().any(|c| c == country))
            .or_else(|| self.markets.iter().find(|m| m.id == self.default_market))
            .unwrap_or(&self.markets[0])
    }
}

impl Default for Card {
    fn default() -> Self {
        serde_json::from_str(DEFAULT_CARD).expect("the shipped rate card reads")
    }
}

/// One billed (or free) delivered message.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bill {
    /// When it was delivered (virtual Unix ms).
    pub at: i64,
    pub wamid: String,
    pub phone_number_id: String,
    pub business_id: String,
    pub to: String,
    pub country: String,
    pub market: String,
    /// `pricing.category` as the webhook says it.
    pub category: String,
    pub pricing_type: String,
    /// `"<lower>:<upper>"` as Meta's analytics write it (`MAX` open), for tiered categories.
    pub tier: Option<String>,
    #[serde(serialize_with = "ser_money")]
    pub price: i64,
    pub biz_opaque_callback_data: Option<String>,
}

fn ser_money<S: serde::Serializer>(m: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&money(*m))
}

/// The sandbox's bills and the card.
#[derive(Debug, Clone, Default)]
pub(crate) struct Billing {
    pub card: Card,
    pub bills: Vec<Bill>,
    /// (business, month "YYYY-MM" in the WABA's zone, market, category) → charged messages.
    volume: BTreeMap<(String, String, String, String), u64>,
}

impl Billing {
    /// Forgets every bill and the month's volumes (`/sandbox/reset`); the card stays.
    pub(crate) fn clear(&mut self) {
        self.bills.clear();
        self.volume.clear();
    }
}

/// The recipient's country (ISO alpha-2) from its wa_id digits; '' unknown.
pub(crate) fn country(wa_id: &str) -> String {
    phonenumber::parse(None, format!("+{wa_id}"))
        .ok()
        .and_then(|n| n.country().id())
        .map(|id| format!("{id:?}"))
        .unwrap_or_default()
}

/// Records what a message delivered at `at` with `pricing` costs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bill(
    state: &mut World,
    at: i64,
    phone_id: &str,
    wamid: &str,
    wa_id: &str,
    pricing: &Value,
    biz_opaque: Option<&str>,
) {
    let business_id = state
        .phone(phone_id)
        .and_then(|p| state.business_of_waba(&p.waba.id))
        .map(|b| b.id.clone())
        .unwrap_or_default();
    let month = crate::zones::month_key(
        at,
        &state.phone(phone_id).map_or(jiff::tz::TimeZone::UTC, |p| {
            crate::zones::zone(&p.waba.timezone_id)
        }),
    );
    let category = pricing["category"].as_str().unwrap_or_default().to_owned();
    let pricing_type = pricing["type"].as_str().unwrap_or_default().to_owned();
    let country = country(wa_id);
    let billing = &mut state.billing;
    let market = billing.card.market(&country).clone();
    let (price, tier) = if pricing_type == "regular" {
        let (list, tiers, key) = match category.as_str() {
            "marketing" | "marketing_lite" => (&market.marketing, &Vec::new(), None),
            "utility" => (&market.utility, &market.utility_tiers, Some("utility")),
            "authentication" => (
                &market.authentication,
                &market.authentication_tiers,
                Some("authentication"),
            ),
            "authentication-international" => (
                market
                    .authentication_international
                    .as_ref()
                    .unwrap_or(&market.authentication),
                &market.authentication_tiers,
                Some("authentication"),
            ),
            _ => (&market.service, &Vec::new(), None),
        };
        let list = micros(list).unwrap_or(0);
        match key {
            None => (list, None),
            Some(key) => {
                let n = billing
                    .volume
                    .entry((
                        business_id.clone(),
                        month.clone(),
                        market.id.clone(),
                        key.to_owned(),
                    ))
                    .or_insert(0);
                *n += 1;
                let i = tiers.iter().rposition(|t| t.from <= *n);
                let lower = i.map_or(1, |i| tiers[i].from);
                let upper = tiers
                    .get(i.map_or(0, |i| i + 1))
                    .map_or("MAX".to_owned(), |t| (t.from - 1).to_string());
                let rate = match i {
                    None => list,
                    Some(i) => {
                        let r = micros(&tiers[i].rate).unwrap_or(0);
                        if category == "authentication-international" {
                            let base = micros(&market.authentication).unwrap_or(1).max(1);
                            list * r / base
                        } else {
                            r
                        }
                    }
                };
                (rate, Some(format!("{}:{upper}", lower - 1)))
            }
        }
    } else {
        (0, None)
    };
    billing.bills.push(Bill {
        at,
        wamid: wamid.to_owned(),
        phone_number_id: phone_id.to_owned(),
        business_id,
        to: wa_id.to_owned(),
        country,
        market: market.id.clone(),
        category,
        pricing_type,
        tier,
        price,
        biz_opaque_callback_data: biz_opaque.map(str::to_owned),
    });
}

#[derive(Deserialize)]
pub(crate) struct BillingQuery {
    phone_number_id: Option<String>,
    biz_opaque_callback_data: Option<String>,
}

/// `GET /sandbox/billing`.
pub(crate) async fn get_billing(
    State(sandbox): State<Sandbox>,
    Query(q): Query<BillingQuery>,
) -> Response {
    let now = sandbox.inner.clock.now_ms();
    let state = sandbox.inner.lock();
    let mut data = Vec::new();
    let (mut cost, mut charged) = (0i64, 0u64);
    let mut by_phone: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_category: BTreeMap<String, i64> = BTreeMap::new();
    for b in state.billing.bills.iter().filter(|b| {
        b.at <= now
            && q.phone_number_id
                .as_ref()
                .is_none_or(|p| *p == b.phone_number_id)
            && q.biz_opaque_callback_data
                .as_ref()
                .is_none_or(|o| b.biz_opaque_callback_data.as_ref() == Some(o))
    }) {
        cost += b.price;
        if b.pricing_type == "regular" {
            charged += 1;
        }
        *by_phone.entry(b.phone_number_id.clone()).or_insert(0) += b.price;
        *by_category.entry(b.category.clone()).or_insert(0) += b.price;
        data.push(b.clone());
    }
    let money_map = |m: BTreeMap<String, i64>| {
        m.into_iter()
            .map(|(k, v)| (k, money(v)))
            .collect::<BTreeMap<_, _>>()
    };
    axum::Json(json!({
        "currency": state.billing.card.currency,
        "data": data,
        "totals": {
            "messages": data.len(),
            "charged": charged,
            "cost": money(cost),
            "by_phone_number": money_map(by_phone),
            "by_category": money_map(by_category),
        }
    }))
    .into_response()
}

/// `GET /sandbox/rates`.
pub(crate) async fn get_rates(State(sandbox): State<Sandbox>) -> Response {
    axum::Json(serde_json::to_value(&sandbox.inner.lock().billing.card).unwrap_or_default())
        .into_response()
}

/// `POST /sandbox/rates`.
pub(crate) async fn set_rates(
    State(sandbox): State<Sandbox>,
    body: Body,
) -> Result<Response, GraphError> {
    let card: Card = json_body(body).await?;
    card.check().map_err(GraphError::invalid_param)?;
    let v = serde_json::to_value(&card).unwrap_or_default();
    sandbox.inner.lock().billing.card = card;
    Ok(axum::Json(v).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_reads_and_rates_parse() {
        let c = Card::default();
        assert_eq!(c.currency, "USD");
        assert_eq!(c.market("US").id, "north_america");
        assert_eq!(c.market("ZZ").id, "other");
        assert_eq!(micros(&json!("0.0034")), Some(3400));
        assert_eq!(micros(&json!(0.025)), Some(25_000));
        assert_eq!(money(3400), "0.0034");
    }
}
