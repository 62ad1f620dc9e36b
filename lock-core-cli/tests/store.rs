//! `--store` on PostgreSQL, Redis, etcd and DynamoDB (with the `dynamodb` feature, against
//! moto): the fencing token reaches CMD and grows, busy
//! leases exit 75 naming the holder, `status --store --json` lists them, and a lease
//! deleted behind `run`'s back stops CMD (SIGTERM, then SIGKILL) with exit 76.

mod support;

use std::ffi::OsStr;
use std::time::{Duration, Instant};

#[cfg(feature = "etcd")]
use lock_core::lease::etcd::{etcd_client, EtcdStore};
use lock_core::lease::postgres::tokio_postgres;
use lock_core::lease::redis::{redis, RedisStore};
use serde_json::Value;
use support::*;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Postgres,
    Redis,
    #[cfg(feature = "etcd")]
    Etcd,
    #[cfg(feature = "dynamodb")]
    Dynamo,
}

#[cfg(feature = "etcd")]
fn etcd_url() -> String {
    std::env::var("LOCK_CORE_ETCD_URL")
        .unwrap_or_else(|_| "etcd://127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793".to_owned())
}

/// The keys under `prefix` in etcd (deleted first if `delete`): how many there were.
#[cfg(feature = "etcd")]
fn etcd_keys(prefix: String, delete: bool) -> usize {
    block_on(async {
        let eps = EtcdStore::new(&etcd_url()).unwrap().endpoints().to_vec();
        let mut c = etcd_client::Client::connect(eps, None)
            .await
            .expect("connect to etcd");
        if delete {
            let opts = etcd_client::DeleteOptions::new().with_prefix();
            c.delete(prefix, Some(opts))
                .await
                .expect("delete")
                .deleted() as usize
        } else {
            let opts = etcd_client::GetOptions::new()
                .with_prefix()
                .with_keys_only();
            c.get(prefix, Some(opts)).await.expect("read").kvs().len()
        }
    })
}

#[cfg(feature = "dynamodb")]
const DYNAMO_TABLE: &str = "lock_core_cli_test";

/// A DynamoDB client for the test server, with fake credentials.
#[cfg(feature = "dynamodb")]
fn dynamo_client() -> lock_core::lease::dynamodb::aws_sdk_dynamodb::Client {
    use lock_core::lease::dynamodb::aws_sdk_dynamodb as ddb;
    let config = ddb::Config::builder()
        .behavior_version(ddb::config::BehaviorVersion::latest())
        .endpoint_url(dynamo_endpoint())
        .region(ddb::config::Region::new("us-east-1"))
        .credentials_provider(ddb::config::Credentials::new(
            "test", "test", None, None, "t",
        ))
        .build();
    ddb::Client::from_conf(config)
}

#[cfg(feature = "dynamodb")]
fn dynamo_item(
    name: &str,
) -> Option<
    std::collections::HashMap<
        String,
        lock_core::lease::dynamodb::aws_sdk_dynamodb::types::AttributeValue,
    >,
