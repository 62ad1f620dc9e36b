//! The state word: what it packs (see the module above), and what a request or a
//! release makes of it. Plain functions of the word, shared by every path that changes
//! it.

use crate::mode::{Kind, Mode, MAX_PERMITS};

pub(super) const CONTENDED: u64 = 1 << 63;
pub(super) const EXCLUSIVE: u64 = 1 << 62;
pub(super) const SHAPE_SHIFT: u32 = 48;
pub(super) const SHAPE: u64 = (MAX_PERMITS as u64) << SHAPE_SHIFT;
pub(super) const COUNT: u64 = (1 << SHAPE_SHIFT) - 1;

/// What the state says about a request.
pub(super) enum Admit {
    /// Take it: the new state.
    Grant(u64),
    /// Wait for it.
    Wait,
    /// The lock is of another kind.
    Mismatch,
}

#[inline]
pub(super) fn count(s: u64) -> u64 {
    s & COUNT
}

#[inline]
pub(super) fn is_held(s: u64) -> bool {
    s & EXCLUSIVE != 0 || count(s) != 0
}

/// The kind a held lock has (meaningless for a free one).
pub(super) fn kind(s: u64) -> Kind {
    match (s & SHAPE) >> SHAPE_SHIFT {
        0 => Kind::ReadWrite,
        n => Kind::Counted(n as u32),
    }
}

/// Whether `mode` may join a lock in state `s` (ignoring `CONTENDED`), and the new state.
#[inline]
pub(super) fn admit(s: u64, mode: Mode) -> Admit {
    let s = s & !CONTENDED;
    let shape = s & SHAPE;
    match mode {
        Mode::Exclusive if s == 0 => Admit::Grant(EXCLUSIVE),
        Mode::Exclusive if shape != 0 => Admit::Mismatch,
        Mode::Exclusive => Admit::Wait,
        Mode::Shared if shape != 0 => Admit::Mismatch,
        Mode::Shared if s & EXCLUSIVE != 0 => Admit::Wait,
        Mode::Shared => Admit::Grant(s + 1),
        Mode::Permits(n) => {
            let n = u64::from(n.min(MAX_PERMITS));
            if s == 0 {
                Admit::Grant((n << SHAPE_SHIFT) | 1)
            } else if shape != n << SHAPE_SHIFT {
                Admit::Mismatch
            } else if count(s) < n {
                Admit::Grant(s + 1)
            } else {
                Admit::Wait
            }
        }
    }
}

/// The state after one holder of `mode` leaves.
#[inline]
pub(super) fn leave(s: u64, mode: Mode) -> u64 {
    let contended = s & CONTENDED;
    let rest = match mode {
        Mode::Exclusive => 0,
        _ if count(s) <= 1 => 0,
        _ => (s & !CONTENDED) - 1,
    };
    rest | contended
}
