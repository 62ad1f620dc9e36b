//! The Redis lease store: fast, best-effort.
//!
//! Each name is two keys sharing one hash tag, so they land in the same slot:
//! `lock:{name}` holds the name's state (its live holders, its queue of waiters and its
//! kind, as one small JSON document that expires a second after its last entry and is
//! deleted when the name is idle), and `lock:{name}:fence` is a counter that never
//! expires. Lua scripts, each atomic on the server and timed by the server's clock
//! (`TIME`), do every step: acquire (in any shape, with the same queue and turn rule
//! as the PostgreSQL store: while one owner waits, another takes at most three turns in
//! a row), refresh and release (both compare owner *and* fence), leave (a waiter that
//! gives up) and list.
//!
//! (Characters `{`, `}` and `%` in a name are percent-encoded in the key, so every name
//! maps to its own hash tag.)
//!
//! # Wake-ups
//!
//! Release (and leave, and an acquire that found an expired holder) `PUBLISH`es the
//! name on the channel `lock:wake` when someone waits. The store keeps one subscribed
//! connection per process (made when a first waiter waits, remade after it dies) and
//! wakes the waiters of that name at once. A message lost while that connection is down
//! only costs latency: waiters also retry when the holder's lease would run out and on
//! a back-off of their own (every 50 ms at most while the subscription is down).
//!
//! # When this is safe — read this
//!
//! This store is correct only against **one Redis instance without failover**.
//! Replication is asynchronous: if a primary fails over to a replica that had not yet
//! received a write, two holders can both "have" the lease. And the fence counter lives
//! in Redis memory: if Redis loses its data (restart without persistence, `FLUSHALL`,
//! eviction under `maxmemory`, failover to a lagging replica), **fences start again from
//! 1**, so a protected resource that kept the highest fence would refuse every new
//! holder (or, if it was reset too, accept stale ones). There is deliberately no
//! Redlock: it does not make these guarantees any better. Use the
//! [PostgreSQL store](crate::lease::postgres) when the lock guards correctness, and this
//! one when an occasional double run is merely wasteful. Scripts need Redis 5 or newer
//! (they read `TIME` before writing).
//!
//! Connections use the `redis` crate's Tokio connection manager, which reconnects after
//! a dropped connection; a script that meets a dropped connection is sent once more on a
//! fresh one (every script is safe to repeat: acquire recognises its own owner string).
//! The connection is made on first use and remade if it dies for good, for example when
//! the Tokio runtime that made it shuts down. The crate is re-exported as [`redis`](https://docs.rs/redis/1).
//!
//! ```no_run
//! # async fn demo() -> Result<(), lock_core::LockError> {
//! use lock_core::lease::{self, LeaseOptions, redis::RedisStore};
//!
//! let store = RedisStore::new("redis://127.0.0.1:6379")?;
//! let guard = lease::acquire(&store, "cache-warmup", LeaseOptions::new()).await?;
//! // ... work, passing guard.fence() along with every write ...
//! guard.release().await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use ::redis;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, FromRedisValue, RedisError, ScriptInvocation, Value};

use super::notify::Hub;
use super::{util, Attempt, Lease, LeaseInfo, LeaseStore, Request, DEFAULT_TTL};
use crate::mode::{Kind, Mode};
use crate::LockError;

mod listen;
mod scripts;

use scripts::Scripts;

/// A lease store on one Redis instance. Cheap to clone (clones share the connection
/// and the subscription).
///
/// See the [module docs](self) for when it is safe to rely on.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: ConnectionManagerConfig,
    /// The shared connection and its generation (see [`RedisStore::conn`]).
    conn: Mutex<Option<(u64, ConnectionManager)>>,
    generation: AtomicU64,
    prefix: String,
    channel: String,
    describe: String,
    default_ttl: Duration,
    scripts: Scripts,
    hub: Arc<Hub>,
}

/// Configures a [`RedisStore`]; start with [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    default_ttl: Duration,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("default_ttl", &self.default_ttl)
            .finish_non_exhaustive()
    }
}

fn config_error(message: String) -> LockError {
    LockError::Store {
        name: String::new(),
        store: "redis".to_owned(),
        message,
    }
}

