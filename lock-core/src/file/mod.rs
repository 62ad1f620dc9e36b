//! Cross-process locks on lock files: one name is one lock for every process of the
//! machine that uses the same lock directory.
//!
//! The verbs mirror the in-process ones ([`acquire`], [`acquire_timeout`],
//! [`try_acquire`], [`blocking_acquire`], [`is_locked`]) and use the
//! [default directory](default_dir); [`LockDir`] offers the same verbs for an explicit
//! directory. `#[locked(name = "..", file)]` and `#[locked(name = "..", file = "dir")]`
//! go through the same code.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
//! let guard = lock_core::file::acquire("doc-file-module").await?;
//! // No other process (and no other task or thread of this one) gets
//! // "doc-file-module" until the guard is dropped.
//! assert!(lock_core::file::is_locked("doc-file-module"));
//! assert!(guard.is_file_lock());
//! guard.release()?;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! * **In-process first.** A file lock is the in-process lock of the same name plus an OS
//!   lock on the name's lock file. Waiters of one process queue on the in-process lock
//!   (FIFO, cancel-safe, re-entry refused with `Busy { reentrant: true }`), and only its
//!   holder goes for the OS lock, so a process never parks one thread per waiter. One
//!   name is one in-process lock, whatever directory is used with it.
//! * **The OS lock** is `std::fs::File::try_lock`/`lock`/`unlock` (flock(2) semantics on
//!   Unix: the lock belongs to an open file description, so it excludes threads of one
//!   process too and is dropped by the kernel when its holder dies).
//! * **Fast path.** Lock files stay open between acquisitions (at most 64 per process;
//!   one idle for 10 s is closed at the next acquisition) with their first page mapped
//!   shared, so an uncontended acquire is one non-blocking lock attempt plus a memory
//!   copy of the holder record, and a release is one unlock — no `open`, no `close`, no
//!   thread hand-off.
//! * **Waiting.** On Linux a waiter counts itself in the lock file's shared page and
//!   watches the file with inotify, both *before* its next attempt, so no release is
//!   missed. A releasing holder that sees waiters bumps the file's times after unlocking,
//!   and a dying holder's descriptor is closed by the kernel; both wake the waiter at
//!   once. A bounded backoff re-try (1 ms doubling to 50 ms, or to
//!   `$LOCK_CORE_FILE_POLL_MAX_MS`) is only a safety net there (and may come up to 10 ms
//!   late rather than interrupt the wake-up thread); on other systems, and for changes
//!   made by other machines on network file systems, it is the whole mechanism.
//!   A blocking wait without a timeout sleeps in the kernel's `flock` itself, which hands
//!   the lock over as fast as a pipe wakes its reader. Blocking waits with a timeout use
//!   `poll(2)` on the inotify descriptor. Async waits hand the inotify descriptor and
//!   their re-try timer to one background thread of this crate (epoll, started by the
//!   first contended wait), so they work on any executor — Tokio with or without its I/O
//!   and time drivers, `futures::executor::block_on`, smol — and a dropped wait
//!   deregisters at once.
//! * **Cancellation.** The OS lock is only ever taken by the acquiring call itself — by a
//!   non-blocking attempt, or, for a blocking wait without a timeout, in the calling
//!   thread's own `flock` — which returns the guard at once. A dropped future or a
//!   timed-out wait therefore never leaves the lock held, not even for an instant: no
//!   helper thread is ever parked in a blocking lock call.
//! * **Holder record.** The holder writes its pid, host, acquisition time and the lock's
//!   name into the lock file (in place). [`LockError::Busy`] and [`LockError::Timeout`]
//!   report that holder if its process is alive: a SIGKILLed holder leaves a stale record
//!   but no lock.
//! * **File names** are derived from the name injectively and always stay inside the
//!   directory (`../x`, `/etc/passwd`, `a/b` and `a_b` are all distinct, harmless files):
//!   bytes other than `a-z`, `0-9` and `-` are written as `_` plus two hex digits, and
//!   very long names are shortened with their SHA-256. See [`LockDir::lock_file`].
//! * **Lock files are never deleted** (deleting a lock file that someone may hold or be
//!   about to lock breaks exclusion) nor truncated; leftovers are harmless. Do not
//!   truncate or delete them yourself while processes use them: a process keeps its lock
//!   files open for re-use (closing them after 10 s unused), and one that still has the
//!   deleted file open excludes nobody who opens the new one.
//!
//! Caveats: a child created by `fork` without `exec` shares its parent's open file
//! descriptions and therefore its file locks; lock files on network file systems lock
//! only as well as the file system implements `flock`.
//!
//! # Errors
//!
//! A directory that cannot be created, a lock file that cannot be opened for reading and
//! writing (permissions, read-only file system) and a file system without lock support
//! are [`LockError::Io`] naming the lock and the path.

