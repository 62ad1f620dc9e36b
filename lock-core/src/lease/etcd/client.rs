//! Talking to the cluster: the shared client, requests repeated on failures, and the
//! etcd leases of this process's holders and waiters.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, KeyValue, Txn};

use super::config::secs_up;
use super::EtcdStore;
use crate::lease::util;
use crate::LockError;

/// How long one request may take before it is sent again (to another member).
pub(super) const PER_TRY: Duration = Duration::from_millis(1500);

fn is_retryable(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) | E::LeaseKeepAliveError(_) | E::WatchError(_) => true,
        E::GRpcStatus(s) => {
            let code = format!("{:?}", s.code());
            matches!(
                code.as_str(),
                "Unavailable" | "DeadlineExceeded" | "Unknown" | "Aborted" | "Cancelled"
            ) || s.message().contains("leader")
        }
        _ => false,
    }
}

pub(super) fn lease_not_found(e: &etcd_client::Error) -> bool {
    e.to_string().contains("lease not found")
}

impl EtcdStore {
    fn slot(&self) -> MutexGuard<'_, Option<(u64, Client)>> {
        // Never held across an await; a poisoned slot still holds a usable value.
        crate::sync::lock_std(&self.inner.client)
    }

    pub(super) fn table(&self) -> MutexGuard<'_, HashMap<(String, String), (i64, i64)>> {
        crate::sync::lock_std(&self.inner.leases)
    }

    /// The shared client, made on first use (and again after [`forget`](Self::forget)).
    async fn client(&self, name: &str) -> Result<(u64, Client), LockError> {
        if let Some(c) = self.slot().clone() {
            return Ok(c);
        }
        let made = Client::connect(&self.inner.endpoints, Some(self.inner.options.clone()))
            .await
            .map_err(|e| self.error(name, "connect", &e))?;
        let mut slot = self.slot();
        if let Some(c) = slot.clone() {
            return Ok(c);
        }
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *slot = Some((generation, made.clone()));
        Ok((generation, made))
    }

    fn forget(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|(g, _)| *g == generation) {
            *slot = None;
        }
    }

    /// Runs one request, again (on a fresh client, which may reach another member) after
    /// a failure that another member or a new leader may not have, within the store's
    /// timeout.
    pub(super) async fn call<T, F, Fut>(&self, name: &str, what: &str, f: F) -> Result<T, LockError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.inner.timeout;
        let mut pause = Duration::from_millis(5);
        let mut fails = 0u32;
        loop {
            let (generation, client) = self.client(name).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            let last_error = match tokio::time::timeout(left.min(PER_TRY), f(client)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if is_retryable(&e) => self.error(name, what, &e),
                Ok(Err(e)) => return Err(self.error(name, what, &e)),
                Err(_) => self.message(name, format!("{what}: no answer within {PER_TRY:?}")),
            };
            fails += 1;
            // A client whose connections keep failing is made again: its channel may
            // belong to a runtime that is gone.
            if fails.is_multiple_of(3) {
                self.forget(generation);
            }
            if Instant::now() + pause >= deadline {
                return Err(last_error);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    pub(super) fn error(&self, name: &str, what: &str, e: &etcd_client::Error) -> LockError {
        self.message(name, format!("{what}: {}", util::with_causes(e)))
    }

    pub(super) fn message(&self, name: &str, message: String) -> LockError {
        LockError::Store {
            name: name.to_owned(),
            store: self.inner.describe.clone(),
            message,
        }
    }

    /// The keys under `prefix` (a linearizable read).
    pub(super) async fn range(
        &self,
        name: &str,
        prefix: &str,
    ) -> Result<(i64, Vec<KeyValue>), LockError> {
        let key = prefix.as_bytes().to_vec();
        let mut resp = self
            .call(name, "read", |c| {
                let key = key.clone();
                async move {
                    c.kv_client()
                        .get(key, Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((rev, resp.take_kvs()))
    }

    pub(super) async fn txn(
        &self,
        name: &str,
        what: &str,
        txn: Txn,
    ) -> Result<(bool, i64), LockError> {
        let resp = self
            .call(name, what, |c| {
                let txn = txn.clone();
                async move { c.kv_client().txn(txn).await }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        Ok((resp.succeeded(), rev))
    }

    /// Renews etcd lease `id` once; its TTL in seconds afterwards (0: it is gone).
    pub(super) async fn keep_alive(&self, name: &str, id: i64) -> Result<i64, LockError> {
        self.call(name, "renew", |c| async move {
            let once = async {
                let (mut keeper, mut stream) = c.lease_client().keep_alive(id).await?;
                keeper.keep_alive().await?;
                match stream.message().await? {
                    Some(r) => Ok(r.ttl()),
                    None => Err(etcd_client::Error::LeaseKeepAliveError(
                        "keep-alive stream closed".to_owned(),
                    )),
                }
            };
            match once.await {
                // Expired or revoked: not an error, the lease is just gone.
                Err(e) if lease_not_found(&e) => Ok(0),
                other => other,
            }
        })
        .await
    }

    /// A new etcd lease of at least `secs`: its id and granted TTL.
    pub(super) async fn grant(&self, name: &str, secs: i64) -> Result<(i64, i64), LockError> {
        let resp = self
            .call(name, "grant", |c| async move {
                c.lease_client().grant(secs, None).await
            })
            .await?;
        if !resp.error().is_empty() {
            return Err(self.message(name, format!("grant: {}", resp.error())));
        }
        let granted = resp.ttl();
        // The server raises short TTLs to its minimum: remember it.
        if granted > secs {
            self.inner.min_secs.fetch_max(granted, Ordering::Relaxed);
        }
        Ok((resp.id(), granted))
    }

    /// Revokes etcd lease `id` in the background (its keys go with it).
    pub(super) fn revoke_later(&self, id: i64) {
        if id == 0 {
            return;
        }
        let store = self.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = store
                    .call("", "revoke", |c| async move {
                        match c.lease_client().revoke(id).await {
                            Err(e) if lease_not_found(&e) => Ok(()),
                            Err(e) => Err(e),
                            Ok(_) => Ok(()),
                        }
                    })
                    .await;
            });
        }
    }

    /// TTL in seconds for a requested TTL: rounded up, at least the minimum.
    pub(super) fn secs_for(&self, ttl: Duration) -> i64 {
        secs_up(ttl).max(self.inner.min_secs.load(Ordering::Relaxed))
    }

    /// The etcd lease of (`name`, `owner`): the remembered one, or a new one of `secs`.
    /// Whether it is new.
    pub(super) async fn lease_for(
        &self,
        name: &str,
        owner: &str,
        secs: i64,
    ) -> Result<(i64, bool), LockError> {
        let key = (name.to_owned(), owner.to_owned());
        if let Some(&(id, _)) = self.table().get(&key) {
            return Ok((id, false));
        }
        let (id, granted) = self.grant(name, secs).await?;
        self.table().insert(key, (id, granted));
        Ok((id, true))
    }

    pub(super) fn drop_lease(&self, name: &str, owner: &str) -> Option<i64> {
        self.table()
            .remove(&(name.to_owned(), owner.to_owned()))
            .map(|(id, _)| id)
    }
}
