//! The DynamoDB lease store: the home of the `dynalock` algorithm.
//!
//! One item per name, in a table whose only key is the partition key `name` (a string).
//! The item holds the name's live holders (each with its own expiry and fence), its queue
//! of waiters, its kind, the last fence issued (a counter that only ever grows: release
//! removes a holder, never the item) and a change counter. Every change is a conditional
//! write:
//!
//! * **acquire** reads the item (a strongly consistent `GetItem`), decides in any shape
//!   (exclusive, shared, one of `N` permits, with the same queue and turn rule as the
//!   PostgreSQL and Redis stores: while one owner waits, another takes at most three turns
//!   in a row) and writes a grant with one `UpdateItem` (the holder's entry, the fence
//!   counter plus one, the kind; expired entries removed) on the condition that the fence
//!   counter is still the one it read (`PutItem` with `attribute_not_exists` for a new
//!   name). Every grant takes a fence, so the condition fails exactly when another grant
//!   came in between; releases, renewals and places in the queue never invalidate a
//!   grant. A lost race is read and decided again. Two grants can never get one fence.
//!   Within one process, acquires of one name take turns (so that many shared holders or
//!   a storm of cancelled waits do not keep invalidating each other's writes).
//!   A refused request takes its place in the queue with an `UpdateItem` of its own entry
//!   (so that a holder releasing and asking again cannot keep it out), remembering the
//!   fence counter it saw: the grants that passed it over are counted from there.
//! * **several names** ([`acquire_many`](super::acquire_many), `name = [..]`) are read
//!   and, when every one can be granted, written in one `TransactWriteItems` of such
//!   updates, each on its own fence condition: all or nothing, in one step.
//! * **refresh** and **release** are one `UpdateItem` each, on the condition that the
//!   holder's entry still carries this owner and fence and has not expired.
//! * **leave** (a waiter that gives up) is one `UpdateItem`.
//!
//! No path of acquire, refresh or release scans; only [`leases`](LeaseStore::leases)
//! (the listing, for `lock-core status`) does.
//!
//! # Round trips
//!
//! An acquisition that is granted at once costs 2 requests (read, conditional write), a
//! refresh or release 1. DynamoDB has no notifications, so a waiter polls: each attempt
//! is one read, plus a write when it joins the queue and about every TTL/4 to keep its
//! place there. Polls back off with jitter from 2 ms up to 50 ms (see
//! [`LeaseOptions::retry_backoff`](super::LeaseOptions::retry_backoff)), and never
//! later than just after the holder's lease would run out: about 6 reads in the first
//! 100 ms of a wait, then about 27 a second (waiting out a 10 s lease: some 270 reads).
//! A longer `max` in `retry_backoff` trades hand-off latency for fewer requests. See
//! `BENCHMARKS.md` for measurements.
//!
//! The turn rule counts a waiter from its first refused request on. Since a request is
//! a read and then a write, a request that finds the name free but loses it to a faster
//! one learns so only when its write lands; it then takes its place in the queue at once.
//!
//! # Clocks
//!
//! Expiries are written by the clock of the host that writes them (DynamoDB has no
//! server time to lend). A lease is safe while the clocks of the hosts sharing a table
//! agree to within the lease's safety margin ([`LeaseOptions::safety_margin`](super::LeaseOptions::safety_margin),
//! TTL/10 by default): the holder stops trusting its lease that much before anyone else
//! may take it over. Keep hosts on NTP (on AWS, the Amazon Time Sync Service).
//!
//! # The table
//!
//! Made on first use when it is absent (partition key `name` of type string, on-demand
//! billing), waiting until it is active. A table of another key shape is refused with a
//! clear error. Items are never deleted, since they keep the fence counters: one small
//! item per name ever used. Do not put a DynamoDB TTL on the table, and do not delete
//! items by hand: a deleted item starts its fences from 1 again, so a protected resource
//! that remembers the highest fence would refuse the new holders until it is reset too.
//!
//! # Configuration
//!
//! [`DynamoDbStore::new`] takes `dynamodb://TABLE` and loads AWS's standard
//! configuration on first use: the environment (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...,
//! `AWS_ENDPOINT_URL` for a local server), the shared config and credentials files
//! (`AWS_PROFILE`), web identity, ECS and EC2 instance credentials. The SDK is built
//! without its `sso` and `credentials-process` features (they cost build time); enable
//! them in your own dependency on `aws-config` if your profiles use them, or build the
//! client yourself and pass it to [`DynamoDbStore::from_client`]. Both crates are
//! re-exported ([`aws_config`], [`aws_sdk_dynamodb`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), lock_core::LockError> {
//! use lock_core::lease::{self, LeaseOptions, dynamodb::DynamoDbStore};
//!
//! let store = DynamoDbStore::new("dynamodb://app-locks")?;
//! let guard = lease::acquire(&store, "nightly-report", LeaseOptions::new()).await?;
//! // ... work, passing guard.fence() along with every write ...
//! guard.release().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use ::aws_config;
pub use ::aws_sdk_dynamodb;

