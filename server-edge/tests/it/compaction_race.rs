//! Compaction racing everything else (issue 36): two devices uploading (each upload sent twice, the second a
//! replay), a backend writer, a device paging downloads and the compactor, all at once on one user's rows. Every
//! reader converges with PostgreSQL, and no change is applied twice: each row's version is exactly the number of
//! changes applied to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::compaction::{Rows, catch_up, compact, live, server_rows};
use crate::support::*;

const ROWS: usize = 8;
const ROUNDS: i64 = 40;

/// Uploads `ROUNDS` edits spread over the rows, each twice; counts the changes applied per row.
async fn writer(d: Device, pks: Arc<Vec<String>>, name: &'static str) -> HashMap<String, i64> {
    let mut applied = HashMap::new();
    let mut base: HashMap<String, i64> = pks.iter().map(|k| (k.clone(), 1)).collect();
    for scid in 1..=ROUNDS {
        let pk = &pks[(scid as usize * 3 + name.len()) % ROWS];
        let change = upsert(scid, "users", pk, base[pk], user_row(pk, &format!("{name}{scid}")));
        let first = d.upload(vec![change.clone()]).await;
        let again = d.upload(vec![change]).await;
        match status_at(&first, 0) {
            WireStatus::Applied => {
                // A conflict leaves no record (§6.3): only an applied change is a replay the second time.
                assert_eq!(
                    first["statuses"][0], again["statuses"][0],
                    "a replay answers as the change did"
                );
                *applied.entry(pk.clone()).or_insert(0) += 1;
                base.insert(pk.clone(), first["statuses"][0]["new_server_version"].as_i64().unwrap());
            }
            WireStatus::Conflict => {
                let v = first["statuses"][0]["server_row"]["server_version"].as_i64().unwrap();
                base.insert(pk.clone(), v);
            }
            other => panic!("{other:?}: {first}"),
        }
    }
    applied
}

#[tokio::test]
async fn compaction_racing_uploads_backend_writes_and_paging_downloads_loses_and_repeats_nothing() {
    let t = target_in_own_db("");
    let user = new_user();
    let seed = Device::new(&t, &user, "seed");
    let pks: Arc<Vec<String>> = Arc::new((0..ROWS).map(|_| id()).collect());
    let rows: Vec<_> = (0..ROWS)
        .map(|i| upsert(i as i64 + 1, "users", &pks[i], 0, user_row(&pks[i], "seed")))
        .collect();
    assert!(all_applied(&seed.upload(rows).await));

    let done = Arc::new(AtomicBool::new(false));
    let writers = [("a", Device::new(&t, &user, "a")), ("bb", Device::new(&t, &user, "bb"))]
        .map(|(name, d)| tokio::spawn(writer(d, pks.clone(), name)));
    let backend = {
        let (db, pks) = (db(&t).await, pks.clone());
        tokio::spawn(async move {
            for i in 0..ROUNDS {
                let pk = &pks[(i as usize * 5) % ROWS];
                // A backend statement racing an upload of the same row can deadlock (docs/backend-writes.md §2):
                // retried, as an app retries a 40P01.
                loop {
                    let r = db
                        .execute(
                            "UPDATE business.users SET name = $1 WHERE id = $2::text::uuid",
                            &[&format!("backend{i}"), pk],
                        )
                        .await;
                    match r {
                        Ok(_) => break,
                        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        })
    };
    let compactor = {
        let (t2, done) = (
            Target {
                base: t.base.clone(),
                db_url: t.db_url.clone(),
                _server: None,
            },
            done.clone(),
        );
        tokio::spawn(async move {
            let mut passes = 0;
            while !done.load(Ordering::SeqCst) {
                compact(&t2, 0.0, 1e9).await;
                passes += 1;
            }
            passes
        })
    };
    let reader = Device::new(&t, &user, "reader");
    let (mut seen, mut cursor) = (Rows::new(), 0);
    while !writers.iter().all(|w| w.is_finished()) || !backend.is_finished() {
        cursor = catch_up(&reader, &mut seen, cursor).await;
    }
    let mut applied: HashMap<String, i64> = pks.iter().map(|k| (k.clone(), 1)).collect();
    for w in writers {
        for (pk, n) in w.await.unwrap() {
            *applied.get_mut(&pk).unwrap() += n;
        }
    }
    backend.await.unwrap();
    for i in 0..ROUNDS {
        *applied.get_mut(&pks[(i as usize * 5) % ROWS]).unwrap() += 1;
    }
    done.store(true, Ordering::SeqCst);
    assert!(compactor.await.unwrap() > 0);
    compact(&t, 0.0, 1e9).await;

    let server = server_rows(&t, &user).await;
    for (pk, (version, _)) in &server {
        assert_eq!(
            *version, applied[pk],
            "row {pk}: its version counts every change applied to it, once"
        );
    }
    catch_up(&reader, &mut seen, cursor).await;
    assert_eq!(live(&seen), server, "the reader that paged through it all");
    let mut fresh = Rows::new();
    catch_up(&Device::new(&t, &user, "fresh"), &mut fresh, 0).await;
    assert_eq!(live(&fresh), server, "a new device");
    assert_eq!(log_rows(&t, &user).await, ROWS as i64, "one entry per row is left");
}
