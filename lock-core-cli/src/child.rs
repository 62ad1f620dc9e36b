//! CMD: spawning it, passing signals on, stopping it when the lease is lost, and turning
//! its end into `lock-core`'s exit status.

use std::ffi::OsString;
use std::future::Future;
use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use lock_core::LockError;
use tokio::process::{Child, Command};

use crate::exit::{self, Failure};
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

/// Starts CMD with inherited standard streams and `env` added.
///
/// On Linux CMD also gets SIGTERM if `lock-core` itself dies (say, of SIGKILL) while CMD
/// runs: the lock is gone with `lock-core`, so CMD must not go on believing it holds it.
pub fn spawn(
    command: &[OsString],
    env: &[(&str, String)],
    unset: &[&str],
) -> Result<Child, Failure> {
    let Some((program, args)) = command.split_first() else {
        return Err(Failure::new(exit::USAGE, "no command given after `--`"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe calls (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl: do not run unprotected.
                if u32::try_from(libc::getppid()).ok() != Some(parent) {
                    return Err(std::io::Error::other("lock-core exited before CMD started"));
                }
                Ok(())
            });
        }
    }
    cmd.spawn().map_err(|e| {
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
    })
}

/// Waits for CMD to end, passing on the signals that `lock-core` receives from other
/// processes. If `lost` completes first, CMD gets SIGTERM, then SIGKILL after `grace`.
pub async fn supervise(
    mut child: Child,
    signals: &mut Signals,
    mut lost: Lost,
    grace: Duration,
) -> Result<End, Failure> {
    loop {
        tokio::select! {
            status = child.wait() => return Ok(End::Exited(status_of(status?))),
            caught = signals.recv() => forward(&child, caught),
            why = &mut lost => return stop(child, signals, why, grace).await,
        }
    }
}

fn forward(child: &Child, caught: signals::Caught) {
    // A signal the terminal sent to the whole process group reached CMD already.
    if caught.to_group {
        return;
    }
    if let Some(pid) = child.id() {
        signals::send(pid, caught.signo);
    }
}

async fn stop(
    mut child: Child,
    signals: &mut Signals,
    why: LockError,
    grace: Duration,
) -> Result<End, Failure> {
    let pid = child
        .id()
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    crate::say(format!(
        "lock-core: {why}; stopping CMD{pid}: SIGTERM now, SIGKILL in {:.1} s",
        grace.as_secs_f64()
    ))
    .await;
    if let Some(p) = child.id() {
        signals::send(p, libc::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    let ended = loop {
        tokio::select! {
            status = child.wait() => break Some(status?),
            caught = signals.recv() => forward(&child, caught),
            () = tokio::time::sleep_until(deadline) => break None,
        }
    };
    let how = match ended {
        Some(status) => format!("CMD stopped ({})", describe(status)),
        None => {
            let _ = child.start_kill();
            let status = child.wait().await?;
            format!(
                "CMD did not stop within {:.1} s of SIGTERM and was killed ({})",
                grace.as_secs_f64(),
                describe(status)
            )
        }
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

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by {}", signals::name(s)),
        _ => "ended".to_owned(),
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::new(exit::OSERR, format!("waiting for CMD failed: {e}"))
    }
}