impl RedisStoreBuilder {
    /// The key prefix (default `lock`, giving `lock:{name}`): ASCII letters, digits and
    /// `_ - . :`, at most 64 bytes.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// How long to wait for a connection or an answer (default 5 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The TTL of leases whose caller chooses none (default 10 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Checks the settings and builds the store. Connects lazily (first use).
    pub fn build(self) -> Result<RedisStore, LockError> {
        let ok = !self.prefix.is_empty()
            && self.prefix.len() <= 64
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !ok {
            return Err(config_error(format!(
                "invalid key prefix {:?}: use 1 to 64 ASCII letters, digits or `_ - . :`",
                self.prefix
            )));
        }
        let client = Client::open(self.url.as_str())
            .map_err(|e| config_error(format!("invalid Redis URL: {}", e.kind_text())))?;
        let info = client.get_connection_info();
        let describe = format!("redis {}/{}", info.addr(), info.redis_settings().db());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(200));
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                config,
                conn: Mutex::new(None),
                generation: AtomicU64::new(0),
                channel: format!("{}:wake", self.prefix),
                prefix: self.prefix,
                describe,
                default_ttl: self.default_ttl,
                scripts: Scripts::new(),
                hub: Arc::new(Hub::default()),
            }),
        })
    }
}

trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for ::redis::RedisError {
    /// The error without the detail text, which for URL errors may echo the URL.
    fn kind_text(&self) -> String {
        format!("{:?}", self.kind())
    }
}

impl RedisStore {
    /// A store on the Redis server at `url` (`redis://host:port/db`) with default
    /// settings. Connects lazily: errors in reaching the server show on first use.
    pub fn new(url: &str) -> Result<Self, LockError> {
        Self::builder(url).build()
    }

