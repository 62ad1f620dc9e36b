use lock_core::{locked, LockError};

struct Account(u64);

impl Account {
    #[locked(name = "account-{self}")]
    async fn close(&self, reason: &str) -> Result<(), LockError> {
        Ok(())
    }
}

fn main() {}