> {
    use lock_core::lease::dynamodb::aws_sdk_dynamodb::types::AttributeValue;
    block_on(async {
        dynamo_client()
            .get_item()
            .table_name(DYNAMO_TABLE)
            .key("name", AttributeValue::S(name.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
    })
}

impl Kind {
    fn url(self) -> String {
        match self {
            Kind::Postgres => pg_url(),
            Kind::Redis => redis_url(),
            #[cfg(feature = "etcd")]
            Kind::Etcd => etcd_url(),
            #[cfg(feature = "dynamodb")]
            Kind::Dynamo => format!("dynamodb://{DYNAMO_TABLE}"),
        }
    }

    fn backend(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Redis => "redis",
            #[cfg(feature = "etcd")]
            Kind::Etcd => "etcd",
            #[cfg(feature = "dynamodb")]
            Kind::Dynamo => "dynamodb",
        }
    }

    /// How many waiters the store's queue of `name` records (see the stores' layouts:
    /// `waiters` in `lock-core/src/lease/postgres/sql.rs`, `w` in the Redis scripts).
    fn waiters(self, name: &str) -> usize {
        #[cfg(feature = "etcd")]
        if let Kind::Etcd = self {
            let store = EtcdStore::new(&etcd_url()).unwrap();
            return etcd_keys(format!("{}w/", store.name_prefix(name)), false);
        }
        let raw: Option<String> = match self {
            Kind::Postgres => block_on(async {
                let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
                    .await
                    .expect("connect to PostgreSQL");
                let task = tokio::spawn(conn);
                let row = client
                    .query_opt(
                        "SELECT waiters::text FROM lock_core_locks WHERE name = $1",
                        &[&name],
                    )
                    .await
                    .expect("read the row");
                drop(client);
                let _ = task.await;
                row.map(|r| r.get(0))
            }),
            Kind::Redis => {
                let key = RedisStore::new(&redis_url()).unwrap().lease_key(name);
                let client = redis::Client::open(redis_url()).unwrap();
                let mut conn = client.get_connection().expect("connect to Redis");
                redis::cmd("GET").arg(&key).query(&mut conn).unwrap()
            }
            #[cfg(feature = "etcd")]
            Kind::Etcd => unreachable!(),
            #[cfg(feature = "dynamodb")]
            Kind::Dynamo => {
                return dynamo_item(name)
                    .and_then(|i| {
                        i.get("waiters")
                            .and_then(|w| w.as_m().ok())
                            .map(|w| w.len())
                    })
                    .unwrap_or(0)
            }
        };
        let Some(raw) = raw else { return 0 };
        let v: Value = serde_json::from_str(&raw).expect("the store's JSON");
        let w = match self {
            Kind::Redis => v["w"].clone(),
            _ => v,
        };
        match w {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => 0,
        }
    }

    /// Deletes the lease of `name` in the store, as an operator (or a bug) might.
    fn delete(self, name: &str) {
        match self {
            Kind::Postgres => {
                block_on(async {
                    let (client, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
                        .await
                        .expect("connect to PostgreSQL");
                    let task = tokio::spawn(conn);
                    let n = client
                        .execute("DELETE FROM lock_core_locks WHERE name = $1", &[&name])
                        .await
                        .expect("delete the row");
                    assert_eq!(n, 1, "the lease row existed");
                    drop(client);
                    let _ = task.await;
                });
            }
            Kind::Redis => {
                let key = RedisStore::new(&redis_url()).unwrap().lease_key(name);
                let client = redis::Client::open(redis_url()).unwrap();
                let mut conn = client.get_connection().expect("connect to Redis");
                let n: i64 = redis::cmd("DEL").arg(&key).query(&mut conn).unwrap();
                assert_eq!(n, 1, "the lease key {key} existed");
            }
            #[cfg(feature = "etcd")]
            Kind::Etcd => {
                let store = EtcdStore::new(&etcd_url()).unwrap();
                let n = etcd_keys(format!("{}h/", store.name_prefix(name)), true);
                assert_eq!(n, 1, "the holder key existed");
            }
            // The holders go; the item (and its fence counter) stays.
            #[cfg(feature = "dynamodb")]
            Kind::Dynamo => {
                use lock_core::lease::dynamodb::aws_sdk_dynamodb::types::AttributeValue;
                let item = dynamo_item(name).expect("the lease item exists");
                let holders = item
                    .get("holders")
                    .and_then(|h| h.as_m().ok())
                    .map_or(0, |h| h.len());
                assert_eq!(holders, 1, "one holder");
                block_on(async {
                    dynamo_client()
                        .update_item()
                        .table_name(DYNAMO_TABLE)
                        .key("name", AttributeValue::S(name.to_owned()))
                        .update_expression("SET #h = :empty ADD #v :one")
                        .expression_attribute_names("#h", "holders")
                        .expression_attribute_names("#v", "ver")
                        .expression_attribute_values(
                            ":empty",
                            AttributeValue::M(Default::default()),
                        )
                        .expression_attribute_values(":one", AttributeValue::N("1".into()))
                        .send()
                        .await
                        .expect("UpdateItem")
                });
            }
        }
    }
}

fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fut)
}

