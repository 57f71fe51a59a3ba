#!/usr/bin/env bash
# Start Jobsite on this machine: Redis if needed, migrations, an admin user,
# demo job types, then web + worker + beat + Flower under honcho.
#   scripts/run.sh       (`make run`) web is gunicorn, static files collected
#                        and served by WhiteNoise, as docker/ deploys it (Procfile)
#   scripts/run.sh dev   (`make dev`) web is Django's development server, which
#                        reloads when the code changes (Procfile.dev)
# Called by make, which creates .venv first. Ctrl-C stops everything.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_PORT=6379
REDIS_DIR="$RUN_DIR/redis"
REDIS_PIDFILE="$RUN_DIR/redis.pid"
REDIS_LOG="$RUN_DIR/redis.log"
FLOWER_PORT=5555
REDIS_STARTED_HERE=0
REDIS_NOTE=""

# ensure_env_secret NAME PYTHON_EXPRESSION COMMENT: adds NAME=<a random value>
# to .env unless .env already sets it. The expression may use `secrets`.
ensure_env_secret() {
    local name=$1 expression=$2 comment=$3 env_file="$ROOT/.env"
    if [[ -f $env_file ]] && grep -Eq "^[[:space:]]*(export[[:space:]]+)?$name=." "$env_file"; then
        return
    fi
    local value
    value=$(python -c "import secrets; print($expression)")
    if [[ ! -f $env_file ]]; then
        (umask 077 && : >"$env_file")
    elif [[ -s $env_file && $(tail -c1 "$env_file") != "" ]]; then
        echo >>"$env_file"
    fi
    printf '# Written by scripts/run.sh; %s\n%s=%s\n' "$comment" "$name" "$value" >>"$env_file"
    echo "Wrote a new random $name to .env"
}

ensure_secrets() {
    ensure_env_secret SECRET_KEY "secrets.token_urlsafe(50)" \
        "keep it secret, keep it stable (sessions depend on it)."
    # Flower's own login: only the web process uses it, to proxy /flower/ for staff users.
    ensure_env_secret FLOWER_BASIC_AUTH "'jobsite:' + secrets.token_urlsafe(24)" \
        "Flower's basic auth, used by the web process's /flower/ proxy only."
    # A Fernet key (32 random bytes, url-safe base64) that encrypts the secrets job types use.
    ensure_env_secret JOBS_SECRETS_KEYS "__import__('base64').urlsafe_b64encode(secrets.token_bytes(32)).decode()" \
        "encrypts stored secrets: losing it loses them (docs/security.md, Named secrets)."
}

