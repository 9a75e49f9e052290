//! `POST /sync/admin/members` (docs/sharing.md §3): sets or removes one scope membership, for an app's backend
//! that holds the admin secret. Users' tokens have no say here: the route checks its own secret, compared in
//! constant time, before it reads a byte of the body.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio_postgres::types::Type;

use crate::error::ApiError;

/// The largest body the route reads: a scope, a user and a role fit many times over.
pub const ADMIN_BODY_BYTES: usize = 4096;
/// Longest scope name, in bytes (the table's CHECK says the same).
pub const MAX_SCOPE_BYTES: usize = 128;
/// Longest user id, in bytes (likewise).
pub const MAX_USER_BYTES: usize = 256;

/// The request: `role` `"reader"` or `"writer"` sets the membership, `null` (or absent) removes it.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberChange {
    /// The scope.
    pub scope: String,
    /// The user id (as the tokens' user claim names it).
    pub user: String,
    /// The role to hold, or `None` to leave.
    #[serde(default)]
    pub role: Option<String>,
}

/// The answer: the membership as it is now, and whether the request changed it.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct MemberState {
    /// The scope.
    pub scope: String,
    /// The user id.
    pub user: String,
    /// The role now held, `None` when not a member.
    pub role: Option<String>,
    /// The request changed something (a repeated request answers `false`).
    pub changed: bool,
}

/// Whether `authorization` is `Bearer <secret>`. Constant time in the secret's bytes; the length of a wrong
/// secret is not hidden, which tells nothing about the right one's bytes.
pub fn authorized(authorization: Option<&str>, secret: &str) -> bool {
    let given = authorization.and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
    bool::from(given.as_bytes().ct_eq(secret.as_bytes()))
}

/// Parses and checks a request body.
pub fn parse(body: &[u8]) -> Result<MemberChange, ApiError> {
    let change: MemberChange =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidRequest(format!("invalid admin request: {e}")))?;
    let bad = |m: &str| Err(ApiError::InvalidRequest(m.to_owned()));
    if change.scope.is_empty() || change.scope.len() > MAX_SCOPE_BYTES {
        return bad("scope must be 1 to 128 bytes");
    }
    if change.user.is_empty() || change.user.len() > MAX_USER_BYTES {
        return bad("user must be 1 to 256 bytes");
    }
    if change.scope.chars().chain(change.user.chars()).any(char::is_control) {
        return bad("scope and user must not contain control characters");
    }
    if let Some(role) = &change.role
        && role != "reader"
        && role != "writer"
    {
        return bad("role must be \"reader\", \"writer\" or null");
    }
    Ok(change)
}

/// Applies `change` in one statement (one transaction of its own) and reports the membership after it.
pub async fn apply(conn: &tokio_postgres::Client, change: MemberChange) -> Result<MemberState, ApiError> {
    let MemberChange { scope, user, role } = change;
    let changed = match &role {
        Some(role) => {
            conn.execute_typed(
                "INSERT INTO sync.scope_members (scope, user_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (scope, user_id) DO UPDATE SET role = excluded.role
                 WHERE sync.scope_members.role IS DISTINCT FROM excluded.role",
                &[(&scope, Type::TEXT), (&user, Type::TEXT), (role, Type::TEXT)],
            )
            .await
        }
        None => {
            conn.execute_typed(
                "DELETE FROM sync.scope_members WHERE scope = $1 AND user_id = $2",
                &[(&scope, Type::TEXT), (&user, Type::TEXT)],
            )
            .await
        }
    }
    .map_err(ApiError::admin)?;
    Ok(MemberState {
        scope,
        user,
        role,
        changed: changed > 0,
    })
}

/// `POST /demo/teams` (with `dev_signin` only): the demo app's stand-in for an app backend that manages teams
/// (docs/sharing.md §3 leaves that to the app). The signed-in user creates a team (`{"create": name}`: a new
/// scope `<name>-<8 hex>`, the user its writer), joins one by its code (`{"join": code}`: an existing team, as a
/// writer) or leaves one (`{"leave": code}`); a member pins a note from the team admin (`{"pin": {"team", "text"}}`,
/// the demo's backend writer, issue 33). Answers as the admin route does: `{scope, user, role, changed}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum DemoTeam {
    /// A new team named so.
    Create(String),
    /// An existing team's code.
    Join(String),
    /// A team to leave.
    Leave(String),
    /// A note the team's admin pins (issue 33): the demo's backend writer. It is written into
    /// `business.team_posts` with plain SQL, not through the sync API, and reaches the members' devices by capture.
    Pin {
        /// The team (the signed-in user must be a member).
        team: String,
        /// The note's title.
        text: String,
    },
}

