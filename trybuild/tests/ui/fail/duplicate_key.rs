use lock_core::{locked, LockError};

#[locked(name = "a", timeout_ms = 1, name = "b")]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
