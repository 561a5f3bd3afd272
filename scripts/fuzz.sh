#!/usr/bin/env bash
# Runs every Go fuzz target of every module in the workspace under `go test -fuzz`, each for a
# bounded time, and fails when any of them finds a failing input.
#
#   scripts/fuzz.sh                  FUZZTIME=10s per target (the default)
#   FUZZTIME=1m scripts/fuzz.sh      longer runs
#   FUZZ_MATCH=Redact scripts/fuzz.sh  only targets whose name matches the regexp
#
# Targets are found, not listed: packages whose tests declare `func Fuzz…` are asked for
# their targets with `go test -list '^Fuzz'`, so a target added anywhere is run without
# touching this script. A failing input is written by Go under the package's
# testdata/fuzz/<Target>/; commit it as a regression seed once the bug is fixed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

fuzztime=${FUZZTIME:-10s}
match=${FUZZ_MATCH:-.}

run=0
failed=()
for m in $(go list -m -f '{{.Dir}}'); do
  # Packages of this module whose test files declare a fuzz target (a cheap filter before
  # compiling anything).
  pkgs=()
  while read -r dir pkg; do
    [ -n "$dir" ] || continue
    grep -qs '^func Fuzz' "$dir"/*_test.go && pkgs+=("$pkg")
  done < <(cd "$m" && go list -f '{{.Dir}} {{.ImportPath}}' ./...)
  [ "${#pkgs[@]}" -gt 0 ] || continue
  # One `go test -list` for all of them (compiled in parallel): each package prints its
  # targets, then its "ok <package>" line.
  if ! list=$(cd "$m" && go test -list '^Fuzz' -run '^$' "${pkgs[@]}" 2>&1); then
    echo "fuzz: cannot list the fuzz targets of $m:" >&2
    echo "$list" >&2
    failed+=("$m (build)")
    continue
  fi
  targets=()
  while read -r first second _; do
    if [[ "$first" =~ ^Fuzz[A-Za-z0-9_]*$ ]] && [ -z "$second" ]; then
      targets+=("$first")
    elif [ "$first" = ok ]; then
      for target in "${targets[@]}"; do
        grep -Eq -- "$match" <<<"$target" || continue
        echo "== fuzz $second $target for $fuzztime"
        run=$((run + 1))
        if ! (cd "$m" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$second"); then
          failed+=("$second $target")
        fi
      done
      targets=()
    fi
  done <<<"$list"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: ${#failed[@]} of $run targets failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "fuzz: all $run targets ran $fuzztime each without a failing input"
