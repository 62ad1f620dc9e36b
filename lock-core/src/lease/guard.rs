//! A held lease: the guard, what it shares with its watchdog, and the watchdog.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Lease, LeaseStore};
use crate::mode::Mode;
use crate::{LockError, LockGuard};

/// Shared between the guard and its watchdog.
pub(crate) struct Shared {
    base: Instant,
    /// Nanoseconds after `base` until which the lease is certainly held.
    valid_until: AtomicU64,
    lost: watch::Sender<Option<Arc<str>>>,
}

impl Shared {
    fn set_valid_until(&self, t: Instant) {
        let n = t.saturating_duration_since(self.base).as_nanos();
        self.valid_until
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Release);
    }

    fn valid_until(&self) -> Instant {
        let n = self.valid_until.load(Ordering::Acquire);
        self.base
            .checked_add(Duration::from_nanos(n))
            .unwrap_or(self.base)
    }

    fn mark_lost(&self, reason: String) {
        self.lost.send_if_modified(|v| {
            if v.is_some() {
                return false;
            }
            *v = Some(reason.into());
            true
        });
    }

    fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    fn remaining(&self) -> Option<Duration> {
        if self.is_lost() {
            return None;
        }
        let left = self.valid_until().saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

type ReleaseFuture = Pin<Box<dyn Future<Output = Result<bool, LockError>> + Send>>;
type Releaser = Box<dyn FnOnce() -> ReleaseFuture + Send + Sync>;

/// A held lease. Renewed in the background while it lives; released when dropped.
///
/// Dropping the guard never blocks: it stops the watchdog and hands the release to a
/// background task (the in-process lock of the name is given back once the store has
/// answered). Use [`release`](Self::release) to learn whether the release worked.
///
/// ```no_run
/// # #[cfg(feature = "redis")]
/// # async fn demo() -> Result<(), lock_core::LockError> {
/// use lock_core::lease::{self, LeaseOptions, redis::RedisStore};
///
/// let store = RedisStore::new("redis://127.0.0.1:6379")?;
/// let guard = lease::acquire(&store, "nightly-report", LeaseOptions::new()).await?;
/// tokio::select! {
///     lost = guard.lost() => return Err(lost),      // stop at once: someone else may run
///     _ = async { /* the work, writing with guard.fence() */ } => {}
/// }
/// guard.release().await
/// # }
/// ```
#[must_use = "the lease is released as soon as the guard is dropped"]
pub struct LeaseGuard {
    name: Arc<str>,
    lease: Lease,
    mode: Mode,
    ttl: Duration,
    store: String,
    acquired_at: Instant,
    shared: Arc<Shared>,
    watchdog: Option<JoinHandle<()>>,
    releaser: Option<Releaser>,
    local: Option<LockGuard>,
    runtime: tokio::runtime::Handle,
}

impl LeaseGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mode the lease is held in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The fencing token of this lease: strictly greater than that of every earlier
    /// holder of the name. Send it with every write to the protected resource, which must
    /// refuse tokens lower than the highest it has seen (see the [module docs](super)).
    pub fn fence(&self) -> u64 {
        self.lease.fence
    }

    /// The owner string this lease was granted to (host, pid and a unique suffix).
    pub fn owner(&self) -> &str {
        &self.lease.owner
    }

    /// The lease's time to live; it is renewed every TTL/3.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The store the lease lives in (kind and address).
    pub fn store(&self) -> &str {
        &self.store
    }

    /// How long the lease has been held.
    pub fn held_for(&self) -> Duration {
        self.acquired_at.elapsed()
    }

    /// How long the lease is certainly still held, or `None` once it may have expired
    /// (or was found lost): stop mutating then.
    ///
    /// Measured from a local instant taken *before* the request that acquired (or last
    /// renewed) the lease, minus the safety margin, so it errs on the early side.
    pub fn remaining(&self) -> Option<Duration> {
        self.shared.remaining()
    }

    /// True once the watchdog found the lease gone (refused or failed renewal, or a
    /// renewal too late to be sure).
    pub fn is_lost(&self) -> bool {
        self.shared.is_lost()
    }

    /// The fencing token if the lease is certainly still held, else [`LockError::Lost`].
    pub fn check(&self) -> Result<u64, LockError> {
        if let Some(reason) = self.shared.lost.borrow().clone() {
            return Err(self.lost_error(&reason));
        }
        match self.remaining() {
            Some(_) => Ok(self.fence()),
            None => {
                Err(self.lost_error("the lease may have expired (no renewal confirmed in time)"))
            }
        }
    }

    fn lost_error(&self, reason: &str) -> LockError {
        LockError::Lost {
            name: self.name.to_string(),
            reason: format!(
                "{reason} (fence {}, store {})",
                self.lease.fence, self.store
            ),
        }
    }

    /// A future that completes with [`LockError::Lost`] when the lease is found lost.
    ///
    /// It does not borrow the guard, so a body can `select!` on it next to its work. It
    /// never completes while the lease is held, nor after the guard is gone.
    pub fn lost(&self) -> impl Future<Output = LockError> + Send + 'static {
        let mut rx = self.shared.lost.subscribe();
        let name = self.name.clone();
        let fence = self.lease.fence;
        let store = self.store.clone();
        async move {
            let reason = loop {
                if let Some(r) = rx.borrow_and_update().clone() {
                    break r;
                }
                if rx.changed().await.is_err() {
                    // The guard and its watchdog are gone without a loss.
                    std::future::pending::<()>().await;
                }
            };
            LockError::Lost {
                name: name.to_string(),
                reason: format!("{reason} (fence {fence}, store {store})"),
            }
        }
    }

    /// Runs `fut` as a call chain holding this lease's name, so that nested attempts
    /// to take the same name inside it are refused as re-entry instead of waiting.
    pub fn scope<F: Future>(&self, fut: F) -> crate::Scoped<F> {
        let mut held = crate::chain::HeldSet::default();
        self.push_held(&mut held);
        crate::Scoped::new(crate::chain::Frame::new(held), fut)
    }

    pub(crate) fn push_held(&self, set: &mut crate::chain::HeldSet) {
        if let Some(g) = &self.local {
            set.push(g.entry(), g.token());
        }
    }

    /// Releases the lease now and reports the outcome: `Ok` if the store gave it up,
    /// [`LockError::NotHeld`] if it had already expired or been taken over, or the
    /// store's error.
    ///
    /// Cancel-safe: if this future is dropped, the release still completes in the
    /// background.
    pub async fn release(mut self) -> Result<(), LockError> {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        let releaser = self.releaser.take();
        let local = self.local.take();
        if let Some(l) = &local {
            l.disown();
        }
        // In a task of its own, so that cancelling this future cannot stop a release
        // half-way (the in-process lock goes once the store has answered).
        let task = self.runtime.spawn(async move {
            let result = match releaser {
                Some(r) => r().await,
                None => Ok(true),
            };
            drop(local);
            result
        });
        let result = task.await.unwrap_or_else(|e| {
            Err(LockError::ReleaseFailed {
                name: self.name.to_string(),
                reason: format!("the release task failed: {e}"),
            })
        });
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(LockError::NotHeld {
                name: self.name.to_string(),
                reason: format!(
                    "the lease (fence {}) had expired or been taken over before release (store {})",
                    self.lease.fence, self.store
                ),
            }),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        if let Some(r) = self.releaser.take() {
            let local = self.local.take();
            // The in-process lock now belongs to the release task: the chain that dropped
            // the lease may queue for the name again (it waits for the release, FIFO).
            if let Some(l) = &local {
                l.disown();
            }
            // Never block here: the release runs on the runtime that acquired the lease;
            // if that runtime is gone, the lease simply expires after its TTL.
            drop(self.runtime.spawn(async move {
                let _ = r().await;
                drop(local);
            }));
        }
    }
}

