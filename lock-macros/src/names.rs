//! Lock names as written in the attribute: templates with holes (`{id}`, `{self.id}`,
//! `{order.customer}`, `{key:?}`), checked at compile time with the runtime's name
//! rules.

use syn::LitStr;

/// The longest name accepted, in bytes (mirrors `lock_core::MAX_NAME_LEN`).
pub(crate) const MAX_NAME_LEN: usize = 256;

/// A piece of a name template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text (with `{{` / `}}` already unescaped).
    Text(String),
    /// `{arg}`, `{arg.field}`, `{self.field:?}`: a function argument (or `self`), then
    /// fields, formatted with a `format!` spec (`Display` when there is none).
    Arg(Hole),
}

/// One interpolation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hole {
    /// The argument (or `self`).
    pub root: String,
    /// Fields followed from it (`.id`, `.0`).
    pub fields: Vec<String>,
    /// The format spec after `:` (empty: `Display`).
    pub spec: String,
}

/// A parsed `name = "..."` string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Template {
    pub pieces: Vec<Piece>,
}

impl Template {
    /// The full name, if the template interpolates nothing.
    pub(crate) fn fixed(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Arg(_) => return None,
            }
        }
        Some(out)
    }

    /// The `format!` string for this template: literal braces re-escaped, holes as `{}`
    /// (or `{:spec}`).
    pub(crate) fn format_string(&self) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(&t.replace('{', "{{").replace('}', "}}")),
                Piece::Arg(h) if h.spec.is_empty() => out.push_str("{}"),
                Piece::Arg(h) => {
                    out.push_str("{:");
                    out.push_str(&h.spec);
                    out.push('}');
                }
            }
        }
        out
    }

    /// A class name for the lock-order checker: the template with every hole written as
    /// `{}` (so `account-{id}` and `account-{other}` are one class).
    pub(crate) fn class(&self) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Arg(_) => out.push_str("{}"),
            }
        }
        out
    }

    /// The holes, in order.
    pub(crate) fn holes(&self) -> impl Iterator<Item = &Hole> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Arg(a) => Some(a),
            Piece::Text(_) => None,
        })
    }
}

/// Splits a name string into text and `{arg}` holes, and checks what can be checked
/// before run time: the whole name for a fixed name, the literal text for a template.
pub(crate) fn parse_template(lit: &LitStr) -> syn::Result<Template> {
    let value = lit.value();
    let pieces = split(&value).map_err(|msg| syn::Error::new(lit.span(), msg))?;
    let t = Template { pieces };
    let problem = match t.fixed() {
        Some(full) => rule_problem(&full, false),
        None => {
            let text: String = t
                .pieces
                .iter()
                .filter_map(|p| match p {
                    Piece::Text(s) => Some(s.as_str()),
                    Piece::Arg(_) => None,
                })
                .collect();
            rule_problem(&text, true)
        }
    };
    match problem {
        Some(msg) => Err(syn::Error::new(lit.span(), msg)),
        None => Ok(t),
    }
}

/// The runtime's name rules: non-empty, at most 256 bytes, no control characters.
/// For the literal part of a template only the last two apply.
fn rule_problem(name: &str, partial: bool) -> Option<String> {
    if name.is_empty() && !partial {
        return Some(
            "a lock name must not be empty; drop `name` to lock on the function's own path"
                .to_owned(),
        );
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!(
            "a lock name must be at most {MAX_NAME_LEN} bytes, this one has {}{}",
            name.len(),
            if partial { " before interpolation" } else { "" }
        ));
    }
    if let Some((i, c)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Some(format!(
            "a lock name must not contain control characters, found {c:?} at byte {i}"
        ));
    }
    None
}

