//! The server's reading of an upload body: changes are counted while they are parsed, so a request of millions of
//! `{}` elements costs the server no more than a request of a few over the limit.
//!
//! - Up to `limit` changes are parsed whole, as [`UploadRequest::from_json`] would.
//! - Past the limit, only each change's `source_change_id` is kept, for the §6.2.2 answer (one `batch_too_large`
//!   status per change), up to [`overflow_cap`] changes in all. A classic client whose chunk is larger than our
//!   limit still gets the answer it re-chunks on.
//! - Past the cap, parsing stops at once: [`BoundedError::Flood`]; the server answers 413 without per-change work.

use std::cell::Cell;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{ChangeUpload, MapOnly, UploadRequest, null_as_default};

/// How many changes a request may carry before the server stops reading it: twice the limit, at least one more
/// than the limit; `None` when the limit is 0 (unlimited; then the request byte limit is the only bound).
pub fn overflow_cap(limit: usize) -> Option<usize> {
    (limit > 0).then(|| limit.saturating_mul(2).max(limit + 1))
}

/// An upload body read under a batch limit.
#[derive(Debug)]
pub enum BoundedUpload {
    /// At most `limit` changes (or no limit), parsed whole.
    Within(UploadRequest),
    /// More than `limit` changes, at most [`overflow_cap`]: only their scids, in request order.
    TooLarge {
        /// One `source_change_id` per change.
        scids: Vec<i64>,
    },
}

/// Why an upload body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BoundedError {
    /// Not JSON, or wrong types (→ 400 `Failed to parse upload request`).
    #[error("invalid upload body: {0}")]
    Invalid(#[source] serde_json::Error),
    /// More changes than [`overflow_cap`]; reading stopped at the first one past it.
    #[error("more than {cap} changes (limit {limit})")]
    Flood {
        /// The batch limit.
        limit: usize,
        /// The cap that was passed.
        cap: usize,
    },
}

impl UploadRequest {
    /// Reads a body under `limit` changes (0 = unlimited); see the module documentation.
    pub fn from_json_bounded(body: &[u8], limit: usize) -> Result<BoundedUpload, BoundedError> {
        let flooded = Cell::new(false);
        let seed = Body {
            limit,
            flooded: &flooded,
        };
        let mut de = serde_json::Deserializer::from_slice(body);
        let read = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
        match read {
            Ok(v) => Ok(v),
            Err(_) if flooded.get() => Err(BoundedError::Flood {
                limit,
                cap: overflow_cap(limit).unwrap_or(usize::MAX),
            }),
            Err(e) => Err(BoundedError::Invalid(e)),
        }
    }
}

/// The request object: `last_server_seq_seen`, `changes`, anything else ignored (like the derived reader).
struct Body<'a> {
    limit: usize,
    flooded: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Body<'_> {
    type Value = BoundedUpload;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = BoundedUpload;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an upload request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut seen, mut changes) = (None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "last_server_seq_seen" if seen.is_some() => {
                    return Err(A::Error::duplicate_field("last_server_seq_seen"));
                }
                "last_server_seq_seen" => seen = Some(map.next_value::<Option<i64>>()?.unwrap_or_default()),
                "changes" if changes.is_some() => return Err(A::Error::duplicate_field("changes")),
                "changes" => {
                    changes = Some(map.next_value_seed(Changes {
                        limit: self.limit,
                        flooded: self.flooded,
                    })?)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match changes.flatten() {
            Some(Read::TooLarge(scids)) => BoundedUpload::TooLarge { scids },
            Some(Read::Within(v)) => BoundedUpload::Within(UploadRequest {
                last_server_seq_seen: seen.unwrap_or_default(),
                changes: Some(v),
            }),
            None => BoundedUpload::Within(UploadRequest {
                last_server_seq_seen: seen.unwrap_or_default(),
                changes: None,
            }),
        })
    }
}

enum Read {
    Within(Vec<ChangeUpload>),
    TooLarge(Vec<i64>),
}

