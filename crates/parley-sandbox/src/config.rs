//! Configuration of the sandbox: the seeded Meta world (business portfolios, WABAs, numbers,
//! templates), the secrets it checks and signs with, and the behaviour knobs of the emulated
//! delivery pipeline. Secrets never appear in `Debug` output.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Everything the sandbox needs to stand in for Meta.
///
/// Every field has a default (the demo world), so a partial TOML/JSON file is enough.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxConfig {
    pub app_id: String,
    /// The app's name as the Embedded Signup dialog shows it ("Connect your account to …").
    pub app_name: String,
    /// The partner's (Tech Provider's) own business portfolio: `entry.id` of `account_update`.
    pub partner_business_id: String,
    /// Signs webhooks (`X-Hub-Signature-256`).
    pub app_secret: String,
    pub verify_token: String,
    /// Version Parley is told to use; any `/vNN.N/` prefix is accepted on requests.
    pub graph_version: String,
    /// Tokens accepted as `Authorization: Bearer …` or `?access_token=`; anything else is 190.
    pub access_tokens: Vec<String>,
    /// Where signed webhooks are POSTed. `None`: events are logged as undeliverable.
    pub webhook_url: Option<String>,
    pub businesses: Vec<BusinessSeed>,
    pub behaviour: Behaviour,
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("app_id", &self.app_id)
            .field("app_name", &self.app_name)
            .field("partner_business_id", &self.partner_business_id)
            .field("app_secret", &"<redacted>")
            .field("verify_token", &"<redacted>")
            .field("graph_version", &self.graph_version)
            .field(
                "access_tokens",
                &format_args!("[<{} redacted>]", self.access_tokens.len()),
            )
            .field("webhook_url", &self.webhook_url)
            .field("businesses", &self.businesses)
            .field("behaviour", &self.behaviour)
            .finish()
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig::demo()
    }
}

/// A business portfolio and the WhatsApp Business Accounts it owns.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BusinessSeed {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `verified`, `not_verified`, … (`business_verification_status` of its WABAs).
    #[serde(default = "default_verification")]
    pub verification_status: String,
    #[serde(default)]
    pub wabas: Vec<WabaSeed>,
}

/// A WhatsApp Business Account with its numbers and templates.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WabaSeed {
    pub id: String,
    pub name: String,
    #[serde(default = "default_currency")]
    pub currency: String,
    #[serde(default = "default_timezone")]
    pub timezone_id: String,
    #[serde(default)]
    pub message_template_namespace: String,
    /// `APPROVED`, `PENDING`, `REJECTED` or `DEFERRED` (Meta's commerce-policy review).
    #[serde(default = "default_review")]
    pub account_review_status: String,
    #[serde(default)]
    pub phone_numbers: Vec<PhoneSeed>,
    /// Meta-shaped template objects, exactly as `GET /{waba}/message_templates` returns them:
    /// `id, name, language, category, status, parameter_format, components`.
    #[serde(default)]
    pub templates: Vec<Value>,
}

/// A business phone number registered on the Cloud API.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PhoneSeed {
    pub id: String,
    /// As Meta displays it, e.g. `"+1 555-010-0100"`.
    pub display_phone_number: String,
    pub verified_name: String,
    /// `APPROVED`, `PENDING_REVIEW`, `DECLINED`, … (review of the display name).
    #[serde(default = "default_review")]
    pub name_status: String,
    /// `CONNECTED` once registered; numbers created by Embedded Signup start `PENDING`.
    #[serde(default = "default_phone_status")]
    pub status: String,
    #[serde(default = "default_quality")]
    pub quality_rating: String,
    /// `TIER_250`, `TIER_2K`, … (`whatsapp_business_manager_messaging_limit`).
    #[serde(default = "default_limit")]
    pub messaging_limit: String,
    /// Messages per second before 130429.
    #[serde(default = "default_mps")]
    pub throughput_mps: u32,
    /// `VERIFIED`, or `NOT_VERIFIED` for a number added (or signed up) without its code:
    /// `register` refuses it until `verify_code` succeeds.
    #[serde(default = "default_code_verification")]
    pub code_verification_status: String,
    /// A WhatsApp Business app number onboarded by coexistence (`is_on_biz_app`).
    #[serde(default)]
    pub is_on_biz_app: bool,
}

