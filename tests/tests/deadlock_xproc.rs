//! Cycles of waits across processes, through file locks (issue #24): exactly one waiter
//! of each cycle gets `Deadlock` (8410) naming the locks and processes, the others get
//! their locks; no false report among processes that take locks in one order, with some
//! of them SIGKILLed; a SIGKILLed process leaves no edge behind.
//!
//! Each case runs child processes (this test binary again, with `XCYCLE_*` set). Children
//! meet at a barrier of files (each writes `ready-<i>` once it holds its first lock and
//! waits, bounded, until all are there) before they ask for their second lock, so the
//! cycle is certain to form; the parent bounds every child's run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lock_core::file::LockDir;
use lock_core::{LockError, LockGuard};

const LIMIT: Duration = Duration::from_secs(30);

fn fresh_dir(tag: &str) -> PathBuf {
    lock_core_tests::fresh_dir(&format!("xcycle-{tag}"))
}

/// Waits until `n` `ready-*` files are in `dir` (bounded: panics after 10 s).
fn barrier(dir: &Path, me: usize, n: usize) {
    std::fs::write(dir.join(format!("ready-{me}")), b"").unwrap();
    let start = Instant::now();
    loop {
        let ready = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("ready-"))
            .count();
        if ready >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "barrier timed out"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What a child says on stdout about its second lock.
fn outcome(r: Result<LockGuard, LockError>) -> String {
    match r {
        Ok(_) => "OUTCOME ok".to_owned(),
        Err(e) if e.code() == 8410 => format!("OUTCOME deadlock {e}"),
        Err(e) => format!("OUTCOME error {} {e}", e.code()),
    }
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

/// The child processes' entry point (this test binary, run again).
#[test]
#[ignore = "child-process entry point of deadlock_xproc"]
fn xcycle_child() {
    let case = env("XCYCLE_CASE");
    if case.is_empty() {
        return;
    }
    let dir = PathBuf::from(env("XCYCLE_DIR"));
    let me: usize = env("XCYCLE_ME").parse().unwrap();
    let n: usize = env("XCYCLE_N").parse().unwrap();
    let locks = LockDir::new(&dir);
    match case.as_str() {
        // Take lock `me`, meet, then ask for lock `me + 1` (a ring of n).
        "ring" => {
            let first = format!("xc-{me}");
            let second = format!("xc-{}", (me + 1) % n);
            let how = env("XCYCLE_HOW");
            let g1 = locks.blocking_acquire(&first, Some(LIMIT)).unwrap();
            barrier(&dir, me, n);
            let r = match how.as_str() {
                "blocking" => locks.blocking_acquire(&second, None),
                "timed" => locks.blocking_acquire(&second, Some(LIMIT)),
                "async" => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(locks.acquire(&second)),
                other => panic!("unknown way {other}"),
            };
            println!("{}", outcome(r));
            drop(g1);
        }
        // Process 0 of the mixed cycle: thread 1 holds file `m-f1` and asks for the
        // in-process lock `m-inproc`, which thread 2 holds while it asks for file `m-f2`.
        "mixed-p" => {
            let inproc = format!("m-inproc-{}", std::process::id());
            let f1 = locks.blocking_acquire("m-f1", Some(LIMIT)).unwrap();
            let (tx_held, rx_held) = std::sync::mpsc::channel();
            let (locks2, inproc2) = (locks.clone(), inproc.clone());
            let dir2 = dir.clone();
            let t2 = std::thread::spawn(move || {
                let l = lock_core::blocking_acquire(&inproc2, Some(LIMIT)).unwrap();
                tx_held.send(()).unwrap();
                barrier(&dir2, 0, 2);
                let r = locks2.blocking_acquire("m-f2", None);
                let said = outcome(r);
                drop(l);
                said
            });
            rx_held.recv().unwrap();
            // Waits in-process for thread 2 (registered: this thread holds `m-f1`).
            let r1 = lock_core::blocking_acquire(&inproc, Some(LIMIT));
            let said2 = t2.join().unwrap();
            println!("{said2}");
            println!("{}", outcome(r1));
            drop(f1);
        }
        // Process 1 of the mixed cycle: holds `m-f2`, then asks for `m-f1`.
        "mixed-q" => {
            let f2 = locks.blocking_acquire("m-f2", Some(LIMIT)).unwrap();
            barrier(&dir, 1, 2);
            println!("{}", outcome(locks.blocking_acquire("m-f1", None)));
            drop(f2);
        }
        // Random pairs of four locks, always in sorted order, with random holds; says how
        // often a wait lasted long enough to be chased.
        "sorted" => {
            let until = Instant::now() + Duration::from_millis(env("XCYCLE_MS").parse().unwrap());
            let mut seed = (std::process::id() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move |m: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % m
            };
            let (mut chased, mut rounds) = (0u32, 0u32);
            while Instant::now() < until {
                let a = next(4);
                let b = (a + 1 + next(3)) % 4;
                let (a, b) = (a.min(b), a.max(b));
                let t = Instant::now();
                let g1 = locks
                    .blocking_acquire(&format!("s-{a}"), Some(LIMIT))
                    .unwrap_or_else(|e| panic!("OUTCOME error {} {e}", e.code()));
                let g2 = locks
                    .blocking_acquire(&format!("s-{b}"), Some(LIMIT))
                    .unwrap_or_else(|e| panic!("OUTCOME error {} {e}", e.code()));
                if t.elapsed() > Duration::from_millis(60) {
                    chased += 1;
                }
                std::thread::sleep(Duration::from_millis(next(15)));
                drop((g2, g1));
                rounds += 1;
            }
            println!("OUTCOME ok rounds={rounds} chased={chased}");
        }
        // Holds `k-a`, then waits for `k-b` (held by the parent's helper); the parent
        // SIGKILLs it mid-wait.
        "killed" => {
            let _a = locks.blocking_acquire("k-a", Some(LIMIT)).unwrap();
            let other = LockDir::new(env("XCYCLE_DIR2"));
            let _b = other.blocking_acquire("k-b", None);
            unreachable!("SIGKILLed before it gets k-b");
        }
        other => panic!("unknown case {other}"),
    }
}

fn spawn(case: &str, dir: &Path, me: usize, n: usize, extra: &[(&str, &str)]) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "xcycle_child", "--ignored", "--nocapture"])
        .env("XCYCLE_CASE", case)
        .env("XCYCLE_DIR", dir)
        .env("XCYCLE_ME", me.to_string())
        .env("XCYCLE_N", n.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        c.env(k, v);
    }
    c.spawn().expect("spawn a child")
}

