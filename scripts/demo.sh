#!/usr/bin/env bash
# The demo: the CockroachDB + Vault dynamic-secrets tutorial
# (shared/reference/cockroachdb-vault-dynamic-secrets-tutorial.md), with vaultwire
# doing all of its phase 2, on the embedded default: a local PostgreSQL 15 with
# TLS standing in for the cluster and vault-dev standing in for Vault.
#
#   scripts/demo.sh          run it, then stop everything
#   scripts/demo.sh --keep   leave PostgreSQL, vault-dev and vaultwire running
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

keep=0
[ "${1:-}" = "--keep" ] && keep=1

scripts/bootstrap.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DVAULTWIRE_TESTS=ON -DVAULTWIRE_UNITY=ON >/dev/null
cmake --build build-release -j"$(nproc)" --target vaultwire vault-dev

bin=$root/build-release/bin
psql=/usr/lib/postgresql/15/bin/psql
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }

work=$(mktemp -d /tmp/vaultwire-demo.XXXXXX)
chmod 755 "$work"
vault_pid="" vaultwire_pid=""
cleanup() {
  [ "$keep" -eq 1 ] && return
  [ -n "$vaultwire_pid" ] && kill "$vaultwire_pid" 2>/dev/null && wait "$vaultwire_pid" 2>/dev/null || true
  [ -n "$vault_pid" ] && kill "$vault_pid" 2>/dev/null && wait "$vault_pid" 2>/dev/null || true
  tests/support/pg-harness stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_for_line() {  # file, regex, what
  local deadline=$((SECONDS + 60))
  until grep -qE "$2" "$1" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: $3 did not start:" >&2
      cat "$1" >&2
      exit 1
    fi
    sleep 0.05
  done
}

step "The cluster: PostgreSQL 15 with TLS (stands in for CockroachDB)"
tests/support/pg-harness start "$work/pg" --auth scram-sha-256 --ssl-only >/dev/null
# shellcheck disable=SC1091
. "$work/pg/env"
echo "listening on localhost:$PGH_PORT, CA certificate $PGH_CA"

step "Vault: vault-dev (stands in for Vault; speaks Vault's HTTP API)"
"$bin/vault-dev" --listen 127.0.0.1:0 --quiet >"$work/vault-dev.out" 2>"$work/vault-dev.err" &
vault_pid=$!
wait_for_line "$work/vault-dev.out" 'listening on' vault-dev
VAULT_ADDR=$(sed -nE 's/.*listening on (http[^ ]+) .*/\1/p' "$work/vault-dev.out")
VAULT_ROOT=$(sed -nE 's/.*root_token=([^ ]+).*/\1/p' "$work/vault-dev.out")
echo "VAULT_ADDR=$VAULT_ADDR"

vault() {  # METHOD PATH [JSON] — prints the response body; fails on an HTTP error
  local method=$1 path=$2 body=${3:-}
  local args=(-sS --fail-with-body -X "$method" -H "X-Vault-Token: ${VAULT_TOKEN:-$VAULT_ROOT}")
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data "$body")
  curl "${args[@]}" "$VAULT_ADDR/v1/$path"
}

step "Phase 1 (administrator): the database secrets engine, a role, a policy, a client token"
show "vault secrets enable database"
vault POST sys/mounts/database '{"type":"database"}'
show "vault write database/config/crdb-config plugin_name=postgresql-database-plugin allowed_roles=crdb-role connection_url=..."
vault POST database/config/crdb-config "$(cat <<EOF
{"plugin_name":"postgresql-database-plugin","allowed_roles":"crdb-role",
 "connection_url":"postgresql://{{username}}:{{password}}@localhost:$PGH_PORT/defaultdb?sslmode=verify-full&sslrootcert=$PGH_CA",
 "username":"$PGH_ADMIN_USER","password":"$PGH_ADMIN_PASSWORD"}
EOF
)"
# The ownership pattern of DESIGN.md: objects belong to app_owner, so dynamic users
# can be dropped when their lease ends.
show "vault write database/roles/crdb-role db_name=crdb-config creation_statements=... revocation_statements=... default_ttl=1h max_ttl=24h"
vault POST database/roles/crdb-role "$(cat <<'EOF'
{"db_name":"crdb-config",
 "creation_statements":"CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE app_owner; ALTER ROLE \"{{name}}\" SET ROLE app_owner;",
 "revocation_statements":"REASSIGN OWNED BY \"{{name}}\" TO app_owner; DROP OWNED BY \"{{name}}\"; DROP ROLE IF EXISTS \"{{name}}\";",
 "default_ttl":"1h","max_ttl":"24h"}