fn run_args<'a>(name: &'a str, url: &'a str, extra: &[&'a str], cmd: &'a str) -> Vec<&'a OsStr> {
    [
        OsStr::new("run"),
        OsStr::new(name),
        OsStr::new("--store"),
        OsStr::new(url),
    ]
    .into_iter()
    .chain(extra.iter().map(|s| OsStr::new(*s)))
    .chain(["--", "sh", "-c", cmd].map(OsStr::new))
    .collect()
}

fn fences_grow_and_busy_leases_are_refused(kind: Kind) {
    let t = TempDir::new("fence");
    let url = kind.url();
    let name = unique("fence");
    let out = t.join("fence");
    let cmd = r#"printf '%s %s' "$LOCK_CORE_LOCK" "$LOCK_CORE_FENCE" > "$OUT""#;
    let fence_of = |done: &Done| {
        assert_eq!(done.code, Some(0), "{kind:?}: {done:?}");
        let text = std::fs::read_to_string(&out).expect("CMD wrote its fence");
        let (lock, fence) = text.split_once(' ').expect("name and fence");
        assert_eq!(lock, name);
        let fence: u64 = fence
            .parse()
            .unwrap_or_else(|_| panic!("a number: {text:?}"));
        assert!(fence > 0, "{text}");
        fence
    };
    let env = [("OUT", out.as_os_str())];
    let first = fence_of(&run(&t, run_args(&name, &url, &[], cmd), &env));
    let second = fence_of(&run(&t, run_args(&name, &url, &[], cmd), &env));
    assert!(
        second > first,
        "{kind:?}: fences grow: {first} then {second}"
    );

    // Held by a `run` in the background: busy for another, which names the holder.
    let mark = t.join("inside");
    let mut holder = start(
        &t,
        run_args(
            &name,
            &url,
            &[],
            r#"echo "$LOCK_CORE_FENCE" > "$MARK"; exec sleep 30"#,
        ),
        &[("MARK", mark.as_os_str())],
    );
    holder.wait_for_file(&mark, "the lease holder's CMD to be inside");
    let busy = run(&t, run_args(&name, &url, &["--timeout", "0"], "true"), &[]);
    assert_eq!(busy.code, Some(75), "{kind:?}: {busy:?}");
    assert!(
        busy.stderr.contains(&format!("pid {}", holder.pid())),
        "{busy:?}"
    );
    assert_eq!(busy.stderr.lines().count(), 1, "{busy:?}");
    let timed_out = run(
        &t,
        run_args(&name, &url, &["--timeout", "200ms"], "true"),
        &[],
    );
    assert_eq!(timed_out.code, Some(75), "{kind:?}: {timed_out:?}");

    // `status --store --json` lists the lease with the fence CMD got.
    let held_fence: u64 = std::fs::read_to_string(&mark)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(held_fence > second);
    let done = run(&t, ["status", "--store", &url, "--json"], &[]);
    assert_eq!(done.code, Some(0), "{done:?}");
    let v: Value = serde_json::from_str(&done.stdout).expect("JSON");
    assert_eq!(v["schema"], 1);
    assert_eq!(v["backend"], kind.backend());
    assert!(
        v["location"].as_str().unwrap().starts_with(kind.backend()),
        "{v}"
    );
    let lease = v["leases"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["name"] == name))
        .unwrap_or_else(|| panic!("lease not listed: {v}"));
    assert_eq!(lease["mode"], "exclusive", "{lease}");
    assert!(lease["permits"].is_null(), "{lease}");
    assert_eq!(lease["fence"], held_fence, "{lease}");
    assert_eq!(lease["pid"], holder.pid(), "{lease}");
    assert!(lease["host"].is_string(), "{lease}");
    assert!(lease["owner"]
        .as_str()
        .unwrap()
        .contains(&format!("/{}/", holder.pid())));
    let left = lease["expires_in_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 30_000, "{lease}");
    let table = run(&t, ["status", "--store", &url], &[]);
    assert!(
        table.stdout.contains(&name) && table.stdout.contains("FENCE"),
        "{table:?}"
    );

    // SIGTERM to `run`: CMD (exec'd sleep) dies of it, the lease is given back.
    holder.signal(libc::SIGTERM);
    let done = holder.finish(DEADLINE);
    assert_eq!(done.code, Some(128 + libc::SIGTERM), "{done:?}");
    let after = fence_of(&run(
        &t,
        run_args(&name, &url, &["--timeout", "0"], cmd),
        &env,
    ));
    assert!(after > held_fence);
}

