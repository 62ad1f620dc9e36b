//! `holders()` (issue #12): what this process holds, with mode, pid, call site and the
//! number of holders, and nothing once released.

use std::sync::Arc;
use std::time::Duration;

use lock_core::{Lock, Mode};
use lock_core_tests::{unique, TimedBarrier};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "current_thread")]
async fn holders_lists_a_hold_with_our_pid_and_call_site_until_released() {
    let name = unique("hand-holders");
    let g = lock_core::acquire(&name).await.unwrap();
    let all = lock_core::holders();
    let mine: Vec<_> = all.iter().filter(|h| h.name == name).collect();
    assert_eq!(mine.len(), 1, "{all:?}");
    let h = mine[0];
    assert_eq!(h.mode, Mode::Exclusive);
    assert_eq!(h.holder.pid, Some(std::process::id()));
    assert_eq!((h.holders, h.waiters), (1, 0));
    let at = h.holder.location.as_deref().unwrap_or_default();
    assert!(
        at.contains(file!()),
        "location {at:?} should name {}",
        file!()
    );
    drop(g);
    assert!(lock_core::holders().iter().all(|h| h.name != name));
}

#[test]
fn holders_lists_each_of_three_shared_holders_with_the_count() {
    let name = Arc::new(unique("hand-holders-shared"));
    let inside = Arc::new(TimedBarrier::new(4));
    let leave = Arc::new(TimedBarrier::new(4));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (name, inside, leave) = (name.clone(), inside.clone(), leave.clone());
            std::thread::spawn(move || {
                let g = Lock::new(&name)
                    .shared()
                    .timeout(LIMIT)
                    .blocking_acquire()
                    .unwrap();
                assert!(inside.wait(LIMIT));
                assert!(leave.wait(LIMIT));
                drop(g);
            })
        })
        .collect();
    assert!(inside.wait(LIMIT), "the three shared holders are inside");
    let mine: Vec<_> = lock_core::holders()
        .into_iter()
        .filter(|h| h.name == *name)
        .collect();
    assert!(leave.wait(LIMIT));
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(mine.len(), 3, "{mine:?}");
    for h in &mine {
        assert_eq!((h.mode, h.holders), (Mode::Shared, 3), "{h:?}");
        assert_eq!(h.holder.pid, Some(std::process::id()));
    }
    assert!(lock_core::holders().iter().all(|h| h.name != *name));
}
