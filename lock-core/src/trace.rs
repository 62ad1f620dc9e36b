//! What lock-core reports through `tracing` (cargo feature `tracing`, off by default).
//!
//! Events use target `lock_core` and these field names, which are part of the API:
//!
//! | field | meaning |
//! |---|---|
//! | `lock.name` | the lock's name |
//! | `lock.mode` | `exclusive`, `shared`, or `N permits` |
//! | `lock.backend` | `memory` (in-process), `file`, or `lease` |
//! | `wait_ms` | how long the caller has waited |
//! | `held_ms` | how long the lock was held |
//! | `holder.pid`, `holder.host` | who holds it (when known) |
//! | `holder` | the holder as text (task, thread, place it was taken) |
//! | `error.code` | the [`LockError::code`](crate::LockError::code) of a refusal |
//! | `store`, `fence` | the lease store and the lease's fencing token |
//!
//! | event | level |
//! |---|---|
//! | a wait starts | DEBUG |
//! | acquired after a wait | DEBUG |
//! | released | TRACE |
//! | refused: `Busy` | DEBUG (re-entry and a blocked runtime thread: WARN) |
//! | refused: `Timeout` | INFO |
//! | refused: `Deadlock`, `Mismatch`, `Invalid` | WARN |
//! | a wait still running after the slow-wait threshold (once per wait) | WARN |
//! | a lease renewal failed (retried) | WARN |
//! | a lease was lost | ERROR |
//!
//! Spans: `lock.wait` around a wait, and `lock.held` around a `#[locked]` body or
//! `Lock::run` (with `lock.name`, `lock.mode` and `func`), both at DEBUG, so a subscriber
//! sees time waiting beside time inside.
//!
//! Without the feature every hook here is empty and inlined away; with it and no
//! subscriber, each is a check of tracing's global level filter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[cfg(feature = "tracing")]
use crate::mode::Mode;

/// Where a lock lives, for `lock.backend`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    Memory,
    File,
    Lease,
}

impl Backend {
    #[allow(dead_code)]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::File => "file",
            Backend::Lease => "lease",
        }
    }
}

const UNSET: u64 = u64::MAX;
static SLOW_WAIT_MS: AtomicU64 = AtomicU64::new(UNSET);

/// After how long a wait is reported as slow, once per wait, naming the lock and its
/// holder: a `tracing` WARN with the `tracing` feature and a subscriber that takes it,
/// else one line on standard error in test suites (`cargo test`, cargo-nextest) and where
/// `$LOCK_CORE_SLOW_WAIT_MS` is set (`off`: no line). The threshold is
/// `$LOCK_CORE_SLOW_WAIT_MS` (milliseconds) if set when first needed, else 1 s;
/// [`set_slow_wait_threshold`] changes it.
///
/// ```
/// use std::time::Duration;
/// lock_core::set_slow_wait_threshold(Duration::from_millis(250));
/// assert_eq!(lock_core::slow_wait_threshold(), Duration::from_millis(250));
/// ```
pub fn slow_wait_threshold() -> Duration {
    let mut ms = SLOW_WAIT_MS.load(Ordering::Relaxed);
    if ms == UNSET {
        ms = std::env::var("LOCK_CORE_SLOW_WAIT_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1_000)
            .min(UNSET - 1);
        let _ = SLOW_WAIT_MS.compare_exchange(UNSET, ms, Ordering::Relaxed, Ordering::Relaxed);
    }
    Duration::from_millis(ms)
}

/// Sets the slow-wait threshold (see [`slow_wait_threshold`]).
pub fn set_slow_wait_threshold(threshold: Duration) {
    let ms = u64::try_from(threshold.as_millis())
        .unwrap_or(UNSET - 1)
        .min(UNSET - 1);
    SLOW_WAIT_MS.store(ms, Ordering::Relaxed);
}

/// Whether the crate reports through `tracing` at all (the feature).
pub(crate) const ON: bool = cfg!(feature = "tracing");

/// Whether waits should watch for the slow-wait threshold: a `tracing` subscriber wants
/// the WARN, or long waits are said on standard error (see [`stderr_wanted`]).
#[inline]
pub(crate) fn slow_waits_wanted() -> bool {
    #[cfg(feature = "tracing")]
    if tracing::enabled!(target: "lock_core", tracing::Level::WARN) {
        return true;
    }
    stderr_wanted()
}

/// Reports a wait still running after the threshold: a `tracing` WARN if a subscriber
/// takes it, else one line on standard error where [`stderr_wanted`].
pub(crate) fn slow_wait(
    name: &str,
    mode: crate::mode::Mode,
    backend: Backend,
    waited: Duration,
    holder: Option<&crate::Holder>,
) {
    #[cfg(feature = "tracing")]
    if tracing::enabled!(target: "lock_core", tracing::Level::WARN) {
        on::slow_wait_event(name, mode, backend, waited, holder);
        return;
    }
    if stderr_wanted() {
        say(&format!(
            "lock-core: still waiting for lock `{}` ({mode}, {}) after {:.1}s; held by {}",
            crate::name::shown(name),
            backend.as_str(),
            waited.as_secs_f64(),
            holder.map_or_else(|| "an unknown holder".to_owned(), |h| h.to_string())
        ));
    }
}

/// Writes one line straight to the process's standard error: not through `eprintln!`,
/// which a test harness captures (a hung test's captured output is never shown).
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

const STDERR_UNKNOWN: u8 = 0;
const STDERR_OFF: u8 = 1;
const STDERR_ON: u8 = 2;
static STDERR: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(STDERR_UNKNOWN);

/// Whether long waits (and lock-order reports without a subscriber) are said on standard
/// error, with no feature or subscriber needed: when `LOCK_CORE_SLOW_WAIT_MS` is set (to
/// anything but `off`), and in test suites — a test binary run by `cargo test` (an
/// executable in cargo's `deps` directory) or by cargo-nextest (`NEXTEST`). Decided once.
pub(crate) fn stderr_wanted() -> bool {
    match STDERR.load(Ordering::Relaxed) {
        STDERR_ON => true,
        STDERR_OFF => false,
        _ => {
            let on = detect_stderr();
            STDERR.store(if on { STDERR_ON } else { STDERR_OFF }, Ordering::Relaxed);
            on
        }
    }
}

fn detect_stderr() -> bool {
    if let Some(v) = std::env::var_os("LOCK_CORE_SLOW_WAIT_MS") {
        return v != "off";
    }
    std::env::var_os("NEXTEST").is_some()
        || std::env::var_os("NEXTEST_RUN_ID").is_some()
        || std::env::current_exe().is_ok_and(|exe| is_test_binary(&exe))
}

/// `…/deps/NAME-HASH`: where cargo puts the test binaries it builds and runs (a program
/// run with `cargo run` is `target/<profile>/NAME`).
fn is_test_binary(exe: &std::path::Path) -> bool {
    let in_deps = exe
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|d| d == "deps");
    let hashed = exe
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit_once('-'))
        .is_some_and(|(_, h)| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    in_deps && hashed
}