    /// A builder for a store on the Redis server at `url`.
    pub fn builder(url: &str) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.to_owned(),
            prefix: "lock".to_owned(),
            timeout: Duration::from_secs(5),
            default_ttl: DEFAULT_TTL,
        }
    }

    /// The key that holds the state of `name` (`lock:{name}` with the default prefix).
    ///
    /// ```
    /// # fn main() -> Result<(), lock_core::LockError> {
    /// let store = lock_core::lease::redis::RedisStore::new("redis://127.0.0.1:6379")?;
    /// assert_eq!(store.lease_key("jobs"), "lock:{jobs}");
    /// assert_eq!(store.fence_key("jobs"), "lock:{jobs}:fence");
    /// assert_eq!(store.lease_key("a}b"), "lock:{a%7Db}");
    /// assert_eq!(store.channel(), "lock:wake");
    /// # Ok(()) }
    /// ```
    pub fn lease_key(&self, name: &str) -> String {
        format!("{}:{{{}}}", self.inner.prefix, encode(name))
    }

    /// The key that holds the fence counter of `name` (`lock:{name}:fence`).
    pub fn fence_key(&self, name: &str) -> String {
        format!("{}:{{{}}}:fence", self.inner.prefix, encode(name))
    }

    /// The channel releases are published on (`lock:wake`; the message is the name).
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// How many names this process's waiters wait for right now (for tests: no entry
    /// is left behind per name).
    #[doc(hidden)]
    pub fn waiting_names(&self) -> usize {
        self.inner.hub.waiting_names()
    }

    fn slot(&self) -> MutexGuard<'_, Option<(u64, ConnectionManager)>> {
        // Never held across an await; a poisoned slot still holds a usable value.
        crate::sync::lock_std(&self.inner.conn)
    }

    /// The shared connection, made on first use. Its I/O is driven by a task on the
    /// runtime that made it; if that connection dies for good (for example because that
    /// runtime shut down), [`forget`](Self::forget) drops it and the next call makes a
    /// new one on the caller's runtime.
    async fn conn(&self, name: &str) -> Result<(u64, ConnectionManager), LockError> {
        if let Some(c) = self.slot().clone() {
            return Ok(c);
        }
        let made = ConnectionManager::new_with_config(
            self.inner.client.clone(),
            self.inner.config.clone(),
        )
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

    /// Runs a script; after a connection-level failure, once more on a fresh connection
    /// (every script is safe to repeat: acquire recognises its own owner, refresh and
    /// release compare-and-set, leave is idempotent).
    async fn run<T: FromRedisValue>(
        &self,
        name: &str,
        what: &str,
        call: &ScriptInvocation<'_>,
    ) -> Result<T, LockError> {
        let mut tries = 0;
        loop {
            let (generation, mut conn) = self.conn(name).await?;
            match call.invoke_async(&mut conn).await {
                Ok(v) => return Ok(v),
                Err(e) if is_connection_error(&e) => {
                    self.forget(generation);
                    tries += 1;
                    if tries == 2 {
                        return Err(self.error(name, what, &e));
                    }
                }
                Err(e) => return Err(self.error(name, what, &e)),
            }
        }
    }

    fn error(&self, name: &str, what: &str, e: &::redis::RedisError) -> LockError {
        LockError::Store {
            name: name.to_owned(),
            store: self.inner.describe.clone(),
            message: format!("{what}: {}", util::with_causes(e)),
        }
    }

    fn bad_answer(&self, name: &str, what: &str, got: &Value) -> LockError {
        LockError::Store {
            name: name.to_owned(),
            store: self.inner.describe.clone(),
            message: format!("{what}: unexpected answer {got:?}"),
        }
    }

    /// The live leases of the state key `key` of `name`.
    async fn list_key(&self, name: &str, key: String) -> Result<Vec<LeaseInfo>, LockError> {
        let call = self.inner.scripts.list.key(key);
        let v: Vec<Value> = self.run(name, "list", &call).await?;
        let mut it = v.into_iter();
        let Some(kind) = it.next() else {
            return Ok(Vec::new());
        };
        let kind = i64::from_redis_value(kind).unwrap_or(0);
        let mut out = Vec::new();
        let rest: Vec<Value> = it.collect();
        for chunk in rest.chunks(4) {
            let [o, f, m, e] = chunk else {
                return Err(self.bad_answer(name, "list", &Value::Array(chunk.to_vec())));
            };
            let owner = String::from_redis_value(o.clone()).unwrap_or_default();
            let fence = u64::from_redis_value(f.clone()).unwrap_or(0);
            let mode = String::from_redis_value(m.clone()).unwrap_or_default();
            let left = u64::from_redis_value(e.clone()).unwrap_or(0);
            out.push(LeaseInfo::new(
                name,
                owner,
                fence,
                mode_of(&mode, kind),
                Duration::from_millis(left),
            ));
        }
        out.sort_by_key(|l| l.fence);
        Ok(out)
    }
}

