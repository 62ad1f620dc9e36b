//! The lock itself: one fair (FIFO) acquire pipeline for every shape — exclusive,
//! shared and counted — shared by async and blocking callers, with an atomic fast path
//! and direct hand-off.
//!
//! The state word packs, from the top: a `CONTENDED` bit (set, under the queue mutex,
//! while anyone queues), an `EXCLUSIVE` bit, the lock's permit count (0 for a
//! reader/writer lock, `N` for a counted lock) and the number of shared or counted holders.
//! Shapes are weights in one semaphore, as in tokio's `sync` module: an exclusive request
//! needs the lock empty, a shared one needs it not exclusive, a counted one needs fewer
//! than `N` holders. So:
//!
//! * an uncontended acquire is one compare-and-swap, and so is its release; neither
//!   touches the mutex;
//! * with `CONTENDED` set no fast path succeeds, so everything that changes the state
//!   then holds the queue mutex: waiters cannot be barged, and a shared request that
//!   arrives after a waiting exclusive one queues behind it (FIFO across modes: neither
//!   side starves);
//! * a release that finds `CONTENDED` grants the lock to the head of the queue — and to as
//!   many following waiters as fit beside it (a batch of shared waiters) — and wakes
//!   exactly those. No wake-up can be swallowed: a waiter that is cancelled after being
//!   granted gives its grant back through the same path.
//!
//! The kind (reader/writer or counted with `N`) lives in the state word while anyone
//! holds or waits, so a request of another kind is refused atomically
//! ([`Refused::Mismatch`]), and the kind is forgotten when the lock is empty.
//!
//! Who holds the lock is recorded beside the state (see [`holders`]), for diagnostics and
//! re-entry checks only.
//!
//! Here: the lock, its attempts, grants and releases. Beside it: the state word's rules
//! (`state`), what a grant is (`grant`), the holder records ([`holders`]), the queue and
//! the two ways to wait (`wait`), and the readers for diagnostics (`read`).

mod grant;
mod holders;
mod read;
mod state;
mod wait;

use std::collections::VecDeque;

use crate::mode::{Kind, Mode};
use crate::owner::Facts;
use crate::sync::{lock, AtomicU64, Mutex, Ordering};

use grant::{grant_time, next_token};
pub(crate) use grant::{Grant, Refused};
pub(crate) use holders::Record;
use holders::{slot_of, Holders, OVERFLOW};
use state::{admit, count, is_held, kind, leave, Admit, CONTENDED, EXCLUSIVE, SHAPE};
pub(crate) use wait::Waiting;
use wait::{Queued, Wakes};

pub(crate) struct RawLock {
    state: AtomicU64,
    queue: Mutex<Queue>,
    holders: Holders,
}

/// What the queue mutex protects.
pub(crate) struct Queue {
    waiters: VecDeque<Queued>,
    /// Records of holders beyond the inline slots.
    overflow: Vec<Record>,
}

impl RawLock {
    pub(crate) fn new() -> Self {
        RawLock {
            state: AtomicU64::new(0),
            queue: Mutex::new(Queue {
                waiters: VecDeque::new(),
                overflow: Vec::new(),
            }),
            holders: Holders::default(),
        }
    }

    /// True while anyone holds the lock, in any mode.
    pub(crate) fn is_locked(&self) -> bool {
        is_held(self.state.load(Ordering::Acquire))
    }

    /// True while shared or counted holders hold it (a new shared or counted request
    /// would join them).
    #[inline]
    pub(crate) fn has_sharers(&self) -> bool {
        count(self.state.load(Ordering::Relaxed)) != 0
    }

    /// The kind and the number of holders right now (`None` if free).
    pub(crate) fn shape(&self) -> Option<(Kind, Mode, usize)> {
        let s = self.state.load(Ordering::Acquire);
        if !is_held(s) {
            return None;
        }
        let k = kind(s);
        let mode = match k {
            Kind::Counted(n) => Mode::Permits(n),
            Kind::ReadWrite if s & EXCLUSIVE != 0 => Mode::Exclusive,
            Kind::ReadWrite => Mode::Shared,
        };
        let n = if s & EXCLUSIVE != 0 {
            1
        } else {
            count(s) as usize
        };
        Some((k, mode, n))
    }

    /// The refusal for a request that saw state `s`.
    #[cold]
    fn refusal(&self, s: u64, mode: Mode) -> Refused {
        match admit(s, mode) {
            Admit::Mismatch => Refused::Mismatch(kind(s)),
            _ => Refused::Held,
        }
    }

    /// Takes the lock if `mode` fits right now and nobody queues (no barging past
    /// waiters).
    #[inline(always)]
    pub(crate) fn try_lock(&self, mode: Mode, facts: &Facts) -> Result<Grant, Refused> {
        if let Mode::Exclusive = mode {
            return match self.state.compare_exchange(
                0,
                EXCLUSIVE,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => Ok(self.grant_first(Mode::Exclusive, facts)),
                Err(s) => Err(self.refusal(s, mode)),
            };
        }
        self.try_share(mode, facts)
    }

