//! The query strings of the read routes, parsed by the server and built by the client in one place:
//! `GET /sync/download` (§4.4, [`DownloadQuery`]), `/sync/snapshot` (§8.2, [`SnapshotQuery`]) and
//! `/sync/watch` (§8.3, [`WatchQuery`]).

use std::collections::HashMap;

use crate::TableRef;
use crate::names::is_valid_name;
use crate::pk::canonical_pk;
use crate::validate::DownloadQuery;

/// Largest snapshot page.
pub const SNAPSHOT_LIMIT_MAX: i64 = 1000;

/// Decodes a query string (`a=1&b=x`, percent-encoded) into its pairs, in order.
fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn path(route: &str, pairs: &[(&str, String)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    format!("{route}?{}", q.finish())
}

impl DownloadQuery {
    /// Parses and validates a `/sync/download` query string (see [`DownloadQuery::from_pairs`]).
    pub fn from_query(query: &str) -> Result<Self, String> {
        let pairs = pairs(query);
        Self::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The request path for this query, as a client sends it.
    pub fn path(&self) -> String {
        let mut p = vec![("after", self.after.to_string()), ("limit", self.limit.to_string())];
        if let Some(s) = &self.schema {
            p.push(("schema", s.clone()));
        }
        p.push(("until", self.until.to_string()));
        if self.include_self {
            p.push(("include_self", "true".into()));
        }
        if self.scopes {
            p.push(("scopes", "1".into()));
        }
        if let Some(s) = &self.scope {
            p.push(("scope", s.clone()));
        }
        if self.scope_event > 0 {
            p.push(("scope_event", self.scope_event.to_string()));
        }
        path("/sync/download", &p)
    }
}

/// Validated `GET /sync/snapshot` parameters (§8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotQuery {
    /// Only this schema, when given.
    pub schema: Option<String>,
    /// The keyset position to continue after: `(schema.table, pk)`.
    pub after: Option<(TableRef, String)>,
    /// Page size, 1..=[`SNAPSHOT_LIMIT_MAX`] (default 100).
    pub limit: i64,
    /// The window (`server_id`) the snapshot is frozen at; 0 = the user's current maximum.
    pub until: i64,
    /// `scope=<s>`: that scope's live rows instead of the user's (docs/sharing.md §5.3's backfill).
    pub scope: Option<String>,
}

impl SnapshotQuery {
    /// Validates decoded query pairs; a malformed parameter is named in the message. For a repeated parameter
    /// the first occurrence counts; empty means absent.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut first = HashMap::new();
        for (k, v) in pairs {
            first.entry(k).or_insert(v);
        }
        let get = |k: &str| first.get(k).copied().filter(|v| !v.is_empty());
        let schema = match get("schema") {
            Some(s) if !is_valid_name(s) => return Err("invalid schema name".into()),
            other => other.map(str::to_owned),
        };
        let after = match (get("after_table"), get("after_pk")) {
            (None, _) => None,
            (Some(t), pk) => {
                let table = TableRef::parse(t)
                    .filter(|r| t.contains('.') && r.to_string() == t)
                    .ok_or("after_table must be <schema>.<table>")?;
                let pk = pk.ok_or("after_pk is required with after_table")?;
                Some((table, canonical_pk(pk).ok_or("after_pk must be a UUID")?))
            }
        };
        let limit = match get("limit") {
            None => 100,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=SNAPSHOT_LIMIT_MAX).contains(n))
                .ok_or("limit must be between 1 and 1000")?,
        };
        let until = match get("until") {
            None => 0,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or("until must be an integer >= 0")?,
        };
        let scope = match get("scope") {
            Some(s) if !crate::validate::is_valid_scope(s) => return Err("invalid scope".into()),
            other => other.map(str::to_owned),
        };
        Ok(Self {
            schema,
            after,
            limit,
            until,
            scope,
        })
    }

    /// Parses and validates a `/sync/snapshot` query string.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let pairs = pairs(query);
        Self::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The request path for this query, as a client sends it.
    pub fn path(&self) -> String {
        let mut p = Vec::new();
        if let Some(s) = &self.schema {
            p.push(("schema", s.clone()));
        }
        p.push(("limit", self.limit.to_string()));
        p.push(("until", self.until.to_string()));
        if let Some((table, pk)) = &self.after {
            p.push(("after_table", table.to_string()));
            p.push(("after_pk", pk.clone()));
        }
        if let Some(s) = &self.scope {
            p.push(("scope", s.clone()));
        }
        path("/sync/snapshot", &p)
    }
}

