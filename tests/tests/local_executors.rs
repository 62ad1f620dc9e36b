//! `acquire_timeout` works on any executor — `futures::executor::block_on`, Tokio runtimes
//! without their time (or I/O) driver, normal Tokio runtimes — with the same semantics:
//! the timeout is honoured, a release in time is taken, a cancelled wait leaves nothing
//! behind (neither in the lock's queue nor in the crate's wake-up thread).
//!
//! Tests in this file are serialised: they check that the process-wide table of wait
//! registrations returns to zero.

use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::poll;
use lock_core::{LockError, LockGuard};
use lock_core_tests::{unique, Exec};

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn registrations() -> usize {
    lock_core::__private::wait_registrations()
}

#[test]
fn acquire_timeout_times_out_on_every_executor() {
    let _serial = serial();
    for exec in Exec::ALL {
        let name = unique("exec-timeout");
        let held = lock_core::try_acquire(&name).unwrap();
        let n = name.clone();
        let (err, took) = exec.run(move || async move {
            let t = Instant::now();
            let e = lock_core::acquire_timeout(&n, Duration::from_millis(60))
                .await
                .unwrap_err();
            (e, t.elapsed())
        });
        match &err {
            LockError::Timeout { waited, .. } => {
                assert!(*waited >= Duration::from_millis(60), "{exec:?}: {err}")
            }
            other => panic!("{exec:?}: expected a timeout, got {other}"),
        }
        assert!(took >= Duration::from_millis(60), "{exec:?}: {took:?}");
        assert!(took < Duration::from_secs(10), "{exec:?}: {took:?}");
        // The holder still holds it, nobody queues, nothing is registered.
        assert!(lock_core::is_locked(&name));
        assert_eq!(registrations(), 0, "{exec:?}");
        drop(held);
        assert!(lock_core::try_acquire(&name).is_ok(), "{exec:?}");
    }
}

/// Releases `held` from another thread once the waiter reports that it waits.
fn release_when_told(held: LockGuard) -> (mpsc::Sender<()>, std::thread::JoinHandle<Instant>) {
    let (tx, rx) = mpsc::channel::<()>();
    let releaser = std::thread::spawn(move || {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the waiter never waited");
        let at = Instant::now();
        drop(held);
        at
    });
    (tx, releaser)
}

#[test]
fn acquire_timeout_takes_a_release_in_time_on_every_executor() {
    let _serial = serial();
    for exec in Exec::ALL {
        let name = unique("exec-in-time");
        let held = lock_core::try_acquire(&name).unwrap();
        let (waiting, releaser) = release_when_told(held);
        let n = name.clone();
        let (got, at) = exec.run(move || async move {
            let mut fut = Box::pin(lock_core::acquire_timeout(&n, Duration::from_secs(30)));
            // Queued (and its timer registered) before the release.
            assert!(poll!(fut.as_mut()).is_pending());
            assert!(registrations() > 0);
            waiting.send(()).unwrap();
            let g = fut.await.expect("released in time");
            let at = Instant::now();
            (g, at)
        });
        let released = releaser.join().unwrap();
        assert!(at >= released);
        assert!(
            at - released < Duration::from_secs(10),
            "{exec:?}: {:?}",
            at - released
        );
        assert!(lock_core::is_locked(&name));
        drop(got);
        assert_eq!(registrations(), 0, "{exec:?}");
        assert!(!lock_core::is_locked(&name));
    }
}

#[test]
fn a_zero_timeout_tries_once_and_an_unrepresentable_one_waits() {
    let _serial = serial();
    for exec in [Exec::BlockOn, Exec::BareCurrentThread] {
        let name = unique("exec-edges");
        let held = lock_core::try_acquire(&name).unwrap();
        let n = name.clone();
        let e = exec.run(move || async move {
            lock_core::acquire_timeout(&n, Duration::ZERO)
                .await
                .unwrap_err()
        });
        assert_eq!(e.code(), 8406, "{exec:?}: {e}");
        // `Duration::MAX` cannot be added to now: it waits without a timer.
        let (waiting, releaser) = release_when_told(held);
        let n = name.clone();
        exec.run(move || async move {
            let mut fut = Box::pin(lock_core::acquire_timeout(&n, Duration::MAX));
            assert!(poll!(fut.as_mut()).is_pending());
            waiting.send(()).unwrap();
            drop(fut.await.unwrap());
        });
        releaser.join().unwrap();
        assert_eq!(registrations(), 0);
    }
}

#[test]
fn a_thousand_cancelled_waits_leave_no_registration_and_no_queue() {
    let _serial = serial();
    for exec in [Exec::BlockOn, Exec::BareMultiThread, Exec::Tokio] {
        let name = unique("exec-cancel");
        let held = lock_core::try_acquire(&name).unwrap();
        let n = name.clone();
        exec.run(move || async move {
            for i in 0..1000u64 {
                let mut fut = Box::pin(lock_core::acquire_timeout(
                    &n,
                    Duration::from_secs(60 + i % 7),
                ));
                assert!(poll!(fut.as_mut()).is_pending());
                // Dropped mid-wait: leaves the queue and the timer table at once.
            }
        });
        assert_eq!(registrations(), 0, "{exec:?}");
        // The queue is empty too: a release frees the lock instead of handing it on.
        drop(held);
        assert!(!lock_core::is_locked(&name), "{exec:?}");
        assert!(lock_core::try_acquire(&name).is_ok(), "{exec:?}");
    }
}

#[test]
fn a_waiter_cancelled_after_the_hand_off_passes_it_on_under_block_on() {
    let _serial = serial();
    let name = unique("exec-handoff-cancel");
    let held = lock_core::try_acquire(&name).unwrap();
    let n = name.clone();
    exec_block_on(move || async move {
        let mut first = Box::pin(lock_core::acquire_timeout(&n, Duration::from_secs(30)));
        let mut second = Box::pin(lock_core::acquire_timeout(&n, Duration::from_secs(30)));
        assert!(poll!(first.as_mut()).is_pending());
        assert!(poll!(second.as_mut()).is_pending());
        // The release hands the lock to `first`, dropped before it looks: `second` gets it.
        drop(held);
        drop(first);
        drop(second.await.unwrap());
    });
    assert_eq!(registrations(), 0);
    assert!(!lock_core::is_locked(&name));
}

fn exec_block_on<F: std::future::Future<Output = ()> + Send + 'static>(
    make: impl FnOnce() -> F + Send + 'static,
) {
    Exec::BlockOn.run(make)
}