mod cache;
mod fname;
mod os;
#[cfg(unix)]
mod shared;

use std::borrow::Cow;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::mode::Mode;
use crate::owner::{Facts, Me};
use crate::registry::EntryRef;
use crate::request::Place;
use crate::site::Site;
use crate::{local, Holder, Lock, LockError, LockGuard};
use cache::LockFile;

/// The default lock directory: `$LOCK_CORE_DIR` if set (and not empty), else
/// `lock-core` inside [`std::env::temp_dir`]. Read once, at first use; a relative
/// `$LOCK_CORE_DIR` is taken relative to the working directory of that moment.
///
/// The directory is created when a lock first needs it.
///
/// ```
/// let dir = lock_core::file::default_dir();
/// assert!(dir.is_absolute());
/// ```
pub fn default_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os("LOCK_CORE_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => std::env::temp_dir().join("lock-core"),
        };
        std::path::absolute(&dir).unwrap_or(dir)
    })
}

fn resolve_dir(dir: Option<&Path>) -> Cow<'_, Path> {
    match dir {
        None => Cow::Borrowed(default_dir()),
        Some(d) if d.is_absolute() => Cow::Borrowed(d),
        // A relative directory means "relative to the working directory now"; the
        // descriptor cache must not confuse it with the same spelling elsewhere.
        Some(d) => Cow::Owned(std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf())),
    }
}

/// Waits for the cross-process lock `name` in the [default directory](default_dir),
/// after the in-process lock of the same name (FIFO within this process).
///
/// Cancel-safe: dropping the future at any point leaves neither lock held.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
/// let guard = lock_core::file::acquire("doc-file-acquire").await?;
/// assert_eq!(guard.name(), "doc-file-acquire");
/// drop(guard);
/// # Ok(()) }
/// ```
#[track_caller]
pub fn acquire(name: &str) -> impl Future<Output = Result<LockGuard, LockError>> + '_ {
    Lock::new(name).file().acquire()
}

/// Like [`acquire`], but gives up after `timeout` (in-process and cross-process waiting
/// together) with [`LockError::Timeout`], naming the holder if it is known.
/// A zero timeout tries once ([`LockError::Busy`] if held).
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
/// let guard = lock_core::file::acquire_timeout("doc-file-timeout", Duration::from_secs(5)).await?;
/// drop(guard);
/// # Ok(()) }
/// ```
#[track_caller]
pub fn acquire_timeout(
    name: &str,
    timeout: Duration,
) -> impl Future<Output = Result<LockGuard, LockError>> + '_ {
    Lock::new(name).file().timeout(timeout).acquire()
}

/// Takes the cross-process lock `name` if it is free right now, else fails with
/// [`LockError::Busy`] (with the holder, if known). Never waits.
///
/// ```
/// let guard = lock_core::file::try_acquire("doc-file-try").unwrap();
/// // Held: a second attempt (here, in-process) is refused.
/// assert!(lock_core::file::try_acquire("doc-file-try").is_err());
/// drop(guard);
/// ```
#[track_caller]
pub fn try_acquire(name: &str) -> Result<LockGuard, LockError> {
    Lock::new(name).file().try_acquire()
}

/// Blocks the calling thread until the cross-process lock `name` is free, or until
/// `timeout` (if any) has passed. For sync code; excludes async holders too.
///
/// ```
/// use std::time::Duration;
/// let guard = lock_core::file::blocking_acquire("doc-file-blocking", Some(Duration::from_secs(5))).unwrap();
/// drop(guard);
/// ```
#[track_caller]
pub fn blocking_acquire(name: &str, timeout: Option<Duration>) -> Result<LockGuard, LockError> {
    Lock::new(name)
        .file()
        .timeout_opt(timeout)
        .blocking_acquire()
}

