//! Several leases taken together.

use std::fmt;
use std::future::Future;

use super::LeaseGuard;
use crate::LockError;

/// The leases of one [`acquire_many`](super::acquire_many) call (or of
/// `#[locked(name = [..], store = ..)]`), in sorted name order, each with its own fence.
/// Released together (in reverse order) when dropped.
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn demo() -> Result<(), lock_core::LockError> {
/// use lock_core::lease::{self, LeaseOptions, postgres::PostgresStore};
///
/// let store = PostgresStore::new("postgres://app@127.0.0.1/app")?;
/// let set = lease::acquire_many(&store, ["b", "a"], LeaseOptions::new()).await?;
/// for g in set.guards() {
///     println!("{} fence {}", g.name(), g.fence());
/// }
/// set.check()?; // Err(Lost) if any of them may have expired
/// set.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "the leases are released as soon as the set is dropped"]
pub struct LeaseSet {
    guards: Vec<LeaseGuard>,
}

impl LeaseSet {
    pub(crate) fn new(guards: Vec<LeaseGuard>) -> Self {
        LeaseSet { guards }
    }

    /// The leases, in sorted name order.
    pub fn guards(&self) -> &[LeaseGuard] {
        &self.guards
    }

    /// The names held, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.guards.iter().map(LeaseGuard::name)
    }

    /// The lease of `name`, if the set holds it.
    pub fn get(&self, name: &str) -> Option<&LeaseGuard> {
        self.guards.iter().find(|g| g.name() == name)
    }

    /// How many leases the set holds.
    pub fn len(&self) -> usize {
        self.guards.len()
    }

    /// Whether the set is empty (never, for a set that was acquired).
    pub fn is_empty(&self) -> bool {
        self.guards.is_empty()
    }

    /// `Ok` if every lease is certainly still held, else the first [`LockError::Lost`].
    pub fn check(&self) -> Result<(), LockError> {
        for g in &self.guards {
            g.check()?;
        }
        Ok(())
    }

    /// True once any lease of the set was found lost.
    pub fn is_lost(&self) -> bool {
        self.guards.iter().any(LeaseGuard::is_lost)
    }

    /// A future that completes with [`LockError::Lost`] when any lease of the set is
    /// found lost (see [`LeaseGuard::lost`]).
    pub fn lost(&self) -> impl Future<Output = LockError> + Send + 'static {
        let mut all: Vec<_> = self.guards.iter().map(|g| Box::pin(g.lost())).collect();
        std::future::poll_fn(move |cx| {
            for f in &mut all {
                if let std::task::Poll::Ready(e) = f.as_mut().poll(cx) {
                    return std::task::Poll::Ready(e);
                }
            }
            std::task::Poll::Pending
        })
    }

    /// Runs `fut` as a call chain holding every name of the set (nested attempts to
    /// take one of them are refused as re-entry instead of waiting).
    pub fn scope<F: Future>(&self, fut: F) -> crate::Scoped<F> {
        let mut held = crate::chain::HeldSet::default();
        self.push_held(&mut held);
        crate::Scoped::new(crate::chain::Frame::new(held), fut)
    }

    pub(crate) fn push_held(&self, set: &mut crate::chain::HeldSet) {
        for g in &self.guards {
            g.push_held(set);
        }
    }

    /// Releases every lease now, in reverse order; reports the first failure (every
    /// lease is released regardless).
    pub async fn release(mut self) -> Result<(), LockError> {
        let mut first = None;
        while let Some(g) = self.guards.pop() {
            if let Err(e) = g.release().await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The leases, for handling one by one.
    pub fn into_guards(mut self) -> Vec<LeaseGuard> {
        std::mem::take(&mut self.guards)
    }
}

impl Drop for LeaseSet {
    fn drop(&mut self) {
        while let Some(g) = self.guards.pop() {
            drop(g);
        }
    }
}

impl fmt::Debug for LeaseSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.guards.iter()).finish()
    }
}
