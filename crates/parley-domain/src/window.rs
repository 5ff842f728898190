//! The 24-hour customer service window: after a contact writes to us, free-form messages are
//! allowed for 24 hours; outside it only templates (Meta error 131047 otherwise).

/// How long an inbound message keeps the window open.
pub const SERVICE_WINDOW: time::Duration = time::Duration::hours(24);

/// True when a contact's last inbound message was less than 24 h before `now`.
/// A timestamp slightly in the future (clock skew) counts as inside.
pub fn in_service_window(
    last_inbound: Option<time::OffsetDateTime>,
    now: time::OffsetDateTime,
) -> bool {
    last_inbound.is_some_and(|t| now - t < SERVICE_WINDOW)
}

/// The instant the window closes, if a contact ever wrote.
pub fn service_window_closes_at(
    last_inbound: Option<time::OffsetDateTime>,
) -> Option<time::OffsetDateTime> {
    last_inbound.and_then(|t| t.checked_add(SERVICE_WINDOW))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn window_is_open_for_24_hours() {
        let now = datetime!(2025-06-01 12:00 UTC);
        assert!(!in_service_window(None, now));
        assert!(in_service_window(
            Some(datetime!(2025-06-01 11:00 UTC)),
            now
        ));
        assert!(in_service_window(
            Some(datetime!(2025-05-31 12:00:01 UTC)),
            now
        ));
        assert!(!in_service_window(
            Some(datetime!(2025-05-31 12:00 UTC)),
            now
        ));
        assert!(
            in_service_window(Some(datetime!(2025-06-01 12:05 UTC)), now),
            "clock skew"
        );
        assert_eq!(
            service_window_closes_at(Some(datetime!(2025-05-31 12:00 UTC))),
            Some(now)
        );
    }
}
