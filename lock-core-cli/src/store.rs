//! `--store URL`: which lease store a URL names, and what a lease's owner string says.

#[cfg(feature = "dynamodb")]
use lock_core::lease::dynamodb::DynamoDbStore;
#[cfg(feature = "etcd")]
use lock_core::lease::etcd::EtcdStore;
use lock_core::lease::postgres::PostgresStore;
use lock_core::lease::redis::RedisStore;

use crate::exit::{self, Failure};

/// A store named on the command line.
pub enum AnyStore {
    /// `postgres://…` or `postgresql://…`.
    Postgres(PostgresStore),
    /// `redis://…`, `rediss://…`, `redis+unix://…` or `unix://…`.
    Redis(RedisStore),
    /// `etcd://host:port,host:port,…` (`etcds://` is refused: TLS is not supported yet).
    #[cfg(feature = "etcd")]
    Etcd(EtcdStore),
    /// `dynamodb://TABLE` (built with the `dynamodb` feature).
    #[cfg(feature = "dynamodb")]
    Dynamo(DynamoDbStore),
}

/// The store `url` names. An unknown scheme or an invalid URL is a usage error (64);
/// the URL itself is never repeated (it may carry a password). Connects lazily.
pub fn open(url: &str) -> Result<AnyStore, Failure> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let invalid =
        |e: lock_core::LockError| Failure::new(exit::USAGE, format!("invalid --store URL: {e}"));
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => PostgresStore::new(url)
            .map(AnyStore::Postgres)
            .map_err(invalid),
        Some("redis" | "rediss" | "redis+unix" | "unix") => {
            RedisStore::new(url).map(AnyStore::Redis).map_err(invalid)
        }
        #[cfg(feature = "etcd")]
        Some("etcd" | "etcds") => EtcdStore::new(url).map(AnyStore::Etcd).map_err(invalid),
        #[cfg(not(feature = "etcd"))]
        Some("etcd" | "etcds") => Err(Failure::new(
            exit::USAGE,
            "this lock-core was built without etcd support: \
             install lock-core-cli with `--features etcd`",
        )),
        #[cfg(feature = "dynamodb")]
        Some("dynamodb") => DynamoDbStore::new(url)
            .map(AnyStore::Dynamo)
            .map_err(invalid),
        #[cfg(not(feature = "dynamodb"))]
        Some("dynamodb") => Err(Failure::new(
            exit::USAGE,
            "this lock-core was built without DynamoDB support: \
             install lock-core-cli with `--features dynamodb`",
        )),
        Some(other) => Err(Failure::new(
            exit::USAGE,
            format!(
                "unknown --store scheme `{}`: use postgres://…, redis://…, etcd://… or dynamodb://TABLE",
                other.escape_default()
            ),
        )),
        None => Err(Failure::new(
            exit::USAGE,
            "--store needs a URL: postgres://user@host:port/db, redis://host:port, etcd://host:port,… or dynamodb://TABLE",
        )),
    }
}

/// The pid and host out of one of lock-core's owner strings (`host/pid/nonce/n`); both
/// `None` for owners of other shapes.
pub fn owner_parts(owner: &str) -> (Option<u32>, Option<String>) {
    let parts: Vec<&str> = owner.split('/').collect();
    match parts.as_slice() {
        [host, pid, _, _] => match pid.parse() {
            Ok(pid) => (Some(pid), Some((*host).to_owned())),
            Err(_) => (None, None),
        },
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert!(matches!(
            open("postgres://u@127.0.0.1/db"),
            Ok(AnyStore::Postgres(_))
        ));
        assert!(matches!(
            open("redis://127.0.0.1:6379"),
            Ok(AnyStore::Redis(_))
        ));
        #[cfg(feature = "etcd")]
        assert!(matches!(
            open("etcd://127.0.0.1:2379,127.0.0.1:2380"),
            Ok(AnyStore::Etcd(_))
        ));
        #[cfg(not(feature = "etcd"))]
        assert_eq!(open("etcd://127.0.0.1:2379").err().unwrap().code, 64);
        assert_eq!(open("etcds://127.0.0.1:2379").err().unwrap().code, 64);
        let e = open("mysql://secret@h/db").err().unwrap();
        assert_eq!(e.code, 64);
        assert!(e.message.contains("`mysql`") && !e.message.contains("secret"));
        assert_eq!(open("nonsense").err().unwrap().code, 64);
        #[cfg(feature = "dynamodb")]
        assert!(matches!(
            open("dynamodb://app-locks"),
            Ok(AnyStore::Dynamo(_))
        ));
        #[cfg(not(feature = "dynamodb"))]
        assert!(open("dynamodb://app-locks")
            .err()
            .unwrap()
            .message
            .contains("--features dynamodb"));
        assert_eq!(open("dynamodb://x").err().unwrap().code, 64);
    }

    #[test]
    fn owners() {
        assert_eq!(
            owner_parts("build-3/4242/00ff/7"),
            (Some(4242), Some("build-3".to_owned()))
        );
        assert_eq!(owner_parts("someone else"), (None, None));
        assert_eq!(owner_parts("a/b/c/d"), (None, None));
    }
}
