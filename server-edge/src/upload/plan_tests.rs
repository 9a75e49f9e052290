use super::*;
use crate::config::Config;
use oversync_protocol::validate::validate_change;
use oversync_protocol::wire::ChangeUpload;

const U1: &str = "00000000-0000-4000-8000-000000000001";
const U2: &str = "00000000-0000-4000-8000-000000000002";
const P1: &str = "00000000-0000-4000-8000-0000000000a1";

fn registry() -> Registry {
    let cfg = Config::from_toml(
        r#"
        [[tables]]
        schema = "b"
        table = "users"
        [[tables]]
        schema = "b"
        table = "posts"
        fks = [{ column = "author_id", parent = "b.users" }]
        [[tables]]
        schema = "b"
        table = "nodes"
        fks = [{ column = "parent_id", parent = "b.nodes" }]
        "#,
    )
    .unwrap();
    Registry::from_config(&cfg).unwrap()
}

fn users() -> TableRef {
    TableRef::new("b", "users")
}

fn change(scid: i64, table: &str, op: &str, pk: &str, base: i64, payload: Option<&str>) -> ChangeUpload {
    let json = serde_json::json!({"source_change_id": scid, "schema": "b", "table": table, "op": op, "pk": pk, "server_version": base});
    let mut c: ChangeUpload = serde_json::from_value(json).unwrap();
    c.payload = payload.map(|p| RawValue::from_string(p.to_owned()).unwrap());
    c
}

fn run(changes: &[ChangeUpload], reads: &ReadSet) -> Plan {
    let reg = registry();
    let prepared: Vec<Option<Prepared>> = changes
        .iter()
        .map(|c| {
            validate_change(c, &|t| reg.contains(t), 0)
                .ok()
                .map(|v| prepare(&reg, v))
        })
        .collect();
    decide(&reg, &prepared, reads)
}

