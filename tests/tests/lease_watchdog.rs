//! The lease machinery (watchdog, lost signal, back-off, cancellation cleanup) against a
//! fault-injecting in-memory `LeaseStore`: no server needed, failures on demand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lock_core::lease::{self, Attempt, Lease, LeaseOptions, LeaseStore, Request};
use lock_core::LockError;

#[derive(Default)]
struct Faults {
    fail_refresh: AtomicBool,
    refuse_refresh: AtomicBool,
    hang_refresh: AtomicBool,
    acquire_delay_ms: AtomicUsize,
    acquires: AtomicUsize,
    refreshes: AtomicUsize,
    releases: AtomicUsize,
}

/// The last fence issued, and each name's lease with its expiry.
type Table = (u64, HashMap<String, (Lease, Instant)>);

#[derive(Clone, Default)]
struct Flaky {
    leases: Arc<Mutex<Table>>,
    faults: Arc<Faults>,
}

impl Flaky {
    fn live(&self, name: &str) -> bool {
        let s = self.leases.lock().unwrap();
        s.1.get(name).is_some_and(|(_, exp)| *exp > Instant::now())
    }
}

impl LeaseStore for Flaky {
    fn describe(&self) -> String {
        "flaky in-memory store".into()
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
        let (name, owner, ttl) = (req.name, req.owner, req.ttl);
        self.faults.acquires.fetch_add(1, Ordering::SeqCst);
        let delay = self.faults.acquire_delay_ms.load(Ordering::SeqCst) as u64;
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let mut s = self.leases.lock().unwrap();
        let now = Instant::now();
        if let Some((l, exp)) = s.1.get(name) {
            if *exp > now && l.owner == owner {
                return Ok(Attempt::Acquired(l.clone()));
            }
            if *exp > now {
                return Ok(Attempt::held(Some(l.owner.clone())));
            }
        }
        s.0 += 1;
        let lease = Lease::new(s.0, owner);
        s.1.insert(name.to_owned(), (lease.clone(), now + ttl));
        Ok(Attempt::Acquired(lease))
    }

