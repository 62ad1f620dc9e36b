//! Leases: locks that hold across machines, kept in a shared store.
//!
//! An in-process or file lock excludes nothing once a service runs on several hosts.
//! A *lease* is a lock kept in a store that every host can reach (PostgreSQL, Redis,
//! DynamoDB, or your own [`LeaseStore`]). It differs from a local lock in three ways you must design
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
//! # Shapes
//!
//! Leases come in the shapes of the other locks ([`LeaseOptions::shared`],
//! [`LeaseOptions::permits`]): many `shared` holders at once, never beside an exclusive
//! one; or at most `N` holders of a counted lease, each with its own expiry and fence
//! (a holder that dies frees its permit when its TTL runs out). Every holder of every
//! shape gets its own fence, and fences of a name increase across all shapes. Asking for
//! a name in another kind than its live holders use (a counted lease with 3 permits
//! asked with 5, or shared) is refused with [`LockError::Mismatch`](crate::LockError::Mismatch).
//!
//! [`acquire_many`] takes several names at once, all or nothing (sorted, so two callers
//! asking for overlapping sets cannot deadlock): a partly available set holds nothing
//! while it waits.
//!
//! # Waking and fairness
//!
//! Waiters do not poll blindly. The PostgreSQL store `NOTIFY`s from its release path
//! and keeps one `LISTEN` connection per store; the Redis store `PUBLISH`es from its
//! release script and keeps one subscription per store. Each waiter also retries when
//! the current lease would expire and, as a safety net, on a back-off of its own: a
//! lost notification costs latency, never correctness. Both stores keep a queue per
//! name: while another owner waits, one owner takes at most three turns in a row (a
//! waiter passed over twice is *due*, and nobody else is granted the name before it).
//! A waiter that dies leaves the queue when its entry's TTL runs out. The DynamoDB store
//! keeps the same queue but has no notifications: its waiters poll (see its module docs
//! for what that costs).
//!
//! # Leader election
//!
//! [`Election`] campaigns for a name until it leads, keeps the lead renewed, says when it
//! is lost, and lets anyone see who leads now ([`Election::leader`]).
//!
//! # Writing your own store
//!
//! Implement the primitives of [`LeaseStore`]: [`try_acquire`](LeaseStore::try_acquire)
//! (take the lease if it fits, with a new fencing token), [`refresh`](LeaseStore::refresh)
//! and [`release`](LeaseStore::release) (both only if owner *and* fence still match).
//! Waiting, back-off, renewal, the lost signal, several names at once and cancellation
//! safety are done here. Then run the conformance suite (feature `conformance`) against
//! it in your own tests:
//!
//! ```no_run
//! # #[cfg(feature = "conformance")]
//! # mod demo {
//! # use lock_core::lease::LeaseStore;
//! // In your store's tests, on a multi-threaded runtime:
//! async fn my_store_conforms(store: impl LeaseStore) {
//!     lock_core::lease::conformance::run(&store).await;
//! }
//! # }
//! # fn main() {}
//! ```

use std::time::Duration;

#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub mod dynamodb;
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub mod etcd;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

mod acquire;
mod election;
mod guard;
#[cfg(any(feature = "postgres", feature = "redis", feature = "etcd"))]
mod notify;
mod options;
mod set;
mod store;
mod util;

pub(crate) use acquire::acquire_for_macro;
pub use acquire::{acquire, acquire_many};
pub use election::{Election, Leader, Leadership};
pub use guard::LeaseGuard;
pub use options::LeaseOptions;
pub use set::LeaseSet;
pub use store::{Attempt, AttemptAll, Lease, LeaseInfo, LeaseStore, Request};
pub use util::owner_id;

/// The shortest TTL a lease may have: **10 ms**. A literal `lease_ms` below it is a
/// compile error; a shorter TTL at run time is [`LockError::AcquireFailed`](crate::LockError::AcquireFailed).
///
/// ```
/// assert_eq!(lock_core::lease::MIN_TTL.as_millis(), 10);
/// ```
pub const MIN_TTL: Duration = Duration::from_millis(10);

/// The TTL used when neither the caller nor the store chooses one: **10 s** (renewed
/// every 3.3 s while held).
///
/// ```
/// assert_eq!(lock_core::lease::DEFAULT_TTL.as_secs(), 10);
/// ```
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
