//! Lease store on DynamoDB: conformance and fault tests against moto (a DynamoDB-compatible
//! server) with real child processes. Needs the server from `scripts/services.sh` (or
//! `LOCK_CORE_DYNAMODB_ENDPOINT`, a loopback `http://` endpoint); the protected resource
//! of the fenced writes is the PostgreSQL row of the other lease tests. Every client is
//! given that endpoint, fake credentials and a fixed region explicitly: nothing here can
//! reach real AWS.

mod lease_support;

use lease_support::{child_main, scenarios, waking, Kind};

conformance_tests!(super::KIND);
common_lease_tests!(KIND);

// The connection-kill test does not apply: a DynamoDB client has no session to kill
// (see `moto_restarted_mid_run`).
fault_tests!(
    sessionless:
    exclusive => Mode::Exclusive,
    shared => Mode::Shared,
    permits => Mode::Permits(2),
);

const KIND: Kind = Kind::Dynamo;

/// Entry point of the child processes (re-executed test binary); a no-op otherwise.
#[test]
#[ignore = "child-process entry point of the lease tests"]
fn lease_child() {
    if std::env::var(lease_support::CHILD_ENV).as_deref() == Ok("sets") {
        sets_child();
        return;
    }
    child_main();
}

/// The name sets the `sets` children take, overlapping every way.
fn sets_of(base: &str) -> Vec<Vec<String>> {
    let n = |s: &str| format!("{base}/{s}");
    vec![
        vec![n("a"), n("b")],
        vec![n("b"), n("c")],
        vec![n("c"), n("a")],
        vec![n("a"), n("b"), n("c")],
    ]
}

/// Child role `sets`: `LEASE_STEPS` times, takes one of the overlapping name sets with
/// `acquire_many` (in `LEASE_MODE`), counts itself in on every name of the set (a
/// PostgreSQL counter row per name), and out again; says the highest count it saw.
fn sets_child() {
    use lease_support::{dynamo_store, opts, Db, Rng};
    use std::io::Write;
    use std::time::Duration;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let base = std::env::var("LEASE_NAME").expect("LEASE_NAME");
        let steps: u64 = std::env::var("LEASE_STEPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let store = dynamo_store();
        let db = Db::connect().await;
        let sets = sets_of(&base);
        let mut rng = Rng::seeded();
        let mut max = 0;
        for _ in 0..steps {
            let set = &sets[rng.below(sets.len() as u64) as usize];
            let held = lock_core::lease::acquire_many(
                &store,
                set,
                opts(10_000).timeout(Duration::from_secs(60)),
            )
            .await
            .expect("acquire_many");
            for name in set {
                max = max.max(db.count_in(name, 1).await);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            for name in set {
                db.count_in(name, -1).await;
            }
            held.release().await.expect("release");
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "@@ DONE max={max}");
        let _ = out.flush();
    });
}

