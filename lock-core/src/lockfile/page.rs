//! The first page of one of lock-core's own lock files, mapped shared into every process
//! that has the file open: who holds the lock, who waits, and whose turn it is.
//!
//! | bytes | content |
//! |---|---|
//! | `0 .. 1024` | the holder record of an exclusive holder, plain text (what `cat` shows) |
//! | `1024 .. 1032` | [`MAGIC`]: marks the file as lock-core's (nothing else is ever written to) |
//! | `1032 .. 1036` | waiters that want a wake-up on release (`u32`: the low half counts those that watch the file, the high half those that sleep on the release count) |
//! | `1036 .. 1040` | the release count (`u32`, a futex word): bumped by a release that a sleeper waits for |
//! | `1040 .. 1048` | the next waiter's ticket (`u64`) |
//! | `1048 .. 1056` | which holder entries, then which waiter entries, may be in use (`u32` bit sets) |
//! | `1088 .. 2112` | holders: 32 entries, one per process-level OS hold |
//! | `2112 .. 3136` | waiters: 32 entries, one per waiting call |
//! | `3136 .. 3396` | the lock's name (`u32` length, then the bytes) |
//!
//! An entry is 32 bytes: pid, kind (exclusive, shared, or a counted lock and its count),
//! host (a hash of the machine's name), a counter (for waiters: how often another
//! process took the lock while this one waited; for holders: the grant's generation,
//! which differs from every earlier grant recorded in that entry), the time it started (ms since the
//! epoch) and, for waiters, a ticket (the order in which waits began); for holders, the
//! last word is the *heirs*: a process group that inherited the hold's descriptor (the
//! command of `lock-core run`), 0 if none. A process claims a free entry by
//! compare-and-swap on its pid and frees it by storing 0. Entries of processes that died
//! (SIGKILL) stay behind: every reader checks liveness (`kill(pid, 0)`, and for a holder
//! with heirs `kill(-pgid, 0)`, for entries of this machine) before trusting one, and full
//! tables reclaim dead entries.
//!
//! **Kinds.** Every holder records its kind *before* it looks at the others' (both with
//! sequentially consistent accesses), so of two processes that take one name as two
//! different kinds at once, at least one sees the other and reports `Mismatch`.
//!
//! **Turns.** After a process takes the OS lock it adds one to the counter of every
//! other process's waiting entry; if one of those has already been passed twice (it is
//! *due*) and waits longer than the taker (an older ticket; a taker that is not waiting
//! has none), the taker gives the lock back at once and waits instead
//! ([`Page::must_yield`]). So while another process waits, one process takes at most three
//! turns in a row, in every mode. The due waiter with the oldest ticket yields to nobody,
//! so some process always makes progress.
//!
//! **Wake-ups.** A waiter that relies on release events counts itself in the word at
//! `1032` before it arms its inotify watch (async waits, served by the wake-up thread) or
//! reads the release count (blocking waits, which sleep on it as a futex — across
//! processes, since the page is a shared mapping of one file); a releaser bumps the file's
//! times (the inotify event) or the release count (and wakes its sleepers) only when the
//! matching half of that word is non-zero. That is race-free: the waiter's failed attempt
//! is ordered after its count by program order and before the holder's unlock by the
//! kernel's lock table, so a releaser that unlocks after the attempt also sees the count;
//! and a sleeper whose count was read before its attempt finds it changed, or is woken.
//!
//! A lock file must not be truncated while processes use it (a mapped page beyond the end
//! of a file faults); lock-core never truncates one.

use std::fs::File;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::record::RECORD_MAX;
use crate::mode::Mode;

/// Bytes mapped (and the least length of a lock file).
pub(crate) const PAGE_LEN: usize = 4096;
/// Where the magic is, and what it is.
pub(crate) const MAGIC_AT: u64 = RECORD_MAX as u64;
pub(crate) const MAGIC: [u8; 8] = *b"LKCORE02";
const WAKE_AT: usize = 1032;
const RELEASES_AT: usize = 1036;
/// One waiter that sleeps on the release count, in the word at [`WAKE_AT`].
const SLEEPER: u32 = 1 << 16;
const TICKET_AT: usize = 1040;
/// Bit `i` set: entry `i` of the table may be in use. Set by the entry's owner once it
/// has written the entry, cleared by the owner just before it empties it (never by
/// anyone else, so a set bit may point at an empty entry, never the other way round):
/// scans on the uncontended path visit only these entries.
const HOLDER_BITS_AT: usize = 1048;
const WAITER_BITS_AT: usize = 1052;
const HOLDERS_AT: usize = 1088;
const WAITERS_AT: usize = 2112;
pub(crate) const NAME_AT: u64 = 3136;
/// Entries per table.
pub(crate) const ENTRIES: usize = 32;
const ENTRY_LEN: usize = 32;

