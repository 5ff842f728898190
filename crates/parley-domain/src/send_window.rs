//! Campaign send windows (pure: jiff's bundled IANA database, no I/O): `{"start": "09:00", "end": "20:00", "timezone": "Europe/Berlin"}`.
//!
//! A message may go only while the local time of its recipient is inside `[start, end)`. The
//! timezone is the contact's own (`contacts.timezone`, IANA) when it has a valid one, else the
//! window's `timezone` (the campaign's timezone), else UTC. `end` before `start` is a window
//! across midnight (`20:00`–`08:00`). The planner resolves the timezone per message and stores
//! the window on the message (`09:00-20:00@Europe/Berlin`), so the sender checks it again just
//! before the call without reading the contact or the campaign.
//!
//! Timezones come from jiff's bundled IANA database (no dependence on the host's tzdata).

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;

/// A send window the API refused: a stable code, the field at fault and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendWindowError {
    /// `send_window_invalid`, `send_window_time_invalid`, `send_window_empty` or
    /// `timezone_unknown`.
    pub code: &'static str,
    /// `send_window` or `send_window.<key>`.
    pub field: String,
    pub message: String,
}

/// A parsed window: minutes of the day, and the fallback timezone name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWindow {
    pub start: u16,
    pub end: u16,
    /// The campaign's timezone (IANA name) for contacts without one; `None`: UTC.
    pub timezone: Option<String>,
}

fn minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    // Digits only: `str::parse` also takes a sign, so "+9:00" would read as 09:00.
    let two_digits = |t: &str| t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn hhmm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Whether `name` is a timezone of the bundled IANA database.
pub fn known_timezone(name: &str) -> bool {
    TimeZone::get(name).is_ok()
}

impl SendWindow {
    /// Parses the API's JSON, refusing what would be ambiguous, with the failing field.
    pub fn from_json(v: &serde_json::Value) -> Result<SendWindow, SendWindowError> {
        let bad = |code: &'static str, message: String, field: &str| SendWindowError {
            code,
            field: format!("send_window.{field}"),
            message,
        };
        let obj = v.as_object().ok_or_else(|| SendWindowError {
            code: "send_window_invalid",
            field: "send_window".into(),
            message: "`send_window` is an object like {\"start\": \"09:00\", \"end\": \"20:00\", \"timezone\": \"Europe/Berlin\"}".into(),
        })?;
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "start" | "end" | "timezone"))
        {
            return Err(bad(
                "send_window_invalid",
                format!(
                    "`send_window` has no field `{k}`; give start, end and optionally timezone"
                ),
                k,
            ));
        }
        let time = |field: &str| {
            obj.get(field)
                .and_then(|t| t.as_str())
                .and_then(minutes)
                .ok_or_else(|| {
                    bad(
                        "send_window_time_invalid",
                        format!("`send_window.{field}` is a local time HH:MM, e.g. \"09:00\""),
                        field,
                    )
                })
        };
        let (start, end) = (time("start")?, time("end")?);
        if start == end {
            return Err(bad(
                "send_window_empty",
                "`send_window.start` and `end` are equal; give a window of at least a minute (end before start spans midnight)".into(),
                "end",
            ));
        }
        let timezone = match obj.get("timezone") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(name)) if known_timezone(name) => Some(name.clone()),
            Some(other) => {
                return Err(bad(
                    "timezone_unknown",
                    format!(
                        "`send_window.timezone` {other} is not an IANA timezone name, e.g. \"Europe/Berlin\" or \"America/New_York\""
                    ),
                    "timezone",
                ));
            }
        };
        Ok(SendWindow {
            start,
            end,
            timezone,
        })
    }

    /// The JSON `from_json` reads, as a campaign stores it (`timezone` only when set).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"start": hhmm(self.start), "end": hhmm(self.end)});
        if let Some(tz) = &self.timezone {
            v["timezone"] = serde_json::Value::String(tz.clone());
        }
        v
    }

    /// The window as stored on one message, in the recipient's timezone: the contact's when
    /// it is known, else the campaign's, else UTC.
    pub fn resolve(&self, contact_timezone: Option<&str>) -> String {
        let tz = contact_timezone
            .filter(|t| known_timezone(t))
            .or(self.timezone.as_deref())
            .unwrap_or("UTC");
        format!("{}-{}@{tz}", hhmm(self.start), hhmm(self.end))
    }
}

