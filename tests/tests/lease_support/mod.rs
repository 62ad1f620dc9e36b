//! Shared harness of the lease-store fault tests (`lease_postgres.rs`, `lease_redis.rs`,
//! `lease_dynamodb.rs`).
//!
//! Real servers (`LOCK_CORE_POSTGRES_URL`, `LOCK_CORE_REDIS_URL`,
//! `LOCK_CORE_DYNAMODB_ENDPOINT` (moto), started by
//! `scripts/services.sh`) and real child processes: a test re-executes its own binary
//! with `LEASE_CHILD_ROLE` set, running only the ignored `lease_child` test, which
//! dispatches to [`child_main`]. Children talk over stdout lines starting with `@@ `.
//!
//! The protected resource is a PostgreSQL row with a `last_fence` column, written with
//! the documented fenced update (`WHERE last_fence <= $fence`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lock_core::lease::dynamodb::{aws_sdk_dynamodb, DynamoDbStore};
use lock_core::lease::etcd::{etcd_client, EtcdStore};
use lock_core::lease::postgres::{tokio_postgres, PostgresStore};
use lock_core::lease::redis::{redis, RedisStore};
use lock_core::lease::{
    self, Attempt, AttemptAll, Lease, LeaseGuard, LeaseInfo, LeaseOptions, LeaseStore, Request,
};
use lock_core::LockError;
use lock_core::Mode;

pub mod scenarios;
pub mod waking;

pub const CHILD_ENV: &str = "LEASE_CHILD_ROLE";

pub fn pg_url() -> String {
    std::env::var("LOCK_CORE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("LOCK_CORE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The etcd cluster of `scripts/services.sh` (or `LOCK_CORE_ETCD_URL`); a child process
/// may be pointed at another one with `LEASE_ETCD_URL`.
pub fn etcd_url() -> String {
    std::env::var("LEASE_ETCD_URL")
        .or_else(|_| std::env::var("LOCK_CORE_ETCD_URL"))
        .unwrap_or_else(|_| "etcd://127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793".to_owned())
}

/// The etcd endpoints of [`etcd_url`], as `http://` URLs.
pub fn etcd_endpoints() -> Vec<String> {
    EtcdStore::new(&etcd_url())
        .expect("valid etcd URL")
        .endpoints()
        .to_vec()
}

pub async fn etcd_client() -> etcd_client::Client {
    etcd_client::Client::connect(etcd_endpoints(), None)
        .await
        .expect("etcd is reachable (run scripts/services.sh)")
}

/// The DynamoDB-compatible server of the tests (moto, from `scripts/services.sh`): always
/// an explicit loopback endpoint, never real AWS.
pub fn dynamo_endpoint() -> String {
    let e = std::env::var("LOCK_CORE_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:5005".to_owned());
    assert!(
        e.starts_with("http://127.0.0.1:") || e.starts_with("http://localhost:"),
        "LOCK_CORE_DYNAMODB_ENDPOINT must be a loopback http:// endpoint, got {e}"
    );
    e
}

/// The table of this run of a DynamoDB test binary (its children get its name in
/// `LEASE_DYNAMO_TABLE`): a new one per run, so that it stays small. (moto copies a whole
/// table for every `TransactWriteItems`, to roll it back: on a table of a few hundred
/// items that already takes a quarter of a second, with every other request waiting.)
pub fn dynamo_table() -> &'static str {
    static TABLE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::env::var("LEASE_DYNAMO_TABLE").unwrap_or_else(|_| {
            format!(
                "lock_core_test_{}_{}",
                std::process::id(),
                unix_ms() % 1_000_000_000_000
            )
        })
    });
    &TABLE
}

/// The environment that points the AWS SDK's standard configuration at `endpoint` with
/// fake credentials and a fixed region (for child processes and `DynamoDbStore::new`).
pub fn dynamo_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("AWS_CONFIG_FILE", "/nonexistent".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_owned()),
    ]
}

/// A DynamoDB client for `endpoint`, configured explicitly (fake credentials, fixed
/// region): it never reads the environment. Its timeouts leave room for moto on a
/// loaded machine (one Python process serving every test).
pub fn dynamo_client(endpoint: &str, secret: &str) -> aws_sdk_dynamodb::Client {
    dynamo_client_with(
        endpoint,
        secret,
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
}

/// [`dynamo_client`] with the given timeouts of one attempt and of a whole operation
/// (retries included).
pub fn dynamo_client_with(
    endpoint: &str,
    secret: &str,
    attempt: Duration,
    operation: Duration,
) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", secret, None, None, "tests"))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(attempt.min(Duration::from_secs(3)))
                .operation_attempt_timeout(attempt)
                .operation_timeout(operation)
                .build(),
        )
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A DynamoDB store on the tests' server (or `LEASE_DYNAMO_ENDPOINT` in a child).
pub fn dynamo_store() -> DynamoDbStore {
    let endpoint = std::env::var("LEASE_DYNAMO_ENDPOINT").unwrap_or_else(|_| dynamo_endpoint());
    DynamoDbStore::from_client(dynamo_client(&endpoint, "test"), dynamo_table())
        .expect("valid table name")
}

