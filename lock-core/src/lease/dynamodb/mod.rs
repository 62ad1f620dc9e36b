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

use ::aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use ::aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use ::aws_sdk_dynamodb::Client;
use tokio::sync::OnceCell;

use super::{util, Attempt, AttemptAll, Lease, LeaseInfo, LeaseStore, Request, DEFAULT_TTL};
use crate::LockError;

mod item;
mod state;
mod table;

use item::{
    decode, encode, kind_of, now_ms, num, ttl_ms, K_EXPIRES, K_FENCE, K_HOLDERS, K_KIND, K_MODE,
    K_NAME, K_SINCE, K_TICKET, K_VER, K_WAITERS,
};

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

    /// Reads the item of `name` (strongly consistent).
    async fn read(&self, client: &Client, name: &str) -> Result<State, LockError> {
        let mut again = true;
        loop {
            let out = client
                .get_item()
                .table_name(&self.inner.table)
                .set_key(Some(item::key(name)))
                .consistent_read(true)
                .send()
                .await;
            match out {
                Ok(out) => return Ok(out.item().map(decode).unwrap_or_default()),
                // The table went away (a local server restarted without its data): make
                // it again, once.
                Err(e) if self.table_gone(&e) && again => {
                    again = false;
                    self.ready(name).await?;
                }
                Err(e) => return Err(self.error(name, "read", &e)),
            }
        }
    }

    /// Writes the grant (or the renewal of a repeated grant) that `acquire` decided on
    /// `before`, giving `st`, if no other grant came in between. `Ok(false)`: one did.
    ///
    /// A new name is one conditional `PutItem` (`attribute_not_exists`). Otherwise it is
    /// one `UpdateItem` that sets the owner's holder entry, the fence counter and the
    /// kind, and removes the owner's place in the queue and the expired entries, on the
    /// condition that the fence counter is still the one read: every grant takes a fence,
    /// so no other holder came in since; releases, renewals and places in the queue only
    /// make a grant decided on `before` more valid, and need not conflict with it.
    async fn write(
        &self,
        client: &Client,
        name: &str,
        owner: &str,
        before: &State,
        st: &State,
    ) -> Result<bool, LockError> {
        let out = if before.ver.is_none() {
            client
                .put_item()
                .table_name(&self.inner.table)
                .set_item(Some(encode(name, st)))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", K_NAME)
                .send()
                .await
                .map(drop)
                .map_err(|e| e.map_service_error(::aws_sdk_dynamodb::Error::from))
        } else {
            let g = GrantUpdate::new(owner, before, st)
                .ok_or_else(|| self.message(name, "internal error: a grant without a holder"))?;
            client
                .update_item()
                .table_name(&self.inner.table)
                .set_key(Some(item::key(name)))
                .update_expression(g.expression)
                .condition_expression(g.condition)
                .set_expression_attribute_names(Some(g.names))
                .set_expression_attribute_values(Some(g.values))
                .send()
                .await
                .map(drop)
                .map_err(|e| e.map_service_error(::aws_sdk_dynamodb::Error::from))
        };
        match out {
            Ok(()) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_condition_failed) => Ok(false),
            Err(e) if self.table_gone(&e) => Ok(false),
            Err(e) => Err(self.error(name, "write", &e)),
        }
    }

    /// Adds `w` to the queue of `name` (unless the owner is in it already), whatever else
    /// changed since the item was read. `Ok(false)`: the item is gone.
    async fn join(&self, client: &Client, name: &str, w: &Waiter) -> Result<bool, LockError> {
        let entry = HashMap::from([
            (K_TICKET.to_owned(), num(w.ticket)),
            (K_MODE.to_owned(), AttributeValue::S(w.mode.to_string())),
            (K_SINCE.to_owned(), num(w.since)),
            (K_EXPIRES.to_owned(), num(w.expires)),
        ]);
        let out = client
            .update_item()
            .table_name(&self.inner.table)
            .set_key(Some(item::key(name)))
            .update_expression("SET #w.#o = if_not_exists(#w.#o, :entry) ADD #t :one, #v :one")
            .condition_expression("attribute_exists(#w)")
            .expression_attribute_names("#w", K_WAITERS)
            .expression_attribute_names("#o", &w.owner)
            .expression_attribute_names("#t", K_TICKET)
            .expression_attribute_names("#v", K_VER)
            .expression_attribute_values(":entry", AttributeValue::M(entry))
            .expression_attribute_values(":one", num(1))
            .send()
            .await;
        self.conditional(name, "join the queue", out)
    }

    /// Renews the owner's place in the queue of `name`. `Ok(false)`: it is gone.
    async fn renew_place(
        &self,
        client: &Client,
        name: &str,
        owner: &str,
        expires: i64,
    ) -> Result<bool, LockError> {
        let out = client
            .update_item()
            .table_name(&self.inner.table)
            .set_key(Some(item::key(name)))
            .update_expression("SET #w.#o.#e = :exp ADD #v :one")
            .condition_expression("attribute_exists(#w.#o)")
            .expression_attribute_names("#w", K_WAITERS)
            .expression_attribute_names("#o", owner)
            .expression_attribute_names("#e", K_EXPIRES)
            .expression_attribute_names("#v", K_VER)
            .expression_attribute_values(":exp", num(expires))
            .expression_attribute_values(":one", num(1))
            .send()
            .await;
        self.conditional(name, "renew the place in the queue", out)
    }

    /// The outcome of a conditional update: `Ok(false)` if its condition failed (or the
    /// table is gone, and with it whatever the update was about).
    fn conditional<T, R: fmt::Debug>(
        &self,
        name: &str,
        what: &str,
        out: Result<T, SdkError<::aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>>,
    ) -> Result<bool, LockError> {
        match out {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) if self.table_gone(&e) => Ok(false),
            Err(e) => Err(self.error(name, what, &e)),
        }
    }

    /// An update of the holder entry of `lease` if it is still live with that fence.
    async fn update_holder(
        &self,
        name: &str,
        lease: &Lease,
        what: &str,
        expression: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, LockError> {
        let client = self.ready(name).await?;
        let now = now_ms();
        let mut up = client
            .update_item()
            .table_name(&self.inner.table)
            .set_key(Some(item::key(name)))
            .update_expression(expression)
            .condition_expression("#h.#o.#f = :f AND #h.#o.#e > :now")
            .expression_attribute_names("#h", K_HOLDERS)
            .expression_attribute_names("#o", &lease.owner)
            .expression_attribute_names("#f", K_FENCE)
            .expression_attribute_names("#e", K_EXPIRES)
            .expression_attribute_names("#v", K_VER)
            .expression_attribute_values(":f", num(lease.fence))
            .expression_attribute_values(":now", num(now))
            .expression_attribute_values(":one", num(1));
        if let Some(ttl) = ttl {
            up = up.expression_attribute_values(":exp", num(now + ttl_ms(ttl)));
        }
        let out = up.send().await;
        self.conditional(name, what, out)
    }

    /// Writes what `acquire` decided for `name` on `before`, giving `st`. `Ok(false)`:
    /// another writer came first.
    async fn apply(
        &self,
        client: &Client,
        name: &str,
        owner: &str,
        before: &State,
        st: &State,
        write: Write,
    ) -> Result<bool, LockError> {
        match write {
            Write::Nothing => Ok(true),
            Write::Item => self.write(client, name, owner, before, st).await,
            Write::Join(w) => self.join(client, name, &w).await,
            Write::Renew(expires) => self.renew_place(client, name, owner, expires).await,
        }
    }

    /// Several names in one transaction (`TransactWriteItems`): every item is read, and
    /// if every name can be granted, all are written at once, each on the condition that
    /// it did not change since it was read. Otherwise nothing is granted, and the first
    /// refused request takes (or keeps) its place in that name's queue.
    async fn acquire_all(&self, reqs: &[Request<'_>]) -> Result<AttemptAll, LockError> {
        let first = reqs[0].name;
        let client = self.ready(first).await?;
        // In the order of the names (sorted): two sets cannot wait for each other.
        let mut gates = Vec::with_capacity(reqs.len());
        for r in reqs {
            gates.push(self.gate(r.name).await);
        }
        'race: for race in 0..RACES {
            let mut states = Vec::with_capacity(reqs.len());
            for r in reqs {
                states.push(self.read(client, r.name).await?);
            }
            let befores = states.clone();
            let now = now_ms();
            let mut leases = Vec::with_capacity(reqs.len());
            for (at, (r, st)) in reqs.iter().zip(states.iter_mut()).enumerate() {
                let (decision, write) = st.acquire(r.owner, ttl_ms(r.ttl), r.mode, r.queue, now);
                match decision {
                    Decision::Acquired(fence) => leases.push(Lease::new(fence, r.owner)),
                    refused => {
                        if !self
                            .apply(client, r.name, r.owner, &befores[at], st, write)
                            .await?
                        {
                            lost_race(race).await;
                            continue 'race;
                        }
                        return Ok(Err((at, attempt_of(refused))));
                    }
                }
            }
            let mut items = Vec::with_capacity(reqs.len());
            for ((r, before), st) in reqs.iter().zip(&befores).zip(&states) {
                let built = if before.ver.is_none() {
                    Put::builder()
                        .table_name(&self.inner.table)
                        .set_item(Some(encode(r.name, st)))
                        .condition_expression("attribute_not_exists(#k)")
                        .expression_attribute_names("#k", K_NAME)
                        .build()
                        .map(|put| TransactWriteItem::builder().put(put).build())
                } else {
                    let g = GrantUpdate::new(r.owner, before, st).ok_or_else(|| {
                        self.message(r.name, "internal error: a grant without a holder")
                    })?;
                    Update::builder()
                        .table_name(&self.inner.table)
                        .set_key(Some(item::key(r.name)))
                        .update_expression(g.expression)
                        .condition_expression(g.condition)
                        .set_expression_attribute_names(Some(g.names))
                        .set_expression_attribute_values(Some(g.values))
                        .build()
                        .map(|up| TransactWriteItem::builder().update(up).build())
                };
                items.push(built.map_err(|e| self.message(r.name, &format!("transaction: {e}")))?);
            }
            let out = client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            match out {
                Ok(_) => return Ok(Ok(leases)),
                // A condition failed (another writer came first) or another transaction
                // holds one of the items: read and decide again.
                Err(e)
                    if e.as_service_error().is_some_and(|s| {
                        s.is_transaction_canceled_exception()
                            || s.code() == Some("TransactionConflictException")
                    }) || self.table_gone(&e) =>
                {
                    lost_race(race).await;
                }
                Err(e) => return Err(self.error(first, "transaction", &e)),
            }
        }
        Ok(Err((0, Attempt::held(None))))
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

/// The `UpdateItem` of a grant on an existing item (see [`DynamoDbStore::write`]).
struct GrantUpdate {
    expression: String,
    condition: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl GrantUpdate {
    /// The grant to `owner` that turned `before` into `st`; `None` if `st` has no
    /// holder entry of `owner`.
    fn new(owner: &str, before: &State, st: &State) -> Option<GrantUpdate> {
        let mine = st.holders.iter().find(|h| h.owner == owner)?;
        let mut names = HashMap::from([
            ("#h".to_owned(), K_HOLDERS.to_owned()),
            ("#f".to_owned(), K_FENCE.to_owned()),
            ("#kd".to_owned(), K_KIND.to_owned()),
            ("#v".to_owned(), K_VER.to_owned()),
            ("#me".to_owned(), owner.to_owned()),
        ]);
        let entry = HashMap::from([
            (K_FENCE.to_owned(), num(mine.fence)),
            (K_MODE.to_owned(), AttributeValue::S(mine.mode.to_string())),
            (K_EXPIRES.to_owned(), num(mine.expires)),
        ]);
        let values = HashMap::from([
            (":entry".to_owned(), AttributeValue::M(entry)),
            (":fence".to_owned(), num(st.fence)),
            (":read".to_owned(), num(before.fence)),
            (":kind".to_owned(), num(st.kind)),
            (":one".to_owned(), num(1)),
        ]);
        // What the grant removes: the owner's place in the queue and the entries that
        // had expired (holders cannot come back to life: a refresh needs a live entry).
        let mut remove = Vec::new();
        let gone_holders = before
            .holders
            .iter()
            .filter(|b| b.owner != owner && !st.holders.iter().any(|h| h.owner == b.owner));
        for (i, h) in gone_holders.enumerate() {
            names.insert(format!("#x{i}"), h.owner.clone());
            remove.push(format!("#h.#x{i}"));
        }
        let gone_waiters = before
            .waiters
            .iter()
            .filter(|b| b.owner != owner && !st.waiters.iter().any(|w| w.owner == b.owner));
        for (i, w) in gone_waiters.enumerate() {
            names.insert(format!("#y{i}"), w.owner.clone());
            remove.push(format!("#w.#y{i}"));
        }
        if before.waiters.iter().any(|w| w.owner == owner) {
            remove.push("#w.#me".to_owned());
        }
        // Names must all be used: `#w` only when something leaves the queue.
        if remove.iter().any(|r| r.starts_with("#w.")) {
            names.insert("#w".to_owned(), K_WAITERS.to_owned());
        }
        let mut expression = "SET #h.#me = :entry, #f = :fence, #kd = :kind".to_owned();
        if !remove.is_empty() {
            expression.push_str(" REMOVE ");
            expression.push_str(&remove.join(", "));
        }
        expression.push_str(" ADD #v :one");
        Some(GrantUpdate {
            expression,
            condition: "#f = :read".to_owned(),
            names,
            values,
        })
    }
}

/// Whether a write was refused by its condition.
fn is_condition_failed(e: &::aws_sdk_dynamodb::Error) -> bool {
    matches!(
        e,
        ::aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)
    )
}

/// After a lost race: read and decide again, after a short jittered pause once it
/// happens repeatedly.
async fn lost_race(race: u32) {
    if race >= 2 {
        let ms = 1 + util::random_u64() % (1 << race.min(5));
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// The answer to a refused request.
fn attempt_of(decision: Decision) -> Attempt {
    match decision {
        Decision::Held { holder, retry_ms } => Attempt::held_until(
            holder,
            retry_ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        ),
        Decision::Mismatch(kind) => Attempt::Mismatch {
            kind: kind_of(kind),
        },
        Decision::Acquired(_) => Attempt::held(None),
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
