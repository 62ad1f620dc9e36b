//! Where a hold was taken: the locked function (for `#[locked]`), or the line that
//! called a by-name verb (`#[track_caller]`). Shown in holder listings and error
//! messages, and used by the lock-order checker.

use std::fmt;
use std::panic::Location;

/// A locked function, as the attribute describes it (a `static` per call site).
#[derive(Debug)]
pub struct FnSite {
    /// `module::path::fn`; for a method in an impl the attribute saw, `module::Type::fn`.
    pub func: &'static str,
    /// For a method whose type only the running code knows (the attribute on the method,
    /// not on its impl): the type, set by the first call (see [`FnSite::method_of`]).
    pub ty: std::sync::OnceLock<&'static str>,
    /// The source file of the attribute.
    pub file: &'static str,
    /// The line of the attribute.
    pub line: u32,
    /// The templates of interpolated names, with every hole written `{}` (the lock
    /// classes of the lock-order checker); empty when every name is fixed.
    pub classes: &'static [&'static str],
}

impl FnSite {
    /// Records the type of a method's `Self` (generated code calls this on every call
    /// of a method; one atomic load once set). The first type wins: a generic type's
    /// parameters are not shown anyway.
    #[inline]
    pub fn method_of(&self, type_name: &'static str) {
        if self.ty.get().is_none() {
            let _ = self.ty.set(type_name);
        }
    }
}

/// `Type` out of `type_name`'s `a::b::Type<C>` (also `&Type`, `dyn Trait`).
pub(crate) fn short_type_name(full: &str) -> &str {
    let t = full
        .trim_start_matches('&')
        .trim_start_matches("mut ")
        .trim_start_matches("dyn ");
    let t = t.split('<').next().unwrap_or(t);
    t.rsplit("::").next().unwrap_or(t)
}

/// Where a hold was taken, as far as it is known.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum Site {
    #[default]
    Unknown,
    Fn(&'static FnSite),
    Call(&'static Location<'static>),
}

/// Tag in the low bit of a stored site: both referents are aligned to at least 4.
const CALL_TAG: usize = 1;

impl Site {
    /// The site as one word, for an atomic slot.
    pub(crate) fn to_bits(self) -> usize {
        match self {
            Site::Unknown => 0,
            Site::Fn(f) => f as *const FnSite as usize,
            Site::Call(l) => (l as *const Location<'static> as usize) | CALL_TAG,
        }
    }

    /// The inverse of [`to_bits`](Self::to_bits).
    ///
    /// `bits` must be 0 or a value returned by `to_bits` (slots only ever store those).
    pub(crate) fn from_bits(bits: usize) -> Site {
        if bits == 0 {
            return Site::Unknown;
        }
        if bits & CALL_TAG != 0 {
            let p = (bits & !CALL_TAG) as *const Location<'static>;
            // SAFETY: `bits` came from `to_bits` of a `&'static Location` (the tag bit is
            // free because `Location` is aligned to at least 4), so `p` points at a
            // location that lives for the rest of the program and is never mutated.
            Site::Call(unsafe { &*p })
        } else {
            let p = bits as *const FnSite;
            // SAFETY: as above, for a `&'static FnSite` (aligned to 8: it holds `&str`s).
            Site::Fn(unsafe { &*p })
        }
    }

    pub(crate) fn is_known(self) -> bool {
        !matches!(self, Site::Unknown)
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Site::Unknown => f.write_str("an unknown place"),
            Site::Fn(s) => match (s.ty.get(), s.func.rsplit_once("::")) {
                (Some(t), Some((module, func))) => write!(
                    f,
                    "`{module}::{}::{func}` ({}:{})",
                    short_type_name(t),
                    s.file,
                    s.line
                ),
                _ => write!(f, "`{}` ({}:{})", s.func, s.file, s.line),
            },
            Site::Call(l) => write!(f, "{}:{}", l.file(), l.line()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FN: FnSite = FnSite {
        func: "app::jobs::run",
        ty: std::sync::OnceLock::new(),
        file: "src/jobs.rs",
        line: 12,
        classes: &[],
    };

    static METHOD: FnSite = FnSite {
        func: "app::jobs::run",
        ty: std::sync::OnceLock::new(),
        file: "src/jobs.rs",
        line: 20,
        classes: &[],
    };

    #[test]
    fn a_method_site_names_its_type() {
        METHOD.method_of("app::jobs::Queue<u8>");
        METHOD.method_of("app::jobs::Other");
        assert_eq!(
            Site::Fn(&METHOD).to_string(),
            "`app::jobs::Queue::run` (src/jobs.rs:20)"
        );
    }

    #[test]
    fn sites_round_trip_through_their_bits() {
        assert!(matches!(Site::from_bits(0), Site::Unknown));
        let s = Site::from_bits(Site::Fn(&FN).to_bits());
        assert_eq!(s.to_string(), "`app::jobs::run` (src/jobs.rs:12)");
        let here = Location::caller();
        let c = Site::from_bits(Site::Call(here).to_bits());
        assert_eq!(c.to_string(), format!("{}:{}", here.file(), here.line()));
        assert!(c.is_known());
        assert_eq!(std::mem::align_of::<Location<'static>>() % 2, 0);
    }
}