/// True if any process — this one included — holds the file lock `name` in the
/// [default directory](default_dir) right now. An invalid name, a missing lock file or
/// an unreadable one counts as not locked.
///
/// The probe never disturbs a holder: it takes a *shared* OS lock on a descriptor of its
/// own for an instant (probes do not conflict with each other) and lets waiters know when
/// it is done. Only a `try_acquire` racing it in that instant may see `Busy`.
///
/// ```
/// assert!(!lock_core::file::is_locked("doc-file-nobody"));
/// let g = lock_core::file::try_acquire("doc-file-somebody").unwrap();
/// assert!(lock_core::file::is_locked("doc-file-somebody"));
/// drop(g);
/// assert!(!lock_core::file::is_locked("doc-file-somebody"));
/// ```
pub fn is_locked(name: &str) -> bool {
    is_locked_in(default_dir(), name)
}

/// Who holds the file lock `name` in the [default directory](default_dir), as far as
/// its lock file tells: `None` if it is free, or held by a holder that left no record.
///
/// ```
/// let g = lock_core::file::try_acquire("doc-file-holder").unwrap();
/// let h = lock_core::file::holder("doc-file-holder").unwrap();
/// assert_eq!(h.pid, Some(std::process::id()));
/// drop(g);
/// assert!(lock_core::file::holder("doc-file-holder").is_none());
/// ```
pub fn holder(name: &str) -> Option<Holder> {
    holder_in(default_dir(), name)
}

fn is_locked_in(dir: &Path, name: &str) -> bool {
    if crate::validate_name(name).is_err() {
        return false;
    }
    os::probe_held(&dir.join(fname::file_name(name))).unwrap_or(false)
}

fn holder_in(dir: &Path, name: &str) -> Option<Holder> {
    crate::validate_name(name).ok()?;
    let path = dir.join(fname::file_name(name));
    if !os::probe_held(&path).unwrap_or(false) {
        return None;
    }
    let f = std::fs::File::open(&path).ok()?;
    os::read_holder(&f, name)
}

/// A lock directory: the file-lock verbs for locks that live in a directory of your
/// choice (e.g. inside a project's `target/`), instead of the [default](default_dir).
///
/// Processes exclude each other for a name only if they use the same directory. The
/// directory is created when a lock first needs it. A relative path is resolved against
/// the working directory when the `LockDir` is made.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
/// use lock_core::file::LockDir;
/// let locks = LockDir::new(std::env::temp_dir().join("lock-core-doc-dir"));
/// let guard = locks.acquire("build").await?;
/// assert!(locks.is_locked("build"));
/// drop(guard);
/// assert!(!locks.is_locked("build"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LockDir {
    path: PathBuf,
}

impl Default for LockDir {
    /// The [default directory](default_dir).
    fn default() -> Self {
        LockDir {
            path: default_dir().to_path_buf(),
        }
    }
}

