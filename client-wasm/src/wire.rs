//! Local ⇄ wire payloads (PROTOCOL.md §5.1). Pending payloads keep BLOBs as hex (SQLite's `json_object` cannot
//! hold BLOBs); on the wire they are base64, and a BLOB key is a canonical UUID.

use oversync_protocol::encoding::{decode_blob, decode_hex, encode_base64};
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::triggers::TableShape;

/// Converts a pending payload (JSON text, BLOBs as hex) to the wire form.
pub fn local_to_wire(shape: &TableShape, payload: &str) -> Result<Map<String, Value>, String> {
    let mut map: Map<String, Value> = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    for c in shape.columns.iter().filter(|c| c.blob) {
        let key = c.name.to_lowercase();
        if let Some(Value::String(hex)) = map.get(&key) {
            let bytes = decode_hex(hex).ok_or_else(|| format!("column {key}: not hex"))?;
            let wire = if c.name == shape.key {
                Uuid::from_slice(&bytes)
                    .map_err(|e| e.to_string())?
                    .hyphenated()
                    .to_string()
            } else {
                encode_base64(&bytes)
            };
            map.insert(key, Value::String(wire));
        }
    }
    Ok(map)
}

/// Converts a wire payload back to the pending (local) form: BLOBs as hex.
pub fn wire_to_local(shape: &TableShape, wire: &Map<String, Value>) -> String {
    let mut map = wire.clone();
    for c in shape.columns.iter().filter(|c| c.blob) {
        let key = c.name.to_lowercase();
        if let Some(Value::String(s)) = map.get(&key)
            && let Some(bytes) = decode_blob(s)
        {
            map.insert(
                key,
                Value::String(oversync_protocol::encoding::encode_hex(&bytes).to_uppercase()),
            );
        }
    }
    Value::Object(map).to_string()
}

/// The local value of a wire value for a column; `None` means "skip this column" (an undecodable BLOB).
pub fn to_sql(value: &Value, blob: bool) -> Option<SqlValue> {
    Some(match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) if blob => SqlValue::Blob(decode_blob(s)?),
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    })
}

/// The key's local value from the canonical wire pk.
pub fn key_value(shape: &TableShape, pk: &str) -> SqlValue {
    match (shape.blob_key, Uuid::parse_str(pk)) {
        (true, Ok(u)) => SqlValue::Blob(u.as_bytes().to_vec()),
        _ => SqlValue::Text(pk.to_owned()),
    }
}

/// A payload object read straight into the values of a table's columns, for the rows of a snapshot or download
/// page: keys are matched to columns case-insensitively without being copied, and values become SQLite values
/// without a JSON tree in between (a `Map` per row was most of the apply's allocations). Same rules as
/// [`to_sql`]: unknown keys are ignored, the key column comes from `pk`, a later duplicate key wins, and an
/// undecodable BLOB leaves its column out. Returns the indexes of the payload's columns (ascending) and the
/// values, the key's first.
pub fn read_payload(shape: &TableShape, pk: &str, json: &str) -> serde_json::Result<(Vec<usize>, Vec<SqlValue>)> {
    let mut found: Vec<(usize, SqlValue)> =
        serde::de::DeserializeSeed::deserialize(PayloadSeed(shape), &mut serde_json::Deserializer::from_str(json))?;
    found.sort_by_key(|(i, _)| *i);
    let mut present = Vec::with_capacity(found.len());
    let mut values = Vec::with_capacity(found.len() + 1);
    values.push(key_value(shape, pk));
    for (i, v) in found {
        present.push(i);
        values.push(v);
    }
    Ok((present, values))
}

struct PayloadSeed<'s>(&'s TableShape);

impl<'de> serde::de::DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Vec<(usize, SqlValue)>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PayloadSeed<'_> {
    type Value = Vec<(usize, SqlValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a payload object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let shape = self.0;
        let mut out: Vec<(usize, SqlValue)> = Vec::with_capacity(shape.columns.len());
        while let Some(column) = map.next_key_seed(ColumnSeed(shape))? {
            let Some(i) = column else {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            };
            let value: Value = map.next_value()?;
            out.retain(|(j, _)| *j != i);
            if let Some(v) = into_sql(value, shape.columns[i].blob) {
                out.push((i, v));
            }
        }
        Ok(out)
    }
}

/// A payload key as the index of the (non-key) column it names, if any; never copied.
struct ColumnSeed<'s>(&'s TableShape);

impl<'de> serde::de::DeserializeSeed<'de> for ColumnSeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for ColumnSeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a column name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        let shape = self.0;
        Ok(shape
            .columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(key))
            .filter(|&i| shape.columns[i].name != shape.key))
    }
}

/// [`to_sql`] taking the value, so strings move instead of being copied.
fn into_sql(value: Value, blob: bool) -> Option<SqlValue> {
    match value {
        Value::String(s) if !blob => Some(SqlValue::Text(s)),
        other => to_sql(&other, blob),
    }
}

/// The key's value and the payload's values for local columns, with the indexes of those columns. Unknown
/// payload keys are ignored; columns the payload lacks are left out (they keep their values on update).
pub fn row_values(shape: &TableShape, pk: &str, payload: &Map<String, Value>) -> (Vec<usize>, Vec<SqlValue>) {
    let mut present = Vec::with_capacity(shape.columns.len());
    let mut values: Vec<SqlValue> = Vec::with_capacity(shape.columns.len());
    values.push(key_value(shape, pk));
    for (i, c) in shape.columns.iter().enumerate().filter(|(_, c)| c.name != shape.key) {
        let Some(v) = payload
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&c.name))
            .map(|(_, v)| v)
        else {
            continue;
        };
        if let Some(v) = to_sql(v, c.blob) {
            present.push(i);
            values.push(v);
        }
    }
    (present, values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::Column;

    fn shape() -> TableShape {
        let col = |name: &str, blob| Column {
            name: name.into(),
            blob,
        };
        TableShape {
            table: "files".into(),
            key: "id".into(),
            blob_key: false,
            columns: vec![col("id", false), col("Name", false), col("data", true), col("n", false)],
        }
    }

    /// What the map-based path ([`row_values`], used for resolver and merge payloads) makes of the same payload.
    fn through_a_map(shape: &TableShape, pk: &str, json: &str) -> (Vec<usize>, Vec<SqlValue>) {
        row_values(shape, pk, &serde_json::from_str(json).unwrap())
    }

    #[test]
    fn reading_a_payload_matches_the_map_path() {
        let pk = "00000000-0000-4000-8000-000000000001";
        for json in [
            r#"{"id":"ignored","name":"a","data":"AAEC","n":3}"#,
            r#"{"n":1.5,"NAME":"\u00e9\"q","unknown":{"x":[1,2]}}"#,
            r#"{"name":null,"data":null,"n":true}"#,
            r#"{"name":{"nested":[1,"two"]},"n":18446744073709551615}"#,
            r#"{"data":"not base64 !","n":-7}"#,
            r#"{}"#,
        ] {
            assert_eq!(
                read_payload(&shape(), pk, json).unwrap(),
                through_a_map(&shape(), pk, json),
                "{json}"
            );
        }
    }

    #[test]
    fn a_later_duplicate_key_wins_and_non_objects_are_refused() {
        let (present, values) = read_payload(&shape(), "k", r#"{"name":"first","Name":"second"}"#).unwrap();
        assert_eq!(present, vec![1]);
        assert_eq!(values[1], SqlValue::Text("second".into()));
        for bad in ["null", "[1]", "\"x\"", "{\"name\":"] {
            assert!(read_payload(&shape(), "k", bad).is_err(), "{bad}");
        }
    }
}
