//! What a lease store is: the [`LeaseStore`] trait and the values that cross it.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::mode::{Kind, Mode};
use crate::LockError;

use super::DEFAULT_TTL;

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
    /// The fencing token: strictly greater than that of every earlier lease on the name,
    /// in every mode.
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

/// One attempt to take a lease, as [`LeaseStore::try_acquire`] receives it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Request<'a> {
    /// The lock's name.
    pub name: &'a str,
    /// Who asks: unique per acquisition (see [`owner_id`](super::owner_id)), and the same
    /// for every attempt of one acquisition (so a store can keep its place in a queue).
    pub owner: &'a str,
    /// The lease's time to live, should it be granted.
    pub ttl: Duration,
    /// The mode: exclusive, shared, or one of `N` permits.
    pub mode: Mode,
    /// Whether the caller will wait if it is refused: a store with a queue records it
    /// (for the order of turns); `false` for a single attempt (`timeout = 0`).
    pub queue: bool,
}

impl<'a> Request<'a> {
    /// An exclusive request (for tests and simple stores).
    pub fn exclusive(name: &'a str, owner: &'a str, ttl: Duration) -> Self {
        Request {
            name,
            owner,
            ttl,
            mode: Mode::Exclusive,
            queue: false,
        }
    }

    /// The same request in `mode`.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The same request, queued if refused.
    pub fn queued(mut self, queue: bool) -> Self {
        self.queue = queue;
        self
    }
}

/// The answer of one [`LeaseStore::try_acquire`] call.
///
/// ```
/// use lock_core::lease::{Attempt, Lease};
/// let won = Attempt::Acquired(Lease::new(1, "me"));
/// let lost = Attempt::held(Some("someone/42/x/1".into()));
/// assert!(matches!(won, Attempt::Acquired(_)));
/// assert!(matches!(lost, Attempt::Held { .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attempt {
    /// The lease was free (or expired, or fits beside its holders) and is now ours.
    Acquired(Lease),
    /// Held in a way this request has to wait for.
    #[non_exhaustive]
    Held {
        /// A current holder's owner string, if the store reported it.
        holder: Option<String>,
        /// When the earliest current holder's lease ends unless renewed: a good moment to
        /// try again if no wake-up comes first.
        retry_in: Option<Duration>,
    },
    /// The name is in use as another kind of lock right now.
    Mismatch {
        /// What it is.
        kind: Kind,
    },
}

impl Attempt {
    /// `Held`, with the holder if known.
    pub fn held(holder: Option<String>) -> Attempt {
        Attempt::Held {
            holder,
            retry_in: None,
        }
    }

    /// `Held`, with the holder and the time until its lease ends.
    pub fn held_until(holder: Option<String>, retry_in: Option<Duration>) -> Attempt {
        Attempt::Held { holder, retry_in }
    }
}

/// The answer of one [`LeaseStore::try_acquire_all`] call: every lease, in the order of
/// the requests, or the index of the first request that has to wait and its [`Attempt`]
/// (nothing granted).
///
/// ```
/// use lock_core::lease::{Attempt, AttemptAll, Lease};
/// let both: AttemptAll = Ok(vec![Lease::new(3, "me"), Lease::new(9, "me")]);
/// let second_busy: AttemptAll = Err((1, Attempt::held(None)));
/// assert!(both.is_ok() && second_busy.is_err());
/// ```
pub type AttemptAll = Result<Vec<Lease>, (usize, Attempt)>;

/// One live lease, as [`LeaseStore::leases`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The lock's name.
    pub name: String,
    /// The holder's owner string (`host/pid/nonce/n` for lock-core's own owners).
    pub owner: String,
    /// The lease's fencing token.
    pub fence: u64,
    /// The mode it is held in.
    pub mode: Mode,
    /// How long it stays valid unless renewed.
    pub expires_in: Duration,
}

impl LeaseInfo {
    /// A listing entry, for store implementations.
    pub fn new(
        name: impl Into<String>,
        owner: impl Into<String>,
        fence: u64,
        mode: Mode,
        expires_in: Duration,
    ) -> Self {
        LeaseInfo {
            name: name.into(),
            owner: owner.into(),
            fence,
            mode,
            expires_in,
        }
    }
}

