//! Shapes and per-call options: `shared`, `permits`, `path`, options as constants and
//! expressions, names with fields and format specs.

use std::time::Duration;

use lock_core::{locked, LockError};

const LIMIT_MS: u64 = 2_000;
const SLOTS: u32 = 2;

pub struct Config {
    pub wait_ms: u64,
    pub slots: usize,
    pub dir: std::path::PathBuf,
}

#[locked(name = "catalog", shared)]
async fn read_catalog() -> Result<u8, LockError> {
    Ok(1)
}

#[locked(name = "catalog")]
fn write_catalog() {}

#[locked(name = "gpu", permits = SLOTS, timeout_ms = LIMIT_MS)]
async fn render() -> anyhow::Result<()> {
    Ok(())
}

#[locked(name = "pool-{kind}", permits = cfg.slots, timeout_ms = cfg.wait_ms, file = &cfg.dir)]
fn with_config(kind: &str, cfg: &Config) -> std::io::Result<usize> {
    Ok(cfg.slots)
}

#[locked(name = "job-{job:?}", timeout_ms = Some(Duration::from_millis(500)))]
async fn by_debug(job: (u8, u8)) -> Result<(), LockError> {
    let _ = job;
    Ok(())
}

pub struct Order {
    pub customer: u64,
}

#[locked(name = "customer-{order.customer:>6}", path = std::env::temp_dir().join("lock-core-trybuild-path.lock"))]
fn by_customer(order: &Order) -> Result<u64, LockError> {
    Ok(order.customer)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(read_catalog().await.unwrap(), 1);
    write_catalog();
    render().await.unwrap();
    let dir = std::env::temp_dir().join("lock-core-trybuild-shapes");
    let cfg = Config {
        wait_ms: 1_000,
        slots: 3,
        dir: dir.clone(),
    };
    assert_eq!(with_config("db", &cfg).unwrap(), 3);
    by_debug((1, 2)).await.unwrap();
    assert_eq!(by_customer(&Order { customer: 9 }).unwrap(), 9);
    let _ = std::fs::remove_dir_all(dir);
}
