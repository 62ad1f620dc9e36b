use lock_core::{locked, LockError};

#[locked(name)]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
