//! One process, many callers: tasks and threads using file locks (and in-process-only
//! callers of the same name) exclude each other, while another process competes too.

mod file_support;

use std::sync::Arc;
use std::time::Duration;

use file_support::{bump, fresh_dir, read_counter, Child, Overlap};
use lock_core::file::LockDir;
use lock_core::LockError;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_threads_and_another_process_exclude_each_other() {
    let dir = fresh_dir("mixed");
    let counter = Arc::new(dir.join("counter.txt"));
    let locks = LockDir::new(&dir);
    let overlap = Arc::new(Overlap::default());
    const NAME: &str = "mixed-counter";
    const STEPS: usize = 30;

    let mut child = Child::spawn(&[
        "counter",
        dir.to_str().unwrap(),
        NAME,
        counter.to_str().unwrap(),
        &STEPS.to_string(),
        "blocking",
    ]);

    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (locks, overlap, counter) = (locks.clone(), overlap.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..STEPS {
                let g = locks
                    .acquire_timeout(NAME, Duration::from_secs(30))
                    .await
                    .unwrap();
                let inside = overlap.enter();
                bump(&counter);
                tokio::task::yield_now().await;
                drop(inside);
                g.release().unwrap();
            }
        }));
    }
    let mut threads = Vec::new();
    for _ in 0..3 {
        let (locks, overlap, counter) = (locks.clone(), overlap.clone(), counter.clone());
        threads.push(std::thread::spawn(move || {
            for _ in 0..STEPS {
                let g = locks
                    .blocking_acquire(NAME, Some(Duration::from_secs(30)))
                    .unwrap();
                let inside = overlap.enter();
                bump(&counter);
                std::thread::yield_now();
                drop(inside);
                drop(g);
            }
        }));
    }
    // In-process-only callers of the same name are excluded in-process too.
    let mut locals = Vec::new();
    for _ in 0..2 {
        let overlap = overlap.clone();
        locals.push(tokio::spawn(async move {
            for _ in 0..STEPS {
                let g = lock_core::acquire_timeout(NAME, Duration::from_secs(30))
                    .await
                    .unwrap();
                let inside = overlap.enter();
                tokio::task::yield_now().await;
                drop(inside);
                drop(g);
            }
        }));
    }
    let all = async {
        for t in tasks.into_iter().chain(locals) {
            t.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("tasks finish");
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(child.line(), "done");
    child.close_stdin();
    child.wait_exit();
    assert_eq!(
        overlap.max(),
        1,
        "two callers of this process were inside at once"
    );
    assert_eq!(read_counter(&counter), (STEPS * (1 + 6 + 3)) as u64);
}

#[tokio::test]
async fn re_entry_into_a_held_file_lock_is_refused_not_deadlocked() {
    let dir = fresh_dir("reentry");
    let locks = LockDir::new(&dir);
    let g = locks.acquire("reentrant-file").await.unwrap();
    let inner = lock_core::scope(&g, async {
        let a = locks.try_acquire("reentrant-file");
        let b = locks.acquire("reentrant-file").await;
        (a, b)
    })
    .await;
    assert!(matches!(
        inner.0,
        Err(LockError::Busy {
            reentrant: true,
            ..
        })
    ));
    assert!(matches!(
        inner.1,
        Err(LockError::Busy {
            reentrant: true,
            ..
        })
    ));
    assert!(g.is_file_lock());
    drop(g);
    assert!(!locks.is_locked("reentrant-file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_of_one_process_queue_in_order_for_the_file_lock() {
    let dir = fresh_dir("fifo");
    let locks = LockDir::new(&dir);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let first = locks.acquire("fifo-file").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (locks, order) = (locks.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let g = locks.acquire("fifo-file").await.unwrap();
            order.lock().unwrap().push(i);
            drop(g);
        }));
        // Let each one queue before the next arrives.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(first);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
}
