//! `lock-core status`: the held locks of a lock directory, or the live leases of a store,
//! as a table or as JSON (schema 1, documented in the [crate docs](crate#json-schema)).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lock_core::file::{FileHolder, LockDir};
use lock_core::lease::{LeaseInfo, LeaseStore};
use lock_core::Mode;
use serde::Serialize;

use crate::args::StatusArgs;
use crate::exit::{self, Failure};
use crate::store::{self, AnyStore};

/// The version of the JSON output; bumped only for changes that could break a reader
/// (fields are only ever added within one version).
pub const SCHEMA: u32 = 1;

/// `status --json` for a lock directory.
#[derive(Debug, Serialize)]
pub struct FileReport {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// Always `"file"`.
    pub backend: &'static str,
    /// The lock directory (absolute).
    pub location: String,
    /// One entry per holding process (and per permit), longest-held first.
    pub locks: Vec<FileLock>,
}

/// One hold of a file lock.
#[derive(Debug, Serialize)]
pub struct FileLock {
    /// The lock's name.
    pub name: String,
    /// `"exclusive"`, `"shared"` or `"permits"`.
    pub mode: String,
    /// The number of permits of a counted lock, else `null`.
    pub permits: Option<u32>,
    /// The holding process.
    pub holder: HolderJson,
    /// How many calls (in any process) wait for the lock.
    pub waiting: usize,
    /// The lock file.
    pub file: String,
}

/// The holder of a file lock.
#[derive(Debug, Serialize)]
pub struct HolderJson {
    /// Its process id.
    pub pid: Option<u32>,
    /// Its host name (`null` if the record was made on another machine).
    pub host: Option<String>,
    /// When it took the lock, in milliseconds since the Unix epoch.
    pub since_unix_ms: Option<u64>,
}

/// `status --json` for a lease store.
#[derive(Debug, Serialize)]
pub struct StoreReport {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// `"postgres"`, `"redis"` or `"etcd"`.
    pub backend: &'static str,
    /// The store: kind, address, database or table (never credentials).
    pub location: String,
    /// One entry per live lease (several for shared and counted leases).
    pub leases: Vec<LeaseJson>,
}

/// One live lease.
#[derive(Debug, Serialize)]
pub struct LeaseJson {
    /// The lock's name.
    pub name: String,
    /// `"exclusive"`, `"shared"` or `"permits"`.
    pub mode: String,
    /// The number of permits of a counted lease, else `null`.
    pub permits: Option<u32>,
    /// The owner string (`host/pid/nonce/n` for lock-core's owners).
    pub owner: String,
    /// The pid in the owner string, if it has lock-core's shape.
    pub pid: Option<u32>,
    /// The host in the owner string, if it has lock-core's shape.
    pub host: Option<String>,
    /// The lease's fencing token.
    pub fence: u64,
    /// How long it stays valid unless renewed, in milliseconds.
    pub expires_in_ms: u64,
}

/// Runs `lock-core status`; the result is what to print on standard output.
pub async fn status(args: StatusArgs) -> Result<String, Failure> {
    if let Some(url) = &args.store {
        return match store::open(url)? {
            AnyStore::Postgres(s) => leases(s, "postgres", args.json).await,
            AnyStore::Redis(s) => leases(s, "redis", args.json).await,
            #[cfg(feature = "etcd")]
            AnyStore::Etcd(s) => leases(s, "etcd", args.json).await,
            #[cfg(feature = "dynamodb")]
            AnyStore::Dynamo(s) => leases(s, "dynamodb", args.json).await,
        };
    }
    let dir = args.dir.map(LockDir::new).unwrap_or_default();
    let location = dir.path().display().to_string();
    let found = tokio::task::spawn_blocking(move || dir.holders())
        .await
        .map_err(|e| Failure::new(exit::SOFTWARE, format!("listing failed: {e}")))?
        .map_err(|e| Failure::new(exit::code_of(&e, exit::SOFTWARE), e.to_string()))?;
    let report = FileReport {
        schema: SCHEMA,
        backend: "file",
        location,
        locks: found.iter().map(file_lock).collect(),
    };
    if args.json {
        return to_json(&report);
    }
    if report.locks.is_empty() {
        return Ok(format!("no locks held in {}\n", report.location));
    }
    let now = SystemTime::now();
    let rows = found
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                mode_text(h.mode),
                opt(h.holder.pid),
                h.holder.host.clone().unwrap_or_else(|| "-".into()),
                h.holder
                    .since
                    .and_then(|s| now.duration_since(s).ok())
                    .map(human)
                    .unwrap_or_else(|| "-".into()),
                h.waiting.to_string(),
            ]
        })
        .collect();
    let head = ["NAME", "MODE", "PID", "HOST", "HELD FOR", "WAITING"];
    Ok(table(&head, rows))
}

