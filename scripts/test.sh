#!/usr/bin/env bash
# Every check, in order: ruff, import layers, migrations up to date, the OpenAPI schema, pytest on SQLite, pytest
# on PostgreSQL (a throwaway cluster started here and removed at exit) for the tests marked `postgres`: those
# where the database can change the outcome (locks, transactions across processes, JSON, query counts).
# Called by `make test`, which creates .venv first.
#   DB=sqlite | DB=postgres   run only that pytest stage
#   PG_TESTS=all              the PostgreSQL stage runs every test, not only the marked ones
#   PYTEST_WORKERS=N          test processes side by side (pytest-xdist; default 2, 0 for one process)
#   PYTEST_ARGS="-k foo"      extra pytest arguments (so are this script's own)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_USER=jobsite
PG_DB=jobsite
PG_BIN=""
PG_DIR=""
PG_PORT=""
PG_STARTED=0

stage() {
    printf '\n==> %s\n' "$*"
}

# Newest /usr/lib/postgresql/N/bin holding the server programs, if any.
find_pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]] && echo "$dir"
}

ensure_postgres_binaries() {
    PG_BIN=$(find_pg_bin) && return
    is_root || die "PostgreSQL server is not installed: run 'sudo apt-get install postgresql', or 'make test DB=sqlite'"
    apt_install postgresql
    PG_BIN=$(find_pg_bin) || die "no initdb/pg_ctl under /usr/lib/postgresql/*/bin after installing postgresql"
}

# The browser tests drive Debian's Chromium; Playwright never downloads a browser.
CHROMIUM=/usr/bin/chromium

ensure_chromium() {
    [[ -x $CHROMIUM ]] && return
    is_root || die "Chromium is not installed (the browser tests need $CHROMIUM): run 'sudo apt-get install chromium'"
    apt_install chromium
    [[ -x $CHROMIUM ]] || die "$CHROMIUM is still missing after installing the chromium package"
}

