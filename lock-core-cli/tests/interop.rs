//! `lock-core run` and the library take one and the same lock, both ways; `status`
//! (table and JSON schema 1) sees locks held by either.

mod support;

use std::ffi::OsStr;
use std::time::{SystemTime, UNIX_EPOCH};

use lock_core::file::LockDir;
use lock_core::{Lock, LockError};
use serde_json::Value;
use support::*;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn status_json(t: &TempDir, extra: &[&OsStr]) -> Value {
    let args = [OsStr::new("status"), OsStr::new("--json")]
        .into_iter()
        .chain(extra.iter().copied());
    let done = run(t, args, &[]);
    assert_eq!(done.code, Some(0), "{done:?}");
    let v: Value = serde_json::from_str(&done.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", done.stdout));
    assert_eq!(v["schema"], 1, "{v}");
    assert_eq!(v["backend"], "file", "{v}");
    assert!(v["location"].is_string(), "{v}");
    let locks = v["locks"].as_array().expect("locks is an array");
    for l in locks {
        assert!(l["name"].is_string(), "{l}");
        assert!(
            ["exclusive", "shared", "permits"].contains(&l["mode"].as_str().unwrap_or("")),
            "{l}"
        );
        assert_eq!(l["mode"] == "permits", l["permits"].is_u64(), "{l}");
        assert!(l["permits"].is_null() || l["permits"].is_u64(), "{l}");
        assert!(l["holder"]["pid"].is_u64(), "{l}");
        assert!(
            l["holder"]["host"].is_string() || l["holder"]["host"].is_null(),
            "{l}"
        );
        assert!(l["holder"]["since_unix_ms"].is_u64(), "{l}");
        assert!(l["waiting"].is_u64(), "{l}");
        assert!(l["file"].is_string(), "{l}");
    }
    v
}

fn entry<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["locks"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["name"] == name))
        .unwrap_or_else(|| panic!("`{name}` not listed: {v}"))
}

#[test]
fn a_lock_held_by_run_is_held_for_the_library_and_listed() {
    let t = TempDir::new("run-holds");
    let d = t.locks();
    let name = unique("run-holds");
    let before = now_ms();
    let holder = hold(&t, &name, &dir_args(&d), &[]);

    // The library sees the lock held, by the lock-core process (not by CMD).
    match Lock::new(&name).dir(&d).try_acquire() {
        Err(LockError::Busy {
            holder: Some(h), ..
        }) => {
            assert_eq!(h.pid, Some(holder.pid()), "{h:?}")
        }
        other => panic!("expected Busy naming the holder, got {other:?}"),
    }
    assert_eq!(
        LockDir::new(&d).holder(&name).and_then(|h| h.pid),
        Some(holder.pid())
    );

    let v = status_json(&t, &dir_args(&d));
    let canonical = std::path::absolute(&d).unwrap();
    assert_eq!(v["location"], canonical.display().to_string(), "{v}");
    let l = entry(&v, &name);
    assert_eq!(l["mode"], "exclusive", "{l}");
    assert!(l["permits"].is_null(), "{l}");
    assert_eq!(l["holder"]["pid"], holder.pid(), "{l}");
    let since = l["holder"]["since_unix_ms"].as_u64().unwrap();
    assert!(since + 1000 >= before && since <= now_ms() + 1000, "{l}");
    assert_eq!(l["waiting"], 0, "{l}");

    // A waiter shows up in the listing.
    let waiter = start(
        &t,
        [OsStr::new("run"), OsStr::new(&name)]
            .into_iter()
            .chain(dir_args(&d))
            .chain(["--", "true"].map(OsStr::new)),
        &[],
    );
    wait_until("the waiter to be listed", || {
        entry(&status_json(&t, &dir_args(&d)), &name)["waiting"] == 1
    });

    // The table names it too.
    let table = run(&t, ["status", "--dir", d.to_str().unwrap()], &[]);
    assert_eq!(table.code, Some(0), "{table:?}");
    assert!(table.stdout.starts_with("NAME"), "{table:?}");
    assert!(table.stdout.contains(&name), "{table:?}");
    assert!(
        table.stdout.contains(&holder.pid().to_string()),
        "{table:?}"
    );

    drop(holder);
    let done = waiter.finish(DEADLINE);
    assert_eq!(
        done.code,
        Some(0),
        "the waiter got it once the holder died: {done:?}"
    );
    // Both gone: the lock is free for the library, and unlisted.
    drop(
        Lock::new(&name)
            .dir(&d)
            .try_acquire()
            .expect("free after run"),
    );
    let v = status_json(&t, &dir_args(&d));
    assert!(v["locks"].as_array().unwrap().is_empty(), "{v}");
    let table = run(&t, ["status", "--dir", d.to_str().unwrap()], &[]);
    assert!(table.stdout.contains("no locks held"), "{table:?}");
}

