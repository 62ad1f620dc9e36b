//! An interactive CMD on a terminal: CMD runs in a process group of its own, and that
//! group gets the terminal while CMD runs — it can read the keyboard (a background group
//! would be stopped by SIGTTIN), and Ctrl-C reaches it exactly once.
//!
//! `lock-core` runs as the session leader of a fresh pseudo-terminal, as under a shell.

#![cfg(target_os = "linux")]

mod support;

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use support::*;

const SCRIPT: &str = r#"
trap 'echo got-int; n=1' INT
echo ready
read line
echo "read:$line"
while [ -z "$n" ]; do sleep 0.05; done
read last
echo "done:$last"
exit 7
"#;

/// A pseudo-terminal: the master side, and the path of the slave.
fn open_pty() -> (OwnedFd, CString) {
    // SAFETY: the usual posix_openpt/grantpt/unlockpt sequence on a descriptor we own;
    // ptsname_r writes into a local buffer of the given size.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(m >= 0, "posix_openpt");
        let master = OwnedFd::from_raw_fd(m);
        assert_eq!(libc::grantpt(m), 0, "grantpt");
        assert_eq!(libc::unlockpt(m), 0, "unlockpt");
        let mut buf = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()),
            0,
            "ptsname_r"
        );
        let slave = std::ffi::CStr::from_ptr(buf.as_ptr()).to_owned();
        (master, slave)
    }
}

/// `cmd` as the session leader of a fresh terminal, and what the terminal shows.
struct OnTerminal {
    child: std::process::Child,
    screen: Arc<Mutex<String>>,
    keyboard: File,
}

impl OnTerminal {
    fn shows(&self, what: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.screen.lock().unwrap().contains(what) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {what:?}: {:?}",
                self.screen.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn types(&mut self, keys: &[u8]) {
        self.keyboard.write_all(keys).unwrap();
    }

    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(Instant::now() < deadline, "the session did not end");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_terminal(mut cmd: Command) -> OnTerminal {
    let (master, slave) = open_pty();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let slave_for_child = slave.clone();
    // SAFETY: between fork and exec only async-signal-safe calls: a new session whose
    // controlling terminal is the slave, which becomes standard input and output.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(slave_for_child.as_ptr(), libc::O_RDWR);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::ioctl(fd, libc::TIOCSCTTY, 0);
            for target in 0..3 {
                libc::dup2(fd, target);
            }
            if fd > 2 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start the session on the terminal");
    // Everything the terminal shows, read on a thread of its own (it ends with EIO once no
    // process has the terminal open).
    let screen = Arc::new(Mutex::new(String::new()));
    {
        let screen = screen.clone();
        let fd = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut f = File::from(fd);
            let mut buf = [0u8; 1024];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    OnTerminal {
        child,
        screen,
        keyboard: File::from(master),
    }
}

fn run_args(t: &TempDir, name: &str, script: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec!["run".into(), name.into(), "--dir".into()];
    v.push(t.locks().into());
    v.push("--".into());
    v.push("sh".into());
    v.push(script.into());
    v
}

#[test]
fn an_interactive_cmd_gets_the_terminal_and_ctrl_c_once() {
    let t = TempDir::new("tty");
    let script = t.join("interactive.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    let name = unique("tty");
    let mut cmd = Command::new(bin());
    cmd.args(run_args(&t, &name, &script));
    let mut term = on_terminal(cmd);
    term.shows("ready");
    term.types(b"hello\n");
    term.shows("read:hello"); // CMD could read the terminal: it is in the foreground
    term.types(b"\x03"); // Ctrl-C
    term.shows("got-int");
    term.types(b"bye\n");
    term.shows("done:bye");
    assert_eq!(term.exit_code(), Some(7), "exits with CMD's status");
    let shown = term.screen.lock().unwrap().clone();
    assert_eq!(
        shown.matches("got-int").count(),
        1,
        "Ctrl-C reached CMD exactly once: {shown:?}"
    );
}

/// Ctrl-Z stops the job as a shell with job control knows it — `lock-core` included, so
/// the shell gets the terminal back — and `fg` continues CMD with the terminal.
#[test]
fn ctrl_z_stops_the_whole_job_and_fg_continues_it() {
    let t = TempDir::new("tty-stop");
    let script = t.join("interactive.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    let name = unique("tty-stop");
    let quoted: Vec<String> = std::iter::once(bin().to_owned())
        .chain(
            run_args(&t, &name, &script)
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        )
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    // A shell with job control, as at a prompt: the job gets a process group of its own.
    let session = format!(
        "set -m; {}; echo \"back-at-shell:$?\"; fg; echo \"job-ended:$?\"",
        quoted.join(" ")
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &session]);
    let mut term = on_terminal(cmd);
    term.shows("ready");
    term.types(b"hello\n");
    term.shows("read:hello");
    term.types(b"\x03");
    term.shows("got-int"); // CMD now waits for a line
    term.types(b"\x1a"); // Ctrl-Z
    term.shows("back-at-shell:"); // the job stopped, lock-core with it
                                  // `fg` continues the job: CMD reads the terminal again (a background read would
                                  // stop it).
    term.types(b"bye\n");
    term.shows("done:bye");
    term.shows("job-ended:7");
    assert_eq!(term.exit_code(), Some(0));
}