/// Percent-encodes the characters that would break the hash tag (and `%` itself, so the
/// mapping stays injective).
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    out
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// The name a state key `prefix:{enc}` belongs to, if it is one.
fn decode_key<'k>(prefix: &str, key: &'k str) -> Option<String> {
    let enc: &'k str = key
        .strip_prefix(prefix)?
        .strip_prefix(":{")?
        .strip_suffix('}')?;
    if enc.contains('{') || enc.contains('}') {
        return None;
    }
    let mut out = String::with_capacity(enc.len());
    let mut rest = enc;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "25" => '%',
            "7B" => '{',
            "7D" => '}',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn mode_param(mode: Mode) -> (&'static str, u32) {
    match mode {
        Mode::Shared => ("s", 0),
        Mode::Permits(n) => ("p", n),
        _ => ("x", 0),
    }
}

fn mode_of(letter: &str, kind: i64) -> Mode {
    match letter {
        "s" => Mode::Shared,
        "p" => Mode::Permits(u32::try_from(kind).unwrap_or(0)),
        _ => Mode::Exclusive,
    }
}

fn kind_of(kind: i64) -> Kind {
    match u32::try_from(kind) {
        Ok(n) if n > 0 => Kind::Counted(n),
        _ => Kind::ReadWrite,
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisStore")
            .field(&self.inner.describe)
            .finish()
    }
}

impl LeaseStore for RedisStore {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn default_ttl(&self) -> Duration {
        self.inner.default_ttl
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
        let name = req.name;
        let (mode, permits) = mode_param(req.mode);
        let mut call = self.inner.scripts.acquire.key(self.lease_key(name));
        call.key(self.fence_key(name))
            .arg(req.owner)
            .arg(ttl_ms(req.ttl))
            .arg(mode)
            .arg(permits)
            .arg(if req.queue { 1 } else { 0 })
            .arg(&self.inner.channel)
            .arg(name);
        let (status, fence, holder, retry, kind): (i64, u64, String, i64, i64) =
            self.run(name, "acquire", &call).await?;
        Ok(match status {
            1 => Attempt::Acquired(Lease::new(fence, req.owner)),
            2 => Attempt::Mismatch {
                kind: kind_of(kind),
            },
            _ => Attempt::held_until(
                (!holder.is_empty()).then_some(holder),
                (retry > 0).then(|| Duration::from_millis(retry.unsigned_abs())),
            ),
        })
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, LockError> {
        let live = self.list_key(name, self.lease_key(name)).await?;
        Ok(live
            .iter()
            .find(|l| l.mode == Mode::Exclusive)
            .or(live.first())
            .map(|l| l.owner.clone()))
    }

    async fn refresh(&self, name: &str, lease: &Lease, ttl: Duration) -> Result<bool, LockError> {
        let mut call = self.inner.scripts.refresh.key(self.lease_key(name));
        call.arg(&lease.owner).arg(lease.fence).arg(ttl_ms(ttl));
        let n: i64 = self.run(name, "refresh", &call).await?;
        Ok(n == 1)
    }

    async fn release(&self, name: &str, lease: &Lease) -> Result<bool, LockError> {
        let mut call = self.inner.scripts.release.key(self.lease_key(name));
        call.arg(&lease.owner)
            .arg(lease.fence)
            .arg(&self.inner.channel)
            .arg(name);
        let n: i64 = self.run(name, "release", &call).await?;
        Ok(n == 1)
    }

    async fn leave(&self, name: &str, owner: &str) -> Result<(), LockError> {
        let mut call = self.inner.scripts.leave.key(self.lease_key(name));
        call.arg(owner).arg(&self.inner.channel).arg(name);
        let _: i64 = self.run(name, "leave", &call).await?;
        Ok(())
    }

    async fn wait_for_change(&self, name: &str, until: Instant) {
        let hub = &self.inner.hub;
        hub.ensure_listener(|weak| {
            listen::run(weak, self.inner.client.clone(), self.inner.channel.clone())
        });
        hub.wait(name, until).await;
    }

    fn wakes_waiters(&self) -> bool {
        self.inner.hub.is_connected()
    }

    async fn leases(&self) -> Result<Vec<LeaseInfo>, LockError> {
        let pattern = format!("{}:{{*}}", self.inner.prefix);
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (generation, mut conn) = self.conn("").await?;
            let mut cmd = ::redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500);
            let answer: Result<(u64, Vec<String>), RedisError> = cmd.query_async(&mut conn).await;
            let (next, batch) = answer.map_err(|e| {
                if is_connection_error(&e) {
                    self.forget(generation);
                }
                self.error("", "list", &e)
            })?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let mut out = Vec::new();
        for key in keys {
            if let Some(name) = decode_key(&self.inner.prefix, &key) {
                out.extend(self.list_key(&name, key).await?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.fence.cmp(&b.fence)));
        Ok(out)
    }

    async fn leases_of(&self, name: &str) -> Result<Vec<LeaseInfo>, LockError> {
        self.list_key(name, self.lease_key(name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_key, encode};

    #[test]
    fn encoding_is_injective_on_tricky_names() {
        assert_eq!(encode("a{b}c"), "a%7Bb%7Dc");
        assert_ne!(encode("%7B"), encode("{"));
        assert_eq!(encode("plain"), "plain");
    }

    #[test]
    fn state_keys_decode_back_to_their_names() {
        for name in ["plain", "a{b}c", "100%", "x:y"] {
            let key = format!("lock:{{{}}}", encode(name));
            assert_eq!(decode_key("lock", &key).as_deref(), Some(name));
        }
        assert_eq!(decode_key("lock", "lock:{n}:fence"), None);
        assert_eq!(decode_key("lock", "other:{n}"), None);
    }
}
