//! `--shared` holders overlap (and exclude an exclusive one); signals sent to
//! `lock-core run` reach CMD; a signal while waiting ends the wait.

mod support;

use lock_core::Lock;
use std::ffi::OsStr;
use support::*;

/// CMD for a shared holder: says it is inside ($MINE), waits (bounded) until the other
/// one is inside too ($OTHER), says so ($MINE.both), then waits for $GO. Exits 9 if any
/// wait runs out, so a regression to one-at-a-time fails instead of hanging.
const SHARED_CMD: &str = r#"
echo inside > "$MINE"
i=0; while [ ! -e "$OTHER" ]; do i=$((i+1)); [ $i -gt 400 ] && exit 9; sleep 0.025; done
echo both > "$MINE.both"
i=0; while [ ! -e "$GO" ]; do i=$((i+1)); [ $i -gt 400 ] && exit 9; sleep 0.025; done
exit 0
"#;

#[test]
fn shared_holders_overlap_and_exclude_an_exclusive_one() {
    let t = TempDir::new("shared");
    let d = t.locks();
    let name = unique("shared");
    let (a, b, go) = (t.join("a"), t.join("b"), t.join("go"));
    let start_shared = |mine: &std::path::Path, other: &std::path::Path| {
        start(
            &t,
            [OsStr::new("run"), OsStr::new(&name), OsStr::new("--shared")]
                .into_iter()
                .chain(dir_args(&d))
                .chain(["--", "sh", "-c", SHARED_CMD].map(OsStr::new)),
            &[
                ("MINE", mine.as_os_str()),
                ("OTHER", other.as_os_str()),
                ("GO", go.as_os_str()),
            ],
        )
    };
    let mut first = start_shared(&a, &b);
    let mut second = start_shared(&b, &a);
    first.wait_for_file(
        &t.join("a.both"),
        "the first shared holder to see the second",
    );
    second.wait_for_file(
        &t.join("b.both"),
        "the second shared holder to see the first",
    );

    // Both are inside right now: an exclusive request is refused, another shared one is not.
    let exclusive = run(
        &t,
        [OsStr::new("run"), OsStr::new(&name)]
            .into_iter()
            .chain(dir_args(&d))
            .chain(["--timeout", "0", "--", "true"].map(OsStr::new)),
        &[],
    );
    assert_eq!(exclusive.code, Some(75), "{exclusive:?}");
    let third = run(
        &t,
        [OsStr::new("run"), OsStr::new(&name), OsStr::new("--shared")]
            .into_iter()
            .chain(dir_args(&d))
            .chain(["--timeout", "0", "--", "true"].map(OsStr::new)),
        &[],
    );
    assert_eq!(third.code, Some(0), "{third:?}");
    // The library agrees: shared yes, exclusive no.
    drop(
        Lock::new(&name)
            .dir(&d)
            .shared()
            .try_acquire()
            .expect("shared beside them"),
    );
    assert!(Lock::new(&name).dir(&d).try_acquire().is_err());

    std::fs::write(&go, "go").unwrap();
    assert_eq!(first.finish(DEADLINE).code, Some(0));
    assert_eq!(second.finish(DEADLINE).code, Some(0));
    drop(
        Lock::new(&name)
            .dir(&d)
            .try_acquire()
            .expect("free once both are done"),
    );
}

/// CMD that reports SIGTERM and SIGINT: "got TERM" / "got INT" into $OUT, then exits
/// with 0 / 3.
const TRAP_CMD: &str = r#"
trap 'echo got TERM > "$OUT"; exit 0' TERM
trap 'echo got INT > "$OUT"; exit 3' INT
echo ready > "$MARK"
i=0; while [ $i -lt 600 ]; do i=$((i+1)); sleep 0.05; done
exit 9
"#;

fn forwarded(sig: libc::c_int, want_out: &str, want_code: i32) {
    let t = TempDir::new("signal");
    let d = t.locks();
    let name = unique("signal");
    let (mark, out) = (t.join("ready"), t.join("out"));
    let mut running = start(
        &t,
        [OsStr::new("run"), OsStr::new(&name)]
            .into_iter()
            .chain(dir_args(&d))
            .chain(["--", "sh", "-c", TRAP_CMD].map(OsStr::new)),
        &[("MARK", mark.as_os_str()), ("OUT", out.as_os_str())],
    );
    running.wait_for_file(&mark, "CMD to be ready");
    running.signal(sig);
    let done = running.finish(DEADLINE);
    assert_eq!(
        done.code,
        Some(want_code),
        "exits with CMD's status: {done:?}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap_or_default(), want_out);
    // Released afterwards.
    drop(
        Lock::new(&name)
            .dir(&d)
            .try_acquire()
            .expect("released after CMD"),
    );
}

#[test]
fn sigterm_reaches_cmd_and_run_exits_with_its_status() {
    forwarded(libc::SIGTERM, "got TERM\n", 0);
}

#[test]
fn sigint_reaches_cmd_too() {
    forwarded(libc::SIGINT, "got INT\n", 3);
}

#[test]
fn a_signal_while_waiting_ends_the_wait() {
    let t = TempDir::new("wait-signal");
    let d = t.locks();
    let name = unique("wait-signal");
    let holder = hold(&t, &name, &dir_args(&d), &[]);
    let ran = t.join("ran");
    let waiter = start(
        &t,
        [OsStr::new("run"), OsStr::new(&name)]
            .into_iter()
            .chain(dir_args(&d))
            .chain(["--", "sh", "-c", "echo ran > \"$RAN\""].map(OsStr::new)),
        &[("RAN", ran.as_os_str())],
    );
    // Proof that it waits: the holder's file records a waiter.
    wait_until("the waiter to queue", || {
        lock_core::file::LockDir::new(&d)
            .holders()
            .unwrap_or_default()
            .iter()
            .any(|h| h.name == name && h.waiting == 1)
    });
    waiter.signal(libc::SIGTERM);
    let done = waiter.finish(DEADLINE);
    assert_eq!(done.code, Some(128 + libc::SIGTERM), "{done:?}");
    assert!(done.stderr.contains("SIGTERM while waiting"), "{done:?}");
    assert!(!ran.exists(), "CMD never ran");
    drop(holder);
}
