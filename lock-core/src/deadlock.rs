//! Waits that would close a cycle of waits are refused with [`LockError::Deadlock`].
//!
//! A call chain that finds its lock taken registers its wait here before it waits: who
//! it is, which locks its scopes hold, and what it waits for. Registration and the check
//! are one step under one mutex, so of two waits that close one cycle at the same moment
//! the second to register sees the first and fails; exactly one fails, the other waits.
//!
//! The check follows the waits-for graph from the wanted lock: its holders (read from the
//! lock's holder records), the waits those holders are in (a holder is in a registered
//! wait if that wait's scopes hold the grant, or if the grant is a hand-taken guard of
//! that wait's chain), the locks those waits want, and so on. Reaching a hold of the
//! asking chain closes a cycle. A wait for a counted lock ends when *any* holder leaves,
//! so it only closes a cycle if *every* holder leads back; a wait for a reader/writer
//! lock needs the holders it conflicts with to leave, so one such holder suffices.
//!
//! Only the slow path pays: an uncontended acquisition never comes here, and a waiting
//! chain that holds nothing (no scope holds a lock, and no hand-taken guard exists in
//! the process) cannot be part of a cycle and skips registration too.

use std::sync::atomic::{AtomicIsize, Ordering};

use crate::error::CycleStep;
use crate::mode::Mode;
use crate::owner::Me;
use crate::raw::Record;
use crate::registry::EntryRef;
use crate::sync::{lock, Mutex};
use crate::LockError;

/// Live hand-taken guards, sharded by thread so that counting them never bounces one
/// cache line between cores. Only their sum is ever read (on slow paths).
#[repr(align(64))]
struct Shard(AtomicIsize);

static HAND: [Shard; 16] = [const { Shard(AtomicIsize::new(0)) }; 16];

fn shard() -> &'static AtomicIsize {
    &HAND[(crate::owner::thread_key() % 16) as usize].0
}

/// A hand-taken guard was made.
#[inline]
pub(crate) fn hand_taken() {
    shard().fetch_add(1, Ordering::Relaxed);
}

/// A hand-taken guard was dropped (maybe on another thread than the one that made it).
#[inline]
pub(crate) fn hand_dropped() {
    shard().fetch_sub(1, Ordering::Relaxed);
}

/// Whether any hand-taken guard may exist. A chain's own guards were counted by its own
/// thread before it waits, so a chain that holds one always sees a non-zero sum. Waits
/// read it once and pass it on (it reads 16 cache lines).
pub(crate) fn any_hand_guards() -> bool {
    HAND.iter()
        .map(|s| s.0.load(Ordering::Relaxed))
        .fold(0isize, isize::wrapping_add)
        > 0
}

/// A lock as the check sees it: an identity, a name, and its holders' records.
pub(crate) trait Node: Clone {
    /// The lock's address (what scope frames record).
    fn addr(&self) -> usize;
    /// The lock's name, for reports.
    fn name(&self) -> &str;
    /// Who holds it now.
    fn records(&self) -> Vec<Record>;
}

impl Node for EntryRef {
    fn addr(&self) -> usize {
        let e: &crate::registry::Entry = self;
        e as *const crate::registry::Entry as usize
    }
    fn name(&self) -> &str {
        crate::registry::Entry::name(self)
    }
    fn records(&self) -> Vec<Record> {
        self.raw.records()
    }
}

/// One registered wait.
struct Wait<N> {
    id: u64,
    me: Me,
    blocking: bool,
    mode: Mode,
    /// What it waits for (a counted reference keeps the entry alive while registered).
    wants: N,
    /// Grants its scopes hold: `(entry address, grant id)`.
    held: Vec<(usize, u64)>,
    /// "task 12 (on thread #3)", "thread #5", ...
    who: String,
}

/// The registered waits, and the check over them.
pub(crate) struct Detector<N> {
    waits: Mutex<Waits<N>>,
}

struct Waits<N> {
    next: u64,
    list: Vec<Wait<N>>,
}

impl<N: Node> Detector<N> {
    pub(crate) fn new() -> Self {
        Detector {
            waits: Mutex::new(Waits {
                next: 1,
                list: Vec::new(),
            }),
        }
    }

