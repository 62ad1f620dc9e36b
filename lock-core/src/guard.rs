//! What a caller holds while inside a critical section.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::chain::{self, Scoped};
use crate::held::{Held, Role};
use crate::raw::Grant;
use crate::registry::{Entry, EntryRef};
use crate::LockError;

/// Proof that a named lock is held; the lock is released when the guard is dropped.
///
/// The guard is `Send`: it may be moved to (and dropped on) another thread or task. A
/// guard from [`crate::file`] also holds the cross-process file lock, given back first.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
/// let guard = lock_core::acquire("doc-guard").await?;
/// assert_eq!(guard.name(), "doc-guard");
/// assert!(lock_core::is_locked("doc-guard"));
/// guard.release()?;
/// assert!(!lock_core::is_locked("doc-guard"));
/// # Ok(()) }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    // Fields drop in this order: the cross-process part first, so the next in-process
    // waiter finds the OS lock free.
    /// The cross-process part, for file locks.
    pub(crate) file: crate::lockfile::FilePart,
    /// The in-process hold of the name.
    held: Held,
}

impl LockGuard {
    /// A guard whose hold recorded `facts`: one with a chain key is a hand-taken guard,
    /// counted for the deadlock check.
    #[inline]
    pub(crate) fn with_facts(entry: EntryRef, grant: Grant, facts: &crate::owner::Facts) -> Self {
        let hand = facts.key != 0;
        if hand {
            crate::deadlock::hand_taken();
        }
        LockGuard {
            file: crate::lockfile::FilePart::NONE,
            held: Held {
                entry,
                grant,
                hand,
                backend: Some(crate::trace::Backend::Memory),
                role: Role::Own,
            },
        }
    }

    /// A hold nested in the caller's chain's exclusive hold `outer` (see `reentry`): it
    /// holds nothing of its own, and the lock goes when the last of the nested holds and
    /// the outer one has gone.
    pub(crate) fn nested(entry: EntryRef, outer: Grant) -> Self {
        LockGuard {
            file: crate::lockfile::FilePart::NONE,
            held: Held {
                entry,
                grant: outer,
                hand: false,
                backend: Some(crate::trace::Backend::Memory),
                role: Role::Nested,
            },
        }
    }

    /// Attaches the cross-process part of a file lock.
    #[inline]
    pub(crate) fn attach_file(&mut self, hold: crate::lockfile::FileHold) {
        self.held.backend = Some(crate::trace::Backend::File);
        self.file = crate::lockfile::FilePart::new(hold);
    }

    /// The in-process hold alone, silent when released (for a lock file's own in-process
    /// lock, which a [`FileHold`](crate::lockfile::FileHold) keeps).
    pub(crate) fn into_held(self) -> Held {
        let mut me = std::mem::ManuallyDrop::new(self);
        debug_assert!(!me.file.is_some());
        drop(me.file.take());
        me.held.backend = None;
        // SAFETY: `me` is never dropped nor used again, so `held` is moved out exactly
        // once; the only other field, `file`, is empty now and owns nothing.
        unsafe { std::ptr::read(&me.held) }
    }

    /// The cross-process part, for file locks.
    #[inline]
    pub(crate) fn file_hold(&self) -> Option<&crate::lockfile::FileHold> {
        self.file.get()
    }

    #[inline]
    pub(crate) fn entry(&self) -> &Entry {
        &self.held.entry
    }

    /// The grant's id (what scope frames remember).
    #[inline]
    pub(crate) fn token(&self) -> u64 {
        self.held.grant.id
    }

    /// The mode the lock is held in.
    ///
    /// ```
    /// let g = lock_core::Lock::new("doc-guard-mode").permits(3).try_acquire().unwrap();
    /// assert_eq!(g.mode(), lock_core::Mode::Permits(3));
    /// ```
    pub fn mode(&self) -> crate::Mode {
        self.held.grant.mode
    }

