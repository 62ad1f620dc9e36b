//! The Tokio task identity behind lock-core's `task-ids` feature: the number of the
//! current task, from `tokio::task::try_id` (Tokio 1.41 or later).
//!
//! Use it through lock-core; this crate exists only so that the feature, and not
//! lock-core itself, sets the Tokio floor.

use std::hash::{Hash, Hasher};

/// The number of the Tokio task running the caller, or `None` outside any task.
///
/// ```
/// assert_eq!(lock_core_task_ids::current(), None);
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let (a, b) = rt.block_on(async {
///     let a = tokio::spawn(async { lock_core_task_ids::current() });
///     let b = tokio::spawn(async { lock_core_task_ids::current() });
///     (a.await.unwrap(), b.await.unwrap())
/// });
/// assert!(a.is_some() && b.is_some() && a != b);
/// ```
#[inline]
pub fn current() -> Option<u64> {
    let id = tokio::task::try_id()?;
    let mut h = Capture(0);
    id.hash(&mut h);
    Some(h.0)
}

/// Reads the number inside a `tokio::task::Id` (which offers only `Hash` and `Display`):
/// its `Hash` writes exactly one `u64`.
struct Capture(u64);

impl Hasher for Capture {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tasks_have_distinct_stable_numbers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (a1, a2, b) = rt.block_on(async {
            let a = tokio::spawn(async {
                let first = super::current();
                tokio::task::yield_now().await;
                (first, super::current())
            });
            let b = tokio::spawn(async { super::current() });
            let (a1, a2) = a.await.unwrap();
            (a1, a2, b.await.unwrap())
        });
        assert_eq!(a1, a2, "stable across a yield");
        assert_ne!(a1, b);
        assert_eq!(
            rt.block_on(async { super::current() }),
            None,
            "block_on is no task"
        );
    }
}
