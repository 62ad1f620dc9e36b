//! Publication: the links a process writes into the directories of the files it holds,
//! and reading them back (see the parent module).

use std::collections::HashMap;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use crate::lockfile::cache::{self, LockFile};
use crate::lockfile::page::{Entry, Table};
use crate::owner::Me;
use crate::registry::EntryRef;
use crate::sync::{lock, Mutex};

/// The links file's name in a lock directory is this and the pid (no lock file's name
/// starts with a dot and lacks `.lock`).
const LINKS: &str = ".lock-core-waits-";
const HEADER: &str = "lock-core waits 1\n";

// Publication.

/// One wait of this process on a file's OS lock, past its threshold.
pub(super) struct OsWait {
    pub(super) id: u64,
    pub(super) me: Me,
    pub(super) held: Vec<(usize, u64)>,
    pub(super) blocking: bool,
    pub(super) lf: Arc<LockFile>,
    pub(super) ticket: u64,
}

/// "This process's hold of the file `held` (grant `grant`) lasts until its wait
/// `ticket` on `waits` ends."
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Link {
    pub(super) held: (u64, u64),
    pub(super) grant: u32,
    pub(super) waits: PathBuf,
    pub(super) ticket: u64,
    /// Where the hold was taken, when known (for reports).
    pub(super) site: String,
}

#[derive(Default)]
struct Published {
    next_id: u64,
    waits: Vec<OsWait>,
    /// Links as last written, each with the generation it got when it appeared.
    links: HashMap<Link, u64>,
    next_gen: u64,
    /// Directories that have a links file of this process, with what it says.
    files: HashMap<PathBuf, String>,
}

static PUBLISHED: LazyLock<Mutex<Published>> = LazyLock::new(Mutex::default);
/// Published waits, so that the end of an in-process wait costs one load when none is.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// One of this process's in-process waits ended: links that went through it are gone.
/// Called before the chain that waited runs on.
fn wait_left() {
    if WAITING.load(Ordering::SeqCst) != 0 {
        republish(&mut lock(&PUBLISHED));
    }
}

/// Recomputes the links now (holds and waits of this process's other chains may have
/// formed new ones).
pub(super) fn refresh() {
    republish(&mut lock(&PUBLISHED));
}

pub(super) fn publish(w: OsWait) -> u64 {
    let _ = crate::deadlock::WAIT_LEFT.set(wait_left);
    let mut p = lock(&PUBLISHED);
    p.next_id += 1;
    let id = p.next_id;
    p.waits.push(OsWait { id, ..w });
    WAITING.fetch_add(1, Ordering::SeqCst);
    republish(&mut p);
    id
}

pub(super) fn withdraw(id: u64) {
    let mut p = lock(&PUBLISHED);
    if let Some(i) = p.waits.iter().position(|w| w.id == id) {
        p.waits.swap_remove(i);
        WAITING.fetch_sub(1, Ordering::SeqCst);
        republish(&mut p);
    }
}

