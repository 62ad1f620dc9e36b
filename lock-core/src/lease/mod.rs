//! Leases: locks that hold across machines, kept in a shared store.
//!
//! An in-process or file lock excludes nothing once a service runs on several hosts.
//! A *lease* is a lock kept in a store that every host can reach (PostgreSQL, Redis, or
//! your own [`LeaseStore`]). It differs from a local lock in three ways you must design
//! for:
//!
//! * **It expires.** A lease has a time to live (TTL). While the [`LeaseGuard`] lives,
//!   a watchdog task renews it every TTL/3. If the holder stalls (GC pause, `SIGSTOP`,
//!   a network partition) for longer than the TTL, another process may take the lease
//!   while the stalled one still believes it holds it. A renewal the store *refuses*
//!   marks the lease lost at once; a renewal that *fails* (connection trouble) is retried
//!   every few milliseconds — the stores reconnect — for as long as the lease is
//!   certainly valid, and the lease is marked lost when that time runs out.
//! * **It carries a fencing token.** [`LeaseGuard::fence`] is a number that strictly
//!   increases, per name, with every acquisition, across holders, releases and store
//!   restarts (with PostgreSQL; the Redis store's counter restarts if Redis loses its
//!   data — see its module docs). The protected resource must remember the highest
//!   token it has seen and refuse writes that carry a lower one. This is what makes a
//!   stale holder harmless.
//! * **It can be lost.** [`LeaseGuard::remaining`] says how long the lease is certainly
//!   still held (measured from a local instant taken *before* the acquire request, minus
//!   a safety margin) and becomes `None` once it may have expired; [`LeaseGuard::lost`]
//!   is a future that completes when the watchdog finds the lease gone, and
//!   [`LeaseGuard::is_lost`] polls the same signal.
//!
//! # Checking the fence in the protected resource
//!
//! Give the protected row (or file, or object) a `last_fence` column and make every
//! write conditional on it, in the same statement as the write:
//!
//! ```sql
//! UPDATE accounts
//!    SET balance = $1, last_fence = $2
//!  WHERE id = $3 AND last_fence <= $2;   -- 0 rows updated: a newer holder exists, stop.
//! ```
//!
//! `<=` (not `<`) lets the current holder write several times with the same token; a
//! holder whose lease was taken over writes with a smaller token than the new holder's
//! and is refused. Holding the lease without such a check only makes collisions rare;
//! the check makes them impossible.
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use lock_core::lease::{self, LeaseOptions, postgres::PostgresStore};
//!
//! let store = PostgresStore::new("postgres://app@127.0.0.1/app")?;
//! let (client, conn) = lock_core::lease::postgres::tokio_postgres::connect(
//!     "postgres://app@127.0.0.1/app",
//!     lock_core::lease::postgres::tokio_postgres::NoTls,
//! )
//! .await?;
//! tokio::spawn(conn);
//!
//! let guard = lease::acquire(&store, "payouts", LeaseOptions::new().ttl(Duration::from_secs(10))).await?;
//! let fence = guard.check()? as i64; // Err(Lost) if the lease may have expired
//! let updated = client
//!     .execute(
//!         "UPDATE accounts SET balance = balance - 10, last_fence = $1 WHERE id = 7 AND last_fence <= $1",
//!         &[&fence],
//!     )
//!     .await?;
//! if updated == 0 {
//!     // A newer holder has written: our lease is stale. Do not retry blindly.
//! }
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! # With `#[locked]`
//!
//! `store = expr` takes the lock from a store (any expression that yields a reference to
//! a [`LeaseStore`], typically a `static`), `lease_ms` sets the TTL and `guard = g` binds
//! the [`LeaseGuard`]. Before the store is asked, the in-process lock of the same name is
//! taken, so waiters in one process queue locally and only one of them polls the store;
//! re-entry is detected as for the other modes.
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # mod demo {
//! use std::sync::LazyLock;
//! use lock_core::lease::postgres::PostgresStore;
//!
//! static LOCKS: LazyLock<PostgresStore> = LazyLock::new(|| {
//!     PostgresStore::new("postgres://app@127.0.0.1/app").expect("a valid URL")
//! });
//!
//! #[lock_core::locked(name = "nightly-report", store = LOCKS, lease_ms = 30_000, guard = g)]
//! async fn nightly_report() -> Result<u64, lock_core::LockError> {
//!     let fence = g.check()?; // Err(Lost) once the lease may have expired
//!     // ... write with `WHERE last_fence <= fence` ...
//!     Ok(fence)
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! # Writing your own store
//!
//! Implement the three primitives of [`LeaseStore`]: [`try_acquire`](LeaseStore::try_acquire)
//! (take the lease if free, with a new fencing token), [`refresh`](LeaseStore::refresh)
//! and [`release`](LeaseStore::release) (both only if owner *and* fence still match).
//! Waiting, back-off, renewal, the lost signal and cancellation safety are done here.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::registry::EntryRef;
use crate::{LockError, LockGuard};

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

