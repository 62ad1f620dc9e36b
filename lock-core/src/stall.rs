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
//! runtime, with an async holder on this very thread, and polled with a waker that is not
//! a Tokio task's): one task spawn and one timer. A wait polled with a Tokio task's waker
//! is driven by Tokio (the task itself, or a combinator inside it that passes the waker
//! on), so it needs no probe. In recent Tokio releases all task wakers share one vtable,
//! which the probe task, a Tokio task itself, records the first time it runs: from then
//! on, contended waits in Tokio tasks (every `#[tokio::test]` that contends) cost no
//! spawn and no timer. Until it is known, for wakers of other executors
//! (`FuturesUnordered`, a `block_on`), and under older Tokio releases whose tasks each
//! have a vtable of their own (1.22 does), the probe runs as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use crate::owner;
use crate::raw::Record;
use crate::reactor;
use crate::registry::EntryRef;
use crate::LockError;

/// How long after the wait starts the probe is looked at.
const LOOK_AFTER: Duration = Duration::from_millis(20);

/// The probe of one wait for a lock: refuses the wait with `Busy` if it turns out to
/// be driven by a `block_on` that stops the lock's holder. The wait calls
/// [`Check::poll`] each time it returns `Pending`.
pub(crate) struct Check(Look);

impl Check {
    pub(crate) const fn new() -> Check {
        Check(Look::NotYet)
    }

    /// After the wait for `entry` returned `Pending` to `cx`: `Ready` with the error
    /// once the probe shows that nothing but this wait's driver can run the holder.
    #[inline]
    pub(crate) fn poll(&mut self, entry: &EntryRef, cx: &mut Context<'_>) -> Poll<LockError> {
        match self.0 {
            Look::Done => Poll::Pending,
            // The common case, decided without a call.
            Look::NotYet if tokio_drives(cx.waker()) => {
                self.0 = Look::Done;
                Poll::Pending
            }
            _ => self.probe(entry, cx),
        }
    }

    #[cold]
    fn probe(&mut self, entry: &EntryRef, cx: &mut Context<'_>) -> Poll<LockError> {
        if let Look::NotYet = self.0 {
            self.0 = match Probe::start(entry, cx.waker()) {
                Some(p) => Look::Probing(Box::new(p)),
                None => Look::Done,
            };
        }
        let Look::Probing(probe) = &mut self.0 else {
            return Poll::Pending;
        };
        match Pin::new(&mut probe.look).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) if !probe.ran.load(Ordering::Acquire) => {
                Poll::Ready(blocked_driver(entry))
            }
            // Tokio drives this wait (or the timer failed: then nothing is refused).
            Poll::Ready(_) => {
                self.0 = Look::Done;
                Poll::Pending
            }
        }
    }
}

/// Where a wait is with its probe.
enum Look {
    /// Not polled to `Pending` yet.
    NotYet,
    /// The probe runs (boxed: only waits that are not Tokio's own need one).
    Probing(Box<Probe>),
    /// No probe needed (or it ran).
    Done,
}

struct Probe {
    ran: Arc<AtomicBool>,
    look: reactor::Sleep,
}

/// The vtable of Tokio's task wakers, once a probe task has seen one (null before).
static TOKIO_WAKER: AtomicPtr<RawWakerVTable> = AtomicPtr::new(std::ptr::null_mut());

/// Whether `waker` is a Tokio task's: then Tokio drives the wait.
#[inline]
fn tokio_drives(waker: &Waker) -> bool {
    let known = TOKIO_WAKER.load(Ordering::Relaxed);
    !known.is_null() && std::ptr::eq(waker.vtable(), known)
}

