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

use crate::sync::{
    current_thread, lock, park_until, Arc, AtomicBool, AtomicU64, Mutex, Ordering, Thread,
};

use std::sync::atomic::AtomicU64 as StdAtomicU64;

const CONTENDED: u64 = 1 << 63;

/// Grant tokens are unique across all locks of the process, so a token seen once can
/// never be mistaken for a later grant of the same (or a re-allocated) lock. Threads
/// take them in blocks so the hot path does not share a cache line.
static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
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

/// What one successful acquisition holds: its unique token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grant {
    pub(crate) token: u64,
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
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    /// Facts about the current grant, for diagnostics and thread re-entry checks. They
    /// are valid only while `owner_token` equals the token in `state`: the granter
    /// writes them first and `owner_token` last. Not part of the exclusion protocol,
    /// so they stay std atomics (outside the loom model) under `--cfg loom` too.
    owner_thread: StdAtomicU64,
    owner_since: StdAtomicU64,
    owner_token: StdAtomicU64,
}

struct Waiter {
    /// Becomes true exactly once, under the queue mutex, when the lock is handed over.
    granted: AtomicBool,
    /// Thread key of a blocking waiter whose thread is its call chain, else 0.
    thread: u64,
    slot: Mutex<Slot>,
}

struct Slot {
    wake: Wake,
    grant: Option<Grant>,
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
        self.owner_thread.store(thread, Ordering::Relaxed);
        self.owner_since
            .store(crate::clock::coarse_nanos(), Ordering::Relaxed);
        self.owner_token.store(token, Ordering::Release);
        Grant { token }
    }

    /// Takes the lock if it is free and nobody queues for it (no barging past waiters).
    /// `thread` is the caller's thread key when its thread is its call chain, else 0.
    #[inline]
    pub(crate) fn try_lock(&self, thread: u64) -> Result<Grant, Refused> {
        let token = next_token();
        match self
            .state
            .compare_exchange(0, token, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Ok(self.publish(token, thread)),
            Err(s) => Err(self.refusal_cold(s, thread)),
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
            if let Refused::SameThread(snap) = self.refusal(s, owner) {
                self.leave_queue(&mut q, None);
                return Err(Refused::SameThread(snap));
            }
            let w = Arc::new(Waiter {
                granted: AtomicBool::new(false),
                thread: owner,
                slot: Mutex::new(Slot {
                    wake: Wake::Thread(current_thread()),
                    grant: None,
                }),
            });
            q.push_back(w.clone());
            w
        };
        loop {
            if waiter.granted.load(Ordering::Acquire) {
                return Ok(take_grant(&waiter));
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    // Leave the queue, unless the hand-off raced us: then we own the lock.
                    let mut q = lock(&self.queue);
                    if waiter.granted.load(Ordering::Acquire) {
                        drop(q);
                        return Ok(take_grant(&waiter));
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
    fn leave_queue(&self, q: &mut VecDeque<Arc<Waiter>>, w: Option<&Arc<Waiter>>) {
        if let Some(w) = w {
            if let Some(i) = q.iter().position(|x| Arc::ptr_eq(x, w)) {
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
    fn hand_off_locked(&self, q: &mut VecDeque<Arc<Waiter>>) -> Wake {
        match q.pop_front() {
            Some(next) => {
                let token = next_token();
                let grant = self.publish(token, next.thread);
                let contended = if q.is_empty() { 0 } else { CONTENDED };
                self.state.store(token | contended, Ordering::Release);
                let mut slot = lock(&next.slot);
                slot.grant = Some(grant);
                next.granted.store(true, Ordering::Release);
                std::mem::replace(&mut slot.wake, Wake::None)
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

fn take_grant(w: &Waiter) -> Grant {
    lock(&w.slot)
        .grant
        .expect("a granted waiter always carries its grant")
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
                if let Ok(grant) = this.lock.try_lock(0) {
                    return Poll::Ready(grant);
                }
                let mut q = lock(&this.lock.queue);
                if let Ok(grant) = this.lock.lock_or_enqueue(0) {
                    return Poll::Ready(grant);
                }
                let w = Arc::new(Waiter {
                    granted: AtomicBool::new(false),
                    thread: 0,
                    slot: Mutex::new(Slot {
                        wake: Wake::Task(cx.waker().clone()),
                        grant: None,
                    }),
                });
                q.push_back(w.clone());
                this.waiter = Some(w);
                Poll::Pending
            }
            Some(w) => {
                let mut slot = lock(&w.slot);
                if let Some(grant) = slot.grant {
                    drop(slot);
                    this.waiter = None;
                    return Poll::Ready(grant);
                }
                match &mut slot.wake {
                    Wake::Task(old) if old.will_wake(cx.waker()) => {}
                    other => *other = Wake::Task(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        let Some(w) = self.waiter.take() else { return };
        let wake = {
            let mut q = lock(&self.lock.queue);
            if w.granted.load(Ordering::Acquire) {
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
