//! The live line `lock-core run` shows on a terminal while it waits:
//! "waiting for `db` — held by pid 4242 on build-3 for 12 s".
//!
//! Only when standard error is a terminal; silent otherwise. All writes go through one
//! thread of their own, so that a terminal that blocks output (Ctrl-S) never stalls the
//! runtime, and the line is erased before anything else is printed.

use std::future::Future;
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How soon the line first appears (an acquisition that is quicker shows nothing).
const FIRST: Duration = Duration::from_millis(200);
/// How often it is updated.
const EVERY: Duration = Duration::from_secs(1);

/// One holder, as far as it is known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HolderView {
    /// Its process id.
    pub pid: Option<u32>,
    /// Its host.
    pub host: Option<String>,
    /// How long it has held the lock.
    pub held_for: Option<Duration>,
    /// When its lease runs out unless renewed (leases only).
    pub expires_in: Option<Duration>,
}

enum Msg {
    Show(String),
    Clear(tokio::sync::oneshot::Sender<()>),
}

/// The waiting line: shown on a terminal, a no-op otherwise.
pub struct WaitLine {
    tx: Option<mpsc::Sender<Msg>>,
}

impl WaitLine {
    /// A line on standard error if it is a terminal, else one that shows nothing.
    pub fn for_stderr() -> Self {
        // SAFETY: isatty has no memory-safety preconditions.
        if unsafe { libc::isatty(2) } != 1 {
            return WaitLine { tx: None };
        }
        let (tx, rx) = mpsc::channel::<Msg>();
        let spawned = std::thread::Builder::new()
            .name("lock-core-waitline".into())
            .spawn(move || {
                let mut shown = false;
                for msg in rx {
                    let mut err = std::io::stderr().lock();
                    match msg {
                        Msg::Show(text) => {
                            let text = fit(&text, width());
                            let _ = write!(err, "\r\x1b[2K{text}");
                            shown = true;
                        }
                        Msg::Clear(done) => {
                            if shown {
                                let _ = write!(err, "\r\x1b[2K");
                                shown = false;
                            }
                            let _ = err.flush();
                            let _ = done.send(());
                        }
                    }
                    let _ = err.flush();
                }
            });
        WaitLine {
            tx: spawned.ok().map(|_| tx),
        }
    }

    /// True if the line is shown at all (standard error is a terminal).
    pub fn is_active(&self) -> bool {
        self.tx.is_some()
    }

    fn show(&self, text: String) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Show(text));
        }
    }

    /// Erases the line, if shown (waits a moment at most for the terminal to take it).
    pub async fn clear(&self) {
        if let Some(tx) = &self.tx {
            let (done, wait) = tokio::sync::oneshot::channel();
            if tx.send(Msg::Clear(done)).is_ok() {
                let _ = tokio::time::timeout(Duration::from_millis(500), wait).await;
            }
        }
    }

    /// Keeps the line up to date for the lock `name`, asking `probe` who holds it about
    /// once a second. Never completes: drop it (then [`clear`](Self::clear)) once the
    /// wait is over.
    pub async fn animate<F, Fut>(&self, name: &str, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Vec<HolderView>>,
    {
        if !self.is_active() {
            return std::future::pending().await;
        }
        let start = Instant::now();
        tokio::time::sleep(FIRST).await;
        loop {
            let holders = probe().await;
            self.show(describe(name, &holders, start.elapsed()));
            tokio::time::sleep(EVERY).await;
        }
    }
}

/// "waiting for `db` — held by pid 4242 on build-3 for 12 s".
pub fn describe(name: &str, holders: &[HolderView], waited: Duration) -> String {
    let Some(first) = holders.first() else {
        return format!(
            "waiting for `{name}` — holder unknown, waited {}",
            secs(waited)
        );
    };
    let mut s = format!("waiting for `{name}` — held by ");
    match first.pid {
        Some(pid) => s.push_str(&format!("pid {pid}")),
        None => s.push_str("an unknown process"),
    }
    if let Some(host) = &first.host {
        s.push_str(&format!(" on {host}"));
    }
    if let Some(d) = first.held_for {
        s.push_str(&format!(" for {}", secs(d)));
    }
    if let Some(d) = first.expires_in {
        s.push_str(&format!(", lease expires in {} unless renewed", secs(d)));
    }
    match holders.len() {
        1 => {}
        2 => s.push_str(" and 1 other"),
        n => s.push_str(&format!(" and {} others", n - 1)),
    }
    s
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// The terminal's width in columns (80 if unknown).
fn width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize; a zeroed one is valid.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            usize::from(ws.ws_col)
        } else {
            80
        }
    }
}

/// `text` cut to fewer than `width` characters, so that it never wraps (a wrapped line
/// could not be erased with a carriage return).
fn fit(text: &str, width: usize) -> String {
    let max = width.saturating_sub(1).max(1);
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_well() {
        let h = HolderView {
            pid: Some(4242),
            host: Some("build-3".into()),
            held_for: Some(Duration::from_millis(12_400)),
            expires_in: None,
        };
        assert_eq!(
            describe("db", std::slice::from_ref(&h), Duration::from_secs(3)),
            "waiting for `db` — held by pid 4242 on build-3 for 12 s"
        );
        let lease = HolderView {
            held_for: None,
            expires_in: Some(Duration::from_secs(8)),
            ..h.clone()
        };
        assert_eq!(
            describe("db", &[lease, h.clone(), h], Duration::ZERO),
            "waiting for `db` — held by pid 4242 on build-3, lease expires in 8 s unless renewed and 2 others"
        );
        assert_eq!(
            describe("db", &[], Duration::from_secs(3)),
            "waiting for `db` — holder unknown, waited 3 s"
        );
    }

    #[test]
    fn long_lines_are_cut() {
        assert_eq!(fit("abcdef", 80), "abcdef");
        assert_eq!(fit("abcdef", 5), "abc…");
        assert_eq!(fit("ééééé", 4), "éé…");
    }
}
