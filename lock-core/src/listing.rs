//! [`holders`]: what this process holds right now.

use std::time::Duration;

use crate::mode::Mode;
use crate::{registry, Holder};

/// One hold of a lock in this process, as [`holders`] lists it.
///
/// A shared or counted lock with several holders is listed once per holder.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldLock {
    /// The lock's name.
    pub name: String,
    /// The mode it is held in.
    pub mode: Mode,
    /// How long this holder has held it (coarse: a few ms of resolution). For holds taken
    /// by a `#[locked]` scope, since the hold was first seen: at least this long (see
    /// [`Holder::since_observed`](crate::Holder::since_observed)).
    pub held_for: Duration,
    /// Who holds it: the task or thread, and where it was taken.
    pub holder: Holder,
    /// How many hold the lock right now (1 for an exclusive lock).
    pub holders: usize,
    /// How many call chains of this process wait for it.
    pub waiters: usize,
}

/// What this process holds right now: one [`HeldLock`] per hold, longest-held first.
///
/// Holders of in-process locks, of the in-process part of file locks and of leases are
/// all listed (a file or lease hold also holds the in-process lock of its name).
/// Building the list briefly locks each part of the registry; it is meant for
/// diagnostics, not for hot paths.
///
/// ```
/// let g = lock_core::try_acquire("doc-holders").unwrap();
/// let held = lock_core::holders();
/// let mine = held.iter().find(|h| h.name == "doc-holders").unwrap();
/// assert_eq!(mine.mode, lock_core::Mode::Exclusive);
/// assert_eq!(mine.holder.pid, Some(std::process::id()));
/// drop(g);
/// assert!(lock_core::holders().iter().all(|h| h.name != "doc-holders"));
/// ```
pub fn holders() -> Vec<HeldLock> {
    let mut out = Vec::new();
    registry::for_each_in_use(|entry| {
        let Some((_, mode, count)) = entry.raw.shape() else {
            return;
        };
        let records = entry.raw.records();
        if records.is_empty() {
            return;
        }
        let waiters = entry.raw.waiters();
        for rec in records {
            let Some(holder) = crate::report::holder_record(Some(rec)) else {
                continue;
            };
            out.push(HeldLock {
                name: entry.name().to_owned(),
                mode,
                held_for: crate::clock::since(rec.since),
                holder,
                holders: count,
                waiters,
            });
        }
    });
    out.sort_by(|a, b| {
        b.held_for
            .cmp(&a.held_for)
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}
