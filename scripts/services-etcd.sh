#!/usr/bin/env bash
# Makes sure the etcd lease-store tests have their cluster: 3 etcd members on loopback.
#
# Called by scripts/services.sh (or on its own). Idempotent: a cluster that already
# answers is left alone; members that do not answer are started (installing Debian's
# `etcd-server etcd-client`, and `protobuf-compiler`, which building the `etcd` feature
# needs, when they are missing and we run as root). Stops nothing.
#
# LOCK_CORE_ETCD_URL (default etcd://127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793)
# gives the client ports; peer ports are the client ports + 10. Data and logs go under
# LOCK_CORE_ETCD_DIR (default /tmp/lock-core-etcd), which also records the URL in `url`.
# Loopback only. (The fault tests start throwaway clusters of their own.)
set -euo pipefail

ETCD_URL="${LOCK_CORE_ETCD_URL:-etcd://127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793}"
ETCD_DIR="${LOCK_CORE_ETCD_DIR:-/tmp/lock-core-etcd}"

say() { printf 'services: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

install_pkgs() {
  [ "$(id -u)" = 0 ] || die "$* missing and not root: install them (apt-get install -y $*) or point LOCK_CORE_ETCD_URL at a running cluster"
  command -v apt-get >/dev/null 2>&1 || die "$* missing and no apt-get to install them"
  say "apt-get update"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if [ "${#missing[@]}" -gt 0 ]; then install_pkgs "${missing[@]}"; fi

hosts="${ETCD_URL#etcd://}"
IFS=',' read -r -a members <<<"$hosts"
[ "${#members[@]}" -ge 1 ] || die "no endpoints in LOCK_CORE_ETCD_URL '$ETCD_URL'"
for m in "${members[@]}"; do
  case "${m%:*}" in
    127.*|localhost) ;;
    *) die "refusing to manage an etcd member on non-loopback host '${m%:*}' (loopback only)";;
  esac
  [[ "${m##*:}" =~ ^[0-9]+$ ]] || die "endpoint '$m' needs a port"
done

endpoint_up() { ETCDCTL_API=3 etcdctl --endpoints="http://$1" --command-timeout=2s endpoint health >/dev/null 2>&1; }
cluster_up() {
  local m
  for m in "${members[@]}"; do endpoint_up "$m" || return 1; done
}

mkdir -p "$ETCD_DIR"
printf '%s\n' "$ETCD_URL" >"$ETCD_DIR/url"

if cluster_up; then
  say "etcd answers on $hosts"
  exit 0
fi

initial=""
i=0
for m in "${members[@]}"; do
  i=$((i + 1))
  initial+="${initial:+,}m$i=http://127.0.0.1:$(( ${m##*:} + 10 ))"
done

i=0
for m in "${members[@]}"; do
  i=$((i + 1))
  if endpoint_up "$m"; then continue; fi
  port="${m##*:}"
  peer=$((port + 10))
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port answers but not as a healthy etcd member: stop what listens there or set LOCK_CORE_ETCD_URL"
  fi
  say "starting etcd member m$i on 127.0.0.1:$port (peer $peer, data $ETCD_DIR/m$i)"
  # A member with data rejoins its cluster (the initial flags are then ignored).
  setsid nohup etcd --name "m$i" --data-dir "$ETCD_DIR/m$i" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$initial" --initial-cluster-token lock-core-services --initial-cluster-state new \
    --heartbeat-interval 50 --election-timeout 500 --logger zap --log-level warn \
    >>"$ETCD_DIR/m$i.log" 2>&1 </dev/null &
done

for _ in $(seq 1 60); do
  if cluster_up; then say "etcd ready: $ETCD_URL"; exit 0; fi
  sleep 0.5
done
die "the etcd cluster did not come up on $hosts (logs: $ETCD_DIR/m*.log)"
