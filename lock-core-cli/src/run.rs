//! `lock-core run`: take the lock (waiting with a live line on a terminal), run CMD,
//! release the lock, exit with CMD's status.

use std::convert::Infallible;
use std::ffi::OsString;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use lock_core::file::LockDir;
use lock_core::lease::{self, LeaseInfo, LeaseOptions, LeaseStore};
use lock_core::{Lock, LockError, Mode};

use crate::args::RunArgs;
use crate::child::{self, End, Lost, Spawn, Until};
use crate::exit::{self, Failure};
use crate::group;
use crate::guardian::Guardian;
use crate::signals::{self, Signals};
use crate::store::{self, AnyStore};
use crate::waitline::{HolderView, WaitLine};

/// The lease TTL without `--lease`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The grace between SIGTERM and SIGKILL without `--grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The environment variable that names the lock to CMD.
pub const ENV_LOCK: &str = "LOCK_CORE_LOCK";
/// The environment variable that carries the lease's fencing token to CMD.
pub const ENV_FENCE: &str = "LOCK_CORE_FENCE";

/// Where the lock lives.
enum Place {
    /// A lock directory (`None`: the default one).
    Dir(Option<PathBuf>),
    /// Exactly this file.
    Path(PathBuf),
    /// A lease store.
    Store(AnyStore),
}

/// A checked request.
struct Plan {
    name: String,
    mode: Mode,
    timeout: Option<Duration>,
    conflict: u8,
    command: Vec<OsString>,
}

/// Runs `lock-core run`; the result is the exit status.
pub async fn run(args: RunArgs) -> Result<u8, Failure> {
    if let Err(e) = lock_core::validate_name(&args.name) {
        return Err(Failure::new(exit::USAGE, e.to_string()));
    }
    let mode =
        match (args.shared, args.permits) {
            (_, Some(0)) => return Err(Failure::new(
                exit::USAGE,
                "--permits must be at least 1 (a counted lock with 0 permits could never be held)",
            )),
            (_, Some(n)) if n > lock_core::MAX_PERMITS => {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "--permits may be at most {}, got {n}",
                        lock_core::MAX_PERMITS
                    ),
                ))
            }
            (_, Some(n)) => Mode::Permits(n),
            (true, None) => Mode::Shared,
            (false, None) => Mode::Exclusive,
        };
    let ttl = args.lease.unwrap_or(DEFAULT_LEASE);
    if ttl < lease::MIN_TTL {
        return Err(Failure::new(
            exit::USAGE,
            format!("--lease must be at least {} ms", lease::MIN_TTL.as_millis()),
        ));
    }
    let place = match (args.dir, args.path, &args.store) {
        (_, _, Some(url)) => Place::Store(store::open(url)?),
        (_, Some(p), None) => Place::Path(p),
        (d, None, None) => Place::Dir(d),
    };
    let plan = Plan {
        name: args.name,
        mode,
        timeout: args.timeout,
        conflict: args.conflict_exit_code,
        command: args.command,
    };
    let mut signals = Signals::install()
        .map_err(|e| Failure::new(exit::OSERR, format!("cannot catch signals: {e}")))?;
    // CMD's orphans become ours, so that we can tell when none of the job is left.
    group::become_subreaper();
    let grace = args.grace.unwrap_or(DEFAULT_GRACE);
    match place {
        Place::Store(AnyStore::Postgres(s)) => run_lease(s, &plan, ttl, grace, &mut signals).await,
        Place::Store(AnyStore::Redis(s)) => run_lease(s, &plan, ttl, grace, &mut signals).await,
        #[cfg(feature = "etcd")]
        Place::Store(AnyStore::Etcd(s)) => run_lease(s, &plan, ttl, grace, &mut signals).await,
        #[cfg(feature = "dynamodb")]
        Place::Store(AnyStore::Dynamo(s)) => run_lease(s, &plan, ttl, grace, &mut signals).await,
        Place::Dir(d) => run_file(&plan, Target::Dir(d), &mut signals).await,
        Place::Path(p) => run_file(&plan, Target::Path(p), &mut signals).await,
    }
}

enum Target {
    Dir(Option<PathBuf>),
    Path(PathBuf),
}

