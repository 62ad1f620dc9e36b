use lock_core::{locked, LockError};

struct Counter {
    n: u64,
}

impl Counter {
    #[locked(name = "counter")]
    async fn get(&self) -> Result<u64, LockError> {
        Ok(self.n)
    }

    #[locked(name = "counter-{by}")]
    async fn add(&mut self, by: u64) -> Result<u64, LockError> {
        self.n += by;
        Ok(self.n)
    }

    #[locked(name = "counter", on_error = "panic")]
    async fn into_inner(self) -> u64 {
        self.n
    }

    #[locked(name = "counter")]
    fn get_sync(&self) -> Result<u64, LockError> {
        Ok(self.n)
    }

    #[locked(name = "counter")]
    fn reset(&mut self) {
        self.n = 0;
    }

    #[locked(name = "counter")]
    async fn boxed(self: Box<Self>) -> Result<u64, LockError> {
        Ok(self.n)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut c = Counter { n: 1 };
    assert_eq!(c.get().await.unwrap(), 1);
    assert_eq!(c.add(2).await.unwrap(), 3);
    assert_eq!(c.get_sync().unwrap(), 3);
    c.reset();
    assert_eq!(Box::new(Counter { n: 5 }).boxed().await.unwrap(), 5);
    assert_eq!(c.into_inner().await, 0);
}
