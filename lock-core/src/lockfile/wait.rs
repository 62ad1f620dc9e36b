//! Waiting for the OS part of a file lock, async or blocking.
//!
//! A waiter records itself in the page's waiter table (so that other processes know a
//! turn is due, that the name is wanted as this kind of lock, and who waits), counts
//! itself among the waiters that want a wake-up, and only then tries again — so a
//! release after that attempt wakes it. Async waits arm an inotify watch on the file
//! (served by the crate's wake-up thread); blocking waits on lock-core's own files sleep
//! on the page's release count, a futex shared by every process that maps the file,
//! which hands the lock over about as fast as the kernel's own `flock` wait and, unlike
//! it, wakes up for deadlines, slow-wait reports and the cross-process cycle check
//! ([`crate::lockfile::across`]). A bounded backoff re-try is the safety net (and the
//! whole mechanism where there is neither). Only a blocking exclusive wait without a
//! deadline on a foreign file (no page) sleeps in the kernel's `flock` itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::LockFile;
use super::hold::{self, FileHold, Try};
use super::os;
use super::page::Table;
use crate::mode::Mode;
use crate::owner::Me;
use crate::trace::{self, Backend};
use crate::LockError;

/// The cross-process cycle check of one wait (see [`crate::lockfile::across`]); nothing
/// where there are no pages to read.
#[cfg(all(unix, not(loom)))]
type Chase<'a> = crate::lockfile::across::Chaser<'a>;

#[cfg(not(all(unix, not(loom))))]
struct Chase;

#[cfg(not(all(unix, not(loom))))]
impl Chase {
    fn new(_: &Arc<LockFile>, _: Option<usize>, _: Me, _: bool, _: Instant) -> Chase {
        Chase
    }
    fn next(&self) -> Option<Instant> {
        None
    }
    fn check(&mut self, _: &str) -> Result<(), LockError> {
        Ok(())
    }
}

/// Reports a file wait that is still running after the slow-wait threshold, once.
struct Slow {
    at: Option<Instant>,
}

impl Slow {
    fn new(start: Instant) -> Slow {
        Slow {
            at: trace::slow_waits_wanted().then(|| start + trace::slow_wait_threshold()),
        }
    }

    fn check(&mut self, lf: &LockFile, name: &str, mode: Mode, start: Instant) {
        if self.at.is_some_and(|at| Instant::now() >= at) {
            self.at = None;
            trace::slow_wait(
                name,
                mode,
                Backend::File,
                start.elapsed(),
                hold::holder(lf, name).as_deref(),
            );
        }
    }
}

/// This call's entry in the page's waiter table, removed on drop. If other processes
/// yielded to it (it was passed twice), leaving without the lock wakes them.
struct WaiterEntry<'a> {
    lf: &'a LockFile,
    entry: Option<usize>,
}

impl<'a> WaiterEntry<'a> {
    fn new(lf: &'a LockFile, mode: Mode) -> Self {
        #[cfg(unix)]
        let entry = lf
            .page()
            .and_then(|p| p.add(Table::Waiters, mode, super::record::now_ms()));
        #[cfg(not(unix))]
        let entry = {
            let _ = mode;
            None
        };
        WaiterEntry { lf, entry }
    }
}

impl Drop for WaiterEntry<'_> {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let (Some(p), Some(i)) = (self.lf.page(), self.entry) {
            let yielded_to = p.passes(i) >= 2;
            p.remove(Table::Waiters, i);
            if yielded_to {
                self.lf.wake_waiters();
            }
        }
    }
}

pub(crate) fn timed_out(lf: &LockFile, name: &str, start: Instant) -> LockError {
    LockError::Timeout {
        name: name.to_owned(),
        waited: start.elapsed(),
        holder: hold::holder(lf, name),
    }
}

/// How long to wait before the next attempt, or `None` once the deadline has passed.
fn next_step(deadline: Option<Instant>, backoff: Duration) -> Option<Duration> {
    match deadline {
        None => Some(backoff),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| left.min(backoff))
        }
    }
}

