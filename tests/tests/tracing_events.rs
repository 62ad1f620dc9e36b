//! What a `tracing` subscriber sees: waits, acquisitions after a wait, releases with hold
//! times, refusals, exactly one slow-wait WARN naming the holder, and the `lock.held` span
//! around a locked body — with the documented target and field names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lock_core::{Lock, LockError};
use lock_core_tests::{unique, HeldElsewhere};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One captured event: level, target, message and fields as text.
#[derive(Clone, Debug)]
struct Seen {
    level: Level,
    target: String,
    fields: HashMap<String, String>,
    /// Names of the spans entered on the thread when it was emitted.
    spans: Vec<String>,
}

impl Seen {
    fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// A span's name and fields.
type SpanInfo = (String, HashMap<String, String>);

/// A subscriber that keeps every event of target `lock_core` and knows span names.
#[derive(Default)]
struct Collector {
    events: Mutex<Vec<Seen>>,
    spans: Mutex<HashMap<u64, SpanInfo>>,
    next: std::sync::atomic::AtomicU64,
}

thread_local! {
    static STACK: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Subscriber for Collector {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.spans
            .lock()
            .unwrap()
            .insert(id, (attrs.metadata().name().to_owned(), fields));
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let md = event.metadata();
        if !md.target().starts_with("lock_core") {
            return;
        }
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let names = self.spans.lock().unwrap();
        let spans = STACK.with(|s| {
            s.borrow()
                .iter()
                .filter_map(|id| names.get(id).map(|(n, _)| n.clone()))
                .collect()
        });
        self.events.lock().unwrap().push(Seen {
            level: *md.level(),
            target: md.target().to_owned(),
            fields,
            spans,
        });
    }
    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, span: &Id) {
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            if let Some(i) = s.iter().rposition(|x| *x == span.into_u64()) {
                s.remove(i);
            }
        });
    }
}

/// The process-wide collector (installed once; tests filter by their own lock names).
fn collector() -> &'static Arc<Collector> {
    static C: OnceLock<Arc<Collector>> = OnceLock::new();
    C.get_or_init(|| {
        let c = Arc::new(Collector::default());
        tracing::subscriber::set_global_default(ArcSub(c.clone())).unwrap();
        c
    })
}

struct ArcSub(Arc<Collector>);

impl Subscriber for ArcSub {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.0.enabled(m)
    }
    fn new_span(&self, a: &Attributes<'_>) -> Id {
        self.0.new_span(a)
    }
    fn record(&self, i: &Id, r: &Record<'_>) {
        self.0.record(i, r)
    }
    fn record_follows_from(&self, a: &Id, b: &Id) {
        self.0.record_follows_from(a, b)
    }
    fn event(&self, e: &Event<'_>) {
        self.0.event(e)
    }
    fn enter(&self, s: &Id) {
        self.0.enter(s)
    }
    fn exit(&self, s: &Id) {
        self.0.exit(s)
    }
}

fn events_for(name: &str) -> Vec<Seen> {
    collector()
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.get("lock.name") == Some(name))
        .cloned()
        .collect()
}

fn message(e: &Seen) -> &str {
    e.get("message").unwrap_or("")
}