use ::aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use ::aws_sdk_dynamodb::Client;
use tokio::sync::OnceCell;

use super::{Attempt, AttemptAll, Lease, LeaseInfo, LeaseStore, Request, DEFAULT_TTL};
use crate::LockError;

mod item;
mod state;
mod table;
mod write;

use item::{decode, now_ms, num, ttl_ms, K_NAME, K_VER, K_WAITERS};
use write::{attempt_of, lost_race};

use state::{mode_of, Decision, State, Waiter, Write};

/// How many times one acquire reads and writes again after losing a race.
const RACES: u32 = 16;

/// How long to wait for a table being made to become active.
const TABLE_WAIT: Duration = Duration::from_secs(60);

/// A lease store in one DynamoDB table. Cheap to clone (clones share the client and
/// its connections).
///
/// See the [module docs](self) for the layout, the cost in requests and the clocks.
#[derive(Clone)]
pub struct DynamoDbStore {
    inner: Arc<Inner>,
}

struct Inner {
    table: String,
    describe: String,
    client: OnceCell<Client>,
    /// Set once the table is known to exist with the right key; cleared when a request
    /// finds it gone (it is then made again).
    ready: AtomicBool,
    /// One acquire at a time per name in this process (see [`DynamoDbStore::gate`]).
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    default_ttl: Duration,
}

fn config_error(message: String) -> LockError {
    LockError::Store {
        name: String::new(),
        store: "dynamodb".to_owned(),
        message,
    }
}

/// Checks a DynamoDB table name: 3 to 255 of `A-Z a-z 0-9 _ - .`.
fn check_table(table: &str) -> Result<(), LockError> {
    let ok = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(config_error(format!(
            "invalid DynamoDB table name {:?}: use 3 to 255 ASCII letters, digits or `_ - .`",
            table.escape_default().to_string()
        )))
    }
}

