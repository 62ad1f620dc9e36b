//! Where a lock lives: in this process only, or also in a lock file.

use std::path::Path;

/// Where the lock lives.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Place<'a> {
    /// In this process only.
    Local,
    /// Also a lock file in a lock directory (`None`: the default directory).
    Dir(Option<&'a Path>),
    /// Also exactly this file (locked with the OS lock only, never written).
    Path(&'a Path),
}
