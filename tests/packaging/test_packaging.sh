#!/usr/bin/env bash
# Packaging tests (the operations issue, items 6 and 7). Two modes, one ctest each:
#
#   version  `vaultwire version` and --help of BUILD_DIR/bin/vaultwire: every line of the
#            version report is there and agrees with the libraries on this machine.
#   deb      `cpack -G DEB` on BUILD_DIR into a temporary directory, `dpkg -x` the .deb,
#            run the extracted usr/bin/vaultwire version, check the package holds the
#            configuration (a valid one, a conffile) and the unit, and that
#            `systemd-analyze verify` accepts the unit; then the same for
#            `cmake --install --prefix TMP`.
#
# Usage: test_packaging.sh version|deb BUILD_DIR SOURCE_DIR VERSION BOOST_VERSION
# Writes only in its own temporary directory (and cpack's staging inside it); cpack and
# cmake --install take the binary already built, they build nothing.
set -euo pipefail

mode=$1 build_dir=$2 source_dir=$3 want_version=$4 want_boost=$5
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vaultwire-packaging.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- vaultwire version ----------------------------------------------------------------
# Exactly: "vaultwire <version>", then commit, OpenSSL, libcurl, Boost, spdlog, toml++
# as "<name>: <value>", in that order.
check_version_output() {
  local bin=$1 what=$2 out
  if ! out=$("$bin" version 2>"$tmp/version.err"); then
    fail "$what: 'vaultwire version' exited non-zero: $(cat "$tmp/version.err")"
    return
  fi
  printf '%s\n' "$out" | sed 's/^/    /'
  local names
  names=$(printf '%s\n' "$out" | sed -n '2,$s/^\([^:]*\): .*/\1/p' | paste -sd' ')
  [ "$names" = "commit OpenSSL libcurl Boost spdlog toml++" ] ||
    fail "$what: lines after the first are '$names', want 'commit OpenSSL libcurl Boost spdlog toml++'"
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 7 ] || fail "$what: want 7 lines"
  field() { printf '%s\n' "$out" | sed -n "s/^$1: //p"; }

  [ "$(printf '%s\n' "$out" | head -1)" = "vaultwire $want_version" ] ||
    fail "$what: first line is not 'vaultwire $want_version'"

  # The commit the binary was built from: 12 hex digits of a commit this repository
  # has (HEAD may have moved since the build), "-dirty" when the tree was; "unknown"
  # only when the sources are not a git checkout.
  local commit
  commit=$(field commit)
  if git -C "$source_dir" rev-parse --git-dir >/dev/null 2>&1; then
    if [[ ! $commit =~ ^([0-9a-f]{12})(-dirty)?$ ]]; then
      fail "$what: commit '$commit' is not 12 hex digits with an optional -dirty"
    elif ! git -C "$source_dir" cat-file -e "${BASH_REMATCH[1]}^{commit}" 2>/dev/null; then
      fail "$what: commit '$commit' is not a commit of $source_dir"
    fi
  else
    [ "$commit" = unknown ] || fail "$what: commit '$commit' outside git, want 'unknown'"
  fi

  # Runtime library versions: what the openssl and curl tools on this machine load.
  local ssl_lib
  ssl_lib=$(openssl version | sed -n 's/.*(Library: \(.*\))$/\1/p')
  [ -n "$ssl_lib" ] || ssl_lib=$(openssl version)
  [[ $(field OpenSSL) == "$ssl_lib"* ]] || fail "$what: OpenSSL '$(field OpenSSL)', want '$ssl_lib'"
  local curl_lib
  curl_lib=$(curl --version | head -1 | sed -n 's|.* libcurl/\([^ ]*\) .*|\1|p')
  [ -n "$curl_lib" ] && [ "$(field libcurl)" = "$curl_lib" ] ||
    fail "$what: libcurl '$(field libcurl)', want '$curl_lib'"
  [ "$(field Boost)" = "$want_boost" ] || fail "$what: Boost '$(field Boost)', want '$want_boost'"
  [[ $(field spdlog) =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "$what: spdlog '$(field spdlog)'"
  [[ $(field toml++) =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "$what: toml++ '$(field toml++)'"
  pass "$what: version report"
}

check_help() {
  local bin=$1 help run_help
  help=$("$bin" --help)
  for sub in version check-config run; do
    printf '%s\n' "$help" | grep -Eq "^  $sub +[a-z]" || fail "--help does not list '$sub' with a description"
  done
  printf '%s\n' "$help" | grep -q VAULT_ADDR || fail "--help does not name VAULT_ADDR"
  run_help=$("$bin" run --help)
  for opt in --config --vault-addr --listen --log-level --threads SIGTERM; do
    printf '%s\n' "$run_help" | grep -q -- "$opt" || fail "run --help does not mention $opt"
  done
  "$bin" version --help | grep -q "commit" || fail "version --help does not say what it prints"
  pass "--help"
}

# --- the systemd unit ---------------------------------------------------------------
# The hardening and paths the issue asks for. $2: the binary ExecStart should run,
# $3: the configuration it should name.
check_unit_directives() {
  local unit=$1 bin=$2 conf=$3 what=$4
  for line in DynamicUser=yes NoNewPrivileges=yes ProtectSystem=strict \
              LogsDirectory=vaultwire "ExecStart=$bin run --config $conf"; do
    grep -qxF -- "$line" "$unit" || fail "$what: no line '$line'"
  done
  grep -q '^LoadCredential=[A-Za-z0-9_.-]*:/' "$unit" || fail "$what: no LoadCredential=ID:/PATH"
  pass "$what: directives"
}

# systemd-analyze verify exits 0 even for unknown keys and bad values, it only warns:
# any output is a failure.
verify_unit() {
  local unit=$1 what=$2 out
  if ! out=$(systemd-analyze verify "$unit" 2>&1) || [ -n "$out" ]; then
    fail "$what: systemd-analyze verify: $out"
  else
    pass "$what: systemd-analyze verify accepts it"
  fi
}

# Positive control: the same verification catches a misspelled hardening key.
check_verify_catches_typo() {
  local unit=$1 bad="$tmp/typo/vaultwire.service" out
  mkdir -p "$tmp/typo"
  sed 's/^DynamicUser=yes$/DynamicUsr=yes/' "$unit" > "$bad"
  out=$(systemd-analyze verify "$bad" 2>&1) || true
  if [ -z "$out" ]; then
    fail "control: systemd-analyze verify did not flag 'DynamicUsr=yes'"
  else
    pass "control: systemd-analyze verify flags a misspelled key"
  fi
}

case $mode in
version)
  bin=$build_dir/bin/vaultwire
  [ -x "$bin" ] || { echo "FAIL: $bin not built" >&2; exit 1; }
  check_version_output "$bin" "build/bin/vaultwire"
  check_help "$bin"
  ;;

deb)
  command -v systemd-analyze >/dev/null || { echo "FAIL: systemd-analyze missing (scripts/bootstrap.sh installs systemd)" >&2; exit 1; }
  [ -x "$build_dir/bin/vaultwire" ] || { echo "FAIL: $build_dir/bin/vaultwire not built" >&2; exit 1; }

  # cpack into our own directory; its staging tree (_CPack_Packages) goes there too.
  start=$(date +%s)
  if ! cpack -G DEB --config "$build_dir/CPackConfig.cmake" -B "$tmp/cpack" >"$tmp/cpack.log" 2>&1; then
    cat "$tmp/cpack.log" >&2
    echo "FAIL: cpack -G DEB" >&2
    exit 1
  fi
  echo "cpack took $(($(date +%s) - start)) s"
  mapfile -t debs < <(find "$tmp/cpack" -maxdepth 1 -name '*.deb')
  [ ${#debs[@]} -eq 1 ] || { echo "FAIL: want one .deb, got: ${debs[*]}" >&2; exit 1; }
  deb=${debs[0]}
  echo "package: $(basename "$deb")"
  [ "$(dpkg-deb -f "$deb" Package)" = vaultwire ] || fail "Package is not vaultwire"
  [ "$(dpkg-deb -f "$deb" Version)" = "$want_version" ] || fail "Version is not $want_version"
  dpkg-deb -f "$deb" Depends | grep -q libssl || fail "Depends does not name libssl: $(dpkg-deb -f "$deb" Depends)"
  dpkg-deb -I "$deb" conffiles 2>/dev/null | grep -qx /etc/vaultwire/vaultwire.toml ||
    fail "/etc/vaultwire/vaultwire.toml is not a conffile"

  root=$tmp/root
  dpkg -x "$deb" "$root"
  [ -x "$root/usr/bin/vaultwire" ] || fail "no usr/bin/vaultwire in the package"
  check_version_output "$root/usr/bin/vaultwire" ".deb usr/bin/vaultwire"

  cmp -s "$root/etc/vaultwire/vaultwire.toml" "$source_dir/conf/vaultwire.toml" ||
    fail "etc/vaultwire/vaultwire.toml is not conf/vaultwire.toml"
  if out=$("$root/usr/bin/vaultwire" check-config "$root/etc/vaultwire/vaultwire.toml" 2>&1); then
    pass "packaged configuration: $out"
  else
    fail "packaged configuration does not pass check-config: $out"
  fi
  [ "$(stat -c %a "$root/etc/vaultwire/credentials")" = 700 ] ||
    fail "etc/vaultwire/credentials is not a directory with mode 700"
  unit=$root/usr/lib/systemd/system/vaultwire.service
  cmp -s "$unit" "$source_dir/conf/vaultwire.service" ||
    fail "usr/lib/systemd/system/vaultwire.service is not conf/vaultwire.service"
  check_unit_directives "$unit" /usr/bin/vaultwire /etc/vaultwire/vaultwire.toml ".deb unit"
  # systemd-analyze verify requires ExecStart's binary to exist, and /usr/bin/vaultwire
  # is not installed here: verify a copy whose ExecStart points at the extracted binary
  # (the copy differs from the shipped unit in that one line).
  mkdir -p "$tmp/verify"
  sed "s|^ExecStart=/usr/bin/vaultwire |ExecStart=$root/usr/bin/vaultwire |" "$unit" >"$tmp/verify/vaultwire.service"
  [ "$(diff "$unit" "$tmp/verify/vaultwire.service" | grep -c '^[<>]')" -eq 2 ] ||
    fail "the verified copy differs from the shipped unit in more than ExecStart"
  verify_unit "$tmp/verify/vaultwire.service" ".deb unit (ExecStart -> extracted binary)"
  check_verify_catches_typo "$tmp/verify/vaultwire.service"

  # cmake --install with another prefix: the unit names that prefix's binary and
  # configuration, so it verifies as installed.
  prefix=$tmp/prefix
  cmake --install "$build_dir" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "cmake --install"; }
  [ -x "$prefix/bin/vaultwire" ] || fail "cmake --install: no bin/vaultwire"
  [ -f "$prefix/etc/vaultwire/vaultwire.toml" ] || fail "cmake --install: no etc/vaultwire/vaultwire.toml"
  [ -d "$prefix/etc/vaultwire/credentials" ] || fail "cmake --install: no etc/vaultwire/credentials"
  check_unit_directives "$prefix/lib/systemd/system/vaultwire.service" "$prefix/bin/vaultwire" \
    "$prefix/etc/vaultwire/vaultwire.toml" "cmake --install unit"
  verify_unit "$prefix/lib/systemd/system/vaultwire.service" "cmake --install unit"
  ;;

*)
  echo "usage: $0 version|deb BUILD_DIR SOURCE_DIR VERSION BOOST_VERSION" >&2
  exit 2
  ;;
esac

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all checks passed"
