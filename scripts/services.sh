#!/usr/bin/env bash
# The database servers the test suite runs against, for developers and CI:
#
#   scripts/services.sh start    start them (idempotent); prints the DSN the tests use
#   scripts/services.sh stop     stop them
#   scripts/services.sh status   exit 0 when they run
#   scripts/services.sh restart fast|immediate
#                                restart PostgreSQL (pg_ctl -m MODE): the scale-out tests' outage
#
# PostgreSQL: a throwaway cluster (initdb, then pg_ctl) in $MAINSPRING_SERVICES_DIR/postgres
# (default /tmp/mainspring-services), listening on 127.0.0.1:$MAINSPRING_POSTGRES_PORT (54329,
# clear of a system cluster on 5432), with trust authentication for the postgres user. Run as
# root it runs as the postgres user (PostgreSQL refuses to run as root). Stock durability
# settings (fsync and synchronous_commit on), so benchmarks measure what production gets.
#
# Where PostgreSQL is not installed, start installs Debian's package when it runs as root with
# apt-get (set MAINSPRING_INSTALL_SERVICES=0 not to); otherwise it says so and succeeds: the
# tests that need it skip (unless CI=true, where a missing server fails them).
set -euo pipefail

services_dir=${MAINSPRING_SERVICES_DIR:-/tmp/mainspring-services}
port=${MAINSPRING_POSTGRES_PORT:-54329}
data="$services_dir/postgres"
dsn="postgresql://postgres@127.0.0.1:$port/postgres"

pg_bin() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$found" && -x "$found/pg_ctl" ]]; then
        echo "$found"
    elif command -v pg_ctl >/dev/null; then
        dirname "$(command -v pg_ctl)"
    fi
}

as_owner() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install_postgres() {
    # On a fresh Debian machine, as root, the test command brings its own server (unless
    # MAINSPRING_INSTALL_SERVICES=0): Debian's package, whose default cluster is not used.
    if [[ $(id -u) == 0 && "${MAINSPRING_INSTALL_SERVICES:-1}" != 0 ]] && command -v apt-get >/dev/null; then
        echo "installing PostgreSQL (Debian's postgresql package) for the tests" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; } \
            || true
    fi
}

start_postgres() {
    local bin
    bin=$(pg_bin)
    if [[ -z "$bin" ]]; then
        install_postgres
        bin=$(pg_bin)
    fi
    if [[ -z "$bin" ]]; then
        echo "PostgreSQL is not installed: its tests will skip (apt-get install postgresql)" >&2
        return 0
    fi
    mkdir -p "$services_dir"
    if [[ $(id -u) == 0 ]]; then
        chmod 755 "$services_dir"
        mkdir -p "$data" && chown postgres: "$data"
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
        as_owner "$bin/initdb" --pgdata="$data" --username=postgres --auth=trust \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if ! as_owner "$bin/pg_ctl" --pgdata="$data" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" --pgdata="$data" --log="$data/server.log" --wait \
            --options="-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=300" \
            start >/dev/null
    fi
    echo "$dsn"
}

stop_postgres() {
    local bin
    bin=$(pg_bin)
    if [[ -n "$bin" && -f "$data/PG_VERSION" ]]; then
        as_owner "$bin/pg_ctl" --pgdata="$data" --mode=fast stop >/dev/null 2>&1 || true
    fi
}

restart_postgres() {
    local bin mode=${1:-fast}
    bin=$(pg_bin)
    as_owner "$bin/pg_ctl" --pgdata="$data" --mode="$mode" --log="$data/server.log" --wait \
        --options="-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=300" \
        restart >/dev/null
}

case "${1:-}" in
    start) start_postgres ;;
    restart) restart_postgres "${2:-fast}" ;;
    stop) stop_postgres ;;
    status)
        bin=$(pg_bin)
        [[ -n "$bin" ]] && as_owner "$bin/pg_ctl" --pgdata="$data" status >/dev/null 2>&1
        ;;
    *)
        echo "usage: $0 start|stop|status|restart [fast|immediate]" >&2
        exit 2
        ;;
esac
