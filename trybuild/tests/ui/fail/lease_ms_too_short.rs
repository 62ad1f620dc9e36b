use lock_core::lease::LeaseStore;
use lock_core::{locked, LockError};

#[locked(name = "jobs", store = store, lease_ms = 5)]
async fn f<S: LeaseStore>(store: &S) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
