use lock_core::{locked, LockError};

struct Id;

#[locked(name = "account-{id}")]
async fn f(id: Id) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
