//! `GET /sync/watch` (PROTOCOL.md §8.3, extension, when `watch` is on): a long-poll that answers as soon as the
//! user has a change from another device above `after`, or at the timeout. Waiting clients hold no database
//! connection. With a live [`ChangeHub`] (natively: one `LISTEN` connection) a waiter looks at the log once and
//! is then woken by the commit's notification, costing the database nothing while nobody writes; without one it
//! looks once per second, taking a connection for each look and giving it back in between. A user has at most `max_watches_per_user` waiting (429 beyond), and at most a quarter
//! of the pool's size of looks run at one moment (see [`crate::admission`]).

use std::time::Duration;

use oversync_protocol::query::WatchQuery;
use oversync_protocol::wire::WatchResponse;
use tokio_postgres::types::Type;

use futures_util::future::{Either, select};

use crate::auth::Principal;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::hub::{ChangeHub, Notice};
use crate::runtime::{Fixed as _, PoolBusy, Runtime};
use crate::schema::read::{LATEST_SCOPED_SQL, LATEST_SQL};
use crate::schema::scopes::scope_source;

/// How often the log is looked at without a live hub.
const POLL: Duration = Duration::from_secs(1);

/// How soon a waiter with a hub tries its look again when no look share was free.
const BUSY_RETRY: Duration = Duration::from_millis(50);

/// Waits up to `timeout_s` for a change of the user from another device above `after`: woken by the host's
/// [`ChangeHub`] when it has a live one, else looking at the log once per second.
pub async fn watch<R: Runtime>(
    svc: &Ctx<'_>,
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
    let _open = crate::observe::Open::new(crate::observe::names::WATCHES);
    let latest = match rt.hub().filter(|h| h.is_live()) {
        Some(hub) => pushed(svc, rt, hub, who, q).await?,
        None => polled(svc, rt, who, q).await?,
    };
    Ok(match latest {
        Some(latest) => WatchResponse {
            changed: true,
            latest_server_id: latest,
        },
        None => WatchResponse {
            changed: false,
            latest_server_id: q.after,
        },
    })
}

/// Looks at the log once per second.
async fn polled<R: Runtime>(svc: &Ctx<'_>, rt: &R, who: &Principal, q: &WatchQuery) -> Result<Option<i64>, ApiError> {
    for look in 0..=q.timeout_s {
        if look > 0 {
            rt.sleep(POLL).await;
        }
        if let Some(Some(latest)) = self::look(svc, rt, who, q.after, q.scopes).await? {
            return Ok(Some(latest));
        }
    }
    Ok(None)
}

/// Subscribes, looks once (a commit may precede the subscription), then waits for the hub: a notice of another
/// device's commit above `after` answers at once; a resync looks again. If the hub stops being live meanwhile,
/// the long-poll ends unchanged and the client's next one polls.
async fn pushed<R: Runtime>(
    svc: &Ctx<'_>,
    rt: &R,
    hub: &ChangeHub,
    who: &Principal,
    q: &WatchQuery,
) -> Result<Option<i64>, ApiError> {
    let mut notices = hub.subscribe(&who.user_id);
    let mut deadline = std::pin::pin!(rt.sleep(Duration::from_secs(q.timeout_s)));
    let mut pending_look = true;
    loop {
        if pending_look {
            match look(svc, rt, who, q.after, q.scopes).await? {
                Some(Some(latest)) => return Ok(Some(latest)),
                Some(None) => pending_look = false,
                // No look share free: try again shortly, unless the time is up.
                None => {
                    let pause = std::pin::pin!(rt.sleep(BUSY_RETRY));
                    if let Either::Right(_) = select(pause, deadline.as_mut()).await {
                        return Ok(None);
                    }
                    continue;
                }
            }
            if !hub.is_live() {
                return Ok(None);
            }
        }
        let next = std::pin::pin!(notices.next());
        match select(next, deadline.as_mut()).await {
            Either::Right(_) => return Ok(None),
            Either::Left((Some(Notice::Change { source, top }), _)) => {
                if *source != *who.source_id && top > q.after {
                    return Ok(Some(top));
                }
            }
            Either::Left((Some(Notice::Resync), _)) => pending_look = true,
            // The hub dropped the channel: end the long-poll rather than look again and again.
            Either::Left((None, _)) => return Ok(None),
        }
    }
}

/// One look at the log: `None` when no look share or connection was free (a wake-up is only a hint, §8.3, so a
/// skipped look costs the client time, nothing else), else the newest change above `after` from another device;
/// with `scopes`, of the user's scopes too (docs/sharing.md §7).
pub(crate) async fn look<R: Runtime>(
    svc: &Ctx<'_>,
    rt: &R,
    who: &Principal,
    after: i64,
    scopes: bool,
) -> Result<Option<Option<i64>>, ApiError> {
    // A bounded share of the pool, so waiting tabs never crowd out uploads.
    let Some(_look) = svc.admission.look() else {
        return Ok(None);
    };
    let mut conn = match rt.connect().await {
        Ok(c) => c,
        Err(e) if e.is::<PoolBusy>() => return Ok(None),
        Err(e) => return Err(ApiError::download(e)),
    };
    svc.ready(&mut conn).await.map_err(ApiError::download)?;
    let rows = if scopes {
        let scoped = scope_source(&who.user_id, &who.source_id);
        let max = i64::try_from(svc.settings.max_scopes_per_user).unwrap_or(i64::MAX);
        conn.query_fixed(
            LATEST_SCOPED_SQL,
            &[
                (&who.user_id, Type::TEXT),
                (&after, Type::INT8),
                (&who.source_id, Type::TEXT),
                (&scoped, Type::TEXT),
                (&max, Type::INT8),
            ],
        )
        .await
    } else {
        conn.query_fixed(
            LATEST_SQL,
            &[
                (&who.user_id, Type::TEXT),
                (&after, Type::INT8),
                (&who.source_id, Type::TEXT),
            ],
        )
        .await
    }
    .map_err(ApiError::download)?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::Download("the look returned no row".into()))?;
    Ok(Some(row.get(0)))
}
