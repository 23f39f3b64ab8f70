#!/usr/bin/env bash
# vaultwire against a direct connection and PgBouncer, side by side.
#
#   bench/run.sh                 full run: Release build in build-release/, 3 repetitions,
#                                writes bench/RESULTS.md and bench/*.png (several minutes)
#   bench/run.sh --smoke         every scenario once for 2 s with small sizes; fails on
#                                any error or zero transactions; no timing asserted
#   bench/run.sh [--reps N] [--duration S] [--scenarios S1,S2,S3,S5,S4,S6]
#                [--output DIR] [--keep] [--session-role ROLE]
#
# With VAULTWIRE_BIN, VAULT_DEV_BIN and PG_HARNESS set (as ctest's bench.smoke does),
# those binaries are used and nothing is built or installed. The scenarios live in
# bench/bench.py; this script only prepares the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

output=$root/bench
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --output) output=$2; shift 2 ;;
    --smoke|--keep) args+=("$1"); shift ;;
    --reps|--duration|--scenarios|--idle-connections|--cold-connections|--session-role) args+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

if [ -n "${VAULTWIRE_BIN:-}" ]; then
  : "${VAULT_DEV_BIN:?VAULT_DEV_BIN must be set with VAULTWIRE_BIN}"
  : "${PG_HARNESS:=$root/tests/support/pg-harness}"
  kind="test tree build: $VAULTWIRE_BIN"
else
  scripts/bootstrap.sh
  cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DVAULTWIRE_TESTS=ON -DVAULTWIRE_UNITY=ON >/dev/null
  cmake --build build-release -j"$(nproc)" --target vaultwire vault-dev
  VAULTWIRE_BIN=$root/build-release/bin/vaultwire
  VAULT_DEV_BIN=$root/build-release/bin/vault-dev
  PG_HARNESS=$root/tests/support/pg-harness
  kind="Release, build-release/"
fi

# 1,000 idle connections need 2 descriptors each in the proxy, and PostgreSQL gets a
# backend per upstream connection.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

exec /usr/bin/python3 "$root/bench/bench.py" "${args[@]}" --output "$output" \
  --vaultwire-bin "$VAULTWIRE_BIN" --vault-dev-bin "$VAULT_DEV_BIN" --pg-harness "$PG_HARNESS" \
  --build-kind "$kind"
