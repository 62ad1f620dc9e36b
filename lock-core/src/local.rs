//! The in-process verbs, shared by the public API, the file mode and the attribute.

use std::time::{Duration, Instant, SystemTime};

use crate::chain;
use crate::raw::{HolderSnapshot, Refused};
use crate::registry::EntryRef;
use crate::{Holder, LockError, LockGuard};

pub(crate) fn holder_of(snap: Option<HolderSnapshot>) -> Option<Holder> {
    let snap = snap?;
    let mut h = Holder::new();
    h.pid = Some(std::process::id());
    h.since = SystemTime::now().checked_sub(snap.held);
    h.detail = Some(match snap.thread {
        Some(t) => format!("blocking thread #{t} of this process"),
        None => "a task of this process".to_owned(),
    });
    Some(h)
}

fn reentry(entry: &EntryRef, snap: Option<HolderSnapshot>) -> LockError {
    LockError::Busy {
        name: entry.name().to_owned(),
        holder: holder_of(snap),
        reentrant: true,
    }
}

fn refused(entry: &EntryRef, r: Refused) -> LockError {
    match r {
        Refused::Held(snap) => LockError::Busy {
            name: entry.name().to_owned(),
            holder: holder_of(snap),
            reentrant: false,
        },
        Refused::SameThread(snap) => reentry(entry, Some(snap)),
    }
}

/// Plainly busy (not re-entry), naming the current holder.
fn busy(entry: &EntryRef) -> LockError {
    refused(entry, Refused::Held(entry.raw.holder()))
}

/// Runs a blocking wait. On a multi-thread Tokio worker it is announced with
/// `block_in_place`, so the runtime moves its other tasks away instead of stalling them.
pub(crate) fn block_here<R>(wait: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

fn timed_out(entry: &EntryRef, waited: Duration) -> LockError {
    LockError::Timeout {
        name: entry.name().to_owned(),
        waited,
        holder: holder_of(entry.raw.holder()),
    }
}

/// Refuses at once if the current call chain already holds `entry`.
#[inline]
fn check_reentry(entry: &EntryRef) -> Result<(), LockError> {
    if chain::held_by_chain(entry) {
        return Err(reentry(entry, entry.raw.holder()));
    }
    Ok(())
}

/// Whether a non-async caller's call chain is its thread: not when it runs inside a
/// Tokio task or a locked async body, where the thread is shared by many tasks.
#[inline]
pub(crate) fn thread_owner() -> u64 {
    if chain::in_scope() || tokio::task::try_id().is_some() {
        0
    } else {
        crate::raw::thread_key()
    }
}

/// One uncontended attempt: the guard, or the entry back if the lock is taken (so the
/// caller can wait), or the re-entry error.
#[inline]
pub(crate) fn try_fast(
    entry: EntryRef,
    thread: u64,
) -> Result<Result<LockGuard, EntryRef>, LockError> {
    check_reentry(&entry)?;
    match entry.raw.try_lock(thread) {
        // Not stamped: the public verbs stamp what they return; the attribute's guard
        // is hidden unless bound with `guard = g`, which stamps it then.
        Ok(grant) => Ok(Ok(LockGuard::new(entry, grant))),
        Err(Refused::SameThread(snap)) => Err(reentry(&entry, Some(snap))),
        Err(Refused::Held(_)) => Ok(Err(entry)),
    }
}

pub(crate) fn try_lock(entry: EntryRef) -> Result<LockGuard, LockError> {
    check_reentry(&entry)?;
    match entry.raw.try_lock(thread_owner()) {
        Ok(grant) => Ok(LockGuard::new(entry, grant).stamped()),
        Err(r) => Err(refused(&entry, r)),
    }
}

/// Queues for `entry` without timeout or re-entry check (the caller's `try_fast` did it).
/// The guard is not stamped: only the attribute takes this path.
pub(crate) async fn wait(entry: EntryRef) -> LockGuard {
    let grant = entry.raw.lock_async().await;
    LockGuard::new(entry, grant)
}

/// Waits in FIFO order; `Some(0)` tries once, `None` waits for ever.
pub(crate) async fn lock(
    entry: EntryRef,
    timeout: Option<Duration>,
) -> Result<LockGuard, LockError> {
    // Fast path needs no timer and no runtime.
    let entry = match try_fast(entry, 0)? {
        Ok(g) => return Ok(g.stamped()),
        Err(entry) if timeout == Some(Duration::ZERO) => return Err(busy(&entry)),
        Err(entry) => entry,
    };
    let grant = match timeout {
        None => entry.raw.lock_async().await,
        Some(t) => {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(LockError::AcquireFailed {
                    name: entry.name().to_owned(),
                    reason: "waiting with a timeout needs a Tokio runtime (with the time driver) on this thread".into(),
                });
            }
            let start = Instant::now();
            match tokio::time::timeout(t, entry.raw.lock_async()).await {
                Ok(g) => g,
                Err(_) => return Err(timed_out(&entry, start.elapsed())),
            }
        }
    };
    Ok(LockGuard::new(entry, grant).stamped())
}

/// Blocks the calling thread (see [`block_here`]).
pub(crate) fn blocking_lock(
    entry: EntryRef,
    timeout: Option<Duration>,
) -> Result<LockGuard, LockError> {
    let owner = thread_owner();
    let entry = match try_fast(entry, owner)? {
        Ok(g) => return Ok(g.stamped()),
        Err(entry) if timeout == Some(Duration::ZERO) => return Err(busy(&entry)),
        Err(entry) => entry,
    };
    let start = Instant::now();
    let deadline = timeout.and_then(|t| start.checked_add(t));
    match block_here(|| entry.raw.lock_blocking(deadline, owner)) {
        Ok(grant) => Ok(LockGuard::new(entry, grant).stamped()),
        Err(Refused::SameThread(snap)) => Err(reentry(&entry, Some(snap))),
        Err(Refused::Held(_)) => Err(timed_out(&entry, start.elapsed())),
    }
}
