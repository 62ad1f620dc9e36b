#!/usr/bin/env bash
# Makes sure the DynamoDB lease-store tests have their server: moto (`moto[server]` from
# PyPI, a DynamoDB-compatible server) on loopback, in a virtualenv of its own under
# target/. Called by scripts/services.sh; also fine on its own.
#
# moto_server runs through scripts/moto_serial.py, which serves one write at a time:
# moto's threads can otherwise let two conditional writes of one item both pass.
#
# Idempotent: a server that already answers on the port is left alone, and nothing this
# script did not start is ever stopped. Loopback only. The tests take the endpoint from
# LOCK_CORE_DYNAMODB_ENDPOINT (default http://127.0.0.1:5005) and set fake credentials
# and a fixed region themselves; target/dynamodb.env has the same settings for a shell
# (`set -a; . target/dynamodb.env; set +a`), so that nothing ever reaches real AWS.
set -euo pipefail
cd "$(dirname "$0")/.."

ENDPOINT="${LOCK_CORE_DYNAMODB_ENDPOINT:-http://127.0.0.1:5005}"
VENV="target/moto-venv"
MOTO_SPEC='moto[server]>=5,<6'

say() { printf 'services: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

rest="${ENDPOINT#http://}"
[ "$rest" != "$ENDPOINT" ] || die "LOCK_CORE_DYNAMODB_ENDPOINT must be http://127.0.0.1:PORT, got '$ENDPOINT'"
rest="${rest%%/*}"
HOST="${rest%:*}"; PORT="${rest##*:}"
[ "$HOST" = "127.0.0.1" ] || die "refusing to manage a DynamoDB server on '$HOST' (127.0.0.1 only)"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "no port in LOCK_CORE_DYNAMODB_ENDPOINT '$ENDPOINT'"

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Answers like DynamoDB (an empty ListTables is enough; moto accepts fake credentials).
dynamo_up() {
  tcp_open 127.0.0.1 "$PORT" || return 1
  command -v curl >/dev/null 2>&1 || return 0
  curl -sf -m 3 -X POST "$ENDPOINT/" \
    -H 'Content-Type: application/x-amz-json-1.0' \
    -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00' \
    -d '{}' | grep -q TableNames
}

write_env() {
  mkdir -p target
  cat >target/dynamodb.env <<ENV
LOCK_CORE_DYNAMODB_ENDPOINT=$ENDPOINT
AWS_ENDPOINT_URL=$ENDPOINT
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
AWS_REGION=us-east-1
ENV
}

ensure_venv() {
  if [ -x "$VENV/bin/moto_server" ]; then return 0; fi
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "python3-venv missing and not root: apt-get install -y python3-venv"
    say "apt-get update"; DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    say "installing python3-venv"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  fi
  say "making $VENV with $MOTO_SPEC"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$MOTO_SPEC" >&2 \
    || die "pip could not install $MOTO_SPEC"
  [ -x "$VENV/bin/moto_server" ] || die "no moto_server in $VENV"
}

write_env
# The tests also start moto servers of their own from the virtualenv (a restart test):
# it must exist even when a server already answers.
ensure_venv
if dynamo_up; then
  say "DynamoDB (moto) answers on $ENDPOINT"
  exit 0
fi
tcp_open 127.0.0.1 "$PORT" && die "something that is not DynamoDB listens on 127.0.0.1:$PORT"
say "starting moto_server (one write at a time) on 127.0.0.1:$PORT"
setsid nohup "$VENV/bin/python" scripts/moto_serial.py -H 127.0.0.1 -p "$PORT" >"target/moto-$PORT.log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if dynamo_up; then say "ready: $ENDPOINT (moto)"; exit 0; fi
  sleep 0.5
done
die "moto_server did not come up on $ENDPOINT (see target/moto-$PORT.log)"
