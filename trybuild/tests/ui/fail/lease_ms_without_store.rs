use lock_core::{locked, LockError};

#[locked(name = "db", lease_ms = 30000)]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
