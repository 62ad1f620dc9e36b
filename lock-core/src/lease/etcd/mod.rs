//! The etcd lease store: leases on a Raft cluster, for when the locks must outlive any one
//! server.
//!
//! Every holder is a key `lock-core/{name}/h/{owner}` attached to an etcd lease of its
//! own, and every waiter a key `lock-core/{name}/w/{owner}` (characters `/` and `%` of
//! names and owners are percent-encoded). etcd deletes the keys of a lease that is not
//! kept alive, so a holder or waiter that dies leaves within its TTL, with no clock but
//! the cluster's.
//!
//! * **Acquire** reads the keys of the name, decides as the other stores do (the request
//!   fits beside the live holders, and no waiter that is *due* stands ahead of it), and
//!   writes the holder key in one transaction that only applies if the decision still
//!   stands: no holder came since the read (for a shared request beside shared holders:
//!   every holder is still shared), no waiter took its place since the read, and the
//!   waiters it counts are as read; else it reads again. A caller that waits gets its
//!   etcd lease beside its read, so that the read and the write acting on it go out
//!   back to back.
//! * **Queueing**: a refused request of a caller that waits puts its waiter key,
//!   unconditionally (only the passes it starts with depend on what happened since its
//!   read): in a transaction of its own, or, for an exclusive or counted request that
//!   another owner beat to a grant, in that same transaction.
//! * **Fences** are the revision at which the holder key was created (its
//!   `create_revision`). etcd revisions are cluster-wide, strictly increasing and
//!   durable (Raft-replicated, kept across member restarts and leader changes), so
//!   fences strictly increase per name across holders, shapes, releases, restarts and
//!   failovers. Fences are large numbers (every write to the cluster moves the revision)
//!   and not consecutive.
//! * **Refresh** keeps the holder's etcd lease alive and checks that the key is still
//!   there with the same fence; **release** deletes the key if its fence still matches
//!   and revokes the etcd lease.
//! * **Fairness**: waiters are served FIFO by the revision of their waiter key; a waiter
//!   that others were granted the name before twice is due, and nobody else is granted
//!   the name before it, so while one owner waits another takes at most three turns in
//!   a row (the pass counts of the 32 oldest waiters are kept; those behind them move up
//!   as the queue moves). Every grant counts against every waiter in the queue when it
//!   applies: a waiter that took its place after the grant's read makes the grant read
//!   again. A waiter whose place comes after a turn was granted since its read (what
//!   refused it is gone, or a holder came) starts with one pass instead of none. Turns
//!   are counted from a request's read: an owner that has not reached the cluster yet
//!   (a process the machine schedules late) is not waiting, and if two turns or more
//!   are granted between its read and its place, only one of them is counted.
//!
//! # TTL: whole seconds, rounded up
//!
//! etcd leases have a TTL in whole seconds and a server-side minimum (1.5 election
//! timeouts, rounded up: 2 s for a cluster with the default 1 s election timeout). A
//! `lease_ms` is rounded **up** to whole seconds, and to at least
//! [`EtcdStoreBuilder::min_ttl`] (1 s by default); the server lengthens it further to
//! its minimum when needed. A lease is never kept for *less* than asked:
//! [`LeaseGuard::remaining`](super::LeaseGuard::remaining) still counts from the TTL you
//! asked for, so a holder stops trusting its lease no later than it would with any other
//! store, while a holder that died keeps the name until the rounded-up TTL has run out.
//! [`LeaseStore::effective_ttl`](super::LeaseStore::effective_ttl) says what a TTL
//! becomes.
//!
//! # Failures
//!
//! The client talks to every endpoint of the URL and sends each request to one that
//! answers; a request that meets a dead member or a leader election is repeated on
//! another (all are safe to repeat: acquire recognises its own owner). Requests require
//! a leader, so a member cut off from the majority refuses rather than answers stale.
//! A lease held while a minority of members fails stays held (renewals go to the
//! others); when the majority is lost, renewals fail and the lease is reported lost
//! ([`LeaseGuard::lost`](super::LeaseGuard::lost)) before its TTL has run out.
//!
//! # Wake-ups
//!
//! The store keeps one watch per process on its key prefix (made when a first waiter
//! waits, remade after it dies); the deletion of a holder or waiter key wakes the
//! waiters of that name at once. A deletion missed while the watch is down only costs
//! latency: waiters retry on a back-off of their own (every 50 ms at most meanwhile).
//!
//! Plain `http://` only: `etcds://` (TLS) is refused with an error for now. The client
//! crate is re-exported as [`etcd_client`](https://docs.rs/etcd-client/0.21). Building
//! it needs `protoc` (Debian: `protobuf-compiler`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), lock_core::LockError> {
//! use lock_core::lease::{self, LeaseOptions, etcd::EtcdStore};
//!
//! let store = EtcdStore::new("etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379")?;
//! let guard = lease::acquire(&store, "billing", LeaseOptions::new()).await?;
//! // ... work, passing guard.fence() along with every write ...
//! guard.release().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use etcd_client;

