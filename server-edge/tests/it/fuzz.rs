//! Hostile input over HTTP: generated upload bodies and download queries never produce a 500 (or take the
//! server down). A fixed number of cases runs in CI; `PROPTEST_CASES` raises it.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

use crate::support::*;

fn cases() -> usize {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        Just(json!("9d7e6f50-1a2b-4c3d-8e9f-001122334455")),
        Just(json!("business")),
        Just(json!("users")),
        Just(json!("INSERT")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("source_change_id".to_owned()),
                    Just("schema".to_owned()),
                    Just("table".to_owned()),
                    Just("op".to_owned()),
                    Just("pk".to_owned()),
                    Just("server_version".to_owned()),
                    Just("payload".to_owned()),
                    Just("id".to_owned()),
                    Just("author_id".to_owned()),
                    ".{0,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(json_value(), 0..5).prop_map(|changes| json!({ "changes": changes }).to_string()),
        json_value().prop_map(|v| v.to_string()),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

#[tokio::test]
async fn generated_upload_bodies_never_get_a_500() {
    let t = target();
    let d = Device::new(&t, &new_user(), "fuzz");
    let mut runner = TestRunner::deterministic();
    let strategy = body();
    for _ in 0..cases() {
        let body = strategy.new_tree(&mut runner).unwrap().current();
        let (status, resp) = d.upload_raw(body.clone()).await;
        assert!(matches!(status, 200 | 400), "{status} {resp} for {body}");
    }
    assert_eq!(
        reqwest::get(format!("{}/health", t.base))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn generated_download_queries_never_get_a_500() {
    let t = target();
    let d = Device::new(&t, &new_user(), "fuzz");
    let mut runner = TestRunner::deterministic();
    let key = prop_oneof![
        Just("after"),
        Just("limit"),
        Just("schema"),
        Just("until"),
        Just("include_self"),
        Just("x")
    ];
    let strategy = proptest::collection::vec((key, "[-+0-9a-zA-Z%._]{0,24}"), 0..5);
    for _ in 0..cases() {
        let pairs = strategy.new_tree(&mut runner).unwrap().current();
        let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let (status, resp) = d.download_raw(&q.join("&")).await;
        assert!(matches!(status, 200 | 400), "{status} {resp} for {q:?}");
    }
}
