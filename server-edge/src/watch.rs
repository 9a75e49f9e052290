//! `GET /sync/watch` (PROTOCOL.md §8.3, extension, when `watch` is on): a long-poll that answers as soon as the
//! user has a change from another device above `after`, or at the timeout. Stateless: it looks at the log once
//! per second, taking a connection for each look and giving it back in between, so waiting clients hold no
//! database connection. A user has at most `max_watches_per_user` waiting (429 beyond), and at most a quarter
//! of the pool's size of looks run at one moment (see [`crate::admission`]).

use std::time::Duration;

use oversync_protocol::wire::WatchResponse;
use tokio_postgres::types::Type;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::runtime::{PoolBusy, Runtime};
use crate::service::Service;
use crate::sql::read_function;

/// How often the log is looked at.
const POLL: Duration = Duration::from_secs(1);

/// The body of `sync.latest_change_v1(user, after, source)`: the user's newest change from another device above
/// `after`, or NULL. A backward scan of the `(user_id, server_id)` index from the user's newest change down to
/// `after` (planned by [`read_function`]'s rules; `max()` was planned as a walk of the primary key past every newer
/// change of every user, each second of a watch).
const LATEST_BODY: &str = "SELECT server_id FROM sync.server_change_log
  WHERE (user_id, server_id) > ($1, $2) AND user_id <= $1 AND source_id <> $3
  ORDER BY user_id DESC, server_id DESC LIMIT 1";

/// `sync.latest_change_v1`, created at start-up.
pub fn latest_function() -> String {
    read_function("sync.latest_change_v1", "text, int8, text", "int8", LATEST_BODY)
}

const LATEST_SQL: &str = "SELECT sync.latest_change_v1($1, $2, $3)";

/// Validated watch parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchQuery {
    after: i64,
    timeout_s: u64,
}

impl WatchQuery {
    /// `after` (≥ 0, default 0) and `timeout_s` (1..60, default 25); a malformed parameter is named.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut q = Self {
            after: 0,
            timeout_s: 25,
        };
        let mut seen = (false, false);
        for (k, v) in pairs {
            match k {
                "after" if !seen.0 => {
                    seen.0 = true;
                    q.after = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or("after must be a non-negative integer")?;
                }
                "timeout_s" if !seen.1 => {
                    seen.1 = true;
                    q.timeout_s = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=60).contains(n))
                        .ok_or("timeout_s must be between 1 and 60")?;
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Waits up to `timeout_s` for a change of the user from another device above `after`.
pub async fn watch<R: Runtime>(
    svc: &Service,
    rt: &R,
    who: &Principal,
    q: &WatchQuery,
) -> Result<WatchResponse, ApiError> {
    let _slot = match svc.admission.watch(&who.user_id) {
        Ok(slot) => slot,
        Err(refused) => {
            // Slowed like a refused upload, so a client that re-watches at once cannot spin on 429s.
            rt.sleep(crate::admission::REFUSAL_DELAY).await;
            return Err(refused);
        }
    };
    for look in 0..=q.timeout_s {
        if look > 0 {
            rt.sleep(POLL).await;
        }
        // A bounded share of the pool: when every look is taken, this waiter skips a second. A wake-up is only
        // a hint (§8.3), so a timeout that skipped its last look costs the client one more watch, nothing else.
        let Some(_look) = svc.admission.look() else {
            continue;
        };
        let latest: Option<i64> = {
            let mut conn = match rt.connect().await {
                Ok(c) => c,
                Err(e) if e.is::<PoolBusy>() => continue,
                Err(e) => return Err(ApiError::download(e)),
            };
            svc.ready(&mut conn).await.map_err(ApiError::download)?;
            let row = conn
                .query_typed_one(
                    LATEST_SQL,
                    &[
                        (&who.user_id, Type::TEXT),
                        (&q.after, Type::INT8),
                        (&who.source_id, Type::TEXT),
                    ],
                )
                .await
                .map_err(ApiError::download)?;
            row.get(0)
        };
        if let Some(latest) = latest {
            return Ok(WatchResponse {
                changed: true,
                latest_server_id: latest,
            });
        }
    }
    Ok(WatchResponse {
        changed: false,
        latest_server_id: q.after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_named() {
        let q = |s: &[(&'static str, &'static str)]| WatchQuery::from_pairs(s.iter().copied());
        assert_eq!(
            q(&[]),
            Ok(WatchQuery {
                after: 0,
                timeout_s: 25
            })
        );
        assert_eq!(
            q(&[("after", "7"), ("timeout_s", "1")]),
            Ok(WatchQuery { after: 7, timeout_s: 1 })
        );
        assert_eq!(
            q(&[("after", "-1")]).unwrap_err(),
            "after must be a non-negative integer"
        );
        assert_eq!(
            q(&[("after", "x")]).unwrap_err(),
            "after must be a non-negative integer"
        );
        assert_eq!(
            q(&[("timeout_s", "0")]).unwrap_err(),
            "timeout_s must be between 1 and 60"
        );
        assert_eq!(
            q(&[("timeout_s", "61")]).unwrap_err(),
            "timeout_s must be between 1 and 60"
        );
    }
}
