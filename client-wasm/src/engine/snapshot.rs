//! Hydration from snapshot pages (PROTOCOL.md §8.2) with two page requests in flight.
//!
//! A page names the row that ends the page after it (`then_after_*`), so when a page arrives the engine asks for
//! the next page *and* the one after it. The answer is a hint: rows written in between shift the pages. So the
//! page asked from `next_after` must *reach* the hinted row; until a page contains it, the engine keeps paging
//! from there (a row inserted into that range would otherwise push an older row out of both requests, and the
//! catch-up download only repairs rows newer than the window). Pages that overlap write the same rows again,
//! which is harmless: any row newer than the window is rewritten by the catch-up with the version guard.
//!
//! Pages are sized by [`Pacer`]: each asks for what the device applies within the configured budget. A page's
//! hint is the end of a page of *its* size, so the request that fills up to the hint keeps that size, and
//! only the request after the hint takes the new one.
//!
//! [`Ask::next`] is the whole paging rule, without IO; [`Engine::snapshot_pages`] drives it.

use std::collections::VecDeque;
use std::task::Poll;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use oversync_protocol::TableRef;
use oversync_protocol::query::SnapshotQuery;
use oversync_protocol::wire::SnapshotResponse;

use super::pace::Pacer;
use super::write::apply_snapshot_page;
use super::{Engine, SyncError};
use crate::transport::{Credentials, Reply, Transport};

/// One snapshot request: where it starts, and whether it only has to reach a hinted row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ask {
    /// `(<schema>.<table>, pk)` to page after; `None` is the start.
    pub after: Option<(String, String)>,
    /// The row this range must reach (the rows past it are another request's); `None` pages to the end.
    pub reach: Option<(String, String)>,
    /// Rows to ask for.
    pub limit: i64,
}

impl Ask {
    /// The first page, of `limit` rows.
    pub fn start(limit: i64) -> Self {
        Self {
            after: None,
            reach: None,
            limit,
        }
    }

    /// What to ask for after `page` answered `self`; a request that starts a new range asks for `limit` rows.
    pub fn next(&self, page: &SnapshotResponse, limit: i64) -> Vec<Ask> {
        let next_after = Some((page.next_after_table.clone(), page.next_after_pk.clone()));
        match &self.reach {
            Some(target) if page.has_more && !contains(page, target) => vec![Ask {
                after: next_after,
                reach: Some(target.clone()),
                limit: self.limit,
            }],
            Some(_) => Vec::new(),
            None if !page.has_more => Vec::new(),
            None => match (&page.then_after_table, &page.then_after_pk) {
                (Some(table), Some(pk)) => {
                    let hint = (table.clone(), pk.clone());
                    vec![
                        // The hint ends a page of this page's size: that request fits it exactly.
                        Ask {
                            after: next_after,
                            reach: Some(hint.clone()),
                            limit: self.limit,
                        },
                        Ask {
                            after: Some(hint),
                            reach: None,
                            limit,
                        },
                    ]
                }
                _ => vec![Ask {
                    after: next_after,
                    reach: None,
                    limit,
                }],
            },
        }
    }
}

fn contains(page: &SnapshotResponse, (table, pk): &(String, String)) -> bool {
    page.rows.iter().any(|r| {
        r.pk == *pk
            && table
                .split_once('.')
                .is_some_and(|(s, t)| s == r.schema && t == r.table)
    })
}

fn snapshot_page(reply: &Reply) -> Result<SnapshotResponse, SyncError> {
    if reply.status != 200 {
        return Err(SyncError::http(reply));
    }
    let page: SnapshotResponse =
        serde_json::from_slice(&reply.body).map_err(|e| SyncError::not_json("snapshot page", &reply.body, e))?;
    let keyset = |t: &str| TableRef::parse(t).is_some_and(|r| r.to_string() == t);
    if (page.has_more && !keyset(&page.next_after_table))
        || page.then_after_table.as_deref().is_some_and(|t| !keyset(t))
    {
        return Err(SyncError::Protocol(
            "snapshot page: a keyset table that is not <schema>.<table>".into(),
        ));
    }
    Ok(page)
}

impl<T: Transport> Engine<T> {
    /// The page, without its hint when lookahead is off.
    fn hinted(&self, mut page: SnapshotResponse) -> SnapshotResponse {
        if !self.cfg.snapshot_lookahead {
            (page.then_after_table, page.then_after_pk) = (None, None);
        }
        page
    }

