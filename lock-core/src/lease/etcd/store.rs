//! [`LeaseStore`] for [`EtcdStore`]: refresh, release and leave here, acquire and
//! listing in their own modules.

use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::state::State;
use super::{watch, EtcdStore};
use crate::lease::{Attempt, Lease, LeaseInfo, LeaseStore, Request};
use crate::LockError;

impl LeaseStore for EtcdStore {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn default_ttl(&self) -> Duration {
        self.inner.default_ttl
    }

    /// Rounded up to whole seconds, and to at least the store's minimum (see the
    /// [module docs](super)).
    fn effective_ttl(&self, ttl: Duration) -> Duration {
        Duration::from_secs(self.secs_for(ttl).unsigned_abs())
    }

    async fn try_acquire(&self, req: &Request<'_>) -> Result<Attempt, LockError> {
        self.acquire(req).await
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, LockError> {
        let nprefix = self.name_prefix(name);
        let (_, kvs) = self.range(name, &nprefix).await?;
        let st = State::parse(&nprefix, &kvs);
        Ok(st.holder().map(|h| h.owner.clone()))
    }

    async fn refresh(&self, name: &str, lease: &Lease, ttl: Duration) -> Result<bool, LockError> {
        let hkey = self.holder_key(name, &lease.owner);
        let fence = i64::try_from(lease.fence).unwrap_or(-1);
        let known = self
            .table()
            .get(&(name.to_owned(), lease.owner.clone()))
            .copied();
        let (id, granted) = match known {
            Some(k) => k,
            None => {
                let (_, kvs) = self.range(name, &hkey).await?;
                match kvs.iter().find(|kv| kv.key() == hkey.as_bytes()) {
                    Some(kv) if kv.create_revision() == fence => (kv.lease(), 0),
                    _ => return Ok(false),
                }
            }
        };
        if self.keep_alive(name, id).await? <= 0 {
            self.drop_lease(name, &lease.owner);
            return Ok(false);
        }
        let (_, kvs) = self.range(name, &hkey).await?;
        let held = kvs.iter().any(|kv| {
            kv.key() == hkey.as_bytes() && kv.create_revision() == fence && kv.lease() == id
        });
        if !held {
            return Ok(false);
        }
        let secs = self.secs_for(ttl);
        if granted != 0 && secs > granted {
            // A longer TTL than the etcd lease has: move the key to a new lease.
            let (new_id, new_secs) = self.grant(name, secs).await?;
            let txn = Txn::new()
                .when([Compare::create_revision(
                    hkey.as_bytes().to_vec(),
                    CompareOp::Equal,
                    fence,
                )])
                .and_then([TxnOp::put(
                    hkey.as_bytes().to_vec(),
                    Vec::new(),
                    Some(PutOptions::new().with_lease(new_id).with_ignore_value()),
                )]);
            let (moved, _) = self.txn(name, "refresh", txn).await?;
            if !moved {
                self.revoke_later(new_id);
                return Ok(false);
            }
            self.table()
                .insert((name.to_owned(), lease.owner.clone()), (new_id, new_secs));
            self.revoke_later(id);
        }
        Ok(true)
    }

    async fn release(&self, name: &str, lease: &Lease) -> Result<bool, LockError> {
        let hkey = self.holder_key(name, &lease.owner);
        let fence = i64::try_from(lease.fence).unwrap_or(-1);
        let txn = Txn::new()
            .when([Compare::create_revision(
                hkey.as_bytes().to_vec(),
                CompareOp::Equal,
                fence,
            )])
            .and_then([TxnOp::delete(hkey.as_bytes().to_vec(), None)]);
        let (held, _) = self.txn(name, "release", txn).await?;
        if held {
            if let Some(id) = self.drop_lease(name, &lease.owner) {
                self.revoke_later(id);
            }
        }
        Ok(held)
    }

    async fn leave(&self, name: &str, owner: &str) -> Result<(), LockError> {
        let wkey = self.waiter_key(name, owner);
        let key = wkey.as_bytes().to_vec();
        self.call(name, "leave", |c| {
            let key = key.clone();
            async move { c.kv_client().delete(key, None).await }
        })
        .await?;
        if let Some(id) = self.drop_lease(name, owner) {
            self.revoke_later(id);
        }
        Ok(())
    }

    async fn wait_for_change(&self, name: &str, until: Instant) {
        let hub = &self.inner.hub;
        hub.ensure_listener(|weak| {
            watch::run(
                weak,
                self.inner.endpoints.clone(),
                self.inner.options.clone(),
                format!("{}/", self.inner.prefix),
            )
        });
        hub.wait(name, until).await;
    }

    fn wakes_waiters(&self) -> bool {
        self.inner.hub.is_connected()
    }

    async fn leases(&self) -> Result<Vec<LeaseInfo>, LockError> {
        let prefix = format!("{}/", self.inner.prefix);
        let (_, kvs) = self.range("", &prefix).await?;
        self.infos(&prefix, &kvs).await
    }

    async fn leases_of(&self, name: &str) -> Result<Vec<LeaseInfo>, LockError> {
        let prefix = format!("{}/", self.inner.prefix);
        let (_, kvs) = self.range(name, &self.name_prefix(name)).await?;
        self.infos(&prefix, &kvs).await
    }
}
