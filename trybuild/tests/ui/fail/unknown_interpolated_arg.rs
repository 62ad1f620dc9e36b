use lock_core::{locked, LockError};

#[locked(name = "account-{acount_id}")]
async fn f(account_id: u64, amount: i64) -> Result<(), LockError> {
    Ok(())
}

fn main() {}
