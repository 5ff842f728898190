//! The `pricing` object of a status webhook (META_2026.md §5.1, §5.3), read by `type` and
//! `category`; `billable` is optional ("to be deprecated"), unknown values are kept as text.

use serde::{Deserialize, Serialize};

use crate::webhook::StatusUpdate;

/// `statuses[].pricing`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Pricing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billable: Option<bool>,
    /// `PMP` (or `CBP` on old webhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing_model: Option<String>,
    /// `regular`, `free_customer_service`, `free_entry_point`, or a value Meta adds later.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `marketing`, `marketing_lite`, `utility`, `authentication`,
    /// `authentication-international`, `service`, `referral_conversion`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

impl Pricing {
    /// Whether Meta charges the message: decided from `type` (`regular` is charged, the free
    /// types are not), falling back on `billable` when `type` is absent.
    pub fn charged(&self) -> Option<bool> {
        match self.kind.as_deref() {
            Some("regular") => Some(true),
            Some("free_customer_service" | "free_entry_point") => Some(false),
            _ => self.billable,
        }
    }

    /// The category as the statistics count it: `authentication-international` (webhook) and
    /// `AUTHENTICATION_INTERNATIONAL` (analytics) are one; other values lower-cased.
    pub fn category_key(&self) -> Option<String> {
        let c = self.category.as_deref()?.trim();
        match c.to_ascii_lowercase().as_str() {
            "" => None,
            "authentication_international" => Some("authentication-international".to_owned()),
            other => Some(other.to_owned()),
        }
    }
}

impl StatusUpdate {
    /// The status's `pricing`, when it has a readable one.
    pub fn pricing_object(&self) -> Option<Pricing> {
        serde_json::from_str(self.pricing.as_ref()?.get()).ok()
    }

    /// The send was made through the Marketing Messages API (`pricing.category` is
    /// `marketing_lite`).
    pub fn is_marketing_lite(&self) -> bool {
        self.pricing_object()
            .and_then(|p| p.category)
            .is_some_and(|c| c == "marketing_lite")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pricing(v: serde_json::Value) -> Pricing {
        serde_json::from_value(v).expect("pricing")
    }

    #[test]
    fn reads_metas_shapes() {
        let p = pricing(
            serde_json::json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": "service"}),
        );
        assert_eq!(p.charged(), Some(true));
        assert_eq!(p.category_key().as_deref(), Some("service"));
        let p = pricing(
            serde_json::json!({"pricing_model": "PMP", "type": "free_entry_point", "category": "referral_conversion"}),
        );
        assert_eq!(p.charged(), Some(false));
        assert_eq!(p.category_key().as_deref(), Some("referral_conversion"));
        let p = pricing(serde_json::json!({"category": "AUTHENTICATION_INTERNATIONAL"}));
        assert_eq!(
            p.category_key().as_deref(),
            Some("authentication-international")
        );
        let p = pricing(
            serde_json::json!({"category": "authentication-international", "billable": false}),
        );
        assert_eq!(
            p.category_key().as_deref(),
            Some("authentication-international")
        );
        assert_eq!(p.charged(), Some(false));
        let p = pricing(serde_json::json!({"category": "marketing_lite", "type": "brand_new"}));
        assert_eq!(p.category_key().as_deref(), Some("marketing_lite"));
        assert_eq!(p.charged(), None);
    }
}
