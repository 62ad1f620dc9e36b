use lock_core::{locked, LockError};

#[locked(name = "db", file = 5)]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
