use lock_core::{locked, LockError};

trait Repo {
    #[locked(name = "repo")]
    async fn load(&self) -> Result<(), LockError>;
}

fn main() {}
