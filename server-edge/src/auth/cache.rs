//! When to fetch an identity provider's key set: pure decisions over one cached set, taken under a lock by
//! [`super::remote`] and unit-tested here without a clock or a network.
//!
//! - A set is fresh for its `Cache-Control` max-age, clamped to the configured bounds.
//! - A stale set is refetched by the first request that sees it stale; the others go on with the stale set
//!   meanwhile, so an identity provider that is slow or down never stalls requests that have a set.
//! - A token naming a `kid` the fresh set lacks (a rotation the cache has not seen yet) refetches at most once
//!   per `refetch_interval`: a flood of random `kid`s costs the identity provider one request per interval.
//! - A failed fetch keeps the last good set and is retried after `refetch_interval`, not by every request.
//! - Only one fetch is in flight; one that neither finished nor failed within `fetch_timeout` (its request was
//!   dropped) no longer counts.

use std::sync::Arc;
use std::time::Duration;

use super::jwks::KeySet;

/// Bounds on fetching and caching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Freshness when the response has no `Cache-Control` max-age.
    pub default_max_age: Duration,
    /// The shortest freshness honoured (a `no-store` set is still kept this long).
    pub min_max_age: Duration,
    /// The longest freshness honoured, so a removed key stops working within it.
    pub max_max_age: Duration,
    /// The least time between two fetches that expiry did not cause (unknown `kid`, retry after a failure).
    pub refetch_interval: Duration,
    /// How long one fetch may take.
    pub fetch_timeout: Duration,
}

impl CachePolicy {
    /// How long a set fetched with `max_age` (from its `Cache-Control`) stays fresh.
    pub fn freshness(&self, max_age: Option<Duration>) -> Duration {
        max_age
            .unwrap_or(self.default_max_age)
            .clamp(self.min_max_age, self.max_max_age.max(self.min_max_age))
    }
}

/// What a request does about the key set.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Check the token against this set (it may lack the token's key).
    Use(Arc<KeySet>),
    /// Fetch now, then report [`Cache::fetched`] or [`Cache::failed`] (or [`Cache::abandoned`]). The set is
    /// what to use if the fetch fails.
    Fetch(Option<Arc<KeySet>>),
    /// Another request is fetching the first set: ask again shortly.
    Wait,
    /// No set yet, and the last fetch failed less than `refetch_interval` ago.
    Unavailable,
}

/// One cached set and the state of its fetches. Times are since the Unix epoch.
#[derive(Debug, Default)]
pub struct Cache {
    set: Option<Arc<KeySet>>,
    fresh_until: Duration,
    /// Start of the last fetch, and whether it failed.
    last_fetch: Option<(Duration, bool)>,
    in_flight: Option<Duration>,
}

impl Cache {
    /// Decides for a token naming `kid` at `now`. A [`Plan::Fetch`] marks the fetch as in flight.
    pub fn plan(&mut self, policy: &CachePolicy, now: Duration, kid: Option<&str>) -> Plan {
        if let Some(since) = self.in_flight {
            if now < since + policy.fetch_timeout {
                return self.set.clone().map_or(Plan::Wait, Plan::Use);
            }
            self.in_flight = None;
        }
        let since_last = self.last_fetch.map(|(at, failed)| (now.saturating_sub(at), failed));
        let cooled = since_last.is_none_or(|(ago, _)| ago >= policy.refetch_interval);
        let failed_recently = since_last.is_some_and(|(ago, failed)| failed && ago < policy.refetch_interval);
        let fetch = match &self.set {
            None if failed_recently => return Plan::Unavailable,
            None => true,
            Some(_) if now >= self.fresh_until => !failed_recently,
            Some(set) => cooled && kid.is_some_and(|kid| !set.has_kid(kid)),
        };
        if !fetch {
            return self.set.clone().map_or(Plan::Unavailable, Plan::Use);
        }
        self.in_flight = Some(now);
        self.last_fetch = Some((now, false));
        Plan::Fetch(self.set.clone())
    }

    /// The fetch started at `started` brought `set`, fresh for `max_age` (its `Cache-Control`).
    pub fn fetched(
        &mut self,
        policy: &CachePolicy,
        started: Duration,
        set: KeySet,
        max_age: Option<Duration>,
    ) -> Arc<KeySet> {
        let set = Arc::new(set);
        self.set = Some(set.clone());
        self.fresh_until = started + policy.freshness(max_age);
        self.in_flight = None;
        set
    }

    /// The fetch started at `started` failed: the last good set (if any) stays in use.
    pub fn failed(&mut self, started: Duration) -> Option<Arc<KeySet>> {
        self.last_fetch = Some((started, true));
        self.in_flight = None;
        self.set.clone()
    }

    /// The fetching request went away before an answer: the next request may fetch.
    pub fn abandoned(&mut self) {
        self.in_flight = None;
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
