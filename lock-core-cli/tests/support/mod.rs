//! Shared harness of the end-to-end tests: the `lock-core` binary run as a real process,
//! with every wait bounded (a regression fails in seconds instead of hanging).
//!
//! Output goes to files in the test's own directory rather than pipes, so that a
//! grandchild left running can never keep a test waiting for end-of-file.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest any single step may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lock-core")
}

pub fn pg_url() -> String {
    std::env::var("LOCK_CORE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The DynamoDB-compatible test server (moto from `scripts/services.sh`): loopback only.
pub fn dynamo_endpoint() -> String {
    let e = std::env::var("LOCK_CORE_DYNAMODB_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:5005".to_owned());
    assert!(
        e.starts_with("http://127.0.0.1:") || e.starts_with("http://localhost:"),
        "LOCK_CORE_DYNAMODB_ENDPOINT must be a loopback http:// endpoint, got {e}"
    );
    e
}

pub fn redis_url() -> String {
    std::env::var("LOCK_CORE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A lock name no other test (or earlier run) uses.
pub fn unique(tag: &str) -> String {
    format!(
        "cli-test/{tag}/{}/{}/{}",
        std::process::id(),
        nanos(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "lock-core-cli-{tag}-{}-{}-{}",
            std::process::id(),
            nanos(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create a temporary directory");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The lock directory of the test (inside the temporary one).
    pub fn locks(&self) -> PathBuf {
        self.0.join("locks")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A finished `lock-core` process.
#[derive(Debug)]
pub struct Done {
    pub code: Option<i32>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// A running `lock-core` process; killed (SIGKILL) if dropped while running.
pub struct Running {
    pub child: Child,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
}

static RUN: AtomicU64 = AtomicU64::new(0);

/// Starts `lock-core ARGS` with `env` added, stdin closed, output to files in `dir`,
/// and `LOCK_CORE_DIR` set to `dir.locks()` unless `env` sets it.
pub fn start<I, S>(dir: &TempDir, args: I, env: &[(&str, &OsStr)]) -> Running
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let out = dir.join(&format!("run-{n}.out"));
    let err = dir.join(&format!("run-{n}.err"));
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        // Never the machine's default lock directory: the test's own, unless overridden.
        .env("LOCK_CORE_DIR", dir.locks())
        // `--store dynamodb://…` talks to the test server with fake credentials, never AWS.
        .env("AWS_ENDPOINT_URL", dynamo_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start lock-core");
    Running {
        child,
        out,
        err,
        started: Instant::now(),
    }
}

/// Runs `lock-core ARGS` to its end (at most [`DEADLINE`]).
pub fn run<I, S>(dir: &TempDir, args: I, env: &[(&str, &OsStr)]) -> Done
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    start(dir, args, env).finish(DEADLINE)
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the end, at most `limit`; panics (after killing it) if it runs longer.
    pub fn finish(mut self, limit: Duration) -> Done {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "lock-core did not finish within {limit:?}; stderr: {}",
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Done {
            code: status.code(),
            status,
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
            took: self.started.elapsed(),
        }
    }

    /// Waits until `path` exists (at most [`DEADLINE`]); panics if this process ends
    /// first or the time runs out.
    pub fn wait_for_file(&mut self, path: &Path, what: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !path.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "lock-core ended ({status}) before {what}; stderr: {}",
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What it printed on standard error so far.
    pub fn stderr_now(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Sends `sig` to the `lock-core` process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill");
    }
}

impl Drop for Running {
    /// Ends the job as a user would: SIGTERM to `lock-core`, which passes it on to CMD's
    /// whole process group (a SIGKILL would leave CMD running, holding the file lock it
    /// inherited). SIGKILL only if that does not end it within [`DEADLINE`].
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + DEADLINE;
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// True if process `pid` exists and is not a zombie (Linux: from `/proc`).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The pids listed one per line in `path` (written by a test job's processes).
pub fn pids_in(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits until `path` exists (at most [`DEADLINE`]); panics with `what` otherwise.
pub fn wait_for_file(path: &Path, what: &str) {
    wait_until(what, || path.exists());
}

/// Waits until `cond` holds (at most [`DEADLINE`]); panics with `what` otherwise.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts `lock-core run NAME EXTRA.. -- sh -c 'echo inside > "$MARK"; exec sleep 30'`
/// and waits until CMD is inside (its marker file exists).
pub fn hold(dir: &TempDir, name: &str, extra: &[&OsStr], env: &[(&str, &OsStr)]) -> Running {
    let mark = dir.join(&format!("mark-{}", SEQ.fetch_add(1, Ordering::Relaxed)));
    let mut args: Vec<&OsStr> = vec![OsStr::new("run"), OsStr::new(name)];
    args.extend_from_slice(extra);
    args.extend(
        ["--", "sh", "-c", "echo inside > \"$MARK\"; exec sleep 30"]
            .iter()
            .map(OsStr::new),
    );
    let mut env = env.to_vec();
    env.push(("MARK", mark.as_os_str()));
    let mut r = start(dir, &args, &env);
    r.wait_for_file(&mark, "the holder's CMD to be inside");
    r
}

/// `--dir D` as arguments.
pub fn dir_args(d: &Path) -> [&OsStr; 2] {
    [OsStr::new("--dir"), d.as_os_str()]
}
