//! The code's shape, checked, in every crate of the workspace (the root's `members`, and the
//! root package): no two modules import each other, directly or through others, at any depth
//! (siblings under one parent, top-level modules among themselves); and the web's route
//! modules (`routes::<page family>`) never import each other.
//!
//! A module's imports are its `crate::`, `super::` and `self::` paths (grouped or not), each
//! resolved to the deepest module it names, and its crate root's re-exports. An import between
//! a module and one of its own ancestors or descendants is the module's own business and is
//! not counted; any other one counts between the two siblings under their nearest common
//! parent (`a::x` using `b::y` is `a` using `b`). Unit tests (`#[cfg(test)] mod …`) are left
//! out: their `super::` is the file itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside its crate: `[]` for the root, `["store", "rows"]` for
/// `store/rows.rs`.
type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The crates to check: the workspace's members and the root package.
fn crates(root: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    let members = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("members = "))
        .unwrap_or_else(|| panic!("no `members = [...]` line in Cargo.toml"));
    let mut out: Vec<String> = members
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    out.push(".".into());
    out
}

/// The module a source file is (`lib.rs`/`main.rs` are the root, `x/mod.rs` is `x`).
fn module_of(src: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(src).ok()?.with_extension("");
    let mut path: ModPath = rel
        .components()
        .filter_map(|c| c.as_os_str().to_str().map(str::to_owned))
        .collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    if path == ["lib"] || path == ["main"] {
        path.clear();
    }
    Some(path)
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The paths of a use tree or an expression path starting at `s`: `a::{b::X, c}` is
/// `[a, b, X]` and `[a, c]`.
fn use_tree(s: &str) -> Vec<Vec<String>> {
    let s = s.trim_start();
    if let Some(group) = s.strip_prefix('{') {
        let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    out.extend(use_tree(&group[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(use_tree(&group[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
        return out;
    }
    let head = ident(s);
    if head.is_empty() {
        return Vec::new();
    }
    match s[head.len()..].strip_prefix("::") {
        Some(rest) if !rest.starts_with(' ') => {
            let tails = use_tree(rest);
            if tails.is_empty() {
                return vec![vec![head.to_owned()]];
            }
            tails
                .into_iter()
                .map(|t| std::iter::once(head.to_owned()).chain(t).collect())
                .collect()
        }
        _ => vec![vec![head.to_owned()]],
    }
}

/// The module-relative paths of `text`, seen from module `at`: each `crate::…`, `super::…`
/// (any number of them) and `self::…` path, as a path from the crate root.
fn paths_from(text: &str, at: &ModPath) -> Vec<ModPath> {
    let mut out = Vec::new();
    for prefix in ["crate::", "super::", "self::"] {
        for (i, _) in text.match_indices(prefix) {
            let before = &text[..i];
            // Only where a path starts: not the second `super::` of `super::super::`, not `$crate::`.
            if before.ends_with("::") || before.ends_with('$') || ident_end(before) {
                continue;
            }
            let mut rest = &text[i + prefix.len()..];
            let mut base: ModPath = match prefix {
                "crate::" => Vec::new(),
                "self::" => at.clone(),
                _ => at[..at.len().saturating_sub(1)].to_vec(),
            };
            if prefix == "super::" {
                while let Some(r) = rest.strip_prefix("super::") {
                    base.pop();
                    rest = r;
                }
            }
            for tail in use_tree(rest) {
                out.push(base.iter().cloned().chain(tail).collect());
            }
        }
    }
    out
}

fn ident_end(before: &str) -> bool {
    before
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// What a crate root re-exports: item name to the module it comes from.
fn reexports(root: &str) -> BTreeMap<String, ModPath> {
    let mut out = BTreeMap::new();
    for line in root.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        for path in use_tree(rest.trim_end_matches(';')) {
            if let (Some(name), true) = (path.last(), path.len() > 1) {
                out.insert(name.clone(), path[..path.len() - 1].to_vec());
            }
        }
    }
    out
}

/// The deepest known module `path` names; an item of the root is looked up among the
/// root's re-exports.
fn resolve(
    path: &[String],
    modules: &BTreeSet<ModPath>,
    exported: &BTreeMap<String, ModPath>,
) -> Option<ModPath> {
    let deepest = (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))?;
    if deepest.is_empty() {
        let head = path.first()?;
        return exported.get(head).cloned();
    }
    Some(deepest)
}

/// An import from module `from` to module `to`, as the edge between the two siblings under
/// their nearest common parent; `None` when one contains the other.
fn sibling_edge(from: &ModPath, to: &ModPath) -> Option<(ModPath, ModPath)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((from[..=common].to_vec(), to[..=common].to_vec()))
}

fn without_unit_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod ")
        .map_or(text, |at| &text[..at])
}

type Graph = BTreeMap<ModPath, BTreeSet<ModPath>>;

fn import_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let modules: BTreeSet<ModPath> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let roots = ["lib.rs", "main.rs"].map(|r| read(&src.join(r))).join("\n");
    let exported = reexports(&roots);
    let mut graph = Graph::new();
    for file in &files {
        let Some(from) = module_of(src, file) else {
            continue;
        };
        let text = read(file);
        for path in paths_from(without_unit_tests(&text), &from) {
            let Some(to) = resolve(&path, &modules, &exported) else {
                continue;
            };
            if let Some((a, b)) = sibling_edge(&from, &to) {
                graph.entry(a).or_default().insert(b);
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the modules along it.
fn find_cycle(graph: &Graph) -> Option<Vec<ModPath>> {
    fn visit(
        node: &ModPath,
        graph: &Graph,
        path: &mut Vec<ModPath>,
        done: &mut BTreeSet<ModPath>,
    ) -> Option<Vec<ModPath>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn shown(path: &[ModPath]) -> String {
    path.iter()
        .map(|m| m.join("::"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[test]
fn no_crate_has_modules_that_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crates = crates(root);
    assert!(crates.iter().any(|c| c == "stack"), "{crates:?}");
    let mut cycles = Vec::new();
    for krate in &crates {
        let src = root.join(krate).join("src");
        let graph = import_graph(&src);
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        // A crate of one file has no modules to import each other; migrations' are data.
        assert!(
            krate == "migrations" || files.len() < 2 || !graph.is_empty(),
            "{krate}: no imports found; is the scan broken?"
        );
        if let Some(cycle) = find_cycle(&graph) {
            cycles.push(format!("{krate}: {}", shown(&cycle)));
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn route_modules_never_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = import_graph(&root.join("web/src"));
    let crossing: Vec<String> = graph
        .iter()
        .filter(|(from, _)| from.len() == 2 && from[0] == "routes")
        .flat_map(|(from, to)| to.iter().map(move |t| shown(&[from.clone(), t.clone()])))
        .collect();
    assert!(
        crossing.is_empty(),
        "route modules import each other:\n{}",
        crossing.join("\n")
    );
}

#[test]
fn submodules_and_super_paths_are_seen() {
    // `store::scan` reads `super::rows::MeterRow`: an edge between two siblings under `store`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = import_graph(&root.join("cassandra/src"));
    let (scan, rows) = (
        vec!["store".to_owned(), "scan".to_owned()],
        vec!["store".to_owned(), "rows".to_owned()],
    );
    assert!(
        graph.get(&scan).is_some_and(|to| to.contains(&rows)),
        "{graph:?}"
    );
}

#[test]
fn the_scan_sees_grouped_imports_super_and_finds_a_cycle() {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<ModPath>();
    let at = s(&["web", "console", "sql"]);
    let found = paths_from(
        "use crate::{a::X, b, c::{d, e}};\nuse crate::f::G;\nuse super::Page;\nuse super::super::map::M;\nlet x = $crate::no;",
        &at,
    );
    assert_eq!(
        found,
        [
            s(&["a", "X"]),
            s(&["b"]),
            s(&["c", "d"]),
            s(&["c", "e"]),
            s(&["f", "G"]),
            s(&["web", "console", "Page"]),
            s(&["web", "map", "M"]),
        ]
    );
    assert_eq!(
        sibling_edge(&s(&["routes", "me"]), &s(&["routes", "map", "x"])),
        Some((s(&["routes", "me"]), s(&["routes", "map"])))
    );
    assert_eq!(sibling_edge(&s(&["store", "rows"]), &s(&["store"])), None);
    let graph: Graph = [
        (s(&["a"]), BTreeSet::from([s(&["b"])])),
        (s(&["b"]), BTreeSet::from([s(&["a"])])),
    ]
    .into();
    assert_eq!(
        find_cycle(&graph),
        Some(vec![s(&["a"]), s(&["b"]), s(&["a"])])
    );
}

/// The all-in-one links neither Kafka, nor Cassandra, nor the analytics cluster: only the
/// distributed binaries (the service crates' `distributed` feature) pull them in.
#[test]
fn the_all_in_one_depends_on_no_kafka_cassandra_or_ballista() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "-p",
            "iot-demo",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .args(["--offline", "--manifest-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .output()
        .unwrap_or_else(|e| panic!("cargo tree: {e}"));
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("datafusion "),
        "the tree lists the all-in-one's crates"
    );
    let distributed: Vec<&str> = tree
        .lines()
        .filter(|l| {
            ["ballista", "scylla", "rdkafka"]
                .iter()
                .any(|c| l.starts_with(c))
        })
        .collect();
    assert!(
        distributed.is_empty(),
        "the all-in-one links {distributed:?}"
    );
}
