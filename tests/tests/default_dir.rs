//! The default lock directory (issue #17), always in a child process with its own
//! `TMPDIR` (`XDG_RUNTIME_DIR` and `LOCK_CORE_DIR` removed, so the default is
//! `<TMPDIR>/lock-core-<uid>`): hijacked directories are refused with an `Io` error
//! that says what is wrong and how to choose another; a fresh one is created `0700`.
//! `LOCK_CORE_DIR` may name a shared directory.

mod file_support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use file_support::{fresh_dir, Child};
use lock_core::file::LockDir;
use lock_core::LockError;
use lock_core_tests::unique;

fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The default directory a child with `TMPDIR=tmp` uses.
fn default_in(tmp: &Path) -> PathBuf {
    tmp.join(format!("lock-core-{}", uid()))
}

/// `default-try` in a child whose temp directory is `tmp`.
fn try_in_child(tmp: &Path, name: &str) -> String {
    Child::run_with(
        &["default-try", name],
        &[("TMPDIR", tmp.to_str().unwrap())],
        &["XDG_RUNTIME_DIR", "LOCK_CORE_DIR"],
    )
}

#[track_caller]
fn assert_refused(line: &str, why: &str) {
    let msg = line
        .strip_prefix("err 8407 ")
        .unwrap_or_else(|| panic!("expected an Io error (8407), got {line:?}"));
    assert!(msg.contains(why), "the message should say {why:?}: {msg}");
    assert!(
        msg.contains("LOCK_CORE_DIR"),
        "the message should name LOCK_CORE_DIR: {msg}"
    );
}

#[test]
fn a_fresh_temp_dir_gets_a_default_directory_created_0700_that_works() {
    let tmp = fresh_dir("default-fresh");
    let name = unique("default-fresh");
    let expected = default_in(&tmp);
    assert_eq!(
        try_in_child(&tmp, &name),
        format!("ok {}", expected.display())
    );
    let md = std::fs::symlink_metadata(&expected).unwrap();
    assert!(md.is_dir());
    assert_eq!(md.permissions().mode() & 0o7777, 0o700);
    assert_eq!(md.uid(), uid());
    assert!(LockDir::new(&expected).lock_file(&name).unwrap().is_file());
    // And again, now that it exists.
    assert_eq!(
        try_in_child(&tmp, &name),
        format!("ok {}", expected.display())
    );
}

#[test]
fn a_default_directory_that_is_a_symlink_is_refused() {
    let tmp = fresh_dir("default-symlink");
    let elsewhere = fresh_dir("default-symlink-target");
    std::os::unix::fs::symlink(&*elsewhere, default_in(&tmp)).unwrap();
    assert_refused(
        &try_in_child(&tmp, &unique("default-symlink")),
        "symbolic link",
    );
    assert_eq!(
        std::fs::read_dir(&*elsewhere).unwrap().count(),
        0,
        "nothing created there"
    );
}

#[test]
fn a_default_directory_writable_by_others_is_refused() {
    let tmp = fresh_dir("default-0777");
    let dir = default_in(&tmp);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_refused(
        &try_in_child(&tmp, &unique("default-0777")),
        "writable by others",
    );
    let md = std::fs::metadata(&dir).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o777, "left as it was");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no lock file created in it"
    );
}

#[test]
fn a_default_directory_owned_by_another_user_is_refused() {
    if uid() != 0 {
        println!("skipped: chown needs root and we run as uid {}", uid());
        assert_ne!(uid(), 0);
        return;
    }
    let tmp = fresh_dir("default-chowned");
    let dir = default_in(&tmp);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(12345), Some(12345)).unwrap();
    assert_refused(
        &try_in_child(&tmp, &unique("default-chowned")),
        "owned by uid 12345",
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no lock file created in it"
    );
}

#[test]
fn lock_core_dir_may_name_a_shared_directory() {
    let tmp = fresh_dir("default-env-tmp");
    let base = fresh_dir("default-env-shared");
    let shared = base.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let name = unique("default-env");
    let mut holder = Child::spawn_with(
        &["default-hold", &name],
        &[
            ("TMPDIR", tmp.to_str().unwrap()),
            ("LOCK_CORE_DIR", shared.to_str().unwrap()),
        ],
        &["XDG_RUNTIME_DIR"],
    );
    let pid = holder.pid();
    assert_eq!(holder.line(), format!("locked {pid} {}", shared.display()));
    let locks = LockDir::new(&shared);
    assert!(locks.lock_file(&name).unwrap().is_file());
    match locks.try_acquire(&name) {
        Err(e @ LockError::Busy { .. }) => assert_eq!(e.holder().and_then(|h| h.pid), Some(pid)),
        other => panic!("expected Busy from the child's hold, got {other:?}"),
    }
    holder.release();
    drop(locks.try_acquire(&name).unwrap());
    assert!(
        !default_in(&tmp).exists(),
        "the per-user default was not used"
    );
}
