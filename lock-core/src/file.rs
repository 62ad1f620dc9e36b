//! Cross-process locks on lock files: one name is one lock for every process of the
//! machine that uses the same lock directory (or the same file, with `path`).
//!
//! The verbs mirror the in-process ones ([`acquire`], [`acquire_timeout`],
//! [`try_acquire`], [`blocking_acquire`], [`is_locked`]) and use the
//! [default directory](default_dir); [`LockDir`] offers the same verbs for an explicit
//! directory, and [`Lock`] every option (`.file()`, `.dir(d)`, `.path(p)`,
//! `.shared()`, `.permits(n)`, `.timeout(t)`). `#[locked(name = "..", file)]`,
//! `file = "dir"` and `path = "x.lock"` go through the same code.
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
//! # Shapes
//!
//! * **Exclusive** (the default) is `flock(LOCK_EX)` on the name's lock file.
//! * **Shared** is `flock(LOCK_SH)`, so `flock -s` and other tools agree with lock-core
//!   both ways: a shell script holding `flock -s` and a `shared` Rust holder overlap, and
//!   both exclude `flock -x` and exclusive holders.
//! * **Counted** (`permits = N`): permit `i` is an open-file-description lock on byte
//!   `i` of a range far beyond the file's content (Linux); the kernel drops it when its
//!   holder dies, like a flock.
//!
//! One name is one kind of lock across processes too: the kind of every hold and wait is
//! recorded in the lock file, and a request of another kind (a counted lock with another
//! count, or a reader/writer one) gets [`LockError::Mismatch`].
//!
//! # How it works
//!
//! * **In-process first.** A file lock is the in-process lock of the same name (same
//!   mode) plus an OS lock on the lock file. Waiters of one process queue on the
//!   in-process lock (FIFO across modes, cancel-safe, re-entry refused), so a process
//!   never parks one thread per waiter. One name is one in-process lock, whatever
//!   directory or path is used with it.
//! * **Fast path.** Lock files stay open between acquisitions (at most 64 per process;
//!   one idle for 10 s is closed at the next acquisition) with their first page mapped
//!   shared, so an uncontended acquire is one non-blocking lock attempt plus a few
//!   memory writes — no `open`, no `close`, no thread hand-off.
//! * **Fair across processes.** A waiting process records itself in the page. A process
//!   that takes the lock counts that turn against every other process's waiter, and one
//!   that finds a waiter already passed twice gives the lock back at once and waits: while
//!   another process waits, a process takes at most three turns in a row, in every mode
//!   and kind of wait (async, blocking, blocking with a timeout).
//! * **Waiting.** On Linux a waiter counts itself in the page and watches the file with
//!   inotify before its next attempt, so no release is missed. A releasing holder that
//!   sees waiters bumps the file's times after unlocking, and a dying holder's descriptor
//!   is closed by the kernel; both wake the waiter at once. A bounded backoff re-try (1 ms
//!   doubling to 50 ms, or to `$LOCK_CORE_FILE_POLL_MAX_MS`) is only a safety net there
//!   (and may come up to 10 ms late rather than interrupt the wake-up thread); on other
//!   systems, and for changes made by other machines on network file systems, it is the
//!   whole mechanism. A blocking exclusive wait without a timeout sleeps in the kernel's
//!   `flock` itself, which hands the lock over as fast as a pipe wakes its reader. Async
//!   waits hand the inotify descriptor and their re-try timer to one background thread of
//!   this crate, so they work on any executor, and a dropped wait deregisters at once.
//! * **Cancellation.** The OS lock is only ever taken by the acquiring call itself — by a
//!   non-blocking attempt, or, for a blocking wait without a timeout, in the calling
//!   thread's own `flock` — which returns the guard at once. A dropped future or a
//!   timed-out wait therefore never leaves the lock held, not even for an instant.
//! * **Holders.** Every hold records pid, kind and time in the lock file, and an
//!   exclusive holder also writes a text record (what `cat` shows). [`LockError::Busy`]
//!   and [`LockError::Timeout`] name a holder that is still alive: a SIGKILLed holder
//!   leaves a stale entry but no lock. [`holders`] and [`LockDir::holders`] list them.
//!
//! # Safety of lock files
//!
//! * **Symlinks are never followed** to a lock file (`O_NOFOLLOW`, checked on the opened
//!   descriptor): a symlink planted at a lock path is refused with [`LockError::Io`],
//!   and its target is never touched. Neither are directories, pipes or devices.
//! * **Only lock-core's own files are written.** A lock file is lock-core's if it is
//!   empty or carries lock-core's page; any other file (another tool's lock file with
//!   content of its own, a data file, and every file named with `path`) is locked with
//!   the OS lock only — its bytes and size never change — and its holder is reported as
//!   unknown. (Fairness across processes and `Mismatch` need the page, so they are not
//!   available for such files.)
//! * **The default directory is per user and verified** (see [`default_dir`]). A
//!   directory named explicitly may be shared by several users on purpose: give it the
//!   sticky bit (so nobody can delete or replace another's lock files) and a common group
//!   (setgid directory, umask 002), and trust its users — anyone who can write a lock
//!   file can also hold its lock for ever.
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
//! A directory that cannot be created or is unsafe, a lock file that cannot be opened (a
//! symlink, a directory, no permission, a read-only file system) and a file system
//! without lock support are [`LockError::Io`] naming the lock and the path.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(unix)]
use crate::lockfile::page;
use crate::lockfile::{fname, hold, listing, open, os, record};
use crate::{Holder, Lock, LockError, LockGuard};

