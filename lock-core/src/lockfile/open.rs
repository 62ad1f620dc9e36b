//! Opening a lock file without letting it become a way into the system.
//!
//! * **No symlinks.** Lock files are opened with `O_NOFOLLOW` (and `O_CLOEXEC`): a
//!   symlink planted at a lock path is refused (`ELOOP`), never followed, so the check and
//!   the use are one system call (no window between them). `fstat` on the opened
//!   descriptor then refuses anything that is not a regular file.
//! * **Only our own files are written.** A file is lock-core's if it is empty (it was just
//!   created, by us or another lock-core process) or carries the page's magic; lock-core
//!   then writes its page into it. Any other file — another tool's lock file with content
//!   of its own, a data file, or whatever `path = ...` names — is locked with the OS lock
//!   only: its bytes and its size never change, and its holder is reported as unknown.
//! * A file we may only read (a shared directory, created by another user without write
//!   permission for us) is locked through a read-only descriptor: flock works on one; the
//!   page is not used.

use std::fs::File;
use std::io;
use std::path::Path;

use super::page::{self, MAGIC, MAGIC_AT, NAME_AT, PAGE_LEN};
use super::record;

/// Who a lock file belongs to, as far as writing into it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Lock-core's: the page may be mapped and written.
    Ours,
    /// Another tool's, or a file named with `path`: OS locks only, never written.
    Foreign,
    /// Lock-core's, but open for reading only: OS locks only.
    ReadOnly,
}

#[cfg(unix)]
fn options(write: bool, create: bool) -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = File::options();
    o.read(true)
        .write(write)
        .create(create && write)
        .truncate(false);
    // Files are created readable and writable by whoever may use the directory (the
    // umask still applies): explicitly named lock directories may be shared.
    o.mode(0o666);
    o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
    o
}

#[cfg(not(unix))]
fn options(write: bool, create: bool) -> std::fs::OpenOptions {
    let mut o = File::options();
    o.read(true)
        .write(write)
        .create(create && write)
        .truncate(false);
    o
}

/// Turns the system's answer to an `O_NOFOLLOW` open into an error that says what is
/// wrong with the path.
fn explain(path: &Path, e: io::Error) -> io::Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link; lock-core never follows a symlink to a lock file \
                 (remove it, or point lock-core at the real file)",
                path.display()
            ),
        );
    }
    let _ = path;
    e
}

/// Refuses what is not a regular file, naming what it is.
fn check_regular(path: &Path, f: &File) -> io::Result<u64> {
    let md = f.metadata()?;
    let ft = md.file_type();
    if ft.is_file() {
        return Ok(md.len());
    }
    let what = if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file (a device, pipe or socket)"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is {what}, not a lock file", path.display()),
    ))
}

/// Opens an existing file for probes and listings: read-only, no symlinks, regular files
/// only.
pub(crate) fn open_existing(path: &Path) -> io::Result<File> {
    let f = options(false, false)
        .open(path)
        .map_err(|e| explain(path, e))?;
    check_regular(path, &f)?;
    Ok(f)
}

/// Whether an open file carries lock-core's magic.
pub(crate) fn has_magic(f: &File) -> bool {
    let mut m = [0u8; 8];
    matches!(record::read_at(f, &mut m, MAGIC_AT), Ok(8)) && m == MAGIC
}

/// Opens (creating it if missing) the lock file at `path`. `name` is the lock's name,
/// recorded in a fresh file of ours; `None` for a file named with `path`, which is never
/// made ours.
pub(crate) fn open_lock_file(path: &Path, name: Option<&str>) -> io::Result<(File, Owner)> {
    let (f, writable) = match options(true, true).open(path) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            // Someone else's file in a shared directory: flock works on a read-only
            // descriptor.
            let f = options(false, false)
                .open(path)
                .map_err(|e| explain(path, e))?;
            (f, false)
        }
        Err(e) => return Err(explain(path, e)),
    };
    let len = check_regular(path, &f)?;
    let Some(name) = name else {
        return Ok((f, Owner::Foreign));
    };
    let owner = if len == 0 || (len >= MAGIC_AT + 8 && has_magic(&f)) {
        if writable {
            init(&f, name, len)?;
            Owner::Ours
        } else {
            Owner::ReadOnly
        }
    } else {
        Owner::Foreign
    };
    Ok((f, owner))
}

/// Makes an empty file (or one of ours that is still being set up) a full lock-core file:
/// the magic first (so that a concurrent opener that sees any length also sees the
/// magic), then the name, then the page's length. Every step writes the same bytes
/// whoever does it, so concurrent openers may all do it.
fn init(f: &File, name: &str, len: u64) -> io::Result<()> {
    if len < PAGE_LEN as u64 {
        record::write_all_at(f, &MAGIC, MAGIC_AT)?;
        record::write_all_at(f, &page::name_bytes(name), NAME_AT)?;
        // Only ever grows: existing content (a holder's record) is kept.
        if f.metadata()?.len() < PAGE_LEN as u64 {
            f.set_len(PAGE_LEN as u64)?;
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("lock-core-open-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    #[test]
    fn fresh_files_become_ours_and_foreign_ones_stay_untouched() {
        let d = dir("own");
        let fresh = d.0.join("fresh.lock");
        let (f, owner) = open_lock_file(&fresh, Some("fresh")).unwrap();
        assert_eq!(owner, Owner::Ours);
        assert_eq!(f.metadata().unwrap().len(), PAGE_LEN as u64);
        assert!(has_magic(&f));
        // Opening again: still ours, content kept.
        let (_, again) = open_lock_file(&fresh, Some("fresh")).unwrap();
        assert_eq!(again, Owner::Ours);

        let foreign = d.0.join("foreign.lock");
        std::fs::write(&foreign, b"12345\n").unwrap();
        let (_, owner) = open_lock_file(&foreign, Some("foreign")).unwrap();
        assert_eq!(owner, Owner::Foreign);
        assert_eq!(std::fs::read(&foreign).unwrap(), b"12345\n");

        // A file named with `path` is never made ours, even when empty.
        let exact = d.0.join("exact.lock");
        let (_, owner) = open_lock_file(&exact, None).unwrap();
        assert_eq!(owner, Owner::Foreign);
        assert_eq!(std::fs::metadata(&exact).unwrap().len(), 0);
    }

    #[test]
    fn symlinks_directories_and_pipes_are_refused() {
        let d = dir("refuse");
        let target = d.0.join("victim.txt");
        std::fs::write(&target, b"precious").unwrap();
        let link = d.0.join("link.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = open_lock_file(&link, Some("x")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");

        let dangling = d.0.join("dangling.lock");
        std::os::unix::fs::symlink(d.0.join("nowhere"), &dangling).unwrap();
        let e = open_lock_file(&dangling, Some("x")).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(
            !d.0.join("nowhere").exists(),
            "nothing created through the link"
        );

        let sub = d.0.join("sub.lock");
        std::fs::create_dir(&sub).unwrap();
        let e = open_lock_file(&sub, Some("x")).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");

        let fifo = d.0.join("fifo.lock");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file system entry.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_lock_file(&fifo, Some("x")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
