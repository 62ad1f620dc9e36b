//! The verbs with a request's opt-ins around them: `readers_first` (a shared request
//! joins current shared holders ahead of queued exclusive ones) and `reentrant` (the chain
//! that holds the lock may take it again, see `reentry`). The by-name verbs, [`Lock`] and
//! the attribute all take locks through here; without opt-ins this is the plain pipeline.
//!
//! [`Lock`]: crate::Lock

use std::time::Duration;

use crate::local;
use crate::mode::Mode;
use crate::owner::{Facts, Me};
use crate::place::Place;
use crate::registry::EntryRef;
use crate::site::Site;
use crate::{LockError, LockGuard};

/// A request's opt-ins.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OptIn {
    /// `reentrant`: the holding chain may take the lock again.
    pub(crate) reentrant: bool,
    /// `readers_first`: a shared request joins shared holders ahead of queued ones.
    pub(crate) readers_first: bool,
}

impl OptIn {
    fn any(self) -> bool {
        self.reentrant || self.readers_first
    }
}

/// Waits for the lock (async). `Some(0)` tries once.
pub(crate) async fn acquire(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    timeout: Option<Duration>,
    site: Site,
    hand: bool,
    opt: OptIn,
) -> Result<LockGuard, LockError> {
    if !opt.any() {
        return plain_acquire(entry, place, mode, timeout, site, hand).await;
    }
    let me = local::me_async().await;
    let facts = Facts::asynchronous(&me, if hand { me.key } else { 0 }, site);
    if let Some(g) = join_first(&entry, place, mode, &facts, &me, opt)? {
        return Ok(g);
    }
    let again = entry.clone();
    match plain_acquire(entry, place, mode, timeout, site, hand).await {
        Err(e) if opt.reentrant => crate::reentry::reenter(e, again, mode, &facts),
        r => r,
    }
}

async fn plain_acquire(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    timeout: Option<Duration>,
    site: Site,
    hand: bool,
) -> Result<LockGuard, LockError> {
    match place {
        Place::Local => local::lock(entry, mode, timeout, site, hand).await,
        place => crate::file_step::lock_entry(entry, place, mode, timeout, site, hand).await,
    }
}

/// Takes the lock if it can be had right now.
pub(crate) fn try_acquire(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    facts: Facts,
    me: Me,
    opt: OptIn,
) -> Result<LockGuard, LockError> {
    if let Some(g) = join_first(&entry, place, mode, &facts, &me, opt)? {
        return Ok(g);
    }
    let again = opt.reentrant.then(|| entry.clone());
    let r = match place {
        Place::Local => local::try_lock(entry, mode, facts, me),
        place => crate::file_step::try_lock_entry(entry, place, mode, facts, me),
    };
    match (r, again) {
        (Err(e), Some(entry)) => crate::reentry::reenter(e, entry, mode, &facts),
        (r, _) => r,
    }
}

/// Blocks the calling thread until the lock is had, or `timeout` passes.
pub(crate) fn blocking_acquire(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    timeout: Option<Duration>,
    facts: Facts,
    me: Me,
    opt: OptIn,
) -> Result<LockGuard, LockError> {
    if let Some(g) = join_first(&entry, place, mode, &facts, &me, opt)? {
        return Ok(g);
    }
    let again = opt.reentrant.then(|| entry.clone());
    let r = match place {
        Place::Local => local::blocking_lock(entry, mode, timeout, facts, me),
        place => crate::file_step::blocking_lock_entry(entry, place, mode, timeout, facts, me),
    };
    match (r, again) {
        (Err(e), Some(entry)) => crate::reentry::reenter(e, entry, mode, &facts),
        (r, _) => r,
    }
}

/// `readers_first`: a shared request joins current shared holders at once, whoever
/// queues; `None` when there are none to join (the usual, fair way then decides).
fn join_first(
    entry: &EntryRef,
    place: Place<'_>,
    mode: Mode,
    facts: &Facts,
    me: &Me,
    opt: OptIn,
) -> Result<Option<LockGuard>, LockError> {
    if !opt.readers_first || mode != Mode::Shared || !entry.raw.has_sharers() {
        return Ok(None);
    }
    match place {
        Place::Local => local::join_shared(entry, facts, me, opt.reentrant),
        place => crate::file_step::join_shared(entry, place, facts, me, opt.reentrant),
    }
}
