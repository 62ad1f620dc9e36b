//! What the migration changed and what it left, as lines for the terminal.

use std::fmt::Write;

/// One edit: `file:line: old → new`.
#[derive(Debug)]
pub struct Change {
    /// The file, relative to the crate directory.
    pub file: String,
    /// The line (1-based) of the old text's start.
    pub line: usize,
    /// The old text.
    pub old: String,
    /// The new text, or `(removed)`.
    pub new: String,
    /// What did not carry over.
    pub notes: Vec<String>,
}

/// Something left as it was, and why.
#[derive(Debug)]
pub struct Skipped {
    /// The file, relative to the crate directory.
    pub file: String,
    /// The line (1-based).
    pub line: usize,
    /// The text left in place.
    pub what: String,
    /// Why it could not be migrated.
    pub reason: String,
}

/// Everything one run did or would do.
#[derive(Debug, Default)]
pub struct Report {
    /// Edits, in file and line order.
    pub changes: Vec<Change>,
    /// What could not be migrated.
    pub skipped: Vec<Skipped>,
}

/// Collapses a (possibly multi-line) snippet into one line.
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Report {
    /// The text printed on standard output. `check`: nothing was written.
    pub fn render(&self, check: bool) -> String {
        let mut out = String::new();
        for c in &self.changes {
            let _ = writeln!(
                out,
                "{}:{}: {} → {}",
                c.file,
                c.line,
                flat(&c.old),
                flat(&c.new)
            );
            for n in &c.notes {
                let _ = writeln!(out, "    note: {n}");
            }
        }
        for s in &self.skipped {
            let _ = writeln!(
                out,
                "{}:{}: not migrated: {}: {}",
                s.file,
                s.line,
                flat(&s.what),
                s.reason
            );
        }
        let files = {
            let mut f: Vec<&str> = self.changes.iter().map(|c| c.file.as_str()).collect();
            f.dedup();
            f.len()
        };
        let _ = match (self.changes.is_empty(), check) {
            (true, _) => writeln!(out, "nothing to migrate"),
            (false, true) => writeln!(
                out,
                "{} change(s) in {files} file(s) would be made (--check: nothing written)",
                self.changes.len()
            ),
            (false, false) => {
                writeln!(out, "{} change(s) in {files} file(s)", self.changes.len())
            }
        };
        if !self.skipped.is_empty() {
            let _ = writeln!(
                out,
                "{} item(s) left as they were (see above)",
                self.skipped.len()
            );
        }
        out
    }
}
