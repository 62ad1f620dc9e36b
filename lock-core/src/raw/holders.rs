//! One record per grant: who holds the lock, since when, and taken where.
//!
//! The records are not part of the exclusion protocol (that is the state word alone);
//! they serve diagnostics, re-entry checks of hand-taken guards, scope-frame liveness and
//! the deadlock check. So they must be cheap to write on the uncontended path:
//!
//! * a lock keeps [`SLOTS`] records inline. The holder whose grant found the lock empty
//!   (every exclusive holder, and the first of a group of shared or counted ones) uses
//!   slot 0, written with plain stores: nobody else can be writing it. Shared and counted
//!   holders that join others claim any other free slot with one compare-and-swap;
//! * further concurrent holders go to an overflow list under the lock's queue mutex
//!   (their grant id carries [`OVERFLOW`] instead of a slot index).
//!
//! A slot is published like a seqlock: its word holds the grant id with a [`WRITING`] bit
//! while the facts are written, and without it after. A reader takes the word, the facts,
//! and the word again, and keeps the facts only if the word is the same published value
//! both times. Ids are unique for the life of the process, so a slot re-used by a later
//! grant can never pass for the earlier one; a record rewritten in place (disowned) ends
//! with another value of the word ([`DISOWNED`]), so a reader that overlapped the
//! rewrite sees the change instead of half the record.
//!
//! The grant time is description, not identity: a scoped grant (the attribute's) writes 0
//! and reads no clock; the first waiter that queues behind it, or the first reader of
//! the record (a listing, an error), stamps the time it saw the hold, with the low bit
//! set ([`OBSERVED`]), so the hold is known to be at least that old. Hand-taken grants,
//! whose guards say how long they have been held, read the clock at the grant (low bit
//! clear). The stamp is one
//! compare-and-swap from 0, outside the seqlock: a reader sees 0 or the stamp, never a
//! torn value, and a delayed stamp that lands on a later scoped grant of the same slot
//! dates it at most that delay early.
//!
//! Order rules that keep slot writes apart without a lock: a shared holder takes its
//! share of the state *before* claiming a slot and clears its slot *before* giving the
//! share back; slot 0 is written only by the holder whose grant took the state from
//! empty, and cleared before that holder's share goes back, so two such holders never
//! overlap (joiners never claim slot 0, even while it is free).

use crate::sync::{fence, AtomicU64, AtomicUsize, Ordering};

use crate::owner::Facts;
use crate::site::Site;

/// Records kept inline per lock.
pub(crate) const SLOTS: usize = 4;
/// Slot index (in a grant id) of a record kept in the overflow list.
pub(crate) const OVERFLOW: u64 = 7;
const SLOT_BITS: u32 = 3;
/// In a slot's word: the facts are being written.
const WRITING: u64 = 1;
/// In a slot's word: the record was disowned (rewritten once, in place).
const DISOWNED: u64 = 2;
/// In a grant time: stamped by the first reader, not at the grant (see the module docs).
pub(crate) const OBSERVED: u64 = 1;
/// Where the grant id starts in a slot's word.
const SHIFT: u32 = 2;

/// A grant id: the grant's unique token and where its record is.
#[inline]
pub(crate) fn grant_id(token: u64, slot: u64) -> u64 {
    (token << SLOT_BITS) | slot
}

#[inline]
pub(crate) fn slot_of(id: u64) -> u64 {
    id & ((1 << SLOT_BITS) - 1)
}

#[derive(Default)]
struct Slot {
    /// 0 when free, else `id << SHIFT`, with [`WRITING`] while the facts are being
    /// written and [`DISOWNED`] once they were rewritten by [`Holders::disown`].
    word: AtomicU64,
    key: AtomicU64,
    task: AtomicU64,
    thread: AtomicU64,
    since: AtomicU64,
    site: AtomicUsize,
}

/// A hold as read back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    /// The grant id.
    pub(crate) id: u64,
    pub(crate) facts: Facts,
    /// When it was granted (coarse clock), or first seen if [`observed`](Self::observed).
    pub(crate) since: u64,
}

impl Record {
    /// The grant time is when the hold was first seen: it is at least that old.
    pub(crate) fn observed(&self) -> bool {
        self.since & OBSERVED != 0
    }
}

/// The grant time to record: the coarse clock for grants whose guards report it (`eager`),
/// else 0, stamped later by the first reader.
#[inline]
pub(crate) fn grant_time(eager: bool) -> u64 {
    if eager {
        crate::clock::coarse_nanos() & !OBSERVED
    } else {
        0
    }
}

#[derive(Default)]
pub(crate) struct Holders {
    slots: [Slot; SLOTS],
}

