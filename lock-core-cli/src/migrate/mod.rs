//! `lock-core migrate serial-test [PATH] [--check]`: serial_test's attributes become
//! `#[lock_core::locked(...)]`, in place, and Cargo.toml depends on lock-core instead.
//!
//! Sources are parsed with syn (spans with line and column), and only the bytes of each
//! serial_test attribute and import are replaced: comments and formatting elsewhere stay
//! byte for byte (comments *inside* a migrated attribute's parentheses are not kept).
//! Cargo.toml is edited with toml_edit, which keeps its layout and comments.

mod attrs;
mod cargo_toml;
mod report;
mod rewrite;
mod tokio_floor;

use std::path::{Path, PathBuf};

use crate::args::SerialTestArgs;
use crate::exit::{Failure, DATAERR, IOERR, USAGE};

use report::{Change, Report};

/// The exit status of `--check` when something would change.
pub const WOULD_CHANGE: u8 = 1;

/// Runs the migration; returns the exit status and the text for standard output.
pub fn serial_test(a: SerialTestArgs) -> Result<(u8, String), Failure> {
    let dir = a.path;
    let manifest = dir.join("Cargo.toml");
    let toml_text = match std::fs::read_to_string(&manifest) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::new(
                USAGE,
                format!(
                    "{} has no Cargo.toml: give the directory of the crate to migrate",
                    dir.display()
                ),
            ))
        }
        Err(e) => return Err(io_failure(&manifest, &e)),
    };
    let dep = a
        .lock_core_dep
        .unwrap_or_else(|| format!("\"{}\"", env!("CARGO_PKG_VERSION")));
    if let Err(e) = dep.parse::<toml_edit::Value>() {
        return Err(Failure::new(
            USAGE,
            format!("--lock-core-dep `{dep}` is not a TOML value: {e}"),
        ));
    }

    let mut files = Vec::new();
    collect(&dir, &dir, &mut files)?;
    files.sort();
    let mut report = Report::default();
    let mut writes: Vec<(PathBuf, String)> = Vec::new();
    let mut still_used = false;
    for rel in &files {
        let path = dir.join(rel);
        let text = std::fs::read_to_string(&path).map_err(|e| io_failure(&path, &e))?;
        let shown = rel.display().to_string();
        let res = rewrite::file(&shown, &text).map_err(|m| Failure::new(DATAERR, m))?;
        still_used |= mentions_serial_test(res.new_text.as_deref().unwrap_or(&text));
        let docs = doc_mentions(&text);
        if let Some(&first) = docs.first() {
            still_used = true;
            let lines: Vec<String> = docs.iter().map(usize::to_string).collect();
            report.skipped.push(report::Skipped {
                file: shown.clone(),
                line: first,
                what: format!("serial_test in doc comments (line(s) {})", lines.join(", ")),
                reason: "code in doc comments (doc tests) is not rewritten; serial_test stays \
                         a dependency for it"
                    .into(),
            });
        }
        report.changes.extend(res.changes);
        report.skipped.extend(res.skipped);
        if let Some(new) = res.new_text {
            writes.push((path, new));
        }
    }

    let toml = cargo_toml::rewrite(&toml_text, &dep, still_used)
        .map_err(|m| Failure::new(DATAERR, format!("{}: {m}", manifest.display())))?;
    if still_used {
        report.skipped.push(report::Skipped {
            file: "Cargo.toml".into(),
            line: 1,
            what: "serial_test".into(),
            reason: "kept as a dependency: the sources still use it".into(),
        });
    }
    let mut toml_changes: Vec<Change> = toml.changes;
    toml_changes.append(&mut report.changes);
    report.changes = toml_changes;
    if let Some(new) = toml.new_text {
        writes.push((manifest, new));
    }

    if a.check {
        let code = if report.changes.is_empty() {
            0
        } else {
            WOULD_CHANGE
        };
        return Ok((code, report.render(true)));
    }
    for (path, text) in writes {
        std::fs::write(&path, text).map_err(|e| io_failure(&path, &e))?;
    }
    Ok((0, report.render(false)))
}

fn io_failure(path: &Path, e: &std::io::Error) -> Failure {
    Failure::new(IOERR, format!("{}: {e}", path.display()))
}

/// Every `.rs` file under `dir` (relative to `root`), skipping `target/`, hidden
/// directories, and other packages (directories with their own Cargo.toml).
fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_failure(dir, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_failure(dir, &e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type().map_err(|e| io_failure(&path, &e))?;
        if kind.is_dir() {
            let skip = name.starts_with('.')
                || (dir == root && name == "target")
                || path.join("Cargo.toml").exists();
            if !skip {
                collect(root, &path, out)?;
            }
        } else if kind.is_file() && name.ends_with(".rs") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

/// The lines of doc comments (`///`, `//!`, `/** */`, `#[doc = ".."]`) that name
/// `serial_test`: doc tests that would stop compiling without it.
fn doc_mentions(text: &str) -> Vec<usize> {
    fn walk(ts: proc_macro2::TokenStream, in_doc: bool, out: &mut Vec<usize>) {
        let mut doc_next = false;
        for t in ts {
            match t {
                proc_macro2::TokenTree::Ident(i) => doc_next = i == "doc",
                proc_macro2::TokenTree::Literal(l) if in_doc || doc_next => {
                    let lit = l.to_string();
                    if lit.contains("serial_test") {
                        let start = l.span().start().line;
                        let offset = lit.find("serial_test").map_or(0, |at| {
                            lit[..at].matches(['\n']).count() + lit[..at].matches("\\n").count()
                        });
                        out.push(start + offset);
                    }
                }
                proc_macro2::TokenTree::Group(g) => {
                    walk(g.stream(), in_doc || doc_next, out);
                    doc_next = false;
                }
                _ => {}
            }
        }
    }
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    if let Ok(ts) = body.parse::<proc_macro2::TokenStream>() {
        walk(ts, false, &mut out);
    }
    out
}

/// Whether the code (not its comments) still names `serial_test`.
fn mentions_serial_test(text: &str) -> bool {
    fn walk(ts: proc_macro2::TokenStream) -> bool {
        ts.into_iter().any(|t| match t {
            proc_macro2::TokenTree::Ident(i) => i == "serial_test",
            proc_macro2::TokenTree::Group(g) => walk(g.stream()),
            _ => false,
        })
    }
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    body.parse::<proc_macro2::TokenStream>().is_ok_and(walk)
}

#[cfg(test)]
mod tests {
    #[test]
    fn doc_comments_naming_serial_test_are_found_by_line() {
        let text = "//! ```\n//! use serial_test::serial;\n//! ```\n\n/// plain\nfn a() {}\n\n#[doc = \"serial_test here\"]\nfn b() {}\n// serial_test in a plain comment\nconst S: &str = \"serial_test\";\n";
        assert_eq!(super::doc_mentions(text), vec![2, 8]);
    }
}
