//! Who asks for a lock, and who holds it.
//!
//! A *chain key* names the call chain that a hand-taken guard (`acquire`, `try_acquire`,
//! `blocking_acquire`, ...) counts for, so that asking again from the same chain is
//! refused as re-entry instead of waiting for ever:
//!
//! * an async verb: the task its waker wakes (the waker's data pointer, which executors
//!   keep stable for a task). That is the task itself in a plain Tokio task or
//!   `block_on`, and each sub-future of a `FuturesUnordered` / `buffer_unordered`, so
//!   futures run concurrently that way queue instead of being refused; futures joined
//!   with `join!` share their task's waker and count as one chain;
//! * a sync verb inside a Tokio task: the task;
//! * otherwise: the thread.
//!
//! Every hold also records its Tokio task, if any: a *blocking* wait stops its whole
//! task, so it may not wait for any hold of that task.
//!
//! Holds taken by `#[locked]` bodies and `with_lock`/`Lock::run` are also recorded in the
//! call chain's scope frames (see `chain`), which is precise for nested calls; their key
//! is 0 when the attribute's fast path took them (it does not look up the task).

use std::cell::Cell;
use std::task::Waker;

use crate::site::Site;

const TAG: u64 = 3 << 62;
const TASK: u64 = 1 << 62;
const THREAD: u64 = 2 << 62;
const WAKER: u64 = 3 << 62;
const VALUE: u64 = !TAG;

/// In [`Facts::thread`]: the hold lives in async code (a task or a locked async body), so
/// its thread is only where it was taken.
pub(crate) const ASYNC: u64 = 1 << 63;

/// In [`Facts::thread`], beside [`ASYNC`]: the hold was taken by sync code (which runs
/// inside async code), for descriptions.
const SYNC_CODE: u64 = 1 << 62;

/// A small number naming the calling thread (never 0), cheaper than `ThreadId`.
#[inline]
pub(crate) fn thread_key() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local! {
        static KEY: Cell<u64> = const { Cell::new(0) };
    }
    KEY.try_with(|k| {
        let v = k.get();
        if v != 0 {
            return v;
        }
        let v = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        k.set(v);
        v
    })
    .unwrap_or(VALUE)
}

/// The current Tokio task's key, if we run inside one.
#[cfg(feature = "task-ids")]
#[inline]
pub(crate) fn task_key() -> Option<u64> {
    lock_core_task_ids::current().map(|n| TASK | (n & VALUE))
}

/// Without the `task-ids` feature no caller knows its Tokio task: tasks are told apart by
/// their wakers (async verbs) and threads (sync verbs) only.
#[cfg(not(feature = "task-ids"))]
#[inline]
pub(crate) fn task_key() -> Option<u64> {
    None
}

/// True when tasks cannot be told apart here: no `task-ids` feature, inside a Tokio
/// runtime's context (where one thread runs many tasks). Asked on slow paths only.
#[cold]
pub(crate) fn tasks_unknown() -> bool {
    cfg!(not(feature = "task-ids")) && tokio::runtime::Handle::try_current().is_ok()
}

/// The current thread's key if it runs a Tokio runtime's `block_on` (a runtime context
/// but no task), else 0. Without task ids the root cannot be told from a task: 0.
#[cold]
fn root_thread() -> u64 {
    if cfg!(feature = "task-ids") && tokio::runtime::Handle::try_current().is_ok() {
        thread_key()
    } else {
        0
    }
}

/// Who is asking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Me {
    /// The caller's chain key.
    pub(crate) key: u64,
    /// The caller's Tokio task key (0 outside tasks).
    pub(crate) task: u64,
    /// A sync caller: it knows no waker, so its chain is its whole task (or thread).
    pub(crate) sync: bool,
    /// An async caller outside any task of a Tokio runtime whose context it runs in: the
    /// root future of a Tokio `block_on`, on thread [`root`](Self::root)'s value (0: not
    /// such a caller). Every other future on that thread is a task, so a sync verb's
    /// hold taken there outside any task is this chain's (or its blocked caller's).
    pub(crate) root: u64,
}

impl Me {
    /// A sync caller.
    #[inline]
    pub(crate) fn sync() -> Me {
        match task_key() {
            Some(t) => Me {
                key: t,
                task: t,
                sync: true,
                root: 0,
            },
            None => Me {
                key: THREAD | thread_key(),
                task: 0,
                sync: true,
                root: 0,
            },
        }
    }

    /// An async caller polled with `waker`.
    #[inline]
    pub(crate) fn asynchronous(waker: &Waker) -> Me {
        let task = task_key();
        Me {
            key: WAKER | (waker.data() as usize as u64 & VALUE),
            task: task.unwrap_or(0),
            sync: false,
            root: match task {
                Some(_) => 0,
                None => root_thread(),
            },
        }
    }