pub fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A name no earlier run used: test tag, pid and time.
pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("lease-test/{tag}/{}/{nanos}", std::process::id())
}

/// A tiny xorshift generator for test randomness.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(nanos ^ (u64::from(std::process::id()) << 32) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Redis,
    Etcd,
    Dynamo,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Redis => "redis",
            Kind::Etcd => "etcd",
            Kind::Dynamo => "dynamodb",
        }
    }
    pub fn parse(s: &str) -> Kind {
        match s {
            "redis" => Kind::Redis,
            "etcd" => Kind::Etcd,
            "dynamodb" => Kind::Dynamo,
            _ => Kind::Postgres,
        }
    }
}

/// Either store behind one type: the scenarios run unchanged on both. (It is also a
/// small example of a user-written `LeaseStore`: delegation.)
#[derive(Clone, Debug)]
pub enum AnyStore {
    Postgres(PostgresStore),
    Redis(RedisStore),
    Etcd(EtcdStore),
    Dynamo(DynamoDbStore),
}

impl AnyStore {
    pub fn new(kind: Kind) -> AnyStore {
        Self::with_app(kind, None)
    }

    /// `app`: a PostgreSQL application_name, so the harness can find the connections.
    pub fn with_app(kind: Kind, app: Option<&str>) -> AnyStore {
        match kind {
            Kind::Postgres => {
                let mut url = pg_url();
                if let Some(app) = app {
                    url.push_str(if url.contains('?') { "&" } else { "?" });
                    url.push_str("application_name=");
                    url.push_str(app);
                }
                AnyStore::Postgres(PostgresStore::new(&url).expect("valid PostgreSQL URL"))
            }
            Kind::Redis => AnyStore::Redis(RedisStore::new(&redis_url()).expect("valid Redis URL")),
            Kind::Etcd => AnyStore::Etcd(EtcdStore::new(&etcd_url()).expect("valid etcd URL")),
            Kind::Dynamo => AnyStore::Dynamo(dynamo_store()),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            AnyStore::Postgres(_) => Kind::Postgres,
            AnyStore::Redis(_) => Kind::Redis,
            AnyStore::Etcd(_) => Kind::Etcd,
            AnyStore::Dynamo(_) => Kind::Dynamo,
        }
    }
}

impl LeaseStore for AnyStore {
    fn effective_ttl(&self, ttl: Duration) -> Duration {
        match self {
            AnyStore::Postgres(s) => s.effective_ttl(ttl),
            AnyStore::Redis(s) => s.effective_ttl(ttl),
            AnyStore::Etcd(s) => s.effective_ttl(ttl),
            AnyStore::Dynamo(s) => s.effective_ttl(ttl),
        }
    }
    fn describe(&self) -> String {
        match self {
            AnyStore::Postgres(s) => s.describe(),
            AnyStore::Redis(s) => s.describe(),
            AnyStore::Etcd(s) => s.describe(),
            AnyStore::Dynamo(s) => s.describe(),
        }
    }
    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
        match self {
            AnyStore::Postgres(s) => s.try_acquire(req).await,
            AnyStore::Redis(s) => s.try_acquire(req).await,
            AnyStore::Etcd(s) => s.try_acquire(req).await,
            AnyStore::Dynamo(s) => s.try_acquire(req).await,
        }
    }
    async fn try_acquire_all(&self, reqs: &[Request<'_>]) -> Option<Result<AttemptAll, LockError>> {
        match self {
            AnyStore::Postgres(s) => s.try_acquire_all(reqs).await,
            AnyStore::Redis(s) => s.try_acquire_all(reqs).await,
            AnyStore::Etcd(s) => s.try_acquire_all(reqs).await,
            AnyStore::Dynamo(s) => s.try_acquire_all(reqs).await,
        }
    }
    async fn leave(&self, name: &str, owner: &str) -> Result<(), LockError> {
        match self {
            AnyStore::Postgres(s) => s.leave(name, owner).await,
            AnyStore::Redis(s) => s.leave(name, owner).await,
            AnyStore::Etcd(s) => s.leave(name, owner).await,
            AnyStore::Dynamo(s) => s.leave(name, owner).await,
        }
    }
    async fn wait_for_change(&self, name: &str, until: Instant) {
        match self {
            AnyStore::Postgres(s) => s.wait_for_change(name, until).await,
            AnyStore::Redis(s) => s.wait_for_change(name, until).await,
            AnyStore::Etcd(s) => s.wait_for_change(name, until).await,
            AnyStore::Dynamo(s) => s.wait_for_change(name, until).await,
        }
    }
    fn wakes_waiters(&self) -> bool {
        match self {
            AnyStore::Postgres(s) => s.wakes_waiters(),
            AnyStore::Redis(s) => s.wakes_waiters(),
            AnyStore::Etcd(s) => s.wakes_waiters(),
            AnyStore::Dynamo(s) => s.wakes_waiters(),
        }
    }
    async fn leases(&self) -> Result<Vec<LeaseInfo>, LockError> {
        match self {
            AnyStore::Postgres(s) => s.leases().await,
            AnyStore::Redis(s) => s.leases().await,
            AnyStore::Etcd(s) => s.leases().await,
            AnyStore::Dynamo(s) => s.leases().await,
        }
    }
    async fn leases_of(&self, name: &str) -> Result<Vec<LeaseInfo>, LockError> {
        match self {
            AnyStore::Postgres(s) => s.leases_of(name).await,
            AnyStore::Redis(s) => s.leases_of(name).await,
            AnyStore::Etcd(s) => s.leases_of(name).await,
            AnyStore::Dynamo(s) => s.leases_of(name).await,
        }
    }
    async fn holder(&self, name: &str) -> Result<Option<String>, LockError> {
        match self {
            AnyStore::Postgres(s) => s.holder(name).await,
            AnyStore::Redis(s) => s.holder(name).await,
            AnyStore::Etcd(s) => s.holder(name).await,
            AnyStore::Dynamo(s) => s.holder(name).await,
        }
    }
    async fn refresh(&self, name: &str, lease: &Lease, ttl: Duration) -> Result<bool, LockError> {
        match self {
            AnyStore::Postgres(s) => s.refresh(name, lease, ttl).await,
            AnyStore::Redis(s) => s.refresh(name, lease, ttl).await,
            AnyStore::Etcd(s) => s.refresh(name, lease, ttl).await,
            AnyStore::Dynamo(s) => s.refresh(name, lease, ttl).await,
        }
    }
    async fn release(&self, name: &str, lease: &Lease) -> Result<bool, LockError> {
        match self {
            AnyStore::Postgres(s) => s.release(name, lease).await,
            AnyStore::Redis(s) => s.release(name, lease).await,
            AnyStore::Etcd(s) => s.release(name, lease).await,
            AnyStore::Dynamo(s) => s.release(name, lease).await,
        }
    }
}