    async fn refresh(&self, name: &str, lease: &Lease, ttl: Duration) -> Result<bool, LockError> {
        self.faults.refreshes.fetch_add(1, Ordering::SeqCst);
        if self.faults.hang_refresh.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.faults.fail_refresh.load(Ordering::SeqCst) {
            return Err(LockError::Store {
                name: name.to_owned(),
                store: self.describe(),
                message: "injected connection failure".into(),
            });
        }
        if self.faults.refuse_refresh.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let mut s = self.leases.lock().unwrap();
        let now = Instant::now();
        match s.1.get_mut(name) {
            Some((l, exp)) if l == lease && *exp > now => {
                *exp = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, name: &str, lease: &Lease) -> Result<bool, LockError> {
        self.faults.releases.fetch_add(1, Ordering::SeqCst);
        let mut s = self.leases.lock().unwrap();
        match s.1.get_mut(name) {
            Some((l, exp)) if l == lease && *exp > Instant::now() => {
                *exp = Instant::now();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

fn name(tag: &str) -> String {
    format!("lease-watchdog/{tag}/{}", std::process::id())
}

fn opts(ttl_ms: u64) -> LeaseOptions {
    LeaseOptions::new().ttl(Duration::from_millis(ttl_ms))
}

#[tokio::test]
async fn renewals_keep_the_lease_past_its_ttl() {
    let store = Flaky::default();
    let g = lease::acquire(&store, &name("renew"), opts(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(store.faults.refreshes.load(Ordering::SeqCst) >= 2);
    assert!(!g.is_lost());
    let left = g.remaining().expect("still held");
    assert!(left <= Duration::from_millis(270), "{left:?}");
    assert!(store.live(g.name()));
    g.release().await.unwrap();
    assert!(!store.live(&name("renew")));
}

#[tokio::test]
async fn failing_renewals_mark_lost_when_validity_runs_out() {
    let store = Flaky::default();
    let t0 = Instant::now();
    let g = lease::acquire(&store, &name("fail"), opts(300))
        .await
        .unwrap();
    store.faults.fail_refresh.store(true, Ordering::SeqCst);
    let e = tokio::time::timeout(Duration::from_secs(2), g.lost())
        .await
        .expect("lost fires");
    let at = t0.elapsed();
    // Valid until TTL − margin (300 − 30 ms) after the request: not lost earlier.
    assert!(
        at >= Duration::from_millis(265) && at < Duration::from_millis(600),
        "{at:?}"
    );
    assert!(e.to_string().contains("injected connection failure"), "{e}");
    assert!(
        store.faults.refreshes.load(Ordering::SeqCst) >= 3,
        "failed renewals are retried"
    );
    assert!(g.remaining().is_none() && g.is_lost());
    assert!(matches!(g.check(), Err(LockError::Lost { .. })));
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_the_lease_kept() {
    let store = Flaky::default();
    let g = lease::acquire(&store, &name("transient"), opts(300))
        .await
        .unwrap();
    store.faults.fail_refresh.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    store.faults.fail_refresh.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!g.is_lost(), "{g:?}");
    assert!(g.remaining().is_some());
    g.release().await.unwrap();
}

#[tokio::test]
async fn a_hanging_renewal_marks_lost_in_time() {
    let store = Flaky::default();
    let t0 = Instant::now();
    let g = lease::acquire(&store, &name("hang"), opts(300))
        .await
        .unwrap();
    store.faults.hang_refresh.store(true, Ordering::SeqCst);
    let e = tokio::time::timeout(Duration::from_secs(2), g.lost())
        .await
        .expect("lost fires");
    let at = t0.elapsed();
    assert!(
        at >= Duration::from_millis(265) && at < Duration::from_millis(600),
        "{at:?}"
    );
    assert!(e.to_string().contains("did not complete"), "{e}");
}

#[tokio::test]
async fn a_refused_renewal_marks_lost_at_once() {
    let store = Flaky::default();
    let t0 = Instant::now();
    let g = lease::acquire(&store, &name("refuse"), opts(300))
        .await
        .unwrap();
    store.faults.refuse_refresh.store(true, Ordering::SeqCst);
    let e = tokio::time::timeout(Duration::from_secs(2), g.lost())
        .await
        .expect("lost fires");
    let at = t0.elapsed();
    // The first renewal is due after TTL/3.
    assert!(
        at >= Duration::from_millis(95) && at < Duration::from_millis(400),
        "{at:?}"
    );
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(g.remaining().is_none() && g.is_lost());
}

#[tokio::test]
async fn drop_releases_in_the_background_then_frees_the_name() {
    let store = Flaky::default();
    let n = name("drop");
    let g = lease::acquire(&store, &n, opts(5000)).await.unwrap();
    assert!(lock_core::is_locked(&n));
    drop(g);
    let end = Instant::now() + Duration::from_secs(1);
    while (store.live(&n) || lock_core::is_locked(&n)) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!store.live(&n), "released in the store");
    assert!(!lock_core::is_locked(&n), "in-process lock given back");
    assert_eq!(store.faults.releases.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cancelled_mid_request_gives_a_late_grant_back() {
    let store = Flaky::default();
    store.faults.acquire_delay_ms.store(60, Ordering::SeqCst);
    let n = name("late-grant");
    let r = tokio::time::timeout(
        Duration::from_millis(10),
        lease::acquire(&store, &n, opts(5000)),
    )
    .await;
    assert!(r.is_err(), "cancelled");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(store.faults.acquires.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.faults.releases.load(Ordering::SeqCst),
        1,
        "the late grant was released"
    );
    assert!(!store.live(&n));
    assert!(!lock_core::is_locked(&n));
}

#[tokio::test]
async fn waiting_backs_off_and_honours_the_timeout() {
    let store = Flaky::default();
    let n = name("timeout");
    // Another "process" holds it: insert a foreign lease directly.
    let Attempt::Acquired(_) = store
        .try_acquire(&Request::exclusive(
            &n,
            "other-host/42/x/1",
            Duration::from_secs(5),
        ))
        .await
        .unwrap()
    else {
        panic!("free at first")
    };
    let before = store.faults.acquires.load(Ordering::SeqCst);
    let t0 = Instant::now();
    let e = lease::acquire(&store, &n, opts(1000).timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(e, LockError::Timeout { .. }), "{e}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(400),
        "{took:?}"
    );
    let attempts = store.faults.acquires.load(Ordering::SeqCst) - before;
    assert!(
        (3..=40).contains(&attempts),
        "{attempts} attempts in 300 ms"
    );
    let holder = e.holder().expect("holder named");
    assert_eq!(holder.pid, Some(42));
    assert_eq!(holder.host.as_deref(), Some("other-host"));

    let e = lease::acquire(&store, &n, opts(1000).timeout(Duration::ZERO))
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
}

#[tokio::test]
async fn local_waiters_queue_and_only_one_asks_the_store() {
    let store = Flaky::default();
    let n = name("local-queue");
    let g = lease::acquire(&store, &n, opts(1000)).await.unwrap();
    let before = store.faults.acquires.load(Ordering::SeqCst);
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let (store, n) = (store.clone(), n.clone());
            tokio::spawn(async move {
                let g = lease::acquire(&store, &n, opts(1000)).await.unwrap();
                let f = g.fence();
                g.release().await.unwrap();
                f
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.faults.acquires.load(Ordering::SeqCst),
        before,
        "waiters in the same process wait on the in-process lock, not the store"
    );
    let first = g.fence();
    g.release().await.unwrap();
    let mut fences = Vec::new();
    for w in waiters {
        fences.push(w.await.unwrap());
    }
    fences.sort_unstable();
    assert!(fences[0] > first);
    fences.dedup();
    assert_eq!(fences.len(), 5, "each waiter got its own fence");
}

#[test]
fn outside_a_runtime_is_an_error_not_a_panic() {
    let store = Flaky::default();
    let fut = lease::acquire(&store, "lease-watchdog/no-runtime", opts(1000));
    let e = futures::executor::block_on(fut).unwrap_err();
    assert!(e.to_string().contains("Tokio runtime"), "{e}");
}

#[test]
fn guards_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let store = Flaky::default();
    let fut = lease::acquire(&store, "x", LeaseOptions::new());
    send(&fut);
    fn guard_is_send_sync<T: Send + Sync>() {}
    guard_is_send_sync::<lease::LeaseGuard>();
    send_sync(&store);
}
