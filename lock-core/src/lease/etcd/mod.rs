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
//!   waiters it counts are as read; else it reads again. A caller that waits has its
//!   etcd lease before it reads, so that the read and the write acting on it go out
//!   back to back.
//! * **Queueing**: a refused request of a caller that waits puts its waiter key, in the
//!   transaction of the refused grant or in one of its own, unconditionally (only the
//!   passes it starts with depend on what happened since its read).
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
//!   refused it is gone, or a holder came) starts with one pass instead of none.
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
//! [`LeaseStore::effective_ttl`] says what a TTL becomes.
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
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use etcd_client;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
};

use super::notify::Hub;
use super::{util, Attempt, Lease, LeaseInfo, LeaseStore, Request, DEFAULT_TTL};
use crate::mode::{Kind, Mode};
use crate::LockError;

mod watch;

/// How many of the oldest waiters have their passes counted (a transaction may hold
/// only so many operations: etcd's default limit is 128).
const COUNTED_WAITERS: usize = 32;

/// How long one request may take before it is sent again (to another member).
const PER_TRY: Duration = Duration::from_millis(1500);

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

/// Configures an [`EtcdStore`]; start with [`EtcdStore::builder`].
///
/// ```
/// # fn main() -> Result<(), lock_core::LockError> {
/// use std::time::Duration;
/// use lock_core::lease::etcd::EtcdStore;
///
/// let store = EtcdStore::builder("etcd://127.0.0.1:2379")
///     .prefix("my-app/locks")
///     .timeout(Duration::from_secs(3))
///     .min_ttl(Duration::from_secs(2))
///     .build()?;
/// assert_eq!(store.prefix(), "my-app/locks");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EtcdStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    default_ttl: Duration,
    min_ttl: Duration,
}

fn config_error(message: String) -> LockError {
    LockError::Store {
        name: String::new(),
        store: "etcd".to_owned(),
        message,
    }
}

/// The `http://host:port` endpoints of an `etcd://h1:p1,h2:p2` URL.
fn parse_url(url: &str) -> Result<Vec<String>, LockError> {
    if url.starts_with("etcds://") {
        return Err(config_error(
            "TLS (`etcds://`) is not supported yet by the etcd store: use `etcd://` (plain \
             HTTP) on a trusted network, or a TLS-terminating proxy on loopback"
                .to_owned(),
        ));
    }
    let Some(rest) = url.strip_prefix("etcd://") else {
        return Err(config_error(
            "an etcd URL starts with `etcd://` (e.g. `etcd://10.0.0.1:2379,10.0.0.2:2379`)"
                .to_owned(),
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut out = Vec::new();
    for host in rest.split(',') {
        let host = host.trim();
        if host.is_empty()
            || host.contains(['/', '@', '?', '#', ' '])
            || host.starts_with(':')
            || host.ends_with(':')
        {
            return Err(config_error(format!(
                "invalid etcd endpoint {host:?}: use `host` or `host:port`, comma-separated \
                 (no credentials, path or query)"
            )));
        }
        let bracketed = host.starts_with('[');
        let has_port = if bracketed {
            host.contains("]:")
        } else {
            host.contains(':')
        };
        if has_port {
            let port = host.rsplit(':').next().unwrap_or("");
            if port.parse::<u16>().is_err() {
                return Err(config_error(format!(
                    "invalid port in etcd endpoint {host:?}"
                )));
            }
            out.push(format!("http://{host}"));
        } else {
            out.push(format!("http://{host}:2379"));
        }
    }
    Ok(out)
}

impl EtcdStoreBuilder {
    /// The key prefix (default `lock-core`, giving `lock-core/{name}/…`): ASCII letters,
    /// digits and `_ - . : /`, at most 128 bytes, not starting or ending with `/`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// How long one operation may take, retries on other members included (default 5 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The TTL of leases whose caller chooses none (default 10 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The shortest etcd lease to ask for, rounded up to whole seconds (default 1 s).
    /// Set it to your cluster's minimum (1.5 election timeouts, rounded up) so that
    /// [`LeaseStore::effective_ttl`] is exact before the first grant; the store also
    /// learns it from the server's answers.
    pub fn min_ttl(mut self, ttl: Duration) -> Self {
        self.min_ttl = ttl;
        self
    }

    /// Checks the settings and builds the store. Connects lazily (first use).
    pub fn build(self) -> Result<EtcdStore, LockError> {
        let ok = !self.prefix.is_empty()
            && self.prefix.len() <= 128
            && !self.prefix.starts_with('/')
            && !self.prefix.ends_with('/')
            && self.prefix.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/')
            });
        if !ok {
            return Err(config_error(format!(
                "invalid key prefix {:?}: use 1 to 128 ASCII letters, digits or `_ - . : /`, \
                 not starting or ending with `/`",
                self.prefix
            )));
        }
        let endpoints = parse_url(&self.url)?;
        let describe = format!(
            "etcd {}",
            endpoints
                .iter()
                .map(|e| e.trim_start_matches("http://"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let options = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(self.timeout.min(PER_TRY))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                endpoints,
                options,
                client: Mutex::new(None),
                generation: AtomicU64::new(0),
                prefix: self.prefix,
                describe,
                default_ttl: self.default_ttl,
                timeout: self.timeout,
                min_secs: AtomicI64::new(secs_up(self.min_ttl).max(1)),
                leases: Mutex::new(HashMap::new()),
                hub: Arc::new(Hub::default()),
            }),
        })
    }
}

