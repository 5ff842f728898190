//! Meta Graph API client for the WhatsApp Cloud API: wire types, the HTTP client, the webhook
//! envelope and its signature check. The same client talks to Meta and to `parley-sandbox`.

pub mod analytics;
pub mod client;
pub mod coexistence;
pub mod error;
pub mod onboarding;
pub mod outbound;
pub mod pricing;
pub mod signature;
pub mod templates;
pub mod webhook;

pub use client::{
    Download, GraphClient, MediaInfo, Page, PhoneNumberInfo, SendResponse, WabaInfo,
    WabaMarketingStatus,
};
pub use error::{ApiError, GraphError};
pub use outbound::{
    MARKETING_TTL_SECONDS, Outbound, mark_read_body, marketing_message_body, media_message,
    reaction_message, template_message, template_message_body, text_message, text_message_body,
    typing_indicator_body,
};
pub use signature::{SIGNATURE_HEADER, sign, verify_signature};
pub use webhook::{
    AccountReviewValue, AccountUpdateValue, CapabilityValue, Change, DeliveryStatus, Entry,
    HistoryValue, InboundMessage, LimitTier, MessageEchoesValue, MessagesValue,
    PhoneNumberNameValue, PhoneNumberQualityValue, Profile, SharedContact, SharedPhone,
    StateSyncValue, StatusError, StatusUpdate, SystemChange, TemplateCategoryValue,
    TemplateComponentsValue, TemplateQualityValue, TemplateRef, TemplateStatusValue,
    UserPreferencesValue, WebhookChange, WebhookContact, WebhookPayload,
};

/// The Graph API version Parley speaks unless `meta.graph_version` says otherwise: Meta's
/// current version (v27.0, since 2026-11-04). Every call Parley makes reads the same on any
/// supported version (v21.0 on): the wire shapes Parley uses did not change between them.
pub const DEFAULT_GRAPH_VERSION: &str = "v27.0";

/// The oldest Graph API version Meta still serves (v20.0 was removed on 2026-09-24; v21.0
/// goes on 2027-01-21).
pub const OLDEST_GRAPH_VERSION: u32 = 21;

/// Checks a configured Graph API version: `vNN.0` with NN at least
/// [`OLDEST_GRAPH_VERSION`]. The error says what to write instead.
pub fn check_graph_version(version: &str) -> Result<(), String> {
    let help = || {
        format!(
            "Graph API version {version:?} is not one Meta serves: write it as vNN.0, from v{OLDEST_GRAPH_VERSION}.0 on (current: {DEFAULT_GRAPH_VERSION})"
        )
    };
    let rest = version.strip_prefix('v').ok_or_else(help)?;
    let (major, minor) = rest.split_once('.').ok_or_else(help)?;
    let major: u32 = major
        .parse()
        .ok()
        .filter(|_| major.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(help)?;
    if minor != "0" || major < OLDEST_GRAPH_VERSION {
        return Err(help());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_versions_pass_and_others_say_what_to_write() {
        for ok in ["v21.0", "v23.0", "v25.0", "v27.0", DEFAULT_GRAPH_VERSION] {
            assert_eq!(check_graph_version(ok), Ok(()), "{ok}");
        }
        for bad in [
            "v20.0", "v2.0", "27.0", "v27", "v27.1", "v+27.0", "", "vx.0",
        ] {
            let err = check_graph_version(bad).expect_err(bad);
            assert!(err.contains("v21.0") && err.contains("v27.0"), "{err}");
        }
    }
}
