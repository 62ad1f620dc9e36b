//! Hand-off speed between processes: a waiting process is woken by the release itself,
//! not by a polling interval. Prints the measured numbers.

mod file_support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use file_support::{fresh_dir, Child};
use lock_core::file::LockDir;

#[test]
fn a_waiting_process_is_woken_by_the_release() {
    let dir = fresh_dir("handoff");
    let locks = LockDir::new(&dir);
    let mut lat = Vec::new();
    for _ in 0..15 {
        let g = locks.try_acquire("baton").unwrap();
        let mut waiter = Child::spawn(&["wait", dir.to_str().unwrap(), "baton", "10000"]);
        // Long enough for the waiter to start and reach its 50 ms backoff steps.
        assert!(waiter.silent_for(Duration::from_millis(250)));
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
        lat.push(Duration::from_nanos(at.saturating_sub(released) as u64));
        waiter.close_stdin();
        waiter.wait_exit();
    }
    lat.sort();
    let median = lat[lat.len() / 2];
    println!(
        "cross-process hand-off: min {:?}, median {median:?}, max {:?}",
        lat[0],
        lat[lat.len() - 1]
    );
    // With only the 50 ms safety-net polling the median would be around 25 ms.
    assert!(median < Duration::from_millis(15), "median {median:?}");
}
