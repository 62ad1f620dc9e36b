//! Lock files: where they live (`dir`, `fname`), how they are opened and cached
//! (`open`, `cache`), their shared page and holder record (`page`, `record`), the OS
//! locks (`os`), a hold of one (`hold`) and a guard's pointer to it (`part`), the waits for one (`wait`), who holds what
//! (`listing`), and cycles of waits across processes (`across`). The public verbs are in
//! [`crate::file`]; the acquire step that takes a file's lock after the in-process lock of
//! its name is [`crate::file_step`].

#[cfg(all(unix, not(loom)))]
pub(crate) mod across;
pub(crate) mod cache;
pub(crate) mod dir;
pub(crate) mod fname;
pub(crate) mod hold;
pub(crate) mod listing;
pub(crate) mod open;
pub(crate) mod os;
#[cfg(unix)]
pub(crate) mod page;
pub(crate) mod part;
pub(crate) mod record;
pub(crate) mod wait;

use std::borrow::Cow;
use std::path::Path;

pub(crate) use hold::FileHold;
pub(crate) use part::FilePart;
pub(crate) use record::host_name;

/// The directory to use: the default one, an absolute one, or a relative one resolved
/// against the working directory now.
pub(crate) fn resolve_dir(dir: Option<&Path>) -> Cow<'_, Path> {
    match dir {
        None => Cow::Borrowed(dir::default_dir()),
        Some(d) if d.is_absolute() => Cow::Borrowed(d),
        // A relative directory means "relative to the working directory now"; the
        // descriptor cache must not confuse it with the same spelling elsewhere.
        Some(d) => Cow::Owned(std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf())),
    }
}

// Tests of lock files through the public verbs too: test code may use the whole crate.
#[cfg(test)]
mod tests;
