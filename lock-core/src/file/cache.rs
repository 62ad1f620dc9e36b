//! Open lock files, kept for re-use so that an uncontended acquire costs no
//! `open`/`close`.
//!
//! Bounded: at most [`CAP`] files stay open, and files nobody used for [`IDLE`] are closed
//! at the next cache access. A file in use (held or waited for) is never closed by the
//! cache: its entry may be dropped, but the holder keeps its own reference and the
//! descriptor closes only after that holder has unlocked it. Two holders of one process
//! never share a descriptor for one lock file: the in-process lock on the name admits
//! one at a time.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// The cache's state is consistent between statements, so a poisoned lock is usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Most lock files kept open per process.
pub(crate) const CAP: usize = 64;
/// Files unused for this long are closed at the next cache access.
pub(crate) const IDLE: Duration = Duration::from_secs(10);
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Times here are nanoseconds on the `clock` module's clocks (coarse is plenty for
/// idleness, and callers usually have a reading at hand).
fn elapsed(now: u64, since: u64) -> Duration {
    Duration::from_nanos(now.saturating_sub(since))
}

/// One open lock file, with its first page mapped where possible.
pub(crate) struct LockFile {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// `None` where mapping failed or is not supported: then records are written with
    /// `pwrite` and every release wakes waiters.
    #[cfg(unix)]
    page: Option<super::shared::SharedPage>,
}

/// Marks this process as waiting for a lock file while it lives.
pub(crate) struct Waiting<'a> {
    #[cfg(unix)]
    _inner: Option<super::shared::Waiting<'a>>,
    #[cfg(not(unix))]
    _inner: std::marker::PhantomData<&'a ()>,
}

impl LockFile {
    pub(super) fn new(file: File, path: PathBuf) -> LockFile {
        LockFile {
            #[cfg(unix)]
            page: super::shared::SharedPage::map(&file).ok(),
            file,
            path,
        }
    }

    /// Writes the holder record (the caller holds the OS lock).
    pub(crate) fn write_record(&self, name: &str) -> io::Result<()> {
        #[cfg(unix)]
        if let Some(page) = &self.page {
            let mut digits = [0u8; 20];
            page.write_record(&super::os::record_parts(
                name,
                super::os::now_ms(),
                &mut digits,
            ));
            return Ok(());
        }
        super::os::write_record(&self.file, name)
    }

    /// Counts this process among the waiters until the returned value drops.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        Waiting {
            #[cfg(unix)]
            _inner: self.page.as_ref().map(|p| p.wait()),
            #[cfg(not(unix))]
            _inner: std::marker::PhantomData,
        }
    }

    /// Whether the shared page counts any waiting process.
    #[cfg(all(test, unix))]
    pub(crate) fn has_waiters(&self) -> bool {
        self.page.as_ref().is_some_and(|p| p.has_waiters())
    }

    /// After unlocking: wakes waiting processes, if there may be any.
    pub(crate) fn wake_waiters(&self) {
        #[cfg(unix)]
        if let Some(page) = &self.page {
            if !page.has_waiters() {
                return;
            }
        }
        super::os::touch(&self.file);
    }
}

struct Slot {
    file: Arc<LockFile>,
    last_used: u64,
}

type Names = HashMap<Box<str>, Slot, foldhash::fast::RandomState>;

struct Cache {
    /// dir → lock name → open file. Lookups borrow (`&Path`, `&str`) instead of
    /// allocating a key, and are keyed by the lock name so that a hit needs no file name
    /// computation. A process uses few directories: a list compared byte-wise is faster
    /// than hashing paths component by component.
    dirs: Vec<(PathBuf, Names)>,
    len: usize,
    last_sweep: u64,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| {
    Mutex::new(Cache {
        dirs: Vec::new(),
        len: 0,
        last_sweep: crate::clock::coarse_nanos(),
    })
});

impl Cache {
    fn names(&mut self, dir: &Path) -> Option<&mut Names> {
        let dir = dir.as_os_str();
        self.dirs
            .iter_mut()
            .find(|(d, _)| d.as_os_str() == dir)
            .map(|(_, names)| names)
    }

    fn get(&mut self, dir: &Path, name: &str, now: u64) -> Option<Arc<LockFile>> {
        let slot = self.names(dir)?.get_mut(name)?;
        slot.last_used = now;
        Some(slot.file.clone())
    }