/// How the emulated network behaves after a send is accepted, and which rules are enforced.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Behaviour {
    /// Virtual milliseconds from acceptance to the `sent` (or `failed`) status.
    pub sent_delay_ms: u64,
    /// Virtual milliseconds from acceptance to `delivered`.
    pub delivered_delay_ms: u64,
    /// Virtual milliseconds from acceptance to `read`.
    pub read_delay_ms: u64,
    /// Fraction of delivered messages that get read.
    pub read_ratio: f64,
    /// Fraction of accepted messages that end with `failed` (131026) instead of `sent`.
    pub failure_ratio: f64,
    /// Recipients (digits or E.164) that always fail asynchronously with 131026.
    pub undeliverable: Vec<String>,
    /// Free-form sends outside the 24 h customer-service window fail with 131047.
    pub enforce_service_window: bool,
    /// Limit webhooks in the shape Meta sent to apps on webhook version v23.0 and older
    /// before February 2026: `business_capability_update` with `max_daily_conversation_per_phone`
    /// (an integer, -1 unlimited) instead of `max_daily_conversations_per_business`, and
    /// `phone_number_quality_update` with `old_limit`/`current_limit`. Off by default: the
    /// current (v24+) shape, `max_daily_conversations_per_business` only.
    pub legacy_limit_webhooks: bool,
    /// Pair-rate bucket size per (number, recipient); refills one message per 6 s (131056).
    pub pair_rate_burst: u32,
    /// Dispatcher tick: statuses due within one tick go out in one POST per number.
    pub webhook_batch_ms: u64,
    /// Attempts per webhook POST (the first included) before it is given up; retries back
    /// off from 200 ms, doubling up to 2 s. Meta retries for days: raise it to emulate that
    /// across a restart of the receiver.
    pub webhook_attempts: u32,
    /// Virtual milliseconds from an Embedded Signup to the approval of the new WABA
    /// (`account_review_update` APPROVED), unless `/sandbox/review` decided first.
    pub review_delay_ms: u64,
    /// The portfolio's contact book (META_2026 §3): users the business exchanged messages
    /// with by phone keep their phone in webhooks after adopting a username. Turning it off
    /// is Business settings' switch (it deletes the book).
    pub contact_book: bool,
    /// The portfolio is enrolled in a parent-BSUID account: webhooks carry parent BSUIDs.
    pub parent_bsuids: bool,
    /// The name statuses give the parent BSUID: `recipient_parent_user_id` (since
    /// 2026-05-05, the default), `parent_recipient_user_id` (April 2026) or `parent_user_id`
    /// (February 2026).
    pub parent_field: String,
    /// The event of a signup finished without a number: `FINISH` (v4: FINISH without
    /// `phone_number_id`, the default) or `FINISH_ONLY_WABA` (Meta's older name for it).
    pub no_number_event: String,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            sent_delay_ms: 200,
            delivered_delay_ms: 600,
            read_delay_ms: 1500,
            read_ratio: 0.6,
            failure_ratio: 0.0,
            undeliverable: Vec::new(),
            enforce_service_window: true,
            legacy_limit_webhooks: false,
            pair_rate_burst: 45,
            webhook_batch_ms: 100,
            webhook_attempts: 5,
            review_delay_ms: 30_000,
            contact_book: true,
            parent_bsuids: false,
            parent_field: "recipient_parent_user_id".to_owned(),
            no_number_event: "FINISH".to_owned(),
        }
    }
}

fn default_currency() -> String {
    "USD".to_owned()
}
fn default_timezone() -> String {
    "1".to_owned()
}
fn default_verification() -> String {
    "verified".to_owned()
}
fn default_review() -> String {
    "APPROVED".to_owned()
}
fn default_phone_status() -> String {
    "CONNECTED".to_owned()
}
fn default_quality() -> String {
    "GREEN".to_owned()
}
fn default_limit() -> String {
    "TIER_250".to_owned()
}
fn default_mps() -> u32 {
    80
}
fn default_code_verification() -> String {
    "VERIFIED".to_owned()
}

/// Ids of the demo world, so callers need not repeat literals.
pub mod demo_ids {
    pub const APP_ID: &str = "1234567890123456";
    /// The partner's (Parley operator's) business portfolio, `entry.id` of `account_update`.
    pub const PARTNER_BUSINESS_ID: &str = "1406375403650212";
    pub const BUSINESS_ID: &str = "2729063490586005";
    pub const WABA_ID: &str = "524126980791429";
    pub const PHONE_NUMBER_ID: &str = "106540352242922";
    pub const DISPLAY_PHONE_NUMBER: &str = "+1 555-010-0100";
    pub const ACCESS_TOKEN: &str = "EAAsandboxDemoBusinessToken";
    pub const VERIFY_TOKEN: &str = "parley-demo-verify";
    /// Not a secret worth keeping: the demo runs on a laptop against itself.
    pub const APP_SECRET: &str = "5a9d3c1e7b2f4a6d8c0e1f3a5b7d9c2e";
}