impl Slot {
    #[inline]
    fn write(&self, id: u64, f: &Facts, since: u64) {
        self.key.store(f.key, Ordering::Relaxed);
        self.task.store(f.task, Ordering::Relaxed);
        self.thread.store(f.thread, Ordering::Relaxed);
        self.since.store(since, Ordering::Relaxed);
        self.site.store(f.site.to_bits(), Ordering::Relaxed);
        self.word.store(id << SHIFT, Ordering::Release);
    }

    /// The record, if one is published; `dated`: an undated one is stamped now (readers
    /// that only look at who holds it leave the time alone).
    fn read(&self, dated: bool) -> Option<Record> {
        let w = self.word.load(Ordering::Acquire);
        if w == 0 || w & WRITING != 0 {
            return None;
        }
        let facts = Facts {
            key: self.key.load(Ordering::Relaxed),
            task: self.task.load(Ordering::Relaxed),
            thread: self.thread.load(Ordering::Relaxed),
            site: Site::from_bits(self.site.load(Ordering::Relaxed)),
        };
        let since = self.since.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if self.word.load(Ordering::Relaxed) != w {
            return None;
        }
        let since = if since == 0 && dated {
            self.stamp()
        } else {
            since
        };
        Some(Record {
            id: w >> SHIFT,
            facts,
            since,
        })
    }
}

impl Slot {
    /// Dates an undated record now (see the module docs). If the stamp does not land,
    /// another reader was first (its earlier stamp is the tighter bound) or the slot has
    /// moved on to a later grant (whose time is later than this record's): either way
    /// the earlier of the two is a time the record was already held at, and it stays
    /// marked as a stamp.
    #[cold]
    fn stamp(&self) -> u64 {
        let now = crate::clock::coarse_nanos() | OBSERVED;
        match self
            .since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => now,
            Err(v) => (v | OBSERVED).min(now),
        }
    }
}

impl Holders {
    /// Records the holder whose grant found the lock empty, in slot 0 (see the module
    /// docs: nobody else writes slot 0 until that holder has cleared it).
    #[inline]
    pub(crate) fn publish_first(&self, token: u64, f: &Facts, since: u64) -> u64 {
        let id = grant_id(token, 0);
        let s = &self.slots[0];
        s.word.store((id << SHIFT) | WRITING, Ordering::Relaxed);
        // The facts must not become visible before the WRITING mark.
        fence(Ordering::Release);
        s.write(id, f, since);
        id
    }

    /// Records a shared or counted holder that joined others in a free slot other than
    /// slot 0; `None` if all are taken (the caller then uses the overflow list).
    #[inline]
    pub(crate) fn claim(&self, token: u64, f: &Facts, since: u64) -> Option<u64> {
        for (i, s) in self.slots.iter().enumerate().skip(1) {
            let id = grant_id(token, i as u64);
            if s.word
                .compare_exchange(
                    0,
                    (id << SHIFT) | WRITING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                fence(Ordering::Release);
                s.write(id, f, since);
                return Some(id);
            }
        }
        None
    }

    /// Forgets the record of grant `id`, which the caller still holds (its share is
    /// still counted in the state): a live grant's slot word is its own — nobody else
    /// claims a slot that is not free, and slot 0 is written only by the holder that found
    /// the lock empty — so a plain store clears it, one atomic read-modify-write fewer
    /// on every release than [`clear`](Self::clear).
    #[inline]
    pub(crate) fn clear_held(&self, id: u64) {
        if let Some(s) = self.slots.get(slot_of(id) as usize) {
            debug_assert_eq!(
                s.word.load(Ordering::Relaxed) >> SHIFT,
                id,
                "a live grant's slot"
            );
            s.word.store(0, Ordering::Release);
        }
    }

    /// Forgets the record of grant `id` if it is still there (a slot grant; overflow
    /// records live elsewhere). Idempotent: once cleared, the slot may already carry the
    /// record of a later grant, which must stay.
    #[inline]
    pub(crate) fn clear(&self, id: u64) {
        if let Some(s) = self.slots.get(slot_of(id) as usize) {
            let w = s.word.load(Ordering::Relaxed);
            if w >> SHIFT == id && w & WRITING == 0 {
                let _ = s
                    .word
                    .compare_exchange(w, 0, Ordering::Release, Ordering::Relaxed);
            }
        }
    }

    /// Makes the record of grant `id` count for no chain any more (its guard moved to
    /// code that is not the chain that took it). `false` for overflow grants.
    pub(crate) fn disown(&self, id: u64) -> bool {
        match self.slots.get(slot_of(id) as usize) {
            Some(s) => {
                // Only the grant's owner writes a live grant's slot; readers see the
                // rewrite as a change of the word (see the module docs).
                if s.word.load(Ordering::Acquire) >> SHIFT == id {
                    s.word.store((id << SHIFT) | WRITING, Ordering::Relaxed);
                    fence(Ordering::Release);
                    s.key.store(0, Ordering::Relaxed);
                    s.task.store(0, Ordering::Relaxed);
                    s.word.store((id << SHIFT) | DISOWNED, Ordering::Release);
                }
                true
            }
            None => false,
        }
    }