#[test]
fn postgres_fences_and_busy() {
    fences_grow_and_busy_leases_are_refused(Kind::Postgres);
}

#[test]
fn redis_fences_and_busy() {
    fences_grow_and_busy_leases_are_refused(Kind::Redis);
}

#[cfg(feature = "dynamodb")]
#[test]
fn dynamodb_fences_and_busy() {
    fences_grow_and_busy_leases_are_refused(Kind::Dynamo);
}

/// Renewal runs every TTL/3: with `--lease 1s` the loss is seen within ~333 ms.
const RENEWAL: Duration = Duration::from_millis(334);
const GRACE: Duration = Duration::from_millis(500);
/// Scheduling and process start-up slack on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(700);

fn deleted_lease_stops_cmd(kind: Kind, cmd_ignores_term: bool) {
    let t = TempDir::new("lost");
    let url = kind.url();
    let name = unique("lost");
    let mark = t.join("inside");
    let cmd = if cmd_ignores_term {
        r#"exec 2>/dev/null; trap '' TERM; sleep 30 & echo $! > "$MARK.child"; echo "$LOCK_CORE_FENCE" > "$MARK"; i=0; while [ $i -lt 600 ]; do i=$((i+1)); sleep 0.05; done; exit 9"#
    } else {
        r#"exec 2>/dev/null; trap 'echo term > "$MARK.term"; exit 0' TERM; sleep 30 & echo $! > "$MARK.child"; echo "$LOCK_CORE_FENCE" > "$MARK"; i=0; while [ $i -lt 600 ]; do i=$((i+1)); sleep 0.05; done; exit 9"#
    };
    let mut running = start(
        &t,
        run_args(&name, &url, &["--lease", "1s", "--grace", "500ms"], cmd),
        &[("MARK", mark.as_os_str())],
    );
    running.wait_for_file(&mark, "CMD to be inside");
    let deleted = Instant::now();
    kind.delete(&name);
    let done = running.finish(DEADLINE);
    let took = deleted.elapsed();
    assert_eq!(done.code, Some(76), "{kind:?}: {done:?}");
    let bound = if cmd_ignores_term {
        RENEWAL + GRACE + SLACK
    } else {
        RENEWAL + SLACK
    };
    assert!(
        took <= bound,
        "{kind:?}: CMD stopped after {took:?} (bound {bound:?}): {done:?}"
    );
    assert!(done.stderr.contains("lease lost"), "{done:?}");
    assert!(
        done.stderr.contains("refused the renewal"),
        "says why: {done:?}"
    );
    if cmd_ignores_term {
        assert!(took >= GRACE, "SIGKILL only after the grace: {took:?}");
        assert!(done.stderr.contains("was killed"), "{done:?}");
    } else {
        assert!(t.join("inside.term").exists(), "CMD got SIGTERM first");
        assert!(done.stderr.contains("process group stopped"), "{done:?}");
    }
    // The whole job is stopped before `run` exits, not only CMD.
    let child = pids_in(&t.join("inside.child"));
    assert_eq!(child.len(), 1, "CMD's child recorded its pid");
    assert!(
        !process_alive(child[0]),
        "{kind:?}: CMD's child outlived the lost lease: {done:?}"
    );
    for line in done.stderr.lines() {
        assert!(line.starts_with("lock-core: "), "{done:?}");
    }
}