pub fn opts(ttl_ms: u64) -> LeaseOptions {
    // DynamoDB waiters poll: the store's own back-off (up to 50 ms) spares moto.
    let rest = if std::env::var("LEASE_STORE").as_deref() == Ok("dynamodb") {
        Duration::from_millis(50)
    } else {
        Duration::from_millis(20)
    };
    LeaseOptions::new()
        .ttl(Duration::from_millis(ttl_ms))
        .retry_backoff(Duration::from_millis(1), rest)
        .mode(env_mode())
}

/// The shape a child process uses (`LEASE_MODE`: `x`, `s` or `p<N>`; default `x`).
pub fn env_mode() -> Mode {
    mode_parse(&std::env::var("LEASE_MODE").unwrap_or_default())
}

pub fn mode_parse(s: &str) -> Mode {
    match s {
        "s" => Mode::Shared,
        p if p.starts_with('p') => Mode::Permits(p[1..].parse().unwrap_or(1)),
        _ => Mode::Exclusive,
    }
}

pub fn mode_arg(m: Mode) -> String {
    match m {
        Mode::Shared => "s".into(),
        Mode::Permits(n) => format!("p{n}"),
        _ => "x".into(),
    }
}

/// A mode that has to wait for a holder in `m`: exclusive for shared, else `m` itself.
pub fn rival(m: Mode) -> Mode {
    match m {
        Mode::Shared => Mode::Exclusive,
        other => other,
    }
}

/// How many holders in `m` it takes before a [`rival`] request waits.
pub fn blockers(m: Mode) -> usize {
    match m {
        Mode::Permits(n) => n as usize,
        _ => 1,
    }
}

// ---------------------------------------------------------------- the resource

/// A plain PostgreSQL connection for the protected resource and for tampering.
pub struct Db {
    pub client: tokio_postgres::Client,
}

impl Db {
    pub async fn connect() -> Db {
        let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL is reachable (run scripts/services.sh)");
        tokio::spawn(conn);
        Db { client }
    }

    /// Creates the resource tables (parent only, before children start).
    pub async fn setup(&self) {
        for stmt in [
            "CREATE TABLE IF NOT EXISTS lease_test_resource (name text PRIMARY KEY, value bigint NOT NULL DEFAULT 0, last_fence bigint NOT NULL DEFAULT 0)",
            "CREATE TABLE IF NOT EXISTS lease_test_log (id bigserial PRIMARY KEY, name text NOT NULL, fence bigint NOT NULL, pid int NOT NULL)",
            "CREATE TABLE IF NOT EXISTS lease_test_inside (name text PRIMARY KEY, n integer NOT NULL)",
        ] {
            for attempt in 0.. {
                match self.client.batch_execute(stmt).await {
                    Ok(()) => break,
                    Err(_) if attempt < 3 => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(e) => panic!("creating the resource tables: {e}"),
                }
            }
        }
    }