mod util;

pub use util::owner_id;

/// The shortest TTL a lease may have: **10 ms**. A literal `lease_ms` below it is a
/// compile error; a shorter TTL at run time is [`LockError::AcquireFailed`].
///
/// ```
/// assert_eq!(lock_core::lease::MIN_TTL.as_millis(), 10);
/// ```
pub const MIN_TTL: Duration = Duration::from_millis(10);

/// How long a failed acquisition may spend asking the store who holds the lease.
const HOLDER_LOOKUP: Duration = Duration::from_millis(250);

/// The TTL used when neither the caller nor the store chooses one: **10 s** (renewed
/// every 3.3 s while held).
///
/// ```
/// assert_eq!(lock_core::lease::DEFAULT_TTL.as_secs(), 10);
/// ```
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// A lease as the store granted it: the fencing token and the owner it was granted to.
///
/// Returned by [`LeaseStore::try_acquire`] and handed back to
/// [`refresh`](LeaseStore::refresh) and [`release`](LeaseStore::release), which must
/// only act if both still match.
///
/// ```
/// let l = lock_core::lease::Lease::new(7, "host/123/abc/1");
/// assert_eq!(l.fence, 7);
/// assert_eq!(l.owner, "host/123/abc/1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The fencing token: strictly greater than that of every earlier lease on the name.
    pub fence: u64,
    /// The owner string the lease was granted to (unique per acquisition).
    pub owner: String,
}

impl Lease {
    /// A lease record, for store implementations.
    pub fn new(fence: u64, owner: impl Into<String>) -> Self {
        Lease {
            fence,
            owner: owner.into(),
        }
    }
}

/// The answer of one [`LeaseStore::try_acquire`] call.
///
/// ```
/// use lock_core::lease::{Attempt, Lease};
/// let won = Attempt::Acquired(Lease::new(1, "me"));
/// let lost = Attempt::Held { holder: Some("someone/42/x/1".into()) };
/// assert!(matches!(won, Attempt::Acquired(_)));
/// assert!(matches!(lost, Attempt::Held { .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The lease was free (or expired) and is now ours.
    Acquired(Lease),
    /// Someone else holds a live lease.
    Held {
        /// The current holder's owner string, if the store reported it.
        holder: Option<String>,
    },
}

