//! 10,000 random cancellations across modes (issue #13) leave nothing held, nothing
//! registered and no wake-up registration behind. Alone in its binary: it compares
//! process-wide counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lock_core::{Lock, Mode};
use lock_core_tests::{eventually, unique, Rng};

const CANCELLATIONS: usize = 10_000;

#[test]
fn ten_thousand_random_cancellations_across_modes_leave_nothing_behind() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let baseline = lock_core::registered_names();
    let rw = Arc::new(unique("storm-rw"));
    let counted = Arc::new(unique("storm-counted"));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let granted = Arc::new(AtomicUsize::new(0));
    let mut rng = Rng::new(0x5eed_4321);
    rt.block_on(async {
        let mut batches = 0;
        while cancelled.load(Ordering::SeqCst) < CANCELLATIONS {
            batches += 1;
            // 64 requests a batch: at least one cancellation per batch on average.
            assert!(batches <= CANCELLATIONS, "too few timeouts fired");
            let mut handles = Vec::new();
            for _ in 0..64 {
                // Mostly the lock's own kind; now and then a mismatched request.
                let (name, mode) = match rng.below(10) {
                    0..=3 => (rw.clone(), Mode::Exclusive),
                    4..=6 => (rw.clone(), Mode::Shared),
                    7 | 8 => (counted.clone(), Mode::Permits(3)),
                    _ => (rw.clone(), Mode::Permits(2)),
                };
                let wait = Duration::from_micros(rng.below(1_500));
                let hold = Duration::from_micros(rng.below(300));
                let (cancelled, granted) = (cancelled.clone(), granted.clone());
                handles.push(tokio::spawn(async move {
                    let acquire = Lock::new(&name).mode(mode).acquire();
                    match tokio::time::timeout(wait, acquire).await {
                        Err(_) => {
                            cancelled.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Ok(g)) => {
                            granted.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(hold).await;
                            drop(g);
                        }
                        // Mismatch while the other kind holds: refused, nothing to undo.
                        Ok(Err(e)) => assert_eq!(e.code(), 8411, "{e}"),
                    }
                }));
            }
            for h in handles {
                tokio::time::timeout(Duration::from_secs(30), h)
                    .await
                    .expect("no task may hang")
                    .unwrap();
            }
        }
    });
    println!(
        "{} cancelled, {} granted",
        cancelled.load(Ordering::SeqCst),
        granted.load(Ordering::SeqCst)
    );
    assert!(granted.load(Ordering::SeqCst) > 0);
    assert!(!lock_core::is_locked(&rw));
    assert!(!lock_core::is_locked(&counted));
    assert!(
        eventually(Duration::from_secs(5), || lock_core::registered_names()
            == baseline),
        "registry entries left behind: {} vs {baseline}",
        lock_core::registered_names()
    );
    assert!(
        eventually(
            Duration::from_secs(5),
            || lock_core::__private::wait_registrations() == 0
        ),
        "wake-up registrations left behind: {}",
        lock_core::__private::wait_registrations()
    );
    // Still usable in every mode.
    drop(Lock::new(&rw).try_acquire().unwrap());
    drop(Lock::new(&rw).shared().try_acquire().unwrap());
    drop(Lock::new(&counted).permits(3).try_acquire().unwrap());
}