async fn run_file(plan: &Plan, target: Target, signals: &mut Signals) -> Result<u8, Failure> {
    let lock = Lock::new(&plan.name)
        .mode(plan.mode)
        .timeout_opt(plan.timeout);
    let lock = match &target {
        Target::Dir(None) => lock.file(),
        Target::Dir(Some(d)) => lock.dir(d),
        Target::Path(p) => lock.path(p),
    };
    let dir = match &target {
        Target::Dir(d) => Some(d.clone().map(LockDir::new).unwrap_or_default()),
        Target::Path(_) => None,
    };
    let name = plan.name.clone();
    let probe = move || {
        let dir = dir.clone();
        let name = name.clone();
        async move {
            let Some(dir) = dir else { return Vec::new() };
            let found = tokio::task::spawn_blocking(move || dir.holder(&name)).await;
            found.ok().flatten().map(file_view).into_iter().collect()
        }
    };
    let guard = wait(plan, lock.acquire(), probe, signals).await?;
    let env = [(ENV_LOCK, plan.name.clone())];
    let how = Spawn {
        env: &env,
        unset: &[ENV_FENCE],
        inherit: guard.lock_file_fd().map(|fd| fd.as_raw_fd()),
        guardian: None,
    };
    let mut job = match child::spawn(&plan.command, &how) {
        Ok(job) => job,
        Err(f) => {
            if let Err(e) = guard.release() {
                crate::say(format!("lock-core: warning: releasing the lock: {e}")).await;
            }
            return Err(f);
        }
    };
    // CMD's tree shares our open lock file, and with it the OS lock (as with flock(1)):
    // it stays held while any of them runs, even if we are killed. The lock file names
    // CMD's group as the heirs, so listings and `Busy` still name a live holder then.
    guard.record_heirs(job.pgid.unsigned_abs());
    let never: Lost = Box::pin(std::future::pending());
    let code =
        match child::supervise(&mut job, signals, never, DEFAULT_GRACE, Until::CmdExits).await {
            Ok(End::Exited(code)) => Ok(code),
            Ok(End::Stopped(why)) => Err(Failure::new(exit::SOFTWARE, why)),
            Err(f) => Err(f),
        };
    // Never unlock explicitly: that would unlock it under whatever CMD left running.
    // The lock goes when the last process that has the file open — we, at exit, or the
    // last of CMD's tree — closes it.
    std::mem::forget(guard);
    code
}

async fn run_lease<S: LeaseStore>(
    store: S,
    plan: &Plan,
    ttl: Duration,
    grace: Duration,
    signals: &mut Signals,
) -> Result<u8, Failure> {
    // A timed wait is cut short here rather than by the library, so that it ends the way
    // a cancelled one does: see `settle`. `0` (try once, never queued) stays the library's.
    let once = plan.timeout.filter(|t| t.is_zero());
    let opts = LeaseOptions::new()
        .ttl(ttl)
        .timeout_opt(once)
        .mode(plan.mode);
    let probe = {
        let store = store.clone();
        let name = plan.name.clone();
        move || {
            let store = store.clone();
            let name = name.clone();
            async move {
                let leases = store.leases_of(&name).await.unwrap_or_default();
                leases.iter().map(lease_view).collect()
            }
        }
    };
    let acquire = async {
        let limit = plan.timeout.filter(|t| !t.is_zero());
        let Some(limit) = limit else {
            return lease::acquire(&store, &plan.name, opts).await;
        };
        match tokio::time::timeout(limit, lease::acquire(&store, &plan.name, opts)).await {
            Ok(got) => got,
            Err(_) => Err(timed_out(&store, &plan.name, limit).await),
        }
    };
    let guard = match wait(plan, acquire, probe, signals).await {
        Ok(g) => g,
        Err(f) => {
            settle(&plan.name).await;
            return Err(f);
        }
    };
    let env = [
        (ENV_LOCK, plan.name.clone()),
        (ENV_FENCE, guard.fence().to_string()),
    ];
    // If we die, the guardian stops CMD's group while the last renewal still covers the
    // lease: within a third of its TTL.
    let outcome = match Guardian::start(grace.min(ttl / 3)) {
        Ok(mut guardian) => {
            let how = Spawn {
                env: &env,
                unset: &[],
                inherit: None,
                guardian: guardian.group_fd(),
            };
            let spawned = child::spawn(&plan.command, &how);
            guardian.spawned();
            let outcome = match spawned {
                Ok(mut job) => {
                    let lost = Box::pin(guard.lost());
                    child::supervise(&mut job, signals, lost, grace, Until::GroupEmpty).await
                }
                Err(f) => Err(f),
            };
            guardian.dismiss();
            outcome
        }
        Err(e) => Err(Failure::new(
            exit::OSERR,
            format!("cannot start the job's guardian process: {e}"),
        )),
    };
    // Always give the lease back before returning: the runtime is shut down right after,
    // and a release left to the guard's drop would not run.
    let released = guard.release().await;
    match outcome {
        Ok(End::Exited(code)) => {
            if let Err(e) = released {
                crate::say(format!("lock-core: warning: releasing the lease: {e}")).await;
            }
            Ok(code)
        }
        Ok(End::Stopped(why)) => Err(Failure::new(exit::LEASE_LOST, why)),
        Err(f) => Err(f),
    }
}

