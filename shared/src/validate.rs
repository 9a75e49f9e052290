//! Request validation with the exact messages of PROTOCOL.md §6.2 (upload) and §4.4 (download parameters).

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::TableRef;
use crate::names::{is_valid_name, normalize_schema, normalize_table};
use crate::pk::canonical_pk;
use crate::wire::{ChangeUpload, Payload, Rejection};

/// A change operation. INSERT and UPDATE both mean "upsert"; the op is only recorded and replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `INSERT`
    Insert,
    /// `UPDATE`
    Update,
    /// `DELETE`
    Delete,
}

impl Op {
    /// Parses a trimmed, upper-cased op.
    pub fn parse(normalised: &str) -> Option<Self> {
        match normalised {
            "INSERT" => Some(Self::Insert),
            "UPDATE" => Some(Self::Update),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    /// True for DELETE.
    pub fn is_delete(self) -> bool {
        self == Self::Delete
    }
}

/// A change that passed every check of §6.2, with normalised names and a canonical pk.
#[derive(Debug, Clone)]
pub struct ValidChange {
    /// The change's scid.
    pub scid: i64,
    /// The registered table.
    pub table: TableRef,
    /// The operation.
    pub op: Op,
    /// Canonical pk.
    pub pk: String,
    /// Base version.
    pub base_version: i64,
    /// The after-image (upserts only).
    pub payload: Option<Payload>,
}

/// Runs checks 1–9 of §6.2 on one change. `registered` answers check 3.
pub fn validate_change(
    c: &ChangeUpload,
    registered: &dyn Fn(&TableRef) -> bool,
    max_payload_bytes: usize,
) -> Result<ValidChange, Rejection> {
    let schema = normalize_schema(&c.schema);
    if !is_valid_name(&schema) {
        return Err(Rejection::bad_payload(format!(
            "bad_payload: invalid schema name {}",
            quote(&schema)
        )));
    }
    let table = normalize_table(&c.table);
    if !is_valid_name(&table) {
        return Err(Rejection::bad_payload(format!(
            "bad_payload: invalid table name {}",
            quote(&table)
        )));
    }
    let table = TableRef { schema, table };
    if !registered(&table) {
        return Err(Rejection::unregistered(&table.schema, &table.table));
    }
    let op_text = c.op.trim().to_uppercase();
    let op = Op::parse(&op_text).ok_or_else(|| Rejection::bad_payload(format!("invalid operation: {op_text}")))?;
    let pk = canonical_pk(&c.pk)
        .ok_or_else(|| Rejection::bad_payload(format!("bad_payload: invalid UUID format: {}", c.pk)))?;
    let payload = c.payload.as_deref();
    if !op.is_delete() && payload.is_none() {
        return Err(Rejection::bad_payload(format!(
            "payload required for {op_text} operation"
        )));
    }
    if let Some(p) = payload {
        let n = p.get().len();
        if max_payload_bytes > 0 && n > max_payload_bytes {
            return Err(Rejection::bad_payload(format!(
                "bad_payload: payload too large: {n} > {max_payload_bytes}"
            )));
        }
        if !is_object(p) {
            return Err(Rejection::bad_payload("invalid JSON payload"));
        }
        if op.is_delete() {
            return Err(Rejection::bad_payload("DELETE must not include payload"));
        }
    }
    Ok(ValidChange {
        scid: c.source_change_id,
        table,
        op,
        pk,
        base_version: c.server_version,
        payload: if op.is_delete() { None } else { c.payload.clone() },
    })
}

/// Validates a whole request: checks 1–9 per change, then 10 (duplicate scid) and 11 (duplicate row) among the
/// changes that passed them. Duplicates reject **every** change involved. Results are in request order.
pub fn validate_batch(
    changes: &[ChangeUpload],
    registered: &dyn Fn(&TableRef) -> bool,
    max_payload_bytes: usize,
) -> Vec<Result<ValidChange, Rejection>> {
    let mut out: Vec<_> = changes
        .iter()
        .map(|c| validate_change(c, registered, max_payload_bytes))
        .collect();
    let mut by_scid: HashMap<i64, usize> = HashMap::new();
    let mut by_row: HashMap<(&TableRef, &str), usize> = HashMap::new();
    for v in out.iter().flatten() {
        *by_scid.entry(v.scid).or_default() += 1;
        *by_row.entry((&v.table, v.pk.as_str())).or_default() += 1;
    }
    let verdicts: Vec<Option<Rejection>> = out
        .iter()
        .map(|r| {
            let v = r.as_ref().ok()?;
            if by_scid[&v.scid] > 1 {
                return Some(Rejection::bad_payload(format!(
                    "duplicate source_change_id {} in request",
                    v.scid
                )));
            }
            if by_row[&(&v.table, v.pk.as_str())] > 1 {
                return Some(Rejection::bad_payload(format!(
                    "duplicate change for {} pk={} in request",
                    v.table, v.pk
                )));
            }
            None
        })
        .collect();
    for (slot, verdict) in out.iter_mut().zip(verdicts) {
        if let Some(rejection) = verdict {
            *slot = Err(rejection);
        }
    }
    out
}

fn is_object(p: &RawValue) -> bool {
    p.get().trim_start().starts_with('{')
}

/// Go's `%q` as the protocol uses it: double-quoted with JSON escaping.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Download page size when `limit` is absent.
pub const DOWNLOAD_LIMIT_DEFAULT: i64 = 100;
/// Largest download page.
pub const DOWNLOAD_LIMIT_MAX: i64 = 1000;

/// Validated `GET /sync/download` parameters (§4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadQuery {
    /// Exclusive lower bound on `server_id`.
    pub after: i64,
    /// Page size, 1..=1000.
    pub limit: i64,
    /// Only this schema, when given.
    pub schema: Option<String>,
    /// Include the caller's own changes.
    pub include_self: bool,
    /// Inclusive upper bound; 0 = the user's current maximum.
    pub until: i64,
    /// `scopes=1`: the scope-aware download of docs/sharing.md §5.2 (private rows and every member scope).
    pub scopes: bool,
    /// `scope=<s>` (with `scopes=1`): only that scope's rows, the bounded replay of a backfill (§5.3).
    pub scope: Option<String>,
    /// `scope_event=<n>` (with `scopes=1`): the newest membership event the device knows; the page lists the
    /// memberships only when a newer one exists.
    pub scope_event: i64,
}

impl DownloadQuery {
    /// Validates decoded query pairs in the order of §4.4; the first failure's message is returned. For a
    /// repeated parameter the first occurrence counts; unknown parameters are ignored; empty means absent.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut first: HashMap<&str, &str> = HashMap::new();
        for (k, v) in pairs {
            first.entry(k).or_insert(v);
        }
        let get = |k: &str| first.get(k).copied().filter(|v| !v.is_empty());
        let after = int_param(get("after"), "after", 0)?;
        let limit = match get("limit") {
            None => DOWNLOAD_LIMIT_DEFAULT,
            Some(v) => {
                let n: i64 = v.parse().map_err(|_| "limit must be an integer".to_owned())?;
                if !(1..=DOWNLOAD_LIMIT_MAX).contains(&n) {
                    return Err("limit must be between 1 and 1000".into());
                }
                n
            }
        };
        let schema = match get("schema") {
            Some(s) if !is_valid_name(s) => return Err("invalid schema name".into()),
            other => other.map(str::to_owned),
        };
        let include_self = get("include_self") == Some("true");
        let until = int_param(get("until"), "until", 0)?;
        let scopes = get("scopes") == Some("1");
        let scope = match get("scope") {
            Some(_) if !scopes => return Err("scope needs scopes=1".into()),
            Some(s) if !is_valid_scope(s) => return Err("invalid scope".into()),
            other => other.map(str::to_owned),
        };
        let scope_event = int_param(get("scope_event"), "scope_event", 0)?;
        Ok(Self {
            after,
            limit,
            schema,
            include_self,
            until,
            scopes,
            scope,
            scope_event,
        })
    }
}

/// A scope name (docs/sharing.md §1): 1–128 bytes, no control characters.
pub fn is_valid_scope(s: &str) -> bool {
    (1..=128).contains(&s.len()) && !s.chars().any(char::is_control)
}

fn int_param(v: Option<&str>, name: &str, default: i64) -> Result<i64, String> {
    let Some(v) = v else { return Ok(default) };
    let n: i64 = v.parse().map_err(|_| format!("{name} must be an integer"))?;
    if n < 0 {
        return Err(format!("{name} must be >= 0"));
    }
    Ok(n)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
