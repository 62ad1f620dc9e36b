//! The PostgreSQL lease store: the correctness backend.
//!
//! Leases live in one table (default `public.lock_core_locks`), one row per name in
//! use, with its live holders, its queue of waiters and its kind (reader/writer or
//! counted); fences come from one sequence (`lock_core_locks_fence_seq`), drawn under
//! the row lock, so they are greater than every earlier fence of the name in every
//! shape, and durable across releases and server restarts. Four PL/pgSQL functions do
//! each step atomically under the name's row lock (`…_acquire`, `…_refresh`,
//! `…_release`, `…_leave`); each call is one round trip. See `sql.rs` in the sources for
//! the exact layout.
//!
//! * **Acquire** grants the name if the request fits beside the live holders (none for
//!   exclusive; no exclusive one for shared; fewer than `N` for one of `N` permits) and
//!   no waiter that is *due* stands ahead of it; else it records the request in the
//!   queue and answers who holds the name and when that lease runs out. Expiry follows
//!   the database server's clock only (never the clients').
//! * **Refresh** and **release** compare owner *and* fence and require the lease to be
//!   live. Release `NOTIFY`s the store's channel (`lock_core_locks_wake`, payload: the
//!   name) when someone waits, and drops the row once the name is idle (no row is kept
//!   per name ever used).
//! * **Fairness**: a waiter that others were granted the name before twice is due, and
//!   nobody is granted the name before it; so while one owner waits, another takes at
//!   most three turns in a row. Waiters refresh their place with every attempt; a waiter
//!   that dies leaves the queue when its entry's TTL runs out.
//!
//! # Wake-ups
//!
//! The store keeps one extra connection per process that `LISTEN`s on the channel
//! (made when a first waiter waits, remade after it dies, with the store's
//! application name plus `-listen`: `lock-core-listen` by default); waiters of a released name retry at once. A notification lost
//! while that connection is down only costs latency: waiters also retry when the
//! holder's lease would run out and on a back-off of their own (every 50 ms at most
//! while the listener is down). Behind a transaction-mode pooler such as PgBouncer,
//! where `LISTEN` does not work, turn it off with
//! [`PostgresStoreBuilder::notifications`]`(false)`: waiters then poll (every 2–50 ms).
//! Everything else is plain single statements (unnamed, typed parameters, no explicit
//! transaction), which poolers pass through.
//!
//! A statement that meets a dead pooled connection (server restart,
//! `pg_terminate_backend`) is repeated on a fresh one; all four are safe to repeat.
//!
//! The table, sequence and functions are created on first use (or by
//! [`PostgresStore::migrate`]; turn the automatic step off with
//! [`PostgresStoreBuilder::auto_migrate`] when the application's role may not create
//! them). Upgrading from lock-core 0.1, whose table was `lock_core_leases`: the new
//! default table is separate (the layout changed), and its fence sequence starts above
//! the old one's, so fences keep increasing across the upgrade; do not run old and new
//! versions against one database at once (they do not see each other's leases).
//!
//! Connections come from a `deadpool-postgres` pool without TLS; for TLS or other
//! connection settings build your own pool and use [`PostgresStore::from_pool`] (such
//! a store polls instead of listening). The driver crates are re-exported
//! ([`tokio_postgres`](https://docs.rs/tokio-postgres/0.7),
//! [`deadpool_postgres`](https://docs.rs/deadpool-postgres/0.14)) so that versions match.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lock_core::LockError> {
//! use std::time::Duration;
//! use lock_core::lease::{self, LeaseOptions, postgres::PostgresStore};
//!
//! let store = PostgresStore::builder("postgres://app@127.0.0.1/app")
//!     .table("locks", "leases")
//!     .default_ttl(Duration::from_secs(15))
//!     .build()?;
//! store.migrate().await?;
//! let guard = lease::acquire(&store, "billing", LeaseOptions::new()).await?;
//! println!("fence {}", guard.fence());
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use deadpool_postgres;
pub use tokio_postgres;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::{ToSql, Type};

use super::notify::Hub;
use super::util::{self, check_identifier};
use super::{Attempt, Lease, LeaseInfo, LeaseStore, Request, DEFAULT_TTL};
use crate::mode::{Kind, Mode};
use crate::LockError;

