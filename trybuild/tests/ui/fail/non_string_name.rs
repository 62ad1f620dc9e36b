use lock_core::{locked, LockError};

#[locked(name = db)]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
