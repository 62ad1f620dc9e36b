//! The fault scenarios, run once per store by `lease_postgres.rs`, `lease_redis.rs` and
//! `lease_dynamodb.rs`.

use std::time::{Duration, Instant};

use lock_core::__private::{acquire_store, Keys, StoreOptions};
use lock_core::{LockError, Mode};

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn field(line: &str, idx: usize) -> &str {
    line.split_whitespace().nth(idx).unwrap_or_default()
}

fn fence_of(line: &str) -> u64 {
    field(line, 1).parse().expect("a fence")
}

/// ≥4 processes × 100 read-modify-write steps under one lease: no lost update, no
/// refused fenced write, and fences strictly increasing in acquisition order.
pub async fn many_processes_read_modify_write(kind: Kind) {
    const PROCS: usize = 4;
    // moto (one Python process) serves DynamoDB: fewer steps keep the test in bounds on
    // a loaded machine.
    let steps: i64 = if kind == Kind::Dynamo { 40 } else { 100 };
    let name = unique("rmw");
    let db = Db::connect().await;
    db.setup().await;
    db.init(&name).await;
    // Create the lease table before the children race to.
    let _ = take(&AnyStore::new(kind), &unique("warmup"), 500, SEC)
        .await
        .expect("warm-up");

    let mut children: Vec<ChildProc> = (0..PROCS)
        .map(|_| {
            ChildProc::spawn(
                "rmw",
                kind,
                &name,
                &[
                    ("LEASE_STEPS", steps.to_string()),
                    // moto (Python, one process) answers slowly when the machine is
                    // loaded: a longer TTL keeps the renewals ahead of the expiry.
                    (
                        "LEASE_TTL_MS",
                        if kind == Kind::Dynamo { "3000" } else { "1000" }.into(),
                    ),
                ],
            )
        })
        .collect();
    for c in &mut children {
        let done = c.expect("DONE", Duration::from_secs(90));
        assert_eq!(
            done, "DONE rejected=0",
            "a fenced write was refused without any fault"
        );
    }
    for c in children {
        c.wait_ok(10 * SEC);
    }
    assert_eq!(db.value(&name).await, PROCS as i64 * steps, "lost update");
    let log = db.fence_log(&name).await;
    assert_eq!(log.len(), PROCS * steps as usize);
    for w in log.windows(2) {
        assert!(
            w[0] < w[1],
            "fences must strictly increase in acquisition order: {w:?}"
        );
    }
}

/// SIGKILL a holder (in `mode`; for `N` permits, one of `N` holders): a waiting process
/// gets the lease within TTL + one renewal period, with a higher fence.
pub async fn sigkill_holder(kind: Kind, mode: Mode) {
    const TTL: u64 = 1000;
    let name = unique("sigkill");
    let env = |m: Mode| {
        vec![
            ("LEASE_TTL_MS", TTL.to_string()),
            ("LEASE_MODE", mode_arg(m)),
        ]
    };
    let mut holders = Vec::new();
    let mut fa = 0;
    for _ in 0..blockers(mode) {
        let mut a = ChildProc::spawn("hold", kind, &name, &env(mode));
        fa = fa.max(fence_of(&a.expect("ACQUIRED", 20 * SEC)));
        holders.push(a);
    }
    let mut b = ChildProc::spawn("wait", kind, &name, &env(rival(mode)));
    b.expect("WAITING", 20 * SEC);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let killed = Instant::now();
    holders[0].signal(libc::SIGKILL);
    let got = b.expect("ACQUIRED", 5 * SEC);
    let took = killed.elapsed();
    let fb = fence_of(&got);
    assert!(fb > fa, "fence after takeover {fb} must exceed {fa}");
    let bound = Duration::from_millis(TTL + TTL / 3 + 250);
    assert!(
        took <= bound,
        "waiter took {took:?} after SIGKILL (bound {bound:?})"
    );
    b.wait_ok(10 * SEC);
    for mut a in holders.drain(1..) {
        // The other permit holders were never disturbed.
        a.send("STATUS");
        assert!(a.expect("STATUS", 5 * SEC).starts_with("STATUS lost=false"));
        a.send("EXIT");
        a.wait_ok(5 * SEC);
    }
}