#[test]
fn postgres_lease_deleted_behind_runs_back() {
    deleted_lease_stops_cmd(Kind::Postgres, false);
    deleted_lease_stops_cmd(Kind::Postgres, true);
}

#[cfg(feature = "dynamodb")]
#[test]
fn dynamodb_lease_deleted_behind_runs_back() {
    deleted_lease_stops_cmd(Kind::Dynamo, false);
    deleted_lease_stops_cmd(Kind::Dynamo, true);
}

#[test]
fn redis_lease_deleted_behind_runs_back() {
    deleted_lease_stops_cmd(Kind::Redis, false);
    deleted_lease_stops_cmd(Kind::Redis, true);
}

/// A wait that ends without the lease (interrupted, timed out) leaves the store's queue
/// before `lock-core` exits, so that it holds up no later waiter.
fn ended_waits_leave_the_queue(kind: Kind) {
    let t = TempDir::new("queue");
    let url = kind.url();
    let name = unique("queue");
    let mark = t.join("inside");
    let mut holder = start(
        &t,
        run_args(&name, &url, &[], r#"echo in > "$MARK"; exec sleep 30"#),
        &[("MARK", mark.as_os_str())],
    );
    holder.wait_for_file(&mark, "the holder's CMD to be inside");
    assert_eq!(kind.waiters(&name), 0);

    let waiter = start(&t, run_args(&name, &url, &[], "true"), &[]);
    wait_until("the waiter to queue in the store", || {
        kind.waiters(&name) == 1
    });
    waiter.signal(libc::SIGTERM);
    let done = waiter.finish(DEADLINE);
    assert_eq!(done.code, Some(128 + libc::SIGTERM), "{done:?}");
    assert_eq!(
        kind.waiters(&name),
        0,
        "{kind:?}: an interrupted wait left the queue"
    );

    let timed_out = run(
        &t,
        run_args(&name, &url, &["--timeout", "300ms"], "true"),
        &[],
    );
    assert_eq!(timed_out.code, Some(75), "{timed_out:?}");
    assert!(timed_out.stderr.contains("timed out"), "{timed_out:?}");
    assert!(
        timed_out.stderr.contains(&format!("pid {}", holder.pid())),
        "{timed_out:?}"
    );
    assert_eq!(
        kind.waiters(&name),
        0,
        "{kind:?}: a timed-out wait left the queue"
    );
}

#[test]
fn postgres_ended_waits_leave_the_queue() {
    ended_waits_leave_the_queue(Kind::Postgres);
}

#[test]
fn redis_ended_waits_leave_the_queue() {
    ended_waits_leave_the_queue(Kind::Redis);
}

#[cfg(feature = "etcd")]
#[test]
fn etcd_fences_and_busy() {
    fences_grow_and_busy_leases_are_refused(Kind::Etcd);
}

#[cfg(feature = "etcd")]
#[test]
fn etcd_lease_deleted_behind_runs_back() {
    deleted_lease_stops_cmd(Kind::Etcd, false);
    deleted_lease_stops_cmd(Kind::Etcd, true);
}

#[cfg(feature = "etcd")]
#[test]
fn etcd_ended_waits_leave_the_queue() {
    ended_waits_leave_the_queue(Kind::Etcd);
}

#[cfg(feature = "dynamodb")]
#[test]
fn dynamodb_ended_waits_leave_the_queue() {
    ended_waits_leave_the_queue(Kind::Dynamo);
}
