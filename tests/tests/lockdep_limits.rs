//! The lock-order checker's memory is bounded: past its limits it says so and turns
//! itself off instead of slowing every acquisition down. Alone in its binary, since it
//! switches the process-wide checker off.

use lock_core::lockdep::{self, Setting, MAX_HELD};
use lock_core_tests::unique;

#[test]
fn holding_more_than_the_limit_turns_the_checker_off_and_locks_keep_working() {
    lockdep::enable(Setting::Report);
    let base = unique("ld-many");
    let held: Vec<_> = (0..MAX_HELD + 8)
        .map(|i| lock_core::try_acquire(&format!("{base}-{i}")).unwrap())
        .collect();
    assert_eq!(lockdep::setting(), Setting::Off, "past the limit it is off");
    // Locking still works, exclusion included.
    let name = format!("{base}-0");
    assert!(lock_core::try_acquire(&name).is_err(), "still held");
    drop(held);
    assert!(lock_core::try_acquire(&name).is_ok());

    // Turned on again, it starts from an empty graph and reports as before.
    lockdep::enable(Setting::Report);
    let (a, b) = (unique("ld-a"), unique("ld-b"));
    {
        let _ga = lock_core::blocking_acquire(&a, None).unwrap();
        let _gb = lock_core::blocking_acquire(&b, None).unwrap();
    }
    {
        let _gb = lock_core::blocking_acquire(&b, None).unwrap();
        let _ga = lock_core::blocking_acquire(&a, None).unwrap();
    }
    assert!(lockdep::inversions()
        .iter()
        .any(|i| (i.first == a && i.then == b) || (i.first == b && i.then == a)));
}
