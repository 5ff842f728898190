//! The virtual clock: real time plus an offset that only grows.
//!
//! Every time-based rule (status delays, 24 h windows, throughput and pair-rate limits,
//! webhook timestamps) reads this clock, so tests jump a day ahead with one call instead of
//! waiting, and never depend on how fast the machine is.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub(crate) struct VirtualClock {
    offset_ms: AtomicI64,
}

impl VirtualClock {
    /// Virtual now, in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        real.saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Virtual now, in Unix seconds (what Meta's `timestamp` strings carry).
    pub(crate) fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    pub(crate) fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }

    /// Moves virtual time forward by `ms` (never backwards: windows and buckets assume it).
    pub(crate) fn advance_ms(&self, ms: u64) {
        let ms = i64::try_from(ms).unwrap_or(i64::MAX);
        let _ = self
            .offset_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                Some(o.saturating_add(ms))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_now_forward() {
        let clock = VirtualClock::default();
        let before = clock.now_ms();
        clock.advance_ms(86_400_000);
        assert!(clock.now_ms() - before >= 86_400_000);
        assert_eq!(clock.offset_ms(), 86_400_000);
    }
}