/// For a message's stored window (`HH:MM-HH:MM@Zone`): `None` when it may go at `now_ms`,
/// else the instant (Unix ms) the window next opens. An unreadable window never holds.
pub fn next_opening(stored: &str, now_ms: i64) -> Option<i64> {
    let (range, tz) = stored.split_once('@')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (minutes(start)?, minutes(end)?);
    let tz = TimeZone::get(tz).unwrap_or(TimeZone::UTC);
    let now = Timestamp::from_millisecond(now_ms)
        .ok()?
        .to_zoned(tz.clone());
    let local = now.hour() as u16 * 60 + now.minute() as u16;
    let inside = if start < end {
        local >= start && local < end
    } else {
        local >= start || local < end
    };
    if inside {
        return None;
    }
    let at = Time::new((start / 60) as i8, (start % 60) as i8, 0, 0).ok()?;
    let mut day = now.date();
    for _ in 0..3 {
        let open = day.to_datetime(at).to_zoned(tz.clone()).ok()?;
        if open.timestamp() > now.timestamp() {
            return Some(open.timestamp().as_millisecond());
        }
        day = day.tomorrow().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().expect("ts").as_millisecond()
    }

    #[test]
    fn parses_and_refuses() {
        let w = SendWindow::from_json(
            &serde_json::json!({"start": "09:00", "end": "20:00", "timezone": "Europe/Berlin"}),
        )
        .expect("ok");
        assert_eq!((w.start, w.end), (540, 1200));
        let e = SendWindow::from_json(
            &serde_json::json!({"start": "09:00", "end": "20:00", "timezone": "Mars/Base"}),
        )
        .expect_err("unknown tz");
        assert_eq!(e.field, "send_window.timezone");
        assert!(SendWindow::from_json(&serde_json::json!({"start": "9", "end": "20:00"})).is_err());
        assert!(
            SendWindow::from_json(&serde_json::json!({"start": "09:00", "end": "09:00"})).is_err()
        );
        assert_eq!(SendWindow::from_json(&w.to_json()).expect("round trip"), w);
        assert_eq!(w.resolve(Some("Asia/Tokyo")), "09:00-20:00@Asia/Tokyo");
        assert_eq!(w.resolve(Some("Nowhere")), "09:00-20:00@Europe/Berlin");
        let utc = SendWindow::from_json(&serde_json::json!({"start": "09:00", "end": "20:00"}))
            .expect("ok");
        assert_eq!(utc.resolve(None), "09:00-20:00@UTC");
    }

    #[test]
    fn next_opening_in_the_zone() {
        let w = "09:00-20:00@Europe/Berlin";
        // 21:00 UTC in winter is 22:00 in Berlin: opens 09:00 Berlin = 08:00 UTC next day.
        assert_eq!(
            next_opening(w, ms("2026-01-10T21:00:00Z")),
            Some(ms("2026-01-11T08:00:00Z"))
        );
        // 05:00 Berlin: opens the same day.
        assert_eq!(
            next_opening(w, ms("2026-01-10T04:00:00Z")),
            Some(ms("2026-01-10T08:00:00Z"))
        );
        assert_eq!(next_opening(w, ms("2026-01-10T12:00:00Z")), None);
        // Across midnight.
        let night = "20:00-08:00@UTC";
        assert_eq!(next_opening(night, ms("2026-01-10T23:00:00Z")), None);
        assert_eq!(next_opening(night, ms("2026-01-10T07:59:00Z")), None);
        assert_eq!(
            next_opening(night, ms("2026-01-10T08:00:00Z")),
            Some(ms("2026-01-10T20:00:00Z"))
        );
    }

    /// Found by a property test: `"+9:00"` was read as 09:00 (integer parsing takes a sign).
    #[test]
    fn signed_times_are_refused() {
        for bad in ["+9:00", "09:+5", "-0:00", "+0:+0"] {
            let e = SendWindow::from_json(&serde_json::json!({"start": bad, "end": "20:00"}))
                .expect_err(bad);
            assert_eq!(e.code, "send_window_time_invalid", "{bad}");
            assert_eq!(next_opening(&format!("{bad}-20:00@UTC"), 0), None, "{bad}");
        }
    }

    const ZONES: [&str; 6] = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Pacific/Chatham",
        "Australia/Lord_Howe",
    ];

    fn any_window() -> impl Strategy<Value = SendWindow> {
        (
            0u16..1440,
            0u16..1440,
            prop::option::of(prop::sample::select(ZONES.to_vec())),
        )
            .prop_filter("start and end differ", |(s, e, _)| s != e)
            .prop_map(|(start, end, tz)| SendWindow {
                start,
                end,
                timezone: tz.map(str::to_owned),
            })
    }

    /// The reference reading of a local time: exactly two digits, a colon, two digits.
    fn reference_minutes(s: &str) -> Option<u16> {
        let b = s.as_bytes();
        if b.len() != 5
            || b[2] != b':'
            || !b
                .iter()
                .enumerate()
                .all(|(i, c)| i == 2 || c.is_ascii_digit())
        {
            return None;
        }
        let n = |i: usize| u16::from(b[i] - b'0');
        let (h, m) = (n(0) * 10 + n(1), n(3) * 10 + n(4));
        (h < 24 && m < 60).then_some(h * 60 + m)
    }

    proptest! {
        #[test]
        fn windows_round_trip_through_json(w in any_window()) {
            prop_assert_eq!(SendWindow::from_json(&w.to_json()), Ok(w.clone()));
            let stored = w.resolve(None);
            let zone = format!("@{}", w.timezone.as_deref().unwrap_or("UTC"));
            prop_assert!(stored.ends_with(&zone), "{} for {:?}", stored, w);
        }

        #[test]
        fn times_are_read_exactly_as_hh_mm(start in "[0-9+: -]{0,6}|[0-9+ -]{2}:[0-9+ -]{2}|[0-2][0-9]:[0-6][0-9]") {
            let parsed = SendWindow::from_json(&serde_json::json!({"start": start, "end": "00:00"}))
                .map(|w| w.start);
            match reference_minutes(&start) {
                Some(0) => prop_assert_eq!(parsed.map_err(|e| e.code), Err("send_window_empty")),
                Some(m) => prop_assert_eq!(parsed, Ok(m)),
                None => prop_assert_eq!(parsed.map_err(|e| e.code), Err("send_window_time_invalid")),
            }
        }

        #[test]
        fn any_json_is_a_window_or_a_coded_error(
            start in prop::option::of("\\PC{0,6}"),
            end in prop::option::of("[0-9:]{0,6}"),
            tz in prop::option::of("\\PC{0,20}"),
            extra in prop::option::of("[a-z]{1,6}"),
        ) {
            let mut v = serde_json::Map::new();
            if let Some(s) = start { v.insert("start".into(), s.into()); }
            if let Some(e) = end { v.insert("end".into(), e.into()); }
            if let Some(t) = tz { v.insert("timezone".into(), t.into()); }
            if let Some(x) = extra { v.insert(x, 1.into()); }
            match SendWindow::from_json(&serde_json::Value::Object(v)) {
                Ok(w) => {
                    prop_assert!(w.start < 1440 && w.end < 1440 && w.start != w.end);
                    prop_assert_eq!(SendWindow::from_json(&w.to_json()), Ok(w));
                }
                Err(e) => {
                    prop_assert!(["send_window_invalid", "send_window_time_invalid", "send_window_empty", "timezone_unknown"].contains(&e.code));
                    prop_assert!(e.field.starts_with("send_window"));
                }
            }
        }

        /// In a zone with a fixed offset, the next opening is the first instant after now at
        /// the window's start, less than a day ahead, and the window is open then; `None`
        /// exactly when the local time is inside the window.
        #[test]
        fn next_opening_is_the_next_start_in_fixed_zones(
            w in any_window(),
            zone in prop::sample::select(vec!["UTC", "Asia/Kolkata", "Asia/Tokyo", "Etc/GMT+5"]),
            now in -2_000_000_000_000i64..4_000_000_000_000,
        ) {
            let stored = w.resolve(Some(zone));
            let tz = TimeZone::get(zone).expect("zone");
            let local = Timestamp::from_millisecond(now).expect("ts").to_zoned(tz.clone());
            let minute = local.hour() as u16 * 60 + local.minute() as u16;
            let inside = if w.start < w.end {
                minute >= w.start && minute < w.end
            } else {
                minute >= w.start || minute < w.end
            };
            match next_opening(&stored, now) {
                None => prop_assert!(inside, "{} held at {}", stored, local),
                Some(at) => {
                    prop_assert!(!inside, "{} open at {} but held", stored, local);
                    prop_assert!(at > now && at - now <= 86_400_000, "{} at {}: opens {}", stored, local, at);
                    let opens = Timestamp::from_millisecond(at).expect("ts").to_zoned(tz);
                    prop_assert_eq!(opens.hour() as u16 * 60 + opens.minute() as u16, w.start);
                    prop_assert_eq!(next_opening(&stored, at), None);
                }
            }
        }

        #[test]
        fn next_opening_never_panics_and_is_ahead(
            stored in "[0-9:]{0,6}-[0-9:]{0,6}@(UTC|Europe/Berlin|America/Santiago|Nowhere|\\PC{0,8})",
            now in any::<i64>(),
        ) {
            if let Some(at) = next_opening(&stored, now) {
                prop_assert!(at > now);
            }
        }
    }
}
