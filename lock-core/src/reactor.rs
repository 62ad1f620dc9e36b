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
//! The futures ([`sleep_until`], [`readable_until`], [`timeout_at`]) register on their
//! first pending poll only, keep their waker up to date (`will_wake`), and remove their
//! registration when they fire or are dropped, so the table holds exactly the waits in
//! progress: nothing leaks per wait, and uncontended acquisitions never touch this module.
//! No lock is held across an `.await`, and nothing here blocks the polling thread beyond a
//! short mutex section and, on Linux, one `epoll_ctl`.
//!
//! Failure to start the thread (or to create its epoll instance) is an `io::Error` for the
//! waiting call, never a panic; the next wait tries again.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// The state is consistent between statements, so a poisoned mutex is usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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

// ---------------------------------------------------------------------------------------
// Futures.

/// Completes at `deadline`. Output: `Err` only if the wait could not be set up.
pub(crate) fn sleep_until(deadline: Instant) -> Sleep {
    sleep_until_on(global, deadline)
}

fn sleep_until_on(reactor: fn() -> io::Result<&'static Reactor>, deadline: Instant) -> Sleep {
    Sleep {
        reactor,
        deadline,
        reg: None,
    }
}

/// See [`sleep_until`].
pub(crate) struct Sleep {
    reactor: fn() -> io::Result<&'static Reactor>,
    deadline: Instant,
    reg: Option<Registration>,
}

impl Future for Sleep {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if Instant::now() >= this.deadline {
            this.reg = None;
            return Poll::Ready(Ok(()));
        }
        match &this.reg {
            Some(reg) => {
                if !reg.still_pending(cx.waker()) {
                    this.reg = None;
                    return Poll::Ready(Ok(()));
                }
            }
            None => {
                let reg = (this.reactor)().and_then(|r| {
                    r.register(
                        Some(this.deadline),
                        Duration::ZERO,
                        #[cfg(target_os = "linux")]
                        None,
                        cx.waker(),
                    )
                });
                match reg {
                    Ok(reg) => this.reg = Some(reg),
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        Poll::Pending
    }
}

/// Completes when `fd` is readable or at `deadline` (up to `slack` later), whichever
/// comes first (the caller re-checks what it waits for either way). Output: `Err` only if
/// the wait could not be set up (e.g. `fd` cannot be polled, or is already registered).
#[cfg(target_os = "linux")]
pub(crate) fn readable_until(
    fd: BorrowedFd<'_>,
    deadline: Instant,
    slack: Duration,
) -> Readable<'_> {
    readable_until_on(global, fd, deadline, slack)
}

#[cfg(target_os = "linux")]
fn readable_until_on(
    reactor: fn() -> io::Result<&'static Reactor>,
    fd: BorrowedFd<'_>,
    deadline: Instant,
    slack: Duration,
) -> Readable<'_> {
    Readable {
        reactor,
        fd,
        deadline,
        slack,
        reg: None,
    }
}

/// See [`readable_until`]. Borrows the descriptor, so it stays open while registered.
#[cfg(target_os = "linux")]
pub(crate) struct Readable<'a> {
    reactor: fn() -> io::Result<&'static Reactor>,
    fd: BorrowedFd<'a>,
    deadline: Instant,
    slack: Duration,
    reg: Option<Registration>,
}

#[cfg(target_os = "linux")]
impl Future for Readable<'_> {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match &this.reg {
            Some(reg) => {
                if !reg.still_pending(cx.waker()) || Instant::now() >= this.deadline {
                    this.reg = None;
                    return Poll::Ready(Ok(()));
                }
            }
            None => {
                if Instant::now() >= this.deadline {
                    return Poll::Ready(Ok(()));
                }
                let fd = this.fd.as_raw_fd();
                let reg = (this.reactor)().and_then(|r| {
                    r.register(Some(this.deadline), this.slack, Some(fd), cx.waker())
                });
                match reg {
                    Ok(reg) => this.reg = Some(reg),
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        Poll::Pending
    }
}

/// Why a [`timeout_at`] future gave up.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The deadline passed first.
    Elapsed,
    /// The timer could not be set up.
    Failed(io::Error),
}