/// Validated `GET /sync/watch` parameters (§8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchQuery {
    /// Answer once the user's log grows past this `server_id` (≥ 0, default 0).
    pub after: i64,
    /// How long to wait, 1..=60 s (default 25).
    pub timeout_s: u64,
    /// `scopes=1`: changes of the user's scopes count too (docs/sharing.md §7), for a scope-aware client.
    pub scopes: bool,
}

impl WatchQuery {
    /// `after` and `timeout_s`; a malformed parameter is named. For a repeated parameter the first counts.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut q = Self {
            after: 0,
            timeout_s: 25,
            scopes: false,
        };
        let mut seen = (false, false);
        for (k, v) in pairs {
            match k {
                "after" if !seen.0 => {
                    seen.0 = true;
                    q.after = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or("after must be a non-negative integer")?;
                }
                "timeout_s" if !seen.1 => {
                    seen.1 = true;
                    q.timeout_s = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=60).contains(n))
                        .ok_or("timeout_s must be between 1 and 60")?;
                }
                "scopes" => q.scopes |= v == "1",
                _ => {}
            }
        }
        Ok(q)
    }

    /// Parses and validates a `/sync/watch` query string.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let pairs = pairs(query);
        Self::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The request path for this query, as a client sends it.
    pub fn path(&self) -> String {
        let mut p = vec![
            ("after", self.after.to_string()),
            ("timeout_s", self.timeout_s.to_string()),
        ];
        if self.scopes {
            p.push(("scopes", "1".into()));
        }
        path("/sync/watch", &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client builds, the server parses back to the same query.
    #[test]
    fn every_read_query_round_trips_through_its_path() {
        let d = DownloadQuery {
            after: 7,
            limit: 500,
            schema: Some("business".into()),
            include_self: true,
            until: 42,
            scopes: true,
            scope: Some("team 1/ä".into()),
            scope_event: 3,
        };
        let built = d.path();
        let (_, q) = built.split_once('?').unwrap();
        assert_eq!(DownloadQuery::from_query(q).unwrap(), d);
        let s = SnapshotQuery {
            schema: Some("business".into()),
            after: Some((
                TableRef::parse("business.users").unwrap(),
                "0b0a3ae4-7a63-4b3c-9c34-1d9e3f6b8e11".into(),
            )),
            limit: 100,
            until: 9,
            scope: Some("team/1".into()),
        };
        let built = s.path();
        let (route, q) = built.split_once('?').unwrap();
        assert_eq!(route, "/sync/snapshot");
        assert_eq!(SnapshotQuery::from_query(q).unwrap(), s);
        let w = WatchQuery {
            after: 3,
            timeout_s: 25,
            scopes: true,
        };
        assert_eq!(WatchQuery::from_query(w.path().split_once('?').unwrap().1).unwrap(), w);
        assert_eq!(
            SnapshotQuery::from_query("limit=0").unwrap_err(),
            "limit must be between 1 and 1000"
        );
        assert_eq!(
            WatchQuery::from_query("timeout_s=61").unwrap_err(),
            "timeout_s must be between 1 and 60"
        );
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let q = |s: &[(&'static str, &'static str)]| WatchQuery::from_pairs(s.iter().copied());
        assert_eq!(
            q(&[]),
            Ok(WatchQuery {
                after: 0,
                timeout_s: 25,
                scopes: false,
            })
        );
        assert_eq!(
            q(&[("after", "7"), ("timeout_s", "1")]),
            Ok(WatchQuery {
                after: 7,
                timeout_s: 1,
                scopes: false,
            })
        );
        assert_eq!(
            q(&[("after", "-1")]).unwrap_err(),
            "after must be a non-negative integer"
        );
        assert_eq!(
            q(&[("after", "x")]).unwrap_err(),
            "after must be a non-negative integer"
        );
        assert_eq!(
            q(&[("timeout_s", "0")]).unwrap_err(),
            "timeout_s must be between 1 and 60"
        );
        assert_eq!(
            q(&[("timeout_s", "61")]).unwrap_err(),
            "timeout_s must be between 1 and 60"
        );
    }
}
