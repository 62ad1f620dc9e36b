//! A cheap clock for "held since" on the lock's hot path.
//!
//! Reading the precise monotonic clock costs about as much as an uncontended lock and
//! unlock together, so grants record the coarse monotonic clock instead (a few ns, a
//! tick of resolution) — plenty for "held by ... for 3.2 s". Both clocks count from
//! the same origin, so [`LockGuard::held_for`](crate::LockGuard::held_for) subtracts a
//! coarse grant time from a precise "now": never less than the truth, at most a tick
//! more. The precise clock is read only when someone asks.

/// Nanoseconds on a monotonic clock with millisecond-ish resolution.
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn coarse_nanos() -> u64 {
    let mut ts = std::mem::MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: `ts` points at writable memory the size of a timespec for the duration of
    // the call, and CLOCK_MONOTONIC_COARSE is supported by every Linux kernel since
    // 2.6.32.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, ts.as_mut_ptr()) };
    if rc != 0 {
        return coarse_failed();
    }
    // SAFETY: a successful clock_gettime has written the whole timespec.
    let ts = unsafe { ts.assume_init() };
    // Plain arithmetic: the monotonic clock counts from boot, so seconds times 10^9 stays
    // far below u64::MAX (584 years of uptime).
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The (impossible) failure of the coarse clock: the precise one stands in.
#[cfg(target_os = "linux")]
#[cold]
#[inline(never)]
fn coarse_failed() -> u64 {
    precise_nanos()
}

/// Nanoseconds on the precise monotonic clock (the one `Instant` reads).
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn precise_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `coarse_nanos`; CLOCK_MONOTONIC always exists.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return coarse_nanos();
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

#[cfg(not(target_os = "linux"))]
pub(crate) fn precise_nanos() -> u64 {
    use std::sync::LazyLock;
    use std::time::Instant;
    static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
    ORIGIN.elapsed().as_nanos() as u64
}

/// Milliseconds since the Unix epoch, at coarse resolution (for records that other
/// processes read; a few ms of resolution is plenty there).
#[cfg(target_os = "linux")]
pub(crate) fn wall_millis() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `coarse_nanos`; CLOCK_REALTIME_COARSE exists since Linux 2.6.32.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc != 0 {
        return wall_millis_std();
    }
    (ts.tv_sec as u64)
        .saturating_mul(1000)
        .saturating_add(ts.tv_nsec as u64 / 1_000_000)
}

/// Elsewhere the standard wall clock stands in.
#[cfg(not(target_os = "linux"))]
pub(crate) fn wall_millis() -> u64 {
    wall_millis_std()
}

fn wall_millis_std() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long ago `nanos` (from either clock) was, at coarse resolution.
pub(crate) fn since(nanos: u64) -> std::time::Duration {
    std::time::Duration::from_nanos(coarse_nanos().saturating_sub(nanos))
}

/// How long ago `nanos` (from either clock) was, precisely.
pub(crate) fn since_precise(nanos: u64) -> std::time::Duration {
    std::time::Duration::from_nanos(precise_nanos().saturating_sub(nanos))
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

    #[test]
    fn wall_clock_agrees_with_system_time() {
        let std_ms = wall_millis_std();
        let ms = wall_millis();
        assert!(ms.abs_diff(std_ms) < 50, "{ms} vs {std_ms}");
    }

    #[test]
    fn precise_and_coarse_clocks_share_an_origin() {
        let p = precise_nanos();
        let c = coarse_nanos();
        // The coarse clock lags the precise one by at most a tick (a few ms).
        assert!(c <= p + 1_000_000, "coarse {c} ahead of precise {p}");
        assert!(p - c.min(p) < 20_000_000, "coarse {c} too far behind {p}");
        let a = precise_nanos();
        std::thread::sleep(Duration::from_millis(5));
        assert!(since_precise(a) >= Duration::from_millis(5));
    }
}
