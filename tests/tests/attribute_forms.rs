//! `#[locked]` on methods, impl blocks and modules (issue #12): default names per type
//! and function, and whole modules / impl blocks serialised by one named lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lock_core::{locked, LockError};
use lock_core_tests::{Overlap, TimedBarrier};

const LIMIT: Duration = Duration::from_secs(20);

// ---- item 4: default names of methods ----

struct A;
struct B;

impl A {
    #[locked]
    fn run(&self) -> Result<Vec<String>, LockError> {
        // B's lock has another default name: no re-entry.
        B.run()
    }
}

impl B {
    #[locked]
    fn run(&self) -> Result<Vec<String>, LockError> {
        // Only the sync pair: other tests of this binary hold their own `::run` locks
        // meanwhile (the async pair), which is no business of this one.
        let ours = ["attribute_forms::A::run", "attribute_forms::B::run"];
        let mut held: Vec<String> = lock_core::holders()
            .into_iter()
            .filter(|h| ours.contains(&h.name.as_str()))
            .map(|h| h.name)
            .collect();
        held.sort();
        Ok(held)
    }
}

#[test]
fn b_run_inside_a_run_succeeds_under_two_default_names() {
    let held = A.run().expect("B.run inside A.run is not re-entry");
    assert_eq!(
        held,
        vec![
            "attribute_forms::A::run".to_owned(),
            "attribute_forms::B::run".to_owned()
        ]
    );
    assert!(!lock_core::is_locked("attribute_forms::A::run"));
    assert!(!lock_core::is_locked("attribute_forms::B::run"));
}

struct AsyncA;
struct AsyncB;

impl AsyncA {
    #[locked]
    async fn run(&self) -> Result<(bool, bool), LockError> {
        AsyncB.run().await
    }
}

impl AsyncB {
    #[locked]
    async fn run(&self) -> Result<(bool, bool), LockError> {
        Ok((
            lock_core::is_locked("attribute_forms::AsyncA::run"),
            lock_core::is_locked("attribute_forms::AsyncB::run"),
        ))
    }
}

#[tokio::test]
async fn async_methods_of_two_types_nest_under_their_own_names() {
    let r = tokio::time::timeout(LIMIT, AsyncA.run())
        .await
        .expect("no hang");
    assert_eq!(r.unwrap(), (true, true));
}

// ---- item 5: module form ----

static MODULE_OVERLAP: Overlap = Overlap::new();

fn section(o: &Overlap) {
    let _inside = o.enter();
    std::thread::sleep(Duration::from_millis(5));
}

/// Every test in here takes "forms-module-serial". (The harness runs them as tests too;
/// they take the same lock, so they cannot raise the overlap either.)
#[locked(name = "forms-module-serial")]
mod serial {
    #[test]
    pub fn a() {
        super::section(&super::MODULE_OVERLAP);
    }
    #[test]
    pub fn b() {
        super::section(&super::MODULE_OVERLAP);
    }
    #[test]
    pub fn c() {
        super::section(&super::MODULE_OVERLAP);
    }
    #[test]
    pub fn d() {
        super::section(&super::MODULE_OVERLAP);
    }
}

/// The same bodies without the lock, with a barrier inside: proves the driver below
/// would see overlap if there were any.
mod control {
    use super::*;
    pub fn a(o: &Overlap, b: &TimedBarrier) -> bool {
        let _inside = o.enter();
        b.wait(Duration::from_secs(10))
    }
}

fn from_eight_threads(call: impl Fn(usize) -> bool + Send + Sync + 'static) -> Vec<bool> {
    let call = Arc::new(call);
    let start = Arc::new(std::sync::Barrier::new(8));
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..8 {
        let (call, start, tx) = (call.clone(), start.clone(), tx.clone());
        std::thread::spawn(move || {
            start.wait();
            let _ = tx.send(call(i));
        });
    }
    (0..8)
        .map(|_| rx.recv_timeout(LIMIT).expect("a call did not return"))
        .collect()
}

#[test]
fn the_tests_of_a_locked_module_never_overlap() {
    let fns = [serial::a, serial::b, serial::c, serial::d];
    from_eight_threads(move |i| {
        fns[i % 4]();
        true
    });
    assert_eq!(MODULE_OVERLAP.max(), 1);
    assert!(MODULE_OVERLAP.entries() >= 8);
}

