//! Case 6: lease acquire+release on PostgreSQL and Redis against one round trip on the
//! same store (`SELECT 1` / `PING`), in one group per store.
//!
//! Needs the servers: `scripts/services.sh`, then
//! `cargo bench -p lock-core-benches --bench lease`. Addresses come from
//! `LOCK_CORE_POSTGRES_URL` / `LOCK_CORE_REDIS_URL` (loopback defaults).

use std::time::Duration;

use criterion::Criterion;
use lock_core::lease::postgres::PostgresStore;
use lock_core::lease::redis::RedisStore;
use lock_core::lease::{self, LeaseOptions};
use lock_core_benches::runtime;

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
    let store = PostgresStore::new(&url(
        "LOCK_CORE_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    ))
    .expect("postgres store");
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
    let redis_url = url("LOCK_CORE_REDIS_URL", "redis://127.0.0.1:6379");
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
    let mut c = Criterion::default().configure_from_args();
    postgres(&mut c);
    redis(&mut c);
    c.final_summary();
}
