//! Fair share between users: one token cannot take every pooled connection or queue without bound.
//!
//! - **Uploads**: at most `uploads_per_user` in flight per user in this process (native) or isolate (Worker);
//!   the rest are answered 429. Of the admitted ones, only one at a time goes on to read its body and take a
//!   pooled connection: they queue on an in-process per-user turn first, so a user's uploads wait for each other
//!   without holding connections (the PostgreSQL advisory lock stays, for other processes). Natively only: a
//!   Worker request cannot be woken by another, so there the advisory lock alone serialises.
//! - **Reads**: at most `reads_per_user` download and snapshot pages in flight per user (429 beyond); natively one
//!   at a time holds a pooled connection, the others wait for the user's turn without one, as uploads do. With
//!   the page's bounded scan (`download_scan_rows`), one user's reads take a bounded share of the pool however
//!   many it sends.
//! - **Bytes**: upload bodies being handled at one moment are budgeted over all users (`upload_bytes`); past
//!   it, 503 with `Retry-After`.
//! - **Watches**: at most `watches_per_user` long-polls per user (429 beyond), and at most `watch_looks` of all
//!   waiters look at the log at the same moment; a waiter that finds no free look skips one second instead of
//!   queueing for a connection.
//!
//! The counts are per process: several processes (or isolates) each apply them. Bookkeeping is a mutex-guarded
//! map holding an entry only while a user has something in flight, so it is O(active users).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::lock::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, RETRY_AFTER_S};

/// How long a 429 waits before it is sent: a client that ignores `Retry-After` and re-sends at once gets one
/// refusal per this delay per connection, at the cost of a timer, instead of a flood of cheap refusals.
pub const REFUSAL_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Shares {
    /// Uploads of one user in flight (0 = unlimited, and no in-process turn either).
    pub uploads_per_user: usize,
    /// Download and snapshot pages of one user in flight (0 = unlimited, and no in-process turn either).
    pub reads_per_user: usize,
    /// Watches of one user waiting (0 = unlimited).
    pub watches_per_user: usize,
    /// Watch looks at the log at one moment, over all users (0 = unlimited).
    pub watch_looks: usize,
    /// Upload body bytes being handled at one moment, over all users (0 = unlimited). An upload costs several
    /// times its body while it is parsed, validated and written, so this bounds the process's memory however
    /// many users upload at once.
    pub upload_bytes: usize,
}

#[derive(Default)]
struct User {
    uploads: usize,
    reads: usize,
    watches: usize,
    turn: Arc<AsyncMutex<()>>,
    /// The user's turn for reads (created with its first read while it has none in flight).
    read_turns: Option<Arc<Semaphore>>,
}

impl User {
    fn idle(&self) -> bool {
        self.uploads == 0 && self.reads == 0 && self.watches == 0
    }
}

/// The in-flight counts of this process.
#[derive(Default)]
pub struct Admission {
    shares: Option<Shares>,
    users: Mutex<HashMap<String, User>>,
    looks: AtomicUsize,
    bytes: AtomicUsize,
    /// The admission tickets of the upload bodies in flight: the oldest may always grow.
    bodies: Mutex<std::collections::BTreeSet<u64>>,
    next_body: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("shares", &self.shares)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Upload,
    Read,
    Watch,
}

/// An admitted request; its count is given back on drop.
pub struct Slot<'a> {
    admission: &'a Admission,
    user: String,
    kind: Kind,
}

/// An admitted upload, and the user's turn to take a connection.
pub struct UploadSlot<'a> {
    _slot: Slot<'a>,
    /// `None` without a per-user share: uploads then meet only at the advisory lock.
    turn: Option<Arc<AsyncMutex<()>>>,
}

impl UploadSlot<'_> {
    /// Waits for the user's previous upload (in this process) to finish.
    pub async fn turn(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.turn {
            Some(t) => Some(t.clone().lock_owned().await),
            None => None,
        }
    }
}

/// An admitted read, and the user's turn to take a connection.
pub struct ReadSlot<'a> {
    _slot: Slot<'a>,
    /// `None` without a per-user share (or on the Worker, where one request cannot wake another).
    turns: Option<Arc<Semaphore>>,
}

impl ReadSlot<'_> {
    /// Waits until no other read of the user holds a connection (in this process).
    pub async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        match &self.turns {
            Some(t) => t.clone().acquire_owned().await.ok(),
            None => None,
        }
    }
}

/// Upload body bytes reserved; given back on drop.
pub struct Bytes<'a> {
    admission: &'a Admission,
    ticket: u64,
    held: usize,
}

impl Bytes<'_> {
    /// Grows the reservation to `n` bytes, or answers 503 when that passes the budget. The oldest body in flight
    /// always grows, so one body at least goes through whatever the others hold (and a configured request limit
    /// larger than the budget is reachable). Refused or not, what is held is given back on drop.
    pub fn grow_to(&mut self, n: usize) -> Result<(), ApiError> {
        if n <= self.held {
            return Ok(());
        }
        let add = n - self.held;
        let before = self.admission.bytes.fetch_add(add, Ordering::AcqRel);
        self.held = n;
        let budget = self.admission.shares().upload_bytes;
        let oldest = || lock(&self.admission.bodies).first() == Some(&self.ticket);
        if budget == 0 || before + add <= budget || oldest() {
            Ok(())
        } else {
            Err(ApiError::Busy(RETRY_AFTER_S))
        }
    }
}

