//! [`Lock`]: one request with every option. The free verbs ([`crate::acquire`],
//! [`crate::try_acquire`], ...) and [`crate::file`]'s are shorthands for it.

use std::future::Future;
use std::panic::Location;
use std::path::Path;
use std::time::Duration;

use crate::mode::Mode;
use crate::optin::{self, OptIn};
use crate::place::Place;
use crate::site::Site;
use crate::{chain, local, LockError, LockGuard};

/// A lock request with every option: the mode, a timeout, and where the lock lives.
///
/// Build it with [`Lock::new`], adjust it, then take the lock with one of the verbs:
/// [`acquire`](Lock::acquire) (waits, FIFO), [`try_acquire`](Lock::try_acquire) (never
/// waits), [`blocking_acquire`](Lock::blocking_acquire) (sync code), or run a future or
/// a closure under the lock with [`run`](Lock::run) / [`blocking_run`](Lock::blocking_run).
///
/// ```
/// use std::time::Duration;
/// use lock_core::{Lock, Mode};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
/// // Many readers at once (here: two tasks), never beside a writer.
/// let r1 = Lock::new("catalog").shared().acquire().await?;
/// let r2 = tokio::spawn(Lock::new("catalog").shared().timeout(Duration::from_secs(5)).acquire())
///     .await
///     .unwrap()?;
/// assert_eq!(r2.mode(), Mode::Shared);
/// assert!(Lock::new("catalog").try_acquire().is_err(), "no writer beside them");
/// drop((r1, r2));
///
/// // At most two holders of "gpu" at once.
/// let g = Lock::new("gpu").permits(2).try_acquire()?;
///
/// // A body that runs under the lock, with a timeout: like `with_lock`, with options.
/// let total = Lock::new("ledger").timeout(Duration::from_secs(1)).run(async { 40 + 2 }).await?;
/// assert_eq!(total, 42);
/// # drop(g); Ok(()) }
/// ```
///
/// Across processes, add [`file`](Lock::file), [`dir`](Lock::dir) or [`path`](Lock::path):
///
/// ```
/// # fn main() -> Result<(), lock_core::LockError> {
/// let dir = std::env::temp_dir().join("lock-core-doc-request");
/// let g = lock_core::Lock::new("nightly").dir(&dir).blocking_acquire()?;
/// assert!(g.is_file_lock());
/// # drop(g); Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use = "a `Lock` does nothing until one of its verbs (`acquire`, `try_acquire`, ...) is called"]
pub struct Lock<'a> {
    name: &'a str,
    mode: Mode,
    timeout: Option<Duration>,
    place: Place<'a>,
    opt: OptIn,
}

