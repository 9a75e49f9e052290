//! Pushed changes (issue 21): the host tells the hub when a user's log grows, and `/sync/watch` waiters of that
//! user wake from it instead of looking at the log every second. Natively the host is one `LISTEN` connection
//! (`crate::listen`); a host without one (the Worker today) has no hub and the waiters poll.
//!
//! The hub keeps one broadcast channel per user with waiters, and none for other users: a notification for a
//! user nobody waits for costs a map lookup. A waiter that falls behind, and every waiter when the push source
//! comes or goes, gets [`Notice::Resync`]: it looks at the log once, so nothing committed meanwhile is missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// The member of a scope that stands for every signed-in user (`sync.scope_members.user_id = '*'`, a reader;
/// docs/backend-writes.md §5). No token may name it as its user.
pub const EVERYONE: &str = "*";

/// Notices kept per user for a waiter that has not read them yet; past it, the waiter resyncs.
const BACKLOG: usize = 16;

/// What a waiter hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The user's log grew to `top` with changes of `source`.
    Change {
        /// The device whose changes committed.
        source: Arc<str>,
        /// The highest `server_id` of the commit.
        top: i64,
    },
    /// Notices may have been missed: look at the log.
    Resync,
}

/// The users' channels.
#[derive(Debug, Default)]
pub struct ChangeHub {
    users: Mutex<HashMap<String, broadcast::Sender<Notice>>>,
    live: AtomicBool,
}

impl ChangeHub {
    /// A hub without a push source yet ([`ChangeHub::is_live`] is false until one connects).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether notices arrive: waiters rely on the hub only while it is live, and poll otherwise.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The push source connected or went away; every waiter resyncs either way (a reconnect may have missed
    /// commits, a loss means no more notices).
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
        for sender in self.lock().values() {
            let _ = sender.send(Notice::Resync);
        }
    }

    /// Waits for `user`'s notices from now on.
    pub fn subscribe(&self, user: &str) -> Subscription<'_> {
        let rx = self
            .lock()
            .entry(user.to_owned())
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe();
        Subscription {
            hub: self,
            user: user.to_owned(),
            rx: Some(rx),
        }
    }

    /// `user`'s log grew to `top` with changes of `source`; [`EVERYONE`] (a scope for everyone grew): every
    /// waiting user's.
    pub fn publish(&self, user: &str, source: &str, top: i64) {
        let notice = || Notice::Change {
            source: source.into(),
            top,
        };
        let users = self.lock();
        if user == EVERYONE {
            for sender in users.values() {
                let _ = sender.send(notice());
            }
        } else if let Some(sender) = users.get(user) {
            let _ = sender.send(notice());
        }
    }

    /// Users with waiters.
    #[cfg(test)]
    fn users_waited_for(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Notice>>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One waiter's view of its user's notices; leaving drops the user's channel once nobody waits.
#[derive(Debug)]
pub struct Subscription<'a> {
    hub: &'a ChangeHub,
    user: String,
    rx: Option<broadcast::Receiver<Notice>>,
}

impl Subscription<'_> {
    /// The next notice; `None` if the hub dropped the channel (it never does while a subscription lives).
    pub async fn next(&mut self) -> Option<Notice> {
        match self.rx.as_mut()?.recv().await {
            Ok(n) => Some(n),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Notice::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut users = self.hub.lock();
        if users.get(&self.user).is_some_and(|s| s.receiver_count() == 0) {
            users.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_user_hears_their_own_changes_only_and_leaves_no_channel_behind() {
        let hub = ChangeHub::new();
        let mut alice = hub.subscribe("alice");
        let mut alice2 = hub.subscribe("alice");
        let _bob = hub.subscribe("bob");
        hub.publish("carol", "d", 1);
        hub.publish("alice", "phone", 7);
        let want = Notice::Change {
            source: "phone".into(),
            top: 7,
        };
        assert_eq!(now(alice.next()), Some(want.clone()));
        assert_eq!(now(alice2.next()), Some(want));
        assert_eq!(hub.users_waited_for(), 2);
        drop(alice);
        assert_eq!(hub.users_waited_for(), 2, "alice2 still waits");
        drop(alice2);
        assert_eq!(hub.users_waited_for(), 1);
    }

    #[test]
    fn a_waiter_that_falls_behind_or_a_source_change_resyncs() {
        let hub = ChangeHub::new();
        assert!(!hub.is_live());
        let mut w = hub.subscribe("u");
        for top in 0..(BACKLOG as i64 + 5) {
            hub.publish("u", "d", top);
        }
        assert_eq!(now(w.next()), Some(Notice::Resync), "lagged");
        hub.set_live(true);
        assert!(hub.is_live());
        let mut fresh = hub.subscribe("u");
        hub.set_live(false);
        assert_eq!(now(fresh.next()), Some(Notice::Resync));
    }
}
