//! Parsing: the attribute's arguments into a [`Config`] that keeps every span.
//!
//! This module checks each argument on its own (is the key known, does its value have
//! the right shape). Checks that need the annotated function, or several arguments
//! together, live in `validate`.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

use crate::names::{self, Template};

/// Every key the attribute accepts, in the order the documentation lists them.
pub(crate) const KEYS: &[&str] = &[
    "name",
    "timeout_ms",
    "shared",
    "permits",
    "file",
    "path",
    "store",
    "lease_ms",
    "guard",
    "on_error",
    "crate",
    "reentrant",
    "readers_first",
];

fn key_list() -> String {
    KEYS.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which locks the function takes.
pub(crate) enum NameSpec {
    /// Bare `#[locked]`: the function's own path.
    Default,
    /// Bare `#[locked]` on a module: the module's path, for every test in it.
    Module,
    /// `name = "..."` or `name = [...]`; each entry may interpolate arguments.
    /// `array` is true for the bracketed form (even with a single entry).
    Given {
        entries: Vec<(LitStr, Template)>,
        array: bool,
    },
}

/// A value written as a literal (checked now) or as an expression (evaluated per call).
#[derive(Clone)]
pub(crate) enum Value<T> {
    Lit(T, Span),
    Expr(Box<Expr>),
}

/// `file` / `file = dir` / `path = file`.
pub(crate) enum FileSpec {
    Off,
    DefaultDir(Ident),
    Dir(Ident, Value<LitStr>),
    Path(Ident, Value<LitStr>),
}

impl FileSpec {
    pub(crate) fn key(&self) -> Option<&Ident> {
        match self {
            FileSpec::Off => None,
            FileSpec::DefaultDir(k) | FileSpec::Dir(k, _) | FileSpec::Path(k, _) => Some(k),
        }
    }
}

/// `shared` / `permits = n`.
pub(crate) enum ModeSpec {
    Exclusive,
    Shared(Ident),
    Permits(Ident, Value<u32>),
}

/// `on_error = ...`.
pub(crate) enum OnError {
    /// Decided by the return type through the failure traits.
    Default,
    /// `on_error = "panic"`.
    Panic,
    /// `on_error = path::to::handler`.
    Handler(syn::Path),
}

/// The parsed arguments, with the spans of what the user wrote.
pub(crate) struct Config {
    pub names: NameSpec,
    pub timeout_ms: Option<(Ident, Value<u64>)>,
    pub mode: ModeSpec,
    pub file: FileSpec,
    pub store: Option<(Ident, Expr)>,
    pub lease_ms: Option<(Ident, Value<u64>)>,
    pub guard: Option<Ident>,
    pub on_error: OnError,
    pub krate: Option<syn::Path>,
    /// `reentrant`.
    pub reentrant: Option<Ident>,
    /// `readers_first`.
    pub readers_first: Option<Ident>,
}

impl Config {
    pub(crate) fn empty() -> Config {
        Config {
            names: NameSpec::Default,
            timeout_ms: None,
            mode: ModeSpec::Exclusive,
            file: FileSpec::Off,
            store: None,
            lease_ms: None,
            guard: None,
            on_error: OnError::Default,
            krate: None,
            reentrant: None,
            readers_first: None,
        }
    }
}

/// One `key` or `key = value` as written.
struct RawArg {
    key: Ident,
    value: Option<Expr>,
}

fn parse_raw(input: ParseStream<'_>) -> syn::Result<Vec<RawArg>> {
    let mut args = Vec::new();
    while !input.is_empty() {
        if !input.peek(Ident::peek_any) {
            return Err(input.error(format!(
                "expected an argument such as `name = \"db\"`; valid arguments are {}",
                key_list()
            )));
        }
        let key = Ident::parse_any(input)?;
        if input.peek(Token![=>]) {
            let arrow: Token![=>] = input.parse()?;
            return Err(syn::Error::new(
                arrow.spans[0],
                format!(
                    "`#[locked]` takes `{key} = value`, not `{key} => value` \
                     (serial_test's syntax); write `{key} = \"...\"`"
                ),
            ));
        }
        let value = if input.peek(Token![=]) {
            let eq: Token![=] = input.parse()?;
            if input.is_empty() || input.peek(Token![,]) {
                return Err(syn::Error::new(
                    eq.span,
                    format!("`{key}` is missing its value after `=`"),
                ));
            }
            Some(input.parse::<Expr>()?)
        } else {
            None
        };
        args.push(RawArg { key, value });
        if input.is_empty() {
            break;
        }
        if !input.peek(Token![,]) {
            return Err(input.error("expected `,` between arguments of `#[locked]`"));
        }
        input.parse::<Token![,]>()?;
    }
    Ok(args)
}

/// Parses the attribute's arguments. All problems found are combined into one error.
pub(crate) fn parse(args: TokenStream) -> syn::Result<Config> {
    let raw = parse_raw.parse2(args)?;
    let mut cfg = Config::empty();
    let mut seen: Vec<Ident> = Vec::new();
    let mut errors: Option<syn::Error> = None;
    for arg in raw {
        let key_str = arg.key.unraw().to_string();
        if let Some(first) = seen.iter().find(|k| k.unraw() == key_str) {
            let mut e = syn::Error::new(
                arg.key.span(),
                format!("duplicate `{key_str}` argument: give it once"),
            );
            e.combine(syn::Error::new(
                first.span(),
                format!("`{key_str}` first given here"),
            ));
            push(&mut errors, e);
            continue;
        }
        seen.push(arg.key.clone());
        if let Err(e) = apply(&mut cfg, arg) {
            push(&mut errors, e);
        }
    }
    match errors {
        Some(e) => Err(e),
        None => Ok(cfg),
    }
}

pub(crate) fn push(acc: &mut Option<syn::Error>, e: syn::Error) {
    match acc {
        Some(a) => a.combine(e),
        None => *acc = Some(e),
    }
}

fn needs_value(key: &Ident, example: &str) -> syn::Error {
    syn::Error::new(
        key.span(),
        format!("`{key}` needs a value, for example `{example}`"),
    )
}

fn no_value(key: &Ident, v: &Expr, what: &str) -> syn::Error {
    syn::Error::new(v.span(), format!("`{key}` takes no value: {what}"))
}

fn apply(cfg: &mut Config, arg: RawArg) -> syn::Result<()> {
    let RawArg { key, value } = arg;
    match key.unraw().to_string().as_str() {
        "name" => {
            let v = value.ok_or_else(|| needs_value(&key, "name = \"db\""))?;
            cfg.names = parse_names(v)?;
        }
        "timeout_ms" => {
            let v = value.ok_or_else(|| needs_value(&key, "timeout_ms = 5000"))?;
            let n = parse_millis(&key, v)?;
            cfg.timeout_ms = Some((key, n));
        }
        "lease_ms" => {
            let v = value.ok_or_else(|| needs_value(&key, "lease_ms = 30000"))?;
            let n = parse_millis(&key, v)?;
            if let Value::Lit(0, span) = n {
                return Err(syn::Error::new(
                    span,
                    "`lease_ms` must be greater than 0: a lease needs a time to live",
                ));
            }
            cfg.lease_ms = Some((key, n));
        }
        "reentrant" | "readers_first" => {
            if let Some(v) = value {
                return Err(no_value(
                    &key,
                    &v,
                    "write it alone: it is an opt-in, on when present",
                ));
            }
            if key == "reentrant" {
                cfg.reentrant = Some(key);
            } else {
                cfg.readers_first = Some(key);
            }
        }
        "shared" => {
            if let Some(v) = value {
                return Err(no_value(
                    &key,
                    &v,
                    "write `shared` alone for a shared (reader) hold, or `permits = N` for a counted lock",
                ));
            }
            cfg.mode = match std::mem::replace(&mut cfg.mode, ModeSpec::Exclusive) {
                ModeSpec::Permits(p, _) => return Err(shared_and_permits(&key, &p)),
                _ => ModeSpec::Shared(key),
            };
        }
        "permits" => {
            let v = value.ok_or_else(|| needs_value(&key, "permits = 2"))?;
            let n = parse_permits(&key, v)?;
            cfg.mode = match std::mem::replace(&mut cfg.mode, ModeSpec::Exclusive) {
                ModeSpec::Shared(s) => return Err(shared_and_permits(&key, &s)),
                _ => ModeSpec::Permits(key, n),
            };
        }
        "file" => {
            if let FileSpec::Path(p, _) = &cfg.file {
                return Err(file_and_path(&key, p));
            }
            cfg.file = match value {
                None => FileSpec::DefaultDir(key),
                Some(v) => FileSpec::Dir(key, parse_path_value(&v, "file", "a directory")?),
            };
        }
        "path" => {
            let v = value.ok_or_else(|| needs_value(&key, "path = \"target/db.lock\""))?;
            if let Some(f) = cfg.file.key() {
                return Err(file_and_path(&key, f));
            }
            cfg.file = FileSpec::Path(key, parse_path_value(&v, "path", "a lock file")?);
        }
        "store" => {
            let v = value.ok_or_else(|| needs_value(&key, "store = crate::LOCKS"))?;
            if let Some(l) = string_lit(&v) {
                return Err(syn::Error::new(
                    l.span(),
                    "`store` expects an expression naming a lease store (`store = crate::LOCKS`), not a string",
                ));
            }
            cfg.store = Some((key, v));
        }
        "guard" => {
            let v = value.ok_or_else(|| needs_value(&key, "guard = g"))?;
            cfg.guard = Some(match &v {
                Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => {
                    p.path.get_ident().cloned().ok_or_else(|| bad_guard(&v))?
                }
                _ => return Err(bad_guard(&v)),
            });
        }
        "on_error" => {
            let v = value.ok_or_else(|| needs_value(&key, "on_error = \"panic\""))?;
            cfg.on_error = match &v {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) if s.value() == "panic" => OnError::Panic,
                Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => {
                    OnError::Handler(p.path.clone())
                }
                _ => {
                    return Err(syn::Error::new(
                        v.span(),
                        "`on_error` expects \"panic\" or a path to a function \
                         `fn(lock_core::LockError) -> ReturnType` (`on_error = crate::on_lock_error`)",
                    ))
                }
            };
        }
        "crate" => {
            let v = value.ok_or_else(|| needs_value(&key, "crate = \"lock_core\""))?;
            let lit = string_lit(&v).ok_or_else(|| {
                syn::Error::new(
                    v.span(),
                    "`crate` expects the path of lock_core as a string, e.g. `crate = \"my_lock_core\"`",
                )
            })?;
            let path = lit.parse_with(syn::Path::parse_mod_style).map_err(|_| {
                syn::Error::new(
                    lit.span(),
                    format!(
                        "`crate = {:?}` is not a path; write the name lock_core has in this crate, \
                         e.g. `crate = \"my_lock_core\"` or `crate = \"::my_lock_core\"`",
                        lit.value()
                    ),
                )
            })?;
            cfg.krate = Some(respan_path(path, lit.span()));
        }
        other => {
            let hint = hint_for(other)
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            return Err(syn::Error::new(
                key.span(),
                format!(
                    "unknown argument `{other}`{hint}; valid arguments are {}",
                    key_list()
                ),
            ));
        }
    }
    Ok(())
}

