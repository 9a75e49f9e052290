//! How many rows the next snapshot or download page asks for: as many as the device applies within a time
//! budget.
//!
//! A page is applied in one synchronous transaction, and a browser worker answers no UI query meanwhile. Its
//! cost per row is not fixed: a new device starts with cold caches and, in a browser, with the wasm running
//! in V8's baseline tier until the optimising compiler has caught up (the first ~0.5 s of a hydration on
//! the bench machine, at two to three times the cost per row). Slow phones pay more for good. So pages
//! start small and are sized from the last page's measured apply time: `budget × rows / elapsed`, at most
//! four times the previous size per step, between [`MIN_ROWS`] and the configured limit. Without a clock (or
//! a budget) every page asks for the limit.
//!
//! The engine keeps the size a loop ended with, and the next snapshot or download loop resumes from it: only
//! the first loop after opening pays the small pages, and a later catch-up of many changes is not cut into a
//! 100-row page, a 400-row page and the rest.

/// The smallest page the pacer asks for (a smaller one would spend most of its time in the commit).
const MIN_ROWS: i64 = 100;
/// Growth per page at most: one fast page does not jump to the limit.
const MAX_GROWTH: i64 = 4;

/// The page size for the next snapshot or download request.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    budget_ms: Option<f64>,
    max: i64,
    next: i64,
}

impl Pacer {
    /// Pages of at most `max` rows; with a budget, the first asks for [`MIN_ROWS`] (or `max`, if smaller).
    pub fn new(max: i64, budget_ms: Option<f64>) -> Self {
        let max = max.max(1);
        let budget_ms = budget_ms.filter(|b| *b > 0.0);
        let next = if budget_ms.is_some() { MIN_ROWS.min(max) } else { max };
        Self { budget_ms, max, next }
    }

    /// Starts from the size an earlier pacer ended with ([`Pacer::limit`]), within this one's bounds; `None`
    /// (nothing learned yet) keeps the small start. Without a budget every page asks for the limit anyway.
    pub fn resume(mut self, learned: Option<i64>) -> Self {
        if let (Some(_), Some(rows)) = (self.budget_ms, learned) {
            self.next = rows.clamp(MIN_ROWS.min(self.max), self.max);
        }
        self
    }

    /// Rows to ask for next.
    pub fn limit(&self) -> i64 {
        self.next
    }

    /// A page of `rows` rows, asked for with `limit = asked`, was applied between the clock readings `began`
    /// and `ended` (`None`: no clock, so nothing to learn from).
    pub fn timed(&mut self, rows: usize, asked: i64, began: Option<f64>, ended: Option<f64>) {
        if let (Some(t0), Some(t1)) = (began, ended) {
            self.applied(rows, asked, t1 - t0);
        }
    }

    /// A page of `rows` rows, asked for with `limit = asked`, took `elapsed_ms` to apply.
    fn applied(&mut self, rows: usize, asked: i64, elapsed_ms: f64) {
        let Some(budget) = self.budget_ms else {
            return;
        };
        if rows == 0 {
            return;
        }
        // A short page (the rows ran out) within the budget says nothing about a full one: its commit, a fixed
        // cost, weighs more per row. Only a short page over the budget counts.
        if (rows as i64) < asked && elapsed_ms <= budget {
            return;
        }
        // A clock that did not move (coarse timers) means "fast": grow as far as allowed.
        let fits = if elapsed_ms > 0.0 {
            (budget * rows as f64 / elapsed_ms) as i64
        } else {
            i64::MAX
        };
        let ceiling = (rows as i64).max(self.next).saturating_mul(MAX_GROWTH);
        self.next = fits.min(ceiling).clamp(MIN_ROWS.min(self.max), self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_budget_every_page_asks_for_the_limit() {
        let mut p = Pacer::new(1000, None);
        assert_eq!(p.limit(), 1000);
        p.applied(1000, 1000, 500.0);
        assert_eq!(p.limit(), 1000);
        assert_eq!(Pacer::new(1000, Some(0.0)).limit(), 1000);
    }

    #[test]
    fn pages_start_small_and_grow_at_most_fourfold_to_the_limit() {
        let mut p = Pacer::new(1000, Some(30.0));
        assert_eq!(p.limit(), 100);
        p.applied(100, 100, 1.0);
        assert_eq!(p.limit(), 400);
        p.applied(400, 400, 2.0);
        assert_eq!(p.limit(), 1000);
        p.applied(1000, 1000, 0.0);
        assert_eq!(p.limit(), 1000);
    }

    #[test]
    fn a_slow_page_shrinks_the_next_to_the_budget_but_not_below_the_minimum() {
        let mut p = Pacer::new(1000, Some(30.0));
        p.applied(100, 100, 1.0);
        p.applied(400, 400, 2.0);
        p.applied(1000, 1000, 60.0);
        assert_eq!(p.limit(), 500);
        p.applied(500, 500, 1000.0);
        assert_eq!(p.limit(), MIN_ROWS);
    }

    #[test]
    fn a_short_page_within_the_budget_teaches_nothing_and_one_over_it_shrinks() {
        let mut p = Pacer::new(1000, Some(30.0));
        p.applied(100, 100, 1.0);
        p.applied(3, 400, 2.0);
        assert_eq!(p.limit(), 400, "a 3-row tail in 2 ms is mostly its commit");
        p.applied(300, 400, 60.0);
        assert_eq!(p.limit(), 150);
    }

    #[test]
    fn a_resumed_pacer_starts_where_the_last_one_ended_within_its_bounds() {
        let mut first = Pacer::new(1000, Some(30.0));
        first.applied(100, 100, 1.0);
        first.applied(400, 400, 2.0);
        assert_eq!(Pacer::new(1000, Some(30.0)).resume(Some(first.limit())).limit(), 1000);
        assert_eq!(Pacer::new(1000, Some(30.0)).resume(None).limit(), MIN_ROWS);
        assert_eq!(Pacer::new(500, Some(30.0)).resume(Some(1000)).limit(), 500);
        assert_eq!(Pacer::new(1000, Some(30.0)).resume(Some(7)).limit(), MIN_ROWS);
        assert_eq!(
            Pacer::new(1000, None).resume(Some(200)).limit(),
            1000,
            "no budget: always the limit"
        );
    }

    #[test]
    fn a_small_limit_bounds_everything() {
        let mut p = Pacer::new(10, Some(30.0));
        assert_eq!(p.limit(), 10);
        p.applied(10, 10, 0.1);
        assert_eq!(p.limit(), 10);
        p.applied(10, 10, 1000.0);
        assert_eq!(p.limit(), 10);
    }
}
