//! The OS part of a file lock, in every mode: one attempt to take it ([`try_os`]) and
//! the guard's half that gives it back ([`FileHold`]).
//!
//! * **Exclusive**: `flock(LOCK_EX)` on the file.
//! * **Shared**: `flock(LOCK_SH)`, so `flock -s` and other tools agree with lock-core both
//!   ways. A flock belongs to the open file description, which all of this process's
//!   holders of the name share: the first in-process shared holder takes it, later ones
//!   join, the last one gives it back (counted under a per-file mutex held only around the
//!   non-blocking system call).
//! * **Counted** (`permits = N`): permit `i` is an open-file-description write lock on
//!   byte `i` of a range far beyond the file's content; every in-process holder takes a
//!   permit this process does not hold yet. Like flocks, these are dropped by the kernel
//!   when the holder dies.
//!
//! For lock-core's own files, every attempt that gets the OS lock then records the hold in
//! the page, checks that nobody holds or waits for the name as another kind of lock
//! (`Mismatch`), and checks the turn rule (see `page`): a process that has passed a
//! waiting one often enough gives the lock back at once ([`Try::Yield`]).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::cache::LockFile;
use super::os;
use super::page::{self, Entry, Table};
use super::record;
use crate::mode::{Kind, Mode};
use crate::{Holder, LockError};

use crate::sync::lock_std as lock;

/// What one attempt at the OS lock gave.
pub(crate) enum Try {
    /// The lock is ours.
    Got(FileHold),
    /// Someone else holds it in a way we have to wait for.
    Held,
    /// We had it, but another process's waiter is due: given back at once; wait.
    Yield,
}

/// Which OS lock a [`FileHold`] holds.
enum Os {
    Exclusive { entry: Option<usize> },
    Shared,
    Permit { index: u32, entry: Option<usize> },
}

/// The cross-process half of a file-lock guard: the open lock file, what it holds, and
/// the file's own in-process lock (given back after the OS lock, as the field drops).
pub(crate) struct FileHold {
    lf: Option<Arc<LockFile>>,
    os: Os,
    inproc: Option<crate::held::Held>,
}

pub(crate) fn io_error(name: &str, path: &std::path::Path, source: std::io::Error) -> LockError {
    LockError::Io {
        name: name.to_owned(),
        path: Some(path.to_path_buf()),
        source,
    }
}

/// The holder an entry of the page describes.
pub(crate) fn holder_of_entry(e: &Entry) -> Holder {
    let mut h = Holder::new();
    h.pid = Some(e.pid);
    if e.host == record::host_hash() {
        h.host = Some(record::host_name().to_owned());
    }
    h.since = UNIX_EPOCH.checked_add(Duration::from_millis(e.since_ms));
    let what = match page::mode_of(e.kind) {
        Some(m) => format!("file lock ({m})"),
        None => "file lock".to_owned(),
    };
    h.detail = Some(if e.inherited() {
        // The taker is gone; what holds the lock now is the group that inherited it.
        h.pid = Some(e.heirs);
        format!(
            "{what}, inherited by process group {} of pid {}, which has exited",
            e.heirs, e.pid
        )
    } else {
        what
    });
    h
}

/// Who holds the file's OS lock, as far as the file tells: a live entry of another
/// process in the page, else the text record; `None` for foreign files (the holder is
/// unknown) or when nobody is recorded.
pub(crate) fn holder(lf: &LockFile, name: &str) -> Option<Box<Holder>> {
    holder_unboxed(lf, name).map(Box::new)
}

fn holder_unboxed(lf: &LockFile, name: &str) -> Option<Holder> {
    #[cfg(unix)]
    if let Some(p) = lf.page() {
        let me = crate::owner::pid();
        let mut live: Vec<Entry> = p
            .entries(Table::Holders)
            .map(|(_, e)| e)
            .filter(Entry::alive)
            .collect();
        live.sort_by_key(|e| (e.pid == me, e.since_ms));
        return live.first().map(holder_of_entry);
    }
    match lf.owner {
        super::open::Owner::Ours => {
            record::read_record(&lf.file).and_then(|r| record::holder_from(r, name))
        }
        _ => None,
    }
}