/// Whole seconds, rounded up.
fn secs_up(d: Duration) -> i64 {
    let ms = d.as_millis();
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

/// Percent-encodes `/` and `%` (so that names and owners are one key segment each, and
/// the mapping stays injective).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        out.push(match rest.get(i + 1..i + 3)? {
            "25" => '%',
            "2F" => '/',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The name a key `{prefix}/{name}/…` belongs to. `prefix` ends with `/`.
fn name_of_key(prefix: &str, key: &[u8]) -> Option<String> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(prefix)?;
    let (enc, _) = rest.split_once('/')?;
    decode(enc)
}

fn mode_text(mode: Mode) -> String {
    match mode {
        Mode::Shared => "s".to_owned(),
        Mode::Permits(n) => format!("p{n}"),
        _ => "x".to_owned(),
    }
}

fn mode_parse(s: &str) -> Mode {
    match s {
        "s" => Mode::Shared,
        p if p.starts_with('p') => Mode::Permits(p[1..].parse().unwrap_or(1)),
        _ => Mode::Exclusive,
    }
}

fn kind_of(mode: Mode) -> Kind {
    match mode {
        Mode::Permits(n) => Kind::Counted(n),
        _ => Kind::ReadWrite,
    }
}

/// One holder or waiter key of a name.
struct Entry {
    key: Vec<u8>,
    owner: String,
    mode: Mode,
    /// Waiters: how often others were granted the name before them.
    passes: u32,
    /// Holders: the fence; waiters: the ticket (both the key's create revision).
    revision: i64,
    /// The key's mod revision (a waiter's passes are rewritten only if unchanged).
    modified: i64,
    lease: i64,
}

/// The holders and waiters of one name, as read.
#[derive(Default)]
struct State {
    holders: Vec<Entry>,
    waiters: Vec<Entry>,
}

impl State {
    fn parse(name_prefix: &str, kvs: &[KeyValue]) -> State {
        let mut st = State::default();
        for kv in kvs {
            let Ok(key) = std::str::from_utf8(kv.key()) else {
                continue;
            };
            let Some(rest) = key.strip_prefix(name_prefix) else {
                continue;
            };
            let (is_holder, enc) = if let Some(o) = rest.strip_prefix("h/") {
                (true, o)
            } else if let Some(o) = rest.strip_prefix("w/") {
                (false, o)
            } else {
                continue;
            };
            let Some(owner) = decode(enc) else {
                continue;
            };
            let value = std::str::from_utf8(kv.value()).unwrap_or("");
            let mut parts = value.split(' ');
            let mode = mode_parse(parts.next().unwrap_or(""));
            let passes = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let e = Entry {
                key: kv.key().to_vec(),
                owner,
                mode,
                passes,
                revision: kv.create_revision(),
                modified: kv.mod_revision(),
                lease: kv.lease(),
            };
            if is_holder {
                st.holders.push(e);
            } else {
                st.waiters.push(e);
            }
        }
        st.holders.sort_by_key(|e| e.revision);
        st.waiters.sort_by_key(|e| e.revision);
        st
    }