/// How many times another process may take the lock while one waits before the others
/// yield to it (so three turns in a row at most, counting the one under way).
const PASSES: u32 = 2;

/// An entry's kind, as stored.
pub(crate) fn kind_code(mode: Mode) -> u32 {
    match mode {
        Mode::Exclusive => 1,
        Mode::Shared => 2,
        Mode::Permits(n) => 3 | (n.min(crate::mode::MAX_PERMITS) << 8),
    }
}

/// The mode an entry's kind stands for.
pub(crate) fn mode_of(code: u32) -> Option<Mode> {
    match code & 0xff {
        1 => Some(Mode::Exclusive),
        2 => Some(Mode::Shared),
        3 => Some(Mode::Permits(code >> 8)),
        _ => None,
    }
}

/// Whether holders of kinds `a` and `b` are one lock (a reader/writer lock, or a counted
/// lock with the same count).
fn same_lock(a: u32, b: u32) -> bool {
    let rw = |c: u32| c == 1 || c == 2;
    (rw(a) && rw(b)) || a == b
}

/// The bytes that start the binary part of the first page of every fresh lock file:
/// what [`init`](super::open) writes.
pub(crate) fn name_bytes(name: &str) -> Vec<u8> {
    let n = name.len().min(crate::MAX_NAME_LEN);
    let mut v = Vec::with_capacity(4 + n);
    v.extend_from_slice(&(n as u32).to_ne_bytes());
    v.extend_from_slice(&name.as_bytes()[..n]);
    v
}

/// A shared mapping of the first [`PAGE_LEN`] bytes of a lock file.
pub(crate) struct Page {
    ptr: NonNull<u8>,
}

// SAFETY: the mapping is plain shared memory, valid until `Drop` unmaps it; every access
// that may be concurrent goes through atomics, except the record area, which only the
// holder of the exclusive OS lock writes (one thread at a time, see `write_record`).
unsafe impl Send for Page {}
// SAFETY: as above; `&Page` offers only atomics and `write_record`, whose callers are
// serialised by the exclusive OS lock.
unsafe impl Sync for Page {}

/// One table entry, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) pid: u32,
    pub(crate) kind: u32,
    pub(crate) host: u32,
    /// For waiters: how often another process took the lock meanwhile; for holders: the
    /// grant's generation (changes whenever the entry is taken again).
    pub(crate) count: u32,
    pub(crate) since_ms: u64,
    /// For waiters: the order in which waits began.
    pub(crate) ticket: u64,
    /// For holders: the process group that inherited the hold's descriptor (0: none).
    pub(crate) heirs: u32,
}

impl Entry {
    fn of(
        table: Table,
        pid: u32,
        kind: u32,
        host: u32,
        count: u32,
        since_ms: u64,
        last: u64,
    ) -> Entry {
        let (ticket, heirs) = match table {
            Table::Waiters => (last, 0),
            Table::Holders => (0, u32::try_from(last).unwrap_or(0)),
        };
        Entry {
            pid,
            kind,
            host,
            count,
            since_ms,
            ticket,
            heirs,
        }
    }

    /// True if the entry's process, or for a holder one of its heirs, may still be alive
    /// (checked for this machine only).
    pub(crate) fn alive(&self) -> bool {
        self.pid != 0
            && (self.host != super::record::host_hash()
                || super::os::pid_alive(self.pid)
                || (self.heirs != 0 && super::os::group_alive(self.heirs)))
    }

    /// True if the entry's own process is gone and only its heirs may hold on.
    pub(crate) fn inherited(&self) -> bool {
        self.heirs != 0
            && self.host == super::record::host_hash()
            && !super::os::pid_alive(self.pid)
    }
}

/// Which table.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Table {
    Holders,
    Waiters,
}

impl Table {
    fn base(self) -> usize {
        match self {
            Table::Holders => HOLDERS_AT,
            Table::Waiters => WAITERS_AT,
        }
    }

