//! What a running sync cycle is doing, for a progress display. The engine writes it as pages go by; the host
//! reads it while the cycle holds the engine, hence a shared cell rather than an engine field behind `&mut`.

use std::cell::Cell;
use std::rc::Rc;

/// The step a cycle is in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    /// No cycle runs.
    #[default]
    Idle,
    /// Sending pending changes.
    Uploading,
    /// Applying other devices' changes.
    Downloading,
    /// Filling a new database (snapshot pages or the whole log, then the catch-up).
    Hydrating,
    /// Filling a scope the user joined (docs/sharing.md §5.3).
    Backfilling,
}

/// The current step and what it has moved so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The step.
    pub phase: Phase,
    /// Changes the server answered in this step (applied, conflicts and rejections alike).
    pub uploaded: u64,
    /// Rows (snapshot pages) and log entries applied in this step.
    pub downloaded: u64,
}

/// The engine's progress; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Tracker(Rc<Cell<Progress>>);

impl Tracker {
    /// The progress now.
    pub fn get(&self) -> Progress {
        self.0.get()
    }

    /// Enters `phase` with its counts at zero (a hydration's catch-up download stays in the hydration).
    pub(crate) fn enter(&self, phase: Phase) {
        self.0.set(Progress {
            phase,
            ..Progress::default()
        });
    }

    /// `n` more changes answered by the server.
    pub(crate) fn uploaded(&self, n: usize) {
        let mut p = self.0.get();
        p.uploaded += n as u64;
        self.0.set(p);
    }

    /// `n` more rows or entries applied.
    pub(crate) fn downloaded(&self, n: usize) {
        let mut p = self.0.get();
        p.downloaded += n as u64;
        self.0.set(p);
    }

    /// The cycle ended (done or failed).
    pub(crate) fn idle(&self) {
        self.0.set(Progress::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_starts_from_zero_and_clones_share_the_counts() {
        let t = Tracker::default();
        let seen = t.clone();
        t.enter(Phase::Hydrating);
        t.downloaded(100);
        t.downloaded(400);
        assert_eq!(
            seen.get(),
            Progress {
                phase: Phase::Hydrating,
                uploaded: 0,
                downloaded: 500
            }
        );
        t.enter(Phase::Uploading);
        t.uploaded(3);
        assert_eq!(
            seen.get(),
            Progress {
                phase: Phase::Uploading,
                uploaded: 3,
                downloaded: 0
            }
        );
        t.idle();
        assert_eq!(seen.get(), Progress::default());
    }
}
