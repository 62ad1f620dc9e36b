//! loom model of the lock's state machine: every interleaving of acquire, release and
//! cancellation, in every mode, admits no two incompatible holders and loses no wake-up
//! (a lost wake-up shows up as a deadlock, which loom reports).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p lock-core --lib --release loom_model`
//! (`scripts/test` does). These are unit tests, so loom is a dev-dependency that never
//! reaches the lock files of crates depending on lock-core.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use super::{Grant, RawLock};
use crate::mode::Mode;
use crate::owner::Facts;

/// Every interleaving with up to three preemptions (the usual bound: bugs of this kind
/// need one or two), so the suite runs in seconds.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

fn facts() -> Facts {
    Facts::default()
}

/// Who is inside, by mode: asserts that no incompatible holders ever overlap.
#[derive(Default)]
struct Inside {
    exclusive: AtomicUsize,
    shared: AtomicUsize,
}

impl Inside {
    fn critical(&self, mode: Mode, limit: usize) {
        match mode {
            Mode::Exclusive => {
                let before = self.exclusive.fetch_add(1, Ordering::SeqCst);
                assert_eq!(before, 0, "two exclusive holders");
                let readers = self.shared.load(Ordering::SeqCst);
                assert_eq!(readers, 0, "exclusive beside shared");
                self.exclusive.fetch_sub(1, Ordering::SeqCst);
            }
            _ => {
                let before = self.shared.fetch_add(1, Ordering::SeqCst);
                assert!(before < limit, "more holders than permits");
                let writers = self.exclusive.load(Ordering::SeqCst);
                assert_eq!(writers, 0, "shared beside exclusive");
                self.shared.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

fn blocking(lock: &RawLock, mode: Mode) -> Grant {
    match lock.lock_blocking(mode, &facts(), None, None) {
        Ok(g) => g,
        Err(e) => panic!("a wait without deadline cannot fail: {e:?}"),
    }
}

fn waiting(lock: &RawLock, mode: Mode) -> Grant {
    loom::future::block_on(lock.lock_async(mode, facts())).expect("same kind")
}

#[test]
fn loom_model_blocking_and_async_callers_exclude_each_other() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        let inside = Arc::new(Inside::default());
        let other = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let g = blocking(&lock, Mode::Exclusive);
                inside.critical(Mode::Exclusive, 1);
                lock.unlock(&g);
            })
        };
        let g = waiting(&lock, Mode::Exclusive);
        inside.critical(Mode::Exclusive, 1);
        lock.unlock(&g);
        other.join().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(lock.waiters(), 0);
    });
}

#[test]
fn loom_model_a_cancelled_waiter_never_swallows_the_next_wake_up() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        let inside = Arc::new(Inside::default());
        let held = lock
            .try_lock(Mode::Exclusive, &facts())
            .expect("free at start");
        // A waiter that polls once and is then dropped (cancelled), racing the release.
        let canceller = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let mut fut = pin!(lock.lock_async(Mode::Exclusive, facts()));
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(Ok(g)) = fut.as_mut().poll(&mut cx) {
                    inside.critical(Mode::Exclusive, 1);
                    lock.unlock(&g);
                }
                // Dropped here, possibly after having been handed the lock.
            })
        };
        let waiter = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let g = waiting(&lock, Mode::Exclusive);
                inside.critical(Mode::Exclusive, 1);
                lock.unlock(&g);
            })
        };
        lock.unlock(&held);
        canceller.join().unwrap();
        waiter.join().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(lock.waiters(), 0);
    });
}

#[test]
fn loom_model_try_lock_never_barges_past_a_handed_off_grant() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        let inside = Arc::new(Inside::default());
        let held = lock
            .try_lock(Mode::Exclusive, &facts())
            .expect("free at start");
        let waiter = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let g = blocking(&lock, Mode::Exclusive);
                inside.critical(Mode::Exclusive, 1);
                lock.unlock(&g);
            })
        };
        let trier = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                if let Ok(g) = lock.try_lock(Mode::Exclusive, &facts()) {
                    inside.critical(Mode::Exclusive, 1);
                    lock.unlock(&g);
                }
            })
        };
        lock.unlock(&held);
        waiter.join().unwrap();
        trier.join().unwrap();
        assert!(!lock.is_locked());
    });
}

#[test]
fn loom_model_readers_and_a_writer_never_overlap() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        let inside = Arc::new(Inside::default());
        let reader = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let g = waiting(&lock, Mode::Shared);
                inside.critical(Mode::Shared, usize::MAX);
                lock.unlock(&g);
            })
        };
        let writer = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let g = blocking(&lock, Mode::Exclusive);
                inside.critical(Mode::Exclusive, 1);
                lock.unlock(&g);
            })
        };
        let g = blocking(&lock, Mode::Shared);
        inside.critical(Mode::Shared, usize::MAX);
        lock.unlock(&g);
        reader.join().unwrap();
        writer.join().unwrap();
        assert!(
            !lock.is_locked(),
            "state {:x}",
            lock.state.load(Ordering::SeqCst)
        );
        assert_eq!(lock.waiters(), 0);
    });
}

