use lock_core::{locked, LockError};

#[locked(name = "account-{}")]
async fn f(id: u64) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
