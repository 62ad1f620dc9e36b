//! The lock itself: a fair (FIFO) mutex without data, shared by async and blocking
//! callers, with an atomic fast path and direct hand-off.
//!
//! `state` holds the current grant's token (0 when free) plus a `CONTENDED` bit that is
//! set, under the queue mutex, while anyone queues. So:
//!
//! * an uncontended acquire is one compare-and-swap `0 -> token`, and an uncontended
//!   release one compare-and-swap `token -> 0`; neither touches the mutex;
//! * with `CONTENDED` set, no compare-and-swap can succeed, so everything that changes
//!   `state` then holds the queue mutex;
//! * a release that finds `CONTENDED` grants the lock to the head of the queue and wakes
//!   exactly that waiter (direct hand-off). The lock therefore cannot be barged (FIFO
//!   holds), and no wake-up can be "swallowed": a waiter that is cancelled after being
//!   granted passes the grant on itself.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::{current_thread, lock, park_until, Arc, AtomicU64, Mutex, Ordering, Thread};

use std::sync::atomic::AtomicU64 as StdAtomicU64;

const CONTENDED: u64 = 1 << 63;

/// Grant tokens are unique across all locks of the process, so a token seen once can
/// never be mistaken for a later grant of the same (or a re-allocated) lock. Threads
/// take them in blocks so the hot path does not share a cache line.
static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
#[cfg(not(loom))]
const TOKEN_BLOCK: u64 = 1024;

#[cfg(not(loom))]
#[inline]
fn next_token() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static BLOCK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    let from_block = BLOCK.try_with(|b| {
        let (next, end) = b.get();
        if next < end {
            b.set((next + 1, end));
            next
        } else {
            let start = NEXT_TOKEN.fetch_add(TOKEN_BLOCK, std::sync::atomic::Ordering::Relaxed);
            b.set((start + 1, start + TOKEN_BLOCK));
            start
        }
    });
    // During thread teardown the block is gone; take a single token instead.
    from_block.unwrap_or_else(|_| NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

#[cfg(loom)]
fn next_token() -> u64 {
    NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A small number naming the calling thread (never 0), cheaper than `ThreadId`.
pub(crate) fn thread_key() -> u64 {
    use std::cell::Cell;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local! {
        static KEY: Cell<u64> = const { Cell::new(0) };
    }
    KEY.try_with(|k| {
        if k.get() == 0 {
            k.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        }
        k.get()
    })
    .unwrap_or(u64::MAX)
}

/// What one successful acquisition holds: its unique token, and when it was granted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grant {
    pub(crate) token: u64,
    /// The coarse clock at the grant (see the `clock` module).
    pub(crate) since: u64,
}

/// Who holds the lock right now, as far as error messages care.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HolderSnapshot {
    /// How long it has been held (coarse: a few ms of resolution).
    pub(crate) held: Duration,
    /// The holding thread's key, for blocking holders whose call chain is their thread.
    pub(crate) thread: Option<u64>,
}

pub(crate) struct RawLock {
    state: AtomicU64,
    queue: Mutex<VecDeque<Queued>>,
    /// Facts about the current grant, for diagnostics and thread re-entry checks. They
    /// are valid only while `owner_token` equals the token in `state`: the granter
    /// writes them first and `owner_token` last. Not part of the exclusion protocol,
    /// so they stay std atomics (outside the loom model) under `--cfg loom` too.
    owner_thread: StdAtomicU64,
    owner_since: StdAtomicU64,
    owner_token: StdAtomicU64,
}

/// A waiter's place in the queue. Its wake-up lives here, under the queue mutex that
/// every hand-off holds anyway, so a waiter needs no lock of its own.
struct Queued {
    waiter: Arc<Waiter>,
    wake: Wake,
}

/// What a waiter shares with whoever hands the lock to it.
struct Waiter {
    /// The granted token: set exactly once, under the queue mutex, when the lock is
    /// handed over (0 until then; tokens are never 0).
    token: AtomicU64,
    /// The grant's time (coarse clock), written before `token`.
    since: StdAtomicU64,
    /// Thread key of a blocking waiter whose thread is its call chain, else 0.
    thread: u64,
}