#[test]
fn a_wait_is_reported_when_it_starts_and_when_it_ends_and_the_release_with_its_hold_time() {
    collector();
    let name = unique("tr-wait");
    let held = HeldElsewhere::lock(&name);
    let waiter = {
        let n = name.clone();
        std::thread::spawn(move || {
            lock_core::blocking_acquire(&n, Some(Duration::from_secs(10))).map(drop)
        })
    };
    // Bounded: the waiter's "waiting" event shows up, then the holder goes.
    let t = std::time::Instant::now();
    while !events_for(&name)
        .iter()
        .any(|e| message(e).contains("waiting for a lock"))
    {
        assert!(t.elapsed() < Duration::from_secs(10), "no wait event");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(held);
    waiter.join().unwrap().unwrap();
    let seen = events_for(&name);
    let started = seen
        .iter()
        .find(|e| message(e).contains("waiting for a lock"))
        .unwrap();
    assert_eq!(started.level, Level::DEBUG);
    assert_eq!(started.target, "lock_core");
    assert_eq!(started.get("lock.mode"), Some("exclusive"));
    assert_eq!(started.get("lock.backend"), Some("memory"));
    assert_eq!(
        started.get("holder.pid"),
        Some(std::process::id().to_string().as_str())
    );
    let got = seen
        .iter()
        .find(|e| message(e).contains("after waiting"))
        .expect("acquired event");
    assert!(got.get("wait_ms").is_some(), "{got:?}");
    let released = seen
        .iter()
        .filter(|e| message(e).contains("released"))
        .count();
    assert!(released >= 2, "both holds' releases: {seen:?}");
    assert!(seen
        .iter()
        .filter(|e| message(e).contains("released"))
        .all(|e| e.level == Level::TRACE && e.get("held_ms").is_some()));
}

/// A lock named after `prefix`, held by another thread, with the slow-wait threshold
/// at 100 ms, and a runtime to wait for it on.
fn slow_wait_case(prefix: &str) -> (String, HeldElsewhere, tokio::runtime::Runtime) {
    collector();
    lock_core::set_slow_wait_threshold(Duration::from_millis(100));
    let name = unique(prefix);
    let held = HeldElsewhere::lock(&name);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (name, held, rt)
}

#[test]
fn one_slow_wait_warning_names_the_holder() {
    let (name, held, rt) = slow_wait_case("tr-slow");
    let n = name.clone();
    let waited = rt.block_on(async move {
        let w = tokio::spawn(async move {
            lock_core::acquire_timeout(&n, Duration::from_secs(10))
                .await
                .map(drop)
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        drop(held);
        w.await.unwrap()
    });
    waited.unwrap();
    let warns: Vec<Seen> = events_for(&name)
        .into_iter()
        .filter(|e| e.level == Level::WARN)
        .collect();
    assert_eq!(warns.len(), 1, "exactly one slow-wait warning: {warns:?}");
    let w = &warns[0];
    assert!(message(w).contains("still waiting"), "{w:?}");
    assert_eq!(
        w.get("holder.pid"),
        Some(std::process::id().to_string().as_str())
    );
    assert!(
        w.get("holder").is_some_and(|h| h.contains("thread #")),
        "{w:?}"
    );
    assert!(w
        .get("wait_ms")
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|ms| ms >= 100));
}

/// A wait with a deadline later than the slow-wait threshold says the slow-wait line
/// once, then still ends at its deadline (the wait's one timer is set again for it).
#[test]
fn a_wait_past_its_slow_wait_line_still_times_out() {
    let (name, held, rt) = slow_wait_case("tr-slow-timeout");
    let n = name.clone();
    let got = rt.block_on(async move {
        // Bounded: a wait that missed its deadline fails here, not by hanging.
        tokio::time::timeout(
            Duration::from_secs(10),
            lock_core::acquire_timeout(&n, Duration::from_millis(300)),
        )
        .await
    });
    drop(held);
    let e = got
        .expect("the wait ended at its deadline")
        .map(drop)
        .unwrap_err();
    assert_eq!(e.code(), 8403, "{e}");
    let LockError::Timeout { waited, .. } = e else {
        panic!("a timeout: {e}")
    };
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let slow: Vec<Seen> = events_for(&name)
        .into_iter()
        .filter(|e| e.level == Level::WARN && message(e).contains("still waiting"))
        .collect();
    assert_eq!(slow.len(), 1, "exactly one slow-wait warning: {slow:?}");
}

#[test]
fn refusals_are_reported_at_their_levels() {
    collector();
    let name = unique("tr-refused");
    let held = HeldElsewhere::lock(&name);
    assert!(lock_core::try_acquire(&name).is_err());
    let e = lock_core::blocking_acquire(&name, Some(Duration::from_millis(20))).unwrap_err();
    assert_eq!(e.code(), 8403);
    drop(held);
    let counted = HeldElsewhere::new({
        let n = name.clone();
        move || Lock::new(&n).permits(2).blocking_acquire()
    });
    let e = Lock::new(&name).permits(3).try_acquire().unwrap_err();
    assert!(matches!(e, LockError::Mismatch { .. }), "{e}");
    drop(counted);
    let seen = events_for(&name);
    let code = |c: u16, l: Level| {
        seen.iter()
            .any(|e| e.get("error.code") == Some(c.to_string().as_str()) && e.level == l)
    };
    assert!(code(8406, Level::DEBUG), "Busy at DEBUG: {seen:?}");
    assert!(code(8403, Level::INFO), "Timeout at INFO: {seen:?}");
    assert!(code(8411, Level::WARN), "Mismatch at WARN: {seen:?}");
}

#[lock_core::locked(name = "tr-span-{tag}")]
fn locked_body(tag: &str) {
    // An event from inside the body sees the `lock.held` span.
    let inner = format!("tr-span-{tag}-inner");
    drop(lock_core::try_acquire(&inner).unwrap());
}

#[test]
fn a_locked_body_runs_inside_a_lock_held_span() {
    collector();
    let tag = unique("s");
    locked_body(&tag);
    let inner = format!("tr-span-{tag}-inner");
    let release = events_for(&inner)
        .into_iter()
        .find(|e| message(e).contains("released"))
        .expect("the inner release");
    assert!(
        release.spans.iter().any(|s| s == "lock.held"),
        "{release:?}"
    );
    let spans = collector().spans.lock().unwrap();
    let held = spans
        .values()
        .find(|(n, f)| n == "lock.held" && f.get("lock.name").is_some_and(|v| v.contains(&tag)))
        .expect("a lock.held span for the body");
    assert!(
        held.1
            .get("func")
            .is_some_and(|f| f.contains("locked_body")),
        "{held:?}"
    );
}

// Fixed names: the attribute's fast path (a per-site pinned entry) is the one tested.
#[lock_core::locked(name = "tr-attr-again-sync")]
fn attr_outer_sync() -> Result<(), LockError> {
    attr_inner_sync()
}

#[lock_core::locked(name = "tr-attr-again-sync")]
fn attr_inner_sync() -> Result<(), LockError> {
    Ok(())
}

#[lock_core::locked(name = "tr-attr-again-async")]
async fn attr_outer_async() -> Result<(), LockError> {
    attr_inner_async().await
}

#[lock_core::locked(name = "tr-attr-again-async")]
async fn attr_inner_async() -> Result<(), LockError> {
    Ok(())
}

/// A refusal of the attribute's first attempt (here re-entry, sync and async) is
/// reported like every other refusal: a WARN with the error's code.
#[test]
fn the_attributes_refusals_are_reported_too() {
    collector();
    let e = attr_outer_sync().unwrap_err();
    assert!(
        matches!(
            e,
            LockError::Busy {
                reentrant: true,
                ..
            }
        ),
        "{e}"
    );
    let e = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(attr_outer_async())
        .unwrap_err();
    assert!(
        matches!(
            e,
            LockError::Busy {
                reentrant: true,
                ..
            }
        ),
        "{e}"
    );
    for name in ["tr-attr-again-sync", "tr-attr-again-async"] {
        let seen = events_for(name);
        assert!(
            seen.iter()
                .any(|e| e.level == Level::WARN && e.get("error.code") == Some("8406")),
            "{name}: {seen:?}"
        );
    }
}
