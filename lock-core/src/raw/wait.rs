//! Waiting for the lock: the FIFO queue of requests that did not fit, the hand-off to
//! them, and the two ways to wait (a future, or a parked thread).

#[cfg(test)]
use std::future::Future;
#[cfg(test)]
use std::pin::Pin;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::{Grant, Queue, RawLock, Refused};
use crate::mode::Mode;
use crate::owner::Facts;
use crate::sync::{current_thread, lock, park_until, Arc, AtomicU64, Ordering, Thread};

/// A request's place in the queue. Its wake-up lives here, under the queue mutex that
/// every hand-off holds anyway, so a waiter needs no lock of its own.
pub(crate) struct Queued {
    pub(super) waiter: Arc<Waiter>,
    pub(super) wake: Wake,
    pub(super) mode: Mode,
    pub(super) facts: Facts,
}

/// What a waiter shares with whoever hands the lock to it.
pub(crate) struct Waiter {
    /// The grant id, set exactly once, under the queue mutex, at the hand-off (0 until
    /// then; ids are never 0).
    id: AtomicU64,
    /// The grant's time (coarse clock), written before `id`.
    since: StdAtomicU64,
}

impl Waiter {
    /// A fresh waiter, reusing the calling thread's spare allocation if it has one: under
    /// contention every wait would otherwise allocate and free one.
    fn new() -> Arc<Waiter> {
        #[cfg(not(loom))]
        if let Ok(Some(mut spare)) = SPARE_WAITER.try_with(std::cell::Cell::take) {
            if let Some(w) = Arc::get_mut(&mut spare) {
                *w.id.get_mut() = 0;
                return spare;
            }
        }
        Arc::new(Waiter {
            id: AtomicU64::new(0),
            since: StdAtomicU64::new(0),
        })
    }

    /// Keeps a finished waiter as the thread's spare, if nobody else refers to it.
    fn recycle(w: Arc<Waiter>) {
        #[cfg(not(loom))]
        if Arc::strong_count(&w) == 1 {
            let _ = SPARE_WAITER.try_with(move |s| s.set(Some(w)));
        }
        #[cfg(loom)]
        drop(w);
    }

    /// Under the queue mutex: hands `grant` to this waiter.
    pub(super) fn hand(&self, grant: Grant) {
        self.since
            .store(grant.since, std::sync::atomic::Ordering::Relaxed);
        self.id.store(grant.id, Ordering::Release);
    }

    /// The grant, once handed over.
    fn grant(&self, mode: Mode) -> Option<Grant> {
        match self.id.load(Ordering::Acquire) {
            0 => None,
            id => Some(Grant {
                id,
                since: self.since.load(std::sync::atomic::Ordering::Relaxed),
                mode,
            }),
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    static SPARE_WAITER: std::cell::Cell<Option<Arc<Waiter>>> = const { std::cell::Cell::new(None) };
}

pub(crate) enum Wake {
    Task(Waker),
    Thread(Thread),
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::Task(w) => w.wake(),
            Wake::Thread(t) => t.unpark(),
        }
    }
}

/// Wake-ups collected under the queue mutex and delivered after it is released. A hand-off
/// wakes one waiter, or a batch of shared ones; a few fit inline.
#[derive(Default)]
pub(crate) struct Wakes {
    /// How many of `inline` are filled (from the front).
    n: usize,
    inline: [Option<Wake>; 4],
    spill: Vec<Wake>,
}

impl Wakes {
    pub(super) fn push(&mut self, w: Wake) {
        match self.inline.get_mut(self.n) {
            Some(slot) => {
                *slot = Some(w);
                self.n += 1;
            }
            None => self.spill.push(w),
        }
    }

    pub(crate) fn wake_all(mut self) {
        for slot in &mut self.inline[..self.n] {
            if let Some(w) = slot.take() {
                w.wake();
            }
        }
        if !self.spill.is_empty() {
            for w in std::mem::take(&mut self.spill) {
                w.wake();
            }
        }
    }
}

