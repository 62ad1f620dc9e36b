use lock_core::{locked, LockError};

#[locked(name = "db", timeout_ms = 18446744073709551616)]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
