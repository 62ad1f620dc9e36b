//! Lease stores for locks beyond one machine. (Filled in by issue #6.)

use crate::LockError;

/// A store of leases (PostgreSQL, Redis, or your own).
pub trait LeaseStore: Send + Sync {}

/// A held lease.
pub struct LeaseGuard {
    _private: (),
}

impl LeaseGuard {
    pub(crate) fn push_held(&self, _set: &mut crate::chain::HeldSet) {}
}

pub(crate) async fn acquire_for_macro<S: LeaseStore + ?Sized>(
    _store: &S,
    keys: crate::__private::Keys,
    _opts: crate::__private::StoreOptions,
) -> Result<LeaseGuard, LockError> {
    let _ = keys;
    Err(LockError::Generic {
        name: String::new(),
        message: "lease stores are not implemented yet".into(),
    })
}
