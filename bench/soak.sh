#!/usr/bin/env bash
# vaultwire soak (issue 8 item 8; not in CI): MINUTES (default 10) of churn and steady
# load through vaultwire with faults injected (vault-dev failures, delays, resets and
# seals; PostgreSQL backends killed), then: 0 leases left in vault-dev after the idle
# period, vaultwire's RSS and descriptors flat within 10 %, vaultwire alive and exiting
# 0. Prints a JSON summary; exits 1 when a check fails. bench/soak.py has the details.
#
#   bench/soak.sh [MINUTES] [--json FILE] [--keep]
#
# Binaries: VAULTWIRE_BIN, VAULT_DEV_BIN, VAULTWIRE_LOAD_BIN (default: build-release/bin/,
# which bench/run.sh builds; nothing is built here) and PG_HARNESS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

case ${1:-} in -h|--help) sed -n '2,12p' "$0"; exit 0 ;; esac

: "${VAULTWIRE_BIN:=$root/build-release/bin/vaultwire}"
: "${VAULT_DEV_BIN:=$root/build-release/bin/vault-dev}"
: "${VAULTWIRE_LOAD_BIN:=$root/build-release/bin/vaultwire-load}"
: "${PG_HARNESS:=$root/tests/support/pg-harness}"
for b in "$VAULTWIRE_BIN" "$VAULT_DEV_BIN" "$VAULTWIRE_LOAD_BIN"; do
  [ -x "$b" ] || { echo "bench/soak.sh: $b missing: build it (bench/run.sh builds build-release/) or set the *_BIN variables" >&2; exit 2; }
done

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

exec /usr/bin/python3 "$root/bench/soak.py" "$@" \
  --vaultwire-bin "$VAULTWIRE_BIN" --vault-dev-bin "$VAULT_DEV_BIN" --load-bin "$VAULTWIRE_LOAD_BIN" \
  --pg-harness "$PG_HARNESS"
