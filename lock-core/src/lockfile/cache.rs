//! Open lock files, kept for re-use so that an uncontended acquire costs no
//! `open`/`close`.
//!
//! Bounded: at most [`CAP`] files stay open, and files nobody used for [`IDLE`] are closed
//! at the next cache access. A file in use (held or waited for) is never closed by the
//! cache: its entry may be dropped, but the holder keeps its own reference and the
//! descriptor closes only after that holder has unlocked it.
//!
//! **One file, one [`LockFile`].** A process opens each file (device and inode) once,
//! however it is reached — under several names with one `path`, or by name in a
//! directory and by `path` — so every holder of the process shares one descriptor and one
//! count of its OS locks, and a release never unlocks the file under another holder. The
//! file's own in-process lock (keyed by its identity, see [`LockFile::ident`]) admits its
//! holders one at a time, or in the shape they ask for, whatever name they use.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use super::open::Owner;

// The cache's state is consistent between statements, so a poisoned lock is usable.
use crate::sync::lock_std as lock;

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

/// One open lock file: the descriptor whose OS locks this process's holders take, its
/// page (for lock-core's own files), and what this process holds through it.
pub(crate) struct LockFile {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    pub(crate) owner: Owner,
    /// The file's identity: device and inode.
    pub(crate) id: (u64, u64),
    /// The file's own in-process lock, whatever name reaches it: a second ask from the
    /// chain that holds it (under any name) is re-entry, and holders under two names
    /// exclude each other in-process as they do across processes. Kept referenced while
    /// the file is open, so taking it costs no registry lookup.
    pub(crate) ident: crate::registry::Handle,
    /// `None` for files that are not lock-core's (or could not be mapped): OS locks only.
    #[cfg(unix)]
    pub(crate) page: Option<super::page::Page>,
    /// This process's share of an OS shared lock on the file.
    pub(crate) shared: Mutex<SharedOs>,
    /// The permits of a counted lock this process holds, by index.
    pub(crate) permits: Mutex<Vec<bool>>,
    /// When the file was last looked up (for idleness), set without the cache lock by
    /// the threads' own fronts ([`RECENT`]).
    last_used: AtomicU64,
}

/// This process's shared OS lock on a file: held while `holders > 0`.
#[derive(Default)]
pub(crate) struct SharedOs {
    /// In-process shared holders that hold it.
    pub(crate) holders: u32,
    /// The process's entry in the page's holder table.
    pub(crate) entry: Option<usize>,
}

/// Marks this process as waiting for a wake-up on release while it lives.
pub(crate) struct Waiting<'a> {
    #[cfg(unix)]
    _inner: Option<super::page::WakeMe<'a>>,
    #[cfg(not(unix))]
    _inner: std::marker::PhantomData<&'a ()>,
}

impl LockFile {
    pub(super) fn new(file: File, path: PathBuf, owner: Owner) -> io::Result<LockFile> {
        let id = identity(&file)?;
        let ident = crate::registry::get(&crate::name::file_key(id.0, id.1, &path));
        Ok(LockFile {
            id,
            ident,
            #[cfg(unix)]
            page: match owner {
                Owner::Ours => super::page::Page::map(&file).ok(),
                Owner::Foreign | Owner::ReadOnly => None,
            },
            file,
            path,
            owner,
            shared: Mutex::new(SharedOs::default()),
            permits: Mutex::new(Vec::new()),
            last_used: AtomicU64::new(0),
        })
    }

    /// The shared page, for lock-core's own files.
    #[cfg(unix)]
    pub(crate) fn page(&self) -> Option<&super::page::Page> {
        self.page.as_ref()
    }

    /// Writes the holder record of an exclusive holder (the caller holds the OS lock).
    /// Only into lock-core's own files.
    pub(crate) fn write_record(&self, name: &str) -> io::Result<()> {
        #[cfg(unix)]
        if let Some(page) = &self.page {
            let mut digits = [0u8; 20];
            page.write_record(&super::record::record_parts(
                name,
                super::record::now_ms(),
                &mut digits,
            ));
            return Ok(());
        }
        match self.owner {
            Owner::Ours => super::record::write_record(&self.file, name),
            Owner::Foreign | Owner::ReadOnly => Ok(()),
        }
    }

    /// Counts this process among the waiters that want a wake-up on release (with
    /// `sleeps`, one that sleeps on the page's release count; else one that watches the
    /// file), until the returned value drops.
    pub(crate) fn waiting(&self, sleeps: bool) -> Waiting<'_> {
        #[cfg(not(unix))]
        let _ = sleeps;
        Waiting {
            #[cfg(unix)]
            _inner: self.page.as_ref().map(|p| p.wake_me(sleeps)),
            #[cfg(not(unix))]
            _inner: std::marker::PhantomData,
        }
    }

    /// After unlocking: wakes waiting processes, if there may be any. Touching the file
    /// changes only its times, so it is done for foreign files too (their waiters, and
    /// ours, watch them).
    pub(crate) fn wake_waiters(&self) {
        #[cfg(unix)]
        if let Some(page) = &self.page {
            let (watch, sleep) = page.wants_wake();
            if sleep {
                page.wake_sleepers();
            }
            if !watch {
                return;
            }
        }
        if self.owner == Owner::ReadOnly {
            // futimens needs to own the file or write to it; our waiters re-try anyway.
            return;
        }
        super::os::touch(&self.file);
    }
}