    fn bits(self) -> usize {
        match self {
            Table::Holders => HOLDER_BITS_AT,
            Table::Waiters => WAITER_BITS_AT,
        }
    }
}

impl Page {
    /// Maps the first page of `f`, one of lock-core's own files that is at least
    /// [`PAGE_LEN`] bytes long (see `open`).
    pub(crate) fn map(f: &File) -> io::Result<Page> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh shared, read-write mapping of a descriptor we own, at offset 0,
        // of a length the file has; the kernel picks the address. The result is checked
        // against MAP_FAILED before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Page { ptr })
    }

    fn u32_at(&self, at: usize) -> &AtomicU32 {
        debug_assert!(at.is_multiple_of(4) && at + 4 <= PAGE_LEN);
        // SAFETY: `at + 4 <= PAGE_LEN` and `at` is 4-aligned (the mapping is page-aligned),
        // the mapping lives as long as `self`, and these bytes are only ever accessed
        // atomically, by every process.
        unsafe { &*self.ptr.as_ptr().add(at).cast::<AtomicU32>() }
    }

    fn u64_at(&self, at: usize) -> &AtomicU64 {
        debug_assert!(at.is_multiple_of(8) && at + 8 <= PAGE_LEN);
        // SAFETY: as in `u32_at`, 8-aligned.
        unsafe { &*self.ptr.as_ptr().add(at).cast::<AtomicU64>() }
    }

    /// Writes the holder record, given as consecutive parts, straight into the page
    /// (parts beyond [`RECORD_MAX`] bytes are cut off). Callers hold the exclusive OS lock
    /// on the file, so no other well-behaved writer exists.
    pub(crate) fn write_record(&self, parts: &[&[u8]]) {
        let mut at = 0;
        for part in parts {
            let n = part.len().min(RECORD_MAX - at);
            // SAFETY: `at + n <= RECORD_MAX < PAGE_LEN`, so the destination lies in the
            // mapping; source and destination cannot overlap (the source is on the
            // caller's side, never in the page).
            unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), self.ptr.as_ptr().add(at), n) };
            at += n;
        }
    }

    fn entry_at(&self, table: Table, i: usize) -> usize {
        table.base() + i * ENTRY_LEN
    }

    fn read_entry(&self, table: Table, i: usize) -> Entry {
        let at = self.entry_at(table, i);
        Entry::of(
            table,
            self.u32_at(at).load(Ordering::SeqCst),
            self.u32_at(at + 4).load(Ordering::SeqCst),
            self.u32_at(at + 8).load(Ordering::Relaxed),
            self.u32_at(at + 12).load(Ordering::Relaxed),
            self.u64_at(at + 16).load(Ordering::Relaxed),
            self.u64_at(at + 24).load(Ordering::Relaxed),
        )
    }

    /// Records that process group `pgid` inherited this process's hold `i` (see
    /// [`Entry::heirs`]).
    pub(crate) fn set_heirs(&self, i: usize, pgid: u32) {
        let at = self.entry_at(Table::Holders, i);
        self.u64_at(at + 24)
            .store(u64::from(pgid), Ordering::SeqCst);
    }

    /// Every entry in use (kind written) of a table, with its index.
    pub(crate) fn entries(&self, table: Table) -> impl Iterator<Item = (usize, Entry)> + '_ {
        (0..ENTRIES)
            .map(move |i| (i, self.read_entry(table, i)))
            .filter(|(_, e)| e.pid != 0 && e.kind != 0)
    }

    /// Claims an entry for this process; `None` if the table is full of live entries.
    pub(crate) fn add(&self, table: Table, mode: Mode, since_ms: u64) -> Option<usize> {
        let me = crate::owner::pid();
        for round in 0..2 {
            for i in 0..ENTRIES {
                let at = self.entry_at(table, i);
                if self
                    .u32_at(at)
                    .compare_exchange(0, me, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    self.u32_at(at + 8)
                        .store(super::record::host_hash(), Ordering::Relaxed);
                    // Waiters count passes from 0; holders carry a grant generation,
                    // unique in this process, so that a re-read tells "the same grant"
                    // from "released and taken again" (cross-process cycle checks).
                    // A grant's generation is one more than whatever this entry held
                    // before: it differs from every earlier grant recorded here, without
                    // a shared counter on the uncontended path.
                    let count = match table {
                        Table::Waiters => 0,
                        Table::Holders => self
                            .u32_at(at + 12)
                            .load(Ordering::Relaxed)
                            .wrapping_add(1)
                            .max(1),
                    };
                    self.u32_at(at + 12).store(count, Ordering::Relaxed);
                    self.u64_at(at + 16).store(since_ms, Ordering::Relaxed);
                    let ticket = match table {
                        Table::Waiters => self.u64_at(TICKET_AT).fetch_add(1, Ordering::Relaxed),
                        Table::Holders => 0,
                    };
                    self.u64_at(at + 24).store(ticket, Ordering::Relaxed);
                    // Last, and sequentially consistent: see "Kinds" in the module docs.
                    self.u32_at(at + 4).store(kind_code(mode), Ordering::SeqCst);
                    self.u32_at(table.bits()).fetch_or(1 << i, Ordering::SeqCst);
                    return Some(i);
                }
            }
            if round == 0 {
                self.reclaim_dead(table);
            }
        }
        None
    }

    /// Frees entry `i` (claimed by this process).
    pub(crate) fn remove(&self, table: Table, i: usize) {
        let at = self.entry_at(table, i);
        // Before the entry is emptied: once it is, another process may claim it and set
        // the bit again.
        self.u32_at(table.bits())
            .fetch_and(!(1 << i), Ordering::SeqCst);
        self.u32_at(at + 4).store(0, Ordering::SeqCst);
        self.u32_at(at).store(0, Ordering::SeqCst);
    }

    /// Frees the entries of processes that no longer exist.
    fn reclaim_dead(&self, table: Table) {
        for (i, e) in self.entries(table).collect::<Vec<_>>() {
            if !e.alive() {
                let at = self.entry_at(table, i);
                if self
                    .u32_at(at)
                    .compare_exchange(e.pid, 0, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    self.u32_at(at + 4).store(0, Ordering::SeqCst);
                }
            }
        }
    }

    /// Indexes of the entries of `table` in use by other processes, visiting only the
    /// entries whose bit is set and reading only their pid and kind words (the
    /// uncontended path scans both tables on every grant).
    fn others(&self, table: Table, me: u32) -> impl Iterator<Item = (usize, u32)> + '_ {
        let mut bits = self.u32_at(table.bits()).load(Ordering::SeqCst);
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
        .filter_map(move |i| {
            let at = self.entry_at(table, i);
            let pid = self.u32_at(at).load(Ordering::SeqCst);
            if pid == 0 || pid == me {
                return None;
            }
            let kind = self.u32_at(at + 4).load(Ordering::SeqCst);
            (kind != 0).then_some((i, kind))
        })
    }

    /// A live entry of another process whose kind is not one lock with `mode`, if any.
    pub(crate) fn mismatch(&self, mode: Mode) -> Option<Entry> {
        let me = crate::owner::pid();
        let mine = kind_code(mode);
        [Table::Holders, Table::Waiters].into_iter().find_map(|t| {
            self.others(t, me)
                .filter(|&(_, kind)| !same_lock(kind, mine))
                .map(|(i, _)| self.read_entry(t, i))
                .find(|e| e.pid != me && e.kind != 0 && !same_lock(e.kind, mine) && e.alive())
        })
    }

    /// After this process took the OS lock: whether another process's waiter that waits
    /// longer than the taker (whose own waiting entry is `mine`, if it waits) has already
    /// been passed often enough that this turn must go to it (then the caller gives the
    /// lock back and waits). Otherwise counts this turn against every other waiter.
    pub(crate) fn must_yield(&self, mine: Option<usize>) -> bool {
        let me = crate::owner::pid();
        if self.others(Table::Waiters, me).next().is_none() {
            return false;
        }
        let my_ticket = mine.map_or(u64::MAX, |i| self.read_entry(Table::Waiters, i).ticket);
        let others: Vec<(usize, Entry)> = self
            .entries(Table::Waiters)
            .filter(|(_, e)| e.pid != me)
            .collect();
        if others
            .iter()
            .any(|(_, e)| e.count >= PASSES && e.ticket < my_ticket && e.alive())
        {
            return true;
        }
        for (i, _) in others {
            let at = self.entry_at(Table::Waiters, i);
            self.u32_at(at + 12).fetch_add(1, Ordering::Relaxed);
        }
        false
    }

    /// Entry `i` of `table`, as it is now.
    pub(crate) fn entry(&self, table: Table, i: usize) -> Entry {
        self.read_entry(table, i)
    }

    /// The count of a waiting entry (how often it was passed).
    pub(crate) fn passes(&self, i: usize) -> u32 {
        self.u32_at(self.entry_at(Table::Waiters, i) + 12)
            .load(Ordering::Relaxed)
    }

    /// Counts a waiter that wants a wake-up on release (one that watches the file, or
    /// with `sleeps` one that sleeps on the release count), until the returned value drops.
    pub(crate) fn wake_me(&self, sleeps: bool) -> WakeMe<'_> {
        let one = if sleeps { SLEEPER } else { 1 };
        self.u32_at(WAKE_AT).fetch_add(one, Ordering::SeqCst);
        WakeMe(self.u32_at(WAKE_AT), one)
    }

    /// Whether some waiter watches the file, and whether some sleeps on the release count.
    pub(crate) fn wants_wake(&self) -> (bool, bool) {
        let w = self.u32_at(WAKE_AT).load(Ordering::SeqCst);
        (w & (SLEEPER - 1) != 0, w >= SLEEPER)
    }

    /// The release count, to be read before an attempt that [`sleep`](Self::sleep) may
    /// follow.
    pub(crate) fn releases(&self) -> u32 {
        self.u32_at(RELEASES_AT).load(Ordering::SeqCst)
    }

    /// Bumps the release count and wakes every process sleeping on it.
    pub(crate) fn wake_sleepers(&self) {
        let word = self.u32_at(RELEASES_AT);
        word.fetch_add(1, Ordering::SeqCst);
        futex::wake_all(word);
    }

    /// Sleeps until the release count is no longer `seen` (returns at once if it is not
    /// now), a wake-up, or `max` — whichever comes first. Spurious returns are possible.
    pub(crate) fn sleep(&self, seen: u32, max: std::time::Duration) {
        futex::wait(self.u32_at(RELEASES_AT), seen, max);
    }
}

