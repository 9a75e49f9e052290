use super::*;

const S: fn(u64) -> Duration = Duration::from_secs;

fn policy() -> CachePolicy {
    CachePolicy {
        default_max_age: S(300),
        min_max_age: S(10),
        max_max_age: S(3600),
        refetch_interval: S(30),
        fetch_timeout: S(5),
    }
}

/// A set naming `kids`, without real keys: the cache only asks which kids a set has.
fn set_of(kids: &[&str]) -> KeySet {
    let key = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let keys = kids
        .iter()
        .map(|kid| {
            let mut k = key.clone();
            k["kid"] = serde_json::json!(kid);
            k
        })
        .collect::<Vec<_>>();
    KeySet::parse(&serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()).unwrap()
}

fn kids(plan: &Plan) -> Option<Vec<String>> {
    let set = match plan {
        Plan::Use(s) | Plan::Fetch(Some(s)) => s,
        _ => return None,
    };
    Some(set.keys.iter().filter_map(|k| k.kid.clone()).collect())
}

#[test]
fn freshness_is_the_max_age_within_bounds() {
    let p = policy();
    assert_eq!(p.freshness(None), S(300));
    assert_eq!(p.freshness(Some(S(0))), S(10));
    assert_eq!(p.freshness(Some(S(600))), S(600));
    assert_eq!(p.freshness(Some(S(86_400))), S(3600));
}

#[test]
fn the_first_request_fetches_and_the_others_wait_for_it() {
    let (p, mut c) = (policy(), Cache::default());
    assert!(matches!(c.plan(&p, S(100), Some("a")), Plan::Fetch(None)));
    assert!(matches!(c.plan(&p, S(101), Some("a")), Plan::Wait));
    c.fetched(&p, S(100), set_of(&["a"]), Some(S(60)));
    assert_eq!(kids(&c.plan(&p, S(102), Some("a"))), Some(vec!["a".into()]));
}

#[test]
fn a_fetch_that_never_reports_stops_counting_after_its_timeout() {
    let (p, mut c) = (policy(), Cache::default());
    assert!(matches!(c.plan(&p, S(100), None), Plan::Fetch(None)));
    assert!(matches!(c.plan(&p, S(104), None), Plan::Wait));
    assert!(matches!(c.plan(&p, S(105), None), Plan::Fetch(None)));
    c.abandoned();
    assert!(
        matches!(c.plan(&p, S(105), None), Plan::Fetch(None)),
        "no set: the next one fetches"
    );
}

#[test]
fn a_stale_set_is_refetched_once_while_the_others_use_it() {
    let (p, mut c) = (policy(), Cache::default());
    c.plan(&p, S(0), None);
    c.fetched(&p, S(0), set_of(&["a"]), Some(S(60)));
    assert!(matches!(c.plan(&p, S(59), Some("a")), Plan::Use(_)));
    let refetch = c.plan(&p, S(60), Some("a"));
    assert!(matches!(refetch, Plan::Fetch(Some(_))), "{refetch:?}");
    assert_eq!(
        kids(&c.plan(&p, S(61), Some("a"))),
        Some(vec!["a".into()]),
        "stale set meanwhile"
    );
    c.fetched(&p, S(60), set_of(&["b"]), Some(S(60)));
    // Rotated out: the fresh set lacks `a`, and it was fetched just now, so no second fetch.
    assert_eq!(kids(&c.plan(&p, S(62), Some("a"))), Some(vec!["b".into()]));
}

#[test]
fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let (p, mut c) = (policy(), Cache::default());
    c.plan(&p, S(0), None);
    c.fetched(&p, S(0), set_of(&["a"]), Some(S(3600)));
    assert!(
        matches!(c.plan(&p, S(10), Some("x1")), Plan::Use(_)),
        "fetched 10 s ago"
    );
    assert!(matches!(c.plan(&p, S(30), Some("x2")), Plan::Fetch(Some(_))));
    c.fetched(&p, S(30), set_of(&["a"]), Some(S(3600)));
    for t in 31..60 {
        assert!(
            matches!(c.plan(&p, S(t), Some(&format!("x{t}"))), Plan::Use(_)),
            "t={t}"
        );
    }
    assert!(matches!(c.plan(&p, S(60), Some("x60")), Plan::Fetch(Some(_))));
    assert!(
        matches!(c.plan(&p, S(61), Some("a")), Plan::Use(_)),
        "a known kid never fetches"
    );
}

#[test]
fn a_failed_fetch_keeps_the_last_good_set_and_retries_after_the_interval() {
    let (p, mut c) = (policy(), Cache::default());
    c.plan(&p, S(0), None);
    c.fetched(&p, S(0), set_of(&["a"]), Some(S(60)));
    assert!(matches!(c.plan(&p, S(60), Some("a")), Plan::Fetch(Some(_))));
    let kept = c.failed(S(60)).expect("last good set");
    assert!(kept.has_kid("a"));
    for t in [61, 70, 89] {
        assert_eq!(kids(&c.plan(&p, S(t), Some("a"))), Some(vec!["a".into()]), "t={t}");
    }
    assert!(
        matches!(c.plan(&p, S(90), Some("a")), Plan::Fetch(Some(_))),
        "retried after 30 s"
    );
}

#[test]
fn without_any_set_a_failure_makes_the_keys_unavailable_until_the_interval() {
    let (p, mut c) = (policy(), Cache::default());
    assert!(matches!(c.plan(&p, S(0), None), Plan::Fetch(None)));
    assert!(c.failed(S(0)).is_none());
    assert!(matches!(c.plan(&p, S(1), None), Plan::Unavailable));
    assert!(matches!(c.plan(&p, S(29), Some("a")), Plan::Unavailable));
    assert!(matches!(c.plan(&p, S(30), None), Plan::Fetch(None)));
}
