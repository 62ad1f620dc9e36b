//! The process-wide table of named locks.
//!
//! `handles` counts who refers to an entry (holders, waiters, a call site's cache).
//! Dropping the last handle is a single atomic decrement: the entry stays in the table,
//! idle, so a name that is locked again soon costs no allocation. Idle entries are swept
//! out of a shard whenever it has doubled since its last sweep, so memory stays bounded
//! by (a constant times) the names actually in use: a million distinct names locked once
//! each leave at most a few hundred idle entries behind, not a million; and a burst of
//! names released together is swept once the shard's idle count matches its live count.
//! A few swept entries per shard are kept as spares and reused for new names, so a
//! stream of distinct names allocates (almost) nothing. Handles are only
//! ever taken under the shard lock, so a sweep that sees `handles == 0` there cannot race
//! with a revival.
//!
//! Each name is hashed once per lookup; the hash picks the shard and is kept in the entry.

use std::hash::BuildHasher;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use hashbrown::HashTable;

use crate::raw::RawLock;
use crate::sync::lock_std as lock;

const SHARDS: usize = 16;
/// A shard never sweeps below this size: a few idle entries are cheaper kept than freed.
const MIN_SWEEP: usize = 16;
/// Swept entries a shard keeps for re-use: a stream of fresh names then allocates nothing.
const SPARES: usize = 16;

pub(crate) struct Entry {
    /// A `String` rather than a `Box<str>` so that a recycled entry can reuse the buffer.
    name: String,
    hash: u64,
    handles: AtomicUsize,
    pub(crate) raw: RawLock,
    /// Re-entrant holds nested in this lock's exclusive hold (see `reentry`): zero
    /// unless someone asked with `reentrant`.
    pub(crate) nested: std::sync::atomic::AtomicU64,
}

impl crate::chain::Grants for Entry {
    #[inline]
    fn is_live(&self, id: u64) -> bool {
        self.raw.is_live(id)
    }
}

impl Entry {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn in_use(&self) -> bool {
        self.handles.load(Ordering::Acquire) != 0
    }

    /// In use by a name (not a lock file's own in-process lock, which an open lock file
    /// keeps while it is cached).
    fn named_in_use(&self) -> bool {
        self.in_use() && !crate::name::is_file_key(&self.name)
    }
}

struct Shard {
    table: HashTable<Arc<Entry>>,
    /// Sweep idle entries when the table reaches this size.
    sweep_at: usize,
    /// Entries swept out of the table, kept (up to [`SPARES`]) to be reused for new names.
    /// Nothing can take a handle to them any more: handles only come from the table.
    spares: Vec<Arc<Entry>>,
}

impl Shard {
    fn sweep(&mut self, idle: &IdleCount) {
        let Shard { table, spares, .. } = self;
        for e in table.extract_if(|e| !e.in_use()) {
            if spares.len() < SPARES {
                spares.push(e);
            }
        }
        let live = self.table.len();
        if self.table.capacity() > 2 * live.max(MIN_SWEEP) {
            self.table.shrink_to(live, |e| e.hash);
        }
        self.sweep_at = (2 * live).max(MIN_SWEEP);
        idle.dropped.store(0, Ordering::Relaxed);
        idle.limit.store(live.max(MIN_SWEEP), Ordering::Relaxed);
    }
}

/// Kept outside the shard mutex so that a release never has to take it.
struct IdleCount {
    /// Handles dropped to zero since the last sweep (an over-estimate of idle entries).
    dropped: AtomicUsize,
    /// Sweep when `dropped` reaches this.
    limit: AtomicUsize,
}

struct Registry {
    hasher: foldhash::fast::RandomState,
    shards: [Mutex<Shard>; SHARDS],
    idle: [IdleCount; SHARDS],
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(new_registry);

fn new_registry() -> Registry {
    Registry {
        hasher: foldhash::fast::RandomState::default(),
        shards: std::array::from_fn(|_| {
            Mutex::new(Shard {
                table: HashTable::new(),
                sweep_at: MIN_SWEEP,
                spares: Vec::new(),
            })
        }),
        idle: std::array::from_fn(|_| IdleCount {
            dropped: AtomicUsize::new(0),
            limit: AtomicUsize::new(MIN_SWEEP),
        }),
    }
}

/// The table indexes buckets by the low bits and tags them with the top 7; the shard
/// takes bits from the middle so neither is skewed.
fn shard_index(hash: u64) -> usize {
    ((hash >> 40) as usize) % SHARDS
}

/// A counted reference to an entry. Only [`get`] creates one (under the shard lock).
pub(crate) struct Handle(Arc<Entry>);

impl Deref for Handle {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.0
    }
}

