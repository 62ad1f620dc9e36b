//! Validation: checks the parsed arguments against the annotated function and decides
//! how to wrap it (a [`Plan`]).

use proc_macro2::{Span, TokenStream};
use quote::{quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, FnArg, Ident, ItemFn, LitStr, Pat, ReturnType, Stmt, Type};

use crate::names::{Hole, Template};
use crate::parse::{push, Config, FileSpec, ModeSpec, NameSpec, OnError, Value};

/// The shortest lease a literal `lease_ms` may ask for (mirrors `lease::MIN_TTL`).
const MIN_LEASE_MS: u64 = 10;

/// Where the attribute was written, when it applies to a function of a larger item.
#[derive(Clone, Copy, Default)]
pub(crate) struct Context<'a> {
    /// Under `#[locked] impl T`: default names include the type, for every fn.
    pub in_impl: bool,
    /// The impl's type as written (last path segment), for diagnostics.
    pub impl_type: Option<&'a str>,
}

/// What shape of function is being wrapped.
pub(crate) enum Kind {
    /// `async fn`.
    Async,
    /// A sync fn whose body ends in `Box::pin(async move { .. })` (an `#[async_trait]` method).
    Boxed,
    /// A sync fn whose body ends in an `async` block (returns `impl Future`).
    AsyncTail,
    /// A plain sync fn: blocking acquire.
    Sync,
}

impl Kind {
    pub(crate) fn is_async(&self) -> bool {
        !matches!(self, Kind::Sync)
    }
}

/// One name computed per call.
pub(crate) struct DynName {
    pub lit: LitStr,
    pub format: String,
    /// The lock-order checker's class (`account-{}`).
    pub class: String,
    /// One expression per hole (`id`, `self.id`, `order.customer`).
    pub exprs: Vec<TokenStream>,
}

/// The locks a call takes.
pub(crate) enum Keys {
    /// The function's own path.
    FnPath(String),
    /// A method's default name: `module::Type::method`, `Type` from `Self`.
    Method(String),
    /// The enclosing module's path (bare `#[locked]` on a module).
    ModPath,
    /// Fixed names, sorted and de-duplicated.
    Fixed(Vec<(String, Span)>),
    /// At least one interpolated name (all of them are evaluated per call).
    Dynamic(Vec<DynName>),
}

/// How the guard is handed to the body.
pub(crate) enum GuardKind {
    One,
    Set,
    Lease,
    LeaseSet,
}

/// Everything `expand` needs.
pub(crate) struct Plan {
    pub kind: Kind,
    /// One name (`name = ".."` or a default), not a list.
    pub single: bool,
    pub keys: Keys,
    pub timeout_ms: Option<Value<u64>>,
    pub mode: ModeSpec,
    pub file: FileSpec,
    pub store: Option<Expr>,
    pub lease_ms: Option<Value<u64>>,
    pub guard: Option<(Ident, GuardKind)>,
    pub on_error: OnError,
    pub krate: syn::Path,
    /// The type the body produces, `impl Trait` replaced by `_`; `None` when unknown or `()`.
    pub output: Option<Type>,
    /// The function's name, for its `FnSite` (`Type::f` under `#[locked] impl Type`).
    pub fn_name: String,
    /// A method whose type is not written where the attribute is: its `FnSite` learns
    /// the type from `Self` at run time.
    pub type_at_run_time: bool,
    /// `reentrant`.
    pub reentrant: bool,
    /// `readers_first`.
    pub readers_first: bool,
    /// The function carries a test attribute: a lock failure panics whatever it returns
    /// (a test fails, it does not refuse to compile).
    pub is_test: bool,
}

/// Checks the item itself (things that are wrong whatever the arguments).
pub(crate) fn check_item(item: &ItemFn) -> syn::Result<()> {
    if let Some(c) = &item.sig.constness {
        return Err(syn::Error::new(
            c.span,
            "`#[locked]` cannot be used on a `const fn`: the lock is taken at run time; remove `const`",
        ));
    }
    Ok(())
}

