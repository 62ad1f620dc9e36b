//! The guardian of a lease-holding job: a tiny process that stops CMD's whole group if
//! `lock-core` dies while CMD runs, so that no process of the job outlives the lease.
//!
//! A lease is renewed by `lock-core`; once `lock-core` is gone (SIGKILL, the OOM
//! killer), the lease expires within its TTL and another host may take it. Whatever of
//! CMD still runs then would run beside the new holder. `PR_SET_PDEATHSIG` alone does not
//! prevent that: it signals CMD only (not what CMD started), can be caught, and fires when
//! the *thread* that spawned CMD ends.
//!
//! So before CMD starts, `lock-core` forks the guardian, in a process group of its own
//! (a kill of `lock-core`'s group or of CMD's group does not take it along), ignoring the
//! signals a terminal or a supervisor sends. It learns CMD's group from CMD itself —
//! written into a pipe between `fork` and `exec`, so before CMD can start anything —
//! and then waits on a second pipe whose write end only `lock-core` holds:
//!
//! * a byte `x` followed by end-of-file: `lock-core` ended normally (the job's group is
//!   empty, or it stopped it itself); the guardian exits;
//! * end-of-file alone: `lock-core` died. The guardian sends SIGTERM (and SIGCONT) to
//!   CMD's group, waits up to the grace — at most a third of the lease, so that it
//!   finishes while the last renewal still covers the lease — and then SIGKILLs the
//!   group.
//!
//! The guardian is a `fork` of a multi-threaded process: it runs only async-signal-safe
//! calls (read, kill, nanosleep, close, signal, `_exit`) and allocates nothing.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// The running guardian, from `lock-core`'s side.
pub struct Guardian {
    pid: libc::pid_t,
    /// Closing this without writing `x` first tells the guardian that we died.
    life: Option<OwnedFd>,
    /// CMD writes its pid here between fork and exec (close-on-exec).
    group: Option<OwnedFd>,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array for pipe to fill. No other thread forks while
    // `lock-core run` sets up (CMD is spawned later), so close-on-exec right after is
    // soon enough.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in fds {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Guardian {
    /// Starts the guardian; it stops CMD's group within `grace` of `lock-core`'s death.
    pub fn start(grace: Duration) -> io::Result<Guardian> {
        let (life_r, life_w) = pipe()?;
        let (group_r, group_w) = pipe()?;
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let keep = [life_r.as_raw_fd(), group_r.as_raw_fd()];
        let drop_in_child = [life_w.as_raw_fd(), group_w.as_raw_fd()];
        // SAFETY: fork duplicates this process; the child runs `guard`, which only makes
        // async-signal-safe calls and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: in the fresh child; see `guard`.
            unsafe { guard(keep, drop_in_child, grace_ms) }
        }
        drop((life_r, group_r));
        Ok(Guardian {
            pid,
            life: Some(life_w),
            group: Some(group_w),
        })
    }

    /// The descriptor CMD writes its pid into (between fork and exec).
    pub fn group_fd(&self) -> Option<RawFd> {
        self.group.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// After CMD was spawned (or failed to): our copy of the pid pipe is closed, so the
    /// guardian reads end-of-file there if CMD never wrote.
    pub fn spawned(&mut self) {
        self.group = None;
    }

    /// The job is over: tells the guardian to exit quietly, and reaps it.
    pub fn dismiss(mut self) {
        self.group = None;
        if let Some(life) = self.life.take() {
            // SAFETY: writes one byte from a local buffer to our pipe.
            unsafe { libc::write(life.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; the status goes into a local.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// Between fork and exec of CMD: sends CMD's pid (its group) to the guardian.
/// Async-signal-safe.
pub fn report_group(fd: RawFd) -> io::Result<()> {
    // SAFETY: getpid and write of a local buffer.
    unsafe {
        let pid = libc::getpid().to_ne_bytes();
        if libc::write(fd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes; false at end-of-file or on an error.
///
/// # Safety
/// `fd` must be open; async-signal-safe.
unsafe fn read_full(fd: RawFd, buf: &mut [u8]) -> bool {
    let mut at = 0;
    while at < buf.len() {
        let n = libc::read(fd, buf[at..].as_mut_ptr().cast(), buf.len() - at);
        if n > 0 {
            at += n as usize;
        } else if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else {
            return false;
        }
    }
    true
}

/// The guardian's whole life. Never returns.
///
/// # Safety
/// Only in the child of `fork`: makes only async-signal-safe calls and allocates nothing.
unsafe fn guard(keep: [RawFd; 2], drop: [RawFd; 2], grace_ms: i64) -> ! {
    let [life, group] = keep;
    for fd in drop {
        libc::close(fd);
    }
    // Out of `lock-core`'s group, deaf to the signals meant for the job.
    libc::setpgid(0, 0);
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        libc::signal(sig, libc::SIG_IGN);
    }
    // Everything else we inherited (lock files, store connections, the terminal) is
    // not ours to keep open.
    for fd in 0..1024 {
        if fd != life && fd != group {
            libc::close(fd);
        }
    }
    let mut pid = [0u8; 4];
    if !read_full(group, &mut pid) {
        libc::_exit(0); // CMD never started
    }
    let pgid = libc::pid_t::from_ne_bytes(pid);
    let mut byte = [0u8; 1];
    if read_full(life, &mut byte) && byte[0] == b'x' {
        libc::_exit(0); // `lock-core` ended normally
    }
    // `lock-core` died while the job may still run.
    libc::kill(-pgid, libc::SIGTERM);
    libc::kill(-pgid, libc::SIGCONT);
    let step = libc::timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    };
    let mut waited = 0i64;
    while waited < grace_ms && libc::kill(-pgid, 0) == 0 {
        libc::nanosleep(&step, std::ptr::null_mut());
        waited += 20;
    }
    libc::kill(-pgid, libc::SIGKILL);
    libc::_exit(0)
}