/// SIGSTOP the holder past its TTL: another process takes over with a higher fence; after
/// SIGCONT the stale holder's lost signal fires and its fenced write is refused.
pub async fn sigstop_holder(kind: Kind, mode: Mode) {
    const TTL: u64 = 800;
    let name = unique("sigstop");
    let db = Db::connect().await;
    db.setup().await;
    db.init(&name).await;
    // With permits, the stopped holder is the only one (`N` = 1 makes it block).
    let mode = match mode {
        Mode::Permits(_) => Mode::Permits(1),
        m => m,
    };
    let mut a = ChildProc::spawn(
        "hold",
        kind,
        &name,
        &[
            ("LEASE_TTL_MS", TTL.to_string()),
            ("LEASE_MODE", mode_arg(mode)),
        ],
    );
    let fa = fence_of(&a.expect("ACQUIRED", 20 * SEC));
    a.send("WRITE");
    assert!(a.expect("WRITE", 5 * SEC).starts_with("WRITE ok"));

    a.signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_millis(TTL + 400)).await;
    let store = AnyStore::new(kind);
    let g = take_in(&store, &name, TTL, 3 * SEC, rival(mode))
        .await
        .expect("takeover while the holder is stopped");
    assert!(
        g.fence() > fa,
        "takeover fence {} must exceed {fa}",
        g.fence()
    );
    assert!(
        db.fenced_write(&name, g.fence()).await,
        "the new holder writes"
    );

    a.signal(libc::SIGCONT);
    let lost = a.expect("LOST", 3 * SEC);
    assert!(lost.contains("lease lost"), "{lost}");
    a.send("WRITE");
    let w = a.expect("WRITE", 5 * SEC);
    assert_eq!(
        w, "WRITE rejected remaining=none lost=true",
        "stale holder after SIGCONT"
    );
    a.send("EXIT");
    a.expect("RELEASED false", 5 * SEC);
    a.wait_ok(5 * SEC);
    assert!(
        g.remaining().is_some() && !g.is_lost(),
        "the new holder is unaffected"
    );
    g.release().await.expect("release");
}

/// The harness ends the lease behind the holder's back: lost within one renewal period.
pub async fn ended_behind_holders_back(kind: Kind, delete: bool, mode: Mode) {
    const TTL: u64 = 900;
    let name = unique(if delete { "deleted" } else { "expired" });
    let store = AnyStore::new(kind);
    let g = take_in(&store, &name, TTL, SEC, mode)
        .await
        .expect("acquire");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(g.remaining().is_some());
    let t0 = Instant::now();
    steal(kind, &name, delete).await;
    let bound = Duration::from_millis(TTL / 3 + 250);
    let e = tokio::time::timeout(bound, g.lost())
        .await
        .unwrap_or_else(|_| panic!("not lost within {bound:?}"));
    assert!(matches!(e, LockError::Lost { .. }), "{e}");
    assert!(g.is_lost() && g.remaining().is_none());
    assert!(matches!(g.check(), Err(LockError::Lost { .. })));
    eprintln!(
        "{kind:?} delete={delete}: lost after {:?}: {e}",
        t0.elapsed()
    );
    let old = g.fence();
    let released = g.release().await;
    assert!(
        matches!(released, Err(LockError::NotHeld { .. })),
        "{released:?}"
    );
    let g2 = take_in(&store, &name, TTL, SEC, mode)
        .await
        .expect("re-acquire");
    assert!(
        g2.fence() > old,
        "fence {} must exceed {old} even after the lease was deleted",
        g2.fence()
    );
    g2.release().await.expect("release");
}

