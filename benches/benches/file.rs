//! File locks against their floors, each case's peers in one group:
//! 4. uncontended acquire+release: raw flock on an open descriptor (floor), open+lock+
//!    unlock+close per op, `spawn_blocking` per op, `lock_core::file`, `#[locked(file)]`;
//! 5. cross-process hand-off: two processes passing locks back and forth vs a pipe
//!    ping-pong between the same two processes (the wake-up floor): raw flock, the
//!    blocking `lock_core::file` verb (without and with a timeout), and the async one on a
//!    current-thread runtime.
//!
//! Run: `cargo bench -p lock-core-benches --bench file`
//!
//! The hand-off uses three locks in rotation (`lock_core_benches::handoff`), so that
//! every step is exactly one cross-process wake-up and nobody can barge. A round trip is
//! two wake-ups, like one pipe ping-pong: each of A's steps (release one, take the next)
//! is one round trip, so both sides run `rounds` steps per timed batch.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Criterion;
use lock_core_benches::handoff::{self, Locks};
use lock_core_benches::runtime;

const CHILD_ENV: &str = "LOCK_CORE_BENCH_CHILD";

fn bench_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lock-core-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn open(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open lock file")
}

#[lock_core::locked(name = "bench-file-attr", file)]
async fn attr_file() {}

