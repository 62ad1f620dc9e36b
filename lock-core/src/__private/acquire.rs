//! Taking a call's in-process and file locks: a synchronous first attempt, then the
//! wait, for async calls; the blocking twin for sync ones.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::held::one_or_many;
use super::keys::entries;
use super::{FileMode, Held, Keys, Options};
use crate::local::{self, Fast};
use crate::place::Place;
use crate::registry::{self, EntryRef};
use crate::site::Site as HoldSite;
use crate::{LockError, LockGuard};

fn remaining(deadline: Option<Instant>, timeout: Option<Duration>) -> Option<Duration> {
    match (deadline, timeout) {
        (Some(d), _) => Some(d.saturating_duration_since(Instant::now())),
        (None, t) => t,
    }
}

async fn lock_one(
    entry: EntryRef,
    opts: &Options<'_>,
    timeout: Option<Duration>,
) -> Result<LockGuard, LockError> {
    let site = HoldSite::Fn(opts.site);
    let place = opts.file.place().unwrap_or(Place::Local);
    crate::optin::acquire(entry, place, opts.mode, timeout, site, false, opts.opt_in()).await
}

fn blocking_lock_one(
    entry: EntryRef,
    opts: &Options<'_>,
    timeout: Option<Duration>,
) -> Result<LockGuard, LockError> {
    let (me, facts) = local::sync_facts(HoldSite::Fn(opts.site), false);
    let place = opts.file.place().unwrap_or(Place::Local);
    crate::optin::blocking_acquire(entry, place, opts.mode, timeout, facts, me, opts.opt_in())
}

/// The first, synchronous step of an async call: the locks if they can be had right
/// now, else what is left to do ([`Slow::wait`]). Generated code awaits nothing on the
/// fast path, so the common uncontended call builds no nested future at all:
///
/// `match try_acquire(keys, opts) { Ok(h) => h, Err(slow) => match slow.wait().await { .. } }`
#[inline(always)]
pub fn try_acquire(keys: Keys, opts: Options<'_>) -> Result<Held, Slow<'_>> {
    let Keys::Site(site) = keys else {
        return Err(Slow(Pending::Many(keys, opts)));
    };
    let pinned = match site.pinned() {
        Ok(p) => p,
        Err(e) => return Err(Slow::failed(e)),
    };
    // With the lock-order checker on, the slow path learns who asks (the waker). A
    // shared or counted request that would join current holders must first check they
    // are not its own chain's, which also needs the waker: the fast attempt below never
    // joins (`try_alone`), so such requests go to the slow path too.
    // Opt-ins (`reentrant`, `readers_first`) are served by the slow path too.
    if !opts.mode.is_valid() || crate::lockdep::on() || opts.reentrant || opts.readers_first {
        return Err(Slow(Pending::One(pinned, opts, false)));
    }
    let facts = opts.facts_async();
    match opts.file {
        FileMode::Off => match local::try_alone(EntryRef::Pinned(pinned), opts.mode, &facts) {
            Fast::Got(g) => return Ok(Held::One(g)),
            Fast::Taken(_) => {}
            Fast::Failed(e) => return Err(Slow(Pending::Failed(e))),
        },
        file => {
            if let Some(place) = file.place() {
                match crate::file_step::try_now(EntryRef::Pinned(pinned), place, opts.mode, &facts)
                {
                    Ok(Some(g)) => return Ok(Held::One(g)),
                    Ok(None) => {}
                    Err(e) => return Err(Slow::failed(e)),
                }
            }
        }
    }
    Err(Slow(Pending::One(pinned, opts, true)))
}

/// What an async call still has to do after [`try_acquire`] could not finish it.
pub struct Slow<'a>(Pending<'a>);

enum Pending<'a> {
    /// Wait for one fixed name; `true` once tried here (re-entry checked, found taken).
    One(&'static registry::Entry, Options<'a>, bool),
    /// Several names, or computed ones.
    Many(Keys, Options<'a>),
    /// Failed already (re-entry, a bad name, an I/O error).
    Failed(Box<LockError>),
}

