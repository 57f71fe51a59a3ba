#!/usr/bin/env bash
# Run a command with DATABASE_URL pointing at a throwaway PostgreSQL cluster
# (the one `make test` uses), removed when the command ends:
#   scripts/with-postgres.sh .venv/bin/python bench/schedules.py
set -euo pipefail

# shellcheck source=scripts/test.sh
source "$(dirname "${BASH_SOURCE[0]}")/test.sh"
# A cluster of its own, so it can run beside `make test`.
PG_CLUSTER_NAME="with-$$"
PG_DURABLE=1

[[ $# -gt 0 ]] || die "usage: scripts/with-postgres.sh COMMAND [ARGS...]"
cd "$ROOT"
mkdir -p "$RUN_DIR"
trap pg_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ensure_postgres_binaries
pg_start >&2
"$@"
