//! Linux: an epoll instance plus an eventfd that interrupts it.

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
    pub(super) fn wait(&self, timeout: Option<Duration>, ready: &mut Vec<u64>) -> io::Result<()> {
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
