//! The one error type of the crate, with stable numeric codes.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Who holds a lock, as far as it is known.
///
/// In-process locks know the thread of a blocking holder; file locks read the holder's
/// record from the lock file (only for a holder that is still alive); lease stores know
/// the owner string the holder registered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Process id of the holder.
    pub pid: Option<u32>,
    /// Host name of the holder's machine.
    pub host: Option<String>,
    /// When the holder acquired the lock (wall clock); see
    /// [`since_observed`](Self::since_observed).
    pub since: Option<SystemTime>,
    /// `since` is when the hold was first seen (by a waiter, a listing or an error), not
    /// when it was taken: the lock has been held *at least* since then, and messages say
    /// "for at least". In-process holds taken by a `#[locked]` scope read no clock when
    /// they are granted (that would cost as much as the rest of the grant); the first
    /// one to look dates them.
    pub since_observed: bool,
    /// Further detail: the holding task or thread, or the store's owner id.
    pub detail: Option<String>,
    /// Where the hold was taken, if known: the locked function (`module::fn`
    /// (file:line)) or the line that called a by-name verb.
    pub location: Option<String>,
}

impl Holder {
    /// A holder record with every field unknown; fill in what you know.
    ///
    /// ```
    /// let mut h = lock_core::Holder::new();
    /// h.pid = Some(42);
    /// assert_eq!(h.to_string(), "pid 42");
    /// ```
    pub fn new() -> Self {
        Holder {
            pid: None,
            host: None,
            since: None,
            since_observed: false,
            detail: None,
            location: None,
        }
    }
}

impl Default for Holder {
    fn default() -> Self {
        Holder::new()
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(detail) = &self.detail {
            parts.push(detail.clone());
        }
        if let Some(pid) = self.pid {
            parts.push(format!("pid {pid}"));
        }
        if let Some(host) = &self.host {
            parts.push(format!("host {host}"));
        }
        if let Some(at) = &self.location {
            parts.push(format!("in {at}"));
        }
        if parts.is_empty() {
            parts.push("an unknown holder".to_owned());
        }
        f.write_str(&parts.join(", "))?;
        if let Some(since) = self.since {
            match SystemTime::now().duration_since(since) {
                Ok(d) if self.since_observed => {
                    write!(f, ", for at least {:.3}s", d.as_secs_f64())?
                }
                Ok(d) => write!(f, ", for {:.3}s", d.as_secs_f64())?,
                Err(_) => f.write_str(", since just now")?,
            }
        }
        Ok(())
    }
}

/// Formats `Some(holder)` as " (held by …)" and `None` as nothing.
struct HeldBy<'a>(&'a Option<Box<Holder>>);

impl fmt::Display for HeldBy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(h) => write!(f, " (held by {h})"),
            None => Ok(()),
        }
    }
}