/// A store of leases: PostgreSQL (`postgres::PostgresStore`, cargo feature `postgres`),
/// Redis (`redis::RedisStore`, feature `redis`), or your own.
///
/// A store is a cheap handle (clone it freely: clones share connections); the lease
/// machinery keeps a clone in the background task that renews a lease. The three
/// primitives must each be atomic on the store side; everything else (waiting with
/// jittered back-off, timeouts, renewal, the lost signal, release on drop, cleanup after
/// cancellation) is provided by [`acquire`] and [`LeaseGuard`].
///
/// Errors should be [`LockError::Store`] naming the lock and the store (never
/// credentials).
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use std::time::{Duration, Instant};
/// use lock_core::lease::{self, Attempt, Lease, LeaseOptions, LeaseStore};
/// use lock_core::LockError;
///
/// /// A toy in-memory store (one process only: for tests).
/// #[derive(Clone, Default)]
/// struct MemStore(Arc<Mutex<(u64, HashMap<String, (Lease, Instant)>)>>);
///
/// impl LeaseStore for MemStore {
///     fn describe(&self) -> String { "memory".into() }
///
///     async fn try_acquire(&self, name: &str, owner: &str, ttl: Duration) -> Result<Attempt, LockError> {
///         let mut s = self.0.lock().unwrap();
///         let now = Instant::now();
///         if let Some((l, exp)) = s.1.get(name) {
///             if *exp > now {
///                 return Ok(Attempt::Held { holder: Some(l.owner.clone()) });
///             }
///         }
///         s.0 += 1;
///         let lease = Lease::new(s.0, owner);
///         s.1.insert(name.to_owned(), (lease.clone(), now + ttl));
///         Ok(Attempt::Acquired(lease))
///     }
///
///     async fn refresh(&self, name: &str, lease: &Lease, ttl: Duration) -> Result<bool, LockError> {
///         let mut s = self.0.lock().unwrap();
///         let now = Instant::now();
///         match s.1.get_mut(name) {
///             Some((l, exp)) if l == lease && *exp > now => { *exp = now + ttl; Ok(true) }
///             _ => Ok(false),
///         }
///     }
///
///     async fn release(&self, name: &str, lease: &Lease) -> Result<bool, LockError> {
///         let mut s = self.0.lock().unwrap();
///         match s.1.get_mut(name) {
///             Some((l, exp)) if l == lease && *exp > Instant::now() => { *exp = Instant::now(); Ok(true) }
///             _ => Ok(false),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), LockError> {
/// let store = MemStore::default();
/// let g = lease::acquire(&store, "jobs", LeaseOptions::new()).await?;
/// assert_eq!(g.fence(), 1);
/// g.release().await?;
/// let g = lease::acquire(&store, "jobs", LeaseOptions::new()).await?;
/// assert_eq!(g.fence(), 2);
/// # Ok(()) }
/// ```
pub trait LeaseStore: Clone + Send + Sync + 'static {
    /// What this store is, for error messages: kind and address, never credentials.
    fn describe(&self) -> String;

    /// The TTL used when the caller does not choose one.
    fn default_ttl(&self) -> Duration {
        DEFAULT_TTL
    }

    /// Takes the lease on `name` for `owner` with time to live `ttl` if nobody holds a
    /// live one, issuing a fencing token greater than every earlier one for `name`.
    /// Must be a single atomic step on the store. Never waits for the lease to be free.
    ///
    /// `owner` is unique per acquisition (see [`owner_id`]); a store may grant a live
    /// lease again to the same owner (a repeated request whose answer was lost).
    fn try_acquire(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Attempt, LockError>> + Send;

    /// Who holds the live lease on `name`, if the store can tell (an owner string). Only
    /// used to name the holder in `Busy` and `Timeout` errors when
    /// [`try_acquire`](Self::try_acquire) did not say; the default knows nothing.
    fn holder(&self, name: &str) -> impl Future<Output = Result<Option<String>, LockError>> + Send {
        let _ = name;
        std::future::ready(Ok(None))
    }

    /// Extends a live lease to `ttl` from now, if it is still held with exactly this owner
    /// and fence. `Ok(false)` means it was not (expired, released or taken over).
    fn refresh(
        &self,
        name: &str,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, LockError>> + Send;

    /// Gives up a live lease if it is still held with exactly this owner and fence,
    /// keeping what the store needs for later fences to stay greater. `Ok(false)` means
    /// it was not held any more.
    fn release(
        &self,
        name: &str,
        lease: &Lease,
    ) -> impl Future<Output = Result<bool, LockError>> + Send;
}

/// How to take a lease: TTL, how long to wait, and the retry pacing.
///
/// ```
/// use std::time::Duration;
/// let opts = lock_core::lease::LeaseOptions::new()
///     .ttl(Duration::from_secs(5))
///     .timeout(Duration::from_secs(2));
/// assert_eq!(opts.get_ttl(), Some(Duration::from_secs(5)));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LeaseOptions {
    ttl: Option<Duration>,
    timeout: Option<Duration>,
    margin: Option<Duration>,
    retry_min: Option<Duration>,
    retry_max: Option<Duration>,
}

