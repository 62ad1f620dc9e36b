use lock_core::{locked, LockError};

#[locked(name = "db", timeout_ms = )]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