impl<'a> Slow<'a> {
    #[cold]
    fn failed(e: LockError) -> Slow<'a> {
        Slow(Pending::Failed(Box::new(e)))
    }

    /// Waits as the options say (or reports the failure).
    pub fn wait(self) -> SlowWait<'a> {
        SlowWait(match self.0 {
            // Refused by the fast attempt (re-entry, another kind of lock, a bad name):
            // reported as every refusal is.
            Pending::Failed(e) => Then::Failed(Some(e)),
            Pending::One(pinned, opts, tried) => {
                let entry = EntryRef::Pinned(pinned);
                let timeout = opts.timeout();
                if let (FileMode::Off, true, true, false) = (
                    opts.file,
                    opts.mode.is_valid(),
                    tried,
                    opts.reentrant || opts.readers_first,
                ) {
                    // Queue right here: `try_acquire` checked scope re-entry and tried
                    // once already, in this same poll.
                    Then::Queue(local::Wait::new(
                        entry,
                        opts.mode,
                        timeout,
                        opts.facts_async(),
                    ))
                } else {
                    // Waiting for a file lock, or with an opt-in, lives in its own heap
                    // frame so that the future of every annotated fn stays small.
                    Then::Boxed(Box::pin(async move {
                        lock_one(entry, &opts, timeout).await.map(Held::One)
                    }))
                }
            }
            Pending::Many(keys, opts) => Then::Boxed(Box::pin(acquire_many(keys, opts))),
        })
    }
}

/// The future of [`Slow::wait`]: the pipeline's wait itself for one in-process lock
/// (no nested future to move or poll through), else a boxed one.
pub struct SlowWait<'a>(Then<'a>);

enum Then<'a> {
    Failed(Option<Box<LockError>>),
    Queue(local::Wait),
    Boxed(Pin<Box<dyn Future<Output = Result<Held, LockError>> + Send + Sync + 'a>>),
}

impl Future for SlowWait<'_> {
    type Output = Result<Held, LockError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Then::Queue(w) => Pin::new(w).poll(cx).map(|r| r.map(Held::One)),
            Then::Boxed(f) => f.as_mut().poll(cx),
            Then::Failed(e) => match e.take() {
                Some(e) => Poll::Ready(Err(local::failed_with(*e))),
                None => panic!("lock-core: a wait was polled after it finished"),
            },
        }
    }
}

async fn acquire_many(keys: Keys, opts: Options<'_>) -> Result<Held, LockError> {
    let timeout = opts.timeout();
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut guards = Vec::new();
    for e in entries(keys)? {
        // On failure, guards taken so far drop here, in reverse order.
        guards.push(lock_one(e, &opts, remaining(deadline, timeout)).await?);
    }
    Ok(one_or_many(guards))
}

/// Blocking twin of [`try_acquire`] and [`Slow::wait`], for sync functions.
pub fn blocking_acquire(keys: Keys, opts: Options<'_>) -> Result<Held, LockError> {
    let timeout = opts.timeout();
    if let Keys::Site(site) = keys {
        let entry = EntryRef::Pinned(site.pinned()?);
        if let (FileMode::Off, true, false) = (
            opts.file,
            opts.mode.is_valid(),
            opts.reentrant || opts.readers_first,
        ) {
            // The pipeline's two steps (`local::blocking_lock` composes the same), with the
            // guard moved straight into `Held` on the fast path.
            let (me, facts) = local::sync_facts(HoldSite::Fn(opts.site), false);
            let entry = match local::try_fast(entry, opts.mode, &facts, || me) {
                Fast::Got(g) => return Ok(Held::One(g)),
                Fast::Taken(e) => e,
                Fast::Failed(e) => return Err(local::failed_with(*e)),
            };
            return local::blocking_slow(entry, opts.mode, timeout, facts, me).map(Held::One);
        }
        return blocking_lock_one(entry, &opts, timeout).map(Held::One);
    }
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut guards = Vec::new();
    for e in entries(keys)? {
        guards.push(blocking_lock_one(e, &opts, remaining(deadline, timeout))?);
    }
    Ok(one_or_many(guards))
}