fn shared_and_permits(key: &Ident, other: &Ident) -> syn::Error {
    let mut e = syn::Error::new(
        key.span(),
        "`shared` and `permits` cannot be combined: `shared` is a reader/writer lock's \
         shared hold, `permits = N` a counted lock; choose one",
    );
    e.combine(syn::Error::new(
        other.span(),
        format!("`{other}` given here"),
    ));
    e
}

fn file_and_path(key: &Ident, other: &Ident) -> syn::Error {
    let mut e = syn::Error::new(
        key.span(),
        "`file` and `path` cannot be combined: `file` locks a file named after the lock in \
         a lock directory, `path` exactly the file you give; choose one",
    );
    e.combine(syn::Error::new(
        other.span(),
        format!("`{other}` given here"),
    ));
    e
}

fn bad_guard(v: &Expr) -> syn::Error {
    syn::Error::new(
        v.span(),
        "`guard` expects a plain identifier to bind the guard to, e.g. `guard = g`",
    )
}

fn string_lit(v: &Expr) -> Option<LitStr> {
    match v {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s.clone()),
        _ => None,
    }
}

/// Literals that can never be the right thing for a number: strings, floats, bools,
/// negative numbers.
fn bad_number_literal(key: &Ident, v: &Expr, example: &str, what: &str) -> Option<syn::Error> {
    let shape = format!(
        "`{key}` expects {what} (an integer literal such as `{example}`, or an expression such as a constant)"
    );
    match v {
        Expr::Lit(ExprLit { lit, .. }) => match lit {
            Lit::Int(_) => None,
            Lit::Str(s) => Some(syn::Error::new(s.span(), format!("{shape}, not a string"))),
            other => Some(syn::Error::new(other.span(), shape)),
        },
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => {
            let hint = match key.to_string().as_str() {
                "timeout_ms" => "; use `0` to try once without waiting",
                "permits" => "; a counted lock needs at least 1 permit",
                _ => "",
            };
            Some(syn::Error::new(
                v.span(),
                format!("`{key}` cannot be negative{hint}"),
            ))
        }
        _ => None,
    }
}