impl LockDir {
    /// A lock directory at `path` (created on first use, not now).
    ///
    /// ```
    /// let d = lock_core::file::LockDir::new("target/locks");
    /// assert!(d.path().is_absolute());
    /// assert!(d.path().ends_with("target/locks"));
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let path = std::path::absolute(&path).unwrap_or(path);
        LockDir { path }
    }

    /// The directory's path.
    ///
    /// ```
    /// let d = lock_core::file::LockDir::default();
    /// assert_eq!(d.path(), lock_core::file::default_dir());
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file that the lock `name` uses: always directly inside this directory,
    /// and different for different names.
    ///
    /// ```
    /// let d = lock_core::file::LockDir::new("/tmp/locks");
    /// let f = d.lock_file("../../etc/passwd").unwrap();
    /// assert_eq!(f.parent(), Some(d.path()));
    /// assert_ne!(d.lock_file("a/b").unwrap(), d.lock_file("a_b").unwrap());
    /// assert!(d.lock_file("").is_err());
    /// ```
    pub fn lock_file(&self, name: &str) -> Result<PathBuf, LockError> {
        crate::validate_name(name)?;
        Ok(self.path.join(fname::file_name(name)))
    }

    /// [`acquire`](fn@acquire) in this directory.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
    /// let d = lock_core::file::LockDir::new(std::env::temp_dir().join("lock-core-doc-dir"));
    /// let g = d.acquire("doc-dir-acquire").await?;
    /// # drop(g); Ok(()) }
    /// ```
    #[track_caller]
    pub fn acquire<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Future<Output = Result<LockGuard, LockError>> + 'a {
        Lock::new(name).dir(&self.path).acquire()
    }

    /// [`acquire_timeout`] in this directory.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
    /// let d = lock_core::file::LockDir::new(std::env::temp_dir().join("lock-core-doc-dir"));
    /// let g = d.acquire_timeout("doc-dir-timeout", Duration::from_secs(5)).await?;
    /// # drop(g); Ok(()) }
    /// ```
    #[track_caller]
    pub fn acquire_timeout<'a>(
        &'a self,
        name: &'a str,
        timeout: Duration,
    ) -> impl Future<Output = Result<LockGuard, LockError>> + 'a {
        Lock::new(name).dir(&self.path).timeout(timeout).acquire()
    }

    /// [`try_acquire`] in this directory.
    ///
    /// ```
    /// let d = lock_core::file::LockDir::new(std::env::temp_dir().join("lock-core-doc-dir"));
    /// let g = d.try_acquire("doc-dir-try").unwrap();
    /// let busy = d.try_acquire("doc-dir-try").unwrap_err();
    /// assert_eq!(busy.code(), 8406);
    /// # drop(g);
    /// ```
    #[track_caller]
    pub fn try_acquire(&self, name: &str) -> Result<LockGuard, LockError> {
        Lock::new(name).dir(&self.path).try_acquire()
    }

    /// [`blocking_acquire`] in this directory.
    ///
    /// ```
    /// let d = lock_core::file::LockDir::new(std::env::temp_dir().join("lock-core-doc-dir"));
    /// let g = d.blocking_acquire("doc-dir-blocking", None).unwrap();
    /// # drop(g);
    /// ```
    pub fn blocking_acquire(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<LockGuard, LockError> {
        Lock::new(name)
            .dir(&self.path)
            .timeout_opt(timeout)
            .blocking_acquire()
    }

    /// [`is_locked`] in this directory.
    ///
    /// ```
    /// let d = lock_core::file::LockDir::new(std::env::temp_dir().join("lock-core-doc-dir"));
    /// assert!(!d.is_locked("doc-dir-nobody"));
    /// ```
    pub fn is_locked(&self, name: &str) -> bool {
        is_locked_in(&self.path, name)
    }

    /// [`holder`] in this directory.
    ///
    /// ```
    /// let d = lock_core::file::LockDir::new(std::env::temp_dir().join("lock-core-doc-dir"));
    /// assert!(d.holder("doc-dir-nobody").is_none());
    /// ```
    pub fn holder(&self, name: &str) -> Option<Holder> {
        holder_in(&self.path, name)
    }
}

// ---------------------------------------------------------------------------------------
// The guard's cross-process half.

/// The cross-process half of a file-lock guard: the open lock file whose OS lock it holds.
pub(crate) struct FileHold {
    lock: Option<Arc<LockFile>>,
}

impl FileHold {
    /// Gives the OS lock back, then wakes waiting processes.
    pub(crate) fn release(mut self, name: &str) -> Result<(), LockError> {
        match self.lock.take() {
            Some(lf) => unlock(&lf).map_err(|e| io_error(name, &lf.path, e)),
            None => Ok(()),
        }
    }
}

impl Drop for FileHold {
    fn drop(&mut self) {
        if let Some(lf) = self.lock.take() {
            let _ = unlock(&lf);
        }
    }
}

fn unlock(lf: &LockFile) -> std::io::Result<()> {
    lf.file.unlock()?;
    // After the unlock, never before: a waiter woken by this finds the lock free.
    lf.wake_waiters();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The verbs, shared by the public API and `#[locked(file)]`.

fn io_error(name: &str, path: &Path, source: std::io::Error) -> LockError {
    LockError::Io {
        name: name.to_owned(),
        path: Some(path.to_path_buf()),
        source,
    }
}

fn open_for(guard: &LockGuard, dir: &Path) -> Result<Arc<LockFile>, LockError> {
    let name = guard.name();
    cache::open(dir, name, guard.granted_nanos()).map_err(|(path, e)| io_error(name, &path, e))
}

/// One non-blocking attempt at the OS lock.
fn try_os(lf: &LockFile, name: &str) -> Result<bool, LockError> {
    os::try_lock(&lf.file).map_err(|e| io_error(name, &lf.path, e))
}

fn busy(lf: &LockFile, name: &str) -> LockError {
    LockError::Busy {
        name: name.to_owned(),
        holder: os::read_holder(&lf.file, name),
        reentrant: false,
        reason: None,
    }
}

fn timed_out(lf: &LockFile, name: &str, start: Instant) -> LockError {
    LockError::Timeout {
        name: name.to_owned(),
        waited: start.elapsed(),
        holder: os::read_holder(&lf.file, name),
    }
}

/// Completes a guard that holds the in-process lock and now the OS lock too.
fn attach(guard: &mut LockGuard, lf: Arc<LockFile>) {
    // The record is informational: failing to write it does not undo the lock.
    let _ = lf.write_record(guard.name());
    guard.file = Some(FileHold { lock: Some(lf) });
}

/// How long to wait before the next attempt, or `None` once the deadline has passed.
fn next_step(deadline: Option<Instant>, backoff: Duration) -> Option<Duration> {
    match deadline {
        None => Some(backoff),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(backoff))
        }
    }
}

