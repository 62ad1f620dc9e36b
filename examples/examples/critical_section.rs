//! An application critical section with `#[locked]`: a nightly job that must never run
//! twice at once, with a bounded wait and ordinary `Result` error handling.
//!
//! Run: `cargo run -p lock-core-examples --example critical_section`

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lock_core::{locked, LockError};

/// The application's error type. `From<LockError>` is all `#[locked]` needs to report a
/// lock failure as `Err(..)`.
#[derive(Debug)]
enum JobError {
    /// Someone else is running the job right now.
    AlreadyRunning(LockError),
    /// The job itself failed.
    Failed(String),
}

impl From<LockError> for JobError {
    fn from(e: LockError) -> Self {
        JobError::AlreadyRunning(e)
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobError::AlreadyRunning(e) => write!(f, "skipped: {e} [code {}]", e.code()),
            JobError::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

static INVOICES: AtomicU32 = AtomicU32::new(0);

/// Bills every customer. Waits at most 200 ms for a run in progress, then gives up with
/// `Err(JobError::AlreadyRunning(LockError::Timeout { .. }))`.
#[locked(name = "billing-run", timeout_ms = 200)]
async fn billing_run(customers: u32) -> Result<u32, JobError> {
    if customers == 0 {
        // `return` and `?` work as usual; the lock is released on the way out.
        return Err(JobError::Failed("no customers to bill".into()));
    }
    for _ in 0..customers {
        tokio::time::sleep(Duration::from_millis(100)).await;
        INVOICES.fetch_add(1, Ordering::SeqCst);
    }
    Ok(customers)
}

/// Same lock, `anyhow` error type: `anyhow::Error` converts from `LockError` too.
/// `timeout_ms = 0` tries once and fails with `Busy` instead of waiting.
#[locked(name = "billing-run", timeout_ms = 0)]
async fn billing_status() -> anyhow::Result<u32> {
    Ok(INVOICES.load(Ordering::SeqCst))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("== two billing runs start together: one bills, the other times out");
    let (a, b) = tokio::join!(billing_run(5), async {
        // Let the first run take the lock.
        tokio::task::yield_now().await;
        billing_run(5).await
    });
    for (who, r) in [("first", &a), ("second", &b)] {
        match r {
            Ok(n) => println!("   {who}: billed {n} customers"),
            Err(e) => println!("   {who}: {e}"),
        }
    }
    assert!(a.is_ok() && matches!(b, Err(JobError::AlreadyRunning(LockError::Timeout { .. }))));

    println!("== while a run is in progress, a status check fails fast with Busy");
    let run = tokio::spawn(billing_run(3));
    while !lock_core::is_locked("billing-run") {
        tokio::task::yield_now().await;
    }
    match billing_status().await {
        Ok(n) => println!("   {n} invoices so far"),
        Err(e) => println!("   status unavailable: {e}"),
    }
    run.await?.map_err(|e| anyhow::anyhow!("{e}"))?;

    println!("== the job's own errors come back unchanged, and the lock is free again");
    if let Err(e) = billing_run(0).await {
        println!("   {e}");
    }
    println!("   invoices: {}", billing_status().await?);
    Ok(())
}
