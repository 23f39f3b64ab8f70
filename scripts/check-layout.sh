#!/usr/bin/env bash
# Keeps the module layout honest (README "Layout"); run by scripts/test.sh.
#  - src/core/ includes no Asio (and no curl): it is the base every module may use.
#  - Only src/vault/ includes curl; only src/config/ includes toml++.
#  - No file in src/ over 600 lines; no function in src/, include/ or proto-pgwire/
#    over 80 lines, apart from tables: a function whose body is one table of data
#    says so with `// layout: table` on the line above its first line.
# Function extents come from universal-ctags (pmccabe, the classic tool for this,
# drops every function inside a C++17 `namespace a::b {`, which is all of ours).
#
# scripts/layout-baseline.txt lists what broke these rules when the check was
# written, one `path:function lines` per line: those may stay until they are split,
# but may not grow, and a line that no longer applies must be removed, so the list
# only shrinks. Anything else fails the check.
set -euo pipefail
cd "$(dirname "$0")/.."

max_file_lines=600
max_function_lines=80
baseline=scripts/layout-baseline.txt
failed=0
fail() { echo "check-layout: $*" >&2; failed=1; }

command -v ctags >/dev/null || { echo "check-layout: universal-ctags missing (scripts/bootstrap.sh)" >&2; exit 1; }

sources() { find "$@" -type f \( -name '*.cpp' -o -name '*.hpp' \) | sort; }

# Includes that modules may not have.
while IFS= read -r hit; do fail "Asio or curl in src/core/: $hit"; done < <(
  grep -nE '#include [<"](boost/asio|boost/beast|net/asio\.hpp|curl/)' $(sources src/core) || true)
while IFS= read -r hit; do fail "curl outside src/vault/: $hit"; done < <(
  grep -nE '#include <curl/' $(sources src include proto-pgwire tools | grep -v '^src/vault/') || true)
while IFS= read -r hit; do fail "toml++ outside src/config/: $hit"; done < <(
  grep -nE '#include <toml\+\+/' $(sources src include proto-pgwire tools | grep -v '^src/config/') || true)

# Sizes: `path lines` for files, `path:function lines` for functions, over the bounds.
found=$(mktemp)
trap 'rm -f "$found"' EXIT
for f in $(sources src); do
  n=$(wc -l <"$f")
  [ "$n" -le "$max_file_lines" ] || echo "$f $n" >>"$found"
done
ctags -x --language-force=C++ --kinds-C++=f --fields=+ne \
  --_xformat='%F	%n	%{end}	%N' $(sources src include proto-pgwire) |
  while IFS=$'\t' read -r file start end name; do
    [ -n "$end" ] || continue
    n=$((end - start + 1))
    [ "$n" -gt "$max_function_lines" ] || continue
    if [ "$start" -gt 1 ] && sed -n "$((start - 1))p" "$file" | grep -q '// layout: table'; then
      continue
    fi
    echo "$file:$name $n"
  done >>"$found"

while read -r what n; do
  allowed=$(awk -v w="$what" '$1 == w { print $2 }' "$baseline")
  if [ -z "$allowed" ]; then
    case $what in
      *:*) fail "${what#*:} in ${what%%:*} is $n lines (at most $max_function_lines): split it" ;;
      *) fail "$what is $n lines (at most $max_file_lines): split it" ;;
    esac
  elif [ "$n" -gt "$allowed" ]; then
    fail "$what grew to $n lines ($allowed in $baseline, which may only shrink)"
  fi
done <"$found"
while read -r what n; do
  case $what in ''|'#'*) continue ;; esac
  grep -q "^$what " "$found" ||
    fail "$what is within bounds now: remove its line from $baseline"
done <"$baseline"

# ctest splits a test's name at ';' (catch_discover_tests registers each TEST_CASE by
# name), so a name holding one runs as two tests that match nothing and fail.
while IFS= read -r hit; do
  fail "${hit%%:*}: a TEST_CASE name holds ';', which ctest splits: use ','"
done < <(grep -rnE 'TEST_CASE\("[^"]*;' tests --include='*.cpp' | cut -d: -f1,2)

[ "$failed" -eq 0 ] && echo "check-layout: ok"
exit "$failed"
