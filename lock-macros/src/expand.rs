//! Code generation: wraps the function body in an acquire / scope / release.
//!
//! Generated code names only absolute paths (`::core::...`, `::std::...` and the
//! lock_core path, `::lock_core` unless `crate = "..."`), and its local variables use
//! `Span::mixed_site()`, so user code can neither see nor shadow them.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{AttrStyle, Expr, ExprAsync, ItemFn, Stmt, Type};

use crate::parse::{FileSpec, ModeSpec, OnError, Value};
use crate::plan::{is_box_pin, GuardKind, Keys, Kind, Plan};

/// Hygienic names of the generated locals.
struct Names {
    held: syn::Ident,
    ok: syn::Ident,
    err: syn::Ident,
    slow: syn::Ident,
    frame: syn::Ident,
    entered: syn::Ident,
    fake: syn::Ident,
    site: syn::Ident,
    place: syn::Ident,
    timeout: syn::Ident,
    permits: syn::Ident,
    lease: syn::Ident,
}

impl Names {
    fn new() -> Self {
        let s = Span::mixed_site();
        Names {
            held: format_ident!("lock_core_held", span = s),
            ok: format_ident!("lock_core_ok", span = s),
            err: format_ident!("lock_core_err", span = s),
            slow: format_ident!("lock_core_slow", span = s),
            frame: format_ident!("lock_core_frame", span = s),
            entered: format_ident!("_lock_core_entered", span = s),
            fake: format_ident!("lock_core_fake_return", span = s),
            site: format_ident!("lock_core_site", span = s),
            place: format_ident!("lock_core_place", span = s),
            timeout: format_ident!("lock_core_timeout", span = s),
            permits: format_ident!("lock_core_permits", span = s),
            lease: format_ident!("lock_core_lease", span = s),
        }
    }
}

pub(crate) fn expand(plan: &Plan, mut item: ItemFn) -> TokenStream {
    let n = Names::new();
    let (outer, inner): (Vec<_>, Vec<_>) = std::mem::take(&mut item.attrs)
        .into_iter()
        .partition(|a| matches!(a.style, AttrStyle::Outer));
    let vis = &item.vis;
    let sig = &item.sig;
    let brace = item.block.brace_token;
    let mut stmts = std::mem::take(&mut item.block.stmts);

    let body = match plan.kind {
        Kind::Async => {
            let acquire = acquire_stmt(plan, &n);
            let pin = fake_return(plan, &n);
            let scoped = scoped(plan, &n, quote!(move), quote!(#pin), &stmts);
            quote! {
                #acquire
                #scoped.await
            }
        }
        Kind::Sync => {
            let acquire = acquire_stmt(plan, &n);
            let p = private(plan);
            let Names {
                held,
                frame,
                entered,
                ..
            } = &n;
            let guard = bind_guard(plan, &n);
            let site = &n.site;
            quote! {
                #acquire
                let #frame = #p::frame(&#held, #site);
                let #entered = #p::enter(&#frame);
                #guard
                #(#stmts)*
            }
        }
        Kind::AsyncTail | Kind::Boxed => {
            if let Some(tail) = async_tail(&mut stmts, &plan.kind) {
                let user = std::mem::replace(tail, placeholder());
                *tail = wrap_async_block(plan, &n, user);
            }
            quote!(#(#stmts)*)
        }
    };

    let mut block = TokenStream::new();
    brace.surround(&mut block, |out| {
        for a in &inner {
            a.to_tokens(out);
        }
        body.to_tokens(out);
    });
    quote! {
        #(#outer)*
        #vis #sig #block
    }
}

/// `::lock_core::__private`, or the `crate = "..."` path.
fn private(plan: &Plan) -> TokenStream {
    let k = &plan.krate;
    quote!(#k::__private)
}

fn placeholder() -> Expr {
    Expr::Verbatim(TokenStream::new())
}

/// The async block at the end of the body (`async {..}` or `Box::pin(async {..})`).
fn async_tail<'a>(stmts: &'a mut [Stmt], kind: &Kind) -> Option<&'a mut Expr> {
    let Some(Stmt::Expr(e, None)) = stmts.last_mut() else {
        return None;
    };
    match kind {
        Kind::AsyncTail => Some(e),
        Kind::Boxed => match e {
            Expr::Call(c) if is_box_pin(&c.func) => c.args.first_mut(),
            _ => None,
        },
        Kind::Async | Kind::Sync => None,
    }
}

/// Replaces the user's `async [move] { .. }` with an outer `async move` block that
/// acquires, then runs the user's block as the locked scope.
fn wrap_async_block(plan: &Plan, n: &Names, user: Expr) -> Expr {
    let Expr::Async(ExprAsync {
        attrs,
        async_token,
        capture,
        block,
    }) = user
    else {
        return user;
    };
    let acquire = acquire_stmt(plan, n);
    let capture = capture.map(|c| c.into_token_stream()).unwrap_or_default();
    let scoped = scoped(plan, n, capture, TokenStream::new(), &block.stmts);
    Expr::Verbatim(quote! {
        #(#attrs)*
        #async_token move {
            #acquire
            #scoped.await
        }
    })
}

/// `scope(&held, async move { .. })`, or with a guard bound inside the body.
fn scoped(
    plan: &Plan,
    n: &Names,
    capture: TokenStream,
    pre: TokenStream,
    stmts: &[Stmt],
) -> TokenStream {
    let p = private(plan);
    let (held, site) = (&n.held, &n.site);
    let guard = bind_guard(plan, n);
    if plan.guard.is_some() {
        quote! {
            #p::scope_with(#p::frame(&#held, #site), async #capture {
                #pre
                #guard
                #(#stmts)*
            })
        }
    } else {
        quote! {
            #p::scope(&#held, #site, async #capture {
                #pre
                #(#stmts)*
            })
        }
    }
}

