#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz for SECONDS each (default 60):
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Builds them with clang-14 (ASan + UBSan + libFuzzer) in build-fuzz/ (or
# $VAULTWIRE_FUZZ_BUILD), then for each target: replays tests/fuzz/regressions/<target>/
# (inputs that once crashed), and fuzzes from a copy of tests/fuzz/corpus/<target>/
# in a temporary work dir, so new corpus entries never land in the repository.
# A crash, a leak, a UBSan report, a violated invariant or a timeout (10 s on one
# input) saves the input to build-fuzz/crashes/ (or $VAULTWIRE_FUZZ_CRASHES) and
# makes the exit status non-zero. A line per target gives execs, exec/s and coverage.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
all_targets=(fuzz_startup fuzz_messages fuzz_scram fuzz_scram_server fuzz_vault_json fuzz_config)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

scripts/bootstrap.sh

build=${VAULTWIRE_FUZZ_BUILD:-build-fuzz}
crashes=${VAULTWIRE_FUZZ_CRASHES:-$build/crashes}
cmake -S tests/fuzz -B "$build" -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"
mkdir -p "$crashes"
crashes=$(cd "$crashes" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/vaultwire-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

max_len() {
  case "$1" in
    fuzz_startup) echo 12000 ;;  # a 10,000-byte startup packet behind a PROXY header
    *) echo 16384 ;;
  esac
}

failed=()
for t in "${targets[@]}"; do
  bin="$build/bin/$t"
  [ -x "$bin" ] || { echo "fuzz: no target $t" >&2; exit 2; }

  regressions=(tests/fuzz/regressions/"$t"/*)
  if [ -e "${regressions[0]}" ]; then
    if ! "$bin" "${regressions[@]}" >"$work/$t.replay.log" 2>&1; then
      echo "fuzz: $t: a regression input crashes again:" >&2
      tail -n 40 "$work/$t.replay.log" >&2
      failed+=("$t(regression)")
      continue
    fi
  fi

  cp -r "tests/fuzz/corpus/$t" "$work/$t"
  if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
      -print_final_stats=1 -artifact_prefix="$crashes/$t-" "$work/$t" >"$work/$t.log" 2>&1; then
    echo "fuzz: $t FAILED; input saved under $crashes/$t-*:" >&2
    grep -v '^#[0-9]' "$work/$t.log" | tail -n 60 >&2
    failed+=("$t")
    continue
  fi
  last=$(grep -E '^#[0-9]+' "$work/$t.log" | tail -n 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log")
  cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([^ ]*\).*/cov \1, ft \2, corpus \3/p' <<<"$last")
  printf 'fuzz: %-16s %ss: %s execs, %s exec/s, %s\n' "$t" "$seconds" "$execs" "$rate" "$cov"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