impl DynamoDbStore {
    /// A store in the table that `url` names (`dynamodb://TABLE`), with AWS's standard
    /// configuration (environment, profiles, `AWS_ENDPOINT_URL`), loaded on first use.
    /// The table is made on first use if it does not exist.
    ///
    /// ```
    /// use lock_core::lease::dynamodb::DynamoDbStore;
    ///
    /// let store = DynamoDbStore::new("dynamodb://app-locks")?;
    /// assert_eq!(store.table(), "app-locks");
    /// assert!(DynamoDbStore::new("dynamodb://").is_err());
    /// assert!(DynamoDbStore::new("redis://127.0.0.1").is_err());
    /// # Ok::<(), lock_core::LockError>(())
    /// ```
    pub fn new(url: &str) -> Result<Self, LockError> {
        let rest = url
            .split_once("://")
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("dynamodb"))
            .map(|(_, rest)| rest)
            .ok_or_else(|| config_error("a DynamoDB store URL is `dynamodb://TABLE`".into()))?;
        let table = rest.strip_suffix('/').unwrap_or(rest);
        check_table(table)?;
        Ok(Self::with_cell(table, OnceCell::new()))
    }

    /// A store in `table`, using `client` as it is configured (region, credentials,
    /// endpoint, retries, timeouts). The table is made on first use if it does not exist.
    ///
    /// ```
    /// use lock_core::lease::dynamodb::{aws_sdk_dynamodb, DynamoDbStore};
    /// use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    ///
    /// // A local DynamoDB-compatible server, with fake credentials.
    /// let config = aws_sdk_dynamodb::Config::builder()
    ///     .behavior_version(BehaviorVersion::latest())
    ///     .endpoint_url("http://127.0.0.1:5005")
    ///     .region(Region::new("us-east-1"))
    ///     .credentials_provider(Credentials::new("test", "test", None, None, "static"))
    ///     .build();
    /// let client = aws_sdk_dynamodb::Client::from_conf(config);
    /// let store = DynamoDbStore::from_client(client, "app-locks")?;
    /// assert_eq!(store.table(), "app-locks");
    /// # Ok::<(), lock_core::LockError>(())
    /// ```
    pub fn from_client(client: Client, table: &str) -> Result<Self, LockError> {
        check_table(table)?;
        Ok(Self::with_cell(table, OnceCell::from(client)))
    }

    fn with_cell(table: &str, client: OnceCell<Client>) -> Self {
        DynamoDbStore {
            inner: Arc::new(Inner {
                table: table.to_owned(),
                describe: format!("dynamodb://{table}"),
                client,
                ready: AtomicBool::new(false),
                gates: Mutex::default(),
                default_ttl: DEFAULT_TTL,
            }),
        }
    }

    /// The same store with another TTL for leases whose caller chooses none (default
    /// 10 s). Call it before cloning: clones made earlier keep the old one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lock_core::lease::{dynamodb::DynamoDbStore, LeaseStore};
    ///
    /// let store = DynamoDbStore::new("dynamodb://app-locks")?.with_default_ttl(Duration::from_secs(30));
    /// assert_eq!(store.default_ttl(), Duration::from_secs(30));
    /// # Ok::<(), lock_core::LockError>(())
    /// ```
    pub fn with_default_ttl(self, ttl: Duration) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            table: shared.table.clone(),
            describe: shared.describe.clone(),
            client: shared
                .client
                .get()
                .cloned()
                .map(OnceCell::from)
                .unwrap_or_default(),
            ready: AtomicBool::new(false),
            gates: Mutex::default(),
            default_ttl: shared.default_ttl,
        });
        DynamoDbStore {
            inner: Arc::new(Inner {
                default_ttl: ttl,
                ..inner
            }),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// The client, made from AWS's standard configuration on first use (for stores from
    /// [`new`](Self::new)).
    pub async fn client(&self) -> &Client {
        self.inner
            .client
            .get_or_init(|| async {
                let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(3))
                            .operation_attempt_timeout(Duration::from_secs(5))
                            .operation_timeout(Duration::from_secs(15))
                            .build(),
                    )
                    .load()
                    .await;
                Client::new(&config)
            })
            .await
    }

    fn error<E, R>(&self, name: &str, what: &str, e: &SdkError<E, R>) -> LockError
    where
        E: std::error::Error + 'static,
        R: fmt::Debug,
    {
        self.message(name, &format!("{what}: {}", DisplayErrorContext(e)))
    }

    fn message(&self, name: &str, message: &str) -> LockError {
        LockError::Store {
            name: name.to_owned(),
            store: self.inner.describe.clone(),
            message: message.to_owned(),
        }
    }

    fn infos(name: &str, st: &State, now: i64) -> Vec<LeaseInfo> {
        let mut out: Vec<LeaseInfo> = st
            .live(now)
            .map(|h| {
                LeaseInfo::new(
                    name,
                    h.owner.clone(),
                    h.fence,
                    mode_of(h.mode, st.kind),
                    Duration::from_millis(u64::try_from(h.expires - now).unwrap_or(0)),
                )
            })
            .collect();
        out.sort_by_key(|l| l.fence);
        out
    }
}

impl fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DynamoDbStore")
            .field(&self.inner.describe)
            .finish()
    }
}