    /// Registers the wait of chain `me` (whose scopes hold `held`) for `wants` in `mode`,
    /// or refuses it if it would close a cycle of waits. The check and the registration
    /// are one step under the mutex.
    pub(crate) fn enter(
        &self,
        wants: &N,
        me: &Me,
        held: Vec<(usize, u64)>,
        mode: Mode,
        blocking: bool,
        who: impl FnOnce() -> String,
    ) -> Result<u64, LockError> {
        let mut w = lock(&self.waits);
        let asking = Asker {
            me,
            held: &held,
            blocking,
        };
        let mut path = Vec::new();
        let mut visiting = Vec::new();
        if leads_back(&w.list, &asking, wants, mode, &mut path, &mut visiting) {
            drop(w);
            path.reverse();
            return Err(LockError::Deadlock {
                name: crate::name::shown(wants.name()).into_owned(),
                cycle: path,
            });
        }
        let id = w.next;
        w.next += 1;
        w.list.push(Wait {
            id,
            me: *me,
            blocking,
            mode,
            wants: wants.clone(),
            held,
            who: who(),
        });
        Ok(id)
    }

    /// Deregisters wait `id`.
    pub(crate) fn leave(&self, id: u64) {
        let mut w = lock(&self.waits);
        if let Some(i) = w.list.iter().position(|x| x.id == id) {
            let gone = w.list.swap_remove(i);
            drop(w);
            drop(gone);
        }
    }

    /// Whether the holders of `entry` can only let go once chain `me` (whose scopes hold
    /// `held`) does: one of them is that chain, or waits (in registered waits) for
    /// something whose holders lead back to it.
    #[cfg(all(unix, not(loom)))]
    pub(crate) fn stuck_on(
        &self,
        entry: &N,
        me: &Me,
        held: &[(usize, u64)],
        blocking: bool,
    ) -> bool {
        let w = lock(&self.waits);
        let asking = Asker { me, held, blocking };
        leads_back(
            &w.list,
            &asking,
            entry,
            Mode::Exclusive,
            &mut Vec::new(),
            &mut Vec::new(),
        )
    }

    /// Registered waits.
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.waits).list.len()
    }
}

#[cfg(not(loom))]
static DETECTOR: std::sync::LazyLock<Detector<EntryRef>> = std::sync::LazyLock::new(Detector::new);

/// Called at the end of every registered wait once set: the cross-process check sits
/// above this module and hooks in here, so this module does not import it.
#[cfg(not(loom))]
pub(crate) static WAIT_LEFT: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// A registered wait; dropping it (the wait ended, was cancelled or timed out)
/// deregisters it.
pub(crate) struct Registered(Option<u64>);

impl Drop for Registered {
    fn drop(&mut self) {
        #[cfg(not(loom))]
        if let Some(id) = self.0 {
            DETECTOR.leave(id);
            // Before the chain that waited runs on: links other processes read may have
            // gone through this wait (the cross-process check, `file::across`, sets the
            // hook when it first publishes a wait).
            if let Some(hook) = WAIT_LEFT.get() {
                hook();
            }
        }
    }
}

/// Registers the wait of chain `me` for `entry` in `mode`, or refuses it if it would
/// close a cycle of waits. `hands`: what [`any_hand_guards`] said when the wait began.
/// A chain that holds nothing, with no hand-taken guard anywhere, cannot close a cycle
/// and is not registered. (Under `--cfg loom` only the detector's core is modelled.)
pub(crate) fn enter(
    entry: &EntryRef,
    me: &Me,
    mode: Mode,
    blocking: bool,
    hands: bool,
    who: impl FnOnce() -> String,
) -> Result<Registered, LockError> {
    if !hands && !crate::chain::in_scope() {
        return Ok(Registered(None));
    }
    let mut held = Vec::new();
    crate::chain::held_grants(&mut held);
    if held.is_empty() && !hands {
        return Ok(Registered(None));
    }
    #[cfg(not(loom))]
    return DETECTOR
        .enter(entry, me, held, mode, blocking, who)
        .map(|id| Registered(Some(id)));
    #[cfg(loom)]
    {
        let _ = (entry, me, mode, blocking, who);
        Ok(Registered(None))
    }
}