    /// Pages the snapshot; returns `(rows applied, max_own_source_change_id, window_until)`. While a page is
    /// applied (synchronously), the requests it led to are already on their way.
    pub(super) async fn snapshot_pages(&mut self) -> Result<(usize, i64, i64), SyncError> {
        let mut pacer =
            Pacer::new(self.cfg.download_limit.clamp(1, 1000), self.cfg.page_budget_ms).resume(self.page_rows);
        let schema = self.cfg.schema.clone();
        // Keyset tables were checked when their page was parsed (`snapshot_page`).
        let path = move |ask: &Ask, until: i64| {
            SnapshotQuery {
                schema: Some(schema.clone()),
                after: ask
                    .after
                    .as_ref()
                    .and_then(|(t, pk)| Some((TableRef::parse(t)?, pk.clone()))),
                limit: ask.limit,
                until,
                scope: None,
            }
            .path()
        };
        // A re-hydration keeps what the device has at the server's version (crate::engine::rehydrate).
        let rehydrating = super::rehydrate::rehydrating(&self.conn)?;
        let start = Ask::start(pacer.limit());
        let first = self.request(&path(&start, 0), None).await?;
        let page = self.hinted(snapshot_page(&first)?);
        let (until, max_own) = (page.window_until, page.max_own_source_change_id);
        let mut token = self.token()?;
        let mut refreshed = false;
        let transport = &self.transport;
        let device = self.device.as_str();
        let fetch = |ask: Ask, token: String| {
            let path = path(&ask, until);
            async move {
                let reply = transport.get(&path, Credentials { token: &token, device }).await;
                (ask, path, token, reply)
            }
        };
        let mut inflight = FuturesUnordered::new();
        let mut ready = VecDeque::new();
        let mut current = Some((start, page));
        let mut applied = 0;
        while let Some((ask, page)) = current.take() {
            for next in ask.next(&page, pacer.limit()) {
                inflight.push(fetch(next, token.clone()));
            }
            // Start the new requests (a transport sends on the first poll), then apply while they travel.
            while let Poll::Ready(Some(done)) = futures_util::poll!(inflight.next()) {
                ready.push_back(done);
            }
            // Let the host serve what queued up during the last page first.
            transport.yield_to_host().await;
            let began = transport.now_ms();
            applied += apply_snapshot_page(&self.conn, &self.shapes, &self.cfg.schema, &page, rehydrating)?;
            self.progress.downloaded(page.rows.len());
            pacer.timed(page.rows.len(), ask.limit, began, transport.now_ms());
            // And again before the next page is parsed: parse and apply are two stretches, not one.
            transport.yield_to_host().await;
            let next = match ready.pop_front() {
                Some(done) => Some(done),
                None => inflight.next().await,
            };
            let Some((ask, path, used, reply)) = next else {
                break;
            };
            self.last_path = Some(path.clone());
            let mut reply = reply?;
            if reply.status == 401 {
                // An expired token: a request sent before a refresh retries with the new one; otherwise ask
                // for a fresh one once.
                if used == token && !refreshed {
                    refreshed = true;
                    token = self
                        .fresh_token()
                        .await?
                        .ok_or_else(|| SyncError::unauthorized(&reply))?;
                    self.refuse_other_user(&token)?;
                }
                reply = transport.get(&path, Credentials { token: &token, device }).await?;
                if reply.status == 401 {
                    return Err(SyncError::unauthorized(&reply));
                }
            }
            current = Some((ask, self.hinted(snapshot_page(&reply)?)));
        }
        drop(inflight);
        self.page_rows = Some(pacer.limit());
        self.token = Some(token);
        Ok((applied, max_own, until))
    }
}

#[cfg(test)]
mod tests {
    use oversync_protocol::RawValue;
    use oversync_protocol::wire::SnapshotRow;

    use super::*;

    const A: &str = "00000000-0000-4000-8000-00000000000a";
    const B: &str = "00000000-0000-4000-8000-00000000000b";
    const C: &str = "00000000-0000-4000-8000-00000000000c";

    fn page(pks: &[&str], has_more: bool, then: Option<&str>) -> SnapshotResponse {
        let rows = pks
            .iter()
            .map(|pk| SnapshotRow {
                schema: "business".into(),
                table: "users".into(),
                pk: (*pk).into(),
                server_version: 1,
                payload: RawValue::from_string("{}".into()).unwrap(),
            })
            .collect();
        SnapshotResponse {
            rows,
            has_more,
            next_after_table: "business.users".into(),
            next_after_pk: pks.last().copied().unwrap_or_default().into(),
            window_until: 9,
            max_own_source_change_id: 0,
            then_after_table: then.map(|_| "business.users".into()),
            then_after_pk: then.map(Into::into),
        }
    }

    fn at(pk: &str) -> Option<(String, String)> {
        Some(("business.users".into(), pk.into()))
    }

    #[test]
    fn a_hint_asks_for_the_next_two_pages_the_first_at_the_hinted_size() {
        let asks = Ask::start(100).next(&page(&[A], true, Some(C)), 400);
        assert_eq!(
            asks,
            [
                Ask {
                    after: at(A),
                    reach: at(C),
                    limit: 100
                },
                Ask {
                    after: at(C),
                    reach: None,
                    limit: 400
                }
            ]
        );
    }

    #[test]
    fn without_a_hint_or_at_the_end_paging_is_sequential() {
        assert_eq!(
            Ask::start(100).next(&page(&[A], true, None), 400),
            [Ask {
                after: at(A),
                reach: None,
                limit: 400
            }]
        );
        assert!(Ask::start(100).next(&page(&[A], false, None), 400).is_empty());
    }

    #[test]
    fn a_range_is_done_when_a_page_reaches_its_row_and_goes_on_when_rows_pushed_it_out() {
        let filler = Ask {
            after: at(A),
            reach: at(C),
            limit: 2,
        };
        assert!(filler.next(&page(&[B, C], true, None), 9).is_empty());
        // An insert shifted the page: C was pushed out, so page on from B until C shows up, at the range's size.
        assert_eq!(
            filler.next(&page(&[B], true, Some(C)), 9),
            [Ask {
                after: at(B),
                reach: at(C),
                limit: 2
            }]
        );
        // C deleted meanwhile: the range runs to the end (overlapping the other request, never missing a row).
        assert!(filler.next(&page(&[B], false, None), 9).is_empty());
    }
}
