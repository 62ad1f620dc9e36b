use lock_core::{locked, LockError};

#[locked(name = "db", timeout_ms = 5_000)]
pub async fn fixed(x: u32) -> Result<u32, LockError> {
    Ok(x)
}

#[locked]
async fn bare() -> std::io::Result<()> {
    Ok(())
}

#[locked(name = "account-{id}")]
async fn dynamic(id: u64, mut amount: i64) -> anyhow::Result<i64> {
    amount += 1;
    let parsed: i64 = "1".parse()?;
    if amount < 0 {
        return Ok(0);
    }
    Ok(amount + parsed)
}

#[locked(name = ["b", "a", "b"], file)]
async fn several() -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "unit", timeout_ms = 0)]
async fn unit() {}

#[locked(name = "panics", on_error = "panic")]
async fn answer() -> u32 {
    42
}

fn fallback(_: LockError) -> u32 {
    0
}

#[locked(name = "handled", on_error = fallback)]
async fn handled() -> u32 {
    1
}

#[locked(name = "dir", file = "target/locks", timeout_ms = 10)]
async fn in_dir() -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "boxed-error")]
async fn boxed_error() -> Result<(), Box<dyn std::error::Error>> {
    Ok(())
}

#[locked(name = "boxed-error-send")]
fn boxed_error_send() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Ok(())
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::main]
async fn main() {
    let f = fixed(1);
    assert_send(&f);
    assert_eq!(f.await.unwrap(), 1);
    bare().await.unwrap();
    assert_eq!(dynamic(7, 1).await.unwrap(), 3);
    several().await.unwrap();
    unit().await;
    assert_eq!(answer().await, 42);
    assert_eq!(handled().await, 1);
    let _ = in_dir;
    boxed_error().await.unwrap();
    boxed_error_send().unwrap();
}
