//! The descriptor cache is bounded: locking many distinct names leaks neither open
//! files nor registry entries. (Own test binary: it counts this process's descriptors.)

use std::time::Duration;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn many_distinct_names_leave_a_bounded_number_of_open_files() {
    let dir = std::env::temp_dir().join(format!("lock-core-it-fds-{}", std::process::id()));
    let locks = lock_core::file::LockDir::new(&dir);
    let names_before = lock_core::registered_names();
    let fds_before = open_fds();
    for i in 0..3000u32 {
        let name = format!("distinct-{i}");
        let g = if i.is_multiple_of(2) {
            locks.try_acquire(&name).unwrap()
        } else {
            locks
                .blocking_acquire(&name, Some(Duration::from_secs(5)))
                .unwrap()
        };
        g.release().unwrap();
    }
    let fds_after = open_fds();
    println!("open descriptors: {fds_before} before, {fds_after} after 3000 names");
    if cfg!(target_os = "linux") {
        assert!(
            fds_after <= fds_before + 64 + 2,
            "{fds_before} -> {fds_after}"
        );
    }
    assert!(lock_core::registered_names() <= names_before);
    // Held locks are never closed by the cache, even beyond its capacity.
    let held: Vec<_> = (0..100)
        .map(|i| locks.try_acquire(&format!("held-{i}")).unwrap())
        .collect();
    for i in 0..100 {
        assert!(locks.is_locked(&format!("held-{i}")));
    }
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}
