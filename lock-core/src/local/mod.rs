//! The in-process acquire pipeline, shared by the by-name verbs, [`crate::Lock`], the file
//! mode and the attribute: re-entry checks, the lock-free attempt, and the wait.
//!
//! Every request goes through the same steps:
//!
//! 1. **Re-entry through scopes**: a call chain whose scope frames hold the name is
//!    refused at once. Only a request that could get the lock while its chain holds it
//!    (one joining shared or counted holders) looks before the attempt; every other
//!    request looks once the lock refused it, so an uncontended call pays nothing.
//! 2. **The fast path**: one compare-and-swap in the lock. A shared or counted request
//!    that would *join* current holders first checks that none of them counts for the
//!    caller's own chain (a scope frame or a hand-taken guard): joining would make an
//!    upgrade deadlock possible and is refused as re-entry in every mode.
//! 3. **The slow path**, only when the lock is taken: a hand-taken guard of the caller's
//!    chain is re-entry; a blocking wait on the thread that runs an async holder (a
//!    current-thread runtime, a `block_on`) would stop that holder and is refused; then
//!    the deadlock check, and the FIFO wait with its timeout.

mod wait;

use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::chain;
use crate::mode::{Kind, Mode};
use crate::owner::{Facts, Me};
use crate::raw::Refused;
use crate::registry::EntryRef;
use crate::report;
use crate::site::Site;
use crate::stall;
use crate::trace;
use crate::{LockError, LockGuard};

pub(crate) use wait::Wait;

/// Busy because the caller's own chain holds the lock, naming the hold.
pub(crate) fn reentry(entry: &EntryRef) -> LockError {
    busy_as(entry, true)
}

/// Plainly busy (not re-entry), naming the current holder.
pub(crate) fn busy(entry: &EntryRef) -> LockError {
    busy_as(entry, false)
}

fn busy_as(entry: &EntryRef, reentrant: bool) -> LockError {
    LockError::Busy {
        name: entry.name().to_owned(),
        holder: report::holder_of(entry.raw.holder()),
        reentrant,
        reason: None,
    }
}

pub(crate) fn mismatch(entry: &EntryRef, kind: Kind, asked: Mode) -> LockError {
    LockError::Mismatch {
        name: entry.name().to_owned(),
        kind,
        asked,
        holder: report::holder_of(entry.raw.holder()),
    }
}

fn refused(entry: &EntryRef, r: Refused, mode: Mode) -> LockError {
    match r {
        Refused::Held => busy(entry),
        Refused::Mismatch(kind) => mismatch(entry, kind, mode),
    }
}

fn timed_out(entry: &EntryRef, waited: Duration) -> LockError {
    LockError::Timeout {
        name: entry.name().to_owned(),
        waited,
        holder: report::holder_of(entry.raw.holder()),
    }
}

/// A request that is wrong in itself (permits = 0, ...).
#[inline]
pub(crate) fn check_mode(name: &str, mode: Mode) -> Result<(), LockError> {
    if mode.is_valid() {
        return Ok(());
    }
    match mode.problem() {
        None => Ok(()),
        Some(reason) => Err(LockError::Invalid {
            name: name.to_owned(),
            reason,
        }),
    }
}

/// Runs a blocking wait. On a multi-thread Tokio worker it is announced with
/// `block_in_place` (feature `rt-multi-thread`, on by default), so the runtime moves its
/// other tasks away instead of stalling them.
pub(crate) fn block_here<R>(wait: impl FnOnce() -> R) -> R {
    #[cfg(feature = "rt-multi-thread")]
    if stall::in_multi_thread_task() {
        return tokio::task::block_in_place(wait);
    }
    wait()
}

/// The outcome of [`try_fast`]. Small on purpose (the error is boxed): it is moved
/// around by value on the hot path of every locked call.
pub(crate) enum Fast {
    /// The lock is ours.
    Got(LockGuard),
    /// Someone else holds it: the entry, to wait for it.
    Taken(EntryRef),
    /// Refused for good (re-entry, a mismatched kind).
    Failed(Box<LockError>),
}

#[cold]
#[inline(never)]
fn failed(e: LockError) -> Fast {
    Fast::Failed(Box::new(e))
}

/// Tells the lock-order checker about a lock just taken (when it runs).
#[inline(always)]
fn taken(guard: &LockGuard, facts: &Facts, me: impl FnOnce() -> Me) {
    // A lock file's own in-process lock always comes right after its name's: its order
    // is the name's.
    if crate::lockdep::on() && !crate::name::is_file_key(guard.name()) {
        taken_cold(guard, facts, &me());
    }
}