# Exports the variables of .env, read as the settings read it (python-dotenv).
# Variables already set in the environment win, so `PORT=9000 make run` does
# what it says. The settings read .env too; this is for this script and the
# Procfile's own ${...}.
load_env_file() {
    [[ -f "$ROOT/.env" ]] || return 0
    local pair key
    while IFS= read -r -d '' pair; do
        key=${pair%%=*}
        [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        [[ -v $key ]] || export "$pair"
    done < <(python - "$ROOT/.env" <<'EOF'
import os
import sys

from dotenv import dotenv_values, load_dotenv

load_dotenv(sys.argv[1], override=False)
names = [name for name, value in dotenv_values(sys.argv[1]).items() if value is not None]
sys.stdout.write("".join(f"{name}={os.environ[name]}\0" for name in names))
EOF
    )
}

ensure_redis() {
    if [[ -n ${REDIS_URL:-} ]]; then
        REDIS_NOTE="REDIS_URL from your environment/.env"
        return
    fi
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    if redis_answers "$REDIS_PORT"; then
        REDIS_NOTE="the Redis already running on 127.0.0.1:$REDIS_PORT"
        return
    fi
    port_in_use "$REDIS_PORT" && die "127.0.0.1:$REDIS_PORT is taken by something that does not answer Redis PING: stop it, or set REDIS_URL"
    ensure_redis_server_binary
    # Installing the Debian package may have started its own service.
    if redis_answers "$REDIS_PORT"; then
        REDIS_NOTE="the Redis already running on 127.0.0.1:$REDIS_PORT"
        return
    fi
    start_redis
    REDIS_NOTE="redis-server started by make run (data in .run/redis/), stopped on exit"
}

start_redis() {
    mkdir -p "$REDIS_DIR"
    rm -f "$REDIS_PIDFILE"
    # Daemonized, so it sits in its own session: Ctrl-C reaches honcho and its
    # processes first, and Redis goes last, from the exit trap.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" \
        --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG"
    REDIS_STARTED_HERE=1
    local i
    for ((i = 0; i < 50; i++)); do
        redis_answers "$REDIS_PORT" && return
        sleep 0.1
    done
    tail -n 20 "$REDIS_LOG" >&2 || true
    die "redis-server did not answer on 127.0.0.1:$REDIS_PORT (log: $REDIS_LOG)"
}

stop_redis() {
    [[ $REDIS_STARTED_HERE == 1 && -f $REDIS_PIDFILE ]] || return 0
    local pid i
    pid=$(<"$REDIS_PIDFILE")
    echo "Stopping redis-server (pid $pid)..."
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    REDIS_STARTED_HERE=0
}

check_ports_free() {
    port_in_use "$PORT" && die "port $PORT is already in use: stop what uses it, or run 'make run PORT=8001'"
    port_in_use "$FLOWER_PORT" && die "port $FLOWER_PORT (Flower) is already in use on 127.0.0.1: stop what uses it"
    return 0
}

# Hashed, compressed copies in staticfiles/ for WhiteNoise, as the Docker image
# has them. Collected again only when a static file or the requirements changed
# since the last time (it takes a few seconds).
collect_static() {
    local manifest="$ROOT/staticfiles/staticfiles.json"
    if [[ -f $manifest ]] && ! find "$ROOT/jobs/static" "$VENV/.requirements-installed" -newer "$manifest" | grep -q .; then
        return
    fi
    echo "Collecting static files into staticfiles/..."
    python manage.py collectstatic --noinput --verbosity 0
}

prepare_database() {
    python manage.py migrate --noinput
    python manage.py setup_roles >/dev/null
    ADMIN_NOTE=$(python manage.py ensure_admin)
    python manage.py load_demo
}

print_banner() {
    local base="http://127.0.0.1:$PORT"
    local login web
    if [[ $MODE == dev ]]; then
        web="Django's development server, which reloads when the code changes"
    else
        web="gunicorn, ${WEB_CONCURRENCY:-2} processes (make dev: a server that reloads the code)"
    fi
    if [[ -n ${DJANGO_SUPERUSER_USERNAME:-} ]]; then
        login="Log in as '$DJANGO_SUPERUSER_USERNAME' with DJANGO_SUPERUSER_PASSWORD."
    else
        login="Log in as 'admin' with the password shown when the account was created (first run only);
   lost it? .venv/bin/python manage.py changepassword admin"
    fi
    cat <<EOF

==============================================================================
 Jobsite is starting: web, worker, beat, flower.   Ctrl-C stops them all.
 Web: $web

   App        $base/
   Admin      $base/admin/
   API docs   $base/api/docs/
   Monitor    $base/monitor/
   Flower     $base/flower/   (staff only; Flower itself listens on 127.0.0.1:$FLOWER_PORT)

 $login
${ADMIN_NOTE:+
 ensure_admin said:
$(sed 's/^/   /' <<<"$ADMIN_NOTE")
}
 Broker:   $REDIS_NOTE
 Database: ${DATABASE_URL:+DATABASE_URL}${DATABASE_URL:-SQLite file ${SQLITE_PATH:-db.sqlite3}}
==============================================================================

EOF
}

main() {
    MODE=${1:-run}
    local procfile
    case $MODE in
        run) procfile="$ROOT/Procfile" ;;
        dev) procfile="$ROOT/Procfile.dev" ;;
        *) die "unknown mode '$MODE': use 'run' (gunicorn) or 'dev' (the development server)" ;;
    esac
    cd "$ROOT"
    require_venv
    # WhiteNoise warns at every start when STATIC_ROOT is missing, although in
    # development it serves from the apps and the folder stays empty.
    mkdir -p "$RUN_DIR" "$ROOT/staticfiles"
    trap stop_redis EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    ensure_secrets
    load_env_file
    export PORT="${PORT:-8000}"
    [[ $PORT =~ ^[0-9]+$ ]] || die "PORT must be a number, not '$PORT'"
    # honcho gives each process its own PORT (base + 100 per process), so the
    # web process reads WEB_PORT instead.
    export WEB_PORT="$PORT"
    export SITE_URL="${SITE_URL:-http://127.0.0.1:$PORT}"
    export PYTHONUNBUFFERED=1

    check_ports_free
    if [[ $MODE == run ]]; then
        # The settings then serve the collected files (see STATIC_COLLECTED).
        export STATIC_COLLECTED=1
        collect_static
    fi
    ensure_redis
    prepare_database
    print_banner
    # .env is already in the environment (load_env_file), so honcho gets an
    # empty env file: given .env, it would override variables set in the shell.
    honcho start -f "$procfile" -e /dev/null -p "$PORT"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
