//! The server's modules read bottom-up: each imports only modules of its own layer or below, and there is no
//! import circle. A new module (or a new `crate::` import) must find its place here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers, lowest first.
const LAYERS: &[&[&str]] = &[
    // Wire-level helpers with no dependencies.
    &["http", "sql", "pg", "rows", "hub", "observe"],
    // The host, identity, configuration and the registry, and the sync schema.
    &["runtime", "auth", "config", "registry", "convert", "schema"],
    // Errors as answers, shares, and the change listener.
    &["error", "admission", "listen"],
    // What handlers get from the service.
    &["ctx"],
    // Route handlers, and adoption and compaction (commands and tasks beside the routes).
    &[
        "download", "snapshot", "watch", "upload", "admin", "adopt", "compact", "ready",
    ],
    // The service (and its stream route).
    &["service", "stream"],
    // Front doors.
    &["native", "edge", "main", "lib", "layers_tests"],
];

/// Top-level module → the top-level modules its files import (`crate::x` outside comments).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel.components().next().unwrap().as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let used = out.entry(module.clone()).or_default();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or_default();
                for part in code.split("crate::").skip(1) {
                    let name: String = part
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module && name.chars().next().is_some_and(|c| c.is_lowercase()) {
                        used.insert(name);
                    }
                }
            }
        }
    }
    out
}

fn layer(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} has no layer in layers_tests.rs"))
}

#[test]
fn no_module_imports_upward_and_there_is_no_circle() {
    let graph = imports();
    let mut upward = Vec::new();
    for (module, used) in &graph {
        for u in used {
            if layer(u) > layer(module) {
                upward.push(format!("{module} -> {u}"));
            }
        }
    }
    assert!(upward.is_empty(), "upward imports: {upward:?}");
    // Within a layer imports are allowed but must not close a circle.
    fn visit<'a>(
        m: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(i) = path.iter().position(|p| *p == m) {
            panic!("import circle: {}", path[i..].join(" -> ") + " -> " + m);
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for u in graph.get(m).into_iter().flatten() {
            visit(u, graph, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
}
