//! Meta Graph error codes grouped by what the sender must do next, so each error is handled by
//! its class (META_API.md §4.7) instead of by scattered code checks.

use std::time::Duration;

/// What to do after a Graph API error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient trouble at Meta: retry the same message with exponential backoff.
    RetryBackoff,
    /// The phone number (or app/WABA) is over a rate limit: slow the whole number down.
    ThrottleNumber,
    /// Pair rate limit for one recipient: space messages to that recipient, others go on.
    ThrottleRecipient,
    /// Do not retry before this delay (per-user marketing limit: 24 h).
    RetryAfter(Duration),
    /// This message to this recipient will never succeed: fail it, move on.
    PermanentRecipient,
    /// The template is wrong or blocked: every send with it would fail, pause the campaign.
    PermanentTemplate,
    /// The number, token or account is unusable: stop sending from the number, ask for attention.
    StopNumber,
    /// The account reached its messaging limit at Meta (131064): no send from it can go for a
    /// while, whoever the recipient. Not the message's fault: keep it queued, hold the number's
    /// sends for [`MESSAGING_LIMIT_HOLD`] and pause its campaigns with the reason.
    MessagingLimit,
    /// 131062: this message cannot go to a business-scoped user id (BSUID) alone (one-tap,
    /// zero-tap or copy-code authentication templates, Direct Send authentication, marketing
    /// sends with a bid or optimization spec). The recipient did nothing wrong and nothing
    /// else is paused: fail this message with [`BSUID_UNSUPPORTED_EXPLANATION`].
    BsuidUnsupported,
    /// The user stopped marketing messages from this business (131050): fail the message and
    /// mark the contact opted out of marketing, with Meta as the source.
    MarketingOptOut,
    /// The WABA has `disable_marketing_messages_on_cloud_api` on (131063): no marketing
    /// template goes through `/messages` from any of its numbers. Keep the message, pause every
    /// marketing campaign of the WABA and say how to turn marketing back on.
    MarketingDisabled,
}

/// What Parley adds to Meta's text for 131062.
pub const BSUID_UNSUPPORTED_EXPLANATION: &str = "this message needs the customer's phone number, and Parley knows only their business-scoped user id (BSUID): Meta does not deliver authentication templates (and marketing sends with a price cap) to a BSUID. Ask the customer for their number (a REQUEST_CONTACT_INFO button), or send a different template.";

impl ErrorClass {
    /// True when the same message may be sent again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ErrorClass::RetryBackoff
                | ErrorClass::ThrottleNumber
                | ErrorClass::ThrottleRecipient
                | ErrorClass::RetryAfter(_)
                | ErrorClass::MessagingLimit
        )
    }

    /// Stable snake_case name for logs, metrics and storage.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::RetryBackoff => "retry_backoff",
            ErrorClass::ThrottleNumber => "throttle_number",
            ErrorClass::ThrottleRecipient => "throttle_recipient",
            ErrorClass::RetryAfter(_) => "retry_after",
            ErrorClass::PermanentRecipient => "permanent_recipient",
            ErrorClass::PermanentTemplate => "permanent_template",
            ErrorClass::StopNumber => "stop_number",
            ErrorClass::MessagingLimit => "messaging_limit",
            ErrorClass::BsuidUnsupported => "bsuid_unsupported",
            ErrorClass::MarketingOptOut => "marketing_opt_out",
            ErrorClass::MarketingDisabled => "marketing_disabled",
        }
    }
}

/// The per-user marketing limit (131049) asks for at least 24 h before resending.
pub const MARKETING_LIMIT_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a number's sends wait after Meta said the account reached its messaging limit
/// (131064). Meta lifts the limit after an enforcement period it does not publish; the
/// portfolio's reach limit frees slots as its moving 24 h passes. An hour, then try again.
pub const MESSAGING_LIMIT_HOLD: Duration = Duration::from_secs(60 * 60);