#[cfg(test)]
mod stderr_tests {
    use super::is_test_binary;
    use std::path::Path;

    #[test]
    fn cargo_test_binaries_are_recognised() {
        assert!(is_test_binary(Path::new(
            "/w/target/debug/deps/it-0123456789abcdef"
        )));
        assert!(!is_test_binary(Path::new("/w/target/debug/app")));
        assert!(!is_test_binary(Path::new("/w/target/debug/deps/app-12")));
        assert!(!is_test_binary(Path::new("/usr/bin/deps-0123456789abcdef")));
        // This very unit-test binary is one.
        assert!(is_test_binary(&std::env::current_exe().unwrap()));
    }
}

#[cfg(feature = "tracing")]
mod on {
    use super::*;
    use crate::{Holder, LockError};

    fn pid(h: Option<&Holder>) -> Option<u32> {
        h.and_then(|h| h.pid)
    }

    fn host(h: Option<&Holder>) -> Option<&str> {
        h.and_then(|h| h.host.as_deref())
    }

    pub(crate) fn wait_started(
        name: &str,
        mode: Mode,
        backend: Backend,
        holder: impl FnOnce() -> Option<Box<Holder>>,
    ) {
        if !tracing::enabled!(target: "lock_core", tracing::Level::DEBUG) {
            return;
        }
        let holder = holder();
        let holder = holder.as_deref();
        tracing::debug!(
            target: "lock_core",
            {
                lock.name = name,
                lock.mode = %mode,
                lock.backend = backend.as_str(),
                holder.pid = pid(holder),
                holder.host = host(holder),
                holder = holder.map(tracing::field::display),
            },
            "waiting for a lock"
        );
    }

    pub(crate) fn acquired_after_wait(name: &str, mode: Mode, backend: Backend, waited: Duration) {
        tracing::debug!(
            target: "lock_core",
            {
                lock.name = name,
                lock.mode = %mode,
                lock.backend = backend.as_str(),
                wait_ms = waited.as_millis() as u64,
            },
            "acquired a lock after waiting"
        );
    }

