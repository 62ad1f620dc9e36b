//! Lease store on Redis: fault tests against a real server with real child processes.
//! Needs the server from `scripts/services.sh` (or `LOCK_CORE_REDIS_URL`).

mod lease_support;

use lease_support::{child_main, scenarios, Kind};

const KIND: Kind = Kind::Redis;

/// Entry point of the child processes (re-executed test binary); a no-op otherwise.
#[test]
#[ignore = "child-process entry point of the lease tests"]
fn lease_child() {
    child_main();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_read_modify_write() {
    scenarios::many_processes_read_modify_write(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_holder_waiter_takes_over() {
    scenarios::sigkill_holder(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_holder_is_fenced_and_told() {
    scenarios::sigstop_holder(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_behind_holders_back_is_lost() {
    scenarios::ended_behind_holders_back(KIND, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_behind_holders_back_is_lost() {
    scenarios::ended_behind_holders_back(KIND, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_reconnects_or_loses() {
    scenarios::connection_killed(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_timeout_is_honoured() {
    scenarios::acquire_timeout(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cancellations_leave_nothing_held() {
    scenarios::random_cancellations(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basics_and_macro_path() {
    scenarios::basics_and_macro_path(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_store_is_a_store_error() {
    scenarios::unreachable_store(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_attribute() {
    scenarios::through_the_attribute(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_prefix_and_tricky_names() {
    scenarios::redis_prefix_and_tricky_names().await;
}

#[test]
fn store_survives_runtime_changes() {
    scenarios::store_survives_runtime_changes(KIND);
}
