//! Failure paths through `#[locked]`: timeout, try-once, re-entry, panics, cancellation
//! and the `on_error` choices.

use std::time::Duration;

use lock_core::{locked, LockError};
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(20);

#[locked(name = "attr-timeout", timeout_ms = 50)]
async fn with_timeout() -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "attr-timeout", timeout_ms = 0)]
async fn try_once() -> Result<(), LockError> {
    Ok(())
}

#[tokio::test]
async fn timeout_returns_err_and_zero_tries_once() {
    // Taken by another task: held by this one it would be re-entry, refused at once.
    let held = tokio::spawn(lock_core::acquire("attr-timeout"))
        .await
        .unwrap()
        .unwrap();
    let err = with_timeout().await.unwrap_err();
    assert!(matches!(err, LockError::Timeout { .. }), "{err:?}");
    assert_eq!(err.code(), 8403);
    assert_eq!(err.name(), "attr-timeout");
    let err = try_once().await.unwrap_err();
    assert!(
        matches!(
            err,
            LockError::Busy {
                reentrant: false,
                ..
            }
        ),
        "{err:?}"
    );
    drop(held);
    with_timeout().await.unwrap();
    try_once().await.unwrap();
}

#[locked(name = "attr-timeout-sync", timeout_ms = 50)]
fn sync_with_timeout() -> std::io::Result<u8> {
    Ok(7)
}

#[test]
fn sync_timeout_converts_into_io_error() {
    let held = lock_core::try_acquire("attr-timeout-sync").unwrap();
    let err = std::thread::spawn(sync_with_timeout)
        .join()
        .unwrap()
        .unwrap_err();
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<LockError>());
    assert!(matches!(inner, Some(LockError::Timeout { .. })), "{err:?}");
    drop(held);
    assert_eq!(sync_with_timeout().unwrap(), 7);
}

#[locked(name = "attr-anyhow", timeout_ms = 0)]
async fn anyhow_result() -> anyhow::Result<u32> {
    Ok(1)
}

#[tokio::test]
async fn anyhow_errors_carry_the_lock_error() {
    let held = lock_core::acquire("attr-anyhow").await.unwrap();
    let err = anyhow_result().await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<LockError>().map(LockError::code),
        Some(8406)
    );
    drop(held);
    assert_eq!(anyhow_result().await.unwrap(), 1);
}

#[locked(name = "attr-reentry")]
async fn outer() -> Result<Result<(), LockError>, LockError> {
    Ok(inner().await)
}

#[locked(name = "attr-reentry")]
async fn inner() -> Result<(), LockError> {
    Ok(())
}

#[tokio::test]
async fn reentry_is_busy_not_a_deadlock() {
    let nested = tokio::time::timeout(LIMIT, outer())
        .await
        .expect("re-entry deadlocked")
        .unwrap();
    let err = nested.unwrap_err();
    assert!(
        matches!(
            err,
            LockError::Busy {
                reentrant: true,
                ..
            }
        ),
        "{err:?}"
    );
    // Outside the chain the same fn takes the lock normally.
    inner().await.unwrap();
}

#[locked(name = "attr-reentry-sync")]
fn sync_outer() -> Result<Result<(), LockError>, LockError> {
    Ok(sync_inner())
}

#[locked(name = "attr-reentry-sync")]
fn sync_inner() -> Result<(), LockError> {
    Ok(())
}

#[test]
fn sync_reentry_is_busy() {
    let err = sync_outer().unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            LockError::Busy {
                reentrant: true,
                ..
            }
        ),
        "{err:?}"
    );
    sync_inner().unwrap();
}

#[locked(name = "attr-panic")]
async fn panics() -> Result<(), LockError> {
    panic!("boom inside the critical section");
}

#[locked(name = "attr-panic-sync")]
fn panics_sync() {
    panic!("boom inside the sync critical section");
}

