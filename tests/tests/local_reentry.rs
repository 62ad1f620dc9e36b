//! Re-entry is refused at once; different tasks (even on one thread) queue instead.

use std::time::Duration;

use lock_core::LockError;
use lock_core_tests::unique;

fn assert_reentrant(r: Result<lock_core::LockGuard, LockError>, name: &str) {
    match r {
        Err(LockError::Busy {
            name: n,
            reentrant: true,
            ..
        }) => assert_eq!(n, name),
        other => panic!("expected re-entrant Busy, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn async_reentry_is_busy_for_every_verb() {
    let name = unique("reenter-async");
    let n = name.as_str();
    lock_core::with_lock(n, async {
        assert_reentrant(lock_core::acquire(n).await, n);
        assert_reentrant(
            lock_core::acquire_timeout(n, Duration::from_secs(5)).await,
            n,
        );
        assert_reentrant(lock_core::try_acquire(n), n);
        // Nested deeper: an awaited helper future is still the same call chain.
        async fn deeper(n: &str) -> Result<lock_core::LockGuard, LockError> {
            lock_core::acquire(n).await
        }
        assert_reentrant(deeper(n).await, n);
        // Other names are not affected.
        let other = unique("reenter-other");
        assert!(lock_core::acquire(&other).await.is_ok());
    })
    .await
    .unwrap();
    assert!(!lock_core::is_locked(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reentry_is_detected_after_the_task_moves_between_threads() {
    let name = unique("reenter-moving");
    let n = name.clone();
    tokio::spawn(async move {
        lock_core::with_lock(&n, async {
            for _ in 0..50 {
                tokio::task::yield_now().await;
                assert_reentrant(lock_core::acquire(&n).await, &n);
            }
        })
        .await
        .unwrap();
    })
    .await
    .unwrap();
}

#[test]
fn sync_reentry_on_the_same_thread_is_busy() {
    let name = unique("reenter-sync");
    let g = lock_core::blocking_acquire(&name, None).unwrap();
    assert_reentrant(
        lock_core::blocking_acquire(&name, Some(Duration::from_secs(5))),
        &name,
    );
    assert_reentrant(lock_core::blocking_acquire(&name, None), &name);
    assert_reentrant(lock_core::try_acquire(&name), &name);
    drop(g);
    assert!(lock_core::blocking_acquire(&name, None).is_ok());
}

#[test]
fn two_tasks_on_one_thread_queue_rather_than_being_refused() {
    let name = unique("two-tasks");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    local.block_on(&rt, async {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (n1, o1) = (name.clone(), order.clone());
        let a = tokio::task::spawn_local(async move {
            lock_core::with_lock(&n1, async {
                o1.borrow_mut().push("a-in");
                // Hold the lock across an await that lets task b run on this thread.
                let _ = rx.await;
                o1.borrow_mut().push("a-out");
            })
            .await
            .unwrap();
        });
        tokio::task::yield_now().await;
        let (n2, o2) = (name.clone(), order.clone());
        let b = tokio::task::spawn_local(async move {
            let g = lock_core::acquire(&n2)
                .await
                .expect("b queues, it is not re-entry");
            o2.borrow_mut().push("b-in");
            drop(g);
        });
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            a.await.unwrap();
            b.await.unwrap();
        })
        .await
        .unwrap();
    });
    assert_eq!(*order.borrow(), vec!["a-in", "a-out", "b-in"]);
}

#[test]
fn blocking_acquire_inside_a_locked_async_body_is_reentry() {
    let name = unique("reenter-mixed");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        lock_core::with_lock(&name, async {
            // A sync helper called from the locked body is part of the same call chain.
            assert_reentrant(
                lock_core::blocking_acquire(&name, Some(Duration::from_secs(5))),
                &name,
            );
        })
        .await
        .unwrap();
    });
}

#[tokio::test(flavor = "current_thread")]
async fn the_scope_ends_with_its_future() {
    let name = unique("reenter-scope-end");
    // Taken on a thread of its own: outside the scope, this task does not hold it.
    let n = name.clone();
    let g = tokio::task::spawn_blocking(move || lock_core::blocking_acquire(&n, None))
        .await
        .unwrap()
        .unwrap();
    let n = name.clone();
    lock_core::scope(&g, async move {
        assert_reentrant(lock_core::try_acquire(&n), &n);
    })
    .await;
    // Outside the scope the guard is just held: a try is plainly busy, not re-entry.
    match lock_core::try_acquire(&name) {
        Err(LockError::Busy {
            reentrant: false, ..
        }) => {}
        other => panic!("expected plain Busy, got {other:?}"),
    }
    drop(g);
    assert!(lock_core::try_acquire(&name).is_ok());
}

/// A locked body asks for its own name again in every shape, through the attribute's
/// fast path: refused as re-entry in every pair of modes (before or after the lock's own
/// attempt), never a join of its own shared or counted hold, never a hang.
#[tokio::test(flavor = "current_thread")]
async fn a_locked_body_asking_again_in_any_mode_is_reentrant() {
    const LIMIT: Duration = Duration::from_secs(5);

    #[lock_core::locked(name = "{n}")]
    async fn exclusive(n: &str) -> Result<(), LockError> {
        Ok(())
    }
    #[lock_core::locked(name = "{n}", shared)]
    async fn shared(n: &str) -> Result<(), LockError> {
        Ok(())
    }
    #[lock_core::locked(name = "{n}", permits = 3)]
    async fn permit(n: &str) -> Result<(), LockError> {
        Ok(())
    }
    #[lock_core::locked(name = "fixed-reentry-shapes", shared)]
    async fn fixed_shared() -> Result<(), LockError> {
        Ok(())
    }
    #[lock_core::locked(name = "fixed-reentry-shapes")]
    async fn fixed_exclusive() -> Result<(), LockError> {
        Ok(())
    }

    fn assert_refused(r: Result<Result<(), LockError>, tokio::time::error::Elapsed>, what: &str) {
        match r {
            Ok(Err(LockError::Busy {
                reentrant: true, ..
            })) => {}
            Ok(other) => panic!("{what}: expected re-entrant Busy, got {other:?}"),
            Err(_) => panic!("{what}: hangs"),
        }
    }

    let name = unique("reenter-shapes");
    let n = name.as_str();
    // Outer exclusive: the inner attempt is refused by the lock, then found re-entrant.
    lock_core::Lock::new(n)
        .run(async {
            assert_refused(tokio::time::timeout(LIMIT, exclusive(n)).await, "x in x");
            assert_refused(tokio::time::timeout(LIMIT, shared(n)).await, "s in x");
        })
        .await
        .unwrap();
    // Outer shared: a shared request would join its own hold (checked before the attempt).
    lock_core::Lock::new(n)
        .shared()
        .run(async {
            assert_refused(tokio::time::timeout(LIMIT, shared(n)).await, "s in s");
            assert_refused(tokio::time::timeout(LIMIT, exclusive(n)).await, "x in s");
            // Another shape: re-entry is said before the mismatch.
            assert_refused(tokio::time::timeout(LIMIT, permit(n)).await, "p in s");
        })
        .await
        .unwrap();
    // Outer counted, with permits to spare: joining its own hold is still re-entry.
    lock_core::Lock::new(n)
        .permits(3)
        .run(async {
            assert_refused(tokio::time::timeout(LIMIT, permit(n)).await, "p in p");
            assert_refused(tokio::time::timeout(LIMIT, exclusive(n)).await, "x in p");
        })
        .await
        .unwrap();
    assert!(!lock_core::is_locked(n));
    // The fixed-name fast path (no name formatting) behaves the same.
    async fn outer_fixed() -> Result<(), LockError> {
        assert_refused(
            tokio::time::timeout(LIMIT, fixed_exclusive()).await,
            "fixed x in s",
        );
        assert_refused(
            tokio::time::timeout(LIMIT, fixed_shared()).await,
            "fixed s in s",
        );
        Ok(())
    }
    lock_core::Lock::new("fixed-reentry-shapes")
        .shared()
        .run(outer_fixed())
        .await
        .unwrap()
        .unwrap();
    // And after the body, every shape is free to take again.
    shared(n).await.unwrap();
    exclusive(n).await.unwrap();
}
