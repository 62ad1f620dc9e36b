//! The lock state machine exposed to loom model tests (`--cfg loom` only).

use std::future::Future;

use crate::raw::RawLock;

/// A bare lock (no registry, no names) as the model tests drive it.
pub struct Lock(RawLock);

impl Default for Lock {
    fn default() -> Self {
        Lock(RawLock::new())
    }
}

impl Lock {
    /// Takes the lock if free; true on success.
    pub fn try_lock(&self) -> bool {
        self.0.try_lock(None).is_ok()
    }
    /// Blocks until granted.
    pub fn lock_blocking(&self) {
        let _ = self.0.lock_blocking(None, None);
    }
    /// A cancel-safe waiting future.
    pub fn lock_async(&self) -> impl Future<Output = ()> + '_ {
        let acquire = self.0.lock_async();
        async move {
            acquire.await;
        }
    }
    /// Releases the current grant.
    pub fn unlock(&self) {
        self.0.unlock()
    }
    /// True while held.
    pub fn is_locked(&self) -> bool {
        self.0.is_locked()
    }
    /// Queued waiters.
    pub fn waiters(&self) -> usize {
        self.0.waiters()
    }
}
