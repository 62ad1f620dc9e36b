//! The lock itself: a fair (FIFO) mutex without data, shared by async and blocking
//! callers, with direct hand-off.
//!
//! Direct hand-off means `unlock` never just clears a flag while someone waits: it
//! grants the lock to the head of the queue and wakes exactly that waiter. The lock
//! therefore cannot be barged (FIFO holds), and a wake-up can never be "swallowed":
//! a waiter that is cancelled after being granted passes the grant on itself.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::sync::{
    current_thread, lock, park_until, Arc, AtomicBool, Mutex, Ordering, Thread, ThreadId,
};

/// Grant tokens are unique across all locks of the process, so a token seen once can
/// never be mistaken for a later grant of the same (or a re-allocated) lock.
static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_token() -> u64 {
    NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What one successful acquisition holds: its unique token and when it began.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grant {
    pub(crate) token: u64,
    pub(crate) since: Instant,
}

/// Who holds the lock right now, as far as error messages care.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HolderSnapshot {
    pub(crate) since: Instant,
    pub(crate) thread: Option<ThreadId>,
}

pub(crate) struct RawLock {
    state: Mutex<State>,
    /// Token of the current grant, 0 when free. Written under `state`, read without it by
    /// the re-entry check, which only asks "is *my* grant still the current one" — a
    /// question whose answer cannot change while the asker holds that grant.
    token: crate::sync::AtomicU64,
}

struct State {
    held: Option<Held>,
    queue: VecDeque<Arc<Waiter>>,
}

#[derive(Clone, Copy)]
struct Held {
    since: Instant,
    /// Set for blocking callers, whose call chain is their thread.
    thread: Option<ThreadId>,
}

struct Waiter {
    /// Becomes true exactly once, under the lock's state mutex, when the lock is handed over.
    granted: AtomicBool,
    thread: Option<ThreadId>,
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
            state: Mutex::new(State {
                held: None,
                queue: VecDeque::new(),
            }),
            token: crate::sync::AtomicU64::new(0),
        }
    }

    /// True while some call chain holds the lock.
    pub(crate) fn is_locked(&self) -> bool {
        self.token.load(Ordering::Acquire) != 0
    }

    /// The current grant's token (0 if free).
    pub(crate) fn current_token(&self) -> u64 {
        self.token.load(Ordering::Acquire)
    }

    pub(crate) fn holder(&self) -> Option<HolderSnapshot> {
        let st = lock(&self.state);
        st.held.map(|h| HolderSnapshot {
            since: h.since,
            thread: h.thread,
        })
    }

    fn grant_locked(&self, st: &mut State, thread: Option<ThreadId>) -> Grant {
        let grant = Grant {
            token: next_token(),
            since: Instant::now(),
        };
        st.held = Some(Held {
            since: grant.since,
            thread,
        });
        self.token.store(grant.token, Ordering::Release);
        grant
    }

    /// Takes the lock if it is free and nobody queues for it (no barging past waiters).
    pub(crate) fn try_lock(&self, thread: Option<ThreadId>) -> Result<Grant, Refused> {
        let mut st = lock(&self.state);
        if st.held.is_none() && st.queue.is_empty() {
            return Ok(self.grant_locked(&mut st, thread));
        }
        Err(Self::refusal(&st, thread))
    }

    fn refusal(st: &State, me: Option<ThreadId>) -> Refused {
        match st.held {
            Some(h) => {
                let snap = HolderSnapshot {
                    since: h.since,
                    thread: h.thread,
                };
                if me.is_some() && h.thread == me {
                    Refused::SameThread(snap)
                } else {
                    Refused::Held(Some(snap))
                }
            }
            None => Refused::Held(None),
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
    /// A caller whose own thread already holds the lock is refused at once.
    /// `owner` is the calling thread when the thread is the call chain (recorded, and
    /// checked for re-entry), `None` when the thread is shared by tasks.
    pub(crate) fn lock_blocking(
        &self,
        deadline: Option<Instant>,
        owner: Option<ThreadId>,
    ) -> Result<Grant, Refused> {
        let me = current_thread();
        let waiter = {
            let mut st = lock(&self.state);
            if st.held.is_none() && st.queue.is_empty() {
                return Ok(self.grant_locked(&mut st, owner));
            }
            if let Refused::SameThread(snap) = Self::refusal(&st, owner) {
                return Err(Refused::SameThread(snap));
            }
            let w = Arc::new(Waiter {
                granted: AtomicBool::new(false),
                thread: owner,
                slot: Mutex::new(Slot {
                    wake: Wake::Thread(me),
                    grant: None,
                }),
            });
            st.queue.push_back(w.clone());
            w
        };
        loop {
            if waiter.granted.load(Ordering::Acquire) {
                return Ok(take_grant(&waiter));
            }
            if let Some(d) = deadline {
                if Instant::now() >= d {
                    // Leave the queue, unless the hand-off raced us: then we own the lock.
                    let mut st = lock(&self.state);
                    if waiter.granted.load(Ordering::Acquire) {
                        drop(st);
                        return Ok(take_grant(&waiter));
                    }
                    remove_waiter(&mut st.queue, &waiter);
                    return Err(Self::refusal(&st, None));
                }
            }
            park_until(deadline);
        }
    }

    /// Releases the current grant, handing the lock to the oldest waiter if any.
    pub(crate) fn unlock(&self) {
        let wake = {
            let mut st = lock(&self.state);
            self.hand_off_locked(&mut st)
        };
        wake.wake();
    }

    fn hand_off_locked(&self, st: &mut State) -> Wake {
        match st.queue.pop_front() {
            Some(next) => {
                let grant = self.grant_locked(st, next.thread);
                let mut slot = lock(&next.slot);
                slot.grant = Some(grant);
                next.granted.store(true, Ordering::Release);
                std::mem::replace(&mut slot.wake, Wake::None)
            }
            None => {
                st.held = None;
                self.token.store(0, Ordering::Release);
                Wake::None
            }
        }
    }

    /// Number of queued waiters (for tests and diagnostics).
    #[allow(dead_code)]
    pub(crate) fn waiters(&self) -> usize {
        lock(&self.state).queue.len()
    }
}

fn take_grant(w: &Waiter) -> Grant {
    lock(&w.slot)
        .grant
        .expect("a granted waiter always carries its grant")
}

fn remove_waiter(queue: &mut VecDeque<Arc<Waiter>>, w: &Arc<Waiter>) {
    if let Some(i) = queue.iter().position(|q| Arc::ptr_eq(q, w)) {
        queue.remove(i);
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
                let mut st = lock(&this.lock.state);
                if st.held.is_none() && st.queue.is_empty() {
                    return Poll::Ready(this.lock.grant_locked(&mut st, None));
                }
                let w = Arc::new(Waiter {
                    granted: AtomicBool::new(false),
                    thread: None,
                    slot: Mutex::new(Slot {
                        wake: Wake::Task(cx.waker().clone()),
                        grant: None,
                    }),
                });
                st.queue.push_back(w.clone());
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
            let mut st = lock(&self.lock.state);
            if w.granted.load(Ordering::Acquire) {
                // Handed over but never observed: pass it straight on, so the next
                // waiter gets the wake-up that was meant for us.
                self.lock.hand_off_locked(&mut st)
            } else {
                remove_waiter(&mut st.queue, &w);
                Wake::None
            }
        };
        wake.wake();
    }
}