/// A page read with `pread` (for listings: no mapping, no writes): the lock's name and
/// the entries of both tables, as they were.
pub(crate) struct Snapshot {
    pub(crate) name: Option<String>,
    pub(crate) holders: Vec<Entry>,
    pub(crate) waiters: Vec<Entry>,
}

/// Reads a snapshot of `f`'s page; `None` if it is not one of lock-core's files.
pub(crate) fn snapshot(f: &File) -> Option<Snapshot> {
    let mut buf = vec![0u8; PAGE_LEN];
    let n = super::record::read_at(f, &mut buf, 0).ok()?;
    if n < PAGE_LEN || buf[MAGIC_AT as usize..MAGIC_AT as usize + 8] != MAGIC {
        return None;
    }
    let u32_at = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[at..at + 8]);
        u64::from_ne_bytes(b)
    };
    let table = |table: Table| -> Vec<Entry> {
        (0..ENTRIES)
            .map(|i| {
                let at = table.base() + i * ENTRY_LEN;
                Entry::of(
                    table,
                    u32_at(at),
                    u32_at(at + 4),
                    u32_at(at + 8),
                    u32_at(at + 12),
                    u64_at(at + 16),
                    u64_at(at + 24),
                )
            })
            .filter(|e| e.pid != 0 && e.kind != 0)
            .collect()
    };
    let len = u32_at(NAME_AT as usize) as usize;
    let name = (1..=crate::MAX_NAME_LEN)
        .contains(&len)
        .then(|| {
            String::from_utf8(buf[NAME_AT as usize + 4..NAME_AT as usize + 4 + len].to_vec()).ok()
        })
        .flatten();
    Some(Snapshot {
        name,
        holders: table(Table::Holders),
        waiters: table(Table::Waiters),
    })
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; nothing borrows it any more
        // (borrows are tied to `&self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), PAGE_LEN) };
    }
}

