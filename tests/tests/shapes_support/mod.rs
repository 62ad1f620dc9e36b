//! The shape tests (shared overlap, exclusive against shared, permits, fairness, kind
//! mismatches), written once over where the lock lives: in-process only (`dir: None`,
//! from `shapes_local.rs`) or also as a file lock in a fresh directory (`Some(dir)`,
//! from `shapes_file.rs`).

#![allow(dead_code)]

pub mod fair;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lock_core::{Lock, Mode};
use lock_core_tests::{unique, HeldElsewhere, Overlap, TimedBarrier};

pub const LIMIT: Duration = Duration::from_secs(20);

/// The request for `name`, in `dir` if given.
pub fn req<'a>(name: &'a str, dir: Option<&'a Path>) -> Lock<'a> {
    match dir {
        Some(d) => Lock::new(name).dir(d),
        None => Lock::new(name),
    }
}

/// Holds `name` in `mode` (in `dir` if given) on another thread.
pub fn held_elsewhere(name: &str, dir: Option<&Path>, mode: Mode) -> HeldElsewhere {
    let (n, d): (String, Option<PathBuf>) = (name.to_owned(), dir.map(Path::to_path_buf));
    HeldElsewhere::new(move || req(&n, d.as_deref()).mode(mode).blocking_acquire())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Item 11, threads: K shared holders are all inside at once.
pub fn shared_holders_on_threads_are_all_inside_at_once(dir: Option<PathBuf>) {
    const K: usize = 6;
    let name = Arc::new(unique("shape-shared-threads"));
    let barrier = Arc::new(TimedBarrier::new(K));
    let overlap = Arc::new(Overlap::new());
    let threads: Vec<_> = (0..K)
        .map(|_| {
            let (name, barrier, overlap, dir) =
                (name.clone(), barrier.clone(), overlap.clone(), dir.clone());
            std::thread::spawn(move || {
                let g = req(&name, dir.as_deref())
                    .shared()
                    .timeout(LIMIT)
                    .blocking_acquire()
                    .unwrap();
                assert_eq!(g.mode(), Mode::Shared);
                assert_eq!(g.is_file_lock(), dir.is_some());
                let _inside = overlap.enter();
                // Passes only if all K holders are inside together.
                barrier.wait(Duration::from_secs(10))
            })
        })
        .collect();
    for t in threads {
        assert!(
            t.join().unwrap(),
            "not all {K} shared holders were inside at once"
        );
    }
    assert_eq!(overlap.max(), K);
    assert!(!lock_core::is_locked(&name));
}

/// Item 11, tasks: K shared holders (async) are all inside at once.
pub fn shared_holders_on_tasks_are_all_inside_at_once(dir: Option<PathBuf>) {
    const K: usize = 6;
    let name = Arc::new(unique("shape-shared-tasks"));
    let barrier = Arc::new(tokio::sync::Barrier::new(K));
    rt().block_on(async {
        let tasks: Vec<_> = (0..K)
            .map(|_| {
                let (name, barrier, dir) = (name.clone(), barrier.clone(), dir.clone());
                tokio::spawn(async move {
                    let g = req(&name, dir.as_deref())
                        .shared()
                        .timeout(LIMIT)
                        .acquire()
                        .await
                        .unwrap();
                    let passed = tokio::time::timeout(Duration::from_secs(10), barrier.wait())
                        .await
                        .is_ok();
                    drop(g);
                    passed
                })
            })
            .collect();
        for t in tasks {
            assert!(
                t.await.unwrap(),
                "not all {K} shared tasks were inside at once"
            );
        }
    });
    assert!(!lock_core::is_locked(&name));
}

/// Who is inside, per kind; any exclusive holder beside anyone else is a violation.
#[derive(Default)]
struct Kinds {
    readers: AtomicUsize,
    writers: AtomicUsize,
    violations: AtomicUsize,
    reads: AtomicUsize,
    writes: AtomicUsize,
    max_readers: AtomicUsize,
}

impl Kinds {
    fn read_in(&self) {
        let r = self.readers.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_readers.fetch_max(r, Ordering::SeqCst);
        if self.writers.load(Ordering::SeqCst) != 0 {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn read_out(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.readers.fetch_sub(1, Ordering::SeqCst);
    }
    fn write_in(&self) {
        let w = self.writers.fetch_add(1, Ordering::SeqCst) + 1;
        if w != 1 || self.readers.load(Ordering::SeqCst) != 0 {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn write_out(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Item 12: exclusive holders never beside shared ones (nor each other), and shared ones
/// never beside an exclusive one; sync threads and async tasks mixed.
pub fn exclusive_never_overlaps_shared_either_way(dir: Option<PathBuf>) {
    const ROUNDS: usize = 40;
    let name = Arc::new(unique("shape-rw"));
    let k = Arc::new(Kinds::default());
    let mut threads = Vec::new();
    for i in 0..6 {
        let (name, k, dir) = (name.clone(), k.clone(), dir.clone());
        threads.push(std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                let r = req(&name, dir.as_deref()).timeout(LIMIT);
                if i < 2 {
                    let g = r.exclusive().blocking_acquire().unwrap();
                    k.write_in();
                    std::thread::yield_now();
                    k.write_out();
                    drop(g);
                } else {
                    let g = r.shared().blocking_acquire().unwrap();
                    k.read_in();
                    std::thread::sleep(Duration::from_micros(200));
                    k.read_out();
                    drop(g);
                }
            }
        }));
    }
    let rt = rt();
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (name, k, dir) = (name.clone(), k.clone(), dir.clone());
            rt.spawn(async move {
                for _ in 0..ROUNDS {
                    let r = req(&name, dir.as_deref()).timeout(LIMIT);
                    if i < 2 {
                        let g = r.exclusive().acquire().await.unwrap();
                        k.write_in();
                        tokio::task::yield_now().await;
                        k.write_out();
                        drop(g);
                    } else {
                        let g = r.shared().acquire().await.unwrap();
                        k.read_in();
                        tokio::task::yield_now().await;
                        k.read_out();
                        drop(g);
                    }
                }
            })
        })
        .collect();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await
        .expect("tasks finish")
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(k.violations.load(Ordering::SeqCst), 0, "exclusion broken");
    assert_eq!(k.writes.load(Ordering::SeqCst), 4 * ROUNDS);
    assert_eq!(k.reads.load(Ordering::SeqCst), 8 * ROUNDS);
    assert!(!lock_core::is_locked(&name));
}

/// Item 13: 12 callers (6 threads, 6 tasks) of a counted lock with 3 permits: never more
/// than 3 inside, and 3 are reached.
pub fn three_permits_admit_three_and_never_more(dir: Option<PathBuf>) {
    const ROUNDS: usize = 20;
    let name = Arc::new(unique("shape-permits"));
    let overlap = Arc::new(Overlap::new());
    let mut threads = Vec::new();
    for _ in 0..6 {
        let (name, overlap, dir) = (name.clone(), overlap.clone(), dir.clone());
        threads.push(std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                let g = req(&name, dir.as_deref())
                    .permits(3)
                    .timeout(LIMIT)
                    .blocking_acquire()
                    .unwrap();
                assert_eq!(g.mode(), Mode::Permits(3));
                let inside = overlap.enter();
                std::thread::sleep(Duration::from_millis(1));
                drop(inside);
                drop(g);
            }
        }));
    }
    let rt = rt();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (name, overlap, dir) = (name.clone(), overlap.clone(), dir.clone());
            rt.spawn(async move {
                for _ in 0..ROUNDS {
                    let g = req(&name, dir.as_deref())
                        .permits(3)
                        .timeout(LIMIT)
                        .acquire()
                        .await
                        .unwrap();
                    let inside = overlap.enter();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    drop(inside);
                    drop(g);
                }
            })
        })
        .collect();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await
        .expect("tasks finish")
    });
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(overlap.max(), 3, "a counted lock with 3 permits");
    assert_eq!(overlap.entries(), 12 * ROUNDS);
    assert!(!lock_core::is_locked(&name));
}
