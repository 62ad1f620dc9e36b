//! Cycles of waits across processes, through file locks.
//!
//! The in-process check ([`crate::deadlock`]) sees one process. Under cargo-nextest every test is a
//! process of its own, and two tests that take `fixtures/db` and `fixtures/cache` in
//! opposite orders wait on each other through the files' OS locks, where no process sees
//! the whole cycle. This module finds such cycles by *edge chasing*:
//!
//! * **What a page already says.** A lock file's shared page lists its holders (one entry
//!   per process, with a grant generation that changes whenever the hold is given back
//!   and taken again) and its waiters (one entry per waiting call, with a ticket unique to
//!   that wait). Entries are added after the OS lock is taken and removed before it is
//!   given back; a waiter's entry is removed before its wait returns.
//! * **What a process publishes.** A process whose call chain has waited on a file's OS
//!   lock for [`THRESHOLD`] publishes *links* in the directory of each file it holds:
//!   "my hold of file F (grant g) can only be let go once my wait with ticket t on file G
//!   ends". A link holds when the chain that waits on G holds F itself, or when F's
//!   holders wait in-process (registered waits of the in-process check) for locks whose
//!   holders lead to that chain — so cycles that mix in-process and file waits are seen.
//!   Links live in `<dir>/.lock-core-waits-<pid>` (written whole and renamed into place),
//!   are recomputed whenever one of this process's in-process waits ends (before the
//!   chain that waited runs on), and are withdrawn when the wait ends.
//! * **The chase.** Every [`PERIOD`] a waiter past its threshold follows the edges: the
//!   file it waits on, that file's conflicting live holders, their links from that file
//!   to the files they wait on, those files' holders, and so on, until it reaches a file
//!   whose hold in its own process leads to its own wait (asked of the in-process check).
//! * **The stability proof.** A cycle found is read a second time: every waiter entry
//!   (pid, ticket), every holder entry (pid, grant generation) and every link (with the
//!   generation it got when it appeared) must be unchanged. Each of those facts stops
//!   being true, or changes its generation, before the process it describes can move on,
//!   so a cycle seen twice unchanged existed whole at one instant between the reads; in a
//!   real deadlock nobody on it can move, so the second read always confirms it, and a
//!   cycle that was only passing through (a half-updated page, a wait that just ended)
//!   never is.
//! * **One victim.** Of the waits on a confirmed cycle, the one that began last (by its
//!   start time, then pid, then ticket — facts every process on the cycle reads alike)
//!   fails with [`LockError::Deadlock`]; the others keep waiting and get their locks once
//!   it lets go.
//!
//! Only processes of this machine are followed (liveness of others cannot be checked),
//! and counted file locks never close a cycle here (a counted wait ends when any holder
//! leaves, which a chain of single links cannot prove); those waits end by their
//! timeouts as before.

mod chase;
mod links;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lockfile::cache::LockFile;
use crate::lockfile::page::Table;
use crate::owner::Me;
use crate::LockError;
use chase::Waiter;
use links::OsWait;

/// How long a wait on a file's OS lock lasts before it publishes links and chases.
pub(crate) const THRESHOLD: Duration = Duration::from_millis(30);
/// How often a wait past its threshold chases again.
pub(crate) const PERIOD: Duration = Duration::from_millis(50);

/// A wait on a file's OS lock, as the wait loops drive it: after [`THRESHOLD`] it is
/// published and chases every [`PERIOD`]. Withdrawn on drop.
pub(crate) struct Chaser<'a> {
    lf: &'a Arc<LockFile>,
    entry: Option<usize>,
    me: Me,
    blocking: bool,
    next: Option<Instant>,
    id: Option<u64>,
    /// The waiting chain's held locks, read when it is first published.
    held: Vec<(usize, u64)>,
}

impl<'a> Chaser<'a> {
    /// For a wait that began at `start`, whose entry in the page's waiter table is
    /// `entry` (no entry, no page: nothing to chase).
    pub(crate) fn new(
        lf: &'a Arc<LockFile>,
        entry: Option<usize>,
        me: Me,
        blocking: bool,
        start: Instant,
    ) -> Self {
        let next = (entry.is_some() && lf.page().is_some()).then(|| start + THRESHOLD);
        Chaser {
            lf,
            entry,
            me,
            blocking,
            next,
            id: None,
            held: Vec::new(),
        }
    }

    /// When the wait should wake up next to chase, if ever.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Chases if it is time: `Deadlock` if this wait is the one of a confirmed cycle that
    /// must give up. Call from the waiting call chain (its held locks are read here).
    pub(crate) fn check(&mut self, name: &str) -> Result<(), LockError> {
        let (Some(at), Some(i), Some(page)) = (self.next, self.entry, self.lf.page()) else {
            return Ok(());
        };
        let now = Instant::now();
        if now < at {
            return Ok(());
        }
        self.next = Some(now + PERIOD);
        let mine = page.entry(Table::Waiters, i);
        match self.id {
            // Nobody can wait for this process: nothing to publish or chase (yet).
            None if !links::holds_any_file() => return Ok(()),
            None => {
                crate::chain::held_grants(&mut self.held);
                self.id = Some(links::publish(OsWait {
                    id: 0,
                    me: self.me,
                    held: self.held.clone(),
                    blocking: self.blocking,
                    lf: self.lf.clone(),
                    ticket: mine.ticket,
                }));
            }
            // Holds and waits of this process's other chains may have formed new links.
            Some(_) => links::refresh(),
        }
        let me = Waiter {
            pid: mine.pid,
            ticket: mine.ticket,
        };
        match chase::chase(self, &me) {
            Some(cycle) => Err(LockError::Deadlock {
                name: crate::name::shown(name).into_owned(),
                cycle,
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Chaser<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            links::withdraw(id);
        }
    }
}