    /// Makes this hold count for no call chain: for guards that the library hands to a
    /// task of its own (cleanup after cancellation), so the chain that took them may
    /// queue for the name again.
    pub(crate) fn disown(&self) {
        self.held.entry.raw.disown(self.held.grant.id);
        if let Some(f) = self.file_hold() {
            f.disown();
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        self.held.entry.name()
    }

    /// How long the lock has been held by this guard.
    ///
    /// Never less than the true time; it may be more by up to one tick of the kernel's
    /// coarse clock (1 to 4 ms on Linux). The acquisition reads only that coarse clock:
    /// a precise reading costs as much as the rest of an uncontended acquisition.
    ///
    /// That holds for guards returned by the verbs, which read the clock when they are
    /// granted. The hold of a `#[locked]` body does not (see
    /// [`Holder::since_observed`](crate::Holder::since_observed)): its guard, bound with
    /// `guard = g`, counts from when the hold was first seen, so it may say less.
    pub fn held_for(&self) -> Duration {
        self.held.held_for()
    }

    /// When the lock was acquired (up to one coarse clock tick early; see
    /// [`held_for`](Self::held_for)).
    pub fn acquired_at(&self) -> Instant {
        let now = Instant::now();
        now.checked_sub(self.held_for()).unwrap_or(now)
    }

    /// True if this guard also holds a cross-process file lock.
    pub fn is_file_lock(&self) -> bool {
        self.file.is_some()
    }

    /// The open lock file whose OS lock this guard holds (`None` for in-process locks).
    ///
    /// For handing a file lock down to a child process, as `flock(1)` does with its
    /// command: a child that inherits this descriptor (clear `FD_CLOEXEC` on it between
    /// `fork` and `exec`; lock-core opens it close-on-exec) shares the OS lock, which then
    /// stays held — even if this process dies — until every process that has the
    /// descriptor has closed it. Releasing this guard unlocks it for all of them, so a
    /// process that hands its lock down lets its heirs end it instead (it exits, or
    /// forgets the guard). [`record_heirs`](Self::record_heirs) lets the others see who
    /// holds the lock then. `lock-core run` does all of this for its command.
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// use std::os::fd::AsRawFd;
    /// let g = lock_core::file::try_acquire("doc-guard-fd").unwrap();
    /// assert!(g.lock_file_fd().unwrap().as_raw_fd() >= 0);
    /// assert!(lock_core::Lock::new("doc-guard-fd-local").try_acquire().unwrap().lock_file_fd().is_none());
    /// # }
    /// ```
    #[cfg(unix)]
    pub fn lock_file_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.file_hold()?.file().map(|f| f.as_fd())
    }

    /// Records in the lock file that process group `pgid` inherited this file lock (see
    /// [`lock_file_fd`](Self::lock_file_fd)): while any process of that group lives,
    /// [`file::holders`](crate::file::holders), `lock-core status` and the holder named by
    /// [`LockError::Busy`] and [`LockError::Timeout`] count the hold as live even once
    /// this process has exited, and name the group. Does nothing for in-process locks
    /// and for files that are not lock-core's.
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// let g = lock_core::file::try_acquire("doc-guard-heirs").unwrap();
    /// // In real use: the process group of the child that inherited the descriptor.
    /// g.record_heirs(std::process::id());
    /// # }
    /// ```
    #[cfg(unix)]
    pub fn record_heirs(&self, pgid: u32) {
        if let Some(f) = self.file_hold() {
            f.set_heirs(pgid);
        }
    }

    /// Releases the lock now, reporting any failure to give back the file lock.
    ///
    /// Dropping the guard releases too, but can only swallow such an error.
    pub fn release(mut self) -> Result<(), LockError> {
        if self.outlived_by_nested() {
            // Dropping hands the release over to the nested holds.
            return Ok(());
        }
        let file_result = match self.file.take() {
            Some(f) => f.release(self.held.entry.name()),
            None => Ok(()),
        };
        // The in-process part is given back as `held` drops.
        file_result
    }