EOF
)"
show "vault policy write roach-client -"
vault POST sys/policies/acl/roach-client "$(cat <<'EOF'
{"policy":"path \"database/creds/crdb-role\" { capabilities = [\"read\"] }\npath \"sys/leases/revoke/database/creds/crdb-role/*\" { capabilities = [\"update\"] }\n"}
EOF
)"
show "vault token create -policy=roach-client"
VAULT_TOKEN=$(vault POST auth/token/create '{"policies":["roach-client"],"ttl":"1h"}' |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["auth"]["client_token"])')
export VAULT_TOKEN
echo "a client token with policy roach-client (not printed)"

step "vaultwire: listens on localhost, logs in to the cluster with verify-full"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/vaultwire.toml" <<EOF
[vault]
address = "$VAULT_ADDR"

[[listener]]
bind = "127.0.0.1:$port"
route = "cluster"

[route.cluster]
host = "localhost"
port = $PGH_PORT
ca_file = "$PGH_CA"
roles = ["crdb-role"]
default_database = "defaultdb"

# Short timers for the demo (defaults 60s and 10s): a lease no connection has used
# for 2s is revoked; a token is rechecked with Vault every second.
[credentials]
revoke_idle_after = "2s"
token_recheck = "1s"
EOF
cat "$work/vaultwire.toml"
"$bin/vaultwire" run --config "$work/vaultwire.toml" >"$work/vaultwire.log" 2>&1 &
vaultwire_pid=$!
wait_for_line "$work/vaultwire.log" 'listening on' vaultwire

url="postgresql://crdb-role:\$VAULT_TOKEN@localhost:$port/defaultdb?sslmode=disable"
through() { "$psql" -X "postgresql://crdb-role:$VAULT_TOKEN@localhost:$port/defaultdb?sslmode=disable" "$@"; }

step "Phase 2 (client): one URL, no 'vault read', no password, no CA file"
show "psql \"$url\" -c 'CREATE TABLE IF NOT EXISTS accounts (...)'"
through -q -c "CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance numeric); INSERT INTO accounts VALUES (1, 1000.50), (2, 250.25) ON CONFLICT DO NOTHING;"
show "psql \"$url\" -c '\\dt'"
through -c '\dt'
show "psql \"$url\" -c 'SELECT session_user, current_user'"
through -c 'SELECT session_user, current_user'
dynamic_user=$(through -A -t -c 'SELECT session_user')

step "The dynamic user has no admin rights (the tutorial's 'show users' fails the same way)"
show "psql \"$url\" -c 'SELECT * FROM pg_authid'"
if through -c 'SELECT rolname FROM pg_authid' 2>&1; then
  echo "demo: a privileged query succeeded" >&2
  exit 1
fi

step "The connections shared one credential: vaultwire caches it for the token"
opens=$(grep -c ' session open: ' "$work/vaultwire.log" || true)
leases=$(sed -nE 's/.* session open: .* lease ([^ ]+) .*/\1/p' "$work/vaultwire.log" | sort -u | wc -l)
echo "$opens sessions, $leases lease(s) from Vault, SQL user $dynamic_user"

step "When no connection has used it for revoke_idle_after, vaultwire revokes the lease: the SQL user is gone"
admin() { PGPASSWORD=$PGH_ADMIN_PASSWORD "$psql" -X -A -t "host=localhost port=$PGH_PORT user=$PGH_ADMIN_USER dbname=defaultdb sslmode=verify-full sslrootcert=$PGH_CA" -c "$1"; }
deadline=$((SECONDS + 30))
while [ "$(admin "SELECT count(*) FROM pg_roles WHERE rolname = '$dynamic_user'")" != 0 ]; do
  if [ $SECONDS -ge $deadline ]; then
    echo "demo: $dynamic_user was not dropped" >&2
    exit 1
  fi
  sleep 0.1
done
show "SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%'   (as the cluster admin)"
admin "SELECT count(*) || ' dynamic users left; ' || (SELECT count(*) FROM accounts) || ' rows in accounts, owned by ' || (SELECT tableowner FROM pg_tables WHERE tablename = 'accounts') FROM pg_roles WHERE rolname LIKE 'v-%'"

step "vaultwire's log (no token, no password)"
sed -e 's/^/  /' "$work/vaultwire.log"

if [ "$keep" -eq 1 ]; then
  step "left running"
  # The client token goes to a private file, not to the terminal.
  (umask 077 && printf '%s\n' "$VAULT_TOKEN" >"$work/client-token")
  echo "connect:  VAULT_TOKEN=\$(cat $work/client-token) $psql \"$url\""
  echo "stop:     kill $vaultwire_pid $vault_pid; tests/support/pg-harness stop $work/pg"
fi
step "done"
