//! Payload values → text for a cast to the business column's type (PROTOCOL.md §5.1, §6.7). Numbers keep their
//! digits as sent; BLOBs and UUIDs are decoded by the §5.1 rules.

use oversync_protocol::encoding::{decode_blob, encode_hex, fk_value_to_uuid};
use serde_json::value::RawValue;

use std::collections::HashMap;

use oversync_protocol::validate::ValidChange;
use oversync_protocol::wire::Rejection;

use crate::registry::Kind;

/// The SQL text for `raw` in a column of `kind` (`None` = NULL), or why it cannot be converted.
pub fn to_sql_text(kind: Kind, column: &str, raw: &RawValue) -> Result<Option<String>, String> {
    let text = raw.get().trim();
    let bad = |what: &str| Err(format!("cannot convert {what} to {kind:?} for column {column}"));
    let first = text.as_bytes().first().copied().unwrap_or(b'n');
    match first {
        b'n' => Ok(None),
        b'"' => {
            let s: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
            match kind {
                Kind::Uuid => match fk_value_to_uuid(&s) {
                    Some(u) => Ok(Some(u.hyphenated().to_string())),
                    None => bad("string"),
                },
                Kind::Bytea => match decode_blob(&s) {
                    Some(bytes) => Ok(Some(format!("\\x{}", encode_hex(&bytes)))),
                    None => bad("string"),
                },
                Kind::Json => Ok(Some(text.to_owned())),
                _ => Ok(Some(s)),
            }
        }
        b't' | b'f' => {
            let v = first == b't';
            match kind {
                Kind::Bool => Ok(Some(v.to_string())),
                Kind::Json => Ok(Some(text.to_owned())),
                Kind::Number | Kind::Text => Ok(Some(if v { "1" } else { "0" }.to_owned())),
                _ => bad("boolean"),
            }
        }
        b'{' | b'[' => match kind {
            Kind::Json | Kind::Text => Ok(Some(text.to_owned())),
            _ => bad("object"),
        },
        _ => match kind {
            Kind::Bool => match text {
                "0" => Ok(Some("false".into())),
                "1" => Ok(Some("true".into())),
                _ => bad("number"),
            },
            Kind::Number | Kind::Text | Kind::Json | Kind::Timestamp => Ok(Some(text.to_owned())),
            Kind::Uuid | Kind::Bytea => bad("number"),
        },
    }
}

/// The SQL expression reading unnest column `col` as the column type `sql_type`. Timestamps accept Unix seconds
/// (what classic clients send) as well as RFC 3339 text.
/// A string a `timestamptz`/`timestamp`/`date` column takes from a payload: RFC 3339, the SQL form
/// `YYYY-MM-DD HH:MM[:SS[.f]][±HH[:MM]]` (what SQLite's `datetime()` and `CURRENT_TIMESTAMP` write), or a date.
/// PostgreSQL's cast alone would also take `yesterday`, `now` or `Dec 7`, which a device keeps as text while the
/// business table stores the day the server read it: such values are refused (`bad_payload`, issue 34).
pub fn is_timestamp_text(s: &str) -> bool {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    const NAIVE: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    const ZONED: [&str; 2] = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"];
    let s = s.trim();
    DateTime::parse_from_rfc3339(s).is_ok()
        || NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        || NAIVE.iter().any(|f| NaiveDateTime::parse_from_str(s, f).is_ok())
        || ZONED.iter().any(|f| DateTime::parse_from_str(s, f).is_ok())
}

/// The payload's strings in the business table's timestamp and date columns take one of the forms
/// [`is_timestamp_text`] names (numbers are Unix seconds): else `bad_payload` naming the column.
pub fn check_timestamps(
    change: &ValidChange,
    payload: &RawValue,
    info: &crate::registry::TableInfo,
) -> Result<(), Rejection> {
    let Some(target) = info.target.as_ref() else {
        return Ok(());
    };
    if !target.columns.values().any(|c| c.kind == Kind::Timestamp) {
        return Ok(());
    }
    let bad = || Rejection::bad_payload(format!("bad payload for {} pk={}", change.table, change.pk));
    let map: HashMap<String, &RawValue> = serde_json::from_str(payload.get()).map_err(|_| bad())?;
    for (name, raw) in map {
        let is_timestamp = target
            .columns
            .get(&name.to_lowercase())
            .is_some_and(|c| c.kind == Kind::Timestamp);
        if !is_timestamp || !raw.get().starts_with('"') {
            continue;
        }
        let text: String = serde_json::from_str(raw.get()).map_err(|_| bad())?;
        if !is_timestamp_text(&text) {
            return Err(Rejection::bad_payload(format!(
                "{name}: {} is not a timestamp for {} pk={} (RFC 3339, YYYY-MM-DD HH:MM:SS, a date, or Unix seconds)",
                raw.get(),
                change.table,
                change.pk
            )));
        }
    }
    Ok(())
}

