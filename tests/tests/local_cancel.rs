//! Release on panic and on drop; random cancellations never wedge a lock.

use std::time::Duration;

use futures::poll;
use lock_core_tests::unique;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_holder_releases() {
    let name = unique("panic");
    let n = name.clone();
    let r = tokio::spawn(async move {
        let _g = lock_core::acquire(&n).await.unwrap();
        panic!("boom while holding");
    })
    .await;
    assert!(r.unwrap_err().is_panic());
    assert!(!lock_core::is_locked(&name));

    let n = name.clone();
    let caught = std::panic::catch_unwind(move || {
        let _g = lock_core::blocking_acquire(&n, None).unwrap();
        panic!("boom in sync code");
    });
    assert!(caught.is_err());
    assert!(lock_core::try_acquire(&name).is_ok());
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_a_locked_body_mid_way_releases() {
    let name = unique("drop-body");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut body = Box::pin(lock_core::with_lock(&name, async move {
        let _ = rx.await;
    }));
    assert!(poll!(body.as_mut()).is_pending());
    assert!(lock_core::is_locked(&name));
    drop(body);
    drop(tx);
    assert!(!lock_core::is_locked(&name));
    assert!(lock_core::try_acquire(&name).is_ok());
}

#[tokio::test(flavor = "current_thread")]
async fn a_waiter_dropped_after_being_handed_the_lock_passes_it_on() {
    let name = unique("granted-drop");
    let holder = lock_core_tests::HeldElsewhere::lock(&name);
    let mut first = Box::pin(lock_core::acquire(&name));
    let mut second = Box::pin(lock_core::acquire(&name));
    assert!(poll!(first.as_mut()).is_pending());
    assert!(poll!(second.as_mut()).is_pending());
    // The release hands the lock to `first`, which is dropped before it ever looks:
    // the wake-up must reach `second` instead of being swallowed.
    drop(holder);
    drop(first);
    let g = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("second waiter is woken")
        .unwrap();
    drop(g);
    assert!(!lock_core::is_locked(&name));
}
