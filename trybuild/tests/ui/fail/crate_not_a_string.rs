use lock_core::{locked, LockError};

#[locked(name = "db", crate = lock_core)]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
