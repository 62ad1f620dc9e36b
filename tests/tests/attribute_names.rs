//! Names through `#[locked]`: the function path, interpolated names, several names.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lock_core::{locked, LockError};
use tokio::sync::Barrier;

const LIMIT: Duration = Duration::from_secs(30);

#[locked(on_error = "panic")]
async fn bare_async() -> bool {
    lock_core::is_locked(concat!(module_path!(), "::bare_async"))
}

#[locked(on_error = "panic")]
fn bare_sync() -> Vec<bool> {
    vec![
        lock_core::is_locked("attribute_names::bare_sync"),
        lock_core::is_locked("attribute_names::bare_async"),
    ]
}

#[tokio::test]
async fn bare_attribute_locks_the_function_path() {
    assert!(bare_async().await);
    assert_eq!(bare_sync(), vec![true, false]);
}

#[locked(name = "attr-account-{id}", timeout_ms = 20_000)]
async fn with_account(id: u32, barrier: Arc<Barrier>) -> Result<(), LockError> {
    barrier.wait().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_ids_run_concurrently() {
    // Both bodies must be inside at the same time to pass the barrier.
    let barrier = Arc::new(Barrier::new(2));
    let a = tokio::spawn(with_account(1, barrier.clone()));
    let b = tokio::spawn(with_account(2, barrier.clone()));
    tokio::time::timeout(LIMIT, async {
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
    })
    .await
    .expect("different ids did not overlap");
}

#[locked(name = "attr-account-{id}", timeout_ms = 0)]
async fn try_account(id: u32) -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "attr-same-{id}", guard = g)]
async fn same_id(id: u64, o: Arc<(AtomicUsize, AtomicUsize)>) -> Result<String, LockError> {
    let now = o.0.fetch_add(1, Ordering::SeqCst) + 1;
    o.1.fetch_max(now, Ordering::SeqCst);
    tokio::task::yield_now().await;
    o.0.fetch_sub(1, Ordering::SeqCst);
    Ok(g.name().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_id_is_excluded() {
    let o = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let o = o.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    assert_eq!(same_id(7, o.clone()).await.unwrap(), "attr-same-7");
                }
            })
        })
        .collect();
    tokio::time::timeout(LIMIT, async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("timed out");
    assert_eq!(o.1.load(Ordering::SeqCst), 1);

    // And a held id is busy for try-once, another id is not.
    let b = Arc::new(Barrier::new(2));
    let holder = tokio::spawn(with_account(9, b.clone()));
    tokio::time::timeout(LIMIT, async {
        while !lock_core::is_locked("attr-account-9") {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("holder never took the lock");
    assert!(try_account(9).await.is_err());
    try_account(10).await.unwrap();
    b.wait().await;
    holder.await.unwrap().unwrap();
}

#[locked(name = ["attr-multi-a", "attr-multi-b"], guard = set)]
async fn ab(o: Arc<(AtomicUsize, AtomicUsize)>) -> Result<Vec<String>, LockError> {
    let now = o.0.fetch_add(1, Ordering::SeqCst) + 1;
    o.1.fetch_max(now, Ordering::SeqCst);
    tokio::task::yield_now().await;
    o.0.fetch_sub(1, Ordering::SeqCst);
    Ok(set.names().map(str::to_owned).collect())
}

#[locked(name = ["attr-multi-b", "attr-multi-a"])]
async fn ba(o: Arc<(AtomicUsize, AtomicUsize)>) -> Result<(), LockError> {
    let now = o.0.fetch_add(1, Ordering::SeqCst) + 1;
    o.1.fetch_max(now, Ordering::SeqCst);
    tokio::task::yield_now().await;
    o.0.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

#[locked(name = ["attr-multi-{second}", "attr-multi-{first}"])]
async fn dynamic_pair(
    first: &str,
    second: &str,
    o: Arc<(AtomicUsize, AtomicUsize)>,
) -> Result<(), LockError> {
    let now = o.0.fetch_add(1, Ordering::SeqCst) + 1;
    o.1.fetch_max(now, Ordering::SeqCst);
    tokio::task::yield_now().await;
    o.0.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opposite_orders_do_not_deadlock() {
    let o = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let o = o.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    match i % 3 {
                        0 => {
                            let names = ab(o.clone()).await.unwrap();
                            assert_eq!(names, ["attr-multi-a", "attr-multi-b"]);
                        }
                        1 => ba(o.clone()).await.unwrap(),
                        _ => dynamic_pair("a", "b", o.clone()).await.unwrap(),
                    }
                }
            })
        })
        .collect();
    tokio::time::timeout(LIMIT, async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("multi-name locking deadlocked");
    assert_eq!(o.1.load(Ordering::SeqCst), 1);
    assert!(!lock_core::is_locked("attr-multi-a"));
    assert!(!lock_core::is_locked("attr-multi-b"));
}

#[locked(name = ["attr-dup-{a}", "attr-dup-{b}"], guard = set)]
async fn duplicates(a: u8, b: u8) -> Result<usize, LockError> {
    Ok(set.guards().len())
}

#[tokio::test]
async fn duplicate_dynamic_names_are_taken_once() {
    assert_eq!(duplicates(1, 1).await.unwrap(), 1);
    assert_eq!(duplicates(1, 2).await.unwrap(), 2);
}

#[locked(name = ["attr-sync-x", "attr-sync-y"], timeout_ms = 0)]
fn sync_pair() -> Result<(bool, bool), LockError> {
    Ok((
        lock_core::is_locked("attr-sync-x"),
        lock_core::is_locked("attr-sync-y"),
    ))
}

#[test]
fn sync_fn_takes_every_name() {
    assert_eq!(sync_pair().unwrap(), (true, true));
    let held = lock_core::try_acquire("attr-sync-y").unwrap();
    assert!(matches!(sync_pair(), Err(LockError::Busy { .. })));
    assert!(!lock_core::is_locked("attr-sync-x"), "partial set released");
    drop(held);
}

#[locked(name = "{{literal}}-{n}", guard = g, on_error = "panic")]
fn braces(n: i32) -> String {
    g.name().to_owned()
}

#[test]
fn escaped_braces_stay_literal() {
    assert_eq!(braces(-1), "{literal}--1");
}
