//! Declarative critical sections guarded by *named* locks.
//!
//! ```
//! use lock_core::locked;
//!
//! #[locked(name = "ledger", timeout_ms = 5_000)]
//! async fn post(entry: u64) -> Result<u64, lock_core::LockError> {
//!     // Only one call chain in this process runs this body at a time.
//!     Ok(entry * 2)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! assert_eq!(post(21).await.unwrap(), 42);
//! # }
//! ```
//!
//! The same names can be taken by hand with [`acquire`], [`acquire_timeout`],
//! [`try_acquire`] and [`blocking_acquire`]; one name is one lock for async and blocking
//! callers alike. [`file`](mod@file) adds exclusion across processes.
//!
//! # Executors
//!
//! The async verbs, in-process and [`file`](mod@file), work on any executor: Tokio
//! (current-thread or multi-thread, with or without its time and I/O drivers),
//! `futures::executor::block_on`, smol, and others. An uncontended acquire touches
//! nothing but the lock. Timeouts of contended waits and the wake-ups of file-lock waiters
//! come from one background thread of this crate (`lock-core-reactor`, started by the
//! first wait that needs it), never from the runtime; a dropped wait deregisters at once.
//! Only the [lease stores](lease) need a Tokio runtime.
//!
//! # Shapes
//!
//! A name is exclusive by default; [`Lock::shared`] holds share it (a reader/writer
//! lock: many shared holders, never beside an exclusive one, FIFO so neither side
//! starves), [`Lock::permits`] makes it a counted lock (a semaphore). The attribute says
//! `shared` / `permits = N`. A counted name asked for with another count, or as a
//! reader/writer lock, is [`LockError::Mismatch`].
//!
//! ```
//! use lock_core::{Lock, LockError};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), LockError> {
//! let reader = Lock::new("catalog-doc").shared().acquire().await?;
//! // Another task reads beside it; a writer has to wait.
//! let other = tokio::spawn(async { Lock::new("catalog-doc").shared().try_acquire().map(drop) });
//! assert!(other.await.unwrap().is_ok());
//! let writer = tokio::spawn(async { Lock::new("catalog-doc").try_acquire().map(drop) });
//! assert!(matches!(writer.await.unwrap(), Err(LockError::Busy { .. })));
//! drop(reader);
//!
//! let gpu = Lock::new("gpu-doc").permits(2).acquire().await?;
//! let wrong = tokio::spawn(async { Lock::new("gpu-doc").permits(3).try_acquire().map(drop) });
//! assert!(matches!(wrong.await.unwrap(), Err(LockError::Mismatch { .. })));
//! # drop(gpu);
//! # Ok(()) }
//! ```
//!
//! # No silent hangs
//!
//! A wait that could never end is an error, not a hang:
//!
//! * **Re-entry**: a call chain that already holds a lock and asks for it again gets
//!   [`LockError::Busy`] with `reentrant: true` at once. A call chain is a locked body
//!   and everything it awaits or calls ([`with_lock`], [`Lock::run`] and
//!   [`LeaseGuard::scope`] make one too). A guard taken by hand belongs to the future that
//!   took it: asking again in that future (or in a future `join!`ed beside it, which
//!   shares its waker) is refused; children of a `FuturesUnordered`, which have wakers of
//!   their own, queue like separate tasks. A blocking caller owns every hand-taken guard
//!   of its task (outside any task: of its thread). Two tasks simply queue.
//! * **Blocking the holder's thread**: a blocking acquire on a current-thread runtime's
//!   thread (or in `block_on`) while async code on that thread holds the lock is `Busy`
//!   with a `reason`, at once.
//! * **Cycles of waits**: the wait that would close a cycle (A holds `x` and waits for `y`
//!   while B holds `y` and waits for `x`) is [`LockError::Deadlock`], naming each lock and
//!   holder of the cycle; the other waiters go on. Cycles through other processes are not
//!   seen: bound those waits with timeouts.
//! * **Long waits** are reported once, naming the lock and its holder: through `tracing`
//!   (feature `tracing`) when a subscriber takes it, else as one line on standard error in
//!   test suites and wherever `LOCK_CORE_SLOW_WAIT_MS` is set ([`slow_wait_threshold`]);
//!   [`holders`], [`file::holders`] and [`lease::LeaseStore::leases`] list who holds what.
//!
//! [`lockdep`] finds lock-order inversions before they deadlock.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let outer = lock_core::with_lock("reentry-doc", async {
//!     // Asking again from inside the same call chain is refused, not a deadlock.
//!     let again = lock_core::acquire("reentry-doc").await;
//!     matches!(again, Err(lock_core::LockError::Busy { reentrant: true, .. }))
//! })
//! .await
//! .unwrap();
//! assert!(outer);
//! # }
//! ```
//!
//! # Names
//!
//! A name is a non-empty UTF-8 string of at most 256 bytes without control characters;
//! anything else is [`LockError::InvalidName`] from every verb (see [`validate_name`]).
//! Names that are no longer locked or waited for are reclaimed (a bounded number of idle
//! entries is kept for reuse; see [`stored_entries`]).

