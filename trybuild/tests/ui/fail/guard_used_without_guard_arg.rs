use lock_core::{locked, LockError};

#[locked(name = "db")]
async fn f() -> Result<(), LockError> {
    let _ = g.name();
    Ok(())
}

fn main() {}