    pub async fn init(&self, name: &str) {
        self.client
            .execute(
                "INSERT INTO lease_test_resource (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&name],
            )
            .await
            .expect("insert resource row");
    }

    /// One read-modify-write step under `fence`. False if the fenced write was refused.
    pub async fn fenced_increment(&self, name: &str, fence: u64) -> bool {
        let fence = fence as i64;
        let row = self
            .client
            .query_one(
                "SELECT value FROM lease_test_resource WHERE name = $1",
                &[&name],
            )
            .await
            .expect("read");
        let v: i64 = row.get(0);
        // Widen the window in which a second holder would cause a lost update.
        tokio::time::sleep(Duration::from_micros(300)).await;
        let n = self
            .client
            .execute(
                "UPDATE lease_test_resource SET value = $2, last_fence = $3 WHERE name = $1 AND last_fence <= $3",
                &[&name, &(v + 1), &fence],
            )
            .await
            .expect("write");
        if n == 1 {
            self.client
                .execute(
                    "INSERT INTO lease_test_log (name, fence, pid) VALUES ($1, $2, $3)",
                    &[&name, &fence, &(std::process::id() as i32)],
                )
                .await
                .expect("log");
        }
        n == 1
    }

    /// The documented fenced write; false if refused.
    pub async fn fenced_write(&self, name: &str, fence: u64) -> bool {
        let fence = fence as i64;
        self.client
            .execute(
                "UPDATE lease_test_resource SET value = value + 1, last_fence = $2 WHERE name = $1 AND last_fence <= $2",
                &[&name, &fence],
            )
            .await
            .expect("fenced write")
            == 1
    }

    pub async fn value(&self, name: &str) -> i64 {
        self.client
            .query_one(
                "SELECT value FROM lease_test_resource WHERE name = $1",
                &[&name],
            )
            .await
            .expect("value")
            .get(0)
    }

    pub async fn fence_log(&self, name: &str) -> Vec<i64> {
        self.client
            .query(
                "SELECT fence FROM lease_test_log WHERE name = $1 ORDER BY id",
                &[&name],
            )
            .await
            .expect("log")
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Adds `by` to the inside-counter of `name`; the new count.
    pub async fn count_in(&self, name: &str, by: i32) -> i64 {
        let row = self
            .client
            .query_one(
                "INSERT INTO lease_test_inside (name, n) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET n = lease_test_inside.n + $2 RETURNING n::bigint",
                &[&name, &by],
            )
            .await
            .expect("inside counter");
        row.get(0)
    }

    /// Terminates every backend with this application_name; returns how many.
    pub async fn terminate_app(&self, app: &str) -> usize {
        self.client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
                &[&app],
            )
            .await
            .expect("pg_terminate_backend")
            .len()
    }
}

pub async fn redis_conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url().as_str())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is reachable (run scripts/services.sh)")
}

/// Whether the store shows a live lease on `name`.
pub async fn lease_live(kind: Kind, name: &str) -> bool {
    !AnyStore::new(kind)
        .leases_of(name)
        .await
        .expect("listing")
        .is_empty()
}

/// How many waiters stand in the store's queue of `name` right now.
pub async fn queue_len(kind: Kind, name: &str) -> usize {
    match kind {
        Kind::Postgres => {
            let db = Db::connect().await;
            db.client
                .query_opt(
                    "SELECT jsonb_array_length(waiters) FROM lock_core_locks WHERE name = $1",
                    &[&name],
                )
                .await
                .expect("queue")
                .map(|r| r.get::<_, i32>(0) as usize)
                .unwrap_or(0)
        }
        Kind::Dynamo => dynamo_item(name)
            .await
            .and_then(|item| {
                item.get("waiters")
                    .and_then(|w| w.as_m().ok())
                    .map(|w| w.len())
            })
            .unwrap_or(0),
        Kind::Redis => {
            let store = RedisStore::new(&redis_url()).unwrap();
            let mut c = redis_conn().await;
            let raw: Option<String> = redis::cmd("GET")
                .arg(store.lease_key(name))
                .query_async(&mut c)
                .await
                .unwrap();
            // The state is JSON; an empty queue is `[]` or `{}` (Lua's empty table).
            raw.map(|j| {
                let w = j.split("\"w\":").nth(1).unwrap_or("");
                if !w.starts_with('[') {
                    return 0;
                }
                let end = w.find(']').unwrap_or(0);
                w[..end].matches("\"o\"").count()
            })
            .unwrap_or(0)
        }
        Kind::Etcd => {
            let store = EtcdStore::new(&etcd_url()).unwrap();
            let prefix = format!("{}w/", store.name_prefix(name));
            let mut c = etcd_client().await;
            c.get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
                .await
                .expect("etcd read")
                .kvs()
                .len()
        }
    }
}

