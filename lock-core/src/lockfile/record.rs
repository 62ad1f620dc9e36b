//! The holder record: plain text at the start of a lock-core lock file, so that `cat`
//! shows who holds it. Written by exclusive holders (with a memory copy into the shared
//! page); readers tolerate torn and foreign bytes: parsing is total, any input gives a
//! record or nothing, never a panic, and reads at most [`RECORD_MAX`] bytes.

use std::fs::File;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use crate::Holder;

const MAGIC: &str = "lock-core holder v1";

/// Room for a record: the name (≤ 256 bytes), the host (≤ 255) and a few numbers.
pub(crate) const RECORD_MAX: usize = 1024;

/// This machine's name, sanitised (no control characters, at most 255 characters).
pub(crate) fn host_name() -> &'static str {
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

/// A short, stable number for this machine's name (FNV-1a), kept beside each holder and
/// waiter in the shared page: a pid's liveness can only be checked on its own machine.
pub(crate) fn host_hash() -> u32 {
    static HASH: OnceLock<u32> = OnceLock::new();
    *HASH.get_or_init(|| {
        let mut h: u32 = 0x811c_9dc5;
        for b in host_name().bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h.max(1)
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

/// The part of every record of this process that never changes (made once; again in
/// the child of a `fork`, which has another pid).
fn record_head() -> &'static str {
    static HEAD: OnceLock<(u32, &'static str)> = OnceLock::new();
    let pid = crate::owner::pid();
    let &(made_for, head) = HEAD.get_or_init(|| (pid, make_head(pid)));
    if made_for == pid {
        return head;
    }
    forked_head(pid)
}

fn make_head(pid: u32) -> &'static str {
    // Once per process (and per fork generation): a few dozen bytes for good.
    Box::leak(format!("{MAGIC}\npid={pid}\nhost={}\n", host_name()).into_boxed_str())
}

#[cold]
fn forked_head(pid: u32) -> &'static str {
    static FORKED: std::sync::Mutex<Option<(u32, &'static str)>> = std::sync::Mutex::new(None);
    let mut f = crate::sync::lock_std(&FORKED);
    match *f {
        Some((p, head)) if p == pid => head,
        _ => {
            let head = make_head(pid);
            *f = Some((pid, head));
            head
        }
    }
}

/// The pieces of the record a holder puts into its lock file, in order. Hand-rolled (no
/// `fmt`, no allocation): this is on the uncontended path. `digits` is scratch space.
pub(crate) fn record_parts<'a>(
    name: &'a str,
    since_ms: u64,
    digits: &'a mut [u8; 20],
) -> [&'a [u8]; 6] {
    // Two digits per division: this runs on every uncontended exclusive file lock.
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

/// Milliseconds since the Unix epoch, for records (at coarse resolution).
pub(crate) fn now_ms() -> u64 {
    crate::clock::wall_millis()
}

/// The record as a string.
#[cfg(test)]
pub(crate) fn record(name: &str, since_ms: u64) -> String {
    let mut digits = [0u8; 20];
    record_parts(name, since_ms, &mut digits)
        .iter()
        .map(|p| String::from_utf8_lossy(p))
        .collect()
}

/// Writes the record at the start of one of lock-core's own lock files, with `pwrite`
/// (for files whose page could not be mapped). Never used on other files.
pub(crate) fn write_record(f: &File, name: &str) -> io::Result<()> {
    let mut buf = [0u8; RECORD_MAX];
    let mut digits = [0u8; 20];
    let mut n = 0;
    for part in record_parts(name, now_ms(), &mut digits) {
        let Some(dst) = buf.get_mut(n..n + part.len()) else {
            break;
        };
        dst.copy_from_slice(part);
        n += part.len();
    }
    write_all_at(f, &buf[..n], 0)
}

#[cfg(unix)]
pub(crate) fn write_all_at(f: &File, buf: &[u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, at)
}

#[cfg(not(unix))]
pub(crate) fn write_all_at(_f: &File, _buf: &[u8], _at: u64) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
pub(crate) fn read_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, at)
}

