use lock_core::lease::LeaseStore;
use lock_core::{locked, LockError};

#[locked(name = ["jobs", "reports"], store = store)]
async fn f<S: LeaseStore>(store: &S) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