pub(crate) fn plan(cfg: Config, item: &ItemFn, ctx: Context<'_>) -> syn::Result<Plan> {
    let mut errors = None;
    let kind = kind_of(item);
    let fn_args = arg_names(item);
    let receiver = item.sig.receiver().is_some();

    if let Some((key, _)) = &cfg.store {
        if !kind.is_async() {
            push(
                &mut errors,
                syn::Error::new(
                    key.span(),
                    "`store` needs an `async fn`: a lease store is only reached asynchronously; \
                     use `file` or no mode for a sync fn",
                ),
            );
        }
        if let Some(f) = cfg.file.key() {
            push(
                &mut errors,
                syn::Error::new(
                    f.span(),
                    format!(
                        "`{f}` and `store` cannot be combined: choose `{f}` (one machine) or `store` (many machines)"
                    ),
                ),
            );
        }
        if let Some((_, Value::Lit(ms, span))) = &cfg.lease_ms {
            if *ms < MIN_LEASE_MS {
                push(
                    &mut errors,
                    syn::Error::new(
                        *span,
                        format!(
                            "`lease_ms = {ms}` is below the shortest lease lock-core grants \
                             ({MIN_LEASE_MS} ms); a lease this short would expire before it \
                             could be renewed"
                        ),
                    ),
                );
            }
        }
    } else if let Some((key, _)) = &cfg.lease_ms {
        push(
            &mut errors,
            syn::Error::new(
                key.span(),
                "`lease_ms` only applies with `store = ...`; in-process and file locks have no lease",
            ),
        );
    }

    if let Some(k) = &cfg.readers_first {
        if !matches!(cfg.mode, ModeSpec::Shared(_)) {
            push(
                &mut errors,
                syn::Error::new(
                    k.span(),
                    "`readers_first` applies to shared holds: write `shared, readers_first` \
                     (exclusive and counted requests always wait their turn)",
                ),
            );
        }
    }
    if let Some(k) = &cfg.reentrant {
        if let ModeSpec::Permits(p, _) = &cfg.mode {
            let mut e = syn::Error::new(
                k.span(),
                "`reentrant` does not apply to counted locks: re-entering would need a second \
                 permit (which may not be free) or share one (letting more than N bodies run)",
            );
            e.combine(syn::Error::new(p.span(), "`permits` given here"));
            push(&mut errors, e);
        }
    }
    for k in [&cfg.reentrant, &cfg.readers_first].into_iter().flatten() {
        if let Some((store, _)) = &cfg.store {
            let mut e = syn::Error::new(
                k.span(),
                format!(
                    "`{k}` is not available with `store = ...`: a lease is one grant per \
                     request in the store; remove `{k}`"
                ),
            );
            e.combine(syn::Error::new(store.span(), "`store` given here"));
            push(&mut errors, e);
        }
    }

    if let Some(g) = &cfg.guard {
        if let Some(a) = fn_args.iter().find(|a| a.unraw() == g.unraw()) {
            let mut e = syn::Error::new(
                g.span(),
                format!("`guard = {g}` would shadow the argument `{a}`; pick another name"),
            );
            e.combine(syn::Error::new(
                a.span(),
                format!("argument `{a}` declared here"),
            ));
            push(&mut errors, e);
        }
    }

    let fn_name = item.sig.ident.unraw().to_string();
    let (keys, single) = match cfg.names {
        NameSpec::Default if receiver || ctx.in_impl => (Keys::Method(fn_name.clone()), true),
        NameSpec::Default => (Keys::FnPath(fn_name.clone()), true),
        NameSpec::Module => (Keys::ModPath, true),
        NameSpec::Given { entries, array } => {
            let single = !array;
            if entries.iter().all(|(_, t)| t.fixed().is_some()) {
                let mut fixed: Vec<(String, Span)> = entries
                    .iter()
                    .filter_map(|(l, t)| t.fixed().map(|s| (s, l.span())))
                    .collect();
                fixed.sort_by(|a, b| a.0.cmp(&b.0));
                fixed.dedup_by(|a, b| a.0 == b.0);
                (Keys::Fixed(fixed), single)
            } else {
                let mut dynamic = Vec::new();
                for (lit, t) in entries {
                    match resolve(&lit, &t, &fn_args, &fn_name, receiver) {
                        Ok(exprs) => dynamic.push(DynName {
                            format: t.format_string(),
                            class: t.class(),
                            lit,
                            exprs,
                        }),
                        Err(e) => push(&mut errors, e),
                    }
                }
                (Keys::Dynamic(dynamic), single)
            }
        }
    };

    if let Some(e) = errors {
        return Err(e);
    }

    let guard = cfg.guard.map(|g| {
        let kind = if cfg.store.is_some() && single {
            GuardKind::Lease
        } else if cfg.store.is_some() {
            GuardKind::LeaseSet
        } else if single {
            GuardKind::One
        } else {
            GuardKind::Set
        };
        (g, kind)
    });

    let output = match &kind {
        Kind::Async | Kind::Sync => match &item.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, t) => Some(infer_impls((**t).clone())),
        },
        Kind::Boxed | Kind::AsyncTail => match &item.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, t) => future_output(t).map(infer_impls),
        },
    };

    if let (Kind::Sync, ReturnType::Type(_, ret)) = (&kind, &item.sig.output) {
        if matches!(**ret, Type::ImplTrait(_)) && future_output(ret).is_some() {
            return Err(syn::Error::new_spanned(
                ret,
                "`#[locked]` on a fn returning `impl Future` needs the body to end in an `async` \
                 block, so that the lock is taken when the future runs; or make it an `async fn`",
            ));
        }
    }

    if let (Some(Type::Infer(_)), OnError::Default, ReturnType::Type(_, ret)) =
        (&output, &cfg.on_error, &item.sig.output)
    {
        return Err(syn::Error::new_spanned(
            ret,
            "`#[locked]` cannot return a lock failure as an opaque `impl Trait` type; \
             choose `on_error = \"panic\"` or `on_error = path::to::handler`, \
             or return `Result<impl Trait, E>` with `E: From<lock_core::LockError>`",
        ));
    }

    Ok(Plan {
        kind,
        single,
        keys,
        timeout_ms: cfg.timeout_ms.map(|(_, n)| n),
        mode: cfg.mode,
        file: cfg.file,
        store: cfg.store.map(|(_, e)| e),
        lease_ms: cfg.lease_ms.map(|(_, n)| n),
        guard,
        on_error: cfg.on_error,
        krate: cfg.krate.unwrap_or_else(|| syn::parse_quote!(::lock_core)),
        output,
        type_at_run_time: receiver && ctx.impl_type.is_none(),
        reentrant: cfg.reentrant.is_some(),
        readers_first: cfg.readers_first.is_some(),
        is_test: item.attrs.iter().any(crate::forms::is_test_attr),
        fn_name: match ctx.impl_type {
            Some(t) => format!("{t}::{fn_name}"),
            None => fn_name,
        },
    })
}

