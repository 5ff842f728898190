//! Identifiers. Our own rows get prefixed, time-sortable ids (`msg_…`) so an id read in a
//! log or a URL says what it names; Meta's ids are digit strings we only check and carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An identifier that did not parse; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a {what}: expected {expected}")]
pub struct IdError {
    input: String,
    what: &'static str,
    expected: &'static str,
}

impl IdError {
    fn new(input: &str, what: &'static str, expected: &'static str) -> Self {
        Self {
            input: crate::excerpt(input).into_owned(),
            what,
            expected,
        }
    }

    /// What kind of id was expected, e.g. "message id".
    pub fn what(&self) -> &'static str {
        self.what
    }
}

macro_rules! string_id_common {
    ($name:ident) => {
        impl $name {
            /// The id as text, exactly as stored and sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Consumes the id, returning its text.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id: the prefix followed by a UUID v7 in 32 lowercase hex digits, so ids
            /// sort by creation time.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self::from_uuid(uuid::Uuid::now_v7())
            }

            /// The id naming this UUID.
            pub fn from_uuid(uuid: uuid::Uuid) -> Self {
                let mut s = String::with_capacity($prefix.len() + 32);
                s.push_str($prefix);
                s.push_str(uuid.simple().encode_lower(&mut uuid::Uuid::encode_buffer()));
                Self(s)
            }

            /// Parses `msg_0190…`-style text; upper-case hex is accepted and lower-cased.
            pub fn parse(input: &str) -> Result<Self, IdError> {
                parse_prefixed(input, $prefix)
                    .map(Self)
                    .ok_or_else(|| {
                        IdError::new(
                            input,
                            $what,
                            concat!("`", $prefix, "` followed by 32 hex characters"),
                        )
                    })
            }

            /// The UUID inside the id.
            pub fn uuid(&self) -> uuid::Uuid {
                // Parsed ids always hold 32 hex digits after the prefix.
                uuid::Uuid::try_parse(&self.0[$prefix.len()..]).unwrap_or_default()
            }
        }

        string_id_common!($name);
    };
}

fn parse_prefixed(input: &str, prefix: &str) -> Option<String> {
    let hex = input.strip_prefix(prefix)?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // One allocation: ids are read back by the thousand (claims, webhooks) and are stored
    // lowercase already.
    let mut s = input.to_owned();
    s[prefix.len()..].make_ascii_lowercase();
    Some(s)
}

prefixed_id!(
    /// One message we send or receive (`msg_…`); also sent to Meta as `biz_opaque_callback_data`.
    MessageId, "msg_", "message id"
);
prefixed_id!(
    /// An application: one tenant of Parley with its API keys (`app_…`).
    ApplicationId, "app_", "application id"
);
prefixed_id!(
    /// A WhatsApp Business Account connected to Parley (`acc_…`).
    AccountId, "acc_", "account id"
);
prefixed_id!(
    /// A contact: one recipient with tags (`ctc_…`).
    ContactId, "ctc_", "contact id"
);
prefixed_id!(
    /// A campaign: one template sent to a segment (`cmp_…`).
    CampaignId, "cmp_", "campaign id"
);
prefixed_id!(
    /// A platform: one connected phone number with its credentials (`plt_…`).
    PlatformId, "plt_", "platform id"
);
prefixed_id!(
    /// A template as stored by Parley (`tpl_…`), not Meta's numeric template id.
    TemplateId, "tpl_", "template id"
);
prefixed_id!(
    /// A console user (`usr_…`).
    UserId, "usr_", "user id"
);
prefixed_id!(
    /// One raw webhook delivery as received from Meta (`evt_…`).
    WebhookEventId, "evt_", "webhook event id"
);
prefixed_id!(
    /// A saved segment: a named filter over contact tags (`seg_…`).
    SegmentId, "seg_", "segment id"
);
prefixed_id!(
    /// One contact import (CSV or NDJSON) and its progress (`imp_…`).
    ImportId, "imp_", "import id"
);
prefixed_id!(
    /// An API token of an application (`tok_…`); the secret itself is never stored.
    TokenId, "tok_", "token id"
);
prefixed_id!(
    /// One entry of an application's audit log (`aud_…`).
    AuditEntryId, "aud_", "audit entry id"
);
prefixed_id!(
    /// An endpoint an application registered for event webhooks (`ep_…`).
    EventEndpointId, "ep_", "event endpoint id"
);
prefixed_id!(
    /// One event for the business's systems (`ev_…`): the `webhook-id` every delivery of it
    /// carries, so a receiver can drop a repeat.
    EventId, "ev_", "event id"
);
prefixed_id!(
    /// One event's delivery to one endpoint, with its attempts (`dlv_…`).
    DeliveryId, "dlv_", "delivery id"
);

