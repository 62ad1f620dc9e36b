//! Helpers shared by the `file_*` tests: fresh lock directories and child processes
//! (the `file_child` binary of this package) with bounded, line-based conversations.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// A directory no other test (or run) uses: `<temp>/lock-core-it-<tag>-<pid>-<n>-<ns>`,
/// removed with its lock files when the test is done with it.
pub fn fresh_dir(tag: &str) -> TestDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "lock-core-it-{tag}-{}-{}-{ns}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TestDir(dir)
}

/// See [`fresh_dir`]. Declared first in a test, it is dropped last — after the guards
/// and child processes that use it.
pub struct TestDir(PathBuf);

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TestDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Test hygiene only: the library itself never deletes lock files.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `file_child`; killed (and reaped) on drop.
pub struct Child {
    proc: std::process::Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

pub const LINE_WAIT: Duration = Duration::from_secs(20);

impl Child {
    pub fn spawn(args: &[&str]) -> Child {
        Child::spawn_env(args, &[])
    }

    /// Like [`Child::spawn`], with extra environment variables.
    pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Child {
        Child::spawn_with(args, env, &[])
    }

    /// Like [`Child::spawn_env`], also removing the variables `remove` from the child's
    /// environment.
    pub fn spawn_with(args: &[&str], env: &[(&str, &str)], remove: &[&str]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_file_child"));
        for v in remove {
            cmd.env_remove(v);
        }
        let mut proc = cmd
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn file_child");
        let stdout = proc.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = proc.stdin.take();
        Child { proc, stdin, lines }
    }

    /// `hold` in `dir`: returns once the child holds the lock.
    pub fn hold(dir: &Path, name: &str) -> Child {
        let mut c = Child::spawn(&["hold", dir.to_str().unwrap(), name]);
        let line = c.line();
        assert_eq!(line, format!("locked {}", c.pid()));
        c
    }

    /// Runs a one-shot command to completion and returns its one line of output.
    pub fn run(args: &[&str]) -> String {
        let mut c = Child::spawn(args);
        let line = c.line();
        c.close_stdin();
        c.wait_exit();
        line
    }

    /// Like [`Child::run`], with an environment (see [`Child::spawn_with`]).
    pub fn run_with(args: &[&str], env: &[(&str, &str)], remove: &[&str]) -> String {
        let mut c = Child::spawn_with(args, env, remove);
        let line = c.line();
        c.close_stdin();
        c.wait_exit();
        line
    }

    /// `hold-mode` in `dir`: returns once the child holds the lock in `mode`
    /// (`exclusive`, `shared`, `permits:N`).
    pub fn hold_mode(dir: &Path, name: &str, mode: &str) -> Child {
        let mut c = Child::spawn(&["hold-mode", dir.to_str().unwrap(), name, mode]);
        let line = c.line();
        assert_eq!(line, format!("locked {}", c.pid()), "{mode} hold");
        c
    }

    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    /// The next line of output, waiting at most [`LINE_WAIT`].
    pub fn line(&mut self) -> String {
        self.lines
            .recv_timeout(LINE_WAIT)
            .unwrap_or_else(|e| panic!("child {} said nothing: {e}", self.pid()))
    }

    /// True if the child printed nothing for `d`.
    pub fn silent_for(&mut self, d: Duration) -> bool {
        match self.lines.recv_timeout(d) {
            Ok(l) => panic!("unexpected line from child: {l}"),
            Err(_) => true,
        }
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// `hold` children: gives the lock back and waits for the confirmation.
    pub fn release(&mut self) {
        self.send("release");
        assert_eq!(self.line(), "released");
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill().unwrap();
    }

    /// Waits (bounded) for the child to exit successfully.
    pub fn wait_exit(&mut self) {
        let t = std::time::Instant::now();
        loop {
            if let Some(st) = self.proc.try_wait().unwrap() {
                assert!(st.success(), "child {} failed: {st}", self.pid());
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "child {} did not exit",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// Counts call chains inside a critical section; `max()` > 1 means exclusion broke.
#[derive(Default)]
pub struct Overlap {
    inside: AtomicUsize,
    max: AtomicUsize,
}

impl Overlap {
    pub fn enter(&self) -> Inside<'_> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        Inside(self)
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

pub struct Inside<'a>(&'a Overlap);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Read-modify-write of a counter file (missing = 0), with a pause in the middle.
pub fn bump(path: &Path) {
    let n: u64 = match std::fs::read_to_string(path) {
        Ok(s) => s.trim().parse().unwrap(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("{e}"),
    };
    std::thread::yield_now();
    std::fs::write(path, format!("{}\n", n + 1)).unwrap();
}

pub fn read_counter(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
