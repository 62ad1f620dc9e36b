//! Reading a lock for diagnostics and checks: its holders' records, the current
//! holder, whether a chain holds it, how many wait. None of this is part of the
//! exclusion protocol (see `holders`).

use super::state::EXCLUSIVE;
use super::{Grant, RawLock, Record};
use crate::mode::Mode;
use crate::sync::{lock, Ordering};

impl RawLock {
    /// Makes grant `id` count for no call chain (see [`Holders::disown`]).
    pub(crate) fn disown(&self, id: u64) {
        if !self.holders.disown(id) {
            if let Some(r) = lock(&self.queue).overflow.iter_mut().find(|r| r.id == id) {
                r.facts.key = 0;
                r.facts.task = 0;
            }
        }
    }

    /// When the live grant `id` was made (coarse clock), for grants that did not read the
    /// clock: the first reader's stamp (see `holders`).
    pub(crate) fn since_of(&self, id: u64) -> Option<u64> {
        match self.holders.since_of(id) {
            Some(t) => Some(t),
            None => lock(&self.queue)
                .overflow
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.since),
        }
    }

    /// Whether grant `id` of this lock is still held.
    pub(crate) fn is_live(&self, id: u64) -> bool {
        match self.holders.is_live(id) {
            Some(live) => live,
            None => lock(&self.queue).overflow.iter().any(|r| r.id == id),
        }
    }

    /// The records of everyone holding the lock now.
    pub(crate) fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        self.holders.records(&mut out);
        if self.has_sharers() {
            out.extend(lock(&self.queue).overflow.iter().copied());
        }
        out.sort_by_key(|r| r.since);
        out
    }

    /// The first published record that passes `pred` (dated; no list is built).
    pub(crate) fn find_record(&self, mut pred: impl FnMut(&Record) -> bool) -> Option<Record> {
        if let Some(r) = self.holders.find(&mut pred) {
            return Some(r);
        }
        if !self.has_sharers() {
            return None;
        }
        lock(&self.queue).overflow.iter().copied().find(|r| pred(r))
    }

    /// The longest-standing holder's record, if any is published.
    pub(crate) fn holder(&self) -> Option<Record> {
        self.records().into_iter().next()
    }

    /// The grant of the exclusive holder, if the lock is held exclusively (and its
    /// record can be read).
    pub(crate) fn exclusive_grant(&self) -> Option<Grant> {
        if self.state.load(Ordering::Acquire) & EXCLUSIVE == 0 {
            return None;
        }
        let rec = self.records().into_iter().next()?;
        (self.state.load(Ordering::Acquire) & EXCLUSIVE != 0 && self.is_live(rec.id)).then_some(
            Grant {
                id: rec.id,
                since: rec.since,
                mode: Mode::Exclusive,
            },
        )
    }

    /// True if a holder belongs to the caller's chain (see [`Me::owns`]).
    ///
    /// [`Me::owns`]: crate::owner::Me::owns
    pub(crate) fn held_by(&self, me: &crate::owner::Me, blocking: bool) -> bool {
        if self.holders.any(|f| me.owns(f, blocking)) {
            return true;
        }
        self.has_sharers()
            && lock(&self.queue)
                .overflow
                .iter()
                .any(|r| me.owns(&r.facts, blocking))
    }

    /// Number of queued waiters.
    pub(crate) fn waiters(&self) -> usize {
        lock(&self.queue).waiters.len()
    }
}