/// Kill the store connection of a holding process repeatedly: it either reconnects and
/// keeps the lease, or reports it lost — and never believes it holds the lease while
/// another process does.
pub async fn connection_killed(kind: Kind, mode: Mode) {
    let mode = match mode {
        Mode::Permits(_) => Mode::Permits(1),
        m => m,
    };
    const TTL: u64 = 900;
    let name = unique("connkill");
    let app = format!(
        "lease_kill_{}_{}",
        std::process::id(),
        unix_ms() % 1_000_000_000
    );
    let mut a = ChildProc::spawn(
        "hold",
        kind,
        &name,
        &[
            ("LEASE_TTL_MS", TTL.to_string()),
            ("LEASE_APP", app.clone()),
            ("LEASE_REPORT", "1".into()),
            ("LEASE_MODE", mode_arg(mode)),
        ],
    );
    let fa = fence_of(&a.expect("ACQUIRED", 20 * SEC));
    a.expect("HOLD", 5 * SEC);

    let store = AnyStore::new(kind);
    let contender_name = name.clone();
    let contender = tokio::spawn(async move {
        let end = Instant::now() + Duration::from_millis(3000);
        while Instant::now() < end {
            if let Ok(g) = take_in(&store, &contender_name, TTL, Duration::ZERO, rival(mode)).await
            {
                return Some((unix_ms(), g));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    });

    let mut kills = 0;
    for round in 0..5 {
        let n = match kind {
            Kind::Postgres => Db::connect().await.terminate_app(&app).await,
            Kind::Redis => redis_kill_clients_of(a.pid).await,
            Kind::Etcd => unreachable!("etcd faults are in lease_etcd.rs"),
            // HTTP requests have no session to kill: `lease_dynamodb.rs` restarts a
            // server of its own instead.
            Kind::Dynamo => panic!("connection_killed does not apply to DynamoDB"),
        };
        if round == 0 {
            assert!(n >= 1, "found the holder's store connection to kill");
        }
        kills += n;
        tokio::time::sleep(Duration::from_millis(TTL / 3 + 50)).await;
    }
    let taken = contender.await.expect("contender task");
    a.send("STATUS");
    let status = a.expect("STATUS", 5 * SEC);
    let said = a.drain().to_vec();
    let holds: Vec<u128> = said
        .iter()
        .filter(|l| l.starts_with("HOLD "))
        .map(|l| field(l, 1).parse().unwrap_or(0))
        .collect();
    let lost = said.iter().any(|l| l.starts_with("LOST"));
    match taken {
        Some((at, g)) => {
            // Takeover: the old holder must have known first.
            assert!(
                lost,
                "another process took the lease but the holder was never told"
            );
            assert!(g.fence() > fa);
            let late: Vec<_> = holds.iter().filter(|&&t| t >= at).collect();
            assert!(
                late.is_empty(),
                "holder still believed it held the lease after takeover at {at}: {late:?}"
            );
            eprintln!(
                "{kind:?}: {kills} kills -> lost, taken over (fence {})",
                g.fence()
            );
            g.release().await.expect("release");
        }
        None => {
            // Reconnected: still held, never lost, still renewed.
            assert!(!lost, "lost but nobody took over? {said:?}");
            assert!(
                status.starts_with("STATUS lost=false remaining=Some"),
                "{status}"
            );
            eprintln!("{kind:?}: {kills} kills -> reconnected, still held");
        }
    }
    a.send("EXIT");
    a.wait_ok(10 * SEC);
}

/// Acquire timeouts are honoured; zero means try once; the holder is named.
pub async fn acquire_timeout(kind: Kind, mode: Mode) {
    let name = unique("timeout");
    let mode = match mode {
        Mode::Permits(_) => Mode::Permits(1),
        m => m,
    };
    let mut a = ChildProc::spawn(
        "hold",
        kind,
        &name,
        &[
            ("LEASE_TTL_MS", "2000".into()),
            ("LEASE_MODE", mode_arg(mode)),
        ],
    );
    a.expect("ACQUIRED", 20 * SEC);
    let store = AnyStore::new(kind);
    let asked = rival(mode);

    let t0 = Instant::now();
    let e = take_in(&store, &name, 1000, Duration::from_millis(400), asked)
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, LockError::Timeout { .. }), "{e}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(900),
        "{took:?}"
    );
    // It left the store's queue before saying it gave up.
    assert_eq!(
        queue_len(kind, &name).await,
        0,
        "a timed-out waiter stayed queued"
    );
    assert_eq!(e.holder().and_then(|h| h.pid), Some(a.pid), "{e}");

    let t0 = Instant::now();
    let e = take_in(&store, &name, 1000, Duration::ZERO, asked)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            LockError::Busy {
                reentrant: false,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(300),
        "try-once took {:?}",
        t0.elapsed()
    );
    assert_eq!(e.holder().and_then(|h| h.pid), Some(a.pid), "{e}");

    a.send("EXIT");
    a.expect("RELEASED true", 5 * SEC);
    a.wait_ok(5 * SEC);
    let g = take_in(&store, &name, 1000, Duration::ZERO, asked)
        .await
        .expect("free after release");
    g.release().await.expect("release");
}

