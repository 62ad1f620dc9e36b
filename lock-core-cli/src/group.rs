//! CMD's process group: the unit that `lock-core run` signals, waits for and stops.
//!
//! CMD starts in a process group of its own (its pid is the group id), so everything it
//! starts — unless it leaves the group on purpose with `setsid`/`setpgid` — can be
//! signalled at once and counted. On a terminal that `lock-core` has in the foreground,
//! the terminal is handed to CMD's group for as long as CMD runs, so Ctrl-C, Ctrl-\ and
//! keyboard input reach CMD's processes directly (once) and full-screen programs work;
//! `lock-core` takes the terminal back when CMD has ended.
//!
//! On Linux `lock-core` is a child subreaper: processes of the group orphaned by CMD's
//! exit become its children, so it can reap them and tell when none is left, even where
//! pid 1 does not reap.

use std::io;

/// Makes this process the reaper of its descendants' orphans (Linux; a no-op elsewhere).
pub fn become_subreaper() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes a plain integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
}

/// Sends `signo` to every process of group `pgid`; false if the group is empty.
pub fn signal(pgid: i32, signo: libc::c_int) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: kill has no memory-safety preconditions; a negative pid names a group.
    unsafe { libc::kill(-pgid, signo) == 0 }
}

/// True once group `pgid` has no process left. Reaps the group's processes that ended
/// and are this process's children (orphans handed to the subreaper, and CMD itself):
/// call it only after CMD's own status was collected, or CMD's exit status is lost.
pub fn gone(pgid: i32) -> bool {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a local integer.
        let reaped = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
        if reaped <= 0 {
            break;
        }
    }
    if signal(pgid, 0) {
        return false;
    }
    io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
}

/// The pids of group `pgid`'s live processes (Linux, from `/proc`; empty elsewhere), for
/// messages.
pub fn members(pgid: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    #[cfg(target_os = "linux")]
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state, ppid, pgrp, ...
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            let mut f = rest.split_whitespace();
            let state = f.next().unwrap_or("");
            let pgrp = f.nth(1).and_then(|s| s.parse::<i32>().ok());
            if pgrp == Some(pgid) && state != "Z" && state != "X" {
                pids.push(pid);
            }
        }
    }
    pids.sort_unstable();
    pids
}

/// The terminal on standard input, if `lock-core` has it in the foreground: CMD's group
/// then gets it while CMD runs.
#[derive(Clone, Copy)]
pub struct Terminal {
    ours: libc::pid_t,
}

impl Terminal {
    /// The terminal, if standard input is one and this process's group is its
    /// foreground group.
    pub fn foreground() -> Option<Terminal> {
        // SAFETY: isatty, tcgetpgrp and getpgrp only read process and descriptor state.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let ours = libc::getpgrp();
            (libc::tcgetpgrp(0) == ours).then_some(Terminal { ours })
        }
    }

    /// Gives the terminal back to `lock-core`'s group (after CMD has ended). Called from
    /// a background group, so SIGTTOU is blocked in this thread meanwhile.
    pub fn take_back(self) {
        // SAFETY: the signal sets are local; tcsetpgrp on descriptor 0 with a group of
        // this session; the old mask is restored.
        unsafe {
            let mut block: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, libc::SIGTTOU);
            libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
            libc::tcsetpgrp(0, self.ours);
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
    }
}

/// Between `fork` and `exec` of CMD: puts the child in a group of its own and, with a
/// foreground `terminal`, makes that group the terminal's foreground group.
///
/// Only async-signal-safe calls (setpgid, sigprocmask, tcsetpgrp, getpid).
pub fn enter_own_group(terminal: bool) -> io::Result<()> {
    // SAFETY: plain system calls on this (single-threaded, just forked) process; the
    // signal sets are local and the mask is restored before returning.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if terminal {
            // A background group that sets the foreground group gets SIGTTOU unless it
            // blocks it.
            let mut block: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut block);
            libc::sigaddset(&mut block, libc::SIGTTOU);
            libc::sigprocmask(libc::SIG_BLOCK, &block, &mut old);
            let rc = libc::tcsetpgrp(0, libc::getpid());
            let err = io::Error::last_os_error();
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if rc != 0 {
                return Err(err);
            }
        }
    }
    Ok(())
}
