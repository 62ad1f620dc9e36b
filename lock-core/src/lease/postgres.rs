//! The PostgreSQL lease store: the correctness backend.
//!
//! Leases live in one table (default `public.lock_core_leases`):
//!
//! ```sql
//! CREATE TABLE public.lock_core_leases (
//!     name        text PRIMARY KEY,
//!     owner       text        NOT NULL,
//!     fence       bigint      NOT NULL,
//!     expires_at  timestamptz NOT NULL,   -- server clock
//!     acquired_at timestamptz NOT NULL
//! );
//! CREATE SEQUENCE public.lock_core_leases_fence_seq;
//! ```
//!
//! * **Acquire** is one `INSERT … ON CONFLICT (name) DO UPDATE … WHERE expires_at <=
//!   clock_timestamp() RETURNING fence`: it succeeds only when the name is new or its
//!   lease has expired by the *server's* clock (or the row already carries the caller's
//!   own owner string — owners are unique per acquisition, so that only happens when a
//!   request is repeated after its answer was lost). The fence is a fresh `nextval` of the
//!   sequence, drawn under the row lock, so it is greater than every earlier fence of the
//!   name; sequences are durable, so fences survive releases and server restarts.
//!   No row back means the lease is held; who holds it is asked (one `SELECT`) only
//!   when an acquisition finally fails, for the error message.
//! * **Refresh** and **release** are `UPDATE`s that compare owner *and* fence and require
//!   the lease to be still live. Release never deletes the row: it sets `expires_at` to
//!   now, so the name's history (and its fence order) stays.
//!
//! Expiry follows the database server's clock only (never the clients'); a jump of that
//! clock moves every expiry with it, which is one more reason to check the fence in the
//! protected resource.
//!
//! A statement that meets a dead pooled connection (server restart,
//! `pg_terminate_backend`) is repeated on a fresh one; all three are safe to repeat.
//!
//! Every operation is a single plain statement sent as an unnamed statement with typed
//! parameters (one round trip, no named prepared statements, no explicit transaction),
//! so the store also works behind a transaction-mode pooler such as PgBouncer.
//!
//! The table and sequence are created on first use (or by [`PostgresStore::migrate`];
//! turn the automatic step off with [`PostgresStoreBuilder::auto_migrate`] when the
//! application's role may not create tables).
//!
//! Connections come from a `deadpool-postgres` pool without TLS; for TLS or other
//! connection settings build your own pool and use [`PostgresStore::from_pool`]. The
//! driver crates are re-exported ([`tokio_postgres`](https://docs.rs/tokio-postgres/0.7), [`deadpool_postgres`](https://docs.rs/deadpool-postgres/0.14)) so that
//! versions match.
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
use std::time::Duration;

pub use deadpool_postgres;
pub use tokio_postgres;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::{ToSql, Type};

use super::util::{self, check_identifier};
use super::{Attempt, Lease, LeaseStore, DEFAULT_TTL};
use crate::LockError;

/// The longest table name accepted (PostgreSQL's 63-byte limit, less the sequence's
/// `_fence_seq` suffix).
pub const MAX_TABLE_LEN: usize = 53;

/// A lease store on PostgreSQL. Cheap to clone (clones share the pool).
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
}

struct Sql {
    create_schema: Option<String>,
    create_table: String,
    create_seq: String,
    acquire: String,
    holder: String,
    refresh: String,
    release: String,
}