/// Runs a [`DemoTeam`] request of `user`.
pub async fn demo_team(conn: &tokio_postgres::Client, user: &str, body: &[u8]) -> Result<MemberState, ApiError> {
    let req: DemoTeam =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidRequest(format!("invalid team request: {e}")))?;
    let (scope, role) = match req {
        DemoTeam::Create(name) => {
            let slug: String = name
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .take(40)
                .collect::<String>()
                .trim()
                .replace(' ', "-")
                .to_lowercase();
            let slug = if slug.is_empty() { "team".to_owned() } else { slug };
            let code = format!("{slug}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            (code, Some("writer".to_owned()))
        }
        DemoTeam::Join(code) => {
            let exists: bool = conn
                .query_typed_one(
                    "SELECT EXISTS (SELECT 1 FROM sync.scope_members WHERE scope = $1)",
                    &[(&code, Type::TEXT)],
                )
                .await
                .map_err(ApiError::admin)?
                .get(0);
            if !exists {
                return Err(ApiError::InvalidRequest(format!("no team has the code {code:?}")));
            }
            (code, Some("writer".to_owned()))
        }
        DemoTeam::Leave(code) => (code, None),
        DemoTeam::Pin { team, text } => return pin(conn, user, team, text).await,
    };
    let change = MemberChange {
        scope,
        user: user.to_owned(),
        role,
    };
    let change = parse(&serde_json::to_vec(&change).expect("serialisable"))?;
    apply(conn, change).await
}

/// [`DemoTeam::Pin`]: a member's request makes the "team admin" write a post with plain SQL.
async fn pin(conn: &tokio_postgres::Client, user: &str, team: String, text: String) -> Result<MemberState, ApiError> {
    let role: Option<String> = conn
        .query_typed_opt(
            "SELECT role FROM sync.scope_members WHERE scope = $1 AND user_id = $2",
            &[(&team, Type::TEXT), (&user, Type::TEXT)],
        )
        .await
        .map_err(ApiError::admin)?
        .map(|r| r.get(0));
    if role.is_none() {
        return Err(ApiError::InvalidRequest(format!("not a member of the team {team:?}")));
    }
    let title: String = text.trim().chars().take(200).collect();
    if title.is_empty() {
        return Err(ApiError::InvalidRequest("a pinned note needs a text".into()));
    }
    conn.execute_typed(
        "INSERT INTO business.team_posts (id, team_id, title, content, author_name, created_at, updated_at)
         VALUES (gen_random_uuid(), $1, $2, 'Pinned by the team admin', 'team admin',
                 now(), now())",
        &[(&team, Type::TEXT), (&format!("📌 {title}"), Type::TEXT)],
    )
    .await
    .map_err(ApiError::admin)?;
    Ok(MemberState {
        scope: team,
        user: user.to_owned(),
        role,
        changed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_secret_is_authorized() {
        let secret = "an-admin-secret-of-thirty-two-by";
        assert!(authorized(Some(&format!("Bearer {secret}")), secret));
        for wrong in [
            None,
            Some(""),
            Some(secret),
            Some("Bearer "),
            Some("Bearer an-admin-secret-of-thirty-two-bx"),
            Some("Bearer an-admin-secret-of-thirty-two-b"),
            Some("bearer an-admin-secret-of-thirty-two-by"),
        ] {
            assert!(!authorized(wrong, secret), "{wrong:?}");
        }
    }

    #[test]
    fn a_request_names_a_scope_a_user_and_a_known_role() {
        let ok = parse(br#"{"scope":"team-1","user":"u","role":"writer"}"#).unwrap();
        assert_eq!(ok.role.as_deref(), Some("writer"));
        assert_eq!(parse(br#"{"scope":"team-1","user":"u"}"#).unwrap().role, None);
        let long = "s".repeat(129);
        for bad in [
            r#"{"scope":"","user":"u","role":"reader"}"#.to_owned(),
            format!(r#"{{"scope":"{long}","user":"u"}}"#),
            r#"{"scope":"t","user":"","role":"reader"}"#.to_owned(),
            r#"{"scope":"t","user":"u","role":"owner"}"#.to_owned(),
            r#"{"scope":"t\u0000","user":"u"}"#.to_owned(),
            r#"{"scope":"t","user":"\u001fteam"}"#.to_owned(),
            r#"{"scope":"t","user":"u","extra":1}"#.to_owned(),
            "not json".to_owned(),
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(ApiError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }
}
