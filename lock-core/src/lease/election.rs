//! Leader election on a lease: one leader at a time per name, with a fence.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::{acquire, util, LeaseGuard, LeaseOptions, LeaseStore};
use crate::mode::Mode;
use crate::LockError;

/// An election for the lead of one name in a store: [`campaign`](Self::campaign) waits
/// until this process leads, [`leader`](Self::leader) says who leads now without
/// campaigning.
///
/// Leading is holding the name's exclusive lease: the lead is renewed in the background
/// (every TTL/3) and lost if renewals fail for a TTL, so a leader that dies or stalls is
/// replaced within about one TTL; the new leader's fence is higher, which is how the
/// resources a leader writes to tell a deposed leader's late writes apart.
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn demo() -> Result<(), lock_core::LockError> {
/// use std::time::Duration;
/// use lock_core::lease::{Election, LeaseOptions, postgres::PostgresStore};
///
/// let store = PostgresStore::new("postgres://app@127.0.0.1/app")?;
/// let election = Election::new(store, "scheduler")
///     .with_options(LeaseOptions::new().ttl(Duration::from_secs(5)));
///
/// if let Some(now) = election.leader().await? {
///     println!("{} leads with fence {}", now.owner, now.fence);
/// }
/// let lead = election.campaign().await?; // waits until we lead
/// tokio::select! {
///     lost = lead.lost() => eprintln!("deposed: {lost}"),
///     _ = async {
///         loop {
///             // ... leader work, writing with `lead.fence()` ...
///             # break;
///         }
///     } => {}
/// }
/// lead.resign().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Election<S: LeaseStore> {
    store: S,
    name: String,
    opts: LeaseOptions,
}

impl<S: LeaseStore> Election<S> {
    /// An election for `name` in `store` (the name follows the lock name rules).
    pub fn new(store: S, name: impl Into<String>) -> Self {
        Election {
            store,
            name: name.into(),
            opts: LeaseOptions::new(),
        }
    }

    /// The lease options (TTL, how long a campaign waits, margin); the mode is always
    /// exclusive.
    pub fn with_options(mut self, opts: LeaseOptions) -> Self {
        self.opts = opts.mode(Mode::Exclusive);
        self
    }

    /// The name campaigned for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until this caller leads (or the options' timeout passes:
    /// [`LockError::Timeout`]), then leads until the returned [`Leadership`] is
    /// dropped or resigned, or the lead is lost.
    pub async fn campaign(&self) -> Result<Leadership, LockError> {
        let guard = acquire(&self.store, &self.name, self.opts.mode(Mode::Exclusive)).await?;
        Ok(Leadership { guard })
    }

    /// Leads if nobody does right now; `None` if someone else leads.
    pub async fn try_campaign(&self) -> Result<Option<Leadership>, LockError> {
        let opts = self.opts.mode(Mode::Exclusive).timeout(Duration::ZERO);
        match acquire(&self.store, &self.name, opts).await {
            Ok(guard) => Ok(Some(Leadership { guard })),
            Err(LockError::Busy {
                reentrant: false, ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Who leads now, if anyone (asks the store; needs
    /// [`LeaseStore::leases_of`]).
    pub async fn leader(&self) -> Result<Option<Leader>, LockError> {
        let live = self.store.leases_of(&self.name).await?;
        let describe = self.store.describe();
        Ok(live.into_iter().max_by_key(|l| l.fence).map(|l| {
            let who = util::holder_from_owner(&l.owner, &describe);
            Leader {
                host: who.host,
                pid: who.pid,
                owner: l.owner,
                fence: l.fence,
                expires_in: l.expires_in,
            }
        }))
    }
}

impl<S: LeaseStore> fmt::Debug for Election<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.name)
            .field("store", &self.store.describe())
            .finish()
    }
}

/// Who leads an election right now, as [`Election::leader`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The leader's owner string (`host/pid/nonce/n` for lock-core's own).
    pub owner: String,
    /// The leader's fence.
    pub fence: u64,
    /// How long the lead stays valid unless renewed.
    pub expires_in: Duration,
    /// The leader's host, read from the owner string.
    pub host: Option<String>,
    /// The leader's process id, read from the owner string.
    pub pid: Option<u32>,
}

/// This caller's lead in an [`Election`]; given up when dropped (or [`resign`](Self::resign)ed).
#[must_use = "the lead is given up as soon as this is dropped"]
#[derive(Debug)]
pub struct Leadership {
    guard: LeaseGuard,
}

impl Leadership {
    /// The fence of this lead: higher than every earlier leader's.
    pub fn fence(&self) -> u64 {
        self.guard.fence()
    }

    /// Whether this caller certainly still leads (not found lost, and the lease
    /// certainly not expired).
    pub fn is_leader(&self) -> bool {
        !self.guard.is_lost() && self.guard.remaining().is_some()
    }

    /// The fence if this caller certainly still leads, else [`LockError::Lost`].
    pub fn check(&self) -> Result<u64, LockError> {
        self.guard.check()
    }

    /// Completes with [`LockError::Lost`] when the lead is found lost (see
    /// [`LeaseGuard::lost`]).
    pub fn lost(&self) -> impl Future<Output = LockError> + Send + 'static {
        self.guard.lost()
    }

    /// The lease behind the lead.
    pub fn guard(&self) -> &LeaseGuard {
        &self.guard
    }

    /// Gives up the lead now (the next campaigner takes over at once).
    pub async fn resign(self) -> Result<(), LockError> {
        self.guard.release().await
    }
}