/// This process's holders of `lf`: its entries in the page's holder table.
fn my_holds(lf: &LockFile) -> Vec<Entry> {
    let me = crate::owner::pid();
    lf.page()
        .map(|p| {
            p.entries(Table::Holders)
                .map(|(_, e)| e)
                .filter(|e| e.pid == me)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether this process holds any lock file's OS lock: if not, no other process waits
/// for it, and none of its waits can be on a cycle across processes.
pub(super) fn holds_any_file() -> bool {
    cache::open_files()
        .iter()
        .any(|lf| !my_holds(lf).is_empty())
}

/// Links as they hold now, for every published wait.
fn links_now(waits: &[OsWait]) -> Vec<(PathBuf, Link)> {
    if waits.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for lf in cache::open_files() {
        let holds = my_holds(&lf);
        if holds.is_empty() {
            continue;
        }
        let ident = EntryRef::Counted(lf.ident.clone());
        let Some(dir) = lf.path.parent() else {
            continue;
        };
        for w in waits {
            if Arc::ptr_eq(&lf, &w.lf)
                || !crate::deadlock::stuck_on(&ident, &w.me, &w.held, w.blocking)
            {
                continue;
            }
            let site = site_of(&ident);
            for h in &holds {
                out.push((
                    dir.to_path_buf(),
                    Link {
                        held: lf.id,
                        grant: h.count,
                        waits: w.lf.path.clone(),
                        ticket: w.ticket,
                        site: site.clone(),
                    },
                ));
            }
        }
    }
    out
}

/// Recomputes the links and rewrites the files whose content changed.
fn republish(p: &mut Published) {
    let now = links_now(&p.waits);
    let mut links = HashMap::with_capacity(now.len());
    let mut by_dir: HashMap<PathBuf, String> = HashMap::new();
    for (dir, link) in now {
        let gen = match p.links.get(&link) {
            Some(&g) => g,
            None => {
                p.next_gen += 1;
                p.next_gen
            }
        };
        by_dir
            .entry(dir)
            .or_insert_with(|| HEADER.to_owned())
            .push_str(&line(&link, gen));
        links.insert(link, gen);
    }
    p.links = links;
    let pid = crate::owner::pid();
    for (dir, old) in &p.files {
        if !by_dir.contains_key(dir) && !old.is_empty() {
            let _ = std::fs::remove_file(dir.join(format!("{LINKS}{pid}")));
        }
    }
    for (dir, text) in &by_dir {
        if p.files.get(dir) != Some(text) {
            if !p.files.contains_key(dir) {
                sweep_dead(dir);
            }
            write_links(dir, pid, text);
        }
    }
    p.files = by_dir;
}

/// Where a hold of `entry` was taken, if any holder's place is known.
pub(super) fn site_of(entry: &EntryRef) -> String {
    entry
        .raw
        .records()
        .iter()
        .find(|r| r.facts.site.is_known())
        .map(|r| r.facts.site.to_string())
        .unwrap_or_default()
}

fn line(l: &Link, gen: u64) -> String {
    format!(
        "{gen}\t{}\t{}\t{}\t{}\t{}\t{}\n",
        l.held.0,
        l.held.1,
        l.grant,
        l.ticket,
        hex(l.waits.as_os_str().as_encoded_bytes()),
        l.site.replace(['\t', '\n'], " "),
    )
}

/// Writes the links file whole: into a fresh temporary file (never following a link,
/// never reusing a file someone else put there: explicit lock directories may be
/// shared), renamed into place.
fn write_links(dir: &Path, pid: u32, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = dir.join(format!("{LINKS}{pid}"));
    let tmp = dir.join(format!(
        "{LINKS}{pid}.{}.tmp",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if written.is_err() || std::fs::rename(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// The most a links file is read (far more than any process writes: a line per held
/// file per wait).
const MAX_LINKS_BYTES: u64 = 1 << 16;

/// Removes links files of processes that are gone (SIGKILLed waiters leave theirs).
fn sweep_dead(dir: &Path) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for e in read.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(LINKS))
            .and_then(|n| n.split('.').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        if !crate::lockfile::os::pid_alive(pid) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Process `pid`'s links in `dir`, with their generations. Total: anything that does not
/// parse is no link.
pub(super) fn read_links(dir: &Path, pid: u32) -> Vec<(Link, u64)> {
    use std::io::Read;
    // A regular file, opened without following links or blocking (a FIFO planted in a
    // shared directory must not stop the reader), read up to a bound.
    let Ok(f) = crate::lockfile::open::open_existing(&dir.join(format!("{LINKS}{pid}"))) else {
        return Vec::new();
    };
    let mut text = String::new();
    if f.take(MAX_LINKS_BYTES).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    let Some(body) = text.strip_prefix(HEADER) else {
        return Vec::new();
    };
    body.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<(Link, u64)> {
    let f: Vec<&str> = line.split('\t').collect();
    let [gen, dev, ino, grant, ticket, waits, site] = f.as_slice() else {
        return None;
    };
    let waits = PathBuf::from(std::ffi::OsString::from_vec(unhex(waits)?));
    Some((
        Link {
            held: (dev.parse().ok()?, ino.parse().ok()?),
            grant: grant.parse().ok()?,
            waits,
            ticket: ticket.parse().ok()?,
            site: (*site).to_owned(),
        },
        gen.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_round_trip_through_their_text() {
        let l = Link {
            held: (7, 99),
            grant: 3,
            waits: PathBuf::from("/tmp/x y\tz/\u{e4}.lock"),
            ticket: 12,
            site: "t::f (src/t.rs:4)".to_owned(),
        };
        let text = line(&l, 5);
        assert_eq!(parse_line(text.trim_end()), Some((l, 5)));
        assert_eq!(parse_line("1\t2\t3"), None);
        assert_eq!(parse_line("x\t1\t2\t3\t4\tzz\t"), None);
    }

    #[test]
    fn planted_links_files_neither_block_nor_redirect_writes() {
        let dir =
            std::env::temp_dir().join(format!("lock-core-links-planted-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A FIFO where a reader expects a links file: read at once as "no links".
        let fifo = dir.join(format!("{LINKS}4000001"));
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node there.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_links(&dir, 4000001).is_empty());
        // Links to a victim file where the writer's temporary names fall: the victim
        // is never written through them.
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let pid = 4000002;
        for n in 0..512 {
            let _ = std::os::unix::fs::symlink(&victim, dir.join(format!("{LINKS}{pid}.{n}.tmp")));
        }
        write_links(&dir, pid, "lock-core waits 1\n");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