fn deadline_of(start: Instant, timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| start.checked_add(t))
}

fn dir_of(place: Place<'_>) -> Option<&Path> {
    match place {
        Place::Dir(d) => d,
        Place::Local | Place::Path(_) => None,
    }
}

/// Waits for the in-process lock, then the OS lock. `Some(0)` tries each once.
pub(crate) async fn lock_entry(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    timeout: Option<Duration>,
    site: Site,
    hand: bool,
) -> Result<LockGuard, LockError> {
    let start = Instant::now();
    let mut guard = local::lock(entry, mode, timeout, site, hand).await?;
    let dir = resolve_dir(dir_of(place));
    let lf = open_for(&guard, &dir)?;
    if !try_os(&lf, guard.name())? {
        if timeout == Some(Duration::ZERO) {
            return Err(busy(&lf, guard.name()));
        }
        // On error or cancellation `guard` drops here and gives the in-process lock back;
        // the OS lock was never taken.
        wait_async(&lf, guard.name(), start, deadline_of(start, timeout)).await?;
    }
    attach(&mut guard, lf);
    Ok(guard)
}

/// The attribute's fast path: both locks if both are free right now, else `None` with
/// nothing held (the caller then waits the usual way).
pub(crate) fn try_now(
    entry: EntryRef,
    dir: Option<&Path>,
    mode: Mode,
    facts: &Facts,
) -> Result<Option<LockGuard>, LockError> {
    let mut guard = match local::try_fast(entry, mode, facts, Me::sync) {
        local::Fast::Got(g) => g,
        local::Fast::Taken(_) => return Ok(None),
        local::Fast::Failed(e) => return Err(*e),
    };
    let dir = resolve_dir(dir);
    let lf = open_for(&guard, &dir)?;
    if !try_os(&lf, guard.name())? {
        return Ok(None);
    }
    attach(&mut guard, lf);
    Ok(Some(guard))
}

/// Takes both locks if both are free right now.
pub(crate) fn try_lock_entry(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    facts: Facts,
    me: Me,
) -> Result<LockGuard, LockError> {
    let mut guard = local::try_lock(entry, mode, facts, me)?;
    let dir = resolve_dir(dir_of(place));
    let lf = open_for(&guard, &dir)?;
    if !try_os(&lf, guard.name())? {
        return Err(busy(&lf, guard.name()));
    }
    attach(&mut guard, lf);
    Ok(guard)
}

/// Blocking twin of [`lock_entry`].
pub(crate) fn blocking_lock_entry(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    timeout: Option<Duration>,
    facts: Facts,
    me: Me,
) -> Result<LockGuard, LockError> {
    let start = Instant::now();
    let mut guard = local::blocking_lock(entry, mode, timeout, facts, me)?;
    let dir = resolve_dir(dir_of(place));
    let lf = open_for(&guard, &dir)?;
    if !try_os(&lf, guard.name())? {
        if timeout == Some(Duration::ZERO) {
            return Err(busy(&lf, guard.name()));
        }
        let deadline = deadline_of(start, timeout);
        let wait = || wait_blocking(&lf, guard.name(), start, deadline);
        // On a multi-thread runtime's worker, let the runtime move other tasks away.
        local::block_here(wait)?;
    }
    attach(&mut guard, lf);
    Ok(guard)
}

