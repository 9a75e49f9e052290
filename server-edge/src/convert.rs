//! Payload values → text for a cast to the business column's type (PROTOCOL.md §5.1, §6.7). Numbers keep their
//! digits as sent; BLOBs and UUIDs are decoded by the §5.1 rules.

use oversync_protocol::encoding::{decode_blob, encode_hex, fk_value_to_uuid};
use serde_json::value::RawValue;

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