    /// The holder to name in a refusal: an exclusive one, else the oldest.
    fn holder(&self) -> Option<&Entry> {
        self.holders
            .iter()
            .find(|h| h.mode == Mode::Exclusive)
            .or(self.holders.first())
    }
}

/// A waiter's place to take: its key, mode and etcd lease, the revision of the read that
/// refused it, the prefix of the name's holder keys, and what refused it.
struct Place<'a> {
    key: &'a str,
    mode: &'a str,
    lease: i64,
    read_at: i64,
    holders: &'a str,
    blockers: &'a [&'a Entry],
}

impl Place<'_> {
    /// Puts the waiter key if it is absent, unconditionally otherwise (a place that
    /// depended on what refused it could be refused again and again: each release and
    /// new grant in between invalidated it, and the waiter never got into the queue
    /// while another owner took turn after turn). Its passes start at 0 if no turn can
    /// have been granted since the read (every blocker is still there and no holder
    /// came), else at 1: the turn granted between the read and the place is counted.
    fn txn(&self) -> Txn {
        let key = self.key.as_bytes().to_vec();
        let put = |passes: u32| {
            TxnOp::put(
                key.clone(),
                format!("{} {passes}", self.mode),
                Some(PutOptions::new().with_lease(self.lease)),
            )
        };
        let mut unchanged = vec![Compare::create_revision(
            self.holders.as_bytes().to_vec(),
            CompareOp::Less,
            self.read_at + 1,
        )
        .with_prefix()];
        for b in self.blockers {
            unchanged.push(Compare::create_revision(
                b.key.clone(),
                CompareOp::Equal,
                b.revision,
            ));
        }
        let counted = Txn::new()
            .when(unchanged)
            .and_then([put(0)])
            .or_else([put(1)]);
        Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::txn(counted)])
    }
}

fn is_retryable(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) | E::LeaseKeepAliveError(_) | E::WatchError(_) => true,
        E::GRpcStatus(s) => {
            let code = format!("{:?}", s.code());
            matches!(
                code.as_str(),
                "Unavailable" | "DeadlineExceeded" | "Unknown" | "Aborted" | "Cancelled"
            ) || s.message().contains("leader")
        }
        _ => false,
    }
}

