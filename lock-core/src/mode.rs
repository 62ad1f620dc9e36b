//! The shapes of exclusion a named lock can have.

use std::fmt;

/// How a lock is held: alone, beside other shared holders, or as one of a bounded number
/// of holders (a counted lock, i.e. a semaphore).
///
/// Exclusive and shared requests for one name form one reader/writer lock; a name used
/// with [`Mode::Permits`] is a counted lock with exactly that many permits while anyone
/// holds or waits for it (asking for it in another mode, or with another count, is
/// [`LockError::Mismatch`](crate::LockError::Mismatch)).
///
/// ```
/// use lock_core::{Lock, Mode};
/// let g = Lock::new("mode-doc").shared().try_acquire().unwrap();
/// assert_eq!(g.mode(), Mode::Shared);
/// assert_eq!(Mode::Permits(2).to_string(), "2 permits");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Mode {
    /// One holder at a time (the default).
    #[default]
    Exclusive,
    /// Any number of shared holders at once, never beside an exclusive one.
    Shared,
    /// At most this many holders at once (FIFO), each holding one permit.
    Permits(u32),
}

/// The most permits a counted lock may have.
pub const MAX_PERMITS: u32 = (1 << 14) - 1;

impl Mode {
    /// True for [`Mode::Exclusive`].
    pub fn is_exclusive(self) -> bool {
        matches!(self, Mode::Exclusive)
    }

    /// Whether the request itself is sound (cheap: for hot paths).
    #[inline(always)]
    pub(crate) fn is_valid(self) -> bool {
        match self {
            Mode::Permits(n) => n != 0 && n <= MAX_PERMITS,
            _ => true,
        }
    }

    /// A problem with the request itself (not with contention), if any.
    pub(crate) fn problem(self) -> Option<String> {
        match self {
            Mode::Permits(0) => Some("a counted lock needs at least 1 permit, got 0".to_owned()),
            Mode::Permits(n) if n > MAX_PERMITS => Some(format!(
                "a counted lock may have at most {MAX_PERMITS} permits, got {n}"
            )),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Exclusive => f.write_str("exclusive"),
            Mode::Shared => f.write_str("shared"),
            Mode::Permits(1) => f.write_str("1 permit"),
            Mode::Permits(n) => write!(f, "{n} permits"),
        }
    }
}

/// What a lock *is* while it is held or waited for: a reader/writer lock, or a counted
/// lock with a number of permits. Requests that do not fit the kind are refused with
/// [`LockError::Mismatch`](crate::LockError::Mismatch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Exclusive and shared holders (a reader/writer lock).
    ReadWrite,
    /// A counted lock with this many permits.
    Counted(u32),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::ReadWrite => f.write_str("a reader/writer lock"),
            Kind::Counted(1) => f.write_str("a counted lock with 1 permit"),
            Kind::Counted(n) => write!(f, "a counted lock with {n} permits"),
        }
    }
}
