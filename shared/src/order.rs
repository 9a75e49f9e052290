//! The FK topological order of registered tables (PROTOCOL.md §6.5): upserts are applied parent-first and
//! deletes child-first. Self-references are ignored, ties are broken by `schema.table`, a cycle is broken by
//! taking the alphabetically first remaining table, and tables outside the FK graph come last.

use std::collections::{BTreeMap, BTreeSet};

use crate::TableRef;

/// A foreign-key edge: `child` references `parent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FkEdge {
    /// The referencing table.
    pub child: TableRef,
    /// The referenced table.
    pub parent: TableRef,
}

/// Returns `tables` parent-first. Edges naming tables outside `tables` are ignored.
pub fn parent_first(tables: &[TableRef], edges: &[FkEdge]) -> Vec<TableRef> {
    let known: BTreeSet<&TableRef> = tables.iter().collect();
    let mut parents: BTreeMap<&TableRef, BTreeSet<&TableRef>> = BTreeMap::new();
    let mut in_graph: BTreeSet<&TableRef> = BTreeSet::new();
    for e in edges {
        if e.child == e.parent || !known.contains(&e.child) || !known.contains(&e.parent) {
            continue;
        }
        parents.entry(&e.child).or_default().insert(&e.parent);
        in_graph.insert(&e.child);
        in_graph.insert(&e.parent);
    }
    let mut remaining: BTreeSet<&TableRef> = in_graph.clone();
    let mut order = Vec::with_capacity(tables.len());
    while !remaining.is_empty() {
        let ready = remaining.iter().copied().find(|t| {
            parents
                .get(t)
                .is_none_or(|ps| ps.iter().all(|p| !remaining.contains(p)))
        });
        // On a cycle nothing is ready: take the alphabetically first remaining table.
        let next = ready.unwrap_or_else(|| *remaining.iter().next().expect("non-empty"));
        remaining.remove(next);
        order.push(next.clone());
    }
    let outside: BTreeSet<&TableRef> = tables.iter().filter(|t| !in_graph.contains(t)).collect();
    order.extend(outside.into_iter().cloned());
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TableRef {
        TableRef::parse(name).unwrap()
    }

    fn edge(child: &str, parent: &str) -> FkEdge {
        FkEdge {
            child: t(child),
            parent: t(parent),
        }
    }

    fn names(v: Vec<TableRef>) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn parents_come_first_and_ties_are_alphabetical() {
        let tables = [t("b.posts"), t("b.comments"), t("b.users"), t("b.files"), t("a.tags")];
        let edges = [
            edge("b.posts", "b.users"),
            edge("b.comments", "b.posts"),
            edge("b.comments", "b.users"),
        ];
        assert_eq!(
            names(parent_first(&tables, &edges)),
            ["b.users", "b.posts", "b.comments", "a.tags", "b.files"]
        );
    }

    #[test]
    fn self_references_are_ignored_and_cycles_break_alphabetically() {
        let tables = [t("x.c"), t("x.a"), t("x.b"), t("x.d")];
        let edges = [
            edge("x.a", "x.b"),
            edge("x.b", "x.a"),
            edge("x.c", "x.a"),
            edge("x.d", "x.d"),
        ];
        assert_eq!(names(parent_first(&tables, &edges)), ["x.a", "x.b", "x.c", "x.d"]);
    }
}
