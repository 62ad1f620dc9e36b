//! The lock-order checker: reports an inversion of the order in which call chains take
//! locks the first time it is seen — even when this run did not deadlock.
//!
//! Off by default. Turn it on with the cargo feature `lockdep`, or at run time with the
//! environment variable `LOCK_CORE_LOCKDEP=1` (report) or `LOCK_CORE_LOCKDEP=panic`
//! (panic in the chain that takes the inverted order: for test suites), or with
//! [`enable`]. `LOCK_CORE_LOCKDEP=0` turns the feature's default off again.
//!
//! It records, for every lock a call chain takes while it holds others, an edge "held
//! class → new class" with the two places the locks were taken, and reports a new edge
//! that closes a cycle in that graph (`a → b` seen before, now `b → a`, directly or through
//! other classes), naming both pairs of places. Locks are grouped in *classes*, as Linux's
//! lockdep does: a fixed name is its own class, and every name an interpolated
//! `#[locked(name = "account-{id}")]` makes is the one class `account-{}`; taking two
//! locks of one class nested is reported too (transfers between accounts deadlock when
//! two run in opposite directions), unless one attribute takes them together (several
//! names of one call are taken in sorted order, which is safe).
//!
//! Orders between *file locks* of one lock directory are also shared with the other
//! processes that use the directory, through an order log kept there (see
//! `file_taken`): an inversion between two processes run one after the other — two tests
//! under nextest — is reported by the second, naming the places in both.
//!
//! Reports go to `tracing` at WARN (target `lock_core::lockdep`) when the `tracing`
//! feature is on and a subscriber takes them, else to standard error (written past a
//! test harness's output capture), and are kept for [`inversions`].
//!
//! Cost: while off, one relaxed load per acquisition and release; while on, a global
//! mutex and some bookkeeping per acquisition (meant for tests and staging). Its memory
//! is bounded: past [`MAX_HELD`] locks held at once or [`MAX_EDGES`] recorded orders it
//! says so once and turns itself off for the rest of the run, as Linux's lockdep does,
//! rather than grow without end or slow every acquisition down.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::owner::{Facts, Me};

use crate::site::Site;

/// What the checker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// Nothing (the default without the `lockdep` feature).
    Off,
    /// Report inversions (tracing WARN or standard error) and keep them.
    Report,
    /// Also panic in the chain that takes locks in the inverted order.
    Panic,
}

const UNSET: u8 = 0;
const OFF: u8 = 1;
const REPORT: u8 = 2;
const PANIC: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNSET);

/// The most locks held at once (by all chains together) the checker follows.
pub const MAX_HELD: usize = 4096;
/// The most distinct "held class → taken class" orders the checker records.
pub const MAX_EDGES: usize = 65_536;

/// Reads the environment once (at the first look, or the first `setting()`).
pub(crate) fn init() {
    let default = if cfg!(feature = "lockdep") {
        REPORT
    } else {
        OFF
    };
    let v = match std::env::var("LOCK_CORE_LOCKDEP") {
        Ok(s) => match s.trim() {
            "0" | "off" | "false" | "" => OFF,
            "panic" => PANIC,
            _ => REPORT,
        },
        Err(_) => default,
    };
    let _ = STATE.compare_exchange(UNSET, v, Ordering::Relaxed, Ordering::Relaxed);
}

/// Whether the checker runs (one relaxed load).
#[inline(always)]
pub(crate) fn on() -> bool {
    match STATE.load(Ordering::Relaxed) {
        UNSET => first_look(),
        s => s >= REPORT,
    }
}

/// The first look reads the environment (once).
#[cold]
fn first_look() -> bool {
    init();
    STATE.load(Ordering::Relaxed) >= REPORT
}

/// Turns the checker on or off at run time (overrides the feature and the environment).
///
/// ```
/// use lock_core::lockdep::{self, Setting};
/// lockdep::enable(Setting::Report);
/// assert_eq!(lockdep::setting(), Setting::Report);
/// lockdep::enable(Setting::Off);
/// ```
pub fn enable(setting: Setting) {
    STATE.store(
        match setting {
            Setting::Off => OFF,
            Setting::Report => REPORT,
            Setting::Panic => PANIC,
        },
        Ordering::Relaxed,
    );
}

/// The current setting.
pub fn setting() -> Setting {
    if STATE.load(Ordering::Relaxed) == UNSET {
        init();
    }
    match STATE.load(Ordering::Relaxed) {
        REPORT => Setting::Report,
        PANIC => Setting::Panic,
        _ => Setting::Off,
    }
}

