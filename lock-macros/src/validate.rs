//! Validation: checks the parsed arguments against the annotated function, reporting
//! every misuse at once with its span; what passes is lowered by [`crate::plan`].

use proc_macro2::{Span, TokenStream};
use quote::{quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::{Ident, ItemFn, LitStr, ReturnType, Type};

use crate::names::{Hole, Template};
use crate::parse::{push, Config, ModeSpec, NameSpec, OnError, Value};
use crate::plan::{arg_names, future_output, kind_of, output_of, Context, DynName, Keys, Kind};

/// The shortest lease a literal `lease_ms` may ask for (mirrors `lease::MIN_TTL`).
const MIN_LEASE_MS: u64 = 10;

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

/// Checks the arguments against the function; on success, the names it locks (resolving
/// interpolated names is where their holes are checked).
pub(crate) fn check(cfg: &Config, item: &ItemFn, ctx: Context<'_>) -> syn::Result<Keys> {
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
    let keys = match &cfg.names {
        NameSpec::Default if receiver || ctx.in_impl => Keys::Method(fn_name.clone()),
        NameSpec::Default => Keys::FnPath(fn_name.clone()),
        NameSpec::Module => Keys::ModPath,
        NameSpec::Given { entries, .. } => {
            if entries.iter().all(|(_, t)| t.fixed().is_some()) {
                let mut fixed: Vec<(String, Span)> = entries
                    .iter()
                    .filter_map(|(l, t)| t.fixed().map(|s| (s, l.span())))
                    .collect();
                fixed.sort_by(|a, b| a.0.cmp(&b.0));
                fixed.dedup_by(|a, b| a.0 == b.0);
                Keys::Fixed(fixed)
            } else {
                let mut dynamic = Vec::new();
                for (lit, t) in entries {
                    match resolve(lit, t, &fn_args, &fn_name, receiver) {
                        Ok(exprs) => dynamic.push(DynName {
                            format: t.format_string(),
                            class: t.class(),
                            lit: lit.clone(),
                            exprs,
                        }),
                        Err(e) => push(&mut errors, e),
                    }
                }
                Keys::Dynamic(dynamic)
            }
        }
    };

    if let Some(e) = errors {
        return Err(e);
    }

    let output = output_of(&kind, item);
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

    Ok(keys)
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
