//! Taking leases: one acquire pipeline for one name or several, every shape.
//!
//! The in-process locks of the names are taken first (same mode), so that callers in
//! one process queue locally and only one at a time asks the store for a name. Then
//! rounds: each round asks the store for every name in sorted order and, if one is
//! refused, gives back those it got (a waiting set holds nothing), then waits for a
//! wake-up from the store, the refused lease's expiry or a back-off, whichever is first.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::guard::{self, LeaseGuard};
use super::set::LeaseSet;
use super::store::{Attempt, Lease, LeaseStore, Request};
use super::util::{self, Backoff};
use super::{LeaseOptions, MIN_TTL};
use crate::mode::{Kind, Mode};
use crate::registry::EntryRef;
use crate::site::Site;
use crate::trace::{self, Backend};
use crate::{LockError, LockGuard};

/// How long a failed acquisition may spend asking the store who holds the lease.
const HOLDER_LOOKUP: Duration = Duration::from_millis(250);

/// The longest pause between attempts while the store promises wake-ups (the back-off
/// is only a safety net then) and while it does not.
const REST_WITH_WAKEUPS: Duration = Duration::from_millis(500);
const REST_POLLING: Duration = Duration::from_millis(50);

/// Takes a lease on `name` from `store` in the options' mode, waiting (woken by the
/// store, bounded by the options' timeout) while it is held in a conflicting way.
///
/// The in-process lock of the same name is taken first, so concurrent callers in one
/// process queue locally (FIFO) and only one at a time asks the store. A call chain that
/// already holds `name` is refused with `Busy { reentrant: true }`.
///
/// Cancel-safe: if the future is dropped while a request is in flight, a background
/// task waits for the answer and gives back a lease granted too late, and the waiter
/// leaves the store's queue.
///
/// Needs a Tokio runtime with its I/O and time drivers enabled (as `#[tokio::main]` and
/// `#[tokio::test]` set up): the watchdog and the release-on-drop run on it.
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn demo() -> Result<(), lock_core::LockError> {
/// use std::time::Duration;
/// use lock_core::lease::{self, LeaseOptions, postgres::PostgresStore};
///
/// let store = PostgresStore::new("postgres://app@127.0.0.1/app")?;
/// let opts = LeaseOptions::new().ttl(Duration::from_secs(5)).timeout(Duration::from_secs(1));
/// match lease::acquire(&store, "reindex", opts).await {
///     Ok(guard) => println!("got fence {}", guard.fence()),
///     Err(e) if e.is_contention() => println!("busy: {e}"),
///     Err(e) => return Err(e),
/// }
/// // A shared lease: many readers at once, never beside a writer.
/// let reader = lease::acquire(&store, "catalog", LeaseOptions::new().shared()).await?;
/// # drop(reader);
/// # Ok(()) }
/// ```
pub async fn acquire<S: LeaseStore>(
    store: &S,
    name: &str,
    opts: LeaseOptions,
) -> Result<LeaseGuard, LockError> {
    crate::validate_name(name)?;
    let entry = EntryRef::Counted(crate::registry::get(name));
    let mut guards = run(store, vec![entry], opts, Site::Unknown, true).await?;
    guards.pop().ok_or_else(|| unreachable_empty(name))
}

/// Takes leases on every name in `names` from `store`, all or nothing, in the options'
/// mode; each has its own fence. Names are sorted (and duplicates dropped) first, so
/// two callers asking for overlapping sets cannot deadlock; while one name is held
/// elsewhere the call holds none of the others.
///
/// ```no_run
/// # #[cfg(feature = "redis")]
/// # async fn demo() -> Result<(), lock_core::LockError> {
/// use lock_core::lease::{self, LeaseOptions, redis::RedisStore};
///
/// let store = RedisStore::new("redis://127.0.0.1:6379")?;
/// let both = lease::acquire_many(&store, ["account-7", "account-3"], LeaseOptions::new()).await?;
/// assert_eq!(both.names().collect::<Vec<_>>(), ["account-3", "account-7"]);
/// let fence_7 = both.get("account-7").map(|g| g.fence());
/// # let _ = fence_7;
/// both.release().await?;
/// # Ok(()) }
/// ```
pub async fn acquire_many<S, I>(
    store: &S,
    names: I,
    opts: LeaseOptions,
) -> Result<LeaseSet, LockError>
where
    S: LeaseStore,
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut names: Vec<String> = names.into_iter().map(|n| n.as_ref().to_owned()).collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return Err(LockError::Invalid {
            name: String::new(),
            reason: "`acquire_many` needs at least one name".into(),
        });
    }
    let mut entries = Vec::with_capacity(names.len());
    for n in &names {
        crate::validate_name(n)?;
        entries.push(EntryRef::Counted(crate::registry::get(n)));
    }
    run(store, entries, opts, Site::Unknown, true)
        .await
        .map(LeaseSet::new)
}

