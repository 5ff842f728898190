//! International phone numbers. Parsed once at import with the `phonenumber` crate and stored in
//! canonical E.164, so the sending path never re-validates and compares numbers as plain text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const EXAMPLE: &str = "+4915112345678";

/// Why a phone number was refused; each message tells the user how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error(
        "the phone number is empty: write it in E.164 form with the country code, e.g. {EXAMPLE}"
    )]
    Empty,
    #[error(
        "`{0}` is not an international phone number: write it in E.164 form with the country code, e.g. {EXAMPLE}"
    )]
    NotInternational(String),
    #[error(
        "`{0}` contains characters that are not part of a phone number: use digits after a leading +, e.g. {EXAMPLE}"
    )]
    BadCharacters(String),
    #[error(
        "`{0}` is not a valid phone number: check the country code and the number of digits, e.g. {EXAMPLE}"
    )]
    Invalid(String),
    #[error(
        "`{0}` is not a valid phone number in {1} (the default country) nor an international one: check the digits, or write it with the country code, e.g. {EXAMPLE}"
    )]
    InvalidIn(String, &'static str),
}

/// A country whose numbers may be written the local way ("8 (916) 123-45-67" in Russia,
/// "0151 23456789" in Germany, "(415) 555-0132" in the US): an import's default country.
/// Two letters, ISO 3166-1 (`RU`, `DE`, `US`), known to the numbering-plan metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(phonenumber::country::Id);

impl Region {
    pub fn parse(input: &str) -> Result<Region, String> {
        let code = input.trim().to_ascii_uppercase();
        let bad = || {
            format!(
                "`{}` is not a country Parley knows phone numbers of: give its two-letter ISO code, e.g. DE, RU or US",
                crate::excerpt(input.trim())
            )
        };
        if code.len() != 2 {
            return Err(bad());
        }
        let id: phonenumber::country::Id = code.parse().map_err(|_| bad())?;
        // An id the metadata has no plan for cannot parse a national number.
        phonenumber::metadata::DATABASE
            .by_id(id.as_ref())
            .ok_or_else(bad)?;
        Ok(Region(id))
    }

