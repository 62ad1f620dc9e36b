//! Case 6 and case 10 on DynamoDB (moto on loopback): an idle lease acquire + release
//! against one `GetItem`, and the cross-process hand-off of leases (three names in
//! rotation, see `lock_core_benches::handoff`) with waiters polling, as they must on
//! DynamoDB; then the median and p90 of single hand-off steps.
//!
//! Needs the `dynamodb` feature and moto: `scripts/services.sh`, then
//! `cargo bench -p lock-core-benches --features dynamodb --bench lease_dynamodb`. The
//! endpoint comes from `LOCK_CORE_DYNAMODB_ENDPOINT` (default `http://127.0.0.1:5005`,
//! loopback only), with fake credentials: it never reaches AWS.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Criterion;
use lock_core::lease::dynamodb::aws_sdk_dynamodb as ddb;
use lock_core::lease::dynamodb::DynamoDbStore;
use lock_core::lease::{self, LeaseGuard, LeaseOptions};
use lock_core_benches::handoff::{self, Locks};
use lock_core_benches::runtime;

const CHILD_ENV: &str = "LOCK_CORE_BENCH_DYNAMO_CHILD";
const TABLE: &str = "lock_core_bench_leases";

fn endpoint() -> String {
    let e = std::env::var("LOCK_CORE_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:5005".to_owned());
    assert!(
        e.starts_with("http://127.0.0.1:") || e.starts_with("http://localhost:"),
        "LOCK_CORE_DYNAMODB_ENDPOINT must be a loopback http:// endpoint, got {e}"
    );
    e
}

fn client() -> ddb::Client {
    let config = ddb::Config::builder()
        .behavior_version(ddb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(ddb::config::Region::new("us-east-1"))
        .credentials_provider(ddb::config::Credentials::new(
            "bench", "bench", None, None, "bench",
        ))
        .build();
    ddb::Client::from_conf(config)
}

fn store() -> DynamoDbStore {
    DynamoDbStore::from_client(client(), TABLE).expect("store")
}

fn options() -> LeaseOptions {
    LeaseOptions::new()
        .ttl(Duration::from_secs(10))
        .timeout(Duration::from_secs(5))
}

/// Three leases of one side of the hand-off.
struct LeaseLocks {
    store: DynamoDbStore,
    base: String,
    held: [Option<LeaseGuard>; 3],
    rt: tokio::runtime::Runtime,
}

impl LeaseLocks {
    fn new(base: &str) -> LeaseLocks {
        LeaseLocks {
            store: store(),
            base: base.to_owned(),
            held: [None, None, None],
            rt: runtime(1),
        }
    }
}

impl Locks for LeaseLocks {
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

fn idle(c: &mut Criterion) {
    let rt = runtime(2);
    let store = store();
    let client = client();
    let name = format!("bench-lease-dynamo-{}", std::process::id());
    // Makes the table and the item.
    rt.block_on(async {
        let g = lease::acquire(&store, &name, options())
            .await
            .expect("lease");
        g.release().await.expect("release");
    });
    let mut g = c.benchmark_group("lease_dynamodb");
    g.bench_function("GetItem (one round trip)", |b| {
        b.to_async(&rt).iter(|| async {
            client
                .get_item()
                .table_name(TABLE)
                .key("name", ddb::types::AttributeValue::S(name.clone()))
                .consistent_read(true)
                .send()
                .await
                .expect("get");
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

fn handoff_parent(rounds: u64) -> Duration {
    let base = format!("bench-handoff-dynamo-{}-{}", std::process::id(), rounds);
    let env = (CHILD_ENV, format!("{base}:{rounds}"));
    handoff::parent(&mut LeaseLocks::new(&base), env, rounds)
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("lease_cross_process_handoff");
    g.sample_size(10);
    g.bench_function("dynamodb (polled)", |b| b.iter_custom(handoff_parent));
    g.finish();
}

/// Single hand-off steps (release one lease, then wait for the next one, which the
/// other process releases): their median and p90, as the multi-process tests report
/// them for the other stores.
fn handoff_percentiles(steps: u64) {
    let base = format!("bench-handoff-steps-{}", std::process::id());
    let mut a = LeaseLocks::new(&base);
    a.take(0);
    a.take(1);
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env(CHILD_ENV, format!("{base}:{steps}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let mut times = Vec::with_capacity(steps as usize);
    let mut r = 0;
    for _ in 0..steps {
        let t0 = Instant::now();
        a.give(r);
        a.take((r + 2) % 3);
        times.push(t0.elapsed());
        r = (r + 1) % 3;
    }
    for i in 0..3 {
        a.give(i);
    }
    assert!(child.wait().expect("child").success());
    times.sort_unstable();
    let at = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    println!(
        "lease_cross_process_handoff/dynamodb steps: {} steps, median {:?}, p90 {:?}, max {:?}",
        times.len(),
        at(50),
        at(90),
        times[times.len() - 1]
    );
}

fn main() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        let (base, rounds) = role.rsplit_once(':').expect("child role");
        handoff::child(&mut LeaseLocks::new(base), rounds.parse().expect("rounds"));
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    idle(&mut c);
    handoff(&mut c);
    c.final_summary();
    handoff_percentiles(200);
}
