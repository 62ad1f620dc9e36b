//! Where a hold was taken: the locked function (for `#[locked]`), or the line that
//! called a by-name verb (`#[track_caller]`). Shown in holder listings and error
//! messages, and used by the lock-order checker.

use std::fmt;
use std::panic::Location;

/// A locked function, as the attribute describes it (a `static` per call site).
#[derive(Debug)]
pub struct FnSite {
    /// `module::path::fn` (without the type for methods: it is only known at run time).
    pub func: &'static str,
    /// The source file of the attribute.
    pub file: &'static str,
    /// The line of the attribute.
    pub line: u32,
    /// The templates of interpolated names, with every hole written `{}` (the lock
    /// classes of the lock-order checker); empty when every name is fixed.
    pub classes: &'static [&'static str],
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
            Site::Fn(s) => write!(f, "`{}` ({}:{})", s.func, s.file, s.line),
            Site::Call(l) => write!(f, "{}:{}", l.file(), l.line()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FN: FnSite = FnSite {
        func: "app::jobs::run",
        file: "src/jobs.rs",
        line: 12,
        classes: &[],
    };

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