    /// An own hold with re-entrant holds nested in it still alive: one relaxed load on
    /// every release, zero unless someone asked with `reentrant`.
    #[inline]
    fn outlived_by_nested(&self) -> bool {
        self.held.role == Role::Own
            && self
                .held
                .entry
                .nested
                .load(std::sync::atomic::Ordering::Relaxed)
                != 0
    }
}

impl Drop for LockGuard {
    #[inline]
    fn drop(&mut self) {
        if self.outlived_by_nested() {
            self.hand_over();
        }
        // Then the fields drop: the cross-process part first, then the in-process hold.
    }
}

impl LockGuard {
    /// Dropped while holds nested in it live: the last of them releases the lock (and
    /// this guard's file part, kept for it meanwhile).
    #[cold]
    #[inline(never)]
    fn hand_over(&mut self) {
        let part = self.file.take().map(|f| Box::new(f) as crate::held::Part);
        if crate::held::hand_over(&self.held.entry, part) {
            self.held.role = Role::HandedOver;
        } else if let Some(f) = crate::held::take_back(&self.held.entry) {
            // The nested holds all went meanwhile: release as usual.
            self.file = f
                .downcast::<crate::lockfile::FileHold>()
                .ok()
                .map_or(crate::lockfile::FilePart::NONE, |f| {
                    crate::lockfile::FilePart::new(*f)
                });
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name())
            .field("mode", &self.held.grant.mode)
            .field("held_for", &self.held_for())
            .field("file", &self.file.is_some())
            .finish()
    }
}

/// Runs `fut` as a call chain that holds `guard`'s lock, so that nested attempts to take
/// the same lock inside it are refused as re-entry instead of deadlocking.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let g = lock_core::acquire("scoped-doc").await.unwrap();
/// let inner = lock_core::scope(&g, async { lock_core::try_acquire("scoped-doc") }).await;
/// assert!(matches!(inner, Err(lock_core::LockError::Busy { reentrant: true, .. })));
/// # }
/// ```
pub fn scope<F: Future>(guard: &LockGuard, fut: F) -> Scoped<F> {
    let mut held = chain::HeldSet::default();
    held.push(guard.entry(), guard.token());
    Scoped::new(chain::Frame::new(held), fut)
}

/// The guards of a multi-name critical section (`#[locked(name = ["a", "b"])]`),
/// acquired in sorted name order and released in reverse.
pub struct LockSet {
    guards: Vec<LockGuard>,
}

impl LockSet {
    pub(crate) fn new(guards: Vec<LockGuard>) -> Self {
        LockSet { guards }
    }

    /// The guards, in acquisition (sorted name) order.
    pub fn guards(&self) -> &[LockGuard] {
        &self.guards
    }

    /// The names held, in acquisition order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.guards.iter().map(LockGuard::name)
    }

    /// Releases every lock now, in reverse order; reports the first failure.
    pub fn release(mut self) -> Result<(), LockError> {
        let mut first_err = None;
        while let Some(g) = self.guards.pop() {
            if let Err(e) = g.release() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for LockSet {
    fn drop(&mut self) {
        while let Some(g) = self.guards.pop() {
            drop(g);
        }
    }
}

impl fmt::Debug for LockSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    /// A guard turned into its in-process hold still holds the lock, and releases it
    /// exactly once when that hold drops.
    #[test]
    fn into_held_moves_the_hold_out_once() {
        let g = crate::try_acquire("unit-into-held").unwrap();
        let held = g.into_held();
        assert!(crate::is_locked("unit-into-held"));
        drop(held);
        assert!(!crate::is_locked("unit-into-held"));
        let again = crate::try_acquire("unit-into-held").unwrap();
        drop(again);
        assert!(!crate::is_locked("unit-into-held"));
    }
}
