//! The store's settings: the `etcd://` URL, the key prefix, timeouts and TTLs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::ConnectOptions;

use super::client::PER_TRY;
use super::{EtcdStore, Inner};
use crate::lease::notify::Hub;
use crate::LockError;

/// Configures an [`EtcdStore`]; start with [`EtcdStore::builder`].
///
/// ```
/// # fn main() -> Result<(), lock_core::LockError> {
/// use std::time::Duration;
/// use lock_core::lease::etcd::EtcdStore;
///
/// let store = EtcdStore::builder("etcd://127.0.0.1:2379")
///     .prefix("my-app/locks")
///     .timeout(Duration::from_secs(3))
///     .min_ttl(Duration::from_secs(2))
///     .build()?;
/// assert_eq!(store.prefix(), "my-app/locks");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EtcdStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    default_ttl: Duration,
    min_ttl: Duration,
}

pub(super) fn config_error(message: String) -> LockError {
    LockError::Store {
        name: String::new(),
        store: "etcd".to_owned(),
        message,
    }
}

/// The `http://host:port` endpoints of an `etcd://h1:p1,h2:p2` URL.
fn parse_url(url: &str) -> Result<Vec<String>, LockError> {
    if url.starts_with("etcds://") {
        return Err(config_error(
            "TLS (`etcds://`) is not supported yet by the etcd store: use `etcd://` (plain \
             HTTP) on a trusted network, or a TLS-terminating proxy on loopback"
                .to_owned(),
        ));
    }
    let Some(rest) = url.strip_prefix("etcd://") else {
        return Err(config_error(
            "an etcd URL starts with `etcd://` (e.g. `etcd://10.0.0.1:2379,10.0.0.2:2379`)"
                .to_owned(),
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut out = Vec::new();
    for host in rest.split(',') {
        let host = host.trim();
        if host.is_empty()
            || host.contains(['/', '@', '?', '#', ' '])
            || host.starts_with(':')
            || host.ends_with(':')
        {
            return Err(config_error(format!(
                "invalid etcd endpoint {host:?}: use `host` or `host:port`, comma-separated \
                 (no credentials, path or query)"
            )));
        }
        let bracketed = host.starts_with('[');
        let has_port = if bracketed {
            host.contains("]:")
        } else {
            host.contains(':')
        };
        if has_port {
            let port = host.rsplit(':').next().unwrap_or("");
            if port.parse::<u16>().is_err() {
                return Err(config_error(format!(
                    "invalid port in etcd endpoint {host:?}"
                )));
            }
            out.push(format!("http://{host}"));
        } else {
            out.push(format!("http://{host}:2379"));
        }
    }
    Ok(out)
}

impl EtcdStoreBuilder {
    pub(super) fn new(url: &str, default_ttl: Duration) -> Self {
        EtcdStoreBuilder {
            url: url.to_owned(),
            prefix: "lock-core".to_owned(),
            timeout: Duration::from_secs(5),
            default_ttl,
            min_ttl: Duration::from_secs(1),
        }
    }

    /// The key prefix (default `lock-core`, giving `lock-core/{name}/…`): ASCII letters,
    /// digits and `_ - . : /`, at most 128 bytes, not starting or ending with `/`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// How long one operation may take, retries on other members included (default 5 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The TTL of leases whose caller chooses none (default 10 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The shortest etcd lease to ask for, rounded up to whole seconds (default 1 s).
    /// Set it to your cluster's minimum (1.5 election timeouts, rounded up) so that
    /// [`LeaseStore::effective_ttl`](crate::lease::LeaseStore::effective_ttl) is exact
    /// before the first grant; the store also learns it from the server's answers.
    pub fn min_ttl(mut self, ttl: Duration) -> Self {
        self.min_ttl = ttl;
        self
    }

    /// Checks the settings and builds the store. Connects lazily (first use).
    pub fn build(self) -> Result<EtcdStore, LockError> {
        let ok = !self.prefix.is_empty()
            && self.prefix.len() <= 128
            && !self.prefix.starts_with('/')
            && !self.prefix.ends_with('/')
            && self.prefix.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/')
            });
        if !ok {
            return Err(config_error(format!(
                "invalid key prefix {:?}: use 1 to 128 ASCII letters, digits or `_ - . : /`, \
                 not starting or ending with `/`",
                self.prefix
            )));
        }
        let endpoints = parse_url(&self.url)?;
        let describe = format!(
            "etcd {}",
            endpoints
                .iter()
                .map(|e| e.trim_start_matches("http://"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let options = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(self.timeout.min(PER_TRY))
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
            .with_keep_alive_while_idle(true);
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                endpoints,
                options,
                client: Mutex::new(None),
                generation: AtomicU64::new(0),
                prefix: self.prefix,
                describe,
                default_ttl: self.default_ttl,
                timeout: self.timeout,
                min_secs: AtomicI64::new(secs_up(self.min_ttl).max(1)),
                leases: Mutex::new(HashMap::new()),
                hub: Arc::new(Hub::default()),
            }),
        })
    }
}

/// Whole seconds, rounded up.
pub(super) fn secs_up(d: Duration) -> i64 {
    let ms = d.as_millis();
    i64::try_from(ms.div_ceil(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseStore;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("etcd://a:1,b,[::1]:3").unwrap(),
            ["http://a:1", "http://b:2379", "http://[::1]:3"]
        );
        assert!(parse_url("etcds://a:1")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(parse_url("http://a:1").is_err());
        assert!(parse_url("etcd://user:pw@a:1").is_err());
        assert!(parse_url("etcd://a:x").is_err());
        assert!(parse_url("etcd://").is_err());
    }

    #[test]
    fn ttl_rounds_up() {
        assert_eq!(secs_up(Duration::from_millis(1)), 1);
        assert_eq!(secs_up(Duration::from_millis(1000)), 1);
        assert_eq!(secs_up(Duration::from_millis(1001)), 2);
        let s = EtcdStore::builder("etcd://127.0.0.1:1")
            .min_ttl(Duration::from_millis(1500))
            .build()
            .unwrap();
        assert_eq!(
            s.effective_ttl(Duration::from_millis(100)),
            Duration::from_secs(2)
        );
        assert_eq!(
            s.effective_ttl(Duration::from_millis(2500)),
            Duration::from_secs(3)
        );
    }
}