#![cfg_attr(docsrs, feature(doc_cfg))]

// The modules in layers, bottom first: each imports only modules of the layers listed
// before its own (tests/tests/layers.rs checks it). The crate root's verbs sit on top.
//
// 0. Leaves: call chains' frames, clocks, modes, places, call sites, the mutex helper.
mod chain;
mod clock;
mod mode;
mod place;
mod site;
mod sync;
// 1. Errors; who asks and who holds.
mod error;
mod owner;
// 2. Names; the lock word, its queue and holder records; the timer thread.
mod name;
mod raw;
mod reactor;
// 3. The registry of names; what messages say of a hold; tracing.
mod registry;
mod report;
mod trace;
// 4. Checks and listings: cycles of waits, lock order, blocked runtimes, holders.
mod deadlock;
mod listing;
pub mod lockdep;
mod stall;
// 5. One in-process hold and its re-entrant nesting.
mod held;
// 6. Lock files: pages, records, OS locks, waits, cycles across processes.
mod lockfile;
// 7. The guard: an in-process hold and its file part.
mod guard;
// 8. The acquire pipeline (try, wait, wait blocking); re-entry on request.
mod local;
mod reentry;
// 9. Backends: the file step over the pipeline; leases.
mod file_step;
pub mod lease;
// 10. Dispatch by place and opt-in (reentrant, readers_first).
mod optin;
// 11. Requests (`Lock`) and the attribute's hidden calls (nothing imports them).
#[doc(hidden)]
pub mod __private;
mod request;
// 12. The public file verbs.
pub mod file;

use std::future::Future;
use std::time::Duration;

pub use chain::Scoped;
pub use error::{CycleStep, Holder, LockError};
pub use guard::{scope, LockGuard, LockSet};
pub use lease::{LeaseGuard, LeaseStore};
pub use listing::{holders, HeldLock};
pub use mode::{Kind, Mode, MAX_PERMITS};
pub use name::{validate_name, MAX_NAME_LEN};
pub use request::Lock;
pub use trace::{set_slow_wait_threshold, slow_wait_threshold};

/// Runs the function body under a named lock. See the [crate documentation](crate) and
/// the project README for the full grammar.
///
/// ```
/// #[lock_core::locked(name = "account-{id}")]
/// async fn credit(id: u32, amount: i64) -> Result<i64, lock_core::LockError> {
///     Ok(amount)
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(credit(7, 10).await.unwrap(), 10);
/// # }
/// ```
pub use lock_macros::locked;

/// Waits for the named lock (FIFO: waiters are served in arrival order) and returns its
/// guard. Shorthand for [`Lock::new(name).acquire()`](Lock::acquire).
///
/// Cancel-safe: dropping the future leaves the queue at once. Fails with `Busy
/// { reentrant: true }` when the current call chain already holds `name` (see
/// [Re-entry](crate#re-entry)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
/// let guard = lock_core::acquire("reports").await?;
/// // ... exclusive work ...
/// drop(guard);
/// # Ok(()) }
/// ```
#[track_caller]
pub fn acquire(name: &str) -> impl Future<Output = Result<LockGuard, LockError>> + '_ {
    Lock::new(name).acquire()
}

