//! Quickstart: several tasks contend for one named lock; each takes its turn.
//!
//! Run: `cargo run -p lock-core-examples --example quickstart`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lock_core::LockError;

#[tokio::main]
async fn main() -> Result<(), LockError> {
    println!("== 1. five tasks contend for the lock \"inventory\" (FIFO, one at a time)");
    let stock = Arc::new(AtomicU32::new(10));
    let mut tasks = Vec::new();
    for worker in 1..=5 {
        let stock = stock.clone();
        tasks.push(tokio::spawn(async move {
            let guard = lock_core::acquire("inventory").await?;
            // Read-modify-write that would lose updates without the lock.
            let left = stock.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            stock.store(left - 1, Ordering::SeqCst);
            println!("   worker {worker} took one item, {} left (held {:?})", left - 1, guard.held_for());
            Ok::<_, LockError>(())
        }));
    }
    for t in tasks {
        t.await.expect("task panicked")?;
    }
    assert_eq!(stock.load(Ordering::SeqCst), 5);

    println!("== 2. a bounded wait gives up with a clear error");
    let held = lock_core::acquire("report").await?;
    match lock_core::acquire_timeout("report", Duration::from_millis(50)).await {
        Err(e) => println!("   as expected: {e} [code {}]", e.code()),
        Ok(_) => unreachable!("the lock is held"),
    }
    drop(held);

    println!("== 3. asking again from inside the critical section is refused, not a deadlock");
    lock_core::with_lock("ledger", async {
        if let Err(e) = lock_core::acquire("ledger").await {
            println!("   {e}");
        }
    })
    .await?;

    println!("== 4. sync code takes the same named locks");
    let g = tokio::task::spawn_blocking(|| lock_core::blocking_acquire("inventory", Some(Duration::from_secs(1))))
        .await
        .expect("blocking task")?;
    println!("   a blocking thread holds {:?}", g.name());
    drop(g);
    println!("done: no lock is held any more: {}", !lock_core::is_locked("inventory"));
    Ok(())
}
