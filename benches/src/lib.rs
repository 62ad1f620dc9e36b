//! Helpers shared by the benchmarks.

/// Resident set size of this process in bytes (Linux), if it can be read.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A multi-thread Tokio runtime with `workers` worker threads.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The cross-process hand-off harness: two processes pass three locks around so that
/// every step is exactly one cross-process wake-up and nobody can barge. A holds {0,1},
/// B holds {2}; A releases 0 (B, waiting for it, wakes), B releases 2 (A wakes), A
/// releases 1, ... Each of A's steps (release one, take the next) is one round trip.
pub mod handoff {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// How one side takes and gives back its locks.
    pub trait Locks {
        /// Takes lock `i` (waiting for it).
        fn take(&mut self, i: usize);
        /// Gives lock `i` back.
        fn give(&mut self, i: usize);
    }

    /// Side B, in the child process: takes 2, says `ready`, then `rounds` steps.
    pub fn child(locks: &mut dyn Locks, rounds: u64) {
        locks.take(2);
        println!("ready");
        std::io::stdout().flush().expect("stdout");
        let mut a = 0;
        for _ in 0..rounds {
            locks.take(a);
            locks.give((a + 2) % 3);
            a = (a + 1) % 3;
        }
        // Leave everything free for the parent's last step.
        for i in 0..3 {
            locks.give(i);
        }
    }

    /// Side A, in the bench process: runs this binary again with `env` set (its `main`
    /// must call [`child`]) and returns the time for `rounds` round trips.
    pub fn parent(locks: &mut dyn Locks, env: (&str, String), rounds: u64) -> Duration {
        locks.take(0);
        locks.take(1);
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .env(env.0, env.1)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready");
        let start = Instant::now();
        let mut r = 0;
        for _ in 0..rounds {
            locks.give(r);
            locks.take((r + 2) % 3);
            r = (r + 1) % 3;
        }
        let elapsed = start.elapsed();
        for i in 0..3 {
            locks.give(i);
        }
        assert!(child.wait().expect("child").success());
        elapsed
    }
}
