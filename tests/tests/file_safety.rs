//! Safety of lock files (issue #17), each case in a fresh directory: symlinks planted at
//! a lock path are refused and never followed; foreign files are locked as they are and
//! never written.

mod file_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use file_support::{fresh_dir, Child};
use lock_core::file::LockDir;
use lock_core::{Lock, LockError, Mode};
use lock_core_tests::unique;

/// Every verb and mode on `name` in `locks`: each must be `Io` naming a symbolic link.
fn assert_refused_as_symlink(locks: &LockDir, name: &str) {
    let mut results = vec![
        ("try", locks.try_acquire(name)),
        ("shared try", locks.lock(name).shared().try_acquire()),
        ("permits try", locks.lock(name).permits(2).try_acquire()),
        (
            "blocking",
            locks.blocking_acquire(name, Some(Duration::from_secs(1))),
        ),
        ("blocking, no timeout", locks.blocking_acquire(name, None)),
    ];
    results.push((
        "async",
        futures::executor::block_on(locks.acquire_timeout(name, Duration::from_secs(1))),
    ));
    for (verb, r) in results {
        match r {
            Err(ref e @ LockError::Io { .. }) => {
                assert_eq!(e.code(), 8407);
                let msg = e.to_string();
                assert!(msg.contains("symbolic link"), "{verb}: {msg}");
                assert!(msg.contains(name), "{verb}: {msg}");
            }
            other => panic!("{verb}: expected Io for a symlink, got {other:?}"),
        }
    }
    assert!(
        !lock_core::is_locked(name),
        "the in-process lock was given back"
    );
}

#[test]
fn a_symlink_to_a_file_at_the_lock_path_is_refused_and_its_target_is_untouched() {
    let dir = fresh_dir("symlink-file");
    let elsewhere = fresh_dir("symlink-file-target");
    let locks = LockDir::new(&dir);
    let name = unique("symlink-file");
    let target = elsewhere.join("precious.txt");
    std::fs::write(&target, b"precious data\n").unwrap();
    let link = locks.lock_file(&name).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_refused_as_symlink(&locks, &name);
    assert_eq!(std::fs::read(&target).unwrap(), b"precious data\n");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        target,
        "the link is left alone"
    );
}

#[test]
fn a_symlink_to_a_directory_at_the_lock_path_is_refused() {
    let dir = fresh_dir("symlink-dir");
    let elsewhere = fresh_dir("symlink-dir-target");
    let locks = LockDir::new(&dir);
    let name = unique("symlink-dir");
    std::os::unix::fs::symlink(&*elsewhere, locks.lock_file(&name).unwrap()).unwrap();
    assert_refused_as_symlink(&locks, &name);
    assert_eq!(
        std::fs::read_dir(&*elsewhere).unwrap().count(),
        0,
        "nothing created there"
    );
}

#[test]
fn a_dangling_symlink_at_the_lock_path_is_refused_and_nothing_is_created() {
    let dir = fresh_dir("symlink-dangling");
    let elsewhere = fresh_dir("symlink-dangling-target");
    let locks = LockDir::new(&dir);
    let name = unique("symlink-dangling");
    let nowhere = elsewhere.join("created-through-the-link");
    std::os::unix::fs::symlink(&nowhere, locks.lock_file(&name).unwrap()).unwrap();
    assert_refused_as_symlink(&locks, &name);
    assert!(!nowhere.exists(), "nothing created through a dangling link");
}

/// `flock -x -n <file> true` from another process: true if it got the lock.
fn flock_x_now(file: &Path) -> bool {
    let st = Command::new("flock")
        .args(["-x", "-n"])
        .arg(file)
        .arg("true")
        .stdin(Stdio::null())
        .status()
        .expect("run flock(1) (util-linux)");
    st.success()
}

#[test]
fn a_foreign_file_at_the_lock_path_is_locked_as_it_is_and_never_written() {
    let dir = fresh_dir("foreign");
    let d = dir.to_str().unwrap();
    let locks = LockDir::new(&dir);
    let name = unique("foreign");
    let file = locks.lock_file(&name).unwrap();
    std::fs::write(&file, b"123\n").unwrap();
    for mode in ["exclusive", "shared"] {
        let m = if mode == "shared" {
            Mode::Shared
        } else {
            Mode::Exclusive
        };
        let g = locks.lock(&name).mode(m).try_acquire().unwrap();
        assert!(g.is_file_lock());
        assert!(
            !flock_x_now(&file),
            "{mode}: another process's flock -x fails while held"
        );
        assert!(
            locks.holder(&name).is_none(),
            "{mode}: a foreign file names no holder"
        );
        assert_eq!(
            Child::run(&["probe", d, &name, mode]),
            if mode == "shared" {
                "ok"
            } else {
                "err 8406 holder=none"
            },
            "{mode}: a second process"
        );
        assert_eq!(
            Child::run(&["probe", d, &name, "exclusive"]),
            "err 8406 holder=none",
            "{mode}: a second process's Busy has no holder"
        );
        g.release().unwrap();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"123\n",
            "{mode}: bytes unchanged"
        );
    }
    // The waiting verbs too.
    let g = futures::executor::block_on(locks.acquire(&name)).unwrap();
    drop(g);
    drop(
        locks
            .blocking_acquire(&name, Some(Duration::from_secs(5)))
            .unwrap(),
    );
    let md = std::fs::metadata(&file).unwrap();
    assert_eq!(md.len(), 4, "size unchanged");
    assert_eq!(std::fs::read(&file).unwrap(), b"123\n");
    assert!(flock_x_now(&file), "free after release");
}

#[test]
fn an_existing_file_named_with_path_is_locked_as_it_is_and_never_written() {
    let dir = fresh_dir("path-file");
    let file = dir.join("other-tool.lock");
    let content = b"pid 999 owns this\n".to_vec();
    std::fs::write(&file, &content).unwrap();
    let name = unique("path-file");
    let f = file.to_str().unwrap();
    for mode in [Mode::Exclusive, Mode::Shared] {
        let g = Lock::new(&name)
            .path(&file)
            .mode(mode)
            .try_acquire()
            .unwrap();
        assert!(g.is_file_lock());
        assert!(!flock_x_now(&file), "{mode}: flock -x fails while held");
        assert_eq!(
            Child::run(&["probe-path", f, &name, "exclusive"]),
            "err 8406 holder=none",
            "{mode}: a second process is busy, with no holder"
        );
        drop(g);
        assert_eq!(
            std::fs::read(&file).unwrap(),
            content,
            "{mode}: bytes unchanged"
        );
    }
    let g = futures::executor::block_on(Lock::new(&name).path(&file).acquire()).unwrap();
    drop(g);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        content.len() as u64
    );
    assert_eq!(std::fs::read(&file).unwrap(), content);
    assert_eq!(Child::run(&["probe-path", f, &name, "exclusive"]), "ok");
}
