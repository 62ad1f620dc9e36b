//! One Rust source file: find serial_test's attributes and imports with syn, and edit
//! only their text, by the byte ranges of their spans.

use std::collections::HashMap;

use proc_macro2::LineColumn;
use syn::visit::Visit;
use syn::{Attribute, ItemUse, Meta, UseTree};

use super::attrs::{self, Kind, Mapped};
use super::report::{Change, Skipped};

/// One text replacement: bytes `start..end` become `text`.
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

/// The result for one file.
#[derive(Default)]
pub struct FileResult {
    /// The new text, if anything changed.
    pub new_text: Option<String>,
    /// What changed, line by line.
    pub changes: Vec<Change>,
    /// What could not be migrated.
    pub skipped: Vec<Skipped>,
}

/// Line/column (proc-macro2: 1-based lines, columns in chars) to byte offsets.
struct Offsets<'a> {
    text: &'a str,
    base: usize,
    lines: Vec<usize>,
}

impl<'a> Offsets<'a> {
    fn new(text: &'a str, base: usize) -> Self {
        let mut lines = vec![0];
        lines.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Offsets { text, base, lines }
    }

    fn at(&self, lc: LineColumn) -> usize {
        let start = self
            .lines
            .get(lc.line.saturating_sub(1))
            .copied()
            .unwrap_or(self.text.len());
        let line = &self.text[start..];
        let col = line
            .char_indices()
            .nth(lc.column)
            .map_or(line.len(), |(i, _)| i);
        self.base + start + col
    }
}

/// What the visitor saw: every outer attribute, and every `use serial_test::..`.
#[derive(Default)]
struct Seen<'ast> {
    attrs: Vec<&'ast Attribute>,
    uses: Vec<&'ast ItemUse>,
    /// Attributes of fns that return something other than `()`, by address.
    on_valued_fns: Vec<*const Attribute>,
}

impl<'ast> Visit<'ast> for Seen<'ast> {
    fn visit_attribute(&mut self, a: &'ast Attribute) {
        if matches!(a.style, syn::AttrStyle::Outer) {
            self.attrs.push(a);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let valued = match &f.sig.output {
            syn::ReturnType::Default => false,
            syn::ReturnType::Type(_, t) => {
                !matches!(&**t, syn::Type::Tuple(t) if t.elems.is_empty())
            }
        };
        if valued {
            self.on_valued_fns
                .extend(f.attrs.iter().map(|a| a as *const Attribute));
        }
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_item_use(&mut self, u: &'ast ItemUse) {
        if let UseTree::Path(p) = &u.tree {
            if p.ident == "serial_test" {
                self.uses.push(u);
            }
        }
        syn::visit::visit_item_use(self, u);
    }
}

/// One name a `use serial_test::..` brings in: `{serial, parallel as par, *}`.
struct Imported<'ast> {
    tree: &'ast UseTree,
    /// The local name and the macro, for the four attribute macros.
    local: Option<(String, Kind)>,
    glob: bool,
}