/// 1,000 acquisitions cancelled at random points (waiting locally, mid-request, holding,
/// releasing) leave no lease held, in the process or in the store.
pub async fn random_cancellations(kind: Kind, mode: Mode) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const TASKS: usize = 4;
    const WANTED: usize = 1000;
    const MAX_RUNS: usize = 1000; // per task
    let name = unique("cancel");
    let store = AnyStore::new(kind);
    let cancelled = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (store, name, cancelled) = (store.clone(), name.clone(), cancelled.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::seeded();
            for _ in 0..MAX_RUNS {
                if cancelled.load(Ordering::Relaxed) >= WANTED {
                    break;
                }
                let limit = Duration::from_micros(rng.below(4000));
                let hold = Duration::from_micros(rng.below(800));
                let explicit = rng.below(2) == 0;
                let r = tokio::time::timeout(limit, async {
                    let g = take_in(&store, &name, 1000, 5 * SEC, mode)
                        .await
                        .expect("acquire");
                    tokio::time::sleep(hold).await;
                    if explicit {
                        let _ = g.release().await;
                    }
                })
                .await;
                if r.is_err() {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let cancelled = cancelled.load(Ordering::Relaxed);
    assert!(cancelled >= WANTED, "only {cancelled} cancellations");

    // The clean-up of a thousand cancellations goes through the store: moto (one
    // Python process) takes longer to serve it.
    let settle = if kind == Kind::Dynamo {
        60 * SEC
    } else {
        5 * SEC
    };
    let end = Instant::now() + settle;
    while lock_core::is_locked(&name) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !lock_core::is_locked(&name),
        "the in-process lock is still held"
    );
    assert!(
        !lease_live(kind, &name).await,
        "a lease is still live in the store"
    );
    let g = take(&store, &name, 1000, Duration::ZERO)
        .await
        .expect("free after the storm");
    eprintln!(
        "{kind:?}: {cancelled} cancellations, final fence {}",
        g.fence()
    );
    g.release().await.expect("release");
}

/// Basics through the attribute's entry point: fences grow across release, re-entry is
/// refused, several names are refused with a clear error, drop releases in the background.
pub async fn basics_and_macro_path(kind: Kind) {
    let store = AnyStore::new(kind);
    let name = unique("basics");
    static SITE: lock_core::__private::FnSite = lock_core::__private::FnSite {
        func: "scenarios::basics_and_macro_path",
        ty: lock_core::__private::OnceLock::new(),
        file: file!(),
        line: line!(),
        classes: &[],
    };
    let opts = StoreOptions {
        timeout_ms: Some(2000),
        lease_ms: Some(1000),
        mode: lock_core::__private::EXCLUSIVE,
        several: false,
        site: &SITE,
    };
    let held = acquire_store(&store, Keys::Names(vec![name.clone()]), opts)
        .await
        .expect("acquire");
    let inner = lock_core::__private::scope(&held, &SITE, async {
        lock_core::lease::acquire(&store, &name, opts_ms(1000)).await
    })
    .await;
    assert!(
        matches!(
            inner,
            Err(LockError::Busy {
                reentrant: true,
                ..
            })
        ),
        "{inner:?}"
    );
    let g = held.into_lease();
    let f1 = g.fence();
    assert!(f1 > 0);
    // At most TTL less the margin (how much less depends on the machine's load).
    let left = g.remaining().expect("fresh lease");
    assert!(left <= Duration::from_millis(900), "{left:?}");
    assert!(!g.is_lost());
    assert_eq!(g.name(), name);
    assert!(g.store().starts_with(kind.as_str()), "{}", g.store());
    drop(g); // released in the background

    let g = lock_core::lease::acquire(&store, &name, opts_ms(1000).timeout(2 * SEC))
        .await
        .expect("re-acquire");
    assert!(g.fence() > f1);
    // Renewal keeps it alive well past its TTL.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(g.remaining().is_some() && !g.is_lost(), "{g:?}");
    assert!(lease_live(kind, &name).await);
    g.release().await.expect("release");
    assert!(!lease_live(kind, &name).await);

    // Several names: one set, every name with its own fence, all given back together.
    let b = format!("{name}-b");
    let two = acquire_store(
        &store,
        Keys::Names(vec![b.clone(), name.clone()]),
        StoreOptions {
            several: true,
            ..opts
        },
    )
    .await
    .expect("two names")
    .into_leases();
    assert_eq!(two.names().collect::<Vec<_>>(), [name.as_str(), b.as_str()]);
    assert_ne!(two.guards()[0].fence(), two.guards()[1].fence());
    assert!(lease_live(kind, &name).await && lease_live(kind, &b).await);
    two.release().await.expect("release both");
    assert!(!lease_live(kind, &name).await && !lease_live(kind, &b).await);

    let bad = lock_core::lease::acquire(&store, "", opts_ms(1000))
        .await
        .unwrap_err();
    assert!(matches!(bad, LockError::InvalidName { .. }));
    let short = lock_core::lease::acquire(&store, &name, opts_ms(1))
        .await
        .unwrap_err();
    assert!(short.to_string().contains("TTL"), "{short}");
}

fn opts_ms(ttl: u64) -> lock_core::lease::LeaseOptions {
    opts(ttl)
}

/// An unreachable store yields `LockError::Store` naming the store, never the password.
pub async fn unreachable_store(kind: Kind) {
    let name = unique("unreachable");
    let e = match kind {
        Kind::Postgres => {
            let s = PostgresStore::builder("postgres://app:s3cr3t-pw@127.0.0.1:1/db")
                .connect_timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            lease::acquire(&s, &name, opts(1000)).await.unwrap_err()
        }
        Kind::Dynamo => {
            let client = dynamo_client("http://127.0.0.1:1", "s3cr3t-pw");
            let s = DynamoDbStore::from_client(client, dynamo_table()).unwrap();
            lease::acquire(&s, &name, opts(1000)).await.unwrap_err()
        }
        Kind::Redis => {
            let s = RedisStore::builder("redis://:s3cr3t-pw@127.0.0.1:1")
                .timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            lease::acquire(&s, &name, opts(1000)).await.unwrap_err()
        }
        Kind::Etcd => {
            let s = lock_core::lease::etcd::EtcdStore::builder("etcd://127.0.0.1:1,127.0.0.1:2")
                .timeout(Duration::from_millis(500))
                .build()
                .unwrap();
            lease::acquire(&s, &name, opts(1000)).await.unwrap_err()
        }
    };
    let text = format!("{e} {e:?}");
    assert!(
        matches!(&e, LockError::Store { store, .. } if store.starts_with(kind.as_str())),
        "{text}"
    );
    assert_eq!(e.name(), name);
    assert!(!text.contains("s3cr3t"), "credentials leaked: {text}");
    assert_eq!(e.code(), 8409);
}

static PG_STORE: std::sync::LazyLock<AnyStore> =
    std::sync::LazyLock::new(|| AnyStore::new(Kind::Postgres));
static REDIS_STORE: std::sync::LazyLock<AnyStore> =
    std::sync::LazyLock::new(|| AnyStore::new(Kind::Redis));
static ETCD_STORE: std::sync::LazyLock<AnyStore> =
    std::sync::LazyLock::new(|| AnyStore::new(Kind::Etcd));

#[lock_core::locked(name = "lease-macro/{tag}", store = ETCD_STORE, lease_ms = 1000, timeout_ms = 3000, guard = g)]
async fn etcd_locked(tag: &str) -> Result<(u64, bool, bool), LockError> {
    let nested = lease::acquire(&*ETCD_STORE, &format!("lease-macro/{tag}"), opts(1000)).await;
    let reentry = matches!(
        nested,
        Err(LockError::Busy {
            reentrant: true,
            ..
        })
    );
    let live = lease_live(Kind::Etcd, &format!("lease-macro/{tag}")).await;
    Ok((g.check()?, reentry, live))
}

static DYNAMO_STORE: std::sync::LazyLock<AnyStore> =
    std::sync::LazyLock::new(|| AnyStore::new(Kind::Dynamo));

#[lock_core::locked(name = "lease-macro/{tag}", store = DYNAMO_STORE, lease_ms = 1000, timeout_ms = 3000, guard = g)]
async fn dynamo_locked(tag: &str) -> Result<(u64, bool, bool), LockError> {
    let nested = lease::acquire(&*DYNAMO_STORE, &format!("lease-macro/{tag}"), opts(1000)).await;
    let reentry = matches!(
        nested,
        Err(LockError::Busy {
            reentrant: true,
            ..
        })
    );
    let live = lease_live(Kind::Dynamo, &format!("lease-macro/{tag}")).await;
    Ok((g.check()?, reentry, live))
}

#[lock_core::locked(name = "lease-macro/{tag}", store = PG_STORE, lease_ms = 1000, timeout_ms = 3000, guard = g)]
async fn pg_locked(tag: &str) -> Result<(u64, bool, bool), LockError> {
    let nested = lease::acquire(&*PG_STORE, &format!("lease-macro/{tag}"), opts(1000)).await;
    let reentry = matches!(
        nested,
        Err(LockError::Busy {
            reentrant: true,
            ..
        })
    );
    let live = lease_live(Kind::Postgres, &format!("lease-macro/{tag}")).await;
    Ok((g.check()?, reentry, live))
}

#[lock_core::locked(name = "lease-macro/{tag}", store = REDIS_STORE, lease_ms = 1000, timeout_ms = 3000, guard = g)]
async fn redis_locked(tag: &str) -> Result<(u64, bool, bool), LockError> {
    let nested = lease::acquire(&*REDIS_STORE, &format!("lease-macro/{tag}"), opts(1000)).await;
    let reentry = matches!(
        nested,
        Err(LockError::Busy {
            reentrant: true,
            ..
        })
    );
    let live = lease_live(Kind::Redis, &format!("lease-macro/{tag}")).await;
    Ok((g.check()?, reentry, live))
}

/// `#[locked(store = STATIC, lease_ms, timeout_ms, guard = g)]` end to end: the body sees
/// a live lease and its fence, re-entry is refused, and the lease goes when the body ends.
pub async fn through_the_attribute(kind: Kind) {
    let tag = unique("attr").replace('/', "-");
    let name = format!("lease-macro/{tag}");
    let call = || async {
        match kind {
            Kind::Postgres => pg_locked(&tag).await,
            Kind::Redis => redis_locked(&tag).await,
            Kind::Etcd => etcd_locked(&tag).await,
            Kind::Dynamo => dynamo_locked(&tag).await,
        }
    };
    let (f1, reentry, live) = call().await.expect("first call");
    assert!(reentry, "re-entry inside the body must be refused");
    assert!(live, "the lease is live while the body runs");
    // Released in the background after the body: the next call waits for it if needed.
    let (f2, _, _) = call().await.expect("second call");
    assert!(f2 > f1, "fences {f1} then {f2}");
    let end = Instant::now() + 2 * SEC;
    while lease_live(kind, &name).await && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!lease_live(kind, &name).await, "released after the body");
}

