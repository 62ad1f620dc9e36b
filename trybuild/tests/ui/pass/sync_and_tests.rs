use lock_core::{locked, LockError};

#[locked(name = "sync", timeout_ms = 1000)]
fn sync_result() -> Result<u8, LockError> {
    Ok(1)
}

#[locked]
fn sync_unit() {}

#[locked(name = "sync-{a}-{b}", guard = g)]
fn sync_guard(a: u8, b: &str) -> std::io::Result<String> {
    Ok(g.name().to_owned())
}

#[locked(name = ["x", "y"], guard = set, file)]
fn sync_set() -> std::io::Result<usize> {
    Ok(set.guards().len())
}

#[locked(name = "unsafe-extern", on_error = "panic")]
unsafe extern "C" fn ffi_shaped(x: i32) -> i32 {
    #![allow(unused_unsafe)]
    unsafe { x }
}

#[tokio::test]
#[locked(name = "test-order")]
async fn tokio_test_above() {}

#[locked(name = "test-order")]
#[tokio::test]
async fn tokio_test_below() {}

#[test]
#[locked(name = "test-order")]
fn plain_test() {}

fn main() {
    assert_eq!(sync_result().unwrap(), 1);
    sync_unit();
    assert_eq!(sync_guard(1, "z").unwrap(), "sync-1-z");
    assert_eq!(sync_set().unwrap(), 2);
    assert_eq!(unsafe { ffi_shaped(3) }, 3);
}