/// Marks one waiter that wants a wake-up; see [`Page::wake_me`].
pub(crate) struct WakeMe<'a>(&'a AtomicU32, u32);

impl Drop for WakeMe<'_> {
    fn drop(&mut self) {
        // Saturating: a counter clobbered by someone else must not wrap around.
        let one = self.1;
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(one));
    }
}

/// Futex calls on a word of the shared page. Not private futexes: the word is shared
/// between processes (the kernel keys it by the file and offset).
#[cfg(target_os = "linux")]
mod futex {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    pub(super) fn wait(word: &AtomicU32, seen: u32, max: Duration) {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(max.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(max.subsec_nanos() as i32),
        };
        // SAFETY: `word` is an aligned `u32` in a mapping that outlives the call (it is
        // borrowed from the page); FUTEX_WAIT only reads it, compares it with `seen` and
        // sleeps at most `ts` (a valid timespec on our stack). The unused arguments are
        // ignored for FUTEX_WAIT. Errors (EAGAIN: changed already, EINTR, ETIMEDOUT) all
        // mean "look again", which every caller does.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                seen,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }

    pub(super) fn wake_all(word: &AtomicU32) {
        // SAFETY: as in `wait`; FUTEX_WAKE only uses the address as a key and wakes at
        // most `i32::MAX` sleepers on it.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }
}

/// Elsewhere no futex: sleepers sleep their time out (their bounded backoff).
#[cfg(not(target_os = "linux"))]
mod futex {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    pub(super) fn wait(_word: &AtomicU32, _seen: u32, max: Duration) {
        std::thread::sleep(max);
    }

