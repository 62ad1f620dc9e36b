//! One in-process hold of a name ([`Held`]), given back when dropped, and the count of
//! re-entrant holds nested in it (`reentrant`, see `reentry`): the lock goes when the
//! outer hold and every nested one have gone, in whatever order.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use crate::clock;
use crate::raw::Grant;
use crate::registry::{Entry, EntryRef};

/// One in-process hold: given back when dropped.
pub(crate) struct Held {
    pub(crate) entry: EntryRef,
    pub(crate) grant: Grant,
    /// Taken by hand (counts for its chain), as opposed to inside a scope.
    pub(crate) hand: bool,
    /// What the `released` event reports; `None`: no event (a file's own in-process lock,
    /// which is part of a hold of the name).
    pub(crate) backend: Option<crate::trace::Backend>,
    /// What dropping it does (see `reentry`).
    pub(crate) role: Role,
}

/// A hold's part in re-entrant nesting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A hold of its own: released when dropped.
    Own,
    /// Nested in the chain's exclusive hold (`reentrant`): holds nothing of its own.
    Nested,
    /// An own hold whose release was handed to the holds nested in it, which outlived it.
    HandedOver,
}

impl Held {
    /// See [`LockGuard::disown`].
    pub(crate) fn disown(&self) {
        self.entry.raw.disown(self.grant.id);
    }

    /// How long it has been held: exactly (to a clock tick) for hand-taken grants, else
    /// since it was first seen (see `raw::holders`).
    pub(crate) fn held_for(&self) -> std::time::Duration {
        let since = match self.grant.since {
            0 => self.entry.raw.since_of(self.grant.id).unwrap_or(0),
            t => t,
        };
        if since == 0 {
            return std::time::Duration::ZERO;
        }
        clock::since_precise(since)
    }

    /// Gives the lock back (what dropping an own hold does).
    #[inline]
    fn give_back(&self) {
        if let Some(backend) = self.backend {
            crate::trace::released(self.entry.name(), self.grant.mode, backend, || {
                self.held_for()
            });
        }
        self.entry.raw.unlock(&self.grant);
        if crate::lockdep::on() {
            crate::lockdep::released(self.grant.id);
        }
    }
}

impl Drop for Held {
    #[inline]
    fn drop(&mut self) {
        match self.role {
            Role::Own => self.give_back(),
            Role::Nested => {
                if leave(&self.entry) {
                    self.give_back();
                }
            }
            Role::HandedOver => {}
        }
        if self.hand {
            crate::deadlock::hand_dropped();
        }
    }
}

/// In [`Entry::nested`]: the outer hold is gone; the last nested hold releases.
const GONE: u64 = 1 << 63;

/// The backend parts (file holds) of outer holds that went before their nested holds, by
/// entry. Kept as `Any`: they belong to a layer above this one; dropping one gives its
/// lock back. Boxed only on this rare path (an outer re-entrant guard with a file part
/// dropped while nested guards live).
static HANDED_OVER: Mutex<Vec<(usize, Part)>> = Mutex::new(Vec::new());

/// A backend part of a hold, handed over.
pub(crate) type Part = Box<dyn Any + Send>;

fn key(entry: &Entry) -> usize {
    entry as *const Entry as usize
}

fn take(entry: &Entry) -> Option<Part> {
    let mut v = crate::sync::lock_std(&HANDED_OVER);
    let i = v.iter().position(|(k, _)| *k == key(entry))?;
    Some(v.swap_remove(i).1)
}

/// A nested hold leaves. True if it must give the lock back: it was the last one and
/// the outer hold is gone (whose file part it releases first, here).
fn leave(entry: &Entry) -> bool {
    let prev = entry.nested.fetch_sub(1, Ordering::AcqRel);
    if prev != GONE | 1 {
        return false;
    }
    entry.nested.store(0, Ordering::Release);
    drop(take(entry));
    true
}

/// The outer hold goes while nested holds may live. True if they do: they now own the
/// release (and `file`). False if none is left: the caller releases as usual, after
/// [`take_back`] returns `file`.
pub(crate) fn hand_over(entry: &Entry, file: Option<Part>) -> bool {
    // The file part must be there before a nested hold can see `GONE`.
    if let Some(f) = file {
        crate::sync::lock_std(&HANDED_OVER).push((key(entry), f));
    }
    let prev = entry.nested.fetch_or(GONE, Ordering::AcqRel);
    if prev & !GONE != 0 {
        return true;
    }
    entry.nested.fetch_and(!GONE, Ordering::AcqRel);
    false
}

/// After [`hand_over`] returned false: the file part back.
pub(crate) fn take_back(entry: &Entry) -> Option<Part> {
    take(entry)
}
