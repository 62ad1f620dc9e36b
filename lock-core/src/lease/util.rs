//! Small helpers shared by the lease machinery and the stores.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::Holder;

/// This machine's name as it goes into owner strings: the name every backend reports
/// (`gethostname`, as file records do), with only the characters an owner string may
/// carry (it is split at `/`).
fn owner_host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let clean: String = crate::lockfile::host_name()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            .take(64)
            .collect();
        if clean.is_empty() {
            "unknown-host".to_owned()
        } else {
            clean
        }
    })
}

/// This process's nonce for owner strings, made anew in the child of a `fork` (which
/// must not pass for its parent): kept with the pid it was made for.
fn process_nonce(pid: u32) -> u64 {
    static NONCE: std::sync::Mutex<(u32, u64)> = std::sync::Mutex::new((0, 0));
    let mut n = crate::sync::lock_std(&NONCE);
    if n.0 != pid {
        *n = (pid, random_u64());
    }
    n.1
}

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// A fresh pseudo-random number (not for cryptography: for jitter and nonces).
/// An error with its whole `source()` chain, `": "`-separated, each cause once (many
/// errors repeat their source's text in their own).
#[allow(dead_code)]
pub(crate) fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

pub(crate) fn random_u64() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    RandomState::new().hash_one((nanos, SEQ.fetch_add(1, Ordering::Relaxed)))
}

/// A new owner string, unique per call: `host/pid/process-nonce/counter`.
///
/// Every acquisition uses a fresh one, so a store can tell two successive leases of one
/// process apart even without looking at the fence.
///
/// ```
/// let a = lock_core::lease::owner_id();
/// let b = lock_core::lease::owner_id();
/// assert_ne!(a, b);
/// assert!(a.contains(&format!("/{}/", std::process::id())));
/// ```
pub fn owner_id() -> String {
    // The pid is read each time (fork-aware), never cached for good.
    let pid = crate::owner::pid();
    format!(
        "{}/{}/{:016x}/{}",
        owner_host(),
        pid,
        process_nonce(pid),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Reads what it can out of an owner string made by [`owner_id`].
pub(crate) fn holder_from_owner(owner: &str, store: &str) -> Holder {
    let mut h = Holder::new();
    let mut parts = owner.split('/');
    if let (Some(host), Some(pid), Some(_), Some(_), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        if let Ok(pid) = pid.parse() {
            h.pid = Some(pid);
            h.host = Some(host.to_owned());
        }
    }
    h.detail = Some(format!("lease owner {owner:?} in {store}"));
    h
}

/// Exponential back-off with "equal jitter": each pause is drawn between half and all of
/// the current step, which doubles up to `max`.
pub(crate) struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            step: min,
            max: max.max(min),
        }
    }

    pub(crate) fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_nanos(random_u64() % span)
    }
}

/// Checks a SQL identifier (or a key prefix): ASCII letters, digits and `_`, not starting
/// with a digit, at most `max` bytes.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn check_identifier(what: &str, s: &str, max: usize) -> Result<(), String> {
    let ok_chars = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let starts_ok = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if s.is_empty() || s.len() > max || !ok_chars || !starts_ok {
        return Err(format!(
            "invalid {what} {s:?}: use 1 to {max} ASCII letters, digits or `_`, not starting with a digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    /// The child of a `fork` makes owner strings of its own: its pid and another nonce,
    /// never its parent's.
    #[cfg(unix)]
    #[test]
    fn a_fork_child_owns_leases_as_itself() {
        let parent = owner_id();
        let nonce = |o: &str| o.split('/').nth(2).map(str::to_owned);
        // SAFETY: the child formats strings (glibc's malloc is fork-safe), takes an
        // uncontended mutex, and leaves with `_exit`, running none of the parent's
        // destructors.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            // SAFETY: getpid is async-signal-safe.
            let me = unsafe { libc::getpid() } as u32;
            let mine = owner_id();
            let ok = mine.split('/').nth(1) == Some(me.to_string().as_str())
                && nonce(&mine) != nonce(&parent);
            // SAFETY: leaves the child at once, without the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child made above; `status` is a valid out-pointer.
        let waited = unsafe { libc::waitpid(child, &mut status, 0) };
        assert_eq!(waited, child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child's owner string named its parent (status {status})"
        );
        assert_eq!(
            nonce(&owner_id()),
            nonce(&parent),
            "the parent keeps its own"
        );
        assert!(owner_id().starts_with(&format!("{}/", owner_host())));
    }

    use super::*;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(2), Duration::from_millis(50));
        for _ in 0..100 {
            let d = b.next();
            assert!(d <= Duration::from_millis(50), "{d:?}");
            assert!(d >= Duration::from_millis(1), "{d:?}");
        }
    }

    #[test]
    fn holder_parsing() {
        let h = holder_from_owner("web-1/4242/00ff/9", "postgres x");
        assert_eq!(h.pid, Some(4242));
        assert_eq!(h.host.as_deref(), Some("web-1"));
        let h = holder_from_owner("custom owner", "redis y");
        assert_eq!(h.pid, None);
        assert!(h.detail.unwrap_or_default().contains("custom owner"));
    }

    #[test]
    fn identifiers() {
        assert!(check_identifier("table", "lock_core_leases", 53).is_ok());
        assert!(check_identifier("table", "1abc", 53).is_err());
        assert!(check_identifier("table", "a\"b", 53).is_err());
        assert!(check_identifier("table", "", 53).is_err());
        assert!(check_identifier("table", &"a".repeat(54), 53).is_err());
    }
}

#[cfg(test)]
mod cause_tests {
    use super::with_causes;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("error connecting to server")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_are_kept_once() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ));
        assert_eq!(
            with_causes(&e),
            "error connecting to server: Connection refused (os error 111)"
        );
        let plain = std::io::Error::other("x");
        assert_eq!(with_causes(&plain), "x");
    }
}