    /// "task 12 (on thread #3)", "thread #5", "an async task on thread #3".
    pub(crate) fn describe(&self) -> String {
        Facts {
            key: self.key,
            task: self.task,
            thread: thread_key() | if self.key & TAG == THREAD { 0 } else { ASYNC },
            site: Site::Unknown,
        }
        .describe()
    }

    /// Whether a hold with `facts` belongs to this caller's chain, so that waiting for it
    /// would never end. A `blocking` wait stops the caller's whole task, so every hold of
    /// that task counts.
    ///
    /// Waker keys are compared together with the task: a waker's address may be reused by
    /// a later task once its own has finished (say, after a guard was moved out of it).
    ///
    /// Sync code knows no waker, so for it the chain is the whole task: every hand-taken
    /// guard of its task (or, outside any task, every hand-taken guard taken in async code
    /// on its thread, such as inside a `block_on`) is its own.
    #[inline]
    pub(crate) fn owns(&self, facts: &Facts, blocking: bool) -> bool {
        if facts.key != 0 {
            if facts.key == self.key && facts.task == self.task {
                return true;
            }
            // A sync verb's hold, taken in this task.
            if self.task != 0 && facts.key == self.task {
                return true;
            }
            if self.sync {
                if self.task != 0 && facts.task == self.task {
                    return true;
                }
                if self.task == 0
                    && facts.task == 0
                    && facts.is_async()
                    && self.key == THREAD | facts.thread_key()
                    && !tasks_unknown()
                {
                    return true;
                }
            }
            // The root future of a Tokio `block_on`, and a sync verb's hold taken on its
            // thread outside any task: its own, or its blocked caller's (as a sync verb's
            // hold in a task is its task's).
            if self.root != 0
                && facts.task == 0
                && !facts.is_async()
                && facts.thread_key() == self.root
            {
                return true;
            }
        }
        blocking && self.task != 0 && facts.task == self.task
    }
}

/// What is recorded about each hold.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Facts {
    /// The chain key a hand-taken guard counts for (0: found through scope frames only).
    pub(crate) key: u64,
    /// The Tokio task the hold was taken in (0: none, or not looked up).
    pub(crate) task: u64,
    /// The thread the hold was taken on, with [`ASYNC`] for holds in async code.
    pub(crate) thread: u64,
    /// Where it was taken.
    pub(crate) site: Site,
}

impl Facts {
    /// A hold taken by a sync caller (`me`, from [`Me::sync`]), counting for `key` (0 for
    /// a scoped hold).
    #[inline]
    pub(crate) fn sync(me: &Me, key: u64, site: Site) -> Facts {
        // Inside async code (a Tokio task, or a locked async body's poll) the thread is
        // shared with other tasks and is not the call chain.
        let in_async = me.task != 0
            || crate::chain::in_scope()
            || (cfg!(not(feature = "task-ids")) && tasks_unknown());
        // (The `cfg!` keeps the call off this path when task ids are on.)
        let async_bit = if in_async { ASYNC | SYNC_CODE } else { 0 };
        Facts {
            key,
            task: me.task,
            thread: thread_key() | async_bit,
            site,
        }
    }

    /// A hold taken by an async caller, counting for `key` (0 for a scoped hold).
    #[inline]
    pub(crate) fn asynchronous(me: &Me, key: u64, site: Site) -> Facts {
        Facts {
            key,
            task: me.task,
            thread: thread_key() | ASYNC,
            site,
        }
    }

    /// A hold taken by the attribute's async fast path: scoped (found through frames),
    /// without looking up the task (that costs more than the rest of the acquisition).
    #[inline]
    pub(crate) fn scoped_async(site: Site) -> Facts {
        Facts {
            key: 0,
            task: 0,
            thread: thread_key() | ASYNC,
            site,
        }
    }

    pub(crate) fn is_async(&self) -> bool {
        self.thread & ASYNC != 0
    }

    pub(crate) fn thread_key(&self) -> u64 {
        self.thread & !(ASYNC | SYNC_CODE)
    }

    /// "task 17", "thread #3", "a task on thread #3", ...
    pub(crate) fn describe(&self) -> String {
        let thread = self.thread_key();
        match self.key & TAG {
            TASK => format!("task {} (on thread #{thread})", self.key & VALUE),
            THREAD => format!("thread #{thread}"),
            WAKER => format!("an async task on thread #{thread}"),
            // A scoped hold of sync code running inside async code (a sync `#[locked]` fn
            // called from a task or a locked async body).
            _ if self.thread & SYNC_CODE != 0 => format!("a locked sync fn on thread #{thread}"),
            _ if self.is_async() => format!("a locked async body on thread #{thread}"),
            _ => format!("thread #{thread}"),
        }
    }
}

/// The key's kind, for the lock-order checker's per-chain bookkeeping and for tests.
#[allow(dead_code)]
pub(crate) fn is_thread_key(key: u64) -> bool {
    key & TAG == THREAD
}

