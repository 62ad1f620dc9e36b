//! Exit statuses of `lock-core run`: CMD's own, busy and timed out (75), the override,
//! the holder's pid in the busy message, and bad input.

mod support;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use support::*;

#[test]
fn cmd_status_passes_through() {
    let t = TempDir::new("status");
    let d = t.locks();
    let name = unique("status");
    for (script, want) in [("exit 0", 0), ("exit 7", 7), ("exit 255", 255)] {
        let args = [OsStr::new("run"), OsStr::new(&name)]
            .into_iter()
            .chain(dir_args(&d))
            .chain(["--", "sh", "-c", script].map(OsStr::new));
        let done = run(&t, args, &[]);
        assert_eq!(done.code, Some(want), "{script}: {done:?}");
        assert!(done.stderr.is_empty(), "{script}: {done:?}");
    }
    // CMD killed by a signal: 128 + N, as shells report it.
    let args = [OsStr::new("run"), OsStr::new(&name)]
        .into_iter()
        .chain(dir_args(&d))
        .chain(["--", "sh", "-c", "kill -9 $$"].map(OsStr::new));
    let done = run(&t, args, &[]);
    assert_eq!(done.code, Some(128 + 9), "{done:?}");
    // CMD's output and arguments pass through untouched.
    let args = [OsStr::new("run"), OsStr::new(&name)]
        .into_iter()
        .chain(dir_args(&d))
        .chain(["--", "printf", "%s|%s", "a b", "--timeout"].map(OsStr::new));
    let done = run(&t, args, &[]);
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (Some(0), "a b|--timeout")
    );
}

#[test]
fn busy_and_timed_out_exit_75_naming_the_holder() {
    let t = TempDir::new("busy");
    let d = t.locks();
    let name = unique("busy");
    let holder = hold(&t, &name, &dir_args(&d), &[]);
    let pid = format!("pid {}", holder.pid());
    let attempt = |extra: &[&str]| {
        let args = [OsStr::new("run"), OsStr::new(&name)]
            .into_iter()
            .chain(dir_args(&d))
            .chain(extra.iter().map(OsStr::new))
            .chain(["--", "sh", "-c", "echo ran"].map(OsStr::new));
        run(&t, args, &[])
    };

    let busy = attempt(&["--timeout", "0"]);
    assert_eq!(busy.code, Some(75), "{busy:?}");
    assert_eq!(busy.stdout, "", "CMD must not run: {busy:?}");
    assert_eq!(busy.stderr.lines().count(), 1, "one line: {busy:?}");
    assert!(busy.stderr.starts_with("lock-core: "), "{busy:?}");
    assert!(busy.stderr.contains(&format!("`{name}`")), "{busy:?}");
    assert!(busy.stderr.contains(&pid), "names the holder: {busy:?}");

    let timed_out = attempt(&["--timeout", "300ms"]);
    assert_eq!(timed_out.code, Some(75), "{timed_out:?}");
    assert!(
        timed_out.took >= Duration::from_millis(300),
        "{timed_out:?}"
    );
    assert!(timed_out.stderr.contains("timed out"), "{timed_out:?}");
    assert!(timed_out.stderr.contains(&pid), "{timed_out:?}");
    assert_eq!(timed_out.stderr.lines().count(), 1, "{timed_out:?}");

    let custom = attempt(&["--timeout", "0", "--conflict-exit-code", "3"]);
    assert_eq!(custom.code, Some(3), "{custom:?}");
    assert!(custom.stderr.contains(&pid), "{custom:?}");

    drop(holder);
    let free = attempt(&["--timeout", "0"]);
    assert_eq!(
        (free.code, free.stdout.as_str()),
        (Some(0), "ran\n"),
        "{free:?}"
    );
}

