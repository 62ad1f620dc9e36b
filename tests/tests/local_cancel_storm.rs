//! 10,000 random cancellations never wedge a lock nor leak a registry entry.
//! Alone in its binary: it compares the process-wide registry size.

use std::time::Duration;

use lock_core_tests::{unique, Rng};

#[test]
fn ten_thousand_random_cancellations_leave_the_lock_usable_and_the_registry_empty() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let baseline = lock_core::registered_names();
    let name = unique("cancel-storm");
    let mut rng = Rng::new(0x5eed_1234);
    rt.block_on(async {
        let mut cancelled = 0;
        let mut handles = Vec::new();
        while cancelled < 10_000 {
            let n = name.clone();
            let hold_us = rng.below(50);
            let timeout_us = rng.below(300);
            let abort_after_us = rng.below(300);
            let mode = rng.below(3);
            handles.push(tokio::spawn(async move {
                match mode {
                    // A waiter whose timeout may fire while queued.
                    0 => {
                        if let Ok(g) =
                            lock_core::acquire_timeout(&n, Duration::from_micros(timeout_us)).await
                        {
                            tokio::time::sleep(Duration::from_micros(hold_us)).await;
                            drop(g);
                        }
                    }
                    // A waiter raced against a timer and dropped when the timer wins.
                    1 => {
                        tokio::select! {
                            g = lock_core::acquire(&n) => { drop(g); }
                            _ = tokio::time::sleep(Duration::from_micros(abort_after_us)) => {}
                        }
                    }
                    // A holder that may itself be aborted (below) while holding or waiting.
                    _ => {
                        let g = lock_core::acquire(&n).await.unwrap();
                        tokio::time::sleep(Duration::from_micros(hold_us)).await;
                        drop(g);
                    }
                }
            }));
            cancelled += 1;
            if rng.below(4) == 0 {
                if let Some(h) = handles.get(rng.below(handles.len() as u64) as usize) {
                    h.abort();
                }
            }
            if handles.len() >= 64 {
                for h in handles.drain(..) {
                    let _ = tokio::time::timeout(Duration::from_secs(30), h)
                        .await
                        .expect("no task may hang");
                }
            }
        }
        for h in handles.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("no task may hang");
        }
        // Still usable, and free.
        assert!(!lock_core::is_locked(&name));
        let g = lock_core::acquire_timeout(&name, Duration::from_secs(1))
            .await
            .unwrap();
        drop(g);
    });
    assert_eq!(
        lock_core::registered_names(),
        baseline,
        "no entry left behind"
    );
}
