//! Shared helpers for the integration tests.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts how many call chains are inside a critical section at once, and remembers
/// the most ever seen. Exclusion holds iff `max()` never exceeds 1.
#[derive(Default)]
pub struct Overlap {
    inside: AtomicUsize,
    max: AtomicUsize,
    entries: AtomicUsize,
}

impl Overlap {
    /// A fresh counter.
    pub const fn new() -> Self {
        Overlap {
            inside: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
        }
    }

    /// Marks entry into the critical section; the returned value marks the exit on drop.
    pub fn enter(&self) -> Inside<'_> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        self.entries.fetch_add(1, Ordering::SeqCst);
        Inside(self)
    }

    /// The most call chains ever seen inside at once.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    /// How many times the section was entered.
    pub fn entries(&self) -> usize {
        self.entries.load(Ordering::SeqCst)
    }
}

/// See [`Overlap::enter`].
pub struct Inside<'a>(&'a Overlap);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A fresh directory under the temporary directory, named after `tag` and unique to
/// this call (see [`unique`]); created empty.
pub fn fresh_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("lock-core-{tag}")));
    std::fs::create_dir_all(&dir).expect("create a fresh directory");
    dir
}

/// A unique name for this test run, so reruns and parallel tests never collide.
pub fn unique(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Resident set size of this process in bytes (Linux), if it can be read.
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A tiny deterministic pseudo-random generator (xorshift64*), so stress tests can be
/// replayed from their seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The executors the runtime-agnostic waits are tested on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exec {
    /// `futures::executor::block_on`: no Tokio at all.
    BlockOn,
    /// A current-thread Tokio runtime built without `enable_time` / `enable_io`.
    BareCurrentThread,
    /// A multi-thread Tokio runtime without drivers; the future runs as a spawned task.
    BareMultiThread,
    /// A current-thread Tokio runtime with all drivers (what `#[tokio::test]` builds).
    Tokio,
    /// A multi-thread Tokio runtime with all drivers; the future runs as a spawned task.
    TokioMultiThread,
}

impl Exec {
    /// Every executor.
    pub const ALL: [Exec; 5] = [
        Exec::BlockOn,
        Exec::BareCurrentThread,
        Exec::BareMultiThread,
        Exec::Tokio,
        Exec::TokioMultiThread,
    ];

    /// Runs the future made by `make` to completion on this executor, on a thread of its
    /// own, and returns its output. Bounded: panics if it takes longer than a minute (a
    /// wait that never ends fails the test instead of hanging it) or if the future panics.
    pub fn run<T, F>(self, make: impl FnOnce() -> F + Send + 'static) -> T
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let fut = make();
            let out = match self {
                Exec::BlockOn => futures::executor::block_on(fut),
                Exec::BareCurrentThread => tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(fut),
                Exec::BareMultiThread | Exec::TokioMultiThread => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(2);
                    if self == Exec::TokioMultiThread {
                        b.enable_all();
                    }
                    let rt = b.build().unwrap();
                    rt.block_on(rt.spawn(fut)).unwrap()
                }
                Exec::Tokio => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(fut),
            };
            let _ = tx.send(out);
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{self:?}: the future did not complete: {e}"))
    }
}

/// A lock held by another thread (another call chain) until this value is dropped: for
/// tests that need "someone else holds it". A guard taken in the test's own task would
/// count for that task, and waiting for it from there is refused as re-entry.
pub struct HeldElsewhere {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HeldElsewhere {
    /// Takes the lock with `take` on a fresh thread and returns once it is held.
    /// Panics (bounded) if it cannot be taken within 20 s.
    pub fn new<F>(take: F) -> HeldElsewhere
    where
        F: FnOnce() -> Result<lock_core::LockGuard, lock_core::LockError> + Send + 'static,
    {
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || match take() {
            Ok(guard) => {
                let _ = held_tx.send(Ok(()));
                let _ = release_rx.recv();
                drop(guard);
            }
            Err(e) => {
                let _ = held_tx.send(Err(e));
            }
        });
        // The guard itself stays on the holding thread; only the outcome comes back.
        held_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the holder thread took too long")
            .expect("the holder thread could not take the lock");
        HeldElsewhere {
            release: Some(release_tx),
            thread: Some(thread),
        }
    }

    /// Holds `name` (in-process, exclusive) on another thread.
    pub fn lock(name: &str) -> HeldElsewhere {
        let name = name.to_owned();
        HeldElsewhere::new(move || lock_core::blocking_acquire(&name, None))
    }

    /// Releases now (same as dropping).
    pub fn release(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HeldElsewhere {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A barrier for threads whose wait is bounded (std's `Barrier` cannot time out): `n`
/// parties each call [`TimedBarrier::wait`]; it returns `true` once all `n` are inside,
/// or `false` if they were not within the timeout — so a test of overlap fails instead
/// of hanging when exclusion wrongly keeps the parties apart.
pub struct TimedBarrier {
    n: usize,
    /// (arrived in this generation, generation)
    state: std::sync::Mutex<(usize, u64)>,
    cv: std::sync::Condvar,
}

impl TimedBarrier {
    /// A barrier for `n` parties.
    pub fn new(n: usize) -> Self {
        TimedBarrier {
            n,
            state: std::sync::Mutex::new((0, 0)),
            cv: std::sync::Condvar::new(),
        }
    }

    /// Waits (at most `timeout`) until all `n` parties have arrived.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let mut st = self.state.lock().unwrap();
        let generation = st.1;
        st.0 += 1;
        if st.0 == self.n {
            st.0 = 0;
            st.1 += 1;
            self.cv.notify_all();
            return true;
        }
        let (st, _) = self
            .cv
            .wait_timeout_while(st, timeout, |s| s.1 == generation)
            .unwrap();
        st.1 != generation
    }
}

/// Polls `cond` every millisecond until it holds or `timeout` passes; returns whether it
/// held. For waiting on an observable state (a waiter count, a file), never for timing.
pub fn eventually(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Runs `f` on a thread of its own and returns its result, or panics if it takes longer
/// than `limit` (a call that would hang fails the test instead).
pub fn bounded<T: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(e) => panic!("did not finish within {limit:?}: {e}"),
    }
}

/// The waiters this process has for `name` (0 if nobody holds it), from
/// [`lock_core::holders`].
pub fn waiters_of(name: &str) -> usize {
    lock_core::holders()
        .iter()
        .find(|h| h.name == name)
        .map_or(0, |h| h.waiters)
}