impl<'a> Lock<'a> {
    /// A request for the named lock: exclusive, in-process, waiting without a timeout.
    pub const fn new(name: &'a str) -> Self {
        Lock {
            name,
            mode: Mode::Exclusive,
            timeout: None,
            place: Place::Local,
            opt: OptIn {
                reentrant: false,
                readers_first: false,
            },
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Hold it alone (the default).
    pub fn exclusive(self) -> Self {
        self.mode(Mode::Exclusive)
    }

    /// Hold it beside other shared holders; never beside an exclusive one. A shared
    /// request that arrives after a waiting exclusive one queues behind it.
    pub fn shared(self) -> Self {
        self.mode(Mode::Shared)
    }

    /// Hold one of `n` permits: at most `n` holders at once (a counted lock). `n` must be
    /// at least 1 (`Invalid` otherwise) and the same for every user of the name
    /// (`Mismatch` otherwise).
    pub fn permits(self, n: u32) -> Self {
        self.mode(Mode::Permits(n))
    }

    /// Sets the mode (the last of `exclusive`, `shared`, `permits`, `mode` wins).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Opt-in re-entry: the call chain that already holds the lock may take it again
    /// instead of getting `Busy { reentrant: true }` (as Redisson's `RLock` or
    /// parking_lot's `ReentrantMutex`).
    ///
    /// * On the chain's exclusive hold, the new guard is nested in it: it holds nothing of
    ///   its own, and the lock is released when the outer guard and every nested one have
    ///   gone, in any order.
    /// * On the chain's shared hold, a shared request joins at once (even ahead of queued
    ///   exclusive requests, which it would otherwise deadlock behind).
    /// * Still `Busy` (with a reason): upgrading the chain's shared hold to an exclusive
    ///   one, counted locks (`permits`), and the same lock file reached under another
    ///   name.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
    /// use lock_core::Lock;
    /// let outer = Lock::new("doc-reentrant").acquire().await?;
    /// let inner = Lock::new("doc-reentrant").reentrant().acquire().await?;
    /// drop(inner);
    /// assert!(lock_core::is_locked("doc-reentrant"), "the outer hold remains");
    /// drop(outer);
    /// assert!(!lock_core::is_locked("doc-reentrant"));
    /// // Without the opt-in, asking again is re-entry: Busy.
    /// let outer = Lock::new("doc-reentrant").acquire().await?;
    /// assert_eq!(Lock::new("doc-reentrant").acquire().await.unwrap_err().code(), 8406);
    /// # drop(outer); Ok(()) }
    /// ```
    pub fn reentrant(mut self) -> Self {
        self.opt.reentrant = true;
        self
    }

    /// For a shared request: join the lock's current shared holders at once, even ahead
    /// of exclusive requests already waiting (serial_test's `#[parallel]`). The default
    /// is FIFO across modes, where a shared request queues behind a waiting exclusive one
    /// so that neither side starves; with this opt-in a steady stream of shared holders
    /// can keep an exclusive waiter out for as long as it lasts — fine for a finite test
    /// run, a starvation risk in a service. Only the in-process queue is passed: across
    /// processes, file locks keep their turn rule (at most three turns in a row while
    /// another process waits). No effect on exclusive and counted requests.
    ///
    /// ```
    /// use lock_core::Lock;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let reader = Lock::new("doc-readers-first").shared().try_acquire().unwrap();
    /// // A writer queues behind the reader.
    /// let writer = tokio::spawn(async { Lock::new("doc-readers-first").acquire().await.map(drop) });
    /// while !lock_core::holders().iter().any(|h| h.name == "doc-readers-first" && h.waiters == 1) {
    ///     tokio::task::yield_now().await;
    /// }
    /// // Another chain: a plain shared request would queue behind the writer; this one
    /// // joins the reader at once.
    /// let another = std::thread::spawn(|| {
    ///     Lock::new("doc-readers-first").shared().readers_first().try_acquire().map(drop)
    /// });
    /// assert!(another.join().unwrap().is_ok());
    /// drop(reader);
    /// writer.await.unwrap().unwrap();
    /// # }
    /// ```
    pub fn readers_first(mut self) -> Self {
        self.opt.readers_first = true;
        self
    }

    /// Gives up after `timeout` with [`LockError::Timeout`]; a zero timeout tries once
    /// ([`LockError::Busy`] if held).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets or clears the timeout.
    pub fn timeout_opt(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also hold a cross-process file lock, in the [default lock
    /// directory](crate::file::default_dir).
    pub fn file(mut self) -> Self {
        self.place = Place::Dir(None);
        self
    }

    /// Also hold a cross-process file lock, in the lock directory `dir` (created on
    /// first use).
    pub fn dir<P: AsRef<Path> + ?Sized>(mut self, dir: &'a P) -> Self {
        self.place = Place::Dir(Some(dir.as_ref()));
        self
    }

    /// Also hold the OS lock on exactly the file `path` (created empty if missing; an
    /// existing file is locked as it is and never written). In-process, the request
    /// takes the name's lock and the file's own lock: other names that reach the same
    /// file exclude it too (one file, one lock). For other tools' lock files and
    /// serial_test's `path =>`.
    pub fn path<P: AsRef<Path> + ?Sized>(mut self, path: &'a P) -> Self {
        self.place = Place::Path(path.as_ref());
        self
    }

    /// The request's mode.
    pub fn get_mode(&self) -> Mode {
        self.mode
    }

    /// The request's timeout.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Waits for the lock (FIFO across modes) and returns its guard.
    ///
    /// Cancel-safe: dropping the future leaves the queue at once. A call chain that
    /// already holds the name (in any mode) gets `Busy { reentrant: true }`.
    #[track_caller]
    pub fn acquire(self) -> impl Future<Output = Result<LockGuard, LockError>> + use<'a> {
        let site = Site::Call(Location::caller());
        async move { self.acquire_at(site, true).await }
    }

    /// `hand`: the guard is handed to the caller (it counts for the caller's chain);
    /// else it stays inside a scope (`run`), which records it in its frame.
    pub(crate) async fn acquire_at(self, site: Site, hand: bool) -> Result<LockGuard, LockError> {
        let entry = crate::registry::entry_for(self.name)?;
        optin::acquire(
            entry,
            self.place,
            self.mode,
            self.timeout,
            site,
            hand,
            self.opt,
        )
        .await
    }

    /// Takes the lock if it can be had right now, else fails with [`LockError::Busy`].
    /// Never waits, so it may be called from sync and async code alike.
    #[track_caller]
    pub fn try_acquire(self) -> Result<LockGuard, LockError> {
        let site = Site::Call(Location::caller());
        let entry = crate::registry::entry_for(self.name)?;
        let (me, facts) = local::sync_facts(site, true);
        optin::try_acquire(entry, self.place, self.mode, facts, me, self.opt)
    }

    /// Blocks the calling thread until the lock is had, or the timeout passes. For sync
    /// code; excludes async holders of the same name too.
    ///
    /// Refused with `Busy` at once, instead of blocking for ever, when the caller's own
    /// chain holds the name, or when the holder is async code that runs on this very
    /// thread (a task of the current-thread runtime that calls this).
    #[track_caller]
    pub fn blocking_acquire(self) -> Result<LockGuard, LockError> {
        self.blocking_acquire_at(Site::Call(Location::caller()), true)
    }

    fn blocking_acquire_at(self, site: Site, hand: bool) -> Result<LockGuard, LockError> {
        let entry = crate::registry::entry_for(self.name)?;
        let (me, facts) = local::sync_facts(site, hand);
        optin::blocking_acquire(
            entry,
            self.place,
            self.mode,
            self.timeout,
            facts,
            me,
            self.opt,
        )
    }

    /// Acquires the lock, runs `fut` as a call chain holding it, and releases it
    /// afterwards (what `#[locked]` does). Inside `fut`, asking for the name again is
    /// refused as re-entry.
    #[track_caller]
    pub fn run<F: Future>(
        self,
        fut: F,
    ) -> impl Future<Output = Result<F::Output, LockError>> + use<'a, F> {
        let site = Site::Call(Location::caller());
        async move {
            let guard = self.acquire_at(site, false).await?;
            let out = crate::guard::scope(&guard, fut).await;
            drop(guard);
            Ok(out)
        }
    }

    /// Blocks until the lock is had, runs `f` as a call chain holding it, and releases it
    /// afterwards (what `#[locked]` does for a sync fn).
    ///
    /// ```
    /// let n = lock_core::Lock::new("doc-blocking-run").blocking_run(|| {
    ///     // Nested attempts on the same name are re-entry, not a deadlock.
    ///     assert!(lock_core::try_acquire("doc-blocking-run").is_err());
    ///     7
    /// })?;
    /// assert_eq!(n, 7);
    /// # Ok::<(), lock_core::LockError>(())
    /// ```
    #[track_caller]
    pub fn blocking_run<R>(self, f: impl FnOnce() -> R) -> Result<R, LockError> {
        let guard = self.blocking_acquire_at(Site::Call(Location::caller()), false)?;
        let mut held = chain::HeldSet::default();
        held.push(guard.entry(), guard.token());
        let frame = chain::Frame::new(held);
        let out = {
            let _entered = chain::enter(&frame);
            f()
        };
        drop(guard);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::Lock;

    /// Another task's guard on the same thread is a plain `Busy`, with or without task
    /// ids: never taken for re-entry.
    #[test]
    fn a_sync_try_beside_another_tasks_guard_is_busy_not_reentry() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = rt.block_on(async {
            let (held_tx, held_rx) = tokio::sync::oneshot::channel();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let holder = tokio::spawn(async move {
                let g = Lock::new("owner-tests-busy").acquire().await.unwrap();
                held_tx.send(()).unwrap();
                done_rx.await.unwrap();
                drop(g);
            });
            held_rx.await.unwrap();
            let err = tokio::spawn(async { Lock::new("owner-tests-busy").try_acquire() })
                .await
                .unwrap()
                .unwrap_err();
            done_tx.send(()).unwrap();
            holder.await.unwrap();
            err
        });
        assert!(
            matches!(
                err,
                crate::LockError::Busy {
                    reentrant: false,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