impl Waiter {
    /// A waiter for `thread`, reusing the calling thread's spare allocation if it has
    /// one: under contention every wait would otherwise allocate and free one.
    fn new(thread: u64) -> Arc<Waiter> {
        #[cfg(not(loom))]
        if let Ok(Some(mut spare)) = SPARE_WAITER.try_with(std::cell::Cell::take) {
            if let Some(w) = Arc::get_mut(&mut spare) {
                *w.token.get_mut() = 0;
                w.thread = thread;
                return spare;
            }
        }
        Arc::new(Waiter {
            token: AtomicU64::new(0),
            since: StdAtomicU64::new(0),
            thread,
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

    /// The grant, once handed over.
    fn grant(&self) -> Option<Grant> {
        match self.token.load(Ordering::Acquire) {
            0 => None,
            token => Some(Grant {
                token,
                since: self.since.load(Ordering::Relaxed),
            }),
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    static SPARE_WAITER: std::cell::Cell<Option<Arc<Waiter>>> = const { std::cell::Cell::new(None) };
}

enum Wake {
    None,
    Task(Waker),
    Thread(Thread),
}

/// Why an attempt did not get the lock.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Held (or queued for) by someone else.
    Held(Option<HolderSnapshot>),
    /// Held by the calling thread itself.
    SameThread(HolderSnapshot),
}

impl RawLock {
    pub(crate) fn new() -> Self {
        RawLock {
            state: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
            owner_thread: StdAtomicU64::new(0),
            owner_since: StdAtomicU64::new(0),
            owner_token: StdAtomicU64::new(0),
        }
    }

    /// True while some call chain holds the lock.
    pub(crate) fn is_locked(&self) -> bool {
        self.current_token() != 0
    }

    /// The current grant's token (0 if free).
    #[inline]
    pub(crate) fn current_token(&self) -> u64 {
        self.state.load(Ordering::Acquire) & !CONTENDED
    }

    pub(crate) fn holder(&self) -> Option<HolderSnapshot> {
        self.snapshot(self.current_token())
    }

    fn snapshot(&self, token: u64) -> Option<HolderSnapshot> {
        if token == 0 || self.owner_token.load(Ordering::Acquire) != token {
            return None;
        }
        let thread = self.owner_thread.load(Ordering::Relaxed);
        let since = self.owner_since.load(Ordering::Relaxed);
        // Re-check: the facts belong to `token` only if it is still the published grant.
        if self.owner_token.load(Ordering::Acquire) != token {
            return None;
        }
        Some(HolderSnapshot {
            held: crate::clock::since(since),
            thread: (thread != 0).then_some(thread),
        })
    }

    #[inline]
    fn publish(&self, token: u64, thread: u64) -> Grant {
        let since = crate::clock::coarse_nanos();
        self.owner_thread.store(thread, Ordering::Relaxed);
        self.owner_since.store(since, Ordering::Relaxed);
        self.owner_token.store(token, Ordering::Release);
        Grant { token, since }
    }

    /// Takes the lock if it is free and nobody queues for it (no barging past waiters).
    /// `thread` is the caller's thread key when its thread is its call chain, else 0.
    #[inline]
    pub(crate) fn try_lock(&self, thread: u64) -> Result<Grant, Refused> {
        self.try_grant(thread)
            .map_err(|s| self.refusal_cold(s, thread))
    }

    /// [`try_lock`](Self::try_lock) for callers that wait when refused: the holder's
    /// facts are gathered only to tell a blocking thread that holds the lock itself
    /// (`thread != 0`), never for a `Held` refusal, whose snapshot they would discard.
    #[inline]
    pub(crate) fn try_lock_or_wait(&self, thread: u64) -> Result<Grant, Refused> {
        self.try_grant(thread).map_err(|s| match thread {
            0 => Refused::Held(None),
            _ => self.refusal_cold(s, thread),
        })
    }

    /// The one compare-and-swap of the fast path: the grant, or the state that refused it.
    #[inline]
    fn try_grant(&self, thread: u64) -> Result<Grant, u64> {
        let token = next_token();
        match self
            .state
            .compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Ok(self.publish(token, thread)),
            Err(s) => Err(s),
        }
    }

    #[cold]
    #[inline(never)]
    fn refusal_cold(&self, state: u64, me: u64) -> Refused {
        self.refusal(state, me)
    }

    fn refusal(&self, state: u64, me: u64) -> Refused {
        match self.snapshot(state & !CONTENDED) {
            Some(snap) if me != 0 && snap.thread == Some(me) => Refused::SameThread(snap),
            snap => Refused::Held(snap),
        }
    }

    /// Under the queue mutex: takes the lock if free, else marks it contended so the
    /// holder's release comes through the queue. Returns the grant or the state seen.
    fn lock_or_enqueue(&self, thread: u64) -> Result<Grant, u64> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s == 0 {
                let token = next_token();
                match self
                    .state
                    .compare_exchange(0, token, Ordering::Acquire, Ordering::Acquire)
                {
                    Ok(_) => return Ok(self.publish(token, thread)),
                    Err(now) => s = now,
                }
            } else if s & CONTENDED != 0 {
                return Err(s);
            } else {
                match self.state.compare_exchange(
                    s,
                    s | CONTENDED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Err(s | CONTENDED),
                    Err(now) => s = now,
                }
            }
        }
    }

    /// Waits for the lock in FIFO order. Cancel-safe: dropping the future leaves the
    /// queue at once, and passes the lock on if it had already been handed over.
    /// Callers make their lock-free attempt first ([`try_lock_or_wait`]); the first poll
    /// takes the lock under the queue mutex if it has been freed since.
    ///
    /// [`try_lock_or_wait`]: Self::try_lock_or_wait
    pub(crate) fn lock_async(&self) -> Acquire<'_> {
        Acquire {
            lock: self,
            waiter: None,
        }
    }