/// One reported inversion: two places that took two locks (classes) in one order, and two
/// that took them in the other.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inversion {
    /// The class held when the other was taken, in the order seen first.
    pub first: String,
    /// The class taken while holding `first`.
    pub then: String,
    /// Where `first` was taken, and where `then` was taken while it was held.
    pub before: (String, String),
    /// Where `then` was taken, and where `first` (or a class leading to it) was taken
    /// while it was held: the new, inverted order.
    pub now: (String, String),
}

impl fmt::Display for Inversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.then {
            return write!(
                f,
                "lock-order problem: two locks of class `{}` taken nested (held from {}, \
                 then taken at {}); two chains nesting them in opposite order deadlock",
                self.first, self.now.0, self.now.1
            );
        }
        write!(
            f,
            "lock-order inversion: `{then}` held (taken at {}) while taking `{first}` (at {}), \
             but earlier `{first}` was held (taken at {}) while taking `{then}` (at {}); two \
             chains doing this at once deadlock",
            self.now.0,
            self.now.1,
            self.before.0,
            self.before.1,
            first = self.first,
            then = self.then,
        )
    }
}

/// A held lock, as the checker remembers it.
struct Held {
    entry: usize,
    class: String,
    site: String,
    facts: Facts,
    /// For a file lock: the directory whose order log it shares with other processes.
    dir: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct State {
    /// Holds in progress, by grant id.
    held: HashMap<u64, Held>,
    /// Edges between classes, with the places of the first time each was seen.
    edges: HashMap<String, HashMap<String, (String, String)>>,
    edge_count: usize,
    reported: HashSet<(String, String)>,
    inversions: Vec<Inversion>,
    /// How far each directory's order log has been read.
    logs: HashMap<std::path::PathBuf, u64>,
    /// Orders this process wrote to (or read from) a directory's log.
    logged: HashSet<(std::path::PathBuf, String, String)>,
}

static CHECKER: Mutex<Option<State>> = Mutex::new(None);

fn state() -> MutexGuard<'static, Option<State>> {
    crate::sync::lock_std(&CHECKER)
}

/// Every inversion reported so far in this process.
///
/// ```
/// assert!(lock_core::lockdep::inversions().iter().all(|i| !i.first.is_empty()));
/// ```
pub fn inversions() -> Vec<Inversion> {
    state()
        .as_ref()
        .map(|s| s.inversions.clone())
        .unwrap_or_default()
}

/// The class of a lock name taken at `site`: the template it came from, for a name the
/// attribute interpolated; else the name itself.
fn class_of(name: &str, site: Site) -> String {
    if let Site::Fn(f) = site {
        if let Some(t) = f.classes.iter().find(|t| template_matches(t, name)) {
            return (*t).to_owned();
        }
    }
    name.to_owned()
}