impl SandboxConfig {
    /// The world `parley demo` runs against: one business, one WABA, one number, three
    /// approved templates (see [`demo_templates`]).
    pub fn demo() -> SandboxConfig {
        SandboxConfig {
            app_id: demo_ids::APP_ID.to_owned(),
            app_name: "Parley".to_owned(),
            partner_business_id: demo_ids::PARTNER_BUSINESS_ID.to_owned(),
            app_secret: demo_ids::APP_SECRET.to_owned(),
            verify_token: demo_ids::VERIFY_TOKEN.to_owned(),
            graph_version: "v27.0".to_owned(),
            access_tokens: vec![demo_ids::ACCESS_TOKEN.to_owned()],
            webhook_url: None,
            businesses: vec![BusinessSeed {
                id: demo_ids::BUSINESS_ID.to_owned(),
                name: "Parley Demo Shop".to_owned(),
                website: Some("https://shop.example.com".to_owned()),
                country: Some("DE".to_owned()),
                address: None,
                verification_status: "verified".to_owned(),
                wabas: vec![WabaSeed {
                    id: demo_ids::WABA_ID.to_owned(),
                    name: "Parley Demo Shop".to_owned(),
                    currency: "EUR".to_owned(),
                    timezone_id: "1".to_owned(),
                    message_template_namespace: "c3f1a2b4_5d6e_4f70_8a9b_0c1d2e3f4a5b".to_owned(),
                    account_review_status: "APPROVED".to_owned(),
                    phone_numbers: vec![PhoneSeed {
                        id: demo_ids::PHONE_NUMBER_ID.to_owned(),
                        display_phone_number: demo_ids::DISPLAY_PHONE_NUMBER.to_owned(),
                        verified_name: "Parley Demo Shop".to_owned(),
                        name_status: "APPROVED".to_owned(),
                        status: "CONNECTED".to_owned(),
                        quality_rating: "GREEN".to_owned(),
                        messaging_limit: "TIER_250".to_owned(),
                        throughput_mps: 80,
                        code_verification_status: default_code_verification(),
                        is_on_biz_app: false,
                    }],
                    templates: demo_templates(),
                }],
            }],
            behaviour: Behaviour::default(),
        }
    }
}

/// The three approved demo templates, exactly as `GET /{waba}/message_templates` returns them.
/// Parley's demo data relies on their text.
pub fn demo_templates() -> Vec<Value> {
    vec![
        json!({
            "id": "1193422825532001",
            "name": "welcome",
            "language": "en",
            "category": "MARKETING",
            "status": "APPROVED",
            "parameter_format": "NAMED",
            "components": [
                {
                    "type": "BODY",
                    "text": "Hi {{first_name}}, welcome to Parley Demo Shop! Reply STOP to stop receiving offers.",
                    "example": {
                        "body_text_named_params": [
                            {"param_name": "first_name", "example": "Jessica"}
                        ]
                    }
                },
                {
                    "type": "FOOTER",
                    "text": "Parley Demo Shop"
                }
            ]
        }),
        json!({
            "id": "1193422825532002",
            "name": "spring_sale",
            "language": "en",
            "category": "MARKETING",
            "status": "APPROVED",
            "parameter_format": "POSITIONAL",
            "components": [
                {
                    "type": "HEADER",
                    "format": "IMAGE",
                    "example": {
                        "header_handle": ["https://scontent.whatsapp.net/v/t61.29466-34/sandbox/spring_sale.jpg"]
                    }
                },
                {
                    "type": "BODY",
                    "text": "Hi {{1}}, our spring sale is on: {{2}} off everything until {{3}}.",
                    "example": {
                        "body_text": [["Jessica", "20%", "May 31"]]
                    }
                },
                {
                    "type": "BUTTONS",
                    "buttons": [
                        {
                            "type": "URL",
                            "text": "Shop now",
                            "url": "https://shop.example.com/sale/{{1}}",
                            "example": ["https://shop.example.com/sale/spring"]
                        }
                    ]
                }
            ]
        }),
        json!({
            "id": "1193422825532003",
            "name": "order_update",
            "language": "en",
            "category": "UTILITY",
            "status": "APPROVED",
            "parameter_format": "NAMED",
            "components": [
                {
                    "type": "BODY",
                    "text": "Hi {{first_name}}, your order {{order_id}} has shipped and will arrive soon.",
                    "example": {
                        "body_text_named_params": [
                            {"param_name": "first_name", "example": "Jessica"},
                            {"param_name": "order_id", "example": "A-1042"}
                        ]
                    }
                }
            ]
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let printed = format!("{:?}", SandboxConfig::demo());
        assert!(!printed.contains(demo_ids::APP_SECRET));
        assert!(!printed.contains(demo_ids::ACCESS_TOKEN));
        assert!(!printed.contains(demo_ids::VERIFY_TOKEN));
        assert!(printed.contains(demo_ids::WABA_ID));
    }

    #[test]
    fn partial_config_falls_back_to_demo() {
        let config: SandboxConfig =
            serde_json::from_str(r#"{"behaviour":{"read_ratio":1.0}}"#).expect("parses");
        assert_eq!(config.behaviour.read_ratio, 1.0);
        assert_eq!(config.behaviour.sent_delay_ms, 200);
        assert_eq!(config.businesses.len(), 1);
    }
}
