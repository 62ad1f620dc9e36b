//! Re-entry with hand-taken guards (issue #12): refused at once in every shape, also into
//! `#[locked]` fns; blocking waits that would stop their own holder are refused, others
//! wait; `Lock::run`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lock_core::{locked, Lock, LockError, Mode};
use lock_core_tests::{bounded, unique, HeldElsewhere};

const LIMIT: Duration = Duration::from_secs(10);

#[track_caller]
fn assert_reentrant<T: std::fmt::Debug>(r: Result<T, LockError>, name: &str) {
    match r {
        Err(LockError::Busy {
            name: n,
            reentrant: true,
            ..
        }) => assert_eq!(n, name),
        other => panic!("expected re-entrant Busy for {name}, got {other:?}"),
    }
}

// ---- item 1: raw double acquire ----

#[tokio::test(flavor = "current_thread")]
async fn a_second_async_acquire_in_the_same_task_is_reentrant_busy_at_once() {
    let name = unique("hand-async-twice");
    let g = lock_core::acquire(&name).await.unwrap();
    let start = Instant::now();
    let again = tokio::time::timeout(LIMIT, lock_core::acquire(&name))
        .await
        .expect("the second acquire must not hang");
    assert_reentrant(again, &name);
    let again = tokio::time::timeout(LIMIT, Lock::new(&name).timeout(LIMIT).acquire())
        .await
        .expect("nor with a timeout");
    assert_reentrant(again, &name);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    drop(g);
    assert!(lock_core::try_acquire(&name).is_ok());
}

#[test]
fn a_second_blocking_acquire_on_the_same_thread_is_reentrant_busy_at_once() {
    let name = unique("hand-sync-twice");
    bounded(LIMIT, move || {
        let g = lock_core::blocking_acquire(&name, None).unwrap();
        let start = Instant::now();
        assert_reentrant(lock_core::blocking_acquire(&name, None), &name);
        assert_reentrant(lock_core::blocking_acquire(&name, Some(LIMIT)), &name);
        assert!(start.elapsed() < Duration::from_secs(1));
        drop(g);
        assert!(lock_core::blocking_acquire(&name, None).is_ok());
    });
}

