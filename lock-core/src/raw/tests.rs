use super::wait::Acquire;
use super::*;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll, Wake as TaskWake, Waker};

/// A waker that counts its wake-ups.
struct Counter(AtomicUsize);

impl TaskWake for Counter {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn counting() -> (std::sync::Arc<Counter>, Waker) {
    let c = std::sync::Arc::new(Counter(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

fn wakes(c: &Counter) -> usize {
    c.0.load(std::sync::atomic::Ordering::SeqCst)
}

fn f() -> Facts {
    Facts::default()
}

/// Polls `fut` once with `w`: `Some(grant)` if ready.
fn poll_once(fut: &mut Pin<Box<Acquire<'_>>>, w: &Waker) -> Option<Result<Grant, Refused>> {
    match fut.as_mut().poll(&mut Context::from_waker(w)) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

use std::pin::Pin;

#[test]
fn a_re_polled_waiter_is_woken_through_its_latest_waker() {
    let lock = RawLock::new();
    let held = lock.try_lock(Mode::Exclusive, &f()).unwrap();
    let mut fut = Box::pin(lock.lock_async(Mode::Exclusive, f()));
    let (first, w1) = counting();
    let (second, w2) = counting();
    assert!(poll_once(&mut fut, &w1).is_none());
    // Moved to another task (e.g. inside a `select!`): the hand-off must wake this one.
    assert!(poll_once(&mut fut, &w2).is_none());
    assert_eq!(lock.waiters(), 1, "re-polling must not queue twice");
    lock.unlock(&held);
    assert_eq!((wakes(&first), wakes(&second)), (0, 1));
    let grant = poll_once(&mut fut, &w2).unwrap().unwrap();
    assert!(lock.is_live(grant.id));
    drop(fut);
    lock.unlock(&grant);
    assert!(!lock.is_locked());
}

#[test]
fn waiters_are_recycled_without_leaking_a_grant() {
    // The same thread waits many times; each wait reuses the spare waiter, and a
    // recycled waiter must start ungranted (else it would skip the queue).
    let lock = RawLock::new();
    for _ in 0..100 {
        let held = lock.try_lock(Mode::Exclusive, &f()).unwrap();
        let (woken, w) = counting();
        let mut fut = Box::pin(lock.lock_async(Mode::Exclusive, f()));
        assert!(poll_once(&mut fut, &w).is_none());
        assert!(
            poll_once(&mut fut, &w).is_none(),
            "not granted before the release"
        );
        lock.unlock(&held);
        assert_eq!(wakes(&woken), 1);
        let grant = poll_once(&mut fut, &w).unwrap().unwrap();
        drop(fut);
        lock.unlock(&grant);
    }
    assert!(!lock.is_locked());
    assert_eq!(lock.waiters(), 0);
}

#[test]
fn shared_holders_overlap_and_exclude_an_exclusive_one() {
    let lock = RawLock::new();
    let a = lock.try_lock(Mode::Shared, &f()).unwrap();
    let b = lock.try_lock(Mode::Shared, &f()).unwrap();
    assert_eq!(lock.shape(), Some((Kind::ReadWrite, Mode::Shared, 2)));
    assert_eq!(
        lock.try_lock(Mode::Exclusive, &f()).unwrap_err(),
        Refused::Held
    );
    lock.unlock(&a);
    assert_eq!(
        lock.try_lock(Mode::Exclusive, &f()).unwrap_err(),
        Refused::Held
    );
    lock.unlock(&b);
    let x = lock.try_lock(Mode::Exclusive, &f()).unwrap();
    assert_eq!(
        lock.try_lock(Mode::Shared, &f()).unwrap_err(),
        Refused::Held
    );
    lock.unlock(&x);
    assert!(!lock.is_locked());
}

#[test]
fn a_waiting_exclusive_request_is_not_overtaken_by_later_shared_ones() {
    let lock = RawLock::new();
    let reader = lock.try_lock(Mode::Shared, &f()).unwrap();
    let (wx, wxw) = counting();
    let mut writer = Box::pin(lock.lock_async(Mode::Exclusive, f()));
    assert!(poll_once(&mut writer, &wxw).is_none());
    // A later reader may not join the current one: it queues behind the writer.
    assert_eq!(
        lock.try_lock(Mode::Shared, &f()).unwrap_err(),
        Refused::Held
    );
    let (wr, wrw) = counting();
    let mut late = Box::pin(lock.lock_async(Mode::Shared, f()));
    assert!(poll_once(&mut late, &wrw).is_none());
    lock.unlock(&reader);
    assert_eq!((wakes(&wx), wakes(&wr)), (1, 0), "the writer goes first");
    let w = poll_once(&mut writer, &wxw).unwrap().unwrap();
    lock.unlock(&w);
    assert_eq!(wakes(&wr), 1);
    let r = poll_once(&mut late, &wrw).unwrap().unwrap();
    lock.unlock(&r);
    drop((writer, late));
    assert!(!lock.is_locked());
}

#[test]
fn a_release_grants_a_batch_of_shared_waiters() {
    let lock = RawLock::new();
    let x = lock.try_lock(Mode::Exclusive, &f()).unwrap();
    let waiters: Vec<_> = (0..6)
        .map(|_| {
            let (c, w) = counting();
            let mut fut = Box::pin(lock.lock_async(Mode::Shared, f()));
            assert!(poll_once(&mut fut, &w).is_none());
            (c, w, fut)
        })
        .collect();
    // Then an exclusive waiter, which the batch must not include.
    let (cx_, wx) = counting();
    let mut writer = Box::pin(lock.lock_async(Mode::Exclusive, f()));
    assert!(poll_once(&mut writer, &wx).is_none());
    lock.unlock(&x);
    let mut grants = Vec::new();
    for (c, w, mut fut) in waiters {
        assert_eq!(wakes(&c), 1);
        grants.push(poll_once(&mut fut, &w).unwrap().unwrap());
    }
    assert_eq!(wakes(&cx_), 0);
    assert_eq!(lock.shape(), Some((Kind::ReadWrite, Mode::Shared, 6)));
    // Six holders: four in slots, two in the overflow list, all live and listed.
    assert_eq!(lock.records().len(), 6);
    assert!(grants.iter().all(|g| lock.is_live(g.id)));
    for g in &grants {
        lock.unlock(g);
    }
    assert_eq!(wakes(&cx_), 1);
    let w = poll_once(&mut writer, &wx).unwrap().unwrap();
    assert!(grants.iter().all(|g| !lock.is_live(g.id)));
    lock.unlock(&w);
    assert!(!lock.is_locked() && lock.records().is_empty());
}

#[test]
fn a_cancelled_head_lets_the_shared_waiters_behind_it_in() {
    let lock = RawLock::new();
    let reader = lock.try_lock(Mode::Shared, &f()).unwrap();
    let (_, wx) = counting();
    let mut writer = Box::pin(lock.lock_async(Mode::Exclusive, f()));
    assert!(poll_once(&mut writer, &wx).is_none());
    let (cr, wr) = counting();
    let mut late = Box::pin(lock.lock_async(Mode::Shared, f()));
    assert!(poll_once(&mut late, &wr).is_none());
    drop(writer);
    assert_eq!(
        wakes(&cr),
        1,
        "nothing stands between the reader and the lock now"
    );
    let r = poll_once(&mut late, &wr).unwrap().unwrap();
    lock.unlock(&r);
    lock.unlock(&reader);
    assert!(!lock.is_locked() && lock.waiters() == 0);
}

#[test]
fn counted_locks_admit_at_most_n_and_refuse_other_kinds() {
    let lock = RawLock::new();
    let a = lock.try_lock(Mode::Permits(2), &f()).unwrap();
    let b = lock.try_lock(Mode::Permits(2), &f()).unwrap();
    assert_eq!(
        lock.try_lock(Mode::Permits(2), &f()).unwrap_err(),
        Refused::Held
    );
    assert_eq!(
        lock.try_lock(Mode::Permits(3), &f()).unwrap_err(),
        Refused::Mismatch(Kind::Counted(2))
    );
    assert_eq!(
        lock.try_lock(Mode::Exclusive, &f()).unwrap_err(),
        Refused::Mismatch(Kind::Counted(2))
    );
    assert_eq!(
        lock.try_lock(Mode::Shared, &f()).unwrap_err(),
        Refused::Mismatch(Kind::Counted(2))
    );
    lock.unlock(&a);
    lock.unlock(&b);
    // Empty again: the kind is forgotten.
    let x = lock.try_lock(Mode::Exclusive, &f()).unwrap();
    assert_eq!(
        lock.try_lock(Mode::Permits(2), &f()).unwrap_err(),
        Refused::Mismatch(Kind::ReadWrite)
    );
    let mut fut = Box::pin(lock.lock_async(Mode::Permits(2), f()));
    let (_, w) = counting();
    assert_eq!(
        poll_once(&mut fut, &w),
        Some(Err(Refused::Mismatch(Kind::ReadWrite)))
    );
    lock.unlock(&x);
}

#[test]
fn a_blocking_wait_times_out_and_leaves_the_queue() {
    let lock = RawLock::new();
    let x = lock.try_lock(Mode::Exclusive, &f()).unwrap();
    let t = Instant::now();
    let r = lock.lock_blocking(
        Mode::Shared,
        &f(),
        Some(Instant::now() + std::time::Duration::from_millis(30)),
        None,
    );
    assert_eq!(r.unwrap_err(), Refused::Held);
    assert!(t.elapsed() >= std::time::Duration::from_millis(25));
    assert_eq!(lock.waiters(), 0);
    lock.unlock(&x);
    assert!(!lock.is_locked());
}

impl PartialEq for Grant {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

use std::time::Instant;

#[test]
fn a_scoped_grant_reads_no_clock_and_its_first_reader_dates_it() {
    let lock = RawLock::new();
    for mode in [Mode::Exclusive, Mode::Shared, Mode::Permits(2)] {
        let g = lock.try_lock(mode, &f()).unwrap();
        assert_eq!(g.since, 0, "{mode}: a scoped grant reads no clock");
        let first = lock.records();
        assert_eq!(first.len(), 1);
        assert!(
            first[0].observed(),
            "{mode}: dated by its reader, and marked so"
        );
        assert_ne!(first[0].since, 0);
        // The stamp landed: later readers (and the hold itself) see the same time.
        assert_eq!(lock.records()[0].since, first[0].since);
        assert_eq!(lock.since_of(g.id), Some(first[0].since));
        lock.unlock(&g);
    }
    let hand = Facts { key: 7, ..f() };
    let g = lock.try_lock(Mode::Exclusive, &hand).unwrap();
    assert_ne!(g.since, 0, "a hand-taken grant reads the clock");
    let r = lock.records();
    assert_eq!(r[0].since, g.since);
    assert!(
        !r[0].observed(),
        "an exact grant time is not marked as a stamp"
    );
    lock.unlock(&g);
}

#[test]
fn an_undated_holder_is_said_to_hold_for_at_least() {
    let lock = RawLock::new();
    let g = lock.try_lock(Mode::Exclusive, &f()).unwrap();
    let h = crate::report::holder_record(lock.holder()).unwrap();
    assert!(h.since_observed);
    assert!(h.to_string().contains(", for at least "), "{h}");
    lock.unlock(&g);
    let g = lock
        .try_lock(Mode::Exclusive, &Facts { key: 7, ..f() })
        .unwrap();
    let h = crate::report::holder_record(lock.holder()).unwrap();
    assert!(!h.since_observed);
    let said = h.to_string();
    assert!(
        said.contains(", for ") && !said.contains("at least"),
        "{said}"
    );
    lock.unlock(&g);
}

#[test]
fn a_waiter_dates_the_hold_it_queues_behind() {
    let lock = RawLock::new();
    let g = lock.try_lock(Mode::Exclusive, &f()).unwrap();
    assert!(
        !lock.held_by(&crate::owner::Me::sync(), true),
        "not this chain"
    );
    assert_eq!(
        lock.holders.stored_since(g.id),
        Some(0),
        "who-holds checks leave it"
    );
    let (_c, w) = counting();
    let mut fut = Box::pin(lock.lock_async(Mode::Exclusive, f()));
    assert!(poll_once(&mut fut, &w).is_none(), "queued");
    let since = lock.holders.stored_since(g.id).expect("a slot grant");
    assert_ne!(since, 0, "the waiter dated the hold when it queued");
    assert_eq!(since & holders::OBSERVED, holders::OBSERVED);
    lock.unlock(&g);
    let got = poll_once(&mut fut, &w).expect("handed over").unwrap();
    lock.unlock(&got);
}
