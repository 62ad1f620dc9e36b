use lock_core::{locked, LockError};

#[locked(nmae = "db")]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
