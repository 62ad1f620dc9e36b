//! loom model of the lock's state machine: every interleaving of acquire, release and
//! cancellation admits at most one holder and loses no wake-up (a lost wake-up shows up
//! as a deadlock, which loom reports).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p lock-core --test loom --release`
#![cfg(loom)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use lock_core::__loom::Lock;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Every interleaving with up to three preemptions (the usual bound: bugs of this kind
/// need one or two), so the suite runs in seconds.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

fn critical(inside: &AtomicUsize) {
    let before = inside.fetch_add(1, Ordering::SeqCst);
    assert_eq!(before, 0, "two holders at once");
    inside.fetch_sub(1, Ordering::SeqCst);
}

#[test]
fn blocking_and_async_callers_exclude_each_other() {
    model(|| {
        let lock = Arc::new(Lock::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let other = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let t = lock.lock_blocking();
                critical(&inside);
                lock.unlock(t);
            })
        };
        let t = loom::future::block_on(lock.lock_async());
        critical(&inside);
        lock.unlock(t);
        other.join().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(lock.waiters(), 0);
    });
}

#[test]
fn a_cancelled_waiter_never_swallows_the_next_wake_up() {
    model(|| {
        let lock = Arc::new(Lock::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let held = lock.try_lock().expect("free at start");
        // A waiter that polls once and is then dropped (cancelled), racing the release.
        let canceller = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let mut fut = pin!(lock.lock_async());
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(t) = fut.as_mut().poll(&mut cx) {
                    critical(&inside);
                    lock.unlock(t);
                }
                // Dropped here, possibly after having been handed the lock.
            })
        };
        let waiter = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let t = loom::future::block_on(lock.lock_async());
                critical(&inside);
                lock.unlock(t);
            })
        };
        lock.unlock(held);
        canceller.join().unwrap();
        waiter.join().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(lock.waiters(), 0);
    });
}

#[test]
fn try_lock_never_barges_past_a_handed_off_grant() {
    model(|| {
        let lock = Arc::new(Lock::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let held = lock.try_lock().expect("free at start");
        let waiter = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let t = lock.lock_blocking();
                critical(&inside);
                lock.unlock(t);
            })
        };
        let trier = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                if let Some(t) = lock.try_lock() {
                    critical(&inside);
                    lock.unlock(t);
                }
            })
        };
        lock.unlock(held);
        waiter.join().unwrap();
        trier.join().unwrap();
        assert!(!lock.is_locked());
    });
}

#[test]
fn a_timed_out_blocking_waiter_and_an_async_waiter_race_the_release() {
    model(|| {
        let lock = Arc::new(Lock::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let held = lock.try_lock().expect("free at start");
        // Two waiters queue; one is cancelled by dropping its future mid-way, racing
        // the holder's release and the other waiter's registration.
        let a = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let t = loom::future::block_on(lock.lock_async());
                critical(&inside);
                lock.unlock(t);
            })
        };
        let b = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let mut fut = pin!(lock.lock_async());
                let mut cx = Context::from_waker(Waker::noop());
                for _ in 0..2 {
                    if let Poll::Ready(t) = fut.as_mut().poll(&mut cx) {
                        critical(&inside);
                        lock.unlock(t);
                        return;
                    }
                    thread::yield_now();
                }
            })
        };
        lock.unlock(held);
        a.join().unwrap();
        b.join().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(lock.waiters(), 0);
    });
}
