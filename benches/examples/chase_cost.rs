//! What a long wait on another process's file lock costs in CPU time, with and without
//! the cross-process cycle check (issue 24). The waiter holds another file lock (`hold`:
//! it could be on a cycle, so after 30 ms it publishes its links and chases every 50 ms)
//! or nothing (`none`: nobody can wait for it, nothing is chased). The lock it waits for
//! is held for two seconds by flock(1) in another process.
//!
//! ```sh
//! cargo build --release -p lock-core-benches --example chase_cost
//! target/release/examples/chase_cost hold; target/release/examples/chase_cost none
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use lock_core::file::LockDir;

fn cpu() -> Duration {
    // SAFETY: `usage` is a plain C struct that getrusage fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to one rusage; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "hold".to_owned());
    let dir = std::env::temp_dir().join(format!("lock-core-chase-cost-{}", std::process::id()));
    let locks = LockDir::new(&dir);
    let _a = (mode == "hold").then(|| locks.blocking_acquire("cc-a", None).unwrap());
    drop(locks.try_acquire("cc-b").unwrap()); // creates the directory and the file
    let b = locks.lock_file("cc-b").unwrap();
    let mut holder = Command::new("flock")
        .arg(&b)
        .args(["sleep", "2"])
        .spawn()
        .expect("flock(1)");
    let start = Instant::now();
    while let Ok(g) = locks.try_acquire("cc-b") {
        drop(g);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "flock(1) never took it"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let (t, c) = (Instant::now(), cpu());
    let g = locks.blocking_acquire("cc-b", None).unwrap();
    let (waited, used) = (t.elapsed(), cpu() - c);
    drop(g);
    holder.wait().unwrap();
    println!(
        "{mode}: waited {waited:.2?}, CPU {used:.2?} ({:.1} µs per 50 ms period)",
        used.as_secs_f64() * 1e6 / (waited.as_secs_f64() / 0.05)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
