//! §7.3 and §7.5 as pure decisions: what the engine does with one upload status, and what one resolved
//! conflict writes. `upload.rs` only performs them; the rules are unit-tested here without SQLite, like the
//! server's `upload/plan.rs`.

use oversync_protocol::Reason;
use oversync_protocol::wire::{ChangeStatus, Status};
use serde_json::{Map, Value};

use crate::conflict::{LocalIntent, Resolution, ServerState};

/// What to do with one status of an upload response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// The row is no longer pending (settled meanwhile): nothing.
    Nothing,
    /// `applied`: keep the version the server gave (if any; a DELETE marks the row's metadata deleted) and
    /// settle the intent.
    Applied { version: Option<i64>, delete: bool },
    /// `conflict`: the resolver decides (see [`conflict_effect`]).
    Conflict,
    /// Rejected for good, but a newer intent was written since the send: keep it, it is not what the server
    /// refused (§7.3); only the frozen copy is cleared.
    KeepNewer,
    /// Rejected for good (`bad_payload`, `unregistered_table`): listed as a rejection, the intent settled.
    Reject { reason: String },
    /// The server has no record of the row the change was based on: forget the version and send it as new.
    ResendAsNew,
    /// Anything else (a transient reason, an unknown status): retried later with this error.
    BackOff(String),
}

/// Decides one status. `pending` is the row's current intent (`change_id`), `None` when it is gone; the
/// change sent had scid `sent` and op `sent_op`.
pub(super) fn decide(s: &ChangeStatus, pending: Option<i64>, sent: i64, sent_op: &str) -> Action {
    let Some(change_id) = pending else {
        return Action::Nothing;
    };
    let unchanged = change_id == sent;
    match (&s.status, s.reason()) {
        (Status::Applied, _) => Action::Applied {
            version: s.new_server_version,
            delete: sent_op == "DELETE",
        },
        (Status::Conflict, _) => Action::Conflict,
        (_, Some(Reason::BadPayload | Reason::UnregisteredTable | Reason::ScopeForbidden | Reason::ReadOnlyTable))
            if !unchanged =>
        {
            Action::KeepNewer
        }
        (
            _,
            Some(r @ (Reason::BadPayload | Reason::UnregisteredTable | Reason::ScopeForbidden | Reason::ReadOnlyTable)),
        ) => Action::Reject {
            reason: r.as_str().to_owned(),
        },
        (_, Some(Reason::InternalError)) if s.is_conflict_without_server_row() => Action::ResendAsNew,
        _ => Action::BackOff(s.message.clone().unwrap_or_else(|| {
            s.invalid
                .as_ref()
                .map_or(s.status.as_str().to_owned(), |i| i.details.to_string())
        })),
    }
}

/// The local row a resolved conflict leaves.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RowWrite<'a> {
    /// This wire-form payload.
    Upsert(&'a Map<String, Value>),
    /// No row.
    Delete,
}

/// What happens to the pending intent after a resolved conflict.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Requeue<'a> {
    /// Nothing is left to send.
    Drop,
    /// Send `op` again against the server's version, with this payload (wire form) or the intent's own.
    Send {
        op: &'static str,
        payload: Option<&'a Map<String, Value>>,
    },
}

/// What one resolved conflict writes: the server's version and tombstone flag go into the metadata, then the
/// row and the intent as below; or, when it would turn an unreadable payload into a delete (which would then
/// spread as a cascade), nothing but a back-off.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Effect<'a> {
    Write { row: RowWrite<'a>, requeue: Requeue<'a> },
    BackOff(&'static str),
}

