//! `reentrant` and `readers_first`, and tests whose return type cannot carry a
//! `LockError` (a failure panics).
use lock_core::locked;

#[locked(name = "re", reentrant)]
async fn nested(n: u32) -> Result<u32, lock_core::LockError> {
    if n == 0 {
        return Ok(0);
    }
    Ok(Box::pin(nested(n - 1)).await? + 1)
}

#[locked(name = "re-sync", shared, reentrant)]
fn nested_sync() {}

#[locked(name = "rf", shared, readers_first, timeout_ms = 100)]
async fn reader() -> Result<(), lock_core::LockError> {
    Ok(())
}

#[locked(name = "rf", file, shared, readers_first, reentrant)]
fn file_reader() -> Result<(), lock_core::LockError> {
    Ok(())
}

#[locked(name = "test-result")]
#[test]
fn a_test_returning_result_with_unit_error() -> Result<(), ()> {
    Ok(())
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(nested(3)).unwrap(), 3);
    rt.block_on(reader()).unwrap();
    nested_sync();
    let _ = file_reader();
}
