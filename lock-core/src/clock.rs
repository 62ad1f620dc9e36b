//! A cheap clock for "held since" diagnostics on the lock's hot path.
//!
//! Reading the precise monotonic clock costs about as much as an uncontended lock and
//! unlock together, so grants record the coarse monotonic clock instead (a few ns, a
//! few ms of resolution) — plenty for "held by ... for 3.2 s". Guards that users can
//! see take a precise `Instant` for [`LockGuard::held_for`](crate::LockGuard::held_for).

/// Nanoseconds on a monotonic clock with millisecond-ish resolution.
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn coarse_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_MONOTONIC_COARSE is supported by every Linux kernel since 2.6.32; on the
    // (impossible) failure `ts` stays zeroed, which only degrades a diagnostic.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return precise_nanos();
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Elsewhere the precise clock stands in.
#[cfg(not(target_os = "linux"))]
pub(crate) fn coarse_nanos() -> u64 {
    precise_nanos()
}

fn precise_nanos() -> u64 {
    use std::sync::LazyLock;
    use std::time::Instant;
    static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
    ORIGIN.elapsed().as_nanos() as u64
}

/// How long ago `nanos` (from [`coarse_nanos`]) was.
pub(crate) fn since(nanos: u64) -> std::time::Duration {
    std::time::Duration::from_nanos(coarse_nanos().saturating_sub(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn coarse_clock_is_monotonic_and_tracks_real_time() {
        let start = Instant::now();
        let a = coarse_nanos();
        std::thread::sleep(Duration::from_millis(30));
        let b = coarse_nanos();
        assert!(b >= a);
        let coarse = Duration::from_nanos(b - a);
        let real = start.elapsed();
        // Resolution is a few ms (one jiffy): allow 20 ms either way.
        assert!(
            coarse + Duration::from_millis(20) >= real,
            "{coarse:?} vs {real:?}"
        );
        assert!(
            coarse <= real + Duration::from_millis(20),
            "{coarse:?} vs {real:?}"
        );
        assert!(since(a) >= Duration::from_millis(10));
    }
}
