// The expansion names everything by absolute path, so it works where nothing is
// imported implicitly.
mod bare {
    #![no_implicit_prelude]

    #[::lock_core::locked(name = ["plain", "user-{id}"], timeout_ms = 1_000, guard = set)]
    pub async fn dynamic(id: u32) -> ::std::result::Result<usize, ::lock_core::LockError> {
        ::std::result::Result::Ok(set.guards().len())
    }

    #[::lock_core::locked(name = "sync", file)]
    pub fn sync() -> ::std::result::Result<(), ::lock_core::LockError> {
        ::std::result::Result::Ok(())
    }

    #[::lock_core::locked]
    pub async fn bare() {}
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(bare::dynamic(1).await.unwrap(), 2);
    bare::sync().unwrap();
    bare::bare().await;
}