impl LeaseOptions {
    /// Defaults: the store's TTL, wait for ever, margin TTL/10, retries every 2–50 ms.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lease's time to live (at least [`MIN_TTL`]). It is renewed every TTL/3.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Gives up after `timeout` with [`LockError::Timeout`]; zero tries once and fails
    /// with [`LockError::Busy`] if the lease is held.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets or clears the wait timeout.
    pub fn timeout_opt(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// How much earlier than the TTL [`LeaseGuard::remaining`] turns `None`, to absorb
    /// clock-rate differences and scheduling delays (default TTL/10, at most TTL/2).
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.margin = Some(margin);
        self
    }

    /// The first and the longest pause between two attempts while waiting (each pause
    /// is drawn at random between half and all of the current back-off, which doubles
    /// from `min` up to `max`).
    pub fn retry_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min = Some(min.max(Duration::from_micros(100)));
        self.retry_max = Some(max.max(min));
        self
    }

    /// The TTL set by [`ttl`](Self::ttl), if any.
    pub fn get_ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The timeout set by [`timeout`](Self::timeout), if any.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// Shared between the guard and its watchdog.
struct Shared {
    base: Instant,
    /// Nanoseconds after `base` until which the lease is certainly held.
    valid_until: AtomicU64,
    lost: watch::Sender<Option<Arc<str>>>,
}

