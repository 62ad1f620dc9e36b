//! Lease store on etcd: conformance and the shared fault scenarios against the cluster of
//! `scripts/services.sh` (or `LOCK_CORE_ETCD_URL`), and member faults (SIGKILL of the
//! raft leader, of two members; restarts) against throwaway 3-member clusters each test
//! starts on ports of its own, so that faults never disturb the shared cluster.

mod lease_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use lease_support::{child_main, scenarios, waking, ChildProc, Kind};
use lock_core::lease::etcd::{etcd_client, EtcdStore};
use lock_core::lease::{self, Attempt, LeaseOptions, LeaseStore, Request};
use lock_core::LockError;

conformance_tests!(super::KIND);
common_lease_tests!(KIND);

const KIND: Kind = Kind::Etcd;
const SEC: Duration = Duration::from_secs(1);

/// Entry point of the child processes (re-executed test binary); a no-op otherwise.
#[test]
#[ignore = "child-process entry point of the lease tests"]
fn lease_child() {
    if !etcd_child() {
        child_main();
    }
}

// The connection-kill test does not apply as written (it kills a database session);
// losing etcd members, the leader among them, is tested below.
fault_tests!(
    sessionless:
    exclusive => lock_core::Mode::Exclusive,
    shared => lock_core::Mode::Shared,
    permits => lock_core::Mode::Permits(2),
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_take_turns_woken_by_the_store() {
    waking::turns(KIND, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_take_turns_woken_by_the_store() {
    waking::turns(KIND, 4).await;
}

#[test]
fn ttl_is_rounded_up_never_down() {
    let store = EtcdStore::new("etcd://127.0.0.1:1").unwrap();
    for (asked, got) in [
        (10, 1000),
        (999, 1000),
        (1000, 1000),
        (1001, 2000),
        (2500, 3000),
    ] {
        assert_eq!(
            store.effective_ttl(Duration::from_millis(asked)),
            Duration::from_millis(got)
        );
    }
}

// ---------------------------------------------------------------- throwaway clusters

/// A 3-member etcd cluster of this test only: loopback ports of its own, data in a
/// temporary directory; every member is SIGKILLed and the data removed on drop.
struct Cluster {
    ports: [u16; 3],
    dir: PathBuf,
    members: [Option<Child>; 3],
}

/// Ports for the next throwaway cluster: a block of 20 per cluster, from a range that
/// depends on the process id (several test binaries may run at once).
fn free_base() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let slot = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = 24_000 + ((std::process::id() as u16 % 50) * 5 + slot % 5) * 20;
        let free = (0..3).all(|i| {
            [base + i, base + 10 + i]
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        });
        if free {
            return base;
        }
        assert!(slot < 200, "no free ports for a throwaway etcd cluster");
    }
}

impl Cluster {
    async fn start() -> Cluster {
        let base = free_base();
        let ports = [base, base + 1, base + 2];
        let dir = std::env::temp_dir().join(format!(
            "lock-core-etcd-test-{}-{base}-{}",
            std::process::id(),
            lease_support::unix_ms()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut c = Cluster {
            ports,
            dir,
            members: [None, None, None],
        };
        for i in 0..3 {
            c.spawn(i);
        }
        c.wait_healthy(3, 30 * SEC).await;
        c
    }

    fn url(&self) -> String {
        let eps: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("etcd://{}", eps.join(","))
    }

    fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    fn spawn(&mut self, i: usize) {
        let peer = |j: usize| format!("http://127.0.0.1:{}", self.ports[j] + 10);
        let initial = (0..3)
            .map(|j| format!("t{j}={}", peer(j)))
            .collect::<Vec<_>>()
            .join(",");
        let log = std::fs::File::create(self.dir.join(format!("t{i}.log"))).expect("log");
        let child = Command::new("etcd")
            .args([
                "--name",
                &format!("t{i}"),
                "--data-dir",
                &self.dir.join(format!("t{i}")).to_string_lossy(),
                "--listen-client-urls",
                &self.endpoint(i),
                "--advertise-client-urls",
                &self.endpoint(i),
                "--listen-peer-urls",
                &peer(i),
                "--initial-advertise-peer-urls",
                &peer(i),
                "--initial-cluster",
                &initial,
                "--initial-cluster-token",
                &format!("lock-core-test-{}", self.ports[0]),
                "--initial-cluster-state",
                "new",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd on PATH (run scripts/services.sh, which installs it)");
        self.members[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// Which member leads (its index), as the members that answer say.
    async fn leader(&self) -> Option<usize> {
        for i in 0..3 {
            if self.members[i].is_none() {
                continue;
            }
            let Ok(Ok(mut c)) =
                tokio::time::timeout(SEC, etcd_client::Client::connect([self.endpoint(i)], None))
                    .await
            else {
                continue;
            };
            let Ok(Ok(st)) = tokio::time::timeout(SEC, c.status()).await else {
                continue;
            };
            let me = st.header().map(|h| h.member_id());
            if st.leader() != 0 && me == Some(st.leader()) {
                return Some(i);
            }
        }
        None
    }

    /// Waits until `n` members answer and one of them leads.
    async fn wait_healthy(&self, n: usize, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let mut up = 0;
            for i in 0..3 {
                if self.members[i].is_none() {
                    continue;
                }
                let ok = async {
                    let mut c = etcd_client::Client::connect([self.endpoint(i)], None)
                        .await
                        .ok()?;
                    c.get("health", None).await.ok()
                };
                if let Ok(Some(_)) = tokio::time::timeout(SEC, ok).await {
                    up += 1;
                }
            }
            if up >= n && self.leader().await.is_some() {
                return;
            }
            assert!(
                Instant::now() < end,
                "throwaway etcd cluster not healthy within {within:?} ({up} of {n} up); logs in {}",
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Bounds a whole fault test: a regression fails, never hangs.
async fn bounded<F: std::future::Future<Output = ()>>(limit: Duration, f: F) {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("fault test did not finish within {limit:?}"));
}

/// SIGKILL of the raft leader while a lease is held: the lease is not lost, renewals
/// keep going through the other members, nobody else gets the name; the killed member
/// restarts and rejoins; fences keep increasing afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_keeps_the_lease_and_restarts() {
    bounded(90 * SEC, async {
        let mut cluster = Cluster::start().await;
        let store = EtcdStore::new(&cluster.url()).unwrap();
        let rival = EtcdStore::new(&cluster.url()).unwrap();
        let name = lease_support::unique("etcd-leader-kill");
        let ttl = Duration::from_millis(3000);
        let g = lease::acquire(&store, &name, LeaseOptions::new().ttl(ttl))
            .await
            .expect("acquire");
        let fence = g.fence();

        let leader = cluster.leader().await.expect("a leader");
        let killed_at = Instant::now();
        cluster.kill(leader);
        // Two TTLs after the kill, the lease must still be held: renewals went on. A
        // rival (another store, the store's own primitive: this process holds the
        // in-process lock of the name) is refused all along.
        let mut rival_tries = 0;
        let other = lease::owner_id();
        while killed_at.elapsed() < 2 * ttl {
            assert!(
                !g.is_lost(),
                "lease lost after the leader was killed: {:?}",
                g.check()
            );
            assert!(
                g.remaining().is_some(),
                "renewals stopped after the leader died"
            );
            match rival
                .try_acquire(&Request::exclusive(&name, &other, ttl))
                .await
            {
                Ok(Attempt::Acquired(l)) => {
                    panic!(
                        "a second holder got the name (fence {}) while it was held",
                        l.fence
                    )
                }
                Ok(_) => rival_tries += 1,
                // A request cut short by the election is fine; a grant is not.
                Err(LockError::Store { .. }) => {}
                Err(e) => panic!("unexpected error from the rival: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            rival_tries > 0,
            "the rival never got an answer during the failover"
        );
        let new_leader = cluster.leader().await.expect("a new leader");
        assert_ne!(new_leader, leader);
        let live = store.leases_of(&name).await.expect("listing");
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!(live[0].fence, fence);

        // The killed member comes back with its data and rejoins.
        cluster.spawn(leader);
        cluster.wait_healthy(3, 30 * SEC).await;
        assert!(!g.is_lost());
        g.release().await.expect("release after the restart");
        let g2 = lease::acquire(&rival, &name, LeaseOptions::new().ttl(ttl).timeout(5 * SEC))
            .await
            .expect("the rival after the release");
        assert!(g2.fence() > fence, "fence {} after {fence}", g2.fence());
        g2.release().await.expect("release");
    })
    .await;
}

/// SIGKILL of two members (the majority): the holder's lease is reported lost within its
/// TTL. Once they are back, the name can be taken again with a higher fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_loss_reports_the_lease_lost_within_its_ttl() {
    bounded(90 * SEC, async {
        let mut cluster = Cluster::start().await;
        let store = EtcdStore::builder(&cluster.url())
            .timeout(2 * SEC)
            .build()
            .unwrap();
        let name = lease_support::unique("etcd-majority");
        let ttl = Duration::from_millis(2000);
        let g = lease::acquire(&store, &name, LeaseOptions::new().ttl(ttl))
            .await
            .expect("acquire");
        let fence = g.fence();
        let leader = cluster.leader().await.expect("a leader");
        let other = (leader + 1) % 3;
        let killed_at = Instant::now();
        cluster.kill(leader);
        cluster.kill(other);
        let e = tokio::time::timeout(ttl + Duration::from_millis(300), g.lost())
            .await
            .unwrap_or_else(|_| panic!("not reported lost within the TTL ({ttl:?})"));
        let took = killed_at.elapsed();
        assert!(matches!(e, LockError::Lost { .. }), "{e}");
        assert!(g.remaining().is_none());
        eprintln!("majority lost: lease reported lost after {took:?}: {e}");
        drop(g);

        cluster.spawn(leader);
        cluster.spawn(other);
        cluster.wait_healthy(3, 30 * SEC).await;
        let g2 = lease::acquire(
            &store,
            &name,
            LeaseOptions::new().ttl(ttl).timeout(10 * SEC),
        )
        .await
        .expect("acquire after the majority is back");
        assert!(g2.fence() > fence, "fence {} after {fence}", g2.fence());
        g2.release().await.expect("release");
    })
    .await;
}

/// SIGSTOP of a holder process past its TTL on a throwaway cluster, with the protected
/// resource a key in that cluster that keeps the highest fence it was written with (a
/// compare-and-swap write): the next holder gets a higher fence, the resumed holder sees
/// `Lost`, and its fenced write with the old token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_holder_fenced_by_a_max_fence_key() {
    bounded(60 * SEC, async {
        let cluster = Cluster::start().await;
        let url = cluster.url();
        let name = lease_support::unique("etcd-sigstop");
        let mut a = ChildProc::spawn(
            "etcd-hold",
            KIND,
            &name,
            &[
                ("LEASE_ETCD_URL", url.clone()),
                ("LEASE_TTL_MS", "1000".into()),
            ],
        );
        let fa: u64 = a.expect("ACQUIRED", 20 * SEC)[9..].trim().parse().unwrap();
        a.send("WRITE");
        assert_eq!(a.expect("WRITE", 5 * SEC), "WRITE ok");
        a.signal(libc::SIGSTOP);
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let store = EtcdStore::new(&url).unwrap();
        let g = lease::acquire(&store, &name, LeaseOptions::new().timeout(5 * SEC))
            .await
            .expect("takeover while the holder is stopped");
        assert!(
            g.fence() > fa,
            "takeover fence {} must exceed {fa}",
            g.fence()
        );
        assert!(
            fenced_write(&url, &name, g.fence()).await,
            "the new holder writes"
        );
        a.signal(libc::SIGCONT);
        let lost = a.expect("LOST", 5 * SEC);
        assert!(lost.contains("lease lost"), "{lost}");
        a.send("WRITE");
        assert_eq!(a.expect("WRITE", 5 * SEC), "WRITE rejected");
        a.send("EXIT");
        a.wait_ok(10 * SEC);
        g.release().await.expect("release");
    })
    .await;
}

/// The protected resource: key `resource/{name}` holds the highest fence written with.
/// A write with fence `f` applies only if the stored fence is at most `f`.
async fn fenced_write(url: &str, name: &str, fence: u64) -> bool {
    let eps = EtcdStore::new(url).unwrap().endpoints().to_vec();
    let mut c = etcd_client::Client::connect(eps, None).await.expect("etcd");
    let key = format!("resource/{name}");
    loop {
        let cur = c.get(key.clone(), None).await.expect("read");
        let (stored, rev) = cur
            .kvs()
            .first()
            .map(|kv| {
                let f: u64 = kv.value_str().unwrap_or("0").parse().unwrap_or(0);
                (f, kv.mod_revision())
            })
            .unwrap_or((0, 0));
        if stored > fence {
            return false;
        }
        use etcd_client::{Compare, CompareOp, Txn, TxnOp};
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
            .and_then([TxnOp::put(key.clone(), fence.to_string(), None)]);
        if c.txn(txn).await.expect("write").succeeded() {
            return true;
        }
    }
}

/// Child role `etcd-hold`: holds the lease of `LEASE_NAME` on `LEASE_ETCD_URL`, says
/// `ACQUIRED <fence>`, `LOST …` when lost, answers `WRITE` with a fenced write.
fn etcd_child() -> bool {
    if std::env::var(lease_support::CHILD_ENV).as_deref() != Ok("etcd-hold") {
        return false;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = lease_support::etcd_url();
        let name = std::env::var("LEASE_NAME").unwrap();
        let store = EtcdStore::new(&url).unwrap();
        let ttl: u64 = std::env::var("LEASE_TTL_MS").unwrap().parse().unwrap();
        let g = lease::acquire(
            &store,
            &name,
            LeaseOptions::new().ttl(Duration::from_millis(ttl)),
        )
        .await
        .expect("acquire");
        say(&format!("ACQUIRED {}", g.fence()));
        let lost = g.lost();
        tokio::spawn(async move {
            let e = lost.await;
            say(&format!("LOST {e}"));
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(cmd) = rx.recv().await {
            match cmd.as_str() {
                "WRITE" => {
                    // Without checking the lease first: the resource alone must refuse a
                    // stale token.
                    let ok = fenced_write(&url, &name, g.fence()).await;
                    say(if ok { "WRITE ok" } else { "WRITE rejected" });
                }
                "EXIT" => break,
                _ => {}
            }
        }
        let _ = g.release().await;
    });
    true
}

fn say(msg: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "@@ {msg}");
    let _ = out.flush();
}