    /// A shared request that joins current shared holders even ahead of queued waiters
    /// (`readers_first`): granted if the lock is held shared right now, whoever queues;
    /// `None` if it is free, held exclusively or counted (the caller then asks the usual
    /// way). Barging past waiters happens under the queue mutex, which every change of a
    /// contended state holds.
    pub(crate) fn try_join_shared(&self, facts: &Facts) -> Option<Grant> {
        let s = self.state.load(Ordering::Acquire);
        if s & (EXCLUSIVE | SHAPE) != 0 || count(s) == 0 {
            return None;
        }
        if s & CONTENDED == 0 {
            if let Ok(g) = self.try_share(Mode::Shared, facts) {
                return Some(g);
            }
        }
        let mut q = lock(&self.queue);
        let s = self.state.load(Ordering::Acquire);
        if s & (EXCLUSIVE | SHAPE) != 0 || count(s) == 0 {
            return None;
        }
        if s & CONTENDED == 0 {
            // Released or uncontended meanwhile: the usual attempt decides.
            drop(q);
            return self.try_share(Mode::Shared, facts).ok();
        }
        // Contended: the state is ours to change under the mutex.
        self.state.store(s + 1, Ordering::Release);
        Some(self.grant_locked(&mut q, Mode::Shared, facts, s))
    }

    /// Like [`try_lock`](Self::try_lock), but never joins current holders: a shared or
    /// counted request is granted only if nobody holds the lock. For callers that cannot
    /// tell here whether a holder is their own chain (joining it would be re-entry).
    ///
    /// Every shape is then one compare-and-swap from the empty state (which is 0: the kind
    /// is forgotten when the lock is empty), and the grant's record goes to slot 0 with
    /// plain stores, as an exclusive one does.
    #[inline]
    pub(crate) fn try_lock_alone(&self, mode: Mode, facts: &Facts) -> Result<Grant, Refused> {
        let Admit::Grant(first) = admit(0, mode) else {
            return Err(Refused::Held);
        };
        match self
            .state
            .compare_exchange(0, first, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Ok(self.grant_first(mode, facts)),
            Err(s) => Err(self.refusal(s, mode)),
        }
    }

