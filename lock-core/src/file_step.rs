//! The file backend's step in the acquire pipeline: the in-process lock of the name
//! first (the `local` pipeline), then the lock file's OS lock. The verbs of every
//! request with a file place (`Lock::file`, `file::*`, `#[locked(file)]`) end here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::held::Held;
use crate::lockfile::cache::{self, LockFile};
use crate::lockfile::dir::default_dir;
use crate::lockfile::hold::{self, Try};
use crate::lockfile::{resolve_dir, wait, FileHold};
use crate::mode::Mode;
use crate::owner::{Facts, Me};
use crate::place::Place;
use crate::registry::EntryRef;
use crate::site::Site;
use crate::{local, LockError, LockGuard};

/// The open lock file for `guard`'s name at `place`.
fn open_for(guard: &LockGuard, place: Place<'_>) -> Result<Arc<LockFile>, LockError> {
    let name = guard.name();
    let now = crate::clock::coarse_nanos();
    let opened = match place {
        Place::Dir(d) => cache::open(&resolve_dir(d), name, false, now),
        Place::Path(p) => {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            cache::open(&p, name, true, now)
        }
        Place::Local => cache::open(default_dir(), name, false, now),
    };
    opened.map_err(|(path, e)| hold::io_error(name, &path, e))
}

/// With the lock-order checker on: tells it the file lock `guard` lives in `lf`'s
/// directory, whose order log other processes share.
#[cold]
fn lockdep_file(guard: &LockGuard, lf: &LockFile, me: &Me) {
    if let Some(dir) = lf.path.parent() {
        crate::lockdep::file_taken(guard.token(), dir, me);
    }
}

fn busy(lf: &LockFile, name: &str) -> LockError {
    LockError::Busy {
        name: name.to_owned(),
        holder: hold::holder(lf, name),
        reentrant: false,
        reason: None,
    }
}

fn deadline_of(start: Instant, timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| start.checked_add(t))
}

/// An error of a lock file's own in-process lock, as an error of the lock `name` that
/// the caller asked for (which reached the file under another name, or is held by
/// another name of this process).
#[cold]
fn alias_error(e: LockError, name: &str, lf: &LockFile) -> LockError {
    let path = lf.path.display();
    match e {
        LockError::Busy {
            holder,
            reentrant,
            reason: None,
            ..
        } => {
            LockError::Busy {
                name: name.to_owned(),
                holder,
                reentrant,
                reason: Some(if reentrant {
                    format!("its lock file {path} is held by this call chain already, under another name")
                } else {
                    format!("its lock file {path} is held in this process under another name")
                }),
            }
        }
        e => e.renamed(name),
    }
}

/// The time left of `timeout` since `start` (`Some(0)` once it is used up: try once).
fn left(start: Instant, timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| t.saturating_sub(start.elapsed()))
}

/// The open lock file for `guard`'s name at `place`, and the registry entry of the
/// file's own in-process lock (one per file, whatever name reaches it).
fn file_of(guard: &LockGuard, place: Place<'_>) -> Result<(Arc<LockFile>, EntryRef), LockError> {
    let lf = open_for(guard, place)?;
    let ident = EntryRef::Counted(lf.ident.clone());
    Ok((lf, ident))
}

/// One attempt at the OS lock: `None` if it is held (or given back at once for another
/// process's turn).
fn os_now(lf: &Arc<LockFile>, mode: Mode, name: &str) -> Result<Option<FileHold>, LockError> {
    match hold::try_os(lf, mode, name, None)? {
        Try::Got(h) => Ok(Some(h)),
        Try::Held | Try::Yield => Ok(None),
    }
}

/// The last step of every path: the guard of the name gets the file part (the OS lock
/// and the file's own in-process lock), and the lock-order checker, if on, learns of it.
fn finish(
    mut guard: LockGuard,
    lf: &LockFile,
    os: FileHold,
    inproc: Held,
    me: Option<&Me>,
) -> LockGuard {
    guard.attach_file(os.with_inproc(inproc));
    if let Some(me) = me.filter(|_| crate::lockdep::on()) {
        lockdep_file(&guard, lf, me);
    }
    guard
}