/// Maps each hole of a template to the expression it reads: the argument (with the
/// span of its declaration, so hygiene resolves it) or `self`, then its fields.
fn resolve(
    lit: &LitStr,
    t: &Template,
    fn_args: &[Ident],
    fn_name: &str,
    receiver: bool,
) -> syn::Result<Vec<TokenStream>> {
    let mut out = Vec::new();
    for hole in t.holes() {
        let root = hole.root.strip_prefix("r#").unwrap_or(&hole.root);
        let base = if root == "self" {
            if !receiver {
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "`{{{}}}` in the lock name needs a `self` receiver, and `{fn_name}` has none; \
                         interpolate an argument instead",
                        hole_text(hole)
                    ),
                ));
            }
            quote_spanned!(lit.span()=> self)
        } else {
            match fn_args.iter().find(|i| i.unraw() == root) {
                Some(i) => i.to_token_stream(),
                None => {
                    let known = if fn_args.is_empty() {
                        format!("`{fn_name}` has no named arguments")
                    } else {
                        format!(
                            "the arguments of `{fn_name}` are {}",
                            fn_args
                                .iter()
                                .map(|i| format!("`{i}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    return Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "`{{{}}}` in the lock name is not an argument of `{fn_name}`; {known}",
                            hole_text(hole)
                        ),
                    ));
                }
            }
        };
        let mut expr = base;
        for f in &hole.fields {
            let member: syn::Member = match f.parse::<u32>() {
                Ok(n) => syn::Member::Unnamed(syn::Index {
                    index: n,
                    span: lit.span(),
                }),
                Err(_) => syn::Member::Named(match f.strip_prefix("r#") {
                    Some(raw) => Ident::new_raw(raw, lit.span()),
                    None => Ident::new(f, lit.span()),
                }),
            };
            expr = quote_spanned!(lit.span()=> #expr.#member);
        }
        out.push(expr);
    }
    Ok(out)
}

