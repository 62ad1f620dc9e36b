use std::future::Future;

use lock_core::{locked, LockError};

async fn work() -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "db")]
fn start() -> impl Future<Output = Result<(), LockError>> {
    work()
}

fn main() {}