impl LeaseStore for DynamoDbStore {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn default_ttl(&self) -> Duration {
        self.inner.default_ttl
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
        let name = req.name;
        let client = self.ready(name).await?;
        let _gate = self.gate(name).await;
        let mut first_seen = None;
        for race in 0..RACES {
            let mut st = self.read(client, name).await?;
            let before = st.clone();
            let seen = *first_seen.get_or_insert(st.fence);
            let (decision, mut write) =
                st.acquire(req.owner, ttl_ms(req.ttl), req.mode, req.queue, now_ms());
            if let Write::Join(w) = &mut write {
                // A request that lost races for a free name before it found the name
                // held was passed over by those grants: they count for its turn.
                w.since = w.since.min(seen);
            }
            let grant = write == Write::Item;
            if !self
                .apply(client, name, req.owner, &before, &st, write)
                .await?
            {
                if grant && req.queue && matches!(decision, Decision::Acquired(_)) {
                    // Lost the name to another request between our read and our write:
                    // stand in the queue now, so that the grants that pass us over from
                    // here on count for our turn (a fast holder that releases and asks
                    // again would otherwise win every such race).
                    let (letter, _) = state::mode_letter(req.mode);
                    let w = Waiter {
                        owner: req.owner.to_owned(),
                        ticket: st.ticket,
                        mode: letter,
                        since: seen,
                        expires: now_ms() + ttl_ms(req.ttl),
                    };
                    self.join(client, name, &w).await?;
                }
                lost_race(race).await;
                continue;
            }
            return Ok(match decision {
                Decision::Acquired(fence) => Attempt::Acquired(Lease::new(fence, req.owner)),
                other => attempt_of(other),
            });
        }
        // Heavy contention: report it as held; the caller backs off and asks again.
        Ok(Attempt::held(None))
    }

    async fn try_acquire_all(&self, reqs: &[Request<'_>]) -> Option<Result<AttemptAll, LockError>> {
        // One transaction holds at most 100 items.
        if reqs.is_empty() || reqs.len() > 100 {
            return None;
        }
        Some(self.acquire_all(reqs).await)
    }

    async fn refresh(&self, name: &str, lease: &Lease, ttl: Duration) -> Result<bool, LockError> {
        self.update_holder(
            name,
            lease,
            "refresh",
            "SET #h.#o.#e = :exp ADD #v :one",
            Some(ttl),
        )
        .await
    }

    async fn release(&self, name: &str, lease: &Lease) -> Result<bool, LockError> {
        self.update_holder(name, lease, "release", "REMOVE #h.#o ADD #v :one", None)
            .await
    }

    async fn leave(&self, name: &str, owner: &str) -> Result<(), LockError> {
        let client = self.ready(name).await?;
        let out = client
            .update_item()
            .table_name(&self.inner.table)
            .set_key(Some(item::key(name)))
            .update_expression("REMOVE #w.#o ADD #v :one")
            .condition_expression("attribute_exists(#w.#o)")
            .expression_attribute_names("#w", K_WAITERS)
            .expression_attribute_names("#o", owner)
            .expression_attribute_names("#v", K_VER)
            .expression_attribute_values(":one", num(1))
            .send()
            .await;
        self.conditional(name, "leave", out).map(drop)
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, LockError> {
        let client = self.ready(name).await?;
        let st = self.read(client, name).await?;
        Ok(st.main_holder(now_ms()).map(|h| h.owner.clone()))
    }

    async fn leases(&self) -> Result<Vec<LeaseInfo>, LockError> {
        let client = self.ready("").await?;
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = client
                .scan()
                .table_name(&self.inner.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.error("", "list", &e))?;
            let now = now_ms();
            for item in page.items() {
                let Some(name) = item.get(K_NAME).and_then(|v| v.as_s().ok()) else {
                    continue;
                };
                out.extend(Self::infos(name, &decode(item), now));
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.fence.cmp(&b.fence)));
        Ok(out)
    }

    async fn leases_of(&self, name: &str) -> Result<Vec<LeaseInfo>, LockError> {
        let client = self.ready(name).await?;
        let st = self.read(client, name).await?;
        Ok(Self::infos(name, &st, now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_tables() {
        assert_eq!(
            DynamoDbStore::new("dynamodb://locks").unwrap().table(),
            "locks"
        );
        assert_eq!(
            DynamoDbStore::new("DynamoDB://a.b-c_d/").unwrap().table(),
            "a.b-c_d"
        );
        for bad in [
            "dynamodb://ab",
            "dynamodb://a/b",
            "locks",
            "postgres://x/y",
            "dynamodb://a b c",
        ] {
            assert!(DynamoDbStore::new(bad).is_err(), "{bad}");
        }
    }
}