impl fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("name", &self.name)
            .field("fence", &self.lease.fence)
            .field("owner", &self.lease.owner)
            .field("store", &self.store)
            .field("ttl", &self.ttl)
            .field("remaining", &self.remaining())
            .field("lost", &self.is_lost())
            .finish()
    }
}

/// A guard for a lease just granted (the request was `sent` at that instant), with its
/// watchdog started on `runtime`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start<S: LeaseStore>(
    store: &S,
    name: Arc<str>,
    lease: Lease,
    mode: Mode,
    ttl: Duration,
    margin: Duration,
    sent: Instant,
    local: Option<LockGuard>,
    runtime: tokio::runtime::Handle,
) -> LeaseGuard {
    let (lost, _) = watch::channel(None);
    let shared = Arc::new(Shared {
        base: sent,
        valid_until: AtomicU64::new(0),
        lost,
    });
    shared.set_valid_until(sent + (ttl - margin));
    let describe = store.describe();
    let watchdog = runtime.spawn(watchdog(
        store.clone(),
        name.clone(),
        lease.clone(),
        ttl,
        margin,
        sent,
        shared.clone(),
    ));
    let releaser: Releaser = {
        let store = store.clone();
        let name = name.clone();
        let lease = lease.clone();
        Box::new(move || Box::pin(async move { store.release(&name, &lease).await }))
    };
    LeaseGuard {
        name,
        lease,
        mode,
        ttl,
        store: describe,
        acquired_at: Instant::now(),
        shared,
        watchdog: Some(watchdog),
        releaser: Some(releaser),
        local,
        runtime,
    }
}