/// `#[locked(store = ..)]`: one lease, or a set for `name = [..]`, on the names the
/// generated code resolved (`entries`), with the attribute's options.
pub(crate) async fn acquire_for_macro<S: LeaseStore>(
    store: &S,
    entries: Vec<EntryRef>,
    opts: LeaseOptions,
    site: &'static crate::site::FnSite,
) -> Result<Vec<LeaseGuard>, LockError> {
    run(store, entries, opts, Site::Fn(site), false).await
}

fn unreachable_empty(name: &str) -> LockError {
    LockError::AcquireFailed {
        name: name.to_owned(),
        reason: "internal error: no lease returned".into(),
    }
}

/// What one round of requests came to.
enum Round {
    /// Every name granted: the leases, with the instant each request was sent.
    All(Vec<(Lease, Instant)>),
    /// Name number `at` is held in a conflicting way (the others given back).
    Held {
        at: usize,
        holder: Option<String>,
        retry_in: Option<Duration>,
    },
    /// Name number `at` is in use as another kind of lock.
    Mismatch { at: usize, kind: Kind },
}

/// The fixed parameters of one acquisition.
struct Plan {
    names: Vec<Arc<str>>,
    owner: Arc<str>,
    ttl: Duration,
    mode: Mode,
}

async fn run<S: LeaseStore>(
    store: &S,
    entries: Vec<EntryRef>,
    opts: LeaseOptions,
    site: Site,
    hand: bool,
) -> Result<Vec<LeaseGuard>, LockError> {
    let start = Instant::now();
    let names: Vec<Arc<str>> = entries.iter().map(|e| Arc::from(e.name())).collect();
    let first = names.first().map(|n| n.to_string()).unwrap_or_default();
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| LockError::AcquireFailed {
        name: first.clone(),
        reason: "lease stores need a Tokio runtime (with the time driver)".into(),
    })?;
    let mode = opts.mode;
    if let Some(problem) = mode.problem() {
        return Err(LockError::Invalid {
            name: first,
            reason: problem,
        });
    }
    let ttl = opts.ttl.unwrap_or_else(|| store.default_ttl());
    if ttl < MIN_TTL {
        return Err(LockError::AcquireFailed {
            name: first,
            reason: format!(
                "a lease TTL must be at least {} ms, got {:?}",
                MIN_TTL.as_millis(),
                ttl
            ),
        });
    }
    let margin = opts.margin.unwrap_or(ttl / 10).min(ttl / 2);
    let deadline = opts.timeout.and_then(|t| start.checked_add(t));
    let try_once = opts.timeout == Some(Duration::ZERO);

    // In-process first, in sorted order; on failure those taken drop here.
    let mut locals = Vec::with_capacity(entries.len());
    for entry in entries {
        let left = if try_once {
            Some(Duration::ZERO)
        } else {
            deadline.map(|d| d.saturating_duration_since(Instant::now()))
        };
        locals.push(crate::local::lock(entry, mode, left, site, hand).await?);
    }

    let plan = Arc::new(Plan {
        names,
        owner: Arc::from(util::owner_id()),
        ttl,
        mode,
    });
    let mut pending = Pending {
        store: store.clone(),
        plan: plan.clone(),
        locals,
        task: None,
        queued: None,
        runtime: runtime.clone(),
    };
    let rest = if store.wakes_waiters() {
        REST_WITH_WAKEUPS
    } else {
        REST_POLLING
    };
    let mut backoff = Backoff::new(
        opts.retry_min.unwrap_or(Duration::from_millis(2)),
        opts.retry_max.unwrap_or(rest).min(ttl / 2),
    );
    let mut waiting = false;
    let mut slow_at = trace::slow_waits_wanted().then(|| start + trace::slow_wait_threshold());
    let mut blocker = 0usize;
    loop {
        // Listen before asking, so that a release between the answer and the wait is
        // not missed (the future registers on its first poll).
        let far = Instant::now() + ttl;
        let mut change = pin!(store.wait_for_change(&plan.names[blocker], far));
        // A future done on its first poll (a change raced in right after it registered,
        // or a store that never waits) must not be polled again: the attempt below sees
        // that change anyway, so only the pause is left to wait for.
        let early = poll_once(change.as_mut());

        let queue = !try_once;
        pending.task = Some(runtime.spawn(round(store.clone(), plan.clone(), queue)));
        let answer = pending.wait().await?;
        let (at, holder, retry_in) = match answer {
            Round::All(leases) => {
                pending.queued = None;
                if waiting {
                    trace::acquired_after_wait(
                        &plan.names[0],
                        mode,
                        Backend::Lease,
                        start.elapsed(),
                    );
                }
                let locals = std::mem::take(&mut pending.locals);
                return Ok(leases
                    .into_iter()
                    .zip(locals)
                    .zip(plan.names.iter())
                    .map(|(((lease, sent), local), name)| {
                        guard::start(
                            store,
                            name.clone(),
                            lease,
                            mode,
                            ttl,
                            margin,
                            sent,
                            Some(local),
                            runtime.clone(),
                        )
                    })
                    .collect());
            }
            Round::Mismatch { at, kind } => {
                pending.leave_now().await;
                return Err(LockError::Mismatch {
                    name: plan.names[at].to_string(),
                    kind,
                    asked: mode,
                    holder: None,
                });
            }
            Round::Held {
                at,
                holder,
                retry_in,
            } => (at, holder, retry_in),
        };
        if queue && pending.queued != Some(at) {
            // Another name holds the set up now: stand in its queue only.
            pending.leave_queue();
            pending.queued = Some(at);
        }
        blocker = at;
        let name = &plan.names[at];
        let now = Instant::now();
        let give_up = try_once || deadline.is_some_and(|d| now >= d);
        let as_holder = |h: &Option<String>| {
            h.as_ref()
                .map(|h| Box::new(util::holder_from_owner(h, &store.describe())))
        };
        if !waiting && !give_up {
            waiting = true;
            trace::wait_started(name, mode, Backend::Lease, || as_holder(&holder));
        }
        if slow_at.is_some_and(|at| now >= at) {
            slow_at = None;
            trace::slow_wait(
                name,
                mode,
                Backend::Lease,
                start.elapsed(),
                as_holder(&holder).as_deref(),
            );
        }
        if !give_up {
            let mut pause = backoff.next();
            if let Some(r) = retry_in {
                // Just after the holder's lease would run out.
                pause = pause.min(r + Duration::from_millis(1));
            }
            if let Some(d) = deadline {
                pause = pause.min(d.saturating_duration_since(now));
            }
            if early {
                tokio::time::sleep(pause).await;
            } else {
                race(change, tokio::time::sleep(pause)).await;
            }
            continue;
        }
        pending.leave_now().await;
        let holder = match holder {
            Some(h) => Some(h),
            None => tokio::time::timeout(HOLDER_LOOKUP, store.holder(name))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten(),
        };
        let holder = holder.map(|h| Box::new(util::holder_from_owner(&h, &store.describe())));
        if try_once {
            return Err(LockError::Busy {
                name: name.to_string(),
                holder,
                reentrant: false,
                reason: None,
            });
        }
        return Err(LockError::Timeout {
            name: name.to_string(),
            waited: start.elapsed(),
            holder,
        });
    }
}