/// The `changes` array (or `null`).
struct Changes<'a> {
    limit: usize,
    flooded: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Changes<'_> {
    type Value = Option<Read>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Changes<'_> {
    type Value = Option<Read>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of changes or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut whole = Vec::new();
        // A `null` element reads as an empty change, as in `UploadRequest::from_json`.
        while self.limit == 0 || whole.len() < self.limit {
            match seq.next_element::<Option<MapOnly<ChangeUpload>>>()? {
                Some(c) => whole.push(c.map(|m| m.0).unwrap_or_default()),
                None => return Ok(Some(Read::Within(whole))),
            }
        }
        // At the limit: one more element decides between a full batch and one past the limit.
        let Some(next) = seq.next_element::<Option<MapOnly<ScidOnly>>>()? else {
            return Ok(Some(Read::Within(whole)));
        };
        let cap = overflow_cap(self.limit).unwrap_or(usize::MAX);
        let mut scids: Vec<i64> = whole.iter().map(|c| c.source_change_id).collect();
        drop(whole);
        let mut next = Some(next);
        while let Some(c) = next {
            if scids.len() == cap {
                self.flooded.set(true);
                return Err(S::Error::custom("too many changes"));
            }
            scids.push(c.map_or(0, |m| m.0.source_change_id));
            next = seq.next_element::<Option<MapOnly<ScidOnly>>>()?;
        }
        Ok(Some(Read::TooLarge(scids)))
    }
}

/// A change past the limit: only its scid is kept; other fields are skipped unread.
#[derive(Default, Deserialize)]
struct ScidOnly {
    #[serde(default, deserialize_with = "null_as_default")]
    source_change_id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> String {
        let changes: Vec<String> = (0..n).map(|i| format!(r#"{{"source_change_id":{}}}"#, i + 1)).collect();
        format!(r#"{{"last_server_seq_seen":7,"changes":[{}]}}"#, changes.join(","))
    }

    #[test]
    fn within_the_limit_reads_like_the_plain_parser() {
        let BoundedUpload::Within(r) = UploadRequest::from_json_bounded(body(3).as_bytes(), 3).unwrap() else {
            panic!("within")
        };
        assert_eq!(r.last_server_seq_seen, 7);
        assert_eq!(r.changes.unwrap().len(), 3);
        for empty in [r#"{}"#, r#"{"changes":null}"#, r#"{"changes":[],"x":[1,{"y":2}]}"#] {
            let BoundedUpload::Within(r) = UploadRequest::from_json_bounded(empty.as_bytes(), 2).unwrap() else {
                panic!("{empty}")
            };
            assert!(r.changes.unwrap_or_default().is_empty(), "{empty}");
        }
        let BoundedUpload::Within(r) = UploadRequest::from_json_bounded(body(500).as_bytes(), 0).unwrap() else {
            panic!("unlimited")
        };
        assert_eq!(r.changes.unwrap().len(), 500);
    }

    #[test]
    fn past_the_limit_only_scids_are_kept_and_past_the_cap_reading_stops() {
        let BoundedUpload::TooLarge { scids } = UploadRequest::from_json_bounded(body(5).as_bytes(), 3).unwrap() else {
            panic!("too large")
        };
        assert_eq!(scids, [1, 2, 3, 4, 5]);
        assert!(matches!(
            UploadRequest::from_json_bounded(body(6).as_bytes(), 3),
            Ok(BoundedUpload::TooLarge { .. })
        ));
        assert!(matches!(
            UploadRequest::from_json_bounded(body(7).as_bytes(), 3),
            Err(BoundedError::Flood { limit: 3, cap: 6 })
        ));
        // The rest of a flood is never read: even a broken tail is a flood, not a parse error.
        let flood = format!(r#"{{"changes":[{}{{"#, "{},".repeat(1000));
        assert!(matches!(
            UploadRequest::from_json_bounded(flood.as_bytes(), 200),
            Err(BoundedError::Flood { .. })
        ));
    }

    #[test]
    fn malformed_bodies_are_parse_errors() {
        for bad in [
            r#"{"changes":[{"pk":5}]}"#,
            r#"{"changes":{}}"#,
            r#"{"changes":[[1]]}"#,
            r#"{"changes":[],"changes":[]}"#,
            r#"[]"#,
            r#"{} x"#,
            "",
        ] {
            assert!(
                matches!(
                    UploadRequest::from_json_bounded(bad.as_bytes(), 2),
                    Err(BoundedError::Invalid(_))
                ),
                "{bad}"
            );
        }
        // Past the limit, an element must still be an object.
        assert!(matches!(
            UploadRequest::from_json_bounded(br#"{"changes":[{},{},7]}"#, 2),
            Err(BoundedError::Invalid(_))
        ));
    }
}