#[cold]
#[inline(never)]
fn taken_cold(guard: &LockGuard, facts: &Facts, me: &Me) {
    let entry: &crate::registry::Entry = guard.entry();
    crate::lockdep::acquired(
        guard.token(),
        entry as *const crate::registry::Entry as usize,
        guard.name(),
        facts,
        me,
    );
}

/// Steps 1 and 2. `me` says who asks, only when it is needed (a shared or counted
/// request that would join current holders, or the lock-order checker).
///
/// The call chain's own holds are looked for only where they could be missed: a request
/// that *gets* the lock cannot be re-entry unless it joined holders already there (a
/// shared or counted request), so an exclusive request checks its chain only once
/// refused, and the uncontended call pays nothing for it.
#[inline(always)]
pub(crate) fn try_fast(entry: EntryRef, mode: Mode, facts: &Facts, me: impl Fn() -> Me) -> Fast {
    if !mode.is_exclusive() && entry.raw.has_sharers() && joins_own_hold(&entry, &me()) {
        return failed(reentry(&entry));
    }
    match entry.raw.try_lock(mode, facts) {
        Ok(grant) => {
            let g = LockGuard::with_facts(entry, grant, facts);
            taken(&g, facts, me);
            Fast::Got(g)
        }
        Err(r) => refused_fast(entry, r, mode),
    }
}

/// Step 2 for a caller that cannot say who it is here (the attribute's async fast
/// path): takes the lock only if nobody holds it, so it never joins holders that could
/// be its own chain's; anything else goes to the slow path, which asks with the waker.
#[inline(always)]
pub(crate) fn try_alone(entry: EntryRef, mode: Mode, facts: &Facts) -> Fast {
    match entry.raw.try_lock_alone(mode, facts) {
        Ok(grant) => Fast::Got(LockGuard::with_facts(entry, grant, facts)),
        Err(r) => refused_fast(entry, r, mode),
    }
}

/// `readers_first`: joins the lock's current shared holders at once, even ahead of
/// queued requests; `None` if it has none. Joining a hold of the caller's own chain is
/// re-entry (allowed with `reentrant`: a shared hold may be joined by its own chain).
pub(crate) fn join_shared(
    entry: &EntryRef,
    facts: &Facts,
    me: &Me,
    reentrant: bool,
) -> Result<Option<LockGuard>, LockError> {
    if !reentrant && joins_own_hold(entry, me) {
        return Err(failed_with(reentry(entry)));
    }
    Ok(entry.raw.try_join_shared(facts).map(|grant| {
        let g = LockGuard::with_facts(entry.clone(), grant, facts);
        taken(&g, facts, || *me);
        g
    }))
}

/// Refused by the state: re-entry if the chain holds it (checked first, so a chain
/// asking for its own lock in another shape hears "re-entry", not "mismatch").
#[cold]
#[inline(never)]
fn refused_fast(entry: EntryRef, r: Refused, mode: Mode) -> Fast {
    if chain::held_by_chain::<crate::registry::Entry>(&entry) {
        return failed(reentry(&entry));
    }
    match r {
        Refused::Held => Fast::Taken(entry),
        Refused::Mismatch(kind) => failed(mismatch(&entry, kind, mode)),
    }
}

/// A shared or counted request that would join holders: is one of them its own chain
/// (through a scope frame, or a hand-taken guard)?
#[cold]
fn joins_own_hold(entry: &EntryRef, me: &Me) -> bool {
    chain::held_by_chain::<crate::registry::Entry>(entry) || entry.raw.held_by(me, false)
}

/// Step 3's checks for a request that found the lock taken. `hands`: whether any
/// hand-taken guard may exist ([`crate::deadlock::any_hand_guards`]); without one, an
/// async request's chain cannot hold the lock by hand (a blocking one may hold it
/// through its task's scoped holds).
fn check_contended(
    entry: &EntryRef,
    me: &Me,
    blocking: bool,
    hands: bool,
) -> Result<(), LockError> {
    if (blocking || hands) && entry.raw.held_by(me, blocking) {
        return Err(reentry(entry));
    }
    if blocking {
        if let Some(rec) = stall::stalled_by(entry) {
            return Err(LockError::Busy {
                name: entry.name().to_owned(),
                holder: report::holder_of(Some(rec)),
                reentrant: false,
                reason: Some(
                    "it is held by async code that runs on this very thread (a current-thread \
                     runtime or a `block_on`); blocking the thread would stop the holder, so \
                     the wait could never end — use the async verb, or `spawn_blocking`"
                        .to_owned(),
                ),
            });
        }
    }
    Ok(())
}

