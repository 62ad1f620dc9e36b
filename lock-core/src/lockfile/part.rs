//! A guard's file part kept out of line ([`FilePart`]), so that every guard (most of them
//! in-process only) stays small: the guard moves through the acquire path and into the
//! caller's future by value, and each move copies all of it.
//!
//! The box is not allocated per acquisition: a thread keeps one spare, emptied by the
//! last file guard it dropped, and the next file acquisition on that thread refills it.
//! A guard dropped on another thread leaves its box there as that thread's spare.

use std::cell::Cell;

use super::hold::FileHold;

thread_local! {
    /// An emptied box, ready for the next file part taken on this thread.
    static SPARE: Cell<Option<Box<Option<FileHold>>>> = const { Cell::new(None) };
}

/// A [`FileHold`] behind a pointer, or none (one null pointer: an in-process guard's
/// file part costs one word and one test when dropped). Dropping it gives the file lock
/// back, as dropping the hold does.
pub(crate) struct FilePart(Option<Box<Option<FileHold>>>);

impl FilePart {
    /// No file part (an in-process lock).
    pub(crate) const NONE: FilePart = FilePart(None);

    pub(crate) fn new(hold: FileHold) -> FilePart {
        // During thread teardown there is no spare: allocate.
        let mut boxed = SPARE
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_else(|| Box::new(None));
        *boxed = Some(hold);
        FilePart(Some(boxed))
    }

    #[inline]
    pub(crate) fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// The hold, if any.
    #[inline]
    pub(crate) fn get(&self) -> Option<&FileHold> {
        self.0.as_deref()?.as_ref()
    }

    /// The hold itself, for releasing it by hand or handing it on; none is left here.
    pub(crate) fn take(&mut self) -> Option<FileHold> {
        let mut boxed = self.0.take()?;
        let hold = boxed.take();
        keep_spare(boxed);
        hold
    }
}

impl Drop for FilePart {
    #[inline]
    fn drop(&mut self) {
        if let Some(boxed) = self.0.take() {
            give_back(boxed);
        }
    }
}

/// The lock first, then the box is kept as the thread's spare.
#[inline(never)]
fn give_back(mut boxed: Box<Option<FileHold>>) {
    drop(boxed.take());
    keep_spare(boxed);
}

/// Keeps an emptied box for the next file part (or frees it, during thread teardown).
fn keep_spare(boxed: Box<Option<FileHold>>) {
    let _ = SPARE.try_with(move |spare| spare.set(Some(boxed)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_with_a_file_part_is_small() {
        // The in-process hold plus one pointer.
        assert!(std::mem::size_of::<crate::guard::LockGuard>() <= 64);
        assert_eq!(
            std::mem::size_of::<FilePart>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn the_box_is_reused_and_the_lock_given_back() {
        let path = std::env::temp_dir().join(format!("lock-core-part-{}", std::process::id()));
        let d = crate::file::LockDir::new(&path);
        let first = d.try_acquire("part-reuse").unwrap();
        drop(first);
        let spare = SPARE.with(|s| {
            let b = s.take();
            let at = b.as_deref().map(|b| b as *const Option<FileHold>);
            s.set(b);
            at
        });
        assert!(
            spare.is_some(),
            "the dropped guard left its box as the spare"
        );
        let again = d.try_acquire("part-reuse").unwrap();
        let now = again.file.0.as_deref().map(|b| b as *const _);
        assert_eq!(now, spare, "the next file guard reused the spare box");
        assert!(SPARE.with(|s| {
            let b = s.take();
            let empty = b.is_none();
            s.set(b);
            empty
        }));
        drop(again);
        // Given back: another process-level attempt gets it at once.
        assert!(d.try_acquire("part-reuse").is_ok());
        let _ = std::fs::remove_dir_all(&path);
    }
}