    pub(crate) fn slow_wait_event(
        name: &str,
        mode: Mode,
        backend: Backend,
        waited: Duration,
        holder: Option<&Holder>,
    ) {
        let held = holder
            .and_then(|h| h.since)
            .and_then(|s| std::time::SystemTime::now().duration_since(s).ok());
        tracing::warn!(
            target: "lock_core",
            {
                lock.name = name,
                lock.mode = %mode,
                lock.backend = backend.as_str(),
                wait_ms = waited.as_millis() as u64,
                held_ms = held.map(|d| d.as_millis() as u64),
                holder.pid = pid(holder),
                holder.host = host(holder),
                holder = holder.map(tracing::field::display),
            },
            "still waiting for lock `{}` after {:.1}s; held by {}",
            name,
            waited.as_secs_f64(),
            holder.map_or_else(|| "an unknown holder".to_owned(), |h| h.to_string())
        );
    }

    #[inline]
    pub(crate) fn released(
        name: &str,
        mode: Mode,
        backend: Backend,
        held: impl FnOnce() -> Duration,
    ) {
        // The global level first (one load): with no subscriber that is all it costs.
        if tracing::level_enabled!(tracing::Level::TRACE)
            && tracing::enabled!(target: "lock_core", tracing::Level::TRACE)
        {
            tracing::trace!(
                target: "lock_core",
                {
                    lock.name = name,
                    lock.mode = %mode,
                    lock.backend = backend.as_str(),
                    held_ms = held().as_millis() as u64,
                },
                "released a lock"
            );
        }
    }

    pub(crate) fn refused(e: &LockError, backend: Backend) {
        let holder = e.holder();
        macro_rules! at {
            ($level:ident) => {
                tracing::$level!(
                    target: "lock_core",
                    {
                        lock.name = e.name(),
                        lock.backend = backend.as_str(),
                        error.code = e.code(),
                        holder.pid = pid(holder),
                        holder.host = host(holder),
                    },
                    "{}",
                    e
                )
            };
        }
        match e {
            LockError::Busy {
                reentrant: false,
                reason: None,
                ..
            } => at!(debug),
            LockError::Timeout { .. } => at!(info),
            _ => at!(warn),
        }
    }

    pub(crate) fn lease_renewal_failed(name: &str, store: &str, fence: u64, error: &str) {
        tracing::warn!(
            target: "lock_core",
            { lock.name = name, lock.backend = "lease", store = store, fence = fence },
            "renewing the lease on `{}` failed (retrying while it is certainly valid): {}",
            name,
            error
        );
    }

    pub(crate) fn lease_lost(name: &str, store: &str, fence: u64, reason: &str) {
        tracing::error!(
            target: "lock_core",
            { lock.name = name, lock.backend = "lease", store = store, fence = fence },
            "lease on `{}` lost (fence {}): {}",
            name,
            fence,
            reason
        );
    }

    /// The span around a wait.
    pub(crate) fn wait_span(name: &str, mode: Mode, backend: Backend) -> tracing::Span {
        if !tracing::level_enabled!(tracing::Level::DEBUG) {
            return tracing::Span::none();
        }
        tracing::debug_span!(
            target: "lock_core",
            "lock.wait",
            lock.name = name,
            lock.mode = %mode,
            lock.backend = backend.as_str()
        )
    }

    /// The span around a locked body.
    #[inline]
    pub(crate) fn held_span(
        names: &dyn std::fmt::Display,
        mode: Mode,
        func: &str,
    ) -> tracing::Span {
        if !tracing::level_enabled!(tracing::Level::DEBUG) {
            return tracing::Span::none();
        }
        tracing::debug_span!(
            target: "lock_core",
            "lock.held",
            lock.name = %names,
            lock.mode = %mode,
            func = func
        )
    }
}

#[cfg(feature = "tracing")]
pub(crate) use on::*;

/// The no-op hooks without the feature.
#[cfg(not(feature = "tracing"))]
mod off {
    use super::Backend;
    use crate::mode::Mode;
    use crate::{Holder, LockError};
    use std::time::Duration;

    #[inline(always)]
    pub(crate) fn wait_started(
        _: &str,
        _: Mode,
        _: Backend,
        _: impl FnOnce() -> Option<Box<Holder>>,
    ) {
    }
    #[inline(always)]
    pub(crate) fn acquired_after_wait(_: &str, _: Mode, _: Backend, _: Duration) {}
    #[inline(always)]
    pub(crate) fn released(_: &str, _: Mode, _: Backend, _: impl FnOnce() -> Duration) {}
    #[inline(always)]
    pub(crate) fn refused(_: &LockError, _: Backend) {}
    #[inline(always)]
    pub(crate) fn lease_renewal_failed(_: &str, _: &str, _: u64, _: &str) {}
    #[inline(always)]
    pub(crate) fn lease_lost(_: &str, _: &str, _: u64, _: &str) {}
}

#[cfg(not(feature = "tracing"))]
pub(crate) use off::*;