impl Shared {
    fn set_valid_until(&self, t: Instant) {
        let n = t.saturating_duration_since(self.base).as_nanos();
        self.valid_until
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Release);
    }

    fn valid_until(&self) -> Instant {
        let n = self.valid_until.load(Ordering::Acquire);
        self.base
            .checked_add(Duration::from_nanos(n))
            .unwrap_or(self.base)
    }

    fn mark_lost(&self, reason: String) {
        self.lost.send_if_modified(|v| {
            if v.is_some() {
                return false;
            }
            *v = Some(reason.into());
            true
        });
    }

    fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    fn remaining(&self) -> Option<Duration> {
        if self.is_lost() {
            return None;
        }
        let left = self.valid_until().saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

type ReleaseFuture = Pin<Box<dyn Future<Output = Result<bool, LockError>> + Send>>;
type Releaser = Box<dyn FnOnce() -> ReleaseFuture + Send + Sync>;

/// A held lease. Renewed in the background while it lives; released when dropped.
///
/// Dropping the guard never blocks: it stops the watchdog and hands the release to a
/// background task (the in-process lock of the name is given back once the store has
/// answered). Use [`release`](Self::release) to learn whether the release worked.
///
/// ```no_run
/// # #[cfg(feature = "redis")]
/// # async fn demo() -> Result<(), lock_core::LockError> {
/// use lock_core::lease::{self, LeaseOptions, redis::RedisStore};
///
/// let store = RedisStore::new("redis://127.0.0.1:6379")?;
/// let guard = lease::acquire(&store, "nightly-report", LeaseOptions::new()).await?;
/// tokio::select! {
///     lost = guard.lost() => return Err(lost),      // stop at once: someone else may run
///     _ = async { /* the work, writing with guard.fence() */ } => {}
/// }
/// guard.release().await
/// # }
/// ```
#[must_use = "the lease is released as soon as the guard is dropped"]
pub struct LeaseGuard {
    name: Arc<str>,
    lease: Lease,
    ttl: Duration,
    store: String,
    acquired_at: Instant,
    shared: Arc<Shared>,
    watchdog: Option<JoinHandle<()>>,
    releaser: Option<Releaser>,
    local: Option<LockGuard>,
    runtime: tokio::runtime::Handle,
}

impl LeaseGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token of this lease: strictly greater than that of every earlier
    /// holder of the name. Send it with every write to the protected resource, which must
    /// refuse tokens lower than the highest it has seen (see the [module docs](self)).
    pub fn fence(&self) -> u64 {
        self.lease.fence
    }

    /// The owner string this lease was granted to (host, pid and a unique suffix).
    pub fn owner(&self) -> &str {
        &self.lease.owner
    }

    /// The lease's time to live; it is renewed every TTL/3.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The store the lease lives in (kind and address).
    pub fn store(&self) -> &str {
        &self.store
    }

    /// How long the lease has been held.
    pub fn held_for(&self) -> Duration {
        self.acquired_at.elapsed()
    }

    /// How long the lease is certainly still held, or `None` once it may have expired
    /// (or was found lost): stop mutating then.
    ///
    /// Measured from a local instant taken *before* the request that acquired (or last
    /// renewed) the lease, minus the safety margin, so it errs on the early side.
    pub fn remaining(&self) -> Option<Duration> {
        self.shared.remaining()
    }

    /// True once the watchdog found the lease gone (refused or failed renewal, or a
    /// renewal too late to be sure).
    pub fn is_lost(&self) -> bool {
        self.shared.is_lost()
    }

    /// The fencing token if the lease is certainly still held, else [`LockError::Lost`].
    pub fn check(&self) -> Result<u64, LockError> {
        if let Some(reason) = self.shared.lost.borrow().clone() {
            return Err(self.lost_error(&reason));
        }
        match self.remaining() {
            Some(_) => Ok(self.fence()),
            None => {
                Err(self.lost_error("the lease may have expired (no renewal confirmed in time)"))
            }
        }
    }

    fn lost_error(&self, reason: &str) -> LockError {
        LockError::Lost {
            name: self.name.to_string(),
            reason: format!(
                "{reason} (fence {}, store {})",
                self.lease.fence, self.store
            ),
        }
    }

    /// A future that completes with [`LockError::Lost`] when the lease is found lost.
    ///
    /// It does not borrow the guard, so a body can `select!` on it next to its work. It
    /// never completes while the lease is held, nor after the guard is gone.
    pub fn lost(&self) -> impl Future<Output = LockError> + Send + 'static {
        let mut rx = self.shared.lost.subscribe();
        let name = self.name.clone();
        let fence = self.lease.fence;
        let store = self.store.clone();
        async move {
            let reason = loop {
                if let Some(r) = rx.borrow_and_update().clone() {
                    break r;
                }
                if rx.changed().await.is_err() {
                    // The guard and its watchdog are gone without a loss.
                    std::future::pending::<()>().await;
                }
            };
            LockError::Lost {
                name: name.to_string(),
                reason: format!("{reason} (fence {fence}, store {store})"),
            }
        }
    }

    /// Runs `fut` as a call chain holding this lease's name, so that nested attempts
    /// to take the same name inside it are refused as re-entry instead of waiting.
    pub fn scope<F: Future>(&self, fut: F) -> crate::Scoped<F> {
        let mut held = crate::chain::HeldSet::default();
        self.push_held(&mut held);
        crate::Scoped::new(crate::chain::Frame::new(held), fut)
    }

    pub(crate) fn push_held(&self, set: &mut crate::chain::HeldSet) {
        if let Some(g) = &self.local {
            set.push(g.entry(), g.token());
        }
    }

    /// Releases the lease now and reports the outcome: `Ok` if the store gave it up,
    /// [`LockError::NotHeld`] if it had already expired or been taken over, or the
    /// store's error.
    ///
    /// Cancel-safe: if this future is dropped, the release still completes in the
    /// background.
    pub async fn release(mut self) -> Result<(), LockError> {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        let releaser = self.releaser.take();
        let local = self.local.take();
        if let Some(l) = &local {
            l.disown();
        }
        // In a task of its own, so that cancelling this future cannot stop a release
        // half-way (the in-process lock goes once the store has answered).
        let task = self.runtime.spawn(async move {
            let result = match releaser {
                Some(r) => r().await,
                None => Ok(true),
            };
            drop(local);
            result
        });
        let result = task.await.unwrap_or_else(|e| {
            Err(LockError::ReleaseFailed {
                name: self.name.to_string(),
                reason: format!("the release task failed: {e}"),
            })
        });
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(LockError::NotHeld {
                name: self.name.to_string(),
                reason: format!(
                    "the lease (fence {}) had expired or been taken over before release (store {})",
                    self.lease.fence, self.store
                ),
            }),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        if let Some(r) = self.releaser.take() {
            let local = self.local.take();
            // The in-process lock now belongs to the release task: the chain that dropped
            // the lease may queue for the name again (it waits for the release, FIFO).
            if let Some(l) = &local {
                l.disown();
            }
            // Never block here: the release runs on the runtime that acquired the lease;
            // if that runtime is gone, the lease simply expires after its TTL.
            drop(self.runtime.spawn(async move {
                let _ = r().await;
                drop(local);
            }));
        }
    }
}