/// One round: every name in order; on a refusal, the leases of this round go back.
async fn round<S: LeaseStore>(store: S, plan: Arc<Plan>, queue: bool) -> Result<Round, LockError> {
    if plan.names.len() > 1 {
        // A store with transactions takes the whole set in one step.
        let reqs: Vec<Request<'_>> = plan
            .names
            .iter()
            .map(|name| {
                Request::exclusive(name, &plan.owner, plan.ttl)
                    .with_mode(plan.mode)
                    .queued(queue)
            })
            .collect();
        let sent = Instant::now();
        if let Some(answer) = store.try_acquire_all(&reqs).await {
            return Ok(match answer? {
                Ok(leases) => Round::All(leases.into_iter().map(|l| (l, sent)).collect()),
                Err((at, Attempt::Mismatch { kind })) => Round::Mismatch { at, kind },
                Err((at, Attempt::Held { holder, retry_in })) => Round::Held {
                    at,
                    holder,
                    retry_in,
                },
                Err((at, Attempt::Acquired(_))) => Round::Held {
                    at,
                    holder: None,
                    retry_in: None,
                },
            });
        }
    }
    let mut got: Vec<(Lease, Instant)> = Vec::with_capacity(plan.names.len());
    for (at, name) in plan.names.iter().enumerate() {
        let req = Request::exclusive(name, &plan.owner, plan.ttl)
            .with_mode(plan.mode)
            .queued(queue);
        let sent = Instant::now();
        let answer = store.try_acquire(&req).await;
        let refused = match answer {
            Ok(Attempt::Acquired(lease)) => {
                got.push((lease, sent));
                continue;
            }
            Ok(Attempt::Held { holder, retry_in }) => Ok(Round::Held {
                at,
                holder,
                retry_in,
            }),
            Ok(Attempt::Mismatch { kind }) => Ok(Round::Mismatch { at, kind }),
            Err(e) => Err(e),
        };
        give_back(&store, &plan, got).await;
        return refused;
    }
    Ok(Round::All(got))
}