/// Classifies a Graph error `code` (never the deprecated `error_subcode`).
pub fn classify(code: i64) -> ErrorClass {
    match code {
        // Unknown/temporary errors and downtime at Meta: "try again" is Meta's own advice.
        1 | 2 | 131000 | 131016 | 133004 => ErrorClass::RetryBackoff,
        // Throughput (130429), app (4) and WABA (80007) rate limits, and maintenance during a
        // throughput upgrade (131057): the number as a whole must slow down.
        4 | 80007 | 130429 | 131057 => ErrorClass::ThrottleNumber,
        // One message per 6 s to the same user; other recipients are unaffected.
        131056 => ErrorClass::ThrottleRecipient,
        // Per-user marketing limit: Meta says not before 24 hours.
        131049 => ErrorClass::RetryAfter(MARKETING_LIMIT_DELAY),
        // "This account has reached its messaging limit … This applies to both template
        // messages and direct send messages" (Meta; the sandbox answers it over the portfolio's
        // reach limit): the account, not the recipient, so nothing is failed.
        131064 => ErrorClass::MessagingLimit,
        // "Business-scoped User ID (BSUID) recipients are not supported for this message."
        131062 => ErrorClass::BsuidUnsupported,
        // Template missing, paused, disabled, or its parameters do not fit: every send with it
        // fails the same way, so stop the campaign rather than burn through the audience.
        // 132015: the template was paused (also: held sends dropped by template pacing);
        // 135000: portfolio pacing dropped the send (META_2026 §6.3): stop the campaign too.
        // 131061: a template with a max price (`optimization_spec`) sent through the Cloud API
        // `/messages`: it goes only through the Marketing Messages API (META_2026 §7).
        131061 | 132000 | 132001 | 132005 | 132007 | 132012 | 132015 | 132016 | 132068 | 135000 => {
            ErrorClass::PermanentTemplate
        }
        // The user stopped marketing messages (META_2026 §6.2).
        131050 => ErrorClass::MarketingOptOut,
        // Marketing templates disabled for Cloud API on the WABA (META_2026 §7).
        131063 => ErrorClass::MarketingDisabled,
        // Authentication, permissions, policy blocks, locked or unregistered numbers, billing,
        // deleted number (33): nothing sent from this number can succeed until a human acts.
        0
        | 3
        | 10
        | 33
        | 190
        | 200..=299
        | 368
        | 131005
        | 131031
        | 131042
        | 131045
        | 131048
        | 133010 => ErrorClass::StopNumber,
        // Everything else concerns this message or recipient (not on WhatsApp 131026, outside
        // the window 131047, bad parameter 100/131008/131009…).
        _ => ErrorClass::PermanentRecipient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_meta_api_notes() {
        for c in [131000, 131016, 1, 2, 133004] {
            assert_eq!(classify(c), ErrorClass::RetryBackoff, "{c}");
        }
        for c in [130429, 4, 80007, 131057] {
            assert_eq!(classify(c), ErrorClass::ThrottleNumber, "{c}");
        }
        assert_eq!(classify(131056), ErrorClass::ThrottleRecipient);
        assert_eq!(classify(131064), ErrorClass::MessagingLimit);
        assert_eq!(classify(131050), ErrorClass::MarketingOptOut);
        assert_eq!(classify(131063), ErrorClass::MarketingDisabled);
        // A max-price template through `/messages`: every send with it fails (META_2026 §7).
        assert_eq!(classify(131061), ErrorClass::PermanentTemplate);
        assert_eq!(
            classify(131049),
            ErrorClass::RetryAfter(Duration::from_secs(86_400))
        );
        for c in [
            132000, 132001, 132005, 132007, 132012, 132015, 132016, 132068, 135000,
        ] {
            assert_eq!(classify(c), ErrorClass::PermanentTemplate, "{c}");
        }
        for c in [
            0, 3, 10, 190, 200, 250, 299, 368, 131031, 131042, 131045, 131048, 133010, 131005,
        ] {
            assert_eq!(classify(c), ErrorClass::StopNumber, "{c}");
        }
        for c in [
            131026, 131047, 131021, 131051, 130472, 100, 131008, 131009, -1, 300,
        ] {
            assert_eq!(classify(c), ErrorClass::PermanentRecipient, "{c}");
        }
    }

    #[test]
    fn retryable_classes() {
        assert!(classify(130429).is_retryable());
        assert!(classify(131049).is_retryable());
        assert!(classify(131064).is_retryable());
        assert_eq!(classify(131064).as_str(), "messaging_limit");
        assert!(!classify(131026).is_retryable());
        assert!(!classify(132001).is_retryable());
        assert!(!classify(190).is_retryable());
        assert_eq!(classify(131056).as_str(), "throttle_recipient");
        assert_eq!(classify(131062), ErrorClass::BsuidUnsupported);
        assert!(!classify(131062).is_retryable());
        assert_eq!(classify(131062).as_str(), "bsuid_unsupported");
    }
}