#[test]
fn a_lock_held_by_the_library_is_busy_for_run_and_listed() {
    let t = TempDir::new("lib-holds");
    let d = t.locks();
    let name = unique("lib-holds");
    let counted = unique("lib-counted");
    let guard = Lock::new(&name).dir(&d).try_acquire().unwrap();
    let permit = Lock::new(&counted)
        .dir(&d)
        .permits(3)
        .try_acquire()
        .unwrap();
    let me = format!("pid {}", std::process::id());

    let args = |n: &str, extra: &[&str]| {
        [OsStr::new("run"), OsStr::new(n)]
            .into_iter()
            .chain(dir_args(&d))
            .chain(extra.iter().map(OsStr::new))
            .chain(["--", "true"].map(OsStr::new))
            .map(ToOwned::to_owned)
            .collect::<Vec<_>>()
    };
    let busy = run(&t, args(&name, &["--timeout", "0"]), &[]);
    assert_eq!(busy.code, Some(75), "{busy:?}");
    assert!(
        busy.stderr.contains(&me),
        "names the test process: {busy:?}"
    );

    // A counted lock with 3 permits, one taken: `run` gets one of the other two, and
    // asking for it as another kind is a Mismatch (70), not a conflict.
    let permit_run = run(
        &t,
        args(&counted, &["--permits", "3", "--timeout", "0"]),
        &[],
    );
    assert_eq!(permit_run.code, Some(0), "{permit_run:?}");
    let mismatch = run(&t, args(&counted, &["--timeout", "0"]), &[]);
    assert_eq!(mismatch.code, Some(70), "{mismatch:?}");

    let v = status_json(&t, &dir_args(&d));
    let l = entry(&v, &name);
    assert_eq!(l["holder"]["pid"], std::process::id(), "{l}");
    assert_eq!(l["mode"], "exclusive", "{l}");
    let c = entry(&v, &counted);
    assert_eq!(
        (c["mode"].as_str(), c["permits"].as_u64()),
        (Some("permits"), Some(3)),
        "{c}"
    );
    assert_eq!(c["holder"]["pid"], std::process::id(), "{c}");

    drop(guard);
    drop(permit);
    let free = run(&t, args(&name, &["--timeout", "0"]), &[]);
    assert_eq!(free.code, Some(0), "{free:?}");
}

#[test]
fn the_default_directory_is_lock_core_dir() {
    let t = TempDir::new("default-dir");
    let d = t.join("elsewhere");
    let name = unique("default-dir");
    let env = [("LOCK_CORE_DIR", d.as_os_str())];
    // Without --dir, `run` takes the lock in $LOCK_CORE_DIR, as `.file()` does.
    let holder = hold(&t, &name, &[], &env);
    assert!(matches!(
        Lock::new(&name).dir(&d).try_acquire(),
        Err(LockError::Busy { .. })
    ));
    // And `status` without --dir lists it.
    let done = run(&t, ["status", "--json"], &env);
    let v: Value = serde_json::from_str(&done.stdout).expect("JSON");
    assert_eq!(v["location"], d.display().to_string(), "{v}");
    assert_eq!(entry(&v, &name)["holder"]["pid"], holder.pid());
    let table = run(&t, ["status"], &env);
    assert!(table.stdout.contains(&name), "{table:?}");
}

#[test]
fn path_locks_exactly_that_file_for_both() {
    let t = TempDir::new("path");
    let f = t.join("other-tool.lock");
    let name = unique("path");
    let holder = hold(&t, &name, &[OsStr::new("--path"), f.as_os_str()], &[]);
    // Another name on the same file: the OS lock on the file is what excludes.
    let other = unique("path-other");
    assert!(matches!(
        Lock::new(&other).path(&f).try_acquire(),
        Err(LockError::Busy { .. })
    ));
    drop(holder);
    let guard = Lock::new(&other).path(&f).try_acquire().expect("free");
    let busy = run(
        &t,
        [OsStr::new("run"), OsStr::new(&name), OsStr::new("--path")]
            .into_iter()
            .chain([f.as_os_str()])
            .chain(["--timeout", "0", "--", "true"].map(OsStr::new)),
        &[],
    );
    assert_eq!(busy.code, Some(75), "{busy:?}");
    drop(guard);
    assert_eq!(
        std::fs::metadata(&f).unwrap().len(),
        0,
        "the file is never written"
    );
}
