//! CMD and everything it starts are one job (as with timeout(1) and flock(1)): signals
//! reach the whole group, a file lock stays held while any process of the job runs —
//! even when `lock-core` itself is SIGKILLed — and a lease job never outlives its lease.
//!
//! Exclusion is proved by what the next holder sees when it starts (the first job's
//! clean-up finished, none of its processes alive), never by timing.

mod support;

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lock_core::{Lock, LockError};
use support::*;

/// A job whose child needs a while to clean up after SIGTERM, as real jobs do; the
/// parent (CMD) exits at once on SIGTERM. Both pids go to `$PIDS`, the clean-up's
/// progress to `$LOG`. With `IGNORE=1` the child ignores SIGTERM (only SIGKILL ends it).
const JOB: &str = r#"
child() {
  if [ "$IGNORE" = 1 ]; then
    trap '' TERM
  else
    trap 'echo child-term >> "$LOG"; sleep 0.4; echo child-done >> "$LOG"; exit 0' TERM
  fi
  while :; do sleep 0.05; done
}
child &
echo $! >> "$PIDS"
echo $$ >> "$PIDS"
trap 'echo parent-term >> "$LOG"; exit 0' TERM
echo "ready ${LOCK_CORE_FENCE:-}" > "$MARK"
wait
"#;

/// What the next holder records the moment it is inside: the first job's log, and
/// which of its processes are still alive (not counting zombies).
const NEXT: &str = r#"
cat "$LOG" > "$SEEN" 2>/dev/null
for p in $(cat "$PIDS"); do
  s=$(cut -d' ' -f3 "/proc/$p/stat" 2>/dev/null)
  if [ -n "$s" ] && [ "$s" != Z ]; then echo "alive $p"; fi
done > "$ALIVE"
"#;

struct Job {
    t: TempDir,
    job: PathBuf,
    next: PathBuf,
}

impl Job {
    fn new(tag: &str) -> Job {
        let t = TempDir::new(tag);
        let job = t.join("job.sh");
        let next = t.join("next.sh");
        std::fs::write(&job, JOB).unwrap();
        std::fs::write(&next, NEXT).unwrap();
        Job { t, job, next }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.t.join(name)
    }

    fn env(&self, ignore: bool) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("LOG", self.file("log")),
            ("PIDS", self.file("pids")),
            ("MARK", self.file("ready")),
            ("SEEN", self.file("seen")),
            ("ALIVE", self.file("alive")),
            ("IGNORE", PathBuf::from(if ignore { "1" } else { "0" })),
        ]
    }

    /// Starts `lock-core run NAME PLACE.. -- sh SCRIPT`.
    fn start(&self, name: &str, place: &[&OsStr], script: &Path, ignore: bool) -> Running {
        let mut args: Vec<&OsStr> = vec![OsStr::new("run"), OsStr::new(name)];
        args.extend_from_slice(place);
        args.extend([OsStr::new("--"), OsStr::new("sh"), script.as_os_str()]);
        let env = self.env(ignore);
        let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        start(&self.t, &args, &env)
    }

    fn first(&self, name: &str, place: &[&OsStr], ignore: bool) -> Running {
        let mut r = self.start(name, place, &self.job, ignore);
        r.wait_for_file(&self.file("ready"), "the first job to be ready");
        wait_until("both pids of the first job", || {
            pids_in(&self.file("pids")).len() == 2
        });
        r
    }

    fn pids(&self) -> Vec<i32> {
        pids_in(&self.file("pids"))
    }

    /// The first job's CMD (the shell running the job script): its pid is its group.
    fn cmd_pid(&self) -> i32 {
        self.pids()[1]
    }

    /// What the next holder saw when it got in.
    fn seen_by_next(&self) -> (String, String) {
        (
            std::fs::read_to_string(self.file("seen")).unwrap_or_default(),
            std::fs::read_to_string(self.file("alive")).expect("the next holder ran"),
        )
    }
}

fn signal_group(pgid: i32, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, sig) };
}