    /// "DE".
    pub fn as_str(&self) -> &'static str {
        // `Id`'s names are its two-letter codes.
        match phonenumber::metadata::DATABASE.by_id(self.0.as_ref()) {
            Some(m) => m.id(),
            None => "??",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid phone number in canonical E.164 form, `+` followed by digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses "+49 151 1234-5678", "(+49) 15112345678" or "004915112345678".
    /// A leading `+` or `00` is required: there is no default region to guess from.
    pub fn parse(input: &str) -> Result<E164, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty);
        }
        let shown = || crate::excerpt(trimmed).into_owned();
        // "+44 (0) 20 7946 0958": the bracketed trunk prefix is not dialled internationally.
        let without_trunk;
        let cleaned = if trimmed.contains("(0)") {
            without_trunk = trimmed.replace("(0)", "");
            without_trunk.as_str()
        } else {
            trimmed
        };
        // Strip the punctuation people write numbers with; everything else must be a digit.
        let mut digits = String::with_capacity(trimmed.len());
        let mut plus = false;
        for c in cleaned.chars() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if digits.is_empty() && !plus => plus = true,
                ' ' | '-' | '(' | ')' | '.' | '/' | '\u{a0}' => {}
                _ => return Err(PhoneError::BadCharacters(shown())),
            }
        }
        if !plus {
            match digits.strip_prefix("00") {
                Some(rest) => digits = rest.to_owned(),
                None => return Err(PhoneError::NotInternational(shown())),
            }
        }
        Self::from_digits(&digits).ok_or_else(|| PhoneError::Invalid(shown()))
    }

    /// Parses a number that may be written the local way of `region` (an import's default
    /// country): a number with `+` or `00` is international and read as [`E164::parse`] reads
    /// it, whatever the region; any other is read as a national number of the region (its
    /// trunk prefix, `8` in Russia or `0` in Germany, dropped); digits alone that are no valid
    /// national number are tried as an international number that lost its `+` (a spreadsheet
    /// that stored it as a number). Without a region this is [`E164::parse`].
    pub fn parse_in(input: &str, region: Option<Region>) -> Result<E164, PhoneError> {
        let Some(region) = region else {
            return Self::parse(input);
        };
        let trimmed = input.trim();
        let international = trimmed
            .trim_start_matches(['(', ' ', '\u{a0}'])
            .starts_with(['+'])
            || trimmed.starts_with("00");
        if trimmed.is_empty() || international {
            return Self::parse(input);
        }
        let shown = || crate::excerpt(trimmed).into_owned();
        let mut digits = String::with_capacity(trimmed.len());
        for c in trimmed.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '(' | ')' | '.' | '/' | '\u{a0}' => {}
                _ => return Err(PhoneError::BadCharacters(shown())),
            }
        }
        // A national number has at most 17 digits with its trunk prefix; more is not a number.
        if digits.len() < 3 || digits.len() > 17 {
            return Err(PhoneError::InvalidIn(shown(), region.as_str()));
        }
        // What the national reading gives must be a number `parse` keeps as it is (the
        // metadata takes some numbers longer than E.164's 15 digits).
        let national = phonenumber::parse(Some(region.0), &digits)
            .ok()
            .filter(phonenumber::is_valid)
            .map(|n| n.format().mode(phonenumber::Mode::E164).to_string())
            .and_then(|c| Self::from_digits(c.strip_prefix('+')?));
        match national {
            Some(number) => Ok(number),
            None => Self::from_digits(&digits)
                .ok_or_else(|| PhoneError::InvalidIn(shown(), region.as_str())),
        }
    }

    /// A number Parley stored after `parse` (a contact's phone): when it has the canonical
    /// shape (`+`, then 8 to 15 digits, the first not 0) it is taken as it is, without the
    /// numbering-plan check again (~10 µs a number, the most a campaign planner spent per
    /// recipient); anything else goes through `parse`.
    pub fn from_stored(stored: &str) -> Result<E164, PhoneError> {
        let canonical = stored.strip_prefix('+').is_some_and(|d| {
            (8..=15).contains(&d.len())
                && d.bytes().all(|b| b.is_ascii_digit())
                && !d.starts_with('0')
        });
        if canonical {
            Ok(E164(stored.to_owned()))
        } else {
            Self::parse(stored)
        }
    }

    /// Builds the number from Meta's `wa_id` (digits only, no `+`).
    pub fn from_wa_id(wa_id: &str) -> Result<E164, PhoneError> {
        if wa_id.is_empty() {
            return Err(PhoneError::Empty);
        }
        if !wa_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneError::BadCharacters(
                crate::excerpt(wa_id).into_owned(),
            ));
        }
        Self::from_digits(wa_id)
            .ok_or_else(|| PhoneError::Invalid(crate::excerpt(wa_id).into_owned()))
    }

    /// Validates country code + national digits; `None` when not a valid number.
    fn from_digits(digits: &str) -> Option<E164> {
        // E.164 allows at most 15 digits; checking first also keeps odd input away from the parser.
        if digits.len() < 4 || digits.len() > 15 || digits.starts_with('0') {
            return None;
        }
        let mut candidate = String::with_capacity(digits.len() + 1);
        candidate.push('+');
        candidate.push_str(digits);
        let number = phonenumber::parse(None, &candidate).ok()?;
        if !phonenumber::is_valid(&number) {
            return None;
        }
        let canonical = number.format().mode(phonenumber::Mode::E164).to_string();
        if canonical.len() < 2 || !canonical[1..].bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(E164(canonical))
    }

    /// "+4915112345678".
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// "4915112345678": the digits without `+`, Meta's `wa_id` form.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// The number as Meta's `wa_id`.
    pub fn wa_id(&self) -> crate::WaId {
        // Canonical digits are 1..=15 ASCII digits, always a valid WaId.
        crate::WaId::parse(self.digits())
            .unwrap_or_else(|_| unreachable!("E164 digits are a valid wa_id"))
    }
}