fn bind_guard(plan: &Plan, n: &Names) -> TokenStream {
    let held = &n.held;
    match &plan.guard {
        None => TokenStream::new(),
        Some((g, kind)) => {
            let method = match kind {
                GuardKind::One => quote!(into_guard),
                GuardKind::Set => quote!(into_set),
                GuardKind::Lease => quote!(into_lease),
                GuardKind::LeaseSet => quote!(into_leases),
            };
            quote!(let #g = #held.#method();)
        }
    }
}

/// Pins the async body's output type so `?` and `return` infer as in the original fn.
fn fake_return(plan: &Plan, n: &Names) -> TokenStream {
    let Some(ty) = &plan.output else {
        return TokenStream::new();
    };
    if matches!(ty, Type::Infer(_)) {
        return TokenStream::new();
    }
    let fake = &n.fake;
    quote! {
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let #fake: #ty = loop {};
            return #fake;
        }
    }
}

/// The per-call values, in the order written: the function's site, then every option
/// given as an expression (evaluated before the lock is asked for, like names).
fn prelude(plan: &Plan, n: &Names) -> TokenStream {
    let p = private(plan);
    let func = &plan.fn_name;
    let site = &n.site;
    let classes: Vec<&str> = match &plan.keys {
        Keys::Dynamic(names) => names.iter().map(|d| d.class.as_str()).collect(),
        _ => Vec::new(),
    };
    let mut out = quote! {
        let #site: &'static #p::FnSite = {
            static LOCK_CORE_FN: #p::FnSite = #p::FnSite {
                func: ::core::concat!(::core::module_path!(), "::", #func),
                ty: #p::OnceLock::new(),
                file: ::core::file!(),
                line: ::core::line!(),
                classes: &[#(#classes),*],
            };
            &LOCK_CORE_FN
        };
    };
    if plan.type_at_run_time {
        out.extend(quote! {
            #site.method_of(::core::any::type_name::<Self>());
        });
    }
    if let Some(Value::Expr(e)) = &plan.timeout_ms {
        let t = &n.timeout;
        out.extend(quote_spanned! {e.span()=>
            let #t: ::core::option::Option<u64> = #p::IntoMillis::into_millis(#e);
        });
    }
    if let Some(Value::Expr(e)) = &plan.lease_ms {
        let t = &n.lease;
        out.extend(quote_spanned! {e.span()=>
            let #t: ::core::option::Option<u64> = #p::IntoMillis::into_millis(#e);
        });
    }
    if let ModeSpec::Permits(_, Value::Expr(e)) = &plan.mode {
        let v = &n.permits;
        out.extend(quote_spanned! {e.span()=>
            let #v: u32 = #p::IntoPermits::into_permits(#e);
        });
    }
    if let FileSpec::Dir(_, Value::Expr(e)) | FileSpec::Path(_, Value::Expr(e)) = &plan.file {
        let v = &n.place;
        out.extend(quote_spanned! {e.span()=>
            let #v = #e;
        });
    }
    out
}

