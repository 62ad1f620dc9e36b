//! The chase: following holds and links from a wait, and the second read that confirms
//! a cycle (see the parent module).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::links::{read_links, site_of, Link};
use super::Chaser;
use crate::error::CycleStep;
use crate::lockfile::cache;
use crate::lockfile::page::{self, Snapshot};
use crate::mode::Mode;
use crate::registry::EntryRef;

/// The most processes a cycle followed here may pass through.
const MAX_HOPS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Waiter {
    pub(super) pid: u32,
    pub(super) ticket: u64,
}

/// One step of a cycle: at `file`, `waiter` waits and `holder` (grant `grant`) holds;
/// `link` is how the holder's hold leads on.
#[derive(Clone, Debug)]
struct Hop {
    file: PathBuf,
    id: (u64, u64),
    name: String,
    waiter: Waiter,
    since_ms: u64,
    holder: u32,
    grant: u32,
    link: Onward,
}

/// How a hold on a cycle leads on.
#[derive(Clone, Debug)]
enum Onward {
    /// The holder is the chasing process, whose own hold leads back to its wait (taken
    /// where the string says, if known).
    Here(String),
    /// The holder's published link, with its generation.
    There(Link, u64),
}

/// A page as read now, with the file's identity.
struct Read {
    id: (u64, u64),
    snap: Snapshot,
}

fn read(path: &Path) -> Option<Read> {
    let f = crate::lockfile::open::open_existing(path).ok()?;
    let id = cache::identity(&f).ok()?;
    Some(Read {
        id,
        snap: page::snapshot(&f)?,
    })
}

/// Whether a waiter of kind `w` is held up by a holder of kind `h`. Counted locks never
/// are here (see the module docs).
fn conflicts(w: u32, h: u32) -> bool {
    matches!(
        (page::mode_of(w), page::mode_of(h)),
        (Some(Mode::Exclusive), Some(Mode::Exclusive | Mode::Shared))
            | (Some(Mode::Shared), Some(Mode::Exclusive))
    )
}

/// Whether this process's hold of the file `id` leads back to the chasing wait.
fn leads_back_here(c: &Chaser<'_>, id: (u64, u64)) -> bool {
    here(c, id).is_some()
}

/// [`leads_back_here`], with where the hold was taken (empty if unknown).
fn here(c: &Chaser<'_>, id: (u64, u64)) -> Option<String> {
    let lf = cache::open_files().into_iter().find(|lf| lf.id == id)?;
    if Arc::ptr_eq(&lf, c.lf) {
        return None;
    }
    let ident = EntryRef::Counted(lf.ident.clone());
    crate::deadlock::stuck_on(&ident, &c.me, &c.held, c.blocking).then(|| site_of(&ident))
}

/// Finds a cycle through `me`'s wait on which `me` is the one to give up, confirmed by a
/// second read; its steps for the report.
pub(super) fn chase(c: &Chaser<'_>, me: &Waiter) -> Option<Vec<CycleStep>> {
    let host = crate::lockfile::record::host_hash();
    let mut cycles = Vec::new();
    let mut hops = Vec::new();
    search(c, host, &c.lf.path, *me, &mut hops, &mut cycles);
    for cycle in cycles {
        // The wait that began last, by facts every process on the cycle reads alike; the
        // file's identity settles ties (tickets count per file). Hop 0 is this wait.
        let victim = cycle
            .iter()
            .enumerate()
            .max_by_key(|(_, h)| (h.since_ms, h.waiter.pid, h.waiter.ticket, h.id))
            .map(|(i, _)| i);
        if victim != Some(0) {
            continue;
        }
        if cycle.iter().all(|h| still(c, h)) {
            return Some(report(&cycle));
        }
    }
    None
}

fn search(
    c: &Chaser<'_>,
    host: u32,
    file: &Path,
    waiter: Waiter,
    hops: &mut Vec<Hop>,
    out: &mut Vec<Vec<Hop>>,
) {
    if out.len() >= 4 || hops.len() >= MAX_HOPS {
        return;
    }
    let Some(r) = read(file) else { return };
    if hops.iter().any(|h| h.id == r.id) {
        // A cycle that does not pass through the chasing wait: its own waiters find it.
        return;
    }
    let Some(w) = r
        .snap
        .waiters
        .iter()
        .find(|e| e.pid == waiter.pid && e.ticket == waiter.ticket)
    else {
        return;
    };
    let me = crate::owner::pid();
    for h in &r.snap.holders {
        if h.pid == w.pid || h.host != host || !h.alive() || !conflicts(w.kind, h.kind) {
            continue;
        }
        let hop = |link| Hop {
            file: file.to_path_buf(),
            id: r.id,
            name: r.snap.name.clone().unwrap_or_default(),
            waiter,
            since_ms: w.since_ms,
            holder: h.pid,
            grant: h.count,
            link,
        };
        if h.pid == me {
            if let Some(site) = here(c, r.id) {
                let mut cycle = hops.clone();
                cycle.push(hop(Onward::Here(site)));
                out.push(cycle);
                continue;
            }
        }
        let Some(dir) = file.parent() else { continue };
        for (link, gen) in read_links(dir, h.pid) {
            if link.held != r.id || link.grant != h.count {
                continue;
            }
            let next = Waiter {
                pid: h.pid,
                ticket: link.ticket,
            };
            let waits = link.waits.clone();
            hops.push(hop(Onward::There(link, gen)));
            search(c, host, &waits, next, hops, out);
            hops.pop();
        }
    }
}

/// The second read: every fact of `hop` is as it was.
fn still(c: &Chaser<'_>, hop: &Hop) -> bool {
    let Some(r) = read(&hop.file) else {
        return false;
    };
    let waits = r
        .snap
        .waiters
        .iter()
        .any(|e| e.pid == hop.waiter.pid && e.ticket == hop.waiter.ticket);
    let holds = r
        .snap
        .holders
        .iter()
        .any(|e| e.pid == hop.holder && e.count == hop.grant && e.alive());
    if r.id != hop.id || !waits || !holds {
        return false;
    }
    match &hop.link {
        Onward::Here(_) => leads_back_here(c, hop.id),
        Onward::There(link, gen) => hop.file.parent().is_some_and(|dir| {
            read_links(dir, hop.holder)
                .iter()
                .any(|(l, g)| l == link && g == gen)
        }),
    }
}

fn report(cycle: &[Hop]) -> Vec<CycleStep> {
    cycle
        .iter()
        .map(|h| {
            let taken = |site: &str| {
                if site.is_empty() {
                    String::new()
                } else {
                    format!(", taken in {site}")
                }
            };
            let who = match &h.link {
                Onward::Here(site) => format!("this process (pid {}){}", h.holder, taken(site)),
                Onward::There(link, _) => format!(
                    "process {} on {}{}",
                    h.holder,
                    crate::lockfile::record::host_name(),
                    taken(&link.site)
                ),
            };
            CycleStep::new(crate::name::shown(&h.name).into_owned(), who)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reader_writer_conflicts_close_cycles() {
        let x = page::kind_code(Mode::Exclusive);
        let s = page::kind_code(Mode::Shared);
        let p = page::kind_code(Mode::Permits(2));
        assert!(conflicts(x, x) && conflicts(x, s) && conflicts(s, x));
        assert!(!conflicts(s, s) && !conflicts(p, p) && !conflicts(x, p));
    }
}
