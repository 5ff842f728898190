//! The throughput limiter of one number: a GCRA (generic cell rate algorithm) whose burst
//! and rate are chosen so that no one-second window holds more than the number's messages
//! per second, which is how Meta (and the sandbox) count.
//!
//! With a burst of `b`, an emission interval `T` and a lateness allowance `τ`, any window of
//! length `W` holds at most `b + ⌊(W + τ) / T⌋` passes. The rate is 98.5 % of `mps`, the
//! burst 1 % of it (at least one) and `τ` 5 ms, so a second holds at most
//! `0.01·mps + 0.985·mps·1.005 < mps` (and `1 + ⌊0.985·mps·1.005⌋ ≤ mps` at low rates).
//! The burst is what lets high rates through a timer that ticks in milliseconds (5,000 mps is
//! 5 sends per tick); the allowance is what keeps a wake-up that comes a tick late from
//! pushing every later send back (with neither, 80 mps achieved 72.7). Each pass is decided
//! at the instant it happens.
//!
//! A refused caller sleeps at least half the burst's span (5 ms at 5,000 mps, nothing at
//! 80 mps), so a high-rate sender wakes once per batch of passes rather than at every timer
//! tick; the burst holds what accumulates meanwhile. The sender has one waiter on the pacer.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How late a wake-up may come without costing throughput (tokio's timer ticks in ms).
const LATENESS: Duration = Duration::from_millis(5);

#[derive(Debug)]
pub struct Pacer {
    /// Emission interval.
    interval: Duration,
    /// How far ahead of the theoretical arrival time a pass may come (`(b - 1) · T + τ`).
    tolerance: Duration,
    /// Theoretical arrival time of the next pass.
    tat: Mutex<Option<Instant>>,
    /// How long a refused caller sleeps at least: half the burst's span, so a high rate wakes
    /// its sender once per batch of passes instead of at every timer tick.
    nap: Duration,
}

impl Pacer {
    pub fn new(mps: u32) -> Pacer {
        let mps = mps.max(1);
        let burst = (mps / 100).max(1);
        // 0.985 · mps per second.
        let interval = Duration::from_nanos(1_000_000_000u64 * 1_000 / (u64::from(mps) * 985));
        Pacer {
            interval,
            tolerance: interval * (burst - 1) + LATENESS,
            tat: Mutex::new(None),
            nap: interval * (burst - 1) / 2,
        }
    }

    /// `Ok` when a send may go at `now` (and counts it), else the instant to look again.
    pub fn check(&self, now: Instant) -> Result<(), Instant> {
        let mut tat = self
            .tat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = tat.unwrap_or(now).max(now);
        let earliest = tat.map_or(now, |t| t.checked_sub(self.tolerance).unwrap_or(t));
        if now < earliest {
            return Err(earliest);
        }
        *tat = Some(current + self.interval);
        Ok(())
    }

    /// Waits until a send may go, and counts it.
    pub async fn until_ready(&self) {
        loop {
            match self.check(Instant::now()) {
                Ok(()) => return,
                Err(at) => tokio::time::sleep_until(at.max(Instant::now() + self.nap)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The passes `until_ready` hands out (with its naps) over `secs` virtual seconds.
    async fn passes_while_waiting(mps: u32, secs: u64) -> Vec<Instant> {
        let pacer = Pacer::new(mps);
        let start = Instant::now();
        let mut passes = Vec::new();
        while Instant::now() < start + Duration::from_secs(secs) {
            pacer.until_ready().await;
            passes.push(Instant::now());
        }
        passes
    }

    fn most_in_one_second(passes: &[Instant]) -> usize {
        let mut first = 0;
        let mut most = 0;
        for (last, at) in passes.iter().enumerate() {
            while *at - passes[first] >= Duration::from_secs(1) {
                first += 1;
            }
            most = most.max(last - first + 1);
        }
        most
    }

    /// A sender that waits on the pacer (napping between batches at high rates) still gets
    /// within 2 % of the rate, and no one-second window holds more than `mps`.
    #[tokio::test(start_paused = true)]
    async fn waiting_with_naps_keeps_the_rate_and_the_limit() {
        for mps in [1u32, 80, 250, 1000, 5000] {
            let secs = 5;
            let passes = passes_while_waiting(mps, secs).await;
            let most = most_in_one_second(&passes);
            assert!(most <= mps as usize, "{mps} mps: {most} in one second");
            let expected = f64::from(mps) * secs as f64;
            assert!(
                passes.len() as f64 >= expected * 0.98,
                "{mps} mps: only {} in {secs} s",
                passes.len()
            );
        }
    }

    /// Senders that always want to go, looking at 50 µs steps for three seconds: no
    /// one-second window holds more than `mps`, and the rate is within 2 % of it.
    #[test]
    fn no_second_holds_more_than_the_rate_and_little_is_lost() {
        for mps in [1u32, 20, 80, 250, 1000, 5000] {
            let pacer = Pacer::new(mps);
            let start = Instant::now();
            let mut passes = Vec::new();
            let step = Duration::from_micros(50);
            let secs = 3u32;
            let mut t = start;
            while t < start + Duration::from_secs(u64::from(secs)) {
                while pacer.check(t).is_ok() {
                    passes.push(t);
                }
                t += step;
            }
            let most = most_in_one_second(&passes);
            assert!(most <= mps as usize, "{mps} mps: {most} in one second");
            let expected = f64::from(mps) * f64::from(secs);
            assert!(
                passes.len() as f64 >= expected * 0.98,
                "{mps} mps: only {} in {secs} s",
                passes.len()
            );
        }
    }
}
