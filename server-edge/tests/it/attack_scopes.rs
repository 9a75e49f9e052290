//! Hostile load on shared data (issue 32 item 3): a writer of many scopes uploading full batches of large rows must
//! not hold the owner locks of other members' scopes for the whole of its batch. Scope owner locks are striped (64
//! stripes), so some unrelated scope always shares a stripe with one of the writer's.

use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// The lock stripe of `scope` (as `sync.lock_owners_v1` computes it).
async fn stripe(t: &Target, scope: &str) -> i64 {
    db(t)
        .await
        .query_one("SELECT hashtextextended($1, 0) & 63", &[&scope])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_writer_of_large_rows_in_many_scopes_holds_a_shared_stripe_for_a_slice_not_its_batch() {
    let t = target_with("attack_scopes", crate::attack::FULL_BODIES);
    let run = id();
    let victim_scope = format!("victim-{run}");
    let victim_stripe = stripe(&t, &victim_scope).await;
    // 16 scopes on 16 different stripes, the first on the victim's.
    let (mut scopes, mut taken) = (Vec::new(), std::collections::BTreeSet::new());
    for i in 0.. {
        let s = format!("w{i}-{run}");
        let k = stripe(&t, &s).await;
        if (scopes.is_empty() && k != victim_stripe)
            || (!scopes.is_empty() && (k == victim_stripe || taken.contains(&k)))
        {
            continue;
        }
        taken.insert(k);
        scopes.push(s);
        if scopes.len() == 16 {
            break;
        }
    }
    let (writer, victim) = (new_user(), new_user());
    for s in &scopes {
        join(&t, s, &writer, Some("writer")).await;
    }
    join(&t, &victim_scope, &victim, Some("writer")).await;
    let w = Device::new(&t, &writer, "w");
    let v = Device::new(&t, &victim, "v");

    // The victim alone.
    let mut scid = 0;
    let mut one = async |v: &Device| {
        scid += 1;
        let started = Instant::now();
        let (status, body) = v
            .upload_raw(json!({"changes": [team_post(scid, &id(), 0, Some(&victim_scope), "hello")]}).to_string())
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["statuses"][0]["status"], "applied", "{body}");
        started.elapsed()
    };
    let mut alone = Vec::new();
    for _ in 0..10 {
        alone.push(one(&v).await);
    }

    // Two full batches of 200 rows of 250 KiB, round robin over the 16 scopes, while the victim uploads one row
    // at a time.
    let name = "n".repeat(250 << 10);
    let batches: Vec<String> = (0..2)
        .map(|b| {
            let changes: Vec<Value> = (0..200)
                .map(|i| team_post(b * 200 + i + 1, &id(), 0, Some(&scopes[i as usize % 16]), &name))
                .collect();
            json!({ "changes": changes }).to_string()
        })
        .collect();
    let writing = tokio::spawn(async move {
        let mut took = Vec::new();
        for body in batches {
            let started = Instant::now();
            let (status, r) = w.upload_raw(body).await;
            assert_eq!(status, 200, "{r}");
            assert!(all_applied(&r), "{}", statuses(&r)[0]);
            took.push(started.elapsed());
        }
        took
    });
    // And 24 scope-aware downloaders, members of the victim's scope (the audit saw 24 × 503 and 15 × 500).
    let readers: Vec<_> = (0..24)
        .map(|i| {
            let (t, scope) = (t.clone(), victim_scope.clone());
            tokio::spawn(async move {
                let reader = new_user();
                join(&t, &scope, &reader, Some("reader")).await;
                let d = Device::new(&t, &reader, &format!("r{i}"));
                let mut seen = Vec::new();
                for _ in 0..20 {
                    seen.push(d.download_raw("scopes=1&after=0&limit=100").await.0);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                seen
            })
        })
        .collect();
    let mut during = Vec::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    while !writing.is_finished() {
        during.push(one(&v).await);
    }
    let took = writing.await.unwrap();
    for r in readers {
        let seen = r.await.unwrap();
        assert!(
            seen.iter().all(|&s| s == 200),
            "a scope-aware download was refused: {seen:?}"
        );
    }
    let worst_alone = alone.iter().max().unwrap();
    let worst = during.iter().max().copied().unwrap_or_default();
    let _ = writeln!(
        std::io::stderr(),
        "attack scoped writer: batches {took:?}; victim alone max {worst_alone:?}, during {} uploads max {worst:?}",
        during.len()
    );
    assert!(!during.is_empty());
    // Generous against a loaded CI machine; before the fix the victim waited for a whole batch (4.3 s measured).
    assert!(
        worst < took.iter().max().unwrap().mul_f64(0.5),
        "the victim waited {worst:?}, for most of a batch ({took:?})"
    );
}

/// Publishing someone else's draft key into one's own scope: a conflict with a deletion, as for a key out of
/// sight, and the draft's author can still publish and edit it.
async fn a_stolen_draft_key_is_refused(t: &Target, thief: &Device, pk: &str, thiefs: &str) {
    let steal = thief.upload(vec![team_post(1, pk, 0, Some(thiefs), "mine now")]).await;
    assert_eq!(steal["statuses"][0]["status"], "conflict", "{steal}");
    assert_eq!(steal["statuses"][0]["server_row"]["deleted"], true, "{steal}");
    assert_eq!(steal["statuses"][0]["server_row"]["server_version"], 0, "{steal}");
    let rows = count(
        &db(t).await,
        "SELECT count(*) FROM business.team_posts WHERE id = $1::text::uuid",
        &[&pk],
    )
    .await;
    assert_eq!(rows, 0, "the key was not published by the thief");
}

#[tokio::test]
async fn a_draft_key_cannot_be_published_by_another_user() {
    let t = target_with("attack_drafts", "");
    let (author, thief) = (new_user(), new_user());
    let (ours, theirs) = (format!("team-{}", id()), format!("team-{}", id()));
    join(&t, &ours, &author, Some("writer")).await;
    join(&t, &theirs, &thief, Some("writer")).await;
    let a = Device::new(&t, &author, "a");
    let b = Device::new(&t, &thief, "b");

    // A draft created through this server is claimed at its first upload.
    let pk = id();
    let r = a.upload(vec![team_post(1, &pk, 0, None, "draft")]).await;
    assert!(all_applied(&r), "{r}");
    a_stolen_draft_key_is_refused(&t, &b, &pk, &theirs).await;
    // The author publishes it and edits it, as before.
    let r = a.upload(vec![team_post(2, &pk, 1, Some(&ours), "published")]).await;
    assert!(all_applied(&r), "{r}");
    let version = r["statuses"][0]["new_server_version"].as_i64().unwrap();
    let r = a.upload(vec![team_post(3, &pk, version, Some(&ours), "edited")]).await;
    assert!(all_applied(&r), "{r}");
    // A key nobody claimed is still anyone's to create.
    let r = b.upload(vec![team_post(2, &id(), 0, Some(&theirs), "new")]).await;
    assert!(all_applied(&r), "{r}");

    // A draft written before claims were recorded (a database from an earlier version) is claimed for its author
    // by the first start that knows the table as scoped.
    let old = id();
    let r = a.upload(vec![team_post(4, &old, 0, None, "old draft")]).await;
    assert!(all_applied(&r), "{r}");
    let db = db(&t).await;
    db.batch_execute(&format!(
        "DELETE FROM sync.scoped_keys WHERE pk_uuid = '{old}'; DELETE FROM sync.scoped_keys_filled"
    ))
    .await
    .unwrap();
    let restarted = target_with("attack_drafts_restarted", "");
    let b2 = Device::new(&restarted, &thief, "b2");
    a_stolen_draft_key_is_refused(&restarted, &b2, &old, &theirs).await;
}
