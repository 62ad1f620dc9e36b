//! Shapes across processes (issue #13): the kind of a lock is one across processes
//! (Mismatch), shared holders of two processes overlap, a SIGKILLed shared or counted
//! holder frees its share at once, and `flock(1)` agrees with lock-core both ways.

mod file_support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use file_support::{fresh_dir, Child};
use lock_core::file::LockDir;
use lock_core::{Kind, LockError, Mode};
use lock_core_tests::unique;

const LIMIT: Duration = Duration::from_secs(10);

#[track_caller]
fn assert_mismatch(r: Result<lock_core::LockGuard, LockError>, kind: Kind, asked: Mode) {
    match r {
        Err(
            ref e @ LockError::Mismatch {
                kind: k, asked: a, ..
            },
        ) => {
            assert_eq!((k, a), (kind, asked), "{e}");
            assert_eq!(e.code(), 8411);
        }
        other => panic!("expected Mismatch({kind:?}, asked {asked:?}), got {other:?}"),
    }
}

// ---- item 16 ----

#[test]
fn a_counted_hold_in_another_process_makes_other_kinds_a_mismatch_here() {
    let dir = fresh_dir("xproc-mismatch");
    let locks = LockDir::new(&dir);
    let name = unique("xproc-mismatch");
    let mut child = Child::hold_mode(&dir, &name, "permits:2");
    let counted = Kind::Counted(2);
    assert_mismatch(
        locks.lock(&name).exclusive().try_acquire(),
        counted,
        Mode::Exclusive,
    );
    assert_mismatch(
        locks.lock(&name).permits(3).try_acquire(),
        counted,
        Mode::Permits(3),
    );
    assert_mismatch(
        locks.lock(&name).shared().try_acquire(),
        counted,
        Mode::Shared,
    );
    // Waiting verbs are refused at once too, not after their timeout.
    let start = Instant::now();
    let r = locks
        .lock(&name)
        .exclusive()
        .timeout(LIMIT)
        .blocking_acquire();
    assert_mismatch(r, counted, Mode::Exclusive);
    let r = futures::executor::block_on(locks.lock(&name).permits(3).timeout(LIMIT).acquire());
    assert_mismatch(r, counted, Mode::Permits(3));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // The same count joins the child's hold (the second of 2 permits).
    let g = locks.lock(&name).permits(2).try_acquire().unwrap();
    drop(g);
    assert!(!lock_core::is_locked(&name), "nothing left held in-process");
    child.release();
    // Free again: any kind.
    drop(locks.lock(&name).exclusive().try_acquire().unwrap());
}

