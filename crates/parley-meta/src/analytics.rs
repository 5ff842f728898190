//! Meta's WABA analytics (Meta docs "Analytics", META_API.md §2.7, META_2026.md §5.4):
//! `GET /{waba-id}?fields=analytics.start().end().granularity()…` (messages sent and
//! delivered) and `…fields=pricing_analytics.start().end().granularity().dimensions()…`
//! (charged volume and cost by category, type, country, number, tier). Times are Unix seconds;
//! `cost` is a number in the WABA's currency (absent on a partner's credit line).

use serde::{Deserialize, Serialize};

use crate::client::GraphClient;
use crate::error::GraphError;

/// `granularity` of `analytics` (`HALF_HOUR`, `DAY`, `MONTH`) and of `pricing_analytics`
/// (`HALF_HOUR`, `DAILY`, `MONTHLY`): Meta spells them differently per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    HalfHour,
    Day,
    Month,
}

impl Granularity {
    fn messaging(self) -> &'static str {
        match self {
            Granularity::HalfHour => "HALF_HOUR",
            Granularity::Day => "DAY",
            Granularity::Month => "MONTH",
        }
    }

    fn pricing(self) -> &'static str {
        match self {
            Granularity::HalfHour => "HALF_HOUR",
            Granularity::Day => "DAILY",
            Granularity::Month => "MONTHLY",
        }
    }
}

/// The dimensions `pricing_analytics` may split its points by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PricingDimension {
    Country,
    Phone,
    PricingCategory,
    PricingType,
    Tier,
}

impl PricingDimension {
    fn as_str(self) -> &'static str {
        match self {
            PricingDimension::Country => "COUNTRY",
            PricingDimension::Phone => "PHONE",
            PricingDimension::PricingCategory => "PRICING_CATEGORY",
            PricingDimension::PricingType => "PRICING_TYPE",
            PricingDimension::Tier => "TIER",
        }
    }
}

/// A messaging analytics request.
#[derive(Debug, Clone)]
pub struct MessagingQuery {
    pub start: i64,
    pub end: i64,
    pub granularity: Granularity,
    /// Display numbers (digits) or phone number ids; empty: every number of the WABA.
    pub phone_numbers: Vec<String>,
    /// ISO alpha-2 codes; empty: every country.
    pub country_codes: Vec<String>,
}

/// A pricing analytics request.
#[derive(Debug, Clone)]
pub struct PricingQuery {
    pub start: i64,
    pub end: i64,
    pub granularity: Granularity,
    pub dimensions: Vec<PricingDimension>,
    pub phone_numbers: Vec<String>,
    pub country_codes: Vec<String>,
}

/// `analytics` of a WABA.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagingAnalytics {
    #[serde(default)]
    pub phone_numbers: Vec<String>,
    #[serde(default)]
    pub country_codes: Vec<String>,
    #[serde(default)]
    pub granularity: Option<String>,
    #[serde(default)]
    pub data_points: Vec<MessagingPoint>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagingPoint {
    pub start: i64,
    pub end: i64,
    #[serde(default)]
    pub sent: i64,
    #[serde(default)]
    pub delivered: i64,
}

/// `pricing_analytics` of a WABA: `{"data": [{"data_points": […]}]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PricingAnalytics {
    #[serde(default)]
    pub data: Vec<PricingData>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PricingData {
    #[serde(default)]
    pub data_points: Vec<PricingPoint>,
}

/// One point: a bucket and the dimensions asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PricingPoint {
    pub start: i64,
    pub end: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// `"<lower>:<upper>"` (`MAX` open); absent on free points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// `REGULAR`, `FREE_CUSTOMER_SERVICE`, `FREE_ENTRY_POINT`, or a value Meta adds later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing_type: Option<String>,
    /// `MARKETING`, `UTILITY`, `AUTHENTICATION`, `AUTHENTICATION_INTERNATIONAL`, `SERVICE`,
    /// `MARKETING_LITE`, `REFERRAL_CONVERSION`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing_category: Option<String>,
    #[serde(default)]
    pub volume: Option<i64>,
    /// In the WABA's currency; absent for WABAs on a partner's credit line.
    #[serde(default)]
    pub cost: Option<f64>,
}

impl PricingAnalytics {
    /// Every point of every `data` entry.
    pub fn points(&self) -> impl Iterator<Item = &PricingPoint> {
        self.data.iter().flat_map(|d| d.data_points.iter())
    }
}

#[derive(Deserialize)]
struct MessagingAnswer {
    #[serde(default)]
    analytics: MessagingAnalytics,
}

#[derive(Deserialize)]
struct PricingAnswer {
    #[serde(default)]
    pricing_analytics: PricingAnalytics,
}

