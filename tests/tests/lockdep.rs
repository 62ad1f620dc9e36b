//! The lock-order checker reports an inverted order the first time it is seen, with both
//! pairs of places, even though this run never deadlocks.

use lock_core::lockdep::{self, Setting};
use lock_core::LockError;
use lock_core_tests::unique;

/// The checker is process-wide; every test here turns it on (they only add reports).
fn on() {
    lockdep::enable(Setting::Report);
}

fn reported(a: &str, b: &str) -> Option<lockdep::Inversion> {
    lockdep::inversions()
        .into_iter()
        .find(|i| (i.first == a && i.then == b) || (i.first == b && i.then == a))
}

#[test]
fn ab_then_ba_is_reported_with_both_places() {
    on();
    let (a, b) = (unique("ld-a"), unique("ld-b"));
    {
        let _ga = lock_core::blocking_acquire(&a, None).unwrap();
        let _gb = lock_core::blocking_acquire(&b, None).unwrap();
    }
    assert!(reported(&a, &b).is_none(), "one order is fine");
    {
        let _gb = lock_core::blocking_acquire(&b, None).unwrap();
        let _ga = lock_core::blocking_acquire(&a, None).unwrap();
    }
    let inv = reported(&a, &b).expect("the inverted order is reported");
    let text = inv.to_string();
    assert!(text.contains(&a) && text.contains(&b), "{text}");
    // Both acquisition sites of both orders, in this file.
    assert!(
        inv.before.0.contains("tests/lockdep.rs") && inv.now.1.contains("tests/lockdep.rs"),
        "{inv:?}"
    );
    assert_ne!(inv.before, inv.now);
}

#[lock_core::locked(name = "ld-outer-{tag}")]
fn outer(tag: &str) -> Result<(), LockError> {
    inner(tag)
}

#[lock_core::locked(name = "ld-inner-{tag}")]
fn inner(tag: &str) -> Result<(), LockError> {
    Ok(())
}

#[lock_core::locked(name = "ld-outer-{tag}")]
fn outer_only(tag: &str) -> Result<(), LockError> {
    let _ = tag;
    Ok(())
}

#[lock_core::locked(name = "ld-inner-{tag}")]
fn inner_first(tag: &str) -> Result<(), LockError> {
    outer_only(tag)
}

#[test]
fn attribute_orders_are_checked_by_class_with_the_functions_named() {
    on();
    let tag = unique("t");
    outer(&tag).unwrap();
    // Another tag, same classes: `ld-inner-{}` then `ld-outer-{}` inverts the order.
    let other = unique("u");
    inner_first(&other).unwrap();
    let inv = reported("ld-outer-{}", "ld-inner-{}").expect("reported by class");
    let text = inv.to_string();
    assert!(
        text.contains("lockdep::outer") || text.contains("lockdep::inner_first"),
        "{text}"
    );
}

#[lock_core::locked(name = "ld-acct-{id}")]
fn account(id: u64, then: Option<u64>) -> Result<(), LockError> {
    match then {
        Some(t) => account(t, None),
        None => Ok(()),
    }
}

#[test]
fn nesting_two_locks_of_one_class_is_reported() {
    on();
    account(1, Some(2)).unwrap();
    let inv = reported("ld-acct-{}", "ld-acct-{}").expect("nested in one class");
    assert!(inv.to_string().contains("nested"), "{inv}");
}

#[lock_core::locked(name = ["ld-pair-{x}", "ld-pair-{y}"])]
fn pair(x: u64, y: u64) -> Result<(), LockError> {
    Ok(())
}

#[test]
fn several_names_of_one_attribute_are_no_inversion() {
    on();
    pair(1, 2).unwrap();
    pair(2, 1).unwrap();
    assert!(
        reported("ld-pair-{}", "ld-pair-{}").is_none(),
        "{:?}",
        lockdep::inversions()
    );
}

#[lock_core::locked(name = "ld-reentry")]
async fn ld_outer() -> Result<Result<(), LockError>, LockError> {
    Ok(ld_inner().await)
}

#[lock_core::locked(name = "ld-reentry")]
async fn ld_inner() -> Result<(), LockError> {
    Ok(())
}

/// With the checker on, the attribute's first step takes its slow path; re-entry must
/// still be `Busy { reentrant }`, not a one-step deadlock.
#[tokio::test]
async fn reentry_under_the_checker_is_busy_not_a_deadlock() {
    on();
    let nested = tokio::time::timeout(std::time::Duration::from_secs(10), ld_outer())
        .await
        .expect("re-entry hung")
        .unwrap();
    assert!(
        matches!(
            nested,
            Err(LockError::Busy {
                reentrant: true,
                ..
            })
        ),
        "{nested:?}"
    );
}
