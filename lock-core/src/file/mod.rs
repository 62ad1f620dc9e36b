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

pub(crate) mod cache;
mod dir;
mod fname;
mod hold;
mod listing;
pub(crate) mod open;
pub(crate) mod os;
#[cfg(unix)]
pub(crate) mod page;
pub(crate) mod record;
mod wait;

use std::borrow::Cow;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mode::Mode;
use crate::owner::{Facts, Me};
use crate::registry::EntryRef;
use crate::request::Place;
use crate::site::Site;
use crate::{local, Holder, Lock, LockError, LockGuard};
use cache::LockFile;
use hold::Try;

pub use dir::default_dir;
pub(crate) use hold::FileHold;
pub use listing::FileHolder;
pub(crate) use record::host_name;

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

// ---------------------------------------------------------------------------------------
// The verbs, shared by the public API and `#[locked(file)]`.

/// The open lock file for `guard`'s name at `place`.
fn open_for(guard: &LockGuard, place: Place<'_>) -> Result<Arc<LockFile>, LockError> {
    let name = guard.name();
    let now = guard.granted_nanos();
    let opened = match place {
        Place::Dir(d) => cache::open(&resolve_dir(d), name, false, now),
        Place::Path(p) => {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            cache::open(&p, name, true, now)
        }
        Place::Local => cache::open(default_dir(), name, false, now),
    };
    opened.map_err(|(path, e)| hold::io_error(name, &path, e))
}

/// With the lock-order checker on: tells it the file lock `guard` lives in `lf`'s
/// directory, whose order log other processes share.
#[cold]
fn lockdep_file(guard: &LockGuard, lf: &LockFile, me: &Me) {
    if let Some(dir) = lf.path.parent() {
        crate::lockdep::file_taken(guard.token(), dir, me);
    }
}

fn busy(lf: &LockFile, name: &str) -> LockError {
    LockError::Busy {
        name: name.to_owned(),
        holder: hold::holder(lf, name),
        reentrant: false,
        reason: None,
    }
}

fn deadline_of(start: Instant, timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| start.checked_add(t))
}

/// An error of a lock file's own in-process lock, as an error of the lock `name` that
/// the caller asked for (which reached the file under another name, or is held by
/// another name of this process).
#[cold]
fn alias_error(e: LockError, name: &str, lf: &LockFile) -> LockError {
    let path = lf.path.display();
    match e {
        LockError::Busy {
            holder,
            reentrant,
            reason: None,
            ..
        } => {
            LockError::Busy {
                name: name.to_owned(),
                holder,
                reentrant,
                reason: Some(if reentrant {
                    format!("its lock file {path} is held by this call chain already, under another name")
                } else {
                    format!("its lock file {path} is held in this process under another name")
                }),
            }
        }
        e => e.renamed(name),
    }
}

/// The time left of `timeout` since `start` (`Some(0)` once it is used up: try once).
fn left(start: Instant, timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| t.saturating_sub(start.elapsed()))
}

/// Waits for the in-process lock, then the file's own in-process lock (one per file,
/// whatever name reaches it), then the OS lock. `Some(0)` tries each once.
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
    let lf = open_for(&guard, place)?;
    let ident = EntryRef::Counted(lf.ident.clone());
    let inproc = local::lock(ident, mode, left(start, timeout), site, hand)
        .await
        .map_err(|e| alias_error(e, guard.name(), &lf))?
        .into_held();
    let hold = match hold::try_os(&lf, mode, guard.name(), None)? {
        Try::Got(h) => h,
        Try::Held | Try::Yield if timeout == Some(Duration::ZERO) => {
            return Err(busy(&lf, guard.name()))
        }
        // On error or cancellation `guard` and `inproc` drop here and give the in-process
        // locks back; the OS lock was never taken.
        Try::Held | Try::Yield => {
            let me = local::me_async().await;
            let deadline = deadline_of(start, timeout);
            wait::wait_async(&lf, mode, guard.name(), start, deadline, me).await?
        }
    };
    guard.attach_file(hold.with_inproc(inproc));
    if crate::lockdep::on() {
        lockdep_file(&guard, &lf, &local::me_async().await);
    }
    Ok(guard)
}