    /// The grant time of the live slot grant `id` (stamped now if it had none); `None`
    /// for overflow grants, or if the record cannot be read.
    pub(crate) fn since_of(&self, id: u64) -> Option<u64> {
        let r = self.slots.get(slot_of(id) as usize)?.read(true)?;
        (r.id == id).then_some(r.since)
    }

    /// Dates every undated record now (a waiter is about to queue: the holds it waits
    /// for are at least as old as its wait).
    pub(crate) fn date_all(&self) {
        for s in &self.slots {
            if s.word.load(Ordering::Relaxed) != 0 && s.since.load(Ordering::Relaxed) == 0 {
                s.stamp();
            }
        }
    }

    /// The grant time of slot grant `id` as stored, without dating it.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn stored_since(&self, id: u64) -> Option<u64> {
        let s = self.slots.get(slot_of(id) as usize)?;
        Some(s.since.load(Ordering::Relaxed))
    }

    /// Whether the slot grant `id` is still held (`None` for overflow grants).
    #[inline]
    pub(crate) fn is_live(&self, id: u64) -> Option<bool> {
        let s = self.slots.get(slot_of(id) as usize)?;
        Some(s.word.load(Ordering::Acquire) >> SHIFT == id)
    }

    /// The published records, oldest first.
    pub(crate) fn records(&self, out: &mut Vec<Record>) {
        out.extend(self.slots.iter().filter_map(|s| s.read(true)));
    }

    /// The first published record that passes `pred`, dated.
    pub(crate) fn find(&self, pred: &mut impl FnMut(&Record) -> bool) -> Option<Record> {
        self.slots
            .iter()
            .filter_map(|s| s.read(true))
            .find(|r| pred(r))
    }

    /// True if some published record passes `pred`.
    pub(crate) fn any(&self, mut pred: impl FnMut(&Facts) -> bool) -> bool {
        self.slots
            .iter()
            .any(|s| s.read(false).is_some_and(|r| pred(&r.facts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(key: u64) -> Facts {
        Facts {
            key,
            task: 0,
            thread: 3,
            site: Site::Unknown,
        }
    }

    #[test]
    fn records_are_published_claimed_and_cleared() {
        let h = Holders::default();
        let a = h.claim(10, &facts(1), 100).unwrap();
        let b = h.claim(11, &facts(2), 200).unwrap();
        assert_ne!(slot_of(a), slot_of(b));
        assert_eq!(h.is_live(a), Some(true));
        let mut v = Vec::new();
        h.records(&mut v);
        assert_eq!(v.len(), 2);
        assert!(h.any(|f| f.key == 2) && !h.any(|f| f.key == 5));
        h.clear(a);
        assert_eq!(h.is_live(a), Some(false));
        // A later grant in the same slot is not the earlier one.
        let c = h.claim(12, &facts(3), 300).unwrap();
        assert_eq!(slot_of(c), slot_of(a));
        assert_eq!(h.is_live(a), Some(false));
        assert_eq!(h.is_live(c), Some(true));
        for t in 13..13 + SLOTS as u64 - 1 {
            let _ = h.claim(t, &facts(4), 0);
        }
        assert!(h.claim(99, &facts(4), 0).is_none(), "all slots taken");
        // Joiners never take slot 0: it is the first holder's.
        assert!(v.iter().all(|r| slot_of(r.id) != 0));
        assert_eq!(h.is_live(grant_id(99, OVERFLOW)), None);
    }

    #[test]
    fn the_first_holders_record_is_slot_zero() {
        let h = Holders::default();
        let id = h.publish_first(42, &facts(7), 5);
        assert_eq!(slot_of(id), 0);
        let mut v = Vec::new();
        h.records(&mut v);
        assert_eq!((v[0].id, v[0].facts.key, v[0].since), (id, 7, 5));
        h.clear(id);
        v.clear();
        h.records(&mut v);
        assert!(v.is_empty());
    }

    /// A reader never sees half of a disowned record: key and task are both the
    /// original chain's, or both cleared.
    #[test]
    fn a_reader_never_sees_half_a_disowned_record() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        const KEY: u64 = 0x1234;
        const TASK: u64 = 0x5678;
        let h = Arc::new(Holders::default());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (h, stop) = (h.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut halves = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    h.any(|f| {
                        if (f.key == KEY) != (f.task == TASK) {
                            halves += 1;
                        }
                        false
                    });
                }
                halves
            })
        };
        let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
        let mut token = 1;
        while std::time::Instant::now() < until {
            for _ in 0..1000 {
                let f = Facts {
                    key: KEY,
                    task: TASK,
                    thread: 3,
                    site: Site::Unknown,
                };
                let id = h.publish_first(token, &f, 0);
                h.disown(id);
                h.clear(id);
                token += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(reader.join().unwrap(), 0, "half-disowned records were read");
    }
}