pub fn cast_expr(kind: Kind, col: &str, sql_type: &str) -> String {
    match kind {
        Kind::Timestamp => format!(
            "(CASE WHEN {col} ~ '^-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$' THEN to_timestamp({col}::float8) \
             ELSE {col}::timestamptz END)::{sql_type}"
        ),
        _ => format!("CAST({col} AS {sql_type})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc_3339_sql_forms_or_dates_never_words() {
        for ok in [
            "2026-12-07T10:00:00Z",
            "2026-12-07T10:00:00.123+02:00",
            "2026-12-07 10:00:00",
            "2026-12-07 10:00:00.5",
            "2026-12-07 10:00",
            "2026-12-07T10:00:00",
            "2026-12-07 10:00:00+02",
            "2026-12-07",
        ] {
            assert!(is_timestamp_text(ok), "{ok}");
        }
        for bad in [
            "yesterday",
            "now",
            "epoch",
            "infinity",
            "Dec 7 2026",
            "2026-13-01",
            "07/12/2026",
            "",
        ] {
            assert!(!is_timestamp_text(bad), "{bad}");
        }
    }

    fn conv(kind: Kind, json: &str) -> Result<Option<String>, String> {
        to_sql_text(kind, "c", &RawValue::from_string(json.to_owned()).unwrap())
    }

    proptest::proptest! {
        /// Any JSON value, for any column kind, converts or is refused with a message; it never panics.
        #[test]
        fn conversion_never_panics(text in ".{0,60}", n in proptest::prelude::any::<i64>(), f in proptest::prelude::any::<f64>(), pick in 0..6u8) {
            let json = match pick {
                0 => serde_json::to_string(&text).unwrap(),
                1 => n.to_string(),
                2 => if f.is_finite() { serde_json::to_string(&f).unwrap() } else { "null".into() },
                3 => format!("{{\"k\": {}}}", serde_json::to_string(&text).unwrap()),
                4 => "true".into(),
                _ => "null".into(),
            };
            let raw = RawValue::from_string(json).unwrap();
            for kind in [Kind::Uuid, Kind::Bytea, Kind::Timestamp, Kind::Bool, Kind::Json, Kind::Number, Kind::Text] {
                let _ = to_sql_text(kind, "c", &raw);
            }
        }
    }

    #[test]
    fn values_convert_per_column_kind() {
        let u = "9d7e6f50-1a2b-4c3d-8e9f-001122334455";
        assert_eq!(
            conv(Kind::Uuid, &format!("\"{}\"", u.to_uppercase())).unwrap().unwrap(),
            u
        );
        let b64 = oversync_protocol::encoding::encode_base64(uuid::Uuid::parse_str(u).unwrap().as_bytes());
        assert_eq!(conv(Kind::Uuid, &format!("\"{b64}\"")).unwrap().unwrap(), u);
        assert!(conv(Kind::Uuid, "\"nope\"").is_err());
        assert_eq!(conv(Kind::Bytea, "\"AAEC/w==\"").unwrap().unwrap(), "\\x000102ff");
        assert_eq!(conv(Kind::Bytea, "\"\"").unwrap().unwrap(), "\\x");
        assert_eq!(conv(Kind::Bytea, "null").unwrap(), None);
        assert_eq!(
            conv(Kind::Number, "9007199254740993").unwrap().unwrap(),
            "9007199254740993"
        );
        assert_eq!(conv(Kind::Bool, "1").unwrap().unwrap(), "true");
        assert_eq!(conv(Kind::Bool, "false").unwrap().unwrap(), "false");
        assert!(conv(Kind::Bool, "2").is_err());
        assert_eq!(conv(Kind::Timestamp, "1767225600").unwrap().unwrap(), "1767225600");
        assert_eq!(conv(Kind::Json, "{\"a\": [1]}").unwrap().unwrap(), "{\"a\": [1]}");
        assert_eq!(conv(Kind::Text, "\"x\\\"y\"").unwrap().unwrap(), "x\"y");
    }
}