    /// Blocks the thread until the lock is granted or `deadline` passes.
    /// `owner` is the calling thread's key when the thread is the call chain (recorded,
    /// and checked for re-entry), 0 when the thread is shared by tasks.
    pub(crate) fn lock_blocking(
        &self,
        deadline: Option<Instant>,
        owner: u64,
    ) -> Result<Grant, Refused> {
        let waiter = {
            let mut q = lock(&self.queue);
            let s = match self.lock_or_enqueue(owner) {
                Ok(grant) => return Ok(grant),
                Err(s) => s,
            };
            // Only a thread that is its own call chain can be refused as the holder.
            if owner != 0 {
                if let Refused::SameThread(snap) = self.refusal(s, owner) {
                    self.leave_queue(&mut q, None);
                    return Err(Refused::SameThread(snap));
                }
            }
            let w = Waiter::new(owner);
            q.push_back(Queued {
                waiter: w.clone(),
                wake: Wake::Thread(current_thread()),
            });
            w
        };
        loop {
            if let Some(grant) = waiter.grant() {
                Waiter::recycle(waiter);
                return Ok(grant);
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    // Leave the queue, unless the hand-off raced us: then we own the lock.
                    let mut q = lock(&self.queue);
                    if let Some(grant) = waiter.grant() {
                        drop(q);
                        Waiter::recycle(waiter);
                        return Ok(grant);
                    }
                    self.leave_queue(&mut q, Some(&waiter));
                    return Err(Refused::Held(self.holder()));
                }
            }
            park_until(deadline);
        }
    }

    /// Under the queue mutex: removes `w` (if given) and clears `CONTENDED` once nobody
    /// queues any more. Only queue-mutex holders change `state` while it is set, so the
    /// `fetch_and` cannot race a grant.
    fn leave_queue(&self, q: &mut VecDeque<Queued>, w: Option<&Arc<Waiter>>) {
        if let Some(w) = w {
            if let Some(i) = q.iter().position(|x| Arc::ptr_eq(&x.waiter, w)) {
                q.remove(i);
            }
        }
        if q.is_empty() {
            self.state.fetch_and(!CONTENDED, Ordering::AcqRel);
        }
    }

    /// Releases the grant `token`, handing the lock to the oldest waiter if any.
    #[inline]
    pub(crate) fn unlock(&self, token: u64) {
        if self
            .state
            .compare_exchange(token, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.unlock_slow();
    }

    #[cold]
    #[inline(never)]
    fn unlock_slow(&self) {
        let wake = {
            let mut q = lock(&self.queue);
            self.hand_off_locked(&mut q)
        };
        wake.wake();
    }

    /// Under the queue mutex: passes the current grant to the head of the queue, or
    /// frees the lock if nobody waits.
    fn hand_off_locked(&self, q: &mut VecDeque<Queued>) -> Wake {
        match q.pop_front() {
            Some(Queued { waiter, wake }) => {
                let token = next_token();
                let grant = self.publish(token, waiter.thread);
                let contended = if q.is_empty() { 0 } else { CONTENDED };
                self.state.store(token | contended, Ordering::Release);
                waiter.since.store(grant.since, Ordering::Relaxed);
                waiter.token.store(token, Ordering::Release);
                wake
            }
            None => {
                self.state.store(0, Ordering::Release);
                Wake::None
            }
        }
    }

    /// Number of queued waiters (for tests and diagnostics).
    #[allow(dead_code)]
    pub(crate) fn waiters(&self) -> usize {
        lock(&self.queue).len()
    }
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::None => {}
            Wake::Task(w) => w.wake(),
            Wake::Thread(t) => t.unpark(),
        }
    }
}

