use super::*;
use crate::wire::{ChangeUpload, Reason};
use serde_json::json;

const PK: &str = "9d7e6f50-1a2b-4c3d-8e9f-001122334455";

fn registered(t: &TableRef) -> bool {
    t.schema == "business" && matches!(t.table.as_str(), "users" | "posts")
}

fn parse(json: &str) -> ChangeUpload {
    serde_json::from_str(json).expect("valid change JSON")
}

fn reject(json: &str) -> Rejection {
    validate_change(&parse(json), &registered, 100).expect_err("must be rejected")
}

#[test]
fn each_check_reports_its_exact_message_in_order() {
    let cases = [
        (
            r#"{"schema":"Bus-iness","table":"users","op":"INSERT","pk":"x"}"#,
            "bad_payload: invalid schema name \"bus-iness\"",
        ),
        (
            r#"{"schema":"business","op":"INSERT"}"#,
            "bad_payload: invalid table name \"\"",
        ),
        (
            r#"{"schema":"business","table":"no tes"}"#,
            "bad_payload: invalid table name \"no tes\"",
        ),
        (
            r#"{"schema":"business","table":"users","op":" upsert ","pk":"x"}"#,
            "invalid operation: UPSERT",
        ),
        (
            r#"{"schema":"business","table":"users","pk":"x"}"#,
            "invalid operation: ",
        ),
        (
            r#"{"schema":"business","table":"users","op":"insert","pk":"12"}"#,
            "bad_payload: invalid UUID format: 12",
        ),
        (
            &format!(r#"{{"schema":"business","table":"users","op":"update","pk":"{PK}"}}"#),
            "payload required for UPDATE operation",
        ),
        (
            &format!(r#"{{"schema":"business","table":"users","op":"INSERT","pk":"{PK}","payload":null}}"#),
            "payload required for INSERT operation",
        ),
        (
            &format!(
                r#"{{"schema":"business","table":"users","op":"INSERT","pk":"{PK}","payload":{{"name":"{}"}}}}"#,
                "x".repeat(100)
            ),
            "bad_payload: payload too large: 111 > 100",
        ),
        (
            &format!(r#"{{"schema":"business","table":"users","op":"INSERT","pk":"{PK}","payload":[1]}}"#),
            "invalid JSON payload",
        ),
        (
            &format!(r#"{{"schema":"business","table":"users","op":"DELETE","pk":"{PK}","payload":{{}}}}"#),
            "DELETE must not include payload",
        ),
    ];
    for (json, message) in cases {
        let r = reject(json);
        assert_eq!(r.reason, Reason::BadPayload, "{json}");
        assert_eq!(r.message.as_deref(), Some(message), "{json}");
        assert_eq!(r.details, json!({ "error": message }), "{json}");
    }
}

#[test]
fn unregistered_table_names_the_normalised_pair() {
    let r = reject(r#"{"schema":" Business ","table":"Notes","op":"DELETE","pk":"x"}"#);
    assert_eq!(r.reason, Reason::UnregisteredTable);
    assert_eq!(r.message.as_deref(), Some("table not registered business.notes"));
    assert_eq!(r.details, json!({ "schema": "business", "table": "notes" }));
}

#[test]
fn missing_schema_means_public() {
    let r = reject(r#"{"table":"users","op":"DELETE","pk":"x"}"#);
    assert_eq!(r.message.as_deref(), Some("table not registered public.users"));
}

#[test]
fn valid_changes_are_normalised() {
    let v = validate_change(
        &parse(r#"{"source_change_id":7,"schema":"BUSINESS","table":"Users","op":" delete ","pk":"{9D7E6F50-1A2B-4C3D-8E9F-001122334455}","payload":null,"server_version":3}"#),
        &registered,
        0,
    )
    .unwrap();
    assert_eq!((v.scid, v.op, v.pk.as_str(), v.base_version), (7, Op::Delete, PK, 3));
    assert_eq!(v.table, TableRef::new("business", "users"));
}

#[test]
fn duplicates_reject_every_change_involved_and_spare_the_rest() {
    let other = "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f";
    let third = "3f0c2b9e-8d1a-4c6e-9b7a-0a1b2c3d4e5f";
    let batch: Vec<ChangeUpload> = [
        format!(r#"{{"source_change_id":1,"schema":"business","table":"users","op":"DELETE","pk":"{PK}"}}"#),
        format!(r#"{{"source_change_id":1,"schema":"business","table":"users","op":"DELETE","pk":"{other}"}}"#),
        format!(r#"{{"source_change_id":2,"schema":"business","table":"posts","op":"DELETE","pk":"{third}"}}"#),
        format!(
            r#"{{"source_change_id":3,"schema":"business","table":"posts","op":"DELETE","pk":"{}"}}"#,
            third.to_uppercase()
        ),
        format!(r#"{{"source_change_id":4,"schema":"business","table":"users","op":"DELETE","pk":"{third}"}}"#),
    ]
    .iter()
    .map(|s| parse(s))
    .collect();
    let out = validate_batch(&batch, &registered, 0);
    let msg = |i: usize| out[i].as_ref().unwrap_err().message.clone().unwrap();
    assert_eq!(msg(0), "duplicate source_change_id 1 in request");
    assert_eq!(msg(1), "duplicate source_change_id 1 in request");
    let dup_row = format!("duplicate change for business.posts pk={third} in request");
    assert_eq!(msg(2), dup_row);
    assert_eq!(msg(3), dup_row);
    assert!(out[4].is_ok(), "same pk in another table is a different row");
}

#[test]
fn download_parameters_are_checked_in_order_with_exact_messages() {
    let q = |s: &'static str| {
        DownloadQuery::from_pairs(
            s.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, ""))),
        )
    };
    assert_eq!(
        q(""),
        Ok(DownloadQuery {
            after: 0,
            limit: 100,
            schema: None,
            include_self: false,
            until: 0,
            scopes: false,
            scope: None,
            scope_event: 0,
        })
    );
    assert_eq!(q("after=x&limit=0").unwrap_err(), "after must be an integer");
    assert_eq!(q("after=-1").unwrap_err(), "after must be >= 0");
    assert_eq!(q("after=99999999999999999999").unwrap_err(), "after must be an integer");
    assert_eq!(q("limit=1.5").unwrap_err(), "limit must be an integer");
    assert_eq!(q("limit=1001").unwrap_err(), "limit must be between 1 and 1000");
    assert_eq!(q("limit=0&schema=Bad").unwrap_err(), "limit must be between 1 and 1000");
    assert_eq!(q("schema=Business").unwrap_err(), "invalid schema name");
    assert_eq!(q("until=x").unwrap_err(), "until must be an integer");
    assert_eq!(q("until=-5").unwrap_err(), "until must be >= 0");
    let ok = q("after=5&after=9&limit=1000&schema=business&include_self=true&until=12&foo=bar").unwrap();
    assert_eq!(
        ok,
        DownloadQuery {
            after: 5,
            limit: 1000,
            schema: Some("business".into()),
            include_self: true,
            until: 12,
            scopes: false,
            scope: None,
            scope_event: 0,
        }
    );
    assert!(!q("include_self=TRUE").unwrap().include_self);
    let scoped = q("scopes=1&scope=team-1").unwrap();
    assert!(scoped.scopes);
    assert_eq!(scoped.scope.as_deref(), Some("team-1"));
    assert!(!q("scopes=true").unwrap().scopes, "only scopes=1 asks for scopes");
    assert_eq!(q("scope=t").unwrap_err(), "scope needs scopes=1");
    assert_eq!(q("scopes=1&scope=a\u{1}b").unwrap_err(), "invalid scope");
    let long: &'static str = format!("scopes=1&scope={}", "s".repeat(129)).leak();
    assert_eq!(q(long).unwrap_err(), "invalid scope");
    assert_eq!(q("scopes=1&scope_event=9").unwrap().scope_event, 9);
    assert_eq!(q("scopes=1&scope_event=-1").unwrap_err(), "scope_event must be >= 0");
}
