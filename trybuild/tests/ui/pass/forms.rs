//! `#[locked]` on an inline module (its tests) and on impl blocks (every fn).

use lock_core::{locked, LockError};

#[locked(name = "fixture-db")]
mod tests {
    pub fn helper() -> u32 {
        // Not a test: left unlocked, so tests can call it while holding the lock.
        assert!(!lock_core::try_acquire("fixture-db").is_err() || true);
        1
    }

    #[test]
    fn sync_test() {
        assert_eq!(helper(), 1);
    }

    #[tokio::test]
    async fn async_test() {
        assert!(lock_core::is_locked("fixture-db"));
    }

    mod nested {
        #[test]
        fn deeper() {}
    }
}

#[locked]
mod serial_suite {
    #[test]
    fn one() {}
}

pub struct Account {
    pub id: u64,
}

#[locked]
impl Account {
    pub async fn close(&self) -> Result<u64, LockError> {
        Ok(self.id)
    }

    pub fn open(id: u64) -> std::io::Result<Account> {
        Ok(Account { id })
    }

    #[locked(name = "audit-{self.id}")]
    pub fn audited(&self) -> Result<(), LockError> {
        Ok(())
    }
}

pub trait Job {
    fn run(&self) -> Result<(), LockError>;
}

#[locked(name = "jobs", timeout_ms = 1_000)]
impl Job for Account {
    fn run(&self) -> Result<(), LockError> {
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = Account::open(7).unwrap();
    assert_eq!(a.close().await.unwrap(), 7);
    a.audited().unwrap();
    a.run().unwrap();
}
