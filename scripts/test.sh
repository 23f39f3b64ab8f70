#!/usr/bin/env bash
# The test command: installs what is missing, builds one tree (build/) with
# ASan+UBSan, and runs the whole suite (labels unit, component, integration) there.
# Exits non-zero on any failure. Extra arguments go to ctest (e.g. -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug -DVAULTWIRE_SANITIZE=ON -DVAULTWIRE_TESTS=ON
cmake --build build -j"$jobs"

# proxy.test_core_hygiene needs a Release vaultwire (gcore of an ASan process is tens of GB).
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DVAULTWIRE_TESTS=ON >/dev/null
cmake --build build-release -j"$jobs" --target vaultwire
export VAULTWIRE_RELEASE_BIN=$PWD/build-release/bin/vaultwire

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd build
ctest --output-on-failure --no-tests=error -j"$jobs" "$@"

# Fuzzing, for the whole suite only: every tests/fuzz target for 12 s from its seed
# corpus after replaying the inputs that once crashed (scripts/fuzz.sh, a clang-14 tree
# in build-fuzz/). Any crash, sanitizer report or violated invariant fails the run.
if [ "$#" -eq 0 ]; then
  [ -x scripts/fuzz.sh ] || cd ..
  scripts/fuzz.sh "${VAULTWIRE_FUZZ_SECONDS:-12}"
fi
