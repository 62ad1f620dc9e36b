//! Case 6: lease acquire+release on PostgreSQL and Redis against one round trip on the
//! same store (`SELECT 1` / `PING`), in one group per store.
//! Case 10: cross-process hand-off of leases (release by one process, acquisition by the
//! waiting other; three names in rotation, see `lock_core_benches::handoff`), woken by
//! the store (LISTEN/NOTIFY, pub/sub, an etcd watch) and, for reference, polled
//! (notifications off).
//!
//! Needs the servers: `scripts/services.sh`, then
//! `cargo bench -p lock-core-benches --bench lease`. Addresses come from
//! `LOCK_CORE_POSTGRES_URL` / `LOCK_CORE_REDIS_URL` / `LOCK_CORE_ETCD_URL` (loopback
//! defaults).

use std::time::Duration;

use criterion::Criterion;
use lock_core::lease::etcd::EtcdStore;
use lock_core::lease::postgres::PostgresStore;
use lock_core::lease::redis::RedisStore;
use lock_core::lease::{self, LeaseGuard, LeaseOptions, LeaseStore};
use lock_core_benches::handoff::{self, Locks};
use lock_core_benches::runtime;

const CHILD_ENV: &str = "LOCK_CORE_BENCH_LEASE_CHILD";

fn pg_url() -> String {
    url(
        "LOCK_CORE_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

fn redis_url() -> String {
    url("LOCK_CORE_REDIS_URL", "redis://127.0.0.1:6379")
}

fn etcd_url() -> String {
    url(
        "LOCK_CORE_ETCD_URL",
        "etcd://127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793",
    )
}

/// A Redis store with its wake-ups hidden: waiters poll (the reference for case 10).
#[derive(Clone)]
struct Polled(RedisStore);

impl LeaseStore for Polled {
    fn describe(&self) -> String {
        self.0.describe()
    }
    async fn try_acquire(
        &self,
        req: &lease::Request<'_>,
    ) -> Result<lease::Attempt, lock_core::LockError> {
        self.0.try_acquire(req).await
    }
    async fn refresh(
        &self,
        name: &str,
        l: &lease::Lease,
        ttl: Duration,
    ) -> Result<bool, lock_core::LockError> {
        self.0.refresh(name, l, ttl).await
    }
    async fn release(&self, name: &str, l: &lease::Lease) -> Result<bool, lock_core::LockError> {
        self.0.release(name, l).await
    }
    async fn leave(&self, name: &str, owner: &str) -> Result<(), lock_core::LockError> {
        self.0.leave(name, owner).await
    }
}

/// Three leases of one side of the hand-off.
struct LeaseLocks<S: LeaseStore> {
    store: S,
    base: String,
    held: [Option<LeaseGuard>; 3],
    rt: tokio::runtime::Runtime,
}

impl<S: LeaseStore> Locks for LeaseLocks<S> {
    fn take(&mut self, i: usize) {
        let name = format!("{}-{i}", self.base);
        let g = self
            .rt
            .block_on(lease::acquire(&self.store, &name, options()))
            .expect("lease");
        self.held[i] = Some(g);
    }
    fn give(&mut self, i: usize) {
        if let Some(g) = self.held[i].take() {
            self.rt.block_on(g.release()).expect("release");
        }
    }
}

fn lease_locks(kind: &str, base: &str) -> Box<dyn Locks> {
    let rt = runtime(1);
    let base = base.to_owned();
    let held = [None, None, None];
    match kind {
        "postgres" => Box::new(LeaseLocks {
            store: PostgresStore::new(&pg_url()).expect("store"),
            base,
            held,
            rt,
        }),
        "postgres-polled" => Box::new(LeaseLocks {
            store: PostgresStore::builder(&pg_url())
                .notifications(false)
                .build()
                .expect("store"),
            base,
            held,
            rt,
        }),
        "redis" => Box::new(LeaseLocks {
            store: RedisStore::new(&redis_url()).expect("store"),
            base,
            held,
            rt,
        }),
        "redis-polled" => Box::new(LeaseLocks {
            store: Polled(RedisStore::new(&redis_url()).expect("store")),
            base,
            held,
            rt,
        }),
        "etcd" => Box::new(LeaseLocks {
            store: EtcdStore::new(&etcd_url()).expect("store"),
            base,
            held,
            rt,
        }),
        _ => panic!("unknown store {kind}"),
    }
}

fn handoff_parent(kind: &str, rounds: u64) -> Duration {
    let base = format!("bench-handoff-{kind}-{}", std::process::id());
    let env = (CHILD_ENV, format!("{kind}:{base}:{rounds}"));
    handoff::parent(&mut *lease_locks(kind, &base), env, rounds)
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("lease_cross_process_handoff");
    g.sample_size(10);
    for kind in [
        "postgres",
        "postgres-polled",
        "redis",
        "redis-polled",
        "etcd",
    ] {
        g.bench_function(kind, |b| b.iter_custom(|n| handoff_parent(kind, n)));
    }
    g.finish();
}

fn url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

fn options() -> LeaseOptions {
    LeaseOptions::new()
        .ttl(Duration::from_secs(10))
        .timeout(Duration::from_secs(5))
}

fn postgres(c: &mut Criterion) {
    let rt = runtime(2);
    let store = PostgresStore::new(&pg_url()).expect("postgres store");
    let name = format!("bench-lease-pg-{}", std::process::id());
    rt.block_on(store.migrate()).expect("migrate");
    let mut g = c.benchmark_group("lease_postgres");
    g.bench_function("SELECT 1 (one round trip)", |b| {
        b.to_async(&rt).iter(|| async {
            let client = store.pool().get().await.expect("connection");
            client.query_one("SELECT 1", &[]).await.expect("select");
        })
    });
    g.bench_function("lease acquire+release", |b| {
        b.to_async(&rt).iter(|| async {
            let guard = lease::acquire(&store, &name, options())
                .await
                .expect("lease");
            guard.release().await.expect("release");
        })
    });
    g.finish();
}

fn redis(c: &mut Criterion) {
    let rt = runtime(2);
    let redis_url = redis_url();
    let store = RedisStore::new(&redis_url).expect("redis store");
    let client = lock_core::lease::redis::redis::Client::open(redis_url.as_str()).expect("client");
    let conn = rt
        .block_on(client.get_multiplexed_async_connection())
        .expect("redis connection");
    let name = format!("bench-lease-redis-{}", std::process::id());
    let mut g = c.benchmark_group("lease_redis");
    g.bench_function("PING (one round trip)", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = conn.clone();
            async move {
                let _: String = lock_core::lease::redis::redis::cmd("PING")
                    .query_async(&mut conn)
                    .await
                    .expect("ping");
            }
        })
    });
    g.bench_function("lease acquire+release", |b| {
        b.to_async(&rt).iter(|| async {
            let guard = lease::acquire(&store, &name, options())
                .await
                .expect("lease");
            guard.release().await.expect("release");
        })
    });
    g.finish();
}

fn main() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        let parts: Vec<&str> = role.splitn(3, ':').collect();
        let [kind, base, rounds] = parts.as_slice() else {
            panic!("unknown child role {role}");
        };
        handoff::child(
            &mut *lease_locks(kind, base),
            rounds.parse().expect("rounds"),
        );
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    postgres(&mut c);
    redis(&mut c);
    handoff(&mut c);
    c.final_summary();
}
