//! Operating-system pieces of the file lock: the OS lock itself (std's `File::lock`
//! family, flock semantics on Unix), the holder record, process liveness, and the
//! wake-up source for waiters (inotify on Linux).

use std::fs::File;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use crate::Holder;

/// Tries the exclusive OS lock once, without blocking. `Ok(false)`: held elsewhere.
pub(crate) fn try_lock(f: &File) -> io::Result<bool> {
    match f.try_lock() {
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

/// Probes, on a separate open file description, whether anyone holds the lock. Takes a
/// *shared* lock for an instant, so probes never conflict with each other. Closing the
/// probe's descriptor is itself a wake-up event for waiters (see [`Watch`]), so a waiter
/// whose attempt collided with the probe is not left sleeping.
pub(crate) fn probe_held(path: &std::path::Path) -> io::Result<bool> {
    let f = match File::open(path) {
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
/// a new holder that got in first. Needs write access, which the lock file's opener has.
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
// Holder record.

const MAGIC: &str = "lock-core holder v1";

fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let raw = raw_host_name().unwrap_or_default();
        let clean: String = raw.chars().filter(|c| !c.is_control()).take(255).collect();
        if clean.is_empty() {
            "unknown".to_owned()
        } else {
            clean
        }
    })
}

#[cfg(unix)]
fn raw_host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that
    // many and we never read past the first NUL (or the end) below.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(not(unix))]
fn raw_host_name() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

/// Room for a record: the name (≤ 256 bytes), the host (≤ 255) and a few numbers.
pub(crate) const RECORD_MAX: usize = 1024;

/// The part of every record of this process that never changes.
fn record_head() -> &'static str {
    static HEAD: OnceLock<String> = OnceLock::new();
    HEAD.get_or_init(|| {
        format!(
            "{MAGIC}\npid={}\nhost={}\n",
            std::process::id(),
            host_name()
        )
    })
}

/// The pieces of the record a holder puts into its lock file, in order. Hand-rolled (no
/// `fmt`, no allocation): this is on the uncontended path. `digits` is scratch space.
pub(crate) fn record_parts<'a>(
    name: &'a str,
    since_ms: u64,
    digits: &'a mut [u8; 20],
) -> [&'a [u8]; 6] {
    // Two digits per division: this runs on every uncontended file lock.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
                                2021222324252627282930313233343536373839\
                                4041424344454647484950515253545556575859\
                                6061626364656667686970717273747576777879\
                                8081828384858687888990919293949596979899";
    let mut d = digits.len();
    let mut v = since_ms;
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        d -= 2;
        digits[d..d + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        let pair = v as usize * 2;
        d -= 2;
        digits[d..d + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        d -= 1;
        digits[d] = b'0' + v as u8;
    }
    [
        record_head().as_bytes(),
        b"since_ms=",
        &digits[d..],
        b"\nname=",
        name.as_bytes(),
        b"\nend\n",
    ]
}

/// Copies `parts` one after another into `buf`, and returns the length written. Cannot
/// overflow for valid names (head ≤ ~300 bytes, name ≤ 256); if it would, the record
/// just stays without its `end` line, i.e. unreadable.
pub(crate) fn record_into(buf: &mut [u8; RECORD_MAX], name: &str, since_ms: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    for part in record_parts(name, since_ms, &mut digits) {
        let Some(dst) = buf.get_mut(n..n + part.len()) else {
            break;
        };
        dst.copy_from_slice(part);
        n += part.len();
    }
    n
}

/// Milliseconds since the Unix epoch, for records (at coarse resolution).
pub(crate) fn now_ms() -> u64 {
    crate::clock::wall_millis()
}

/// The record as a string.
#[cfg(test)]
pub(crate) fn record(name: &str, since_ms: u64) -> String {
    let mut buf = [0u8; RECORD_MAX];
    let n = record_into(&mut buf, name, since_ms);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Overwrites the start of the lock file with the holder record, with `pwrite` (in place:
/// the file is never truncated or unlinked; readers stop at the `end` line).
pub(crate) fn write_record(f: &File, name: &str) -> io::Result<()> {
    let mut buf = [0u8; RECORD_MAX];
    let n = record_into(&mut buf, name, now_ms());
    write_all_at(f, &buf[..n])
}

#[cfg(unix)]
fn write_all_at(f: &File, buf: &[u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, 0)
}

#[cfg(windows)]
fn write_all_at(f: &File, mut buf: &[u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    let mut off = 0u64;
    while !buf.is_empty() {
        let n = f.seek_write(buf, off)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn write_all_at(_f: &File, _buf: &[u8]) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8]) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, 0)
}

#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8]) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, 0)
}

#[cfg(not(any(unix, windows)))]
fn read_at(_f: &File, _buf: &mut [u8]) -> io::Result<usize> {
    Ok(0)
}

/// A parsed holder record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) pid: u32,
    pub(crate) host: String,
    pub(crate) since_ms: u64,
    pub(crate) name: String,
}

