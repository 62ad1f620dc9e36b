//! Lock names as written in the attribute: templates with `{arg}` holes, checked at
//! compile time with the runtime's name rules.

use syn::LitStr;

/// The longest name accepted, in bytes (mirrors `lock_core::MAX_NAME_LEN`).
pub(crate) const MAX_NAME_LEN: usize = 256;

/// A piece of a name template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text (with `{{` / `}}` already unescaped).
    Text(String),
    /// `{arg}`: the Display form of a function argument.
    Arg(String),
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

    /// The `format!` string for this template: literal braces re-escaped, holes as `{}`.
    pub(crate) fn format_string(&self) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(&t.replace('{', "{{").replace('}', "}}")),
                Piece::Arg(_) => out.push_str("{}"),
            }
        }
        out
    }

    /// The names of the interpolated arguments, in order.
    pub(crate) fn args(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Arg(a) => Some(a.as_str()),
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
                let hole = hole.trim();
                if !is_ident(hole) {
                    return Err(format!(
                        "`{{{hole}}}` in a lock name must name a function argument, like `{{id}}` \
                         (format specs and positional `{{}}` are not supported)"
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Arg(hole.to_owned()));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
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
                Piece::Arg("id".into()),
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
    fn rejects_what_the_runtime_rejects() {
        assert!(parse_template(&lit("")).is_err());
        assert!(parse_template(&lit("a\tb")).is_err());
        assert!(parse_template(&lit(&"x".repeat(257))).is_err());
        assert!(parse_template(&lit(&"x".repeat(256))).is_ok());
        assert!(parse_template(&lit("{}")).is_err());
        assert!(parse_template(&lit("{0}")).is_err());
        assert!(parse_template(&lit("{id:>4}")).is_err());
        assert!(parse_template(&lit("a{")).is_err());
        assert!(parse_template(&lit("a}")).is_err());
        assert!(parse_template(&lit("{id}")).is_ok());
    }
}
