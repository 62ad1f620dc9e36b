//! Per-entity locks: `name = "account-{id}"` gives each account its own lock, so work
//! on different accounts runs in parallel while work on one account is serialised.
//! A transfer takes both accounts' locks, always in sorted order, so two opposite
//! transfers cannot deadlock.
//!
//! Run: `cargo run -p lock-core-examples --example per_entity`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lock_core::{locked, LockError};

/// A toy ledger. The `Mutex` only protects the map itself for a moment; the named locks
/// make each read-modify-write on an account atomic across awaits.
#[derive(Clone, Default)]
struct Ledger {
    balances: Arc<Mutex<HashMap<u32, i64>>>,
}

impl Ledger {
    fn get(&self, id: u32) -> i64 {
        self.balances.lock().unwrap().get(&id).copied().unwrap_or(0)
    }

    fn set(&self, id: u32, v: i64) {
        self.balances.lock().unwrap().insert(id, v);
    }

    /// Adds `amount` to one account, with a slow "remote call" in the middle.
    #[locked(name = "account-{id}", timeout_ms = 5_000)]
    async fn deposit(&self, id: u32, amount: i64) -> Result<i64, LockError> {
        let before = self.get(id);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.set(id, before + amount);
        Ok(before + amount)
    }

    /// Moves money between two accounts, holding both locks. The guard set shows the
    /// order they were taken in.
    #[locked(name = ["account-{from}", "account-{to}"], timeout_ms = 5_000, guard = locks)]
    async fn transfer(&self, from: u32, to: u32, amount: i64) -> anyhow::Result<()> {
        let names: Vec<&str> = locks.names().collect();
        let (a, b) = (self.get(from), self.get(to));
        anyhow::ensure!(a >= amount, "account {from} has {a}, cannot send {amount}");
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.set(from, a - amount);
        self.set(to, b + amount);
        println!("   moved {amount} from {from} to {to} holding {names:?}");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ledger = Ledger::default();

    println!("== 10 deposits on one account are serialised: no update is lost");
    let start = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let l = ledger.clone();
            tokio::spawn(async move { l.deposit(1, 10).await })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    println!(
        "   account 1 = {} after {:?}",
        ledger.get(1),
        start.elapsed()
    );
    assert_eq!(ledger.get(1), 100);

    println!("== 10 deposits on 10 accounts run side by side");
    let start = Instant::now();
    let tasks: Vec<_> = (10..20)
        .map(|id| {
            let l = ledger.clone();
            tokio::spawn(async move { l.deposit(id, 10).await })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    println!("   took {:?} (about one deposit's time)", start.elapsed());

    println!("== opposite transfers at the same time do not deadlock");
    let (x, y) = tokio::join!(ledger.transfer(1, 10, 30), ledger.transfer(10, 1, 5));
    x?;
    y?;
    println!(
        "   account 1 = {}, account 10 = {}",
        ledger.get(1),
        ledger.get(10)
    );
    assert_eq!(ledger.get(1) + ledger.get(10), 110);

    println!("== a failing transfer reports the application's error, not a lock error");
    if let Err(e) = ledger.transfer(42, 1, 1_000).await {
        println!("   {e}");
    }
    Ok(())
}