fn parse_millis(key: &Ident, v: Expr) -> syn::Result<Value<u64>> {
    if let Some(e) = bad_number_literal(
        key,
        &v,
        &format!("{key} = 5000"),
        "a whole number of milliseconds",
    ) {
        return Err(e);
    }
    match &v {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => {
            if !matches!(i.suffix(), "" | "u64") {
                return Err(syn::Error::new(
                    i.span(),
                    format!("`{key}` is a u64; drop the `{}` suffix", i.suffix()),
                ));
            }
            let n = i.base10_parse::<u64>().map_err(|_| {
                syn::Error::new(
                    i.span(),
                    format!(
                        "`{key}` does not fit in a u64 (at most {} milliseconds)",
                        u64::MAX
                    ),
                )
            })?;
            Ok(Value::Lit(n, i.span()))
        }
        _ => Ok(Value::Expr(Box::new(v))),
    }
}

/// The most permits a counted lock may have (mirrors `lock_core::MAX_PERMITS`).
const MAX_PERMITS: u32 = (1 << 14) - 1;

fn parse_permits(key: &Ident, v: Expr) -> syn::Result<Value<u32>> {
    if let Some(e) = bad_number_literal(key, &v, "permits = 2", "a number of holders") {
        return Err(e);
    }
    match &v {
        Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) => {
            let n = i.base10_parse::<u64>().map_err(|_| {
                syn::Error::new(i.span(), format!("`{key}` must be a whole number"))
            })?;
            if n == 0 {
                return Err(syn::Error::new(
                    i.span(),
                    "`permits = 0` admits nobody: a counted lock needs at least 1 permit \
                     (`permits = 1` is an exclusive lock)",
                ));
            }
            if n > u64::from(MAX_PERMITS) {
                return Err(syn::Error::new(
                    i.span(),
                    format!("`permits` may be at most {MAX_PERMITS}, got {n}"),
                ));
            }
            Ok(Value::Lit(n as u32, i.span()))
        }
        _ => Ok(Value::Expr(Box::new(v))),
    }
}

