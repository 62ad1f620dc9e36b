//! `#[locked(.., store = ..)]` against a small in-memory lease store: exclusion, the
//! lease guard, timeouts, re-entry and cancellation, all through the attribute.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lock_core::lease::{self, Attempt, Lease, LeaseOptions, LeaseStore, Request};
use lock_core::{locked, LockError};

const LIMIT: Duration = Duration::from_secs(30);

/// Leases kept in a map: name -> (lease, expiry); one fence counter for all names.
#[derive(Clone, Default)]
struct Memory {
    inner: Arc<Mutex<MemoryState>>,
}

#[derive(Default)]
struct MemoryState {
    fence: u64,
    leases: HashMap<String, (Lease, Instant)>,
}

impl LeaseStore for Memory {
    fn describe(&self) -> String {
        "memory (attribute tests)".to_owned()
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
        let (name, owner, ttl) = (req.name, req.owner, req.ttl);
        if !req.mode.is_exclusive() {
            return Err(LockError::Store {
                name: name.to_owned(),
                store: self.describe(),
                message: "exclusive leases only".into(),
            });
        }
        let mut st = self.inner.lock().unwrap();
        let now = Instant::now();
        if let Some((held, until)) = st.leases.get(name) {
            if *until > now && held.owner == owner {
                return Ok(Attempt::Acquired(held.clone()));
            }
            if *until > now {
                return Ok(Attempt::held(Some(held.owner.clone())));
            }
        }
        st.fence += 1;
        let granted = Lease::new(st.fence, owner);
        st.leases
            .insert(name.to_owned(), (granted.clone(), now + ttl));
        Ok(Attempt::Acquired(granted))
    }

    async fn refresh(&self, name: &str, l: &Lease, ttl: Duration) -> Result<bool, LockError> {
        let mut st = self.inner.lock().unwrap();
        let now = Instant::now();
        Ok(match st.leases.get_mut(name) {
            Some((held, until)) if held == l && *until > now => {
                *until = now + ttl;
                true
            }
            _ => false,
        })
    }

    async fn release(&self, name: &str, l: &Lease) -> Result<bool, LockError> {
        let mut st = self.inner.lock().unwrap();
        let live = matches!(st.leases.get(name), Some((held, until)) if held == l && *until > Instant::now());
        if live {
            st.leases.remove(name);
        }
        Ok(live)
    }
}

impl Memory {
    fn is_leased(&self, name: &str) -> bool {
        let st = self.inner.lock().unwrap();
        matches!(st.leases.get(name), Some((_, until)) if *until > Instant::now())
    }
}

struct Worker {
    store: Memory,
    inside: AtomicUsize,
    max: AtomicUsize,
}