/// The raw item of `name` in the DynamoDB tests' table.
pub async fn dynamo_item(
    name: &str,
) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    dynamo_client(&dynamo_endpoint(), "test")
        .get_item()
        .table_name(dynamo_table())
        .key("name", AttributeValue::S(name.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem on moto")
        .item
}

/// Ends the lease behind its holder's back: expires it (PostgreSQL, DynamoDB: every
/// holder's expiry set to 0) or deletes it (Redis: the key; DynamoDB: the holders, not
/// the item, which keeps the fence counter).
pub async fn steal(kind: Kind, name: &str, delete: bool) {
    match kind {
        Kind::Dynamo => {
            use aws_sdk_dynamodb::types::AttributeValue;
            let item = dynamo_item(name).await.expect("the lease item exists");
            let holders: Vec<String> = item
                .get("holders")
                .and_then(|h| h.as_m().ok())
                .map(|h| h.keys().cloned().collect())
                .unwrap_or_default();
            assert!(!holders.is_empty(), "the lease has holders");
            let client = dynamo_client(&dynamo_endpoint(), "test");
            for (i, owner) in holders.iter().enumerate() {
                let mut up = client
                    .update_item()
                    .table_name(dynamo_table())
                    .key("name", AttributeValue::S(name.to_owned()))
                    .expression_attribute_names("#h", "holders")
                    .expression_attribute_names("#o", owner)
                    .expression_attribute_names("#v", "ver")
                    .expression_attribute_values(":one", AttributeValue::N("1".into()));
                up = if delete {
                    up.update_expression("REMOVE #h.#o ADD #v :one")
                } else {
                    up.update_expression("SET #h.#o.#e = :zero ADD #v :one")
                        .expression_attribute_names("#e", "expires")
                        .expression_attribute_values(":zero", AttributeValue::N("0".into()))
                };
                up.send()
                    .await
                    .unwrap_or_else(|e| panic!("steal holder {i}: {e:?}"));
            }
        }
        Kind::Postgres => {
            let db = Db::connect().await;
            let sql = if delete {
                "DELETE FROM lock_core_locks WHERE name = $1"
            } else {
                "UPDATE lock_core_locks SET holders = (SELECT jsonb_agg(jsonb_set(x, '{e}', '0')) \
                 FROM jsonb_array_elements(holders) x) WHERE name = $1"
            };
            let n = db.client.execute(sql, &[&name]).await.unwrap();
            assert_eq!(n, 1, "the lease row exists");
        }
        Kind::Redis => {
            let store = RedisStore::new(&redis_url()).unwrap();
            let mut c = redis_conn().await;
            let n: i64 = if delete {
                redis::cmd("DEL")
                    .arg(store.lease_key(name))
                    .query_async(&mut c)
                    .await
                    .unwrap()
            } else {
                redis::cmd("PEXPIRE")
                    .arg(store.lease_key(name))
                    .arg(1)
                    .query_async(&mut c)
                    .await
                    .unwrap()
            };
            assert_eq!(n, 1, "the lease key exists");
        }
        Kind::Etcd => {
            // Deletes the holder keys, or revokes their etcd leases (which expires them).
            let store = EtcdStore::new(&etcd_url()).unwrap();
            let prefix = format!("{}h/", store.name_prefix(name));
            let mut c = etcd_client().await;
            let kvs = c
                .get(
                    prefix.clone(),
                    Some(etcd_client::GetOptions::new().with_prefix()),
                )
                .await
                .expect("etcd read")
                .kvs()
                .to_vec();
            assert!(!kvs.is_empty(), "the holder keys exist");
            if delete {
                c.delete(
                    prefix,
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                )
                .await
                .expect("etcd delete");
            } else {
                for kv in kvs {
                    c.lease_revoke(kv.lease()).await.expect("etcd revoke");
                }
            }
        }
    }
}

/// Kills every Redis pub/sub connection; returns how many.
pub async fn redis_kill_pubsub() -> usize {
    let mut c = redis_conn().await;
    let n: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut c)
        .await
        .expect("CLIENT KILL");
    usize::try_from(n).unwrap_or(0)
}

/// Kills the Redis connections of process `pid` (found via /proc: its sockets' local
/// ports, matched against `CLIENT LIST`). Returns how many.
pub async fn redis_kill_clients_of(pid: u32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|p| {
                    let s = p.to_string_lossy().into_owned();
                    s.strip_prefix("socket:[")
                        .and_then(|r| r.strip_suffix(']'))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.iter().any(|i| i == f[9]) {
                if let Some(port) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
    }
    let mut c = redis_conn().await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut killed = 0;
    for line in list.lines() {
        let addr = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("addr="))
            .unwrap_or("");
        let port: Option<u16> = addr.rsplit(':').next().and_then(|p| p.parse().ok());
        if port.is_some_and(|p| ports.contains(&p)) {
            let r: redis::RedisResult<()> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg(addr)
                .query_async(&mut c)
                .await;
            if r.is_ok() {
                killed += 1;
            }
        }
    }
    killed
}

