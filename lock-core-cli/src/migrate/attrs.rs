//! serial_test's attribute arguments, read with serial_test's own grammar, and the
//! `#[lock_core::locked(...)]` each one becomes.

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// The four attribute macros of serial_test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `#[serial]`: exclusive, in-process.
    Serial,
    /// `#[parallel]`: shared, in-process.
    Parallel,
    /// `#[file_serial]`: exclusive, across processes.
    FileSerial,
    /// `#[file_parallel]`: shared, across processes.
    FileParallel,
}

impl Kind {
    /// The macro of this name, if serial_test has one.
    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "serial" => Some(Kind::Serial),
            "parallel" => Some(Kind::Parallel),
            "file_serial" => Some(Kind::FileSerial),
            "file_parallel" => Some(Kind::FileParallel),
            _ => None,
        }
    }

    fn shared(self) -> bool {
        matches!(self, Kind::Parallel | Kind::FileParallel)
    }

    fn file(self) -> bool {
        matches!(self, Kind::FileSerial | Kind::FileParallel)
    }
}

/// What one serial_test attribute asks for.
#[derive(Debug, Default)]
pub struct Args {
    /// The keys, as string literals (source text), in source order.
    pub keys: Vec<String>,
    /// `path => "p"`: the literal's source text.
    pub path: Option<String>,
    /// `crate = some::path`: the path's text (dropped by the migration).
    pub krate: Option<String>,
    /// `inner_attrs = [..]`: the list's text (no equivalent).
    pub inner_attrs: Option<String>,
}

/// Reads the tokens inside `#[serial(...)]` as serial_test 3 does: keys (identifiers;
/// string literals too), `path => "lit"`, `crate = path`, `inner_attrs = [..]`, separated
/// by commas.
pub fn parse(tokens: TokenStream) -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = tokens.into_iter().peekable();
    while let Some(tt) = it.next() {
        match tt {
            TokenTree::Ident(id) if id == "path" && next_is(&mut it, '=') => {
                expect(&mut it, '>', "`path` must be followed by `=> \"...\"`")?;
                match it.next() {
                    Some(TokenTree::Literal(l)) if is_str(&l.to_string()) => {
                        args.path = Some(l.to_string())
                    }
                    _ => return Err("`path =>` must be followed by a string literal".into()),
                }
            }
            TokenTree::Ident(id) if id == "crate" && next_is(&mut it, '=') => {
                let mut text = Vec::new();
                while let Some(t) = it.peek() {
                    if matches!(t, TokenTree::Punct(p) if p.as_char() == ',') {
                        break;
                    }
                    text.push(it.next().map(|t| t.to_string()).unwrap_or_default());
                }
                if text.is_empty() {
                    return Err("`crate =` must be followed by a path".into());
                }
                args.krate = Some(text.concat());
            }
            TokenTree::Ident(id) if id == "inner_attrs" && next_is(&mut it, '=') => match it.next()
            {
                Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Bracket => {
                    args.inner_attrs = Some(g.to_string())
                }
                _ => return Err("`inner_attrs =` must be followed by `[...]`".into()),
            },
            TokenTree::Ident(id) => args.keys.push(format!("\"{id}\"")),
            TokenTree::Literal(l) if is_str(&l.to_string()) => args.keys.push(l.to_string()),
            other => return Err(format!("unexpected `{other}` (serial_test takes keys, `path => \"..\"`, `crate = ..`, `inner_attrs = [..]`)")),
        }
        match it.next() {
            None => break,
            Some(TokenTree::Punct(p)) if p.as_char() == ',' => {}
            Some(other) => return Err(format!("expected `,` between arguments, found `{other}`")),
        }
    }
    Ok(args)
}

fn next_is(it: &mut std::iter::Peekable<proc_macro2::token_stream::IntoIter>, c: char) -> bool {
    if matches!(it.peek(), Some(TokenTree::Punct(p)) if p.as_char() == c) {
        it.next();
        true
    } else {
        false
    }
}

fn expect(
    it: &mut std::iter::Peekable<proc_macro2::token_stream::IntoIter>,
    c: char,
    msg: &str,
) -> Result<(), String> {
    if next_is(it, c) {
        Ok(())
    } else {
        Err(msg.to_owned())
    }
}

fn is_str(lit: &str) -> bool {
    lit.starts_with('"') || lit.starts_with("r\"") || lit.starts_with("r#")
}

