//! Idle names are reclaimed. Alone in its binary: it compares the process-wide
//! registry size and this process's memory.

use lock_core_tests::rss_bytes;

#[test]
fn a_million_distinct_names_leave_the_registry_empty_and_memory_flat() {
    let baseline = lock_core::registered_names();
    // Warm up allocator arenas so the RSS comparison measures growth, not first use.
    for i in 0..10_000 {
        drop(lock_core::try_acquire(&format!("warm-{i}")).unwrap());
    }
    let rss_before = rss_bytes();
    for i in 0..1_000_000u32 {
        let g = lock_core::try_acquire(&format!("distinct-{i}")).unwrap();
        drop(g);
    }
    assert_eq!(lock_core::registered_names(), baseline);
    assert!(
        lock_core::stored_entries() <= baseline + 1024,
        "idle entries must be swept, {} stored",
        lock_core::stored_entries()
    );

    // Many at once, then all released: the table shrinks back as well.
    let held: Vec<_> = (0..100_000u32)
        .map(|i| lock_core::try_acquire(&format!("bulk-{i}")).unwrap())
        .collect();
    assert_eq!(lock_core::registered_names(), baseline + 100_000);
    drop(held);
    assert_eq!(lock_core::registered_names(), baseline);
    assert!(
        lock_core::stored_entries() <= baseline + 1024,
        "a released burst must be swept, {} stored",
        lock_core::stored_entries()
    );

    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        let grown = after.saturating_sub(before);
        assert!(
            grown < 48 * 1024 * 1024,
            "RSS grew by {} KiB after the names were released",
            grown / 1024
        );
    }
}
