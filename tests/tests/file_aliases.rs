//! One file is one lock: within a process, the in-process part of a file lock belongs to
//! the file (device and inode), not to the name used to reach it. Two names on one
//! `path`, or a name in a directory and a `path` to its file, exclude each other in-process
//! as they do across processes; the same chain asking again under another name is
//! re-entry; a release never unlocks the file under another holder of the process.

mod file_support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use file_support::{bump, fresh_dir, read_counter, Overlap};
use lock_core::file::LockDir;
use lock_core::{Lock, LockError, Mode};

/// Bounds every wait of these tests: a regression fails in seconds, never hangs.
const BOUND: Duration = Duration::from_secs(20);

/// Whether another process (util-linux `flock -n`) could take the file's lock now, in
/// `mode` ("-x" or "-s").
fn outsider_can_lock(path: &Path, mode: &str) -> bool {
    let status = Command::new("flock")
        .args(["-n", mode])
        .arg(path)
        .arg("true")
        .status()
        .expect("run flock(1)");
    status.success()
}

fn busy_reentrant(r: Result<lock_core::LockGuard, LockError>) -> LockError {
    match r {
        Err(
            e @ LockError::Busy {
                reentrant: true, ..
            },
        ) => e,
        other => panic!("expected re-entry (Busy, reentrant), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_names_on_one_path_exclude_each_other_in_process() {
    let dir = fresh_dir("alias-two-names");
    let path = dir.join("shared.lock");
    let a = Lock::new("alias-pa").path(&path).try_acquire().unwrap();
    // Another task, another name, same file: refused, and a bounded wait times out.
    let (p2, p3) = (path.clone(), path.clone());
    let other = tokio::spawn(async move { Lock::new("alias-pb").path(&p2).try_acquire() })
        .await
        .unwrap();
    match other {
        Err(LockError::Busy {
            name,
            reentrant: false,
            reason,
            ..
        }) => {
            assert_eq!(name, "alias-pb", "names the lock asked for");
            assert!(
                reason.unwrap_or_default().contains("another name"),
                "says why"
            );
        }
        other => panic!("the second name must not get the file: {other:?}"),
    }
    let timed = tokio::spawn(async move {
        Lock::new("alias-pb")
            .path(&p3)
            .timeout(Duration::from_millis(100))
            .acquire()
            .await
    })
    .await
    .unwrap();
    assert!(
        matches!(timed, Err(LockError::Timeout { ref name, .. }) if name == "alias-pb"),
        "{timed:?}"
    );
    drop(a);
    let b = Lock::new("alias-pb")
        .path(&path)
        .try_acquire()
        .expect("free now");
    assert!(!outsider_can_lock(&path, "-s"), "held for other processes");
    drop(b);
    assert!(outsider_can_lock(&path, "-x"), "free for other processes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_in_a_directory_and_a_path_to_its_file_are_one_lock() {
    let dir = fresh_dir("alias-dir-path");
    let locks = LockDir::new(&*dir);
    let file = locks.lock_file("alias-pc").unwrap();
    let held = locks.try_acquire("alias-pc").unwrap();
    // The same task asks for the same file under another name: re-entry at once, not a
    // wait for ever.
    let again = tokio::time::timeout(BOUND, Lock::new("alias-pd").path(&file).acquire())
        .await
        .expect("re-entry must be refused at once, not wait");
    let e = busy_reentrant(again);
    assert_eq!(e.name(), "alias-pd");
    assert!(e.to_string().contains("under another name"), "{e}");
    // Blocking and try verbs say the same.
    busy_reentrant(Lock::new("alias-pd").path(&file).try_acquire());
    drop(held);
    // And the other way round: a path first, then the name in its directory.
    let by_path = Lock::new("alias-pd").path(&file).acquire().await.unwrap();
    busy_reentrant(
        tokio::time::timeout(BOUND, locks.acquire("alias-pc"))
            .await
            .expect("refused at once"),
    );
    drop(by_path);
    drop(locks.try_acquire("alias-pc").expect("free"));
}

#[test]
fn a_thread_asking_for_its_file_under_another_name_is_reentrant() {
    let dir = fresh_dir("alias-thread");
    let path = dir.join("t.lock");
    let held = Lock::new("alias-ta")
        .path(&path)
        .blocking_acquire()
        .unwrap();
    busy_reentrant(
        Lock::new("alias-tb")
            .path(&path)
            .timeout(BOUND)
            .blocking_acquire(),
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_holders_under_two_names_keep_the_file_locked_until_the_last_goes() {
    let dir = fresh_dir("alias-shared");
    let path = dir.join("s.lock");
    let a = Lock::new("alias-sa")
        .path(&path)
        .shared()
        .try_acquire()
        .unwrap();
    let p2 = path.clone();
    let b = tokio::spawn(async move { Lock::new("alias-sb").path(&p2).shared().try_acquire() })
        .await
        .unwrap()
        .expect("shared holders under two names overlap");
    assert!(!outsider_can_lock(&path, "-x"), "locked for writers");
    drop(a);
    assert!(
        !outsider_can_lock(&path, "-x"),
        "releasing one name must not unlock the file under the other"
    );
    assert!(outsider_can_lock(&path, "-s"), "readers may join");
    drop(b);
    assert!(outsider_can_lock(&path, "-x"), "free once the last goes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_alias_in_one_task_is_reentrant() {
    let dir = fresh_dir("alias-shared-reentry");
    let path = dir.join("r.lock");
    let a = Lock::new("alias-ra")
        .path(&path)
        .shared()
        .acquire()
        .await
        .unwrap();
    busy_reentrant(
        tokio::time::timeout(BOUND, Lock::new("alias-rb").path(&path).shared().acquire())
            .await
            .expect("refused at once"),
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_file_under_two_names_with_two_counts_is_a_mismatch() {
    let dir = fresh_dir("alias-counted");
    let path = dir.join("c.lock");
    let a = Lock::new("alias-ca")
        .path(&path)
        .permits(2)
        .try_acquire()
        .unwrap();
    let (p2, p3) = (path.clone(), path.clone());
    let other =
        tokio::spawn(async move { Lock::new("alias-cb").path(&p2).permits(3).try_acquire() })
            .await
            .unwrap();
    match other {
        Err(LockError::Mismatch { name, asked, .. }) => {
            assert_eq!(name, "alias-cb");
            assert_eq!(asked, Mode::Permits(3));
        }
        other => panic!("expected Mismatch: {other:?}"),
    }
    // The same count under another name is the same counted lock: one more permit.
    let b = tokio::spawn(async move { Lock::new("alias-cb").path(&p3).permits(2).try_acquire() })
        .await
        .unwrap()
        .expect("the second permit");
    let p4 = path.clone();
    let third =
        tokio::spawn(async move { Lock::new("alias-cc").path(&p4).permits(2).try_acquire() })
            .await
            .unwrap();
    assert!(
        matches!(third, Err(LockError::Busy { .. })),
        "two permits in all: {third:?}"
    );
    drop((a, b));
}

/// Tasks and threads, each reaching one file under its own name (by `path`, and by name
/// in its directory): never two inside at once, and no lost update of a counter file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_names_on_one_file_never_overlap() {
    const STEPS: usize = 40;
    let dir = fresh_dir("alias-stress");
    let locks = LockDir::new(&*dir);
    let file = locks.lock_file("alias-stress-dir").unwrap();
    let counter = Arc::new(dir.join("counter.txt"));
    let overlap = Arc::new(Overlap::default());
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (file, counter, overlap) = (file.clone(), counter.clone(), overlap.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("alias-stress-task-{i}");
            for _ in 0..STEPS {
                let g = Lock::new(&name)
                    .path(&file)
                    .timeout(BOUND)
                    .acquire()
                    .await
                    .unwrap();
                let inside = overlap.enter();
                bump(&counter);
                tokio::task::yield_now().await;
                drop(inside);
                drop(g);
            }
        }));
    }
    {
        let (locks, counter, overlap) = (locks.clone(), counter.clone(), overlap.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..STEPS {
                let g = locks
                    .acquire_timeout("alias-stress-dir", BOUND)
                    .await
                    .unwrap();
                let inside = overlap.enter();
                bump(&counter);
                tokio::task::yield_now().await;
                drop(inside);
                drop(g);
            }
        }));
    }
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let (file, counter, overlap) = (file.clone(), counter.clone(), overlap.clone());
            std::thread::spawn(move || {
                let name = format!("alias-stress-thread-{i}");
                for _ in 0..STEPS {
                    let g = Lock::new(&name)
                        .path(&file)
                        .timeout(BOUND)
                        .blocking_acquire()
                        .unwrap();
                    let inside = overlap.enter();
                    bump(&counter);
                    std::thread::yield_now();
                    drop(inside);
                    drop(g);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        overlap.max(),
        1,
        "two holders of one file were inside at once"
    );
    assert_eq!(read_counter(&counter), (7 * STEPS) as u64, "lost updates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zz_debug() {
    let dir = fresh_dir("alias-dbg");
    let locks = LockDir::new(&*dir);
    let file = locks.lock_file("alias-dbg").unwrap();
    let held = locks.try_acquire("alias-dbg").unwrap();
    eprintln!("file {file:?}");
    let r = Lock::new("alias-dbg2").path(&file).try_acquire();
    eprintln!("try: {r:?}");
    drop(r);
    let r = tokio::time::timeout(
        Duration::from_secs(1),
        Lock::new("alias-dbg2").path(&file).acquire(),
    )
    .await;
    eprintln!("acq: {r:?}");
    drop(held);
    let h = lock_core::try_acquire("dbg-plain").unwrap();
    let r = tokio::time::timeout(Duration::from_secs(1), lock_core::acquire("dbg-plain")).await;
    eprintln!("plain: {r:?}");
    drop(h);
    let h = locks.try_acquire("alias-dbg").unwrap();
    let r = tokio::time::timeout(Duration::from_secs(1), locks.acquire("alias-dbg")).await;
    eprintln!("samefile: {r:?}");
    drop(h);
}
