//! The throughput limiter of one number. Meta (and the sandbox) count the sends that *arrive*
//! in any one-second window; Parley only knows when it started a request and when the answer
//! came back, and the arrival lies somewhere between. Two parts:
//!
//! - **The window (exactness).** Each send holds one of the number's `mps` slots from the
//!   moment it is let through until `HOLD` (one second and a little) after its answer came
//!   back; a send goes only while a slot is free. Take any one-second window of arrivals and,
//!   in it, the send let through last, at `s`: every other send of the window arrived less
//!   than a second before the last arrival, which is after `s`, so its answer came back less
//!   than a second before `s` or later, and its slot was still held at `s`. So no window ever
//!   holds more than `mps`, however requests bunch on the way (a loaded machine, a slow
//!   proxy). The cost is the round trip: a slot turns over every `HOLD + latency`.
//! - **The spacing (smoothness).** A GCRA (generic cell rate algorithm) at the full rate with
//!   a burst of 1 % of it (at least one) and a lateness allowance `τ` of 5 ms spreads the
//!   passes over the second instead of letting all `mps` go at its start. The burst is what
//!   lets high rates through a timer that ticks in milliseconds (5,000 mps is 5 sends per
//!   tick); the allowance is what keeps a wake-up that comes a tick late from pushing every
//!   later send back.
//!
//! A new limiter may start closed (`not_before`): a number whose sender lease just changed
//! hands waits until the previous holder's last sends are out of every window it could share
//! with the new one (`leases.rs`).
//!
//! A caller refused by the spacing sleeps at least half the burst's span (5 ms at 5,000 mps,
//! nothing at 80 mps), so a high-rate sender wakes once per batch of passes rather than at
//! every timer tick; one refused by the window waits for the next slot to come free. The
//! sender has one waiter on the pacer.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How late a wake-up may come without costing throughput (tokio's timer ticks in ms).
const LATENESS: Duration = Duration::from_millis(5);

/// How long after its answer a send keeps its slot: one second, plus 5 ms for the
/// millisecond rounding of the counter's clock (and the wall clock it reads, against the
/// monotonic one measured here).
pub const HOLD: Duration = Duration::from_millis(1_005);

#[derive(Debug)]
pub struct Pacer {
    mps: usize,
    /// Emission interval.
    interval: Duration,
    /// How far ahead of the theoretical arrival time a pass may come (`(b - 1) · T + τ`).
    tolerance: Duration,
    /// How long a caller refused by the spacing sleeps at least: half the burst's span.
    nap: Duration,
    state: Mutex<State>,
    /// A send ended (its slot starts its hold).
    ended: Notify,
}

#[derive(Debug)]
struct State {
    /// Theoretical arrival time of the next pass.
    tat: Option<Instant>,
    /// Nothing goes before this.
    not_before: Instant,
    /// Sends let through whose answer has not come back.
    in_flight: usize,
    /// When the slots of answered sends come free, in order.
    releases: VecDeque<Instant>,
}

/// Why a pass was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// Look again at this instant.
    Until(Instant),
    /// Every slot is in flight: look again when a send ends.
    SendEnds,
}

/// A pass: its send holds a slot until `HOLD` after the guard is dropped (when the answer came
/// back), or gives it back at once through `unused` when the send did not go.
#[derive(Debug)]
pub struct Slot {
    /// Owned, so that a send (and its slot) can run in a task of its own.
    pacer: std::sync::Arc<Pacer>,
    used: bool,
}

impl Slot {
    /// The send did not go: its slot is free again at once.
    pub fn unused(mut self) {
        self.used = false;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pacer.end(Instant::now(), self.used);
    }
}

impl Pacer {
    pub fn new(mps: u32) -> Pacer {
        Pacer::starting_at(mps, Instant::now())
    }