/// Waits (async) until a non-blocking attempt at the OS lock succeeds. Runs on any
/// executor: the inotify descriptor and the re-try timer are served by the crate's
/// wake-up thread ([`crate::reactor`]), not by a runtime.
async fn wait_async(
    lf: &LockFile,
    name: &str,
    start: Instant,
    deadline: Option<Instant>,
) -> Result<(), LockError> {
    // Counted as a waiter before the watch is armed, so releasers know to wake us.
    let _waiting = lf.waiting();
    #[cfg(target_os = "linux")]
    let mut watch = os::Watch::new(&lf.path).ok();
    let mut backoff = os::BACKOFF_MIN;
    loop {
        // The watch is armed before this attempt: a release after it wakes us.
        if try_os(lf, name)? {
            return Ok(());
        }
        let Some(step) = next_step(deadline, backoff) else {
            return Err(timed_out(lf, name, start));
        };
        let now = Instant::now();
        let until = now.checked_add(step).unwrap_or(now);
        backoff = (backoff * 2).min(os::backoff_max());
        #[cfg(target_os = "linux")]
        if let Some(fd) = watch.as_ref().and_then(|w| w.fd()) {
            // The re-try is only a safety net (inotify wakes us on a release), so it may
            // come a tick late rather than interrupt the wake-up thread; the caller's own
            // deadline is kept exactly.
            let slack = if deadline.is_some_and(|d| d <= until) {
                Duration::ZERO
            } else {
                crate::reactor::TICK
            };
            // Events queued before the registration make it fire at once.
            match crate::reactor::readable_until(fd, until, slack).await {
                Ok(()) => {
                    if let Some(w) = &watch {
                        let _ = w.drain();
                    }
                }
                // Not pollable after all: the backoff alone from now on.
                Err(_) => watch = None,
            }
            continue;
        }
        crate::reactor::sleep_until(until)
            .await
            .map_err(|e| crate::reactor::wait_failed(name, e))?;
    }
}

