use lock_core::{locked, LockError};

#[locked(name = "db")]
async fn f() -> Result<(), LockError> {
    drop(lock_core_held);
    Ok(())
}

fn main() {}
