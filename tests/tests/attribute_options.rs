//! `#[locked]` options written as expressions and interpolated names (issue #12):
//! `{self.id}`, `{k:?}`, `{a.b}`, `timeout_ms = CONST | expr`, `permits = expr`,
//! `file = expr`, and the panic of a `()` fn whose lock is busy.

mod file_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use file_support::fresh_dir;
use lock_core::file::LockDir;
use lock_core::{locked, LockError};
use lock_core_tests::{unique, HeldElsewhere, Overlap};
use tokio::sync::Barrier;

const LIMIT: Duration = Duration::from_secs(20);

// ---- item 6: names from the receiver, from fields, with Debug ----

struct Account {
    id: String,
}

impl Account {
    #[locked(name = "opt-acct-{self.id}", timeout_ms = 20_000)]
    async fn meet(&self, b: &Barrier) -> Result<bool, LockError> {
        Ok(tokio::time::timeout(Duration::from_secs(10), b.wait())
            .await
            .is_ok())
    }

    #[locked(name = "opt-acct-{self.id}", guard = g)]
    async fn visit(&self, o: &Overlap) -> Result<String, LockError> {
        let _inside = o.enter();
        tokio::task::yield_now().await;
        Ok(g.name().to_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_with_different_ids_hold_different_locks_and_overlap() {
    let b = Arc::new(Barrier::new(2));
    let (x, y) = (
        Arc::new(Account { id: unique("x") }),
        Arc::new(Account { id: unique("y") }),
    );
    let tasks = [x, y].map(|acct| {
        let b = b.clone();
        tokio::spawn(async move { acct.meet(&b).await })
    });
    for t in tasks {
        assert!(t.await.unwrap().unwrap(), "both bodies inside at once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_with_the_same_id_exclude_each_other() {
    let id = unique("same");
    let o = Arc::new(Overlap::new());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (o, acct) = (o.clone(), Account { id: id.clone() });
            tokio::spawn(async move {
                for _ in 0..20 {
                    let name = acct.visit(&o).await.unwrap();
                    assert_eq!(name, format!("opt-acct-{}", acct.id));
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
    .expect("tasks finish");
    assert_eq!(o.max(), 1);
    assert_eq!(o.entries(), 160);
}

#[derive(Debug)]
struct Key {
    tag: String,
}

#[locked(name = "opt-dbg-{k:?}", on_error = "panic")]
fn debug_named(k: &str) -> (bool, bool) {
    (
        lock_core::is_locked(&format!("opt-dbg-{k:?}")),
        lock_core::is_locked(&format!("opt-dbg-{k}")),
    )
}

#[locked(name = "opt-dbg-struct-{key:?}", guard = g, on_error = "panic")]
fn debug_struct(key: &Key) -> String {
    g.name().to_owned()
}

#[test]
fn debug_holes_format_with_debug() {
    let tag = unique("k");
    assert_eq!(
        debug_named(&tag),
        (true, false),
        "the name has Debug's quotes"
    );
    let key = Key { tag: tag.clone() };
    assert!(debug_struct(&key).contains(&key.tag));
    assert_eq!(
        debug_struct(&key),
        format!("opt-dbg-struct-Key {{ tag: {tag:?} }}")
    );
}

struct Order {
    customer: String,
}

#[locked(name = "opt-field-{order.customer}")]
fn by_field(order: &Order) -> Result<Vec<String>, LockError> {
    Ok(lock_core::holders()
        .into_iter()
        .filter(|h| h.name.starts_with("opt-field-"))
        .map(|h| h.name)
        .filter(|n| n.ends_with(&order.customer))
        .collect())
}

#[test]
fn field_holes_use_the_fields_display() {
    let order = Order {
        customer: unique("c"),
    };
    assert_eq!(
        by_field(&order).unwrap(),
        vec![format!("opt-field-{}", order.customer)]
    );
}

// ---- item 7: constant and expression options ----

const LIMIT_MS: u64 = 120;

#[locked(name = "opt-const-{tag}", timeout_ms = LIMIT_MS)]
async fn const_limited(tag: &str) -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "opt-const-sync-{tag}", timeout_ms = LIMIT_MS)]
fn const_limited_sync(tag: &str) -> Result<(), LockError> {
    Ok(())
}

struct Cfg {
    wait_ms: u64,
    slots: u32,
    dir: PathBuf,
}

#[locked(name = "opt-expr-{tag}", timeout_ms = cfg.wait_ms)]
async fn expr_limited(tag: &str, cfg: &Cfg) -> Result<(), LockError> {
    Ok(())
}

#[locked(name = "opt-slots-{tag}", permits = cfg.slots)]
async fn slotted(tag: &str, cfg: &Cfg, o: &Overlap) -> Result<(), LockError> {
    let _inside = o.enter();
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}

#[locked(name = "opt-dir-{tag}", file = &cfg.dir, guard = g)]
fn in_cfg_dir(tag: &str, cfg: &Cfg) -> Result<(bool, bool), LockError> {
    Ok((
        g.is_file_lock(),
        LockDir::new(&cfg.dir).is_locked(&format!("opt-dir-{tag}")),
    ))
}

#[track_caller]
fn assert_timed_out(r: Result<(), LockError>, at_least: Duration, took: Duration) {
    match r {
        Err(e @ LockError::Timeout { .. }) => assert_eq!(e.code(), 8403),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(
        took >= at_least,
        "gave up after {took:?}, before {at_least:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "gave up far too late: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constant_timeout_times_out_as_given() {
    let tag = unique("t");
    let held = HeldElsewhere::lock(&format!("opt-const-{tag}"));
    let start = Instant::now();
    let r = const_limited(&tag).await;
    assert_timed_out(r, Duration::from_millis(LIMIT_MS), start.elapsed());
    drop(held);
    const_limited(&tag).await.unwrap();

    let held = HeldElsewhere::lock(&format!("opt-const-sync-{tag}"));
    let t = tag.clone();
    let (r, took) = std::thread::spawn(move || {
        let start = Instant::now();
        (const_limited_sync(&t), start.elapsed())
    })
    .join()
    .unwrap();
    assert_timed_out(r, Duration::from_millis(LIMIT_MS), took);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expression_timeout_is_read_per_call() {
    let tag = unique("t");
    let held = HeldElsewhere::lock(&format!("opt-expr-{tag}"));
    for wait_ms in [80, 250] {
        let cfg = Cfg {
            wait_ms,
            slots: 1,
            dir: PathBuf::new(),
        };
        let start = Instant::now();
        let r = expr_limited(&tag, &cfg).await;
        assert_timed_out(r, Duration::from_millis(wait_ms), start.elapsed());
    }
    let cfg = Cfg {
        wait_ms: 0,
        slots: 1,
        dir: PathBuf::new(),
    };
    let r = expr_limited(&tag, &cfg).await;
    assert!(
        matches!(r, Err(LockError::Busy { .. })),
        "0 tries once: {r:?}"
    );
    drop(held);
    expr_limited(&tag, &cfg).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permits_from_an_expression_admit_that_many() {
    let tag = Arc::new(unique("t"));
    let cfg = Arc::new(Cfg {
        wait_ms: 0,
        slots: 3,
        dir: PathBuf::new(),
    });
    let o = Arc::new(Overlap::new());
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (tag, cfg, o) = (tag.clone(), cfg.clone(), o.clone());
            tokio::spawn(async move {
                for _ in 0..15 {
                    slotted(&tag, &cfg, &o).await.unwrap();
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
    .expect("tasks finish");
    assert_eq!(o.max(), 3);
    assert_eq!(o.entries(), 12 * 15);
}

#[test]
fn a_directory_from_an_expression_holds_the_lock_file_there() {
    let dir = fresh_dir("opt-dir");
    let tag = unique("t");
    let cfg = Cfg {
        wait_ms: 0,
        slots: 1,
        dir: dir.to_path_buf(),
    };
    assert_eq!(in_cfg_dir(&tag, &cfg).unwrap(), (true, true));
    let locks = LockDir::new(&*dir);
    let name = format!("opt-dir-{tag}");
    assert!(
        locks.lock_file(&name).unwrap().is_file(),
        "the lock file is in cfg.dir"
    );
    assert!(!locks.is_locked(&name));
}

// ---- item 10: the panic of a () fn whose lock is busy ----

#[locked(name = "opt-unit-{tag}", timeout_ms = 0)]
fn unit_busy(tag: &str) {}

#[locked(name = "opt-unit-async-{tag}", timeout_ms = 0)]
async fn unit_busy_async(tag: &str) {}

type Hook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Runs `f`, which must panic; returns the message and the panic's location (file).
/// The hook records only this thread's panics and passes others on.
fn capture_panic(f: impl FnOnce()) -> (String, String) {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let me = std::thread::current().id();
    let prev: Arc<Hook> = Arc::new(std::panic::take_hook());
    let seen = Arc::new(std::sync::Mutex::new(None::<String>));
    {
        let (prev, seen) = (prev.clone(), seen.clone());
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == me {
                *seen.lock().unwrap() = info.location().map(|l| l.file().to_owned());
            } else {
                prev(info);
            }
        }));
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| prev(info)));
    let payload = r.expect_err("the call should have panicked");
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    let at = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the hook saw the panic");
    (msg, at)
}

#[test]
fn a_unit_fn_whose_lock_is_busy_panics_naming_the_fn_and_this_file() {
    let tag = unique("t");
    let name = format!("opt-unit-{tag}");
    let held = HeldElsewhere::lock(&name);
    let (msg, at) = capture_panic(|| unit_busy(&tag));
    assert!(msg.contains("unit_busy"), "{msg}");
    assert!(msg.contains(file!()), "{msg}");
    assert!(msg.contains(&name), "{msg}");
    assert_eq!(
        at,
        file!(),
        "the panic points at the locked fn, not into lock-core"
    );
    assert!(!at.contains("lock-core/src"), "{at}");
    drop(held);
    unit_busy(&tag);
}

#[test]
fn an_async_unit_fn_whose_lock_is_busy_panics_naming_the_fn_and_this_file() {
    let tag = unique("t");
    let name = format!("opt-unit-async-{tag}");
    let held = HeldElsewhere::lock(&name);
    let (msg, at) = capture_panic(|| futures::executor::block_on(unit_busy_async(&tag)));
    assert!(msg.contains("unit_busy_async"), "{msg}");
    assert!(msg.contains(file!()), "{msg}");
    assert!(msg.contains(&name), "{msg}");
    assert_eq!(at, file!());
    drop(held);
    futures::executor::block_on(unit_busy_async(&tag));
}