/// `[A,B]` with each value quoted: `["A","B"]` (Meta's own examples).
fn list(values: &[String]) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|v| format!("\"{}\"", v.replace(['"', ')', '(', ','], "")))
        .collect();
    format!("[{}]", quoted.join(","))
}

/// The `fields` value of a messaging analytics request.
pub fn messaging_fields(q: &MessagingQuery) -> String {
    let mut f = format!(
        "analytics.start({}).end({}).granularity({})",
        q.start,
        q.end,
        q.granularity.messaging()
    );
    if !q.phone_numbers.is_empty() {
        f.push_str(&format!(".phone_numbers({})", list(&q.phone_numbers)));
    }
    if !q.country_codes.is_empty() {
        f.push_str(&format!(".country_codes({})", list(&q.country_codes)));
    }
    f
}

/// The `fields` value of a pricing analytics request.
pub fn pricing_fields(q: &PricingQuery) -> String {
    let mut f = format!(
        "pricing_analytics.start({}).end({}).granularity({})",
        q.start,
        q.end,
        q.granularity.pricing()
    );
    if !q.phone_numbers.is_empty() {
        f.push_str(&format!(".phone_numbers({})", list(&q.phone_numbers)));
    }
    if !q.country_codes.is_empty() {
        f.push_str(&format!(".country_codes({})", list(&q.country_codes)));
    }
    if !q.dimensions.is_empty() {
        let dims: Vec<String> = q.dimensions.iter().map(|d| d.as_str().to_owned()).collect();
        f.push_str(&format!(".dimensions({})", list(&dims)));
    }
    f
}

impl GraphClient {
    /// `GET /{waba-id}?fields=analytics…`: messages sent and delivered per bucket.
    pub async fn messaging_analytics(
        &self,
        token: &str,
        waba_id: &str,
        q: &MessagingQuery,
    ) -> Result<MessagingAnalytics, GraphError> {
        let req = self
            .http
            .get(self.url(waba_id))
            .bearer_auth(token)
            .query(&[("fields", messaging_fields(q))]);
        let answer: MessagingAnswer = self.execute(req).await?;
        Ok(answer.analytics)
    }

    /// `GET /{waba-id}?fields=pricing_analytics…`: charged volume and cost per bucket and
    /// dimension.
    pub async fn pricing_analytics(
        &self,
        token: &str,
        waba_id: &str,
        q: &PricingQuery,
    ) -> Result<PricingAnalytics, GraphError> {
        let req = self
            .http
            .get(self.url(waba_id))
            .bearer_auth(token)
            .query(&[("fields", pricing_fields(q))]);
        let answer: PricingAnswer = self.execute(req).await?;
        Ok(answer.pricing_analytics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_metas_expansion_syntax() {
        let f = pricing_fields(&PricingQuery {
            start: 1748761200,
            end: 1749687703,
            granularity: Granularity::Day,
            dimensions: vec![PricingDimension::PricingCategory, PricingDimension::Country],
            phone_numbers: vec![],
            country_codes: vec!["US".into(), "IN".into()],
        });
        assert_eq!(
            f,
            "pricing_analytics.start(1748761200).end(1749687703).granularity(DAILY).country_codes([\"US\",\"IN\"]).dimensions([\"PRICING_CATEGORY\",\"COUNTRY\"])"
        );
        let f = messaging_fields(&MessagingQuery {
            start: 1,
            end: 2,
            granularity: Granularity::Day,
            phone_numbers: vec!["1555)0100".into()],
            country_codes: vec![],
        });
        assert_eq!(
            f,
            "analytics.start(1).end(2).granularity(DAY).phone_numbers([\"15550100\"])"
        );
    }

    #[test]
    fn reads_metas_example() {
        let v: PricingAnswer = serde_json::from_str(
            r#"{"pricing_analytics":{"data":[{"data_points":[
  {"start":1749106800,"end":1749193200,"country":"IN","tier":"0:750000","pricing_type":"REGULAR",
   "pricing_category":"AUTHENTICATION_INTERNATIONAL","volume":2,"cost":4.6},
  {"start":1748847600,"end":1748934000,"country":"US","pricing_type":"FREE_ENTRY_POINT",
   "pricing_category":"SERVICE","volume":6,"cost":0}]}]},"id":"1"}"#,
        )
        .expect("reads");
        let points: Vec<_> = v.pricing_analytics.points().collect();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].cost, Some(4.6));
        assert_eq!(points[1].tier, None);
        let m: MessagingAnswer = serde_json::from_str(
            r#"{"analytics":{"phone_numbers":["16505550111"],"granularity":"DAY","data_points":[{"start":1543543200,"end":1543629600,"sent":100,"delivered":90}]},"id":"1"}"#,
        )
        .expect("reads");
        assert_eq!(m.analytics.data_points[0].delivered, 90);
    }
}
