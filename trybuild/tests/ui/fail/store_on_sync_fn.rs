use lock_core::lease::LeaseStore;
use lock_core::{locked, LockError};

#[locked(name = "db", store = store)]
fn f<S: LeaseStore>(store: &S) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