impl RawLock {
    /// Waits for the lock in FIFO order (see [`Waiting`]), as a future that borrows the
    /// lock: for tests and the loom model; the pipeline owns its entry and drives a
    /// [`Waiting`] itself.
    #[cfg(test)]
    pub(crate) fn lock_async(&self, mode: Mode, facts: Facts) -> Acquire<'_> {
        Acquire {
            lock: self,
            mode,
            facts,
            waiting: Waiting::new(),
        }
    }

    /// Blocks the thread until the lock is granted or `deadline` passes
    /// (`Err(Refused::Held)` then). `slow`, if given, is called once if the wait is still
    /// running at its instant (for the slow-wait report).
    pub(crate) fn lock_blocking(
        &self,
        mode: Mode,
        facts: &Facts,
        deadline: Option<Instant>,
        mut slow: Option<(Instant, &mut dyn FnMut())>,
    ) -> Result<Grant, Refused> {
        let waiter = {
            let mut q = lock(&self.queue);
            if let Some(grant) = self.lock_or_enqueue(&mut q, mode, facts)? {
                return Ok(grant);
            }
            let w = Waiter::new();
            q.waiters.push_back(Queued {
                waiter: w.clone(),
                wake: Wake::Thread(current_thread()),
                mode,
                facts: *facts,
            });
            w
        };
        loop {
            if let Some(grant) = waiter.grant(mode) {
                Waiter::recycle(waiter);
                return Ok(grant);
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    // Leave the queue, unless the hand-off raced us: then we own the lock.
                    let wakes = {
                        let mut q = lock(&self.queue);
                        if let Some(grant) = waiter.grant(mode) {
                            drop(q);
                            Waiter::recycle(waiter);
                            return Ok(grant);
                        }
                        self.remove(&mut q, &waiter)
                    };
                    wakes.wake_all();
                    return Err(Refused::Held);
                }
            }
            let wake_at = match &slow {
                Some((at, _)) => Some(deadline.map_or(*at, |d| d.min(*at))),
                None => deadline,
            };
            park_until(wake_at);
            if slow.as_ref().is_some_and(|(at, _)| Instant::now() >= *at) {
                if let Some((_, report)) = slow.take() {
                    report();
                }
            }
        }
    }

    /// Under the queue mutex: takes `w` out of the queue and grants whoever now fits.
    fn remove(&self, q: &mut Queue, w: &Arc<Waiter>) -> Wakes {
        if let Some(i) = q.waiters.iter().position(|x| Arc::ptr_eq(&x.waiter, w)) {
            q.waiters.remove(i);
        }
        self.after_leaving(q)
    }
}

/// One request's wait for a lock, as plain state: whoever owns it passes the lock to
/// each step, so a future can own the lock's entry and its wait side by side (no
/// self-reference). Cancel-safe as long as the owner calls [`Waiting::cancel`] when it
/// gives up (on drop): that leaves the queue at once, and gives the lock back if it had
/// already been handed over. Callers make their lock-free attempt first
/// ([`RawLock::try_lock`]); the first poll takes the lock under the queue mutex if it
/// has been freed since.
pub(crate) struct Waiting {
    waiter: Option<Arc<Waiter>>,
}

impl Waiting {
    pub(crate) const fn new() -> Waiting {
        Waiting { waiter: None }
    }

    /// Polls the wait for `raw` in `mode` with `facts` (always the same three).
    pub(crate) fn poll(
        &mut self,
        raw: &RawLock,
        mode: Mode,
        facts: &Facts,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Grant, Refused>> {
        match &self.waiter {
            None => {
                let mut q = lock(&raw.queue);
                match raw.lock_or_enqueue(&mut q, mode, facts) {
                    Ok(Some(grant)) => return Poll::Ready(Ok(grant)),
                    Err(r) => return Poll::Ready(Err(r)),
                    Ok(None) => {}
                }
                let w = Waiter::new();
                q.waiters.push_back(Queued {
                    waiter: w.clone(),
                    wake: Wake::Task(cx.waker().clone()),
                    mode,
                    facts: *facts,
                });
                self.waiter = Some(w);
                Poll::Pending
            }
            Some(w) => {
                if let Some(grant) = w.grant(mode) {
                    self.finish();
                    return Poll::Ready(Ok(grant));
                }
                // Polled again before the hand-off (a spurious or foreign wake-up): make
                // sure the hand-off wakes the task's current waker.
                let mut q = lock(&raw.queue);
                if let Some(grant) = w.grant(mode) {
                    drop(q);
                    self.finish();
                    return Poll::Ready(Ok(grant));
                }
                if let Some(me) = q.waiters.iter_mut().find(|x| Arc::ptr_eq(&x.waiter, w)) {
                    match &mut me.wake {
                        Wake::Task(old) if old.will_wake(cx.waker()) => {}
                        other => *other = Wake::Task(cx.waker().clone()),
                    }
                }
                Poll::Pending
            }
        }
    }

    /// After the grant was observed: nothing left to undo.
    fn finish(&mut self) {
        if let Some(w) = self.waiter.take() {
            Waiter::recycle(w);
        }
    }

    /// Gives up the wait for `raw` in `mode`: leaves its queue, or gives back a grant
    /// handed over but never observed, through the release path, so whoever fits next
    /// gets the wake-up that was meant for us. Does nothing if the wait never queued or
    /// has finished.
    pub(crate) fn cancel(&mut self, raw: &RawLock, mode: Mode) {
        let Some(w) = self.waiter.take() else { return };
        let wakes = {
            let mut q = lock(&raw.queue);
            match w.grant(mode) {
                Some(grant) => raw.release_locked(&mut q, &grant),
                None => raw.remove(&mut q, &w),
            }
        };
        wakes.wake_all();
    }
}

/// Future returned by [`RawLock::lock_async`].
#[cfg(test)]
pub(crate) struct Acquire<'a> {
    lock: &'a RawLock,
    mode: Mode,
    facts: Facts,
    waiting: Waiting,
}

#[cfg(test)]
impl Future for Acquire<'_> {
    type Output = Result<Grant, Refused>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.waiting.poll(this.lock, this.mode, &this.facts, cx)
    }
}

#[cfg(test)]
impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        self.waiting.cancel(self.lock, self.mode);
    }
}
