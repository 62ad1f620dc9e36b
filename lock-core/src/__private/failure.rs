//! How a locked function's return type absorbs a lock failure, chosen by the type system.
//!
//! Generated code calls `(&&Wrap::<R>::NEW).lock_failure(e, &SITE)` where `R` is the
//! function's return type. Method lookup tries `&&Wrap<R>` first, where [`Carry`] is
//! implemented for `Result<T, E>` with `E: From<LockError>` and for `()`; when neither
//! applies (an `E` without the conversion, or another type), it falls back to
//! [`Fallback`] on `Wrap<R>`, whose method requires [`CannotCarry`] — implemented by
//! nothing, so the compiler reports that trait's message, spanned at the return type.

use std::marker::PhantomData;

use super::FnSite;
use crate::LockError;

/// The return type `R` as a marker for method lookup.
pub struct Wrap<R>(PhantomData<fn() -> R>);

impl<R> Wrap<R> {
    /// The marker.
    pub const NEW: Self = Wrap(PhantomData);
}

/// A return type that can carry a lock failure.
pub trait Carry {
    /// The return type.
    type Out;
    /// The value to return when the lock cannot be taken.
    #[track_caller]
    fn lock_failure(&self, e: LockError, site: &'static FnSite) -> Self::Out;
}

impl<T, E: From<LockError>> Carry for &Wrap<Result<T, E>> {
    type Out = Result<T, E>;
    #[inline]
    fn lock_failure(&self, e: LockError, _site: &'static FnSite) -> Result<T, E> {
        Err(e.into())
    }
}

impl Carry for &Wrap<()> {
    type Out = ();
    #[track_caller]
    fn lock_failure(&self, e: LockError, site: &'static FnSite) {
        lock_panic(e, site)
    }
}

/// Implemented by no type: the compile error for return types that cannot carry a
/// `LockError`.
#[diagnostic::on_unimplemented(
    message = "`#[locked]` cannot turn a lock failure into `{Self}`",
    label = "this return type cannot carry a `LockError`",
    note = "return `Result<T, E>` with `E: From<lock_core::LockError>` (implement `From<lock_core::LockError>` for your error type), or `()` (a failure panics)",
    note = "or choose `on_error = \"panic\"`, or `on_error = path::to::handler` (a `fn(lock_core::LockError) -> {Self}`)",
    note = "in a test, write `#[locked]` above `#[test]`: a test's lock failure then panics whatever it returns"
)]
pub trait CannotCarry {}

/// The lookup's last resort; see the module docs.
pub trait Fallback<R> {
    /// Never callable: `R: CannotCarry` has no implementation.
    fn lock_failure(&self, e: LockError, site: &'static FnSite) -> R
    where
        R: CannotCarry;
}

impl<R> Fallback<R> for Wrap<R> {
    fn lock_failure(&self, _e: LockError, _site: &'static FnSite) -> R
    where
        R: CannotCarry,
    {
        unreachable!("no type implements CannotCarry")
    }
}

/// The lookup's last resort in a function that carries a test attribute: whatever the
/// test returns (`Result<(), ()>`, a custom type), a lock failure panics, as for `()`.
pub trait PanicFallback<R> {
    /// Panics naming the lock and its holder.
    #[track_caller]
    fn lock_failure(&self, e: LockError, site: &'static FnSite) -> R;
}

impl<R> PanicFallback<R> for Wrap<R> {
    #[track_caller]
    fn lock_failure(&self, e: LockError, site: &'static FnSite) -> R {
        lock_panic(e, site)
    }
}

/// The same choice for bodies whose output type the macro cannot name (`impl Future`
/// tails, `#[async_trait]` bodies), through inference.
#[diagnostic::on_unimplemented(
    message = "`#[locked]` cannot turn a lock failure into `{Self}`",
    label = "this return type cannot carry a `LockError`",
    note = "return `Result<T, E>` with `E: From<lock_core::LockError>`, or `()` (a failure panics), or choose `on_error = \"panic\"` or `on_error = path::to::handler` (a `fn(lock_core::LockError) -> {Self}`)"
)]
pub trait LockFailure {
    /// The value the function returns when its lock cannot be taken.
    #[track_caller]
    fn lock_failure(e: LockError, site: &'static FnSite) -> Self;
}

impl<T, E: From<LockError>> LockFailure for Result<T, E> {
    fn lock_failure(e: LockError, _site: &'static FnSite) -> Self {
        Err(e.into())
    }
}

impl LockFailure for () {
    #[track_caller]
    fn lock_failure(e: LockError, site: &'static FnSite) -> Self {
        lock_panic(e, site)
    }
}

/// Panics with a message naming the locked function, the lock, the failure and the
/// holder; the panic's location is the locked function's attribute.
#[track_caller]
pub fn lock_panic(e: LockError, site: &'static FnSite) -> ! {
    // The name is escaped: an invalid one may hold control characters (a NUL from an
    // interpolated argument) that must not reach the terminal raw.
    panic!(
        "#[locked] fn {} could not take lock `{}`: {e} [code {}]",
        crate::site::Site::Fn(site),
        e.name().escape_debug(),
        e.code()
    )
}
