#!/usr/bin/env bash
# Builds and tests lock-core against the oldest Tokio it supports, with no default
# features (what a sync-only or non-Tokio user compiles).
#
# The floor is Tokio 1.41: `tokio::task::try_id` (which task a sync verb runs in, for
# re-entry checks) is not in earlier releases. The optional lease stores are left out:
# their clients (tokio-postgres, redis, etcd-client, the AWS SDK) set floors of their own.
#
# Works in target/tokio-floor: a workspace of its own with a copy of lock-core (store
# dependencies stripped) and its own lock file, so the main lock file is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOR="${LOCK_CORE_TOKIO_FLOOR:-1.41.1}"
root="$PWD"
work="target/tokio-floor"
rm -rf "$work/ws"
mkdir -p "$work/ws"
cp -r lock-core "$work/ws/lock-core"
ln -s "$root/lock-macros" "$work/ws/lock-macros"
# Without the optional stores: their dependency lines and features.
grep -vE '^(tokio-postgres|deadpool-postgres|redis|futures-core|etcd-client|aws-sdk-dynamodb|aws-config|aws-smithy[a-z-]*|aws-types) *=|^(postgres|redis|etcd|dynamodb) *= *\[' \
  lock-core/Cargo.toml > "$work/ws/lock-core/Cargo.toml"
sed -e 's/^members = .*/members = ["lock-core", "lock-macros"]/' -e '/^default-members = /d' \
  Cargo.toml > "$work/ws/Cargo.toml"
cd "$work/ws"
cargo generate-lockfile --quiet
cargo update --quiet -p tokio --precise "$FLOOR"
echo "tokio floor: $(grep -A1 '^name = "tokio"$' Cargo.lock | sed -n 's/^version = //p')"
CARGO_TARGET_DIR="$root/$work/target" cargo test -p lock-core --lib --no-default-features
