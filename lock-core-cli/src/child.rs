//! CMD and everything it starts, as one job: spawning it in a process group of its own,
//! passing signals on to the whole group, stopping the group when the lease is lost, and
//! turning CMD's end into `lock-core`'s exit status.

use std::ffi::OsString;
use std::future::Future;
use std::io::ErrorKind;
use std::os::fd::RawFd;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use lock_core::LockError;
use tokio::process::{Child, Command};

use crate::exit::{self, Failure};
use crate::group::{self, Terminal};
use crate::signals::{self, Signals};

/// A future that completes when the lock is lost (never, for file locks).
pub type Lost = Pin<Box<dyn Future<Output = LockError> + Send>>;

/// How CMD ended.
pub enum End {
    /// It exited (or died of a signal) by itself: `lock-core` exits with this status.
    Exited(u8),
    /// The lease was lost; CMD was stopped. The message says why and how.
    Stopped(String),
}

/// How CMD is started.
pub struct Spawn<'a> {
    /// Variables added to CMD's environment.
    pub env: &'a [(&'a str, String)],
    /// Variables removed from it.
    pub unset: &'a [&'a str],
    /// A lock file descriptor CMD inherits, so that its whole tree holds the file lock
    /// (as `flock(1)` does): the lock stays held while any of them has it open, even if
    /// `lock-core` dies.
    pub inherit: Option<RawFd>,
    /// The guardian's pipe, to which CMD reports its group before it execs (leases).
    pub guardian: Option<RawFd>,
}

/// CMD, running in a process group of its own.
pub struct Job {
    child: Child,
    /// CMD's process group (its pid).
    pub pgid: i32,
    /// The terminal CMD's group has in the foreground, to take back when CMD ends.
    terminal: Option<Terminal>,
    /// CMD's exit status, once collected.
    exited: Option<u8>,
}

impl Job {
    fn take_back_terminal(&mut self) {
        if let Some(t) = self.terminal.take() {
            t.take_back();
        }
    }

    /// Waits for CMD itself; its status is kept (a second call returns it at once).
    async fn wait_cmd(&mut self) -> Result<u8, Failure> {
        if let Some(code) = self.exited {
            return Ok(code);
        }
        let code = status_of(self.child.wait().await?);
        self.exited = Some(code);
        self.take_back_terminal();
        Ok(code)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.take_back_terminal();
    }
}

