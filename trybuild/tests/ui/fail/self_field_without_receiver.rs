use lock_core::{locked, LockError};

#[locked(name = "account-{self.id}")]
async fn close(reason: &str) -> Result<(), LockError> {
    let _ = reason;
    Ok(())
}

fn main() {}