/// Waits (blocking the thread) until the OS lock is ours: in the kernel when there is no
/// deadline, else by non-blocking attempts woken by the release events.
fn wait_blocking(
    lf: &LockFile,
    name: &str,
    start: Instant,
    deadline: Option<Instant>,
) -> Result<(), LockError> {
    if deadline.is_none() {
        // Not counted as a waiter: the kernel wakes us, releasers need not.
        return os::lock_blocking(&lf.file).map_err(|e| io_error(name, &lf.path, e));
    }
    let _waiting = lf.waiting();
    #[cfg(target_os = "linux")]
    let mut watch = os::Watch::new(&lf.path).ok();
    let mut backoff = os::BACKOFF_MIN;
    loop {
        if try_os(lf, name)? {
            return Ok(());
        }
        let Some(step) = next_step(deadline, backoff) else {
            return Err(timed_out(lf, name, start));
        };
        #[cfg(target_os = "linux")]
        if let Some(w) = &watch {
            if w.wait_blocking(step).is_err() {
                watch = None;
            }
            backoff = (backoff * 2).min(os::backoff_max());
            continue;
        }
        std::thread::sleep(step);
        backoff = (backoff * 2).min(os::backoff_max());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock directory of its own, removed again when the test is done with it.
    struct TempDir(LockDir);

    impl std::ops::Deref for TempDir {
        type Target = LockDir;
        fn deref(&self) -> &LockDir {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.path());
        }
    }

    fn temp_dir(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TempDir(LockDir::new(std::env::temp_dir().join(format!(
            "lock-core-unit-{tag}-{}-{n}",
            std::process::id()
        ))))
    }

    #[test]
    fn try_then_busy_then_free() {
        let d = temp_dir("busy");
        let g = d.try_acquire("unit-try-then-busy-then-free").unwrap();
        assert!(g.is_file_lock());
        assert!(d.is_locked("unit-try-then-busy-then-free"));
        // The record names us.
        assert_eq!(
            d.holder("unit-try-then-busy-then-free").unwrap().pid,
            Some(std::process::id())
        );
        drop(g);
        assert!(!d.is_locked("unit-try-then-busy-then-free"));
        drop(d.try_acquire("unit-try-then-busy-then-free").unwrap());
    }

    #[test]
    fn os_lock_conflict_reports_the_holder_and_times_out() {
        // Hold the OS lock through a second descriptor (as another process would).
        let d = temp_dir("conflict");
        let path = d
            .lock_file("unit-os-lock-conflict-reports-the-holder-and-")
            .unwrap();
        drop(
            d.try_acquire("unit-os-lock-conflict-reports-the-holder-and-")
                .unwrap(),
        ); // creates the file
        let other = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert!(os::try_lock(&other).unwrap());
        os::write_record(&other, "unit-os-lock-conflict-reports-the-holder-and-").unwrap();
        let e = d
            .try_acquire("unit-os-lock-conflict-reports-the-holder-and-")
            .unwrap_err();
        assert!(
            matches!(
                e,
                LockError::Busy {
                    reentrant: false,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.holder().unwrap().pid, Some(std::process::id()));
        // The in-process lock was given back after the refusal.
        assert!(!crate::is_locked(
            "unit-os-lock-conflict-reports-the-holder-and-"
        ));
        let t = Instant::now();
        let e = d
            .blocking_acquire(
                "unit-os-lock-conflict-reports-the-holder-and-",
                Some(Duration::from_millis(60)),
            )
            .unwrap_err();
        assert!(matches!(e, LockError::Timeout { .. }), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(55));
        assert!(
            e.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        other.unlock().unwrap();
        drop(
            d.try_acquire("unit-os-lock-conflict-reports-the-holder-and-")
                .unwrap(),
        );
    }

    #[test]
    fn blocking_waiter_wakes_promptly_on_release() {
        let d = temp_dir("wake");
        drop(
            d.try_acquire("unit-blocking-waiter-wakes-promptly-on-releas")
                .unwrap(),
        );
        let other = std::fs::File::options()
            .read(true)
            .write(true)
            .open(
                d.lock_file("unit-blocking-waiter-wakes-promptly-on-releas")
                    .unwrap(),
            )
            .unwrap();
        assert!(os::try_lock(&other).unwrap());
        let d2 = d.clone();
        let waiter = std::thread::spawn(move || {
            let g = d2
                .blocking_acquire(
                    "unit-blocking-waiter-wakes-promptly-on-releas",
                    Some(Duration::from_secs(10)),
                )
                .unwrap();
            Instant::now().duration_since(g.acquired_at())
        });
        // Let the waiter pass its backoff growth (1+2+...+32 ms) and sit at 50 ms steps.
        std::thread::sleep(Duration::from_millis(200));
        let released = Instant::now();
        other.unlock().unwrap();
        os::touch(&other);
        waiter.join().unwrap();
        // Woken by the event, not by the 50 ms safety net.
        let took = released.elapsed();
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    /// Whether `/proc/locks` lists a blocked flock waiter on `ino`.
    #[cfg(target_os = "linux")]
    fn kernel_waiter_on(ino: u64) -> bool {
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        let tag = format!(":{ino} ");
        locks
            .lines()
            .any(|l| l.contains(" -> FLOCK ") && l.contains(&tag))
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn blocking_waiter_without_deadline_waits_in_the_kernel() {
        use std::os::unix::fs::MetadataExt;
        let name = "unit-blocking-waiter-without-deadline";
        let d = temp_dir("kernel");
        drop(d.try_acquire(name).unwrap());
        let path = d.lock_file(name).unwrap();
        let other = LockFile::new(
            std::fs::File::options()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap(),
            path.clone(),
        );
        let ino = other.file.metadata().unwrap().ino();
        assert!(os::try_lock(&other.file).unwrap());
        let d2 = d.clone();
        let waiter = std::thread::spawn(move || d2.blocking_acquire(name, None).map(drop));
        let give_up = Instant::now() + Duration::from_secs(20);
        while !kernel_waiter_on(ino) {
            assert!(Instant::now() < give_up, "no blocked flock waiter appeared");
            std::thread::sleep(Duration::from_millis(2));
        }
        // Not counted in the shared page, so the release below makes no wake-up call.
        assert!(!other.has_waiters());
        // A bare unlock, no touch: the kernel hands the lock over.
        other.file.unlock().unwrap();
        waiter.join().unwrap().unwrap();
        assert!(!kernel_waiter_on(ino));
    }

    #[tokio::test]
    async fn async_waiter_wakes_and_cancellation_leaves_nothing_held() {
        let d = temp_dir("async");
        drop(
            d.try_acquire("unit-async-waiter-wakes-and-cancellation-leav")
                .unwrap(),
        );
        let other = std::fs::File::options()
            .read(true)
            .write(true)
            .open(
                d.lock_file("unit-async-waiter-wakes-and-cancellation-leav")
                    .unwrap(),
            )
            .unwrap();
        assert!(os::try_lock(&other).unwrap());
        // A timed-out wait, and a dropped one.
        let e = d
            .acquire_timeout(
                "unit-async-waiter-wakes-and-cancellation-leav",
                Duration::from_millis(30),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), 8403);
        assert!(tokio::time::timeout(
            Duration::from_millis(30),
            d.acquire("unit-async-waiter-wakes-and-cancellation-leav")
        )
        .await
        .is_err());
        other.unlock().unwrap();
        // Nothing of ours holds it: a separate descriptor takes it at once.
        assert!(os::try_lock(&other).unwrap());
        other.unlock().unwrap();
        assert!(!crate::is_locked(
            "unit-async-waiter-wakes-and-cancellation-leav"
        ));
        // And an async waiter wakes on release.
        assert!(os::try_lock(&other).unwrap());
        let d2 = d.clone();
        let w = tokio::spawn(async move {
            d2.acquire_timeout(
                "unit-async-waiter-wakes-and-cancellation-leav",
                Duration::from_secs(10),
            )
            .await
            .map(drop)
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        other.unlock().unwrap();
        os::touch(&other);
        w.await.unwrap().unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn releases_wake_exactly_when_someone_waits() {
        let d = temp_dir("wake-count");
        let path = d.lock_file("unit-wake-count").unwrap();
        drop(d.try_acquire("unit-wake-count").unwrap()); // creates the file
        let open = || {
            std::fs::File::options()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap()
        };
        // Two descriptors, as two processes would have.
        let holder = LockFile::new(open(), path.clone());
        let waiter = LockFile::new(open(), path.clone());
        let watch = os::Watch::new(&path).unwrap();
        let quiet = |w: &os::Watch| {
            let t = Instant::now();
            w.wait_blocking(Duration::from_millis(40)).unwrap();
            t.elapsed() >= Duration::from_millis(35)
        };
        // Nobody waits: a release makes no event (no system call beyond the unlock).
        assert!(os::try_lock(&holder.file).unwrap());
        holder.write_record("unit-wake-count").unwrap();
        unlock(&holder).unwrap();
        assert!(quiet(&watch));
        // Someone waits: the release wakes it.
        assert!(os::try_lock(&holder.file).unwrap());
        let waiting = waiter.waiting();
        assert!(!os::try_lock(&waiter.file).unwrap());
        unlock(&holder).unwrap();
        let t = Instant::now();
        watch.wait_blocking(Duration::from_secs(5)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(os::try_lock(&waiter.file).unwrap());
        drop(waiting);
        waiter.file.unlock().unwrap();
        // The record went through the shared page and reads back.
        assert_eq!(
            os::read_holder(&waiter.file, "unit-wake-count")
                .unwrap()
                .pid,
            Some(std::process::id())
        );
    }

    #[test]
    fn zero_timeout_tries_once() {
        let d = temp_dir("zero");
        let g = d.try_acquire("unit-zero-timeout-tries-once").unwrap();
        let e = std::thread::spawn({
            let d = d.clone();
            move || {
                d.blocking_acquire("unit-zero-timeout-tries-once", Some(Duration::ZERO))
                    .unwrap_err()
            }
        })
        .join()
        .unwrap();
        assert_eq!(e.code(), 8406);
        drop(g);
    }

    #[test]
    fn unusable_directories_are_io_errors() {
        let base = temp_dir("io");
        std::fs::create_dir_all(base.path()).unwrap();
        let file = base.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let d = LockDir::new(file.join("sub"));
        let e = d
            .try_acquire("unit-unusable-directories-are-io-errors")
            .unwrap_err();
        match &e {
            LockError::Io { name, path, .. } => {
                assert_eq!(name, "unit-unusable-directories-are-io-errors");
                assert!(path.as_ref().unwrap().starts_with(&file), "{e}");
            }
            other => panic!("{other}"),
        }
        assert_eq!(e.code(), 8407);
        assert!(!d.is_locked("unit-unusable-directories-are-io-errors"));
        // And the in-process lock is free again.
        assert!(!crate::is_locked("unit-unusable-directories-are-io-errors"));
    }

    #[test]
    fn relative_dirs_are_resolved() {
        assert!(resolve_dir(Some(Path::new("rel"))).is_absolute());
        assert!(resolve_dir(None).is_absolute());
    }
}
