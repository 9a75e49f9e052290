//! Golden fixtures: every example body of PROTOCOL.md parses into its wire type and serialises back to the
//! identical text (key order, integer digits, omitted optionals and all).

use oversync_protocol::*;
use serde::{Serialize, de::DeserializeOwned};

fn round_trip<T: Serialize + DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = text.trim_end();
    let value: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        serde_json::to_string(&value).unwrap(),
        text,
        "{name} does not round-trip"
    );
    value
}

#[test]
fn upload_example_round_trips() {
    let req: UploadRequest = round_trip("upload_request");
    let changes = req.changes.unwrap();
    assert_eq!(changes.len(), 4);
    assert!(changes[3].payload.is_none(), "DELETE carries no payload key");
    let resp: UploadResponse = round_trip("upload_response");
    assert!(!resp.accepted);
    assert_eq!(resp.statuses[2].status, Status::Conflict);
    assert_eq!(
        resp.statuses[3].invalid.as_ref().unwrap().reason,
        Reason::UnregisteredTable
    );
}

#[test]
fn statuses_keep_unknown_values_and_tombstone_rows_send_null_payload() {
    let resp: UploadResponse = round_trip("upload_response_fk_missing");
    assert_eq!(resp.statuses[0].message, None, "fk_missing has no message");
    assert!(resp.statuses[1].server_row.as_ref().unwrap().payload.is_none());
    assert_eq!(resp.statuses[2].new_server_version, None);
    assert_eq!(resp.statuses[3].status, Status::Other("materialize_error".into()));
}

#[test]
fn download_examples_round_trip() {
    for name in ["download_page1", "download_page2", "download_empty"] {
        let page: DownloadResponse = round_trip(name);
        assert!(page.changes.iter().all(|c| !c.deleted && c.payload.is_some()));
    }
    let page: DownloadResponse = round_trip("download_delete");
    assert!(page.changes[0].deleted && page.changes[0].payload.is_none());
}

#[test]
fn auth_and_small_route_examples_round_trip() {
    let _: SigninRequest = round_trip("signin_request");
    let _: SigninResponse = round_trip("signin_response");
    let _: DummySigninRequest = round_trip("dummy_signin_request");
    let _: DummySigninResponse = round_trip("dummy_signin_response");
    let _: SchemaVersionResponse = round_trip("schema_version_response");
    let _: HealthResponse = round_trip("health_response");
    let _: ErrorBody = round_trip("error_authentication_failed");
}

#[test]
fn extension_examples_round_trip() {
    let caps: Capabilities = round_trip("capabilities");
    assert_eq!(caps.limits.max_request_bytes, 64 << 20);
    assert_eq!(
        caps.limits.max_page_bytes, None,
        "the §8.1 example predates the page budget"
    );
    let budget = r#"{"max_upload_batch_size":200,"max_payload_bytes":262144,"max_request_bytes":67108864,"download_limit_default":100,"download_limit_max":1000,"snapshot_limit_max":1000,"max_page_bytes":4194304}"#;
    let limits: Limits = serde_json::from_str(budget).unwrap();
    assert_eq!(limits.max_page_bytes, Some(4 << 20));
    assert_eq!(serde_json::to_string(&limits).unwrap(), budget);
    let _: SnapshotResponse = round_trip("snapshot_response");
    let _: WatchResponse = round_trip("watch_response");
}

#[test]
fn payload_integers_beyond_2_pow_53_survive_verbatim() {
    let req: UploadRequest = round_trip("payload_big_integer");
    let payload = req.changes.unwrap()[0].payload.as_ref().unwrap().get().to_owned();
    assert!(payload.contains("9007199254740993") && payload.contains("-9223372036854775808"));
}

#[test]
fn wrong_json_types_are_parse_errors_and_nulls_read_as_defaults() {
    for bad in [
        r#"{"changes":[{"pk":5}]}"#,
        r#"{"changes":[{"server_version":1.5}]}"#,
        r#"{"changes":[{"source_change_id":"1"}]}"#,
        r#"{"changes":[{"source_change_id":99999999999999999999}]}"#,
        r#"{"changes":{}}"#,
        r#"{"changes":[[1,"public","users"]]}"#,
        r#"[]"#,
        r#"[0, null]"#,
        "",
    ] {
        assert!(UploadRequest::from_json(bad.as_bytes()).is_err(), "{bad}");
    }
    let req = UploadRequest::from_json(
        br#"{"last_server_seq_seen":null,"changes":[{"schema":null,"source_id":"ignored","x":1}]}"#,
    )
    .unwrap();
    let c = &req.changes.unwrap()[0];
    assert_eq!((c.schema.as_str(), c.source_change_id), ("", 0));
    let body = std::fs::read(format!(
        "{}/tests/fixtures/payload_big_integer.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let req = UploadRequest::from_json(&body).unwrap();
    assert!(
        req.changes.unwrap()[0]
            .payload
            .as_ref()
            .unwrap()
            .get()
            .contains("9007199254740993")
    );
}

mod fuzz;