// ---------------------------------------------------------------- child processes

/// A child process running a role of [`child_main`].
pub struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub pid: u32,
    pub seen: Vec<String>,
}

impl ChildProc {
    pub fn spawn(role: &str, kind: Kind, name: &str, env: &[(&str, String)]) -> ChildProc {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = Command::new(exe);
        cmd.args([
            "--exact",
            "lease_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, role)
        .env("LEASE_STORE", kind.as_str())
        .env("LEASE_NAME", name)
        .envs(if kind == Kind::Dynamo {
            let mut env = dynamo_env(&dynamo_endpoint());
            env.push(("LEASE_DYNAMO_TABLE", dynamo_table().to_owned()));
            env
        } else {
            Vec::new()
        })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test lease_child ... " just before our first line.
                if let Some((_, msg)) = line.split_once("@@ ") {
                    if tx.send(msg.to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let pid = child.id();
        ChildProc {
            child,
            stdin,
            lines: rx,
            pid,
            seen: Vec::new(),
        }
    }

    /// Waits for a message starting with `prefix`; earlier messages are kept in `seen`.
    pub fn expect(&mut self, prefix: &str, within: Duration) -> String {
        // Blocks: let the runtime move its other tasks away meanwhile.
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.expect_blocking(prefix, within)),
            Err(_) => self.expect_blocking(prefix, within),
        }
    }

    fn expect_blocking(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "child {} did not say {prefix:?} within {within:?}; it said {:?}",
                    self.pid, self.seen
                ),
            }
        }
    }

    /// Collects whatever the child said so far.
    pub fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    pub fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// Sends `sig`. For `SIGSTOP`, returns once the child *is* stopped: kill(2) only
    /// makes the signal pending, and a child running on the other core (a loaded machine)
    /// may still act — say, take a lease just released — before it stops.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let r = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(r, 0, "kill({}, {sig})", self.pid);
        if sig == libc::SIGSTOP {
            self.await_stopped(Duration::from_secs(10));
        }
    }

    /// Waits (bounded) until the kernel reports the child stopped (`T` in
    /// `/proc/<pid>/stat`).
    fn await_stopped(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
            // The state follows the command name, which is in parentheses.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            if matches!(state, Some('T' | 't')) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "child {} not stopped {within:?} after SIGSTOP (state {state:?})",
                self.pid
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for the child to exit successfully.
    pub fn wait_ok(self, within: Duration) {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.wait_ok_blocking(within)),
            Err(_) => self.wait_ok_blocking(within),
        }
    }

    fn wait_ok_blocking(mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let pid = self.pid;
        loop {
            match self.child.try_wait().expect("try_wait") {
                Some(status) => {
                    assert!(
                        status.success(),
                        "child {pid} failed: {status}; said {:?}",
                        self.drain()
                    );
                    return;
                }
                None if Instant::now() > deadline => {
                    panic!(
                        "child {pid} still running after {within:?}; said {:?}",
                        self.drain()
                    )
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn say(msg: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@@ {}", msg.as_ref());
    let _ = out.flush();
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The body of the `lease_child` test in a child process; a no-op elsewhere.
pub fn child_main() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let kind = Kind::parse(&std::env::var("LEASE_STORE").unwrap_or_default());
        let name = std::env::var("LEASE_NAME").expect("LEASE_NAME");
        let app = std::env::var("LEASE_APP").ok();
        let store = AnyStore::with_app(kind, app.as_deref());
        let ttl = env_u64("LEASE_TTL_MS", 1000);
        match role.as_str() {
            "rmw" => child_rmw(&store, &name, ttl).await,
            "hold" => child_hold(&store, &name, ttl).await,
            "wait" => child_wait(&store, &name, ttl).await,
            "turns" => child_turns(&store, &name, ttl).await,
            "inside" => child_inside(&store, &name, ttl).await,
            "lead" => child_lead(&store, &name, ttl).await,
            other => panic!("unknown child role {other}"),
        }
    });
}

async fn child_rmw(store: &AnyStore, name: &str, ttl: u64) {
    let steps = env_u64("LEASE_STEPS", 100);
    let db = Db::connect().await;
    let mut rejected = 0;
    for _ in 0..steps {
        let g = lease::acquire(store, name, opts(ttl).timeout(Duration::from_secs(60)))
            .await
            .expect("acquire");
        if !db.fenced_increment(name, g.fence()).await {
            rejected += 1;
        }
        g.release().await.expect("release");
    }
    say(format!("DONE rejected={rejected}"));
}

/// Micro-seconds since the epoch (one clock for every process of the machine).
pub fn unix_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Takes `LEASE_STEPS` turns once told `GO`, holding each `LEASE_HOLD_MS`; says
/// `TURN <fence> <acquired us> <releasing us>` per turn. Waiters rest `LEASE_BACKOFF_MS`
/// between attempts (so that only wake-ups from the store make hand-offs fast).
async fn child_turns(store: &AnyStore, name: &str, ttl: u64) {
    let steps = env_u64("LEASE_STEPS", 40);
    let hold = Duration::from_millis(env_u64("LEASE_HOLD_MS", 2));
    let rest = Duration::from_millis(env_u64("LEASE_BACKOFF_MS", 1000));
    // Warm before the race (connections, the first acquisition's one-time costs): the
    // turns measure the store, and a child still starting up while another takes turns
    // is not waiting yet.
    let warm = lease::acquire(
        store,
        &format!("{name}-warm-{}", std::process::id()),
        opts(ttl),
    )
    .await
    .expect("warm-up");
    warm.release().await.expect("warm-up release");
    let mut rx = stdin_lines();
    // Connected (and, for DynamoDB, the client configured and the table checked) before
    // the race starts, so that no process takes turns while another still sets up.
    let _ = store.holder(name).await;
    say("READY");
    while rx.recv().await.is_some_and(|l| l != "GO") {}
    for _ in 0..steps {
        let o = opts(ttl)
            .retry_backoff(rest, rest)
            .timeout(Duration::from_secs(60));
        let g = lease::acquire(store, name, o).await.expect("acquire");
        let at = unix_us();
        tokio::time::sleep(hold).await;
        let out = unix_us();
        say(format!("TURN {} {at} {out}", g.fence()));
        g.release().await.expect("release");
    }
    say("DONE");
}

/// Counts itself in and out of a shared counter row while it holds a permit; says the
/// highest count it saw.
async fn child_inside(store: &AnyStore, name: &str, ttl: u64) {
    let steps = env_u64("LEASE_STEPS", 30);
    let db = Db::connect().await;
    let mut max = 0i64;
    for _ in 0..steps {
        let g = lease::acquire(store, name, opts(ttl).timeout(Duration::from_secs(60)))
            .await
            .expect("acquire");
        let n = db.count_in(name, 1).await;
        max = max.max(n);
        tokio::time::sleep(Duration::from_millis(2)).await;
        db.count_in(name, -1).await;
        g.release().await.expect("release");
    }
    say(format!("DONE max={max}"));
}

/// Campaigns for the lead of `name`; says `LEADING <fence>` once it leads and `LOST`
/// if the lead is lost; resigns on `EXIT`.
async fn child_lead(store: &AnyStore, name: &str, ttl: u64) {
    let election = lease::Election::new(store.clone(), name)
        .with_options(opts(ttl).timeout(Duration::from_secs(60)));
    let mut rx = stdin_lines();
    say("CAMPAIGNING");
    let lead = election.campaign().await.expect("campaign");
    say(format!("LEADING {}", lead.fence()));
    tokio::select! {
        e = lead.lost() => say(format!("LOST {e}")),
        _ = async { while rx.recv().await.is_some_and(|l| l != "EXIT") {} } => {}
    }
    let _ = lead.resign().await;
}

async fn child_wait(store: &AnyStore, name: &str, ttl: u64) {
    say("WAITING");
    let g = lease::acquire(store, name, opts(ttl).timeout(Duration::from_secs(20)))
        .await
        .expect("acquire");
    say(format!("ACQUIRED {} {}", g.fence(), unix_ms()));
    g.release().await.expect("release");
}

/// Holds the lease until told to exit. Reports `HOLD <unix ms>` every 20 ms while it
/// believes it holds the lease (time taken *before* the check), `LOST` when the signal
/// fires, and answers `WRITE` with the outcome of a fenced write.
async fn child_hold(store: &AnyStore, name: &str, ttl: u64) {
    let db = Db::connect().await;
    let g = lease::acquire(store, name, opts(ttl).timeout(Duration::from_secs(20)))
        .await
        .expect("acquire");
    say(format!("ACQUIRED {}", g.fence()));
    let lost = g.lost();
    tokio::spawn(async move {
        let e = lost.await;
        say(format!("LOST {e}"));
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let report = std::env::var("LEASE_REPORT").is_ok();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = tick.tick(), if report => {
                let ts = unix_ms();
                if g.remaining().is_some() && !g.is_lost() {
                    say(format!("HOLD {ts}"));
                }
            }
            cmd = rx.recv() => match cmd.as_deref() {
                Some("WRITE") => {
                    let ok = db.fenced_write(name, g.fence()).await;
                    say(format!(
                        "WRITE {} remaining={} lost={}",
                        if ok { "ok" } else { "rejected" },
                        if g.remaining().is_some() { "some" } else { "none" },
                        g.is_lost()
                    ));
                }
                Some("STATUS") => say(format!("STATUS lost={} remaining={:?}", g.is_lost(), g.remaining())),
                Some("EXIT") | None => break,
                Some(_) => {}
            }
        }
    }
    let outcome = g.release().await;
    say(format!("RELEASED {}", outcome.is_ok()));
}

/// Acquires exclusively in this (the parent) process.
pub async fn take(
    store: &AnyStore,
    name: &str,
    ttl: u64,
    timeout: Duration,
) -> Result<LeaseGuard, LockError> {
    take_in(store, name, ttl, timeout, Mode::Exclusive).await
}

/// Acquires in `mode` in this (the parent) process.
pub async fn take_in(
    store: &AnyStore,
    name: &str,
    ttl: u64,
    timeout: Duration,
    mode: Mode,
) -> Result<LeaseGuard, LockError> {
    lease::acquire(store, name, opts(ttl).timeout(timeout).mode(mode)).await
}

/// The scenarios every lease store runs, as test functions of the calling file (which
/// imports `scenarios` and `waking`); `$kind` picks the store. Store-specific tests stay
/// in the store's file.
#[macro_export]
macro_rules! common_lease_tests {
    ($kind:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn many_processes_read_modify_write() {
            scenarios::many_processes_read_modify_write($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn basics_and_macro_path() {
            scenarios::basics_and_macro_path($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn unreachable_store_is_a_store_error() {
            scenarios::unreachable_store($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn through_the_attribute() {
            scenarios::through_the_attribute($kind).await;
        }
        #[test]
        fn store_survives_runtime_changes() {
            scenarios::store_survives_runtime_changes($kind);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn dead_waiter_leaves_the_queue_within_its_ttl() {
            waking::dead_waiter_leaves_queue($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn permits_never_above_n_across_processes() {
            waking::permits_never_above_n($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn election_one_leader_and_takeover_after_sigkill() {
            waking::election($kind).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn attribute_in_every_shape() {
            scenarios::attribute_shapes($kind).await;
        }
    };
}

/// One test per check of the public conformance suite, against the store of `$kind`.
#[macro_export]
macro_rules! conformance_tests {
    ($kind:expr) => {
        mod conformance {
            use super::lease_support::AnyStore;
            use lock_core::lease::conformance as c;

            fn store() -> AnyStore {
                AnyStore::new($kind)
            }

            macro_rules! check {
                ($name:ident, $call:expr) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let s = store();
                        tokio::time::timeout(c::CHECK_LIMIT, $call(&s))
                            .await
                            .expect(concat!("conformance check `", stringify!($name), "` hung"));
                    }
                };
            }

            check!(exclusion, c::exclusion);
            check!(fences_increase, c::fences_increase);
            check!(expiry_takeover, c::expiry_takeover);
            check!(refresh_and_release_compare, c::refresh_and_release_compare);
            check!(lost_detection, c::lost_detection);
            check!(cancel_storm_of_1000, |s| c::cancel_storm(s, 1000));
            check!(shared, c::shared);
            check!(permits, c::permits);
            check!(mismatch, c::mismatch);
            check!(many_names, c::many_names);
            check!(fair_turns, c::fair_turns);
        }
    };
}

/// The fault tests, once per shape, against the store of `crate::KIND`.
#[macro_export]
macro_rules! fault_tests {
    // Stores without a session a test could kill (DynamoDB, etcd's per-request
    // clients): every fault test but the connection-kill one.
    (sessionless: $($shape:ident => $mode:expr),* $(,)?) => {
        $( $crate::fault_tests!(@shape no_session $shape $mode); )*
    };
    ($($shape:ident => $mode:expr),* $(,)?) => {
        $( $crate::fault_tests!(@shape session $shape $mode); )*
    };
    (@session session) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn killed_connection_reconnects_or_loses() {
            scenarios::connection_killed($crate::KIND, MODE).await;
        }
    };
    (@session no_session) => {};
    (@shape $session:ident $shape:ident $mode:expr) => {
        mod $shape {
            use $crate::lease_support::scenarios;
            use lock_core::Mode;

            const MODE: Mode = $mode;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sigkill_holder_waiter_takes_over() {
                scenarios::sigkill_holder($crate::KIND, MODE).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sigstop_holder_is_fenced_and_told() {
                scenarios::sigstop_holder($crate::KIND, MODE).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn expired_behind_holders_back_is_lost() {
                scenarios::ended_behind_holders_back($crate::KIND, false, MODE).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn deleted_behind_holders_back_is_lost() {
                scenarios::ended_behind_holders_back($crate::KIND, true, MODE).await;
            }

            $crate::fault_tests!(@session $session);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn acquire_timeout_is_honoured() {
                scenarios::acquire_timeout($crate::KIND, MODE).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn random_cancellations_leave_nothing_held() {
                scenarios::random_cancellations($crate::KIND, MODE).await;
            }
        }
    };
}
