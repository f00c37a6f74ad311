#!/bin/bash
# Create throughput, same run: an embedded server (today's single process) against hosts mode with
# 100 in-process sim agents (openwinv-bench hosts-create); then the time to see a stopped agent's host
# offline. Usage: crates/bench/scripts/hosts_create.sh [postgres://…/db] (TOTAL=1000). Needs debug builds
# of openwinv and openwinv-bench (cargo build -p openwinv -p openwinv-bench), and psql for PostgreSQL.
set -e
trap 'for p in ${TMPDIR:-/tmp}/owv-hosts-bench-*/pid; do kill $(cat $p) 2>/dev/null || true; done' EXIT
cd "$(dirname "$0")/../../.."
B=target/debug/openwinv-bench
O=target/debug/openwinv
DB="$1"   # empty for sqlite, else a postgres URL (fresh database per server)
TOTAL=${TOTAL:-1000}
run_server() { # name, extra args...
  local name=$1; shift
  local d=${TMPDIR:-/tmp}/owv-hosts-bench-$name; rm -rf $d; mkdir -p $d
  local dbargs=()
  if [ -n "$DB" ]; then
    psql "$DB" -qc "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
    dbargs=(--database "${DB%/*}/$name")
  fi
  OPENWINV_BOOTSTRAP_ACCESS_KEY=BENCHKEY0000000000AA OPENWINV_BOOTSTRAP_SECRET_KEY=benchsecretbenchsecretbenchsecret12 \
    RUST_LOG=warn $O serve --listen 127.0.0.1:$PORT --data-dir $d/data --sim-delay 0 --default-rate-limit 0 "${dbargs[@]}" "$@" >$d/out 2>$d/err &
  echo $! > $d/pid
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.2; done
  curl -sf -X PUT -H "Authorization: Bearer $(cat $d/data/admin-token)" -H 'content-type: application/json' \
    -d '{"instances": 100000, "vcpu": 100000}' http://127.0.0.1:$PORT/admin/v1/accounts/dev/quota >/dev/null
}
PORT=18801 run_server embedded
$B create --endpoint http://127.0.0.1:18801 --access-key BENCHKEY0000000000AA --secret-key benchsecretbenchsecretbenchsecret12 --total $TOTAL --concurrency 32 2>&1 | sed 's/^/embedded: /'
kill $(cat ${TMPDIR:-/tmp}/owv-hosts-bench-embedded/pid)
PORT=18802 run_server hosts --placement hosts
$B hosts-create --endpoint http://127.0.0.1:18802 --access-key BENCHKEY0000000000AA --secret-key benchsecretbenchsecretbenchsecret12 \
   --admin-token "$(cat ${TMPDIR:-/tmp}/owv-hosts-bench-hosts/data/admin-token)" --hosts 100 --total $TOTAL --concurrency 32 2>&1 | grep -v "registered with" | sed 's/^/hosts: /'
kill $(cat ${TMPDIR:-/tmp}/owv-hosts-bench-hosts/pid)