/// Runs `fut` until `deadline`. `fut` is polled first, so a result that is ready at the
/// deadline is still taken; on `Err` it is dropped (its own cancellation applies).
pub(crate) fn timeout_at<F: Future + Unpin>(deadline: Instant, fut: F) -> Timeout<F> {
    timeout_at_on(global, deadline, fut)
}

fn timeout_at_on<F: Future + Unpin>(
    reactor: fn() -> io::Result<&'static Reactor>,
    deadline: Instant,
    fut: F,
) -> Timeout<F> {
    Timeout {
        fut,
        sleep: sleep_until_on(reactor, deadline),
    }
}

/// See [`timeout_at`].
pub(crate) struct Timeout<F> {
    fut: F,
    sleep: Sleep,
}

impl<F: Future + Unpin> Future for Timeout<F> {
    type Output = Result<F::Output, Stop>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(v) = Pin::new(&mut this.fut).poll(cx) {
            this.sleep.reg = None;
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Err(Stop::Elapsed)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(Stop::Failed(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

// ---------------------------------------------------------------------------------------
// What the thread sleeps in.

#[cfg(target_os = "linux")]
use linux::Poller;

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::time::Duration;

    /// `epoll_event.u64` of the eventfd (registration ids start at 1 and count up).
    const NOTIFY: u64 = u64::MAX;
    /// Events taken per `epoll_wait`.
    const BATCH: usize = 64;

    /// An epoll instance plus an eventfd that interrupts its `epoll_wait`.
    pub(super) struct Poller {
        epfd: OwnedFd,
        evfd: OwnedFd,
    }

    fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    impl Poller {
        pub(super) fn new() -> io::Result<Poller> {
            // SAFETY: plain syscall without pointer arguments.
            let ep = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
            // SAFETY: `ep` is a fresh descriptor that nothing else owns.
            let epfd = unsafe { OwnedFd::from_raw_fd(ep) };
            // SAFETY: plain syscall without pointer arguments.
            let ev = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
            // SAFETY: `ev` is a fresh descriptor that nothing else owns.
            let evfd = unsafe { OwnedFd::from_raw_fd(ev) };
            let p = Poller { epfd, evfd };
            // Level-triggered: a notification that arrives before `epoll_wait` still
            // ends the next wait at once.
            p.ctl(
                libc::EPOLL_CTL_ADD,
                p.evfd.as_raw_fd(),
                libc::EPOLLIN as u32,
                NOTIFY,
            )?;
            Ok(p)
        }

        fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
            let mut ev = libc::epoll_event { events, u64: data };
            // SAFETY: `epfd` is our epoll instance and `ev` a valid event that lives across
            // the call (the kernel copies it; DEL ignores it but old kernels want it
            // non-null). An invalid `fd` is reported as an error, not undefined behaviour.
            check(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) })?;
            Ok(())
        }

        /// Watches `fd` for readability once; the event carries `id`.
        pub(super) fn add_oneshot(&self, fd: RawFd, id: u64) -> io::Result<()> {
            let events = (libc::EPOLLIN | libc::EPOLLONESHOT) as u32;
            self.ctl(libc::EPOLL_CTL_ADD, fd, events, id)
        }

        /// Stops watching `fd` (fired or not).
        pub(super) fn del(&self, fd: RawFd) {
            let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
        }

        /// Interrupts the thread's current or next `wait`.
        pub(super) fn notify(&self) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid `u64` to our eventfd. A full counter
            // (EAGAIN) means a notification is pending anyway.
            let _ = unsafe {
                libc::write(
                    self.evfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
        }

        /// Sleeps until an event, a notification or `timeout` (None: no limit); pushes the
        /// ids of ready registrations to `ready`.
        pub(super) fn wait(
            &self,
            timeout: Option<Duration>,
            ready: &mut Vec<u64>,
        ) -> io::Result<()> {
            let ms = match timeout {
                None => -1,
                // Rounded up, so a deadline less than a millisecond away is not a busy loop.
                Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
            };
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
            // SAFETY: `events` is valid for writes of `BATCH` entries, the count we pass.
            let n = unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    events.as_mut_ptr(),
                    BATCH as libc::c_int,
                    ms,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted {
                    Ok(())
                } else {
                    Err(e)
                };
            }
            for ev in &events[..n as usize] {
                // A copy: the struct is packed on some targets, so no reference to a field.
                let data = ev.u64;
                if data == NOTIFY {
                    let mut buf = 0u64;
                    // SAFETY: reads 8 bytes into a valid `u64`; the eventfd is
                    // non-blocking, so an already drained counter is just EAGAIN.
                    let _ = unsafe {
                        libc::read(
                            self.evfd.as_raw_fd(),
                            (&mut buf as *mut u64).cast(),
                            std::mem::size_of::<u64>(),
                        )
                    };
                } else {
                    ready.push(data);
                }
            }
            Ok(())
        }
    }
}