/// Renews the lease every TTL/3 until aborted (guard dropped) or the lease is lost.
///
/// A refused renewal marks the lease lost at once. A failed one (connection trouble) is
/// retried quickly — the stores reconnect — for as long as the lease is certainly still
/// valid; when that time runs out without a confirmed renewal, the lease is marked lost.
async fn watchdog<S: LeaseStore>(
    store: S,
    name: Arc<str>,
    lease: Lease,
    ttl: Duration,
    margin: Duration,
    acquired: Instant,
    shared: Arc<Shared>,
) {
    let period = ttl / 3;
    let retry = (ttl / 20).clamp(Duration::from_millis(1), Duration::from_millis(50));
    let mut next = acquired + period;
    let mut last_error: Option<String> = None;
    loop {
        tokio::time::sleep_until(next.into()).await;
        let valid_until = shared.valid_until();
        let sent = Instant::now();
        if sent >= valid_until {
            let why = match last_error {
                Some(e) => format!("renewal kept failing until the lease may have expired: {e}"),
                None => "renewal came too late (the process was paused or starved): \
                         the lease may have expired"
                    .to_owned(),
            };
            crate::trace::lease_lost(&name, &store.describe(), lease.fence, &why);
            shared.mark_lost(why);
            return;
        }
        let renewed =
            tokio::time::timeout(valid_until - sent, store.refresh(&name, &lease, ttl)).await;
        match renewed {
            Ok(Ok(true)) => {
                shared.set_valid_until(sent + (ttl - margin));
                last_error = None;
                next = sent + period;
            }
            Ok(Ok(false)) => {
                let why = "the store refused the renewal: the lease expired, was released or was taken over";
                crate::trace::lease_lost(&name, &store.describe(), lease.fence, why);
                shared.mark_lost(why.to_owned());
                return;
            }
            Ok(Err(e)) => {
                let text = e.to_string();
                crate::trace::lease_renewal_failed(&name, &store.describe(), lease.fence, &text);
                last_error = Some(text);
                next = Instant::now() + retry;
            }
            Err(_) => {
                let why = last_error.unwrap_or_else(|| "no answer from the store".to_owned());
                let why =
                    format!("renewal did not complete before the lease may have expired: {why}");
                crate::trace::lease_lost(&name, &store.describe(), lease.fence, &why);
                shared.mark_lost(why);
                return;
            }
        }
    }
}