impl fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("name", &self.name)
            .field("fence", &self.lease.fence)
            .field("owner", &self.lease.owner)
            .field("store", &self.store)
            .field("ttl", &self.ttl)
            .field("remaining", &self.remaining())
            .field("lost", &self.is_lost())
            .finish()
    }
}

/// Takes the lease on `name` from `store`, waiting (with jittered back-off, bounded by
/// the options' timeout) while another holder has it.
///
/// The in-process lock of the same name is taken first, so concurrent callers in one
/// process queue locally (FIFO) and only one at a time asks the store. A call chain that
/// already holds `name` is refused with `Busy { reentrant: true }`.
///
/// Cancel-safe: if the future is dropped while a request is in flight, a background
/// task waits for the answer and gives back a lease granted too late.
///
/// Needs a Tokio runtime with its I/O and time drivers enabled (as `#[tokio::main]` and
/// `#[tokio::test]` set up): the watchdog and the release-on-drop run on it.
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn demo() -> Result<(), lock_core::LockError> {
/// use std::time::Duration;
/// use lock_core::lease::{self, LeaseOptions, postgres::PostgresStore};
///
/// let store = PostgresStore::new("postgres://app@127.0.0.1/app")?;
/// let opts = LeaseOptions::new().ttl(Duration::from_secs(5)).timeout(Duration::from_secs(1));
/// match lease::acquire(&store, "reindex", opts).await {
///     Ok(guard) => println!("got fence {}", guard.fence()),
///     Err(e) if e.is_contention() => println!("busy: {e}"),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
pub async fn acquire<S: LeaseStore>(
    store: &S,
    name: &str,
    opts: LeaseOptions,
) -> Result<LeaseGuard, LockError> {
    crate::validate_name(name)?;
    let entry = EntryRef::Counted(crate::registry::get(name));
    acquire_entry(store, entry, opts, crate::site::Site::Unknown, true).await
}

pub(crate) async fn acquire_for_macro<S: LeaseStore>(
    store: &S,
    keys: crate::__private::Keys,
    opts: crate::__private::StoreOptions,
) -> Result<LeaseGuard, LockError> {
    let mut entries = crate::__private::entries(keys)?;
    let entry = if entries.len() == 1 {
        entries.pop()
    } else {
        None
    };
    let Some(entry) = entry else {
        let names: Vec<&str> = entries.iter().map(|e| e.name()).collect();
        return Err(LockError::AcquireFailed {
            name: names.join(", "),
            reason: "a lease store takes exactly one name per critical section; \
                     nest two locked functions (in sorted name order) to hold several leases"
                .into(),
        });
    };
    let mut o = LeaseOptions::new().timeout_opt(opts.timeout_ms.map(Duration::from_millis));
    if let Some(ms) = opts.lease_ms {
        o = o.ttl(Duration::from_millis(ms));
    }
    acquire_entry(store, entry, o, crate::site::Site::Fn(opts.site), false).await
}

async fn acquire_entry<S: LeaseStore>(
    store: &S,
    entry: EntryRef,
    opts: LeaseOptions,
    site: crate::site::Site,
    hand: bool,
) -> Result<LeaseGuard, LockError> {
    let start = Instant::now();
    let name: Arc<str> = Arc::from(entry.name());
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| LockError::AcquireFailed {
        name: name.to_string(),
        reason: "lease stores need a Tokio runtime (with the time driver)".into(),
    })?;
    let ttl = opts.ttl.unwrap_or_else(|| store.default_ttl());
    if ttl < MIN_TTL {
        return Err(LockError::AcquireFailed {
            name: name.to_string(),
            reason: format!(
                "a lease TTL must be at least {} ms, got {:?}",
                MIN_TTL.as_millis(),
                ttl
            ),
        });
    }
    let margin = opts.margin.unwrap_or(ttl / 10).min(ttl / 2);
    let deadline = opts.timeout.and_then(|t| start.checked_add(t));
    let try_once = opts.timeout == Some(Duration::ZERO);

    let local = crate::local::lock(entry, crate::Mode::Exclusive, opts.timeout, site, hand).await?;
    let mut pending = Pending {
        store: store.clone(),
        name: name.clone(),
        local: Some(local),
        task: None,
        runtime: runtime.clone(),
    };
    let owner = owner_id();
    let mut backoff = util::Backoff::new(
        opts.retry_min.unwrap_or(Duration::from_millis(2)),
        opts.retry_max
            .unwrap_or(Duration::from_millis(50))
            .min(ttl / 2),
    );
    let mut waiting = false;
    let mut slow_at =
        crate::trace::slow_waits_wanted().then(|| start + crate::trace::slow_wait_threshold());
    loop {
        let sent = Instant::now();
        let attempt = {
            let store = store.clone();
            let (n, o) = (name.clone(), owner.clone());
            pending.task = Some(runtime.spawn(async move { store.try_acquire(&n, &o, ttl).await }));
            pending.wait().await
        };
        match attempt {
            Ok(Attempt::Acquired(lease)) => {
                if waiting {
                    crate::trace::acquired_after_wait(
                        &name,
                        crate::Mode::Exclusive,
                        crate::trace::Backend::Lease,
                        start.elapsed(),
                    );
                }
                let local = pending.local.take();
                return Ok(start_guard(
                    store, name, lease, ttl, margin, sent, local, runtime,
                ));
            }
            Ok(Attempt::Held { holder }) => {
                let give_up = try_once || deadline.is_some_and(|d| Instant::now() >= d);
                let as_holder = |h: &Option<String>| {
                    h.as_ref()
                        .map(|h| Box::new(util::holder_from_owner(h, &store.describe())))
                };
                if !waiting && !give_up {
                    waiting = true;
                    crate::trace::wait_started(
                        &name,
                        crate::Mode::Exclusive,
                        crate::trace::Backend::Lease,
                        || as_holder(&holder),
                    );
                }
                if slow_at.is_some_and(|at| Instant::now() >= at) {
                    slow_at = None;
                    crate::trace::slow_wait(
                        &name,
                        crate::Mode::Exclusive,
                        crate::trace::Backend::Lease,
                        start.elapsed(),
                        as_holder(&holder).as_deref(),
                    );
                }
                if !give_up {
                    let mut pause = backoff.next();
                    if let Some(d) = deadline {
                        pause = pause.min(d.saturating_duration_since(Instant::now()));
                    }
                    tokio::time::sleep(pause).await;
                    continue;
                }
                let holder = match holder {
                    Some(h) => Some(h),
                    None => tokio::time::timeout(HOLDER_LOOKUP, store.holder(&name))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten(),
                };
                let holder =
                    holder.map(|h| Box::new(util::holder_from_owner(&h, &store.describe())));
                if try_once {
                    return Err(LockError::Busy {
                        name: name.to_string(),
                        holder,
                        reentrant: false,
                        reason: None,
                    });
                }
                return Err(LockError::Timeout {
                    name: name.to_string(),
                    waited: start.elapsed(),
                    holder,
                });
            }
            Err(e) => return Err(e),
        }
    }
}

