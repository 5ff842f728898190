//! A WABA's time zone as Meta names it: a numeric `timezone_id` (the ad account ids; "1" is
//! America/Los_Angeles). Meta counts volume tiers per calendar month in the WABA's zone and
//! aligns daily and monthly analytics on it (META_2026 §5.2). The ids are Meta's "Ad Account
//! Timezone IDs" reference, 0–142 (`data/meta-timezones.tsv`, the same file Parley ships).
//! An id outside the table (one Meta added later) is served as given and counted in UTC.

use jiff::Timestamp;
use jiff::tz::TimeZone;

const TABLE: &str = include_str!("../data/meta-timezones.tsv");

/// The IANA zone of a `timezone_id` in the table (0, `TZ_UNKNOWN`, names none).
pub(crate) fn iana(id: &str) -> Option<&'static str> {
    TABLE
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split('\t');
            Some((cols.next()?, cols.nth(1)?))
        })
        .find(|(i, zone)| *i == id.trim() && *zone != "-")
        .map(|(_, zone)| zone)
}

/// Every `(id, IANA zone)` of the table, for the signup dialog's picker.
pub(crate) fn all() -> Vec<(&'static str, &'static str)> {
    TABLE
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let id = cols.next()?;
            let zone = cols.nth(1)?;
            (zone != "-").then_some((id, zone))
        })
        .collect()
}

/// The zone a `timezone_id` counts in (UTC outside the table).
pub(crate) fn zone(id: &str) -> TimeZone {
    iana(id)
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or(TimeZone::UTC)
}

/// `YYYY-MM` of the instant (Unix ms) in the zone.
pub(crate) fn month_key(at_ms: i64, tz: &TimeZone) -> String {
    Timestamp::from_millisecond(at_ms)
        .map(|t| {
            let d = t.to_zoned(tz.clone()).date();
            format!("{:04}-{:02}", d.year(), d.month())
        })
        .unwrap_or_default()
}

/// The local day (`month: false`) or calendar month holding `t` (Unix seconds) in the
/// zone, as `(start, end)` in Unix seconds.
pub(crate) fn bucket(t: i64, tz: &TimeZone, month: bool) -> (i64, i64) {
    let Ok(at) = Timestamp::from_second(t) else {
        return (t, t);
    };
    let z = at.to_zoned(tz.clone());
    let first = if month {
        z.first_of_month().and_then(|d| d.start_of_day())
    } else {
        z.start_of_day()
    };
    let Ok(first) = first else {
        return (t, t);
    };
    let span = if month {
        jiff::Span::new().months(1)
    } else {
        jiff::Span::new().days(1)
    };
    let next = first
        .checked_add(span)
        .and_then(|n| n.start_of_day())
        .map_or(t + 86_400, |n| n.timestamp().as_second());
    (first.timestamp().as_second(), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_names_a_zone_and_the_table_is_parleys() {
        assert_eq!(iana("1"), Some("America/Los_Angeles"));
        assert_eq!(iana("0"), None);
        assert_eq!(iana("4999"), None);
        assert_eq!(all().len(), 142);
        for (_, z) in all() {
            assert!(TimeZone::get(z).is_ok(), "{z}");
        }
        assert_eq!(
            TABLE,
            include_str!("../../parley-domain/data/meta-timezones.tsv"),
            "the sandbox's table is Parley's"
        );
    }

    #[test]
    fn a_message_at_three_utc_on_the_first_is_still_last_month_in_los_angeles() {
        // 2026-11-01T03:00:00Z
        let t = 1_793_502_000;
        let la = zone("1");
        assert_eq!(month_key(t * 1000, &la), "2026-10");
        assert_eq!(month_key(t * 1000, &TimeZone::UTC), "2026-11");
        // October 31 in Los Angeles: 07:00Z to 07:00Z.
        assert_eq!(bucket(t, &la, false), (1_793_430_000, 1_793_516_400));
        // October in Los Angeles: 2026-10-01T07:00Z to 2026-11-01T07:00Z.
        assert_eq!(bucket(t, &la, true), (1_790_838_000, 1_793_516_400));
        assert_eq!(zone("4999"), TimeZone::UTC);
    }
}
