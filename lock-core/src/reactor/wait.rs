//! The futures that wait on the reactor: sleeps, descriptor readiness, timeouts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{global, Reactor, Registration};

/// Completes at `deadline`. Output: `Err` only if the wait could not be set up.
pub(crate) fn sleep_until(deadline: Instant) -> Sleep {
    sleep_until_on(global, deadline)
}

pub(super) fn sleep_until_on(
    reactor: fn() -> io::Result<&'static Reactor>,
    deadline: Instant,
) -> Sleep {
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
pub(super) fn readable_until_on(
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
