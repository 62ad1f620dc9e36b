//! A contended file-lock wait works on any executor — `futures::executor::block_on`,
//! Tokio runtimes without their I/O and time drivers, normal Tokio runtimes: woken by the
//! release, timeouts honoured, and a dropped wait leaves nothing behind (no lock, no
//! waiter count in the lock file, no registration in the crate's wake-up thread).
//!
//! The holder is a plain `std::fs::File` lock on the lock file (as another process would
//! hold it), or another process. Tests in this file are serialised: they check that the
//! process-wide table of wait registrations returns to zero.

mod file_support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use file_support::{fresh_dir, Child};
use futures::poll;
use lock_core::file::LockDir;
use lock_core_tests::{unique, Exec};

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn registrations() -> usize {
    lock_core::__private::wait_registrations()
}

/// Processes counted as waiting in the lock file's shared page (a native-endian `u32` at
/// byte 1032; see `lock-core/src/file/page.rs`).
fn waiters_in(path: &Path) -> u32 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut b, 1032)
        .unwrap();
    u32::from_ne_bytes(b)
}

/// A lock file for a fresh name, created by one uncontended round, and its OS lock taken
/// through a descriptor of its own.
fn held_elsewhere(locks: &LockDir) -> (String, PathBuf, File) {
    let name = unique("file-exec");
    drop(locks.try_acquire(&name).unwrap());
    let path = locks.lock_file(&name).unwrap();
    let other = File::options().read(true).write(true).open(&path).unwrap();
    other.lock().unwrap();
    (name, path, other)
}

#[test]
fn a_contended_file_wait_is_woken_by_the_release_on_every_executor() {
    let _serial = serial();
    let dir = fresh_dir("file-exec-wake");
    for exec in Exec::ALL {
        let locks = LockDir::new(&dir);
        let (name, path, other) = held_elsewhere(&locks);
        let (waiting, told) = mpsc::channel::<()>();
        let p = path.clone();
        // Releases by closing the descriptor (as a dying holder would) once the waiter waits.
        let releaser = std::thread::spawn(move || {
            told.recv_timeout(Duration::from_secs(30))
                .expect("the waiter never waited");
            assert_eq!(waiters_in(&p), 1, "counted as a waiter while waiting");
            let at = Instant::now();
            drop(other);
            at
        });
        let (l, n) = (locks.clone(), name.clone());
        let (guard, at) = exec.run(move || async move {
            let mut fut = Box::pin(l.acquire_timeout(&n, Duration::from_secs(30)));
            assert!(poll!(fut.as_mut()).is_pending());
            // Checked here, right after the pending poll: the waiter's safety-net re-try
            // briefly drops and renews its registration, so another thread could catch
            // the table empty at any later moment.
            assert!(registrations() > 0, "waits through the wake-up thread");
            waiting.send(()).unwrap();
            let g = fut.await.expect("woken by the release");
            let at = Instant::now();
            (g, at)
        });
        let released = releaser.join().unwrap();
        assert!(guard.is_file_lock());
        assert!(at >= released);
        assert!(
            at - released < Duration::from_secs(10),
            "{exec:?}: {:?}",
            at - released
        );
        assert_eq!(registrations(), 0, "{exec:?}");
        assert_eq!(waiters_in(&path), 0, "{exec:?}");
        drop(guard);
        drop(locks.try_acquire(&name).unwrap());
    }
}

#[test]
fn a_file_wait_times_out_on_every_executor() {
    let _serial = serial();
    let dir = fresh_dir("file-exec-timeout");
    for exec in Exec::ALL {
        let locks = LockDir::new(&dir);
        let (name, path, other) = held_elsewhere(&locks);
        let (l, n) = (locks.clone(), name.clone());
        let (e, took) = exec.run(move || async move {
            let t = Instant::now();
            let e = l
                .acquire_timeout(&n, Duration::from_millis(80))
                .await
                .unwrap_err();
            (e, t.elapsed())
        });
        assert_eq!(e.code(), 8403, "{exec:?}: {e}");
        assert!(took >= Duration::from_millis(80), "{exec:?}: {took:?}");
        assert!(took < Duration::from_secs(10), "{exec:?}: {took:?}");
        assert_eq!(registrations(), 0, "{exec:?}");
        assert_eq!(waiters_in(&path), 0, "{exec:?}");
        assert!(!lock_core::is_locked(&name), "{exec:?}");
        drop(other);
        drop(locks.try_acquire(&name).unwrap());
    }
}

#[test]
fn dropped_file_waits_leave_nothing_behind() {
    let _serial = serial();
    let dir = fresh_dir("file-exec-drop");
    for exec in [
        Exec::BlockOn,
        Exec::BareCurrentThread,
        Exec::BareMultiThread,
    ] {
        let locks = LockDir::new(&dir);
        let (name, path, other) = held_elsewhere(&locks);
        let (l, n, p) = (locks.clone(), name.clone(), path.clone());
        exec.run(move || async move {
            for round in 0..100 {
                let mut fut = Box::pin(l.acquire(&n));
                assert!(poll!(fut.as_mut()).is_pending());
                if round == 0 {
                    assert_eq!(waiters_in(&p), 1);
                    assert!(registrations() > 0);
                }
                // Dropped mid-wait.
            }
        });
        assert_eq!(registrations(), 0, "{exec:?}");
        assert_eq!(waiters_in(&path), 0, "{exec:?}");
        assert!(!lock_core::is_locked(&name), "{exec:?}");
        // Nothing of ours took the OS lock: still busy until the holder lets go, free after.
        assert_eq!(locks.try_acquire(&name).unwrap_err().code(), 8406);
        drop(other);
        drop(locks.try_acquire(&name).unwrap());
    }
}

/// Holds `name` in this process, lets a `wait` child on `executor` queue for 1.2 s, releases,
/// and returns how long the child took to get the lock after the release.
fn hand_off_to(dir: &Path, name: &str, executor: &str) -> Duration {
    let locks = LockDir::new(dir);
    let g = locks.try_acquire(name).unwrap();
    let mut waiter = Child::spawn_env(
        &["wait", dir.to_str().unwrap(), name, "30000", executor],
        // After 1.2 s of waiting its next safety-net poll is about a second away.
        &[("LOCK_CORE_FILE_POLL_MAX_MS", "60000")],
    );
    assert!(waiter.silent_for(Duration::from_millis(1200)));
    let released = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    drop(g);
    let line = waiter.line();
    let at: u128 = line
        .strip_prefix("acquired ")
        .unwrap_or_else(|| panic!("{executor}: {line}"))
        .parse()
        .unwrap();
    waiter.close_stdin();
    waiter.wait_exit();
    Duration::from_nanos(at.saturating_sub(released) as u64)
}

#[test]
fn a_waiting_process_on_any_executor_is_woken_by_the_release_not_by_polling() {
    let _serial = serial();
    let dir = fresh_dir("file-exec-handoff");
    for executor in ["block-on", "bare", "tokio"] {
        let took = hand_off_to(&dir, "baton-exec", executor);
        println!("{executor}: hand-off in {took:?}");
        assert!(
            took < Duration::from_millis(400),
            "{executor}: took {took:?}: not woken by the release (inotify instances available \
             now: {}; when the user's limit is exhausted waiters fall back to polling)",
            inotify_available()
        );
    }
}

/// Whether this user can create an inotify instance right now (for the failure message).
fn inotify_available() -> bool {
    // SAFETY: plain syscall without pointer arguments; the descriptor is closed at once.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is the descriptor just created, owned by nothing else.
    unsafe { libc::close(fd) };
    true
}
