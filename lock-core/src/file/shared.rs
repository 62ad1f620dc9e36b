//! The first page of a lock file, mapped shared into every process that has the file
//! open, so that the uncontended path needs no system call besides the lock itself.
//!
//! Layout (the file is extended to [`PAGE_LEN`] bytes when first opened, never shrunk):
//!
//! | bytes | content |
//! |---|---|
//! | `0 .. RECORD_MAX` | the holder record, plain text (what `cat` shows) |
//! | `RECORD_MAX .. +4` | number of processes waiting for the OS lock (`u32`, native endian) |
//!
//! * The holder writes its record with a memory copy instead of `pwrite`. Only the
//!   holder of the OS lock writes it; readers use `pread` and tolerate torn records.
//! * A process increments the waiter count before it arms its wake-up watch and
//!   decrements it when it stops waiting (also on cancellation). A releaser bumps the
//!   file's times (the wake-up event) only if the count is non-zero. That is race-free:
//!   a waiter's failed attempt is ordered before the holder's unlock by the kernel's lock
//!   table, and its increment comes before that attempt, so a releaser that unlocks after
//!   the attempt also sees the count. A waiter killed while waiting leaves the count too
//!   high: releasers then wake nobody in vain — slower, never wrong. A process that could
//!   not map the page (file systems without shared mappings) always wakes on release,
//!   and when it waits without being counted it relies on its backoff re-tries.
//!
//! A lock file must not be truncated by anyone while processes use it (a mapped page
//! beyond the end of a file faults); this crate never truncates one.

use std::fs::File;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::os::RECORD_MAX;

/// Bytes mapped (and the least length of a lock file).
pub(crate) const PAGE_LEN: usize = 4096;
const WAITERS_AT: usize = RECORD_MAX;

/// A shared mapping of the first [`PAGE_LEN`] bytes of a lock file.
pub(crate) struct SharedPage {
    ptr: NonNull<u8>,
}

// SAFETY: the mapping is plain shared memory, valid until `Drop` unmaps it; every
// access that may be concurrent (the waiter count) is atomic, and the record area is
// only written by the holder of the OS lock (one thread at a time, see `write_record`).
unsafe impl Send for SharedPage {}
// SAFETY: as above; `&SharedPage` only offers the atomic counter and `write_record`,
// whose callers are serialised by the OS lock.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// Maps the first page of `f` (opened for reading and writing), extending the file to
    /// a page first if it is shorter.
    pub(crate) fn map(f: &File) -> io::Result<SharedPage> {
        use std::os::fd::AsRawFd;
        if f.metadata()?.len() < PAGE_LEN as u64 {
            // Only ever grows: concurrent openers all extend to the same length, and
            // existing content (a holder's record) is kept.
            f.set_len(PAGE_LEN as u64)?;
        }
        // SAFETY: a fresh shared, read-write mapping of a descriptor we own, at offset 0,
        // of a length the file now has; the kernel picks the address. The result is
        // checked against MAP_FAILED before use.
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
        Ok(SharedPage { ptr })
    }

    fn waiters(&self) -> &AtomicU32 {
        // SAFETY: `WAITERS_AT + 4 <= PAGE_LEN`, the mapping is page-aligned so the
        // address is 4-aligned, it stays mapped for as long as `self` lives, and the
        // counter is only ever accessed atomically, by every process.
        unsafe { &*self.ptr.as_ptr().add(WAITERS_AT).cast::<AtomicU32>() }
    }

    /// Writes the holder record, given as consecutive parts, straight into the page
    /// (parts beyond [`RECORD_MAX`] bytes are cut off). Callers hold the OS lock on the
    /// file, so no other well-behaved writer exists.
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

    /// Counts this process as waiting until the returned value drops.
    pub(crate) fn wait(&self) -> Waiting<'_> {
        self.waiters().fetch_add(1, Ordering::SeqCst);
        Waiting(self.waiters())
    }

    /// True if some process may be waiting for the lock.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiters().load(Ordering::SeqCst) != 0
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; nothing borrows it any more
        // (borrows are tied to `&self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), PAGE_LEN) };
    }
}

/// Marks one waiting process; see [`SharedPage::wait`].
pub(crate) struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Saturating: a counter clobbered by someone else must not wrap around.
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tag: &str) -> (std::path::PathBuf, File) {
        let dir =
            std::env::temp_dir().join(format!("lock-core-shared-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.lock");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        (path, f)
    }

    #[test]
    fn two_mappings_share_record_and_counter() {
        let (path, f1) = file("share");
        let f2 = File::options().read(true).write(true).open(&path).unwrap();
        let a = SharedPage::map(&f1).unwrap();
        let b = SharedPage::map(&f2).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), PAGE_LEN as u64);

        a.write_record(&[b"hello ", b"record\nend\n"]);
        let text = std::fs::read(&path).unwrap();
        assert!(text.starts_with(b"hello record\nend\n"));

        assert!(!b.has_waiters());
        {
            let _w1 = a.wait();
            assert!(b.has_waiters());
            let _w2 = b.wait();
            drop(_w1);
            assert!(a.has_waiters());
        }
        assert!(!a.has_waiters() && !b.has_waiters());
        // A clobbered (zero) counter does not wrap below zero.
        let w = a.wait();
        a.waiters().store(0, Ordering::SeqCst);
        drop(w);
        assert!(!a.has_waiters());
        // Mapping again keeps the content (no truncation), and unmapping is clean.
        drop((a, b));
        let c = SharedPage::map(&f1).unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(b"hello record"));
        drop(c);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_waiter_in_another_process_is_visible() {
        // The counter lives in the file's page cache: a `pread` (what another process
        // sees) reads the bytes an atomic increment wrote.
        let (path, f) = file("xproc");
        let p = SharedPage::map(&f).unwrap();
        let w = p.wait();
        let bytes = std::fs::read(&path).unwrap();
        let n = u32::from_ne_bytes(bytes[WAITERS_AT..WAITERS_AT + 4].try_into().unwrap());
        assert_eq!(n, 1);
        drop(w);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[WAITERS_AT..WAITERS_AT + 4], &[0, 0, 0, 0]);
        drop(p);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
