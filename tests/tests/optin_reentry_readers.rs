//! The opt-ins: `reentrant` (the chain that holds a lock may take it again, counted) and
//! `readers_first` (a shared request joins shared holders ahead of a queued exclusive
//! one). The defaults stay as they were: re-entry is `Busy`, shared requests are FIFO.
//! Every wait is bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lock_core::{locked, Lock, LockError};

const BOUND: Duration = Duration::from_secs(15);

fn is_reentry(r: &Result<lock_core::LockGuard, LockError>) -> bool {
    matches!(
        r,
        Err(LockError::Busy {
            reentrant: true,
            ..
        })
    )
}

/// Waits until `name` has `n` queued waiters in this process.
async fn queued(name: &str, n: usize) {
    tokio::time::timeout(BOUND, async {
        while !lock_core::holders()
            .iter()
            .any(|h| h.name == name && h.waiters >= n)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the waiter queued");
}

#[tokio::test]
async fn a_reentrant_request_nests_in_the_chains_hold_and_the_last_guard_releases() {
    let name = "optin-nest";
    let outer = Lock::new(name).acquire().await.unwrap();
    let inner = Lock::new(name).reentrant().acquire().await.unwrap();
    let innermost = Lock::new(name).reentrant().try_acquire().unwrap();
    assert!(
        is_reentry(&Lock::new(name).try_acquire()),
        "the default stays Busy"
    );
    drop(innermost);
    drop(inner);
    assert!(lock_core::is_locked(name), "the outer hold remains");
    // Outer first, nested last: the lock stays held until the last guard goes.
    let inner = Lock::new(name).reentrant().acquire().await.unwrap();
    drop(outer);
    assert!(
        lock_core::is_locked(name),
        "held while a nested guard lives"
    );
    let other = tokio::spawn(async move { Lock::new(name).try_acquire().map(drop) })
        .await
        .unwrap();
    assert!(
        matches!(
            other,
            Err(LockError::Busy {
                reentrant: false,
                ..
            })
        ),
        "{other:?}"
    );
    drop(inner);
    assert!(!lock_core::is_locked(name));
    drop(Lock::new(name).try_acquire().expect("free"));
}

#[locked(name = "optin-recursive", reentrant)]
fn countdown_sync(n: u32) -> Result<u32, LockError> {
    if n == 0 {
        return Ok(0);
    }
    Ok(countdown_sync(n - 1)? + 1)
}

#[locked(name = "optin-recursive-async", reentrant)]
async fn countdown(n: u32) -> Result<u32, LockError> {
    if n == 0 {
        return Ok(0);
    }
    Ok(Box::pin(countdown(n - 1)).await? + 1)
}

#[locked(name = "optin-recursive-async")]
async fn not_reentrant_inside() -> Result<(), LockError> {
    Ok(())
}

#[tokio::test]
async fn a_reentrant_locked_fn_may_call_itself() {
    assert_eq!(countdown_sync(5).unwrap(), 5);
    assert_eq!(countdown(5).await.unwrap(), 5);
    assert!(!lock_core::is_locked("optin-recursive-async"));
    // Inside a reentrant hold, a call without the opt-in is still refused.
    let g = Lock::new("optin-recursive-async").acquire().await.unwrap();
    let e = not_reentrant_inside().await.unwrap_err();
    assert!(
        matches!(
            e,
            LockError::Busy {
                reentrant: true,
                ..
            }
        ),
        "{e}"
    );
    drop(g);
}

/// While one chain holds (and re-enters) a lock, no other task is ever inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_holds_exclude_other_chains() {
    let inside = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (inside, max) = (inside.clone(), max.clone());
            tokio::spawn(async move {
                for _ in 0..30 {
                    let outer = Lock::new("optin-exclude")
                        .timeout(BOUND)
                        .acquire()
                        .await
                        .unwrap();
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    let inner = Lock::new("optin-exclude")
                        .reentrant()
                        .acquire()
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                    // The outer guard goes first; the nested one still holds the lock.
                    drop(outer);
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(inner);
                }
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(BOUND, t).await.unwrap().unwrap();
    }
    assert_eq!(
        max.load(Ordering::SeqCst),
        1,
        "two chains were inside at once"
    );
}

#[tokio::test]
async fn a_reentrant_file_lock_nests_and_the_file_stays_locked() {
    let dir = std::env::temp_dir().join(format!("lock-core-optin-{}", std::process::id()));
    let outer = Lock::new("optin-file").dir(&dir).acquire().await.unwrap();
    let inner = Lock::new("optin-file")
        .dir(&dir)
        .reentrant()
        .acquire()
        .await
        .unwrap();
    drop(outer);
    assert!(lock_core::file::LockDir::new(&dir).is_locked("optin-file"));
    drop(inner);
    assert!(!lock_core::file::LockDir::new(&dir).is_locked("optin-file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_reentrant_shared_request_joins_its_own_hold_past_a_queued_writer() {
    let name = "optin-shared";
    let outer = Lock::new(name).shared().acquire().await.unwrap();
    let writer =
        tokio::spawn(async move { Lock::new(name).timeout(BOUND).acquire().await.map(drop) });
    queued(name, 1).await;
    // Without the opt-in: re-entry. With it: joins at once instead of deadlocking
    // behind the writer that waits for this very chain.
    assert!(is_reentry(&Lock::new(name).shared().try_acquire()));
    let inner = tokio::time::timeout(BOUND, Lock::new(name).shared().reentrant().acquire())
        .await
        .expect("joins at once")
        .unwrap();
    drop(inner);
    drop(outer);
    writer
        .await
        .unwrap()
        .expect("the writer gets it after both");
}

#[tokio::test]
async fn reentry_that_would_upgrade_or_take_a_second_permit_is_refused_with_a_reason() {
    let g = Lock::new("optin-upgrade").shared().acquire().await.unwrap();
    match Lock::new("optin-upgrade").reentrant().acquire().await {
        Err(LockError::Busy {
            reentrant: true,
            reason: Some(r),
            ..
        }) => {
            assert!(r.contains("upgrade"), "{r}")
        }
        other => panic!("{other:?}"),
    }
    drop(g);
    let p = Lock::new("optin-permits")
        .permits(2)
        .acquire()
        .await
        .unwrap();
    match Lock::new("optin-permits")
        .permits(2)
        .reentrant()
        .acquire()
        .await
    {
        Err(LockError::Busy {
            reentrant: true,
            reason: Some(r),
            ..
        }) => {
            assert!(r.contains("counted"), "{r}")
        }
        other => panic!("{other:?}"),
    }
    drop(p);
}

// ---------------------------------------------------------------------------------------
// readers_first

#[tokio::test]
async fn readers_first_joins_shared_holders_ahead_of_a_queued_writer() {
    let name = "optin-readers";
    let reader = Lock::new(name).shared().acquire().await.unwrap();
    let writer =
        tokio::spawn(async move { Lock::new(name).timeout(BOUND).acquire().await.map(drop) });
    queued(name, 1).await;
    let plain = tokio::spawn(async move { Lock::new(name).shared().try_acquire().map(drop) })
        .await
        .unwrap();
    assert!(
        matches!(plain, Err(LockError::Busy { .. })),
        "FIFO by default: {plain:?}"
    );
    let first = tokio::spawn(async move { Lock::new(name).shared().readers_first().try_acquire() })
        .await
        .unwrap()
        .expect("joins the reader ahead of the writer");
    drop((reader, first));
    writer
        .await
        .unwrap()
        .expect("the writer gets it once the readers go");
}

#[locked(name = "optin-barrier", shared, readers_first, timeout_ms = 10_000)]
async fn parallel_test(barrier: Arc<tokio::sync::Barrier>) -> Result<(), LockError> {
    // serial_test's `#[parallel]` tests that wait for each other while holding.
    barrier.wait().await;
    Ok(())
}

/// The serial_test suite that hung under FIFO: three parallel holders wait on a barrier
/// for each other while an exclusive request queues between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_holders_waiting_for_each_other_pass_a_queued_exclusive_request() {
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let first = tokio::spawn(parallel_test(barrier.clone()));
    tokio::time::timeout(BOUND, async {
        while !lock_core::is_locked("optin-barrier") {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    let serial = tokio::spawn(async {
        Lock::new("optin-barrier")
            .timeout(BOUND)
            .acquire()
            .await
            .map(drop)
    });
    queued("optin-barrier", 1).await;
    let rest: Vec<_> = (0..2)
        .map(|_| tokio::spawn(parallel_test(barrier.clone())))
        .collect();
    tokio::time::timeout(BOUND, async {
        first.await.unwrap().unwrap();
        for r in rest {
            r.await.unwrap().unwrap();
        }
    })
    .await
    .expect("the barrier passed: the parallel holders were all inside at once");
    serial
        .await
        .unwrap()
        .expect("the serial request ran after them");
}
