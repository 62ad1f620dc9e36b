use std::fmt::{Debug, Display};
use std::future::Future;

use lock_core::{locked, LockError};

#[locked(name = "gen-{key}")]
async fn generic<'a, K, V>(key: K, values: &'a [V]) -> Result<&'a [V], LockError>
where
    K: Display + Send,
    V: Debug + Sync,
{
    Ok(values)
}

#[locked(name = "gen-const")]
async fn const_generic<const N: usize>(xs: [u8; N]) -> Result<usize, LockError> {
    Ok(xs.len())
}

#[locked(name = "gen-impl-arg")]
async fn impl_arg(x: impl Display + Send) -> Result<String, LockError> {
    Ok(x.to_string())
}

#[locked(name = "gen-impl-ret", on_error = "panic")]
async fn impl_ret(n: u8) -> impl Display {
    n
}

#[locked(name = "gen-impl-in-result")]
async fn impl_in_result(n: u8) -> Result<impl Display, LockError> {
    Ok(n)
}

#[locked(name = "gen-sync-{x}")]
fn sync_generic<T: Display + Clone>(x: T) -> Result<T, LockError> {
    Ok(x.clone())
}

#[locked(name = "gen-tail")]
fn returns_future(n: u32) -> impl Future<Output = Result<u32, LockError>> + Send {
    async move { Ok(n) }
}

#[locked(name = "gen-tail-borrow-{n}")]
fn returns_borrowing_future<'a>(s: &'a str, n: u8) -> impl Future<Output = Result<usize, LockError>> + 'a {
    let len = s.len();
    async move { Ok(len + usize::from(n)) }
}

#[locked(name = "gen-elided")]
async fn elided(s: &str) -> Result<&str, LockError> {
    Ok(s)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(generic("k", &[1, 2]).await.unwrap(), &[1, 2]);
    assert_eq!(const_generic([1, 2, 3]).await.unwrap(), 3);
    assert_eq!(impl_arg(5).await.unwrap(), "5");
    assert_eq!(impl_ret(3).await.to_string(), "3");
    assert_eq!(impl_in_result(4).await.unwrap().to_string(), "4");
    assert_eq!(sync_generic(9).unwrap(), 9);
    assert_eq!(returns_future(2).await.unwrap(), 2);
    assert_eq!(returns_borrowing_future("ab", 1).await.unwrap(), 3);
    assert_eq!(elided("x").await.unwrap(), "x");
}
