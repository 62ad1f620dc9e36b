use lock_core::{locked, LockError};

#[locked(name = ["a", 5])]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
