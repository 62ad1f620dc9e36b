//! Hand-off between processes: a waiting process is woken by the release itself, not
//! by a polling interval. Prints the measured numbers.

mod file_support;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use file_support::{fresh_dir, Child};
use lock_core::file::LockDir;

/// Holds `name`, lets a `wait` child queue for `settle`, releases, and returns how long
/// the child took to get the lock after the release.
fn one_hand_off(dir: &Path, name: &str, settle: Duration, env: &[(&str, &str)]) -> Duration {
    let locks = LockDir::new(dir);
    let g = locks.try_acquire(name).unwrap();
    let mut waiter = Child::spawn_env(&["wait", dir.to_str().unwrap(), name, "30000"], env);
    assert!(
        waiter.silent_for(settle),
        "the waiter must not get a held lock"
    );
    let released = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    drop(g);
    let line = waiter.line();
    let at: u128 = line
        .strip_prefix("acquired ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    waiter.close_stdin();
    waiter.wait_exit();
    Duration::from_nanos(at.saturating_sub(released) as u64)
}

#[test]
fn a_waiting_process_is_woken_by_the_release_not_by_polling() {
    // The waiter's safety-net polling is stretched to a minute: after 1.2 s of waiting its
    // next poll is about a second away. Only the wake-up event can make it quick.
    let dir = fresh_dir("handoff-event");
    let env = [("LOCK_CORE_FILE_POLL_MAX_MS", "60000")];
    for round in 0..3 {
        let took = one_hand_off(&dir, "baton-event", Duration::from_millis(1200), &env);
        println!("event-driven hand-off, round {round}: {took:?}");
        assert!(
            took < Duration::from_millis(400),
            "took {took:?}: not woken by the release"
        );
    }
}

/// The same measurement for a process blocked reading a pipe: the wake-up floor.
fn one_pipe_wake_up(settle: Duration) -> Duration {
    let mut c = Child::spawn(&["stamp", "-", "-"]);
    assert!(c.silent_for(settle));
    let sent = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    c.send("go");
    let line = c.line();
    let at: u128 = line
        .strip_prefix("at ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    c.close_stdin();
    c.wait_exit();
    Duration::from_nanos(at.saturating_sub(sent) as u64)
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

#[test]
fn cross_process_hand_off_latency() {
    let dir = fresh_dir("handoff");
    let mut lock = Vec::new();
    let mut pipe = Vec::new();
    for _ in 0..12 {
        lock.push(one_hand_off(&dir, "baton", Duration::from_millis(150), &[]));
        pipe.push(one_pipe_wake_up(Duration::from_millis(150)));
    }
    let (lmin, lmed, lmax) = summary(lock);
    let (pmin, pmed, pmax) = summary(pipe);
    println!("cross-process hand-off (release -> waiter holds): min {lmin:?}, median {lmed:?}, max {lmax:?}");
    println!("pipe wake-up floor (write -> reader runs):       min {pmin:?}, median {pmed:?}, max {pmax:?}");
    assert!(lmax < Duration::from_secs(1));
}
