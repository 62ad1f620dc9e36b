use lock_core::{locked, LockError};

const LIMIT: f64 = 1.5;

#[locked(name = "db", timeout_ms = LIMIT)]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