/// A no-op task that records Tokio's waker vtable (and sets `ran`, if given).
fn probe_task(ran: Option<Arc<AtomicBool>>) -> impl Future<Output = ()> + Send + 'static {
    std::future::poll_fn(move |cx| {
        let vtable: *const RawWakerVTable = cx.waker().vtable();
        TOKIO_WAKER.store(vtable.cast_mut(), Ordering::Relaxed);
        if let Some(ran) = &ran {
            ran.store(true, Ordering::Release);
        }
        Poll::Ready(())
    })
}

/// Set once a task was spawned to learn Tokio's waker vtable on a multi-thread runtime.
static LEARNING: AtomicBool = AtomicBool::new(false);

impl Probe {
    /// For a wait that has just returned `Pending` to `waker`.
    fn start(entry: &EntryRef, waker: &Waker) -> Option<Probe> {
        if tokio_drives(waker) {
            return None;
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            // No probe needed here; learn the vtable once, so later waits skip even
            // this look at the runtime.
            if TOKIO_WAKER.load(Ordering::Relaxed).is_null()
                && !LEARNING.swap(true, Ordering::Relaxed)
            {
                drop(handle.spawn(probe_task(None)));
            }
            return None;
        }
        stalled_by(entry)?;
        let ran = Arc::new(AtomicBool::new(false));
        drop(handle.spawn(probe_task(Some(ran.clone()))));
        Some(Probe {
            ran,
            look: reactor::sleep_until(Instant::now() + LOOK_AFTER),
        })
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
    let rec = entry.raw.find_record(stalls)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    /// A waker of no executor in particular.
    struct Foreign;
    impl Wake for Foreign {
        fn wake(self: Arc<Self>) {}
    }

    /// With an async holder on this current-thread runtime's thread, a wait polled by a
    /// Tokio task needs no probe once Tokio's waker is known; one polled by any other
    /// waker (a `block_on`'s) still starts one.
    #[test]
    fn only_waits_that_tokio_does_not_drive_are_probed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let entry = crate::registry::entry_for("stall-unit-probe").unwrap();
            let (held_tx, held_rx) = tokio::sync::oneshot::channel();
            let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
            let holder = tokio::spawn(async move {
                let g = crate::acquire("stall-unit-probe").await.unwrap();
                let _ = held_tx.send(());
                let _ = go_rx.await;
                drop(g);
            });
            held_rx.await.unwrap();
            // Learn Tokio's waker the way a probe does.
            tokio::spawn(probe_task(None)).await.unwrap();
            let learnt = TOKIO_WAKER.load(Ordering::Relaxed) as usize;
            assert_ne!(learnt, 0);

            // Another task: driven by Tokio, so not probed — wherever Tokio's task wakers
            // share one vtable (recent releases). Where each task type has its own (Tokio
            // 1.22, the floor without `task-ids`), that task is probed, as before.
            let e = entry.clone();
            let in_task = tokio::spawn(async move {
                std::future::poll_fn(|cx| {
                    let vtable: *const RawWakerVTable = cx.waker().vtable();
                    let probed = Probe::start(&e, cx.waker()).is_some();
                    Poll::Ready((vtable as usize == learnt, probed))
                })
                .await
            });
            let (shared, probed) = in_task.await.unwrap();
            assert_eq!(probed, !shared, "shared vtable {shared}, probed {probed}");

            // With the task's own waker's vtable known, its waits are never probed.
            let e = entry.clone();
            let own = tokio::spawn(async move {
                std::future::poll_fn(|cx| {
                    let vtable: *const RawWakerVTable = cx.waker().vtable();
                    TOKIO_WAKER.store(vtable.cast_mut(), Ordering::Relaxed);
                    Poll::Ready(Probe::start(&e, cx.waker()).is_none())
                })
                .await
            });
            assert!(own.await.unwrap(), "a Tokio-driven wait was probed");

            let foreign = Waker::from(Arc::new(Foreign));
            assert!(
                Probe::start(&entry, &foreign).is_some(),
                "a wait polled by another executor's waker was not probed"
            );
            let _ = go_tx.send(());
            holder.await.unwrap();
        });
    }
}
