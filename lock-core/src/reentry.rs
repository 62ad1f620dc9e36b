//! Opt-in re-entry (`reentrant`, `Lock::reentrant`): the call chain that holds a lock may
//! take it again instead of hearing `Busy { reentrant: true }`.
//!
//! * **Exclusive** (also a shared request of the chain that holds it exclusively): the
//!   new guard is *nested* in the chain's hold — it holds nothing of its own, and is
//!   counted in the entry ([`Entry::nested`](crate::registry::Entry)). The lock is given
//!   back when the outer hold and every nested one have gone, in whatever order: an outer
//!   guard dropped while nested ones live *hands over* its release (and its file part) to
//!   the last of them, so the lock is never free while a guard of it lives.
//! * **Shared** on a shared hold of the chain: a new shared grant that joins at once,
//!   even ahead of queued exclusive requests (waiting behind them would deadlock).
//! * Not re-entrant: upgrading a shared hold to an exclusive one (two chains doing that
//!   deadlock), counted locks (a second permit may not be free; sharing one would let
//!   more than `N` bodies run), another name that reaches the same lock file, and leases
//!   (the store's lease is one grant per request): those stay `Busy`, with a reason.
//!
//! Costs nothing unless used: every release loads the nested count once.

use std::sync::atomic::Ordering;

use crate::mode::Mode;
use crate::owner::Facts;
use crate::registry::EntryRef;
use crate::{LockError, LockGuard};

/// A request with `reentrant` that was refused as re-entry (`e`): the guard nested in (or
/// joined to) the chain's own hold, or the refusal, with a reason where re-entry is not
/// possible.
pub(crate) fn reenter(
    e: LockError,
    entry: EntryRef,
    mode: Mode,
    facts: &Facts,
) -> Result<LockGuard, LockError> {
    let LockError::Busy {
        name,
        holder,
        reentrant: true,
        reason: None,
    } = e
    else {
        return Err(e);
    };
    if let Some(outer) = entry.raw.exclusive_grant() {
        if !matches!(mode, Mode::Permits(_)) {
            entry.nested.fetch_add(1, Ordering::AcqRel);
            // The outer hold may have gone between the look and the count: then the
            // nested hold would hold nothing. Look again now that it is counted.
            if entry.raw.is_live(outer.id) {
                return Ok(LockGuard::nested(entry, outer));
            }
            drop(LockGuard::nested(entry.clone(), outer));
        }
    } else if mode == Mode::Shared {
        if let Some(grant) = entry.raw.try_join_shared(facts) {
            return Ok(LockGuard::with_facts(entry, grant, facts));
        }
    }
    let why = match mode {
        Mode::Permits(_) => "counted locks are not re-entrant (a second permit may not be free)",
        Mode::Exclusive => {
            "the call chain holds it shared: a re-entrant request cannot upgrade a shared \
             hold to an exclusive one"
        }
        Mode::Shared => "the call chain's hold of it is not one a shared request can join",
    };
    Err(LockError::Busy {
        name,
        holder,
        reentrant: true,
        reason: Some(why.to_owned()),
    })
}