/// The attribute's fast path: all three locks if all can be had right now, else `None`
/// with nothing held (the caller then waits the usual way).
pub(crate) fn try_now(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    facts: &Facts,
) -> Result<Option<LockGuard>, LockError> {
    let mut guard = match local::try_alone(entry, mode, facts) {
        local::Fast::Got(g) => g,
        local::Fast::Taken(_) => return Ok(None),
        local::Fast::Failed(e) => return Err(*e),
    };
    let lf = open_for(&guard, place)?;
    let ident = EntryRef::Counted(lf.ident.clone());
    let inproc = match local::try_alone(ident, mode, facts) {
        local::Fast::Got(g) => g.into_held(),
        local::Fast::Taken(_) => return Ok(None),
        local::Fast::Failed(e) => return Err(alias_error(*e, guard.name(), &lf)),
    };
    match hold::try_os(&lf, mode, guard.name(), None)? {
        Try::Got(h) => {
            guard.attach_file(h.with_inproc(inproc));
            Ok(Some(guard))
        }
        Try::Held | Try::Yield => Ok(None),
    }
}

/// `readers_first` for a file lock: joins the shared holders of the name, then of the
/// file's own in-process lock (or takes it if free), then the OS shared lock, all without
/// waiting; `None` (nothing held) if any of them cannot be had right now.
pub(crate) fn join_shared(
    entry: &EntryRef,
    place: Place<'_>,
    facts: &Facts,
    me: &Me,
    reentrant: bool,
) -> Result<Option<LockGuard>, LockError> {
    let Some(mut guard) = local::join_shared(entry, facts, me, reentrant)? else {
        return Ok(None);
    };
    let lf = open_for(&guard, place)?;
    let ident = EntryRef::Counted(lf.ident.clone());
    let inproc = if ident.raw.has_sharers() {
        local::join_shared(&ident, facts, me, false)
            .map_err(|e| alias_error(e, guard.name(), &lf))?
    } else {
        match local::try_lock(ident, Mode::Shared, *facts, *me) {
            Ok(g) => Some(g),
            Err(LockError::Busy { .. }) => None,
            Err(e) => return Err(alias_error(e, guard.name(), &lf)),
        }
    };
    let Some(inproc) = inproc else {
        return Ok(None);
    };
    match hold::try_os(&lf, Mode::Shared, guard.name(), None)? {
        Try::Got(h) => {
            guard.attach_file(h.with_inproc(inproc.into_held()));
            if crate::lockdep::on() {
                lockdep_file(&guard, &lf, me);
            }
            Ok(Some(guard))
        }
        Try::Held | Try::Yield => Ok(None),
    }
}

/// Takes all three locks if all can be had right now.
pub(crate) fn try_lock_entry(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    facts: Facts,
    me: Me,
) -> Result<LockGuard, LockError> {
    let mut guard = local::try_lock(entry, mode, facts, me)?;
    let lf = open_for(&guard, place)?;
    let ident = EntryRef::Counted(lf.ident.clone());
    let inproc = local::try_lock(ident, mode, facts, me)
        .map_err(|e| alias_error(e, guard.name(), &lf))?
        .into_held();
    match hold::try_os(&lf, mode, guard.name(), None)? {
        Try::Got(h) => {
            guard.attach_file(h.with_inproc(inproc));
            if crate::lockdep::on() {
                lockdep_file(&guard, &lf, &me);
            }
            Ok(guard)
        }
        Try::Held | Try::Yield => Err(busy(&lf, guard.name())),
    }
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
    let lf = open_for(&guard, place)?;
    let ident = EntryRef::Counted(lf.ident.clone());
    let inproc = local::blocking_lock(ident, mode, left(start, timeout), facts, me)
        .map_err(|e| alias_error(e, guard.name(), &lf))?
        .into_held();
    let hold = match hold::try_os(&lf, mode, guard.name(), None)? {
        Try::Got(h) => h,
        Try::Held | Try::Yield if timeout == Some(Duration::ZERO) => {
            return Err(busy(&lf, guard.name()))
        }
        Try::Held | Try::Yield => {
            let deadline = deadline_of(start, timeout);
            let name = guard.name();
            // On a multi-thread runtime's worker, let the runtime move other tasks away.
            local::block_here(|| wait::wait_blocking(&lf, mode, name, start, deadline, me))?
        }
    };
    guard.attach_file(hold.with_inproc(inproc));
    if crate::lockdep::on() {
        lockdep_file(&guard, &lf, &me);
    }
    Ok(guard)
}

#[cfg(test)]
mod tests;
