#!/usr/bin/env bash
# Installs exactly the Debian 12 packages vaultwire needs to build and test.
# Idempotent: packages already present are skipped. Must run as root (or via sudo)
# when something is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake ccache pkg-config git
  # scripts/check-layout.sh: function extents
  universal-ctags
  libboost-dev libssl-dev openssl libpq-dev libcurl4-openssl-dev
  libspdlog-dev libtomlplusplus-dev nlohmann-json3-dev libcli11-dev
  catch2 prometheus-cpp-dev libicu-dev
  # tests: a real PostgreSQL 15, its clients, the Vault client library
  postgresql-15 postgresql-client-15 python3 python3-hvac python3-psycopg2
  # tests: keys, certificates and JWTs for vault-dev's auth methods
  python3-cryptography
  procps curl
  # tests: packaging.kubernetes reads conf/kubernetes/ with PyYAML
  python3-yaml
  # tests: JDBC through vaultwire (single-file source launcher needs the JDK)
  openjdk-17-jdk-headless libpostgresql-jdbc-java
  # tests: packaging (cpack -G DEB runs dpkg-shlibdeps; systemd-analyze verify)
  dpkg-dev systemd
  # bench/run.sh: PgBouncer as the comparison path, gnuplot for RESULTS.md's plots
  pgbouncer gnuplot-nox
  # scripts/fuzz.sh: clang and its libFuzzer + sanitizer runtimes
  clang-14 libclang-rt-14-dev
  # proxy.test_core_hygiene: gcore of a running vaultwire
  gdb
  # proxy.test_fleet: HAProxy in front of three vaultwire instances; the test runs its own
  # haproxy process on its own ports and never uses the packaged service
  haproxy
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#packages[@]} packages present"
  exit 0
fi

echo "bootstrap: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian's postgresql package creates a cluster and starts it; the tests run their
# own servers in temporary directories and never use it.
echo "bootstrap: done"
