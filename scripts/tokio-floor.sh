#!/usr/bin/env bash
# Builds and tests lock-core against the oldest Tokio it supports, with no default
# features (what a sync-only or non-Tokio user compiles).
#
# Two floors, both tested:
# - Tokio 1.22.0 without default features (no `task-ids`; `Handle::runtime_flavor` sets
#   it): what a crate pinned to an older Tokio builds (serial_test's own suite pins 1.38.2).
# - Tokio 1.41.1 with `task-ids`: `tokio::task::try_id` (which task a sync verb runs in,
#   for re-entry checks) is not in earlier releases.
# The optional lease stores are left out: their clients (tokio-postgres, redis,
# etcd-client, the AWS SDK) set floors of their own.
#
# Works in target/tokio-floor: a workspace of its own with a copy of lock-core (store
# dependencies stripped) and its own lock file, so the main lock file is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
work="target/tokio-floor"
rm -rf "$work/ws"
mkdir -p "$work/ws"
cp -r lock-core "$work/ws/lock-core"
ln -s "$root/lock-macros" "$work/ws/lock-macros"
ln -s "$root/lock-task-ids" "$work/ws/lock-task-ids"
# Without the optional stores: their dependency lines and features.
grep -vE '^(tokio-postgres|deadpool-postgres|redis|futures-core|etcd-client|aws-sdk-dynamodb|aws-config|aws-smithy[a-z-]*|aws-types) *=|^(postgres|redis|etcd|dynamodb) *= *\[' \
  lock-core/Cargo.toml > "$work/ws/manifest-with-task-ids"
# Cargo resolves every optional dependency of a workspace member (of a dependency, only
# the enabled ones): the first floor's manifest leaves out `lock-core-task-ids` (which
# needs 1.41), as a user's build without that feature never sees it.
grep -vE '^lock-core-task-ids *=' "$work/ws/manifest-with-task-ids" |
  sed -e 's/^default = .*/default = ["rt-multi-thread"]/' -e 's/^task-ids = .*/task-ids = []/' > "$work/ws/manifest-without-task-ids"
sed -e 's/^members = .*/members = ["lock-core", "lock-macros"]/' -e '/^default-members = /d' \
  Cargo.toml > "$work/ws/workspace-without-task-ids"
sed -e 's/^members = .*/members = ["lock-core", "lock-macros", "lock-task-ids"]/' -e '/^default-members = /d' \
  Cargo.toml > "$work/ws/workspace-with-task-ids"
cd "$work/ws"
floor() { # <with|without> <tokio version> <cargo feature arguments...>
  cp "manifest-$1-task-ids" lock-core/Cargo.toml
  cp "workspace-$1-task-ids" Cargo.toml
  local version="$2"
  shift 2
  cargo generate-lockfile --quiet
  cargo update --quiet -p tokio --precise "$version"
  echo "tokio floor: $(grep -A1 '^name = "tokio"$' Cargo.lock | sed -n 's/^version = //p') ($*)"
  CARGO_TARGET_DIR="$root/$work/target" cargo test -p lock-core --lib --no-default-features "$@"
}
floor without "${LOCK_CORE_TOKIO_FLOOR:-1.22.0}"
floor with "${LOCK_CORE_TOKIO_FLOOR_TASK_IDS:-1.41.1}" --features task-ids
