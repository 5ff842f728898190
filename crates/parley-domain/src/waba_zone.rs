//! A WABA's time zone: Meta names it by a numeric `timezone_id` (the ad account's ids, "1" is
//! America/Los_Angeles); Meta counts volume tiers per calendar month in it and aligns its daily
//! analytics on it (META_2026 §5.2). The ids and the IANA zones they name are in
//! `data/meta-timezones.tsv` (source: Meta's "Ad Account Timezone IDs" reference, ids 0–142).
//! An id Parley does not know falls back to UTC, and says so (`known: false`).

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

/// A time zone (jiff's, from its bundled IANA database).
pub use jiff::tz::TimeZone as Zone;

/// `id \t META_NAME \t IANA zone`, one a line; `#` comments.
pub const META_TIMEZONES: &str = include_str!("../data/meta-timezones.tsv");

/// The IANA zone of a Meta `timezone_id`, if Parley knows it (0, `TZ_UNKNOWN`, names none).
pub fn iana_of_meta_id(id: &str) -> Option<&'static str> {
    let id = id.trim();
    META_TIMEZONES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split('\t');
            Some((cols.next()?, cols.nth(1)?))
        })
        .find(|(i, zone)| *i == id && *zone != "-")
        .map(|(_, zone)| zone)
}

/// The zone a WABA's months and days are counted in, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WabaZone {
    /// Meta's `timezone_id` as read from the WABA (`null`: Meta gave none).
    pub timezone_id: Option<String>,
    /// The IANA zone months and days are counted in: the id's, or `UTC` when not known.
    pub name: String,
    /// `false`: Meta gave no id, or one Parley does not know, so Parley counts in UTC.
    pub known: bool,
    /// Why Parley counts in UTC, when it does so for want of the WABA's zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Default for WabaZone {
    fn default() -> WabaZone {
        WabaZone::utc("no WhatsApp Business Account: counted in UTC")
    }
}

impl WabaZone {
    /// UTC, for an application without a WABA.
    pub fn utc(note: impl Into<String>) -> WabaZone {
        WabaZone {
            timezone_id: None,
            name: "UTC".to_owned(),
            known: false,
            note: Some(note.into()),
        }
    }

    /// The zone of a `timezone_id` as Meta gave it (a string, or absent).
    pub fn from_meta_id(id: Option<&str>) -> WabaZone {
        let id = id.map(str::trim).filter(|s| !s.is_empty());
        match id.and_then(iana_of_meta_id) {
            Some(zone) if TimeZone::get(zone).is_ok() => WabaZone {
                timezone_id: id.map(str::to_owned),
                name: zone.to_owned(),
                known: true,
                note: None,
            },
            _ => WabaZone {
                timezone_id: id.map(str::to_owned),
                name: "UTC".to_owned(),
                known: false,
                note: Some(match id {
                    Some(id) => format!(
                        "Meta's timezone_id {id} is not one Parley knows: volume tiers and daily analytics are counted in UTC"
                    ),
                    None => "Meta gave no timezone_id for this WABA: volume tiers and daily analytics are counted in UTC".to_owned(),
                }),
            },
        }
    }

    /// The zone of a WABA's stored details (`timezone_id` as a string or a number).
    pub fn from_details(details: &serde_json::Value) -> WabaZone {
        let id = match details.get("timezone_id") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        WabaZone::from_meta_id(id.as_deref())
    }

    /// The jiff zone (UTC for an unknown one).
    pub fn tz(&self) -> TimeZone {
        TimeZone::get(&self.name).unwrap_or(TimeZone::UTC)
    }
}

fn zoned(t: i64, tz: &TimeZone) -> Option<jiff::Zoned> {
    Some(Timestamp::from_millisecond(t).ok()?.to_zoned(tz.clone()))
}

/// The first instant (Unix ms) of the calendar month `t` falls in, in `tz`.
pub fn month_start_in(t: i64, tz: &TimeZone) -> i64 {
    zoned(t, tz)
        .and_then(|z| z.first_of_month().ok()?.start_of_day().ok())
        .map_or(0, |z| z.timestamp().as_millisecond())
}

/// The first instant (Unix ms) of the calendar month after the one `t` falls in, in `tz`.
pub fn next_month_start_in(t: i64, tz: &TimeZone) -> i64 {
    zoned(t, tz)
        .and_then(|z| {
            z.first_of_month()
                .ok()?
                .checked_add(jiff::Span::new().months(1))
                .ok()?
                .start_of_day()
                .ok()
        })
        .map_or(i64::MAX, |z| z.timestamp().as_millisecond())
}

