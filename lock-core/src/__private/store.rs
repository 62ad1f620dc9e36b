//! Leases for `store = ...` calls.

use std::time::Duration;

use super::keys::entries;
use super::{Held, Keys, Other};
use crate::mode::Mode;
use crate::site::FnSite;
use crate::LockError;

/// The options of a `store = ...` call.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    /// `timeout_ms`, if given (`0` = try once).
    pub timeout_ms: Option<u64>,
    /// `lease_ms`: the lease's time to live, if given (else the store's default).
    pub lease_ms: Option<u64>,
    /// `shared` / `permits = n`.
    pub mode: Mode,
    /// Whether the names were given as a list (`name = [..]`: the guard is a set).
    pub several: bool,
    /// The locked function.
    pub site: &'static FnSite,
}

/// Lets `store = expr` take a store, a reference to one or a smart pointer to one: the
/// macro calls `(expr).lock_core_store()`, and method lookup borrows or dereferences.
pub trait StoreArg {
    /// The store itself.
    fn lock_core_store(&self) -> &Self;
}

impl<S: crate::lease::LeaseStore> StoreArg for S {
    fn lock_core_store(&self) -> &Self {
        self
    }
}

/// Acquires a lease on `store` for the call's name(s).
pub async fn acquire_store<S: crate::lease::LeaseStore>(
    store: &S,
    keys: Keys,
    opts: StoreOptions,
) -> Result<Held, LockError> {
    let several = opts.several;
    let entries = entries(keys)?;
    let mut o = crate::lease::LeaseOptions::new()
        .timeout_opt(opts.timeout_ms.map(Duration::from_millis))
        .mode(opts.mode);
    if let Some(ms) = opts.lease_ms {
        o = o.ttl(Duration::from_millis(ms));
    }
    let mut guards = crate::lease::acquire_for_macro(store, entries, o, opts.site).await?;
    if several || guards.len() != 1 {
        return Ok(Held::other(Other::Leases(crate::lease::LeaseSet::new(
            guards,
        ))));
    }
    match guards.pop() {
        Some(g) => Ok(Held::other(Other::Lease(g))),
        None => Ok(Held::other(Other::Leases(crate::lease::LeaseSet::new(
            Vec::new(),
        )))),
    }
}
