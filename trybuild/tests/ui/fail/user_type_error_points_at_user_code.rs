use lock_core::{locked, LockError};

#[locked(name = "db")]
async fn f() -> Result<u32, LockError> {
    Ok("not a number")
}

fn main() {}
