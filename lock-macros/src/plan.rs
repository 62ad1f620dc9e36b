//! Lowering: the checked arguments and the annotated function turned into a [`Plan`],
//! everything `expand` needs. Nothing here fails: [`crate::validate`] refused what is
//! wrong first (as thiserror's `valid.rs` runs before its `expand.rs`).

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, FnArg, Ident, ItemFn, LitStr, Pat, ReturnType, Stmt, Type};

use crate::parse::{Config, FileSpec, ModeSpec, NameSpec, OnError, Value};

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

/// Lowers checked arguments into the plan `expand` follows. Infallible: every way the
/// arguments can be wrong was refused by [`check`](crate::validate::check), which also
/// resolved the names (`keys`).
pub(crate) fn lower(cfg: Config, item: &ItemFn, ctx: Context<'_>, keys: Keys) -> Plan {
    let kind = kind_of(item);
    let receiver = item.sig.receiver().is_some();
    let fn_name = item.sig.ident.unraw().to_string();
    let single = !matches!(&cfg.names, NameSpec::Given { array: true, .. });
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

    let output = output_of(&kind, item);

    Plan {
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
    }
}

/// The type the body produces, `impl Trait` replaced by `_`; `None` when unknown or `()`.
pub(crate) fn output_of(kind: &Kind, item: &ItemFn) -> Option<Type> {
    match kind {
        Kind::Async | Kind::Sync => match &item.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, t) => Some(infer_impls((**t).clone())),
        },
        Kind::Boxed | Kind::AsyncTail => match &item.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, t) => future_output(t).map(infer_impls),
        },
    }
}

/// The identifiers bound by the function's arguments (`x: T`, `mut x: T`).
pub(crate) fn arg_names(item: &ItemFn) -> Vec<Ident> {
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

pub(crate) fn kind_of(item: &ItemFn) -> Kind {
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
pub(crate) fn future_output(t: &Type) -> Option<Type> {
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
