//! Operating-system pieces of the file lock: the OS locks themselves (flock for
//! exclusive and shared holds, open-file-description byte-range locks for the permits
//! of counted locks), process liveness, and the wake-up source for waiters (inotify on
//! Linux).

use std::fs::File;
use std::io;
use std::sync::OnceLock;
use std::time::Duration;

/// Tries the exclusive OS lock once, without blocking. `Ok(false)`: held elsewhere.
pub(crate) fn try_lock(f: &File) -> io::Result<bool> {
    match f.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Tries the shared OS lock (`flock(LOCK_SH)`) once, without blocking.
pub(crate) fn try_lock_shared(f: &File) -> io::Result<bool> {
    match f.try_lock_shared() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Waits in the kernel for the exclusive OS lock. The holder's unlock hands it over
/// directly, the quickest cross-process wake-up there is (no event, no re-try), but the
/// wait cannot time out, so only waits without a deadline use it.
pub(crate) fn lock_blocking(f: &File) -> io::Result<()> {
    loop {
        match f.lock() {
            // A signal handler ran; the lock was not taken.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Where the permit bytes of a counted lock start: far beyond any content, so that
/// the byte-range locks never cover data (they do not affect I/O either way).
const PERMITS_AT: i64 = 1 << 40;

/// Tries to take permit `i` of a counted lock once: an open-file-description write lock
/// on one byte (`F_OFD_SETLK`), which belongs to this descriptor like a flock and is
/// dropped by the kernel when the holder dies. `Ok(false)`: held elsewhere.
#[cfg(target_os = "linux")]
pub(crate) fn try_permit(f: &File, i: u32) -> io::Result<bool> {
    match ofd(f, i, libc::F_WRLCK as libc::c_short) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives permit `i` back.
#[cfg(target_os = "linux")]
pub(crate) fn release_permit(f: &File, i: u32) -> io::Result<()> {
    ofd(f, i, libc::F_UNLCK as libc::c_short)
}

#[cfg(target_os = "linux")]
fn ofd(f: &File, i: u32, kind: libc::c_short) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let lock = libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: PERMITS_AT + i64::from(i),
        l_len: 1,
        // Must be 0 for open-file-description locks.
        l_pid: 0,
    };
    loop {
        // SAFETY: `lock` is a valid `struct flock` that lives across the call, and the
        // descriptor is open for as long as `f` is borrowed.
        let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn try_permit(_f: &File, _i: u32) -> io::Result<bool> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "counted file locks need open-file-description locks (Linux)",
    ))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn release_permit(_f: &File, _i: u32) -> io::Result<()> {
    Ok(())
}

/// Probes, on a separate open file description, whether anyone holds the lock. Takes a
/// *shared* lock for an instant, so probes never conflict with each other or with shared
/// holders. Closing the probe's descriptor is itself a wake-up event for waiters (see
/// [`Watch`]), so a waiter whose attempt collided with the probe is not left sleeping.
/// Never follows a symlink.
pub(crate) fn probe_held(path: &std::path::Path) -> io::Result<bool> {
    let f = match super::open::open_existing(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match f.try_lock_shared() {
        Ok(()) => {
            f.unlock()?;
            Ok(false)
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// After giving the OS lock back: tell waiting processes (their [`Watch`] sees
/// `IN_ATTRIB`). Changes only the file's times, never its content, so it cannot disturb
/// a new holder that got in first.
#[cfg(unix)]
pub(crate) fn touch(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: `f` is an open descriptor for the duration of the call; a null `times`
    // pointer means "both times = now" and is explicitly allowed by futimens(2).
    let _ = unsafe { libc::futimens(f.as_raw_fd(), std::ptr::null()) };
}

#[cfg(not(unix))]
pub(crate) fn touch(f: &File) {
    let now = std::time::SystemTime::now();
    let _ = f.set_times(
        std::fs::FileTimes::new()
            .set_accessed(now)
            .set_modified(now),
    );
}

// ---------------------------------------------------------------------------------------
// Liveness.

/// True if a process with this id exists and is not a zombie.
#[cfg(unix)]
pub(crate) fn pid_alive(pid: u32) -> bool {
    // pid 0 and "negative" pids address process groups: never a holder.
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission checks; no signal is
    // delivered to anyone.
    let rc = unsafe { libc::kill(p, 0) };
    let exists = rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

/// True if the process group `pgid` has a member (zombies included: a group of zombies
/// is gone a moment later, when their parent reaps them).
#[cfg(unix)]
pub(crate) fn group_alive(pgid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    if p <= 1 {
        return false;
    }
    // SAFETY: signal 0 to a process group only checks that it exists.
    let rc = unsafe { libc::kill(-p, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
pub(crate) fn group_alive(_pgid: u32) -> bool {
    false
}

/// A killed process whose parent has not reaped it yet still answers `kill(pid, 0)`;
/// it holds nothing any more (its descriptors are closed).
#[cfg(target_os = "linux")]
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself contain ')'.
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next())
        .is_some_and(|state| state == 'Z' || state == 'X')
}

#[cfg(all(unix, not(target_os = "linux")))]
fn is_zombie(_pid: u32) -> bool {
    false
}

#[cfg(not(unix))]
pub(crate) fn pid_alive(_pid: u32) -> bool {
    // No cheap portable check: report the record's holder.
    true
}

// ---------------------------------------------------------------------------------------
// Wake-ups for waiters.

/// Lower bound of the safety-net re-try interval. Wake-ups normally come from [`Watch`];
/// the backoff only bounds the damage of a missed event (or is the whole mechanism where
/// there is no inotify).
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX_DEFAULT: Duration = Duration::from_millis(50);

/// Upper bound of the re-try interval: `$LOCK_CORE_FILE_POLL_MAX_MS` (1 to 60000) if set
/// when first needed, else 50 ms. Lower it for lock directories on network file
/// systems, whose remote changes inotify does not see.
pub(crate) fn backoff_max() -> Duration {
    static MAX: OnceLock<Duration> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("LOCK_CORE_FILE_POLL_MAX_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(BACKOFF_MAX_DEFAULT, |ms| {
                Duration::from_millis(ms.clamp(1, 60_000))
            })
    })
}

#[cfg(target_os = "linux")]
pub(crate) use linux::Watch;

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::Duration;

    /// An inotify watch on one lock file. It becomes readable when a holder gives the
    /// lock back (`IN_ATTRIB`, from the releaser's [`super::touch`]) or when any process
    /// closes the file (`IN_CLOSE_*`: a holder that exits or is SIGKILLed without
    /// releasing closes its descriptor, which drops its lock). Record writes by a new
    /// holder (`IN_MODIFY`) are deliberately not watched.
    ///
    /// Dropping the watch removes it at once: nothing outlives a cancelled wait. The
    /// inotify instance itself goes back to a small per-process pool instead of being
    /// closed, because closing one waits for a kernel RCU grace period (milliseconds) —
    /// which would otherwise be added to every contended hand-off.
    pub(crate) struct Watch {
        fd: Option<OwnedFd>,
        wd: libc::c_int,
    }

    /// Idle inotify instances kept for re-use; more than this are closed.
    const POOL_MAX: usize = 8;
    static POOL: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

    fn pooled_instance() -> io::Result<OwnedFd> {
        if let Some(fd) = crate::sync::lock_std(&POOL).pop() {
            return Ok(fd);
        }
        // SAFETY: plain syscall without pointer arguments.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    fn give_back(fd: OwnedFd) {
        let mut pool = crate::sync::lock_std(&POOL);
        if pool.len() < POOL_MAX {
            pool.push(fd);
        }
        // Else `fd` closes here (rare: more than POOL_MAX waits ended at once).
    }

    impl Watch {
        pub(crate) fn new(path: &Path) -> io::Result<Watch> {
            let c = CString::new(path.as_os_str().as_bytes())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let fd = pooled_instance()?;
            // Never follow a symlink planted at the lock path.
            let mask = libc::IN_ATTRIB
                | libc::IN_CLOSE_WRITE
                | libc::IN_CLOSE_NOWRITE
                | libc::IN_DONT_FOLLOW;
            // SAFETY: `fd` is a valid inotify descriptor and `c` a NUL-terminated path
            // that lives across the call.
            let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
            if wd < 0 {
                let e = io::Error::last_os_error();
                give_back(fd);
                return Err(e);
            }
            let w = Watch { fd: Some(fd), wd };
            // Events left from an earlier use of the instance would only cause a spurious
            // attempt; drop them now.
            let _ = w.drain();
            Ok(w)
        }

        /// The inotify descriptor, to wait for readability on (always `Some` while the
        /// watch lives).
        pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
            self.fd.as_ref().map(|fd| fd.as_fd())
        }

        fn raw(&self) -> RawFd {
            self.fd.as_ref().map_or(-1, |fd| fd.as_raw_fd())
        }

        /// Reads every queued event; returns `Err(WouldBlock)` once the queue is empty.
        pub(crate) fn drain(&self) -> io::Result<()> {
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
                let n = unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if n == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
            }
        }

        /// Blocks until an event is queued or `max` has passed.
        pub(crate) fn wait_blocking(&self, max: Duration) -> io::Result<()> {
            let mut pfd = libc::pollfd {
                fd: self.raw(),
                events: libc::POLLIN,
                revents: 0,
            };
            // Round up, so a short remaining time does not turn into a busy loop.
            let ms = max.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
            // SAFETY: `pfd` is one valid pollfd and we pass a count of 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            match self.drain() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                other => other,
            }
        }
    }

    impl Drop for Watch {
        fn drop(&mut self) {
            let Some(fd) = self.fd.take() else { return };
            // SAFETY: `fd` is our inotify instance and `wd` the watch it returned; removing
            // it does not wait for anything (the kernel frees the mark later).
            let rc = unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), self.wd) };
            if rc != 0 {
                // Unknown state: do not re-use this instance.
                return;
            }
            // The removal queues IN_IGNORED; the next user drains it (and anything else).
            give_back(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_of_processes() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: a zombie holds nothing.
        #[cfg(target_os = "linux")]
        {
            let t = std::time::Instant::now();
            while pid_alive(pid) {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "zombie {pid} still counted alive"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[cfg(unix)]
    #[test]
    fn watch_wakes_on_touch_and_close_and_times_out_otherwise() {
        use std::time::Instant;
        let dir = std::env::temp_dir().join(format!("lock-core-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.lock");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        let w = Watch::new(&path).unwrap();
        // Nothing happened: times out.
        let t = Instant::now();
        w.wait_blocking(Duration::from_millis(30)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(25));
        // A record write is not an event.
        super::super::record::write_record(&f, "w").unwrap();
        let t = Instant::now();
        w.wait_blocking(Duration::from_millis(30)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(25));
        // A touch is.
        touch(&f);
        let t = Instant::now();
        w.wait_blocking(Duration::from_secs(5)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        // So is a close.
        drop(f);
        let t = Instant::now();
        w.wait_blocking(Duration::from_secs(5)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        // The instance goes back to the pool and serves the next watch, on another file;
        // events of the old file no longer reach it.
        let other = dir.join("other.lock");
        let g = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&other)
            .unwrap();
        let f = File::options().read(true).write(true).open(&path).unwrap();
        drop(w);
        // Usually the pooled instance (unless a parallel test took it first).
        let w2 = Watch::new(&other).unwrap();
        touch(&f);
        let t = Instant::now();
        w2.wait_blocking(Duration::from_millis(30)).unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(25),
            "no event from the old file"
        );
        touch(&g);
        let t = Instant::now();
        w2.wait_blocking(Duration::from_secs(5)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
