use std::time::{Duration, Instant};
use lock_core::lease::{self, postgres::PostgresStore, LeaseOptions, LeaseStore, Attempt};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench() {
    let p = PostgresStore::new("postgres://postgres@127.0.0.1:5432/test?options=-c%20synchronous_commit%3Doff").unwrap();
    let n = 2000;
    let ttl = Duration::from_secs(10);
    for _ in 0..50 { lease::acquire(&p, "bench-p", LeaseOptions::new()).await.unwrap().release().await.unwrap(); }
    let t = Instant::now();
    let mut ta = Duration::ZERO;
    for i in 0..n {
        let o = format!("o{i}");
        let t1 = Instant::now();
        let Attempt::Acquired(l) = p.try_acquire("bench-p", &o, ttl).await.unwrap() else { panic!() };
        ta += t1.elapsed();
        assert!(p.release("bench-p", &l).await.unwrap());
    }
    println!("raw try_acquire+release: {:?}  (acquire alone {:?})", t.elapsed() / n, ta / n);
    let c = p.pool().get().await.unwrap();
    let t = Instant::now();
    for _ in 0..n { c.query_typed("SELECT 1", &[]).await.unwrap(); }
    println!("query_typed SELECT 1: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n { drop(p.pool().get().await.unwrap()); }
    println!("pool get: {:?}", t.elapsed() / n);
}