fn rejection_message(o: &Option<Outcome>) -> String {
    match o {
        Some(Outcome::Rejected(r)) => r.message.clone().unwrap_or_else(|| r.details.to_string()),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn upserts_apply_parent_first_and_deletes_child_first() {
    let post = format!(r#"{{"id":"{P1}","author_id":"{U1}"}}"#);
    let plan = run(
        &[
            change(1, "posts", "INSERT", P1, 0, Some(&post)),
            change(2, "users", "INSERT", U1, 0, Some("{}")),
        ],
        &ReadSet::default(),
    );
    let order: Vec<usize> = plan.writes.iter().map(|w| w.index).collect();
    assert_eq!(
        order,
        [1, 0],
        "the author is written before the post that precedes it in the request"
    );
    assert_eq!(plan.outcomes[0], Some(Outcome::Applied(Some(1))));

    let mut reads = ReadSet::default();
    reads.meta.insert(
        (users(), U1.into()),
        RowMeta {
            version: 1,
            deleted: false,
        },
    );
    reads.meta.insert(
        (TableRef::new("b", "posts"), P1.into()),
        RowMeta {
            version: 1,
            deleted: false,
        },
    );
    let plan = run(
        &[
            change(3, "users", "DELETE", U1, 1, None),
            change(4, "posts", "DELETE", P1, 1, None),
        ],
        &reads,
    );
    let order: Vec<usize> = plan.writes.iter().map(|w| w.index).collect();
    assert_eq!(order, [1, 0]);
    assert_eq!(plan.writes[0].version, 2);
}

#[test]
fn fk_precheck_reports_missing_parents_with_the_value_as_sent() {
    let upper = U2.to_uppercase();
    let post = format!(r#"{{"id":"{P1}","author_id":"{upper}"}}"#);
    let plan = run(&[change(1, "posts", "INSERT", P1, 0, Some(&post))], &ReadSet::default());
    assert_eq!(
        rejection_message(&plan.outcomes[0]),
        format!(r#"{{"missing":["b.users:{upper}"]}}"#)
    );
    assert!(plan.writes.is_empty());

    let bad = format!(r#"{{"id":"{P1}","author_id":42}}"#);
    let plan = run(&[change(1, "posts", "INSERT", P1, 0, Some(&bad))], &ReadSet::default());
    assert_eq!(
        rejection_message(&plan.outcomes[0]),
        format!("bad payload for b.posts pk={P1}")
    );
}

#[test]
fn a_parent_deleted_by_the_same_request_counts_as_missing() {
    let mut reads = ReadSet::default();
    reads.meta.insert(
        (users(), U1.into()),
        RowMeta {
            version: 1,
            deleted: false,
        },
    );
    let post = format!(r#"{{"id":"{P1}","author_id":"{U1}"}}"#);
    let plan = run(
        &[
            change(1, "posts", "INSERT", P1, 0, Some(&post)),
            change(2, "users", "DELETE", U1, 1, None),
        ],
        &reads,
    );
    assert!(matches!(plan.outcomes[0], Some(Outcome::Rejected(ref r)) if r.reason == Reason::FkMissing));
    assert_eq!(plan.outcomes[1], Some(Outcome::Applied(Some(2))));
}

#[test]
fn self_references_are_satisfied_by_upserts_in_the_same_request() {
    let child = format!(r#"{{"id":"{U1}","parent_id":"{U2}"}}"#);
    let plan = run(
        &[
            change(1, "nodes", "INSERT", U1, 0, Some(&child)),
            change(2, "nodes", "INSERT", U2, 0, Some("{}")),
        ],
        &ReadSet::default(),
    );
    assert_eq!(plan.writes.len(), 2);
}

#[test]
fn version_rules_follow_the_table() {
    let mut reads = ReadSet::default();
    reads.meta.insert(
        (users(), U1.into()),
        RowMeta {
            version: 3,
            deleted: false,
        },
    );
    reads.meta.insert(
        (users(), U2.into()),
        RowMeta {
            version: 5,
            deleted: true,
        },
    );
    let never = "00000000-0000-4000-8000-00000000000f";
    let plan = run(
        &[
            change(1, "users", "UPDATE", U1, 2, Some("{}")),
            change(2, "users", "INSERT", U2, 0, Some("{}")),
            change(3, "users", "UPDATE", never, 4, Some("{}")),
            change(4, "users", "DELETE", "00000000-0000-4000-8000-00000000000e", 0, None),
        ],
        &reads,
    );
    assert!(matches!(
        plan.outcomes[0],
        Some(Outcome::Conflict {
            meta: RowMeta {
                version: 3,
                deleted: false
            },
            ..
        })
    ));
    assert!(matches!(
        plan.outcomes[1],
        Some(Outcome::Conflict {
            meta: RowMeta {
                version: 5,
                deleted: true
            },
            ..
        })
    ));
    assert_eq!(
        rejection_message(&plan.outcomes[2]),
        format!("conflict without server_row for b.users pk={never}")
    );
    assert_eq!(plan.outcomes[3], Some(Outcome::Applied(None)));
    assert!(plan.writes.is_empty(), "no outcome here writes anything");

    let plan = run(
        &[
            change(5, "users", "DELETE", U2, 1, None),
            change(6, "users", "INSERT", U1, 3, Some("{}")),
        ],
        &reads,
    );
    assert_eq!(
        plan.outcomes[0],
        Some(Outcome::Applied(Some(5))),
        "DELETE of a tombstone answers its version"
    );
    assert_eq!(plan.outcomes[1], Some(Outcome::Applied(Some(4))));
    assert_eq!(plan.writes.len(), 1);
}

#[test]
fn replays_answer_the_stored_version_and_reused_scids_are_rejected() {
    let mut reads = ReadSet::default();
    reads.logged.insert(
        7,
        Logged {
            row: (users(), U1.into()),
            version: 1,
        },
    );
    reads.meta.insert(
        (users(), U1.into()),
        RowMeta {
            version: 4,
            deleted: false,
        },
    );
    let plan = run(&[change(7, "users", "UPDATE", U1, 0, Some("{}"))], &reads);
    assert_eq!(plan.outcomes[0], Some(Outcome::Applied(Some(1))));
    assert!(plan.writes.is_empty());
    let plan = run(&[change(7, "users", "DELETE", U2, 0, None)], &reads);
    assert_eq!(
        rejection_message(&plan.outcomes[0]),
        format!("source_change_id 7 already used for b.users pk={U1}")
    );
}

#[test]
fn a_failed_parent_lookup_answers_the_fixed_precheck_error() {
    let mut reads = ReadSet::default();
    reads.failed_lookups.insert(users());
    let post = format!(r#"{{"id":"{P1}","author_id":"{U1}"}}"#);
    let plan = run(&[change(1, "posts", "INSERT", P1, 0, Some(&post))], &reads);
    let message = format!("FK precheck failed for b.posts pk={P1}");
    assert_eq!(
        plan.outcomes[0],
        Some(Outcome::Rejected(Rejection {
            reason: Reason::PrecheckError,
            message: Some(message.clone()),
            details: serde_json::json!({ "error": message }),
        }))
    );
    assert!(plan.writes.is_empty());
}