/// The state of an acquisition in progress; its `Drop` cleans up after cancellation.
struct Pending<S: LeaseStore> {
    store: S,
    name: Arc<str>,
    local: Option<LockGuard>,
    task: Option<JoinHandle<Result<Attempt, LockError>>>,
    runtime: tokio::runtime::Handle,
}

impl<S: LeaseStore> Pending<S> {
    async fn wait(&mut self) -> Result<Attempt, LockError> {
        let joined = match self.task.as_mut() {
            Some(task) => task.await,
            None => return Ok(Attempt::Held { holder: None }),
        };
        // Only now: if this future is dropped while awaiting, `Drop` sees the task.
        self.task = None;
        joined.unwrap_or_else(|e| {
            Err(LockError::AcquireFailed {
                name: self.name.to_string(),
                reason: format!("the store request task failed: {e}"),
            })
        })
    }
}

impl<S: LeaseStore> Drop for Pending<S> {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        // Cancelled with a request in flight: the store may grant the lease after all.
        // Wait for the answer in the background and give such a lease back at once.
        let store = self.store.clone();
        let name = self.name.clone();
        let local = self.local.take();
        // From now on the in-process lock belongs to the cleanup task, not to the caller
        // (who may ask for the name again at once and must queue, not be refused).
        if let Some(l) = &local {
            l.disown();
        }
        drop(self.runtime.spawn(async move {
            if let Ok(Ok(Attempt::Acquired(lease))) = task.await {
                let _ = store.release(&name, &lease).await;
            }
            drop(local);
        }));
    }
}