/// The outcome of mapping one attribute.
#[derive(Debug)]
pub enum Mapped {
    /// The new attribute's text, and notes on what was dropped.
    To {
        /// `#[lock_core::locked(...)]`.
        text: String,
        /// What did not carry over and why (e.g. `crate = ..`).
        notes: Vec<String>,
    },
    /// No equivalent: the attribute stays as it is.
    Not(String),
}

/// The `#[lock_core::locked(...)]` for a serial_test attribute of `kind` with `args`;
/// `valued`: on a fn that returns something other than `()`.
///
/// Every form is `reentrant`: serial_test lets a test call another function locked on
/// the same key, lock-core refuses that by default.
pub fn map(kind: Kind, args: &Args, valued: bool) -> Mapped {
    if let Some(inner) = &args.inner_attrs {
        return Mapped::Not(format!(
            "`inner_attrs = {inner}` has no equivalent: serial_test puts these attributes on an \
             inner fn that holds only the body, so they do not cover the wait for the lock \
             (a timeout counts the body alone); on the test fn under #[locked] they would \
             cover the wait too. Move the body into a fn carrying them, then migrate"
        ));
    }
    let mut parts = Vec::new();
    parts.push(match args.keys.as_slice() {
        [] => "name = \"serial\"".to_owned(),
        [one] => format!("name = {one}"),
        many => format!("name = [{}]", many.join(", ")),
    });
    match (&args.path, kind.file()) {
        (Some(p), _) => parts.push(format!("path = {p}")),
        (None, true) => parts.push("file".to_owned()),
        (None, false) => {}
    }
    if kind.shared() {
        parts.push("shared".to_owned());
        parts.push("readers_first".to_owned());
    }
    parts.push("reentrant".to_owned());
    if valued {
        parts.push("on_error = \"panic\"".to_owned());
    }
    let mut notes = Vec::new();
    if let Some(k) = &args.krate {
        notes.push(format!(
            "dropped `crate = {k}`: it named serial_test's path; lock-core's `crate = \"..\"` \
             names lock_core's own path and is not needed unless lock-core is renamed"
        ));
    }
    Mapped::To {
        text: format!("#[lock_core::locked({})]", parts.join(", ")),
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(kind: Kind, args: &str) -> String {
        let args = parse(args.parse().unwrap()).unwrap();
        match map(kind, &args, false) {
            Mapped::To { text, .. } => text,
            Mapped::Not(why) => panic!("{why}"),
        }
    }

    #[test]
    fn every_form_maps() {
        use Kind::*;
        let n = "#[lock_core::locked(name = ";
        assert_eq!(to(Serial, ""), format!("{n}\"serial\", reentrant)]"));
        assert_eq!(to(Serial, "db"), format!("{n}\"db\", reentrant)]"));
        assert_eq!(
            to(Serial, "a, \"b c\""),
            format!("{n}[\"a\", \"b c\"], reentrant)]")
        );
        assert_eq!(
            to(Parallel, ""),
            format!("{n}\"serial\", shared, readers_first, reentrant)]")
        );
        assert_eq!(to(FileSerial, "k"), format!("{n}\"k\", file, reentrant)]"));
        assert_eq!(
            to(FileParallel, "k, path => \"/tmp/x\""),
            format!("{n}\"k\", path = \"/tmp/x\", shared, readers_first, reentrant)]")
        );
        let args = parse("".parse().unwrap()).unwrap();
        match map(Serial, &args, true) {
            Mapped::To { text, .. } => assert_eq!(
                text,
                format!("{n}\"serial\", reentrant, on_error = \"panic\")]")
            ),
            Mapped::Not(why) => panic!("{why}"),
        }
        assert_eq!(
            to(Serial, "crate = ::my::st, db"),
            format!("{n}\"db\", reentrant)]")
        );
    }

    #[test]
    fn inner_attrs_and_junk_are_refused() {
        let a = parse("k, inner_attrs = [ntest::timeout(10)]".parse().unwrap()).unwrap();
        assert!(matches!(map(Kind::Serial, &a, false), Mapped::Not(_)));
        assert!(parse("1".parse().unwrap()).is_err());
        assert!(parse("a b".parse().unwrap()).is_err());
        assert!(parse("path => 3".parse().unwrap()).is_err());
    }
}