/// Future returned by [`RawLock::lock_async`].
pub(crate) struct Acquire<'a> {
    lock: &'a RawLock,
    waiter: Option<Arc<Waiter>>,
}

impl Future for Acquire<'_> {
    type Output = Grant;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Grant> {
        let this = &mut *self;
        match &this.waiter {
            None => {
                let mut q = lock(&this.lock.queue);
                if let Ok(grant) = this.lock.lock_or_enqueue(0) {
                    return Poll::Ready(grant);
                }
                let w = Waiter::new(0);
                q.push_back(Queued {
                    waiter: w.clone(),
                    wake: Wake::Task(cx.waker().clone()),
                });
                this.waiter = Some(w);
                Poll::Pending
            }
            Some(w) => {
                if let Some(grant) = w.grant() {
                    this.finish();
                    return Poll::Ready(grant);
                }
                // Polled again before the hand-off (a spurious or foreign wake-up): make
                // sure the hand-off wakes the task's current waker.
                let mut q = lock(&this.lock.queue);
                if let Some(grant) = w.grant() {
                    drop(q);
                    this.finish();
                    return Poll::Ready(grant);
                }
                if let Some(me) = q.iter_mut().find(|x| Arc::ptr_eq(&x.waiter, w)) {
                    match &mut me.wake {
                        Wake::Task(old) if old.will_wake(cx.waker()) => {}
                        other => *other = Wake::Task(cx.waker().clone()),
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Acquire<'_> {
    /// After the grant was observed: nothing left to undo on drop.
    fn finish(&mut self) {
        if let Some(w) = self.waiter.take() {
            Waiter::recycle(w);
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        let Some(w) = self.waiter.take() else { return };
        let wake = {
            let mut q = lock(&self.lock.queue);
            if w.grant().is_some() {
                // Handed over but never observed: pass it straight on, so the next
                // waiter gets the wake-up that was meant for us.
                self.lock.hand_off_locked(&mut q)
            } else {
                self.lock.leave_queue(&mut q, Some(&w));
                Wake::None
            }
        };
        wake.wake();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake as TaskWake;

    /// A waker that counts its wake-ups.
    struct Counter(AtomicUsize);

    impl TaskWake for Counter {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn counting() -> (std::sync::Arc<Counter>, Waker) {
        let c = std::sync::Arc::new(Counter(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn wakes(c: &Counter) -> usize {
        c.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn a_re_polled_waiter_is_woken_through_its_latest_waker() {
        let lock = RawLock::new();
        let held = lock.try_lock(0).unwrap();
        let mut fut = Box::pin(lock.lock_async());
        let (first, w1) = counting();
        let (second, w2) = counting();
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(&w1))
            .is_pending());
        // Moved to another task (e.g. inside a `select!`): the hand-off must wake this one.
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(&w2))
            .is_pending());
        assert_eq!(lock.waiters(), 1, "re-polling must not queue twice");
        lock.unlock(held.token);
        assert_eq!((wakes(&first), wakes(&second)), (0, 1));
        let Poll::Ready(grant) = fut.as_mut().poll(&mut Context::from_waker(&w2)) else {
            panic!("granted waiter must be ready");
        };
        assert_eq!(lock.current_token(), grant.token);
        drop(fut);
        lock.unlock(grant.token);
        assert!(!lock.is_locked());
    }

    #[test]
    fn waiters_are_recycled_without_leaking_a_grant() {
        // The same thread waits many times; each wait reuses the spare waiter, and a
        // recycled waiter must start ungranted (else it would skip the queue).
        let lock = RawLock::new();
        for _ in 0..100 {
            let held = lock.try_lock(0).unwrap();
            let (woken, w) = counting();
            let mut fut = Box::pin(lock.lock_async());
            assert!(fut.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
            assert!(
                fut.as_mut().poll(&mut Context::from_waker(&w)).is_pending(),
                "not granted before the release"
            );
            lock.unlock(held.token);
            assert_eq!(wakes(&woken), 1);
            let Poll::Ready(grant) = fut.as_mut().poll(&mut Context::from_waker(&w)) else {
                panic!("granted waiter must be ready");
            };
            drop(fut);
            lock.unlock(grant.token);
        }
        assert!(!lock.is_locked());
        assert_eq!(lock.waiters(), 0);
    }
}