#[cfg(not(target_os = "linux"))]
use portable::Poller;

/// Timers only: a condition variable with a timed wait.
#[cfg(not(target_os = "linux"))]
mod portable {
    use std::io;
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    pub(super) struct Poller {
        notified: Mutex<bool>,
        cv: Condvar,
    }

    impl Poller {
        pub(super) fn new() -> io::Result<Poller> {
            Ok(Poller {
                notified: Mutex::new(false),
                cv: Condvar::new(),
            })
        }

        pub(super) fn notify(&self) {
            *super::lock(&self.notified) = true;
            self.cv.notify_one();
        }

        pub(super) fn wait(
            &self,
            timeout: Option<Duration>,
            _ready: &mut Vec<u64>,
        ) -> io::Result<()> {
            let mut n = super::lock(&self.notified);
            if !*n {
                n = match timeout {
                    None => self.cv.wait(n).unwrap_or_else(|e| e.into_inner()),
                    Some(t) => {
                        self.cv
                            .wait_timeout(n, t)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
            }
            *n = false;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A private reactor per test, so its table sizes are exactly this test's.
    macro_rules! private_reactor {
        () => {{
            static R: OnceLock<Arc<Reactor>> = OnceLock::new();
            fn get() -> io::Result<&'static Reactor> {
                Ok(R.get_or_init(|| Reactor::start("lock-core-reactor-test").unwrap()))
            }
            get
        }};
    }

    const ZERO: Counts = Counts {
        pending: 0,
        timers: 0,
        live: 0,
    };

    /// Counts wake-ups and unparks the thread that waits for them.
    struct Flag {
        woken: AtomicUsize,
        thread: std::thread::Thread,
    }

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.woken.fetch_add(1, Ordering::SeqCst);
            self.thread.unpark();
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag {
            woken: AtomicUsize::new(0),
            thread: std::thread::current(),
        });
        (f.clone(), Waker::from(f))
    }

    /// A minimal executor: polls on this thread, parks in between (bounded).
    fn block_on<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let (_, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            assert!(Instant::now() < give_up, "future never completed");
            std::thread::park_timeout(Duration::from_secs(1));
        }
    }

    fn until_zero(get: fn() -> io::Result<&'static Reactor>) {
        assert_eq!(get().unwrap().counts(), ZERO);
    }

    #[test]
    fn sleep_fires_at_its_deadline_and_leaves_nothing() {
        let get = private_reactor!();
        let t = Instant::now();
        block_on(sleep_until_on(get, t + Duration::from_millis(30))).unwrap();
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        until_zero(get);
        // A deadline already passed completes without registering.
        block_on(sleep_until_on(get, Instant::now())).unwrap();
        until_zero(get);
    }