async fn leases<S: LeaseStore>(
    store: S,
    backend: &'static str,
    json: bool,
) -> Result<String, Failure> {
    let location = store.describe();
    let found = store
        .leases()
        .await
        .map_err(|e| Failure::new(exit::code_of(&e, exit::SOFTWARE), e.to_string()))?;
    let report = StoreReport {
        schema: SCHEMA,
        backend,
        location,
        leases: found.iter().map(lease_json).collect(),
    };
    if json {
        return to_json(&report);
    }
    if report.leases.is_empty() {
        return Ok(format!("no locks held in {}\n", report.location));
    }
    let rows = found
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                mode_text(l.mode),
                l.owner.clone(),
                l.fence.to_string(),
                human(l.expires_in),
            ]
        })
        .collect();
    Ok(table(
        &["NAME", "MODE", "OWNER", "FENCE", "EXPIRES IN"],
        rows,
    ))
}

fn file_lock(h: &FileHolder) -> FileLock {
    let (mode, permits) = mode_json(h.mode);
    FileLock {
        name: h.name.clone(),
        mode,
        permits,
        holder: HolderJson {
            pid: h.holder.pid,
            host: h.holder.host.clone(),
            since_unix_ms: h
                .holder
                .since
                .and_then(|s| s.duration_since(UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        },
        waiting: h.waiting,
        file: h.path.display().to_string(),
    }
}

fn lease_json(l: &LeaseInfo) -> LeaseJson {
    let (mode, permits) = mode_json(l.mode);
    let (pid, host) = store::owner_parts(&l.owner);
    LeaseJson {
        name: l.name.clone(),
        mode,
        permits,
        owner: l.owner.clone(),
        pid,
        host,
        fence: l.fence,
        expires_in_ms: u64::try_from(l.expires_in.as_millis()).unwrap_or(u64::MAX),
    }
}

fn mode_json(m: Mode) -> (String, Option<u32>) {
    match m {
        Mode::Exclusive => ("exclusive".into(), None),
        Mode::Shared => ("shared".into(), None),
        Mode::Permits(n) => ("permits".into(), Some(n)),
        other => (other.to_string(), None),
    }
}

fn mode_text(m: Mode) -> String {
    m.to_string()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn to_json<T: Serialize>(v: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| Failure::new(exit::SOFTWARE, format!("cannot write JSON: {e}")))
}

/// "850ms", "12s", "4m03s", "2h05m", "3d04h".
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Left-aligned columns two spaces apart.
fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (cell, w) in cells.zip(&widths) {
            l.push_str(cell);
            l.push_str(&" ".repeat(w - cell.chars().count() + 2));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut head.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(243)), "4m03s");
        assert_eq!(human(Duration::from_secs(7500)), "2h05m");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d04h");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["NAME", "PID"],
            vec![
                vec!["db".into(), "1".into()],
                vec!["fixtures/db".into(), "4242".into()],
            ],
        );
        assert_eq!(t, "NAME         PID\ndb           1\nfixtures/db  4242\n");
    }
}