/// Like [`acquire`], but gives up after `timeout` with [`LockError::Timeout`].
/// A zero timeout tries once ([`LockError::Busy`] if held).
///
/// Needs no particular runtime (see [Executors](crate#executors)): the timer is the
/// crate's own.
///
/// ```
/// use std::time::Duration;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let held = lock_core::acquire("slow").await.unwrap();
/// let slow = tokio::spawn(lock_core::acquire_timeout("slow", Duration::from_millis(10)));
/// assert_eq!(slow.await.unwrap().unwrap_err().code(), 8403);
/// # drop(held); }
/// ```
#[track_caller]
pub fn acquire_timeout(
    name: &str,
    timeout: Duration,
) -> impl Future<Output = Result<LockGuard, LockError>> + '_ {
    Lock::new(name).timeout(timeout).acquire()
}

/// Takes the named lock if it is free right now, else fails with [`LockError::Busy`].
/// Never waits, so it may be called from sync and async code alike.
///
/// ```
/// let g = lock_core::try_acquire("once").unwrap();
/// assert!(lock_core::try_acquire("once").is_err());
/// drop(g);
/// assert!(lock_core::try_acquire("once").is_ok());
/// ```
#[track_caller]
pub fn try_acquire(name: &str) -> Result<LockGuard, LockError> {
    Lock::new(name).try_acquire()
}

/// Blocks the calling thread until the named lock is free, or until `timeout` (if any)
/// has passed. For sync code; excludes async holders of the same name too.
///
/// A thread (or task) that already holds `name` is refused with `Busy { reentrant: true
/// }`, and a wait on the thread that runs an async holder (a task of the current-thread
/// runtime that calls this) with `Busy` and a reason, instead of blocking for ever.
///
/// ```
/// use std::time::Duration;
/// let g = lock_core::blocking_acquire("sync-doc", Some(Duration::from_secs(1))).unwrap();
/// drop(g);
/// ```
#[track_caller]
pub fn blocking_acquire(name: &str, timeout: Option<Duration>) -> Result<LockGuard, LockError> {
    Lock::new(name).timeout_opt(timeout).blocking_acquire()
}

/// True if some call chain in this process holds the named lock right now.
/// An invalid name is never locked.
///
/// ```
/// assert!(!lock_core::is_locked("nobody-holds-this"));
/// ```
pub fn is_locked(name: &str) -> bool {
    if validate_name(name).is_err() {
        return false;
    }
    registry::peek(name, |e| e.raw.is_locked()).unwrap_or(false)
}

/// Acquires `name`, runs `fut` as a call chain holding it, and releases it afterwards.
/// Shorthand for [`Lock::new(name).run(fut)`](Lock::run), which also takes a timeout and
/// the other options.
///
/// This is what `#[locked]` does for you; use it where an attribute does not fit.
/// Inside `fut`, asking for `name` again fails with `Busy { reentrant: true }`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
/// let total = lock_core::with_lock("totals", async { 40 + 2 }).await?;
/// assert_eq!(total, 42);
/// # Ok(()) }
/// ```
#[track_caller]
pub fn with_lock<F: Future>(
    name: &str,
    fut: F,
) -> impl Future<Output = Result<F::Output, LockError>> + use<'_, F> {
    Lock::new(name).run(fut)
}

/// How many names the in-process registry tracks right now as *in use*: held, waited
/// for, or pinned by an `#[locked]` call site. Names nobody uses are not counted.
///
/// ```
/// let before = lock_core::registered_names();
/// let g = lock_core::try_acquire("counted-doc").unwrap();
/// assert_eq!(lock_core::registered_names(), before + 1);
/// drop(g);
/// assert_eq!(lock_core::registered_names(), before);
/// ```
pub fn registered_names() -> usize {
    registry::in_use()
}

/// How many entries the in-process registry stores, idle ones and spares included. Idle
/// entries are kept briefly so that a name locked again soon costs no allocation (and a
/// few swept ones are kept as spares to be reused for new names), and swept
/// whenever a shard doubles, so this stays within a small multiple of
/// [`registered_names`] plus a constant (a few hundred), however many distinct names
/// have been used.
///
/// ```
/// for i in 0..10_000 {
///     drop(lock_core::try_acquire(&format!("burst-{i}")).unwrap());
/// }
/// assert!(lock_core::stored_entries() < 1_000);
/// ```
pub fn stored_entries() -> usize {
    registry::stored()
}