fn now_ms() -> u64 {
    record::now_ms()
}

/// One attempt at the OS lock in `mode` (never waits). `waiting`: the caller's entry in
/// the page's waiter table, if it waits (for the turn rule).
pub(crate) fn try_os(
    lf: &Arc<LockFile>,
    mode: Mode,
    name: &str,
    waiting: Option<usize>,
) -> Result<Try, LockError> {
    let io = |e| io_error(name, &lf.path, e);
    match mode {
        Mode::Exclusive => {
            if !os::try_lock(&lf.file).map_err(io)? {
                return Ok(Try::Held);
            }
            after_kernel_lock(lf, name, waiting)
        }
        Mode::Shared => {
            let mut st = lock(&lf.shared);
            if st.holders > 0 {
                // This process holds the shared OS lock already: join it, unless a
                // waiting process is due (then this turn goes to it).
                if must_yield(lf, waiting) {
                    return Ok(Try::Yield);
                }
                st.holders += 1;
                return Ok(Try::Got(FileHold::new(lf, Os::Shared)));
            }
            if !os::try_lock_shared(&lf.file).map_err(io)? {
                return Ok(Try::Held);
            }
            let entry = record_hold(lf, mode);
            let undo = || {
                forget(lf, entry);
                let _ = lf.file.unlock();
            };
            if let Some(e) = mismatch(lf, mode, name) {
                undo();
                return Err(e);
            }
            if must_yield(lf, waiting) {
                undo();
                lf.wake_waiters();
                return Ok(Try::Yield);
            }
            st.holders = 1;
            st.entry = entry;
            Ok(Try::Got(FileHold::new(lf, Os::Shared)))
        }
        Mode::Permits(n) => {
            let mut held = lock(&lf.permits);
            if held.len() < n as usize {
                held.resize(n as usize, false);
            }
            for index in 0..n {
                if held[index as usize] || !os::try_permit(&lf.file, index).map_err(io)? {
                    continue;
                }
                let entry = record_hold(lf, mode);
                let undo = || {
                    forget(lf, entry);
                    let _ = os::release_permit(&lf.file, index);
                };
                if let Some(e) = mismatch(lf, mode, name) {
                    undo();
                    return Err(e);
                }
                if must_yield(lf, waiting) {
                    undo();
                    lf.wake_waiters();
                    return Ok(Try::Yield);
                }
                held[index as usize] = true;
                return Ok(Try::Got(FileHold::new(lf, Os::Permit { index, entry })));
            }
            Ok(Try::Held)
        }
    }
}

/// After this process took the exclusive OS lock (by a try, or in the kernel): records
/// the hold, checks the kind and the turn rule, and writes the holder record.
pub(crate) fn after_kernel_lock(
    lf: &Arc<LockFile>,
    name: &str,
    waiting: Option<usize>,
) -> Result<Try, LockError> {
    let mode = Mode::Exclusive;
    let entry = record_hold(lf, mode);
    let undo = || {
        forget(lf, entry);
        let _ = lf.file.unlock();
    };
    if let Some(e) = mismatch(lf, mode, name) {
        undo();
        return Err(e);
    }
    if must_yield(lf, waiting) {
        undo();
        lf.wake_waiters();
        return Ok(Try::Yield);
    }
    // The record is informational: failing to write it does not undo the lock.
    let _ = lf.write_record(name);
    Ok(Try::Got(FileHold::new(lf, Os::Exclusive { entry })))
}

/// Records this process's new hold in the page (lock-core's own files only).
fn record_hold(lf: &LockFile, mode: Mode) -> Option<usize> {
    #[cfg(unix)]
    if let Some(p) = lf.page() {
        return p.add(Table::Holders, mode, now_ms());
    }
    let _ = (lf, mode);
    None
}

