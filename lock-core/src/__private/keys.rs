//! What a call asks for: its names (a call site's cached lock, a method's default
//! name, computed names), its options and its mode.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use super::IntoPermits;
use crate::mode::Mode;
use crate::owner::Facts;
use crate::place::Place;
use crate::registry::{self, EntryRef, Handle};
use crate::site::{short_type_name, FnSite, Site as HoldSite};
use crate::LockError;

/// A call site's cached lock for a fixed name: the registry is consulted once per site,
/// and the entry stays pinned for the life of the process (bounded by the code size).
pub struct Site {
    name: &'static str,
    entry: OnceLock<Handle>,
}

impl Site {
    /// A site for a name the macro has already validated.
    pub const fn new(name: &'static str) -> Self {
        Site {
            name,
            entry: OnceLock::new(),
        }
    }

    #[inline]
    pub(super) fn entry(&'static self) -> Result<EntryRef, LockError> {
        self.pinned().map(EntryRef::Pinned)
    }

    /// The site's entry, pinned for the life of the process (so freely copied).
    #[inline]
    pub(super) fn pinned(&'static self) -> Result<&'static registry::Entry, LockError> {
        if let Some(h) = self.entry.get() {
            return Ok(h);
        }
        crate::validate_name(self.name)?;
        Ok(self.entry.get_or_init(|| registry::get(self.name)))
    }
}

/// The default lock of a method: `module::Type::method`, where `Type` is only known at
/// run time (`type_name::<Self>()`, generics left out). The first `Self` seen is pinned
/// like a [`Site`]; other instantiations of a generic impl look their name up per call.
pub struct MethodSite {
    module: &'static str,
    func: &'static str,
    first: OnceLock<(&'static str, Handle)>,
}

impl MethodSite {
    /// A site for `module::?::func`.
    pub const fn new(module: &'static str, func: &'static str) -> Self {
        MethodSite {
            module,
            func,
            first: OnceLock::new(),
        }
    }

    fn name_for(&self, type_name: &str) -> String {
        format!(
            "{}::{}::{}",
            self.module,
            short_type_name(type_name),
            self.func
        )
    }

    fn entry(&'static self, type_name: &'static str) -> Result<EntryRef, LockError> {
        if let Some((t, h)) = self.first.get() {
            if *t == type_name {
                let e: &'static registry::Entry = h;
                return Ok(EntryRef::Pinned(e));
            }
        }
        let name = self.name_for(type_name);
        crate::validate_name(&name)?;
        if self.first.get().is_none() {
            let (_, h) = self.first.get_or_init(|| (type_name, registry::get(&name)));
            if h.name() == name {
                let e: &'static registry::Entry = h;
                return Ok(EntryRef::Pinned(e));
            }
        }
        Ok(EntryRef::Counted(registry::get(&name)))
    }
}

/// Where the cross-process part of the lock lives, if any.
#[derive(Clone, Copy, Debug)]
pub enum FileMode<'a> {
    /// In-process only.
    Off,
    /// `file`: the default lock directory.
    DefaultDir,
    /// `file = dir`.
    Dir(&'a Path),
    /// `path = file`.
    Path(&'a Path),
}

impl<'a> FileMode<'a> {
    /// `file = expr` (anything that is a path).
    pub fn dir<P: AsRef<Path> + ?Sized>(p: &'a P) -> Self {
        FileMode::Dir(p.as_ref())
    }

    /// `path = expr`.
    pub fn path<P: AsRef<Path> + ?Sized>(p: &'a P) -> Self {
        FileMode::Path(p.as_ref())
    }

    pub(super) fn place(self) -> Option<Place<'a>> {
        match self {
            FileMode::Off => None,
            FileMode::DefaultDir => Some(Place::Dir(None)),
            FileMode::Dir(d) => Some(Place::Dir(Some(d))),
            FileMode::Path(p) => Some(Place::Path(p)),
        }
    }
}

/// The attribute's options, evaluated once per call.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// `timeout_ms`, if given (`0` = try once).
    pub timeout_ms: Option<u64>,
    /// `file` / `file = dir` / `path = file`.
    pub file: FileMode<'a>,
    /// `shared` / `permits = n` (exclusive otherwise).
    pub mode: Mode,
    /// The locked function.
    pub site: &'static FnSite,
    /// `reentrant`.
    pub reentrant: bool,
    /// `readers_first`.
    pub readers_first: bool,
}

impl Options<'_> {
    pub(super) fn opt_in(&self) -> crate::optin::OptIn {
        crate::optin::OptIn {
            reentrant: self.reentrant,
            readers_first: self.readers_first,
        }
    }

    pub(super) fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }

    #[inline]
    pub(super) fn facts_async(&self) -> Facts {
        Facts::scoped_async(HoldSite::Fn(self.site))
    }
}

/// The mode of `shared`.
pub const SHARED: Mode = Mode::Shared;
/// The mode without `shared` or `permits`.
pub const EXCLUSIVE: Mode = Mode::Exclusive;

/// The mode of `permits = n`.
pub fn permits(n: impl IntoPermits) -> Mode {
    Mode::Permits(n.into_permits())
}

/// Which locks one call takes.
pub enum Keys {
    /// One fixed name.
    Site(&'static Site),
    /// Several fixed names, already sorted and de-duplicated by the macro.
    Sites(&'static [Site]),
    /// A method's default name (`module::Type::method`).
    Method(&'static MethodSite, &'static str),
    /// Names computed per call (interpolated); sorted and de-duplicated here.
    Names(Vec<String>),
}

/// The entries of `keys`, in the order they are taken.
pub(super) fn entries(keys: Keys) -> Result<Vec<EntryRef>, LockError> {
    match keys {
        Keys::Site(s) => Ok(vec![s.entry()?]),
        Keys::Sites(sites) => sites.iter().map(Site::entry).collect(),
        Keys::Method(m, t) => Ok(vec![m.entry(t)?]),
        Keys::Names(mut names) => {
            names.sort_unstable();
            names.dedup();
            names
                .iter()
                .map(|n| {
                    crate::validate_name(n)?;
                    Ok(EntryRef::Counted(registry::get(n)))
                })
                .collect()
        }
    }
}