/// Waits until none of `pids` is alive, at most `limit`.
fn wait_all_dead(pids: &[i32], limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|&p| process_alive(p)) {
        assert!(
            Instant::now() < deadline,
            "{what}: still alive after {limit:?}: {:?}",
            pids.iter()
                .filter(|&&p| process_alive(p))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_killed_lock_core_leaves_the_file_lock_with_its_job_until_the_job_ends() {
    let j = Job::new("tree-kill9");
    let d = j.t.locks();
    let name = unique("tree-kill9");
    let place = dir_args(&d);
    let first = j.first(&name, &place, false);
    first.signal(libc::SIGKILL);
    let done = first.finish(DEADLINE);
    assert_eq!(done.status.signal(), Some(libc::SIGKILL), "{done:?}");

    // CMD inherited the lock: still held, by a live holder that the lock file names.
    let cmd = j.cmd_pid();
    match Lock::new(&name).dir(&d).try_acquire() {
        Err(LockError::Busy { holder, .. }) => {
            let h = holder.expect("a live holder is named");
            assert_eq!(h.pid, Some(cmd.unsigned_abs()), "{h:?}");
            assert!(
                h.detail.as_deref().unwrap_or("").contains("process group"),
                "{h:?}"
            );
        }
        other => panic!("the job still holds the lock: {other:?}"),
    }
    let listed = run(
        &j.t,
        ["status", "--json", "--dir", d.to_str().unwrap()],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    let entry = v["locks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name.as_str())
        .unwrap_or_else(|| panic!("listed: {v}"));
    assert_eq!(entry["holder"]["pid"], cmd, "{v}");

    // The next holder queues; the job is told to stop and cleans up for a while.
    let next = j.start(&name, &place, &j.next, false);
    wait_until("the next holder to queue", || {
        lock_core::file::LockDir::new(&d)
            .holders()
            .unwrap_or_default()
            .iter()
            .any(|h| h.name == name && h.waiting == 1)
    });
    signal_group(cmd, libc::SIGTERM);
    let done = next.finish(DEADLINE);
    assert_eq!(done.code, Some(0), "{done:?}");
    let (seen, alive) = j.seen_by_next();
    assert!(
        seen.contains("child-done"),
        "the next holder started before the first job's clean-up ended: {seen:?}"
    );
    assert_eq!(alive, "", "processes of the first job were alive");
}

#[test]
fn sigterm_reaches_the_whole_group_and_the_file_lock_waits_for_its_clean_up() {
    let j = Job::new("tree-term");
    let d = j.t.locks();
    let name = unique("tree-term");
    let place = dir_args(&d);
    let first = j.first(&name, &place, false);
    first.signal(libc::SIGTERM);
    let done = first.finish(DEADLINE);
    assert_eq!(done.code, Some(0), "CMD's own status: {done:?}");

    let next = j.start(&name, &place, &j.next, false);
    let done = next.finish(DEADLINE);
    assert_eq!(done.code, Some(0), "{done:?}");
    let (seen, alive) = j.seen_by_next();
    assert!(seen.contains("parent-term"), "CMD got SIGTERM: {seen:?}");
    assert!(
        seen.contains("child-term") && seen.contains("child-done"),
        "CMD's child got SIGTERM too, and finished before the next holder: {seen:?}"
    );
    assert_eq!(alive, "", "processes of the first job were alive");
}

#[derive(Clone, Copy, Debug)]
enum Store {
    Postgres,
    Redis,
}

impl Store {
    fn url(self) -> String {
        match self {
            Store::Postgres => pg_url(),
            Store::Redis => redis_url(),
        }
    }
}

fn store_args(url: &str, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["--store".to_owned(), url.to_owned()];
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

/// SIGTERM to a lease job: `lock-core` exits only once the whole group has ended,
/// and only then gives the lease back.
fn lease_job_ends_as_one(store: Store) {
    let j = Job::new("tree-lease-term");
    let name = unique("tree-lease-term");
    let args = store_args(&store.url(), &["--lease", "2s"]);
    let place: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let first = j.first(&name, &place, false);
    let pids = j.pids();
    first.signal(libc::SIGTERM);
    let done = first.finish(DEADLINE);
    assert_eq!(done.code, Some(0), "{store:?}: {done:?}");
    let log = std::fs::read_to_string(j.file("log")).unwrap_or_default();
    assert!(
        log.contains("child-done"),
        "{store:?}: lock-core exited before CMD's child finished its clean-up: {log:?}"
    );
    assert!(
        pids.iter().all(|&p| !process_alive(p)),
        "{store:?}: a process of the job outlived lock-core"
    );
}

#[test]
fn postgres_lease_job_ends_as_one() {
    lease_job_ends_as_one(Store::Postgres);
}

#[test]
fn redis_lease_job_ends_as_one() {
    lease_job_ends_as_one(Store::Redis);
}

/// SIGKILL of `lock-core` holding a lease: its guardian stops the job's whole group
/// (SIGKILL for a child that ignores SIGTERM) while the lease is still valid, so the
/// next holder — with a higher fence — never runs beside any of it.
fn killed_lease_holder_leaves_nothing_running(store: Store) {
    const TTL: Duration = Duration::from_secs(2);
    let j = Job::new("tree-lease-kill9");
    let name = unique("tree-lease-kill9");
    let url = store.url();
    let args = store_args(&url, &["--lease", "2s", "--grace", "5s"]);
    let place: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let first = j.first(&name, &place, true);
    let pids = j.pids();
    let killed = Instant::now();
    first.signal(libc::SIGKILL);
    let _ = first.finish(DEADLINE);
    // Stopped within a third of the TTL (the guardian's grace), well before expiry.
    wait_all_dead(
        &pids,
        TTL,
        &format!("{store:?}: the job after lock-core died"),
    );
    let stopped_after = killed.elapsed();

    let fence_file = j.file("fence");
    let next_script = j.file("next-fence.sh");
    std::fs::write(
        &next_script,
        format!("{NEXT}\necho \"$LOCK_CORE_FENCE\" > \"$FENCE\"\n"),
    )
    .unwrap();
    let mut args: Vec<&OsStr> = vec![OsStr::new("run"), OsStr::new(&name)];
    args.extend(place.iter().copied());
    args.extend(["--timeout", "20s", "--", "sh"].map(OsStr::new));
    args.push(next_script.as_os_str());
    let env = j.env(false);
    let mut env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    env.push(("FENCE", fence_file.as_os_str()));
    let done = run(&j.t, &args, &env);
    assert_eq!(done.code, Some(0), "{store:?}: {done:?}");
    let (_, alive) = j.seen_by_next();
    assert_eq!(
        alive, "",
        "{store:?}: the next holder ran beside the first job (stopped after {stopped_after:?})"
    );
    let fence: u64 = std::fs::read_to_string(&fence_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let first_fence: u64 = std::fs::read_to_string(j.file("ready"))
        .unwrap()
        .trim()
        .trim_start_matches("ready ")
        .parse()
        .unwrap();
    assert!(
        fence > first_fence,
        "{store:?}: the next holder's fence grew: {first_fence} -> {fence}"
    );
}

#[test]
fn postgres_killed_lease_holder_leaves_nothing_running() {
    killed_lease_holder_leaves_nothing_running(Store::Postgres);
}

#[test]
fn redis_killed_lease_holder_leaves_nothing_running() {
    killed_lease_holder_leaves_nothing_running(Store::Redis);
}
