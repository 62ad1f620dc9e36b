//! Acquire: read the name's keys, decide, and write the decision in one transaction
//! that applies only if it still stands; or take a place in the queue.

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::keys::{kind_of, mode_text};
use super::state::{Entry, State};
use super::EtcdStore;
use crate::lease::{Attempt, Lease, Request};
use crate::mode::Mode;
use crate::LockError;

/// How many of the oldest waiters have their passes counted (a transaction may hold
/// only so many operations: etcd's default limit is 128).
const COUNTED_WAITERS: usize = 32;

/// A waiter's place to take: its key, mode and etcd lease, the revision of the read that
/// refused it, the prefix of the name's holder keys, and what refused it.
struct Place<'a> {
    key: &'a str,
    mode: &'a str,
    lease: i64,
    read_at: i64,
    holders: &'a str,
    blockers: &'a [&'a Entry],
}

impl Place<'_> {
    /// Puts the waiter key if it is absent, unconditionally otherwise (a place that
    /// depended on what refused it could be refused again and again: each release and
    /// new grant in between invalidated it, and the waiter never got into the queue
    /// while another owner took turn after turn). Its passes start at 0 if no turn can
    /// have been granted since the read (every blocker is still there and no holder
    /// came), else at 1: the turn granted between the read and the place is counted.
    fn txn(&self) -> Txn {
        let key = self.key.as_bytes().to_vec();
        let put = |passes: u32| {
            TxnOp::put(
                key.clone(),
                format!("{} {passes}", self.mode),
                Some(PutOptions::new().with_lease(self.lease)),
            )
        };
        let mut unchanged = vec![Compare::create_revision(
            self.holders.as_bytes().to_vec(),
            CompareOp::Less,
            self.read_at + 1,
        )
        .with_prefix()];
        for b in self.blockers {
            unchanged.push(Compare::create_revision(
                b.key.clone(),
                CompareOp::Equal,
                b.revision,
            ));
        }
        let counted = Txn::new()
            .when(unchanged)
            .and_then([put(0)])
            .or_else([put(1)]);
        Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::txn(counted)])
    }
}

impl EtcdStore {
    /// Takes `place` (see [`Place::txn`]). `None`: the key was already there; else
    /// whether nothing was missed (passes start at 0).
    async fn take_place(&self, name: &str, place: Place<'_>) -> Result<Option<bool>, LockError> {
        let txn = place.txn();
        let resp = self
            .call(name, "queue", |c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Ok(None);
        }
        Ok(Some(resp.op_responses().iter().any(
            |r| matches!(r, etcd_client::TxnOpResponse::Txn(t) if t.succeeded()),
        )))
    }