pub use crate::lockfile::dir::default_dir;
pub use crate::lockfile::listing::FileHolder;

/// Waits for the cross-process lock `name` in the [default directory](default_dir),
/// after the in-process lock of the same name (FIFO within this process).
/// Shorthand for `Lock::new(name).file().acquire()`.
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
/// [default directory](default_dir) right now, in any mode. An invalid name, a missing
/// lock file or an unreadable one counts as not locked.
///
/// The probe never disturbs a holder: it reads the holders recorded in the file, and for
/// files that record none takes a *shared* OS lock on a descriptor of its own for an
/// instant (probes do not conflict with each other) and lets waiters know when it is done.
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
/// its lock file tells: `None` if it is free, or held by a holder that left no record
/// (for instance a lock file of another tool).
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

/// Every live holder of a file lock in the [default directory](default_dir), read from
/// the lock files: name, mode, holding process and since when, and how many wait.
/// See [`LockDir::holders`].
///
/// ```
/// let g = lock_core::Lock::new("doc-file-holders").file().shared().try_acquire().unwrap();
/// let all = lock_core::file::holders().unwrap();
/// let mine = all.iter().find(|h| h.name == "doc-file-holders").unwrap();
/// assert_eq!(mine.mode, lock_core::Mode::Shared);
/// assert_eq!(mine.holder.pid, Some(std::process::id()));
/// # drop(g);
/// ```
pub fn holders() -> Result<Vec<FileHolder>, LockError> {
    listing::holders_in(default_dir())
}

fn is_locked_in(dir: &Path, name: &str) -> bool {
    if crate::validate_name(name).is_err() {
        return false;
    }
    let path = dir.join(fname::file_name(name));
    #[cfg(unix)]
    if let Some(snap) = open::open_existing(&path)
        .ok()
        .and_then(|f| page::snapshot(&f))
    {
        if snap.holders.iter().any(page::Entry::alive) {
            return true;
        }
    }
    os::probe_held(&path).unwrap_or(false)
}

fn holder_in(dir: &Path, name: &str) -> Option<Holder> {
    crate::validate_name(name).ok()?;
    let path = dir.join(fname::file_name(name));
    let f = open::open_existing(&path).ok()?;
    #[cfg(unix)]
    if let Some(snap) = page::snapshot(&f) {
        let mut live: Vec<page::Entry> = snap
            .holders
            .into_iter()
            .filter(page::Entry::alive)
            .collect();
        live.sort_by_key(|e| e.since_ms);
        return live.first().map(hold::holder_of_entry);
    }
    if !os::probe_held(&path).unwrap_or(false) {
        return None;
    }
    record::read_record(&f).and_then(|r| record::holder_from(r, name))
}

/// A lock directory: the file-lock verbs for locks that live in a directory of your
/// choice (e.g. inside a project's `target/`), instead of the [default](default_dir).
///
/// Processes exclude each other for a name only if they use the same directory. The
/// directory is created when a lock first needs it. A relative path is resolved against
/// the working directory when the `LockDir` is made. See [Safety of lock
/// files](self#safety-of-lock-files) for directories shared between users.
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

    /// A [`Lock`] request for `name` in this directory, for the other options
    /// (`shared`, `permits`, `timeout`, `run`, ...).
    ///
    /// ```
    /// let d = lock_core::file::LockDir::new(std::env::temp_dir().join("lock-core-doc-dir"));
    /// let g = d.lock("doc-dir-shared").shared().try_acquire().unwrap();
    /// assert_eq!(g.mode(), lock_core::Mode::Shared);
    /// # drop(g);
    /// ```
    pub fn lock<'a>(&'a self, name: &'a str) -> Lock<'a> {
        Lock::new(name).dir(&self.path)
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
    #[track_caller]
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

    /// Every live holder of a file lock in this directory, longest-held first: one
    /// [`FileHolder`] per holding process (and per permit of a counted lock), read from
    /// the lock files. Holders that died are not listed; files that are not lock-core's
    /// are skipped (their holders are unknown).
    ///
    /// ```
    /// let d = lock_core::file::LockDir::new(std::env::temp_dir().join("lock-core-doc-listing"));
    /// let g = d.try_acquire("doc-dir-listed").unwrap();
    /// let all = d.holders().unwrap();
    /// assert!(all.iter().any(|h| h.name == "doc-dir-listed" && h.mode == lock_core::Mode::Exclusive));
    /// drop(g);
    /// assert!(d.holders().unwrap().iter().all(|h| h.name != "doc-dir-listed"));
    /// ```
    pub fn holders(&self) -> Result<Vec<FileHolder>, LockError> {
        listing::holders_in(&self.path)
    }
}