/// Whether `name` can be what template `t` (literal text with `{}` holes) makes.
fn template_matches(t: &str, name: &str) -> bool {
    let parts: Vec<&str> = t.split("{}").collect();
    if parts.len() == 1 {
        return t == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// A lock was taken (grant `id` of `entry`, named `name`, with `facts`) by the chain
/// `me`. Panics in `Panic` mode on an inversion.
pub(crate) fn acquired(id: u64, entry: usize, name: &str, facts: &Facts, me: &Me) {
    let mut scoped = Vec::new();
    crate::chain::held_grants(&mut scoped);
    let class = class_of(name, facts.site);
    let site = facts.site.to_string();
    let mut report = None;
    let mut overflow = None;
    {
        let mut guard = state();
        let st = guard.get_or_insert_with(State::default);
        if st.held.len() >= MAX_HELD {
            overflow = Some(format!("more than {MAX_HELD} locks held at once"));
        } else if st.edge_count >= MAX_EDGES {
            overflow = Some(format!("more than {MAX_EDGES} lock orders recorded"));
        }
        if let Some(why) = &overflow {
            // Off for good: forget the graph (the inversions found stay listed).
            STATE.store(OFF, Ordering::Relaxed);
            let kept = std::mem::take(&mut st.inversions);
            *st = State {
                inversions: kept,
                ..State::default()
            };
            drop(guard);
            emit_text(&format!(
                "lock-core lockdep: {why}; the lock-order checker turns itself off for \
                 the rest of this run"
            ));
            return;
        }
        // What this chain holds: its scopes' grants, and its hand-taken guards.
        let held: Vec<(String, String)> = st
            .held
            .iter()
            .filter(|(gid, h)| h.entry != entry || **gid != id)
            .filter(|(gid, h)| {
                scoped.iter().any(|&(e, g)| e == h.entry && g == **gid)
                    || (h.facts.key != 0 && me.owns(&h.facts, false))
            })
            .map(|(_, h)| (h.class.clone(), h.site.clone()))
            .collect();
        for (hc, hsite) in held {
            if let Some(inv) = add_edge(st, &hc, &hsite, &class, &site) {
                report.get_or_insert(inv);
            }
        }
        st.held.insert(
            id,
            Held {
                entry,
                class,
                site,
                facts: *facts,
                dir: None,
            },
        );
        if let Some(inv) = &report {
            st.inversions.push(inv.clone());
        }
    }
    if let Some(inv) = report {
        emit(&inv);
        if STATE.load(Ordering::Relaxed) == PANIC {
            panic!("{inv}");
        }
    }
}

/// Grant `id` (already [`acquired`]) is also a file lock in `dir`: orders between file
/// locks of one directory are shared with the other processes that use it, through an
/// order log in the directory (see [`order_log`]). Orders other processes recorded are
/// read first, so an inversion between two processes — two tests run one after the other
/// by nextest — is reported by the second, with both places. Panics in `Panic` mode.
pub(crate) fn file_taken(id: u64, dir: &std::path::Path, me: &Me) {
    let mut scoped = Vec::new();
    crate::chain::held_grants(&mut scoped);
    let mut report = None;
    {
        let mut guard = state();
        let Some(st) = guard.as_mut() else { return };
        let Some(this) = st.held.get_mut(&id) else {
            return;
        };
        this.dir = Some(dir.to_path_buf());
        let (class, site) = (this.class.clone(), this.site.clone());
        order_log::read_new(st, dir);
        let held: Vec<(String, String)> = st
            .held
            .iter()
            .filter(|(gid, h)| **gid != id && h.dir.as_deref() == Some(dir))
            .filter(|(gid, h)| {
                scoped.iter().any(|&(e, g)| e == h.entry && g == **gid)
                    || (h.facts.key != 0 && me.owns(&h.facts, false))
            })
            .map(|(_, h)| (h.class.clone(), h.site.clone()))
            .collect();
        for (hc, hsite) in held {
            if let Some(inv) = add_edge(st, &hc, &hsite, &class, &site) {
                report.get_or_insert(inv);
            }
            if st
                .logged
                .insert((dir.to_path_buf(), hc.clone(), class.clone()))
            {
                order_log::append(dir, &hc, &class, &hsite, &site);
            }
        }
        if let Some(inv) = &report {
            st.inversions.push(inv.clone());
        }
    }
    if let Some(inv) = report {
        emit(&inv);
        if STATE.load(Ordering::Relaxed) == PANIC {
            panic!("{inv}");
        }
    }
}

/// The order log of a lock directory: one line per "held class → taken class" order
/// that some process saw between two file locks of the directory, with both places:
/// `held \t taken \t held-site \t taken-site \t pid \n`.
///
/// * **Concurrent writers**: each line is one `write` to a file opened with `O_APPEND`,
///   shorter than a page, so lines never interleave.
/// * **Crashes**: a line cut short has no newline and is ignored (and so is anything that
///   does not parse: reading is total).
/// * **Bounded**: past [`order_log::MAX_BYTES`] nothing more is written (said once);
///   orders already there keep being checked.
mod order_log {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::path::Path;

    use super::State;

    /// The log's file name inside a lock directory (a name no lock's file can have:
    /// those end in `.lock`).
    pub(super) const FILE: &str = ".lock-core-lockdep-orders";
    /// The most the log grows to.
    pub(super) const MAX_BYTES: u64 = 1 << 20;

    /// Reads the lines other processes appended since the last read into the graph.
    pub(super) fn read_new(st: &mut State, dir: &Path) {
        let at = st.logs.get(dir).copied().unwrap_or(0);
        let Ok(mut f) = std::fs::File::open(dir.join(FILE)) else {
            return;
        };
        if f.seek(SeekFrom::Start(at)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.take(MAX_BYTES).read_to_end(&mut buf).is_err() {
            return;
        }
        // Only whole lines: a line being written (or cut short by a crash) waits.
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        st.logs.insert(dir.to_path_buf(), at + end as u64 + 1);
        for line in String::from_utf8_lossy(&buf[..end]).lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if let [held, taken, held_site, taken_site, _pid] = f.as_slice() {
                if held.is_empty() || taken.is_empty() {
                    continue;
                }
                st.logged
                    .insert((dir.to_path_buf(), (*held).to_owned(), (*taken).to_owned()));
                let out = st.edges.entry((*held).to_owned()).or_default();
                if !out.contains_key(*taken) {
                    out.insert(
                        (*taken).to_owned(),
                        ((*held_site).to_owned(), (*taken_site).to_owned()),
                    );
                    st.edge_count += 1;
                }
            }
        }
    }

    /// Appends one order (unless the log is full).
    pub(super) fn append(dir: &Path, held: &str, taken: &str, held_site: &str, taken_site: &str) {
        let path = dir.join(FILE);
        let clean = |s: &str| s.replace(['\t', '\n'], " ");
        let line = format!(
            "{}\t{}\t{}\t{}\t{}\n",
            clean(held),
            clean(taken),
            clean(held_site),
            clean(taken_site),
            crate::owner::pid()
        );
        let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
        else {
            return;
        };
        match f.metadata() {
            Ok(m) if m.len() + line.len() as u64 <= MAX_BYTES => {
                let _ = f.write_all(line.as_bytes());
            }
            Ok(_) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    super::emit_text(&format!(
                        "lock-core lockdep: the order log {} is full; orders seen from now \
                         on are not shared with other processes",
                        path.display()
                    ))
                });
            }
            Err(_) => {}
        }
    }
}

