//! Lease store on DynamoDB: conformance and fault tests against moto (a DynamoDB-compatible
//! server) with real child processes. Needs the server from `scripts/services.sh` (or
//! `LOCK_CORE_DYNAMODB_ENDPOINT`, a loopback `http://` endpoint); the protected resource
//! of the fenced writes is the PostgreSQL row of the other lease tests. Every client is
//! given that endpoint, fake credentials and a fixed region explicitly: nothing here can
//! reach real AWS.

mod lease_support;

use lease_support::{child_main, scenarios, waking, Kind};

conformance_tests!(super::KIND);

/// The fault tests of `lease_support` once per shape (the connection-kill one does not
/// apply: a DynamoDB client has no session to kill; see `moto_restarted_mid_run`).
macro_rules! dynamo_fault_tests {
    ($($shape:ident => $mode:expr),* $(,)?) => {
        $(
            mod $shape {
                use super::lease_support::scenarios;
                use lock_core::Mode;

                const MODE: Mode = $mode;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sigkill_holder_waiter_takes_over() {
                    scenarios::sigkill_holder(super::KIND, MODE).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sigstop_holder_is_fenced_and_told() {
                    scenarios::sigstop_holder(super::KIND, MODE).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn expired_behind_holders_back_is_lost() {
                    scenarios::ended_behind_holders_back(super::KIND, false, MODE).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn deleted_behind_holders_back_is_lost() {
                    scenarios::ended_behind_holders_back(super::KIND, true, MODE).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn acquire_timeout_is_honoured() {
                    scenarios::acquire_timeout(super::KIND, MODE).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn random_cancellations_leave_nothing_held() {
                    scenarios::random_cancellations(super::KIND, MODE).await;
                }
            }
        )*
    };
}

dynamo_fault_tests!(
    exclusive => Mode::Exclusive,
    shared => Mode::Shared,
    permits => Mode::Permits(2),
);

const KIND: Kind = Kind::Dynamo;

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

#[test]
fn store_survives_runtime_changes() {
    scenarios::store_survives_runtime_changes(KIND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_take_turns_polling() {
    waking::turns(KIND, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_take_turns_polling() {
    waking::turns(KIND, 4).await;
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

/// The turn rule step by step on the store's primitives: a queued waiter passed over
/// twice is due, and the next request of another owner is refused in its favour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_rule_on_the_primitives() {
    use lock_core::lease::{Attempt, LeaseStore, Request};
    use std::time::Duration;
    let store = lease_support::dynamo_store();
    let name = lease_support::unique("turn-rule");
    let ttl = Duration::from_secs(10);
    let ask = |owner: &'static str| {
        let (store, name) = (store.clone(), name.clone());
        async move {
            store
                .try_acquire(&Request::exclusive(&name, owner, ttl).queued(true))
                .await
                .expect("try_acquire")
        }
    };
    let mut held = match ask("a/1/x/1").await {
        Attempt::Acquired(l) => l,
        other => panic!("{other:?}"),
    };
    assert!(matches!(ask("b/2/x/1").await, Attempt::Held { .. }));
    for (i, owner) in ["a/1/x/2", "a/1/x/3"].into_iter().enumerate() {
        assert!(store.release(&name, &held).await.unwrap());
        held = match ask(owner).await {
            Attempt::Acquired(l) => l,
            other => panic!("turn {i}: {other:?}"),
        };
    }
    assert!(store.release(&name, &held).await.unwrap());
    match ask("a/1/x/4").await {
        Attempt::Held { holder, .. } => assert_eq!(holder.as_deref(), Some("b/2/x/1")),
        other => panic!("the due waiter must go first: {other:?}"),
    }
    assert!(matches!(ask("b/2/x/1").await, Attempt::Acquired(_)));
    eprintln!("{:?}", lease_support::dynamo_item(&name).await);
}
