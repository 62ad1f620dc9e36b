//! What a call holds while its body runs: the hold itself, the call chain's scope frame
//! built from it, and the `lock.held` span.

use std::future::Future;

use crate::chain::{self, Frame, HeldSet, Scoped};
#[cfg(feature = "tracing")]
use crate::mode::Mode;
use crate::site::FnSite;
use crate::{LockGuard, LockSet};

/// The locks a call holds while its body runs.
///
/// Every other shape is out of line ([`Other`]): dropping the common one-lock hold is
/// then a test and a jump, not the drop code of every shape.
pub enum Held {
    /// One lock.
    One(LockGuard),
    /// Several locks, or leases.
    Other(Box<Other>),
}

/// The holds of a call other than one in-process or file lock.
pub enum Other {
    /// Several, released in reverse order.
    Many(LockSet),
    /// A lease from a store (`store = ...`).
    Lease(crate::lease::LeaseGuard),
    /// Several leases (`name = [..], store = ...`).
    Leases(crate::lease::LeaseSet),
}

impl Held {
    pub(super) fn other(o: Other) -> Held {
        Held::Other(Box::new(o))
    }

    /// The guard of a one-lock call (`guard = g`).
    pub fn into_guard(self) -> LockGuard {
        match self {
            Held::One(g) => g,
            Held::Other(_) => {
                unreachable!("the macro binds a single guard only for one in-process/file name")
            }
        }
    }

    /// The guards of a multi-lock call (`guard = g`).
    pub fn into_set(self) -> LockSet {
        match self {
            Held::One(g) => LockSet::new(vec![g]),
            Held::Other(o) => match *o {
                Other::Many(s) => s,
                Other::Lease(_) | Other::Leases(_) => {
                    unreachable!("the macro binds a lock set only without a store")
                }
            },
        }
    }

    /// The lease of a `store = ...` call (`guard = g`).
    pub fn into_lease(self) -> crate::lease::LeaseGuard {
        match self {
            Held::Other(o) => match *o {
                Other::Lease(l) => l,
                _ => unreachable!("the macro binds a lease only with a store"),
            },
            Held::One(_) => unreachable!("the macro binds a lease only with a store"),
        }
    }

    /// The leases of a `name = [..], store = ...` call (`guard = g`).
    pub fn into_leases(self) -> crate::lease::LeaseSet {
        match self {
            Held::Other(o) => match *o {
                Other::Leases(s) => s,
                _ => unreachable!("the macro binds a lease set only with a store and a name list"),
            },
            Held::One(_) => {
                unreachable!("the macro binds a lease set only with a store and a name list")
            }
        }
    }

    #[inline(always)]
    fn frame(&self) -> Frame {
        match self {
            Held::One(g) => Frame::new(HeldSet::one(g.entry(), g.token())),
            Held::Other(o) => o.frame(),
        }
    }
}

impl Other {
    fn frame(&self) -> Frame {
        let mut set = HeldSet::default();
        match self {
            Other::Many(s) => {
                for g in s.guards() {
                    set.push(g.entry(), g.token());
                }
            }
            Other::Lease(l) => l.push_held(&mut set),
            Other::Leases(s) => s.push_held(&mut set),
        }
        Frame::new(set)
    }
}

pub(super) fn one_or_many(mut guards: Vec<LockGuard>) -> Held {
    if guards.len() == 1 {
        if let Some(g) = guards.pop() {
            return Held::One(g);
        }
    }
    Held::other(Other::Many(LockSet::new(guards)))
}

/// The names a call holds, for the `lock.held` span (formatted only when it is enabled).
#[cfg(feature = "tracing")]
struct HeldNames<'a>(&'a Held);

#[cfg(feature = "tracing")]
impl std::fmt::Display for HeldNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let other = match self.0 {
            Held::One(g) => return f.write_str(g.name()),
            Held::Other(o) => &**o,
        };
        match other {
            Other::Many(s) => comma_separated(f, s.names()),
            Other::Lease(l) => f.write_str(l.name()),
            Other::Leases(s) => comma_separated(f, s.names()),
        }
    }
}

#[cfg(feature = "tracing")]
fn comma_separated<'a>(
    f: &mut std::fmt::Formatter<'_>,
    names: impl Iterator<Item = &'a str>,
) -> std::fmt::Result {
    for (i, n) in names.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(n)?;
    }
    Ok(())
}

#[cfg(feature = "tracing")]
#[inline(always)]
fn held_span(held: &Held, site: &'static FnSite) -> Option<Box<tracing::Span>> {
    if !tracing::level_enabled!(tracing::Level::DEBUG) {
        return None;
    }
    held_span_cold(held, site)
}

#[cfg(feature = "tracing")]
#[cold]
fn held_span_cold(held: &Held, site: &'static FnSite) -> Option<Box<tracing::Span>> {
    let mode = match held {
        Held::One(g) => g.mode(),
        Held::Other(o) => match &**o {
            Other::Many(s) => s.guards().first().map_or(Mode::Exclusive, LockGuard::mode),
            Other::Lease(l) => l.mode(),
            Other::Leases(s) => s.guards().first().map_or(Mode::Exclusive, |g| g.mode()),
        },
    };
    let span = crate::trace::held_span(&HeldNames(held), mode, site.func);
    (!span.is_disabled()).then(|| Box::new(span))
}

/// Runs an async body as a call chain holding `held`.
#[inline]
pub fn scope<F: Future>(held: &Held, site: &'static FnSite, fut: F) -> Scoped<F> {
    #[cfg(feature = "tracing")]
    return Scoped::new_in(held.frame(), fut, held_span(held, site));
    #[cfg(not(feature = "tracing"))]
    {
        let _ = site;
        Scoped::new(held.frame(), fut)
    }
}

/// Like [`scope`], for a body that takes the guard by value (`guard = g`): the frame
/// is built first (`scope_with(frame(&held, site), async move { let g = held.into_guard(); .. })`).
#[inline]
pub fn scope_with<F: Future>(frame: SyncFrame, fut: F) -> Scoped<F> {
    #[cfg(feature = "tracing")]
    return Scoped::new_in(frame.frame, fut, frame.span);
    #[cfg(not(feature = "tracing"))]
    Scoped::new(frame.frame, fut)
}

/// The scope record of a sync body; see [`enter`].
pub struct SyncFrame {
    frame: Frame,
    #[cfg(feature = "tracing")]
    span: Option<Box<tracing::Span>>,
}

/// Builds the scope record for a body holding `held`.
#[inline]
pub fn frame(held: &Held, site: &'static FnSite) -> SyncFrame {
    #[cfg(not(feature = "tracing"))]
    let _ = site;
    SyncFrame {
        frame: held.frame(),
        #[cfg(feature = "tracing")]
        span: held_span(held, site),
    }
}

/// Marks the rest of the enclosing block (a sync body, run inline without a closure) as
/// a call chain holding the frame's locks, until the returned value drops.
///
/// Generated code: `let f = frame(&held); let _e = enter(&f); <body>` — the borrow
/// keeps `f` in place while it is published.
#[inline]
pub fn enter(frame: &SyncFrame) -> Entered<'_> {
    Entered {
        #[cfg(feature = "tracing")]
        _span: frame.span.as_deref().map(tracing::Span::enter),
        _restore: chain::enter(&frame.frame),
        _frame: std::marker::PhantomData,
    }
}

/// See [`enter`].
pub struct Entered<'a> {
    #[cfg(feature = "tracing")]
    _span: Option<tracing::span::Entered<'a>>,
    _restore: chain::Restore,
    _frame: std::marker::PhantomData<&'a SyncFrame>,
}
