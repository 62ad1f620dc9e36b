//! The shapes of this round against their peers, each case's peers in one group:
//! 7. uncontended shared and counted holds: `tokio::sync::RwLock::read`,
//!    `tokio::sync::Semaphore`, serial_test's `#[parallel]`, and a raw `flock(LOCK_SH)`
//!    on an open descriptor for the file case;
//! 8. what the deadlock check costs: the contended case of `inprocess.rs` where every
//!    waiter also holds a lock of its own (so it registers its wait and the waits-for
//!    graph is searched) against the same where waiters hold nothing (check skipped);
//! 9. the lock-order checker: the uncontended attribute and a nested pair with the
//!    checker off (the default) and on;
//! 11. contended exclusive without a yield while holding (8 tasks, 2 workers, lock +
//!    increment): tokio's Mutex, `lock_core::acquire`, `#[locked]`.
//!
//! Run: `cargo bench -p lock-core-benches --bench shapes`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use lock_core::lockdep::{self, Setting};
use lock_core::Lock;
use lock_core_benches::runtime;

#[lock_core::locked(name = "bench-shared-attr", shared)]
async fn attr_shared() {}

#[lock_core::locked(name = "bench-permits-attr", permits = 4)]
async fn attr_permits() {}

#[lock_core::locked(name = "bench-exclusive-attr")]
async fn attr_exclusive() {}

#[lock_core::locked(name = "bench-shared-file", file, shared)]
fn attr_shared_file() {}

#[serial_test::parallel(bench_parallel)]
async fn parallel_async() {}

fn uncontended_shapes(c: &mut Criterion) {
    let rt = runtime(1);
    let mut g = c.benchmark_group("uncontended_shapes");

    let rw = tokio::sync::RwLock::new(());
    g.bench_function("tokio RwLock::read", |b| {
        b.to_async(&rt).iter(|| async { drop(rw.read().await) })
    });
    let sem = tokio::sync::Semaphore::new(4);
    g.bench_function("tokio Semaphore::acquire", |b| {
        b.to_async(&rt).iter(|| async { drop(sem.acquire().await) })
    });
    g.bench_function("serial_test #[parallel] async", |b| {
        b.to_async(&rt).iter(parallel_async)
    });
    g.bench_function("#[locked(shared)] async fn", |b| {
        b.to_async(&rt).iter(attr_shared)
    });
    g.bench_function("#[locked(permits = 4)] async fn", |b| {
        b.to_async(&rt).iter(attr_permits)
    });
    g.bench_function("#[locked] async fn (exclusive)", |b| {
        b.to_async(&rt).iter(attr_exclusive)
    });
    g.bench_function("Lock::new(n).shared().acquire()", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(Lock::new("bench-shared-hand").shared().acquire().await) })
    });
    g.bench_function("Lock::new(n).permits(4).acquire()", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(Lock::new("bench-permits-hand").permits(4).acquire().await) })
    });
    g.finish();
}