    pub(super) fn wake_all(_word: &AtomicU32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tag: &str) -> (std::path::PathBuf, File) {
        let dir = std::env::temp_dir().join(format!("lock-core-page-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.lock");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        f.set_len(PAGE_LEN as u64).unwrap();
        (path, f)
    }

    #[test]
    fn two_mappings_share_records_and_tables() {
        let (path, f1) = file("share");
        let f2 = File::options().read(true).write(true).open(&path).unwrap();
        let a = Page::map(&f1).unwrap();
        let b = Page::map(&f2).unwrap();
        a.write_record(&[b"hello ", b"record\nend\n"]);
        assert!(std::fs::read(&path)
            .unwrap()
            .starts_with(b"hello record\nend\n"));

        let i = a.add(Table::Holders, Mode::Permits(3), 42).unwrap();
        let seen: Vec<_> = b.entries(Table::Holders).collect();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1.pid, std::process::id());
        assert_eq!(mode_of(seen[0].1.kind), Some(Mode::Permits(3)));
        assert_eq!(seen[0].1.since_ms, 42);
        a.remove(Table::Holders, i);
        assert_eq!(b.entries(Table::Holders).count(), 0);

        assert_eq!(b.wants_wake(), (false, false));
        {
            let _w = a.wake_me(false);
            assert_eq!(b.wants_wake(), (true, false));
            let _s = a.wake_me(true);
            assert_eq!(b.wants_wake(), (true, true));
        }
        assert_eq!(b.wants_wake(), (false, false));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_sleeper_on_one_mapping_is_woken_through_another() {
        use std::time::{Duration, Instant};
        let (path, f1) = file("futex");
        let f2 = File::options().read(true).write(true).open(&path).unwrap();
        let a = Page::map(&f1).unwrap();
        let b = Page::map(&f2).unwrap();
        // A count that is not what the sleeper saw: no sleep at all.
        let seen = a.releases();
        b.wake_sleepers();
        let t = Instant::now();
        a.sleep(seen, Duration::from_secs(30));
        assert!(t.elapsed() < Duration::from_secs(10), "returned at once");
        // A sleeper woken by a release through the other mapping, long before its
        // 30 s are up (the barrier makes sure it is about to sleep first).
        let seen = a.releases();
        let ready = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                ready.wait();
                let t = Instant::now();
                a.sleep(seen, Duration::from_secs(30));
                t.elapsed()
            });
            ready.wait();
            // Wakes repeatedly until the sleeper is back: the first may come before it
            // sleeps, which is fine (the count changed, so it does not sleep then).
            while !t.is_finished() {
                b.wake_sleepers();
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(t.join().unwrap() < Duration::from_secs(10));
        });
        // And a sleep that nobody ends ends at its time.
        let seen = a.releases();
        let t = Instant::now();
        a.sleep(seen, Duration::from_millis(20));
        assert!(t.elapsed() >= Duration::from_millis(15));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn kinds_tell_one_lock_from_another() {
        assert!(same_lock(
            kind_code(Mode::Exclusive),
            kind_code(Mode::Shared)
        ));
        assert!(same_lock(
            kind_code(Mode::Permits(2)),
            kind_code(Mode::Permits(2))
        ));
        assert!(!same_lock(
            kind_code(Mode::Permits(2)),
            kind_code(Mode::Permits(3))
        ));
        assert!(!same_lock(
            kind_code(Mode::Permits(2)),
            kind_code(Mode::Shared)
        ));
        for m in [
            Mode::Exclusive,
            Mode::Shared,
            Mode::Permits(1),
            Mode::Permits(16383),
        ] {
            assert_eq!(mode_of(kind_code(m)), Some(m));
        }
        assert_eq!(mode_of(0), None);
    }

