use lock_core::{locked, LockError};

#[locked(name = "db", on_error = "ignore")]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
