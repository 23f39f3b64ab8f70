#!/usr/bin/env bash
# The demo: installs what is missing, builds a Release tree (build-release/), starts
# the embedded default (a local PostgreSQL 15 with TLS) and shows a client built from
# vaultwire's protocol library logging in over TLS with verify-full, once with each
# authentication method the server can ask for.
#
#   scripts/demo.sh          run, then stop everything
#   scripts/demo.sh --keep   leave PostgreSQL running and print how to connect
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
[ "${1:-}" = "--keep" ] && keep=1

scripts/bootstrap.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DVAULTWIRE_TESTS=ON >/dev/null
cmake --build build-release -j"$(nproc)" --target vaultwire pgwire-login

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

work=$(mktemp -d /tmp/vaultwire-demo.XXXXXX)
chmod 755 "$work"
cleanup() {
  if [ "$keep" -eq 0 ]; then
    tests/support/pg-harness stop "$work/pg" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT

step "vaultwire version"
build-release/bin/vaultwire version

for auth in scram-sha-256 md5 password; do
  step "PostgreSQL 15 with TLS, pg_hba method $auth"
  tests/support/pg-harness stop "$work/pg" >/dev/null 2>&1 || true
  tests/support/pg-harness start "$work/pg" --auth "$auth" --ssl-only | grep -E 'PGH_(PORT|CA|DATABASE)='
  # shellcheck disable=SC1091
  . "$work/pg/env"
  case $auth in
    scram-sha-256) user=$PGH_SCRAM_USER; pw=$PGH_SCRAM_PASSWORD ;;
    md5) user=$PGH_MD5_USER; pw=$PGH_MD5_PASSWORD ;;
    password) user=$PGH_PLAIN_USER; pw=$PGH_PLAIN_PASSWORD ;;
  esac
  step "pgwire-login: TLS verify-full against the cluster CA, then $auth"
  DEMO_PASSWORD=$pw build-release/bin/pgwire-login --host localhost --port "$PGH_PORT" \
    --ca "$PGH_CA" --user "$user" --database defaultdb --password-env DEMO_PASSWORD
done

step "pgwire-login refuses a server whose certificate is not from the cluster CA"
if DEMO_PASSWORD=x build-release/bin/pgwire-login --host localhost --port "$PGH_PORT" \
     --ca "$PGH_OTHER_CA" --user "$user" --database defaultdb --password-env DEMO_PASSWORD; then
  echo "demo: the login should have been refused" >&2
  exit 1
fi

if [ "$keep" -eq 1 ]; then
  step "left running"
  echo "PostgreSQL: . $work/pg/env; stop with: tests/support/pg-harness stop $work/pg"
fi
step "done"