/// Parses a record; anything malformed or torn (a read racing a write) is `None`.
pub(crate) fn parse_record(text: &[u8]) -> Option<Record> {
    let text = std::str::from_utf8(text).ok().or_else(|| {
        // A torn read may cut a multi-byte character after the `end` line; keep the
        // valid prefix.
        let mut end = text.len();
        while end > 0 && std::str::from_utf8(&text[..end]).is_err() {
            end -= 1;
        }
        std::str::from_utf8(&text[..end]).ok()
    })?;
    let mut lines = text.split('\n');
    if lines.next()? != MAGIC {
        return None;
    }
    let (mut pid, mut host, mut since, mut name) = (None, None, None, None);
    for line in lines {
        if line == "end" {
            return Some(Record {
                pid: pid?,
                host: host?,
                since_ms: since?,
                name: name?,
            });
        }
        let (k, v) = line.split_once('=')?;
        match k {
            "pid" => pid = Some(v.parse().ok()?),
            "host" => host = Some(v.to_owned()),
            "since_ms" => since = Some(v.parse().ok()?),
            "name" => name = Some(v.to_owned()),
            _ => {}
        }
    }
    None
}

/// Who holds the lock, from its record — only if the record is for `name` and its
/// process still lives (a SIGKILLed holder leaves its record behind, but no lock).
pub(crate) fn read_holder(f: &File, name: &str) -> Option<Holder> {
    let mut buf = vec![0u8; RECORD_MAX];
    let n = read_at(f, &mut buf).ok()?;
    let rec = parse_record(&buf[..n])?;
    holder_from(rec, name)
}

pub(crate) fn holder_from(rec: Record, name: &str) -> Option<Holder> {
    if rec.name != name {
        return None;
    }
    // Liveness can only be checked for our own machine; a record from another host
    // (network file system) is reported as is.
    if rec.host == host_name() && !pid_alive(rec.pid) {
        return None;
    }
    let mut h = Holder::new();
    h.pid = Some(rec.pid);
    h.host = Some(rec.host);
    h.since = UNIX_EPOCH.checked_add(Duration::from_millis(rec.since_ms));
    h.detail = Some("file lock".to_owned());
    Some(h)
}

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
        if let Some(fd) = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop() {
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
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
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
            let mask = libc::IN_ATTRIB | libc::IN_CLOSE_WRITE | libc::IN_CLOSE_NOWRITE;
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
    fn record_digits_are_exact() {
        for ms in [
            0,
            7,
            10,
            99,
            100,
            101,
            999,
            1_000,
            1_763_800_000_123,
            u64::MAX,
        ] {
            let rec = parse_record(record("d", ms).as_bytes()).unwrap();
            assert_eq!(rec.since_ms, ms);
        }
    }

    #[test]
    fn record_round_trips() {
        let text = record("a/b c", now_ms());
        let rec = parse_record(text.as_bytes()).unwrap();
        assert_eq!(rec.pid, std::process::id());
        assert_eq!(rec.name, "a/b c");
        assert_eq!(rec.host, host_name());
        // Trailing garbage from a longer, older record is ignored.
        let mut longer = text.clone().into_bytes();
        longer.extend_from_slice(b"name=old\nend\n\xff\xfe");
        assert_eq!(parse_record(&longer).unwrap().name, "a/b c");
        // Torn or foreign content is no record.
        assert!(parse_record(&text.as_bytes()[..text.len() - 4]).is_none());
        assert!(parse_record(b"hello").is_none());
        assert!(parse_record(b"").is_none());
    }

    #[cfg(unix)]
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
    fn a_dead_holder_is_not_reported() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let text = record("n", now_ms()).replace(
            &format!("pid={}\n", std::process::id()),
            &format!("pid={pid}\n"),
        );
        let rec = parse_record(text.as_bytes()).unwrap();
        assert_eq!(rec.pid, pid);
        assert!(holder_from(rec, "n").is_none());
        let live = parse_record(record("n", now_ms()).as_bytes()).unwrap();
        let h = holder_from(live, "n").unwrap();
        assert_eq!(h.pid, Some(std::process::id()));
        let other = parse_record(record("m", now_ms()).as_bytes()).unwrap();
        assert!(holder_from(other, "n").is_none());
    }

    #[test]
    fn host_name_is_known() {
        assert!(!host_name().is_empty());
        assert!(!host_name().contains('\n'));
    }

    #[cfg(target_os = "linux")]
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
        write_record(&f, "w").unwrap();
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
