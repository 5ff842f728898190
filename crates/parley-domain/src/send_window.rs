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
    if h.len() != 2 || m.len() != 2 {
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
}