impl Clone for Handle {
    /// Another counted reference to a live entry. Safe outside the shard lock: `self`
    /// keeps the count above zero, so no sweep can take the entry meanwhile.
    fn clone(&self) -> Self {
        self.0.handles.fetch_add(1, Ordering::Relaxed);
        Handle(self.0.clone())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.0.handles.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Idle now (unless revived meanwhile); sweep once enough have gone idle.
        let reg = &*REGISTRY;
        let i = shard_index(self.0.hash);
        let idle = &reg.idle[i];
        if idle.dropped.fetch_add(1, Ordering::Relaxed) + 1 >= idle.limit.load(Ordering::Relaxed) {
            lock(&reg.shards[i]).sweep(idle);
        }
    }
}

/// The counted registry entry of `name`, once the name is checked.
pub(crate) fn entry_for(name: &str) -> Result<EntryRef, crate::LockError> {
    crate::name::validate_name(name)?;
    Ok(EntryRef::Counted(get(name)))
}

/// Returns the entry for `name`, creating it if needed. `name` must be valid.
pub(crate) fn get(name: &str) -> Handle {
    let reg = &*REGISTRY;
    let hash = reg.hasher.hash_one(name);
    let mut shard = lock(&reg.shards[shard_index(hash)]);
    if let Some(e) = shard.table.find(hash, |e| &*e.name == name) {
        e.handles.fetch_add(1, Ordering::Relaxed);
        return Handle(e.clone());
    }
    if shard.table.len() >= shard.sweep_at {
        shard.sweep(&reg.idle[shard_index(hash)]);
    }
    let e = shard.new_entry(name, hash);
    shard.table.insert_unique(hash, e.clone(), |e| e.hash);
    Handle(e)
}

impl Shard {
    /// A fresh entry with one handle: a spare one if any is unshared, else a new one.
    fn new_entry(&mut self, name: &str, hash: u64) -> Arc<Entry> {
        while let Some(mut spare) = self.spares.pop() {
            // A handle dropped just before the sweep may still be letting go of its `Arc`;
            // such a spare is simply freed.
            if let Some(e) = Arc::get_mut(&mut spare) {
                // Idle means unlocked with nobody queued, so `raw` is as good as new: its
                // owner facts are tied to a token that can never be granted again.
                e.name.clear();
                e.name.push_str(name);
                e.hash = hash;
                *e.handles.get_mut() = 1;
                return spare;
            }
        }
        Arc::new(Entry {
            name: name.to_owned(),
            hash,
            handles: AtomicUsize::new(1),
            raw: RawLock::new(),
            nested: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

/// Looks at the entry for `name` only if it exists (never creates one).
pub(crate) fn peek<R>(name: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
    let reg = &*REGISTRY;
    let hash = reg.hasher.hash_one(name);
    let shard = lock(&reg.shards[shard_index(hash)]);
    shard.table.find(hash, |e| &*e.name == name).map(|e| f(e))
}

/// How many names are in use right now (held, waited for, or pinned by a call site); lock
/// files' own in-process locks are not names.
pub(crate) fn in_use() -> usize {
    REGISTRY
        .shards
        .iter()
        .map(|s| lock(s).table.iter().filter(|e| e.named_in_use()).count())
        .sum()
}

/// Calls `f` with every name in use (held, waited for, or pinned by a call site).
/// Each shard's lock is held only while its entries are collected, not during `f`.
pub(crate) fn for_each_in_use(mut f: impl FnMut(&Entry)) {
    for shard in &REGISTRY.shards {
        let live: Vec<Arc<Entry>> = lock(shard)
            .table
            .iter()
            .filter(|e| e.named_in_use())
            .cloned()
            .collect();
        for e in &live {
            f(e);
        }
    }
}

/// How many entries are kept, idle ones and spares included (bounded; see the module docs).
pub(crate) fn stored() -> usize {
    REGISTRY
        .shards
        .iter()
        .map(|s| {
            let s = lock(s);
            s.table.len() + s.spares.len()
        })
        .sum()
}

/// Either a counted handle, or an entry pinned for the life of the process by a call
/// site's cache (no counting needed on the hot path).
#[derive(Clone)]
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