    /// One attempt of `req` (see the [module docs](super) for the decision).
    pub(super) async fn acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
        let (name, owner) = (req.name, req.owner);
        let nprefix = self.name_prefix(name);
        let hkey = self.holder_key(name, owner);
        let wkey = self.waiter_key(name, owner);
        let secs = self.secs_for(req.ttl);
        let want = kind_of(req.mode);
        let mode = mode_text(req.mode);
        let mut made = false;
        let holders = format!("{nprefix}h/");
        let waiters = format!("{nprefix}w/");
        for _ in 0..64 {
            let (rev, kvs) = if req.queue {
                // A caller that waits gets its etcd lease (a round of consensus) beside
                // its read, not between the read and the write acting on it: a decision
                // has little time to go stale, and the waiter is in the queue after two
                // round trips.
                let (lease, read) = tokio::try_join!(
                    self.lease_for(name, owner, secs),
                    self.range(name, &nprefix)
                )?;
                made |= lease.1;
                read
            } else {
                self.range(name, &nprefix).await?
            };
            let st = State::parse(&nprefix, &kvs);
            if let Some(h) = st.holders.iter().find(|h| h.owner == owner) {
                // A repeated request: the same lease, renewed.
                if self.keep_alive(name, h.lease).await? > 0 {
                    let before = self
                        .table()
                        .insert((name.to_owned(), owner.to_owned()), (h.lease, secs));
                    match before {
                        Some((id, granted)) if id == h.lease => {
                            self.table()
                                .insert((name.to_owned(), owner.to_owned()), (id, granted));
                        }
                        Some((id, _)) => self.revoke_later(id),
                        None => {}
                    }
                    return Ok(Attempt::Acquired(Lease::new(
                        u64::try_from(h.revision).unwrap_or(0),
                        owner,
                    )));
                }
                continue;
            }
            let mine = st.waiters.iter().find(|w| w.owner == owner);
            let kind = st
                .holders
                .first()
                .or(st.waiters.iter().find(|w| w.owner != owner))
                .map(|e| kind_of(e.mode))
                .unwrap_or(want);
            if kind != want {
                return Ok(Attempt::Mismatch { kind });
            }
            let fits = match req.mode {
                Mode::Shared => st.holders.iter().all(|h| h.mode == Mode::Shared),
                Mode::Permits(n) => st.holders.len() < n as usize,
                _ => st.holders.is_empty(),
            };
            let my_ticket = mine.map(|w| w.revision);
            let due = st.waiters.iter().find(|w| {
                w.owner != owner
                    && w.passes >= 2
                    && my_ticket.is_none_or(|t| w.revision < t)
                    && !(w.mode == Mode::Shared && req.mode == Mode::Shared)
            });
            if fits && due.is_none() {
                let (lease, new) = self.lease_for(name, owner, secs).await?;
                made |= new;
                // The decision stands if no holder came since the read (holders that left
                // only make more room) or, for a shared request beside shared holders, if
                // every holder is still shared; and if the counted waiters are as read.
                let beside = if req.mode == Mode::Shared && !st.holders.is_empty() {
                    Compare::value(holders.as_bytes().to_vec(), CompareOp::Equal, "s")
                } else {
                    Compare::mod_revision(holders.as_bytes().to_vec(), CompareOp::Less, rev + 1)
                };
                let mut when = vec![
                    beside.with_prefix(),
                    Compare::create_revision(hkey.as_bytes().to_vec(), CompareOp::Equal, 0),
                    // No waiter took its place since the read: this grant is a turn it
                    // waited through, so it is read again and counted.
                    Compare::create_revision(waiters.as_bytes().to_vec(), CompareOp::Less, rev + 1)
                        .with_prefix(),
                ];
                let mut then = vec![TxnOp::put(
                    hkey.as_bytes().to_vec(),
                    mode.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )];
                if mine.is_some() {
                    then.push(TxnOp::delete(wkey.as_bytes().to_vec(), None));
                }
                for w in st
                    .waiters
                    .iter()
                    .filter(|w| w.owner != owner)
                    .take(COUNTED_WAITERS)
                {
                    when.push(Compare::mod_revision(
                        w.key.clone(),
                        CompareOp::Equal,
                        w.modified,
                    ));
                    then.push(TxnOp::put(
                        w.key.clone(),
                        format!("{} {}", mode_text(w.mode), w.passes.saturating_add(1)),
                        Some(PutOptions::new().with_ignore_lease()),
                    ));
                }
                let mut txn = Txn::new().when(when).and_then(then);
                if req.queue && mine.is_none() && req.mode != Mode::Shared {
                    // Refused after all (another owner was faster): in the queue at once,
                    // in the same round trip, counting the turn that beat us if it did.
                    // (Not for shared requests: what beat one is mostly another shared
                    // holder it fits beside, and a place would only make the grants of
                    // the name conflict with each other.)
                    let place = Place {
                        key: &wkey,
                        mode: &mode,
                        lease,
                        read_at: rev,
                        holders: &holders,
                        blockers: &[],
                    };
                    txn = txn.or_else([TxnOp::txn(place.txn())]);
                }
                match self.txn(name, "acquire", txn).await {
                    Ok((true, fence)) => {
                        return Ok(Attempt::Acquired(Lease::new(
                            u64::try_from(fence).unwrap_or(0),
                            owner,
                        )))
                    }
                    Ok((false, _)) => continue,
                    Err(e) => {
                        // Our etcd lease expired meanwhile (a waiter that stalled): a new one.
                        if e.to_string().contains("lease not found") {
                            self.drop_lease(name, owner);
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
            if req.queue {
                let (lease, new) = self.lease_for(name, owner, secs).await?;
                made |= new;
                if mine.is_none() {
                    let blockers: Vec<&Entry> = if fits {
                        due.into_iter().collect()
                    } else {
                        st.holders.iter().take(COUNTED_WAITERS).collect()
                    };
                    let place = Place {
                        key: &wkey,
                        mode: &mode,
                        lease,
                        read_at: rev,
                        holders: &holders,
                        blockers: &blockers,
                    };
                    match self.take_place(name, place).await {
                        // In the queue with nothing missed: wait for a change.
                        Ok(Some(true)) => {}
                        // In the queue, but what refused us is gone: read again.
                        Ok(Some(false)) | Ok(None) => continue,
                        Err(e) if e.to_string().contains("lease not found") => {
                            self.drop_lease(name, owner);
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                } else if self.keep_alive(name, lease).await? <= 0 {
                    // Our place expired: take a new one.
                    self.drop_lease(name, owner);
                    continue;
                }
            } else if made {
                if let Some(id) = self.drop_lease(name, owner) {
                    self.revoke_later(id);
                }
            }
            let holder = if fits {
                due.map(|w| w.owner.clone())
            } else {
                st.holder().map(|h| h.owner.clone())
            };
            return Ok(Attempt::held(holder));
        }
        Err(self.message(
            name,
            "acquire: the name kept changing under 64 attempts in a row".to_owned(),
        ))
    }
}