/// Starts CMD with inherited standard streams, in a process group of its own (with the
/// terminal, if `lock-core` has it in the foreground).
pub fn spawn(command: &[OsString], how: &Spawn<'_>) -> Result<Job, Failure> {
    let Some((program, args)) = command.split_first() else {
        return Err(Failure::new(exit::USAGE, "no command given after `--`"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    for (k, v) in how.env {
        cmd.env(k, v);
    }
    for k in how.unset {
        cmd.env_remove(k);
    }
    let terminal = Terminal::foreground();
    let (inherit, guardian) = (how.inherit, how.guardian);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // calls (setpgid, sigprocmask, tcsetpgrp, fcntl, getpid, write).
    unsafe {
        cmd.pre_exec(move || {
            group::enter_own_group(terminal.is_some())?;
            if let Some(fd) = inherit {
                // The descriptor is close-on-exec in `lock-core`; CMD keeps it.
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(fd) = guardian {
                crate::guardian::report_group(fd)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        let shown = program.to_string_lossy();
        let code = match e.kind() {
            ErrorKind::NotFound => exit::NOT_FOUND,
            ErrorKind::PermissionDenied => exit::NOT_EXECUTABLE,
            _ if e.raw_os_error() == Some(libc::ENOEXEC)
                || e.raw_os_error() == Some(libc::EISDIR) =>
            {
                exit::NOT_EXECUTABLE
            }
            _ => exit::OSERR,
        };
        let what = match code {
            exit::NOT_FOUND => "command not found",
            exit::NOT_EXECUTABLE => "cannot execute",
            _ => "cannot start",
        };
        Failure::new(code, format!("{what}: `{shown}`: {e}"))
    })?;
    let pgid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| Failure::new(exit::OSERR, "CMD has no process id"))?;
    Ok(Job {
        child,
        pgid,
        terminal,
        exited: None,
    })
}

/// When `supervise` returns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// As soon as CMD itself has exited (file locks: what CMD started keeps the
    /// inherited lock).
    CmdExits,
    /// Once no process of CMD's group is left (leases: the lease is held for all of them).
    GroupEmpty,
}

/// Waits for the job to end, passing every signal that `lock-core` receives on to CMD's
/// whole group. If `lost` completes first, the group gets SIGTERM, then SIGKILL after
/// `grace`, and this returns once none of it is left.
pub async fn supervise(
    job: &mut Job,
    signals: &mut Signals,
    mut lost: Lost,
    grace: Duration,
    until: Until,
) -> Result<End, Failure> {
    enum Event {
        Exited(Result<u8, Failure>),
        Tick,
        Signal(signals::Caught),
        Lost(LockError),
    }
    let mut told = false;
    let pgid = job.pgid;
    loop {
        let running = job.exited.is_none();
        let event = tokio::select! {
            code = job.wait_cmd(), if running => Event::Exited(code),
            () = tokio::time::sleep(GROUP_POLL), if !running => Event::Tick,
            caught = signals.recv() => Event::Signal(caught),
            why = &mut lost => Event::Lost(why),
        };
        match event {
            Event::Exited(code) => {
                let code = code?;
                if until == Until::CmdExits || group::gone(pgid) {
                    return Ok(End::Exited(code));
                }
            }
            Event::Tick => {
                if group::gone(pgid) {
                    return Ok(End::Exited(job.exited.unwrap_or(exit::SOFTWARE)));
                }
                if !told {
                    told = true;
                    crate::say(format!(
                        "lock-core: CMD exited; the lock stays held until the rest of its \
                         process group ends (pids {})",
                        list(&group::members(pgid))
                    ))
                    .await;
                }
            }
            Event::Signal(caught) => {
                group::signal(pgid, caught.signo);
            }
            Event::Lost(why) => return stop(job, signals, why, grace).await,
        }
    }
}

/// How often a job whose CMD has exited is checked for the rest of its group.
const GROUP_POLL: Duration = Duration::from_millis(20);

fn list(pids: &[i32]) -> String {
    let shown: Vec<String> = pids.iter().take(8).map(i32::to_string).collect();
    let more = pids.len().saturating_sub(8);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

async fn stop(
    job: &mut Job,
    signals: &mut Signals,
    why: LockError,
    grace: Duration,
) -> Result<End, Failure> {
    let pgid = job.pgid;
    crate::say(format!(
        "lock-core: {why}; stopping CMD's process group {pgid}: SIGTERM now, SIGKILL in {:.1} s",
        grace.as_secs_f64()
    ))
    .await;
    group::signal(pgid, libc::SIGTERM);
    // Stopped processes would never see the SIGTERM.
    group::signal(pgid, libc::SIGCONT);
    let deadline = tokio::time::Instant::now() + grace;
    let mut killed = false;
    loop {
        let running = job.exited.is_none();
        tokio::select! {
            code = job.wait_cmd(), if running => { code?; }
            () = tokio::time::sleep(GROUP_POLL) => {}
            caught = signals.recv() => { group::signal(pgid, caught.signo); }
            () = tokio::time::sleep_until(deadline), if !killed => {
                killed = true;
                group::signal(pgid, libc::SIGKILL);
            }
        }
        if job.exited.is_some() && group::gone(pgid) {
            break;
        }
    }
    let how = if killed {
        format!(
            "CMD's process group did not stop within {:.1} s of SIGTERM and was killed",
            grace.as_secs_f64()
        )
    } else {
        "CMD's process group stopped".to_owned()
    };
    Ok(End::Stopped(format!(
        "the lease on `{}` was lost; {how}",
        why.name()
    )))
}

/// CMD's status as `lock-core`'s: its exit code, or 128 + N if signal N killed it.
pub fn status_of(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return (code & 0xff) as u8;
    }
    match status.signal() {
        Some(sig) => exit::SIGNAL_BASE.saturating_add(u8::try_from(sig).unwrap_or(127)),
        None => exit::SOFTWARE,
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::new(exit::OSERR, format!("waiting for CMD failed: {e}"))
    }
}