/// PostgreSQL: a schema-qualified custom table, created by several stores (separate
/// pools) at once; identifiers are validated.
pub async fn pg_custom_table_concurrent_migrate() {
    let suffix = format!("{}_{}", std::process::id(), unix_ms() % 1_000_000_000);
    let schema = "lease_test_schema";
    let table = format!("leases_{suffix}");
    let stores: Vec<PostgresStore> = (0..4)
        .map(|_| {
            PostgresStore::builder(&pg_url())
                .table(schema, &table)
                .pool_size(2)
                .build()
                .expect("valid settings")
        })
        .collect();
    let results = futures::future::join_all(stores.iter().map(|s| s.migrate())).await;
    for r in results {
        r.expect("concurrent migrate");
    }
    let name = unique("custom-table");
    let g = lease::acquire(&stores[1], &name, opts(1000))
        .await
        .expect("acquire");
    assert!(
        g.store().contains(&format!("{schema}.{table}")),
        "{}",
        g.store()
    );
    let busy = lease::acquire(&stores[2], &name, opts(1000).timeout(Duration::ZERO)).await;
    // Same process: refused by the in-process lock already.
    assert!(matches!(busy, Err(LockError::Busy { .. })));
    let db = Db::connect().await;
    let live: bool = db
        .client
        .query_one(
            &format!(
                "SELECT jsonb_array_length(holders) > 0 FROM {schema}.{table} WHERE name = $1"
            ),
            &[&name],
        )
        .await
        .expect("row in the custom table")
        .get(0);
    assert!(live);
    g.release().await.expect("release");
    db.client
        .batch_execute(&format!(
            "DROP TABLE {schema}.{table}; DROP SEQUENCE {schema}.{table}_fence_seq; \
             DROP FUNCTION {schema}.{table}_acquire, {schema}.{table}_refresh, \
             {schema}.{table}_release, {schema}.{table}_leave"
        ))
        .await
        .expect("cleanup");

    for (s, t) in [
        ("public", "bad\"name"),
        ("public", "1abc"),
        ("pub lic", "ok"),
        ("public", ""),
    ] {
        let e = PostgresStore::builder(&pg_url())
            .table(s, t)
            .build()
            .unwrap_err();
        assert!(matches!(e, LockError::Store { .. }), "{e}");
    }
    let long = "t".repeat(lock_core::lease::postgres::MAX_TABLE_LEN + 1);
    assert!(PostgresStore::builder(&pg_url())
        .table("public", &long)
        .build()
        .is_err());
}