/// Releases the leases a round got before one of its names was refused.
async fn give_back<S: LeaseStore>(store: &S, plan: &Plan, got: Vec<(Lease, Instant)>) {
    for (i, (lease, _)) in got.into_iter().enumerate().rev() {
        let _ = store.release(&plan.names[i], &lease).await;
    }
}

/// Polls a future once with a waker that does nothing: lets it register its interest.
/// True if it completed (it must then not be polled again).
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    fut.poll(&mut cx).is_ready()
}

/// Completes when either future does.
async fn race<A: Future, B: Future>(a: std::pin::Pin<&mut A>, b: B) {
    let mut a = a;
    let mut b = pin!(b);
    std::future::poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

/// The state of an acquisition in progress; its `Drop` cleans up after cancellation.
struct Pending<S: LeaseStore> {
    store: S,
    plan: Arc<Plan>,
    locals: Vec<LockGuard>,
    task: Option<JoinHandle<Result<Round, LockError>>>,
    /// The name whose queue this acquisition stands in, if any.
    queued: Option<usize>,
    runtime: tokio::runtime::Handle,
}

impl<S: LeaseStore> Pending<S> {
    async fn wait(&mut self) -> Result<Round, LockError> {
        let joined = match self.task.as_mut() {
            Some(task) => task.await,
            None => {
                return Ok(Round::Held {
                    at: 0,
                    holder: None,
                    retry_in: None,
                })
            }
        };
        // Only now: if this future is dropped while awaiting, `Drop` sees the task.
        self.task = None;
        match joined {
            Ok(r) => r,
            Err(e) => {
                self.leave_queue();
                Err(LockError::AcquireFailed {
                    name: self.plan.names[0].to_string(),
                    reason: format!("the store request task failed: {e}"),
                })
            }
        }
    }

    /// Leaves the store's queue before the caller hears it gave up (so a process that
    /// exits right after a timeout leaves no place behind), waiting a bounded time; the
    /// request goes on in the background if that is not enough or this is cancelled.
    async fn leave_now(&mut self) {
        if let Some(at) = self.queued.take() {
            let (store, plan) = (self.store.clone(), self.plan.clone());
            let task = self.runtime.spawn(async move {
                let _ = store.leave(&plan.names[at], &plan.owner).await;
            });
            let _ = tokio::time::timeout(HOLDER_LOOKUP, task).await;
        }
    }

    /// Leaves the store's queue in the background (the set now waits for another name).
    fn leave_queue(&mut self) {
        if let Some(at) = self.queued.take() {
            let (store, plan) = (self.store.clone(), self.plan.clone());
            drop(self.runtime.spawn(async move {
                let _ = store.leave(&plan.names[at], &plan.owner).await;
            }));
        }
    }
}

impl<S: LeaseStore> Drop for Pending<S> {
    fn drop(&mut self) {
        let task = self.task.take();
        let queued = self.queued.take();
        if task.is_none() && queued.is_none() {
            return;
        }
        // Cancelled with a request in flight or a place in a queue: the store may grant
        // the leases after all. Wait for the answer in the background, give such leases
        // back at once and leave the queue.
        let (store, plan) = (self.store.clone(), self.plan.clone());
        let locals = std::mem::take(&mut self.locals);
        // From now on the in-process locks belong to the cleanup task, not to the caller
        // (who may ask for the names again at once and must queue, not be refused).
        for l in &locals {
            l.disown();
        }
        drop(self.runtime.spawn(async move {
            let mut leave = queued;
            if let Some(task) = task {
                match task.await {
                    Ok(Ok(Round::All(leases))) => give_back(&store, &plan, leases).await,
                    Ok(Ok(Round::Held { at, .. })) => leave = Some(at),
                    _ => {}
                }
            }
            if let Some(at) = leave {
                let _ = store.leave(&plan.names[at], &plan.owner).await;
            }
            drop(locals);
        }));
    }
}
