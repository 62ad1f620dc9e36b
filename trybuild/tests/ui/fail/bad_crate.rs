use lock_core::{locked, LockError};

#[locked(name = "db", crate = "not a path")]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