fn lease_not_found(e: &etcd_client::Error) -> bool {
    e.to_string().contains("lease not found")
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
        EtcdStoreBuilder {
            url: url.to_owned(),
            prefix: "lock-core".to_owned(),
            timeout: Duration::from_secs(5),
            default_ttl: DEFAULT_TTL,
            min_ttl: Duration::from_secs(1),
        }
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

    fn slot(&self) -> MutexGuard<'_, Option<(u64, Client)>> {
        // Never held across an await; a poisoned slot still holds a usable value.
        self.inner.client.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn table(&self) -> MutexGuard<'_, HashMap<(String, String), (i64, i64)>> {
        self.inner.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared client, made on first use (and again after [`forget`](Self::forget)).
    async fn client(&self, name: &str) -> Result<(u64, Client), LockError> {
        if let Some(c) = self.slot().clone() {
            return Ok(c);
        }
        let made = Client::connect(&self.inner.endpoints, Some(self.inner.options.clone()))
            .await
            .map_err(|e| self.error(name, "connect", &e))?;
        let mut slot = self.slot();
        if let Some(c) = slot.clone() {
            return Ok(c);
        }
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *slot = Some((generation, made.clone()));
        Ok((generation, made))
    }

    fn forget(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            *slot = None;
        }
    }

    /// Runs one request, again (on a fresh client, which may reach another member) after
    /// a failure that another member or a new leader may not have, within the store's
    /// timeout.
    async fn call<T, F, Fut>(&self, name: &str, what: &str, f: F) -> Result<T, LockError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.inner.timeout;
        let mut pause = Duration::from_millis(5);
        let mut fails = 0u32;
        loop {
            let (generation, client) = self.client(name).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let last_error = match tokio::time::timeout(left.min(PER_TRY), f(client)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if is_retryable(&e) => self.error(name, what, &e),
                Ok(Err(e)) => return Err(self.error(name, what, &e)),
                Err(_) => self.message(name, format!("{what}: no answer within {PER_TRY:?}")),
            };
            fails += 1;
            // A client whose connections keep failing is made again: its channel may
            // belong to a runtime that is gone.
            if fails.is_multiple_of(3) {
                self.forget(generation);
            }
            if Instant::now() + pause >= deadline {
                return Err(last_error);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    fn error(&self, name: &str, what: &str, e: &etcd_client::Error) -> LockError {
        self.message(name, format!("{what}: {}", util::with_causes(e)))
    }

    fn message(&self, name: &str, message: String) -> LockError {
        LockError::Store {
            name: name.to_owned(),
            store: self.inner.describe.clone(),
            message,
        }
    }

    /// The keys under `prefix` (a linearizable read).
    async fn range(&self, name: &str, prefix: &str) -> Result<(i64, Vec<KeyValue>), LockError> {
        let key = prefix.as_bytes().to_vec();
        let mut resp = self
            .call(name, "read", |c| {
                let key = key.clone();
                async move {
                    c.kv_client()
                        .get(key, Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((rev, resp.take_kvs()))
    }

    async fn txn(&self, name: &str, what: &str, txn: Txn) -> Result<(bool, i64), LockError> {
        let resp = self
            .call(name, what, |c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((resp.succeeded(), rev))
    }

    /// Renews etcd lease `id` once; its TTL in seconds afterwards (0: it is gone).
    async fn keep_alive(&self, name: &str, id: i64) -> Result<i64, LockError> {
        self.call(name, "renew", |c| async move {
            let once = async {
                let (mut keeper, mut stream) = c.lease_client().keep_alive(id).await?;
                keeper.keep_alive().await?;
                match stream.message().await? {
                    Some(r) => Ok(r.ttl()),
                    None => Err(etcd_client::Error::LeaseKeepAliveError(
                        "keep-alive stream closed".to_owned(),
                    )),
                }
            };
            match once.await {
                // Expired or revoked: not an error, the lease is just gone.
                Err(e) if lease_not_found(&e) => Ok(0),
                other => other,
            }
        })
        .await
    }

    /// A new etcd lease of at least `secs`: its id and granted TTL.
    async fn grant(&self, name: &str, secs: i64) -> Result<(i64, i64), LockError> {
        let resp = self
            .call(name, "grant", |c| async move {
                c.lease_client().grant(secs, None).await
            })
            .await?;
        if !resp.error().is_empty() {
            return Err(self.message(name, format!("grant: {}", resp.error())));
        }
        let granted = resp.ttl();
        // The server raises short TTLs to its minimum: remember it.
        if granted > secs {
            self.inner.min_secs.fetch_max(granted, Ordering::Relaxed);
        }
        Ok((resp.id(), granted))
    }

    /// Revokes etcd lease `id` in the background (its keys go with it).
    fn revoke_later(&self, id: i64) {
        if id == 0 {
            return;
        }
        let store = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = store
                    .call("", "revoke", |c| async move {
                        match c.lease_client().revoke(id).await {
                            Err(e) if lease_not_found(&e) => Ok(()),
                            Err(e) => Err(e),
                            Ok(_) => Ok(()),
                        }
                    })
                    .await;
            });
        }
    }

    /// TTL in seconds for a requested TTL: rounded up, at least the minimum.
    fn secs_for(&self, ttl: Duration) -> i64 {
        secs_up(ttl).max(self.inner.min_secs.load(Ordering::Relaxed))
    }

    /// The etcd lease of (`name`, `owner`): the remembered one, or a new one of `secs`.
    /// Whether it is new.
    async fn lease_for(
        &self,
        name: &str,
        owner: &str,
        secs: i64,
    ) -> Result<(i64, bool), LockError> {
        let key = (name.to_owned(), owner.to_owned());
        if let Some(&(id, _)) = self.table().get(&key) {
            return Ok((id, false));
        }
        let (id, granted) = self.grant(name, secs).await?;
        self.table().insert(key, (id, granted));
        Ok((id, true))
    }

    fn drop_lease(&self, name: &str, owner: &str) -> Option<i64> {
        self.table()
            .remove(&(name.to_owned(), owner.to_owned()))
            .map(|(id, _)| id)
    }

    /// Takes `place` (see [`Place::txn`]). `None`: the key was already there; else
    /// whether nothing was missed (passes start at 0).
    async fn take_place(&self, name: &str, place: Place<'_>) -> Result<Option<bool>, LockError> {
        let txn = place.txn();
        let resp = self
            .call(name, "queue", |c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Ok(None);
        }
        Ok(Some(resp.op_responses().iter().any(
            |r| matches!(r, etcd_client::TxnOpResponse::Txn(t) if t.succeeded()),
        )))
    }

    /// Lists the live holders of the keys `kvs` (under `prefix`, the store's prefix plus `/`).
    async fn infos(&self, prefix: &str, kvs: &[KeyValue]) -> Result<Vec<LeaseInfo>, LockError> {
        let mut by_name: HashMap<String, Vec<&KeyValue>> = HashMap::new();
        for kv in kvs {
            if let Some(name) = name_of_key(prefix, kv.key()) {
                by_name.entry(name).or_default().push(kv);
            }
        }
        let mut out = Vec::new();
        let mut ttls: HashMap<i64, i64> = HashMap::new();
        for (name, kvs) in by_name {
            let owned: Vec<KeyValue> = kvs.into_iter().cloned().collect();
            let st = State::parse(&self.name_prefix(&name), &owned);
            for h in st.holders {
                let left = match ttls.get(&h.lease) {
                    Some(&t) => t,
                    None => {
                        let id = h.lease;
                        let t = self
                            .call(&name, "lease TTL", |c| async move {
                                c.lease_client().time_to_live(id, None).await
                            })
                            .await?
                            .ttl();
                        ttls.insert(id, t);
                        t
                    }
                };
                // -1: expired. etcd rounds what is left down to whole seconds.
                if left < 0 {
                    continue;
                }
                out.push(LeaseInfo::new(
                    name.clone(),
                    h.owner,
                    u64::try_from(h.revision).unwrap_or(0),
                    h.mode,
                    Duration::from_secs(left.unsigned_abs()),
                ));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.fence.cmp(&b.fence)));
        Ok(out)
    }
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EtcdStore")
            .field(&self.inner.describe)
            .finish()
    }
}

impl LeaseStore for EtcdStore {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn default_ttl(&self) -> Duration {
        self.inner.default_ttl
    }

    /// Rounded up to whole seconds, and to at least the store's minimum (see the
    /// [module docs](self)).
    fn effective_ttl(&self, ttl: Duration) -> Duration {
        Duration::from_secs(self.secs_for(ttl).unsigned_abs())
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
        let (name, owner) = (req.name, req.owner);
        let nprefix = self.name_prefix(name);
        let hkey = self.holder_key(name, owner);
        let wkey = self.waiter_key(name, owner);
        let secs = self.secs_for(req.ttl);
        let want = kind_of(req.mode);
        let mode = mode_text(req.mode);
        let mut made = false;
        let holders = format!("{nprefix}h/");
        let waiters = format!("{nprefix}w/");
        for _ in 0..64 {
            let (rev, kvs) = if req.queue {
                // A caller that waits gets its etcd lease (a round of consensus) beside
                // its read, not between the read and the write acting on it: a decision
                // has little time to go stale, and the waiter is in the queue after two
                // round trips.
                let (lease, read) = tokio::try_join!(
                    self.lease_for(name, owner, secs),
                    self.range(name, &nprefix)
                )?;
                made |= lease.1;
                read
            } else {
                self.range(name, &nprefix).await?
            };
            let st = State::parse(&nprefix, &kvs);
            if let Some(h) = st.holders.iter().find(|h| h.owner == owner) {
                // A repeated request: the same lease, renewed.
                if self.keep_alive(name, h.lease).await? > 0 {
                    let before = self
                        .table()
                        .insert((name.to_owned(), owner.to_owned()), (h.lease, secs));
                    match before {
                        Some((id, granted)) if id == h.lease => {
                            self.table()
                                .insert((name.to_owned(), owner.to_owned()), (id, granted));
                        }
                        Some((id, _)) => self.revoke_later(id),
                        None => {}
                    }
                    return Ok(Attempt::Acquired(Lease::new(
                        u64::try_from(h.revision).unwrap_or(0),
                        owner,
                    )));
                }
                continue;
            }
            let mine = st.waiters.iter().find(|w| w.owner == owner);
            let kind = st
                .holders
                .first()
                .or(st.waiters.iter().find(|w| w.owner != owner))
                .map(|e| kind_of(e.mode))
                .unwrap_or(want);
            if kind != want {
                return Ok(Attempt::Mismatch { kind });
            }
            let fits = match req.mode {
                Mode::Shared => st.holders.iter().all(|h| h.mode == Mode::Shared),
                Mode::Permits(n) => st.holders.len() < n as usize,
                _ => st.holders.is_empty(),
            };
            let my_ticket = mine.map(|w| w.revision);
            let due = st.waiters.iter().find(|w| {
                w.owner != owner
                    && w.passes >= 2
                    && my_ticket.is_none_or(|t| w.revision < t)
                    && !(w.mode == Mode::Shared && req.mode == Mode::Shared)
            });
            if fits && due.is_none() {
                let (lease, new) = self.lease_for(name, owner, secs).await?;
                made |= new;
                // The decision stands if no holder came since the read (holders that left
                // only make more room) or, for a shared request beside shared holders, if
                // every holder is still shared; and if the counted waiters are as read.
                let beside = if req.mode == Mode::Shared && !st.holders.is_empty() {
                    Compare::value(holders.as_bytes().to_vec(), CompareOp::Equal, "s")
                } else {
                    Compare::mod_revision(holders.as_bytes().to_vec(), CompareOp::Less, rev + 1)
                };
                let mut when = vec![
                    beside.with_prefix(),
                    Compare::create_revision(hkey.as_bytes().to_vec(), CompareOp::Equal, 0),
                    // No waiter took its place since the read: this grant is a turn it
                    // waited through, so it is read again and counted.
                    Compare::create_revision(waiters.as_bytes().to_vec(), CompareOp::Less, rev + 1)
                        .with_prefix(),
                ];
                let mut then = vec![TxnOp::put(
                    hkey.as_bytes().to_vec(),
                    mode.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )];
                if mine.is_some() {
                    then.push(TxnOp::delete(wkey.as_bytes().to_vec(), None));
                }
                for w in st
                    .waiters
                    .iter()
                    .filter(|w| w.owner != owner)
                    .take(COUNTED_WAITERS)
                {
                    when.push(Compare::mod_revision(
                        w.key.clone(),
                        CompareOp::Equal,
                        w.modified,
                    ));
                    then.push(TxnOp::put(
                        w.key.clone(),
                        format!("{} {}", mode_text(w.mode), w.passes.saturating_add(1)),
                        Some(PutOptions::new().with_ignore_lease()),
                    ));
                }
                let mut txn = Txn::new().when(when).and_then(then);
                if req.queue && mine.is_none() {
                    // Refused after all (another owner was faster): in the queue at once,
                    // in the same round trip, counting the turn that beat us if it did.
                    let place = Place {
                        key: &wkey,
                        mode: &mode,
                        lease,
                        read_at: rev,
                        holders: &holders,
                        blockers: &[],
                    };
                    txn = txn.or_else([TxnOp::txn(place.txn())]);
                }
                match self.txn(name, "acquire", txn).await {
                    Ok((true, fence)) => {
                        return Ok(Attempt::Acquired(Lease::new(
                            u64::try_from(fence).unwrap_or(0),
                            owner,
                        )))
                    }
                    Ok((false, _)) => continue,
                    Err(e) => {
                        // Our etcd lease expired meanwhile (a waiter that stalled): a new one.
                        if e.to_string().contains("lease not found") {
                            self.drop_lease(name, owner);
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
            if req.queue {
                let (lease, new) = self.lease_for(name, owner, secs).await?;
                made |= new;
                if mine.is_none() {
                    let blockers: Vec<&Entry> = if fits {
                        due.into_iter().collect()
                    } else {
                        st.holders.iter().take(COUNTED_WAITERS).collect()
                    };
                    let place = Place {
                        key: &wkey,
                        mode: &mode,
                        lease,
                        read_at: rev,
                        holders: &holders,
                        blockers: &blockers,
                    };
                    match self.take_place(name, place).await {
                        // In the queue with nothing missed: wait for a change.
                        Ok(Some(true)) => {}
                        // In the queue, but what refused us is gone: read again.
                        Ok(Some(false)) | Ok(None) => continue,
                        Err(e) if e.to_string().contains("lease not found") => {
                            self.drop_lease(name, owner);
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                } else if self.keep_alive(name, lease).await? <= 0 {
                    // Our place expired: take a new one.
                    self.drop_lease(name, owner);
                    continue;
                }
            } else if made {
                if let Some(id) = self.drop_lease(name, owner) {
                    self.revoke_later(id);
                }
            }
            let holder = if fits {
                due.map(|w| w.owner.clone())
            } else {
                st.holder().map(|h| h.owner.clone())
            };
            return Ok(Attempt::held(holder));
        }
        Err(self.message(
            name,
            "acquire: the name kept changing under 64 attempts in a row".to_owned(),
        ))
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, LockError> {
        let nprefix = self.name_prefix(name);
        let (_, kvs) = self.range(name, &nprefix).await?;
        let st = State::parse(&nprefix, &kvs);
        Ok(st.holder().map(|h| h.owner.clone()))
    }

    async fn refresh(&self, name: &str, lease: &Lease, ttl: Duration) -> Result<bool, LockError> {
        let hkey = self.holder_key(name, &lease.owner);
        let fence = i64::try_from(lease.fence).unwrap_or(-1);
        let known = self
            .table()
            .get(&(name.to_owned(), lease.owner.clone()))
            .copied();
        let (id, granted) = match known {
            Some(k) => k,
            None => {
                let (_, kvs) = self.range(name, &hkey).await?;
                match kvs.iter().find(|kv| kv.key() == hkey.as_bytes()) {
                    Some(kv) if kv.create_revision() == fence => (kv.lease(), 0),
                    _ => return Ok(false),
                }
            }
        };
        if self.keep_alive(name, id).await? <= 0 {
            self.drop_lease(name, &lease.owner);
            return Ok(false);
        }
        let (_, kvs) = self.range(name, &hkey).await?;
        let held = kvs.iter().any(|kv| {
            kv.key() == hkey.as_bytes() && kv.create_revision() == fence && kv.lease() == id
        });
        if !held {
            return Ok(false);
        }
        let secs = self.secs_for(ttl);
        if granted != 0 && secs > granted {
            // A longer TTL than the etcd lease has: move the key to a new lease.
            let (new_id, new_secs) = self.grant(name, secs).await?;
            let txn = Txn::new()
                .when([Compare::create_revision(
                    hkey.as_bytes().to_vec(),
                    CompareOp::Equal,
                    fence,
                )])
                .and_then([TxnOp::put(
                    hkey.as_bytes().to_vec(),
                    Vec::new(),
                    Some(PutOptions::new().with_lease(new_id).with_ignore_value()),
                )]);
            let (moved, _) = self.txn(name, "refresh", txn).await?;
            if !moved {
                self.revoke_later(new_id);
                return Ok(false);
            }
            self.table()
                .insert((name.to_owned(), lease.owner.clone()), (new_id, new_secs));
            self.revoke_later(id);
        }
        Ok(true)
    }

    async fn release(&self, name: &str, lease: &Lease) -> Result<bool, LockError> {
        let hkey = self.holder_key(name, &lease.owner);
        let fence = i64::try_from(lease.fence).unwrap_or(-1);
        let txn = Txn::new()
            .when([Compare::create_revision(
                hkey.as_bytes().to_vec(),
                CompareOp::Equal,
                fence,
            )])
            .and_then([TxnOp::delete(hkey.as_bytes().to_vec(), None)]);
        let (held, _) = self.txn(name, "release", txn).await?;
        if held {
            if let Some(id) = self.drop_lease(name, &lease.owner) {
                self.revoke_later(id);
            }
        }
        Ok(held)
    }

    async fn leave(&self, name: &str, owner: &str) -> Result<(), LockError> {
        let wkey = self.waiter_key(name, owner);
        let key = wkey.as_bytes().to_vec();
        self.call(name, "leave", |c| {
            let key = key.clone();
            async move { c.kv_client().delete(key, None).await }
        })
        .await?;
        if let Some(id) = self.drop_lease(name, owner) {
            self.revoke_later(id);
        }
        Ok(())
    }

    async fn wait_for_change(&self, name: &str, until: Instant) {
        let hub = &self.inner.hub;
        hub.ensure_listener(|weak| {
            watch::run(
                weak,
                self.inner.endpoints.clone(),
                self.inner.options.clone(),
                format!("{}/", self.inner.prefix),
            )
        });
        hub.wait(name, until).await;
    }

    fn wakes_waiters(&self) -> bool {
        self.inner.hub.is_connected()
    }

    async fn leases(&self) -> Result<Vec<LeaseInfo>, LockError> {
        let prefix = format!("{}/", self.inner.prefix);
        let (_, kvs) = self.range("", &prefix).await?;
        self.infos(&prefix, &kvs).await
    }

    async fn leases_of(&self, name: &str) -> Result<Vec<LeaseInfo>, LockError> {
        let prefix = format!("{}/", self.inner.prefix);
        let (_, kvs) = self.range(name, &self.name_prefix(name)).await?;
        self.infos(&prefix, &kvs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("etcd://a:1,b,[::1]:3").unwrap(),
            ["http://a:1", "http://b:2379", "http://[::1]:3"]
        );
        assert!(parse_url("etcds://a:1")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(parse_url("http://a:1").is_err());
        assert!(parse_url("etcd://user:pw@a:1").is_err());
        assert!(parse_url("etcd://a:x").is_err());
        assert!(parse_url("etcd://").is_err());
    }

    #[test]
    fn keys_round_trip() {
        for name in ["plain", "a/b", "100%", "%2F", ""] {
            let key = format!("lock-core/{}/h/x", encode(name));
            assert_eq!(
                name_of_key("lock-core/", key.as_bytes()).as_deref(),
                Some(name)
            );
        }
        assert_ne!(encode("/"), encode("%2F"));
    }

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(secs_up(Duration::from_millis(1)), 1);
        assert_eq!(secs_up(Duration::from_millis(1000)), 1);
        assert_eq!(secs_up(Duration::from_millis(1001)), 2);
        let s = EtcdStore::builder("etcd://127.0.0.1:1")
            .min_ttl(Duration::from_millis(1500))
            .build()
            .unwrap();
        assert_eq!(
            s.effective_ttl(Duration::from_millis(100)),
            Duration::from_secs(2)
        );
        assert_eq!(
            s.effective_ttl(Duration::from_millis(2500)),
            Duration::from_secs(3)
        );
    }
}
