//! The `#[locked]` attribute of [lock-core](https://docs.rs/lock-core). Use it through
//! `lock_core::locked`; this crate is an implementation detail.
//!
//! The macro is split the way such crates usually are:
//!
//! - `parse`: the arguments into a config that keeps the span of everything written;
//! - `names`: lock-name templates (`"account-{id}"`) and the compile-time name rules;
//! - `validate`: checks against the annotated function, and the wrapping plan;
//! - `expand`: the generated code.
//!
//! Every misuse becomes a `syn::Error` at the offending token, emitted next to the
//! unchanged function so that one mistake does not cascade into others.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};

mod expand;
mod forms;
mod names;
mod parse;
mod plan;
mod validate;

#[cfg(test)]
mod snapshots;

/// Runs the function body under a named lock: the lock is taken before the body runs
/// and released when it finishes, returns early (`return`, `?`), panics, or — for
/// async — when the future is dropped.
///
/// # Arguments
///
/// | argument | meaning |
/// |---|---|
/// | *(none)* | the lock is named after the function: `module_path!()` + `"::"` + fn name |
/// | `name = "db"` | a fixed name, checked at compile time (non-empty, ≤ 256 bytes, no control characters) |
/// | `name = "account-{id}"` | interpolates the argument `id` (its `Display`), evaluated before the body; `{{`/`}}` are literal braces |
/// | `name = ["db", "cache"]` | several locks, always taken in sorted order (no ABBA deadlock), released in reverse |
/// | `timeout_ms = 5000` | give up after 5 s with `LockError::Timeout`; `0` tries once (`Busy` if held) |
/// | `file` / `file = "dir"` | also hold a cross-process file lock, in the default lock directory or in `dir` |
/// | `store = expr` | hold a lease from a lease store instead (`async fn` only); `lease_ms = N` sets its time to live |
/// | `guard = g` | binds the guard as `g` in the body: a `LockGuard` (one name), a `LockSet` (an array) or a `LeaseGuard` (`store`) |
/// | `on_error = "panic"` | panic when the lock cannot be taken |
/// | `on_error = path` | call `path(e: LockError)` and return its value |
/// | `crate = "path"` | where `lock_core` is, if renamed or re-exported |
///
/// # Failure handling
///
/// By default the return type decides, through the type system: `Result<T, E>` with
/// `E: From<LockError>` returns `Err(e.into())` (`std::io::Error`, `anyhow::Error`
/// and your own error types work); `()` panics with a message naming the lock and its
/// holder; any other type is a compile error asking for `on_error`.
///
/// # Functions
///
/// `async fn` (free functions, methods taking `self` in any form, generics, `impl Trait`,
/// trait impls, `#[async_trait]` impls, `#[tokio::test]` in either order) take the lock
/// asynchronously; the returned future is `Send` when the body's is. Sync fns (and
/// `#[test]`s) block the thread on the same named locks, so sync and async callers
/// exclude each other. A sync fn whose body ends in an `async` block (`-> impl Future`)
/// takes the lock when the future first runs.
///
/// # Re-entry
///
/// A call chain that holds a lock and asks for it again gets `LockError::Busy` at once
/// instead of deadlocking.
///
/// ```rust,ignore
/// use lock_core::{locked, LockError};
///
/// #[locked(name = "account-{id}", timeout_ms = 5_000)]
/// async fn credit(id: u64, amount: i64) -> Result<i64, LockError> {
///     Ok(amount)
/// }
///
/// #[locked(name = ["ledger", "audit"], guard = locks)]
/// fn close_day() -> std::io::Result<usize> {
///     Ok(locks.guards().len())
/// }
/// ```
#[proc_macro_attribute]
pub fn locked(args: TokenStream, item: TokenStream) -> TokenStream {
    locked2(args.into(), item.into()).into()
}

/// The attribute on `proc_macro2` tokens (testable outside the compiler).
fn locked2(args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    match try_locked(args, item.clone()) {
        Ok(out) => out,
        Err(e) => {
            // The function is emitted unchanged, so that the error above is the only one:
            // no "cannot find function" at call sites, and no "unused variable" for an
            // argument the lock name was meant to use.
            let mut out = e.to_compile_error();
            out.extend(quote::quote!(#[allow(unused_variables)]));
            out.extend(item);
            out
        }
    }
}

fn try_locked(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let func = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(_) => match syn::parse2::<syn::Item>(item.clone()) {
            Ok(syn::Item::Mod(m)) => return forms::module(args, m),
            Ok(syn::Item::Impl(i)) => return forms::impl_block(args, i),
            _ => {
                let mut e = not_a_fn(item);
                if let Err(more) = parse::parse(args) {
                    e.combine(more);
                }
                return Err(e);
            }
        },
    };
    let cfg = parse::parse(args);
    let item_check = validate::check_item(&func);
    let cfg = match (cfg, item_check) {
        (Ok(c), Ok(())) => c,
        (Err(mut a), Err(b)) => {
            a.combine(b);
            return Err(a);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let ctx = plan::Context::default();
    let keys = validate::check(&cfg, &func, ctx)?;
    let plan = plan::lower(cfg, &func, ctx, keys);
    Ok(expand::expand(&plan, func))
}

/// The error for an item that is not a function with a body.
fn not_a_fn(item: TokenStream2) -> syn::Error {
    if let Ok(decl) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
        if decl.default.is_none() {
            let span = decl.semi_token.map_or(decl.sig.ident.span(), |s| s.span);
            return syn::Error::new(
                span,
                "`#[locked]` needs a function body to wrap; put it on the method's implementation \
                 (or on a default body), not on a declaration",
            );
        }
    }
    let (what, span) = match syn::parse2::<syn::Item>(item) {
        Ok(syn::Item::Struct(s)) => ("a struct", s.struct_token.span),
        Ok(syn::Item::Enum(e)) => ("an enum", e.enum_token.span),
        Ok(syn::Item::Union(u)) => ("a union", u.union_token.span),
        Ok(syn::Item::Trait(t)) => ("a trait", t.trait_token.span),
        Ok(syn::Item::Const(c)) => ("a const", c.const_token.span),
        Ok(syn::Item::Static(s)) => ("a static", s.static_token.span),
        Ok(syn::Item::Type(t)) => ("a type alias", t.type_token.span),
        Ok(syn::Item::Use(u)) => ("a use declaration", u.use_token.span),
        Ok(syn::Item::ForeignMod(f)) => ("an extern block", f.abi.extern_token.span),
        _ => ("this item", Span::call_site()),
    };
    syn::Error::new(
        span,
        format!(
            "`#[locked]` applies to functions (`fn` or `async fn`), inline modules and impl \
             blocks, not to {what}"
        ),
    )
}