/// Waits (async) until an attempt at the OS lock succeeds. Runs on any executor: the
/// inotify descriptor and the re-try timer are served by the crate's wake-up thread
/// ([`crate::reactor`]), not by a runtime.
pub(crate) async fn wait_async(
    lf: &Arc<LockFile>,
    mode: Mode,
    name: &str,
    start: Instant,
    deadline: Option<Instant>,
    me: Me,
) -> Result<FileHold, LockError> {
    let entry = WaiterEntry::new(lf, mode);
    let mut chase = Chase::new(lf, entry.entry, me, false, start);
    // Counted as a waiter before the watch is armed, so releasers know to wake us.
    let _waiting = lf.waiting(false);
    #[cfg(target_os = "linux")]
    let mut watch = os::Watch::new(&lf.path).ok();
    let mut backoff = os::BACKOFF_MIN;
    trace::wait_started(name, mode, Backend::File, || hold::holder(lf, name));
    let mut slow = Slow::new(start);
    loop {
        // The watch is armed before this attempt: a release after it wakes us.
        if let Try::Got(h) = hold::try_os(lf, mode, name, entry.entry)? {
            trace::acquired_after_wait(name, mode, Backend::File, start.elapsed());
            return Ok(h);
        }
        slow.check(lf, name, mode, start);
        chase.check(name)?;
        let Some(step) = next_step(deadline, backoff) else {
            return Err(timed_out(lf, name, start));
        };
        let now = Instant::now();
        let until = now.checked_add(step).unwrap_or(now);
        let until = chase.next().map_or(until, |c| c.max(now).min(until));
        backoff = (backoff * 2).min(os::backoff_max());
        #[cfg(target_os = "linux")]
        if let Some(fd) = watch.as_ref().and_then(|w| w.fd()) {
            // The re-try is only a safety net (inotify wakes us on a release), so it may
            // come a tick late rather than interrupt the wake-up thread; the caller's own
            // deadline is kept exactly.
            let slack = if deadline.is_some_and(|d| d <= until) {
                Duration::ZERO
            } else {
                crate::reactor::TICK
            };
            // Events queued before the registration make it fire at once.
            match crate::reactor::readable_until(fd, until, slack).await {
                Ok(()) => {
                    if let Some(w) = &watch {
                        let _ = w.drain();
                    }
                }
                // Not pollable after all: the backoff alone from now on.
                Err(_) => watch = None,
            }
            continue;
        }
        crate::reactor::sleep_until(until)
            .await
            .map_err(|e| crate::reactor::wait_failed(name, e))?;
    }
}

/// Waits (blocking the thread) until the OS lock is ours: by attempts woken by releases
/// (a futex in the shared page of lock-core's own files, inotify on others), or, on a
/// foreign file, in the kernel for an exclusive lock without a deadline (once a
/// slow-wait report, if one is wanted, is made).
pub(crate) fn wait_blocking(
    lf: &Arc<LockFile>,
    mode: Mode,
    name: &str,
    start: Instant,
    deadline: Option<Instant>,
    me: Me,
) -> Result<FileHold, LockError> {
    trace::wait_started(name, mode, Backend::File, || hold::holder(lf, name));
    // Recorded as a waiter (for the turn rule) for the whole wait.
    let entry = WaiterEntry::new(lf, mode);
    let mut chase = Chase::new(lf, entry.entry, me, true, start);
    let mut slow = Slow::new(start);
    // A slow-wait report and the chase for cycles need a wait that wakes up: an
    // exclusive wait without a deadline sleeps in the kernel only where neither is
    // wanted (the chase needs a page: foreign files).
    let mut in_kernel = deadline.is_none() && mode.is_exclusive() && chase.next().is_none();
    // On lock-core's own files a blocking wait sleeps on the page's release count (a
    // futex shared by every process that maps the file): woken as directly as by the
    // kernel's own `flock` wait, yet with a timeout.
    #[cfg(unix)]
    let sleeps = cfg!(target_os = "linux") && lf.page().is_some();
    #[cfg(not(unix))]
    let sleeps = false;
    let mut _waiting = Some(lf.waiting(sleeps));
    #[cfg(target_os = "linux")]
    let mut watch = if sleeps {
        None
    } else {
        os::Watch::new(&lf.path).ok()
    };
    let mut backoff = os::BACKOFF_MIN;
    loop {
        if in_kernel && slow.at.is_none() {
            // Once: a process due its turn makes us give the lock back, and we then wait
            // for its release below.
            in_kernel = false;
            // The kernel wakes us: releasers need not.
            _waiting = None;
            os::lock_blocking(&lf.file).map_err(|e| hold::io_error(name, &lf.path, e))?;
            if let Try::Got(h) = hold::after_kernel_lock(lf, name, entry.entry)? {
                trace::acquired_after_wait(name, mode, Backend::File, start.elapsed());
                return Ok(h);
            }
            _waiting = Some(lf.waiting(sleeps));
        }
        // Read before the attempt: a release after it changes the count.
        #[cfg(unix)]
        let seen = lf.page().map(|p| (p, p.releases()));
        if let Try::Got(h) = hold::try_os(lf, mode, name, entry.entry)? {
            trace::acquired_after_wait(name, mode, Backend::File, start.elapsed());
            return Ok(h);
        }
        slow.check(lf, name, mode, start);
        chase.check(name)?;
        let Some(step) = next_step(deadline, backoff) else {
            return Err(timed_out(lf, name, start));
        };
        let step = match chase.next() {
            Some(at) => step.min(at.saturating_duration_since(Instant::now())),
            None => step,
        };
        let step = match slow.at {
            // Wake up for the report (then, maybe, for the kernel's wait).
            Some(at) => step.min(
                at.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ),
            None => step,
        };
        backoff = (backoff * 2).min(os::backoff_max());
        #[cfg(unix)]
        if let (true, Some((page, seen))) = (sleeps, seen) {
            page.sleep(seen, step);
            continue;
        }
        #[cfg(target_os = "linux")]
        if let Some(w) = &watch {
            if w.wait_blocking(step).is_err() {
                watch = None;
            }
            continue;
        }
        std::thread::sleep(step);
    }
}