macro_rules! digit_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses Meta's id: 1 to 32 ASCII digits.
            pub fn parse(input: &str) -> Result<Self, IdError> {
                if !input.is_empty() && input.len() <= 32 && input.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(Self(input.to_owned()))
                } else {
                    Err(IdError::new(input, $what, "1 to 32 digits, as Meta shows it"))
                }
            }

            /// For digits this crate has already validated.
            #[allow(dead_code)]
            pub(crate) fn from_canonical(digits: &str) -> Self {
                Self(digits.to_owned())
            }
        }

        string_id_common!($name);
    };
}

digit_id!(
    /// Meta's id of a business phone number, used in `POST /{phone-number-id}/messages`.
    PhoneNumberId, "phone number id"
);
digit_id!(
    /// Meta's id of a WhatsApp Business Account.
    WabaId, "WhatsApp Business Account id"
);
digit_id!(
    /// Meta's id of a business portfolio.
    BusinessId, "business id"
);
digit_id!(
    /// A WhatsApp user's id: the phone number's digits without `+` as Meta reports it.
    WaId, "WhatsApp user id (wa_id)"
);

/// Meta's id of one message (`wamid.…`); opaque, so only its size is checked.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Wamid(String);

impl Wamid {
    /// Accepts any non-empty text of at most 512 bytes.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        if !input.is_empty() && input.len() <= 512 {
            Ok(Self(input.to_owned()))
        } else {
            Err(IdError::new(
                input,
                "WhatsApp message id (wamid)",
                "non-empty text of at most 512 bytes",
            ))
        }
    }
}

