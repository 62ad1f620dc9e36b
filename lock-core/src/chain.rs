//! Re-entry detection: which locks does the current call chain already hold?
//!
//! A *call chain* is a future and everything it awaits (async) or a thread (blocking).
//! Locked bodies run inside a [`Scoped`] future; while it is being polled, a
//! thread-local points at its [`Frame`], whose parent is whatever frame was current when
//! the poll began. Walking that list from inside a poll visits exactly the frames of the
//! futures that are (transitively) awaiting us — so a nested acquisition of a lock
//! held by an ancestor is re-entry, while two futures joined side by side in one task,
//! or two tasks on one thread, are not, and simply queue.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll};

/// A lock as the chain sees it: an address to compare, and whether a grant is still live
/// (a guard dropped early ends its grant while the scope goes on). Implemented by the
/// registry's entries; this module knows nothing else of them.
pub(crate) trait Grants {
    /// True while grant `id` of this lock is held.
    fn is_live(&self, id: u64) -> bool;
}

type Addr = *const ();

fn addr<T>(lock: &T) -> Addr {
    ptr::from_ref(lock).cast()
}

thread_local! {
    static CURRENT: Cell<*const Frame> = const { Cell::new(ptr::null()) };
}

/// The locks one scope holds: entry addresses plus the grant ids they were held with.
/// Addresses are only compared, never dereferenced.
/// The first lock is stored inline, so the common one-lock scope allocates nothing, and
/// the rest behind one thin pointer: a frame is built and moved on every locked call, so
/// it is kept to four words.
pub(crate) struct HeldSet {
    first: (Addr, u64),
    // Boxed on purpose: a thin pointer instead of a three-word `Vec` in every frame.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<(Addr, u64)>>>,
}

impl Default for HeldSet {
    fn default() -> Self {
        HeldSet {
            first: (ptr::null(), 0),
            rest: None,
        }
    }
}

impl HeldSet {
    /// A set of exactly one lock (the common case).
    #[inline(always)]
    pub(crate) fn one<T: Grants>(entry: &T, token: u64) -> Self {
        HeldSet {
            first: (addr(entry), token),
            rest: None,
        }
    }

    #[inline]
    pub(crate) fn push<T: Grants>(&mut self, entry: &T, token: u64) {
        if self.first.0.is_null() {
            self.first = (addr(entry), token);
        } else {
            self.rest
                .get_or_insert_with(Default::default)
                .push((addr(entry), token));
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(Addr, u64)> {
        std::iter::once(&self.first)
            .filter(|(p, _)| !p.is_null())
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// True if this set still holds a live grant of `entry`.
    fn holds<T: Grants>(&self, entry: &T) -> bool {
        let at = addr(entry);
        self.iter()
            .any(|&(p, id)| ptr::eq(p, at) && entry.is_live(id))
    }
}

pub(crate) struct Frame {
    held: HeldSet,
    parent: Cell<*const Frame>,
}

impl Frame {
    #[inline(always)]
    pub(crate) fn new(held: HeldSet) -> Self {
        Frame {
            held,
            parent: Cell::new(ptr::null()),
        }
    }

    /// True if this frame still holds a grant of `entry` (one not released early, e.g. by
    /// dropping a bound guard).
    #[inline]
    fn holds<T: Grants>(&self, entry: &T) -> bool {
        self.held.holds(entry)
    }
}

/// True if the current call chain (the scopes being polled on this thread right now)
/// holds `entry`.
#[inline]
pub(crate) fn held_by_chain<T: Grants>(entry: &T) -> bool {
    CURRENT.with(|c| {
        let mut p = c.get();
        while !p.is_null() {
            // SAFETY: `CURRENT` only ever points at frames of scopes that are being
            // polled (or run, for blocking bodies) further up this thread's stack: a
            // scope installs its frame for the duration of its inner poll and restores
            // the previous pointer before returning (also on unwind, via `Restore`).
            // Such a frame is alive, and pinned, for as long as it is reachable here.
            let f = unsafe { &*p };
            if f.holds(entry) {
                return true;
            }
            p = f.parent.get();
        }
        false
    })
}

/// The grants the current call chain holds through its scopes, innermost first, as
/// `(entry address, grant id)` pairs (addresses only compared, never dereferenced). For
/// the deadlock check and the lock-order checker, on slow paths only.
pub(crate) fn held_grants(out: &mut Vec<(usize, u64)>) {
    CURRENT.with(|c| {
        let mut p = c.get();
        while !p.is_null() {
            // SAFETY: as in `held_by_chain`: frames reachable from `CURRENT` are alive and
            // pinned while they are reachable.
            let f = unsafe { &*p };
            out.extend(f.held.iter().map(|&(e, id)| (e as usize, id)));
            p = f.parent.get();
        }
    });
}

/// True if any scope is active on this thread (i.e. we run inside a locked body).
#[inline]
pub(crate) fn in_scope() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}

pub(crate) struct Restore(*const Frame);

impl Drop for Restore {
    #[inline]
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Makes `frame` the innermost scope of this thread until the returned value drops.
/// The borrow keeps `frame` in place for that long.
#[inline]
pub(crate) fn enter(frame: &Frame) -> Restore {
    let prev = CURRENT.with(|c| c.replace(frame as *const Frame));
    frame.parent.set(prev);
    Restore(prev)
}

/// A future that runs its inner future as a scope holding some locks.
///
/// Produced by the `#[locked]` attribute and [`crate::with_lock`]; it is `Send` when the
/// inner future is.
pub struct Scoped<F> {
    frame: Frame,
    fut: F,
    /// The `lock.held` span, entered on every poll (with the `tracing` feature; boxed
    /// and only when a subscriber wants it, so that the future stays small otherwise).
    #[cfg(feature = "tracing")]
    span: Option<Box<tracing::Span>>,
    _pinned: PhantomPinned,
}

impl<F> Scoped<F> {
    #[inline]
    pub(crate) fn new(frame: Frame, fut: F) -> Self {
        Scoped {
            frame,
            fut,
            #[cfg(feature = "tracing")]
            span: None,
            _pinned: PhantomPinned,
        }
    }

    /// Runs every poll inside `span` (built in place: the future is not moved again).
    #[cfg(feature = "tracing")]
    #[inline(always)]
    pub(crate) fn new_in(frame: Frame, fut: F, span: Option<Box<tracing::Span>>) -> Self {
        Scoped {
            frame,
            fut,
            span,
            _pinned: PhantomPinned,
        }
    }
}

// SAFETY: the raw pointers inside `Frame` are either compared by address only (held
// entries) or set and read on the polling thread during a single poll (parent). Nothing
// about them is tied to the thread that created the future, so moving it to another
// thread between polls is sound whenever the inner future may move.
unsafe impl<F: Send> Send for Scoped<F> {}
// SAFETY: a shared `&Scoped` gives access to nothing (no `&self` methods touch the frame).
unsafe impl<F: Sync> Sync for Scoped<F> {}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: we never move out of `this`; `fut` is re-pinned right below and the
        // frame's address is only published for the duration of this call.
        let this = unsafe { self.get_unchecked_mut() };
        #[cfg(feature = "tracing")]
        let _span = this.span.as_deref().map(tracing::Span::enter);
        let _restore = enter(&this.frame);
        // SAFETY: `fut` is structurally pinned: `Scoped` is `!Unpin` (PhantomPinned) and
        // never hands out `&mut F`.
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        fut.poll(cx)
    }
}
