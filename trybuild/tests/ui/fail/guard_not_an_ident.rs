use lock_core::{locked, LockError};

#[locked(name = "db", guard = self.guard)]
async fn f() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