#[tokio::test]
async fn panic_releases_the_lock() {
    let joined = tokio::spawn(panics()).await;
    assert!(joined.unwrap_err().is_panic());
    assert!(!lock_core::is_locked("attr-panic"));
    drop(lock_core::try_acquire("attr-panic").unwrap());

    let caught = std::panic::catch_unwind(panics_sync);
    assert!(caught.is_err());
    assert!(!lock_core::is_locked("attr-panic-sync"));
    drop(lock_core::try_acquire("attr-panic-sync").unwrap());
}

#[locked(name = "attr-cancel")]
async fn waits_forever(entered: oneshot::Sender<()>) {
    let _ = entered.send(());
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_future_releases_the_lock() {
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(waits_forever(tx));
    tokio::time::timeout(LIMIT, rx).await.unwrap().unwrap();
    assert!(lock_core::is_locked("attr-cancel"));
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let g = tokio::time::timeout(LIMIT, lock_core::acquire("attr-cancel"))
        .await
        .expect("lock not released after cancellation")
        .unwrap();
    drop(g);

    // The same through select!: the losing branch is dropped mid-body.
    let (tx, rx) = oneshot::channel();
    tokio::select! {
        _ = waits_forever(tx) => unreachable!(),
        r = rx => r.unwrap(),
    }
    assert!(!lock_core::is_locked("attr-cancel"));
}

#[locked(name = "attr-unit", timeout_ms = 0)]
async fn unit_returning() {}

#[tokio::test]
async fn unit_fn_panics_naming_the_lock() {
    let held = lock_core::acquire("attr-unit").await.unwrap();
    let err = tokio::spawn(unit_returning()).await.unwrap_err();
    let payload = err.into_panic();
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(msg.contains("attr-unit"), "{msg}");
    drop(held);
    unit_returning().await;
}

#[locked(name = "attr-on-error-panic", timeout_ms = 0, on_error = "panic")]
async fn result_but_panics() -> Result<u8, LockError> {
    Ok(1)
}

#[tokio::test]
async fn on_error_panic_panics_even_for_result() {
    let held = lock_core::acquire("attr-on-error-panic").await.unwrap();
    let err = tokio::spawn(result_but_panics()).await.unwrap_err();
    assert!(err.is_panic());
    drop(held);
    assert_eq!(result_but_panics().await.unwrap(), 1);
}

#[derive(Debug, PartialEq)]
enum Status {
    Done(u32),
    Locked(u16),
}

fn to_status(e: LockError) -> Status {
    Status::Locked(e.code())
}

#[locked(name = "attr-on-error-path", timeout_ms = 0, on_error = to_status)]
async fn status() -> Status {
    Status::Done(3)
}

#[locked(name = "attr-on-error-path", timeout_ms = 0, on_error = crate::to_status)]
fn status_sync() -> Status {
    Status::Done(4)
}

#[tokio::test]
async fn on_error_path_maps_the_error() {
    let held = lock_core::acquire("attr-on-error-path").await.unwrap();
    assert_eq!(status().await, Status::Locked(8406));
    assert_eq!(status_sync(), Status::Locked(8406));
    drop(held);
    assert_eq!(status().await, Status::Done(3));
    assert_eq!(status_sync(), Status::Done(4));
}

#[locked(name = "attr-early-return")]
async fn early(fail: bool) -> Result<u32, anyhow::Error> {
    if fail {
        anyhow::bail!("early");
    }
    let n: u32 = "41".parse()?;
    Ok(n + 1)
}

#[tokio::test]
async fn early_return_and_question_mark_release() {
    assert!(early(true).await.is_err());
    assert!(!lock_core::is_locked("attr-early-return"));
    assert_eq!(early(false).await.unwrap(), 42);
    assert!(!lock_core::is_locked("attr-early-return"));
}

#[locked(name = "x{id}")]
async fn empty_dynamic(id: &str) -> Result<(), LockError> {
    let _ = id;
    Ok(())
}

#[tokio::test]
async fn invalid_dynamic_names_are_errors_at_run_time() {
    let long = "y".repeat(300);
    let err = empty_dynamic(&long).await.unwrap_err();
    assert_eq!(err.code(), 8405);
    empty_dynamic("ok").await.unwrap();
}

#[locked(name = "attr-nul-{id}")]
async fn unit_dynamic(id: &str) {
    let _ = id;
}

#[tokio::test]
async fn a_control_character_in_a_name_is_escaped_in_the_panic() {
    let err = tokio::spawn(unit_dynamic("a\0b")).await.unwrap_err();
    let msg = err
        .into_panic()
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        !msg.contains('\0'),
        "a raw NUL reached the message: {msg:?}"
    );
    assert!(msg.contains("attr-nul-a\\0b"), "{msg}");
}

