#!/usr/bin/env bash
# Makes sure the lease-store tests have their servers: PostgreSQL and Redis on loopback.
#
# Idempotent: servers that already answer are left alone. Otherwise it starts Debian's
# packaged ones on 127.0.0.1 (installing them first when they are missing and we run as
# root), and makes sure the database `test` exists. Fails loudly when it cannot.
#
# Uses LOCK_CORE_POSTGRES_URL / LOCK_CORE_REDIS_URL only to learn the ports; it refuses
# to touch anything that is not on loopback.
set -euo pipefail

PG_URL="${LOCK_CORE_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS_URL="${LOCK_CORE_REDIS_URL:-redis://127.0.0.1:6379}"

say() { printf 'services: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# host and port out of scheme://[user[:pw]@]host[:port][/...]
url_host() { local r="${1#*://}"; r="${r##*@}"; r="${r%%/*}"; r="${r%%\?*}"; printf '%s' "${r%:*}"; }
url_port() {
  local r="${1#*://}"; r="${r##*@}"; r="${r%%/*}"; r="${r%%\?*}"
  if [[ "$r" == *:* ]]; then printf '%s' "${r##*:}"; else printf '%s' "$2"; fi
}

PG_HOST="$(url_host "$PG_URL")";       PG_PORT="$(url_port "$PG_URL" 5432)"
REDIS_HOST="$(url_host "$REDIS_URL")"; REDIS_PORT="$(url_port "$REDIS_URL" 6379)"

for h in "$PG_HOST" "$REDIS_HOST"; do
  case "$h" in
    127.*|localhost|"[::1]"|::1) ;;
    *) die "refusing to manage a server on non-loopback host '$h' (loopback only)";;
  esac
done

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

pg_up() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT"
  else
    tcp_open 127.0.0.1 "$PG_PORT"
  fi
}

redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
  else
    tcp_open 127.0.0.1 "$REDIS_PORT"
  fi
}

wait_for() { # name check-fn
  local i
  for i in $(seq 1 60); do
    if "$2"; then return 0; fi
    sleep 0.5
  done
  die "$1 did not come up on 127.0.0.1"
}

APT_UPDATED=0
install_pkgs() {
  [ "$(id -u)" = 0 ] || die "$* missing and not root: install them (apt-get install -y $*) or point LOCK_CORE_*_URL at running servers"
  command -v apt-get >/dev/null 2>&1 || die "$* missing and no apt-get to install them"
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

pg_as_admin() { # runs psql as the cluster superuser
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
    (cd / && runuser -u postgres -- psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@") \
      || (cd / && runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qAt "$@")
  else
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"
  fi
}

# ---- PostgreSQL ----
if pg_up; then
  say "PostgreSQL answers on 127.0.0.1:$PG_PORT"
else
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    install_pkgs postgresql
  fi
  ver="$(ls /etc/postgresql | sort -V | tail -n1)"
  [ -n "$ver" ] || die "no PostgreSQL cluster under /etc/postgresql"
  conf="/etc/postgresql/$ver/main/postgresql.conf"
  # Loopback only, and let local test connections in without a password (first match
  # wins in pg_hba.conf, so prepending is enough; other rules are kept).
  if [ -w "$conf" ]; then
    sed -i -E "s/^#?listen_addresses.*/listen_addresses = '127.0.0.1'/" "$conf"
  fi
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if [ -w "$hba" ] && ! grep -qE '^host +all +all +127\.0\.0\.1/32 +trust' "$hba"; then
    { printf '%s\n' '# lock-core tests (scripts/services.sh): loopback only' \
        'local all all trust' 'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust'
      cat "$hba"; } >"$hba.new" && cat "$hba.new" >"$hba" && rm -f "$hba.new"
  fi
  say "starting PostgreSQL $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || die "pg_ctlcluster could not start PostgreSQL $ver"
  wait_for PostgreSQL pg_up
fi

# ---- the `test` database ----
DB="${PG_URL##*/}"; DB="${DB%%\?*}"; DB="${DB:-test}"
[[ "$DB" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "unexpected database name '$DB'"
if command -v psql >/dev/null 2>&1; then
  if [ "$(pg_as_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" 2>/dev/null)" != "1" ]; then
    say "creating database $DB"
    pg_as_admin -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null || die "cannot create database $DB"
  fi
  [ "$(pg_as_admin -d "$DB" -c 'SELECT 1')" = "1" ] || die "database $DB does not answer"
  say "database $DB ready"
else
  say "psql not found: cannot check that database $DB exists"
fi

# ---- Redis ----
if redis_up; then
  say "Redis answers on 127.0.0.1:$REDIS_PORT"
else
  command -v redis-server >/dev/null 2>&1 || install_pkgs redis-server
  say "starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    >/dev/null || die "redis-server would not start"
  wait_for Redis redis_up
fi

"$(dirname "$0")/services-dynamodb.sh"
say "ready: $PG_URL (db $DB), $REDIS_URL"
"$(dirname "$0")/services-etcd.sh" # etcd (3 members on loopback)
