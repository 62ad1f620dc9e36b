//! Every kind of function `#[locked]` supports, run for real.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

use lock_core::{locked, LockError};

fn assert_send<T: Send>(t: T) -> T {
    t
}

fn assert_send_sync<T: Send + Sync>(t: T) -> T {
    t
}

struct Account {
    balance: i64,
}

impl Account {
    #[locked(name = "attr-kinds-account")]
    async fn balance(&self) -> Result<i64, LockError> {
        Ok(self.balance)
    }

    #[locked(name = "attr-kinds-account")]
    async fn deposit(&mut self, amount: i64) -> Result<i64, LockError> {
        self.balance += amount;
        Ok(self.balance)
    }

    #[locked(name = "attr-kinds-account", on_error = "panic")]
    async fn close(self) -> i64 {
        self.balance
    }

    #[locked(name = "attr-kinds-account")]
    fn audit(&self) -> Result<bool, LockError> {
        Ok(lock_core::is_locked("attr-kinds-account"))
    }
}

#[tokio::test]
async fn methods_with_every_receiver() {
    let mut a = Account { balance: 1 };
    assert_eq!(a.balance().await.unwrap(), 1);
    assert_eq!(assert_send(a.deposit(2)).await.unwrap(), 3);
    assert!(a.audit().unwrap());
    assert_eq!(a.close().await, 3);
}

#[locked(name = "attr-kinds-generic-{key}")]
async fn generic<'a, K, V: Clone + Send>(key: K, values: &'a [V]) -> Result<&'a [V], LockError>
where
    K: Display + Send,
{
    Ok(values)
}

#[locked(name = "attr-kinds-impl", on_error = "panic")]
async fn impl_return(n: u32) -> impl Display {
    n * 2
}

#[locked(name = "attr-kinds-impl")]
async fn impl_in_result(n: u32) -> Result<impl Display, LockError> {
    Ok(n + 1)
}

#[tokio::test]
async fn generics_lifetimes_and_impl_returns() {
    let v = [1, 2, 3];
    assert_eq!(assert_send(generic("k", &v)).await.unwrap(), &[1, 2, 3]);
    assert_eq!(impl_return(4).await.to_string(), "8");
    assert_eq!(impl_in_result(4).await.unwrap().to_string(), "5");
}

trait Service {
    fn call(&self, n: u32) -> impl Future<Output = Result<u32, LockError>> + Send;
}

struct Native;

impl Service for Native {
    #[locked(name = "attr-kinds-native")]
    async fn call(&self, n: u32) -> Result<u32, LockError> {
        Ok(n + u32::from(lock_core::is_locked("attr-kinds-native")))
    }
}

#[async_trait::async_trait]
trait Boxed {
    async fn call(&self, n: u32) -> Result<u32, LockError>;
    async fn by_name(&self, id: u32) -> Result<bool, LockError>;
}

struct ViaAsyncTrait;

#[async_trait::async_trait]
impl Boxed for ViaAsyncTrait {
    #[locked(name = "attr-kinds-boxed", timeout_ms = 1_000)]
    async fn call(&self, n: u32) -> Result<u32, LockError> {
        tokio::task::yield_now().await;
        Ok(n + u32::from(lock_core::is_locked("attr-kinds-boxed")))
    }

    #[locked(name = "attr-kinds-boxed-{id}", guard = g)]
    async fn by_name(&self, id: u32) -> Result<bool, LockError> {
        Ok(g.name() == format!("attr-kinds-boxed-{id}"))
    }
}

#[tokio::test]
async fn trait_impls_native_and_async_trait() {
    assert_eq!(assert_send(Native.call(1)).await.unwrap(), 2);
    let boxed: &(dyn Boxed + Sync) = &ViaAsyncTrait;
    assert_eq!(boxed.call(1).await.unwrap(), 2);
    assert!(boxed.by_name(5).await.unwrap());
    // The async-trait future is `Send` (it is a `Pin<Box<dyn Future + Send>>`) and runs
    // on a spawned task.
    let r = tokio::spawn(async { ViaAsyncTrait.call(10).await })
        .await
        .unwrap();
    assert_eq!(r.unwrap(), 11);
}

#[locked(name = "attr-kinds-tail-{id}")]
fn returns_future(id: u32) -> impl Future<Output = Result<u32, LockError>> + Send {
    let doubled = id * 2;
    async move {
        tokio::task::yield_now().await;
        Ok(doubled + u32::from(lock_core::is_locked(&format!("attr-kinds-tail-{id}"))))
    }
}

#[tokio::test]
async fn sync_fn_returning_an_async_block() {
    let fut = returns_future(3);
    // Nothing is locked until the future runs.
    assert!(!lock_core::is_locked("attr-kinds-tail-3"));
    assert_eq!(tokio::spawn(fut).await.unwrap().unwrap(), 7);
}

static TEST_RUNS: AtomicU32 = AtomicU32::new(0);

#[tokio::test]
#[locked(name = "attr-kinds-test-order")]
async fn tokio_test_above() {
    assert!(lock_core::is_locked("attr-kinds-test-order"));
    TEST_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[locked(name = "attr-kinds-test-order")]
#[tokio::test]
async fn tokio_test_below() {
    assert!(lock_core::is_locked("attr-kinds-test-order"));
    TEST_RUNS.fetch_add(1, Ordering::SeqCst);
}

#[locked(name = "attr-kinds-test-order")]
#[test]
fn plain_test() {
    assert!(lock_core::is_locked("attr-kinds-test-order"));
}

#[test]
#[locked(name = "attr-kinds-sync-result")]
fn plain_test_returning_result() -> Result<(), LockError> {
    assert!(lock_core::is_locked("attr-kinds-sync-result"));
    Ok(())
}

/// Documented, `#[must_use]`, and still locked.
#[must_use = "the answer matters"]
#[locked(name = "attr-kinds-attrs")]
#[inline]
fn with_attributes() -> Result<u8, LockError> {
    #![allow(clippy::needless_return)]
    return Ok(1);
}

#[test]
fn outer_and_inner_attributes_are_kept() {
    assert_eq!(with_attributes().unwrap(), 1);
}

// The future of an annotated async fn is `Send` and `Sync` in every shape: the wait it
// may await (in-process, with a timeout, for a file lock, for several names, with an
// opt-in) is too.

#[locked(name = "attr-kinds-sync-plain")]
async fn plain() -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "attr-kinds-sync-timeout", timeout_ms = 5_000, shared)]
async fn with_timeout() -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "attr-kinds-sync-file", file = "/tmp/lock-core-attribute-tests")]
async fn with_file() -> Result<(), LockError> {
    Ok(())
}

#[locked(name = ["attr-kinds-sync-a", "attr-kinds-sync-b"], permits = 2)]
async fn several() -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "attr-kinds-sync-{n}", reentrant)]
async fn computed_reentrant(n: u32) -> Result<u32, LockError> {
    Ok(n)
}

#[tokio::test]
async fn every_shapes_future_is_send_and_sync() {
    assert_send_sync(plain()).await.unwrap();
    assert_send_sync(with_timeout()).await.unwrap();
    assert_send_sync(with_file()).await.unwrap();
    assert_send_sync(several()).await.unwrap();
    assert_eq!(assert_send_sync(computed_reentrant(7)).await.unwrap(), 7);
}
