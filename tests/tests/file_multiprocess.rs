//! Cross-process exclusion with real child processes: no lost update, take-over of a
//! SIGKILLed holder, holder reporting, `is_locked` across processes.

mod file_support;

use std::time::{Duration, Instant};

use file_support::{fresh_dir, read_counter, Child};
use lock_core::file::LockDir;
use lock_core::LockError;

#[test]
fn six_processes_times_sixty_read_modify_write_steps_lose_no_update() {
    let dir = fresh_dir("counter");
    let counter = dir.join("counter.txt");
    const PROCS: usize = 6;
    const STEPS: usize = 60;
    let steps = STEPS.to_string();
    let mut children: Vec<Child> = (0..PROCS)
        .map(|i| {
            let mode = if i.is_multiple_of(2) {
                "async"
            } else {
                "blocking"
            };
            Child::spawn(&[
                "counter",
                dir.to_str().unwrap(),
                "shared-counter",
                counter.to_str().unwrap(),
                &steps,
                mode,
            ])
        })
        .collect();
    for c in &mut children {
        assert_eq!(c.line(), "done");
        c.close_stdin();
        c.wait_exit();
    }
    assert_eq!(read_counter(&counter), (PROCS * STEPS) as u64);
    assert!(!LockDir::new(&dir).is_locked("shared-counter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_holder_is_taken_over_within_a_second_async() {
    let dir = fresh_dir("kill-async");
    let mut holder = Child::hold(&dir, "victim");
    let locks = LockDir::new(&dir);
    let waiter = {
        let locks = locks.clone();
        tokio::spawn(async move {
            let g = locks
                .acquire_timeout("victim", Duration::from_secs(10))
                .await;
            (g, Instant::now())
        })
    };
    // Let the waiter settle into its wait (past the short backoff steps).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the lock is held by the child");
    let killed = Instant::now();
    holder.kill();
    let (g, got) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    let g = g.unwrap();
    let took = got.duration_since(killed);
    println!("async take-over after SIGKILL: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // The dead holder's record is stale; we are the holder now.
    assert_eq!(
        locks.holder("victim").unwrap().pid,
        Some(std::process::id())
    );
    drop(g);
}

#[test]
fn a_sigkilled_holder_is_taken_over_within_a_second_blocking() {
    let dir = fresh_dir("kill-blocking");
    let mut holder = Child::hold(&dir, "victim");
    let locks = LockDir::new(&dir);
    let waiter = std::thread::spawn(move || {
        let g = locks.blocking_acquire("victim", Some(Duration::from_secs(10)));
        (g.map(drop), Instant::now())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished());
    let killed = Instant::now();
    holder.kill();
    let (g, got) = waiter.join().unwrap();
    g.unwrap();
    let took = got.duration_since(killed);
    println!("blocking take-over after SIGKILL: {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn the_holder_pid_appears_in_timeout_and_busy_errors() {
    let dir = fresh_dir("holder");
    let locks = LockDir::new(&dir);
    let mut holder = Child::hold(&dir, "held");
    let pid = holder.pid();

    let e = locks
        .acquire_timeout("held", Duration::from_millis(150))
        .await
        .unwrap_err();
    assert!(matches!(e, LockError::Timeout { .. }), "{e}");
    assert_eq!(e.holder().and_then(|h| h.pid), Some(pid), "{e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("pid {pid}")) && text.contains("`held`"),
        "{text}"
    );
    assert!(e.holder().unwrap().since.is_some());

    let e = locks.try_acquire("held").unwrap_err();
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
    assert_eq!(e.holder().and_then(|h| h.pid), Some(pid));

    let e = tokio::task::spawn_blocking({
        let locks = locks.clone();
        move || {
            locks
                .blocking_acquire("held", Some(Duration::from_millis(100)))
                .unwrap_err()
        }
    })
    .await
    .unwrap();
    assert_eq!(e.code(), 8403);
    assert_eq!(e.holder().and_then(|h| h.pid), Some(pid));

    assert_eq!(locks.holder("held").and_then(|h| h.pid), Some(pid));
    // The in-process lock was given back after each failure.
    assert!(!lock_core::is_locked("held"));
    holder.release();
    assert!(locks.holder("held").is_none());
    drop(locks.try_acquire("held").unwrap());
}

#[test]
fn is_locked_sees_the_locks_of_other_processes_both_ways() {
    let dir = fresh_dir("is-locked");
    let d = dir.to_str().unwrap();
    let locks = LockDir::new(&dir);
    assert!(!locks.is_locked("probe"));
    let mut holder = Child::hold(&dir, "probe");
    assert!(locks.is_locked("probe"));
    // Probing does not disturb the holder: it still holds, and others still see it.
    assert!(locks.is_locked("probe"));
    assert_eq!(Child::run(&["is-locked", d, "probe"]), "true");
    holder.release();
    assert!(!locks.is_locked("probe"));
    assert_eq!(Child::run(&["is-locked", d, "probe"]), "false");

    // And the other way round: a child sees our lock.
    let g = locks.try_acquire("probe").unwrap();
    assert_eq!(Child::run(&["is-locked", d, "probe"]), "true");
    let busy = Child::run(&["try", d, "probe"]);
    assert_eq!(busy, format!("busy 8406 {}", std::process::id()));
    drop(g);
    assert_eq!(Child::run(&["try", d, "probe"]), "ok");
}

#[test]
fn a_dead_holders_stale_record_is_not_reported() {
    let dir = fresh_dir("stale");
    let locks = LockDir::new(&dir);
    let mut holder = Child::hold(&dir, "stale");
    let dead = holder.pid();
    holder.kill();
    drop(holder); // reaps it
                  // The record still names the dead process, but nobody holds the lock.
    let raw = std::fs::read(locks.lock_file("stale").unwrap()).unwrap();
    let raw = String::from_utf8_lossy(&raw[..1024]);
    assert!(raw.contains(&format!("pid={dead}\n")), "{raw}");
    assert!(!locks.is_locked("stale"));
    assert!(locks.holder("stale").is_none());
    // A holder that writes no record (a plain flock on its own descriptor): contention
    // is reported, but never with the dead process as its holder.
    let f = std::fs::File::open(locks.lock_file("stale").unwrap()).unwrap();
    f.try_lock().unwrap();
    let e = locks.try_acquire("stale").unwrap_err();
    assert!(matches!(e, LockError::Busy { holder: None, .. }), "{e}");
    f.unlock().unwrap();
    drop(locks.try_acquire("stale").unwrap());
}

#[test]
fn a_sigkilled_waiter_leaves_no_lock_and_hand_offs_still_work() {
    let dir = fresh_dir("kill-waiter");
    let d = dir.to_str().unwrap();
    let locks = LockDir::new(&dir);
    let g = locks.try_acquire("kw").unwrap();
    let mut waiter = Child::spawn(&["wait", d, "kw", "30000"]);
    assert!(waiter.silent_for(Duration::from_millis(200)));
    waiter.kill();
    drop(waiter);
    // The dead waiter counted itself in the lock file and could not take that back.
    let raw = std::fs::read(locks.lock_file("kw").unwrap()).unwrap();
    assert!(raw.len() >= 4096, "the lock file holds its shared page");
    // The wake-up count, at byte 1032 (see `lock-core/src/file/page.rs`).
    assert_eq!(u32::from_ne_bytes(raw[1032..1036].try_into().unwrap()), 1);
    drop(g);
    // It holds nothing: another process gets the lock at once.
    assert_eq!(Child::run(&["try", d, "kw"]), "ok");
    // And a live waiter is still woken on release.
    let g = locks.try_acquire("kw").unwrap();
    let mut waiter = Child::spawn_env(
        &["wait", d, "kw", "30000"],
        &[("LOCK_CORE_FILE_POLL_MAX_MS", "60000")],
    );
    assert!(waiter.silent_for(Duration::from_millis(1200)));
    let released = Instant::now();
    drop(g);
    assert!(waiter.line().starts_with("acquired "));
    assert!(
        released.elapsed() < Duration::from_millis(500),
        "{:?}",
        released.elapsed()
    );
}