/// §7.5's effects of `resolution` on a conflict between `server` and `local`.
pub(super) fn conflict_effect<'a>(
    server: &'a ServerState,
    local: &'a LocalIntent,
    resolution: &'a Resolution,
) -> Effect<'a> {
    match resolution {
        Resolution::AcceptServer => match (&server.payload, server.deleted) {
            (Some(p), false) => Effect::Write {
                row: RowWrite::Upsert(p),
                requeue: Requeue::Drop,
            },
            (None, false) => Effect::BackOff("conflict with an unreadable payload"),
            (_, true) => Effect::Write {
                row: RowWrite::Delete,
                requeue: Requeue::Drop,
            },
        },
        Resolution::KeepLocal => {
            // A local upsert against a tombstone re-creates the row at the tombstone's version.
            let op = match (local.op.as_str(), server.deleted) {
                ("DELETE", _) => "DELETE",
                (_, true) => "INSERT",
                _ => "UPDATE",
            };
            match (&local.payload, op) {
                (_, "DELETE") => Effect::Write {
                    row: RowWrite::Delete,
                    requeue: Requeue::Send { op, payload: None },
                },
                (Some(p), _) => Effect::Write {
                    row: RowWrite::Upsert(p),
                    requeue: Requeue::Send { op, payload: None },
                },
                (None, _) => Effect::BackOff("conflict with an unreadable payload"),
            }
        }
        Resolution::Merge(p) => Effect::Write {
            row: RowWrite::Upsert(p),
            requeue: Requeue::Send {
                op: "UPDATE",
                payload: Some(p),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use oversync_protocol::wire::ServerRow;
    use oversync_protocol::{RawValue, Rejection};
    use serde_json::json;

    use super::*;

    fn invalid(rejection: Rejection) -> ChangeStatus {
        ChangeStatus::invalid(1, rejection)
    }

    #[test]
    fn each_status_maps_to_its_action() {
        let applied = ChangeStatus::applied(1, Some(4));
        assert_eq!(
            decide(&applied, Some(1), 1, "UPDATE"),
            Action::Applied {
                version: Some(4),
                delete: false
            }
        );
        assert_eq!(
            decide(&applied, Some(1), 1, "DELETE"),
            Action::Applied {
                version: Some(4),
                delete: true
            }
        );
        assert_eq!(
            decide(&applied, None, 1, "UPDATE"),
            Action::Nothing,
            "settled meanwhile"
        );
        let row = ServerRow {
            id: "p".into(),
            deleted: false,
            payload: Some(RawValue::from_string("{}".into()).unwrap()),
            table_name: "posts".into(),
            server_version: 3,
            schema_name: "business".into(),
        };
        assert_eq!(
            decide(&ChangeStatus::conflict(1, row), Some(1), 1, "UPDATE"),
            Action::Conflict
        );
        let bad = invalid(Rejection::bad_payload("bad"));
        assert_eq!(
            decide(&bad, Some(1), 1, "INSERT"),
            Action::Reject {
                reason: "bad_payload".into()
            }
        );
        assert_eq!(
            decide(&bad, Some(2), 1, "INSERT"),
            Action::KeepNewer,
            "a newer intent is not what was refused"
        );
        let unregistered = invalid(Rejection::unregistered("business", "notes"));
        assert_eq!(
            decide(&unregistered, Some(1), 1, "INSERT"),
            Action::Reject {
                reason: "unregistered_table".into()
            }
        );
        let missing = invalid(Rejection::conflict_without_server_row("business.posts", "p"));
        assert_eq!(decide(&missing, Some(1), 1, "UPDATE"), Action::ResendAsNew);
        let busy = invalid(Rejection::with_error(Reason::InternalError, "boom"));
        assert_eq!(decide(&busy, Some(1), 1, "UPDATE"), Action::BackOff("boom".into()));
        let fk = invalid(Rejection::fk_missing(vec!["business.users:u".into()]));
        assert!(matches!(decide(&fk, Some(1), 1, "INSERT"), Action::BackOff(m) if m.contains("business.users:u")));
    }

    fn server(deleted: bool, payload: Option<Value>) -> ServerState {
        ServerState {
            deleted,
            payload: payload.map(|v| v.as_object().unwrap().clone()),
            server_version: 7,
        }
    }

    fn local(op: &str, payload: Option<Value>) -> LocalIntent {
        LocalIntent {
            op: op.into(),
            payload: payload.map(|v| v.as_object().unwrap().clone()),
            base_version: 5,
        }
    }

    fn up(v: &Value) -> RowWrite<'_> {
        RowWrite::Upsert(v.as_object().unwrap())
    }

    #[test]
    fn resolutions_write_what_section_7_5_says() {
        let (row, mine) = (json!({"t": "server"}), json!({"t": "mine"}));
        let live = server(false, Some(row.clone()));
        let tomb = server(true, None);
        let update = local("UPDATE", Some(mine.clone()));
        let delete = local("DELETE", None);
        let w = |r: &Value| r.as_object().unwrap().clone();

        let s = Resolution::AcceptServer;
        assert_eq!(
            conflict_effect(&live, &update, &s),
            Effect::Write {
                row: up(&row),
                requeue: Requeue::Drop
            }
        );
        assert_eq!(
            conflict_effect(&tomb, &update, &s),
            Effect::Write {
                row: RowWrite::Delete,
                requeue: Requeue::Drop
            }
        );
        let unreadable = server(false, None);
        assert_eq!(
            conflict_effect(&unreadable, &update, &s),
            Effect::BackOff("conflict with an unreadable payload")
        );

        let c = Resolution::KeepLocal;
        let again = |op| Requeue::Send { op, payload: None };
        assert_eq!(
            conflict_effect(&live, &update, &c),
            Effect::Write {
                row: up(&mine),
                requeue: again("UPDATE")
            }
        );
        assert_eq!(
            conflict_effect(&tomb, &update, &c),
            Effect::Write {
                row: up(&mine),
                requeue: again("INSERT")
            },
            "re-created"
        );
        assert_eq!(
            conflict_effect(&live, &delete, &c),
            Effect::Write {
                row: RowWrite::Delete,
                requeue: again("DELETE")
            }
        );
        let lost = local("UPDATE", None);
        assert_eq!(
            conflict_effect(&live, &lost, &c),
            Effect::BackOff("conflict with an unreadable payload")
        );

        let merged = json!({"t": "both"});
        let m = Resolution::Merge(w(&merged));
        let Effect::Write { row, requeue } = conflict_effect(&tomb, &update, &m) else {
            panic!()
        };
        assert_eq!(row, up(&merged));
        assert!(matches!(requeue, Requeue::Send { op: "UPDATE", payload: Some(p) } if *p == w(&merged)));
    }
}
