//! Business-scoped user ids (BSUID, META_2026 §3): how Meta names a WhatsApp user to one
//! business portfolio, with or without their phone number. `US.13491208655302741918`; a parent
//! BSUID (shared across enrolled portfolios) carries `ENT`: `US.ENT.11815799212886844830`.
//!
//! Validation is loose on purpose (§3.6): Meta's own example once had a typo (`uUS.1349…`) and
//! an id must be passed back byte-exact, so anything printable is accepted and only
//! [`Bsuid::is_well_formed`] tells whether it looks like Meta's documented shape (the caller
//! logs when it does not).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest id accepted: two letters, a dot, `ENT.`, then Meta's up to 128 alphanumerics,
/// with room to spare.
pub const MAX_BSUID_LEN: usize = 160;

/// A BSUID or parent BSUID as Meta sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Bsuid(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BsuidError {
    #[error("a business-scoped user id (BSUID) cannot be empty")]
    Empty,
    #[error("a business-scoped user id (BSUID) is at most {MAX_BSUID_LEN} characters")]
    TooLong,
    #[error(
        "`{0}` is not a business-scoped user id (BSUID): it has spaces or control characters; BSUIDs look like `US.13491208655302741918`"
    )]
    BadCharacters(String),
    #[error(
        "`{0}` is not a business-scoped user id (BSUID): a BSUID has a country code and a dot, like `US.13491208655302741918`"
    )]
    NoCountry(String),
}

impl Bsuid {
    /// Accepts any printable id without spaces of at most [`MAX_BSUID_LEN`] characters that
    /// contains a dot (so an id can never be read as a phone number).
    pub fn parse(s: &str) -> Result<Bsuid, BsuidError> {
        if s.is_empty() {
            return Err(BsuidError::Empty);
        }
        if s.len() > MAX_BSUID_LEN {
            return Err(BsuidError::TooLong);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(BsuidError::BadCharacters(crate::excerpt(s).into_owned()));
        }
        if !s.contains('.') || s.starts_with('+') {
            return Err(BsuidError::NoCountry(crate::excerpt(s).into_owned()));
        }
        Ok(Bsuid(s.to_owned()))
    }

    /// True for Meta's documented shape, `^[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}$`.
    pub fn is_well_formed(&self) -> bool {
        let s = self.0.as_bytes();
        if s.len() < 4 || !s[0].is_ascii_uppercase() || !s[1].is_ascii_uppercase() || s[2] != b'.' {
            return false;
        }
        let rest = &self.0[3..];
        let rest = rest.strip_prefix("ENT.").unwrap_or(rest);
        (1..=128).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    /// A parent BSUID (`CC.ENT.…`).
    pub fn is_parent(&self) -> bool {
        self.0.get(2..7) == Some(".ENT.")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Bsuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bsuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Bsuid::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// True when a recipient address names a BSUID rather than a phone number: E.164 numbers
/// start with `+` and `wa_id`s are digits, a BSUID always has a dot.
pub fn is_bsuid_address(address: &str) -> bool {
    !address.starts_with('+') && address.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_ids_are_well_formed() {
        for id in [
            "US.13491208655302741918",
            "US.ENT.11815799212886844830",
            "IL.831795919964525",
        ] {
            let b = Bsuid::parse(id).unwrap();
            assert!(b.is_well_formed(), "{id}");
            assert_eq!(b.as_str(), id);
        }
        assert!(
            Bsuid::parse("US.ENT.11815799212886844830")
                .unwrap()
                .is_parent()
        );
        assert!(!Bsuid::parse("US.13491208655302741918").unwrap().is_parent());
    }

    #[test]
    fn metas_typo_is_kept_but_flagged() {
        let b = Bsuid::parse("uUS.13491208655302741918").unwrap();
        assert!(!b.is_well_formed());
        assert_eq!(b.as_str(), "uUS.13491208655302741918");
    }

    #[test]
    fn phones_blanks_and_oversized_ids_are_refused() {
        assert_eq!(Bsuid::parse(""), Err(BsuidError::Empty));
        assert!(matches!(
            Bsuid::parse("+4915112345678"),
            Err(BsuidError::NoCountry(_))
        ));
        assert!(matches!(
            Bsuid::parse("4915112345678"),
            Err(BsuidError::NoCountry(_))
        ));
        assert!(matches!(
            Bsuid::parse("US. 1"),
            Err(BsuidError::BadCharacters(_))
        ));
        assert_eq!(
            Bsuid::parse(&format!("US.{}", "1".repeat(200))),
            Err(BsuidError::TooLong)
        );
    }

    #[test]
    fn addresses_tell_phones_from_bsuids() {
        assert!(is_bsuid_address("US.13491208655302741918"));
        assert!(!is_bsuid_address("+4915112345678"));
        assert!(!is_bsuid_address("4915112345678"));
    }
}
