//! The lock state machine exposed to loom model tests (`--cfg loom` only).

use std::future::Future;

use crate::raw::RawLock;

/// A bare lock (no registry, no names) as the model tests drive it. Acquisitions return
/// their grant token, which the caller hands back to `unlock`.
pub struct Lock(RawLock);

impl Default for Lock {
    fn default() -> Self {
        Lock(RawLock::new())
    }
}

impl Lock {
    /// Takes the lock if free.
    pub fn try_lock(&self) -> Option<u64> {
        self.0.try_lock(0).ok().map(|g| g.token)
    }
    /// Blocks until granted.
    pub fn lock_blocking(&self) -> u64 {
        match self.0.lock_blocking(None, 0) {
            Ok(g) => g.token,
            Err(e) => panic!("a wait without deadline cannot fail: {e:?}"),
        }
    }
    /// A cancel-safe waiting future.
    pub fn lock_async(&self) -> impl Future<Output = u64> + '_ {
        let acquire = self.0.lock_async();
        async move { acquire.await.token }
    }
    /// Releases the grant `token`.
    pub fn unlock(&self, token: u64) {
        self.0.unlock(token)
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
