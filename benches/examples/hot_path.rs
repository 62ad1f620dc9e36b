//! A fixed workload for instruction-count profiling of the hot paths:
//! `valgrind --tool=callgrind target/release/examples/hot_path <case> <n>`.
//! Cases: `try` (try_acquire+drop of one name), `acquire` (async), `tokio` (tokio Mutex
//! floor), `attr` / `attr-sync` / `attr-file` (`#[locked]` fns), `attr-shared` /
//! `tokio-read` and `attr-permits` / `tokio-semaphore` (the shapes and their tokio peers), `file`
//! (`LockDir::try_acquire`), `fresh` (a new name each time), `contended` /
//! `contended-attr` / `contended-tokio` (8 tasks on 2 workers, as in the criterion
//! group: `acquire(name)`, a `#[locked]` fn, tokio's Mutex), `noyield` / `noyield-tokio`
//! (the same without a yield while holding: a `#[locked]` fn, tokio's Mutex),
//! `waits` / `waits-tokio` (8 tasks on a current-thread runtime, each holding across a
//! yield: every acquisition waits and is handed over, in the same order every run, so
//! callgrind counts the wait path's instructions exactly: a `#[locked]` fn, tokio's
//! Mutex).

#[lock_core::locked(name = "hot-attr")]
async fn attr() {}

#[lock_core::locked(name = "hot-attr-contended")]
async fn attr_contended() {
    tokio::task::yield_now().await;
}

#[lock_core::locked(name = "hot-attr-noyield")]
async fn attr_no_yield() {
    std::hint::black_box(());
}

#[lock_core::locked(name = "hot-attr-sync")]
fn attr_sync() {}

#[lock_core::locked(name = "hot-attr-shared", shared)]
async fn attr_shared() {}

#[lock_core::locked(name = "hot-attr-permits", permits = 4)]
async fn attr_permits() {}

#[lock_core::locked(name = "hot-attr-file", file)]
async fn attr_file() {}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "try".into());
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    match case.as_str() {
        "try" => {
            for _ in 0..n {
                drop(lock_core::try_acquire("hot"));
            }
        }
        "acquire" => rt.block_on(async {
            for _ in 0..n {
                drop(lock_core::acquire("hot").await);
            }
        }),
        "attr" => rt.block_on(async {
            for _ in 0..n {
                attr().await;
            }
        }),
        "attr-sync" => {
            for _ in 0..n {
                attr_sync();
            }
        }
        "file" => {
            let dir =
                lock_core::file::LockDir::new(std::env::temp_dir().join("lock-core-hot-path"));
            for _ in 0..n {
                drop(dir.try_acquire("hot-file"));
            }
        }
        "attr-file" => rt.block_on(async {
            for _ in 0..n {
                attr_file().await;
            }
        }),
        "tokio" => rt.block_on(async {
            let m = tokio::sync::Mutex::new(());
            for _ in 0..n {
                drop(m.lock().await);
            }
        }),
        "attr-shared" => rt.block_on(async {
            for _ in 0..n {
                attr_shared().await;
            }
        }),
        "tokio-read" => rt.block_on(async {
            let l = tokio::sync::RwLock::new(());
            for _ in 0..n {
                drop(l.read().await);
            }
        }),
        "attr-permits" => rt.block_on(async {
            for _ in 0..n {
                attr_permits().await;
            }
        }),
        "tokio-semaphore" => rt.block_on(async {
            let s = tokio::sync::Semaphore::new(4);
            for _ in 0..n {
                drop(s.acquire().await);
            }
        }),
        "fresh" => {
            let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
            for name in &names {
                drop(lock_core::try_acquire(name));
            }
        }
        "contended" | "contended-attr" | "contended-tokio" | "noyield" | "noyield-tokio" => {
            contended(&case, n)
        }
        "waits" | "waits-tokio" => waits(&rt, &case, n),
        other => eprintln!("unknown case {other}"),
    }
}

/// `n` lock/yield/unlock rounds spread over 8 tasks on a 2-worker runtime.
fn contended(case: &str, n: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let mutex = std::sync::Arc::new(tokio::sync::Mutex::new(0u64));
    rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let mutex = mutex.clone();
                let case = case.to_owned();
                tokio::spawn(async move {
                    for _ in 0..n / 8 {
                        match case.as_str() {
                            "contended-tokio" => {
                                let _g = mutex.lock().await;
                                tokio::task::yield_now().await;
                            }
                            "contended-attr" => attr_contended().await,
                            "noyield-tokio" => {
                                let mut g = mutex.lock().await;
                                *g += 1;
                            }
                            "noyield" => attr_no_yield().await,
                            _ => {
                                let _g = lock_core::acquire("hot-contended").await;
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
}

/// `n` acquisitions by 8 tasks on one thread, each holding across a yield: all but the
/// first queue behind a holder and are handed the lock.
fn waits(rt: &tokio::runtime::Runtime, case: &str, n: u64) {
    let mutex = std::rc::Rc::new(tokio::sync::Mutex::new(0u64));
    let local = tokio::task::LocalSet::new();
    local.block_on(rt, async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let mutex = mutex.clone();
                let tokio_mutex = case == "waits-tokio";
                tokio::task::spawn_local(async move {
                    for _ in 0..n / 8 {
                        if tokio_mutex {
                            let _g = mutex.lock().await;
                            tokio::task::yield_now().await;
                        } else {
                            attr_contended().await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
}