    #[inline]
    fn try_share(&self, mode: Mode, facts: &Facts) -> Result<Grant, Refused> {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & CONTENDED != 0 {
                return Err(self.refusal(s, mode));
            }
            match admit(s, mode) {
                Admit::Grant(next) => {
                    match self.state.compare_exchange_weak(
                        s,
                        next,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) if count(s) == 0 => return Ok(self.grant_first(mode, facts)),
                        Ok(_) => return Ok(self.grant_shared(mode, facts)),
                        Err(now) => s = now,
                    }
                }
                Admit::Wait => return Err(Refused::Held),
                Admit::Mismatch => return Err(Refused::Mismatch(kind(s))),
            }
        }
    }

    /// Records a grant that took the state from empty (every exclusive one): slot 0 is
    /// its own.
    #[inline]
    fn grant_first(&self, mode: Mode, facts: &Facts) -> Grant {
        let since = grant_time(facts);
        let id = self.holders.publish_first(next_token(), facts, since);
        Grant { id, since, mode }
    }

    /// Records a shared or counted grant that joined others (the caller has already
    /// counted it in the state).
    #[inline]
    fn grant_shared(&self, mode: Mode, facts: &Facts) -> Grant {
        let since = grant_time(facts);
        let token = next_token();
        let id = match self.holders.claim(token, facts, since) {
            Some(id) => id,
            None => self.record_overflow(&mut lock(&self.queue), token, facts, since),
        };
        Grant { id, since, mode }
    }

    /// Under the queue mutex: records a grant in the overflow list.
    fn record_overflow(&self, q: &mut Queue, token: u64, facts: &Facts, since: u64) -> u64 {
        let id = holders::grant_id(token, OVERFLOW);
        // Nobody stamps these later: date them now.
        let since = if since == 0 {
            crate::clock::coarse_nanos() | holders::OBSERVED
        } else {
            since
        };
        q.overflow.push(Record {
            id,
            facts: *facts,
            since,
        });
        id
    }

    /// Under the queue mutex: a grant of `mode` (already counted in the state, which was
    /// `before` without it).
    fn grant_locked(&self, q: &mut Queue, mode: Mode, facts: &Facts, before: u64) -> Grant {
        if mode.is_exclusive() || count(before) == 0 {
            return self.grant_first(mode, facts);
        }
        let since = grant_time(facts);
        let token = next_token();
        let id = match self.holders.claim(token, facts, since) {
            Some(id) => id,
            None => self.record_overflow(q, token, facts, since),
        };
        Grant { id, since, mode }
    }

    /// Releases `grant`, handing the lock on to waiters if any.
    #[inline]
    pub(crate) fn unlock(&self, grant: &Grant) {
        if slot_of(grant.id) != OVERFLOW {
            // Before the state changes: see the order rules in `holders`. Once cleared,
            // the slot may carry a later grant's record (so the slow path below clears
            // only if it is still this grant's).
            self.holders.clear_held(grant.id);
            let mut s = self.state.load(Ordering::Relaxed);
            loop {
                if s & CONTENDED != 0 {
                    break;
                }
                let next = leave(s, grant.mode);
                match self.state.compare_exchange_weak(
                    s,
                    next,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(now) => s = now,
                }
            }
        }
        self.unlock_slow(grant);
    }

    #[cold]
    #[inline(never)]
    fn unlock_slow(&self, grant: &Grant) {
        let wakes = {
            let mut q = lock(&self.queue);
            self.release_locked(&mut q, grant)
        };
        wakes.wake_all();
    }

    /// Under the queue mutex: gives `grant` back and grants what now fits.
    ///
    /// Without `CONTENDED` the fast paths are live, so the share is given back with a
    /// compare-and-swap, and there is nobody to grant (no waiters). This happens when a
    /// release saw `CONTENDED` (perhaps on a stale read) and the queue drained before it
    /// got the mutex, for overflow grants, and for a granted waiter dropped unobserved.
    fn release_locked(&self, q: &mut Queue, grant: &Grant) -> Wakes {
        if slot_of(grant.id) == OVERFLOW {
            if let Some(i) = q.overflow.iter().position(|r| r.id == grant.id) {
                q.overflow.swap_remove(i);
            }
        } else {
            self.holders.clear(grant.id);
        }
        let mut s = self.state.load(Ordering::Acquire);
        while s & CONTENDED == 0 {
            match self.state.compare_exchange_weak(
                s,
                leave(s, grant.mode),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Wakes::default(),
                Err(now) => s = now,
            }
        }
        // `CONTENDED` is set and only changes under the mutex we hold: the state is ours.
        self.grant_waiters(q, leave(s, grant.mode))
    }

    /// Under the queue mutex, with `CONTENDED` set (so no fast path can change the
    /// state): grants the head of the queue, and every following waiter that fits beside
    /// it, starting from state `s`; then stores the new state, with `CONTENDED` exactly
    /// while waiters remain.
    fn grant_waiters(&self, q: &mut Queue, mut s: u64) -> Wakes {
        let mut wakes = Wakes::default();
        while let Some(head) = q.waiters.front() {
            let Admit::Grant(next) = admit(s, head.mode) else {
                break;
            };
            let before = s;
            s = next;
            let Some(Queued {
                waiter,
                wake,
                mode,
                facts,
            }) = q.waiters.pop_front()
            else {
                break;
            };
            let grant = self.grant_locked(q, mode, &facts, before);
            waiter.hand(grant);
            wakes.push(wake);
        }
        let contended = if q.waiters.is_empty() { 0 } else { CONTENDED };
        self.state
            .store((s & !CONTENDED) | contended, Ordering::Release);
        wakes
    }

    /// Under the queue mutex: takes the lock if `mode` fits and nobody queues, else marks
    /// it contended so that releases come through the queue (the caller then queues, and
    /// the holds it waits for are dated now if they were not: see `holders`).
    fn lock_or_enqueue(
        &self,
        q: &mut Queue,
        mode: Mode,
        facts: &Facts,
    ) -> Result<Option<Grant>, Refused> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & CONTENDED != 0 {
                return match admit(s, mode) {
                    Admit::Mismatch => Err(Refused::Mismatch(kind(s))),
                    _ => {
                        self.holders.date_all();
                        Ok(None)
                    }
                };
            }
            let (next, granted) = match admit(s, mode) {
                Admit::Grant(next) => (next, true),
                Admit::Wait => (s | CONTENDED, false),
                Admit::Mismatch => return Err(Refused::Mismatch(kind(s))),
            };
            match self
                .state
                .compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if granted => return Ok(Some(self.grant_locked(q, mode, facts, s))),
                Ok(_) => {
                    self.holders.date_all();
                    return Ok(None);
                }
                Err(now) => s = now,
            }
        }
    }

    /// Under the queue mutex, after a waiter left the queue: clears `CONTENDED` if nobody
    /// queues any more, and grants whoever now fits (the leaver may have been the head
    /// that kept shared waiters behind it waiting).
    fn after_leaving(&self, q: &mut Queue) -> Wakes {
        let s = self.state.load(Ordering::Acquire);
        // The leaver was queued, so `CONTENDED` is set: the state is ours to store.
        debug_assert!(
            s & CONTENDED != 0,
            "a queued waiter left an uncontended lock"
        );
        self.grant_waiters(q, s)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_model;