# PostgreSQL refuses to run as root, so as root the cluster belongs to `postgres`
# (from /, since its programs fail in a working directory they cannot read).
as_pg_owner() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Sets PG_DIR: .run/pg-test, unless the server could not use it there (the
# `postgres` user cannot reach the checkout, or the socket path would be too
# long for a unix socket), then a fresh folder under /tmp.
pick_pg_dir() {
    PG_DIR="$RUN_DIR/pg-${PG_CLUSTER_NAME:-test}"
    stop_stale_cluster "$PG_DIR"
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    chown_to_pg_owner "$PG_DIR"
    if ((${#PG_DIR} > 80)) || ! as_pg_owner test -w "$PG_DIR"; then
        rm -rf "$PG_DIR"
        PG_DIR=$(mktemp -d /tmp/jobsite-pg-test.XXXXXX)
        chown_to_pg_owner "$PG_DIR"
    fi
    chmod 700 "$PG_DIR"
}

chown_to_pg_owner() {
    if is_root; then
        chown postgres: "$1"
    fi
}

# A cluster left running by a run that was killed outright.
stop_stale_cluster() {
    [[ -f $1/postmaster.pid ]] || return 0
    as_pg_owner "$PG_BIN/pg_ctl" -D "$1" -m immediate -w stop >/dev/null 2>&1 || true
}

# free_port FIRST: the first port from FIRST on that nothing listens on.
free_port() {
    local port
    for ((port = $1; port < $1 + 100; port++)); do
        port_in_use "$port" || {
            echo "$port"
            return
        }
    done
    die "no free port in $1..$(($1 + 99))"
}

# The first port to try for PostgreSQL: just above the kernel's ephemeral range,
# so that no client connection (of any process on a busy machine) holds the port
# between free_port's check and the server's bind; 55432 where that range is unknown.
pg_port_base() {
    local low high
    if read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && ((high < 65000)); then
        echo $((high + 1))
    else
        echo 55432
    fi
}

pg_start() {
    pick_pg_dir
    PG_PORT=$(free_port "$(pg_port_base)")
    as_pg_owner "$PG_BIN/initdb" -D "$PG_DIR" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
    cat >>"$PG_DIR/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
EOF
    # Durability is pointless for a throwaway test cluster, and costly; benchmarks
    # (scripts/with-postgres.sh) keep PostgreSQL's defaults to measure what users get.
    if [[ ${PG_DURABLE:-0} != 1 ]]; then
        printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' >>"$PG_DIR/postgresql.conf"
    fi
    PG_STARTED=1
    if ! as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null; then
        tail -n 20 "$PG_DIR/server.log" >&2 || true
        die "PostgreSQL did not start (log: $PG_DIR/server.log)"
    fi
    # CREATEDB: the Django test runner creates and drops test_jobsite.
    pg_psql -d postgres -c "CREATE ROLE $PG_USER LOGIN CREATEDB" -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >/dev/null
    export DATABASE_URL="postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"
    echo "PostgreSQL $("$PG_BIN/postgres" -V | awk '{print $3}') on 127.0.0.1:$PG_PORT, cluster in $PG_DIR"
}

pg_psql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

pg_stop() {
    [[ $PG_STARTED == 1 ]] || return 0
    as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DIR" -m fast -w stop >/dev/null 2>&1 ||
        as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DIR" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_STARTED=0
}

# The start of every script here: at the checkout, with its venv, and any
# cluster started here stopped on the way out.
begin() {
    cd "$ROOT"
    require_venv
    mkdir -p "$RUN_DIR"
    trap pg_stop EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# begin, for a benchmark: a SECRET_KEY of its own unless given, redis-server, and
# a cluster of its own (it can run beside `make test`), durable like a real one.
begin_bench() {
    begin
    PG_CLUSTER_NAME="bench-$$"
    PG_DURABLE=1
    export SECRET_KEY="${SECRET_KEY:-insecure-key-for-benchmarks-only}"
    ensure_redis_server_binary
}

# run_pytest LABEL [ENV=VALUE...]: pytest with PYTEST_ARGS and this script's args.
run_pytest() {
    local label=$1 rc=0
    shift
    stage "pytest ($label)"
    env "$@" pytest "${PYTEST_EXTRA[@]}" || rc=$?
    if ((rc == 5)); then
        echo "pytest collected no tests ($label)" >&2
    fi
    return "$rc"
}

main() {
    begin

    local run_sqlite=1 run_postgres=1
    case "${DB:-}" in
        "") ;;
        sqlite) run_postgres=0 ;;
        postgres | postgresql | pg) run_sqlite=0 ;;
        *) die "DB must be 'sqlite' or 'postgres', not '$DB'" ;;
    esac
    # shlex, so that PYTEST_ARGS="-k 'a and b'" keeps its quoted words together.
    mapfile -d '' -t PYTEST_EXTRA < <(python -c 'import shlex, sys; sys.stdout.write("".join(a + "\0" for a in shlex.split(sys.argv[1])))' "${PYTEST_ARGS:-}")
    PYTEST_EXTRA+=("$@")
    # Most tests wait on Redis, Celery workers or a browser: two test processes,
    # each with its own Redis, workers, SMTP server and test database, keep the
    # machine's cores busy (tests/settings.py).
    if [[ ${PYTEST_WORKERS:-2} != 0 ]]; then
        PYTEST_EXTRA=(-n "${PYTEST_WORKERS:-2}" "${PYTEST_EXTRA[@]}")
    fi
    # Settings refuse to start without one (unless DEBUG=1); any value does for tests.
    export SECRET_KEY="${SECRET_KEY:-insecure-key-for-tests-only}"
    # The checks below load the settings too: a developer's .env is not theirs to read.
    export JOBS_ENV_FILE=""

    # The tests start their own redis-server, on a free port, from this binary.
    ensure_redis_server_binary
    ensure_chromium
    if ((run_postgres)); then
        ensure_postgres_binaries
    fi

    stage "ruff check"
    ruff check .

    stage "import layers (lint-imports: jobs/ imports point down only, no cycles)"
    lint-imports --no-cache

    stage "migrations match the models"
    SECRET_KEY=x DEBUG=0 python manage.py makemigrations --check --dry-run
    stage "OpenAPI schema valid, without warnings"
    SECRET_KEY=x DEBUG=0 python manage.py spectacular --validate --fail-on-warn >/dev/null

    if ((run_sqlite)); then
        run_pytest SQLite -u DATABASE_URL
    fi
    if ((run_postgres)); then
        stage "start a throwaway PostgreSQL"
        pg_start
        if [[ ${PG_TESTS:-marked} == all ]]; then
            run_pytest PostgreSQL "DATABASE_URL=$DATABASE_URL"
        else
            PYTEST_EXTRA=(-m postgres "${PYTEST_EXTRA[@]}")
            run_pytest "PostgreSQL, the tests marked postgres" "DATABASE_URL=$DATABASE_URL"
        fi
    fi
    stage "all checks passed"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