/// `file = ...` / `path = ...`: a non-empty string literal without NUL, or an
/// expression (anything `AsRef<Path>`).
fn parse_path_value(v: &Expr, key: &str, what: &str) -> syn::Result<Value<LitStr>> {
    match v {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            let value = s.value();
            if value.is_empty() || value.contains('\0') {
                let alone = if key == "file" {
                    "; write `file` alone for the default lock directory"
                } else {
                    ""
                };
                return Err(syn::Error::new(
                    s.span(),
                    format!("`{key}` must name {what}: a non-empty path without NUL bytes{alone}"),
                ));
            }
            Ok(Value::Lit(s.clone(), s.span()))
        }
        Expr::Lit(ExprLit { lit, .. }) => Err(syn::Error::new(
            lit.span(),
            format!(
                "`{key}` expects {what} as a string (`{key} = \"target/locks\"`) or an expression \
                 that is a path (`{key} = LOCK_DIR`)"
            ),
        )),
        _ => Ok(Value::Expr(Box::new(v.clone()))),
    }
}

fn parse_names(v: Expr) -> syn::Result<NameSpec> {
    let shape = "`name` expects a string literal (`name = \"db\"`, `name = \"account-{id}\"`) \
                 or an array of them (`name = [\"db\", \"cache\"]`)";
    match v {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => {
            let t = names::parse_template(&s)?;
            Ok(NameSpec::Given {
                entries: vec![(s, t)],
                array: false,
            })
        }
        Expr::Array(arr) => {
            if arr.elems.is_empty() {
                return Err(syn::Error::new(
                    arr.bracket_token.span.join(),
                    "`name = []` names no lock; give at least one name, or drop `name` to lock on the function's path",
                ));
            }
            let mut entries = Vec::new();
            let mut errors = None;
            for e in arr.elems {
                match string_lit(&e) {
                    Some(s) => match names::parse_template(&s) {
                        Ok(t) => entries.push((s, t)),
                        Err(err) => push(&mut errors, err),
                    },
                    None => push(&mut errors, syn::Error::new(e.span(), shape)),
                }
            }
            match errors {
                Some(e) => Err(e),
                None => Ok(NameSpec::Given {
                    entries,
                    array: true,
                }),
            }
        }
        other => Err(syn::Error::new(other.span(), shape)),
    }
}

