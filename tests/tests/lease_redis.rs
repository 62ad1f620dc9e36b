//! Lease store on Redis: fault tests against a real server with real child processes.
//! Needs the server from `scripts/services.sh` (or `LOCK_CORE_REDIS_URL`).

mod lease_support;

use lease_support::{child_main, scenarios, waking, Kind};

conformance_tests!(super::KIND);
fault_tests!(
    exclusive => Mode::Exclusive,
    shared => Mode::Shared,
    permits => Mode::Permits(2),
);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_take_turns_woken_by_the_store() {
    waking::turns(KIND, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_take_turns_woken_by_the_store() {
    waking::turns(KIND, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_killed_mid_wait_still_wakes() {
    waking::listener_killed_mid_wait(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_waiter_leaves_the_queue_within_its_ttl() {
    waking::dead_waiter_leaves_queue(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_never_above_n_across_processes() {
    waking::permits_never_above_n(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_one_leader_and_takeover_after_sigkill() {
    waking::election(KIND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_in_every_shape() {
    scenarios::attribute_shapes(KIND).await;
}