/// Everything that can go wrong when taking or giving back a lock.
///
/// Every variant names the lock; where the holder is known it is reported too.
/// [`LockError::code`] gives a stable number for logs and metrics.
///
/// ```
/// use lock_core::LockError;
/// let e = LockError::Busy { name: "db".into(), holder: None, reentrant: false, reason: None };
/// assert_eq!(e.code(), 8406);
/// assert_eq!(e.name(), "db");
/// assert!(e.to_string().contains("`db`"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// A failure that fits no other kind.
    #[error("lock `{name}`: {message}")]
    Generic {
        /// The lock's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The lock could not be taken for a reason other than contention.
    #[error("lock `{name}`: acquire failed: {reason}")]
    AcquireFailed {
        /// The lock's name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The lock could not be given back cleanly.
    #[error("lock `{name}`: release failed: {reason}")]
    ReleaseFailed {
        /// The lock's name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// Waiting for the lock took longer than allowed.
    #[error("lock `{name}`: timed out after {:.3}s{}", waited.as_secs_f64(), HeldBy(holder))]
    Timeout {
        /// The lock's name.
        name: String,
        /// How long the caller waited.
        waited: Duration,
        /// Who held it when the wait ended, if known.
        holder: Option<Box<Holder>>,
    },
    /// An operation needed the lock to be held, and it was not.
    #[error("lock `{name}` is not held: {reason}")]
    NotHeld {
        /// The lock's name.
        name: String,
        /// Why it is not held (released, expired, taken by another).
        reason: String,
    },
    /// The name breaks the name rules (non-empty, at most 256 bytes, no control characters).
    #[error("invalid lock name {name:?}: {reason}")]
    InvalidName {
        /// The offending name (possibly shortened for display).
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The lock is held and the caller would not (or must not) wait: `try_acquire`,
    /// `timeout_ms = 0`, re-entry by the call chain that already holds it, or a blocking
    /// wait that would stop the holder (see `reason`).
    #[error("{}{}{}", busy_head(name, *reentrant), HeldBy(holder), Reason(reason))]
    Busy {
        /// The lock's name.
        name: String,
        /// Who holds it, if known.
        holder: Option<Box<Holder>>,
        /// True when the caller's own call chain (task or thread) holds it: waiting
        /// would deadlock, so it is refused instead.
        reentrant: bool,
        /// Why waiting was refused when it was not plain contention or re-entry: e.g. a
        /// blocking wait on the only thread of the runtime whose task holds the lock.
        reason: Option<String>,
    },
    /// An I/O error from a file lock (directory, lock file, file system).
    #[error("lock `{name}`: I/O error on {}: {source}", path_display(path))]
    Io {
        /// The lock's name.
        name: String,
        /// The file or directory involved.
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A lease was lost: it expired or was taken over while the holder still ran.
    #[error("lock `{name}`: lease lost: {reason}")]
    Lost {
        /// The lock's name.
        name: String,
        /// Why the lease is considered lost.
        reason: String,
    },
    /// The lease store could not be reached or answered with an error.
    #[error("{}store `{store}` failed: {message}", lock_prefix(name))]
    Store {
        /// The lock's name (empty for failures that concern no particular lock, such as
        /// setting a store up).
        name: String,
        /// Which store (kind and address, never credentials).
        store: String,
        /// What went wrong, with its causes.
        message: String,
    },
    /// Waiting would close a cycle of waits (this call chain holds a lock that a holder of
    /// the wanted lock waits for, directly or through others): the wait could never end,
    /// so it is refused. The other waiters of the cycle go on waiting.
    #[error("lock `{name}`: deadlock: {}", CycleText(name, cycle))]
    Deadlock {
        /// The lock the refused wait was for.
        name: String,
        /// The cycle, starting with the wanted lock: each step is a lock and its holder,
        /// which waits for the next step's lock; the last holder is the caller.
        cycle: Vec<CycleStep>,
    },
    /// The name is in use as another kind of lock: a counted lock with another number
    /// of permits, or a reader/writer lock asked for as a counted one (or the other way
    /// round). One name is one lock, never two silently different ones.
    #[error("lock `{name}` is {kind} while it is held or waited for; it was asked for as {}{}", asked_as(*asked), HeldBy(holder))]
    Mismatch {
        /// The lock's name.
        name: String,
        /// What the lock is right now.
        kind: crate::Kind,
        /// What was asked for.
        asked: crate::Mode,
        /// Who holds it, if known.
        holder: Option<Box<Holder>>,
    },
    /// The request cannot be served as asked (for example `permits = 0`).
    #[error("lock `{name}`: invalid request: {reason}")]
    Invalid {
        /// The lock's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One step of a [`LockError::Deadlock`] cycle: a lock and the call chain holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CycleStep {
    /// The lock's name.
    pub lock: String,
    /// Who holds it ("task 12 (on thread #3)", "thread #5", "pid 4242", ...), with the
    /// place it was taken when known.
    pub holder: String,
}

impl CycleStep {
    /// A step, for tests and for reports built by hand.
    pub fn new(lock: impl Into<String>, holder: impl Into<String>) -> Self {
        CycleStep {
            lock: lock.into(),
            holder: holder.into(),
        }
    }
}

struct CycleText<'a>(&'a str, &'a [CycleStep]);

impl fmt::Display for CycleText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps = self.1;
        let Some(last) = steps.last() else {
            return write!(f, "waiting for `{}` would close a cycle of waits", self.0);
        };
        write!(f, "waiting for `{}` would never end: ", self.0)?;
        for (i, step) in steps.iter().enumerate() {
            if std::ptr::eq(step, last) {
                write!(f, "`{}` is held by {}", step.lock, step.holder)?;
            } else {
                let next = &steps[i + 1].lock;
                write!(
                    f,
                    "`{}` is held by {}, which waits for `{next}`; ",
                    step.lock, step.holder
                )?;
            }
        }
        Ok(())
    }
}

fn asked_as(m: crate::Mode) -> String {
    match m {
        crate::Mode::Exclusive => "an exclusive lock".to_owned(),
        crate::Mode::Shared => "a shared lock".to_owned(),
        crate::Mode::Permits(n) => format!("a counted lock with {n}"),
    }
}

fn lock_prefix(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!("lock `{name}`: ")
    }
}

/// Formats `Some(reason)` as ": reason".
struct Reason<'a>(&'a Option<String>);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(r) => write!(f, ": {r}"),
            None => Ok(()),
        }
    }
}