#[cfg(unix)]
pub(crate) fn identity(f: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}

#[cfg(not(unix))]
pub(crate) fn identity(_f: &File) -> io::Result<(u64, u64)> {
    // No portable identity: each opened file counts as its own.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    Ok((0, NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)))
}

struct Slot {
    file: Arc<LockFile>,
}

impl Slot {
    fn last_used(&self) -> u64 {
        self.file.last_used.load(Ordering::Relaxed)
    }
}

type Names = HashMap<Box<str>, Slot, foldhash::fast::RandomState>;

struct Cache {
    /// dir → lock name → open file. Lookups borrow (`&Path`, `&str`) instead of
    /// allocating a key, and are keyed by the lock name so that a hit needs no file name
    /// computation. A process uses few directories: a list compared byte-wise is faster
    /// than hashing paths component by component. Files named with `path` are kept under
    /// their full path with an empty lock name.
    dirs: Vec<(PathBuf, Names)>,
    /// Every open lock file by identity, cached or not, while anyone uses it: a miss
    /// that opens a file some other way of reaching it has open already uses that one.
    by_id: HashMap<(u64, u64), Weak<LockFile>, foldhash::fast::RandomState>,
    len: usize,
    last_sweep: u64,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| {
    Mutex::new(Cache {
        dirs: Vec::new(),
        by_id: HashMap::default(),
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
        slot.file.last_used.store(now, Ordering::Relaxed);
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
                let keep = Arc::strong_count(&s.file) > 1 || elapsed(now, s.last_used()) < IDLE;
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
                .min_by_key(|(_, _, s)| s.last_used())
                .map(|(i, f, _)| (i, f.clone()));
            if let Some((i, f)) = lru {
                if let Some(slot) = self.dirs[i].1.remove(&f) {
                    removed.push(slot.file);
                    self.len -= 1;
                }
            }
        }
        self.dirs.retain(|(_, files)| !files.is_empty());
        // Files closed meanwhile (those in `removed` go at a later sweep; a dead entry is
        // simply replaced when its file is opened again).
        self.by_id.retain(|_, w| w.strong_count() > 0);
        self.last_sweep = now;
        removed
    }
}

/// Every lock file this process has open (held ones among them: a hold keeps its file
/// referenced). For the slow paths that look at this process's holds as a whole.
pub(crate) fn open_files() -> Vec<Arc<LockFile>> {
    lock(&CACHE)
        .by_id
        .values()
        .filter_map(Weak::upgrade)
        .collect()
}

/// How many lock files the cache keeps open (for tests).
#[allow(dead_code)]
pub(crate) fn open_count() -> usize {
    lock(&CACHE).len
}

/// Returns the open lock file of the lock `name` in `dir` (or, with `exact`, the file
/// `dir` itself), opening (and creating) it on a miss. `now` is the caller's idea of the
/// current time (for idleness; see [`elapsed`]). The error says which path failed.
pub(crate) fn open(
    dir: &Path,
    name: &str,
    exact: bool,
    now: u64,
) -> Result<Arc<LockFile>, (PathBuf, io::Error)> {
    let key = if exact { "" } else { name };
    if let Some(f) = recent(dir, key) {
        f.last_used.store(now, Ordering::Relaxed);
        return Ok(f);
    }
    let f = open_shared(dir, name, key, exact, now)?;
    remember(dir, key, &f);
    Ok(f)
}

/// Files this thread looked up last, by (directory, key): a hit takes no lock shared
/// with other threads. Weak references: the shared cache alone decides when a file
/// closes, and an entry whose file closed is simply a miss.
struct Recent {
    dir: PathBuf,
    key: Box<str>,
    file: Weak<LockFile>,
}

/// Entries per thread (a thread uses few lock files at a time).
const RECENT_LEN: usize = 4;

thread_local! {
    static RECENT: RefCell<Vec<Recent>> = const { RefCell::new(Vec::new()) };
}

fn recent(dir: &Path, key: &str) -> Option<Arc<LockFile>> {
    RECENT
        .try_with(|r| {
            let r = r.try_borrow().ok()?;
            let hit = r
                .iter()
                .find(|e| &*e.key == key && e.dir.as_os_str() == dir.as_os_str())?;
            hit.file.upgrade()
        })
        .ok()
        .flatten()
}

/// Remembers a lookup that missed this thread's entries (the oldest entry goes).
#[cold]
fn remember(dir: &Path, key: &str, file: &Arc<LockFile>) {
    let _ = RECENT.try_with(|r| {
        let Ok(mut r) = r.try_borrow_mut() else {
            return;
        };
        r.retain(|e| !(&*e.key == key && e.dir.as_os_str() == dir.as_os_str()));
        if r.len() >= RECENT_LEN {
            r.remove(0);
        }
        r.push(Recent {
            dir: dir.to_path_buf(),
            key: key.into(),
            file: Arc::downgrade(file),
        });
    });
}

/// The shared cache's lookup (and open on a miss).
fn open_shared(
    dir: &Path,
    name: &str,
    key: &str,
    exact: bool,
    now: u64,
) -> Result<Arc<LockFile>, (PathBuf, io::Error)> {
    let evicted;
    {
        let mut c = lock(&CACHE);
        if let Some(f) = c.get(dir, key, now) {
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
    let fresh = open_file(dir, name, exact)?;
    let mut c = lock(&CACHE);
    // The same file reached another way (another name on one `path`, a name and a
    // `path`) is one lock: use the descriptor that is open already.
    let (lf, duplicate) = match c.by_id.get(&fresh.id).and_then(Weak::upgrade) {
        Some(open) => (open, Some(fresh)),
        None => {
            let lf = Arc::new(fresh);
            c.by_id.insert(lf.id, Arc::downgrade(&lf));
            (lf, None)
        }
    };
    evicted = if c.len >= CAP || elapsed(now, c.last_sweep) >= SWEEP_EVERY {
        c.sweep(now, true)
    } else {
        Vec::new()
    };
    if c.len < CAP {
        lf.last_used.store(now, Ordering::Relaxed);
        let slot = Slot { file: lf.clone() };
        let replaced = match c.names(dir) {
            Some(names) => names.insert(key.into(), slot),
            None => {
                let mut names = Names::default();
                names.insert(key.into(), slot);
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
    drop(duplicate); // closed outside the cache lock
    Ok(lf)
}

/// Opens the lock file of `name` in `dir` (or the file `dir` itself, with `exact`),
/// preparing the directory first where needed.
fn open_file(dir: &Path, name: &str, exact: bool) -> Result<LockFile, (PathBuf, io::Error)> {
    let (path, recorded) = if exact {
        (dir.to_path_buf(), None)
    } else {
        (dir.join(super::fname::file_name(name)), Some(name))
    };
    if !exact {
        super::dir::prepare(dir)?;
    }
    let opened = match super::open::open_lock_file(&path, recorded) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && exact => {
            let parent = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent).map_err(|e| (parent.to_path_buf(), e))?;
            super::open::open_lock_file(&path, recorded)
        }
        other => other,
    };
    let (file, owner) = opened.map_err(|e| (path.clone(), e))?;
    LockFile::new(file, path.clone(), owner).map_err(|e| (path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_bounded_and_reuses_descriptors() {
        let dir = std::env::temp_dir().join(format!("lock-core-cache-{}", std::process::id()));
        let a1 = open(&dir, "a", false, crate::clock::coarse_nanos()).unwrap();
        let a2 = open(&dir, "a", false, crate::clock::coarse_nanos()).unwrap();
        assert_eq!(a1.path, dir.join("a.lock"));
        assert!(Arc::ptr_eq(&a1, &a2), "a hit re-uses the open file");
        drop((a1, a2));
        let held: Vec<_> = (0..CAP + 10)
            .map(|i| open(&dir, &format!("h{i}"), false, crate::clock::coarse_nanos()).unwrap())
            .collect();
        assert!(open_count() <= CAP);
        drop(held);
        for i in 0..3 * CAP {
            drop(open(&dir, &format!("x{i}"), false, crate::clock::coarse_nanos()).unwrap());
            assert!(open_count() <= CAP);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_threads_front_keeps_nothing_open_and_misses_once_the_file_closed() {
        let dir = std::env::temp_dir().join(format!("lock-core-front-{}", std::process::id()));
        let now = crate::clock::coarse_nanos();
        let f1 = open(&dir, "front", false, now).unwrap();
        // A hit from this thread's front: the same file, counted once more by us alone
        // (the front holds a weak reference, the shared cache one strong).
        let f2 = open(&dir, "front", false, now).unwrap();
        assert!(Arc::ptr_eq(&f1, &f2));
        assert_eq!(Arc::strong_count(&f1), 3);
        let id = f1.id;
        drop((f1, f2));
        // The shared cache closes it once idle; the front then misses and opens anew.
        let later = now + 2 * IDLE.as_nanos() as u64;
        drop(lock(&CACHE).sweep(later, false));
        assert!(
            recent(&dir, "front").is_none(),
            "the front kept the file open"
        );
        let f3 = open(&dir, "front", false, later).unwrap();
        assert_eq!(f3.id, id, "the same file, opened again");
        drop(f3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
