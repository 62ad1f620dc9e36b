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

#[test]
fn an_interactive_cmd_gets_the_terminal_and_ctrl_c_once() {
    let t = TempDir::new("tty");
    let script = t.join("interactive.sh");
    std::fs::write(&script, SCRIPT).unwrap();
    let name = unique("tty");
    let (master, slave) = open_pty();

    let mut cmd = Command::new(bin());
    cmd.args(["run", &name, "--dir"])
        .arg(t.locks())
        .args(["--", "sh"])
        .arg(&script)
        .stdin(Stdio::null())
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
    let mut child = cmd.spawn().expect("start lock-core on the terminal");

    // Everything the terminal shows, read on a thread of its own.
    let screen = Arc::new(Mutex::new(String::new()));
    let reader = {
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
        })
    };
    let shows = |what: &str| {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if screen.lock().unwrap().contains(what) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {what:?}: {:?}",
                screen.lock().unwrap()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    let mut keyboard = File::from(master.try_clone().unwrap());

    shows("ready");
    keyboard.write_all(b"hello\n").unwrap();
    shows("read:hello"); // CMD could read the terminal: it is in the foreground
    keyboard.write_all(b"\x03").unwrap(); // Ctrl-C
    shows("got-int");
    keyboard.write_all(b"bye\n").unwrap();
    shows("done:bye");

    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "lock-core did not exit");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert_eq!(status.code(), Some(7), "exits with CMD's status");
    let shown = screen.lock().unwrap().clone();
    assert_eq!(
        shown.matches("got-int").count(),
        1,
        "Ctrl-C reached CMD exactly once: {shown:?}"
    );
    // The reader ends with EIO now that no process has the terminal open.
    drop((keyboard, master));
    let _ = reader;
}
