use lock_core::{locked, LockError};

#[locked(name = "line\nbreak")]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