fn busy_head(name: &str, reentrant: bool) -> String {
    if reentrant {
        format!("lock `{name}` is already held by this call chain (re-entry would deadlock)")
    } else {
        format!("lock `{name}` is busy")
    }
}

fn path_display(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => p.display().to_string(),
        None => "<unknown path>".to_owned(),
    }
}

impl LockError {
    /// The stable numeric code of this error's kind.
    ///
    /// | kind | code |
    /// |---|---|
    /// | Generic | 8400 |
    /// | AcquireFailed | 8401 |
    /// | ReleaseFailed | 8402 |
    /// | Timeout | 8403 |
    /// | NotHeld | 8404 |
    /// | InvalidName | 8405 |
    /// | Busy | 8406 |
    /// | Io | 8407 |
    /// | Lost | 8408 |
    /// | Store | 8409 |
    /// | Deadlock | 8410 |
    /// | Mismatch | 8411 |
    /// | Invalid | 8412 |
    pub fn code(&self) -> u16 {
        match self {
            LockError::Generic { .. } => 8400,
            LockError::AcquireFailed { .. } => 8401,
            LockError::ReleaseFailed { .. } => 8402,
            LockError::Timeout { .. } => 8403,
            LockError::NotHeld { .. } => 8404,
            LockError::InvalidName { .. } => 8405,
            LockError::Busy { .. } => 8406,
            LockError::Io { .. } => 8407,
            LockError::Lost { .. } => 8408,
            LockError::Store { .. } => 8409,
            LockError::Deadlock { .. } => 8410,
            LockError::Mismatch { .. } => 8411,
            LockError::Invalid { .. } => 8412,
        }
    }

    /// The name of the lock the error is about.
    pub fn name(&self) -> &str {
        match self {
            LockError::Generic { name, .. }
            | LockError::AcquireFailed { name, .. }
            | LockError::ReleaseFailed { name, .. }
            | LockError::Timeout { name, .. }
            | LockError::NotHeld { name, .. }
            | LockError::InvalidName { name, .. }
            | LockError::Busy { name, .. }
            | LockError::Io { name, .. }
            | LockError::Lost { name, .. }
            | LockError::Store { name, .. }
            | LockError::Deadlock { name, .. }
            | LockError::Mismatch { name, .. }
            | LockError::Invalid { name, .. } => name,
        }
    }

    /// The same error about the lock `to` (for errors of a lock that stands for it).
    pub(crate) fn renamed(mut self, to: &str) -> LockError {
        match &mut self {
            LockError::Generic { name, .. }
            | LockError::AcquireFailed { name, .. }
            | LockError::ReleaseFailed { name, .. }
            | LockError::Timeout { name, .. }
            | LockError::NotHeld { name, .. }
            | LockError::InvalidName { name, .. }
            | LockError::Busy { name, .. }
            | LockError::Io { name, .. }
            | LockError::Lost { name, .. }
            | LockError::Store { name, .. }
            | LockError::Deadlock { name, .. }
            | LockError::Mismatch { name, .. }
            | LockError::Invalid { name, .. } => {
                name.clear();
                name.push_str(to);
            }
        }
        self
    }

    /// The holder reported with a `Busy` or `Timeout`, if known.
    pub fn holder(&self) -> Option<&Holder> {
        match self {
            LockError::Busy { holder, .. }
            | LockError::Timeout { holder, .. }
            | LockError::Mismatch { holder, .. } => holder.as_deref(),
            _ => None,
        }
    }

    /// True for errors caused by someone else holding the lock (`Busy` or `Timeout`).
    pub fn is_contention(&self) -> bool {
        matches!(self, LockError::Busy { .. } | LockError::Timeout { .. })
    }
}

impl From<LockError> for std::io::Error {
    fn from(e: LockError) -> Self {
        use std::io::ErrorKind;
        let kind = match &e {
            LockError::Timeout { .. } => ErrorKind::TimedOut,
            LockError::Busy { .. } => ErrorKind::WouldBlock,
            LockError::InvalidName { .. } | LockError::Invalid { .. } => ErrorKind::InvalidInput,
            LockError::Deadlock { .. } => ErrorKind::Deadlock,
            LockError::Io { source, .. } => source.kind(),
            LockError::Lost { .. } | LockError::NotHeld { .. } => ErrorKind::Other,
            _ => ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