mod listen;
mod sql;

use sql::Sql;

/// The longest table name accepted (PostgreSQL's 63-byte limit, less the sequence's
/// `_fence_seq` suffix).
pub const MAX_TABLE_LEN: usize = 53;

/// The default table name (in schema `public`).
pub const DEFAULT_TABLE: &str = "lock_core_locks";

/// A lease store on PostgreSQL. Cheap to clone (clones share the pool and the
/// listening connection).
///
/// ```no_run
/// use std::sync::LazyLock;
/// use lock_core::lease::{self, LeaseOptions, postgres::PostgresStore};
///
/// // One store (one pool) for the whole program.
/// static LOCKS: LazyLock<PostgresStore> = LazyLock::new(|| {
///     PostgresStore::new("postgres://app@127.0.0.1/app").expect("a valid URL")
/// });
///
/// async fn nightly() -> Result<u64, lock_core::LockError> {
///     let g = lease::acquire(&*LOCKS, "nightly", LeaseOptions::new()).await?;
///     let fence = g.fence();
///     g.release().await?;
///     Ok(fence)
/// }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    describe: String,
    default_ttl: Duration,
    auto_migrate: bool,
    migrated: tokio::sync::OnceCell<()>,
    sql: Sql,
    /// How to open the listening connection; `None` polls instead.
    listen: Option<tokio_postgres::Config>,
    hub: Arc<Hub>,
}

/// Configures a [`PostgresStore`]; start with [`PostgresStore::builder`].
#[derive(Clone)]
pub struct PostgresStoreBuilder {
    url: String,
    schema: String,
    table: String,
    pool_size: usize,
    connect_timeout: Duration,
    default_ttl: Duration,
    auto_migrate: bool,
    notifications: bool,
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("PostgresStoreBuilder")
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("pool_size", &self.pool_size)
            .field("default_ttl", &self.default_ttl)
            .field("auto_migrate", &self.auto_migrate)
            .finish_non_exhaustive()
    }
}

fn config_error(message: String) -> LockError {
    LockError::Store {
        name: String::new(),
        store: "postgres".to_owned(),
        message,
    }
}

impl PostgresStoreBuilder {
    /// The schema and table of the lease table (default `public`, `lock_core_locks`).
    /// Both must be plain identifiers (ASCII letters, digits, `_`); the table's
    /// functions, sequence and notification channel are named after it.
    pub fn table(mut self, schema: &str, table: &str) -> Self {
        self.schema = schema.to_owned();
        self.table = table.to_owned();
        self
    }

    /// The most connections the pool opens (default 8; the listening connection is
    /// one more).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// How long to wait for a connection to be made or freed (default 5 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// The TTL of leases whose caller chooses none (default 10 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Whether to create the table, sequence and functions on first use (default true).
    pub fn auto_migrate(mut self, on: bool) -> Self {
        self.auto_migrate = on;
        self
    }

    /// Whether waiters are woken by `LISTEN`/`NOTIFY` (default true). Turn it off
    /// behind a transaction-mode pooler (PgBouncer), where `LISTEN` does not work:
    /// waiters then poll every 2–50 ms.
    pub fn notifications(mut self, on: bool) -> Self {
        self.notifications = on;
        self
    }

    /// Checks the settings and builds the store. Connects lazily (first use).
    pub fn build(self) -> Result<PostgresStore, LockError> {
        check_identifier("schema name", &self.schema, 63).map_err(config_error)?;
        check_identifier("table name", &self.table, MAX_TABLE_LEN).map_err(config_error)?;
        let mut cfg: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e| config_error(format!("invalid PostgreSQL URL: {e}")))?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(self.connect_timeout);
        }
        if cfg.get_application_name().is_none() {
            cfg.application_name("lock-core");
        }
        let describe = describe_config(&cfg, &self.schema, &self.table);
        let listen = self.notifications.then(|| listen::config(&cfg));
        let mgr = Manager::from_config(
            cfg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| config_error(format!("cannot build the connection pool: {e}")))?;
        Ok(PostgresStore::with_pool(
            pool,
            describe,
            &self.schema,
            &self.table,
            self.default_ttl,
            self.auto_migrate,
            listen,
        ))
    }
}