    /// Writes entry `i` as process `pid` (of this machine) would have, bit included.
    fn plant(p: &Page, table: Table, i: usize, pid: u32, mode: Mode) {
        let at = p.entry_at(table, i);
        p.u32_at(at).store(pid, Ordering::SeqCst);
        p.u32_at(at + 8)
            .store(super::super::record::host_hash(), Ordering::SeqCst);
        p.u32_at(at + 4).store(kind_code(mode), Ordering::SeqCst);
        p.u32_at(table.bits()).fetch_or(1 << i, Ordering::SeqCst);
    }

    #[test]
    fn an_entry_is_seen_exactly_while_its_bit_and_contents_are_there() {
        let (path, f) = file("bits");
        let p = Page::map(&f).unwrap();
        let me = crate::owner::pid();
        // Another (live) process's waiter, planted without its bit: not visited.
        let at = p.entry_at(Table::Waiters, 3);
        p.u32_at(at).store(1, Ordering::SeqCst);
        p.u32_at(at + 4)
            .store(kind_code(Mode::Exclusive), Ordering::SeqCst);
        assert_eq!(p.others(Table::Waiters, me).count(), 0);
        p.u32_at(Table::Waiters.bits())
            .fetch_or(1 << 3, Ordering::SeqCst);
        assert_eq!(p.others(Table::Waiters, me).collect::<Vec<_>>().len(), 1);
        // Our own entries set their bit when added and clear it when removed.
        let i = p.add(Table::Holders, Mode::Shared, 0).unwrap();
        assert_ne!(
            p.u32_at(Table::Holders.bits()).load(Ordering::SeqCst) & (1 << i),
            0
        );
        p.remove(Table::Holders, i);
        assert_eq!(
            p.u32_at(Table::Holders.bits()).load(Ordering::SeqCst) & (1 << i),
            0
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn dead_entries_are_ignored_and_reclaimed() {
        let (path, f) = file("dead");
        let p = Page::map(&f).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        // Fill the table with a dead process's entries, as SIGKILLed holders leave them.
        for i in 0..ENTRIES {
            plant(&p, Table::Holders, i, dead, Mode::Permits(2));
        }
        assert!(
            p.mismatch(Mode::Exclusive).is_none(),
            "dead holders do not count"
        );
        // A live one of another kind does (pid 1 always exists).
        plant(&p, Table::Holders, 7, 1, Mode::Permits(2));
        assert_eq!(p.mismatch(Mode::Exclusive).map(|e| e.pid), Some(1));
        plant(&p, Table::Holders, 7, dead, Mode::Permits(2));
        let i = p
            .add(Table::Holders, Mode::Exclusive, 1)
            .expect("a dead entry is reclaimed");
        p.remove(Table::Holders, i);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_waiter_passed_twice_makes_the_next_taker_yield() {
        let (path, f) = file("turns");
        let p = Page::map(&f).unwrap();
        // A waiter of another (live) process: pid 1 always exists.
        plant(&p, Table::Waiters, 5, 1, Mode::Exclusive);
        let at = p.entry_at(Table::Waiters, 5);
        p.u64_at(at + 24).store(3, Ordering::SeqCst);
        assert!(!p.must_yield(None));
        assert!(!p.must_yield(None));
        assert_eq!(p.passes(5), 2);
        assert!(p.must_yield(None), "third turn in a row goes to the waiter");
        // A taker that waits longer (an older ticket) does not yield to it.
        let mine = p.add(Table::Waiters, Mode::Exclusive, 0).unwrap();
        let at_mine = p.entry_at(Table::Waiters, mine);
        p.u64_at(at_mine + 24).store(1, Ordering::SeqCst);
        assert!(!p.must_yield(Some(mine)));
        p.u64_at(at_mine + 24).store(9, Ordering::SeqCst);
        assert!(p.must_yield(Some(mine)));
        p.remove(Table::Waiters, mine);
        p.remove(Table::Waiters, 5);
        assert!(!p.must_yield(None));
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
