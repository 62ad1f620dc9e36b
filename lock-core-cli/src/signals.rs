//! The signals `lock-core run` catches (to forward them to CMD's process group, or to
//! stop waiting).
//!
//! A plain `sigaction` handler writes each signal's number into a pipe
//! (async-signal-safe); a thread of its own reads the pipe and hands the signals to the
//! async code over a channel. Every caught signal is passed on to CMD's whole group:
//! CMD never shares `lock-core`'s group (see `group`), so nothing reaches it twice — on
//! a terminal, Ctrl-C goes straight to CMD's group, which has the terminal, and not to
//! `lock-core` at all.
//!
//! Exec resets caught signals to their defaults, so CMD starts with the usual
//! dispositions (and the Rust runtime resets SIGPIPE and the signal mask for it).

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::sync::mpsc;

/// The signals caught: the ones that stop a process by default and that a supervisor is
/// expected to pass on.
pub const CAUGHT: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The write end of the pipe, for the handler (-1 before installation).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

/// One caught signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caught {
    /// The signal's number.
    pub signo: libc::c_int,
}

/// The caught signals, in arrival order.
pub struct Signals {
    rx: mpsc::UnboundedReceiver<Caught>,
}

impl Signals {
    /// Installs the handlers (once per process) and starts the reading thread.
    pub fn install() -> std::io::Result<Signals> {
        // No thread forks meanwhile (the runtime spawns CMD later), so making the
        // ends close-on-exec right after creating them leaves no window.
        let [read_fd, write_fd] = cloexec_pipe()?;
        // The handler must never block: a full pipe drops the signal instead.
        // SAFETY: `write_fd` is the pipe's write end, just made.
        unsafe {
            let flags = libc::fcntl(write_fd, libc::F_GETFL);
            libc::fcntl(write_fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        PIPE_WRITE.store(write_fd, Ordering::SeqCst);
        let (tx, rx) = mpsc::unbounded_channel();
        // SAFETY: `read_fd` is the pipe's read end, owned by nobody else from here on.
        let mut reader = unsafe { File::from_raw_fd(read_fd) };
        std::thread::Builder::new()
            .name("lock-core-signals".into())
            .spawn(move || {
                let mut buf = [0u8; 4];
                while reader.read_exact(&mut buf).is_ok() {
                    let signo = libc::c_int::from_ne_bytes(buf);
                    if tx.send(Caught { signo }).is_err() {
                        break;
                    }
                }
            })?;
        for &sig in &CAUGHT {
            // SAFETY: a zeroed sigaction is a valid starting point; the handler only
            // calls async-signal-safe functions (write) and restores errno.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(Signals { rx })
    }

    /// The next caught signal (never completes if the reading thread is gone).
    pub async fn recv(&mut self) -> Caught {
        match self.rx.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        }
    }
}

extern "C" fn on_signal(signo: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: only async-signal-safe calls.
    unsafe {
        let errno_at = errno_location();
        let errno = if errno_at.is_null() { 0 } else { *errno_at };
        let buf = signo.to_ne_bytes();
        let fd = PIPE_WRITE.load(Ordering::Relaxed);
        if fd >= 0 {
            libc::write(fd, buf.as_ptr().cast(), buf.len());
        }
        if !errno_at.is_null() {
            *errno_at = errno;
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno slot; no preconditions.
    unsafe { libc::__errno_location() }
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
fn errno_location() -> *mut libc::c_int {
    // SAFETY: returns the calling thread's errno slot; no preconditions.
    unsafe { libc::__error() }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd"
)))]
fn errno_location() -> *mut libc::c_int {
    std::ptr::null_mut()
}

/// A pipe whose ends are closed on exec: `[read, write]`.
fn cloexec_pipe() -> std::io::Result<[libc::c_int; 2]> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe to fill; fcntl on the new fds.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for fd in fds {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    Ok(fds)
}

/// The signal's name, for messages: "SIGTERM".
pub fn name(signo: libc::c_int) -> String {
    let known = [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGKILL, "SIGKILL"),
    ];
    known
        .iter()
        .find(|(n, _)| *n == signo)
        .map(|(_, s)| (*s).to_owned())
        .unwrap_or_else(|| format!("signal {signo}"))
}