/// Gives every segment of a `crate = "..."` path the string's span, so that errors
/// about a wrong crate path point at the string.
fn respan_path(mut p: syn::Path, span: Span) -> syn::Path {
    if let Some(c) = &mut p.leading_colon {
        c.spans = [span, span];
    }
    for seg in &mut p.segments {
        seg.ident.set_span(span);
    }
    p
}

/// What an unknown key probably meant: words other tools use, then the known key
/// closest in spelling (edit distance at most 2).
fn hint_for(key: &str) -> Option<&'static str> {
    let alias = match key {
        "timeout" | "timeout_s" | "timeout_secs" | "wait" | "wait_ms" => Some("timeout_ms"),
        "lease" | "ttl" | "ttl_ms" | "lease_secs" => Some("lease_ms"),
        "key" | "keys" | "names" | "lock" => Some("name"),
        "read" | "reader" | "readers" | "parallel" | "shared_lock" => Some("shared"),
        "permit" | "max" | "limit" | "slots" | "count" | "semaphore" => Some("permits"),
        "dir" | "directory" | "file_dir" => Some("file"),
        "file_path" | "lock_file" => Some("path"),
        _ => None,
    };
    alias.or_else(|| closest(key))
}

fn closest(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_intended_key() {
        assert_eq!(hint_for("timeout"), Some("timeout_ms"));
        assert_eq!(hint_for("nmae"), Some("name"));
        assert_eq!(hint_for("parallel"), Some("shared"));
        assert_eq!(hint_for("xyzzy"), None);
    }
}
