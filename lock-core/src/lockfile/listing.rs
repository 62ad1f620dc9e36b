//! Who holds the file locks of a directory: read from the lock files' pages.

use std::path::{Path, PathBuf};

use super::hold::holder_of_entry;
use super::page::{self, Entry};
use crate::mode::Mode;
use crate::{Holder, LockError};

/// One process's hold of a file lock, as [`holders`](crate::file::holders) and
/// [`LockDir::holders`](crate::file::LockDir::holders) find it in a lock directory.
///
/// A shared or counted lock held by several processes is listed once per process (and
/// per permit). Holds of processes that died are not listed: the kernel has dropped
/// their OS locks, and the stale entries they left in the file are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileHolder {
    /// The lock's name, as recorded in its file.
    pub name: String,
    /// The mode it is held in.
    pub mode: Mode,
    /// The holding process: pid, host, since when.
    pub holder: Holder,
    /// How many waiting calls (in any process) the file records.
    pub waiting: usize,
    /// The lock file.
    pub path: PathBuf,
}

/// The live holders of every lock-core lock file in `dir`, longest-held first.
/// Files that are not lock-core's (or cannot be read) are skipped; a missing directory
/// holds nothing.
pub(crate) fn holders_in(dir: &Path) -> Result<Vec<FileHolder>, LockError> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LockError::Io {
                name: String::new(),
                path: Some(dir.to_path_buf()),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in read.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let Ok(f) = super::open::open_existing(&path) else {
            continue;
        };
        let Some(snap) = page::snapshot(&f) else {
            continue;
        };
        let Some(name) = snap.name else { continue };
        let waiting = snap.waiters.iter().filter(|e| e.alive()).count();
        for e in snap.holders.iter().filter(|e| e.alive()) {
            if let Some(mode) = page::mode_of(e.kind) {
                out.push(listed(&name, mode, e, waiting, &path));
            }
        }
    }
    out.sort_by(|a, b| {
        a.holder
            .since
            .cmp(&b.holder.since)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

fn listed(name: &str, mode: Mode, e: &Entry, waiting: usize, path: &Path) -> FileHolder {
    FileHolder {
        name: name.to_owned(),
        mode,
        holder: holder_of_entry(e),
        waiting,
        path: path.to_path_buf(),
    }
}
