//! SQLite values to and from JS: parameters in, rows out.

use js_sys::{Array, BigInt, Object, Reflect, Uint8Array};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Statement, params_from_iter};
use wasm_bindgen::{JsCast, JsValue};

use super::error::{bad_argument, sqlite};

const MAX_SAFE: i64 = (1 << 53) - 1;

/// Statement parameters: an array (positional) or an object (named; a key without `:`, `@` or `$` means `:key`).
pub(crate) enum Params {
    Positional(Vec<Value>),
    Named(Vec<(String, Value)>),
}

impl Params {
    pub(crate) fn from_js(params: &JsValue) -> Result<Self, JsValue> {
        if params.is_undefined() || params.is_null() {
            return Ok(Self::Positional(Vec::new()));
        }
        if Array::is_array(params) {
            let arr: &Array = params.unchecked_ref();
            return arr
                .iter()
                .map(|v| value(&v))
                .collect::<Result<_, _>>()
                .map(Self::Positional);
        }
        if params.is_object() {
            let entries = Object::entries(params.unchecked_ref());
            let mut named = Vec::with_capacity(entries.length() as usize);
            for entry in entries.iter() {
                let pair: Array = entry.unchecked_into();
                let key = pair.get(0).as_string().unwrap_or_default();
                let key = if key.starts_with([':', '@', '$']) {
                    key
                } else {
                    format!(":{key}")
                };
                named.push((key, value(&pair.get(1))?));
            }
            return Ok(Self::Named(named));
        }
        Err(bad_argument("params must be an array or an object"))
    }

    /// Binds and executes a statement that returns no rows; returns the number of changed rows.
    pub(crate) fn execute(&self, stmt: &mut Statement<'_>) -> Result<usize, JsValue> {
        match self {
            Self::Positional(v) => stmt.execute(params_from_iter(v.iter())),
            Self::Named(v) => {
                let refs: Vec<(&str, &dyn rusqlite::ToSql)> =
                    v.iter().map(|(k, x)| (k.as_str(), x as &dyn rusqlite::ToSql)).collect();
                stmt.execute(refs.as_slice())
            }
        }
        .map_err(|e| sqlite(&e))
    }

    /// Runs a query; rows as objects keyed by column name.
    pub(crate) fn query(&self, stmt: &mut Statement<'_>) -> Result<Array, JsValue> {
        let names: Vec<JsValue> = stmt.column_names().map(JsValue::from).collect();
        let out = Array::new();
        let push = |row: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
            let obj = Object::new();
            for (i, name) in names.iter().enumerate() {
                let _ = Reflect::set(&obj, name, &to_js(row.get_ref(i)?));
            }
            out.push(&obj);
            Ok(())
        };
        let mut rows = match self {
            Self::Positional(v) => stmt.query(params_from_iter(v.iter())),
            Self::Named(v) => {
                let refs: Vec<(&str, &dyn rusqlite::ToSql)> =
                    v.iter().map(|(k, x)| (k.as_str(), x as &dyn rusqlite::ToSql)).collect();
                stmt.query(refs.as_slice())
            }
        }
        .map_err(|e| sqlite(&e))?;
        while let Some(row) = rows.next().map_err(|e| sqlite(&e))? {
            push(row).map_err(|e| sqlite(&e))?;
        }
        Ok(out)
    }
}

/// One parameter: null/undefined, boolean (0/1), number (integer when whole and safe), bigint, string,
/// Uint8Array or ArrayBuffer (blob).
fn value(v: &JsValue) -> Result<Value, JsValue> {
    if v.is_null() || v.is_undefined() {
        return Ok(Value::Null);
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Integer(b.into()));
    }
    if let Some(n) = v.as_f64() {
        let whole = n.fract() == 0.0 && n.abs() <= MAX_SAFE as f64;
        return Ok(if whole {
            Value::Integer(n as i64)
        } else {
            Value::Real(n)
        });
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::Text(s));
    }
    if v.is_bigint() {
        let big: &BigInt = v.unchecked_ref();
        let text = big.to_string(10).map(String::from).unwrap_or_default();
        return text
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| bad_argument(format!("bigint {text} does not fit in 64 bits")));
    }
    if let Some(bytes) = v.dyn_ref::<Uint8Array>() {
        return Ok(Value::Blob(bytes.to_vec()));
    }
    if let Some(buf) = v.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Value::Blob(Uint8Array::new(buf).to_vec()));
    }
    Err(bad_argument(format!(
        "unsupported parameter {v:?}: use null, boolean, number, bigint, string or Uint8Array"
    )))
}

/// A column value: integers as numbers (bigint beyond 2^53), blobs as Uint8Array.
fn to_js(v: ValueRef<'_>) -> JsValue {
    match v {
        ValueRef::Null => JsValue::NULL,
        ValueRef::Integer(i) if i.abs() <= MAX_SAFE => JsValue::from_f64(i as f64),
        ValueRef::Integer(i) => BigInt::from(i).into(),
        ValueRef::Real(f) => JsValue::from_f64(f),
        ValueRef::Text(t) => JsValue::from_str(&String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => Uint8Array::from(b).into(),
    }
}
