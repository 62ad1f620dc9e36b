//! Async waits that would stop their own holder: an async acquire driven by a `block_on`
//! (any executor's) on the only thread that can run the holder.
//!
//! On a current-thread Tokio runtime, a task that holds a lock runs only on the runtime's
//! thread. A wait for that lock is fine when Tokio drives it (returning `Pending` lets the
//! holder run), but endless when a `block_on` nested in a task (say
//! `futures::executor::block_on`) drives it: that parks the thread, and the holder never
//! runs again. The future cannot see who drives it, so it asks: when such a wait starts,
//! it spawns a no-op *probe* task on the runtime and looks again a little later. Under
//! Tokio the probe has run by then — it was queued before this task could be woken and
//! polled again, and the current-thread scheduler runs its queue in order. Under a
//! blocking driver it cannot have run: the wait is refused with `Busy` and a reason.
//!
//! Only the waits that could be such a case pay for this (contended, on a current-thread
//! runtime, with an async holder on this very thread): one task spawn and one timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::owner;
use crate::raw::Record;
use crate::reactor;
use crate::registry::EntryRef;
use crate::LockError;

/// How long after the wait starts the probe is looked at.
const LOOK_AFTER: Duration = Duration::from_millis(20);

/// `fut` (a wait for `entry`), refused with `Busy` if it turns out to be driven by a
/// `block_on` that stops the lock's holder.
pub(crate) fn refuse_blocked_driver<F: Future + Unpin>(entry: &EntryRef, fut: F) -> Refuse<'_, F> {
    Refuse {
        entry,
        inner: fut,
        probe: Probe::start(entry),
    }
}

/// See [`refuse_blocked_driver`].
pub(crate) struct Refuse<'a, F> {
    entry: &'a EntryRef,
    inner: F,
    probe: Option<Probe>,
}

struct Probe {
    ran: Arc<AtomicBool>,
    look: reactor::Sleep,
}

impl Probe {
    fn start(entry: &EntryRef) -> Option<Probe> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        stalled_by(entry)?;
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        drop(handle.spawn(async move { flag.store(true, Ordering::Release) }));
        Some(Probe {
            ran,
            look: reactor::sleep_until(Instant::now() + LOOK_AFTER),
        })
    }
}

impl<F: Future + Unpin> Future for Refuse<'_, F> {
    type Output = Result<F::Output, LockError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(v) = Pin::new(&mut this.inner).poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let Some(probe) = &mut this.probe else {
            return Poll::Pending;
        };
        match Pin::new(&mut probe.look).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if !probe.ran.load(Ordering::Acquire) => {
                Poll::Ready(Err(blocked_driver(this.entry)))
            }
            // Tokio drives this wait (or the timer failed: then nothing is refused).
            Poll::Ready(_) => {
                this.probe = None;
                Poll::Pending
            }
        }
    }
}

#[cold]
fn blocked_driver(entry: &EntryRef) -> LockError {
    LockError::Busy {
        name: entry.name().to_owned(),
        holder: crate::report::holder_of(stalled_by(entry)),
        reentrant: false,
        reason: Some(
            "it is held by a task of this current-thread runtime, and this wait is driven by \
             a `block_on` that blocks the runtime's only thread: the holder could never run, \
             so the wait could never end — `.await` the acquire instead of blocking on it"
                .to_owned(),
        ),
    }
}

/// A holder that a blocking wait on this thread would stop: async code whose hold was
/// taken on this thread, unless this is a multi-thread runtime's task (the runtime then
/// moves the holder to another worker while we block).
pub(crate) fn stalled_by(entry: &EntryRef) -> Option<Record> {
    let here = owner::thread_key();
    let stalls = |r: &Record| r.facts.is_async() && r.facts.thread_key() == here;
    let records = entry.raw.records();
    let rec = *records.iter().find(|r| stalls(r))?;
    if in_multi_thread_task() {
        return None;
    }
    Some(rec)
}

/// True inside a task of a multi-thread Tokio runtime, whose other tasks the runtime
/// can move to other threads while this one blocks.
///
/// Without the `task-ids` feature a task cannot be told from the root future of a
/// `block_on`: every caller in a multi-thread runtime's context counts as a task.
pub(crate) fn in_multi_thread_task() -> bool {
    (cfg!(not(feature = "task-ids")) || crate::owner::task_key().is_some())
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}
