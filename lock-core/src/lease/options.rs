//! How to take a lease.

use std::time::Duration;

use crate::mode::Mode;

/// How to take a lease: TTL, how long to wait, and the retry pacing.
///
/// ```
/// use std::time::Duration;
/// let opts = lock_core::lease::LeaseOptions::new()
///     .ttl(Duration::from_secs(5))
///     .timeout(Duration::from_secs(2));
/// assert_eq!(opts.get_ttl(), Some(Duration::from_secs(5)));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct LeaseOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) margin: Option<Duration>,
    pub(crate) retry_min: Option<Duration>,
    pub(crate) retry_max: Option<Duration>,
    pub(crate) mode: Mode,
}

impl LeaseOptions {
    /// Defaults: exclusive, the store's TTL, wait for ever, margin TTL/10, retries
    /// every 2–50 ms (at most TTL/2) when the store sends no wake-up.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shared lease: many shared holders at once, never beside an exclusive one;
    /// exclusive requests wait for all of them, and shared requests that come while an
    /// exclusive one waits take only a bounded number of turns before it.
    pub fn shared(self) -> Self {
        self.mode(Mode::Shared)
    }

    /// One of `n` permits: at most `n` live holders at once, each with its own expiry and
    /// fence.
    pub fn permits(self, n: u32) -> Self {
        self.mode(Mode::Permits(n))
    }

    /// Sets the mode (the last of `shared`, `permits`, `mode` wins).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The mode.
    pub fn get_mode(&self) -> Mode {
        self.mode
    }

    /// The lease's time to live (at least [`MIN_TTL`](super::MIN_TTL)). It is renewed every TTL/3.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Gives up after `timeout` with [`LockError::Timeout`](crate::LockError::Timeout); zero tries once and fails
    /// with [`LockError::Busy`](crate::LockError::Busy) if the lease is held.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets or clears the wait timeout.
    pub fn timeout_opt(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// How much earlier than the TTL [`LeaseGuard::remaining`](super::LeaseGuard::remaining) turns `None`, to absorb
    /// clock-rate differences and scheduling delays (default TTL/10, at most TTL/2).
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.margin = Some(margin);
        self
    }

    /// The first and the longest pause between two attempts while waiting (each pause
    /// is drawn at random between half and all of the current back-off, which doubles
    /// from `min` up to `max`).
    pub fn retry_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min = Some(min.max(Duration::from_micros(100)));
        self.retry_max = Some(max.max(min));
        self
    }

    /// The TTL set by [`ttl`](Self::ttl), if any.
    pub fn get_ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The timeout set by [`timeout`](Self::timeout), if any.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}