/// Parses one number so the `phonenumber` metadata (about 140 ms to load) is ready before the
/// first real request needs it.
pub fn warm_up() {
    let _ = E164::parse(EXAMPLE);
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({:?})", self.0)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for E164 {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, PhoneError> {
        Self::parse(s)
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The country (ISO 3166 alpha-2, like "DE") of a message's address, for statistics: an E.164
/// number's region, a BSUID's country prefix (`US.1349…`); `None` when neither tells.
pub fn country_of(address: &str) -> Option<String> {
    if let Some((prefix, _)) = address.split_once('.') {
        return (prefix.len() == 2 && prefix.bytes().all(|b| b.is_ascii_uppercase()))
            .then(|| prefix.to_owned());
    }
    let digits = address.strip_prefix('+').unwrap_or(address);
    if digits.len() < 4 || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = phonenumber::parse(None, format!("+{digits}")).ok()?;
    let id = number.country().id()?;
    Some(format!("{id:?}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn countries_of_addresses() {
        assert_eq!(country_of("+4915112345678").as_deref(), Some("DE"));
        assert_eq!(country_of("14155550132").as_deref(), Some("US"));
        assert_eq!(country_of("US.13491208655302741918").as_deref(), Some("US"));
        assert_eq!(country_of("not a number"), None);
        assert_eq!(country_of(""), None);
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stored_numbers_in_canonical_shape_are_taken_as_they_are() {
        assert_eq!(
            E164::from_stored("+4915112345678")
                .expect("canonical")
                .as_str(),
            "+4915112345678"
        );
        // Not canonical: parsed (and refused) like any input.
        assert_eq!(
            E164::from_stored("+49 151 12345678")
                .expect("parsed")
                .as_str(),
            "+4915112345678"
        );
        assert!(E164::from_stored("+0123").is_err());
        assert!(E164::from_stored("4915112345678").is_err());
        assert!(E164::from_stored("").is_err());
    }

    proptest! {
        /// Whatever `parse` returns, `from_stored` gives back unchanged.
        #[test]
        fn what_parse_stores_from_stored_keeps(
            (prefix, rest) in prop::sample::select(vec![
                ("49151", 8usize), ("336", 8), ("9198", 8), ("8613", 9), ("7916", 7), ("1650253", 4),
            ]).prop_flat_map(|(p, len)| (Just(p), prop::collection::vec(0u8..10, len))),
        ) {
            // Numbers of real plans, so that they parse (random digits almost never did, and
            // the `if let Ok` around the assertion then tested nothing); too many rejects
            // fail the property.
            let digits: String = rest.iter().map(|d| char::from(b'0' + d)).collect();
            let parsed = E164::parse(&format!("+{prefix}{digits}"));
            prop_assume!(parsed.is_ok());
            let p = parsed.expect("assumed");
            prop_assert_eq!(E164::from_stored(p.as_str()).expect("stored"), p);
        }
    }

    #[test]
    fn accepts_common_international_spellings() {
        for input in [
            "+4915112345678",
            "+49 151 12345678",
            "+49 (151) 1234-5678",
            "004915112345678",
            "  +49-151-123-456-78 ",
            "+49 (0) 151 12345678",
            "+49/151.12345678",
        ] {
            let n = E164::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(n.as_str(), "+4915112345678");
            assert_eq!(n.digits(), "4915112345678");
        }
        assert_eq!(
            E164::parse("+1 (202) 456-1111").unwrap().as_str(),
            "+12024561111"
        );
    }

    #[test]
    fn local_spellings_read_with_a_default_country() {
        let ru = Some(Region::parse("ru").expect("RU"));
        let de = Some(Region::parse("DE").expect("DE"));
        let us = Some(Region::parse("US").expect("US"));
        let cases = [
            ("8 (916) 123-45-67", ru, "+79161234567"),
            ("8-916-123-45-67", ru, "+79161234567"),
            ("0151 23456789", de, "+4915123456789"),
            ("0151/234.567-89", de, "+4915123456789"),
            ("(415) 555-0132", us, "+14155550132"),
            ("415.555.0132", us, "+14155550132"),
            // E.164 wins over the default country.
            ("+4915123456789", us, "+4915123456789"),
            ("0049 151 23456789", ru, "+4915123456789"),
            // Digits that lost their `+` in a spreadsheet.
            ("4915123456789", us, "+4915123456789"),
        ];
        for (input, region, want) in cases {
            assert_eq!(
                E164::parse_in(input, region).map(|n| n.as_str().to_owned()),
                Ok(want.to_owned()),
                "{input} in {region:?}"
            );
        }
        // Without a default country a local spelling is still refused, with the fix.
        assert!(matches!(
            E164::parse_in("0151 23456789", None),
            Err(PhoneError::NotInternational(_))
        ));
        let e = E164::parse_in("0151 2", de).unwrap_err();
        assert!(e.to_string().contains("in DE"), "{e}");
        assert!(matches!(
            E164::parse_in("0151 x", de),
            Err(PhoneError::BadCharacters(_))
        ));
        // Found by fuzzing: the metadata read this as a German number of 16 digits, which
        // `parse` refuses; a national reading must be a number `parse` keeps.
        match E164::parse_in("64112345634567", de) {
            Ok(n) => assert_eq!(E164::parse(n.as_str()).as_ref(), Ok(&n)),
            Err(e) => assert!(matches!(e, PhoneError::InvalidIn(..)), "{e}"),
        }
        assert!(Region::parse("XX").is_err());
        assert!(Region::parse("Germany").is_err());
        assert_eq!(Region::parse(" de ").map(|r| r.as_str()), Ok("DE"));
    }

    #[test]
    fn national_numbers_are_refused_with_a_fix() {
        let err = E164::parse("0151 1234567").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`0151 1234567` is not an international phone number: write it in E.164 form with the country code, e.g. +4915112345678"
        );
    }

    #[test]
    fn junk_is_refused() {
        assert_eq!(E164::parse(""), Err(PhoneError::Empty));
        assert!(matches!(
            E164::parse("+49 abc"),
            Err(PhoneError::BadCharacters(_))
        ));
        assert!(matches!(E164::parse("+49 1"), Err(PhoneError::Invalid(_))));
        assert!(matches!(
            E164::parse("+999 123456789"),
            Err(PhoneError::Invalid(_))
        ));
        assert!(matches!(
            E164::parse("++4915112345678"),
            Err(PhoneError::BadCharacters(_))
        ));
        assert!(matches!(
            E164::parse("+4915112345678901234"),
            Err(PhoneError::Invalid(_))
        ));
    }

    #[test]
    fn wa_id_round_trip() {
        let n = E164::from_wa_id("4915112345678").unwrap();
        assert_eq!(n.as_str(), "+4915112345678");
        assert_eq!(n.wa_id().as_str(), "4915112345678");
        assert!(E164::from_wa_id("+4915112345678").is_err());
        assert!(E164::from_wa_id("").is_err());
    }

    #[test]
    fn serde_validates() {
        let n: E164 = serde_json::from_str("\"+49 151 12345678\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"+4915112345678\"");
        assert!(serde_json::from_str::<E164>("\"0151\"").is_err());
    }

    const VALID: [&str; 14] = [
        "+4915112345678",
        "+12024561111",
        "+442079460958",
        "+33612345678",
        "+919812345678",
        "+5511987654321",
        "+390612345678",
        "+81312345678",
        "+61412345678",
        "+27821234567",
        "+4930123456",
        "+79161234567",
        "+8613812345678",
        "+16505551234",
    ];

    #[test]
    fn numbers_from_many_countries_are_canonical() {
        for n in VALID {
            assert_eq!(E164::parse(n).unwrap().as_str(), n);
        }
        warm_up();
    }

    proptest! {
        /// Whatever the text, an accepted number is canonical: `+` and 4 to 15 digits, the
        /// same number again from its text, its stored form and its wa_id.
        #[test]
        fn accepted_numbers_are_canonical(s in "\\PC{0,40}|(\\+|00)?[0-9 ()-]{0,24}|\\+?[1-9][0-9]{6,14}") {
            for n in [E164::parse(&s), E164::from_wa_id(&s)].into_iter().flatten() {
                let digits = n.digits();
                prop_assert!(n.as_str().starts_with('+'));
                prop_assert!((4..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()), "{:?}", n);
                prop_assert_eq!(E164::parse(n.as_str()).ok(), Some(n.clone()));
                prop_assert_eq!(E164::from_stored(n.as_str()).ok(), Some(n.clone()));
                prop_assert_eq!(E164::from_wa_id(digits).ok(), Some(n.clone()));
                prop_assert_eq!(n.wa_id().as_str().to_owned(), digits.to_owned());
            }
        }

        #[test]
        fn valid_numbers_round_trip_whatever_the_spelling(
            number in prop::sample::select(VALID.to_vec()),
            seps in prop::collection::vec(prop::sample::select(vec!["", " ", "-", ".", " - "]), 16),
            double_zero in any::<bool>(),
        ) {
            let canonical = E164::parse(number).unwrap();
            let mut spelled = String::from(if double_zero { "00" } else { "+" });
            for (c, sep) in number[1..].chars().zip(&seps) {
                spelled.push(c);
                spelled.push_str(sep);
            }
            let parsed = E164::parse(&spelled).unwrap();
            prop_assert_eq!(&parsed, &canonical);
            prop_assert_eq!(E164::parse(parsed.as_str()).unwrap(), parsed.clone());
            prop_assert_eq!(E164::from_wa_id(parsed.digits()).unwrap(), parsed);
        }

        #[test]
        fn canonical_form_parses_to_itself(
            (national, rest) in prop::sample::select(vec![
                ("49151", 8usize), ("1650253", 4), ("4420794", 5), ("33612", 6), ("91981", 7), ("8613", 9),
            ]).prop_flat_map(|(p, len)| (Just(p), prop::collection::vec(0u8..10, len))),
        ) {
            let rest: String = rest.iter().map(|d| char::from(b'0' + d)).collect();
            let input = format!("+{national}{rest}");
            let parsed = E164::parse(&input);
            prop_assume!(parsed.is_ok());
            let n = parsed.expect("assumed");
            let again = E164::parse(n.as_str()).unwrap();
            prop_assert_eq!(&again, &n);
            prop_assert_eq!(E164::from_wa_id(n.digits()).unwrap(), n);
        }
    }
}
