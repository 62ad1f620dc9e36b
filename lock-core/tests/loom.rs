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

fn critical(inside: &AtomicUsize) {
    let before = inside.fetch_add(1, Ordering::SeqCst);
    assert_eq!(before, 0, "two holders at once");
    inside.fetch_sub(1, Ordering::SeqCst);
}

#[test]
fn blocking_and_async_callers_exclude_each_other() {
    loom::model(|| {
        let lock = Arc::new(Lock::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let t = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                lock.lock_blocking();
                critical(&inside);
                lock.unlock();
            })
        };
        loom::future::block_on(lock.lock_async());
        critical(&inside);
        lock.unlock();
        t.join().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(lock.waiters(), 0);
    });
}

#[test]
fn a_cancelled_waiter_never_swallows_the_next_wake_up() {
    loom::model(|| {
        let lock = Arc::new(Lock::default());
        let inside = Arc::new(AtomicUsize::new(0));
        assert!(lock.try_lock());
        // A waiter that polls once and is then dropped (cancelled), racing the release.
        let canceller = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                let mut fut = pin!(lock.lock_async());
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(()) = fut.as_mut().poll(&mut cx) {
                    critical(&inside);
                    lock.unlock();
                }
                // Dropped here, possibly after having been handed the lock.
            })
        };
        let waiter = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                loom::future::block_on(lock.lock_async());
                critical(&inside);
                lock.unlock();
            })
        };
        lock.unlock();
        canceller.join().unwrap();
        waiter.join().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(lock.waiters(), 0);
    });
}

#[test]
fn try_lock_never_barges_past_a_handed_off_grant() {
    loom::model(|| {
        let lock = Arc::new(Lock::default());
        let inside = Arc::new(AtomicUsize::new(0));
        assert!(lock.try_lock());
        let waiter = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                lock.lock_blocking();
                critical(&inside);
                lock.unlock();
            })
        };
        let trier = {
            let (lock, inside) = (lock.clone(), inside.clone());
            thread::spawn(move || {
                if lock.try_lock() {
                    critical(&inside);
                    lock.unlock();
                }
            })
        };
        lock.unlock();
        waiter.join().unwrap();
        trier.join().unwrap();
        assert!(!lock.is_locked());
    });
}
