//! The crate's own wake-up source for async waits, so that they work on any executor.
//!
//! Timeouts of contended waits and the inotify wake-ups of file-lock waiters used to come
//! from the Tokio runtime (`tokio::time`, `AsyncFd`), which fails outside a runtime and
//! panics inside one built without its time or I/O driver. Instead, one process-wide
//! background thread (`lock-core-reactor`, started by the first contended wait that needs
//! it) keeps
//!
//! * a deadline-ordered set of timers, and
//! * on Linux, one-shot readiness registrations of descriptors (`EPOLLONESHOT` in an
//!   epoll instance; an eventfd interrupts the thread when an earlier deadline arrives),
//!
//! and wakes the registered [`Waker`] when its deadline passes or its descriptor becomes
//! readable. Elsewhere the thread sleeps on a condition variable and only serves timers
//! (file-lock waiters then re-try with their backoff).
//!
//! Waking the thread costs a context switch, which on a busy machine is as dear as the
//! wake-up being served, so registrations avoid it where they can: while waits come and
//! go the thread looks at its timers every [`TICK`] anyway (for [`LINGER`] after the last
//! registration), and a deadline that may be up to [`TICK`] late (the safety-net re-try of
//! a file-lock waiter, which inotify normally wakes first) then needs no notification.
//! Deadlines a caller chose (timeouts, sleeps) are always met on time.
//!
//! The futures ([`sleep_until`], [`readable_until`]) register on their
//! first pending poll only, keep their waker up to date (`will_wake`), and remove their
//! registration when they fire or are dropped, so the table holds exactly the waits in
//! progress: nothing leaks per wait, and uncontended acquisitions never touch this module.
//! No lock is held across an `.await`, and nothing here blocks the polling thread beyond a
//! short mutex section and, on Linux, one `epoll_ctl`.
//!
//! Failure to start the thread (or to create its epoll instance) is an `io::Error` for the
//! waiting call, never a panic; the next wait tries again.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use std::os::fd::RawFd;

// The state is consistent between statements, so a poisoned mutex is usable.
use crate::sync::lock_std as lock;

/// How often the thread looks at its timers while waits come and go, and so how late a
/// deadline registered with this much slack may fire.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// How long the thread keeps ticking after the last registration before it sleeps until
/// its next deadline (or for ever).
const LINGER: Duration = Duration::from_millis(500);

/// One wake-up thread and its registrations.
pub(crate) struct Reactor {
    state: Mutex<State>,
    poller: Poller,
}

#[derive(Default)]
struct State {
    /// Ids are never re-used, so a late event for a finished registration is ignored.
    next_id: u64,
    /// Registrations that have not fired yet.
    pending: HashMap<u64, Pending, foldhash::fast::RandomState>,
    /// `(deadline, id)` of the pending registrations that have a deadline.
    timers: BTreeSet<(Instant, u64)>,
    /// Registration handles alive (fired or not): what a leak would show in.
    live: usize,
    /// The latest time at which the thread looks at `timers` again without being
    /// notified (`None`: not before an event or a notification).
    wakes_at: Option<Instant>,
    /// Until when the thread ticks: [`LINGER`] after the last registration.
    ticks_until: Option<Instant>,
    /// Notifications sent to the thread, for tests.
    notified: u64,
}

struct Pending {
    waker: Waker,
    deadline: Option<Instant>,
}

/// Sizes of a reactor's tables, for tests and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Registrations that have not fired.
    pub(crate) pending: usize,
    /// Timers among them.
    pub(crate) timers: usize,
    /// Registration handles alive.
    pub(crate) live: usize,
}

impl Counts {
    pub(crate) fn total(self) -> usize {
        self.pending + self.timers + self.live
    }
}

static GLOBAL: OnceLock<Arc<Reactor>> = OnceLock::new();
static STARTING: Mutex<()> = Mutex::new(());

/// The process-wide reactor, started on first use.
pub(crate) fn global() -> io::Result<&'static Reactor> {
    if let Some(r) = GLOBAL.get() {
        return Ok(r);
    }
    let _one_at_a_time = lock(&STARTING);
    if let Some(r) = GLOBAL.get() {
        return Ok(r);
    }
    let r = Reactor::start("lock-core-reactor")?;
    Ok(GLOBAL.get_or_init(|| r))
}

/// The global reactor's table sizes (all zero if it never started).
pub(crate) fn global_counts() -> Counts {
    GLOBAL.get().map_or(
        Counts {
            pending: 0,
            timers: 0,
            live: 0,
        },
        |r| r.counts(),
    )
}

/// A wait could not be set up (the reactor thread or its epoll instance is unavailable).
pub(crate) fn wait_failed(name: &str, e: io::Error) -> crate::LockError {
    crate::LockError::AcquireFailed {
        name: name.to_owned(),
        reason: format!("cannot wait: the lock-core wake-up thread is unavailable: {e}"),
    }
}

