//! When to run a sync cycle (PROTOCOL.md §7.7), without IO: the host feeds events and the current time (ms) and
//! asks when the next cycle is due. Cycles come from local writes (debounced), a timer, watch wake-ups and
//! online/foreground events; failures back off exponentially from 1 s to 60 s with jitter; success resets it.
//! An overloaded server's `Retry-After` (429, 503) is a floor under that backoff, capped at its 60 s ceiling.
//! At most one cycle runs at a time.

/// Scheduling knobs.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleConfig {
    /// Least time between the starts of two cycles caused by writes: a write starts a cycle at once when none
    /// started within this delay (an isolated write reaches the server without waiting), else when the delay
    /// has passed, so the writes of a burst are batched and a steady stream of writes is never starved.
    pub debounce_ms: u64,
    /// Periodic cycle interval.
    pub interval_ms: u64,
    /// First backoff step.
    pub backoff_min_ms: u64,
    /// Backoff ceiling.
    pub backoff_max_ms: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            debounce_ms: 250,
            interval_ms: 30_000,
            backoff_min_ms: 1_000,
            backoff_max_ms: 60_000,
        }
    }
}

/// The scheduler state.
#[derive(Debug, Clone)]
pub struct Scheduler {
    cfg: ScheduleConfig,
    due: u64,
    running: bool,
    failures: u32,
    backoff_until: u64,
    /// A write or wake-up arrived while a cycle ran: it may have missed it, so another one follows.
    again: bool,
    /// When the last cycle started.
    last_start: Option<u64>,
}

impl Scheduler {
    /// A scheduler whose first cycle is due at `now`.
    pub fn new(cfg: ScheduleConfig, now: u64) -> Self {
        Self {
            cfg,
            due: now,
            running: false,
            failures: 0,
            backoff_until: 0,
            again: false,
            last_start: None,
        }
    }

    /// A local write: a cycle at once, or `debounce_ms` after the last cycle started if that is later. A write
    /// while a cycle runs gets a cycle of its own after it (the running one may not have taken it).
    pub fn on_write(&mut self, now: u64) {
        let earliest = self.last_start.map_or(now, |t| now.max(t + self.cfg.debounce_ms));
        self.due = if self.running { earliest } else { self.due.min(earliest) };
        self.again |= self.running;
    }

    /// A watch wake-up, coming online or to the foreground: a cycle now (backoff still applies after failures).
    pub fn on_wake(&mut self, now: u64) {
        self.due = now;
        self.again |= self.running;
    }

    /// The user asked for a cycle ("sync now"): due now, without waiting out a backoff.
    pub fn on_demand(&mut self, now: u64) {
        self.on_wake(now);
        self.backoff_until = 0;
    }

    /// When the next cycle may start (ms), honouring the backoff; `None` while one is running.
    pub fn next_due(&self) -> Option<u64> {
        (!self.running).then(|| self.due.max(self.backoff_until))
    }

    /// Starts a cycle if one is due at `now`; the host then runs it and reports with [`Scheduler::finish`].
    pub fn try_start(&mut self, now: u64) -> bool {
        if self.next_due().is_some_and(|t| t <= now) {
            self.running = true;
            self.last_start = Some(now);
            return true;
        }
        false
    }

    /// True while a cycle runs.
    pub fn running(&self) -> bool {
        self.running
    }

    /// Consecutive failed cycles.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Reports the end of a cycle. `jitter` in `[0, 1)` (from the host's randomness) spreads retries by up to
    /// +50 %. After success the next cycle is the periodic one.
    pub fn finish(&mut self, now: u64, ok: bool, jitter: f64) {
        self.finish_after(now, ok, jitter, None);
    }

