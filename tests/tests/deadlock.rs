//! Cycles of waits are refused with `Deadlock` (8410): exactly one waiter of each cycle
//! fails, at once, and the error names every lock and holder; the others go on. Every
//! second acquisition has a timeout, so a missed detection fails in seconds with
//! `Timeout` instead of hanging.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use lock_core::{Lock, LockError};
use lock_core_tests::unique;

const WAIT: Duration = Duration::from_secs(5);

/// Exactly one of two outcomes is `Deadlock`, the other succeeded.
fn one_deadlock<T: std::fmt::Debug>(a: Result<T, LockError>, b: Result<T, LockError>) -> LockError {
    match (a, b) {
        (Err(e @ LockError::Deadlock { .. }), Ok(_))
        | (Ok(_), Err(e @ LockError::Deadlock { .. })) => e,
        other => panic!("expected exactly one Deadlock, got {other:?}"),
    }
}

/// Takes `first`, meets the other chain, then takes `second` (with a timeout).
async fn cross(
    first: String,
    second: String,
    meet: Arc<tokio::sync::Barrier>,
) -> Result<(), LockError> {
    let g = lock_core::acquire(&first).await?;
    meet.wait().await;
    let r = lock_core::acquire_timeout(&second, WAIT).await;
    // The loser gives its first lock back (with the error), which lets the winner in.
    drop(g);
    r.map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abba_between_tasks_on_a_multi_thread_runtime() {
    let (a, b) = (unique("dl-a"), unique("dl-b"));
    let meet = Arc::new(tokio::sync::Barrier::new(2));
    let t1 = tokio::spawn(cross(a.clone(), b.clone(), meet.clone()));
    let t2 = tokio::spawn(cross(b.clone(), a.clone(), meet));
    let e = one_deadlock(t1.await.unwrap(), t2.await.unwrap());
    assert_eq!(e.code(), 8410);
    let text = e.to_string();
    assert!(
        text.contains(&a) && text.contains(&b),
        "names both locks: {text}"
    );
    assert!(text.contains("this call chain"), "{text}");
    let LockError::Deadlock { cycle, .. } = &e else {
        unreachable!()
    };
    assert_eq!(cycle.len(), 2, "{cycle:?}");
    assert!(!lock_core::is_locked(&a) && !lock_core::is_locked(&b));
}

#[tokio::test(flavor = "current_thread")]
async fn abba_between_tasks_on_a_current_thread_runtime() {
    let (a, b) = (unique("dl-ct-a"), unique("dl-ct-b"));
    let meet = Arc::new(tokio::sync::Barrier::new(2));
    let t1 = tokio::spawn(cross(a.clone(), b.clone(), meet.clone()));
    let t2 = tokio::spawn(cross(b, a, meet));
    one_deadlock(t1.await.unwrap(), t2.await.unwrap());
}

#[lock_core::locked(name = "dl-attr-{first}", timeout_ms = 5_000)]
async fn scoped_cross(
    first: &str,
    second: &str,
    meet: &tokio::sync::Barrier,
) -> Result<(), LockError> {
    meet.wait().await;
    // Nested: the scope of the outer fn holds `first`.
    Lock::new(&format!("dl-attr-{second}"))
        .timeout(WAIT)
        .run(async {})
        .await
}

#[tokio::test(flavor = "current_thread")]
async fn abba_between_locked_bodies_is_found_through_their_scopes() {
    let (a, b) = (unique("x"), unique("y"));
    let meet = tokio::sync::Barrier::new(2);
    let (r1, r2) = tokio::join!(scoped_cross(&a, &b, &meet), scoped_cross(&b, &a, &meet));
    let e = one_deadlock(r1, r2);
    let text = e.to_string();
    assert!(text.contains("scoped_cross"), "names the locked fn: {text}");
}

#[test]
fn abba_between_threads() {
    let (a, b) = (unique("dl-th-a"), unique("dl-th-b"));
    let meet = Arc::new(Barrier::new(2));
    let spawn = |first: String, second: String, meet: Arc<Barrier>| {
        std::thread::spawn(move || {
            let g = lock_core::blocking_acquire(&first, Some(WAIT))?;
            meet.wait();
            let r = lock_core::blocking_acquire(&second, Some(WAIT));
            drop(g);
            r.map(drop)
        })
    };
    let t1 = spawn(a.clone(), b.clone(), meet.clone());
    let t2 = spawn(b, a, meet);
    let e = one_deadlock(t1.join().unwrap(), t2.join().unwrap());
    assert!(e.to_string().contains("thread #"), "{e}");
}

#[test]
fn abba_between_a_thread_and_a_task() {
    let (a, b) = (unique("dl-mix-a"), unique("dl-mix-b"));
    let meet = Arc::new(Barrier::new(2));
    let thread = {
        let (a, b, meet) = (a.clone(), b.clone(), meet.clone());
        std::thread::spawn(move || {
            let g = lock_core::blocking_acquire(&a, Some(WAIT))?;
            meet.wait();
            let r = lock_core::blocking_acquire(&b, Some(WAIT));
            drop(g);
            r.map(drop)
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let task = rt.block_on(async move {
        tokio::spawn(async move {
            let g = lock_core::acquire(&b).await?;
            tokio::task::spawn_blocking(move || meet.wait())
                .await
                .unwrap();
            let r = lock_core::acquire_timeout(&a, WAIT).await;
            drop(g);
            r.map(drop)
        })
        .await
        .unwrap()
    });
    one_deadlock(thread.join().unwrap(), task);
}

#[test]
fn a_three_cycle_is_reported_with_every_lock() {
    let names: Vec<String> = (0..3).map(|i| unique(&format!("dl-3-{i}"))).collect();
    let meet = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let (first, second) = (names[i].clone(), names[(i + 1) % 3].clone());
            let meet = meet.clone();
            std::thread::spawn(move || {
                let g = lock_core::blocking_acquire(&first, Some(WAIT))?;
                meet.wait();
                let r = lock_core::blocking_acquire(&second, Some(WAIT));
                drop(g);
                r.map(drop)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let deadlocks: Vec<&LockError> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .inspect(|e| assert!(matches!(e, LockError::Deadlock { .. }), "{e}"))
        .collect();
    assert_eq!(deadlocks.len(), 1, "{results:?}");
    let LockError::Deadlock { cycle, .. } = deadlocks[0] else {
        unreachable!()
    };
    assert_eq!(cycle.len(), 3, "{cycle:?}");
    for n in &names {
        assert!(cycle.iter().any(|s| &s.lock == n), "{n} in {cycle:?}");
    }
}

#[test]
fn abba_through_file_locks_in_one_process() {
    let dir = std::env::temp_dir().join(unique("lock-core-dl-files"));
    let (a, b) = (unique("dl-f-a"), unique("dl-f-b"));
    let meet = Arc::new(Barrier::new(2));
    let spawn = |first: String, second: String, meet: Arc<Barrier>, dir: std::path::PathBuf| {
        std::thread::spawn(move || {
            let g = Lock::new(&first)
                .dir(&dir)
                .timeout(WAIT)
                .blocking_acquire()?;
            meet.wait();
            let r = Lock::new(&second)
                .dir(&dir)
                .timeout(WAIT)
                .blocking_acquire();
            drop(g);
            r.map(drop)
        })
    };
    let t1 = spawn(a.clone(), b.clone(), meet.clone(), dir.clone());
    let t2 = spawn(b, a, meet, dir.clone());
    one_deadlock(t1.join().unwrap(), t2.join().unwrap());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_shared_holder_is_a_holder() {
    // A holds `x` shared and waits for `y`; B holds `y` and asks `x` exclusively: B's
    // wait needs A to leave, and A waits for B.
    let (x, y) = (unique("dl-sh-x"), unique("dl-sh-y"));
    let meet = Arc::new(Barrier::new(2));
    let a = {
        let (x, y, meet) = (x.clone(), y.clone(), meet.clone());
        std::thread::spawn(move || {
            let g = Lock::new(&x).shared().blocking_acquire()?;
            meet.wait();
            let r = Lock::new(&y).timeout(WAIT).blocking_acquire();
            drop(g);
            r.map(drop)
        })
    };
    let b = std::thread::spawn(move || {
        let g = Lock::new(&y).blocking_acquire()?;
        meet.wait();
        let r = Lock::new(&x).timeout(WAIT).blocking_acquire();
        drop(g);
        r.map(drop)
    });
    one_deadlock(a.join().unwrap(), b.join().unwrap());
}

#[test]
fn a_counted_wait_with_a_free_holder_is_no_deadlock() {
    // `gpu` (2 permits) is held by A, which waits for `x` (held by C), and by B, which
    // waits for nothing and lets go soon. C waits for a permit: B's release ends it, so
    // this is no deadlock and nobody may be refused.
    let (gpu, x) = (unique("dl-gpu"), unique("dl-cx"));
    let c_holds_x = Arc::new(Barrier::new(4));
    let a = {
        let (gpu, x, bar) = (gpu.clone(), x.clone(), c_holds_x.clone());
        std::thread::spawn(move || {
            let g = Lock::new(&gpu).permits(2).blocking_acquire()?;
            bar.wait();
            let r = Lock::new(&x).timeout(WAIT).blocking_acquire();
            drop(g);
            r.map(drop)
        })
    };
    let b = {
        let (gpu, bar) = (gpu.clone(), c_holds_x.clone());
        std::thread::spawn(move || {
            let g = Lock::new(&gpu).permits(2).blocking_acquire()?;
            bar.wait();
            std::thread::sleep(Duration::from_millis(200));
            drop(g);
            Ok::<(), LockError>(())
        })
    };
    let c = {
        let (gpu, x, bar) = (gpu.clone(), x.clone(), c_holds_x.clone());
        std::thread::spawn(move || {
            let g = Lock::new(&x).blocking_acquire()?;
            bar.wait();
            let r = Lock::new(&gpu).permits(2).timeout(WAIT).blocking_acquire();
            drop(g);
            r.map(drop)
        })
    };
    c_holds_x.wait();
    c.join().unwrap().expect("C gets B's permit");
    b.join().unwrap().unwrap();
    a.join().unwrap().expect("A gets x once C is done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_false_positive_under_random_acquisitions_in_sorted_order() {
    // 100_000 acquisitions over random nested sets of 1..=3 names out of 6, always taken
    // in sorted order: never a cycle, so never a Deadlock.
    let names: Arc<Vec<String>> =
        Arc::new((0..6).map(|i| unique(&format!("dl-rand-{i}"))).collect());
    const TASKS: u64 = 8;
    const ROUNDS: u64 = 100_000 / TASKS / 2;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let names = names.clone();
            tokio::spawn(async move {
                let mut rng = lock_core_tests::Rng::new(0x5eed + t);
                let mut taken = 0u64;
                for _ in 0..ROUNDS {
                    let mut pick: Vec<usize> = (0..1 + rng.below(3) as usize)
                        .map(|_| rng.below(6) as usize)
                        .collect();
                    pick.sort_unstable();
                    pick.dedup();
                    let mut guards = Vec::new();
                    for &i in &pick {
                        let g = lock_core::acquire_timeout(&names[i], WAIT)
                            .await
                            .unwrap_or_else(|e| panic!("no cycle was possible: {e}"));
                        guards.push(g);
                        taken += 1;
                        if rng.below(4) == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    drop(guards);
                }
                taken
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("bounded")
            .unwrap();
    }
    assert!(total >= 100_000 / 2, "{total} acquisitions");
}