impl Reactor {
    /// A new reactor with its own thread named `name`.
    pub(crate) fn start(name: &str) -> io::Result<Arc<Reactor>> {
        let r = Arc::new(Reactor {
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            poller: Poller::new()?,
        });
        let run = Arc::clone(&r);
        // On failure the closure (and its `Arc`) is dropped, and `r` with it below.
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run.run())?;
        Ok(r)
    }

    /// Notifications sent to the thread so far, and whether it now sleeps until the next
    /// one (or a descriptor event) instead of ticking.
    #[cfg(test)]
    fn notified_and_idle(&self) -> (u64, bool) {
        let st = lock(&self.state);
        (st.notified, st.wakes_at.is_none())
    }

    pub(crate) fn counts(&self) -> Counts {
        let st = lock(&self.state);
        Counts {
            pending: st.pending.len(),
            timers: st.timers.len(),
            live: st.live,
        }
    }

    /// Registers `waker` to be woken at `deadline` (at most `slack` late) and/or (Linux)
    /// when `fd` is readable.
    fn register(
        &'static self,
        deadline: Option<Instant>,
        slack: Duration,
        #[cfg(target_os = "linux")] fd: Option<RawFd>,
        waker: &Waker,
    ) -> io::Result<Registration> {
        // Wakers are cloned and dropped outside the state mutex: their code is foreign
        // (dropping the last one may drop a task, and with it a registration).
        let waker = waker.clone();
        let now = Instant::now();
        let (id, notify) = {
            let mut st = lock(&self.state);
            let id = st.next_id;
            st.next_id += 1;
            st.pending.insert(id, Pending { waker, deadline });
            st.live += 1;
            st.ticks_until = now.checked_add(LINGER);
            // The thread looks at its timers by `wakes_at` anyway (a time already passed
            // means it is awake and will look again before it sleeps).
            let notify = deadline.is_some_and(|d| {
                st.timers.insert((d, id));
                let latest = d.checked_add(slack).unwrap_or(d);
                st.wakes_at.is_none_or(|w| latest < w)
            });
            st.notified += u64::from(notify);
            (id, notify)
        };
        // From here on, dropping `reg` undoes everything above.
        #[allow(unused_mut)]
        let mut reg = Registration {
            reactor: self,
            id,
            deadline,
            #[cfg(target_os = "linux")]
            fd: None,
        };
        #[cfg(target_os = "linux")]
        if let Some(fd) = fd {
            // Not recorded in `reg` unless added: a failed ADD (say EEXIST) must not make
            // the drop remove somebody else's registration of the descriptor.
            self.poller.add_oneshot(fd, id)?;
            reg.fd = Some(fd);
        }
        if notify {
            // The thread may be sleeping towards a later deadline, or for ever.
            self.poller.notify();
        }
        Ok(reg)
    }

    /// The thread: fires due timers and ready descriptors, for ever.
    fn run(&self) {
        let mut ready: Vec<u64> = Vec::new();
        let mut wake: Vec<Waker> = Vec::new();
        loop {
            let timeout = {
                let mut st = lock(&self.state);
                let now = Instant::now();
                while let Some(&(d, id)) = st.timers.first() {
                    if d > now {
                        break;
                    }
                    st.timers.pop_first();
                    if let Some(p) = st.pending.remove(&id) {
                        wake.push(p.waker);
                    }
                }
                let next = st.timers.first().map(|&(d, _)| d);
                let tick = st
                    .ticks_until
                    .filter(|&t| now < t)
                    .and_then(|_| now.checked_add(TICK));
                st.wakes_at = match (next, tick) {
                    (Some(d), Some(t)) => Some(d.min(t)),
                    (d, t) => d.or(t),
                };
                st.wakes_at.map(|w| w.saturating_duration_since(now))
            };
            wake_all(&mut wake);
            ready.clear();
            if self.poller.wait(timeout, &mut ready).is_err() {
                // Cannot happen with our own valid descriptors; never spin if it does.
                std::thread::sleep(Duration::from_millis(1));
            }
            if !ready.is_empty() {
                let mut st = lock(&self.state);
                for id in ready.drain(..) {
                    if let Some(p) = st.pending.remove(&id) {
                        if let Some(d) = p.deadline {
                            st.timers.remove(&(d, id));
                        }
                        wake.push(p.waker);
                    }
                }
            }
            wake_all(&mut wake);
        }
    }
}

/// Wakes outside the state mutex; a panicking waker must not take the thread down.
fn wake_all(wakers: &mut Vec<Waker>) {
    for w in wakers.drain(..) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
    }
}

/// One registration; dropping it removes every trace of it.
struct Registration {
    reactor: &'static Reactor,
    id: u64,
    deadline: Option<Instant>,
    #[cfg(target_os = "linux")]
    fd: Option<RawFd>,
}

impl Registration {
    /// Refreshes the waker; `false` once the registration has fired.
    fn still_pending(&self, waker: &Waker) -> bool {
        let mut st = lock(&self.reactor.state);
        let Some(p) = st.pending.get_mut(&self.id) else {
            return false;
        };
        if p.waker.will_wake(waker) {
            return true;
        }
        let old = std::mem::replace(&mut p.waker, waker.clone());
        drop(st);
        drop(old);
        true
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // First out of the epoll set: the descriptor's owner may close it right after.
        #[cfg(target_os = "linux")]
        if let Some(fd) = self.fd {
            self.reactor.poller.del(fd);
        }
        let mut st = lock(&self.reactor.state);
        let pending = st.pending.remove(&self.id);
        if pending.is_some() {
            if let Some(d) = self.deadline {
                st.timers.remove(&(d, self.id));
            }
        }
        st.live -= 1;
        drop(st);
        drop(pending);
    }
}

mod wait;

#[cfg(target_os = "linux")]
pub(crate) use wait::readable_until;
pub(crate) use wait::{sleep_until, Sleep};

// What the thread sleeps in.
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux::Poller;

#[cfg(not(target_os = "linux"))]
mod portable;
#[cfg(not(target_os = "linux"))]
use portable::Poller;

#[cfg(test)]
mod tests;