/// Redis: a custom key prefix is used, and names with hash-tag characters get keys of
/// their own.
pub async fn redis_prefix_and_tricky_names() {
    let store = RedisStore::builder(&redis_url())
        .prefix("lease-test:locks")
        .build()
        .expect("valid prefix");
    let base = unique("tricky");
    let names = [
        format!("{base}{{a}}"),
        format!("{base}%7Ba%7D"),
        format!("{base}}}"),
    ];
    let mut guards = Vec::new();
    for n in &names {
        guards.push(
            lease::acquire(&store, n, opts(1000))
                .await
                .expect("distinct keys"),
        );
    }
    let mut c = redis_conn().await;
    for n in &names {
        let key = store.lease_key(n);
        assert!(key.starts_with("lease-test:locks:{"), "{key}");
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(exists, 1, "{key}");
    }
    for g in guards {
        g.release().await.expect("release");
    }
    assert!(RedisStore::builder(&redis_url())
        .prefix("bad prefix")
        .build()
        .is_err());
    assert!(RedisStore::builder(&redis_url())
        .prefix("")
        .build()
        .is_err());
}

/// One store (as in a `static`) used from several Tokio runtimes in turn, each shut down
/// before the next: the store's connection follows (PostgreSQL's pool recycles dead
/// connections, the Redis store reconnects on the new runtime).
pub fn store_survives_runtime_changes(kind: Kind) {
    let store = AnyStore::new(kind);
    let name = unique("runtimes");
    let mut last = 0;
    for round in 0..3 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fence = rt.block_on(async {
            let g = lease::acquire(&store, &name, opts(1000).timeout(2 * SEC))
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            let f = g.fence();
            g.release().await.expect("release");
            f
        });
        assert!(fence > last, "round {round}: fence {fence} after {last}");
        last = fence;
        drop(rt);
    }
}

