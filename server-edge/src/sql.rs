//! SQL text helpers: identifiers, and the DDL of the change log's read functions.

/// Quotes an identifier for PostgreSQL: every identifier the server interpolates goes through here.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How the log's read functions are planned: every plan that sorts or goes through a bitmap priced out, and JIT
/// off (a disabled node's cost is past `jit_above_cost`, so JIT would compile every such plan; numbers in
/// bench/results/design-choices.md).
const BY_INDEX: &str =
    "SET enable_sort = off SET enable_incremental_sort = off SET enable_bitmapscan = off SET jit = off";

/// The DDL that creates read function `name(args)` of the change log if it is missing (`args` with names:
/// `p_user text, …`), so that the statements of its PL/pgSQL `body` (`BEGIN … END`) are planned as ordered index
/// scans whatever the statistics say.
///
/// A page of the log is `… ORDER BY user_id, server_id LIMIT n` over a row-comparison range, which only the
/// `(user_id, server_id)` index returns in order without a sort. Left to its estimates, PostgreSQL chose other
/// plans whenever it thought the range small: a user who appeared after the last ANALYZE, rows newer than the
/// histogram, or a window bound it cannot know at planning time (it comes from the same statement). Those plans
/// cost O(rows) per page, not O(page): a bitmap scan and a sort of the whole rest of the window, or a walk of the
/// primary key through every other user's changes. A function's `SET` clauses hold while its body is planned
/// and run, and it is still one statement from the server: one round trip, where a `BEGIN; SET LOCAL …; …;
/// COMMIT` pipeline is several (each answer is flushed on its own through the local Hyperdrive proxy). The
/// measurements are in bench/results/design-choices.md.
///
/// PL/pgSQL, not SQL: a SQL function with `SET` clauses is never inlined, so PostgreSQL planned its body on every
/// call, and for a small request that planning was most of the database's work (a download at the top of the log:
/// 1.3 ms against 0.12 ms in pgbench). PL/pgSQL keeps the plans of its statements for the life of the connection,
/// made under the same `SET` clauses, and can answer a cheap case (nothing above `after`) before it runs the
/// expensive statement.
///
/// A function is created once, never replaced (start-ups stay read-only on the catalog): a changed body needs a
/// new name (`…_v2`).
pub fn read_procedure(name: &str, args: &str, returns: &str, body: &str) -> String {
    procedure(name, args, returns, "STABLE", body)
}

/// [`read_procedure`] with another volatility: `VOLATILE` for a read that takes locks first, so that the
/// statements after them read snapshots taken after the locks.
pub fn procedure(name: &str, args: &str, returns: &str, volatility: &str, body: &str) -> String {
    let arg_types: Vec<&str> = args.split(',').filter_map(|a| a.split_whitespace().last()).collect();
    let arg_types = arg_types.join(", ");
    format!(
        "DO $do$ BEGIN
  IF to_regprocedure('{name}({arg_types})') IS NULL THEN
    CREATE FUNCTION {name}({args}) RETURNS {returns} LANGUAGE plpgsql {volatility} {BY_INDEX} AS $fn${body}$fn$;
  END IF;
END $do$;
"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_are_quoted_and_embedded_quotes_doubled() {
        assert_eq!(super::quote_ident("users"), "\"users\"");
        assert_eq!(
            super::quote_ident("a\"; drop table x; --"),
            "\"a\"\"; drop table x; --\""
        );
    }
}
