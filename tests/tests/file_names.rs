//! Lock names → lock files: every valid name stays inside the lock directory, distinct
//! names get distinct files, invalid names and unusable directories are clean errors.

mod file_support;

use std::collections::HashSet;

use file_support::{fresh_dir, Child};
use lock_core::file::LockDir;
use lock_core::LockError;

fn tricky_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "../x",
        "../../../../etc/passwd",
        "/abs",
        "/etc/passwd",
        "a/b",
        "a_b",
        "a_2fb",
        "a\\b",
        ".",
        "..",
        "...",
        "./.",
        "~",
        "~root",
        "A",
        "a",
        "日本語/名前",
        "emoji 🔒",
        " ",
        "_",
        "con",
        "x.lock",
        "%2e%2e",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    names.push("x".repeat(256));
    names.push("/".repeat(256));
    names.push(format!("{}a", "/".repeat(255)));
    names.push(format!("{}b", "/".repeat(255)));
    names.push("é".repeat(128));
    names.push("../".repeat(85));
    // Every name here is distinct and valid.
    assert_eq!(names.iter().collect::<HashSet<_>>().len(), names.len());
    for n in &names {
        lock_core::validate_name(n).unwrap();
    }
    names
}

#[test]
fn traversal_names_stay_inside_the_directory_and_never_share_a_file() {
    let base = fresh_dir("names");
    let dir = base.join("locks");
    let locks = LockDir::new(&dir);
    let names = tricky_names();
    // All held at once: distinct names must not exclude each other.
    let guards: Vec<_> = names
        .iter()
        .map(|n| {
            locks
                .try_acquire(n)
                .unwrap_or_else(|e| panic!("{n:?}: {e}"))
        })
        .collect();
    for n in &names {
        let f = locks.lock_file(n).unwrap();
        assert_eq!(f.parent(), Some(locks.path()), "{n:?} -> {}", f.display());
        assert!(f.file_name().unwrap().len() <= 255, "{n:?}");
        assert!(locks.is_locked(n), "{n:?}");
    }
    // Lock files only: with the lock-order checker on (`--all-features`), its order log
    // (a dot file) lives in the directory too.
    let is_lock_file = |e: &std::fs::DirEntry| !e.file_name().to_string_lossy().starts_with('.');
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(is_lock_file)
        .collect();
    assert_eq!(entries.len(), names.len(), "one file per name");
    for e in &entries {
        assert!(e.file_type().unwrap().is_file(), "{:?}", e.path());
        assert_eq!(e.path().parent(), Some(dir.as_path()));
    }
    // Nothing appeared next to the lock directory.
    let beside: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, vec![std::ffi::OsString::from("locks")]);
    // Another process maps the names the same way.
    let d = dir.to_str().unwrap();
    for n in ["../x", "a/b", "..", &"/".repeat(256)] {
        assert_eq!(Child::run(&["is-locked", d, n]), "true", "{n:?}");
    }
    drop(guards);
    assert_eq!(Child::run(&["try", d, "a/b"]), "ok");
    // Files are never deleted.
    assert_eq!(
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(is_lock_file)
            .count(),
        names.len()
    );
}

#[tokio::test]
async fn invalid_names_are_refused_by_every_verb() {
    let dir = fresh_dir("invalid");
    let locks = LockDir::new(&dir);
    let long = "x".repeat(257);
    for bad in ["", "tab\there", "nl\n", "nul\0", long.as_str()] {
        let check = |r: Result<lock_core::LockGuard, LockError>| {
            let e = r.unwrap_err();
            assert!(matches!(e, LockError::InvalidName { .. }), "{bad:?}: {e}");
            assert_eq!(e.code(), 8405);
        };
        check(locks.try_acquire(bad));
        check(locks.acquire(bad).await);
        check(locks.blocking_acquire(bad, None));
        check(lock_core::file::try_acquire(bad));
        check(lock_core::file::acquire_timeout(bad, std::time::Duration::from_millis(1)).await);
        assert!(!locks.is_locked(bad));
        assert!(!lock_core::file::is_locked(bad));
        assert!(locks.lock_file(bad).is_err());
    }
    assert_eq!(std::fs::read_dir(locks.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn unusable_directories_are_io_errors_naming_the_lock_and_the_path() {
    let base = fresh_dir("io");
    let file = base.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let locks = LockDir::new(file.join("locks"));
    for r in [locks.try_acquire("io-lock"), locks.acquire("io-lock").await] {
        let e = r.unwrap_err();
        match &e {
            LockError::Io {
                name,
                path: Some(p),
                ..
            } => {
                assert_eq!(name, "io-lock");
                assert!(p.starts_with(&file), "{}", p.display());
            }
            other => panic!("expected Io, got {other}"),
        }
        assert_eq!(e.code(), 8407);
        let text = e.to_string();
        assert!(
            text.contains("`io-lock`") && text.contains("not-a-dir"),
            "{text}"
        );
        assert!(
            !lock_core::is_locked("io-lock"),
            "the in-process lock is given back"
        );
    }
    // The directory itself is a regular file: said so, not "File exists".
    let e = LockDir::new(&file).try_acquire("io-lock").unwrap_err();
    let text = e.to_string();
    assert!(text.contains("not a directory"), "{text}");
    assert!(!text.contains("File exists"), "{text}");
    // A directory that cannot be created (here: inside procfs).
    let e = LockDir::new("/proc/lock-core-cannot-create")
        .blocking_acquire("io-lock", None)
        .unwrap_err();
    assert!(matches!(e, LockError::Io { path: Some(_), .. }), "{e}");
}

#[test]
fn the_default_directory_is_used_by_the_free_functions() {
    let dir = lock_core::file::default_dir();
    assert!(dir.is_absolute());
    let name = format!("it-default-{}", std::process::id());
    let g = lock_core::file::try_acquire(&name).unwrap();
    assert!(LockDir::default().lock_file(&name).unwrap().exists());
    assert!(lock_core::file::is_locked(&name));
    assert!(LockDir::new(dir).is_locked(&name));
    g.release().unwrap();
    assert!(!lock_core::file::is_locked(&name));
}