fn uncontended(c: &mut Criterion) {
    let dir = bench_dir("uncontended");
    let rt = runtime(1);
    let mut g = c.benchmark_group("file_uncontended");

    let path = dir.join("raw.lock");
    let f = open(&path);
    g.bench_function("raw flock on open fd (floor)", |b| {
        b.iter(|| {
            f.lock().expect("lock");
            f.unlock().expect("unlock");
        })
    });
    g.bench_function("open+lock+unlock+close", |b| {
        b.iter(|| {
            let f = open(&path);
            f.lock().expect("lock");
            f.unlock().expect("unlock");
        })
    });
    g.bench_function("spawn_blocking(open+lock) per op", |b| {
        b.to_async(&rt).iter(|| {
            let path = path.clone();
            async move {
                let f = tokio::task::spawn_blocking(move || {
                    let f = open(&path);
                    f.lock().map(|_| f)
                })
                .await
                .expect("join")
                .expect("lock");
                f.unlock().expect("unlock");
            }
        })
    });
    let lc_dir = lock_core::file::LockDir::new(dir.join("lock-core"));
    g.bench_function("lock_core::file::LockDir::acquire", |b| {
        b.to_async(&rt)
            .iter(|| async { drop(lc_dir.acquire("bench-file").await.expect("lock")) })
    });
    g.bench_function("lock_core::file::try_acquire", |b| {
        b.iter(|| drop(lc_dir.try_acquire("bench-file-try").expect("lock")))
    });
    g.bench_function("#[locked(file)] async fn", |b| {
        b.to_async(&rt).iter(attr_file)
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Raw flock on three open descriptors.
struct RawLocks(Vec<File>);

impl Locks for RawLocks {
    fn take(&mut self, i: usize) {
        self.0[i].lock().expect("lock");
    }
    fn give(&mut self, i: usize) {
        self.0[i].unlock().expect("unlock");
    }
}

/// `lock_core::file` on three names: the blocking verb, or (with a runtime) the async one.
struct CoreLocks {
    dir: lock_core::file::LockDir,
    held: [Option<lock_core::LockGuard>; 3],
    rt: Option<tokio::runtime::Runtime>,
    /// For the blocking verb: a timeout sends the wait down the cancellable inotify path
    /// (one thread hop, like the async verb minus the hop from the wake-up thread).
    timeout: Option<Duration>,
}

impl Locks for CoreLocks {
    fn take(&mut self, i: usize) {
        let name = format!("handoff-{i}");
        let g = match &self.rt {
            None => self.dir.blocking_acquire(&name, self.timeout),
            Some(rt) => rt.block_on(self.dir.acquire(&name)),
        }
        .expect("lock");
        self.held[i] = Some(g);
    }
    fn give(&mut self, i: usize) {
        drop(self.held[i].take());
    }
}

fn locks_for(mode: &str, dir: &Path) -> Box<dyn Locks> {
    match mode {
        "raw" => Box::new(RawLocks(
            (0..3)
                .map(|i| open(&dir.join(format!("raw-{i}"))))
                .collect(),
        )),
        "core" => Box::new(CoreLocks {
            dir: lock_core::file::LockDir::new(dir),
            held: [None, None, None],
            rt: None,
            timeout: None,
        }),
        "core-timeout" => Box::new(CoreLocks {
            dir: lock_core::file::LockDir::new(dir),
            held: [None, None, None],
            rt: None,
            timeout: Some(Duration::from_secs(60)),
        }),
        "core-async" => Box::new(CoreLocks {
            dir: lock_core::file::LockDir::new(dir),
            held: [None, None, None],
            rt: Some(
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime"),
            ),
            timeout: None,
        }),
        _ => panic!("unknown hand-off mode {mode}"),
    }
}

/// Side B of the hand-off, in the child process.
fn handoff_child(mode: &str, dir: &Path, rounds: u64) {
    handoff::child(&mut *locks_for(mode, dir), rounds);
}

/// Side A, in the bench process; returns the time for `rounds` round trips.
fn handoff_parent(mode: &str, rounds: u64) -> Duration {
    let dir = bench_dir(&format!("handoff-{mode}"));
    let env = (
        CHILD_ENV,
        format!("handoff:{mode}:{}:{rounds}", dir.display()),
    );
    handoff::parent(&mut *locks_for(mode, &dir), env, rounds)
}

fn pingpong_child() {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut b = [0u8; 1];
    while stdin.read_exact(&mut b).is_ok() {
        stdout.write_all(&b).expect("write");
        stdout.flush().expect("flush");
    }
}

fn pingpong_parent(rounds: u64) -> Duration {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD_ENV, "pingpong")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut to = child.stdin.take().expect("stdin");
    let mut from = child.stdout.take().expect("stdout");
    let mut b = [7u8; 1];
    // One warm-up round trip so process start-up is not timed.
    to.write_all(&b).expect("write");
    from.read_exact(&mut b).expect("read");
    let start = Instant::now();
    for _ in 0..rounds {
        to.write_all(&b).expect("write");
        from.read_exact(&mut b).expect("read");
    }
    let elapsed = start.elapsed();
    drop(to);
    assert!(child.wait().expect("child").success());
    elapsed
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_process_round_trip");
    g.sample_size(20);
    g.bench_function("pipe ping-pong (floor)", |b| b.iter_custom(pingpong_parent));
    g.bench_function("raw flock hand-off", |b| {
        b.iter_custom(|n| handoff_parent("raw", n))
    });
    g.bench_function("lock_core::file hand-off", |b| {
        b.iter_custom(|n| handoff_parent("core", n))
    });
    g.bench_function("lock_core::file hand-off, blocking with timeout", |b| {
        b.iter_custom(|n| handoff_parent("core-timeout", n))
    });
    g.bench_function("lock_core::file async hand-off", |b| {
        b.iter_custom(|n| handoff_parent("core-async", n))
    });
    g.finish();
    // Only now: lock-core keeps its lock files open for re-use, so a directory removed
    // between batches would leave the parent locking the old, unlinked files.
    for mode in ["raw", "core", "core-timeout", "core-async"] {
        let _ = std::fs::remove_dir_all(bench_dir(&format!("handoff-{mode}")));
    }
}

fn main() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        let parts: Vec<&str> = role.splitn(4, ':').collect();
        match parts.as_slice() {
            ["pingpong"] => pingpong_child(),
            ["handoff", mode, dir, rounds] => {
                handoff_child(mode, Path::new(dir), rounds.parse().expect("rounds"))
            }
            _ => panic!("unknown child role {role}"),
        }
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    uncontended(&mut c);
    handoff(&mut c);
    c.final_summary();
}