/// Who asks, and what its hold will record, for a sync caller. `hand`: a hand-taken
/// guard (counts for the caller's chain); else a scoped hold (found through frames).
#[inline]
pub(crate) fn sync_facts(site: Site, hand: bool) -> (Me, Facts) {
    let me = Me::sync();
    (me, Facts::sync(&me, if hand { me.key } else { 0 }, site))
}

/// Who asks, for an async caller (read off the polling task's waker).
pub(crate) async fn me_async() -> Me {
    poll_fn(|cx| Poll::Ready(Me::asynchronous(cx.waker()))).await
}

/// Takes the lock if it is free right now (`Busy` otherwise). Never waits.
pub(crate) fn try_lock(
    entry: EntryRef,
    mode: Mode,
    facts: Facts,
    me: Me,
) -> Result<LockGuard, LockError> {
    check_mode(entry.name(), mode)?;
    match try_fast(entry, mode, &facts, || me) {
        Fast::Got(g) => Ok(g),
        Fast::Failed(e) => Err(failed_with(*e)),
        Fast::Taken(entry) => {
            let hands = crate::deadlock::any_hand_guards();
            check_contended(&entry, &me, false, hands).map_err(failed_with)?;
            Err(failed_with(busy(&entry)))
        }
    }
}

/// Waits in FIFO order; `Some(0)` tries once, `None` waits for ever. `hand`: a
/// hand-taken guard, which counts for the caller's chain; else a scoped hold.
pub(crate) async fn lock(
    entry: EntryRef,
    mode: Mode,
    timeout: Option<Duration>,
    site: Site,
    hand: bool,
) -> Result<LockGuard, LockError> {
    check_mode(entry.name(), mode)?;
    let me = me_async().await;
    let facts = Facts::asynchronous(&me, if hand { me.key } else { 0 }, site);
    let entry = match try_fast(entry, mode, &facts, || me) {
        Fast::Got(g) => return Ok(g),
        Fast::Failed(e) => return Err(failed_with(*e)),
        Fast::Taken(entry) => entry,
    };
    Wait::new(entry, mode, timeout, facts).await
}

/// Reports a refusal (with the `tracing` feature) and returns it.
#[inline]
pub(crate) fn failed_with(e: LockError) -> LockError {
    trace::refused(&e, trace::Backend::Memory);
    e
}

/// Blocks the calling thread (see [`block_here`]).
pub(crate) fn blocking_lock(
    entry: EntryRef,
    mode: Mode,
    timeout: Option<Duration>,
    facts: Facts,
    me: Me,
) -> Result<LockGuard, LockError> {
    check_mode(entry.name(), mode)?;
    let entry = match try_fast(entry, mode, &facts, || me) {
        Fast::Got(g) => return Ok(g),
        Fast::Failed(e) => return Err(failed_with(*e)),
        Fast::Taken(entry) => entry,
    };
    blocking_slow(entry, mode, timeout, facts, me)
}

/// Step 3 for a blocking request whose fast attempt failed.
pub(crate) fn blocking_slow(
    entry: EntryRef,
    mode: Mode,
    timeout: Option<Duration>,
    facts: Facts,
    me: Me,
) -> Result<LockGuard, LockError> {
    let hands = crate::deadlock::any_hand_guards();
    check_contended(&entry, &me, true, hands).map_err(failed_with)?;
    if timeout == Some(Duration::ZERO) {
        return Err(failed_with(busy(&entry)));
    }
    let _registered = crate::deadlock::enter(&entry, &me, mode, true, hands, || me.describe())
        .map_err(failed_with)?;
    let start = Instant::now();
    let deadline = timeout.and_then(|t| start.checked_add(t));
    let name = entry.name();
    trace::wait_started(name, mode, trace::Backend::Memory, || {
        report::holder_of(entry.raw.holder())
    });
    let mut report = || {
        trace::slow_wait(
            name,
            mode,
            trace::Backend::Memory,
            start.elapsed(),
            report::holder_of(entry.raw.holder()).as_deref(),
        )
    };
    let slow = trace::slow_waits_wanted().then(|| {
        (
            start + trace::slow_wait_threshold(),
            &mut report as &mut dyn FnMut(),
        )
    });
    let got = block_here(|| entry.raw.lock_blocking(mode, &facts, deadline, slow));
    match got {
        Ok(grant) => {
            trace::acquired_after_wait(name, mode, trace::Backend::Memory, start.elapsed());
            let g = LockGuard::with_facts(entry, grant, &facts);
            taken(&g, &facts, || me);
            Ok(g)
        }
        Err(Refused::Held) => Err(failed_with(timed_out(&entry, start.elapsed()))),
        Err(r @ Refused::Mismatch(_)) => Err(failed_with(refused(&entry, r, mode))),
    }
}