#[test]
fn shared_holders_in_two_processes_overlap_and_exclude_writers() {
    let dir = fresh_dir("xproc-shared");
    let d = dir.to_str().unwrap();
    let locks = LockDir::new(&dir);
    let name = unique("xproc-shared");
    let mut first = Child::hold_mode(&dir, &name, "shared");
    // The second reports inside while the first still holds: both at once.
    let mut second = Child::spawn(&["hold-mode", d, &name, "shared", "5000"]);
    assert_eq!(second.line(), format!("locked {}", second.pid()));
    // And this process joins them, while writers are kept out everywhere.
    let g = locks.lock(&name).shared().try_acquire().unwrap();
    assert_eq!(
        Child::run(&["probe", d, &name, "exclusive"]),
        "err 8406 holder=".to_owned() + &first.pid().to_string()
    );
    drop(g);
    assert!(matches!(
        locks.lock(&name).exclusive().try_acquire(),
        Err(LockError::Busy { .. })
    ));
    first.release();
    second.release();
    drop(locks.lock(&name).exclusive().try_acquire().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_shared_holder_frees_its_share_at_once() {
    let dir = fresh_dir("xproc-kill-shared");
    let locks = LockDir::new(&dir);
    let name = unique("xproc-kill-shared");
    let mut holder = Child::hold_mode(&dir, &name, "shared");
    let waiter = {
        let (locks, name) = (locks.clone(), name.clone());
        tokio::spawn(async move {
            let r = locks.lock(&name).exclusive().timeout(LIMIT).acquire().await;
            (r.map(drop), Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the exclusive request waits for the shared child"
    );
    let killed = Instant::now();
    holder.kill();
    let (r, got) = tokio::time::timeout(LIMIT, waiter).await.unwrap().unwrap();
    r.unwrap();
    let took = got.duration_since(killed);
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_sigkilled_counted_holder_frees_its_permit_at_once() {
    let dir = fresh_dir("xproc-kill-counted");
    let locks = LockDir::new(&dir);
    let name = unique("xproc-kill-counted");
    let mut a = Child::hold_mode(&dir, &name, "permits:2");
    let mut b = Child::hold_mode(&dir, &name, "permits:2");
    assert!(matches!(
        locks.lock(&name).permits(2).try_acquire(),
        Err(LockError::Busy { .. })
    ));
    let n = name.clone();
    let waiter = std::thread::spawn(move || {
        let r = locks.lock(&n).permits(2).timeout(LIMIT).blocking_acquire();
        (r.map(drop), Instant::now())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !waiter.is_finished(),
        "both permits are held by the children"
    );
    let killed = Instant::now();
    a.kill();
    let (r, got) = waiter.join().unwrap();
    r.unwrap();
    let took = got.duration_since(killed);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    b.release();
}

// ---- item 17: flock(1) ----

/// `flock <how> -n <file> true`: true if flock(1) got the lock at once.
fn flock_now(how: &str, file: &Path) -> bool {
    let st = Command::new("flock")
        .args([how, "-n"])
        .arg(file)
        .arg("true")
        .stdin(Stdio::null())
        .status()
        .expect("run flock(1) (util-linux)");
    match st.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("flock {how} -n: unexpected exit {other:?}"),
    }
}

/// `flock -o <how> <file>` holding the lock (in its own process group) until dropped.
/// With `-o` only flock(1) itself holds the descriptor (not the command it runs), so
/// once it is reaped the lock is free.
struct FlockHolder(std::process::Child);

impl FlockHolder {
    fn start(how: &str, file: &Path) -> FlockHolder {
        let mut c = Command::new("flock")
            .args(["-o", how])
            .arg(file)
            .args(["sh", "-c", "echo locked; exec sleep 30"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("run flock(1) (util-linux)");
        let out = c.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let holder = FlockHolder(c);
        let line = rx.recv_timeout(LIMIT).expect("flock(1) took the lock");
        assert_eq!(line.trim(), "locked");
        holder
    }
}

impl Drop for FlockHolder {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group we created; no memory is involved.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn flock_setup(tag: &str) -> (file_support::TestDir, LockDir, String, std::path::PathBuf) {
    let dir = fresh_dir(tag);
    let locks = LockDir::new(&dir);
    let name = unique(tag);
    // Create the lock file the way lock-core does (with its page).
    drop(locks.try_acquire(&name).unwrap());
    let file = locks.lock_file(&name).unwrap();
    (dir, locks, name, file)
}

#[test]
fn flock_s_agrees_with_a_shared_hold_and_flock_x_does_not() {
    let (_dir, locks, name, file) = flock_setup("flock-vs-shared");
    let g = locks.lock(&name).shared().try_acquire().unwrap();
    assert!(flock_now("-s", &file), "flock -s beside a shared holder");
    assert!(!flock_now("-x", &file), "flock -x beside a shared holder");
    drop(g);
    let g = locks.lock(&name).exclusive().try_acquire().unwrap();
    assert!(
        !flock_now("-s", &file),
        "flock -s beside an exclusive holder"
    );
    assert!(
        !flock_now("-x", &file),
        "flock -x beside an exclusive holder"
    );
    drop(g);
    assert!(flock_now("-x", &file), "free again");
}

#[test]
fn a_flock_s_holder_admits_shared_and_refuses_exclusive() {
    let (_dir, locks, name, file) = flock_setup("flock-s-holder");
    let holder = FlockHolder::start("-s", &file);
    let g = locks
        .lock(&name)
        .shared()
        .try_acquire()
        .expect("shared beside flock -s");
    drop(g);
    match locks.lock(&name).exclusive().try_acquire() {
        Err(e @ LockError::Busy { .. }) => assert_eq!(e.code(), 8406),
        other => panic!("exclusive beside flock -s: {other:?}"),
    }
    drop(holder);
    drop(locks.lock(&name).exclusive().try_acquire().unwrap());
}

#[test]
fn a_flock_x_holder_refuses_shared() {
    let (_dir, locks, name, file) = flock_setup("flock-x-holder");
    let holder = FlockHolder::start("-x", &file);
    match locks.lock(&name).shared().try_acquire() {
        Err(e @ LockError::Busy { .. }) => assert_eq!(e.code(), 8406),
        other => panic!("shared beside flock -x: {other:?}"),
    }
    drop(holder);
    drop(locks.lock(&name).shared().try_acquire().unwrap());
}
