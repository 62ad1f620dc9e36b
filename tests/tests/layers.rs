//! The shape of lock-core's source (issue #22): which top-level modules import which
//! (through `crate::` paths, grouped imports and the crate root's re-exports). Every
//! module has a layer in `LAYERS` and imports only modules of lower layers, so there is
//! no import circle; a change that breaks that fails here, naming the import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// lock-core's layers, bottom first, each with what it holds: a module may import only
/// modules of the layers below its own (so there is no import circle either).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves: call chains' frames, clocks, modes, places, call sites, the mutex helper",
        &["chain", "clock", "mode", "place", "site", "sync"],
    ),
    ("errors; who asks and who holds", &["error", "owner"]),
    (
        "names; the lock word, its queue and holder records; the timer thread",
        &["name", "raw", "reactor"],
    ),
    (
        "the registry of names; what messages say of a hold; tracing",
        &["registry", "report", "trace"],
    ),
    (
        "checks and listings: cycles of waits, lock order, blocked runtimes, holders",
        &["deadlock", "listing", "lockdep", "stall"],
    ),
    ("one in-process hold and its re-entrant nesting", &["held"]),
    (
        "lock files: pages, records, OS locks, waits, cycles across processes",
        &["lockfile"],
    ),
    (
        "the guard: an in-process hold and its file part",
        &["guard"],
    ),
    (
        "the acquire pipeline (try, wait, wait blocking); re-entry on request",
        &["local", "reentry"],
    ),
    (
        "backends: the file step over the pipeline; leases",
        &["file_step", "lease"],
    ),
    (
        "dispatch by place and opt-in (reentrant, readers_first)",
        &["optin"],
    ),
    (
        "requests (`Lock`) and the attribute's hidden calls",
        &["__private", "request"],
    ),
    ("the public file verbs (`file::*`, `LockDir`)", &["file"]),
];

/// The library's source files. Test-only files (`tests.rs`, `loom_model.rs`) are left
/// out: test code may use the whole crate, the layers are about the library.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs")
            && !p
                .file_name()
                .is_some_and(|n| n == "tests.rs" || n == "loom_model.rs")
        {
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
        // Code only: doc links (`[x](crate::y)`) and comments are no imports, and a
        // file's own test module (`#[cfg(test)] mod tests { .. }`, last in the file) is
        // test code.
        let text: String = std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .take_while(|l| !l.starts_with("mod tests {"))
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
fn no_import_circle() {
    let edges = import_graph();
    let found = circles(&edges);
    assert!(
        found.is_empty(),
        "import circles: {found:?}\nimports: {edges:#?}"
    );
}

#[test]
fn every_module_imports_only_modules_of_lower_layers() {
    let edges = import_graph();
    let layer_of: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, (_, mods))| mods.iter().map(move |m| (*m, i)))
        .collect();
    let mut wrong = Vec::new();
    let modules: BTreeSet<&String> = edges.keys().chain(edges.values().flatten()).collect();
    for m in &modules {
        if !layer_of.contains_key(m.as_str()) {
            wrong.push(format!("`{m}` is in no layer of LAYERS"));
        }
    }
    for (from, tos) in &edges {
        for to in tos {
            if let (Some(a), Some(b)) = (layer_of.get(from.as_str()), layer_of.get(to.as_str())) {
                if b >= a {
                    wrong.push(format!(
                        "`{from}` (layer {a}, {}) imports `{to}` (layer {b}, {})",
                        LAYERS[*a].0, LAYERS[*b].0
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nimports: {edges:#?}",
        wrong.join("\n")
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