/// Runs `f` as a spawned Tokio task (a task is one call chain for every verb).
async fn in_task<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
    tokio::time::timeout(LIMIT, tokio::spawn(f))
        .await
        .expect("the task must not hang")
        .unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_holding_shared_by_hand_asking_again_in_any_mode_is_reentrant() {
    let name = unique("hand-shared-again");
    in_task(async move {
        let g = Lock::new(&name).shared().acquire().await.unwrap();
        for mode in [Mode::Shared, Mode::Exclusive] {
            let r = tokio::time::timeout(LIMIT, Lock::new(&name).mode(mode).acquire())
                .await
                .unwrap_or_else(|_| panic!("{mode} after shared hangs"));
            assert_reentrant(r, &name);
        }
        drop(g);
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_holding_a_permit_by_hand_asking_for_another_is_reentrant() {
    let name = unique("hand-permit-again");
    in_task(async move {
        let g = Lock::new(&name).permits(3).acquire().await.unwrap();
        let r = tokio::time::timeout(LIMIT, Lock::new(&name).permits(3).acquire())
            .await
            .expect("a second permit must not hang");
        assert_reentrant(r, &name);
        // Asked as another kind it is refused at once too (the kind check comes first).
        let r = tokio::time::timeout(LIMIT, Lock::new(&name).exclusive().acquire())
            .await
            .expect("exclusive after a permit must not hang");
        assert!(matches!(r, Err(LockError::Mismatch { .. })), "{r:?}");
        drop(g);
    })
    .await;
}

/// The task is the chain for sync verbs too ("a sync verb inside a Tokio task: the
/// task"): `try_acquire` after the task's own async acquire is re-entry in every mode,
/// never a join of its own shared or counted hold.
#[tokio::test(flavor = "current_thread")]
async fn a_task_holding_by_hand_asking_again_with_try_acquire_is_reentrant() {
    let mut wrong = Vec::new();
    for mode in [Mode::Exclusive, Mode::Shared, Mode::Permits(3)] {
        let name = unique("hand-try-again");
        let (tx, rx) = tokio::sync::oneshot::channel();
        in_task(async move {
            let g = Lock::new(&name).mode(mode).acquire().await.unwrap();
            let again = Lock::new(&name).mode(mode).try_acquire();
            let _ = tx.send(match again {
                Err(LockError::Busy {
                    reentrant: true, ..
                }) => None,
                other => Some(format!("{mode}: {other:?}")),
            });
            drop(g);
        })
        .await;
        wrong.extend(rx.await.unwrap());
    }
    assert!(
        wrong.is_empty(),
        "expected re-entrant Busy from try_acquire in the holding task, got:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn a_thread_holding_shared_or_a_permit_asking_again_is_reentrant() {
    let name = unique("hand-sync-shapes");
    bounded(LIMIT, move || {
        let g = Lock::new(&name).shared().blocking_acquire().unwrap();
        assert_reentrant(
            Lock::new(&name).shared().timeout(LIMIT).blocking_acquire(),
            &name,
        );
        assert_reentrant(Lock::new(&name).exclusive().blocking_acquire(), &name);
        drop(g);
        let g = Lock::new(&name).permits(2).blocking_acquire().unwrap();
        assert_reentrant(Lock::new(&name).permits(2).blocking_acquire(), &name);
        drop(g);
    });
}

// ---- item 2: a #[locked] fn called while the same chain holds its name by hand ----

#[locked(name = "hand-attr-{tag}")]
async fn locked_async(tag: &str) -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "hand-attr-sync-{tag}")]
fn locked_sync(tag: &str) -> Result<(), LockError> {
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_locked_fn_called_while_holding_its_name_by_hand_is_reentrant() {
    let tag = unique("t");
    let name = format!("hand-attr-{tag}");
    let g = lock_core::acquire(&name).await.unwrap();
    let r = tokio::time::timeout(LIMIT, locked_async(&tag))
        .await
        .expect("the locked fn must not hang");
    assert_reentrant(r, &name);
    drop(g);
    locked_async(&tag).await.unwrap();
}

#[test]
fn a_locked_sync_fn_called_while_holding_its_name_by_hand_is_reentrant() {
    let tag = unique("t");
    bounded(LIMIT, move || {
        let name = format!("hand-attr-sync-{tag}");
        let g = lock_core::blocking_acquire(&name, None).unwrap();
        assert_reentrant(locked_sync(&tag), &name);
        drop(g);
        locked_sync(&tag).unwrap();
    });
}

// ---- item 3: blocking waits inside a current-thread runtime ----

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A task of the runtime holds `name` until told; `wait` runs (on the same thread)
/// while it does.
fn with_sibling_holder(name: String, in_task: bool) -> Result<lock_core::LockGuard, LockError> {
    let rt = current_thread();
    rt.block_on(async move {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let n = name.clone();
        let holder = tokio::spawn(async move {
            let g = lock_core::acquire(&n).await.unwrap();
            let _ = held_tx.send(());
            let _ = release_rx.await;
            drop(g);
        });
        held_rx.await.unwrap();
        let n = name.clone();
        let wait = move || lock_core::blocking_acquire(&n, Some(LIMIT));
        let r = if in_task {
            tokio::spawn(async move { wait() }).await.unwrap()
        } else {
            wait()
        };
        let _ = release_tx.send(());
        holder.await.unwrap();
        r
    })
}

#[test]
fn blocking_acquire_while_a_sibling_task_holds_is_busy_with_a_reason_at_once() {
    for in_task in [false, true] {
        let name = unique("hand-ct-sibling");
        let n = name.clone();
        let start = Instant::now();
        let r = bounded(Duration::from_secs(30), move || {
            with_sibling_holder(n, in_task)
        });
        match r {
            Err(LockError::Busy {
                ref name,
                reentrant: false,
                reason: Some(ref why),
                ..
            }) => assert!(why.contains("this very thread"), "{name}: {why}"),
            other => panic!("in_task={in_task}: expected Busy with a reason, got {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5), "refused at once");
        assert!(!lock_core::is_locked(&name));
    }
}

#[test]
fn blocking_acquire_in_a_current_thread_runtime_waits_for_a_holder_on_another_thread() {
    let name = unique("hand-ct-other-thread");
    let held = HeldElsewhere::lock(&name);
    let start = Instant::now();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        held.release();
    });
    let n = name.clone();
    let got = bounded(Duration::from_secs(30), move || {
        current_thread().block_on(async move {
            lock_core::blocking_acquire(&n, Some(LIMIT)).map(|g| g.name().to_owned())
        })
    });
    assert_eq!(got.unwrap(), name);
    assert!(start.elapsed() >= Duration::from_millis(50), "it waited");
    releaser.join().unwrap();
}

#[test]
fn blocking_acquire_in_a_current_thread_runtime_waits_for_a_multi_thread_task() {
    let name = unique("hand-ct-mt-holder");
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let n = name.clone();
    let holder = mt.spawn(async move {
        let g = lock_core::acquire(&n).await.unwrap();
        held_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(g);
    });
    held_rx.recv_timeout(LIMIT).unwrap();
    let n = name.clone();
    let got = bounded(Duration::from_secs(30), move || {
        current_thread()
            .block_on(async move { lock_core::blocking_acquire(&n, Some(LIMIT)).map(drop) })
    });
    got.unwrap();
    mt.block_on(holder).unwrap();
}

// ---- item 8: Lock::run ----

#[tokio::test(flavor = "current_thread")]
async fn run_times_out_while_held_elsewhere_and_never_runs_the_body() {
    let name = unique("hand-run-timeout");
    let held = HeldElsewhere::lock(&name);
    let ran = AtomicBool::new(false);
    let start = Instant::now();
    let r = Lock::new(&name)
        .timeout(Duration::from_millis(100))
        .run(async { ran.store(true, Ordering::SeqCst) })
        .await;
    match r {
        Err(LockError::Timeout { waited, .. }) => assert!(waited >= Duration::from_millis(100)),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        !ran.load(Ordering::SeqCst),
        "the body must not run without the lock"
    );
    drop(held);
}

#[tokio::test(flavor = "current_thread")]
async fn run_runs_the_body_under_the_lock_and_releases_after() {
    let name = unique("hand-run-ok");
    let inside = Lock::new(&name)
        .timeout(LIMIT)
        .run(async { lock_core::is_locked(&name) })
        .await
        .unwrap();
    assert!(inside, "held while the body runs");
    assert!(!lock_core::is_locked(&name), "released after");
    let shared = Lock::new(&name).shared().run(async { 7 }).await.unwrap();
    assert_eq!(shared, 7);
    assert!(!lock_core::is_locked(&name));
}

#[tokio::test(flavor = "current_thread")]
async fn a_nested_acquire_inside_run_is_reentry() {
    let name = unique("hand-run-nested");
    let n = name.as_str();
    let results = Lock::new(n)
        .run(async {
            (
                tokio::time::timeout(LIMIT, lock_core::acquire(n)).await,
                lock_core::try_acquire(n),
                tokio::time::timeout(LIMIT, Lock::new(n).shared().acquire()).await,
                lock_core::blocking_acquire(n, Some(LIMIT)),
            )
        })
        .await
        .unwrap();
    assert_reentrant(results.0.expect("nested acquire hangs"), n);
    assert_reentrant(results.1, n);
    assert_reentrant(results.2.expect("nested shared acquire hangs"), n);
    assert_reentrant(results.3, n);
    let nested = Lock::new(n)
        .blocking_run(|| lock_core::try_acquire(n))
        .unwrap();
    assert_reentrant(nested, n);
}