fn forget(lf: &LockFile, entry: Option<usize>) {
    #[cfg(unix)]
    if let (Some(p), Some(i)) = (lf.page(), entry) {
        p.remove(Table::Holders, i);
    }
    let _ = (lf, entry);
}

/// `Mismatch` if another process holds or waits for the name as another kind of lock.
fn mismatch(lf: &LockFile, mode: Mode, name: &str) -> Option<LockError> {
    #[cfg(unix)]
    if let Some(p) = lf.page() {
        let e = p.mismatch(mode)?;
        let kind = match page::mode_of(e.kind) {
            Some(Mode::Permits(n)) => Kind::Counted(n),
            _ => Kind::ReadWrite,
        };
        return Some(LockError::Mismatch {
            name: name.to_owned(),
            kind,
            asked: mode,
            holder: Some(Box::new(holder_of_entry(&e))),
        });
    }
    let _ = (lf, mode, name);
    None
}

fn must_yield(lf: &LockFile, waiting: Option<usize>) -> bool {
    #[cfg(unix)]
    if let Some(p) = lf.page() {
        return p.must_yield(waiting);
    }
    let _ = (lf, waiting);
    false
}

impl FileHold {
    fn new(lf: &Arc<LockFile>, os: Os) -> FileHold {
        FileHold {
            lf: Some(lf.clone()),
            os,
            inproc: None,
        }
    }

    /// Keeps the file's own in-process hold, taken before the OS lock.
    pub(crate) fn with_inproc(mut self, held: crate::held::Held) -> FileHold {
        self.inproc = Some(held);
        self
    }

    /// See [`LockGuard::disown`](crate::LockGuard).
    pub(crate) fn disown(&self) {
        if let Some(h) = &self.inproc {
            h.disown();
        }
    }

    /// The open lock file whose OS lock this hold holds.
    pub(crate) fn file(&self) -> Option<&std::fs::File> {
        self.lf.as_ref().map(|lf| &lf.file)
    }

    /// Records in the page that process group `pgid` inherited this hold.
    pub(crate) fn set_heirs(&self, pgid: u32) {
        #[cfg(unix)]
        if let Some(lf) = &self.lf {
            let Some(page) = lf.page() else { return };
            let entry = match self.os {
                Os::Exclusive { entry } | Os::Permit { entry, .. } => entry,
                Os::Shared => lock(&lf.shared).entry,
            };
            if let Some(i) = entry {
                page.set_heirs(i, pgid);
            }
        }
        let _ = pgid;
    }

    /// Gives the OS lock back, then wakes waiting processes.
    pub(crate) fn release(mut self, name: &str) -> Result<(), LockError> {
        match self.lf.take() {
            Some(lf) => give_back(&lf, &self.os).map_err(|e| io_error(name, &lf.path, e)),
            None => Ok(()),
        }
    }
}

impl Drop for FileHold {
    fn drop(&mut self) {
        if let Some(lf) = self.lf.take() {
            let _ = give_back(&lf, &self.os);
        }
    }
}

fn give_back(lf: &LockFile, os: &Os) -> std::io::Result<()> {
    match *os {
        Os::Exclusive { entry } => {
            forget(lf, entry);
            lf.file.unlock()?;
        }
        Os::Shared => {
            let mut st = lock(&lf.shared);
            st.holders = st.holders.saturating_sub(1);
            if st.holders > 0 {
                return Ok(());
            }
            forget(lf, st.entry.take());
            lf.file.unlock()?;
        }
        Os::Permit { index, entry } => {
            let mut held = lock(&lf.permits);
            forget(lf, entry);
            os::release_permit(&lf.file, index)?;
            if let Some(h) = held.get_mut(index as usize) {
                *h = false;
            }
        }
    }
    // After the unlock, never before: a waiter woken by this finds the lock free.
    lf.wake_waiters();
    Ok(())
}
