# Helpers shared by scripts/run.sh and scripts/test.sh. Source it; don't run it.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
RUN_DIR="$ROOT/.run"

die() {
    echo "error: $*" >&2
    exit 1
}

is_root() {
    [[ $(id -u) == 0 ]]
}

require_venv() {
    [[ -x "$VENV/bin/python" ]] || die "no virtualenv in $VENV: run 'make venv' first"
    export VIRTUAL_ENV="$VENV"
    export PATH="$VENV/bin:$PATH"
}

# apt_install PACKAGE: as root, install a Debian package; refreshes the package
# lists only when the first attempt fails (a fresh machine may have none yet).
apt_install() {
    local package=$1
    command -v apt-get >/dev/null || die "$package is missing and apt-get is not available: install $package yourself"
    echo "Installing $package with apt-get..."
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "$package"; then
        apt-get update -q
        apt-get install -y -q "$package"
    fi
}

ensure_redis_server_binary() {
    command -v redis-server >/dev/null && return
    is_root || die "redis-server is not installed: run 'sudo apt-get install redis-server', or set REDIS_URL to a Redis you already have"
    apt_install redis-server
    command -v redis-server >/dev/null || die "redis-server is still missing after installing the redis-server package"
}

# port_in_use PORT: true when something accepts connections on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# redis_answers PORT: true when a Redis on 127.0.0.1:PORT answers PING with PONG.
redis_answers() {
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "PING\r\n" >&3
        IFS= read -r reply <&3
        [[ $reply == "+PONG"* ]]
    ' _ "$1" 2>/dev/null
}
