//! The synchronisation primitives the lock state machine is built on, swapped for
//! loom's model-checked ones under `--cfg loom` so the same code is what loom explores.

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};
#[cfg(loom)]
pub(crate) use loom::thread::{current as current_thread, Thread};

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicU64, AtomicUsize, Ordering},
    Arc, Mutex, MutexGuard,
};
#[cfg(not(loom))]
pub(crate) use std::thread::{current as current_thread, park_timeout, Thread};

/// Locks `m`, ignoring poisoning: every critical section over lock state leaves it
/// consistent before anything that can panic, so a poisoned flag carries no meaning here.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// loom has no timed park; model tests never rely on a timeout firing.
#[cfg(loom)]
pub(crate) fn park_until(_deadline: Option<std::time::Instant>) {
    loom::thread::park();
}

/// Parks the current thread until it is unparked, the deadline passes, or spuriously.
#[cfg(not(loom))]
pub(crate) fn park_until(deadline: Option<std::time::Instant>) {
    match deadline {
        None => std::thread::park(),
        Some(d) => {
            let now = std::time::Instant::now();
            if d > now {
                park_timeout(d - now);
            }
        }
    }
}

/// [`lock`] for std mutexes that stay std under loom (the registry is not modelled).
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
