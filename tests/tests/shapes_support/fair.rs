//! Fairness across modes (item 14) and kind mismatches (item 15), in-process or in a
//! lock directory; see the parent module.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lock_core::{Kind, LockError, Mode};
use lock_core_tests::{eventually, unique, waiters_of};

use super::{held_elsewhere, req, LIMIT};

/// Item 14: with shared holders inside, an exclusive request queues; shared requests
/// that arrive after it queue behind it (they neither join the holders nor barge).
pub fn late_readers_queue_behind_a_waiting_writer(dir: Option<PathBuf>) {
    let name = unique("shape-fair-writer");
    let d = dir.as_deref();
    let r1 = held_elsewhere(&name, d, Mode::Shared);
    let r2 = held_elsewhere(&name, d, Mode::Shared);
    let trace = Arc::new(Mutex::new(Vec::new()));
    let spawn = |mode: Mode, tag: &'static str| {
        let (name, trace, dir) = (name.clone(), trace.clone(), dir.clone());
        std::thread::spawn(move || {
            let g = req(&name, dir.as_deref())
                .mode(mode)
                .timeout(LIMIT)
                .blocking_acquire()
                .unwrap();
            trace.lock().unwrap().push(tag);
            drop(g);
        })
    };
    let writer = spawn(Mode::Exclusive, "w");
    assert!(
        eventually(LIMIT, || waiters_of(&name) == 1),
        "the writer queues"
    );
    // A shared try now must not join the shared holders past the waiting writer.
    match req(&name, d).shared().try_acquire() {
        Err(LockError::Busy {
            reentrant: false, ..
        }) => {}
        other => panic!("a late shared try must not barge past the writer: {other:?}"),
    }
    let readers: Vec<_> = (0..3).map(|_| spawn(Mode::Shared, "r")).collect();
    assert!(
        eventually(LIMIT, || waiters_of(&name) == 4),
        "the late readers queue"
    );
    assert!(
        trace.lock().unwrap().is_empty(),
        "nobody got past the holders"
    );
    drop(r1);
    drop(r2);
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(*trace.lock().unwrap(), vec!["w", "r", "r", "r"]);
}

/// Item 14: a stream of writers does not starve a reader: each time the reader asks, at
/// most as many writer turns as there are writers (one request each, FIFO; doubled for
/// the instant between the reader's trace mark and its request) pass before it.
pub fn a_stream_of_writers_does_not_starve_a_reader(dir: Option<PathBuf>) {
    const WRITERS: usize = 4;
    let name = Arc::new(unique("shape-fair-reader"));
    let trace = Arc::new(Mutex::new(Vec::<char>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (name, trace, stop, dir) = (name.clone(), trace.clone(), stop.clone(), dir.clone());
            std::thread::spawn(move || {
                let mut turns = 0;
                while !stop.load(Ordering::SeqCst) && turns < 2_000 {
                    let g = req(&name, dir.as_deref())
                        .timeout(LIMIT)
                        .blocking_acquire()
                        .unwrap();
                    trace.lock().unwrap().push('W');
                    std::thread::sleep(Duration::from_millis(1));
                    drop(g);
                    turns += 1;
                }
            })
        })
        .collect();
    let writes =
        |trace: &Mutex<Vec<char>>| trace.lock().unwrap().iter().filter(|c| **c == 'W').count();
    for _ in 0..5 {
        let seen = writes(&trace);
        assert!(
            eventually(LIMIT, || writes(&trace) >= seen + WRITERS),
            "writers run"
        );
        trace.lock().unwrap().push('?');
        let start = Instant::now();
        let g = req(&name, dir.as_deref())
            .shared()
            .timeout(Duration::from_secs(10))
            .blocking_acquire()
            .expect("the reader gets its turn among the writers");
        trace.lock().unwrap().push('R');
        drop(g);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    let trace = trace.lock().unwrap();
    let mut passed = None;
    for c in trace.iter() {
        match (c, passed.as_mut()) {
            ('?', _) => passed = Some(0),
            ('W', Some(n)) => *n += 1,
            ('R', Some(n)) => {
                assert!(
                    *n <= 2 * WRITERS,
                    "{n} writer turns passed the waiting reader"
                );
                passed = None;
            }
            _ => {}
        }
    }
}

fn assert_mismatch(r: Result<lock_core::LockGuard, LockError>, kind: Kind, asked: Mode) {
    match r {
        Err(
            ref e @ LockError::Mismatch {
                kind: k, asked: a, ..
            },
        ) => {
            assert_eq!((k, a), (kind, asked), "{e}");
            assert_eq!(e.code(), 8411);
        }
        other => panic!("expected Mismatch({kind:?}, asked {asked:?}), got {other:?}"),
    }
}

/// Item 15: one name is one kind of lock while it is held: other counts and the other
/// kind are `Mismatch` at once (every verb), the kind is forgotten once it is free, and
/// `permits(0)` is `Invalid`.
pub fn mismatched_kinds_are_refused_at_once(dir: Option<PathBuf>) {
    let name = unique("shape-mismatch");
    let d = dir.as_deref();
    let held = held_elsewhere(&name, d, Mode::Permits(2));
    let counted = Kind::Counted(2);
    assert_mismatch(
        req(&name, d).permits(3).try_acquire(),
        counted,
        Mode::Permits(3),
    );
    assert_mismatch(
        req(&name, d).exclusive().try_acquire(),
        counted,
        Mode::Exclusive,
    );
    assert_mismatch(req(&name, d).shared().try_acquire(), counted, Mode::Shared);
    let start = Instant::now();
    assert_mismatch(
        req(&name, d).permits(3).timeout(LIMIT).blocking_acquire(),
        counted,
        Mode::Permits(3),
    );
    let r = futures::executor::block_on(req(&name, d).exclusive().timeout(LIMIT).acquire());
    assert_mismatch(r, counted, Mode::Exclusive);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "refused at once, not after a wait"
    );
    // The same count joins.
    let g = req(&name, d).permits(2).try_acquire().unwrap();
    drop(g);
    drop(held);
    // Free again: the other kind works, and is now the kind.
    let g = req(&name, d).exclusive().try_acquire().unwrap();
    drop(g);
    let held = held_elsewhere(&name, d, Mode::Exclusive);
    assert_mismatch(
        req(&name, d).permits(2).try_acquire(),
        Kind::ReadWrite,
        Mode::Permits(2),
    );
    drop(held);
    let g = req(&name, d).permits(3).try_acquire().unwrap();
    assert_eq!(g.mode(), Mode::Permits(3));
    drop(g);
    for bad in [0, lock_core::MAX_PERMITS + 1] {
        match req(&name, d).permits(bad).try_acquire() {
            Err(e @ LockError::Invalid { .. }) => {
                assert_eq!(e.code(), 8412);
                assert_eq!(e.name(), name);
            }
            other => panic!("permits({bad}): expected Invalid, got {other:?}"),
        }
    }
    let e = futures::executor::block_on(req(&name, d).permits(0).acquire()).unwrap_err();
    assert_eq!(e.code(), 8412, "{e}");
    assert!(!lock_core::is_locked(&name));
}