struct Acct;

impl Acct {
    #[locked(name = "attr-method-site", timeout_ms = 0)]
    async fn post(&self) {}

    #[locked(name = "attr-method-site-sync", timeout_ms = 0)]
    fn post_sync(&self) {}

    /// Holds its lock until told to let go.
    #[locked(name = "attr-method-site-held")]
    fn hold(&self, inside: oneshot::Sender<()>, release: oneshot::Receiver<()>) {
        let _ = inside.send(());
        let _ = futures::executor::block_on(release);
    }
}

/// A method's site names its type (`module::Acct::post`), in panics and in the holder
/// that others see.
#[tokio::test]
async fn a_methods_site_names_its_type() {
    Acct.post().await;
    let held = lock_core::acquire("attr-method-site").await.unwrap();
    let err = tokio::spawn(async { Acct.post().await }).await.unwrap_err();
    let msg = err
        .into_panic()
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(msg.contains("attribute_failures::Acct::post`"), "{msg}");
    drop(held);
    let (tx, rx) = oneshot::channel::<()>();
    let (in_tx, in_rx) = oneshot::channel::<()>();
    let holder = std::thread::spawn(move || Acct.hold(in_tx, rx));
    in_rx.await.unwrap();
    let busy = lock_core::try_acquire("attr-method-site-held").unwrap_err();
    let holder_text = busy.holder().map(ToString::to_string).unwrap_or_default();
    assert!(
        holder_text.contains("attribute_failures::Acct::hold`"),
        "{holder_text}"
    );
    let _ = tx.send(());
    holder.join().unwrap();
    Acct.post_sync();
}

/// A test returning a type that cannot carry a `LockError` compiles, and a lock failure
/// fails it with the usual panic (serial_test accepts any return type).
#[locked(name = "attr-test-result", timeout_ms = 0)]
#[test]
#[ignore = "called by a_test_returning_a_non_carrying_result_panics_on_failure"]
fn returns_a_result_with_unit_error() -> Result<(), ()> {
    Ok(())
}

/// The same with the test attribute first (expanded before `#[locked]`, it leaves only
/// `#[ignore]` behind, which marks a test too).
#[test]
#[ignore = "called by a_test_returning_a_non_carrying_result_panics_on_failure"]
#[locked(name = "attr-test-result", timeout_ms = 0)]
fn returns_a_result_with_unit_error_test_first() -> Result<(), ()> {
    Ok(())
}

#[test]
fn a_test_returning_a_non_carrying_result_panics_on_failure() {
    assert_eq!(returns_a_result_with_unit_error(), Ok(()));
    assert_eq!(returns_a_result_with_unit_error_test_first(), Ok(()));
    let held = lock_core::try_acquire("attr-test-result").unwrap();
    for f in [
        returns_a_result_with_unit_error as fn() -> Result<(), ()>,
        returns_a_result_with_unit_error_test_first,
    ] {
        let msg = std::thread::spawn(f)
            .join()
            .unwrap_err()
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(msg.contains("attr-test-result"), "{msg}");
    }
    drop(held);
}