    /// Drops entries that nobody else references and that are idle (or, with
    /// `make_room`, the least recently used such entry if the cache is full). Returns
    /// them, for the caller to close after releasing the cache lock.
    #[must_use]
    fn sweep(&mut self, now: u64, make_room: bool) -> Vec<Arc<LockFile>> {
        let mut removed = Vec::new();
        for (_, files) in &mut self.dirs {
            files.retain(|_, s| {
                let keep = Arc::strong_count(&s.file) > 1 || elapsed(now, s.last_used) < IDLE;
                if !keep {
                    removed.push(s.file.clone());
                }
                keep
            });
        }
        self.len -= removed.len();
        if make_room && self.len >= CAP {
            let lru = self
                .dirs
                .iter()
                .enumerate()
                .flat_map(|(i, (_, files))| files.iter().map(move |(f, s)| (i, f, s)))
                .filter(|(_, _, s)| Arc::strong_count(&s.file) == 1)
                .min_by_key(|(_, _, s)| s.last_used)
                .map(|(i, f, _)| (i, f.clone()));
            if let Some((i, f)) = lru {
                if let Some(slot) = self.dirs[i].1.remove(&f) {
                    removed.push(slot.file);
                    self.len -= 1;
                }
            }
        }
        self.dirs.retain(|(_, files)| !files.is_empty());
        self.last_sweep = now;
        removed
    }
}

/// How many lock files the cache keeps open (for tests).
#[allow(dead_code)]
pub(crate) fn open_count() -> usize {
    lock(&CACHE).len
}

/// Returns the open lock file of the lock `name` in `dir`, opening (and creating) it on
/// a miss. `now` is the caller's idea of the current time (for idleness; see
/// [`elapsed`]). The error says which path failed.
pub(crate) fn open(
    dir: &Path,
    name: &str,
    now: u64,
) -> Result<Arc<LockFile>, (PathBuf, io::Error)> {
    let evicted;
    {
        let mut c = lock(&CACHE);
        if let Some(f) = c.get(dir, name, now) {
            if elapsed(now, c.last_sweep) < SWEEP_EVERY {
                return Ok(f);
            }
            evicted = c.sweep(now, false);
            drop(c);
            drop(evicted); // closes them outside the cache lock
            return Ok(f);
        }
    }
    // Miss: open outside the cache lock (file system calls may be slow).
    let path = dir.join(super::fname::file_name(name));
    let file = open_file(dir, &path)?;
    let lf = Arc::new(LockFile::new(file, path));
    let mut c = lock(&CACHE);
    evicted = if c.len >= CAP || elapsed(now, c.last_sweep) >= SWEEP_EVERY {
        c.sweep(now, true)
    } else {
        Vec::new()
    };
    if c.len < CAP {
        let slot = Slot {
            file: lf.clone(),
            last_used: now,
        };
        let replaced = match c.names(dir) {
            Some(names) => names.insert(name.into(), slot),
            None => {
                let mut names = Names::default();
                names.insert(name.into(), slot);
                c.dirs.push((dir.to_path_buf(), names));
                None
            }
        };
        // Only the in-process holder of a name opens its file, so a concurrent insert for
        // the same file is not expected; if it happens the old entry simply goes.
        if replaced.is_none() {
            c.len += 1;
        }
        drop(c);
        drop(replaced);
    } else {
        // Every cached file is in use; this one is not cached and closes after use.
        drop(c);
    }
    drop(evicted);
    Ok(lf)
}

fn open_file(dir: &Path, path: &Path) -> Result<File, (PathBuf, io::Error)> {
    let mut opts = File::options();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Lock directories are often shared by several users' processes.
        opts.mode(0o666);
    }
    match opts.open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
            opts.open(path).map_err(|e| (path.to_path_buf(), e))
        }
        Err(e) => Err((path.to_path_buf(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded_and_reuses_descriptors() {
        let dir = std::env::temp_dir().join(format!("lock-core-cache-{}", std::process::id()));
        let a1 = open(&dir, "a", crate::clock::coarse_nanos()).unwrap();
        let a2 = open(&dir, "a", crate::clock::coarse_nanos()).unwrap();
        assert_eq!(a1.path, dir.join("a.lock"));
        assert!(Arc::ptr_eq(&a1, &a2), "a hit re-uses the open file");
        drop((a1, a2));
        let held: Vec<_> = (0..CAP + 10)
            .map(|i| open(&dir, &format!("h{i}"), crate::clock::coarse_nanos()).unwrap())
            .collect();
        assert!(open_count() <= CAP);
        drop(held);
        for i in 0..3 * CAP {
            drop(open(&dir, &format!("x{i}"), crate::clock::coarse_nanos()).unwrap());
            assert!(open_count() <= CAP);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