/// This process's id. `getpid` is a system call every time (glibc stopped caching it),
/// and file locks record the holder's pid on every acquisition, so it is cached here and
/// forgotten in the child of a `fork` (which has another pid).
#[cfg(unix)]
pub(crate) fn pid() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Once;
    /// `PID` when the fork hook could not be installed: never cache then.
    const NEVER: u32 = u32::MAX;
    static PID: AtomicU32 = AtomicU32::new(0);
    static HOOK: Once = Once::new();
    extern "C" fn forget() {
        // Runs in the child right after fork: an atomic store, async-signal-safe.
        PID.store(0, Ordering::Relaxed);
    }
    let p = PID.load(Ordering::Relaxed);
    if p != 0 && p != NEVER {
        return p;
    }
    HOOK.call_once(|| {
        // SAFETY: registers a plain `extern "C"` function that only stores to an atomic,
        // which is allowed in a fork child; the other two handlers are absent. A failure
        // (ENOMEM) only means the cache is never used: see below.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forget)) };
        if rc != 0 {
            PID.store(NEVER, Ordering::Relaxed);
        }
    });
    let p = std::process::id();
    if PID.load(Ordering::Relaxed) != NEVER {
        PID.store(p, Ordering::Relaxed);
    }
    p
}

/// This process's id.
#[cfg(not(unix))]
pub(crate) fn pid() -> u32 {
    std::process::id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_pid_is_the_process_id() {
        assert_eq!(pid(), std::process::id());
        assert_eq!(pid(), std::process::id(), "from the cache");
    }

    #[cfg(feature = "task-ids")]
    #[test]
    fn keys_tell_tasks_threads_and_wakers_apart() {
        let k = Me::sync().key;
        assert!(is_thread_key(k));
        assert_eq!(k, Me::sync().key, "stable per thread");
        let other = std::thread::spawn(|| Me::sync().key).join().unwrap();
        assert_ne!(k, other);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (a, b) = rt.block_on(async {
            let a = tokio::spawn(async { (Me::sync(), Me::sync()) });
            let b = tokio::spawn(async { Me::sync() });
            (a.await.unwrap(), b.await.unwrap())
        });
        assert_eq!(a.0.key, a.1.key);
        assert_ne!(a.0.key, b.key);
        assert!(!is_thread_key(b.key) && b.task == b.key);
        let w = std::task::Waker::noop();
        assert_eq!(Me::asynchronous(w).key & TAG, WAKER);
        assert_eq!(Me::asynchronous(w).task, 0);
    }

    #[test]
    fn facts_describe_their_holder_and_belong_to_their_chain() {
        let me = Me::sync();
        let f = Facts::sync(&me, me.key, Site::Unknown);
        assert!(f.describe().starts_with("thread #"), "{}", f.describe());
        assert!(!f.is_async());
        assert!(me.owns(&f, false));
        let other = std::thread::spawn(Me::sync).join().unwrap();
        assert!(!other.owns(&f, true));
        let a = Facts::scoped_async(Site::Unknown);
        assert!(a.is_async());
        assert!(a.describe().contains("locked async body"));
        assert!(!me.owns(&a, true), "scoped holds are found through frames");
        // A blocking wait in a task owns every hold of that task.
        let t = Me {
            key: TASK | 5,
            task: TASK | 5,
            sync: false,
            root: 0,
        };
        let sibling = Facts {
            key: WAKER | 8,
            task: TASK | 5,
            ..a
        };
        assert!(!t.owns(&sibling, false));
        assert!(t.owns(&sibling, true));
        // Sync code in that task sees the async guard as its own.
        let sync_in_task = Me { sync: true, ..t };
        assert!(sync_in_task.owns(&sibling, false));
    }

    #[cfg(not(feature = "task-ids"))]
    #[test]
    fn without_task_ids_sync_callers_are_their_thread_and_tasks_share_no_holds() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (me, owned, asked) = rt.block_on(async {
            tokio::spawn(async {
                let me = Me::sync();
                // Another task's async hold, taken on this (the only) thread.
                let theirs = Facts {
                    key: WAKER | 8,
                    task: 0,
                    thread: thread_key() | ASYNC,
                    site: Site::Unknown,
                };
                let asked = Me::asynchronous(std::task::Waker::noop());
                (me, me.owns(&theirs, true), asked)
            })
            .await
            .unwrap()
        });
        assert!(is_thread_key(me.key) && me.task == 0);
        assert!(
            !owned,
            "a hold of another task on this thread is not re-entry"
        );
        assert_eq!((asked.task, asked.root), (0, 0), "no task, no root known");
        // Outside any runtime, async code on this thread is still the sync caller's chain
        // (a non-Tokio `block_on`).
        let me = Me::sync();
        let mine = Facts {
            key: WAKER | 8,
            task: 0,
            thread: thread_key() | ASYNC,
            site: Site::Unknown,
        };
        assert!(me.owns(&mine, false));
    }
}
