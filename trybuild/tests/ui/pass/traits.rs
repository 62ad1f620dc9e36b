use std::future::Future;

use lock_core::{locked, LockError};

trait Repo {
    fn load(&self, id: u32) -> impl Future<Output = Result<u32, LockError>> + Send;
    async fn store(&mut self, id: u32) -> Result<(), LockError>;

    #[locked(name = "repo-default")]
    async fn ping(&self) -> Result<(), LockError> {
        Ok(())
    }
}

struct Mem(u32);

impl Repo for Mem {
    #[locked(name = "repo-{id}")]
    async fn load(&self, id: u32) -> Result<u32, LockError> {
        Ok(self.0 + id)
    }

    #[locked(name = "repo-{id}", timeout_ms = 100)]
    async fn store(&mut self, id: u32) -> Result<(), LockError> {
        self.0 = id;
        Ok(())
    }
}

#[async_trait::async_trait]
trait Service {
    async fn call(&self, n: u32) -> Result<u32, LockError>;
    async fn call_mut(&mut self, n: u32) -> anyhow::Result<u32>;
    async fn guarded(&self, id: u32) -> Result<String, LockError>;
}

struct Svc(u32);

#[async_trait::async_trait]
impl Service for Svc {
    #[locked(name = "svc")]
    async fn call(&self, n: u32) -> Result<u32, LockError> {
        tokio::task::yield_now().await;
        Ok(self.0 + n)
    }

    #[locked(name = "svc-{n}", file)]
    async fn call_mut(&mut self, n: u32) -> anyhow::Result<u32> {
        self.0 += n;
        Ok(self.0)
    }

    #[locked(name = "svc-{id}", guard = g)]
    async fn guarded(&self, id: u32) -> Result<String, LockError> {
        Ok(format!("{}:{}", g.name(), self.0 + id))
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut m = Mem(1);
    assert_eq!(assert_send(m.load(2)).await.unwrap(), 3);
    m.store(5).await.unwrap();
    m.ping().await.unwrap();
    let mut s = Svc(1);
    assert_eq!(assert_send(s.call(1)).await.unwrap(), 2);
    assert_eq!(s.call_mut(1).await.unwrap(), 2);
    assert_eq!(s.guarded(1).await.unwrap(), "svc-1:3");
}
