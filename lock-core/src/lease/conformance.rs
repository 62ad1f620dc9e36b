//! A conformance suite for [`LeaseStore`] implementations (cargo feature
//! `conformance`).
//!
//! Run it from your store's tests, on a multi-threaded Tokio runtime, against a store
//! that nobody else uses for names starting with `conformance-`:
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # mod demo {
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn redis_store_conforms() {
//!     let store = lock_core::lease::redis::RedisStore::new("redis://127.0.0.1:6379").unwrap();
//!     lock_core::lease::conformance::run(&store).await;
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! Every check panics with a message naming what the store got wrong, and every check
//! is bounded in time ([`CHECK_LIMIT`]): a store that hangs fails instead. [`run`]
//! runs them all; a store that only has exclusive leases runs [`run_exclusive`]. The
//! checks are public one by one too, to run them as separate tests.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{acquire, acquire_many, Attempt, Lease, LeaseOptions, LeaseStore, Request};
use crate::mode::Mode;
use crate::LockError;

/// The longest a single check may take.
pub const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Every check: the exclusive ones, then shapes, several names, and fairness.
pub async fn run<S: LeaseStore>(store: &S) {
    run_exclusive(store).await;
    bounded("shared", shared(store)).await;
    bounded("permits", permits(store)).await;
    bounded("mismatch", mismatch(store)).await;
    bounded("many_names", many_names(store)).await;
    bounded("fair_turns", fair_turns(store)).await;
}

/// The checks every store must pass, exclusive leases only.
pub async fn run_exclusive<S: LeaseStore>(store: &S) {
    bounded("exclusion", exclusion(store)).await;
    bounded("fences_increase", fences_increase(store)).await;
    bounded("expiry_takeover", expiry_takeover(store)).await;
    bounded(
        "refresh_and_release_compare",
        refresh_and_release_compare(store),
    )
    .await;
    bounded("lost_detection", lost_detection(store)).await;
    bounded("cancel_storm", cancel_storm(store, 200)).await;
}

async fn bounded<F: Future<Output = ()>>(check: &str, f: F) {
    if tokio::time::timeout(CHECK_LIMIT, f).await.is_err() {
        panic!(
            "conformance check `{check}` did not finish within {CHECK_LIMIT:?}: a wait never ended"
        );
    }
}

/// A name no other run uses.
fn name(check: &str) -> String {
    format!("conformance-{check}-{:016x}", super::util::random_u64())
}

fn owner(tag: &str) -> String {
    format!("{}-{tag}", super::owner_id())
}

async fn try_take<S: LeaseStore>(
    store: &S,
    name: &str,
    owner: &str,
    ttl: Duration,
    mode: Mode,
) -> Attempt {
    let req = Request::exclusive(name, owner, ttl).with_mode(mode);
    store
        .try_acquire(&req)
        .await
        .unwrap_or_else(|e| panic!("try_acquire({name}) failed: {e}"))
}

/// Takes `name` for `owner` with the store's primitives, retrying every millisecond.
async fn take<S: LeaseStore>(
    store: &S,
    name: &str,
    owner: &str,
    ttl: Duration,
    mode: Mode,
) -> Lease {
    let req = Request::exclusive(name, owner, ttl)
        .with_mode(mode)
        .queued(true);
    loop {
        match store.try_acquire(&req).await {
            Ok(Attempt::Acquired(l)) => return l,
            Ok(Attempt::Held { .. }) => tokio::time::sleep(Duration::from_millis(1)).await,
            Ok(other) => panic!("try_acquire({name}, {mode}) answered {other:?}"),
            Err(e) => panic!("try_acquire({name}) failed: {e}"),
        }
    }
}

/// Waits until a lease taken with `ttl` has expired on the store (its
/// [`effective_ttl`](LeaseStore::effective_ttl) and 150 ms), then takes `name` for
/// `owner` (10 s TTL), trying again for at most a second more.
async fn after_expiry<S: LeaseStore>(
    store: &S,
    name: &str,
    owner: &str,
    ttl: Duration,
    mode: Mode,
) -> Lease {
    let lasts = store.effective_ttl(ttl);
    assert!(
        lasts >= ttl,
        "effective_ttl({ttl:?}) = {lasts:?} is shorter"
    );
    tokio::time::sleep(lasts + Duration::from_millis(150)).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match try_take(store, name, owner, Duration::from_secs(10), mode).await {
            Attempt::Acquired(l) => return l,
            other if Instant::now() >= deadline => panic!(
                "a lease of {ttl:?} (lasting {lasts:?} on this store) had not expired {:?} \
                 later: {other:?}",
                lasts + Duration::from_millis(1150)
            ),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn granted(a: Attempt, what: &str) -> Lease {
    match a {
        Attempt::Acquired(l) => l,
        other => panic!("{what}: expected the lease to be granted, got {other:?}"),
    }
}

fn refused(a: &Attempt, what: &str) {
    assert!(
        matches!(a, Attempt::Held { .. }),
        "{what}: expected the request to be refused (held), got {a:?}"
    );
}

/// Many owners racing on one name with the primitives: never two inside at once, and
/// every turn's fence is new.
pub async fn exclusion<S: LeaseStore>(store: &S) {
    let name = Arc::new(name("exclusion"));
    let inside = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..6 {
        let (store, name, inside) = (store.clone(), name.clone(), inside.clone());
        tasks.push(tokio::spawn(async move {
            let mut fences = Vec::new();
            for i in 0..5 {
                let me = owner(&format!("{t}-{i}"));
                let lease =
                    take(&store, &name, &me, Duration::from_secs(10), Mode::Exclusive).await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                assert_eq!(now, 1, "two owners held `{name}` at once");
                tokio::time::sleep(Duration::from_millis(1)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                assert!(
                    store.release(&name, &lease).await.expect("release"),
                    "the release of a live lease must report it was held"
                );
                fences.push(lease.fence);
            }
            fences
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a fence was issued twice");
}

/// Fences of a name strictly increase, across owners, releases and shapes.
pub async fn fences_increase<S: LeaseStore>(store: &S) {
    let name = name("fences");
    let ttl = Duration::from_secs(10);
    let mut last = 0;
    for (i, mode) in [Mode::Exclusive, Mode::Exclusive].into_iter().enumerate() {
        let l = granted(
            try_take(store, &name, &owner(&i.to_string()), ttl, mode).await,
            "a free name",
        );
        assert!(l.fence > last, "fence {} after {last}", l.fence);
        last = l.fence;
        assert!(store.release(&name, &l).await.expect("release"));
    }
    // Through the API as well.
    for _ in 0..3 {
        let g = acquire(store, &name, LeaseOptions::new().ttl(ttl))
            .await
            .expect("acquire");
        assert!(g.fence() > last, "fence {} after {last}", g.fence());
        last = g.fence();
        g.release().await.expect("release");
    }
}

/// A lease nobody renews expires: another owner takes it with a higher fence, and the
/// old owner's refresh and release are refused.
pub async fn expiry_takeover<S: LeaseStore>(store: &S) {
    let name = name("expiry");
    let (a, b) = (owner("a"), owner("b"));
    let ttl = Duration::from_millis(100);
    let first = granted(
        try_take(store, &name, &a, ttl, Mode::Exclusive).await,
        "a free name",
    );
    refused(
        &try_take(store, &name, &b, ttl, Mode::Exclusive).await,
        "a live lease",
    );
    let second = after_expiry(store, &name, &b, ttl, Mode::Exclusive).await;
    assert!(
        second.fence > first.fence,
        "the new holder's fence must be higher"
    );
    assert!(
        !store.refresh(&name, &first, ttl).await.expect("refresh"),
        "refresh of an expired lease"
    );
    assert!(
        !store.release(&name, &first).await.expect("release"),
        "release of an expired lease"
    );
    assert!(store.release(&name, &second).await.expect("release"));
}

/// Refresh and release act only when owner *and* fence match a live lease.
pub async fn refresh_and_release_compare<S: LeaseStore>(store: &S) {
    let name = name("compare");
    let a = owner("a");
    let ttl = Duration::from_secs(10);
    let l = granted(
        try_take(store, &name, &a, ttl, Mode::Exclusive).await,
        "a free name",
    );
    let wrong_fence = Lease::new(l.fence + 1, l.owner.clone());
    let wrong_owner = Lease::new(l.fence, format!("{}-not", l.owner));
    assert!(
        !store
            .refresh(&name, &wrong_fence, ttl)
            .await
            .expect("refresh"),
        "refresh with another fence"
    );
    assert!(
        !store
            .refresh(&name, &wrong_owner, ttl)
            .await
            .expect("refresh"),
        "refresh by another owner"
    );
    assert!(
        store.refresh(&name, &l, ttl).await.expect("refresh"),
        "refresh of the live lease"
    );
    assert!(
        !store.release(&name, &wrong_fence).await.expect("release"),
        "release with another fence"
    );
    assert!(
        !store.release(&name, &wrong_owner).await.expect("release"),
        "release by another owner"
    );
    refused(
        &try_take(store, &name, &owner("b"), ttl, Mode::Exclusive).await,
        "after refused releases",
    );
    assert!(
        store.release(&name, &l).await.expect("release"),
        "release of the live lease"
    );
    assert!(
        !store.release(&name, &l).await.expect("release"),
        "a second release"
    );
    assert!(
        !store.refresh(&name, &l, ttl).await.expect("refresh"),
        "refresh after release"
    );
    // A repeated request of a granted owner gets its lease again (lost answers).
    let c = owner("c");
    let once = granted(
        try_take(store, &name, &c, ttl, Mode::Exclusive).await,
        "a free name",
    );
    let again = granted(
        try_take(store, &name, &c, ttl, Mode::Exclusive).await,
        "a repeated request",
    );
    assert_eq!(once, again, "a repeated request must get the same lease");
    assert!(store.release(&name, &once).await.expect("release"));
}

/// A lease released behind its holder's back is found lost by the watchdog.
pub async fn lost_detection<S: LeaseStore>(store: &S) {
    let name = name("lost");
    let ttl = Duration::from_millis(300);
    let g = acquire(store, &name, LeaseOptions::new().ttl(ttl))
        .await
        .expect("acquire");
    let lease = Lease::new(g.fence(), g.owner());
    assert!(store.release(&name, &lease).await.expect("release"));
    let lost = tokio::time::timeout(ttl * 4, g.lost()).await;
    assert!(
        lost.is_ok(),
        "the watchdog did not notice the lease was gone within {:?}",
        ttl * 4
    );
    assert!(matches!(g.check(), Err(LockError::Lost { .. })));
    assert!(matches!(g.release().await, Err(LockError::NotHeld { .. })));
}

/// `n` waiters cancelled at random moments leave nothing behind: the next caller gets
/// the name at once after the holder lets go.
pub async fn cancel_storm<S: LeaseStore>(store: &S, n: usize) {
    let name = Arc::new(name("cancel"));
    let holder = acquire(
        store,
        &name,
        LeaseOptions::new().ttl(Duration::from_secs(10)),
    )
    .await
    .expect("acquire");
    let mut tasks = Vec::new();
    for i in 0..n {
        let (store, name) = (store.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            let wait = Duration::from_micros(200 + (i as u64 * 397) % 20_000);
            let opts = LeaseOptions::new().ttl(Duration::from_secs(1));
            let got = tokio::time::timeout(wait, acquire(&store, &name, opts)).await;
            assert!(got.is_err(), "a waiter got the lease while it was held");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    holder.release().await.expect("release");
    let started = Instant::now();
    let g = acquire(
        store,
        &name,
        LeaseOptions::new().timeout(Duration::from_secs(5)),
    )
    .await
    .expect("after the storm the name must be free");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "cancelled waiters held the name up for {took:?}"
    );
    g.release().await.expect("release");
}

/// Shared leases: many at once (all inside together), an exclusive one waits for all,
/// each holder has its own fence.
pub async fn shared<S: LeaseStore>(store: &S) {
    let name = name("shared");
    let ttl = Duration::from_secs(10);
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(granted(
            try_take(store, &name, &owner(&format!("r{i}")), ttl, Mode::Shared).await,
            "shared beside shared",
        ));
    }
    let mut fences: Vec<u64> = held.iter().map(|l| l.fence).collect();
    fences.dedup();
    assert_eq!(fences.len(), 3, "every shared holder needs its own fence");
    refused(
        &try_take(store, &name, &owner("w"), ttl, Mode::Exclusive).await,
        "exclusive beside shared holders",
    );
    for l in held.drain(..2) {
        assert!(store.release(&name, &l).await.expect("release"));
    }
    refused(
        &try_take(store, &name, &owner("w"), ttl, Mode::Exclusive).await,
        "exclusive beside one shared holder",
    );
    assert!(store.release(&name, &held[0]).await.expect("release"));
    let w = granted(
        try_take(store, &name, &owner("w2"), ttl, Mode::Exclusive).await,
        "exclusive once the readers left",
    );
    refused(
        &try_take(store, &name, &owner("r"), ttl, Mode::Shared).await,
        "shared beside exclusive",
    );
    assert!(store.release(&name, &w).await.expect("release"));

    // Through the API: three shared guards overlap.
    let name = Arc::new(name);
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (store, name, barrier) = (store.clone(), name.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let g = acquire(&store, &name, LeaseOptions::new().shared())
                .await
                .expect("shared");
            barrier.wait().await; // passes only with all three inside
            g.release().await.expect("release");
        }));
    }
    for t in tasks {
        t.await
            .expect("three shared holders must be inside at once");
    }
}

/// Counted leases: at most `N` holders, each with its own fence; a permit freed lets
/// the next in.
pub async fn permits<S: LeaseStore>(store: &S) {
    let name = name("permits");
    let ttl = Duration::from_secs(10);
    let two = Mode::Permits(2);
    let a = granted(
        try_take(store, &name, &owner("a"), ttl, two).await,
        "permit 1 of 2",
    );
    let b = granted(
        try_take(store, &name, &owner("b"), ttl, two).await,
        "permit 2 of 2",
    );
    assert_ne!(a.fence, b.fence);
    refused(
        &try_take(store, &name, &owner("c"), ttl, two).await,
        "a third of 2 permits",
    );
    assert!(store.release(&name, &a).await.expect("release"));
    let c = granted(
        try_take(store, &name, &owner("c"), ttl, two).await,
        "a freed permit",
    );
    assert!(c.fence > b.fence);
    // A holder that dies frees its permit when its TTL runs out.
    let short = granted(
        {
            assert!(store.release(&name, &c).await.expect("release"));
            try_take(store, &name, &owner("d"), Duration::from_millis(100), two).await
        },
        "a freed permit",
    );
    let e = after_expiry(store, &name, &owner("e"), Duration::from_millis(100), two).await;
    assert!(e.fence > short.fence);
    for l in [b, e] {
        assert!(store.release(&name, &l).await.expect("release"));
    }
}

/// A name held as one kind of lock refuses requests of another kind with `Mismatch`.
pub async fn mismatch<S: LeaseStore>(store: &S) {
    let name = name("mismatch");
    let ttl = Duration::from_secs(10);
    let l = granted(
        try_take(store, &name, &owner("a"), ttl, Mode::Permits(3)).await,
        "a free name",
    );
    for other in [Mode::Permits(5), Mode::Exclusive, Mode::Shared] {
        let a = try_take(store, &name, &owner("b"), ttl, other).await;
        assert!(
            matches!(a, Attempt::Mismatch { .. }),
            "{other} on a name held with 3 permits: expected Mismatch, got {a:?}"
        );
    }
    let err = acquire(
        store,
        &name,
        LeaseOptions::new().timeout(Duration::from_secs(1)),
    )
    .await
    .expect_err("mismatch");
    assert_eq!(err.code(), 8411, "{err}");
    assert!(store.release(&name, &l).await.expect("release"));
    // Idle again: any kind may take it.
    let x = granted(
        try_take(store, &name, &owner("c"), ttl, Mode::Exclusive).await,
        "an idle name",
    );
    assert!(store.release(&name, &x).await.expect("release"));
}

/// Several names, all or nothing: while one is held elsewhere, the others are free.
pub async fn many_names<S: LeaseStore>(store: &S) {
    let (a, b) = (name("many-a"), name("many-b"));
    let ttl = Duration::from_secs(10);
    let other = granted(
        try_take(store, &b, &owner("other"), ttl, Mode::Exclusive).await,
        "b",
    );
    let names = [a.clone(), b.clone()];
    let (s2, n2) = (store.clone(), names.clone());
    let waiting = tokio::spawn(async move {
        acquire_many(
            &s2,
            &n2,
            LeaseOptions::new().timeout(Duration::from_secs(20)),
        )
        .await
    });
    // While the set waits for b, a must be free now and then (it is given back).
    let probe = owner("probe");
    let mut free = None;
    for _ in 0..2000 {
        match try_take(store, &a, &probe, ttl, Mode::Exclusive).await {
            Attempt::Acquired(l) => {
                free = Some(l);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    let probe_lease = free.expect("a set waiting for `b` kept `a` held");
    assert!(store.release(&a, &probe_lease).await.expect("release"));
    assert!(store.release(&b, &other).await.expect("release"));
    let set = waiting
        .await
        .expect("task")
        .expect("the set once b is free");
    assert_eq!(set.len(), 2);
    let fa = set.get(&a).expect("a").fence();
    assert!(fa > probe_lease.fence, "fences of `a` keep increasing");
    set.release().await.expect("release");
}

/// While another owner waits, one owner takes at most three turns in a row.
pub async fn fair_turns<S: LeaseStore>(store: &S) {
    let name = name("turns");
    let ttl = Duration::from_secs(10);
    let first = granted(
        try_take(store, &name, &owner("greedy-0"), ttl, Mode::Exclusive).await,
        "free",
    );
    let waiter = owner("waiter");
    let wreq = Request::exclusive(&name, &waiter, ttl).queued(true);
    refused(&store.try_acquire(&wreq).await.expect("try"), "held");
    let mut current = first;
    let mut greedy_turns = 1;
    loop {
        assert!(store.release(&name, &current).await.expect("release"));
        // The greedy owner asks first, every time.
        match try_take(
            store,
            &name,
            &owner(&format!("greedy-{greedy_turns}")),
            ttl,
            Mode::Exclusive,
        )
        .await
        {
            Attempt::Acquired(l) => {
                greedy_turns += 1;
                assert!(
                    greedy_turns <= 3,
                    "the releasing side took {greedy_turns} turns in a row while another waited"
                );
                let w = store.try_acquire(&wreq).await.expect("try");
                refused(&w, "the waiter while the greedy owner holds");
                current = l;
            }
            Attempt::Held { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let w = granted(
        store.try_acquire(&wreq).await.expect("try"),
        "the due waiter",
    );
    assert!(store.release(&name, &w).await.expect("release"));
}