/// Rewrites `text` (the contents of `path`, for messages).
pub fn file(path: &str, text: &str) -> Result<FileResult, String> {
    let base = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let body = &text[base..];
    let ast = syn::parse_file(body).map_err(|e| {
        let lc = e.span().start();
        format!("{path}:{}:{}: cannot parse: {e}", lc.line, lc.column + 1)
    })?;
    let off = Offsets::new(body, base);
    let mut seen = Seen::default();
    seen.visit_file(&ast);

    // Names that `use serial_test::..` brings in, per use item.
    let mut imports: Vec<(&ItemUse, Vec<Imported>)> = Vec::new();
    let mut bare: HashMap<String, Kind> = HashMap::new();
    let mut has_glob = false;
    for u in &seen.uses {
        let UseTree::Path(p) = &u.tree else { continue };
        let mut list = Vec::new();
        flatten(&p.tree, &mut list);
        for i in &list {
            if let Some((local, kind)) = &i.local {
                bare.insert(local.clone(), *kind);
            }
            has_glob |= i.glob;
        }
        imports.push((u, list));
    }

    let mut res = FileResult::default();
    let mut edits = Vec::new();
    let mut kept_bare: Vec<String> = Vec::new();
    for a in &seen.attrs {
        let segs: Vec<String> = a
            .path()
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let (kind, bare_name) = match segs.as_slice() {
            [st, m] if st == "serial_test" => match Kind::from_name(m) {
                Some(k) => (k, None),
                None => continue,
            },
            [one] => match bare
                .get(one)
                .copied()
                .or_else(|| has_glob.then(|| Kind::from_name(one)).flatten())
            {
                Some(k) => (k, Some(one.clone())),
                None => continue,
            },
            _ => continue,
        };
        let start = off.at(a.pound_token.span.start());
        let end = off.at(a.bracket_token.span.close().end());
        let line = a.pound_token.span.start().line;
        let old = text[start..end].to_owned();
        let args = match &a.meta {
            Meta::Path(_) => Ok(attrs::Args::default()),
            Meta::List(l) => attrs::parse(l.tokens.clone()),
            Meta::NameValue(_) => Err("`= value` is not serial_test's grammar".to_owned()),
        };
        // A test that returns a value (`Result<(), ()>`, ...) fails by panicking when
        // its lock cannot be had, as under serial_test, whatever the attribute order.
        let valued = seen.on_valued_fns.contains(&(*a as *const Attribute));
        let mapped = match args {
            Ok(args) => attrs::map(kind, &args, valued),
            Err(why) => Mapped::Not(format!("cannot read the arguments: {why}")),
        };
        match mapped {
            Mapped::To { text: new, notes } => {
                res.changes.push(Change {
                    file: path.to_owned(),
                    line,
                    old,
                    new: new.clone(),
                    notes,
                });
                edits.push(Edit {
                    start,
                    end,
                    text: new,
                });
            }
            Mapped::Not(reason) => {
                if let Some(b) = bare_name {
                    kept_bare.push(b);
                }
                res.skipped.push(Skipped {
                    file: path.to_owned(),
                    line,
                    what: old,
                    reason,
                });
            }
        }
    }

    // Imports: drop the attribute macros no longer used; keep everything else.
    for (u, list) in &imports {
        let keep: Vec<&Imported> = list
            .iter()
            .filter(|i| match (&i.local, i.glob) {
                (Some((local, _)), _) => kept_bare.contains(local),
                (None, true) => !kept_bare.is_empty(),
                (None, false) => true,
            })
            .collect();
        if keep.len() == list.len() {
            continue;
        }
        let line = u.use_token.span.start().line;
        let item_start = off.at(item_start(u));
        let item_end = off.at(u.semi_token.span.end());
        let old = text[item_start..item_end].to_owned();
        let UseTree::Path(p) = &u.tree else { continue };
        let edit = if keep.is_empty() {
            let (s, e) = whole_lines(text, item_start, item_end);
            Edit {
                start: s,
                end: e,
                text: String::new(),
            }
        } else {
            let texts: Vec<&str> = keep
                .iter()
                .map(|i| {
                    let (s, e) = tree_range(i.tree);
                    &text[off.at(s)..off.at(e)]
                })
                .collect();
            let new = match texts.as_slice() {
                [one] => (*one).to_owned(),
                many => format!("{{{}}}", many.join(", ")),
            };
            let (s, e) = tree_range(&p.tree);
            Edit {
                start: off.at(s),
                end: off.at(e),
                text: new,
            }
        };
        let new = if keep.is_empty() {
            "(removed)".to_owned()
        } else {
            let mut new = old.clone();
            new.replace_range(edit.start - item_start..edit.end - item_start, &edit.text);
            new
        };
        res.changes.push(Change {
            file: path.to_owned(),
            line,
            old,
            new,
            notes: Vec::new(),
        });
        edits.push(edit);
    }

    if !edits.is_empty() {
        edits.sort_by_key(|e| std::cmp::Reverse(e.start));
        let mut out = text.to_owned();
        for e in edits {
            out.replace_range(e.start..e.end, &e.text);
        }
        res.new_text = Some(out);
    }
    res.changes.sort_by_key(|c| c.line);
    Ok(res)
}

/// The names under `serial_test::`, one entry per leaf (groups flattened).
fn flatten<'ast>(tree: &'ast UseTree, out: &mut Vec<Imported<'ast>>) {
    match tree {
        UseTree::Name(n) => out.push(Imported {
            tree,
            local: Kind::from_name(&n.ident.to_string()).map(|k| (n.ident.to_string(), k)),
            glob: false,
        }),
        UseTree::Rename(r) => out.push(Imported {
            tree,
            local: Kind::from_name(&r.ident.to_string()).map(|k| (r.rename.to_string(), k)),
            glob: false,
        }),
        UseTree::Glob(_) => out.push(Imported {
            tree,
            local: None,
            glob: true,
        }),
        UseTree::Group(g) => g.items.iter().for_each(|t| flatten(t, out)),
        UseTree::Path(_) => out.push(Imported {
            tree,
            local: None,
            glob: false,
        }),
    }
}

/// Where a use tree starts and ends.
fn tree_range(tree: &UseTree) -> (LineColumn, LineColumn) {
    match tree {
        UseTree::Name(n) => (n.ident.span().start(), n.ident.span().end()),
        UseTree::Rename(r) => (r.ident.span().start(), r.rename.span().end()),
        UseTree::Glob(g) => (g.star_token.span.start(), g.star_token.span.end()),
        UseTree::Group(g) => (
            g.brace_token.span.open().start(),
            g.brace_token.span.close().end(),
        ),
        UseTree::Path(p) => (p.ident.span().start(), tree_range(&p.tree).1),
    }
}

/// Where a use item starts: its first attribute, its visibility, or `use`.
fn item_start(u: &ItemUse) -> LineColumn {
    if let Some(a) = u.attrs.first() {
        return a.pound_token.span.start();
    }
    match &u.vis {
        syn::Visibility::Public(p) => p.span.start(),
        syn::Visibility::Restricted(r) => r.pub_token.span.start(),
        syn::Visibility::Inherited => u.use_token.span.start(),
    }
}

/// `start..end` widened to whole lines when nothing else is on them.
fn whole_lines(text: &str, start: usize, end: usize) -> (usize, usize) {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
    let before_blank = text[line_start..start].trim().is_empty();
    let after_blank = text[end..line_end].trim().is_empty();
    if before_blank && after_blank {
        // The line goes; so does a blank line after it if the one before is blank too or
        // opens a block (no double blank line, no blank line after `{`).
        let before = text[..line_start].strip_suffix('\n').unwrap_or("");
        let prev = before[before.rfind('\n').map_or(0, |i| i + 1)..].trim();
        let prev_opens = line_start == 0 || prev.is_empty() || prev.ends_with('{');
        let next_end = text[line_end..].find('\n').map(|i| line_end + i + 1);
        match next_end {
            Some(e) if prev_opens && text[line_end..e].trim().is_empty() => (line_start, e),
            _ => (line_start, line_end),
        }
    } else {
        (start, end)
    }
}