#[cfg(not(unix))]
pub(crate) fn read_at(_f: &File, _buf: &mut [u8], _at: u64) -> io::Result<usize> {
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

/// Parses a record; anything malformed, foreign or torn (a read racing a write) is
/// `None`. Total and linear in the input.
pub(crate) fn parse_record(bytes: &[u8]) -> Option<Record> {
    let bytes = &bytes[..bytes.len().min(RECORD_MAX)];
    // A torn read may cut a multi-byte character after the `end` line; keep the valid
    // prefix.
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()?,
    };
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

/// The record at the start of `f`, if there is a well-formed one.
pub(crate) fn read_record(f: &File) -> Option<Record> {
    let mut buf = [0u8; RECORD_MAX];
    let n = read_at(f, &mut buf, 0).ok()?;
    parse_record(&buf[..n])
}

/// Who holds the lock, from a record — only if the record is for `name` and its
/// process still lives (a SIGKILLed holder leaves its record behind, but no lock).
pub(crate) fn holder_from(rec: Record, name: &str) -> Option<Holder> {
    if rec.name != name {
        return None;
    }
    // Liveness can only be checked for our own machine; a record from another host
    // (network file system) is reported as is.
    if rec.host == host_name() && !super::os::pid_alive(rec.pid) {
        return None;
    }
    let mut h = Holder::new();
    h.pid = Some(rec.pid);
    h.host = Some(rec.host);
    h.since = UNIX_EPOCH.checked_add(Duration::from_millis(rec.since_ms));
    h.detail = Some("file lock".to_owned());
    Some(h)
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

    /// The cached pid and the record head are forgotten in the child of a `fork`: the
    /// child's records name the child.
    #[cfg(unix)]
    #[test]
    fn a_fork_child_records_its_own_pid() {
        let parent = std::process::id();
        assert!(record("f", 1).contains(&format!("pid={parent}\n")));
        // SAFETY: the child only calls getpid, formats a string (glibc's malloc is
        // fork-safe), and leaves with `_exit`, running no destructors or atexit handlers
        // of the parent's state.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            // SAFETY: getpid and _exit are async-signal-safe.
            let me = unsafe { libc::getpid() } as u32;
            let ok = crate::owner::pid() == me
                && record("f", 1).contains(&format!("pid={me}\n"))
                && me != parent;
            // SAFETY: leaves the child at once, without the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child made above; `status` is a valid out-pointer.
        let waited = unsafe { libc::waitpid(child, &mut status, 0) };
        assert_eq!(waited, child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child recorded the parent's pid (status {status})"
        );
        assert!(record("f", 1).contains(&format!("pid={parent}\n")));
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

    #[test]
    fn parsing_is_total_on_garbage() {
        // Pseudo-random bytes, random cuts of a real record, and records with broken
        // fields: never a panic, and never a record that claims more than was there.
        let good = record("fuzz", 123);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 1400) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse_record(&bytes);
            let cut = (next() as usize) % (good.len() + 1);
            let mut mixed = good.as_bytes()[..cut].to_vec();
            mixed.extend(bytes.iter().take(64));
            if let Some(r) = parse_record(&mixed) {
                assert_eq!(r.name, "fuzz");
            }
        }
        for bad in [
            "lock-core holder v1\npid=-1\nhost=h\nsince_ms=1\nname=n\nend\n",
            "lock-core holder v1\npid=99999999999\nhost=h\nsince_ms=1\nname=n\nend\n",
            "lock-core holder v1\npid=1\nhost=h\nsince_ms=x\nname=n\nend\n",
            "lock-core holder v1\npid=1\nhost=h\nname=n\nend\n",
            "lock-core holder v1\nno equals sign\nend\n",
        ] {
            assert!(parse_record(bad.as_bytes()).is_none(), "{bad:?}");
        }
        // Over-long input is read only up to the record's room.
        let mut huge = good.clone().into_bytes();
        huge.resize(10 * RECORD_MAX, b'x');
        assert!(parse_record(&huge).is_some());
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
        assert_ne!(host_hash(), 0);
    }
}