/// PostgreSQL: the pooled (idle) connections are terminated between two acquisitions;
/// the next acquire, renewal and release go through on fresh connections.
pub async fn pg_pooled_connections_killed_between_calls() {
    let app = format!(
        "lease_idle_{}_{}",
        std::process::id(),
        unix_ms() % 1_000_000_000
    );
    let store = AnyStore::with_app(Kind::Postgres, Some(&app));
    let name = unique("idle-kill");
    let g = take(&store, &name, 600, SEC).await.expect("first acquire");
    let f1 = g.fence();
    g.release().await.expect("release");
    let db = Db::connect().await;
    assert!(
        db.terminate_app(&app).await >= 1,
        "the pool kept a connection"
    );
    // No pause: the pool may hand out the dead connection before noticing it is dead.
    let g = take(&store, &name, 600, SEC)
        .await
        .expect("acquire on a fresh connection");
    assert!(g.fence() > f1);
    assert!(db.terminate_app(&app).await >= 1);
    // Renewals (every 200 ms) cross the kill.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(!g.is_lost() && g.remaining().is_some(), "{g:?}");
    assert!(db.terminate_app(&app).await >= 1);
    g.release().await.expect("release on a fresh connection");
    assert!(!lease_live(Kind::Postgres, &name).await);
}