impl Drop for Bytes<'_> {
    fn drop(&mut self) {
        self.admission.bytes.fetch_sub(self.held, Ordering::AcqRel);
        lock(&self.admission.bodies).remove(&self.ticket);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One look at the log by a watcher; given back on drop.
pub struct Look<'a>(&'a AtomicUsize);

impl Drop for Look<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// Counts under `shares`.
    pub fn new(shares: Shares) -> Self {
        Self {
            shares: Some(shares),
            ..Self::default()
        }
    }

    fn shares(&self) -> Shares {
        self.shares.unwrap_or(Shares {
            uploads_per_user: 0,
            reads_per_user: 0,
            watches_per_user: 0,
            watch_looks: 0,
            upload_bytes: 0,
        })
    }

    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<String, User>> {
        lock(&self.users)
    }

    /// Admits an upload of `user`, or answers 429.
    pub fn upload(&self, user: &str) -> Result<UploadSlot<'_>, ApiError> {
        let limit = self.shares().uploads_per_user;
        let mut users = self.users();
        let u = users.entry(user.to_owned()).or_default();
        if limit > 0 && u.uploads >= limit {
            return Err(ApiError::TooManyRequests("uploads", RETRY_AFTER_S));
        }
        u.uploads += 1;
        // Not on the Worker: workerd refuses to let one request's completion wake another's task ("Cannot
        // perform I/O on behalf of a different request"), so there the advisory lock alone serialises.
        let turn = (limit > 0 && !cfg!(target_arch = "wasm32")).then(|| u.turn.clone());
        Ok(UploadSlot {
            _slot: Slot {
                admission: self,
                user: user.to_owned(),
                kind: Kind::Upload,
            },
            turn,
        })
    }

    /// Admits a download or snapshot page of `user`, or answers 429.
    pub fn read(&self, user: &str) -> Result<ReadSlot<'_>, ApiError> {
        let limit = self.shares().reads_per_user;
        let mut users = self.users();
        let u = users.entry(user.to_owned()).or_default();
        if limit > 0 && u.reads >= limit {
            return Err(ApiError::TooManyRequests("reads", RETRY_AFTER_S));
        }
        u.reads += 1;
        // Not on the Worker: see `upload`.
        let turns = (limit > 0 && !cfg!(target_arch = "wasm32"))
            .then(|| u.read_turns.get_or_insert_with(|| Arc::new(Semaphore::new(1))).clone());
        Ok(ReadSlot {
            _slot: Slot {
                admission: self,
                user: user.to_owned(),
                kind: Kind::Read,
            },
            turns,
        })
    }

    /// Admits a watch of `user`, or answers 429.
    pub fn watch(&self, user: &str) -> Result<Slot<'_>, ApiError> {
        let limit = self.shares().watches_per_user;
        let mut users = self.users();
        let u = users.entry(user.to_owned()).or_default();
        if limit > 0 && u.watches >= limit {
            return Err(ApiError::TooManyRequests("watches", RETRY_AFTER_S));
        }
        u.watches += 1;
        Ok(Slot {
            admission: self,
            user: user.to_owned(),
            kind: Kind::Watch,
        })
    }

    /// A look at the log for a watcher, or `None` while `watch_looks` are under way.
    pub fn look(&self) -> Option<Look<'_>> {
        let limit = self.shares().watch_looks;
        let before = self.looks.fetch_add(1, Ordering::AcqRel);
        let look = Look(&self.looks);
        (limit == 0 || before < limit).then_some(look)
    }

    /// Admits a body declared `declared` bytes long if it fits beside what the bodies in flight hold now (or
    /// nothing is in flight), else answers 503 before a byte of it is read; then reserves its first `first` bytes.
    /// The reservation grows as the body arrives ([`Bytes::grow_to`]), so a body declared long that stalls holds
    /// what it sent.
    pub fn upload_bytes(&self, declared: usize, first: usize) -> Result<Bytes<'_>, ApiError> {
        let budget = self.shares().upload_bytes;
        let held = self.bytes.load(Ordering::Acquire);
        if budget != 0 && held != 0 && held.saturating_add(declared) > budget {
            return Err(ApiError::Busy(RETRY_AFTER_S));
        }
        let ticket = self.next_body.fetch_add(1, Ordering::AcqRel);
        lock(&self.bodies).insert(ticket);
        let mut reserved = Bytes {
            admission: self,
            ticket,
            held: 0,
        };
        reserved.grow_to(first)?;
        Ok(reserved)
    }

    /// Watches and streams a user may hold (0: no limit); a Worker's user hub counts its streams against it.
    pub fn watches_per_user(&self) -> usize {
        self.shares().watches_per_user
    }

    /// Users with something in flight (for tests).
    pub fn active_users(&self) -> usize {
        self.users().len()
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut users = self.admission.users();
        if let Some(u) = users.get_mut(&self.user) {
            match self.kind {
                Kind::Upload => u.uploads -= 1,
                Kind::Read => u.reads -= 1,
                Kind::Watch => u.watches -= 1,
            }
            if u.idle() {
                users.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission() -> Admission {
        Admission::new(Shares {
            uploads_per_user: 2,
            reads_per_user: 4,
            watches_per_user: 1,
            watch_looks: 1,
            upload_bytes: 100,
        })
    }

    #[test]
    fn a_user_past_its_share_is_refused_and_others_are_not() {
        let a = admission();
        let (one, two) = (a.upload("a").unwrap(), a.upload("a").unwrap());
        let third = a.upload("a").err().expect("third upload refused");
        assert_eq!(third.retry_after(), Some(RETRY_AFTER_S));
        assert_eq!(third.parts().0, 429);
        let _b = a.upload("b").expect("another user is not affected");
        drop(one);
        let _again = a.upload("a").expect("a finished upload gives its slot back");
        drop(two);
        let _w = a.watch("a").unwrap();
        assert!(a.watch("a").is_err());
    }

    #[test]
    fn reads_past_a_users_share_are_refused_and_one_at_a_time_holds_a_connection() {
        let a = admission();
        let reads: Vec<_> = (0..4).map(|_| a.read("a").expect("within the share")).collect();
        let fifth = a.read("a").err().expect("the fifth read is refused");
        assert_eq!((fifth.parts().0, fifth.retry_after()), (429, Some(RETRY_AFTER_S)));
        let _other = a.read("b").expect("another user is not affected");
        let now = |r: &ReadSlot<'_>| futures_util::FutureExt::now_or_never(r.turn()).expect("a free turn");
        let first = now(&reads[0]);
        assert!(futures_util::FutureExt::now_or_never(reads[1].turn()).is_none());
        drop(first);
        assert!(futures_util::FutureExt::now_or_never(reads[1].turn()).is_some());
        drop(reads);
        let _again = a.read("a").expect("finished reads give their slots back");
    }

    #[test]
    fn entries_are_removed_when_nothing_is_in_flight() {
        let a = admission();
        {
            let _u = a.upload("a").unwrap();
            let _r = a.read("a").unwrap();
            let _w = a.watch("a").unwrap();
            assert_eq!(a.active_users(), 1);
        }
        assert_eq!(a.active_users(), 0);
    }

    #[test]
    fn upload_bytes_are_budgeted_over_all_users() {
        let a = admission();
        let first = a.upload_bytes(60, 60).unwrap();
        let _second = a.upload_bytes(40, 40).unwrap();
        assert_eq!(
            a.upload_bytes(1, 1).err().and_then(|e| e.retry_after()),
            Some(RETRY_AFTER_S)
        );
        drop(first);
        assert!(
            a.upload_bytes(70, 5).is_err(),
            "declared past what is free: refused before reading"
        );
        let _stalled = a.upload_bytes(50, 5).expect("declared 50, holds 5 until more arrives");
        let mut growing = a.upload_bytes(50, 5).unwrap();
        growing.grow_to(55).unwrap();
        assert!(growing.grow_to(56).is_err(), "past the budget: 40 + 5 + 56 > 100");
        drop(growing);
        let _fourth = a.upload_bytes(10, 10).expect("a refused growth gives back all it held");
        let b = admission();
        let _alone = b
            .upload_bytes(500, 500)
            .expect("a body over the budget goes when it is alone");
    }

    #[test]
    fn the_oldest_body_in_flight_always_grows() {
        let a = admission();
        let mut older = a.upload_bytes(100, 10).unwrap();
        let mut newer = a.upload_bytes(90, 10).unwrap();
        newer.grow_to(80).unwrap();
        older.grow_to(100).expect("the oldest grows past the budget");
        assert!(newer.grow_to(90).is_err(), "a newer one does not");
        drop(older);
        let mut next = a.upload_bytes(10, 10).unwrap();
        next.grow_to(10).unwrap();
        drop(newer);
        next.grow_to(300).expect("now the oldest");
    }

    #[test]
    fn looks_are_shared_and_given_back() {
        let a = admission();
        let first = a.look().expect("a free look");
        assert!(a.look().is_none());
        drop(first);
        assert!(a.look().is_some());
    }

    #[test]
    fn uploads_of_one_user_take_turns() {
        let a = admission();
        let (one, two) = (a.upload("a").unwrap(), a.upload("a").unwrap());
        let first = futures_util::FutureExt::now_or_never(one.turn()).expect("the first turn is free");
        assert!(futures_util::FutureExt::now_or_never(two.turn()).is_none());
        drop(first);
        assert!(futures_util::FutureExt::now_or_never(two.turn()).is_some());
    }
}