#[test]
fn bad_input_is_refused_clearly() {
    let t = TempDir::new("bad");
    let d = t.locks();
    let name = unique("bad");
    let try_run = |extra: &[&str], cmd: &[&OsStr]| {
        let args = [OsStr::new("run"), OsStr::new(&name)]
            .into_iter()
            .chain(extra.iter().map(OsStr::new))
            .chain([OsStr::new("--")])
            .chain(cmd.iter().copied());
        run(&t, args, &[])
    };
    let truth = [OsStr::new("true")];

    let scheme = try_run(&["--store", "mysql://user:secret@127.0.0.1/db"], &truth);
    assert_eq!(scheme.code, Some(64), "{scheme:?}");
    assert!(scheme.stderr.starts_with("lock-core: "), "{scheme:?}");
    assert!(scheme.stderr.contains("mysql"), "{scheme:?}");
    assert!(
        !scheme.stderr.contains("secret"),
        "never echo credentials: {scheme:?}"
    );

    let zero = try_run(&["--permits", "0"], &truth);
    assert_eq!(zero.code, Some(64), "{zero:?}");
    assert!(
        zero.stderr.contains("--permits must be at least 1"),
        "{zero:?}"
    );

    let both = try_run(&["--shared", "--permits", "2"], &truth);
    assert_eq!(both.code, Some(2), "clap's usage error: {both:?}");
    assert!(both.stderr.contains("cannot be used with"), "{both:?}");

    let places = try_run(&["--dir", "a", "--store", "redis://127.0.0.1:6379"], &truth);
    assert_eq!(places.code, Some(2), "{places:?}");

    let lease = try_run(&["--lease", "1s"], &truth);
    assert_eq!(lease.code, Some(2), "--lease needs --store: {lease:?}");

    let duration = try_run(&["--timeout", "5"], &truth);
    assert_eq!(duration.code, Some(2), "{duration:?}");
    assert!(duration.stderr.contains("needs a unit"), "{duration:?}");

    let no_cmd = run(&t, ["run", name.as_str()], &[]);
    assert_eq!(no_cmd.code, Some(2), "{no_cmd:?}");

    let bad_name = run(&t, ["run", "bad\nname", "--", "true"], &[]);
    assert_eq!(bad_name.code, Some(64), "{bad_name:?}");
    assert_eq!(bad_name.stderr.lines().count(), 1, "{bad_name:?}");

    let dir_arg = dir_args(&d);
    let missing = try_run(&[], &[OsStr::new("/nonexistent/lock-core-test-cmd")]);
    assert_eq!(missing.code, Some(127), "{missing:?}");
    assert!(missing.stderr.contains("not found"), "{missing:?}");

    let script = t.join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let args = [OsStr::new("run"), OsStr::new(&name)]
        .into_iter()
        .chain(dir_arg)
        .chain([OsStr::new("--"), script.as_os_str()]);
    let denied = run(&t, args, &[]);
    assert_eq!(denied.code, Some(126), "{denied:?}");
    assert!(denied.stderr.contains("cannot execute"), "{denied:?}");

    // The lock was given back after each of these.
    let args = [OsStr::new("run"), OsStr::new(&name)]
        .into_iter()
        .chain(dir_arg)
        .chain(["--timeout", "0", "--", "true"].map(OsStr::new));
    assert_eq!(run(&t, args, &[]).code, Some(0));
}

#[test]
fn unreachable_stores_exit_69() {
    let t = TempDir::new("unreachable");
    for url in [
        "redis://127.0.0.1:1",
        "postgres://postgres@127.0.0.1:1/test",
    ] {
        let done = run(&t, ["status", "--store", url], &[]);
        assert_eq!(done.code, Some(69), "{url}: {done:?}");
        assert!(done.stderr.starts_with("lock-core: "), "{done:?}");
        assert_eq!(done.stderr.lines().count(), 1, "{done:?}");
        let name = unique("unreachable");
        let done = run(&t, ["run", &name, "--store", url, "--", "true"], &[]);
        assert_eq!(done.code, Some(69), "{url}: {done:?}");
        assert!(done.status.signal().is_none(), "{done:?}");
    }
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let t = TempDir::new("help");
    let top = run(&t, ["--help"], &[]);
    assert_eq!(top.code, Some(0));
    assert!(
        top.stdout.contains("--store") && top.stdout.contains("jq"),
        "{top:?}"
    );
    let r = run(&t, ["run", "--help"], &[]);
    for needle in ["75", "76", "127", "LOCK_CORE_FENCE", "--conflict-exit-code"] {
        assert!(
            r.stdout.contains(needle),
            "run --help lacks {needle}: {}",
            r.stdout
        );
    }
    let s = run(&t, ["status", "--help"], &[]);
    for needle in ["\"schema\": 1", "since_unix_ms", "expires_in_ms"] {
        assert!(
            s.stdout.contains(needle),
            "status --help lacks {needle}: {}",
            s.stdout
        );
    }
}