/// Waits for `child` (killing it after `LIMIT`) and returns its `OUTCOME` lines, or a
/// description of how it failed.
fn finish(mut child: Child) -> Vec<String> {
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let lines: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("OUTCOME "))
        .map(str::to_owned)
        .collect();
    match status {
        Some(s) if s.success() => lines,
        Some(s) => vec![format!("failed {s}: {out}{err}")],
        None => vec![format!("hung, killed after {LIMIT:?}: {out}{err}")],
    }
}

fn ring(n: usize, how: &str) {
    let dir = fresh_dir(&format!("ring{n}-{how}"));
    let start = Instant::now();
    let children: Vec<Child> = (0..n)
        .map(|i| spawn("ring", &dir, i, n, &[("XCYCLE_HOW", how)]))
        .collect();
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let outcomes: Vec<String> = children.into_iter().flat_map(finish).collect();
    let took = start.elapsed();
    let deadlocks: Vec<&String> = outcomes
        .iter()
        .filter(|o| o.starts_with("deadlock"))
        .collect();
    let oks = outcomes.iter().filter(|o| *o == "ok").count();
    assert_eq!(
        (deadlocks.len(), oks),
        (1, n - 1),
        "exactly one Deadlock, the rest get their locks: {outcomes:#?}"
    );
    let report = deadlocks[0];
    for i in 0..n {
        assert!(
            report.contains(&format!("`xc-{i}`")),
            "names lock xc-{i}: {report}"
        );
    }
    let named = pids
        .iter()
        .filter(|p| {
            report.contains(&format!("process {p} ")) || report.contains(&format!("pid {p})"))
        })
        .count();
    assert_eq!(named, n, "names every process ({pids:?}): {report}");
    assert!(
        report.contains("taken in"),
        "says where the locks were taken: {report}"
    );
    assert!(took < Duration::from_secs(15), "found in seconds: {took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_processes_in_abba_one_gets_deadlock_blocking() {
    ring(2, "blocking");
}

#[test]
fn two_processes_in_abba_one_gets_deadlock_async() {
    ring(2, "async");
}

#[test]
fn two_processes_in_abba_one_gets_deadlock_timed() {
    ring(2, "timed");
}

#[test]
fn three_processes_in_a_ring_one_gets_deadlock() {
    ring(3, "blocking");
}

#[test]
fn three_processes_in_a_ring_one_gets_deadlock_async() {
    ring(3, "async");
}

#[test]
fn a_cycle_through_an_in_process_lock_and_two_files_is_found() {
    let dir = fresh_dir("mixed");
    let p = spawn("mixed-p", &dir, 0, 2, &[]);
    let q = spawn("mixed-q", &dir, 1, 2, &[]);
    let mut outcomes = finish(p);
    outcomes.extend(finish(q));
    let deadlocks = outcomes
        .iter()
        .filter(|o| o.starts_with("deadlock"))
        .count();
    let oks = outcomes.iter().filter(|o| *o == "ok").count();
    // P's two threads and Q: one of the two file waits is the victim.
    assert_eq!((deadlocks, oks), (1, 2), "{outcomes:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_false_report_among_eight_processes_in_sorted_order_with_sigkills() {
    let dir = fresh_dir("sorted");
    let run_ms = 20_000u64;
    let mut children: Vec<Child> = (0..8)
        .map(|i| spawn("sorted", &dir, i, 8, &[("XCYCLE_MS", &run_ms.to_string())]))
        .collect();
    // SIGKILL three of them at spread-out moments (holding or waiting, as it falls), and
    // start a fresh one in each one's place.
    let mut killed = Vec::new();
    for k in 0..3 {
        std::thread::sleep(Duration::from_millis(3000 + 2000 * k));
        let mut victim = children.remove(k as usize);
        victim.kill().unwrap();
        victim.wait().unwrap();
        killed.push(victim.id());
        children.push(spawn(
            "sorted",
            &dir,
            8 + k as usize,
            8,
            &[("XCYCLE_MS", "8000")],
        ));
    }
    let outcomes: Vec<String> = children.into_iter().flat_map(finish).collect();
    assert_eq!(outcomes.len(), 8, "{outcomes:#?}");
    assert!(
        outcomes.iter().all(|o| o.starts_with("ok ")),
        "no Deadlock, no timeout: {outcomes:#?}"
    );
    let chased: u32 = outcomes
        .iter()
        .filter_map(|o| o.rsplit("chased=").next()?.parse::<u32>().ok())
        .sum();
    assert!(
        chased > 20,
        "enough waits lasted past the chase threshold to test it ({chased}): {outcomes:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_waiter_sigkilled_mid_cycle_leaves_no_edge_behind() {
    // Two directories: the child's links file (in `k-a`'s) is not swept by this
    // process's own publication (in `k-b`'s), so only the liveness checks keep the dead
    // child's edges out.
    let dir = fresh_dir("killed");
    let dir2 = fresh_dir("killed-b");
    let locks = LockDir::new(&dir);
    // This thread holds `k-b` and, below, waits for `k-a`: with the dead child's edges
    // taken at their word, that would close a cycle back to this very wait.
    let b = LockDir::new(&dir2)
        .blocking_acquire("k-b", Some(LIMIT))
        .unwrap();
    let mut child = spawn(
        "killed",
        &dir,
        0,
        1,
        &[("XCYCLE_DIR2", dir2.to_str().unwrap())],
    );
    let start = Instant::now();
    // The child holds `k-a` and has waited for `k-b` long enough to publish its links.
    let links = dir.join(format!(".lock-core-waits-{}", child.id()));
    while !links.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the child publishes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Its page entries and links are stale now: holding `k-b` (here) and waiting for
    // `k-a` — held by a live process that waits for nothing — must not be a cycle.
    let outsider = spawn_holder(&dir);
    let t = Instant::now();
    let a = locks.blocking_acquire("k-a", Some(Duration::from_secs(10)));
    assert!(a.is_ok(), "no Deadlock from a dead process's edges: {a:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "waited for the outsider to let go"
    );
    drop((a, b));
    let _ = finish(outsider);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

/// A process that holds `k-a` for 400 ms (it waits for nothing).
fn spawn_holder(dir: &Path) -> Child {
    let locks = LockDir::new(dir);
    let path = locks.lock_file("k-a").unwrap();
    let child = Command::new("flock")
        .arg(&path)
        .args(["sleep", "0.4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flock(1)");
    // Until flock(1) holds it.
    let start = Instant::now();
    while locks.try_acquire("k-a").is_ok() {
        assert!(start.elapsed() < Duration::from_secs(10), "flock takes k-a");
        std::thread::sleep(Duration::from_millis(2));
    }
    child
}

/// The nextest fixture (`tests/fixtures/nextest_abba`): two tests in ABBA, each its own
/// process under cargo-nextest; one fails with `Deadlock` within seconds (not a timeout,
/// not a hang), the other passes.
#[test]
fn under_nextest_two_tests_in_abba_fail_one_with_deadlock() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let has_nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_nextest,
        "cargo-nextest is needed (scripts/test installs it): cargo install cargo-nextest --locked"
    );
    let dir = fresh_dir("nextest");
    let start = Instant::now();
    let mut child = Command::new("cargo")
        .args(["nextest", "run", "--no-fail-fast", "--test-threads", "2"])
        .current_dir(here.join("fixtures/nextest_abba"))
        .env("CARGO_TARGET_DIR", here.join("../target/fixtures"))
        .env("ABBA_DIR", &dir)
        .env_remove("NEXTEST_RUN_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cargo nextest");
    // Building the fixture may take a while on a cold target directory; the run itself
    // is bounded by its tests' own barrier and the assertions below.
    let limit = Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("cargo nextest did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(!status.success(), "one test fails: {text}");
    // Each test's verdict line (the summary repeats failures: count tests, not lines).
    let verdict = |word: &str| {
        let mut tests: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with(&format!("{word} [")))
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        tests.sort_unstable();
        tests.dedup();
        tests.len()
    };
    assert_eq!((verdict("PASS"), verdict("FAIL")), (1, 1), "{text}");
    assert!(
        text.contains("Deadlock"),
        "the failure is a Deadlock: {text}"
    );
    assert!(
        text.contains("\"fixtures-db\"") && text.contains("\"fixtures-cache\""),
        "naming both fixtures: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