/// A lock was given back.
pub(crate) fn released(id: u64) {
    if let Some(st) = state().as_mut() {
        st.held.remove(&id);
    }
}

/// Records "`a` held while taking `b`"; the inversion this closes, the first time.
fn add_edge(st: &mut State, a: &str, a_site: &str, b: &str, b_site: &str) -> Option<Inversion> {
    if a == b {
        let key = (a.to_owned(), a.to_owned());
        if !st.reported.insert(key) {
            return None;
        }
        return Some(Inversion {
            first: a.to_owned(),
            then: a.to_owned(),
            before: (a_site.to_owned(), b_site.to_owned()),
            now: (a_site.to_owned(), b_site.to_owned()),
        });
    }
    // A path b → ... → a closes a cycle with the new edge a → b.
    let back = path(st, b, a);
    let out = st.edges.entry(a.to_owned()).or_default();
    if !out.contains_key(b) {
        out.insert(b.to_owned(), (a_site.to_owned(), b_site.to_owned()));
        st.edge_count += 1;
    }
    let first_hop = back?;
    let key = if a < b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    };
    if !st.reported.insert(key) {
        return None;
    }
    Some(Inversion {
        first: b.to_owned(),
        then: a.to_owned(),
        before: first_hop,
        now: (a_site.to_owned(), b_site.to_owned()),
    })
}

/// If `to` is reachable from `from`, the places of the first edge on the way.
fn path(st: &State, from: &str, to: &str) -> Option<(String, String)> {
    let mut seen = HashSet::new();
    let mut stack: Vec<(&str, Option<&(String, String)>)> = vec![(from, None)];
    while let Some((node, first)) = stack.pop() {
        if !seen.insert(node) {
            continue;
        }
        let Some(next) = st.edges.get(node) else {
            continue;
        };
        for (n, sites) in next {
            let first = first.or(Some(sites));
            if n == to {
                return first.cloned();
            }
            stack.push((n, first));
        }
    }
    None
}

/// A report goes to `tracing` if a subscriber takes it, else straight to standard
/// error (past a test harness's capture, like the slow-wait line).
fn emit(inv: &Inversion) {
    #[cfg(feature = "tracing")]
    if tracing::enabled!(target: "lock_core::lockdep", tracing::Level::WARN) {
        tracing::warn!(
            target: "lock_core::lockdep",
            first = %inv.first,
            then = %inv.then,
            "{}",
            inv
        );
        return;
    }
    crate::trace::say(&format!("lock-core: {inv}"));
}

fn emit_text(text: &str) {
    #[cfg(feature = "tracing")]
    if tracing::enabled!(target: "lock_core::lockdep", tracing::Level::WARN) {
        tracing::warn!(target: "lock_core::lockdep", "{}", text);
        return;
    }
    crate::trace::say(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_the_names_they_make() {
        assert!(template_matches("account-{}", "account-42"));
        assert!(!template_matches("account-{}", "user-42"));
        assert!(template_matches("a-{}-b-{}", "a-1-b-2"));
        assert!(!template_matches("a-{}-b-{}", "a-1-c-2"));
        assert!(template_matches("db", "db"));
    }

    #[test]
    fn an_inverted_pair_is_reported_once_with_both_places() {
        let mut st = State::default();
        assert!(add_edge(&mut st, "a", "f:1", "b", "f:2").is_none());
        let inv = add_edge(&mut st, "b", "g:1", "a", "g:2").expect("inversion");
        assert_eq!(inv.before, ("f:1".into(), "f:2".into()));
        assert_eq!(inv.now, ("g:1".into(), "g:2".into()));
        assert!(inv.to_string().contains("f:2") && inv.to_string().contains("g:2"));
        assert!(add_edge(&mut st, "b", "h:1", "a", "h:2").is_none(), "once");
        // Through a third class.
        assert!(add_edge(&mut st, "c", "x", "d", "y").is_none());
        assert!(add_edge(&mut st, "d", "x", "e", "y").is_none());
        assert!(add_edge(&mut st, "e", "z", "c", "w").is_some());
        // Nesting in one class.
        let same = add_edge(&mut st, "acct-{}", "t:1", "acct-{}", "t:2").unwrap();
        assert!(same.to_string().contains("nested"));
    }
}
