//! Lease store on Redis: fault tests against a real server with real child processes.
//! Needs the server from `scripts/services.sh` (or `LOCK_CORE_REDIS_URL`).

mod lease_support;

use lease_support::{child_main, scenarios, waking, Kind};

conformance_tests!(super::KIND);
common_lease_tests!(KIND);
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
async fn custom_prefix_and_tricky_names() {
    scenarios::redis_prefix_and_tricky_names().await;
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