#[allow(clippy::too_many_arguments)]
fn start_guard<S: LeaseStore>(
    store: &S,
    name: Arc<str>,
    lease: Lease,
    ttl: Duration,
    margin: Duration,
    sent: Instant,
    local: Option<LockGuard>,
    runtime: tokio::runtime::Handle,
) -> LeaseGuard {
    let (lost, _) = watch::channel(None);
    let shared = Arc::new(Shared {
        base: sent,
        valid_until: AtomicU64::new(0),
        lost,
    });
    shared.set_valid_until(sent + (ttl - margin));
    let describe = store.describe();
    let watchdog = runtime.spawn(watchdog(
        store.clone(),
        name.clone(),
        lease.clone(),
        ttl,
        margin,
        sent,
        shared.clone(),
    ));
    let releaser: Releaser = {
        let store = store.clone();
        let name = name.clone();
        let lease = lease.clone();
        Box::new(move || Box::pin(async move { store.release(&name, &lease).await }))
    };
    LeaseGuard {
        name,
        lease,
        ttl,
        store: describe,
        acquired_at: Instant::now(),
        shared,
        watchdog: Some(watchdog),
        releaser: Some(releaser),
        local,
        runtime,
    }
}

/// Renews the lease every TTL/3 until aborted (guard dropped) or the lease is lost.
///
/// A refused renewal marks the lease lost at once. A failed one (connection trouble) is
/// retried quickly — the stores reconnect — for as long as the lease is certainly still
/// valid; when that time runs out without a confirmed renewal, the lease is marked lost.
async fn watchdog<S: LeaseStore>(
    store: S,
    name: Arc<str>,
    lease: Lease,
    ttl: Duration,
    margin: Duration,
    acquired: Instant,
    shared: Arc<Shared>,
) {
    let period = ttl / 3;
    let retry = (ttl / 20).clamp(Duration::from_millis(1), Duration::from_millis(50));
    let mut next = acquired + period;
    let mut last_error: Option<String> = None;
    loop {
        tokio::time::sleep_until(next.into()).await;
        let valid_until = shared.valid_until();
        let sent = Instant::now();
        if sent >= valid_until {
            let why = match last_error {
                Some(e) => format!("renewal kept failing until the lease may have expired: {e}"),
                None => "renewal came too late (the process was paused or starved): \
                         the lease may have expired"
                    .to_owned(),
            };
            crate::trace::lease_lost(&name, &store.describe(), lease.fence, &why);
            shared.mark_lost(why);
            return;
        }
        let renewed =
            tokio::time::timeout(valid_until - sent, store.refresh(&name, &lease, ttl)).await;
        match renewed {
            Ok(Ok(true)) => {
                shared.set_valid_until(sent + (ttl - margin));
                last_error = None;
                next = sent + period;
            }
            Ok(Ok(false)) => {
                let why = "the store refused the renewal: the lease expired, was released or was taken over";
                crate::trace::lease_lost(&name, &store.describe(), lease.fence, why);
                shared.mark_lost(why.to_owned());
                return;
            }
            Ok(Err(e)) => {
                let text = e.to_string();
                crate::trace::lease_renewal_failed(&name, &store.describe(), lease.fence, &text);
                last_error = Some(text);
                next = Instant::now() + retry;
            }
            Err(_) => {
                let why = last_error.unwrap_or_else(|| "no answer from the store".to_owned());
                let why =
                    format!("renewal did not complete before the lease may have expired: {why}");
                crate::trace::lease_lost(&name, &store.describe(), lease.fence, &why);
                shared.mark_lost(why);
                return;
            }
        }
    }
}
