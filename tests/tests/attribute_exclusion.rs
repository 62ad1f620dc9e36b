//! `#[locked]` excludes concurrent bodies: async tasks, threads, and both at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lock_core::locked;

/// Counts bodies running at once and remembers the highest count seen.
#[derive(Default)]
struct Overlap {
    inside: AtomicUsize,
    max: AtomicUsize,
    runs: AtomicUsize,
}

impl Overlap {
    fn enter(&self) {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

const LIMIT: Duration = Duration::from_secs(30);

#[locked(name = "attr-excl-async")]
async fn critical(o: Arc<Overlap>) -> Result<(), lock_core::LockError> {
    o.enter();
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    o.leave();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_bodies_never_overlap() {
    let o = Arc::new(Overlap::default());
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let o = o.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    critical(o.clone()).await.unwrap();
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
    .expect("exclusion test timed out");
    assert_eq!(o.max.load(Ordering::SeqCst), 1);
    assert_eq!(o.runs.load(Ordering::SeqCst), 32 * 20);
}

#[locked(name = "attr-excl-mixed")]
fn sync_side(o: &Overlap) {
    o.enter();
    std::thread::yield_now();
    o.leave();
}

#[locked(name = "attr-excl-mixed")]
async fn async_side(o: Arc<Overlap>) {
    o.enter();
    tokio::task::yield_now().await;
    o.leave();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_async_bodies_share_one_name() {
    let o = Arc::new(Overlap::default());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let o = o.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    sync_side(&o);
                }
            })
        })
        .collect();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let o = o.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    async_side(o.clone()).await;
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
    .expect("async side timed out");
    let joined = tokio::task::spawn_blocking(move || {
        for t in threads {
            t.join().unwrap();
        }
    });
    tokio::time::timeout(LIMIT, joined)
        .await
        .expect("sync side timed out")
        .unwrap();
    assert_eq!(o.max.load(Ordering::SeqCst), 1);
    assert_eq!(o.runs.load(Ordering::SeqCst), 4 * 50 + 16 * 20);
}

#[locked(name = "attr-excl-threads", timeout_ms = 30_000)]
fn sync_critical(o: &Overlap) -> std::io::Result<()> {
    o.enter();
    std::thread::yield_now();
    o.leave();
    Ok(())
}

#[test]
fn sync_bodies_never_overlap() {
    let o = Arc::new(Overlap::default());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let o = o.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    sync_critical(&o).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(o.max.load(Ordering::SeqCst), 1);
    assert_eq!(o.runs.load(Ordering::SeqCst), 800);
}

/// The lock is held exactly while the body runs, under the name given.
#[locked(name = "attr-excl-visible", on_error = "panic")]
async fn observe() -> bool {
    lock_core::is_locked("attr-excl-visible")
}

#[tokio::test]
async fn lock_is_held_during_the_body_only() {
    assert!(!lock_core::is_locked("attr-excl-visible"));
    assert!(observe().await);
    assert!(!lock_core::is_locked("attr-excl-visible"));
}
