//! Where a change to a scoped table goes (docs/sharing.md §4, §5.1): the payload's scope, where its row is now,
//! the owner it is written under and the scopes the user must be a writer of.

use std::collections::HashMap;

use oversync_protocol::validate::{Op, ValidChange, is_valid_scope};
use oversync_protocol::wire::Rejection;
use serde_json::value::RawValue;
use tokio_postgres::types::Type;

use super::plan::{RowKey, RowMeta};
use crate::auth::claims::SCOPE_OWNER_PREFIX;
use crate::rows::unzip_keys;
use crate::schema::scopes::WHERE_ROWS_SQL;

/// Where a key lives: its owner and metadata there.
pub(super) type Place = (String, RowMeta);

/// The payload's scope of an upsert to a scoped table: `Some(scope)`, `None` for a draft (NULL or absent).
pub fn payload_scope(column: &str, c: &ValidChange) -> Result<Option<String>, Rejection> {
    let Some(payload) = &c.payload else { return Ok(None) };
    let bad = |why: &str| Rejection::bad_payload(format!("{why} for {} pk={}", c.table, c.pk));
    let map: HashMap<String, &RawValue> = serde_json::from_str(payload.get()).map_err(|_| bad("bad payload"))?;
    let Some(raw) = map
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(column))
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    match serde_json::from_str::<Option<String>>(raw.get()) {
        Ok(None) => Ok(None),
        Ok(Some(s)) if is_valid_scope(&s) => Ok(Some(s)),
        _ => Err(bad(&format!(
            "{column} must be a scope name (1-128 bytes, no control characters) or null"
        ))),
    }
}

pub(super) fn owner_of(user: &str, scope: Option<&str>) -> String {
    scope.map_or_else(|| user.to_owned(), |s| format!("{SCOPE_OWNER_PREFIX}{s}"))
}

pub(super) fn scope_of(owner: &str) -> Option<&str> {
    owner.strip_prefix(SCOPE_OWNER_PREFIX)
}

/// The live place of each key, else its newest tombstone.
pub(super) async fn places(
    tx: &tokio_postgres::Transaction<'_>,
    user: &str,
    keys: &[RowKey],
) -> Result<HashMap<RowKey, Place>, tokio_postgres::Error> {
    let (s, t, p) = unzip_keys(keys);
    let rows = tx
        .query_typed(
            WHERE_ROWS_SQL,
            &[
                (&user, Type::TEXT),
                (&s, Type::TEXT_ARRAY),
                (&t, Type::TEXT_ARRAY),
                (&p, Type::TEXT_ARRAY),
            ],
        )
        .await?;
    let mut out: HashMap<RowKey, Place> = HashMap::new();
    for r in rows {
        let key = (
            oversync_protocol::TableRef::new(r.get::<_, String>(0), r.get::<_, String>(1)),
            r.get(2),
        );
        let meta = RowMeta {
            version: r.get(4),
            deleted: r.get(5),
        };
        let better = out.get(&key).is_none_or(|(_, m)| {
            (m.deleted && !meta.deleted) || (m.deleted == meta.deleted && meta.version > m.version)
        });
        if better {
            out.insert(key, (r.get(3), meta));
        }
    }
    Ok(out)
}

/// What one scoped change needs: its owner for the write, the place it moves from, and the scopes it writes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Routed {
    /// The owner the change is written under.
    pub owner: String,
    /// Where its row is now, when that is another owner (a move, or a row moved or deleted away).
    pub from: Option<Place>,
    /// The scopes the user must be a writer of.
    pub scopes: Vec<String>,
}

