//! What one acquisition holds (a [`Grant`], with its process-unique token) or why it
//! got nothing ([`Refused`]).

use super::holders;
use crate::mode::{Kind, Mode};
use crate::owner::Facts;

/// Grant tokens are unique across all locks of the process, so a token seen once can
/// never be mistaken for a later grant of the same (or a re-allocated) lock. Threads
/// take them in blocks so the hot path does not share a cache line.
static NEXT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
#[cfg(not(loom))]
const TOKEN_BLOCK: u64 = 1024;

#[cfg(not(loom))]
#[inline]
pub(super) fn next_token() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static BLOCK: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    let from_block = BLOCK.try_with(|b| {
        let (next, end) = b.get();
        if next < end {
            b.set((next + 1, end));
            next
        } else {
            let start = NEXT_TOKEN.fetch_add(TOKEN_BLOCK, std::sync::atomic::Ordering::Relaxed);
            b.set((start + 1, start + TOKEN_BLOCK));
            start
        }
    });
    // During thread teardown the block is gone; take a single token instead.
    from_block.unwrap_or_else(|_| NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

#[cfg(loom)]
pub(super) fn next_token() -> u64 {
    NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The grant time a grant with `facts` records: the clock only for hand-taken grants
/// (their guards report it) or while `released` events, which say how long the lock
/// was held, may be taken.
#[inline]
pub(super) fn grant_time(facts: &Facts) -> u64 {
    holders::grant_time(facts.key != 0 || released_events_wanted())
}

/// Whether the trace module's `released` events (TRACE level) may be taken now: one load
/// of the global level filter.
#[inline]
fn released_events_wanted() -> bool {
    #[cfg(feature = "tracing")]
    return tracing::level_enabled!(tracing::Level::TRACE);
    #[cfg(not(feature = "tracing"))]
    false
}

/// What one successful acquisition holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grant {
    /// Unique per grant; also says where its holder record is.
    pub(crate) id: u64,
    /// The coarse clock at the grant (see the `clock` module) for hand-taken grants; 0
    /// for scoped ones, which read no clock (see `holders`).
    pub(crate) since: u64,
    /// The mode it was granted in.
    pub(crate) mode: Mode,
}

/// Why an attempt did not get the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Held (or queued for) in a way this request has to wait for.
    Held,
    /// The lock is of another kind right now.
    Mismatch(Kind),
}
