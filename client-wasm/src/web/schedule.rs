//! The sans-IO [`Scheduler`](crate::schedule::Scheduler) for the worker's loop: it feeds events and `Date.now()`.

use wasm_bindgen::prelude::*;

use crate::schedule::{ScheduleConfig, Scheduler};

/// When the next sync cycle is due (debounce, timer, wake-ups, backoff with jitter).
#[wasm_bindgen]
pub struct SyncSchedule(Scheduler);

#[wasm_bindgen]
impl SyncSchedule {
    /// A schedule whose first cycle is due at `now` (ms); `interval_ms` is the periodic cycle.
    #[wasm_bindgen(constructor)]
    pub fn new(now: f64, interval_ms: f64, debounce_ms: f64) -> SyncSchedule {
        let cfg = ScheduleConfig {
            interval_ms: interval_ms as u64,
            debounce_ms: debounce_ms as u64,
            ..ScheduleConfig::default()
        };
        SyncSchedule(Scheduler::new(cfg, now as u64))
    }

    /// A local write.
    #[wasm_bindgen(js_name = onWrite)]
    pub fn on_write(&mut self, now: f64) {
        self.0.on_write(now as u64);
    }

    /// Online, foreground, a watch wake-up or an explicit request.
    #[wasm_bindgen(js_name = onWake)]
    pub fn on_wake(&mut self, now: f64) {
        self.0.on_wake(now as u64);
    }

    /// When the next cycle may start (ms), or `undefined` while one runs.
    #[wasm_bindgen(js_name = nextDue)]
    pub fn next_due(&self) -> Option<f64> {
        self.0.next_due().map(|t| t as f64)
    }

    /// "Sync now": due at once, without waiting out a backoff.
    #[wasm_bindgen(js_name = onDemand)]
    pub fn on_demand(&mut self, now: f64) {
        self.0.on_demand(now as u64);
    }

    /// Starts a cycle if one is due.
    #[wasm_bindgen(js_name = tryStart)]
    pub fn try_start(&mut self, now: f64) -> bool {
        self.0.try_start(now as u64)
    }

    /// Reports the end of the running cycle; `retry_after_ms` is a failed cycle's `error.retryAfterMs` (the
    /// server's `Retry-After`), a floor under the backoff.
    pub fn finish(&mut self, now: f64, ok: bool, retry_after_ms: Option<f64>) {
        let hint = retry_after_ms
            .filter(|ms| ms.is_finite() && *ms > 0.0)
            .map(|ms| ms as u64);
        self.0.finish_after(now as u64, ok, js_sys::Math::random(), hint);
    }
}
