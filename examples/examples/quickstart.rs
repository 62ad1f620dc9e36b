//! Quickstart: several tasks contend for named locks, by hand and through
//! `#[locked]`, in-process and across processes (file locks). No server needed.
//!
//! Run: `cargo run -p lock-core-examples --example quickstart`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lock_core::{locked, LockError};

/// At most one caller at a time in this process: the others wait their turn (FIFO).
#[locked(name = "inventory", timeout_ms = 5_000)]
async fn take_item(stock: &AtomicU32, worker: u32) -> Result<u32, LockError> {
    // Read-modify-write that would lose updates without the lock.
    let left = stock.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10)).await;
    stock.store(left - 1, Ordering::SeqCst);
    println!(
        "   worker {worker} took one item through #[locked], {} left",
        left - 1
    );
    Ok(left - 1)
}

/// One lock per account: different accounts run in parallel, one account is serialised.
#[locked(name = "account-{id}")]
async fn credit(
    id: u32,
    balances: &std::sync::Mutex<Vec<i64>>,
    cents: i64,
) -> Result<(), LockError> {
    let old = balances.lock().expect("balances")[id as usize];
    tokio::task::yield_now().await;
    balances.lock().expect("balances")[id as usize] = old + cents;
    Ok(())
}

/// Excludes every process on this machine that uses the same name and lock directory.
#[locked(name = "quickstart-report", file, guard = g)]
fn write_report() -> Result<String, LockError> {
    Ok(format!(
        "held {:?} (file lock: {})",
        g.name(),
        g.is_file_lock()
    ))
}

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
            println!(
                "   worker {worker} took one item, {} left (held {:?})",
                left - 1,
                guard.held_for()
            );
            Ok::<_, LockError>(())
        }));
    }
    for t in tasks {
        t.await.expect("task panicked")?;
    }
    assert_eq!(stock.load(Ordering::SeqCst), 5);

    println!("== 2. the same through #[locked]");
    let stock = Arc::new(AtomicU32::new(5));
    let tasks: Vec<_> = (1..=5)
        .map(|worker| {
            let stock = stock.clone();
            tokio::spawn(async move { take_item(&stock, worker).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task panicked")?;
    }
    assert_eq!(stock.load(Ordering::SeqCst), 0);
    let balances = Arc::new(std::sync::Mutex::new(vec![0i64; 3]));
    let credits: Vec<_> = (0..30)
        .map(|i| {
            let balances = balances.clone();
            tokio::spawn(async move { credit(i % 3, &balances, 100).await })
        })
        .collect();
    for c in credits {
        c.await.expect("task panicked")?;
    }
    println!(
        "   per-account locks: balances {:?} (no lost credit)",
        balances.lock().expect("balances")
    );

    println!(
        "== 3. a cross-process file lock in {}",
        lock_core::file::default_dir().display()
    );
    let report = tokio::task::spawn_blocking(write_report)
        .await
        .expect("join")?;
    println!("   {report}");

    println!("== 4. a bounded wait gives up with a clear error");
    // Another task holds "report" for a while; this one waits at most 50 ms.
    let (started, holding) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn(async move {
        let guard = lock_core::acquire("report").await?;
        let _ = started.send(());
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(guard);
        Ok::<_, LockError>(())
    });
    holding.await.expect("the holder started");
    match lock_core::acquire_timeout("report", Duration::from_millis(50)).await {
        Err(e @ LockError::Timeout { .. }) => println!("   as expected: {e} [code {}]", e.code()),
        Err(e) => return Err(e),
        Ok(_) => unreachable!("another task holds the lock"),
    }
    holder.await.expect("holder task")?;

    println!("== 5. asking again from inside the critical section is refused, not a deadlock");
    lock_core::with_lock("ledger", async {
        if let Err(e) = lock_core::acquire("ledger").await {
            println!("   {e}");
        }
    })
    .await?;

    println!("== 6. sync code takes the same named locks");
    let g = tokio::task::spawn_blocking(|| {
        lock_core::blocking_acquire("inventory", Some(Duration::from_secs(1)))
    })
    .await
    .expect("blocking task")?;
    println!("   a blocking thread holds {:?}", g.name());
    drop(g);
    println!(
        "done: no lock is held any more: {}",
        !lock_core::is_locked("inventory")
    );
    Ok(())
}
