//! Fairness across processes (issue #13): two processes each take one file lock 40
//! times (2 ms holds, re-asking at once); while one waits, the other takes at most three
//! turns. One test per kind of wait. Timestamps are CLOCK_MONOTONIC, shared by both.

mod file_support;

use file_support::{fresh_dir, Child};
use lock_core_tests::unique;

const TURNS: usize = 40;

/// One process's trace: (wait started, acquired) per turn, in ns.
fn trace(c: &mut Child) -> Vec<(u128, u128)> {
    let mut out = Vec::new();
    let mut wait = None;
    loop {
        let line = c.line();
        if line == "done" {
            break;
        }
        let (tag, ns) = line.split_once(' ').expect("a trace line");
        let ns: u128 = ns.parse().unwrap();
        match tag {
            "w" => wait = Some(ns),
            "a" => out.push((wait.take().expect("a wait before each turn"), ns)),
            other => panic!("unexpected line {other} {ns}"),
        }
    }
    out
}

/// The most turns `other` took inside one wait of `waiter`.
fn most_turns_during_a_wait(waiter: &[(u128, u128)], other: &[(u128, u128)]) -> usize {
    waiter
        .iter()
        .map(|&(w, a)| other.iter().filter(|&&(_, t)| t > w && t < a).count())
        .max()
        .unwrap_or(0)
}

/// Waits that really waited (the other process held the lock), at least 1 ms.
fn contended(t: &[(u128, u128)]) -> usize {
    t.iter().filter(|(w, a)| a - w >= 1_000_000).count()
}

fn two_processes_take_turns(kind: &str) {
    let dir = fresh_dir(&format!("fair-{kind}"));
    let d = dir.to_str().unwrap();
    let name = unique("fair");
    let turns = TURNS.to_string();
    let mut children: Vec<Child> = (0..2)
        .map(|_| Child::spawn(&["turns", d, &name, &turns, "2", kind]))
        .collect();
    for c in &mut children {
        assert_eq!(c.line(), "ready");
    }
    for c in &mut children {
        c.send("go");
    }
    let a = trace(&mut children[0]);
    let b = trace(&mut children[1]);
    for c in &mut children {
        c.close_stdin();
        c.wait_exit();
    }
    assert_eq!((a.len(), b.len()), (TURNS, TURNS));
    assert!(
        contended(&a) >= 5 && contended(&b) >= 5,
        "{kind}: the processes hardly competed ({} / {} waits)",
        contended(&a),
        contended(&b)
    );
    let (ab, ba) = (
        most_turns_during_a_wait(&a, &b),
        most_turns_during_a_wait(&b, &a),
    );
    println!("{kind}: most turns of the other during one wait: {ab} / {ba}");
    assert!(
        ab <= 3 && ba <= 3,
        "{kind}: one process took {} turns in a row while the other waited",
        ab.max(ba)
    );
}

#[test]
fn two_processes_take_turns_with_async_waits() {
    two_processes_take_turns("async");
}

#[test]
fn two_processes_take_turns_with_blocking_waits() {
    two_processes_take_turns("blocking");
}

#[test]
fn two_processes_take_turns_with_blocking_waits_with_a_timeout() {
    two_processes_take_turns("blocking-timeout");
}