    #[test]
    fn an_earlier_deadline_interrupts_a_longer_sleep() {
        let get = private_reactor!();
        // The thread sleeps towards a far deadline...
        let (_, w) = flag();
        let mut far = Box::pin(sleep_until_on(
            get,
            Instant::now() + Duration::from_secs(60),
        ));
        assert!(far.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
        // ... and a near one (registered later, so it must notify the thread) still fires
        // on time.
        let t = Instant::now();
        block_on(sleep_until_on(get, t + Duration::from_millis(20))).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(
            get().unwrap().counts(),
            Counts {
                pending: 1,
                timers: 1,
                live: 1
            }
        );
        drop(far);
        until_zero(get);
    }

    #[test]
    fn the_latest_waker_is_woken() {
        let get = private_reactor!();
        let (first, w1) = flag();
        let (second, w2) = flag();
        let mut s = Box::pin(sleep_until_on(
            get,
            Instant::now() + Duration::from_millis(20),
        ));
        assert!(s.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        assert!(s.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
        let give_up = Instant::now() + Duration::from_secs(10);
        while second.woken.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < give_up);
            std::thread::park_timeout(Duration::from_millis(100));
        }
        assert_eq!(first.woken.load(Ordering::SeqCst), 0);
        assert!(s.as_mut().poll(&mut Context::from_waker(&w2)).is_ready());
        until_zero(get);
    }

    #[test]
    fn a_thousand_cancelled_waits_leave_the_table_empty() {
        let get = private_reactor!();
        let (_, w) = flag();
        let mut cx = Context::from_waker(&w);
        for i in 0..1000u64 {
            let far = Instant::now() + Duration::from_secs(60 + i);
            let mut s = Box::pin(sleep_until_on(get, far));
            assert!(s.as_mut().poll(&mut cx).is_pending());
            assert_eq!(get().unwrap().counts().live, 1);
        }
        until_zero(get);
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsFd;
            let (reader, _writer) = std::io::pipe().unwrap();
            for i in 0..1000u64 {
                let far = Instant::now() + Duration::from_secs(60 + i);
                let mut r = Box::pin(readable_until_on(get, reader.as_fd(), far, Duration::ZERO));
                assert!(r.as_mut().poll(&mut cx).is_pending());
                assert_eq!(get().unwrap().counts().live, 1);
                // Dropped registered: the next ADD of the same descriptor succeeds only
                // because this drop took it out of the epoll set.
            }
            until_zero(get);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_deadline_with_slack_waits_for_the_tick_instead_of_notifying() {
        use std::os::fd::AsFd;
        let get = private_reactor!();
        let (reader, _writer) = std::io::pipe().unwrap();
        // The thread starts out asleep for ever: the first deadline has to notify it.
        let (n0, idle) = get().unwrap().notified_and_idle();
        assert_eq!((n0, idle), (0, true));
        // A caller's own deadline is kept exactly, so while the thread is ticking a precise
        // sleep still notifies it whenever it is due before the next tick; a safety-net
        // deadline never does. A stall longer than the linger between two statements ends
        // the ticking, hence a few tries; a reactor that notifies for every deadline fails
        // them all.
        let mut quiet = false;
        for _ in 0..5 {
            block_on(sleep_until_on(
                get,
                Instant::now() + Duration::from_millis(1),
            ))
            .unwrap();
            let (before, _) = get().unwrap().notified_and_idle();
            let t = Instant::now();
            let net = t + Duration::from_millis(1);
            block_on(readable_until_on(get, reader.as_fd(), net, TICK)).unwrap();
            // Never early, and (bounded) not lost.
            assert!(Instant::now() >= net);
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
            let (after, _) = get().unwrap().notified_and_idle();
            if after == before {
                quiet = true;
                break;
            }
        }
        assert!(quiet, "every safety-net deadline interrupted the thread");
        until_zero(get);
    }

    #[test]
    fn the_thread_stops_ticking_after_the_linger() {
        let get = private_reactor!();
        block_on(sleep_until_on(
            get,
            Instant::now() + Duration::from_millis(1),
        ))
        .unwrap();
        until_zero(get);
        // Ticking now; idle again (no periodic wake-ups) once the linger has passed.
        let give_up = Instant::now() + LINGER + Duration::from_secs(10);
        while !get().unwrap().notified_and_idle().1 {
            assert!(Instant::now() < give_up, "the thread kept ticking");
            std::thread::sleep(TICK);
        }
    }

    #[test]
    fn timeout_takes_a_ready_result_and_elapses_otherwise() {
        let t = Instant::now();
        let r = block_on(timeout_at(
            t + Duration::from_millis(20),
            std::future::pending::<()>(),
        ));
        assert!(matches!(r, Err(Stop::Elapsed)), "{r:?}");
        assert!(t.elapsed() >= Duration::from_millis(20));
        let r = block_on(timeout_at(Instant::now(), std::future::ready(7)));
        assert_eq!(r.unwrap(), 7);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn readable_fires_on_data_and_on_deadline() {
        use std::io::{Read, Write};
        use std::os::fd::AsFd;
        let get = private_reactor!();
        let (mut reader, mut writer) = std::io::pipe().unwrap();
        // Deadline first: nothing written.
        let t = Instant::now();
        block_on(readable_until_on(
            get,
            reader.as_fd(),
            t + Duration::from_millis(30),
            Duration::ZERO,
        ))
        .unwrap();
        assert!(t.elapsed() >= Duration::from_millis(30));
        until_zero(get);
        // Data from another thread wakes a far-deadline wait.
        let writer_thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            writer.write_all(b"x").unwrap();
            writer
        });
        let t = Instant::now();
        block_on(readable_until_on(
            get,
            reader.as_fd(),
            t + Duration::from_secs(60),
            Duration::ZERO,
        ))
        .unwrap();
        assert!(t.elapsed() < Duration::from_secs(10));
        let mut writer = writer_thread.join().unwrap();
        until_zero(get);
        // Already readable: the registration fires at once (epoll reports it on ADD).
        writer.write_all(b"y").unwrap();
        block_on(readable_until_on(
            get,
            reader.as_fd(),
            Instant::now() + Duration::from_secs(60),
            Duration::ZERO,
        ))
        .unwrap();
        let mut buf = [0u8; 2];
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"xy");
        until_zero(get);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_descriptor_that_cannot_be_registered_is_an_error_without_a_leak() {
        use std::os::fd::AsFd;
        let get = private_reactor!();
        let (_, w) = flag();
        let mut cx = Context::from_waker(&w);
        let (reader, _writer) = std::io::pipe().unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        let mut first = Box::pin(readable_until_on(get, reader.as_fd(), far, Duration::ZERO));
        assert!(first.as_mut().poll(&mut cx).is_pending());
        // The same descriptor twice: EEXIST.
        let mut second = Box::pin(readable_until_on(get, reader.as_fd(), far, Duration::ZERO));
        match second.as_mut().poll(&mut cx) {
            Poll::Ready(Err(e)) => assert_eq!(e.raw_os_error(), Some(libc::EEXIST)),
            other => panic!("{other:?}"),
        }
        assert_eq!(get().unwrap().counts().live, 1);
        // A regular file cannot be polled with epoll: EPERM.
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let mut third = Box::pin(readable_until_on(get, file.as_fd(), far, Duration::ZERO));
        assert!(matches!(third.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
        drop((first, second, third));
        until_zero(get);
    }

    #[test]
    fn a_reactor_that_cannot_start_is_an_error_not_a_panic() {
        fn unavailable() -> io::Result<&'static Reactor> {
            Err(io::Error::other("no threads left"))
        }
        let (_, w) = flag();
        let mut cx = Context::from_waker(&w);
        let far = Instant::now() + Duration::from_secs(60);
        let mut s = Box::pin(sleep_until_on(unavailable, far));
        assert!(matches!(s.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
        let mut t = Box::pin(timeout_at_on(
            unavailable,
            far,
            std::future::pending::<()>(),
        ));
        assert!(matches!(
            t.as_mut().poll(&mut cx),
            Poll::Ready(Err(Stop::Failed(_)))
        ));
        // A ready result needs no timer at all.
        let mut t = Box::pin(timeout_at_on(unavailable, far, std::future::ready(1)));
        assert!(matches!(t.as_mut().poll(&mut cx), Poll::Ready(Ok(1))));
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsFd;
            let (reader, _writer) = std::io::pipe().unwrap();
            let mut r = Box::pin(readable_until_on(
                unavailable,
                reader.as_fd(),
                far,
                Duration::ZERO,
            ));
            assert!(matches!(r.as_mut().poll(&mut cx), Poll::Ready(Err(_))));
        }
        let e = wait_failed("n", io::Error::other("no threads left"));
        assert_eq!(e.code(), 8401);
        assert!(e.to_string().contains("no threads left"), "{e}");
    }

    #[test]
    fn a_panicking_waker_does_not_stop_the_thread() {
        struct Boom;
        impl Wake for Boom {
            fn wake(self: Arc<Self>) {
                panic!("waker panics");
            }
        }
        let get = private_reactor!();
        let boom = Waker::from(Arc::new(Boom));
        let mut s = Box::pin(sleep_until_on(
            get,
            Instant::now() + Duration::from_millis(5),
        ));
        assert!(s
            .as_mut()
            .poll(&mut Context::from_waker(&boom))
            .is_pending());
        // The thread survives and serves the next timer.
        let t = Instant::now();
        block_on(sleep_until_on(get, t + Duration::from_millis(30))).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(s);
        until_zero(get);
    }
}