fn describe_config(cfg: &tokio_postgres::Config, schema: &str, table: &str) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = cfg
                .get_ports()
                .get(i)
                .or(cfg.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(s) => format!("{s}:{port}"),
                #[cfg(unix)]
                Host::Unix(p) => format!("{}:{port}", p.display()),
            }
        })
        .collect();
    let host = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    let db = cfg.get_dbname().unwrap_or("");
    format!("postgres {host}/{db} table {schema}.{table}")
}

impl PostgresStore {
    /// A store on the database at `url` (`postgres://user@host:port/db?…`) with default
    /// settings. Connects lazily: errors in reaching the server show on first use.
    pub fn new(url: &str) -> Result<Self, LockError> {
        Self::builder(url).build()
    }

    /// A builder for a store on the database at `url`.
    pub fn builder(url: &str) -> PostgresStoreBuilder {
        PostgresStoreBuilder {
            url: url.to_owned(),
            schema: "public".to_owned(),
            table: DEFAULT_TABLE.to_owned(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            default_ttl: DEFAULT_TTL,
            auto_migrate: true,
            notifications: true,
        }
    }

    /// A store on a pool you built (for TLS, custom settings or sharing the app's pool).
    /// `schema` and `table` name the lease table; `label` describes the store in errors
    /// (it must not contain credentials). Such a store has no listening connection:
    /// its waiters poll.
    pub fn from_pool(
        pool: Pool,
        label: &str,
        schema: &str,
        table: &str,
    ) -> Result<Self, LockError> {
        check_identifier("schema name", schema, 63).map_err(config_error)?;
        check_identifier("table name", table, MAX_TABLE_LEN).map_err(config_error)?;
        Ok(Self::with_pool(
            pool,
            format!("postgres {label} table {schema}.{table}"),
            schema,
            table,
            DEFAULT_TTL,
            true,
            None,
        ))
    }

    fn with_pool(
        pool: Pool,
        describe: String,
        schema: &str,
        table: &str,
        default_ttl: Duration,
        auto_migrate: bool,
        listen: Option<tokio_postgres::Config>,
    ) -> Self {
        PostgresStore {
            inner: Arc::new(Inner {
                pool,
                describe,
                default_ttl,
                auto_migrate,
                migrated: tokio::sync::OnceCell::new(),
                sql: Sql::new(schema, table),
                listen,
                hub: Arc::new(Hub::default()),
            }),
        }
    }

    /// The connection pool (for running your own statements, such as fenced writes, on
    /// the same database).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The channel the store `NOTIFY`s on release (`<table>_wake`).
    pub fn channel(&self) -> &str {
        &self.inner.sql.channel
    }

    /// Creates the lease table, fence sequence and functions if they do not exist (and
    /// brings the functions up to date). Idempotent and safe to run from several
    /// processes at once (they take turns on an advisory lock).
    pub async fn migrate(&self) -> Result<(), LockError> {
        self.inner
            .migrated
            .get_or_try_init(|| self.run_migrate())
            .await
            .map(|_| ())
    }

    async fn run_migrate(&self) -> Result<(), LockError> {
        let client = self.client("").await?;
        if let Err(e) = client.batch_execute(&self.inner.sql.migrate).await {
            // Leave the pooled connection outside the failed transaction.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(self.error("", "creating the lease table", &e));
        }
        Ok(())
    }

    async fn client(&self, name: &str) -> Result<deadpool_postgres::Object, LockError> {
        self.inner.pool.get().await.map_err(|e| LockError::Store {
            name: name.to_owned(),
            store: self.inner.describe.clone(),
            message: format!("cannot get a connection: {}", util::with_causes(&e)),
        })
    }

    async fn ready(&self, name: &str) -> Result<(), LockError> {
        if self.inner.auto_migrate && self.inner.migrated.get().is_none() {
            self.migrate().await.map_err(|e| match e {
                LockError::Store { store, message, .. } => LockError::Store {
                    name: name.to_owned(),
                    store,
                    message,
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// Runs one statement; if the pooled connection turns out to be dead (server
    /// restart, `pg_terminate_backend`), again on another one — at most once per pool
    /// slot plus one, since every idle connection may have died at once. Dead
    /// connections are dropped from the pool on the way. Every statement is safe to
    /// repeat: acquire re-grants to its own owner (owners are unique per acquisition),
    /// refresh and release compare owner and fence, leave is idempotent.
    async fn query(
        &self,
        name: &str,
        what: &str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>, LockError> {
        self.ready(name).await?;
        let max_tries = self.inner.pool.status().max_size + 1;
        let mut tries = 0;
        loop {
            let client = self.client(name).await?;
            match client.query_typed(sql, params).await {
                Ok(rows) => return Ok(rows),
                Err(e) if is_dead_connection(&e) && tries + 1 < max_tries => {
                    tries += 1;
                    // Not back into the pool: it is dead.
                    drop(deadpool_postgres::Object::take(client));
                    self.inner.pool.retain(|c, _| !c.is_closed());
                }
                Err(e) => return Err(self.error(name, what, &e)),
            }
        }
    }

    fn error(&self, name: &str, what: &str, e: &tokio_postgres::Error) -> LockError {
        let detail = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => util::with_causes(e),
        };
        LockError::Store {
            name: name.to_owned(),
            store: self.inner.describe.clone(),
            message: format!("{what}: {detail}"),
        }
    }

    fn bad_row(&self, name: &str, what: &str, e: &tokio_postgres::Error) -> LockError {
        self.error(name, &format!("{what}: unexpected answer"), e)
    }

    fn info(&self, row: &tokio_postgres::Row) -> Result<LeaseInfo, tokio_postgres::Error> {
        let name: String = row.try_get(0)?;
        let owner: Option<String> = row.try_get(1)?;
        let fence: Option<i64> = row.try_get(2)?;
        let mode: Option<String> = row.try_get(3)?;
        let kind: i32 = row.try_get(4)?;
        let left: i64 = row.try_get(5)?;
        Ok(LeaseInfo::new(
            name,
            owner.unwrap_or_default(),
            u64::try_from(fence.unwrap_or(0)).unwrap_or(0),
            mode_of(mode.as_deref(), kind),
            Duration::from_millis(u64::try_from(left).unwrap_or(0)),
        ))
    }

    /// How many names this process's waiters wait for right now (for tests: no entry
    /// is left behind per name).
    #[doc(hidden)]
    pub fn waiting_names(&self) -> usize {
        self.inner.hub.waiting_names()
    }
}

fn is_dead_connection(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    if let Some(c) = e.code() {
        return *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CRASH_SHUTDOWN
            || *c == SqlState::CANNOT_CONNECT_NOW;
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn fence_param(fence: u64) -> i64 {
    i64::try_from(fence).unwrap_or(i64::MAX)
}

/// The mode letter the functions use, and the permit count.
fn mode_param(mode: Mode) -> (&'static str, i32) {
    match mode {
        Mode::Shared => ("s", 0),
        Mode::Permits(n) => ("p", i32::try_from(n).unwrap_or(i32::MAX)),
        _ => ("x", 0),
    }
}

fn mode_of(letter: Option<&str>, kind: i32) -> Mode {
    match letter {
        Some("s") => Mode::Shared,
        Some("p") => Mode::Permits(u32::try_from(kind).unwrap_or(0)),
        _ => Mode::Exclusive,
    }
}

fn kind_of(kind: i32) -> Kind {
    match u32::try_from(kind) {
        Ok(n) if n > 0 => Kind::Counted(n),
        _ => Kind::ReadWrite,
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresStore")
            .field(&self.inner.describe)
            .finish()
    }
}

impl LeaseStore for PostgresStore {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn default_ttl(&self) -> Duration {
        self.inner.default_ttl
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
        let name = req.name;
        let ms = ttl_ms(req.ttl);
        let (mode, permits) = mode_param(req.mode);
        let params: [(&(dyn ToSql + Sync), Type); 6] = [
            (&name, Type::TEXT),
            (&req.owner, Type::TEXT),
            (&ms, Type::INT8),
            (&mode, Type::TEXT),
            (&permits, Type::INT4),
            (&req.queue, Type::BOOL),
        ];
        let rows = self
            .query(name, "acquire", &self.inner.sql.acquire, &params)
            .await?;
        let row = rows.first().ok_or_else(|| LockError::Store {
            name: name.to_owned(),
            store: self.inner.describe.clone(),
            message: "acquire: no answer row".into(),
        })?;
        let read = || -> Result<Attempt, tokio_postgres::Error> {
            let status: String = row.try_get(0)?;
            let fence: Option<i64> = row.try_get(1)?;
            let holder: Option<String> = row.try_get(2)?;
            let retry: Option<i64> = row.try_get(3)?;
            let kind: Option<i32> = row.try_get(4)?;
            Ok(match status.as_str() {
                "acquired" => Attempt::Acquired(Lease::new(
                    u64::try_from(fence.unwrap_or(0)).unwrap_or(0),
                    req.owner,
                )),
                "mismatch" => Attempt::Mismatch {
                    kind: kind_of(kind.unwrap_or(0)),
                },
                _ => Attempt::held_until(
                    holder,
                    retry.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
                ),
            })
        };
        read().map_err(|e| self.bad_row(name, "acquire", &e))
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, LockError> {
        let params: [(&(dyn ToSql + Sync), Type); 1] = [(&name, Type::TEXT)];
        let rows = self
            .query(name, "holder", &self.inner.sql.holder, &params)
            .await?;
        Ok(rows.first().and_then(|r| r.try_get(1).ok()))
    }

    async fn refresh(&self, name: &str, lease: &Lease, ttl: Duration) -> Result<bool, LockError> {
        let (ms, fence) = (ttl_ms(ttl), fence_param(lease.fence));
        let params: [(&(dyn ToSql + Sync), Type); 4] = [
            (&name, Type::TEXT),
            (&lease.owner, Type::TEXT),
            (&fence, Type::INT8),
            (&ms, Type::INT8),
        ];
        let rows = self
            .query(name, "refresh", &self.inner.sql.refresh, &params)
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.try_get(0).ok())
            .unwrap_or(false))
    }

    async fn release(&self, name: &str, lease: &Lease) -> Result<bool, LockError> {
        let fence = fence_param(lease.fence);
        let params: [(&(dyn ToSql + Sync), Type); 3] = [
            (&name, Type::TEXT),
            (&lease.owner, Type::TEXT),
            (&fence, Type::INT8),
        ];
        let rows = self
            .query(name, "release", &self.inner.sql.release, &params)
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.try_get(0).ok())
            .unwrap_or(false))
    }

    async fn leave(&self, name: &str, owner: &str) -> Result<(), LockError> {
        let params: [(&(dyn ToSql + Sync), Type); 2] = [(&name, Type::TEXT), (&owner, Type::TEXT)];
        self.query(name, "leave", &self.inner.sql.leave, &params)
            .await
            .map(drop)
    }

    async fn wait_for_change(&self, name: &str, until: Instant) {
        let Some(cfg) = &self.inner.listen else {
            tokio::time::sleep_until(until.into()).await;
            return;
        };
        let hub = &self.inner.hub;
        hub.ensure_listener(|weak| listen::run(weak, cfg.clone(), self.inner.sql.channel.clone()));
        hub.wait(name, until).await;
    }

    fn wakes_waiters(&self) -> bool {
        self.inner.listen.is_some() && self.inner.hub.is_connected()
    }

    async fn leases(&self) -> Result<Vec<LeaseInfo>, LockError> {
        let rows = self.query("", "list", &self.inner.sql.leases, &[]).await?;
        rows.iter()
            .map(|r| self.info(r).map_err(|e| self.bad_row("", "list", &e)))
            .collect()
    }

    async fn leases_of(&self, name: &str) -> Result<Vec<LeaseInfo>, LockError> {
        let params: [(&(dyn ToSql + Sync), Type); 1] = [(&name, Type::TEXT)];
        let rows = self
            .query(name, "list", &self.inner.sql.leases_of, &params)
            .await?;
        rows.iter()
            .map(|r| self.info(r).map_err(|e| self.bad_row(name, "list", &e)))
            .collect()
    }
}
