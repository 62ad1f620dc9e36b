//! A cancelled wait for a file lock — a dropped future or a timed-out blocking wait —
//! never leaves this process holding the OS lock: another process can take it right
//! after the holder lets go, even when the cancellation races the release.

mod file_support;

use std::time::Duration;

use file_support::{fresh_dir, Child};
use lock_core::file::LockDir;

/// After our wait was abandoned and the holder released, a fresh process must get the
/// lock at once.
fn another_process_gets_it(dir: &std::path::Path, name: &str) {
    assert!(
        !lock_core::is_locked(name),
        "the in-process lock was given back"
    );
    assert_eq!(Child::run(&["try", dir.to_str().unwrap(), name]), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_async_waits_leave_the_lock_free() {
    let dir = fresh_dir("cancel-async");
    let locks = LockDir::new(&dir);
    let mut cancelled = 0;
    for round in 0..12u64 {
        let mut holder = Child::hold(&dir, "contended");
        // The wait is dropped at varying points around the holder's release.
        let wait = {
            let locks = locks.clone();
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(40 + 5 * round),
                    locks.acquire("contended"),
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(60)).await;
        let release = tokio::task::spawn_blocking(move || {
            holder.release();
            holder
        });
        let outcome = tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap()
            .unwrap();
        let _holder = release.await.unwrap();
        match outcome {
            Err(_elapsed) => {
                cancelled += 1;
                another_process_gets_it(&dir, "contended");
            }
            // The release came first and we got it: fine, give it back.
            Ok(g) => drop(g.unwrap()),
        }
    }
    assert!(cancelled >= 3, "only {cancelled} rounds were cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_wait_while_the_holder_keeps_it_leaves_nothing_behind() {
    let dir = fresh_dir("cancel-drop");
    let locks = LockDir::new(&dir);
    let mut holder = Child::hold(&dir, "kept");
    let fut = locks.acquire("kept");
    assert!(tokio::time::timeout(Duration::from_millis(100), fut)
        .await
        .is_err());
    let e = locks
        .acquire_timeout("kept", Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(e.code(), 8403);
    holder.release();
    another_process_gets_it(&dir, "kept");
}

#[test]
fn timed_out_blocking_waits_leave_the_lock_free() {
    let dir = fresh_dir("cancel-blocking");
    let locks = LockDir::new(&dir);
    let mut timed_out = 0;
    for round in 0..12u64 {
        let mut holder = Child::hold(&dir, "contended-blocking");
        let waiter = {
            let locks = locks.clone();
            std::thread::spawn(move || {
                locks
                    .blocking_acquire(
                        "contended-blocking",
                        Some(Duration::from_millis(40 + 5 * round)),
                    )
                    .map(drop)
            })
        };
        std::thread::sleep(Duration::from_millis(60));
        holder.release();
        // Ok: the release came first and we got (and gave back) the lock.
        if let Err(e) = waiter.join().unwrap() {
            assert_eq!(e.code(), 8403, "{e}");
            timed_out += 1;
            another_process_gets_it(&dir, "contended-blocking");
        }
    }
    assert!(timed_out >= 3, "only {timed_out} rounds timed out");
}
