//! Lock directories: the per-user default one (verified before use), and explicit ones.
//!
//! The default directory must not be a way for another local user to interfere with
//! this user's locks (or to make lock-core write where it should not): it is
//! `$XDG_RUNTIME_DIR/lock-core` when that is set (a per-user directory the session
//! manager creates `0700`), else `<temp>/lock-core-<uid>`. It is created `0700` and, once
//! per process, checked with `lstat`: a real directory (not a symlink), owned by the
//! current user, not writable by group or others. If it is not, every use fails with an
//! `Io` error that says what is wrong and how to choose a directory explicitly.
//!
//! Directories named explicitly (`$LOCK_CORE_DIR`, `file = "dir"`, `LockDir::new`) may be
//! shared between users on purpose and are only created if missing. In every directory
//! symlinked lock files are refused and foreign files left untouched (see `open`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The default lock directory and whether it is the verified per-user one.
struct Default {
    path: PathBuf,
    /// `true` for the per-user directory lock-core chose; `false` for `$LOCK_CORE_DIR`.
    private: bool,
}

fn default() -> &'static Default {
    static DIR: OnceLock<Default> = OnceLock::new();
    DIR.get_or_init(|| {
        let (dir, private) = match std::env::var_os("LOCK_CORE_DIR") {
            Some(d) if !d.is_empty() => (PathBuf::from(d), false),
            _ => (per_user_dir(), true),
        };
        Default {
            path: std::path::absolute(&dir).unwrap_or(dir),
            private,
        }
    })
}

fn per_user_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() && Path::new(&d).is_absolute() => {
            PathBuf::from(d).join("lock-core")
        }
        _ => std::env::temp_dir().join(format!("lock-core-{}", uid())),
    }
}

#[cfg(unix)]
fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn uid() -> u32 {
    0
}

/// The default lock directory: `$LOCK_CORE_DIR` if set (and not empty), else
/// `$XDG_RUNTIME_DIR/lock-core`, else `lock-core-<uid>` inside [`std::env::temp_dir`].
/// Read once, at first use; a relative `$LOCK_CORE_DIR` is taken relative to the working
/// directory of that moment.
///
/// The directory is created when a lock first needs it. Unless it was named with
/// `$LOCK_CORE_DIR`, it is created `0700` and checked before use: a real directory
/// owned by the current user and writable by nobody else, so that no other local user
/// can plant or replace lock files in it.
///
/// ```
/// let dir = lock_core::file::default_dir();
/// assert!(dir.is_absolute());
/// ```
pub fn default_dir() -> &'static Path {
    &default().path
}

/// Makes `dir` ready for lock files: the default directory is created and verified (once
/// per process, the verdict is kept); other directories are created if missing.
pub(crate) fn prepare(dir: &Path) -> Result<(), (PathBuf, io::Error)> {
    let d = default();
    if d.private && dir == d.path {
        static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
        return match CHECKED.get_or_init(|| check_private(&d.path)) {
            Ok(()) => Ok(()),
            Err(msg) => Err((
                d.path.clone(),
                io::Error::new(io::ErrorKind::PermissionDenied, msg.clone()),
            )),
        };
    }
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), explain_dir(dir, e)))
}

/// `create_dir_all` says "File exists" when the directory is a file: say what is wrong.
fn explain_dir(dir: &Path, e: io::Error) -> io::Error {
    match std::fs::metadata(dir) {
        Ok(md) if !md.is_dir() => io::Error::new(
            io::ErrorKind::NotADirectory,
            "the lock directory is not a directory (a file of that name exists)",
        ),
        _ => e,
    }
}

/// Creates `dir` `0700` if missing, then checks it: see the module docs. The message
/// says what is wrong and how to choose another directory.
pub(crate) fn check_private(dir: &Path) -> Result<(), String> {
    let advice = "set $LOCK_CORE_DIR, or give a directory explicitly (`file = \"dir\"`, \
                  `LockDir::new(dir)`, `--dir`)";
    if let Some(parent) = dir.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            return Err(format!("cannot create {}: {e}; {advice}", parent.display()));
        }
    }
    if let Err(e) = create_private(dir) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(format!(
                "cannot create the lock directory {}: {e}; {advice}",
                dir.display()
            ));
        }
    }
    let md = std::fs::symlink_metadata(dir).map_err(|e| {
        format!(
            "cannot inspect the lock directory {}: {e}; {advice}",
            dir.display()
        )
    })?;
    let unsafe_because = problem(&md);
    match unsafe_because {
        None => Ok(()),
        Some(why) => Err(format!(
            "the default lock directory {} is unsafe to use: {why}; another local user \
             could interfere with your locks through it. Remove it (lock-core recreates \
             it 0700), or {advice}",
            dir.display()
        )),
    }
}

#[cfg(unix)]
fn create_private(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private(dir: &Path) -> io::Result<()> {
    std::fs::create_dir(dir)
}

/// What makes a directory unsafe as the per-user default, if anything.
#[cfg(unix)]
fn problem(md: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if md.file_type().is_symlink() {
        return Some("it is a symbolic link".to_owned());
    }
    if !md.is_dir() {
        return Some("it is not a directory".to_owned());
    }
    let me = uid();
    if md.uid() != me {
        return Some(format!(
            "it is owned by uid {}, not by you (uid {me})",
            md.uid()
        ));
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "it is writable by {} (mode {mode:04o})",
            if mode & 0o002 != 0 {
                "others"
            } else {
                "its group"
            }
        ));
    }
    None
}

#[cfg(not(unix))]
fn problem(md: &std::fs::Metadata) -> Option<String> {
    (!md.is_dir()).then(|| "it is not a directory".to_owned())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("lock-core-dir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }

    #[test]
    fn a_fresh_private_directory_is_created_0700_and_accepted() {
        let t = tmp("fresh");
        let d = t.0.join("lock-core-x");
        check_private(&d).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        check_private(&d).unwrap();
    }

    #[test]
    fn hijacked_directories_are_refused_with_advice() {
        let t = tmp("hijack");
        let elsewhere = t.0.join("attacker");
        std::fs::create_dir(&elsewhere).unwrap();
        let link = t.0.join("lock-core-link");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let e = check_private(&link).unwrap_err();
        assert!(
            e.contains("symbolic link") && e.contains("LOCK_CORE_DIR"),
            "{e}"
        );

        let open = t.0.join("lock-core-open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_private(&open).unwrap_err();
        assert!(
            e.contains("writable by others") && e.contains("0777"),
            "{e}"
        );

        let file = t.0.join("lock-core-file");
        std::fs::write(&file, b"").unwrap();
        let e = check_private(&file).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
    }
}
