#!/usr/bin/env bash
# The test command: installs what is missing, builds one tree (build/) with
# ASan+UBSan, and runs the whole suite (labels unit, component, integration) there;
# then, for the whole suite only, the concurrency tests again under ThreadSanitizer.
# Exits non-zero on any failure. Extra arguments go to ctest (e.g. -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
scripts/check-layout.sh

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug -DVAULTWIRE_SANITIZE=ON -DVAULTWIRE_TESTS=ON
cmake --build build -j"$jobs"

# proxy.test_core_hygiene needs a Release vaultwire (gcore of an ASan process is tens of GB).
# vault-dev is built there too: the demo and the bench run the Release build, and g++ 12
# warns (as errors) at -O2 about code the Debug tree compiles cleanly.
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DVAULTWIRE_TESTS=ON -DVAULTWIRE_UNITY=ON >/dev/null
cmake --build build-release -j"$jobs" --target vaultwire vault-dev
export VAULTWIRE_RELEASE_BIN=$PWD/build-release/bin/vaultwire

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd build
# One test more than cores: the end-to-end tests spend much of their time waiting on
# PostgreSQL, vault-dev and timers (on 2 cores, -j3 took 288 s where -j2 took 420 s).
ctest --output-on-failure --no-tests=error -j"$((jobs + 1))" "$@"
cd ..

# ThreadSanitizer: `ctest -L concurrency` (single flight, the reuse pool, the kill-switch)
# in a second tree that builds only concurrency_tests, the test files with a
# [concurrency] test case (vault-dev comes from build/). tests/tsan.supp names
# uninstrumented system libraries only; any report fails the test (exit code 66).
if [ "$#" -eq 0 ]; then
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DVAULTWIRE_TSAN=ON -DVAULTWIRE_TESTS=ON -DVAULTWIRE_UNITY=ON
  cmake --build build-tsan -j"$jobs" --target concurrency_tests
  VAULT_DEV_BIN=$PWD/build/bin/vault-dev \
  TSAN_OPTIONS=${TSAN_OPTIONS:-suppressions=$PWD/tests/tsan.supp:halt_on_error=1:second_deadlock_stack=1:exitcode=66} \
    ctest --test-dir build-tsan --output-on-failure --no-tests=error -j"$jobs" -L concurrency
fi

# Fuzzing, for the whole suite only: every tests/fuzz target for 12 s from its seed
# corpus after replaying the inputs that once crashed (scripts/fuzz.sh, a clang-14 tree
# in build-fuzz/). Any crash, sanitizer report or violated invariant fails the run.
if [ "$#" -eq 0 ]; then
  [ -x scripts/fuzz.sh ] || cd ..
  scripts/fuzz.sh "${VAULTWIRE_FUZZ_SECONDS:-12}"
fi
