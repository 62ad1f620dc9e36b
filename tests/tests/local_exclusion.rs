//! Mutual exclusion, FIFO order, timeouts and mixed sync/async callers of in-process locks.

use std::sync::Arc;
use std::time::Duration;

use futures::poll;
use lock_core::LockError;
use lock_core_tests::{unique, HeldElsewhere, Overlap};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_on_a_multi_thread_runtime_never_overlap() {
    let name = Arc::new(unique("excl-mt"));
    let overlap = Arc::new(Overlap::new());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (name, overlap) = (name.clone(), overlap.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let g = lock_core::acquire(&name).await.unwrap();
                let inside = overlap.enter();
                tokio::task::yield_now().await;
                drop(inside);
                drop(g);
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks))
        .await
        .expect("tasks finish")
        .into_iter()
        .for_each(|r| r.unwrap());
    assert_eq!(overlap.max(), 1);
    assert_eq!(overlap.entries(), 16 * 50);
    assert!(!lock_core::is_locked(&name));
}

#[tokio::test(flavor = "current_thread")]
async fn scoped_futures_joined_in_one_task_queue_and_never_overlap() {
    let name = unique("excl-joined");
    let overlap = Overlap::new();
    let work = (0..16).map(|_| {
        let (name, overlap) = (&name, &overlap);
        async move {
            for _ in 0..20 {
                // Scoped holds are precise: sibling futures of one task are not one call
                // chain, so they queue instead of being refused as re-entry.
                lock_core::with_lock(name, async {
                    let _inside = overlap.enter();
                    tokio::task::yield_now().await;
                })
                .await
                .unwrap();
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(work))
        .await
        .expect("joined futures finish");
    assert_eq!(overlap.max(), 1);
    assert_eq!(overlap.entries(), 16 * 20);
}

#[tokio::test(flavor = "current_thread")]
async fn hand_taken_guards_in_concurrent_sub_futures_queue() {
    use futures::stream::{FuturesUnordered, StreamExt};
    let name = unique("excl-unordered");
    let overlap = Overlap::new();
    // `FuturesUnordered` (and so `buffer_unordered`) gives every sub-future its own
    // waker: each is its own call chain, and hand-taken guards queue.
    let mut work: FuturesUnordered<_> = (0..8)
        .map(|_| {
            let (name, overlap) = (&name, &overlap);
            async move {
                for _ in 0..20 {
                    let g = lock_core::acquire(name).await.unwrap();
                    let inside = overlap.enter();
                    tokio::task::yield_now().await;
                    drop(inside);
                    drop(g);
                }
            }
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(60), async {
        while work.next().await.is_some() {}
    })
    .await
    .expect("sub-futures finish");
    assert_eq!(overlap.max(), 1);
    assert_eq!(overlap.entries(), 8 * 20);
}

#[tokio::test(flavor = "current_thread")]
async fn hand_taken_guards_in_joined_futures_count_for_their_task() {
    // `join!` polls its futures with the task's own waker, so a hand-taken guard counts
    // for the whole task: a joined sibling asking for the name is refused at once
    // (waiting could deadlock if the holder waited for the sibling). Scoped holds
    // (`with_lock`, `#[locked]`) are precise and would queue; see above.
    let name = unique("excl-join-hand");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let first = async {
        let g = lock_core::acquire(&name).await.unwrap();
        let _ = rx.await;
        drop(g);
    };
    let second = async {
        tokio::task::yield_now().await;
        let r = lock_core::acquire(&name).await;
        let _ = tx.send(());
        r
    };
    let (_, second) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(first, second)
    })
    .await
    .expect("neither side hangs");
    match second {
        Err(LockError::Busy {
            reentrant: true, ..
        }) => {}
        other => panic!("expected re-entrant Busy, got {other:?}"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn waiters_are_served_in_arrival_order() {
    let name = unique("fifo");
    let holder = HeldElsewhere::lock(&name);
    let mut waiters: Vec<_> = (0..8)
        .map(|_| Box::pin(lock_core::acquire(&name)))
        .collect();
    for w in waiters.iter_mut() {
        assert!(poll!(w.as_mut()).is_pending(), "queued behind the holder");
    }
    // A late try_acquire must not barge past the queue, even between hand-offs.
    drop(holder);
    for i in 0..waiters.len() {
        assert!(lock_core::try_acquire(&name).is_err());
        for later in waiters.iter_mut().skip(i + 1) {
            assert!(
                poll!(later.as_mut()).is_pending(),
                "waiter after {i} must not win"
            );
        }
        let g = poll!(waiters[i].as_mut());
        let g = match g {
            std::task::Poll::Ready(g) => g.unwrap(),
            std::task::Poll::Pending => panic!("waiter {i} should own the lock now"),
        };
        drop(g);
    }
    assert!(!lock_core::is_locked(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_is_honoured_and_reports_the_wait() {
    let name = unique("timeout");
    let _held = HeldElsewhere::lock(&name);
    let start = std::time::Instant::now();
    let err = lock_core::acquire_timeout(&name, Duration::from_millis(150))
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    match &err {
        LockError::Timeout {
            name: n,
            waited,
            holder,
        } => {
            assert_eq!(n, &name);
            assert!(*waited >= Duration::from_millis(150), "waited {waited:?}");
            let h = holder.as_ref().expect("holder known in-process");
            assert_eq!(h.pid, Some(std::process::id()));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(elapsed >= Duration::from_millis(150));
    assert!(
        elapsed < Duration::from_secs(5),
        "gave up far too late: {elapsed:?}"
    );
    assert_eq!(err.code(), 8403);
    // The timed-out waiter left the queue: once the holder goes, the lock is free.
    drop(_held);
    assert!(lock_core::try_acquire(&name).is_ok());
}

#[tokio::test(flavor = "current_thread")]
async fn zero_timeout_tries_once() {
    let name = unique("zero");
    let held = HeldElsewhere::lock(&name);
    let err = lock_core::acquire_timeout(&name, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LockError::Busy {
                reentrant: false,
                ..
            }
        ),
        "{err:?}"
    );
    drop(held);
    assert!(lock_core::acquire_timeout(&name, Duration::ZERO)
        .await
        .is_ok());
}

#[test]
fn try_acquire_and_is_locked() {
    let name = unique("try");
    assert!(!lock_core::is_locked(&name));
    let g = lock_core::try_acquire(&name).unwrap();
    assert!(lock_core::is_locked(&name));
    assert_eq!(g.name(), name);
    let other = std::thread::spawn({
        let name = name.clone();
        move || lock_core::try_acquire(&name).map(|_| ())
    })
    .join()
    .unwrap();
    let err = other.unwrap_err();
    assert!(
        matches!(
            err,
            LockError::Busy {
                reentrant: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), 8406);
    assert!(err.to_string().contains(&name));
    g.release().unwrap();
    assert!(!lock_core::is_locked(&name));
}

#[test]
fn sync_threads_and_async_tasks_exclude_each_other_on_one_name() {
    let name = Arc::new(unique("mixed"));
    let overlap = Arc::new(Overlap::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (name, overlap) = (name.clone(), overlap.clone());
        threads.push(std::thread::spawn(move || {
            for _ in 0..100 {
                let g = lock_core::blocking_acquire(&name, Some(Duration::from_secs(30))).unwrap();
                let inside = overlap.enter();
                std::thread::yield_now();
                drop(inside);
                drop(g);
            }
        }));
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (name, overlap) = (name.clone(), overlap.clone());
            rt.spawn(async move {
                for _ in 0..100 {
                    let g = lock_core::acquire(&name).await.unwrap();
                    let inside = overlap.enter();
                    tokio::task::yield_now().await;
                    drop(inside);
                    drop(g);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    rt.block_on(async {
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .unwrap()
                .unwrap();
        }
    });
    assert_eq!(overlap.max(), 1);
    assert_eq!(overlap.entries(), 800);
}

#[test]
fn blocking_acquire_times_out_and_names_the_lock() {
    let name = unique("blocking-timeout");
    let held = lock_core::try_acquire(&name).unwrap();
    let n2 = name.clone();
    let err = std::thread::spawn(move || {
        lock_core::blocking_acquire(&n2, Some(Duration::from_millis(100))).map(|_| ())
    })
    .join()
    .unwrap()
    .unwrap_err();
    assert!(
        matches!(&err, LockError::Timeout { waited, .. } if *waited >= Duration::from_millis(100)),
        "{err:?}"
    );
    assert!(err.to_string().contains(&name));
    drop(held);
    assert!(lock_core::blocking_acquire(&name, Some(Duration::ZERO)).is_ok());
}

#[test]
fn a_guard_dropped_on_another_thread_releases() {
    let name = unique("send");
    let g = lock_core::try_acquire(&name).unwrap();
    std::thread::spawn(move || drop(g)).join().unwrap();
    assert!(!lock_core::is_locked(&name));
    assert!(lock_core::try_acquire(&name).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_waiter_inside_a_runtime_gets_the_lock_after_release() {
    let name = unique("block-in-place");
    let held = lock_core::acquire(&name).await.unwrap();
    let n2 = name.clone();
    let waiter = tokio::spawn(async move {
        // Blocks this worker (announced with block_in_place) until the holder releases.
        lock_core::blocking_acquire(&n2, Some(Duration::from_secs(30))).map(|g| g.name().to_owned())
    });
    // The other tasks of the runtime still run, so the holder can release.
    tokio::task::yield_now().await;
    drop(held);
    let got = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.unwrap(), name);
}

#[tokio::test(flavor = "current_thread")]
async fn guard_reports_how_long_it_is_held() {
    let g = lock_core::acquire(&unique("held-for")).await.unwrap();
    let first = g.held_for();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(g.held_for() >= first + Duration::from_millis(20));
    assert!(format!("{g:?}").contains("held-for"));
}

#[test]
fn futures_and_guards_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let acquire = lock_core::acquire("send-check");
    is_send(&acquire);
    let timed = lock_core::acquire_timeout("send-check", Duration::from_millis(1));
    is_send(&timed);
    let scoped = lock_core::with_lock("send-check", async {});
    is_send(&scoped);
    let guard = lock_core::try_acquire(&unique("send-guard")).unwrap();
    is_send(&guard);
    let scope = lock_core::scope(&guard, async {});
    is_send(&scope);
}