/// Routes one change of a scoped table: `target` is the payload's scope of an upsert (`Some(None)`: a draft), `at`
/// where its row is.
pub(super) fn route(user: &str, op: Op, target: Option<&Option<String>>, at: Option<&Place>) -> Routed {
    let mut scopes: Vec<String> = Vec::new();
    let owner = match (op, target) {
        (Op::Delete, _) | (_, None) => at.map_or_else(|| user.to_owned(), |(o, _)| o.clone()),
        (_, Some(scope)) => {
            scopes.extend(scope.clone());
            owner_of(user, scope.as_deref())
        }
    };
    if let Some(s) = at.and_then(|(o, _)| scope_of(o)) {
        scopes.push(s.to_owned());
    }
    // An upsert is decided against where its row is, live or deleted, even in another owner: an edit of a row
    // that another member moved away or deleted since is a conflict, as for a row deleted in place.
    let from = at.filter(|(o, _)| *o != owner && !op.is_delete()).cloned();
    scopes.sort();
    scopes.dedup();
    Routed { owner, from, scopes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(owner: &str, version: i64, deleted: bool) -> Place {
        (owner.to_owned(), RowMeta { version, deleted })
    }

    fn routed(owner: &str, from: Option<Place>, scopes: &[&str]) -> Routed {
        Routed {
            owner: owner.to_owned(),
            from,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    const T: &str = "\u{1f}t";
    const U: &str = "\u{1f}u";

    #[test]
    fn a_new_row_goes_to_its_scope_or_stays_a_draft() {
        let shared = Some("t".to_owned());
        assert_eq!(route("me", Op::Insert, Some(&shared), None), routed(T, None, &["t"]));
        assert_eq!(route("me", Op::Insert, Some(&None), None), routed("me", None, &[]));
    }

    #[test]
    fn an_edit_in_place_needs_the_scope_and_a_move_both() {
        let to_t = Some("t".to_owned());
        assert_eq!(
            route("me", Op::Update, Some(&to_t), Some(&at(T, 3, false))),
            routed(T, None, &["t"])
        );
        let to_u = Some("u".to_owned());
        let from_t = at(T, 3, false);
        assert_eq!(
            route("me", Op::Update, Some(&to_u), Some(&from_t)),
            routed(U, Some(from_t.clone()), &["t", "u"])
        );
        assert_eq!(
            route("me", Op::Update, Some(&None), Some(&from_t)),
            routed("me", Some(from_t), &["t"])
        );
        let draft = at("me", 2, false);
        assert_eq!(
            route("me", Op::Update, Some(&to_t), Some(&draft)),
            routed(T, Some(draft), &["t"])
        );
    }

    #[test]
    fn a_delete_goes_where_its_row_is_and_an_edit_of_a_deleted_row_is_decided_there() {
        assert_eq!(
            route("me", Op::Delete, None, Some(&at(T, 3, false))),
            routed(T, None, &["t"])
        );
        assert_eq!(route("me", Op::Delete, None, None), routed("me", None, &[]));
        let gone = at(T, 4, true);
        assert_eq!(
            route("me", Op::Update, Some(&None), Some(&gone)),
            routed("me", Some(gone), &["t"])
        );
    }

    #[test]
    fn scope_values_are_strings_or_null() {
        let change = |payload: &str| ValidChange {
            table: oversync_protocol::TableRef::new("business", "team_posts"),
            pk: "0b0a3ae4-7a63-4b3c-9c34-1d9e3f6b8e11".into(),
            op: Op::Insert,
            payload: Some(RawValue::from_string(payload.to_owned()).unwrap()),
            scid: 1,
            base_version: 0,
        };
        assert_eq!(
            payload_scope("team_id", &change(r#"{"Team_ID":"t"}"#)),
            Ok(Some("t".into()))
        );
        assert_eq!(payload_scope("team_id", &change(r#"{"team_id":null}"#)), Ok(None));
        assert_eq!(payload_scope("team_id", &change(r#"{"title":"x"}"#)), Ok(None));
        for bad in [r#"{"team_id":1}"#, r#"{"team_id":""}"#, r#"{"team_id":"a\u0001"}"#] {
            assert!(payload_scope("team_id", &change(bad)).is_err(), "{bad}");
        }
    }
}