impl Sql {
    fn new(schema: &str, table: &str) -> Self {
        let t = format!("\"{schema}\".\"{table}\"");
        let seq = format!("\"{schema}\".\"{table}_fence_seq\"");
        Sql {
            create_schema: (schema != "public")
                .then(|| format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")),
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 name text PRIMARY KEY, \
                 owner text NOT NULL, \
                 fence bigint NOT NULL, \
                 expires_at timestamptz NOT NULL, \
                 acquired_at timestamptz NOT NULL)"
            ),
            create_seq: format!("CREATE SEQUENCE IF NOT EXISTS {seq} AS bigint"),
            // One statement: take the row if new or expired, with a fresh fence drawn
            // under the row lock; no row back means someone else holds a live lease.
            acquire: format!(
                "INSERT INTO {t} AS l (name, owner, fence, expires_at, acquired_at) \
                 VALUES ($1, $2, nextval('{seq}'), \
                         clock_timestamp() + $3::float8 * interval '1 millisecond', clock_timestamp()) \
                 ON CONFLICT (name) DO UPDATE \
                   SET owner = EXCLUDED.owner, \
                       fence = nextval('{seq}'), \
                       expires_at = clock_timestamp() + $3::float8 * interval '1 millisecond', \
                       acquired_at = clock_timestamp() \
                   WHERE l.expires_at <= clock_timestamp() OR l.owner = EXCLUDED.owner \
                 RETURNING l.fence"
            ),
            holder: format!(
                "SELECT owner FROM {t} WHERE name = $1 AND expires_at > clock_timestamp()"
            ),
            refresh: format!(
                "UPDATE {t} SET expires_at = clock_timestamp() + $4::float8 * interval '1 millisecond' \
                 WHERE name = $1 AND owner = $2 AND fence = $3 AND expires_at > clock_timestamp() \
                 RETURNING 1"
            ),
            release: format!(
                "UPDATE {t} SET expires_at = clock_timestamp() \
                 WHERE name = $1 AND owner = $2 AND fence = $3 AND expires_at > clock_timestamp() \
                 RETURNING 1"
            ),
        }
    }
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
    /// The schema and table of the lease table (default `public`, `lock_core_leases`).
    /// Both must be plain identifiers (ASCII letters, digits, `_`).
    pub fn table(mut self, schema: &str, table: &str) -> Self {
        self.schema = schema.to_owned();
        self.table = table.to_owned();
        self
    }

    /// The most connections the pool opens (default 8).
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

    /// Whether to create the table and sequence on first use (default true).
    pub fn auto_migrate(mut self, on: bool) -> Self {
        self.auto_migrate = on;
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
            table: "lock_core_leases".to_owned(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(5),
            default_ttl: DEFAULT_TTL,
            auto_migrate: true,
        }
    }

    /// A store on a pool you built (for TLS, custom settings or sharing the app's pool).
    /// `schema` and `table` name the lease table; `label` describes the store in errors
    /// (it must not contain credentials).
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
        ))
    }

    fn with_pool(
        pool: Pool,
        describe: String,
        schema: &str,
        table: &str,
        default_ttl: Duration,
        auto_migrate: bool,
    ) -> Self {
        PostgresStore {
            inner: Arc::new(Inner {
                pool,
                describe,
                default_ttl,
                auto_migrate,
                migrated: tokio::sync::OnceCell::new(),
                sql: Sql::new(schema, table),
            }),
        }
    }

    /// The connection pool (for running your own statements, such as fenced writes, on
    /// the same database).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Creates the lease table and fence sequence if they do not exist. Idempotent and
    /// safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<(), LockError> {
        self.inner
            .migrated
            .get_or_try_init(|| self.run_migrate())
            .await
            .map(|_| ())
    }

    async fn run_migrate(&self) -> Result<(), LockError> {
        let client = self.client("").await?;
        let sql = &self.inner.sql;
        if let Some(s) = &sql.create_schema {
            // The schema may exist already while the role may not create schemas.
            let _ = client.batch_execute(s).await;
        }
        for stmt in [&sql.create_seq, &sql.create_table] {
            // Concurrent CREATE … IF NOT EXISTS can still collide on the catalog's unique
            // index; the loser retries once and then sees the object.
            let mut tries = 0;
            loop {
                match client.batch_execute(stmt).await {
                    Ok(()) => break,
                    Err(e) if tries == 0 && is_duplicate(&e) => tries += 1,
                    Err(e) => return Err(self.error("", "creating the lease table", &e)),
                }
            }
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
    /// connections are dropped from the pool on the way. All three statements
    /// are safe to repeat: acquire re-grants to its own owner (owners are unique per
    /// acquisition), refresh and release compare owner and fence.
    async fn query(
        &self,
        name: &str,
        what: &str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>, LockError> {
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
}

fn is_duplicate(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code().is_some_and(|c| {
        *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::DUPLICATE_OBJECT
    })
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

    async fn try_acquire(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Attempt, LockError> {
        self.ready(name).await?;
        let ms = ttl_ms(ttl);
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&name, Type::TEXT), (&owner, Type::TEXT), (&ms, Type::INT8)];
        let rows = self
            .query(name, "acquire", &self.inner.sql.acquire, &params)
            .await?;
        let Some(row) = rows.first() else {
            // Held by someone else; who is asked only for error messages (`holder`).
            return Ok(Attempt::Held { holder: None });
        };
        let fence: i64 = row
            .try_get(0)
            .map_err(|e| self.error(name, "acquire", &e))?;
        Ok(Attempt::Acquired(Lease::new(
            u64::try_from(fence).unwrap_or(0),
            owner,
        )))
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, LockError> {
        let params: [(&(dyn ToSql + Sync), Type); 1] = [(&name, Type::TEXT)];
        let rows = self
            .query(name, "holder", &self.inner.sql.holder, &params)
            .await?;
        Ok(rows.first().and_then(|r| r.try_get(0).ok()))
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
        Ok(!rows.is_empty())
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
        Ok(!rows.is_empty())
    }
}
