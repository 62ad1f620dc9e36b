//! Exit statuses and the one-line failures that carry them.

use lock_core::LockError;

/// Bad input: an invalid lock name, `--permits 0`, an unknown or invalid store URL
/// (EX_USAGE).
pub const USAGE: u8 = 64;
/// `migrate`: a source file or Cargo.toml that cannot be parsed (EX_DATAERR).
pub const DATAERR: u8 = 65;
/// The store could not be reached or answered with an error (EX_UNAVAILABLE).
pub const UNAVAILABLE: u8 = 69;
/// Any other failure to take or list locks: I/O, a mismatched kind of lock, ...
/// (EX_SOFTWARE).
pub const SOFTWARE: u8 = 70;
/// The operating system refused something `lock-core` needs (a pipe, a signal handler,
/// a process) (EX_OSERR).
pub const OSERR: u8 = 71;
/// `migrate`: a file could not be read or written (EX_IOERR).
pub const IOERR: u8 = 74;
/// The lock is busy or the wait timed out (EX_TEMPFAIL); `--conflict-exit-code` changes it.
pub const CONFLICT: u8 = 75;
/// The lease was lost while CMD ran: CMD was stopped.
pub const LEASE_LOST: u8 = 76;
/// CMD was found but could not be executed.
pub const NOT_EXECUTABLE: u8 = 126;
/// CMD was not found.
pub const NOT_FOUND: u8 = 127;
/// CMD died of signal N (or `lock-core` was stopped by it while waiting): 128 + N.
pub const SIGNAL_BASE: u8 = 128;

/// A failure of `lock-core` itself: printed as `lock-core: {message}`, then the process
/// exits with `code`.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub code: u8,
    /// One line, without the `lock-core: ` prefix.
    pub message: String,
}

impl Failure {
    /// A failure with this status and message.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: one_line(&message.into()),
        }
    }

    /// A lock error, with the status of its kind (contention: `conflict`).
    pub fn lock(e: &LockError, conflict: u8) -> Self {
        Failure::new(code_of(e, conflict), e.to_string())
    }
}

/// The exit status for a lock error: `conflict` for Busy and Timeout, [`USAGE`] for an
/// invalid request, [`UNAVAILABLE`] for store failures, [`SOFTWARE`] otherwise.
pub fn code_of(e: &LockError, conflict: u8) -> u8 {
    match e {
        LockError::Busy { .. } | LockError::Timeout { .. } => conflict,
        LockError::InvalidName { .. } | LockError::Invalid { .. } => USAGE,
        LockError::Store { .. } => UNAVAILABLE,
        _ => SOFTWARE,
    }
}

/// Joins the lines of a message, so that every failure is one line.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, line) in s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_by_kind() {
        let busy = LockError::Busy {
            name: "db".into(),
            holder: None,
            reentrant: false,
            reason: None,
        };
        assert_eq!(code_of(&busy, 75), 75);
        assert_eq!(code_of(&busy, 3), 3);
        let bad = lock_core::validate_name("").unwrap_err();
        assert_eq!(code_of(&bad, 75), USAGE);
        let store = LockError::Store {
            name: String::new(),
            store: "redis x".into(),
            message: "down".into(),
        };
        assert_eq!(code_of(&store, 75), UNAVAILABLE);
        let io = LockError::Io {
            name: "db".into(),
            path: None,
            source: std::io::Error::other("x"),
        };
        assert_eq!(code_of(&io, 75), SOFTWARE);
    }

    #[test]
    fn failures_are_one_line() {
        let f = Failure::new(70, "first\n  second\n\nthird");
        assert_eq!(f.message, "first; second; third");
    }
}
