//! A test module whose tests share one fixture on disk, serialised with
//! `#[locked(name = "...", file)]`.
//!
//! `cargo test` runs these tests on threads of one process; `cargo nextest run` runs
//! each in its own process. A `file` lock excludes both: in-process callers queue on the
//! named lock, other processes on the lock file in the lock directory
//! (`$LOCK_CORE_DIR`, else `<temp>/lock-core`).
//!
//! Run: `cargo test -p lock-core-examples --test shared_fixture`
//! or:  `cargo nextest run -p lock-core-examples --test shared_fixture`

use std::path::PathBuf;

use lock_core::locked;

/// The shared fixture: one "database" file that every test resets and then uses.
fn fixture() -> PathBuf {
    std::env::temp_dir().join("lock-core-example-fixture.db")
}

/// Resets the fixture to a known state. Only safe while holding the fixture lock.
fn reset() -> std::io::Result<()> {
    std::fs::write(fixture(), "rows=0\n")
}

fn insert_rows(n: u32) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(fixture())?;
    let rows: u32 = text
        .trim()
        .strip_prefix("rows=")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    // Give a concurrent test the chance to interfere if the lock did not work.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(fixture(), format!("rows={}\n", rows + n))?;
    Ok(rows + n)
}

#[test]
#[locked(name = "example-fixture-db", file, timeout_ms = 60_000)]
fn inserts_one_row() -> std::io::Result<()> {
    reset()?;
    assert_eq!(insert_rows(1)?, 1);
    Ok(())
}

#[test]
#[locked(name = "example-fixture-db", file, timeout_ms = 60_000)]
fn inserts_many_rows() -> std::io::Result<()> {
    reset()?;
    assert_eq!(insert_rows(5)?, 5);
    assert_eq!(insert_rows(5)?, 10);
    Ok(())
}

/// Async tests take the same lock: `#[tokio::test]` and `#[locked]` in either order.
#[tokio::test]
#[locked(name = "example-fixture-db", file, timeout_ms = 60_000)]
async fn async_test_sees_a_clean_fixture() -> std::io::Result<()> {
    reset()?;
    let rows = tokio::task::spawn_blocking(|| insert_rows(2)).await??;
    assert_eq!(rows, 2);
    Ok(())
}

/// Returning `()` works too: a test that cannot take the lock panics, naming the lock
/// and who holds it.
#[locked(name = "example-fixture-db", file, timeout_ms = 60_000)]
#[test]
fn unit_test_without_result() {
    reset().unwrap();
    assert_eq!(insert_rows(3).unwrap(), 3);
}
