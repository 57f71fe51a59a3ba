#!/usr/bin/env bash
# `make bench`: every benchmark in bench/ at sizes that fit a few minutes, on
# SQLite and (where it matters) a throwaway PostgreSQL, then BENCHMARKS.md
# (scripts/bench_report.py). Installs Redis and PostgreSQL like `make test`.
#   DB=sqlite                      SQLite only
#   BENCH_ARGS="--only throughput latency"
set -euo pipefail

# shellcheck source=scripts/test.sh
source "$(dirname "${BASH_SOURCE[0]}")/test.sh"
main() {
    begin_bench
    unset DATABASE_URL
    case "${DB:-}" in
        sqlite) ;;
        "")
            ensure_postgres_binaries
            stage "start a throwaway PostgreSQL"
            pg_start
            ;;
        *) die "DB must be 'sqlite' (SQLite only) or unset (SQLite and PostgreSQL), not '$DB'" ;;
    esac
    # shellcheck disable=SC2086 # BENCH_ARGS is a list of words
    python scripts/bench_report.py ${BENCH_ARGS:-}
}

main "$@"
