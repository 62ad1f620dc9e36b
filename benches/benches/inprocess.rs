//! In-process locks against their peers, each case's peers in one group:
//! 1. uncontended acquire+release, 2. contended (8 tasks, 2 workers), 3. 1M distinct names.
//!
//! Run: `cargo bench -p lock-core-benches --bench inprocess`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use lock_core_benches::{rss_bytes, runtime};
use lockable::LockPool;

#[lock_core::locked(name = "bench-attr")]
async fn attr_fixed() {}

#[lock_core::locked(name = "bench-attr-sync")]
fn attr_fixed_sync() {}

#[lock_core::locked(name = "hot")]
async fn attr_hot(counter: Arc<AtomicU64>) {
    unprotected_increment(&counter);
    tokio::task::yield_now().await;
}

#[serial_test::serial(bench_serial)]
async fn serial_async() {}

#[serial_test::serial(bench_serial_sync)]
fn serial_sync() {}

fn uncontended(c: &mut Criterion) {
    let rt = runtime(1);
    let mut g = c.benchmark_group("uncontended");

    let std_mutex = std::sync::Mutex::new(());
    g.bench_function("std_mutex (floor)", |b| b.iter(|| drop(std_mutex.lock())));

    let tokio_mutex = tokio::sync::Mutex::new(());
    g.bench_function("tokio_mutex", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(tokio_mutex.lock().await) })
    });

    let pool_static: LockPool<&'static str> = LockPool::new();
    g.bench_function("lockable &'static str", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(pool_static.async_lock("db").await) })
    });
    let pool_string: LockPool<String> = LockPool::new();
    g.bench_function("lockable String", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(pool_string.async_lock("db".to_owned()).await) })
    });

    g.bench_function("serial_test async", |b| b.to_async(&rt).iter(serial_async));
    g.bench_function("serial_test sync", |b| b.iter(serial_sync));

    g.bench_function("lock_core::acquire", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(lock_core::acquire("bench-fn").await) })
    });
    g.bench_function("lock_core::try_acquire", |b| {
        b.iter(|| drop(lock_core::try_acquire("bench-try")))
    });
    g.bench_function("#[locked] async fn", |b| b.to_async(&rt).iter(attr_fixed));
    g.bench_function("#[locked] sync fn", |b| b.iter(attr_fixed_sync));
    g.finish();
}

/// Runs `per_task` lock/increment/unlock rounds in each of 8 tasks on a 2-worker
/// runtime and returns the elapsed time, after checking that no increment was lost.
fn contended_run<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, op: F) -> Duration
where
    F: Fn(Arc<AtomicU64>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
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
            t.await.expect("bench task");
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

/// A read-modify-write that loses updates unless the caller holds a lock.
fn unprotected_increment(counter: &AtomicU64) {
    let v = counter.load(Ordering::Relaxed);
    counter.store(v + 1, Ordering::Relaxed);
}

fn contended(c: &mut Criterion) {
    let rt = runtime(2);
    let mut g = c.benchmark_group("contended_8_tasks_2_workers");
    let tokio_mutex = Arc::new(tokio::sync::Mutex::new(()));
    g.bench_function("tokio_mutex", |b| {
        b.iter_custom(|iters| {
            let m = tokio_mutex.clone();
            contended_run(&rt, iters, move |c| {
                let m = m.clone();
                async move {
                    let _g = m.lock().await;
                    unprotected_increment(&c);
                    tokio::task::yield_now().await;
                }
            })
        })
    });
    let pool: Arc<LockPool<&'static str>> = Arc::new(LockPool::new());
    g.bench_function("lockable", |b| {
        b.iter_custom(|iters| {
            let p = pool.clone();
            contended_run(&rt, iters, move |c| {
                let p = p.clone();
                async move {
                    let _g = p.async_lock("hot").await;
                    unprotected_increment(&c);
                    tokio::task::yield_now().await;
                }
            })
        })
    });
    g.bench_function("#[locked] async fn", |b| {
        b.iter_custom(|iters| contended_run(&rt, iters, attr_hot))
    });
    g.bench_function("lock_core::acquire", |b| {
        b.iter_custom(|iters| {
            contended_run(&rt, iters, |c| async move {
                let _g = lock_core::acquire("hot").await.expect("lock");
                unprotected_increment(&c);
                tokio::task::yield_now().await;
            })
        })
    });
    g.finish();
}

fn many_names(c: &mut Criterion) {
    const NAMES: usize = 1_000_000;
    let names: Vec<String> = (0..NAMES).map(|i| format!("name-{i}")).collect();
    let rt = runtime(1);
    let mut g = c.benchmark_group("1M_distinct_names");
    g.sample_size(10);
    let pool: LockPool<String> = LockPool::new();
    // lockable takes its keys by value: here they are moved in, made outside the timing.
    g.bench_function("lockable (owned names, moved in)", |b| {
        b.to_async(&rt).iter_batched(
            || names.clone(),
            |names| async {
                for n in names {
                    drop(pool.async_lock(n).await);
                }
            },
            BatchSize::PerIteration,
        )
    });
    // The same input as lock_core gets: borrowed names, so lockable's owned key is
    // made per call (what a caller holding `&str` names has to do).
    g.bench_function("lockable (borrowed names)", |b| {
        b.to_async(&rt).iter(|| async {
            for n in &names {
                drop(pool.async_lock(n.clone()).await);
            }
        })
    });
    g.bench_function("lock_core", |b| {
        b.to_async(&rt).iter(|| async {
            for n in &names {
                drop(lock_core::acquire(n).await);
            }
        })
    });
    g.finish();
    eprintln!(
        "after 1M names: lock_core registry = {} names, lockable locked = {}, RSS = {} MiB",
        lock_core::registered_names(),
        pool.num_locked(),
        rss_bytes().unwrap_or(0) / (1024 * 1024)
    );
}

criterion_group!(benches, uncontended, contended, many_names);
criterion_main!(benches);
