//! `#[locked(.., file)]`: in-process exclusion still holds, and another process is
//! excluded too.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lock_core::{locked, LockError};

const LIMIT: Duration = Duration::from_secs(30);

#[locked(name = "attr-file-inproc", file, guard = g)]
async fn file_body(o: Arc<(AtomicUsize, AtomicUsize)>) -> Result<bool, LockError> {
    let now = o.0.fetch_add(1, Ordering::SeqCst) + 1;
    o.1.fetch_max(now, Ordering::SeqCst);
    tokio::task::yield_now().await;
    o.0.fetch_sub(1, Ordering::SeqCst);
    Ok(g.is_file_lock())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_mode_excludes_tasks_in_process() {
    let o = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let o = o.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    assert!(file_body(o.clone()).await.unwrap());
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
    .expect("file mode timed out");
    assert_eq!(o.1.load(Ordering::SeqCst), 1);
}

#[cfg(unix)]
#[locked(
    name = "attr-file-dir",
    file = "/tmp/lock-core-attribute-tests",
    timeout_ms = 20_000
)]
fn in_dir(o: &(AtomicUsize, AtomicUsize)) -> std::io::Result<()> {
    let now = o.0.fetch_add(1, Ordering::SeqCst) + 1;
    o.1.fetch_max(now, Ordering::SeqCst);
    std::thread::yield_now();
    o.0.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

#[cfg(unix)]
#[test]
fn file_dir_mode_excludes_threads() {
    let o = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let o = o.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    in_dir(&o).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(o.1.load(Ordering::SeqCst), 1);
    assert!(std::path::Path::new("/tmp/lock-core-attribute-tests").is_dir());
}

// ---- across processes: the test binary runs itself as the holder ----

const CHILD_ENV: &str = "LOCK_CORE_ATTR_FILE_CHILD";

fn scratch(id: &str, what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lock-core-attr-xproc-{id}.{what}"))
}

fn wait_for(path: &std::path::Path) -> bool {
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Held by the child: signals that it is inside, then waits to be released.
#[locked(name = "attr-xproc-{id}", file)]
fn hold_in_child(id: &str) -> Result<(), LockError> {
    std::fs::write(scratch(id, "inside"), b"1").unwrap();
    assert!(
        wait_for(&scratch(id, "release")),
        "parent never released the child"
    );
    Ok(())
}

#[locked(name = "attr-xproc-{id}", file, timeout_ms = 0)]
fn probe(id: &str) -> Result<(), LockError> {
    Ok(())
}

/// Does nothing unless started by `file_mode_excludes_another_process`.
#[test]
fn file_child_process() {
    if let Ok(id) = std::env::var(CHILD_ENV) {
        hold_in_child(&id).unwrap();
    }
}

#[test]
fn file_mode_excludes_another_process() {
    let id = format!("{}", std::process::id());
    let _ = std::fs::remove_file(scratch(&id, "inside"));
    let _ = std::fs::remove_file(scratch(&id, "release"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "file_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &id)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(&scratch(&id, "inside")),
        "child never took the lock"
    );

    let err = probe(&id).unwrap_err();
    assert!(matches!(err, LockError::Busy { .. }), "{err:?}");

    std::fs::write(scratch(&id, "release"), b"1").unwrap();
    assert!(child.wait().unwrap().success());
    probe(&id).unwrap();
    let _ = std::fs::remove_file(scratch(&id, "inside"));
    let _ = std::fs::remove_file(scratch(&id, "release"));
}