/// Waits for the in-process lock, then the file's own in-process lock, then the OS
/// lock. `Some(0)` tries each once.
pub(crate) async fn lock_entry(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    timeout: Option<Duration>,
    site: Site,
    hand: bool,
) -> Result<LockGuard, LockError> {
    let start = Instant::now();
    let guard = local::lock(entry, mode, timeout, site, hand).await?;
    let (lf, ident) = file_of(&guard, place)?;
    let inproc = local::lock(ident, mode, left(start, timeout), site, hand)
        .await
        .map_err(|e| alias_error(e, guard.name(), &lf))?
        .into_held();
    // On error or cancellation `guard` and `inproc` drop and give the in-process locks
    // back; the OS lock was never taken.
    let os = match os_now(&lf, mode, guard.name())? {
        Some(h) => h,
        None if timeout == Some(Duration::ZERO) => return Err(busy(&lf, guard.name())),
        None => {
            let me = local::me_async().await;
            let deadline = deadline_of(start, timeout);
            wait::wait_async(&lf, mode, guard.name(), start, deadline, me).await?
        }
    };
    let me = if crate::lockdep::on() {
        Some(local::me_async().await)
    } else {
        None
    };
    Ok(finish(guard, &lf, os, inproc, me.as_ref()))
}

/// The attribute's fast path: all three locks if all can be had right now, else `None`
/// with nothing held (the caller then waits the usual way).
pub(crate) fn try_now(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    facts: &Facts,
) -> Result<Option<LockGuard>, LockError> {
    let guard = match local::try_alone(entry, mode, facts) {
        local::Fast::Got(g) => g,
        local::Fast::Taken(_) => return Ok(None),
        local::Fast::Failed(e) => return Err(*e),
    };
    let (lf, ident) = file_of(&guard, place)?;
    let inproc = match local::try_alone(ident, mode, facts) {
        local::Fast::Got(g) => g.into_held(),
        local::Fast::Taken(_) => return Ok(None),
        local::Fast::Failed(e) => return Err(alias_error(*e, guard.name(), &lf)),
    };
    // The checker is off on this path (the attribute sends it to the slow one).
    Ok(os_now(&lf, mode, guard.name())?.map(|os| finish(guard, &lf, os, inproc, None)))
}

/// `readers_first` for a file lock: joins the shared holders of the name, then of the
/// file's own in-process lock (or takes it if free), then the OS shared lock, all without
/// waiting; `None` (nothing held) if any of them cannot be had right now.
pub(crate) fn join_shared(
    entry: &EntryRef,
    place: Place<'_>,
    facts: &Facts,
    me: &Me,
    reentrant: bool,
) -> Result<Option<LockGuard>, LockError> {
    let Some(guard) = local::join_shared(entry, facts, me, reentrant)? else {
        return Ok(None);
    };
    let (lf, ident) = file_of(&guard, place)?;
    let inproc = if ident.raw.has_sharers() {
        local::join_shared(&ident, facts, me, false)
            .map_err(|e| alias_error(e, guard.name(), &lf))?
    } else {
        match local::try_lock(ident, Mode::Shared, *facts, *me) {
            Ok(g) => Some(g),
            Err(LockError::Busy { .. }) => None,
            Err(e) => return Err(alias_error(e, guard.name(), &lf)),
        }
    };
    let Some(inproc) = inproc else {
        return Ok(None);
    };
    Ok(os_now(&lf, Mode::Shared, guard.name())?
        .map(|os| finish(guard, &lf, os, inproc.into_held(), Some(me))))
}

/// Takes all three locks if all can be had right now.
pub(crate) fn try_lock_entry(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    facts: Facts,
    me: Me,
) -> Result<LockGuard, LockError> {
    let guard = local::try_lock(entry, mode, facts, me)?;
    let (lf, ident) = file_of(&guard, place)?;
    let inproc = local::try_lock(ident, mode, facts, me)
        .map_err(|e| alias_error(e, guard.name(), &lf))?
        .into_held();
    match os_now(&lf, mode, guard.name())? {
        Some(os) => Ok(finish(guard, &lf, os, inproc, Some(&me))),
        None => Err(busy(&lf, guard.name())),
    }
}

/// Blocking twin of [`lock_entry`]: the same steps, each wait blocking the thread.
pub(crate) fn blocking_lock_entry(
    entry: EntryRef,
    place: Place<'_>,
    mode: Mode,
    timeout: Option<Duration>,
    facts: Facts,
    me: Me,
) -> Result<LockGuard, LockError> {
    let start = Instant::now();
    let guard = local::blocking_lock(entry, mode, timeout, facts, me)?;
    let (lf, ident) = file_of(&guard, place)?;
    let inproc = local::blocking_lock(ident, mode, left(start, timeout), facts, me)
        .map_err(|e| alias_error(e, guard.name(), &lf))?
        .into_held();
    let os = match os_now(&lf, mode, guard.name())? {
        Some(h) => h,
        None if timeout == Some(Duration::ZERO) => return Err(busy(&lf, guard.name())),
        None => {
            let deadline = deadline_of(start, timeout);
            let name = guard.name();
            // On a multi-thread runtime's worker, let the runtime move other tasks away.
            local::block_here(|| wait::wait_blocking(&lf, mode, name, start, deadline, me))?
        }
    };
    Ok(finish(guard, &lf, os, inproc, Some(&me)))
}
