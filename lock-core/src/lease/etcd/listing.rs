//! Listing the live holders of the store or of one name, with what is left of their
//! etcd leases.

use std::collections::HashMap;
use std::time::Duration;

use etcd_client::KeyValue;

use super::keys::name_of_key;
use super::state::State;
use super::EtcdStore;
use crate::lease::LeaseInfo;
use crate::LockError;

impl EtcdStore {
    /// Lists the live holders of the keys `kvs` (under `prefix`, the store's prefix plus `/`).
    pub(super) async fn infos(
        &self,
        prefix: &str,
        kvs: &[KeyValue],
    ) -> Result<Vec<LeaseInfo>, LockError> {
        let mut by_name: HashMap<String, Vec<&KeyValue>> = HashMap::new();
        for kv in kvs {
            if let Some(name) = name_of_key(prefix, kv.key()) {
                by_name.entry(name).or_default().push(kv);
            }
        }
        let mut out = Vec::new();
        let mut ttls: HashMap<i64, i64> = HashMap::new();
        for (name, kvs) in by_name {
            let owned: Vec<KeyValue> = kvs.into_iter().cloned().collect();
            let st = State::parse(&self.name_prefix(&name), &owned);
            for h in st.holders {
                let left = match ttls.get(&h.lease) {
                    Some(&t) => t,
                    None => {
                        let id = h.lease;
                        let t = self
                            .call(&name, "lease TTL", |c| async move {
                                c.lease_client().time_to_live(id, None).await
                            })
                            .await?
                            .ttl();
                        ttls.insert(id, t);
                        t
                    }
                };
                // -1: expired. etcd rounds what is left down to whole seconds.
                if left < 0 {
                    continue;
                }
                out.push(LeaseInfo::new(
                    name.clone(),
                    h.owner,
                    u64::try_from(h.revision).unwrap_or(0),
                    h.mode,
                    Duration::from_secs(left.unsigned_abs()),
                ));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.fence.cmp(&b.fence)));
        Ok(out)
    }
}