fn file_shared(c: &mut Criterion) {
    use std::os::fd::AsRawFd;
    let dir = std::env::temp_dir().join(format!("lock-core-bench-shapes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut g = c.benchmark_group("file_shared_uncontended");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("raw.lock"))
        .expect("open");
    let fd = f.as_raw_fd();
    g.bench_function("raw flock(LOCK_SH) on open fd (floor)", |b| {
        b.iter(|| {
            // SAFETY: flock(2) on a descriptor this function owns (kept open by `f`).
            let r = unsafe { libc::flock(fd, libc::LOCK_SH) };
            assert_eq!(r, 0);
            // SAFETY: as above.
            let r = unsafe { libc::flock(fd, libc::LOCK_UN) };
            assert_eq!(r, 0);
        })
    });
    let fdl = fd_lock::RwLock::new(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("fd-lock.lock"))
            .expect("open"),
    );
    g.bench_function("fd-lock RwLock::read", |b| {
        b.iter(|| drop(fdl.read().expect("read lock")))
    });
    let d = dir.clone();
    g.bench_function("Lock::new(n).dir(d).shared().try_acquire()", |b| {
        b.iter(|| {
            drop(
                Lock::new("bench-shared-file-hand")
                    .dir(&d)
                    .shared()
                    .try_acquire(),
            )
        })
    });
    g.bench_function("#[locked(file, shared)] sync fn", |b| {
        b.iter(attr_shared_file)
    });
    g.finish();
    drop(f);
    let _ = std::fs::remove_dir_all(&dir);
}

/// 8 tasks on 2 workers take `hot` in turn; with `hold_own`, each also holds a lock of
/// its own meanwhile (so its wait is registered with the deadlock check).
fn contended_run(rt: &tokio::runtime::Runtime, iters: u64, hold_own: bool) -> Duration {
    const TASKS: u64 = 8;
    let per_task = iters.div_ceil(TASKS);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let own = format!("bench-own-{t}");
                    let _mine = if hold_own {
                        Some(lock_core::acquire(&own).await.expect("own"))
                    } else {
                        None
                    };
                    for _ in 0..per_task {
                        let g = lock_core::acquire("bench-hot-deadlock").await.expect("hot");
                        let v = counter.load(Ordering::Relaxed);
                        counter.store(v + 1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                        drop(g);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
    let elapsed = start.elapsed();
    assert_eq!(
        counter.load(Ordering::SeqCst),
        per_task * TASKS,
        "lost update"
    );
    elapsed
}

fn deadlock_check(c: &mut Criterion) {
    let rt = runtime(2);
    let mut g = c.benchmark_group("contended_deadlock_check");
    g.bench_function("waiters hold nothing (check skipped)", |b| {
        b.iter_custom(|n| contended_run(&rt, n, false))
    });
    g.bench_function("waiters hold a lock (check runs)", |b| {
        b.iter_custom(|n| contended_run(&rt, n, true))
    });
    g.finish();
}

#[lock_core::locked(name = "bench-ld-outer")]
async fn ld_outer() {
    ld_inner().await;
}

#[lock_core::locked(name = "bench-ld-inner")]
async fn ld_inner() {}

fn lockdep_cost(c: &mut Criterion) {
    let rt = runtime(1);
    let mut g = c.benchmark_group("lockdep");
    for (label, setting) in [("off", Setting::Off), ("on", Setting::Report)] {
        lockdep::enable(setting);
        g.bench_function(format!("#[locked] async fn, checker {label}"), |b| {
            b.to_async(&rt).iter(attr_exclusive)
        });
        g.bench_function(format!("nested pair, checker {label}"), |b| {
            b.to_async(&rt).iter(ld_outer)
        });
    }
    lockdep::enable(Setting::Off);
    g.finish();
}

#[lock_core::locked(name = "bench-no-yield")]
async fn attr_no_yield(counter: &AtomicU64) {
    let v = counter.load(Ordering::Relaxed);
    counter.store(v + 1, Ordering::Relaxed);
}

/// 8 tasks on 2 workers, `per_task` lock + increment + unlock each (no yield inside).
fn no_yield_run<F>(rt: &tokio::runtime::Runtime, iters: u64, op: F) -> Duration
where
    F: Fn(Arc<AtomicU64>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Clone
        + Send
        + 'static,
{
    const TASKS: u64 = 8;
    let per_task = iters.div_ceil(TASKS);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (op, counter) = (op.clone(), counter.clone());
                tokio::spawn(async move {
                    for _ in 0..per_task {
                        op(counter.clone()).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
    let elapsed = start.elapsed();
    assert_eq!(
        counter.load(Ordering::SeqCst),
        per_task * TASKS,
        "lost update"
    );
    elapsed
}

fn contended_no_yield(c: &mut Criterion) {
    let rt = runtime(2);
    let mut g = c.benchmark_group("contended_no_yield_8_tasks_2_workers");
    let m = Arc::new(tokio::sync::Mutex::new(()));
    g.bench_function("tokio_mutex", |b| {
        b.iter_custom(|n| {
            let m = m.clone();
            no_yield_run(&rt, n, move |c| {
                let m = m.clone();
                Box::pin(async move {
                    let _g = m.lock().await;
                    let v = c.load(Ordering::Relaxed);
                    c.store(v + 1, Ordering::Relaxed);
                })
            })
        })
    });
    g.bench_function("lock_core::acquire", |b| {
        b.iter_custom(|n| {
            no_yield_run(&rt, n, |c| {
                Box::pin(async move {
                    let _g = lock_core::acquire("bench-no-yield-hand").await;
                    let v = c.load(Ordering::Relaxed);
                    c.store(v + 1, Ordering::Relaxed);
                })
            })
        })
    });
    g.bench_function("#[locked] async fn", |b| {
        b.iter_custom(|n| {
            no_yield_run(&rt, n, |c| Box::pin(async move { attr_no_yield(&c).await }))
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    uncontended_shapes(&mut c);
    file_shared(&mut c);
    deadlock_check(&mut c);
    lockdep_cost(&mut c);
    contended_no_yield(&mut c);
    c.final_summary();
}