    /// A limiter that lets nothing through before `not_before`.
    pub fn starting_at(mps: u32, not_before: Instant) -> Pacer {
        let mps = mps.max(1);
        let burst = (mps / 100).max(1);
        let interval = Duration::from_nanos(1_000_000_000u64 / u64::from(mps));
        Pacer {
            mps: mps as usize,
            interval,
            tolerance: interval * (burst - 1) + LATENESS,
            nap: interval * (burst - 1) / 2,
            state: Mutex::new(State {
                tat: None,
                not_before,
                in_flight: 0,
                releases: VecDeque::new(),
            }),
            ended: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Ok` when a send may go at `now` (its slot is taken: call `end` when its answer came
    /// back), else when to look again.
    pub fn check(&self, now: Instant) -> Result<(), Wait> {
        let mut s = self.lock();
        if now < s.not_before {
            return Err(Wait::Until(s.not_before));
        }
        while s.releases.front().is_some_and(|at| *at <= now) {
            s.releases.pop_front();
        }
        if s.in_flight + s.releases.len() >= self.mps {
            return Err(s
                .releases
                .front()
                .map_or(Wait::SendEnds, |at| Wait::Until(*at)));
        }
        let current = s.tat.unwrap_or(now).max(now);
        let earliest = s
            .tat
            .map_or(now, |t| t.checked_sub(self.tolerance).unwrap_or(t));
        if now < earliest {
            return Err(Wait::Until(earliest.max(now + self.nap)));
        }
        s.tat = Some(current + self.interval);
        s.in_flight += 1;
        Ok(())
    }

    /// A send let through by `check` ended at `at`: its slot comes free `HOLD` later, or at
    /// once when the send did not go (`used` false).
    pub fn end(&self, at: Instant, used: bool) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if used {
            let free = at + HOLD;
            // Answers come back in any order; the queue stays sorted (they are pushed at
            // their ending instant, which only grows).
            let free = s.releases.back().map_or(free, |last| free.max(*last));
            s.releases.push_back(free);
        }
        drop(s);
        self.ended.notify_one();
    }

    /// When every send let through so far is out of every window a later one could share:
    /// `None` while some are still in flight.
    pub fn quiet_at(&self) -> Option<Instant> {
        let s = self.lock();
        if s.in_flight > 0 {
            return None;
        }
        Some(
            s.releases
                .back()
                .copied()
                .unwrap_or(s.not_before)
                .max(s.not_before),
        )
    }

    /// Waits until a send may go, and takes its slot.
    pub async fn until_ready(self: &std::sync::Arc<Self>) -> Slot {
        loop {
            // Registered before looking, so a send that ends in between is not missed.
            let ended = self.ended.notified();
            match self.check(Instant::now()) {
                Ok(()) => {
                    return Slot {
                        pacer: self.clone(),
                        used: true,
                    };
                }
                Err(Wait::Until(at)) => tokio::time::sleep_until(at).await,
                Err(Wait::SendEnds) => ended.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn most_in_one_second(passes: &[Instant]) -> usize {
        let mut sorted = passes.to_vec();
        sorted.sort();
        let mut first = 0;
        let mut most = 0;
        for (last, at) in sorted.iter().enumerate() {
            while *at - sorted[first] >= Duration::from_secs(1) {
                first += 1;
            }
            most = most.max(last - first + 1);
        }
        most
    }

    /// A sender that waits on the pacer, its sends answered at once: within 2 % of the rate,
    /// and no one-second window holds more than `mps`.
    #[tokio::test(start_paused = true)]
    async fn waiting_keeps_the_rate_and_the_limit() {
        for mps in [1u32, 80, 250, 1000, 5000] {
            let pacer = std::sync::Arc::new(Pacer::new(mps));
            let start = Instant::now();
            let secs = 5;
            let mut passes = Vec::new();
            while Instant::now() < start + Duration::from_secs(secs) {
                let slot = pacer.until_ready().await;
                passes.push(Instant::now());
                drop(slot);
            }
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

    /// Sends whose requests take anywhere from nothing to 400 ms to arrive and as long again
    /// to be answered (a loaded machine bunches them): counted by arrival, as Meta counts, no
    /// one-second window holds more than `mps`, and most of the rate is kept.
    #[tokio::test(start_paused = true)]
    async fn bunched_arrivals_never_exceed_the_rate() {
        for mps in [1u32, 20, 80, 250, 1000] {
            let pacer = std::sync::Arc::new(Pacer::new(mps));
            let arrivals = std::sync::Arc::new(Mutex::new(Vec::new()));
            let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(mps));
            let start = Instant::now();
            let secs = 6;
            let mut tasks = Vec::new();
            while Instant::now() < start + Duration::from_secs(secs) {
                let slot = pacer.until_ready().await;
                // Slots end on other tasks: the guard borrows the pacer, so end by hand.
                std::mem::forget(slot);
                let (to, back) = (rng.random_range(0..400u64), rng.random_range(0..400u64));
                let (pacer, arrivals) = (pacer.clone(), arrivals.clone());
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(to)).await;
                    arrivals.lock().unwrap().push(Instant::now());
                    tokio::time::sleep(Duration::from_millis(back)).await;
                    pacer.end(Instant::now(), true);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let arrivals = arrivals.lock().unwrap().clone();
            let most = most_in_one_second(&arrivals);
            assert!(
                most <= mps as usize,
                "{mps} mps: {most} arrived in one second"
            );
            // A slot turns over every 1 s + 400 ms on average.
            let expected = f64::from(mps) * secs as f64 / 1.4;
            assert!(
                arrivals.len() as f64 >= expected * 0.9,
                "{mps} mps: only {} in {secs} s",
                arrivals.len()
            );
        }
    }

    /// Senders that always want to go, looking at 50 µs steps for three seconds, answered at
    /// once: no one-second window holds more than `mps`, and the rate is within 2 % of it.
    #[test]
    fn no_second_holds_more_than_the_rate_and_little_is_lost() {
        for mps in [1u32, 20, 80, 250, 1000, 5000] {
            let pacer = std::sync::Arc::new(Pacer::new(mps));
            let start = Instant::now();
            let mut passes = Vec::new();
            let step = Duration::from_micros(50);
            let secs = 3u32;
            let mut t = start;
            while t < start + Duration::from_secs(u64::from(secs)) {
                while pacer.check(t).is_ok() {
                    pacer.end(t, true);
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

    /// A limiter that starts closed lets nothing through before its instant; a send that did
    /// not go gives its slot back at once.
    #[test]
    fn closed_until_its_start_and_unused_slots_come_back() {
        let now = Instant::now();
        let pacer = std::sync::Arc::new(Pacer::starting_at(1, now + Duration::from_millis(700)));
        assert_eq!(
            pacer.check(now),
            Err(Wait::Until(now + Duration::from_millis(700)))
        );
        let at = now + Duration::from_millis(700);
        assert_eq!(pacer.check(at), Ok(()));
        assert_eq!(
            pacer.check(at + Duration::from_secs(3)),
            Err(Wait::SendEnds)
        );
        pacer.end(at, false);
        assert_eq!(pacer.check(at + Duration::from_secs(3)), Ok(()));
        pacer.end(at + Duration::from_secs(3), true);
        assert_eq!(
            pacer.check(at + Duration::from_secs(4)),
            Err(Wait::Until(at + Duration::from_secs(3) + HOLD))
        );
        assert_eq!(pacer.quiet_at(), Some(at + Duration::from_secs(3) + HOLD));
    }
}
