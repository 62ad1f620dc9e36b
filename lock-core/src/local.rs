//! The in-process verbs, shared by the public API, the file mode and the attribute.

use std::time::{Duration, Instant, SystemTime};

use crate::chain;
use crate::raw::{HolderSnapshot, Refused};
use crate::reactor::{self, Stop};
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
#[inline(always)]
pub(crate) fn try_fast(entry: EntryRef, thread: u64) -> Fast {
    if chain::held_by_chain(&entry) {
        return Fast::Reentry(reentry_boxed(&entry, entry.raw.holder()));
    }
    match entry.raw.try_lock_or_wait(thread) {
        Ok(grant) => Fast::Got(LockGuard::new(entry, grant)),
        Err(Refused::SameThread(snap)) => Fast::Reentry(reentry_boxed(&entry, Some(snap))),
        Err(Refused::Held(_)) => Fast::Taken(entry),
    }
}

/// The outcome of [`try_fast`]. Small on purpose (the error is boxed): it is moved
/// around by value on the hot path of every locked call.
pub(crate) enum Fast {
    /// The lock is ours.
    Got(LockGuard),
    /// Someone else holds it: the entry, to wait for it.
    Taken(EntryRef),
    /// The current call chain holds it already.
    Reentry(Box<LockError>),
}

#[cold]
#[inline(never)]
fn reentry_boxed(entry: &EntryRef, snap: Option<HolderSnapshot>) -> Box<LockError> {
    Box::new(reentry(entry, snap))
}

pub(crate) fn try_lock(entry: EntryRef) -> Result<LockGuard, LockError> {
    check_reentry(&entry)?;
    match entry.raw.try_lock(thread_owner()) {
        Ok(grant) => Ok(LockGuard::new(entry, grant)),
        Err(r) => Err(refused(&entry, r)),
    }
}

/// Queues for `entry` without timeout or re-entry check (the caller's `try_fast` did it).
pub(crate) async fn wait(entry: EntryRef) -> LockGuard {
    let grant = entry.raw.lock_async().await;
    LockGuard::new(entry, grant)
}

/// Waits in FIFO order; `Some(0)` tries once, `None` waits for ever.
pub(crate) async fn lock(
    entry: EntryRef,
    timeout: Option<Duration>,
) -> Result<LockGuard, LockError> {
    // The fast path needs no timer.
    let entry = match try_fast(entry, 0) {
        Fast::Got(g) => return Ok(g),
        Fast::Reentry(e) => return Err(*e),
        Fast::Taken(entry) if timeout == Some(Duration::ZERO) => return Err(busy(&entry)),
        Fast::Taken(entry) => entry,
    };
    let start = Instant::now();
    // A timeout too far away to represent is no timeout.
    let grant = match timeout.and_then(|t| start.checked_add(t)) {
        None => entry.raw.lock_async().await,
        // The timer is the crate's own (no runtime needed); the queue is left on timeout
        // or failure by dropping the `lock_async` future.
        Some(deadline) => match reactor::timeout_at(deadline, entry.raw.lock_async()).await {
            Ok(g) => g,
            Err(Stop::Elapsed) => return Err(timed_out(&entry, start.elapsed())),
            Err(Stop::Failed(e)) => return Err(reactor::wait_failed(entry.name(), e)),
        },
    };
    Ok(LockGuard::new(entry, grant))
}

/// Blocks the calling thread (see [`block_here`]).
pub(crate) fn blocking_lock(
    entry: EntryRef,
    timeout: Option<Duration>,
) -> Result<LockGuard, LockError> {
    let owner = thread_owner();
    let entry = match try_fast(entry, owner) {
        Fast::Got(g) => return Ok(g),
        Fast::Reentry(e) => return Err(*e),
        Fast::Taken(entry) if timeout == Some(Duration::ZERO) => return Err(busy(&entry)),
        Fast::Taken(entry) => entry,
    };
    let start = Instant::now();
    let deadline = timeout.and_then(|t| start.checked_add(t));
    match block_here(|| entry.raw.lock_blocking(deadline, owner)) {
        Ok(grant) => Ok(LockGuard::new(entry, grant)),
        Err(Refused::SameThread(snap)) => Err(reentry(&entry, Some(snap))),
        Err(Refused::Held(_)) => Err(timed_out(&entry, start.elapsed())),
    }
}
