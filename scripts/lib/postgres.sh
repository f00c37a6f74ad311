# Starts a private PostgreSQL for tests and benchmarks: a temporary directory, a free port,
# trust authentication on loopback, stopped and removed on exit. Sourced by scripts/test and
# scripts/bench. Sets OPENWINV_PG_URL. Needs `apt_install` and `die` from the caller.

find_pg_bin() {
  local d
  for d in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

PG_TMP=""
stop_private_postgres() {
  if [ -n "$PG_TMP" ]; then
    if [ -f "$PG_TMP/data/postmaster.pid" ]; then
      as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_TMP"
    PG_TMP=""
  fi
}

start_private_postgres() {
  PG_BIN=$(find_pg_bin) || { apt_install postgresql; PG_BIN=$(find_pg_bin) || die "PostgreSQL's initdb not found after install"; }
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
  fi
  PG_TMP=$(mktemp -d /tmp/openwinv-pg.XXXXXX)
  chmod 755 "$PG_TMP"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$PG_TMP"; fi
  as_pg "$PG_BIN/initdb" -D "$PG_TMP/data" -U postgres --auth=trust --no-locale -E UTF8 >"$PG_TMP/initdb.log" 2>&1 \
    || { cat "$PG_TMP/initdb.log"; die "initdb failed"; }
  local started="" port
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$(( 20000 + RANDOM % 30000 ))
    if as_pg "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/postgres.log" -w -t 60 \
        -o "-p $port -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
        start >/dev/null 2>&1; then
      started=1; break
    fi
  done
  [ -n "$started" ] || { cat "$PG_TMP/postgres.log" 2>/dev/null; die "could not start PostgreSQL"; }
  OPENWINV_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}
