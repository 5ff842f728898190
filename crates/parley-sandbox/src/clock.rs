//! The virtual clock: real time plus an offset that only grows.
//!
//! Every time-based rule (status delays, 24 h windows, throughput and pair-rate limits,
//! webhook timestamps) reads this clock, so tests jump a day ahead with one call instead of
//! waiting, and never depend on how fast the machine is. A test that needs exact instants
//! (throughput windows) freezes the clock: then only explicit advances move it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The most one advance may move the clock (100 years).
const MAX_ADVANCE_MS: u64 = 100 * 366 * 24 * 60 * 60 * 1000;

/// Marks a running (not frozen) clock.
const RUNNING: i64 = i64::MIN;

#[derive(Debug)]
pub(crate) struct VirtualClock {
    offset_ms: AtomicI64,
    /// Virtual ms the clock stands at while frozen, or [`RUNNING`].
    frozen_at: AtomicI64,
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock {
            offset_ms: AtomicI64::new(0),
            frozen_at: AtomicI64::new(RUNNING),
        }
    }
}

fn real_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl VirtualClock {
    /// Virtual now, in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        let frozen = self.frozen_at.load(Ordering::SeqCst);
        if frozen != RUNNING {
            return frozen;
        }
        real_now_ms().saturating_add(self.offset_ms.load(Ordering::SeqCst))
    }

    pub(crate) fn is_frozen(&self) -> bool {
        self.frozen_at.load(Ordering::SeqCst) != RUNNING
    }

    /// Stops time at the current virtual instant (advances still move it).
    pub(crate) fn freeze(&self) {
        let now = self.now_ms();
        let _ = self
            .frozen_at
            .compare_exchange(RUNNING, now, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Lets time run again from where it stood.
    pub(crate) fn unfreeze(&self) {
        let frozen = self.frozen_at.swap(RUNNING, Ordering::SeqCst);
        if frozen != RUNNING {
            self.offset_ms
                .store(frozen.saturating_sub(real_now_ms()), Ordering::SeqCst);
        }
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
        // A century per call is plenty and keeps every `now + delay` far from overflow.
        let ms = i64::try_from(ms.min(MAX_ADVANCE_MS)).unwrap_or(0);
        let _ = self
            .frozen_at
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                (f != RUNNING).then(|| f.saturating_add(ms))
            });
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

    #[test]
    fn frozen_clock_moves_only_by_advances() {
        let clock = VirtualClock::default();
        clock.freeze();
        let at = clock.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(clock.now_ms(), at);
        clock.advance_ms(1500);
        assert_eq!(clock.now_ms(), at + 1500);
        clock.unfreeze();
        assert!(clock.now_ms() >= at + 1500);
    }
}