/// After a lease wait ended without a lease (timed out, interrupted): lets the library's
/// clean-up finish before the process exits. A cancelled wait leaves the store's queue
/// (and gives back a lease granted too late) in a background task, which the runtime's
/// shutdown would cut short; left behind, the queue entry could hold up other waiters
/// until it expires. That task keeps the name's in-process lock until it is done, so
/// taking that lock here (bounded) waits exactly for it.
async fn settle(name: &str) {
    let barrier = Lock::new(name)
        .timeout(Duration::from_secs(2))
        .acquire()
        .await;
    drop(barrier);
}

/// The `Timeout` error of a lease wait cut short after `waited`, naming a holder the
/// store lists (if it answers quickly).
async fn timed_out<S: LeaseStore>(store: &S, name: &str, waited: Duration) -> LockError {
    let listed = tokio::time::timeout(Duration::from_millis(250), store.leases_of(name)).await;
    let holder = listed.ok().and_then(Result::ok).and_then(|leases| {
        let first = leases.first()?;
        let (pid, host) = store::owner_parts(&first.owner);
        let mut h = lock_core::Holder::new();
        h.pid = pid;
        h.host = host;
        h.detail = Some(format!(
            "lease owner {:?} in {}",
            first.owner,
            store.describe()
        ));
        Some(Box::new(h))
    });
    LockError::Timeout {
        name: name.to_owned(),
        waited,
        holder,
    }
}

/// Waits for `acquire`, showing the live line on a terminal; a caught signal ends the
/// wait (exit 128 + N).
async fn wait<T, F, Fut>(
    plan: &Plan,
    acquire: impl Future<Output = Result<T, LockError>>,
    probe: F,
    signals: &mut Signals,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<HolderView>>,
{
    let line = WaitLine::for_stderr();
    let outcome = tokio::select! {
        got = acquire => Ok(got),
        caught = signals.recv() => Err(caught),
        never = animate(&line, &plan.name, probe) => match never {},
    };
    line.clear().await;
    match outcome {
        Ok(Ok(guard)) => Ok(guard),
        Ok(Err(e)) => Err(Failure::lock(&e, plan.conflict)),
        Err(caught) => Err(Failure::new(
            exit::SIGNAL_BASE.saturating_add(u8::try_from(caught.signo).unwrap_or(127)),
            format!(
                "{} while waiting for `{}`: gave up",
                signals::name(caught.signo),
                plan.name
            ),
        )),
    }
}

async fn animate<F, Fut>(line: &WaitLine, name: &str, probe: F) -> Infallible
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<HolderView>>,
{
    line.animate(name, probe).await;
    std::future::pending().await
}

fn file_view(h: lock_core::Holder) -> HolderView {
    HolderView {
        pid: h.pid,
        host: h.host,
        held_for: h
            .since
            .and_then(|s| SystemTime::now().duration_since(s).ok()),
        expires_in: None,
    }
}

fn lease_view(l: &LeaseInfo) -> HolderView {
    let (pid, host) = store::owner_parts(&l.owner);
    HolderView {
        pid,
        host,
        held_for: None,
        expires_in: Some(l.expires_in),
    }
}
