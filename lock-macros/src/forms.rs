//! `#[locked(...)]` on an inline module or an impl block: the attribute applies to the
//! functions inside as if written on each.
//!
//! * **Module**: only functions that carry a test attribute (`#[test]`,
//!   `#[tokio::test]`, any attribute whose path ends in `test`, `#[rstest]`,
//!   `#[test_case(..)]`): helpers that the tests call stay unlocked, so that a test does
//!   not find its own lock taken when it calls them. Inline sub-modules get the same
//!   treatment. Without `name`, every test of one module takes the module's lock
//!   (its path, `crate::tests`), as serial_test's bare `#[serial]` serialises a suite.
//! * **Impl block**: every function. Without `name`, each takes its default lock,
//!   `module::Type::function`.
//! * A function's own `#[locked]` wins: it is left alone.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{ImplItem, Item, ItemFn, ItemImpl, ItemMod};

use crate::parse::{self, Config, NameSpec};
use crate::plan::{self, Context};
use crate::validate;
use crate::{expand, parse::push};

/// How a function inside the item gets its lock.
#[derive(Clone, Copy)]
enum Default {
    /// As written on the function.
    PerFn,
    /// The enclosing module's path.
    Module,
}

fn is_locked_attr(a: &syn::Attribute) -> bool {
    a.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "locked")
}

/// Test attributes: `#[test]`, `#[tokio::test]`, `#[sqlx::test]`, `#[test_log::test]`,
/// `#[rstest]`, `#[test_case(..)]`, ...; and `#[ignore]` / `#[should_panic]`, which only
/// tests carry: the built-in `#[test]` written *above* `#[locked]` expands first and
/// leaves only those behind.
pub(crate) fn is_test_attr(a: &syn::Attribute) -> bool {
    a.path().segments.last().is_some_and(|s| {
        let id = s.ident.to_string();
        id == "test"
            || id.ends_with("_test")
            || id == "rstest"
            || id.starts_with("test_case")
            || id == "ignore"
            || id == "should_panic"
    })
}

/// Expands one function as if `#[locked(args)]` were written on it.
fn one_fn(
    args: &TokenStream,
    f: ItemFn,
    ctx: Context<'_>,
    default: Default,
    errors: &mut Option<syn::Error>,
) -> TokenStream {
    let cfg = match parse::parse(args.clone()) {
        Ok(c) => c,
        // Reported once, by the caller.
        Err(_) => return f.into_token_stream(),
    };
    let cfg = match (default, &cfg.names) {
        (Default::Module, NameSpec::Default) => Config {
            names: NameSpec::Module,
            ..cfg
        },
        _ => cfg,
    };
    let planned = validate::check_item(&f)
        .and_then(|()| validate::check(&cfg, &f, ctx))
        .map(|keys| plan::lower(cfg, &f, ctx, keys));
    match planned {
        Ok(plan) => expand::expand(&plan, f),
        Err(e) => {
            push(errors, e);
            f.into_token_stream()
        }
    }
}

/// `#[locked] mod m { .. }`.
pub(crate) fn module(args: TokenStream, mut m: ItemMod) -> syn::Result<TokenStream> {
    // Argument errors once, at the attribute.
    parse::parse(args.clone())?;
    let Some((brace, items)) = m.content.take() else {
        return Err(syn::Error::new(
            m.semi.map_or(m.ident.span(), |s| s.span),
            "`#[locked]` on a module needs its items inline (`mod tests { .. }`): the \
             attribute cannot see into a module in another file; put it on the functions \
             there, or on `mod tests { .. }` in that file",
        ));
    };
    let mut errors = None;
    let items = module_items(&args, items, &mut errors);
    m.content = Some((brace, items));
    finish(m.into_token_stream(), errors)
}

fn module_items(
    args: &TokenStream,
    items: Vec<Item>,
    errors: &mut Option<syn::Error>,
) -> Vec<Item> {
    items
        .into_iter()
        .map(|item| match item {
            Item::Fn(f)
                if f.attrs.iter().any(is_test_attr) && !f.attrs.iter().any(is_locked_attr) =>
            {
                let tokens = one_fn(args, f, Context::default(), Default::Module, errors);
                Item::Verbatim(tokens)
            }
            Item::Mod(mut sub) if !sub.attrs.iter().any(is_locked_attr) => {
                if let Some((brace, inner)) = sub.content.take() {
                    sub.content = Some((brace, module_items(args, inner, errors)));
                }
                Item::Mod(sub)
            }
            other => other,
        })
        .collect()
}

/// `#[locked] impl T { .. }`.
pub(crate) fn impl_block(args: TokenStream, mut block: ItemImpl) -> syn::Result<TokenStream> {
    parse::parse(args.clone())?;
    let type_name = type_ident(&block.self_ty);
    let ctx = Context {
        in_impl: true,
        impl_type: type_name.as_deref(),
    };
    let mut errors = None;
    let items = std::mem::take(&mut block.items);
    block.items = items
        .into_iter()
        .map(|item| match item {
            ImplItem::Fn(f) if !f.attrs.iter().any(is_locked_attr) => {
                let syn::ImplItemFn {
                    attrs,
                    vis,
                    defaultness,
                    sig,
                    block: body,
                } = f;
                let as_fn = ItemFn {
                    attrs,
                    vis,
                    sig,
                    block: Box::new(body),
                };
                let mut tokens = defaultness.into_token_stream();
                tokens.extend(one_fn(&args, as_fn, ctx, Default::PerFn, &mut errors));
                ImplItem::Verbatim(tokens)
            }
            other => other,
        })
        .collect();
    finish(block.into_token_stream(), errors)
}

/// `T` of `impl Trait for a::T<X>` (for diagnostics only; lock names use `Self`).
fn type_ident(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        syn::Type::Reference(r) => type_ident(&r.elem),
        syn::Type::Paren(p) => type_ident(&p.elem),
        syn::Type::Group(g) => type_ident(&g.elem),
        _ => None,
    }
}

/// The item, with every function's error beside it.
fn finish(item: TokenStream, errors: Option<syn::Error>) -> syn::Result<TokenStream> {
    let mut out = TokenStream::new();
    if let Some(e) = errors {
        out.extend(e.to_compile_error());
    }
    out.extend(item);
    Ok(out)
}