use etcd_client::{Client, ConnectOptions};

use super::notify::Hub;
use super::DEFAULT_TTL;
use crate::LockError;

mod acquire;
mod client;
mod config;
mod keys;
mod listing;
mod state;
mod store;
mod watch;

pub use config::EtcdStoreBuilder;

use keys::encode;

/// A lease store on an etcd cluster. Cheap to clone (clones share the connections, the
/// watch and the table of etcd leases).
///
/// See the [module docs](self) for the layout, the TTL rounding and failures.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    options: ConnectOptions,
    /// The shared client and its generation (remade after it fails).
    client: Mutex<Option<(u64, Client)>>,
    generation: AtomicU64,
    prefix: String,
    describe: String,
    default_ttl: Duration,
    timeout: Duration,
    /// The shortest TTL in seconds: the builder's, raised to what the server granted.
    min_secs: AtomicI64,
    /// The etcd lease of each (name, owner) this process holds or waits with: id and
    /// TTL in seconds.
    leases: Mutex<HashMap<(String, String), (i64, i64)>>,
    hub: Arc<Hub>,
}

impl EtcdStore {
    /// A store on the etcd cluster at `url` (`etcd://host1:2379,host2:2379,…`; the port
    /// defaults to 2379) with default settings. Connects lazily: errors in reaching the
    /// cluster show on first use.
    ///
    /// ```
    /// # fn main() -> Result<(), lock_core::LockError> {
    /// use lock_core::lease::etcd::EtcdStore;
    /// let store = EtcdStore::new("etcd://127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793")?;
    /// assert_eq!(
    ///     store.endpoints(),
    ///     ["http://127.0.0.1:23791", "http://127.0.0.1:23792", "http://127.0.0.1:23793"]
    /// );
    /// assert!(EtcdStore::new("etcds://127.0.0.1:2379").is_err()); // TLS: not yet
    /// # Ok(()) }
    /// ```
    pub fn new(url: &str) -> Result<Self, LockError> {
        Self::builder(url).build()
    }

    /// A builder for a store on the etcd cluster at `url`.
    pub fn builder(url: &str) -> EtcdStoreBuilder {
        EtcdStoreBuilder::new(url, DEFAULT_TTL)
    }

    /// The endpoints the client talks to (`http://host:port` each).
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The key prefix (`lock-core` by default).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The key of the holder `owner` of `name`; its `create_revision` is the fence.
    ///
    /// ```
    /// # fn main() -> Result<(), lock_core::LockError> {
    /// let store = lock_core::lease::etcd::EtcdStore::new("etcd://127.0.0.1:2379")?;
    /// assert_eq!(store.holder_key("jobs/a", "h/1/x/2"), "lock-core/jobs%2Fa/h/h%2F1%2Fx%2F2");
    /// assert_eq!(store.waiter_key("jobs", "me"), "lock-core/jobs/w/me");
    /// # Ok(()) }
    /// ```
    pub fn holder_key(&self, name: &str, owner: &str) -> String {
        format!("{}h/{}", self.name_prefix(name), encode(owner))
    }

    /// The key of the waiter `owner` in the queue of `name`.
    pub fn waiter_key(&self, name: &str, owner: &str) -> String {
        format!("{}w/{}", self.name_prefix(name), encode(owner))
    }

    /// The prefix of every key of `name` (`lock-core/{name}/`).
    pub fn name_prefix(&self, name: &str) -> String {
        format!("{}/{}/", self.inner.prefix, encode(name))
    }

    /// How many names this process's waiters wait for right now (for tests: no entry
    /// is left behind per name).
    #[doc(hidden)]
    pub fn waiting_names(&self) -> usize {
        self.inner.hub.waiting_names()
    }
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EtcdStore")
            .field(&self.inner.describe)
            .finish()
    }
}