#[test]
fn control_the_same_bodies_unlocked_do_overlap() {
    let o = Arc::new(Overlap::new());
    let b = Arc::new(TimedBarrier::new(8));
    let passed = {
        let (o, b) = (o.clone(), b.clone());
        from_eight_threads(move |_| control::a(&o, &b))
    };
    assert!(passed.iter().all(|p| *p), "all eight inside at once");
    assert_eq!(o.max(), 8);
}

/// Bare: the module's path is the lock; helpers without a test attribute stay unlocked,
/// so a test can call them (a locked helper would be re-entry and panic).
#[locked]
mod bare_module {
    use std::sync::atomic::{AtomicBool, Ordering};

    pub fn helper(seen: &AtomicBool) {
        seen.store(lock_core::is_locked(module_path!()), Ordering::SeqCst);
    }

    #[test]
    pub fn holds_the_module_path() {
        assert_eq!(module_path!(), "attribute_forms::bare_module");
        assert!(lock_core::is_locked("attribute_forms::bare_module"));
        let seen = AtomicBool::new(false);
        helper(&seen);
        assert!(seen.load(Ordering::SeqCst));
    }
}

#[test]
fn a_bare_locked_module_locks_its_path_and_leaves_helpers_alone() {
    bare_module::holds_the_module_path();
    let seen = AtomicBool::new(true);
    let held = lock_core::Lock::new("attribute_forms::bare_module")
        .timeout(LIMIT)
        .blocking_run(|| bare_module::helper(&seen));
    held.unwrap();
    assert!(seen.load(Ordering::SeqCst));
}

// ---- item 5: impl form ----

static IMPL_OVERLAP: Overlap = Overlap::new();

struct Worker;

#[locked(name = "forms-impl-serial")]
impl Worker {
    async fn a(&self) {
        let _inside = IMPL_OVERLAP.enter();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    async fn b(&self) {
        let _inside = IMPL_OVERLAP.enter();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fn c(&self) {
        let _inside = IMPL_OVERLAP.enter();
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_methods_of_a_locked_impl_never_overlap() {
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                match i % 3 {
                    0 => Worker.a().await,
                    1 => Worker.b().await,
                    _ => tokio::task::spawn_blocking(|| Worker.c()).await.unwrap(),
                }
            })
        })
        .collect();
    tokio::time::timeout(LIMIT, async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("the methods finish");
    assert_eq!(IMPL_OVERLAP.max(), 1);
    assert_eq!(IMPL_OVERLAP.entries(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_the_same_methods_unlocked_do_overlap() {
    let o = Arc::new(Overlap::new());
    let b = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (o, b) = (o.clone(), b.clone());
            tokio::spawn(async move {
                let _inside = o.enter();
                tokio::time::timeout(Duration::from_secs(10), b.wait())
                    .await
                    .is_ok()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap(), "all eight inside at once");
    }
    assert_eq!(o.max(), 8);
}

/// Bare on an impl: each function its own default lock, `module::Type::fn`.
struct Pair;

#[locked]
impl Pair {
    async fn left(&self, b: &tokio::sync::Barrier) -> Result<bool, LockError> {
        let met = tokio::time::timeout(Duration::from_secs(10), b.wait())
            .await
            .is_ok();
        Ok(met && lock_core::is_locked("attribute_forms::Pair::left"))
    }
    async fn right(&self, b: &tokio::sync::Barrier) -> Result<bool, LockError> {
        let met = tokio::time::timeout(Duration::from_secs(10), b.wait())
            .await
            .is_ok();
        Ok(met && lock_core::is_locked("attribute_forms::Pair::right"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_locked_impl_gives_each_function_its_own_lock() {
    let b = Arc::new(tokio::sync::Barrier::new(2));
    let (b1, b2) = (b.clone(), b.clone());
    let l = tokio::spawn(async move { Pair.left(&b1).await });
    let r = tokio::spawn(async move { Pair.right(&b2).await });
    assert!(
        l.await.unwrap().unwrap(),
        "left ran beside right under its own name"
    );
    assert!(
        r.await.unwrap().unwrap(),
        "right ran beside left under its own name"
    );
    assert!(!lock_core::is_locked("attribute_forms::Pair::left"));
    assert!(!lock_core::is_locked("attribute_forms::Pair::right"));
}