#[lock_core::locked(name = "lease-attr-shared/{tag}", store = store, shared, lease_ms = 2000, timeout_ms = 10_000, guard = g)]
async fn attr_reader(
    store: AnyStore,
    tag: String,
    inside: std::sync::Arc<tokio::sync::Barrier>,
) -> Result<Mode, LockError> {
    inside.wait().await; // passes only with every reader inside at once
    Ok(g.mode())
}

#[lock_core::locked(name = "lease-attr-permits/{tag}", store = store, permits = 2, lease_ms = 2000, timeout_ms = 10_000)]
async fn attr_permit(
    store: AnyStore,
    tag: String,
    inside: std::sync::Arc<tokio::sync::Barrier>,
    out: std::sync::Arc<tokio::sync::Barrier>,
) -> Result<(), LockError> {
    inside.wait().await;
    out.wait().await;
    Ok(())
}

#[lock_core::locked(name = "lease-attr-permits/{tag}", store = store, permits = 2, timeout_ms = 0)]
async fn attr_permit_now(store: &AnyStore, tag: &str) -> Result<(), LockError> {
    Ok(())
}

#[lock_core::locked(name = ["lease-attr-b/{tag}", "lease-attr-a/{tag}"], store = store, lease_ms = 2000, guard = set)]
async fn attr_both(
    store: &AnyStore,
    kind: Kind,
    tag: &str,
) -> Result<(Vec<String>, bool), LockError> {
    let live = lease_live(kind, &format!("lease-attr-a/{tag}")).await
        && lease_live(kind, &format!("lease-attr-b/{tag}")).await;
    Ok((set.names().map(str::to_owned).collect(), live))
}

/// `#[locked(store = ..)]` in every shape: shared calls overlap, at most `N` counted
/// calls run at once, and a name list holds every name for the body.
pub async fn attribute_shapes(kind: Kind) {
    use std::sync::Arc;
    use tokio::sync::Barrier;
    let store = AnyStore::new(kind);
    let tag = unique("attr-shapes").replace('/', "-");

    let inside = Arc::new(Barrier::new(3));
    let readers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(attr_reader(store.clone(), tag.clone(), inside.clone())))
        .collect();
    for r in readers {
        let mode = tokio::time::timeout(20 * SEC, r)
            .await
            .expect("three shared calls must be inside at once")
            .expect("task")
            .expect("shared call");
        assert_eq!(mode, Mode::Shared);
    }

    let (inside, out) = (Arc::new(Barrier::new(3)), Arc::new(Barrier::new(3)));
    let holders: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(attr_permit(
                store.clone(),
                tag.clone(),
                inside.clone(),
                out.clone(),
            ))
        })
        .collect();
    tokio::time::timeout(20 * SEC, inside.wait())
        .await
        .expect("two permit holders inside");
    let third = attr_permit_now(&store, &tag).await;
    assert!(matches!(third, Err(LockError::Busy { .. })), "{third:?}");
    out.wait().await;
    for h in holders {
        h.await.expect("task").expect("permit call");
    }

    let (names, live) = attr_both(&store, kind, &tag).await.expect("both names");
    assert!(live, "both names are held during the body");
    assert_eq!(
        names,
        [format!("lease-attr-a/{tag}"), format!("lease-attr-b/{tag}")],
        "sorted"
    );
}