/// The first instant (Unix ms) of the calendar day `t` falls in, in `tz`.
pub fn day_start_in(t: i64, tz: &TimeZone) -> i64 {
    zoned(t, tz)
        .and_then(|z| z.start_of_day().ok())
        .map_or(0, |z| z.timestamp().as_millisecond())
}

/// The start (Unix ms) in `tz` of the calendar date `t` has in UTC: a UTC midnight moved to
/// the same date's midnight in the zone.
pub fn same_date_in(t: i64, tz: &TimeZone) -> i64 {
    zoned(t, &TimeZone::UTC)
        .and_then(|z| z.date().to_zoned(tz.clone()).ok())
        .map_or(t, |z| z.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().expect("instant").as_millisecond()
    }

    #[test]
    fn every_id_names_a_zone_jiff_knows_and_matches_metas_name() {
        let mut n = 0;
        for line in META_TIMEZONES.lines().filter(|l| !l.starts_with('#')) {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 3, "{line}");
            assert_eq!(cols[0].parse::<u32>().expect("id"), n, "ids are 0, 1, 2, …");
            n += 1;
            if cols[2] == "-" {
                assert_eq!(cols[1], "TZ_UNKNOWN");
                continue;
            }
            assert!(TimeZone::get(cols[2]).is_ok(), "{line}");
            let derived = format!("TZ_{}", cols[2].to_uppercase().replace(['/', '-'], "_"));
            assert_eq!(derived, cols[1], "{line}");
        }
        assert_eq!(n, 143);
    }

    #[test]
    fn metas_ids_read_as_their_zones_and_unknown_ones_as_utc_said_so() {
        let la = WabaZone::from_meta_id(Some("1"));
        assert_eq!((la.name.as_str(), la.known), ("America/Los_Angeles", true));
        assert_eq!(la.note, None);
        assert_eq!(WabaZone::from_meta_id(Some("47")).name, "Europe/Berlin");
        assert_eq!(WabaZone::from_meta_id(Some("71")).name, "Asia/Kolkata");
        for unknown in [Some("0"), Some("9999"), Some("x"), Some(""), None] {
            let z = WabaZone::from_meta_id(unknown);
            assert_eq!((z.name.as_str(), z.known), ("UTC", false), "{unknown:?}");
            assert!(
                z.note.as_deref().is_some_and(|n| n.contains("UTC")),
                "{z:?}"
            );
        }
        let numeric = WabaZone::from_details(&serde_json::json!({"timezone_id": 1}));
        assert_eq!(numeric.name, "America/Los_Angeles");
        assert_eq!(numeric.timezone_id.as_deref(), Some("1"));
    }

    #[test]
    fn a_month_in_los_angeles_starts_seven_or_eight_hours_after_utcs() {
        let la = WabaZone::from_meta_id(Some("1")).tz();
        // 2026-11-01T03:00Z is 2026-10-31 20:00 PDT: still October.
        let t = at("2026-11-01T03:00:00Z");
        assert_eq!(month_start_in(t, &la), at("2026-10-01T07:00:00Z"));
        assert_eq!(next_month_start_in(t, &la), at("2026-11-01T07:00:00Z"));
        assert_eq!(
            month_start_in(t, &TimeZone::UTC),
            at("2026-11-01T00:00:00Z")
        );
        // After the switch back to PST the month starts at 08:00Z.
        assert_eq!(
            next_month_start_in(at("2026-11-15T00:00:00Z"), &la),
            at("2026-12-01T08:00:00Z")
        );
        assert_eq!(day_start_in(t, &la), at("2026-10-31T07:00:00Z"));
        assert_eq!(
            same_date_in(at("2026-11-01T00:00:00Z"), &la),
            at("2026-11-01T07:00:00Z")
        );
        assert_eq!(
            same_date_in(at("2026-11-02T00:00:00Z"), &la),
            at("2026-11-02T08:00:00Z")
        );
        let kolkata = WabaZone::from_meta_id(Some("71")).tz();
        assert_eq!(
            month_start_in(at("2026-10-31T19:00:00Z"), &kolkata),
            at("2026-10-31T18:30:00Z")
        );
        assert_eq!(
            month_start_in(at("2026-10-31T18:00:00Z"), &kolkata),
            at("2026-09-30T18:30:00Z")
        );
    }
}