/// The chain that asks.
struct Asker<'a> {
    me: &'a Me,
    held: &'a [(usize, u64)],
    blocking: bool,
}

fn holds(held: &[(usize, u64)], at: usize, rec: &Record) -> bool {
    held.iter().any(|&(e, id)| e == at && id == rec.id)
}

/// Whether the wait for `entry` in `mode` can only end once the asker lets go of
/// something: every step from the lock to its holders and their waits leads back to it.
/// On `true`, `path` holds the cycle, innermost step first.
fn leads_back<N: Node>(
    list: &[Wait<N>],
    asking: &Asker<'_>,
    entry: &N,
    mode: Mode,
    path: &mut Vec<CycleStep>,
    visiting: &mut Vec<usize>,
) -> bool {
    let at = entry.addr();
    if visiting.contains(&at) {
        // A cycle that does not go through the asker: not this wait's to report.
        return false;
    }
    visiting.push(at);
    let records = entry.records();
    // A counted wait ends when any holder leaves: it is stuck only if the lock is full
    // and every holder leads back. Other waits need every conflicting holder gone: one
    // that leads back is enough.
    let counted = match mode {
        Mode::Permits(n) => Some(n as usize),
        _ => None,
    };
    let start = path.len();
    let mut first_end = None;
    let mut all = !records.is_empty() && counted.is_none_or(|n| records.len() >= n);
    for rec in &records {
        if counted.is_some() && !all {
            break;
        }
        let mark = path.len();
        let mine = holds(asking.held, at, rec) || asking.me.owns(&rec.facts, asking.blocking);
        let back = if mine {
            path.push(CycleStep::new(
                crate::name::shown(entry.name()).into_owned(),
                format!("this call chain{}", site(rec)),
            ));
            true
        } else {
            holder_leads_back(list, asking, entry, rec, path, visiting)
        };
        match (back, counted) {
            (true, None) => {
                visiting.pop();
                return true;
            }
            // Keep the first branch as the reported cycle.
            (true, Some(_)) if first_end.is_none() => first_end = Some(path.len()),
            (true, Some(_)) => path.truncate(mark),
            (false, _) => {
                path.truncate(mark);
                all = false;
            }
        }
    }
    visiting.pop();
    if let (Some(_), true, Some(end)) = (counted, all, first_end) {
        path.truncate(end);
        return true;
    }
    path.truncate(start);
    false
}

/// Whether the holder of `rec` waits (in a registered wait) for something that leads
/// back to the asker.
fn holder_leads_back<N: Node>(
    list: &[Wait<N>],
    asking: &Asker<'_>,
    entry: &N,
    rec: &Record,
    path: &mut Vec<CycleStep>,
    visiting: &mut Vec<usize>,
) -> bool {
    for wait in list {
        let theirs =
            holds(&wait.held, entry.addr(), rec) || wait.me.owns(&rec.facts, wait.blocking);
        if !theirs {
            continue;
        }
        let depth = path.len();
        if leads_back(list, asking, &wait.wants, wait.mode, path, visiting) {
            path.push(CycleStep::new(
                crate::name::shown(entry.name()).into_owned(),
                format!("{}{}", wait.who, site(rec)),
            ));
            return true;
        }
        path.truncate(depth);
    }
    false
}

fn site(rec: &Record) -> String {
    if rec.facts.site.is_known() {
        format!(", taken in {}", rec.facts.site)
    } else {
        String::new()
    }
}

/// Registered waits (for tests: zero whenever no wait that could be part of a cycle is
/// in progress).
pub(crate) fn registered() -> usize {
    #[cfg(not(loom))]
    return DETECTOR.len();
    #[cfg(loom)]
    0
}

/// See [`Detector::stuck_on`].
#[cfg(all(unix, not(loom)))]
pub(crate) fn stuck_on(entry: &EntryRef, me: &Me, held: &[(usize, u64)], blocking: bool) -> bool {
    DETECTOR.stuck_on(entry, me, held, blocking)
}

#[cfg(all(test, loom))]
mod loom_model;