fn millis(v: &Option<Value<u64>>, local: &syn::Ident) -> TokenStream {
    match v {
        None => quote!(::core::option::Option::None),
        Some(Value::Lit(n, _)) => {
            let lit = proc_macro2::Literal::u64_suffixed(*n);
            quote!(::core::option::Option::Some(#lit))
        }
        Some(Value::Expr(_)) => quote!(#local),
    }
}

fn mode(plan: &Plan, n: &Names) -> TokenStream {
    let p = private(plan);
    match &plan.mode {
        ModeSpec::Exclusive => quote!(#p::EXCLUSIVE),
        ModeSpec::Shared(_) => quote!(#p::SHARED),
        ModeSpec::Permits(_, Value::Lit(v, _)) => {
            let lit = proc_macro2::Literal::u32_suffixed(*v);
            quote!(#p::permits(#lit))
        }
        ModeSpec::Permits(_, Value::Expr(_)) => {
            let v = &n.permits;
            quote!(#p::permits(#v))
        }
    }
}

fn file_mode(plan: &Plan, n: &Names) -> TokenStream {
    let p = private(plan);
    let place = &n.place;
    match &plan.file {
        FileSpec::Off => quote!(#p::FileMode::Off),
        FileSpec::DefaultDir(_) => quote!(#p::FileMode::DefaultDir),
        FileSpec::Dir(_, Value::Lit(d, _)) => quote!(#p::FileMode::dir(#d)),
        FileSpec::Dir(_, Value::Expr(_)) => quote!(#p::FileMode::dir(&#place)),
        FileSpec::Path(_, Value::Lit(d, _)) => quote!(#p::FileMode::path(#d)),
        FileSpec::Path(_, Value::Expr(_)) => quote!(#p::FileMode::path(&#place)),
    }
}

/// `let held = match acquire(..) { Ok(h) => h, Err(e) => <failure> };` (async: a
/// synchronous `try_acquire` first, then `slow.wait().await` only if needed), after the
/// per-call values.
fn acquire_stmt(plan: &Plan, n: &Names) -> TokenStream {
    let p = private(plan);
    let keys = keys(plan);
    let prelude = prelude(plan, n);
    let timeout = millis(&plan.timeout_ms, &n.timeout);
    let mode = mode(plan, n);
    let site = &n.site;
    let call = if let Some(store) = &plan.store {
        let lease = millis(&plan.lease_ms, &n.lease);
        let store_ref = quote_spanned! {store.span()=>
            {
                use #p::StoreArg as _;
                (#store).lock_core_store()
            }
        };
        let several = !plan.single;
        quote! {
            #p::acquire_store(#store_ref, #keys, #p::StoreOptions {
                timeout_ms: #timeout,
                lease_ms: #lease,
                mode: #mode,
                several: #several,
                site: #site,
            }).await
        }
    } else {
        let file = file_mode(plan, n);
        let (reentrant, readers_first) = (plan.reentrant, plan.readers_first);
        let opts = quote! {
            #p::Options {
                timeout_ms: #timeout,
                file: #file,
                mode: #mode,
                site: #site,
                reentrant: #reentrant,
                readers_first: #readers_first,
            }
        };
        if plan.kind.is_async() {
            // A synchronous attempt first: the uncontended call awaits nothing.
            let Names {
                held,
                ok,
                err,
                slow,
                ..
            } = n;
            let fail = failure(plan, n);
            return quote! {
                #prelude
                let #held = match #p::try_acquire(#keys, #opts) {
                    ::core::result::Result::Ok(#ok) => #ok,
                    ::core::result::Result::Err(#slow) => match #slow.wait().await {
                        ::core::result::Result::Ok(#ok) => #ok,
                        ::core::result::Result::Err(#err) => #fail,
                    },
                };
            };
        }
        quote!(#p::blocking_acquire(#keys, #opts))
    };
    let Names { held, ok, err, .. } = n;
    let fail = failure(plan, n);
    quote! {
        #prelude
        let #held = match #call {
            ::core::result::Result::Ok(#ok) => #ok,
            ::core::result::Result::Err(#err) => #fail,
        };
    }
}

/// What the function returns when the lock cannot be taken.
fn failure(plan: &Plan, n: &Names) -> TokenStream {
    let p = private(plan);
    let (err, site) = (&n.err, &n.site);
    match &plan.on_error {
        OnError::Panic => quote!(#p::lock_panic(#err, #site)),
        OnError::Handler(path) => {
            let call = quote_spanned!(path.span()=> #path(#err));
            quote!(return #call)
        }
        OnError::Default => {
            let ty = match &plan.output {
                Some(ty) => ty.clone(),
                None if plan.kind.is_async() && !matches!(plan.kind, Kind::Async) => {
                    // The output of an `impl Future` / boxed body the macro cannot name:
                    // let inference pick it.
                    return quote!(return #p::LockFailure::lock_failure(#err, #site));
                }
                None => syn::parse_quote!(()),
            };
            // Method lookup picks how the type carries the failure (see
            // `__private::failure`); errors are spanned at the return type.
            let method = quote_spanned!(ty.span()=> lock_failure);
            // A test fails rather than refusing to compile: its fallback panics.
            let fallback = if plan.is_test {
                quote!(PanicFallback)
            } else {
                quote!(Fallback)
            };
            quote! {
                return {
                    #[allow(unused_imports)]
                    use #p::{Carry as _, #fallback as _};
                    (&&#p::Wrap::<#ty>::NEW).#method(#err, #site)
                }
            }
        }
    }
}

/// The `Keys` value for this call.
fn keys(plan: &Plan) -> TokenStream {
    let p = private(plan);
    match &plan.keys {
        Keys::FnPath(f) => quote! {
            #p::Keys::Site({
                static SITE: #p::Site = #p::Site::new(::core::concat!(::core::module_path!(), "::", #f));
                &SITE
            })
        },
        Keys::ModPath => quote! {
            #p::Keys::Site({
                static SITE: #p::Site = #p::Site::new(::core::module_path!());
                &SITE
            })
        },
        Keys::Method(f) => quote! {
            #p::Keys::Method(
                {
                    static SITE: #p::MethodSite = #p::MethodSite::new(::core::module_path!(), #f);
                    &SITE
                },
                ::core::any::type_name::<Self>(),
            )
        },
        Keys::Fixed(names) if names.len() == 1 => {
            let lit = syn::LitStr::new(&names[0].0, names[0].1);
            quote! {
                #p::Keys::Site({
                    static SITE: #p::Site = #p::Site::new(#lit);
                    &SITE
                })
            }
        }
        Keys::Fixed(names) => {
            let len = names.len();
            let lits = names.iter().map(|(s, sp)| syn::LitStr::new(s, *sp));
            quote! {
                #p::Keys::Sites({
                    static SITES: [#p::Site; #len] = [#(#p::Site::new(#lits)),*];
                    &SITES
                })
            }
        }
        Keys::Dynamic(names) => {
            let items = names.iter().map(|d| {
                let fmt = syn::LitStr::new(&d.format, d.lit.span());
                if d.exprs.is_empty() {
                    quote!(<::std::string::String as ::core::convert::From<&str>>::from(#fmt))
                } else {
                    let exprs = &d.exprs;
                    quote!(::std::format!(#fmt, #(#exprs),*))
                }
            });
            quote!(#p::Keys::Names(::std::vec![#(#items),*]))
        }
    }
}
