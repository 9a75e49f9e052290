//! Property tests: the decoders and the request parser never panic on any input, and encodings round-trip.
//! A fixed number of cases runs in CI (`PROPTEST_CASES` raises it).

use oversync_protocol::encoding::{decode_blob, decode_hex, encode_base64, encode_hex, fk_value_to_uuid};
use oversync_protocol::pk::{canonical_pk, parse_uuid};
use oversync_protocol::validate::{DownloadQuery, validate_batch};
use oversync_protocol::{TableRef, UploadRequest};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic(s in ".{0,80}") {
        let _ = parse_uuid(&s);
        let _ = canonical_pk(&s);
        let _ = decode_blob(&s);
        let _ = decode_hex(&s);
        let _ = fk_value_to_uuid(&s);
    }

    #[test]
    fn every_uuid_form_canonicalises(bytes in any::<[u8; 16]>(), upper in any::<bool>(), form in 0..4u8) {
        let u = uuid::Uuid::from_bytes(bytes);
        let dashed = u.hyphenated().to_string();
        let text = match form {
            0 => dashed.clone(),
            1 => u.simple().to_string(),
            2 => format!("{{{dashed}}}"),
            _ => format!("urn:uuid:{dashed}"),
        };
        let text = if upper { text.to_uppercase() } else { text };
        prop_assert_eq!(canonical_pk(&text), Some(dashed));
    }

    #[test]
    fn blobs_round_trip_through_base64_and_hex(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        // Known limitation (PROTOCOL.md §5.1): 24 bytes whose base64 is all hex digits read as a UUID.
        if bytes.len() != 24 {
            prop_assert_eq!(decode_blob(&encode_base64(&bytes)), Some(bytes.clone()));
        }
        prop_assert_eq!(decode_hex(&encode_hex(&bytes)), Some(bytes));
    }

    #[test]
    fn arbitrary_upload_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(req) = UploadRequest::from_json(&body) {
            let _ = validate_batch(&req.changes.unwrap_or_default(), &|_: &TableRef| true, 64);
        }
    }

    #[test]
    fn json_shaped_upload_bodies_never_panic(
        scid in any::<i64>(), schema in ".{0,12}", table in ".{0,12}", op in ".{0,8}", pk in ".{0,40}",
        version in any::<i64>(), payload in prop_oneof![Just("null"), Just("{}"), Just("[]"), Just("\"x\""), Just("{\"a\":1e999}")],
    ) {
        let body = format!(
            r#"{{"changes":[{{"source_change_id":{scid},"schema":{},"table":{},"op":{},"pk":{},"server_version":{version},"payload":{payload}}}]}}"#,
            serde_json::to_string(&schema).unwrap(), serde_json::to_string(&table).unwrap(),
            serde_json::to_string(&op).unwrap(), serde_json::to_string(&pk).unwrap(),
        );
        if let Ok(req) = UploadRequest::from_json(body.as_bytes()) {
            let out = validate_batch(&req.changes.unwrap_or_default(), &|t: &TableRef| t.table == "users", 8);
            prop_assert_eq!(out.len(), 1);
        }
    }

    #[test]
    fn download_parameters_never_panic(pairs in proptest::collection::vec((".{0,12}", ".{0,24}"), 0..6)) {
        let _ = DownloadQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
}
