use super::*;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::file::*;
use crate::mode::Mode;
use crate::LockError;
use cache::LockFile;
use hold::Try;

/// A lock directory of its own, removed again when the test is done with it.
struct TempDir(LockDir);

impl std::ops::Deref for TempDir {
    type Target = LockDir;
    fn deref(&self) -> &LockDir {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.path());
    }
}

fn temp_dir(tag: &str) -> TempDir {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    TempDir(LockDir::new(std::env::temp_dir().join(format!(
        "lock-core-unit-{tag}-{}-{n}",
        std::process::id()
    ))))
}

#[test]
fn try_then_busy_then_free() {
    let d = temp_dir("busy");
    let g = d.try_acquire("unit-try-then-busy-then-free").unwrap();
    assert!(g.is_file_lock());
    assert!(d.is_locked("unit-try-then-busy-then-free"));
    // The record names us.
    assert_eq!(
        d.holder("unit-try-then-busy-then-free").unwrap().pid,
        Some(std::process::id())
    );
    drop(g);
    assert!(!d.is_locked("unit-try-then-busy-then-free"));
    drop(d.try_acquire("unit-try-then-busy-then-free").unwrap());
}

#[test]
fn os_lock_conflict_reports_the_holder_and_times_out() {
    // Hold the OS lock through a second descriptor (as another process would).
    let d = temp_dir("conflict");
    let path = d
        .lock_file("unit-os-lock-conflict-reports-the-holder-and-")
        .unwrap();
    drop(
        d.try_acquire("unit-os-lock-conflict-reports-the-holder-and-")
            .unwrap(),
    ); // creates the file
       // A second descriptor with its own page, as another process would have.
    let other = Arc::new(
        LockFile::new(
            std::fs::File::options()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
            path.clone(),
            open::Owner::Ours,
        )
        .unwrap(),
    );
    let Try::Got(held) = hold::try_os(
        &other,
        Mode::Exclusive,
        "unit-os-lock-conflict-reports-the-holder-and-",
        None,
    )
    .unwrap() else {
        panic!("free");
    };
    let e = d
        .try_acquire("unit-os-lock-conflict-reports-the-holder-and-")
        .unwrap_err();
    assert!(
        matches!(
            e,
            LockError::Busy {
                reentrant: false,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.holder().unwrap().pid, Some(std::process::id()));
    // The in-process lock was given back after the refusal.
    assert!(!crate::is_locked(
        "unit-os-lock-conflict-reports-the-holder-and-"
    ));
    let t = Instant::now();
    let e = d
        .blocking_acquire(
            "unit-os-lock-conflict-reports-the-holder-and-",
            Some(Duration::from_millis(60)),
        )
        .unwrap_err();
    assert!(matches!(e, LockError::Timeout { .. }), "{e}");
    assert!(t.elapsed() >= Duration::from_millis(55));
    assert!(
        e.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{e}"
    );
    held.release("unit-os-lock-conflict-reports-the-holder-and-")
        .unwrap();
    drop(
        d.try_acquire("unit-os-lock-conflict-reports-the-holder-and-")
            .unwrap(),
    );
}

#[test]
fn blocking_waiter_wakes_promptly_on_release() {
    let d = temp_dir("wake");
    drop(
        d.try_acquire("unit-blocking-waiter-wakes-promptly-on-releas")
            .unwrap(),
    );
    let other = std::fs::File::options()
        .read(true)
        .write(true)
        .open(
            d.lock_file("unit-blocking-waiter-wakes-promptly-on-releas")
                .unwrap(),
        )
        .unwrap();
    assert!(os::try_lock(&other).unwrap());
    let d2 = d.clone();
    let waiter = std::thread::spawn(move || {
        let g = d2
            .blocking_acquire(
                "unit-blocking-waiter-wakes-promptly-on-releas",
                Some(Duration::from_secs(10)),
            )
            .unwrap();
        Instant::now().duration_since(g.acquired_at())
    });
    // Let the waiter pass its backoff growth (1+2+...+32 ms) and sit at 50 ms steps.
    std::thread::sleep(Duration::from_millis(200));
    let released = Instant::now();
    other.unlock().unwrap();
    os::touch(&other);
    waiter.join().unwrap();
    // Woken by the event, not by the 50 ms safety net.
    let took = released.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// Whether `/proc/locks` lists a blocked flock waiter on `ino`.
#[cfg(target_os = "linux")]
fn kernel_waiter_on(ino: u64) -> bool {
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    let tag = format!(":{ino} ");
    locks
        .lines()
        .any(|l| l.contains(" -> FLOCK ") && l.contains(&tag))
}

#[cfg(target_os = "linux")]
#[test]
fn blocking_waiter_on_our_file_sleeps_on_the_release_count() {
    let name = "unit-blocking-waiter-sleeps-on-the-count";
    let d = temp_dir("sleeper");
    drop(d.try_acquire(name).unwrap());
    let path = d.lock_file(name).unwrap();
    let other = LockFile::new(
        std::fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap(),
        path.clone(),
        open::Owner::Ours,
    )
    .unwrap();
    assert!(os::try_lock(&other.file).unwrap());
    let d2 = d.clone();
    let waiter = std::thread::spawn(move || d2.blocking_acquire(name, None).map(drop));
    let give_up = Instant::now() + Duration::from_secs(20);
    // Counted as a sleeper (not as a watcher), never in the kernel's flock queue.
    while other.page().unwrap().wants_wake() != (false, true) {
        assert!(
            !waiter.is_finished(),
            "the waiter ended: {:?}",
            waiter.join()
        );
        assert!(Instant::now() < give_up, "no sleeper was counted");
        std::thread::sleep(Duration::from_millis(2));
    }
    use std::os::unix::fs::MetadataExt;
    assert!(!kernel_waiter_on(other.file.metadata().unwrap().ino()));
    let watch = os::Watch::new(&path).unwrap();
    // The release wakes sleepers through the count only: no event on the file.
    other.file.unlock().unwrap();
    other.wake_waiters();
    waiter.join().unwrap().unwrap();
    assert!(
        matches!(watch.drain(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no touch for sleepers"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn blocking_waiter_without_deadline_on_a_foreign_file_waits_in_the_kernel() {
    use std::os::unix::fs::MetadataExt;
    let d = temp_dir("kernel");
    // Someone else's lock file (no page): plain flock only.
    std::fs::create_dir_all(d.path()).unwrap();
    let path = d.path().join("foreign.lock");
    std::fs::write(&path, b"").unwrap();
    let other = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let ino = other.metadata().unwrap().ino();
    assert!(os::try_lock(&other).unwrap());
    let p2 = path.clone();
    let waiter = std::thread::spawn(move || {
        crate::Lock::new("unit-foreign-kernel-wait")
            .path(&p2)
            .blocking_acquire()
            .map(drop)
    });
    let give_up = Instant::now() + Duration::from_secs(20);
    while !kernel_waiter_on(ino) {
        assert!(
            !waiter.is_finished(),
            "the waiter ended: {:?}",
            waiter.join()
        );
        assert!(Instant::now() < give_up, "no blocked flock waiter appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    // A bare unlock, no touch: the kernel hands the lock over.
    other.unlock().unwrap();
    waiter.join().unwrap().unwrap();
    assert!(!kernel_waiter_on(ino));
}

#[tokio::test]
async fn async_waiter_wakes_and_cancellation_leaves_nothing_held() {
    let d = temp_dir("async");
    drop(
        d.try_acquire("unit-async-waiter-wakes-and-cancellation-leav")
            .unwrap(),
    );
    let other = std::fs::File::options()
        .read(true)
        .write(true)
        .open(
            d.lock_file("unit-async-waiter-wakes-and-cancellation-leav")
                .unwrap(),
        )
        .unwrap();
    assert!(os::try_lock(&other).unwrap());
    // A timed-out wait, and a dropped one.
    let e = d
        .acquire_timeout(
            "unit-async-waiter-wakes-and-cancellation-leav",
            Duration::from_millis(30),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), 8403);
    assert!(tokio::time::timeout(
        Duration::from_millis(30),
        d.acquire("unit-async-waiter-wakes-and-cancellation-leav")
    )
    .await
    .is_err());
    other.unlock().unwrap();
    // Nothing of ours holds it: a separate descriptor takes it at once.
    assert!(os::try_lock(&other).unwrap());
    other.unlock().unwrap();
    assert!(!crate::is_locked(
        "unit-async-waiter-wakes-and-cancellation-leav"
    ));
    // And an async waiter wakes on release.
    assert!(os::try_lock(&other).unwrap());
    let d2 = d.clone();
    let w = tokio::spawn(async move {
        d2.acquire_timeout(
            "unit-async-waiter-wakes-and-cancellation-leav",
            Duration::from_secs(10),
        )
        .await
        .map(drop)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    other.unlock().unwrap();
    os::touch(&other);
    w.await.unwrap().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn releases_wake_exactly_when_someone_waits() {
    let d = temp_dir("wake-count");
    let path = d.lock_file("unit-wake-count").unwrap();
    drop(d.try_acquire("unit-wake-count").unwrap()); // creates the file
    let open = || {
        std::fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap()
    };
    // Two descriptors, as two processes would have.
    let holder = Arc::new(LockFile::new(open(), path.clone(), open::Owner::Ours).unwrap());
    let waiter = LockFile::new(open(), path.clone(), open::Owner::Ours).unwrap();
    let watch = os::Watch::new(&path).unwrap();
    let quiet = |w: &os::Watch| {
        let t = Instant::now();
        w.wait_blocking(Duration::from_millis(40)).unwrap();
        t.elapsed() >= Duration::from_millis(35)
    };
    // Nobody waits: a release makes no event (no system call beyond the unlock).
    let Try::Got(h) = hold::try_os(&holder, Mode::Exclusive, "unit-wake-count", None).unwrap()
    else {
        panic!("free");
    };
    h.release("unit-wake-count").unwrap();
    assert!(quiet(&watch));
    // Someone waits: the release wakes it.
    let Try::Got(h) = hold::try_os(&holder, Mode::Exclusive, "unit-wake-count", None).unwrap()
    else {
        panic!("free");
    };
    let waiting = waiter.waiting(false);
    assert!(!os::try_lock(&waiter.file).unwrap());
    h.release("unit-wake-count").unwrap();
    let t = Instant::now();
    watch.wait_blocking(Duration::from_secs(5)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(os::try_lock(&waiter.file).unwrap());
    drop(waiting);
    waiter.file.unlock().unwrap();
    // The record went through the shared page and reads back.
    let rec = record::read_record(&waiter.file).unwrap();
    assert_eq!(rec.pid, std::process::id());
    assert_eq!(rec.name, "unit-wake-count");
}

#[test]
fn zero_timeout_tries_once() {
    let d = temp_dir("zero");
    let g = d.try_acquire("unit-zero-timeout-tries-once").unwrap();
    let e = std::thread::spawn({
        let d = d.clone();
        move || {
            d.blocking_acquire("unit-zero-timeout-tries-once", Some(Duration::ZERO))
                .unwrap_err()
        }
    })
    .join()
    .unwrap();
    assert_eq!(e.code(), 8406);
    drop(g);
}

#[test]
fn unusable_directories_are_io_errors() {
    let base = temp_dir("io");
    std::fs::create_dir_all(base.path()).unwrap();
    let file = base.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let d = LockDir::new(file.join("sub"));
    let e = d
        .try_acquire("unit-unusable-directories-are-io-errors")
        .unwrap_err();
    match &e {
        LockError::Io { name, path, .. } => {
            assert_eq!(name, "unit-unusable-directories-are-io-errors");
            assert!(path.as_ref().unwrap().starts_with(&file), "{e}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(e.code(), 8407);
    assert!(!d.is_locked("unit-unusable-directories-are-io-errors"));
    // And the in-process lock is free again.
    assert!(!crate::is_locked("unit-unusable-directories-are-io-errors"));
}

#[test]
fn relative_dirs_are_resolved() {
    assert!(resolve_dir(Some(Path::new("rel"))).is_absolute());
    assert!(resolve_dir(None).is_absolute());
}
