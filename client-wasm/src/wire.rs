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