/// Several names across processes, all or nothing (one `TransactWriteItems` per set):
/// three processes take overlapping sets; never more holders of a name than its shape
/// allows, and every counter is back to zero at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_names_across_processes() {
    use lease_support::{mode_arg, unique, ChildProc, Db};
    use lock_core::Mode;
    use std::time::Duration;
    let db = Db::connect().await;
    db.setup().await;
    // A table of its own: moto copies the whole table for every transaction.
    let table = format!(
        "lock_core_sets_{}_{}",
        std::process::id(),
        lease_support::unix_ms() % 1_000_000_000_000
    );
    for (mode, limit) in [(Mode::Exclusive, 1), (Mode::Permits(2), 2)] {
        let base = unique("sets");
        let mut children: Vec<ChildProc> = (0..3)
            .map(|_| {
                ChildProc::spawn(
                    "sets",
                    KIND,
                    &base,
                    &[
                        ("LEASE_STEPS", "20".into()),
                        ("LEASE_MODE", mode_arg(mode)),
                        ("LEASE_DYNAMO_TABLE", table.clone()),
                    ],
                )
            })
            .collect();
        for c in &mut children {
            let done = c.expect("DONE", Duration::from_secs(120));
            let max: i64 = done.trim_start_matches("DONE max=").parse().unwrap();
            assert!(max <= limit, "{mode:?}: {max} holders of one name at once");
        }
        for c in children {
            c.wait_ok(Duration::from_secs(10));
        }
        for set in sets_of(&base) {
            for name in set {
                assert_eq!(db.count_in(&name, 0).await, 0, "{name} counted out");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_take_turns_polling() {
    waking::turns(KIND, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_take_turns_polling() {
    waking::turns(KIND, 4).await;
}

/// The turn rule step by step on the store's primitives: a queued waiter passed over
/// twice is due, and the next request of another owner is refused in its favour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_rule_on_the_primitives() {
    use lock_core::lease::{Attempt, LeaseStore, Request};
    use std::time::Duration;
    let store = lease_support::dynamo_store();
    let name = lease_support::unique("turn-rule");
    let ttl = Duration::from_secs(10);
    let ask = |owner: &'static str| {
        let (store, name) = (store.clone(), name.clone());
        async move {
            store
                .try_acquire(&Request::exclusive(&name, owner, ttl).queued(true))
                .await
                .expect("try_acquire")
        }
    };
    let mut held = match ask("a/1/x/1").await {
        Attempt::Acquired(l) => l,
        other => panic!("{other:?}"),
    };
    assert!(matches!(ask("b/2/x/1").await, Attempt::Held { .. }));
    for (i, owner) in ["a/1/x/2", "a/1/x/3"].into_iter().enumerate() {
        assert!(store.release(&name, &held).await.unwrap());
        held = match ask(owner).await {
            Attempt::Acquired(l) => l,
            other => panic!("turn {i}: {other:?}"),
        };
    }
    assert!(store.release(&name, &held).await.unwrap());
    match ask("a/1/x/4").await {
        Attempt::Held { holder, .. } => assert_eq!(holder.as_deref(), Some("b/2/x/1")),
        other => panic!("the due waiter must go first: {other:?}"),
    }
    assert!(matches!(ask("b/2/x/1").await, Attempt::Acquired(_)));
    eprintln!("{:?}", lease_support::dynamo_item(&name).await);
}

/// A moto server of this test's own, on a free loopback port (so that stopping and
/// killing it never disturbs the shared one). Killed when dropped.
struct OwnMoto {
    child: std::process::Child,
    port: u16,
}

impl OwnMoto {
    fn start(port: Option<u16>) -> OwnMoto {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python = root.join("target/moto-venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/services.sh first",
            python.display()
        );
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port()
        });
        let child = std::process::Command::new(python)
            .arg(root.join("scripts/moto_serial.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = OwnMoto { child, port };
        let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < end,
                "moto did not start on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(r, 0, "kill(moto, {sig})");
    }

    fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for OwnMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The store's server fails mid-run, in both ways a server can:
///
/// 1. It hangs (SIGSTOP) with its data intact: requests fail as `Store` errors within
///    the client's timeouts, the holder's lease is reported lost once it may have
///    expired, and after SIGCONT leases work again with fences that never went back.
/// 2. It dies and restarts without its data (moto keeps everything in memory, as a
///    DynamoDB that lost its table would): requests fail as `Store` errors while it is
///    down; afterwards the table is made again and leases work, but the fence counters
///    start again from 1 (as the module docs say): a protected resource that kept the
///    highest fence refuses those holders until it is reset too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_restarted_mid_run() {
    use lease_support::{dynamo_client_with, take, unique};
    use lock_core::lease::dynamodb::DynamoDbStore;
    use lock_core::LockError;
    use std::time::{Duration, Instant};

    let sec = Duration::from_secs(1);
    let moto = OwnMoto::start(None);
    // Short timeouts: a hung server is seen within a few seconds.
    let client = dynamo_client_with(&moto.endpoint(), "test", 2 * sec, 4 * sec);
    let store = DynamoDbStore::from_client(client, "restart").expect("store");
    let any = lease_support::AnyStore::Dynamo(store.clone());
    let name = unique("restart");

    // Some history: fences 1.., then a holder with a 1.5 s lease.
    let mut last = 0;
    for _ in 0..3 {
        let g = take(&any, &name, 1000, sec).await.expect("acquire");
        assert!(g.fence() > last);
        last = g.fence();
        g.release().await.expect("release");
    }
    let held = take(&any, &name, 1500, sec).await.expect("acquire");
    assert!(held.fence() > last);
    last = held.fence();

    // 1. A hang, data intact.
    moto.signal(libc::SIGSTOP);
    let t0 = Instant::now();
    let e = take(&any, &unique("during-hang"), 1000, 10 * sec)
        .await
        .expect_err("no lease from a hung server");
    assert!(matches!(e, LockError::Store { .. }), "{e}");
    assert!(t0.elapsed() < 10 * sec, "the error took {:?}", t0.elapsed());
    let lost = tokio::time::timeout(5 * sec, held.lost())
        .await
        .expect("the holder is told within its TTL and the client's timeouts");
    assert!(matches!(lost, LockError::Lost { .. }), "{lost}");
    assert!(held.remaining().is_none());
    moto.signal(libc::SIGCONT);
    let released = held.release().await;
    assert!(
        matches!(released, Err(LockError::NotHeld { .. })),
        "{released:?}"
    );
    let g = take(&any, &name, 1000, 10 * sec)
        .await
        .expect("leases work again after the hang");
    assert!(
        g.fence() > last,
        "fences never go back while the data survives: {} after {last}",
        g.fence()
    );
    g.release().await.expect("release");

    // 2. Death and a restart without the data.
    let port = moto.kill();
    let t0 = Instant::now();
    let e = take(&any, &name, 1000, 10 * sec)
        .await
        .expect_err("no lease from a dead server");
    assert!(matches!(e, LockError::Store { .. }), "{e}");
    assert!(t0.elapsed() < 10 * sec, "the error took {:?}", t0.elapsed());
    let moto = OwnMoto::start(Some(port));
    let g = take(&any, &name, 1000, 10 * sec)
        .await
        .expect("leases work again after the restart (the table is made again)");
    eprintln!(
        "after a restart without data the fence starts again: {} (was {last})",
        g.fence()
    );
    assert_eq!(g.fence(), 1, "moto lost its data: the counter starts again");
    g.release().await.expect("release");
    drop(moto);
}

/// The table is made on first use (partition key `name`, on-demand billing); a table of
/// another key shape is refused with an error that says so, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_made_on_first_use_and_wrong_shape_refused() {
    use lease_support::{dynamo_client, dynamo_endpoint, opts, unique};
    use lock_core::lease::dynamodb::aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    use lock_core::lease::dynamodb::DynamoDbStore;
    use lock_core::LockError;

    let client = dynamo_client(&dynamo_endpoint(), "test");
    let suffix = lease_support::unix_ms() % 1_000_000_000;

    // Absent: made with the right shape.
    let fresh = format!("fresh_{}_{suffix}", std::process::id());
    let store = DynamoDbStore::from_client(client.clone(), &fresh).unwrap();
    let g = lock_core::lease::acquire(&store, &unique("fresh"), opts(1000))
        .await
        .expect("acquire on a table made on first use");
    g.release().await.unwrap();
    let t = client
        .describe_table()
        .table_name(&fresh)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys = t.key_schema();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].attribute_name(), "name");
    assert_eq!(keys[0].key_type(), &KeyType::Hash);
    assert_eq!(
        t.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );

    // Another shape: a clear error.
    let wrong = format!("wrong_{}_{suffix}", std::process::id());
    client
        .create_table()
        .table_name(&wrong)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("at")
                .key_type(KeyType::Range)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("at")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create the wrong table");
    let store = DynamoDbStore::from_client(client.clone(), &wrong).unwrap();
    let e = lock_core::lease::acquire(&store, &unique("wrong"), opts(1000))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, LockError::Store { .. }), "{text}");
    assert!(
        text.contains("another key schema") && text.contains(&wrong),
        "{text}"
    );
    let n = client.scan().table_name(&wrong).send().await.unwrap().count;
    assert_eq!(n, 0, "nothing written to a foreign table");
}
