//! The Redis lease store: fast, best-effort.
//!
//! Each lease is two keys sharing one hash tag, so they land in the same slot:
//! `lock:{name}` holds `fence:owner` with a millisecond TTL, and `lock:{name}:fence` is a
//! counter that never expires. Three Lua scripts, each atomic on the server:
//!
//! * **acquire**: `SET lock:{name} … NX PX ttl`, and if that succeeded `INCR
//!   lock:{name}:fence` and store the new fence next to the owner;
//! * **refresh**: `PEXPIRE` only if the value is still exactly ours (compare-and-pexpire);
//! * **release**: `DEL` only if the value is still exactly ours (compare-and-delete).
//!
//! (Characters `{`, `}` and `%` in a name are percent-encoded in the key, so every name
//! maps to its own hash tag.)
//!
//! # When this is safe — read this
//!
//! This store is correct only against **one Redis instance without failover**.
//! Replication is asynchronous: if a primary fails over to a replica that had not yet
//! received a `SET`, two holders can both "have" the lease. And the fence counter lives
//! in Redis memory: if Redis loses its data (restart without persistence, `FLUSHALL`,
//! eviction under `maxmemory`, failover to a lagging replica), **fences start again from
//! 1**, so a protected resource that kept the highest fence would refuse every new
//! holder (or, if it was reset too, accept stale ones). There is deliberately no
//! Redlock: it does not make these guarantees any better. Use the
//! [PostgreSQL store](crate::lease::postgres) when the lock guards correctness, and this
//! one when an occasional double run is merely wasteful.
//!
//! Connections use the `redis` crate's Tokio connection manager, which reconnects after
//! a dropped connection; a script that meets a dropped connection is sent once more on a
//! fresh one (all three are safe to repeat: acquire recognises its own owner string).
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
use std::time::Duration;

pub use ::redis;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, FromRedisValue, RedisError, Script, ScriptInvocation};

use super::{util, Attempt, Lease, LeaseStore, DEFAULT_TTL};
use crate::LockError;

// KEYS[1] = lock:{name}, KEYS[2] = lock:{name}:fence; ARGV[1] = owner, ARGV[2] = TTL ms.
// The value is "fence:owner". Owners are unique per acquisition, so finding our own
// owner means a retry of a request whose answer was lost: it is answered again.
const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], fence .. ':' .. ARGV[1], 'PX', ARGV[2])
  return {fence, ''}
end
local current = redis.call('GET', KEYS[1]) or ''
local sep = string.find(current, ':', 1, true)
if sep and string.sub(current, sep + 1) == ARGV[1] then
  return {tonumber(string.sub(current, 1, sep - 1)), ''}
end
return {0, current}
";

const REFRESH: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A lease store on one Redis instance. Cheap to clone (clones share the connection).
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
    describe: String,
    default_ttl: Duration,
    acquire: Script,
    refresh: Script,
    release: Script,
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
                prefix: self.prefix,
                describe,
                default_ttl: self.default_ttl,
                acquire: Script::new(ACQUIRE),
                refresh: Script::new(REFRESH),
                release: Script::new(RELEASE),
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

    /// The key that holds the lease on `name` (`lock:{name}` with the default prefix).
    ///
    /// ```
    /// # fn main() -> Result<(), lock_core::LockError> {
    /// let store = lock_core::lease::redis::RedisStore::new("redis://127.0.0.1:6379")?;
    /// assert_eq!(store.lease_key("jobs"), "lock:{jobs}");
    /// assert_eq!(store.fence_key("jobs"), "lock:{jobs}:fence");
    /// assert_eq!(store.lease_key("a}b"), "lock:{a%7Db}");
    /// # Ok(()) }
    /// ```
    pub fn lease_key(&self, name: &str) -> String {
        format!("{}:{{{}}}", self.inner.prefix, encode(name))
    }

    /// The key that holds the fence counter of `name` (`lock:{name}:fence`).
    pub fn fence_key(&self, name: &str) -> String {
        format!("{}:{{{}}}:fence", self.inner.prefix, encode(name))
    }

    fn slot(&self) -> MutexGuard<'_, Option<(u64, ConnectionManager)>> {
        // Never held across an await; a poisoned slot still holds a usable value.
        self.inner.conn.lock().unwrap_or_else(|e| e.into_inner())
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
    /// (all three scripts are safe to repeat: acquire recognises its own owner, refresh
    /// and release compare-and-set).
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

fn value_of(lease: &Lease) -> String {
    format!("{}:{}", lease.fence, lease.owner)
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
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

    async fn try_acquire(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Attempt, LockError> {
        let mut call = self.inner.acquire.key(self.lease_key(name));
        call.key(self.fence_key(name)).arg(owner).arg(ttl_ms(ttl));
        let (fence, holder): (u64, String) = self.run(name, "acquire", &call).await?;
        if fence > 0 {
            return Ok(Attempt::Acquired(Lease::new(fence, owner)));
        }
        let holder = match holder.split_once(':') {
            Some((f, o)) if f.bytes().all(|b| b.is_ascii_digit()) => o.to_owned(),
            _ => holder,
        };
        Ok(Attempt::Held {
            holder: (!holder.is_empty()).then_some(holder),
        })
    }

    async fn refresh(&self, name: &str, lease: &Lease, ttl: Duration) -> Result<bool, LockError> {
        let mut call = self.inner.refresh.key(self.lease_key(name));
        call.arg(value_of(lease)).arg(ttl_ms(ttl));
        let n: i64 = self.run(name, "refresh", &call).await?;
        Ok(n == 1)
    }

    async fn release(&self, name: &str, lease: &Lease) -> Result<bool, LockError> {
        let mut call = self.inner.release.key(self.lease_key(name));
        call.arg(value_of(lease));
        let n: i64 = self.run(name, "release", &call).await?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn encoding_is_injective_on_tricky_names() {
        assert_eq!(encode("a{b}c"), "a%7Bb%7Dc");
        assert_ne!(encode("%7B"), encode("{"));
        assert_eq!(encode("plain"), "plain");
    }
}
