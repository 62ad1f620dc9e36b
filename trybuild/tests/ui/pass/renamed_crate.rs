// `lock_core` reached through another path, as with a renamed dependency or a re-export.
mod deps {
    pub use lock_core as locks;
}

use lock_core::LockError;

#[lock_core::locked(name = "renamed", crate = "crate::deps::locks")]
async fn through_reexport() -> Result<(), LockError> {
    Ok(())
}

#[lock_core::locked(name = "renamed-sync", crate = "::lock_core")]
fn absolute() -> Result<(), LockError> {
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    through_reexport().await.unwrap();
    absolute().unwrap();
}
