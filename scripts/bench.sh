#!/usr/bin/env bash
# Run a benchmark from bench/ on SQLite, then on PostgreSQL: DATABASE_URL's
# server if set (the benchmark makes a database of its own there), else a
# throwaway cluster started here like scripts/test.sh does, removed at exit.
#   scripts/bench.sh bench/monitor_scale.py [its arguments...]
#   DB=sqlite | DB=postgres      only that database
set -euo pipefail

# shellcheck source=scripts/test.sh
source "$(dirname "${BASH_SOURCE[0]}")/test.sh"
main() {
    begin_bench
    [[ $# -ge 1 && -f $1 ]] || die "usage: scripts/bench.sh bench/SCRIPT.py [arguments]"

    case "${DB:-}" in
        "" | sqlite)
            stage "$1 on SQLite"
            env -u DATABASE_URL python "$@"
            ;;
    esac
    case "${DB:-}" in
        "" | postgres | postgresql | pg)
            if [[ -z ${DATABASE_URL:-} ]]; then
                ensure_postgres_binaries
                stage "start a throwaway PostgreSQL"
                pg_start
            fi
            stage "$1 on PostgreSQL"
            python "$@"
            ;;
        sqlite) ;;
        *) die "DB must be 'sqlite' or 'postgres', not '$DB'" ;;
    esac
}

main "$@"