    /// [`Scheduler::finish`] for a failed cycle whose server answered with `Retry-After` (ms,
    /// [`crate::SyncError::retry_after`]): the wait is the larger of the exponential step and the server's
    /// delay, capped at the backoff ceiling (a server cannot park a client for an hour), then jittered, so it
    /// is never shorter than what the server asked for (up to the cap). Ignored after success.
    pub fn finish_after(&mut self, now: u64, ok: bool, jitter: f64, retry_after_ms: Option<u64>) {
        self.running = false;
        let again = std::mem::take(&mut self.again);
        if ok {
            self.failures = 0;
            self.backoff_until = 0;
            // A write or wake-up during the cycle gets a cycle of its own (its due time, at once if passed);
            // otherwise the periodic one.
            if !again && self.due <= now {
                self.due = now + self.cfg.interval_ms;
            }
        } else {
            self.failures += 1;
            let step = self
                .cfg
                .backoff_min_ms
                .saturating_mul(1 << (self.failures - 1).min(16))
                .max(retry_after_ms.unwrap_or(0))
                .min(self.cfg.backoff_max_ms);
            let jittered = step as f64 * (1.0 + 0.5 * jitter.clamp(0.0, 1.0));
            self.backoff_until = now + jittered as u64;
            self.due = self.backoff_until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_isolated_write_goes_at_once_and_a_burst_is_batched_but_never_starved() {
        let mut s = Scheduler::new(ScheduleConfig::default(), 0);
        assert!(s.try_start(0));
        s.finish(0, true, 0.0);
        assert_eq!(s.next_due(), Some(30_000), "periodic after success");
        s.on_write(1_000);
        assert_eq!(
            s.next_due(),
            Some(1_000),
            "a write long after the last cycle goes at once"
        );
        assert!(s.try_start(1_000));
        s.finish(1_020, true, 0.0);
        // Writes every 100 ms: a cycle every 250 ms, each taking what came meanwhile.
        let mut starts = Vec::new();
        for now in (1_100..=2_000).step_by(100) {
            s.on_write(now);
            if s.try_start(now) {
                starts.push(now);
                s.finish(now + 20, true, 0.0);
            }
        }
        assert_eq!(starts, [1_300, 1_600, 1_900]);
        assert_eq!(s.next_due(), Some(2_150), "the burst's last write is not left behind");
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_and_success_resets() {
        let mut s = Scheduler::new(ScheduleConfig::default(), 0);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert!(s.try_start(now));
            s.finish(now, false, 0.0);
            let due = s.next_due().unwrap();
            waits.push(due - now);
            now = due;
        }
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
        s.on_wake(now);
        assert_eq!(
            s.next_due(),
            Some(now),
            "a wake-up does not wait for the periodic timer"
        );
        assert!(s.try_start(now));
        s.finish(now, false, 0.999);
        assert_eq!(s.next_due(), Some(now + 89_970), "jitter adds up to 50 %");
        let t = s.next_due().unwrap();
        assert!(s.try_start(t));
        s.finish(t, true, 0.0);
        assert_eq!((s.failures(), s.next_due()), (0, Some(t + 30_000)));
    }

    #[test]
    fn a_write_during_a_cycle_gets_its_own_cycle_and_demand_skips_the_backoff() {
        let mut s = Scheduler::new(ScheduleConfig::default(), 0);
        assert!(s.try_start(0));
        s.on_write(100);
        s.finish(2_000, true, 0.0);
        assert_eq!(s.next_due(), Some(250), "not pushed to the periodic timer");
        assert!(s.try_start(2_000));
        s.finish(2_000, false, 0.0);
        assert_eq!(s.next_due(), Some(3_000));
        s.on_demand(2_500);
        assert!(s.try_start(2_500), "sync now does not wait out the backoff");
    }

    #[test]
    fn retry_after_is_a_floor_under_the_backoff_capped_at_its_ceiling() {
        let mut s = Scheduler::new(ScheduleConfig::default(), 0);
        assert!(s.try_start(0));
        s.finish_after(0, false, 0.0, Some(5_000));
        assert_eq!(s.next_due(), Some(5_000), "the server's 5 s beat the first 1 s step");
        s.on_wake(1_000);
        assert!(!s.try_start(4_999), "a wake-up does not cut the server's wait short");
        assert!(s.try_start(5_000));
        s.finish_after(5_000, false, 0.999, Some(3_000));
        assert_eq!(
            s.next_due(),
            Some(5_000 + 4_498),
            "jitter spreads the retries above the server's floor"
        );

        // The exponential step wins when it is longer; a huge Retry-After stops at the 60 s ceiling.
        let mut s = Scheduler::new(ScheduleConfig::default(), 0);
        let mut now = 0;
        for _ in 0..3 {
            assert!(s.try_start(now));
            s.finish(now, false, 0.0);
            now = s.next_due().unwrap();
        }
        assert!(s.try_start(now));
        s.finish_after(now, false, 0.0, Some(2_000));
        assert_eq!(
            s.next_due(),
            Some(now + 8_000),
            "fourth failure: 8 s step over a 2 s hint"
        );
        now += 8_000;
        assert!(s.try_start(now));
        s.finish_after(now, false, 0.0, Some(3_600_000));
        assert_eq!(
            s.next_due(),
            Some(now + 60_000),
            "an hour's Retry-After is capped at 60 s"
        );

        // Success clears it, and a hint on success means nothing.
        now += 60_000;
        assert!(s.try_start(now));
        s.finish_after(now, true, 0.0, Some(30_000));
        assert_eq!((s.failures(), s.next_due()), (0, Some(now + 30_000)));
    }
}
