use lock_core::{locked, LockError};

#[locked(name = "", timeout_ms = -5, colour = "red")]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
