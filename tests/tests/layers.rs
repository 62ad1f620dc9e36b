//! The shape of lock-core's source (issue #22): which top-level modules import which
//! (through `crate::` paths, grouped imports and the crate root's re-exports), and the
//! import circles among them. The layered core has no circle at all; until it is done,
//! this test is a ratchet: it fails on any circle beyond the one listed in
//! `KNOWN_CIRCLES`, and when that one shrinks (so the list must shrink with it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The import circles left (each a set of top-level modules), smallest first.
const KNOWN_CIRCLES: &[&[&str]] = &[&[
    "deadlock", "file", "guard", "local", "optin", "reentry", "request",
]];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`lib` for the crate root).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Root-level names (`crate::LockError`) mapped to the module that defines them: the
/// crate root's `pub use module::{..}` lines. Other root items are the root's own.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let item = item.trim();
            if !item.is_empty() {
                map.insert(item.to_owned(), module.to_owned());
            }
        }
    }
    map
}

/// Every `crate::` path's first segment in `text`, groups (`crate::{a, b::c}`) opened.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        // Not `lock_core::..` or another crate's `..crate::`.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first = item.trim().split("::").next().unwrap_or("").trim();
                if !first.is_empty() {
                    out.push(first.to_owned());
                }
            }
        } else {
            let first: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(first);
        }
    }
    out
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = BTreeSet::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out.sort_by_key(BTreeSet::len);
    t.out
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lock-core/src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let reexported = reexports(&lib);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = module_of(&src, f);
        // Code only: doc links (`[x](crate::y)`) and comments are no imports.
        let text: String = std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for first in crate_paths(&text) {
            let to = if modules.contains(&first) {
                first
            } else if let Some(m) = reexported.get(&first) {
                m.clone()
            } else {
                // An item of the crate root itself.
                "lib".to_owned()
            };
            if to != from {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

#[test]
fn no_import_circle_beyond_the_known_ones() {
    let edges = import_graph();
    let found = circles(&edges);
    let known: Vec<BTreeSet<String>> = KNOWN_CIRCLES
        .iter()
        .map(|c| c.iter().map(|s| (*s).to_owned()).collect())
        .collect();
    assert_eq!(
        found, known,
        "import circles among lock-core's top-level modules changed (a new one, or a known \
         one shrank: update KNOWN_CIRCLES)\nimports: {edges:#?}"
    );
}

#[test]
fn the_reader_sees_grouped_imports_and_reexports() {
    assert_eq!(
        crate_paths("use crate::{local, Holder, file::page};\nlet x = crate::raw::X; lock_core::y"),
        ["local", "Holder", "file", "raw"]
    );
    let lib = "pub use error::{CycleStep, Holder};\npub use request::Lock;\n";
    let r = reexports(lib);
    assert_eq!(r["Holder"], "error");
    assert_eq!(r["Lock"], "request");
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert(
        "b".to_owned(),
        BTreeSet::from(["a".to_owned(), "c".to_owned()]),
    );
    assert_eq!(
        circles(&edges),
        [BTreeSet::from(["a".to_owned(), "b".to_owned()])]
    );
}