fn hole_text(h: &Hole) -> String {
    let mut s = h.root.clone();
    for f in &h.fields {
        s.push('.');
        s.push_str(f);
    }
    s
}

/// The identifiers bound by the function's arguments (`x: T`, `mut x: T`).
fn arg_names(item: &ItemFn) -> Vec<Ident> {
    item.sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(pi) if pi.subpat.is_none() => Some(pi.ident.clone()),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect()
}

fn kind_of(item: &ItemFn) -> Kind {
    if item.sig.asyncness.is_some() {
        return Kind::Async;
    }
    match item.block.stmts.last() {
        Some(Stmt::Expr(e, None)) => match e {
            Expr::Async(_) => Kind::AsyncTail,
            Expr::Call(c) if is_box_pin(&c.func) && c.args.len() == 1 => {
                if matches!(c.args.first(), Some(Expr::Async(_))) {
                    Kind::Boxed
                } else {
                    Kind::Sync
                }
            }
            _ => Kind::Sync,
        },
        _ => Kind::Sync,
    }
}

/// `Box::pin`, `::std::boxed::Box::pin`, ... as `#[async_trait]` writes it.
pub(crate) fn is_box_pin(func: &Expr) -> bool {
    match func {
        Expr::Path(p) => {
            let segs: Vec<_> = p
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            segs.len() >= 2 && segs[segs.len() - 2] == "Box" && segs[segs.len() - 1] == "pin"
        }
        _ => false,
    }
}

/// `R` in `impl Future<Output = R>`, `Pin<Box<dyn Future<Output = R> + Send>>`, ...
fn future_output(t: &Type) -> Option<Type> {
    let bounds = match t {
        Type::ImplTrait(i) => &i.bounds,
        Type::TraitObject(o) => &o.bounds,
        Type::Paren(p) => return future_output(&p.elem),
        Type::Group(g) => return future_output(&g.elem),
        Type::Path(p) => {
            return p
                .path
                .segments
                .iter()
                .rev()
                .find_map(|seg| match &seg.arguments {
                    syn::PathArguments::AngleBracketed(a) => {
                        a.args.iter().find_map(|ga| match ga {
                            syn::GenericArgument::Type(t) => future_output(t),
                            _ => None,
                        })
                    }
                    _ => None,
                })
        }
        _ => return None,
    };
    bounds.iter().find_map(|b| match b {
        syn::TypeParamBound::Trait(tb) => {
            let last = tb.path.segments.last()?;
            if last.ident != "Future" {
                return None;
            }
            match &last.arguments {
                syn::PathArguments::AngleBracketed(a) => a.args.iter().find_map(|ga| match ga {
                    syn::GenericArgument::AssocType(at) if at.ident == "Output" => {
                        Some(at.ty.clone())
                    }
                    _ => None,
                }),
                _ => None,
            }
        }
        _ => None,
    })
}

/// Replaces every `impl Trait` with `_`, which may appear in a `let` type or a qualified
/// path where `impl Trait` may not.
fn infer_impls(mut t: Type) -> Type {
    struct V;
    impl VisitMut for V {
        fn visit_type_mut(&mut self, t: &mut Type) {
            if let Type::ImplTrait(i) = t {
                let span = i.impl_token.span;
                *t = Type::Infer(syn::TypeInfer {
                    underscore_token: syn::Token![_](span),
                });
                return;
            }
            visit_mut::visit_type_mut(self, t);
        }
    }
    V.visit_type_mut(&mut t);
    t
}