impl Worker {
    #[locked(name = "attr-store-job", store = self.store, lease_ms = 5_000, guard = lease)]
    async fn job(&self) -> Result<u64, LockError> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.inside.fetch_sub(1, Ordering::SeqCst);
        assert_eq!(lease.name(), "attr-store-job");
        assert!(self.store.is_leased("attr-store-job"));
        Ok(lease.fence())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_leases_exclude_and_fence_increases() {
    let w = Arc::new(Worker {
        store: Memory::default(),
        inside: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
    });
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let w = w.clone();
            tokio::spawn(async move {
                let mut fences = Vec::new();
                for _ in 0..10 {
                    fences.push(w.job().await.unwrap());
                }
                fences
            })
        })
        .collect();
    let mut all = Vec::new();
    tokio::time::timeout(LIMIT, async {
        for t in tasks {
            all.extend(t.await.unwrap());
        }
    })
    .await
    .expect("store test timed out");
    assert_eq!(w.max.load(Ordering::SeqCst), 1);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 80, "every lease got its own fence");
    // Dropping a lease gives it back in the background; it is gone soon after.
    tokio::time::timeout(LIMIT, async {
        while w.store.is_leased("attr-store-job") {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the last lease was never given back");
}

#[locked(name = "attr-store-{id}", store = store, timeout_ms = 50)]
async fn by_id(store: &Memory, id: u32) -> anyhow::Result<u32> {
    Ok(id)
}

#[tokio::test]
async fn held_elsewhere_times_out() {
    let store = Memory::default();
    // Another owner (as another process would) holds the lease, in a task of its own.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (held_tx, held) = tokio::sync::oneshot::channel::<()>();
    let other = tokio::spawn({
        let store = store.clone();
        async move {
            let g = lease::acquire(&store, "attr-store-7", LeaseOptions::new())
                .await
                .unwrap();
            let _ = held_tx.send(());
            let _ = released.await;
            g.release().await.unwrap();
        }
    });
    held.await.unwrap();
    let err = by_id(&store, 7).await.unwrap_err();
    let code = err.downcast_ref::<LockError>().map(LockError::code);
    assert_eq!(code, Some(8403), "{err:?}");
    assert_eq!(by_id(&store, 8).await.unwrap(), 8);
    release.send(()).unwrap();
    other.await.unwrap();
    assert_eq!(by_id(&store, 7).await.unwrap(), 7);
}

#[locked(name = "attr-store-nested", store = store)]
async fn outer(store: &Memory) -> Result<Result<(), LockError>, LockError> {
    Ok(inner(store).await)
}

#[locked(name = "attr-store-nested", store = store, timeout_ms = 5_000)]
async fn inner(store: &Memory) -> Result<(), LockError> {
    Ok(())
}

#[tokio::test]
async fn nested_lease_is_busy_not_a_wait() {
    let store = Memory::default();
    let started = Instant::now();
    let nested = outer(&store).await.unwrap();
    assert!(
        matches!(
            nested,
            Err(LockError::Busy {
                reentrant: true,
                ..
            })
        ),
        "{nested:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "re-entry waited"
    );
    inner(&store).await.unwrap();
}

#[locked(name = "attr-store-cancel", store = store)]
async fn never_finishes(store: Memory, entered: tokio::sync::oneshot::Sender<()>) {
    let _ = entered.send(());
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_gives_the_lease_back() {
    let store = Memory::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(never_finishes(store.clone(), tx));
    tokio::time::timeout(LIMIT, rx).await.unwrap().unwrap();
    assert!(store.is_leased("attr-store-cancel"));
    task.abort();
    let _ = task.await;
    let g = tokio::time::timeout(
        LIMIT,
        lease::acquire(&store, "attr-store-cancel", LeaseOptions::new()),
    )
    .await
    .expect("lease not given back after cancellation")
    .unwrap();
    g.release().await.unwrap();
}

/// The conformance suite's exclusive checks pass on this simple store, and its turn
/// check catches that the store keeps no queue (the suite can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_a_correct_store() {
    lease::conformance::run_exclusive(&Memory::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "turns in a row")]
async fn the_conformance_suite_catches_an_unfair_store() {
    lease::conformance::fair_turns(&Memory::default()).await;
}

/// A store whose `wait_for_change` is done on its first poll (a plain `async fn` that
/// returns at once). The waiter must never poll it again (`async fn` resumed after
/// completion would panic) and still waits out its timeout with back-off.
#[derive(Clone, Default)]
struct Eager(Memory);

impl LeaseStore for Eager {
    fn describe(&self) -> String {
        "eager memory (attribute tests)".to_owned()
    }
    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
        self.0.try_acquire(req).await
    }
    async fn refresh(&self, name: &str, l: &Lease, ttl: Duration) -> Result<bool, LockError> {
        self.0.refresh(name, l, ttl).await
    }
    async fn release(&self, name: &str, l: &Lease) -> Result<bool, LockError> {
        self.0.release(name, l).await
    }
    async fn wait_for_change(&self, _name: &str, _until: Instant) {}
}

#[tokio::test]
async fn a_wait_for_change_done_at_once_is_not_polled_again() {
    let store = Eager::default();
    // Held by another owner, as another process would.
    store.0.inner.lock().unwrap().leases.insert(
        "attr-store-eager".to_owned(),
        (Lease::new(1, "elsewhere"), Instant::now() + LIMIT),
    );
    let started = Instant::now();
    let opts = LeaseOptions::new().timeout(Duration::from_millis(300));
    let err = tokio::time::timeout(LIMIT, lease::acquire(&store, "attr-store-eager", opts))
        .await
        .expect("the wait did not end at its timeout")
        .unwrap_err();
    assert!(matches!(err, LockError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300), "{err:?}");
}
