//! The one retry delay every loop in promsd uses (etcd reconnects, registrations, accept errors).
//!
//! Delays double from `base` up to `cap`; each is jittered to between half and all of its nominal value, so
//! a fleet of hosts that lost etcd at the same moment does not come back in lockstep. `reset` after a
//! success starts again from `base`. Callers log once per step (not per attempt of a tight loop): the step
//! is the unit of retrying.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    /// Steps taken since the last reset.
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// `base` is the first nominal delay, `cap` the largest (a `cap` below `base` is raised to it).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap: cap.max(base), attempt: 0, rng: fastrand::Rng::new() }
    }

    /// The same, with a fixed jitter sequence (tests).
    pub fn with_seed(base: Duration, cap: Duration, seed: u64) -> Self {
        Self { rng: fastrand::Rng::with_seed(seed), ..Self::new(base, cap) }
    }

    /// Lowers (or raises) the cap from now on, e.g. to stay within a lease's TTL.
    pub fn set_cap(&mut self, cap: Duration) {
        self.cap = cap.max(self.base);
    }

    /// The nominal delay of the next step, before jitter.
    fn nominal(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).unwrap_or(self.cap).min(self.cap)
    }

    /// The delay before the next attempt; each call is one step further.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal();
        self.attempt = self.attempt.saturating_add(1);
        let half = nominal / 2;
        let spread = u64::try_from((nominal - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng.u64(0..=spread))
    }

    /// Sleeps for the next delay and returns it.
    pub async fn wait(&mut self) -> Duration {
        let delay = self.next_delay();
        tokio::time::sleep(delay).await;
        delay
    }

    /// After a success: the next failure waits `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Steps since the last reset (how many retries in a row).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::with_seed(100 * MS, 5000 * MS, 7);
        let nominal = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000];
        for expected in nominal {
            let delay = backoff.next_delay();
            assert!(
                delay >= expected * MS / 2 && delay <= expected * MS,
                "{delay:?} not in [{expected}/2, {expected}] ms"
            );
        }
        assert_eq!(backoff.attempts(), 9);
    }

    #[test]
    fn reset_starts_again_from_the_base() {
        let mut backoff = Backoff::with_seed(100 * MS, 5000 * MS, 1);
        for _ in 0..20 {
            backoff.next_delay();
        }
        backoff.reset();
        assert!(backoff.next_delay() <= 100 * MS);
    }

    #[test]
    fn jitter_spreads_hosts_apart() {
        let delays: std::collections::BTreeSet<Duration> =
            (0..16).map(|seed| Backoff::with_seed(1000 * MS, 1000 * MS, seed).next_delay()).collect();
        assert!(delays.len() > 8, "{delays:?}");
    }

    #[test]
    fn a_lower_cap_applies_at_once_and_never_goes_below_the_base() {
        let mut backoff = Backoff::with_seed(100 * MS, 5000 * MS, 3);
        for _ in 0..10 {
            backoff.next_delay();
        }
        backoff.set_cap(300 * MS);
        assert!(backoff.next_delay() <= 300 * MS);
        backoff.set_cap(MS);
        assert!(backoff.next_delay() >= 50 * MS);
    }

    #[test]
    fn never_overflows() {
        let mut backoff = Backoff::with_seed(Duration::from_secs(u64::MAX / 4), Duration::MAX, 0);
        for _ in 0..100 {
            backoff.next_delay();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_the_delay() {
        let mut backoff = Backoff::with_seed(100 * MS, 100 * MS, 5);
        let start = tokio::time::Instant::now();
        let delay = backoff.wait().await;
        // tokio's timer has millisecond resolution: the sleep ends within the millisecond after the delay.
        let slept = start.elapsed();
        assert!(slept >= delay && slept <= delay + MS, "slept {slept:?} for a delay of {delay:?}");
    }
}
