//! The live waiting line: shown (and erased) when standard error is a terminal — here a
//! pseudo-terminal made by util-linux `script(1)` — and silent otherwise.

mod support;

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn have_script() -> bool {
    Command::new("script")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_terminal_shows_who_holds_the_lock_then_erases_the_line() {
    if !have_script() {
        eprintln!("SKIPPED: util-linux `script` is not installed (needed for a pseudo-terminal)");
        return;
    }
    let t = TempDir::new("waitline");
    let d = t.locks();
    let name = unique("waitline");
    let holder = hold(&t, &name, &dir_args(&d), &[]);
    let typescript = t.join("typescript");
    let inner = format!(
        // A wide terminal: the line is cut to the terminal's width, and names are long.
        "stty cols 400; exec {} run {} --dir {} -- echo got-it",
        quote(bin()),
        quote(&name),
        quote(d.to_str().unwrap())
    );
    let mut script = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &inner])
        .arg(&typescript)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start script");
    let want = format!("waiting for `{name}` — held by pid {}", holder.pid());
    let seen = |s: &str| {
        std::fs::read_to_string(&typescript)
            .unwrap_or_default()
            .contains(s)
    };
    let deadline = Instant::now() + DEADLINE;
    while !seen(&want) {
        if let Ok(Some(status)) = script.try_wait() {
            panic!(
                "script ended ({status}) before the line showed: {:?}",
                std::fs::read_to_string(&typescript).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no waiting line: {:?}",
            std::fs::read_to_string(&typescript)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Updated about once a second.
    wait_until("the line to be updated", || {
        std::fs::read_to_string(&typescript)
            .unwrap_or_default()
            .matches(&want)
            .count()
            >= 2
    });
    drop(holder);
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = script.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = script.kill();
            panic!("script did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&typescript).unwrap();
    let line_at = text.rfind(&want).unwrap();
    let erased_at = text.rfind("\r\x1b[2K").expect("the line is erased");
    let cmd_at = text.rfind("got-it").expect("CMD ran");
    assert!(line_at < erased_at && erased_at < cmd_at, "{text:?}");
}

#[test]
fn silent_when_stderr_is_not_a_terminal() {
    let t = TempDir::new("silent");
    let d = t.locks();
    let name = unique("silent");
    let holder = hold(&t, &name, &dir_args(&d), &[]);
    let mark = t.join("queued");
    let waiter = start(
        &t,
        [OsStr::new("run"), OsStr::new(&name)]
            .into_iter()
            .chain(dir_args(&d))
            .chain(["--", "sh", "-c", "echo ran > \"$M\""].map(OsStr::new)),
        &[("M", mark.as_os_str())],
    );
    // Waiting for well over the line's first appearance (200 ms) and an update.
    wait_until("the waiter to queue", || {
        lock_core::file::LockDir::new(&d)
            .holders()
            .unwrap_or_default()
            .iter()
            .any(|h| h.name == name && h.waiting == 1)
    });
    let queued = Instant::now();
    wait_until("1.3 s of waiting", || {
        queued.elapsed() > Duration::from_millis(1300)
    });
    assert_eq!(waiter.stderr_now(), "", "nothing while waiting");
    drop(holder);
    let done = waiter.finish(DEADLINE);
    assert_eq!(done.code, Some(0), "{done:?}");
    assert_eq!(done.stderr, "", "{done:?}");
    assert!(mark.exists());
}