#[test]
fn loom_model_a_counted_lock_admits_at_most_n() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        let inside = Arc::new(Inside::default());
        let mode = Mode::Permits(2);
        let others: Vec<_> = (0..2)
            .map(|i| {
                let (lock, inside) = (lock.clone(), inside.clone());
                thread::spawn(move || {
                    let g = if i == 0 {
                        blocking(&lock, mode)
                    } else {
                        waiting(&lock, mode)
                    };
                    inside.critical(mode, 2);
                    lock.unlock(&g);
                })
            })
            .collect();
        let g = blocking(&lock, mode);
        inside.critical(mode, 2);
        lock.unlock(&g);
        for t in others {
            t.join().unwrap();
        }
        assert!(!lock.is_locked());
    });
}

#[test]
fn loom_model_a_cancelled_exclusive_head_lets_a_reader_behind_it_in() {
    model(|| {
        let lock = Arc::new(RawLock::new());
        let inside = Arc::new(Inside::default());
        let reader_hold = lock
            .try_lock(Mode::Shared, &facts())
            .expect("free at start");
        // A writer queues behind the reader and is cancelled, racing a second reader that
        // queues behind the writer: the second reader must not be left waiting.
        let writer = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let mut fut = pin!(lock.lock_async(Mode::Exclusive, facts()));
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(Ok(g)) = fut.as_mut().poll(&mut cx) {
                    inside.critical(Mode::Exclusive, 1);
                    lock.unlock(&g);
                }
            })
        };
        let reader = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let g = waiting(&lock, Mode::Shared);
                inside.critical(Mode::Shared, usize::MAX);
                lock.unlock(&g);
            })
        };
        writer.join().unwrap();
        reader.join().unwrap();
        lock.unlock(&reader_hold);
        assert!(!lock.is_locked());
        assert_eq!(lock.waiters(), 0);
    });
}

/// The holder records under the lazy grant time: a reader that overlaps a scoped grant
/// (no clock read), its release and a hand-taken grant (clock read) in the same slot
/// sees each record whole — the chain key and task of one grant, never a mix — and
/// every record it sees carries a time: the hand-taken one its exact grant time, the
/// scoped one the reader's own stamp, marked as such.
#[test]
fn loom_model_a_reader_sees_whole_records_with_a_time() {
    const SCOPED_TASK: u64 = 11;
    const HAND_KEY: u64 = 22;
    const HAND_TASK: u64 = 33;
    model(|| {
        let lock = Arc::new(RawLock::new());
        let reader = {
            let lock = lock.clone();
            thread::spawn(move || {
                for r in lock.records() {
                    let scoped = (r.facts.key, r.facts.task) == (0, SCOPED_TASK);
                    let hand = (r.facts.key, r.facts.task) == (HAND_KEY, HAND_TASK);
                    assert!(scoped || hand, "half a record: {:?}", r.facts);
                    assert_ne!(r.since, 0, "a record without a time");
                    if scoped {
                        assert!(r.observed(), "a scoped grant dated as if exact");
                    }
                }
            })
        };
        let scoped = Facts {
            task: SCOPED_TASK,
            ..facts()
        };
        let g = lock.try_lock(Mode::Exclusive, &scoped).expect("free");
        assert_eq!(g.since, 0, "a scoped grant reads no clock");
        lock.unlock(&g);
        let hand = Facts {
            key: HAND_KEY,
            task: HAND_TASK,
            ..facts()
        };
        let g = lock.try_lock(Mode::Exclusive, &hand).expect("free");
        assert_ne!(g.since, 0, "a hand-taken grant reads the clock");
        assert!(!super::holders::Record {
            id: g.id,
            facts: hand,
            since: g.since
        }
        .observed());
        lock.unlock(&g);
        reader.join().unwrap();
    });
}

/// Shared holders arriving together: the one whose grant finds the lock empty writes
/// slot 0 with plain stores, the others claim other slots. Each holder, while it holds,
/// finds its own record whole (its grant id with its own facts), including one that
/// takes a second hold after its first, as first holder or as joiner.
#[test]
fn loom_model_sharers_arriving_together_keep_their_own_records() {
    fn hold_and_check(lock: &RawLock, task: u64, alone: bool) {
        let mine = Facts { task, ..facts() };
        let g = match alone {
            true => lock
                .try_lock_alone(Mode::Shared, &mine)
                .or_else(|_| lock.try_lock(Mode::Shared, &mine)),
            false => lock.try_lock(Mode::Shared, &mine),
        }
        .expect("shared holders never wait for each other");
        let records = lock.records();
        assert!(
            records.iter().any(|r| r.id == g.id && r.facts.task == task),
            "a holder's record is missing: {records:?}"
        );
        for r in &records {
            assert!(
                r.id != g.id || r.facts.task == task,
                "a grant's record holds another's facts"
            );
        }
        lock.unlock(&g);
    }
    model(|| {
        let lock = Arc::new(RawLock::new());
        let other = {
            let lock = lock.clone();
            thread::spawn(move || hold_and_check(&lock, 2, true))
        };
        hold_and_check(&lock, 1, false);
        hold_and_check(&lock, 1, true);
        other.join().unwrap();
        assert!(!lock.is_locked());
        assert!(lock.records().is_empty());
    });
}
