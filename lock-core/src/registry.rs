//! The process-wide table of named locks.
//!
//! An entry lives exactly as long as someone refers to it: a holder, a waiter, or a
//! call site's cache. `handles` counts those references; the one that drops it to zero
//! removes the entry, re-checking under the shard lock because a lookup may have taken a
//! new reference in between. So a million distinct names locked once each leave nothing
//! behind, and a name in use is never removed from under its users.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use crate::raw::RawLock;
use crate::sync::lock_std as lock;

const SHARDS: usize = 16;

pub(crate) struct Entry {
    name: Box<str>,
    shard: u8,
    handles: AtomicUsize,
    pub(crate) raw: RawLock,
}

impl Entry {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// Map key that hashes like the `&str` it is looked up with.
struct Key(Arc<Entry>);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.name.hash(h)
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}


struct Registry {
    hasher: RandomState,
    shards: [Mutex<std::collections::HashSet<Key>>; SHARDS],
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    hasher: RandomState::new(),
    shards: std::array::from_fn(|_| Mutex::new(Default::default())),
});

impl Registry {
    fn shard_of(&self, name: &str) -> usize {
        (self.hasher.hash_one(name) as usize) % SHARDS
    }
}

/// A counted reference to an entry; the last one to go removes the entry.
pub(crate) struct Handle(Arc<Entry>);

impl Deref for Handle {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.0
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        self.0.handles.fetch_add(1, Ordering::Relaxed);
        Handle(self.0.clone())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.0.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let reg = &*REGISTRY;
        let mut shard = lock(&reg.shards[self.0.shard as usize]);
        // A lookup may have revived the entry between our decrement and this lock.
        if self.0.handles.load(Ordering::Acquire) == 0 {
            shard.remove(&*self.0.name);
            if shard.is_empty() {
                shard.shrink_to(0);
            } else if shard.capacity() > 64 && shard.len() * 8 < shard.capacity() {
                let len = shard.len();
                shard.shrink_to(len * 2);
            }
        }
    }
}

/// Returns the entry for `name`, creating it if needed. `name` must be valid.
pub(crate) fn get(name: &str) -> Handle {
    let reg = &*REGISTRY;
    let idx = reg.shard_of(name);
    let mut shard = lock(&reg.shards[idx]);
    if let Some(Key(e)) = shard.get(name) {
        e.handles.fetch_add(1, Ordering::Relaxed);
        return Handle(e.clone());
    }
    let e = Arc::new(Entry {
        name: name.into(),
        shard: idx as u8,
        handles: AtomicUsize::new(1),
        raw: RawLock::new(),
    });
    shard.insert(Key(e.clone()));
    Handle(e)
}

/// Returns the entry for `name` only if it exists (never creates one).
pub(crate) fn peek<R>(name: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
    let reg = &*REGISTRY;
    let shard = lock(&reg.shards[reg.shard_of(name)]);
    shard.get(name).map(|Key(e)| f(e))
}

/// How many names the registry tracks right now.
pub(crate) fn len() -> usize {
    REGISTRY.shards.iter().map(|s| lock(s).len()).sum()
}

/// Either a counted handle, or an entry pinned for the life of the process by a call
/// site's cache (no counting needed on the hot path).
pub(crate) enum EntryRef {
    Pinned(&'static Entry),
    Counted(Handle),
}

impl Deref for EntryRef {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        match self {
            EntryRef::Pinned(e) => e,
            EntryRef::Counted(h) => h,
        }
    }
}