string_id_common!(Wamid);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn new_ids_parse_back_and_sort_by_time() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(a.as_str().starts_with("msg_"));
        assert_eq!(a.as_str().len(), 36);
        assert_eq!(MessageId::parse(a.as_str()).unwrap(), a);
        assert!(a < b);
        assert_eq!(MessageId::from_uuid(a.uuid()), a);
    }

    #[test]
    fn wrong_prefix_or_length_is_rejected_with_a_helpful_message() {
        let err = MessageId::parse("foo").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`foo` is not a message id: expected `msg_` followed by 32 hex characters"
        );
        let cmp = CampaignId::new();
        assert!(MessageId::parse(cmp.as_str()).is_err());
        assert!(MessageId::parse("msg_0123").is_err());
        assert!(MessageId::parse("msg_0123456789abcdef0123456789abcdeg").is_err());
        assert!(MessageId::parse("msg_0123456789abcdef0123456789abcdéf").is_err());
    }

    #[test]
    fn upper_case_hex_is_normalized() {
        let id = ContactId::parse("ctc_0123456789ABCDEF0123456789abcdef").unwrap();
        assert_eq!(id.as_str(), "ctc_0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn serde_is_a_validated_string() {
        let id = CampaignId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<CampaignId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<CampaignId>("\"cmp_nope\"").is_err());
        assert!(serde_json::from_str::<CampaignId>(&format!("\"{}\"", MessageId::new())).is_err());
    }

    #[test]
    fn meta_ids_are_digit_strings() {
        assert_eq!(
            PhoneNumberId::parse("106540352242922").unwrap().as_str(),
            "106540352242922"
        );
        assert!(WabaId::parse("").is_err());
        assert!(WabaId::parse("12a").is_err());
        assert!(WaId::parse(&"1".repeat(33)).is_err());
        let err = BusinessId::parse("x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`x` is not a business id: expected 1 to 32 digits, as Meta shows it"
        );
        assert_eq!(
            serde_json::from_str::<WaId>("\"4915112345678\"")
                .unwrap()
                .as_str(),
            "4915112345678"
        );
        assert!(serde_json::from_str::<WaId>("\"+49\"").is_err());
    }

    #[test]
    fn wamid_is_opaque_but_bounded() {
        assert!(Wamid::parse("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA").is_ok());
        assert!(Wamid::parse("").is_err());
        assert!(Wamid::parse(&"w".repeat(513)).is_err());
    }

    #[test]
    fn long_input_is_shortened_in_errors() {
        let err = MessageId::parse(&"x".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 200);
    }

    /// What every prefixed id offers, for checks over all of them.
    trait Prefixed: Sized + PartialEq + fmt::Debug + fmt::Display + Ord + Serialize {
        const P: &'static str;
        fn parse_id(s: &str) -> Result<Self, IdError>;
        fn of_uuid(u: uuid::Uuid) -> Self;
        fn inner(&self) -> uuid::Uuid;
        fn text(&self) -> &str;
    }

    macro_rules! prefixed {
        ($($t:ident),*) => {$(
            impl Prefixed for $t {
                const P: &'static str = $t::PREFIX;
                fn parse_id(s: &str) -> Result<Self, IdError> { $t::parse(s) }
                fn of_uuid(u: uuid::Uuid) -> Self { $t::from_uuid(u) }
                fn inner(&self) -> uuid::Uuid { self.uuid() }
                fn text(&self) -> &str { self.as_str() }
            }
        )*};
    }
    prefixed!(
        MessageId,
        ApplicationId,
        AccountId,
        ContactId,
        CampaignId,
        PlatformId,
        TemplateId,
        UserId,
        WebhookEventId,
        SegmentId,
        ImportId
    );

    fn hex_case(hex: &str, upper: &[bool]) -> String {
        hex.chars()
            .zip(upper.iter().cycle())
            .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c })
            .collect()
    }

    proptest! {
        /// An id names its UUID: printed, parsed (in any hex case) and through JSON it is the
        /// same id, and ids sort as their UUIDs do (so v7 ids sort by time).
        #[test]
        fn prefixed_ids_round_trip(a in any::<u128>(), b in any::<u128>(), upper in prop::collection::vec(any::<bool>(), 1..8)) {
            let (ua, ub) = (uuid::Uuid::from_u128(a), uuid::Uuid::from_u128(b));
            let check = || -> Result<(), TestCaseError> {
                fn one<T: Prefixed>(ua: uuid::Uuid, ub: uuid::Uuid, upper: &[bool]) -> Result<(), TestCaseError> {
                    let id = T::of_uuid(ua);
                    prop_assert_eq!(id.text(), format!("{}{}", T::P, ua.simple()));
                    prop_assert_eq!(id.to_string(), id.text());
                    prop_assert_eq!(T::parse_id(&id.to_string())?, T::of_uuid(ua));
                    prop_assert_eq!(id.inner(), ua);
                    let shouted = format!("{}{}", T::P, hex_case(&ua.simple().to_string(), upper));
                    prop_assert_eq!(T::parse_id(&shouted)?, T::of_uuid(ua));
                    let json = serde_json::to_string(&id).expect("json");
                    prop_assert_eq!(json, format!("\"{}\"", id.text()));
                    prop_assert_eq!(T::of_uuid(ua).cmp(&T::of_uuid(ub)), ua.cmp(&ub));
                    Ok(())
                }
                let go = |f: fn(uuid::Uuid, uuid::Uuid, &[bool]) -> Result<(), TestCaseError>| f(ua, ub, &upper);
                go(one::<MessageId>)?;
                go(one::<ApplicationId>)?;
                go(one::<AccountId>)?;
                go(one::<ContactId>)?;
                go(one::<CampaignId>)?;
                go(one::<PlatformId>)?;
                go(one::<TemplateId>)?;
                go(one::<UserId>)?;
                go(one::<WebhookEventId>)?;
                go(one::<SegmentId>)?;
                go(one::<ImportId>)?;
                Ok(())
            };
            check()?;
        }

        /// Text is an id exactly when it is the prefix and 32 hex digits; errors stay short.
        #[test]
        fn prefixed_ids_accept_exactly_prefix_and_32_hex(
            s in "(msg_|cmp_|ctc_|MSG_|msg-|)[0-9a-fA-FgG\u{e9}_ ]{0,34}|\\PC{0,40}",
        ) {
            let expected = |prefix: &str| {
                s.strip_prefix(prefix).is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            };
            let check = || -> Result<(), TestCaseError> {
                fn one<T: Prefixed>(s: &str, expected: bool) -> Result<(), TestCaseError> {
                    match T::parse_id(s) {
                        Ok(id) => {
                            prop_assert!(expected, "{:?} parsed as {:?}", s, id);
                            prop_assert_eq!(id.text(), s.to_ascii_lowercase());
                        }
                        Err(e) => {
                            prop_assert!(!expected, "{:?} refused: {}", s, e);
                            prop_assert!(e.to_string().len() < 400);
                        }
                    }
                    Ok(())
                }
                one::<MessageId>(&s, expected(MessageId::PREFIX))?;
                one::<CampaignId>(&s, expected(CampaignId::PREFIX))?;
                one::<ContactId>(&s, expected(ContactId::PREFIX))?;
                Ok(())
            };
            check()?;
        }

        /// Meta's ids: 1 to 32 ASCII digits, kept as written; wamids: 1 to 512 bytes.
        #[test]
        fn meta_ids_accept_exactly_what_they_say(s in "[0-9]{0,34}|[0-9 +a\u{664}]{0,6}|\\PC{0,20}", n in 0usize..600) {
            let digits = !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit());
            for parsed in [
                PhoneNumberId::parse(&s).map(|i| i.to_string()),
                WabaId::parse(&s).map(|i| i.to_string()),
                BusinessId::parse(&s).map(|i| i.to_string()),
                WaId::parse(&s).map(|i| i.to_string()),
            ] {
                match parsed {
                    Ok(text) => prop_assert!(digits && text == s),
                    Err(e) => prop_assert!(!digits && e.to_string().len() < 400),
                }
            }
            let long = "w".repeat(n);
            prop_assert_eq!(Wamid::parse(&long).is_ok(), (1..=512).contains(&n));
            if let Ok(w) = Wamid::parse(&s) {
                prop_assert_eq!(w.as_str(), s.as_str());
                prop_assert_eq!(serde_json::from_str::<Wamid>(&serde_json::to_string(&w).expect("json")).expect("back"), w);
            }
        }
    }
}
