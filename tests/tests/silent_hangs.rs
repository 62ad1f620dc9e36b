//! No silent hangs: a wait that can be proven endless is refused; one that cannot (it
//! passes through spawned work) says on standard error what it waits for — in a test
//! suite with no feature or subscriber, even under `cargo test`'s output capture.
//!
//! Every test here is bounded: a regression fails in seconds, never hangs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lock_core::LockError;

const BOUND: Duration = Duration::from_secs(15);

/// Runs `f` on a thread of its own and fails the test if it does not finish in time.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(BOUND) {
        Ok(v) => v,
        Err(_) => panic!("{what}: still waiting after {BOUND:?} (a silent hang)"),
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A task of a current-thread runtime holds the lock until told to let go.
async fn hold_in_task(name: &'static str) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let g = lock_core::acquire(name).await.unwrap();
        let _ = held_tx.send(());
        let _ = rx.await;
        drop(g);
    });
    held_rx.await.unwrap();
    tx
}

fn assert_blocked_driver(r: Result<lock_core::LockGuard, LockError>) {
    match r {
        Err(LockError::Busy {
            reentrant: false,
            reason: Some(reason),
            holder,
            ..
        }) => {
            assert!(reason.contains("block_on"), "{reason}");
            assert!(holder.is_some(), "names the holder");
        }
        other => panic!("expected Busy with a reason, got {other:?}"),
    }
}

#[test]
fn block_on_of_an_async_acquire_in_a_task_of_the_holders_runtime_is_busy() {
    bounded("block_on in a task", || {
        current_thread().block_on(async {
            let release = hold_in_task("hang-cb-task").await;
            let r = tokio::spawn(async {
                futures::executor::block_on(lock_core::acquire("hang-cb-task"))
            })
            .await
            .unwrap();
            assert_blocked_driver(r);
            let _ = release.send(());
        })
    });
}

#[test]
fn block_on_of_an_async_acquire_in_the_root_future_is_busy() {
    bounded("block_on in block_on", || {
        current_thread().block_on(async {
            let release = hold_in_task("hang-cb-root").await;
            let r = futures::executor::block_on(lock_core::acquire("hang-cb-root"));
            assert_blocked_driver(r);
            let _ = release.send(());
        })
    });
}

/// The check never refuses a wait that Tokio drives: the holder lets go later, and the
/// waiter, on the same current-thread runtime, gets the lock.
#[test]
fn a_tokio_driven_wait_on_the_holders_thread_is_not_refused() {
    bounded("a tokio-driven wait", || {
        current_thread().block_on(async {
            let release = hold_in_task("hang-cb-fine").await;
            let waiter = tokio::spawn(lock_core::acquire("hang-cb-fine"));
            // Past the check's look (tens of milliseconds), then let go.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let _ = release.send(());
            drop(waiter.await.unwrap().expect("the waiter gets the lock"));
        })
    });
}

/// A guard taken with a sync verb in the root future of `block_on`, asked for again
/// with an async verb in the same future: re-entry, not a wait for ever.
#[test]
fn a_root_future_asking_again_for_a_sync_verbs_guard_is_reentrant() {
    for rt in [
        current_thread(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    ] {
        bounded("re-entry in the root future", move || {
            rt.block_on(async {
                let g = lock_core::try_acquire("hang-root-again").unwrap();
                let r = lock_core::acquire("hang-root-again").await;
                assert!(
                    matches!(
                        r,
                        Err(LockError::Busy {
                            reentrant: true,
                            ..
                        })
                    ),
                    "{r:?}"
                );
                drop(g);
            })
        });
    }
}

// ---------------------------------------------------------------------------------------
// Waits through spawned work: visible on standard error.

#[lock_core::locked(name = "hang-ts")]
async fn locked_then_spawned_task() {
    let _ = tokio::spawn(async { lock_core::acquire("hang-ts").await }).await;
}

#[lock_core::locked(name = "hang-sb")]
async fn locked_then_spawn_blocking() {
    let _ = tokio::task::spawn_blocking(|| lock_core::blocking_acquire("hang-sb", None).map(drop))
        .await;
}

#[lock_core::locked(name = "hang-th")]
fn locked_then_scoped_thread() {
    std::thread::scope(|s| {
        let _ = s
            .spawn(|| lock_core::blocking_acquire("hang-th", None).map(drop))
            .join();
    });
}

/// The hung test, run by [`a_hung_test_says_on_stderr_what_it_waits_for`] as a child
/// process (this same test binary, output captured as `cargo test` does by default).
#[test]
#[ignore = "child-process entry point of silent_hangs: it hangs on purpose"]
fn hang_child() {
    let Ok(case) = std::env::var("LOCK_CORE_HANG_CASE") else {
        return;
    };
    // Never outlive the parent's patience.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        std::process::exit(3);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match case.as_str() {
        "task" => rt.block_on(locked_then_spawned_task()),
        "spawn_blocking" => rt.block_on(locked_then_spawn_blocking()),
        "thread" => locked_then_scoped_thread(),
        other => panic!("unknown case {other}"),
    }
}

/// Runs the hung child for `case` and returns the first line of its standard error that
/// reports a slow wait for `name`.
fn slow_wait_line(case: &str, name: &str) -> String {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hang_child", "--ignored", "--test-threads", "1"])
        .env("LOCK_CORE_HANG_CASE", case)
        .env_remove("LOCK_CORE_SLOW_WAIT_MS")
        .env_remove("NEXTEST")
        .env_remove("NEXTEST_RUN_ID")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + BOUND;
    let mut seen = Vec::new();
    let found = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("still waiting") && line.contains(name) => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    found.unwrap_or_else(|| panic!("{case}: no slow-wait line on stderr; saw {seen:?}"))
}

#[test]
fn a_hung_test_says_on_stderr_what_it_waits_for() {
    let cases = [
        ("task", "hang-ts", "locked_then_spawned_task"),
        ("spawn_blocking", "hang-sb", "locked_then_spawn_blocking"),
        ("thread", "hang-th", "locked_then_scoped_thread"),
    ];
    let found: Vec<_> = cases
        .iter()
        .map(|&(case, name, _)| std::thread::spawn(move || slow_wait_line(case, name)))
        .collect();
    for (t, (case, name, func)) in found.into_iter().zip(cases) {
        let line = t.join().unwrap();
        assert!(line.starts_with("lock-core: "), "{case}: {line}");
        assert!(line.contains(&format!("`{name}`")), "{case}: {line}");
        assert!(
            line.contains("silent_hangs.rs") || line.contains(func),
            "{case}: says where the lock was taken: {line}"
        );
    }
}
