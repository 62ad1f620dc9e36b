use lock_core::{locked, LockError};

#[locked(name = "db", timeout = 5)]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
