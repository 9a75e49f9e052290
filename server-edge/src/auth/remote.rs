//! The identity providers' key sets, fetched with the host's own HTTP ([`Runtime::get`]: reqwest natively,
//! `fetch` on the Worker) and cached per process or isolate as [`super::cache`] decides.
//!
//! No lock is held across a fetch, and a request never waits on another request's future (workerd forbids
//! it): a request that finds the first fetch in flight sleeps and looks again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{Either, join_all, select};

use super::cache::{Cache, CachePolicy, Plan};
use super::jwks::{KeySet, MAX_JWKS_BYTES, max_age};
use crate::runtime::Runtime;

/// How often a request waiting for the first set looks again.
const WAIT_STEP: Duration = Duration::from_millis(20);

/// The configured key sets.
#[derive(Debug)]
pub struct Jwks {
    sources: Vec<Source>,
    policy: CachePolicy,
}

#[derive(Debug)]
struct Source {
    url: String,
    cache: Mutex<Cache>,
}

/// No key set could be had from any identity provider: answered 503, since a new token would not help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

impl Jwks {
    /// Key sets at `urls`, cached under `policy`.
    pub fn new(urls: &[String], policy: CachePolicy) -> Self {
        Self {
            sources: urls
                .iter()
                .map(|url| Source {
                    url: url.clone(),
                    cache: Mutex::new(Cache::default()),
                })
                .collect(),
            policy,
        }
    }

    /// The sets to check a token naming `kid` against at `now`: cached, or fetched when the cache says so.
    pub async fn sets<R: Runtime>(
        &self,
        rt: &R,
        kid: Option<&str>,
        now: Duration,
    ) -> Result<Vec<Arc<KeySet>>, Unavailable> {
        let sets = join_all(self.sources.iter().map(|s| self.set(s, rt, kid, now))).await;
        let sets: Vec<_> = sets.into_iter().flatten().collect();
        if sets.is_empty() { Err(Unavailable) } else { Ok(sets) }
    }

    async fn set<R: Runtime>(&self, source: &Source, rt: &R, kid: Option<&str>, now: Duration) -> Option<Arc<KeySet>> {
        let mut waited = Duration::ZERO;
        loop {
            let plan = lock(&source.cache).plan(&self.policy, now + waited, kid);
            match plan {
                Plan::Use(set) => return Some(set),
                Plan::Unavailable => return None,
                Plan::Wait if waited >= self.policy.fetch_timeout => return None,
                Plan::Wait => {
                    rt.sleep(WAIT_STEP).await;
                    waited += WAIT_STEP;
                }
                Plan::Fetch(fallback) => return self.fetch(source, rt, now + waited).await.or(fallback),
            }
        }
    }

    async fn fetch<R: Runtime>(&self, source: &Source, rt: &R, started: Duration) -> Option<Arc<KeySet>> {
        // Clears the in-flight mark if this request is dropped mid-fetch.
        struct Abandon<'a>(Option<&'a Mutex<Cache>>);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if let Some(cache) = self.0 {
                    lock(cache).abandoned();
                }
            }
        }
        let mut guard = Abandon(Some(&source.cache));
        let get = std::pin::pin!(rt.get(&source.url, MAX_JWKS_BYTES));
        let timeout = std::pin::pin!(rt.sleep(self.policy.fetch_timeout));
        let outcome = match select(get, timeout).await {
            Either::Left((Ok(reply), _)) if (200..300).contains(&reply.status) => KeySet::parse(&reply.body)
                .map(|set| (set, max_age(reply.cache_control.as_deref())))
                .map_err(|e| e.to_string()),
            Either::Left((Ok(reply), _)) => Err(format!("HTTP {}", reply.status)),
            Either::Left((Err(e), _)) => Err(e.to_string()),
            Either::Right(_) => Err(format!("no answer within {:?}", self.policy.fetch_timeout)),
        };
        guard.0 = None;
        let mut cache = lock(&source.cache);
        match outcome {
            Ok((set, max_age)) => {
                metrics::counter!(crate::observe::names::JWKS, "result" => "ok").increment(1);
                tracing::info!(url = %source.url, keys = set.keys.len(), "fetched the identity provider's keys");
                Some(cache.fetched(&self.policy, started, set, max_age))
            }
            Err(error) => {
                metrics::counter!(crate::observe::names::JWKS, "result" => "error").increment(1);
                let kept = cache.failed(started);
                tracing::warn!(url = %source.url, %error, kept_last_good_set = kept.is_some(),
                    "fetching the identity provider's keys failed");
                kept
            }
        }
    }
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}
