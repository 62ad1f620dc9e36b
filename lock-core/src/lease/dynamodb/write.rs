//! The requests on a lock's item: a consistent read, the conditional writes that decide
//! a grant, a queue place or a release (each refused if the item changed since it was
//! read), and the all-or-nothing transaction of a set of names.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use ::aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use ::aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use ::aws_sdk_dynamodb::Client;

use super::item::{
    decode, encode, kind_of, now_ms, num, ttl_ms, K_EXPIRES, K_FENCE, K_HOLDERS, K_KIND, K_MODE,
    K_NAME, K_SINCE, K_TICKET, K_VER, K_WAITERS,
};
use super::state::{Decision, State, Waiter, Write};
use super::{item, DynamoDbStore, RACES};
use crate::lease::{util, Attempt, AttemptAll, Lease, Request};
use crate::LockError;

impl DynamoDbStore {
    /// Reads the item of `name` (strongly consistent).
    pub(super) async fn read(&self, client: &Client, name: &str) -> Result<State, LockError> {
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
    pub(super) async fn write(
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
    pub(super) async fn join(
        &self,
        client: &Client,
        name: &str,
        w: &Waiter,
    ) -> Result<bool, LockError> {
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
    pub(super) fn conditional<T, R: fmt::Debug>(
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
    pub(super) async fn update_holder(
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
    pub(super) async fn apply(
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
    pub(super) async fn acquire_all(&self, reqs: &[Request<'_>]) -> Result<AttemptAll, LockError> {
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
pub(super) async fn lost_race(race: u32) {
    if race >= 2 {
        let ms = 1 + util::random_u64() % (1 << race.min(5));
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// The answer to a refused request.
pub(super) fn attempt_of(decision: Decision) -> Attempt {
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