fn split(s: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '}' => {
                return Err("unmatched `}` in lock name; write `}}` for a literal brace".to_owned())
            }
            '{' => {
                let mut hole = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    hole.push(c);
                }
                if !closed {
                    return Err(
                        "unmatched `{` in lock name; write `{{` for a literal brace, or `{arg}` to interpolate an argument"
                            .to_owned(),
                    );
                }
                let hole = parse_hole(&hole)?;
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Arg(hole));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// `path[:spec]` where path is `arg`, `self`, then `.field` / `.0` segments.
fn parse_hole(raw: &str) -> Result<Hole, String> {
    let (path, spec) = match raw.split_once(':') {
        Some((p, s)) => (p.trim(), s.to_owned()),
        None => (raw.trim(), String::new()),
    };
    let bad = || {
        format!(
            "`{{{raw}}}` in a lock name must name a function argument, a field of one or of \
             `self` (`{{id}}`, `{{order.customer}}`, `{{self.id}}`), optionally with a format \
             spec (`{{key:?}}`); positional `{{}}` is not supported"
        )
    };
    let mut segs = path.split('.').map(str::trim);
    let root = segs
        .next()
        .filter(|r| is_ident(r) || *r == "self")
        .ok_or_else(bad)?;
    let fields: Vec<String> = segs.map(str::to_owned).collect();
    if fields
        .iter()
        .any(|f| !(is_ident(f) || (!f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))))
    {
        return Err(bad());
    }
    if spec.contains(['{', '}']) {
        return Err(bad());
    }
    Ok(Hole {
        root: root.to_owned(),
        fields,
        spec,
    })
}

fn is_ident(s: &str) -> bool {
    let s = s.strip_prefix("r#").unwrap_or(s);
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {}
        _ => return false,
    }
    s != "_" && chars.all(|c| c == '_' || c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> LitStr {
        LitStr::new(s, proc_macro2::Span::call_site())
    }

    #[test]
    fn splits_holes_and_escapes() {
        let t = parse_template(&lit("acct-{id}-{{x}}")).unwrap();
        assert_eq!(
            t.pieces,
            vec![
                Piece::Text("acct-".into()),
                Piece::Arg(Hole {
                    root: "id".into(),
                    fields: vec![],
                    spec: String::new()
                }),
                Piece::Text("-{x}".into())
            ]
        );
        assert_eq!(t.format_string(), "acct-{}-{{x}}");
        assert_eq!(t.fixed(), None);
        assert_eq!(
            parse_template(&lit("db")).unwrap().fixed().as_deref(),
            Some("db")
        );
    }

    #[test]
    fn holes_take_fields_and_format_specs() {
        let t = parse_template(&lit("acct-{self.id}/{key:?}/{o.c.0:>4}")).unwrap();
        assert_eq!(t.format_string(), "acct-{}/{:?}/{:>4}");
        assert_eq!(t.class(), "acct-{}/{}/{}");
        let holes: Vec<_> = t.holes().collect();
        assert_eq!(holes[0].root, "self");
        assert_eq!(holes[0].fields, vec!["id"]);
        assert_eq!(holes[2].fields, vec!["c", "0"]);
        assert_eq!(holes[1].spec, "?");
    }

    #[test]
    fn rejects_what_the_runtime_rejects() {
        assert!(parse_template(&lit("")).is_err());
        assert!(parse_template(&lit("a\tb")).is_err());
        assert!(parse_template(&lit(&"x".repeat(257))).is_err());
        assert!(parse_template(&lit(&"x".repeat(256))).is_ok());
        assert!(parse_template(&lit("{}")).is_err());
        assert!(parse_template(&lit("{0}")).is_err());
        assert!(parse_template(&lit("{id:>4}")).is_ok());
        assert!(parse_template(&lit("{self.id}")).is_ok());
        assert!(parse_template(&lit("{a.b.0}")).is_ok());
        assert!(parse_template(&lit("{a..b}")).is_err());
        assert!(parse_template(&lit("{a.b-c}")).is_err());
        assert!(parse_template(&lit("a{")).is_err());
        assert!(parse_template(&lit("a}")).is_err());
        assert!(parse_template(&lit("{id}")).is_ok());
    }
}
