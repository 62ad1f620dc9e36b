//! The lock-order checker sees the whole test suite: orders between file locks of one
//! lock directory are shared through the directory, so an inversion between two
//! processes run one after the other (as nextest runs tests) is reported by the second,
//! naming the places in both.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lock_core::file::LockDir;

/// Takes `a`, then `b` (the first process's order).
fn a_then_b(dir: &Path) {
    let d = LockDir::new(dir);
    let a = d
        .blocking_acquire("xproc-a", Some(Duration::from_secs(10)))
        .unwrap();
    let b = d
        .blocking_acquire("xproc-b", Some(Duration::from_secs(10)))
        .unwrap();
    drop((b, a));
}

/// Takes `b`, then `a` (the second process's, inverted, order).
fn b_then_a(dir: &Path) {
    let d = LockDir::new(dir);
    let b = d
        .blocking_acquire("xproc-b", Some(Duration::from_secs(10)))
        .unwrap();
    let a = d
        .blocking_acquire("xproc-a", Some(Duration::from_secs(10)))
        .unwrap();
    drop((a, b));
}

/// The child processes' entry point (this test binary, run again).
#[test]
#[ignore = "child-process entry point of lockdep_xproc"]
fn lockdep_child() {
    let (Ok(case), Ok(dir)) = (
        std::env::var("LOCKDEP_XPROC_CASE"),
        std::env::var("LOCKDEP_XPROC_DIR"),
    ) else {
        return;
    };
    match case.as_str() {
        "ab" => a_then_b(Path::new(&dir)),
        "ba" => b_then_a(Path::new(&dir)),
        other => panic!("unknown case {other}"),
    }
}

fn child(case: &str, dir: &Path) -> std::process::Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lockdep_child", "--ignored", "--nocapture"])
        .env("LOCKDEP_XPROC_CASE", case)
        .env("LOCKDEP_XPROC_DIR", dir)
        .env("LOCK_CORE_LOCKDEP", "panic")
        .output()
        .expect("run the child")
}

#[test]
fn an_inversion_between_two_processes_is_reported_by_the_second_with_both_sites() {
    let dir = lock_core_tests::fresh_dir("lockdep-xproc");
    let first = child("ab", &dir);
    assert!(
        first.status.success(),
        "the first order is fine: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The same order again is fine too.
    assert!(child("ab", &dir).status.success());
    let second = child("ba", &dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        !second.status.success(),
        "the inverted order must fail: {text}"
    );
    assert!(text.contains("lock-order inversion"), "{text}");
    // Both places: this file's lines in a_then_b (first process) and b_then_a (second).
    let lines: Vec<usize> = text
        .match_indices("lockdep_xproc.rs:")
        .filter_map(|(i, m)| {
            text[i + m.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .collect();
    let src = include_str!("lockdep_xproc.rs");
    let line_of = |needle: &str| src.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let (ab, ba, end) = (
        line_of("fn a_then_b("),
        line_of("fn b_then_a("),
        line_of("fn lockdep_child("),
    );
    assert!(
        lines.iter().any(|&l| (ab..ba).contains(&l))
            && lines.iter().any(|&l| (ba..end).contains(&l)),
        "names the places of both processes ({lines:?}): {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