/// A store of leases: PostgreSQL (`postgres::PostgresStore`, cargo feature `postgres`),
/// Redis (`redis::RedisStore`, feature `redis`), etcd (`etcd::EtcdStore`, feature
/// `etcd`), DynamoDB (`dynamodb::DynamoDbStore`, feature `dynamodb`), or your own.
///
/// A store is a cheap handle (clone it freely: clones share connections); the lease
/// machinery keeps a clone in the background task that renews a lease. The primitives
/// must each be atomic on the store side; everything else (waiting, timeouts, renewal,
/// the lost signal, release on drop, cleanup after cancellation, several names at once)
/// is provided by [`acquire`](super::acquire) and [`LeaseGuard`](super::LeaseGuard).
/// Run the [conformance suite](super) (feature `conformance`) against your store.
///
/// Only [`describe`](Self::describe), [`try_acquire`](Self::try_acquire),
/// [`refresh`](Self::refresh) and [`release`](Self::release) are required. A store that
/// can wake waiters when a lease is released implements
/// [`wait_for_change`](Self::wait_for_change); otherwise waiters poll with back-off.
///
/// Errors should be [`LockError::Store`] naming the lock and the store (never
/// credentials).
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use std::time::{Duration, Instant};
/// use lock_core::lease::{self, Attempt, Lease, LeaseOptions, LeaseStore, Request};
/// use lock_core::LockError;
///
/// /// A toy in-memory store of exclusive leases (one process only: for tests).
/// #[derive(Clone, Default)]
/// struct MemStore(Arc<Mutex<(u64, HashMap<String, (Lease, Instant)>)>>);
///
/// impl LeaseStore for MemStore {
///     fn describe(&self) -> String { "memory".into() }
///
///     async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
///         let mut s = self.0.lock().unwrap();
///         let now = Instant::now();
///         if let Some((l, exp)) = s.1.get(req.name) {
///             if *exp > now && l.owner == req.owner {
///                 return Ok(Attempt::Acquired(l.clone())); // a repeated request
///             }
///             if *exp > now {
///                 return Ok(Attempt::held(Some(l.owner.clone())));
///             }
///         }
///         s.0 += 1;
///         let lease = Lease::new(s.0, req.owner);
///         s.1.insert(req.name.to_owned(), (lease.clone(), now + req.ttl));
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

    /// How long a lease asked for with `ttl` really lasts on this store unless renewed:
    /// never less than `ttl`. A store whose leases have a coarser grain or a minimum
    /// rounds up (the etcd store: whole seconds). The default: `ttl` itself.
    ///
    /// The guard keeps counting from the TTL asked for
    /// ([`LeaseGuard::remaining`](super::LeaseGuard::remaining)); this is how long a
    /// holder that died keeps the name (the conformance suite waits this long for an
    /// expiry).
    fn effective_ttl(&self, ttl: Duration) -> Duration {
        ttl
    }

    /// Takes leases on several names at once in one atomic step of the store, all or
    /// nothing, if the store can (a transaction); `None` (the default) if it cannot, and
    /// the names are then asked one by one with [`try_acquire`](Self::try_acquire), the
    /// ones granted given back when one is refused.
    ///
    /// `reqs` are sorted by name, one owner, mode and TTL for all. The answer is either
    /// every lease, in the order of `reqs`, or the index of the first request that has
    /// to wait and its [`Attempt`] (`Held` or `Mismatch`), with nothing granted; a store
    /// with a queue records that request (if `queue` is set) as `try_acquire` would.
    /// A repeated request (its answer was lost) must be answered with the same leases.
    fn try_acquire_all(
        &self,
        reqs: &[Request<'_>],
    ) -> impl Future<Output = Option<Result<AttemptAll, LockError>>> + Send {
        let _ = reqs;
        std::future::ready(None)
    }

    /// Takes a lease on `req.name` in `req.mode` for `req.owner` with time to live
    /// `req.ttl` if it fits now (no live exclusive holder for a shared request, no live
    /// holder at all for an exclusive one, fewer than `N` for one of `N` permits),
    /// issuing a fencing token greater than every earlier one for the name. Must be a
    /// single atomic step on the store. Never waits for the lease to be free.
    ///
    /// `req.owner` is unique per acquisition (see [`owner_id`](super::owner_id)) and
    /// stays the same across the attempts of one acquisition. A request of an owner that
    /// holds a live lease on the name must be answered with that same lease (it is a
    /// request repeated after its answer was lost). A store that keeps a queue records a
    /// refused request with `req.queue` set. A store that supports only exclusive leases
    /// answers other modes with an error.
    fn try_acquire(
        &self,
        req: &Request<'_>,
    ) -> impl Future<Output = Result<Attempt, LockError>> + Send;

    /// Extends a live lease to `ttl` from now, if it is still held with exactly this owner
    /// and fence. `Ok(false)` means it was not (expired, released or taken over).
    fn refresh(
        &self,
        name: &str,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, LockError>> + Send;

    /// Gives up a live lease if it is still held with exactly this owner and fence,
    /// keeping what the store needs for later fences to stay greater, and wakes waiters
    /// (see [`wait_for_change`](Self::wait_for_change)). `Ok(false)` means it was not held
    /// any more.
    fn release(
        &self,
        name: &str,
        lease: &Lease,
    ) -> impl Future<Output = Result<bool, LockError>> + Send;

    /// Who holds a live lease on `name`, if the store can tell (an owner string). Only
    /// used to name the holder in `Busy` and `Timeout` errors when
    /// [`try_acquire`](Self::try_acquire) did not say; the default knows nothing.
    fn holder(&self, name: &str) -> impl Future<Output = Result<Option<String>, LockError>> + Send {
        let _ = name;
        std::future::ready(Ok(None))
    }

    /// Takes `owner` out of the queue of `name` (it stopped waiting: timed out or
    /// cancelled). Stores without a queue do nothing (the default); a queued waiter that
    /// dies leaves it when its entry's TTL runs out.
    fn leave(&self, name: &str, owner: &str) -> impl Future<Output = Result<(), LockError>> + Send {
        let _ = (name, owner);
        std::future::ready(Ok(()))
    }

    /// Completes when the leases of `name` may have changed (a release, a holder leaving
    /// the queue) or at `until`, whichever is first. Waiters call it between attempts:
    /// the future is made and polled once *before* the attempt it waits after, so it
    /// must register its interest on that first poll (a notification that arrives
    /// between the attempt and the wait then still counts).
    /// The default just sleeps until `until` (waiters then poll with back-off); stores
    /// with notifications (PostgreSQL `LISTEN`, Redis pub/sub) wake waiters at once. A lost
    /// notification must only cost latency, never correctness.
    fn wait_for_change(&self, name: &str, until: Instant) -> impl Future<Output = ()> + Send {
        let _ = name;
        tokio::time::sleep_until(until.into())
    }

    /// Whether [`wait_for_change`](Self::wait_for_change) wakes waiters right now (a
    /// notification channel is up). Waiters then rest longer between attempts (the
    /// back-off is only a safety net); else they poll every few milliseconds. The
    /// default: no.
    fn wakes_waiters(&self) -> bool {
        false
    }

    /// Every live lease the store holds (for `lock-core status` and listings).
    /// The default says the store cannot list its leases.
    fn leases(&self) -> impl Future<Output = Result<Vec<LeaseInfo>, LockError>> + Send {
        let store = self.describe();
        async move {
            Err(LockError::Store {
                name: String::new(),
                store: store.clone(),
                message: format!(
                    "store `{store}` cannot list its leases (implement `LeaseStore::leases`)"
                ),
            })
        }
    }

    /// The live leases of one name (for [`Election::leader`](super::Election::leader)).
    /// The default filters [`leases`](Self::leases).
    fn leases_of(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<LeaseInfo>, LockError>> + Send {
        let all = self.leases();
        let name = name.to_owned();
        async move { Ok(all.await?.into_iter().filter(|l| l.name == name).collect()) }
    }
}
